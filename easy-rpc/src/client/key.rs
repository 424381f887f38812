//! Keys for `by_key`: which bytes a key is ([`RouteKey`]), the hash of those bytes and of each
//! node's name ([`KeyHasher`], FNV-1a 64), and the rendezvous score that mixes them. Every
//! function here is fixed and documented, so that every node (whatever its platform, build or
//! language) computes the same owner for a key.

use std::sync::Arc;

/// FNV-1a 64's offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64's prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The hash of a key's bytes: 64-bit FNV-1a, fed by [`RouteKey::write_key`].
///
/// Starting from `0xcbf29ce484222325`, for each byte `b` in order:
/// `h = (h ^ b) * 0x100000001b3` (wrapping). Writing `"ab"` at once or as `"a"` then `"b"`
/// gives the same hash.
#[derive(Clone, Copy, Debug)]
pub struct KeyHasher(u64);

impl KeyHasher {
    pub(crate) fn new() -> Self {
        KeyHasher(FNV_OFFSET)
    }

    /// The hash of `key`: what [`by_key`](crate::by_key) routes by. For checking a
    /// [`RouteKey`] implementation, or another implementation of the routing, against this
    /// one.
    ///
    /// ```
    /// use easy_rpc::KeyHasher;
    /// assert_eq!(KeyHasher::hash(""), 0xcbf2_9ce4_8422_2325); // FNV-1a's offset basis
    /// assert_eq!(KeyHasher::hash("a"), 0xaf63_dc4c_8601_ec8c);
    /// ```
    pub fn hash<K: RouteKey + ?Sized>(key: &K) -> u64 {
        let mut hasher = KeyHasher::new();
        key.write_key(&mut hasher);
        hasher.finish()
    }

    /// Feeds `bytes` to the hash.
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    pub(crate) fn finish(self) -> u64 {
        self.0
    }
}

/// A key that [`by_key`](crate::by_key) can route by: the bytes it writes decide its owner, the
/// same on every node.
///
/// Implemented for strings and byte strings (their bytes: `str` and `String` as UTF-8, `[u8]`,
/// `Vec<u8>`, `[u8; N]`), for integers (little-endian, at their own width; `usize` and
/// `isize` as 8 bytes, so 32- and 64-bit nodes agree), and through `&T`, `Box<T>`, `Arc<T>`.
/// The width is part of the key: `7u32` and `7u64` are different keys.
///
/// The owner of a key among a role's serving nodes (rendezvous hashing):
///
/// 1. `k` = 64-bit FNV-1a of the key's bytes ([`KeyHasher`]);
/// 2. for each node, `n` = 64-bit FNV-1a of its name's UTF-8 bytes (the name, not the
///    incarnation, so a restarted pod keeps its keys);
/// 3. its score is `mix(k ^ rotate_left(n, 32) ^ 0x9e3779b97f4a7c15)`, where `mix` is
///    splitmix64's finaliser: `z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
///    z = (z ^ (z >> 27)) * 0x94d049bb133111eb; z ^ (z >> 31)` (wrapping);
/// 4. the node with the highest score owns the key; on a tie (two incarnations of one name)
///    the greater (name, incarnation).
///
/// When the owner refused the call without running it, the call goes to the next score. When
/// a node joins, only the keys it now wins move to it; when one leaves, only its keys move.
///
/// Your own key type implements it by writing a fixed encoding of itself. Writes concatenate,
/// so a key of several parts must not let two different keys write the same bytes: fixed-width
/// parts are safe, and a variable-length part (a string) needs its length written before it
/// (or must be the last part), else `("ab", "c")` and `("a", "bc")` would be the same key:
///
/// ```
/// use easy_rpc::{KeyHasher, RouteKey};
///
/// struct CartKey { tenant: String, user: u64 }
///
/// impl RouteKey for CartKey {
///     fn write_key(&self, hasher: &mut KeyHasher) {
///         (self.tenant.len() as u64).write_key(hasher); // the length first...
///         self.tenant.write_key(hasher);                 // ...then the variable part
///         self.user.write_key(hasher);                   // fixed width: 8 bytes
///     }
/// }
///
/// // Another implementation (another language) reproduces a key's hash from its bytes:
/// let key = CartKey { tenant: "acme".into(), user: 7 };
/// let mut bytes = 4u64.to_le_bytes().to_vec();
/// bytes.extend_from_slice(b"acme");
/// bytes.extend_from_slice(&7u64.to_le_bytes());
/// assert_eq!(KeyHasher::hash(&key), KeyHasher::hash(&bytes[..]));
/// ```
pub trait RouteKey {
    /// Writes the key's bytes.
    fn write_key(&self, hasher: &mut KeyHasher);
}

impl RouteKey for str {
    fn write_key(&self, hasher: &mut KeyHasher) {
        hasher.write(self.as_bytes());
    }
}

impl RouteKey for String {
    fn write_key(&self, hasher: &mut KeyHasher) {
        hasher.write(self.as_bytes());
    }
}

impl RouteKey for [u8] {
    fn write_key(&self, hasher: &mut KeyHasher) {
        hasher.write(self);
    }
}

impl RouteKey for Vec<u8> {
    fn write_key(&self, hasher: &mut KeyHasher) {
        hasher.write(self);
    }
}

impl<const N: usize> RouteKey for [u8; N] {
    fn write_key(&self, hasher: &mut KeyHasher) {
        hasher.write(self);
    }
}

macro_rules! integer_keys {
    ($($t:ty => $as:ty),* $(,)?) => {
        $(
            impl RouteKey for $t {
                fn write_key(&self, hasher: &mut KeyHasher) {
                    hasher.write(&(*self as $as).to_le_bytes());
                }
            }
        )*
    };
}

integer_keys! {
    u8 => u8, u16 => u16, u32 => u32, u64 => u64, u128 => u128,
    i8 => i8, i16 => i16, i32 => i32, i64 => i64, i128 => i128,
    usize => u64, isize => i64,
}

impl<T: RouteKey + ?Sized> RouteKey for &T {
    fn write_key(&self, hasher: &mut KeyHasher) {
        (**self).write_key(hasher);
    }
}

impl<T: RouteKey + ?Sized> RouteKey for Box<T> {
    fn write_key(&self, hasher: &mut KeyHasher) {
        (**self).write_key(hasher);
    }
}

impl<T: RouteKey + ?Sized> RouteKey for Arc<T> {
    fn write_key(&self, hasher: &mut KeyHasher) {
        (**self).write_key(hasher);
    }
}

/// The hash of a node's name (step 2).
pub(crate) fn name_hash(name: &str) -> u64 {
    KeyHasher::hash(name)
}

/// A node's score for a key (step 3): the highest score owns the key.
pub(crate) fn score(key: u64, node: u64) -> u64 {
    let mut z = key ^ node.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test vectors: anyone implementing the function elsewhere must get these.
    #[test]
    fn fnv1a_64_vectors() {
        assert_eq!(KeyHasher::hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(KeyHasher::hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(KeyHasher::hash("foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(KeyHasher::hash("user-7"), 0xf84b_a0aa_754a_486e);
        assert_eq!(name_hash("billing-0"), 0x3033_9b84_85a5_38a9);
        assert_eq!(name_hash("billing-1"), 0x3033_9a84_85a5_36f6);
    }

    #[test]
    fn integers_are_little_endian_at_their_width() {
        assert_eq!(KeyHasher::hash(&1u32), 0xad2a_ca77_4798_5764);
        assert_eq!(KeyHasher::hash(&1u32), KeyHasher::hash(&[1u8, 0, 0, 0]));
        assert_eq!(KeyHasher::hash(&1u64), 0x89cd_3129_1d2a_efa4);
        assert_eq!(KeyHasher::hash(&1usize), KeyHasher::hash(&1u64));
        assert_eq!(KeyHasher::hash(&-1i64), 0x8cf5_1a8b_fca3_883d);
        assert_eq!(KeyHasher::hash(&-1isize), KeyHasher::hash(&-1i64));
        assert_ne!(KeyHasher::hash(&7u32), KeyHasher::hash(&7u64));
    }

    #[test]
    fn the_same_bytes_are_the_same_key_whatever_their_type() {
        let h = KeyHasher::hash("user-7");
        assert_eq!(KeyHasher::hash(&String::from("user-7")), h);
        assert_eq!(KeyHasher::hash(b"user-7"), h);
        assert_eq!(KeyHasher::hash(&b"user-7"[..]), h);
        assert_eq!(KeyHasher::hash(&b"user-7".to_vec()), h);
        assert_eq!(KeyHasher::hash(&&&"user-7"), h);
        assert_eq!(KeyHasher::hash(&Box::<str>::from("user-7")), h);
        assert_eq!(KeyHasher::hash(&Arc::<str>::from("user-7")), h);
        // Split writes hash like one write.
        let mut split = KeyHasher::new();
        split.write(b"user");
        split.write(b"-7");
        assert_eq!(split.finish(), h);
    }

    #[test]
    fn score_vectors() {
        let k = KeyHasher::hash("user-7");
        assert_eq!(score(k, name_hash("billing-0")), 0x892f_477b_410b_03b2);
        assert_eq!(score(k, name_hash("billing-1")), 0xda08_4a9f_bcab_cec3);
        assert_eq!(score(k, name_hash("billing-2")), 0xc22d_3543_1164_2e10);
        // So among billing-0..2, "user-7" belongs to billing-1.
    }
}

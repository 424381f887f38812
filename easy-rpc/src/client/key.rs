//! Key hashing for `by_key`: a stable 64-bit hash of the key and of each node's name, and the
//! rendezvous score that mixes them.

use std::hash::{Hash, Hasher};

/// A stable 64-bit hash (FNV-1a), the same in every process and build.
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The hash of a key.
pub(crate) fn hash64(v: impl Hash) -> u64 {
    let mut h = Fnv::default();
    v.hash(&mut h);
    h.finish()
}

/// The hash of a node's name.
pub(crate) fn name_hash(name: &str) -> u64 {
    hash64(name)
}

/// Mixes a key's and a node's hashes into a well-distributed score (splitmix64 finaliser):
/// the node with the highest score owns the key.
pub(crate) fn score(key: u64, node: u64) -> u64 {
    let mut z = key ^ node.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

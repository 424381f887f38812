//! The Noise protocol of the RPC handshake and records: `Noise_NNpsk0_25519_ChaChaPoly_SHA256`
//! through `snow`, with the prologue `"easy-rpc"` and the protocol version.
//!
//! `snow` runs the protocol (the handshake pattern, the symmetric state, the nonces). The
//! primitives come through the small adapters below: X25519 from `curve25519-dalek` (as in
//! snow's own resolver), and the cipher (ChaCha20-Poly1305), the hash (SHA-256) and the
//! randomness from the RustCrypto crates and the CSPRNG the rest of the workspace already
//! uses for gossip, so that a build holds one copy of each primitive (snow's resolver is on
//! an older RustCrypto release; see `deny.toml`). SHA-256 rather than BLAKE2s for the same
//! reason: the workspace has it, and a Noise hash only runs during the handshake.

use chacha20poly1305::aead::inout::InOutBuf;
use chacha20poly1305::{AeadInOut, ChaCha20Poly1305, KeyInit, Nonce, Tag};
use curve25519_dalek::montgomery::MontgomeryPoint;
use sha2::{Digest, Sha256};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::CryptoResolver;
use snow::types::{Cipher, Dh, Hash, Random};

use crate::handshake::PROTOCOL_VERSION;
use crate::keyring::Psk;

/// The Noise protocol name (its pattern and primitives).
pub(crate) const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_SHA256";

/// The length of an AEAD tag.
const TAG_LEN: usize = 16;

/// A Noise handshake state of our protocol, prologue and pre-shared key.
pub(crate) fn handshake_state(psk: &Psk, initiator: bool) -> snow::HandshakeState {
    let params = NOISE_PARAMS.parse().expect("a valid Noise protocol name");
    let mut prologue = [0u8; 10];
    prologue[..8].copy_from_slice(b"easy-rpc");
    prologue[8..].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    let builder = snow::Builder::with_resolver(params, Box::new(Primitives))
        .psk(0, psk)
        .and_then(|b| b.prologue(&prologue))
        .expect("a 32-byte key at psk0 and a prologue are valid");
    if initiator {
        builder.build_initiator()
    } else {
        builder.build_responder()
    }
    .expect("every primitive of the protocol resolves")
}

/// The primitives of the protocol.
struct Primitives;

impl CryptoResolver for Primitives {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(Randomness))
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            DHChoice::Curve25519 => Some(Box::new(X25519::default())),
            _ => None,
        }
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        match choice {
            HashChoice::SHA256 => Some(Box::new(Sha256Hash(Sha256::new()))),
            _ => None,
        }
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        match choice {
            CipherChoice::ChaChaPoly => Some(Box::new(ChaChaPoly(ChaCha20Poly1305::new(
                &[0u8; 32].into(),
            )))),
            _ => None,
        }
    }
}

/// The ephemeral keys' randomness: `rand`'s CSPRNG, seeded by the OS.
struct Randomness;

impl Random for Randomness {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        rand::fill(dest);
        Ok(())
    }
}

/// X25519 (RFC 7748): private keys are clamped when used.
#[derive(Default)]
struct X25519 {
    private: [u8; 32],
    public: [u8; 32],
}

impl Dh for X25519 {
    fn name(&self) -> &'static str {
        "25519"
    }

    fn pub_len(&self) -> usize {
        32
    }

    fn priv_len(&self) -> usize {
        32
    }

    fn set(&mut self, private: &[u8]) {
        self.private.copy_from_slice(&private[..32]);
        self.public = MontgomeryPoint::mul_base_clamped(self.private).to_bytes();
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        let mut private = [0u8; 32];
        rng.try_fill_bytes(&mut private)?;
        self.set(&private);
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        &self.public
    }

    fn privkey(&self) -> &[u8] {
        &self.private
    }

    fn dh(&self, public: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        let theirs: [u8; 32] = public
            .get(..32)
            .and_then(|p| p.try_into().ok())
            .ok_or(snow::Error::Dh)?;
        out[..32].copy_from_slice(&MontgomeryPoint(theirs).mul_clamped(self.private).to_bytes());
        Ok(())
    }
}

impl Drop for X25519 {
    fn drop(&mut self) {
        // Not a guaranteed wipe (no volatile write without unsafe), but the key does not
        // outlive the handshake in this struct.
        self.private = [0; 32];
    }
}

/// ChaCha20-Poly1305 as Noise uses it: the nonce is 32 zero bits and the 64-bit counter,
/// little-endian; the tag follows the ciphertext.
struct ChaChaPoly(ChaCha20Poly1305);

fn nonce(n: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_le_bytes());
    bytes.into()
}

impl Cipher for ChaChaPoly {
    fn name(&self) -> &'static str {
        "ChaChaPoly"
    }

    fn set(&mut self, key: &[u8; 32]) {
        self.0 = ChaCha20Poly1305::new(key.into());
    }

    fn encrypt(&self, n: u64, authtext: &[u8], plaintext: &[u8], out: &mut [u8]) -> usize {
        // snow checks that `out` holds the plaintext and the tag.
        let len = plaintext.len();
        let (body, rest) = out.split_at_mut(len);
        let buf = InOutBuf::new(plaintext, body).expect("equal lengths");
        let tag = self
            .0
            .encrypt_inout_detached(&nonce(n), authtext, buf)
            .expect("a Noise message is far below ChaCha20-Poly1305's limit");
        rest[..TAG_LEN].copy_from_slice(&tag);
        len + TAG_LEN
    }

    fn decrypt(
        &self,
        n: u64,
        authtext: &[u8],
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, snow::Error> {
        let Some(len) = ciphertext.len().checked_sub(TAG_LEN) else {
            return Err(snow::Error::Decrypt);
        };
        if out.len() < len {
            return Err(snow::Error::Decrypt);
        }
        let (body, tag) = ciphertext.split_at(len);
        let tag = Tag::try_from(tag).map_err(|_| snow::Error::Decrypt)?;
        let buf = InOutBuf::new(body, &mut out[..len]).map_err(|_| snow::Error::Decrypt)?;
        self.0
            .decrypt_inout_detached(&nonce(n), authtext, buf, &tag)
            .map_err(|_| snow::Error::Decrypt)?;
        Ok(len)
    }
}

/// SHA-256.
struct Sha256Hash(Sha256);

impl Hash for Sha256Hash {
    fn name(&self) -> &'static str {
        "SHA256"
    }

    fn block_len(&self) -> usize {
        64
    }

    fn hash_len(&self) -> usize {
        32
    }

    fn reset(&mut self) {
        self.0 = Sha256::new();
    }

    fn input(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn result(&mut self, out: &mut [u8]) {
        out[..32].copy_from_slice(&self.0.finalize_reset());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cipher_seals_and_opens_and_refuses_any_change() {
        let mut c = ChaChaPoly(ChaCha20Poly1305::new(&[0u8; 32].into()));
        c.set(&[3; 32]);
        let mut sealed = [0u8; 64];
        let n = c.encrypt(7, b"ad", b"hello", &mut sealed);
        assert_eq!(n, 5 + TAG_LEN);
        assert_ne!(&sealed[..5], b"hello");
        let mut out = [0u8; 64];
        assert_eq!(c.decrypt(7, b"ad", &sealed[..n], &mut out).unwrap(), 5);
        assert_eq!(&out[..5], b"hello");
        // Another nonce, other associated data, any flipped bit, a short message: refused.
        assert!(c.decrypt(8, b"ad", &sealed[..n], &mut out).is_err());
        assert!(c.decrypt(7, b"ax", &sealed[..n], &mut out).is_err());
        for i in 0..n {
            let mut bad = sealed;
            bad[i] ^= 0x80;
            assert!(
                c.decrypt(7, b"ad", &bad[..n], &mut out).is_err(),
                "bit at {i}"
            );
        }
        assert!(
            c.decrypt(7, b"ad", &sealed[..TAG_LEN - 1], &mut out)
                .is_err()
        );
    }

    #[test]
    fn the_cipher_is_noise_chachapoly() {
        // Noise's nonce: 32 zero bits, then the counter, little-endian.
        let key: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
        let c = ChaChaPoly(ChaCha20Poly1305::new(&key.into()));
        let mut a = [0u8; 32];
        c.encrypt(0x4746_4544_4342_4140, b"", b"abcdefghijklmnop", &mut a);
        let mut nonce_bytes = [0u8; 12];
        nonce_bytes[4..].copy_from_slice(&[0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47]);
        let direct = ChaCha20Poly1305::new(&key.into());
        let mut b = *b"abcdefghijklmnop";
        let tag = direct
            .encrypt_inout_detached(&nonce_bytes.into(), b"", (&mut b[..]).into())
            .unwrap();
        assert_eq!(&a[..16], &b);
        assert_eq!(&a[16..], tag.as_slice());
    }

    #[test]
    fn the_hash_is_sha256() {
        let mut h = Sha256Hash(Sha256::new());
        h.input(b"ab");
        h.input(b"c");
        let mut out = [0u8; 32];
        h.result(&mut out);
        // FIPS 180-2's "abc".
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, abc);
        h.reset();
        h.input(b"abc");
        let mut again = [0u8; 32];
        h.result(&mut again);
        assert_eq!(out, again);
    }

    #[test]
    fn x25519_is_rfc_7748() {
        // RFC 7748 section 6.1: Alice's and Bob's keys and their shared secret.
        let hex = |s: &str| -> [u8; 32] {
            core::array::from_fn(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        };
        let mut alice = X25519::default();
        alice.set(&hex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        assert_eq!(
            alice.pubkey(),
            hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        let mut bob = X25519::default();
        bob.set(&hex(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        ));
        let shared = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        let mut out = [0u8; 32];
        alice.dh(bob.pubkey(), &mut out).unwrap();
        assert_eq!(out, shared);
        bob.dh(alice.pubkey(), &mut out).unwrap();
        assert_eq!(out, shared);
        assert!(alice.dh(&[0u8; 31], &mut out).is_err());
    }

    #[test]
    fn a_handshake_with_our_primitives_completes_and_keys_agree() {
        let mut i = handshake_state(&[5; 32], true);
        let mut r = handshake_state(&[5; 32], false);
        let (mut m, mut p) = ([0u8; 256], [0u8; 256]);
        let n = i.write_message(b"svc", &mut m).unwrap();
        assert_eq!(n, 32 + 3 + TAG_LEN, "e, then the sealed payload");
        assert_eq!(r.read_message(&m[..n], &mut p).unwrap(), 3);
        let n = r.write_message(b"", &mut m).unwrap();
        i.read_message(&m[..n], &mut p).unwrap();
        assert_eq!(i.get_handshake_hash(), r.get_handshake_hash());
        let (mut i, mut r) = (
            i.into_transport_mode().unwrap(),
            r.into_transport_mode().unwrap(),
        );
        let n = i.write_message(b"x", &mut m).unwrap();
        assert_eq!(r.read_message(&m[..n], &mut p).unwrap(), 1);
        let n = r.write_message(b"y", &mut m).unwrap();
        assert_eq!(i.read_message(&m[..n], &mut p).unwrap(), 1);
        // Another key: the first message does not open.
        let mut i = handshake_state(&[5; 32], true);
        let mut r = handshake_state(&[6; 32], false);
        let n = i.write_message(b"svc", &mut m).unwrap();
        assert!(r.read_message(&m[..n], &mut p).is_err());
    }
}

//! The Noise protocol of the RPC handshake and records: `Noise_NNpsk0_25519_AESGCM_BLAKE2s`
//! through `snow`, with the prologue `"easy-rpc"` and the protocol version, and for a node
//! whose calls are unencrypted ([`Encryption::Off`]) one more byte, [`UNENCRYPTED`].
//!
//! Both sides mix the prologue into the handshake hash, and it is never sent: a client and a
//! server that disagree on encryption compute different hashes, so the first message of one
//! does not open on the other, as with a wrong key. Nobody in the middle can change what
//! either side expects, so a connection between two sealed nodes cannot be downgraded.
//! Sealed connections keep the prologue of protocol version 3 as it was before unencrypted
//! calls existed.
//!
//! `snow` runs the protocol and brings X25519 (`curve25519-dalek`) and BLAKE2s (RustCrypto).
//! Two primitives are ours, given to it through its resolver:
//! - the randomness of the ephemeral keys is the workspace's CSPRNG (`rand`, seeded by the OS),
//!   so that a build has one entropy source;
//! - AES-256-GCM is RustCrypto's `aes-gcm`, keyed once per key ([`AesGcm`]). snow's own cipher
//!   objects expand the key on every message, and its ChaCha20-Poly1305 (RustCrypto's
//!   previous release) set up Poly1305's vector state on every message as well: about 6,000
//!   instructions to seal a 100-byte record, against a few hundred here with the CPU's AES
//!   and carry-less multiply instructions (constant-time software where it has none).

use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver, FallbackResolver};
use snow::types::{Cipher, Dh, Hash, Random};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};

use crate::handshake::PROTOCOL_VERSION;
use crate::keyring::Psk;
use crate::link::Encryption;

/// The Noise protocol name (its pattern and primitives).
pub(crate) const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_AESGCM_BLAKE2s";

/// The prologue's last byte when the calls after the handshake are unencrypted.
pub(crate) const UNENCRYPTED: u8 = 0x01;

/// The prologue for `encryption`: `"easy-rpc"`, the protocol version (big-endian) and, with
/// encryption off, [`UNENCRYPTED`].
fn prologue(encryption: Encryption) -> ([u8; 11], usize) {
    let mut prologue = [0u8; 11];
    prologue[..8].copy_from_slice(b"easy-rpc");
    prologue[8..10].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    match encryption {
        Encryption::On => (prologue, 10),
        Encryption::Off => {
            prologue[10] = UNENCRYPTED;
            (prologue, 11)
        }
    }
}

/// A Noise handshake state of our protocol, pre-shared key and prologue (which binds whether
/// the calls after the handshake are sealed).
pub(crate) fn handshake_state(
    psk: &Psk,
    initiator: bool,
    encryption: Encryption,
) -> snow::HandshakeState {
    let params = NOISE_PARAMS.parse().expect("a valid Noise protocol name");
    let (prologue, len) = prologue(encryption);
    let prologue = &prologue[..len];
    #[cfg(not(feature = "fuzzing"))]
    let resolver = FallbackResolver::new(Box::new(Randomness), Box::new(DefaultResolver));
    #[cfg(feature = "fuzzing")]
    let resolver = FallbackResolver::new(Box::new(fuzzing::Resolver), Box::new(DefaultResolver));
    let builder = snow::Builder::with_resolver(params, Box::new(resolver))
        .psk(0, psk)
        .and_then(|b| b.prologue(prologue))
        .expect("a 32-byte key at psk0 and a prologue are valid");
    if initiator {
        builder.build_initiator()
    } else {
        builder.build_responder()
    }
    .expect("every primitive of the protocol resolves")
}

/// The randomness of the ephemeral keys (snow's resolver gives the rest).
#[derive(Clone, Copy)]
struct Randomness;

impl Random for Randomness {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        rand::fill(dest);
        Ok(())
    }
}

impl CryptoResolver for Randomness {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(*self))
    }

    fn resolve_dh(&self, _: &DHChoice) -> Option<Box<dyn Dh>> {
        None
    }

    fn resolve_hash(&self, _: &HashChoice) -> Option<Box<dyn Hash>> {
        None
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        match choice {
            CipherChoice::AESGCM => Some(Box::new(AesGcm(None))),
            _ => None,
        }
    }
}

/// The fuzzing build's stand-ins for the costly and random primitives, as fuzzing builds of
/// TLS libraries do (BoringSSL's `FUZZING` mode): a Diffie-Hellman that is a XOR of the two
/// keys (commutative, so a handshake still completes and both sides agree on keys) and fixed
/// "random" bytes, so that every input replays exactly. X25519 under coverage instrumentation
/// held the handshake targets to about 1,000 executions a second. The cipher and hash stay
/// real: the code under test (framing, record layer, handshake logic) is the production code.
/// Never enabled outside `fuzz/`: the `fuzzing` feature says so.
#[cfg(feature = "fuzzing")]
mod fuzzing {
    #[cfg(not(fuzzing))]
    compile_error!(
        "easy-rpc's `fuzzing` feature makes the handshake insecure; it builds only under \
         `cargo fuzz` (`--cfg fuzzing`)"
    );

    use super::*;

    #[derive(Clone, Copy)]
    pub(super) struct Resolver;

    impl Random for Resolver {
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
            dest.fill(0x5a);
            Ok(())
        }
    }

    impl CryptoResolver for Resolver {
        fn resolve_rng(&self) -> Option<Box<dyn Random>> {
            Some(Box::new(*self))
        }

        fn resolve_dh(&self, _: &DHChoice) -> Option<Box<dyn Dh>> {
            Some(Box::new(XorDh([0; 32])))
        }

        fn resolve_hash(&self, _: &HashChoice) -> Option<Box<dyn Hash>> {
            None
        }

        fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
            Randomness.resolve_cipher(choice)
        }
    }

    /// Public key = private key; the shared secret is their XOR.
    struct XorDh([u8; 32]);

    impl Dh for XorDh {
        fn name(&self) -> &'static str {
            "25519"
        }

        fn pub_len(&self) -> usize {
            32
        }

        fn priv_len(&self) -> usize {
            32
        }

        fn set(&mut self, key: &[u8]) {
            self.0.copy_from_slice(&key[..32]);
        }

        fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
            rng.try_fill_bytes(&mut self.0)
        }

        fn pubkey(&self) -> &[u8] {
            &self.0
        }

        fn privkey(&self) -> &[u8] {
            &self.0
        }

        fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
            for (o, (a, b)) in out.iter_mut().zip(self.0.iter().zip(pubkey)) {
                *o = a ^ b;
            }
            Ok(())
        }
    }
}

/// Noise's `AESGCM` cipher: AES-256-GCM with the 96-bit nonce made of 32 zero bits and the
/// message counter, big-endian (Noise specification, section 12.4). The key schedule and
/// GHASH key are computed when the key is set, not for every message; they are wiped when
/// replaced or dropped (`aes-gcm`'s `zeroize` feature).
struct AesGcm(Option<Aes256Gcm>);

/// The length of an AES-GCM tag.
const TAG_LEN: usize = 16;

impl AesGcm {
    fn aead(&self) -> &Aes256Gcm {
        // snow sets the key before it encrypts or decrypts anything with a cipher state.
        self.0
            .as_ref()
            .expect("snow sets a cipher's key before using it")
    }
}

fn nonce(n: u64) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_be_bytes());
    bytes.into()
}

impl Cipher for AesGcm {
    fn name(&self) -> &'static str {
        "AESGCM"
    }

    fn set(&mut self, key: &[u8; 32]) {
        self.0 = Some(Aes256Gcm::new(key.into()));
    }

    fn encrypt(&self, n: u64, ad: &[u8], plaintext: &[u8], out: &mut [u8]) -> usize {
        let len = plaintext.len();
        out[..len].copy_from_slice(plaintext);
        let tag = self
            .aead()
            .encrypt_inout_detached(&nonce(n), ad, (&mut out[..len]).into())
            .expect("a record is far below AES-GCM's message limit");
        out[len..len + TAG_LEN].copy_from_slice(&tag);
        len + TAG_LEN
    }

    fn decrypt(
        &self,
        n: u64,
        ad: &[u8],
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, snow::Error> {
        let len = ciphertext
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(snow::Error::Decrypt)?;
        let out = out.get_mut(..len).ok_or(snow::Error::Decrypt)?;
        out.copy_from_slice(&ciphertext[..len]);
        let tag = Tag::<aes_gcm::aead::consts::U16>::try_from(&ciphertext[len..])
            .map_err(|_| snow::Error::Decrypt)?;
        self.aead()
            .decrypt_inout_detached(&nonce(n), ad, out.into(), &tag)
            .map(|()| len)
            .map_err(|_| {
                out.fill(0);
                snow::Error::Decrypt
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn aes_gcm_matches_the_standard_vector_and_noise_nonces() {
        // McGrew & Viega, "The Galois/Counter Mode of Operation", test case 14: AES-256, zero
        // key, zero 96-bit IV (Noise's nonce 0), one zero block.
        let mut c = AesGcm(None);
        c.set(&[0; 32]);
        let mut out = [0u8; 32];
        assert_eq!(c.encrypt(0, b"", &[0; 16], &mut out), 32);
        assert_eq!(
            out.to_vec(),
            hex("cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919")
        );
        // Nonce n is 32 zero bits then n big-endian: the same as the raw AEAD with that IV.
        let n = 0x0102_0304_0506_0708u64;
        let mut iv = [0u8; 12];
        iv[4..].copy_from_slice(&n.to_be_bytes());
        let raw = Aes256Gcm::new(&[0; 32].into());
        let mut buf = *b"sealed";
        let tag = raw
            .encrypt_inout_detached(&iv.into(), b"ad", (&mut buf[..]).into())
            .unwrap();
        let mut out = [0u8; 6 + TAG_LEN];
        assert_eq!(c.encrypt(n, b"ad", b"sealed", &mut out), 22);
        assert_eq!(out[..6], buf);
        assert_eq!(out[6..], tag[..]);
        let mut back = [0u8; 6];
        assert_eq!(c.decrypt(n, b"ad", &out, &mut back).unwrap(), 6);
        assert_eq!(&back, b"sealed");
    }

    #[test]
    fn aes_gcm_refuses_what_was_altered_and_leaves_no_plaintext() {
        let mut c = AesGcm(None);
        c.set(&[7; 32]);
        let mut sealed = [0u8; 5 + TAG_LEN];
        c.encrypt(3, b"", b"hello", &mut sealed);
        let mut out = [0xAAu8; 5];
        for i in 0..sealed.len() {
            let mut bad = sealed;
            bad[i] ^= 1;
            assert!(c.decrypt(3, b"", &bad, &mut out).is_err(), "byte {i}");
            assert_eq!(out, [0; 5], "a refused record leaves nothing readable");
        }
        assert!(
            c.decrypt(4, b"", &sealed, &mut out).is_err(),
            "another nonce"
        );
        assert!(c.decrypt(3, b"x", &sealed, &mut out).is_err(), "other data");
        assert!(c.decrypt(3, b"", &sealed[..TAG_LEN - 1], &mut out).is_err());
        assert!(
            c.decrypt(3, b"", &sealed, &mut [0u8; 4]).is_err(),
            "no room"
        );
        c.set(&[8; 32]);
        assert!(c.decrypt(3, b"", &sealed, &mut out).is_err(), "another key");
    }

    #[test]
    fn ephemeral_keys_are_random() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        Randomness.try_fill_bytes(&mut a).unwrap();
        Randomness.try_fill_bytes(&mut b).unwrap();
        assert_ne!(a, b);
        let mut m1 = [0u8; 128];
        let mut m2 = [0u8; 128];
        handshake_state(&[5; 32], true, Encryption::On)
            .write_message(b"", &mut m1)
            .unwrap();
        handshake_state(&[5; 32], true, Encryption::On)
            .write_message(b"", &mut m2)
            .unwrap();
        assert_ne!(m1[..32], m2[..32], "two connections, two ephemeral keys");
    }

    #[test]
    fn a_handshake_with_our_primitives_completes_and_keys_agree() {
        let mut i = handshake_state(&[5; 32], true, Encryption::On);
        let mut r = handshake_state(&[5; 32], false, Encryption::On);
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
        let mut i = handshake_state(&[5; 32], true, Encryption::On);
        let mut r = handshake_state(&[6; 32], false, Encryption::On);
        let n = i.write_message(b"svc", &mut m).unwrap();
        assert!(r.read_message(&m[..n], &mut p).is_err());
    }

    #[test]
    fn the_prologue_binds_encryption_both_must_agree() {
        let (mut m, mut p) = ([0u8; 256], [0u8; 256]);
        for (client, server) in [
            (Encryption::On, Encryption::Off),
            (Encryption::Off, Encryption::On),
        ] {
            let mut i = handshake_state(&[5; 32], true, client);
            let mut r = handshake_state(&[5; 32], false, server);
            let n = i.write_message(b"svc", &mut m).unwrap();
            assert!(
                r.read_message(&m[..n], &mut p).is_err(),
                "client {client:?}, server {server:?}"
            );
        }
        // Both off: it completes.
        let mut i = handshake_state(&[5; 32], true, Encryption::Off);
        let mut r = handshake_state(&[5; 32], false, Encryption::Off);
        let n = i.write_message(b"svc", &mut m).unwrap();
        assert_eq!(r.read_message(&m[..n], &mut p).unwrap(), 3);
        let n = r.write_message(b"", &mut m).unwrap();
        i.read_message(&m[..n], &mut p).unwrap();
        assert_eq!(i.get_handshake_hash(), r.get_handshake_hash());
        // The sealed prologue is protocol 3's: "easy-rpc" and the version, nothing more.
        assert_eq!(prologue(Encryption::On).1, 10);
        assert_eq!(&prologue(Encryption::On).0[..8], b"easy-rpc");
        assert_eq!(prologue(Encryption::Off).0[10], UNENCRYPTED);
    }
}

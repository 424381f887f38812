//! The Noise protocol of the RPC handshake and records: `Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s`
//! through `snow`, with the prologue `"easy-rpc"` and the protocol version.
//!
//! `snow` runs the protocol and brings its primitives (X25519 from `curve25519-dalek`,
//! ChaCha20-Poly1305 and BLAKE2s from RustCrypto); the randomness of the ephemeral keys is
//! the workspace's CSPRNG (`rand`, seeded by the OS), so that a build has one entropy source.
//! (snow's primitives are on the RustCrypto release before the workspace's; `deny.toml`
//! names them.)

use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver, FallbackResolver};
use snow::types::{Cipher, Dh, Hash, Random};

use crate::handshake::PROTOCOL_VERSION;
use crate::keyring::Psk;

/// The Noise protocol name (its pattern and primitives).
pub(crate) const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";

/// A Noise handshake state of our protocol, prologue and pre-shared key.
pub(crate) fn handshake_state(psk: &Psk, initiator: bool) -> snow::HandshakeState {
    let params = NOISE_PARAMS.parse().expect("a valid Noise protocol name");
    let mut prologue = [0u8; 10];
    prologue[..8].copy_from_slice(b"easy-rpc");
    prologue[8..].copy_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    let resolver = FallbackResolver::new(Box::new(Randomness), Box::new(DefaultResolver));
    let builder = snow::Builder::with_resolver(params, Box::new(resolver))
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

    fn resolve_cipher(&self, _: &CipherChoice) -> Option<Box<dyn Cipher>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG_LEN: usize = 16;

    #[test]
    fn ephemeral_keys_are_random() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        Randomness.try_fill_bytes(&mut a).unwrap();
        Randomness.try_fill_bytes(&mut b).unwrap();
        assert_ne!(a, b);
        let mut m1 = [0u8; 128];
        let mut m2 = [0u8; 128];
        handshake_state(&[5; 32], true)
            .write_message(b"", &mut m1)
            .unwrap();
        handshake_state(&[5; 32], true)
            .write_message(b"", &mut m2)
            .unwrap();
        assert_ne!(m1[..32], m2[..32], "two connections, two ephemeral keys");
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

//! [`Secret`]: a cluster secret of 32 random bytes, parsed strictly, never printed, wiped on
//! drop.

use std::fmt;
use std::str::FromStr;

use data_encoding::{BASE64, BASE64_NOPAD, HEXLOWER_PERMISSIVE};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::error::Error;

/// The length of a secret in bytes.
pub const SECRET_LEN: usize = 32;

/// A secret has at least this many distinct byte values. 32 random bytes have about 30; fewer
/// than 12 happens by chance with a probability far below 2^-60.
const MIN_DISTINCT_BYTES: usize = 12;

/// A cluster secret: exactly 32 random bytes. Gossip and RPC keys are derived from it.
///
/// Make one with [`Secret::generate`] or `easy-rpc keygen`, give it to every node as
/// `CLUSTER_SECRET` (base64 or hex), and read it back with [`Secret::parse`]. A text that is not
/// 32 bytes in base64 or hex, or whose bytes are visibly not random (a passphrase, a repeated
/// byte), is refused: a guessable secret would let anyone who can reach a node try guesses
/// offline.
///
/// A `Secret` is handled as a secret: its `Debug` output is `"<redacted>"` (so a
/// [`Config`](crate::Config) or a builder that holds one can be logged), its bytes are wiped
/// from memory when it is dropped, and comparing two secrets takes the same time wherever they
/// differ. Only [`expose`](Secret::expose) and [`to_base64`](Secret::to_base64) give the bytes
/// back.
///
/// ```
/// use cluster_helper::Secret;
///
/// // Made with `easy-rpc keygen` (or `openssl rand -base64 32`).
/// let secret: Secret = "FOEfhc+kPcr4CgxAprLTPFXU2QXHkGBdXr0NCQ3yVDk=".parse()?;
/// assert_eq!(format!("{secret:?}"), r#""<redacted>""#);
/// assert_eq!(secret.expose().len(), 32);
/// // The same bytes in hex, and without the base64 padding.
/// let hex = "14e11f85cfa43dcaf80a0c40a6b2d33c55d4d905c790605d5ebd0d090df25439";
/// assert_eq!(Secret::parse(hex)?, secret);
/// assert_eq!(Secret::parse("FOEfhc+kPcr4CgxAprLTPFXU2QXHkGBdXr0NCQ3yVDk")?, secret);
/// // A passphrase is refused, with a message that says how to make a secret.
/// let e = Secret::parse("hunter2").unwrap_err().to_string();
/// assert!(e.contains("easy-rpc keygen") && !e.contains("hunter2"));
/// # Ok::<(), cluster_helper::Error>(())
/// ```
#[derive(Clone)]
pub struct Secret(Box<[u8; SECRET_LEN]>);

impl Secret {
    /// A new secret from the operating system's random number generator.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide random bytes (a node cannot run safely then).
    pub fn generate() -> Secret {
        let mut secret = Secret(Box::new([0; SECRET_LEN]));
        getrandom::fill(&mut secret.0[..]).expect("the operating system provides random bytes");
        secret
    }

    /// A secret made of these bytes, as they are (for a key kept in a secret store as raw
    /// bytes). They must come from a random source: nothing is checked here.
    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> Secret {
        let mut bytes = bytes;
        let secret = Secret(Box::new(bytes));
        bytes.zeroize();
        secret
    }

    /// Parses a secret: 32 bytes in standard base64 (with or without the `=` padding) or in
    /// hex (64 digits), surrounding whitespace ignored.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSecret`] saying what is wrong (length, encoding, bytes that are not
    /// random) and how to make a secret; the error never contains the text given.
    pub fn parse(text: &str) -> Result<Secret, Error> {
        parse_secret("secret", text)
    }

    /// The secret's 32 bytes.
    pub fn expose(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }

    /// The secret in standard base64 (44 characters), as `easy-rpc keygen` prints it and
    /// [`parse`](Secret::parse) reads it. This exposes the secret: write it only where the
    /// secret belongs.
    pub fn to_base64(&self) -> String {
        BASE64.encode(&self.0[..])
    }

    /// The secret in lowercase hex (64 digits). This exposes the secret, like
    /// [`to_base64`](Secret::to_base64).
    pub fn to_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.0[..])
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl PartialEq for Secret {
    /// Compares in constant time.
    fn eq(&self, other: &Secret) -> bool {
        self.0[..].ct_eq(&other.0[..]).into()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl FromStr for Secret {
    type Err = Error;

    /// See [`Secret::parse`].
    fn from_str(text: &str) -> Result<Secret, Error> {
        Secret::parse(text)
    }
}

/// Parses a secret given as `setting` (named in the error, e.g. `CLUSTER_SECRET`).
pub(crate) fn parse_secret(setting: &str, text: &str) -> Result<Secret, Error> {
    let fail = |reason: String| Error::InvalidSecret {
        setting: setting.to_owned(),
        reason,
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(fail("it is empty".into()));
    }
    let is_hex = text.bytes().all(|b| b.is_ascii_hexdigit());
    let mut bytes = if is_hex && text.len().is_multiple_of(2) {
        if text.len() != 2 * SECRET_LEN {
            return Err(fail(format!(
                "it is {} hex digits, not {}",
                text.len(),
                2 * SECRET_LEN
            )));
        }
        HEXLOWER_PERMISSIVE
            .decode(text.as_bytes())
            .map_err(|_| fail("it is not valid hex".into()))?
    } else {
        let codec = if text.ends_with('=') {
            &BASE64
        } else {
            &BASE64_NOPAD
        };
        codec.decode(text.as_bytes()).map_err(|_| {
            fail("it is neither base64 nor hex (a passphrase is not accepted)".into())
        })?
    };
    let result = check_random(&bytes).map_err(fail);
    let secret = result.map(|()| {
        let mut fixed = [0u8; SECRET_LEN];
        fixed.copy_from_slice(&bytes);
        Secret::from_bytes(fixed)
    });
    bytes.zeroize();
    secret
}

/// Checks that `bytes` look like a secret: 32 bytes that are not visibly non-random.
fn check_random(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() != SECRET_LEN {
        return Err(format!(
            "it decodes to {} bytes, not {SECRET_LEN}",
            bytes.len()
        ));
    }
    let mut seen = [false; 256];
    for &b in bytes {
        seen[usize::from(b)] = true;
    }
    let distinct = seen.iter().filter(|s| **s).count();
    if distinct < MIN_DISTINCT_BYTES {
        return Err(format!(
            "its bytes are not random (only {distinct} distinct byte values; random bytes \
             have about 30)"
        ));
    }
    // 32 random bytes are all printable ASCII with a probability of about 10^-14.
    if bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Err(
            "it decodes to printable text, not random bytes (an encoded passphrase?)".into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 32 bytes 0..=31: enough distinct values, not text.
    fn sample() -> [u8; 32] {
        std::array::from_fn(|i| i as u8 * 7 + 1)
    }

    fn reason(text: &str) -> String {
        Secret::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn base64_with_and_without_padding_and_hex() {
        let bytes = sample();
        let padded = BASE64.encode(&bytes);
        assert_eq!(padded.len(), 44);
        let want = Secret::from_bytes(bytes);
        assert_eq!(Secret::parse(&padded).unwrap(), want);
        assert_eq!(Secret::parse(padded.trim_end_matches('=')).unwrap(), want);
        assert_eq!(
            Secret::parse(&format!(" \n\t{padded}\r\n")).unwrap(),
            want,
            "surrounding whitespace is trimmed"
        );
        let hex = data_encoding::HEXLOWER.encode(&bytes);
        assert_eq!(Secret::parse(&hex).unwrap(), want);
        assert_eq!(Secret::parse(&hex.to_uppercase()).unwrap(), want);
        assert_eq!(want.to_base64(), padded);
        assert_eq!(want.to_hex(), hex);
        assert_eq!(padded.parse::<Secret>().unwrap(), want);
    }

    #[test]
    fn generated_secrets_parse_back_and_differ() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert_ne!(a, b);
        assert_eq!(Secret::parse(&a.to_base64()).unwrap(), a);
        assert_eq!(Secret::parse(&a.to_hex()).unwrap(), a);
    }

    #[test]
    fn wrong_lengths_are_refused() {
        let short = BASE64.encode(&sample()[..16]);
        let e = reason(&short);
        assert!(e.contains("16 bytes, not 32"), "{e}");
        let long = BASE64.encode(&[sample(), sample()].concat());
        let e = reason(&long);
        assert!(e.contains("64 bytes, not 32"), "{e}");
        let e = reason(&"ab".repeat(16));
        assert!(e.contains("32 hex digits, not 64"), "{e}");
        let e = reason(&"ab".repeat(33));
        assert!(e.contains("66 hex digits"), "{e}");
        let e = reason("  ");
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn passphrases_and_low_entropy_are_refused() {
        let e = reason("correct horse battery staple");
        assert!(e.contains("neither base64 nor hex"), "{e}");
        assert!(!e.contains("horse"), "the text given is never shown: {e}");
        // 32 equal bytes.
        let e = reason(&BASE64.encode(&[7u8; 32]));
        assert!(e.contains("not random") && e.contains("1 distinct"), "{e}");
        let e = reason(&"00".repeat(32));
        assert!(e.contains("not random"), "{e}");
        // A pattern of 4 values.
        let e = reason(&BASE64.encode(&[1u8, 2, 3, 4].repeat(8)));
        assert!(e.contains("4 distinct"), "{e}");
        // A 32-character passphrase, base64-encoded.
        let e = reason(&BASE64.encode(b"my very own passphrase of 32 by!"));
        assert!(e.contains("printable text"), "{e}");
    }

    #[test]
    fn errors_say_how_to_make_a_secret() {
        let e = reason("short");
        assert!(
            e.starts_with("invalid secret:")
                && e.contains("easy-rpc keygen")
                && e.contains("openssl rand -base64 32")
                && e.contains("base64")
                && e.contains("hex"),
            "{e}"
        );
        let e = parse_secret("CLUSTER_SECRET", "short")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid CLUSTER_SECRET:"), "{e}");
    }

    #[test]
    fn debug_is_redacted() {
        let s = Secret::from_bytes(sample());
        assert_eq!(format!("{s:?}"), r#""<redacted>""#);
        assert!(!format!("{:?}", Some(&s)).contains(&s.to_base64()));
    }
}

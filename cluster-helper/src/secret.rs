//! [`Secret`]: the cluster secret, which is never printed.

use std::fmt;
use std::sync::Arc;

/// The cluster secret: gossip and RPC keys are derived from it.
///
/// Its `Debug` output is `"<redacted>"`, so a [`Config`](crate::Config), a
/// [`NodeBuilder`](crate::NodeBuilder) or anything else that holds one can be logged without
/// leaking it. Only [`expose`](Secret::expose) gives the bytes back.
///
/// ```
/// use cluster_helper::Secret;
///
/// let secret = Secret::new("s3cret-value");
/// assert_eq!(format!("{secret:?}"), r#""<redacted>""#);
/// assert_eq!(format!("{:?}", Some(&secret)), r#"Some("<redacted>")"#);
/// assert_eq!(secret.expose(), b"s3cret-value");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    /// A secret made of these bytes.
    pub fn new(bytes: impl AsRef<[u8]>) -> Secret {
        Secret(Arc::from(bytes.as_ref()))
    }

    /// The secret's bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Whether the secret has no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl From<Vec<u8>> for Secret {
    fn from(bytes: Vec<u8>) -> Secret {
        Secret(Arc::from(bytes))
    }
}

impl From<&[u8]> for Secret {
    fn from(bytes: &[u8]) -> Secret {
        Secret::new(bytes)
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Secret {
        Secret::from(text.into_bytes())
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Secret {
        Secret::new(text)
    }
}

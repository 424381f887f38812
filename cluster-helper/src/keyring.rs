//! A node's keyring: its secrets in order (the first one sends, all are accepted), the keys
//! derived from them, swapped atomically when the keyring changes at runtime.

use std::sync::Arc;

use arc_swap::ArcSwap;
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;

use crate::secret::Secret;
use crate::transport::ClusterKey;

/// What keys derive from in insecure mode, instead of a secret. It is public (it is in this
/// source file), so those keys protect nothing against anyone who reads it.
const INSECURE_SECRET: &[u8] = b"easy-rpc insecure mode: no cluster secret, no protection";

/// The purpose of the gossip keys.
pub(crate) const GOSSIP: &str = "gossip";

/// One version of the keyring: the secrets and the gossip ciphers derived from them, in the
/// same order.
pub(crate) struct Ring {
    /// Empty in insecure mode.
    secrets: Vec<Secret>,
    /// Never empty: the first one seals.
    pub(crate) gossip: Vec<XChaCha20Poly1305>,
}

/// The keyring of a node, shared by the node's handle (RPC keys, rotation) and its gossip
/// transport, which reads it without locking.
pub(crate) struct Keyring {
    cluster: String,
    ring: ArcSwap<Ring>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("cluster", &self.cluster)
            .field("keys", &self.ring.load().gossip.len())
            .finish_non_exhaustive()
    }
}

/// A handle on a node's keyring ([`Node::key_source`](crate::Node::key_source)): the keys it
/// gives follow the keyring as [`Node::set_secrets`](crate::Node::set_secrets) changes it.
///
/// ```
/// # async fn example() -> Result<(), cluster_helper::Error> {
/// use cluster_helper::{Node, Secret};
///
/// let (old, new) = (Secret::generate(), Secret::generate());
/// let node = Node::builder()
///     .cluster("docs-keys").listen("127.0.0.1:0").secret_key(old.clone())
///     .start().await?;
/// let keys = node.key_source();
/// assert_eq!(keys.keys("rpc").len(), 1);
/// node.set_secrets(vec![new, old])?;
/// assert_eq!(keys.keys("rpc").len(), 2);
/// # node.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct KeySource(pub(crate) Arc<Keyring>);

impl KeySource {
    /// The keys for `purpose`, one per secret of the keyring now, the sending one first.
    pub fn keys(&self, purpose: &str) -> Vec<ClusterKey> {
        self.0.keys(purpose)
    }
}

impl Keyring {
    /// A keyring of `secrets` for `cluster`; no secrets means insecure mode.
    pub(crate) fn new(cluster: &str, secrets: Vec<Secret>) -> Keyring {
        let ring = Ring::new(cluster, secrets);
        Keyring {
            cluster: cluster.to_owned(),
            ring: ArcSwap::from_pointee(ring),
        }
    }

    /// Replaces the secrets (not empty); takes effect at once.
    pub(crate) fn set(&self, secrets: Vec<Secret>) {
        debug_assert!(!secrets.is_empty());
        self.ring.store(Arc::new(Ring::new(&self.cluster, secrets)));
    }

    /// The current ring.
    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<Ring>> {
        self.ring.load()
    }

    /// The keys for `purpose`, one per secret, the sending one first.
    pub(crate) fn keys(&self, purpose: &str) -> Vec<ClusterKey> {
        self.ring.load().keys(&self.cluster, purpose)
    }

    /// How many secrets the keyring holds (0 in insecure mode).
    pub(crate) fn len(&self) -> usize {
        self.ring.load().secrets.len()
    }
}

impl Ring {
    fn new(cluster: &str, secrets: Vec<Secret>) -> Ring {
        let mut ring = Ring {
            secrets,
            gossip: Vec::new(),
        };
        ring.gossip = ring
            .keys(cluster, GOSSIP)
            .iter()
            .map(|k| XChaCha20Poly1305::new(k.as_bytes().into()))
            .collect();
        ring
    }

    fn keys(&self, cluster: &str, purpose: &str) -> Vec<ClusterKey> {
        if self.secrets.is_empty() {
            return vec![ClusterKey::derive(INSECURE_SECRET, cluster, purpose)];
        }
        self.secrets
            .iter()
            .map(|s| ClusterKey::derive(s.expose(), cluster, purpose))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_ring_order_and_insecure_keys_are_fixed() {
        let (a, b) = (Secret::generate(), Secret::generate());
        let ring = Keyring::new("c", vec![a.clone(), b.clone()]);
        let keys = ring.keys("rpc");
        assert_eq!(keys.len(), 2);
        assert_eq!(
            keys[0].as_bytes(),
            ClusterKey::derive(a.expose(), "c", "rpc").as_bytes()
        );
        assert_eq!(
            keys[1].as_bytes(),
            ClusterKey::derive(b.expose(), "c", "rpc").as_bytes()
        );
        ring.set(vec![b.clone()]);
        assert_eq!(ring.keys("rpc").len(), 1);
        assert_eq!(ring.load().gossip.len(), 1);
        assert_eq!(ring.keys("rpc")[0].as_bytes(), keys[1].as_bytes());

        let insecure = Keyring::new("c", Vec::new());
        assert_eq!(insecure.len(), 0);
        let k = insecure.keys("rpc");
        assert_eq!(k.len(), 1);
        assert_eq!(
            k[0].as_bytes(),
            Keyring::new("c", Vec::new()).keys("rpc")[0].as_bytes()
        );
        assert_ne!(
            k[0].as_bytes(),
            Keyring::new("d", Vec::new()).keys("rpc")[0].as_bytes()
        );
    }
}

//! The node's RPC keys: the first one opens connections, every one is accepted from a caller,
//! so that a cluster can rotate its secret without refusing anyone on the way.

use std::sync::Arc;

use arc_swap::ArcSwap;
use cluster_helper::ClusterKey;

/// What the RPC keys are derived for from each cluster secret (with the cluster name).
pub(crate) const RPC_KEY_PURPOSE: &str = "rpc-psk";

/// A 32-byte pre-shared key of the handshake.
pub(crate) type Psk = [u8; 32];

/// The node's RPC keys, replaceable at runtime, read lock-free by every handshake.
pub(crate) struct KeyRing(ArcSwap<Vec<Psk>>);

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyRing({} keys)", self.0.load().len())
    }
}

impl KeyRing {
    /// A ring of `keys` (first = the one to connect with).
    pub(crate) fn new(keys: Vec<Psk>) -> Self {
        KeyRing(ArcSwap::from_pointee(Self::non_empty(keys)))
    }

    /// The pre-shared keys of cluster keys.
    pub(crate) fn psks(keys: &[ClusterKey]) -> Vec<Psk> {
        keys.iter().map(|k| *k.as_bytes()).collect()
    }

    /// An empty list (never given by a node) becomes one key of zeros, which no peer with a
    /// real secret shares.
    fn non_empty(keys: Vec<Psk>) -> Vec<Psk> {
        if keys.is_empty() { vec![[0; 32]] } else { keys }
    }

    /// Replaces the keys (connections already open keep theirs).
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    pub(crate) fn set(&self, keys: Vec<Psk>) {
        self.0.store(Arc::new(Self::non_empty(keys)));
    }

    /// The keys now, first = the one to connect with.
    pub(crate) fn current(&self) -> Arc<Vec<Psk>> {
        self.0.load_full()
    }

    /// The key to connect with.
    pub(crate) fn sending(&self) -> Psk {
        self.0.load()[0]
    }
}

//! The node's RPC keys: the first one opens connections, every one is accepted from a caller,
//! so that a cluster can rotate its secret without refusing anyone on the way. They are
//! derived from the cluster node's keyring on every handshake, so they follow
//! `set_secrets` at once (the derivation is an HKDF per secret, far below the handshake's
//! Diffie-Hellman).

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use cluster_helper::{ClusterKey, KeySource};

/// What the RPC keys are derived for from each cluster secret (with the cluster name).
pub(crate) const RPC_KEY_PURPOSE: &str = "rpc-psk";

/// A 32-byte pre-shared key of the handshake.
pub(crate) type Psk = [u8; 32];

/// The node's RPC keys, read by every handshake.
pub(crate) struct KeyRing {
    /// The cluster node's keyring (none in unit tests).
    source: Option<KeySource>,
    /// Keys set by hand (tests), which win over the source.
    fixed: ArcSwapOption<Vec<Psk>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyRing({} keys)", self.current().len())
    }
}

impl KeyRing {
    /// The keys of a cluster node's keyring, following it.
    pub(crate) fn from_source(source: KeySource) -> Self {
        KeyRing {
            source: Some(source),
            fixed: ArcSwapOption::empty(),
        }
    }

    /// A ring of `keys` (first = the one to connect with).
    #[cfg(test)]
    pub(crate) fn new(keys: Vec<Psk>) -> Self {
        KeyRing {
            source: None,
            fixed: ArcSwapOption::from_pointee(Self::non_empty(keys)),
        }
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

    /// Replaces the keys by hand, apart from the node's keyring (connections already open
    /// keep theirs). For tests.
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    pub(crate) fn set(&self, keys: Vec<Psk>) {
        self.fixed.store(Some(Arc::new(Self::non_empty(keys))));
    }

    /// The keys now, first = the one to connect with.
    pub(crate) fn current(&self) -> Arc<Vec<Psk>> {
        if let Some(fixed) = self.fixed.load_full() {
            return fixed;
        }
        let keys = match &self.source {
            Some(source) => Self::psks(&source.keys(RPC_KEY_PURPOSE)),
            None => Vec::new(),
        };
        Arc::new(Self::non_empty(keys))
    }

    /// The key to connect with.
    pub(crate) fn sending(&self) -> Psk {
        self.current()[0]
    }
}

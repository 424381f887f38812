//! What the picker knows of one node of a role: who it is, whether it is this node, its load,
//! and until when it is skipped because its connection failed. No sockets: the picker and its
//! tests work on this alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cluster_helper::NodeId;

use super::key::name_hash;
use super::load::{PeakEwma, PendingRequests};

/// One node as the picker sees it.
#[derive(Debug)]
pub(crate) struct Peer {
    /// The node.
    pub(crate) node: NodeId,
    /// The rendezvous hash of its name ([`name_hash`]).
    pub(crate) name_hash: u64,
    /// Whether it is the calling node itself.
    pub(crate) local: bool,
    /// Calls in flight to it from this node.
    pub(crate) pending: PendingRequests,
    /// Its latency estimate.
    pub(crate) ewma: PeakEwma,
    /// Skipped until then (milliseconds on the node's clock): its connection failed.
    down_until_ms: AtomicU64,
}

impl Peer {
    /// A node with no load, not down.
    pub(crate) fn new(node: NodeId, local: bool) -> Self {
        Peer {
            name_hash: name_hash(node.name()),
            node,
            local,
            pending: PendingRequests::default(),
            ewma: PeakEwma::default(),
            down_until_ms: AtomicU64::new(0),
        }
    }

    /// Whether it is skipped at `now_ms`.
    pub(crate) fn is_down(&self, now_ms: u64) -> bool {
        self.down_until_ms.load(Ordering::Relaxed) > now_ms
    }

    /// Skips it for `period` from `now_ms`.
    pub(crate) fn mark_down(&self, now_ms: u64, period: Duration) {
        let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        self.down_until_ms
            .store(now_ms.saturating_add(period_ms), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_for_a_period_and_never_overflows() {
        let p = Peer::new(NodeId::new("a", 1).unwrap(), false);
        assert!(!p.is_down(0));
        p.mark_down(100, Duration::from_millis(50));
        assert!(p.is_down(149));
        assert!(!p.is_down(150));
        p.mark_down(u64::MAX - 1, Duration::MAX);
        assert!(p.is_down(u64::MAX - 1));
    }
}

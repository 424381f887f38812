//! A node's metrics: per-method calls (client) and requests (server) by outcome, their
//! latency and how many are in flight, reroutes and retries, the server's connections and
//! refusals, and membership (members by status, nodes per role, joins, leaves, failures,
//! gossip traffic), in the Prometheus text format at the management endpoint's `/metrics`,
//! from [`Node::metrics_text`](crate::Node::metrics_text), or as a
//! [`prometheus_client`] collector for a registry of the program's own
//! ([`Node::metrics`](crate::Node::metrics)).
//!
//! Always on: a call costs a few relaxed atomic additions on counters found by the method's
//! slot number, no lock and no lookup by name; everything else (membership, gossip and
//! server counters) is read when scraped.

mod calls;
mod collector;
mod histogram;
mod membership;

use std::sync::atomic::AtomicU64;

pub(crate) use calls::{ClientCall, CountedRequest, Methods, Outcome, hedged, rerouted, retried};
#[cfg(feature = "test-util")]
pub use collector::ScrapeFixture;
pub(crate) use collector::text;
pub use collector::{MAX_ROLE_LABELS, NodeMetrics, OTHER_ROLES};
pub(crate) use membership::count_membership;

/// The counters of one node that are updated as things happen (the rest is read at scrape).
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Calls this node made, by method.
    pub(crate) client: Methods,
    /// Requests this node served, by method.
    pub(crate) server: Methods,
    /// Nodes that started serving ([`ClusterEvent::NodeUp`](cluster_helper::ClusterEvent)).
    pub(crate) joins: AtomicU64,
    /// Nodes that announced they leave.
    pub(crate) leaves: AtomicU64,
    /// Nodes that went down without leaving: found by the failure detector (or replaced by a
    /// newer incarnation before they were).
    pub(crate) failures: AtomicU64,
    /// Registry events the counting task missed (it fell behind).
    pub(crate) events_missed: AtomicU64,
}

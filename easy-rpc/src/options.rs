//! Client settings: deadlines, balancing strategy, retries.

use std::time::Duration;

/// How [`Any`](crate::Any) picks one node of a role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Strategy {
    /// Power of two choices by pending requests: two random nodes, the one with fewer calls in
    /// flight from this node (tower's `p2c` with `PendingRequests` load). The default.
    #[default]
    P2c,
    /// Power of two choices by peak EWMA of latency times pending requests (tower's
    /// `PeakEwma` load): favours nodes that answer faster.
    P2cPeakEwma,
    /// Each node in turn.
    RoundRobin,
    /// A uniformly random node.
    Random,
    /// This node if it has the role and serves the service, else [`Strategy::P2c`].
    LocalFirst,
}

/// Settings of calls made through a node: per node ([`NodeBuilder::client_options`]), then per
/// target (`node.any("billing").timeout(..)`), then per method (`#[easy_rpc(timeout_ms = N)]`).
///
/// [`NodeBuilder::client_options`]: crate::NodeBuilder::client_options
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientOptions {
    /// A call's deadline when neither the call nor the method sets one. Default 10 s.
    pub timeout: Duration,
    /// How long connecting (TCP plus handshake) may take. Default 2 s.
    pub connect_timeout: Duration,
    /// How `any` picks a node. Default [`Strategy::P2c`].
    pub strategy: Strategy,
    /// How many more nodes a call that provably never reached a server is sent to. Default 3.
    pub reroutes: u32,
    /// How many times an idempotent call is retried after a lost connection. Default 2.
    pub retries: u32,
    /// The first retry's backoff, doubled each time. Default 10 ms.
    pub backoff: Duration,
    /// How long a node whose connection failed is skipped by `any` before it is tried again.
    /// Default 1 s.
    pub down_for: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            strategy: Strategy::P2c,
            reroutes: 3,
            retries: 2,
            backoff: Duration::from_millis(10),
            down_for: Duration::from_secs(1),
        }
    }
}

//! [`ServerStats`]: what a node's RPC server holds now and what it refused so far.

/// A snapshot of a node's RPC server: what it holds now and what it refused so far, from
/// [`Node::server_stats`](crate::Node::server_stats). Counters only grow; the others are
/// the values of the moment.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), easy_rpc::Error> {
/// let node = easy_rpc::Node::builder()
///     .cluster("docs-stats").name("n1").listen("127.0.0.1:0")
///     .secret_key(easy_rpc::cluster_helper::Secret::generate())
///     .default_node(false)
///     .start().await?;
/// let stats = node.server_stats();
/// assert_eq!(stats.connections, 0);
/// assert_eq!(stats.refused.total(), 0);
/// assert!(stats.max_connections > 0);
/// node.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// TCP connections the server holds now, authenticated or not.
    pub connections: usize,
    /// Connections whose handshake is under way now.
    pub pending_handshakes: usize,
    /// Connections open now after a completed handshake.
    pub open: usize,
    /// Connections that completed the handshake so far.
    pub accepted: usize,
    /// Connections refused at the handshake so far (wrong secret, cluster, version, unknown
    /// service, garbage, timeout, leaving).
    pub rejected: usize,
    /// Connections closed as soon as they were accepted, by reason.
    pub refused: RefusedConnections,
    /// Requests answered "not run: overloaded": their connection had
    /// [`ServerLimits::max_concurrent_requests`](crate::ServerLimits::max_concurrent_requests)
    /// running, or the node had [`ServerLimits::max_running`](crate::ServerLimits::max_running)
    /// running and [`ServerLimits::max_queued`](crate::ServerLimits::max_queued) waiting.
    pub overloaded_requests: usize,
    /// Requests waiting now for room under
    /// [`ServerLimits::max_running`](crate::ServerLimits::max_running) (0 without that cap).
    pub queued_requests: usize,
    /// Requests answered "not run" because their caller's deadline had passed before they
    /// could start (see [`ServerLimits::max_clock_skew`](crate::ServerLimits::max_clock_skew)).
    pub expired_requests: usize,
    /// Connections closed because a frame was over
    /// [`ServerLimits::max_frame`](crate::ServerLimits::max_frame).
    pub frames_too_large: usize,
    /// Connections closed because a partially received frame did not fit in what was left of
    /// [`ServerLimits::max_buffered_bytes`](crate::ServerLimits::max_buffered_bytes).
    pub frames_over_budget: usize,
    /// Bytes held now by partially received frames (at most `max_buffered_bytes`).
    pub buffered_bytes: usize,
    /// The connection cap in force (set, or derived from the open-file limit at start).
    pub max_connections: usize,
}

/// Connections a server closed as soon as it accepted them, by reason (see
/// [`ServerLimits`](crate::ServerLimits)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefusedConnections {
    /// The server held its maximum of connections.
    pub max_connections: usize,
    /// The server had its maximum of pending handshakes.
    pub pending_handshakes: usize,
    /// The source address had its maximum of pending handshakes.
    pub pending_per_ip: usize,
    /// The process had no file descriptor left (accepted on a spare one, then closed).
    pub descriptors: usize,
}

impl RefusedConnections {
    /// All refusals, whatever the reason.
    pub fn total(&self) -> usize {
        self.max_connections + self.pending_handshakes + self.pending_per_ip + self.descriptors
    }
}

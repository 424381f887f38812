//! What the accept loop and every connection of one node share: the services served, the
//! handshake key, whether the node is leaving, and the requests in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use super::Served;
use super::limits::Bounds;
use super::stats::{RefusedConnections, ServerStats};
use crate::keyring::KeyRing;
use crate::link::Encryption;

/// State shared by the accept loop and every connection of one node.
pub(crate) struct ServerState {
    pub(crate) services: RwLock<HashMap<&'static str, Served>>,
    /// The handshake keys (the node's ring, shared with its client side).
    pub(crate) keys: Arc<KeyRing>,
    /// Whether the node's RPC connections (served and made) are sealed after the handshake.
    pub(crate) encryption: Encryption,
    pub(crate) cluster: String,
    /// Set when the node starts leaving: new connections are refused.
    leaving: AtomicBool,
    /// Set once every caller has had time to hear that the node leaves: requests arriving on
    /// existing connections are answered "not run" so the caller sends them elsewhere.
    refusing: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
    /// Connections refused at the handshake (for tests and metrics).
    pub(crate) rejected: AtomicUsize,
    /// Connections that completed the handshake.
    pub(crate) accepted: AtomicUsize,
    /// Connections open now (after the handshake).
    pub(crate) open: AtomicUsize,
    /// The server's limits and what they hold and refused.
    pub(crate) bounds: Arc<Bounds>,
    /// The layers around every handler ([`NodeBuilder::server_layer`]), if any.
    ///
    /// [`NodeBuilder::server_layer`]: crate::NodeBuilder::server_layer
    pub(crate) layers: Option<super::ServerStack>,
    /// The node's metrics (the server counts its requests there; the client side shares it).
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// This node's id, as the request spans show it.
    pub(crate) node: String,
    /// Which calls and requests get spans ([`crate::NodeBuilder::trace_sample`]); the client
    /// side reads it here too.
    pub(crate) sampler: crate::trace::Sampler,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("cluster", &self.cluster)
            .field("leaving", &self.leaving)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl ServerState {
    pub(crate) fn new(keys: Arc<KeyRing>, cluster: String, bounds: Bounds) -> Self {
        ServerState {
            services: RwLock::new(HashMap::new()),
            keys,
            encryption: Encryption::On,
            cluster,
            leaving: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            rejected: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            bounds: Arc::new(bounds),
            layers: None,
            metrics: Arc::default(),
            node: String::new(),
            sampler: crate::trace::Sampler::ALL,
        }
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> ServerStats {
        let b = &self.bounds;
        let n = |c: &AtomicUsize| c.load(Ordering::Relaxed);
        ServerStats {
            connections: n(&b.connections),
            pending_handshakes: b.pending(),
            open: n(&self.open),
            accepted: n(&self.accepted),
            rejected: n(&self.rejected),
            refused: RefusedConnections {
                max_connections: n(&b.refused_connections),
                pending_handshakes: n(&b.refused_pending),
                pending_per_ip: n(&b.refused_per_ip),
                descriptors: n(&b.refused_descriptors),
            },
            overloaded_requests: n(&b.refused_requests),
            queued_requests: b.admission.as_ref().map_or(0, |a| a.queued()),
            expired_requests: n(&b.expired_requests),
            frames_too_large: n(&b.budget.too_large),
            frames_over_budget: n(&b.budget.over_budget),
            buffered_bytes: b.budget.used(),
            max_connections: b.max_connections,
        }
    }

    pub(crate) fn start_leaving(&self) {
        self.leaving.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::SeqCst)
    }

    pub(crate) fn start_refusing(&self) {
        self.refusing.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_refusing(&self) -> bool {
        self.refusing.load(Ordering::SeqCst)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until no request is being served (or `max` passes). Returns whether it drained.
    pub(crate) async fn drained(&self, max: Duration) -> bool {
        let deadline = crate::deadline::after(tokio::time::Instant::now().into_std(), max);
        loop {
            let notified = self.idle.notified();
            if self.in_flight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline.into(), notified)
                .await
                .is_err()
            {
                return self.in_flight() == 0;
            }
        }
    }
}

/// Counts a request as in flight while it lives.
pub(crate) struct InFlight(Arc<ServerState>);

impl InFlight {
    pub(crate) fn new(state: &Arc<ServerState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Only a draining node waits for idleness; others skip the notification's lock.
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 && self.0.is_leaving() {
            self.0.idle.notify_waiters();
        }
    }
}

//! The state of one node's RPC, shared by its server, its pool and every target made from it
//! (`node.any(..)` holds an `Arc` of it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cluster_helper::{NodeId, Registry};

use crate::client::{ClientStack, Hedging, Pool, RetryBudget, RoleSets};
use crate::keyring::KeyRing;
use crate::link::Encryption;
use crate::options::ClientOptions;
use crate::server::{Bounds, ServerLimits, ServerStack, ServerState, raise_open_file_limit};

/// State shared by every client and the server of one node. It holds the node's registry, not
/// the cluster node itself: only [`Node`](crate::Node) handles own that, so dropping the last
/// one stops the node even while targets made from it live on.
pub(crate) struct Rpc {
    /// This node.
    pub(crate) id: NodeId,
    pub(crate) registry: Registry,
    /// The handshake keys, derived from the cluster secrets (shared with the server).
    pub(crate) keys: Arc<KeyRing>,
    pub(crate) options: ClientOptions,
    /// The retries and reroutes the node's calls may still make.
    pub(crate) budget: RetryBudget,
    /// Hedged calls: each hedged method's recent latencies, and the counters.
    pub(crate) hedging: Hedging,
    pub(crate) pool: Pool,
    pub(crate) roles: RoleSets,
    pub(crate) server: Arc<ServerState>,
    /// The layers around each attempt of a call
    /// ([`NodeBuilder::client_layer`](crate::NodeBuilder::client_layer)), if any: without,
    /// attempts are sent directly.
    pub(crate) layers: Option<ClientStack>,
    /// The node's metrics (the same as the server's).
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// The start of the node's millisecond clock (down marks, latency decay).
    epoch: Instant,
    /// Set once the node has shut down (or was killed): calls through it fail with
    /// `RpcError::NotRunning`.
    stopped: AtomicBool,
    /// When this process last stopped running for a while (see [`Rpc::watch_pauses`]), in
    /// [`now_ms`](Self::now_ms) milliseconds; `u64::MAX` if never.
    paused_at_ms: AtomicU64,
    /// When the pause watch last woke, in `now_ms` milliseconds.
    ticked_at_ms: AtomicU64,
}

impl std::fmt::Debug for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rpc")
            .field("node", &self.id)
            .field("options", &self.options)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// A node's tower stacks, built from the builder's layers (`None`: no layer, the direct path).
#[derive(Default)]
pub(crate) struct Layers {
    /// Around each attempt of a call.
    pub(crate) client: Option<ClientStack>,
    /// Around every handler.
    pub(crate) server: Option<ServerStack>,
}

/// How often the pause watch wakes.
const PAUSE_TICK_MS: u64 = 100;
/// A wake-up this many ticks late is a pause of the process.
const PAUSE_FACTOR: u32 = 4;
/// How long after a pause the failure detector's downs are not trusted to end calls in flight
/// (its view catches up within a few gossip rounds).
const PAUSE_MEMORY_MS: u64 = 10_000;

impl Rpc {
    pub(crate) fn new(
        node: &cluster_helper::Node,
        options: ClientOptions,
        limits: ServerLimits,
        layers: Layers,
        encryption: Encryption,
        sampler: crate::trace::Sampler,
    ) -> Arc<Rpc> {
        let keys = Arc::new(KeyRing::from_source(node.key_source()));
        let bounds = Bounds::new(limits, raise_open_file_limit());
        let mut server = ServerState::new(keys.clone(), node.cluster().to_owned(), bounds);
        server.layers = layers.server;
        server.encryption = encryption;
        server.sampler = sampler;
        server.node = node.id().to_string();
        let server = Arc::new(server);
        Arc::new(Rpc {
            id: node.id().clone(),
            registry: node.registry().clone(),
            keys,
            budget: RetryBudget::new(options.retry_budget, options.min_retries_per_sec),
            options,
            hedging: Hedging::default(),
            pool: Pool::default(),
            roles: RoleSets::default(),
            metrics: server.metrics.clone(),
            server,
            layers: layers.client,
            epoch: Instant::now(),
            stopped: AtomicBool::new(false),
            paused_at_ms: AtomicU64::new(u64::MAX),
            ticked_at_ms: AtomicU64::new(0),
        })
    }

    /// Milliseconds since the node started: the clock of down marks and latency estimates.
    pub(crate) fn now_ms(&self) -> u64 {
        self.ms_at(Instant::now())
    }

    /// [`now_ms`](Self::now_ms) at `t`, a time read earlier.
    pub(crate) fn ms_at(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether the node has shut down.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Marks the node shut down.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Drops the endpoints (and so closes the connections) of nodes that left the registry
    /// since `before` (see [`Pool::prune`]); returns the snapshot it pruned to.
    pub(crate) fn prune(&self, before: &cluster_helper::Snapshot) -> Arc<cluster_helper::Snapshot> {
        let now = self.registry.snapshot();
        // After this process itself was stopped (a paused VM, a throttled container, SIGSTOP),
        // its failure detector wrongly sees silent peers for a moment: nodes dropped then keep
        // their calls in flight (they answer them if they are alive), as a graceful leave does.
        let now_ms = self.now_ms();
        let paused = self.paused_at_ms.load(Ordering::Relaxed);
        let recently_paused =
            paused != u64::MAX && now_ms.saturating_sub(paused) <= PAUSE_MEMORY_MS;
        // The watch may not have run yet since the process resumed: a late tick is a pause too.
        let pausing = now_ms.saturating_sub(self.ticked_at_ms.load(Ordering::Relaxed))
            > PAUSE_TICK_MS * u64::from(PAUSE_FACTOR);
        let trust_downs = !recently_paused && !pausing;
        self.pool.prune(before, &now, trust_downs);
        now
    }

    /// Watches this process for pauses: a task that wakes every [`PAUSE_TICK_MS`] and notes
    /// when it woke much later than asked (the process did not run meanwhile). Runs until the
    /// node stops or `self` is dropped.
    pub(crate) fn watch_pauses(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let tick = Duration::from_millis(PAUSE_TICK_MS);
            let mut last = Instant::now();
            if let Some(rpc) = weak.upgrade() {
                rpc.ticked_at_ms.store(rpc.ms_at(last), Ordering::Relaxed);
            }
            loop {
                tokio::time::sleep(tick).await;
                let Some(rpc) = weak.upgrade() else { return };
                if rpc.is_stopped() {
                    return;
                }
                let now = Instant::now();
                if now.saturating_duration_since(last) > tick * PAUSE_FACTOR {
                    rpc.paused_at_ms.store(rpc.ms_at(now), Ordering::Relaxed);
                }
                rpc.ticked_at_ms.store(rpc.ms_at(now), Ordering::Relaxed);
                last = now;
            }
        });
    }
}

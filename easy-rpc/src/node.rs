//! [`Node`]: a cluster node with the RPC server on its port and the client pool, and every
//! accessor users need, explicitly (no `Deref` to the cluster node: its service list must
//! follow what this node serves).

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Weak};
use std::time::Duration;

use cluster_helper::{
    Config, Events, GossipStats, Member, NodeId, NodeStatus, Nodes, Registry, Role,
};
use tokio::sync::watch;

use crate::builder::NodeBuilder;
use crate::client::{HedgeStats, RouteKey};
use crate::error::Error;
use crate::link::Encryption;
use crate::options::ClientOptions;
use crate::runtime::{Layers, Rpc};
use crate::server::{Served, ServerLimits, ServerStats, accept_loop};
use crate::target::{All, Any, ByKey, To};

/// A running node that serves services and calls other nodes by role.
///
/// Everything about the node's identity, roles and view of the cluster is here (from its
/// [`cluster_helper::Node`]), except changing which services it advertises: that follows
/// [`serve`](Node::serve) and [`unserve`](Node::unserve), so gossip never claims a service the
/// server does not serve. Cheap to clone; every clone is the same node.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), easy_rpc::Error> {
/// let node = easy_rpc::Node::builder()
///     .cluster("docs-node").name("n1").listen("127.0.0.1:0")
///     .secret_key(easy_rpc::cluster_helper::Secret::generate())
///     .roles(["billing"])
///     .default_node(false)
///     .start().await?;
/// node.ready().await;
/// assert_eq!(node.nodes_with_role("billing")[0].id, *node.id());
/// node.add_role("audit").await?;
/// assert!(node.roles().iter().any(|r| r.as_str() == "audit"));
/// node.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "dropping the last handle stops the node (abruptly: prefer shutdown())"]
pub struct Node {
    inner: Arc<Inner>,
}

/// What every clone of a [`Node`] shares. It alone holds the cluster node (targets and the
/// default node hold only the [`Rpc`]), so dropping the last handle stops the node.
struct Inner {
    cluster: cluster_helper::Node,
    rpc: Arc<Rpc>,
    stop: watch::Sender<bool>,
    /// Whether it has an RPC listener (else it only makes calls).
    listening: bool,
    /// Where the management HTTP endpoint listens, if it is on.
    http_addr: Option<SocketAddr>,
}

/// A handle that does not keep the node running (the management endpoint holds one).
#[derive(Clone, Debug)]
pub(crate) struct WeakNode(Weak<Inner>);

impl WeakNode {
    /// The node, while a [`Node`] handle of it lives.
    pub(crate) fn upgrade(&self) -> Option<Node> {
        self.0.upgrade().map(|inner| Node { inner })
    }
}

impl Inner {
    /// Everything a stopped node stops: its server, its pruning task, its pooled connections,
    /// its calls (and those of targets made from it), its place as the default node.
    fn stopped(&self) {
        self.stop.send_replace(true);
        self.rpc.stop();
        self.rpc.pool.close_all();
        crate::default_node::clear_if(&self.rpc);
    }
}

/// The last handle is gone without [`Node::shutdown`]: stop as a crash would (the cluster node,
/// dropped right after, stops gossiping without a goodbye; peers drop it by failure
/// detection), rather than leave a node that gossips services nobody serves.
impl Drop for Inner {
    fn drop(&mut self) {
        if !self.rpc.is_stopped() {
            tracing::warn!(
                node = %self.rpc.id,
                "the last handle of a node was dropped without shutdown(); stopping it abruptly"
            );
        }
        self.stopped();
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("cluster", &self.inner.cluster)
            .field("services", &self.services())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A builder for a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::new()
    }

    /// Adds RPC to a started cluster node: serves `services` on `listener` (if it has one) and
    /// calls through the node. Owning the only handle of the cluster node keeps its advertised
    /// services in step with what is served.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        cluster: cluster_helper::Node,
        listener: Option<TcpListener>,
        options: ClientOptions,
        limits: ServerLimits,
        services: Vec<Served>,
        http: Option<tokio::net::TcpListener>,
        layers: Layers,
        encryption: Encryption,
        sampler: crate::trace::Sampler,
    ) -> Result<Node, Error> {
        let rpc = Rpc::new(&cluster, options, limits, layers, encryption, sampler);
        if encryption == Encryption::Off {
            tracing::warn!(
                node = %rpc.id,
                "RPC calls are unencrypted after the handshake (CLUSTER_RPC_ENCRYPTION=off or \
                 NodeBuilder::unencrypted_calls): arguments and replies cross the network in \
                 clear; only for networks that encrypt traffic between nodes themselves"
            );
        }
        rpc.watch_pauses();
        {
            let mut served = rpc
                .server
                .services
                .write()
                .unwrap_or_else(|p| p.into_inner());
            for s in services {
                served.insert(s.name(), s);
            }
        }
        let (stop, stop_rx) = watch::channel(false);
        let listening = listener.is_some();
        if let Some(listener) = listener {
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|source| Error::RpcListener { source })?;
            tokio::spawn(accept_loop(listener, rpc.server.clone(), stop_rx.clone()));
        }
        // Close pooled connections to nodes that left the registry (ending the calls in
        // flight to nodes that are gone without leaving).
        let weak = Arc::downgrade(&rpc);
        let mut changes = cluster.registry().watch();
        let mut before = changes.borrow_and_update().clone();
        let mut stopped = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    _ = stopped.wait_for(|s| *s) => return,
                }
                match weak.upgrade() {
                    Some(rpc) => before = rpc.prune(&before),
                    None => return,
                }
            }
        });
        crate::metrics::count_membership(rpc.metrics.clone(), cluster.registry(), stop_rx.clone());
        let http_addr = http.as_ref().and_then(|l| l.local_addr().ok());
        let node = Node {
            inner: Arc::new(Inner {
                cluster,
                rpc,
                stop,
                listening,
                http_addr,
            }),
        };
        if let Some(http) = http {
            crate::management::spawn(http, WeakNode(Arc::downgrade(&node.inner)), stop_rx);
        }
        Ok(node)
    }

    // --- identity and addresses ---

    /// This node's identity: its name and incarnation.
    pub fn id(&self) -> &NodeId {
        self.inner.cluster.id()
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        self.inner.cluster.cluster()
    }

    /// The configuration the node was started with.
    pub fn config(&self) -> &Config {
        self.inner.cluster.config()
    }

    /// The gossip address peers use to reach this node.
    pub fn gossip_addr(&self) -> SocketAddr {
        self.inner.cluster.gossip_addr()
    }

    /// The RPC address this node advertises; `None` for a node without an RPC listener
    /// (`CLUSTER_RPC_LISTEN=off`), which only makes calls.
    pub fn rpc_addr(&self) -> Option<SocketAddr> {
        self.inner.cluster.rpc_addr()
    }

    /// Where the management HTTP endpoint listens (`/livez`, `/readyz`, `/cluster`, `/`);
    /// `None` when it is off (the default; on with `CLUSTER_HTTP_LISTEN` or
    /// [`NodeBuilder::http_listen`](crate::NodeBuilder::http_listen)). The bound address, so
    /// port 0 shows the port picked.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.inner.http_addr
    }

    // --- the registry ---

    /// The local registry: lock-free lookups, snapshots, a `watch` of changes.
    pub fn registry(&self) -> &Registry {
        self.inner.cluster.registry()
    }

    /// How long ago this node last heard that each other member was alive (its heartbeat
    /// advanced here, through its own gossip or another node's), by id; see
    /// [`cluster_helper::Node::last_heard`].
    pub async fn last_heard(&self) -> std::collections::BTreeMap<NodeId, std::time::Duration> {
        self.inner.cluster.last_heard().await
    }

    /// The serving nodes that have `role`: a local, lock-free read.
    pub fn nodes_with_role(&self, role: &str) -> Nodes {
        self.inner.cluster.nodes_with_role(role)
    }

    /// The roles of `node`, if it is a member.
    pub fn roles_of(&self, node: &NodeId) -> Option<BTreeSet<Role>> {
        self.inner.cluster.roles_of(node)
    }

    /// Every live member, this node included.
    pub fn members(&self) -> Vec<Arc<Member>> {
        self.inner.cluster.members()
    }

    /// Subscribes to registry changes (node up and down, roles added and removed).
    pub fn events(&self) -> Events {
        self.inner.cluster.events()
    }

    /// Whether the node has joined and seen the cluster.
    pub fn is_ready(&self) -> bool {
        self.inner.cluster.is_ready()
    }

    /// Waits until the node has joined and seen the cluster.
    pub async fn ready(&self) {
        self.inner.cluster.ready().await
    }

    // --- this node ---

    /// This node's own roles.
    pub fn roles(&self) -> BTreeSet<Role> {
        self.inner.cluster.roles()
    }

    /// This node's status (joining, serving, leaving).
    pub fn status(&self) -> NodeStatus {
        self.inner.cluster.status()
    }

    /// Counters of this node's gossip traffic.
    pub fn gossip_stats(&self) -> GossipStats {
        self.inner.cluster.gossip_stats()
    }

    /// Adds a role at runtime; every node sees it within a gossip round trip. Returns whether
    /// the role was new.
    pub async fn add_role(&self, role: impl AsRef<str>) -> Result<bool, Error> {
        Ok(self.inner.cluster.add_role(role).await?)
    }

    /// Removes a role at runtime. Returns whether the node had it.
    pub async fn remove_role(&self, role: impl AsRef<str>) -> Result<bool, Error> {
        Ok(self.inner.cluster.remove_role(role).await?)
    }

    /// Replaces the node's keyring at runtime, for gossip and RPC at once: the first secret
    /// seals gossip and opens new connections, every one is accepted from peers. Rotating a
    /// cluster's secret without refusing anyone takes three rollouts of this call (or of
    /// `CLUSTER_SECRET`): add the new secret second everywhere, make it first everywhere,
    /// remove the old one (see SECURITY.md). Connections already open keep their keys.
    ///
    /// ```no_run
    /// # async fn example(node: easy_rpc::Node) -> Result<(), easy_rpc::Error> {
    /// use easy_rpc::cluster_helper::Secret;
    ///
    /// let old: Secret = std::env::var("OLD_SECRET").unwrap().parse()?;
    /// let new: Secret = std::env::var("NEW_SECRET").unwrap().parse()?;
    /// node.set_secrets(vec![old.clone(), new.clone()])?; // 1. accept the new one
    /// node.set_secrets(vec![new.clone(), old])?;         // 2. send with it
    /// node.set_secrets(vec![new])?;                      // 3. retire the old one
    /// # Ok(()) }
    /// ```
    pub fn set_secrets(&self, secrets: Vec<cluster_helper::Secret>) -> Result<(), Error> {
        Ok(self.inner.cluster.set_secrets(secrets)?)
    }

    /// Whether the node runs without a secret (`CLUSTER_INSECURE=1` /
    /// [`NodeBuilder::insecure`](crate::NodeBuilder::insecure)).
    pub fn is_insecure(&self) -> bool {
        self.inner.cluster.is_insecure()
    }

    /// Whether this node's RPC connections are sealed after the handshake (the default), or
    /// carry calls in clear ([`NodeBuilder::unencrypted_calls`](crate::NodeBuilder::unencrypted_calls),
    /// `CLUSTER_RPC_ENCRYPTION=off`). Gossip is sealed either way.
    pub fn encrypts_calls(&self) -> bool {
        self.inner.rpc.server.encryption == Encryption::On
    }

    /// The share of calls that get spans when a subscriber wants them
    /// ([`NodeBuilder::trace_sample`](crate::NodeBuilder::trace_sample),
    /// `CLUSTER_TRACE_SAMPLE`; 1 by default).
    pub fn trace_sample(&self) -> f64 {
        self.inner.rpc.server.sampler.ratio()
    }

    /// The services this node serves, by name.
    pub fn services(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self
            .inner
            .rpc
            .server
            .services
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        names.sort_unstable();
        names
    }

    /// Serves a service (from `MyImpl.serve()`) and advertises it to the cluster. Serving a
    /// service this node already serves replaces its implementation for new connections.
    ///
    /// Fails with [`Error::NoRpcListener`] on a node without an RPC listener, with
    /// [`Error::DuplicateService`] if another service type is served under the same wire name,
    /// and with [`cluster_helper::Error::ShutDown`] once the node has shut down.
    pub async fn serve(&self, served: Served) -> Result<(), Error> {
        let name = served.name();
        if !self.inner.listening {
            return Err(Error::NoRpcListener { service: name });
        }
        {
            let mut services = self
                .inner
                .rpc
                .server
                .services
                .write()
                .unwrap_or_else(|p| p.into_inner());
            if services
                .get(name)
                .is_some_and(|s| s.service != served.service)
            {
                return Err(Error::DuplicateService { name });
            }
            services.insert(name, served);
        }
        self.inner.cluster.add_service(name).await?;
        Ok(())
    }

    /// Stops serving `service` (new connections for it are refused with
    /// [`RejectReason::UnknownService`](crate::RejectReason::UnknownService)) and stops
    /// advertising it. Existing connections finish what they are doing.
    pub async fn unserve(&self, service: &str) -> Result<(), Error> {
        self.inner
            .rpc
            .server
            .services
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(service);
        self.inner.cluster.remove_service(service).await?;
        Ok(())
    }

    // --- calls ---

    /// Calls to one node of `role`.
    pub fn any(&self, role: &str) -> Any {
        Any::new(Some(self.inner.rpc.clone()), role)
    }

    /// Calls to every node of `role`.
    pub fn all(&self, role: &str) -> All {
        All::new(Some(self.inner.rpc.clone()), role)
    }

    /// Calls to the node of `role` that owns `key` (see [`RouteKey`]).
    pub fn by_key(&self, role: &str, key: impl RouteKey) -> ByKey {
        ByKey::new(Some(self.inner.rpc.clone()), role, key)
    }

    /// Calls to one given node: by name (whichever incarnation the registry holds, so it
    /// follows the node across restarts) or by [`NodeId`] (that incarnation only). See [`To`].
    pub fn to<'a>(&self, node: impl Into<cluster_helper::NodeRef<'a>>) -> To {
        To::new(Some(self.inner.rpc.clone()), vec![node.into().into()])
    }

    /// Calls to one of the given nodes (by name or by id), chosen as [`any`](Self::any)
    /// chooses among a role's nodes. See [`To`].
    pub fn to_any_of<'a, N: Into<cluster_helper::NodeRef<'a>>>(
        &self,
        nodes: impl IntoIterator<Item = N>,
    ) -> To {
        To::new(
            Some(self.inner.rpc.clone()),
            nodes.into_iter().map(|n| n.into().into()).collect(),
        )
    }

    /// Makes this node the process's default node (for [`any`](crate::any),
    /// [`all`](crate::all), [`by_key`](crate::by_key)).
    pub fn make_default(&self) {
        crate::default_node::set(&self.inner.rpc);
    }

    // --- the server's counters ---

    /// Requests being served right now.
    pub fn in_flight(&self) -> usize {
        self.inner.rpc.server.in_flight()
    }

    /// Connections refused at the handshake so far (wrong secret, cluster, version, unknown
    /// service, garbage, leaving).
    pub fn rejected_connections(&self) -> usize {
        self.inner
            .rpc
            .server
            .rejected
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connections accepted (handshake completed) so far.
    pub fn accepted_connections(&self) -> usize {
        self.inner
            .rpc
            .server
            .accepted
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connections open now (handshake completed, not yet closed).
    pub fn open_connections(&self) -> usize {
        self.inner
            .rpc
            .server
            .open
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Everything the server counts: connections held and pending, refusals by reason
    /// (over the [`ServerLimits`]), requests refused for overload, frames refused, bytes held
    /// by partial frames, the connection cap in force.
    pub fn server_stats(&self) -> ServerStats {
        self.inner.rpc.server.stats()
    }

    /// What hedging did in this node's calls since it started: calls that asked for a hedge,
    /// second requests sent (the extra load on the servers), how many of those answered
    /// first, and hedges not sent (retry budget spent, no other node). See
    /// [`Hedge`](crate::Hedge).
    ///
    /// ```no_run
    /// # async fn example(node: easy_rpc::Node) {
    /// let hedges = node.hedge_stats();
    /// println!("{} extra requests for {} hedged calls", hedges.sent, hedges.calls);
    /// # }
    /// ```
    pub fn hedge_stats(&self) -> HedgeStats {
        self.inner.rpc.hedging.stats()
    }

    /// The server limits in force (as set; see
    /// [`ServerStats::max_connections`] for the connection cap derived at start).
    pub fn server_limits(&self) -> &ServerLimits {
        &self.inner.rpc.server.bounds.limits
    }

    /// This node's metrics as a [`prometheus_client`] collector, to register with a registry
    /// of the program's own (see [`NodeMetrics`](crate::NodeMetrics)); the management
    /// endpoint's `/metrics` serves the same.
    pub fn metrics(&self) -> crate::NodeMetrics {
        crate::NodeMetrics::new(self.weak())
    }

    /// This node's metrics in the Prometheus text format (version 0.0.4), as the management
    /// endpoint's `/metrics` serves them: calls and requests per service, method and outcome,
    /// their latency and those in flight, reroutes and retries, connections, membership and
    /// gossip traffic.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), easy_rpc::Error> {
    /// let node = easy_rpc::Node::builder()
    ///     .cluster("docs-metrics-text").name("n1").listen("127.0.0.1:0")
    ///     .secret_key(easy_rpc::cluster_helper::Secret::generate())
    ///     .default_node(false)
    ///     .start().await?;
    /// node.ready().await;
    /// let text = node.metrics_text();
    /// assert!(text.contains("# TYPE easy_rpc_client_calls_total counter"));
    /// assert!(text.contains("easy_rpc_cluster_members{status=\"serving\"} 1"));
    /// node.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn metrics_text(&self) -> String {
        crate::metrics::text(self)
    }

    /// The state this node's clients and server share.
    pub(crate) fn rpc(&self) -> &Arc<Rpc> {
        &self.inner.rpc
    }

    /// A handle that does not keep the node running.
    pub(crate) fn weak(&self) -> WeakNode {
        WeakNode(Arc::downgrade(&self.inner))
    }

    /// Whether [`shutdown`](Node::shutdown) has begun (the node then refuses new connections
    /// and finishes what it runs).
    pub(crate) fn is_leaving(&self) -> bool {
        self.inner.rpc.server.is_leaving()
    }

    // --- leaving ---

    /// Leaves gracefully: announces `leaving` (callers stop picking this node at once), refuses
    /// new connections, lets in-flight calls finish (up to 30 s), answers requests that still
    /// arrive after the leave grace with "not run" (callers resend them elsewhere), then stops.
    /// Calls through this node (and through targets made from it) then fail with
    /// [`RpcError::NotRunning`](crate::RpcError::NotRunning); if it was the default node, the
    /// process has none until another is made default.
    pub async fn shutdown(&self) {
        self.inner.rpc.server.start_leaving();
        let grace = self.inner.cluster.config().leave_grace;
        let server = self.inner.rpc.server.clone();
        let drain = async move {
            tokio::time::sleep(grace).await;
            server.start_refusing();
            if !server.drained(Duration::from_secs(30)).await {
                tracing::warn!("shutdown: requests still running after 30 s; stopping anyway");
            }
        };
        tokio::join!(self.inner.cluster.shutdown(), drain);
        self.inner.stopped();
    }

    /// Runs until SIGTERM or Ctrl-C, then leaves gracefully ([`shutdown`](Node::shutdown)).
    pub async fn run_until_shutdown(&self) -> Result<(), Error> {
        cluster_helper::shutdown_signal().await;
        self.shutdown().await;
        Ok(())
    }

    /// Stops abruptly, as a crash would: gossip stops without a goodbye and every connection is
    /// closed mid-call. For tests and fault injection.
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub fn kill(&self) {
        self.inner.cluster.kill();
        self.inner.stopped();
    }

    /// Replaces the keys of the RPC handshake with `keys` (first = the one to connect with;
    /// every one accepted from callers), as a keyring of several cluster secrets would give.
    /// Connections already open keep their keys. For tests: derive each key with
    /// `ClusterKey::derive(secret, cluster, easy_rpc::__private::RPC_KEY_PURPOSE)`, or use any
    /// 32 bytes.
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub fn set_rpc_keys(&self, keys: &[cluster_helper::ClusterKey]) {
        self.inner.rpc.keys.set(crate::keyring::KeyRing::psks(keys));
    }

    /// Stops only the node's gossip, abruptly, while its RPC server keeps serving: peers drop
    /// it from their registries (as after a crash) and must close their pooled connections to
    /// it by themselves. For tests.
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub fn kill_membership(&self) {
        self.inner.cluster.kill();
    }
}

//! A node that serves and calls: a [`cluster_helper::Node`] plus the RPC server on its port and
//! the client pool, and the process's default node behind [`any`](crate::any),
//! [`all`](crate::all) and [`by_key`](crate::by_key).

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use cluster_helper::Error;
use tokio::sync::watch;

use crate::client::RouteKey;
use crate::options::ClientOptions;
use crate::runtime::Rpc;
use crate::server::Served;
use crate::server::accept_loop;
use crate::target::{All, Any, ByKey};

/// The process's default node.
static DEFAULT: ArcSwapOption<Rpc> = ArcSwapOption::const_empty();

fn default_rpc() -> Arc<Rpc> {
    DEFAULT.load_full().expect(
        "easy_rpc::any/all/by_key need a default node: start one with easy_rpc::Node::builder()",
    )
}

/// Calls to one node of `role`, through the process's default node (the first node started in
/// the process, or the one made default with [`Node::make_default`]).
///
/// # Panics
///
/// If no node has been started in this process.
pub fn any(role: &str) -> Any {
    Any::new(default_rpc(), role)
}

/// Calls to every node of `role`, through the process's default node. See [`any`].
///
/// # Panics
///
/// If no node has been started in this process.
pub fn all(role: &str) -> All {
    All::new(default_rpc(), role)
}

/// Calls to the node of `role` that owns `key`, through the process's default node. See
/// [`any`].
///
/// # Panics
///
/// If no node has been started in this process.
pub fn by_key(role: &str, key: impl RouteKey) -> ByKey {
    ByKey::new(default_rpc(), role, key)
}

/// Builds and starts a [`Node`]: the cluster settings of [`cluster_helper::NodeBuilder`]
/// (forwarded), the services to serve, and client options.
#[must_use = "a builder does nothing until .start() is awaited"]
#[derive(Debug, Default)]
pub struct NodeBuilder {
    cluster: cluster_helper::NodeBuilder,
    services: Vec<Served>,
    options: ClientOptions,
    default: Option<bool>,
}

macro_rules! forward {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(where $($bound:tt)*)?;)*) => {
        $(
            $(#[$doc])*
            pub fn $name<$($($bound)*)?>(mut self, $($arg: $ty),*) -> Self {
                self.cluster = self.cluster.$name($($arg),*);
                self
            }
        )*
    };
}

impl NodeBuilder {
    /// A builder with default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the `CLUSTER_*` environment variables (see [`cluster_helper::Config`]).
    pub fn from_env(mut self) -> Result<Self, Error> {
        self.cluster = self.cluster.from_env()?;
        Ok(self)
    }

    /// Changes the cluster settings with any [`cluster_helper::NodeBuilder`] method.
    pub fn cluster_settings(
        mut self,
        f: impl FnOnce(cluster_helper::NodeBuilder) -> cluster_helper::NodeBuilder,
    ) -> Self {
        self.cluster = f(self.cluster);
        self
    }

    forward! {
        /// The cluster's name.
        fn cluster(name: &str);
        /// The node's name.
        fn name(name: &str);
        /// The gossip (and RPC) listen address; port 0 picks a free port.
        fn listen(addr: &str);
        /// The cluster secret.
        fn secret(secret: &str);
        /// How often the node gossips.
        fn gossip_interval(interval: Duration);
        /// How long a leaving node keeps announcing it leaves before it stops.
        fn leave_grace(grace: Duration);
        /// How long to wait for a peer before starting a new cluster alone.
        fn join_timeout(timeout: Duration);
    }

    /// The roles the node starts with.
    pub fn roles<R: AsRef<str>>(mut self, roles: impl IntoIterator<Item = R>) -> Self {
        self.cluster = self.cluster.roles(roles);
        self
    }

    /// Where peers might be: `host:port`, `dns:name:port`, `srv:_service._proto.name`.
    pub fn seeds<S: AsRef<str>>(mut self, seeds: impl IntoIterator<Item = S>) -> Self {
        self.cluster = self.cluster.seeds(seeds);
        self
    }

    /// Serves a service from the start (advertised with the node's first gossip state).
    pub fn serve(mut self, served: Served) -> Self {
        self.services.push(served);
        self
    }

    /// Settings of the calls this node makes.
    pub fn client_options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// Whether this node becomes the process's default node (for [`any`], [`all`],
    /// [`by_key`]). Default: yes if no default node is set yet.
    pub fn default_node(mut self, default: bool) -> Self {
        self.default = Some(default);
        self
    }

    /// Starts the node: binds its port, joins the cluster, serves its services.
    pub async fn start(self) -> Result<Node, Error> {
        let names: Vec<&'static str> = self.services.iter().map(Served::name).collect();
        let cluster = self.cluster.services(names).start().await?;
        let node = Node::attach(cluster, self.options)?;
        {
            let mut services = node
                .rpc
                .server
                .services
                .write()
                .unwrap_or_else(|p| p.into_inner());
            for s in self.services {
                services.insert(s.name(), s);
            }
        }
        let make_default = self.default.unwrap_or_else(|| DEFAULT.load().is_none());
        if make_default {
            node.make_default();
        }
        Ok(node)
    }
}

/// A running node that serves services and calls other nodes by role.
///
/// It dereferences to its [`cluster_helper::Node`] (identity, roles, registry, events). Cheap
/// to clone; every clone is the same node.
#[derive(Clone)]
#[must_use = "dropping the last handle stops the node"]
pub struct Node {
    cluster: cluster_helper::Node,
    rpc: Arc<Rpc>,
    stop: Arc<watch::Sender<bool>>,
}

impl Deref for Node {
    type Target = cluster_helper::Node;
    fn deref(&self) -> &cluster_helper::Node {
        &self.cluster
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A builder for a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::new()
    }

    /// Adds RPC to a started cluster node: serves on its RPC listener and calls through it.
    pub fn attach(cluster: cluster_helper::Node, options: ClientOptions) -> Result<Node, Error> {
        let listener = cluster
            .take_rpc_listener()
            .ok_or_else(|| Error::InvalidConfig {
                setting: "CLUSTER_RPC_LISTEN".into(),
                value: "off".into(),
                expected: "an RPC listener (the node serves and calls RPC)".into(),
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            what: "rpc (TCP)",
            addr: cluster.gossip_addr(),
            source,
        })?;
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(|source| Error::Bind {
                what: "rpc (TCP)",
                addr,
                source,
            })?;
        let rpc = Rpc::new(cluster.clone(), options);
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(accept_loop(listener, rpc.server.clone(), stop_rx.clone()));
        // Close pooled connections to nodes that left the registry.
        let weak = Arc::downgrade(&rpc);
        let mut changes = cluster.registry().watch();
        let mut stopped = stop_rx;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    _ = stopped.wait_for(|s| *s) => return,
                }
                match weak.upgrade() {
                    Some(rpc) => rpc.prune(),
                    None => return,
                }
            }
        });
        Ok(Node {
            cluster,
            rpc,
            stop: Arc::new(stop),
        })
    }

    /// The cluster node.
    pub fn cluster_node(&self) -> &cluster_helper::Node {
        &self.cluster
    }

    /// Serves a service (from `MyImpl.serve()`) and advertises it to the cluster.
    pub async fn serve(&self, served: Served) -> Result<(), Error> {
        let name = served.name();
        self.rpc
            .server
            .services
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, served);
        self.cluster.add_service(name).await?;
        Ok(())
    }

    /// Calls to one node of `role`.
    pub fn any(&self, role: &str) -> Any {
        Any::new(self.rpc.clone(), role)
    }

    /// Calls to every node of `role`.
    pub fn all(&self, role: &str) -> All {
        All::new(self.rpc.clone(), role)
    }

    /// Calls to the node of `role` that owns `key`.
    pub fn by_key(&self, role: &str, key: impl RouteKey) -> ByKey {
        ByKey::new(self.rpc.clone(), role, key)
    }

    /// Makes this node the process's default node.
    pub fn make_default(&self) {
        DEFAULT.store(Some(self.rpc.clone()));
    }

    /// Requests being served right now.
    pub fn in_flight(&self) -> usize {
        self.rpc.server.in_flight()
    }

    /// Connections refused at the handshake so far (wrong secret, cluster, version, unknown
    /// service, garbage, leaving).
    pub fn rejected_connections(&self) -> usize {
        self.rpc
            .server
            .rejected
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connections accepted (handshake completed) so far.
    pub fn accepted_connections(&self) -> usize {
        self.rpc
            .server
            .accepted
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connections open now (handshake completed, not yet closed).
    pub fn open_connections(&self) -> usize {
        self.rpc
            .server
            .open
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops serving `service` (new connections for it are refused with
    /// [`RejectReason::UnknownService`](crate::RejectReason::UnknownService)) and stops
    /// advertising it. Existing connections finish what they are doing.
    pub async fn unserve(&self, service: &str) -> Result<(), Error> {
        self.rpc
            .server
            .services
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(service);
        self.cluster.remove_service(service).await?;
        Ok(())
    }

    /// Leaves gracefully: announces `leaving` (callers stop picking this node at once), refuses
    /// new connections, lets in-flight calls finish (up to 30 s), refuses requests that still
    /// arrive after the leave grace (callers resend them elsewhere), then stops.
    pub async fn shutdown(&self) {
        self.rpc.server.start_leaving();
        let grace = self.cluster.config().leave_grace;
        let server = self.rpc.server.clone();
        let drain = async move {
            tokio::time::sleep(grace).await;
            server.start_refusing();
            if !server.drained(Duration::from_secs(30)).await {
                tracing::warn!("shutdown: requests still running after 30 s; stopping anyway");
            }
        };
        tokio::join!(self.cluster.shutdown(), drain);
        self.stop.send_replace(true);
        let me = Arc::as_ptr(&self.rpc);
        DEFAULT.rcu(|cur| match cur {
            Some(d) if Arc::as_ptr(d) == me => None,
            other => other.clone(),
        });
    }

    /// Stops abruptly, as a crash would: gossip stops without a goodbye and every connection is
    /// closed mid-call. For tests and fault injection.
    pub fn kill(&self) {
        self.cluster.kill();
        self.stop.send_replace(true);
    }

    /// Runs until SIGTERM or Ctrl-C, then leaves gracefully.
    pub async fn run_until_shutdown(&self) -> Result<(), Error> {
        cluster_helper::shutdown_signal().await;
        self.shutdown().await;
        Ok(())
    }
}

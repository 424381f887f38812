//! A running node: its identity, sockets, gossip membership and the tasks that keep its
//! registry current.

use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::{
    Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ListenerHandle,
    ProtocolVersion, spawn_chitchat,
};
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, RpcListen};
use crate::discovery::{DiscoveryConfig, spawn_discovery};
use crate::error::{Error, Result};
use crate::id::{NodeId, Role, ServiceName};
use crate::member::{
    KEY_ROLES, KEY_RPC_ADDR, KEY_SERVICES, KEY_STATUS, Member, NodeStatus, join_list,
};
use crate::registry::{Events, Nodes, Registry};
use crate::seed::Seed;
use crate::transport::{ClusterKey, Counters, SecureTransport};

/// Builds and starts a [`Node`]. Every setting has a default; see [`Config`] for each one and the
/// environment variable that sets it.
///
/// Setters that take text validate it; the first invalid value is returned by
/// [`start`](NodeBuilder::start), so a chain of setters needs only one `?`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cluster_helper::Error> {
/// let node = cluster_helper::Node::builder()
///     .cluster("docs")
///     .name("billing-1")
///     .roles(["billing"])
///     .listen("127.0.0.1:0")
///     .secret("not-a-real-secret")
///     .start()
///     .await?;
/// node.ready().await;
/// assert_eq!(node.nodes_with_role("billing")[0].id, *node.id());
/// node.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until .start() is awaited"]
pub struct NodeBuilder {
    config: Config,
    error: Option<Error>,
}

impl NodeBuilder {
    /// A builder with the default [`Config`].
    pub fn new() -> Self {
        Self::default()
    }

    fn fail(mut self, e: Error) -> Self {
        self.error.get_or_insert(e);
        self
    }

    /// Reads the `CLUSTER_*` environment variables (see [`Config`]); they override what was set
    /// before, and later setters override them.
    pub fn from_env(self) -> Result<Self> {
        self.from_vars(std::env::vars())
    }

    /// Like [`from_env`](NodeBuilder::from_env), from the given variables instead of the
    /// process environment.
    pub fn from_vars<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Result<Self>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars: std::collections::HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.config.apply_env(|k| vars.get(k).cloned())?;
        Ok(self)
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The cluster's name.
    pub fn cluster(mut self, name: impl AsRef<str>) -> Self {
        match crate::config::parse_cluster_name("cluster name", name.as_ref()) {
            Ok(n) => {
                self.config.cluster = n;
                self
            }
            Err(e) => self.fail(e),
        }
    }

    /// The node's name (default: derived from the hostname, see [`Config::node_name`]).
    pub fn name(mut self, name: impl AsRef<str>) -> Self {
        match crate::id::check_node_name(name.as_ref()) {
            Ok(()) => {
                self.config.node_name = Some(name.as_ref().to_owned());
                self
            }
            Err(e) => self.fail(e),
        }
    }

    /// The roles the node starts with (replacing any set before).
    pub fn roles<R: AsRef<str>>(mut self, roles: impl IntoIterator<Item = R>) -> Self {
        let mut set = BTreeSet::new();
        for r in roles {
            match Role::new(r) {
                Ok(r) => {
                    set.insert(r);
                }
                Err(e) => return self.fail(e),
            }
        }
        self.config.roles = set;
        self
    }

    /// Adds RPC services the node advertises from the start (used by the RPC layer).
    pub fn services<S: AsRef<str>>(mut self, services: impl IntoIterator<Item = S>) -> Self {
        for s in services {
            match ServiceName::new(s) {
                Ok(s) => {
                    self.config.services.insert(s);
                }
                Err(e) => return self.fail(e),
            }
        }
        self
    }

    /// Where peers might be: `host:port`, `dns:name:port` or `srv:_service._proto.name`
    /// (replacing any set before).
    pub fn seeds<S: AsRef<str>>(mut self, seeds: impl IntoIterator<Item = S>) -> Self {
        let mut list = Vec::new();
        for s in seeds {
            match s.as_ref().parse::<Seed>() {
                Ok(seed) => list.push(seed),
                Err(e) => return self.fail(e),
            }
        }
        self.config.seeds = list;
        self
    }

    /// The gossip (UDP) listen address, e.g. `"0.0.0.0:7946"`; port 0 picks a free port.
    pub fn listen(mut self, addr: impl ToSocketAddrs + std::fmt::Debug) -> Self {
        match first_addr("listen address", addr) {
            Ok(a) => {
                self.config.listen = a;
                self
            }
            Err(e) => self.fail(e),
        }
    }

    /// The gossip address peers use to reach this node (e.g. the pod IP).
    pub fn advertise(mut self, addr: impl ToSocketAddrs + std::fmt::Debug) -> Self {
        match first_addr("advertise address", addr) {
            Ok(a) => {
                self.config.advertise = Some(a);
                self
            }
            Err(e) => self.fail(e),
        }
    }

    /// Where the node accepts RPC connections.
    pub fn rpc_listen(mut self, rpc: RpcListen) -> Self {
        self.config.rpc_listen = rpc;
        self
    }

    /// The cluster secret: every gossip packet and RPC handshake is authenticated with keys
    /// derived from it.
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.config.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// The DNS server (`ip:port`) for DNS seeds, instead of the system's.
    pub fn dns_server(mut self, addr: SocketAddr) -> Self {
        self.config.dns_server = Some(addr);
        self
    }

    /// How often the node gossips.
    pub fn gossip_interval(mut self, interval: Duration) -> Self {
        self.config.gossip_interval = interval;
        self
    }

    /// The phi-accrual threshold of the failure detector.
    pub fn phi_threshold(mut self, phi: f64) -> Self {
        self.config.phi_threshold = phi;
        self
    }

    /// How long a leaving node keeps gossiping after announcing it leaves.
    pub fn leave_grace(mut self, grace: Duration) -> Self {
        self.config.leave_grace = grace;
        self
    }

    /// How long to wait for a peer before declaring this node ready on its own.
    pub fn join_timeout(mut self, timeout: Duration) -> Self {
        self.config.join_timeout = timeout;
        self
    }

    /// Bounds on DNS re-resolution (the records' TTL decides within them).
    pub fn dns_interval(mut self, min: Duration, max: Duration) -> Self {
        self.config.dns_min_interval = min;
        self.config.dns_max_interval = max;
        self
    }

    /// Binds the sockets, starts gossip and discovery, and returns the running node. The node
    /// is [ready](Node::ready) once it has seen the cluster.
    pub async fn start(self) -> Result<Node> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.config.validate()?;
        Node::start(self.config).await
    }
}

fn first_addr(what: &str, addr: impl ToSocketAddrs + std::fmt::Debug) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            Error::config(
                what,
                format!("{addr:?}").trim_matches('"').to_owned(),
                "an IP address and port such as 127.0.0.1:0",
            )
        })
}

/// Counters of this node's gossip traffic, from [`Node::gossip_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GossipStats {
    /// Datagrams sent.
    pub packets_sent: u64,
    /// Bytes sent (UDP payload, including encryption overhead).
    pub bytes_sent: u64,
    /// Authentic datagrams received.
    pub packets_received: u64,
    /// Bytes of authentic datagrams received.
    pub bytes_received: u64,
    /// Datagrams dropped before parsing: not authenticated with this cluster's key (another
    /// cluster, another secret, garbage), or unreadable.
    pub packets_rejected: u64,
}

/// What this node says of itself in gossip.
#[derive(Debug)]
struct LocalState {
    roles: BTreeSet<Role>,
    services: BTreeSet<ServiceName>,
    status: NodeStatus,
}

/// A running cluster node: its identity, roles and the local registry of every other node.
///
/// `Node` is a cheap handle (`Clone` shares it). The node runs until
/// [`shutdown`](Node::shutdown) is called or the last handle is dropped (which stops it
/// abruptly, like a crash).
#[derive(Clone)]
#[must_use = "dropping the last handle stops the node"]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    cluster: String,
    gossip_addr: SocketAddr,
    rpc_addr: Option<SocketAddr>,
    secret: Vec<u8>,
    config: Config,
    registry: Registry,
    counters: Arc<Counters>,
    handle: ChitchatHandle,
    chitchat: Arc<Mutex<Chitchat>>,
    local: StdMutex<LocalState>,
    rpc_listener: StdMutex<Option<TcpListener>>,
    kick: Arc<Notify>,
    stop: watch::Sender<bool>,
    tasks: StdMutex<Vec<JoinHandle<()>>>,
    _listener: StdMutex<Option<ListenerHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.handle.abort();
        for t in self.tasks.get_mut().map(std::mem::take).unwrap_or_default() {
            t.abort();
        }
    }
}

static LAST_INCARNATION: AtomicU64 = AtomicU64::new(0);
static NODES_IN_PROCESS: AtomicU64 = AtomicU64::new(0);

/// A new incarnation: the wall clock in microseconds, strictly increasing within the process.
fn next_incarnation() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1);
    let prev = LAST_INCARNATION
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(0);
    now.max(prev + 1)
}

fn default_node_name() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| {
            h.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                        c
                    } else {
                        '-'
                    }
                })
                .collect::<String>()
        })
        .filter(|h| crate::id::check_node_name(h).is_ok())
        .unwrap_or_else(|| "node".to_owned());
    let pid = std::process::id();
    let mut name = if pid == 1 {
        host
    } else {
        format!("{host}-{pid}")
    };
    let n = NODES_IN_PROCESS.fetch_add(1, Ordering::Relaxed);
    if n > 0 {
        name.push_str(&format!("-{n}"));
    }
    name.truncate(crate::id::MAX_NODE_NAME_LEN);
    name
}

/// Binds the gossip UDP socket and, unless disabled, the RPC TCP listener. With
/// [`RpcListen::SamePort`] both get one port number; when the listen port is 0 the pair is
/// retried until a number free for both protocols is found.
fn bind_sockets(config: &Config) -> Result<(std::net::UdpSocket, Option<TcpListener>)> {
    let bind_udp = |addr: SocketAddr| {
        std::net::UdpSocket::bind(addr).map_err(|source| Error::Bind {
            what: "gossip (UDP)",
            addr,
            source,
        })
    };
    let bind_tcp = |addr: SocketAddr| {
        TcpListener::bind(addr).map_err(|source| Error::Bind {
            what: "rpc (TCP)",
            addr,
            source,
        })
    };
    match config.rpc_listen {
        RpcListen::Disabled => Ok((bind_udp(config.listen)?, None)),
        RpcListen::Addr(addr) => Ok((bind_udp(config.listen)?, Some(bind_tcp(addr)?))),
        RpcListen::SamePort => {
            let mut attempts = 0;
            loop {
                let udp = bind_udp(config.listen)?;
                let port = udp
                    .local_addr()
                    .map_err(|source| Error::Bind {
                        what: "gossip (UDP)",
                        addr: config.listen,
                        source,
                    })?
                    .port();
                match bind_tcp(SocketAddr::new(config.listen.ip(), port)) {
                    Ok(tcp) => return Ok((udp, Some(tcp))),
                    Err(e) if config.listen.port() == 0 && attempts < 32 => {
                        attempts += 1;
                        tracing::debug!("port {port} free for UDP but not TCP, retrying: {e}");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// The address peers should use for `bound`, when it was bound to an unspecified IP.
async fn guess_advertise_ip(bound: SocketAddr) -> IpAddr {
    if !bound.ip().is_unspecified() {
        return bound.ip();
    }
    if let Some(host) = hostname::get().ok().and_then(|h| h.into_string().ok())
        && let Ok(addrs) = tokio::net::lookup_host((host.as_str(), bound.port())).await
    {
        let addrs: Vec<SocketAddr> = addrs.collect();
        let pick = addrs
            .iter()
            .find(|a| a.is_ipv4() && !a.ip().is_loopback())
            .or_else(|| addrs.iter().find(|a| !a.ip().is_loopback()));
        if let Some(a) = pick {
            return a.ip();
        }
    }
    tracing::warn!(
        "cannot tell which address peers can reach this node at; advertising 127.0.0.1 \
         (set CLUSTER_ADVERTISE to the pod/host IP)"
    );
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

impl Node {
    /// A builder for a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::new()
    }

    async fn start(config: Config) -> Result<Node> {
        let name = match &config.node_name {
            Some(n) => n.clone(),
            None => default_node_name(),
        };
        let id = NodeId::new(&name, next_incarnation())?;
        let secret = match &config.secret {
            Some(s) => s.clone(),
            None => {
                tracing::warn!(
                    cluster = %config.cluster,
                    "no CLUSTER_SECRET: gossip and RPC keys derive from the cluster name only; \
                     anyone who knows it can join"
                );
                Vec::new()
            }
        };

        let (udp, tcp) = bind_sockets(&config)?;
        let udp_bound = udp.local_addr().map_err(|source| Error::Bind {
            what: "gossip (UDP)",
            addr: config.listen,
            source,
        })?;
        let gossip_addr = match config.advertise {
            Some(a) if a.port() == 0 => SocketAddr::new(a.ip(), udp_bound.port()),
            Some(a) => a,
            None => SocketAddr::new(guess_advertise_ip(udp_bound).await, udp_bound.port()),
        };
        let rpc_addr = match (&tcp, config.rpc_advertise) {
            (None, _) => None,
            (Some(_), Some(a)) => Some(a),
            (Some(l), None) => Some(SocketAddr::new(
                gossip_addr.ip(),
                l.local_addr()
                    .map_err(|source| Error::Bind {
                        what: "rpc (TCP)",
                        addr: config.listen,
                        source,
                    })?
                    .port(),
            )),
        };
        if let Some(l) = &tcp {
            l.set_nonblocking(true).map_err(|source| Error::Bind {
                what: "rpc (TCP)",
                addr: udp_bound,
                source,
            })?;
        }
        udp.set_nonblocking(true).map_err(|source| Error::Bind {
            what: "gossip (UDP)",
            addr: udp_bound,
            source,
        })?;
        let udp = tokio::net::UdpSocket::from_std(udp).map_err(|source| Error::Bind {
            what: "gossip (UDP)",
            addr: udp_bound,
            source,
        })?;

        let counters = Arc::new(Counters::default());
        let transport = SecureTransport::new(
            udp,
            ClusterKey::derive(&secret, &config.cluster, "gossip"),
            counters.clone(),
        );
        let interval = config.gossip_interval;
        let chitchat_config = ChitchatConfig {
            chitchat_id: ChitchatId::new(id.name(), id.incarnation(), gossip_addr),
            cluster_id: config.cluster.clone(),
            gossip_interval: interval,
            listen_addr: udp_bound,
            seed_nodes: Vec::new(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: config.phi_threshold,
                sampling_window_size: 200,
                max_interval: (interval * 20).max(Duration::from_secs(2)),
                initial_interval: interval,
                dead_node_grace_period: config.dead_node_grace,
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: ProtocolVersion::V1,
        };
        let local = LocalState {
            roles: config.roles.clone(),
            services: config.services.clone(),
            status: NodeStatus::Joining,
        };
        let mut kvs = vec![
            (
                KEY_ROLES.to_owned(),
                join_list(local.roles.iter().map(Role::as_str)),
            ),
            (
                KEY_SERVICES.to_owned(),
                join_list(local.services.iter().map(ServiceName::as_str)),
            ),
            (KEY_STATUS.to_owned(), local.status.as_str().to_owned()),
        ];
        if let Some(a) = rpc_addr {
            kvs.push((KEY_RPC_ADDR.to_owned(), a.to_string()));
        }
        let handle = spawn_chitchat(chitchat_config, kvs, &transport)
            .await
            .map_err(|e| Error::Membership(format!("{e:#}")))?;
        let chitchat = handle.chitchat();

        let kick = Arc::new(Notify::new());
        let listener = {
            let kick = kick.clone();
            chitchat
                .lock()
                .await
                .subscribe_event("", move |_| kick.notify_one())
        };

        let discovery = if config.seeds.is_empty() {
            None
        } else {
            Some(
                spawn_discovery(DiscoveryConfig {
                    seeds: config.seeds.clone(),
                    dns_server: config.dns_server,
                    min_interval: config.dns_min_interval,
                    max_interval: config.dns_max_interval,
                })
                .await?,
            )
        };

        let node = Node {
            inner: Arc::new(Inner {
                id,
                cluster: config.cluster.clone(),
                gossip_addr,
                rpc_addr,
                secret,
                registry: Registry::new(),
                counters,
                handle,
                chitchat,
                local: StdMutex::new(local),
                rpc_listener: StdMutex::new(tcp),
                kick,
                stop: watch::channel(false).0,
                tasks: StdMutex::new(Vec::new()),
                _listener: StdMutex::new(Some(listener)),
                config,
            }),
        };
        let weak = Arc::downgrade(&node.inner);
        let registry_task = tokio::spawn(registry_loop(weak.clone()));
        let join_task = tokio::spawn(join_loop(weak, discovery, udp_bound));
        node.lock_tasks().extend([registry_task, join_task]);
        tracing::info!(
            node = %node.id(), cluster = %node.cluster(), gossip = %gossip_addr,
            rpc = ?rpc_addr, roles = ?node.roles(), "node started"
        );
        Ok(node)
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_local(&self) -> std::sync::MutexGuard<'_, LocalState> {
        self.inner
            .local
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// This node's identity.
    pub fn id(&self) -> &NodeId {
        &self.inner.id
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.inner.cluster
    }

    /// The configuration the node was started with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The gossip address peers use to reach this node.
    pub fn gossip_addr(&self) -> SocketAddr {
        self.inner.gossip_addr
    }

    /// The RPC address this node advertises, unless RPC is disabled.
    pub fn rpc_addr(&self) -> Option<SocketAddr> {
        self.inner.rpc_addr
    }

    /// Takes the bound RPC listener (once), for the RPC server to accept on. It is
    /// non-blocking, ready for `tokio::net::TcpListener::from_std`.
    pub fn take_rpc_listener(&self) -> Option<TcpListener> {
        self.inner
            .rpc_listener
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    /// A key for `purpose` derived from the cluster secret and name (e.g. for the RPC
    /// handshake). Every node of the cluster derives the same key.
    pub fn cluster_key(&self, purpose: &str) -> ClusterKey {
        ClusterKey::derive(&self.inner.secret, &self.inner.cluster, purpose)
    }

    /// The local registry.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The serving nodes that have `role`: a local, lock-free read.
    pub fn nodes_with_role(&self, role: &str) -> Nodes {
        self.inner.registry.nodes_with_role(role)
    }

    /// The roles of `node`, if it is a member.
    pub fn roles_of(&self, node: &NodeId) -> Option<BTreeSet<Role>> {
        self.inner.registry.roles_of(node)
    }

    /// Every live member, this node included.
    pub fn members(&self) -> Vec<Arc<Member>> {
        self.inner.registry.members()
    }

    /// Subscribes to registry changes.
    pub fn events(&self) -> Events {
        self.inner.registry.events()
    }

    /// Whether the node has joined and seen the cluster.
    pub fn is_ready(&self) -> bool {
        self.inner.registry.is_ready()
    }

    /// Waits until the node has joined and seen the cluster: another member answered, or no
    /// seed lists another address, or the join timeout passed with no answer (a new cluster).
    pub async fn ready(&self) {
        self.inner.registry.ready().await
    }

    /// This node's own roles.
    pub fn roles(&self) -> BTreeSet<Role> {
        self.lock_local().roles.clone()
    }

    /// This node's status.
    pub fn status(&self) -> NodeStatus {
        self.lock_local().status
    }

    /// Counters of this node's gossip traffic.
    pub fn gossip_stats(&self) -> GossipStats {
        let c = &self.inner.counters;
        GossipStats {
            packets_sent: c.packets_sent.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            packets_received: c.packets_received.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
            packets_rejected: c.packets_rejected.load(Ordering::Relaxed),
        }
    }

    /// Adds a role at runtime; every node sees it within a gossip round trip. Returns whether
    /// the role was new.
    pub async fn add_role(&self, role: impl AsRef<str>) -> Result<bool> {
        let role = Role::new(role)?;
        self.change_local(|l| l.roles.insert(role)).await
    }

    /// Removes a role at runtime. Returns whether the node had it.
    pub async fn remove_role(&self, role: impl AsRef<str>) -> Result<bool> {
        let role = role.as_ref();
        self.change_local(|l| l.roles.remove(role)).await
    }

    /// Advertises that this node serves the RPC service `service`.
    pub async fn add_service(&self, service: impl AsRef<str>) -> Result<bool> {
        let service = ServiceName::new(service)?;
        self.change_local(|l| l.services.insert(service)).await
    }

    /// Stops advertising the RPC service `service`.
    pub async fn remove_service(&self, service: impl AsRef<str>) -> Result<bool> {
        let service = service.as_ref();
        self.change_local(|l| l.services.remove(service)).await
    }

    /// Applies `change` to the local state, publishes it in gossip and pushes it to every peer.
    async fn change_local(&self, change: impl FnOnce(&mut LocalState) -> bool) -> Result<bool> {
        if *self.inner.stop.borrow() {
            return Err(Error::ShutDown);
        }
        let (changed, roles, services, status) = {
            let mut local = self.lock_local();
            let changed = change(&mut local);
            (
                changed,
                join_list(local.roles.iter().map(Role::as_str)),
                join_list(local.services.iter().map(ServiceName::as_str)),
                local.status,
            )
        };
        if changed {
            self.publish_local(roles, services, status).await;
        }
        Ok(changed)
    }

    async fn publish_local(&self, roles: String, services: String, status: NodeStatus) {
        {
            let mut cc = self.inner.chitchat.lock().await;
            let me = cc.self_node_state();
            me.set(KEY_ROLES, roles);
            me.set(KEY_SERVICES, services);
            me.set(KEY_STATUS, status.as_str());
        }
        self.inner.kick.notify_one();
        announce(&self.inner).await;
    }

    async fn set_status(&self, status: NodeStatus) {
        let _ = self
            .change_local(|l| std::mem::replace(&mut l.status, status) != status)
            .await;
    }

    /// Leaves the cluster gracefully: announces `leaving` (peers stop picking this node for
    /// new work at once), keeps gossiping for the leave grace period so every peer hears it,
    /// then stops. Idempotent; other handles see [`Error::ShutDown`] afterwards.
    pub async fn shutdown(&self) {
        self.set_status(NodeStatus::Leaving).await;
        if self.inner.stop.send_replace(true) {
            return;
        }
        tokio::time::sleep(self.inner.config.leave_grace).await;
        // One more push, for peers that were busy when the first one came.
        announce(&self.inner).await;
        let _ = self.inner.handle.initiate_shutdown();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.inner.handle.termination_watcher(),
        )
        .await;
        for t in std::mem::take(&mut *self.lock_tasks()) {
            t.abort();
        }
        tracing::info!(node = %self.id(), "node left the cluster");
    }

    /// Stops the node abruptly, without telling anyone, as a crash would: peers notice only
    /// through failure detection. For tests and fault injection.
    pub fn kill(&self) {
        self.inner.stop.send_replace(true);
        self.inner.handle.abort();
        for t in std::mem::take(&mut *self.lock_tasks()) {
            t.abort();
        }
    }

    /// Runs until SIGTERM or Ctrl-C, then leaves gracefully ([`shutdown`](Node::shutdown)).
    pub async fn run_until_shutdown(&self) -> Result<()> {
        shutdown_signal().await;
        tracing::info!(node = %self.id(), "shutdown signal received, leaving");
        self.shutdown().await;
        Ok(())
    }

    /// Resolves when the node has been shut down or killed.
    pub async fn stopped(&self) {
        let mut rx = self.inner.stop.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.inner.id)
            .field("cluster", &self.inner.cluster)
            .field("gossip_addr", &self.inner.gossip_addr)
            .field("rpc_addr", &self.inner.rpc_addr)
            .finish_non_exhaustive()
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Sends a gossip round (SYN) to every known peer, so that a local change reaches everyone in
/// one round trip instead of spreading over several gossip intervals.
async fn announce(inner: &Inner) {
    let peers: Vec<SocketAddr> = {
        let cc = inner.chitchat.lock().await;
        let me = cc.self_chitchat_id().clone();
        cc.live_nodes()
            .filter(|id| **id != me)
            .map(|id| id.gossip_advertise_addr)
            .collect()
    };
    for addr in peers {
        let _ = inner.handle.gossip(addr);
    }
}

/// Reads chitchat's live nodes into members, re-evaluating liveness first so that heartbeats
/// that just arrived count now rather than at the next gossip tick.
async fn read_members(inner: &Inner) -> Vec<Member> {
    let mut cc = inner.chitchat.lock().await;
    cc.update_nodes_liveness();
    cc.live_nodes()
        .filter_map(|cid| {
            let state = cc.node_state(cid)?;
            Some(Member::from_gossip(
                NodeId::from_parts(cid.node_id.clone(), cid.generation_id),
                cid.gossip_advertise_addr,
                state.key_values(),
            ))
        })
        .collect()
}

/// Rebuilds the registry whenever chitchat's set of live nodes or any node's state changes, and
/// greets every node it learns of.
async fn registry_loop(weak: std::sync::Weak<Inner>) {
    let Some(inner) = weak.upgrade() else { return };
    let mut live = inner.chitchat.lock().await.live_nodes_watcher();
    let kick = inner.kick.clone();
    drop(inner);
    let mut greeted: HashSet<ChitchatId> = HashSet::new();
    loop {
        let Some(inner) = weak.upgrade() else { return };
        greet_new_nodes(&inner, &mut greeted).await;
        let members = read_members(&inner).await;
        let others = members.iter().filter(|m| m.id != inner.id).count();
        inner.registry.publish(members);
        if others > 0 && !inner.registry.is_ready() {
            become_ready(&inner).await;
        }
        drop(inner);
        tokio::select! {
            changed = live.changed() => if changed.is_err() { return },
            _ = kick.notified() => {}
        }
    }
}

/// Gossips at once, twice, with every node this node has just learned of (from a peer's state,
/// before it is considered live). The two rounds give the other node's failure detector the
/// two heartbeats it needs to declare this node live, so a joining node is seen by everyone
/// after one exchange instead of after several random gossip rounds; likewise the nodes that
/// learn of a joiner greet it back.
async fn greet_new_nodes(inner: &Arc<Inner>, greeted: &mut HashSet<ChitchatId>) {
    let fresh: Vec<SocketAddr> = {
        let cc = inner.chitchat.lock().await;
        let me = cc.self_chitchat_id();
        let known: HashSet<&ChitchatId> = cc.node_states().keys().filter(|id| *id != me).collect();
        greeted.retain(|id| known.contains(id));
        known
            .into_iter()
            .filter(|id| greeted.insert((*id).clone()))
            .map(|id| id.gossip_advertise_addr)
            .collect()
    };
    if fresh.is_empty() {
        return;
    }
    for addr in &fresh {
        let _ = inner.handle.gossip(*addr);
    }
    let weak = Arc::downgrade(inner);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(25)).await;
        if let Some(inner) = weak.upgrade() {
            for addr in &fresh {
                let _ = inner.handle.gossip(*addr);
            }
        }
        // Heartbeats alone do not wake the registry (only state changes do): look again while
        // the greeted nodes' answers come in.
        for wait_ms in [25, 75, 150] {
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            match weak.upgrade() {
                Some(inner) => inner.kick.notify_one(),
                None => return,
            }
        }
    });
}

async fn become_ready(inner: &Inner) {
    if inner.registry.is_ready() {
        return;
    }
    let changed = {
        let mut local = inner.local.lock().unwrap_or_else(|p| p.into_inner());
        if local.status == NodeStatus::Joining {
            local.status = NodeStatus::Serving;
            true
        } else {
            false
        }
    };
    if changed {
        inner
            .chitchat
            .lock()
            .await
            .self_node_state()
            .set(KEY_STATUS, NodeStatus::Serving.as_str());
    }
    // The registry shows this node serving before anyone waiting on readiness wakes up.
    inner.registry.publish(read_members(inner).await);
    inner.registry.set_ready();
    announce(inner).await;
    tracing::info!(node = %inner.id, "node is ready");
}

/// Feeds discovered addresses to gossip, and decides readiness when no peer can be found.
async fn join_loop(
    weak: std::sync::Weak<Inner>,
    mut discovery: Option<watch::Receiver<Arc<BTreeSet<SocketAddr>>>>,
    bound: SocketAddr,
) {
    let Some(inner) = weak.upgrade() else { return };
    let interval = inner.config.gossip_interval;
    let join_deadline = tokio::time::Instant::now() + inner.config.join_timeout;
    let own: HashSet<SocketAddr> = [inner.gossip_addr, bound].into_iter().collect();
    drop(inner);
    let mut first = true;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if *inner.stop.borrow() {
            return;
        }
        let discovered: Vec<SocketAddr> = discovery
            .as_ref()
            .map(|d| d.borrow().iter().copied().collect())
            .unwrap_or_default();
        let others: Vec<SocketAddr> = discovered
            .into_iter()
            .filter(|a| !own.contains(a))
            .collect();
        if !inner.registry.is_ready()
            && (others.is_empty() && first || tokio::time::Instant::now() >= join_deadline)
        {
            if !others.is_empty() {
                tracing::warn!(
                    node = %inner.id, seeds = ?others,
                    "no seed answered within the join timeout; starting as a new cluster"
                );
            }
            become_ready(&inner).await;
        }
        first = false;
        // Gossip with discovered addresses that are not (yet) live members: this is how a node
        // joins, and how separated parts of a cluster find each other again.
        let known: HashSet<SocketAddr> = {
            let cc = inner.chitchat.lock().await;
            cc.live_nodes().map(|id| id.gossip_advertise_addr).collect()
        };
        for addr in others.iter().filter(|a| !known.contains(a)) {
            let _ = inner.handle.gossip(*addr);
        }
        let ready = inner.registry.is_ready();
        drop(inner);
        // Before joining, knock often; afterwards, discovered strangers are rare.
        let pause = if ready {
            (interval * 4).max(Duration::from_secs(1))
        } else {
            interval
        };
        match discovery.as_mut() {
            Some(d) => {
                tokio::select! {
                    changed = d.changed() => if changed.is_err() { discovery = None },
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            None => tokio::time::sleep(pause).await,
        }
    }
}

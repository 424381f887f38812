//! [`Node`]: the handle of a running node. Starting it wires the sockets, gossip, discovery and
//! the membership tasks together; its methods read the registry, change the node's own roles
//! and services, and leave the cluster.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use chitchat::{Chitchat, ChitchatHandle, ListenerHandle, spawn_chitchat};
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinHandle;

use crate::address::Resolved;
use crate::builder::NodeBuilder;
use crate::config::Config;
use crate::discovery::{DiscoveryConfig, spawn_discovery};
use crate::error::{Error, Result};
use crate::id::{NodeId, NodeRef, Role, ServiceName, check_node_name};
use crate::identity::{default_node_name, next_incarnation};
use crate::keyring::{KeySource, Keyring};
use crate::local::{Local, LocalState, change};
use crate::member::{Member, NodeStatus};
use crate::membership::{MemberCache, announce, gossip_config, join_loop, registry_loop};
use crate::registry::{Events, Nodes, Registry};
use crate::secret::Secret;
use crate::signal::shutdown_signal;
use crate::sockets::Sockets;
use crate::stats::GossipStats;
use crate::transport::{ClusterKey, Counters, Network, SecureTransport, Wire};

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

pub(crate) struct Inner {
    pub(crate) id: NodeId,
    pub(crate) cluster: String,
    pub(crate) gossip_addr: SocketAddr,
    pub(crate) rpc_addr: Option<SocketAddr>,
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) config: Config,
    pub(crate) registry: Registry,
    pub(crate) counters: Arc<Counters>,
    pub(crate) handle: ChitchatHandle,
    pub(crate) chitchat: Arc<Mutex<Chitchat>>,
    pub(crate) local: Local,
    pub(crate) members: Mutex<MemberCache>,
    pub(crate) rpc_listener: StdMutex<Option<TcpListener>>,
    pub(crate) kick: Arc<Notify>,
    pub(crate) stop: watch::Sender<bool>,
    pub(crate) tasks: StdMutex<Vec<JoinHandle<()>>>,
    pub(crate) _listener: StdMutex<Option<ListenerHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.handle.abort();
        for t in self.tasks.get_mut().map(std::mem::take).unwrap_or_default() {
            t.abort();
        }
    }
}

impl Node {
    /// A builder for a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::new()
    }

    /// Starts a node with a merged, validated configuration and its resolved addresses.
    pub(crate) async fn start(config: Config, addrs: Resolved, network: Network) -> Result<Node> {
        let name = match &config.node_name {
            Some(n) => n.clone(),
            None => default_node_name(),
        };
        let id = NodeId::new(&name, next_incarnation())?;
        if config.insecure {
            tracing::warn!(
                cluster = %config.cluster,
                "INSECURE mode (CLUSTER_INSECURE): no cluster secret; gossip and RPC keys \
                 derive from a public value and the cluster name, so anyone who can reach this \
                 node can join the cluster, read its gossip and call its services. For local \
                 experiments only: set CLUSTER_SECRET (make one with `easy-rpc keygen`)"
            );
        }
        LocalState {
            roles: config.roles.clone(),
            services: config.services.clone(),
            status: NodeStatus::Joining,
        }
        .check_limits()?;
        let keyring = Arc::new(Keyring::new(&config.cluster, config.secrets.clone()));

        let (wire, udp_bound, gossip_addr, rpc_listener, rpc_addr) = match network {
            Network::Udp => {
                let s = Sockets::open(&addrs).await?;
                let wire = Wire::Udp(s.udp);
                (wire, s.udp_bound, s.gossip_addr, s.rpc_listener, s.rpc_addr)
            }
            #[cfg(feature = "memory-transport")]
            Network::Memory(net) => {
                let o = crate::memory::open(&net, &addrs)?;
                (o.wire, o.bound, o.gossip_addr, o.rpc_listener, o.rpc_addr)
            }
        };

        let counters = Arc::new(Counters::default());
        let transport = SecureTransport::new(
            wire,
            keyring.clone(),
            counters.clone(),
            config.gossip_max_packet_age,
        );
        let chitchat_config = gossip_config(&config, &id, gossip_addr, udp_bound);
        let local = LocalState {
            roles: config.roles.clone(),
            services: config.services.clone(),
            status: NodeStatus::Joining,
        };
        let kvs = local.initial_kvs(rpc_addr);
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
                    dns_server: addrs.dns_server,
                    min_interval: config.dns_min_interval,
                    max_interval: config.dns_max_interval,
                })
                .await?,
            )
        };

        let node = Node {
            inner: Arc::new(Inner {
                registry: Registry::new(Some(id.clone())),
                id,
                cluster: config.cluster.clone(),
                gossip_addr,
                rpc_addr,
                keyring,
                counters,
                handle,
                chitchat,
                local: Local::new(local),
                members: Mutex::new(MemberCache::new()),
                rpc_listener: StdMutex::new(rpc_listener),
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

    /// This node's identity.
    pub fn id(&self) -> &NodeId {
        &self.inner.id
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.inner.cluster
    }

    /// The configuration the node was started with, merged from code, the environment and
    /// the base [`Config`] (see [`NodeBuilder`]). Addresses are shown as configured;
    /// [`gossip_addr`](Node::gossip_addr) and [`rpc_addr`](Node::rpc_addr) give what they
    /// resolved to. Its `Debug` output redacts the secret.
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

    /// The key for `purpose` derived from the first secret of the keyring and the cluster
    /// name (e.g. for the RPC handshake): the key to send or prove with. Every node of the
    /// cluster with the same first secret derives the same key. See
    /// [`cluster_keys`](Node::cluster_keys) for the whole keyring.
    pub fn cluster_key(&self, purpose: &str) -> ClusterKey {
        let mut keys = self.inner.keyring.keys(purpose);
        keys.swap_remove(0)
    }

    /// The keys for `purpose`, one per secret of the keyring, in its order: the first one to
    /// send or prove with, every one to accept on receipt. Read it for each use (e.g. each
    /// connection): it changes with [`set_secrets`](Node::set_secrets). In insecure mode, the
    /// one key derived from the public value.
    pub fn cluster_keys(&self, purpose: &str) -> Vec<ClusterKey> {
        self.inner.keyring.keys(purpose)
    }

    /// Replaces the keyring at runtime; gossip sends with the new first secret and accepts
    /// every one of the list from now on, and [`cluster_keys`](Node::cluster_keys) returns
    /// their keys. To rotate a key across a running cluster without downtime:
    ///
    /// 1. on every node, `set_secrets(vec![old, new])` (the new key is accepted everywhere);
    /// 2. then on every node, `set_secrets(vec![new, old])` (everyone sends with it);
    /// 3. then on every node, `set_secrets(vec![new])` (the old key is refused).
    ///
    /// Wait for each step to reach every node before the next. On a node started in insecure
    /// mode this gives it a keyring: it stops accepting the public key.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an empty list.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), cluster_helper::Error> {
    /// use cluster_helper::{Node, Secret};
    ///
    /// let (old, new) = (Secret::generate(), Secret::generate());
    /// let node = Node::builder().listen("127.0.0.1:0").secret_key(old.clone()).start().await?;
    /// let before = node.cluster_key("rpc-handshake");
    /// node.set_secrets(vec![old, new])?;
    /// let keys = node.cluster_keys("rpc-handshake");
    /// assert_eq!(keys.len(), 2);
    /// assert_eq!(keys[0].as_bytes(), before.as_bytes());
    /// assert!(node.set_secrets(Vec::new()).is_err());
    /// node.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn set_secrets(&self, secrets: Vec<Secret>) -> Result<()> {
        if secrets.is_empty() {
            return Err(Error::config(
                "secrets (Node::set_secrets)",
                "an empty list",
                "at least one secret",
            ));
        }
        let n = secrets.len();
        self.inner.keyring.set(secrets);
        tracing::info!(node = %self.id(), keys = n, "keyring replaced");
        Ok(())
    }

    /// Whether the node runs in insecure mode (no secret in its keyring; see
    /// [`Config::insecure`]).
    pub fn is_insecure(&self) -> bool {
        self.inner.keyring.len() == 0
    }

    /// A handle on the node's keyring that follows [`set_secrets`](Node::set_secrets) and
    /// does not keep the node alive: what a layer above (easy-rpc's handshake) derives its
    /// keys from on every connection.
    pub fn key_source(&self) -> KeySource {
        KeySource(self.inner.keyring.clone())
    }

    /// The local registry.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The serving nodes that have `role`: a local, lock-free read.
    pub fn nodes_with_role(&self, role: &str) -> Nodes {
        self.inner.registry.nodes_with_role(role)
    }

    /// The roles of a node, by id or by name ([`NodeRef`]), if it is a member. This node's
    /// own roles are here as soon as a role change returns.
    ///
    /// ```
    /// # async fn f(node: cluster_helper::Node) {
    /// let by_id = node.roles_of(node.id());
    /// let by_name = node.roles_of("billing-0");
    /// # }
    /// ```
    pub fn roles_of<'a>(&self, node: impl Into<NodeRef<'a>>) -> Option<BTreeSet<Role>> {
        self.inner.registry.roles_of(node)
    }

    /// The member called `name` (whatever its incarnation), if there is one.
    pub fn member_by_name(&self, name: &str) -> Option<Arc<Member>> {
        self.inner.registry.member_by_name(name)
    }

    /// Every live member, this node included.
    pub fn members(&self) -> Vec<Arc<Member>> {
        self.inner.registry.members()
    }

    /// Subscribes to registry changes (see [`Events`] for what is delivered and in which
    /// order).
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

    /// This node's own roles, as of the last change that returned.
    pub fn roles(&self) -> BTreeSet<Role> {
        self.inner.local.view().roles.clone()
    }

    /// This node's own services, as of the last change that returned.
    pub fn services(&self) -> BTreeSet<ServiceName> {
        self.inner.local.view().services.clone()
    }

    /// This node's status.
    pub fn status(&self) -> NodeStatus {
        self.inner.local.view().status
    }

    /// How long ago this node last heard that each other member was alive: when its heartbeat
    /// last advanced here, whether its own gossip brought it or another node's did. The
    /// failure detector declares a member down when this grows well past the usual gap
    /// between heartbeats (a few gossip intervals). Members this node tracks, live or
    /// recently dead, by id; this node itself is not in it.
    ///
    /// ```no_run
    /// # async fn f(node: cluster_helper::Node) {
    /// for (id, ago) in node.last_heard().await {
    ///     println!("{id}: last heard {} ms ago", ago.as_millis());
    /// }
    /// # }
    /// ```
    pub async fn last_heard(&self) -> std::collections::BTreeMap<NodeId, Duration> {
        let cc = self.inner.chitchat.lock().await;
        let now = std::time::Instant::now();
        cc.last_heartbeats()
            .filter(|(cid, _)| check_node_name(&cid.node_id).is_ok())
            .map(|(cid, at)| {
                (
                    NodeId::from_parts(cid.node_id.clone(), cid.generation_id),
                    now.saturating_duration_since(at),
                )
            })
            .collect()
    }

    /// Counters of this node's gossip traffic.
    pub fn gossip_stats(&self) -> GossipStats {
        GossipStats::read(&self.inner.counters)
    }

    /// Adds a role at runtime; every node sees it within a gossip round trip. Returns whether
    /// the role was new.
    ///
    /// Every change to the node's own state (roles, services, status) takes one ordered path:
    /// changes apply one at a time, in the order they were called, and gossip always carries
    /// the last one. When this returns, the node's own [`nodes_with_role`](Node::nodes_with_role),
    /// [`roles_of`](Node::roles_of), [`members`](Node::members) and [`events`](Node::events)
    /// already show the change.
    ///
    /// Errors: [`Error::InvalidRole`] for a name outside the grammar of [`Role`],
    /// [`Error::TooMany`] beyond [`MAX_ROLES_PER_NODE`](crate::MAX_ROLES_PER_NODE) roles,
    /// [`Error::ShutDown`] after [`shutdown`](Node::shutdown).
    pub async fn add_role(&self, role: impl AsRef<str>) -> Result<bool> {
        let role = Role::new(role)?;
        change(&self.inner, |l| l.roles.insert(role)).await
    }

    /// Removes a role at runtime. Returns whether the node had it. Ordered and visible like
    /// [`add_role`](Node::add_role).
    pub async fn remove_role(&self, role: impl AsRef<str>) -> Result<bool> {
        let role = role.as_ref();
        change(&self.inner, |l| l.roles.remove(role)).await
    }

    /// Adds several roles as one change: every peer sees either none or all of them (a peer
    /// never observes part of a batch). Returns whether any was new. Nothing changes if one
    /// name is invalid or the limit would be exceeded.
    ///
    /// ```
    /// # async fn f(node: cluster_helper::Node) -> cluster_helper::Result<()> {
    /// node.add_roles(["shard:1", "shard:2", "region/eu"]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn add_roles<R: AsRef<str>>(
        &self,
        roles: impl IntoIterator<Item = R>,
    ) -> Result<bool> {
        let roles = parse_roles(roles)?;
        change(&self.inner, |l| {
            let before = l.roles.len();
            l.roles.extend(roles);
            l.roles.len() != before
        })
        .await
    }

    /// Removes several roles as one change (see [`add_roles`](Node::add_roles)). Returns
    /// whether the node had any of them.
    pub async fn remove_roles<R: AsRef<str>>(
        &self,
        roles: impl IntoIterator<Item = R>,
    ) -> Result<bool> {
        let roles: Vec<R> = roles.into_iter().collect();
        change(&self.inner, |l| {
            let before = l.roles.len();
            for r in &roles {
                l.roles.remove(r.as_ref());
            }
            l.roles.len() != before
        })
        .await
    }

    /// Replaces the node's roles with `roles`, as one change (see
    /// [`add_roles`](Node::add_roles)). Returns whether the set changed.
    pub async fn set_roles<R: AsRef<str>>(
        &self,
        roles: impl IntoIterator<Item = R>,
    ) -> Result<bool> {
        let roles: BTreeSet<Role> = parse_roles(roles)?.into_iter().collect();
        change(&self.inner, |l| {
            if l.roles == roles {
                false
            } else {
                l.roles = roles;
                true
            }
        })
        .await
    }

    /// Advertises that this node serves the RPC service `service`.
    pub async fn add_service(&self, service: impl AsRef<str>) -> Result<bool> {
        let service = ServiceName::new(service)?;
        change(&self.inner, |l| l.services.insert(service)).await
    }

    /// Stops advertising the RPC service `service`.
    pub async fn remove_service(&self, service: impl AsRef<str>) -> Result<bool> {
        let service = service.as_ref();
        change(&self.inner, |l| l.services.remove(service)).await
    }

    async fn set_status(&self, status: NodeStatus) {
        let _ = change(&self.inner, |l| {
            std::mem::replace(&mut l.status, status) != status
        })
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
    /// through failure detection. For tests and fault injection (feature `test-util`).
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
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

/// Validates every name first, so that a batch with one bad name changes nothing.
fn parse_roles<R: AsRef<str>>(roles: impl IntoIterator<Item = R>) -> Result<Vec<Role>> {
    roles.into_iter().map(Role::new).collect()
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

//! The local role registry: immutable snapshots swapped atomically, read without locks, and a
//! stream of the changes between them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, watch};

use crate::id::{NodeId, NodeRef, Role};
use crate::member::{Member, NodeStatus};

/// Nodes, as handed out by role lookups: a shared, immutable slice.
pub type Nodes = Arc<[Arc<Member>]>;

/// One consistent view of the cluster, as this node sees it at one moment.
///
/// Snapshots are immutable; the registry swaps in a new one on every change. Holding one keeps
/// it alive and unchanged.
///
/// A snapshot holds at most one incarnation per node name. Where gossip shows several live
/// incarnations of a name (a node restarted before its old run was declared down, or two
/// processes started with the same name), the newest wins, except in the registry of a node
/// that has that name: a node always keeps its own entry, and reports the other incarnation as
/// a [`ClusterEvent::NameConflict`].
#[derive(Debug)]
pub struct Snapshot {
    version: u64,
    members: BTreeMap<NodeId, Arc<Member>>,
    by_role: HashMap<Role, Nodes>,
    conflicts: Vec<Arc<Member>>,
    empty: Nodes,
}

impl Snapshot {
    fn empty() -> Snapshot {
        Snapshot {
            version: 0,
            members: BTreeMap::new(),
            by_role: HashMap::new(),
            conflicts: Vec::new(),
            empty: Arc::from(Vec::new()),
        }
    }

    /// Builds a snapshot of `members`: per name the newest incarnation, except `me`'s own name,
    /// where `me` stays and the others are conflicts.
    pub(crate) fn build(
        version: u64,
        members: impl IntoIterator<Item = Arc<Member>>,
        me: Option<&NodeId>,
    ) -> Snapshot {
        let mut newest: BTreeMap<Arc<str>, Arc<Member>> = BTreeMap::new();
        let mut conflicts = Vec::new();
        for m in members {
            if let Some(me) = me.filter(|me| me.name() == m.id.name()) {
                if m.id != *me {
                    conflicts.push(m);
                    continue;
                }
                newest.insert(m.id.name_arc().clone(), m);
                continue;
            }
            match newest.get(m.id.name()) {
                Some(cur) if cur.id.incarnation() >= m.id.incarnation() => {}
                _ => {
                    newest.insert(m.id.name_arc().clone(), m);
                }
            }
        }
        let members: BTreeMap<NodeId, Arc<Member>> =
            newest.into_values().map(|m| (m.id.clone(), m)).collect();
        let mut by_role: HashMap<Role, Vec<Arc<Member>>> = HashMap::new();
        for m in members.values() {
            if m.status != NodeStatus::Serving {
                continue;
            }
            for role in &m.roles {
                by_role.entry(role.clone()).or_default().push(m.clone());
            }
        }
        conflicts.sort_by(|a, b| a.id.cmp(&b.id));
        Snapshot {
            version,
            members,
            by_role: by_role
                .into_iter()
                .map(|(role, nodes)| (role, Nodes::from(nodes)))
                .collect(),
            conflicts,
            empty: Arc::from(Vec::new()),
        }
    }

    /// Increases with every change the registry publishes.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The serving nodes that have `role`, ordered by [`NodeId`]. Joining and leaving nodes are
    /// not included.
    pub fn nodes_with_role(&self, role: &str) -> Nodes {
        self.by_role
            .get(role)
            .cloned()
            .unwrap_or_else(|| self.empty.clone())
    }

    /// The roles of a node, by id or by name ([`NodeRef`]), if it is a member.
    pub fn roles_of<'a>(
        &self,
        node: impl Into<NodeRef<'a>>,
    ) -> Option<&std::collections::BTreeSet<Role>> {
        self.find(node.into()).map(|m| &m.roles)
    }

    /// One member by id.
    pub fn member(&self, node: &NodeId) -> Option<&Arc<Member>> {
        self.members.get(node)
    }

    /// The member called `name`, whatever its incarnation (a snapshot holds at most one per
    /// name).
    pub fn member_by_name(&self, name: &str) -> Option<&Arc<Member>> {
        // Ids order by name, then incarnation: the name's members are one contiguous range.
        let from = NodeId::from_parts(name.into(), 0);
        self.members
            .range(from..)
            .next()
            .filter(|(id, _)| id.name() == name)
            .map(|(_, m)| m)
    }

    fn find(&self, node: NodeRef<'_>) -> Option<&Arc<Member>> {
        match node {
            NodeRef::Id(id) => self.members.get(id),
            NodeRef::Name(name) => self.member_by_name(name),
        }
    }

    /// Other live incarnations of this node's own name (see [`ClusterEvent::NameConflict`]):
    /// empty unless another node runs with this node's name.
    pub fn name_conflicts(&self) -> &[Arc<Member>] {
        &self.conflicts
    }

    /// Every live member (joining, serving and leaving), ordered by [`NodeId`].
    pub fn members(&self) -> impl ExactSizeIterator<Item = &Arc<Member>> {
        self.members.values()
    }

    /// The roles that at least one serving node has, with those nodes.
    pub fn roles(&self) -> impl Iterator<Item = (&Role, &Nodes)> {
        self.by_role.iter()
    }
}

/// A change in the registry, as delivered by [`Events`].
///
/// Node events say where a node is in its life; role events form a *role view*: a
/// `RoleAdded { node, role }` is delivered exactly when `node` starts being returned by
/// [`Registry::nodes_with_role`]`(role)`, and a `RoleRemoved` exactly when it stops, whatever
/// the cause:
///
/// | cause | events (for that node, in this order) |
/// | --- | --- |
/// | a node starts (or finishes joining) with roles | `NodeUp`, then `RoleAdded` per role |
/// | a role added or removed at runtime | `RoleAdded` / `RoleRemoved` |
/// | a graceful leave | `RoleRemoved` per role, then `NodeLeaving`; later `NodeDown` |
/// | a crash or a partition (failure detection) | `RoleRemoved` per role, then `NodeDown` |
/// | a restart (a new incarnation replaces the old) | the old id's `RoleRemoved`s and `NodeDown`, then the new id's `NodeUp` and `RoleAdded`s |
///
/// So for one node id and one role, `RoleAdded` and `RoleRemoved` alternate, starting with
/// `RoleAdded`. A node that is joining or leaving has no role events (it is in no role lookup).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterEvent {
    /// A node started serving: it is now returned by lookups of its roles (each of which
    /// follows as a [`RoleAdded`](ClusterEvent::RoleAdded)).
    NodeUp(Arc<Member>),
    /// A node announced it is leaving: it is no longer returned by role lookups (its
    /// [`RoleRemoved`](ClusterEvent::RoleRemoved) events came just before).
    NodeLeaving(Arc<Member>),
    /// A node left the registry: it crashed, became unreachable, finished leaving, or was
    /// replaced by a newer incarnation of the same name.
    NodeDown(Arc<Member>),
    /// A node is now returned by lookups of `role`: it gained the role while serving, or
    /// started serving with it.
    RoleAdded {
        /// The node.
        node: NodeId,
        /// The role.
        role: Role,
    },
    /// A node is no longer returned by lookups of `role`: it lost the role, or stopped serving
    /// (leaving, crashed, gone, replaced).
    RoleRemoved {
        /// The node.
        node: NodeId,
        /// The role.
        role: Role,
    },
    /// Something else about a node changed (its services or RPC address).
    NodeUpdated(Arc<Member>),
    /// Another live node uses this node's name (only delivered on the node that has the name,
    /// once per other incarnation seen).
    ///
    /// This node keeps its own entry in its own registry and keeps serving. Every other node
    /// keeps one incarnation per name, the newest: if `other.id.incarnation()` is larger than
    /// `this.incarnation()`, peers route this name to `other`, and this node is not returned by
    /// their lookups until `other` is gone. An older `other` is usually this node's previous
    /// run, seen live for a moment after a quick restart. A warning is logged as well (at most
    /// one every 10 s).
    NameConflict {
        /// This node.
        this: NodeId,
        /// The other incarnation with the same name.
        other: Arc<Member>,
    },
}

/// One log line per membership change, as this node (`me`, absent in a registry of no node)
/// sees it: members coming, leaving and going and role changes at info, other updates at
/// debug. (A name conflict has its own, rate-limited, warning.)
fn log_event(me: Option<&NodeId>, event: &ClusterEvent) {
    let me = me.map_or_else(String::new, ToString::to_string);
    match event {
        ClusterEvent::NodeUp(m) => {
            tracing::info!(node = %me, member = %m.id, roles = ?m.roles, "member up");
        }
        ClusterEvent::NodeLeaving(m) => {
            tracing::info!(node = %me, member = %m.id, "member leaving");
        }
        ClusterEvent::NodeDown(m) => {
            tracing::info!(node = %me, member = %m.id, "member down");
        }
        ClusterEvent::RoleAdded { node, role } => {
            tracing::info!(node = %me, member = %node, %role, "role added");
        }
        ClusterEvent::RoleRemoved { node, role } => {
            tracing::info!(node = %me, member = %node, %role, "role removed");
        }
        ClusterEvent::NodeUpdated(m) => {
            tracing::debug!(
                node = %me, member = %m.id, services = ?m.services, rpc = ?m.rpc_addr,
                "member updated"
            );
        }
        ClusterEvent::NameConflict { .. } => {}
    }
}

/// The roles for which `m` is in role lookups: its roles if it is serving, else none.
fn looked_up_roles(m: &Member) -> Option<&std::collections::BTreeSet<Role>> {
    (m.status == NodeStatus::Serving).then_some(&m.roles)
}

fn role_events<'a>(
    id: &NodeId,
    roles: impl Iterator<Item = &'a Role>,
    added: bool,
    out: &mut Vec<ClusterEvent>,
) {
    out.extend(roles.map(|role| {
        let (node, role) = (id.clone(), role.clone());
        if added {
            ClusterEvent::RoleAdded { node, role }
        } else {
            ClusterEvent::RoleRemoved { node, role }
        }
    }));
}

/// Computes the events that lead from `old` to `new`: first the nodes that left, then the
/// others, in id order; per node as [`ClusterEvent`] describes.
pub(crate) fn diff(old: &Snapshot, new: &Snapshot, out: &mut Vec<ClusterEvent>) {
    for (id, m) in &old.members {
        if !new.members.contains_key(id) {
            if let Some(roles) = looked_up_roles(m) {
                role_events(id, roles.iter(), false, out);
            }
            out.push(ClusterEvent::NodeDown(m.clone()));
        }
    }
    let none = std::collections::BTreeSet::new();
    for (id, m) in &new.members {
        let prev = old.members.get(id);
        if prev.is_some_and(|p| Arc::ptr_eq(p, m) || p == m) {
            continue;
        }
        let before = prev.and_then(|p| looked_up_roles(p)).unwrap_or(&none);
        let after = looked_up_roles(m).unwrap_or(&none);
        role_events(id, before.difference(after), false, out);
        if prev.is_none_or(|p| p.status != m.status) {
            match m.status {
                NodeStatus::Serving => out.push(ClusterEvent::NodeUp(m.clone())),
                NodeStatus::Leaving => out.push(ClusterEvent::NodeLeaving(m.clone())),
                NodeStatus::Joining => {}
            }
        }
        role_events(id, after.difference(before), true, out);
        if prev.is_some_and(|p| p.services != m.services || p.rpc_addr != m.rpc_addr) {
            out.push(ClusterEvent::NodeUpdated(m.clone()));
        }
    }
}

/// The capacity of the event channel; a subscriber that falls further behind skips ahead and is
/// told how many events it missed.
const EVENT_CAPACITY: usize = 4096;

/// The capacity of the snapshot channel ([`Registry::snapshots`]).
const SNAPSHOT_CAPACITY: usize = 256;

/// The shortest time between two warnings about a name conflict.
const CONFLICT_WARN_EVERY: Duration = Duration::from_secs(10);

/// The local registry: `role -> nodes`, `node -> roles`, members, and their changes.
///
/// Reads ([`nodes_with_role`](Registry::nodes_with_role), [`snapshot`](Registry::snapshot), ...)
/// never lock: they load the current [`Snapshot`] atomically. Only the membership task and the
/// node's own changes write. Cloning a `Registry` is cheap and gives another handle to the same
/// registry.
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
}

struct Shared {
    /// The node this registry belongs to (none for a synthetic registry).
    me: Option<NodeId>,
    /// Serializes writers (diff + swap + send); readers never take it.
    write: std::sync::Mutex<Option<Instant>>,
    current: ArcSwap<Snapshot>,
    /// `current`'s version, stored after it: one atomic load for [`Registry::version`], which
    /// callers poll per call.
    version: AtomicU64,
    events: broadcast::Sender<ClusterEvent>,
    snapshots: watch::Sender<Arc<Snapshot>>,
    every_snapshot: broadcast::Sender<Arc<Snapshot>>,
    ready: watch::Sender<bool>,
}

impl Registry {
    /// An empty registry of the node `me`.
    pub(crate) fn new(me: Option<NodeId>) -> Registry {
        let empty = Arc::new(Snapshot::empty());
        Registry {
            shared: Arc::new(Shared {
                me,
                write: std::sync::Mutex::new(None),
                current: ArcSwap::new(empty.clone()),
                version: AtomicU64::new(0),
                events: broadcast::channel(EVENT_CAPACITY).0,
                snapshots: watch::channel(empty).0,
                every_snapshot: broadcast::channel(SNAPSHOT_CAPACITY).0,
                ready: watch::channel(false).0,
            }),
        }
    }

    /// Publishes a new snapshot built from `members`, and the events that lead to it. Never
    /// blocks: slow subscribers lag, they do not hold up membership.
    pub(crate) fn publish(&self, members: impl IntoIterator<Item = Arc<Member>>) {
        let mut last_warning = self
            .shared
            .write
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let old = self.shared.current.load_full();
        let me = self.shared.me.as_ref();
        let new = Snapshot::build(old.version + 1, members, me);
        let mut events = Vec::new();
        diff(&old, &new, &mut events);
        if let Some(me) = me {
            for other in &new.conflicts {
                if old.conflicts.iter().any(|o| o.id == other.id) {
                    continue;
                }
                let now = Instant::now();
                if last_warning.is_none_or(|t| now.duration_since(t) >= CONFLICT_WARN_EVERY) {
                    *last_warning = Some(now);
                    if other.id.incarnation() > me.incarnation() {
                        tracing::warn!(
                            node = %me, other = %other.id, other_gossip = %other.gossip_addr,
                            "another live node uses this node's name and is newer: peers route \
                             the name to it, not to this node, until it is gone"
                        );
                    } else {
                        tracing::warn!(
                            node = %me, other = %other.id, other_gossip = %other.gossip_addr,
                            "another live node uses this node's name (an older incarnation: if \
                             this node was just restarted, it is the previous run, and goes away \
                             when failure detection declares it down)"
                        );
                    }
                }
                events.push(ClusterEvent::NameConflict {
                    this: me.clone(),
                    other: other.clone(),
                });
            }
        }
        let conflicts_changed = old.conflicts.len() != new.conflicts.len()
            || old
                .conflicts
                .iter()
                .zip(&new.conflicts)
                .any(|(a, b)| a.id != b.id);
        if events.is_empty() && old.members == new.members && !conflicts_changed {
            return;
        }
        let new = Arc::new(new);
        self.shared.current.store(new.clone());
        self.shared.version.store(new.version, Ordering::Release);
        self.shared.snapshots.send_replace(new.clone());
        // Err only means nobody is subscribed.
        let _ = self.shared.every_snapshot.send(new);
        for event in events {
            log_event(me, &event);
            let _ = self.shared.events.send(event);
        }
    }

    pub(crate) fn set_ready(&self) {
        self.shared
            .ready
            .send_if_modified(|r| !std::mem::replace(r, true));
    }

    /// The serving nodes that have `role`, ordered by [`NodeId`]. A local, lock-free read.
    ///
    /// ```
    /// # async fn f(node: cluster_helper::Node) {
    /// for member in node.registry().nodes_with_role("billing").iter() {
    ///     println!("{} at {:?}", member.id, member.rpc_addr);
    /// }
    /// # }
    /// ```
    pub fn nodes_with_role(&self, role: &str) -> Nodes {
        self.shared.current.load().nodes_with_role(role)
    }

    /// The roles of a node, by id or by name ([`NodeRef`]), if it is a member.
    ///
    /// ```
    /// # fn f(registry: &cluster_helper::Registry, id: &cluster_helper::NodeId) {
    /// assert_eq!(registry.roles_of(id), registry.roles_of(id.name()));
    /// # }
    /// ```
    pub fn roles_of<'a>(
        &self,
        node: impl Into<NodeRef<'a>>,
    ) -> Option<std::collections::BTreeSet<Role>> {
        self.shared.current.load().roles_of(node).cloned()
    }

    /// The member called `name`, whatever its incarnation, if there is one.
    pub fn member_by_name(&self, name: &str) -> Option<Arc<Member>> {
        self.shared.current.load().member_by_name(name).cloned()
    }

    /// Every live member (joining, serving and leaving).
    pub fn members(&self) -> Vec<Arc<Member>> {
        self.shared.current.load().members().cloned().collect()
    }

    /// The version of the current snapshot ([`Snapshot::version`]), without taking the
    /// snapshot: a cheap check (one atomic load) for "has anything changed since version v?".
    /// While a new snapshot is being published it may trail [`Registry::snapshot`]'s version
    /// for a moment; it is never ahead of it.
    ///
    /// ```
    /// # fn f(registry: &cluster_helper::Registry) {
    /// let seen = registry.version();
    /// // ... later: rebuild what was derived from the registry only if it changed.
    /// if registry.version() != seen {
    ///     let snapshot = registry.snapshot();
    /// #   let _ = snapshot;
    /// }
    /// # }
    /// ```
    pub fn version(&self) -> u64 {
        self.shared.version.load(Ordering::Acquire)
    }

    /// The current snapshot: one consistent view for several reads.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.current.load_full()
    }

    /// A receiver that always holds the latest snapshot and wakes on every change. Useful to
    /// react to "the set of billing nodes changed" without processing each event.
    pub fn watch(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.shared.snapshots.subscribe()
    }

    /// Subscribes to the changes from now on (see [`Events`] and [`ClusterEvent`]).
    pub fn events(&self) -> Events {
        Events {
            rx: self.shared.events.subscribe(),
        }
    }

    /// The current snapshot and a subscription to the changes after it, taken together: the
    /// first event received is the first change after that snapshot, with none missed in
    /// between. A subscriber that lagged can call this again to start over from a consistent
    /// state.
    ///
    /// ```
    /// # async fn f(node: cluster_helper::Node) {
    /// let (snapshot, mut events) = node.registry().snapshot_and_events();
    /// let mut billing: Vec<_> = snapshot.nodes_with_role("billing").iter().map(|m| m.id.clone()).collect();
    /// while let Ok(event) = events.recv().await {
    ///     match event {
    ///         cluster_helper::ClusterEvent::RoleAdded { node, role } if role.as_str() == "billing" => {
    ///             billing.push(node)
    ///         }
    ///         cluster_helper::ClusterEvent::RoleRemoved { node, role } if role.as_str() == "billing" => {
    ///             billing.retain(|n| *n != node)
    ///         }
    ///         _ => {}
    ///     }
    /// }
    /// # }
    /// ```
    pub fn snapshot_and_events(&self) -> (Arc<Snapshot>, Events) {
        let _writer = self
            .shared
            .write
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (self.snapshot(), self.events())
    }

    /// Subscribes to every snapshot the registry publishes from now on, in order (unlike
    /// [`watch`](Registry::watch), which only holds the latest). Each snapshot is the state
    /// after one change of the registry: a change a peer made as one batch
    /// ([`Node::add_roles`](crate::Node::add_roles)) is never seen half-applied. A subscriber
    /// more than 256 snapshots behind gets [`EventsError::Lagged`].
    pub fn snapshots(&self) -> Snapshots {
        Snapshots {
            rx: self.shared.every_snapshot.subscribe(),
        }
    }

    /// Whether this node has joined and seen the cluster (or, alone, waited its join timeout).
    pub fn is_ready(&self) -> bool {
        *self.shared.ready.borrow()
    }

    /// Waits until [`is_ready`](Registry::is_ready).
    pub async fn ready(&self) {
        let mut rx = self.shared.ready.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|r| *r).await;
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// A subscription to [`ClusterEvent`]s, from [`Registry::events`].
///
/// # What is delivered
///
/// - Every change of the local registry, as the events that lead from one snapshot to the
///   next (see [`ClusterEvent`] for which events each cause gives, and the role view).
/// - In order: events of one node are delivered in the order they happened in this registry;
///   the events of one registry change are delivered together, before those of the next.
///   Different nodes' events are ordered as this node learned of them, which can differ from
///   node to node.
/// - A change this node makes to itself ([`Node::add_role`](crate::Node::add_role), ...) is
///   delivered before that call returns (its events are already waiting in every
///   subscription).
/// - Changes that come and go between two gossip exchanges may be seen as one change, or not
///   at all: the registry follows the state of each node, not every step of it.
///
/// # Lagging
///
/// Events are buffered; a subscriber that falls more than 4096 events behind gets
/// [`EventsError::Lagged`] once, with the number of events it missed, and continues with newer
/// events. The events it missed are lost to it: to be exact again it should start over from
/// [`Registry::snapshot_and_events`]. A slow subscriber never slows membership down.
#[must_use = "events are only delivered to a subscriber that polls"]
#[derive(Debug)]
pub struct Events {
    rx: broadcast::Receiver<ClusterEvent>,
}

/// A subscription to every published [`Snapshot`], from [`Registry::snapshots`].
#[must_use = "snapshots are only delivered to a subscriber that polls"]
#[derive(Debug)]
pub struct Snapshots {
    rx: broadcast::Receiver<Arc<Snapshot>>,
}

impl Snapshots {
    /// The next snapshot.
    pub async fn recv(&mut self) -> Result<Arc<Snapshot>, EventsError> {
        self.rx.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => EventsError::Lagged(n),
            broadcast::error::RecvError::Closed => EventsError::Closed,
        })
    }
}

/// Why [`Events::recv`] returned no event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventsError {
    /// The subscriber fell behind; this many events (or snapshots) were skipped.
    #[error("fell behind: {0} cluster events skipped")]
    Lagged(u64),
    /// The node shut down.
    #[error("the node shut down")]
    Closed,
}

impl Events {
    /// The next event.
    pub async fn recv(&mut self) -> Result<ClusterEvent, EventsError> {
        self.rx.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => EventsError::Lagged(n),
            broadcast::error::RecvError::Closed => EventsError::Closed,
        })
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Result<ClusterEvent, EventsError>> {
        match self.rx.try_recv() {
            Ok(e) => Some(Ok(e)),
            Err(broadcast::error::TryRecvError::Empty) => None,
            Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Err(EventsError::Lagged(n))),
            Err(broadcast::error::TryRecvError::Closed) => Some(Err(EventsError::Closed)),
        }
    }

    /// Turns the subscription into a [`Stream`](futures::Stream).
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<ClusterEvent, EventsError>> {
        use futures::StreamExt;
        tokio_stream::wrappers::BroadcastStream::new(self.rx).map(|r| {
            r.map_err(|e| match e {
                tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n) => {
                    EventsError::Lagged(n)
                }
            })
        })
    }
}

/// A registry of `nodes` serving members without a running cluster, each with
/// `roles_per_node` of `roles` roles (`role-0`, `role-1`, ...), for benchmarks and tests of
/// code that reads a registry (feature `test-util`).
///
/// ```
/// let registry = cluster_helper::synthetic_registry(10, 4, 2);
/// assert_eq!(registry.members().len(), 10);
/// assert!(!registry.nodes_with_role("role-0").is_empty());
/// ```
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub fn synthetic_registry(nodes: usize, roles: usize, roles_per_node: usize) -> Registry {
    use crate::id::ServiceName;
    let registry = Registry::new(None);
    let roles = roles.max(1);
    let members = (0..nodes).map(|i| {
        Arc::new(Member {
            id: NodeId::from_parts(format!("node-{i}").into(), 1),
            roles: (0..roles_per_node)
                .filter_map(|k| Role::new(format!("role-{}", (i + k * 7) % roles)).ok())
                .collect(),
            services: std::collections::BTreeSet::<ServiceName>::new(),
            rpc_addr: None,
            gossip_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 10_000 + (i % 50_000) as u16)),
            status: NodeStatus::Serving,
        })
    });
    registry.publish(members);
    registry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ServiceName;
    use std::collections::BTreeSet;

    fn member(name: &str, inc: u64, roles: &[&str], status: NodeStatus) -> Arc<Member> {
        Arc::new(Member {
            id: NodeId::new(name, inc).unwrap(),
            roles: roles.iter().map(|r| Role::new(r).unwrap()).collect(),
            services: BTreeSet::<ServiceName>::new(),
            rpc_addr: None,
            gossip_addr: "127.0.0.1:1".parse().unwrap(),
            status,
        })
    }

    fn drain(ev: &mut Events) -> Vec<String> {
        let mut got = Vec::new();
        while let Some(e) = ev.try_recv() {
            got.push(match e.unwrap() {
                ClusterEvent::NodeUp(m) => format!("up {}", m.id),
                ClusterEvent::NodeLeaving(m) => format!("leaving {}", m.id),
                ClusterEvent::NodeDown(m) => format!("down {}", m.id),
                ClusterEvent::RoleAdded { node, role } => format!("+{role} {node}"),
                ClusterEvent::RoleRemoved { node, role } => format!("-{role} {node}"),
                ClusterEvent::NodeUpdated(m) => format!("updated {}", m.id),
                ClusterEvent::NameConflict { this, other } => {
                    format!("conflict {this} {}", other.id)
                }
            });
        }
        got
    }

    #[test]
    fn newest_incarnation_wins_and_only_serving_nodes_have_roles() {
        let s = Snapshot::build(
            1,
            [
                member("a", 1, &["billing"], NodeStatus::Serving),
                member("a", 2, &["billing"], NodeStatus::Serving),
                member("b", 1, &["billing"], NodeStatus::Leaving),
                member("c", 1, &["billing", "audit"], NodeStatus::Joining),
            ],
            None,
        );
        let billing = s.nodes_with_role("billing");
        assert_eq!(billing.len(), 1);
        assert_eq!(billing[0].id, NodeId::new("a", 2).unwrap());
        assert_eq!(s.members().len(), 3);
        assert!(s.nodes_with_role("audit").is_empty());
        assert!(s.roles_of(&NodeId::new("a", 1).unwrap()).is_none());
        assert_eq!(s.roles_of("a").unwrap().len(), 1);
        assert_eq!(
            s.member_by_name("a").unwrap().id,
            NodeId::new("a", 2).unwrap()
        );
        assert!(s.member_by_name("").is_none());
        assert!(s.member_by_name("d").is_none());
        assert!(s.member_by_name("c").is_some());
    }

    #[test]
    fn a_node_keeps_its_own_entry_against_a_newer_namesake() {
        let me = NodeId::new("a", 1).unwrap();
        let s = Snapshot::build(
            1,
            [
                member("a", 1, &["billing"], NodeStatus::Serving),
                member("a", 2, &["billing"], NodeStatus::Serving),
            ],
            Some(&me),
        );
        assert_eq!(s.member_by_name("a").unwrap().id, me);
        assert_eq!(s.nodes_with_role("billing")[0].id, me);
        assert_eq!(s.name_conflicts().len(), 1);
    }

    #[tokio::test]
    async fn publish_emits_node_and_role_events_for_every_cause() {
        let r = Registry::new(None);
        let mut ev = r.events();
        // Joins serving with a role, gains one, leaves, restarts as a new incarnation.
        r.publish([member("a", 1, &["x"], NodeStatus::Serving)]);
        r.publish([member("a", 1, &["x", "y"], NodeStatus::Serving)]);
        r.publish([member("a", 1, &["y"], NodeStatus::Leaving)]);
        r.publish([member("a", 2, &["y"], NodeStatus::Serving)]);
        assert_eq!(
            drain(&mut ev),
            [
                "up a#1",
                "+x a#1",
                "+y a#1",
                "-x a#1",
                "-y a#1",
                "leaving a#1",
                "down a#1",
                "up a#2",
                "+y a#2"
            ]
        );
        assert_eq!(r.snapshot().version(), 4);
        // Joining, then serving; a crash takes the roles away with the node.
        r.publish([member("b", 1, &["z"], NodeStatus::Joining)]);
        r.publish([member("b", 1, &["z"], NodeStatus::Serving)]);
        r.publish(Vec::new());
        assert_eq!(
            drain(&mut ev),
            [
                "-y a#2", "down a#2", "up b#1", "+z b#1", "-z b#1", "down b#1"
            ]
        );
    }

    #[tokio::test]
    async fn a_name_conflict_is_an_event_once_per_other_incarnation() {
        let me = NodeId::new("a", 1).unwrap();
        let r = Registry::new(Some(me.clone()));
        let mut ev = r.events();
        let mine = member("a", 1, &["x"], NodeStatus::Serving);
        r.publish([mine.clone()]);
        r.publish([mine.clone(), member("a", 5, &["x"], NodeStatus::Serving)]);
        r.publish([
            mine.clone(),
            member("a", 5, &["x", "y"], NodeStatus::Serving),
        ]);
        r.publish([mine.clone()]);
        assert_eq!(drain(&mut ev), ["up a#1", "+x a#1", "conflict a#1 a#5"]);
        assert!(r.snapshot().name_conflicts().is_empty());
    }

    #[tokio::test]
    async fn every_snapshot_is_delivered_in_order() {
        let r = Registry::new(None);
        let mut snaps = r.snapshots();
        for i in 0..10 {
            let roles: Vec<String> = (0..i).map(|k| format!("r{k}")).collect();
            let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
            r.publish([member("a", 1, &roles, NodeStatus::Serving)]);
        }
        for i in 0..10 {
            let s = snaps.recv().await.unwrap();
            assert_eq!(s.roles_of("a").unwrap().len(), i);
        }
    }

    #[tokio::test]
    async fn a_slow_subscriber_lags_instead_of_blocking() {
        let r = Registry::new(None);
        let mut ev = r.events();
        for i in 0..(EVENT_CAPACITY as u64 + 10) {
            let roles = if i % 2 == 0 {
                &["x"][..]
            } else {
                &["x", "y"][..]
            };
            r.publish([member("a", 1, roles, NodeStatus::Serving)]);
        }
        assert!(matches!(ev.recv().await, Err(EventsError::Lagged(_))));
        assert!(ev.recv().await.is_ok());
    }
}

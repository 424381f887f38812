//! The local role registry: immutable snapshots swapped atomically, read without locks, and a
//! stream of the changes between them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, watch};

use crate::id::{NodeId, Role};
use crate::member::{Member, NodeStatus};

/// Nodes, as handed out by role lookups: a shared, immutable slice.
pub type Nodes = Arc<[Arc<Member>]>;

/// One consistent view of the cluster, as this node sees it at one moment.
///
/// Snapshots are immutable; the registry swaps in a new one on every change. Holding one keeps
/// it alive and unchanged.
#[derive(Debug)]
pub struct Snapshot {
    version: u64,
    members: BTreeMap<NodeId, Arc<Member>>,
    by_role: HashMap<Role, Nodes>,
    empty: Nodes,
}

impl Snapshot {
    fn empty() -> Snapshot {
        Snapshot {
            version: 0,
            members: BTreeMap::new(),
            by_role: HashMap::new(),
            empty: Arc::from(Vec::new()),
        }
    }

    pub(crate) fn build(version: u64, members: impl IntoIterator<Item = Member>) -> Snapshot {
        // A name seen with several incarnations is one node restarted: only the newest counts.
        let mut newest: BTreeMap<Arc<str>, Member> = BTreeMap::new();
        for m in members {
            match newest.get(m.id.name()) {
                Some(cur) if cur.id.incarnation() >= m.id.incarnation() => {}
                _ => {
                    newest.insert(m.id.name_arc().clone(), m);
                }
            }
        }
        let members: BTreeMap<NodeId, Arc<Member>> = newest
            .into_values()
            .map(|m| (m.id.clone(), Arc::new(m)))
            .collect();
        let mut by_role: HashMap<Role, Vec<Arc<Member>>> = HashMap::new();
        for m in members.values() {
            if m.status != NodeStatus::Serving {
                continue;
            }
            for role in &m.roles {
                by_role.entry(role.clone()).or_default().push(m.clone());
            }
        }
        Snapshot {
            version,
            members,
            by_role: by_role
                .into_iter()
                .map(|(role, nodes)| (role, Nodes::from(nodes)))
                .collect(),
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

    /// The roles of `node`, if it is a member.
    pub fn roles_of(&self, node: &NodeId) -> Option<&std::collections::BTreeSet<Role>> {
        self.members.get(node).map(|m| &m.roles)
    }

    /// One member by id.
    pub fn member(&self, node: &NodeId) -> Option<&Arc<Member>> {
        self.members.get(node)
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
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterEvent {
    /// A node started serving: it is now returned by lookups of its roles.
    NodeUp(Arc<Member>),
    /// A node announced it is leaving: it is no longer returned by role lookups.
    NodeLeaving(Arc<Member>),
    /// A node left the registry: it crashed, became unreachable, finished leaving, or was
    /// replaced by a newer incarnation of the same name.
    NodeDown(Arc<Member>),
    /// A serving node gained a role.
    RoleAdded {
        /// The node.
        node: NodeId,
        /// The role it gained.
        role: Role,
    },
    /// A serving node lost a role.
    RoleRemoved {
        /// The node.
        node: NodeId,
        /// The role it lost.
        role: Role,
    },
    /// Something else about a node changed (its services or RPC address).
    NodeUpdated(Arc<Member>),
}

/// Computes the events that lead from `old` to `new`.
pub(crate) fn diff(old: &Snapshot, new: &Snapshot, out: &mut Vec<ClusterEvent>) {
    for (id, m) in &new.members {
        match old.members.get(id) {
            None => match m.status {
                NodeStatus::Serving => out.push(ClusterEvent::NodeUp(m.clone())),
                NodeStatus::Leaving => out.push(ClusterEvent::NodeLeaving(m.clone())),
                NodeStatus::Joining => {}
            },
            Some(prev) if prev == m => {}
            Some(prev) => {
                if prev.status != m.status {
                    match m.status {
                        NodeStatus::Serving => out.push(ClusterEvent::NodeUp(m.clone())),
                        NodeStatus::Leaving => out.push(ClusterEvent::NodeLeaving(m.clone())),
                        NodeStatus::Joining => {}
                    }
                }
                if m.status == NodeStatus::Serving && prev.status == NodeStatus::Serving {
                    for role in m.roles.difference(&prev.roles) {
                        out.push(ClusterEvent::RoleAdded {
                            node: id.clone(),
                            role: role.clone(),
                        });
                    }
                    for role in prev.roles.difference(&m.roles) {
                        out.push(ClusterEvent::RoleRemoved {
                            node: id.clone(),
                            role: role.clone(),
                        });
                    }
                }
                if prev.services != m.services || prev.rpc_addr != m.rpc_addr {
                    out.push(ClusterEvent::NodeUpdated(m.clone()));
                }
            }
        }
    }
    for (id, m) in &old.members {
        if !new.members.contains_key(id) {
            out.push(ClusterEvent::NodeDown(m.clone()));
        }
    }
}

/// The capacity of the event channel; a subscriber that falls further behind skips ahead and is
/// told how many events it missed.
const EVENT_CAPACITY: usize = 4096;

/// The local registry: `role -> nodes`, `node -> roles`, members, and their changes.
///
/// Reads ([`nodes_with_role`](Registry::nodes_with_role), [`snapshot`](Registry::snapshot), ...)
/// never lock: they load the current [`Snapshot`] atomically. Only the membership task writes.
/// Cloning a `Registry` is cheap and gives another handle to the same registry.
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
}

struct Shared {
    /// Serializes writers (diff + swap + send); readers never take it.
    write: std::sync::Mutex<()>,
    current: ArcSwap<Snapshot>,
    events: broadcast::Sender<ClusterEvent>,
    snapshots: watch::Sender<Arc<Snapshot>>,
    ready: watch::Sender<bool>,
}

impl Registry {
    pub(crate) fn new() -> Registry {
        let empty = Arc::new(Snapshot::empty());
        Registry {
            shared: Arc::new(Shared {
                write: std::sync::Mutex::new(()),
                current: ArcSwap::new(empty.clone()),
                events: broadcast::channel(EVENT_CAPACITY).0,
                snapshots: watch::channel(empty).0,
                ready: watch::channel(false).0,
            }),
        }
    }

    /// Publishes a new snapshot built from `members`, and the events that lead to it. Never
    /// blocks: slow subscribers lag, they do not hold up membership.
    pub(crate) fn publish(&self, members: impl IntoIterator<Item = Member>) {
        let _writer = self
            .shared
            .write
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let old = self.shared.current.load_full();
        let new = Snapshot::build(old.version + 1, members);
        let mut events = Vec::new();
        diff(&old, &new, &mut events);
        if events.is_empty() && old.members == new.members {
            return;
        }
        let new = Arc::new(new);
        self.shared.current.store(new.clone());
        self.shared.snapshots.send_replace(new);
        for event in events {
            // Err only means nobody is subscribed.
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

    /// The roles of `node`, if it is a member.
    pub fn roles_of(&self, node: &NodeId) -> Option<std::collections::BTreeSet<Role>> {
        self.shared.current.load().roles_of(node).cloned()
    }

    /// Every live member (joining, serving and leaving).
    pub fn members(&self) -> Vec<Arc<Member>> {
        self.shared.current.load().members().cloned().collect()
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

    /// Subscribes to the changes from now on.
    pub fn events(&self) -> Events {
        Events {
            rx: self.shared.events.subscribe(),
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
/// Events are buffered; a subscriber that falls more than 4096 events behind gets
/// [`EventsError::Lagged`] once and continues with newer events, and can re-read the current
/// state from [`Registry::snapshot`]. It never slows membership down.
#[must_use = "events are only delivered to a subscriber that polls"]
#[derive(Debug)]
pub struct Events {
    rx: broadcast::Receiver<ClusterEvent>,
}

/// Why [`Events::recv`] returned no event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventsError {
    /// The subscriber fell behind; this many events were skipped.
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
    let registry = Registry::new();
    let roles = roles.max(1);
    let members = (0..nodes).map(|i| Member {
        id: NodeId::from_parts(format!("node-{i}").into(), 1),
        roles: (0..roles_per_node)
            .filter_map(|k| Role::new(format!("role-{}", (i + k * 7) % roles)).ok())
            .collect(),
        services: std::collections::BTreeSet::<ServiceName>::new(),
        rpc_addr: None,
        gossip_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 10_000 + (i % 50_000) as u16)),
        status: NodeStatus::Serving,
    });
    registry.publish(members);
    registry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ServiceName;
    use std::collections::BTreeSet;

    fn member(name: &str, inc: u64, roles: &[&str], status: NodeStatus) -> Member {
        Member {
            id: NodeId::new(name, inc).unwrap(),
            roles: roles.iter().map(|r| Role::new(r).unwrap()).collect(),
            services: BTreeSet::<ServiceName>::new(),
            rpc_addr: None,
            gossip_addr: "127.0.0.1:1".parse().unwrap(),
            status,
        }
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
        );
        let billing = s.nodes_with_role("billing");
        assert_eq!(billing.len(), 1);
        assert_eq!(billing[0].id, NodeId::new("a", 2).unwrap());
        assert_eq!(s.members().len(), 3);
        assert!(s.nodes_with_role("audit").is_empty());
        assert!(s.roles_of(&NodeId::new("a", 1).unwrap()).is_none());
    }

    #[tokio::test]
    async fn publish_emits_the_differences() {
        let r = Registry::new();
        let mut ev = r.events();
        r.publish([member("a", 1, &["x"], NodeStatus::Serving)]);
        r.publish([member("a", 1, &["x", "y"], NodeStatus::Serving)]);
        r.publish([member("a", 1, &["y"], NodeStatus::Leaving)]);
        r.publish([member("a", 2, &["y"], NodeStatus::Serving)]);
        let mut got = Vec::new();
        while let Some(e) = ev.try_recv() {
            got.push(e.unwrap());
        }
        let names: Vec<String> = got
            .iter()
            .map(|e| match e {
                ClusterEvent::NodeUp(m) => format!("up {}", m.id),
                ClusterEvent::NodeLeaving(m) => format!("leaving {}", m.id),
                ClusterEvent::NodeDown(m) => format!("down {}", m.id),
                ClusterEvent::RoleAdded { node, role } => format!("+{role} {node}"),
                ClusterEvent::RoleRemoved { node, role } => format!("-{role} {node}"),
                ClusterEvent::NodeUpdated(m) => format!("updated {}", m.id),
            })
            .collect();
        assert_eq!(
            names,
            ["up a#1", "+y a#1", "leaving a#1", "up a#2", "down a#1"]
        );
        assert_eq!(r.snapshot().version(), 4);
    }

    #[tokio::test]
    async fn a_slow_subscriber_lags_instead_of_blocking() {
        let r = Registry::new();
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

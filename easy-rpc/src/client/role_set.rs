//! The nodes of one role (or of an explicit list, for direct targets) that serve one service,
//! as endpoints: rebuilt only when the registry's snapshot version changes (one atomic load per
//! call otherwise), so picking reads a plain slice.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard};
use std::time::Instant;

use cluster_helper::{Member, NodeId, NodeRef, NodeStatus, Snapshot};

use super::endpoint::Endpoint;
use super::pick::{Route, ThreadRandom, pick};
use crate::error::{Never, RpcError};
use crate::runtime::Rpc;
use crate::service::ServiceDef;

/// Where a set's nodes come from.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// The serving nodes that have this role.
    Role(Arc<str>),
    /// These nodes, each if it is a serving member (by id: that incarnation only; by name:
    /// whichever incarnation the registry holds, so a restarted node is the same target).
    Nodes(Arc<[Listed]>),
}

/// One node of a [`Source::Nodes`] list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Listed {
    Id(NodeId),
    Name(Arc<str>),
}

impl From<NodeRef<'_>> for Listed {
    fn from(node: NodeRef<'_>) -> Self {
        match node {
            NodeRef::Id(id) => Listed::Id(id.clone()),
            NodeRef::Name(name) => Listed::Name(name.into()),
        }
    }
}

impl std::fmt::Display for Listed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listed::Id(id) => write!(f, "{id}"),
            Listed::Name(name) => f.write_str(name),
        }
    }
}

impl Source {
    /// The members this source names in `snapshot`, in its order (a node listed twice once).
    fn members(&self, snapshot: &Snapshot) -> Vec<Arc<Member>> {
        match self {
            Source::Role(role) => snapshot.nodes_with_role(role).iter().cloned().collect(),
            Source::Nodes(list) => {
                let mut members: Vec<Arc<Member>> = Vec::with_capacity(list.len());
                for listed in list.iter() {
                    let member = match listed {
                        Listed::Id(id) => snapshot.member(id),
                        Listed::Name(name) => snapshot.member_by_name(name),
                    };
                    if let Some(m) = member
                        && m.status == NodeStatus::Serving
                        && !members.iter().any(|seen| seen.id == m.id)
                    {
                        members.push(m.clone());
                    }
                }
                members
            }
        }
    }

    /// The error of a call that found none of this source's nodes.
    pub(crate) fn none_error(&self, service: &'static str) -> RpcError<Never> {
        match self {
            Source::Role(role) => RpcError::NoNodeForRole {
                role: role.to_string(),
                service,
            },
            Source::Nodes(list) => RpcError::NodeNotFound {
                node: list
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                service,
            },
        }
    }
}

/// The endpoints of a role at one registry version.
struct Cached<S: ServiceDef> {
    version: u64,
    endpoints: Vec<Arc<Endpoint<S>>>,
}

/// The serving nodes of one role that serve service `S`.
pub(crate) struct RoleSet<S: ServiceDef> {
    source: Source,
    /// A lock, not an `ArcSwap`: it is rewritten only when the registry changes, and a call
    /// holds the uncontended read lock only while it picks (no `await`), which costs fewer
    /// instructions than an arc-swap guard.
    cached: RwLock<Cached<S>>,
    /// The round-robin position.
    next: AtomicUsize,
}

impl<S: ServiceDef> std::fmt::Debug for RoleSet<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleSet")
            .field("source", &self.source)
            .field("service", &S::NAME)
            .finish_non_exhaustive()
    }
}

impl<S: ServiceDef> RoleSet<S> {
    pub(crate) fn new(source: Source) -> Self {
        RoleSet {
            source,
            cached: RwLock::new(Cached {
                version: u64::MAX,
                endpoints: Vec::new(),
            }),
            next: AtomicUsize::new(0),
        }
    }

    /// Where the nodes come from.
    pub(crate) fn source(&self) -> &Source {
        &self.source
    }

    /// The endpoints at the registry's current version: an atomic load and an uncontended
    /// read lock when it has not changed, a rebuild when it has.
    fn current(&self, rpc: &Rpc) -> RwLockReadGuard<'_, Cached<S>> {
        let version = rpc.registry.version();
        let cached = self.cached.read().unwrap_or_else(|p| p.into_inner());
        if cached.version == version {
            return cached;
        }
        drop(cached);
        let snapshot = rpc.registry.snapshot();
        let me = &rpc.id;
        let endpoints = self
            .source
            .members(&snapshot)
            .into_iter()
            .filter(|m| m.serves(S::NAME))
            .filter_map(|m| {
                m.rpc_addr
                    .map(|addr| rpc.pool.endpoint::<S>(&m.id, addr, m.id == *me))
            })
            .collect();
        {
            let mut cached = self.cached.write().unwrap_or_else(|p| p.into_inner());
            // A concurrent call may have stored a newer version meanwhile: keep that one.
            if cached.version == u64::MAX || cached.version < snapshot.version() {
                *cached = Cached {
                    version: snapshot.version(),
                    endpoints,
                };
            }
        }
        self.cached.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn all(&self, rpc: &Rpc) -> Vec<Arc<Endpoint<S>>> {
        self.current(rpc).endpoints.clone()
    }

    /// Picks one endpoint not in `tried` by `route` (see [`pick`]), at `now` (a time the
    /// caller read already: picking reads no clock). A role of one node costs no draw and no
    /// load comparison: that node is the pick, down or not, as [`pick`] would choose.
    pub(crate) fn pick(
        &self,
        rpc: &Rpc,
        route: Route,
        tried: &[NodeId],
        now: Instant,
    ) -> Option<Arc<Endpoint<S>>> {
        let cached = self.current(rpc);
        if let [only] = cached.endpoints.as_slice() {
            return (!tried.contains(only.node())).then(|| only.clone());
        }
        pick(
            &cached.endpoints,
            route,
            tried,
            rpc.ms_at(now),
            &mut ThreadRandom,
            &self.next,
        )
        .cloned()
    }
}

/// A type-erased `Arc<RoleSet<S>>`, downcast by service type.
type Erased = Arc<dyn Any + Send + Sync>;

/// Every role set of one node, by role and service.
#[derive(Default)]
pub(crate) struct RoleSets {
    /// By role and service type (not wire name: see the pool's key).
    sets: RwLock<HashMap<(Arc<str>, TypeId), Erased>>,
}

impl std::fmt::Debug for RoleSets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.sets.read().map_or(0, |m| m.len());
        f.debug_struct("RoleSets").field("sets", &n).finish()
    }
}

impl RoleSets {
    /// The nodes of `role` that serve `S`, made on first use.
    pub(crate) fn get<S: ServiceDef>(&self, role: &Arc<str>) -> Arc<RoleSet<S>> {
        let key = (role.clone(), TypeId::of::<S>());
        if let Some(set) = self
            .sets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return set
                .clone()
                .downcast()
                .expect("the key holds the role set's service type");
        }
        let mut sets = self.sets.write().unwrap_or_else(|p| p.into_inner());
        sets.entry(key)
            .or_insert_with(|| Arc::new(RoleSet::<S>::new(Source::Role(role.clone()))))
            .clone()
            .downcast()
            .expect("the key holds the role set's service type")
    }
}

/// The role set a target handle resolved on its first call, kept for the next ones (shared by
/// its clones): no lock and no hash per call. It holds the set of the first service called
/// through the handle; a handle used for several services looks the others up in
/// [`RoleSets`] on each call.
#[derive(Default)]
pub(crate) struct SetCache(OnceLock<(TypeId, Erased)>);

impl std::fmt::Debug for SetCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetCache")
            .field("resolved", &self.0.get().is_some())
            .finish()
    }
}

impl SetCache {
    /// The nodes of `source` that serve `S`, from this cache, else from `rpc`'s role sets (a
    /// role) or new (a list of nodes: a direct target's handle keeps its own set).
    pub(crate) fn get<S: ServiceDef>(&self, rpc: &Rpc, source: &Source) -> Arc<RoleSet<S>> {
        if let Some((service, set)) = self.0.get()
            && *service == TypeId::of::<S>()
        {
            return set
                .clone()
                .downcast()
                .expect("the cache holds the role set of its service type");
        }
        let set = match source {
            Source::Role(role) => rpc.roles.get::<S>(role),
            Source::Nodes(_) => Arc::new(RoleSet::new(source.clone())),
        };
        let _ = self.0.set((TypeId::of::<S>(), set.clone() as Erased));
        set
    }
}

//! A role's serving nodes as a [`tower::discover::Discover`] stream, so that tower's own
//! balancers (`tower::balance::p2c::Balance`) can spread any tower service (a hyper or tonic
//! client, ...) over the nodes of a role.
//!
//! Feature `tower`, on by default: it adds `tower` with only its `discover` feature (the
//! `Change` type and the `Discover` trait: a few small crates that tonic, axum, hyper and
//! easy-rpc users already have), and it is what lets a program that does not use easy-rpc
//! balance over the registry. A build that wants none of it turns default features off.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tower::discover::Change;

use crate::error::Result;
use crate::id::{NodeId, Role, ServiceName};
use crate::member::Member;
use crate::registry::{Registry, Snapshot};

/// The serving nodes of one role (optionally only those that serve one service), as a
/// [`tower::discover::Discover`]: a [`Stream`] of [`Change::Insert`]`(NodeId, S)` and
/// [`Change::Remove`]`(NodeId)`.
///
/// - At start it yields one `Insert` for every node that serves the role in the registry's
///   current snapshot, then follows the registry: `Insert` when a node starts serving the role
///   (it joins and becomes ready, or gains the role or the service), `Remove` when it stops:
///   it announces `leaving` (a graceful shutdown: it gets no new request while it drains), it
///   is declared down (a crash), loses the role or the service, or is replaced by a newer
///   incarnation of its name (then `Remove` of the old id comes before `Insert` of the new).
/// - No change is lost and none is repeated: it follows the registry's latest snapshot
///   ([`Registry::watch`], which never lags) and yields the difference from the set it has
///   already reported, removals first. A node that comes and goes between two polls may never
///   be seen; a key is inserted at most once until it is removed, as `Discover` requires.
/// - Every poll reads the latest snapshot, also once the task's tokio budget is spent (when a
///   waiting `changed()` would answer "pending"): a balancer that polls discovery before each
///   pick never picks a node the registry had already dropped when it picked.
/// - The service of a node is made by `make` from its [`Member`] when it is inserted.
///   Where to reach the node is in the member: [`Member::rpc_addr`] is the TCP address the
///   node advertises (a program that serves HTTP itself can serve it on the listener
///   cluster-helper binds for it, [`RpcListen::SamePort`](crate::RpcListen::SamePort) or
///   `CLUSTER_RPC_LISTEN=same`, taken with [`Node::take_rpc_listener`](crate::Node::take_rpc_listener));
///   or [`Member::gossip_addr`]'s IP with a port every node of the role uses (a Kubernetes
///   `containerPort`). The roles and services a member gossips can select further.
/// - The stream ends, after a `Remove` for every node still inserted, when every handle of
///   the registry is dropped.
///
/// A node's own registry includes itself: a node that has the role is one of the nodes.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cluster_helper::Error> {
/// use std::convert::Infallible;
/// use std::net::SocketAddr;
///
/// use cluster_helper::{Member, Node, RoleDiscover, Secret};
/// use futures::StreamExt;
/// use tower::balance::p2c::Balance;
/// use tower::discover::Change;
/// use tower::load::{CompleteOnResponse, PendingRequests};
/// use tower::{Service, ServiceExt, service_fn};
///
/// let secret = Secret::generate();
/// let web = Node::builder()
///     .cluster("discover").name("web-1").roles(["web"]).listen("127.0.0.1:0")
///     .secret_key(secret.clone())
///     .start().await?;
/// let client = Node::builder()
///     .cluster("discover").name("client").listen("127.0.0.1:0")
///     .secret_key(secret)
///     .seeds([web.gossip_addr().to_string()])
///     .start().await?;
/// client.ready().await;
///
/// // The changes themselves: here each node's service is just where it gossips.
/// let mut web_nodes = RoleDiscover::new(client.registry(), "web", |m: &Member| m.gossip_addr)?;
/// let Some(Ok(Change::Insert(id, addr))) = web_nodes.next().await else { panic!() };
/// assert_eq!((&id, addr), (web.id(), web.gossip_addr()));
///
/// // Fed to tower's balancer: every request goes to one node of the role. A real service
/// // would be an HTTP or gRPC client of the member's address.
/// let to_node = |m: &Member| {
///     let addr = m.gossip_addr;
///     let echo = service_fn(move |req: String| async move { Ok::<_, Infallible>((addr, req)) });
///     PendingRequests::new(echo, CompleteOnResponse::default())
/// };
/// let mut balance = Balance::new(RoleDiscover::new(client.registry(), "web", to_node)?);
/// let (addr, _) = balance.ready().await.unwrap().call("hello".to_owned()).await.unwrap();
/// assert_eq!(addr, web.gossip_addr());
///
/// // A graceful leave removes the node at once.
/// web.shutdown().await;
/// let Some(Ok(Change::Remove(gone))) = web_nodes.next().await else { panic!() };
/// assert_eq!(gone, id);
/// client.shutdown().await;
/// # Ok(()) }
/// ```
#[must_use = "a Discover only follows the registry while it is polled"]
pub struct RoleDiscover<S, F> {
    role: Role,
    service: Option<ServiceName>,
    make: F,
    /// The registry's latest snapshot, read at every poll without waiting: `changed()` is
    /// cooperative (it answers "pending" once the task's tokio budget is spent, even with a
    /// change there), and a balancer that polls discovery before each pick must not pick a
    /// node the registry already dropped. `None` once the registry is gone.
    latest: Option<watch::Receiver<Arc<Snapshot>>>,
    /// Whether the first snapshot was read.
    primed: bool,
    /// Wakes the task when the registry changes (its items are only wake-ups).
    wake: WatchStream<Arc<Snapshot>>,
    /// The nodes inserted and not removed.
    inserted: BTreeSet<NodeId>,
    /// Changes found and not yet yielded.
    queued: VecDeque<Change<NodeId, S>>,
}

impl<S, F> RoleDiscover<S, F>
where
    F: FnMut(&Member) -> S,
{
    /// The serving nodes of `role` in `registry`, each node's service made by `make`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRole`](crate::Error::InvalidRole) if `role` is not a valid role name.
    pub fn new(registry: &Registry, role: impl AsRef<str>, make: F) -> Result<Self> {
        Ok(RoleDiscover {
            role: Role::new(role)?,
            service: None,
            make,
            latest: Some(registry.watch()),
            primed: false,
            wake: WatchStream::from_changes(registry.watch()),
            inserted: BTreeSet::new(),
            queued: VecDeque::new(),
        })
    }

    /// Only the nodes of the role that also serve `service` (as they gossip it:
    /// [`Member::services`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidService`](crate::Error::InvalidService) if `service` is not a valid
    /// service name.
    pub fn serving(mut self, service: impl AsRef<str>) -> Result<Self> {
        self.service = Some(ServiceName::new(service)?);
        Ok(self)
    }

    /// The role followed.
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// The service the nodes must serve, if one was given.
    pub fn service(&self) -> Option<&ServiceName> {
        self.service.as_ref()
    }

    /// Queues the changes from the nodes already inserted to those of `snapshot`.
    fn diff(&mut self, snapshot: &Snapshot) {
        let nodes = snapshot.nodes_with_role(self.role.as_str());
        let now: BTreeMap<&NodeId, &Arc<Member>> = nodes
            .iter()
            .filter(|m| self.service.as_ref().is_none_or(|s| m.serves(s.as_str())))
            .map(|m| (&m.id, m))
            .collect();
        let gone: Vec<NodeId> = self
            .inserted
            .iter()
            .filter(|id| !now.contains_key(id))
            .cloned()
            .collect();
        for id in gone {
            self.inserted.remove(&id);
            self.queued.push_back(Change::Remove(id));
        }
        for (id, member) in now {
            if self.inserted.insert(id.clone()) {
                self.queued
                    .push_back(Change::Insert(id.clone(), (self.make)(member)));
            }
        }
    }

    /// The registry is gone: every node still inserted is removed.
    fn remove_all(&mut self) {
        for id in std::mem::take(&mut self.inserted) {
            self.queued.push_back(Change::Remove(id));
        }
    }
}

impl<S, F> Stream for RoleDiscover<S, F>
where
    F: FnMut(&Member) -> S,
{
    type Item = std::result::Result<Change<NodeId, S>, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(change) = this.queued.pop_front() {
                return Poll::Ready(Some(Ok(change)));
            }
            let Some(latest) = this.latest.as_mut() else {
                return Poll::Ready(None);
            };
            match latest.has_changed() {
                Ok(changed) if changed || !this.primed => {
                    this.primed = true;
                    let snapshot = latest.borrow_and_update().clone();
                    this.diff(&snapshot);
                    continue;
                }
                Ok(_) => {}
                Err(_) => {
                    // Every handle of the registry is gone.
                    this.latest = None;
                    this.remove_all();
                    continue;
                }
            }
            // Nothing new: wait for a change, then read the latest again.
            if ready!(this.wake.poll_next_unpin(cx)).is_none() {
                this.latest = None;
                this.remove_all();
            }
        }
    }
}

// No field is pinned: the stream is moved freely (tower's `Balance` needs `Unpin`).
impl<S, F> Unpin for RoleDiscover<S, F> {}

impl<S, F> fmt::Debug for RoleDiscover<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleDiscover")
            .field("role", &self.role)
            .field("service", &self.service)
            .field("inserted", &self.inserted)
            .field("queued", &self.queued.len())
            .field("ended", &self.latest.is_none())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;
    use crate::member::NodeStatus;

    fn member(
        name: &str,
        incarnation: u64,
        roles: &[&str],
        services: &[&str],
        status: NodeStatus,
    ) -> Arc<Member> {
        Arc::new(Member {
            id: NodeId::new(name, incarnation).unwrap(),
            roles: roles.iter().map(|r| Role::new(r).unwrap()).collect(),
            services: services
                .iter()
                .map(|s| ServiceName::new(s).unwrap())
                .collect(),
            rpc_addr: None,
            gossip_addr: format!("127.0.0.1:{}", 1000 + incarnation).parse().unwrap(),
            status,
        })
    }

    /// Every change ready now, written `+id port` / `-id`, and `end` if the stream ended.
    fn changes<F: FnMut(&Member) -> u16>(d: &mut RoleDiscover<u16, F>) -> Vec<String> {
        let mut got = Vec::new();
        while let Some(next) = d.next().now_or_never() {
            got.push(match next {
                Some(Ok(Change::Insert(id, port))) => format!("+{id} {port}"),
                Some(Ok(Change::Remove(id))) => format!("-{id}"),
                None => {
                    got.push("end".to_owned());
                    break;
                }
            });
        }
        got
    }

    use NodeStatus::{Joining, Leaving, Serving};

    #[test]
    fn inserts_the_serving_nodes_then_follows_every_change_once() {
        let registry = Registry::new(None);
        let a = member("a", 1, &["web"], &[], Serving);
        let b = member("b", 1, &["web"], &[], Serving);
        let c = member("c", 1, &["web"], &[], Joining);
        let d = member("d", 1, &["db"], &[], Serving);
        registry.publish([a.clone(), b.clone(), c.clone(), d.clone()]);
        let port = |m: &Member| m.gossip_addr.port();
        let mut web = RoleDiscover::new(&registry, "web", port).unwrap();
        // The nodes serving the role at start; joining nodes and other roles are not.
        assert_eq!(changes(&mut web), ["+a#1 1001", "+b#1 1001"]);
        assert_eq!(changes(&mut web), Vec::<String>::new());
        // c becomes ready.
        let c = member("c", 1, &["web"], &[], Serving);
        registry.publish([a.clone(), b.clone(), c.clone(), d.clone()]);
        assert_eq!(changes(&mut web), ["+c#1 1001"]);
        // A change that leaves the role's nodes as they were yields nothing (no duplicate).
        let d = member("d", 1, &["db", "audit"], &[], Serving);
        let a = member("a", 1, &["web", "audit"], &[], Serving);
        registry.publish([a.clone(), b.clone(), c.clone(), d.clone()]);
        assert_eq!(changes(&mut web), Vec::<String>::new());
        // b leaves gracefully: removed as soon as it says so.
        let b = member("b", 1, &["web"], &[], Leaving);
        registry.publish([a.clone(), b.clone(), c.clone(), d.clone()]);
        assert_eq!(changes(&mut web), ["-b#1"]);
        // c crashes (declared down: gone from the members); b's leave completes.
        registry.publish([a.clone(), d.clone()]);
        assert_eq!(changes(&mut web), ["-c#1"]);
        // a restarts as a new incarnation: the old one out first, then the new one in.
        let a2 = member("a", 2, &["web"], &[], Serving);
        registry.publish([a.clone(), a2.clone(), d.clone()]);
        assert_eq!(changes(&mut web), ["-a#1", "+a#2 1002"]);
        // Two changes between polls: only the latest state counts.
        registry.publish([
            a2.clone(),
            d.clone(),
            member("e", 1, &["web"], &[], Serving),
        ]);
        let f = member("f", 1, &["web"], &[], Serving);
        registry.publish([a2.clone(), d.clone(), f.clone()]);
        assert_eq!(changes(&mut web), ["+f#1 1001"]);
        // The role is dropped at runtime.
        let a2 = member("a", 2, &["db"], &[], Serving);
        registry.publish([a2, d, f]);
        assert_eq!(changes(&mut web), ["-a#2"]);
        // The registry goes away: every node still inserted is removed, then the stream ends.
        registry.publish([member("g", 1, &["web"], &[], Serving)]);
        assert_eq!(changes(&mut web), ["-f#1", "+g#1 1001"]);
        drop(registry);
        assert_eq!(changes(&mut web), ["-g#1", "end"]);
        assert_eq!(changes(&mut web), ["end"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_change_is_seen_even_once_the_task_budget_is_spent() {
        let registry = Registry::new(None);
        let a = member("a", 1, &["web"], &[], Serving);
        let b = member("b", 1, &["web"], &[], Serving);
        registry.publish([a.clone(), b]);
        let mut web =
            RoleDiscover::new(&registry, "web", |m: &Member| m.gossip_addr.port()).unwrap();
        assert_eq!(changes(&mut web), ["+a#1 1001", "+b#1 1001"]);
        let mut probe = registry.watch();
        registry.publish([a]);
        // Spend this task's tokio budget without yielding (a task that sends requests back to
        // back whose answers are already there does): cooperative operations now answer
        // "pending", the registry's `changed()` among them, although a change is there.
        let mut spent = false;
        for _ in 0..10_000 {
            if futures::poll!(std::pin::pin!(tokio::task::consume_budget())).is_pending() {
                spent = true;
                break;
            }
        }
        assert!(spent, "the budget was never spent");
        assert!(futures::poll!(std::pin::pin!(probe.changed())).is_pending());
        // The discovery yields the removal all the same: a balancer polling it before its
        // next pick does not pick b.
        assert_eq!(changes(&mut web), ["-b#1"]);
    }

    #[test]
    fn serving_a_service_selects_the_nodes_that_gossip_it() {
        let registry = Registry::new(None);
        let a = member("a", 1, &["web"], &["http"], Serving);
        let b = member("b", 1, &["web"], &[], Serving);
        registry.publish([a.clone(), b.clone()]);
        let port = |m: &Member| m.gossip_addr.port();
        let mut http = RoleDiscover::new(&registry, "web", port)
            .unwrap()
            .serving("http")
            .unwrap();
        assert_eq!(http.role().as_str(), "web");
        assert_eq!(http.service().map(|s| s.as_str()), Some("http"));
        assert_eq!(changes(&mut http), ["+a#1 1001"]);
        let b = member("b", 1, &["web"], &["http", "grpc"], Serving);
        registry.publish([a, b.clone()]);
        assert_eq!(changes(&mut http), ["+b#1 1001"]);
        let a = member("a", 1, &["web"], &[], Serving);
        registry.publish([a, b]);
        assert_eq!(changes(&mut http), ["-a#1"]);
        let debug = format!("{http:?}");
        assert!(
            debug.contains("RoleDiscover") && debug.contains("b#1"),
            "{debug}"
        );
    }

    #[test]
    fn bad_names_are_refused() {
        let registry = Registry::new(None);
        let port = |m: &Member| m.gossip_addr.port();
        assert!(matches!(
            RoleDiscover::new(&registry, "not a role", port),
            Err(crate::Error::InvalidRole { .. })
        ));
        let web = RoleDiscover::new(&registry, "web", port).unwrap();
        assert!(matches!(
            web.serving(""),
            Err(crate::Error::InvalidService { .. })
        ));
    }
}

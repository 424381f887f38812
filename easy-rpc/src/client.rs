//! The client side: one pooled, multiplexed connection per (node, service), the nodes of a
//! role that serve a service, picking one, and sending with reroutes and retries.

use std::any::Any as StdAny;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use cluster_helper::{Member, NodeId};
use tarpc::client::NewClient;
use tarpc::{ClientMessage, Response};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::codec::{Postcard, framing};
use crate::error::{Never, RejectReason, RpcError};
use crate::handshake::{self, HandshakeError};
use crate::options::{ClientOptions, Strategy};
use crate::server::{LEAVING_DETAIL, ServerState};
use crate::service::{MethodInfo, ServiceDef};

type Channel<S> = tarpc::client::Channel<Arc<<S as ServiceDef>::Req>, <S as ServiceDef>::Resp>;

/// A type-erased `Arc<RoleSet<S>>`, downcast by service type.
type Erased = Arc<dyn StdAny + Send + Sync>;

/// One connection per node and service.
type PoolKey = (NodeId, &'static str);

/// A pooled `Endpoint<S>` of any service.
trait PoolEntry: Send + Sync + 'static {
    /// Drops the pooled connection (the node left the registry).
    fn close(&self);
    /// For downcasting to the concrete endpoint.
    fn into_any(self: Arc<Self>) -> Erased;
}

impl<S: ServiceDef> PoolEntry for Endpoint<S> {
    fn close(&self) {
        self.conn.store(None);
    }
    fn into_any(self: Arc<Self>) -> Erased {
        self
    }
}

/// State shared by every client and the server of one node.
pub(crate) struct Rpc {
    pub(crate) node: cluster_helper::Node,
    key: [u8; 32],
    pub(crate) options: ClientOptions,
    endpoints: Mutex<HashMap<PoolKey, Arc<dyn PoolEntry>>>,
    roles: RwLock<HashMap<(Arc<str>, &'static str), Erased>>,
    pub(crate) server: Arc<ServerState>,
    epoch: Instant,
}

impl Rpc {
    pub(crate) fn new(node: cluster_helper::Node, options: ClientOptions) -> Arc<Rpc> {
        let key = *node.cluster_key("rpc-handshake").as_bytes();
        let server = Arc::new(ServerState::new(key, node.cluster().to_owned()));
        Arc::new(Rpc {
            node,
            key,
            options,
            endpoints: Mutex::new(HashMap::new()),
            roles: RwLock::new(HashMap::new()),
            server,
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The endpoint of `member` for service `S`, shared by every role it appears in.
    fn endpoint<S: ServiceDef>(&self, member: &Member, addr: SocketAddr) -> Arc<Endpoint<S>> {
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map
            .entry((member.id.clone(), S::NAME))
            .or_insert_with(|| {
                Arc::new(Endpoint::<S> {
                    node: member.id.clone(),
                    name_hash: hash64(member.id.name()),
                    addr,
                    local: member.id == *self.node.id(),
                    conn: ArcSwapOption::empty(),
                    connecting: tokio::sync::Mutex::new(()),
                    in_flight: AtomicUsize::new(0),
                    down_until_ms: AtomicU64::new(0),
                    ewma_ns: AtomicU64::new(0),
                    ewma_at_ms: AtomicU64::new(0),
                    measured: AtomicBool::new(false),
                })
            })
            .clone();
        entry
            .into_any()
            .downcast::<Endpoint<S>>()
            .expect("one endpoint type per service name")
    }

    /// The nodes of `role` that serve `S`, cached until the registry changes.
    pub(crate) fn role_set<S: ServiceDef>(&self, role: &Arc<str>) -> Arc<RoleSet<S>> {
        let key = (role.clone(), S::NAME);
        if let Some(set) = self
            .roles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return set
                .clone()
                .downcast()
                .expect("one role set type per service");
        }
        let mut roles = self.roles.write().unwrap_or_else(|p| p.into_inner());
        roles
            .entry(key)
            .or_insert_with(|| {
                Arc::new(RoleSet::<S> {
                    role: role.clone(),
                    cached: ArcSwap::from_pointee(Cached {
                        version: u64::MAX,
                        endpoints: Vec::new(),
                    }),
                    next: AtomicUsize::new(0),
                })
            })
            .clone()
            .downcast()
            .expect("one role set type per service")
    }

    /// Drops the endpoints (and so closes the connections) of nodes that left the registry.
    pub(crate) fn prune(&self) {
        let snapshot = self.node.registry().snapshot();
        let mut map = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|(node, _), endpoint| {
            let keep = snapshot.member(node).is_some();
            if !keep {
                // Role sets may still hold the endpoint until their next rebuild; the
                // connection goes now.
                endpoint.close();
            }
            keep
        });
    }
}

/// A stable 64-bit hash (FNV-1a), the same in every process and build.
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

pub(crate) fn hash64(v: impl Hash) -> u64 {
    let mut h = Fnv::default();
    v.hash(&mut h);
    h.finish()
}

/// Mixes two hashes into a well-distributed score (splitmix64 finaliser).
fn score(key: u64, node: u64) -> u64 {
    let mut z = key ^ node.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Conn<S: ServiceDef> {
    channel: Channel<S>,
    alive: Arc<AtomicBool>,
}

/// One node's side of one service: its connection and load.
pub(crate) struct Endpoint<S: ServiceDef> {
    pub(crate) node: NodeId,
    name_hash: u64,
    addr: SocketAddr,
    local: bool,
    conn: ArcSwapOption<Conn<S>>,
    connecting: tokio::sync::Mutex<()>,
    in_flight: AtomicUsize,
    down_until_ms: AtomicU64,
    ewma_ns: AtomicU64,
    ewma_at_ms: AtomicU64,
    /// Set once a peak-EWMA pick has looked at this endpoint: only then is latency tracked.
    measured: AtomicBool,
}

/// Peak EWMA decay time: an estimate halves in about 0.7 of it without new samples, so a node
/// that was slow once is tried again (as tower's `PeakEwma` does).
const EWMA_TAU_MS: f64 = 1_000.0;

/// Why one attempt on one node failed.
pub(crate) enum Failure {
    /// The request was not run by any server: safe to send elsewhere.
    NotRun(RpcError<Never>),
    /// The request may have run.
    Failed(RpcError<Never>),
}

impl<S: ServiceDef> Endpoint<S> {
    fn is_down(&self, now_ms: u64) -> bool {
        self.down_until_ms.load(Ordering::Relaxed) > now_ms
    }

    fn mark_down(&self, rpc: &Rpc) {
        let until = rpc.now_ms() + rpc.options.down_for.as_millis() as u64;
        self.down_until_ms.store(until, Ordering::Relaxed);
        self.conn.store(None);
    }

    fn load(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed) as u64
    }

    /// The latency estimate decayed by the time since it was last updated.
    fn ewma(&self, now_ms: u64) -> f64 {
        let est = self.ewma_ns.load(Ordering::Relaxed) as f64;
        let age = now_ms.saturating_sub(self.ewma_at_ms.load(Ordering::Relaxed)) as f64;
        est * (-age / EWMA_TAU_MS).exp()
    }

    fn peak_ewma_load(&self, now_ms: u64) -> f64 {
        self.measured.store(true, Ordering::Relaxed);
        // An unknown (or fully decayed) latency counts as 1 ms, so new nodes get tried.
        let ewma = self.ewma(now_ms).max(1_000_000.0);
        ewma * (self.load() + 1) as f64
    }

    fn observe(&self, rpc: &Rpc, rtt: Duration) {
        let now = rpc.now_ms();
        let rtt = rtt.as_nanos() as f64;
        let old = self.ewma(now);
        // Peak: jump up at once, come down gradually.
        let new = if rtt > old {
            rtt
        } else {
            old + (rtt - old) / 8.0
        };
        self.ewma_ns.store(new as u64, Ordering::Relaxed);
        self.ewma_at_ms.store(now, Ordering::Relaxed);
    }

    /// A connected channel: the pooled one, or a new connection (one at a time per endpoint:
    /// concurrent callers wait for the same attempt instead of each connecting).
    async fn channel(&self, rpc: &Rpc, deadline: Instant) -> Result<Channel<S>, RpcError<Never>> {
        if let Some(c) = self.conn.load().as_ref()
            && c.alive.load(Ordering::Acquire)
        {
            return Ok(c.channel.clone());
        }
        let timeout = |method| RpcError::Timeout {
            node: Some(self.node.clone()),
            method,
            after: rpc.options.connect_timeout,
        };
        let _one_at_a_time = tokio::time::timeout_at(deadline.into(), self.connecting.lock())
            .await
            .map_err(|_| timeout("connect"))?;
        if let Some(c) = self.conn.load().as_ref()
            && c.alive.load(Ordering::Acquire)
        {
            return Ok(c.channel.clone());
        }
        let connect_deadline = deadline.min(Instant::now() + rpc.options.connect_timeout);
        let result = tokio::time::timeout_at(connect_deadline.into(), self.connect(rpc)).await;
        match result {
            Ok(Ok(conn)) => {
                let channel = conn.channel.clone();
                self.conn.store(Some(Arc::new(conn)));
                Ok(channel)
            }
            Ok(Err(e)) => {
                self.mark_down(rpc);
                Err(e)
            }
            Err(_) => {
                self.mark_down(rpc);
                Err(timeout("connect"))
            }
        }
    }

    async fn connect(&self, rpc: &Rpc) -> Result<Conn<S>, RpcError<Never>> {
        let down = |reason: String| RpcError::NodeDown {
            node: self.node.clone(),
            method: "connect",
            reason,
        };
        let mut stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| down(format!("cannot connect to {}: {e}", self.addr)))?;
        let _ = stream.set_nodelay(true);
        handshake::client(&mut stream, &rpc.key, rpc.node.cluster(), S::NAME)
            .await
            .map_err(|e| match e {
                HandshakeError::Rejected(reason) => RpcError::Rejected {
                    node: self.node.clone(),
                    reason,
                },
                HandshakeError::Io(e) => down(format!("handshake with {} failed: {e}", self.addr)),
            })?;
        let transport = tarpc::serde_transport::new(
            Framed::new(stream, framing()),
            Postcard::<Response<S::Resp>, ClientMessage<Arc<S::Req>>>::default(),
        );
        let mut config = tarpc::client::Config::default();
        config.max_in_flight_requests = 100_000;
        config.pending_request_buffer = 1024;
        let NewClient { client, dispatch } = tarpc::client::new(config, transport);
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        let node = self.node.clone();
        tokio::spawn(async move {
            if let Err(e) = dispatch.await {
                tracing::debug!(%node, "connection closed: {e}");
            }
            flag.store(false, Ordering::Release);
        });
        Ok(Conn {
            channel: client,
            alive,
        })
    }

    /// One attempt: connect if needed, send, wait for the answer until `deadline`.
    pub(crate) async fn send(
        &self,
        rpc: &Rpc,
        method: &'static MethodInfo,
        req: Arc<S::Req>,
        deadline: Instant,
    ) -> Result<S::Resp, Failure> {
        struct InFlight<'a>(&'a AtomicUsize);
        impl Drop for InFlight<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let _in_flight = InFlight(&self.in_flight);
        let channel = self.channel(rpc, deadline).await.map_err(Failure::NotRun)?;
        let mut ctx = tarpc::context::current();
        ctx.deadline = deadline;
        let started = Instant::now();
        // tarpc's dispatch enforces the deadline (and tells the server to stop at it).
        let sent = channel.call(ctx, req).await;
        let timeout = || RpcError::Timeout {
            node: Some(self.node.clone()),
            method: method.name,
            after: deadline.saturating_duration_since(started),
        };
        match sent {
            Ok(resp) => {
                if rpc.options.strategy == Strategy::P2cPeakEwma
                    || self.measured.load(Ordering::Relaxed)
                {
                    self.observe(rpc, started.elapsed());
                }
                Ok(resp)
            }
            Err(tarpc::client::RpcError::DeadlineExceeded) => Err(Failure::Failed(timeout())),
            Err(tarpc::client::RpcError::Server(e)) => {
                if e.detail == LEAVING_DETAIL {
                    Err(Failure::NotRun(RpcError::Rejected {
                        node: self.node.clone(),
                        reason: RejectReason::Leaving,
                    }))
                } else {
                    Err(Failure::Failed(RpcError::Server {
                        node: self.node.clone(),
                        method: method.name,
                        reason: e.detail,
                    }))
                }
            }
            Err(e) => {
                // The connection broke: forget it, skip the node for a while.
                self.mark_down(rpc);
                Err(Failure::Failed(RpcError::NodeDown {
                    node: self.node.clone(),
                    method: method.name,
                    reason: e.to_string(),
                }))
            }
        }
    }
}

struct Cached<S: ServiceDef> {
    version: u64,
    endpoints: Vec<Arc<Endpoint<S>>>,
}

/// The serving nodes of one role that serve service `S`.
pub(crate) struct RoleSet<S: ServiceDef> {
    role: Arc<str>,
    cached: ArcSwap<Cached<S>>,
    next: AtomicUsize,
}

impl<S: ServiceDef> RoleSet<S> {
    fn current(&self, rpc: &Rpc) -> Arc<Cached<S>> {
        let snapshot = rpc.node.registry().snapshot();
        let cached = self.cached.load_full();
        if cached.version == snapshot.version() {
            return cached;
        }
        let endpoints = snapshot
            .nodes_with_role(&self.role)
            .iter()
            .filter(|m| m.serves(S::NAME))
            .filter_map(|m| m.rpc_addr.map(|addr| rpc.endpoint::<S>(m, addr)))
            .collect();
        let fresh = Arc::new(Cached {
            version: snapshot.version(),
            endpoints,
        });
        self.cached.store(fresh.clone());
        fresh
    }

    /// Every endpoint, for `all`.
    pub(crate) fn all(&self, rpc: &Rpc) -> Vec<Arc<Endpoint<S>>> {
        self.current(rpc).endpoints.clone()
    }

    /// Picks one endpoint not in `tried`: nodes marked down are skipped unless nothing else is
    /// left. `key` selects rendezvous hashing instead of `strategy`.
    pub(crate) fn pick(
        &self,
        rpc: &Rpc,
        strategy: Strategy,
        key: Option<u64>,
        tried: &[NodeId],
    ) -> Option<Arc<Endpoint<S>>> {
        let cached = self.current(rpc);
        let now = rpc.now_ms();
        let endpoints = &cached.endpoints;
        // Without allocating: the candidates are the untried endpoints that are up, or, if
        // none is up, every untried one.
        let untried = |e: &&Arc<Endpoint<S>>| !tried.contains(&e.node);
        let any_up = endpoints.iter().filter(untried).any(|e| !e.is_down(now));
        let candidates = || {
            endpoints
                .iter()
                .filter(untried)
                .filter(move |e| !any_up || !e.is_down(now))
        };
        if let Some(key) = key {
            return candidates()
                .max_by_key(|e| score(key, e.name_hash))
                .cloned();
        }
        let n = candidates().count();
        let nth = |i: usize| candidates().nth(i).expect("index below the count");
        match n {
            0 => return None,
            1 => return Some(nth(0).clone()),
            _ => {}
        }
        let two = || {
            let a = rand::random_range(0..n);
            let mut b = rand::random_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            (nth(a), nth(b))
        };
        let least_pending = || {
            let (a, b) = two();
            if b.load() < a.load() { b } else { a }
        };
        let chosen = match strategy {
            Strategy::P2c => least_pending(),
            Strategy::P2cPeakEwma => {
                let (a, b) = two();
                if b.peak_ewma_load(now) < a.peak_ewma_load(now) {
                    b
                } else {
                    a
                }
            }
            Strategy::RoundRobin => nth(self.next.fetch_add(1, Ordering::Relaxed) % n),
            Strategy::Random => nth(rand::random_range(0..n)),
            Strategy::LocalFirst => match candidates().find(|e| e.local) {
                Some(local) => local,
                None => least_pending(),
            },
        };
        Some(chosen.clone())
    }
}

/// Sends one call to one node picked from `role`, rerouting calls that never ran and retrying
/// idempotent ones after a lost connection.
pub(crate) async fn call_one<S: ServiceDef>(
    rpc: Arc<Rpc>,
    role: Arc<str>,
    strategy: Strategy,
    key: Option<u64>,
    method: &'static MethodInfo,
    req: Arc<S::Req>,
    deadline: Instant,
) -> Result<(NodeId, S::Resp), RpcError<Never>> {
    let set = rpc.role_set::<S>(&role);
    let mut tried: Vec<NodeId> = Vec::new();
    let mut reroutes = rpc.options.reroutes;
    let mut retries = if method.idempotent {
        rpc.options.retries
    } else {
        0
    };
    let mut backoff = rpc.options.backoff;
    let mut last: Option<RpcError<Never>> = None;
    loop {
        let Some(endpoint) = set.pick(&rpc, strategy, key, &tried) else {
            return Err(last.unwrap_or_else(|| RpcError::NoNodeForRole {
                role: role.to_string(),
                service: S::NAME,
            }));
        };
        match endpoint.send(&rpc, method, req.clone(), deadline).await {
            Ok(resp) => return Ok((endpoint.node.clone(), resp)),
            Err(Failure::NotRun(e)) => {
                if reroutes == 0 || Instant::now() >= deadline {
                    return Err(e);
                }
                reroutes -= 1;
                tried.push(endpoint.node.clone());
                last = Some(e);
            }
            Err(Failure::Failed(e)) => {
                let lost = matches!(e, RpcError::NodeDown { .. });
                if !lost || retries == 0 || Instant::now() + backoff >= deadline {
                    return Err(e);
                }
                retries -= 1;
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                tried.push(endpoint.node.clone());
                last = Some(e);
            }
        }
    }
}

/// Sends one call to one given endpoint (for `all`), retrying an idempotent call once after a
/// lost connection.
pub(crate) async fn call_endpoint<S: ServiceDef>(
    rpc: Arc<Rpc>,
    endpoint: Arc<Endpoint<S>>,
    method: &'static MethodInfo,
    req: Arc<S::Req>,
    deadline: Instant,
) -> Result<S::Resp, RpcError<Never>> {
    match endpoint.send(&rpc, method, req.clone(), deadline).await {
        Ok(resp) => Ok(resp),
        Err(Failure::NotRun(e)) | Err(Failure::Failed(e @ RpcError::Timeout { .. })) => Err(e),
        Err(Failure::Failed(e)) if !method.idempotent => Err(e),
        Err(Failure::Failed(_)) => match endpoint.send(&rpc, method, req, deadline).await {
            Ok(resp) => Ok(resp),
            Err(Failure::NotRun(e)) | Err(Failure::Failed(e)) => Err(e),
        },
    }
}

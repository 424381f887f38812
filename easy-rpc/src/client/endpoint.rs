//! One node's side of one service: its pooled, multiplexed tarpc connection (opened once,
//! single-flight, replaced when it dies) and one attempt of a call on it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use cluster_helper::NodeId;
use tarpc::client::NewClient;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::outgoing::Outgoing;
use super::peer::Peer;
use super::pick::Candidate;
use crate::codec::{ClientCodec, framing};
use crate::error::{Never, RpcError};
use crate::handshake::{self, HandshakeError};
use crate::options::Strategy;
use crate::reply::Reply;
use crate::runtime::Rpc;
use crate::service::{MethodInfo, ServiceDef};

/// The client half of a connection carrying service `S`.
pub(crate) type Channel<S> =
    tarpc::client::Channel<Arc<Outgoing<<S as ServiceDef>::Req>>, Reply<<S as ServiceDef>::Resp>>;

/// A live connection, whether its dispatch task still runs, and that task.
struct Conn<S: ServiceDef> {
    channel: Channel<S>,
    alive: Arc<AtomicBool>,
    /// Aborting the dispatch ends every call on the connection at once (they see the
    /// connection gone), instead of at their deadlines.
    dispatch: tokio::task::AbortHandle,
}

/// One node's side of one service: its connection and what the picker knows of it.
pub(crate) struct Endpoint<S: ServiceDef> {
    pub(crate) peer: Peer,
    addr: SocketAddr,
    /// The pooled connection. A lock, not an `ArcSwap`: it changes only on connect and on
    /// failure, and an uncontended read lock plus the `Arc`'s count is about a third of the
    /// instructions of an arc-swap `load_full` on every call.
    conn: RwLock<Option<Arc<Conn<S>>>>,
    /// Held while connecting, so that concurrent callers wait for one attempt.
    connecting: tokio::sync::Mutex<()>,
    /// Connection attempts that failed so far: a caller that waited for another's attempt and
    /// sees this change does not try again itself (it reroutes at once, with its time left).
    failed_connects: AtomicU64,
}

impl<S: ServiceDef> std::fmt::Debug for Endpoint<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("service", &S::NAME)
            .field("peer", &self.peer)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl<S: ServiceDef> Candidate for Endpoint<S> {
    fn peer(&self) -> &Peer {
        &self.peer
    }
}

impl<S: ServiceDef> Endpoint<S> {
    /// Node `node` at `addr`, not connected yet; `local` if it is the calling node.
    pub(crate) fn new(node: NodeId, addr: SocketAddr, local: bool) -> Self {
        Endpoint {
            peer: Peer::new(node, local),
            addr,
            conn: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
            failed_connects: AtomicU64::new(0),
        }
    }

    /// The node.
    pub(crate) fn node(&self) -> &NodeId {
        &self.peer.node
    }

    /// Drops the pooled connection: the node left the registry, or the connection broke.
    /// With `end_calls`, the calls in flight on it end now (the node is gone: crashed or
    /// unreachable); without, they finish or fail as the connection does (a node that left
    /// gracefully answers what it started before it closes).
    pub(crate) fn close(&self, end_calls: bool) {
        let conn = self.conn.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(conn) = conn
            && end_calls
        {
            conn.dispatch.abort();
        }
    }

    /// Skips the node for a while and forgets its connection.
    fn mark_down(&self, rpc: &Rpc) {
        self.peer.mark_down(rpc.now_ms(), rpc.options.down_for);
        self.close(true);
    }

    /// An error about this node that says the request was never sent.
    fn unreachable(
        &self,
        method: &'static str,
        reason: String,
        source: impl Into<Option<std::io::Error>>,
    ) -> RpcError<Never> {
        RpcError::Unreachable {
            node: self.node().clone(),
            method,
            reason,
            source: source
                .into()
                .map(|e| Arc::new(e) as Arc<dyn std::error::Error + Send + Sync>),
        }
    }

    /// The pooled connection, if it is alive (borrowed: the connection's `Arc`, not a clone of
    /// tarpc's channel).
    fn pooled(&self) -> Option<Arc<Conn<S>>> {
        self.conn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|c| c.alive.load(Ordering::Acquire))
            .cloned()
    }

    /// A new connection (one at a time per endpoint: concurrent callers wait for the same
    /// attempt instead of each connecting), or the one another call made meanwhile.
    ///
    /// The caller boxes this future: connecting (TCP, handshake, timeouts) needs far more
    /// state than a call, and inline it would make every call's future as large, to be
    /// copied whenever the call future moves.
    async fn reconnect(
        &self,
        rpc: &Rpc,
        method: &'static str,
        deadline: Instant,
    ) -> Result<Arc<Conn<S>>, RpcError<Never>> {
        let timed_out = |what: String| {
            let e = std::io::Error::new(std::io::ErrorKind::TimedOut, what.clone());
            self.unreachable(method, what, e)
        };
        let failed_before = self.failed_connects.load(Ordering::Acquire);
        let _one_at_a_time = tokio::time::timeout_at(deadline.into(), self.connecting.lock())
            .await
            .map_err(|_| {
                timed_out("the call's deadline passed while another call was connecting".into())
            })?;
        if let Some(c) = self.pooled() {
            return Ok(c);
        }
        if self.failed_connects.load(Ordering::Acquire) != failed_before {
            // The attempt this call waited for failed: one failure is news enough, and a
            // second attempt would spend this call's time on a node that just failed.
            return Err(self.unreachable(
                method,
                format!(
                    "connecting to {} failed just now (another call's attempt)",
                    self.addr
                ),
                None::<std::io::Error>,
            ));
        }
        let connect_timeout = rpc.options.connect_timeout;
        let connect_deadline = crate::deadline::after(Instant::now(), connect_timeout);
        let result = tokio::time::timeout_at(
            deadline.min(connect_deadline).into(),
            self.connect(rpc, method),
        )
        .await;
        match result {
            Ok(Ok(conn)) => {
                let conn = Arc::new(conn);
                *self.conn.write().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
                Ok(conn)
            }
            Ok(Err(e)) => {
                self.failed_connects.fetch_add(1, Ordering::AcqRel);
                self.mark_down(rpc);
                Err(e)
            }
            Err(_) => {
                self.failed_connects.fetch_add(1, Ordering::AcqRel);
                self.mark_down(rpc);
                Err(timed_out(if connect_deadline <= deadline {
                    format!(
                        "connecting to {} timed out after {connect_timeout:?}",
                        self.addr
                    )
                } else {
                    format!(
                        "the call's deadline passed while connecting to {}",
                        self.addr
                    )
                }))
            }
        }
    }

    async fn connect(&self, rpc: &Rpc, method: &'static str) -> Result<Conn<S>, RpcError<Never>> {
        let stream = TcpStream::connect(self.addr).await.map_err(|e| {
            self.unreachable(method, format!("cannot connect to {}: {e}", self.addr), e)
        })?;
        let _ = stream.set_nodelay(true);
        let stream = handshake::client(stream, &rpc.keys.sending(), S::NAME, rpc.server.encryption)
            .await
            .map_err(|e| match e {
                HandshakeError::Rejected(reason) => RpcError::Rejected {
                    node: self.node().clone(),
                    reason,
                },
                HandshakeError::Io(e) => self.unreachable(
                    method,
                    format!("the handshake with {} failed: {e}", self.addr),
                    e,
                ),
            })?;
        let transport = tarpc::serde_transport::new(
            Framed::new(stream, framing(rpc.server.bounds.limits.max_frame)),
            ClientCodec::<Reply<S::Resp>, Arc<Outgoing<S::Req>>>::default(),
        );
        let mut config = tarpc::client::Config::default();
        config.max_in_flight_requests = 100_000;
        config.pending_request_buffer = 1024;
        let NewClient { client, dispatch } = tarpc::client::new(config, transport);
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        let node = self.node().clone();
        let dispatch = tokio::spawn(async move {
            if let Err(e) = dispatch.await {
                tracing::debug!(%node, "connection closed: {e}");
            }
            flag.store(false, Ordering::Release);
        });
        Ok(Conn {
            channel: client,
            alive,
            dispatch: dispatch.abort_handle(),
        })
    }

    /// One attempt, started at `started` (a time the caller read): connect if needed, send,
    /// wait for the answer until `deadline`.
    pub(crate) async fn send(
        &self,
        rpc: &Rpc,
        method: &'static MethodInfo,
        req: Arc<Outgoing<S::Req>>,
        started: Instant,
        deadline: Instant,
    ) -> Result<S::Resp, RpcError<Never>> {
        let _pending = self.peer.pending.start();
        let conn = match self.pooled() {
            Some(conn) => conn,
            None => Box::pin(self.reconnect(rpc, method.name, deadline)).await?,
        };
        let ctx = call_context(deadline, req.traced());
        // tarpc's dispatch enforces the deadline (and tells the server to stop at it).
        let sent = conn.channel.call(ctx, req).await;
        let node = || self.node().clone();
        match sent {
            Ok(Reply::Ok(resp)) => {
                if rpc.options.strategy == Strategy::P2cPeakEwma || self.peer.ewma.is_measured() {
                    let now = Instant::now();
                    self.peer
                        .ewma
                        .observe(rpc.ms_at(now), now.saturating_duration_since(started));
                }
                Ok(resp)
            }
            Ok(Reply::NotRun(reason)) => Err(RpcError::NotRun {
                node: node(),
                method: method.name,
                reason,
            }),
            Ok(Reply::Failed(reason)) => Err(RpcError::Server {
                node: node(),
                method: method.name,
                reason,
            }),
            Err(tarpc::client::RpcError::DeadlineExceeded) => Err(RpcError::Timeout {
                node: node(),
                method: method.name,
                after: deadline.saturating_duration_since(started),
            }),
            Err(tarpc::client::RpcError::Server(e)) => Err(RpcError::Server {
                node: node(),
                method: method.name,
                reason: e.detail,
            }),
            Err(e) if is_codec_error(&e) => Err(RpcError::Codec {
                node: node(),
                method: method.name,
                reason: format!("{e}: {}", root_cause(&e)),
                source: Some(Arc::new(e)),
            }),
            Err(e) => {
                // The connection broke: forget it, skip the node for a while.
                self.mark_down(rpc);
                Err(RpcError::NodeDown {
                    node: node(),
                    method: method.name,
                    reason: format!("{e}: {}", root_cause(&e)),
                    source: Some(Arc::new(e)),
                })
            }
        }
    }
}

/// tarpc's context for a call with `deadline`, "sampled" when the call is `traced`.
///
/// `tarpc::context::current()` would look up the caller's span for its trace context, and read
/// the clock for a default deadline that the call replaces. Both are wasted: tarpc's
/// `Channel::call` takes the trace context from the current span itself, and only when there
/// is none (no OpenTelemetry layer) makes a child of the context's, which `current()` would
/// have left at the default too. So every call starts from one copy of a context with the
/// default trace context, and says whether it has a span of its own: the serving node traces
/// the requests of traced calls (see [`crate::trace::trace_request`]).
fn call_context(deadline: Instant, traced: bool) -> tarpc::context::Context {
    static BLANK: std::sync::OnceLock<tarpc::context::Context> = std::sync::OnceLock::new();
    let mut ctx = *BLANK.get_or_init(|| {
        let mut ctx = tarpc::context::current();
        ctx.trace_context = tarpc::trace::Context::default();
        ctx
    });
    ctx.deadline = deadline;
    if traced {
        ctx.trace_context.sampling_decision = tarpc::trace::SamplingDecision::Sampled;
    }
    ctx
}

/// Whether tarpc failed because a message could not be encoded or decoded (the codec's
/// `InvalidData`, also for a frame over the size limit) rather than because the connection
/// broke.
fn is_codec_error(e: &tarpc::client::RpcError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::InvalidData;
        }
        cause = c.source();
    }
    false
}

/// The innermost cause of `e`, for messages.
fn root_cause<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> &'a (dyn std::error::Error + 'static) {
    let mut root = e;
    while let Some(next) = root.source() {
        root = next;
    }
    root
}

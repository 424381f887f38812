//! A service ready to serve ([`Served`]) and the type-erased server of one service on one
//! connection: tarpc's channel over the handshaken stream, each request run inside the
//! caller's deadline, counted in flight (for the node, and against the connection's cap), a
//! panic turned into an answer.

use std::any::TypeId;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::{BoxFuture, Either};
use futures::{FutureExt, StreamExt};
use tarpc::ServerError;
use tarpc::server::{BaseChannel, Channel, Serve};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use tracing::Instrument;

use super::state::{InFlight, ServerState};
use crate::codec::{FrameCodec, Incoming, ServerCodec};
use crate::error::NotRunReason;
use crate::link::Link;
use crate::metrics::{CountedRequest, Outcome};
use crate::reply::Reply;
use crate::service::{Handler, ServiceDef};

/// A service implementation ready to be served by a node: what `MyImpl.serve()` returns
/// (the `serve` method `#[easy_rpc::service]` adds to the trait), given to
/// [`NodeBuilder::serve`](crate::NodeBuilder::serve) or [`Node::serve`](crate::Node::serve).
///
/// ```
/// #[easy_rpc::service]
/// pub trait Billing {
///     async fn balance(account: String) -> u64;
/// }
///
/// struct BillingImpl;
/// impl Billing for BillingImpl {
///     async fn balance(&self, _account: String) -> u64 { 42 }
/// }
///
/// let served: easy_rpc::Served = BillingImpl.serve();
/// assert_eq!(served.name(), "Billing");
/// let builder = easy_rpc::Node::builder().roles(["billing"]).serve(served);
/// # drop(builder);
/// ```
#[derive(Clone)]
#[must_use = "a service is served only once given to a node"]
pub struct Served {
    pub(crate) name: &'static str,
    /// The service's type (its `ServiceDef`), to tell apart two services with one wire name.
    pub(crate) service: TypeId,
    pub(crate) conn: Arc<dyn ServeConnection>,
}

impl Served {
    /// Wraps a handler of service `S` (what the generated `serve` method does).
    pub fn new<S: ServiceDef, H: Handler<S>>(handler: H) -> Served {
        Served {
            name: S::NAME,
            service: TypeId::of::<S>(),
            conn: Arc::new(TypedServer::<S, H>::new(handler)),
        }
    }

    /// The service's wire name ([`ServiceDef::NAME`]).
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served").field("name", &self.name).finish()
    }
}

/// Serves one accepted, handshaken connection for one service (type-erased per service).
pub(crate) trait ServeConnection: Send + Sync + 'static {
    fn serve(
        &self,
        framed: Framed<Link<TcpStream>, FrameCodec>,
        state: Arc<ServerState>,
        peer: SocketAddr,
    ) -> BoxFuture<'static, ()>;
}

struct TypedServer<S, H> {
    handler: Arc<H>,
    _service: PhantomData<fn() -> S>,
}

impl<S, H> TypedServer<S, H> {
    fn new(handler: H) -> Self {
        TypedServer {
            handler: Arc::new(handler),
            _service: PhantomData,
        }
    }
}

/// tarpc's view of a handler on one connection: runs the request inside the caller's
/// deadline, counts it in flight, turns a panic into [`Reply::Failed`], and answers
/// [`Reply::NotRun`] once the node is leaving or while the connection runs its maximum of
/// requests ([`ServerLimits::max_concurrent_requests`](super::ServerLimits)).
struct TarpcServe<S, H> {
    conn: Arc<Conn<H>>,
    _service: PhantomData<fn() -> S>,
}

/// What the requests of one connection share (one `Arc` clone per request, as before the
/// per-connection cap).
struct Conn<H> {
    handler: Arc<H>,
    state: Arc<ServerState>,
    /// Requests of this connection running now.
    running: AtomicUsize,
    /// The connection's cap on them.
    max_running: usize,
    /// Where the connection comes from (for the server layers).
    peer: SocketAddr,
}

impl<S, H> Clone for TarpcServe<S, H> {
    fn clone(&self) -> Self {
        TarpcServe {
            conn: self.conn.clone(),
            _service: PhantomData,
        }
    }
}

/// Holds a place among the connection's running requests.
struct Running<'a>(&'a AtomicUsize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<S: ServiceDef, H: Handler<S>> Serve for TarpcServe<S, H> {
    type Req = S::Req;
    type Resp = Reply<S::Resp>;

    // Not an `async fn`: its future would hold the arguments besides the one it awaits, and
    // tarpc spawns every request's future (a larger one costs the allocator more).
    fn serve(
        self,
        ctx: tarpc::context::Context,
        req: S::Req,
    ) -> impl Future<Output = Result<Reply<S::Resp>, ServerError>> {
        self.serve_traced(ctx, req, None)
    }
}

/// [`TarpcServe`] on a connection opened while a subscriber wanted the spans of requests:
/// its requests come with the trace context their callers sent ([`Incoming`]), which becomes
/// the parent of their spans. The other connections do without, so that their requests stay
/// as small as they were (the context made each request's future larger, which cost about 500
/// instructions per request in copies and in the allocator).
struct TracedServe<S, H>(TarpcServe<S, H>);

impl<S, H> Clone for TracedServe<S, H> {
    fn clone(&self) -> Self {
        TracedServe(self.0.clone())
    }
}

impl<S: ServiceDef, H: Handler<S>> Serve for TracedServe<S, H> {
    type Req = Incoming<S::Req>;
    type Resp = Reply<S::Resp>;

    fn serve(
        self,
        ctx: tarpc::context::Context,
        Incoming { req, caller }: Incoming<S::Req>,
    ) -> impl Future<Output = Result<Reply<S::Resp>, ServerError>> {
        self.0.serve_traced(ctx, req, caller.as_deref())
    }
}

impl<S: ServiceDef, H: Handler<S>> TarpcServe<S, H> {
    /// [`Serve::serve`], `caller` being the trace context the caller sent, if it is known.
    fn serve_traced(
        self,
        ctx: tarpc::context::Context,
        req: S::Req,
        caller: Option<&tarpc::trace::Context>,
    ) -> impl Future<Output = Result<Reply<S::Resp>, ServerError>> + use<S, H> {
        if !crate::trace::trace_request(caller, self.conn.state.sampler) {
            // No span: the request's future holds none, and the span macro's fallback (which
            // builds its fields for the `log` crate when no subscriber was ever set) is not run.
            return Either::Left(self.serve_request(ctx.deadline, false, req).map(Ok));
        }
        // A child of the caller's span (the trace context it sent), whether tarpc's own span
        // of the request is on or not: the handler runs in it, so the calls it makes are its
        // children. Boxed: only traced requests carry the instrumented future.
        let span = crate::trace::server_span(S::NAME, S::method(&req).name, &self.conn.state.node);
        crate::trace::set_caller(&span, caller);
        Either::Right(Box::pin(async move {
            let reply = self
                .serve_request(ctx.deadline, true, req)
                .instrument(span.clone())
                .await;
            crate::trace::record_reply(&span, &reply);
            Ok(reply)
        }))
    }
}

impl<S: ServiceDef, H: Handler<S>> TarpcServe<S, H> {
    /// [`Serve::serve`] without its span; `traced`: whether it has one (the calls the handler
    /// makes then have spans too).
    async fn serve_request(
        self,
        deadline: std::time::Instant,
        traced: bool,
        req: S::Req,
    ) -> Reply<S::Resp> {
        let conn = &*self.conn;
        let method = S::method(&req);
        let counted = CountedRequest::start(&conn.state.metrics.server, S::NAME, method, deadline);
        if conn.state.is_refusing() {
            counted.finish(Outcome::NotRun);
            return Reply::NotRun(NotRunReason::Leaving);
        }
        if crate::codec::is_expired(deadline) {
            // Its caller had given up before it reached this node (it waited in a stopped
            // node's socket, or in a long queue): starting it now would run work nobody waits
            // for, maybe twice.
            conn.state
                .bounds
                .expired_requests
                .fetch_add(1, Ordering::Relaxed);
            counted.finish(Outcome::NotRun);
            return Reply::NotRun(NotRunReason::Expired);
        }
        let running = Running(&conn.running);
        if conn.running.fetch_add(1, Ordering::Relaxed) >= conn.max_running {
            drop(running);
            conn.state
                .bounds
                .refused_requests
                .fetch_add(1, Ordering::Relaxed);
            counted.finish(Outcome::NotRun);
            return Reply::NotRun(NotRunReason::Overloaded);
        }
        let _admitted = match &conn.state.bounds.admission {
            None => None,
            Some(admission) => match admission.try_admit() {
                Some(running) => Some(running),
                // Boxed: the wait (a timer, a notification) would make every request's future
                // larger, and tarpc moves it when it spawns the request.
                None => match Box::pin(admission.admit(deadline)).await {
                    Ok(running) => Some(running),
                    Err(reason) => {
                        drop(running);
                        let counter = match reason {
                            NotRunReason::Expired => &conn.state.bounds.expired_requests,
                            _ => &conn.state.bounds.refused_requests,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        counted.finish(Outcome::NotRun);
                        return Reply::NotRun(reason);
                    }
                },
            },
        };
        let _in_flight = InFlight::new(&conn.state);
        let reply = match &conn.state.layers {
            // The direct path, inline as it was before layers (not through `run`).
            None => {
                let method = method.name;
                let work = crate::context::serving(deadline, traced, conn.handler.handle(req));
                match std::panic::AssertUnwindSafe(work).catch_unwind().await {
                    Ok(resp) => Reply::Ok(resp),
                    Err(_) => {
                        tracing::error!(service = S::NAME, method, "handler panicked");
                        Reply::Failed(format!("{}.{method} panicked on the server", S::NAME))
                    }
                }
            }
            // Boxed, out of line: the layers' future would make every request's larger.
            Some(stack) => {
                let handler = conn.handler.clone();
                let run = async move { run::<S, H>(&handler, deadline, traced, req).await };
                Box::pin(super::layer::serve(
                    stack,
                    S::NAME,
                    method,
                    deadline,
                    conn.peer,
                    run,
                ))
                .await
            }
        };
        counted.finish(match &reply {
            Reply::Ok(resp) if S::is_remote_error(resp) => Outcome::Remote,
            Reply::Ok(_) => Outcome::Ok,
            // Refused by a server layer before the handler started.
            Reply::NotRun(_) => Outcome::NotRun,
            Reply::Failed(_) => Outcome::Server,
        });
        drop(running);
        reply
    }
}

/// Runs `req` on `handler` inside the caller's `deadline`, a panic turned into
/// [`Reply::Failed`]: the handler's run under server layers (the direct path in
/// [`TarpcServe::serve`] does the same inline).
async fn run<S: ServiceDef, H: Handler<S>>(
    handler: &H,
    deadline: std::time::Instant,
    traced: bool,
    req: S::Req,
) -> Reply<S::Resp> {
    let method = S::method(&req).name;
    let work = crate::context::serving(deadline, traced, handler.handle(req));
    match std::panic::AssertUnwindSafe(work).catch_unwind().await {
        Ok(resp) => Reply::Ok(resp),
        Err(_) => {
            tracing::error!(service = S::NAME, method, "handler panicked");
            Reply::Failed(format!("{}.{method} panicked on the server", S::NAME))
        }
    }
}

impl<S: ServiceDef, H: Handler<S>> ServeConnection for TypedServer<S, H> {
    fn serve(
        &self,
        framed: Framed<Link<TcpStream>, FrameCodec>,
        state: Arc<ServerState>,
        peer: SocketAddr,
    ) -> BoxFuture<'static, ()> {
        let max_running = state.bounds.limits.max_concurrent_requests;
        let serve = TarpcServe::<S, H> {
            conn: Arc::new(Conn {
                handler: self.handler.clone(),
                state,
                running: AtomicUsize::new(0),
                max_running,
                peer,
            }),
            _service: PhantomData,
        };
        let max_frame = serve.conn.state.bounds.limits.max_frame;
        let max_clock_skew = serve.conn.state.bounds.limits.max_clock_skew;
        let codec = ServerCodec::<S::Req, Reply<S::Resp>>::new(max_frame, max_clock_skew);
        // Each request in a task of its own. (A macro: a generic function could not say that
        // the futures of `Serve::serve`, an async fn of a trait, are `Send`.)
        macro_rules! run {
            ($serve:expr) => {{
                let transport = tokio_serde::Framed::new(framed, codec);
                let serve = $serve;
                async move {
                    BaseChannel::with_defaults(transport)
                        .execute(serve)
                        .for_each(|request| async move {
                            tokio::spawn(request);
                        })
                        .await;
                }
                .boxed()
            }};
        }
        if crate::trace::traced() {
            run!(TracedServe(serve))
        } else {
            run!(serve)
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use serde::{Deserialize, Serialize};
    use tarpc::context;
    use tokio::net::TcpListener;

    use super::*;
    use crate::codec::{ClientCodec, framing};
    use crate::server::{Bounds, ServerLimits};
    use crate::service::MethodInfo;

    pub(crate) struct Echo;

    #[derive(Debug, Serialize, Deserialize)]
    pub(crate) enum EchoReq {
        Echo(u32),
        Panic,
        /// Answers after this many milliseconds.
        Sleep(u64),
    }

    impl tarpc::RequestName for EchoReq {
        fn name(&self) -> &str {
            "echo"
        }
    }

    static ECHO: MethodInfo = MethodInfo::new("echo");

    impl ServiceDef for Echo {
        const NAME: &'static str = "Echo";
        type Req = EchoReq;
        type Resp = u32;
        fn method(_: &EchoReq) -> &'static MethodInfo {
            &ECHO
        }
    }

    struct EchoHandler;

    impl Handler<Echo> for EchoHandler {
        async fn handle(&self, req: EchoReq) -> u32 {
            match req {
                EchoReq::Echo(n) => n,
                EchoReq::Panic => panic!("the handler panics"),
                EchoReq::Sleep(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    0
                }
            }
        }
    }

    pub(crate) const KEY: [u8; 32] = [7; 32];

    /// A server of `Echo` with `limits` on a loopback port; it stops when the sender drops.
    pub(crate) async fn echo_server(
        limits: ServerLimits,
    ) -> (
        SocketAddr,
        Arc<ServerState>,
        tokio::sync::watch::Sender<bool>,
    ) {
        let keys = Arc::new(crate::keyring::KeyRing::new(vec![KEY]));
        let state = Arc::new(ServerState::new(
            keys,
            "c".into(),
            Bounds::new(limits, None),
        ));
        state
            .services
            .write()
            .unwrap()
            .insert("Echo", Served::new::<Echo, _>(EchoHandler));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(super::super::accept_loop(listener, state.clone(), stopped));
        (addr, state, stop)
    }

    /// A tarpc client of `Echo` over `stream`, handshaken.
    pub(crate) async fn echo_client(
        stream: TcpStream,
    ) -> tarpc::client::Channel<EchoReq, Reply<u32>> {
        let stream = crate::handshake::client(stream, &KEY, "Echo", crate::link::Encryption::On)
            .await
            .unwrap();
        let transport = tarpc::serde_transport::new(
            Framed::new(stream, framing(4 << 20)),
            ClientCodec::<Reply<u32>, EchoReq>::default(),
        );
        tarpc::client::new(Default::default(), transport).spawn()
    }

    #[tokio::test]
    async fn the_reply_says_whether_the_method_ran() {
        let (addr, state, stop) = echo_server(ServerLimits::default()).await;
        let client = echo_client(TcpStream::connect(addr).await.unwrap()).await;

        let reply = client.call(context::current(), EchoReq::Echo(5)).await;
        assert!(matches!(reply, Ok(Reply::Ok(5))), "{reply:?}");
        // A panic is an answer, not a dropped connection.
        let reply = client.call(context::current(), EchoReq::Panic).await;
        assert!(
            matches!(&reply, Ok(Reply::Failed(m)) if m == "Echo.echo panicked on the server"),
            "{reply:?}"
        );
        // Leaving: requests on the open connection are answered, not run.
        state.start_leaving();
        state.start_refusing();
        let reply = client.call(context::current(), EchoReq::Echo(6)).await;
        assert!(
            matches!(reply, Ok(Reply::NotRun(NotRunReason::Leaving))),
            "{reply:?}"
        );
        assert_eq!(state.in_flight(), 0);
        stop.send_replace(true);
    }

    #[tokio::test]
    async fn a_connection_over_its_running_requests_cap_gets_not_run_overloaded() {
        let (addr, state, _stop) =
            echo_server(ServerLimits::default().max_concurrent_requests(2)).await;
        let client = echo_client(TcpStream::connect(addr).await.unwrap()).await;
        let other = echo_client(TcpStream::connect(addr).await.unwrap()).await;
        let slow = || client.call(context::current(), EchoReq::Sleep(300));
        let (a, b) = tokio::join!(slow(), slow());
        assert!(matches!(a, Ok(Reply::Ok(0))) && matches!(b, Ok(Reply::Ok(0))));
        let (a, b, c, d) = tokio::join!(
            slow(),
            slow(),
            async {
                // Sent once the first two run.
                tokio::time::sleep(Duration::from_millis(100)).await;
                client.call(context::current(), EchoReq::Echo(3)).await
            },
            async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                other.call(context::current(), EchoReq::Echo(4)).await
            }
        );
        assert!(matches!(a, Ok(Reply::Ok(0))), "{a:?}");
        assert!(matches!(b, Ok(Reply::Ok(0))), "{b:?}");
        // The third on the same connection was refused, not queued; another connection has
        // its own allowance.
        assert!(
            matches!(c, Ok(Reply::NotRun(NotRunReason::Overloaded))),
            "{c:?}"
        );
        assert!(matches!(d, Ok(Reply::Ok(4))), "{d:?}");
        assert_eq!(state.stats().overloaded_requests, 1);
        // Once they finished, the connection takes requests again.
        let e = client.call(context::current(), EchoReq::Echo(5)).await;
        assert!(matches!(e, Ok(Reply::Ok(5))), "{e:?}");
    }
}

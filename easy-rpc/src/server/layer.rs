//! tower middleware around a node's handlers ([`NodeBuilder::server_layer`]): a request as a
//! `tower::Service<ServerCall>`, the service the layers wrap, and one layered request (the
//! machinery shared with the client's layers is in `layered.rs`).
//!
//! A node without server layers never comes here: the request runs its handler directly.
//!
//! [`NodeBuilder::server_layer`]: crate::NodeBuilder::server_layer

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service};

use crate::error::NotRunReason;
use crate::layered::{
    self, BoxWork, Carries, Driven, Inner, InnerFuture, Layers, ReadySlot, Returns, Side, Stack,
};
use crate::reply::Reply;
use crate::service::MethodInfo;

/// One request to a node's handlers, as the server layers ([`NodeBuilder::server_layer`])
/// see it: the service, the method, the caller's deadline and the address the calling node's
/// connection comes from. The typed request travels inside, type-erased: a layer can refuse
/// it (return an error instead of calling the inner service), wait (tower's readiness), time
/// or count it, but not read or change it.
///
/// A request a layer refuses before the handler starts is answered
/// [`NotRunReason::Refused`] (the caller may send it to another node); the node keeps
/// serving the connection and everyone else. A layer's error after the handler started is
/// answered as a failure of the method ([`RpcError::Server`](crate::RpcError::Server)).
///
/// ```
/// use std::task::{Context, Poll};
/// use std::time::{Duration, Instant};
/// use easy_rpc::{ServerCall, ServerResponse};
///
/// /// Refuses requests whose caller leaves them less than 100 ms.
/// #[derive(Clone, Debug)]
/// struct EnoughTime<S>(S);
///
/// impl<S> tower::Service<ServerCall> for EnoughTime<S>
/// where
///     S: tower::Service<ServerCall, Response = ServerResponse, Error = tower::BoxError>,
///     S::Future: Send + 'static,
/// {
///     type Response = ServerResponse;
///     type Error = tower::BoxError;
///     type Future = futures::future::BoxFuture<'static, Result<ServerResponse, tower::BoxError>>;
///
///     fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), tower::BoxError>> {
///         self.0.poll_ready(cx)
///     }
///
///     fn call(&mut self, call: ServerCall) -> Self::Future {
///         if call.deadline() < Instant::now() + Duration::from_millis(100) {
///             return Box::pin(async { Err("too little time left".into()) });
///         }
///         Box::pin(self.0.call(call))
///     }
/// }
///
/// let builder = easy_rpc::Node::builder()
///     .server_layer(tower::layer::layer_fn(EnoughTime));
/// # drop(builder);
/// ```
///
/// [`NodeBuilder::server_layer`]: crate::NodeBuilder::server_layer
pub struct ServerCall {
    service: &'static str,
    method: &'static MethodInfo,
    deadline: Instant,
    peer: SocketAddr,
    /// The handler's run, not started, erased (its reply stays inside).
    run: BoxWork,
}

impl ServerCall {
    /// The service's wire name ([`ServiceDef::NAME`](crate::ServiceDef::NAME)).
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// The method called: its name and whether it is idempotent.
    pub fn method(&self) -> &'static MethodInfo {
        self.method
    }

    /// When the caller gives up (the handler runs inside it, and is stopped at it).
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The address the calling node's connection comes from (after the handshake proved it
    /// holds the cluster secret).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

impl std::fmt::Debug for ServerCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCall")
            .field("service", &self.service)
            .field("method", &self.method.name)
            .field("deadline", &self.deadline)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// The handler's answer to a [`ServerCall`], opaque: layers pass it back out. Only the
/// innermost service makes one: the typed reply stays inside.
pub struct ServerResponse(BoxWork);

impl std::fmt::Debug for ServerResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerResponse(..)")
    }
}

impl Carries for ServerCall {
    fn into_work(self) -> BoxWork {
        self.run
    }
}

impl Returns for ServerResponse {
    fn from_work(work: BoxWork) -> Self {
        ServerResponse(work)
    }

    fn into_work(self) -> BoxWork {
        self.0
    }
}

/// What a server layer wraps ([`NodeBuilder::server_layer`]): under the innermost layer, the
/// service that runs the handler of the request a [`ServerCall`] carries (a panic is answered
/// as a failure, as without layers; always ready, never fails); under an outer layer, the
/// layers inside it.
///
/// The stack is built once, when the node starts; a request calls a clone of it (a clone
/// shares the layers' state), kept per thread and reused while it is ready at once.
///
/// [`NodeBuilder::server_layer`]: crate::NodeBuilder::server_layer
#[derive(Clone, Debug)]
pub struct ServerService(Inner<ServerCall, ServerResponse>);

impl Service<ServerCall> for ServerService {
    type Response = ServerResponse;
    type Error = BoxError;
    type Future = ServerFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, call: ServerCall) -> ServerFuture {
        ServerFuture(self.0.call(call))
    }
}

/// The future of a [`ServerService`]: the handler's run itself under the innermost layer (not
/// boxed again), the inner layers' future under an outer one.
#[must_use = "futures do nothing unless polled"]
pub struct ServerFuture(InnerFuture<ServerResponse>);

impl std::fmt::Debug for ServerFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerFuture(..)")
    }
}

impl Future for ServerFuture {
    type Output = Result<ServerResponse, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

thread_local! {
    /// The thread's ready clone of a server stack.
    static READY: ReadySlot<ServerCall, ServerResponse> = const { RefCell::new(None) };
}

impl Side for ServerService {
    type Req = ServerCall;
    type Resp = ServerResponse;

    fn run() -> Self {
        ServerService(Inner::Run)
    }

    fn boxed(inner: BoxCloneSyncService<ServerCall, ServerResponse, BoxError>) -> Self {
        ServerService(Inner::Boxed(inner))
    }

    fn ready() -> &'static std::thread::LocalKey<ReadySlot<ServerCall, ServerResponse>> {
        &READY
    }
}

/// The server layers given to a [`NodeBuilder`](crate::NodeBuilder), outermost first.
pub(crate) type ServerLayers = Layers<ServerService>;

/// A node's server stack, built once when it starts.
pub(crate) type ServerStack = Stack<ServerService>;

/// Runs one request through the node's server layers `stack`, `run` being its handler's run.
/// A layer's error before the handler started is [`Reply::NotRun`] with
/// [`NotRunReason::Refused`]; after, [`Reply::Failed`]. The request is held in the layers at
/// most until the caller's `deadline` ([`NotRunReason::Expired`] if the handler had not
/// started).
pub(crate) async fn serve<R: Send + 'static>(
    stack: &ServerStack,
    service: &'static str,
    method: &'static MethodInfo,
    deadline: Instant,
    peer: SocketAddr,
    run: impl Future<Output = Reply<R>> + Send + 'static,
) -> Reply<R> {
    let (run, progress) = layered::boxed(async move { Ok(run.await) });
    let call = ServerCall {
        service,
        method,
        deadline,
        peer,
        run,
    };
    let through = stack.run(call, progress, deadline).await;
    let name = method.name;
    match through {
        Driven::Done(reply) => reply,
        Driven::Forged => Reply::Failed(format!(
            "{service}.{name}: a server layer answered with the response of another request"
        )),
        Driven::Failed {
            error,
            started: false,
        } => {
            tracing::debug!(service, method = name, %peer, "a server layer refused: {error}");
            Reply::NotRun(NotRunReason::Refused)
        }
        Driven::Failed { error, .. } => Reply::Failed(format!(
            "{service}.{name} failed in a server layer: {error}"
        )),
        Driven::Expired { started: false } => Reply::NotRun(NotRunReason::Expired),
        Driven::Expired { .. } => Reply::Failed(format!(
            "{service}.{name} did not finish within the caller's deadline"
        )),
    }
}

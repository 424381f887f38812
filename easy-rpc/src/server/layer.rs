//! tower middleware around a node's handlers ([`NodeBuilder::server_layer`]): a request as a
//! `tower::Service<ServerCall>`, the stack built once per node, and one layered request.
//!
//! A node without server layers never comes here: the request runs its handler directly.
//!
//! [`NodeBuilder::server_layer`]: crate::NodeBuilder::server_layer

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Layer, Service, ServiceExt};

use crate::error::NotRunReason;
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
    /// Set when the innermost service starts the handler.
    started: Arc<AtomicBool>,
    /// The handler's run, not started, its reply erased.
    run: BoxFuture<'static, ServerResponse>,
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

/// The handler's answer to a [`ServerCall`], type-erased: layers pass it back out. Only the
/// innermost service makes one.
pub struct ServerResponse(Box<dyn Any + Send>);

impl std::fmt::Debug for ServerResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerResponse(..)")
    }
}

/// The innermost service of the server layers: runs the handler of the request a
/// [`ServerCall`] carries (a panic is answered as a failure, as without layers). Always
/// ready, never fails.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunHandler;

impl Service<ServerCall> for RunHandler {
    type Response = ServerResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ServerResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ServerCall) -> Self::Future {
        call.started.store(true, Ordering::Release);
        let run = call.run;
        Box::pin(async move { Ok(run.await) })
    }
}

/// A node's server stack, as the layers see what they wrap: tower's [`BoxCloneSyncService`]
/// of [`ServerCall`]s. Built once, when the node starts ([`NodeBuilder::server_layer`]); each
/// request clones it (a clone shares the layers' state), waits until the clone is ready and
/// calls it.
///
/// [`NodeBuilder::server_layer`]: crate::NodeBuilder::server_layer
pub type ServerService = BoxCloneSyncService<ServerCall, ServerResponse, BoxError>;

/// One layer given to the builder, applied when the node starts.
type Wrap = Box<dyn FnOnce(ServerService) -> ServerService + Send + Sync>;

/// The server layers given to a [`NodeBuilder`](crate::NodeBuilder), outermost first.
#[derive(Default)]
pub(crate) struct ServerLayers(Vec<Wrap>);

impl std::fmt::Debug for ServerLayers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerLayers({})", self.0.len())
    }
}

impl ServerLayers {
    /// Adds `layer` inside the ones already given.
    pub(crate) fn push<L>(&mut self, layer: L)
    where
        L: Layer<ServerService> + Send + Sync + 'static,
        L::Service: Service<ServerCall, Response = ServerResponse> + Clone + Send + Sync + 'static,
        <L::Service as Service<ServerCall>>::Error: Into<BoxError>,
        <L::Service as Service<ServerCall>>::Future: Send + 'static,
    {
        self.0.push(Box::new(move |inner| {
            ServerService::new(layer.layer(inner).map_err(Into::into))
        }));
    }

    /// The stack over [`RunHandler`], or `None` without layers (the direct path).
    pub(crate) fn build(self) -> Option<ServerService> {
        if self.0.is_empty() {
            return None;
        }
        Some(
            self.0
                .into_iter()
                .rev()
                .fold(ServerService::new(RunHandler), |inner, wrap| wrap(inner)),
        )
    }
}

/// Runs one request through the node's server layers `stack`, `run` being its handler's run.
/// A layer's error before the handler started is [`Reply::NotRun`] with
/// [`NotRunReason::Refused`]; after, [`Reply::Failed`]. The request is held in the layers at
/// most until the caller's `deadline` ([`NotRunReason::Expired`] if the handler had not
/// started).
pub(crate) async fn serve<R: Send + 'static>(
    stack: &ServerService,
    service: &'static str,
    method: &'static MethodInfo,
    deadline: Instant,
    peer: SocketAddr,
    run: impl Future<Output = Reply<R>> + Send + 'static,
) -> Reply<R> {
    let started = Arc::new(AtomicBool::new(false));
    let call = ServerCall {
        service,
        method,
        deadline,
        peer,
        started: started.clone(),
        run: Box::pin(async move { ServerResponse(Box::new(run.await)) }),
    };
    let through = tokio::time::timeout_at(deadline.into(), stack.clone().oneshot(call)).await;
    let started = started.load(Ordering::Acquire);
    let name = method.name;
    match through {
        Ok(Ok(resp)) => match resp.0.downcast::<Reply<R>>() {
            Ok(reply) => *reply,
            Err(_) => Reply::Failed(format!(
                "{service}.{name}: a server layer answered with the response of another request"
            )),
        },
        Ok(Err(e)) if !started => {
            tracing::debug!(service, method = name, %peer, "a server layer refused: {e}");
            Reply::NotRun(NotRunReason::Refused)
        }
        Ok(Err(e)) => Reply::Failed(format!("{service}.{name} failed in a server layer: {e}")),
        Err(_) if !started => Reply::NotRun(NotRunReason::Expired),
        Err(_) => Reply::Failed(format!(
            "{service}.{name} did not finish within the caller's deadline"
        )),
    }
}

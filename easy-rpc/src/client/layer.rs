//! tower middleware around each attempt of a call ([`NodeBuilder::client_layer`]): the attempt
//! as a `tower::Service<Call>`, the service the layers wrap, and one layered attempt. The
//! machinery the server's layers share (the stack, the work a request carries, driving it) is
//! in `layered.rs`.
//!
//! A node without client layers never comes here: `call.rs` tests one `Option` and sends
//! directly, as it did before layers existed.
//!
//! [`NodeBuilder::client_layer`]: crate::NodeBuilder::client_layer

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use cluster_helper::NodeId;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Service};

use super::endpoint::Endpoint;
use super::outgoing::Outgoing;
use crate::error::{Never, RpcError};
use crate::layered::{
    self, BoxWork, Carries, Driven, Inner, InnerFuture, Layers, ReadySlot, Returns, Side, Stack,
};
use crate::runtime::Rpc;
use crate::service::{MethodInfo, ServiceDef};

/// One attempt of a call, as the client layers ([`NodeBuilder::client_layer`]) see it: the
/// service, the method, the node it goes to, its deadline and which attempt of the call it
/// is. The typed request travels inside, type-erased: a layer can look, refuse (return an
/// error instead of calling the inner service), wait (tower's readiness), time or count, but
/// not read or change the request.
///
/// The innermost service ([`CallService`] under every layer) sends the attempt to the node it
/// names.
///
/// ```
/// use std::task::{Context, Poll};
/// use easy_rpc::{Call, CallResponse};
///
/// /// Refuses calls of one method, lets the rest through.
/// #[derive(Clone, Debug)]
/// struct NoDeletes<S>(S);
///
/// impl<S> tower::Service<Call> for NoDeletes<S>
/// where
///     S: tower::Service<Call, Response = CallResponse, Error = tower::BoxError>,
///     S::Future: Send + 'static,
/// {
///     type Response = CallResponse;
///     type Error = tower::BoxError;
///     type Future = futures::future::BoxFuture<'static, Result<CallResponse, tower::BoxError>>;
///
///     fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), tower::BoxError>> {
///         self.0.poll_ready(cx)
///     }
///
///     fn call(&mut self, call: Call) -> Self::Future {
///         if call.method().name == "delete" {
///             let refusal = format!("{}.delete is not called from here", call.service());
///             return Box::pin(async move { Err(refusal.into()) });
///         }
///         Box::pin(self.0.call(call))
///     }
/// }
///
/// let builder = easy_rpc::Node::builder()
///     .client_layer(tower::layer::layer_fn(NoDeletes));
/// # drop(builder);
/// ```
///
/// [`NodeBuilder::client_layer`]: crate::NodeBuilder::client_layer
pub struct Call {
    service: &'static str,
    method: &'static MethodInfo,
    node: NodeId,
    deadline: Instant,
    attempt: u32,
    /// The attempt itself, not started: the endpoint's send, erased (its answer stays inside).
    send: BoxWork,
}

impl Call {
    /// The service's wire name ([`ServiceDef::NAME`]).
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// The method called: its name and whether it is idempotent.
    pub fn method(&self) -> &'static MethodInfo {
        self.method
    }

    /// The node this attempt goes to.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// When this attempt gives up: the call's deadline, or the attempt's own when the call
    /// set an attempt timeout. A layer that holds the attempt (waiting for a permit) holds
    /// it within this deadline: when it passes first, the call fails with
    /// [`RpcError::Layer`] (not sent).
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Which attempt of the call this is: 1 for the first send, then one more for each
    /// reroute (to another node, after a failure that proves the call did not run) and each
    /// retry (of an idempotent call).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("service", &self.service)
            .field("method", &self.method.name)
            .field("node", &self.node)
            .field("deadline", &self.deadline)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// The answer to a [`Call`], opaque: layers pass it back out (they can observe that the call
/// succeeded and when, not what it returned). Only the innermost service makes one: the typed
/// answer stays inside, where the attempt's own send left it.
pub struct CallResponse(BoxWork);

impl std::fmt::Debug for CallResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallResponse(..)")
    }
}

impl Carries for Call {
    fn into_work(self) -> BoxWork {
        self.send
    }
}

impl Returns for CallResponse {
    fn from_work(work: BoxWork) -> Self {
        CallResponse(work)
    }

    fn into_work(self) -> BoxWork {
        self.0
    }
}

/// What a client layer wraps ([`NodeBuilder::client_layer`]): under the innermost layer, the
/// service that sends the attempt a [`Call`] carries to the node it names, over the node's
/// pooled connection (always ready; its errors are the attempt's [`RpcError`]s, boxed, which
/// easy-rpc takes back out, unchanged, after the layers); under an outer layer, the layers
/// inside it.
///
/// The stack is built once, when the node starts; an attempt calls a clone of it (a clone
/// shares the layers' state: one [`ConcurrencyLimit`](tower::limit::ConcurrencyLimit)'s
/// semaphore for the node), kept per thread and reused while it is ready at once.
///
/// [`NodeBuilder::client_layer`]: crate::NodeBuilder::client_layer
#[derive(Clone, Debug)]
pub struct CallService(Inner<Call, CallResponse>);

impl Service<Call> for CallService {
    type Response = CallResponse;
    type Error = BoxError;
    type Future = CallFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, call: Call) -> CallFuture {
        CallFuture(self.0.call(call))
    }
}

/// The future of a [`CallService`]: the attempt's send itself under the innermost layer (not
/// boxed again), the inner layers' future under an outer one.
#[must_use = "futures do nothing unless polled"]
pub struct CallFuture(InnerFuture<CallResponse>);

impl std::fmt::Debug for CallFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallFuture(..)")
    }
}

impl Future for CallFuture {
    type Output = Result<CallResponse, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

thread_local! {
    /// The thread's ready clone of a client stack.
    static READY: ReadySlot<Call, CallResponse> = const { RefCell::new(None) };
}

impl Side for CallService {
    type Req = Call;
    type Resp = CallResponse;

    fn run() -> Self {
        CallService(Inner::Run)
    }

    fn boxed(inner: BoxCloneSyncService<Call, CallResponse, BoxError>) -> Self {
        CallService(Inner::Boxed(inner))
    }

    fn ready() -> &'static std::thread::LocalKey<ReadySlot<Call, CallResponse>> {
        &READY
    }
}

/// The client layers given to a [`NodeBuilder`](crate::NodeBuilder), outermost first.
pub(crate) type ClientLayers = Layers<CallService>;

/// A node's client stack, built once when it starts.
pub(crate) type ClientStack = Stack<CallService>;

/// One attempt through the node's client layers `stack`: the layered counterpart of
/// [`Endpoint::send`], with the same arguments and errors, plus the attempt's number. An error
/// of easy-rpc's comes out of the stack unchanged; a layer's own error becomes
/// [`RpcError::Layer`]. The layers hold the attempt at most until `deadline`.
///
/// Whether a layer's error came before or after the request went out is read from the
/// request's writes (as for a broken connection): sharing one request between the nodes of
/// `all` only errs towards "sent".
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send<S: ServiceDef>(
    stack: &ClientStack,
    rpc: &Arc<Rpc>,
    endpoint: &Arc<Endpoint<S>>,
    method: &'static MethodInfo,
    req: &Arc<Outgoing<S::Req>>,
    started: Instant,
    deadline: Instant,
    attempt: u32,
) -> Result<S::Resp, RpcError<Never>> {
    let writes = req.writes();
    let (send, progress) = {
        let rpc = rpc.clone();
        let endpoint = endpoint.clone();
        let req = req.clone();
        layered::boxed(async move {
            endpoint
                .send(&rpc, method, req, started, deadline)
                .await
                .map_err(|e| Box::new(e) as BoxError)
        })
    };
    let node = endpoint.node();
    let call = Call {
        service: S::NAME,
        method,
        node: node.clone(),
        deadline,
        attempt,
        send,
    };
    let through = stack.run(call, progress, deadline).await;
    let was_sent = || req.writes() != writes;
    match through {
        Driven::Done(resp) => Ok(resp),
        Driven::Failed { error, .. } => {
            Err(from_layers(error, node.clone(), method.name, was_sent()))
        }
        Driven::Forged => Err(RpcError::Layer {
            node: node.clone(),
            method: method.name,
            sent: was_sent(),
            source: Arc::new(std::io::Error::other(
                "a client layer answered with the response of another call",
            )),
        }),
        Driven::Expired { .. } if was_sent() => Err(RpcError::Timeout {
            node: node.clone(),
            method: method.name,
            after: deadline.saturating_duration_since(started),
        }),
        Driven::Expired { .. } => Err(RpcError::Layer {
            node: node.clone(),
            method: method.name,
            sent: false,
            source: Arc::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the deadline passed before the client layers let the call through",
            )),
        }),
    }
}

/// The call's error from an error out of the stack: easy-rpc's own [`RpcError`] unchanged
/// (also when a layer wrapped it: it is found among the causes), anything else as the
/// layer's, in [`RpcError::Layer`].
fn from_layers(e: BoxError, node: NodeId, method: &'static str, sent: bool) -> RpcError<Never> {
    let e = match e.downcast::<RpcError<Never>>() {
        Ok(own) => return *own,
        Err(e) => e,
    };
    let mut cause = e.source();
    while let Some(c) = cause {
        if let Some(own) = c.downcast_ref::<RpcError<Never>>() {
            return own.clone();
        }
        cause = c.source();
    }
    RpcError::Layer {
        node,
        method,
        sent,
        source: Arc::from(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeId {
        NodeId::new("n", 1).unwrap()
    }

    #[test]
    fn errors_of_easy_rpc_come_out_unchanged_and_a_layers_own_are_wrapped() {
        let own: RpcError = RpcError::NotRun {
            node: node(),
            method: "m",
            reason: crate::NotRunReason::Leaving,
        };
        let back = from_layers(Box::new(own), node(), "m", true);
        assert!(matches!(back, RpcError::NotRun { .. }), "{back:?}");

        let back = from_layers(
            Box::new(tower::timeout::error::Elapsed::new()),
            node(),
            "m",
            true,
        );
        match &back {
            RpcError::Layer {
                sent: true, source, ..
            } => {
                assert!(source.is::<tower::timeout::error::Elapsed>());
            }
            other => panic!("{other:?}"),
        }
        assert!(!back.never_reached_server());
        let refused = from_layers("no".into(), node(), "m", false);
        assert!(refused.never_reached_server());
        assert_eq!(
            refused.to_string(),
            "m to n#1 failed in a client layer (not sent): no"
        );
    }
}

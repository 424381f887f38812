//! tower middleware around each attempt of a call ([`NodeBuilder::client_layer`]): the attempt
//! as a `tower::Service<Call>`, the stack built once per node, and one layered attempt.
//!
//! A node without client layers never comes here: `call_one` and `call_endpoint` test one
//! `Option` and send directly, as they did before layers existed.
//!
//! [`NodeBuilder::client_layer`]: crate::NodeBuilder::client_layer

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use cluster_helper::NodeId;
use futures::future::BoxFuture;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Layer, Service, ServiceExt};

use super::endpoint::Endpoint;
use super::outgoing::Outgoing;
use crate::error::{Never, RpcError};
use crate::runtime::Rpc;
use crate::service::{MethodInfo, ServiceDef};

/// One attempt of a call, as the client layers ([`NodeBuilder::client_layer`]) see it: the
/// service, the method, the node it goes to, its deadline and which attempt of the call it
/// is. The typed request travels inside, type-erased: a layer can look, refuse (return an
/// error instead of calling the inner service), wait (tower's readiness), time or count, but
/// not read or change the request.
///
/// The innermost service ([`SendCall`]) sends the attempt to the node it names.
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
    /// The attempt itself, not started: the endpoint's send, its response and error erased.
    send: BoxFuture<'static, Result<CallResponse, BoxError>>,
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

/// The answer to a [`Call`], type-erased: layers pass it back out (they can observe that the
/// call succeeded and when, not what it returned). Only the innermost service makes one.
pub struct CallResponse(Box<dyn Any + Send>);

impl std::fmt::Debug for CallResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallResponse(..)")
    }
}

/// The innermost service of the client layers: sends the attempt a [`Call`] carries to the
/// node it names, over the node's pooled connection. Always ready; its errors are the
/// [`RpcError`]s of the attempt, boxed (easy-rpc takes them back out, unchanged, after the
/// layers).
#[derive(Clone, Copy, Debug, Default)]
pub struct SendCall;

impl Service<Call> for SendCall {
    type Response = CallResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<CallResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        call.send
    }
}

/// A node's client stack, as the layers see what they wrap: tower's
/// [`BoxCloneSyncService`] of [`Call`]s. The stack is built once, when the node starts
/// ([`NodeBuilder::client_layer`]); each attempt clones it (a clone shares the layers' state:
/// one [`ConcurrencyLimit`](tower::limit::ConcurrencyLimit)'s semaphore for the node), waits
/// until the clone is ready and calls it.
///
/// [`NodeBuilder::client_layer`]: crate::NodeBuilder::client_layer
pub type CallService = BoxCloneSyncService<Call, CallResponse, BoxError>;

/// One layer given to the builder, applied when the node starts.
type Wrap = Box<dyn FnOnce(CallService) -> CallService + Send + Sync>;

/// The client layers given to a [`NodeBuilder`](crate::NodeBuilder), outermost first.
#[derive(Default)]
pub(crate) struct ClientLayers(Vec<Wrap>);

impl std::fmt::Debug for ClientLayers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientLayers({})", self.0.len())
    }
}

impl ClientLayers {
    /// Adds `layer` inside the ones already given.
    pub(crate) fn push<L>(&mut self, layer: L)
    where
        L: Layer<CallService> + Send + Sync + 'static,
        L::Service: Service<Call, Response = CallResponse> + Clone + Send + Sync + 'static,
        <L::Service as Service<Call>>::Error: Into<BoxError>,
        <L::Service as Service<Call>>::Future: Send + 'static,
    {
        self.0.push(Box::new(move |inner| {
            CallService::new(layer.layer(inner).map_err(Into::into))
        }));
    }

    /// The stack over [`SendCall`], or `None` without layers (the direct path).
    pub(crate) fn build(self) -> Option<CallService> {
        if self.0.is_empty() {
            return None;
        }
        Some(
            self.0
                .into_iter()
                .rev()
                .fold(CallService::new(SendCall), |inner, wrap| wrap(inner)),
        )
    }
}

/// One attempt through the node's client layers `stack`: the layered counterpart of
/// [`Endpoint::send`], with the same arguments and errors, plus the attempt's number. An error
/// of easy-rpc's comes out of the stack unchanged; a layer's own error becomes
/// [`RpcError::Layer`]. The attempt is held in the layers at most until `deadline`.
///
/// Whether a layer's error came before or after the request went out is read from the
/// request's writes (as for a broken connection): sharing one request between the nodes of
/// `all` only errs towards "sent".
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send<S: ServiceDef>(
    stack: &CallService,
    rpc: &Arc<Rpc>,
    endpoint: &Arc<Endpoint<S>>,
    method: &'static MethodInfo,
    req: Arc<Outgoing<S::Req>>,
    started: Instant,
    deadline: Instant,
    attempt: u32,
) -> Result<S::Resp, RpcError<Never>> {
    let node = endpoint.node().clone();
    let writes = req.writes();
    let send = {
        let rpc = rpc.clone();
        let endpoint = endpoint.clone();
        let req = req.clone();
        async move {
            match endpoint.send(&rpc, method, req, started, deadline).await {
                Ok(resp) => Ok(CallResponse(Box::new(resp))),
                Err(e) => Err(Box::new(e) as BoxError),
            }
        }
    };
    let call = Call {
        service: S::NAME,
        method,
        node: node.clone(),
        deadline,
        attempt,
        send: Box::pin(send),
    };
    let stack = stack.clone();
    let through = tokio::time::timeout_at(deadline.into(), stack.oneshot(call)).await;
    let was_sent = || req.writes() != writes;
    match through {
        Ok(Ok(resp)) => match resp.0.downcast::<S::Resp>() {
            Ok(resp) => Ok(*resp),
            Err(_) => Err(RpcError::Layer {
                node,
                method: method.name,
                sent: was_sent(),
                source: Arc::new(std::io::Error::other(
                    "a client layer answered with the response of another call",
                )),
            }),
        },
        Ok(Err(e)) => Err(from_layers(e, node, method.name, was_sent())),
        Err(_) if was_sent() => Err(RpcError::Timeout {
            node,
            method: method.name,
            after: deadline.saturating_duration_since(started),
        }),
        Err(_) => Err(RpcError::Layer {
            node,
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

//! A service ready to serve ([`Served`]) and the type-erased server of one service on one
//! connection: tarpc's channel over the handshaken stream, each request run inside the
//! caller's deadline, counted in flight, a panic turned into an answer.

use std::any::TypeId;
use std::marker::PhantomData;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tarpc::ServerError;
use tarpc::server::{BaseChannel, Channel, Serve};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::state::{InFlight, ServerState};
use crate::codec::ServerCodec;
use crate::error::NotRunReason;
use crate::reply::Reply;
use crate::sealed::Sealed;
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
        framed: Framed<Sealed<TcpStream>, LengthDelimitedCodec>,
        state: Arc<ServerState>,
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

/// tarpc's view of a handler: runs the request inside the caller's deadline, counts it in
/// flight, turns a panic into [`Reply::Failed`], and answers [`Reply::NotRun`] once the node
/// is leaving.
struct TarpcServe<S, H> {
    handler: Arc<H>,
    state: Arc<ServerState>,
    _service: PhantomData<fn() -> S>,
}

impl<S, H> Clone for TarpcServe<S, H> {
    fn clone(&self) -> Self {
        TarpcServe {
            handler: self.handler.clone(),
            state: self.state.clone(),
            _service: PhantomData,
        }
    }
}

impl<S: ServiceDef, H: Handler<S>> Serve for TarpcServe<S, H> {
    type Req = S::Req;
    type Resp = Reply<S::Resp>;

    async fn serve(
        self,
        ctx: tarpc::context::Context,
        req: S::Req,
    ) -> Result<Reply<S::Resp>, ServerError> {
        if self.state.is_refusing() {
            return Ok(Reply::NotRun(NotRunReason::Leaving));
        }
        let _in_flight = InFlight::new(&self.state);
        let method = S::method(&req).name;
        let work = crate::context::with_deadline(ctx.deadline, self.handler.handle(req));
        match std::panic::AssertUnwindSafe(work).catch_unwind().await {
            Ok(resp) => Ok(Reply::Ok(resp)),
            Err(_) => {
                tracing::error!(service = S::NAME, method, "handler panicked");
                Ok(Reply::Failed(format!(
                    "{}.{method} panicked on the server",
                    S::NAME
                )))
            }
        }
    }
}

impl<S: ServiceDef, H: Handler<S>> ServeConnection for TypedServer<S, H> {
    fn serve(
        &self,
        framed: Framed<Sealed<TcpStream>, LengthDelimitedCodec>,
        state: Arc<ServerState>,
    ) -> BoxFuture<'static, ()> {
        let serve = TarpcServe::<S, H> {
            handler: self.handler.clone(),
            state,
            _service: PhantomData,
        };
        let transport =
            tarpc::serde_transport::new(framed, ServerCodec::<S::Req, Reply<S::Resp>>::default());
        async move {
            BaseChannel::with_defaults(transport)
                .execute(serve)
                .for_each(|request| async move {
                    tokio::spawn(request);
                })
                .await;
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use tarpc::context;
    use tokio::net::TcpListener;

    use tarpc::{ClientMessage, Response};

    use super::*;
    use crate::codec::{Postcard, framing};
    use crate::service::MethodInfo;

    struct Echo;

    #[derive(Debug, Serialize, Deserialize)]
    enum EchoReq {
        Echo(u32),
        Panic,
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
            }
        }
    }

    #[tokio::test]
    async fn the_reply_says_whether_the_method_ran() {
        let key = [7; 32];
        let keys = Arc::new(crate::keyring::KeyRing::new(vec![key]));
        let state = Arc::new(ServerState::new(keys, "c".into()));
        state
            .services
            .write()
            .unwrap()
            .insert("Echo", Served::new::<Echo, _>(EchoHandler));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(super::super::accept_loop(listener, state.clone(), stopped));

        let stream = TcpStream::connect(addr).await.unwrap();
        let stream = crate::handshake::client(stream, &key, "Echo")
            .await
            .unwrap();
        let transport = tarpc::serde_transport::new(
            Framed::new(stream, framing()),
            Postcard::<Response<Reply<u32>>, ClientMessage<EchoReq>>::default(),
        );
        let client = tarpc::client::new(Default::default(), transport).spawn();

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
}

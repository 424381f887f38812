//! A service ready to serve ([`Served`]) and the type-erased server of one service on one
//! connection: tarpc's channel over the handshaken stream, each request run inside the
//! caller's deadline, counted in flight, a panic turned into an answer.

use std::marker::PhantomData;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tarpc::server::{BaseChannel, Channel, Serve};
use tarpc::{ClientMessage, Response, ServerError};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::state::{InFlight, ServerState};
use crate::codec::Postcard;
use crate::error::NotRunReason;
use crate::reply::Reply;
use crate::service::{Handler, ServiceDef};

/// A service implementation ready to be served by a node: what `MyImpl.serve()` returns.
///
/// ```ignore
/// node.serve(BillingImpl.serve());
/// ```
#[derive(Clone)]
pub struct Served {
    pub(crate) name: &'static str,
    pub(crate) conn: Arc<dyn ServeConnection>,
}

impl Served {
    /// Wraps a handler of service `S`.
    pub fn new<S: ServiceDef, H: Handler<S>>(handler: H) -> Served {
        Served {
            name: S::NAME,
            conn: Arc::new(TypedServer::<S, H>::new(handler)),
        }
    }

    /// The service's name.
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
        framed: Framed<TcpStream, LengthDelimitedCodec>,
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
        framed: Framed<TcpStream, LengthDelimitedCodec>,
        state: Arc<ServerState>,
    ) -> BoxFuture<'static, ()> {
        let serve = TarpcServe::<S, H> {
            handler: self.handler.clone(),
            state,
            _service: PhantomData,
        };
        let transport = tarpc::serde_transport::new(
            framed,
            Postcard::<ClientMessage<S::Req>, Response<Reply<S::Resp>>>::default(),
        );
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

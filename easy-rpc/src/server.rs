//! The server: one TCP listener per node for every service it serves. Each connection starts
//! with the handshake, then carries one tarpc service.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tarpc::server::{BaseChannel, Channel, Serve};
use tarpc::{ClientMessage, Response, ServerError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::codec::Framed;

use crate::codec::{Postcard, framing};
use crate::error::RejectReason;
use crate::handshake::{self, Admission, HandshakeError};
use crate::service::{Handler, Served, ServiceDef};

/// How long a peer has to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The `detail` of the error a leaving node answers new requests with; the client knows the
/// request was not run and sends it to another node.
pub(crate) const LEAVING_DETAIL: &str = "easy-rpc: node is leaving; request not run";

/// State shared by the accept loop and every connection of one node.
pub(crate) struct ServerState {
    pub(crate) services: RwLock<HashMap<&'static str, Served>>,
    key: [u8; 32],
    cluster: String,
    /// Set when the node starts leaving: new connections are refused.
    leaving: AtomicBool,
    /// Set once every caller has had time to hear that the node leaves: requests arriving on
    /// existing connections are refused (not run) so the caller retries elsewhere.
    refusing: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
    /// Connections refused at the handshake (for tests and metrics).
    pub(crate) rejected: AtomicUsize,
    /// Connections that completed the handshake.
    pub(crate) accepted: AtomicUsize,
    /// Connections open now (after the handshake).
    pub(crate) open: AtomicUsize,
}

impl ServerState {
    pub(crate) fn new(key: [u8; 32], cluster: String) -> Self {
        ServerState {
            services: RwLock::new(HashMap::new()),
            key,
            cluster,
            leaving: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            rejected: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
        }
    }

    pub(crate) fn start_leaving(&self) {
        self.leaving.store(true, Ordering::SeqCst);
    }

    pub(crate) fn start_refusing(&self) {
        self.refusing.store(true, Ordering::SeqCst);
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until no request is being served (or `max` passes). Returns whether it drained.
    pub(crate) async fn drained(&self, max: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let notified = self.idle.notified();
            if self.in_flight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.in_flight() == 0;
            }
        }
    }
}

/// Counts a request as in flight while it lives.
struct InFlight(Arc<ServerState>);

impl InFlight {
    fn new(state: &Arc<ServerState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Only a draining node waits for idleness; others skip the notification's lock.
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && self.0.leaving.load(Ordering::SeqCst)
        {
            self.0.idle.notify_waiters();
        }
    }
}

/// Serves one accepted, handshaken connection for one service (type-erased per service).
pub(crate) trait ServeConnection: Send + Sync + 'static {
    fn serve(
        &self,
        framed: Framed<TcpStream, tokio_util::codec::LengthDelimitedCodec>,
        state: Arc<ServerState>,
    ) -> BoxFuture<'static, ()>;
}

pub(crate) struct TypedServer<S, H> {
    handler: Arc<H>,
    _service: PhantomData<fn() -> S>,
}

impl<S, H> TypedServer<S, H> {
    pub(crate) fn new(handler: H) -> Self {
        TypedServer {
            handler: Arc::new(handler),
            _service: PhantomData,
        }
    }
}

/// tarpc's view of a handler: runs the request inside the caller's deadline, counts it in
/// flight, turns a panic into an error for the caller, and refuses work once the node is
/// leaving.
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
    type Resp = S::Resp;

    async fn serve(
        self,
        ctx: tarpc::context::Context,
        req: S::Req,
    ) -> Result<S::Resp, ServerError> {
        if self.state.refusing.load(Ordering::SeqCst) {
            return Err(ServerError::new(
                std::io::ErrorKind::ConnectionRefused,
                LEAVING_DETAIL.to_owned(),
            ));
        }
        let _in_flight = InFlight::new(&self.state);
        let method = S::method(&req).name;
        let work = crate::context::with_deadline(ctx.deadline, self.handler.handle(req));
        match std::panic::AssertUnwindSafe(work).catch_unwind().await {
            Ok(resp) => Ok(resp),
            Err(_) => {
                tracing::error!(service = S::NAME, method, "handler panicked");
                Err(ServerError::new(
                    std::io::ErrorKind::Other,
                    format!("{}.{method} panicked on the server", S::NAME),
                ))
            }
        }
    }
}

impl<S: ServiceDef, H: Handler<S>> ServeConnection for TypedServer<S, H> {
    fn serve(
        &self,
        framed: Framed<TcpStream, tokio_util::codec::LengthDelimitedCodec>,
        state: Arc<ServerState>,
    ) -> BoxFuture<'static, ()> {
        let serve = TarpcServe::<S, H> {
            handler: self.handler.clone(),
            state,
            _service: PhantomData,
        };
        let transport = tarpc::serde_transport::new(
            framed,
            Postcard::<ClientMessage<S::Req>, Response<S::Resp>>::default(),
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

/// Accepts connections until `stop` fires. Each connection is handshaken and served in its
/// own task: a bad peer only ever closes its own connection.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    state: Arc<ServerState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let state = state.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    connection(stream, peer, state, stop).await;
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait a moment instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    state: Arc<ServerState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let key = state.key;
    let cluster = state.cluster.clone();
    let admit_state = state.clone();
    let handshake = handshake::server(&mut stream, &key, &cluster, |service| {
        if admit_state.leaving.load(Ordering::SeqCst) {
            return Admission::Reject(RejectReason::Leaving);
        }
        match admit_state.services.read() {
            Ok(s) if s.contains_key(service) => Admission::Accept,
            _ => Admission::Reject(RejectReason::UnknownService {
                service: service.to_owned(),
            }),
        }
    });
    let service = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(service)) => service,
        Ok(Err(HandshakeError::Rejected(reason))) => {
            state.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%peer, "connection refused: {reason}");
            return;
        }
        Ok(Err(HandshakeError::Io(e))) => {
            state.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "handshake failed: {e}");
            return;
        }
        Err(_) => {
            state.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%peer, "handshake timed out");
            return;
        }
    };
    let served = match state.services.read() {
        Ok(s) => s.get(service.as_str()).cloned(),
        Err(_) => None,
    };
    let Some(served) = served else { return };
    state.accepted.fetch_add(1, Ordering::Relaxed);
    state.open.fetch_add(1, Ordering::Relaxed);
    let framed = Framed::new(stream, framing());
    let serving = served.conn.serve(framed, state.clone());
    tokio::select! {
        _ = serving => {}
        _ = stop.wait_for(|s| *s) => {}
    }
    state.open.fetch_sub(1, Ordering::Relaxed);
}

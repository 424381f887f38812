//! What `#[easy_rpc::service]` generates code against: a service's description
//! ([`ServiceDef`], [`MethodInfo`]), its server side ([`Handler`], [`Served`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// One RPC service: its wire name and its request and response types. Implemented by
/// `#[easy_rpc::service]` on a unit struct named `<Trait>Service`.
pub trait ServiceDef: Send + Sync + 'static {
    /// The service's name in the handshake and in gossip (the trait's name unless the macro
    /// was given `name = "..."`).
    const NAME: &'static str;
    /// One variant per method, holding its arguments.
    type Req: Serialize + DeserializeOwned + Send + Sync + 'static + tarpc::RequestName;
    /// One variant per method, holding its return value.
    type Resp: Serialize + DeserializeOwned + Send + 'static;
    /// The method a request calls.
    fn method(req: &Self::Req) -> &'static MethodInfo;
}

/// Static facts about one method, from the trait and its `#[easy_rpc(...)]` options.
#[derive(Debug)]
#[non_exhaustive]
pub struct MethodInfo {
    /// The method's name.
    pub name: &'static str,
    /// Marked `#[easy_rpc(idempotent)]`: safe to run twice, so it may be retried after a
    /// timeout or a lost connection.
    pub idempotent: bool,
    /// `#[easy_rpc(timeout_ms = N)]`: this method's default deadline, overriding the client's.
    pub timeout: Option<Duration>,
}

impl MethodInfo {
    /// A method with no options.
    pub const fn new(name: &'static str) -> Self {
        MethodInfo {
            name,
            idempotent: false,
            timeout: None,
        }
    }

    /// Marks the method idempotent.
    pub const fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Sets the method's default deadline in milliseconds.
    pub const fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout = Some(Duration::from_millis(ms));
        self
    }
}

/// The server side of service `S`: answers one request. Implemented by
/// `#[easy_rpc::service]` for a wrapper around the user's implementation of the trait.
pub trait Handler<S: ServiceDef>: Send + Sync + 'static {
    /// Runs the method the request names and returns its response.
    fn handle(&self, req: S::Req) -> impl Future<Output = S::Resp> + Send;
}

/// A service implementation ready to be served by a node: what `MyImpl.serve()` returns.
///
/// ```ignore
/// node.serve(BillingImpl.serve());
/// ```
#[derive(Clone)]
pub struct Served {
    pub(crate) name: &'static str,
    pub(crate) conn: Arc<dyn crate::server::ServeConnection>,
}

impl Served {
    /// Wraps a handler of service `S`.
    pub fn new<S: ServiceDef, H: Handler<S>>(handler: H) -> Served {
        Served {
            name: S::NAME,
            conn: Arc::new(crate::server::TypedServer::<S, H>::new(handler)),
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

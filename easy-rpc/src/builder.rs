//! [`NodeBuilder`]: the cluster settings of [`cluster_helper::NodeBuilder`] (forwarded with the
//! same parameter types), the services to serve, the client options.

use std::net::SocketAddr;
use std::time::Duration;

use cluster_helper::{Config, RpcListen};
use tower::{BoxError, Layer, Service};

use crate::client::{Call, CallResponse, CallService, ClientLayers};
use crate::error::Error;
use crate::link::Encryption;
use crate::node::Node;
use crate::options::ClientOptions;
use crate::runtime::Layers;
use crate::server::{
    Served, ServerCall, ServerLayers, ServerLimits, ServerResponse, ServerService,
};

/// Builds and starts a [`Node`]: the cluster settings of [`cluster_helper::NodeBuilder`] (every
/// setter forwarded with the same parameter types and the same rules: explicit settings win
/// over the environment, roles and seeds merge), the services to serve, and client options.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), easy_rpc::Error> {
/// let node = easy_rpc::Node::builder()
///     .cluster("docs-builder")
///     .name("gateway")
///     .listen("127.0.0.1:0")
///     .secret_key(easy_rpc::cluster_helper::Secret::generate())
///     .default_node(false)
///     .start()
///     .await?;
/// assert_eq!(node.id().name(), "gateway");
/// node.shutdown().await;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until .start() is awaited"]
#[derive(Debug)]
pub struct NodeBuilder {
    cluster: cluster_helper::NodeBuilder,
    services: Vec<Served>,
    options: ClientOptions,
    default: Option<bool>,
    /// Server limits set in code ([`NodeBuilder::server_limits`]).
    limits: Option<ServerLimits>,
    /// Server limits read from `CLUSTER_RPC_*` variables (the code's win).
    env_limits: Option<ServerLimits>,
    /// The management endpoint's address set in code ([`NodeBuilder::http_listen`]).
    http: Option<SocketAddr>,
    /// `CLUSTER_HTTP_LISTEN`: an address, or off (`Some(None)`); the code's wins.
    env_http: Option<Option<SocketAddr>>,
    /// Layers around each attempt of a call ([`NodeBuilder::client_layer`]).
    client_layers: ClientLayers,
    /// Layers around every handler ([`NodeBuilder::server_layer`]).
    server_layers: ServerLayers,
    /// Call encryption turned off in code ([`NodeBuilder::unencrypted_calls`]).
    unencrypted: bool,
    /// `CLUSTER_RPC_ENCRYPTION`: on or off; the code's off wins.
    env_encryption: Option<Encryption>,
    /// The ratio of calls traced, set in code ([`NodeBuilder::trace_sample`]).
    trace_sample: Option<f64>,
    /// `CLUSTER_TRACE_SAMPLE`; the code's wins.
    env_trace_sample: Option<f64>,
}

/// The variable that turns the management HTTP endpoint on.
const HTTP_LISTEN_VAR: &str = "CLUSTER_HTTP_LISTEN";

/// The variable that turns call encryption off (`off`) or says it stays on (`on`).
const ENCRYPTION_VAR: &str = "CLUSTER_RPC_ENCRYPTION";

/// Parses `CLUSTER_RPC_ENCRYPTION` (blank: unset).
fn parse_encryption(value: Option<String>) -> Result<Option<Encryption>, Error> {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "on" => Ok(Some(Encryption::On)),
        "off" => Ok(Some(Encryption::Off)),
        _ => Err(Error::InvalidConfig {
            setting: ENCRYPTION_VAR,
            value,
            expected: "on (calls sealed after the handshake, the default) or off (calls in \
                       clear, for networks that already encrypt them; see SECURITY.md)",
        }),
    }
}

/// The variable that sets the ratio of calls traced.
const TRACE_SAMPLE_VAR: &str = "CLUSTER_TRACE_SAMPLE";

/// What `CLUSTER_TRACE_SAMPLE` and [`NodeBuilder::trace_sample`] take.
const TRACE_SAMPLE_EXPECTED: &str = "the share of calls traced, from 0 to 1 (e.g. 0.01 for one call in a hundred; 1, the \
     default, for every call)";

/// Parses `CLUSTER_TRACE_SAMPLE` (blank: unset).
fn parse_trace_sample(value: Option<String>) -> Result<Option<f64>, Error> {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    match value.trim().parse::<f64>() {
        Ok(ratio) if crate::trace::Sampler::new(ratio).is_some() => Ok(Some(ratio)),
        _ => Err(Error::InvalidConfig {
            setting: TRACE_SAMPLE_VAR,
            value,
            expected: TRACE_SAMPLE_EXPECTED,
        }),
    }
}

/// Parses `CLUSTER_HTTP_LISTEN` (blank: unset; `off`: off).
fn parse_http_listen(value: Option<String>) -> Result<Option<Option<SocketAddr>>, Error> {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    match value.trim() {
        "off" | "none" | "disabled" => Ok(Some(None)),
        v => v
            .parse()
            .map(|addr| Some(Some(addr)))
            .map_err(|_| Error::InvalidConfig {
                setting: HTTP_LISTEN_VAR,
                value: value.clone(),
                expected: "the management endpoint's address as ip:port (e.g. 0.0.0.0:9090, \
                           or 127.0.0.1:0 for any free port), or off",
            }),
    }
}

macro_rules! forward {
    ($($(#[$doc:meta])* fn $name:ident $(<$($g:ident: $b:path),*>)? ($($arg:ident: $ty:ty),*);)*) => {
        $(
            $(#[$doc])*
            pub fn $name $(<$($g: $b),*>)? (mut self, $($arg: $ty),*) -> Self {
                self.cluster = self.cluster.$name($($arg),*);
                self
            }
        )*
    };
}

impl Default for NodeBuilder {
    /// Default settings: as [`cluster_helper::NodeBuilder`]'s, except that the node listens
    /// for RPC on its gossip port number ([`RpcListen::SamePort`]) unless code, the
    /// environment or the base [`Config`] set [`rpc_listen`](NodeBuilder::rpc_listen).
    fn default() -> Self {
        NodeBuilder {
            cluster: cluster_helper::NodeBuilder::new().default_rpc_listen(RpcListen::SamePort),
            services: Vec::new(),
            options: ClientOptions::default(),
            default: None,
            limits: None,
            env_limits: None,
            http: None,
            env_http: None,
            client_layers: ClientLayers::default(),
            server_layers: ServerLayers::default(),
            unencrypted: false,
            env_encryption: None,
            trace_sample: None,
            env_trace_sample: None,
        }
    }
}

impl NodeBuilder {
    /// A builder with default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the `CLUSTER_*` environment variables (see [`cluster_helper::Config`]), the
    /// server limits' `CLUSTER_RPC_MAX_*` ([`ServerLimits::ENV_VARS`]),
    /// `CLUSTER_HTTP_LISTEN` (see [`http_listen`](NodeBuilder::http_listen); `off` turns the
    /// endpoint off), `CLUSTER_RPC_ENCRYPTION` (`on` or `off`; see
    /// [`unencrypted_calls`](NodeBuilder::unencrypted_calls)) and `CLUSTER_TRACE_SAMPLE` (see
    /// [`trace_sample`](NodeBuilder::trace_sample)).
    ///
    /// # Errors
    ///
    /// A value that does not parse, naming the variable and what was expected.
    pub fn from_env(mut self) -> Result<Self, Error> {
        self.cluster = self.cluster.from_env()?;
        self.read_vars(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))?;
        Ok(self)
    }

    /// Reads easy-rpc's own variables (the server limits, the management endpoint, call
    /// encryption, trace sampling) through `var`, which looks one up by name.
    fn read_vars(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), Error> {
        if let Some(limits) = ServerLimits::from_vars(&var)? {
            self.env_limits = Some(limits);
        }
        if let Some(http) = parse_http_listen(var(HTTP_LISTEN_VAR))? {
            self.env_http = Some(http);
        }
        if let Some(encryption) = parse_encryption(var(ENCRYPTION_VAR))? {
            self.env_encryption = Some(encryption);
        }
        if let Some(ratio) = parse_trace_sample(var(TRACE_SAMPLE_VAR))? {
            self.env_trace_sample = Some(ratio);
        }
        Ok(())
    }

    /// Like [`from_env`](NodeBuilder::from_env), from the given variables instead of the
    /// process environment.
    ///
    /// ```
    /// let builder = easy_rpc::Node::builder()
    ///     .from_vars([("CLUSTER_RPC_MAX_FRAME", "16MiB"), ("CLUSTER_ROLES", "billing")])?;
    /// let e = easy_rpc::Node::builder()
    ///     .from_vars([("CLUSTER_RPC_MAX_PENDING_PER_IP", "lots")])
    ///     .unwrap_err();
    /// assert!(e.to_string().contains("CLUSTER_RPC_MAX_PENDING_PER_IP"));
    /// # drop(builder);
    /// # Ok::<(), easy_rpc::Error>(())
    /// ```
    pub fn from_vars<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, Error>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.read_vars(|name| {
            vars.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })?;
        self.cluster = self.cluster.from_vars(vars)?;
        Ok(self)
    }

    forward! {
        /// The cluster's name.
        fn cluster(name: impl AsRef<str>);
        /// The node's name (default: derived from the hostname).
        fn name(name: impl AsRef<str>);
        /// The roles the node starts with.
        fn roles<R: AsRef<str>>(roles: impl IntoIterator<Item = R>);
        /// Where peers might be: `host:port`, `dns:name:port`, `srv:_service._proto.name`.
        fn seeds<S: AsRef<str>>(seeds: impl IntoIterator<Item = S>);
        /// The cluster secret, as `easy-rpc keygen` prints it (32 random bytes in base64 or
        /// hex; see [`cluster_helper::Secret`]). A node does not start without one unless
        /// [`insecure`](NodeBuilder::insecure).
        fn secret(secret: impl AsRef<str>);
        /// The cluster secret, already parsed or generated.
        fn secret_key(secret: cluster_helper::Secret);
        /// The keyring: the first secret sends and proves, every one is accepted.
        fn secrets(secrets: impl IntoIterator<Item = cluster_helper::Secret>);
        /// Runs without a secret (anyone who can reach the node can join and call it; for
        /// local experiments only). Listens on loopback by default.
        fn insecure();
        /// How far a gossip packet's timestamp may be from this node's clock (the clock-skew
        /// allowance, default 10 s).
        fn gossip_max_packet_age(age: Duration);
        /// Where the node accepts RPC connections (default: the gossip port number,
        /// [`RpcListen::SamePort`]); [`RpcListen::Disabled`] for a node that only makes calls
        /// (it then cannot serve).
        fn rpc_listen(rpc: RpcListen);
        /// How often the node gossips.
        fn gossip_interval(interval: Duration);
        /// The phi-accrual threshold of the failure detector.
        fn phi_threshold(phi: f64);
        /// How many live peers each gossip round sends its digest to (1 to 16), instead of
        /// adapting it to the cluster's size.
        fn gossip_fanout(fanout: u32);
        /// How long a leaving node keeps announcing it leaves before it stops.
        fn leave_grace(grace: Duration);
        /// How long to wait for a peer before starting a new cluster alone.
        fn join_timeout(timeout: Duration);
        /// Bounds on DNS re-resolution (the records' TTL decides within them).
        fn dns_interval(min: Duration, max: Duration);
        /// The gossip (and RPC) listen address, e.g. `"0.0.0.0:7946"`; port 0 picks a free
        /// port. A host name is resolved by [`start`](NodeBuilder::start), without blocking.
        fn listen(addr: impl ToString);
        /// The gossip address peers use to reach this node (e.g. the pod IP).
        fn advertise(addr: impl ToString);
        /// The DNS server (`ip:port`, or an IP for port 53) for DNS seeds, instead of the
        /// system's.
        fn dns_server(addr: impl ToString);
    }

    /// The base configuration: the environment and the other setters apply over it. Its
    /// `services` are ignored: an easy-rpc node advertises exactly the services it serves
    /// ([`serve`](NodeBuilder::serve)), so that callers never pick it for one it does not.
    /// Its `rpc_listen` left at the default ([`RpcListen::Disabled`]) counts as unset: the
    /// node listens on its gossip port number; a node that only calls says so with
    /// [`rpc_listen`](NodeBuilder::rpc_listen) or `CLUSTER_RPC_LISTEN=off`.
    pub fn config(mut self, mut config: Config) -> Self {
        config.services.clear();
        self.cluster = self.cluster.config(config);
        self
    }

    /// Serves a service from the start (advertised with the node's first gossip state).
    pub fn serve(mut self, served: Served) -> Self {
        self.services.push(served);
        self
    }

    /// Settings of the calls this node makes.
    pub fn client_options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// Wraps each attempt of every call this node makes in a tower [`Layer`]: the attempt is
    /// a `tower::Service<`[`Call`]`>` (service, method, node, deadline, attempt number), so
    /// tower's own middleware applies (`ConcurrencyLimitLayer`, `LoadShedLayer`, `TimeoutLayer`,
    /// tracing) as well as a policy of your own. Without any, calls are sent directly, at no
    /// cost.
    ///
    /// - The stack is built **once**, when the node starts: a `ConcurrencyLimit` limits the
    ///   attempts in flight from the whole node. Each attempt uses a clone of the stack (so
    ///   the layer's service must be `Clone`; clones share the limit; each thread keeps one
    ///   ready clone and reuses it), waits for it to be ready and calls it. A service that is
    ///   not `Clone`, like tower's `RateLimit`, goes behind a
    ///   `BufferLayer` (`ServiceBuilder::new().buffer(n).rate_limit(..)`), as in any tower
    ///   stack shared by many callers.
    /// - Several calls nest in the order given: the first is the outermost (as in a
    ///   `tower::ServiceBuilder`).
    /// - Every target's attempts go through it: `any`, `by_key`, `to`, `to_any_of`, and each
    ///   node's attempt of `all`. A reroute or retry is a new attempt ([`Call::attempt`]).
    /// - An error of easy-rpc's passes through the layers unchanged (reroutes and retries still
    ///   see it); a layer's own error fails the call with
    ///   [`RpcError::Layer`](crate::RpcError::Layer), without sending it to another node.
    ///   An attempt held in the layers past its deadline fails the same way (not sent).
    ///
    /// ```
    /// use tower::limit::ConcurrencyLimitLayer;
    ///
    /// #[easy_rpc::service]
    /// pub trait Greeter {
    ///     async fn hello(name: String) -> String;
    /// }
    ///
    /// struct English;
    /// impl Greeter for English {
    ///     async fn hello(&self, name: String) -> String { format!("hello, {name}") }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), easy_rpc::Error> {
    /// let node = easy_rpc::Node::builder()
    ///     .cluster("docs-layers").name("greeter").listen("127.0.0.1:0")
    ///     .secret_key(easy_rpc::cluster_helper::Secret::generate())
    ///     .roles(["greeter"])
    ///     .serve(English.serve())
    ///     // At most 64 calls of this node in flight at once; the others wait their turn.
    ///     .client_layer(ConcurrencyLimitLayer::new(64))
    ///     .default_node(false)
    ///     .start().await?;
    /// node.ready().await;
    /// let calls = (0..200).map(|i| {
    ///     let greeter = node.any("greeter");
    ///     async move { greeter.hello(i.to_string()).await }
    /// });
    /// for greeting in futures::future::join_all(calls).await {
    ///     assert!(greeting?.starts_with("hello, "));
    /// }
    /// node.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn client_layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<CallService> + Send + Sync + 'static,
        L::Service: Service<Call, Response = CallResponse> + Clone + Send + Sync + 'static,
        <L::Service as Service<Call>>::Error: Into<BoxError>,
        <L::Service as Service<Call>>::Future: Send + 'static,
    {
        self.client_layers.push(layer);
        self
    }

    /// Wraps every handler of this node in a tower [`Layer`]: a request is a
    /// `tower::Service<`[`ServerCall`]`>` (service, method, deadline, the caller's address),
    /// for authorization, metrics, `ConcurrencyLimitLayer`, `LoadShedLayer`. Without any,
    /// handlers run directly, at no cost.
    ///
    /// - The stack is built once, when the node starts: its limits are the node's. Each
    ///   request clones it (the layer's service must be `Clone`; see
    ///   [`client_layer`](NodeBuilder::client_layer) for `RateLimit`).
    /// - Several calls nest in the order given, the first outermost.
    /// - The layers run after the node's own checks (leaving, expired, the connection's and
    ///   the node's caps) and inside the request's deadline.
    /// - A layer's error before the handler started answers the caller "not run"
    ///   ([`NotRunReason::Refused`](crate::NotRunReason::Refused): `any` and `by_key` send it
    ///   to another node); after, a failure of the method
    ///   ([`RpcError::Server`](crate::RpcError::Server)). The connection and every other
    ///   request go on.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), easy_rpc::Error> {
    /// use tower::ServiceBuilder;
    /// use tower::limit::ConcurrencyLimitLayer;
    /// use tower::load_shed::LoadShedLayer;
    ///
    /// let node = easy_rpc::Node::builder()
    ///     .cluster("docs-server-layers").name("billing-1").listen("127.0.0.1:0")
    ///     .secret_key(easy_rpc::cluster_helper::Secret::generate())
    ///     // At most 100 handlers at once; a request over that is refused at once ("not run").
    ///     .server_layer(
    ///         ServiceBuilder::new().layer(LoadShedLayer::new()).layer(ConcurrencyLimitLayer::new(100)),
    ///     )
    ///     .default_node(false)
    ///     .start().await?;
    /// node.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn server_layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<ServerService> + Send + Sync + 'static,
        L::Service: Service<ServerCall, Response = ServerResponse> + Clone + Send + Sync + 'static,
        <L::Service as Service<ServerCall>>::Error: Into<BoxError>,
        <L::Service as Service<ServerCall>>::Future: Send + 'static,
    {
        self.server_layers.push(layer);
        self
    }

    /// Bounds on what peers can make the node's server hold (connections, pending handshakes,
    /// frames, requests at once, bytes of partial frames). Set here, they win over the
    /// `CLUSTER_RPC_MAX_*` variables, which are then ignored (with a log line); unset, those
    /// variables apply over [`ServerLimits::default`]. [`start`](NodeBuilder::start) refuses
    /// invalid limits, naming the field.
    pub fn server_limits(mut self, limits: ServerLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Turns off the encryption of this node's RPC calls after the handshake, for networks
    /// that already encrypt and authenticate traffic between nodes (a service mesh with mTLS
    /// such as Istio or Linkerd, a WireGuard or IPsec overlay, a dedicated encrypted network),
    /// where sealing every frame again only costs CPU. `CLUSTER_RPC_ENCRYPTION=off` does the
    /// same from the environment (`on`, the default, keeps it; set here, this wins).
    ///
    /// - The handshake still runs in full: both nodes prove they hold the cluster key
    ///   (keyring and rotation as usual), so only members connect and call.
    /// - After it, tarpc's frames travel in clear on the TCP stream (the same framing and
    ///   frame limits): whoever can read or write the network between two nodes can read the
    ///   arguments and replies, and alter or inject calls. Use it only where the network
    ///   itself gives confidentiality and integrity.
    /// - Every node of the cluster must be set the same way. The choice is bound into the
    ///   handshake: a connection between nodes set differently is refused on both sides
    ///   ([`RejectReason::EncryptionDiffers`](crate::RejectReason::EncryptionDiffers), logged
    ///   by the serving node), and no one in the middle can turn a sealed connection into a
    ///   clear one.
    /// - Gossip stays sealed either way: this concerns RPC connections only.
    ///
    /// The node logs a warning at start when its calls are unencrypted
    /// ([`Node::encrypts_calls`] says so too).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), easy_rpc::Error> {
    /// let node = easy_rpc::Node::builder()
    ///     .cluster("docs-unencrypted").name("n1").listen("127.0.0.1:0")
    ///     .secret_key(easy_rpc::cluster_helper::Secret::generate())
    ///     .unencrypted_calls()
    ///     .default_node(false)
    ///     .start().await?;
    /// assert!(!node.encrypts_calls());
    /// node.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn unencrypted_calls(mut self) -> Self {
        self.unencrypted = true;
        self
    }

    /// The share of calls that get spans when a subscriber wants easy-rpc's spans (from 0 to
    /// 1; default 1, every call; also `CLUSTER_TRACE_SAMPLE`, which this overrides). A span
    /// per call costs more than the rest of a call's own work on the caller (see
    /// BENCHMARKS.md): at a high call rate, trace a sample.
    ///
    /// - A call this node makes gets its `call` span when drawn, at this ratio.
    /// - A call made while serving a request follows that request: it gets a span exactly
    ///   when the request has one, so that a sampled trace is whole, down every node it
    ///   reaches.
    /// - A request gets its `serve` span when its caller traced the call, or else (a caller
    ///   that traced it not, or traces nothing) when drawn at this node's ratio.
    ///
    /// Without a subscriber that wants easy-rpc's spans, nothing is drawn and no call has a
    /// span, whatever the ratio. With tarpc's own spans on too (a filter that keeps
    /// `tarpc=info`), tarpc makes one for every call whatever the ratio, and the serving node
    /// follows the sampling decision on it (OpenTelemetry's sampler's): leave them off to
    /// sample (easy-rpc's spans carry the trace across nodes without them).
    ///
    /// # Panics
    ///
    /// When `ratio` is not between 0 and 1 (a value the program chose; a bad
    /// `CLUSTER_TRACE_SAMPLE` is an error from [`from_env`](NodeBuilder::from_env) instead).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), easy_rpc::Error> {
    /// let node = easy_rpc::Node::builder()
    ///     .cluster("docs-sample").name("n1").listen("127.0.0.1:0")
    ///     .secret_key(easy_rpc::cluster_helper::Secret::generate())
    ///     .trace_sample(0.01)
    ///     .default_node(false)
    ///     .start().await?;
    /// assert_eq!(node.trace_sample(), 0.01);
    /// node.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn trace_sample(mut self, ratio: f64) -> Self {
        assert!(
            crate::trace::Sampler::new(ratio).is_some(),
            "trace_sample({ratio}): expected {TRACE_SAMPLE_EXPECTED}"
        );
        self.trace_sample = Some(ratio);
        self
    }

    /// Turns on the management HTTP endpoint at `addr` (port 0: any free port; see
    /// [`Node::http_addr`]): `GET /livez` (200 while the node runs), `/readyz` (200 when
    /// joined and serving; 503 while joining and from the moment shutdown begins), `/cluster`
    /// (the registry as this node sees it, JSON) and `/` (a page that shows it, live). Off by
    /// default; `CLUSTER_HTTP_LISTEN` turns it on from the environment (set here, this wins).
    ///
    /// The endpoint is not authenticated and shows the cluster's membership (names,
    /// addresses, roles, services) to whoever reaches it: bind it where only the pod's probes
    /// and the operators' network reach (see SECURITY.md). It bounds what a client can hold
    /// (connections, head size, time), so it cannot be used to hurt the node.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), easy_rpc::Error> {
    /// let node = easy_rpc::Node::builder()
    ///     .cluster("docs-http").name("n1").listen("127.0.0.1:0")
    ///     .secret_key(easy_rpc::cluster_helper::Secret::generate())
    ///     .http_listen("127.0.0.1:0".parse().unwrap())
    ///     .default_node(false)
    ///     .start().await?;
    /// let addr = node.http_addr().expect("on");
    /// assert_ne!(addr.port(), 0);
    /// node.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn http_listen(mut self, addr: SocketAddr) -> Self {
        self.http = Some(addr);
        self
    }

    /// Whether this node becomes the process's default node (for [`any`](crate::any),
    /// [`all`](crate::all), [`by_key`](crate::by_key)). Default: yes if no default node is
    /// set yet.
    pub fn default_node(mut self, default: bool) -> Self {
        self.default = Some(default);
        self
    }

    /// Starts the node: binds its port, joins the cluster, serves its services.
    ///
    /// Fails on a bad setting (naming it), a port that cannot be bound, invalid
    /// [`ClientOptions`] or [`ServerLimits`], or services given to a node without an RPC listener
    /// ([`Error::NoRpcListener`]).
    pub async fn start(self) -> Result<Node, Error> {
        self.options.validate()?;
        let limits = match (self.limits, self.env_limits) {
            (Some(code), env) => {
                if env.is_some() {
                    tracing::info!(
                        "CLUSTER_RPC_MAX_* variables ignored: the program sets the server limits"
                    );
                }
                code.validate(false)?;
                code
            }
            (None, Some(env)) => env,
            (None, None) => ServerLimits::default(),
        };
        let encryption = match (self.unencrypted, self.env_encryption) {
            (true, env) => {
                if env == Some(Encryption::On) {
                    tracing::info!(
                        "{ENCRYPTION_VAR}=on ignored: the program turns call encryption off"
                    );
                }
                Encryption::Off
            }
            (false, env) => env.unwrap_or_default(),
        };
        let sample = match (self.trace_sample, self.env_trace_sample) {
            (Some(code), env) => {
                if env.is_some() {
                    tracing::info!("{TRACE_SAMPLE_VAR} ignored: the program sets the ratio");
                }
                code
            }
            (None, env) => env.unwrap_or(1.0),
        };
        let sampler = crate::trace::Sampler::new(sample).expect("checked when set");
        let names: Vec<&'static str> = self.services.iter().map(Served::name).collect();
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(Error::DuplicateService { name });
            }
        }
        if let Some(service) = names.first()
            && !self.cluster.has_rpc_listener()
        {
            return Err(Error::NoRpcListener { service });
        }
        let http_addr = match (self.http, self.env_http) {
            (Some(addr), env) => {
                if env.is_some() {
                    tracing::info!(
                        "{HTTP_LISTEN_VAR} ignored: the program sets the management address"
                    );
                }
                Some(addr)
            }
            (None, env) => env.flatten(),
        };
        // Bound before joining, so that a port in use stops start-up before peers see the node.
        let http =
            match http_addr {
                Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(
                    |source| cluster_helper::Error::Bind {
                        what: "management HTTP (TCP)",
                        addr,
                        source,
                    },
                )?),
                None => None,
            };
        let cluster = self.cluster.services(&names).start().await?;
        let listener = cluster.take_rpc_listener();
        let make_default = self
            .default
            .unwrap_or_else(|| !crate::default_node::is_set());
        let layers = Layers {
            client: self.client_layers.build(),
            server: self.server_layers.build(),
        };
        let node = Node::start(
            cluster,
            listener,
            self.options,
            limits,
            self.services,
            http,
            layers,
            encryption,
            sampler,
        )?;
        if make_default {
            node.make_default();
        }
        Ok(node)
    }
}

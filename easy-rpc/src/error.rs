//! The errors of the crate: [`RpcError`] for a call and the reasons it carries
//! ([`RejectReason`], [`NotRunReason`]); [`Error`] for everything else, into which call errors
//! convert, so that one `main` can `?` both.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cluster_helper::NodeId;

/// The error type of a method that cannot fail on the server (its trait method returns a plain
/// `T`, not a `Result`): it has no values, so `RpcError<Never>::Remote` can never happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Never {}

impl fmt::Display for Never {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

impl std::error::Error for Never {}

/// Why a node refused a connection at the handshake. The connection is closed; the node keeps
/// serving everyone else.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum RejectReason {
    /// The node does not serve this service.
    UnknownService {
        /// The service that was asked for.
        service: String,
    },
    /// The node did not prove that it holds a key of ours, or could not open our first
    /// message: the secrets or the cluster names differ, or it is not an easy-rpc node. (The
    /// two are told apart by no one: a node tells a stranger nothing, not even its cluster
    /// name.)
    Unauthenticated,
    /// The two nodes speak different protocol versions.
    WrongVersion {
        /// Our protocol version.
        ours: u16,
        /// Theirs.
        theirs: u16,
    },
    /// The node is shutting down and takes no new connections.
    Leaving,
    /// The bytes received were not a handshake of this protocol.
    Malformed,
    /// The two nodes hold the same key but disagree on whether calls are encrypted: one of
    /// them opted out ([`NodeBuilder::unencrypted_calls`](crate::NodeBuilder::unencrypted_calls)
    /// or `CLUSTER_RPC_ENCRYPTION=off`) and the other did not. Set every node of the cluster
    /// the same way. Only a peer that proved it holds the key is told this; anyone else is
    /// [`Unauthenticated`](RejectReason::Unauthenticated).
    EncryptionDiffers {
        /// Whether the serving node encrypts its calls (the calling node then does not).
        server_encrypts: bool,
    },
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::UnknownService { service } => {
                write!(f, "it does not serve service {service:?}")
            }
            RejectReason::Unauthenticated => f.write_str(
                "the handshake failed: wrong secret or cluster name, or not an easy-rpc node",
            ),
            RejectReason::WrongVersion { ours, theirs } => {
                write!(f, "protocol versions differ (ours {ours}, theirs {theirs})")
            }
            RejectReason::Leaving => f.write_str("it is leaving the cluster"),
            RejectReason::Malformed => f.write_str("the handshake was malformed"),
            RejectReason::EncryptionDiffers { server_encrypts } => {
                let (server, client) = if *server_encrypts {
                    ("on", "off")
                } else {
                    ("off", "on")
                };
                write!(
                    f,
                    "call encryption differs: {server} on the serving node, {client} on the \
                     calling node (CLUSTER_RPC_ENCRYPTION / NodeBuilder::unencrypted_calls must \
                     be the same on every node)"
                )
            }
        }
    }
}

/// Why a server answered a request without running it. The request had no effect: the caller
/// may send it to another node, whatever the method.
///
/// On the wire a reason is a number (`Leaving` is 1), so that a reason added by a newer
/// version reaches an older node as [`NotRunReason::Unknown`], still a "not run" answer,
/// instead of a message it cannot decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotRunReason {
    /// The node is leaving the cluster: it finishes what it started and takes nothing new.
    Leaving,
    /// The connection already ran its maximum of requests at once
    /// ([`ServerLimits::max_concurrent_requests`](crate::ServerLimits::max_concurrent_requests)).
    Overloaded,
    /// The caller's deadline had passed before the node could start the request (it reached
    /// the node late, e.g. the node was stopped, or waited too long to start): it was
    /// dropped. The caller has already given up by then, so callers rarely see this.
    Expired,
    /// A layer around the node's handlers ([`NodeBuilder::server_layer`]) refused it before
    /// the handler started: an authorization check, a concurrency limit with load shedding,
    /// or any other policy of the serving node (it logs the layer's error).
    ///
    /// [`NodeBuilder::server_layer`]: crate::NodeBuilder::server_layer
    Refused,
    /// A reason this version does not know (sent by a newer node), by its wire number.
    Unknown(u16),
}

impl NotRunReason {
    /// The reason's number on the wire.
    fn code(self) -> u16 {
        match self {
            NotRunReason::Leaving => 1,
            NotRunReason::Overloaded => 2,
            NotRunReason::Expired => 3,
            NotRunReason::Refused => 4,
            NotRunReason::Unknown(code) => code,
        }
    }

    fn from_code(code: u16) -> Self {
        match code {
            1 => NotRunReason::Leaving,
            2 => NotRunReason::Overloaded,
            3 => NotRunReason::Expired,
            4 => NotRunReason::Refused,
            other => NotRunReason::Unknown(other),
        }
    }
}

impl serde::Serialize for NotRunReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u16(self.code())
    }
}

impl<'de> serde::Deserialize<'de> for NotRunReason {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u16::deserialize(deserializer).map(NotRunReason::from_code)
    }
}

impl fmt::Display for NotRunReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotRunReason::Leaving => f.write_str("it is leaving the cluster"),
            NotRunReason::Overloaded => {
                f.write_str("the connection runs its maximum of requests at once")
            }
            NotRunReason::Expired => {
                f.write_str("the caller's deadline passed before the request could start")
            }
            NotRunReason::Refused => f.write_str("a layer around its handlers refused it"),
            NotRunReason::Unknown(code) => {
                write!(f, "it did not run it (reason {code}, from a newer version)")
            }
        }
    }
}

/// What went wrong with a call. `E` is the method's own error type (from `Result<T, E>` in the
/// service trait), returned as [`RpcError::Remote`], never mixed with transport errors; methods
/// that return a plain `T` have `E = Never`.
///
/// Every variant that concerns a node names it, and says whether the request may have run:
/// [`never_reached_server`](RpcError::never_reached_server) is exactly what the runtime sends
/// to another node by itself. Underlying causes (an I/O error, tarpc's error, the codec's) are
/// kept and returned by [`source`](std::error::Error::source); they are held in an `Arc`, so
/// `RpcError<E>` is `Clone` when `E` is.
///
/// ```
/// use easy_rpc::RpcError;
/// let e: RpcError = RpcError::NoNodeForRole { role: "billing".into(), service: "Billing" };
/// assert_eq!(e.to_string(), "no serving node has role \"billing\" and serves Billing");
/// assert!(e.never_reached_server());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum RpcError<E = Never> {
    /// No easy-rpc node runs in this process to make the call: `easy_rpc::any/all/by_key`
    /// were called before a node started or after the default node shut down (`node: None`),
    /// or the call was made through a handle of a node that has shut down (`node: Some`).
    /// Nothing was sent.
    NotRunning {
        /// The node that has shut down, if the call was made through its handle.
        node: Option<NodeId>,
    },
    /// No serving node has the role and serves the service (right now). Nothing was sent.
    NoNodeForRole {
        /// The role asked for.
        role: String,
        /// The service asked for.
        service: &'static str,
    },
    /// None of the nodes a direct target names ([`Node::to`](crate::Node::to),
    /// [`Node::to_any_of`](crate::Node::to_any_of)) is a serving member that serves the
    /// service (right now): it is gone, has not joined yet, is leaving, or does not serve it.
    /// Nothing was sent.
    NodeNotFound {
        /// The node (or the nodes, comma-separated) as the target names them.
        node: String,
        /// The service asked for.
        service: &'static str,
    },
    /// The node could not be reached: the connection was refused, failed or timed out, the
    /// connection broke during the handshake, or it broke (or the node was declared down)
    /// before the request was written to it. The request was never sent (calls to `any` and
    /// `by_key` have already tried other nodes).
    Unreachable {
        /// The node.
        node: NodeId,
        /// The method.
        method: &'static str,
        /// What happened, in words.
        reason: String,
        /// The I/O error, if there was one (a timeout is an [`std::io::ErrorKind::TimedOut`]).
        source: Option<Arc<dyn StdError + Send + Sync>>,
    },
    /// The node refused the connection at the handshake (see [`RejectReason`]). The request
    /// was never sent.
    Rejected {
        /// The node.
        node: NodeId,
        /// Why.
        reason: RejectReason,
    },
    /// The node received the request and answered that it did not run it (see
    /// [`NotRunReason`]): it had no effect.
    NotRun {
        /// The node.
        node: NodeId,
        /// The method.
        method: &'static str,
        /// Why.
        reason: NotRunReason,
    },
    /// The call's deadline passed after the request was sent: it may have run (the server
    /// stops the method at the deadline).
    Timeout {
        /// The node the call was on.
        node: NodeId,
        /// The method.
        method: &'static str,
        /// The time the call had when it was sent.
        after: Duration,
    },
    /// The connection broke after the request was written to it (the node crashed, the
    /// network failed, or membership declared the node down while the call waited): it may
    /// have run.
    NodeDown {
        /// The node.
        node: NodeId,
        /// The method.
        method: &'static str,
        /// What the transport said.
        reason: String,
        /// The transport's error, if there was one.
        source: Option<Arc<dyn StdError + Send + Sync>>,
    },
    /// The method ran and returned its own error.
    Remote {
        /// The node that ran it.
        node: NodeId,
        /// The method's error.
        error: E,
    },
    /// A request or response could not be encoded or decoded (e.g. service definitions that
    /// differ across a rolling upgrade); the connection is closed. The request may have run.
    Codec {
        /// The node.
        node: NodeId,
        /// The method.
        method: &'static str,
        /// What the codec said.
        reason: String,
        /// The codec's error, if there was one.
        source: Option<Arc<dyn StdError + Send + Sync>>,
    },
    /// The method started on the server but did not finish (it panicked): it may have had
    /// effects.
    Server {
        /// The node.
        node: NodeId,
        /// The method.
        method: &'static str,
        /// What the server said.
        reason: String,
    },
    /// A client layer ([`NodeBuilder::client_layer`]) failed the attempt with its own error
    /// (the `source`): a refusal (tower's `LoadShed` `Overloaded`, a custom policy), its own
    /// timeout (tower's `Timeout` `Elapsed`), or the call's deadline passing while a layer
    /// held it (an [`std::io::ErrorKind::TimedOut`] I/O error). Errors of easy-rpc itself pass
    /// through the layers unchanged and are never this.
    ///
    /// `sent` says whether the request had been written to the connection: if not, it never
    /// reached a server ([`never_reached_server`](RpcError::never_reached_server)). Either
    /// way the call is not sent to another node by itself: a node's layers are the same for
    /// every node it calls.
    ///
    /// [`NodeBuilder::client_layer`]: crate::NodeBuilder::client_layer
    Layer {
        /// The node the attempt was for.
        node: NodeId,
        /// The method.
        method: &'static str,
        /// Whether the request had been written to the connection (it may have run).
        sent: bool,
        /// The layer's error.
        source: Arc<dyn StdError + Send + Sync>,
    },
}

impl<E> RpcError<E> {
    /// The method's own error, if that is what this is.
    pub fn remote(&self) -> Option<&E> {
        match self {
            RpcError::Remote { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The node this error concerns, if any.
    pub fn node(&self) -> Option<&NodeId> {
        match self {
            RpcError::NotRunning { node } => node.as_ref(),
            RpcError::NoNodeForRole { .. } | RpcError::NodeNotFound { .. } => None,
            RpcError::Unreachable { node, .. }
            | RpcError::Rejected { node, .. }
            | RpcError::NotRun { node, .. }
            | RpcError::Timeout { node, .. }
            | RpcError::NodeDown { node, .. }
            | RpcError::Remote { node, .. }
            | RpcError::Codec { node, .. }
            | RpcError::Server { node, .. }
            | RpcError::Layer { node, .. } => Some(node),
        }
    }

    /// Whether the call provably never reached the method on a server, so that sending it to
    /// another node cannot run it twice: [`NotRunning`](RpcError::NotRunning),
    /// [`NoNodeForRole`](RpcError::NoNodeForRole), [`NodeNotFound`](RpcError::NodeNotFound),
    /// [`Unreachable`](RpcError::Unreachable),
    /// [`Rejected`](RpcError::Rejected), [`NotRun`](RpcError::NotRun), and
    /// [`Layer`](RpcError::Layer) when not `sent`.
    ///
    /// These are exactly the failures that `any` and `by_key` send to another node by
    /// themselves (up to [`ClientOptions::reroutes`](crate::ClientOptions::reroutes)), except
    /// a client layer's refusal, which is returned at once; an error returned to the caller
    /// that says `true` means no node was left to try, the deadline passed, or a client layer
    /// refused the call.
    pub fn never_reached_server(&self) -> bool {
        matches!(
            self,
            RpcError::NotRunning { .. }
                | RpcError::NoNodeForRole { .. }
                | RpcError::NodeNotFound { .. }
                | RpcError::Unreachable { .. }
                | RpcError::Rejected { .. }
                | RpcError::NotRun { .. }
                | RpcError::Layer { sent: false, .. }
        )
    }

    /// Maps the method error type (e.g. to turn `RpcError<Never>` into `RpcError<MyError>`).
    pub fn map_remote<F>(self, f: impl FnOnce(E) -> F) -> RpcError<F> {
        match self {
            RpcError::NotRunning { node } => RpcError::NotRunning { node },
            RpcError::NoNodeForRole { role, service } => RpcError::NoNodeForRole { role, service },
            RpcError::NodeNotFound { node, service } => RpcError::NodeNotFound { node, service },
            RpcError::Unreachable {
                node,
                method,
                reason,
                source,
            } => RpcError::Unreachable {
                node,
                method,
                reason,
                source,
            },
            RpcError::Rejected { node, reason } => RpcError::Rejected { node, reason },
            RpcError::NotRun {
                node,
                method,
                reason,
            } => RpcError::NotRun {
                node,
                method,
                reason,
            },
            RpcError::Timeout {
                node,
                method,
                after,
            } => RpcError::Timeout {
                node,
                method,
                after,
            },
            RpcError::NodeDown {
                node,
                method,
                reason,
                source,
            } => RpcError::NodeDown {
                node,
                method,
                reason,
                source,
            },
            RpcError::Remote { node, error } => RpcError::Remote {
                node,
                error: f(error),
            },
            RpcError::Codec {
                node,
                method,
                reason,
                source,
            } => RpcError::Codec {
                node,
                method,
                reason,
                source,
            },
            RpcError::Server {
                node,
                method,
                reason,
            } => RpcError::Server {
                node,
                method,
                reason,
            },
            RpcError::Layer {
                node,
                method,
                sent,
                source,
            } => RpcError::Layer {
                node,
                method,
                sent,
                source,
            },
        }
    }
}

impl RpcError<Never> {
    /// As an error of a method whose error type is `E` (an `RpcError<Never>` has no
    /// [`Remote`](RpcError::Remote) variant to map).
    pub fn into_remote<E>(self) -> RpcError<E> {
        self.map_remote(|never| match never {})
    }
}

impl<E: fmt::Display> fmt::Display for RpcError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::NotRunning { node: None } => f.write_str(
                "no easy-rpc node is running in this process: the default node was never \
                 started or has shut down (start one with easy_rpc::Node::builder()...start())",
            ),
            RpcError::NotRunning { node: Some(node) } => {
                write!(f, "node {node} has shut down: it makes no more calls")
            }
            RpcError::NoNodeForRole { role, service } => {
                write!(f, "no serving node has role {role:?} and serves {service}")
            }
            RpcError::NodeNotFound { node, service } => {
                write!(f, "no serving node {node} serves {service}")
            }
            RpcError::Unreachable {
                node,
                method,
                reason,
                ..
            } => write!(f, "{method}: cannot reach {node}: {reason} (not sent)"),
            RpcError::Rejected { node, reason } => {
                write!(f, "{node} refused the connection: {reason}")
            }
            RpcError::NotRun {
                node,
                method,
                reason,
            } => write!(f, "{method} was not run by {node}: {reason}"),
            RpcError::Timeout {
                node,
                method,
                after,
            } => write!(f, "{method} on {node} timed out after {after:?}"),
            RpcError::NodeDown {
                node,
                method,
                reason,
                ..
            } => write!(f, "{method} on {node} failed: node down ({reason})"),
            RpcError::Remote { node, error } => write!(f, "{node} returned an error: {error}"),
            RpcError::Codec {
                node,
                method,
                reason,
                ..
            } => write!(f, "{method} on {node}: cannot encode or decode: {reason}"),
            RpcError::Server {
                node,
                method,
                reason,
            } => write!(f, "{method} on {node} failed on the server: {reason}"),
            RpcError::Layer {
                node,
                method,
                sent,
                source,
            } => {
                let sent = if *sent {
                    "after it was sent: it may have run"
                } else {
                    "not sent"
                };
                write!(
                    f,
                    "{method} to {node} failed in a client layer ({sent}): {source}"
                )
            }
        }
    }
}

impl<E: StdError + 'static> StdError for RpcError<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            RpcError::Unreachable { source, .. }
            | RpcError::NodeDown { source, .. }
            | RpcError::Codec { source, .. } => {
                source.as_deref().map(|e| e as &(dyn StdError + 'static))
            }
            RpcError::Remote { error, .. } => Some(error),
            RpcError::Layer { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

/// Everything that can go wrong in easy-rpc outside a call's own result: configuring and
/// starting a node, serving, changing roles, and (converted with `?`) any call error, so a
/// program needs one error type:
///
/// ```
/// use easy_rpc::Node;
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
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() -> Result<(), easy_rpc::Error> {
///     let node = Node::builder()
///         .cluster("docs-error").name("greeter").listen("127.0.0.1:0")
///         .secret_key(easy_rpc::cluster_helper::Secret::generate())
///         .roles(["greeter"])
///         .serve(English.serve())
///         .start().await?;                                     // a start-up error...
///     node.ready().await;
///     let greeting = node.any("greeter").hello("you".into()).await?; // ...or a call's
///     assert_eq!(greeting, "hello, you");
///     node.shutdown().await;
///     Ok(())
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Configuring, starting or changing the node's membership failed (a bad setting or
    /// environment variable, a socket that cannot be bound, a node that has shut down): see
    /// [`cluster_helper::Error`].
    Cluster(cluster_helper::Error),
    /// A setting of this crate is invalid (e.g. a zero [`ClientOptions`](crate::ClientOptions)
    /// timeout): [`start`](crate::NodeBuilder::start) refuses it.
    InvalidConfig {
        /// The setting, e.g. `ClientOptions::timeout`.
        setting: &'static str,
        /// The value given.
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// The node has no RPC listener (`CLUSTER_RPC_LISTEN=off`, or
    /// [`rpc_listen(RpcListen::Disabled)`](crate::NodeBuilder::rpc_listen)): it makes calls
    /// but cannot serve.
    NoRpcListener {
        /// The service it was asked to serve.
        service: &'static str,
    },
    /// Two services with the same wire name were given to one node: either the same service
    /// twice to the builder, or, to [`Node::serve`](crate::Node::serve), a service type other
    /// than the one already served under that name. A node serves one implementation per
    /// name, and callers find services by name.
    DuplicateService {
        /// The wire name.
        name: &'static str,
    },
    /// The RPC listener handed over by the cluster node could not be used.
    RpcListener {
        /// The I/O error.
        source: std::io::Error,
    },
    /// A call failed: the [`RpcError`], with the method's own error (if that is what it was)
    /// behind an `Arc` (downcast it, or match it before converting).
    Call(RpcError<Arc<dyn StdError + Send + Sync>>),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Cluster(e) => fmt::Display::fmt(e, f),
            Error::InvalidConfig {
                setting,
                value,
                expected,
            } => write!(f, "invalid {setting}: {value}: expected {expected}"),
            Error::NoRpcListener { service } => write!(
                f,
                "cannot serve {service}: this node has no RPC listener (CLUSTER_RPC_LISTEN=off); \
                 give it one (CLUSTER_RPC_LISTEN or NodeBuilder::rpc_listen) to serve"
            ),
            Error::DuplicateService { name } => write!(
                f,
                "two services named {name:?} on one node: a node serves one implementation per \
                 wire name (give a second service type its own name with \
                 #[easy_rpc::service(name = \"...\")])"
            ),
            Error::RpcListener { source } => write!(f, "cannot use the RPC listener: {source}"),
            Error::Call(e) => fmt::Display::fmt(e, f),
        }
    }
}

/// `source()` is transparent for [`Error::Cluster`] and [`Error::Call`] (the wrapped error's
/// own cause), and for a method's error it is that error itself, not the `Arc` holding it, so
/// that walking the chain finds (and `downcast_ref` recognises) the method's error type.
impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::Cluster(e) => e.source(),
            Error::RpcListener { source } => Some(source),
            Error::Call(RpcError::Remote { error, .. }) => Some(&**error),
            Error::Call(e) => e.source(),
            Error::InvalidConfig { .. }
            | Error::NoRpcListener { .. }
            | Error::DuplicateService { .. } => None,
        }
    }
}

impl From<cluster_helper::Error> for Error {
    fn from(e: cluster_helper::Error) -> Self {
        Error::Cluster(e)
    }
}

impl<E: StdError + Send + Sync + 'static> From<RpcError<E>> for Error {
    fn from(e: RpcError<E>) -> Self {
        Error::Call(e.map_remote(|e| Arc::new(e) as Arc<dyn StdError + Send + Sync>))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Overdrawn;

    impl fmt::Display for Overdrawn {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("account overdrawn")
        }
    }

    impl StdError for Overdrawn {}

    fn node() -> NodeId {
        NodeId::new("billing-1", 7).unwrap()
    }

    #[test]
    fn display_shows_the_methods_error_with_display_and_source_returns_it() {
        let e: RpcError<Overdrawn> = RpcError::Remote {
            node: node(),
            error: Overdrawn,
        };
        assert_eq!(
            e.to_string(),
            "billing-1#7 returned an error: account overdrawn"
        );
        let source = e.source().expect("the remote error");
        assert_eq!(source.to_string(), "account overdrawn");
        assert!(source.downcast_ref::<Overdrawn>().is_some());
        // Clone, because the method's error is.
        assert_eq!(e.clone().remote(), Some(&Overdrawn));
    }

    #[test]
    fn transport_causes_are_kept_and_survive_clone_and_map_remote() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e: RpcError = RpcError::Unreachable {
            node: node(),
            method: "charge",
            reason: "cannot connect".into(),
            source: Some(Arc::new(io)),
        };
        let e = e.clone().into_remote::<Overdrawn>();
        let io = e
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .expect("the I/O error");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(e.never_reached_server());
        assert_eq!(
            e.to_string(),
            "charge: cannot reach billing-1#7: cannot connect (not sent)"
        );
    }

    #[test]
    fn call_errors_convert_into_error_and_keep_their_source() {
        let e: RpcError<Overdrawn> = RpcError::Remote {
            node: node(),
            error: Overdrawn,
        };
        let e = Error::from(e);
        assert_eq!(
            e.to_string(),
            "billing-1#7 returned an error: account overdrawn"
        );
        match &e {
            Error::Call(RpcError::Remote { error, .. }) => {
                assert!(error.downcast_ref::<Overdrawn>().is_some());
            }
            other => panic!("{other:?}"),
        }
        let source = e.source().expect("the method's error is the source");
        assert!(
            source.downcast_ref::<Overdrawn>().is_some(),
            "walking the chain finds the method's error type itself: {source:?}"
        );
        let e: Error = RpcError::<Never>::NotRunning { node: None }.into();
        assert!(matches!(e, Error::Call(RpcError::NotRunning { .. })));
        let e: Error = cluster_helper::Error::ShutDown.into();
        assert_eq!(e.to_string(), "the node has shut down");
    }

    #[test]
    fn not_running_says_what_happened() {
        let e: RpcError = RpcError::NotRunning { node: None };
        assert!(
            e.to_string()
                .starts_with("no easy-rpc node is running in this process")
        );
        assert!(e.never_reached_server());
        let e: RpcError = RpcError::NotRunning { node: Some(node()) };
        assert_eq!(
            e.to_string(),
            "node billing-1#7 has shut down: it makes no more calls"
        );
        assert_eq!(e.node(), Some(&node()));
    }

    #[test]
    fn only_the_variants_that_prove_nothing_ran_say_so() {
        let n = node();
        let may_have_run: Vec<RpcError<Overdrawn>> = vec![
            RpcError::Timeout {
                node: n.clone(),
                method: "m",
                after: Duration::from_secs(1),
            },
            RpcError::NodeDown {
                node: n.clone(),
                method: "m",
                reason: "reset".into(),
                source: None,
            },
            RpcError::Remote {
                node: n.clone(),
                error: Overdrawn,
            },
            RpcError::Codec {
                node: n.clone(),
                method: "m",
                reason: "bad".into(),
                source: None,
            },
            RpcError::Server {
                node: n.clone(),
                method: "m",
                reason: "panicked".into(),
            },
        ];
        for e in may_have_run {
            assert!(!e.never_reached_server(), "{e}");
        }
        let never_ran: Vec<RpcError<Overdrawn>> = vec![
            RpcError::NotRunning { node: None },
            RpcError::NoNodeForRole {
                role: "r".into(),
                service: "S",
            },
            RpcError::Rejected {
                node: n.clone(),
                reason: RejectReason::Unauthenticated,
            },
            RpcError::NotRun {
                node: n,
                method: "m",
                reason: NotRunReason::Leaving,
            },
        ];
        for e in never_ran {
            assert!(e.never_reached_server(), "{e}");
        }
    }
}

//! The one error type of a call: [`RpcError`].

use std::fmt;
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
    /// The two nodes do not share the cluster secret.
    WrongSecret,
    /// The node belongs to another cluster.
    WrongCluster {
        /// The node's cluster.
        theirs: String,
    },
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
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::UnknownService { service } => {
                write!(f, "it does not serve service {service:?}")
            }
            RejectReason::WrongSecret => f.write_str("the cluster secrets differ"),
            RejectReason::WrongCluster { theirs } => {
                write!(f, "it belongs to another cluster ({theirs:?})")
            }
            RejectReason::WrongVersion { ours, theirs } => {
                write!(f, "protocol versions differ (ours {ours}, theirs {theirs})")
            }
            RejectReason::Leaving => f.write_str("it is leaving the cluster"),
            RejectReason::Malformed => f.write_str("the handshake was malformed"),
        }
    }
}

/// Why a server answered a request without running it. The request had no effect: the caller
/// may send it to another node, whatever the method.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum NotRunReason {
    /// The node is leaving the cluster: it finishes what it started and takes nothing new.
    Leaving,
}

impl fmt::Display for NotRunReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotRunReason::Leaving => f.write_str("it is leaving the cluster"),
        }
    }
}

/// What went wrong with a call. `E` is the method's own error type (from `Result<T, E>` in the
/// service trait), returned as [`RpcError::Remote`], never mixed with transport errors; methods
/// that return a plain `T` have `E = Never`.
///
/// Every variant that concerns a node names it, and `Display` says what happened:
///
/// ```
/// use easy_rpc::RpcError;
/// let e: RpcError = RpcError::NoNodeForRole { role: "billing".into(), service: "Billing" };
/// assert_eq!(e.to_string(), "no serving node has role \"billing\" and serves Billing");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum RpcError<E = Never> {
    /// No serving node has the role and serves the service (right now).
    NoNodeForRole {
        /// The role asked for.
        role: String,
        /// The service asked for.
        service: &'static str,
    },
    /// The call's deadline passed before an answer came.
    Timeout {
        /// The node the call was on, if it had been sent.
        node: Option<NodeId>,
        /// The method.
        method: &'static str,
        /// The deadline that was applied.
        after: Duration,
    },
    /// The node could not be reached, or the connection broke before the answer came.
    NodeDown {
        /// The node.
        node: NodeId,
        /// The method.
        method: &'static str,
        /// What the transport said.
        reason: String,
    },
    /// The node refused the connection at the handshake.
    Rejected {
        /// The node.
        node: NodeId,
        /// Why.
        reason: RejectReason,
    },
    /// The method ran and returned its own error.
    Remote {
        /// The node that ran it.
        node: NodeId,
        /// The method's error.
        error: E,
    },
    /// A request or response could not be encoded or decoded (e.g. incompatible service
    /// definitions across a rolling upgrade).
    Codec {
        /// The node.
        node: NodeId,
        /// The method.
        method: &'static str,
        /// What the codec said.
        reason: String,
    },
    /// The server could not run the method (it panicked, or it is overloaded).
    Server {
        /// The node.
        node: NodeId,
        /// The method.
        method: &'static str,
        /// What the server said.
        reason: String,
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
            RpcError::NoNodeForRole { .. } => None,
            RpcError::Timeout { node, .. } => node.as_ref(),
            RpcError::NodeDown { node, .. }
            | RpcError::Rejected { node, .. }
            | RpcError::Remote { node, .. }
            | RpcError::Codec { node, .. }
            | RpcError::Server { node, .. } => Some(node),
        }
    }

    /// Whether the call provably never reached the method on a server, so that sending it to
    /// another node cannot run it twice.
    pub fn never_reached_server(&self) -> bool {
        matches!(
            self,
            RpcError::Rejected { .. } | RpcError::NoNodeForRole { .. }
        )
    }

    /// Maps the method error type (e.g. to turn `RpcError<Never>` into `RpcError<MyError>`).
    pub fn map_remote<F>(self, f: impl FnOnce(E) -> F) -> RpcError<F> {
        match self {
            RpcError::NoNodeForRole { role, service } => RpcError::NoNodeForRole { role, service },
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
            } => RpcError::NodeDown {
                node,
                method,
                reason,
            },
            RpcError::Rejected { node, reason } => RpcError::Rejected { node, reason },
            RpcError::Remote { node, error } => RpcError::Remote {
                node,
                error: f(error),
            },
            RpcError::Codec {
                node,
                method,
                reason,
            } => RpcError::Codec {
                node,
                method,
                reason,
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
        }
    }
}

impl<E: fmt::Debug> fmt::Display for RpcError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::NoNodeForRole { role, service } => {
                write!(f, "no serving node has role {role:?} and serves {service}")
            }
            RpcError::Timeout {
                node: Some(node),
                method,
                after,
            } => write!(f, "{method} on {node} timed out after {after:?}"),
            RpcError::Timeout {
                node: None,
                method,
                after,
            } => write!(f, "{method} timed out after {after:?} before it was sent"),
            RpcError::NodeDown {
                node,
                method,
                reason,
            } => write!(f, "{method} on {node} failed: node down ({reason})"),
            RpcError::Rejected { node, reason } => {
                write!(f, "{node} refused the connection: {reason}")
            }
            RpcError::Remote { node, error } => write!(f, "{node} returned an error: {error:?}"),
            RpcError::Codec {
                node,
                method,
                reason,
            } => write!(f, "{method} on {node}: cannot encode or decode: {reason}"),
            RpcError::Server {
                node,
                method,
                reason,
            } => write!(f, "{method} on {node} failed on the server: {reason}"),
        }
    }
}

impl<E: fmt::Debug> std::error::Error for RpcError<E> {}

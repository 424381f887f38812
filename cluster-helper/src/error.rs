//! The one error type of this crate.

use std::net::SocketAddr;

/// Everything that can go wrong when configuring, starting or changing a [`Node`](crate::Node).
///
/// Configuration errors name the setting (the environment variable when the value came from the
/// environment) and say what was expected, so that a bad deployment stops at start-up with a
/// message an operator can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is malformed.
    #[error("invalid {setting}: {value:?}: expected {expected}")]
    InvalidConfig {
        /// The setting, e.g. `CLUSTER_SEEDS` or `listen address`.
        setting: String,
        /// The offending value as given.
        value: String,
        /// What a valid value looks like.
        expected: String,
    },

    /// A role name is empty, too long or contains characters that are not allowed.
    #[error("invalid role name {role:?}: {reason}")]
    InvalidRole {
        /// The rejected role name.
        role: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A node name is empty, too long or contains characters that are not allowed.
    #[error("invalid node name {name:?}: {reason}")]
    InvalidNodeName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A service name is empty, too long or contains characters that are not allowed.
    #[error("invalid service name {service:?}: {reason}")]
    InvalidService {
        /// The rejected service name.
        service: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A cluster secret is malformed or not random. The message says what is wrong and how to
    /// make a secret; it never contains the text given.
    #[error(
        "invalid {setting}: {reason}; expected 32 random bytes in base64 (44 characters) or hex \
         (64 digits): make one with `easy-rpc keygen` or `openssl rand -base64 32`"
    )]
    InvalidSecret {
        /// Where the secret came from, e.g. `CLUSTER_SECRET`, `CLUSTER_SECRET_FILE line 2` or
        /// `secret` (the builder's [`secret`](crate::NodeBuilder::secret)).
        setting: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The node was started without a cluster secret and without opting in to insecure mode.
    #[error(
        "no cluster secret: set CLUSTER_SECRET (or CLUSTER_SECRET_FILE, the path of a file \
         holding it) to the same secret on every node: 32 random bytes in base64 or hex; make \
         one with `easy-rpc keygen` or `openssl rand -base64 32` (in code: \
         NodeBuilder::secret). Only for a local experiment, CLUSTER_INSECURE=1 (or \
         NodeBuilder::insecure) runs without one, on loopback by default"
    )]
    MissingSecret,

    /// A change would give this node more roles or services than the documented limit
    /// ([`MAX_ROLES_PER_NODE`](crate::MAX_ROLES_PER_NODE),
    /// [`MAX_SERVICES_PER_NODE`](crate::MAX_SERVICES_PER_NODE)). Nothing was changed.
    #[error("too many {what}: {requested} would exceed the limit of {limit} per node")]
    TooMany {
        /// `"roles"` or `"services"`.
        what: &'static str,
        /// How many the node would have had.
        requested: usize,
        /// The limit.
        limit: usize,
    },

    /// The secret file named by `CLUSTER_SECRET_FILE` could not be read.
    #[error("cannot read CLUSTER_SECRET_FILE {path:?}: {source}")]
    SecretFile {
        /// The path that was given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A socket could not be bound.
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        /// Which socket: "gossip (UDP)" or "rpc (TCP)".
        what: &'static str,
        /// The address it tried.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A host name in an address setting (e.g. `CLUSTER_LISTEN=node-0.billing:7946`) could not
    /// be resolved when the node started.
    #[error("cannot resolve {setting} {value:?}: {source}")]
    Resolve {
        /// The setting, e.g. `CLUSTER_ADVERTISE` or `listen address`.
        setting: String,
        /// The address as configured.
        value: String,
        /// Why the lookup failed.
        source: std::io::Error,
    },

    /// The DNS resolver could not be built from the system configuration or the given server.
    #[error("cannot set up the DNS resolver: {0}")]
    Resolver(String),

    /// The gossip layer failed to start.
    #[error("cannot start gossip membership: {0}")]
    Membership(String),

    /// The node has been shut down; it cannot be changed any more.
    #[error("the node has shut down")]
    ShutDown,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::InvalidConfig`].
    pub(crate) fn config(
        setting: impl Into<String>,
        value: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        Error::InvalidConfig {
            setting: setting.into(),
            value: value.into(),
            expected: expected.into(),
        }
    }
}

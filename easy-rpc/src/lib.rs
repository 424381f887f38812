//! # easy-rpc
//!
//! Typed calls to **any** node that has a role, to **all** of them, or to **the node that owns
//! a key**, in a cluster whose members come and go. Nodes find each other and learn each
//! other's roles with [`cluster_helper`] (gossip, DNS discovery); calls go over pooled,
//! multiplexed tarpc connections, one port per node, each opened with a Noise handshake keyed
//! by the cluster secret (a node tells a stranger nothing) and encrypted and authenticated
//! after it, with keys fresh to the connection (unless every node opts out, on a network that
//! encrypts traffic itself: [`NodeBuilder::unencrypted_calls`]).
//!
//! - [`#[easy_rpc::service]`](service) on a trait generates the server side (`MyImpl.serve()`)
//!   and a client trait whose methods work on [`any`], [`all`] and [`by_key`] targets.
//! - [`Any`] balances over the role's serving nodes ([`Strategy`]: power of two choices by
//!   default), reroutes calls that never ran, retries idempotent ones after a lost connection.
//! - [`All`] fans out to every serving node, one result per node, each bound by the deadline.
//! - [`ByKey`] routes by rendezvous hashing: the same key to the same node, and only a
//!   departed or new node's keys move.
//! - Every call has a deadline (per call, per method, per node) that propagates into calls made
//!   while serving ([`context`]); dropping a call cancels it on the server.
//! - [`RpcError`] says what happened and on which node; a method's own error comes back typed
//!   as [`RpcError::Remote`].
//! - A management HTTP endpoint, off by default ([`NodeBuilder::http_listen`],
//!   `CLUSTER_HTTP_LISTEN`): `/livez`, `/readyz` for Kubernetes probes, `/cluster` (the
//!   registry as JSON) and a live page; the `easy-rpc` command line (`members`, `roles`,
//!   `watch`, `health`) reads it. Unauthenticated: keep it inside the pod's network.
//! - Metrics, always on: calls and requests per service, method and outcome, latency, in
//!   flight, reroutes, retries, connections, membership and gossip traffic, in the Prometheus
//!   text format at the management endpoint's `/metrics` ([`Node::metrics_text`]), or as a
//!   collector for a registry of the program's own ([`Node::metrics`], [`NodeMetrics`]).
//! - Logs through `tracing` that name the node, the service and the method, one line per
//!   failing method rather than per call; [`log::default_filter`] is the filter to start from.
//!
//! ```
//! use easy_rpc::{Node, RpcError};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! pub struct Receipt { pub cents: u64, pub node: String }
//! #[derive(Debug, Serialize, Deserialize)]
//! pub enum BillingError { ZeroAmount }
//! impl std::fmt::Display for BillingError {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         f.write_str("the amount must be positive")
//!     }
//! }
//! impl std::error::Error for BillingError {}
//!
//! #[easy_rpc::service]
//! pub trait Billing {
//!     /// Safe to run twice: callers may retry it on another node.
//!     #[easy_rpc(idempotent)]
//!     async fn balance(account: String) -> u64;
//!     async fn charge(account: String, cents: u64) -> Result<Receipt, BillingError>;
//! }
//!
//! struct BillingImpl(String);
//!
//! impl Billing for BillingImpl {
//!     async fn balance(&self, _account: String) -> u64 { 42 }
//!     async fn charge(&self, _account: String, cents: u64) -> Result<Receipt, BillingError> {
//!         if cents == 0 { return Err(BillingError::ZeroAmount) }
//!         Ok(Receipt { cents, node: self.0.clone() })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), easy_rpc::Error> {
//! // Every node of a cluster shares one secret: `easy-rpc keygen` makes one, and nodes read it
//! // from CLUSTER_SECRET (`.from_env()?`). Here both nodes run in one process.
//! let secret = easy_rpc::cluster_helper::Secret::generate();
//! // A node with role "billing" that serves Billing...
//! let server = Node::builder()
//!     .cluster("docs").name("billing-1").listen("127.0.0.1:0").secret_key(secret.clone())
//!     .roles(["billing"])
//!     .serve(BillingImpl("billing-1".into()).serve())
//!     .start().await?;
//! // ...and a node that calls it, knowing only a seed address, not who serves what.
//! let client = Node::builder()
//!     .cluster("docs").name("gateway").listen("127.0.0.1:0").secret_key(secret)
//!     .seeds([server.gossip_addr().to_string()])
//!     .start().await?;
//! client.make_default(); // easy_rpc::any/all/by_key use the process's default node
//! while client.nodes_with_role("billing").is_empty() {
//!     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//! }
//!
//! let receipt = easy_rpc::any("billing").charge("acct-1".into(), 500).await?;
//! assert_eq!(receipt.node, "billing-1");
//! for (node, balance) in easy_rpc::all("billing").balance("acct-1".into()).await? {
//!     assert_eq!(balance?, 42, "{node}");
//! }
//! let owner = easy_rpc::by_key("billing", "user-7").charge("acct-7".into(), 1).await?;
//! assert_eq!(owner.node, "billing-1");
//! match client.any("billing").charge("acct-1".into(), 0).await {
//!     Err(RpcError::Remote { error: BillingError::ZeroAmount, .. }) => {}
//!     other => panic!("{other:?}"),
//! }
//! client.shutdown().await;
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## Features
//!
//! - `test-util`: test hooks, not for production code: `Node::kill` (stop as a crash would),
//!   `Node::kill_membership` (stop only the gossip), and the raw handshake client; it enables
//!   `cluster-helper/test-util`.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod client;
mod codec;
pub mod context;
mod deadline;
mod default_node;
mod error;
mod handshake;
mod keyring;
mod layered;
mod link;
pub mod log;
mod management;
mod metrics;
mod node;
mod noise;
mod options;
mod reply;
mod runtime;
mod sealed;
mod server;
mod service;
mod target;
mod trace;

/// Entry points for the fuzz targets (feature `fuzzing`); not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;

pub use builder::NodeBuilder;
pub use client::{
    Call, CallFuture, CallResponse, CallService, Hedge, HedgeStats, KeyHasher, RouteKey,
};
pub use cluster_helper::{self, NodeId, NodeRef};
pub use default_node::{all, any, by_key, to, to_any_of};
pub use easy_rpc_macros::service;
pub use error::{Error, Never, NotRunReason, RejectReason, RpcError};
pub use handshake::PROTOCOL_VERSION;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub use metrics::ScrapeFixture;
pub use metrics::{MAX_ROLE_LABELS, NodeMetrics, OTHER_ROLES};
pub use node::Node;
pub use options::{ClientOptions, Strategy};
/// The metrics library whose [`Collector`](prometheus_client::collector::Collector) and
/// [`Registry`](prometheus_client::registry::Registry) [`NodeMetrics`] works with (this
/// version, re-exported so that a program uses the same).
pub use prometheus_client;
pub use server::{
    RefusedConnections, Served, ServerCall, ServerFuture, ServerLimits, ServerResponse,
    ServerService, ServerStats,
};
pub use service::{Handler, MethodInfo, ServiceDef};
pub use target::{All, AllResults, Any, ByKey, CallResult, Target, To};

/// What generated code needs; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use ::serde;
    pub use ::std::{boxed::Box, string::String, sync::Arc, vec::Vec};
    pub use ::tarpc;

    /// What the RPC pre-shared keys are derived for from the cluster secret (with
    /// `cluster_helper::ClusterKey::derive`), for protocol conformance tests.
    #[cfg(feature = "test-util")]
    pub const RPC_KEY_PURPOSE: &str = crate::keyring::RPC_KEY_PURPOSE;

    /// Runs the client side of the handshake on `stream` with the pre-shared `key` (for
    /// protocol conformance tests); the sealed connection it opens is dropped.
    #[cfg(feature = "test-util")]
    pub async fn handshake_client(
        stream: &mut ::tokio::net::TcpStream,
        key: &[u8; 32],
        service: &str,
    ) -> Result<(), Option<crate::RejectReason>> {
        crate::handshake::client(stream, key, service, crate::link::Encryption::On)
            .await
            .map(drop)
            .map_err(|e| match e {
                crate::handshake::HandshakeError::Rejected(r) => Some(r),
                crate::handshake::HandshakeError::Io(_) => None,
            })
    }

    /// Like [`handshake_client`], but keeps the connection: what is written to the stream it
    /// returns is sealed as a real client's frames are (for tests that send raw frames as an
    /// authenticated peer).
    #[cfg(feature = "test-util")]
    pub async fn handshake_sealed(
        stream: ::tokio::net::TcpStream,
        key: &[u8; 32],
        service: &str,
    ) -> Result<
        impl ::tokio::io::AsyncRead + ::tokio::io::AsyncWrite + Unpin + Send + use<>,
        Option<crate::RejectReason>,
    > {
        crate::handshake::client(stream, key, service, crate::link::Encryption::On)
            .await
            .map_err(|e| match e {
                crate::handshake::HandshakeError::Rejected(r) => Some(r),
                crate::handshake::HandshakeError::Io(_) => None,
            })
    }

    /// The server side of the handshake on `stream` with the pre-shared `key`, accepting any
    /// service: the stream it returns seals every frame as a node's connections do. For the
    /// benchmark's baseline of plain tarpc over the same sealed stream (what easy-rpc's calls
    /// cost beyond the encryption every call pays).
    #[cfg(feature = "test-util")]
    pub async fn handshake_accept(
        stream: ::tokio::net::TcpStream,
        key: &[u8; 32],
    ) -> Result<
        impl ::tokio::io::AsyncRead + ::tokio::io::AsyncWrite + Unpin + Send + use<>,
        Option<crate::RejectReason>,
    > {
        crate::handshake::server(
            stream,
            std::slice::from_ref(key),
            crate::link::Encryption::On,
            |_| crate::handshake::Admission::Accept,
        )
        .await
        .map(|(_, sealed)| sealed)
        .map_err(|e| match e {
            crate::handshake::HandshakeError::Rejected(r) => Some(r),
            crate::handshake::HandshakeError::Io(_) => None,
        })
    }
}

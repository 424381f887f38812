//! # easy-rpc
//!
//! Typed calls to **any** node that has a role, to **all** of them, or to **the node that owns
//! a key**, in a cluster whose members come and go. Nodes find each other and their roles with
//! [`cluster_helper`]; calls go over pooled, multiplexed tarpc connections, one port per node.
//!
//! ```ignore
//! #[easy_rpc::service]
//! pub trait Billing {
//!     #[easy_rpc(idempotent)]
//!     async fn balance(account: String) -> u64;
//!     async fn charge(account: String, cents: u64) -> Result<Receipt, BillingError>;
//! }
//!
//! let node = easy_rpc::Node::builder().from_env()?.roles(["billing"])
//!     .serve(BillingImpl.serve()).start().await?;
//! let receipt = easy_rpc::any("billing").charge("acct-1".into(), 500).await?;
//! let balances = easy_rpc::all("billing").balance("acct-1".into()).await;
//! ```

mod client;
mod codec;
pub mod context;
mod error;
mod handshake;
mod node;
mod options;
mod server;
mod service;
mod target;

pub use cluster_helper::{self, NodeId};
pub use easy_rpc_macros::service;
pub use error::{Never, RejectReason, RpcError};
pub use handshake::PROTOCOL_VERSION;
pub use node::{Node, NodeBuilder, all, any, by_key};
pub use options::{ClientOptions, Strategy};
pub use service::{Handler, MethodInfo, Served, ServiceDef};
pub use target::{All, AllResults, Any, ByKey, CallResult, Target};

/// What generated code needs; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use ::serde;
    pub use ::std::{boxed::Box, string::String, sync::Arc, vec::Vec};
    pub use ::tarpc;

    /// Runs the client side of the handshake on `stream` (for protocol conformance tests).
    pub async fn handshake_client(
        stream: &mut ::tokio::net::TcpStream,
        key: &[u8; 32],
        cluster: &str,
        service: &str,
    ) -> Result<(), Option<crate::RejectReason>> {
        crate::handshake::client(stream, key, cluster, service)
            .await
            .map_err(|e| match e {
                crate::handshake::HandshakeError::Rejected(r) => Some(r),
                crate::handshake::HandshakeError::Io(_) => None,
            })
    }
}

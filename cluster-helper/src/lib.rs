//! # cluster-helper
//!
//! Every node of a cluster keeps a local, always-current registry of which nodes have which
//! roles. Lookups are local reads that cost nanoseconds; changes (a node joining, leaving,
//! crashing, gaining or losing a role) reach every node within about a second.
//!
//! - **Identity**: a [`NodeId`] is a name plus an incarnation, never an IP address. A node
//!   restarted at a new address is a new incarnation; the old one leaves every registry.
//! - **Roles**: set at start, changed at runtime with [`Node::add_role`] / [`Node::remove_role`]
//!   or as one atomic batch ([`Node::add_roles`], [`Node::remove_roles`], [`Node::set_roles`]);
//!   a change is visible in the node's own registry when the call returns.
//! - **Discovery**: static seeds, DNS A/AAAA (a Kubernetes headless service) and SRV records,
//!   re-resolved as their TTL says ([`Seed`]).
//! - **Membership**: scuttlebutt gossip with phi-accrual failure detection (chitchat); every
//!   UDP packet authenticated and encrypted with a key derived from the cluster secret, and
//!   refused when it is replayed or older than a few seconds.
//! - **Secrets**: a node needs a [`Secret`] of 32 random bytes (`CLUSTER_SECRET`, made by
//!   `easy-rpc keygen`) unless it opts in to insecure mode; a keyring of several secrets
//!   rotates keys without downtime ([`Node::set_secrets`]).
//! - **Registry**: [`Registry::nodes_with_role`], [`Registry::roles_of`] (by id or name),
//!   [`Registry::member_by_name`], [`Registry::members`], [`Registry::events`] (node and role
//!   events, see [`Events`]), [`Node::ready`].
//! - **tower**: [`RoleDiscover`] turns a role's nodes into a tower `Discover` stream (feature
//!   `tower`, on by default).
//! - **Leaving**: [`Node::shutdown`] announces `leaving` (peers stop picking the node at once)
//!   before stopping; a crashed node is dropped by failure detection (about 2-3 s by default).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), cluster_helper::Error> {
//! use cluster_helper::{Node, Secret};
//!
//! // Every node of a cluster shares one secret: `easy-rpc keygen` makes one, and a node reads
//! // it from CLUSTER_SECRET (`.from_env()?`). Here both nodes run in one process.
//! let secret = Secret::generate();
//! let first = Node::builder()
//!     .cluster("example").name("a").roles(["billing"]).listen("127.0.0.1:0")
//!     .secret_key(secret.clone())
//!     .start().await?;
//! let second = Node::builder()
//!     .cluster("example").name("b").roles(["audit"]).listen("127.0.0.1:0")
//!     .secret_key(secret)
//!     .seeds([first.gossip_addr().to_string()])
//!     .start().await?;
//! second.ready().await;
//!
//! // Wait until the first node's billing role is visible from the second node.
//! let mut watch = second.registry().watch();
//! while second.nodes_with_role("billing").is_empty() {
//!     watch.changed().await.unwrap();
//! }
//! assert_eq!(second.nodes_with_role("billing")[0].id, *first.id());
//!
//! first.shutdown().await;
//! second.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## Configuration
//!
//! [`NodeBuilder`] takes every setting from code, from the `CLUSTER_*` environment variables
//! ([`NodeBuilder::from_env`], listed in [`ENV_VARS`]) or from a [`Config`]. Values set in code
//! win over the environment whatever the order of the calls, and both win over the `Config`;
//! roles, services and seeds are merged from all of them. The node logs each environment value
//! the program overrode. Setters never block: host names in addresses ([`Address`]) are resolved
//! when the node starts, and the first invalid value is returned by [`NodeBuilder::start`].
//!
//! ## Features
//!
//! - `tower` (default): [`RoleDiscover`], the serving nodes of a role as a
//!   `tower::discover::Discover`, so that tower's own balancer (`tower::balance::p2c::Balance`)
//!   spreads any tower service (a hyper, tonic or axum client) over them. On by default because
//!   it costs little (tower with only its `discover` feature, which easy-rpc, tonic, axum and
//!   hyper users already build) and is what a program without easy-rpc needs to balance over
//!   the registry; `default-features = false` leaves it out.
//! - `test-util`: test hooks, not for production code: `Node::kill` (stop as a crash would,
//!   without leaving) and `synthetic_registry` (a registry without a cluster, for benchmarks).
//! - `memory-transport`: [`MemoryNetwork`], an in-process datagram network that nodes' gossip
//!   runs over instead of UDP ([`NodeBuilder::memory_network`]), sealed and checked as over
//!   UDP: for benchmarks and tests with many nodes in one process; not a production transport.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod address;
mod builder;
mod config;
#[cfg(feature = "tower")]
mod discover;
mod discovery;
mod env;
mod error;
mod id;
mod identity;
mod keyring;
mod local;
mod member;
mod membership;
#[cfg(feature = "memory-transport")]
mod memory;
mod node;
mod registry;
mod replay;
mod secret;
mod seed;
mod settings;
mod signal;
mod sockets;
mod stats;
mod transport;

/// Entry points for the fuzz targets (feature `fuzzing`); not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;

pub use address::Address;
pub use builder::NodeBuilder;
pub use config::{Config, DEFAULT_PORT, ENV_VARS, RpcListen};
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use discover::RoleDiscover;
pub use error::{Error, Result};
pub use id::{
    MAX_NODE_NAME_LEN, MAX_ROLE_LEN, MAX_ROLES_PER_NODE, MAX_SERVICE_LEN, MAX_SERVICES_PER_NODE,
    NodeId, NodeRef, Role, ServiceName,
};
pub use keyring::KeySource;
pub use member::{Member, MemberRef, NodeStatus};
#[cfg(feature = "memory-transport")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory-transport")))]
pub use memory::MemoryNetwork;
pub use node::Node;
#[cfg(feature = "test-util")]
pub use registry::synthetic_registry;
pub use registry::{ClusterEvent, Events, EventsError, Nodes, Registry, Snapshot, Snapshots};
pub use secret::{SECRET_LEN, Secret};
pub use seed::Seed;
pub use signal::shutdown_signal;
pub use stats::GossipStats;
pub use transport::ClusterKey;

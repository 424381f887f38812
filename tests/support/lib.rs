//! Test support.
//!
//! - [`browser`]: headless `chromium` in real time, its DOM read over the DevTools protocol.
//! - [`chain`]: the services of a call chain `gateway -> billing -> audit`, for trace tests.
//! - [`churn`]: the fault suite's service, and load that counts every outcome.
//! - [`cluster`]: starting test nodes on loopback and waiting for conditions.
//! - [`http`]: a raw HTTP/1.1 client for the management endpoint.
//! - [`process`]: nodes as real OS processes (the `cluster_node` binary).
//! - [`netns`]: test hosts in network namespaces, for partitions and lossy, slow links.
//! - [`netem`]: the user-space switch that delays, jitters and drops frames between hosts.
//! - [`dns`]: a real, in-process DNS server on loopback whose records tests can change (the
//!   `easy-rpc-test-dns` crate).

pub mod browser;
pub mod chain;
pub mod churn;
pub mod cluster;
pub mod http;
pub mod netem;
pub mod netns;
pub mod process;

pub use cluster::{OTHER_SECRET, TEST_SECRET};
pub use easy_rpc_test_dns as dns;

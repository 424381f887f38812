//! Test support.
//!
//! - [`churn`]: the fault suite's service, and load that counts every outcome.
//! - [`cluster`]: starting test nodes on loopback and waiting for conditions.
//! - [`process`]: nodes as real OS processes (the `cluster_node` binary).
//! - [`netns`]: test hosts in network namespaces, for partitions.
//! - [`dns`]: a real, in-process DNS server on loopback whose records tests can change.

pub mod churn;
pub mod cluster;
pub mod dns;
pub mod netns;
pub mod process;

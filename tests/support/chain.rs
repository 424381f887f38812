//! A call chain over three services for the trace tests: a gateway calls `billing`, whose
//! handler calls `audit` through the billing node's own handle.

use std::sync::{Arc, OnceLock};

use easy_rpc::Node;

/// The middle of the chain.
#[easy_rpc::service]
pub trait Billing {
    /// Charges `cents`: `audit`'s answer plus one.
    async fn charge(cents: u64) -> u64;
}

/// The end of the chain.
#[easy_rpc::service]
pub trait Audit {
    /// Records `cents`: ten times them.
    async fn record(cents: u64) -> u64;
}

/// Charges by asking `audit` through the billing node's own handle, set once it started.
#[derive(Debug)]
pub struct BillingImpl {
    /// The billing node, set after it started.
    pub node: Arc<OnceLock<Node>>,
}

impl Billing for BillingImpl {
    async fn charge(&self, cents: u64) -> u64 {
        let node = self.node.get().expect("the billing node started");
        node.any("audit")
            .record(cents)
            .await
            .expect("audit answers")
            + 1
    }
}

/// Records by answering ten times the amount.
#[derive(Debug)]
pub struct AuditImpl;

impl Audit for AuditImpl {
    async fn record(&self, cents: u64) -> u64 {
        cents * 10
    }
}

/// Starts `audit-1` (role `audit`), `billing-1` (role `billing`) and `gateway-1` in `cluster`
/// on loopback, each builder first passed through its own function (`audit`, `billing`,
/// `gateway`), and waits until the gateway sees billing and billing sees audit. Returns the
/// gateway, billing and audit nodes.
pub async fn start(
    cluster: &str,
    audit: impl FnOnce(easy_rpc::NodeBuilder) -> easy_rpc::NodeBuilder,
    billing: impl FnOnce(easy_rpc::NodeBuilder) -> easy_rpc::NodeBuilder,
    gateway: impl FnOnce(easy_rpc::NodeBuilder) -> easy_rpc::NodeBuilder,
) -> (Node, Node, Node) {
    use crate::cluster::{rpc_builder, wait_until};
    let audit = audit(rpc_builder(cluster, "audit-1"))
        .roles(["audit"])
        .serve(AuditImpl.serve())
        .start()
        .await
        .expect("audit starts");
    let seed = audit.gossip_addr().to_string();
    let slot = Arc::new(OnceLock::new());
    let billing = billing(rpc_builder(cluster, "billing-1"))
        .roles(["billing"])
        .seeds([seed.clone()])
        .serve(BillingImpl { node: slot.clone() }.serve())
        .start()
        .await
        .expect("billing starts");
    slot.set(billing.clone()).expect("set once");
    let gateway = gateway(rpc_builder(cluster, "gateway-1"))
        .seeds([seed])
        .start()
        .await
        .expect("the gateway starts");
    wait_until(
        std::time::Duration::from_secs(15),
        "the gateway sees billing and billing sees audit",
        || {
            !gateway.nodes_with_role("billing").is_empty()
                && !billing.nodes_with_role("audit").is_empty()
        },
    )
    .await;
    (gateway, billing, audit)
}

//! A client node: finds the billing nodes through the cluster (no addresses in the code),
//! charges a few accounts through `any`, reads every billing node's view through `all`, shows
//! a typed application error, and exits.
//!
//! ```text
//! CLUSTER_SEEDS=127.0.0.1:7946 cargo run --example billing_client
//! ```
//!
//! Without `CLUSTER_LISTEN` it listens on 127.0.0.1 on a free port.

use std::time::Duration;

use easy_rpc::{Node, RpcError};
use easy_rpc_examples::init_logs;
use easy_rpc_examples::services::{BillingClient, BillingError};

#[tokio::main]
async fn main() {
    init_logs();
    match run().await {
        Ok(()) => {}
        Err(e) => {
            eprintln!("billing_client: {e}");
            std::process::exit(1);
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let node = Node::builder()
        .cluster("billing-example")
        .name("billing-client")
        .listen("127.0.0.1:0")
        // The secret comes from CLUSTER_SECRET (or CLUSTER_SECRET_FILE): the server's.
        .from_env()?
        .start()
        .await?;
    // Wait (bounded) until a billing node is known.
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        let mut watch = node.registry().watch();
        while node.nodes_with_role("billing").is_empty() {
            if watch.changed().await.is_err() {
                break;
            }
        }
    })
    .await;
    if found.is_err() {
        return Err(
            "no billing node found within 10 s (is billing_server running? CLUSTER_SEEDS?)".into(),
        );
    }
    for (account, cents) in [("acct-1", 500), ("acct-2", 1_200), ("acct-1", 300)] {
        let receipt = easy_rpc::any("billing")
            .charge(account.into(), cents)
            .await?;
        println!(
            "charged {} {} cents on {}",
            receipt.account, receipt.cents, receipt.node
        );
    }
    for (node_id, balance) in easy_rpc::all("billing").balance("acct-1".into()).await? {
        match balance {
            Ok(cents) => println!("{node_id}: acct-1 balance {cents}"),
            Err(e) => println!("{node_id}: {e}"),
        }
    }
    match easy_rpc::any("billing")
        .charge("acct-1".into(), 1_000_000)
        .await
    {
        Err(RpcError::Remote {
            node,
            error: BillingError::OverLimit { limit },
        }) => println!("{node} refused the charge: over the limit of {limit} cents"),
        other => return Err(format!("expected OverLimit, got {other:?}").into()),
    }
    node.shutdown().await;
    Ok(())
}

//! A billing node: serves the `Billing` service under role `billing` until SIGTERM/Ctrl-C.
//!
//! Both nodes need the cluster's secret in `CLUSTER_SECRET`: make one, once, and give the same
//! value to both terminals.
//!
//! Terminal 1:
//! ```text
//! export CLUSTER_SECRET=$(cargo run -q -p easy-rpc-cli -- keygen)   # or: openssl rand -base64 32
//! echo $CLUSTER_SECRET
//! cargo run --example billing_server
//! ```
//! Terminal 2:
//! ```text
//! export CLUSTER_SECRET=<the value printed in terminal 1>
//! CLUSTER_SEEDS=127.0.0.1:7946 cargo run --example billing_client
//! ```
//!
//! Configured from `CLUSTER_*` like any node; without `CLUSTER_LISTEN` it listens on
//! 127.0.0.1:7946 (gossip UDP and RPC TCP). Without a secret it stops, saying how to make one.

use easy_rpc::Node;
use easy_rpc_examples::impls::BillingImpl;
use easy_rpc_examples::init_logs;
use easy_rpc_examples::services::Billing;

#[tokio::main]
async fn main() {
    init_logs();
    if let Err(e) = run().await {
        eprintln!("billing_server: {e}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), easy_rpc::Error> {
    let name = std::env::var("CLUSTER_NODE_NAME").unwrap_or_else(|_| "billing-server".into());
    let node = Node::builder()
        .cluster("billing-example")
        .name(&name)
        .listen("127.0.0.1:7946")
        // The secret comes from CLUSTER_SECRET (or CLUSTER_SECRET_FILE).
        .from_env()?
        .roles(["billing"])
        .serve(BillingImpl::new(&name).serve())
        .start()
        .await?;
    println!(
        "billing server {} serving Billing; gossip {} rpc {}",
        node.id(),
        node.gossip_addr(),
        node.rpc_addr().map_or("-".into(), |a| a.to_string())
    );
    node.run_until_shutdown().await?;
    println!("billing server left the cluster");
    Ok(())
}

//! A node serving the fault suite's `Work` service, as its own OS process, configured from
//! `CLUSTER_*`. Prints `STARTED <node-id> <gossip-addr>`, then `EXEC <id>` for every
//! non-idempotent call it runs, and `LEFT` after a graceful leave (SIGTERM).

use easy_rpc::Node;
use easy_rpc_tests::churn::{Work, WorkImpl};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    easy_rpc_tests::cluster::init_logs();
    let name = std::env::var("CLUSTER_NODE_NAME").unwrap_or_else(|_| "work".into());
    let node = match Node::builder().from_env() {
        Ok(b) => b.serve(WorkImpl { name }.serve()).start().await,
        Err(e) => Err(e),
    };
    let node = match node {
        Ok(n) => n,
        Err(e) => {
            eprintln!("rpc_node: {e}");
            std::process::exit(2);
        }
    };
    println!("STARTED {} {}", node.id(), node.gossip_addr());
    let _ = node.run_until_shutdown().await;
    println!("LEFT");
}

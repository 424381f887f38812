//! A node serving the fault suite's `Work` service, as its own OS process, configured from
//! `CLUSTER_*`. Prints `STARTED <node-id> <gossip-addr>` (and `HTTP <addr>` if its management
//! endpoint is on, `CLUSTER_HTTP_LISTEN`), then `EXEC <id> <unix-ms>` for every
//! non-idempotent call it runs, and `LEFT` after a graceful leave (SIGTERM). With
//! `RPC_NODE_STATS_MS=<n>` it also prints its server's counters every `n` ms:
//! `STATS connections=.. pending=.. open=.. refused_conns=.. refused_pending=..
//! refused_per_ip=.. refused_fds=.. too_large=.. over_budget=.. buffered=.. max_connections=..
//! expired=..`.

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
    if let Some(http) = node.http_addr() {
        println!("HTTP {http}");
    }
    if let Some(ms) = std::env::var("RPC_NODE_STATS_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let node = node.clone();
        tokio::spawn(async move {
            loop {
                let s = node.server_stats();
                println!(
                    "STATS connections={} pending={} open={} refused_conns={} refused_pending={} \
                     refused_per_ip={} refused_fds={} too_large={} over_budget={} buffered={} \
                     max_connections={} expired={}",
                    s.connections,
                    s.pending_handshakes,
                    s.open,
                    s.refused.max_connections,
                    s.refused.pending_handshakes,
                    s.refused.pending_per_ip,
                    s.refused.descriptors,
                    s.frames_too_large,
                    s.frames_over_budget,
                    s.buffered_bytes,
                    s.max_connections,
                    s.expired_requests,
                );
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
        });
    }
    let _ = node.run_until_shutdown().await;
    println!("LEFT");
}

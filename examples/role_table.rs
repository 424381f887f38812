//! Starts one node from the `CLUSTER_*` environment and prints the live role table each time
//! it changes, until SIGTERM/Ctrl-C (then it leaves gracefully).
//!
//! ```text
//! export CLUSTER_SECRET=$(cargo run -q -p easy-rpc-cli -- keygen)
//! CLUSTER_ROLES=billing CLUSTER_LISTEN=127.0.0.1:7946 cargo run --example role_table
//! CLUSTER_ROLES=audit CLUSTER_LISTEN=127.0.0.1:7947 CLUSTER_SEEDS=127.0.0.1:7946 \
//!     cargo run --example role_table
//! ```
//!
//! `ROLE_TABLE_EXIT_AFTER_SECS=5` makes it leave after that many seconds (used in CI).

use std::time::Duration;

use cluster_helper::{Node, shutdown_signal};
use easy_rpc_examples::{init_logs, render_role_table};

#[tokio::main]
async fn main() {
    init_logs();
    if let Err(e) = run().await {
        eprintln!("role_table: {e}");
        std::process::exit(2);
    }
}

async fn run() -> Result<(), cluster_helper::Error> {
    let node = Node::builder().from_env()?.start().await?;
    println!(
        "node {} in cluster {:?}, gossip {}, rpc {:?}",
        node.id(),
        node.cluster(),
        node.gossip_addr(),
        node.rpc_addr()
    );
    let exit_after = match std::env::var("ROLE_TABLE_EXIT_AFTER_SECS") {
        Ok(v) => Some(
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| cluster_helper::Error::InvalidConfig {
                    setting: "ROLE_TABLE_EXIT_AFTER_SECS".into(),
                    value: v.clone(),
                    expected: "a number of seconds, e.g. 5".into(),
                })?,
        ),
        Err(_) => None,
    };
    let stop = async move {
        match exit_after {
            Some(d) => tokio::time::sleep(d).await,
            None => shutdown_signal().await,
        }
    };
    tokio::pin!(stop);
    let mut watch = node.registry().watch();
    let mut last = String::new();
    loop {
        let table = render_role_table(&node.registry().snapshot(), node.id());
        if table != last {
            println!("{table}");
            last = table;
        }
        tokio::select! {
            changed = watch.changed() => if changed.is_err() { break },
            _ = &mut stop => break,
            // Redraw now and then even without changes (readiness is not a registry change).
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
    println!("leaving");
    node.shutdown().await;
    Ok(())
}

//! Two caller nodes in one OS process driving the fault suite's load against a role, for
//! scenarios where the callers must live in a network namespace of their own.
//!
//! Env: `CLUSTER_*` (the first caller's; the second seeds from the first), `LOAD_ROLE`,
//! `LOAD_SECS`, `LOAD_WAIT_FOR` (nodes of the role to wait for before the load starts).
//! Prints `STARTED <node-id> <gossip-addr>`, `SEEN <names>` whenever the first caller's view
//! of the role changes, and at the end one `OK <id> <node>` line per successful non-idempotent
//! call, one `FAILED <kind> <tally>` line per failure kind, and `COUNTS <calls> <failures>`.

use std::time::{Duration, Instant};

use easy_rpc::Node;
use easy_rpc_tests::churn::Load;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    easy_rpc_tests::cluster::init_logs();
    let role = std::env::var("LOAD_ROLE").unwrap_or_else(|_| "work".into());
    let secs: u64 = std::env::var("LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let first = Node::builder()
        .name("caller-0")
        .default_node(false)
        .from_env()
        .expect("env")
        .start()
        .await
        .expect("start");
    let listen_ip = first.gossip_addr().ip();
    let second = Node::builder()
        .name("caller-1")
        .default_node(false)
        .from_env()
        .expect("env")
        .listen(format!("{listen_ip}:0"))
        .seeds([first.gossip_addr().to_string()])
        .start()
        .await
        .expect("start");
    println!("STARTED {} {}", first.id(), first.gossip_addr());
    // Start the load once both callers see LOAD_WAIT_FOR nodes of the role (bounded).
    let want: usize = std::env::var("LOAD_WAIT_FOR")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let waiting = Instant::now();
    while [&first, &second]
        .iter()
        .any(|n| n.nodes_with_role(&role).len() < want)
    {
        if waiting.elapsed() > Duration::from_secs(30) {
            eprintln!("load_node: the role never had {want} nodes");
            std::process::exit(1);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let load = Load::start(
        &[first.clone(), second.clone()],
        &role,
        2,
        Duration::from_millis(5),
    );
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < Duration::from_secs(secs) {
        let mut names: Vec<String> = first
            .nodes_with_role(&role)
            .iter()
            .map(|m| m.id.name().to_owned())
            .collect();
        names.sort();
        let seen = names.join(",");
        if seen != last {
            println!("SEEN {seen}");
            last = seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let counts = load.stop().await;
    for (id, node) in &counts.exec_ok {
        println!("OK {id} {node}");
    }
    for (what, tally) in [
        ("exec", &counts.exec),
        ("read", &counts.read),
        ("keyed", &counts.keyed),
        ("all", &counts.all),
    ] {
        for (kind, n) in &tally.failed {
            println!("FAILED {what} {kind} {n}");
        }
    }
    println!("COUNTS {} {}", counts.calls, counts.failures());
    first.shutdown().await;
    second.shutdown().await;
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(0);
}

//! The local demo cluster: the README's first command.
//!
//! ```text
//! cargo run --release --example demo
//! ```
//!
//! It starts a cluster of real processes on loopback (this program re-executed: 2 billing,
//! 2 audit) plus a gateway node in this process, prints the role table as it converges, kills a
//! billing node with SIGKILL and shows it dropped, stops an audit node with SIGTERM (a graceful
//! leave) and shows that too, then stops everything and prints a summary. It exits 0 when every
//! step happened within its time bound, 1 otherwise.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster_helper::{Node, NodeId};
use easy_rpc_examples::{init_logs, render_role_table};

const CHILD_ENV: &str = "EASY_RPC_DEMO_CHILD";

fn main() {
    init_logs();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if std::env::var_os(CHILD_ENV).is_some() {
        rt.block_on(child());
        return;
    }
    let ok = rt.block_on(demo());
    std::process::exit(if ok { 0 } else { 1 });
}

/// A cluster member process: a node from the environment, until SIGTERM.
async fn child() {
    let node = match Node::builder().from_env() {
        Ok(b) => b.start().await,
        Err(e) => Err(e),
    };
    match node {
        Ok(node) => {
            let _ = node.run_until_shutdown().await;
        }
        Err(e) => {
            eprintln!("demo node: {e}");
            std::process::exit(2);
        }
    }
}

struct Member {
    name: String,
    child: Child,
}

fn spawn(name: &str, roles: &str, seed: &str) -> Member {
    let child = Command::new(std::env::current_exe().expect("own path"))
        .env(CHILD_ENV, "1")
        .env("CLUSTER_NAME", format!("demo-{}", std::process::id()))
        .env("CLUSTER_NODE_NAME", name)
        .env("CLUSTER_ROLES", roles)
        .env("CLUSTER_SEEDS", seed)
        .env("CLUSTER_LISTEN", "127.0.0.1:0")
        .env("CLUSTER_SECRET", "demo-secret")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn demo node");
    Member {
        name: name.to_owned(),
        child,
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Waits until `cond` holds on `node`'s registry, printing the role table on every change.
/// Times are measured from `start`, the moment of the action that leads to the change.
async fn until(
    node: &Node,
    start: Instant,
    within: Duration,
    what: &str,
    cond: impl Fn(&Node) -> bool,
) -> Option<Duration> {
    let mut watch = node.registry().watch();
    loop {
        if cond(node) {
            let took = start.elapsed();
            println!(
                "{}",
                render_role_table(&node.registry().snapshot(), node.id())
            );
            println!(">> {what}: {:.0} ms", took.as_secs_f64() * 1e3);
            return Some(took);
        }
        let left = within.saturating_sub(start.elapsed());
        if left.is_zero() {
            println!(">> {what}: NOT within {within:?}");
            return None;
        }
        let _ = tokio::time::timeout(left, watch.changed()).await;
    }
}

fn names(node: &Node, role: &str) -> Vec<String> {
    node.nodes_with_role(role)
        .iter()
        .map(|m| m.id.name().to_owned())
        .collect()
}

async fn demo() -> bool {
    let gateway = match Node::builder()
        .cluster(format!("demo-{}", std::process::id()))
        .name("gateway")
        .roles(["gateway"])
        .listen("127.0.0.1:0")
        .secret("demo-secret")
        .start()
        .await
    {
        Ok(n) => n,
        Err(e) => {
            eprintln!("demo: {e}");
            return false;
        }
    };
    let seed = gateway.gossip_addr().to_string();
    println!(
        "== easy-rpc demo: gateway {} on {seed}; starting 4 node processes",
        gateway.id()
    );
    let started = Instant::now();
    let mut members: Vec<Member> = [
        ("billing-1", "billing"),
        ("billing-2", "billing"),
        ("audit-1", "audit"),
        ("audit-2", "audit,billing-reports"),
    ]
    .into_iter()
    .map(|(name, roles)| spawn(name, roles, &seed))
    .collect();
    let mut steps: Vec<(String, Option<Duration>)> = Vec::new();

    let t = until(
        &gateway,
        started,
        Duration::from_secs(20),
        "4 processes started, every role seen by the gateway",
        |g| names(g, "billing").len() == 2 && names(g, "audit").len() == 2,
    )
    .await;
    steps.push(("cluster converged".into(), t));

    // A runtime role change on the gateway reaches everyone; it shows up in its own table.
    let started = Instant::now();
    let _ = gateway.add_role("reports").await;
    let t = until(
        &gateway,
        started,
        Duration::from_secs(5),
        "gateway added role `reports`",
        |g| names(g, "reports") == ["gateway"],
    )
    .await;
    steps.push(("runtime role change".into(), t));

    // Crash: SIGKILL billing-1. Failure detection drops it.
    let victim = members.remove(0);
    let victim_id: Option<NodeId> = gateway
        .nodes_with_role("billing")
        .iter()
        .find(|m| m.id.name() == victim.name)
        .map(|m| m.id.clone());
    println!(
        "== SIGKILL {} (pid {}), no goodbye",
        victim.name,
        victim.child.id()
    );
    let mut victim = victim;
    let started = Instant::now();
    let _ = victim.child.kill();
    let _ = victim.child.wait();
    let t = until(
        &gateway,
        started,
        Duration::from_secs(10),
        "crashed billing-1 dropped from `billing`",
        |g| names(g, "billing") == ["billing-2"],
    )
    .await;
    steps.push(("crash detected".into(), t));
    if let Some(id) = victim_id {
        assert!(gateway.roles_of(&id).is_none());
    }

    // Graceful: SIGTERM audit-1. It announces it is leaving.
    let idx = members
        .iter()
        .position(|m| m.name == "audit-1")
        .expect("audit-1");
    let mut leaver = members.remove(idx);
    println!(
        "== SIGTERM {} (pid {}), graceful leave",
        leaver.name,
        leaver.child.id()
    );
    let started = Instant::now();
    signal(leaver.child.id(), "TERM");
    let t = until(
        &gateway,
        started,
        Duration::from_secs(5),
        "leaving audit-1 dropped from `audit`",
        |g| names(g, "audit") == ["audit-2"],
    )
    .await;
    steps.push(("graceful leave seen".into(), t));
    let exited = leaver.child.wait().map(|s| s.success()).unwrap_or(false);
    steps.push((
        "audit-1 exited 0 after leaving".into(),
        exited.then_some(Duration::ZERO),
    ));

    println!("== stopping the remaining nodes");
    for m in &members {
        signal(m.child.id(), "TERM");
    }
    for m in &mut members {
        let _ = m.child.wait();
    }
    gateway.shutdown().await;

    println!("\n== summary");
    let mut ok = true;
    for (step, took) in &steps {
        match took {
            Some(d) => println!("  ok   {step:<34} {:>6.0} ms", d.as_secs_f64() * 1e3),
            None => {
                ok = false;
                println!("  FAIL {step}");
            }
        }
    }
    println!("{}", if ok { "demo ok" } else { "demo FAILED" });
    ok
}

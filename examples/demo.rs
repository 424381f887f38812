//! The local demo cluster: the README's first command.
//!
//! ```text
//! cargo run --release --example demo
//! ```
//!
//! It starts a cluster of real processes on loopback (this program re-executed: 2 billing
//! nodes that also own carts, 2 audit nodes) plus a gateway node in this process, and then:
//! prints the role table as it converges; calls `any("billing").charge(..)`,
//! `all("audit").count()` and `by_key("cart", user).add_item(..)`; kills a billing node with
//! SIGKILL and shows the calls routed around it at once (idempotent ones retried elsewhere; a
//! non-idempotent call caught on the dead connection fails as `NodeDown` rather than risk
//! running twice; the dead node's carts move);
//! stops an audit node with SIGTERM (a graceful leave) and shows `all` answer without it; then
//! stops everything and prints a summary. It exits 0 when every step worked, 1 otherwise.
//!
//! The cluster's secret is made at start (`Secret::generate`) and given to the node processes
//! in `CLUSTER_SECRET`, as a deployment gives every node the same secret.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use easy_rpc::Node;
use easy_rpc::cluster_helper::Secret;
use easy_rpc_examples::impls::{AuditImpl, BillingImpl, CartImpl};
use easy_rpc_examples::services::{Audit, AuditClient, Billing, BillingClient, Cart, CartClient};
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

/// A cluster member process: serves what its roles say, until SIGTERM.
async fn child() {
    let builder = match Node::builder().from_env() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("demo node: {e}");
            std::process::exit(2);
        }
    };
    let name = std::env::var("CLUSTER_NODE_NAME").unwrap_or_default();
    let roles = std::env::var("CLUSTER_ROLES").unwrap_or_default();
    let mut builder = builder;
    if roles.contains("billing") {
        builder = builder.serve(BillingImpl::new(&name).serve()).serve(
            CartImpl {
                node: name.clone(),
                carts: Mutex::new(Default::default()),
            }
            .serve(),
        );
    }
    if roles.contains("audit") {
        builder = builder.serve(
            AuditImpl {
                node: name.clone(),
                events: AtomicU64::new(0),
            }
            .serve(),
        );
    }
    match builder.start().await {
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

fn spawn(cluster: &str, secret: &Secret, name: &str, roles: &str, seed: &str) -> Member {
    let child = Command::new(std::env::current_exe().expect("own path"))
        .env(CHILD_ENV, "1")
        .env("CLUSTER_NAME", cluster)
        .env("CLUSTER_NODE_NAME", name)
        .env("CLUSTER_ROLES", roles)
        .env("CLUSTER_SEEDS", seed)
        .env("CLUSTER_LISTEN", "127.0.0.1:0")
        .env("CLUSTER_SECRET", secret.to_base64())
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

/// Waits until `cond` holds on `node`'s registry, then prints the role table. Times are
/// measured from `start`, the moment of the action that leads to the change.
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

/// Charges 20 accounts through `any`: how many succeeded, which nodes served them, and the
/// failures' error kinds.
async fn charges(round: &str) -> (usize, BTreeMap<String, usize>, Vec<String>) {
    let mut ok = 0;
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = Vec::new();
    for i in 0..20 {
        match easy_rpc::any("billing")
            .charge(format!("{round}-{i}"), 100)
            .await
        {
            Ok(receipt) => {
                ok += 1;
                *served.entry(receipt.node).or_default() += 1;
            }
            Err(e) => {
                println!("   charge failed: {e}");
                failed.push(
                    format!("{e:?}")
                        .split([' ', '{'])
                        .next()
                        .unwrap_or("")
                        .to_owned(),
                );
            }
        }
    }
    (ok, served, failed)
}

/// Reads 20 balances through `any` (idempotent: retried on another node if its node dies).
async fn balances() -> usize {
    let mut ok = 0;
    for i in 0..20 {
        match easy_rpc::any("billing").balance(format!("b-{i}")).await {
            Ok(_) => ok += 1,
            Err(e) => println!("   balance failed: {e}"),
        }
    }
    ok
}

/// The per-node results of an `all` call; none (after printing why) if it could not be made.
fn everyone<T, E>(
    results: easy_rpc::AllResults<T, E>,
) -> Vec<(easy_rpc::NodeId, easy_rpc::CallResult<T, E>)>
where
    E: std::fmt::Display,
{
    results.unwrap_or_else(|e| {
        println!("   all failed: {e}");
        Vec::new()
    })
}

async fn demo() -> bool {
    let cluster = format!("demo-{}", std::process::id());
    let secret = Secret::generate();
    let gateway = match Node::builder()
        .cluster(&cluster)
        .name("gateway")
        .roles(["gateway"])
        .listen("127.0.0.1:0")
        .secret_key(secret.clone())
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
        ("billing-1", "billing,cart"),
        ("billing-2", "billing,cart"),
        ("audit-1", "audit"),
        ("audit-2", "audit"),
    ]
    .into_iter()
    .map(|(name, roles)| spawn(&cluster, &secret, name, roles, &seed))
    .collect();
    let mut steps: Vec<(String, bool, String)> = Vec::new();
    let mut step = |name: &str, ok: bool, detail: String| {
        println!("   {} {name}: {detail}", if ok { "ok  " } else { "FAIL" });
        steps.push((name.to_owned(), ok, detail));
    };

    let t = until(
        &gateway,
        started,
        Duration::from_secs(20),
        "4 processes started, every role seen by the gateway",
        |g| names(g, "billing").len() == 2 && names(g, "audit").len() == 2,
    )
    .await;
    step(
        "roles synced",
        t.is_some(),
        format!("{:.0} ms", t.unwrap_or_default().as_secs_f64() * 1e3),
    );

    println!("== any(\"billing\").charge(..) x20");
    let (ok, served, _) = charges("a").await;
    step(
        "any: charges",
        ok == 20 && served.len() == 2,
        format!("{ok}/20 ok, served by {served:?}"),
    );
    match easy_rpc::any("billing").charge("a-0".into(), 0).await {
        Err(easy_rpc::RpcError::Remote { node, error }) => step(
            "any: typed error",
            true,
            format!("{node} refused: {error:?}"),
        ),
        other => step("any: typed error", false, format!("{other:?}")),
    }

    println!("== all(\"audit\").record(..), then .count()");
    let recorded = everyone(easy_rpc::all("audit").record("demo started".into()).await);
    let counts = everyone(easy_rpc::all("audit").count().await);
    let counted: Vec<String> = counts
        .iter()
        .map(|(node, r)| match r {
            Ok((name, n)) => format!("{node}: {name} has {n}"),
            Err(e) => format!("{node}: {e}"),
        })
        .collect();
    step(
        "all: one answer per audit node",
        recorded.len() == 2 && counts.iter().all(|(_, r)| r.is_ok()),
        counted.join("; "),
    );

    println!("== by_key(\"cart\", user).add_item(..)");
    let users = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let mut owner: BTreeMap<&str, String> = BTreeMap::new();
    let mut sticky = true;
    for user in users {
        for item in ["book", "pen"] {
            match easy_rpc::by_key("cart", user)
                .add_item(user.into(), item.into())
                .await
            {
                Ok((node, _)) => {
                    let o = owner.entry(user).or_insert_with(|| node.clone());
                    sticky &= *o == node;
                }
                Err(e) => {
                    sticky = false;
                    println!("   add_item failed: {e}");
                }
            }
        }
    }
    step(
        "by_key: same user, same node",
        sticky,
        format!("owners {owner:?}"),
    );

    // Crash: SIGKILL billing-1 and call at once, before gossip notices.
    let victim_idx = members
        .iter()
        .position(|m| m.name == "billing-1")
        .expect("billing-1");
    let mut victim = members.remove(victim_idx);
    println!(
        "== SIGKILL {} (pid {}), then call at once",
        victim.name,
        victim.child.id()
    );
    let killed = Instant::now();
    let _ = victim.child.kill();
    let _ = victim.child.wait();
    let read_ok = balances().await;
    let (ok, served, failed) = charges("b").await;
    // An idempotent call is retried on another node if it was sent on the dead node's
    // connection before that death was noticed. A non-idempotent one is not (it might have
    // run): at most the one call that discovers the dead connection fails, with NodeDown, and
    // every later call is routed around the node.
    step(
        "calls routed around the dead node",
        read_ok == 20
            && ok + failed.len() == 20
            && failed.len() <= 1
            && failed.iter().all(|k| k == "NodeDown")
            && !served.contains_key("billing-1"),
        format!(
            "right after the kill: balance (idempotent) {read_ok}/20 ok; charge {ok}/20 ok{}, served by {served:?} ({:.0} ms)",
            if failed.is_empty() {
                String::new()
            } else {
                format!(", {failed:?} (sent on the dead connection, not retried: not idempotent)")
            },
            killed.elapsed().as_secs_f64() * 1e3
        ),
    );
    let mut moved = BTreeSet::new();
    let mut carts_ok = true;
    for user in users {
        match easy_rpc::by_key("cart", user)
            .add_item(user.into(), "mug".into())
            .await
        {
            Ok((node, _)) => {
                if owner[user] != node {
                    moved.insert(user);
                }
                carts_ok &= node == "billing-2";
            }
            Err(e) => {
                carts_ok = false;
                println!("   add_item failed: {e}");
            }
        }
    }
    let only_dead_moved = users
        .iter()
        .all(|u| moved.contains(u) == (owner[u] == "billing-1"));
    step(
        "by_key: only the dead node's carts moved",
        carts_ok && only_dead_moved,
        format!("moved {moved:?}"),
    );
    let t = until(
        &gateway,
        killed,
        Duration::from_secs(10),
        "crashed billing-1 dropped from the registry",
        |g| names(g, "billing") == ["billing-2"],
    )
    .await;
    step(
        "crash detected by gossip",
        t.is_some(),
        format!("{:.0} ms", t.unwrap_or_default().as_secs_f64() * 1e3),
    );

    // Graceful: SIGTERM audit-1.
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
    let left = Instant::now();
    signal(leaver.child.id(), "TERM");
    let t = until(
        &gateway,
        left,
        Duration::from_secs(5),
        "leaving audit-1 dropped from `audit`",
        |g| names(g, "audit") == ["audit-2"],
    )
    .await;
    step(
        "graceful leave seen",
        t.is_some(),
        format!("{:.0} ms", t.unwrap_or_default().as_secs_f64() * 1e3),
    );
    let counts = everyone(easy_rpc::all("audit").count().await);
    step(
        "all: answers only from live nodes",
        counts.len() == 1 && counts[0].1.is_ok(),
        format!("{} answer(s)", counts.len()),
    );
    let exited = leaver.child.wait().map(|s| s.success()).unwrap_or(false);
    step("audit-1 exited 0 after leaving", exited, String::new());

    println!("== stopping the remaining nodes");
    for m in &members {
        signal(m.child.id(), "TERM");
    }
    for m in &mut members {
        let _ = m.child.wait();
    }
    gateway.shutdown().await;

    println!("\n== summary");
    let ok = steps.iter().all(|(_, ok, _)| *ok);
    for (name, ok, _) in &steps {
        println!("  {} {name}", if *ok { "ok  " } else { "FAIL" });
    }
    println!("{}", if ok { "demo ok" } else { "demo FAILED" });
    ok
}

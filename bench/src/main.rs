//! The benchmark program. It prints its figures as Markdown tables, with the goal next to each,
//! so runs can be compared and pasted into BENCHMARKS.md.
//!
//! ```text
//! cargo run --release -p easy-rpc-bench -- cluster            # every membership figure
//! cargo run --release -p easy-rpc-bench -- cluster --quick    # fewer trials, shorter busy run
//! cargo run --release -p easy-rpc-bench -- rpc                  # easy-rpc vs standalone plain tarpc
//! cargo run --release -p easy-rpc-bench -- layers               # no client layer vs a ConcurrencyLimit
//! cargo run --release -p easy-rpc-bench -- instr                # instructions per call (callgrind)
//! cargo run --release -p easy-rpc-bench -- guard                # fails if client instructions grew
//! cargo run --release -p easy-rpc-bench -- codec                # the wire codec
//! cargo run --release -p easy-rpc-bench -- churn                # calls under churn
//! cargo run --release -p easy-rpc-bench -- net                  # membership over lossy links (root)
//! cargo run --release -p easy-rpc-bench -- scale                # growth with the number of nodes
//! cargo run --release -p easy-rpc-bench -- scrape               # one scrape of /metrics
//! cargo run -p easy-rpc-bench -- page                           # SIGKILL to shown down on the page (chromium)
//! ```
//!
//! `bench/run.sh` runs them all; `bench/guard.sh` builds and runs the guard.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster_helper::{Node, NodeBuilder};

mod churn;
mod client;
mod fleet;
mod guard;
mod handshake;
mod instr;
mod layers;
mod net;
mod page;
mod procs;
mod rpc;
mod scale;
mod scrape;
mod secret;
mod timing;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    match args.first().map(String::as_str) {
        Some("child") => child(),
        Some("cluster") => runtime().block_on(cluster(quick, only.as_deref())),
        Some("rpc") => timing::run(&args[1..]),
        Some("rpc-server") => rpc::server(&args[1..]),
        Some("rpc-client") => client::client(&args[1..]),
        Some("layers") => layers::run(&args[1..]),
        Some("instr") => instr::run(&args[1..]),
        Some("guard") => guard::run(&args[1..]),
        Some("codec") => rpc::codec(),
        Some("handshake") => handshake::run(&args[1..]),
        Some("churn") => churn::run(quick),
        Some("work-server") => churn::server(&args[1..]),
        Some("net") => net::run(&args[1..]),
        Some("scale") => scale::run(&args[1..]),
        Some("scrape") => scrape::run(&args[1..]),
        Some("net-node") => fleet::node_main(),
        Some("page") => page::run(&args[1..]),
        Some("page-node") => page::node(&args[1..]),
        _ => {
            eprintln!(
                "usage: bench cluster [--quick] [--only lookup|join|crash|busy|bandwidth]\n       bench rpc [--quick] [--placement same-core|unpinned|both] [--core N] [--rounds N] [--secs S]\n       bench layers [--quick] [--rounds N] [--secs S]\n       bench instr [--calls N] [--layer concurrency]\n       bench guard [--update] [--file PATH]\n       bench codec\n       bench handshake [--quick]\n       bench churn [--quick]\n       bench net [--nodes N] [--loss 0,1,5] [--trials T] [--minutes M] [--asymmetric]\n       bench scale [--procs 10,25,50,100] [--nodes 100,250,500,1000] [--secs S] [--trials T] [--transport udp|memory] [--batch B] [--interval-per-node MS] [--max-packet-age S]\n       bench scrape [--members 100] [--roles 20] [--methods 50] [--iters 200]\n       bench page [--trials 5] [--alive-secs 3] [--gossip-ms MS]"
            );
            std::process::exit(2);
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Percentiles of a sample, in milliseconds.
struct Dist {
    p50: f64,
    p99: f64,
    max: f64,
    n: usize,
}

fn dist(mut v: Vec<Duration>) -> Dist {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let n = v.len();
    let at = |q: f64| ms(v[((q * n as f64).ceil() as usize).clamp(1, n) - 1]);
    Dist {
        p50: at(0.5),
        p99: at(0.99),
        max: ms(v[n - 1]),
        n,
    }
}

fn row(figure: &str, d: &Dist, goal: &str) {
    println!(
        "| {figure} | {:.0} ms | {:.0} ms | {:.0} ms | {} | {goal} |",
        d.p50, d.p99, d.max, d.n
    );
}

fn builder(cluster: &str, name: &str) -> NodeBuilder {
    Node::builder()
        .cluster(cluster)
        .name(name)
        .listen("127.0.0.1:0")
        .secret(secret::secret())
        .rpc_listen(cluster_helper::RpcListen::Disabled)
}

async fn wait(within: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if cond() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

async fn cluster(quick: bool, only: Option<&str>) {
    let trials = if quick { 5 } else { 20 };
    let run = |part: &str| only.is_none_or(|o| o == part);
    println!("# cluster-helper figures\n");
    println!(
        "machine: {} cores, {}; default configuration (gossip every 250 ms, phi threshold 8)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::consts::ARCH
    );
    if run("lookup") {
        lookup();
    }
    println!(
        "\n| figure | p50 | p99 | max | trials | goal |\n| --- | --- | --- | --- | --- | --- |"
    );
    if run("join") {
        for n in [5, 32] {
            join_and_leave(n, trials).await;
        }
    }
    if run("crash") {
        for n in [5, 32] {
            crash(n, if quick { 5 } else { 15 }).await;
        }
    }
    if run("busy") {
        busy(32, if quick { 15 } else { 60 }).await;
    }
    println!();
    if run("bandwidth") {
        for n in [32, 100] {
            bandwidth_and_memory(n, if quick { 5 } else { 10 }).await;
        }
    }
}

/// `nodes_with_role` on a registry of 1000 nodes and 50 roles.
fn lookup() {
    let registry = cluster_helper::synthetic_registry(1000, 50, 3);
    let roles: Vec<String> = (0..50).map(|i| format!("role-{i}")).collect();
    let per_role = registry.nodes_with_role("role-0").len();
    // Warm up, then time.
    let mut sink = 0usize;
    for r in &roles {
        sink += registry.nodes_with_role(r).len();
    }
    let iters = 5_000_000;
    let start = Instant::now();
    for i in 0..iters {
        sink += std::hint::black_box(&registry)
            .nodes_with_role(&roles[i % roles.len()])
            .len();
    }
    let ns = start.elapsed().as_nanos() as f64 / iters as f64;
    std::hint::black_box(sink);
    println!(
        "| figure | result | goal |\n| --- | --- | --- |\n\
         | `nodes_with_role`, 1000 nodes, 50 roles (~{per_role} nodes per role), one thread | {ns:.1} ns | <= 100 ns |"
    );
}

async fn start_base(cluster: &str, n: usize) -> Vec<Node> {
    let first = builder(cluster, "base-0")
        .roles(["base"])
        .start()
        .await
        .expect("start");
    let seed = first.gossip_addr().to_string();
    let mut nodes = vec![first];
    for i in 1..n {
        nodes.push(
            builder(cluster, &format!("base-{i}"))
                .roles(["base"])
                .seeds([seed.clone()])
                .start()
                .await
                .expect("start"),
        );
    }
    let converged = wait(Duration::from_secs(60), || {
        nodes.iter().all(|x| x.nodes_with_role("base").len() == n)
    })
    .await;
    assert!(converged.is_some(), "{n} nodes did not converge in 60 s");
    nodes
}

/// A new node's roles seen by every node; then its graceful leave seen by every node.
async fn join_and_leave(n: usize, trials: usize) {
    let cluster = format!("bench-join-{n}-{}", std::process::id());
    let base = start_base(&cluster, n - 1).await;
    let seed = base[0].gossip_addr().to_string();
    let mut joins = Vec::new();
    let mut leaves = Vec::new();
    for t in 0..trials {
        let role = format!("joiner-{t}");
        let start = Instant::now();
        let joiner = builder(&cluster, &format!("joiner-{t}"))
            .roles([role.as_str()])
            .seeds([seed.clone()])
            .start()
            .await
            .expect("start");
        let seen = wait(Duration::from_secs(30), || {
            base.iter().all(|b| b.nodes_with_role(&role).len() == 1)
        })
        .await;
        match seen {
            Some(_) => joins.push(start.elapsed()),
            None => eprintln!("join trial {t}: not seen by all within 30 s"),
        }
        let leaving = tokio::spawn({
            let joiner = joiner.clone();
            async move { joiner.shutdown().await }
        });
        let gone = wait(Duration::from_secs(30), || {
            base.iter().all(|b| b.nodes_with_role(&role).is_empty())
        })
        .await;
        match gone {
            Some(d) => leaves.push(d),
            None => eprintln!("leave trial {t}: not seen by all within 30 s"),
        }
        leaving.await.ok();
        // Let the failure detectors forget the node before the next trial.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    row(
        &format!("join: new node's roles seen by all, N = {n}"),
        &dist(joins),
        if n == 32 {
            "p99 <= 1 s"
        } else {
            "(N = 32: p99 <= 1 s)"
        },
    );
    row(
        &format!("graceful leave seen by all, N = {n}"),
        &dist(leaves),
        "p99 <= 0.5 s",
    );
    for b in &base {
        b.kill();
    }
}

/// A child process: one node from the environment, optionally keeping its CPU busy, until
/// killed.
fn child() {
    let busy = std::env::var("BENCH_BUSY").is_ok();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let node = Node::builder()
            .from_env()
            .expect("env")
            .start()
            .await
            .expect("start");
        println!("{}", node.gossip_addr());
        if busy {
            // Application work on the same runtime as membership: 1 ms slices of computation,
            // as a request handler would do, plus a thread that spins to load the machine.
            std::thread::spawn(|| {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            });
            loop {
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(1) {
                    std::hint::black_box(t.elapsed());
                }
                tokio::task::yield_now().await;
            }
        }
        std::future::pending::<()>().await;
    });
}

fn spawn_child(cluster: &str, name: &str, seed: &str, busy: bool) -> Child {
    let mut cmd = Command::new(std::env::current_exe().expect("exe"));
    cmd.arg("child")
        .env("CLUSTER_NAME", cluster)
        .env("CLUSTER_NODE_NAME", name)
        .env("CLUSTER_ROLES", "worker")
        .env("CLUSTER_LISTEN", "127.0.0.1:0")
        .env("CLUSTER_RPC_LISTEN", "off")
        .env("CLUSTER_SECRET", secret::secret())
        .env("CLUSTER_SEEDS", seed)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if busy {
        cmd.env("BENCH_BUSY", "1");
    }
    cmd.spawn().expect("spawn child")
}

/// SIGKILL a node process; time until an observer no longer returns it from role lookups.
async fn crash(n: usize, trials: usize) {
    let cluster = format!("bench-crash-{n}-{}", std::process::id());
    let observer = builder(&cluster, "observer").start().await.expect("start");
    let seed = observer.gossip_addr().to_string();
    let mut children: Vec<(String, Child)> = (0..n - 1)
        .map(|i| {
            let name = format!("w-{i}");
            let c = spawn_child(&cluster, &name, &seed, false);
            (name, c)
        })
        .collect();
    let mut next = n;
    let ok = wait(Duration::from_secs(60), || {
        observer.nodes_with_role("worker").len() == n - 1
    })
    .await;
    assert!(ok.is_some(), "crash bench: workers did not converge");
    let mut times = Vec::new();
    for t in 0..trials {
        let (name, mut victim) = children.remove(t % children.len());
        // Let the victim's failure detector samples settle.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let start = Instant::now();
        victim.kill().expect("SIGKILL");
        let gone = wait(Duration::from_secs(30), || {
            observer
                .nodes_with_role("worker")
                .iter()
                .all(|m| m.id.name() != name)
        })
        .await;
        let _ = victim.wait();
        match gone {
            Some(_) => times.push(start.elapsed()),
            None => eprintln!("crash trial {t}: not dropped within 30 s"),
        }
        let name = format!("w-{next}");
        next += 1;
        children.push((name.clone(), spawn_child(&cluster, &name, &seed, false)));
        wait(Duration::from_secs(30), || {
            observer.nodes_with_role("worker").len() == n - 1
        })
        .await;
    }
    row(
        &format!("crash (SIGKILL) dropped from role lookups, N = {n}"),
        &dist(times),
        "p99 <= 5 s",
    );
    for (_, mut c) in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    observer.kill();
}

/// N busy node processes for `secs` seconds: count nodes wrongly declared down.
async fn busy(n: usize, secs: u64) {
    let cluster = format!("bench-busy-{n}-{}", std::process::id());
    let observer = builder(&cluster, "observer").start().await.expect("start");
    let seed = observer.gossip_addr().to_string();
    let mut children: Vec<Child> = (0..n - 1)
        .map(|i| spawn_child(&cluster, &format!("busy-{i}"), &seed, true))
        .collect();
    let converged = wait(Duration::from_secs(120), || {
        observer.nodes_with_role("worker").len() == n - 1
    })
    .await;
    let mut events = observer.events();
    let start = Instant::now();
    let mut false_downs = 0;
    let mut min_seen = n - 1;
    while start.elapsed() < Duration::from_secs(secs) {
        min_seen = min_seen.min(observer.nodes_with_role("worker").len());
        while let Some(e) = events.try_recv() {
            if let Ok(cluster_helper::ClusterEvent::NodeDown(m)) = e {
                false_downs += 1;
                eprintln!("busy run: {} declared down while alive", m.id);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "| live nodes wrongly dropped, {} busy processes (CPU saturated), {secs} s | {false_downs} (min workers seen {min_seen}/{}; converged: {}) | | | | 0 |",
        n - 1,
        n - 1,
        converged.map_or("no".into(), |d| format!("{:.1} s", d.as_secs_f64()))
    );
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    observer.kill();
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Gossip bytes per second and resident memory per node, N nodes in this process.
async fn bandwidth_and_memory(n: usize, secs: u64) {
    let cluster = format!("bench-bw-{n}-{}", std::process::id());
    let before = rss_bytes();
    let nodes = start_base(&cluster, n).await;
    // Let it settle, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent0: u64 = nodes.iter().map(|x| x.gossip_stats().bytes_sent).sum();
    let recv0: u64 = nodes.iter().map(|x| x.gossip_stats().bytes_received).sum();
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let el = start.elapsed().as_secs_f64();
    let sent: u64 = nodes
        .iter()
        .map(|x| x.gossip_stats().bytes_sent)
        .sum::<u64>()
        - sent0;
    let recv: u64 = nodes
        .iter()
        .map(|x| x.gossip_stats().bytes_received)
        .sum::<u64>()
        - recv0;
    let after = rss_bytes();
    println!(
        "| N = {n}: gossip sent per node | {:.1} KB/s (received {:.1} KB/s) | {} |\n\
         | N = {n}: memory per node (process RSS growth / N) | {:.0} KB | reported |",
        sent as f64 / el / n as f64 / 1e3,
        recv as f64 / el / n as f64 / 1e3,
        if n == 32 { "<= 10 KB/s" } else { "reported" },
        after.saturating_sub(before) as f64 / n as f64 / 1e3,
    );
    for x in &nodes {
        x.kill();
    }
}

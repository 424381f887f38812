//! `bench scale`: how join, crash detection, gossip traffic and memory grow with the number of
//! nodes. Two set-ups:
//!
//! - node processes on loopback (`bench net-node`, one per node), at each N of `--procs`
//!   (default 10,25,50,100): memory is each process's resident set;
//! - nodes in this one process, each with its own UDP socket on loopback (the kernel's
//!   loopback is the in-memory transport: the gossip path, encryption included, is the one
//!   production runs), at each N of `--nodes` (default 100,250,500,1000): memory is the
//!   growth of this process's resident set divided by N.
//!
//! ```text
//! bench scale [--procs 10,25,50,100] [--nodes 100,250,500,1000] [--secs S] [--trials T]
//! ```

use std::time::{Duration, Instant};

use cluster_helper::Node;

use crate::fleet::Fleet;
use crate::net::pct;

fn list(args: &[String], name: &str, default: &str) -> Vec<usize> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, String::as_str)
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn num(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn run(args: &[String]) {
    let secs = num(args, "--secs", 10);
    let trials = num(args, "--trials", 3) as usize;
    println!("# scale\n");
    println!(
        "gossip settings from CLUSTER_* or the defaults (every 250 ms, phi 8, fanout auto); {}\n",
        crate::procs::machine()
    );
    let procs = list(args, "--procs", "10,25,50,100");
    if procs.iter().any(|&n| n >= 2) {
        println!(
            "| processes N | formed (all see all) | join seen by all p50 / max | crash seen down by all p50 / max | gossip sent per node | received per node | packets sent per node | bytes per packet | CPU per process | RSS per process |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        for n in procs.into_iter().filter(|&n| n >= 2) {
            processes(n, secs, trials);
        }
    }
    let nodes = list(args, "--nodes", "100,250,500,1000");
    if nodes.iter().any(|&n| n >= 2) {
        println!(
            "\n| in-process N | formed (all see all) | join seen by all | crash dropped by all | gossip sent per node | received per node | packets sent per node | bytes per packet | memory per node |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        for n in nodes.into_iter().filter(|&n| n >= 2) {
            rt.block_on(in_process(n, secs));
        }
    }
}

fn p50_max(v: Vec<u64>) -> String {
    let s = pct(v);
    let parts: Vec<&str> = s.split(" | ").collect();
    match parts.as_slice() {
        [p50, _, max, n] => format!("{p50} / {max} ({n})"),
        _ => s,
    }
}

fn processes(n: usize, secs: u64, trials: usize) {
    let mut fleet = Fleet::new(format!("bench-scale-{}-{n}", std::process::id()));
    let t0 = Instant::now();
    for i in 0..n {
        fleet.spawn(&[], &format!("p{i:03}"), "127.0.0.1:0");
    }
    let Some(_) = fleet.converge(Duration::from_secs(300)) else {
        println!("| {n} | not within 300 s | | | | | | | | |");
        return;
    };
    let formed = t0.elapsed();
    let bound = Duration::from_secs(60);
    let (sent, recv, packets, cpu) = fleet.gossip_rate(secs);
    let rss = fleet.mean_rss();
    let (mut joins, mut crashes) = (Vec::new(), Vec::new());
    for t in 0..trials {
        let name = format!("j{t:02}");
        let j = fleet.spawn(&[], &name, "127.0.0.1:0");
        let spawned = fleet.procs[j].spawned_us;
        if let Some(at) = fleet.seen_by_all(&["UP"], &name, spawned, bound) {
            joins.push(at - spawned);
        }
        std::thread::sleep(Duration::from_millis(500));
        let t0 = fleet.stop(j, "KILL");
        if let Some(at) = fleet.seen_by_all(&["DOWN"], &name, t0, bound) {
            crashes.push(at - t0);
        }
        fleet.reap(j, Duration::from_secs(10));
    }
    println!(
        "| {n} | {:.1} s | {} | {} | {:.1} KB/s | {:.1} KB/s | {:.1} /s | {:.0} B | {:.1} % | {:.1} MB |",
        formed.as_secs_f64(),
        p50_max(joins),
        p50_max(crashes),
        sent / 1e3,
        recv / 1e3,
        packets,
        sent / packets.max(1e-9),
        cpu * 100.0,
        rss / 1e6
    );
    fleet.kill_all();
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn builder(cluster: &str, name: &str) -> cluster_helper::NodeBuilder {
    let mut b = Node::builder();
    if let Ok(interval) = std::env::var("CLUSTER_GOSSIP_INTERVAL") {
        b = b.gossip_interval(parse_ms(&interval));
    }
    if let Some(fanout) = std::env::var("CLUSTER_GOSSIP_FANOUT")
        .ok()
        .and_then(|f| f.parse().ok())
    {
        b = b.gossip_fanout(fanout);
    }
    b.cluster(cluster)
        .name(name)
        .listen("127.0.0.1:0")
        .secret(crate::secret::secret())
        .rpc_listen(cluster_helper::RpcListen::Disabled)
        .roles(["m"])
}

/// `250ms`, `1s` or a number of milliseconds.
fn parse_ms(s: &str) -> Duration {
    let s = s.trim();
    if let Some(ms) = s.strip_suffix("ms") {
        Duration::from_millis(ms.parse().unwrap_or(250))
    } else if let Some(secs) = s.strip_suffix('s') {
        Duration::from_secs_f64(secs.parse().unwrap_or(0.25))
    } else {
        Duration::from_millis(s.parse().unwrap_or(250))
    }
}

async fn wait(within: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if cond() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

async fn in_process(n: usize, secs: u64) {
    let cluster = format!("bench-scale-in-{}-{n}", std::process::id());
    let before = rss_bytes();
    let t0 = Instant::now();
    let first = builder(&cluster, "i0000").start().await.expect("start");
    let seed = first.gossip_addr().to_string();
    let mut nodes = vec![first];
    for i in 1..n {
        nodes.push(
            builder(&cluster, &format!("i{i:04}"))
                .seeds([seed.clone()])
                .start()
                .await
                .expect("start"),
        );
    }
    let within = Duration::from_secs(180);
    let formed = wait(within, || {
        nodes.iter().all(|x| x.nodes_with_role("m").len() == n)
    })
    .await;
    let Some(_) = formed else {
        let seen: Vec<usize> = nodes.iter().map(|x| x.nodes_with_role("m").len()).collect();
        println!(
            "| {n} | not within {within:?} (min seen {:?}) | | | | | | | |",
            seen.iter().min()
        );
        for x in &nodes {
            x.kill();
        }
        return;
    };
    let formed = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent0: u64 = nodes.iter().map(|x| x.gossip_stats().bytes_sent).sum();
    let packets0: u64 = nodes.iter().map(|x| x.gossip_stats().packets_sent).sum();
    let recv0: u64 = nodes.iter().map(|x| x.gossip_stats().bytes_received).sum();
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let el = start.elapsed().as_secs_f64();
    let sent = nodes
        .iter()
        .map(|x| x.gossip_stats().bytes_sent)
        .sum::<u64>()
        - sent0;
    let packets = nodes
        .iter()
        .map(|x| x.gossip_stats().packets_sent)
        .sum::<u64>()
        - packets0;
    let recv = nodes
        .iter()
        .map(|x| x.gossip_stats().bytes_received)
        .sum::<u64>()
        - recv0;
    let mem = rss_bytes().saturating_sub(before) as f64 / n as f64;
    // One join, then its crash.
    let bound = Duration::from_secs(120);
    let j0 = Instant::now();
    let joiner = builder(&cluster, "joiner")
        .seeds([seed.clone()])
        .start()
        .await
        .expect("start");
    let has = |x: &Node| {
        x.nodes_with_role("m")
            .iter()
            .any(|m| m.id.name() == "joiner")
    };
    let join = wait(bound, || nodes.iter().all(has))
        .await
        .map(|_| j0.elapsed());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c0 = Instant::now();
    joiner.kill();
    let crash = wait(bound, || !nodes.iter().any(has))
        .await
        .map(|_| c0.elapsed());
    let show =
        |d: Option<Duration>| d.map_or("> 120 s".into(), |d| format!("{:.2} s", d.as_secs_f64()));
    println!(
        "| {n} | {:.1} s | {} | {} | {:.1} KB/s | {:.1} KB/s | {:.1} /s | {:.0} B | {:.0} KB |",
        formed.as_secs_f64(),
        show(join),
        show(crash),
        sent as f64 / el / n as f64 / 1e3,
        recv as f64 / el / n as f64 / 1e3,
        packets as f64 / el / n as f64,
        sent as f64 / packets.max(1) as f64,
        mem / 1e3
    );
    for x in &nodes {
        x.kill();
    }
    // Let the sockets and tasks go before the next N.
    tokio::time::sleep(Duration::from_secs(1)).await;
}

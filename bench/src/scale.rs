//! `bench scale`: how join, crash detection, gossip traffic and memory grow with the number of
//! nodes. Two set-ups:
//!
//! - node processes on loopback (`bench net-node`, one per node), at each N of `--procs`
//!   (default 10,25,50,100): memory is each process's resident set;
//! - nodes in this one process, at each N of `--nodes` (default 100,250,500,1000), their
//!   gossip over `--transport udp` (default: each node its own UDP socket on loopback) or
//!   `--transport memory` (an in-process datagram network, `cluster_helper::MemoryNetwork`:
//!   the same sealing, replay guard and counters, no socket): memory is the growth of this
//!   process's resident set divided by N. Nodes start in batches that double up to `--batch`
//!   (default 50), each node seeded with 3 random nodes started before its batch.
//!
//! With `--interval-per-node MS` the gossip interval of the in-process nodes is N x MS (at
//! least 250 ms): the nodes share this process's CPU, and each round costs every node O(N).
//!
//! With `--max-packet-age S` the in-process nodes accept gossip packets up to S seconds old
//! (the library's default is 10 s, the clock-skew allowance over a network). Over the memory
//! transport it defaults to 10 s or 20 gossip intervals, whichever is longer: there is no
//! clock skew in one process, and a packet's age there is the time it waited for a CPU while
//! all N nodes share two, which would otherwise make slow nodes drop what they receive.
//!
//! ```text
//! bench scale [--procs 10,25,50,100] [--nodes 100,250,500,1000] [--secs S] [--trials T]
//!             [--transport udp|memory] [--batch B] [--interval-per-node MS]
//!             [--max-packet-age S]
//! ```

use std::time::{Duration, Instant};

use cluster_helper::{MemoryNetwork, Node};

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
    let memory = match args
        .iter()
        .position(|a| a == "--transport")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
    {
        None | Some("udp") => false,
        Some("memory") => true,
        Some(other) => {
            eprintln!("--transport udp|memory, not {other}");
            std::process::exit(2);
        }
    };
    let batch = num(args, "--batch", 50).max(1) as usize;
    let per_node_ms = num(args, "--interval-per-node", 0);
    let max_age_secs = num(args, "--max-packet-age", 0);
    if nodes.iter().any(|&n| n >= 2) {
        println!(
            "\nin-process nodes, gossip over {}; started in batches doubling up to {batch}, each \
             node seeded with 3 random nodes started before its batch; gossip interval {}\n",
            if memory {
                "the in-memory transport (sealed and checked as over UDP, no socket)"
            } else {
                "UDP on loopback, one socket per node"
            },
            match std::env::var("CLUSTER_GOSSIP_INTERVAL") {
                Ok(v) => format!("{v} (CLUSTER_GOSSIP_INTERVAL)"),
                Err(_) if per_node_ms > 0 => format!(
                    "RAISED WITH N: {per_node_ms} ms x N, at least 250 ms (--interval-per-node; \
                     the CPU of this process is the limit: every round's digest names all N \
                     nodes, so all nodes' gossip costs ~N^2 per round)"
                ),
                Err(_) => "250 ms (the default)".into(),
            }
        );
        if max_age_secs > 0 {
            println!(
                "gossip packets accepted up to {max_age_secs} s old (--max-packet-age; the \
                 library's default is 10 s)\n"
            );
        } else if memory {
            println!(
                "gossip packets accepted up to 10 s or 20 gossip intervals old, whichever is \
                 longer (RAISED for the memory transport, not the library's default of 10 s: \
                 in one process a packet's age is the time it waited for a CPU)\n"
            );
        }
        println!(
            "| in-process N | gossip interval | formed (all see all) | join seen by all | crash dropped by all | gossip sent per node | received per node | packets sent per node | bytes per packet | largest packet | CPU per node | memory per node |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut points = Vec::new();
        for n in nodes.into_iter().filter(|&n| n >= 2) {
            let net = memory.then(MemoryNetwork::new);
            let interval = interval(n, per_node_ms);
            let max_age = match (max_age_secs, memory) {
                (0, false) => None,
                (0, true) => Some(interval.saturating_mul(20).max(Duration::from_secs(10))),
                (s, _) => Some(Duration::from_secs(s)),
            };
            let setup = Setup {
                interval,
                max_age,
                net,
            };
            if let Some(p) = rt.block_on(in_process(n, secs, batch, setup)) {
                points.push(p);
            }
        }
        growth(&points);
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
    let quiet_from = crate::fleet::now_us();
    let (sent, recv, packets, cpu) = fleet.gossip_rate(secs);
    // Live nodes some node declared down while nothing joined or left: false downs.
    let downs = fleet.false_downs(quiet_from);
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
    println!(
        "<!-- N = {n}: after forming, over {secs} s, live nodes declared down by a live node: {} \
         ({} observers, {} nodes) -->",
        downs.len(),
        downs
            .iter()
            .map(|d| &d.0)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        downs
            .iter()
            .map(|d| &d.1)
            .collect::<std::collections::HashSet<_>>()
            .len()
    );
    fleet.kill_all();
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// CPU time this process has used (user + system), from `/proc/self/stat` (100 ticks/s).
fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces), from the state on.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / 100.0)
        })
        .unwrap_or(0.0)
}

/// The gossip interval at `n` nodes: `CLUSTER_GOSSIP_INTERVAL` if set; else, with
/// `--interval-per-node MS` (default 0: off), `n` times that (at least 250 ms), so that the
/// CPU all nodes of this process spend per second (each round's digest names all `n`) grows
/// as `n` rather than `n^2`; else 250 ms.
fn interval(n: usize, per_node_ms: u64) -> Duration {
    match std::env::var("CLUSTER_GOSSIP_INTERVAL") {
        Ok(v) => parse_ms(&v),
        Err(_) => Duration::from_millis((n as u64 * per_node_ms).max(250)),
    }
}

/// How the in-process nodes of one N are set up.
struct Setup {
    /// The gossip interval.
    interval: Duration,
    /// The oldest gossip packet accepted, if not the library's default.
    max_age: Option<Duration>,
    /// The memory network, or `None` for UDP.
    net: Option<MemoryNetwork>,
}

fn builder(cluster: &str, name: &str, setup: &Setup) -> cluster_helper::NodeBuilder {
    let mut b = Node::builder().gossip_interval(setup.interval);
    if let Some(age) = setup.max_age {
        b = b.gossip_max_packet_age(age);
    }
    if let Some(fanout) = std::env::var("CLUSTER_GOSSIP_FANOUT")
        .ok()
        .and_then(|f| f.parse().ok())
    {
        b = b.gossip_fanout(fanout);
    }
    if let Some(net) = &setup.net {
        b = b.memory_network(net);
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
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// A small xorshift generator: which started nodes seed a newcomer.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Rng(t | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Up to 3 distinct gossip addresses of `nodes`, at random.
fn seeds(rng: &mut Rng, nodes: &[Node]) -> Vec<String> {
    let mut picked: Vec<usize> = Vec::new();
    for _ in 0..16 {
        if picked.len() == 3.min(nodes.len()) {
            break;
        }
        let i = rng.below(nodes.len());
        if !picked.contains(&i) {
            picked.push(i);
        }
    }
    picked
        .into_iter()
        .map(|i| nodes[i].gossip_addr().to_string())
        .collect()
}

/// How far formation got, on stderr: serving nodes seen (min, mean), members seen (any
/// status), nodes ready, packets dropped as too old (all nodes).
fn progress(t0: Instant, nodes: &[Node]) {
    let serving: Vec<usize> = nodes.iter().map(|x| x.nodes_with_role("m").len()).collect();
    let members: Vec<usize> = nodes.iter().map(|x| x.members().len()).collect();
    let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len().max(1) as f64;
    let stale: u64 = nodes.iter().map(|x| x.gossip_stats().packets_stale).sum();
    eprintln!(
        "  {:.0} s: serving seen min {} mean {:.0}; members seen min {} mean {:.0}; ready {}; \
         stale packets dropped {stale}",
        t0.elapsed().as_secs_f64(),
        serving.iter().min().unwrap_or(&0),
        mean(&serving),
        members.iter().min().unwrap_or(&0),
        mean(&members),
        nodes.iter().filter(|x| x.is_ready()).count()
    );
    // The least-informed node, and how the others see it.
    if let Some((i, _)) = serving.iter().enumerate().min_by_key(|(_, s)| **s) {
        let least = &nodes[i];
        let name = least.id().name();
        let seen_by = nodes
            .iter()
            .filter(|x| x.nodes_with_role("m").iter().any(|m| m.id.name() == name))
            .count();
        eprintln!(
            "    least: {name}, seen serving by {seen_by}; {:?}",
            least.gossip_stats()
        );
    }
}

/// The figures of one N, for the growth fit.
struct Point {
    n: usize,
    formed: f64,
    join: Option<f64>,
    crash: Option<f64>,
    sent: f64,
    per_packet: f64,
    mem: f64,
    cpu: f64,
}

/// Starts `n` nodes in this process (over `net` if given, else UDP), waits until every one
/// sees all `n` serving, measures gossip traffic over `secs`, then one more node's join and
/// its crash (dropped without leaving) as seen by all.
async fn in_process(n: usize, secs: u64, batch: usize, setup: Setup) -> Option<Point> {
    let (net, interval) = (&setup.net, setup.interval);
    let cluster = format!("bench-scale-in-{}-{n}", std::process::id());
    let before = rss_bytes();
    let t0 = Instant::now();
    let mut rng = Rng::new();
    let mut nodes: Vec<Node> = Vec::with_capacity(n);
    while nodes.len() < n {
        let started = nodes.len();
        // A batch seeds only from nodes started before it, and is at most as large as them
        // (1, 1, 2, 4, ... then `batch`), so that no node is the seed of many newcomers at once.
        let size = batch.min(started).clamp(1, n - started);
        let starts = (started..started + size).map(|i| {
            builder(&cluster, &format!("i{i:04}"), &setup)
                .seeds(seeds(&mut rng, &nodes))
                .start()
        });
        let starts: Vec<_> = starts.collect();
        for node in futures::future::join_all(starts).await {
            nodes.push(node.expect("start"));
        }
        // Let the batch take its first gossip before the next one seeds from it.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = t0.elapsed();
    // 300 s, or 150 gossip rounds if longer.
    let within = Duration::from_secs(300).max(interval * 150);
    let mut said = Instant::now();
    let formed = wait(within, || {
        if said.elapsed() >= Duration::from_secs(5) {
            said = Instant::now();
            progress(t0, &nodes);
        }
        nodes.iter().all(|x| x.nodes_with_role("m").len() == n)
    })
    .await;
    let dropped = net.as_ref().map_or(String::new(), |net| {
        format!(
            "; the network dropped {} of {} packets (full queues)",
            net.dropped(),
            net.delivered() + net.dropped()
        )
    });
    let Some(_) = formed else {
        let seen: Vec<usize> = nodes.iter().map(|x| x.nodes_with_role("m").len()).collect();
        println!(
            "| {n} | {} | not within {within:?} (started in {:.1} s; seen min {:?}, mean {:.0}{dropped}) | | | | | | | | | |",
            show_ms(interval),
            started.as_secs_f64(),
            seen.iter().min(),
            seen.iter().sum::<usize>() as f64 / n as f64,
        );
        for x in &nodes {
            x.kill();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        return None;
    };
    let formed = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let total = |f: fn(&cluster_helper::GossipStats) -> u64| -> u64 {
        nodes.iter().map(|x| f(&x.gossip_stats())).sum()
    };
    let (sent0, packets0, recv0) = (
        total(|s| s.bytes_sent),
        total(|s| s.packets_sent),
        total(|s| s.bytes_received),
    );
    let cpu0 = cpu_secs();
    let start = Instant::now();
    // Meanwhile, every 250 ms: how many (node, live member) pairs are missing from the nodes'
    // views. The cluster has formed and nobody leaves, so each is a false down (or a flicker).
    let (mut polls, mut lacking_polls, mut worst) = (0u32, 0u32, 0usize);
    while start.elapsed() < Duration::from_secs(secs) {
        let lacking: usize = nodes
            .iter()
            .map(|x| n - x.nodes_with_role("m").len().min(n))
            .sum();
        polls += 1;
        if lacking > 0 {
            lacking_polls += 1;
            worst = worst.max(lacking);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let el = start.elapsed().as_secs_f64();
    let cpu = (cpu_secs() - cpu0) / el / n as f64;
    let sent = total(|s| s.bytes_sent) - sent0;
    let packets = total(|s| s.packets_sent) - packets0;
    let recv = total(|s| s.bytes_received) - recv0;
    let mem = rss_bytes().saturating_sub(before) as f64 / n as f64;
    // One join, then its crash.
    let bound = Duration::from_secs(120);
    let j0 = Instant::now();
    let joiner = builder(&cluster, "joiner", &setup)
        .seeds(seeds(&mut rng, &nodes))
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
    let largest = net
        .as_ref()
        .map_or("-".into(), |net| format!("{} B", net.largest_packet()));
    println!(
        "| {n} | {} | {:.1} s (started in {:.1} s) | {} | {} | {:.1} KB/s | {:.1} KB/s | {:.1} /s | {:.0} B | {largest} | {:.2} % | {:.0} KB |",
        show_ms(interval),
        formed.as_secs_f64(),
        started.as_secs_f64(),
        show(join),
        show(crash),
        sent as f64 / el / n as f64 / 1e3,
        recv as f64 / el / n as f64 / 1e3,
        packets as f64 / el / n as f64,
        sent as f64 / packets.max(1) as f64,
        cpu * 100.0,
        mem / 1e3
    );
    if !dropped.is_empty() {
        println!("<!-- N = {n}{dropped} -->");
    }
    println!(
        "<!-- N = {n}: after forming, over {secs} s, views lacked a live member in \
         {lacking_polls} of {polls} looks (every 250 ms), at worst {worst} (node, member) pairs \
         of {} -->",
        n * n
    );
    for x in &nodes {
        x.kill();
    }
    drop(nodes);
    // Let the sockets and tasks go before the next N.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Some(Point {
        n,
        formed: formed.as_secs_f64(),
        join: join.map(|d| d.as_secs_f64()),
        crash: crash.map(|d| d.as_secs_f64()),
        sent: sent as f64 / el / n as f64,
        per_packet: sent as f64 / packets.max(1) as f64,
        mem,
        cpu,
    })
}

fn show_ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// The exponent k of `y ~ N^k` fitted by least squares on the logarithms.
fn exponent(points: &[(f64, f64)]) -> Option<f64> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .filter(|(n, y)| *n > 0.0 && *y > 0.0)
        .map(|(n, y)| (n.ln(), y.ln()))
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let m = pts.len() as f64;
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / m, sy / m);
    let (num, den) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    (den > 0.0).then(|| num / den)
}

/// Prints how each figure grows with N: the fitted exponent k of `figure ~ N^k` (k near 0:
/// flat or logarithmic; 1: linear; 2: quadratic).
fn growth(points: &[Point]) {
    if points.len() < 2 {
        return;
    }
    let fit = |f: &dyn Fn(&Point) -> Option<f64>| {
        let pts: Vec<(f64, f64)> = points
            .iter()
            .filter_map(|p| Some((p.n as f64, f(p)?)))
            .collect();
        exponent(&pts).map_or("-".into(), |k| format!("N^{k:.2}"))
    };
    println!(
        "\ngrowth law fitted on N = {:?} (least squares on log-log; N^0 is flat, log N shows \
         as a small exponent that falls with N): time to form ~ {}, join seen by all ~ {}, \
         crash dropped by all ~ {}, gossip bytes/s per node ~ {}, bytes per packet ~ {}, \
         CPU per node ~ {}, memory per node ~ {}",
        points.iter().map(|p| p.n).collect::<Vec<_>>(),
        fit(&|p| Some(p.formed)),
        fit(&|p| p.join),
        fit(&|p| p.crash),
        fit(&|p| Some(p.sent)),
        fit(&|p| Some(p.per_packet)),
        fit(&|p| Some(p.cpu)),
        fit(&|p| Some(p.mem)),
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_exponent_of_a_power_law_is_recovered() {
        let pts: Vec<(f64, f64)> = [100.0, 250.0, 1000.0]
            .iter()
            .map(|&n: &f64| (n, 3.0 * n.powf(1.5)))
            .collect();
        let k = super::exponent(&pts).unwrap();
        assert!((k - 1.5).abs() < 1e-9, "{k}");
        assert!(super::exponent(&pts[..1]).is_none());
    }
}

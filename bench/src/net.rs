//! `bench net`: membership over lossy, slow links. N node processes (default 32), each on its
//! own network-namespace host, joined by a user-space switch that delays every frame by
//! 2 ms +/- 1 ms and drops it with the given probability (see `easy_rpc_tests::netem`; the
//! same impairment as `tc netem delay 2ms 1ms loss N%` on every host's link). For each loss
//! rate: the time until a new node is seen up by every node, a graceful leave seen by every
//! node, a crash (SIGKILL) seen down by every node, and the live nodes declared down during a
//! quiet window. Needs root and `ip` (iproute2).
//!
//! ```text
//! bench net [--nodes N] [--loss 0,1,5] [--trials T] [--minutes M] [--asymmetric]
//! ```

use std::time::Duration;

use easy_rpc_tests::netem::Impairment;
use easy_rpc_tests::netns::Net;

use crate::fleet::{Fleet, now_us};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Percentiles (ms) of microsecond samples: p50, p99, max, count.
pub(crate) fn pct(mut v: Vec<u64>) -> String {
    if v.is_empty() {
        return "none | | | 0".into();
    }
    v.sort_unstable();
    let n = v.len();
    let at = |q: f64| v[((q * n as f64).ceil() as usize).clamp(1, n) - 1] as f64 / 1e3;
    format!(
        "{:.0} ms | {:.0} ms | {:.0} ms | {n}",
        at(0.5),
        at(0.99),
        v[n - 1] as f64 / 1e3
    )
}

pub fn run(args: &[String]) {
    let nodes: usize = arg(args, "--nodes", 32);
    let trials: usize = arg(args, "--trials", 5);
    let minutes: f64 = arg(args, "--minutes", 0.5);
    let losses: Vec<f64> = arg(args, "--loss", "0,1,5".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("# membership over lossy links\n");
    println!(
        "{nodes} node processes on network-namespace hosts, every frame delayed 2 ms +/- 1 ms and \
         dropped at the given rate (user-space switch); gossip settings from CLUSTER_* or the \
         defaults (every 250 ms, phi 8); times from the signal (or the spawn) to the last node \
         that saw it; {}\n",
        crate::procs::machine()
    );
    println!("| loss | figure | p50 | p99 | max | trials |\n| --- | --- | --- | --- | --- | --- |");
    for loss in losses {
        one(nodes, loss, trials, minutes);
    }
    if args.iter().any(|a| a == "--asymmetric") {
        asymmetric(nodes.min(16), &[20.0, 50.0, 100.0]);
    }
}

fn new_net(hosts: usize) -> Net {
    Net::emulated(hosts).unwrap_or_else(|e| {
        eprintln!("bench net needs root and iproute2 (network namespaces): {e}");
        std::process::exit(2)
    })
}

fn spawn_on(fleet: &mut Fleet, net: &Net, host: usize, name: &str) -> usize {
    fleet.spawn(
        &net.exec_prefix(host),
        name,
        &format!("{}:0", net.addr(host)),
    )
}

fn one(nodes: usize, loss: f64, trials: usize, minutes: f64) {
    // Hosts 0..nodes-1 run the cluster; host `nodes - 1` also takes the joiners in turn.
    let net = new_net(nodes);
    net.impair_all(Impairment::netem(2.0, 1.0, loss));
    let mut fleet = Fleet::new(format!("bench-net-{}-{loss}", std::process::id()));
    for i in 0..nodes - 1 {
        spawn_on(&mut fleet, &net, i, &format!("n{i:02}"));
    }
    let within = Duration::from_secs(120);
    let Some(took) = fleet.converge(within) else {
        println!(
            "| {loss} % | {} nodes did not converge within {within:?} | | | | |",
            nodes - 1
        );
        return;
    };
    eprintln!("net {loss} %: {} nodes converged in {took:?}", nodes - 1);
    let bound = Duration::from_secs(30);
    let (mut joins, mut leaves, mut crashes) = (Vec::new(), Vec::new(), Vec::new());
    let mut missed = 0;
    for t in 0..trials {
        // A new node on the spare host: seen up by all, then leaves.
        let name = format!("j{t:02}");
        let j = spawn_on(&mut fleet, &net, nodes - 1, &name);
        let spawned = fleet.procs[j].spawned_us;
        match fleet.seen_by_all(&["UP"], &name, spawned, bound) {
            Some(at) => joins.push(at - spawned),
            None => missed += 1,
        }
        std::thread::sleep(Duration::from_millis(500));
        let t0 = fleet.stop(j, "TERM");
        match fleet.seen_by_all(&["LEAVING", "DOWN"], &name, t0, bound) {
            Some(at) => leaves.push(at - t0),
            None => missed += 1,
        }
        fleet.reap(j, Duration::from_secs(10));
        // A crash of a cluster node, replaced by a new node on its host.
        // Never the first node: it is every joiner's seed.
        let victim = (1..fleet.procs.len())
            .find(|&i| fleet.procs[i].alive)
            .expect("a live node");
        let host = fleet.procs[victim].name[1..].parse::<usize>().ok();
        let victim_name = fleet.procs[victim].name.clone();
        let t0 = fleet.stop(victim, "KILL");
        match fleet.seen_by_all(&["DOWN"], &victim_name, t0, bound) {
            Some(at) => crashes.push(at - t0),
            None => missed += 1,
        }
        fleet.reap(victim, Duration::from_secs(10));
        if let Some(host) = host {
            spawn_on(&mut fleet, &net, host, &format!("r{host:02}-{t}"));
        }
        if fleet.converge(within).is_none() {
            eprintln!("net {loss} %: no convergence after trial {t}");
        }
    }
    // A quiet window: nobody stops.
    let t0 = now_us();
    std::thread::sleep(Duration::from_secs_f64(minutes * 60.0));
    let downs = fleet.false_downs(t0);
    let stats = net.switch_stats();
    println!(
        "| {loss} % | join: new node seen up by all, N = {nodes} | {} |",
        pct(joins)
    );
    println!(
        "| {loss} % | graceful leave seen by all | {} |",
        pct(leaves)
    );
    println!(
        "| {loss} % | crash (SIGKILL) seen down by all | {} |",
        pct(crashes)
    );
    let (stalls, in_stalls, other) = crate::fleet::classify(&downs, 5);
    println!(
        "| {loss} % | live nodes declared down in {minutes} min ({} observers) | {} | | | {stalls} observer stalls ({in_stalls} downs), {other} single downs |",
        nodes - 1,
        downs.len(),
    );
    for (o, n, at) in downs.iter().take(20) {
        eprintln!("false down: {o} declared {n} down at {at} us");
    }
    eprintln!(
        "net {loss} %: {missed} trials not seen by all within {bound:?}; switch {stats:?}, drop rate {:.2} %",
        100.0 * stats.dropped as f64 / (stats.dropped + stats.delivered).max(1) as f64
    );
    fleet.kill_all();
}

/// Two groups; frames from group A to group B are lost at each rate in turn (B to A unharmed):
/// what each side sees, and how long the cluster takes to heal once the loss is removed.
fn asymmetric(nodes: usize, rates: &[f64]) {
    println!(
        "\n| one-way loss A -> B ({nodes} nodes, two groups) | live nodes declared down in 30 s | healed (all see all) after the loss is removed |\n| --- | --- | --- |"
    );
    for &rate in rates {
        let net = new_net(nodes);
        net.impair_all(Impairment::netem(2.0, 1.0, 0.0));
        let mut fleet = Fleet::new(format!("bench-asym-{}-{rate}", std::process::id()));
        for i in 0..nodes {
            spawn_on(&mut fleet, &net, i, &format!("n{i:02}"));
        }
        if fleet.converge(Duration::from_secs(120)).is_none() {
            println!("| {rate} % | did not converge | |");
            continue;
        }
        let a: Vec<usize> = (0..nodes / 2).collect();
        let b: Vec<usize> = (nodes / 2..nodes).collect();
        let t0 = now_us();
        net.impair(&a, &b, Impairment::netem(2.0, 1.0, rate));
        std::thread::sleep(Duration::from_secs(30));
        let downs = fleet.false_downs(t0);
        net.impair_all(Impairment::netem(2.0, 1.0, 0.0));
        let healed = fleet.converge(Duration::from_secs(60));
        let (stalls, _, other) = crate::fleet::classify(&downs, 5);
        println!(
            "| {rate} % | {} ({stalls} observer bursts, {other} single) | {} |",
            downs.len(),
            healed.map_or("not within 60 s".into(), |d| format!(
                "{:.1} s",
                d.as_secs_f64()
            ))
        );
        fleet.kill_all();
    }
}

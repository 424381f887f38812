//! `bench rpc`: calls per second of easy-rpc against a standalone plain tarpc, in tarpc's own
//! harness (one connection, D spawned caller tasks calling back to back), in rounds that
//! alternate the sides, with the ratio taken per round. The sides: plain tarpc, plain tarpc
//! over a node's sealed stream, easy-rpc, and easy-rpc with call encryption off
//! (`NodeBuilder::unencrypted_calls`, like for like with plain tarpc).
//!
//! Every side is processes of its own: a plain-tarpc server and client (no node of ours in
//! them), easy-rpc servers and an easy-rpc client node. During a round of one side, the other
//! side's processes are stopped (SIGSTOP), so that nothing of the other side runs on its core
//! (a stop lasts one round, about a second: far below what the failure detector notices).

use serde_json::Value;

use crate::procs::Proc;

/// How the processes are placed on the machine.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Placement {
    SameCore(usize),
    Unpinned,
}

impl Placement {
    fn prefix(self) -> Vec<String> {
        match self {
            Placement::SameCore(core) => vec!["taskset".into(), "-c".into(), core.to_string()],
            Placement::Unpinned => Vec::new(),
        }
    }

    fn describe(self) -> String {
        match self {
            Placement::SameCore(core) => format!(
                "same core: every process (plain-tarpc server and client, easy-rpc servers and \
                 client) pinned to core {core} with `taskset -c {core}` (the process that \
                 starts them and reads their figures is not pinned; it waits between rounds)"
            ),
            Placement::Unpinned => "unpinned: the scheduler places every process".into(),
        }
    }
}

/// One side's processes: the client first.
pub(crate) struct Side(pub(crate) Vec<Proc>);

impl Side {
    pub(crate) fn client(&mut self) -> &mut Proc {
        &mut self.0[0]
    }
    pub(crate) fn pause(&self) {
        self.0.iter().for_each(Proc::pause);
    }
    pub(crate) fn resume(&self) {
        self.0.iter().for_each(Proc::resume);
    }
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// `a` and `b` in alternating rounds (a first), each on its own with the other paused.
pub(crate) fn paired(
    a: &mut Side,
    cmd_a: &str,
    b: &mut Side,
    cmd_b: &str,
    rounds: usize,
) -> Vec<(Value, Value)> {
    rotated(&mut [a, b], &[cmd_a, cmd_b], rounds)
        .into_iter()
        .map(|round| {
            let [x, y]: [Value; 2] = round.try_into().expect("two sides");
            (x, y)
        })
        .collect()
}

/// `sides` in rounds, each round every side once in order, each on its own with the others
/// paused; `cmds[i]` is side `i`'s command. One answer per side per round.
pub(crate) fn rotated(sides: &mut [&mut Side], cmds: &[&str], rounds: usize) -> Vec<Vec<Value>> {
    let mut out = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let mut round = Vec::with_capacity(sides.len());
        for i in 0..sides.len() {
            for (j, side) in sides.iter().enumerate() {
                if j != i {
                    side.pause();
                }
            }
            sides[i].resume();
            round.push(sides[i].client().ask_json(cmds[i]));
        }
        out.push(round);
    }
    sides.iter().for_each(|side| side.resume());
    out
}

/// Rounds of several sides as the pairs of sides `x` and `y`, for [`row`].
fn pairs_of(rounds: &[Vec<Value>], x: usize, y: usize) -> Vec<(Value, Value)> {
    rounds
        .iter()
        .map(|r| (r[x].clone(), r[y].clone()))
        .collect()
}

/// One table row: each side's median, the per-round ratios' median and range.
pub(crate) fn row(figure: &str, pairs: &[(Value, Value)], key: &str, unit: &str, goal: &str) {
    let xs: Vec<f64> = pairs.iter().map(|(x, _)| f(x, key)).collect();
    let ys: Vec<f64> = pairs.iter().map(|(_, y)| f(y, key)).collect();
    let ratios: Vec<f64> = xs.iter().zip(&ys).map(|(x, y)| y / x).collect();
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let fmt = |v: f64| {
        if unit.is_empty() {
            format!("{v:.0}")
        } else {
            format!("{v:.1} {unit}")
        }
    };
    println!(
        "| {figure} | {} | {} | {:.2}x [{lo:.2}-{hi:.2}] | {goal} |",
        fmt(median(xs)),
        fmt(median(ys)),
        median(ratios)
    );
}

fn placement(p: Placement, rounds: usize, secs: f64) {
    let prefix = p.prefix();
    let cluster = format!("bench-rpc-{}-{}", std::process::id(), prefix.len());
    let (tserver, taddr) = Proc::spawn("tarpc server", &prefix, &["rpc-server", "tarpc"]);
    let (tclient, _) = Proc::spawn("tarpc client", &prefix, &["rpc-client", "tarpc", &taddr]);
    let mut tarpc = Side(vec![tclient, tserver]);
    let (sserver, saddr) = Proc::spawn(
        "sealed tarpc server",
        &prefix,
        &["rpc-server", "tarpc-sealed"],
    );
    let (sclient, _) = Proc::spawn(
        "sealed tarpc client",
        &prefix,
        &["rpc-client", "tarpc-sealed", &saddr],
    );
    let mut sealed = Side(vec![sclient, sserver]);
    let (s0, seed) = Proc::spawn(
        "easy-rpc server 0",
        &prefix,
        &["rpc-server", "easy", &cluster, "adder-0", "r1,r4,r8"],
    );
    let (eclient, _) = Proc::spawn(
        "easy-rpc client",
        &prefix,
        &["rpc-client", "easy", &cluster, &seed],
    );
    let mut easy = Side(vec![eclient, s0]);
    easy.client().ask("wait r1 1");
    // easy-rpc with call encryption off: a cluster of its own (its nodes refuse sealed ones).
    let ucluster = format!("{cluster}-unencrypted");
    let (u0, useed) = Proc::spawn(
        "unencrypted easy-rpc server",
        &prefix,
        &[
            "rpc-server",
            "easy",
            &ucluster,
            "adder-u0",
            "r1",
            crate::rpc::UNENCRYPTED,
        ],
    );
    let (uclient, _) = Proc::spawn(
        "unencrypted easy-rpc client",
        &prefix,
        &[
            "rpc-client",
            "easy",
            &ucluster,
            &useed,
            crate::rpc::UNENCRYPTED,
        ],
    );
    let mut unencrypted = Side(vec![uclient, u0]);
    unencrypted.client().ask("wait r1 1");

    println!("\n## {}\n", p.describe());
    println!(
        "Every side: single-threaded tokio runtimes, loopback TCP with TCP_NODELAY, postcard; \
         one connection, D spawned caller tasks calling back to back. Plain tarpc: its own \
         server and client processes. Sealed tarpc: the same, over the stream a node's \
         connection uses after its handshake (Noise, every frame sealed with AES-GCM), which \
         every easy-rpc call pays for. easy-rpc: `node.any(role).add(..)` from a client node \
         that found the servers by gossip. Unencrypted easy-rpc: the same, both nodes with \
         call encryption off (`unencrypted_calls`: the handshake, then tarpc's frames in \
         clear), like for like with plain tarpc. {rounds} rounds of {secs} s per side, in \
         turn (plain tarpc, sealed tarpc, easy-rpc, unencrypted easy-rpc); the other sides' \
         processes are stopped (SIGSTOP) during a round. Ratio: per round, median \
         [min-max].\n"
    );
    println!("| figure | baseline | easy-rpc | ratio | goal |\n| --- | --- | --- | --- | --- |");
    // Warm-up, not recorded.
    rotated(
        &mut [&mut tarpc, &mut sealed, &mut easy, &mut unencrypted],
        &[
            "run plain 1 0.2",
            "run plain 1 0.2",
            "run r1 1 0.2",
            "run r1 1 0.2",
        ],
        1,
    );

    let one = rotated(
        &mut [&mut tarpc, &mut sealed, &mut easy, &mut unencrypted],
        &[
            &format!("run plain 1 {secs}"),
            &format!("run plain 1 {secs}"),
            &format!("run r1 1 {secs}"),
            &format!("run r1 1 {secs}"),
        ],
        rounds,
    );
    row(
        "`any()`, 1 node, 1 in flight, calls/s, vs plain tarpc",
        &pairs_of(&one, 0, 2),
        "rate",
        "",
        ">= 0.97x",
    );
    row(
        "`any()`, 1 node, 1 in flight, calls/s, vs sealed tarpc",
        &pairs_of(&one, 1, 2),
        "rate",
        "",
        "reported",
    );
    row(
        "sealed tarpc vs plain tarpc (the encryption), 1 in flight, calls/s",
        &pairs_of(&one, 0, 1),
        "rate",
        "",
        "reported",
    );
    row(
        "`any()`, 1 node, 1 in flight, p50 latency, vs plain tarpc",
        &pairs_of(&one, 0, 2),
        "p50_us",
        "µs",
        "<= 1.1x",
    );
    row(
        "unencrypted `any()`, 1 node, 1 in flight, calls/s, vs plain tarpc",
        &pairs_of(&one, 0, 3),
        "rate",
        "",
        "reported",
    );
    row(
        "unencrypted `any()`, 1 node, 1 in flight, p50 latency, vs plain tarpc",
        &pairs_of(&one, 0, 3),
        "p50_us",
        "µs",
        "reported",
    );
    let d64 = rotated(
        &mut [&mut tarpc, &mut sealed, &mut easy, &mut unencrypted],
        &[
            &format!("run plain 64 {secs}"),
            &format!("run plain 64 {secs}"),
            &format!("run r1 64 {secs}"),
            &format!("run r1 64 {secs}"),
        ],
        rounds,
    );
    row(
        "`any()`, 1 node, 64 in flight, calls/s, vs plain tarpc",
        &pairs_of(&d64, 0, 2),
        "rate",
        "",
        ">= 0.95x",
    );
    row(
        "`any()`, 1 node, 64 in flight, calls/s, vs sealed tarpc",
        &pairs_of(&d64, 1, 2),
        "rate",
        "",
        "reported",
    );
    row(
        "sealed tarpc vs plain tarpc (the encryption), 64 in flight, calls/s",
        &pairs_of(&d64, 0, 1),
        "rate",
        "",
        "reported",
    );
    row(
        "unencrypted `any()`, 1 node, 64 in flight, calls/s, vs plain tarpc",
        &pairs_of(&d64, 0, 3),
        "rate",
        "",
        "reported",
    );
    // Only the plain baseline from here on.
    sealed.pause();
    unencrypted.pause();

    // Allocations per call, client side: counted, so one run each is enough.
    let t_alloc = f(
        &tarpc.client().ask_json("count plain 1 10000"),
        "allocs_per_call",
    );
    let n_alloc = f(
        &tarpc.client().ask_json("count naive 1 10000"),
        "allocs_per_call",
    );
    let e_alloc = f(
        &easy.client().ask_json("count r1 1 10000"),
        "allocs_per_call",
    );
    println!(
        "| allocations per call, client process | {t_alloc:.1} (a naïve role-aware wrapper: {n_alloc:.1}) | {e_alloc:.1} | | < naïve wrapper |"
    );

    // Four server nodes.
    for i in 1..4 {
        let name = format!("adder-{i}");
        let (s, _) = Proc::spawn(
            "easy-rpc server",
            &prefix,
            &["rpc-server", "easy", &cluster, &name, "r4,r8", &seed],
        );
        easy.0.push(s);
    }
    easy.client().ask("wait r4 4");
    paired(&mut tarpc, "run plain 1 0.2", &mut easy, "run r4 1 0.2", 1);
    let four1 = paired(
        &mut tarpc,
        &format!("run plain 1 {secs}"),
        &mut easy,
        &format!("run r4 1 {secs}"),
        rounds,
    );
    row(
        "`any()` over 4 nodes, 1 in flight, calls/s (plain tarpc: 1 server)",
        &four1,
        "rate",
        "",
        "reported",
    );
    let four64 = paired(
        &mut tarpc,
        &format!("run plain 64 {secs}"),
        &mut easy,
        &format!("run r4 64 {secs}"),
        rounds,
    );
    row(
        "`any()` over 4 nodes, 64 in flight, calls/s (plain tarpc: 1 server)",
        &four64,
        "rate",
        "",
        ">= 0.9x",
    );

    // Eight server nodes: `all` against `any()` of the same role, both easy-rpc.
    for i in 4..8 {
        let name = format!("adder-{i}");
        let (s, _) = Proc::spawn(
            "easy-rpc server",
            &prefix,
            &["rpc-server", "easy", &cluster, &name, "r8", &seed],
        );
        easy.0.push(s);
    }
    tarpc.pause();
    easy.client().ask("wait r8 8");
    easy.client().ask("run r8 1 0.2");
    easy.client().ask("all r8 8 0.2");
    let mut pairs = Vec::new();
    for _ in 0..rounds {
        let any = easy.client().ask_json(&format!("run r8 1 {secs}"));
        let all = easy.client().ask_json(&format!("all r8 8 {secs}"));
        pairs.push((any, all));
    }
    tarpc.resume();
    sealed.resume();
    unencrypted.resume();
    let per_node_call = |v: &Value| f(v, "cpu_ns") / f(v, "node_calls");
    let ratios: Vec<f64> = pairs
        .iter()
        .map(|(a, b)| per_node_call(b) / per_node_call(a))
        .collect();
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    println!(
        "| `all` over 8 nodes: client CPU per node-call vs one `any()` over the same 8 | `any()`: {:.1} µs | `all`: {:.1} µs per node | {:.2}x [{lo:.2}-{hi:.2}] | <= 1.2x |",
        median(pairs.iter().map(|(a, _)| per_node_call(a) / 1e3).collect()),
        median(pairs.iter().map(|(_, b)| per_node_call(b) / 1e3).collect()),
        median(ratios)
    );
    let p50 = |i: usize| {
        median(
            pairs
                .iter()
                .map(|p| f(if i == 0 { &p.0 } else { &p.1 }, "p50_us"))
                .collect(),
        )
    };
    let lat: Vec<f64> = pairs
        .iter()
        .map(|(a, b)| f(b, "p50_us") / f(a, "p50_us"))
        .collect();
    println!(
        "| `all` over 8 nodes, p50 latency vs one `any()` | `any()`: {:.1} µs | `all`: {:.1} µs | {:.2}x | <= 3x |",
        p50(0),
        p50(1),
        median(lat)
    );
}

/// `bench rpc [--quick] [--placement same-core|unpinned|both] [--core N] [--rounds N]
/// [--secs S]` (`--same-core`: `--placement same-core`).
pub fn run(args: &[String]) {
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let quick = args.iter().any(|a| a == "--quick");
    let rounds: usize = opt("--rounds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 4 } else { 10 });
    let secs: f64 = opt("--secs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 0.5 } else { 1.0 });
    let core: usize = opt("--core").and_then(|v| v.parse().ok()).unwrap_or(0);
    let which = if args.iter().any(|a| a == "--same-core") {
        "same-core".to_owned()
    } else {
        opt("--placement").unwrap_or_else(|| "both".into())
    };
    let placements: Vec<Placement> = match which.as_str() {
        "same-core" => vec![Placement::SameCore(core)],
        "unpinned" => vec![Placement::Unpinned],
        "both" => vec![Placement::SameCore(core), Placement::Unpinned],
        other => panic!("--placement same-core|unpinned|both, not {other}"),
    };
    if placements.contains(&Placement::SameCore(core)) {
        let ok = std::process::Command::new("taskset")
            .args(["-c", &core.to_string(), "true"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "taskset -c {core} failed: install util-linux, or pick --core"
        );
    }
    println!("# easy-rpc calls against standalone plain tarpc\n");
    println!("machine: {}", crate::procs::machine());
    for p in placements {
        placement(p, rounds, secs);
    }
}

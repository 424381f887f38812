//! `bench layers`: `any()` calls per second from a node with no client layer against a node
//! with one, tower's `ConcurrencyLimitLayer::new(1024)`, to the same easy-rpc server, in
//! alternating rounds with the ratio taken per round (the figure "`any()` with one
//! `ConcurrencyLimit` layer vs no layer", goal >= 0.9x).
//!
//! Three processes: one server and the two client nodes. During a round of one client the
//! other is stopped (SIGSTOP), as in `bench rpc`. Whether the unlayered path costs anything
//! over a build without layers at all is the instruction count's question (`bench instr`,
//! `bench guard`), not this one's.

use crate::procs::Proc;
use crate::timing::{Side, paired, row};

/// `bench layers [--quick] [--rounds N] [--secs S] [--core N]` (`--core`: every process
/// pinned to that core with `taskset`; default unpinned).
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
    let prefix: Vec<String> = match opt("--core") {
        Some(core) => vec!["taskset".into(), "-c".into(), core],
        None => Vec::new(),
    };
    let cluster = format!("bench-layers-{}", std::process::id());
    let (server, seed) = Proc::spawn(
        "easy-rpc server",
        &prefix,
        &["rpc-server", "easy", &cluster, "adder-0", "r1"],
    );
    let (plain, _) = Proc::spawn(
        "easy-rpc client, no layer",
        &prefix,
        &["rpc-client", "easy", &cluster, &seed],
    );
    let (layered, _) = Proc::spawn(
        "easy-rpc client, ConcurrencyLimit layer",
        &prefix,
        &["rpc-client", "easy", &cluster, &seed, "--concurrency-layer"],
    );
    let mut none = Side(vec![plain]);
    let mut one = Side(vec![layered]);
    none.client().ask("wait r1 1");
    one.client().ask("wait r1 1");

    println!("# easy-rpc client layers: none vs one tower ConcurrencyLimit(1024)\n");
    println!("machine: {}\n", crate::procs::machine());
    println!(
        "One easy-rpc server node, two client nodes calling `node.any(role).add(..)`: one with \
         no client layer, one with `client_layer(ConcurrencyLimitLayer::new(1024))`. D spawned \
         caller tasks calling back to back. {rounds} rounds of {secs} s per client, \
         alternating (no layer first); the other client is stopped (SIGSTOP) during a round. \
         {}. Ratio: layered / no layer per round, median [min-max].\n",
        if prefix.is_empty() {
            "Unpinned"
        } else {
            "Every process pinned to one core"
        }
    );
    println!("| figure | no layer | ConcurrencyLimit layer | ratio | goal |");
    println!("| --- | --- | --- | --- | --- |");
    // Warm-up, not recorded.
    paired(&mut none, "run r1 1 0.2", &mut one, "run r1 1 0.2", 1);
    for depth in [1, 64] {
        let cmd = format!("run r1 {depth} {secs}");
        let pairs = paired(&mut none, &cmd, &mut one, &cmd, rounds);
        row(
            &format!("`any()`, 1 node, {depth} in flight, calls/s"),
            &pairs,
            "rate",
            "",
            ">= 0.9x",
        );
        if depth == 1 {
            row(
                "`any()`, 1 node, 1 in flight, p50 latency",
                &pairs,
                "p50_us",
                "µs",
                "reported",
            );
        }
    }
    let alloc = |side: &mut Side| {
        side.client().ask_json("count r1 1 10000")["allocs_per_call"]
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    println!(
        "| allocations per call, client process | {:.1} | {:.1} | | reported |",
        alloc(&mut none),
        alloc(&mut one)
    );
    drop(server);
}

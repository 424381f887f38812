//! Admission control under overload, over real processes: 4 `rpc_node` processes, each
//! running at most 2 requests at once with 2 more waiting (`CLUSTER_RPC_MAX_RUNNING`,
//! `CLUSTER_RPC_MAX_QUEUED`), each request taking 100 ms: a capacity of 80 calls/s. Calls
//! arrive at a fixed rate (open loop, as independent users would send them), first at half the
//! capacity, then at three times it. A node that is full answers "not run: overloaded" and the
//! caller tries another; only a call that every node refused fails, fast, with that typed
//! error.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use easy_rpc::{Node, NotRunReason, RpcError};
use easy_rpc_tests::churn::WorkClient;
use easy_rpc_tests::cluster::{init_logs, rpc_builder, unique_cluster, wait_until};
use easy_rpc_tests::process::NodeProcess;

const EXE: &str = env!("CARGO_BIN_EXE_rpc_node");
const NODES: usize = 4;
const RUNNING: usize = 2;
const WORK_MS: u64 = 100;
/// Calls per second the cluster can run.
const CAPACITY: f64 = (NODES * RUNNING) as f64 * 1000.0 / WORK_MS as f64;

struct Phase {
    /// Calls that succeeded, with their latencies.
    ok: Vec<Duration>,
    /// Calls that failed: the error's kind and how long it took.
    failed: Vec<(String, Duration)>,
    /// Calls that failed with anything but "not run: overloaded".
    other: Vec<String>,
    secs: f64,
}

fn p99(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get((v.len() * 99 / 100).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// Calls `exec` at `rate` per second for `secs` seconds, ids from `first`, each with a 2 s
/// deadline.
async fn offer(node: &Node, rate: f64, secs: f64, first: u64) -> Phase {
    let target = node.any("work").timeout(Duration::from_secs(2));
    let n = (rate * secs) as u64;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut calls = Vec::with_capacity(n as usize);
    for id in first..first + n {
        ticks.tick().await;
        let target = target.clone();
        calls.push(tokio::spawn(async move {
            let started = Instant::now();
            let r = target.exec(id, WORK_MS).await;
            (started.elapsed(), r)
        }));
    }
    let mut phase = Phase {
        ok: Vec::new(),
        failed: Vec::new(),
        other: Vec::new(),
        secs,
    };
    for call in calls {
        let (took, r) = call.await.unwrap();
        match r {
            Ok(_) => phase.ok.push(took),
            Err(e) => {
                if !matches!(
                    e,
                    RpcError::NotRun {
                        reason: NotRunReason::Overloaded,
                        ..
                    }
                ) {
                    phase.other.push(e.to_string());
                }
                phase.failed.push((format!("{e:?}"), took));
            }
        }
    }
    phase
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_three_times_capacity_the_cluster_runs_at_capacity_and_sheds_the_rest_fast() {
    init_logs();
    let cluster = unique_cluster("overload");
    let node = rpc_builder(&cluster, "caller").start().await.unwrap();
    let seed = node.gossip_addr().to_string();
    let procs: Vec<NodeProcess> = (0..NODES)
        .map(|i| {
            NodeProcess::spawn(
                EXE,
                &format!("o-{i}"),
                &[
                    ("CLUSTER_NAME", cluster.clone()),
                    ("CLUSTER_ROLES", "work".to_owned()),
                    ("CLUSTER_SEEDS", seed.clone()),
                    ("CLUSTER_RPC_MAX_RUNNING", RUNNING.to_string()),
                    ("CLUSTER_RPC_MAX_QUEUED", RUNNING.to_string()),
                ],
            )
        })
        .collect();
    wait_until(
        Duration::from_secs(20),
        "the caller sees every node",
        || node.nodes_with_role("work").len() == NODES,
    )
    .await;
    // Warm the connections.
    for id in 0..20 {
        node.any("work").exec(id, 0).await.unwrap();
    }

    let light = offer(&node, CAPACITY * 0.5, 2.0, 1_000).await;
    assert!(
        light.failed.is_empty(),
        "at half capacity: {:?}",
        light.failed
    );
    let heavy = offer(&node, CAPACITY * 3.0, 3.0, 100_000).await;

    let goodput = heavy.ok.len() as f64 / heavy.secs;
    let shed: Vec<Duration> = heavy.failed.iter().map(|(_, d)| *d).collect();
    println!(
        "capacity {CAPACITY:.0} calls/s. At 0.5x: {} calls, p99 {:?}. At 3x ({:.0} calls/s \
         offered): goodput {goodput:.0} calls/s ({:.2}x capacity), p99 of accepted {:?} \
         ({:.2}x the p99 at 0.5x), {} shed with NotRun(Overloaded), p99 of shed {:?}",
        light.ok.len(),
        p99(&light.ok),
        CAPACITY * 3.0,
        goodput / CAPACITY,
        p99(&heavy.ok),
        p99(&heavy.ok).as_secs_f64() / p99(&light.ok).as_secs_f64(),
        heavy.failed.len(),
        p99(&shed),
    );
    assert!(
        heavy.other.is_empty(),
        "{:?}",
        &heavy.other[..heavy.other.len().min(5)]
    );
    assert!(goodput >= 0.9 * CAPACITY, "goodput {goodput:.0}");
    assert!(
        p99(&heavy.ok) <= p99(&light.ok) * 3,
        "{:?} vs {:?}",
        p99(&heavy.ok),
        p99(&light.ok)
    );
    // Shedding is fast: far below the calls' 2 s deadline (it takes a round trip per node).
    assert!(p99(&shed) < Duration::from_millis(500), "{:?}", p99(&shed));

    // No call ran twice, every success ran once.
    let mut runs: HashMap<u64, usize> = HashMap::new();
    for p in &procs {
        for l in p.output() {
            if let Some(rest) = l.strip_prefix("EXEC ") {
                let id: u64 = rest.split_whitespace().next().unwrap().parse().unwrap();
                *runs.entry(id).or_default() += 1;
            }
        }
    }
    assert!(runs.values().all(|n| *n == 1), "a call ran twice");
    assert!(runs.len() >= heavy.ok.len() + light.ok.len());
    node.shutdown().await;
    drop(procs);
}

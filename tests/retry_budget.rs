//! The retry budget, over real processes: every node of the role is slow (each request takes
//! 200 ms) and callers give each attempt 50 ms (`attempt_timeout`) with up to 5 retries, so
//! without a budget every call would be sent to every node. With a budget of 20 % of the calls
//! (and a floor of 1 retry a second), the nodes receive at most that many extra requests.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use easy_rpc::ClientOptions;
use easy_rpc_tests::churn::WorkClient;
use easy_rpc_tests::cluster::{init_logs, rpc_builder, unique_cluster, wait_until};
use easy_rpc_tests::process::NodeProcess;

const EXE: &str = env!("CARGO_BIN_EXE_rpc_node");
const CALLS: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_node_is_slow_retries_stay_within_the_budget() {
    init_logs();
    let cluster = unique_cluster("retry-budget");
    let node = rpc_builder(&cluster, "caller")
        .client_options(
            ClientOptions::default()
                .retries(5)
                .retry_budget(0.2)
                .min_retries_per_sec(1),
        )
        .start()
        .await
        .unwrap();
    let seed = node.gossip_addr().to_string();
    let procs: Vec<NodeProcess> = (0..3)
        .map(|i| {
            NodeProcess::spawn(
                EXE,
                &format!("s-{i}"),
                &[
                    ("CLUSTER_NAME", cluster.clone()),
                    ("CLUSTER_ROLES", "work".to_owned()),
                    ("CLUSTER_SEEDS", seed.clone()),
                ],
            )
        })
        .collect();
    wait_until(
        Duration::from_secs(20),
        "the caller sees every node",
        || node.nodes_with_role("work").len() == 3,
    )
    .await;
    // Connections first, so that no attempt's time goes to connecting.
    for _ in 0..6 {
        node.any("work").whoami().await.unwrap();
    }

    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let target = node
                .any("work")
                .attempt_timeout(Duration::from_millis(50))
                .timeout(Duration::from_secs(2));
            let next = next.clone();
            tokio::spawn(async move {
                let mut failed = 0u64;
                loop {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    if id >= CALLS {
                        return failed;
                    }
                    if target.slow(id, 200).await.is_err() {
                        failed += 1;
                    }
                }
            })
        })
        .collect();
    let mut failed = 0;
    for t in tasks {
        failed += t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    // Let the last attempts reach the nodes' logs.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut requests = 0u64;
    let mut calls_seen = HashSet::new();
    for p in &procs {
        for l in p.output() {
            if let Some(id) = l.strip_prefix("SLOW ") {
                requests += 1;
                calls_seen.insert(id.trim().parse::<u64>().unwrap());
            }
        }
    }
    let extra = requests - calls_seen.len() as u64;
    let allowed = 0.2 * CALLS as f64 + secs.ceil() + 1.0;
    println!(
        "every node slow: {CALLS} calls in {secs:.1} s ({failed} timed out), {requests} requests \
         reached the nodes: {extra} extra ({:.1} % of the calls; the budget allows {allowed:.0})",
        100.0 * extra as f64 / CALLS as f64
    );
    assert_eq!(calls_seen.len() as u64, CALLS, "every call reached a node");
    assert!(extra as f64 <= allowed, "{extra} extra requests");
    // And the budget was used: without retries there would be none.
    assert!(extra > 0, "no call was retried");
    node.shutdown().await;
    drop(procs);
}

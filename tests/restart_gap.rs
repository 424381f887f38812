//! Waiting for a role: a role with a single node, restarted under load (SIGTERM, then a new
//! process of the same name). Calls that wait for a node (`wait_for_node(true)`) all succeed,
//! each non-idempotent one run exactly once; calls that do not wait fail with `NoNodeForRole`
//! during the gap, which shows the gap is there.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use easy_rpc::RpcError;
use easy_rpc_tests::churn::WorkClient;
use easy_rpc_tests::cluster::{init_logs, rpc_builder, unique_cluster, wait_until};
use easy_rpc_tests::process::NodeProcess;

const EXE: &str = env!("CARGO_BIN_EXE_rpc_node");

fn spawn(cluster: &str, seed: &str) -> NodeProcess {
    NodeProcess::spawn(
        EXE,
        "solo",
        &[
            ("CLUSTER_NAME", cluster.to_owned()),
            ("CLUSTER_ROLES", "work".to_owned()),
            ("CLUSTER_SEEDS", seed.to_owned()),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_role_restarted_under_load_loses_no_waiting_call() {
    init_logs();
    let cluster = unique_cluster("restart-gap");
    let node = rpc_builder(&cluster, "caller").start().await.unwrap();
    let seed = node.gossip_addr().to_string();
    let first = spawn(&cluster, &seed);
    wait_until(Duration::from_secs(15), "the caller sees solo", || {
        node.nodes_with_role("work").len() == 1
    })
    .await;
    let old_id = node.nodes_with_role("work")[0].id.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(AtomicU64::new(0));
    // Four callers that wait for a node; each records what every call returned.
    let mut waiting = Vec::new();
    for _ in 0..4 {
        let target = node
            .any("work")
            .wait_for_node(true)
            .timeout(Duration::from_secs(10));
        let (stop, next_id) = (stop.clone(), next_id.clone());
        waiting.push(tokio::spawn(async move {
            let mut results = Vec::new();
            while !stop.load(Ordering::Relaxed) && results.len() < 5_000 {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                results.push((id, target.exec(id, 2).await));
            }
            results
        }));
    }
    // One caller that does not wait.
    let impatient = {
        let target = node.any("work").timeout(Duration::from_secs(10));
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut ok, mut no_node, mut other) = (0u64, 0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) && ok + no_node < 100_000 {
                match target.read(0, 2).await {
                    Ok(_) => ok += 1,
                    Err(RpcError::NoNodeForRole { .. }) => {
                        no_node += 1;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err(e) => other.push(e.to_string()),
                }
            }
            (ok, no_node, other)
        })
    };

    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut first = first;
    first.signal("TERM");
    assert_eq!(first.wait_exit(Duration::from_secs(15)).await, Some(0));
    let gap = Instant::now();
    let second = spawn(&cluster, &seed);
    wait_until(Duration::from_secs(15), "the new solo serves", || {
        node.nodes_with_role("work").iter().any(|m| m.id != old_id)
    })
    .await;
    let gap = gap.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let mut answered_by: HashMap<u64, String> = HashMap::new();
    let mut failed = Vec::new();
    for task in waiting {
        for (id, result) in task.await.unwrap() {
            match result {
                Ok(name) => {
                    answered_by.insert(id, name);
                }
                Err(e) => failed.push((id, e.to_string())),
            }
        }
    }
    assert!(failed.is_empty(), "waiting calls failed: {failed:?}");
    let (ok, no_node, other) = impatient.await.unwrap();
    println!(
        "restart gap {gap:?}: {} waiting calls, 0 failed; calls that did not wait: {ok} ok, \
         {no_node} NoNodeForRole",
        answered_by.len()
    );
    assert!(other.is_empty(), "{other:?}");
    assert!(no_node > 0, "the restart left no gap to wait through");

    // Every exec that succeeded ran exactly once, on one of the two processes.
    let mut runs: HashMap<u64, usize> = HashMap::new();
    for p in [&first, &second] {
        for l in p.output() {
            if let Some(rest) = l.strip_prefix("EXEC ") {
                let id: u64 = rest.split_whitespace().next().unwrap().parse().unwrap();
                *runs.entry(id).or_default() += 1;
            }
        }
    }
    for id in answered_by.keys() {
        assert_eq!(runs.get(id), Some(&1), "exec {id}");
    }
    assert!(runs.values().all(|n| *n == 1), "an exec ran twice");
    node.shutdown().await;
    drop(second);
}

//! Deadlines mean "not started after": requests written to a node that is stopped (SIGSTOP)
//! wait in its socket; when it resumes after their callers' deadlines, none of them starts
//! (they are dropped and counted), while requests whose callers still wait do run.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use easy_rpc::RpcError;
use easy_rpc_tests::churn::WorkClient;
use easy_rpc_tests::cluster::{init_logs, rpc_builder, unique_cluster, wait_until};
use easy_rpc_tests::process::NodeProcess;

const EXE: &str = env!("CARGO_BIN_EXE_rpc_node");

fn wall_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// `EXEC` lines of `p`: call id -> the wall-clock millisecond it started.
fn started(p: &NodeProcess) -> HashMap<u64, u128> {
    p.output()
        .iter()
        .filter_map(|l| l.strip_prefix("EXEC "))
        .map(|rest| {
            let mut it = rest.split_whitespace();
            let id = it.next().unwrap().parse().unwrap();
            let at = it.next().unwrap().parse().unwrap();
            (id, at)
        })
        .collect()
}

/// A counter from the server's last `STATS` line.
fn stat(p: &NodeProcess, key: &str) -> u64 {
    let line = p.last("STATS ").expect("a STATS line");
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} in {line}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_whose_callers_gave_up_while_the_node_was_stopped_never_start() {
    init_logs();
    let cluster = unique_cluster("deadlines");
    let node = rpc_builder(&cluster, "caller")
        // Slow failure detection: the node must stay a member while it is stopped, or its
        // calls in flight would end when it is declared down (tests/node_down.rs), before the
        // node resumes.
        .phi_threshold(60.0)
        .start()
        .await
        .unwrap();
    let server = NodeProcess::spawn(
        EXE,
        "s-0",
        &[
            ("CLUSTER_NAME", cluster.clone()),
            ("CLUSTER_ROLES", "work".to_owned()),
            ("CLUSTER_SEEDS", node.gossip_addr().to_string()),
            ("RPC_NODE_STATS_MS", "100".to_owned()),
        ],
    );
    wait_until(Duration::from_secs(15), "the caller sees s-0", || {
        node.nodes_with_role("work").len() == 1
    })
    .await;
    // The connection is made before the node stops.
    let target = node.to("s-0");
    for id in 0..10 {
        assert_eq!(target.exec(id, 0).await.unwrap(), "s-0");
    }

    server.signal("STOP");
    // Written while it is stopped: 100 calls that give up after 300 ms, 10 that wait 20 s.
    let short = target.clone().timeout(Duration::from_millis(300));
    let long = target.clone().timeout(Duration::from_secs(20));
    let mut calls = Vec::new();
    for id in 1_000..1_100u64 {
        let short = short.clone();
        calls.push(tokio::spawn(async move {
            let deadline = wall_ms() + 300;
            (id, deadline, short.exec(id, 0).await)
        }));
    }
    let mut waiting = Vec::new();
    for id in 2_000..2_010u64 {
        let long = long.clone();
        waiting.push(tokio::spawn(async move { long.exec(id, 0).await }));
    }
    let mut deadlines = HashMap::new();
    for call in calls {
        let (id, deadline, result) = call.await.unwrap();
        assert!(
            matches!(result, Err(RpcError::Timeout { .. })),
            "{id}: {result:?}"
        );
        deadlines.insert(id, deadline);
    }
    // Well past every short deadline (and the 100 ms clock-skew allowance).
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    server.signal("CONT");

    // The callers that still wait get their answers: those requests ran.
    for call in waiting {
        assert_eq!(call.await.unwrap().unwrap(), "s-0");
    }
    // None of the requests whose callers had given up started, and the node counted them.
    wait_until(
        Duration::from_secs(10),
        "the node counts the expired requests",
        || stat(&server, "expired") >= 100,
    )
    .await;
    let runs = started(&server);
    let late: Vec<_> = deadlines
        .iter()
        .filter(|(id, _)| runs.contains_key(id))
        .collect();
    assert!(
        late.is_empty(),
        "started after their callers gave up: {late:?}"
    );
    for id in 2_000..2_010u64 {
        assert!(runs.contains_key(&id), "{id} ran");
    }
    assert_eq!(stat(&server, "expired"), 100);
    // And the node serves on.
    assert_eq!(target.exec(3_000, 0).await.unwrap(), "s-0");
    node.shutdown().await;
}

//! Down means down for calls in flight: when membership declares a node down, the calls
//! waiting on it end then, not at their deadlines (idempotent ones are sent to another node at
//! once, the others fail with `NodeDown`); after a crash, requests that were never written to
//! the dead node's connection are sent elsewhere like any call that never ran.
//!
//! Over real `rpc_node` processes: a node stopped (SIGSTOP) and a node killed (SIGKILL) under
//! load, with every call's outcome and latency recorded and every non-idempotent execution
//! logged by the process that ran it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use easy_rpc::{Node, RpcError};
use easy_rpc_tests::churn::WorkClient;
use easy_rpc_tests::cluster::{init_logs, rpc_builder, unique_cluster, wait_until};
use easy_rpc_tests::process::NodeProcess;

const EXE: &str = env!("CARGO_BIN_EXE_rpc_node");

/// One scenario at a time: each loads the 2 cores on its own.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn cluster(test: &str, servers: usize) -> (Node, Vec<NodeProcess>) {
    init_logs();
    let name = unique_cluster(test);
    let node = rpc_builder(&name, "caller").start().await.unwrap();
    let seed = node.gossip_addr().to_string();
    let procs: Vec<NodeProcess> = (0..servers)
        .map(|i| {
            NodeProcess::spawn(
                EXE,
                &format!("n-{i}"),
                &[
                    ("CLUSTER_NAME", name.clone()),
                    ("CLUSTER_ROLES", "work".to_owned()),
                    ("CLUSTER_SEEDS", seed.clone()),
                ],
            )
        })
        .collect();
    wait_until(
        Duration::from_secs(20),
        "the caller sees every server",
        || node.nodes_with_role("work").len() == servers,
    )
    .await;
    (node, procs)
}

/// What one caller task saw: per call, its id, how long it took, when it ended, and its
/// outcome.
type Outcomes = Vec<(u64, Duration, Instant, Result<String, RpcError>)>;

/// `tasks` callers, each calling back to back until `stop` (at most `max` calls each):
/// idempotent `read` or non-idempotent `exec`, taking `work_ms` on the server.
fn load(
    node: &Node,
    tasks: usize,
    idempotent: bool,
    work_ms: u64,
    stop: &Arc<AtomicBool>,
    ids: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<Outcomes>> {
    (0..tasks)
        .map(|_| {
            let target = node.any("work");
            let (stop, ids) = (stop.clone(), ids.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) && seen.len() < 2_000 {
                    let id = ids.fetch_add(1, Ordering::Relaxed);
                    let started = Instant::now();
                    let r = if idempotent {
                        target.read(id, work_ms).await
                    } else {
                        target.exec(id, work_ms).await
                    };
                    seen.push((id, started.elapsed(), Instant::now(), r));
                }
                seen
            })
        })
        .collect()
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Outcomes>>) -> Outcomes {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

fn kind(e: &RpcError) -> String {
    format!("{e:?}")
        .split([' ', '{', '('])
        .next()
        .unwrap_or("?")
        .to_owned()
}

/// `EXEC` ids each process logged.
fn executions(procs: &[NodeProcess]) -> HashMap<u64, Vec<String>> {
    let mut runs: HashMap<u64, Vec<String>> = HashMap::new();
    for p in procs {
        for l in p.output() {
            if let Some(rest) = l.strip_prefix("EXEC ") {
                let id = rest.split_whitespace().next().unwrap().parse().unwrap();
                runs.entry(id).or_default().push(p.name.clone());
            }
        }
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_on_a_stopped_node_end_when_it_is_declared_down_not_at_their_deadline() {
    let _serial = SERIAL.lock().await;
    let (node, procs) = cluster("down-stop", 3).await;
    let stop = Arc::new(AtomicBool::new(false));
    let ids = Arc::new(AtomicU64::new(0));
    // Default deadline (10 s): a call left waiting on the stopped node would take all of it.
    let idempotent = load(&node, 12, true, 20, &stop, &ids);
    let other = load(&node, 4, false, 20, &stop, &ids);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let stopped_at = Instant::now();
    procs[1].signal("STOP");
    wait_until(Duration::from_secs(15), "n-1 is declared down", || {
        !node
            .nodes_with_role("work")
            .iter()
            .any(|m| m.id.name() == "n-1")
    })
    .await;
    let declared = Instant::now();
    let detected = declared - stopped_at;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    stop.store(true, Ordering::Relaxed);
    let idempotent = collect(idempotent).await;
    let other = collect(other).await;
    procs[1].signal("CONT");

    let slowest = |o: &Outcomes| o.iter().map(|(_, d, _, _)| *d).max().unwrap_or_default();
    // Of the calls made before the caller saw the node declared down (those stuck on it among
    // them), how long after that the last one ended: the stuck ones end when their
    // connection is dropped, then the idempotent ones run again elsewhere (a 10 ms backoff and
    // 20 ms of work). The caller's own polling of the registry adds a few ms.
    let after_down = idempotent
        .iter()
        .chain(&other)
        .filter(|(_, took, end, _)| *end - *took < declared)
        .map(|(_, _, end, _)| end.saturating_duration_since(declared))
        .max()
        .unwrap_or_default();
    let failed: Vec<_> = idempotent
        .iter()
        .filter(|(_, _, _, r)| r.is_err())
        .collect();
    println!(
        "SIGSTOP, declared down after {detected:?}: {} idempotent calls, {} failed, slowest \
         {:?}; {} non-idempotent calls, slowest {:?}, failures {:?}; the last call ended \
         {after_down:?} after the node was seen down",
        idempotent.len(),
        failed.len(),
        slowest(&idempotent),
        other.len(),
        slowest(&other),
        other
            .iter()
            .filter_map(|(_, _, _, r)| r.as_ref().err().map(kind))
            .collect::<Vec<_>>()
    );
    assert!(failed.is_empty(), "idempotent calls failed: {failed:?}");
    // Every call ended within the detection time and a margin, far from its 10 s deadline;
    // the calls that were stuck on it ended soon after it was declared down.
    assert!(after_down < Duration::from_secs(1), "{after_down:?}");
    let bound = detected + Duration::from_secs(2);
    assert!(slowest(&idempotent) < bound, "{:?}", slowest(&idempotent));
    assert!(slowest(&other) < bound, "{:?}", slowest(&other));
    for (id, _, _, r) in &other {
        if let Err(e) = r {
            assert!(
                matches!(e, RpcError::NodeDown { .. } | RpcError::Unreachable { .. }),
                "exec {id}: {e:?}"
            );
        }
    }
    node.shutdown().await;
    drop(procs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_only_requests_that_were_written_end_with_node_down() {
    let _serial = SERIAL.lock().await;
    let (node, mut procs) = cluster("down-kill", 6).await;
    let stop = Arc::new(AtomicBool::new(false));
    let ids = Arc::new(AtomicU64::new(0));
    let idempotent = load(&node, 40, true, 20, &stop, &ids);
    let other = load(&node, 80, false, 20, &stop, &ids);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    procs[2].signal("KILL");
    let _ = procs[2].wait_exit(Duration::from_secs(10)).await;
    wait_until(Duration::from_secs(15), "n-2 is declared down", || {
        !node
            .nodes_with_role("work")
            .iter()
            .any(|m| m.id.name() == "n-2")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let idempotent = collect(idempotent).await;
    let other = collect(other).await;

    let failed: Vec<_> = idempotent
        .iter()
        .filter(|(_, _, _, r)| r.is_err())
        .collect();
    assert!(failed.is_empty(), "idempotent calls failed: {failed:?}");
    let runs = executions(&procs);
    let twice: Vec<_> = runs.iter().filter(|(_, on)| on.len() > 1).collect();
    assert!(twice.is_empty(), "ran twice: {twice:?}");
    let mut node_down = Vec::new();
    for (id, _, _, r) in &other {
        match r {
            Ok(name) => assert_eq!(
                runs.get(id).map(Vec::as_slice),
                Some(&[name.clone()][..]),
                "exec {id}"
            ),
            Err(RpcError::NodeDown { node: n, .. }) => {
                assert_eq!(n.name(), "n-2", "exec {id}");
                node_down.push(*id);
            }
            Err(e) => panic!("exec {id}: {e:?}"),
        }
    }
    let reached = node_down
        .iter()
        .filter(|id| runs.get(id).is_some_and(|on| on == &["n-2".to_string()]))
        .count();
    println!(
        "SIGKILL of 1 of 6 nodes with 120 callers: {} idempotent calls, 0 failed; {} \
         non-idempotent calls, {} NodeDown, of which {reached} had reached n-2's handler",
        idempotent.len(),
        other.len(),
        node_down.len()
    );
    node.shutdown().await;
    drop(procs);
}

//! Direct targets over real node processes: `node.to(name)` follows a node across a restart
//! (a new incarnation of the same name is the same target), `node.to(&id)` is one incarnation
//! only, a node that is gone fails at once with `NodeNotFound`, and `node.to_any_of([..])`
//! calls only the listed nodes and goes on with those left when one of them crashes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use easy_rpc::{Node, NodeId, RpcError};
use easy_rpc_tests::churn::WorkClient;
use easy_rpc_tests::cluster::{init_logs, rpc_builder, unique_cluster, wait_until};
use easy_rpc_tests::process::NodeProcess;

const EXE: &str = env!("CARGO_BIN_EXE_rpc_node");

async fn caller(cluster: &str) -> Node {
    rpc_builder(cluster, "caller").start().await.unwrap()
}

fn spawn(cluster: &str, seed: &str, name: &str) -> NodeProcess {
    NodeProcess::spawn(
        EXE,
        name,
        &[
            ("CLUSTER_NAME", cluster.to_owned()),
            ("CLUSTER_ROLES", "work".to_owned()),
            ("CLUSTER_SEEDS", seed.to_owned()),
        ],
    )
}

/// The id of the serving member called `name`, once the caller sees one other than `not`.
async fn serving_id(node: &Node, name: &str, not: Option<&NodeId>) -> NodeId {
    let mut found = None;
    wait_until(
        Duration::from_secs(15),
        &format!("the caller sees {name} serving"),
        || {
            found = node
                .nodes_with_role("work")
                .iter()
                .find(|m| m.id.name() == name && Some(&m.id) != not)
                .map(|m| m.id.clone());
            found.is_some()
        },
    )
    .await;
    found.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_node_is_followed_across_a_restart_and_a_gone_one_fails_at_once() {
    init_logs();
    let cluster = unique_cluster("direct-restart");
    let node = caller(&cluster).await;
    let seed = node.gossip_addr().to_string();
    let mut servers: Vec<NodeProcess> = ["d-0", "d-1", "d-2"]
        .iter()
        .map(|n| spawn(&cluster, &seed, n))
        .collect();
    let first = serving_id(&node, "d-1", None).await;
    for n in ["d-0", "d-2"] {
        serving_id(&node, n, None).await;
    }

    // By name and by id: always that node, never another node of the role.
    for _ in 0..20 {
        assert_eq!(node.to("d-1").whoami().await.unwrap(), "d-1");
        assert_eq!(node.to(&first).whoami().await.unwrap(), "d-1");
    }

    // A node that is not there fails at once, without waiting for a deadline.
    let started = Instant::now();
    let e = node.to("nobody").whoami().await.unwrap_err();
    assert!(
        matches!(&e, RpcError::NodeNotFound { node, service } if node == "nobody" && *service == "Work"),
        "{e:?}"
    );
    assert!(e.never_reached_server());
    assert!(started.elapsed() < Duration::from_millis(500));

    // Restart d-1: a graceful leave, then a new process (a new incarnation) of the same name.
    let mut old = servers.remove(1);
    old.signal("TERM");
    assert_eq!(old.wait_exit(Duration::from_secs(15)).await, Some(0));
    wait_until(Duration::from_secs(15), "d-1 leaves the registry", || {
        !node
            .nodes_with_role("work")
            .iter()
            .any(|m| m.id.name() == "d-1")
    })
    .await;
    let e = node.to("d-1").whoami().await.unwrap_err();
    assert!(matches!(e, RpcError::NodeNotFound { .. }), "{e:?}");

    servers.push(spawn(&cluster, &seed, "d-1"));
    let second = serving_id(&node, "d-1", Some(&first)).await;
    assert!(second.incarnation() != first.incarnation());
    for _ in 0..20 {
        assert_eq!(node.to("d-1").whoami().await.unwrap(), "d-1");
        assert_eq!(node.to(&second).whoami().await.unwrap(), "d-1");
    }
    // The old incarnation, by id, is gone for good.
    let e = node.to(&first).whoami().await.unwrap_err();
    assert!(
        matches!(&e, RpcError::NodeNotFound { node, .. } if *node == first.to_string()),
        "{e:?}"
    );

    // The same target handle, kept across the restart, follows too.
    let kept = node.to("d-0");
    assert_eq!(kept.whoami().await.unwrap(), "d-0");

    node.shutdown().await;
    drop(servers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_target_calls_only_its_nodes_and_goes_on_without_a_crashed_one() {
    init_logs();
    let cluster = unique_cluster("direct-list");
    let node = caller(&cluster).await;
    let seed = node.gossip_addr().to_string();
    let mut servers: Vec<NodeProcess> = ["l-0", "l-1", "l-2"]
        .iter()
        .map(|n| spawn(&cluster, &seed, n))
        .collect();
    for n in ["l-0", "l-1", "l-2"] {
        serving_id(&node, n, None).await;
    }

    let target = node.to_any_of(["l-0", "l-2"]);
    let mut seen = BTreeSet::new();
    for _ in 0..60 {
        seen.insert(target.whoami().await.unwrap());
    }
    assert_eq!(
        seen,
        BTreeSet::from(["l-0".to_string(), "l-2".to_string()]),
        "only the listed nodes, both of them"
    );

    // Crash l-2: idempotent calls go on on l-0 (rerouted or retried), none fails.
    let crashed = servers.remove(2);
    crashed.signal("KILL");
    let until = Instant::now() + Duration::from_secs(3);
    let mut calls = 0;
    while Instant::now() < until && calls < 2_000 {
        let who = target.whoami().await.unwrap();
        assert!(who == "l-0" || who == "l-2", "{who}");
        calls += 1;
    }
    wait_until(Duration::from_secs(15), "l-2 is declared down", || {
        !node
            .nodes_with_role("work")
            .iter()
            .any(|m| m.id.name() == "l-2")
    })
    .await;
    for _ in 0..20 {
        assert_eq!(target.whoami().await.unwrap(), "l-0");
    }

    // None of the listed nodes left: NodeNotFound names them all.
    let e = node.to_any_of(["l-2", "l-9"]).whoami().await.unwrap_err();
    assert!(
        matches!(&e, RpcError::NodeNotFound { node, .. } if node == "l-2, l-9"),
        "{e:?}"
    );

    node.shutdown().await;
    drop(servers);
}

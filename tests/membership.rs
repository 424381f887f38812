//! Membership across many nodes in one process, on real UDP/TCP sockets on loopback.

use std::time::Duration;

use cluster_helper::{ClusterEvent, Error, Node, NodeStatus, Role};
use easy_rpc_tests::cluster::{
    all_see, builder, init_logs, names_with_role, start, unique_cluster, wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_set_at_start_and_changed_at_runtime_reach_every_node() {
    init_logs();
    let c = unique_cluster("roles");
    let a = start(&c, "a", &["billing"], &[]).await;
    let b = start(&c, "b", &["billing", "audit"], &[&a]).await;
    let d = start(&c, "d", &["gateway"], &[&a]).await;
    let all = [&a, &b, &d];
    for n in all {
        tokio::time::timeout(Duration::from_secs(5), n.ready())
            .await
            .expect("ready");
    }
    wait_until(
        Duration::from_secs(5),
        "everyone sees billing on a and b",
        || {
            all_see(&all, "billing", &["a", "b"])
                && all_see(&all, "audit", &["b"])
                && all_see(&all, "gateway", &["d"])
        },
    )
    .await;
    assert_eq!(
        a.roles_of(b.id()).unwrap(),
        ["audit", "billing"].map(|r| Role::new(r).unwrap()).into()
    );
    assert_eq!(a.members().len(), 3);

    // Runtime changes.
    assert!(d.add_role("billing").await.unwrap());
    assert!(!d.add_role("billing").await.unwrap(), "already had it");
    assert!(b.remove_role("audit").await.unwrap());
    let took = wait_until(Duration::from_secs(5), "runtime role changes seen", || {
        all_see(&all, "billing", &["a", "b", "d"]) && all_see(&all, "audit", &[])
    })
    .await;
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // Bad role names are refused with a clear error and change nothing.
    let err = d.add_role("no spaces").await.unwrap_err();
    assert!(matches!(err, Error::InvalidRole { .. }), "{err}");
    assert!(err.to_string().contains("\"no spaces\""), "{err}");
    assert!(d.add_role("").await.is_err());
    assert!(d.add_role("x".repeat(65)).await.is_err());
    assert_eq!(names_with_role(&a, "gateway"), ["d"]);

    for n in all {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builder_rejects_bad_values_before_binding_anything() {
    let err = builder("c", "n")
        .roles(["ok", "not ok"])
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"not ok\""), "{err}");
    let err = builder("c", "bad name").start().await.unwrap_err();
    assert!(matches!(err, Error::InvalidNodeName { .. }), "{err}");
    let err = builder("c", "n")
        .seeds(["nohost"])
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("CLUSTER_SEEDS"), "{err}");
    let err = builder("c", "n")
        .listen("nowhere")
        .start()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("\"nowhere\"") && err.to_string().contains("listen address"),
        "{err}"
    );
    let err = Node::builder()
        .from_vars([("CLUSTER_LISTEN", "not-an-addr")])
        .unwrap_err();
    assert!(err.to_string().contains("CLUSTER_LISTEN"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_is_a_new_incarnation_and_replaces_the_old_one() {
    init_logs();
    let c = unique_cluster("restart");
    let a = start(&c, "a", &["gateway"], &[]).await;
    let b1 = start(&c, "b", &["billing"], &[&a]).await;
    wait_until(Duration::from_secs(5), "a sees b1", || {
        names_with_role(&a, "billing") == ["b"]
    })
    .await;
    let old = b1.id().clone();
    let old_addr = b1.gossip_addr();
    // "Pod restart": the process dies without leaving; a new one comes up, same name, new port.
    b1.kill();
    drop(b1);
    let b2 = start(&c, "b", &["billing"], &[&a]).await;
    assert_eq!(b2.id().name(), old.name());
    assert!(b2.id().incarnation() > old.incarnation());
    assert_ne!(b2.gossip_addr(), old_addr);
    let took = wait_until(Duration::from_secs(5), "a sees only b2", || {
        let nodes = a.nodes_with_role("billing");
        nodes.len() == 1 && nodes[0].id == *b2.id()
    })
    .await;
    // The new incarnation replaces the old one as soon as it is seen, not after failure
    // detection of the old one.
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(a.members().iter().all(|m| m.id != old));
    assert!(a.roles_of(&old).is_none());
    a.shutdown().await;
    b2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_clusters_and_wrong_secrets_never_appear() {
    init_logs();
    let c = unique_cluster("apart");
    let a = start(&c, "a", &["billing"], &[]).await;
    let b = start(&c, "b", &["billing"], &[&a]).await;
    // Same secret, other cluster name, seeded with our nodes: it sends to our ports.
    let other_cluster = builder(&format!("{c}-other"), "x")
        .roles(["billing"])
        .seeds([a.gossip_addr().to_string(), b.gossip_addr().to_string()])
        .start()
        .await
        .unwrap();
    // Same cluster name, other secret.
    let wrong_secret = builder(&c, "y")
        .roles(["billing"])
        .secret(easy_rpc_tests::OTHER_SECRET)
        .seeds([a.gossip_addr().to_string()])
        .start()
        .await
        .unwrap();
    // Garbage straight at the gossip port.
    let raw = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for _ in 0..5 {
        raw.send_to(b"\x00\x01garbage", a.gossip_addr())
            .await
            .unwrap();
    }
    wait_until(Duration::from_secs(5), "a and b see each other", || {
        all_see(&[&a, &b], "billing", &["a", "b"])
    })
    .await;
    wait_until(Duration::from_secs(5), "a rejected foreign packets", || {
        a.gossip_stats().packets_rejected >= 7
    })
    .await;
    // Give the outsiders time to try for many gossip rounds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for n in [&a, &b] {
        assert_eq!(names_with_role(n, "billing"), ["a", "b"]);
        assert_eq!(n.members().len(), 2);
    }
    // And they do not see us: once their join timeout passes they are clusters of one.
    for n in [&other_cluster, &wrong_secret] {
        tokio::time::timeout(Duration::from_secs(5), n.ready())
            .await
            .expect("ready alone");
    }
    assert_eq!(names_with_role(&other_cluster, "billing"), ["x"]);
    assert_eq!(names_with_role(&wrong_secret, "billing"), ["y"]);
    // They did try: each sent many packets, all dropped by a and b.
    assert!(wrong_secret.gossip_stats().packets_sent > 5);
    assert!(other_cluster.gossip_stats().packets_sent > 5);
    for n in [a, b, other_cluster, wrong_secret] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_leave_is_seen_within_a_second_and_a_crash_within_ten() {
    init_logs();
    let c = unique_cluster("leave");
    let a = start(&c, "a", &["billing"], &[]).await;
    let b = start(&c, "b", &["billing"], &[&a]).await;
    let d = start(&c, "d", &["billing"], &[&a]).await;
    wait_until(Duration::from_secs(5), "all see 3 billing", || {
        all_see(&[&a, &b, &d], "billing", &["a", "b", "d"])
    })
    .await;
    let mut events = a.events();

    // Graceful: status goes to leaving, callers stop picking it at once.
    let leaving = tokio::spawn({
        let d = d.clone();
        async move { d.shutdown().await }
    });
    let took = wait_until(Duration::from_secs(1), "d dropped from billing", || {
        all_see(&[&a, &b], "billing", &["a", "b"])
    })
    .await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    leaving.await.unwrap();
    assert_eq!(d.status(), NodeStatus::Leaving);
    assert!(matches!(d.add_role("x").await, Err(Error::ShutDown)));
    // The role view first (d leaves the billing lookups), then the node event.
    let ev = tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&ev, ClusterEvent::RoleRemoved { node, role } if node == d.id() && role.as_str() == "billing"),
        "{ev:?}"
    );
    let ev = tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&ev, ClusterEvent::NodeLeaving(m) if m.id == *d.id()),
        "{ev:?}"
    );

    // Crash: no goodbye, failure detection only. The default must be under 10 s; tests use a
    // faster gossip interval, so it is well under that here.
    b.kill();
    let took = wait_until(Duration::from_secs(10), "b dropped after crash", || {
        names_with_role(&a, "billing") == ["a"] && a.members().iter().all(|m| m.id != *b.id())
    })
    .await;
    eprintln!("crash detected after {took:?}");
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Ok(ClusterEvent::NodeDown(m))) if m.id == *b.id() => break,
            Ok(Ok(_)) => continue,
            other => panic!("expected NodeDown for b, got {other:?}"),
        }
    }
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_alone_and_with_peers() {
    init_logs();
    let c = unique_cluster("ready");
    // Alone, no seeds: ready at once.
    let a = start(&c, "a", &["x"], &[]).await;
    tokio::time::timeout(Duration::from_secs(1), a.ready())
        .await
        .expect("a lone node with no seeds is ready at once");
    // With a seed: ready once it has seen the seed node (and so the cluster).
    let b = start(&c, "b", &["x"], &[&a]).await;
    tokio::time::timeout(Duration::from_secs(3), b.ready())
        .await
        .expect("b ready");
    assert!(b.members().len() >= 2, "ready means b has seen a");
    // With a seed that never answers: ready after the join timeout, alone.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let lonely = builder(&c, "lonely")
        .seeds([dead.local_addr().unwrap().to_string()])
        .join_timeout(Duration::from_millis(500))
        .start()
        .await
        .unwrap();
    assert!(!lonely.is_ready());
    tokio::time::timeout(Duration::from_secs(3), lonely.ready())
        .await
        .expect("ready after join timeout");
    for n in [a, b, lonely] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_does_not_block_membership() {
    init_logs();
    let c = unique_cluster("slow");
    let a = start(&c, "a", &["r0"], &[]).await;
    let _never_read = a.events();
    let mut watch = a.registry().watch();
    let b = start(&c, "b", &[], &[&a]).await;
    // Far more changes than the event buffer holds.
    for i in 0..300 {
        b.add_role(format!("r{i}")).await.unwrap();
    }
    wait_until(Duration::from_secs(10), "a sees all 300 roles of b", || {
        a.roles_of(b.id()).is_some_and(|r| r.len() == 300)
    })
    .await;
    assert!(watch.has_changed().unwrap());
    let snap = watch.borrow_and_update().clone();
    assert!(snap.version() > 1);
    a.shutdown().await;
    b.shutdown().await;
}

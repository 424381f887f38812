//! The registry users rely on, on real nodes over loopback: one ordered path for a node's own
//! state, read-your-writes, atomic batches, documented limits, role events for every cause,
//! lookups by name, and duplicate node names.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cluster_helper::{
    ClusterEvent, Error, EventsError, MAX_NODE_NAME_LEN, MAX_ROLES_PER_NODE, MAX_SERVICES_PER_NODE,
    Node, NodeId, NodeStatus, Role,
};
use easy_rpc_tests::cluster::{builder, init_logs, start, unique_cluster, wait_until};

fn role_set<S: AsRef<str>>(roles: impl IntoIterator<Item = S>) -> BTreeSet<Role> {
    roles.into_iter().map(|r| Role::new(r).unwrap()).collect()
}

/// A small, seeded pseudo-random generator (xorshift64*), so that a failing round can be
/// replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Checks that `subject`'s own state, its own registry and every peer's registry agree on its
/// roles and services, and that it is serving everywhere (peers: within `within`).
async fn all_agree(subject: &Node, peers: &[&Node], within: Duration, what: &str) {
    let roles = subject.roles();
    let services = subject.services();
    assert_eq!(subject.status(), NodeStatus::Serving, "{what}: status");
    let snapshot = subject.registry().snapshot();
    let own = snapshot
        .member(subject.id())
        .unwrap_or_else(|| panic!("{what}: missing from its own registry"));
    assert_eq!(own.roles, roles, "{what}: own registry roles");
    assert_eq!(own.services, services, "{what}: own registry services");
    assert_eq!(
        own.status,
        NodeStatus::Serving,
        "{what}: own registry status"
    );
    wait_until(within, what, || {
        peers.iter().all(|p| {
            p.registry()
                .snapshot()
                .member(subject.id())
                .is_some_and(|m| {
                    m.roles == roles && m.services == services && m.status == NodeStatus::Serving
                })
        })
    })
    .await;
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Item 1: many tasks change roles (and services) concurrently on a multi-thread runtime;
/// after every round the node's state, its own registry and both peers' registries agree and
/// the node is still serving. `REGISTRY_STRESS_ROUNDS` (default 200) and
/// `REGISTRY_STRESS_SECS` (default 120) set the rounds and the time they must fit in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_are_never_lost() {
    init_logs();
    let rounds: u32 = env_or("REGISTRY_STRESS_ROUNDS", 200);
    let limit = Duration::from_secs(env_or("REGISTRY_STRESS_SECS", 120));
    let c = unique_cluster("stress");
    let a = start(&c, "a", &["base"], &[]).await;
    let b = start(&c, "b", &[], &[&a]).await;
    let d = start(&c, "d", &[], &[&a]).await;
    for n in [&a, &b, &d] {
        tokio::time::timeout(Duration::from_secs(5), n.ready())
            .await
            .expect("ready");
    }
    let started = Instant::now();
    let mut total_ops = 0u64;
    for round in 0..rounds {
        assert!(
            started.elapsed() < limit,
            "only {round} of {rounds} rounds in {limit:?}"
        );
        let mut tasks = Vec::new();
        for t in 0..5u64 {
            let a = a.clone();
            let seed = u64::from(round) * 1000 + t + 1;
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng(seed);
                let mut ops = 0u64;
                for _ in 0..10 {
                    let r = format!("r{}", rng.next() % 24);
                    match rng.next() % 8 {
                        0 => {
                            a.add_service(format!("S{}", rng.next() % 4)).await.unwrap();
                        }
                        1 => {
                            a.remove_service(format!("S{}", rng.next() % 4))
                                .await
                                .unwrap();
                        }
                        2 => {
                            a.add_roles([r.clone(), format!("{r}:x")]).await.unwrap();
                        }
                        3 | 4 => {
                            a.remove_role(&r).await.unwrap();
                        }
                        _ => {
                            a.add_role(&r).await.unwrap();
                        }
                    }
                    ops += 1;
                }
                ops
            }));
        }
        for t in tasks {
            total_ops += t.await.unwrap();
        }
        all_agree(
            &a,
            &[&b, &d],
            Duration::from_secs(5),
            &format!("round {round}"),
        )
        .await;
    }
    eprintln!(
        "{rounds} rounds, {total_ops} concurrent changes, 0 lost, in {:?}",
        started.elapsed()
    );
    for n in [&a, &b, &d] {
        n.shutdown().await;
    }
}

/// Item 1: readiness (joining -> serving) races role changes on nodes that are just joining;
/// the status is never set back, and every registry agrees once they are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_racing_role_changes_never_sets_the_status_back() {
    init_logs();
    let c = unique_cluster("race-ready");
    let a = start(&c, "a", &["seed"], &[]).await;
    a.ready().await;
    for i in 0..15u64 {
        let n = start(&c, &format!("late-{i}"), &["late"], &[&a]).await;
        let mut tasks = Vec::new();
        for t in 0..3u64 {
            let n = n.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng(i * 100 + t + 1);
                for _ in 0..20 {
                    let r = format!("r{}", rng.next() % 6);
                    if rng.next().is_multiple_of(3) {
                        n.remove_role(&r).await.unwrap();
                    } else {
                        n.add_role(&r).await.unwrap();
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), n.ready())
            .await
            .expect("ready");
        all_agree(&n, &[&a], Duration::from_secs(5), &format!("late-{i}")).await;
        n.shutdown().await;
        assert_eq!(n.status(), NodeStatus::Leaving);
    }
    a.shutdown().await;
}

/// Item 2: when a change returns, the node's own lookups and its event stream show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_visible_locally_when_it_returns() {
    init_logs();
    let c = unique_cluster("ryw");
    let a = start(&c, "a", &[], &[]).await;
    a.ready().await;
    let mut events = a.events();
    for i in 0..20 {
        let role = format!("web-{i}");
        assert!(a.add_role(&role).await.unwrap());
        assert!(
            a.nodes_with_role(&role).iter().any(|m| m.id == *a.id()),
            "nodes_with_role({role}) right after add_role"
        );
        assert!(a.roles_of(a.id()).unwrap().contains(role.as_str()));
        assert!(a.roles_of("a").unwrap().contains(role.as_str()));
        assert!(
            a.members()
                .iter()
                .any(|m| m.id == *a.id() && m.has_role(&role))
        );
        match events.try_recv() {
            Some(Ok(ClusterEvent::RoleAdded { node, role: r })) => {
                assert_eq!((node, r.as_str()), (a.id().clone(), role.as_str()));
            }
            other => panic!("expected RoleAdded({role}) already queued, got {other:?}"),
        }
        assert!(a.remove_role(&role).await.unwrap());
        assert!(a.nodes_with_role(&role).is_empty());
        assert!(matches!(
            events.try_recv(),
            Some(Ok(ClusterEvent::RoleRemoved { .. }))
        ));
    }
    // The batch forms too.
    assert!(a.add_roles(["x", "y", "z"]).await.unwrap());
    assert_eq!(a.roles_of(a.id()).unwrap(), role_set(["x", "y", "z"]));
    assert!(a.remove_roles(["x", "y"]).await.unwrap());
    assert_eq!(a.roles_of(a.id()).unwrap(), role_set(["z"]));
    assert!(a.set_roles(["p", "q"]).await.unwrap());
    assert_eq!(a.roles_of(a.id()).unwrap(), role_set(["p", "q"]));
    assert!(
        !a.set_roles(["q", "p"]).await.unwrap(),
        "same set: no change"
    );
    assert_eq!(a.nodes_with_role("q").len(), 1);
    // A batch with one bad name changes nothing.
    let err = a.add_roles(["ok", "not ok"]).await.unwrap_err();
    assert!(matches!(err, Error::InvalidRole { .. }), "{err}");
    assert_eq!(a.roles(), role_set(["p", "q"]));
    a.shutdown().await;
}

/// Item 3: a peer never observes part of a batch, even when a batch is larger than one gossip
/// message (3000 roles of 52 random characters, about 150 KB) and so reaches the peer in
/// several deltas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_never_observes_part_of_a_batch() {
    init_logs();
    let c = unique_cluster("batch");
    // A slower gossip than the other tests: answering a gossip round with a delta this large
    // is slow in a debug build, and a node answers the rounds in turn.
    let gossip = Duration::from_millis(300);
    let a = builder(&c, "a")
        .roles(["start-1", "start-2"])
        .gossip_interval(gossip)
        .start()
        .await
        .unwrap();
    a.ready().await;
    // Subscribed before b knows a: the very first view of a must be complete too.
    let b = builder(&c, "b")
        .gossip_interval(gossip)
        .seeds([a.gossip_addr().to_string()])
        .start()
        .await
        .unwrap();
    let mut snapshots = b.registry().snapshots();
    // Names that do not compress, so that a batch of them spans several gossip messages.
    let mut rng = Rng(7);
    let mut wide = |tag: &str, n: usize| -> Vec<String> {
        (0..n)
            .map(|_| {
                let (x, y, z) = (rng.next(), rng.next(), rng.next());
                format!("{tag}-{x:016x}{y:016x}{z:016x}")
            })
            .collect()
    };
    let batches: Vec<Vec<String>> = vec![
        vec!["x".into(), "y".into(), "z".into()],
        vec!["y".into(), "w".into()],
        wide("big", 3000),
        vec!["x".into()],
        wide("other", 3000),
        vec!["a".into(), "b".into(), "c".into()],
    ];
    let mut allowed: Vec<BTreeSet<Role>> = vec![role_set(["start-1", "start-2"])];
    allowed.extend(batches.iter().map(role_set));
    let watcher = tokio::spawn({
        let a_id = a.id().clone();
        let allowed = allowed.clone();
        let last = allowed.last().unwrap().clone();
        async move {
            let mut seen = Vec::new();
            loop {
                let s = tokio::time::timeout(Duration::from_secs(60), snapshots.recv())
                    .await
                    .expect("the peer's snapshots stop before the last batch arrives")
                    .expect("a lagged or closed snapshot subscription");
                let Some(m) = s.member(&a_id) else { continue };
                assert!(
                    allowed.contains(&m.roles),
                    "snapshot {} shows a partial role set of {} roles",
                    s.version(),
                    m.roles.len()
                );
                if seen.last() != Some(&m.roles) {
                    seen.push(m.roles.clone());
                }
                if m.roles == last {
                    return seen.len();
                }
            }
        }
    });
    b.ready().await;
    for batch in &batches {
        a.set_roles(batch).await.unwrap();
        // Let the peer see some of the intermediate sets (not required for correctness).
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let distinct = watcher.await.unwrap();
    eprintln!("the peer saw {distinct} distinct complete role sets of a");
    assert!(distinct >= 2);
    a.shutdown().await;
    b.shutdown().await;
}

/// Item 4: 10,000 roles per node reach peers, with the node's status and RPC address; one
/// more is refused with a clear error and changes nothing; the same for 1,000 services; the
/// longest node name works and a longer one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_reached_and_refused_beyond() {
    init_logs();
    let c = unique_cluster("limits");
    let roles: Vec<String> = (0..MAX_ROLES_PER_NODE)
        .map(|i| format!("role/{i:05}:{}", "r".repeat(30)))
        .collect();
    let long_name = "n".repeat(MAX_NODE_NAME_LEN);
    let a = builder(&c, &long_name).roles(&roles).start().await.unwrap();
    a.ready().await;
    let b = start(&c, "b", &[], &[&a]).await;
    let took = wait_until(
        Duration::from_secs(60),
        "b sees a with 10,000 roles",
        || {
            b.member_by_name(&long_name).is_some_and(|m| {
                m.roles.len() == MAX_ROLES_PER_NODE
                    && m.status == NodeStatus::Serving
                    && m.rpc_addr == a.rpc_addr()
            })
        },
    )
    .await;
    eprintln!("10,000 roles reached a peer in {took:?}");
    assert_eq!(b.nodes_with_role(&roles[9_999]).len(), 1);

    // One more role: refused, nothing changed, here or at the peer.
    let err = a.add_role("one-too-many").await.unwrap_err();
    assert!(
        matches!(err, Error::TooMany { what: "roles", limit, requested }
            if limit == MAX_ROLES_PER_NODE && requested == MAX_ROLES_PER_NODE + 1),
        "{err}"
    );
    assert!(err.to_string().contains("10000"), "{err}");
    assert_eq!(a.roles().len(), MAX_ROLES_PER_NODE);
    // Replacing the whole set in one batch stays within the limit and propagates.
    a.set_roles(["small"]).await.unwrap();
    wait_until(Duration::from_secs(30), "b sees the small set", || {
        b.roles_of(long_name.as_str()) == Some(role_set(["small"]))
    })
    .await;

    // Services: the limit reaches peers, one more is refused at runtime.
    let services: Vec<String> = (0..MAX_SERVICES_PER_NODE)
        .map(|i| format!("svc::Service{i:04}"))
        .collect();
    let s = builder(&c, "services")
        .services(&services)
        .seeds([a.gossip_addr().to_string()])
        .start()
        .await
        .unwrap();
    wait_until(Duration::from_secs(30), "b sees 1000 services", || {
        b.member_by_name("services").is_some_and(|m| {
            m.services.len() == MAX_SERVICES_PER_NODE && m.status == NodeStatus::Serving
        })
    })
    .await;
    let err = s.add_service("svc::OneTooMany").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooMany {
                what: "services",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(s.services().len(), MAX_SERVICES_PER_NODE);
    assert!(s.remove_service("svc::Service0000").await.unwrap());
    assert!(s.add_service("svc::Another").await.unwrap());
    s.shutdown().await;

    // Starting over the limits is refused before binding anything.
    let mut over = roles.clone();
    over.push("extra".into());
    let err = builder(&c, "over").roles(&over).start().await.unwrap_err();
    assert!(matches!(err, Error::TooMany { what: "roles", .. }), "{err}");
    let services: Vec<String> = (0..=MAX_SERVICES_PER_NODE)
        .map(|i| format!("svc::S{i}"))
        .collect();
    let err = builder(&c, "over")
        .services(&services)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooMany {
                what: "services",
                ..
            }
        ),
        "{err}"
    );
    let err = builder(&c, &"n".repeat(MAX_NODE_NAME_LEN + 1))
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidNodeName { .. }), "{err}");
    a.shutdown().await;
    b.shutdown().await;
}

/// Which event a test expects, with node names instead of ids.
fn describe(e: &ClusterEvent) -> Option<(NodeId, String)> {
    Some(match e {
        ClusterEvent::NodeUp(m) => (m.id.clone(), "up".into()),
        ClusterEvent::NodeLeaving(m) => (m.id.clone(), "leaving".into()),
        ClusterEvent::NodeDown(m) => (m.id.clone(), "down".into()),
        ClusterEvent::RoleAdded { node, role } => (node.clone(), format!("+{role}")),
        ClusterEvent::RoleRemoved { node, role } => (node.clone(), format!("-{role}")),
        _ => return None,
    })
}

/// Item 5: from a real peer's point of view, every role a node gains or loses, for every
/// cause, is one `RoleAdded` / `RoleRemoved`, in order per node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_events_for_every_cause_exactly_once() {
    init_logs();
    let c = unique_cluster("role-events");
    let observer = start(&c, "observer", &[], &[]).await;
    observer.ready().await;
    let (first, mut events) = observer.registry().snapshot_and_events();
    assert_eq!(first.members().len(), 1);
    let seeds = [&observer];

    // Start with roles, then change them at runtime, then leave gracefully.
    let leaver = start(&c, "leaver", &["shard:1", "region/eu"], &seeds).await;
    leaver.ready().await;
    wait_until(Duration::from_secs(5), "leaver seen", || {
        observer.nodes_with_role("shard:1").len() == 1
    })
    .await;
    leaver.add_roles(["extra", "shard:2"]).await.unwrap();
    wait_until(Duration::from_secs(5), "extra seen", || {
        observer.nodes_with_role("shard:2").len() == 1
    })
    .await;
    leaver.remove_role("region/eu").await.unwrap();
    wait_until(Duration::from_secs(5), "region/eu gone", || {
        observer.nodes_with_role("region/eu").is_empty()
    })
    .await;
    leaver.shutdown().await;

    // Crash.
    let crasher = start(&c, "crasher", &["billing"], &seeds).await;
    wait_until(Duration::from_secs(5), "crasher seen", || {
        observer.nodes_with_role("billing").len() == 1
    })
    .await;
    crasher.kill();

    // Restart as a new incarnation: the old run crashes, a new one with the same name starts
    // before failure detection removed the old.
    let old = start(&c, "phoenix", &["audit", "cache"], &seeds).await;
    wait_until(Duration::from_secs(5), "phoenix seen", || {
        observer.nodes_with_role("cache").len() == 1
    })
    .await;
    old.kill();
    let new = start(&c, "phoenix", &["audit"], &seeds).await;
    assert!(new.id().incarnation() > old.id().incarnation());

    wait_until(Duration::from_secs(15), "everyone settled", || {
        let s = observer.registry().snapshot();
        s.member_by_name("leaver").is_none()
            && s.member_by_name("crasher").is_none()
            && s.member_by_name("phoenix")
                .is_some_and(|m| m.id == *new.id() && m.status == NodeStatus::Serving)
    })
    .await;
    // Let stragglers arrive, then read everything that was delivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut per_node: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
    loop {
        match events.try_recv() {
            Some(Ok(e)) => {
                if let Some((id, what)) = describe(&e) {
                    per_node.entry(id).or_default().push(what);
                }
            }
            Some(Err(EventsError::Lagged(n))) => panic!("lagged by {n}"),
            Some(Err(e)) => panic!("{e}"),
            None => break,
        }
    }
    let expect = |id: &NodeId, events: &[&str]| {
        assert_eq!(
            per_node.get(id).map(Vec::as_slice).unwrap_or_default(),
            events,
            "events of {id}"
        );
    };
    // Roles come in name order within one change.
    expect(
        leaver.id(),
        &[
            "up",
            "+region/eu",
            "+shard:1",
            "+extra",
            "+shard:2",
            "-region/eu",
            "-extra",
            "-shard:1",
            "-shard:2",
            "leaving",
            "down",
        ],
    );
    expect(crasher.id(), &["up", "+billing", "-billing", "down"]);
    expect(
        old.id(),
        &["up", "+audit", "+cache", "-audit", "-cache", "down"],
    );
    expect(new.id(), &["up", "+audit"]);
    assert_eq!(per_node.len(), 4, "no events of other nodes: {per_node:?}");
    new.shutdown().await;
    observer.shutdown().await;
}

/// Item 6: roles with `:` and `/` travel through gossip; lookups by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_with_colons_and_slashes_and_lookups_by_name() {
    init_logs();
    let c = unique_cluster("names");
    let a = start(&c, "a", &["shard:1", "region/eu", "role:with:colons"], &[]).await;
    let b = start(&c, "b", &["role"], &[&a]).await;
    wait_until(Duration::from_secs(5), "b sees a's roles", || {
        b.roles_of("a") == Some(role_set(["shard:1", "region/eu", "role:with:colons"]))
    })
    .await;
    // Role lookups list serving nodes only: wait until both serve, as b sees them.
    wait_until(Duration::from_secs(10), "b sees a and b serving", || {
        !b.nodes_with_role("role").is_empty() && !b.nodes_with_role("region/eu").is_empty()
    })
    .await;
    assert_eq!(b.roles_of(a.id()), b.roles_of("a"));
    assert_eq!(b.member_by_name("a").unwrap().id, *a.id());
    assert_eq!(b.registry().member_by_name("b").unwrap().id, *b.id());
    assert!(b.member_by_name("nobody").is_none());
    assert!(b.roles_of("nobody").is_none());
    // "role" (b's) is not confused with the prefix of a's "role:with:colons".
    assert_eq!(b.nodes_with_role("role").len(), 1);
    assert_eq!(b.nodes_with_role("role:with:colons")[0].id, *a.id());
    assert_eq!(b.nodes_with_role("region/eu")[0].id, *a.id());
    a.shutdown().await;
    b.shutdown().await;
}

/// Item 7: two live nodes started with the same name. Each keeps its own entry in its own
/// registry and keeps serving; each reports the other as a `NameConflict`; a third node sees
/// the newest incarnation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_name_never_hides_a_node_from_itself() {
    init_logs();
    let c = unique_cluster("dup-name");
    let peer = start(&c, "peer", &[], &[]).await;
    peer.ready().await;
    let first = start(&c, "twin", &["billing"], &[&peer]).await;
    let mut first_events = first.events();
    first.ready().await;
    let second = start(&c, "twin", &["billing"], &[&peer]).await;
    let mut second_events = second.events();
    assert!(second.id().incarnation() > first.id().incarnation());

    async fn conflict(events: &mut cluster_helper::Events, this: &NodeId, other: &NodeId) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, events.recv()).await {
                Ok(Ok(ClusterEvent::NameConflict { this: t, other: o })) => {
                    assert_eq!((&t, &o.id), (this, other));
                    return;
                }
                Ok(Ok(_)) => {}
                other => panic!("{this}: no NameConflict with {other:?}"),
            }
        }
    }
    second.ready().await;
    conflict(&mut first_events, first.id(), second.id()).await;
    conflict(&mut second_events, second.id(), first.id()).await;

    // Each keeps itself; the third node follows the newest incarnation.
    wait_until(Duration::from_secs(5), "peer sees the newest twin", || {
        peer.member_by_name("twin")
            .is_some_and(|m| m.id == *second.id())
    })
    .await;
    for _ in 0..20 {
        for (me, other) in [(&first, &second), (&second, &first)] {
            let own = me.member_by_name("twin").expect("own entry");
            assert_eq!(own.id, *me.id());
            assert_eq!(own.status, NodeStatus::Serving);
            assert_eq!(me.nodes_with_role("billing")[0].id, *me.id());
            assert!(me.members().iter().all(|m| m.id != *other.id()));
            assert_eq!(me.registry().snapshot().name_conflicts()[0].id, *other.id());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Each can still change its roles.
    first.add_role("more").await.unwrap();
    assert!(first.roles_of("twin").unwrap().contains("more"));
    for n in [&first, &second, &peer] {
        n.shutdown().await;
    }
}

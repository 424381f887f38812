//! Many nodes in one process over the in-memory gossip transport (`MemoryNetwork`): a cluster
//! of [`N`] forms (every node sees every other one serving), one more node's join and leave
//! are seen by every node, and the crash of one node (no leave) is noticed by every other node.
//! The gossip is sealed, replay-checked and counted as over UDP; only the sockets are replaced
//! by in-process queues.

use std::time::{Duration, Instant};

use cluster_helper::{MemoryNetwork, Node, RpcListen};
use easy_rpc_tests::cluster::{TEST_SECRET, init_logs, unique_cluster};

/// Nodes in the cluster.
const N: usize = 50;

/// Nodes started at once, at most (batches double up to it).
const BATCH: usize = 50;

/// The gossip interval: slower than the other tests' 100 ms, so that N nodes' gossip (each
/// round's digest names all N) fits the CPU of a debug build on two shared cores. At N = 100
/// and 1 s, or N = 200 and 500 ms, a debug build on 2 loaded cores did not form in 40 s: nodes
/// fell more than the maximum packet age (10 s) behind and dropped what they received as stale.
const GOSSIP: Duration = Duration::from_millis(500);

/// The bound on forming, generous: a debug build on 2 loaded cores took 33 s (load average
/// 3.4).
const FORM_WITHIN: Duration = Duration::from_secs(120);

/// The bound on every node seeing a joiner, and on every node dropping it once it left.
const JOIN_WITHIN: Duration = Duration::from_secs(60);

/// The bound on every node noticing the crash (phi 8 at this interval needs a few seconds).
const CRASH_WITHIN: Duration = Duration::from_secs(60);

fn builder(net: &MemoryNetwork, cluster: &str, name: &str) -> cluster_helper::NodeBuilder {
    Node::builder()
        .cluster(cluster)
        .name(name)
        .listen("127.0.0.1:0")
        .secret(TEST_SECRET)
        .gossip_interval(GOSSIP)
        .rpc_listen(RpcListen::Disabled)
        .roles(["m"])
        .memory_network(net)
}

/// Up to 3 distinct gossip addresses of `nodes`, picked by `pick` (a position per draw).
fn seeds(nodes: &[Node], mut pick: impl FnMut(usize) -> usize) -> Vec<String> {
    let mut picked: Vec<usize> = Vec::new();
    for _ in 0..16 {
        if picked.len() == 3.min(nodes.len()) {
            break;
        }
        let i = pick(nodes.len());
        if !picked.contains(&i) {
            picked.push(i);
        }
    }
    picked
        .into_iter()
        .map(|i| nodes[i].gossip_addr().to_string())
        .collect()
}

/// How many nodes see `name` serving with role `m`.
fn seeing(nodes: &[Node], name: &str) -> usize {
    nodes
        .iter()
        .filter(|x| x.nodes_with_role("m").iter().any(|m| m.id.name() == name))
        .count()
}

/// For each node that lacks a live node in its view of role `m`, its name and the names it
/// lacks.
fn lacking(nodes: &[Node]) -> Vec<(String, Vec<String>)> {
    nodes
        .iter()
        .filter_map(|x| {
            let seen = x.nodes_with_role("m");
            let lacks: Vec<String> = nodes
                .iter()
                .map(|y| y.id().name().to_owned())
                .filter(|name| !seen.iter().any(|m| m.id.name() == name))
                .collect();
            (!lacks.is_empty()).then(|| (x.id().name().to_owned(), lacks))
        })
        .collect()
}

/// Polls `cond` every 50 ms for at most `within`; how long it took, or `None`.
async fn within(within: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if cond() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond().then(|| start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_nodes_form_over_the_memory_transport_and_all_see_a_join_a_leave_and_a_crash() {
    init_logs();
    let net = MemoryNetwork::new();
    let cluster = unique_cluster("scale-memory");
    // A fixed-seed generator: which started nodes seed each newcomer.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut pick = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let t0 = Instant::now();
    let mut nodes: Vec<Node> = Vec::with_capacity(N);
    while nodes.len() < N {
        let started = nodes.len();
        // Each batch at most as large as the cluster it joins (1, 1, 2, 4, ... then BATCH), so
        // that no node is the seed of many newcomers at once.
        let size = BATCH.min(started).clamp(1, N - started);
        let starts: Vec<_> = (started..started + size)
            .map(|i| {
                builder(&net, &cluster, &format!("n{i:03}"))
                    .seeds(seeds(&nodes, &mut pick))
                    .start()
            })
            .collect();
        for node in futures::future::join_all(starts).await {
            nodes.push(node.expect("a node starts on the memory network"));
        }
    }
    assert_eq!(
        net.sockets(),
        N,
        "every node bound an address in the network"
    );
    assert!(
        nodes.iter().all(|x| x.rpc_addr().is_none()),
        "no RPC listener was asked for"
    );

    let formed = within(FORM_WITHIN, || {
        nodes.iter().all(|x| x.nodes_with_role("m").len() == N)
    })
    .await;
    if formed.is_none() {
        let least = nodes
            .iter()
            .min_by_key(|x| x.nodes_with_role("m").len())
            .expect("nodes");
        panic!(
            "{N} nodes did not all see each other within {FORM_WITHIN:?}: the least-informed \
             node, {} ({:?}, seeds {:?}), sees {} serving of {} members, has {:?}; {} nodes \
             see all; the network delivered {} packets, dropped {}",
            least.id(),
            least.status(),
            least.config().seeds,
            least.nodes_with_role("m").len(),
            least.members().len(),
            least.gossip_stats(),
            nodes
                .iter()
                .filter(|x| x.nodes_with_role("m").len() == N)
                .count(),
            net.delivered(),
            net.dropped()
        );
    }
    let formed_after = t0.elapsed();
    tracing::info!("{N} nodes formed in {formed_after:?}");
    // The gossip went through the sealing transport and was counted there.
    let stats = nodes[N / 2].gossip_stats();
    assert!(
        stats.packets_received > 0 && stats.bytes_sent > 0,
        "{stats:?}"
    );
    assert_eq!(stats.packets_rejected, 0, "{stats:?}");

    // One more node joins the formed cluster: with more than 32 peers, nodes greet only a
    // budget of the nodes they learn of per gossip interval, and gossip carries the rest; every
    // node still comes to see the joiner.
    let joiner = builder(&net, &cluster, "joiner")
        .seeds(seeds(&nodes, &mut pick))
        .start()
        .await
        .expect("the joiner starts");
    let joined = within(JOIN_WITHIN, || {
        seeing(&nodes, "joiner") == N && joiner.nodes_with_role("m").len() == N + 1
    })
    .await;
    assert!(
        joined.is_some(),
        "{} of {N} nodes see the joiner after {JOIN_WITHIN:?}; it sees {} serving",
        seeing(&nodes, "joiner"),
        joiner.nodes_with_role("m").len()
    );
    joiner.shutdown().await;
    let left = within(JOIN_WITHIN, || seeing(&nodes, "joiner") == 0).await;
    assert!(
        left.is_some(),
        "{} of {N} nodes still see the joiner {JOIN_WITHIN:?} after it left",
        seeing(&nodes, "joiner")
    );
    drop(joiner);

    // One node crashes (no leave): every other node drops it.
    let victim = nodes.swap_remove(N / 3);
    let name = victim.id().name().to_owned();
    assert_eq!(seeing(&nodes, &name), N - 1);
    tracing::info!("{name} crashes");
    let crashed = Instant::now();
    victim.kill();
    drop(victim);
    // Every poll also looks for a live node missing from a view: a false down, however short.
    let mut first_false_down = None;
    let dropped = within(CRASH_WITHIN, || {
        if first_false_down.is_none() {
            let lacks = lacking(&nodes);
            if !lacks.is_empty() {
                first_false_down = Some((crashed.elapsed(), lacks));
            }
        }
        seeing(&nodes, &name) == 0
    })
    .await;
    assert!(
        dropped.is_some(),
        "{} of {} nodes still see the crashed node {name} after {CRASH_WITHIN:?}",
        seeing(&nodes, &name),
        N - 1
    );
    // Nobody else was declared down on the way.
    if let Some((after, lacks)) = first_false_down {
        panic!(
            "a live node was dropped {after:?} after the crash: {lacks:?} (observer: the live \
             nodes it lacks)"
        );
    }
    let lacking = lacking(&nodes);
    assert!(
        lacking.is_empty(),
        "a live node was dropped: {lacking:?} (observer: the live nodes it lacks)"
    );
    println!(
        "N = {N} over the memory transport: formed in {:.1} s, a join seen by all in {:.1} s, its \
         leave in {:.1} s, a crash dropped by all in {:.1} s",
        formed_after.as_secs_f64(),
        joined.unwrap_or_default().as_secs_f64(),
        left.unwrap_or_default().as_secs_f64(),
        crashed.elapsed().as_secs_f64()
    );
    for x in &nodes {
        x.kill();
    }
}

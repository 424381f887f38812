//! Membership over lossy, slow links: `cluster_node` processes on network-namespace hosts
//! whose links delay, jitter and drop frames (the user-space switch of
//! `easy_rpc_tests::netem`, as `tc netem delay 2ms 1ms loss N%` would on each host's link).
//!
//! Each test starts its own net, so they run in parallel. Every node has role `m`; a node's
//! `TABLE` lines say which nodes its registry returns for `m`, its `DOWN` lines which nodes it
//! declared down. Needs root and `ip` (iproute2); without them each test says so and skips,
//! except under `CI`, where it fails.

use std::time::{Duration, Instant};

use easy_rpc_tests::cluster::unique_cluster;
use easy_rpc_tests::netem::Impairment;
use easy_rpc_tests::netns::Net;
use easy_rpc_tests::process::{NodeProcess, table_has};

const EXE: &str = env!("CARGO_BIN_EXE_cluster_node");

/// An emulated net, or `None` (after saying why) where namespaces cannot be made outside CI.
fn net(hosts: usize) -> Option<Net> {
    match Net::emulated(hosts) {
        Ok(net) => Some(net),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED netem test: needs root and iproute2 for network namespaces: {e}");
            None
        }
        Err(e) => panic!("network namespaces (run as root with iproute2): {e}"),
    }
}

/// `cluster_node` processes, one per host of a net; `None` once stopped.
struct Cluster {
    net: Net,
    nodes: Vec<Option<NodeProcess>>,
}

fn name(i: usize) -> String {
    format!("n{i:02}")
}

impl Cluster {
    /// Starts one node per host, all seeded with host 0's node, and waits until every node
    /// sees every other (returns the time that took, from the first start).
    async fn start(net: Net, within: Duration) -> (Cluster, Duration) {
        let cluster = unique_cluster("netem");
        let env = |i: usize, seed: Option<&str>| {
            let mut e = vec![
                ("CLUSTER_NAME", cluster.clone()),
                ("CLUSTER_LISTEN", format!("{}:0", net.addr(i))),
                ("CLUSTER_ROLES", "m".to_owned()),
            ];
            if let Some(seed) = seed {
                e.push(("CLUSTER_SEEDS", seed.to_owned()));
            }
            e
        };
        let t0 = Instant::now();
        let first = NodeProcess::spawn_with(&net.exec_prefix(0), EXE, &name(0), &env(0, None));
        let seed = first.gossip_addr().await;
        let mut nodes = vec![Some(first)];
        for i in 1..net.len() {
            nodes.push(Some(NodeProcess::spawn_with(
                &net.exec_prefix(i),
                EXE,
                &name(i),
                &env(i, Some(&seed)),
            )));
        }
        let c = Cluster { net, nodes };
        c.wait_all_see(within, "all nodes see each other").await;
        (c, t0.elapsed())
    }

    /// The names of the running nodes, sorted, comma separated.
    fn live_names(&self) -> String {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some())
            .map(name)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn live(&self) -> impl Iterator<Item = &NodeProcess> {
        self.nodes.iter().flatten()
    }

    /// Waits until every running node's registry returns exactly the running nodes.
    async fn wait_all_see(&self, within: Duration, what: &str) -> Duration {
        let want = self.live_names();
        let start = Instant::now();
        loop {
            let lagging: Vec<&str> = self
                .live()
                .filter(|p| !p.last("TABLE").is_some_and(|l| table_has(&l, "m", &want)))
                .map(|p| p.name.as_str())
                .collect();
            if lagging.is_empty() {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "{what}: after {within:?}, {lagging:?} do not see {want}; {:?}\n{}",
                self.net.switch_stats(),
                self.live()
                    .map(|p| format!("{}: {:?}", p.name, p.last("TABLE")))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How many lines each running node has printed: a mark to read what follows.
    fn mark(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .map(|p| p.as_ref().map_or(0, |p| p.output().len()))
            .collect()
    }

    /// Lines printed by running nodes since `mark` that start with `prefix`, as
    /// `(printer, line)`.
    fn since(&self, mark: &[usize], prefix: &str) -> Vec<(String, String)> {
        self.nodes
            .iter()
            .zip(mark)
            .filter_map(|(p, &m)| p.as_ref().map(|p| (p, m)))
            .flat_map(|(p, m)| {
                p.output()
                    .into_iter()
                    .skip(m)
                    .filter(|l| l.starts_with(prefix))
                    .map(|l| (p.name.clone(), l))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Live nodes declared down, and registry views that lacked a live node, since `mark`
    /// (no node stopped since).
    fn false_downs(&self, mark: &[usize]) -> (Vec<(String, String)>, usize) {
        let downs = self.since(mark, "DOWN ");
        let want = self.live_names();
        let short_tables = self
            .since(mark, "TABLE")
            .iter()
            .filter(|(_, l)| !table_has(l, "m", &want))
            .count();
        (downs, short_tables)
    }

    /// Stops node `i` with `signal` and waits until every other node's registry no longer
    /// returns it; returns the time from the signal.
    async fn stop(&mut self, i: usize, signal: &str, within: Duration) -> Duration {
        let p = self.nodes[i].take().expect("running");
        let t0 = Instant::now();
        p.signal(signal);
        self.wait_all_see(within, &format!("{} ({signal}) seen gone", p.name))
            .await;
        let took = t0.elapsed();
        let mut p = p;
        let _ = p.wait_exit(Duration::from_secs(10)).await;
        took
    }

    /// Observes the cluster for `window` with nothing stopped: returns the false downs and the
    /// registry views that lacked a live node.
    async fn watch(&self, window: Duration) -> (Vec<(String, String)>, usize) {
        let mark = self.mark();
        let t0 = Instant::now();
        while t0.elapsed() < window {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.false_downs(&mark)
    }

    async fn shutdown(mut self) {
        for p in self.nodes.iter().flatten() {
            p.signal("TERM");
        }
        for p in self.nodes.iter_mut().flatten() {
            let _ = p.wait_exit(Duration::from_secs(10)).await;
        }
    }
}

/// Join, a window with no change, a graceful leave and a crash, at `loss_percent` loss on
/// every link with 2 ms +/- 1 ms delay. Returns the false downs seen in the window.
async fn lossy(hosts: usize, loss_percent: f64, window: Duration) -> Option<usize> {
    easy_rpc_tests::cluster::init_logs();
    let net = net(hosts)?;
    net.impair_all(Impairment::netem(2.0, 1.0, loss_percent));
    let (mut c, joined) = Cluster::start(net, Duration::from_secs(10)).await;
    let (downs, short) = c.watch(window).await;
    let stats = c.net.switch_stats();
    let leave = c.stop(hosts - 2, "TERM", Duration::from_secs(5)).await;
    let crash = c.stop(hosts - 1, "KILL", Duration::from_secs(10)).await;
    eprintln!(
        "netem {hosts} nodes, 2 ms +/- 1 ms, {loss_percent} % loss: all saw all {joined:?} after \
         the first start; in {window:?}: {} live nodes declared down {downs:?}, {short} views \
         lacking a live node; leave seen by all in {leave:?}, crash in {crash:?}; switch {stats:?}",
        downs.len()
    );
    // The emulation did drop frames, about as often as asked.
    let rate = stats.dropped as f64 / (stats.dropped + stats.delivered) as f64;
    assert!(
        (rate - loss_percent / 100.0).abs() < loss_percent / 100.0 / 2.0,
        "{stats:?}: drop rate {rate}"
    );
    c.shutdown().await;
    Some(downs.len() + short)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_1_percent_loss_no_live_node_is_declared_down() {
    if let Some(false_downs) = lossy(10, 1.0, Duration::from_secs(20)).await {
        assert_eq!(false_downs, 0, "live nodes declared down at 1 % loss");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_5_percent_loss_joins_leaves_and_crashes_are_seen_in_time() {
    if let Some(false_downs) = lossy(10, 5.0, Duration::from_secs(20)).await {
        assert_eq!(false_downs, 0, "live nodes declared down at 5 % loss");
    }
}

/// Two groups of four; frames from group A to group B are lost at 20 % (B to A unharmed).
/// The cluster must not split, and once the loss is removed every node sees every other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asymmetric_loss_between_two_groups_does_not_split_the_cluster() {
    easy_rpc_tests::cluster::init_logs();
    let Some(net) = net(8) else { return };
    net.impair_all(Impairment::netem(2.0, 1.0, 0.0));
    let (c, _) = Cluster::start(net, Duration::from_secs(10)).await;
    let (a, b): (Vec<usize>, Vec<usize>) = ((0..4).collect(), (4..8).collect());
    c.net.impair(&a, &b, Impairment::netem(2.0, 1.0, 20.0));
    let (downs, short) = c.watch(Duration::from_secs(15)).await;
    let stats = c.net.switch_stats();
    // Then heal and check that everyone sees everyone.
    c.net.impair_all(Impairment::netem(2.0, 1.0, 0.0));
    let healed = c
        .wait_all_see(
            Duration::from_secs(10),
            "all see all after the loss is removed",
        )
        .await;
    eprintln!(
        "asymmetric 20 % loss A -> B, 15 s: {} live nodes declared down {downs:?}, {short} views \
         lacking a live node; all saw all {healed:?} after the loss was removed; switch {stats:?}",
        downs.len()
    );
    // At 20 % one way, gossip still flows both ways through every node: no node is lost.
    assert_eq!(downs.len() + short, 0, "live nodes declared down");
    c.shutdown().await;
}

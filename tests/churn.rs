//! The fault suite: real node processes (`rpc_node`) under steady load from two caller nodes,
//! while they are restarted, killed, stopped, added and removed. Every call ends in a result or
//! a typed error and is counted; every non-idempotent execution is logged by the process that
//! ran it, so a call run twice anywhere is caught.
//!
//! Scenarios run one at a time (they measure time-bound behaviour on a 2-core machine).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use easy_rpc::Node;
use easy_rpc_tests::churn::{CALL_TIMEOUT, Counts, Load, WorkClient};
use easy_rpc_tests::cluster::{init_logs, unique_cluster, wait_until};
use easy_rpc_tests::process::NodeProcess;

const EXE: &str = env!("CARGO_BIN_EXE_rpc_node");
const ROLE: &str = "work";

/// One scenario at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Cluster {
    name: String,
    callers: Vec<Node>,
    seed: String,
    servers: Vec<NodeProcess>,
    /// Every server process ever started (stopped ones too), for the execution log.
    retired: Vec<NodeProcess>,
}

impl Cluster {
    async fn start(test: &str, servers: usize) -> Cluster {
        init_logs();
        let name = unique_cluster(test);
        let mut callers = Vec::new();
        for i in 0..2 {
            let mut b = Node::builder()
                .cluster(&name)
                .name(format!("caller-{i}"))
                .listen("127.0.0.1:0")
                .secret(easy_rpc_tests::TEST_SECRET)
                .gossip_interval(Duration::from_millis(100))
                .default_node(false);
            if let Some(first) = callers.first() {
                let first: &Node = first;
                b = b.seeds([first.gossip_addr().to_string()]);
            }
            callers.push(b.start().await.unwrap());
        }
        let seed = callers[0].gossip_addr().to_string();
        let mut c = Cluster {
            name,
            callers,
            seed,
            servers: Vec::new(),
            retired: Vec::new(),
        };
        for i in 0..servers {
            c.spawn(&format!("w-{i}"));
        }
        c.wait_for_servers(servers).await;
        c
    }

    fn spawn(&mut self, name: &str) {
        let p = NodeProcess::spawn(
            EXE,
            name,
            &[
                ("CLUSTER_NAME", self.name.clone()),
                ("CLUSTER_ROLES", ROLE.to_owned()),
                ("CLUSTER_SEEDS", self.seed.clone()),
            ],
        );
        self.servers.push(p);
    }

    /// Waits until both callers see exactly the running servers' names.
    async fn wait_for_servers(&self, n: usize) -> Duration {
        let mut want: Vec<String> = self.servers.iter().map(|s| s.name.clone()).collect();
        want.sort();
        assert_eq!(want.len(), n);
        let callers = self.callers.clone();
        wait_until(
            Duration::from_secs(15),
            "callers see the servers",
            move || {
                callers.iter().all(|c| {
                    let names: Vec<String> = c
                        .nodes_with_role(ROLE)
                        .iter()
                        .map(|m| m.id.name().to_owned())
                        .collect();
                    names == want
                })
            },
        )
        .await
    }

    fn take(&mut self, name: &str) -> NodeProcess {
        let i = self
            .servers
            .iter()
            .position(|s| s.name == name)
            .expect("server");
        self.servers.remove(i)
    }

    /// `EXEC` ids printed by every server process, with how often each was run.
    fn executions(&self) -> HashMap<u64, Vec<String>> {
        let mut runs: HashMap<u64, Vec<String>> = HashMap::new();
        for p in self.servers.iter().chain(&self.retired) {
            for line in p.output() {
                if let Some(id) = line.strip_prefix("EXEC ") {
                    let id = id.split_whitespace().next().unwrap();
                    runs.entry(id.parse().unwrap())
                        .or_default()
                        .push(p.name.clone());
                }
            }
        }
        runs
    }

    /// No call ran twice; every successful `exec` ran exactly once, on the node that answered.
    fn assert_exactly_once(&self, counts: &Counts) {
        let runs = self.executions();
        let twice: Vec<_> = runs.iter().filter(|(_, on)| on.len() > 1).collect();
        assert!(twice.is_empty(), "calls executed more than once: {twice:?}");
        for (id, node) in &counts.exec_ok {
            assert_eq!(
                runs.get(id).map(Vec::as_slice),
                Some(&[node.clone()][..]),
                "exec {id} answered by {node}"
            );
        }
    }

    async fn shutdown(mut self) {
        for s in &self.servers {
            s.signal("TERM");
        }
        for s in &mut self.servers {
            let _ = s.wait_exit(Duration::from_secs(20)).await;
        }
        for c in self.callers {
            c.shutdown().await;
        }
    }
}

fn report(what: &str, c: &Counts) {
    eprintln!(
        "{what}: {} calls; exec ok {} failed {:?}; read ok {} failed {:?}; by_key ok {} failed {:?}; all entries ok {} failed {:?}, empty {}; samples {:?} {:?}",
        c.calls,
        c.exec.ok,
        c.exec.failed,
        c.read.ok,
        c.read.failed,
        c.keyed.ok,
        c.keyed.failed,
        c.all.ok,
        c.all.failed,
        c.all_empty,
        c.exec.samples,
        c.read.samples,
    );
}

fn load(c: &Cluster) -> Load {
    Load::start(&c.callers, ROLE, 2, Duration::from_millis(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_loses_no_call_and_runs_none_twice() {
    let _one = SERIAL.lock().await;
    let mut c = Cluster::start("rolling", 3).await;
    let load = load(&c);
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..3 {
        let name = format!("w-{i}");
        let mut old = c.take(&name);
        let old_started = old.last("STARTED").unwrap();
        old.signal("TERM");
        assert_eq!(old.wait_exit(Duration::from_secs(20)).await, Some(0));
        assert!(old.output().iter().any(|l| l == "LEFT"));
        c.retired.push(old);
        // The pod comes back: same name, new port, new incarnation.
        c.spawn(&name);
        c.wait_for_servers(3).await;
        let new_started = c.servers.last().unwrap().gossip_addr().await;
        assert!(!old_started.ends_with(&new_started));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let counts = load.stop().await;
    report("rolling restart", &counts);
    assert!(counts.exec.ok > 100, "the load ran");
    assert_eq!(counts.failures(), 0, "no failed call of any kind");
    assert_eq!(counts.all_empty, 0);
    c.assert_exactly_once(&counts);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_fails_only_calls_in_flight_on_it_and_no_idempotent_call() {
    let _one = SERIAL.lock().await;
    let mut c = Cluster::start("crash", 3).await;
    let load = load(&c);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let victim = c.take("w-1");
    let killed = Instant::now();
    victim.signal("KILL");
    c.retired.push(victim);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let counts = load.stop().await;
    report("crash", &counts);
    // Idempotent calls: retried elsewhere, no failure.
    assert_eq!(counts.read.failures(), 0, "{:?}", counts.read.samples);
    assert_eq!(counts.keyed.failures(), 0, "{:?}", counts.keyed.samples);
    // Non-idempotent calls: at most the ones in flight on the victim (2 loops x 2 callers), all
    // NodeDown or Timeout, all within 1 s of the kill (then it is not picked any more).
    let failed = counts.exec.failures();
    assert!(failed <= 4, "{failed} failed: {:?}", counts.exec.samples);
    assert!(
        counts
            .exec
            .failed
            .keys()
            .all(|k| k == "NodeDown" || k == "Timeout"),
        "{:?}",
        counts.exec.failed
    );
    for t in &counts.exec.failed_at {
        assert!(
            t.duration_since(killed) < Duration::from_secs(1),
            "a failure {:?} after the kill",
            t.duration_since(killed)
        );
    }
    c.assert_exactly_once(&counts);
    c.wait_for_servers(2).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_and_in_under_load() {
    let _one = SERIAL.lock().await;
    let mut c = Cluster::start("scale", 3).await;
    let load = load(&c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Out: a new node takes calls within a second of being seen.
    c.spawn("w-3");
    c.wait_for_servers(4).await;
    let seen = Instant::now();
    let newcomer = c.servers.last().unwrap();
    while !newcomer.output().iter().any(|l| l.starts_with("EXEC ")) {
        assert!(
            seen.elapsed() < Duration::from_secs(1),
            "w-3 got no call within 1 s of being seen"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // In: two nodes leave gracefully.
    for name in ["w-0", "w-2"] {
        let mut p = c.take(name);
        p.signal("TERM");
        assert_eq!(p.wait_exit(Duration::from_secs(20)).await, Some(0));
        c.retired.push(p);
    }
    c.wait_for_servers(2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = load.stop().await;
    report("scale", &counts);
    assert_eq!(counts.failures(), 0);
    c.assert_exactly_once(&counts);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_node_times_out_is_avoided_marked_down_and_rejoins() {
    let _one = SERIAL.lock().await;
    let c = Cluster::start("stuck", 3).await;
    let load = load(&c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stuck = c.servers.iter().find(|s| s.name == "w-1").unwrap();
    stuck.signal("STOP");
    let stopped = Instant::now();
    // Membership marks it down.
    let callers = c.callers.clone();
    let took = wait_until(Duration::from_secs(10), "w-1 marked down", move || {
        callers
            .iter()
            .all(|n| n.nodes_with_role(ROLE).iter().all(|m| m.id.name() != "w-1"))
    })
    .await;
    eprintln!("stuck node dropped from the registry after {took:?}");
    assert!(took < Duration::from_secs(5));
    // Calls that were on it end when membership declares it down (non-idempotent ones with
    // NodeDown, idempotent ones sent elsewhere), or at their deadline if that comes first, as
    // Timeouts; the rest succeed.
    tokio::time::sleep(CALL_TIMEOUT + Duration::from_millis(500)).await;
    let during = load.counts();
    report("stuck", &during);
    for tally in [&during.exec, &during.read, &during.keyed] {
        assert!(
            tally
                .failed
                .keys()
                .all(|k| k == "Timeout" || k == "NodeDown"),
            "{:?}",
            tally.failed
        );
        for t in &tally.failed_at {
            let after = t.duration_since(stopped);
            assert!(
                after <= CALL_TIMEOUT + Duration::from_millis(500),
                "{after:?}"
            );
        }
    }
    // p2c stopped picking it long before membership did: only calls in flight on it (and
    // the few picked before its pending calls piled up) failed.
    assert!(during.exec.failures() <= 8, "{:?}", during.exec.failed);
    // SIGCONT: it rejoins and takes calls again.
    let before = stuck
        .output()
        .iter()
        .filter(|l| l.starts_with("EXEC "))
        .count();
    stuck.signal("CONT");
    c.wait_for_servers(3).await;
    let resumed = Instant::now();
    while stuck
        .output()
        .iter()
        .filter(|l| l.starts_with("EXEC "))
        .count()
        <= before + 5
    {
        assert!(
            resumed.elapsed() < Duration::from_secs(5),
            "w-1 takes calls again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let counts = load.stop().await;
    report("stuck, after resume", &counts);
    c.assert_exactly_once(&counts);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_role_fails_fast_and_recovers() {
    let _one = SERIAL.lock().await;
    let mut c = Cluster::start("empty", 3).await;
    let load = load(&c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Every node of the role goes.
    for name in ["w-0", "w-1", "w-2"] {
        let p = c.take(name);
        p.signal("TERM");
        c.retired.push(p);
    }
    for p in &mut c.retired {
        assert_eq!(p.wait_exit(Duration::from_secs(20)).await, Some(0));
    }
    let callers = c.callers.clone();
    wait_until(Duration::from_secs(5), "role empty", move || {
        callers.iter().all(|n| n.nodes_with_role(ROLE).is_empty())
    })
    .await;
    let empty_from = load.counts();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let empty_to = load.counts();
    // Nothing hangs: every loop keeps failing fast with NoNodeForRole, `all` answers empty.
    let fast_failures = empty_to
        .exec
        .failed
        .get("NoNodeForRole")
        .copied()
        .unwrap_or(0)
        - empty_from
            .exec
            .failed
            .get("NoNodeForRole")
            .copied()
            .unwrap_or(0);
    assert!(
        fast_failures > 100,
        "only {fast_failures} calls in 1 s: calls hang"
    );
    assert!(empty_to.all_empty > empty_from.all_empty);
    let caller = c.callers[0].clone();
    let started = Instant::now();
    let e = caller.any(ROLE).exec(0, 0).await.unwrap_err();
    assert!(matches!(e, easy_rpc::RpcError::NoNodeForRole { .. }), "{e}");
    let e = caller.by_key(ROLE, "k").read(0, 0).await.unwrap_err();
    assert!(matches!(e, easy_rpc::RpcError::NoNodeForRole { .. }), "{e}");
    assert!(caller.all(ROLE).whoami().await.unwrap().is_empty());
    assert!(started.elapsed() < Duration::from_millis(100), "fails fast");

    // A node of the role appears: calls succeed again, no manual step.
    c.spawn("w-9");
    c.wait_for_servers(1).await;
    let back = load.counts();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = load.stop().await;
    report("empty role", &counts);
    assert!(counts.exec.ok > back.exec.ok + 20, "calls resumed");
    // Every failure was a fast NoNodeForRole (or a call caught by the last node leaving:
    // refused at the handshake, or answered "not run").
    for tally in [&counts.exec, &counts.read, &counts.keyed] {
        for kind in tally.failed.keys() {
            assert!(
                kind == "NoNodeForRole" || kind == "Rejected" || kind == "NotRun",
                "{:?}",
                tally.failed
            );
        }
    }
    c.assert_exactly_once(&counts);
    c.shutdown().await;
}

/// A loopback IP per "pod" for the seed-loss scenario, distinct per test process.
fn pod_ip(k: u8) -> std::net::IpAddr {
    let base = (std::process::id() % 200) as u8;
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 88, base, 10 + k))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_every_seed_keeps_the_cluster_working_and_a_late_node_still_joins() {
    use easy_rpc_tests::dns::TestDns;
    let _one = SERIAL.lock().await;
    init_logs();
    let name = unique_cluster("seedloss");
    let dns = TestDns::start().await;
    let service = "work.seedloss.svc.cluster.local";
    // One port number free on every pod IP, as in Kubernetes (each pod its own IP).
    let port = loop {
        let probe = std::net::UdpSocket::bind((pod_ip(0), 0)).unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        if (0..6u8).all(|k| {
            std::net::UdpSocket::bind((pod_ip(k), port)).is_ok()
                && std::net::TcpListener::bind((pod_ip(k), port)).is_ok()
        }) {
            break port;
        }
    };
    let seeds = format!("dns:{service}:{port}");
    let dns_env = |k: u8, node: &str| {
        vec![
            ("CLUSTER_NAME", name.clone()),
            ("CLUSTER_ROLES", ROLE.to_owned()),
            ("CLUSTER_LISTEN", format!("{}:{port}", pod_ip(k))),
            ("CLUSTER_SEEDS", seeds.clone()),
            ("CLUSTER_DNS_SERVER", dns.addr().to_string()),
            ("CLUSTER_DNS_MIN_INTERVAL", "200ms".to_owned()),
            ("CLUSTER_NODE_NAME", node.to_owned()),
        ]
    };
    // The headless service lists the three pods.
    dns.set_a(service, &[pod_ip(0), pod_ip(1), pod_ip(2)], 1);
    let mut servers: Vec<NodeProcess> = (0..3u8)
        .map(|k| NodeProcess::spawn(EXE, &format!("w-{k}"), &dns_env(k, &format!("w-{k}"))))
        .collect();
    let mut callers = Vec::new();
    for (i, k) in [(0, 4u8), (1, 5u8)] {
        callers.push(
            Node::builder()
                .cluster(&name)
                .name(format!("caller-{i}"))
                .listen(format!("{}:{port}", pod_ip(k)))
                .secret(easy_rpc_tests::TEST_SECRET)
                .gossip_interval(Duration::from_millis(100))
                .default_node(false)
                .seeds([seeds.as_str()])
                .dns_server(dns.addr())
                .dns_interval(Duration::from_millis(200), Duration::from_secs(2))
                .start()
                .await
                .unwrap(),
        );
    }
    let sees = |callers: &[Node], n: usize| {
        let callers = callers.to_vec();
        move || callers.iter().all(|c| c.nodes_with_role(ROLE).len() == n)
    };
    wait_until(
        Duration::from_secs(15),
        "callers see 3 servers",
        sees(&callers, 3),
    )
    .await;
    let load = Load::start(&callers, ROLE, 2, Duration::from_millis(5));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Every seed disappears: the formed cluster keeps working.
    dns.remove(service);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(sees(&callers, 3)());
    // A late pod starts while DNS lists nobody: it cannot find the cluster yet.
    servers.push(NodeProcess::spawn(EXE, "w-3", &dns_env(3, "w-3")));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(sees(&callers, 3)(), "nobody to find yet");
    // DNS lists one live member (not even the late pod itself): it joins through it.
    dns.set_a(service, &[pod_ip(1)], 1);
    wait_until(
        Duration::from_secs(10),
        "w-3 joined through DNS",
        sees(&callers, 4),
    )
    .await;
    let late = servers.last().unwrap();
    let joined = Instant::now();
    while !late.output().iter().any(|l| l.starts_with("EXEC ")) {
        assert!(joined.elapsed() < Duration::from_secs(2), "w-3 takes calls");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let counts = load.stop().await;
    report("seed loss", &counts);
    assert_eq!(counts.failures(), 0);
    let c = Cluster {
        name,
        callers,
        seed: String::new(),
        servers,
        retired: Vec::new(),
    };
    c.assert_exactly_once(&counts);
    c.shutdown().await;
}

//! The RPC runtime end to end with a service written out by hand (what `#[easy_rpc::service]`
//! expands to), so the runtime is tested independently of the macro: any / all / by_key over
//! real nodes on loopback, the handshake's refusals, and a node that keeps serving through
//! garbage.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use easy_rpc::{
    Handler, MethodInfo, Never, Node, RejectReason, RpcError, Served, ServiceDef, Target,
};
use easy_rpc_tests::cluster::{init_logs, unique_cluster, wait_until};
use easy_rpc_tests::{OTHER_SECRET, TEST_SECRET};
use serde::{Deserialize, Serialize};

struct AdderService;

#[derive(Serialize, Deserialize)]
enum AdderRequest {
    Add { a: i64, b: i64 },
    Whoami {},
    Fail { msg: String },
    Sleep { ms: u64 },
    SleepIdem { ms: u64 },
    SleepOn { node: String, ms: u64 },
    Deadline {},
    Nested { role: String },
    Boom {},
}

impl tarpc::RequestName for AdderRequest {
    fn name(&self) -> &str {
        match self {
            AdderRequest::Add { .. } => "add",
            AdderRequest::Whoami {} => "whoami",
            AdderRequest::Fail { .. } => "fail",
            AdderRequest::Sleep { .. } => "sleep",
            AdderRequest::SleepIdem { .. } => "sleep_idem",
            AdderRequest::SleepOn { .. } => "sleep_on",
            AdderRequest::Deadline {} => "deadline",
            AdderRequest::Nested { .. } => "nested",
            AdderRequest::Boom {} => "boom",
        }
    }
}

#[derive(Serialize, Deserialize)]
enum AdderResponse {
    Add(i64),
    Whoami(String),
    Fail(Result<(), String>),
    Sleep(String),
    Deadline(i64),
    Nested(i64),
}

static ADD: MethodInfo = MethodInfo::new("add").idempotent();
static WHOAMI: MethodInfo = MethodInfo::new("whoami");
static FAIL: MethodInfo = MethodInfo::new("fail");
static SLEEP: MethodInfo = MethodInfo::new("sleep");
static SLEEP_IDEM: MethodInfo = MethodInfo::new("sleep_idem").idempotent();
static SLEEP_ON: MethodInfo = MethodInfo::new("sleep_on");
static DEADLINE: MethodInfo = MethodInfo::new("deadline");
static NESTED: MethodInfo = MethodInfo::new("nested");
static BOOM: MethodInfo = MethodInfo::new("boom");

impl ServiceDef for AdderService {
    const NAME: &'static str = "Adder";
    type Req = AdderRequest;
    type Resp = AdderResponse;
    fn method(req: &AdderRequest) -> &'static MethodInfo {
        match req {
            AdderRequest::Add { .. } => &ADD,
            AdderRequest::Whoami {} => &WHOAMI,
            AdderRequest::Fail { .. } => &FAIL,
            AdderRequest::Sleep { .. } => &SLEEP,
            AdderRequest::SleepIdem { .. } => &SLEEP_IDEM,
            AdderRequest::SleepOn { .. } => &SLEEP_ON,
            AdderRequest::Deadline {} => &DEADLINE,
            AdderRequest::Nested { .. } => &NESTED,
            AdderRequest::Boom {} => &BOOM,
        }
    }
}

#[derive(Clone)]
struct AdderImpl {
    name: String,
    calls: Arc<AtomicUsize>,
    stats: Arc<SleepStats>,
    node: Arc<std::sync::OnceLock<Node>>,
}

#[derive(Default)]
struct SleepStats {
    started: AtomicUsize,
    completed: AtomicUsize,
    cancelled: AtomicUsize,
}

/// Counts a sleep as cancelled if it is dropped before it completes.
struct Unfinished(Arc<SleepStats>, bool);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if !self.1 {
            self.0.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Handler<AdderService> for AdderImpl {
    fn handle(&self, req: AdderRequest) -> impl Future<Output = AdderResponse> + Send {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let name = self.name.clone();
        let stats = self.stats.clone();
        let node = self.node.clone();
        async move {
            match req {
                AdderRequest::Add { a, b } => AdderResponse::Add(a + b),
                AdderRequest::Whoami {} => AdderResponse::Whoami(name),
                AdderRequest::Fail { msg } => AdderResponse::Fail(Err(msg)),
                AdderRequest::Sleep { ms } | AdderRequest::SleepIdem { ms } => {
                    stats.started.fetch_add(1, Ordering::SeqCst);
                    let mut guard = Unfinished(stats.clone(), false);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    guard.1 = true;
                    stats.completed.fetch_add(1, Ordering::SeqCst);
                    AdderResponse::Sleep(name)
                }
                AdderRequest::SleepOn { node, ms } => {
                    if node == name {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    AdderResponse::Sleep(name)
                }
                AdderRequest::Deadline {} => AdderResponse::Deadline(remaining_ms()),
                AdderRequest::Nested { role } => {
                    let node = node.get().expect("node set").clone();
                    let inner = deadline(&node.any(&role)).await.unwrap_or(-2);
                    AdderResponse::Nested(inner)
                }
                AdderRequest::Boom {} => panic!("boom {}", easy_rpc_tests::cluster::ON_PURPOSE),
            }
        }
    }
}

fn add<C: Target>(
    c: &C,
    a: i64,
    b: i64,
) -> impl Future<Output = C::Output<i64, Never>> + Send + 'static {
    c.__call::<AdderService, _, _>(&ADD, AdderRequest::Add { a, b }, |r| match r {
        AdderResponse::Add(v) => Some(Ok(v)),
        _ => None,
    })
}

fn whoami<C: Target>(c: &C) -> impl Future<Output = C::Output<String, Never>> + Send + 'static {
    c.__call::<AdderService, _, _>(&WHOAMI, AdderRequest::Whoami {}, |r| match r {
        AdderResponse::Whoami(v) => Some(Ok(v)),
        _ => None,
    })
}

fn remaining_ms() -> i64 {
    easy_rpc::context::deadline().map_or(-1, |d| {
        d.saturating_duration_since(std::time::Instant::now())
            .as_millis() as i64
    })
}

fn sleep<C: Target>(
    c: &C,
    ms: u64,
    idempotent: bool,
) -> impl Future<Output = C::Output<String, Never>> + Send + 'static {
    let (method, req) = if idempotent {
        (&SLEEP_IDEM, AdderRequest::SleepIdem { ms })
    } else {
        (&SLEEP, AdderRequest::Sleep { ms })
    };
    c.__call::<AdderService, _, _>(method, req, |r| match r {
        AdderResponse::Sleep(v) => Some(Ok(v)),
        _ => None,
    })
}

fn sleep_on<C: Target>(
    c: &C,
    node: &str,
    ms: u64,
) -> impl Future<Output = C::Output<String, Never>> + Send + 'static {
    c.__call::<AdderService, _, _>(
        &SLEEP_ON,
        AdderRequest::SleepOn {
            node: node.to_owned(),
            ms,
        },
        |r| match r {
            AdderResponse::Sleep(v) => Some(Ok(v)),
            _ => None,
        },
    )
}

fn deadline<C: Target>(c: &C) -> impl Future<Output = C::Output<i64, Never>> + Send + 'static {
    c.__call::<AdderService, _, _>(&DEADLINE, AdderRequest::Deadline {}, |r| match r {
        AdderResponse::Deadline(v) => Some(Ok(v)),
        _ => None,
    })
}

fn nested<C: Target>(
    c: &C,
    role: &str,
) -> impl Future<Output = C::Output<i64, Never>> + Send + 'static {
    c.__call::<AdderService, _, _>(
        &NESTED,
        AdderRequest::Nested {
            role: role.to_owned(),
        },
        |r| match r {
            AdderResponse::Nested(v) => Some(Ok(v)),
            _ => None,
        },
    )
}

fn boom<C: Target>(c: &C) -> impl Future<Output = C::Output<(), Never>> + Send + 'static {
    c.__call::<AdderService, _, _>(&BOOM, AdderRequest::Boom {}, |_| None)
}

fn fail<C: Target>(
    c: &C,
    msg: &str,
) -> impl Future<Output = C::Output<(), String>> + Send + 'static {
    c.__call::<AdderService, _, _>(
        &FAIL,
        AdderRequest::Fail {
            msg: msg.to_owned(),
        },
        |r| match r {
            AdderResponse::Fail(v) => Some(v),
            _ => None,
        },
    )
}

async fn node(
    cluster: &str,
    name: &str,
    roles: &[&str],
    seed: Option<&Node>,
) -> (Node, Arc<AtomicUsize>) {
    let (node, calls, _) = node_with_stats(cluster, name, roles, seed).await;
    (node, calls)
}

async fn node_with_stats(
    cluster: &str,
    name: &str,
    roles: &[&str],
    seed: Option<&Node>,
) -> (Node, Arc<AtomicUsize>, Arc<SleepStats>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let stats = Arc::new(SleepStats::default());
    let cell = Arc::new(std::sync::OnceLock::new());
    let served = Served::new::<AdderService, _>(AdderImpl {
        name: name.to_owned(),
        calls: calls.clone(),
        stats: stats.clone(),
        node: cell.clone(),
    });
    let mut b = Node::builder()
        .cluster(cluster)
        .name(name)
        .listen("127.0.0.1:0")
        .secret(TEST_SECRET)
        .gossip_interval(Duration::from_millis(100))
        .leave_grace(Duration::from_millis(300))
        .roles(roles.iter().copied())
        .default_node(false);
    if !roles.is_empty() {
        b = b.serve(served);
    }
    if let Some(s) = seed {
        b = b.seeds([s.gossip_addr().to_string()]);
    }
    let node = b.start().await.unwrap();
    let _ = cell.set(node.clone());
    (node, calls, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_all_by_key_and_typed_errors() {
    init_logs();
    let c = unique_cluster("rpc");
    let (gw, _) = node(&c, "gw", &[], None).await;
    let (a, a_calls) = node(&c, "adder-a", &["adder"], Some(&gw)).await;
    let (b, b_calls) = node(&c, "adder-b", &["adder"], Some(&gw)).await;
    wait_until(Duration::from_secs(5), "gw sees both adders", || {
        gw.nodes_with_role("adder").len() == 2
    })
    .await;

    // any: correct answers, spread over both nodes.
    for i in 0..200 {
        assert_eq!(add(&gw.any("adder"), i, 1).await.unwrap(), i + 1);
    }
    let (na, nb) = (
        a_calls.load(Ordering::Relaxed),
        b_calls.load(Ordering::Relaxed),
    );
    assert_eq!(na + nb, 200);
    assert!(na > 20 && nb > 20, "balanced: {na} / {nb}");

    // all: one result per node, in node order.
    let mut names: Vec<String> = whoami(&gw.all("adder"))
        .await
        .unwrap()
        .into_iter()
        .map(|(node, r)| {
            let name = r.unwrap();
            assert_eq!(node.name(), name);
            name
        })
        .collect();
    names.sort();
    assert_eq!(names, ["adder-a", "adder-b"]);

    // by_key: the same key always lands on the same node.
    for key in 0..20 {
        let first = whoami(&gw.by_key("adder", key)).await.unwrap();
        for _ in 0..3 {
            assert_eq!(whoami(&gw.by_key("adder", key)).await.unwrap(), first);
        }
    }

    // The method's own error comes back typed, naming the node.
    match fail(&gw.any("adder"), "insufficient funds").await {
        Err(RpcError::Remote { node, error }) => {
            assert_eq!(error, "insufficient funds");
            assert!(node.name().starts_with("adder-"));
        }
        other => panic!("expected Remote, got {other:?}"),
    }

    // No node for a role: fails fast.
    let started = std::time::Instant::now();
    let e = add(&gw.any("nobody"), 1, 2).await.unwrap_err();
    assert!(matches!(e, RpcError::NoNodeForRole { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_millis(100));
    assert!(whoami(&gw.all("nobody")).await.unwrap().is_empty());

    // Spawnable: the futures are Send + 'static.
    let any = gw.any("adder");
    let joined = tokio::spawn(async move { add(&any, 2, 3).await })
        .await
        .unwrap();
    assert_eq!(joined.unwrap(), 5);

    // Graceful leave: calls keep succeeding on the remaining node.
    b.shutdown().await;
    for i in 0..50 {
        assert_eq!(add(&gw.any("adder"), i, i).await.unwrap(), 2 * i);
    }
    a.shutdown().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_peers_are_refused_and_the_node_keeps_serving() {
    init_logs();
    let c = unique_cluster("rpc-bad");
    let (server, _) = node(&c, "server", &["adder"], None).await;
    let (client, _) = node(&c, "client", &[], Some(&server)).await;
    wait_until(Duration::from_secs(5), "client sees server", || {
        client.nodes_with_role("adder").len() == 1
    })
    .await;
    let rpc_addr = server.rpc_addr().unwrap();

    // Garbage, a half handshake, and an HTTP request straight at the RPC port.
    use tokio::io::AsyncWriteExt;
    for junk in [
        &b"\x00\x01\x02garbage"[..],
        b"ERPC",
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        let mut s = tokio::net::TcpStream::connect(rpc_addr).await.unwrap();
        s.write_all(junk).await.unwrap();
        drop(s);
    }
    assert_eq!(add(&client.any("adder"), 40, 2).await.unwrap(), 42);

    // A node of another cluster and one with another secret, calling directly: refused at the
    // handshake with a clear reason.
    let outsider = |cluster: &str, secret: &str| {
        Node::builder()
            .cluster(cluster)
            .name("outsider")
            .listen("127.0.0.1:0")
            .secret(secret)
            .default_node(false)
            .seeds([server.gossip_addr().to_string()])
            .start()
    };
    let wrong_secret = outsider(&c, OTHER_SECRET).await.unwrap();
    let wrong_cluster = outsider(&format!("{c}-x"), TEST_SECRET).await.unwrap();
    // They never see the server in their registries (gossip is authenticated too), so `any`
    // fails with NoNodeForRole; the handshake refusals are covered by the handshake's tests
    // and, over TCP, by calling a node that does not serve a service:
    assert!(matches!(
        add(&wrong_secret.any("adder"), 1, 1).await,
        Err(RpcError::NoNodeForRole { .. })
    ));
    assert!(matches!(
        add(&wrong_cluster.any("adder"), 1, 1).await,
        Err(RpcError::NoNodeForRole { .. })
    ));

    // Still serving everyone else.
    assert_eq!(add(&client.any("adder"), 1, 1).await.unwrap(), 2);
    wait_until(
        Duration::from_secs(5),
        "garbage connections counted",
        || server.rejected_connections() >= 3,
    )
    .await;
    for n in [server, client, wrong_secret, wrong_cluster] {
        n.shutdown().await;
    }
}

async fn cluster_of(
    c: &str,
    names: &[&str],
) -> (Node, Vec<(Node, Arc<AtomicUsize>, Arc<SleepStats>)>) {
    let (gw, _) = node(c, "gw", &[], None).await;
    let mut nodes = Vec::new();
    for name in names {
        nodes.push(node_with_stats(c, name, &["adder"], Some(&gw)).await);
    }
    let n = names.len();
    wait_until(Duration::from_secs(5), "gateway sees every adder", || {
        gw.nodes_with_role("adder").len() == n
    })
    .await;
    (gw, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_refusals_over_tcp_leave_the_node_serving() {
    init_logs();
    let c = unique_cluster("rpc-hs");
    let (gw, nodes) = cluster_of(&c, &["hs-a"]).await;
    let server = &nodes[0].0;
    let addr = server.rpc_addr().unwrap();
    let key = *cluster_helper_key(TEST_SECRET, &c);
    let try_handshake = |key: [u8; 32], service: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        easy_rpc::__private::handshake_client(&mut s, &key, service).await
    };
    assert_eq!(try_handshake(key, "Adder").await, Ok(()));
    // A wrong secret and a wrong cluster name look the same to the caller.
    let other_key = *cluster_helper_key(OTHER_SECRET, &c);
    assert_eq!(
        try_handshake(other_key, "Adder").await,
        Err(Some(RejectReason::Unauthenticated))
    );
    let other_cluster = *cluster_helper_key(TEST_SECRET, &format!("{c}-x"));
    assert_eq!(
        try_handshake(other_cluster, "Adder").await,
        Err(Some(RejectReason::Unauthenticated))
    );
    assert_eq!(
        try_handshake(key, "Nope").await,
        Err(Some(RejectReason::UnknownService {
            service: "Nope".into()
        }))
    );
    // Another protocol version: the server answers with its own version and hangs up.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"ERPC\x00\x63").await.unwrap();
        let mut preamble = [0u8; 6];
        s.read_exact(&mut preamble).await.unwrap();
        assert_eq!(&preamble[..4], b"ERPC");
        assert_eq!(
            u16::from_be_bytes([preamble[4], preamble[5]]),
            easy_rpc::PROTOCOL_VERSION
        );
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0, "closed");
    }
    wait_until(Duration::from_secs(5), "refusals counted", || {
        server.rejected_connections() >= 4
    })
    .await;
    assert_eq!(add(&gw.any("adder"), 2, 2).await.unwrap(), 4);
    gw.shutdown().await;
    server.shutdown().await;
}

fn cluster_helper_key(secret: &str, cluster: &str) -> Box<[u8; 32]> {
    Box::new(
        *easy_rpc::cluster_helper::ClusterKey::derive(
            easy_rpc::cluster_helper::Secret::parse(secret)
                .unwrap()
                .expose(),
            cluster,
            easy_rpc::__private::RPC_KEY_PURPOSE,
        )
        .as_bytes(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_propagate_and_dropping_a_call_cancels_the_server_work() {
    init_logs();
    let c = unique_cluster("rpc-deadline");
    let (gw, nodes) = cluster_of(&c, &["dl-a"]).await;
    let stats = nodes[0].2.clone();

    // The server sees the caller's deadline...
    let seen = deadline(&gw.any("adder").timeout(Duration::from_millis(700)))
        .await
        .unwrap();
    assert!((400..=700).contains(&seen), "server saw {seen} ms left");
    // ...and a call it makes while serving inherits it (its own default would be 10 s).
    let inner = nested(
        &gw.any("adder").timeout(Duration::from_millis(800)),
        "adder",
    )
    .await
    .unwrap();
    assert!(
        (300..=800).contains(&inner),
        "nested call saw {inner} ms left"
    );

    // A call that outlives its deadline ends at the deadline with Timeout, and the server
    // stops the work.
    let started = std::time::Instant::now();
    let e = sleep(
        &gw.any("adder").timeout(Duration::from_millis(200)),
        5_000,
        false,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, RpcError::Timeout { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_millis(1_000));
    wait_until(
        Duration::from_secs(3),
        "server cancelled the expired call",
        || stats.cancelled.load(Ordering::SeqCst) == 1,
    )
    .await;

    // Dropping the call's future cancels the remote work.
    let call = sleep(&gw.any("adder"), 5_000, false);
    let handle = tokio::spawn(call);
    wait_until(Duration::from_secs(3), "server started the sleep", || {
        stats.started.load(Ordering::SeqCst) == 2
    })
    .await;
    handle.abort();
    wait_until(
        Duration::from_secs(3),
        "server cancelled the dropped call",
        || stats.cancelled.load(Ordering::SeqCst) == 2,
    )
    .await;
    assert_eq!(stats.completed.load(Ordering::SeqCst), 0);
    gw.shutdown().await;
    nodes[0].0.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_only_when_safe() {
    init_logs();
    let c = unique_cluster("rpc-retry");
    let (gw, nodes) = cluster_of(&c, &["r-a", "r-b"]).await;

    // A node advertising the service whose port refuses connections: calls that hit it are
    // rerouted (they never reached a server) and it is skipped from then on.
    let broken = easy_rpc::cluster_helper::Node::builder()
        .cluster(&c)
        .name("r-broken")
        .listen("127.0.0.1:0")
        .secret(TEST_SECRET)
        .gossip_interval(Duration::from_millis(100))
        .roles(["adder"])
        .services(["Adder"])
        .rpc_listen(easy_rpc::cluster_helper::RpcListen::SamePort)
        .seeds([gw.gossip_addr().to_string()])
        .start()
        .await
        .unwrap();
    drop(broken.take_rpc_listener()); // closed: connections are refused
    wait_until(
        Duration::from_secs(5),
        "gateway sees the broken node",
        || gw.nodes_with_role("adder").len() == 3,
    )
    .await;
    for i in 0..100 {
        assert_eq!(
            add(&gw.any("adder"), i, 1).await.unwrap(),
            i + 1,
            "call {i}"
        );
    }

    // A lost connection mid-call: a non-idempotent call fails with NodeDown and is not sent
    // again; an idempotent one is retried on the other node.
    let key_on = |node: &Node| {
        (0..1000u32)
            .find(|k| gw.by_key("adder", k).owner::<AdderService>().as_ref() == Some(node.id()))
            .expect("some key is owned by the node")
    };
    let (a, _, a_stats) = &nodes[0];
    let (_, _, b_stats) = &nodes[1];
    let k = key_on(a);
    let plain = tokio::spawn(sleep(&gw.by_key("adder", k), 600, false));
    let idem = tokio::spawn(sleep(&gw.by_key("adder", k), 600, true));
    wait_until(Duration::from_secs(3), "both calls running on a", || {
        a_stats.started.load(Ordering::SeqCst) == 2
    })
    .await;
    a.kill();
    let plain = plain.await.unwrap();
    assert!(matches!(plain, Err(RpcError::NodeDown { .. })), "{plain:?}");
    let idem = idem.await.unwrap();
    assert_eq!(
        idem.unwrap(),
        "r-b",
        "idempotent call retried on the other node"
    );
    assert_eq!(
        b_stats.started.load(Ordering::SeqCst),
        1,
        "only the idempotent call ran twice"
    );
    broken.shutdown().await;
    gw.shutdown().await;
    nodes[1].0.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strategies_and_one_connection_per_node() {
    init_logs();
    let c = unique_cluster("rpc-strat");
    let (gw, nodes) = cluster_of(&c, &["s-a", "s-b", "s-c"]).await;

    // Round robin: each node in turn.
    let rr = gw.any("adder").strategy(easy_rpc::Strategy::RoundRobin);
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(whoami(&rr).await.unwrap());
    }
    assert_eq!(seen[0..3], seen[3..6]);
    let mut first3 = seen[0..3].to_vec();
    first3.sort();
    assert_eq!(first3, ["s-a", "s-b", "s-c"]);

    // Local first: a node that serves the role calls itself.
    let (a, _, _) = &nodes[0];
    for _ in 0..10 {
        let me = whoami(&a.any("adder").strategy(easy_rpc::Strategy::LocalFirst))
            .await
            .unwrap();
        assert_eq!(me, "s-a");
    }
    // Random spreads over every node; peak EWMA over at least two (it avoids the slowest).
    for (strategy, at_least) in [
        (easy_rpc::Strategy::Random, 3),
        (easy_rpc::Strategy::P2cPeakEwma, 2),
    ] {
        let t = gw.any("adder").strategy(strategy);
        let mut names = std::collections::BTreeSet::new();
        for _ in 0..100 {
            names.insert(whoami(&t).await.unwrap());
        }
        assert!(names.len() >= at_least, "{strategy:?}: {names:?}");
    }

    // 1000 calls at once from a fresh node: one connection per server, no storm.
    let (fresh, _) = node(&c, "fresh", &[], Some(&gw)).await;
    wait_until(Duration::from_secs(5), "fresh sees adders", || {
        fresh.nodes_with_role("adder").len() == 3
    })
    .await;
    let before: Vec<usize> = nodes.iter().map(|n| n.0.accepted_connections()).collect();
    let any = fresh.any("adder");
    let calls: Vec<_> = (0..1000).map(|i| add(&any, i, i)).collect();
    let results = futures_join_all(calls).await;
    assert!(
        results
            .iter()
            .enumerate()
            .all(|(i, r)| *r.as_ref().unwrap() == 2 * i as i64)
    );
    for (n, before) in nodes.iter().zip(before) {
        assert_eq!(n.0.accepted_connections() - before, 1, "{}", n.0.id());
    }
    for n in nodes {
        n.0.shutdown().await;
    }
    fresh.shutdown().await;
    gw.shutdown().await;
}

async fn futures_join_all<F: std::future::Future>(fs: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::with_capacity(fs.len());
    let handles: Vec<_> = fs.into_iter().map(Box::pin).collect();
    // Poll all concurrently.
    let joined = async {
        let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
        let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut done = true;
            for (i, slot) in pending.iter_mut().enumerate() {
                if let Some(f) = slot {
                    match f.as_mut().poll(cx) {
                        std::task::Poll::Ready(v) => {
                            results[i] = Some(v);
                            *slot = None;
                        }
                        std::task::Poll::Pending => done = false,
                    }
                }
            }
            if done {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        results
    };
    for r in joined.await {
        out.push(r.expect("completed"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_key_moves_only_the_keys_of_the_node_that_came_or_went() {
    init_logs();
    let c = unique_cluster("rpc-keys");
    let (gw, mut nodes) = cluster_of(&c, &["k-a", "k-b", "k-c", "k-d"]).await;
    let owners = |gw: &Node| -> Vec<String> {
        (0..2000u32)
            .map(|k| {
                gw.by_key("adder", k)
                    .owner::<AdderService>()
                    .unwrap()
                    .name()
                    .to_owned()
            })
            .collect()
    };
    let before = owners(&gw);
    // Join: only keys that now belong to the new node moved, about 1/5 of them.
    let joiner = node_with_stats(&c, "k-e", &["adder"], Some(&gw)).await;
    wait_until(Duration::from_secs(5), "gateway sees 5 adders", || {
        gw.nodes_with_role("adder").len() == 5
    })
    .await;
    let after = owners(&gw);
    let moved: Vec<usize> = (0..before.len())
        .filter(|&i| before[i] != after[i])
        .collect();
    assert!(
        moved.iter().all(|&i| after[i] == "k-e"),
        "only to the new node"
    );
    let fraction = moved.len() as f64 / before.len() as f64;
    eprintln!("join moved {:.1}% of keys", fraction * 100.0);
    assert!((0.12..0.28).contains(&fraction), "moved {fraction}");

    // Leave: only the leaving node's keys move, and nowhere else changes.
    let (gone, _, _) = nodes.remove(1);
    let gone_name = gone.id().name().to_owned();
    gone.shutdown().await;
    wait_until(Duration::from_secs(5), "gateway sees 4 adders", || {
        gw.nodes_with_role("adder").len() == 4
    })
    .await;
    let later = owners(&gw);
    for i in 0..after.len() {
        if after[i] != gone_name {
            assert_eq!(after[i], later[i], "key {i} moved though its node stayed");
        } else {
            assert_ne!(later[i], gone_name);
        }
    }
    // Calls follow the owners.
    for k in 0..50u32 {
        let who = whoami(&gw.by_key("adder", k)).await.unwrap();
        assert_eq!(who, later[k as usize]);
    }
    for n in nodes {
        n.0.shutdown().await;
    }
    joiner.0.shutdown().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_is_bounded_by_a_stuck_node_and_only_serving_nodes_are_picked() {
    init_logs();
    let c = unique_cluster("rpc-all");
    let (gw, nodes) = cluster_of(&c, &["all-a", "all-b", "all-c"]).await;
    // One node is stuck: `all` still answers at its deadline, with that node's entry a
    // Timeout and the others' answers intact.
    let started = std::time::Instant::now();
    let results = sleep_on(
        &gw.all("adder").timeout(Duration::from_millis(300)),
        "all-b",
        10_000,
    )
    .await
    .unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1_000), "{took:?}");
    assert_eq!(results.len(), 3);
    for (node, r) in &results {
        if node.name() == "all-b" {
            assert!(matches!(r, Err(RpcError::Timeout { .. })), "{r:?}");
        } else {
            assert_eq!(r.as_ref().unwrap(), node.name());
        }
    }

    // A node with the role that does not serve the service is never picked.
    let bystander = easy_rpc::cluster_helper::Node::builder()
        .cluster(&c)
        .name("bystander")
        .listen("127.0.0.1:0")
        .secret(TEST_SECRET)
        .gossip_interval(Duration::from_millis(100))
        .roles(["adder"])
        .seeds([gw.gossip_addr().to_string()])
        .start()
        .await
        .unwrap();
    wait_until(Duration::from_secs(5), "gateway sees the bystander", || {
        gw.nodes_with_role("adder").len() == 4
    })
    .await;
    for _ in 0..100 {
        assert_ne!(whoami(&gw.any("adder")).await.unwrap(), "bystander");
    }
    assert_eq!(whoami(&gw.all("adder")).await.unwrap().len(), 3);

    // The node-wide default deadline (ClientOptions) applies when nothing else sets one.
    let mut options = easy_rpc::ClientOptions::default();
    options.timeout = Duration::from_millis(250);
    let impatient = Node::builder()
        .cluster(&c)
        .name("impatient")
        .listen("127.0.0.1:0")
        .secret(TEST_SECRET)
        .gossip_interval(Duration::from_millis(100))
        .default_node(false)
        .client_options(options)
        .seeds([gw.gossip_addr().to_string()])
        .start()
        .await
        .unwrap();
    wait_until(Duration::from_secs(5), "impatient sees the adders", || {
        impatient.nodes_with_role("adder").len() == 4
    })
    .await;
    let started = std::time::Instant::now();
    let e = sleep(&impatient.any("adder"), 5_000, false)
        .await
        .unwrap_err();
    assert!(matches!(e, RpcError::Timeout { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_millis(1_000));
    bystander.shutdown().await;
    impatient.shutdown().await;
    for n in nodes {
        n.0.shutdown().await;
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_close_when_a_node_leaves_the_registry() {
    init_logs();
    let c = unique_cluster("rpc-pool");
    let (gw, nodes) = cluster_of(&c, &["p-a"]).await;
    let (a, _, _) = &nodes[0];
    for _ in 0..10 {
        add(&gw.any("adder"), 1, 1).await.unwrap();
    }
    assert_eq!(a.open_connections(), 1, "one pooled connection, reused");
    // The node drops out of the cluster (its gossip stops: it looks dead to everyone) while
    // its RPC server keeps running: the caller must close its pooled connection by itself.
    a.kill_membership();
    wait_until(Duration::from_secs(10), "gateway dropped a", || {
        gw.nodes_with_role("adder").is_empty()
    })
    .await;
    wait_until(
        Duration::from_secs(5),
        "the pooled connection was closed",
        || a.open_connections() == 0,
    )
    .await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_keep_their_cause_and_say_whether_the_call_ran() {
    init_logs();
    let c = unique_cluster("rpc-errors");
    let (gw, nodes) = cluster_of(&c, &["e-a"]).await;

    // A handler that panics: the node answers (it keeps serving), the call may have run.
    let e = boom(&gw.any("adder")).await.unwrap_err();
    assert!(matches!(e, RpcError::Server { .. }), "{e}");
    assert!(!e.never_reached_server());
    assert!(e.to_string().contains("boom"), "{e}");
    assert_eq!(add(&gw.any("adder"), 1, 1).await.unwrap(), 2);

    // The only node of a role refuses connections: Unreachable, never sent, with the I/O
    // error as its source.
    let closed = easy_rpc::cluster_helper::Node::builder()
        .cluster(&c)
        .name("e-closed")
        .listen("127.0.0.1:0")
        .secret(TEST_SECRET)
        .gossip_interval(Duration::from_millis(100))
        .roles(["lonely"])
        .services(["Adder"])
        .rpc_listen(easy_rpc::cluster_helper::RpcListen::SamePort)
        .seeds([gw.gossip_addr().to_string()])
        .start()
        .await
        .unwrap();
    drop(closed.take_rpc_listener());
    wait_until(
        Duration::from_secs(5),
        "gateway sees the closed node",
        || gw.nodes_with_role("lonely").len() == 1,
    )
    .await;
    let e = add(&gw.any("lonely"), 1, 1).await.unwrap_err();
    assert!(matches!(e, RpcError::Unreachable { .. }), "{e}");
    assert!(e.never_reached_server());
    assert_eq!(e.node(), Some(closed.id()));
    let io = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .expect("the connect error is the source");
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    // RpcError is Clone (its causes are shared).
    let copy = e.clone();
    assert_eq!(copy.to_string(), e.to_string());

    closed.shutdown().await;
    gw.shutdown().await;
    nodes[0].0.shutdown().await;
}

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
use serde::{Deserialize, Serialize};

struct AdderService;

#[derive(Serialize, Deserialize)]
enum AdderRequest {
    Add { a: i64, b: i64 },
    Whoami {},
    Fail { msg: String },
}

impl tarpc::RequestName for AdderRequest {
    fn name(&self) -> &str {
        match self {
            AdderRequest::Add { .. } => "add",
            AdderRequest::Whoami {} => "whoami",
            AdderRequest::Fail { .. } => "fail",
        }
    }
}

#[derive(Serialize, Deserialize)]
enum AdderResponse {
    Add(i64),
    Whoami(String),
    Fail(Result<(), String>),
}

static ADD: MethodInfo = MethodInfo::new("add").idempotent();
static WHOAMI: MethodInfo = MethodInfo::new("whoami");
static FAIL: MethodInfo = MethodInfo::new("fail");

impl ServiceDef for AdderService {
    const NAME: &'static str = "Adder";
    type Req = AdderRequest;
    type Resp = AdderResponse;
    fn method(req: &AdderRequest) -> &'static MethodInfo {
        match req {
            AdderRequest::Add { .. } => &ADD,
            AdderRequest::Whoami {} => &WHOAMI,
            AdderRequest::Fail { .. } => &FAIL,
        }
    }
}

#[derive(Clone)]
struct AdderImpl {
    name: String,
    calls: Arc<AtomicUsize>,
}

impl Handler<AdderService> for AdderImpl {
    fn handle(&self, req: AdderRequest) -> impl Future<Output = AdderResponse> + Send {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let name = self.name.clone();
        async move {
            match req {
                AdderRequest::Add { a, b } => AdderResponse::Add(a + b),
                AdderRequest::Whoami {} => AdderResponse::Whoami(name),
                AdderRequest::Fail { msg } => AdderResponse::Fail(Err(msg)),
            }
        }
    }
}

fn add<C: Target>(c: &C, a: i64, b: i64) -> C::Call<i64, Never> {
    c.call::<AdderService, _, _>(&ADD, AdderRequest::Add { a, b }, |r| match r {
        AdderResponse::Add(v) => Some(Ok(v)),
        _ => None,
    })
}

fn whoami<C: Target>(c: &C) -> C::Call<String, Never> {
    c.call::<AdderService, _, _>(&WHOAMI, AdderRequest::Whoami {}, |r| match r {
        AdderResponse::Whoami(v) => Some(Ok(v)),
        _ => None,
    })
}

fn fail<C: Target>(c: &C, msg: &str) -> C::Call<(), String> {
    c.call::<AdderService, _, _>(
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
    let calls = Arc::new(AtomicUsize::new(0));
    let served = Served::new::<AdderService, _>(AdderImpl {
        name: name.to_owned(),
        calls: calls.clone(),
    });
    let mut b = Node::builder()
        .cluster(cluster)
        .name(name)
        .listen("127.0.0.1:0")
        .secret("rpc-secret")
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
    (b.start().await.unwrap(), calls)
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
    assert!(whoami(&gw.all("nobody")).await.is_empty());

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
    let wrong_secret = outsider(&c, "not-the-secret").await.unwrap();
    let wrong_cluster = outsider(&format!("{c}-x"), "rpc-secret").await.unwrap();
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
    let _ = RejectReason::Leaving;
    for n in [server, client, wrong_secret, wrong_cluster] {
        n.shutdown().await;
    }
}

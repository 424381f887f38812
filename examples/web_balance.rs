//! HTTP balanced over the nodes of a role with tower's own p2c balancer, fed by the role
//! registry (`cluster_helper::RoleDiscover`): no easy-rpc, just hyper and tower, so the same
//! works for any tower service (tonic, axum clients, ...).
//!
//! A web node is a cluster-helper node with role `web` that serves HTTP on the TCP listener
//! cluster-helper binds for it on its gossip port number (`RpcListen::SamePort`): its HTTP
//! address is what it advertises as its member's `rpc_addr`. It also gossips the service
//! `http`, which the balancer selects on. On SIGTERM it announces `leaving` (callers stop
//! picking it at once), keeps serving during its leave grace, then finishes the requests in
//! flight and exits.
//!
//! ```text
//! export CLUSTER_SECRET=$(cargo run -q -p easy-rpc-cli -- keygen)
//! # Three web nodes and a client, each its own process:
//! CLUSTER_LISTEN=127.0.0.1:7946 cargo run --example web_balance -- web
//! CLUSTER_LISTEN=127.0.0.1:7947 CLUSTER_SEEDS=127.0.0.1:7946 cargo run --example web_balance -- web
//! CLUSTER_LISTEN=127.0.0.1:7948 CLUSTER_SEEDS=127.0.0.1:7946 cargo run --example web_balance -- web
//! CLUSTER_SEEDS=127.0.0.1:7946 cargo run --example web_balance -- client 300
//! # Or all of it in one process (what CI runs):
//! cargo run --example web_balance
//! ```

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use cluster_helper::{Member, Node, NodeBuilder, RoleDiscover, RpcListen, Secret, shutdown_signal};
use easy_rpc_examples::init_logs;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use tower::balance::p2c::Balance;
use tower::load::{CompleteOnResponse, PendingRequests};
use tower::{BoxError, Service, ServiceExt};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() {
    init_logs();
    let mut args = std::env::args().skip(1);
    let result = match args.next().as_deref() {
        Some("web") => web_from_env().await,
        Some("client") => {
            let requests = args.next().and_then(|n| n.parse().ok()).unwrap_or(30);
            client_from_env(requests).await
        }
        None => demo().await,
        Some(other) => Err(format!("unknown mode {other:?}: web, client or nothing").into()),
    };
    if let Err(e) = result {
        eprintln!("web_balance: {e}");
        std::process::exit(2);
    }
}

/// A web node's settings: role `web`, service `http`, a TCP listener on the gossip port number.
fn web_builder(builder: NodeBuilder) -> NodeBuilder {
    builder
        .roles(["web"])
        .services(["http"])
        .rpc_listen(RpcListen::SamePort)
}

/// Serves HTTP on `node`'s TCP listener (each answer names the node) until `stop`; then leaves
/// the cluster while still serving, stops accepting and finishes the requests in flight.
async fn serve_http(node: Node, stop: impl Future<Output = ()>) -> Result<(), Error> {
    let listener = node
        .take_rpc_listener()
        .ok_or("the node has no TCP listener")?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let graceful = GracefulShutdown::new();
    let id = node.id().to_string();
    let serve = |stream: tokio::net::TcpStream| {
        let id = id.clone();
        let answer = hyper::service::service_fn(move |_: Request<Incoming>| {
            let body = Full::new(Bytes::from(id.clone()));
            async move { Ok::<_, Infallible>(Response::new(body)) }
        });
        let conn =
            graceful.watch(http1::Builder::new().serve_connection(TokioIo::new(stream), answer));
        tokio::spawn(conn);
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => if let Ok((stream, _)) = accepted { serve(stream) },
            () = &mut stop => break,
        }
    }
    // Callers drop the node as soon as it says `leaving`; serve what still comes meanwhile.
    let leave = node.shutdown();
    tokio::pin!(leave);
    loop {
        tokio::select! {
            accepted = listener.accept() => if let Ok((stream, _)) = accepted { serve(stream) },
            () = &mut leave => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    Ok(())
}

/// One node's service: a hyper client that sends each request to the node's HTTP address.
fn http_to(
    client: Client<HttpConnector, Empty<Bytes>>,
    addr: SocketAddr,
) -> impl Service<
    Request<Empty<Bytes>>,
    Response = String,
    Error = BoxError,
    Future = impl Future<Output = Result<String, BoxError>> + Send,
> {
    tower::service_fn(move |mut req: Request<Empty<Bytes>>| {
        let client = client.clone();
        async move {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            *req.uri_mut() = format!("http://{addr}{path}").parse()?;
            let body = client.request(req).await?.into_body().collect().await?;
            Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
        }
    })
}

/// tower's p2c balancer over the nodes of role `web` that serve `http`, as `node`'s registry
/// sees them: each node's service is a hyper client of its address, loaded by its requests in
/// flight.
fn web_balancer(
    node: &Node,
) -> Result<
    impl Service<Request<Empty<Bytes>>, Response = String, Error = BoxError>,
    cluster_helper::Error,
> {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let to_node = move |m: &Member| {
        // A web node serves HTTP where it advertises its TCP listener; a node without one
        // gets an address that refuses connections, and its requests fail.
        let addr = m.rpc_addr.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        PendingRequests::new(http_to(client.clone(), addr), CompleteOnResponse::default())
    };
    let web = RoleDiscover::new(node.registry(), "web", to_node)?.serving("http")?;
    Ok(Balance::new(web))
}

/// Sends `n` requests through `balance`; returns how many each node answered.
async fn send<S>(balance: &mut S, n: usize) -> Result<BTreeMap<String, usize>, BoxError>
where
    S: Service<Request<Empty<Bytes>>, Response = String, Error = BoxError>,
{
    let mut answered = BTreeMap::new();
    for _ in 0..n {
        let req = Request::get("/").body(Empty::new())?;
        let node = balance.ready().await?.call(req).await?;
        *answered.entry(node).or_default() += 1;
    }
    Ok(answered)
}

async fn web_from_env() -> Result<(), Error> {
    let node = web_builder(Node::builder().from_env()?).start().await?;
    println!(
        "web node {} serving HTTP at {}, gossip {}",
        node.id(),
        node.rpc_addr().ok_or("no HTTP address")?,
        node.gossip_addr()
    );
    serve_http(node, async {
        let _ = shutdown_signal().await;
    })
    .await?;
    println!("left the cluster");
    Ok(())
}

async fn client_from_env(requests: usize) -> Result<(), Error> {
    let node = Node::builder().from_env()?.start().await?;
    node.ready().await;
    let mut balance = web_balancer(&node)?;
    let answered = tokio::time::timeout(Duration::from_secs(30), send(&mut balance, requests))
        .await
        .map_err(|_| "no web node answered within 30 s")??;
    for (node, n) in answered {
        println!("{node}: {n} requests");
    }
    node.shutdown().await;
    Ok(())
}

/// Three web nodes and a client in one process.
async fn demo() -> Result<(), Error> {
    let secret = Secret::generate();
    let builder = |name: &str| {
        Node::builder()
            .cluster("web-balance-demo")
            .name(name)
            .listen("127.0.0.1:0")
            .secret_key(secret.clone())
    };
    let client = builder("client").start().await?;
    let seed = client.gossip_addr().to_string();
    let mut webs = Vec::new();
    for name in ["web-1", "web-2", "web-3"] {
        let node = web_builder(builder(name).seeds([seed.clone()]))
            .start()
            .await?;
        let id = node.id().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_http(node, async {
            let _ = stopped.await;
        }));
        webs.push((id, stop, task));
    }
    // Wait until the client sees the three of them.
    let mut watch = client.registry().watch();
    tokio::time::timeout(Duration::from_secs(10), async {
        while client.nodes_with_role("web").len() < 3 {
            let _ = watch.changed().await;
        }
    })
    .await
    .map_err(|_| "the web nodes did not join within 10 s")?;

    let mut balance = web_balancer(&client)?;
    let answered = send(&mut balance, 60).await?;
    println!("60 requests over 3 web nodes: {answered:?}");
    if answered.len() != 3 {
        return Err("not every web node answered".into());
    }

    // web-1 leaves: the balancer drops it at once, and no request fails.
    let (gone, stop, task) = webs.remove(0);
    let _ = stop.send(());
    // Waits on the registry's watch, which is what the balancer's discovery reads: the
    // node's own lookups (`client.nodes_with_role`) may show the change a moment before the
    // watch is sent, and the next request could still be balanced over the old set.
    while watch
        .borrow_and_update()
        .nodes_with_role("web")
        .iter()
        .any(|m| m.id == gone)
    {
        let _ = watch.changed().await;
    }
    let answered = send(&mut balance, 30).await?;
    println!("{gone} left; 30 more requests: {answered:?}");
    if answered.contains_key(&gone.to_string()) {
        return Err("a request went to the node that left".into());
    }
    task.await??;

    for (_, stop, task) in webs {
        let _ = stop.send(());
        task.await??;
    }
    client.shutdown().await;
    println!("web_balance ok");
    Ok(())
}

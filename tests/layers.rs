//! tower middleware on calls and on handlers, with real nodes on loopback: tower's own
//! `ConcurrencyLimitLayer` (node-wide, seen by a server that counts its concurrent handlers),
//! `RateLimitLayer` (behind a `BufferLayer`), `LoadShedLayer` over a concurrency limit on
//! both sides, a custom client layer that records every attempt (through a reroute after a
//! node is killed), and a custom server layer that refuses calls lacking time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use easy_rpc::{
    Call, CallResponse, ClientOptions, Node, NodeId, NotRunReason, RpcError, ServerCall,
    ServerResponse,
};
use easy_rpc_tests::cluster::{init_logs, rpc_builder, unique_cluster, wait_until};
use futures::future::{BoxFuture, join_all};
use tower::limit::ConcurrencyLimitLayer;
use tower::{BoxError, Service, ServiceBuilder};

/// A service whose handlers count how many of them run at once.
#[easy_rpc::service]
pub trait Gauge {
    /// The serving node's name.
    #[easy_rpc(idempotent)]
    async fn whoami() -> String;
    /// Holds `ms` milliseconds, counted as running meanwhile.
    async fn hold(ms: u64) -> u64;
}

/// Another service, on the same nodes.
#[easy_rpc::service]
pub trait Echo {
    /// Answers `n`.
    async fn echo(n: u64) -> u64;
}

/// What a server's handlers saw.
#[derive(Default)]
struct Seen {
    running: AtomicUsize,
    max_running: AtomicUsize,
    ran: AtomicUsize,
    started_at: Mutex<Vec<Instant>>,
}

struct GaugeImpl {
    name: String,
    seen: Arc<Seen>,
}

impl Gauge for GaugeImpl {
    async fn whoami(&self) -> String {
        self.seen.ran.fetch_add(1, Ordering::SeqCst);
        self.name.clone()
    }

    async fn hold(&self, ms: u64) -> u64 {
        let seen = &self.seen;
        seen.ran.fetch_add(1, Ordering::SeqCst);
        seen.started_at.lock().unwrap().push(Instant::now());
        let now = seen.running.fetch_add(1, Ordering::SeqCst) + 1;
        seen.max_running.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        seen.running.fetch_sub(1, Ordering::SeqCst);
        ms
    }
}

struct EchoImpl;

impl Echo for EchoImpl {
    async fn echo(&self, n: u64) -> u64 {
        n
    }
}

/// A node of role `gauge` serving `Gauge` and `Echo`, seeded with `seed`.
fn server(cluster: &str, name: &str, seed: Option<&Node>) -> (easy_rpc::NodeBuilder, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let mut b = rpc_builder(cluster, name)
        .roles(["gauge"])
        .serve(
            GaugeImpl {
                name: name.into(),
                seen: seen.clone(),
            }
            .serve(),
        )
        .serve(EchoImpl.serve());
    if let Some(seed) = seed {
        b = b.seeds([seed.gossip_addr().to_string()]);
    }
    (b, seen)
}

/// Waits until `node` sees `n` nodes of role `gauge`.
async fn sees(node: &Node, n: usize) {
    wait_until(
        Duration::from_secs(10),
        "the caller sees the servers",
        || node.nodes_with_role("gauge").len() == n,
    )
    .await;
}

/// Makes `callers` concurrent `hold(ms)` calls through `node`.
async fn hold_from(node: &Node, callers: usize, ms: u64) -> Vec<Result<u64, RpcError>> {
    join_all((0..callers).map(|_| {
        let any = node.any("gauge");
        async move { any.hold(ms).await }
    }))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_concurrency_limit_bounds_the_whole_nodes_calls_in_flight() {
    init_logs();
    let c = unique_cluster("layers-limit");
    let (b, seen) = server(&c, "g-1", None);
    let srv = b.start().await.unwrap();
    const N: usize = 4;
    let limited = rpc_builder(&c, "limited")
        .seeds([srv.gossip_addr().to_string()])
        .client_layer(ConcurrencyLimitLayer::new(N))
        .start()
        .await
        .unwrap();
    let free = rpc_builder(&c, "free")
        .seeds([srv.gossip_addr().to_string()])
        .start()
        .await
        .unwrap();
    sees(&limited, 1).await;
    sees(&free, 1).await;

    // 8 x N callers, each with its own target: the limit is the node's, not the call's.
    for r in hold_from(&limited, 8 * N, 40).await {
        assert_eq!(r.unwrap(), 40);
    }
    assert_eq!(seen.ran.load(Ordering::SeqCst), 8 * N);
    assert_eq!(
        seen.max_running.load(Ordering::SeqCst),
        N,
        "at most N at once, and N reached"
    );

    // The same callers without the layer run more at once (the measure can tell).
    seen.max_running.store(0, Ordering::SeqCst);
    for r in hold_from(&free, 8 * N, 200).await {
        assert_eq!(r.unwrap(), 200);
    }
    assert!(
        seen.max_running.load(Ordering::SeqCst) > N,
        "{}",
        seen.max_running.load(Ordering::SeqCst)
    );
    limited.shutdown().await;
    free.shutdown().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_rate_limit_behind_a_buffer_spreads_the_calls_over_windows() {
    init_logs();
    let c = unique_cluster("layers-rate");
    let (b, seen) = server(&c, "g-1", None);
    let srv = b.start().await.unwrap();
    let window = Duration::from_millis(400);
    let caller = rpc_builder(&c, "caller")
        .seeds([srv.gossip_addr().to_string()])
        // RateLimit is not Clone: as in any shared tower stack, it sits behind a Buffer.
        .client_layer(ServiceBuilder::new().buffer(64).rate_limit(5, window))
        .start()
        .await
        .unwrap();
    sees(&caller, 1).await;

    let started = Instant::now();
    for r in hold_from(&caller, 15, 1).await {
        assert_eq!(r.unwrap(), 1);
    }
    let took = started.elapsed();
    // 5 per window: the 15 take three windows, the last starting two windows in.
    assert!(took >= window * 2 - Duration::from_millis(50), "{took:?}");
    let mut at = seen.started_at.lock().unwrap().clone();
    at.sort();
    assert_eq!(at.len(), 15);
    let first = at[0];
    for (i, t) in at.iter().enumerate() {
        // The calls of window k start no earlier than k windows after the first.
        let k = u32::try_from(i / 5).unwrap();
        assert!(
            t.duration_since(first) >= (window * k).saturating_sub(Duration::from_millis(50)),
            "call {i} started {:?} after the first",
            t.duration_since(first)
        );
    }
    caller.shutdown().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_shed_over_a_concurrency_limit_fails_the_excess_clearly_on_either_side() {
    init_logs();
    let c = unique_cluster("layers-shed");
    // The server sheds what is over 2 handlers at once.
    let seen = Arc::new(Seen::default());
    let srv = rpc_builder(&c, "g-1")
        .roles(["gauge"])
        .serve(
            GaugeImpl {
                name: "g-1".into(),
                seen: seen.clone(),
            }
            .serve(),
        )
        .serve(EchoImpl.serve())
        .server_layer(ServiceBuilder::new().load_shed().concurrency_limit(2))
        .start()
        .await
        .unwrap();
    // This caller sheds what is over 3 calls in flight.
    let shedding = rpc_builder(&c, "shedding")
        .seeds([srv.gossip_addr().to_string()])
        .client_layer(ServiceBuilder::new().load_shed().concurrency_limit(3))
        .start()
        .await
        .unwrap();
    let plain = rpc_builder(&c, "plain")
        .seeds([srv.gossip_addr().to_string()])
        .start()
        .await
        .unwrap();
    sees(&shedding, 1).await;
    sees(&plain, 1).await;
    // Connections open, so that the calls below overlap.
    shedding.any("gauge").echo(1).await.unwrap();
    plain.any("gauge").echo(1).await.unwrap();

    // Client side: 3 go through (and the server's 2 + 1 shed there), 7 are refused before
    // being sent, with the layer's own error.
    let results = hold_from(&shedding, 10, 300).await;
    let mut ok = 0;
    let mut shed_here = 0;
    let mut shed_there = 0;
    for r in &results {
        match r {
            Ok(300) => ok += 1,
            Err(
                e @ RpcError::Layer {
                    sent: false,
                    source,
                    ..
                },
            ) if source.is::<tower::load_shed::error::Overloaded>() => {
                assert!(e.never_reached_server());
                assert!(
                    e.to_string()
                        .contains("failed in a client layer (not sent)"),
                    "{e}"
                );
                shed_here += 1;
            }
            Err(RpcError::NotRun {
                reason: NotRunReason::Refused,
                ..
            }) => shed_there += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((ok, shed_here, shed_there), (2, 7, 1), "{results:?}");
    assert_eq!(seen.ran.load(Ordering::SeqCst), 2);

    // Server side: 2 run, 8 are answered "not run" (refused), the connection stays up.
    let results = hold_from(&plain, 10, 300).await;
    let ok = results.iter().filter(|r| matches!(r, Ok(300))).count();
    let refused: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .inspect(|e| {
            assert!(
                matches!(
                    e,
                    RpcError::NotRun {
                        reason: NotRunReason::Refused,
                        ..
                    }
                ),
                "{e:?}"
            );
            assert!(e.to_string().contains("was not run by g-1#"), "{e}");
        })
        .collect();
    assert_eq!((ok, refused.len()), (2, 8), "{results:?}");
    assert_eq!(seen.ran.load(Ordering::SeqCst), 4);
    assert_eq!(seen.max_running.load(Ordering::SeqCst), 2);
    // Once the running ones finish, the same node takes calls again.
    assert_eq!(plain.any("gauge").hold(1).await.unwrap(), 1);
    shedding.shutdown().await;
    plain.shutdown().await;
    srv.shutdown().await;
}

/// One attempt as a client layer saw it.
#[derive(Clone, Debug)]
struct Seen1 {
    service: &'static str,
    method: &'static str,
    idempotent: bool,
    node: NodeId,
    deadline: Instant,
    attempt: u32,
}

/// A client layer that records every attempt it sees, then passes it on.
#[derive(Clone)]
struct Record<S> {
    inner: S,
    log: Arc<Mutex<Vec<Seen1>>>,
}

impl<S> Service<Call> for Record<S>
where
    S: Service<Call, Response = CallResponse, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = CallResponse;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<CallResponse, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: Call) -> Self::Future {
        self.log.lock().unwrap().push(Seen1 {
            service: call.service(),
            method: call.method().name,
            idempotent: call.method().idempotent,
            node: call.node().clone(),
            deadline: call.deadline(),
            attempt: call.attempt(),
        });
        Box::pin(self.inner.call(call))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_client_layer_sees_every_attempt_of_every_target() {
    init_logs();
    let c = unique_cluster("layers-record");
    let (b, _) = server(&c, "r-a", None);
    let a = b.start().await.unwrap();
    let (b, _) = server(&c, "r-b", Some(&a));
    let b = b.start().await.unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let recorder = log.clone();
    let gw = rpc_builder(&c, "gw")
        .seeds([a.gossip_addr().to_string()])
        .client_options(ClientOptions::default().timeout(Duration::from_secs(3)))
        .client_layer(tower::layer::layer_fn(move |inner| Record {
            inner,
            log: recorder.clone(),
        }))
        .start()
        .await
        .unwrap();
    sees(&gw, 2).await;
    let take = || std::mem::take(&mut *log.lock().unwrap());
    let id_of = |name: &str| {
        if name == "r-a" {
            a.id().clone()
        } else {
            b.id().clone()
        }
    };

    // any: one attempt, to the node that answered, with the call's deadline.
    let before = Instant::now();
    let who = gw.any("gauge").whoami().await.unwrap();
    let after = Instant::now();
    let seen = take();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let s = &seen[0];
    assert_eq!(
        (s.service, s.method, s.idempotent, s.attempt),
        ("Gauge", "whoami", true, 1)
    );
    assert_eq!(s.node, id_of(&who));
    let timeout = Duration::from_secs(3);
    assert!(
        s.deadline >= before + timeout && s.deadline <= after + timeout,
        "{s:?}"
    );

    // A per-call timeout and another service and method.
    let before = Instant::now();
    assert_eq!(
        gw.any("gauge")
            .timeout(Duration::from_millis(700))
            .echo(5)
            .await
            .unwrap(),
        5
    );
    let after = Instant::now();
    let seen = take();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].service, seen[0].method, seen[0].idempotent),
        ("Echo", "echo", false)
    );
    let short = Duration::from_millis(700);
    assert!(
        seen[0].deadline >= before + short && seen[0].deadline <= after + short,
        "{seen:?}"
    );

    // all: one attempt per node.
    let all = gw.all("gauge").whoami().await.unwrap();
    assert_eq!(all.len(), 2);
    let mut nodes: Vec<NodeId> = take()
        .into_iter()
        .inspect(|s| assert_eq!((s.method, s.attempt), ("whoami", 1)))
        .map(|s| s.node)
        .collect();
    nodes.sort();
    let mut both = vec![a.id().clone(), b.id().clone()];
    both.sort();
    assert_eq!(nodes, both);

    // to, to_any_of, by_key: the node named or owning the key.
    assert_eq!(gw.to("r-b").whoami().await.unwrap(), "r-b");
    assert_eq!(take()[0].node, *b.id());
    let who = gw.to_any_of(["r-a", "r-b"]).whoami().await.unwrap();
    assert_eq!(take()[0].node, id_of(&who));
    // A key that r-a owns (for the reroute below).
    let key = (0..1000)
        .map(|i| format!("k{i}"))
        .find(|k| gw.by_key("gauge", k.as_str()).owner::<GaugeService>() == Some(a.id().clone()))
        .expect("r-a owns some key");
    assert_eq!(
        gw.by_key("gauge", key.as_str()).whoami().await.unwrap(),
        "r-a"
    );
    let seen = take();
    assert_eq!((seen.len(), &seen[0].node, seen[0].attempt), (1, a.id(), 1));

    // r-a crashes: the next call for its key is attempted there first, then rerouted (or,
    // idempotent, retried) to r-b: attempts 1 and 2, one deadline.
    a.kill();
    assert_eq!(
        gw.by_key("gauge", key.as_str()).whoami().await.unwrap(),
        "r-b"
    );
    let seen = take();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!((&seen[0].node, seen[0].attempt), (a.id(), 1));
    assert_eq!((&seen[1].node, seen[1].attempt), (b.id(), 2));
    assert_eq!(seen[0].deadline, seen[1].deadline);
    gw.shutdown().await;
    b.shutdown().await;
}

/// A server layer that refuses `Gauge` calls whose caller leaves them less than `need`.
#[derive(Clone)]
struct EnoughTime<S> {
    inner: S,
    need: Duration,
}

impl<S> Service<ServerCall> for EnoughTime<S>
where
    S: Service<ServerCall, Response = ServerResponse, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = ServerResponse;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<ServerResponse, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: ServerCall) -> Self::Future {
        assert!(call.peer().ip().is_loopback());
        if call.service() == "Gauge" && call.deadline() < Instant::now() + self.need {
            let refusal = format!(
                "{}.{} needs {:?}",
                call.service(),
                call.method().name,
                self.need
            );
            return Box::pin(async move { Err(refusal.into()) });
        }
        Box::pin(self.inner.call(call))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_server_layer_refuses_what_lacks_time_and_serves_the_rest() {
    init_logs();
    let c = unique_cluster("layers-refuse");
    let seen = Arc::new(Seen::default());
    let need = Duration::from_secs(2);
    let srv = rpc_builder(&c, "g-1")
        .roles(["gauge"])
        .serve(
            GaugeImpl {
                name: "g-1".into(),
                seen: seen.clone(),
            }
            .serve(),
        )
        .serve(EchoImpl.serve())
        .server_layer(tower::layer::layer_fn(move |inner| EnoughTime {
            inner,
            need,
        }))
        // Outermost first: the timeout below runs inside the refusal above.
        .server_layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(
            300,
        )))
        .start()
        .await
        .unwrap();
    let caller = rpc_builder(&c, "caller")
        .seeds([srv.gossip_addr().to_string()])
        .start()
        .await
        .unwrap();
    sees(&caller, 1).await;

    // Enough time (the default 10 s): it runs.
    assert_eq!(caller.any("gauge").whoami().await.unwrap(), "g-1");
    assert_eq!(seen.ran.load(Ordering::SeqCst), 1);
    // Too little: refused before the handler started, answered "not run".
    let short = caller.any("gauge").timeout(Duration::from_millis(500));
    for _ in 0..3 {
        let e = short.whoami().await.unwrap_err();
        assert!(
            matches!(
                &e,
                RpcError::NotRun {
                    reason: NotRunReason::Refused,
                    method: "whoami",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.never_reached_server());
        assert_eq!(
            e.to_string(),
            format!(
                "whoami was not run by {}: a layer around its handlers refused it",
                srv.id()
            )
        );
    }
    assert_eq!(
        seen.ran.load(Ordering::SeqCst),
        1,
        "the handler never started"
    );
    // Another service with as little time is served; so is the caller with enough, on the
    // same connection.
    assert_eq!(
        caller
            .any("gauge")
            .timeout(Duration::from_millis(500))
            .echo(9)
            .await
            .unwrap(),
        9
    );
    assert_eq!(caller.any("gauge").whoami().await.unwrap(), "g-1");
    // A layer's error after the handler started is the method's failure, not "not run".
    let e = caller.any("gauge").hold(2_000).await.unwrap_err();
    assert!(
        matches!(&e, RpcError::Server { reason, .. } if reason.contains("failed in a server layer")),
        "{e:?}"
    );
    assert!(!e.never_reached_server());
    assert_eq!(caller.any("gauge").hold(1).await.unwrap(), 1);
    caller.shutdown().await;
    srv.shutdown().await;
}

//! tower's own p2c `Balance`, fed by the registry (`cluster_helper::RoleDiscover`), balancing a
//! hyper HTTP client over the nodes of role `web`, each a separate process (`web_node`), under
//! load: nodes join (inserted within the registry's join time), leave with SIGTERM (removed
//! without a failed request, through a rolling restart of all three) and crash with SIGKILL
//! (removed by failure detection, requests succeed afterwards).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_helper::{Member, NodeId, RoleDiscover};
use easy_rpc_tests::cluster::{self, unique_cluster, wait_until};
use easy_rpc_tests::process::NodeProcess;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use tower::balance::p2c::Balance;
use tower::discover::Change;
use tower::load::{CompleteOnResponse, PendingRequests};
use tower::{BoxError, Service, ServiceExt};

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// One node's service: GET the path of the request at the node's HTTP address (its
/// `rpc_addr`), answering the body (the node's id).
fn http_to(
    client: HttpClient,
    addr: SocketAddr,
) -> impl Service<
    Request<Empty<Bytes>>,
    Response = String,
    Error = BoxError,
    Future = impl Future<Output = Result<String, BoxError>> + Send + 'static,
> + Send
+ 'static {
    tower::service_fn(move |mut req: Request<Empty<Bytes>>| {
        let client = client.clone();
        async move {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            *req.uri_mut() = format!("http://{addr}{path}").parse()?;
            let response = client.request(req).await?;
            if !response.status().is_success() {
                return Err(format!("status {}", response.status()).into());
            }
            let body = response.into_body().collect().await?.to_bytes();
            Ok(String::from_utf8_lossy(&body).into_owned())
        }
    })
}

/// One request's outcome.
#[derive(Debug)]
struct Outcome {
    started: Instant,
    /// The id of the node that answered, or the error.
    result: Result<String, String>,
}

/// What the balancer saw: each change from the registry, with its time.
type Changes = Arc<Mutex<Vec<(Instant, Result<NodeId, NodeId>)>>>;

/// Inserted (`Ok`) or removed (`Err`) at: the time of the last such change of `id`.
fn change_at(changes: &Changes, id: &NodeId, inserted: bool) -> Option<Instant> {
    changes
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(_, c)| match c {
            Ok(i) => inserted && i == id,
            Err(r) => !inserted && r == id,
        })
        .map(|(t, _)| *t)
}

fn spawn_web(cluster: &str, name: &str, seed: SocketAddr) -> NodeProcess {
    NodeProcess::spawn(
        env!("CARGO_BIN_EXE_web_node"),
        name,
        &[
            ("CLUSTER_NAME", cluster.to_owned()),
            ("CLUSTER_ROLES", "web".to_owned()),
            ("CLUSTER_SEEDS", seed.to_string()),
            ("WEB_DELAY_MS", "5".to_owned()),
            // Its callers drop it within milliseconds of its `leaving`; a longer grace than
            // the default keeps that true on a loaded test machine.
            ("CLUSTER_LEAVE_GRACE", "1s".to_owned()),
        ],
    )
}

/// `name#incarnation` as a [`NodeId`].
fn parse_id(id: &str) -> NodeId {
    let (name, incarnation) = id.rsplit_once('#').unwrap();
    NodeId::new(name, incarnation.parse().unwrap()).unwrap()
}

/// The node id a web process printed (`STARTED <id> <addr>`).
async fn id_of(web: &NodeProcess) -> NodeId {
    web.gossip_addr().await;
    let line = web.last("STARTED ").unwrap();
    parse_id(line.split_whitespace().nth(1).unwrap())
}

/// Waits until the balancer has inserted `id`, at most `bound` from now (the caller has just
/// seen the node ready).
async fn inserted_within(changes: &Changes, id: &NodeId, bound: Duration) {
    wait_until(bound, &format!("the balancer inserts {id}"), || {
        change_at(changes, id, true).is_some()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_balance_follows_web_nodes_that_join_leave_and_crash() {
    let cluster = unique_cluster("tower-web");
    // The caller: a cluster-helper node without roles, in this process.
    let client_node = cluster::builder(&cluster, "caller").start().await.unwrap();
    let seed = client_node.gossip_addr();

    // The balancer: tower's p2c over the registry's `web` nodes that serve `http`, each a
    // hyper client of the node's address with tower's PendingRequests load.
    let http: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let make = move |m: &Member| {
        let addr = m.rpc_addr.expect("web nodes advertise their HTTP address");
        PendingRequests::new(http_to(http.clone(), addr), CompleteOnResponse::default())
    };
    let changes: Changes = Arc::default();
    let log = changes.clone();
    let discover = RoleDiscover::new(client_node.registry(), "web", make)
        .unwrap()
        .serving("http")
        .unwrap()
        .inspect(move |c| {
            let c = match c {
                Ok(Change::Insert(id, _)) => Ok(id.clone()),
                Ok(Change::Remove(id)) => Err(id.clone()),
                Err(never) => match *never {},
            };
            log.lock().unwrap().push((Instant::now(), c));
        });
    let mut balance = Balance::new(discover);

    // Load from the start: at most 8 requests in flight, one every 2 ms, bounded in count and
    // time. The balancer polls its Discover when asked to be ready, so it sees every change
    // as it comes, also before the first node.
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (outcomes, stop) = (outcomes.clone(), stop.clone());
        tokio::spawn(async move {
            let in_flight = Arc::new(Semaphore::new(8));
            let until = Instant::now() + Duration::from_secs(150);
            let mut sent = 0u32;
            while !stop.load(Ordering::Relaxed) && Instant::now() < until && sent < 60_000 {
                let permit = in_flight.clone().acquire_owned().await.unwrap();
                // Not ready within a second: no node (none can be in this test); try again.
                match tokio::time::timeout(Duration::from_secs(1), balance.ready()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => panic!("the balancer failed: {e}"),
                    Err(_) => continue,
                }
                let started = Instant::now();
                let call = balance.call(Request::get("/").body(Empty::new()).unwrap());
                sent += 1;
                let outcomes = outcomes.clone();
                tokio::spawn(async move {
                    let result = match tokio::time::timeout(Duration::from_secs(5), call).await {
                        Ok(Ok(id)) => Ok(id),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("timed out".to_owned()),
                    };
                    outcomes.lock().unwrap().push(Outcome { started, result });
                    drop(permit);
                });
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            sent
        })
    };
    let answered_by = |since: Instant| -> BTreeMap<String, usize> {
        let mut by = BTreeMap::new();
        for o in outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.started >= since)
        {
            if let Ok(id) = &o.result {
                *by.entry(id.clone()).or_default() += 1;
            }
        }
        by
    };
    let failures = |from: Instant, to: Instant| -> Vec<String> {
        outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.started >= from && o.started < to)
            .filter_map(|o| o.result.clone().err())
            .collect()
    };
    let requests = |from: Instant, to: Instant| {
        outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.started >= from && o.started < to)
            .count()
    };

    // Three web nodes join; each is inserted within the registry's join time (3 s here).
    let join_time = Duration::from_secs(3);
    let mut webs = Vec::new();
    let spawned = Instant::now();
    for name in ["web-a", "web-b", "web-c"] {
        webs.push(spawn_web(&cluster, name, seed));
    }
    let mut ids = Vec::new();
    for web in &webs {
        let id = id_of(web).await;
        web.wait_for(Duration::from_secs(10), "READY ", |_| true)
            .await;
        inserted_within(&changes, &id, join_time).await;
        let took = change_at(&changes, &id, true).unwrap() - spawned;
        println!("{id}: inserted {took:?} after the process was started");
        ids.push(id);
    }

    // Every node takes requests.
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let by = answered_by(t0);
    for id in &ids {
        assert!(
            by.get(&id.to_string()).is_some_and(|n| *n > 10),
            "{id}: {by:?}"
        );
    }

    // A rolling restart under load: each node in turn leaves with SIGTERM (the balancer removes
    // it as soon as it announces `leaving`; it keeps serving what is in flight), and its next
    // incarnation starts and is inserted.
    let restart_start = Instant::now();
    for i in 0..webs.len() {
        let old = ids[i].clone();
        let name = webs[i].name.clone();
        let term = Instant::now();
        webs[i].signal("TERM");
        assert_eq!(webs[i].wait_exit(Duration::from_secs(20)).await, Some(0));
        let removed = change_at(&changes, &old, false)
            .unwrap_or_else(|| panic!("{old} left but the balancer never removed it"));
        println!("{old}: removed {:?} after SIGTERM", removed - term);
        // Removed on leave, not by failure detection.
        assert!(
            removed - term < Duration::from_secs(1),
            "{old}: {:?}",
            removed - term
        );
        let spawned = Instant::now();
        let web = spawn_web(&cluster, &name, seed);
        let id = id_of(&web).await;
        web.wait_for(Duration::from_secs(10), "READY ", |_| true)
            .await;
        inserted_within(&changes, &id, join_time).await;
        let took = change_at(&changes, &id, true).unwrap() - spawned;
        println!("{id}: inserted {took:?} after the process was started");
        webs[i] = web;
        ids[i] = id;
        // Let the new node take requests before the next one leaves.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restart_end = Instant::now();
    let failed = failures(restart_start, restart_end);
    let total = requests(restart_start, restart_end);
    println!(
        "rolling restart of 3 web nodes under load: {total} requests, {} failed",
        failed.len()
    );
    assert!(total > 500, "too little load to show anything: {total}");
    assert!(
        failed.is_empty(),
        "failed during the rolling restart: {failed:?}"
    );
    // No request went to a node after the balancer removed it.
    for o in outcomes.lock().unwrap().iter() {
        if let Ok(id) = &o.result
            && let Some(removed) = change_at(&changes, &parse_id(id), false)
        {
            assert!(
                o.started < removed,
                "{id} answered a request sent after its removal"
            );
        }
    }

    // A crash: SIGKILL. Requests to the node fail until failure detection removes it; then it
    // is gone and every request succeeds.
    let victim = ids[0].clone();
    let kill = Instant::now();
    webs[0].signal("KILL");
    wait_until(
        Duration::from_secs(15),
        "the balancer removes the crashed node",
        || change_at(&changes, &victim, false).is_some(),
    )
    .await;
    let removed = change_at(&changes, &victim, false).unwrap();
    println!(
        "{victim}: removed {:?} after SIGKILL; {} requests failed before",
        removed - kill,
        failures(kill, removed).len()
    );
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let after = removed + Duration::from_millis(100);
    let end = Instant::now();
    assert!(requests(after, end) > 100, "load stopped");
    let failed = failures(after, end);
    assert!(
        failed.is_empty(),
        "failed after the crashed node was removed: {failed:?}"
    );
    assert!(!answered_by(after).contains_key(&victim.to_string()));

    stop.store(true, Ordering::Relaxed);
    let sent = load.await.unwrap();
    println!("{sent} requests in all");
    for web in &mut webs[1..] {
        web.signal("TERM");
        assert_eq!(web.wait_exit(Duration::from_secs(20)).await, Some(0));
    }
    client_node.shutdown().await;
}

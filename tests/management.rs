//! The management HTTP endpoint (`CLUSTER_HTTP_LISTEN`), over real HTTP on loopback: `/readyz`
//! through join, serving and a SIGTERM drain of a node process; `/cluster` against each node's
//! registry; routes, methods and the bounds on what a client can hold.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use easy_rpc::Node;
use easy_rpc_tests::churn::{Work, WorkClient, WorkImpl};
use easy_rpc_tests::cluster::{rpc_builder, unique_cluster, wait_until, wait_until_async};
use easy_rpc_tests::http::{get, raw_request, request};
use easy_rpc_tests::process::NodeProcess;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RPC_NODE: &str = env!("CARGO_BIN_EXE_rpc_node");

fn loopback0() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn start(cluster: &str, name: &str, roles: &[&str], seeds: &[&Node]) -> Node {
    rpc_builder(cluster, name)
        .roles(roles.iter().copied())
        .seeds(seeds.iter().map(|n| n.gossip_addr().to_string()))
        .http_listen(loopback0())
        .serve(
            WorkImpl {
                name: name.to_owned(),
            }
            .serve(),
        )
        .start()
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// What `/cluster` says of the members, as (id -> (status, roles, services, gossip, rpc)).
type Members = BTreeMap<String, (String, Vec<String>, Vec<String>, String, Option<String>)>;

fn members_of_json(doc: &Value) -> Members {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    doc["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            let id = m["id"].as_str().unwrap().to_owned();
            assert_eq!(
                id,
                format!("{}#{}", m["name"].as_str().unwrap(), m["incarnation"]),
                "id is name#incarnation"
            );
            (
                id,
                (
                    m["status"].as_str().unwrap().to_owned(),
                    strings(&m["roles"]),
                    strings(&m["services"]),
                    m["gossip_addr"].as_str().unwrap().to_owned(),
                    m["rpc_addr"].as_str().map(str::to_owned),
                ),
            )
        })
        .collect()
}

fn members_of_registry(snapshot: &easy_rpc::cluster_helper::Snapshot) -> Members {
    snapshot
        .members()
        .map(|m| {
            (
                m.id.to_string(),
                (
                    m.status.to_string(),
                    m.roles.iter().map(|r| r.to_string()).collect(),
                    m.services.iter().map(|s| s.to_string()).collect(),
                    m.gossip_addr.to_string(),
                    m.rpc_addr.map(|a| a.to_string()),
                ),
            )
        })
        .collect()
}

fn roles_of_registry(
    snapshot: &easy_rpc::cluster_helper::Snapshot,
) -> BTreeMap<String, Vec<String>> {
    snapshot
        .roles()
        .map(|(role, nodes)| {
            let mut ids: Vec<String> = nodes.iter().map(|m| m.id.to_string()).collect();
            ids.sort();
            (role.to_string(), ids)
        })
        .collect()
}

fn roles_of_json(doc: &Value) -> BTreeMap<String, Vec<String>> {
    serde_json::from_value(doc["roles"].clone()).expect("roles: {role: [id]}")
}

/// `/cluster` of `node`, fetched while the registry held one version (so the two can be
/// compared exactly), with that snapshot.
async fn cluster_and_snapshot(
    node: &Node,
) -> (Value, std::sync::Arc<easy_rpc::cluster_helper::Snapshot>) {
    let addr = node.http_addr().expect("endpoint on");
    for _ in 0..50 {
        let before = node.registry().snapshot();
        let r = get(addr, "/cluster").await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let doc = r.json();
        if doc["version"].as_u64() == Some(before.version())
            && node.registry().version() == before.version()
        {
            return (doc, before);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the registry of {} never held still for one request",
        node.id()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_json_equals_each_registry() {
    let cluster = unique_cluster("mgmt-cluster");
    let a = start(&cluster, "mg-a", &["billing", "audit"], &[]).await;
    let b = start(&cluster, "mg-b", &["billing"], &[&a]).await;
    let c = start(&cluster, "mg-c", &["gateway"], &[&a]).await;
    let nodes = [&a, &b, &c];
    wait_until(
        Duration::from_secs(10),
        "every node sees 3 serving members",
        || {
            nodes.iter().all(|n| {
                let m = n.members();
                m.len() == 3
                    && m.iter()
                        .all(|m| m.status == easy_rpc::cluster_helper::NodeStatus::Serving)
            })
        },
    )
    .await;
    for node in nodes {
        let (doc, snapshot) = cluster_and_snapshot(node).await;
        assert_eq!(doc["cluster"], cluster.as_str());
        assert_eq!(members_of_json(&doc), members_of_registry(&snapshot));
        assert_eq!(roles_of_json(&doc), roles_of_registry(&snapshot));
        // And what the registry holds is the cluster as started.
        let json_roles = roles_of_json(&doc);
        let names = |role: &str| -> Vec<String> {
            json_roles[role]
                .iter()
                .map(|id| id.split('#').next().unwrap().to_owned())
                .collect()
        };
        assert_eq!(names("billing"), ["mg-a", "mg-b"]);
        assert_eq!(names("audit"), ["mg-a"]);
        assert_eq!(names("gateway"), ["mg-c"]);
        // This node's own view.
        let me = &doc["node"];
        assert_eq!(me["id"], node.id().to_string().as_str());
        assert_eq!(me["status"], "serving");
        assert_eq!(me["ready"], true);
        assert_eq!(me["readiness"], "ready");
        let roles: Vec<String> = node.roles().iter().map(|r| r.to_string()).collect();
        assert_eq!(me["roles"], serde_json::json!(roles));
        assert_eq!(me["services"], serde_json::json!(["Work"]));
        assert_eq!(me["gossip_addr"], node.gossip_addr().to_string().as_str());
        // When each member was last heard: never for this node itself, and within a few
        // gossip intervals for the live others (the bound is generous for a loaded machine).
        for m in doc["members"].as_array().unwrap() {
            if m["id"] == node.id().to_string().as_str() {
                assert!(m["last_heard_ms"].is_null(), "{m}");
            } else {
                let ms = m["last_heard_ms"].as_u64().unwrap_or_else(|| panic!("{m}"));
                assert!(ms < 5_000, "{m}");
            }
        }
    }

    // A role change shows up on every node's endpoint.
    b.add_role("audit").await.unwrap();
    for node in nodes {
        let addr = node.http_addr().unwrap();
        wait_until_async(Duration::from_secs(10), "audit shows mg-b", || async move {
            let doc = get(addr, "/cluster").await.json();
            doc["roles"]["audit"].as_array().is_some_and(|ids| {
                ids.iter()
                    .any(|id| id.as_str().unwrap().starts_with("mg-b#"))
            })
        })
        .await;
        let (doc, snapshot) = cluster_and_snapshot(node).await;
        assert_eq!(members_of_json(&doc), members_of_registry(&snapshot));
        assert_eq!(roles_of_json(&doc), roles_of_registry(&snapshot));
    }

    // A node that leaves is gone from the others' endpoints.
    c.shutdown().await;
    for node in [&a, &b] {
        let addr = node.http_addr().unwrap();
        wait_until_async(Duration::from_secs(10), "mg-c gone", || async move {
            let doc = get(addr, "/cluster").await.json();
            !doc["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["name"] == "mg-c")
        })
        .await;
    }
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_methods_and_the_page() {
    let cluster = unique_cluster("mgmt-routes");
    let node = start(&cluster, "mr-a", &["billing"], &[]).await;
    node.ready().await;
    let addr = node.http_addr().unwrap();
    assert_ne!(addr.port(), 0);
    assert_ne!(Some(addr), node.rpc_addr(), "its own port");

    let live = get(addr, "/livez").await;
    assert_eq!((live.status, live.body.as_str()), (200, "ok\n"));
    let ready = get(addr, "/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    let page = get(addr, "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.body.contains("fetch(\"/cluster\""),
        "the page polls /cluster"
    );
    for forbidden in ["http://", "https://", "<link", "src="] {
        assert!(
            !page.body.contains(forbidden),
            "the page is self-contained, but contains {forbidden:?}"
        );
    }

    // HEAD: the same status and length, no body.
    let head = request(addr, "HEAD", "/readyz").await.unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.body, "");
    assert_eq!(head.header("content-length"), Some("6"));

    let missing = get(addr, "/metricsz").await;
    assert_eq!(missing.status, 404);
    let missing = get(addr, "/cluster/x").await;
    assert_eq!(missing.status, 404);
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = request(addr, method, "/readyz").await.unwrap();
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
    // A body is refused, not read.
    let r = raw_request(
        addr,
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n0123",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 413);
    // An oversized head is refused (hyper's 431) or the connection is closed without an
    // answer; the node is fine either way.
    let mut huge = b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 256 * 1024));
    huge.extend(b"\r\n\r\n");
    if let Ok(r) = raw_request(addr, &huge).await {
        assert!(r.status == 431 || r.status == 400, "{r:?}");
    }
    assert_eq!(get(addr, "/livez").await.status, 200);
    node.shutdown().await;
    // Stopped with the node (its accept loop sees the stop signal on its next turn).
    let stopped = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            stopped.elapsed() < Duration::from_secs(2),
            "the endpoint stopped with the node"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `/cluster?wait=<version>` (the page's long poll): at once when the registry's version
/// differs, as soon as it changes while waiting, after about a second when nothing changes;
/// a bad version is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_wait_answers_on_a_change_or_after_a_second() {
    let cluster = unique_cluster("mgmt-wait");
    let node = start(&cluster, "mw-a", &["billing"], &[]).await;
    node.ready().await;
    let addr = node.http_addr().unwrap();
    let version = get(addr, "/cluster").await.json()["version"]
        .as_u64()
        .unwrap();

    // An older version: at once.
    let started = Instant::now();
    let r = get(addr, &format!("/cluster?wait={}", version.wrapping_sub(1))).await;
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );

    // The current version, nothing changing: held about a second, then the same document.
    let started = Instant::now();
    let doc = get(addr, &format!("/cluster?x=1&wait={version}"))
        .await
        .json();
    let held = started.elapsed();
    if doc["version"].as_u64() == Some(version) {
        assert!(
            held >= Duration::from_millis(900),
            "answered after {held:?}"
        );
    }
    assert!(held < Duration::from_secs(3), "held {held:?}");

    // A change while waiting: answered as soon as the registry has it.
    let version = node.registry().version();
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let doc = get(addr, &format!("/cluster?wait={version}")).await.json();
        (doc, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let changed = Instant::now();
    node.add_role("audit").await.unwrap();
    let (doc, held) = waiting.await.unwrap();
    assert_ne!(doc["version"].as_u64(), Some(version), "{doc}");
    assert!(held < Duration::from_secs(1), "held {held:?}");
    assert!(
        changed.elapsed() < Duration::from_millis(800),
        "{:?}",
        changed.elapsed()
    );
    assert!(doc["roles"]["audit"].is_array(), "{doc}");

    for bad in ["/cluster?wait=", "/cluster?wait=x", "/cluster?wait=-1"] {
        let r = get(addr, bad).await;
        assert_eq!(r.status, 400, "{bad}: {r:?}");
        assert!(r.body.contains("wait"), "{r:?}");
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default_and_bad_values_name_the_variable() {
    let cluster = unique_cluster("mgmt-off");
    let node = rpc_builder(&cluster, "mo-a").start().await.unwrap();
    assert_eq!(node.http_addr(), None);
    node.shutdown().await;

    let node = rpc_builder(&cluster, "mo-b")
        .from_vars([("CLUSTER_HTTP_LISTEN", "127.0.0.1:0")])
        .unwrap()
        .start()
        .await
        .unwrap();
    let addr = node.http_addr().expect("on from the variable");
    assert_eq!(get(addr, "/livez").await.status, 200);
    node.shutdown().await;

    let node = rpc_builder(&cluster, "mo-c")
        .from_vars([("CLUSTER_HTTP_LISTEN", "off")])
        .unwrap()
        .start()
        .await
        .unwrap();
    assert_eq!(node.http_addr(), None);
    node.shutdown().await;

    for bad in ["9090", "localhost", "1.2.3.4:99999", "on"] {
        let e = rpc_builder(&cluster, "mo-d")
            .from_vars([("CLUSTER_HTTP_LISTEN", bad)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("CLUSTER_HTTP_LISTEN") && e.contains(bad) && e.contains("ip:port"),
            "{e}"
        );
    }

    // A port in use stops start-up, naming the endpoint.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let e = rpc_builder(&cluster, "mo-e")
        .http_listen(taken.local_addr().unwrap())
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("management HTTP"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_joining_then_200() {
    let cluster = unique_cluster("mgmt-join");
    // A seed that never answers: the node stays joining until its join timeout.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let node = rpc_builder(&cluster, "mj-a")
        .seeds([silent.local_addr().unwrap().to_string()])
        .join_timeout(Duration::from_secs(2))
        .http_listen(loopback0())
        .start()
        .await
        .unwrap();
    let addr = node.http_addr().unwrap();
    let started = Instant::now();
    let r = get(addr, "/readyz").await;
    if started.elapsed() < Duration::from_millis(1500) {
        assert_eq!((r.status, r.body.as_str()), (503, "joining\n"));
        assert_eq!(get(addr, "/livez").await.status, 200, "alive while joining");
        let doc = get(addr, "/cluster").await.json();
        assert_eq!(doc["node"]["status"], "joining");
        assert_eq!(doc["node"]["ready"], false);
    }
    wait_until_async(
        Duration::from_secs(10),
        "ready after the join timeout",
        || async move { get(addr, "/readyz").await.status == 200 },
    )
    .await;
    assert!(node.is_ready());
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "ready only after the join timeout"
    );
    node.shutdown().await;
}

/// A node process (`rpc_node`) with `CLUSTER_HTTP_LISTEN`: ready once joined; on SIGTERM,
/// `/readyz` turns 503 at once while a call in flight still finishes, `/livez` stays 200 until
/// the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_through_sigterm_drain_of_a_process() {
    let cluster = unique_cluster("mgmt-term");
    let caller = rpc_builder(&cluster, "mt-caller").start().await.unwrap();
    let mut proc = NodeProcess::spawn(
        RPC_NODE,
        "mt-work",
        &[
            ("CLUSTER_NAME", cluster.clone()),
            ("CLUSTER_ROLES", "work".into()),
            ("CLUSTER_SEEDS", caller.gossip_addr().to_string()),
            ("CLUSTER_HTTP_LISTEN", "127.0.0.1:0".into()),
            ("CLUSTER_LEAVE_GRACE", "500ms".into()),
        ],
    );
    proc.wait_for(Duration::from_secs(20), "HTTP ", |_| true)
        .await;
    let addr: SocketAddr = proc
        .last("HTTP ")
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    wait_until_async(
        Duration::from_secs(10),
        "the process is ready",
        || async move { get(addr, "/readyz").await.status == 200 },
    )
    .await;
    wait_until(
        Duration::from_secs(10),
        "the caller sees the worker",
        || !caller.nodes_with_role("work").is_empty(),
    )
    .await;

    // A call that runs for 5 s, in flight across the SIGTERM.
    let call = {
        let target = caller.any("work").timeout(Duration::from_secs(15));
        tokio::spawn(async move { target.exec(1, 5000).await })
    };
    proc.wait_for(Duration::from_secs(10), "EXEC ", |_| true)
        .await;
    proc.signal("TERM");
    let term = Instant::now();
    let elapsed = wait_until_async(
        Duration::from_secs(5),
        "/readyz says leaving",
        || async move {
            let r = get(addr, "/readyz").await;
            r.status == 503 && r.body == "leaving\n"
        },
    )
    .await;
    // Signal delivery and one HTTP round trip on a loaded machine: well within the drain.
    assert!(
        elapsed < Duration::from_millis(2000),
        "503 took {elapsed:?}"
    );
    // Still draining: the call has not returned, the process answers /livez and says
    // leaving in /cluster.
    assert!(!call.is_finished(), "the call is still in flight");
    assert_eq!(get(addr, "/livez").await.status, 200);
    let doc = get(addr, "/cluster").await.json();
    assert_eq!(doc["node"]["ready"], false);
    assert_eq!(doc["node"]["readiness"], "leaving");
    assert_eq!(doc["node"]["in_flight"], 1);
    // Every probe until the process is gone says not ready.
    let mut probes = 0;
    while term.elapsed() < Duration::from_secs(3) {
        match request(addr, "GET", "/readyz").await {
            Ok(r) => assert_eq!(r.status, 503, "{r:?}"),
            Err(_) => break,
        }
        probes += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(probes > 5, "probed during the drain ({probes})");
    let answer = call.await.unwrap().expect("the call in flight finished");
    assert_eq!(answer, "mt-work");
    assert_eq!(proc.wait_exit(Duration::from_secs(15)).await, Some(0));
    assert!(proc.output().iter().any(|l| l == "LEFT"));
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the endpoint is gone with the process"
    );
    caller.shutdown().await;
}

/// No client can hold more than its own connection for long: connections over the cap are
/// closed at once, idle ones after the head timeout, and the node's RPC is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_excess_connections_are_bounded() {
    let cluster = unique_cluster("mgmt-bounds");
    let node = start(&cluster, "mb-a", &["work"], &[]).await;
    node.ready().await;
    let addr = node.http_addr().unwrap();
    // 40 connections that send nothing (the cap is 32).
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // The RPC side is untouched.
    let who = node
        .any("work")
        .timeout(Duration::from_secs(5))
        .whoami()
        .await
        .unwrap();
    assert_eq!(who, "mb-a");
    // Over the cap: closed at once (EOF within a second).
    let mut closed_at_once = 0;
    for s in idle.iter_mut() {
        let mut b = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(100), s.read(&mut b)).await {
            closed_at_once += 1;
        }
    }
    assert!(closed_at_once >= 8, "{closed_at_once} closed over the cap");
    // The rest are closed after the head timeout (5 s), a slow writer too.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let _ = slow.write_all(b"GET /livez HTTP/1.1\r\n").await;
    for mut s in idle.into_iter().chain([slow]) {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        assert!(
            read.is_ok(),
            "a connection held after {:?}",
            started.elapsed()
        );
    }
    assert!(started.elapsed() < Duration::from_secs(9));
    assert_eq!(get(addr, "/readyz").await.status, 200);
    node.shutdown().await;
}

/// The browser of the page test: `chromium` (Debian's package; `.ci/run` installs it, so
/// under `CI` its absence is a failure, not a skip).
fn chromium() -> Option<&'static str> {
    let found = easy_rpc_tests::browser::chromium();
    if found.is_none() && std::env::var_os("CI").is_some() {
        panic!("chromium is not installed");
    }
    found
}

/// Loads `url` in headless chromium for `budget_ms` of the page's (virtual) time and returns
/// the DOM, or writes a screenshot to `screenshot`. Virtual time stands still while a fetch is
/// pending, so the page's polls take real time only through the server's (or a proxy's)
/// latency: up to a second each, as the page's `/cluster?wait=<version>` is held until the
/// registry changes.
async fn browse(url: String, budget_ms: u64, screenshot: Option<std::path::PathBuf>) -> String {
    let profile = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "chromium-{}-{}",
        std::process::id(),
        unique_cluster("p")
    ));
    let chromium = chromium().unwrap();
    // With a CPU busy elsewhere, chromium 156's `--screenshot` under a virtual time budget
    // never ended about 1 run in 3 (it hung 15 minutes in one CI run, and 3 attempts in a
    // row in one loaded run). `--run-all-compositor-stages-before-draw` (no frame drawn
    // before its compositor stages ran, as virtual time expects) ended 15 of 15 with a
    // busy CPU. Each attempt is still bounded: at the bound the run is dropped, which ends
    // the browser this test started (`kill_on_drop`, by its PID), and it is started again,
    // at most 3 times.
    for attempt in 1..=3 {
        let mut cmd = tokio::process::Command::new(chromium);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--window-size=1280,900",
            "--run-all-compositor-stages-before-draw",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={budget_ms}"));
        match &screenshot {
            Some(path) => cmd.arg(format!("--screenshot={}", path.display())),
            None => cmd.arg("--dump-dom"),
        };
        let run = cmd.arg(&url).kill_on_drop(true).output();
        let finished = tokio::time::timeout(BROWSE_WITHIN, run).await;
        let _ = std::fs::remove_dir_all(&profile);
        match finished {
            Ok(out) => {
                let out = out.expect("run chromium");
                assert!(
                    out.status.success(),
                    "chromium failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            Err(_) => eprintln!(
                "chromium did not finish {url} within {BROWSE_WITHIN:?} (attempt {attempt} of 3): \
                 ended it"
            ),
        }
    }
    panic!("chromium did not finish {url} in 3 attempts of {BROWSE_WITHIN:?}");
}

/// How long one chromium run may take in real time: its virtual time budget is a few seconds,
/// and a run takes a few seconds more to start and load on a loaded 2-core machine.
const BROWSE_WITHIN: Duration = Duration::from_secs(90);

/// A TCP proxy to `to` that holds each chunk the browser sends for `delay` (so each poll takes
/// real time) and notifies `polled` when it forwards a `GET /cluster`.
async fn slow_proxy(
    to: SocketAddr,
    delay: Duration,
    polled: std::sync::Arc<tokio::sync::Notify>,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let polled = polled.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(to).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n @ 1..) = cr.read(&mut buf).await {
                        tokio::time::sleep(delay).await;
                        if buf[..n].starts_with(b"GET /cluster") {
                            polled.notify_one();
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                };
                let down = async {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    addr
}

/// The text of the table row (`<tr ...>` to `</tr>`) that starts with `attr`.
fn row<'a>(dom: &'a str, attr: &str) -> Option<&'a str> {
    let start = dom.find(attr)?;
    let end = dom[start..].find("</tr>")? + start;
    Some(&dom[start..end])
}

/// The page, in a real headless browser: it shows every member and role, and, in the same
/// session, updates when a node dies (the member and its role leave the tables and a `down`
/// change is listed). A screenshot is kept in the target directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_in_headless_chromium_shows_members_and_a_death() {
    if chromium().is_none() {
        eprintln!("chromium is not installed: skipping the page test (.ci/run installs it)");
        return;
    }
    let cluster = unique_cluster("mgmt-page");
    let a = start(&cluster, "pg-a", &["billing", "audit"], &[]).await;
    let b = start(&cluster, "pg-b", &["billing"], &[&a]).await;
    let c = start(&cluster, "pg-c", &["gateway"], &[&a]).await;
    wait_until(Duration::from_secs(10), "a sees 3 serving members", || {
        let m = a.members();
        m.len() == 3
            && m.iter()
                .all(|m| m.status == easy_rpc::cluster_helper::NodeStatus::Serving)
    })
    .await;
    let http = a.http_addr().unwrap();

    // Every member and role, after the page's script ran.
    let dom = browse(format!("http://{http}/"), 1000, None).await;
    for n in [&a, &b, &c] {
        let r = row(&dom, &format!("data-member=\"{}\"", n.id().name()))
            .unwrap_or_else(|| panic!("no row for {}:\n{dom}", n.id()));
        assert!(
            r.contains(&n.id().to_string()) && r.contains("serving"),
            "{r}"
        );
    }
    for (role, nodes) in [
        ("audit", "pg-a"),
        ("billing", "pg-a, pg-b"),
        ("gateway", "pg-c"),
    ] {
        let r = row(&dom, &format!("data-role=\"{role}\""))
            .unwrap_or_else(|| panic!("no row for role {role}:\n{dom}"));
        assert!(r.contains(&format!(">{nodes}</td>")), "{role}: {r}");
    }
    assert!(dom.contains(&format!("<span id=\"cluster\">{cluster}</span>")));
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("management-page.png");
    let _ = std::fs::remove_file(&shot);
    browse(format!("http://{http}/"), 1000, Some(shot.clone())).await;
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{shot:?}"
    );
    eprintln!("screenshot of the page: {}", shot.display());

    // One session across a death: each poll through the proxy takes 300 ms of real time, and
    // up to a second more while the node holds it for a change (8 polls in all).
    let polled = std::sync::Arc::new(tokio::sync::Notify::new());
    let proxy = slow_proxy(http, Duration::from_millis(300), polled.clone()).await;
    let session = tokio::spawn(browse(format!("http://{proxy}/"), 4000, None));
    tokio::time::timeout(Duration::from_secs(30), polled.notified())
        .await
        .expect("the page polled /cluster");
    let c_id = c.id().clone();
    c.kill();
    wait_until(Duration::from_secs(10), "a drops pg-c", || {
        a.registry().snapshot().member(&c_id).is_none()
    })
    .await;
    let dom = session.await.unwrap();
    assert!(
        !dom.contains("data-member=\"pg-c\""),
        "pg-c still shown:\n{dom}"
    );
    assert!(row(&dom, "data-member=\"pg-a\"").is_some(), "{dom}");
    assert!(row(&dom, "data-member=\"pg-b\"").is_some(), "{dom}");
    assert!(
        !dom.contains("data-role=\"gateway\""),
        "gateway still shown:\n{dom}"
    );
    assert!(
        dom.contains(&format!("data-change=\"down\" data-id=\"{c_id}\"")),
        "no down change for {c_id}:\n{dom}"
    );
    b.shutdown().await;
    a.shutdown().await;
}

/// What one SIGKILL trial measured, in ms on the wall clock: from the signal to the node's
/// registry dropping the member (failure detection), and to the page showing it down.
#[derive(Debug, Clone, Copy)]
struct Trial {
    detected: u64,
    shown: u64,
}

impl Trial {
    /// Page lag: from the registry dropping the member to the page showing it down.
    fn lag(&self) -> i64 {
        self.shown as i64 - self.detected as i64
    }
}

/// The page in headless chromium running in real time (no virtual time: its timers, fetches
/// and `Date.now()` are the wall clock's), read over the DevTools protocol while node
/// processes are SIGKILLed one after the other. For each: when the observing node's registry
/// dropped it, and when the page showed it down (the `data-shown-at` of its `down` change,
/// with its row gone from the members table). The figure is printed (`--nocapture`); the
/// bound asserted is generous for a loaded machine (page lag <= 3 s; the goal is 1 s). A
/// screenshot of the page after the deaths is kept in the target directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_in_real_time_shows_a_sigkilled_process_down() {
    use easy_rpc::cluster_helper::NodeStatus;
    use easy_rpc_tests::browser::{Browser, wall_ms};
    use tokio::task::block_in_place;

    const TRIALS: usize = 3;
    if chromium().is_none() {
        eprintln!("chromium is not installed: skipping the page test (.ci/run installs it)");
        return;
    }
    let cluster = unique_cluster("mgmt-live");
    let a = start(&cluster, "pl-a", &["billing"], &[]).await;
    a.ready().await;
    let http = a.http_addr().unwrap();

    // When a's registry dropped each node (wall clock, ms).
    let (dropped, fill) = easy_rpc_tests::browser::down_times(a.registry().events());
    tokio::spawn(fill);

    let profile = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "chromium-live-{}-{}",
        std::process::id(),
        unique_cluster("p")
    ));
    let (mut browser, page) = block_in_place(|| {
        let mut browser = Browser::launch(profile).expect("start chromium");
        let page = browser.open(&format!("http://{http}/")).expect("open");
        (browser, page)
    });
    let shows = |expr: String, what: &str, browser: &mut Browser| {
        block_in_place(|| browser.wait_for(&page, &expr, Duration::from_secs(15)))
            .unwrap_or_else(|| panic!("the page never showed {what}"))
    };
    shows(
        "document.querySelector('tr[data-member=\"pl-a\"]') !== null".into(),
        "pl-a",
        &mut browser,
    );

    let mut trials = Vec::new();
    for i in 0..TRIALS {
        let name = format!("pl-k{i}");
        let mut proc = NodeProcess::spawn(
            RPC_NODE,
            &name,
            &[
                ("CLUSTER_NAME", cluster.clone()),
                ("CLUSTER_ROLES", "work".into()),
                ("CLUSTER_SEEDS", a.gossip_addr().to_string()),
            ],
        );
        proc.wait_for(Duration::from_secs(20), "STARTED ", |_| true)
            .await;
        let id = proc.node_id().await;
        wait_until(
            Duration::from_secs(10),
            "pl-a sees the process serving",
            || {
                a.members()
                    .iter()
                    .any(|m| m.id.to_string() == id && m.status == NodeStatus::Serving)
            },
        )
        .await;
        shows(
            format!(
                "document.querySelector('tr[data-member=\"{name}\"][data-status=\"serving\"]') !== null"
            ),
            &format!("{name} serving"),
            &mut browser,
        );
        // A member heard from for a while, as in a cluster that has been running.
        tokio::time::sleep(Duration::from_secs(1)).await;

        let killed = wall_ms();
        proc.signal("KILL");
        let detected = wait_until(Duration::from_secs(30), "pl-a drops the process", || {
            dropped.lock().unwrap().contains_key(&id)
        })
        .await;
        let dropped_at = dropped.lock().unwrap()[&id];
        let shown_at = shows(
            format!(
                "(() => {{ const li = document.querySelector('li[data-change=\"down\"][data-id=\"{id}\"]'); \
                 return li && !document.querySelector('tr[data-member=\"{name}\"]') ? Number(li.dataset.shownAt) : null; }})()"
            ),
            &format!("{name} down"),
            &mut browser,
        )
        .as_u64()
        .expect("data-shown-at is a number");
        let seen = wall_ms();
        assert!(
            shown_at >= killed && shown_at <= seen,
            "shown at {shown_at}, killed at {killed}, seen in the DOM at {seen}"
        );
        let trial = Trial {
            detected: dropped_at - killed,
            shown: shown_at - killed,
        };
        eprintln!(
            "trial {i}: SIGKILL -> dropped by the registry {} ms, -> shown down {} ms, page lag {} ms (read from the DOM {} ms after the signal; waited {detected:?})",
            trial.detected,
            trial.shown,
            trial.lag(),
            seen - killed,
        );
        trials.push(trial);
        assert_eq!(proc.wait_exit(Duration::from_secs(5)).await, None, "killed");
    }

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("management-page-down.png");
    let _ = std::fs::remove_file(&shot);
    block_in_place(|| browser.screenshot(&page, &shot)).expect("screenshot");
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{shot:?}"
    );
    eprintln!(
        "screenshot of the page after the deaths: {}",
        shot.display()
    );
    block_in_place(|| browser.close());

    let p50_max = |mut v: Vec<i64>| {
        v.sort_unstable();
        (v[(v.len() - 1) / 2], v[v.len() - 1])
    };
    let (d50, dmax) = p50_max(trials.iter().map(|t| t.detected as i64).collect());
    let (s50, smax) = p50_max(trials.iter().map(|t| t.shown as i64).collect());
    let (l50, lmax) = p50_max(trials.iter().map(Trial::lag).collect());
    eprintln!(
        "page, {TRIALS} SIGKILLs (gossip every {:?}): dropped by the registry p50 {d50} ms max {dmax} ms; \
         shown down in the browser p50 {s50} ms max {smax} ms; page lag p50 {l50} ms max {lmax} ms (goal <= 1000 ms)",
        easy_rpc_tests::cluster::TEST_GOSSIP
    );
    assert!(lmax <= 3_000, "page lag {lmax} ms: {trials:?}");
    a.shutdown().await;
}

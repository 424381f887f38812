//! The metrics, end to end: two real nodes on loopback make a known number of calls, some
//! failing on purpose (the method's own error, a role with no node, a timeout, a panic); the
//! management endpoint's `/metrics` is scraped over HTTP, parsed with a Prometheus text
//! parser, and the counts must match exactly on the client side and the server side, with the
//! membership gauges.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use easy_rpc::{Node, RpcError};
use easy_rpc_tests::cluster::{init_logs, rpc_builder, unique_cluster, wait_until};
use easy_rpc_tests::http::get;
use prometheus_parse::{Scrape, Value};
use serde::{Deserialize, Serialize};

/// The method's own error.
#[derive(Debug, Serialize, Deserialize)]
pub struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused")
    }
}

impl std::error::Error for Refused {}

/// The service the test calls.
#[easy_rpc::service]
pub trait Meter {
    /// Answers `n`.
    async fn echo(n: u32) -> u32;
    /// Fails with its own error when `n` is odd.
    async fn check(n: u32) -> Result<u32, Refused>;
    /// Sleeps `ms` milliseconds.
    async fn sleep(ms: u64) -> u64;
    /// Panics.
    async fn boom() -> u32;
}

struct MeterImpl;

impl Meter for MeterImpl {
    async fn echo(&self, n: u32) -> u32 {
        n
    }
    async fn check(&self, n: u32) -> Result<u32, Refused> {
        if n % 2 == 1 { Err(Refused) } else { Ok(n) }
    }
    async fn sleep(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }
    async fn boom(&self) -> u32 {
        panic!("boom {}", easy_rpc_tests::cluster::ON_PURPOSE)
    }
}

fn loopback0() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A parsed scrape, indexed by metric name and label set.
struct Metrics(Scrape);

impl Metrics {
    async fn scrape(addr: SocketAddr) -> Metrics {
        let r = get(addr, "/metrics").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let lines = r.body.lines().map(|l| Ok(l.to_owned()));
        Metrics(Scrape::parse(lines).expect("a valid Prometheus text scrape"))
    }

    /// The value of `metric` with exactly `labels`; `None` if there is no such sample.
    fn get(&self, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: HashMap<&str, &str> = labels.iter().copied().collect();
        let found: Vec<f64> = self
            .0
            .samples
            .iter()
            .filter(|s| s.metric == metric)
            .filter(|s| {
                s.labels.len() == want.len()
                    && want.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                other => panic!("{metric}: not a number: {other:?}"),
            })
            .collect();
        assert!(found.len() <= 1, "{metric} {labels:?} appears twice");
        found.first().copied()
    }

    /// Like [`get`](Self::get), 0 when absent (a counter never incremented).
    fn count(&self, metric: &str, labels: &[(&str, &str)]) -> u64 {
        self.get(metric, labels).unwrap_or(0.0) as u64
    }

    /// Every `outcome` of `metric` for `method` of Meter, with its count.
    fn outcomes(&self, metric: &str, method: &str) -> HashMap<String, u64> {
        self.0
            .samples
            .iter()
            .filter(|s| {
                s.metric == metric
                    && s.labels.get("service") == Some("Meter")
                    && s.labels.get("method") == Some(method)
            })
            .filter_map(|s| match s.value {
                Value::Counter(v) if v > 0.0 => {
                    Some((s.labels.get("outcome").unwrap().to_owned(), v as u64))
                }
                _ => None,
            })
            .collect()
    }
}

fn counts(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
    pairs.iter().map(|&(k, v)| (k.to_owned(), v)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_counts_match_the_calls_made() {
    init_logs();
    let c = unique_cluster("metrics");
    let server = rpc_builder(&c, "meter-1")
        .roles(["meter", "audit"])
        .serve(MeterImpl.serve())
        .http_listen(loopback0())
        .start()
        .await
        .unwrap();
    let client = rpc_builder(&c, "caller")
        .roles(["caller"])
        .seeds([server.gossip_addr().to_string()])
        .http_listen(loopback0())
        .start()
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), "both nodes see each other", || {
        client.nodes_with_role("meter").len() == 1 && server.nodes_with_role("caller").len() == 1
    })
    .await;
    let meter = client.any("meter");

    // 7 answered.
    for n in 0..7 {
        assert_eq!(meter.echo(n).await.unwrap(), n);
    }
    // 5 `check`s: 2 return the method's own error (1 and 3), 3 succeed.
    for n in 0..5 {
        let r = meter.check(n).await;
        match n % 2 {
            1 => assert!(matches!(r, Err(RpcError::Remote { .. })), "{r:?}"),
            _ => assert_eq!(r.unwrap(), n),
        }
    }
    // 2 to a role no node has: nothing is sent.
    for n in 0..2 {
        let r = client.any("nobody").echo(n).await;
        assert!(matches!(r, Err(RpcError::NoNodeForRole { .. })), "{r:?}");
    }
    // 1 that times out (and is stopped on the server at its deadline), 1 that finishes.
    let r = client
        .any("meter")
        .timeout(Duration::from_millis(200))
        .sleep(5_000)
        .await;
    assert!(matches!(r, Err(RpcError::Timeout { .. })), "{r:?}");
    assert_eq!(meter.sleep(1).await.unwrap(), 1);
    // 1 whose handler panics.
    let r = meter.boom().await;
    assert!(matches!(r, Err(RpcError::Server { .. })), "{r:?}");
    // `all` counts one call per node.
    let all = client.all("meter").echo(9).await.unwrap();
    assert_eq!(all.len(), 1);

    let client_http = client.http_addr().unwrap();
    let server_http = server.http_addr().unwrap();
    // The server ends the timed-out request at its deadline: wait until it has.
    let mut scraped = None;
    for _ in 0..100 {
        let m = Metrics::scrape(server_http).await;
        let sleep = [("service", "Meter"), ("method", "sleep")];
        if m.count("easy_rpc_server_requests_in_flight", &sleep) == 0 {
            scraped = Some(m);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = scraped.expect("the server ended the timed-out request");
    let m = Metrics::scrape(client_http).await;

    // Client side: every call by outcome, exactly.
    let calls = "easy_rpc_client_calls_total";
    assert_eq!(
        m.outcomes(calls, "echo"),
        counts(&[("ok", 8), ("no_node_for_role", 2)])
    );
    assert_eq!(
        m.outcomes(calls, "check"),
        counts(&[("ok", 3), ("remote", 2)])
    );
    assert_eq!(
        m.outcomes(calls, "sleep"),
        counts(&[("ok", 1), ("timeout", 1)])
    );
    assert_eq!(m.outcomes(calls, "boom"), counts(&[("server", 1)]));
    for (method, n) in [("echo", 10), ("check", 5), ("sleep", 2), ("boom", 1)] {
        let labels = [("service", "Meter"), ("method", method)];
        assert_eq!(
            m.count("easy_rpc_client_call_duration_seconds_count", &labels),
            n,
            "{method}"
        );
        assert_eq!(m.count("easy_rpc_client_calls_in_flight", &labels), 0);
        // Nothing here was rerouted or retried (no other node, nothing idempotent).
        assert_eq!(m.count("easy_rpc_client_reroutes_total", &labels), 0);
        assert_eq!(m.count("easy_rpc_client_retries_total", &labels), 0);
    }
    // The client served nothing.
    assert!(
        s.0.samples
            .iter()
            .any(|x| x.metric == "easy_rpc_server_requests_total")
    );
    assert!(
        !m.0.samples
            .iter()
            .any(|x| x.metric == "easy_rpc_server_requests_total"),
        "the caller serves nothing"
    );

    // Server side: what reached it.
    let requests = "easy_rpc_server_requests_total";
    assert_eq!(s.outcomes(requests, "echo"), counts(&[("ok", 8)]));
    assert_eq!(
        s.outcomes(requests, "check"),
        counts(&[("ok", 3), ("remote", 2)])
    );
    assert_eq!(
        s.outcomes(requests, "sleep"),
        counts(&[("ok", 1), ("timeout", 1)])
    );
    assert_eq!(s.outcomes(requests, "boom"), counts(&[("server", 1)]));
    for (method, n) in [("echo", 8), ("check", 5), ("sleep", 2), ("boom", 1)] {
        let labels = [("service", "Meter"), ("method", method)];
        assert_eq!(
            s.count("easy_rpc_server_request_duration_seconds_count", &labels),
            n,
            "{method}"
        );
    }
    // One pooled connection from the caller.
    assert_eq!(
        s.count("easy_rpc_server_connections_accepted_total", &[]),
        1
    );
    assert_eq!(s.count("easy_rpc_server_connections_open", &[]), 1);
    assert_eq!(
        s.count(
            "easy_rpc_server_connections_refused_total",
            &[("reason", "handshake")]
        ),
        0
    );

    // Membership, as each node sees it.
    for (who, x) in [("client", &m), ("server", &s)] {
        assert_eq!(
            x.count("easy_rpc_cluster_members", &[("status", "serving")]),
            2,
            "{who}"
        );
        assert_eq!(
            x.count("easy_rpc_cluster_members", &[("status", "joining")]),
            0
        );
        assert_eq!(
            x.count("easy_rpc_cluster_members", &[("status", "leaving")]),
            0
        );
        for role in ["meter", "audit", "caller"] {
            assert_eq!(
                x.count("easy_rpc_cluster_role_nodes", &[("role", role)]),
                1,
                "{who}: {role}"
            );
        }
        assert_eq!(x.count("easy_rpc_cluster_roles", &[]), 3, "{who}");
        assert_eq!(
            x.get("easy_rpc_cluster_role_nodes", &[("role", "_other")]),
            None
        );
        assert_eq!(x.count("easy_rpc_node_ready", &[]), 1, "{who}");
        assert_eq!(x.count("easy_rpc_cluster_failures_total", &[]), 0, "{who}");
        assert!(
            x.count("easy_rpc_gossip_packets_total", &[("direction", "sent")]) > 0,
            "{who}"
        );
        assert!(
            x.count("easy_rpc_gossip_bytes_total", &[("direction", "received")]) > 0,
            "{who}"
        );
        assert_eq!(
            x.count(
                "easy_rpc_gossip_packets_rejected_total",
                &[("reason", "unauthenticated")]
            ),
            0,
            "{who}"
        );
    }
    // The client saw the server start serving (and maybe itself).
    assert!(m.count("easy_rpc_cluster_joins_total", &[]) >= 1);

    // The same text from the node itself, and through a collector in a registry of one's own.
    assert!(
        client
            .metrics_text()
            .contains("easy_rpc_client_calls_total{")
    );
    let mut registry = easy_rpc::prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(client.metrics()));
    let mut text = String::new();
    easy_rpc::prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(
            "easy_rpc_client_calls_total{service=\"Meter\",method=\"boom\",outcome=\"server\"} 1"
        ),
        "{text}"
    );

    // A node that stops leaves the others' serving members, counted as a leave.
    server.shutdown().await;
    let mut left = None;
    for _ in 0..200 {
        let m = Metrics::scrape(client_http).await;
        if m.count("easy_rpc_cluster_members", &[("status", "serving")]) == 1
            && m.get("easy_rpc_cluster_role_nodes", &[("role", "meter")])
                .is_none()
        {
            left = Some(m);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = left.expect("the client saw the server leave");
    assert_eq!(m.count("easy_rpc_cluster_leaves_total", &[]), 1);
    assert_eq!(m.count("easy_rpc_cluster_failures_total", &[]), 0);
    client.shutdown().await;
}

/// The role label is capped: past `MAX_ROLE_LABELS` roles, the rest are summed under one
/// label value, and the sum over the family still counts every role's nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_labels_are_capped() {
    init_logs();
    let c = unique_cluster("metrics-cap");
    let roles: Vec<String> = (0..easy_rpc::MAX_ROLE_LABELS + 5)
        .map(|i| format!("r{i:05}"))
        .collect();
    let node: Node = rpc_builder(&c, "many-roles")
        .roles(roles.iter().map(String::as_str))
        .http_listen(loopback0())
        .start()
        .await
        .unwrap();
    node.ready().await;
    let m = Metrics::scrape(node.http_addr().unwrap()).await;
    let series: Vec<_> =
        m.0.samples
            .iter()
            .filter(|s| s.metric == "easy_rpc_cluster_role_nodes")
            .collect();
    assert_eq!(series.len(), easy_rpc::MAX_ROLE_LABELS + 1);
    // All have one node: ties go by name, so the last five are summed.
    assert_eq!(
        m.count("easy_rpc_cluster_role_nodes", &[("role", "r00000")]),
        1
    );
    assert_eq!(
        m.get("easy_rpc_cluster_role_nodes", &[("role", "r01004")]),
        None
    );
    assert_eq!(
        m.count(
            "easy_rpc_cluster_role_nodes",
            &[("role", easy_rpc::OTHER_ROLES)]
        ),
        5
    );
    assert_eq!(
        m.count("easy_rpc_cluster_roles", &[]),
        easy_rpc::MAX_ROLE_LABELS as u64 + 5
    );
    node.shutdown().await;
}

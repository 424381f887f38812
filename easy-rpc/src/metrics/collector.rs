//! [`NodeMetrics`]: the node's metrics as a [`prometheus_client`] collector, encoded when
//! scraped from the per-method counters, the server's counters, the registry and the gossip
//! counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cluster_helper::{GossipStats, NodeStatus, Snapshot};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::Metrics;
use super::calls::{Methods, Outcome};
use crate::node::{Node, WeakNode};
use crate::server::ServerStats;

/// The most role names a scrape shows as label values of `easy_rpc_cluster_role_nodes`: roles
/// are user data (up to 10,000 per node), and each value is a time series to the monitoring
/// system. The roles with the most nodes (ties by name) get their own series; the rest are
/// summed under [`OTHER_ROLES`].
pub const MAX_ROLE_LABELS: usize = 1_000;

/// The `role` label value under which the roles past [`MAX_ROLE_LABELS`] are summed.
pub const OTHER_ROLES: &str = "_other";

/// A node's metrics as a [`prometheus_client`] [`Collector`], from
/// [`Node::metrics`](crate::Node::metrics): register it with a registry of the program's own
/// to serve them with its other metrics. It reads the node at every scrape and shows nothing
/// once the node is gone. (The management endpoint's `/metrics` serves the same.)
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), easy_rpc::Error> {
/// use easy_rpc::prometheus_client::registry::Registry;
///
/// let node = easy_rpc::Node::builder()
///     .cluster("docs-metrics").name("n1").listen("127.0.0.1:0")
///     .secret_key(easy_rpc::cluster_helper::Secret::generate())
///     .default_node(false)
///     .start().await?;
/// node.ready().await;
/// let mut registry = Registry::default();
/// registry.register_collector(Box::new(node.metrics()));
/// let mut text = String::new();
/// easy_rpc::prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
/// assert!(text.contains("easy_rpc_cluster_members{status=\"serving\"}"));
/// node.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct NodeMetrics {
    node: WeakNode,
}

impl NodeMetrics {
    pub(crate) fn new(node: WeakNode) -> NodeMetrics {
        NodeMetrics { node }
    }
}

impl Collector for NodeMetrics {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        match self.node.upgrade() {
            Some(node) => encode(&node, encoder),
            None => Ok(()),
        }
    }
}

/// The node's metrics in the Prometheus text format (version 0.0.4).
pub(crate) fn text(node: &Node) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(NodeMetrics::new(node.weak())));
    let mut out = String::with_capacity(64 * 1024);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

type Labels<'a, const N: usize> = [(&'static str, &'a str); N];

/// A counter family (`name` without `_total`: the encoder adds it).
fn counters<'a, L: EncodeLabelSet + 'a>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        m.encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
    }
    Ok(())
}

/// One counter without labels.
fn counter(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    enc.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&v, None)
}

/// A gauge family.
fn gauges<'a, L: EncodeLabelSet + 'a>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        m.encode_family(&labels)?.encode_gauge(&v)?;
    }
    Ok(())
}

/// One gauge without labels.
fn gauge(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: i64,
) -> Result<(), std::fmt::Error> {
    enc.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&v)
}

fn n(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn int(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// What a scrape reads.
struct Sources<'a> {
    metrics: &'a Metrics,
    server: ServerStats,
    snapshot: Arc<Snapshot>,
    gossip: GossipStats,
    ready: bool,
}

fn encode(node: &Node, enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
    let sources = Sources {
        metrics: &node.rpc().metrics,
        server: node.server_stats(),
        snapshot: node.registry().snapshot(),
        gossip: node.gossip_stats(),
        ready: crate::management::readiness(node).0,
    };
    encode_sources(&sources, enc)
}

fn encode_sources(
    src: &Sources<'_>,
    mut enc: DescriptorEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    let metrics = src.metrics;
    encode_methods(&mut enc, "client", "calls", "call", &metrics.client)?;
    let client: Vec<_> = metrics.client.used().collect();
    let per_method = |f: fn(&super::calls::MethodSlot) -> u64| {
        client
            .iter()
            .map(move |&(s, m, slot)| ([("service", s), ("method", m)], f(slot)))
    };
    counters(
        &mut enc,
        "easy_rpc_client_reroutes",
        "Calls sent to another node after an attempt that provably did not run.",
        per_method(|s| n(&s.reroutes)),
    )?;
    counters(
        &mut enc,
        "easy_rpc_client_retries",
        "Idempotent calls sent again after an attempt that may have run (lost connection, attempt timeout).",
        per_method(|s| n(&s.retries)),
    )?;
    counters(
        &mut enc,
        "easy_rpc_client_hedges",
        "Extra attempts started while a call's first attempt was still running.",
        per_method(|s| n(&s.hedges)),
    )?;
    encode_methods(&mut enc, "server", "requests", "request", &metrics.server)?;
    encode_server(&src.server, &mut enc)?;
    encode_membership(src, &mut enc)
}

/// Calls (or requests) by outcome, their latency and those in flight, per method.
fn encode_methods(
    enc: &mut DescriptorEncoder<'_>,
    side: &str,
    things: &str,
    thing: &str,
    methods: &Methods,
) -> Result<(), std::fmt::Error> {
    let used: Vec<_> = methods.used().collect();
    counters(
        enc,
        &format!("easy_rpc_{side}_{things}"),
        &format!(
            "{}s ended, by service, method and outcome (ok, remote: the method's own error, \
             cancelled, or the RpcError kind).",
            upper(things)
        ),
        used.iter().flat_map(|&(s, m, slot)| {
            Outcome::ALL.iter().filter_map(move |o| {
                let v = n(&slot.outcomes[*o as usize]);
                (v > 0 || *o == Outcome::Ok)
                    .then(|| ([("service", s), ("method", m), ("outcome", o.label())], v))
            })
        }),
    )?;
    {
        let name = format!("easy_rpc_{side}_{thing}_duration_seconds");
        let mut m = enc.encode_descriptor(
            &name,
            &format!("How long {things} took, by service and method."),
            None,
            MetricType::Histogram,
        )?;
        for &(s, method, slot) in &used {
            let (buckets, count, sum) = slot.latency.read();
            let labels: Labels<'_, 2> = [("service", s), ("method", method)];
            m.encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
    }
    gauges(
        enc,
        &format!("easy_rpc_{side}_{things}_in_flight"),
        &format!("{} under way now, by service and method.", upper(things)),
        used.iter().map(|&(s, m, slot)| {
            (
                [("service", s), ("method", m)],
                slot.in_flight.load(Ordering::Relaxed),
            )
        }),
    )
}

fn upper(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The server's connections and refusals.
fn encode_server(s: &ServerStats, enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
    let u = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
    gauge(
        enc,
        "easy_rpc_server_connections_open",
        "RPC connections open now after a completed handshake.",
        int(s.open),
    )?;
    gauge(
        enc,
        "easy_rpc_server_connections",
        "TCP connections the RPC server holds now, authenticated or not.",
        int(s.connections),
    )?;
    gauge(
        enc,
        "easy_rpc_server_handshakes_pending",
        "Connections whose handshake is under way now.",
        int(s.pending_handshakes),
    )?;
    gauge(
        enc,
        "easy_rpc_server_connections_max",
        "The connection cap in force.",
        int(s.max_connections),
    )?;
    counter(
        enc,
        "easy_rpc_server_connections_accepted",
        "Connections that completed the handshake.",
        u(s.accepted),
    )?;
    counters(
        enc,
        "easy_rpc_server_connections_refused",
        "Connections refused, by reason: closed at accept over a cap (max_connections, \
         pending_handshakes, pending_per_ip, descriptors) or refused at the handshake \
         (handshake: wrong secret or cluster, unknown service, leaving, garbage, timeout).",
        [
            ("max_connections", s.refused.max_connections),
            ("pending_handshakes", s.refused.pending_handshakes),
            ("pending_per_ip", s.refused.pending_per_ip),
            ("descriptors", s.refused.descriptors),
            ("handshake", s.rejected),
        ]
        .map(|(reason, v)| ([("reason", reason)], u(v))),
    )?;
    counters(
        enc,
        "easy_rpc_server_requests_refused",
        "Requests answered \"not run\" by the server's limits, by reason (overloaded, expired).",
        [
            ("overloaded", s.overloaded_requests),
            ("expired", s.expired_requests),
        ]
        .map(|(reason, v)| ([("reason", reason)], u(v))),
    )?;
    gauge(
        enc,
        "easy_rpc_server_requests_queued",
        "Requests waiting now for room under the node's cap on running requests.",
        int(s.queued_requests),
    )?;
    counters(
        enc,
        "easy_rpc_server_frames_refused",
        "Connections closed for a frame over the size limit (too_large) or over the node's \
         budget of partially received bytes (over_budget).",
        [
            ("too_large", s.frames_too_large),
            ("over_budget", s.frames_over_budget),
        ]
        .map(|(reason, v)| ([("reason", reason)], u(v))),
    )?;
    gauge(
        enc,
        "easy_rpc_server_buffered_bytes",
        "Bytes held now by partially received frames.",
        int(s.buffered_bytes),
    )
}

/// Membership as this node's registry sees it, and gossip traffic.
fn encode_membership(
    src: &Sources<'_>,
    enc: &mut DescriptorEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    let snapshot = &src.snapshot;
    let mut by_status = [0i64; 3];
    for m in snapshot.members() {
        let i = match m.status {
            NodeStatus::Joining => 0,
            NodeStatus::Serving => 1,
            _ => 2,
        };
        by_status[i] += 1;
    }
    gauges(
        enc,
        "easy_rpc_cluster_members",
        "Live members in this node's registry, by status (joining, serving, leaving).",
        ["joining", "serving", "leaving"]
            .into_iter()
            .zip(by_status)
            .map(|(status, v)| ([("status", status)], v)),
    )?;
    let roles: Vec<(&str, usize)> = snapshot
        .roles()
        .map(|(role, nodes)| (role.as_str(), nodes.len()))
        .collect();
    gauge(
        enc,
        "easy_rpc_cluster_roles",
        "Roles that at least one serving member has.",
        int(roles.len()),
    )?;
    gauges(
        enc,
        "easy_rpc_cluster_role_nodes",
        "Serving members per role; past the 1,000 roles with the most nodes, the rest are \
         summed under role=\"_other\".",
        capped_roles(roles, MAX_ROLE_LABELS)
            .into_iter()
            .map(|(role, v)| ([("role", role)], int(v))),
    )?;
    let metrics = src.metrics;
    counter(
        enc,
        "easy_rpc_cluster_joins",
        "Members seen to start serving (those serving when the node started included).",
        n(&metrics.joins),
    )?;
    counter(
        enc,
        "easy_rpc_cluster_leaves",
        "Members seen to announce they leave.",
        n(&metrics.leaves),
    )?;
    counter(
        enc,
        "easy_rpc_cluster_failures",
        "Members gone without announcing it (failure detection, or replaced by a newer \
         incarnation).",
        n(&metrics.failures),
    )?;
    gauge(
        enc,
        "easy_rpc_node_ready",
        "1 once this node has joined and serves, 0 while joining or leaving.",
        i64::from(src.ready),
    )?;
    let g = &src.gossip;
    counters(
        enc,
        "easy_rpc_gossip_packets",
        "Gossip datagrams, by direction (sent, received: authentic ones only).",
        [("sent", g.packets_sent), ("received", g.packets_received)]
            .map(|(d, v)| ([("direction", d)], v)),
    )?;
    counters(
        enc,
        "easy_rpc_gossip_bytes",
        "Gossip bytes (UDP payload), by direction (sent, received: authentic ones only).",
        [("sent", g.bytes_sent), ("received", g.bytes_received)]
            .map(|(d, v)| ([("direction", d)], v)),
    )?;
    counters(
        enc,
        "easy_rpc_gossip_packets_rejected",
        "Gossip datagrams dropped, by reason: unauthenticated (another cluster or secret, \
         garbage), stale (timestamp too far from this node's clock), replayed.",
        [
            ("unauthenticated", g.packets_rejected),
            ("stale", g.packets_stale),
            ("replayed", g.packets_replayed),
        ]
        .map(|(r, v)| ([("reason", r)], v)),
    )
}

/// A scrape of synthetic data, for the benchmark of what one scrape costs (feature
/// `test-util`): a registry of serving members with roles, and client and server counters
/// for methods that each had calls with a few outcomes.
///
/// ```
/// let fixture = easy_rpc::ScrapeFixture::new(10, 4, 3);
/// let text = fixture.scrape();
/// assert!(text.contains("easy_rpc_cluster_members{status=\"serving\"} 10"));
/// assert!(text.contains("method=\"method-2\""));
/// ```
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
#[derive(Clone, Debug)]
pub struct ScrapeFixture {
    metrics: Arc<Metrics>,
    registry: cluster_helper::Registry,
}

#[cfg(feature = "test-util")]
impl ScrapeFixture {
    /// `members` serving members with 3 roles each among `roles`, and `methods` methods of
    /// one service with calls on both sides (ok, timeout and the method's own error).
    pub fn new(members: usize, roles: usize, methods: usize) -> ScrapeFixture {
        use std::time::Duration;
        let metrics = Metrics::default();
        for i in 0..methods {
            let name: &'static str = Box::leak(format!("method-{i}").into_boxed_str());
            let method: &'static crate::MethodInfo =
                Box::leak(Box::new(crate::MethodInfo::new(name)));
            for (k, outcome) in [Outcome::Ok, Outcome::Ok, Outcome::Timeout, Outcome::Remote]
                .into_iter()
                .enumerate()
            {
                let took = Duration::from_micros(300 << (3 * k));
                for side in [&metrics.client, &metrics.server] {
                    let slot = side.slot("Fixture", method);
                    slot.count(outcome);
                    slot.latency.observe(took);
                }
            }
        }
        ScrapeFixture {
            metrics: Arc::new(metrics),
            registry: cluster_helper::synthetic_registry(members, roles, 3),
        }
    }

    /// One scrape, in the Prometheus text format, as `/metrics` serves it.
    pub fn scrape(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let mut out = String::with_capacity(64 * 1024);
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        out
    }
}

#[cfg(feature = "test-util")]
impl Collector for ScrapeFixture {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let sources = Sources {
            metrics: &self.metrics,
            server: ServerStats::default(),
            snapshot: self.registry.snapshot(),
            gossip: GossipStats::default(),
            ready: true,
        };
        encode_sources(&sources, encoder)
    }
}

/// At most `cap` roles with their node counts (the ones with the most nodes, ties by name,
/// in that order), then the rest summed under [`OTHER_ROLES`] (only if there is a rest).
pub(crate) fn capped_roles(mut roles: Vec<(&str, usize)>, cap: usize) -> Vec<(&str, usize)> {
    roles.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    if roles.len() <= cap {
        return roles;
    }
    let rest: usize = roles[cap..].iter().map(|&(_, n)| n).sum();
    roles.truncate(cap);
    roles.push((OTHER_ROLES, rest));
    roles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_past_the_cap_are_summed_under_one_label() {
        let names: Vec<String> = (0..1_500).map(|i| format!("role-{i:04}")).collect();
        // role-0000 has 1500 nodes, role-0001 1499, ... role-1499 one.
        let roles: Vec<(&str, usize)> = names
            .iter()
            .enumerate()
            .map(|(i, r)| (r.as_str(), 1_500 - i))
            .collect();
        let total: usize = roles.iter().map(|r| r.1).sum();
        let capped = capped_roles(roles, MAX_ROLE_LABELS);
        assert_eq!(capped.len(), MAX_ROLE_LABELS + 1);
        assert_eq!(capped[0], ("role-0000", 1_500));
        assert_eq!(capped[MAX_ROLE_LABELS - 1], ("role-0999", 501));
        // The other 500 roles (500 nodes down to 1) under one label.
        assert_eq!(capped[MAX_ROLE_LABELS], (OTHER_ROLES, (1..=500).sum()));
        assert_eq!(capped.iter().map(|r| r.1).sum::<usize>(), total);
        assert!(capped[..MAX_ROLE_LABELS].iter().all(|r| r.0 != OTHER_ROLES));
    }

    #[test]
    fn under_the_cap_every_role_has_its_label_and_ties_go_by_name() {
        let capped = capped_roles(vec![("b", 2), ("a", 2), ("c", 5)], 3);
        assert_eq!(capped, vec![("c", 5), ("a", 2), ("b", 2)]);
        assert_eq!(
            capped_roles(vec![("b", 1), ("a", 1)], 1),
            vec![("a", 1), (OTHER_ROLES, 1)]
        );
    }
}

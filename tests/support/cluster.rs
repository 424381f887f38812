//! Starting nodes for tests: loopback, port 0, fast gossip, and waiting for conditions with a
//! bounded time.

use std::future::Future;
use std::time::{Duration, Instant};

use cluster_helper::{Node, NodeBuilder};

/// Gossip interval used by tests: fast convergence, still realistic.
pub const TEST_GOSSIP: Duration = Duration::from_millis(100);

/// The cluster secret of test nodes (made with `easy-rpc keygen`; for tests only).
pub const TEST_SECRET: &str = "vF4HlyIIS+toQHaPOxEi4JaGbEb1lfdUXZY1mrs+7Zw=";

/// Another secret, for nodes that must not get in.
pub const OTHER_SECRET: &str = "9CX8eCyv9nQoQ/k1mY3QMSJ1tC1eZvFXFGlrCtm+C+k=";

/// [`TEST_SECRET`], parsed.
pub fn test_secret() -> cluster_helper::Secret {
    TEST_SECRET.parse().expect("TEST_SECRET is a valid secret")
}

/// A builder for a test node: cluster `cluster`, name `name`, loopback port 0, secret
/// [`TEST_SECRET`], fast gossip.
pub fn builder(cluster: &str, name: &str) -> NodeBuilder {
    Node::builder()
        .cluster(cluster)
        .name(name)
        .listen("127.0.0.1:0")
        .secret(TEST_SECRET)
        .gossip_interval(TEST_GOSSIP)
        .leave_grace(Duration::from_millis(300))
        .join_timeout(Duration::from_secs(3))
}

/// An easy-rpc node builder for a test: cluster `cluster`, name `name`, loopback port 0,
/// secret [`TEST_SECRET`], fast gossip, and not the process's default node (so that tests
/// running in parallel never call through each other's nodes).
pub fn rpc_builder(cluster: &str, name: &str) -> easy_rpc::NodeBuilder {
    easy_rpc::Node::builder()
        .cluster(cluster)
        .name(name)
        .listen("127.0.0.1:0")
        .secret(TEST_SECRET)
        .gossip_interval(TEST_GOSSIP)
        .default_node(false)
}

/// Starts a node with `roles`, seeded with `seeds` (nodes already running).
pub async fn start(cluster: &str, name: &str, roles: &[&str], seeds: &[&Node]) -> Node {
    builder(cluster, name)
        .roles(roles.iter().copied())
        .seeds(seeds.iter().map(|n| n.gossip_addr().to_string()))
        .start()
        .await
        .unwrap_or_else(|e| panic!("node {name} failed to start: {e}"))
}

/// A cluster name unique to the calling test, so parallel tests never see each other.
pub fn unique_cluster(test: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `cond` every 10 ms until it holds, or panics with `what` after `within`. Returns how
/// long it took.
pub async fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            return start.elapsed();
        }
        if start.elapsed() > within {
            panic!("timed out after {within:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Like [`wait_until`], with an async condition.
pub async fn wait_until_async<F, Fut>(within: Duration, what: &str, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        if start.elapsed() > within {
            panic!("timed out after {within:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The names of the nodes `node` sees with `role`, sorted.
pub fn names_with_role(node: &Node, role: &str) -> Vec<String> {
    node.nodes_with_role(role)
        .iter()
        .map(|m| m.id.name().to_owned())
        .collect()
}

/// Whether every node in `nodes` sees exactly `expected` (names, sorted) with `role`.
pub fn all_see(nodes: &[&Node], role: &str, expected: &[&str]) -> bool {
    nodes.iter().all(|n| names_with_role(n, role) == expected)
}

/// What a handler that panics on purpose puts in its panic message, so that the panic hook
/// [`init_logs`] installs prints it without a backtrace.
pub const ON_PURPOSE: &str = "on purpose";

/// Installs a log subscriber once: `RUST_LOG` decides (default warn), tarpc's own events are
/// off ([`easy_rpc::log::default_filter`]), colours only when standard output (where the test
/// writer prints) is a terminal.
///
/// Also installs a panic hook that prints a panic whose message contains [`ON_PURPOSE`] as one
/// line and leaves every other panic to the default hook. With `RUST_BACKTRACE` set (as in
/// CI), the default hook symbolizes a backtrace on the panicking thread: for a handler, a
/// tokio worker of the runtime every node of the test shares, held for long enough under load
/// that the failure detector at the tests' 100 ms gossip interval flagged the node as down.
pub fn init_logs() {
    use std::io::IsTerminal;
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            match message {
                Some(m) if m.contains(ON_PURPOSE) => {
                    let at = info.location().map(ToString::to_string).unwrap_or_default();
                    eprintln!("a panic on purpose at {at}: {m}");
                }
                _ => default_hook(info),
            }
        }));
        let colours = std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                easy_rpc::log::default_filter(),
            ))
            .with_ansi(colours)
            .with_test_writer()
            .try_init();
    });
}

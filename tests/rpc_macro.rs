//! `#[easy_rpc::service]` end to end through the process's default node: the calls as a user
//! writes them, per-method timeouts, per-call overrides, and spawning calls.

use std::time::{Duration, Instant};

use easy_rpc::{Node, RpcError};
use easy_rpc_tests::cluster::{init_logs, unique_cluster, wait_until};

/// A service with a per-method deadline.
#[easy_rpc::service]
pub trait Clock {
    /// Sleeps `ms` milliseconds; its own deadline is 200 ms unless the call sets one.
    #[easy_rpc(timeout_ms = 200)]
    async fn slow(ms: u64) -> u64;
    /// Answers at once.
    async fn fast() -> u64;
}

struct ClockImpl;

impl Clock for ClockImpl {
    async fn slow(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }
    async fn fast(&self) -> u64 {
        7
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_through_the_default_node() {
    init_logs();
    let c = unique_cluster("macro");
    // The first node started in the process becomes the default node.
    let client = Node::builder()
        .cluster(&c)
        .name("client")
        .listen("127.0.0.1:0")
        .secret(easy_rpc_tests::TEST_SECRET)
        .gossip_interval(Duration::from_millis(100))
        .start()
        .await
        .unwrap();
    let server = Node::builder()
        .cluster(&c)
        .name("server")
        .listen("127.0.0.1:0")
        .secret(easy_rpc_tests::TEST_SECRET)
        .gossip_interval(Duration::from_millis(100))
        .roles(["clock"])
        .serve(ClockImpl.serve())
        .seeds([client.gossip_addr().to_string()])
        .start()
        .await
        .unwrap();
    wait_until(Duration::from_secs(5), "client sees the clock", || {
        client.nodes_with_role("clock").len() == 1
    })
    .await;

    assert_eq!(easy_rpc::any("clock").fast().await.unwrap(), 7);
    let all = easy_rpc::all("clock").fast().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, *server.id());
    assert_eq!(
        easy_rpc::by_key("clock", "k").fast().await.unwrap(),
        7,
        "by_key"
    );

    // The method's own deadline (200 ms) applies...
    let started = Instant::now();
    let e = easy_rpc::any("clock").slow(1_000).await.unwrap_err();
    assert!(matches!(e, RpcError::Timeout { .. }), "{e}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(180) && took < Duration::from_millis(800),
        "{took:?}"
    );
    assert!(
        e.to_string().contains("slow") && e.to_string().contains("server#"),
        "{e}"
    );
    // ...unless the call sets its own.
    let ms = easy_rpc::any("clock")
        .timeout(Duration::from_secs(2))
        .slow(300)
        .await
        .unwrap();
    assert_eq!(ms, 300);

    // Calls are Send + 'static: they can be spawned.
    let handles: Vec<_> = (0..10)
        .map(|_| tokio::spawn(async move { easy_rpc::any("clock").fast().await }))
        .collect();
    for h in handles {
        assert_eq!(h.await.unwrap().unwrap(), 7);
    }
    server.shutdown().await;
    client.shutdown().await;
}

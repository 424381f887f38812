//! `#[easy_rpc::service]` end to end through the process's default node: the calls as a user
//! writes them, per-method timeouts, per-call overrides, and spawning calls.

use std::time::{Duration, Instant};

use easy_rpc::{Node, RpcError};
use easy_rpc_tests::cluster::{init_logs, rpc_builder, unique_cluster, wait_until};

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

/// A second service, to call through the same target handle as [`Clock`].
#[easy_rpc::service]
pub trait Echo {
    /// Returns its argument.
    async fn echo(s: String) -> String;
}

struct EchoImpl;

impl Echo for EchoImpl {
    async fn echo(&self, s: String) -> String {
        s
    }
}

/// A target handle resolves its role's node set once and keeps it: a kept handle serves two
/// services in turn, and follows the role's membership (a node that joins is reached through
/// the handle made before it joined; a node that leaves is no longer called).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_handle_serves_two_services_and_follows_membership() {
    init_logs();
    let c = unique_cluster("handle");
    let start = |name: &'static str, seeds: Vec<String>, serve: bool| {
        let c = c.clone();
        async move {
            let mut b = rpc_builder(&c, name).seeds(seeds);
            if serve {
                b = b
                    .roles(["clock"])
                    .serve(ClockImpl.serve())
                    .serve(EchoImpl.serve());
            }
            b.start().await.unwrap()
        }
    };
    let client = start("client", vec![], false).await;
    let seed = vec![client.gossip_addr().to_string()];
    let a = start("a", seed.clone(), true).await;
    wait_until(Duration::from_secs(5), "client sees a", || {
        client.nodes_with_role("clock").len() == 1
    })
    .await;

    let any = client.any("clock");
    let all = client.all("clock");
    for i in 0..20 {
        assert_eq!(any.fast().await.unwrap(), 7);
        assert_eq!(any.echo(format!("m{i}")).await.unwrap(), format!("m{i}"));
        let nodes: Vec<_> = all.echo("x".into()).await.unwrap();
        assert_eq!(nodes.len(), 1);
    }

    let b = start("b", seed, true).await;
    wait_until(Duration::from_secs(5), "client sees b", || {
        client.nodes_with_role("clock").len() == 2
    })
    .await;
    for service in ["clock", "echo"] {
        let answered: Vec<_> = if service == "clock" {
            all.fast()
                .await
                .unwrap()
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        } else {
            all.echo("y".into())
                .await
                .unwrap()
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        assert_eq!(answered, vec![a.id().clone(), b.id().clone()], "{service}");
    }

    a.shutdown().await;
    wait_until(Duration::from_secs(10), "client sees a leave", || {
        client.nodes_with_role("clock").len() == 1
    })
    .await;
    for _ in 0..20 {
        assert_eq!(any.fast().await.unwrap(), 7);
        assert_eq!(any.echo("z".into()).await.unwrap(), "z");
    }
    let answered: Vec<_> = all
        .fast()
        .await
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(answered, vec![b.id().clone()]);
    b.shutdown().await;
    client.shutdown().await;
}

/// A service whose answers can be made as large as wanted.
#[easy_rpc::service]
pub trait Blob {
    /// `n` bytes.
    async fn blob(n: u32) -> Vec<u8>;
}

struct BlobImpl;

impl Blob for BlobImpl {
    async fn blob(&self, n: u32) -> Vec<u8> {
        vec![7; n as usize]
    }
}

/// An answer over the server's frame limit fails that call only, saying why: the connection
/// and the calls after it on it go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_over_the_frame_limit_fails_that_call_only() {
    init_logs();
    let c = unique_cluster("bigreply");
    let limit = 64 * 1024;
    let node = |name: &'static str| rpc_builder(&c, name);
    let server = node("server")
        .roles(["blob"])
        .serve(BlobImpl.serve())
        .server_limits(easy_rpc::ServerLimits::default().max_frame(limit))
        .start()
        .await
        .unwrap();
    let client = node("client")
        .seeds([server.gossip_addr().to_string()])
        .start()
        .await
        .unwrap();
    wait_until(Duration::from_secs(5), "client sees the server", || {
        client.nodes_with_role("blob").len() == 1
    })
    .await;
    let blob = client.any("blob");
    assert_eq!(blob.blob(1000).await.unwrap().len(), 1000);
    for _ in 0..3 {
        let e = blob.blob(limit as u32 + 1).await.unwrap_err();
        match &e {
            RpcError::Server { reason, .. } => {
                assert!(reason.contains("over the frame limit"), "{reason}")
            }
            other => panic!("expected a server error, got {other}"),
        }
        assert!(!e.never_reached_server(), "it ran: {e}");
        assert_eq!(blob.blob(10).await.unwrap(), vec![7; 10]);
    }
    let stats = server.server_stats();
    assert_eq!(stats.accepted, 1, "one connection all along: {stats:?}");
    assert_eq!(stats.open, 1, "{stats:?}");
    client.shutdown().await;
    server.shutdown().await;
}

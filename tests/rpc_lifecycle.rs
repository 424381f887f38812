//! A node's life as callers see it: calls made when no node runs, or through a node that has
//! shut down, fail with `RpcError::NotRunning` (never a panic); timeouts from `Duration::MAX`
//! down to the refused zero; a node without an RPC listener that only calls; start-up and call
//! errors in one `easy_rpc::Error`.

use std::time::Duration;

use easy_rpc::cluster_helper::RpcListen;
use easy_rpc::{ClientOptions, Error, Node, NodeBuilder, RpcError};
use easy_rpc_tests::cluster::{init_logs, unique_cluster, wait_until};

/// A service that says who answered.
#[easy_rpc::service]
pub trait Echo {
    /// The answering node's name and `n`.
    async fn echo(n: u64) -> (String, u64);
    /// The same, with a method timeout as long as it gets.
    #[easy_rpc(timeout_ms = 18446744073709551615)]
    async fn patient(n: u64) -> (String, u64);
}

struct EchoImpl(String);

impl Echo for EchoImpl {
    async fn echo(&self, n: u64) -> (String, u64) {
        (self.0.clone(), n)
    }
    async fn patient(&self, n: u64) -> (String, u64) {
        (self.0.clone(), n)
    }
}

fn builder(cluster: &str, name: &str) -> NodeBuilder {
    Node::builder()
        .cluster(cluster)
        .name(name)
        .listen("127.0.0.1:0")
        .secret(easy_rpc_tests::TEST_SECRET)
        .gossip_interval(Duration::from_millis(100))
        .leave_grace(Duration::from_millis(200))
}

async fn server(cluster: &str, name: &str, default: bool) -> Node {
    builder(cluster, name)
        .roles(["echo"])
        .serve(EchoImpl(name.to_owned()).serve())
        .default_node(default)
        .start()
        .await
        .unwrap()
}

/// The only test of this binary that touches the process's default node, so that it alone
/// decides whether one runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_running_node_fail_with_not_running() {
    init_logs();
    // No node has started in this process yet: every kind of target fails, none panics.
    let e = easy_rpc::any("echo").echo(1).await.unwrap_err();
    assert!(matches!(e, RpcError::NotRunning { node: None }), "{e}");
    assert!(
        e.to_string()
            .starts_with("no easy-rpc node is running in this process"),
        "{e}"
    );
    assert!(e.never_reached_server());
    let e = easy_rpc::all("echo").echo(1).await.unwrap_err();
    assert!(matches!(e, RpcError::NotRunning { node: None }), "{e}");
    let by_key = easy_rpc::by_key("echo", "k");
    assert!(matches!(
        by_key.echo(1).await,
        Err(RpcError::NotRunning { node: None })
    ));
    assert_eq!(by_key.owner::<EchoService>(), None);

    // A node starts and becomes the default: the same calls work.
    let c = unique_cluster("lifecycle-default");
    let node = server(&c, "only", true).await;
    wait_until(Duration::from_secs(5), "the node sees itself", || {
        node.nodes_with_role("echo").len() == 1
    })
    .await;
    assert_eq!(
        easy_rpc::any("echo").echo(2).await.unwrap(),
        ("only".into(), 2)
    );
    let all = easy_rpc::all("echo").echo(3).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(easy_rpc::by_key("echo", "k").echo(4).await.unwrap().1, 4);

    // It shuts down: targets made before say which node stopped, new ones that none runs.
    let before = easy_rpc::any("echo");
    let handle = node.clone();
    node.shutdown().await;
    let e = before.echo(5).await.unwrap_err();
    match &e {
        RpcError::NotRunning { node: Some(id) } => assert_eq!(id, handle.id()),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        e.to_string(),
        format!("node {} has shut down: it makes no more calls", handle.id())
    );
    assert!(matches!(
        easy_rpc::any("echo").echo(6).await,
        Err(RpcError::NotRunning { node: None })
    ));
    assert!(matches!(
        easy_rpc::all("echo").echo(6).await,
        Err(RpcError::NotRunning { node: None })
    ));
    // Through the handle of the node that has shut down: the same, for every target.
    for r in [
        handle.any("echo").echo(7).await,
        handle.by_key("echo", 7u64).echo(7).await,
    ] {
        assert!(
            matches!(r, Err(RpcError::NotRunning { node: Some(_) })),
            "{r:?}"
        );
    }
    assert!(matches!(
        handle.all("echo").echo(7).await,
        Err(RpcError::NotRunning { node: Some(_) })
    ));
    // And it can no longer serve.
    let e = handle
        .serve(EchoImpl("late".into()).serve())
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Cluster(easy_rpc::cluster_helper::Error::ShutDown)),
        "{e}"
    );

    // A default node whose handles are all dropped without shutdown() stops (as a crash
    // would): targets made from it, and the default-node functions, fail with NotRunning, and
    // its peers see it go, instead of a node that keeps gossiping services nobody serves.
    let dropped = server(&c, "dropped", true).await;
    let peer = builder(&c, "peer")
        .seeds([dropped.gossip_addr().to_string()])
        .default_node(false)
        .start()
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), "the peer sees the node", || {
        peer.nodes_with_role("echo").len() == 1
    })
    .await;
    assert_eq!(
        easy_rpc::any("echo").echo(8).await.unwrap(),
        ("dropped".into(), 8)
    );
    let saved = easy_rpc::any("echo");
    let dropped_id = dropped.id().clone();
    drop(dropped);
    assert!(
        matches!(saved.echo(9).await, Err(RpcError::NotRunning { node: Some(ref id) }) if *id == dropped_id)
    );
    assert!(matches!(
        easy_rpc::any("echo").echo(9).await,
        Err(RpcError::NotRunning { node: None })
    ));
    wait_until(
        Duration::from_secs(10),
        "the peer drops the node whose handles were dropped",
        || peer.members().iter().all(|m| m.id != dropped_id),
    )
    .await;
    peer.shutdown().await;
}

/// Another service under the wire name of `Echo` (a mistake a node refuses, and a caller must
/// survive).
#[easy_rpc::service(name = "Echo")]
pub trait Impostor {
    /// Not `Echo::echo`.
    async fn shout(text: String) -> String;
}

struct ImpostorImpl;

impl Impostor for ImpostorImpl {
    async fn shout(&self, text: String) -> String {
        text.to_uppercase()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_implementation_per_service_name() {
    init_logs();
    let c = unique_cluster("lifecycle-names");
    // The same name twice to the builder: refused before anything starts.
    let e = builder(&c, "twice")
        .serve(EchoImpl("a".into()).serve())
        .serve(ImpostorImpl.serve())
        .default_node(false)
        .start()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::DuplicateService { name: "Echo" }), "{e}");
    let e = builder(&c, "twice")
        .serve(EchoImpl("a".into()).serve())
        .serve(EchoImpl("b".into()).serve())
        .default_node(false)
        .start()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::DuplicateService { .. }), "{e}");

    // At runtime: another type under a served name is refused; the same type replaces.
    let node = server(&c, "first", false).await;
    let e = node.serve(ImpostorImpl.serve()).await.unwrap_err();
    assert!(matches!(e, Error::DuplicateService { name: "Echo" }), "{e}");
    node.serve(EchoImpl("second".into()).serve()).await.unwrap();
    wait_until(Duration::from_secs(5), "the node sees itself", || {
        node.nodes_with_role("echo").len() == 1
    })
    .await;
    assert_eq!(
        node.any("echo").echo(1).await.unwrap(),
        ("second".into(), 1)
    );

    // A caller that uses both types against one role gets answers or errors, never a panic
    // (its pool and role sets are per service type), and the right type keeps working.
    let impostor = ImpostorClient::shout(&node.any("echo"), "hi".into()).await;
    eprintln!("the impostor's call: {impostor:?}");
    assert_eq!(
        node.any("echo").echo(2).await.unwrap(),
        ("second".into(), 2)
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_max_saturates_and_a_zero_timeout_is_refused_where_it_is_set() {
    init_logs();
    let c = unique_cluster("lifecycle-timeouts");
    let srv = server(&c, "srv", false).await;
    // Node-wide timeouts as long as they get.
    let patient = ClientOptions::default()
        .timeout(Duration::MAX)
        .connect_timeout(Duration::MAX)
        .backoff(Duration::MAX)
        .down_for(Duration::MAX);
    let caller = builder(&c, "caller")
        .seeds([srv.gossip_addr().to_string()])
        .client_options(patient)
        .default_node(false)
        .start()
        .await
        .unwrap();
    wait_until(Duration::from_secs(5), "caller sees the server", || {
        caller.nodes_with_role("echo").len() == 1
    })
    .await;
    // Per node (the options), per method (timeout_ms = u64::MAX), per call (Duration::MAX).
    assert_eq!(caller.any("echo").echo(1).await.unwrap().1, 1);
    assert_eq!(caller.any("echo").patient(2).await.unwrap().1, 2);
    let max = Duration::MAX;
    assert_eq!(caller.any("echo").timeout(max).echo(3).await.unwrap().1, 3);
    assert_eq!(
        caller
            .by_key("echo", 1u8)
            .timeout(max)
            .echo(4)
            .await
            .unwrap()
            .1,
        4
    );
    let all = caller.all("echo").timeout(max).patient(5).await.unwrap();
    assert_eq!(all[0].1.as_ref().unwrap().1, 5);

    // A zero timeout on a target panics at once, saying why.
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let any = caller.any("echo");
    let panicked = catch_unwind(AssertUnwindSafe(|| any.timeout(Duration::ZERO))).unwrap_err();
    let message = panicked.downcast_ref::<&str>().copied().unwrap_or_default();
    assert!(message.contains("timeout must be positive"), "{message:?}");
    let all = caller.all("echo");
    assert!(catch_unwind(AssertUnwindSafe(|| all.timeout(Duration::ZERO))).is_err());
    let by_key = caller.by_key("echo", "k");
    assert!(catch_unwind(AssertUnwindSafe(|| by_key.timeout(Duration::ZERO))).is_err());

    // Zero node-wide timeouts: start fails, naming the option.
    for (options, name) in [
        (
            ClientOptions::default().timeout(Duration::ZERO),
            "ClientOptions::timeout",
        ),
        (
            ClientOptions::default().connect_timeout(Duration::ZERO),
            "ClientOptions::connect_timeout",
        ),
    ] {
        let e = builder(&c, "never")
            .client_options(options)
            .default_node(false)
            .start()
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::InvalidConfig { setting, .. } if setting == name),
            "{e}"
        );
        assert!(e.to_string().contains(name), "{e}");
    }
    caller.shutdown().await;
    srv.shutdown().await;
}

/// An easy-rpc node listens for RPC on its gossip port number unless told otherwise (a
/// cluster-helper node alone binds no TCP port: see cluster-helper's sockets tests), also when
/// it starts without services or from a base `Config` left at its defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_easy_rpc_node_serves_on_its_gossip_port_number_by_default() {
    init_logs();
    let c = unique_cluster("lifecycle-sameport");
    let srv = server(&c, "srv", false).await;
    assert_eq!(
        srv.rpc_addr().map(|a| a.port()),
        Some(srv.gossip_addr().port())
    );
    // Without services, and from a default base Config: a listener all the same, so that it
    // can serve later.
    let later = builder(&c, "later")
        .config(easy_rpc::cluster_helper::Config::default())
        .cluster(&c)
        .name("later")
        .listen("127.0.0.1:0")
        .secret(easy_rpc_tests::TEST_SECRET)
        .roles(["echo"])
        .seeds([srv.gossip_addr().to_string()])
        .default_node(false)
        .start()
        .await
        .unwrap();
    assert_eq!(
        later.rpc_addr().map(|a| a.port()),
        Some(later.gossip_addr().port())
    );
    later.serve(EchoImpl("later".into()).serve()).await.unwrap();
    wait_until(Duration::from_secs(5), "srv sees later serving", || {
        srv.nodes_with_role("echo").len() == 2
    })
    .await;
    assert_eq!(srv.all("echo").echo(1).await.unwrap().len(), 2);
    let mut reached_later = false;
    for i in 0..20 {
        let (name, n) = srv
            .any("echo")
            .strategy(easy_rpc::Strategy::RoundRobin)
            .echo(i)
            .await
            .unwrap();
        assert_eq!(n, i);
        reached_later |= name == "later";
    }
    assert!(reached_later, "no call reached the node that served later");
    later.shutdown().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_an_rpc_listener_calls_and_is_never_picked() {
    init_logs();
    let c = unique_cluster("lifecycle-callonly");
    let srv = server(&c, "srv", false).await;
    // It has the role too, but no listener: it must never be picked to serve it.
    let caller = builder(&c, "caller")
        .roles(["echo"])
        .rpc_listen(RpcListen::Disabled)
        .seeds([srv.gossip_addr().to_string()])
        .default_node(false)
        .start()
        .await
        .unwrap();
    assert_eq!(caller.rpc_addr(), None);
    assert!(caller.services().is_empty());
    wait_until(Duration::from_secs(5), "both see both", || {
        caller.nodes_with_role("echo").len() == 2 && srv.nodes_with_role("echo").len() == 2
    })
    .await;
    for strategy in [
        easy_rpc::Strategy::P2c,
        easy_rpc::Strategy::RoundRobin,
        easy_rpc::Strategy::Random,
        easy_rpc::Strategy::LocalFirst,
    ] {
        for i in 0..20 {
            // From the call-only node (LocalFirst would pick itself if it served)...
            let (by, _) = caller.any("echo").strategy(strategy).echo(i).await.unwrap();
            assert_eq!(by, "srv", "{strategy:?}");
            // ...and from the server: the call-only node is not a candidate.
            let (by, _) = srv.any("echo").strategy(strategy).echo(i).await.unwrap();
            assert_eq!(by, "srv", "{strategy:?}");
        }
    }
    let all = srv.all("echo").echo(1).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0, *srv.id());

    // Serving on it is refused, naming the setting.
    let e = caller
        .serve(EchoImpl("caller".into()).serve())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NoRpcListener { service: "Echo" }), "{e}");
    assert!(e.to_string().contains("CLUSTER_RPC_LISTEN"), "{e}");
    assert!(caller.services().is_empty());

    // Starting one with services fails the same way, from code or from the environment.
    let e = builder(&c, "bad-1")
        .rpc_listen(RpcListen::Disabled)
        .serve(EchoImpl("bad-1".into()).serve())
        .default_node(false)
        .start()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NoRpcListener { .. }), "{e}");
    let e = builder(&c, "bad-2")
        .from_vars([("CLUSTER_RPC_LISTEN", "off")])
        .unwrap()
        .serve(EchoImpl("bad-2".into()).serve())
        .default_node(false)
        .start()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("CLUSTER_RPC_LISTEN"), "{e}");
    // Neither joined the cluster for good.
    wait_until(Duration::from_secs(5), "the refused nodes are gone", || {
        srv.members()
            .iter()
            .all(|m| !m.id.name().starts_with("bad-"))
    })
    .await;
    caller.shutdown().await;
    srv.shutdown().await;
}

/// What the `easy_rpc::Error` docs promise: one error type for start-up and calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_and_call_errors_compose_in_one_result() {
    init_logs();
    async fn run(cluster: &str) -> Result<u64, Error> {
        let node = builder(cluster, "composer")
            .roles(["echo"])
            .serve(EchoImpl("composer".into()).serve())
            .default_node(false)
            .start()
            .await?;
        node.ready().await;
        let (_, n) = node.any("echo").echo(9).await?;
        let missing = node.any("nobody").echo(1).await;
        node.shutdown().await;
        missing?;
        Ok(n)
    }
    let c = unique_cluster("lifecycle-compose");
    match run(&c).await {
        Err(Error::Call(RpcError::NoNodeForRole { role, .. })) => assert_eq!(role, "nobody"),
        other => panic!("{other:?}"),
    }
    match run("not a valid cluster name!").await {
        Err(Error::Cluster(e)) => assert!(e.to_string().contains("cluster"), "{e}"),
        other => panic!("{other:?}"),
    }
}

/// A node whose RPC port takes connections but never answers the handshake (its advertised RPC
/// address is a socket nobody accepts on): the calls that queued behind the one connection
/// attempt to it do not try again one after another when it fails (each would spend a whole
/// connect timeout); they go to the healthy node at once, so every call succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_waiting_for_a_failed_connection_attempt_reroute_at_once() {
    init_logs();
    let c = unique_cluster("lifecycle-silent");
    // Connections to it complete in the kernel's backlog and then hear nothing.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let hole = builder(&c, "hole")
        .roles(["echo"])
        .serve(EchoImpl("hole".into()).serve())
        .from_vars([("CLUSTER_RPC_ADVERTISE", silent_addr.as_str())])
        .unwrap()
        .default_node(false)
        .start()
        .await
        .unwrap();
    let good = builder(&c, "good")
        .roles(["echo"])
        .serve(EchoImpl("good".into()).serve())
        .seeds([hole.gossip_addr().to_string()])
        .default_node(false)
        .start()
        .await
        .unwrap();
    let caller = builder(&c, "caller")
        .seeds([hole.gossip_addr().to_string()])
        .client_options(
            ClientOptions::default()
                .connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(4)),
        )
        .default_node(false)
        .start()
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(10),
        "the caller sees both nodes",
        || caller.nodes_with_role("echo").len() == 2,
    )
    .await;
    // Before the fix, the 4th call queued on the silent node's connection attempt ran out of
    // time: 1 s per failed attempt, one after another, within a 4 s deadline.
    let calls: Vec<_> = (0..40u64)
        .map(|i| tokio::spawn(caller.any("echo").echo(i)))
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let answer = call.await.unwrap();
        assert_eq!(answer.unwrap(), ("good".into(), i as u64), "call {i}");
    }
    drop(silent);
    for node in [caller, good, hole] {
        node.shutdown().await;
    }
}

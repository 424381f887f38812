//! What real node processes log, read from their piped output: calls that time out and a
//! killed node give one line per method naming the node, the service and the method, not a
//! line per call from tarpc; no colour codes when the output is not a terminal; a node that
//! cannot join says what to check, once.

use std::time::{Duration, Instant};

use easy_rpc_tests::OTHER_SECRET;
use easy_rpc_tests::cluster::unique_cluster;
use easy_rpc_tests::process::NodeProcess;

const RPC_NODE: &str = env!("CARGO_BIN_EXE_rpc_node");
const CALL_NODE: &str = env!("CARGO_BIN_EXE_call_node");

/// Log lines at `level` (` WARN `, `ERROR`) that mention `what`.
fn lines_with(out: &[String], level: &str, what: &str) -> Vec<String> {
    out.iter()
        .filter(|l| l.contains(level) && l.contains(what))
        .cloned()
        .collect()
}

/// No tarpc event and no ANSI escape in `out`.
fn quiet_and_plain(who: &str, out: &[String]) {
    let tarpc: Vec<&String> = out.iter().filter(|l| l.contains("tarpc")).collect();
    assert!(tarpc.is_empty(), "{who} logged tarpc events:\n{tarpc:#?}");
    let coloured: Vec<&String> = out.iter().filter(|l| l.contains('\u{1b}')).collect();
    assert!(
        coloured.is_empty(),
        "{who} wrote colour codes to a pipe:\n{coloured:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_a_killed_node_give_one_line_per_method_naming_it() {
    let c = unique_cluster("logs");
    // At info level: tarpc's events would show at warn already.
    let server = NodeProcess::spawn(
        RPC_NODE,
        "worker-1",
        &[
            ("CLUSTER_NAME", c.clone()),
            ("CLUSTER_ROLES", "work".into()),
            ("RUST_LOG", "info".into()),
        ],
    );
    let seed = server.gossip_addr().await;
    let server_id = server.node_id().await;
    let mut caller = NodeProcess::spawn(
        CALL_NODE,
        "caller",
        &[
            ("CLUSTER_NAME", c.clone()),
            ("CLUSTER_SEEDS", seed),
            ("RUST_LOG", "info".into()),
        ],
    );
    caller.gossip_addr().await;
    let caller_id = caller.node_id().await;
    caller
        .wait_for(Duration::from_secs(10), "SEEN ", |l| l == "SEEN 1")
        .await;

    // Three calls that time out (the server stops them at their deadline too).
    caller.command("read 3 3000 200").await;
    caller
        .wait_for(Duration::from_secs(10), "DONE read", |_| true)
        .await;
    assert_eq!(
        caller.last("DONE read").unwrap(),
        "DONE read ok=0 failed=3 Timeout Timeout Timeout"
    );

    // Twenty calls running on the server when it is killed.
    caller.command("exec 20 10000 30000").await;
    let started = Instant::now();
    while server
        .output()
        .iter()
        .filter(|l| l.starts_with("EXEC "))
        .count()
        < 20
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the server did not start 20 calls:\n{}",
            server.output().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.signal("KILL");
    caller
        .wait_for(Duration::from_secs(15), "DONE exec", |_| true)
        .await;
    let done = caller.last("DONE exec").unwrap();
    assert!(done.starts_with("DONE exec ok=0 failed=20 "), "{done}");
    // Let the caller's failure detector see the server gone, and the logs flush.
    caller
        .wait_for(Duration::from_secs(15), "SEEN ", |l| l == "SEEN 0")
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let out = caller.output();
    quiet_and_plain("the caller", &out);
    quiet_and_plain("the server", &server.output());
    // One line per method for all its failures, naming this node, the service, the method and
    // the node the call was on.
    for (method, outcome) in [("read", "timeout"), ("exec", "node_down")] {
        let lines = lines_with(&out, " WARN ", &format!("call Work.{method} failed"));
        assert_eq!(lines.len(), 1, "{method}:\n{}", out.join("\n"));
        let line = &lines[0];
        for field in [
            format!("node={caller_id}"),
            "service=\"Work\"".to_owned(),
            format!("method=\"{method}\""),
            format!("peer=\"{server_id}\""),
            format!("outcome=\"{outcome}\""),
        ] {
            assert!(line.contains(&field), "{field} missing from: {line}");
        }
    }
    // Only warnings of ours: the calls' failures above.
    let warnings = lines_with(&out, " WARN ", "");
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(
        lines_with(&out, "ERROR", "").is_empty(),
        "{}",
        out.join("\n")
    );
    // Dropping the processes kills them.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_join_says_what_to_check_once() {
    let c = unique_cluster("logs-join");
    let member = NodeProcess::spawn(RPC_NODE, "member", &[("CLUSTER_NAME", c.clone())]);
    let seed = member.gossip_addr().await;
    // Another secret: the member ignores it without a word.
    let stranger = NodeProcess::spawn(
        RPC_NODE,
        "stranger",
        &[
            ("CLUSTER_NAME", c.clone()),
            ("CLUSTER_SECRET", OTHER_SECRET.into()),
            ("CLUSTER_SEEDS", seed.clone()),
            ("CLUSTER_JOIN_TIMEOUT", "1s".into()),
        ],
    );
    stranger.gossip_addr().await;
    let started = Instant::now();
    let warning = loop {
        let out = stranger.output();
        let lines = lines_with(&out, " WARN ", "CLUSTER_SECRET");
        if !lines.is_empty() {
            break lines;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no warning:\n{}",
            out.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // A while later, still once (the next is a minute away).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = stranger.output();
    let lines = lines_with(&out, " WARN ", "CLUSTER_SECRET");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = &warning[0];
    for what in ["CLUSTER_NAME", "no seed answered", seed.as_str(), "UDP"] {
        assert!(line.contains(what), "{what} missing from: {line}");
    }
    quiet_and_plain("the stranger", &out);
}

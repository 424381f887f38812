//! `easy-rpc members`, `roles`, `watch` and `health` as processes, against the management
//! endpoints of real nodes on loopback.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use easy_rpc::Node;
use easy_rpc::cluster_helper::{NodeStatus, Secret};
use serde_json::Value;

fn unique(test: &str) -> String {
    format!("cli-{test}-{}", std::process::id())
}

async fn start(
    cluster: &str,
    secret: &Secret,
    name: &str,
    roles: &[&str],
    seed: Option<&Node>,
) -> Node {
    let mut b = Node::builder()
        .cluster(cluster)
        .name(name)
        .listen("127.0.0.1:0")
        .secret_key(secret.clone())
        .gossip_interval(Duration::from_millis(100))
        .leave_grace(Duration::from_millis(200))
        .roles(roles.iter().copied())
        .http_listen("127.0.0.1:0".parse().unwrap())
        .default_node(false);
    if let Some(seed) = seed {
        b = b.seeds([seed.gossip_addr().to_string()]);
    }
    b.start().await.unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Runs `easy-rpc args` (with `env`) off the async threads.
async fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_easy-rpc"))
            .args(&args)
            .env_remove("EASY_RPC_HTTP")
            .envs(env)
            .output()
            .expect("run easy-rpc")
    })
    .await
    .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

async fn three_nodes(test: &str) -> [Node; 3] {
    let cluster = unique(test);
    let secret = Secret::generate();
    let a = start(&cluster, &secret, "cli-a", &["billing", "audit"], None).await;
    let b = start(&cluster, &secret, "cli-b", &["billing"], Some(&a)).await;
    let c = start(&cluster, &secret, "cli-c", &["gateway"], Some(&a)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while ![&a, &b, &c].iter().all(|n| {
        let m = n.members();
        m.len() == 3 && m.iter().all(|m| m.status == NodeStatus::Serving)
    }) {
        assert!(Instant::now() < deadline, "the nodes never saw each other");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    [a, b, c]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_and_roles_as_tables_and_json() {
    let [a, b, c] = three_nodes("members").await;
    let http = a.http_addr().unwrap().to_string();

    let out = cli(&["members", "--http", &http], &[]).await;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("STATUS") && lines[0].contains("ROLES")
    );
    for node in [&a, &b, &c] {
        let line = lines
            .iter()
            .find(|l| {
                l.split_whitespace().next().unwrap().trim_end_matches('*') == node.id().name()
            })
            .unwrap_or_else(|| panic!("{} missing:\n{text}", node.id()));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1], node.id().incarnation().to_string());
        assert_eq!(cols[2], "serving");
        let roles: Vec<String> = node.roles().iter().map(|r| r.to_string()).collect();
        assert_eq!(cols[3], roles.join(","));
        assert_eq!(cols[5], node.gossip_addr().to_string());
        assert_eq!(cols[0].ends_with('*'), node.id() == a.id(), "{line}");
    }

    // --json: the members as the registry has them, and EASY_RPC_HTTP instead of --http.
    let out = cli(&["members", "--json"], &[("EASY_RPC_HTTP", &http)]).await;
    assert!(out.status.success(), "{out:?}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ids: Vec<String> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut want: Vec<String> = a.members().iter().map(|m| m.id.to_string()).collect();
    want.sort();
    assert_eq!(ids, want);

    let out = cli(&["roles", "--http", &http], &[]).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        "ROLE     COUNT  NODES\naudit    1      cli-a\nbilling  2      cli-a,cli-b\ngateway  1      cli-c\n"
    );
    let out = cli(&["roles", "--http", &http, "--json"], &[]).await;
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["billing"].as_array().unwrap().len(), 2);
    assert_eq!(json["gateway"][0], c.id().to_string().as_str());

    for n in [c, b, a] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_exit_codes() {
    let cluster = unique("health");
    let secret = Secret::generate();
    let a = start(&cluster, &secret, "cli-h", &["billing"], None).await;
    a.ready().await;
    let http = a.http_addr().unwrap().to_string();
    let out = cli(&["health", "--http", &http], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("live      yes") && text.contains("ready     yes"),
        "{text}"
    );
    let out = cli(&["health", "--json"], &[("EASY_RPC_HTTP", &http)]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (json["live"].clone(), json["ready"].clone()),
        (Value::Bool(true), Value::Bool(true))
    );

    // A node still joining (its only seed never answers): live, not ready, exit 1.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let joining = Node::builder()
        .cluster(&cluster)
        .name("cli-j")
        .listen("127.0.0.1:0")
        .secret_key(secret.clone())
        .seeds([silent.local_addr().unwrap().to_string()])
        .join_timeout(Duration::from_secs(5))
        .http_listen("127.0.0.1:0".parse().unwrap())
        .default_node(false)
        .start()
        .await
        .unwrap();
    let out = cli(
        &[
            "health",
            "--http",
            &joining.http_addr().unwrap().to_string(),
        ],
        &[],
    )
    .await;
    assert!(!joining.is_ready(), "the test needs a node still joining");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("live      yes") && text.contains("ready     no: joining"),
        "{text}"
    );

    // Nothing listening: exit 1, saying so.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let out = cli(&["health", "--http", &closed], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout(&out).contains("live      no"), "{out:?}");
    let out = cli(&["members", "--http", &closed], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&closed),
        "{out:?}"
    );
    // No address at all: a usage error.
    let out = cli(&["health"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("EASY_RPC_HTTP"));

    joining.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_each_change() {
    let [a, b, c] = three_nodes("watch").await;
    let http = a.http_addr().unwrap().to_string();
    let run = |json: bool| {
        let http = http.clone();
        tokio::spawn(async move {
            let mut args = vec![
                "watch",
                "--http",
                &http,
                "--for",
                "4s",
                "--interval",
                "100ms",
            ];
            if json {
                args.push("--json");
            }
            cli(&args, &[]).await
        })
    };
    let (text, json) = (run(false), run(true));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    b.add_role("audit").await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    c.shutdown().await;
    let (text, json) = (text.await.unwrap(), json.await.unwrap());
    assert!(text.status.success(), "{text:?}");
    let text = stdout(&text);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains("watching") && lines[0].contains("3 members"),
        "{text}"
    );
    let has = |kind: &str, id: &str, rest: &str| {
        lines.iter().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(1) == Some(&kind) && cols.get(2) == Some(&id) && l.contains(rest)
        })
    };
    for n in [&a, &b, &c] {
        assert!(has("member", &n.id().to_string(), "serving"), "{text}");
    }
    assert!(has("roles", &b.id().to_string(), "+audit"), "{text}");
    assert!(has("down", &c.id().to_string(), "gone"), "{text}");
    assert!(
        lines.iter().position(|l| l.contains(" roles "))
            < lines.iter().position(|l| l.contains(" down ")),
        "in order:\n{text}"
    );

    assert!(json.status.success(), "{json:?}");
    let events: Vec<Value> = stdout(&json)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["id"].as_str().unwrap()))
        .collect();
    let b_id = b.id().to_string();
    let c_id = c.id().to_string();
    assert!(kinds.contains(&("roles", b_id.as_str())), "{kinds:?}");
    assert!(kinds.contains(&("down", c_id.as_str())), "{kinds:?}");
    let roles = events.iter().find(|e| e["event"] == "roles").unwrap();
    assert_eq!(roles["added"], serde_json::json!(["audit"]));
    a.shutdown().await;
    b.shutdown().await;
}

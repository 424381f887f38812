//! Runs the examples as a user would, so that every example is exercised by `cargo test`.
//! `cargo test` builds the examples next to the test binaries (`target/<profile>/examples`).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

fn example(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test exe");
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "example {name} not built at {path:?}: run through `cargo test`"
    );
    path
}

/// A new cluster secret, as `easy-rpc keygen` prints it.
fn secret() -> String {
    cluster_helper::Secret::generate().to_base64()
}

fn run(name: &str, env: &[(&str, &str)], within: Duration) -> Output {
    let mut child = Command::new(example(name))
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn example");
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > within {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{name} did not finish within {within:?}:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn role_table_prints_the_table_and_leaves() {
    let out = run(
        "role_table",
        &[
            ("CLUSTER_NAME", "example-test"),
            ("CLUSTER_ROLES", "billing,audit"),
            ("CLUSTER_LISTEN", "127.0.0.1:0"),
            ("CLUSTER_SECRET", &secret()),
            ("ROLE_TABLE_EXIT_AFTER_SECS", "1.5"),
        ],
        Duration::from_secs(30),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("role table"), "{stdout}");
    assert!(
        stdout.contains("billing") && stdout.contains("audit"),
        "{stdout}"
    );
    assert!(stdout.contains("serving"), "{stdout}");
    assert!(stdout.trim_end().ends_with("leaving"), "{stdout}");
}

#[test]
fn role_table_rejects_a_bad_environment() {
    let out = run(
        "role_table",
        &[("CLUSTER_ROLES", "billing,not a role")],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CLUSTER_ROLES"), "{stderr}");
}

#[test]
fn billing_server_without_a_secret_says_how_to_make_one() {
    let out = run(
        "billing_server",
        &[("CLUSTER_LISTEN", "127.0.0.1:0"), ("CLUSTER_SECRET", "")],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("CLUSTER_SECRET") && stderr.contains("easy-rpc keygen"),
        "{stderr}"
    );
}

#[test]
fn demo_runs_the_local_cluster_and_exits_zero() {
    let out = run("demo", &[], Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "ok   roles synced",
        "ok   any: charges",
        "ok   any: typed error",
        "ok   all: one answer per audit node",
        "ok   by_key: same user, same node",
        "ok   calls routed around the dead node",
        "ok   by_key: only the dead node's carts moved",
        "ok   crash detected by gossip",
        "ok   graceful leave seen",
        "demo ok",
    ] {
        assert!(stdout.contains(step), "missing {step:?}:\n{stdout}");
    }
}

#[test]
fn billing_server_and_client_in_two_processes() {
    use std::io::BufRead;
    let secret = secret();
    let mut server = Command::new(example("billing_server"))
        .envs([
            ("CLUSTER_LISTEN", "127.0.0.1:0"),
            ("CLUSTER_NAME", "billing-example-test"),
            ("CLUSTER_SECRET", secret.as_str()),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn server");
    let mut lines = std::io::BufReader::new(server.stdout.take().unwrap()).lines();
    let first = lines.next().expect("server line").expect("utf-8");
    let gossip = first
        .split_whitespace()
        .skip_while(|w| *w != "gossip")
        .nth(1)
        .expect("gossip address")
        .to_owned();
    let out = run(
        "billing_client",
        &[
            ("CLUSTER_SEEDS", gossip.as_str()),
            ("CLUSTER_NAME", "billing-example-test"),
            ("CLUSTER_SECRET", secret.as_str()),
        ],
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let status = server.wait().expect("server exit");
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("charged acct-1 500 cents on billing-server"),
        "{stdout}"
    );
    assert!(stdout.contains("acct-1 balance 800"), "{stdout}");
    assert!(stdout.contains("over the limit of 10000 cents"), "{stdout}");
    assert!(status.success(), "server exits 0 after SIGTERM");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("left the cluster")),
        "{rest:?}"
    );
}

#[test]
fn web_balance_demo_balances_http_and_drops_a_node_that_leaves() {
    let out = run("web_balance", &[], Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("60 requests over 3 web nodes"), "{stdout}");
    assert!(stdout.contains("left; 30 more requests"), "{stdout}");
    assert!(stdout.contains("web_balance ok"), "{stdout}");
}

#[test]
fn web_balance_web_node_and_client_in_two_processes() {
    use std::io::BufRead;
    let secret = secret();
    let env = [
        ("CLUSTER_LISTEN", "127.0.0.1:0"),
        ("CLUSTER_NAME", "web-balance-example-test"),
        ("CLUSTER_SECRET", secret.as_str()),
    ];
    let mut web = Command::new(example("web_balance"))
        .arg("web")
        .envs(env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn web node");
    let mut lines = std::io::BufReader::new(web.stdout.take().unwrap()).lines();
    let first = lines.next().expect("web node line").expect("utf-8");
    let node = first.split_whitespace().nth(2).expect("node id").to_owned();
    let gossip = first.split_whitespace().last().expect("gossip").to_owned();
    let mut client = Command::new(example("web_balance"));
    client
        .args(["client", "20"])
        .envs(env)
        .env("CLUSTER_SEEDS", &gossip)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = client.output().expect("run client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let _ = Command::new("kill")
        .args(["-TERM", &web.id().to_string()])
        .status();
    let status = web.wait().expect("web node exit");
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("{node}: 20 requests")), "{stdout}");
    assert!(status.success(), "the web node exits 0 after SIGTERM");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("left the cluster")),
        "{rest:?}"
    );
}

//! A node that makes calls, as its own OS process, configured from `CLUSTER_*`: for tests of
//! what a caller logs. Prints `STARTED <node-id> <gossip-addr>`, then `SEEN <n>` whenever the
//! number of serving nodes with role `CALL_ROLE` (default `work`) changes. Reads commands on
//! stdin, one per line: `<method> <count> <work_ms> <timeout_ms>` (method `exec` or `read` of
//! the fault suite's `Work`) sends `count` calls at once to any node of the role, each with the
//! timeout, and prints `DONE <method> ok=<n> failed=<n> <kind>...` (the failures' kinds).

use std::time::Duration;

use easy_rpc::Node;
use easy_rpc_tests::churn::WorkClient;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    easy_rpc_tests::cluster::init_logs();
    let role = std::env::var("CALL_ROLE").unwrap_or_else(|_| "work".into());
    let node = match Node::builder().default_node(false).from_env() {
        Ok(b) => b.start().await,
        Err(e) => Err(e),
    };
    let node = match node {
        Ok(n) => n,
        Err(e) => {
            eprintln!("call_node: {e}");
            std::process::exit(2);
        }
    };
    println!("STARTED {} {}", node.id(), node.gossip_addr());
    {
        let node = node.clone();
        let role = role.clone();
        tokio::spawn(async move {
            let mut seen = usize::MAX;
            loop {
                let n = node.nodes_with_role(&role).len();
                if n != seen {
                    println!("SEEN {n}");
                    seen = n;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [method, count, work_ms, timeout_ms] = words[..] else {
            eprintln!("call_node: cannot read {line:?}");
            continue;
        };
        let (Ok(count), Ok(work_ms), Ok(timeout_ms)) = (
            count.parse::<u64>(),
            work_ms.parse::<u64>(),
            timeout_ms.parse::<u64>(),
        ) else {
            eprintln!("call_node: cannot read {line:?}");
            continue;
        };
        let target = node.any(&role).timeout(Duration::from_millis(timeout_ms));
        let calls = (0..count).map(|id| {
            let target = target.clone();
            let method = method.to_owned();
            async move {
                match method.as_str() {
                    "read" => target.read(id, work_ms).await,
                    _ => target.exec(id, work_ms).await,
                }
            }
        });
        let results = futures::future::join_all(calls).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let kinds: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|e| {
                format!("{e:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        println!(
            "DONE {method} ok={ok} failed={} {}",
            results.len() - ok,
            kinds.join(" ")
        );
    }
    node.shutdown().await;
}

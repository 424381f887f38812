//! A cluster node as its own OS process, for tests that need real processes (SIGKILL, SIGTERM,
//! restarts). Configured from `CLUSTER_*` like any deployment. It prints one line per event on
//! stdout and takes commands on stdin:
//!
//! - out `STARTED <node-id> <gossip-addr>`, `READY <node-id>`, `TABLE <role>=<name>,<name> ...`
//!   (serving nodes per role, names sorted, roles sorted) on every registry change, `LEFT`;
//!   `UP <name>`, `LEAVING <name>`, `DOWN <name>` for each `NodeUp`, `NodeLeaving`, `NodeDown`
//!   event (`LAGGED <n>` if it missed events).
//! - in `add <role>`, `remove <role>`, `leave`.
//!
//! On a bad configuration it prints the error on stderr and exits with status 2.

use cluster_helper::{ClusterEvent, EventsError, Node, shutdown_signal};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    easy_rpc_tests::cluster::init_logs();
    let node = match Node::builder().from_env() {
        Ok(b) => b.start().await,
        Err(e) => Err(e),
    };
    let node = match node {
        Ok(n) => n,
        Err(e) => {
            eprintln!("cluster_node: {e}");
            std::process::exit(2);
        }
    };
    println!("STARTED {} {}", node.id(), node.gossip_addr());
    let mut ready_printed = false;
    let mut watch = node.registry().watch();
    let mut events = node.events();
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut last = String::new();
    // Created once: a signal that arrives between two turns of the loop is not lost.
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        if !ready_printed && node.is_ready() {
            println!("READY {}", node.id());
            ready_printed = true;
        }
        let table = table_line(&node);
        if table != last {
            println!("{table}");
            last = table;
        }
        tokio::select! {
            changed = watch.changed() => if changed.is_err() { break },
            event = events.recv() => match event {
                Ok(ClusterEvent::NodeUp(m)) => println!("UP {}", m.id.name()),
                Ok(ClusterEvent::NodeLeaving(m)) => println!("LEAVING {}", m.id.name()),
                Ok(ClusterEvent::NodeDown(m)) => println!("DOWN {}", m.id.name()),
                Ok(_) => {}
                Err(EventsError::Lagged(n)) => println!("LAGGED {n}"),
                Err(_) => break,
            },
            _ = node.ready(), if !ready_printed => {}
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(cmd)) => {
                    let mut parts = cmd.split_whitespace();
                    match (parts.next(), parts.next()) {
                        (Some("add"), Some(role)) => { let _ = node.add_role(role).await; }
                        (Some("remove"), Some(role)) => { let _ = node.remove_role(role).await; }
                        (Some("leave"), _) => break,
                        _ => eprintln!("unknown command {cmd:?}"),
                    }
                }
                _ => stdin_open = false,
            },
            _ = &mut signal => break,
        }
    }
    node.shutdown().await;
    println!("LEFT");
    // The blocking stdin reader would keep the runtime from shutting down: exit now.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(0);
}

fn table_line(node: &Node) -> String {
    let snap = node.registry().snapshot();
    let mut roles: Vec<String> = snap
        .roles()
        .map(|(role, nodes)| {
            let mut names: Vec<&str> = nodes.iter().map(|m| m.id.name()).collect();
            names.sort_unstable();
            format!("{role}={}", names.join(","))
        })
        .collect();
    roles.sort();
    format!("TABLE {}", roles.join(" "))
}

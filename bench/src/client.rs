//! The client processes of the RPC benchmark: `bench rpc-client tarpc <addr>` (plain tarpc,
//! or `tarpc-sealed`: plain tarpc over the sealed stream of a node's connection,
//! no node of ours in the process) and `bench rpc-client easy <cluster> <seed>` (an easy-rpc
//! node). Both make calls the way tarpc's own examples do: one connection, D spawned tasks
//! calling back to back. They print `ready`, then answer commands on stdin, one JSON line per
//! command:
//!
//! - `wait <role> <n>`: until the node sees `n` nodes with `role` (plain tarpc: at once);
//! - `run <target> <depth> <secs>`: `depth` caller tasks for `secs` seconds;
//! - `count <target> <depth> <n>`: `n` calls in all, over `depth` tasks;
//! - `all <role> <nodes> <secs>`, `count-all <role> <nodes> <n>`: `all(role)`, one at a time.
//!
//! `<target>` is the role to call `any()` of (easy-rpc), or `plain` / `naive` (plain tarpc,
//! directly or through a naïve role-aware wrapper). The process exits when stdin closes.
//!
//! `--node-thread` (easy-rpc) runs the node's own tasks (gossip, membership) on a thread of
//! their own, so that the main thread runs only the calls: `instr` counts that thread.
//! `--quiet` sets the long gossip interval of instruction counting.
//! `--concurrency-layer` (easy-rpc) gives the node one client layer, tower's
//! `ConcurrencyLimitLayer::new(1024)` (`bench layers`).
//! `--unencrypted` (easy-rpc) turns the node's call encryption off
//! (`NodeBuilder::unencrypted_calls`; its servers must be started with it too).

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stats_alloc::Region;

use crate::rpc::{Caller, GLOBAL, Naive, PlainAdderClient, Postcard};

/// How long to run, or how many calls to make.
#[derive(Clone, Copy)]
enum Until {
    Secs(f64),
    Calls(u64),
}

/// `depth` spawned tasks, each calling back to back; the figures of the run as JSON.
async fn drive<C: Caller>(caller: &C, depth: usize, until: Until) -> Value {
    let stop = Arc::new(AtomicBool::new(false));
    let record = depth == 1 && matches!(until, Until::Secs(_));
    let cpu0 = crate::procs::process_cpu_ns();
    let region = Region::new(GLOBAL);
    let start = Instant::now();
    let tasks: Vec<_> = (0..depth as u64)
        .map(|i| {
            let caller = caller.clone();
            let stop = stop.clone();
            let quota = match until {
                Until::Calls(n) => n / depth as u64 + u64::from(i < n % depth as u64),
                Until::Secs(_) => u64::MAX,
            };
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut n = 0u64;
                while n < quota && !stop.load(Ordering::Relaxed) {
                    if record {
                        let t = Instant::now();
                        caller.call().await;
                        lat.push(t.elapsed());
                    } else {
                        caller.call().await;
                    }
                    n += 1;
                }
                (n, lat)
            })
        })
        .collect();
    if let Until::Secs(s) = until {
        tokio::time::sleep(Duration::from_secs_f64(s)).await;
        stop.store(true, Ordering::Relaxed);
    }
    let mut calls = 0;
    let mut lat = Vec::new();
    for t in tasks {
        let (n, l) = t.await.expect("caller task");
        calls += n;
        lat.extend(l);
    }
    outcome(start, cpu0, &region, calls, 1, lat)
}

/// `all(role)` calls, one at a time.
async fn drive_all(all: &easy_rpc::All, nodes: usize, until: Until) -> Value {
    let cpu0 = crate::procs::process_cpu_ns();
    let region = Region::new(GLOBAL);
    let start = Instant::now();
    let mut calls = 0u64;
    let mut lat = Vec::new();
    loop {
        match until {
            Until::Secs(s) if start.elapsed().as_secs_f64() >= s => break,
            Until::Calls(n) if calls >= n => break,
            _ => {}
        }
        let t = Instant::now();
        crate::rpc::call_all(all, nodes).await;
        if let Until::Secs(_) = until {
            lat.push(t.elapsed());
        }
        calls += 1;
    }
    outcome(start, cpu0, &region, calls, nodes as u64, lat)
}

fn outcome(
    start: Instant,
    cpu0: u64,
    region: &Region<'_, std::alloc::System>,
    calls: u64,
    per_call: u64,
    mut lat: Vec<Duration>,
) -> Value {
    let secs = start.elapsed().as_secs_f64();
    let allocs = region.change().allocations;
    lat.sort_unstable();
    json!({
        "calls": calls,
        "node_calls": calls * per_call,
        "secs": secs,
        "rate": calls as f64 / secs,
        "p50_us": lat.get(lat.len() / 2).map(|d| d.as_secs_f64() * 1e6),
        "cpu_ns": crate::procs::process_cpu_ns().saturating_sub(cpu0),
        "allocs_per_call": allocs as f64 / calls.max(1) as f64,
    })
}

fn parse<T: std::str::FromStr>(word: Option<&str>, what: &str) -> T {
    word.and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("rpc-client: bad or missing {what}"))
}

/// The commands both clients understand, read from stdin until it closes.
fn serve_commands(
    rt: &tokio::runtime::Runtime,
    mut handle: impl FnMut(&tokio::runtime::Runtime, &[&str]) -> Value,
) {
    println!("ready");
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"exit") {
            break;
        }
        let answer = handle(rt, &words);
        println!("{answer}");
    }
    // Exit at once: no teardown for a counter to see.
    std::process::exit(0);
}

fn until(cmd: &str, arg: Option<&str>) -> Until {
    if cmd.starts_with("count") {
        Until::Calls(parse(arg, "count"))
    } else {
        Until::Secs(parse(arg, "seconds"))
    }
}

/// `bench rpc-client ...`: see the module documentation.
pub fn client(args: &[String]) {
    let node_thread = args.iter().any(|a| a == "--node-thread");
    let quiet = args.iter().any(|a| a == "--quiet");
    let layered = args.iter().any(|a| a == "--concurrency-layer");
    let unencrypted = args.iter().any(|a| a == crate::rpc::UNENCRYPTED);
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rt = crate::rpc::rt();
    match args.first().copied() {
        Some(kind @ ("tarpc" | "tarpc-sealed")) => {
            let addr: std::net::SocketAddr = parse(args.get(1).copied(), "address");
            let plain = rt.block_on(async {
                let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let mut cfg = tarpc::client::Config::default();
                cfg.max_in_flight_requests = 100_000;
                let codec = tokio_util::codec::LengthDelimitedCodec::new;
                if kind == "tarpc" {
                    let framed = tokio_util::codec::Framed::new(stream, codec());
                    let transport = tarpc::serde_transport::new(framed, Postcard::default());
                    PlainAdderClient::new(cfg, transport).spawn()
                } else {
                    let key = crate::rpc::sealed_key();
                    let sealed = easy_rpc::__private::handshake_sealed(stream, &key, "Adder")
                        .await
                        .expect("the handshake");
                    let framed = tokio_util::codec::Framed::new(sealed, codec());
                    let transport = tarpc::serde_transport::new(framed, Postcard::default());
                    PlainAdderClient::new(cfg, transport).spawn()
                }
            });
            let naive = Naive::new(plain.clone());
            serve_commands(&rt, |rt, w| match w {
                ["wait", ..] => json!("ok"),
                [cmd @ ("run" | "count"), target, depth, arg] => {
                    let depth = parse(Some(depth), "depth");
                    let until = until(cmd, Some(arg));
                    match *target {
                        "naive" => rt.block_on(drive(&naive, depth, until)),
                        _ => rt.block_on(drive(&plain, depth, until)),
                    }
                }
                _ => panic!("rpc-client tarpc: unknown command {w:?}"),
            });
        }
        Some("easy") => {
            let (cluster, seed) = (args[1].to_owned(), args[2].to_owned());
            let start = move || {
                let b = crate::rpc::node_builder(&cluster, "bench-client", quiet, unencrypted)
                    .seeds([seed]);
                if layered {
                    b.client_layer(tower::limit::ConcurrencyLimitLayer::new(1024))
                        .start()
                } else {
                    b.start()
                }
            };
            let node = if node_thread {
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let rt = crate::rpc::rt();
                    rt.block_on(async move {
                        tx.send(start().await.expect("start")).expect("send node");
                        std::future::pending::<()>().await;
                    });
                });
                rx.recv().expect("node")
            } else {
                rt.block_on(start()).expect("start")
            };
            serve_commands(&rt, |rt, w| match w {
                ["wait", role, n] => {
                    let n: usize = parse(Some(n), "count");
                    let node = node.clone();
                    let role = role.to_string();
                    let seen = async move {
                        let t = Instant::now();
                        while node.nodes_with_role(&role).len() != n {
                            assert!(
                                t.elapsed() < Duration::from_secs(60),
                                "{role}: not {n} nodes in 60 s"
                            );
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    };
                    if node_thread {
                        // Waited for on a thread of its own: the main thread's counts stay the
                        // calls'.
                        std::thread::spawn(move || crate::rpc::rt().block_on(seen))
                            .join()
                            .expect("wait");
                    } else {
                        rt.block_on(seen);
                    }
                    json!("ok")
                }
                [cmd @ ("run" | "count"), role, depth, arg] => {
                    // The benchmark stops whole sides for a round (SIGSTOP): right after, this
                    // node's failure detector may drop the servers for a moment. Calls wait for
                    // them instead of failing (a bool read per call: no cost when nodes are
                    // there).
                    let any = node.any(role).wait_for_node(true);
                    rt.block_on(drive(
                        &any,
                        parse(Some(depth), "depth"),
                        until(cmd, Some(arg)),
                    ))
                }
                [cmd @ ("all" | "count-all"), role, nodes, arg] => {
                    let all = node.all(role);
                    rt.block_on(drive_all(
                        &all,
                        parse(Some(nodes), "nodes"),
                        until(cmd, Some(arg)),
                    ))
                }
                _ => panic!("rpc-client easy: unknown command {w:?}"),
            });
        }
        _ => panic!(
            "rpc-client tarpc|tarpc-sealed <addr> | easy <cluster> <seed> [--node-thread] [--quiet] [--concurrency-layer] [--unencrypted]"
        ),
    }
}

//! Churn figures: server processes under steady load from two caller nodes while they are
//! restarted, killed and stopped; every outcome counted, every execution of a non-idempotent
//! call logged by the process that ran it.

use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use easy_rpc::Node;
use easy_rpc_tests::churn::{Counts, Load, Work, WorkImpl};

/// `bench work-server <cluster> <name> <seed>`: serves `Work` under role `work` until killed.
pub fn server(args: &[String]) {
    crate::rpc::rt().block_on(async move {
        let node = Node::builder()
            .cluster(&args[0])
            .name(&args[1])
            .listen("127.0.0.1:0")
            .secret(crate::secret::secret())
            .roles(["work"])
            .seeds([args[2].as_str()])
            .serve(
                WorkImpl {
                    name: args[1].clone(),
                }
                .serve(),
            )
            .start()
            .await
            .expect("start");
        println!("STARTED {}", node.gossip_addr());
        let _ = node.run_until_shutdown().await;
    });
}

struct Server {
    name: String,
    child: Child,
}

/// Every `EXEC <id>` line any server process printed, by id.
type Executions = Arc<Mutex<HashMap<u64, Vec<String>>>>;

fn spawn(cluster: &str, name: &str, seed: &str, execs: &Executions) -> Server {
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args(["work-server", cluster, name, seed])
        .env(crate::secret::VAR, crate::secret::secret())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let out = child.stdout.take().expect("stdout");
    let execs = execs.clone();
    let owner = name.to_owned();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(id) = line.strip_prefix("EXEC ").and_then(|i| i.parse().ok()) {
                execs
                    .lock()
                    .unwrap()
                    .entry(id)
                    .or_default()
                    .push(owner.clone());
            }
        }
    });
    Server {
        name: name.to_owned(),
        child,
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status();
}

async fn converge(callers: &[Node], names: &[String]) {
    let mut want = names.to_vec();
    want.sort();
    let start = Instant::now();
    loop {
        let ok = callers.iter().all(|c| {
            let mut seen: Vec<String> = c
                .nodes_with_role("work")
                .iter()
                .map(|m| m.id.name().to_owned())
                .collect();
            seen.sort();
            seen == want
        });
        if ok {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no convergence");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn twice(execs: &Executions) -> usize {
    execs
        .lock()
        .unwrap()
        .values()
        .filter(|v| v.len() > 1)
        .count()
}

fn p99(mut v: Vec<Duration>) -> (f64, f64, usize) {
    v.sort();
    let n = v.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, 0);
    }
    let at = ((0.99 * n as f64).ceil() as usize).clamp(1, n) - 1;
    (v[at].as_secs_f64() * 1e3, v[n - 1].as_secs_f64() * 1e3, n)
}

/// The last time a call to `victim` was picked, from the failures that name it: a failure
/// that is a Timeout was picked `timeout` earlier; any other failed at once.
fn last_pick(counts: &Counts, victim: &str, timeout: Duration) -> Option<Instant> {
    [&counts.exec, &counts.read, &counts.keyed]
        .iter()
        .flat_map(|t| t.log.iter())
        .filter(|(_, _, node)| node.as_deref() == Some(victim))
        .map(|(at, kind, _)| {
            if kind == "Timeout" {
                *at - timeout
            } else {
                *at
            }
        })
        .max()
}

pub fn run(quick: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let cluster = format!("bench-churn-{}", std::process::id());
        let execs: Executions = Arc::default();
        let mut callers = Vec::new();
        for i in 0..2 {
            let mut b = Node::builder()
                .cluster(&cluster)
                .name(format!("caller-{i}"))
                .listen("127.0.0.1:0")
                .secret(crate::secret::secret())
                .default_node(false);
            if let Some(first) = callers.first() {
                let first: &Node = first;
                b = b.seeds([first.gossip_addr().to_string()]);
            }
            callers.push(b.start().await.expect("caller"));
        }
        let seed = callers[0].gossip_addr().to_string();
        let mut servers: Vec<Server> = (0..3)
            .map(|i| spawn(&cluster, &format!("w-{i}"), &seed, &execs))
            .collect();
        let names = |s: &[Server]| s.iter().map(|x| x.name.clone()).collect::<Vec<_>>();
        converge(&callers, &names(&servers)).await;
        let timeout = Duration::from_secs(1);
        // Closed loop: 4 loops per caller, each one call of every kind per round.
        let load = Load::start_with(&callers, "work", 4, Duration::ZERO, timeout);

        println!(
            "# churn figures\n\n3 server processes, 2 caller nodes in the bench process, 4 closed loops per caller (any exec, any read (idempotent), by_key read, all whoami), calls bound by {timeout:?}, default gossip settings\n"
        );
        println!("| figure | result | goal |\n| --- | --- | --- |");

        // Steady state.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let steady_secs = if quick { 3.0 } else { 5.0 };
        let c0 = load.counts().calls;
        tokio::time::sleep(Duration::from_secs_f64(steady_secs)).await;
        let steady = (load.counts().calls - c0) as f64 / steady_secs;

        // Rolling restart.
        let before = load.counts();
        let t0 = Instant::now();
        for i in 0..3 {
            let name = format!("w-{i}");
            let idx = servers.iter().position(|s| s.name == name).unwrap();
            let mut old = servers.remove(idx);
            signal(old.child.id(), "TERM");
            let _ = old.child.wait();
            servers.push(spawn(&cluster, &name, &seed, &execs));
            converge(&callers, &names(&servers)).await;
        }
        let restart_secs = t0.elapsed().as_secs_f64();
        let after = load.counts();
        let during = (after.calls - before.calls) as f64 / restart_secs;
        let failed = after.failures() - before.failures();
        println!("| failed calls during a rolling restart of 3 nodes ({:.1} s, {} calls) | {failed} | 0 |", restart_secs, after.calls - before.calls);
        println!(
            "| throughput during the rolling restart vs steady state | {:.0} vs {:.0} calls/s = {:.2}x | >= 0.8x |",
            during,
            steady,
            during / steady
        );

        // Crash: SIGKILL, time until the victim is no longer picked.
        let trials = if quick { 3 } else { 8 };
        let mut crash_times = Vec::new();
        for (t, next) in (0..trials).zip(3..) {
            let idx = t % servers.len();
            let mut victim = servers.remove(idx);
            let start = Instant::now();
            let _ = victim.child.kill();
            let _ = victim.child.wait();
            tokio::time::sleep(Duration::from_secs(3)).await;
            let counts = load.counts();
            let last = last_pick(&counts, &victim.name, timeout).map_or(Duration::ZERO, |l| {
                l.saturating_duration_since(start)
            });
            crash_times.push(last);
            servers.push(spawn(&cluster, &format!("w-{next}"), &seed, &execs));
            converge(&callers, &names(&servers)).await;
        }
        let (p, m, n) = p99(crash_times);
        println!("| time from SIGKILL to the node no longer being picked | p99 {p:.0} ms, max {m:.0} ms ({n} kills) | p99 <= 1 s |");

        // Stuck: SIGSTOP, time until the victim is no longer picked.
        let mut stuck_times = Vec::new();
        for t in 0..trials {
            let victim = &servers[t % servers.len()];
            let start = Instant::now();
            signal(victim.child.id(), "STOP");
            tokio::time::sleep(Duration::from_secs(6)).await;
            let counts = load.counts();
            let last = last_pick(&counts, &victim.name, timeout).map_or(Duration::ZERO, |l| {
                l.saturating_duration_since(start)
            });
            stuck_times.push(last);
            signal(victim.child.id(), "CONT");
            converge(&callers, &names(&servers)).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let (p, m, n) = p99(stuck_times);
        println!("| time from SIGSTOP (stuck node) to it no longer being picked | p99 {p:.0} ms, max {m:.0} ms ({n} stops) | p99 <= 5 s |");

        let counts = load.stop().await;
        // Every exec that succeeded ran exactly once; none ran twice anywhere.
        tokio::time::sleep(Duration::from_millis(500)).await;
        println!(
            "| calls executed twice, all of the above ({} non-idempotent calls) | {} | 0 |",
            counts.exec.ok + counts.exec.failures(),
            twice(&execs)
        );
        println!(
            "| failed calls, all of the above, by kind | exec {:?}, read {:?}, by_key {:?}, all entries {:?} | (crash: only calls in flight) |",
            counts.exec.failed, counts.read.failed, counts.keyed.failed, counts.all.failed
        );
        for s in &mut servers {
            signal(s.child.id(), "TERM");
            let _ = s.child.wait();
        }
        for c in callers {
            c.kill();
        }
    });
}

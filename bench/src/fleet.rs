//! Node processes for the network and scale figures: `bench net-node` runs one node (role
//! `m`, configured from `CLUSTER_*`) and prints what its registry sees, each line stamped
//! with the wall clock (microseconds since the Unix epoch, the same clock in every process
//! of the machine), so that the parent can tell when each node saw each change:
//!
//! - `STARTED <name> <gossip-addr> <t>` once started;
//! - `UP <name> <t>`, `LEAVING <name> <t>`, `DOWN <name> <t>` for each node event;
//! - `STATS <gossip bytes sent> <gossip bytes received> <gossip packets sent> <t>` every
//!   second.
//!
//! SIGTERM makes it leave gracefully; SIGKILL is a crash. A [`Fleet`] holds the processes
//! and everything they printed.

use std::io::BufRead;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use cluster_helper::{ClusterEvent, Node};

/// Microseconds since the Unix epoch.
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// `bench net-node`: one node from the environment, printing its registry's events. It exits
/// when its stdin closes (the parent died).
pub(crate) fn node_main() {
    crate::procs::exit_on_stdin_close();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let node = Node::builder()
            .from_env()
            .expect("CLUSTER_* configuration")
            .roles(["m"])
            .rpc_listen(cluster_helper::RpcListen::Disabled)
            .start()
            .await
            .expect("start");
        println!(
            "STARTED {} {} {}",
            node.id().name(),
            node.gossip_addr(),
            now_us()
        );
        let mut events = node.events();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let signal = cluster_helper::shutdown_signal();
        tokio::pin!(signal);
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    Ok(ClusterEvent::NodeUp(m)) => println!("UP {} {}", m.id.name(), now_us()),
                    Ok(ClusterEvent::NodeLeaving(m)) => {
                        println!("LEAVING {} {}", m.id.name(), now_us());
                    }
                    Ok(ClusterEvent::NodeDown(m)) => {
                        println!("DOWN {} {}", m.id.name(), now_us());
                    }
                    Ok(_) => {}
                    Err(cluster_helper::EventsError::Lagged(n)) => println!("LAGGED {n} {}", now_us()),
                    Err(_) => break,
                },
                _ = tick.tick() => {
                    let s = node.gossip_stats();
                    println!(
                        "STATS {} {} {} {}",
                        s.bytes_sent,
                        s.bytes_received,
                        s.packets_sent,
                        now_us()
                    );
                }
                _ = &mut signal => break,
            }
        }
        node.shutdown().await;
    });
}

/// One parsed line of a node process.
#[derive(Clone, Debug)]
pub(crate) struct Line {
    pub(crate) kind: String,
    pub(crate) args: Vec<String>,
    pub(crate) at_us: u64,
}

/// A node process and what it printed.
pub(crate) struct Proc {
    pub(crate) name: String,
    child: Child,
    /// Held open: the process exits when it closes.
    _stdin: Option<std::process::ChildStdin>,
    lines: Arc<Mutex<Vec<Line>>>,
    /// When it was spawned (microseconds since the epoch).
    pub(crate) spawned_us: u64,
    /// Whether it is running (not stopped by the fleet).
    pub(crate) alive: bool,
}

impl Proc {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines of `kind`, in order.
    pub(crate) fn lines(&self, kind: &str) -> Vec<Line> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.kind == kind)
            .cloned()
            .collect()
    }

    /// The first `kind` line about `about` at or after `since_us`.
    fn first(&self, kind: &str, about: &str, since_us: u64) -> Option<u64> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .find(|l| {
                l.kind == kind && l.at_us >= since_us && l.args.first().is_some_and(|a| a == about)
            })
            .map(|l| l.at_us)
    }

    /// CPU time (user + system) the process has used, in seconds.
    pub(crate) fn cpu_secs(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .ok()
            .and_then(|s| {
                // Fields after the command name (which is in parentheses).
                let rest = s.rsplit_once(')')?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
                Some(ticks as f64 / 100.0)
            })
            .unwrap_or(0.0)
    }

    /// Resident memory, in bytes.
    pub(crate) fn rss(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/statm", self.pid()))
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |pages| pages * 4096)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Node processes of one cluster.
pub(crate) struct Fleet {
    pub(crate) cluster: String,
    pub(crate) procs: Vec<Proc>,
    seed: Option<String>,
}

impl Fleet {
    pub(crate) fn new(cluster: String) -> Fleet {
        Fleet {
            cluster,
            procs: Vec::new(),
            seed: None,
        }
    }

    /// Starts node `name` listening on `listen` (`ip:0`), through `prefix` (e.g. `ip netns
    /// exec host`), seeded with the first node; waits for its `STARTED` line. Returns its index.
    pub(crate) fn spawn(&mut self, prefix: &[String], name: &str, listen: &str) -> usize {
        let mut cmd = crate::procs::command(prefix);
        cmd.arg("net-node")
            .env("CLUSTER_NAME", &self.cluster)
            .env("CLUSTER_NODE_NAME", name)
            .env("CLUSTER_LISTEN", listen)
            .env("CLUSTER_SECRET", crate::secret::secret());
        if let Some(seed) = &self.seed {
            cmd.env("CLUSTER_SEEDS", seed);
        }
        let spawned_us = now_us();
        let mut child = cmd.spawn().expect("spawn net-node");
        let out = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take();
        let lines: Arc<Mutex<Vec<Line>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn({
            let lines = lines.clone();
            move || {
                for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    let mut parts: Vec<String> = l.split_whitespace().map(String::from).collect();
                    let Some(at_us) = parts.pop().and_then(|t| t.parse().ok()) else {
                        continue;
                    };
                    if parts.is_empty() {
                        continue;
                    }
                    let kind = parts.remove(0);
                    if kind == "STARTED" {
                        let _ = tx.send(parts.get(1).cloned().unwrap_or_default());
                    }
                    lines.lock().unwrap().push(Line {
                        kind,
                        args: parts,
                        at_us,
                    });
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{name} did not start"));
        if self.seed.is_none() {
            self.seed = Some(addr);
        }
        self.procs.push(Proc {
            name: name.to_owned(),
            child,
            _stdin: stdin,
            lines,
            spawned_us,
            alive: true,
        });
        self.procs.len() - 1
    }

    fn live(&self) -> impl Iterator<Item = &Proc> {
        self.procs.iter().filter(|p| p.alive)
    }

    /// When every live node other than `about` printed its first `kinds` line about `about`
    /// since `since_us` (the latest of those times), or `None` after `within`.
    pub(crate) fn seen_by_all(
        &self,
        kinds: &[&str],
        about: &str,
        since_us: u64,
        within: Duration,
    ) -> Option<u64> {
        let start = Instant::now();
        loop {
            let times: Option<Vec<u64>> = self
                .live()
                .filter(|p| p.name != about)
                .map(|p| {
                    kinds
                        .iter()
                        .filter_map(|k| p.first(k, about, since_us))
                        .min()
                })
                .collect();
            if let Some(t) = times {
                return Some(t.into_iter().max().unwrap_or(since_us));
            }
            if start.elapsed() > within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every live node has seen every other live node up (and not down since).
    pub(crate) fn converge(&self, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        loop {
            let ok = self.live().all(|p| {
                let lines = p.lines.lock().unwrap();
                self.live().filter(|q| q.name != p.name).all(|q| {
                    let last = lines
                        .iter()
                        .rev()
                        .find(|l| {
                            matches!(l.kind.as_str(), "UP" | "DOWN" | "LEAVING")
                                && l.args.first() == Some(&q.name)
                        })
                        .map(|l| l.kind.as_str());
                    last == Some("UP")
                })
            });
            if ok {
                return Some(start.elapsed());
            }
            if start.elapsed() > within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `DOWN` lines about live nodes printed by live nodes since `since_us`, as
    /// `(observer, node, when)`.
    pub(crate) fn false_downs(&self, since_us: u64) -> Vec<(String, String, u64)> {
        let live: std::collections::HashSet<&str> = self.live().map(|p| p.name.as_str()).collect();
        self.live()
            .flat_map(|p| {
                p.lines("DOWN")
                    .into_iter()
                    .filter(|l| l.at_us >= since_us)
                    .filter_map(|l| Some((l.args.first()?.clone(), l.at_us)))
                    .filter(|(n, _)| live.contains(n.as_str()))
                    .map(|(n, at)| (p.name.clone(), n, at))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Sends `signal` to node `i` and marks it stopped; returns when it was sent.
    pub(crate) fn stop(&mut self, i: usize, signal: &str) -> u64 {
        self.procs[i].alive = false;
        let t = now_us();
        let _ = Command::new("kill")
            .args([format!("-{signal}"), self.procs[i].pid().to_string()])
            .status();
        t
    }

    /// Waits for node `i` to exit (after [`stop`](Fleet::stop)), at most `within`.
    pub(crate) fn reap(&mut self, i: usize, within: Duration) {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.procs[i].child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.procs[i].child.kill();
        let _ = self.procs[i].child.wait();
    }

    /// Gossip bytes sent, bytes received and packets sent per second per live node, between
    /// two `STATS` lines about `secs` apart (waits for them), and the CPU share (1.0 = one
    /// core) each node process used meanwhile.
    pub(crate) fn gossip_rate(&self, secs: u64) -> (f64, f64, f64, f64) {
        let t0 = now_us();
        let cpu0: f64 = self.live().map(Proc::cpu_secs).sum();
        let wall = Instant::now();
        std::thread::sleep(Duration::from_secs(secs) + Duration::from_millis(1100));
        let cpu = (self.live().map(Proc::cpu_secs).sum::<f64>() - cpu0)
            / wall.elapsed().as_secs_f64()
            / self.live().count().max(1) as f64;
        let mut sent = 0.0;
        let mut recv = 0.0;
        let mut packets = 0.0;
        let mut n = 0;
        for p in self.live() {
            let stats: Vec<Line> = p
                .lines("STATS")
                .into_iter()
                .filter(|l| l.at_us >= t0)
                .collect();
            let (Some(a), Some(b)) = (stats.first(), stats.last()) else {
                continue;
            };
            if b.at_us <= a.at_us {
                continue;
            }
            let num = |l: &Line, i: usize| l.args[i].parse::<f64>().unwrap_or(0.0);
            let dt = (b.at_us - a.at_us) as f64 / 1e6;
            sent += (num(b, 0) - num(a, 0)) / dt;
            recv += (num(b, 1) - num(a, 1)) / dt;
            packets += (num(b, 2) - num(a, 2)) / dt;
            n += 1;
        }
        let n = f64::from(n.max(1));
        (sent / n, recv / n, packets / n, cpu)
    }

    /// Mean resident memory of the live node processes, in bytes.
    pub(crate) fn mean_rss(&self) -> f64 {
        let v: Vec<u64> = self.live().map(Proc::rss).collect();
        v.iter().sum::<u64>() as f64 / v.len().max(1) as f64
    }

    /// Kills every process.
    pub(crate) fn kill_all(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
            p.alive = false;
        }
    }
}

/// What false downs say: `(observer stalls, downs in them, other downs)`. An observer that
/// declares at least `stall` nodes down within two seconds was itself stalled (starved of CPU,
/// or cut off): everyone's heartbeats stopped reaching it at once. The other downs are single
/// nodes missed by one observer, which is what loss on the links would cause.
pub(crate) fn classify(downs: &[(String, String, u64)], stall: usize) -> (usize, usize, usize) {
    let mut by_observer: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
    for (o, _, at) in downs {
        by_observer.entry(o.as_str()).or_default().push(*at);
    }
    let (mut stalls, mut in_stalls, mut other) = (0, 0, 0);
    for times in by_observer.values_mut() {
        times.sort_unstable();
        let mut i = 0;
        while i < times.len() {
            let mut j = i;
            while j + 1 < times.len() && times[j + 1] - times[i] <= 2_000_000 {
                j += 1;
            }
            let burst = j - i + 1;
            if burst >= stall {
                stalls += 1;
                in_stalls += burst;
            } else {
                other += burst;
            }
            i = j + 1;
        }
    }
    (stalls, in_stalls, other)
}

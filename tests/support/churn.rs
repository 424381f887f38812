//! What the fault suite runs: a `Work` service whose non-idempotent executions are printed
//! (`EXEC <id>`) so a test can prove no call ran twice across processes, and a load generator
//! that drives `any` (idempotent and not), `all` and `by_key` calls from caller nodes and
//! counts every outcome.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use easy_rpc::{Node, RpcError};

/// The service under load.
#[easy_rpc::service]
pub trait Work {
    /// Not idempotent: runs call `id` once, taking `work_ms`, and returns the node's name.
    async fn exec(id: u64, work_ms: u64) -> String;
    /// Idempotent: the same, but safe to run twice.
    #[easy_rpc(idempotent)]
    async fn read(id: u64, work_ms: u64) -> String;
    /// The node's name.
    #[easy_rpc(idempotent)]
    async fn whoami() -> String;
    /// Idempotent, and logged: prints `SLOW <id>` when it starts, then takes `work_ms`.
    #[easy_rpc(idempotent)]
    async fn slow(id: u64, work_ms: u64) -> String;
}

/// Prints `EXEC <id> <unix-ms>` for every `exec` it runs, with the wall-clock time it started
/// (stdout is line-buffered: each line is written before the answer is sent).
#[derive(Debug)]
pub struct WorkImpl {
    /// The node's name.
    pub name: String,
}

impl Work for WorkImpl {
    async fn exec(&self, id: u64, work_ms: u64) -> String {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        println!("EXEC {id} {started}");
        if work_ms > 0 {
            tokio::time::sleep(Duration::from_millis(work_ms)).await;
        }
        self.name.clone()
    }
    async fn read(&self, _id: u64, work_ms: u64) -> String {
        if work_ms > 0 {
            tokio::time::sleep(Duration::from_millis(work_ms)).await;
        }
        self.name.clone()
    }
    async fn whoami(&self) -> String {
        self.name.clone()
    }
    async fn slow(&self, id: u64, work_ms: u64) -> String {
        println!("SLOW {id}");
        tokio::time::sleep(Duration::from_millis(work_ms)).await;
        self.name.clone()
    }
}

/// Outcomes of one kind of call.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Calls that returned a value.
    pub ok: u64,
    /// Calls that failed, by error kind (`Timeout`, `NodeDown`, ...).
    pub failed: BTreeMap<String, u64>,
    /// The failures' messages (the first 20).
    pub samples: Vec<String>,
    /// When failures happened (the first 1000).
    pub failed_at: Vec<std::time::Instant>,
    /// Each failure's time, kind and node (the first 10 000).
    pub log: Vec<(std::time::Instant, String, Option<String>)>,
}

impl Tally {
    fn record<T, E: std::fmt::Debug + std::fmt::Display>(&mut self, r: &Result<T, RpcError<E>>) {
        match r {
            Ok(_) => self.ok += 1,
            Err(e) => {
                let kind = format!("{e:?}")
                    .split([' ', '{', '('])
                    .next()
                    .unwrap_or("?")
                    .to_owned();
                *self.failed.entry(kind.clone()).or_default() += 1;
                if self.samples.len() < 20 {
                    self.samples.push(e.to_string());
                }
                if self.failed_at.len() < 1000 {
                    self.failed_at.push(std::time::Instant::now());
                }
                if self.log.len() < 10_000 {
                    let node = e.node().map(|n| n.name().to_owned());
                    self.log
                        .push((std::time::Instant::now(), kind.clone(), node));
                }
            }
        }
    }

    /// Failed calls of any kind.
    pub fn failures(&self) -> u64 {
        self.failed.values().sum()
    }
}

/// Every outcome of a load run.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// `any(..).exec(..)`: not idempotent.
    pub exec: Tally,
    /// `any(..).read(..)`: idempotent.
    pub read: Tally,
    /// `by_key(..).read(..)`.
    pub keyed: Tally,
    /// `all(..).whoami()`: one entry per node answer.
    pub all: Tally,
    /// `all` calls that returned no entry at all (the role looked empty).
    pub all_empty: u64,
    /// The ids of `exec` calls that returned Ok, with the node that ran them.
    pub exec_ok: Vec<(u64, String)>,
    /// Calls made, of every kind.
    pub calls: u64,
}

impl Counts {
    /// Failures of every kind of call.
    pub fn failures(&self) -> u64 {
        self.exec.failures() + self.read.failures() + self.keyed.failures() + self.all.failures()
    }
}

/// A running load: `loops` concurrent loops per caller node, each making one call of every
/// kind per round and sleeping `pause` between rounds.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    handles: Vec<tokio::task::JoinHandle<()>>,
    counts: Arc<Mutex<Counts>>,
}

/// How long calls under load may take before they count as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

impl Load {
    /// Starts load from every node in `callers` against `role`, calls bound by
    /// [`CALL_TIMEOUT`].
    pub fn start(callers: &[Node], role: &str, loops: usize, pause: Duration) -> Load {
        Self::start_with(callers, role, loops, pause, CALL_TIMEOUT)
    }

    /// Like [`start`](Load::start), with the calls' deadline.
    pub fn start_with(
        callers: &[Node],
        role: &str,
        loops: usize,
        pause: Duration,
        timeout: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new(Counts::default()));
        let next_id = Arc::new(AtomicU64::new(1));
        let mut handles = Vec::new();
        for (c, caller) in callers.iter().enumerate() {
            for l in 0..loops {
                let caller = caller.clone();
                let role = role.to_owned();
                let stop = stop.clone();
                let counts = counts.clone();
                let next_id = next_id.clone();
                handles.push(tokio::spawn(async move {
                    let mut round = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let id = next_id.fetch_add(1, Ordering::Relaxed);
                        let any = caller.any(&role).timeout(timeout);
                        let exec = any.exec(id, 2).await;
                        let read = any.read(id, 2).await;
                        let key = format!("key-{}", (c * 1000 + l * 100) as u64 + round % 50);
                        let keyed = caller
                            .by_key(&role, &key)
                            .timeout(timeout)
                            .read(id, 0)
                            .await;
                        let all = caller.all(&role).timeout(timeout).whoami().await;
                        {
                            let mut k = counts.lock().unwrap();
                            k.calls += 4;
                            k.exec.record(&exec);
                            if let Ok(node) = &exec {
                                k.exec_ok.push((id, node.clone()));
                            }
                            k.read.record(&read);
                            k.keyed.record(&keyed);
                            match &all {
                                Ok(all) if all.is_empty() => k.all_empty += 1,
                                Ok(all) => {
                                    for (_, r) in all {
                                        k.all.record(r);
                                    }
                                }
                                // No node to call through (never while the callers run).
                                Err(e) => k.all.record(&Err::<(), _>(e.clone())),
                            }
                        }
                        round += 1;
                        if pause.is_zero() {
                            tokio::task::yield_now().await;
                        } else {
                            tokio::time::sleep(pause).await;
                        }
                    }
                }));
            }
        }
        Load {
            stop,
            handles,
            counts,
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        self.counts.lock().unwrap().clone()
    }

    /// Stops the load, waits for the calls in flight, and returns the counts.
    pub async fn stop(self) -> Counts {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles {
            let _ = h.await;
        }
        self.counts.lock().unwrap().clone()
    }
}

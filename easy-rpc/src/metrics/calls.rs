//! The per-method counters of one node, client side and server side: one [`MethodSlot`] per
//! method, found by the method's slot number ([`MethodInfo`]'s, given once per process), so
//! that a call touches only relaxed atomics: no lock, no lookup by name, no allocation.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cluster_helper::NodeId;

use super::histogram::Latency;
use crate::error::RpcError;
use crate::runtime::Rpc;
use crate::service::MethodInfo;

/// How a call or a request ended: the `outcome` label. A bounded set: `ok`, the method's own
/// error, each kind of [`RpcError`], and a call given up by its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    /// The method returned its own error ([`RpcError::Remote`]).
    Remote,
    NotRunning,
    NoNodeForRole,
    NodeNotFound,
    Unreachable,
    Rejected,
    NotRun,
    Timeout,
    NodeDown,
    Codec,
    /// The method panicked ([`RpcError::Server`]).
    Server,
    /// A client layer refused or failed the call ([`RpcError::Layer`]).
    Layer,
    /// The caller dropped the call before it ended (client); the caller went away before the
    /// request's deadline (server).
    Cancelled,
}

impl Outcome {
    /// Every outcome, in label order.
    pub(crate) const ALL: [Outcome; 14] = [
        Outcome::Ok,
        Outcome::Remote,
        Outcome::NotRunning,
        Outcome::NoNodeForRole,
        Outcome::NodeNotFound,
        Outcome::Unreachable,
        Outcome::Rejected,
        Outcome::NotRun,
        Outcome::Timeout,
        Outcome::NodeDown,
        Outcome::Codec,
        Outcome::Server,
        Outcome::Layer,
        Outcome::Cancelled,
    ];

    /// The label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Remote => "remote",
            Outcome::NotRunning => "not_running",
            Outcome::NoNodeForRole => "no_node_for_role",
            Outcome::NodeNotFound => "node_not_found",
            Outcome::Unreachable => "unreachable",
            Outcome::Rejected => "rejected",
            Outcome::NotRun => "not_run",
            Outcome::Timeout => "timeout",
            Outcome::NodeDown => "node_down",
            Outcome::Codec => "codec",
            Outcome::Server => "server",
            Outcome::Layer => "layer",
            Outcome::Cancelled => "cancelled",
        }
    }

    /// The outcome of a call that ended with `error`.
    pub(crate) fn of<E>(error: &RpcError<E>) -> Outcome {
        match error {
            RpcError::NotRunning { .. } => Outcome::NotRunning,
            RpcError::NoNodeForRole { .. } => Outcome::NoNodeForRole,
            RpcError::NodeNotFound { .. } => Outcome::NodeNotFound,
            RpcError::Unreachable { .. } => Outcome::Unreachable,
            RpcError::Rejected { .. } => Outcome::Rejected,
            RpcError::NotRun { .. } => Outcome::NotRun,
            RpcError::Timeout { .. } => Outcome::Timeout,
            RpcError::NodeDown { .. } => Outcome::NodeDown,
            RpcError::Remote { .. } => Outcome::Remote,
            RpcError::Codec { .. } => Outcome::Codec,
            RpcError::Server { .. } => Outcome::Server,
            RpcError::Layer { .. } => Outcome::Layer,
        }
    }
}

/// The counters of one method on one side of one node.
#[derive(Debug, Default)]
pub(crate) struct MethodSlot {
    /// The service and method, set on first use (a slot never used is not shown).
    pub(crate) names: OnceLock<(&'static str, &'static str)>,
    /// Calls (requests) ended, by [`Outcome`] (indexed as [`Outcome::ALL`]).
    pub(crate) outcomes: [AtomicU64; Outcome::ALL.len()],
    /// Calls (requests) under way now.
    pub(crate) in_flight: AtomicI64,
    /// How long they took.
    pub(crate) latency: Latency,
    /// Client: sends to another node of a call that provably did not run.
    pub(crate) reroutes: AtomicU64,
    /// Client: sends again of an idempotent call that may have run.
    pub(crate) retries: AtomicU64,
    /// Client: extra attempts started while the first was still running (hedging).
    pub(crate) hedges: AtomicU64,
    /// When a final failure was last logged at `warn`, in [`now_ms`] + 1 (0: never).
    warned_at_ms: AtomicU64,
    /// Final failures logged at `debug` since then.
    unwarned: AtomicU64,
}

impl MethodSlot {
    pub(crate) fn count(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a final failure now may be logged at `warn` (at most one per [`WARN_EVERY`]
    /// per method), and how many were logged at `debug` since the last one.
    fn may_warn(&self, now_ms: u64) -> Option<u64> {
        let last = self.warned_at_ms.load(Ordering::Relaxed);
        if last != 0 && now_ms + 1 < last + WARN_EVERY_MS {
            self.unwarned.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.warned_at_ms
            .compare_exchange(last, now_ms + 1, Ordering::Relaxed, Ordering::Relaxed)
            .ok()
            .map(|_| self.unwarned.swap(0, Ordering::Relaxed))
    }
}

/// At most one `warn` per method per this long for calls that failed (the rest at `debug`).
const WARN_EVERY_MS: u64 = 10_000;

/// Milliseconds since the first call of this function in the process (for the rate limits).
fn now_ms(now: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}

/// Slots per chunk of a [`Methods`] table.
const CHUNK: usize = 64;
/// Chunks of a table: 4,096 methods per process have slots of their own; the rest share one.
const CHUNKS: usize = 64;

/// One side's slots of one node, indexed by [`MethodInfo::metrics_slot`]; chunks are
/// allocated on first use and never move, so a slot is reached with two loads.
#[derive(Debug)]
pub(crate) struct Methods {
    chunks: [OnceLock<Box<[MethodSlot]>>; CHUNKS],
    /// Methods past the table's size (more than 4,096 in one process), counted together.
    overflow: MethodSlot,
}

impl Default for Methods {
    fn default() -> Self {
        Methods {
            chunks: std::array::from_fn(|_| OnceLock::new()),
            overflow: MethodSlot::default(),
        }
    }
}

impl Methods {
    /// The slot of `method` of `service`.
    pub(crate) fn slot(&self, service: &'static str, method: &'static MethodInfo) -> &MethodSlot {
        let i = method.metrics_slot();
        let slot = match self.chunks.get(i / CHUNK) {
            Some(chunk) => &chunk
                .get_or_init(|| (0..CHUNK).map(|_| MethodSlot::default()).collect())[i % CHUNK],
            None => {
                self.overflow.names.get_or_init(|| ("_other", "_other"));
                return &self.overflow;
            }
        };
        slot.names.get_or_init(|| (service, method.name));
        slot
    }

    /// Every slot used so far, with its service and method.
    pub(crate) fn used(&self) -> impl Iterator<Item = (&'static str, &'static str, &MethodSlot)> {
        self.chunks
            .iter()
            .filter_map(OnceLock::get)
            .flat_map(|chunk| chunk.iter())
            .chain(std::iter::once(&self.overflow))
            .filter_map(|slot| slot.names.get().map(|&(s, m)| (s, m, slot)))
    }
}

/// A client call being counted: in flight from [`start`](ClientCall::start) until
/// [`finish`](ClientCall::finish), or counted `cancelled` if dropped before (its caller gave
/// it up).
pub(crate) struct ClientCall {
    rpc: Arc<Rpc>,
    service: &'static str,
    method: &'static MethodInfo,
    started: Instant,
    done: bool,
}

impl std::fmt::Debug for ClientCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCall")
            .field("service", &self.service)
            .field("method", &self.method.name)
            .finish_non_exhaustive()
    }
}

impl ClientCall {
    /// A call of `method` of `service` made at `started`.
    pub(crate) fn start(
        rpc: &Arc<Rpc>,
        service: &'static str,
        method: &'static MethodInfo,
        started: Instant,
    ) -> ClientCall {
        let slot = rpc.metrics.client.slot(service, method);
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
        ClientCall {
            rpc: rpc.clone(),
            service,
            method,
            started,
            done: false,
        }
    }

    /// The call ended with `result`: counts it, and logs a failure (not the method's own
    /// error) once per method per 10 s at `warn`, the others at `debug`.
    pub(crate) fn finish<T, E>(mut self, result: &Result<T, RpcError<E>>) {
        self.done = true;
        let slot = self.rpc.metrics.client.slot(self.service, self.method);
        let now = Instant::now();
        let outcome = match result {
            Ok(_) => Outcome::Ok,
            Err(e) => Outcome::of(e),
        };
        slot.count(outcome);
        slot.latency
            .observe(now.saturating_duration_since(self.started));
        slot.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Err(error) = result
            && outcome != Outcome::Remote
        {
            self.log_failure(slot, error, now);
        }
    }

    fn log_failure<E>(&self, slot: &MethodSlot, error: &RpcError<E>, now: Instant) {
        let node = &self.rpc.id;
        let peer = error.node().map(ToString::to_string);
        let peer = peer.as_deref().unwrap_or("-");
        let (service, method) = (self.service, self.method.name);
        let kind = Outcome::of(error).label();
        match slot.may_warn(now_ms(now)) {
            Some(unwarned) => tracing::warn!(
                %node,
                service,
                method,
                peer,
                outcome = kind,
                "call {service}.{method} failed: {}{}",
                Plain(error),
                if unwarned > 0 {
                    format!(" ({unwarned} more failures of this method logged at debug level)")
                } else {
                    String::new()
                }
            ),
            None => tracing::debug!(
                %node,
                service,
                method,
                peer,
                outcome = kind,
                "call {service}.{method} failed: {}",
                Plain(error)
            ),
        }
    }
}

/// An error shown without its method's own error type (which need not be `Display`).
struct Plain<'a, E>(&'a RpcError<E>);

impl<E> std::fmt::Display for Plain<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            RpcError::Remote { node, .. } => write!(f, "{node} returned the method's error"),
            other => {
                // Every other variant carries no `E`: show it through the `Never` form.
                let shown: RpcError = match other {
                    RpcError::NotRunning { node } => RpcError::NotRunning { node: node.clone() },
                    RpcError::NoNodeForRole { role, service } => RpcError::NoNodeForRole {
                        role: role.clone(),
                        service,
                    },
                    RpcError::NodeNotFound { node, service } => RpcError::NodeNotFound {
                        node: node.clone(),
                        service,
                    },
                    RpcError::Unreachable {
                        node,
                        method,
                        reason,
                        source,
                    } => RpcError::Unreachable {
                        node: node.clone(),
                        method,
                        reason: reason.clone(),
                        source: source.clone(),
                    },
                    RpcError::Rejected { node, reason } => RpcError::Rejected {
                        node: node.clone(),
                        reason: reason.clone(),
                    },
                    RpcError::NotRun {
                        node,
                        method,
                        reason,
                    } => RpcError::NotRun {
                        node: node.clone(),
                        method,
                        reason: *reason,
                    },
                    RpcError::Timeout {
                        node,
                        method,
                        after,
                    } => RpcError::Timeout {
                        node: node.clone(),
                        method,
                        after: *after,
                    },
                    RpcError::NodeDown {
                        node,
                        method,
                        reason,
                        source,
                    } => RpcError::NodeDown {
                        node: node.clone(),
                        method,
                        reason: reason.clone(),
                        source: source.clone(),
                    },
                    RpcError::Codec {
                        node,
                        method,
                        reason,
                        source,
                    } => RpcError::Codec {
                        node: node.clone(),
                        method,
                        reason: reason.clone(),
                        source: source.clone(),
                    },
                    RpcError::Server {
                        node,
                        method,
                        reason,
                    } => RpcError::Server {
                        node: node.clone(),
                        method,
                        reason: reason.clone(),
                    },
                    RpcError::Layer {
                        node,
                        method,
                        sent,
                        source,
                    } => RpcError::Layer {
                        node: node.clone(),
                        method,
                        sent: *sent,
                        source: source.clone(),
                    },
                    RpcError::Remote { .. } => unreachable!("handled above"),
                };
                std::fmt::Display::fmt(&shown, f)
            }
        }
    }
}

impl Drop for ClientCall {
    fn drop(&mut self) {
        if !self.done {
            let slot = self.rpc.metrics.client.slot(self.service, self.method);
            slot.count(Outcome::Cancelled);
            slot.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// What a call does next after a failed attempt, for [`rerouted`] and [`retried`].
fn attempt_failed(
    rpc: &Rpc,
    service: &'static str,
    method: &'static MethodInfo,
    peer: &NodeId,
    error: &RpcError,
    what: &'static str,
) {
    tracing::debug!(
        node = %rpc.id,
        service,
        method = method.name,
        %peer,
        outcome = Outcome::of(error).label(),
        "{what} {service}.{}: {error}",
        method.name
    );
}

/// A call is sent to another node after an attempt that provably did not run.
pub(crate) fn rerouted(
    rpc: &Rpc,
    service: &'static str,
    method: &'static MethodInfo,
    peer: &NodeId,
    error: &RpcError,
) {
    let slot = rpc.metrics.client.slot(service, method);
    slot.reroutes.fetch_add(1, Ordering::Relaxed);
    attempt_failed(rpc, service, method, peer, error, "rerouting");
}

/// An idempotent call is sent again after an attempt that may have run.
pub(crate) fn retried(
    rpc: &Rpc,
    service: &'static str,
    method: &'static MethodInfo,
    peer: &NodeId,
    error: &RpcError,
) {
    let slot = rpc.metrics.client.slot(service, method);
    slot.retries.fetch_add(1, Ordering::Relaxed);
    attempt_failed(rpc, service, method, peer, error, "retrying");
}

/// A hedged call starts an extra attempt while the first still runs. The place for the
/// hedging path's counter: `easy_rpc_client_hedges_total` is exported (zero until then).
#[allow(dead_code)]
pub(crate) fn hedged(rpc: &Rpc, service: &'static str, method: &'static MethodInfo) {
    let slot = rpc.metrics.client.slot(service, method);
    slot.hedges.fetch_add(1, Ordering::Relaxed);
}

/// A server request being counted: in flight from [`start`](CountedRequest::start) until
/// [`finish`](CountedRequest::finish); dropped before (tarpc stopped it), it counts as `timeout`
/// if its deadline had come (within [`DEADLINE_SLACK`]), else `cancelled`.
pub(crate) struct CountedRequest<'a> {
    slot: &'a MethodSlot,
    started: Instant,
    deadline: Instant,
    done: bool,
}

/// A request dropped this close to its deadline was stopped by it: the caller's cancellation,
/// sent at the same deadline, may arrive a little before the server's own timer fires.
pub(crate) const DEADLINE_SLACK: Duration = Duration::from_millis(100);

impl<'a> CountedRequest<'a> {
    /// A request of `method` of `service` with `deadline`, arrived now.
    pub(crate) fn start(
        methods: &'a Methods,
        service: &'static str,
        method: &'static MethodInfo,
        deadline: Instant,
    ) -> CountedRequest<'a> {
        let slot = methods.slot(service, method);
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
        CountedRequest {
            slot,
            started: Instant::now(),
            deadline,
            done: false,
        }
    }

    /// The request ended with `outcome`. Requests that did not run ([`Outcome::NotRun`]) are
    /// not timed.
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.done = true;
        self.end(outcome);
    }

    fn end(&self, outcome: Outcome) {
        self.slot.count(outcome);
        if outcome != Outcome::NotRun {
            self.slot.latency.observe(self.started.elapsed());
        }
        self.slot.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for CountedRequest<'_> {
    fn drop(&mut self) {
        if !self.done {
            let now = Instant::now();
            let outcome = if now + DEADLINE_SLACK >= self.deadline {
                Outcome::Timeout
            } else {
                Outcome::Cancelled
            };
            self.end(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static A: MethodInfo = MethodInfo::new("a");
    static B: MethodInfo = MethodInfo::new("b");

    #[test]
    fn each_method_has_its_own_slot_and_only_used_ones_are_listed() {
        let methods = Methods::default();
        methods.slot("S", &A).count(Outcome::Ok);
        methods.slot("S", &A).count(Outcome::Ok);
        methods.slot("S", &B).count(Outcome::Timeout);
        let mut used: Vec<_> = methods
            .used()
            .map(|(s, m, slot)| {
                let counts: Vec<u64> = slot
                    .outcomes
                    .iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .collect();
                (s, m, counts)
            })
            .collect();
        used.sort();
        assert_eq!(used.len(), 2);
        assert_eq!((used[0].0, used[0].1), ("S", "a"));
        assert_eq!(used[0].2[Outcome::Ok as usize], 2);
        assert_eq!(used[1].2[Outcome::Timeout as usize], 1);
        assert_eq!(used[1].2.iter().sum::<u64>(), 1);
    }

    #[test]
    fn a_failure_is_warned_once_per_window() {
        let slot = MethodSlot::default();
        assert_eq!(slot.may_warn(1_000), Some(0));
        assert_eq!(slot.may_warn(1_001), None);
        assert_eq!(slot.may_warn(5_000), None);
        assert_eq!(slot.may_warn(1_000 + WARN_EVERY_MS), Some(2));
    }

    #[test]
    fn outcome_labels_follow_all() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i, "{}", o.label());
        }
    }
}

//! Hedged calls ("The Tail at Scale"; the algorithm of tower's `hedge`): an idempotent call
//! whose first request has not been answered after a delay (a percentile of the method's recent
//! latencies, or a fixed time) sends a second request to another node of the target, takes the
//! first answer and drops the other (dropping a tarpc call sends its cancel, so the node still
//! working on it stops). Each second request draws from the node's retry budget, so under
//! overload hedging switches itself off.
//!
//! The path is taken only by calls that ask for a hedge, and it is boxed: the calls that do
//! not ask carry none of its state in their futures.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use cluster_helper::NodeId;

use super::call::{Plan, Sending, attempts};
use super::latency::MethodLatency;
use super::outgoing::Outgoing;
use super::pick::Route;
use super::role_set::RoleSet;
use crate::error::{Never, RpcError};
use crate::options::Strategy;
use crate::runtime::Rpc;
use crate::service::{MethodInfo, ServiceDef};

/// When a hedged call sends its second request: after a percentile of the method's recent
/// latencies ([`Hedge::percentile`]), or after a fixed delay ([`Hedge::after`]).
///
/// Hedging applies to idempotent methods only, and to calls through [`Any`](crate::Any) and
/// [`To`](crate::To) targets (over more than one node). It is asked for by the method
/// (`#[easy_rpc(idempotent, hedge)]`, or `hedge = 99` for another percentile), by the call
/// (`any("billing").hedge(Hedge::percentile(95.0))`, which overrides the method's), or for
/// every idempotent method of a node
/// ([`ClientOptions::hedge`](crate::ClientOptions::hedge), off by default). `Hedge::off()`
/// turns a method's hedging off for one target.
///
/// A call that has not been answered after the delay sends the same request to another node
/// of the target (one the call has not tried), takes whichever answer comes first and cancels
/// the other. At most one second request per call; each one draws from the node's retry budget
/// ([`ClientOptions::retry_budget`](crate::ClientOptions::retry_budget)), so when the role is
/// overloaded (and many calls are slow) hedging stops by itself. Each of the two requests is
/// rerouted and retried by the usual rules. With a percentile, a method hedges only once 20 of
/// its calls answered within the last one to two seconds (the percentile is of those).
///
/// Not hedged: [`ByKey`](crate::ByKey) calls (a second node would break the key's affinity:
/// the point of `by_key` is that one node holds the key's state), [`All`](crate::All) calls
/// (they already go to every node), and non-idempotent methods (a call that may have run is
/// never sent twice: the macro refuses `hedge` on them, and a target's `.hedge(..)` is ignored
/// for them, as its `.retries(..)` is). [`Node::hedge_stats`](crate::Node::hedge_stats) counts
/// the second requests.
///
/// ```
/// use std::time::Duration;
/// use easy_rpc::Hedge;
///
/// let p95 = Hedge::percentile(95.0);
/// assert_eq!(p95, Hedge::default());
/// let fixed = Hedge::after(Duration::from_millis(20));
/// assert_ne!(fixed, p95);
/// assert!(!Hedge::off().is_on());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hedge(NonZeroU32);

/// What a [`Hedge`] says, unpacked.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Off,
    Percentile(f64),
    After(Duration),
}

// A `Hedge` is packed in 32 bits (the kind in the top two, never zero), so that a call's plan
// carries it in what was padding: the plan, and every call's future, stay the same size.
const KIND: u32 = 3 << 30;
const OFF: u32 = 1 << 30;
const PERCENTILE: u32 = 2 << 30;
const AFTER: u32 = 3 << 30;
const VALUE: u32 = !KIND;

impl Hedge {
    /// The percentile the method option `hedge` uses without a value, and
    /// [`Hedge::default`]: 95.
    pub const DEFAULT_PERCENTILE: f64 = 95.0;

    /// The longest delay [`Hedge::after`] keeps (about 17.9 minutes); a longer one is cut to
    /// it.
    pub const MAX_DELAY: Duration = Duration::from_micros(VALUE as u64);

    const fn packed(kind: u32, value: u32) -> Hedge {
        match NonZeroU32::new(kind | value) {
            Some(v) => Hedge(v),
            None => unreachable!(),
        }
    }

    /// Sends the second request once the call has waited longer than `percentile` % of the
    /// method's recent calls took (`95.0`: the slowest 5 % are hedged), to a hundredth of a
    /// percent.
    ///
    /// ```
    /// let hedge = easy_rpc::Hedge::percentile(99.0);
    /// # assert!(hedge.is_on());
    /// ```
    ///
    /// # Panics
    ///
    /// Unless `0 < percentile < 100` (in a `const` or `static`, that is a compile error).
    pub const fn percentile(percentile: f64) -> Hedge {
        assert!(
            percentile > 0.0 && percentile < 100.0,
            "easy-rpc: a hedging percentile must be above 0 and below 100 (e.g. 95.0)"
        );
        // Rounded to the nearest hundredth (`f64::round` is not `const` in Rust 1.88).
        let hundredths = (percentile * 100.0 + 0.5) as u32;
        let hundredths = if hundredths < 1 {
            1
        } else if hundredths > 9_999 {
            9_999
        } else {
            hundredths
        };
        Hedge::packed(PERCENTILE, hundredths)
    }

    /// Sends the second request once the call has waited `delay` (to the microsecond, at
    /// most [`Hedge::MAX_DELAY`]), whatever the method's latencies. `Duration::ZERO` sends
    /// both at once (each call still drawing from the retry budget).
    ///
    /// ```
    /// let hedge = easy_rpc::Hedge::after(std::time::Duration::from_millis(50));
    /// # assert!(hedge.is_on());
    /// ```
    pub const fn after(delay: Duration) -> Hedge {
        let us = delay.as_micros();
        let us = if us > VALUE as u128 { VALUE } else { us as u32 };
        Hedge::packed(AFTER, us)
    }

    /// No hedging: as a target's option, turns off the hedging the method (or the node's
    /// [`ClientOptions::hedge`](crate::ClientOptions::hedge)) asks for.
    ///
    /// ```
    /// assert!(!easy_rpc::Hedge::off().is_on());
    /// ```
    pub const fn off() -> Hedge {
        Hedge::packed(OFF, 0)
    }

    /// Whether this hedges at all (everything but [`Hedge::off`]).
    ///
    /// ```
    /// assert!(easy_rpc::Hedge::default().is_on());
    /// ```
    pub const fn is_on(&self) -> bool {
        self.0.get() & KIND != OFF
    }

    fn kind(self) -> Kind {
        let value = self.0.get() & VALUE;
        match self.0.get() & KIND {
            PERCENTILE => Kind::Percentile(f64::from(value) / 100.0),
            AFTER => Kind::After(Duration::from_micros(u64::from(value))),
            _ => Kind::Off,
        }
    }
}

impl std::fmt::Debug for Hedge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind() {
            Kind::Off => f.write_str("Hedge::off()"),
            Kind::Percentile(p) => write!(f, "Hedge::percentile({p:?})"),
            Kind::After(d) => write!(f, "Hedge::after({d:?})"),
        }
    }
}

impl Default for Hedge {
    /// [`Hedge::percentile`] of [`Hedge::DEFAULT_PERCENTILE`] (95).
    fn default() -> Self {
        Hedge::percentile(Hedge::DEFAULT_PERCENTILE)
    }
}

/// What a node's hedging did, from [`Node::hedge_stats`](crate::Node::hedge_stats): counters
/// since the node started.
///
/// `sent` is the extra load hedging put on the servers (second requests); `won` of them
/// answered first, so the call did not wait for its first request.
///
/// ```no_run
/// # async fn example(node: easy_rpc::Node) {
/// let stats = node.hedge_stats();
/// println!(
///     "{} hedged calls, {} second requests ({} answered first), {} refused by the retry budget",
///     stats.calls, stats.sent, stats.won, stats.refused_by_budget
/// );
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HedgeStats {
    /// Calls that asked for a hedge (idempotent, through `any` or a direct target).
    pub calls: u64,
    /// Second requests sent: the extra requests hedging made.
    pub sent: u64,
    /// Calls whose second request answered first.
    pub won: u64,
    /// Second requests not sent because the retry budget was spent.
    pub refused_by_budget: u64,
    /// Second requests not sent because the target had no other node to send to.
    pub no_other_node: u64,
}

/// A node's hedging state: each hedged method's recent latencies, and the counters.
#[derive(Debug, Default)]
pub(crate) struct Hedging {
    /// By the address of the method's `static MethodInfo` (one per method, generated by the
    /// macro). Looked up only by calls that ask for a hedge.
    latencies: RwLock<std::collections::HashMap<usize, Arc<MethodLatency>>>,
    calls: AtomicU64,
    sent: AtomicU64,
    won: AtomicU64,
    refused_by_budget: AtomicU64,
    no_other_node: AtomicU64,
}

impl Hedging {
    /// The latencies of `method`'s calls, made on first use.
    fn latency(&self, method: &'static MethodInfo) -> Arc<MethodLatency> {
        let key = std::ptr::from_ref(method) as usize;
        if let Some(l) = self
            .latencies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return l.clone();
        }
        self.latencies
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .clone()
    }

    /// The counters.
    pub(crate) fn stats(&self) -> HedgeStats {
        HedgeStats {
            calls: self.calls.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            won: self.won.load(Ordering::Relaxed),
            refused_by_budget: self.refused_by_budget.load(Ordering::Relaxed),
            no_other_node: self.no_other_node.load(Ordering::Relaxed),
        }
    }
}

/// The nodes a hedged call's requests went to, shared by its two chains of attempts: the
/// second request goes to a node the first has not been sent to.
impl Sending for &Mutex<Vec<NodeId>> {
    fn avoid(&self) -> Vec<NodeId> {
        self.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn sending(&self, node: &NodeId) {
        self.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(node.clone());
    }
}

/// Awaits `attempts` and records, when it succeeds, how long it took from `start`.
async fn timed<T>(
    rpc: &Rpc,
    latency: &MethodLatency,
    start: Instant,
    attempts: impl Future<Output = Result<T, RpcError<Never>>>,
) -> Result<T, RpcError<Never>> {
    let result = attempts.await;
    if result.is_ok() {
        let end = Instant::now();
        latency.record(rpc.ms_at(end), end.saturating_duration_since(start));
    }
    result
}

/// One call that asked for `hedge` (see [`Hedge`]): [`call_one`](super::call_one)'s hedged
/// twin, which the target boxes. Like it, it deposits the call in the retry budget.
pub(crate) async fn call_hedged<S: ServiceDef>(
    rpc: Arc<Rpc>,
    set: Arc<RoleSet<S>>,
    method: &'static MethodInfo,
    req: Arc<Outgoing<S::Req>>,
    plan: Plan,
    hedge: Hedge,
) -> Result<(NodeId, S::Resp), RpcError<Never>> {
    rpc.budget.deposit();
    rpc.hedging.calls.fetch_add(1, Ordering::Relaxed);
    // Under the default strategy, both requests pick by latency (`Route::Hedged`): the first
    // then rarely goes to a node far slower than its peers, which would make every call it
    // gets a hedge. By pending requests such a node looks idle, since hedging ends its calls
    // early, and draws more of them: 18-40 % extra requests instead of 5-7 %.
    let plan = match plan.route {
        Route::Balanced(Strategy::P2c) => Plan {
            route: Route::Hedged,
            ..plan
        },
        _ => plan,
    };
    let latency = rpc.hedging.latency(method);
    let delay = match hedge.kind() {
        Kind::Off => None,
        Kind::After(delay) => Some(delay),
        Kind::Percentile(p) => latency.percentile(p, rpc.ms_at(plan.now)),
    };
    let sent_to = Mutex::new(Vec::new());
    let first = timed(
        &rpc,
        &latency,
        plan.now,
        attempts(
            rpc.clone(),
            set.clone(),
            method,
            req.clone(),
            plan,
            &sent_to,
        ),
    );
    let fire = match delay {
        Some(delay) => crate::deadline::after(plan.now, delay),
        None => return first.await,
    };
    if fire >= plan.deadline {
        return first.await;
    }
    let mut first = std::pin::pin!(first);
    tokio::select! {
        biased;
        result = &mut first => return result,
        () = tokio::time::sleep_until(fire.into()) => {}
    }
    let now = Instant::now();
    let tried = sent_to.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // Another node to send to (a direct target of one node, or a role of one, has none), then
    // room in the budget: a hedge that cannot be sent takes no token.
    if !set.all(&rpc).iter().any(|e| !tried.contains(e.node())) {
        rpc.hedging.no_other_node.fetch_add(1, Ordering::Relaxed);
        return first.await;
    }
    if !rpc.budget.withdraw(rpc.ms_at(now)) {
        rpc.hedging
            .refused_by_budget
            .fetch_add(1, Ordering::Relaxed);
        return first.await;
    }
    rpc.hedging.sent.fetch_add(1, Ordering::Relaxed);
    crate::metrics::hedged(&rpc, S::NAME, method);
    let second_plan = Plan {
        now,
        // The first request already waits for a node if the call asked to.
        wait: false,
        ..plan
    };
    let second = timed(
        &rpc,
        &latency,
        now,
        attempts(rpc.clone(), set.clone(), method, req, second_plan, &sent_to),
    );
    let mut second = std::pin::pin!(second);
    // The first answer wins; the other request is dropped (tarpc sends its cancel). If one
    // fails, the call waits for the other; if both fail, it returns the first request's error.
    // `(answer, answered by the second, the first dropped unanswered)`.
    let (result, hedge_won, first_dropped) = tokio::select! {
        result = &mut first => match result {
            Ok(answer) => (Ok(answer), false, false),
            Err(error) => match second.await {
                Ok(answer) => (Ok(answer), true, false),
                Err(_) => (Err(error), false, false),
            },
        },
        result = &mut second => match result {
            Ok(answer) => (Ok(answer), true, true),
            Err(_) => (first.await, false, false),
        },
    };
    if hedge_won {
        rpc.hedging.won.fetch_add(1, Ordering::Relaxed);
    }
    if first_dropped {
        // The first request was dropped: its node had not answered after this long. Its
        // latency estimate learns it (tower's peak-EWMA records a dropped request too), so a
        // balancer by latency keeps seeing a slow node that hedging answers around; otherwise
        // the node would look idle (its calls end early) and draw more of them.
        if let Some(slow) = tried.last()
            && let Some(endpoint) = set.all(&rpc).into_iter().find(|e| e.node() == slow)
            && (rpc.options.strategy == Strategy::P2cPeakEwma || endpoint.peer.ewma.is_measured())
        {
            let now = Instant::now();
            endpoint
                .peer
                .ewma
                .observe(rpc.ms_at(now), now.saturating_duration_since(plan.now));
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "above 0 and below 100")]
    fn a_percentile_of_100_is_refused() {
        let _ = Hedge::percentile(100.0);
    }

    #[test]
    #[should_panic(expected = "above 0 and below 100")]
    fn a_nan_percentile_is_refused() {
        let _ = Hedge::percentile(f64::NAN);
    }

    #[test]
    fn hedges_pack_and_unpack() {
        assert_eq!(Hedge::default().kind(), Kind::Percentile(95.0));
        assert_eq!(Hedge::percentile(99.95).kind(), Kind::Percentile(99.95));
        assert_eq!(Hedge::percentile(0.001).kind(), Kind::Percentile(0.01));
        assert_eq!(Hedge::percentile(99.999).kind(), Kind::Percentile(99.99));
        assert_eq!(
            Hedge::after(Duration::from_millis(20)).kind(),
            Kind::After(Duration::from_millis(20))
        );
        assert_eq!(
            Hedge::after(Duration::ZERO).kind(),
            Kind::After(Duration::ZERO)
        );
        assert_eq!(
            Hedge::after(Duration::MAX).kind(),
            Kind::After(Hedge::MAX_DELAY)
        );
        assert_eq!(Hedge::off().kind(), Kind::Off);
        assert!(!Hedge::off().is_on());
        assert!(Hedge::after(Duration::ZERO).is_on());
        assert_eq!(format!("{:?}", Hedge::default()), "Hedge::percentile(95.0)");
        assert_eq!(std::mem::size_of::<Option<Hedge>>(), 4);
    }

    #[test]
    fn stats_count() {
        let h = Hedging::default();
        assert_eq!(h.stats(), HedgeStats::default());
        h.sent.fetch_add(2, Ordering::Relaxed);
        h.won.fetch_add(1, Ordering::Relaxed);
        assert_eq!(h.stats().sent, 2);
        assert_eq!(h.stats().won, 1);
    }

    #[test]
    fn one_latency_per_method() {
        static A: MethodInfo = MethodInfo::new("a").idempotent();
        static B: MethodInfo = MethodInfo::new("b").idempotent();
        let h = Hedging::default();
        assert!(Arc::ptr_eq(&h.latency(&A), &h.latency(&A)));
        assert!(!Arc::ptr_eq(&h.latency(&A), &h.latency(&B)));
    }
}

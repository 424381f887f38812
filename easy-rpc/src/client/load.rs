//! Load measures of one node, as seen from this node: calls in flight (tower's
//! `PendingRequests`) and the peak EWMA of latency (tower's `PeakEwma`). Both implement
//! [`tower::load::Load`], which is what the picker compares.
//!
//! They are atomics, not tower's `&mut` services: every caller of the process shares them
//! without a lock (see ARCHITECTURE.md, "Picking a node").

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tower::load::Load;

/// Calls in flight from this node to one node.
#[derive(Debug, Default)]
pub(crate) struct PendingRequests(AtomicUsize);

impl PendingRequests {
    /// Counts one call until the guard is dropped.
    pub(crate) fn start(&self) -> Pending<'_> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Pending(&self.0)
    }
}

impl Load for PendingRequests {
    type Metric = usize;

    fn load(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One call in flight; uncounted when dropped.
#[derive(Debug)]
pub(crate) struct Pending<'a>(&'a AtomicUsize);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How fast an estimate decays without new samples: it falls to 1/e in this time, so a node
/// that was slow once is tried again (tower's `PeakEwma` default decay is 10 s; calls here
/// are short, so 1 s).
pub(crate) const DECAY_MS: f64 = 1_000.0;

/// An unknown (or fully decayed) latency counts as this, so a new node gets tried.
pub(crate) const DEFAULT_RTT_NS: f64 = 1_000_000.0;

/// The peak exponentially weighted moving average of one node's latency: a slower sample
/// replaces the estimate at once, a faster one moves it by 1/8; without samples it decays
/// toward zero with time constant [`DECAY_MS`]. Time is given by the caller (milliseconds
/// since the node's clock started), so it can be tested without waiting.
#[derive(Debug, Default)]
pub(crate) struct PeakEwma {
    estimate_ns: AtomicU64,
    at_ms: AtomicU64,
    /// Set once a peak-EWMA pick has looked at this node: only then are samples recorded.
    measured: AtomicBool,
}

impl PeakEwma {
    /// The estimate at `now_ms`, decayed since its last update.
    pub(crate) fn estimate(&self, now_ms: u64) -> f64 {
        let est = self.estimate_ns.load(Ordering::Relaxed) as f64;
        let age = now_ms.saturating_sub(self.at_ms.load(Ordering::Relaxed)) as f64;
        est * (-age / DECAY_MS).exp()
    }

    /// Records a call's round trip time, taken at `now_ms`.
    pub(crate) fn observe(&self, now_ms: u64, rtt: Duration) {
        let rtt = rtt.as_nanos() as f64;
        let old = self.estimate(now_ms);
        // Peak: jump up at once, come down gradually.
        let new = if rtt > old {
            rtt
        } else {
            old + (rtt - old) / 8.0
        };
        self.estimate_ns.store(new as u64, Ordering::Relaxed);
        self.at_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Whether samples are recorded for this node.
    pub(crate) fn is_measured(&self) -> bool {
        self.measured.load(Ordering::Relaxed)
    }

    /// Starts recording samples (a peak-EWMA pick looked at the node).
    pub(crate) fn start_measuring(&self) {
        if !self.is_measured() {
            self.measured.store(true, Ordering::Relaxed);
        }
    }

    /// The load of a node with this estimate and `pending` calls, at `now_ms`.
    pub(crate) fn at<'a>(&'a self, pending: &'a PendingRequests, now_ms: u64) -> PeakEwmaLoad<'a> {
        PeakEwmaLoad {
            ewma: self,
            pending,
            now_ms,
        }
    }
}

/// tower's peak-EWMA cost at one instant: the latency estimate (at least
/// [`DEFAULT_RTT_NS`]) times the calls in flight plus one.
#[derive(Debug)]
pub(crate) struct PeakEwmaLoad<'a> {
    ewma: &'a PeakEwma,
    pending: &'a PendingRequests,
    now_ms: u64,
}

impl Load for PeakEwmaLoad<'_> {
    type Metric = f64;

    fn load(&self) -> f64 {
        let estimate = self.ewma.estimate(self.now_ms).max(DEFAULT_RTT_NS);
        estimate * (self.pending.load() + 1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_requests_count_calls_until_dropped() {
        let p = PendingRequests::default();
        let a = p.start();
        let b = p.start();
        assert_eq!(p.load(), 2);
        drop(a);
        assert_eq!(p.load(), 1);
        drop(b);
        assert_eq!(p.load(), 0);
    }

    #[test]
    fn peak_ewma_jumps_up_at_once_and_comes_down_slowly() {
        let e = PeakEwma::default();
        e.observe(0, Duration::from_millis(10));
        assert_eq!(e.estimate(0), 10_000_000.0);
        // A slower sample replaces the estimate.
        e.observe(0, Duration::from_millis(50));
        assert_eq!(e.estimate(0), 50_000_000.0);
        // A faster one moves it by an eighth of the difference.
        e.observe(0, Duration::from_millis(10));
        assert_eq!(e.estimate(0), 45_000_000.0);
    }

    #[test]
    fn peak_ewma_decays_over_injected_time() {
        let e = PeakEwma::default();
        e.observe(1_000, Duration::from_millis(100));
        let at = |ms| e.estimate(ms) / 100_000_000.0;
        assert_eq!(at(1_000), 1.0);
        // One time constant later: 1/e of it.
        assert!((at(2_000) - (-1.0f64).exp()).abs() < 1e-9, "{}", at(2_000));
        // Five: under 1 %.
        assert!(at(6_000) < 0.007);
        // A clock that reads earlier than the sample does not make it grow.
        assert_eq!(at(500), 1.0);
        // A sample after the decay starts from the decayed estimate (peak: the new one wins).
        e.observe(3_000, Duration::from_millis(20));
        assert_eq!(e.estimate(3_000), 20_000_000.0);
    }

    #[test]
    fn peak_ewma_load_is_estimate_times_pending_plus_one() {
        let e = PeakEwma::default();
        let p = PendingRequests::default();
        // Unknown latency: the default, so a new node is tried.
        assert_eq!(e.at(&p, 0).load(), DEFAULT_RTT_NS);
        e.observe(0, Duration::from_millis(4));
        let _one = p.start();
        let _two = p.start();
        assert_eq!(e.at(&p, 0).load(), 4_000_000.0 * 3.0);
        // Fully decayed: back to the default.
        assert_eq!(e.at(&p, 60_000).load(), DEFAULT_RTT_NS * 3.0);
    }
}

//! The recent latencies of one method's calls, for the hedging delay: a histogram on atomics
//! over a rotating window (the current period and the one before it), read as a percentile.
//! tower's `hedge` keeps the same statistic in an `hdrhistogram` behind a lock; here recording
//! is two relaxed atomic adds, and only calls that may be hedged record at all.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two: a bucket spans at most 1/8 of its values (12.5 %).
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// The largest latency told apart, in microseconds (about 19 hours); longer ones count as it.
const MAX_EXP: u32 = 36;
/// Buckets: one per microsecond below [`SUB`], then [`SUB`] per power of two up to
/// `2^MAX_EXP`.
const BUCKETS: usize = SUB + (MAX_EXP - SUB_BITS + 1) as usize * SUB;
/// How long a window lasts. A percentile is read over the current window and the one before
/// it: between one and two periods of calls.
pub(crate) const PERIOD_MS: u64 = 1_000;
/// Fewer recent calls than this, and there is no percentile (no hedging yet): a handful of
/// samples says little about a tail (tower's `min_data_points`).
pub(crate) const MIN_DATA_POINTS: u32 = 20;

/// The bucket of a latency of `us` microseconds.
fn bucket(us: u64) -> usize {
    let us = us.min((1 << (MAX_EXP + 1)) - 1);
    if us < SUB as u64 {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros();
    let sub = (us >> (exp - SUB_BITS)) as usize - SUB;
    SUB + (exp - SUB_BITS) as usize * SUB + sub
}

/// The largest latency, in microseconds, that falls into bucket `i` (a percentile read from
/// the histogram errs towards hedging later, never earlier).
fn upper(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let exp = ((i - SUB) / SUB) as u32 + SUB_BITS;
    let sub = ((i - SUB) % SUB) as u64;
    ((SUB as u64 + sub + 1) << (exp - SUB_BITS)) - 1
}

/// One period's counts.
#[derive(Debug)]
struct Window {
    /// Which period the counts are of, plus one (0: never used).
    period: AtomicU64,
    total: AtomicU32,
    counts: [AtomicU32; BUCKETS],
}

impl Window {
    fn new() -> Self {
        Window {
            period: AtomicU64::new(0),
            total: AtomicU32::new(0),
            counts: [const { AtomicU32::new(0) }; BUCKETS],
        }
    }
}

/// The latencies of one method's recent calls (per node).
#[derive(Debug)]
pub(crate) struct MethodLatency {
    windows: [Window; 2],
}

impl Default for MethodLatency {
    fn default() -> Self {
        MethodLatency {
            windows: [Window::new(), Window::new()],
        }
    }
}

impl MethodLatency {
    /// A call answered after `took`, at `now_ms` on the node's millisecond clock.
    pub(crate) fn record(&self, now_ms: u64, took: Duration) {
        let period = now_ms / PERIOD_MS + 1;
        let window = &self.windows[(period % 2) as usize];
        let seen = window.period.load(Ordering::Acquire);
        if seen != period {
            if seen > period {
                // A late sample of a period that has been replaced: drop it.
                return;
            }
            // The first sample of a new period empties the window of the period two before.
            // Samples recorded by other threads while it is emptied may be lost or counted
            // in the new period: a statistic, not an account.
            if window
                .period
                .compare_exchange(seen, period, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                window.total.store(0, Ordering::Relaxed);
                for c in &window.counts {
                    c.store(0, Ordering::Relaxed);
                }
            }
        }
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        window.counts[bucket(us)].fetch_add(1, Ordering::Relaxed);
        window.total.fetch_add(1, Ordering::Relaxed);
    }

    /// The latency under which `percentile` % of the calls of the current and the previous
    /// period answered, at `now_ms`; `None` with fewer than [`MIN_DATA_POINTS`] of them.
    pub(crate) fn percentile(&self, percentile: f64, now_ms: u64) -> Option<Duration> {
        let period = now_ms / PERIOD_MS + 1;
        let recent: Vec<&Window> = self
            .windows
            .iter()
            .filter(|w| {
                let p = w.period.load(Ordering::Acquire);
                p == period || p + 1 == period
            })
            .collect();
        let total: u64 = recent
            .iter()
            .map(|w| u64::from(w.total.load(Ordering::Relaxed)))
            .sum();
        if total < u64::from(MIN_DATA_POINTS) {
            return None;
        }
        let rank = ((total as f64 * percentile / 100.0).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for i in 0..BUCKETS {
            seen += recent
                .iter()
                .map(|w| u64::from(w.counts[i].load(Ordering::Relaxed)))
                .sum::<u64>();
            if seen >= rank {
                return Some(Duration::from_micros(upper(i)));
            }
        }
        // The totals ran ahead of the counts (a sample being recorded): the largest seen.
        Some(Duration::from_micros(upper(BUCKETS - 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_latency_in_order_within_an_eighth() {
        let mut last = 0;
        for us in (0..100_000u64).chain([1 << 30, 1 << 36, u64::MAX]) {
            let b = bucket(us);
            assert!(b >= last, "{us}");
            assert!(b < BUCKETS);
            last = b;
            let hi = upper(b);
            assert!(
                hi >= us.min(upper(BUCKETS - 1)),
                "{us} in bucket {b} up to {hi}"
            );
            if us >= SUB as u64 && us < 1 << 36 {
                assert!(hi as f64 <= us as f64 * 1.125 + 1.0, "{us} -> {hi}");
            }
        }
        for i in 1..BUCKETS {
            assert_eq!(bucket(upper(i - 1) + 1), i);
        }
    }

    #[test]
    fn no_percentile_before_enough_calls() {
        let l = MethodLatency::default();
        for _ in 0..MIN_DATA_POINTS - 1 {
            l.record(10, Duration::from_millis(2));
        }
        assert_eq!(l.percentile(95.0, 10), None);
        l.record(10, Duration::from_millis(2));
        let p = l.percentile(95.0, 10).unwrap();
        assert!(
            p >= Duration::from_millis(2) && p <= Duration::from_micros(2_250),
            "{p:?}"
        );
    }

    #[test]
    fn the_percentile_is_of_the_recent_calls() {
        let l = MethodLatency::default();
        // 90 fast calls and 10 slow ones.
        for i in 0..100u64 {
            let ms = if i % 10 == 0 { 40 } else { 2 };
            l.record(500, Duration::from_millis(ms));
        }
        let p50 = l.percentile(50.0, 500).unwrap();
        let p95 = l.percentile(95.0, 500).unwrap();
        assert!(p50 < Duration::from_micros(2_300), "{p50:?}");
        assert!(p95 >= Duration::from_millis(40), "{p95:?}");
        // The next period still sees them (the previous window)...
        assert_eq!(l.percentile(95.0, 1_500), Some(p95));
        // ...and a new period's samples replace the window of two periods before.
        for _ in 0..100 {
            l.record(2_100, Duration::from_millis(3));
        }
        let p95 = l.percentile(95.0, 2_100).unwrap();
        assert!(p95 < Duration::from_micros(3_400), "{p95:?}");
        // With nothing recorded for two periods there is no percentile.
        assert_eq!(l.percentile(95.0, 4_000), None);
    }
}

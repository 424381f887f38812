//! [`Latency`]: a histogram of durations whose buckets are atomics, so that recording one is
//! two relaxed additions and no lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The buckets' upper bounds, in microseconds (0.5 ms to 30 s, about 2.5x apart); a last
/// bucket takes everything above.
pub(crate) const BOUNDS_US: [u64; 15] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

/// Durations counted by bucket, and their sum.
#[derive(Debug, Default)]
pub(crate) struct Latency {
    /// Observations per bucket (not cumulative), the last one over every bound.
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    /// The sum of the observations, in microseconds.
    sum_us: AtomicU64,
}

impl Latency {
    /// Counts one duration.
    pub(crate) fn observe(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US.partition_point(|&bound| bound < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The buckets as the encoder takes them (upper bound in seconds, count in that bucket
    /// alone), the number of observations and their sum in seconds.
    pub(crate) fn read(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let mut buckets = Vec::with_capacity(self.buckets.len());
        let mut count = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            count += n;
            let bound = BOUNDS_US
                .get(i)
                .map_or(f64::INFINITY, |&us| us as f64 / 1e6);
            buckets.push((bound, n));
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        (buckets, count, sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_first_bucket_that_holds_them() {
        let h = Latency::default();
        h.observe(Duration::from_micros(500)); // on the bound: the 0.5 ms bucket
        h.observe(Duration::from_micros(501));
        h.observe(Duration::from_secs(60));
        let (buckets, count, sum) = h.read();
        assert_eq!(count, 3);
        assert_eq!(buckets[0], (0.0005, 1));
        assert_eq!(buckets[1], (0.001, 1));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1)));
        assert!((sum - 60.001001).abs() < 1e-9, "{sum}");
    }
}

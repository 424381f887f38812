//! Deadlines that never overflow: every `Instant + Duration` of the crate goes through
//! [`after`] (and deadlines that arrive from the network are capped by the codec).
//!
//! tarpc keeps deadlines in a timer wheel that holds at most about two years (2^36 ms) and
//! panics beyond it; `Instant + Duration::MAX` overflows. So a timeout is capped at
//! [`MAX_TIMEOUT`] (a year): "wait forever" (`Duration::MAX`) means "wait a year".

use std::time::{Duration, Instant};

/// The longest timeout a call, a connection attempt or a deadline from the network gets: one
/// year. Longer ones (up to `Duration::MAX`) are treated as this.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// `now + timeout`, with `timeout` capped at [`MAX_TIMEOUT`].
pub(crate) fn after(now: Instant, timeout: Duration) -> Instant {
    // A year after any `Instant` a program can hold fits in every platform's `Instant`.
    now + timeout.min(MAX_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturates_instead_of_overflowing() {
        let now = Instant::now();
        assert_eq!(after(now, Duration::MAX), now + MAX_TIMEOUT);
        assert_eq!(
            after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
    }
}

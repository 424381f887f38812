//! The retry budget: the node's calls may add at most a fraction of themselves in retries
//! (`ClientOptions::retry_budget`, 20 %), plus a small floor a second
//! (`ClientOptions::min_retries_per_sec`) so that a node that calls rarely can still retry.
//! When every node of a role is slow, retries of what may have run would multiply the work on
//! it; the budget caps that multiplication (the idea of Finagle's retry budget and tower's
//! `TpsBudget`). Reroutes of calls that provably did not run are not budgeted: they are at
//! most `reroutes` per call and cost the node that refused them no work, and a budget on them
//! would fail calls that another node had room for (during churn, or under overload).
//!
//! Each call deposits the fraction of a token; a retry withdraws a whole one. The per-call cost
//! is one relaxed load (and an add while the budget is below its cap).

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

/// Milli-tokens per token.
const TOKEN: i64 = 1000;
/// The most retries the budget saves up (so that a long healthy spell does not buy an
/// unbounded burst of retries later).
const CAP_TOKENS: i64 = 100;

/// One node's retry budget.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    /// Milli-tokens saved up.
    tokens: AtomicI64,
    /// Milli-tokens each call deposits (the budget's fraction of a token).
    per_call: i64,
    /// The floor: retries a second allowed whatever the calls.
    min_per_sec: u32,
    floor: Mutex<Floor>,
}

/// Tokens of the floor, refilled with time.
#[derive(Debug)]
struct Floor {
    tokens: f64,
    at_ms: u64,
}

impl RetryBudget {
    /// A budget of `fraction` of the calls (0.2: one retry per five calls) plus `min_per_sec`
    /// retries a second.
    pub(crate) fn new(fraction: f64, min_per_sec: u32) -> Self {
        RetryBudget {
            tokens: AtomicI64::new(0),
            per_call: (fraction.clamp(0.0, 1.0) * TOKEN as f64).round() as i64,
            min_per_sec,
            floor: Mutex::new(Floor {
                tokens: f64::from(min_per_sec),
                at_ms: 0,
            }),
        }
    }

    /// A call was made.
    #[inline]
    pub(crate) fn deposit(&self) {
        if self.per_call > 0 && self.tokens.load(Ordering::Relaxed) < CAP_TOKENS * TOKEN {
            self.tokens.fetch_add(self.per_call, Ordering::Relaxed);
        }
    }

    /// Takes one retry from the budget at `now_ms` (the node's millisecond clock); `false`
    /// when it is spent.
    pub(crate) fn withdraw(&self, now_ms: u64) -> bool {
        let mut have = self.tokens.load(Ordering::Relaxed);
        while have >= TOKEN {
            match self.tokens.compare_exchange_weak(
                have,
                have - TOKEN,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => have = now,
            }
        }
        if self.min_per_sec == 0 {
            return false;
        }
        let mut floor = self.floor.lock().unwrap_or_else(|p| p.into_inner());
        let per_sec = f64::from(self.min_per_sec);
        let elapsed = now_ms.saturating_sub(floor.at_ms) as f64 / 1000.0;
        floor.tokens = (floor.tokens + elapsed * per_sec).min(per_sec);
        floor.at_ms = now_ms.max(floor.at_ms);
        if floor.tokens >= 1.0 {
            floor.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_a_fraction_of_the_calls() {
        let b = RetryBudget::new(0.2, 0);
        for _ in 0..100 {
            b.deposit();
        }
        let granted = (0..100).filter(|_| b.withdraw(0)).count();
        assert_eq!(granted, 20);
        // Five more calls, one more retry.
        for _ in 0..5 {
            b.deposit();
        }
        assert!(b.withdraw(0));
        assert!(!b.withdraw(0));
    }

    #[test]
    fn the_floor_allows_a_few_retries_a_second_without_calls() {
        let b = RetryBudget::new(0.2, 10);
        let granted = (0..100).filter(|_| b.withdraw(1_000)).count();
        assert_eq!(granted, 10, "the first second's floor");
        assert!(!b.withdraw(1_000));
        // Half a second later, five more.
        let granted = (0..100).filter(|_| b.withdraw(1_500)).count();
        assert_eq!(granted, 5);
    }

    #[test]
    fn savings_are_capped() {
        let b = RetryBudget::new(1.0, 0);
        for _ in 0..10_000 {
            b.deposit();
        }
        let granted = (0..10_000).filter(|_| b.withdraw(0)).count();
        assert_eq!(granted as i64, CAP_TOKENS);
    }
}

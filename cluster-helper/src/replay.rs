//! Replay protection for gossip: a sliding window of the packet counters seen from each
//! sender (as WireGuard and IPsec keep, RFC 6479), for a bounded number of senders.
//!
//! Every sealed gossip packet carries its sender's random id (new at each start) and a counter
//! that the sender increments for every packet, both authenticated. A packet whose (sender,
//! counter) was already accepted, or whose counter is too far behind the sender's newest, is a
//! replay. Packets older than the maximum packet age are refused before they get here (see
//! `transport.rs`), so a sender not heard from for twice that age can be forgotten safely.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Words of the window's bitmap.
const WORDS: usize = 16;
/// Bits of the bitmap; the window accepts counters up to `BITS - 64` behind the newest.
const BITS: u64 = WORDS as u64 * 64;
/// How far behind the newest counter a packet may be (UDP reorders a little, not this much).
pub(crate) const WINDOW: u64 = BITS - 64;
/// How many senders are tracked at most. Only nodes holding the cluster key create senders,
/// so this bounds memory against a very large cluster, not against strangers.
pub(crate) const MAX_SENDERS: usize = 4096;

/// The counters seen from one sender (RFC 6479: a ring of bitmap words, no shifting).
#[derive(Debug)]
struct Window {
    /// The highest counter accepted.
    top: u64,
    bitmap: [u64; WORDS],
}

impl Window {
    fn new(first: u64) -> Window {
        let mut w = Window {
            top: first,
            bitmap: [0; WORDS],
        };
        w.mark(first);
        w
    }

    fn mark(&mut self, counter: u64) {
        let word = (counter / 64) as usize % WORDS;
        self.bitmap[word] |= 1 << (counter % 64);
    }

    /// Accepts `counter` once: false if it was seen, or is too old to tell.
    fn accept(&mut self, counter: u64) -> bool {
        if counter > self.top {
            let current = self.top / 64;
            let new = counter / 64;
            let clear = (new - current).min(WORDS as u64);
            for i in 1..=clear {
                self.bitmap[((current + i) % WORDS as u64) as usize] = 0;
            }
            self.top = counter;
            self.mark(counter);
            return true;
        }
        if self.top - counter >= WINDOW {
            return false;
        }
        let word = (counter / 64) as usize % WORDS;
        let bit = 1 << (counter % 64);
        if self.bitmap[word] & bit != 0 {
            return false;
        }
        self.bitmap[word] |= bit;
        true
    }
}

#[derive(Debug)]
struct Sender {
    window: Window,
    last_seen: Instant,
}

/// The replay windows of every recent sender.
#[derive(Debug)]
pub(crate) struct ReplayGuard {
    senders: HashMap<u64, Sender>,
    /// Senders not heard from for this long are forgotten first when the table is full.
    forget_after: Duration,
    max_senders: usize,
}

impl ReplayGuard {
    /// A guard for packets at most `max_age` old, tracking at most `max_senders` senders
    /// ([`MAX_SENDERS`] for a node).
    pub(crate) fn with_capacity(max_age: Duration, max_senders: usize) -> ReplayGuard {
        ReplayGuard {
            senders: HashMap::new(),
            forget_after: max_age.saturating_mul(2),
            max_senders,
        }
    }

    /// Whether the authenticated packet `counter` of `sender` is new (and records it).
    pub(crate) fn accept(&mut self, sender: u64, counter: u64, now: Instant) -> bool {
        if let Some(s) = self.senders.get_mut(&sender) {
            let fresh = s.window.accept(counter);
            if fresh {
                s.last_seen = now;
            }
            return fresh;
        }
        if self.senders.len() >= self.max_senders {
            self.evict(now);
        }
        self.senders.insert(
            sender,
            Sender {
                window: Window::new(counter),
                last_seen: now,
            },
        );
        true
    }

    /// Makes room for one sender: forgets those silent for longer than a packet may be old
    /// (their packets are refused as stale anyway), else the one silent the longest.
    fn evict(&mut self, now: Instant) {
        let forget_after = self.forget_after;
        self.senders
            .retain(|_, s| now.saturating_duration_since(s.last_seen) <= forget_after);
        if self.senders.len() >= self.max_senders
            && let Some(oldest) = self
                .senders
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(id, _)| *id)
        {
            tracing::debug!("gossip replay table full: forgetting the least recent sender");
            self.senders.remove(&oldest);
        }
    }

    /// How many senders are tracked.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.senders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_counter_is_accepted_once_in_any_order() {
        let mut w = Window::new(5);
        assert!(!w.accept(5));
        for c in [7, 6, 100, 50, 99, 8] {
            assert!(w.accept(c), "{c}");
            assert!(!w.accept(c), "{c} again");
        }
        // Not seen, still in the window.
        assert!(w.accept(60));
        // Too far behind the newest to tell: refused.
        assert!(w.accept(100 + WINDOW + 10));
        assert!(!w.accept(100));
        assert!(!w.accept(101));
        // Just inside the window.
        assert!(w.accept(100 + 10 + 1));
    }

    #[test]
    fn a_big_jump_clears_the_window() {
        let mut w = Window::new(0);
        for c in 1..2000 {
            assert!(w.accept(c));
        }
        assert!(w.accept(1_000_000));
        assert!(!w.accept(1_000_000));
        // Everything within the window below the new top is unseen.
        for c in (1_000_000 - WINDOW + 1)..1_000_000 {
            assert!(w.accept(c), "{c}");
        }
        for c in (1_000_000 - WINDOW + 1)..=1_000_000 {
            assert!(!w.accept(c), "{c} replayed");
        }
    }

    #[test]
    fn senders_are_separate_and_bounded() {
        let now = Instant::now();
        let mut g = ReplayGuard::with_capacity(Duration::from_secs(10), 3);
        assert!(g.accept(1, 0, now));
        assert!(g.accept(2, 0, now));
        assert!(!g.accept(1, 0, now));
        assert!(g.accept(1, 1, now));
        let later = now + Duration::from_secs(1);
        assert!(g.accept(3, 0, later));
        assert!(g.accept(2, 1, later));
        // Full: the least recently seen (1) goes.
        assert!(g.accept(4, 0, later));
        assert_eq!(g.len(), 3);
        assert!(!g.accept(2, 1, later), "still tracked");
        // Much later: every silent sender is forgotten at once.
        let much_later = later + Duration::from_secs(60);
        assert!(g.accept(5, 0, much_later));
        assert_eq!(g.len(), 1);
    }
}

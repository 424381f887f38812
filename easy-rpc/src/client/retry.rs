//! What a call does after one attempt failed: send it to another node (*reroute*, for a call
//! that provably never ran), send it again after a backoff (*retry*, for an idempotent call
//! whose connection was lost), or give up. A pure state machine over the attempt's outcome and
//! the time: no sockets, no sleeping, so every decision is tested below.

use std::time::{Duration, Instant};

use crate::error::RpcError;
use crate::options::ClientOptions;
use crate::service::MethodInfo;

/// What one failed attempt says about the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// No server ran it (connect refused or timed out, refused at the handshake, answered
    /// "not run"): it may go anywhere else.
    NotRun,
    /// The connection broke after it was sent: it may have run.
    Lost,
    /// The attempt ran out of its own time (an attempt timeout shorter than the call's
    /// deadline): it may have run, and may still be running.
    TimedOut,
    /// Anything else (a timeout after sending, the server failed it, a codec error): sending
    /// it again would not help or would not be safe.
    Failed,
}

impl Outcome {
    /// The outcome of an attempt that failed with `error`: [`Outcome::Failed`] for a client
    /// layer's own error ([`RpcError::Layer`]), else [`Outcome::NotRun`] exactly when
    /// [`RpcError::never_reached_server`] says so, [`Outcome::Lost`] for
    /// [`RpcError::NodeDown`].
    pub(crate) fn of<E>(error: &RpcError<E>) -> Outcome {
        if matches!(error, RpcError::Layer { .. }) {
            // A client layer's own error: the node's layers are the same for every node, so
            // sending elsewhere would meet the same refusal.
            Outcome::Failed
        } else if error.never_reached_server() {
            Outcome::NotRun
        } else if matches!(error, RpcError::NodeDown { .. }) {
            Outcome::Lost
        } else {
            Outcome::Failed
        }
    }
}

/// What to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Send it to another node, now.
    Reroute,
    /// Send it again, to another node, after this pause (a call with no other node left
    /// returns its error instead of waiting).
    Retry(Duration),
    /// Return the error.
    Stop,
}

/// The budget of one call: reroutes left, retries left, the next backoff.
#[derive(Clone, Debug)]
pub(crate) struct Retry {
    reroutes: u32,
    retries: u32,
    backoff: Duration,
}

impl Retry {
    /// The policy of a call of `method` to any node of a role: up to `reroutes` reroutes;
    /// for an idempotent method up to `per_call`, else the method's, else the node's
    /// `retries` retries, the backoff doubling from `backoff`.
    pub(crate) fn new(options: &ClientOptions, method: &MethodInfo, per_call: Option<u32>) -> Self {
        Retry {
            reroutes: options.reroutes,
            retries: if method.idempotent {
                per_call.or(method.retries).unwrap_or(options.retries)
            } else {
                0
            },
            backoff: options.backoff,
        }
    }

    /// The policy of a call to one given node (each node's call of `all`): an idempotent call
    /// is sent once more, at once, after a lost connection; nothing else is.
    pub(crate) fn same_node(idempotent: bool) -> Self {
        Retry {
            reroutes: 0,
            retries: u32::from(idempotent),
            backoff: Duration::ZERO,
        }
    }

    /// Decides after an attempt that ended with `outcome` at `now`, for a call due by
    /// `deadline`. A retry's pause is the most to wait: the caller draws the actual pause
    /// below it (full jitter).
    pub(crate) fn next(&mut self, outcome: Outcome, now: Instant, deadline: Instant) -> Next {
        match outcome {
            Outcome::NotRun if self.reroutes > 0 && now < deadline => {
                self.reroutes -= 1;
                Next::Reroute
            }
            Outcome::Lost | Outcome::TimedOut
                if self.retries > 0 && crate::deadline::after(now, self.backoff) < deadline =>
            {
                self.retries -= 1;
                let pause = self.backoff;
                self.backoff = self.backoff.saturating_mul(2);
                Next::Retry(pause)
            }
            _ => Next::Stop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static PLAIN: MethodInfo = MethodInfo::new("plain");
    static IDEMPOTENT: MethodInfo = MethodInfo::new("idem").idempotent();
    static FIVE: MethodInfo = MethodInfo::new("five").idempotent().retries(5);

    fn method(idempotent: bool) -> &'static MethodInfo {
        if idempotent { &IDEMPOTENT } else { &PLAIN }
    }

    fn retries_granted(mut r: Retry) -> u32 {
        let t0 = Instant::now();
        let mut n = 0;
        while matches!(r.next(Outcome::Lost, t0, t0 + ms(60_000)), Next::Retry(_)) {
            n += 1;
        }
        n
    }

    #[test]
    fn retries_come_from_the_call_else_the_method_else_the_node() {
        let o = options(3, 2, 1);
        assert_eq!(retries_granted(Retry::new(&o, &IDEMPOTENT, None)), 2);
        assert_eq!(retries_granted(Retry::new(&o, &FIVE, None)), 5);
        assert_eq!(retries_granted(Retry::new(&o, &FIVE, Some(1))), 1);
        assert_eq!(retries_granted(Retry::new(&o, &IDEMPOTENT, Some(0))), 0);
        // A non-idempotent call is never retried, whatever is asked.
        assert_eq!(retries_granted(Retry::new(&o, &PLAIN, Some(4))), 0);
    }

    #[test]
    fn a_timed_out_attempt_is_retried_like_a_lost_one_only_if_idempotent() {
        let t0 = Instant::now();
        let deadline = t0 + ms(1_000);
        let mut idem = Retry::new(&options(3, 1, 10), &IDEMPOTENT, None);
        assert_eq!(
            idem.next(Outcome::TimedOut, t0, deadline),
            Next::Retry(ms(10))
        );
        assert_eq!(idem.next(Outcome::TimedOut, t0, deadline), Next::Stop);
        let mut plain = Retry::new(&options(3, 1, 10), &PLAIN, None);
        assert_eq!(plain.next(Outcome::TimedOut, t0, deadline), Next::Stop);
    }

    fn options(reroutes: u32, retries: u32, backoff_ms: u64) -> ClientOptions {
        ClientOptions {
            reroutes,
            retries,
            backoff: Duration::from_millis(backoff_ms),
            ..ClientOptions::default()
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn never_ran_is_rerouted_up_to_the_budget_idempotent_or_not() {
        let t0 = Instant::now();
        let deadline = t0 + ms(1_000);
        for idempotent in [false, true] {
            let mut r = Retry::new(&options(3, 2, 10), method(idempotent), None);
            for _ in 0..3 {
                assert_eq!(r.next(Outcome::NotRun, t0, deadline), Next::Reroute);
            }
            assert_eq!(r.next(Outcome::NotRun, t0, deadline), Next::Stop);
        }
    }

    #[test]
    fn never_ran_is_not_rerouted_past_the_deadline() {
        let t0 = Instant::now();
        let mut r = Retry::new(&options(3, 2, 10), &PLAIN, None);
        assert_eq!(r.next(Outcome::NotRun, t0 + ms(5), t0 + ms(5)), Next::Stop);
    }

    #[test]
    fn lost_is_retried_only_if_idempotent_with_doubling_backoff() {
        let t0 = Instant::now();
        let deadline = t0 + ms(1_000);
        let mut plain = Retry::new(&options(3, 2, 10), &PLAIN, None);
        assert_eq!(plain.next(Outcome::Lost, t0, deadline), Next::Stop);
        let mut idem = Retry::new(&options(3, 2, 10), &IDEMPOTENT, None);
        assert_eq!(idem.next(Outcome::Lost, t0, deadline), Next::Retry(ms(10)));
        assert_eq!(idem.next(Outcome::Lost, t0, deadline), Next::Retry(ms(20)));
        assert_eq!(idem.next(Outcome::Lost, t0, deadline), Next::Stop);
    }

    #[test]
    fn lost_is_not_retried_if_the_backoff_would_end_past_the_deadline() {
        let t0 = Instant::now();
        let mut idem = Retry::new(&options(3, 2, 100), &IDEMPOTENT, None);
        assert_eq!(idem.next(Outcome::Lost, t0, t0 + ms(100)), Next::Stop);
        assert_eq!(
            idem.next(Outcome::Lost, t0, t0 + ms(101)),
            Next::Retry(ms(100))
        );
    }

    #[test]
    fn reroutes_and_retries_have_separate_budgets() {
        let t0 = Instant::now();
        let deadline = t0 + ms(1_000);
        let mut r = Retry::new(&options(1, 1, 1), &IDEMPOTENT, None);
        assert_eq!(r.next(Outcome::Lost, t0, deadline), Next::Retry(ms(1)));
        assert_eq!(r.next(Outcome::NotRun, t0, deadline), Next::Reroute);
        assert_eq!(r.next(Outcome::NotRun, t0, deadline), Next::Stop);
        assert_eq!(r.next(Outcome::Lost, t0, deadline), Next::Stop);
    }

    #[test]
    fn everything_else_stops() {
        let t0 = Instant::now();
        let mut r = Retry::new(&options(3, 2, 10), &IDEMPOTENT, None);
        assert_eq!(r.next(Outcome::Failed, t0, t0 + ms(1_000)), Next::Stop);
    }

    #[test]
    fn a_huge_backoff_saturates() {
        let t0 = Instant::now();
        let mut o = options(0, 3, 0);
        o.backoff = Duration::MAX;
        let mut r = Retry::new(&o, &IDEMPOTENT, None);
        // A year of backoff never fits a ten-second deadline; no overflow on the way.
        assert_eq!(r.next(Outcome::Lost, t0, t0 + ms(10_000)), Next::Stop);
        let mut r = Retry::new(&o, &IDEMPOTENT, None);
        let far = crate::deadline::after(t0, Duration::MAX) + ms(1);
        assert_eq!(r.next(Outcome::Lost, t0, far), Next::Retry(Duration::MAX));
        assert_eq!(r.next(Outcome::Lost, t0, far), Next::Retry(Duration::MAX));
    }

    /// Every failure an attempt can end with, as the endpoint produces them.
    fn attempt_failures() -> Vec<RpcError> {
        use crate::error::{NotRunReason, RejectReason};
        use std::sync::Arc;
        let node = cluster_helper::NodeId::new("n", 1).unwrap();
        let io = |kind| Some(Arc::new(std::io::Error::from(kind)) as Arc<_>);
        let mut v = vec![
            RpcError::Unreachable {
                node: node.clone(),
                method: "m",
                reason: "refused".into(),
                source: io(std::io::ErrorKind::ConnectionRefused),
            },
            RpcError::Unreachable {
                node: node.clone(),
                method: "m",
                reason: "connect timed out".into(),
                source: io(std::io::ErrorKind::TimedOut),
            },
            RpcError::NotRun {
                node: node.clone(),
                method: "m",
                reason: NotRunReason::Leaving,
            },
            RpcError::Timeout {
                node: node.clone(),
                method: "m",
                after: ms(10),
            },
            RpcError::NodeDown {
                node: node.clone(),
                method: "m",
                reason: "reset".into(),
                source: io(std::io::ErrorKind::ConnectionReset),
            },
            RpcError::Codec {
                node: node.clone(),
                method: "m",
                reason: "bad frame".into(),
                source: io(std::io::ErrorKind::InvalidData),
            },
            RpcError::Server {
                node: node.clone(),
                method: "m",
                reason: "panicked".into(),
            },
        ];
        for reason in [
            RejectReason::UnknownService {
                service: "S".into(),
            },
            RejectReason::Unauthenticated,
            RejectReason::WrongVersion { ours: 2, theirs: 1 },
            RejectReason::Leaving,
            RejectReason::Malformed,
        ] {
            v.push(RpcError::Rejected {
                node: node.clone(),
                reason,
            });
        }
        v
    }

    #[test]
    fn the_runtime_reroutes_exactly_what_never_reached_a_server() {
        let t0 = Instant::now();
        let deadline = t0 + ms(1_000);
        for idempotent in [false, true] {
            for e in attempt_failures() {
                let mut r = Retry::new(&options(3, 2, 10), method(idempotent), None);
                let rerouted = r.next(Outcome::of(&e), t0, deadline) == Next::Reroute;
                assert_eq!(rerouted, e.never_reached_server(), "{e}");
                // And what may have run is sent again only if idempotent, only if the
                // connection was lost.
                let mut r = Retry::new(&options(3, 2, 10), method(idempotent), None);
                let retried = matches!(r.next(Outcome::of(&e), t0, deadline), Next::Retry(_));
                assert_eq!(
                    retried,
                    idempotent && matches!(e, RpcError::NodeDown { .. }),
                    "{e}"
                );
            }
        }
    }

    /// A client layer's own error (a refusal, its timeout) is returned as it is, sent or not:
    /// the node's layers are the same for every node a call could go to.
    #[test]
    fn a_client_layers_own_error_is_neither_rerouted_nor_retried() {
        let t0 = Instant::now();
        let deadline = t0 + ms(1_000);
        for sent in [false, true] {
            let e: RpcError = RpcError::Layer {
                node: cluster_helper::NodeId::new("n", 1).unwrap(),
                method: "m",
                sent,
                source: std::sync::Arc::new(std::io::Error::other("overloaded")),
            };
            assert_eq!(e.never_reached_server(), !sent);
            assert_eq!(Outcome::of(&e), Outcome::Failed);
            let mut r = Retry::new(&options(3, 2, 10), method(true), None);
            assert_eq!(r.next(Outcome::of(&e), t0, deadline), Next::Stop);
        }
    }

    #[test]
    fn one_given_node_gets_one_immediate_retry_if_idempotent() {
        let t0 = Instant::now();
        let deadline = t0 + ms(1_000);
        let mut plain = Retry::same_node(false);
        assert_eq!(plain.next(Outcome::Lost, t0, deadline), Next::Stop);
        let mut idem = Retry::same_node(true);
        assert_eq!(idem.next(Outcome::NotRun, t0, deadline), Next::Stop);
        assert_eq!(
            idem.next(Outcome::Lost, t0, deadline),
            Next::Retry(Duration::ZERO)
        );
        assert_eq!(idem.next(Outcome::Lost, t0, deadline), Next::Stop);
    }
}

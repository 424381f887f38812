//! Admission control: a cap on the requests a node runs at once, across its connections, and
//! a bounded queue of requests waiting for room ([`ServerLimits::max_running`],
//! [`ServerLimits::max_queued`]). A request that finds the queue full is answered "not run:
//! overloaded" before it runs, so its caller sends it to another node of the role; one that
//! waits past its caller's deadline is answered "not run: expired".
//!
//! [`ServerLimits::max_running`]: crate::ServerLimits::max_running
//! [`ServerLimits::max_queued`]: crate::ServerLimits::max_queued

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::Notify;

use crate::error::NotRunReason;

/// The node's running and waiting requests, against their caps.
#[derive(Debug)]
pub(crate) struct Admission {
    max_running: usize,
    max_queued: usize,
    running: AtomicUsize,
    queued: AtomicUsize,
    /// Signalled when a running request ends while others wait.
    room: Notify,
}

/// A request admitted to run: it gives its place back when dropped.
#[derive(Debug)]
pub(crate) struct Running<'a>(&'a Admission);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
        if self.0.queued.load(Ordering::Acquire) > 0 {
            self.0.room.notify_one();
        }
    }
}

/// A place in the queue, given back when dropped (admitted or not).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    /// At most `max_running` requests at once, and `max_queued` waiting for room.
    pub(crate) fn new(max_running: usize, max_queued: usize) -> Self {
        Admission {
            max_running,
            max_queued,
            running: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            room: Notify::new(),
        }
    }

    /// Requests running now.
    #[cfg(test)]
    fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Requests waiting for room now.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    fn try_enter(&self) -> bool {
        let mut n = self.running.load(Ordering::Acquire);
        loop {
            if n >= self.max_running {
                return false;
            }
            match self
                .running
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
    }

    /// Room to run a request now, if there is some and nobody waits for it.
    pub(crate) fn try_admit(&self) -> Option<Running<'_>> {
        (self.queued.load(Ordering::Acquire) == 0 && self.try_enter()).then(|| Running(self))
    }

    /// Room to run a request whose caller waits until `deadline`: at once if there is some
    /// and nobody waits ([`try_admit`](Self::try_admit), which callers try first without a
    /// future), else after waiting in the queue (woken in the order they came); `Overloaded`
    /// if the queue is full, `Expired` if the deadline passes first.
    pub(crate) async fn admit(&self, deadline: Instant) -> Result<Running<'_>, NotRunReason> {
        if let Some(running) = self.try_admit() {
            return Ok(running);
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(NotRunReason::Overloaded);
        }
        let _waiting = Waiting(&self.queued);
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            // Registered before looking, so that room freed in between is not missed.
            notified.as_mut().enable();
            if self.try_enter() {
                return Ok(Running(self));
            }
            if tokio::time::timeout_at(deadline.into(), notified)
                .await
                .is_err()
            {
                return Err(NotRunReason::Expired);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test]
    async fn runs_up_to_the_cap_queues_up_to_the_queue_and_refuses_the_rest() {
        let a = Arc::new(Admission::new(2, 1));
        let r1 = a.admit(soon(1000)).await.unwrap();
        let _r2 = a.admit(soon(1000)).await.unwrap();
        assert_eq!(a.running(), 2);
        // The third waits in the queue...
        let waiter = {
            let a = a.clone();
            tokio::spawn(async move { a.admit(soon(5_000)).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(a.queued(), 1);
        // ...so the fourth finds the queue full.
        assert!(matches!(
            a.admit(soon(1000)).await,
            Err(NotRunReason::Overloaded)
        ));
        // Room frees: the waiter runs.
        drop(r1);
        waiter.await.unwrap().unwrap();
        assert_eq!(a.queued(), 0);
    }

    #[tokio::test]
    async fn a_request_that_waits_past_its_deadline_expires_and_leaves_the_queue() {
        let a = Admission::new(1, 4);
        let _r = a.admit(soon(1000)).await.unwrap();
        let started = Instant::now();
        assert!(matches!(
            a.admit(soon(50)).await,
            Err(NotRunReason::Expired)
        ));
        assert!(started.elapsed() >= Duration::from_millis(45));
        assert_eq!(a.queued(), 0);
        assert_eq!(a.running(), 1);
    }

    #[tokio::test]
    async fn every_waiter_gets_its_turn_as_room_frees() {
        let a = Arc::new(Admission::new(1, 8));
        let first = a.admit(soon(5_000)).await.unwrap();
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let a = a.clone();
                tokio::spawn(async move {
                    let r = a.admit(soon(5_000)).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    drop(r);
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!((a.running(), a.queued()), (0, 0));
    }
}

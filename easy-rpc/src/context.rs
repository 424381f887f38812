//! The deadline of the call being served, so that calls made while serving it inherit it.
//!
//! A server runs each request inside a scope holding the caller's deadline. A call made from
//! inside it (a nested call) never gets a later deadline than that: a caller that gave up is
//! not kept waiting by work done on its behalf.

use std::future::Future;
use std::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// The deadline of the request this task is serving, if it is serving one.
///
/// ```
/// assert!(easy_rpc::context::deadline().is_none()); // not inside a request handler
/// ```
pub fn deadline() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// Runs `f` with `deadline` as the inherited deadline of the calls it makes: none of them gets
/// a later deadline (the server runs every handler this way, with the caller's deadline).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::{Duration, Instant};
/// let by = Instant::now() + Duration::from_millis(300);
/// let seen = easy_rpc::context::with_deadline(by, async { easy_rpc::context::deadline() }).await;
/// assert_eq!(seen, Some(by));
/// # }
/// ```
pub fn with_deadline<F: Future>(deadline: Instant, f: F) -> impl Future<Output = F::Output> {
    DEADLINE.scope(deadline, f)
}

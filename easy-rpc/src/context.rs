//! The deadline of the call being served, so that calls made while serving it inherit it.
//!
//! A server runs each request inside a scope holding the caller's deadline. A call made from
//! inside it (a nested call) never gets a later deadline than that: a caller that gave up is
//! not kept waiting by work done on its behalf.

use std::future::Future;
use std::time::Instant;

tokio::task_local! {
    static SERVING: Serving;
}

/// What calls made while serving a request inherit from it.
#[derive(Clone, Copy)]
struct Serving {
    deadline: Instant,
    /// Whether the request has a span (`None`: unknown, as under [`with_deadline`]): the calls
    /// made while serving it have spans exactly when it does, so that a sampled trace is whole.
    traced: Option<bool>,
}

/// The deadline of the request this task is serving, if it is serving one.
///
/// ```
/// assert!(easy_rpc::context::deadline().is_none()); // not inside a request handler
/// ```
pub fn deadline() -> Option<Instant> {
    SERVING.try_with(|s| s.deadline).ok()
}

/// Whether the request this task is serving has a span, if it is serving one and that is
/// known.
pub(crate) fn serving_traced() -> Option<bool> {
    SERVING.try_with(|s| s.traced).ok().flatten()
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
    SERVING.scope(
        Serving {
            deadline,
            traced: None,
        },
        f,
    )
}

/// Runs `f` as the server runs a request: with `deadline` inherited, and its calls traced
/// exactly when `traced`.
pub(crate) fn serving<F: Future>(
    deadline: Instant,
    traced: bool,
    f: F,
) -> impl Future<Output = F::Output> {
    SERVING.scope(
        Serving {
            deadline,
            traced: Some(traced),
        },
        f,
    )
}

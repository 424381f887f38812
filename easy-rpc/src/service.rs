//! The contract between `#[easy_rpc::service]` and the runtime: a service's description
//! ([`ServiceDef`], [`MethodInfo`]) and what answers its requests ([`Handler`]). It depends on
//! nothing else of the crate; the server and the client depend on it.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// One RPC service: its wire name and its request and response types. Implemented by
/// `#[easy_rpc::service]` on a unit struct named `<Trait>Service`.
pub trait ServiceDef: Send + Sync + 'static {
    /// The service's name in the handshake and in gossip (the trait's name unless the macro
    /// was given `name = "..."`).
    const NAME: &'static str;
    /// One variant per method, holding its arguments.
    type Req: Serialize + DeserializeOwned + Send + Sync + 'static + tarpc::RequestName;
    /// One variant per method, holding its return value.
    type Resp: Serialize + DeserializeOwned + Send + 'static;
    /// The method a request calls.
    fn method(req: &Self::Req) -> &'static MethodInfo;
    /// Whether a response is the method's own error (a method returning `Result` returned
    /// `Err`): the server counts it as `remote` in its metrics. `false` unless implemented
    /// (the macro does).
    fn is_remote_error(resp: &Self::Resp) -> bool {
        let _ = resp;
        false
    }
}

/// Static facts about one method, from the trait and its `#[easy_rpc(...)]` options.
#[derive(Debug)]
#[non_exhaustive]
pub struct MethodInfo {
    /// The method's name.
    pub name: &'static str,
    /// Marked `#[easy_rpc(idempotent)]`: safe to run twice, so a call is retried on another
    /// node after a lost connection, or after an attempt that timed out when the caller gave
    /// attempts their own timeout (any call is rerouted when it provably did not run).
    pub idempotent: bool,
    /// `#[easy_rpc(timeout_ms = N)]`: this method's default deadline, overriding the client's.
    pub timeout: Option<Duration>,
    /// `#[easy_rpc(retries = N)]` (idempotent methods only): how many times a call is sent
    /// again after a lost connection or an attempt that timed out, overriding
    /// [`ClientOptions::retries`](crate::ClientOptions::retries).
    pub retries: Option<u32>,
    /// `#[easy_rpc(idempotent, hedge)]` or `hedge = P` (idempotent methods only): a call that
    /// has not been answered after this percentile of the method's recent latencies (95
    /// without a value) sends a second request to another node and takes the first answer
    /// (see [`Hedge`](crate::Hedge)).
    pub hedge: Option<f64>,
    /// The method's place in the node's metrics tables, given on first use (process-wide, so
    /// a call finds its counters with one load instead of a lookup by name).
    metrics_slot: AtomicU32,
}

/// No metrics slot given yet.
const NO_SLOT: u32 = u32::MAX;
/// The next metrics slot to give.
static NEXT_SLOT: AtomicU32 = AtomicU32::new(0);

impl MethodInfo {
    /// A method with no options.
    pub const fn new(name: &'static str) -> Self {
        MethodInfo {
            name,
            idempotent: false,
            timeout: None,
            retries: None,
            hedge: None,
            metrics_slot: AtomicU32::new(NO_SLOT),
        }
    }

    /// The method's metrics slot: a small number, the same for the life of the process,
    /// given in the order methods are first used (one relaxed load once given).
    pub(crate) fn metrics_slot(&self) -> usize {
        let slot = self.metrics_slot.load(Ordering::Relaxed);
        if slot != NO_SLOT {
            return slot as usize;
        }
        let mine = NEXT_SLOT.fetch_add(1, Ordering::Relaxed).min(NO_SLOT - 1);
        match self.metrics_slot.compare_exchange(
            NO_SLOT,
            mine,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => mine as usize,
            // Another call gave it one first (the number taken here is left unused).
            Err(theirs) => theirs as usize,
        }
    }

    /// Marks the method idempotent.
    pub const fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Sets the method's default deadline in milliseconds.
    ///
    /// # Panics
    ///
    /// If `ms` is zero (a call that may not take any time cannot succeed). In a `static`, as
    /// the macro writes it, that is a compile error.
    pub const fn timeout_ms(mut self, ms: u64) -> Self {
        assert!(ms > 0, "easy-rpc: a method's timeout_ms must be at least 1");
        self.timeout = Some(Duration::from_millis(ms));
        self
    }

    /// Sets how many times an idempotent call of the method is sent again after a lost
    /// connection or a timed-out attempt (a non-idempotent method is never retried).
    pub const fn retries(mut self, n: u32) -> Self {
        self.retries = Some(n);
        self
    }

    /// Hedges the method's calls at `percentile` of its recent latencies (see
    /// [`Hedge::percentile`](crate::Hedge::percentile)). Call it after
    /// [`idempotent`](Self::idempotent).
    ///
    /// ```
    /// static GET: easy_rpc::MethodInfo = easy_rpc::MethodInfo::new("get").idempotent().hedge(95.0);
    /// assert_eq!(GET.hedge, Some(95.0));
    /// ```
    ///
    /// # Panics
    ///
    /// If the method is not (yet) marked idempotent (a call that may have run is never sent
    /// twice), or unless `0 < percentile < 100`. In a `static`, as the macro writes it, that
    /// is a compile error.
    pub const fn hedge(mut self, percentile: f64) -> Self {
        assert!(
            self.idempotent,
            "easy-rpc: only an idempotent method can be hedged (call .idempotent() first)"
        );
        assert!(
            percentile > 0.0 && percentile < 100.0,
            "easy-rpc: a hedging percentile must be above 0 and below 100 (e.g. 95.0)"
        );
        self.hedge = Some(percentile);
        self
    }
}

/// The server side of service `S`: answers one request. Implemented by
/// `#[easy_rpc::service]` for a wrapper around the user's implementation of the trait.
pub trait Handler<S: ServiceDef>: Send + Sync + 'static {
    /// Runs the method the request names and returns its response.
    fn handle(&self, req: S::Req) -> impl Future<Output = S::Resp> + Send;
}

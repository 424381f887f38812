//! Client settings: deadlines, balancing strategy, retries.

use std::time::Duration;

use crate::client::Hedge;
use crate::error::Error;

/// How [`Any`](crate::Any) picks one node of a role: for every call of a node
/// ([`ClientOptions::strategy`]) or of one target ([`Any::strategy`](crate::Any::strategy)).
/// Every strategy skips nodes whose connection just failed, unless all have.
///
/// ```no_run
/// # #[easy_rpc::service]
/// # pub trait Billing {
/// #     #[easy_rpc(idempotent)]
/// #     async fn balance(account: String) -> u64;
/// # }
/// # async fn example(node: easy_rpc::Node) -> Result<(), easy_rpc::Error> {
/// use easy_rpc::Strategy;
/// // This node, if it serves the role, else power of two choices.
/// let balance = node.any("billing").strategy(Strategy::LocalFirst).balance("a".into()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Strategy {
    /// Power of two choices by pending requests: two random nodes, the one with fewer calls in
    /// flight from this node (tower's `p2c` with `PendingRequests` load). The default.
    #[default]
    P2c,
    /// Power of two choices by peak EWMA of latency times pending requests (tower's
    /// `PeakEwma` load): favours nodes that answer faster.
    P2cPeakEwma,
    /// Each node in turn.
    RoundRobin,
    /// A uniformly random node.
    Random,
    /// This node if it has the role and serves the service, else [`Strategy::P2c`].
    LocalFirst,
}

/// Settings of calls made through a node: per node ([`NodeBuilder::client_options`]), then per
/// target (`node.any("billing").timeout(..)`), then per method (`#[easy_rpc(timeout_ms = N)]`).
///
/// Timeouts may be as long as `Duration::MAX` (a timeout is capped at a year, so nothing
/// overflows); a zero `timeout` or `connect_timeout` makes [`NodeBuilder::start`] fail, naming
/// the option.
///
/// ```
/// use std::time::Duration;
/// use easy_rpc::{ClientOptions, Strategy};
///
/// let options = ClientOptions::default()
///     .timeout(Duration::from_secs(2))
///     .strategy(Strategy::P2cPeakEwma);
/// assert_eq!(options.timeout, Duration::from_secs(2));
/// let builder = easy_rpc::Node::builder().client_options(options);
/// # drop(builder);
/// ```
///
/// [`NodeBuilder::client_options`]: crate::NodeBuilder::client_options
/// [`NodeBuilder::start`]: crate::NodeBuilder::start
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientOptions {
    /// A call's deadline when neither the call nor the method sets one. Default 10 s; must not
    /// be zero.
    pub timeout: Duration,
    /// How long connecting (TCP plus handshake) may take. Default 2 s; must not be zero.
    pub connect_timeout: Duration,
    /// How `any` picks a node. Default [`Strategy::P2c`].
    pub strategy: Strategy,
    /// How many more nodes a call that provably never reached a server is sent to. Default 3.
    pub reroutes: u32,
    /// How many times an idempotent call is retried after a lost connection. Default 2.
    pub retries: u32,
    /// The first retry's backoff, doubled each time. Default 10 ms.
    pub backoff: Duration,
    /// How long a node whose connection failed is skipped by `any` before it is tried again.
    /// Default 1 s.
    pub down_for: Duration,
    /// Whether a call that finds no node to send to (none has the role, or every one was
    /// tried) waits, up to its deadline, for a node to appear instead of failing at once
    /// with [`RpcError::NoNodeForRole`](crate::RpcError::NoNodeForRole) or
    /// [`RpcError::NodeNotFound`](crate::RpcError::NodeNotFound). Default `false`. Turn it on
    /// for a role with a single node, so that its restart gap delays calls instead of failing
    /// them; targets can set it per call ([`Any::wait_for_node`](crate::Any::wait_for_node)).
    pub wait_for_node: bool,
    /// The retries the node's calls may add, as a fraction of its calls. Default 0.2 (at most
    /// one retry per five calls, plus [`min_retries_per_sec`](Self::min_retries_per_sec)). A
    /// retry (of an idempotent call that may have run) that finds the budget spent is not
    /// made: the call returns its last error. When every node of a role is slow, this keeps
    /// callers from multiplying the work on it. Reroutes of calls that provably did not run
    /// are not budgeted (at most [`reroutes`](Self::reroutes) per call; the refusing node did
    /// no work).
    pub retry_budget: f64,
    /// Retries a second allowed whatever the budget (so that a node that calls rarely can
    /// still retry). Default 10.
    pub min_retries_per_sec: u32,
    /// The longest one attempt of an idempotent call may take before the call is sent again to
    /// another node (within its deadline, its [`retries`](Self::retries) and the retry
    /// budget). Default `None`: an attempt may take the call's whole deadline, so a timed-out
    /// call is never retried. Non-idempotent calls always give their one attempt the whole
    /// deadline. Targets can set it per call
    /// ([`Any::attempt_timeout`](crate::Any::attempt_timeout)).
    pub attempt_timeout: Option<Duration>,
    /// Hedging for every idempotent method that does not set its own
    /// (`#[easy_rpc(idempotent, hedge)]`): a call through `any` (or a direct target) that has
    /// not been answered after the delay sends a second request to another node and takes the
    /// first answer (see [`Hedge`]). Default `None`: only the methods and targets that ask
    /// for it hedge. Targets can set it per call ([`Any::hedge`](crate::Any::hedge)).
    pub hedge: Option<Hedge>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            strategy: Strategy::P2c,
            reroutes: 3,
            retries: 2,
            backoff: Duration::from_millis(10),
            down_for: Duration::from_secs(1),
            wait_for_node: false,
            retry_budget: 0.2,
            min_retries_per_sec: 10,
            attempt_timeout: None,
            hedge: None,
        }
    }
}

impl ClientOptions {
    /// Sets [`timeout`](ClientOptions::timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`connect_timeout`](ClientOptions::connect_timeout).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`strategy`](ClientOptions::strategy).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Sets [`reroutes`](ClientOptions::reroutes).
    pub fn reroutes(mut self, reroutes: u32) -> Self {
        self.reroutes = reroutes;
        self
    }

    /// Sets [`retries`](ClientOptions::retries).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Sets [`backoff`](ClientOptions::backoff).
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets [`down_for`](ClientOptions::down_for).
    pub fn down_for(mut self, down_for: Duration) -> Self {
        self.down_for = down_for;
        self
    }

    /// Sets [`wait_for_node`](ClientOptions::wait_for_node).
    pub fn wait_for_node(mut self, wait: bool) -> Self {
        self.wait_for_node = wait;
        self
    }

    /// Sets [`retry_budget`](ClientOptions::retry_budget).
    pub fn retry_budget(mut self, fraction: f64) -> Self {
        self.retry_budget = fraction;
        self
    }

    /// Sets [`min_retries_per_sec`](ClientOptions::min_retries_per_sec).
    pub fn min_retries_per_sec(mut self, n: u32) -> Self {
        self.min_retries_per_sec = n;
        self
    }

    /// Sets [`attempt_timeout`](ClientOptions::attempt_timeout).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Sets [`hedge`](ClientOptions::hedge).
    ///
    /// ```
    /// use easy_rpc::{ClientOptions, Hedge};
    ///
    /// let options = ClientOptions::default().hedge(Hedge::percentile(99.0));
    /// assert_eq!(options.hedge, Some(Hedge::percentile(99.0)));
    /// ```
    pub fn hedge(mut self, hedge: Hedge) -> Self {
        self.hedge = Some(hedge);
        self
    }

    /// Refuses settings no call could work with, naming the option.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        for (setting, value) in [
            ("ClientOptions::timeout", self.timeout),
            ("ClientOptions::connect_timeout", self.connect_timeout),
        ] {
            if value.is_zero() {
                return Err(Error::InvalidConfig {
                    setting,
                    value: format!("{value:?}"),
                    expected: "a positive duration (Duration::MAX for no practical limit)",
                });
            }
        }
        if !(0.0..=1.0).contains(&self.retry_budget) {
            return Err(Error::InvalidConfig {
                setting: "ClientOptions::retry_budget",
                value: self.retry_budget.to_string(),
                expected: "a fraction of the calls from 0.0 to 1.0 (e.g. 0.2)",
            });
        }
        if self.attempt_timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::InvalidConfig {
                setting: "ClientOptions::attempt_timeout",
                value: "0ns".into(),
                expected: "a positive duration, or None",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_timeouts_are_refused_by_name_and_max_is_fine() {
        assert!(ClientOptions::default().validate().is_ok());
        let o = ClientOptions {
            timeout: Duration::MAX,
            connect_timeout: Duration::MAX,
            ..ClientOptions::default()
        };
        assert!(o.validate().is_ok());
        let o = ClientOptions {
            timeout: Duration::ZERO,
            ..ClientOptions::default()
        };
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("ClientOptions::timeout"), "{e}");
        let o = ClientOptions {
            connect_timeout: Duration::ZERO,
            ..ClientOptions::default()
        };
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("ClientOptions::connect_timeout"), "{e}");
    }
}

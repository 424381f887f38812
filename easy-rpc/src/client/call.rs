//! The orchestration of one call: pick a node of the role, send, and on failure ask the
//! [`Retry`] policy whether to reroute, retry or stop; and one node's call of `all`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_helper::NodeId;

use super::endpoint::Endpoint;
use super::hedge::Hedge;
#[cfg(doc)]
use super::hedge::call_hedged;
use super::outgoing::Outgoing;
use super::pick::{Route, ThreadRandom};
use super::retry::{Next, Outcome, Retry};
use super::role_set::RoleSet;
use crate::error::{Never, RpcError};
use crate::runtime::Rpc;
use crate::service::{MethodInfo, ServiceDef};

/// What a target asks of one call, besides its method and request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// How to pick a node.
    pub(crate) route: Route,
    /// When the call was made (the first attempt reads no clock of its own before sending).
    pub(crate) now: Instant,
    /// When the caller gives up.
    pub(crate) deadline: Instant,
    /// Wait for a node when none is left to try, instead of failing.
    pub(crate) wait: bool,
    /// Retries of an idempotent call, overriding the method's and the node's.
    pub(crate) retries: Option<u32>,
    /// The longest one attempt of an idempotent call may take (`None`: the whole deadline).
    pub(crate) attempt_timeout: Option<Duration>,
    /// Send a second request to another node when the first is slow (see [`Hedge`]): the
    /// target then calls [`call_hedged`] instead of [`call_one`]. 4 bytes, in what was the
    /// plan's padding.
    pub(crate) hedge: Option<Hedge>,
}

/// Where a call's attempts go: the nodes they must avoid from the start, and each node
/// before an attempt is sent to it (a hedged call's second request avoids the nodes of the
/// first); `()` for calls that are not hedged, at no cost.
pub(crate) trait Sending: Send {
    /// The nodes not to send to, when the attempts start.
    fn avoid(&self) -> Vec<NodeId>;
    /// An attempt is about to be sent to `node`.
    fn sending(&self, node: &NodeId);
}

impl Sending for () {
    #[inline(always)]
    fn avoid(&self) -> Vec<NodeId> {
        Vec::new()
    }

    #[inline(always)]
    fn sending(&self, _node: &NodeId) {}
}

/// One attempt of a call on `$endpoint`, sent at `$now`, until `$deadline`: directly, or, if
/// the node has client layers, through them, boxed (the layers' future would make every call's
/// future larger, layered or not, and a call's future is moved a few times). A macro, not an
/// async fn: its future would be one more layer holding its arguments.
macro_rules! send_attempt {
    ($rpc:expr, $endpoint:expr, $method:expr, $req:expr, $now:expr, $deadline:expr, $attempt:expr) => {
        match &$rpc.layers {
            None => {
                $endpoint
                    .send($rpc, $method, $req.clone(), $now, $deadline)
                    .await
            }
            Some(stack) => {
                Box::pin(super::layer::send(
                    stack, $rpc, $endpoint, $method, $req, $now, $deadline, $attempt,
                ))
                .await
            }
        }
    };
}

/// Sends one call to one node of `set` picked by `plan.route`, rerouting calls that never
/// ran and retrying idempotent ones after a lost connection or an attempt that timed out (each
/// retry drawn from the node's retry budget). A call with a [`Plan::hedge`] goes through
/// [`call_hedged`] instead.
pub(crate) fn call_one<S: ServiceDef>(
    rpc: Arc<Rpc>,
    set: Arc<RoleSet<S>>,
    method: &'static MethodInfo,
    req: Arc<Outgoing<S::Req>>,
    plan: Plan,
) -> impl Future<Output = Result<(NodeId, S::Resp), RpcError<Never>>> + Send + 'static {
    // Not an `async fn` that awaits `attempts`: its future would hold the arguments besides
    // the future it awaits.
    rpc.budget.deposit();
    attempts(rpc, set, method, req, plan, ())
}

/// The attempts of one call (or of one of a hedged call's two requests): pick a node not
/// tried yet (nor in `sending.avoid()`), tell `sending`, send; after a failure reroute, retry
/// or stop.
pub(crate) async fn attempts<S: ServiceDef>(
    rpc: Arc<Rpc>,
    set: Arc<RoleSet<S>>,
    method: &'static MethodInfo,
    req: Arc<Outgoing<S::Req>>,
    plan: Plan,
    sending: impl Sending,
) -> Result<(NodeId, S::Resp), RpcError<Never>> {
    let Plan {
        route,
        mut now,
        deadline,
        wait,
        ..
    } = plan;
    let attempt_timeout = plan.attempt_timeout.filter(|_| method.idempotent);
    let mut tried: Vec<NodeId> = sending.avoid();
    let mut retry = Retry::new(&rpc.options, method, plan.retries);
    let mut last: Option<RpcError<Never>> = None;
    loop {
        let endpoint = match set.pick(&rpc, route, &tried, now) {
            Some(endpoint) => endpoint,
            // Boxed: the wait holds a registry subscription and a timer, which every call's
            // future would otherwise carry.
            None if wait => {
                match Box::pin(wait_for_node(&rpc, &set, route, &tried, deadline)).await {
                    Some(endpoint) => {
                        now = Instant::now();
                        endpoint
                    }
                    None => return Err(last.unwrap_or_else(|| set.source().none_error(S::NAME))),
                }
            }
            None => return Err(last.unwrap_or_else(|| set.source().none_error(S::NAME))),
        };
        sending.sending(endpoint.node());
        let attempt_deadline = match attempt_timeout {
            Some(t) => crate::deadline::after(now, t).min(deadline),
            None => deadline,
        };
        let writes = req.writes();
        let attempt = tried.len() as u32 + 1;
        let sent = send_attempt!(
            &rpc,
            &endpoint,
            method,
            &req,
            now,
            attempt_deadline,
            attempt
        );
        let error = match sent {
            Ok(resp) => return Ok((endpoint.node().clone(), resp)),
            Err(error) => unless_written(error, &req, writes),
        };
        now = Instant::now();
        let outcome = match &error {
            RpcError::Timeout { .. } if attempt_deadline < deadline => Outcome::TimedOut,
            e => Outcome::of(e),
        };
        let next = retry.next(outcome, now, deadline);
        // A retry sends again what may have run (more work for the role): it draws from the
        // budget. A reroute sends on what provably did not run, at most `reroutes` times: it
        // cost the node that refused it no work, so it is not budgeted.
        if next == Next::Stop
            || (matches!(next, Next::Retry(_)) && !rpc.budget.withdraw(rpc.ms_at(now)))
        {
            return Err(error);
        }
        tried.push(endpoint.node().clone());
        if let Next::Retry(pause) = next {
            // A retry goes to another node: with none left (and no waiting for one), waiting
            // the backoff is pointless.
            if !wait && set.pick(&rpc, route, &tried, now).is_none() {
                return Err(error);
            }
            let until = crate::deadline::after(now, jitter(pause));
            counted(
                &rpc,
                S::NAME,
                method,
                endpoint.node(),
                next,
                &error,
                tried.len() as u32 + 1,
            );
            tokio::time::sleep_until(until.into()).await;
            now = Instant::now();
        } else {
            counted(
                &rpc,
                S::NAME,
                method,
                endpoint.node(),
                next,
                &error,
                tried.len() as u32 + 1,
            );
        }
        last = Some(error);
    }
}

/// Counts (and logs at debug level) a reroute or a retry about to happen, which will be the
/// call's attempt number `attempt` (recorded on the call's span, if it has one).
fn counted(
    rpc: &Rpc,
    service: &'static str,
    method: &'static MethodInfo,
    node: &NodeId,
    next: Next,
    error: &RpcError<Never>,
    attempt: u32,
) {
    crate::trace::record_attempt(attempt);
    match next {
        Next::Reroute => crate::metrics::rerouted(rpc, service, method, node, error),
        Next::Retry(_) => crate::metrics::retried(rpc, service, method, node, error),
        Next::Stop => {}
    }
}

/// Full jitter: a pause drawn uniformly from zero to `pause`, so that callers that failed
/// together do not retry together.
fn jitter(pause: Duration) -> Duration {
    if pause.is_zero() {
        return pause;
    }
    pause.mul_f64(tower::util::rng::Rng::next_f64(&mut ThreadRandom))
}

/// A connection that broke (`NodeDown`) before `req` was written to it since it had been
/// written `writes` times: the request provably never reached the server, so the call fails
/// as [`RpcError::Unreachable`] (sent to another node like any call that never ran), not as
/// `NodeDown` (which says it may have run). `all` shares one request between its nodes: a
/// write for another node counts too, which only errs towards `NodeDown`.
fn unless_written<R>(error: RpcError<Never>, req: &Outgoing<R>, writes: u32) -> RpcError<Never> {
    match error {
        RpcError::NodeDown {
            node,
            method,
            reason,
            source,
        } if req.writes() == writes => RpcError::Unreachable {
            node,
            method,
            reason: format!("the connection broke before the request was written: {reason}"),
            source,
        },
        other => other,
    }
}

/// Waits until `set` has a node to send to (one not in `tried`), or `deadline` passes
/// (`None`): every registry change is a chance.
async fn wait_for_node<S: ServiceDef>(
    rpc: &Rpc,
    set: &RoleSet<S>,
    route: Route,
    tried: &[NodeId],
    deadline: Instant,
) -> Option<Arc<Endpoint<S>>> {
    // Subscribed before looking, so that no change between the look and the wait is missed.
    let mut changes = rpc.registry.watch();
    loop {
        if let Some(endpoint) = set.pick(rpc, route, tried, Instant::now()) {
            return Some(endpoint);
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return None;
                }
            }
            () = tokio::time::sleep_until(deadline.into()) => return None,
        }
    }
}

/// Sends one call to one given endpoint (each node's call of `all`), sending an idempotent
/// call once more after a lost connection. `now` is when the call was made.
pub(crate) async fn call_endpoint<S: ServiceDef>(
    rpc: Arc<Rpc>,
    endpoint: Arc<Endpoint<S>>,
    method: &'static MethodInfo,
    req: Arc<Outgoing<S::Req>>,
    now: Instant,
    deadline: Instant,
) -> Result<S::Resp, RpcError<Never>> {
    rpc.budget.deposit();
    let mut retry = Retry::same_node(method.idempotent);
    let mut now = now;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let writes = req.writes();
        let sent = send_attempt!(&rpc, &endpoint, method, &req, now, deadline, attempt);
        let error = match sent {
            Ok(resp) => return Ok(resp),
            Err(error) => unless_written(error, &req, writes),
        };
        now = Instant::now();
        let next = retry.next(Outcome::of(&error), now, deadline);
        match next {
            Next::Stop => return Err(error),
            Next::Retry(_) if !rpc.budget.withdraw(rpc.ms_at(now)) => return Err(error),
            Next::Reroute | Next::Retry(_) => {}
        }
        counted(
            &rpc,
            S::NAME,
            method,
            endpoint.node(),
            next,
            &error,
            attempt + 1,
        );
    }
}

//! The spans of calls: one per call on the caller (`call`) and one per request on the node
//! that runs it (`serve`), both at `DEBUG` under the `easy_rpc` target, so that they cost a
//! callsite check and nothing else unless a subscriber asks for them.
//!
//! Fields, named after OpenTelemetry's RPC conventions where one exists: `otel.name`
//! (`Service.method`), `otel.kind` (`client` or `server`), `rpc.system` (`easy-rpc`),
//! `rpc.service`, `rpc.method`; on `call` also `role` (the target's role, empty for a direct
//! target), `node` (the node that answered, or the last one tried), `attempts` (sends made:
//! 1, or more after reroutes and retries) and `outcome` (`ok` or the error's kind); on `serve`
//! `node` (this node) and `outcome` (`ok`, `not_run:<reason>` or `failed`).
//!
//! Across nodes, the trace context travels in tarpc's request context: tarpc's `Channel::call`
//! takes it from the current span on the caller (the `call` span, or tarpc's own `RPC` span
//! when a filter keeps those), and the node that runs the request makes it the remote parent
//! of `serve` ([`set_caller`], from the context the server codec kept:
//! [`Incoming`](crate::codec::Incoming)); every call the handler makes is a child of `serve`.
//! So a chain `gateway -> billing -> audit` is one trace in a layer that exports spans (e.g.
//! `tracing-opentelemetry`) with `easy_rpc=debug` alone: give that layer its own filter, and
//! keep `easy_rpc::log::default_filter` (which turns tarpc's noisy *events* off) for the log
//! output layer only. tarpc's spans (`tarpc=info`) may be added; they are not needed.
//!
//! A node traces a share of its calls ([`Sampler`], `NodeBuilder::trace_sample`): a traced
//! call marks its request sampled, and the serving node traces it and the calls its handler
//! makes.

use std::future::Future;

use futures::future::Either;
use tracing::Span;
use tracing::field::Empty;
use tracing::instrument::{Instrument, Instrumented};

/// Whether a subscriber wants the spans of calls and requests: checked once when a call is
/// made and once per request served, so that the others make no span at all (no `Span` in
/// their futures, and not the span macro's fallback, which builds every field for the `log`
/// crate while no subscriber was ever set).
pub(crate) fn traced() -> bool {
    tracing::enabled!(tracing::Level::DEBUG)
}

/// Which of the calls a node makes, and of the requests it serves for callers that did not
/// trace them, get spans when a subscriber wants them: a ratio, drawn per call
/// ([`NodeBuilder::trace_sample`](crate::NodeBuilder::trace_sample)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Sampler {
    /// A draw below this is sampled; `u64::MAX` means every call (no draw).
    below: u64,
    /// The ratio it was made from.
    ratio: f64,
}

impl Sampler {
    /// Every call.
    pub(crate) const ALL: Sampler = Sampler {
        below: u64::MAX,
        ratio: 1.0,
    };

    /// `ratio` of the calls, from 0 (none) to 1 (all); `None` for a ratio outside those.
    pub(crate) fn new(ratio: f64) -> Option<Sampler> {
        if !(0.0..=1.0).contains(&ratio) {
            return None;
        }
        if ratio == 1.0 {
            return Some(Sampler::ALL);
        }
        // 2^64 * ratio, below 2^64 since ratio < 1.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let below = (ratio * 18_446_744_073_709_551_616.0) as u64;
        Some(Sampler { below, ratio })
    }

    /// The ratio.
    pub(crate) fn ratio(self) -> f64 {
        self.ratio
    }

    /// Whether this call is sampled.
    pub(crate) fn sample(self) -> bool {
        match self.below {
            u64::MAX => true,
            0 => false,
            below => next_random() < below,
        }
    }
}

/// A fast per-thread pseudo-random number (xorshift64*, seeded from the OS once per thread):
/// sampling needs no more.
fn next_random() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(rand::random::<u64>() | 1);
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// Whether a call made now gets a span: when a subscriber wants it and, made while serving a
/// request, when that request has one (a sampled trace stays whole), or else when `sampler`
/// draws it.
pub(crate) fn trace_call(sampler: Sampler) -> bool {
    traced()
        && match crate::context::serving_traced() {
            Some(traced) => traced,
            None => sampler.sample(),
        }
}

/// Whether a request gets a span: when a subscriber wants it and its caller traced the call
/// (the trace context it sent, `caller`, says sampled), or else when `sampler` draws it.
pub(crate) fn trace_request(caller: Option<&tarpc::trace::Context>, sampler: Sampler) -> bool {
    traced()
        && (caller.is_some_and(|c| c.sampling_decision == tarpc::trace::SamplingDecision::Sampled)
            || sampler.sample())
}

/// Makes the trace context a caller sent, `caller`, the parent of a request's `span`, for a
/// layer that exports spans to OpenTelemetry (`tracing-opentelemetry`; without one, nothing
/// happens). Nothing either when the caller sent no trace (its trace id is zero: it has no
/// such layer): the span stays where it was made.
pub(crate) fn set_caller(span: &Span, caller: Option<&tarpc::trace::Context>) {
    use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let Some(caller) = caller.filter(|c| !span.is_disabled() && !c.trace_id.is_none()) else {
        return;
    };
    let flags = match caller.sampling_decision {
        tarpc::trace::SamplingDecision::Sampled => TraceFlags::SAMPLED,
        tarpc::trace::SamplingDecision::Unsampled => TraceFlags::default(),
    };
    let remote = SpanContext::new(
        caller.trace_id.into(),
        caller.span_id.into(),
        flags,
        true,
        TraceState::default(),
    );
    // An error only says the span has no OpenTelemetry layer, or has started: neither here.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// The span of one call of `service.method` to a node of `role` ("" for a direct target);
/// none without a role (the call was made while no subscriber wanted its span).
pub(crate) fn client_span(service: &'static str, method: &'static str, role: Option<&str>) -> Span {
    let Some(role) = role else {
        return Span::none();
    };
    tracing::debug_span!(
        "call",
        otel.name = %format_args!("{service}.{method}"),
        otel.kind = "client",
        rpc.system = "easy-rpc",
        rpc.service = service,
        rpc.method = method,
        role,
        node = Empty,
        attempts = 1u32,
        outcome = Empty,
    )
}

/// The span of one request for `service.method` run by `node`.
pub(crate) fn server_span(service: &'static str, method: &'static str, node: &str) -> Span {
    tracing::debug_span!(
        "serve",
        otel.name = %format_args!("{service}.{method}"),
        otel.kind = "server",
        rpc.system = "easy-rpc",
        rpc.service = service,
        rpc.method = method,
        node,
        outcome = Empty,
    )
}

/// Records on the current span (the call's, when a subscriber wants it) that the call goes
/// on to its attempt number `attempt`. Only after a failed attempt: the span starts at 1.
pub(crate) fn record_attempt(attempt: u32) {
    let span = Span::current();
    if !span.is_disabled() {
        span.record("attempts", attempt);
    }
}

/// Records on a call's span the node that answered it.
pub(crate) fn record_node(span: &Span, node: &cluster_helper::NodeId) {
    if !span.is_disabled() {
        span.record("node", tracing::field::display(node));
    }
}

/// Records how a call ended on its span: the outcome (`ok`, or the error's kind as the
/// metrics label it), and for an error the node it names, if any (the last one tried).
pub(crate) fn record_end<T, E>(span: &Span, result: &Result<T, crate::error::RpcError<E>>) {
    if span.is_disabled() {
        return;
    }
    if let Some(node) = result.as_ref().err().and_then(|e| e.node()) {
        span.record("node", tracing::field::display(node));
    }
    let outcome = match result {
        Ok(_) => crate::metrics::Outcome::Ok,
        Err(e) => crate::metrics::Outcome::of(e),
    };
    span.record("outcome", outcome.label());
}

/// Records how a request ended on its span: `ok` (the method's own errors included),
/// `not_run:<reason>`, or `failed` (it panicked, or a server layer failed it).
pub(crate) fn record_reply<R>(span: &Span, reply: &crate::reply::Reply<R>) {
    if span.is_disabled() {
        return;
    }
    use crate::reply::Reply;
    match reply {
        Reply::Ok(_) => span.record("outcome", "ok"),
        Reply::NotRun(reason) => span.record(
            "outcome",
            tracing::field::display(format_args!("not_run:{reason}")),
        ),
        Reply::Failed(_) => span.record("outcome", "failed"),
    };
}

/// `fut` run inside `span`, or `fut` itself when no subscriber wants the span: then the call
/// pays one branch, and its future grows by a pointer at most (the instrumented one is boxed).
pub(crate) fn within<F: Future>(
    span: &Span,
    fut: F,
) -> Either<F, std::pin::Pin<Box<Instrumented<F>>>> {
    if span.is_disabled() {
        Either::Left(fut)
    } else {
        Either::Right(Box::pin(fut.instrument(span.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::Sampler;

    #[test]
    fn a_sampler_draws_its_ratio() {
        assert_eq!(Sampler::new(1.0), Some(Sampler::ALL));
        assert!(Sampler::new(-0.1).is_none());
        assert!(Sampler::new(1.5).is_none());
        assert!(Sampler::new(f64::NAN).is_none());
        let none = Sampler::new(0.0).unwrap();
        assert!((0..1000).all(|_| !none.sample()));
        assert!((0..1000).all(|_| Sampler::ALL.sample()));
        let tenth = Sampler::new(0.1).unwrap();
        let drawn = (0..100_000).filter(|_| tenth.sample()).count();
        assert!((9_000..11_000).contains(&drawn), "{drawn} of 100000");
    }
}

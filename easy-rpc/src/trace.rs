//! The spans of calls: one per call on the caller (`call`) and one per request on the node
//! that runs it (`serve`), both at `DEBUG` under the `easy_rpc` target, so that they cost a
//! callsite check and nothing else unless a subscriber asks for them.
//!
//! Fields, named after OpenTelemetry's RPC conventions where one exists: `otel.name`
//! (`Service.method`), `otel.kind` (`client` or `server`), `rpc.system` (`easy-rpc`),
//! `rpc.service`, `rpc.method`; on `call` also `role` (the target's role, empty for a direct
//! target), `node` (the node that answered, or the last one tried), `attempts` (sends made:
//! 1, or more after reroutes and retries) and `outcome` (`ok` or the error's kind); on `serve`
//! `node` (this node) and `outcome` (`ok`, `not_run:<reason>` or `panicked`).
//!
//! Across nodes, the trace context travels in tarpc's request context: tarpc's own `RPC`
//! spans (target `tarpc`, `INFO`) take it from the current span on the caller, and set the
//! remote parent on the node that runs the request; `serve` is their child there, and every
//! call the handler makes is a child of `serve`. So a chain `gateway -> billing -> audit` is
//! one trace, as long as the layer that exports spans (e.g. `tracing-opentelemetry`) sees
//! tarpc's spans: give that layer its own filter (`easy_rpc=debug,tarpc=info`), and keep
//! `easy_rpc::log::default_filter` (which turns tarpc's noisy *events* off) for the log
//! output layer only.

use std::future::Future;

use futures::future::Either;
use tracing::Span;
use tracing::field::Empty;
use tracing::instrument::{Instrument, Instrumented};

/// The span of one call of `service.method` to a node of `role` ("" for a direct target).
pub(crate) fn client_span(service: &'static str, method: &'static str, role: &str) -> Span {
    tracing::debug_span!(
        "call",
        otel.name = %format_args!("{service}.{method}"),
        otel.kind = "client",
        rpc.system = "easy-rpc",
        rpc.service = service,
        rpc.method = method,
        role,
        node = Empty,
        attempts = Empty,
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

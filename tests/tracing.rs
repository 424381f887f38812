//! Traces across nodes: a call chain `gateway -> billing -> audit` over three real nodes on
//! loopback is one trace, with easy-rpc's `call` and `serve` spans parented across the wire,
//! recorded through `tracing-opentelemetry` by an in-memory OpenTelemetry tracer (below: the
//! OpenTelemetry SDK's own in-memory exporter would bring a second `rand`).
//!
//! The only test of this binary: it installs the process's global subscriber.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use easy_rpc::Node;
use easy_rpc_tests::chain::{self, BillingClient};
use easy_rpc_tests::cluster::{unique_cluster, wait_until};
use opentelemetry::trace::{
    SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState,
};
use opentelemetry::{Context, KeyValue};
use tracing::Instrument;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// One ended span, as the tracer saw it.
#[derive(Clone, Debug)]
struct Ended {
    name: String,
    kind: Option<SpanKind>,
    trace: TraceId,
    id: SpanId,
    parent: Option<SpanId>,
    attributes: HashMap<String, String>,
}

/// A minimal OpenTelemetry tracer that keeps every ended span in memory.
#[derive(Clone, Default)]
struct MemoryTracer {
    ended: Arc<Mutex<Vec<Ended>>>,
    ids: Arc<AtomicU64>,
}

struct MemorySpan {
    context: SpanContext,
    span: Option<Ended>,
    ended: Arc<Mutex<Vec<Ended>>>,
}

impl opentelemetry::trace::Tracer for MemoryTracer {
    type Span = MemorySpan;

    fn build_with_context(&self, builder: SpanBuilder, parent_cx: &Context) -> MemorySpan {
        let next = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
        let parent = parent_cx.span().span_context().clone();
        let (trace, parent) = if parent.is_valid() {
            (parent.trace_id(), Some(parent.span_id()))
        } else {
            (TraceId::from(u128::from(next) << 64 | 1), None)
        };
        let id = SpanId::from(next);
        let attributes = builder
            .attributes
            .unwrap_or_default()
            .into_iter()
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect();
        MemorySpan {
            context: SpanContext::new(trace, id, TraceFlags::SAMPLED, false, TraceState::default()),
            span: Some(Ended {
                name: builder.name.to_string(),
                kind: builder.span_kind,
                trace,
                id,
                parent,
                attributes,
            }),
            ended: self.ended.clone(),
        }
    }
}

impl opentelemetry::trace::Span for MemorySpan {
    fn add_event_with_timestamp<T>(
        &mut self,
        _name: T,
        _timestamp: std::time::SystemTime,
        _attributes: Vec<KeyValue>,
    ) where
        T: Into<Cow<'static, str>>,
    {
    }

    fn span_context(&self) -> &SpanContext {
        &self.context
    }

    fn is_recording(&self) -> bool {
        self.span.is_some()
    }

    fn set_attribute(&mut self, attribute: KeyValue) {
        if let Some(span) = &mut self.span {
            span.attributes
                .insert(attribute.key.to_string(), attribute.value.to_string());
        }
    }

    fn set_status(&mut self, _status: Status) {}

    fn update_name<T>(&mut self, new_name: T)
    where
        T: Into<Cow<'static, str>>,
    {
        if let Some(span) = &mut self.span {
            span.name = new_name.into().into_owned();
        }
    }

    fn add_link(&mut self, _span_context: SpanContext, _attributes: Vec<KeyValue>) {}

    fn end_with_timestamp(&mut self, _timestamp: std::time::SystemTime) {
        if let Some(span) = self.span.take() {
            self.ended.lock().unwrap().push(span);
        }
    }
}

impl Drop for MemorySpan {
    fn drop(&mut self) {
        use opentelemetry::trace::Span;
        self.end();
    }
}

fn attr<'a>(span: &'a Ended, key: &str) -> &'a str {
    span.attributes.get(key).map_or("", String::as_str)
}

/// Calls `gateway -> billing -> audit` inside a root span and checks that the spans the
/// tracer ended make one trace, parented in order; `tarpc_spans`: whether tarpc's own spans are
/// on (then there are more of them in the chain).
async fn one_trace(gateway: &Node, ended: &Arc<Mutex<Vec<Ended>>>, tarpc_spans: bool) {
    let request = tracing::info_span!("request");
    let answer = gateway
        .any("billing")
        .charge(7)
        .instrument(request.clone())
        .await
        .unwrap();
    assert_eq!(answer, 71);
    drop(request);

    // Spans end when they close: the root last, once dropped here.
    let mut spans = Vec::new();
    wait_until(Duration::from_secs(10), "the root span ended", || {
        spans = ended.lock().unwrap().clone();
        spans.iter().any(|s| s.name == "request")
    })
    .await;
    let root = spans.iter().find(|s| s.name == "request").unwrap();
    let find = |name: &str, kind: SpanKind| -> &Ended {
        spans
            .iter()
            .find(|s| {
                s.name == name
                    && s.kind.as_ref() == Some(&kind)
                    && attr(s, "rpc.system") == "easy-rpc"
            })
            .unwrap_or_else(|| panic!("no {kind:?} span {name}: {spans:#?}"))
    };
    let charge_call = find("Billing.charge", SpanKind::Client);
    let charge_serve = find("Billing.charge", SpanKind::Server);
    let record_call = find("Audit.record", SpanKind::Client);
    let record_serve = find("Audit.record", SpanKind::Server);

    // One trace.
    for s in [charge_call, charge_serve, record_call, record_serve] {
        assert_eq!(s.trace, root.trace, "{s:#?}");
    }
    // What each span says.
    assert_eq!(attr(charge_call, "role"), "billing");
    assert_eq!(attr(charge_call, "outcome"), "ok");
    assert_eq!(attr(charge_call, "attempts"), "1");
    assert!(
        attr(charge_call, "node").starts_with("billing-1#"),
        "{charge_call:#?}"
    );
    assert_eq!(attr(charge_serve, "outcome"), "ok");
    assert!(
        attr(charge_serve, "node").starts_with("billing-1#"),
        "{charge_serve:#?}"
    );
    assert_eq!(attr(record_call, "role"), "audit");
    assert!(
        attr(record_call, "node").starts_with("audit-1#"),
        "{record_call:#?}"
    );
    assert!(
        attr(record_serve, "node").starts_with("audit-1#"),
        "{record_serve:#?}"
    );

    // Parented: each span's ancestors, by id, in order, reach the root through the others.
    let by_id: HashMap<SpanId, &Ended> = spans.iter().map(|s| (s.id, s)).collect();
    let ancestors = |s: &Ended| -> Vec<SpanId> {
        let mut out = Vec::new();
        let mut at = s.parent;
        while let Some(id) = at {
            out.push(id);
            at = by_id.get(&id).and_then(|p| p.parent);
            assert!(out.len() < 64, "a parent cycle");
        }
        out
    };
    assert_eq!(charge_call.parent, Some(root.id), "{charge_call:#?}");
    let chain = ancestors(record_serve);
    let position = |id: SpanId| {
        chain
            .iter()
            .position(|a| *a == id)
            .unwrap_or_else(|| panic!("{id:?} is not an ancestor of audit's span: {chain:?}"))
    };
    let (rc, cs, cc, r) = (
        position(record_call.id),
        position(charge_serve.id),
        position(charge_call.id),
        position(root.id),
    );
    assert!(rc < cs && cs < cc && cc < r, "{chain:?}");

    // tarpc's own spans are in the chain exactly when they are on.
    let tarpc_spans_seen = spans
        .iter()
        .any(|s| s.name != "request" && attr(s, "rpc.system") != "easy-rpc");
    assert_eq!(tarpc_spans_seen, tarpc_spans, "{spans:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_chain_across_three_nodes_is_one_trace() {
    let tracer = MemoryTracer::default();
    let ended = tracer.ended.clone();
    // First easy-rpc's spans only (debug), nothing of tarpc's: the trace context crosses the
    // wire all the same. Then tarpc's own spans too (info).
    let easy_rpc_only = Targets::new()
        .with_default(tracing::Level::INFO)
        .with_target("easy_rpc", tracing::Level::DEBUG)
        .with_target("tarpc", LevelFilter::OFF);
    let (filter, reload) = tracing_subscriber::reload::Layer::new(easy_rpc_only);
    tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(filter),
        )
        .init();

    let cluster = unique_cluster("tracing");
    let (gateway, billing, audit) = chain::start(&cluster, |b| b, |b| b, |b| b).await;

    one_trace(&gateway, &ended, false).await;
    ended.lock().unwrap().clear();
    reload
        .modify(|filter| {
            *filter = Targets::new()
                .with_default(tracing::Level::INFO)
                .with_target("easy_rpc", tracing::Level::DEBUG);
        })
        .unwrap();
    one_trace(&gateway, &ended, true).await;

    for n in [&gateway, &billing, &audit] {
        n.shutdown().await;
    }
}

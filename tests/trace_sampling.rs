//! Sampled traces: a node traces the share of its calls it is told to
//! (`NodeBuilder::trace_sample`, `CLUSTER_TRACE_SAMPLE`), the nodes a traced call reaches trace
//! all of it (the request and the calls made while serving it), and a request whose caller did
//! not trace it is drawn at the serving node's own share. Three real nodes on loopback; a
//! subscriber that counts easy-rpc's `call` and `serve` spans as they are made.
//!
//! The only node test of this binary: it installs the process's global subscriber.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use easy_rpc_tests::chain::{self, BillingClient};
use easy_rpc_tests::cluster::unique_cluster;
use tracing::field::{Field, Visit};
use tracing::span::Attributes;
use tracing::{Id, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// Counts the spans made, by `(name, rpc.service)`: `("call", "Billing")`,
/// `("serve", "Audit")`...
#[derive(Clone, Default)]
struct Counts(Arc<Mutex<HashMap<(String, String), usize>>>);

impl Counts {
    fn get(&self, name: &str, service: &str) -> usize {
        let counts = self.0.lock().unwrap();
        counts
            .get(&(name.to_owned(), service.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

struct Service(String);

impl Visit for Service {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "rpc.service" {
            value.clone_into(&mut self.0);
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

impl<S: Subscriber> Layer<S> for Counts {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        let mut service = Service(String::new());
        attrs.record(&mut service);
        let key = (attrs.metadata().name().to_owned(), service.0);
        *self.0.lock().unwrap().entry(key).or_default() += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampled_call_is_traced_on_every_node_it_reaches_and_no_other_is() {
    let counts = Counts::default();
    // easy-rpc's spans only: tarpc's own client span would make every call "sampled" for
    // the node that serves it (see `NodeBuilder::trace_sample`).
    tracing_subscriber::registry()
        .with(
            counts
                .clone()
                .with_filter(Targets::new().with_target("easy_rpc", tracing::Level::DEBUG)),
        )
        .init();

    let cluster = unique_cluster("sampling");
    // Audit traces every request its caller did not (share 1); billing none of its own (0);
    // the gateway half of its calls.
    let (gateway, billing, audit) = chain::start(
        &cluster,
        |b| b.trace_sample(1.0),
        |b| b.from_vars([("CLUSTER_TRACE_SAMPLE", "0")]).unwrap(),
        |b| b.trace_sample(0.5),
    )
    .await;
    assert_eq!(billing.trace_sample(), 0.0);

    const CALLS: u64 = 60;
    for i in 0..CALLS {
        assert_eq!(gateway.any("billing").charge(i).await.unwrap(), i * 10 + 1);
    }
    // Every span of a call is made before its answer comes back.
    let traced = counts.get("call", "Billing");
    assert!(
        traced > 0 && traced < 60,
        "the gateway traced {traced} of {CALLS} calls at 0.5"
    );
    // Billing draws none of its own, so it traced exactly the gateway's, and so did the
    // calls it made while serving them.
    assert_eq!(counts.get("serve", "Billing"), traced);
    assert_eq!(counts.get("call", "Audit"), traced);
    // Audit traced the calls its caller traced, and draws every other at its share of 1.
    assert_eq!(counts.get("serve", "Audit"), CALLS as usize);

    for n in [&gateway, &billing, &audit] {
        n.shutdown().await;
    }
}

#[test]
fn a_bad_share_names_the_variable() {
    for bad in ["2", "-0.5", "half", "NaN"] {
        let e = easy_rpc::Node::builder()
            .from_vars([("CLUSTER_TRACE_SAMPLE", bad)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("CLUSTER_TRACE_SAMPLE"), "{e}");
        assert!(e.contains("from 0 to 1"), "{e}");
    }
    let e = std::panic::catch_unwind(|| easy_rpc::Node::builder().trace_sample(1.5)).unwrap_err();
    let message = e.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("trace_sample(1.5)"), "{message}");
}

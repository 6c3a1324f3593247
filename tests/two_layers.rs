//! Two traceline layers in one subscriber (one to stdout and one to a file, say, in different
//! schemas): each writes every line, with its own schema's keys, the span fields recorded for
//! it and the same ids.

mod common;

use common::{Capture, Json, provider, span_context};
use opentelemetry::trace::TracerProvider;
use tracing::{info, info_span};
use tracing_subscriber::prelude::*;

/// registry + OpenTelemetry + traceline (default schema, into `a`) + traceline (ECS, into `b`).
fn two_layers(
    provider: &opentelemetry_sdk::trace::SdkTracerProvider,
    a: &Capture,
    b: &Capture,
) -> impl tracing::Subscriber + Send + Sync + 'static {
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("two_layers")))
        .with(traceline::layer().with_writer(a.clone()))
        .with(
            traceline::layer()
                .with_schema(traceline::Schema::ecs())
                .with_writer(b.clone()),
        )
}

#[test]
fn each_layer_writes_its_schema_with_the_span_fields_and_ids() {
    let provider = provider();
    let (a, b) = (Capture::new(), Capture::new());
    let (outer_sc, inner_sc) =
        tracing::subscriber::with_default(two_layers(&provider, &a, &b), || {
            let outer = info_span!("request", user = "alice", step = tracing::field::Empty);
            let _o = outer.enter();
            // Recorded after the span was made: both layers see it.
            outer.record("step", 2);
            let inner = info_span!("db", table = "orders");
            let _i = inner.enter();
            info!(rows = 3, "query done");
            (span_context(&outer), span_context(&inner))
        });
    let trace_id = inner_sc.trace_id().to_string();
    let span_id = inner_sc.span_id().to_string();

    let line = a.only_line();
    assert_eq!(line.str("traceId"), trace_id);
    assert_eq!(line.str("spanId"), span_id);
    let ecs = b.only_line();
    assert_eq!(ecs.str("trace.id"), trace_id);
    assert_eq!(ecs.str("span.id"), span_id);
    assert_eq!(ecs.str("transaction.id"), outer_sc.span_id().to_string());
    for l in [&line, &ecs] {
        assert_eq!(l.str("message"), "query done", "{l:?}");
        assert_eq!(l.str("user"), "alice", "{l:?}");
        assert_eq!(l.num("step"), "2", "{l:?}");
        assert_eq!(l.str("table"), "orders", "{l:?}");
        assert_eq!(l.num("rows"), "3", "{l:?}");
    }
}

#[test]
fn span_data_reused_from_span_to_span_keeps_no_other_spans_values() {
    // A span's data boxes go back to a per-thread pool when it closes; with two layers each
    // span holds two of them, chained. Every line must carry its own span's value only.
    let provider = provider();
    let (a, b) = (Capture::new(), Capture::new());
    tracing::subscriber::with_default(two_layers(&provider, &a, &b), || {
        for i in 0..200u64 {
            if i % 3 == 0 {
                // A span with no fields between them.
                let _e = info_span!("plain").entered();
                info!(i, "plain");
            } else {
                let _e = info_span!("job", job = i).entered();
                info!(i, "job");
            }
        }
    });
    for cap in [&a, &b] {
        let lines = cap.lines();
        assert_eq!(lines.len(), 200);
        for line in &lines {
            let i = line.num("i");
            match line.str("message") {
                "job" => assert_eq!(line.num("job"), i, "{line:?}"),
                _ => assert!(!line.has("job"), "a stale span field: {line:?}"),
            }
        }
    }
}

#[test]
fn a_span_closed_on_another_thread_leaves_both_layers_data_intact() {
    let provider = provider();
    let (a, b) = (Capture::new(), Capture::new());
    let dispatch = tracing::Dispatch::new(two_layers(&provider, &a, &b));
    let span = tracing::dispatcher::with_default(&dispatch, || info_span!("moved", k = "v"));
    let d = dispatch.clone();
    std::thread::spawn(move || {
        tracing::dispatcher::with_default(&d, || {
            span.in_scope(|| info!("on another thread"));
            drop(span);
        })
    })
    .join()
    .expect("the thread panicked");
    tracing::dispatcher::with_default(&dispatch, || {
        let _e = info_span!("next").entered();
        info!("after");
    });
    for cap in [&a, &b] {
        let lines: Vec<Json> = cap.lines();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].str("k"), "v");
        assert!(!lines[1].has("k"), "{:?}", lines[1]);
    }
}

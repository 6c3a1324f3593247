//! `record_error` marks the OpenTelemetry span and writes the error line; lines inside a
//! correlation scope that the OpenTelemetry layer does not see keep their ancestors' ids.
mod common;

use std::error::Error;
use std::fmt;

use common::{capture_layer, check_line, span_context};
use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use traceline::correlation::{self, CorrelationId};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::prelude::*;

#[derive(Debug)]
struct Outer(std::io::Error);

impl fmt::Display for Outer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("charge failed")
    }
}

impl Error for Outer {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn record_error_sets_status_adds_an_exception_event_and_writes_the_line() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let (capture, layer) = capture_layer();
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("t"))
                .with_filter(filter_fn(|m| m.is_span())),
        )
        .with(layer);
    let err = Outer(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "issuer timed out",
    ));
    let sc = tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("payment.process");
        let _e = span.enter();
        tracing::error!("an ERROR event alone marks nothing");
        traceline::record_error(&err);
        span_context(&span)
    });
    let _ = provider.force_flush();
    let spans = exporter.get_finished_spans().unwrap();
    let span = spans.iter().find(|s| s.name == "payment.process").unwrap();
    assert_eq!(span.status, Status::error("charge failed"));
    let ev = span
        .events
        .iter()
        .find(|e| e.name == "exception")
        .expect("exception event");
    let attr = |k: &str| {
        ev.attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.to_string())
            .unwrap_or_default()
    };
    assert_eq!(attr("exception.message"), "charge failed");
    assert!(attr("exception.type").ends_with("Outer"));
    assert_eq!(
        attr("exception.stacktrace"),
        "charge failed\ncaused by: issuer timed out"
    );

    let text = capture.text();
    let lines: Vec<_> = text.split_inclusive('\n').map(check_line).collect();
    assert_eq!(lines.len(), 2);
    assert!(!lines[0].has("otel.status_code"));
    let line = &lines[1];
    assert_eq!(line.str("level"), "ERROR");
    assert_eq!(line.str("message"), "charge failed");
    assert_eq!(line.str("otel.status_code"), "ERROR");
    assert_eq!(line.str("spanId"), sc.span_id().to_string());
    let error = line.at("error");
    assert_eq!(error.str("message"), "charge failed");
    assert_eq!(
        error.at("chain").as_arr()[0].as_str(),
        Some("issuer timed out")
    );
    assert!(error.str("type").ends_with("Outer"));
}

#[test]
fn record_error_fills_the_ecs_error_type() {
    let (capture, layer) = capture_layer();
    let subscriber =
        tracing_subscriber::registry().with(layer.with_schema(traceline::Schema::ecs()));
    tracing::subscriber::with_default(subscriber, || {
        traceline::record_error(&"x".parse::<u8>().unwrap_err());
    });
    let line = check_line(&capture.text());
    assert_eq!(line.str("error.type"), "core::num::error::ParseIntError");
    assert_eq!(line.str("error.message"), "invalid digit found in string");
}

/// The OpenTelemetry layer skips the correlation scope span (as `init()` sets it up).
fn scoped_subscriber() -> (
    common::Capture,
    impl tracing::Subscriber + Send + Sync,
    SdkTracerProvider,
) {
    let provider = SdkTracerProvider::builder().build();
    let (capture, layer) = capture_layer();
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("t"))
                .with_filter(filter_fn(|m| m.target() != "traceline::correlation")),
        )
        .with(layer);
    (capture, subscriber, provider)
}

#[test]
fn lines_in_a_scope_hidden_from_opentelemetry_carry_the_enclosing_span_ids() {
    let (capture, subscriber, _p) = scoped_subscriber();
    let (outer, inner) = tracing::subscriber::with_default(subscriber, || {
        let outer = tracing::info_span!("request");
        let _o = outer.enter();
        let scope = correlation::scope(CorrelationId::parse("c-1").unwrap());
        let _s = scope.enter();
        tracing::info!("directly in the scope");
        let inner = tracing::info_span!("db");
        let _i = inner.enter();
        tracing::info!("in a child of the scope");
        (span_context(&outer), span_context(&inner))
    });
    let text = capture.text();
    let lines: Vec<_> = text.split_inclusive('\n').map(check_line).collect();
    assert_eq!(lines[0].str("spanId"), outer.span_id().to_string());
    assert_eq!(lines[0].str("traceId"), outer.trace_id().to_string());
    assert_eq!(lines[1].str("spanId"), inner.span_id().to_string());
    assert_eq!(
        lines[1].str("traceId"),
        outer.trace_id().to_string(),
        "the scope does not break the trace"
    );
    for l in &lines {
        assert_eq!(l.str("correlationId"), "c-1");
    }
}

#[test]
#[cfg(feature = "http")]
fn inject_in_a_scope_hidden_from_opentelemetry_sends_the_enclosing_trace() {
    // A handler that wraps its work in a scope and calls another service: the outgoing
    // request continues the request span's trace and carries the scope's correlation id.
    let (_capture, subscriber, _p) = scoped_subscriber();
    let (outer, headers) = tracing::subscriber::with_default(subscriber, || {
        let outer = tracing::info_span!("request");
        let _o = outer.enter();
        let scope = correlation::scope(CorrelationId::parse("c-1").unwrap());
        let _s = scope.enter();
        let mut headers = http::HeaderMap::new();
        traceline::http::inject(&mut headers);
        (span_context(&outer), headers)
    });
    let traceparent = headers
        .get("traceparent")
        .expect("a traceparent for the enclosing span")
        .to_str()
        .unwrap();
    assert_eq!(
        traceparent,
        format!("00-{}-{}-01", outer.trace_id(), outer.span_id())
    );
    assert_eq!(headers.get("x-correlation-id").unwrap(), "c-1");
}

#[test]
fn a_scope_outside_any_span_has_no_ids() {
    let (capture, subscriber, _p) = scoped_subscriber();
    tracing::subscriber::with_default(subscriber, || {
        let scope = correlation::scope(CorrelationId::parse("c-2").unwrap());
        let _s = scope.enter();
        tracing::info!("no span but the scope");
    });
    let line = check_line(&capture.text());
    assert!(!line.has("traceId") && !line.has("spanId"));
    assert_eq!(line.str("correlationId"), "c-2");
}

#[test]
fn a_small_field_limit_never_cuts_the_correlation_id() {
    let (cap, layer) = capture_layer();
    let layer = layer.with_max_field_len(16);
    let id = CorrelationId::parse("8f14e45f-ceea-467f-a0e6-2a5bd1c3e9d0").unwrap();
    let current =
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let _s = correlation::scope(id.clone()).entered();
            tracing::info!(note = "a value longer than the limit", "inside");
            correlation::current()
        });
    let line = cap.only_line();
    assert_eq!(line.str("correlationId"), id.as_str());
    // Other values are still cut at the limit.
    assert!(line.str("note").starts_with("a value longer t"), "{line:?}");
    assert!(line.str("note").len() < "a value longer than the limit".len() + 30);
    assert_eq!(current, Some(id));
}

#[test]
fn a_correlation_id_recorded_on_a_span_later_reaches_its_new_children() {
    // The first correlation id in the process comes from `Span::record` on a span that had
    // none when it was made: spans made inside it afterwards carry it, and once it is closed
    // new spans carry none.
    let (cap, layer) = capture_layer();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let outer = tracing::info_span!("job", traceline.correlation_id = tracing::field::Empty);
        outer.record("traceline.correlation_id", "c-rec-1");
        outer.in_scope(|| {
            tracing::info_span!("step").in_scope(|| tracing::info!("in a child"));
        });
        drop(outer);
        tracing::info_span!("later").in_scope(|| tracing::info!("after it closed"));
    });
    let text = cap.text();
    let lines: Vec<_> = text.split_inclusive('\n').map(check_line).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0].str("correlationId"), "c-rec-1");
    assert!(!lines[1].has("correlationId"), "{text}");
}

/// A task spawned into a correlation scope that OpenTelemetry does not track (`init()` keeps
/// scopes out of exported traces): spans created inside join the trace the scope was created
/// in, and a request sent from there carries it.
#[test]
#[cfg(feature = "http")]
fn spans_in_a_task_spawned_into_a_hidden_scope_stay_in_the_trace() {
    use opentelemetry::trace::TraceContextExt;
    use tracing::Instrument;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let (cap, subscriber, _provider) = scoped_subscriber();
    let _g = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let job = tracing::info_span!("job");
    let job_trace = job.context().span().span_context().trace_id().to_string();
    let sent = rt.block_on(async {
        let scope = job.in_scope(|| correlation::scope(CorrelationId::parse("job-1").unwrap()));
        let task = tokio::spawn(
            async {
                tracing::info!("in scope");
                let step = tracing::info_span!("step");
                async {
                    tracing::info!("in step");
                    let mut headers = http::HeaderMap::new();
                    traceline::http::inject(&mut headers);
                    headers["traceparent"].to_str().unwrap().to_owned()
                }
                .instrument(step)
                .await
            }
            .instrument(scope),
        );
        task.await.unwrap()
    });
    let lines = cap.lines();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(line.str("correlationId"), "job-1");
        assert_eq!(line.str("traceId"), job_trace, "{line:?}");
    }
    assert!(sent.contains(&job_trace), "{sent}");
    // Entering and leaving the scope left no context behind on the thread.
    assert!(
        !opentelemetry::Context::current()
            .span()
            .span_context()
            .is_valid()
    );
}

/// Scopes may be exited in any order (`EnteredSpan`s dropped in the order they were made):
/// once every scope is exited, no context they attached stays current on the thread.
#[test]
fn scopes_exited_out_of_order_leave_no_context_behind() {
    use opentelemetry::trace::TraceContextExt;
    let (_cap, subscriber, _provider) = scoped_subscriber();
    let _g = tracing::subscriber::set_default(subscriber);
    let job = tracing::info_span!("job");
    let outer = job.in_scope(|| correlation::scope(CorrelationId::parse("a").unwrap()));
    let outer = outer.entered();
    let inner = correlation::scope(CorrelationId::parse("b").unwrap()).entered();
    assert!(
        opentelemetry::Context::current()
            .span()
            .span_context()
            .is_valid()
    );
    drop(outer);
    drop(inner);
    assert!(
        !opentelemetry::Context::current()
            .span()
            .span_context()
            .is_valid(),
        "a scope's context outlived the scope"
    );
}

/// A nested subscriber on the thread hands out the same span ids: exiting one of its spans
/// must not take away the context an outer scope attached.
#[test]
fn a_nested_subscribers_span_exit_leaves_an_outer_scopes_context() {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let (cap, outer, _provider) = scoped_subscriber();
    let _g = tracing::subscriber::set_default(outer);
    let job = tracing::info_span!("job");
    let job_trace = job.context().span().span_context().trace_id().to_string();
    let scope = job.in_scope(|| correlation::scope(CorrelationId::parse("job-1").unwrap()));
    let scope_id = scope.id().unwrap();
    // Only the scope is entered, as in a task spawned into it.
    let _entered = scope.enter();
    let valid = || {
        opentelemetry::Context::current()
            .span()
            .span_context()
            .is_valid()
    };
    assert!(valid());
    let (_cap2, layer2) = capture_layer();
    let mut same_id = false;
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer2), || {
        let mut spans = Vec::new();
        for i in 0..64 {
            let s = tracing::info_span!("unrelated", i);
            if s.id() == Some(scope_id.clone()) {
                s.in_scope(|| {});
                same_id = true;
                break;
            }
            spans.push(s);
        }
    });
    assert!(same_id, "the nested subscriber never gave the scope's id");
    assert!(valid(), "the outer scope's context was taken away");
    tracing::info_span!("step").in_scope(|| tracing::info!("in step"));
    assert_eq!(cap.only_line().str("traceId"), job_trace);
}

/// A traceline layer swapped in with `tracing_subscriber::reload` writes the correlation id of
/// a scope opened before the swap, in that scope and in spans made after the swap.
#[test]
fn a_reloaded_layer_writes_the_open_scopes_correlation_id() {
    let (cap, layer) = capture_layer();
    let (reloadable, handle) = tracing_subscriber::reload::Layer::new(layer);
    let provider = SdkTracerProvider::builder().build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("t"));
    let subscriber = tracing_subscriber::registry().with(otel).with(reloadable);
    tracing::subscriber::with_default(subscriber, || {
        let scope = correlation::scope(CorrelationId::parse("req-1").unwrap()).entered();
        tracing::info_span!("before").in_scope(|| tracing::info!("before reload"));
        handle
            .reload(traceline::layer().with_writer(cap.clone()))
            .unwrap();
        tracing::info_span!("after").in_scope(|| tracing::info!("after reload"));
        tracing::info!("in the scope itself");
        drop(scope);
    });
    let lines = cap.lines();
    assert_eq!(lines.len(), 3);
    for line in &lines {
        assert_eq!(line.str("correlationId"), "req-1", "{line:?}");
    }
}

/// `record_error` inside a correlation scope hidden from OpenTelemetry (as under `init()`)
/// marks the nearest span OpenTelemetry tracks, as `inject` sends that span's trace; and
/// `record_error_dyn` takes a boxed `dyn Error` (no type on the line or the event).
#[test]
fn record_error_in_a_hidden_scope_marks_the_enclosing_span() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let (capture, layer) = capture_layer();
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("t"))
                .with_filter(filter_fn(|m| {
                    m.is_span() && m.target() != "traceline::correlation"
                })),
        )
        .with(layer);
    tracing::subscriber::with_default(subscriber, || {
        for (name, boxed) in [("job.typed", false), ("job.boxed", true)] {
            let span = tracing::info_span!("job", otel.name = name);
            let _e = span.enter();
            let id = CorrelationId::parse("job-7").unwrap();
            correlation::scope(id).in_scope(|| {
                let err = Outer(std::io::Error::other("disk full"));
                if boxed {
                    let err: Box<dyn Error + Send + Sync> = Box::new(err);
                    traceline::record_error_dyn(&*err);
                } else {
                    traceline::record_error(&err);
                }
            });
        }
    });
    let _ = provider.force_flush();
    let spans = exporter.get_finished_spans().unwrap();
    for (name, typed) in [("job.typed", true), ("job.boxed", false)] {
        let span = spans.iter().find(|s| s.name == name).expect(name);
        assert_eq!(span.status, Status::error("charge failed"), "{name}");
        let ev = span
            .events
            .iter()
            .find(|e| e.name == "exception")
            .expect("exception event");
        let has_type = ev
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "exception.type");
        assert_eq!(has_type, typed, "{name}");
    }
    let text = capture.text();
    let lines: Vec<_> = text.split_inclusive('\n').map(check_line).collect();
    assert_eq!(lines.len(), 2);
    for (line, typed) in lines.iter().zip([true, false]) {
        assert_eq!(line.str("correlationId"), "job-7");
        assert_eq!(line.at("error").str("message"), "charge failed");
        assert_eq!(line.at("error").has("type"), typed, "{text}");
    }
}

/// A correlation scope made before a traceline layer is swapped in with `reload`, hidden from
/// OpenTelemetry (as under `init()`), and entered after the swap on its own (as in a task
/// spawned into it): spans created inside join the trace the scope was made in.
#[test]
fn a_scope_made_before_a_reload_keeps_spans_inside_in_the_trace() {
    let (cap, layer) = capture_layer();
    let (reloadable, handle) = tracing_subscriber::reload::Layer::new(layer);
    let provider = SdkTracerProvider::builder().build();
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("t"))
        .with_filter(filter_fn(|m| m.target() != "traceline::correlation"));
    let subscriber = tracing_subscriber::registry().with(otel).with(reloadable);
    let _g = tracing::subscriber::set_default(subscriber);
    let job = tracing::info_span!("job");
    let job_trace = span_context(&job).trace_id().to_string();
    let scope = job.in_scope(|| correlation::scope(CorrelationId::parse("rl-1").unwrap()));
    handle
        .reload(traceline::layer().with_writer(cap.clone()))
        .unwrap();
    // A span made after the swap is entered first: the new layer has found its subscriber.
    tracing::info_span!("after_reload").in_scope(|| {});
    scope.in_scope(|| tracing::info_span!("step").in_scope(|| tracing::info!("in step")));
    let line = cap.only_line();
    assert_eq!(line.str("correlationId"), "rl-1");
    assert_eq!(line.str("traceId"), job_trace, "{line:?}");
}

/// A future instrumented with a correlation scope (hidden from the OpenTelemetry layer, as
/// `init()` has it) and dropped in a thread-local destructor that runs after OpenTelemetry's
/// context is gone: entering the scope to drop it does not panic (a panic there aborts the
/// process). (The thread's first use of `tracing` is in that destructor: on a thread that
/// entered spans before, the registry's own thread-locals are gone by then, and it panics
/// itself.)
#[test]
fn a_scope_entered_in_a_thread_local_destructor_after_the_context_is_gone_does_not_panic() {
    use tracing::Instrument;
    let provider = SdkTracerProvider::builder().build();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("t"))
                    .with_filter(filter_fn(|m| m.target() != "traceline::correlation")),
            )
            .with(traceline::layer().with_writer(std::io::sink)),
    );
    let task = || {
        tracing::dispatcher::with_default(&dispatch, || {
            let request = tracing::info_span!("request");
            let scope =
                request.in_scope(|| correlation::scope(CorrelationId::parse("c-1").unwrap()));
            std::future::ready(()).instrument(scope)
        })
    };
    let (report, outcome) = std::sync::mpsc::channel();
    let t = task();
    std::thread::spawn(move || {
        // Registered first, so destroyed after OpenTelemetry's context.
        common::register_at_exit();
        let _ = opentelemetry::Context::current();
        common::drop_at_exit(t, report);
    })
    .join()
    .unwrap();
    assert!(
        outcome.recv().unwrap(),
        "entering the scope to drop the future panicked"
    );
}

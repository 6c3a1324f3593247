// The cases of `tests/ids.rs` and `tests/ids_watched.rs`, which differ in how the
// OpenTelemetry layer is put in the subscriber (`otel_for`).


use std::collections::HashMap;

use common::{assert_ids, assert_no_ids, capture_layer, provider, provider_with, span_context};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::Sampler;
use tracing::subscriber::with_default;
use tracing::{debug, debug_span, info, info_span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

const REMOTE_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const REMOTE_SPAN: &str = "00f067aa0ba902b7";

fn remote_context(flags: &str) -> opentelemetry::Context {
    let mut carrier = HashMap::new();
    carrier.insert(
        "traceparent".to_owned(),
        format!("00-{REMOTE_TRACE}-{REMOTE_SPAN}-{flags}"),
    );
    let cx = TraceContextPropagator::new().extract(&carrier);
    assert!(
        cx.span().span_context().is_remote(),
        "propagator did not extract a remote span context"
    );
    cx
}

/// registry + the OpenTelemetry layer + `layer`.
fn otel_subscriber<L>(
    provider: &opentelemetry_sdk::trace::SdkTracerProvider,
    layer: L,
) -> impl tracing::Subscriber + Send + Sync + 'static + use<L>
where
    L: tracing_subscriber::Layer<tracing_subscriber::layer::Layered<Otel, tracing_subscriber::Registry>>
        + Send
        + Sync
        + 'static,
{
    tracing_subscriber::registry()
        .with(otel_for(tracing_opentelemetry::layer().with_tracer(provider.tracer("traceline-tests"))))
        .with(layer)
}

/// registry + `layer` + the OpenTelemetry layer: it runs after traceline's.
fn otel_layer_outside(
    provider: &opentelemetry_sdk::trace::SdkTracerProvider,
    layer: traceline::Layer<common::Capture>,
) -> impl tracing::Subscriber + Send + Sync + 'static + use<> {
    tracing_subscriber::registry()
        .with(layer)
        .with(otel_for(tracing_opentelemetry::layer().with_tracer(provider.tracer("traceline-tests"))))
}

/// registry + the OpenTelemetry layer behind the per-layer `filter` + `layer`.
fn otel_layer_behind<F>(
    provider: &opentelemetry_sdk::trace::SdkTracerProvider,
    filter: F,
    layer: traceline::Layer<common::Capture>,
) -> impl tracing::Subscriber + Send + Sync + 'static + use<F>
where
    F: tracing_subscriber::layer::Filter<tracing_subscriber::Registry> + Send + Sync + 'static,
{
    tracing_subscriber::registry()
        .with(
            otel_for(tracing_opentelemetry::layer().with_tracer(provider.tracer("traceline-tests")))
                .with_filter(filter),
        )
        .with(layer)
}

/// registry + the OpenTelemetry layer with context activation off + `layer`.
fn without_context_activation_subscriber(
    provider: &opentelemetry_sdk::trace::SdkTracerProvider,
    layer: traceline::Layer<common::Capture>,
) -> impl tracing::Subscriber + Send + Sync + 'static + use<> {
    tracing_subscriber::registry()
        .with(otel_for(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("traceline-tests"))
                .with_context_activation(false),
        ))
        .with(layer)
}

fn message_line<'a>(lines: &'a [common::Json], message: &str) -> &'a common::Json {
    let found: Vec<_> = lines
        .iter()
        .filter(|l| l.get("message").and_then(|m| m.as_str()) == Some(message))
        .collect();
    assert_eq!(found.len(), 1, "lines with message {message:?}: {lines:?}");
    found[0]
}

#[test]
fn root_span_ids_match_the_otel_context() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let sc = with_default(otel_subscriber(&provider, layer), || {
        let span = info_span!("root");
        span.in_scope(|| info!("in root"));
        span_context(&span)
    });
    let line = cap.only_line();
    assert_ids(&line, &sc);
    assert_eq!(line.str("traceFlags"), "01");
}

#[test]
fn nested_span_lines_carry_the_inner_span_id_and_the_shared_trace_id() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let (outer_sc, inner_sc) = with_default(otel_subscriber(&provider, layer), || {
        let outer = info_span!("outer");
        let _o = outer.enter();
        info!("before inner");
        let inner = info_span!("inner");
        inner.in_scope(|| {
            info!("in inner");
            let innermost = info_span!("innermost");
            innermost.in_scope(|| info!("in innermost"));
            let sc = span_context(&innermost);
            assert_ids(&cap.lines()[2], &sc);
        });
        info!("after inner");
        (span_context(&outer), span_context(&inner))
    });
    let lines = cap.lines();
    assert_eq!(lines.len(), 4);
    assert_ids(message_line(&lines, "before inner"), &outer_sc);
    assert_ids(message_line(&lines, "in inner"), &inner_sc);
    assert_ids(message_line(&lines, "after inner"), &outer_sc);
    assert_eq!(outer_sc.trace_id(), inner_sc.trace_id());
    assert_ne!(outer_sc.span_id(), inner_sc.span_id());
    let innermost = message_line(&lines, "in innermost");
    assert_eq!(innermost.str("traceId"), outer_sc.trace_id().to_string());
    assert_ne!(innermost.str("spanId"), inner_sc.span_id().to_string());
}

#[test]
fn explicit_parent_wins_over_the_current_span() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let (a_sc, b_sc) = with_default(otel_subscriber(&provider, layer), || {
        let a = info_span!("a");
        let b = info_span!("b");
        let _b = b.enter();
        info!(parent: &a, "to a");
        info!("to b");
        (span_context(&a), span_context(&b))
    });
    let lines = cap.lines();
    assert_ne!(
        a_sc.trace_id(),
        b_sc.trace_id(),
        "a and b are separate roots"
    );
    assert_ids(message_line(&lines, "to a"), &a_sc);
    assert_ids(message_line(&lines, "to b"), &b_sc);
}

#[test]
fn explicit_parent_none_has_no_ids_even_inside_a_span() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    with_default(otel_subscriber(&provider, layer), || {
        let span = info_span!("entered");
        let _e = span.enter();
        info!(parent: None, "explicit root");
    });
    assert_no_ids(&cap.only_line());
}

#[test]
fn span_never_entered_as_explicit_parent() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let (sc, other_sc) = with_default(otel_subscriber(&provider, layer), || {
        let never = info_span!("never_entered");
        info!(parent: &never, "outside any entered span");
        let other = info_span!("other");
        other.in_scope(|| info!(parent: &never, "while another span is entered"));
        (span_context(&never), span_context(&other))
    });
    let lines = cap.lines();
    assert_ids(message_line(&lines, "outside any entered span"), &sc);
    assert_ids(message_line(&lines, "while another span is entered"), &sc);
    assert_ne!(sc.span_id(), other_sc.span_id());
}

#[test]
fn child_of_a_never_entered_span() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let (parent_sc, child_sc) = with_default(otel_subscriber(&provider, layer), || {
        let parent = info_span!("parent");
        let child = info_span!(parent: &parent, "child");
        info!(parent: &child, "in child");
        (span_context(&parent), span_context(&child))
    });
    let line = cap.only_line();
    assert_ids(&line, &child_sc);
    assert_eq!(child_sc.trace_id(), parent_sc.trace_id());
}

#[test]
fn remote_parent_from_traceparent() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let sc = with_default(otel_subscriber(&provider, layer), || {
        let span = info_span!("server");
        span.set_parent(remote_context("01"))
            .expect("set_parent right after creating the span");
        span.in_scope(|| info!("continued"));
        span_context(&span)
    });
    let line = cap.only_line();
    assert_ids(&line, &sc);
    assert_eq!(line.str("traceId"), REMOTE_TRACE);
    assert_ne!(
        line.str("spanId"),
        REMOTE_SPAN,
        "a new span id, not the caller's"
    );
    assert_eq!(line.str("traceFlags"), "01");
}

#[test]
fn remote_parent_on_a_span_used_only_as_explicit_parent() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let sc = with_default(otel_subscriber(&provider, layer), || {
        let span = info_span!("server");
        info!("before the request span is used");
        span.set_parent(remote_context("01"))
            .expect("logging elsewhere must not start this span");
        info!(parent: &span, "continued, never entered");
        span_context(&span)
    });
    let lines = cap.lines();
    assert_no_ids(message_line(&lines, "before the request span is used"));
    let line = message_line(&lines, "continued, never entered");
    assert_ids(line, &sc);
    assert_eq!(line.str("traceId"), REMOTE_TRACE);
}

#[test]
fn set_parent_still_works_after_a_child_line_was_logged_in_a_sibling_trace() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let sc = with_default(otel_subscriber(&provider, layer), || {
        let first = info_span!("first");
        first.in_scope(|| info!("first request"));
        let second = info_span!("second");
        second
            .set_parent(remote_context("01"))
            .expect("set_parent on a fresh span");
        second.in_scope(|| info!("second request"));
        span_context(&second)
    });
    let lines = cap.lines();
    let line = message_line(&lines, "second request");
    assert_ids(line, &sc);
    assert_eq!(line.str("traceId"), REMOTE_TRACE);
    assert_ne!(
        message_line(&lines, "first request").str("traceId"),
        REMOTE_TRACE
    );
}

#[test]
fn unsampled_span_keeps_its_ids_with_flags_00() {
    let (cap, layer) = capture_layer();
    let provider = provider_with(Sampler::AlwaysOff);
    let sc = with_default(otel_subscriber(&provider, layer), || {
        let span = info_span!("dropped_by_sampler");
        span.in_scope(|| info!("not sampled"));
        span_context(&span)
    });
    assert!(!sc.is_sampled());
    let line = cap.only_line();
    assert_ids(&line, &sc);
    assert_eq!(line.str("traceFlags"), "00");
}

#[test]
fn parent_based_sampler_with_unsampled_remote_parent() {
    let (cap, layer) = capture_layer();
    let provider = provider_with(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    let (sc, local_sc) = with_default(otel_subscriber(&provider, layer), || {
        let span = info_span!("server");
        span.set_parent(remote_context("00")).expect("set_parent");
        span.in_scope(|| {
            info!("remote says do not sample");
            info_span!("child").in_scope(|| info!("child of unsampled"));
        });
        let local = info_span!("local_root");
        local.in_scope(|| info!("local root is sampled"));
        (span_context(&span), span_context(&local))
    });
    assert!(!sc.is_sampled());
    let lines = cap.lines();
    let line = message_line(&lines, "remote says do not sample");
    assert_ids(line, &sc);
    assert_eq!(line.str("traceId"), REMOTE_TRACE);
    assert_eq!(line.str("traceFlags"), "00");
    let child = message_line(&lines, "child of unsampled");
    assert_eq!(child.str("traceId"), REMOTE_TRACE);
    assert_eq!(child.str("traceFlags"), "00");
    assert_ne!(child.str("spanId"), line.str("spanId"));
    let local = message_line(&lines, "local root is sampled");
    assert_ids(local, &local_sc);
    assert_eq!(local.str("traceFlags"), "01");
}

#[test]
fn no_span_no_id_keys() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    with_default(otel_subscriber(&provider, layer), || {
        info!("outside");
        let span = info_span!("s");
        span.in_scope(|| {});
        info!("after the span was exited");
    });
    for line in cap.lines() {
        assert_no_ids(&line);
    }
    assert_eq!(cap.lines().len(), 2);
}

#[test]
fn noop_tracer_provider_gives_no_id_keys() {
    use opentelemetry::trace::noop::NoopTracerProvider;
    let (cap, layer) = capture_layer();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(NoopTracerProvider::new().tracer("noop")))
        .with(layer);
    with_default(subscriber, || {
        let span = info_span!("s");
        span.in_scope(|| info!("inside a span, noop tracer"));
        info!(parent: &span, "explicit parent, noop tracer");
        assert!(!span_context(&span).is_valid());
    });
    let lines = cap.lines();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_no_ids(line);
    }
}

#[test]
fn default_otel_layer_without_tracer_gives_no_id_keys() {
    let (cap, layer) = capture_layer();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer())
        .with(layer);
    with_default(subscriber, || {
        info_span!("s").in_scope(|| info!("inside"));
    });
    assert_no_ids(&cap.only_line());
}

#[test]
fn global_noop_tracer_gives_no_id_keys() {
    let (cap, layer) = capture_layer();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(opentelemetry::global::tracer("global")))
        .with(layer);
    with_default(subscriber, || {
        info_span!("s").in_scope(|| info!("inside"));
    });
    assert_no_ids(&cap.only_line());
}

#[test]
fn no_otel_layer_gives_no_id_keys() {
    let (cap, layer) = capture_layer();
    let subscriber = tracing_subscriber::registry().with(layer);
    with_default(subscriber, || {
        let span = info_span!("s");
        span.in_scope(|| info!("inside"));
        info!(parent: &span, "explicit parent");
    });
    let lines = cap.lines();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_no_ids(line);
    }
}

#[test]
fn under_a_per_layer_filter() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let (outer_sc, inner_sc) = with_default(
        otel_subscriber(&provider, layer.with_filter(EnvFilter::new("info"))),
        || {
            let outer = info_span!("outer");
            let _o = outer.enter();
            debug!("filtered out");
            info!("in outer");
            let inner = info_span!("inner");
            inner.in_scope(|| info!("in inner"));
            (span_context(&outer), span_context(&inner))
        },
    );
    let lines = cap.lines();
    assert_eq!(lines.len(), 2, "the DEBUG event is filtered: {lines:?}");
    assert_ids(message_line(&lines, "in outer"), &outer_sc);
    assert_ids(message_line(&lines, "in inner"), &inner_sc);
}

#[test]
fn under_a_per_layer_filter_event_in_a_span_the_filter_hides() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let (outer_sc, hidden_sc) = with_default(
        otel_subscriber(&provider, layer.with_filter(EnvFilter::new("info"))),
        || {
            let outer = info_span!("outer");
            let _o = outer.enter();
            let hidden = debug_span!("hidden_by_filter");
            hidden.in_scope(|| info!("info event inside a debug span"));
            (span_context(&outer), span_context(&hidden))
        },
    );
    assert_eq!(outer_sc.trace_id(), hidden_sc.trace_id());
    assert_ids(&cap.only_line(), &hidden_sc);
}

#[test]
fn next_to_a_fmt_layer() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let subscriber = tracing_subscriber::registry()
        .with(otel_for(tracing_opentelemetry::layer().with_tracer(provider.tracer("t"))))
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::sink),
        )
        .with(layer);
    let (outer_sc, inner_sc) = with_default(subscriber, || {
        let outer = info_span!("outer", user_id = "u1");
        let _o = outer.enter();
        info!("in outer");
        let inner = info_span!("inner");
        inner.in_scope(|| info!("in inner"));
        (span_context(&outer), span_context(&inner))
    });
    let lines = cap.lines();
    assert_ids(message_line(&lines, "in outer"), &outer_sc);
    assert_ids(message_line(&lines, "in inner"), &inner_sc);
}

#[test]
fn layer_below_the_otel_layer() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let subscriber = otel_layer_outside(&provider, layer);
    let (sc, never_sc) = with_default(subscriber, || {
        let span = info_span!("s");
        span.in_scope(|| info!("inside"));
        let never = info_span!("never");
        info!(parent: &never, "explicit");
        (span_context(&span), span_context(&never))
    });
    let lines = cap.lines();
    assert_ids(message_line(&lines, "inside"), &sc);
    assert_ids(message_line(&lines, "explicit"), &never_sc);
}

#[test]
fn without_context_activation() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let subscriber = without_context_activation_subscriber(&provider, layer);
    let sc = with_default(subscriber, || {
        let span = info_span!("s");
        span.in_scope(|| info_span!("child").in_scope(|| info!("inside")));
        span_context(&span)
    });
    let line = cap.only_line();
    assert_eq!(line.str("traceId"), sc.trace_id().to_string());
    assert_ne!(line.str("spanId"), sc.span_id().to_string());
}

#[test]
fn the_same_span_logs_the_same_ids_every_time() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let sc = with_default(otel_subscriber(&provider, layer), || {
        let span = info_span!("s");
        for i in 0..5 {
            span.in_scope(|| info!(i, "again"));
        }
        span_context(&span)
    });
    let lines = cap.lines();
    assert_eq!(lines.len(), 5);
    for line in &lines {
        assert_ids(line, &sc);
    }
}

#[test]
fn two_subscribers_do_not_mix_ids() {
    let (cap_a, layer_a) = capture_layer();
    let (cap_b, layer_b) = capture_layer();
    let provider = provider();
    let sub_a = otel_subscriber(&provider, layer_a);
    let sub_b = otel_subscriber(&provider, layer_b);
    let sc_a = with_default(sub_a, || {
        let span = info_span!("a");
        span.in_scope(|| info!("a"));
        span_context(&span)
    });
    let sc_b = with_default(sub_b, || {
        let span = info_span!("b");
        span.in_scope(|| info!("b"));
        span_context(&span)
    });
    assert_ids(&cap_a.only_line(), &sc_a);
    assert_ids(&cap_b.only_line(), &sc_b);
}

// Many spans of one callsite, in setups where the OpenTelemetry context current inside a span
// is not the span's own (layers the other way round, activation off, contexts attached by the
// code, spans hidden from the OpenTelemetry layer by a filter that decides per span): every line
// carries its own span's ids, or its nearest ancestor's, never the attached context's.

/// Runs `f` with the lines of a new capturing layer, under the subscriber `make` builds from that
/// layer and a new tracer provider.
fn capturing<S>(
    make: impl FnOnce(
        &opentelemetry_sdk::trace::SdkTracerProvider,
        traceline::Layer<common::Capture>,
    ) -> S,
    f: impl FnOnce(&common::Capture),
) where
    S: tracing::Subscriber + Send + Sync + 'static,
{
    let (cap, layer) = capture_layer();
    let provider = provider();
    with_default(make(&provider, layer), || f(&cap));
}

/// One callsite for every span of the tests below.
fn work(i: usize) -> tracing::Span {
    info_span!("work", i)
}

/// Logs one line in each of `n` new spans of one callsite (each entered once); returns each
/// span's own context.
fn log_in_spans(n: usize) -> Vec<opentelemetry::trace::SpanContext> {
    (0..n)
        .map(|i| {
            let span = work(i);
            span.in_scope(|| info!(i, "in work"));
            span_context(&span)
        })
        .collect()
}

/// Asserts that the captured lines are one per context, each with that context's ids.
fn assert_each_line_has_its_spans_ids(
    cap: &common::Capture,
    contexts: &[opentelemetry::trace::SpanContext],
) {
    let lines = cap.lines();
    assert_eq!(lines.len(), contexts.len());
    for (line, sc) in lines.iter().zip(contexts) {
        assert_ids(line, sc);
    }
    let distinct: std::collections::HashSet<_> =
        lines.iter().map(|l| l.str("spanId").to_owned()).collect();
    assert_eq!(
        distinct.len(),
        contexts.len(),
        "every span has ids of its own"
    );
}

#[test]
fn many_spans_of_one_callsite_each_log_their_own_ids() {
    for parent in [false, true] {
        capturing(otel_subscriber, |cap| {
            let outer = info_span!("outer");
            let _o = parent.then(|| outer.enter());
            assert_each_line_has_its_spans_ids(cap, &log_in_spans(50));
        });
    }
}

#[test]
fn many_spans_with_the_otel_layer_outside_this_one_log_their_own_ids() {
    // The OpenTelemetry layer runs after traceline's: when traceline sees a span entered, the
    // context current is still the parent's.
    capturing(otel_layer_outside, |cap| {
        let outer = info_span!("outer");
        let _o = outer.enter();
        info!("in outer");
        let mut contexts = vec![span_context(&outer)];
        contexts.extend(log_in_spans(50));
        assert_each_line_has_its_spans_ids(cap, &contexts);
    });
}

#[test]
fn many_spans_without_context_activation_log_their_own_ids() {
    capturing(without_context_activation_subscriber, |cap| {
        let outer = info_span!("outer");
        let _o = outer.enter();
        assert_each_line_has_its_spans_ids(cap, &log_in_spans(50));
    });
}

#[test]
fn spans_hidden_from_the_otel_layer_never_take_an_attached_context() {
    // `scope` spans are filtered out of the OpenTelemetry layer: their lines carry the ids of
    // their nearest ancestor with some (none here), even while the code has attached a context
    // of its own and after many such spans.
    use tracing_subscriber::filter::filter_fn;
    let filter = filter_fn(|m| m.name() != "scope");
    capturing(
        |p, l| otel_layer_behind(p, filter, l),
        |cap| {
            let _attached = remote_context("01").attach();
            for i in 0..50 {
                let span = info_span!("scope", i);
                span.in_scope(|| info!(i, "in scope"));
            }
            let lines = cap.lines();
            assert_eq!(lines.len(), 50);
            for line in &lines {
                assert_no_ids(line);
            }
            // A tracked span afterwards still gets its own ids.
            let span = info_span!("tracked");
            span.in_scope(|| info!("in tracked"));
            assert_ids(&cap.lines()[50], &span_context(&span));
        },
    );
}

#[test]
fn spans_entered_twice_with_the_otel_layer_outside_log_their_own_ids() {
    // On the second enter the OpenTelemetry layer has attached the span's context; on a single
    // enter the context current when traceline sees the span entered is still the parent's.
    capturing(otel_layer_outside, |cap| {
        let outer = info_span!("outer");
        let _o = outer.enter();
        let mut contexts: Vec<_> = (0..5)
            .map(|i| {
                let span = work(i);
                span.in_scope(|| span.in_scope(|| info!(i, "in work")));
                span_context(&span)
            })
            .collect();
        contexts.extend(log_in_spans(1));
        assert_each_line_has_its_spans_ids(cap, &contexts);
    });
}

#[test]
fn a_span_made_while_telemetry_is_suppressed_never_takes_the_attached_context() {
    // The OpenTelemetry layer behind the filter `init()` uses (nothing is exported while
    // telemetry is suppressed): it sees some spans of a callsite and not others.
    use tracing_subscriber::filter::DynFilterFn;
    let filter =
        DynFilterFn::new(|_, _| !opentelemetry::Context::is_current_telemetry_suppressed());
    capturing(
        |p, l| otel_layer_behind(p, filter, l),
        |cap| {
            log_in_spans(5);
            let _attached = remote_context("01").attach();
            let _suppressed = opentelemetry::Context::enter_telemetry_suppressed_scope();
            let span = work(5);
            span.in_scope(|| info!(i = 5, "in work"));
            let lines = cap.lines();
            assert_eq!(lines.len(), 6);
            assert_no_ids(&lines[5]);
        },
    );
}

#[test]
fn an_explicit_root_hidden_by_a_changing_filter_has_no_ids() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tracing_subscriber::filter::DynFilterFn;
    let export = Arc::new(AtomicBool::new(true));
    let switch = export.clone();
    let filter =
        DynFilterFn::new(move |m, _| m.name() == "outer" || switch.load(Ordering::Relaxed));
    capturing(
        |p, l| otel_layer_behind(p, filter, l),
        |cap| {
            let outer = info_span!("outer");
            let _o = outer.enter();
            for i in 0..5 {
                let span = info_span!(parent: None, "job", i);
                span.in_scope(|| info!(i, "in job"));
            }
            export.store(false, Ordering::Relaxed);
            let span = info_span!(parent: None, "job", i = 5);
            span.in_scope(|| info!(i = 5, "in job"));
            let lines = cap.lines();
            assert_eq!(lines.len(), 6);
            assert!(
                !span_context(&span).is_valid(),
                "the last job is not exported"
            );
            assert_no_ids(&lines[5]);
        },
    );
}

#[test]
fn without_context_activation_contexts_attached_by_the_code_do_not_leak_into_lines() {
    capturing(without_context_activation_subscriber, |cap| {
        let outer = info_span!("outer");
        let _o = outer.enter();
        let _outer_cx = outer.context().attach();
        let mut contexts = Vec::new();
        for i in 0..5 {
            let span = work(i);
            let _cx = span.context().attach();
            span.in_scope(|| info!(i, "in work"));
            contexts.push(span_context(&span));
        }
        contexts.extend(log_in_spans(1));
        assert_each_line_has_its_spans_ids(cap, &contexts);
    });
}

// Per-layer filters that hide some spans from traceline, some from the OpenTelemetry layer, and
// some from both (a third layer, unfiltered, still makes those): every line carries the ids of
// its own span or, when OpenTelemetry does not know it, of the nearest ancestor it knows, and
// the fields of its own span's nearest ancestor that traceline sees.

/// Spans named `hidden*` are hidden from both layers, `nootel*` from OpenTelemetry only and
/// `notl*` from traceline only; a fmt layer writing nowhere sees them all.
fn split_view_subscriber(
    provider: &opentelemetry_sdk::trace::SdkTracerProvider,
    layer: traceline::Layer<common::Capture>,
) -> impl tracing::Subscriber + Send + Sync + 'static + use<> {
    use tracing_subscriber::filter::filter_fn;
    let hidden = |m: &tracing::Metadata<'_>, prefix: &str| {
        m.is_span() && (m.name().starts_with("hidden") || m.name().starts_with(prefix))
    };
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
        .with(
            otel_for(tracing_opentelemetry::layer().with_tracer(provider.tracer("traceline-tests")))
                .with_filter(filter_fn(move |m| !hidden(m, "nootel"))),
        )
        .with(layer.with_filter(filter_fn(move |m| !hidden(m, "notl"))))
}

#[test]
fn event_in_a_span_hidden_from_both_layers_logs_its_nearest_known_ancestor() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let request_sc = with_default(split_view_subscriber(&provider, layer), || {
        let request = info_span!("request", user = "alice");
        let _r = request.enter();
        let hidden = info_span!("hidden_db");
        let _h = hidden.enter();
        info!("in hidden");
        info!(parent: &hidden, "explicit hidden");
        span_context(&request)
    });
    let lines = cap.lines();
    for message in ["in hidden", "explicit hidden"] {
        let line = message_line(&lines, message);
        assert_ids(line, &request_sc);
        assert_eq!(line.str("user"), "alice", "{line:?}");
    }
}

#[test]
fn ancestors_hidden_from_traceline_still_give_their_ids() {
    // grand → notl_parent (only OpenTelemetry sees it) → nootel_child (only traceline sees it):
    // the child's line carries the parent's ids, the nearest OpenTelemetry knows.
    let (cap, layer) = capture_layer();
    let provider = provider();
    let parent_sc = with_default(split_view_subscriber(&provider, layer), || {
        let grand = info_span!("grand");
        let _g = grand.enter();
        let parent = info_span!("notl_parent");
        let _p = parent.enter();
        let child = info_span!("nootel_child", step = 1);
        let _c = child.enter();
        info!("in child");
        span_context(&parent)
    });
    let line = cap.only_line();
    assert_ids(&line, &parent_sc);
    assert_eq!(line.num("step"), "1");
}

#[test]
fn explicit_parent_hidden_from_traceline_keeps_its_ancestors_fields() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let db_sc = with_default(split_view_subscriber(&provider, layer), || {
        let request = info_span!("request", user = "alice");
        let _r = request.enter();
        let db = info_span!("notl_db");
        db.in_scope(|| info!("contextual"));
        info!(parent: &db, "explicit");
        span_context(&db)
    });
    let lines = cap.lines();
    for message in ["contextual", "explicit"] {
        let line = message_line(&lines, message);
        assert_ids(line, &db_sc);
        assert_eq!(line.str("user"), "alice", "{line:?}");
    }
}

#[test]
fn a_hidden_span_takes_fields_from_its_own_ancestors_not_the_entered_span() {
    // `step` (hidden from traceline) is a child of `job`, entered while an unrelated `request`
    // is entered: its line takes job's fields and transaction, in job's trace.
    let (cap, layer) = capture_layer();
    let layer = layer.with_schema(traceline::Schema::ecs());
    let provider = provider();
    let (job_sc, step_sc) = with_default(split_view_subscriber(&provider, layer), || {
        let job = info_span!(parent: None, "job", job_id = 7);
        let request = info_span!(parent: None, "request", user = "alice");
        let _r = request.enter();
        let step = info_span!(parent: &job, "notl_step");
        let _s = step.enter();
        info!("in step");
        (span_context(&job), span_context(&step))
    });
    let line = cap.only_line();
    assert_eq!(line.str("trace.id"), step_sc.trace_id().to_string());
    assert_eq!(line.str("span.id"), step_sc.span_id().to_string());
    assert_eq!(line.str("transaction.id"), job_sc.span_id().to_string());
    assert_eq!(line.num("job_id"), "7", "{line:?}");
    assert!(
        !line.has("user"),
        "a field of the entered, unrelated span: {line:?}"
    );
}

/// The nested layout, with spans hidden from traceline: `span` and `spans` are the same spans
/// the flat layout takes fields from. A hidden explicit parent keeps its ancestors' (`spans`
/// was missing); a hidden span entered under an unrelated span lists its own ancestors, not
/// the entered span.
#[test]
fn nested_layout_spans_follow_the_events_own_ancestors_past_hidden_spans() {
    let provider = provider();
    let (cap, layer) = capture_layer();
    let layer = layer.with_field_layout(traceline::FieldLayout::Nested);
    with_default(split_view_subscriber(&provider, layer), || {
        let request = info_span!("request", user = "alice");
        let _r = request.enter();
        let db = info_span!("notl_db");
        db.in_scope(|| info!("contextual"));
        info!(parent: &db, "explicit");
    });
    let lines = cap.lines();
    for message in ["contextual", "explicit"] {
        let line = message_line(&lines, message);
        assert_eq!(line.at("span").str("name"), "request", "{line:?}");
        let spans = line.at("spans").as_arr();
        assert_eq!(spans.len(), 1, "{line:?}");
        assert_eq!(spans[0].str("name"), "request", "{line:?}");
        assert_eq!(spans[0].str("user"), "alice", "{line:?}");
    }

    let (cap, layer) = capture_layer();
    let layer = layer.with_field_layout(traceline::FieldLayout::Nested);
    with_default(split_view_subscriber(&provider, layer), || {
        let job = info_span!(parent: None, "job", job_id = 7);
        let request = info_span!(parent: None, "request", user = "alice");
        let _r = request.enter();
        let step = info_span!(parent: &job, "notl_step");
        let _s = step.enter();
        info!("in step");
    });
    let line = cap.only_line();
    assert_eq!(line.at("span").str("name"), "job", "{line:?}");
    let names: Vec<&str> = line
        .at("spans")
        .as_arr()
        .iter()
        .map(|s| s.str("name"))
        .collect();
    assert_eq!(names, ["job"], "{line:?}");
}

/// ECS `transaction.id` is the local root of the event's own trace: a span that starts a new
/// trace inside another span (a request inside a connection span) is its own local root.
#[test]
fn ecs_transaction_id_is_the_root_of_the_events_own_trace() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let layer = layer.with_schema(traceline::Schema::ecs());
    let (conn_sc, req_sc) = with_default(otel_subscriber(&provider, layer), || {
        let conn = info_span!("connection");
        let _c = conn.enter();
        let request = info_span!("request");
        // What the HTTP middleware does for a request with no traceparent.
        let _ = request.set_parent(opentelemetry::Context::new());
        let _r = request.enter();
        let child = info_span!("db");
        let _d = child.enter();
        info!("in the request's child");
        drop(_d);
        info!("in the request");
        (span_context(&conn), span_context(&request))
    });
    assert_ne!(conn_sc.trace_id(), req_sc.trace_id());
    let lines = cap.lines();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(line.str("trace.id"), req_sc.trace_id().to_string());
        assert_eq!(
            line.str("transaction.id"),
            req_sc.span_id().to_string(),
            "{line:?}"
        );
    }
}

/// A span OpenTelemetry does not know (a correlation scope hidden from it, as `init()` does) is
/// passed over: the local root is the outermost span it knows in the trace.
#[test]
fn ecs_transaction_id_passes_over_spans_hidden_from_opentelemetry() {
    use traceline::correlation::{self, CorrelationId};
    let (cap, layer) = capture_layer();
    let provider = provider();
    let otel = otel_for(tracing_opentelemetry::layer().with_tracer(provider.tracer("t")))
        .with_filter(tracing_subscriber::filter::filter_fn(|m| {
            m.target() != "traceline::correlation"
        }));
    let subscriber = tracing_subscriber::registry()
        .with(otel)
        .with(layer.with_schema(traceline::Schema::ecs()));
    let sc = with_default(subscriber, || {
        let _s = correlation::scope(CorrelationId::parse("req-1").unwrap()).entered();
        let request = info_span!("request");
        let _r = request.enter();
        let inner = info_span!("inner");
        let _i = inner.enter();
        info!("handled");
        span_context(&request)
    });
    let line = cap.only_line();
    assert_eq!(line.str("http.request.id"), "req-1");
    assert_eq!(
        line.str("transaction.id"),
        sc.span_id().to_string(),
        "{line:?}"
    );
}

// Where the context current on the thread is not the event's span's own, or the same span ids
// are in use in two subscribers: with the OpenTelemetry layer watched, the ids noted as a span
// is entered must be that span's, and only its.

#[test]
fn after_an_inner_span_is_left_the_outer_span_logs_its_own_ids() {
    capturing(otel_subscriber, |cap| {
        let outer = info_span!("outer");
        let _o = outer.enter();
        let inner = info_span!("inner");
        inner.in_scope(|| info!("in inner"));
        info!("in outer");
        let sibling = info_span!("sibling");
        sibling.in_scope(|| info!("in sibling"));
        let lines = cap.lines();
        assert_ids(message_line(&lines, "in inner"), &span_context(&inner));
        assert_ids(message_line(&lines, "in outer"), &span_context(&outer));
        assert_ids(message_line(&lines, "in sibling"), &span_context(&sibling));
    });
}

#[test]
fn a_context_attached_inside_a_span_is_not_taken_for_a_child_hidden_from_otel() {
    use tracing_subscriber::filter::filter_fn;
    let filter = filter_fn(|m| m.name() != "hidden");
    capturing(
        |p, l| otel_layer_behind(p, filter, l),
        |cap| {
            let outer = info_span!("outer");
            let _o = outer.enter();
            let _attached = remote_context("01").attach();
            let hidden = info_span!("hidden");
            hidden.in_scope(|| info!("in hidden"));
            let tracked = info_span!("tracked");
            tracked.in_scope(|| info!("in tracked"));
            let lines = cap.lines();
            // The hidden span logs its nearest tracked ancestor's ids, not the attached context's.
            assert_ids(message_line(&lines, "in hidden"), &span_context(&outer));
            let sc = span_context(&tracked);
            assert_eq!(sc.trace_id().to_string(), REMOTE_TRACE);
            assert_ids(message_line(&lines, "in tracked"), &sc);
        },
    );
}

#[test]
fn a_nested_subscriber_handing_out_the_same_span_ids_does_not_mix_them() {
    let (cap_a, layer_a) = capture_layer();
    let (cap_b, layer_b) = capture_layer();
    let provider = provider();
    let sub_a = tracing::Dispatch::new(otel_subscriber(&provider, layer_a));
    let sub_b = tracing::Dispatch::new(otel_subscriber(&provider, layer_b));
    tracing::dispatcher::with_default(&sub_a, || {
        let a = info_span!("a");
        let _a = a.enter();
        // A span of the other subscriber, with the same id, entered last on this thread and
        // still entered while `a` logs.
        let b = tracing::dispatcher::with_default(&sub_b, || info_span!("b").entered());
        assert_eq!(b.id(), a.id(), "both subscribers gave their first span the same id");
        info!("in a");
        tracing::dispatcher::with_default(&sub_b, || info!("in b"));
        let b_sc = tracing::dispatcher::with_default(&sub_b, || span_context(&b));
        assert_ids(&cap_a.only_line(), &span_context(&a));
        assert_ids(&cap_b.only_line(), &b_sc);
    });
}

#[test]
fn a_span_entered_on_two_threads_logs_its_own_ids_on_both() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let dispatch = tracing::Dispatch::new(otel_subscriber(&provider, layer));
    let span = tracing::dispatcher::with_default(&dispatch, || info_span!("shared"));
    std::thread::scope(|s| {
        for t in 0..2 {
            let (span, dispatch) = (&span, &dispatch);
            s.spawn(move || {
                tracing::dispatcher::with_default(dispatch, || {
                    let child = info_span!(parent: span, "child", t);
                    child.in_scope(|| info!(t, "in child"));
                    span.in_scope(|| info!(t, "in shared"));
                });
            });
        }
    });
    let sc = tracing::dispatcher::with_default(&dispatch, || span_context(&span));
    let lines = cap.lines();
    assert_eq!(lines.len(), 4);
    for line in lines.iter().filter(|l| l.str("message") == "in shared") {
        assert_ids(line, &sc);
    }
    for line in lines.iter().filter(|l| l.str("message") == "in child") {
        assert_eq!(line.str("traceId"), sc.trace_id().to_string());
        assert_ne!(line.str("spanId"), sc.span_id().to_string());
    }
}

/// Keeps an instrumented future in a thread-local, to be dropped as the thread's thread-locals
/// are destroyed, and reports whether that went without a panic.
/// On a new thread: sets up the registry's per-thread state and the at-exit slot, then runs
/// `make`, then uses OpenTelemetry's thread-local context (to inject it into a request, say),
/// and keeps the future `make` gives in the slot. Thread-locals are destroyed in the reverse
/// order, so `Instrumented` enters its span to drop the future after OpenTelemetry's context
/// is gone. Returns whether that drop went without a panic.
fn dropped_in_a_thread_local_destructor(
    make: impl FnOnce() -> common::AtExitTask + Send + 'static,
) -> bool {
    let (report, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        with_default(tracing_subscriber::registry(), || {
            info_span!("first").in_scope(|| ())
        });
        common::register_at_exit();
        let task = make();
        let _ = opentelemetry::Context::current();
        common::drop_at_exit(task, report);
    })
    .join()
    .unwrap();
    outcome.recv().expect("the future was dropped at the thread's exit")
}

// Without context activation the OpenTelemetry layer does not touch its thread-local context as
// a span is entered, and neither may the lines' id lookup once it is gone.

#[test]
fn a_future_instrumented_without_context_activation_dropped_in_a_thread_local_destructor() {
    use tracing::Instrument;
    let (_cap, layer) = capture_layer();
    let provider = provider();
    let dispatch = tracing::Dispatch::new(without_context_activation_subscriber(&provider, layer));
    let ok = dropped_in_a_thread_local_destructor(move || {
        tracing::dispatcher::with_default(&dispatch, || {
            let span = info_span!("task");
            span.in_scope(|| info!("in task"));
            std::future::ready(()).instrument(span)
        })
    });
    assert!(ok, "dropping the instrumented future in a thread-local destructor panicked");
}

/// The same for a span made on another thread: the thread dropping it never made one.
#[test]
fn a_span_made_on_another_thread_entered_in_a_thread_local_destructor() {
    use tracing::Instrument;
    let (_cap, layer) = capture_layer();
    let provider = provider();
    let dispatch = tracing::Dispatch::new(without_context_activation_subscriber(&provider, layer));
    let task = tracing::dispatcher::with_default(&dispatch, || {
        std::future::ready(()).instrument(info_span!("task"))
    });
    let ok = dropped_in_a_thread_local_destructor(move || task);
    assert!(ok, "dropping the instrumented future in a thread-local destructor panicked");
}

/// A no-op tracer (no SDK tracer provider, as `tracing_opentelemetry::layer()` has by default,
/// or `opentelemetry::global::tracer` before a provider is set) makes no span of its own: it
/// hands each span its parent's span context. Continued from a caller's `traceparent`, every
/// span then "has" the caller's remote ids. Nothing is exported for them, and the span id is
/// the caller's span, not the event's: the line has no ids, as with no caller.
#[test]
fn noop_tracer_continuing_a_remote_parent_gives_no_id_keys() {
    use opentelemetry::trace::noop::NoopTracerProvider;
    fn run<L>(otel: L)
    where
        L: tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
    {
        let (cap, layer) = capture_layer();
        let subscriber = tracing_subscriber::registry().with(otel).with(layer);
        with_default(subscriber, || {
            let server = info_span!("server");
            server
                .set_parent(remote_context("01"))
                .expect("set_parent right after creating the span");
            server.in_scope(|| {
                info!("in server");
                info_span!("child").in_scope(|| info!("in child"));
            });
            info!(parent: &server, "explicit parent");
            // What the OpenTelemetry layer holds for the span is the caller's context.
            let sc = span_context(&server);
            assert!(sc.is_remote() && sc.span_id().to_string() == REMOTE_SPAN, "{sc:?}");
        });
        let lines = cap.lines();
        assert_eq!(lines.len(), 3);
        for line in &lines {
            assert_no_ids(line);
        }
    }
    let tracer = || NoopTracerProvider::new().tracer("noop");
    run(tracing_opentelemetry::layer().with_tracer(tracer()));
    run(traceline::otel(tracing_opentelemetry::layer().with_tracer(tracer())));
}

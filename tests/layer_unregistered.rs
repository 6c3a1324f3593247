//! Layers that are never told their subscriber: `tracing-subscriber` does not pass
//! `on_register_dispatch` through an `Option` or a `Vec` of layers, nor to a layer swapped in
//! with `reload`. They find it as one of its spans is entered, under the global default (one
//! test here installs it) or a scoped one, and their lines carry the ids.

mod common;

use common::{Capture, assert_ids, span_context};
use opentelemetry::trace::TracerProvider as _;
use tracing::info;
use tracing_subscriber::prelude::*;

#[test]
fn layers_in_an_option_a_vec_or_swapped_in_by_reload_write_the_ids() {
    let provider = common::provider();
    let (in_option, in_vec, reloaded) = (Capture::new(), Capture::new(), Capture::new());
    let (reload, handle) =
        tracing_subscriber::reload::Layer::new(traceline::layer().with_writer(Capture::new()));
    let enabled = true;
    tracing_subscriber::registry()
        .with(traceline::otel(
            tracing_opentelemetry::layer().with_tracer(provider.tracer("t")),
        ))
        .with(enabled.then(|| traceline::layer().with_writer(in_option.clone())))
        .with(vec![traceline::layer().with_writer(in_vec.clone())])
        .with(reload)
        .init();
    handle
        .reload(traceline::layer().with_writer(reloaded.clone()))
        .expect("reloaded");

    // Another thread holds a scoped default of its own meanwhile: inside an event's dispatch
    // `tracing` then gives no dispatcher at all, so the layers find theirs as a span is entered.
    let (ready, wait) = std::sync::mpsc::channel();
    let (done, finish) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        let _guard = tracing::subscriber::set_default(tracing_subscriber::registry());
        ready.send(()).unwrap();
        let _ = finish.recv();
    });
    wait.recv().unwrap();
    let span = tracing::info_span!("request");
    span.in_scope(|| {
        info!("inside");
        tracing::info_span!("child").in_scope(|| info!("in child"));
    });
    done.send(()).unwrap();
    other.join().unwrap();
    let sc = span_context(&span);
    for (name, cap) in [
        ("option", &in_option),
        ("vec", &in_vec),
        ("reload", &reloaded),
    ] {
        let lines = cap.lines();
        assert_eq!(lines.len(), 2, "{name}: {lines:?}");
        assert_ids(&lines[0], &sc);
        assert_eq!(
            lines[1].str("traceId"),
            sc.trace_id().to_string(),
            "{name}: {:?}",
            lines[1]
        );
        assert_ne!(lines[1].str("spanId"), sc.span_id().to_string(), "{name}");
    }
}

/// The same under a scoped default: the layer in an `Option` finds its subscriber as the span
/// is entered.
#[test]
fn a_layer_in_an_option_under_with_default_writes_the_ids() {
    let provider = common::provider();
    let cap = Capture::new();
    let subscriber = tracing_subscriber::registry()
        .with(traceline::otel(
            tracing_opentelemetry::layer().with_tracer(provider.tracer("t")),
        ))
        .with(Some(traceline::layer().with_writer(cap.clone())));
    let sc = tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("request");
        span.in_scope(|| info!("inside"));
        span_context(&span)
    });
    assert_ids(&cap.only_line(), &sc);
}

/// A line written in a span before the layer has found its subscriber (an explicit parent,
/// before any span is entered) has no ids, and that is not kept as the span's answer: once
/// the layer finds its subscriber, the span's lines carry its ids, and its child's too.
#[test]
fn no_ids_before_the_subscriber_is_found_are_not_kept_for_the_span() {
    let provider = common::provider();
    let cap = Capture::new();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("t")))
        .with(Some(traceline::layer().with_writer(cap.clone())));
    let (sc, child_sc) = tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("request");
        info!(parent: &span, "explicit, before any enter");
        let child = tracing::info_span!(parent: &span, "child");
        info!(parent: &child, "in the child, before any enter");
        span.in_scope(|| info!("inside, after enter"));
        info!(parent: &child, "in the child, after");
        (span_context(&span), span_context(&child))
    });
    let lines = cap.lines();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_ids(&lines[2], &sc);
    assert_ids(&lines[3], &child_sc);
}

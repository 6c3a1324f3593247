//! Layers that are never told their subscriber: `tracing-subscriber` does not pass
//! `on_register_dispatch` through an `Option` or a `Vec` of layers, nor to a layer swapped in
//! with `reload`. Under the global default (this binary's only test installs one) their lines
//! still carry the ids.

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

    let span = tracing::info_span!("request");
    span.in_scope(|| {
        info!("inside");
        tracing::info_span!("child").in_scope(|| info!("in child"));
    });
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

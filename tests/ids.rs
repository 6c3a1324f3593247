//! `traceId` / `spanId` / `traceFlags` on each line equal what `OpenTelemetrySpanExt::context()`
//! reports for the event's span, or are absent.
//!
//! The OpenTelemetry layer as it is, asked for each span's ids; `ids_watched.rs` runs the same
//! cases with it wrapped in `traceline::otel`.

mod common;

/// The OpenTelemetry layer of these tests.
type Otel = tracing_opentelemetry::OpenTelemetryLayer<
    tracing_subscriber::Registry,
    opentelemetry_sdk::trace::SdkTracer,
>;

fn otel_for<S>(
    layer: tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer> {
    layer
}

include!("ids_support/cases.rs");

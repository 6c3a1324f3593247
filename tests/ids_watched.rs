//! `traceId` / `spanId` / `traceFlags` on each line equal what `OpenTelemetrySpanExt::context()`
//! reports for the event's span, or are absent.
//!
//! The cases of `ids.rs`, with the OpenTelemetry layer wrapped in `traceline::otel`: a span's
//! ids are taken from the context attached as it is entered where that is known to be its own.

mod common;

/// The OpenTelemetry layer of these tests: wrapped, then boxed to have a type to name.
type Otel = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

fn otel_for<S>(
    layer: tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    Box::new(traceline::otel(layer))
}

include!("ids_support/cases.rs");

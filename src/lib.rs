//! Structured JSON logging for [`tracing`], with the OpenTelemetry trace and span ids on every
//! line.
//!
//! traceline is a [`tracing_subscriber::Layer`] that writes each event as one JSON object per
//! line, carrying the `traceId` and `spanId` of the OpenTelemetry span the event belongs to
//! (read through [`tracing_opentelemetry`]), so a log line can be joined with its trace in
//! Jaeger, Tempo, Loki, Elasticsearch or any store that keeps JSON:
//!
//! ```text
//! {"timestamp":"2026-11-25T10:32:03.123456789Z","level":"INFO","message":"order created","target":"orders","traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","traceFlags":"01","order.customer_id":42}
//! ```
//!
//! # Quick start
//!
//! ```
//! use opentelemetry::trace::TracerProvider as _;
//! use tracing_subscriber::prelude::*;
//!
//! let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
//! let subscriber = tracing_subscriber::registry()
//!     .with(traceline::otel(tracing_opentelemetry::layer().with_tracer(provider.tracer("app"))))
//!     .with(traceline::layer().with_service_name("orders"));
//!
//! tracing::subscriber::with_default(subscriber, || {
//!     let span = tracing::info_span!("createOrder", order.customer_id = 42);
//!     let _entered = span.enter();
//!     tracing::info!(order.item_count = 3, "order created");
//! });
//! ```
//!
//! [`otel`] wraps the OpenTelemetry layer so that each span's first line takes its ids from
//! the context the layer attached as the span was entered; the bare layer gives the same lines.
//!
//! # What every line guarantees
//! - Exactly one line, one JSON object, whatever the input: strings are escaped completely
//!   (every control character: C0, DEL and C1; `"`, `\`, U+2028, U+2029), non-finite floats
//!   become strings, 128-bit integers keep every digit.
//! - Never the same key twice: see [`schema`](crate::schema#key-collisions).
//! - `traceId` / `spanId` / `traceFlags` only when the event is inside a span that has real
//!   OpenTelemetry ids; never zeros.
//! - One `write` call per line, so lines from many threads never interleave.
//! - Bounded: a value longer than 64 KiB and a line longer than 256 KiB are cut, visibly
//!   ([`Layer::with_max_field_len`], [`Layer::with_max_line_len`]).
//! - Nothing unaccounted for: every line is counted as written or dropped ([`Stats`]); a
//!   failing writer, or a panicking `Debug` value, never panics the program through traceline,
//!   which writes `"<Debug panicked>"` for it. The OpenTelemetry layer formats the same values
//!   without catching a panic: span fields always, and event fields when it records events as
//!   span events, as `tracing_opentelemetry::layer()` does by default. Under
//!   `traceline::init()`, which keeps events out of it, a panicking event field is safe and a
//!   panicking span field is not.
#![warn(missing_docs)]
// Allowed in four places of the JSON writer, each measured to pay (see `json`).
#![deny(unsafe_code)]

pub mod correlation;
#[cfg(feature = "install")]
#[doc(hidden)]
pub mod doc_support;
mod error;
mod fields;
#[cfg(feature = "http")]
pub mod http;
mod ids;
#[cfg(feature = "install")]
pub mod install;
pub mod json;
mod layer;
mod output;
pub mod redact;
pub mod schema;
mod timestamp;

/// The README's Rust snippets, compiled (and run, but for those that install an exporter or
/// write under `/var/log`) as doc tests.
#[cfg(all(doctest, feature = "install", feature = "http"))]
#[doc = include_str!("../README.md")]
struct ReadmeSnippets;

pub use error::{record_error, record_error_dyn};
pub use ids::otel;
#[cfg(feature = "install")]
pub use install::{Guard, InitError, builder, init, init_or_panic};
pub use layer::{DEFAULT_MAX_FIELD_LEN, DEFAULT_MAX_LINE_LEN, Layer, TRUNCATED_KEY, layer};
pub use output::{Stats, StdoutLine};
pub use redact::Redaction;
pub use schema::{ErrorLayout, FieldLayout, FlagsFormat, IdFormat, Key, Schema, UnknownSchema};
pub use timestamp::TimestampFormat;

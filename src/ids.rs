//! Trace and span ids of a `tracing` span, read through `tracing-opentelemetry`.
//!
//! The ids are looked up once per span, on the first line written inside it, and cached with
//! the span's other data: later lines pay a read of the span's extensions and nothing more.
//! Looking them up starts the OpenTelemetry span, so it is never done when a span is created
//! (that would make a later `set_parent` fail).

use opentelemetry::trace::TraceContextExt;
use tracing_core::{Dispatch, span};

/// The OpenTelemetry identity of a span, as written on a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ids {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    pub(crate) sampled: bool,
}

/// Asks the OpenTelemetry layer in `dispatch` for the span's context. `None` when there is no
/// such layer, the span is not known to it, or the ids are all zero (no SDK tracer provider).
///
/// Must not be called while holding the span's extensions.
pub(crate) fn lookup(id: &span::Id, dispatch: &Dispatch) -> Option<Ids> {
    let cx = tracing_opentelemetry::get_otel_context(id, dispatch)?;
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    Some(Ids {
        trace_id: sc.trace_id().to_bytes(),
        span_id: sc.span_id().to_bytes(),
        sampled: sc.is_sampled(),
    })
}

//! Trace and span ids of a `tracing` span, read through `tracing-opentelemetry`.
//!
//! The ids are looked up once per span, on the first line written inside it, and cached with
//! the span's other data: later lines pay a read of the span's extensions and nothing more.
//! Looking them up starts the OpenTelemetry span, so it is never done when a span is created
//! (that would make a later `set_parent` fail).
//!
//! The first lookup asks the OpenTelemetry layer ([`lookup`]: a downcast, a registry lookup, a
//! mutex, a `Context` clone). It can often be skipped: when the OpenTelemetry layer runs before
//! traceline's (`registry().with(otel).with(traceline)`, as `init()` builds it) and activates
//! contexts (its default), the context current on the thread just after a span is entered is
//! that span's own ([`current`]). traceline records it when it sees the span entered, and uses
//! it for the span's first line only once spans of the same callsite (on that thread) have
//! shown, by the full lookup, that it is their own: four of them, and never one that was not.
//! A callsite whose spans the OpenTelemetry layer does not see (a per-layer filter) never gets
//! there; a span whose entered context was not its own (the layers the other way round, or
//! activation off) turns this off for the layer.

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

/// The ids of the OpenTelemetry context current on this thread, if valid.
///
/// Right after the OpenTelemetry layer has entered a span (it attaches the span's context when
/// context activation is on, the default), these are that span's ids. A panic (the context's
/// thread-local in use) gives `None`.
pub(crate) fn current() -> Option<Ids> {
    std::panic::catch_unwind(|| {
        opentelemetry::Context::map_current(|cx| {
            let span = cx.span();
            let sc = span.span_context();
            sc.is_valid().then(|| Ids {
                trace_id: sc.trace_id().to_bytes(),
                span_id: sc.span_id().to_bytes(),
                sampled: sc.is_sampled(),
            })
        })
    })
    .ok()
    .flatten()
}

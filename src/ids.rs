//! Trace and span ids of a `tracing` span, read through `tracing-opentelemetry`.
//!
//! The ids are looked up once per span, on the first line written inside it, and cached with
//! the span's other data: later lines pay a read of the span's extensions and nothing more.
//! Looking them up starts the OpenTelemetry span, so it is never done when a span is created
//! (that would make a later `set_parent` fail).

use opentelemetry::trace::TraceContextExt;
use tracing_core::{Dispatch, span};
use tracing_subscriber::registry::{LookupSpan, Registry, SpanRef};

/// The OpenTelemetry identity of a span, as written on a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ids {
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    pub(crate) sampled: bool,
    /// The trace id's 32 lowercase hex digits, then the span id's 16: worked out once per span,
    /// copied into every line of it.
    pub(crate) hex: [u8; 48],
}

impl Ids {
    pub(crate) fn new(trace_id: [u8; 16], span_id: [u8; 8], sampled: bool) -> Ids {
        let word = |b: &[u8]| u64::from_be_bytes(b.try_into().expect("8 bytes"));
        let mut hex = [0; 48];
        hex[..16].copy_from_slice(&crate::json::hex16(word(&trace_id[..8])));
        hex[16..32].copy_from_slice(&crate::json::hex16(word(&trace_id[8..])));
        hex[32..].copy_from_slice(&crate::json::hex16(word(&span_id)));
        Ids {
            trace_id,
            span_id,
            sampled,
            hex,
        }
    }
}

/// Calls `f` on the ancestors of the span `id` in the registry behind `dispatch`, nearest
/// first and unfiltered (a per-layer filter may hide spans from one layer and not another),
/// until it gives a value. `None` when the subscriber's spans are not in a [`Registry`];
/// `Some(None)` when no ancestor gave a value.
pub(crate) fn find_ancestor<T>(
    dispatch: &Dispatch,
    id: &span::Id,
    mut f: impl FnMut(&SpanRef<'_, Registry>) -> Option<T>,
) -> Option<Option<T>> {
    let registry = dispatch.downcast_ref::<Registry>()?;
    let mut span = registry.span(id).and_then(|s| s.parent());
    while let Some(s) = span {
        if let Some(found) = f(&s) {
            return Some(Some(found));
        }
        span = s.parent();
    }
    Some(None)
}

/// The OpenTelemetry context of the nearest ancestor of the span `id` that the OpenTelemetry
/// layer in `dispatch` tracks (with valid ids), walked in the registry, unfiltered.
pub(crate) fn nearest_tracked(
    dispatch: &Dispatch,
    id: &span::Id,
) -> Option<opentelemetry::Context> {
    find_ancestor(dispatch, id, |a| {
        tracing_opentelemetry::get_otel_context(&a.id(), dispatch)
            .filter(|cx| cx.span().span_context().is_valid())
    })
    .flatten()
}

/// [`nearest_tracked`] for `span`, in the current dispatcher (from outside its callbacks).
pub(crate) fn nearest_tracked_of(span: &tracing::Span) -> Option<opentelemetry::Context> {
    let id = span.id()?;
    tracing::dispatcher::get_default(|dispatch| nearest_tracked(dispatch, &id))
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
    Some(Ids::new(
        sc.trace_id().to_bytes(),
        sc.span_id().to_bytes(),
        sc.is_sampled(),
    ))
}

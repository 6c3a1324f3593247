//! Trace and span ids of a `tracing` span, read through `tracing-opentelemetry`.
//!
//! The ids are looked up once per span, on the first line written inside it, and cached with
//! the span's other data: later lines pay a read of the span's extensions and nothing more.
//! Looking them up starts the OpenTelemetry span, so it is never done when a span is created
//! (that would make a later `set_parent` fail).
//!
//! With the OpenTelemetry layer wrapped in [`otel`], the first line usually needs no lookup:
//! the ids of the context the layer attached as the span was entered on the thread were noted
//! then, and are the span's own while it stays entered.

use opentelemetry::trace::TraceContextExt;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing_core::{Dispatch, Subscriber, span};
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
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
        Ids {
            trace_id,
            span_id,
            sampled,
            hex: crate::json::hex_ids(&trace_id, &span_id),
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
/// such layer, the span is not known to it, or it has no ids of its own: all zero, or a
/// caller's remote ones handed on (no SDK tracer provider).
///
/// Must not be called while holding the span's extensions.
pub(crate) fn lookup(id: &span::Id, dispatch: &Dispatch) -> Option<Ids> {
    let cx = tracing_opentelemetry::get_otel_context(id, dispatch)?;
    let span = cx.span();
    let sc = span.span_context();
    // A span's own context is never remote: a remote one is a caller's, handed on unchanged by
    // a tracer that makes no span of its own (the no-op tracer), and not this span's ids.
    if !sc.is_valid() || sc.is_remote() {
        return None;
    }
    Some(Ids::new(
        sc.trace_id().to_bytes(),
        sc.span_id().to_bytes(),
        sc.is_sampled(),
    ))
}

/// `tracing-opentelemetry`'s layer, watched by traceline: as a span is entered, the ids of the
/// context the layer attaches for it are noted on the thread, and the span's first line takes
/// them from there instead of asking the layer for the span's context (which locks the span's
/// data and clones its context).
///
/// Put it where the OpenTelemetry layer would go, with the same filters: it is that layer,
/// between two that only take a note as a span is entered and exited. Lines are the same with
/// or without it: a span not seen entered (not tracked by the layer, its context not attached,
/// or entered on another thread) is asked for, as before. `traceline::init` sets it up this
/// way.
///
/// ```
/// use opentelemetry::trace::TracerProvider as _;
/// use tracing_subscriber::prelude::*;
///
/// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
/// let subscriber = tracing_subscriber::registry()
///     .with(traceline::otel(tracing_opentelemetry::layer().with_tracer(provider.tracer("app"))))
///     .with(traceline::layer());
/// # let _ = subscriber;
/// ```
pub fn otel<S, T>(layer: OpenTelemetryLayer<S, T>) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    T: opentelemetry::trace::Tracer + Send + Sync + 'static,
    T::Span: Send + Sync,
{
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let key = NEXT.fetch_add(1, Ordering::Relaxed);
    EnterStart { key }
        .and_then(layer)
        .and_then(EnterEnd { key })
}

/// Runs before the OpenTelemetry layer of an [`otel`]: notes the thread's current context as
/// a span is entered.
struct EnterStart {
    key: u64,
}

/// Runs after the OpenTelemetry layer of an [`otel`]: when the thread's current context
/// changed across the layer's `on_enter`, the layer attached the span's own (nothing else runs
/// in between), and its ids are noted for the span. Found in a subscriber by its type.
pub(crate) struct EnterEnd {
    pub(crate) key: u64,
}

type Noted = ([u8; 16], [u8; 8], bool);

/// The ids of the context attached when a span was entered on this thread, by the
/// OpenTelemetry layer of the [`otel`] named `key` (0: none). Valid until the span is exited.
#[derive(Clone, Copy)]
struct Entered {
    key: u64,
    span: u64,
    ids: Noted,
}

impl Entered {
    const NONE: Entered = Entered {
        key: 0,
        span: 0,
        ids: ([0; 16], [0; 8], false),
    };
}

thread_local! {
    /// The span being entered and the thread's context before the OpenTelemetry layer's
    /// `on_enter`, then the ids noted for the last span entered.
    static BEFORE: Cell<(u64, u64, Option<Noted>)> = const { Cell::new((0, 0, None)) };
    static ENTERED: Cell<Entered> = const { Cell::new(Entered::NONE) };
}

/// Made when a span is created on the thread through an [`otel`] layer, just after
/// OpenTelemetry's thread-local context is first used there, so destroyed before that context
/// when the thread ends; [`ALIVE`] says it lives. A span entered in a later thread-local
/// destructor (an instrumented future dropped there) then takes no note, instead of reading a
/// context that is gone (a panic, where the OpenTelemetry layer itself, with context
/// activation off, reads nothing). A thread that makes no span this way only ever asks the
/// OpenTelemetry layer for its spans' ids.
struct ContextAlive;

impl Drop for ContextAlive {
    fn drop(&mut self) {
        let _ = ALIVE.try_with(|a| a.set(false));
    }
}

thread_local! {
    static CONTEXT_ALIVE: ContextAlive = {
        let _ = MADE.try_with(|m| m.set(true));
        opentelemetry::Context::map_current(|_| ());
        let _ = ALIVE.try_with(|a| a.set(true));
        ContextAlive
    };
    /// Whether [`CONTEXT_ALIVE`] lives: readable at any time (no destructor), so that reading it
    /// never makes it.
    static ALIVE: Cell<bool> = const { Cell::new(false) };
    /// Whether [`CONTEXT_ALIVE`] was ever made on the thread (no destructor).
    static MADE: Cell<bool> = const { Cell::new(false) };
}

/// Whether OpenTelemetry's thread-local context can be used on this thread: not while the
/// thread's thread-locals are being destroyed, after it (a correlation scope entered in a
/// later thread-local destructor, as an instrumented future dropped there). Makes
/// [`CONTEXT_ALIVE`] on a thread that has none yet; should the context already be gone then
/// (the thread's first such use is in a destructor after it), the use of it that fails is
/// caught, and the answer is no.
pub(crate) fn context_usable() -> bool {
    if ALIVE.try_with(Cell::get).unwrap_or(false) {
        return true;
    }
    if MADE.try_with(Cell::get).unwrap_or(true) {
        // Made and gone: the thread is ending.
        return false;
    }
    std::panic::catch_unwind(|| CONTEXT_ALIVE.try_with(|_| ()).is_ok()).unwrap_or(false)
        && ALIVE.try_with(Cell::get).unwrap_or(false)
}

/// The ids of the thread's current OpenTelemetry context, when it has a valid span; `Err` when
/// it may be gone (or was never known to be there).
#[inline]
fn current() -> Result<Option<Noted>, ()> {
    if !ALIVE.try_with(Cell::get).unwrap_or(false) {
        return Err(());
    }
    Ok(opentelemetry::Context::map_current(|cx| {
        let span = cx.span();
        let sc = span.span_context();
        // Remote: a caller's context (attached by the code, or handed on by a no-op tracer),
        // never a span's own.
        (sc.is_valid() && !sc.is_remote()).then(|| {
            (
                sc.trace_id().to_bytes(),
                sc.span_id().to_bytes(),
                sc.is_sampled(),
            )
        })
    }))
}

/// The ids the [`otel`] layer named `key` noted as the span `id` was entered on this thread, if
/// it is still entered there.
#[inline]
pub(crate) fn entered(key: u64, id: &span::Id) -> Option<Ids> {
    let e = ENTERED.try_with(Cell::get).ok()?;
    (key != 0 && e.key == key && e.span == id.into_u64())
        .then(|| Ids::new(e.ids.0, e.ids.1, e.ids.2))
}

impl<S: Subscriber> Layer<S> for EnterStart {
    /// Makes [`CONTEXT_ALIVE`] while the thread is running, before any span is entered.
    fn on_new_span(&self, _: &span::Attributes<'_>, _: &span::Id, _: Context<'_, S>) {
        let _ = CONTEXT_ALIVE.try_with(|_| ());
    }

    fn on_enter(&self, id: &span::Id, _ctx: Context<'_, S>) {
        let Ok(before) = current() else { return };
        let _ = BEFORE.try_with(|b| b.set((self.key, id.into_u64(), before)));
    }
}

impl<S: Subscriber> Layer<S> for EnterEnd {
    fn on_enter(&self, id: &span::Id, _ctx: Context<'_, S>) {
        let Ok((key, span, before)) = BEFORE.try_with(|b| b.replace((0, 0, None))) else {
            return;
        };
        if (key, span) != (self.key, id.into_u64()) {
            return;
        }
        if let Some(ids) = current().ok().flatten().filter(|now| Some(*now) != before) {
            let _ = ENTERED.try_with(|e| {
                e.set(Entered {
                    key: self.key,
                    span,
                    ids,
                });
            });
        }
    }

    /// Forgets the span's noted ids: they are only known to be its own while it is entered.
    fn on_exit(&self, id: &span::Id, _ctx: Context<'_, S>) {
        let _ = ENTERED.try_with(|e| {
            let noted = e.get();
            if noted.key == self.key && noted.span == id.into_u64() {
                e.set(Entered::NONE);
            }
        });
    }
}

//! Recording an error on the current span, as OpenTelemetry's `recordException` +
//! `setStatus(ERROR)` do.
//!
//! Logging an `ERROR` event does not, by itself, mark a span as failed in OpenTelemetry terms.
//! [`record_error`] does both at once: the span gets status `ERROR` and an `exception` event
//! (`exception.type`, `exception.message`, `exception.stacktrace`), and one ERROR line is
//! written with the error, its source chain, its type and `otel.status_code: "ERROR"`.

use std::cell::Cell;
use std::error::Error;
use std::fmt;

use opentelemetry::KeyValue;
use opentelemetry::trace::Status;
use tracing_opentelemetry::OpenTelemetrySpanExt;

thread_local! {
    /// The error being recorded by [`record_error`] (its address) and its type name, read by
    /// the line writer for that error only.
    pub(crate) static ERROR_TYPE: Cell<Option<RecordedError>> = const { Cell::new(None) };
}

/// The causes of `err`, outermost first; at most 64, so a cyclic chain cannot hang the logger.
/// A `source()` that panics ends the chain there: the panic goes no further.
pub(crate) fn causes<'e>(
    err: &'e (dyn Error + 'static),
) -> impl Iterator<Item = &'e (dyn Error + 'static)> {
    let source = |e: &'e (dyn Error + 'static)| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| e.source()))
            .ok()
            .flatten()
    };
    std::iter::successors(source(err), move |&e| source(e)).take(64)
}

/// The error and its causes, one per line: `message\ncaused by: cause…`.
pub(crate) struct ChainText<'e>(pub(crate) &'e (dyn Error + 'static));

impl fmt::Display for ChainText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        for cause in causes(self.0) {
            write!(f, "\ncaused by: {cause}")?;
        }
        Ok(())
    }
}

/// Records `err` on the current span: OpenTelemetry status `ERROR` with the error's message,
/// an `exception` span event, and one ERROR line carrying the error (message, source chain and
/// type) and `otel.status_code: "ERROR"`.
///
/// ```
/// use tracing_subscriber::prelude::*;
///
/// # let subscriber = tracing_subscriber::registry().with(traceline::layer());
/// # tracing::subscriber::with_default(subscriber, || {
/// let err = "x".parse::<u32>().unwrap_err();
/// let span = tracing::info_span!("parse");
/// let _entered = span.enter();
/// traceline::record_error(&err);
/// // {"level":"ERROR","message":"invalid digit found in string",...,
/// //  "otel.status_code":"ERROR","error":{"message":"invalid digit found in string","chain":[],
/// //  "type":"core::num::error::ParseIntError"}}
/// # });
/// ```
pub fn record_error<E: Error + 'static>(err: &E) {
    record(err, Some((is_type::<E>, std::any::type_name::<E>())));
}

/// [`record_error`] for an error whose type is not known here: a `&dyn Error`, or the
/// contents of a `Box<dyn Error + Send + Sync>` (`&*boxed`). The line and the span event then
/// carry no type.
///
/// ```
/// use tracing_subscriber::prelude::*;
///
/// # let subscriber = tracing_subscriber::registry().with(traceline::layer());
/// # tracing::subscriber::with_default(subscriber, || {
/// let err: Box<dyn std::error::Error + Send + Sync> = "x".parse::<u32>().unwrap_err().into();
/// let span = tracing::info_span!("parse");
/// let _entered = span.enter();
/// traceline::record_error_dyn(&*err);
/// # });
/// ```
pub fn record_error_dyn(err: &(dyn Error + 'static)) {
    record(err, None);
}

fn record(err: &(dyn Error + 'static), ty: Option<(TypeCheck, &'static str)>) {
    use opentelemetry::trace::TraceContextExt;
    let span = tracing::Span::current();
    let message = err.to_string();
    if !span.is_disabled() {
        let mut attributes = Vec::with_capacity(3);
        if let Some((_, ty)) = ty {
            attributes.push(KeyValue::new("exception.type", ty));
        }
        attributes.push(KeyValue::new("exception.message", message.clone()));
        attributes.push(KeyValue::new(
            "exception.stacktrace",
            ChainText(err).to_string(),
        ));
        if span.context().span().span_context().is_valid() {
            span.set_status(Status::error(message.clone()));
            span.add_event("exception", attributes);
        } else if let Some(cx) = crate::ids::nearest_tracked_of(&span) {
            // A span OpenTelemetry does not track (a correlation scope under `init()`): the
            // error goes on its nearest ancestor that it does, as `inject` sends that trace.
            let otel = cx.span();
            otel.set_status(Status::error(message.clone()));
            otel.add_event("exception", attributes);
        }
    }
    // Put back afterwards: this may run while another `record_error`'s line is being built.
    let outer =
        ty.map(|(is, ty)| ERROR_TYPE.with(|t| t.replace(Some((error_address(err), is, ty)))));
    tracing::error!(
        target: "traceline::error",
        error = err,
        otel.status_code = "ERROR",
        "{message}"
    );
    if let Some(outer) = outer {
        ERROR_TYPE.with(|t| t.set(outer));
    }
}

/// The address of an error, as [`ERROR_TYPE`] names it: the type goes to that error only, not
/// to another error an event logged while this one is formatted carries.
pub(crate) fn error_address(err: &(dyn Error + 'static)) -> usize {
    std::ptr::from_ref(err).cast::<()>() as usize
}

/// The error `record_error` is logging: its address, a check of its type (an error inside it,
/// or a zero-sized one, may share the address), and its type's name.
pub(crate) type RecordedError = (usize, TypeCheck, &'static str);

/// Whether an error is of a given type.
type TypeCheck = fn(&(dyn Error + 'static)) -> bool;

/// Whether `err` is an `E`.
fn is_type<E: Error + 'static>(err: &(dyn Error + 'static)) -> bool {
    err.is::<E>()
}

/// The type name `record_error` gave `err`, when `err` is the error it is logging.
pub(crate) fn recorded_type(err: &(dyn Error + 'static)) -> Option<&'static str> {
    let (address, is, ty) = ERROR_TYPE.with(Cell::get)?;
    (address == error_address(err) && is(err)).then_some(ty)
}

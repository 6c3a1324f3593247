//! The value returned by `init()`: flushes spans and lines when dropped.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::runtime::ExporterRuntime;
use super::writer::{Flush, Worker};
use crate::Stats;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Keeps the exporter and the writer running; dropping it (or calling [`Guard::shutdown`])
/// exports the spans not yet sent and writes the lines still queued, each within a bounded
/// time. Keep it alive for as long as the program logs: bind it in `main`
/// (`let _guard = …`, not `let _ = …`, which drops it at once).
///
/// Dropping it is safe anywhere, including at the end of `async fn main` or inside a task: it
/// blocks the current thread for a bounded time (the shutdown timeout for the exporter, the
/// same again for a non-blocking writer's queue, plus up to a second for a line whose write is
/// under way when that runs out) and never creates or drops a tokio runtime there.
///
/// With the gRPC protocol, `init()` called inside a multi-thread tokio runtime exports on that
/// runtime: drop the guard before the runtime shuts down (at the end of `async fn main` it
/// is), or spans not yet exported are lost. Called outside any runtime, or inside a
/// current-thread one, `init()` runs the exporter on a runtime of its own, which the guard
/// keeps until it is dropped.
///
/// ```no_run
/// fn main() -> Result<(), traceline::InitError> {
///     let _guard = traceline::init()?;
///     tracing::info!("serving");
///     Ok(())
/// } // spans and lines are flushed here
/// ```
///
/// For SIGTERM in a tokio service, see the [module docs](crate::install#shutting-down-on-sigterm).
#[must_use = "dropping the guard at once shuts the exporter and writer down; bind it: `let _guard = …`"]
pub struct Guard {
    pub(crate) provider: Option<SdkTracerProvider>,
    pub(crate) runtime: Option<ExporterRuntime>,
    pub(crate) writer: Option<Worker>,
    /// Flushes a blocking custom writer (a `BufWriter` inside it, say).
    pub(crate) flush_writer: Option<Flush>,
    pub(crate) monitor: Option<Monitor>,
    pub(crate) stats: Stats,
    pub(crate) timeout: Duration,
    /// Spans the exporter could not deliver, or never got.
    pub(crate) export_failures: Arc<ExportFailures>,
    /// The span processor exporting to the collector (shared with the provider): shut down
    /// alone, so that the provider goes on giving spans their ids.
    pub(crate) export: Option<Arc<Export>>,
    /// The process `init()` ran in: a forked child has this guard but not the exporter's
    /// threads (the batch span processor's, the exporter runtime's). Asked only when the guard
    /// flushes or stops, so that any child is told, however it was forked.
    pub(crate) origin: Origin,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("exporting", &self.runtime.is_some())
            .field("tracing", &self.provider.is_some())
            .field("non_blocking", &self.writer.is_some())
            .field("stats", &self.stats)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why [`Guard::shutdown`] could not flush everything: the exporter failed to deliver spans
/// while the program ran or at shutdown (the collector refused them, was unreachable, or did
/// not answer in time; the message counts them and gives the last error), or the shutdown
/// timeout ran out.
///
/// ```
/// fn report(guard: traceline::Guard) {
///     if let Err(err) = guard.shutdown() {
///         eprintln!("{err}"); // says what failed, and to check the collector or the timeout
///     }
/// }
/// # let _ = report;
/// ```
///
/// Its `Debug` form is its message too, for a `main` that returns it.
pub struct ShutdownError(String);

impl std::fmt::Debug for ShutdownError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "spans may not all have been exported: {}; check that the collector is reachable, \
             or raise Builder::shutdown_timeout",
            self.0
        )
    }
}

impl std::error::Error for ShutdownError {}

impl Guard {
    /// Exports pending spans and writes queued lines now, then stops the exporter and the
    /// writer. Lines logged afterwards are still written by a blocking writer, and still carry
    /// their spans' ids (requests still in flight stay traceable on the lines), but spans are
    /// no longer exported.
    ///
    /// The error counts the spans that did not reach the collector: refused by it or not
    /// delivered in time, and those that never reached the exporter (the batch queue, 2048
    /// spans unless `OTEL_BSP_MAX_QUEUE_SIZE` says otherwise, was full).
    ///
    /// ```no_run
    /// let guard = traceline::init()?;
    /// tracing::info!("last line");
    /// if let Err(err) = guard.shutdown() {
    ///     eprintln!("{err}");
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shutdown(mut self) -> Result<(), ShutdownError> {
        self.finish()
    }

    /// Exports the spans ended so far without shutting down (blocks up to the exporter's
    /// timeout), and flushes a blocking custom writer.
    ///
    /// ```no_run
    /// let guard = traceline::init()?;
    /// guard.flush();
    /// # Ok::<(), traceline::InitError>(())
    /// ```
    pub fn flush(&self) {
        if let Some(provider) = self.provider.as_ref().filter(|_| !self.forked()) {
            let _ = blocking_ok(|| provider.force_flush());
        }
        if let Some(flush) = &self.flush_writer {
            flush.run();
        }
    }

    /// Counters of the lines written and dropped (a full non-blocking queue, a failing
    /// writer) and of the writer's errors. Once the guard is dropped, written + dropped is
    /// every line logged.
    ///
    /// ```no_run
    /// let guard = traceline::init()?;
    /// let stats = guard.stats();
    /// // ... later, in a health or metrics endpoint:
    /// println!("log lines dropped so far: {}", stats.lines_dropped());
    /// # Ok::<(), traceline::InitError>(())
    /// ```
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// The OpenTelemetry tracer provider in use (also installed as the global one), `None` when
    /// `OTEL_SDK_DISABLED=true`.
    ///
    /// ```no_run
    /// let guard = traceline::init()?;
    /// assert!(guard.tracer_provider().is_some());
    /// # Ok::<(), traceline::InitError>(())
    /// ```
    pub fn tracer_provider(&self) -> Option<&SdkTracerProvider> {
        self.provider.as_ref()
    }

    /// Whether this is a child forked from the process `init()` ran in.
    fn forked(&self) -> bool {
        self.origin.forked()
    }

    fn finish(&mut self) -> Result<(), ShutdownError> {
        if self.forked() {
            // A forked child: the batch span processor's thread and the exporter runtime's run
            // in the parent only. Asking them to shut down would wait out the timeout for an
            // answer that never comes, and joining them fails; the spans ended in this process
            // cannot be exported from here. Nothing is shut down (the provider, also the
            // global one, is left as it is); the output is stopped as in the parent (the
            // worker and the monitor tell a child themselves).
            std::mem::forget(self.provider.take());
            std::mem::forget(self.export.take());
            std::mem::forget(self.runtime.take());
            stop_output(
                self.monitor.take(),
                self.writer.take(),
                self.flush_writer.take(),
                self.timeout,
            );
            return Ok(());
        }
        let mut problems = Vec::new();
        // The provider itself is not shut down: it is also the global one and the layer's
        // tracer's, and a shut-down provider makes spans without ids. Only the export stops
        // (before the guard lets go of the provider).
        if let Some(export) = self.export.take() {
            let timeout = self.timeout;
            let shutdown = blocking_ok(|| export.shutdown(timeout));
            let in_time = shutdown.is_ok();
            if let Err(err) = shutdown {
                problems.push(err.to_string());
            }
            // The SDK's shutdown succeeds even when exports failed, or spans were dropped
            // before the exporter: they are counted here.
            problems.extend(self.export_failures.report(in_time));
        }
        drop(self.provider.take());
        let result = if problems.is_empty() {
            Ok(())
        } else {
            Err(ShutdownError(problems.join("; ")))
        };
        if let Some(rt) = self.runtime.take() {
            rt.stop(self.timeout);
        }
        stop_output(
            self.monitor.take(),
            self.writer.take(),
            self.flush_writer.take(),
            self.timeout,
        );
        result
    }
}

/// Stops the dropped-lines monitor, then the queue's worker (writing out what is queued, within
/// `timeout`), then flushes a blocking custom writer.
fn stop_output(
    monitor: Option<Monitor>,
    worker: Option<Worker>,
    flush: Option<Flush>,
    timeout: Duration,
) {
    if let Some(monitor) = monitor {
        monitor.stop();
    }
    if let Some(worker) = worker {
        worker.stop(timeout);
    }
    if let Some(flush) = flush {
        flush.finish();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(err) = self.finish() {
            // Not `eprintln!`: it panics when stderr is a closed pipe (`prog 2>&1 | head`), and
            // waits for ever on one nobody reads.
            crate::output::report_on_stderr(format!("traceline: {err}\n"));
        }
    }
}

/// Runs a blocking call so that, on a multi-thread tokio worker, the runtime keeps driving its
/// other tasks (the gRPC exporter's connection may be one of them).
fn blocking_ok<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The process a part of the output with threads of its own was made in: a forked child has
/// the part but not the threads, so it must neither wait for them nor join them.
#[derive(Debug)]
pub(crate) struct Origin {
    pid: u32,
    /// `fork()`'s handlers bump a counter in the child: one atomic load tells it.
    fork: forkguard::Guard,
}

impl Origin {
    /// This process.
    pub(crate) fn here() -> Self {
        Origin {
            pid: std::process::id(),
            fork: forkguard::new(),
        }
    }

    /// A child made by `fork()` (its handlers ran): one atomic load, cheap enough per line.
    #[inline]
    pub(crate) fn forked_with_handlers(&self) -> bool {
        self.fork.clone().detected_fork()
    }

    /// A process of another id: a child made without `fork()`'s handlers (glibc's `_Fork`, the
    /// raw system call), which the counter misses. A system call: asked only where it matters.
    pub(crate) fn pid_changed(&self) -> bool {
        std::process::id() != self.pid
    }

    /// Any child: by the counter (also one with its parent's process id, PID 1 of a new PID
    /// namespace forked by the PID 1 of another) or by its process id.
    pub(crate) fn forked(&self) -> bool {
        self.forked_with_handlers() || self.pid_changed()
    }
}

/// A thread that turns the dropped-lines counter into WARN lines, from outside any logging
/// call (an event cannot be logged from inside the writer).
pub(crate) struct Monitor {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
    /// The process the thread runs in.
    origin: Origin,
}

impl Monitor {
    pub(crate) fn start(stats: Stats, every: Duration) -> std::io::Result<Self> {
        let (stop, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("traceline-dropped-lines".into())
            .spawn(move || {
                super::writer::never_wait_on_this_thread();
                let mut reported = 0;
                loop {
                    let stopping =
                        !matches!(rx.recv_timeout(every), Err(mpsc::RecvTimeoutError::Timeout));
                    let total = stats.lines_dropped();
                    let n = total - reported;
                    reported = total;
                    if n > 0 {
                        tracing::warn!(
                            target: "traceline::install",
                            dropped_lines = n,
                            dropped_lines_total = total,
                            "{n} log lines were dropped (the non-blocking writer's queue was full, \
                             or its output failed); raise Writer::queue_limit or \
                             Writer::queue_bytes, or use Writer::wait_when_full"
                        );
                    }
                    if stopping {
                        break;
                    }
                }
            })?;
        Ok(Monitor {
            stop,
            thread,
            origin: Origin::here(),
        })
    }

    pub(crate) fn stop(self) {
        if self.origin.forked() {
            // A forked child: the thread runs in the parent only (joining it here fails). Its
            // channel is left alone too: dropping the sender takes the channel's lock, which
            // the parent's thread may have held at the fork, and nothing here would let it go.
            std::mem::forget(self);
            return;
        }
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Spans the OTLP exporter failed to deliver, and the last reason; and the spans ended for
/// export against those the exporter was handed.
#[derive(Debug, Default)]
pub(crate) struct ExportFailures {
    spans: AtomicU64,
    last: Mutex<Option<String>>,
    /// Spans handed to the batch span processor.
    ended: AtomicU64,
    /// Spans the exporter was handed, in batches (delivered or not).
    handed: AtomicU64,
}

impl ExportFailures {
    fn record(&self, spans: usize, endpoint: &str, err: &dyn std::fmt::Display) {
        self.spans.fetch_add(spans as u64, Ordering::Relaxed);
        if let Ok(mut last) = self.last.lock() {
            *last = Some(format!("{endpoint}: {err}"));
        }
    }

    /// What to tell the user at shutdown, when exports failed or spans never reached the
    /// exporter; `in_time` says whether the batch processor's shutdown finished in time (else
    /// spans still queued then never reached the exporter either).
    fn report(&self, in_time: bool) -> Option<String> {
        let mut parts = Vec::new();
        let ended = self.ended.load(Ordering::Relaxed);
        let handed = self.handed.load(Ordering::Relaxed);
        if ended > handed {
            let why = if in_time {
                "the span queue was full: raise OTEL_BSP_MAX_QUEUE_SIZE, 2048 by default"
            } else {
                "still queued when the shutdown timeout ran out, or dropped by a full span \
                 queue (OTEL_BSP_MAX_QUEUE_SIZE, 2048 by default)"
            };
            parts.push(format!(
                "{} of {ended} span(s) never reached the exporter ({why})",
                ended - handed
            ));
        }
        let n = self.spans.load(Ordering::Relaxed);
        if n > 0 {
            let last = self
                .last
                .lock()
                .ok()
                .and_then(|l| l.clone())
                .unwrap_or_default();
            parts.push(format!(
                "{n} span(s) could not be exported (last error from {last})"
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// The batch span processor `init()` exports through, shared by the provider (as an
/// [`ExportProcessor`]) and the [`Guard`]: the guard shuts the export down alone, so that the
/// provider, the global one, goes on making spans with ids. It counts the spans it is handed,
/// for the guard to tell those that never reached the exporter.
#[derive(Debug)]
pub(crate) struct Export {
    batch: opentelemetry_sdk::trace::BatchSpanProcessor,
    failures: Arc<ExportFailures>,
    /// Shut down: spans ended afterwards are not exported.
    closed: std::sync::atomic::AtomicBool,
}

impl Export {
    /// `batch`, with the provider's `resource` already given (the provider gives it to its
    /// processors when it is built, when this one is shared and cannot take it).
    pub(crate) fn new(
        mut batch: opentelemetry_sdk::trace::BatchSpanProcessor,
        resource: &opentelemetry_sdk::Resource,
        failures: Arc<ExportFailures>,
    ) -> Arc<Self> {
        use opentelemetry_sdk::trace::SpanProcessor as _;
        batch.set_resource(resource);
        Arc::new(Export {
            batch,
            failures,
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Exports what is queued, then stops the batch processor's thread and the exporter: once.
    fn shutdown(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        use opentelemetry_sdk::trace::SpanProcessor as _;
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.batch.shutdown_with_timeout(timeout)
    }
}

/// [`Export`] as the provider's span processor.
#[derive(Debug)]
pub(crate) struct ExportProcessor(pub(crate) Arc<Export>);

impl opentelemetry_sdk::trace::SpanProcessor for ExportProcessor {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.0.batch.on_start(span, cx);
    }

    fn on_end(&self, span: opentelemetry_sdk::trace::SpanData) {
        if self.0.closed.load(Ordering::Acquire) {
            return;
        }
        self.0.failures.ended.fetch_add(1, Ordering::Relaxed);
        self.0.batch.on_end(span);
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        if self.0.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        self.0.batch.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.shutdown(timeout)
    }

    // `set_resource`: given to the batch processor in `Export::new`.
}

/// The OTLP exporter, counting the spans of the batches it fails to deliver. The attributes
/// whose names the redaction denies (span fields, recorded by the OpenTelemetry layer under
/// their names) leave as `"[REDACTED]"`, as on the lines; text longer than the field length
/// limit is cut there, as on the lines (one huge value would otherwise make the collector
/// refuse the whole batch, and every other span in it).
#[derive(Debug)]
pub(crate) struct Counted<E> {
    inner: E,
    failures: Arc<ExportFailures>,
    /// The endpoint as messages show it: its query (which may hold a key) left out.
    endpoint: String,
    /// The endpoint as given, whose query is kept out of every message about a failed export.
    url: String,
    redaction: crate::Redaction,
    /// The field length limit, in bytes: longer text is cut.
    max_field: usize,
}

impl<E> Counted<E> {
    pub(crate) fn new(
        inner: E,
        failures: Arc<ExportFailures>,
        endpoint: String,
        redaction: crate::Redaction,
        max_field: usize,
    ) -> Self {
        Counted {
            inner,
            failures,
            endpoint: super::config::without_query(&endpoint),
            url: endpoint,
            redaction,
            max_field,
        }
    }

    /// `text` with the endpoint's query left out (an exporter's error may quote the URL).
    fn scrub(&self, text: String) -> String {
        super::config::scrub_query(text, &self.url)
    }
}

/// Replaces the values of the attributes `redaction` denies, on the span, its events and its
/// links. An error field is recorded by the OpenTelemetry layer as `exception.message`,
/// `exception.stacktrace`, `<name>`, `<name>.chain`, in that order (on the span for a span
/// field, on the event for an event field), and an event's error is copied onto the span as
/// the first two alone: the copies of a denied field's error are replaced too, found by where
/// they stand, not by their value (an innocent error's empty chain equals a secret one's).
fn redact_span(redaction: &crate::Redaction, span: &mut opentelemetry_sdk::trace::SpanData) {
    use opentelemetry::{KeyValue, Value};
    let redacted = || Value::from(crate::redact::REDACTED);
    let is_pair = |attrs: &[KeyValue], i: usize| {
        attrs[i].key.as_str() == "exception.message"
            && attrs
                .get(i + 1)
                .is_some_and(|kv| kv.key.as_str() == "exception.stacktrace")
    };
    // The name of the error field at `i` (`<name>` then `<name>.chain`), if one is.
    let error_field = |attrs: &[KeyValue], i: usize| -> Option<String> {
        let (name, chain) = (attrs.get(i)?, attrs.get(i + 1)?);
        (chain.key.as_str().strip_suffix(".chain") == Some(name.key.as_str()))
            .then(|| name.key.as_str().to_owned())
    };
    // Redacts the denied attributes of `attrs` and the exception pairs standing before a
    // denied error field; returns the messages of the denied error fields.
    let redact = |attrs: &mut Vec<KeyValue>| -> Vec<Value> {
        let mut messages = Vec::new();
        let mut i = 0;
        while i < attrs.len() {
            if is_pair(attrs, i) {
                if let Some(name) = error_field(attrs, i + 2) {
                    if redaction.is_denied(&name) {
                        attrs[i].value = redacted();
                        attrs[i + 1].value = redacted();
                    }
                }
                i += 2;
                continue;
            }
            if let Some(name) = error_field(attrs, i) {
                if redaction.is_denied(&name) {
                    messages.push(attrs[i].value.clone());
                }
            }
            i += 1;
        }
        for kv in attrs.iter_mut() {
            let key = kv.key.as_str();
            let denied = redaction.is_denied(key)
                || key
                    .strip_suffix(".chain")
                    .is_some_and(|stem| redaction.is_denied(stem));
            if denied {
                kv.value = redacted();
            }
        }
        messages
    };
    // A list the SDK cut at its attribute limit may have lost the `<name>`, `<name>.chain`
    // that tell whose error an `exception.*` copy is: every copy not shown to be an allowed
    // field's is redacted.
    let cover = |attrs: &mut Vec<KeyValue>| {
        let mut i = 0;
        while i < attrs.len() {
            if is_pair(attrs, i)
                && error_field(attrs, i + 2).is_some_and(|name| !redaction.is_denied(&name))
            {
                i += 2;
                continue;
            }
            if matches!(
                attrs[i].key.as_str(),
                "exception.message" | "exception.stacktrace"
            ) {
                attrs[i].value = redacted();
            }
            i += 1;
        }
    };
    // The text of the errors given as a field named `error` (an event with no message yet),
    // which `tracing-opentelemetry` turns into an `exception` event of their text alone and
    // into the span's status: redacted where `error` is denied.
    let error_denied = redaction.is_denied("error");
    let mut error_texts = Vec::new();
    let mut from_events = Vec::new();
    for event in &mut span.events.events {
        from_events.extend(redact(&mut event.attributes));
        if event.dropped_attributes_count > 0 && !redaction.is_off() {
            cover(&mut event.attributes);
        }
        // (Whatever the event's name: a `message` after the `error` field renames it.)
        if error_denied {
            let attrs = &mut event.attributes;
            for i in 0..attrs.len() {
                let lone = attrs[i].key.as_str() == "exception.message"
                    && !is_pair(attrs, i)
                    && error_field(attrs, i + 1).is_none();
                if lone {
                    error_texts.push(attrs[i].value.as_str().into_owned());
                    attrs[i].value = redacted();
                }
            }
        }
    }
    // The status's text: redacted when it is such an error's, or when the SDK dropped events or
    // cut an event's attributes (what would show whose it is may be gone).
    let events_dropped = span.events.dropped_count > 0
        || span
            .events
            .events
            .iter()
            .any(|e| e.dropped_attributes_count > 0);
    if let opentelemetry::trace::Status::Error { description } = &mut span.status {
        if error_texts.iter().any(|t| t == description)
            || (error_denied && events_dropped && !description.is_empty())
        {
            *description = crate::redact::REDACTED.into();
        }
    }
    for link in &mut span.links.links {
        redact(&mut link.attributes);
    }
    redact(&mut span.attributes);
    if span.dropped_attributes_count > 0 && !redaction.is_off() {
        cover(&mut span.attributes);
    }
    // The span's copies of an event's error: redacted when that error was a denied field's,
    // or when the SDK dropped events (the one that named it may be gone).
    let unverifiable = span.events.dropped_count > 0 && !redaction.is_off();
    let attrs = &mut span.attributes;
    let mut i = 0;
    while i < attrs.len() {
        if !is_pair(attrs, i) {
            i += 1;
            continue;
        }
        let of_span_field = error_field(attrs, i + 2).is_some();
        if !of_span_field && (unverifiable || from_events.contains(&attrs[i].value)) {
            attrs[i].value = redacted();
            attrs[i + 1].value = redacted();
        }
        i += 2;
    }
}

/// `text` cut after `max` bytes (at a character's start), with the marker the lines use.
fn cut_text(text: &str, max: usize) -> Option<String> {
    (text.len() > max).then(|| {
        let head = crate::json::floor_char_boundary(text, max);
        format!("{}…[truncated {} bytes]", &text[..head], text.len() - head)
    })
}

/// Cuts the text of the span's attributes, its events' and its links' (strings, and the
/// strings of string arrays), its events' names, its name and its status's description, at
/// `max` bytes each.
fn cut_span(max: usize, span: &mut opentelemetry_sdk::trace::SpanData) {
    use opentelemetry::{Array, KeyValue, StringValue, Value};
    let cut_value = |v: &mut Value| match v {
        Value::String(s) => {
            if let Some(c) = cut_text(s.as_str(), max) {
                *s = StringValue::from(c);
            }
        }
        Value::Array(Array::String(items)) => {
            for s in items {
                if let Some(c) = cut_text(s.as_str(), max) {
                    *s = StringValue::from(c);
                }
            }
        }
        _ => {}
    };
    let cut_attrs =
        |attrs: &mut Vec<KeyValue>| attrs.iter_mut().for_each(|kv| cut_value(&mut kv.value));
    cut_attrs(&mut span.attributes);
    for event in &mut span.events.events {
        cut_attrs(&mut event.attributes);
        if let Some(c) = cut_text(&event.name, max) {
            event.name = c.into();
        }
    }
    for link in &mut span.links.links {
        cut_attrs(&mut link.attributes);
    }
    if let Some(c) = cut_text(&span.name, max) {
        span.name = c.into();
    }
    if let opentelemetry::trace::Status::Error { description } = &mut span.status {
        if let Some(c) = cut_text(description, max) {
            *description = c.into();
        }
    }
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Counted<E>
{
    async fn export(
        &self,
        mut batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        for span in &mut batch {
            redact_span(&self.redaction, span);
            cut_span(self.max_field, span);
        }
        let n = batch.len();
        self.failures.handed.fetch_add(n as u64, Ordering::Relaxed);
        let result = self.inner.export(batch).await.map_err(|err| match err {
            // The SDK logs this error too: it must not quote the endpoint's query either.
            opentelemetry_sdk::error::OTelSdkError::InternalFailure(text) => {
                opentelemetry_sdk::error::OTelSdkError::InternalFailure(self.scrub(text))
            }
            other => other,
        });
        if let Err(err) = &result {
            self.failures.record(n, &self.endpoint, err);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// Keeps the [`Writer`](crate::install::Writer) of a [`Layer::with_output`](crate::Layer::with_output)
/// running: dropping it writes out what a non-blocking writer has queued (waiting at most 5 s
/// for the output; lines it could not write by then are counted as dropped) and flushes a
/// custom blocking one. Drop it after the subscriber's last line.
///
/// ```
/// use traceline::install::Writer;
/// let (layer, guard) = traceline::layer().with_output(Writer::stderr().non_blocking())?;
/// # let _ = layer;
/// drop(guard); // at the end of `main`
/// # Ok::<(), traceline::InitError>(())
/// ```
#[must_use = "dropping the guard at once stops the writer; bind it: `let (layer, _guard) = …`"]
pub struct OutputGuard {
    pub(crate) worker: Option<Worker>,
    pub(crate) flush: Option<Flush>,
    pub(crate) monitor: Option<Monitor>,
    pub(crate) timeout: Duration,
}

impl std::fmt::Debug for OutputGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputGuard")
            .field("non_blocking", &self.worker.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for OutputGuard {
    fn drop(&mut self) {
        stop_output(
            self.monitor.take(),
            self.worker.take(),
            self.flush.take(),
            self.timeout,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
    use opentelemetry::{Array, KeyValue, StringValue, Value};
    use opentelemetry_sdk::trace::{SpanData, SpanEvents};

    #[test]
    fn text_past_the_field_limit_is_cut_everywhere_in_a_span() {
        let long = "é".repeat(10); // 20 bytes
        let mut events = SpanEvents::default();
        events.events.push(opentelemetry::trace::Event::new(
            long.clone(),
            std::time::SystemTime::UNIX_EPOCH,
            vec![KeyValue::new("m", long.clone()), KeyValue::new("n", 7i64)],
            0,
        ));
        let mut span = SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: long.clone().into(),
            start_time: std::time::SystemTime::UNIX_EPOCH,
            end_time: std::time::SystemTime::UNIX_EPOCH,
            attributes: vec![
                KeyValue::new("a", long.clone()),
                KeyValue::new("short", "ok"),
                KeyValue::new(
                    "list",
                    Value::Array(Array::String(vec![
                        StringValue::from(long.clone()),
                        StringValue::from("x"),
                    ])),
                ),
            ],
            dropped_attributes_count: 0,
            events,
            links: Default::default(),
            status: Status::error(long.clone()),
            instrumentation_scope: Default::default(),
        };
        cut_span(5, &mut span);
        // 5 bytes cut back to a character's start: 4 bytes, "éé"; 16 left out.
        let cut = "éé…[truncated 16 bytes]";
        assert_eq!(span.name, cut);
        assert_eq!(span.attributes[0].value.as_str(), cut);
        assert_eq!(span.attributes[1].value.as_str(), "ok");
        assert_eq!(
            span.attributes[2].value,
            Value::Array(Array::String(vec![
                StringValue::from(cut),
                StringValue::from("x")
            ]))
        );
        let event = &span.events.events[0];
        assert_eq!(event.name, cut);
        assert_eq!(event.attributes[0].value.as_str(), cut);
        assert_eq!(event.attributes[1].value, Value::I64(7));
        assert_eq!(span.status, Status::error(cut));
    }
}

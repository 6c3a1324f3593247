//! Logging from inside logging: field values whose `Debug` or `Display` logs, a writer that
//! logs, and the OTLP exporter's own tracing at TRACE level. Under a scoped dispatcher the
//! nested events go nowhere (tracing-core hands them to a no-op subscriber); under the global
//! one they reach the layer. Either way: no deadlock, no panic, every line whole.
#![cfg(feature = "install")]

mod common;
mod install_support;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Capture, Json, check_line, otel_subscriber, provider, span_context};
use install_support as support;
use tracing::{info, info_span};
use tracing_subscriber::fmt::MakeWriter;

const ENTRY: &str = "child_entry";

/// How long a child scenario may run before it is killed and the test fails as a deadlock.
const CHILD_LIMIT: Duration = Duration::from_secs(60);
/// The same for in-process scenarios.
const LIMIT: Duration = Duration::from_secs(30);

/// How many times any nested-logging value was formatted in this process.
static FORMATTED: AtomicUsize = AtomicUsize::new(0);

/// A value whose `Debug` logs an event before writing `debug text`.
struct LogsInDebug;

impl fmt::Debug for LogsInDebug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        FORMATTED.fetch_add(1, Ordering::SeqCst);
        info!(nested = "debug", "from inside Debug");
        f.write_str("debug text")
    }
}

/// A value whose `Display` logs an event before writing `display text`.
struct LogsInDisplay;

impl fmt::Display for LogsInDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        FORMATTED.fetch_add(1, Ordering::SeqCst);
        info!(nested = "display", "from inside Display");
        f.write_str("display text")
    }
}

thread_local! {
    static IN_WRITER: Cell<bool> = const { Cell::new(false) };
}

/// A `MakeWriter` whose `write` logs an event (once: a write made by that event does not log
/// again) and then appends the bytes, to memory or to stdout.
#[derive(Clone)]
struct LoggingWriter {
    to: Option<Arc<Mutex<Vec<u8>>>>,
}

impl Write for LoggingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !IN_WRITER.with(|w| w.replace(true)) {
            info!(nested = "writer", "from inside the writer");
            IN_WRITER.with(|w| w.set(false));
        }
        match &self.to {
            Some(mem) => mem.lock().unwrap().extend_from_slice(buf),
            None => std::io::stdout().lock().write_all(buf)?,
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LoggingWriter {
    type Writer = LoggingWriter;
    fn make_writer(&'a self) -> LoggingWriter {
        self.clone()
    }
}

/// Runs `f` on a thread of its own and fails if it has not returned within [`LIMIT`].
fn within_limit<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(r) => r,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("not finished within {LIMIT:?}: deadlock")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("the scenario panicked"),
    }
}

fn message(line: &Json) -> &str {
    line.get("message").and_then(Json::as_str).unwrap_or("")
}

// ---- scoped dispatcher: nested events go to the no-op subscriber ----

#[test]
fn debug_value_that_logs_under_a_scoped_dispatcher_keeps_the_outer_line_whole() {
    let (lines, sc) = within_limit(|| {
        let cap = Capture::new();
        let provider = provider();
        let subscriber = otel_subscriber(&provider, traceline::layer().with_writer(cap.clone()));
        let sc = tracing::subscriber::with_default(subscriber, || {
            let span = info_span!("outer_span");
            let _e = span.enter();
            info!(value = ?LogsInDebug, "outer");
            span_context(&span)
        });
        (cap.lines(), sc)
    });
    assert_eq!(lines.len(), 1, "the nested event goes nowhere: {lines:?}");
    let line = &lines[0];
    assert_eq!(message(line), "outer");
    assert_eq!(line.str("value"), "debug text");
    common::assert_ids(line, &sc);
}

#[test]
fn display_value_that_logs_under_a_scoped_dispatcher_keeps_the_outer_line_whole() {
    let lines = within_limit(|| {
        let cap = Capture::new();
        let provider = provider();
        let subscriber = otel_subscriber(&provider, traceline::layer().with_writer(cap.clone()));
        tracing::subscriber::with_default(subscriber, || {
            info_span!("outer_span")
                .in_scope(|| info!(value = %LogsInDisplay, "outer {}", LogsInDisplay));
        });
        cap.lines()
    });
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(message(&lines[0]), "outer display text");
    assert_eq!(lines[0].str("value"), "display text");
}

#[test]
fn writer_that_logs_under_a_scoped_dispatcher_still_writes_the_outer_line() {
    let out = within_limit(|| {
        let mem = Arc::new(Mutex::new(Vec::new()));
        let provider = provider();
        let layer = traceline::layer().with_writer(LoggingWriter {
            to: Some(mem.clone()),
        });
        let stats = layer.stats();
        tracing::subscriber::with_default(otel_subscriber(&provider, layer), || {
            info_span!("outer_span").in_scope(|| {
                for i in 0..3 {
                    info!(i, "outer");
                }
            });
        });
        assert_eq!((stats.lines_dropped(), stats.write_errors()), (0, 0));
        String::from_utf8(mem.lock().unwrap().clone()).unwrap()
    });
    let lines: Vec<Json> = common::split_lines(&out)
        .iter()
        .map(|l| check_line(l))
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(message(line), "outer");
        assert_eq!(line.num("i"), i.to_string());
    }
}

// ---- global subscriber, in a child process: nested events reach the layer ----

/// Runs the scenario named by `TRACELINE_CHILD` when this binary is a child process.
#[test]
fn child_entry() {
    let Some(scenario) = support::scenario() else {
        return;
    };
    match scenario.as_str() {
        "debug" => {
            let _guard = traceline::builder().try_init().expect("install");
            let span = info_span!("outer_span");
            let _e = span.enter();
            info!(value = ?LogsInDebug, "outer");
        }
        "record_error" => {
            // Under init()'s defaults the OpenTelemetry layer formats the error too: the nested
            // event is logged while the outer one is dispatched, before and during its line.
            let _guard = traceline::builder().try_init().expect("install");
            let span = info_span!("outer_span");
            let _e = span.enter();
            traceline::record_error(&ErrorThatLogs);
            // Errors that share an address with the recorded one: a zero-sized error, and a
            // wrapper's first field.
            traceline::record_error(&ZeroSizedThatLogs);
            traceline::record_error(&Wrapper {
                inner: std::io::Error::other("wrapped cause"),
            });
        }
        "display" => {
            let _guard = traceline::builder().try_init().expect("install");
            let span = info_span!("outer_span");
            let _e = span.enter();
            info!(value = %LogsInDisplay, "outer");
        }
        "span_field" => {
            let _guard = traceline::builder().try_init().expect("install");
            let span = info_span!("outer_span", value = ?LogsInDebug);
            let _e = span.enter();
            info!("outer");
            // Tells the parent how many nested lines to expect.
            println!("formatted {}", FORMATTED.load(Ordering::SeqCst));
        }
        "span_record" => {
            // The value is recorded after the span was made, while the span is entered: the
            // nested event logs inside the very span being recorded.
            let _guard = traceline::builder().try_init().expect("install");
            let span = info_span!("outer_span", value = tracing::field::Empty);
            let _e = span.enter();
            span.record("value", tracing::field::debug(LogsInDebug));
            info!("outer");
            println!("formatted {}", FORMATTED.load(Ordering::SeqCst));
        }
        "writer" => {
            let guard = traceline::builder()
                .writer(traceline::install::Writer::custom(LoggingWriter {
                    to: None,
                }))
                .try_init()
                .expect("install");
            let span = info_span!("outer_span");
            let _e = span.enter();
            for i in 0..3 {
                info!(i, "outer");
            }
            assert_eq!(guard.stats().write_errors(), 0);
        }
        "exporter" => {
            // Every target at TRACE, the exporter's (opentelemetry*, hyper, h2, tonic, reqwest)
            // included; endpoint and protocol come from the environment.
            let guard = traceline::builder()
                .filter("trace")
                .try_init()
                .expect("install");
            for job in 0..EXPORT_JOBS {
                let span = info_span!("job", job);
                let _e = span.enter();
                info!(job, "job started");
                info_span!("step").in_scope(|| info!(job, "step ran"));
                info!(job, "job done");
                if job % 25 == 24 {
                    // Lets the batch processor export while spans are still being made.
                    guard.flush();
                }
            }
            guard.shutdown().expect("spans exported at shutdown");
        }
        other => panic!("unknown scenario {other}"),
    }
}

const EXPORT_JOBS: usize = 100;

/// Runs `scenario` in a child process; kills it and fails when it has not exited within
/// [`CHILD_LIMIT`], and fails when it did not exit successfully.
fn run_bounded(scenario: &str, env: &[(&str, &str)]) -> Output {
    let out = support::run_limited(ENTRY, scenario, env, CHILD_LIMIT).unwrap_or_else(|| {
        panic!("child `{scenario}` still running after {CHILD_LIMIT:?}, killed: deadlock")
    });
    assert!(
        out.status.success(),
        "child `{scenario}` failed: {}\nstdout (tail):\n{}\nstderr (tail):\n{}",
        out.status,
        support::tail(&String::from_utf8_lossy(&out.stdout)),
        support::tail(&String::from_utf8_lossy(&out.stderr))
    );
    out
}

/// Every JSON line of a child's stdout, each checked strictly. Lines that are not JSON (the test
/// harness's own) must not hold a `{`: a JSON line glued to other output would.
fn child_lines(stdout: &[u8]) -> Vec<Json> {
    let text = String::from_utf8(stdout.to_vec()).expect("stdout is UTF-8");
    let mut lines = Vec::new();
    for raw in text.split_inclusive('\n') {
        if raw.starts_with('{') {
            lines.push(check_line(raw));
        } else {
            assert!(!raw.contains('{'), "a broken line: {raw:?}");
        }
    }
    assert!(text.ends_with('\n'), "stdout ends in the middle of a line");
    lines
}

/// The lines this file's code logged (not the exporter's or the SDK's).
fn own_lines(lines: &[Json]) -> Vec<&Json> {
    lines
        .iter()
        .filter(|l| l.get("target").and_then(Json::as_str) == Some("reentrancy"))
        .collect()
}

/// Asserts `nested` then `outer`, both in the same span (same ids).
fn assert_nested_then_outer(lines: &[Json], nested_message: &str, value: &str) {
    let own = own_lines(lines);
    assert_eq!(own.len(), 2, "{lines:?}");
    let (nested, outer) = (own[0], own[1]);
    assert_eq!(
        message(nested),
        nested_message,
        "the nested line comes first"
    );
    assert_eq!(message(outer), "outer");
    assert_eq!(outer.str("value"), value);
    assert!(
        !outer.has("nested"),
        "no field of the nested event leaks into the outer line"
    );
    assert!(!nested.has("value"));
    for key in ["traceId", "spanId"] {
        assert_eq!(
            nested.str(key),
            outer.str(key),
            "both lines in the outer span"
        );
    }
}

#[test]
fn debug_value_that_logs_under_the_global_subscriber_writes_both_lines_whole() {
    let out = run_bounded("debug", &[]);
    let lines = child_lines(&out.stdout);
    assert_nested_then_outer(&lines, "from inside Debug", "debug text");
}

/// An error whose `Display` logs an event carrying another error.
#[derive(Debug)]
struct ErrorThatLogs;

impl std::fmt::Display for ErrorThatLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let io = std::io::Error::other("disk unavailable");
        tracing::warn!(
            error = &io as &(dyn std::error::Error + 'static),
            "while formatting"
        );
        f.write_str("outer failed")
    }
}

impl std::error::Error for ErrorThatLogs {}

/// Zero-sized errors share their address: the inner one logged inside the outer one's
/// `Display` must not take the outer one's type.
#[derive(Debug)]
struct ZeroSizedThatLogs;

#[derive(Debug)]
struct ZeroSized;

impl std::fmt::Display for ZeroSized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("zero-sized inner")
    }
}

impl std::error::Error for ZeroSized {}

impl std::fmt::Display for ZeroSizedThatLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        tracing::warn!(
            error = &ZeroSized as &(dyn std::error::Error + 'static),
            "while formatting"
        );
        f.write_str("zero-sized outer")
    }
}

impl std::error::Error for ZeroSizedThatLogs {}

/// An error whose first field (at its address) is logged inside its `Display`.
#[derive(Debug)]
struct Wrapper {
    inner: std::io::Error,
}

impl std::fmt::Display for Wrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        tracing::warn!(
            error = &self.inner as &(dyn std::error::Error + 'static),
            "while formatting"
        );
        f.write_str("wrapper failed")
    }
}

impl std::error::Error for Wrapper {}

/// `record_error` writes the error's type on its own line only: an event its `Display` logs,
/// with an error of its own, does not take that type.
#[test]
fn an_event_logged_while_record_error_formats_does_not_take_its_error_type() {
    let out = run_bounded("record_error", &[]);
    let lines = child_lines(&out.stdout);
    let with = |m: &str| -> Vec<&Json> { lines.iter().filter(|l| l.str("message") == m).collect() };
    let outer = with("outer failed");
    assert_eq!(outer.len(), 1, "{lines:?}");
    assert_eq!(
        outer[0].at("error").str("type"),
        std::any::type_name::<ErrorThatLogs>()
    );
    let nested = with("while formatting");
    for line in &nested {
        assert!(!line.at("error").has("type"), "{line:?}");
    }
    let inner = |m: &str| {
        nested
            .iter()
            .filter(|l| l.at("error").str("message") == m)
            .count()
    };
    for m in ["disk unavailable", "zero-sized inner", "wrapped cause"] {
        assert!(inner(m) > 0, "no nested line for {m}: {nested:?}");
    }
    for (message, ty) in [
        (
            "zero-sized outer",
            std::any::type_name::<ZeroSizedThatLogs>(),
        ),
        ("wrapper failed", std::any::type_name::<Wrapper>()),
    ] {
        let outer = with(message);
        assert_eq!(outer.len(), 1, "{lines:?}");
        assert_eq!(outer[0].at("error").str("type"), ty);
    }
}

#[test]
fn display_value_that_logs_under_the_global_subscriber_writes_both_lines_whole() {
    let out = run_bounded("display", &[]);
    let lines = child_lines(&out.stdout);
    assert_nested_then_outer(&lines, "from inside Display", "display text");
}

/// Runs a child scenario whose span field's `Debug` logs, and returns its outer line and its
/// nested lines after checking there is one nested line per time the value was formatted (the
/// child prints that count), then the outer line with the value.
fn span_field_lines(scenario: &str) -> (Json, Vec<Json>) {
    let out = run_bounded(scenario, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    let formatted: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("formatted "))
        .expect("the child's count")
        .parse()
        .unwrap();
    let lines = child_lines(&out.stdout);
    let mut own: Vec<Json> = own_lines(&lines).into_iter().cloned().collect();
    assert!(formatted >= 1);
    assert_eq!(
        own.len(),
        formatted + 1,
        "one line per nested event: {own:?}"
    );
    let outer = own.pop().unwrap();
    assert_eq!(message(&outer), "outer");
    assert_eq!(outer.str("value"), "debug text");
    for n in &own {
        assert_eq!(message(n), "from inside Debug");
    }
    (outer, own)
}

#[test]
fn span_field_whose_debug_logs_under_the_global_subscriber_writes_every_line_whole() {
    let (outer, _) = span_field_lines("span_field");
    assert!(outer.has("traceId"));
}

#[test]
fn span_record_whose_debug_logs_in_that_span_under_the_global_subscriber_does_not_deadlock() {
    let (outer, nested) = span_field_lines("span_record");
    for n in &nested {
        assert_eq!(
            n.str("spanId"),
            outer.str("spanId"),
            "logged inside the span"
        );
    }
}

#[test]
fn span_record_whose_debug_logs_under_a_scoped_dispatcher_does_not_deadlock() {
    let lines = within_limit(|| {
        let cap = Capture::new();
        let provider = provider();
        let subscriber = otel_subscriber(&provider, traceline::layer().with_writer(cap.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = info_span!("outer_span", value = tracing::field::Empty);
            let _e = span.enter();
            span.record("value", tracing::field::debug(LogsInDebug));
            info!("outer");
        });
        cap.lines()
    });
    // `span.record` dispatches through the span's own subscriber, so the nested events do
    // reach the layer here (once per layer that formats the value).
    let (outer, nested) = lines.split_last().expect("lines");
    assert_eq!(message(outer), "outer");
    assert_eq!(outer.str("value"), "debug text");
    assert!(!nested.is_empty());
    for n in nested {
        assert_eq!(message(n), "from inside Debug");
        assert_eq!(n.str("spanId"), outer.str("spanId"));
    }
}

#[test]
fn writer_that_logs_under_the_global_subscriber_writes_every_line_whole() {
    let out = run_bounded("writer", &[]);
    let lines = child_lines(&out.stdout);
    let own = own_lines(&lines);
    // Each outer line's write logs first; that nested line is written before the outer one.
    assert_eq!(own.len(), 6, "{own:?}");
    for (i, pair) in own.chunks(2).enumerate() {
        assert_eq!(message(pair[0]), "from inside the writer");
        assert_eq!(message(pair[1]), "outer");
        assert_eq!(pair[1].num("i"), i.to_string());
        assert_eq!(pair[0].str("spanId"), pair[1].str("spanId"));
    }
}

/// Checks an exporter scenario's output against what the receiver got.
fn check_export(out: &Output, received: BTreeSet<(String, String)>) {
    let lines = child_lines(&out.stdout);
    let own = own_lines(&lines);
    assert_eq!(own.len(), EXPORT_JOBS * 3, "no line lost");
    let internal = lines.len() - own.len();
    assert!(
        internal > 0,
        "the exporter's own tracing reached the layer (else this test tests nothing)"
    );
    let from_lines: BTreeSet<(String, String)> = own
        .iter()
        .map(|l| (l.str("traceId").to_owned(), l.str("spanId").to_owned()))
        .collect();
    assert_eq!(
        from_lines.len(),
        EXPORT_JOBS * 2,
        "a job span and a step span each"
    );
    assert_eq!(
        received, from_lines,
        "the receiver got exactly the spans the lines name"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_internals_at_trace_level_over_http_do_not_deadlock() {
    let receiver = support::HttpReceiver::start().await;
    let endpoint = receiver.endpoint();
    let out = tokio::task::spawn_blocking(move || {
        run_bounded(
            "exporter",
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ],
        )
    })
    .await
    .unwrap();
    let received = receiver
        .spans()
        .into_iter()
        .map(|s| (s.trace_id, s.span_id))
        .collect();
    check_export(&out, received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_internals_at_trace_level_over_grpc_do_not_deadlock() {
    let receiver = support::GrpcReceiver::start().await;
    let endpoint = receiver.endpoint();
    let out = tokio::task::spawn_blocking(move || {
        run_bounded(
            "exporter",
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
        )
    })
    .await
    .unwrap();
    let received = receiver
        .finish()
        .await
        .into_iter()
        .map(|s| (s.trace_id, s.span_id))
        .collect();
    check_export(&out, received);
}

/// Logs through `dispatch` when dropped, and reports whether that panicked. (No span: the
/// registry itself cannot make one there, its own thread-locals being gone.)
struct LogsOnDrop(Option<(tracing::Dispatch, std::sync::mpsc::Sender<bool>)>);

impl Drop for LogsOnDrop {
    fn drop(&mut self) {
        if let Some((dispatch, report)) = self.0.take() {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                tracing::dispatcher::with_default(&dispatch, || {
                    info!(step = 1, "thread-local dropped")
                });
            }));
            let _ = report.send(ok.is_ok());
        }
    }
}

thread_local! {
    static LOGS_ON_DROP: std::cell::RefCell<LogsOnDrop> =
        const { std::cell::RefCell::new(LogsOnDrop(None)) };
}

/// A thread-local's destructor that logs, after the layer's own thread-locals (made by the
/// thread's first line, after it) are gone: the line is written whole, with its field and the
/// thread's name and id, and nothing panics (a panic in a thread-local's destructor
/// aborts the process).
#[test]
fn a_line_logged_from_a_thread_local_destructor_is_written() {
    let cap = Capture::new();
    use tracing_subscriber::prelude::*;
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry().with(
            traceline::layer()
                .with_thread_names(true)
                .with_thread_ids(true)
                .with_writer(cap.clone()),
        ),
    );
    let (report, outcome) = std::sync::mpsc::channel();
    let d = dispatch.clone();
    std::thread::Builder::new()
        .name("worker-7".into())
        .spawn(move || {
            // tracing's own thread state first (it outlives the rest), then the destructor's.
            tracing::dispatcher::with_default(&d, || ());
            LOGS_ON_DROP.with(|l| *l.borrow_mut() = LogsOnDrop(Some((d.clone(), report))));
            tracing::dispatcher::with_default(&d, || {
                info_span!("running", step = 0).in_scope(|| info!("while the thread runs"))
            });
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(
        outcome.recv().expect("the destructor ran"),
        "logging panicked"
    );
    let lines = cap.lines();
    assert_eq!(lines.len(), 2, "{}", cap.text());
    let last = &lines[1];
    assert_eq!(last.str("message"), "thread-local dropped");
    assert_eq!(last.num("step"), "1");
    assert_eq!(last.str("threadName"), "worker-7");
    assert_eq!(last.num("threadId"), lines[0].num("threadId"));
}

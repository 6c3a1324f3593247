//! `Layer::with_output`: `init()`'s writers in a subscriber built by hand.
#![cfg(feature = "install")]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Capture, assert_ids, span_context};
use opentelemetry::trace::TracerProvider as _;
use traceline::install::{Rotation, Writer};
use tracing_subscriber::prelude::*;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("traceline-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A non-blocking file writer: every line is in the file once the guard is dropped, with its
/// ids, and counted as written.
#[test]
fn a_non_blocking_file_gets_every_line_when_the_guard_is_dropped() {
    let dir = temp_dir("output-file");
    let provider = common::provider();
    let (layer, guard) = traceline::layer()
        .with_output(Writer::file(&dir, "app.log", Rotation::Never).non_blocking())
        .expect("writer built");
    let stats = layer.stats();
    let subscriber = tracing_subscriber::registry()
        .with(traceline::otel(
            tracing_opentelemetry::layer().with_tracer(provider.tracer("t")),
        ))
        .with(layer);
    let sc = tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("request");
        span.in_scope(|| {
            for i in 0..100 {
                tracing::info!(i, "line");
            }
        });
        span_context(&span)
    });
    drop(guard);
    let text = std::fs::read_to_string(dir.join("app.log")).expect("the log file");
    let lines: Vec<_> = common::split_lines(&text)
        .iter()
        .map(|l| common::check_line(l))
        .collect();
    assert_eq!(lines.len(), 100);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line.num("i"), i.to_string());
        assert_ids(line, &sc);
    }
    assert_eq!((stats.lines_written(), stats.lines_dropped()), (100, 0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A custom blocking writer with a buffer inside: the guard flushes it.
#[test]
fn a_buffered_custom_writer_is_flushed_by_the_guard() {
    let dir = temp_dir("output-buffered");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("buffered.log");
    let file = std::fs::File::create(&path).unwrap();
    let (layer, guard) = traceline::layer()
        .with_output(Writer::custom(Mutex::new(std::io::BufWriter::new(file))))
        .expect("writer built");
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info!("buffered");
    });
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "",
        "still buffered"
    );
    drop(guard);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(common::check_line(&text).str("message"), "buffered");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Takes one write every 20 ms.
#[derive(Clone, Default)]
struct Slow(Arc<Mutex<Vec<u8>>>);

impl Write for Slow {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::thread::sleep(Duration::from_millis(20));
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Slow {
    type Writer = Slow;
    fn make_writer(&'a self) -> Slow {
        self.clone()
    }
}

/// A lossy queue in front of a slow output drops lines, and counts them: written + dropped is
/// every line logged, and the output holds the written ones whole.
#[test]
fn a_full_queue_drops_lines_and_counts_them() {
    let out = Slow::default();
    let (layer, guard) = traceline::layer()
        .with_output(Writer::custom(out.clone()).non_blocking().queue_limit(2))
        .expect("writer built");
    let stats = layer.stats();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for i in 0..50 {
            tracing::info!(i, "burst");
        }
    });
    drop(guard);
    let written = stats.lines_written();
    let dropped = stats.lines_dropped();
    assert_eq!(written + dropped, 50, "{written} + {dropped}");
    assert!(
        dropped > 0,
        "a queue of 2 before a 20 ms writer drops some of 50"
    );
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines = common::split_lines(&text);
    assert_eq!(lines.len() as u64, written);
    for line in &lines {
        common::check_line(line);
    }
}

/// Fails every write.
#[derive(Clone, Default)]
struct Failing;

impl Write for Failing {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("disk full"))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Failing {
    type Writer = Failing;
    fn make_writer(&'a self) -> Failing {
        Failing
    }
}

/// `log_internal_errors(false)` with a failing output, in a child process (what it says goes to
/// the real stderr); `TRACELINE_OUTPUT_CHILD` is `b` for a blocking output, `nb` for a queue,
/// and either followed by `-after` sets it on the layer `with_output` gives back.
#[test]
fn child_quiet_layer() {
    let Ok(mode) = std::env::var("TRACELINE_OUTPUT_CHILD") else {
        return;
    };
    let writer = Writer::custom(Failing);
    let writer = if mode.starts_with("nb") {
        writer.non_blocking()
    } else {
        writer
    };
    let (layer, guard) = if mode.ends_with("-after") {
        let (layer, guard) = traceline::layer().with_output(writer).unwrap();
        (layer.log_internal_errors(false), guard)
    } else {
        traceline::layer()
            .log_internal_errors(false)
            .with_output(writer)
            .unwrap()
    };
    let stats = layer.stats();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info!("lost");
    });
    drop(guard);
    assert_eq!(stats.lines_dropped(), 1);
}

fn child_stderr(mode: &str) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_quiet_layer", "--test-threads=1"])
        .env("TRACELINE_OUTPUT_CHILD", mode)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `log_internal_errors(false)` silences the lost-lines message of a queue as of a blocking
/// output, set before `with_output` or on the layer it gives back.
#[test]
fn log_internal_errors_false_silences_a_non_blocking_output_too() {
    for mode in ["b", "nb", "b-after", "nb-after"] {
        let stderr = child_stderr(mode);
        assert!(
            !stderr.contains("log lines are being lost"),
            "log_internal_errors(false), {mode}: stderr got {stderr:?}"
        );
    }
}

/// A buffered file that a custom `MakeWriter` routes lines to by target holds its lines once
/// the guard is dropped (the subscriber still alive, as a global one is), blocking as
/// non-blocking.
#[test]
fn dropping_the_guard_flushes_a_writer_routed_to_by_target() {
    let dir = temp_dir("routed-flush");
    std::fs::create_dir_all(&dir).unwrap();
    for non_blocking in [true, false] {
        let path = dir.join(format!("audit-{non_blocking}.log"));
        let writer = Writer::custom(common::AuditByTarget::create(&path));
        let writer = if non_blocking {
            writer.non_blocking()
        } else {
            writer
        };
        let (layer, guard) = traceline::layer().with_output(writer).unwrap();
        let stats = layer.stats();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info!(target: "audit", "audited");
        });
        drop(guard);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(stats.lines_written(), 1);
        assert!(
            text.contains(r#""message":"audited""#),
            "non_blocking={non_blocking}: the file after the guard was dropped: {text:?}"
        );
        drop(dispatch);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file needs a name: an empty prefix is an error that says so (tracing-appender would name
/// the file after the date).
#[test]
fn a_file_with_no_name_is_refused() {
    let dir = temp_dir("empty-prefix");
    let Err(err) = traceline::layer().with_output(Writer::file(&dir, "", Rotation::Never)) else {
        panic!("accepted");
    };
    assert!(err.to_string().contains("empty"), "{err}");
    assert!(
        std::fs::read_dir(&dir).map_or(true, |d| d.count() == 0),
        "a file was made"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The prefix is a file name inside `dir`, not a path: an absolute one (which would put the
/// file outside `dir`), one with a directory in it, and `.`/`..` are errors that say so, and
/// no file is made anywhere.
#[test]
fn a_file_name_that_is_a_path_is_refused() {
    let base = temp_dir("path-prefix");
    let (dir, elsewhere) = (base.join("logs"), base.join("elsewhere"));
    std::fs::create_dir_all(&elsewhere).unwrap();
    let outside = elsewhere.join("escape.log");
    let sub = format!("sub{}app.log", std::path::MAIN_SEPARATOR);
    for prefix in [outside.to_str().unwrap(), &sub, "..", ".", "app.log/"] {
        let Err(err) = traceline::layer().with_output(Writer::file(&dir, prefix, Rotation::Never))
        else {
            panic!("{prefix:?} accepted");
        };
        let text = err.to_string();
        assert!(
            text.contains("plain file name") && text.contains("Writer::file"),
            "{prefix:?}: {text}"
        );
    }
    assert!(!outside.exists(), "a file was made outside the directory");
    assert!(
        std::fs::read_dir(&dir).map_or(true, |d| d.count() == 0),
        "a file was made"
    );
    // A plain name is fine, dotted or not.
    let made = traceline::layer().with_output(Writer::file(&dir, ".app.log", Rotation::Never));
    assert!(made.is_ok(), "{:?}", made.err());
    drop(made);
    assert!(dir.join(".app.log").exists());
    let _ = std::fs::remove_dir_all(&base);
}

/// A writer set after a non-blocking output is not a queue: the layer counts its lines.
#[test]
fn with_writer_after_with_output_still_counts_lines() {
    let (layer, _guard) = traceline::layer()
        .with_output(Writer::stdout().non_blocking())
        .unwrap();
    let capture = Capture::new();
    let layer = layer.with_writer(capture.clone());
    let stats = layer.stats();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info!("one");
        tracing::info!("two");
    });
    assert_eq!(capture.lines().len(), 2);
    assert_eq!(
        (stats.lines_written(), stats.lines_dropped()),
        (2, 0),
        "two lines written by the layer's own writer"
    );
}

/// The guards can be kept in a `static` (a `OnceLock` there needs them `Send + Sync`), for a
/// program that sets logging up from a library call and never drops them.
#[test]
fn the_guards_can_be_kept_in_a_static() {
    static KEPT: std::sync::OnceLock<traceline::install::OutputGuard> = std::sync::OnceLock::new();
    fn send_sync<T: Send + Sync>() {}
    send_sync::<traceline::Guard>();
    let (layer, guard) = traceline::layer()
        .with_output(Writer::stderr().non_blocking())
        .expect("writer built");
    assert!(KEPT.set(guard).is_ok());
    drop(layer);
}

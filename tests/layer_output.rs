//! `Layer::with_output`: `init()`'s writers in a subscriber built by hand.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{assert_ids, span_context};
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

//! Custom and non-blocking writers under `init()`: a writer that panics, one that routes by
//! level, one that buffers, one that logs. Each scenario runs in a child process (`init()`
//! installs a global subscriber).
#![cfg(feature = "install")]

mod common;
mod install_support;

use std::cell::Cell;
use std::io::Write;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use install_support as support;
use traceline::install::Writer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

const ENTRY: &str = "child_entry";

/// Writes to stdout; the `panic_on`-th write call (0-based) panics.
#[derive(Clone)]
struct PanicOnce {
    calls: Arc<AtomicUsize>,
    panic_on: usize,
}

impl Write for PanicOnce {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == self.panic_on {
            panic!("the writer panics once, on purpose");
        }
        std::io::stdout().lock().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

impl<'a> MakeWriter<'a> for PanicOnce {
    type Writer = PanicOnce;
    fn make_writer(&'a self) -> PanicOnce {
        self.clone()
    }
}

thread_local! {
    static IN_WRITER: Cell<bool> = const { Cell::new(false) };
}

/// Logs one event from inside each write (not from the write of that event), then writes to
/// stdout.
#[derive(Clone)]
struct LoggingWriter;

/// How many lines the logging writer logged.
static NESTED: AtomicUsize = AtomicUsize::new(0);

impl Write for LoggingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !IN_WRITER.with(|w| w.replace(true)) {
            NESTED.fetch_add(1, Ordering::SeqCst);
            tracing::info!(nested = "writer", "from inside the writer");
            IN_WRITER.with(|w| w.set(false));
        }
        std::io::stdout().lock().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LoggingWriter {
    type Writer = LoggingWriter;
    fn make_writer(&'a self) -> LoggingWriter {
        LoggingWriter
    }
}

fn print_stats(s: &traceline::Stats) {
    println!(
        "STATS {} {} {}",
        s.lines_written(),
        s.lines_dropped(),
        s.write_errors()
    );
}

#[test]
fn child_entry() {
    let Some(scenario) = support::scenario() else {
        return;
    };
    match scenario.as_str() {
        s @ ("panic_blocking" | "panic_non_blocking") => {
            let w = Writer::custom(PanicOnce {
                calls: Arc::new(AtomicUsize::new(0)),
                panic_on: 1,
            });
            let w = if s.ends_with("non_blocking") {
                w.non_blocking()
            } else {
                w
            };
            let guard = traceline::builder().writer(w).try_init().unwrap();
            let stats = guard.stats();
            for i in 0..10 {
                tracing::info!(i, "line");
                // Each line reaches the writer before the next is logged.
                std::thread::sleep(Duration::from_millis(20));
            }
            drop(guard);
            print_stats(&stats);
        }
        s @ ("route_target_blocking" | "route_target_non_blocking") => {
            // Lines of the `audit` target to stdout, the rest nowhere: routing by target.
            let w = Writer::custom(std::io::stdout.with_filter(|m| m.target() == "audit"));
            let w = if s.ends_with("non_blocking") {
                w.non_blocking()
            } else {
                w
            };
            let guard = traceline::builder().writer(w).try_init().unwrap();
            let stats = guard.stats();
            tracing::warn!("app line");
            tracing::info!(target: "audit", "audit line");
            // Records of the `log` crate are routed by their own target too, not the
            // bridge's (`log`).
            log::warn!(target: "audit", "log audit line");
            log::warn!("log app line");
            drop(guard);
            eprintln!("STATS {}", stats.lines_written());
        }
        s @ ("bufwriter_log_target_blocking" | "bufwriter_log_target_non_blocking") => {
            // A buffered writer for one target, which `log` records use: the guard flushes it.
            let path = std::env::var("TRACELINE_TEST_FILE").unwrap();
            let w = Writer::custom(common::AuditByTarget::create(std::path::Path::new(&path)));
            let w = if s.ends_with("non_blocking") {
                w.non_blocking()
            } else {
                w
            };
            let guard = traceline::builder().writer(w).try_init().unwrap();
            for i in 0..3 {
                log::warn!(target: "audit", "audit {i}");
            }
            drop(guard);
        }
        s @ ("route_or_else_blocking"
        | "route_or_else_non_blocking"
        | "route_blocking"
        | "route_non_blocking") => {
            // WARN and above to stdout, the rest to stderr (`or_else`) or nowhere: routing by
            // the event's level.
            let warn = std::io::stdout.with_max_level(tracing::Level::WARN);
            let w = if s.starts_with("route_or_else") {
                Writer::custom(warn.or_else(std::io::stderr))
            } else {
                Writer::custom(warn)
            };
            let w = if s.ends_with("non_blocking") {
                w.non_blocking()
            } else {
                w
            };
            let _guard = traceline::builder().writer(w).try_init().unwrap();
            tracing::info!("info line");
            tracing::warn!("warn line");
        }
        s @ ("bufwriter_blocking" | "bufwriter_non_blocking") => {
            let path = std::env::var("TRACELINE_TEST_FILE").unwrap();
            let file = std::fs::File::create(&path).unwrap();
            let w = Writer::custom(Mutex::new(std::io::BufWriter::new(file)));
            let w = if s.ends_with("non_blocking") {
                w.non_blocking()
            } else {
                w
            };
            let guard = traceline::builder().writer(w).try_init().unwrap();
            for i in 0..3 {
                tracing::info!(i, "line");
            }
            drop(guard); // "spans are exported, queued lines written"
        }
        "bufwriter_after_guard" => {
            let path = std::env::var("TRACELINE_TEST_FILE").unwrap();
            let file = std::fs::File::create(&path).unwrap();
            let w = Writer::custom(Mutex::new(std::io::BufWriter::new(file)));
            let guard = traceline::builder().writer(w).try_init().unwrap();
            tracing::info!(i = 0, "line");
            drop(guard);
            // A request still finishing on another thread, then one on this thread; the
            // process then ends without anything else flushing the writer.
            std::thread::spawn(|| tracing::info!(i = 1, "line"))
                .join()
                .unwrap();
            tracing::info!(i = 2, "line");
        }
        s @ ("logging_writer_wait_when_full" | "logging_writer_lossy") => {
            let w = Writer::custom(LoggingWriter).queue_limit(1);
            let w = if s.ends_with("lossy") {
                w
            } else {
                w.wait_when_full()
            };
            let guard = traceline::builder().writer(w).try_init().unwrap();
            let stats = guard.stats();
            for i in 0..50 {
                tracing::info!(i, "outer");
            }
            drop(guard);
            print_stats(&stats);
            println!("NESTED {}", NESTED.load(Ordering::SeqCst));
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// Runs `scenario` in a child; kills it after `limit`. Returns `None` when it had to be killed.
fn run_limited(scenario: &str, env: &[(&str, &str)], limit: Duration) -> Option<Output> {
    support::run_limited(ENTRY, scenario, env, limit)
}

fn stats_of(stdout: &[u8]) -> (u64, u64, u64) {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("STATS "))
        .unwrap_or_else(|| panic!("no stats in {text}"));
    let n: Vec<u64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
    (n[0], n[1], n[2])
}

fn line_numbers(stdout: &[u8]) -> Vec<u64> {
    support::json_lines(stdout)
        .iter()
        .filter(|l| l["message"] == "line")
        .map(|l| l["i"].as_u64().unwrap())
        .collect()
}

/// README: "A writer that panics loses its line, counted as dropped; the program goes on",
/// and written + dropped is every line logged once the guard is dropped.
#[test]
fn a_writer_that_panics_once_loses_one_line_blocking_and_non_blocking() {
    for scenario in ["panic_blocking", "panic_non_blocking"] {
        let out = run_limited(scenario, &[], Duration::from_secs(60)).expect("finished");
        let lines = line_numbers(&out.stdout);
        let (written, dropped, errors) = stats_of(&out.stdout);
        // Every line written is on stdout: the 9 logged lines the writer took, and the warning
        // about the lost line when the non-blocking writer's monitor got to report it.
        let on_stdout = support::json_lines(&out.stdout).len() as u64;
        assert_eq!(
            (lines, dropped, errors, written),
            (vec![0, 2, 3, 4, 5, 6, 7, 8, 9], 1, 1, on_stdout),
            "{scenario}: stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `Writer::custom` takes any `MakeWriter`; one that routes by level must route the same way
/// whether the writer is blocking or not.
#[test]
fn a_level_routing_make_writer_routes_the_same_when_non_blocking() {
    let messages = |scenario| -> Vec<String> {
        let out = run_limited(scenario, &[], Duration::from_secs(60)).expect("finished");
        support::json_lines(&out.stdout)
            .iter()
            .map(|l| l["message"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(messages("route_blocking"), ["warn line"]);
    assert_eq!(messages("route_non_blocking"), ["warn line"]);
    for scenario in ["route_target_blocking", "route_target_non_blocking"] {
        let out = run_limited(scenario, &[], Duration::from_secs(60)).expect("finished");
        let messages: Vec<String> = support::json_lines(&out.stdout)
            .iter()
            .map(|l| l["message"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(messages, ["audit line", "log audit line"], "{scenario}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Each line is counted once as written, also one the routing writer sends nowhere
        // (that is its choice).
        assert!(stderr.contains("STATS 4"), "{scenario}: {stderr}");
    }
    for scenario in ["route_or_else_blocking", "route_or_else_non_blocking"] {
        let out = run_limited(scenario, &[], Duration::from_secs(60)).expect("finished");
        let of = |bytes: &[u8]| -> Vec<String> {
            support::json_lines(bytes)
                .iter()
                .map(|l| l["message"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(of(&out.stdout), ["warn line"], "{scenario}");
        assert_eq!(of(&out.stderr), ["info line"], "{scenario}");
    }
}

/// Runs `scenario` in a child writing to a file of its own (`TRACELINE_TEST_FILE`); returns
/// what the file holds once the child has ended.
fn file_written_by(scenario: &str) -> String {
    let path = std::env::temp_dir().join(format!(
        "traceline_writer_{scenario}_{}.log",
        std::process::id()
    ));
    let p = path.to_str().unwrap();
    let out = run_limited(
        scenario,
        &[("TRACELINE_TEST_FILE", p)],
        Duration::from_secs(60),
    )
    .expect("finished");
    assert!(out.status.success(), "{scenario}: {}", out.status);
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    text
}

/// A buffered writer behind a routing writer that takes one target, which `log` records use:
/// their lines reach it (not the bridge's target, `log`), and dropping the guard flushes it.
#[test]
fn log_records_reach_and_flush_the_writer_of_their_own_target() {
    for scenario in [
        "bufwriter_log_target_blocking",
        "bufwriter_log_target_non_blocking",
    ] {
        let text = file_written_by(scenario);
        let messages: Vec<String> = support::json_lines(text.as_bytes())
            .iter()
            .map(|l| l["message"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            messages,
            ["audit 0", "audit 1", "audit 2"],
            "{scenario}: {text:?}"
        );
    }
}

/// A custom buffered writer: dropping the guard must leave every line in the file, as it does
/// for the same writer in non-blocking mode.
#[test]
fn dropping_the_guard_flushes_a_buffered_custom_writer() {
    for scenario in ["bufwriter_non_blocking", "bufwriter_blocking"] {
        let text = file_written_by(scenario);
        assert_eq!(text.lines().count(), 3, "{scenario}: file holds {text:?}");
    }
}

/// Lines logged after the guard is dropped still reach a buffered custom writer's output:
/// the global subscriber is never dropped, so nothing would flush them later.
#[test]
fn lines_after_the_guard_reach_a_buffered_custom_writers_output() {
    let text = file_written_by("bufwriter_after_guard");
    let numbers: Vec<u64> = support::json_lines(text.as_bytes())
        .iter()
        .map(|l| l["i"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [0, 1, 2], "file holds {text:?}");
}

/// README: "A value or writer that logs while its line is being formatted or written neither
/// deadlocks nor corrupts a line" — here with `wait_when_full()`, where a line the writer logs
/// on its own thread is dropped and counted when the queue is full, never waited for; and in
/// the default mode, where any line may be dropped, counted.
#[test]
fn a_writer_that_logs_does_not_deadlock_a_wait_when_full_writer() {
    for scenario in ["logging_writer_wait_when_full", "logging_writer_lossy"] {
        let out = run_limited(scenario, &[], Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{scenario}: still running after 30 s, killed: deadlock"));
        assert!(out.status.success(), "{scenario}");
        let (written, dropped, _) = stats_of(&out.stdout);
        let text = String::from_utf8_lossy(&out.stdout);
        let nested: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("NESTED "))
            .unwrap()
            .parse()
            .unwrap();
        let lines = support::json_lines(&out.stdout);
        let count = |m: &str| lines.iter().filter(|l| l["message"] == m).count() as u64;
        let (outer, inner) = (count("outer"), count("from inside the writer"));
        // Every line written is on stdout, and every line logged is written or counted.
        assert_eq!(written, lines.len() as u64, "{scenario}");
        assert!(
            outer + inner + dropped >= 50 + nested,
            "{scenario}: {outer} + {inner} + {dropped} < 50 + {nested}"
        );
        if scenario.ends_with("wait_when_full") {
            assert_eq!(
                outer, 50,
                "{scenario}: the logging threads' lines all wait for room"
            );
        }
    }
}

//! Overload: a non-blocking writer in front of a slow output. Logging threads never wait for
//! the output, and the counts are exact: written + dropped = emitted, and the output holds
//! exactly the lines counted as written.
#![cfg(feature = "install")]

mod install_support;

use std::io::{self, Write};
use std::time::{Duration, Instant};

use install_support as support;
use traceline::install::Writer;

const ENTRY: &str = "child_entry";
const THREADS: u64 = 4;
const PER_THREAD: u64 = 1000;

/// Standard output, one millisecond per line.
struct Slow;

impl Write for Slow {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        std::thread::sleep(Duration::from_millis(1));
        io::stdout().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}

/// Logs from `THREADS` threads at once; returns the slowest logging call.
fn log_from_threads(per_thread: u64) -> Duration {
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let span = tracing::info_span!("worker", t);
                let _e = span.enter();
                let mut slowest = Duration::ZERO;
                for seq in 0..per_thread {
                    let start = Instant::now();
                    tracing::info!(t, seq, "work item");
                    slowest = slowest.max(start.elapsed());
                }
                slowest
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .max()
        .unwrap()
}

/// An output that never finishes a write (a stalled reader).
struct Stalled;

impl Write for Stalled {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Ten lines that are all lost, with the diagnostic on (stderr stalled, see
/// `the_lost_lines_diagnostic_never_holds_a_logging_thread_on_a_stalled_stderr`).
fn lose_ten_lines(scenario: &str) {
    use tracing_subscriber::prelude::*;
    let ten = || {
        for i in 0..10u64 {
            tracing::info!(i, "line");
        }
    };
    match scenario {
        "stalled_stderr_lossy" => {
            let (layer, _guard) = traceline::layer()
                .with_output(Writer::custom(|| Stalled).queue_limit(1))
                .unwrap();
            tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), ten);
            print!("DONE");
            let _ = io::stdout().flush();
            // The guard would wait for the stalled output.
            std::process::exit(0);
        }
        _ => {
            let full = std::fs::File::options()
                .write(true)
                .open("/dev/full")
                .unwrap();
            let layer = traceline::layer().with_writer(std::sync::Mutex::new(full));
            tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), ten);
            print!("DONE");
        }
    }
}

#[test]
fn child_entry() {
    let Some(scenario) = support::scenario() else {
        return;
    };
    if scenario.starts_with("stalled_stderr") {
        return lose_ten_lines(&scenario);
    }
    let writer = Writer::custom(|| Slow).queue_limit(64);
    let (writer, per_thread) = match scenario.as_str() {
        "drop_when_full" | "warn_line" | "warn_line_app_only" => (writer, PER_THREAD),
        "wait_when_full" => (writer.wait_when_full(), PER_THREAD / 4),
        other => panic!("unknown scenario {other}"),
    };
    // The WARN lines about dropped lines would be lines of their own: counted apart, except
    // where they are what is tested.
    let filter = match scenario.as_str() {
        "warn_line" => "info",
        // A filter that names only the application's own target.
        "warn_line_app_only" => "overload=info",
        _ => "info,traceline::install=off",
    };
    let guard = traceline::builder()
        .sdk_disabled(true)
        .filter(filter)
        .writer(writer)
        .try_init()
        .unwrap();
    let stats = guard.stats();
    let slowest = log_from_threads(per_thread);
    if scenario.starts_with("warn_line") {
        // Room in the queue again for the WARN line written when the guard goes.
        std::thread::sleep(Duration::from_millis(300));
    }
    guard.shutdown().unwrap();
    eprintln!(
        "RESULT {} {} {} {} {}",
        THREADS * per_thread,
        stats.lines_written(),
        stats.lines_dropped(),
        stats.write_errors(),
        slowest.as_micros()
    );
}

/// (emitted, written, dropped, write errors, slowest call) and the JSON lines on stdout.
fn run(scenario: &str) -> ([u64; 5], Vec<serde_json::Value>) {
    let out = support::run(ENTRY, scenario, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let result = stderr
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line: {stderr}"));
    let n: Vec<u64> = result.split(' ').map(|n| n.parse().unwrap()).collect();
    (n.try_into().unwrap(), support::json_lines(&out.stdout))
}

#[test]
fn a_slow_output_never_blocks_logging_and_the_counts_are_exact() {
    let ([emitted, written, dropped, errors, slowest_us], lines) = run("drop_when_full");
    assert_eq!(written + dropped, emitted);
    assert_eq!(lines.len() as u64, written, "lines on stdout vs counted");
    assert!(dropped > 0, "the queue never filled: {written} written");
    assert_eq!(errors, 0);
    // Writing everything would take `emitted` ms; no call waited for the output.
    assert!(
        slowest_us < 200_000,
        "a logging call took {slowest_us} µs with the output taking 1 ms per line"
    );
    let mut seen = std::collections::HashSet::new();
    for line in &lines {
        let key = (line["t"].as_u64().unwrap(), line["seq"].as_u64().unwrap());
        assert!(seen.insert(key), "line written twice: {line}");
    }
}

#[test]
fn wait_when_full_loses_nothing() {
    let ([emitted, written, dropped, errors, _], lines) = run("wait_when_full");
    assert_eq!((written, dropped, errors), (emitted, 0, 0));
    assert_eq!(lines.len() as u64, emitted);
}

#[test]
fn dropped_lines_are_reported_in_a_warn_line() {
    dropped_lines_reported("warn_line");
}

/// A filter that keeps only the application's targets (`myapp=info`) still lets the WARN
/// about dropped lines through.
#[test]
fn dropped_lines_are_reported_under_a_filter_naming_only_the_application() {
    dropped_lines_reported("warn_line_app_only");
}

fn dropped_lines_reported(scenario: &str) {
    let ([_, _, dropped, _, _], lines) = run(scenario);
    assert!(dropped > 0);
    let warns: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["level"] == "WARN" && l["target"] == "traceline::install")
        .collect();
    assert!(!warns.is_empty(), "no WARN line about dropped lines");
    let total = warns.last().unwrap()["dropped_lines_total"]
        .as_u64()
        .unwrap();
    let reported: u64 = warns
        .iter()
        .map(|w| w["dropped_lines"].as_u64().unwrap())
        .sum();
    assert_eq!(reported, total);
    assert!(
        total > 0 && total <= dropped,
        "{total} reported, {dropped} dropped"
    );
    assert!(
        warns[0]["message"]
            .as_str()
            .unwrap()
            .contains("queue_limit"),
        "{}",
        warns[0]
    );
}

/// The diagnostic about lost lines goes to stderr. When stderr is a pipe nobody reads (`2>&1`
/// into the same stalled collector as the lines), the logging calls still return: with a lossy
/// non-blocking writer whose output is stalled, and with a writer that fails (`/dev/full`).
#[test]
fn the_lost_lines_diagnostic_never_holds_a_logging_thread_on_a_stalled_stderr() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    for scenario in ["stalled_stderr_lossy", "stalled_stderr_failing"] {
        // A stream whose buffer is full and whose reader never reads.
        let (stalled, _reader) = UnixStream::pair().unwrap();
        stalled.set_nonblocking(true).unwrap();
        while (&stalled).write(&[b'x'; 4096]).is_ok() {}
        stalled.set_nonblocking(false).unwrap();
        let mut child = support::child(ENTRY, scenario, &[])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::from(std::os::fd::OwnedFd::from(
                stalled,
            )))
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert!(
            status.is_some() && out.contains("DONE"),
            "{scenario}: the logging calls did not return (status {status:?}, stdout {out:?})"
        );
    }
}

//! Overload: a non-blocking writer in front of a slow output. Logging threads never wait for
//! the output, and the counts are exact: written + dropped = emitted, and the output holds
//! exactly the lines counted as written.

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

#[test]
fn child_entry() {
    let Some(scenario) = support::scenario() else {
        return;
    };
    let writer = Writer::custom(|| Slow).queue_limit(64);
    let (writer, per_thread) = match scenario.as_str() {
        "drop_when_full" | "warn_line" => (writer, PER_THREAD),
        "wait_when_full" => (writer.wait_when_full(), PER_THREAD / 4),
        other => panic!("unknown scenario {other}"),
    };
    // The WARN lines about dropped lines would be lines of their own: counted apart, except
    // where they are what is tested.
    let filter = if scenario == "warn_line" {
        "info"
    } else {
        "info,traceline::install=off"
    };
    let guard = traceline::builder()
        .sdk_disabled(true)
        .filter(filter)
        .writer(writer)
        .try_init()
        .unwrap();
    let stats = guard.stats();
    let slowest = log_from_threads(per_thread);
    if scenario == "warn_line" {
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
    let ([_, _, dropped, _, _], lines) = run("warn_line");
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

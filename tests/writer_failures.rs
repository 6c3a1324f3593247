//! A failing writer never stops the program: a closed stdout pipe (EPIPE), a full disk
//! (ENOSPC, `/dev/full`), a writer that stays `WouldBlock` (a non-blocking pipe nobody reads),
//! short writes and interrupted writes. Every line is counted as written or dropped, a line is
//! never left half-written in the output, and one diagnostic goes to stderr however many lines
//! are lost.
#![cfg(feature = "install")]
// `std::io::pipe` is newer than the library's minimum Rust version; these tests need it.
#![allow(clippy::incompatible_msrv)]

mod common;
mod install_support;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Capture, Step, Steps, check_line, output_layer, split_lines};
use install_support as support;
use tracing::{info, info_span};
use tracing_subscriber::prelude::*;

const ENTRY: &str = "child_entry";
const LINES: u64 = 1000;

/// Logs `n` lines (in and out of a span) and returns how long the slowest call took.
fn log_lines(n: u64) -> Duration {
    let mut slowest = Duration::ZERO;
    let span = info_span!("batch", batch.size = n);
    for i in 0..n {
        let start = Instant::now();
        if i % 2 == 0 {
            span.in_scope(|| info!(i, pad = "x".repeat(150).as_str(), "line {i}"));
        } else {
            info!(i, pad = "y".repeat(150).as_str(), "line {i}");
        }
        slowest = slowest.max(start.elapsed());
    }
    slowest
}

/// The numbers of the `STATS …` line a child prints on stdout.
fn stats_numbers(stdout: &[u8]) -> Vec<u64> {
    let stdout = String::from_utf8_lossy(stdout);
    let stats = stdout
        .lines()
        .find_map(|l| l.strip_prefix("STATS "))
        .unwrap_or_else(|| panic!("no STATS line: {stdout}"));
    stats.split(' ').map(|n| n.parse().unwrap()).collect()
}

/// The `STATS written dropped errors` line a child prints, and the child's stderr.
fn child_stats(scenario: &str) -> ((u64, u64, u64), String) {
    let out = support::run(ENTRY, scenario, &[]);
    let n = stats_numbers(&out.stdout);
    (
        (n[0], n[1], n[2]),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn print_stats(stats: &traceline::Stats) {
    println!(
        "STATS {} {} {}",
        stats.lines_written(),
        stats.lines_dropped(),
        stats.write_errors()
    );
}

#[test]
fn child_entry() {
    let Some(scenario) = support::scenario() else {
        return;
    };
    match scenario.as_str() {
        // A line lost in this process, then one in a forked child of it, whose stderr is a
        // pipe read here: the child's diagnostic is printed on stdout.
        "fork_report" => {
            struct Failing;
            impl Write for Failing {
                fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                    Err(io::Error::other("disk gone"))
                }
                fn flush(&mut self) -> io::Result<()> {
                    Ok(())
                }
            }
            let lose_one = || {
                // A layer of its own: counters that have not reported yet.
                let layer = traceline::layer().with_writer(|| Failing);
                tracing::subscriber::with_default(
                    tracing_subscriber::registry().with(layer),
                    || tracing::info!("lost"),
                );
            };
            lose_one(); // this process's reporter thread now runs
            let mut fds = [0; 2];
            // SAFETY: a pipe, a fork in a process with no other thread of this test running,
            // and descriptor juggling on descriptors this process owns.
            unsafe {
                assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
                let pid = libc::fork();
                assert!(pid >= 0);
                if pid == 0 {
                    libc::dup2(fds[1], 2);
                    libc::close(fds[0]);
                    libc::close(fds[1]);
                    lose_one();
                    libc::_exit(0);
                }
                libc::close(fds[1]);
                let mut child_stderr = String::new();
                use std::os::fd::FromRawFd;
                File::from_raw_fd(fds[0])
                    .read_to_string(&mut child_stderr)
                    .unwrap();
                let mut status = 0;
                libc::waitpid(pid, &mut status, 0);
                println!("CHILD_STDERR={child_stderr:?}");
            }
        }
        // Standard output is a pipe whose reader has gone: every write is EPIPE.
        "epipe" => {
            let (reader, writer) = io::pipe().unwrap();
            drop(reader);
            io::stdout().flush().unwrap();
            // SAFETY: plain descriptor juggling on descriptors this process owns; stdout is
            // put back before anything else writes to it.
            let saved = unsafe { libc::dup(1) };
            assert!(saved >= 0);
            assert!(unsafe { libc::dup2(writer.as_raw_fd(), 1) } == 1);
            drop(writer);
            let layer = traceline::layer();
            let stats = layer.stats();
            tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
                log_lines(LINES)
            });
            assert!(unsafe { libc::dup2(saved, 1) } == 1);
            print_stats(&stats);
        }
        // Every write is ENOSPC.
        "enospc" => {
            let full = File::options().write(true).open("/dev/full").unwrap();
            let layer = traceline::layer().with_writer(Mutex::new(full));
            let stats = layer.stats();
            tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
                log_lines(LINES)
            });
            print_stats(&stats);
        }
        "enospc_quiet" => {
            let full = File::options().write(true).open("/dev/full").unwrap();
            let layer = traceline::layer()
                .with_writer(Mutex::new(full))
                .log_internal_errors(false);
            let stats = layer.stats();
            tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
                log_lines(LINES)
            });
            print_stats(&stats);
        }
        // Standard output is a non-blocking pipe read slowly; 3 threads log lines of 20 KB,
        // which the pipe takes in pieces.
        "stdout_slow_pipe" => {
            let (reader, writer) = non_blocking_pipe();
            io::stdout().flush().unwrap();
            // SAFETY: as in "epipe": descriptors this process owns, stdout restored after.
            let saved = unsafe { libc::dup(1) };
            assert!(unsafe { libc::dup2(writer.as_raw_fd(), 1) } == 1);
            drop(writer);
            let drain = slow_reader(reader, Duration::ZERO, Duration::from_micros(300));
            let layer = traceline::layer().log_internal_errors(false);
            let stats = layer.stats();
            let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
            let threads: Vec<_> = (0..3)
                .map(|t| {
                    let dispatch = dispatch.clone();
                    std::thread::spawn(move || {
                        tracing::dispatcher::with_default(&dispatch, || {
                            let pad = char::from(b'a' + t as u8).to_string().repeat(20_000);
                            for i in 0..100u64 {
                                info!(t, i, pad = pad.as_str(), "big line");
                            }
                        })
                    })
                })
                .collect();
            threads.into_iter().for_each(|t| t.join().unwrap());
            drop(dispatch);
            assert!(unsafe { libc::dup2(saved, 1) } == 1);
            let text = String::from_utf8(drain.join().unwrap()).unwrap();
            let bad = text
                .lines()
                .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
                .count();
            println!(
                "STATS {} {} {} {} {}",
                stats.lines_written(),
                stats.lines_dropped(),
                stats.write_errors(),
                text.lines().count(),
                bad
            );
        }
        // Standard output is a non-blocking pipe with 8 KiB of room: a line of 9 KB is taken
        // in part, the rest once a reader drains the pipe. Prints whether the whole line,
        // newline included, reached the reader while nothing more was written to stdout.
        "stdout_tail" => {
            let (mut reader, writer) = non_blocking_pipe();
            io::stdout().flush().unwrap();
            // SAFETY: as in "epipe": descriptors this process owns, stdout restored after.
            let saved = unsafe { libc::dup(1) };
            assert!(unsafe { libc::dup2(writer.as_raw_fd(), 1) } == 1);
            let page = [b'#'; 4096];
            let mut filled = 0;
            loop {
                match (&writer).write(&page) {
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
            drop(writer);
            let mut room = vec![0u8; 8192];
            reader.read_exact(&mut room).unwrap();
            let filler = filled - room.len();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                let mut all = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = reader.read(&mut chunk) {
                    all.extend_from_slice(&chunk[..n]);
                    if n == 0 || all.len() > filler && all.ends_with(b"\n") {
                        break;
                    }
                }
                let _ = tx.send(all.split_off(filler.min(all.len())));
            });
            let layer = traceline::layer().log_internal_errors(false);
            let stats = layer.stats();
            tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
                info!(pad = "p".repeat(9_000).as_str(), "big line")
            });
            let line = rx.recv_timeout(Duration::from_secs(3)).unwrap_or_default();
            let whole = line.ends_with(b"\n")
                && serde_json::from_slice::<serde_json::Value>(&line)
                    .is_ok_and(|v| v["pad"].as_str().is_some_and(|p| p.len() == 9_000));
            assert!(unsafe { libc::dup2(saved, 1) } == 1);
            println!(
                "STATS {} {} {} {}",
                stats.lines_written(),
                stats.lines_dropped(),
                stats.write_errors(),
                u64::from(whole)
            );
        }
        // Standard output closed (descriptor 1 not open): every line is lost, and counted so.
        "stdout_closed" => {
            io::stdout().flush().unwrap();
            // SAFETY: as in "epipe": descriptors this process owns, stdout restored after.
            let saved = unsafe { libc::dup(1) };
            assert!(unsafe { libc::close(1) } == 0);
            let layer = traceline::layer().log_internal_errors(false);
            let stats = layer.stats();
            tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
                log_lines(10)
            });
            assert!(unsafe { libc::dup2(saved, 1) } == 1);
            print_stats(&stats);
        }
        // A non-blocking output that takes part of every line and then fails for good, and a
        // shutdown timeout shorter than the time a started line is given.
        "cut_at_shutdown" => {
            let guard = traceline::builder()
                .writer(traceline::install::Writer::custom(|| TakesPartThenFails).non_blocking())
                .shutdown_timeout(Duration::from_millis(300))
                .try_init()
                .unwrap();
            let stats = guard.stats();
            for i in 0..10u64 {
                info!(i, "line");
            }
            let start = Instant::now();
            drop(guard);
            println!(
                "STATS {} {} {}",
                stats.lines_written(),
                stats.lines_dropped(),
                start.elapsed().as_millis()
            );
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// A line that standard output (a non-blocking pipe) takes only in part is finished by
/// traceline's own write loop once the reader drains the pipe: its last bytes are not left
/// behind in std's line buffer, counted as written and out only when something else is
/// printed.
#[test]
fn a_line_stdout_takes_in_part_reaches_the_reader_whole() {
    let out = support::run(ENTRY, "stdout_tail", &[]);
    assert_eq!(
        stats_numbers(&out.stdout),
        [1, 0, 0, 1],
        "written, dropped, errors, whole line read; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Lines logged while standard output is closed are counted as dropped, each with its write
/// error, not as written (std's `Stdout` takes a write to a closed descriptor as done).
#[test]
fn lines_to_a_closed_stdout_are_counted_as_dropped() {
    let ((written, dropped, errors), stderr) = child_stats("stdout_closed");
    assert_eq!((written, dropped, errors), (0, 10, 10), "{stderr}");
}

/// Takes the first 20 bytes of a line, then fails on every call.
struct TakesPartThenFails;

impl io::Write for TakesPartThenFails {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.len() > 20 && data[0] == b'{' {
            return Ok(20);
        }
        Err(io::Error::from_raw_os_error(libc::EIO))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A shutdown that runs out of time gives up on a started line at once, so the guard keeps to
/// its timeout and, once it is gone, every line is counted: written or dropped.
#[test]
fn a_shutdown_out_of_time_gives_up_on_a_started_line_and_counts_every_line() {
    let out = support::run(ENTRY, "cut_at_shutdown", &[("OTEL_SDK_DISABLED", "true")]);
    let n = stats_numbers(&out.stdout);
    let (written, dropped, took_ms) = (n[0], n[1], n[2]);
    assert_eq!((written, dropped), (0, 10), "took {took_ms} ms");
    // The timeout, and not the 2 s a started line is otherwise given.
    assert!(
        took_ms < 1_500,
        "the guard took {took_ms} ms (timeout 300 ms)"
    );
}

#[test]
fn stdout_lines_taken_in_pieces_are_never_mixed_between_threads() {
    let out = support::run(ENTRY, "stdout_slow_pipe", &[]);
    let n = stats_numbers(&out.stdout);
    let [written, dropped, _errors, lines, bad] = n[..] else {
        panic!("{n:?}")
    };
    assert_eq!(bad, 0, "{bad} mixed or cut lines out of {lines}");
    assert_eq!(written + dropped, 300);
    assert_eq!(lines, written);
    assert!(written > 0);
}

fn assert_one_diagnostic(stderr: &str, reason: &str) {
    let reports: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("traceline: log lines are being lost"))
        .collect();
    assert_eq!(reports.len(), 1, "one diagnostic expected:\n{stderr}");
    assert!(reports[0].contains(reason), "{}", reports[0]);
    // The counts so far, with the reason.
    assert!(
        reports[0].contains(" dropped so far, ") && reports[0].contains(" written, "),
        "{}",
        reports[0]
    );
}

#[test]
fn epipe_on_closed_stdout_counts_every_line_and_reports_once() {
    let ((written, dropped, errors), stderr) = child_stats("epipe");
    assert_eq!((written, dropped, errors), (0, LINES, LINES));
    assert_one_diagnostic(&stderr, "Broken pipe");
}

#[test]
fn enospc_on_full_disk_counts_every_line_and_reports_once() {
    let ((written, dropped, errors), stderr) = child_stats("enospc");
    assert_eq!((written, dropped, errors), (0, LINES, LINES));
    assert_one_diagnostic(&stderr, "No space left on device");
}

#[test]
fn diagnostic_can_be_switched_off_counts_stay() {
    let ((written, dropped, errors), stderr) = child_stats("enospc_quiet");
    assert_eq!((written, dropped, errors), (0, LINES, LINES));
    assert!(!stderr.contains("traceline:"), "{stderr}");
}

/// Reads `reader` to its end on a thread of its own, starting after `wait` and pausing `pause`
/// after each read of at most 4 KiB: a slow consumer of a pipe.
fn slow_reader(
    mut reader: io::PipeReader,
    wait: Duration,
    pause: Duration,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        std::thread::sleep(wait);
        let mut all = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) => return all,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("{e}"),
            }
            std::thread::sleep(pause);
        }
    })
}

/// A non-blocking pipe: writes fail with `WouldBlock` once its buffer is full.
fn non_blocking_pipe() -> (io::PipeReader, io::PipeWriter) {
    let (reader, writer) = io::pipe().unwrap();
    let fd = writer.as_raw_fd();
    // SAFETY: fcntl on a descriptor this test owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        assert!(libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0);
    }
    (reader, writer)
}

#[test]
fn would_block_drops_whole_lines_within_a_bound_and_never_splits_one() {
    let (mut reader, writer) = non_blocking_pipe();
    let layer = traceline::layer()
        .with_writer(Mutex::new(writer))
        .log_internal_errors(false);
    let stats = layer.stats();
    // Nobody reads the pipe while logging: it fills (64 KiB), then every write would block.
    let slowest =
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            log_lines(LINES)
        });
    assert!(
        slowest < Duration::from_secs(2),
        "a logging call waited {slowest:?} for a stuck writer"
    );
    let (written, dropped) = (stats.lines_written(), stats.lines_dropped());
    assert!(dropped > 0, "the pipe never filled");
    assert_eq!(written + dropped, LINES);
    assert_eq!(stats.write_errors(), dropped);
    // The layer (and its pipe writer) is gone with the subscriber: read to the end.
    let mut text = String::new();
    reader.read_to_string(&mut text).unwrap();
    let lines = split_lines(&text);
    assert_eq!(lines.len() as u64, written, "lines in the pipe vs counted");
    let mut last = None;
    for raw in &lines {
        let i: u64 = check_line(raw).num("i").parse().unwrap();
        assert!(last < Some(i), "out of order or repeated: {raw}");
        last = Some(i);
    }
}

#[test]
fn a_slow_reader_gets_whole_lines_after_the_writer_was_stuck() {
    let (reader, writer) = non_blocking_pipe();
    // Filled to the brim with short lines (writes under PIPE_BUF are all or nothing): the first
    // line logged waits for room in vain, is dropped, and the writer counts as stuck.
    let mut filler = writer.try_clone().unwrap();
    let mut fillers = 0;
    while filler.write(b"{\"filler\":true}\n").is_ok() {
        fillers += 1;
    }
    let layer = traceline::layer()
        .with_writer(Mutex::new(writer))
        .log_internal_errors(false);
    let stats = layer.stats();
    // The reader starts late, then reads slowly: lines of 20 KB go in pieces and must still
    // come out whole.
    let drain = slow_reader(
        reader,
        Duration::from_millis(200),
        Duration::from_micros(200),
    );
    let pad = "p".repeat(20_000);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for i in 0..400u64 {
            info!(i, pad = pad.as_str(), "big line");
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    drop(filler);
    let text = String::from_utf8(drain.join().unwrap()).unwrap();
    let lines = split_lines(&text);
    for raw in &lines {
        check_line(raw);
    }
    assert_eq!(lines.len() as u64, fillers + stats.lines_written());
    assert_eq!(stats.lines_written() + stats.lines_dropped(), 400);
    assert!(stats.lines_dropped() > 0, "the pipe never filled");
    assert!(stats.lines_written() > 0);
}

/// Takes at most `chunk` bytes per call and answers every other call with `Interrupted`.
#[derive(Clone)]
struct Choppy {
    out: Capture,
    chunk: usize,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl io::Write for Choppy {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        use tracing_subscriber::fmt::MakeWriter;
        let call = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if call % 2 == 1 {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = data.len().min(self.chunk);
        self.out.make_writer().write_all(&data[..n])?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn short_and_interrupted_writes_are_completed() {
    let out = Capture::new();
    let choppy = Choppy {
        out: out.clone(),
        chunk: 7,
        calls: Default::default(),
    };
    let layer = traceline::layer().with_writer(move || choppy.clone());
    let stats = layer.stats();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        log_lines(200)
    });
    let lines = out.lines();
    assert_eq!(lines.len(), 200);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line.num("i"), i.to_string());
    }
    assert_eq!(
        (
            stats.lines_written(),
            stats.lines_dropped(),
            stats.write_errors()
        ),
        (200, 0, 0)
    );
}

/// While `broken` is set, takes the first 20 bytes of a line and then fails (EIO) on every
/// call; `fail_times` counts the failures.
#[derive(Clone, Default)]
struct FailsMidLine {
    out: Capture,
    broken: std::sync::Arc<std::sync::atomic::AtomicBool>,
    failures: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Stop failing after this many failures.
    heal_after: usize,
}

impl io::Write for FailsMidLine {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        use std::sync::atomic::Ordering;
        use tracing_subscriber::fmt::MakeWriter;
        let mut w = self.out.make_writer();
        if self.broken.load(Ordering::SeqCst) {
            if data.len() > 20 && data[0] == b'{' {
                w.write_all(&data[..20])?;
                return Ok(20);
            }
            if self.failures.fetch_add(1, Ordering::SeqCst) + 1 >= self.heal_after {
                self.broken.store(false, Ordering::SeqCst);
            }
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        w.write_all(data)?;
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn failing_mid_line(
    heal_after: usize,
) -> (
    FailsMidLine,
    traceline::Layer<impl for<'a> tracing_subscriber::fmt::MakeWriter<'a> + 'static>,
) {
    let writer = FailsMidLine {
        heal_after,
        ..Default::default()
    };
    writer
        .broken
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let w = writer.clone();
    let layer = traceline::layer()
        .with_writer(move || w.clone())
        .log_internal_errors(false);
    (writer, layer)
}

#[test]
fn a_passing_failure_inside_a_line_is_retried_and_the_line_completed() {
    let (writer, layer) = failing_mid_line(3);
    let stats = layer.stats();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || log_lines(3));
    assert_eq!(writer.failures.load(std::sync::atomic::Ordering::SeqCst), 3);
    let lines = writer.out.lines();
    let seen: Vec<&str> = lines.iter().map(|l| l.num("i")).collect();
    assert_eq!(seen, ["0", "1", "2"]);
    assert_eq!(
        (
            stats.lines_written(),
            stats.lines_dropped(),
            stats.write_errors()
        ),
        (3, 0, 0)
    );
}

#[test]
fn a_line_cut_by_a_lasting_failure_does_not_swallow_the_next_one() {
    use std::sync::atomic::Ordering;
    let (writer, layer) = failing_mid_line(usize::MAX);
    let stats = layer.stats();
    let broken = writer.broken.clone();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        log_lines(1);
        // The writer gave up inside line 0 for good; it works again for the next lines.
        broken.store(false, Ordering::SeqCst);
        for i in 1..3u64 {
            info!(i, "line {i}");
        }
    });
    let text = writer.out.text();
    let raw: Vec<&str> = text.split_inclusive('\n').collect();
    assert_eq!(raw.len(), 3, "{text}");
    assert_eq!(raw[0].len(), 21, "the cut line, ended: {:?}", raw[0]);
    assert!(serde_json::from_str::<serde_json::Value>(raw[0]).is_err());
    assert_eq!(check_line(raw[1]).num("i"), "1");
    assert_eq!(check_line(raw[2]).num("i"), "2");
    assert_eq!(
        (
            stats.lines_written(),
            stats.lines_dropped(),
            stats.write_errors()
        ),
        (2, 1, 1)
    );
}

/// Panics on every other line (a line starts with `{`; the newline that ends a line a panic
/// may have cut is written on its own).
#[derive(Clone, Default)]
struct Panicky {
    out: Capture,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl io::Write for Panicky {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        use tracing_subscriber::fmt::MakeWriter;
        if data.first() == Some(&b'{') {
            let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if call % 2 == 1 {
                panic!("the writer panics on purpose");
            }
        }
        self.out.make_writer().write_all(data)?;
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_panicking_writer_loses_its_lines_counted_not_the_program() {
    let writer = Panicky::default();
    let w = writer.clone();
    let layer = traceline::layer()
        .with_writer(move || w.clone())
        .log_internal_errors(false);
    let stats = layer.stats();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || log_lines(10));
    // A writer that panics inside a write may have taken part of the line: the next line
    // starts on a line of its own (an empty line where nothing was taken).
    let text = writer.out.text();
    let seen: Vec<String> = split_lines(&text)
        .iter()
        .filter(|l| l.trim() != "")
        .map(|l| check_line(l).num("i").to_owned())
        .collect();
    assert_eq!(seen, ["0", "2", "4", "6", "8"]);
    assert_eq!(
        (
            stats.lines_written(),
            stats.lines_dropped(),
            stats.write_errors()
        ),
        (5, 5, 5)
    );
}

/// Fails inside a line while `broken`: takes its first 20 bytes, then errors.
#[derive(Clone, Default)]
struct Routed {
    out: Capture,
    broken: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl io::Write for Routed {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        use tracing_subscriber::fmt::MakeWriter;
        if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
            if data.len() > 20 && data[0] == b'{' {
                self.out.make_writer().write_all(&data[..20])?;
                return Ok(20);
            }
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.out.make_writer().write_all(data)?;
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// With a writer that routes by level (WARN and above to one output, the rest to another), the
/// newline that ends a cut line goes to the output that has the cut line: the next line there
/// stands on its own, and the other output gets no empty line. Through the layer's own writer
/// and through the non-blocking queue.
#[test]
fn a_line_cut_on_one_routed_writer_is_ended_there() {
    use std::sync::atomic::Ordering;
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    for non_blocking in [false, true] {
        let (warns, rest) = (Routed::default(), Routed::default());
        let (w, r) = (warns.clone(), rest.clone());
        let make = (move || w.clone())
            .with_max_level(tracing::Level::WARN)
            .or_else(move || r.clone());
        let (layer, guard) = output_layer(make, non_blocking);
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        // The queue's thread writes the line: the writer stays broken past the time a started
        // line is given, so that the line is cut (as the blocking write's own wait does).
        let settle = || {
            if non_blocking {
                std::thread::sleep(Duration::from_millis(2_600));
            }
        };
        tracing::dispatcher::with_default(&dispatch, || {
            warns.broken.store(true, Ordering::SeqCst);
            tracing::warn!("first warning");
            settle();
            warns.broken.store(false, Ordering::SeqCst);
            info!("an info line");
            tracing::warn!("second warning");
        });
        drop(guard);
        let (warns, rest) = (warns.out.text(), rest.out.text());
        let lines: Vec<&str> = warns.split_inclusive('\n').collect();
        assert_eq!(lines.len(), 2, "non-blocking {non_blocking}: {warns:?}");
        assert_eq!(lines[0].len(), 21, "the cut line, ended: {:?}", lines[0]);
        assert_eq!(check_line(lines[1]).str("message"), "second warning");
        assert_eq!(check_line(&rest).str("message"), "an info line", "{rest:?}");
    }
}

/// A writer that panics after taking part of a line leaves it cut: the next line starts on a
/// line of its own, and the lines counted as written are whole lines.
#[test]
fn a_writer_panicking_mid_line_does_not_glue_the_next_line_to_it() {
    let writer = Steps::new(&[Step::Take(30), Step::Panic], Step::Take(30));
    let w = writer.clone();
    let layer = traceline::layer()
        .with_writer(move || w.clone())
        .log_internal_errors(false);
    let stats = layer.stats();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        info!("first");
        info!("second");
        info!("third");
    });
    let text = writer.out.text();
    let raw: Vec<&str> = text.split_inclusive('\n').collect();
    assert_eq!(raw.len(), 3, "{text:?}");
    assert_eq!(raw[0].len(), 31, "the cut line, ended: {:?}", raw[0]);
    assert_eq!(check_line(raw[1]).str("message"), "second");
    assert_eq!(check_line(raw[2]).str("message"), "third");
    assert_eq!((stats.lines_written(), stats.lines_dropped()), (2, 1));
}

/// An output that routes by level, whose WARN side breaks for good inside a line: the INFO
/// side, healthy, still gets every one of its lines, whole (the newline owed to the WARN side
/// does not hold them up), through the layer's writer and through the non-blocking queue.
#[test]
fn a_broken_routed_output_does_not_hold_up_a_healthy_one() {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    for non_blocking in [false, true] {
        let (warns, rest) = (Routed::default(), Routed::default());
        warns
            .broken
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let (w, r) = (warns.clone(), rest.clone());
        let make = (move || w.clone())
            .with_max_level(tracing::Level::WARN)
            .or_else(move || r.clone());
        let (layer, guard) = output_layer(make, non_blocking);
        let stats = layer.stats();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            tracing::warn!("a warning");
            for i in 0..3u64 {
                info!(i, "an info line");
            }
        });
        drop(guard);
        let rest = rest.out.text();
        // While the cut line cannot be ended, a line goes with a newline in front (its writer
        // may be the broken one): empty lines here, no line lost, none glued.
        let seen: Vec<String> = split_lines(&rest)
            .iter()
            .filter(|l| l.trim() != "")
            .map(|l| check_line(l).num("i").to_owned())
            .collect();
        assert_eq!(
            seen,
            ["0", "1", "2"],
            "non-blocking {non_blocking}: {rest:?}"
        );
        assert_eq!(
            (stats.lines_written(), stats.lines_dropped()),
            (3, 1),
            "non-blocking {non_blocking}"
        );
    }
}

/// Writes whole lines, and panics as it is dropped once (a flush on drop that fails).
#[derive(Clone, Default)]
struct PanicsOnDrop {
    out: Capture,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl io::Write for PanicsOnDrop {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        use tracing_subscriber::fmt::MakeWriter;
        self.out.make_writer().write_all(data)?;
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            panic!("flush on drop failed");
        }
    }
}

/// A writer that panics after the whole line was written (as it is dropped): the line is
/// counted once, as written, and the next line gets no empty line in front.
#[test]
fn a_writer_panicking_after_a_whole_line_counts_it_once() {
    let writer = PanicsOnDrop::default();
    let w = writer.clone();
    let layer = traceline::layer()
        .with_writer(move || w.clone())
        .log_internal_errors(false);
    let stats = layer.stats();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        writer
            .armed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        info!("first");
        info!("second");
    });
    let text = writer.out.text();
    assert!(!text.lines().any(str::is_empty), "an empty line: {text:?}");
    assert_eq!(split_lines(&text).len(), 2, "{text:?}");
    assert_eq!((stats.lines_written(), stats.lines_dropped()), (2, 0));
}

const NORMAL: u8 = 0;
/// Takes 5 bytes of the next write, then panics on the write after (and is normal again).
const CUT_THEN_PANIC: u8 = 1;
const FAIL: u8 = 2;
const FAIL_ONCE: u8 = 3;

/// A writer driven step by step.
#[derive(Clone, Default)]
struct Script {
    out: Capture,
    mode: std::sync::Arc<std::sync::Mutex<(u8, bool)>>,
    panic_on_drop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Script {
    fn set(&self, mode: u8) {
        *self.mode.lock().unwrap() = (mode, false);
    }
}

impl io::Write for Script {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        use tracing_subscriber::fmt::MakeWriter;
        let mut m = self.mode.lock().unwrap();
        match *m {
            (CUT_THEN_PANIC, false) => {
                m.1 = true;
                drop(m);
                let n = data.len().min(5);
                self.out.make_writer().write_all(&data[..n])?;
                Ok(n)
            }
            (CUT_THEN_PANIC, true) => {
                *m = (NORMAL, false);
                drop(m);
                panic!("the writer panics on purpose");
            }
            (FAIL, _) => Err(io::Error::other("failing")),
            (FAIL_ONCE, _) => {
                *m = (NORMAL, false);
                Err(io::Error::other("failing once"))
            }
            _ => {
                drop(m);
                self.out.make_writer().write_all(data)?;
                Ok(data.len())
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if self
            .panic_on_drop
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            panic!("panics as it is dropped, on purpose");
        }
    }
}

/// One writer that does not route: a line cut at WARN, then an INFO line while the newline
/// owed fails once. The INFO line goes with a newline in front, not glued to the cut one.
#[test]
fn a_line_is_never_glued_to_a_cut_one_on_the_same_writer() {
    let w = Script::default();
    let w2 = w.clone();
    let layer = traceline::layer()
        .with_writer(move || w2.clone())
        .log_internal_errors(false);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        w.set(CUT_THEN_PANIC);
        tracing::warn!("first");
        w.set(FAIL_ONCE);
        info!("second");
    });
    let text = w.out.text();
    assert_eq!(text.as_bytes().get(5), Some(&b'\n'), "{text:?}");
    assert_eq!(check_line(&text[6..]).str("message"), "second", "{text:?}");
}

/// Two routed outputs each left with a cut line: neither is forgotten, and each is ended
/// before the next line goes there.
#[test]
fn every_cut_line_is_ended_where_it_went() {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let (warns, rest) = (Script::default(), Script::default());
    let (w, r) = (warns.clone(), rest.clone());
    let make = (move || w.clone())
        .with_max_level(tracing::Level::WARN)
        .or_else(move || r.clone());
    let layer = traceline::layer()
        .with_writer(tracing_subscriber::fmt::writer::BoxMakeWriter::new(make))
        .log_internal_errors(false);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        warns.set(CUT_THEN_PANIC);
        tracing::warn!("a");
        warns.set(FAIL);
        rest.set(CUT_THEN_PANIC);
        info!("b");
        warns.set(NORMAL);
        tracing::warn!("c");
        info!("d");
    });
    let (warns, rest) = (warns.out.text(), rest.out.text());
    assert_eq!(warns.as_bytes().get(5), Some(&b'\n'), "{warns:?}");
    assert_eq!(check_line(&warns[6..]).str("message"), "c", "{warns:?}");
    let whole: Vec<String> = split_lines(&rest)
        .iter()
        .filter(|l| l.trim().len() > 6)
        .map(|l| check_line(l).str("message").to_owned())
        .collect();
    assert_eq!(whole, ["d"], "{rest:?}");
}

/// The writer made to end a cut line fails and then panics as it is dropped: the line logged
/// meanwhile is counted once, as dropped.
#[test]
fn a_line_is_counted_once_when_ending_a_cut_one_panics() {
    let w = Script::default();
    let w2 = w.clone();
    let layer = traceline::layer()
        .with_writer(move || w2.clone())
        .log_internal_errors(false);
    let stats = layer.stats();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        w.set(CUT_THEN_PANIC);
        tracing::warn!("first");
        w.set(FAIL);
        w.panic_on_drop
            .store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::warn!("second");
    });
    assert_eq!(
        (stats.lines_written(), stats.lines_dropped()),
        (0, 2),
        "two lines logged"
    );
}

/// A routed output stalled after cutting a line does not slow the healthy one down: no wait
/// for the newline it is owed, line after line.
#[test]
fn a_stalled_routed_output_does_not_slow_a_healthy_one() {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let (warns, rest) = (
        Steps::new(&[Step::Take(20)], Step::WouldBlock),
        Routed::default(),
    );
    let (w, r) = (warns.clone(), rest.clone());
    let make = (move || w.clone())
        .with_max_level(tracing::Level::WARN)
        .or_else(move || r.clone());
    let layer = traceline::layer()
        .with_writer(tracing_subscriber::fmt::writer::BoxMakeWriter::new(make))
        .log_internal_errors(false);
    let stats = layer.stats();
    let took =
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            tracing::warn!("cut here");
            let start = Instant::now();
            for i in 0..20u64 {
                info!(i, "healthy");
            }
            start.elapsed()
        });
    assert_eq!(stats.lines_written(), 20);
    // 20 waits for the stalled output would take a second.
    assert!(took < Duration::from_millis(500), "{took:?}");
}

/// Always panics, before taking a byte.
#[derive(Clone, Default)]
struct AlwaysPanics;

impl io::Write for AlwaysPanics {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        panic!("this output always panics, before taking a byte");
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A routed output that panics on every write loses its own lines, counted, and nothing else:
/// the healthy output gets all of its lines, through the layer's writer and the queue.
#[test]
fn a_panicking_routed_output_does_not_take_down_a_healthy_one() {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    for non_blocking in [false, true] {
        let rest = Routed::default();
        let r = rest.clone();
        let make = (|| AlwaysPanics)
            .with_max_level(tracing::Level::WARN)
            .or_else(move || r.clone());
        let (layer, guard) = output_layer(make, non_blocking);
        let stats = layer.stats();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            tracing::warn!("to the panicking output");
            for i in 0..3u64 {
                info!(i, "to the healthy output");
            }
        });
        drop(guard);
        let text = rest.out.text();
        let seen: Vec<String> = split_lines(&text)
            .iter()
            .map(|l| check_line(l).num("i").to_owned())
            .collect();
        assert_eq!(
            seen,
            ["0", "1", "2"],
            "non-blocking {non_blocking}: {text:?}"
        );
        assert_eq!(
            (stats.lines_written(), stats.lines_dropped()),
            (3, 1),
            "non-blocking {non_blocking}"
        );
    }
}

/// The newline owed to a cut line meets a passing `WouldBlock`: the next line goes with a
/// newline in front, which ends the cut one, and no empty line follows.
#[test]
fn a_passing_would_block_on_the_owed_newline_leaves_no_empty_line() {
    let w = Steps::new(
        &[Step::Take(10), Step::Panic, Step::WouldBlock],
        Step::Whole,
    );
    let w2 = w.clone();
    let layer = traceline::layer()
        .with_writer(move || w2.clone())
        .log_internal_errors(false);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        info!("first");
        info!("second");
        info!("third");
        info!("fourth");
    });
    let text = w.out.text();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    assert!(!lines.contains(&"\n"), "an empty line: {text:?}");
    assert_eq!(lines.len(), 4, "{text:?}");
    assert_eq!(lines[0].len(), 11, "the cut line, ended: {text:?}");
}

/// A writer that panics on the newline owed to a cut line is still owed it: the next line
/// starts on a line of its own.
#[test]
fn a_panic_on_the_owed_newline_does_not_glue_the_next_line() {
    let w = Steps::new(&[Step::Take(10), Step::Panic, Step::Panic], Step::Whole);
    let w2 = w.clone();
    let layer = traceline::layer()
        .with_writer(move || w2.clone())
        .log_internal_errors(false);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        info!("first");
        info!("second");
        info!("third");
    });
    let text = w.out.text();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    assert_eq!(lines[0].len(), 11, "the cut line, ended: {text:?}");
    for l in &lines[1..] {
        assert!(l.starts_with('{'), "a line glued to the cut one: {text:?}");
    }
}

/// Takes 4 bytes of the first line, then fails every continuation of it for good (ENOSPC);
/// whole lines (starting with `{` or `\n`) are taken whole. `cut` hears when the first line
/// has begun.
struct CutsFirstLine {
    out: Arc<Mutex<Vec<u8>>>,
    begun: bool,
    cut: Option<std::sync::mpsc::Sender<()>>,
}

impl CutsFirstLine {
    fn new(out: Arc<Mutex<Vec<u8>>>) -> Self {
        CutsFirstLine {
            out,
            begun: false,
            cut: None,
        }
    }
}

impl Write for CutsFirstLine {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if !self.begun {
            self.begun = true;
            self.out.lock().unwrap().extend_from_slice(&data[..4]);
            if let Some(tx) = self.cut.take() {
                let _ = tx.send(());
            }
            return Ok(4);
        }
        if !matches!(data.first(), Some(b'{') | Some(b'\n')) {
            return Err(io::Error::from_raw_os_error(28));
        }
        self.out.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The 4 bytes of the cut line, a newline, then whole lines: the `messages`, in order.
fn after_the_cut(out: &Arc<Mutex<Vec<u8>>>, messages: &[&str]) {
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    assert_eq!(
        text.as_bytes()[4],
        b'\n',
        "a line glued to the cut one: {text:?}"
    );
    let got: Vec<String> = text[5..]
        .split_inclusive('\n')
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a whole line, no empty one");
            v["message"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(got, messages, "{text:?}");
}

/// A line cut by a lasting failure while another thread waits for the same locked writer:
/// the waiting line does not land glued to the cut one, and no empty line follows.
#[test]
fn a_line_waiting_for_the_writer_is_not_glued_to_a_line_cut_meanwhile() {
    let out = Arc::new(Mutex::new(Vec::new()));
    let (tx, begun) = std::sync::mpsc::channel();
    let mut w = CutsFirstLine::new(out.clone());
    w.cut = Some(tx);
    let layer = traceline::layer()
        .with_writer(Mutex::new(w))
        .log_internal_errors(false);
    let stats = layer.stats();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let d = dispatch.clone();
    let first = std::thread::spawn(move || {
        tracing::dispatcher::with_default(&d, || tracing::info!("first"));
    });
    // The first line has begun, and holds the writer's lock while it retries.
    begun.recv().unwrap();
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("second"));
    first.join().unwrap();
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("third"));
    after_the_cut(&out, &["second", "third"]);
    assert_eq!((stats.lines_written(), stats.lines_dropped()), (2, 1));
}

/// A writer that leaves a line cut and then panics as it is dropped: the cut is still noted,
/// and the next line starts on its own.
#[test]
fn a_writer_panicking_as_it_is_dropped_after_a_cut_leaves_no_glued_line() {
    let out = Arc::new(Mutex::new(Vec::new()));
    let state = Arc::new(Mutex::new(CutsFirstLine::new(out.clone())));
    // A fresh writer per line, sharing the state; the one that failed panics as it goes.
    struct Handle(Arc<Mutex<CutsFirstLine>>, bool);
    impl Write for Handle {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            let r = self.0.lock().unwrap().write(data);
            self.1 |= r.is_err();
            r
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Drop for Handle {
        fn drop(&mut self) {
            if self.1 {
                panic!("flush on drop failed, on purpose");
            }
        }
    }
    let s = state.clone();
    let layer = traceline::layer()
        .with_writer(move || Handle(s.clone(), false))
        .log_internal_errors(false);
    let stats = layer.stats();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info!("first");
        tracing::info!("second");
    });
    after_the_cut(&out, &["second"]);
    assert_eq!((stats.lines_written(), stats.lines_dropped()), (1, 1));
}

/// Fails every write of the thread that wrote the line with `CUT` after half of it; takes
/// every other write whole.
struct CutsForOneThread {
    out: Arc<Mutex<Vec<u8>>>,
    cutter: Option<std::thread::ThreadId>,
}

impl Write for CutsForOneThread {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let me = std::thread::current().id();
        if self.cutter == Some(me) {
            return Err(io::Error::other("broken for the cutting thread"));
        }
        if self.cutter.is_none() && buf.windows(3).any(|w| w == b"CUT") {
            self.cutter = Some(me);
            let half = buf.len() / 2;
            self.out.lock().unwrap().extend_from_slice(&buf[..half]);
            return Ok(half);
        }
        self.out.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A locked writer whose `MakeWriter` works a little before taking the lock.
struct SlowLock(Mutex<CutsForOneThread>);

struct SlowLockGuard<'a>(std::sync::MutexGuard<'a, CutsForOneThread>);

impl Write for SlowLockGuard<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for SlowLock {
    type Writer = SlowLockGuard<'a>;
    fn make_writer(&'a self) -> SlowLockGuard<'a> {
        std::thread::sleep(Duration::from_millis(1));
        SlowLockGuard(self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Lines of eight threads waiting on one locked writer while another thread's line is cut: one
/// newline ends the cut, and no empty line follows (each waiting line used to write one).
#[test]
fn lines_waiting_on_a_locked_writer_end_a_cut_once() {
    let out = Arc::new(Mutex::new(Vec::new()));
    let make = SlowLock(Mutex::new(CutsForOneThread {
        out: out.clone(),
        cutter: None,
    }));
    let layer = traceline::layer()
        .with_writer(make)
        .log_internal_errors(false);
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let cutter = {
        let d = dispatch.clone();
        std::thread::spawn(move || {
            tracing::dispatcher::with_default(&d, || tracing::info!("CUT this line"))
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let waiting: Vec<_> = (0..8)
        .map(|i| {
            let d = dispatch.clone();
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&d, || tracing::info!("ok {i}"))
            })
        })
        .collect();
    cutter.join().unwrap();
    for t in waiting {
        t.join().unwrap();
    }
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.contains("\"ok ")).count(),
        8,
        "{text}"
    );
    assert!(!text.contains("\n\n"), "an empty line:\n{text}");
    let after_cut = &text[text.find('\n').unwrap() + 1..];
    for l in after_cut.lines() {
        serde_json::from_str::<serde_json::Value>(l).expect("whole lines after the cut");
    }
}

/// A forked child reports its lost lines on stderr too (it has the parent's channel to the
/// reporter thread, but not the thread).
#[test]
fn a_forked_child_reports_lost_lines_too() {
    let out = support::run(ENTRY, "fork_report", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("CHILD_STDERR="))
        .unwrap_or_else(|| panic!("no report from the child scenario: {stdout}"));
    assert!(line.contains("log lines are being lost"), "{line}");
}

#[derive(Clone, Copy)]
enum Phase {
    Ok,
    Fail,
    /// Takes this many more bytes, then fails every write.
    Take(usize),
}

struct Scripted {
    out: Vec<u8>,
    mode: Phase,
}

struct ScriptGuard<'a>(std::sync::MutexGuard<'a, Scripted>);

impl Write for ScriptGuard<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let s = &mut *self.0;
        match s.mode {
            Phase::Ok => {
                s.out.extend_from_slice(buf);
                Ok(buf.len())
            }
            Phase::Fail | Phase::Take(0) => Err(io::Error::other("broken")),
            Phase::Take(n) => {
                let k = n.min(buf.len());
                s.out.extend_from_slice(&buf[..k]);
                s.mode = Phase::Take(n - k);
                Ok(k)
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

thread_local!(static MAKES: std::cell::Cell<u32> = const { std::cell::Cell::new(0) });

/// A locked writer; on the thread named `B`, its second `make_writer` (the line's own writer,
/// after the attempt to end the cut) says so and waits to be let go before taking the lock.
struct HeldBack {
    script: Arc<Mutex<Scripted>>,
    reached: Mutex<std::sync::mpsc::Sender<()>>,
    go: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for HeldBack {
    type Writer = ScriptGuard<'a>;
    fn make_writer(&'a self) -> ScriptGuard<'a> {
        if std::thread::current().name() == Some("B") {
            let n = MAKES.with(|m| {
                m.set(m.get() + 1);
                m.get()
            });
            if n == 2 {
                self.reached.lock().unwrap().send(()).unwrap();
                self.go.lock().unwrap().recv().unwrap();
            }
        }
        ScriptGuard(self.script.lock().unwrap())
    }
}

/// A line that could not end a cut waits for its writer; meanwhile another line ends that cut
/// and is cut there itself. The waiting line still goes with a newline in front.
#[test]
fn a_line_waiting_for_its_writer_is_not_glued_to_a_newer_cut() {
    let script = Arc::new(Mutex::new(Scripted {
        out: Vec::new(),
        mode: Phase::Take(5),
    }));
    let (reached_tx, reached_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel();
    let layer = traceline::layer()
        .with_writer(HeldBack {
            script: script.clone(),
            reached: Mutex::new(reached_tx),
            go: Mutex::new(go_rx),
        })
        .log_internal_errors(false);
    let stats = layer.stats();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let set = |m| script.lock().unwrap().mode = m;
    // Cut #1: 5 bytes taken, then broken.
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("first"));
    // B cannot write the newline owed; it then waits for its writer.
    set(Phase::Fail);
    let d = dispatch.clone();
    let b = std::thread::Builder::new()
        .name("B".into())
        .spawn(move || tracing::dispatcher::with_default(&d, || tracing::info!("third")))
        .unwrap();
    reached_rx.recv().unwrap();
    // Another line ends cut #1 and is cut itself (#2).
    set(Phase::Take(1 + 5));
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("second"));
    set(Phase::Ok);
    go_tx.send(()).unwrap();
    b.join().unwrap();
    let text = String::from_utf8(script.lock().unwrap().out.clone()).unwrap();
    assert_eq!((stats.lines_written(), stats.lines_dropped()), (1, 2));
    let third = text
        .lines()
        .find(|l| l.contains("\"third\""))
        .expect("the third line");
    assert!(
        serde_json::from_str::<serde_json::Value>(third).is_ok(),
        "the third line is glued to a cut one: {third:?}\nall: {text:?}"
    );
}

/// An output routed by level whose WARN side stays `WouldBlock` (a pipe nobody reads) is
/// waited for once: lines to the healthy INFO side in between do not make every later WARN
/// line wait for its first byte again.
#[test]
fn a_stuck_routed_output_is_waited_for_once_while_a_healthy_one_keeps_writing() {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    for non_blocking in [false, true] {
        let warns = Steps::new(&[], Step::WouldBlock);
        let rest = Capture::new();
        let (w, r) = (warns.clone(), rest.clone());
        let make = (move || w.clone())
            .with_max_level(tracing::Level::WARN)
            .or_else(move || tracing_subscriber::fmt::MakeWriter::make_writer(&r));
        let (layer, guard) = output_layer(make, non_blocking);
        let stats = layer.stats();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        let took = tracing::dispatcher::with_default(&dispatch, || {
            let start = Instant::now();
            for i in 0..20u64 {
                tracing::warn!(i, "to the stuck output");
                info!(i, "to the healthy output");
            }
            start.elapsed()
        });
        drop(guard);
        assert_eq!(
            (stats.lines_written(), stats.lines_dropped()),
            (20, 20),
            "non-blocking: {non_blocking}"
        );
        assert_eq!(split_lines(&rest.text()).len(), 20);
        // 20 waits of 50 ms for the stuck output would take a second.
        assert!(
            took < Duration::from_millis(500),
            "non-blocking: {non_blocking}: {took:?}"
        );
    }
}

/// A writer every line reaches (one that does not route) and that stays `WouldBlock` is waited
/// for once per level, not once per target: lines from many targets are then dropped without
/// waiting.
#[test]
fn a_stuck_writer_is_waited_for_once_per_level_not_once_per_target() {
    macro_rules! from_targets {
        ($($t:literal)*) => {
            $(
                tracing::warn!(target: $t, "warn");
                info!(target: $t, "info");
            )*
        };
    }
    for non_blocking in [false, true] {
        let stuck = Steps::new(&[], Step::WouldBlock);
        let w = stuck.clone();
        let (layer, guard) = output_layer(move || w.clone(), non_blocking);
        let stats = layer.stats();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        let took = tracing::dispatcher::with_default(&dispatch, || {
            let start = Instant::now();
            from_targets!("t0" "t1" "t2" "t3" "t4" "t5" "t6" "t7" "t8" "t9");
            start.elapsed()
        });
        drop(guard);
        assert_eq!(
            (stats.lines_written(), stats.lines_dropped()),
            (0, 20),
            "non-blocking: {non_blocking}"
        );
        // Two levels: two waits of 50 ms. One per target and level would take a second.
        assert!(
            took < Duration::from_millis(400),
            "non-blocking: {non_blocking}: {took:?}"
        );
    }
}

/// A passing `WouldBlock` on the healthy side of an output routed by level is waited out as
/// usual while the WARN side stays stuck: its line is written, not dropped at once.
#[test]
fn a_passing_would_block_on_a_healthy_routed_output_is_waited_out_while_another_is_stuck() {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    for non_blocking in [false, true] {
        let warns = Steps::new(&[], Step::WouldBlock);
        let rest = Steps::new(&[Step::WouldBlock], Step::Whole);
        let (w, r) = (warns.clone(), rest.clone());
        let make = (move || w.clone())
            .with_max_level(tracing::Level::WARN)
            .or_else(move || r.clone());
        let (layer, guard) = output_layer(make, non_blocking);
        let stats = layer.stats();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::warn!("to the stuck output");
            info!("to the healthy output, which is not ready at once");
        });
        drop(guard);
        assert_eq!(
            (stats.lines_written(), stats.lines_dropped()),
            (1, 1),
            "non-blocking: {non_blocking}"
        );
        assert_eq!(split_lines(&rest.out.text()).len(), 1);
    }
}

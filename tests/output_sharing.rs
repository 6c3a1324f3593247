//! Lines stay whole and counted where the output is shared or unusual: a file taken in pieces
//! while other threads log (the file is locked for the whole line, as standard output is),
//! standard output behind the non-blocking writer while other code prints, a writer that keeps
//! answering `Interrupted`, and a non-blocking writer used in a forked child (which has the
//! queue but not the thread that empties it).
#![cfg(feature = "install")]

mod common;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use common::{
    Capture, StalledFileLine, Step, Steps, in_child, lift_file_size_limit, output_layer,
    stall_a_file_line,
};
use traceline::install::{Rotation, Writer};
use tracing_subscriber::prelude::*;

#[test]
fn a_file_line_taken_in_pieces_is_not_mixed_with_another_threads_line() {
    if std::env::var_os("TRACELINE_TEST_FILE_CHILD").is_none() {
        in_child(
            "a_file_line_taken_in_pieces_is_not_mixed_with_another_threads_line",
            "TRACELINE_TEST_FILE_CHILD",
            "ALL LINES WHOLE",
        );
        return;
    }
    // A: its line is taken 10 bytes, then refused; it retries (for up to 2 s).
    let StalledFileLine {
        dir,
        path,
        dispatch,
        guard,
        stats,
        line: a,
    } = stall_a_file_line("traceline-file-pieces", Rotation::Never);
    // B: logs meanwhile (refused whole while the limit holds).
    let stop = Arc::new(AtomicBool::new(false));
    let d = dispatch.clone();
    let s = stop.clone();
    let b = std::thread::spawn(move || {
        tracing::dispatcher::with_default(&d, || {
            while !s.load(Ordering::Relaxed) {
                tracing::info!(pad = "b".repeat(20), "B");
            }
        })
    });
    std::thread::sleep(Duration::from_millis(20));
    // Room again: A finishes its line; B's next line goes too.
    lift_file_size_limit();
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    a.join().unwrap();
    b.join().unwrap();
    drop(guard);
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
        .collect();
    println!(
        "written {} dropped {}",
        stats.lines_written(),
        stats.lines_dropped()
    );
    if bad.is_empty() {
        println!("ALL LINES WHOLE");
    } else {
        let show: Vec<String> = bad
            .iter()
            .take(3)
            .map(|l| l.chars().take(160).collect())
            .collect();
        println!("MIXED LINES: {}: {show:?}", bad.len());
    }
}

fn scenario(non_blocking: bool) -> String {
    unsafe {
        let saved = libc::dup(1);
        let mut fds = [0; 2];
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 4096);
        let flags = libc::fcntl(fds[1], libc::F_GETFL);
        libc::fcntl(fds[1], libc::F_SETFL, flags | libc::O_NONBLOCK);
        libc::dup2(fds[1], 1);
        libc::close(fds[1]);
        let mut reader = std::fs::File::from_raw_fd(fds[0]);
        // A slow reader: nothing read for 100 ms, then everything.
        let read = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let mut all = Vec::new();
            reader.read_to_end(&mut all).unwrap();
            all
        });
        let writer = if non_blocking {
            Writer::stdout().non_blocking()
        } else {
            Writer::stdout()
        };
        let (layer, guard) = traceline::layer()
            .log_internal_errors(false)
            .with_output(writer)
            .unwrap();
        let stats = layer.stats();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        let d = dispatch.clone();
        // A line longer than the pipe: taken in pieces as the reader makes room.
        let logger = std::thread::spawn(move || {
            tracing::dispatcher::with_default(&d, || {
                tracing::info!(pad = "x".repeat(20_000), "big")
            })
        });
        std::thread::sleep(Duration::from_millis(20));
        // Another thread's output on stdout meanwhile (as `print!` or a `fmt` layer would).
        loop {
            if std::io::stdout().write_all(b"PLAIN\n").is_ok() {
                break;
            }
            std::thread::yield_now();
        }
        logger.join().unwrap();
        drop(guard);
        let (written, dropped) = (stats.lines_written(), stats.lines_dropped());
        drop(dispatch);
        libc::dup2(saved, 1);
        libc::close(saved);
        let all = String::from_utf8(read.join().unwrap()).unwrap();
        let json_lines: Vec<&str> = all.lines().filter(|l| l.starts_with('{')).collect();
        let whole = json_lines
            .iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok());
        format!(
            "written {written} dropped {dropped} json lines {} whole {whole} plain-alone {}",
            json_lines.len(),
            all.lines().any(|l| l == "PLAIN")
        )
    }
}

#[test]
fn stdout_lines_taken_in_pieces_are_not_mixed_with_other_output() {
    if let Some(mode) = std::env::var_os("TRACELINE_TEST_STDOUT_CHILD") {
        let got = scenario(mode == "nb");
        println!("RESULT {got}");
        return;
    }
    let mut failures = Vec::new();
    for mode in ["b", "nb"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "stdout_lines_taken_in_pieces_are_not_mixed_with_other_output",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TRACELINE_TEST_STDOUT_CHILD", mode)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let result = stdout
            .lines()
            .find_map(|l| l.find("RESULT").map(|i| &l[i..]))
            .unwrap_or("no result")
            .to_owned();
        if result != "RESULT written 1 dropped 0 json lines 1 whole true plain-alone true" {
            failures.push(format!("{mode}: {result}"));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}

#[test]
fn a_writer_that_keeps_answering_interrupted_does_not_hold_a_logging_call_for_ever() {
    let (layer, _) = output_layer(
        {
            let w = Steps::new(&[], Step::Interrupted);
            move || w.clone()
        },
        false,
    );
    let stats = layer.stats();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let (done_tx, done) = channel();
    std::thread::spawn(move || {
        tracing::dispatcher::with_default(&dispatch, || tracing::info!("one"));
        let _ = done_tx.send(());
    });
    let returned = done.recv_timeout(Duration::from_secs(10)).is_ok();
    assert!(
        returned,
        "the logging call has not returned after 10 s (written {}, dropped {})",
        stats.lines_written(),
        stats.lines_dropped()
    );
    assert_eq!((stats.lines_written(), stats.lines_dropped()), (0, 1));
}

#[test]
fn a_non_blocking_shutdown_counts_a_line_its_output_keeps_interrupting() {
    let (layer, guard) = output_layer(
        {
            let w = Steps::new(&[], Step::Interrupted);
            move || w.clone()
        },
        true,
    );
    let stats = layer.stats();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("one"));
    let start = Instant::now();
    drop(guard); // 5 s for the output, then 1 s to count what is left
    let took = start.elapsed();
    assert_eq!(
        stats.lines_written() + stats.lines_dropped(),
        1,
        "the guard returned after {took:?} with the line neither written nor dropped"
    );
}

/// Forks (through `fork()`, or through the raw system call when `raw`, which runs no fork
/// handlers); the child runs `child`, sends back the text it returns and leaves with `_exit`.
/// Returns that text (also printed, for the test that runs this one in a child process).
fn report_from_forked_child(raw: bool, child: impl FnOnce() -> String) -> String {
    let mut fds = [0; 2];
    // SAFETY: a pipe and a fork; the child runs `child`, writes its report and leaves with
    // `_exit`; the parent reads the report and waits for the child.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        let pid = if raw {
            libc::syscall(libc::SYS_fork) as libc::pid_t
        } else {
            libc::fork()
        };
        assert!(pid >= 0);
        if pid == 0 {
            libc::close(fds[0]);
            let msg = child();
            libc::write(fds[1], msg.as_ptr().cast(), msg.len());
            libc::_exit(0);
        }
        libc::close(fds[1]);
        let mut report = String::new();
        File::from_raw_fd(fds[0])
            .read_to_string(&mut report)
            .unwrap();
        libc::waitpid(pid, std::ptr::null_mut(), 0);
        println!("{report}");
        report
    }
}

#[test]
fn lines_logged_in_a_forked_child_through_a_queue_are_written_or_counted() {
    if std::env::var_os("TRACELINE_TEST_FORK_CHILD").is_none() {
        in_child(
            "lines_logged_in_a_forked_child_through_a_queue_are_written_or_counted",
            "TRACELINE_TEST_FORK_CHILD",
            "CHILD guard drop returned after",
        );
        return;
    }
    let cap = Capture::new();
    let (layer, mut guard) = output_layer(cap.clone(), true);
    let stats = layer.stats();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let report = report_from_forked_child(false, || {
        tracing::dispatcher::with_default(&dispatch, || {
            for i in 0..3 {
                tracing::info!(i, "from the child");
            }
        });
        let start = std::time::Instant::now();
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(guard.take())));
        let took = start.elapsed();
        format!(
            "CHILD guard drop {} after {:?} (quick: {}); CHILD written+dropped={} (written {}, dropped {}, captured {} bytes)",
            if dropped.is_ok() {
                "returned"
            } else {
                "PANICKED"
            },
            took,
            took < std::time::Duration::from_secs(1),
            stats.lines_written() + stats.lines_dropped(),
            stats.lines_written(),
            stats.lines_dropped(),
            cap.bytes().len()
        )
    });
    assert!(report.contains("CHILD written+dropped=3"), "{report}");
    // Nothing empties the queue in the child: its lines are counted as dropped, none written,
    // and its guard does not wait for a thread that is not there.
    assert!(report.contains("(written 0, dropped 3,"), "{report}");
    assert!(report.contains("(quick: true)"), "{report}");
    drop(guard);
}

/// In a forked child, a line logged after the non-blocking writer's guard was dropped is
/// counted (as dropped), as it is in the parent: the child's stop closes the queue too.
#[test]
fn lines_logged_in_a_forked_child_after_its_guard_dropped_are_counted() {
    if std::env::var_os("TRACELINE_TEST_FORK_AFTER_CHILD").is_none() {
        in_child(
            "lines_logged_in_a_forked_child_after_its_guard_dropped_are_counted",
            "TRACELINE_TEST_FORK_AFTER_CHILD",
            "CHILD written+dropped=5",
        );
        return;
    }
    let cap = Capture::new();
    let (layer, mut guard) = output_layer(cap.clone(), true);
    let stats = layer.stats();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    report_from_forked_child(false, || {
        tracing::dispatcher::with_default(&dispatch, || {
            for i in 0..3 {
                tracing::info!(i, "from the child");
            }
        });
        drop(guard.take());
        // After the guard: refused, and counted (the parent counts them as `Closed`).
        tracing::dispatcher::with_default(&dispatch, || {
            for i in 0..2 {
                tracing::info!(i, "from the child, after its guard");
            }
        });
        format!(
            "CHILD written+dropped={} (written {}, dropped {})",
            stats.lines_written() + stats.lines_dropped(),
            stats.lines_written(),
            stats.lines_dropped(),
        )
    });
    // The parent, for comparison: the same sequence counts every line.
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("from the parent"));
    drop(guard);
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("after the guard"));
    assert_eq!(stats.lines_written() + stats.lines_dropped(), 2);
}

/// An output routed by level whose WARN side takes part of a line, then answers nothing but
/// `Interrupted`: its line is left cut, and the INFO side, healthy, is not held up by the
/// newline owed to the WARN side (as with any other lasting error there).
#[test]
fn a_routed_output_stuck_on_interrupted_does_not_hold_up_a_healthy_one() {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    // Takes the first 5 bytes it is given, then answers `Interrupted` to every write.
    let warns = Steps::new(&[Step::Take(5)], Step::Interrupted);
    let rest = Capture::new();
    let (w, r) = (warns.clone(), rest.clone());
    let make = (move || w.clone())
        .with_max_level(tracing::Level::WARN)
        .or_else(move || tracing_subscriber::fmt::MakeWriter::make_writer(&r));
    let (layer, _) = output_layer(make, false);
    let stats = layer.stats();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        tracing::warn!("a warning"); // cut after 2 s
        let start = Instant::now();
        for i in 0..3u64 {
            tracing::info!(i, "an info line");
        }
        let took = start.elapsed();
        assert!(
            took < Duration::from_millis(500),
            "3 lines to the healthy writer took {took:?} (written {}, dropped {})",
            stats.lines_written(),
            stats.lines_dropped()
        );
    });
    assert_eq!((stats.lines_written(), stats.lines_dropped()), (3, 1));
}

/// Writes whole lines, slowly (10 ms each).
#[derive(Clone, Default)]
struct Slow(Capture);

impl io::Write for Slow {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        use tracing_subscriber::fmt::MakeWriter;
        std::thread::sleep(Duration::from_millis(10));
        self.0.make_writer().write_all(data)?;
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Lines the parent queued before the fork are written by the parent: a child that logs
/// nothing and drops its guard does not count them as lost (nor says so on stderr).
#[test]
fn a_forked_child_does_not_count_the_parents_queued_lines_as_lost() {
    if std::env::var_os("TRACELINE_TEST_FORK_QUEUED_CHILD").is_none() {
        in_child(
            "a_forked_child_does_not_count_the_parents_queued_lines_as_lost",
            "TRACELINE_TEST_FORK_QUEUED_CHILD",
            "CHILD dropped=0",
        );
        return;
    }
    let out = Slow::default();
    let (layer, mut guard) = output_layer(move || out.clone(), true);
    let stats = layer.stats();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..20 {
            tracing::info!(i, "from the parent");
        }
    });
    report_from_forked_child(false, || {
        drop(guard.take());
        format!("CHILD dropped={}", stats.lines_dropped())
    });
    drop(guard);
    assert_eq!((stats.lines_written(), stats.lines_dropped()), (20, 0));
}

/// A child made without `fork()`'s handlers (glibc's `_Fork`, or the raw system call: a
/// crash handler forking from a signal handler, say) is a forked child all the same: its
/// lines are refused and counted, and dropping its guard returns at once, as for `fork()`.
#[test]
fn a_child_forked_without_the_atfork_handlers_is_told_too() {
    if std::env::var_os("TRACELINE_TEST_RAW_FORK_CHILD").is_none() {
        in_child(
            "a_child_forked_without_the_atfork_handlers_is_told_too",
            "TRACELINE_TEST_RAW_FORK_CHILD",
            "CHILD written+dropped=3",
        );
        return;
    }
    let cap = Capture::new();
    let (layer, mut guard) = output_layer(cap.clone(), true);
    let stats = layer.stats();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    report_from_forked_child(true, || {
        tracing::dispatcher::with_default(&dispatch, || {
            for i in 0..3 {
                tracing::info!(i, "from the child");
            }
        });
        let start = Instant::now();
        drop(guard.take());
        format!(
            "CHILD written+dropped={} (written {}, dropped {}); guard drop took {:?}",
            stats.lines_written() + stats.lines_dropped(),
            stats.lines_written(),
            stats.lines_dropped(),
            start.elapsed()
        )
    });
    drop(guard);
}

/// The lines a forked child loses through a queue it has no thread for are said on stderr,
/// with the reason and what to do: make the writer after the fork.
#[test]
fn a_forked_child_says_why_its_queued_lines_are_lost() {
    const VAR: &str = "TRACELINE_TEST_FORK_DIAGNOSTIC_CHILD";
    if std::env::var_os(VAR).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_forked_child_says_why_its_queued_lines_are_lost",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(VAR, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr.contains(
                "does not run in this forked child process (make the writer after the fork)"
            ),
            "{stderr}"
        );
        return;
    }
    let cap = Capture::new();
    // The diagnostic on, as by default.
    let (layer, guard) = traceline::layer()
        .with_output(Writer::custom(cap.clone()).non_blocking())
        .unwrap();
    let mut guard = Some(guard);
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let report = report_from_forked_child(false, || {
        tracing::dispatcher::with_default(&dispatch, || {
            for i in 0..3 {
                tracing::info!(i, "from the child");
            }
        });
        drop(guard.take());
        "CHILD done".to_owned()
    });
    assert!(report.contains("CHILD done"), "{report}");
    drop(guard);
}

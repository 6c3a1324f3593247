//! Lines stay whole and counted where the output is shared or unusual: a file taken in pieces
//! while other threads log (the file is locked for the whole line, as standard output is),
//! standard output behind the non-blocking writer while other code prints, a writer that keeps
//! answering `Interrupted`, and a non-blocking writer used in a forked child (which has the
//! queue but not the thread that empties it).

mod common;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use common::{Capture, in_child, output_layer};
use traceline::install::{Rotation, Writer};
use tracing_subscriber::prelude::*;

fn set_fsize(limit: libc::rlim_t) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut r), 0);
        r.rlim_cur = limit;
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &r), 0);
    }
}

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
    // Child process: a file size limit (RLIMIT_FSIZE) makes the file take part of a line, then
    // refuse (EFBIG) until the limit is raised.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let dir = std::env::temp_dir().join(format!("traceline-file-pieces-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (layer, guard) = traceline::layer()
        .log_internal_errors(false)
        .with_output(Writer::file(&dir, "app.log", Rotation::Never))
        .unwrap();
    let stats = layer.stats();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let path = dir.join("app.log");
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("before"));
    let size = std::fs::metadata(&path).unwrap().len();
    set_fsize(size + 10);
    // A: its line is taken 10 bytes, then refused; it retries (for up to 2 s).
    let d = dispatch.clone();
    let a = std::thread::spawn(move || {
        tracing::dispatcher::with_default(&d, || tracing::info!(pad = "a".repeat(200), "A"))
    });
    while std::fs::metadata(&path).unwrap().len() < size + 10 {
        std::thread::yield_now();
    }
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
    set_fsize(libc::RLIM_INFINITY);
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

/// Answers `Interrupted` to every write.
struct AlwaysInterrupted;

impl io::Write for AlwaysInterrupted {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::Interrupted.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_writer_that_keeps_answering_interrupted_does_not_hold_a_logging_call_for_ever() {
    let (layer, _) = output_layer(|| AlwaysInterrupted, false);
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
    let (layer, guard) = output_layer(|| AlwaysInterrupted, true);
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
    let (layer, guard) = output_layer(cap.clone(), true);
    let stats = layer.stats();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let mut fds = [0; 2];
    // SAFETY: a pipe and a fork; the child logs, drops its guard and reports through the pipe.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            libc::close(fds[0]);
            tracing::dispatcher::with_default(&dispatch, || {
                for i in 0..3 {
                    tracing::info!(i, "from the child");
                }
            });
            let start = std::time::Instant::now();
            let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(guard)));
            let msg = format!(
                "CHILD guard drop {} after {:?}; CHILD written+dropped={} (written {}, dropped {}, captured {} bytes)",
                if dropped.is_ok() {
                    "returned"
                } else {
                    "PANICKED"
                },
                start.elapsed(),
                stats.lines_written() + stats.lines_dropped(),
                stats.lines_written(),
                stats.lines_dropped(),
                cap.bytes().len()
            );
            libc::write(fds[1], msg.as_ptr().cast(), msg.len());
            libc::_exit(0);
        }
        libc::close(fds[1]);
        let mut report = String::new();
        File::from_raw_fd(fds[0])
            .read_to_string(&mut report)
            .unwrap();
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        println!("{report}");
        assert!(report.contains("CHILD written+dropped=3"), "{report}");
    }
    drop(guard);
}

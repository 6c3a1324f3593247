//! A `Writer::file` line taken in pieces while the hour turns stays in one file: the rotation
//! happens between lines, never inside one.
//!
//! The wall clock of this test binary is moved forward on demand: `clock_gettime` is defined
//! here (the standard library's reference to it resolves to this definition at link time), and
//! adds `SHIFT` seconds to `CLOCK_REALTIME` (what the file writer rotates by). The monotonic
//! clocks are untouched.
#![cfg(feature = "install")]

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use common::{
    StalledFileLine, in_child, lift_file_size_limit, set_file_size_limit, stall_a_file_line,
};
use traceline::install::Rotation;
use tracing_subscriber::layer::SubscriberExt as _;

static SHIFT: AtomicI64 = AtomicI64::new(0);

thread_local! {
    /// How many times this thread read `CLOCK_REALTIME`.
    static READS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// The read of this thread at which the hour turns (0: none).
    static TURN_AT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// # Safety
/// As `clock_gettime(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn clock_gettime(clock: libc::clockid_t, tp: *mut libc::timespec) -> i32 {
    let r = unsafe { libc::syscall(libc::SYS_clock_gettime, clock, tp) } as i32;
    if r == 0 && clock == libc::CLOCK_REALTIME && !tp.is_null() {
        let read = READS.with(|n| {
            n.set(n.get() + 1);
            n.get()
        });
        if TURN_AT.with(|t| t.get()) == read {
            SHIFT.fetch_add(3600, Ordering::SeqCst);
        }
        unsafe { (*tp).tv_sec += SHIFT.load(Ordering::SeqCst) as libc::time_t };
    }
    r
}

#[test]
fn a_file_line_taken_in_pieces_across_a_rotation_stays_in_one_file() {
    if std::env::var_os("TRACELINE_TEST_ROTATION_CHILD").is_none() {
        in_child(
            "a_file_line_taken_in_pieces_across_a_rotation_stays_in_one_file",
            "TRACELINE_TEST_ROTATION_CHILD",
            "ALL LINES WHOLE",
        );
        return;
    }
    // The clock override works: the wall clock moves, the monotonic one does not.
    let before = std::time::SystemTime::now();
    SHIFT.store(7200, Ordering::SeqCst);
    let moved = std::time::SystemTime::now().duration_since(before).unwrap();
    SHIFT.store(0, Ordering::SeqCst);
    assert!(
        moved >= Duration::from_secs(7200),
        "the clock override is not in effect"
    );

    // Its line is taken 10 bytes, then refused; it retries (for up to 2 s).
    let StalledFileLine {
        dir,
        guard,
        stats,
        line: a,
        ..
    } = stall_a_file_line("traceline-rotation", Rotation::Hourly);
    let files = || -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    std::thread::sleep(Duration::from_millis(20));
    // The hour turns while the line waits for room; then there is room again.
    SHIFT.store(3600, Ordering::SeqCst);
    lift_file_size_limit();
    a.join().unwrap();
    drop(guard);
    let mut report = Vec::new();
    let mut bad = 0;
    for f in files() {
        let text = std::fs::read_to_string(&f).unwrap();
        for l in text.lines() {
            if serde_json::from_str::<serde_json::Value>(l).is_err() {
                bad += 1;
                report.push(format!(
                    "{}: {:?}",
                    f.file_name().unwrap().to_string_lossy(),
                    l.chars().take(80).collect::<String>()
                ));
            }
        }
        if !text.is_empty() && !text.ends_with('\n') {
            bad += 1;
            report.push(format!(
                "{} ends inside a line",
                f.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "written {} dropped {}",
        stats.lines_written(),
        stats.lines_dropped()
    );
    if bad == 0 {
        println!("ALL LINES WHOLE");
    } else {
        println!("BROKEN LINES: {bad}: {report:?}");
    }
}

/// A `Writer::file` line left cut by a lasting failure (a full disk) just before the hour
/// turns is ended in its own file: the older file does not end inside a line, and the newer
/// one does not start with an empty line.
#[test]
fn a_file_line_cut_before_a_rotation_is_ended_in_its_own_file() {
    if std::env::var_os("TRACELINE_TEST_ROTATION_CUT_CHILD").is_none() {
        in_child(
            "a_file_line_cut_before_a_rotation_is_ended_in_its_own_file",
            "TRACELINE_TEST_ROTATION_CUT_CHILD",
            "EVERY FILE ENDS ITS LINES",
        );
        return;
    }
    let StalledFileLine {
        dir,
        dispatch,
        guard,
        stats,
        line: a,
        ..
    } = stall_a_file_line("traceline-rotation-cut", Rotation::Hourly);
    // The file stays full past the 2 s the line is given: it is left cut.
    a.join().unwrap();
    // The hour turns, then there is room again.
    SHIFT.store(3600, Ordering::SeqCst);
    lift_file_size_limit();
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("B"));
    drop(guard);
    two_files_each_ending_its_lines(&dir, &stats);
}

/// A `Writer::file` line left cut by a lasting failure, then the hour turns just as the next
/// line's file is chosen (after the layer read the clock for its timestamp, at the read with
/// which the file is chosen for the newline the cut line is owed): the newer file is opened
/// for that newline, the cut line is ended in its own file, and the newer file does not start
/// with an empty line.
#[test]
fn a_file_line_cut_is_ended_in_its_own_file_when_the_hour_turns_as_the_next_file_is_chosen() {
    if std::env::var_os("TRACELINE_TEST_ROTATION_RACE_CHILD").is_none() {
        in_child(
            "a_file_line_cut_is_ended_in_its_own_file_when_the_hour_turns_as_the_next_file_is_chosen",
            "TRACELINE_TEST_ROTATION_RACE_CHILD",
            "EVERY FILE ENDS ITS LINES",
        );
        return;
    }
    // The clock reads of one line before its file is chosen.
    let plain = tracing::Dispatch::new(
        tracing_subscriber::registry().with(traceline::layer().with_writer(std::io::sink)),
    );
    let start = READS.with(|n| n.get());
    tracing::dispatcher::with_default(&plain, || tracing::info!("B"));
    let per_line = READS.with(|n| n.get()) - start;
    let StalledFileLine {
        dir,
        dispatch,
        guard,
        stats,
        line: a,
        ..
    } = stall_a_file_line("traceline-rotation-race", Rotation::Hourly);
    // The file stays full past the 2 s the line is given: it is left cut.
    a.join().unwrap();
    lift_file_size_limit();
    // The hour turns at the first read of the clock after the line's own: the one the file
    // for the owed newline is chosen with.
    TURN_AT.with(|t| t.set(READS.with(|n| n.get()) + per_line + 1));
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("B"));
    drop(guard);
    two_files_each_ending_its_lines(&dir, &stats);
}

/// A `Writer::file` line left cut by a lasting failure, then the hour turns while the older
/// file still takes nothing and the newer one cannot be made (so the file stays the older
/// one): when there is room again, the next line does not go on the end of the cut one.
#[test]
fn a_file_line_cut_before_a_failed_rotation_is_not_glued_to_the_next_line() {
    if std::env::var_os("TRACELINE_TEST_ROTATION_FAILED_CHILD").is_none() {
        in_child(
            "a_file_line_cut_before_a_failed_rotation_is_not_glued_to_the_next_line",
            "TRACELINE_TEST_ROTATION_FAILED_CHILD",
            "NO LINE GLUED",
        );
        return;
    }
    let StalledFileLine {
        dir,
        path,
        dispatch,
        guard,
        line: a,
        ..
    } = stall_a_file_line("traceline-rotation-failed", Rotation::Hourly);
    // The file stays full past the 2 s the line is given: it is left cut.
    a.join().unwrap();
    SHIFT.store(3600, Ordering::SeqCst);
    // The newer file cannot be made: a directory has its name.
    let hour = time::format_description::parse("[year]-[month]-[day]-[hour]").unwrap();
    let newer = format!(
        "app.log.{}",
        time::OffsetDateTime::now_utc().format(&hour).unwrap()
    );
    std::fs::create_dir(dir.join(&newer)).unwrap();
    // Still full: this line is dropped.
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("B"));
    lift_file_size_limit();
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("C"));
    drop(guard);
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let c = text
        .lines()
        .find(|l| l.contains(r#""message":"C""#))
        .expect("C is in the file");
    if serde_json::from_str::<serde_json::Value>(c).is_ok() {
        println!("NO LINE GLUED");
    } else {
        println!("C is glued: {c:?}");
    }
}

/// The hour turns at the very read of the clock a line's file is chosen with, after the line's
/// timestamp was read: the line goes to the newer file. Left cut there by a lasting failure, it
/// is ended in that file; the older file ends its lines too.
#[test]
fn a_file_line_cut_in_the_file_chosen_as_the_hour_turns_is_ended_in_its_own_file() {
    if std::env::var_os("TRACELINE_TEST_ROTATION_CHOSEN_CHILD").is_none() {
        in_child(
            "a_file_line_cut_in_the_file_chosen_as_the_hour_turns_is_ended_in_its_own_file",
            "TRACELINE_TEST_ROTATION_CHOSEN_CHILD",
            "EVERY FILE ENDS ITS LINES",
        );
        return;
    }
    // SAFETY: ignoring a signal; this is a child process of a test.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let dir =
        std::env::temp_dir().join(format!("traceline-rotation-chosen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (layer, guard) = traceline::layer()
        .log_internal_errors(false)
        .with_output(traceline::install::Writer::file(
            &dir,
            "app.log",
            Rotation::Hourly,
        ))
        .unwrap();
    let stats = layer.stats();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("before"));
    let path = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let size = std::fs::metadata(&path).unwrap().len();
    let plain = tracing::Dispatch::new(
        tracing_subscriber::registry().with(traceline::layer().with_writer(std::io::sink)),
    );
    let d = dispatch.clone();
    std::thread::spawn(move || {
        // The clock reads of one line before its file is chosen, on this thread.
        tracing::dispatcher::with_default(&plain, || tracing::info!("warm"));
        tracing::dispatcher::with_default(&d, || tracing::info!("warm"));
        let start = READS.with(|n| n.get());
        tracing::dispatcher::with_default(&plain, || tracing::info!("B"));
        let per_line = READS.with(|n| n.get()) - start;
        // The file takes 10 more bytes of the next line, then refuses the rest for longer
        // than the 2 s the line is given: it is left cut.
        let taken = std::fs::metadata(&path).unwrap().len();
        set_file_size_limit(taken + 10);
        // The hour turns at the read of the clock the file is chosen with: the one after the
        // line's own.
        TURN_AT.with(|t| t.set(READS.with(|n| n.get()) + per_line + 1));
        tracing::dispatcher::with_default(&d, || tracing::info!(pad = "a".repeat(200), "A"));
    })
    .join()
    .unwrap();
    assert!(size > 0);
    lift_file_size_limit();
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("B"));
    drop(guard);
    let (files, report) = files_and_broken_lines(&dir);
    assert_eq!(
        (stats.lines_written(), stats.lines_dropped()),
        (3, 1),
        "before, warm and B written; A cut"
    );
    assert_eq!(files.len(), 2, "{files:?}");
    if report.is_empty() {
        println!("EVERY FILE ENDS ITS LINES");
    } else {
        println!("{report:?}");
    }
}

/// The clock set back across an hour keeps the newer file: a rotation goes forward only.
#[test]
fn a_clock_set_back_keeps_the_newer_file() {
    if std::env::var_os("TRACELINE_TEST_ROTATION_BACK_CHILD").is_none() {
        in_child(
            "a_clock_set_back_keeps_the_newer_file",
            "TRACELINE_TEST_ROTATION_BACK_CHILD",
            "FORWARD ONLY",
        );
        return;
    }
    let (dir, dispatch, guard) = hourly_file("traceline-rotation-back");
    let log = |m: &str| tracing::dispatcher::with_default(&dispatch, || tracing::info!("{m}"));
    log("before");
    SHIFT.store(3600, Ordering::SeqCst);
    log("B");
    SHIFT.store(0, Ordering::SeqCst);
    log("C");
    drop((dispatch, guard));
    let files = messages_by_file(&dir);
    assert_eq!(
        files.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
        [vec!["before"], vec!["B", "C"]],
        "{files:?}"
    );
    println!("FORWARD ONLY");
}

/// The newer file cannot be made as the hour turns (a directory has its name): lines go on into
/// the older one; once the name is free, a later line makes the newer file.
#[test]
fn a_newer_file_that_could_not_be_made_is_made_later() {
    if std::env::var_os("TRACELINE_TEST_ROTATION_RETRY_CHILD").is_none() {
        in_child(
            "a_newer_file_that_could_not_be_made_is_made_later",
            "TRACELINE_TEST_ROTATION_RETRY_CHILD",
            "MADE LATER",
        );
        return;
    }
    let (dir, dispatch, guard) = hourly_file("traceline-rotation-retry");
    let log = |m: &str| tracing::dispatcher::with_default(&dispatch, || tracing::info!("{m}"));
    log("before");
    SHIFT.store(3600, Ordering::SeqCst);
    let blocked = dir.join(format!("app.log.{}", hour_name()));
    std::fs::create_dir(&blocked).unwrap();
    log("B");
    std::fs::remove_dir(&blocked).unwrap();
    // Tried again at most every 0.1 s.
    std::thread::sleep(Duration::from_millis(150));
    log("C");
    drop((dispatch, guard));
    let files = messages_by_file(&dir);
    assert_eq!(
        files.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
        [vec!["before", "B"], vec!["C"]],
        "{files:?}"
    );
    println!("MADE LATER");
}

/// A line left cut by a lasting failure, then the file is renamed (as `logrotate` does): the
/// cut line is ended in the renamed file, and the file made again under the name does not start
/// with an empty line.
#[test]
fn a_file_line_cut_before_the_file_is_renamed_is_ended_in_the_renamed_file() {
    if std::env::var_os("TRACELINE_TEST_RENAME_CUT_CHILD").is_none() {
        in_child(
            "a_file_line_cut_before_the_file_is_renamed_is_ended_in_the_renamed_file",
            "TRACELINE_TEST_RENAME_CUT_CHILD",
            "EVERY FILE ENDS ITS LINES",
        );
        return;
    }
    let StalledFileLine {
        dir,
        path,
        dispatch,
        guard,
        stats,
        line: a,
    } = stall_a_file_line("traceline-rename-cut", Rotation::Never);
    // The file stays full past the 2 s the line is given: it is left cut.
    a.join().unwrap();
    std::fs::rename(&path, dir.join("app.log.1")).unwrap();
    lift_file_size_limit();
    std::thread::sleep(Duration::from_millis(150));
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("B"));
    drop(guard);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(r#""message":"B""#) && text.lines().count() == 1,
        "{text:?}"
    );
    two_files_each_ending_its_lines(&dir, &stats);
}

/// An hourly `Writer::file` in a fresh directory named after `name`.
fn hourly_file(
    name: &str,
) -> (
    std::path::PathBuf,
    tracing::Dispatch,
    traceline::install::OutputGuard,
) {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (layer, guard) = traceline::layer()
        .with_output(traceline::install::Writer::file(
            &dir,
            "app.log",
            Rotation::Hourly,
        ))
        .unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    (dir, dispatch, guard)
}

/// The hour of the (shifted) wall clock, as the hourly files are named.
fn hour_name() -> String {
    let hour = time::format_description::parse("[year]-[month]-[day]-[hour]").unwrap();
    time::OffsetDateTime::now_utc().format(&hour).unwrap()
}

/// The files in `dir` (sorted by name, then removed with it), each with its lines' messages.
fn messages_by_file(dir: &std::path::Path) -> Vec<(String, Vec<String>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let out = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            (
                f.file_name().unwrap().to_string_lossy().into_owned(),
                common::messages(&text),
            )
        })
        .collect();
    let _ = std::fs::remove_dir_all(dir);
    out
}

/// After a line cut before the hour turned and one written after: A cut, B written, in two
/// files; the child's marker says whether each file ends its lines (the parent checks it).
fn two_files_each_ending_its_lines(dir: &std::path::Path, stats: &traceline::Stats) {
    let (files, report) = files_and_broken_lines(dir);
    assert_eq!(
        (stats.lines_written(), stats.lines_dropped()),
        (2, 1),
        "before, B written; A cut"
    );
    assert_eq!(files.len(), 2, "{files:?}");
    if report.is_empty() {
        println!("EVERY FILE ENDS ITS LINES");
    } else {
        println!("{report:?}");
    }
}

/// The files in `dir` (sorted, then removed with it), and what is wrong with their lines: a
/// file that ends inside a line, or holds an empty one.
fn files_and_broken_lines(dir: &std::path::Path) -> (Vec<std::path::PathBuf>, Vec<String>) {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut report = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if !text.ends_with('\n') {
            report.push(format!("{name} ends inside a line: {text:?}"));
        }
        if text.lines().any(str::is_empty) {
            report.push(format!("{name} has an empty line: {text:?}"));
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    (files, report)
}

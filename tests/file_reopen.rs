//! A `Writer::file` file removed or renamed while the program runs is made again under its name
//! by the first line logged 0.1 s or more after its name was last checked, and no line is lost
//! on the way: by `rm`, by a rename, by a rename with a new file put in its place, by removing
//! the whole directory, and by the real `logrotate` in its default mode (`create`, no
//! `postrotate` script). Also: a relative directory stays where it was when the working
//! directory changes, a file left ending inside a line is ended before the first new line, a
//! flush makes no file, and a file that cannot be made again is said on stderr.
//!
//! The `logrotate` test needs `logrotate` (Debian package `logrotate`; `.ci/run` installs it).
#![cfg(feature = "install")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use traceline::install::{Rotation, Writer};
use tracing_subscriber::layer::SubscriberExt as _;

/// A layer writing to a file in a directory of its own, removed at the end.
struct LogFile {
    dir: PathBuf,
    dispatch: Option<tracing::Dispatch>,
    guard: Option<traceline::install::OutputGuard>,
    stats: traceline::Stats,
}

impl LogFile {
    fn new(name: &str, rotation: Rotation, non_blocking: bool) -> LogFile {
        LogFile::build(name, rotation, non_blocking, true)
    }

    /// [`LogFile::new`], saying the output's own errors on stderr when `report`.
    fn build(name: &str, rotation: Rotation, non_blocking: bool, report: bool) -> LogFile {
        let dir = std::env::temp_dir().join(format!("traceline-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut writer = Writer::file(&dir, "app.log", rotation);
        if non_blocking {
            writer = writer.non_blocking();
        }
        let (layer, guard) = traceline::layer()
            .log_internal_errors(report)
            .with_output(writer)
            .expect("writer built");
        let stats = layer.stats();
        LogFile {
            dispatch: Some(tracing::Dispatch::new(
                tracing_subscriber::registry().with(layer),
            )),
            guard: Some(guard),
            stats,
            dir,
        }
    }

    fn log(&self, message: &str) {
        tracing::dispatcher::with_default(self.dispatch.as_ref().unwrap(), || {
            tracing::info!("{message}")
        });
    }

    /// Waits until `n` lines went out (through a non-blocking output's queue).
    fn wait_written(&self, n: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.stats.lines_written() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{n} lines never went out"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Lets the output finish (the queue of a non-blocking one) and closes the file.
    fn close(&mut self) {
        self.dispatch.take();
        self.guard.take();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The files in the directory, by name.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        self.close();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The messages of the lines in `path`, in order (each line checked: one JSON object, no
/// duplicate key).
fn messages(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    common::messages(&text)
}

/// Waits past the next check of the file's name (at most every 0.1 s, on a line).
fn past_the_check() {
    std::thread::sleep(Duration::from_millis(150));
}

#[test]
fn a_removed_log_file_is_made_again_on_a_line_after_the_check() {
    let mut log = LogFile::new("reopen-removed", Rotation::Never, false);
    log.log("one");
    std::fs::remove_file(log.path("app.log")).unwrap();
    past_the_check();
    log.log("two");
    log.log("three");
    log.close();
    assert_eq!(log.names(), ["app.log"]);
    assert_eq!(messages(&log.path("app.log")), ["two", "three"]);
    assert_eq!(
        (log.stats.lines_written(), log.stats.lines_dropped()),
        (3, 0)
    );
}

#[test]
fn a_renamed_log_file_keeps_its_lines_and_a_new_one_takes_the_next() {
    let mut log = LogFile::new("reopen-renamed", Rotation::Never, false);
    log.log("one");
    std::fs::rename(log.path("app.log"), log.path("app.log.1")).unwrap();
    past_the_check();
    log.log("two");
    log.close();
    assert_eq!(log.names(), ["app.log", "app.log.1"]);
    assert_eq!(messages(&log.path("app.log.1")), ["one"]);
    assert_eq!(messages(&log.path("app.log")), ["two"]);
}

/// What `logrotate`'s `create` does by hand: the file renamed, an empty one made in its place.
/// The name still exists, but names another file: the lines go to the new one.
#[test]
fn a_file_put_in_place_of_a_renamed_log_file_gets_the_next_lines() {
    let mut log = LogFile::new("reopen-replaced", Rotation::Never, false);
    log.log("one");
    std::fs::rename(log.path("app.log"), log.path("app.log.1")).unwrap();
    std::fs::File::create(log.path("app.log")).unwrap();
    past_the_check();
    log.log("two");
    log.close();
    assert_eq!(messages(&log.path("app.log.1")), ["one"]);
    assert_eq!(messages(&log.path("app.log")), ["two"]);
}

#[test]
fn a_removed_log_directory_is_made_again_with_its_file() {
    let mut log = LogFile::new("reopen-dir", Rotation::Never, false);
    log.log("one");
    std::fs::remove_dir_all(&log.dir).unwrap();
    past_the_check();
    log.log("two");
    log.close();
    assert_eq!(messages(&log.path("app.log")), ["two"]);
    assert_eq!(
        (log.stats.lines_written(), log.stats.lines_dropped()),
        (2, 0)
    );
}

/// An hourly file is made again under its own name (the hour's), from the non-blocking
/// output's background thread.
#[test]
fn a_removed_hourly_file_is_made_again_by_the_non_blocking_output() {
    let hour = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 3600
    };
    let before = hour();
    let mut log = LogFile::new("reopen-hourly", Rotation::Hourly, true);
    log.log("one");
    // Through the queue: the file holds the line before it is removed.
    log.wait_written(1);
    let names = log.names();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("app.log.20"), "{names:?}");
    std::fs::remove_file(log.path(&names[0])).unwrap();
    past_the_check();
    log.log("two");
    log.close();
    let after = log.names();
    if hour() == before {
        // The same hour's name (rotation did not make this file).
        assert_eq!(after, names);
    }
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(messages(&log.path(&after[0])), ["two"]);
    assert_eq!(
        (log.stats.lines_written(), log.stats.lines_dropped()),
        (2, 0)
    );
}

/// The real `logrotate`, in its default mode (`create`: the file renamed, a new empty one made
/// in its place), compressing with `delaycompress` as the README shows, and with no
/// `postrotate` script to signal the program. A line logged just after the rotation goes to one
/// of the two files, never nowhere; once the name is checked, lines go to the new file.
#[test]
fn logrotate_without_copytruncate_loses_no_line() {
    let Some(logrotate) = common::find_tool("logrotate") else {
        return common::missing_tool("logrotate", "run `apt-get install -y logrotate`");
    };
    let mut log = LogFile::new("reopen-logrotate", Rotation::Never, false);
    log.log("one");
    let conf = log.path("logrotate.conf");
    std::fs::write(
        &conf,
        format!(
            "{} {{\n    rotate 3\n    create\n    compress\n    delaycompress\n    missingok\n}}\n",
            log.path("app.log").display()
        ),
    )
    .unwrap();
    let rotate = || {
        let out = Command::new(&logrotate)
            .arg("-f")
            .arg("-s")
            .arg(log.path("logrotate.state"))
            .arg(&conf)
            .output()
            .expect("logrotate runs");
        assert!(
            out.status.success(),
            "logrotate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    rotate();
    // Right after the rotation: to the rotated file, or to the new one if the name was
    // checked.
    log.log("between");
    past_the_check();
    log.log("two");
    log.log("three");
    // Once more: the new file is rotated in turn.
    rotate();
    past_the_check();
    log.log("four");
    log.close();
    assert_eq!(
        log.names(),
        [
            "app.log",
            "app.log.1",
            "app.log.2.gz",
            "logrotate.conf",
            "logrotate.state"
        ]
    );
    let (older, newer, now) = (
        gz_messages(&log.path("app.log.2.gz")),
        messages(&log.path("app.log.1")),
        messages(&log.path("app.log")),
    );
    let all: Vec<&str> = older.iter().chain(&newer).map(String::as_str).collect();
    assert!(
        all == ["one", "between", "two", "three"],
        "every line once, in order: {older:?} then {newer:?}"
    );
    assert!(newer.ends_with(&["two".to_string(), "three".to_string()]));
    assert_eq!(older[0], "one");
    assert_eq!(now, ["four"]);
    assert_eq!(
        (log.stats.lines_written(), log.stats.lines_dropped()),
        (5, 0)
    );
}

/// The messages of the lines in a gzip file `logrotate` compressed.
fn gz_messages(path: &Path) -> Vec<String> {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    common::messages(&text)
}

/// Runs this binary's test `name` alone in a child process with `var` set; returns its stdout
/// and stderr (the child checks what it can, the parent what the child said on stderr).
fn child(name: &str, var: &str) -> (String, String) {
    child_with(name, &[(var, "1")])
}

/// [`child`], with the environment variables `vars` set.
fn child_with(name: &str, vars: &[(&str, &str)]) -> (String, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "child failed: {stdout}\n{stderr}");
    (stdout, stderr)
}

/// A relative directory is the one of the working directory when the writer was built: a
/// daemon that changes directory (to `/`, say) keeps its file, checked and made again there.
/// (In a child process: the working directory is the whole process's.)
#[test]
fn a_relative_log_directory_stays_put_when_the_working_directory_changes() {
    const VAR: &str = "TRACELINE_TEST_REOPEN_CHDIR_CHILD";
    let name = "a_relative_log_directory_stays_put_when_the_working_directory_changes";
    if std::env::var_os(VAR).is_none() {
        let (stdout, _) = child(name, VAR);
        assert!(stdout.contains("STAYED PUT"), "{stdout}");
        return;
    }
    let root = std::env::temp_dir().join(format!("traceline-reopen-chdir-{}", std::process::id()));
    let (a, b) = (root.join("a"), root.join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    std::env::set_current_dir(&a).unwrap();
    let (layer, guard) = traceline::layer()
        .with_output(Writer::file("logs", "app.log", Rotation::Never))
        .unwrap();
    // An empty directory: the working directory (`Path::new("app.log").parent()`).
    let (here, here_guard) = traceline::layer()
        .with_output(Writer::file("", "here.log", Rotation::Never))
        .unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer).with(here));
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("one"));
    std::env::set_current_dir(&b).unwrap();
    past_the_check();
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("two"));
    // Removed while the working directory is elsewhere: made again where it was.
    std::fs::remove_file(a.join("logs/app.log")).unwrap();
    past_the_check();
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("three"));
    drop((dispatch, guard, here_guard));
    assert!(!b.join("logs").exists(), "a second directory was made");
    assert!(!b.join("here.log").exists(), "a second file was made");
    assert_eq!(messages(&a.join("logs/app.log")), ["three"]);
    assert_eq!(messages(&a.join("here.log")), ["one", "two", "three"]);
    std::env::set_current_dir(std::env::temp_dir()).unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    println!("STAYED PUT");
}

/// A file an earlier run left ending inside a line (cut by a full disk, then the program
/// stopped): that line is ended before the first new one, which is not glued to it.
#[test]
fn a_file_left_ending_inside_a_line_is_ended_before_the_first_new_line() {
    let dir = std::env::temp_dir().join(format!("traceline-reopen-cut-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app.log"), "{\"message\":\"cut").unwrap();
    let (layer, guard) = traceline::layer()
        .with_output(Writer::file(&dir, "app.log", Rotation::Never))
        .unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("one"));
    drop((dispatch, guard));
    let text = std::fs::read_to_string(dir.join("app.log")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let (cut, rest) = text.split_once('\n').expect("the cut line ended");
    assert_eq!(cut, "{\"message\":\"cut");
    let lines = common::split_lines(rest);
    assert_eq!(lines.len(), 1, "{text:?}");
    assert_eq!(common::check_line(&lines[0]).str("message"), "one");
}

/// The non-blocking output's shutdown flushes the file: after an `rm`, that makes no new, empty
/// file (a file is made for a line, not for a flush).
#[test]
fn a_flush_after_the_file_was_removed_makes_no_file() {
    let mut log = LogFile::new("reopen-flush", Rotation::Never, true);
    log.log("one");
    log.wait_written(1);
    std::fs::remove_file(log.path("app.log")).unwrap();
    past_the_check();
    log.close();
    assert_eq!(log.names(), Vec::<String>::new());
}

/// A file that cannot be made again (a directory took its name): the lines go on into the
/// file the layer has, nothing is lost, stderr says so once (and not at all with
/// `log_internal_errors(false)`); once the name is free, the file is made on a later line.
#[test]
fn a_file_that_cannot_be_made_again_is_said_once_and_lines_go_on() {
    const VAR: &str = "TRACELINE_TEST_REOPEN_FAIL_CHILD";
    const QUIET: &str = "TRACELINE_TEST_REOPEN_FAIL_QUIET";
    let name = "a_file_that_cannot_be_made_again_is_said_once_and_lines_go_on";
    if std::env::var_os(VAR).is_none() {
        let (stdout, stderr) = child(name, VAR);
        assert!(stdout.contains("LINES WENT ON"), "{stdout}");
        let said: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("cannot open the log file"))
            .collect();
        assert_eq!(said.len(), 1, "{stderr}");
        assert!(
            said[0].contains("app.log")
                && said[0].contains("the file that had that name (renamed or removed)")
                && said[0].contains("until it can be opened"),
            "{stderr}"
        );
        let (stdout, stderr) = child_with(name, &[(VAR, "1"), (QUIET, "1")]);
        assert!(stdout.contains("LINES WENT ON"), "{stdout}");
        assert!(!stderr.contains("cannot open the log file"), "{stderr}");
        return;
    }
    let report = std::env::var_os(QUIET).is_none();
    let mut log = LogFile::build("reopen-fail", Rotation::Never, false, report);
    log.log("one");
    std::fs::rename(log.path("app.log"), log.path("app.log.1")).unwrap();
    std::fs::create_dir(log.path("app.log")).unwrap();
    // Several checks fail: said once.
    for message in ["two", "three", "four"] {
        past_the_check();
        log.log(message);
    }
    std::fs::remove_dir(log.path("app.log")).unwrap();
    past_the_check();
    log.log("five");
    log.close();
    assert_eq!(
        messages(&log.path("app.log.1")),
        ["one", "two", "three", "four"]
    );
    assert_eq!(messages(&log.path("app.log")), ["five"]);
    assert_eq!(
        (log.stats.lines_written(), log.stats.lines_dropped()),
        (5, 0)
    );
    println!("LINES WENT ON");
}

/// A FIFO as the log file, whose reader read a little and left: lines are dropped and counted,
/// and logging goes on; it never waits for room that no reader will make.
#[cfg(unix)]
#[test]
fn a_fifo_whose_reader_left_drops_lines_instead_of_blocking() {
    let dir = std::env::temp_dir().join(format!("traceline-reopen-fifo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("app.log");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let reader = std::thread::spawn({
        let fifo = fifo.clone();
        move || {
            use std::io::Read;
            let mut r = std::fs::File::open(fifo).unwrap();
            let mut some = [0u8; 64];
            r.read_exact(&mut some).unwrap();
        }
    });
    let (dispatch, stats, guard) = quiet_file_subscriber(&dir);
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tracing::dispatcher::with_default(&dispatch, || {
            for i in 0..5000 {
                tracing::info!(i, pad = "x".repeat(100), "line");
            }
        });
        let _ = done.send(());
    });
    reader.join().unwrap();
    finished
        .recv_timeout(Duration::from_secs(60))
        .expect("logging into a FIFO whose reader left never returned");
    drop(guard);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(stats.lines_written() + stats.lines_dropped(), 5000);
    assert!(stats.lines_dropped() > 4000, "{}", stats.lines_dropped());
}

/// A subscriber whose traceline layer writes `dir/app.log` (never rotated, no diagnostics on
/// stderr): its dispatch, the layer's counts, and the file output's guard.
fn quiet_file_subscriber(
    dir: &Path,
) -> (
    tracing::Dispatch,
    traceline::Stats,
    traceline::install::OutputGuard,
) {
    let (layer, guard) = traceline::layer()
        .log_internal_errors(false)
        .with_output(Writer::file(dir, "app.log", Rotation::Never))
        .unwrap();
    let stats = layer.stats();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    (dispatch, stats, guard)
}

/// A file left ending inside a line (an earlier run's last line, cut) that cannot be ended when
/// it is opened (the disk is still full) is ended before the first line written once there is
/// room again: that line is not glued to the cut one.
#[test]
fn a_cut_file_opened_on_a_full_disk_is_ended_before_the_first_line_written_later() {
    const NAME: &str =
        "a_cut_file_opened_on_a_full_disk_is_ended_before_the_first_line_written_later";
    const VAR: &str = "TRACELINE_TEST_CUT_FULL_CHILD";
    if std::env::var_os(VAR).is_none() {
        common::in_child(NAME, VAR, "THE CUT LINE IS ENDED");
        return;
    }
    // SAFETY: ignoring a signal; this is a child process of a test.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let dir = std::env::temp_dir().join(format!("traceline-cut-full-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cut = "{\"message\":\"cut";
    std::fs::write(dir.join("app.log"), cut).unwrap();
    // The file can take no byte more: a full disk, as far as the writer can tell.
    common::set_file_size_limit(cut.len() as libc::rlim_t);
    let (dispatch, stats, guard) = quiet_file_subscriber(&dir);
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("lost while full"));
    common::lift_file_size_limit();
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("one"));
    drop((dispatch, guard));
    let text = std::fs::read_to_string(dir.join("app.log")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!((stats.lines_written(), stats.lines_dropped()), (1, 1));
    let (first, rest) = text.split_once('\n').expect("a newline");
    assert_eq!(first, cut, "the new line is glued to the cut one: {text:?}");
    let line: serde_json::Value = serde_json::from_str(rest.trim_end()).unwrap();
    assert_eq!(line["message"], "one");
    assert_eq!(rest.matches('\n').count(), 1, "{text:?}");
    println!("THE CUT LINE IS ENDED");
}

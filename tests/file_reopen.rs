//! A `Writer::file` file removed or renamed while the program runs is made again under its name,
//! from the first line of the next second on, and no line is lost on the way: by `rm`, by a
//! rename, by a rename with a new file put in its place, by removing the whole directory, and by
//! the real `logrotate` in its default mode (`create`, no `postrotate` script).
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
        let dir = std::env::temp_dir().join(format!("traceline-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut writer = Writer::file(&dir, "app.log", rotation);
        if non_blocking {
            writer = writer.non_blocking();
        }
        let (layer, guard) = traceline::layer()
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
    common::split_lines(&text)
        .iter()
        .map(|l| common::check_line(l).str("message").to_string())
        .collect()
}

/// Waits until the wall clock is in a later second than now: the file's name is checked on
/// the first line of each second.
fn next_second() {
    let secs = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let now = secs();
    while secs() == now {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_removed_log_file_is_made_again_by_the_next_seconds_first_line() {
    let mut log = LogFile::new("reopen-removed", Rotation::Never, false);
    log.log("one");
    std::fs::remove_file(log.path("app.log")).unwrap();
    next_second();
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
fn a_renamed_log_file_keeps_its_lines_and_a_new_one_takes_the_next_seconds() {
    let mut log = LogFile::new("reopen-renamed", Rotation::Never, false);
    log.log("one");
    std::fs::rename(log.path("app.log"), log.path("app.log.1")).unwrap();
    next_second();
    log.log("two");
    log.close();
    assert_eq!(log.names(), ["app.log", "app.log.1"]);
    assert_eq!(messages(&log.path("app.log.1")), ["one"]);
    assert_eq!(messages(&log.path("app.log")), ["two"]);
}

/// What `logrotate`'s `create` does by hand: the file renamed, an empty one made in its place.
/// The name still exists, but names another file: the lines go to the new one.
#[test]
fn a_file_put_in_place_of_a_renamed_log_file_gets_the_next_seconds_lines() {
    let mut log = LogFile::new("reopen-replaced", Rotation::Never, false);
    log.log("one");
    std::fs::rename(log.path("app.log"), log.path("app.log.1")).unwrap();
    std::fs::File::create(log.path("app.log")).unwrap();
    next_second();
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
    next_second();
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
    let mut log = LogFile::new("reopen-hourly", Rotation::Hourly, true);
    log.log("one");
    // Through the queue: the file holds the line before it is removed.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log.stats.lines_written() < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first line never went out"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let names = log.names();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("app.log.20"), "{names:?}");
    std::fs::remove_file(log.path(&names[0])).unwrap();
    next_second();
    log.log("two");
    log.close();
    let after = log.names();
    assert_eq!(after.len(), 1, "{after:?}");
    // The same hour's name, unless the hour turned meanwhile.
    assert!(after[0].starts_with("app.log.20"), "{after:?}");
    assert_eq!(messages(&log.path(&after[0])), ["two"]);
    assert_eq!(
        (log.stats.lines_written(), log.stats.lines_dropped()),
        (2, 0)
    );
}

/// The real `logrotate`, in its default mode (`create`: the file renamed, a new empty one made
/// in its place) and with no `postrotate` script to signal the program. A line logged just
/// after the rotation goes to one of the two files, never nowhere; from the next second on,
/// lines go to the new file.
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
            "{} {{\n    rotate 3\n    create\n    missingok\n}}\n",
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
    // Right after the rotation: to the rotated file, or to the new one if a second began.
    log.log("between");
    next_second();
    log.log("two");
    log.log("three");
    // Once more: the new file is rotated in turn.
    rotate();
    next_second();
    log.log("four");
    log.close();
    assert_eq!(
        log.names(),
        [
            "app.log",
            "app.log.1",
            "app.log.2",
            "logrotate.conf",
            "logrotate.state"
        ]
    );
    let (older, newer, now) = (
        messages(&log.path("app.log.2")),
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

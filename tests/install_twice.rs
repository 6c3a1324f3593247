//! One process, one install: `init()` twice is an error, not a panic (also from two threads at
//! once, raced in child processes); and `log` records come out
//! as lines inside the current span, filtered by the same filter.
#![cfg(feature = "install")]

mod common;

use traceline::InitError;
use traceline::install::Writer;

#[test]
fn second_init_is_an_error_and_log_records_become_lines() {
    let buf = common::Capture::new();
    let _guard = traceline::builder()
        .writer(Writer::custom(buf.clone()))
        .filter("info")
        .try_init()
        .expect("first install");

    let second = traceline::init();
    assert!(
        matches!(second, Err(InitError::AlreadyInstalled)),
        "{second:?}"
    );
    let err = second.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("already set") && msg.contains("once"), "{msg}");
    // `main` returning the error prints its `Debug` form: the same advice, not a variant name.
    assert_eq!(format!("{err:?}"), msg);
    assert!(matches!(
        traceline::builder().log_bridge(false).try_init(),
        Err(InitError::AlreadyInstalled)
    ));

    let span = tracing::info_span!("request");
    let entered = span.enter();
    log::info!(target: "dependency::module", "from the log crate");
    log::debug!(target: "dependency::module", "filtered out");
    drop(entered);

    let text = buf.text();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &serde_json::Value| l["message"] == "from the log crate")
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    let line = &lines[0];
    assert!(
        line.get("traceId").is_some(),
        "log records carry the span's ids: {line}"
    );
    assert!(!text.contains("filtered out"));
    assert!(line.get("log.target").is_none() && line.get("log.file").is_none());
}

/// Two threads calling `init()` at the same moment: one installs, the other is told the
/// subscriber is already set (not that another `log` logger is). Each race runs in a child
/// process of its own, as a process installs once.
#[test]
fn two_threads_installing_at_once_get_one_install_and_already_installed() {
    if std::env::var_os("TRACELINE_RACE_CHILD").is_some() {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    traceline::builder()
                        .writer(Writer::custom(common::Capture::new()))
                        .try_init()
                })
            })
            .collect();
        let results: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        let installed = results.iter().filter(|r| r.is_ok()).count();
        let already = results
            .iter()
            .filter(|r| matches!(r, Err(InitError::AlreadyInstalled)))
            .count();
        let errors: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().err().map(ToString::to_string))
            .collect();
        println!("\nRACE installed={installed} already={already} {errors:?}");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for _ in 0..20 {
        let out = std::process::Command::new(&exe)
            .args([
                "--exact",
                "two_threads_installing_at_once_get_one_install_and_already_installed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TRACELINE_RACE_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let race = stdout
            .lines()
            .find(|l| l.starts_with("RACE "))
            .unwrap_or_else(|| panic!("no result from the child: {stdout}"));
        assert!(race.starts_with("RACE installed=1 already=1 "), "{race}");
    }
}

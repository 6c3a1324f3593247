//! One process, one test: `init()` twice is an error, not a panic; and `log` records come out
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
    let msg = second.unwrap_err().to_string();
    assert!(msg.contains("already set") && msg.contains("once"), "{msg}");
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

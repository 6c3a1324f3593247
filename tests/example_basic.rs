//! `examples/basic.rs` prints lines that real `jq` accepts, and the lines logged inside its spans
//! share one trace id.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{Json, check_line, split_lines};

/// Messages the example logs inside its spans.
const IN_SPANS: [&str; 4] = [
    "order created",
    "inserted order",
    "retrying payment\nwith a second line in the message",
    "payment failed",
];

/// The example binary next to this test binary (`target/<profile>/deps/<test>` →
/// `target/<profile>/examples/basic`), built first if `cargo test` did not build it.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let profile_dir = deps.parent().unwrap();
    let bin = profile_dir
        .join("examples")
        .join(format!("basic{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--example", "basic", "--manifest-path"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .arg("--target-dir")
            .arg(profile_dir.parent().unwrap());
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build --example basic");
        assert!(status.success(), "cargo build --example basic failed");
    }
    assert!(
        bin.exists(),
        "example binary not found at {}",
        bin.display()
    );
    bin
}

fn jq(filter: &str, input: &[u8]) -> String {
    let mut child = Command::new("jq")
        .args(["-c", filter])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("jq must be installed");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "jq {filter:?} rejected the input: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn example_output_piped_through_jq_select() {
    if !common::tool_installed("jq", "--version") {
        return common::missing_tool("jq", "run `apt-get install -y jq`");
    }
    let mut example = Command::new(example_binary())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let jq = Command::new("jq")
        .args(["-c", "select(.traceId != null)"])
        .stdin(Stdio::from(example.stdout.take().unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("jq must be installed");
    let out = jq.wait_with_output().unwrap();
    assert!(example.wait().unwrap().success(), "the example failed");
    assert!(
        out.status.success(),
        "jq rejected the example's output: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let selected = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Json> = split_lines(&selected)
        .iter()
        .map(|l| check_line(l))
        .collect();
    assert_eq!(lines.len(), IN_SPANS.len(), "{selected}");
    let mut messages: Vec<&str> = lines.iter().map(|l| l.str("message")).collect();
    messages.sort_unstable();
    let mut expected = IN_SPANS;
    expected.sort_unstable();
    assert_eq!(messages, expected);
    let trace_id = lines[0].str("traceId");
    assert_eq!(trace_id.len(), 32);
    assert!(
        trace_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_ne!(trace_id, "0".repeat(32));
    for line in &lines {
        assert_eq!(line.str("traceId"), trace_id, "one trace: {selected}");
        assert_eq!(line.str("spanId").len(), 16);
        assert_eq!(line.str("traceFlags"), "01");
    }
}

#[test]
fn every_line_of_the_example_is_valid() {
    if !common::tool_installed("jq", "--version") {
        return common::missing_tool("jq", "run `apt-get install -y jq`");
    }
    let out = Command::new(example_binary()).output().unwrap();
    assert!(out.status.success(), "the example failed: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let all = jq(".", text.as_bytes());
    assert_eq!(split_lines(&all).len(), split_lines(&text).len());

    let lines: Vec<Json> = split_lines(&text).iter().map(|l| check_line(l)).collect();
    assert_eq!(lines.len(), IN_SPANS.len() + 1, "{text}");
    let outside: Vec<&Json> = lines.iter().filter(|l| !l.has("traceId")).collect();
    assert_eq!(outside.len(), 1, "{text}");
    assert!(!outside[0].has("spanId") && !outside[0].has("traceFlags"));
    for line in &lines {
        assert_eq!(line.str("service.name"), "orders");
        assert!(line.has("service.version"));
    }

    let by_message = |m: &str| {
        lines
            .iter()
            .find(|l| l.str("message") == m)
            .unwrap_or_else(|| panic!("no line {m:?} in {text}"))
    };
    let order = by_message("order created");
    let db = by_message("inserted order");
    let failed = by_message("payment failed");
    assert_eq!(order.str("spanId"), failed.str("spanId"));
    assert_ne!(order.str("spanId"), db.str("spanId"));
    assert_eq!(db.str("user_id"), "u-17");
    assert_eq!(db.str("db.system"), "postgresql");
    assert_eq!(failed.str("level"), "ERROR");
    let error = failed.at("error");
    assert_eq!(error.str("message"), "payment declined");
    let chain: Vec<Option<&str>> = error
        .at("chain")
        .as_arr()
        .iter()
        .map(Json::as_str)
        .collect();
    assert_eq!(chain, [Some("card network timed out")]);
}

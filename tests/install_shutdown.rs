//! Nothing is lost at exit: 10 000 lines written before the process ends through `Guard` drop
//! or through SIGTERM with the documented pattern, blocking and non-blocking; and a `Guard`
//! dropped inside async code (current-thread and multi-thread runtimes) neither panics nor
//! loses the spans sent over gRPC.

mod install_support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use install_support as support;
use serde_json::Value;
use support::str_of;
use traceline::install::Writer;

const ENTRY: &str = "child_entry";
const LINES: u64 = 10_000;

fn writer(non_blocking: bool) -> Writer {
    if non_blocking {
        Writer::stdout().non_blocking()
    } else {
        Writer::stdout()
    }
}

fn log_lines() {
    let span = tracing::info_span!("batch");
    let _e = span.enter();
    for i in 0..LINES {
        tracing::info!(i, "work item done");
    }
}

#[test]
fn child_entry() {
    let Some(scenario) = support::scenario() else {
        return;
    };
    let non_blocking = scenario.ends_with("non_blocking");
    match scenario.as_str() {
        "exit_blocking" | "exit_non_blocking" => {
            let _guard = traceline::builder()
                .writer(writer(non_blocking))
                .try_init()
                .unwrap();
            log_lines();
        }
        "sigterm_blocking" | "sigterm_non_blocking" => {
            // The pattern of examples/shutdown.rs.
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let guard = traceline::builder()
                    .writer(writer(non_blocking))
                    .try_init()
                    .unwrap();
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .unwrap();
                log_lines();
                eprintln!("ready");
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
                    _ = tokio::time::sleep(Duration::from_secs(30)) => panic!("no SIGTERM"),
                }
                guard.shutdown().unwrap();
            });
        }
        "async_drop_current_thread" | "async_drop_multi_thread" => {
            let rt = if scenario.ends_with("current_thread") {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap()
            };
            rt.block_on(async {
                let _guard = traceline::init().unwrap();
                for i in 0..10 {
                    let span = tracing::info_span!("request", i);
                    let _e = span.enter();
                    tracing::info!("handled");
                }
                tokio::task::yield_now().await;
                // _guard is dropped here, inside the async block.
            });
        }
        "export_fails" => {
            // The collector refuses: dropping the guard reports the lost spans on stderr.
            let guard = traceline::init().expect("init");
            for i in 0..3 {
                let span = tracing::info_span!("request", i);
                let _e = span.enter();
                tracing::warn!("handled");
            }
            drop(guard);
            println!("AFTER_GUARD");
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// The guard's report of spans it could not export goes to stderr; when stderr is a pipe
/// nobody reads any more (`prog 2>&1 | head -1`), dropping the guard neither panics nor stops
/// the program.
#[test]
fn dropping_the_guard_with_stderr_closed_does_not_panic() {
    let endpoint = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = support::child(
        ENTRY,
        "export_fails",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())],
    )
    .stderr(writer)
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("AFTER_GUARD"), "{}: {stdout}", out.status);
    assert!(out.status.success(), "{}", out.status);
}

fn count_items(lines: &[Value]) -> usize {
    let items: BTreeSet<u64> = lines
        .iter()
        .filter(|l| str_of(l, "message") == Some("work item done"))
        .map(|l| l["i"].as_u64().unwrap())
        .collect();
    items.len()
}

fn exit_through_guard(scenario: &str) {
    let out = support::run(ENTRY, scenario, &[]);
    let lines = support::json_lines(&out.stdout);
    assert_eq!(count_items(&lines), LINES as usize);
    assert!(
        lines
            .iter()
            .all(|l| str_of(l, "traceId").is_some()
                || str_of(l, "target") != Some("install_shutdown"))
    );
}

#[test]
fn exit_through_guard_drop_blocking_loses_nothing() {
    exit_through_guard("exit_blocking");
}

#[test]
fn exit_through_guard_drop_non_blocking_loses_nothing() {
    exit_through_guard("exit_non_blocking");
}

fn sigterm(scenario: &str) {
    let mut child = support::child(ENTRY, scenario, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read stdout concurrently so a full pipe never blocks the child.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).unwrap();
        buf
    });
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "child exited before ready"
        );
        if line.trim() == "ready" {
            break;
        }
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    let lines = support::json_lines(&reader.join().unwrap());
    assert_eq!(count_items(&lines), LINES as usize);
    assert!(
        lines
            .iter()
            .any(|l| str_of(l, "message") == Some("SIGTERM received, shutting down"))
    );
}

#[test]
fn sigterm_blocking_loses_nothing() {
    sigterm("sigterm_blocking");
}

#[test]
fn sigterm_non_blocking_loses_nothing() {
    sigterm("sigterm_non_blocking");
}

async fn async_drop(scenario: &'static str) {
    let receiver = support::GrpcReceiver::start().await;
    let endpoint = receiver.endpoint();
    let out = tokio::task::spawn_blocking(move || {
        support::run(
            ENTRY,
            scenario,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
        )
    })
    .await
    .unwrap();
    let received = receiver.finish().await;
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    let lines: Vec<Value> = support::json_lines(&out.stdout)
        .into_iter()
        .filter(|l| str_of(l, "message") == Some("handled"))
        .collect();
    assert_eq!(lines.len(), 10);
    let from_lines: BTreeSet<String> = lines
        .iter()
        .map(|l| str_of(l, "spanId").unwrap().to_string())
        .collect();
    let spans: BTreeSet<String> = received.into_iter().map(|s| s.span_id).collect();
    assert_eq!(from_lines, spans);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_dropped_in_current_thread_runtime_exports_over_grpc() {
    async_drop("async_drop_current_thread").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guard_dropped_in_multi_thread_runtime_exports_over_grpc() {
    async_drop("async_drop_multi_thread").await;
}

//! Nothing is lost at exit: 10 000 lines written before the process ends through `Guard` drop
//! or through SIGTERM with the documented pattern, blocking and non-blocking; and a `Guard`
//! dropped inside async code (current-thread and multi-thread runtimes) neither panics nor
//! loses the spans sent over gRPC.
#![cfg(feature = "install")]

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
        "queue_full" => {
            // More spans at once than the batch queue holds (set small by the test): some
            // never reach the exporter, and the shutdown says how many.
            let guard = traceline::builder()
                .writer(Writer::custom(std::io::sink))
                .try_init()
                .unwrap();
            for i in 0..QUEUE_BURST {
                let span = tracing::info_span!("request", i);
                let _e = span.enter();
            }
            match guard.shutdown() {
                Ok(()) => println!("SHUTDOWN ok"),
                Err(err) => println!("SHUTDOWN {err}"),
            }
        }
        "ids_after_shutdown" => {
            let guard = traceline::init().unwrap();
            {
                let span = tracing::info_span!("early");
                let _e = span.enter();
                tracing::info!("before shutdown");
            }
            guard.shutdown().unwrap();
            let span = tracing::info_span!("late");
            let _e = span.enter();
            tracing::info!("after shutdown");
        }
        "fork_drop" | "fork_drop_non_blocking" => {
            // init() (with whatever protocol the test set), a span, then a fork: the child logs,
            // drops its copy of the guard and reports how that went; the parent goes on.
            let guard = traceline::builder()
                .writer(writer(non_blocking))
                .try_init()
                .unwrap();
            {
                let span = tracing::info_span!("before_fork");
                let _e = span.enter();
                tracing::info!("parent, before the fork");
            }
            println!("FORK_REPORT {}", fork_and_drop(guard_in_child(guard)));
        }
        "pidns_fork_drop" | "pidns_fork_drop_non_blocking" => {
            // As `fork_drop`, in a process that is PID 1 of its PID namespace (the program of a
            // container, say) and forks its child into a new one, where the child is PID 1
            // too: the same process id, another process.
            in_pid_namespace_as_pid_1(|| {
                let guard = traceline::builder()
                    .writer(writer(non_blocking))
                    .try_init()
                    .unwrap();
                // Later children go into a new PID namespace (and this process makes no more
                // threads: it cannot, until it has made one).
                // SAFETY: a system call with no pointer.
                assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWPID) }, 0, "unshare");
                {
                    let span = tracing::info_span!("before_fork");
                    let _e = span.enter();
                    tracing::info!("parent, before the fork");
                }
                println!("FORK_REPORT {}", fork_and_drop(guard_in_child(guard)));
            });
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// Whether a process may make a user namespace and a PID namespace (unprivileged).
fn user_namespaces_available() -> bool {
    // SAFETY: the child only makes the system calls `unshare` and `_exit`.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            let ok = libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWPID) == 0;
            libc::_exit(if ok { 0 } else { 1 });
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
    }
}

/// Runs `f` in a process that is PID 1 of a new PID namespace (in a new user namespace, so
/// that it may make PID namespaces of its own), and exits with its status; `f`'s process exits
/// 0 when `f` returns.
fn in_pid_namespace_as_pid_1(f: impl FnOnce()) {
    use std::io::Write as _;
    // SAFETY: forks; the first child is single-threaded when it unshares, and only forks and
    // waits; the second runs `f` and leaves with `_exit`.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWPID) != 0 {
                libc::_exit(42);
            }
            let inner = libc::fork();
            if inner == 0 {
                assert_eq!(libc::getpid(), 1);
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
                let _ = std::io::stdout().flush();
                libc::_exit(if ran.is_ok() { 0 } else { 1 });
            }
            let mut status = 0;
            libc::waitpid(inner, &mut status, 0);
            libc::_exit(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                1
            });
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            1
        };
        assert_eq!(
            code, 0,
            "the process in the PID namespace failed (42: no namespaces)"
        );
    }
}

/// Hands the guard to [`fork_and_drop`]: the child drops it, the parent keeps it (returned).
struct GuardInChild(Option<traceline::Guard>);

fn guard_in_child(guard: traceline::Guard) -> GuardInChild {
    GuardInChild(Some(guard))
}

/// Forks; the child logs a line in a span, drops the guard (timed, a panic caught) and exits
/// with 0 when the drop returned, 3 when it panicked; it is killed after 10 s. The parent then
/// logs a span of its own and drops the guard. Returns what the parent saw of the child.
fn fork_and_drop(mut guard: GuardInChild) -> String {
    use std::time::Instant;
    let mut fds = [0; 2];
    // SAFETY: a pipe and a fork; the child only logs, drops the guard, writes to the pipe and
    // leaves with `_exit`.
    let report = unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            libc::close(fds[0]);
            {
                let span = tracing::info_span!("in_child");
                let _e = span.enter();
                tracing::info!("child, after the fork");
            }
            let g = guard.0.take();
            let start = Instant::now();
            let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(g)));
            let msg = format!(
                "drop {} after {} ms",
                if dropped.is_ok() {
                    "returned"
                } else {
                    "PANICKED"
                },
                start.elapsed().as_millis()
            );
            libc::write(fds[1], msg.as_ptr().cast(), msg.len());
            libc::_exit(if dropped.is_ok() { 0 } else { 3 });
        }
        libc::close(fds[1]);
        let start = Instant::now();
        let mut status = 0;
        let exited = loop {
            if libc::waitpid(pid, &mut status, libc::WNOHANG) == pid {
                break true;
            }
            if start.elapsed() > Duration::from_secs(10) {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
                break false;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let took = start.elapsed().as_millis();
        let mut said = String::new();
        std::fs::File::from(std::os::fd::OwnedFd::from_raw_fd(fds[0]))
            .read_to_string(&mut said)
            .unwrap();
        let code = if exited && libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status).to_string()
        } else {
            "none".to_string()
        };
        format!("exited={exited} code={code} took_ms={took} child_said=[{said}]")
    };
    {
        let span = tracing::info_span!("after_fork");
        let _e = span.enter();
        tracing::info!("parent, after the fork");
    }
    drop(guard.0.take());
    report
}

use std::os::fd::FromRawFd as _;

/// The child's report: (exited, exit code, how long the parent waited for it in ms).
fn parse_fork_report(stdout: &str) -> (bool, String, u64, String) {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("FORK_REPORT "))
        .unwrap_or_else(|| panic!("no FORK_REPORT in {stdout}"));
    let field = |k: &str| {
        line.split(' ')
            .find_map(|w| w.strip_prefix(k))
            .unwrap_or_default()
            .to_string()
    };
    (
        field("exited=") == "true",
        field("code="),
        field("took_ms=").parse().unwrap_or(u64::MAX),
        line.to_string(),
    )
}

/// A `Guard` dropped in a forked child (whose exporter threads, runtime and batch processor
/// live in the parent only) returns at once, without a panic, and the child exits 0 within
/// 2 s; the parent still exports its spans, from before and after the fork.
fn fork_then_drop_in_child(protocol: &str, scenario: &str, endpoint: &str) -> Vec<String> {
    let out = support::run_limited(
        ENTRY,
        scenario,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ],
        Duration::from_secs(60),
    )
    .expect("the scenario did not finish");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stdout}\n{stderr}", out.status);
    let (exited, code, took, line) = parse_fork_report(&stdout);
    assert!(
        exited && code == "0" && took < 2_000,
        "the forked child did not exit promptly with 0: {line}\nstderr: {}",
        support::tail(&stderr)
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines = support::json_lines(&out.stdout);
    for msg in ["parent, before the fork", "parent, after the fork"] {
        assert!(
            lines.iter().any(|l| str_of(l, "message") == Some(msg)),
            "{msg}: {stdout}"
        );
    }
    lines
        .iter()
        .filter(|l| str_of(l, "message").is_some_and(|m| m.starts_with("parent")))
        .map(|l| str_of(l, "spanId").unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_dropped_in_a_forked_child_returns_at_once_over_grpc() {
    let receiver = support::GrpcReceiver::start().await;
    let endpoint = receiver.endpoint();
    let ids = tokio::task::spawn_blocking(move || {
        fork_then_drop_in_child("grpc", "fork_drop", &endpoint)
    })
    .await
    .unwrap();
    let received: BTreeSet<String> = receiver
        .finish()
        .await
        .into_iter()
        .map(|s| s.span_id)
        .collect();
    for id in ids {
        assert!(
            received.contains(&id),
            "span {id} not exported: {received:?}"
        );
    }
}

async fn over_http(scenario: &'static str) {
    let receiver = support::HttpReceiver::start().await;
    let endpoint = receiver.endpoint();
    let ids = tokio::task::spawn_blocking(move || {
        fork_then_drop_in_child("http/protobuf", scenario, &endpoint)
    })
    .await
    .unwrap();
    let received: BTreeSet<String> = receiver.spans().into_iter().map(|s| s.span_id).collect();
    for id in ids {
        assert!(
            received.contains(&id),
            "span {id} not exported: {received:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_dropped_in_a_forked_child_returns_at_once_over_http() {
    over_http("fork_drop").await;
}

/// The same with the non-blocking writer (its worker and the dropped-lines monitor).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_blocking_guard_dropped_in_a_forked_child_returns_at_once_over_http() {
    over_http("fork_drop_non_blocking").await;
}

/// A child forked into a new PID namespace by a process that is PID 1 of its own (a container's
/// program) has the parent's process id: it is a forked child all the same, and its guard
/// returns at once, as `fork()`'s handlers (which the writer already listens to) say.
async fn over_http_in_a_pid_namespace(scenario: &'static str) {
    if !user_namespaces_available() {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"skipped: no unprivileged user and PID namespaces here\n",
        );
        return;
    }
    let receiver = support::HttpReceiver::start().await;
    let endpoint = receiver.endpoint();
    let ids = tokio::task::spawn_blocking(move || {
        fork_then_drop_in_child("http/protobuf", scenario, &endpoint)
    })
    .await
    .unwrap();
    let received: BTreeSet<String> = receiver.spans().into_iter().map(|s| s.span_id).collect();
    for id in ids {
        assert!(
            received.contains(&id),
            "span {id} not exported: {received:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_dropped_in_a_child_with_the_parents_pid_returns_at_once() {
    over_http_in_a_pid_namespace("pidns_fork_drop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_blocking_guard_dropped_in_a_child_with_the_parents_pid_returns_at_once() {
    over_http_in_a_pid_namespace("pidns_fork_drop_non_blocking").await;
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

/// Spans ended at once in the `queue_full` scenario.
const QUEUE_BURST: u64 = 2000;

/// Spans dropped before the exporter (a full batch queue) are counted in the shutdown's error,
/// exactly: the spans the collector got and those the error counts make every span ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_the_full_batch_queue_dropped_are_counted_at_shutdown() {
    let receiver = support::HttpReceiver::start().await;
    let endpoint = receiver.endpoint();
    let out = support::run_async(
        ENTRY,
        "queue_full",
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "16".into()),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "16".into()),
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}: {stdout}", out.status);
    let report = stdout
        .lines()
        .find_map(|l| l.strip_prefix("SHUTDOWN "))
        .unwrap_or_else(|| panic!("no shutdown report: {stdout}"));
    let received = receiver.spans().len() as u64;
    assert!(
        received < QUEUE_BURST,
        "a queue of 16 took {received} spans at once"
    );
    let lost = QUEUE_BURST - received;
    assert!(
        report.contains(&format!(
            "{lost} of {QUEUE_BURST} span(s) never reached the exporter"
        )) && report.contains("OTEL_BSP_MAX_QUEUE_SIZE"),
        "{received} spans received; the shutdown said: {report}"
    );
}

/// After `Guard::shutdown`, lines still carry their spans' ids (requests in flight stay
/// traceable), and those spans are not exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_keep_their_ids_after_the_guard_shuts_down() {
    let receiver = support::HttpReceiver::start().await;
    let endpoint = receiver.endpoint();
    let out = support::run_async(
        ENTRY,
        "ids_after_shutdown",
        vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)],
    )
    .await;
    assert!(out.status.success(), "{}", out.status);
    let lines = support::json_lines(&out.stdout);
    let line = |message: &str| {
        lines
            .iter()
            .find(|l| str_of(l, "message") == Some(message))
            .unwrap_or_else(|| panic!("no line {message:?} in {lines:?}"))
    };
    let (early, late) = (line("before shutdown"), line("after shutdown"));
    assert!(str_of(early, "traceId").is_some(), "{early}");
    assert!(
        str_of(late, "traceId").is_some(),
        "no ids after shutdown: {late}"
    );
    assert!(str_of(late, "spanId").is_some(), "{late}");
    assert_ne!(str_of(early, "traceId"), str_of(late, "traceId"));
    let spans = receiver.spans();
    assert_eq!(
        spans.len(),
        1,
        "only the span ended before the shutdown is exported"
    );
    assert_eq!(
        Some(spans[0].trace_id.as_str()),
        str_of(early, "traceId"),
        "{spans:?}"
    );
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
    let out = support::run_async(
        ENTRY,
        scenario,
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
        ],
    )
    .await;
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

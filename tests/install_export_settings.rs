//! `init()`'s export settings as a user sets them in a deployment, each in a child process
//! against a real OTLP/HTTP receiver on loopback: headers, timeout, compression, the default
//! collector, what `RUST_LOG` does to spans, and what the guard says when spans were lost.
#![cfg(feature = "install")]

mod install_support;

use install_support as support;
use serde_json::Value;
use support::str_of;

const ENTRY: &str = "child_entry";

#[test]
fn child_entry() {
    let Some(scenario) = support::scenario() else {
        return;
    };
    if scenario == "code_endpoint" {
        // The endpoint set in code; the protocol and `OTEL_TRACES_EXPORTER` from the
        // environment.
        let endpoint = std::env::var("TEST_ENDPOINT").unwrap();
        let guard = traceline::builder()
            .otlp_endpoint(endpoint)
            .try_init()
            .expect("init");
        for i in 0..3 {
            let span = tracing::info_span!("request", i);
            let _e = span.enter();
            tracing::warn!("handled");
        }
        drop(guard);
        return;
    }
    if scenario == "builder_options" {
        let guard = traceline::builder()
            .redaction(traceline::Redaction::default().deny("ssn"))
            .max_field_len(8)
            .try_init()
            .expect("init");
        tracing::info!(ssn = "078-05-1120", note = "a long note indeed", "checked");
        drop(guard);
        return;
    }
    let guard = traceline::init().expect("init from the environment");
    if scenario == "dependency_span" {
        // A dependency's INFO span around the application's work.
        {
            let dep =
                tracing::info_span!(target: "noisy_dep::pool", "checkout", pool.hint = "db-1");
            let _d = dep.enter();
            let span = tracing::info_span!("request");
            let _e = span.enter();
            tracing::warn!("handled");
            let err = std::io::Error::other("disk full");
            traceline::record_error(&err);
        }
        drop(guard);
        return;
    }
    if scenario == "own_span" {
        // Only a span of traceline's own (kept whatever the filter): the SDK exports it.
        let span = tracing::info_span!(target: "traceline::http", "GET /orders");
        drop(span.enter());
        drop(span);
        drop(guard);
        return;
    }
    for i in 0..3 {
        let span = tracing::info_span!("request", i);
        let _e = span.enter();
        tracing::warn!("handled");
    }
    match scenario.as_str() {
        "shutdown" => match guard.shutdown() {
            Ok(()) => eprintln!("SHUTDOWN=ok"),
            Err(e) => eprintln!("SHUTDOWN=err {e}"),
        },
        "drop" => drop(guard),
        other => panic!("unknown scenario {other}"),
    }
}

async fn run(scenario: &'static str, env: Vec<(&'static str, String)>) -> std::process::Output {
    support::run_async(ENTRY, scenario, env).await
}

/// An address nothing listens on.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

/// Runs the `drop` scenario exporting to a real OTLP/HTTP receiver with `env` set besides the
/// endpoint; returns the headers of every request the receiver got (at least one), and how
/// many spans it decoded.
async fn export_requests(
    env: Vec<(&'static str, String)>,
) -> (Vec<std::collections::HashMap<String, String>>, usize) {
    let receiver = support::HttpReceiver::start().await;
    let mut all = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())];
    all.extend(env);
    run("drop", all).await;
    let requests = receiver.headers();
    assert!(!requests.is_empty(), "the receiver got no request");
    (requests, receiver.spans().len())
}

fn app_lines(out: &std::process::Output) -> Vec<Value> {
    support::json_lines(&out.stdout)
        .into_iter()
        .filter(|l| str_of(l, "target") == Some("install_export_settings"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_reach_the_collector_and_an_empty_signal_variable_counts_as_unset() {
    let (requests, spans) = export_requests(vec![
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "api-key=s3cret, x-team = a%20b".into(),
        ),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "".into()),
    ])
    .await;
    for h in &requests {
        assert_eq!(
            h.get("api-key").map(String::as_str),
            Some("s3cret"),
            "{h:?}"
        );
        assert_eq!(h.get("x-team").map(String::as_str), Some("a b"), "{h:?}");
    }
    assert_eq!(spans, 3);

    // The signal's own variable wins over the generic one when it is set.
    let (requests, _) = export_requests(vec![
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=generic".into()),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=traces".into()),
    ])
    .await;
    for h in &requests {
        assert_eq!(
            h.get("api-key").map(String::as_str),
            Some("traces"),
            "{h:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_compression_is_sent_and_decoded() {
    let (requests, spans) =
        export_requests(vec![("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".into())]).await;
    for h in &requests {
        assert_eq!(
            h.get("content-encoding").map(String::as_str),
            Some("gzip"),
            "{h:?}"
        );
    }
    // Decoded by the receiver: the three spans arrived whole.
    assert_eq!(spans, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_lost_to_a_refused_collector_are_reported_at_shutdown() {
    let endpoint = closed_port();
    let out = run(
        "shutdown",
        vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone())],
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SHUTDOWN=err"), "{err}");
    assert!(err.contains("3 span(s) could not be exported"), "{err}");
    assert!(err.contains(&endpoint), "{err}");

    let out = run("drop", vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spans may not all have been exported"),
        "{err}"
    );

    // And a collector that takes them: no error.
    let receiver = support::HttpReceiver::start().await;
    let out = run(
        "shutdown",
        vec![("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())],
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SHUTDOWN=ok"), "{err}");
}

/// A key in the endpoint's query (some collectors take one there) is not repeated in what a
/// failed export writes: the shutdown report, the SDK's own lines, stdout or stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_the_endpoints_query_is_kept_out_of_export_failure_messages() {
    let endpoint = closed_port();
    let out = run(
        "shutdown",
        vec![(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("{endpoint}/otlp?api-key=s3cr3t-key"),
        )],
    )
    .await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stderr.contains("3 span(s) could not be exported"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{endpoint}/otlp/v1/traces?…")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("s3cr3t") && !stdout.contains("s3cr3t"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_errors_are_lines_while_the_program_runs() {
    let out = run("drop", vec![("OTEL_EXPORTER_OTLP_ENDPOINT", closed_port())]).await;
    let sdk: Vec<Value> = support::json_lines(&out.stdout)
        .into_iter()
        .filter(|l| str_of(l, "target").is_some_and(|t| t.starts_with("opentelemetry")))
        .collect();
    assert!(
        sdk.iter()
            .any(|l| matches!(str_of(l, "level"), Some("WARN" | "ERROR"))),
        "{sdk:?}"
    );
}

/// The SDK's diagnostics are compiled into a user's build (they are the only sign, while the
/// program runs, that a collector is unreachable): the `install` feature turns them on, not
/// only this crate's dev-dependencies.
#[test]
fn the_install_feature_compiles_the_sdks_diagnostics_in() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "--no-default-features",
            "--features",
            "install",
            "-e",
            "features,normal",
            "-i",
            "opentelemetry_sdk",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        tree.contains("opentelemetry_sdk feature \"internal-logs\""),
        "{tree}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_warn_keeps_the_ids_on_warn_lines_and_exports_the_spans() {
    let receiver = support::HttpReceiver::start().await;
    let out = run(
        "drop",
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
            ("RUST_LOG", "warn".into()),
        ],
    )
    .await;
    let lines = app_lines(&out);
    assert_eq!(lines.len(), 3);
    for l in &lines {
        assert!(str_of(l, "traceId").is_some(), "{l}");
    }
    assert_eq!(receiver.spans().len(), 3);

    // Turning the target off turns its spans off too.
    let receiver = support::HttpReceiver::start().await;
    let out = run(
        "drop",
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
            ("RUST_LOG", "warn,install_export_settings=off".into()),
        ],
    )
    .await;
    assert!(app_lines(&out).is_empty());
    assert!(receiver.spans().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_off_writes_no_lines() {
    let out = run(
        "own_span",
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", closed_port()),
            ("RUST_LOG", "off".into()),
        ],
    )
    .await;
    let lines = support::json_lines(&out.stdout);
    assert!(lines.is_empty(), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_sdk_or_no_exporter_ignores_the_exporter_settings() {
    for env in [
        vec![
            ("OTEL_SDK_DISABLED", "true".to_string()),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://collector.example.com:4318".into(),
            ),
            ("OTEL_TRACES_SAMPLER", "xray".into()),
            ("OTEL_EXPORTER_OTLP_HEADERS", "broken".into()),
        ],
        vec![
            ("OTEL_TRACES_EXPORTER", "none".to_string()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".into()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "5s".into()),
        ],
    ] {
        // `run` fails the test when the child's init() fails.
        let out = run("drop", env).await;
        assert_eq!(app_lines(&out).len(), 3);
    }
}

/// `OTEL_TRACES_EXPORTER=otlp` with no endpoint sends to the specification's default,
/// `http://localhost:4318` for HTTP/protobuf.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_otlp_exporter_asked_for_with_no_endpoint_sends_to_localhost() {
    if std::net::TcpListener::bind("127.0.0.1:4318").is_err() {
        panic!("port 4318 is in use on this machine: this test needs it free");
    }
    let receiver = support::HttpReceiver::start_on("127.0.0.1:4318").await;
    run("drop", vec![("OTEL_TRACES_EXPORTER", "otlp".into())]).await;
    assert_eq!(
        receiver.paths().first().map(String::as_str),
        Some("/v1/traces")
    );
    assert_eq!(receiver.spans().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_value_is_percent_decoded_once() {
    let (requests, _) = export_requests(vec![
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cr%2541t".into()),
        // Empty: `opentelemetry-otlp` then adds nothing of its own reading.
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "".into()),
    ])
    .await;
    for h in &requests {
        assert_eq!(
            h.get("api-key").map(String::as_str),
            Some("s3cr%41t"),
            "{h:?}"
        );
    }
}

/// An endpoint set in code wins over `OTEL_TRACES_EXPORTER=none`, and keeps the protocol the
/// environment gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_in_code_keeps_the_environments_protocol() {
    let receiver = support::GrpcReceiver::start().await;
    run(
        "code_endpoint",
        vec![
            ("TEST_ENDPOINT", receiver.endpoint()),
            ("OTEL_TRACES_EXPORTER", "none".into()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
        ],
    )
    .await;
    assert_eq!(receiver.finish().await.len(), 3);
}

/// `OTEL_EXPORTER_OTLP_ENDPOINT` is a base URL: `/v1/traces` is appended over HTTP even when
/// it already ends so (the specification: the variable means the same URL to every SDK), while
/// the endpoint set in code may be the full URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_base_endpoint_variable_always_gets_v1_traces_appended() {
    let receiver = support::HttpReceiver::start().await;
    run(
        "drop",
        vec![(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("{}/v1/traces", receiver.endpoint()),
        )],
    )
    .await;
    assert_eq!(
        receiver.paths().first().map(String::as_str),
        Some("/v1/traces/v1/traces")
    );
    let receiver = support::HttpReceiver::start().await;
    run(
        "code_endpoint",
        vec![(
            "TEST_ENDPOINT",
            format!("{}/v1/traces", receiver.endpoint()),
        )],
    )
    .await;
    assert_eq!(
        receiver.paths().first().map(String::as_str),
        Some("/v1/traces")
    );
    assert_eq!(receiver.spans().len(), 3);
}

/// An uppercase scheme and an empty port (the scheme's default) are endpoints like any other,
/// and resource attribute keys are %-decoded, as the specification asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uppercase_scheme_and_encoded_attribute_keys_reach_the_collector() {
    let receiver = support::HttpReceiver::start().await;
    let endpoint = receiver.endpoint().replacen("http://", "HTTP://", 1);
    run(
        "drop",
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "team%3Dname=orders,a%2Cb=1".into(),
            ),
            // No limit: the exporter works with it.
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "0".into()),
        ],
    )
    .await;
    let spans = receiver.spans();
    assert_eq!(spans.len(), 3);
    let resource = &spans[0].resource;
    assert_eq!(
        resource.get("team=name").map(String::as_str),
        Some("orders"),
        "{resource:?}"
    );
    assert_eq!(
        resource.get("a,b").map(String::as_str),
        Some("1"),
        "{resource:?}"
    );
}

/// A timeout of 0 (no limit) over gRPC: the spans still go out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_timeout_exports_over_grpc() {
    let receiver = support::GrpcReceiver::start().await;
    run(
        "drop",
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0".into()),
        ],
    )
    .await;
    assert_eq!(receiver.finish().await.len(), 3);
}

/// A filter naming only the application keeps a dependency's INFO spans off (not exported, no
/// fields on the lines) and still writes `record_error`'s line; a bare `off` turns the spans
/// off too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependency_spans_follow_the_filters_level_for_their_target() {
    let receiver = support::HttpReceiver::start().await;
    let out = run(
        "dependency_span",
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
            ("RUST_LOG", "install_export_settings=debug".into()),
        ],
    )
    .await;
    let names: Vec<String> = receiver.spans().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["request"]);
    let lines = support::json_lines(&out.stdout);
    let handled = lines
        .iter()
        .find(|l| str_of(l, "message") == Some("handled"))
        .expect("the application's line");
    assert!(handled.get("pool.hint").is_none(), "{handled}");
    let error = lines
        .iter()
        .find(|l| str_of(l, "target") == Some("traceline::error"))
        .expect("record_error's line");
    assert_eq!(str_of(error, "message"), Some("disk full"));

    let receiver = support::HttpReceiver::start().await;
    let out = run(
        "dependency_span",
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
            ("RUST_LOG", "off".into()),
        ],
    )
    .await;
    assert!(receiver.spans().is_empty());
    assert!(support::json_lines(&out.stdout).is_empty());
}

/// `opentelemetry_otlp=off` quiets the exporter's diagnostics, whose target is the crate's
/// published name, `opentelemetry-otlp`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exporters_diagnostics_are_quieted_by_its_rust_name() {
    let out = run(
        "drop",
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", closed_port()),
            ("RUST_LOG", "warn,opentelemetry_otlp=off".into()),
        ],
    )
    .await;
    let targets: Vec<String> = support::json_lines(&out.stdout)
        .iter()
        .filter_map(|l| str_of(l, "target").map(String::from))
        .filter(|t| t.starts_with("opentelemetry"))
        .collect();
    assert!(
        !targets.iter().any(|t| t.starts_with("opentelemetry-otlp")),
        "{targets:?}"
    );
    // The other SDK targets still say what failed.
    assert!(!targets.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_sets_redaction_and_limits() {
    let out = run("builder_options", vec![]).await;
    let lines = app_lines(&out);
    assert_eq!(lines.len(), 1);
    assert_eq!(str_of(&lines[0], "ssn"), Some("[REDACTED]"));
    let note = str_of(&lines[0], "note").unwrap();
    assert!(
        note.starts_with("a long n") && note.contains("truncated"),
        "{note}"
    );
}

/// A filter that names another traceline or OpenTelemetry target (the access log, one SDK
/// crate) keeps `record_error`'s line and the other crates' diagnostics; spaces around the
/// directives are dropped (not read as part of a target); a field directive on a dependency's
/// target (`noisy_dep[{pool.hint}]=off`) turns its spans off, as `EnvFilter` reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directives_are_read_per_target_as_env_filter_reads_them() {
    let out = run(
        "dependency_span",
        vec![(
            "RUST_LOG",
            "install_export_settings=debug,traceline::http::access=warn".into(),
        )],
    )
    .await;
    assert!(
        support::json_lines(&out.stdout)
            .iter()
            .any(|l| str_of(l, "target") == Some("traceline::error")),
        "record_error's line"
    );

    let out = run(
        "drop",
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", closed_port()),
            (
                "RUST_LOG",
                "install_export_settings=debug,opentelemetry_sdk=info".into(),
            ),
        ],
    )
    .await;
    let targets: Vec<String> = support::json_lines(&out.stdout)
        .iter()
        .filter_map(|l| str_of(l, "target").map(String::from))
        .collect();
    assert!(
        targets.iter().any(|t| t == "opentelemetry-otlp"),
        "the exporter's own errors: {targets:?}"
    );

    // ` warn` is the default level (not a target named " warn"): the dependency's INFO span
    // stays, as under `warn`.
    let receiver = support::HttpReceiver::start().await;
    run(
        "dependency_span",
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
            ("RUST_LOG", "install_export_settings=debug, warn".into()),
        ],
    )
    .await;
    let names: Vec<String> = receiver.spans().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["request", "checkout"]);

    for filter in [
        "install_export_settings=debug , noisy_dep=off",
        "info,noisy_dep[{pool.hint}]=off",
    ] {
        let receiver = support::HttpReceiver::start().await;
        let out = run(
            "dependency_span",
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
                ("RUST_LOG", filter.into()),
            ],
        )
        .await;
        let names: Vec<String> = receiver.spans().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["request"], "{filter}");
        let handled = support::json_lines(&out.stdout)
            .into_iter()
            .find(|l| str_of(l, "message") == Some("handled"))
            .expect("the application's line");
        assert!(handled.get("pool.hint").is_none(), "{filter}: {handled}");
    }
}

/// A base URL with a query (a tenant or a key some collectors take there) keeps its query, and
/// `/v1/traces` goes on its path, not into the query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_endpoint_with_a_query_gets_v1_traces_on_its_path() {
    for (base, path) in [
        ("/otlp?tenant=a", "/otlp/v1/traces"),
        ("/?tenant=a", "/v1/traces"),
    ] {
        let receiver = support::HttpReceiver::start().await;
        run(
            "drop",
            vec![(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("{}{base}", receiver.endpoint()),
            )],
        )
        .await;
        assert_eq!(
            receiver.paths().first().map(String::as_str),
            Some(path),
            "{base}"
        );
        assert_eq!(receiver.spans().len(), 3, "{base}");
    }
}

/// `OTEL_TRACES_EXPORTER` is a comma-separated list, read like `OTEL_PROPAGATORS` and the
/// headers: an empty entry (a trailing comma) is skipped, not an error that stops the program.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_entry_in_the_traces_exporter_list_is_skipped() {
    let receiver = support::HttpReceiver::start().await;
    run(
        "drop",
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
            ("OTEL_TRACES_EXPORTER", "otlp,".into()),
        ],
    )
    .await;
    assert_eq!(receiver.spans().len(), 3);
}

//! `init()` exporting to real OTLP receivers on loopback: the spans received carry exactly the
//! ids the JSON lines carried, over gRPC and HTTP/protobuf, and ratio sampling keeps the ids on
//! every line.
#![cfg(feature = "install")]
// An event with 127 fields (past the SDK's attribute limit) needs a deeper macro expansion.
#![recursion_limit = "512"]

mod install_support;

use std::collections::{BTreeSet, HashSet};

use install_support as support;
use serde_json::Value;
use support::str_of;

const ENTRY: &str = "child_entry";

/// An error whose text holds a secret (a session cookie), for the redaction scenarios.
#[derive(Debug)]
struct Expired;

impl std::fmt::Display for Expired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("session s3cr3t-cookie-value expired")
    }
}

impl std::error::Error for Expired {}

/// Runs the scenario named by `TRACELINE_CHILD` when this binary is a child process.
#[test]
fn child_entry() {
    let Some(scenario) = support::scenario() else {
        return;
    };
    let _guard = if scenario.starts_with("events_error_denied") {
        traceline::builder()
            .redaction(traceline::Redaction::default().deny("error"))
            .span_events(true)
            .try_init()
    } else if scenario.starts_with("events_") {
        traceline::builder().span_events(true).try_init()
    } else {
        traceline::init()
    }
    .expect("init from the environment");
    match scenario.as_str() {
        "secret_and_public_errors" => {
            let secret = Expired;
            let public = std::io::Error::other("disk full");
            let span = tracing::info_span!(
                "login",
                session = &secret as &(dyn std::error::Error + 'static),
                error = &public as &(dyn std::error::Error + 'static)
            );
            let _e = span.enter();
        }
        "events_secret_error_after_many_events" | "events_secret_error" => {
            let span = tracing::info_span!("batch");
            let _e = span.enter();
            // A long-running span: more events than the SDK keeps (128 by default).
            let many = if scenario == "events_secret_error" {
                0
            } else {
                128
            };
            for i in 0..many {
                tracing::info!(i, "row done");
            }
            let err = Expired;
            tracing::error!(
                session = &err as &(dyn std::error::Error + 'static),
                "login refused"
            );
        }
        "nested" => {
            for i in 0..20 {
                let root = tracing::info_span!("request", i);
                let _r = root.enter();
                tracing::info!(i, "request started");
                let db = tracing::info_span!("db.query");
                let _d = db.enter();
                tracing::info!("querying");
            }
        }
        "roots" => {
            for i in 0..2000 {
                let root = tracing::info_span!("job", i);
                let _r = root.enter();
                tracing::info!(i, "job ran");
            }
        }
        "big_span_field" => {
            // Five small spans, one whose field alone is over a collector's 4 MiB message
            // limit, five small ones again: one batch.
            let small = |n: usize| {
                for i in 0..n {
                    let span = tracing::info_span!("small", i);
                    let _e = span.enter();
                    tracing::info!("handled");
                }
            };
            small(5);
            let body = "y".repeat(5 << 20);
            tracing::info_span!("big", body = body.as_str(), name_too = body.as_str())
                .in_scope(|| tracing::info!("inside the big span"));
            small(5);
        }
        "attribute_limit" => {
            // Spans that recorded a counter 100 to 130 times, then a denied error field: for
            // some of them the SDK's limit of 128 attributes falls among the error's copies.
            for n in 100..=130 {
                let span = tracing::info_span!(
                    "job",
                    n,
                    progress = tracing::field::Empty,
                    session = tracing::field::Empty
                );
                for i in 0..n {
                    span.record("progress", i);
                }
                span.record("session", &Expired as &(dyn std::error::Error + 'static));
                span.in_scope(|| tracing::info!("done"));
            }
        }
        "events_error_denied" => {
            let span = tracing::info_span!("login");
            let _e = span.enter();
            tracing::error!(error = %"session s3cr3t-cookie-value expired");
        }
        "events_error_denied_message_after" => {
            let span = tracing::info_span!("login");
            let _e = span.enter();
            tracing::error!(error = %"session s3cr3t-cookie-value expired", message = "login failed");
        }
        "events_error_denied_attributes_cut" => {
            let span = tracing::info_span!("login");
            let _e = span.enter();
            // With `level` and `target`, the error's lone `exception.message` is the event's
            // 129th attribute: past the SDK's limit of 128, cut, while the status stays.
            tracing::error!(f0 = 0, f1 = 1, f2 = 2, f3 = 3, f4 = 4, f5 = 5, f6 = 6, f7 = 7, f8 = 8, f9 = 9, f10 = 10, f11 = 11, f12 = 12, f13 = 13, f14 = 14, f15 = 15, f16 = 16, f17 = 17, f18 = 18, f19 = 19, f20 = 20, f21 = 21, f22 = 22, f23 = 23, f24 = 24, f25 = 25, f26 = 26, f27 = 27, f28 = 28, f29 = 29, f30 = 30, f31 = 31, f32 = 32, f33 = 33, f34 = 34, f35 = 35, f36 = 36, f37 = 37, f38 = 38, f39 = 39, f40 = 40, f41 = 41, f42 = 42, f43 = 43, f44 = 44, f45 = 45, f46 = 46, f47 = 47, f48 = 48, f49 = 49, f50 = 50, f51 = 51, f52 = 52, f53 = 53, f54 = 54, f55 = 55, f56 = 56, f57 = 57, f58 = 58, f59 = 59, f60 = 60, f61 = 61, f62 = 62, f63 = 63, f64 = 64, f65 = 65, f66 = 66, f67 = 67, f68 = 68, f69 = 69, f70 = 70, f71 = 71, f72 = 72, f73 = 73, f74 = 74, f75 = 75, f76 = 76, f77 = 77, f78 = 78, f79 = 79, f80 = 80, f81 = 81, f82 = 82, f83 = 83, f84 = 84, f85 = 85, f86 = 86, f87 = 87, f88 = 88, f89 = 89, f90 = 90, f91 = 91, f92 = 92, f93 = 93, f94 = 94, f95 = 95, f96 = 96, f97 = 97, f98 = 98, f99 = 99, f100 = 100, f101 = 101, f102 = 102, f103 = 103, f104 = 104, f105 = 105, f106 = 106, f107 = 107, f108 = 108, f109 = 109, f110 = 110, f111 = 111, f112 = 112, f113 = 113, f114 = 114, f115 = 115, f116 = 116, f117 = 117, f118 = 118, f119 = 119, f120 = 120, f121 = 121, f122 = 122, f123 = 123, f124 = 124, f125 = 125, error = %"session s3cr3t-cookie-value expired");
        }
        "events_error_denied_many_events" => {
            let span = tracing::info_span!("login");
            let _e = span.enter();
            for i in 0..200 {
                tracing::info!(i, "step");
            }
            tracing::error!(error = %"session s3cr3t-cookie-value expired");
        }
        "error_events" => {
            {
                let span = tracing::info_span!("charge");
                let _e = span.enter();
                tracing::info!("charging");
                tracing::error!(reason = "card declined", "payment failed");
            }
            {
                let span = tracing::info_span!("scoped");
                let _e = span.enter();
                let id = traceline::correlation::CorrelationId::generate();
                let scope = traceline::correlation::scope(id);
                let _s = scope.enter();
                tracing::error!("failed in a scope");
            }
            {
                let span = tracing::info_span!("slow");
                let _e = span.enter();
                tracing::warn!("took 2 s");
            }
            {
                let span = tracing::info_span!("parse");
                let _e = span.enter();
                traceline::record_error(&"x".parse::<u32>().unwrap_err());
            }
        }
        "events_record_error" => {
            let span = tracing::info_span!("parse");
            let _e = span.enter();
            tracing::info!("parsing");
            traceline::record_error(&"x".parse::<u32>().unwrap_err());
        }
        "secrets" => {
            let span = tracing::info_span!(
                "login",
                user = "alice",
                password = "hunter2",
                api_key = tracing::field::Empty
            );
            span.record("api_key", "k-123");
            let _e = span.enter();
            tracing::info!("logged in");
        }
        "secret_error" => {
            #[derive(Debug)]
            struct Refused(Expired);
            impl std::fmt::Display for Refused {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("refused session s3cr3t-cookie-value")
                }
            }
            impl std::error::Error for Refused {
                fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                    Some(&self.0)
                }
            }
            let err = Refused(Expired);
            let span = tracing::info_span!(
                "login",
                user = "alice",
                session = &err as &(dyn std::error::Error + 'static)
            );
            let _e = span.enter();
            tracing::info!("logged in");
        }
        other => panic!("unknown scenario {other}"),
    }
}

fn ids_of_lines(lines: &[Value]) -> BTreeSet<(String, String)> {
    lines
        .iter()
        .map(|l| {
            (
                str_of(l, "traceId")
                    .expect("every line here is in a span")
                    .to_string(),
                str_of(l, "spanId").expect("spanId").to_string(),
            )
        })
        .collect()
}

/// Runs `scenario` exporting over gRPC to a real receiver; returns its lines and the spans the
/// receiver got.
async fn exported_over_grpc(
    scenario: &'static str,
) -> (Vec<Value>, Vec<fake_opentelemetry_collector::ExportedSpan>) {
    let receiver = support::GrpcReceiver::start().await;
    let lines = run_child(
        scenario,
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
        ],
    )
    .await;
    (lines, receiver.finish().await)
}

async fn run_child(scenario: &'static str, env: Vec<(&'static str, String)>) -> Vec<Value> {
    let out = support::run_async(ENTRY, scenario, env).await;
    support::json_lines(&out.stdout)
        .into_iter()
        .filter(|l| str_of(l, "target") == Some("install_otlp"))
        .collect()
}

/// With `init()`'s defaults, an ERROR event marks its span as failed (as with the
/// OpenTelemetry layer alone) without being copied onto it, as no event is; a correlation
/// scope's ERROR event marks the request span it is in; and `record_error`'s own line does not
/// add a second `exception` event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_event_marks_its_exported_span_as_failed() {
    let (lines, spans) = exported_over_grpc("error_events").await;
    assert_eq!(lines.len(), 4, "{lines:?}");
    let span = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name}: {spans:?}"))
    };
    let charge = span("charge");
    assert_eq!(
        charge.status.as_ref().map(|s| s.code.as_str()),
        Some("STATUS_CODE_ERROR"),
        "{charge:?}"
    );
    assert!(charge.events.is_empty(), "{charge:?}");
    let scoped = span("scoped");
    assert_eq!(
        scoped.status.as_ref().map(|s| s.code.as_str()),
        Some("STATUS_CODE_ERROR"),
        "{scoped:?}"
    );
    let slow = span("slow");
    assert!(slow.events.is_empty(), "{slow:?}");
    assert_ne!(
        slow.status.as_ref().map(|s| s.code.as_str()),
        Some("STATUS_CODE_ERROR"),
        "{slow:?}"
    );
    let parse = span("parse");
    let names: Vec<&str> = parse.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["exception"], "{parse:?}");
    assert_eq!(
        parse.status.as_ref().map(|s| s.code.as_str()),
        Some("STATUS_CODE_ERROR")
    );
}

/// With span events on, `record_error` still puts one `exception` event on the span: its
/// own line is not copied onto the span a second time. Other events are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_error_gives_one_exception_event_with_span_events_on() {
    let (_, spans) = exported_over_grpc("events_record_error").await;
    let parse = spans
        .iter()
        .find(|s| s.name == "parse")
        .unwrap_or_else(|| panic!("no span parse: {spans:?}"));
    let names: Vec<&str> = parse.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["parsing", "exception"], "{parse:?}");
}

/// A denied error field whose copies the SDK's attribute limit cut apart (the `<name>` that
/// says whose they are dropped) is still redacted in the export, as on the lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_error_recorded_at_the_attribute_limit_is_redacted_in_the_export() {
    let (lines, spans) = exported_over_grpc("attribute_limit").await;
    assert!(lines.iter().all(|l| !l.to_string().contains("s3cr3t")));
    let jobs: Vec<_> = spans.iter().filter(|s| s.name == "job").collect();
    assert_eq!(jobs.len(), 31);
    // The limit was reached (the case this is about).
    assert!(jobs.iter().any(|s| s.dropped_attributes_count > 0));
    let leaked: Vec<String> = jobs
        .iter()
        .filter(|s| format!("{:?}", s.attributes).contains("s3cr3t"))
        .map(|s| format!("{:?}", s.attributes.get("exception.message")))
        .collect();
    assert!(leaked.is_empty(), "left in clear: {leaked:?}");
}

/// With `error` denied, an event's `error` field that the OpenTelemetry layer turns into an
/// `exception` event and the span's status (an event with no message) leaves neither in
/// clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_error_field_of_an_event_without_a_message_is_redacted_in_the_export() {
    let (lines, spans) = exported_over_grpc("events_error_denied").await;
    let text: String = lines.iter().map(|l| l.to_string()).collect();
    assert!(text.contains(r#""error":"[REDACTED]""#), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");
    let login = spans.iter().find(|s| s.name == "login").expect("exported");
    let exported = format!(
        "{:?} {:?} {:?}",
        login.attributes, login.events, login.status
    );
    assert!(!exported.contains("s3cr3t"), "left in clear: {exported}");
    assert!(exported.contains("[REDACTED]"), "{exported}");
}

/// The same with a `message` field after the `error` one (which names the event after the
/// error was taken as its exception), and with more events than the SDK keeps (the exception
/// event dropped, the status kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_error_field_is_redacted_in_the_export_whatever_comes_after_it() {
    for scenario in [
        "events_error_denied_message_after",
        "events_error_denied_many_events",
        "events_error_denied_attributes_cut",
    ] {
        let (lines, spans) = exported_over_grpc(scenario).await;
        let text: String = lines.iter().map(|l| l.to_string()).collect();
        assert!(!text.contains("s3cr3t"), "{scenario}: {text}");
        let login = spans.iter().find(|s| s.name == "login").expect("exported");
        let exported = format!(
            "{:?} {:?} {:?}",
            login.attributes, login.events, login.status
        );
        assert!(
            !exported.contains("s3cr3t"),
            "{scenario}: left in clear: {exported}"
        );
    }
}

/// A span field is cut at the field length limit in the export too, as on the lines: one huge
/// value would make the collector refuse the whole batch (a 5 MiB field is over the 4 MiB
/// message limit of most gRPC collectors), losing every other span in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_large_span_field_does_not_lose_the_other_spans_of_its_batch() {
    let (lines, spans) = exported_over_grpc("big_span_field").await;
    assert_eq!(lines.len(), 11);
    let small = spans.iter().filter(|s| s.name == "small").count();
    assert_eq!(small, 10, "the small spans of the batch were lost");
    let big = spans.iter().find(|s| s.name == "big").expect("exported");
    let body = &big.attributes["body"];
    assert!(
        body.contains(&format!("…[truncated {} bytes]", (5 << 20) - 65_536)),
        "{}",
        &body[body.len().saturating_sub(60)..]
    );
    assert!(body.len() < 65_536 + 200, "{}", body.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_receiver_gets_the_ids_the_lines_carry() {
    let receiver = support::GrpcReceiver::start().await;
    let endpoint = receiver.endpoint();
    let lines = run_child(
        "nested",
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
            ("OTEL_SERVICE_NAME", "orders".into()),
        ],
    )
    .await;
    let spans = receiver.finish().await;

    assert_eq!(lines.len(), 40);
    let from_lines = ids_of_lines(&lines);
    let from_receiver: BTreeSet<(String, String)> = spans
        .iter()
        .map(|s| (s.trace_id.clone(), s.span_id.clone()))
        .collect();
    assert_eq!(spans.len(), 40, "20 request + 20 db spans");
    assert_eq!(from_lines, from_receiver);
    for l in &lines {
        assert_eq!(str_of(l, "service.name"), Some("orders"));
        assert_eq!(str_of(l, "traceFlags"), Some("01"));
    }
    // Parent links survive: every db span's parent is its request span.
    for s in spans.iter().filter(|s| s.name == "db.query") {
        assert!(
            spans
                .iter()
                .any(|p| p.span_id == s.parent_span_id && p.name == "request")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_receiver_gets_the_ids_the_lines_carry() {
    let receiver = support::HttpReceiver::start().await;
    let lines = run_child(
        "nested",
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=billing,service.version=2.1.0,team=a%2Cb".into(),
            ),
        ],
    )
    .await;
    let spans = receiver.spans();
    assert!(receiver.paths().iter().all(|p| p == "/v1/traces"));
    assert_eq!(spans.len(), 40);
    let from_receiver: BTreeSet<(String, String)> = spans
        .iter()
        .map(|s| (s.trace_id.clone(), s.span_id.clone()))
        .collect();
    assert_eq!(ids_of_lines(&lines), from_receiver);
    let res = &spans[0].resource;
    assert_eq!(res.get("service.name").map(String::as_str), Some("billing"));
    assert_eq!(
        res.get("service.version").map(String::as_str),
        Some("2.1.0")
    );
    assert_eq!(res.get("team").map(String::as_str), Some("a,b"));
    for l in &lines {
        assert_eq!(str_of(l, "service.name"), Some("billing"));
        assert_eq!(str_of(l, "service.version"), Some("2.1.0"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_exporter_none_sends_nothing_and_lines_keep_their_ids() {
    let receiver = support::HttpReceiver::start().await;
    let lines = run_child(
        "nested",
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
            ("OTEL_TRACES_EXPORTER", "none".into()),
        ],
    )
    .await;
    assert_eq!(lines.len(), 40);
    assert_eq!(
        ids_of_lines(&lines).len(),
        40,
        "every line has its span's ids"
    );
    assert!(receiver.paths().is_empty(), "{:?}", receiver.paths());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_with_no_name_is_unknown_service() {
    let receiver = support::HttpReceiver::start().await;
    let _ = run_child(
        "nested",
        vec![("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())],
    )
    .await;
    let spans = receiver.spans();
    assert_eq!(spans.len(), 40);
    // `unknown_service:` and the executable's name, as the resource conventions say.
    let name = spans[0]
        .resource
        .get("service.name")
        .cloned()
        .unwrap_or_default();
    assert!(name.starts_with("unknown_service:install_otlp"), "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_endpoint_is_used_as_given() {
    let receiver = support::HttpReceiver::start().await;
    let _ = run_child(
        "nested",
        vec![
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                format!("{}/custom/traces", receiver.endpoint()),
            ),
            // The generic endpoint is ignored when the traces one is set.
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9".into()),
        ],
    )
    .await;
    assert!(!receiver.paths().is_empty());
    assert!(receiver.paths().iter().all(|p| p == "/custom/traces"));
    assert_eq!(receiver.spans().len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratio_sampling_keeps_ids_on_every_line() {
    let receiver = support::HttpReceiver::start().await;
    let lines = run_child(
        "roots",
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
            ("OTEL_TRACES_SAMPLER", "traceidratio".into()),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1".into()),
        ],
    )
    .await;
    assert_eq!(lines.len(), 2000);
    assert!(
        lines
            .iter()
            .all(|l| str_of(l, "traceId").is_some() && str_of(l, "spanId").is_some()),
        "100 % of lines carry ids"
    );
    let exported: HashSet<String> = receiver.spans().into_iter().map(|s| s.span_id).collect();
    let share = exported.len() as f64 / 2000.0;
    assert!((0.05..=0.15).contains(&share), "{share} exported");
    for l in &lines {
        let sampled = str_of(l, "traceFlags") == Some("01");
        assert_eq!(
            sampled,
            exported.contains(str_of(l, "spanId").unwrap()),
            "sampled flag matches what was exported: {l}"
        );
    }
}

/// Span fields the redaction denies leave for the collector as `"[REDACTED]"`, as on the lines
/// (recorded at creation or later); other fields as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_span_fields_are_redacted_in_the_export_too() {
    let (lines, spans) = exported_over_grpc("secrets").await;
    assert_eq!(lines.len(), 1);
    assert_eq!(str_of(&lines[0], "password"), Some("[REDACTED]"));
    let login = spans.iter().find(|s| s.name == "login").expect("exported");
    let text = format!("{:?}", login.attributes);
    assert!(
        !text.contains("hunter2") && !text.contains("k-123"),
        "{text}"
    );
    for key in ["password", "api_key"] {
        let v = login
            .attributes
            .get(key)
            .unwrap_or_else(|| panic!("{key}: {text}"));
        assert!(v.contains("[REDACTED]"), "{key}: {v}");
    }
    assert!(login.attributes["user"].contains("alice"), "{text}");
}

/// A denied span field holding an error is written as `"[REDACTED]"` on the line; the export
/// must not carry its text either (tracing-opentelemetry records an error field under its own
/// name, under `<name>.chain` and under `exception.message` / `exception.stacktrace`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_span_field_holding_an_error_is_redacted_in_the_export_too() {
    let (lines, spans) = exported_over_grpc("secret_error").await;
    assert_eq!(lines.len(), 1);
    assert_eq!(str_of(&lines[0], "session"), Some("[REDACTED]"));
    assert!(!lines[0].to_string().contains("s3cr3t"), "{}", lines[0]);
    let login = spans.iter().find(|s| s.name == "login").expect("exported");
    let text = format!("{:?}", login.attributes);
    assert!(
        !text.contains("s3cr3t"),
        "the secret left in the export: {text}"
    );
}

/// With span events on, an error in an event under a denied name is redacted in the event,
/// and tracing-opentelemetry also copies it onto the span (`exception.message` /
/// `exception.stacktrace`, its `error_records_to_exceptions`). When the event itself is
/// dropped by the SDK's span limits (128 events per span by default), the span's copies are
/// still exported: they must not carry the secret either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_event_error_is_redacted_on_the_span_even_when_its_event_was_dropped() {
    let (lines, spans) = exported_over_grpc("events_secret_error_after_many_events").await;
    let last = lines.last().expect("lines");
    assert!(!last.to_string().contains("s3cr3t"), "{last}");
    let batch = spans.iter().find(|s| s.name == "batch").expect("exported");
    assert_eq!(batch.dropped_events_count, 1, "{batch:?}");
    let text = format!(
        "{:?} {:?} {:?}",
        batch.attributes, batch.events, batch.status
    );
    assert!(
        !text.contains("s3cr3t"),
        "the secret left in the export: {:?}",
        batch.attributes
    );
}

/// Only the copies of a denied field's error are redacted: the `exception.stacktrace` of an
/// error under an innocent name, which has no causes (`[]`) just like the denied one, is not a
/// secret and keeps its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_innocent_errors_exception_copies_are_not_redacted_for_a_denied_ones() {
    let (_, spans) = exported_over_grpc("secret_and_public_errors").await;
    let login = spans.iter().find(|s| s.name == "login").expect("exported");
    let text = format!("{:?}", login.attributes);
    assert!(!text.contains("s3cr3t"), "{text}");
    // The innocent error's copies come last, so the collector's map shows them.
    assert!(
        login.attributes["exception.message"].contains("disk full"),
        "{text}"
    );
    assert!(
        !login.attributes["exception.stacktrace"].contains("REDACTED"),
        "the innocent error's (empty) chain was redacted: {text}"
    );
    assert!(login.attributes["error"].contains("disk full"), "{text}");
}

/// With span events on, an event's denied error is redacted in the event and in its copies on
/// the span (the event kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_event_error_is_redacted_in_its_event_and_on_the_span() {
    let (_, spans) = exported_over_grpc("events_secret_error").await;
    let batch = spans.iter().find(|s| s.name == "batch").expect("exported");
    assert_eq!(batch.events.len(), 1, "{batch:?}");
    let text = format!("{:?} {:?}", batch.attributes, batch.events);
    assert!(!text.contains("s3cr3t"), "{text}");
    assert!(
        batch.events[0].attributes["session"].contains("REDACTED"),
        "{text}"
    );
}

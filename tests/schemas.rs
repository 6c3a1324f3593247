//! The schema presets: exact keys, in order, and the shape of every value, for an event inside a
//! span, outside any span and with an error; key renames on every preset; presets by name.

mod common;

use std::error::Error;
use std::fmt;

use common::{Json, capture_layer, fixed_clock, otel_subscriber, provider, provider_with};
use opentelemetry::trace::SpanContext;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use traceline::{Key, Schema};
use tracing::subscriber::with_default;
use tracing::{Level, error, event, info, info_span};
use tracing_subscriber::prelude::*;

/// An error with an optional cause, so chains of any length can be built.
#[derive(Debug)]
struct Failure {
    message: &'static str,
    source: Option<Box<Failure>>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)
    }
}

impl Error for Failure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// "payment declined" ← "card issuer unreachable" ← "connection reset by peer".
fn chained_error() -> Failure {
    Failure {
        message: "payment declined",
        source: Some(Box::new(Failure {
            message: "card issuer unreachable",
            source: Some(Box::new(Failure {
                message: "connection reset by peer",
                source: None,
            })),
        })),
    }
}

const CHAIN: [&str; 3] = [
    "payment declined",
    "card issuer unreachable",
    "connection reset by peer",
];

const NANOS: &str = "2026-11-25T10:32:03.123456789Z";
const MILLIS: &str = "2026-11-25T10:32:03.123Z";

/// Runs `f` under registry + OpenTelemetry (from `provider`) + traceline with `schema` and the
/// fixed clock; returns every line and what `f` returned.
fn run_with<T>(
    provider: &SdkTracerProvider,
    schema: Schema,
    f: impl FnOnce() -> T,
) -> (Vec<Json>, T) {
    let (cap, layer) = capture_layer();
    let layer = layer.with_schema(schema).with_clock(fixed_clock);
    let out = with_default(otel_subscriber(provider, layer), f);
    (cap.lines(), out)
}

fn run<T>(schema: Schema, f: impl FnOnce() -> T) -> (Vec<Json>, T) {
    run_with(&provider(), schema, f)
}

fn one<T>(schema: Schema, f: impl FnOnce() -> T) -> (Json, T) {
    let (mut lines, out) = run(schema, f);
    assert_eq!(lines.len(), 1, "expected one line: {lines:?}");
    (lines.remove(0), out)
}

/// The standard event inside an entered span; returns the span's context.
fn in_span() -> SpanContext {
    let span = info_span!(target: "orders", "createOrder", order.customer_id = 42);
    span.in_scope(|| {
        event!(target: "orders", Level::INFO, order.item_count = 3, "order created");
    });
    common::span_context(&span)
}

/// The standard event outside any span.
fn outside() {
    event!(target: "orders", Level::INFO, order.item_count = 3, "order created");
}

/// An ERROR event with a `&dyn Error` field (three errors in the chain), outside any span.
fn with_error() {
    let err = chained_error();
    error!(target: "orders", error = &err as &dyn Error, "charge failed");
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_decimal_u64(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'))
        && s.parse::<u64>().is_ok()
}

fn trace_hex(sc: &SpanContext) -> String {
    sc.trace_id().to_string()
}

fn span_hex(sc: &SpanContext) -> String {
    sc.span_id().to_string()
}

/// The decimal of the lower 64 bits of the trace id, as Datadog spells it.
fn trace_low64(sc: &SpanContext) -> String {
    (u128::from_be_bytes(sc.trace_id().to_bytes()) as u64).to_string()
}

fn span_u64(sc: &SpanContext) -> String {
    u64::from_be_bytes(sc.span_id().to_bytes()).to_string()
}

fn assert_keys(line: &Json, expected: &[&str]) {
    assert_eq!(line.keys(), expected, "keys of {line:?}");
}

/// The `message` + `chain` object of the default error layout.
fn assert_error_object(v: &Json) {
    assert_eq!(v.keys(), ["message", "chain"], "error object {v:?}");
    assert_eq!(v.str("message"), CHAIN[0]);
    let chain: Vec<&str> = v
        .at("chain")
        .as_arr()
        .iter()
        .map(|j| j.as_str().expect("chain entries are strings"))
        .collect();
    assert_eq!(chain, &CHAIN[1..], "chain in {v:?}");
}

/// A plain-text stack trace: the error first, then each cause on its own line, in order.
fn assert_stack_text(text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), CHAIN.len(), "one line per error: {text:?}");
    assert_eq!(lines[0], CHAIN[0], "first line of {text:?}");
    for (line, cause) in lines[1..].iter().zip(&CHAIN[1..]) {
        assert!(
            line.contains(cause) && !line.contains('{'),
            "{line:?} should name {cause:?} as plain text"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// default

#[test]
fn default_inside_a_span() {
    let (line, sc) = one(Schema::default().service_name("orders"), in_span);
    assert_keys(
        &line,
        &[
            "timestamp",
            "level",
            "message",
            "target",
            "traceId",
            "spanId",
            "traceFlags",
            "service.name",
            "order.item_count",
            "order.customer_id",
        ],
    );
    assert_eq!(line.str("timestamp"), NANOS);
    assert_eq!(line.str("level"), "INFO");
    assert_eq!(line.str("message"), "order created");
    assert_eq!(line.str("target"), "orders");
    assert!(is_hex(line.str("traceId"), 32));
    assert!(is_hex(line.str("spanId"), 16));
    assert_eq!(line.str("traceId"), trace_hex(&sc));
    assert_eq!(line.str("spanId"), span_hex(&sc));
    assert_eq!(line.str("traceFlags"), "01");
    assert_eq!(line.str("service.name"), "orders");
    assert_eq!(line.num("order.item_count"), "3");
    assert_eq!(line.num("order.customer_id"), "42");
}

#[test]
fn default_outside_a_span() {
    let (line, ()) = one(Schema::default(), outside);
    assert_keys(
        &line,
        &[
            "timestamp",
            "level",
            "message",
            "target",
            "order.item_count",
        ],
    );
    assert_eq!(line.str("timestamp"), NANOS);
    assert_eq!(line.str("level"), "INFO");
    assert_eq!(line.num("order.item_count"), "3");
}

#[test]
fn default_with_an_error() {
    let (line, ()) = one(Schema::default(), with_error);
    assert_keys(&line, &["timestamp", "level", "message", "target", "error"]);
    assert_eq!(line.str("level"), "ERROR");
    assert_eq!(line.str("message"), "charge failed");
    assert_error_object(line.at("error"));
}

#[test]
fn default_levels() {
    let (lines, ()) = run(Schema::default(), every_level);
    let levels: Vec<&str> = lines.iter().map(|l| l.str("level")).collect();
    assert_eq!(levels, ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]);
    assert!(lines.iter().all(|l| !l.has("severityNumber")));
}

fn every_level() {
    event!(target: "orders", Level::TRACE, "t");
    event!(target: "orders", Level::DEBUG, "d");
    event!(target: "orders", Level::INFO, "i");
    event!(target: "orders", Level::WARN, "w");
    event!(target: "orders", Level::ERROR, "e");
}

// ---------------------------------------------------------------------------------------------
// OpenTelemetry

#[test]
fn otel_inside_a_span() {
    let (line, sc) = one(Schema::otel().service_name("orders"), in_span);
    assert_keys(
        &line,
        &[
            "timestamp",
            "severity_text",
            "severity_number",
            "body",
            "target",
            "trace_id",
            "span_id",
            "trace_flags",
            "service.name",
            "order.item_count",
            "order.customer_id",
        ],
    );
    assert_eq!(line.str("timestamp"), NANOS);
    assert_eq!(line.str("severity_text"), "INFO");
    assert_eq!(line.num("severity_number"), "9");
    assert_eq!(line.str("body"), "order created");
    assert_eq!(line.str("target"), "orders");
    assert!(is_hex(line.str("trace_id"), 32));
    assert!(is_hex(line.str("span_id"), 16));
    assert_eq!(line.str("trace_id"), trace_hex(&sc));
    assert_eq!(line.str("span_id"), span_hex(&sc));
    assert_eq!(line.str("trace_flags"), "01");
    assert_eq!(line.str("service.name"), "orders");
    assert_eq!(line.num("order.item_count"), "3");
    assert_eq!(line.num("order.customer_id"), "42");
}

#[test]
fn otel_outside_a_span() {
    let (line, ()) = one(Schema::otel(), outside);
    assert_keys(
        &line,
        &[
            "timestamp",
            "severity_text",
            "severity_number",
            "body",
            "target",
            "order.item_count",
        ],
    );
    assert_eq!(line.str("body"), "order created");
}

#[test]
fn otel_with_an_error() {
    let (line, ()) = one(Schema::otel(), with_error);
    assert_keys(
        &line,
        &[
            "timestamp",
            "severity_text",
            "severity_number",
            "body",
            "target",
            "exception.message",
            "exception.stacktrace",
        ],
    );
    assert_eq!(line.str("severity_text"), "ERROR");
    assert_eq!(line.num("severity_number"), "17");
    assert_eq!(line.str("exception.message"), CHAIN[0]);
    assert_stack_text(line.str("exception.stacktrace"));
    assert!(!line.has("error"), "the error is not written twice");
}

#[test]
fn otel_severity_numbers() {
    let (lines, ()) = run(Schema::otel(), every_level);
    let got: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l.str("severity_text"), l.num("severity_number")))
        .collect();
    assert_eq!(
        got,
        [
            ("TRACE", "1"),
            ("DEBUG", "5"),
            ("INFO", "9"),
            ("WARN", "13"),
            ("ERROR", "17"),
        ]
    );
}

#[test]
fn otel_trace_flags_not_sampled() {
    let (lines, sc) = run_with(&provider_with(Sampler::AlwaysOff), Schema::otel(), in_span);
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert!(!sc.is_sampled());
    assert_eq!(line.str("trace_id"), trace_hex(&sc));
    assert_eq!(line.str("span_id"), span_hex(&sc));
    assert_eq!(line.str("trace_flags"), "00");
}

// ---------------------------------------------------------------------------------------------
// Elastic Common Schema

#[test]
fn ecs_inside_a_span() {
    let (line, sc) = one(Schema::ecs().service_name("orders"), in_span);
    assert_keys(
        &line,
        &[
            "@timestamp",
            "log.level",
            "message",
            "log.logger",
            "trace.id",
            "span.id",
            "transaction.id",
            "service.name",
            "event.dataset",
            "ecs.version",
            "order.item_count",
            "order.customer_id",
        ],
    );
    assert_eq!(line.str("@timestamp"), NANOS);
    assert_eq!(line.str("log.level"), "INFO");
    assert_eq!(line.str("message"), "order created");
    assert_eq!(line.str("log.logger"), "orders");
    assert_eq!(line.str("trace.id"), trace_hex(&sc));
    assert_eq!(line.str("span.id"), span_hex(&sc));
    // The span is its own local root.
    assert_eq!(line.str("transaction.id"), span_hex(&sc));
    assert_eq!(line.str("service.name"), "orders");
    assert_eq!(line.str("event.dataset"), "orders");
    assert_eq!(line.str("ecs.version"), traceline::schema::ECS_VERSION);
    assert!(line.str("ecs.version").starts_with("1."));
}

#[test]
fn ecs_outside_a_span() {
    let (line, ()) = one(Schema::ecs(), outside);
    assert_keys(
        &line,
        &[
            "@timestamp",
            "log.level",
            "message",
            "log.logger",
            "ecs.version",
            "order.item_count",
        ],
    );
    assert!(!line.has("event.dataset"), "no service name, no dataset");
}

#[test]
fn ecs_with_an_error() {
    let (line, ()) = one(Schema::ecs(), with_error);
    assert_keys(
        &line,
        &[
            "@timestamp",
            "log.level",
            "message",
            "log.logger",
            "ecs.version",
            "error.message",
            "error.stack_trace",
        ],
    );
    assert_eq!(line.str("log.level"), "ERROR");
    assert_eq!(line.str("error.message"), CHAIN[0]);
    assert_stack_text(line.str("error.stack_trace"));
}

#[test]
fn a_flat_error_field_shadows_a_span_field_of_its_name() {
    // The event's `err` becomes the schema's error keys; the span's `err` must not appear
    // beside them as if it were the event's.
    for (schema, message_key) in [
        (Schema::ecs(), "error.message"),
        (Schema::otel(), "exception.message"),
        (Schema::datadog(), "error.message"),
    ] {
        let (line, ()) = one(schema, || {
            let span = info_span!("s", err = 6, other = 1);
            let _e = span.enter();
            let err = chained_error();
            error!(err = &err as &dyn Error, "charge failed");
        });
        assert_eq!(line.str(message_key), CHAIN[0], "{line:?}");
        assert!(
            !line.has("err"),
            "the span's field beside the event's error: {line:?}"
        );
        assert_eq!(line.num("other"), "1", "{line:?}");
    }
}

#[test]
fn ecs_transaction_id_is_the_local_root_span() {
    let (lines, (root, child, leaf)) = run(Schema::ecs(), || {
        let root = info_span!("request");
        let _r = root.enter();
        info!("in root");
        let child = info_span!("db");
        let _c = child.enter();
        info!("in child");
        let leaf = info_span!("query");
        let _l = leaf.enter();
        info!("in leaf");
        (
            common::span_context(&root),
            common::span_context(&child),
            common::span_context(&leaf),
        )
    });
    assert_eq!(lines.len(), 3);
    assert_eq!(root.trace_id(), leaf.trace_id());
    assert_ne!(root.span_id(), leaf.span_id());
    for (line, sc) in lines.iter().zip([&root, &child, &leaf]) {
        assert_eq!(line.str("trace.id"), trace_hex(sc), "{line:?}");
        assert_eq!(line.str("span.id"), span_hex(sc), "{line:?}");
        assert_eq!(line.str("transaction.id"), span_hex(&root), "{line:?}");
    }
}

#[test]
fn ecs_transaction_id_per_root() {
    // Two sibling roots: each line names its own root.
    let (lines, (a, b)) = run(Schema::ecs(), || {
        let a = info_span!("a");
        a.in_scope(|| info_span!("a.child").in_scope(|| info!("one")));
        let b = info_span!("b");
        b.in_scope(|| info_span!("b.child").in_scope(|| info!("two")));
        (common::span_context(&a), common::span_context(&b))
    });
    assert_eq!(lines[0].str("transaction.id"), span_hex(&a));
    assert_eq!(lines[1].str("transaction.id"), span_hex(&b));
}

#[test]
fn ecs_event_dataset_follows_the_service_name() {
    let (line, ()) = one(
        Schema::ecs()
            .service_name("payments")
            .service_version("2.1.0")
            .environment("production"),
        outside,
    );
    assert_keys(
        &line,
        &[
            "@timestamp",
            "log.level",
            "message",
            "log.logger",
            "service.name",
            "service.version",
            "service.environment",
            "event.dataset",
            "ecs.version",
            "order.item_count",
        ],
    );
    assert_eq!(line.str("service.name"), "payments");
    assert_eq!(line.str("event.dataset"), "payments");
    assert_eq!(line.str("service.version"), "2.1.0");
    assert_eq!(line.str("service.environment"), "production");
}

#[test]
fn ecs_labels_are_sanitised() {
    let schema = Schema::ecs()
        .label("team.name", "checkout")
        .label("a*b\\c", 7)
        .label("plain", true);
    let (line, ()) = one(schema, outside);
    assert!(line.has("labels"), "{line:?}");
    let labels = line.at("labels");
    let mut keys = labels.keys();
    keys.sort_unstable();
    assert_eq!(keys, ["a_b_c", "plain", "team_name"]);
    assert_eq!(labels.str("team_name"), "checkout");
    assert_eq!(labels.num("a_b_c"), "7");
    assert_eq!(labels.at("plain"), &Json::Bool(true));
    for k in labels.keys() {
        assert!(!k.contains(['.', '*', '\\']), "unsanitised label key {k:?}");
    }
    assert!(line.has("ecs.version"));
}

#[test]
fn ecs_labels_sanitised_the_same_way_are_one_key() {
    let schema = Schema::ecs().label("a.b", 1).label("a*b", 2);
    let (line, ()) = one(schema, outside);
    let labels = line.at("labels");
    assert_eq!(labels.keys(), ["a_b"]);
    assert_eq!(labels.num("a_b"), "2", "the later label wins");
}

#[test]
fn ecs_user_field_named_labels_does_not_collide() {
    let (line, ()) = one(Schema::ecs().label("team", "checkout"), || {
        info!(labels = "mine", "x");
    });
    assert_eq!(line.at("labels").str("team"), "checkout");
    assert_eq!(line.str("fields.labels"), "mine");
}

// ---------------------------------------------------------------------------------------------
// Google Cloud Logging

#[test]
fn gcp_inside_a_span() {
    let (line, sc) = one(Schema::gcp("my-project").service_name("orders"), in_span);
    assert_keys(
        &line,
        &[
            "timestamp",
            "severity",
            "message",
            "target",
            "logging.googleapis.com/trace",
            "logging.googleapis.com/spanId",
            "logging.googleapis.com/trace_sampled",
            "service.name",
            "order.item_count",
            "order.customer_id",
        ],
    );
    assert_eq!(line.str("timestamp"), NANOS);
    assert_eq!(line.str("severity"), "INFO");
    let trace = line.str("logging.googleapis.com/trace");
    let id = trace
        .strip_prefix("projects/my-project/traces/")
        .unwrap_or_else(|| panic!("trace without the project prefix: {trace:?}"));
    assert!(is_hex(id, 32), "{trace:?}");
    assert_eq!(id, trace_hex(&sc));
    assert_eq!(line.str("logging.googleapis.com/spanId"), span_hex(&sc));
    assert_eq!(
        line.at("logging.googleapis.com/trace_sampled"),
        &Json::Bool(true)
    );
}

#[test]
fn gcp_outside_a_span() {
    let (line, ()) = one(Schema::gcp("my-project"), outside);
    assert_keys(
        &line,
        &[
            "timestamp",
            "severity",
            "message",
            "target",
            "order.item_count",
        ],
    );
}

#[test]
fn gcp_with_an_error() {
    let (line, ()) = one(Schema::gcp("my-project"), with_error);
    assert_keys(
        &line,
        &["timestamp", "severity", "message", "target", "error"],
    );
    assert_eq!(line.str("severity"), "ERROR");
    assert_error_object(line.at("error"));
}

/// `with_file` / `with_line_number` on the gcp preset: the entry's source location, an object
/// with the line as a string (Cloud Logging's `LogEntrySourceLocation`), no top-level `file` or
/// `line`; user fields named `file` and `line` keep their names.
#[test]
fn gcp_file_and_line_are_the_source_location() {
    let (line, ()) = one(
        Schema::gcp("my-project")
            .enable(Key::File)
            .enable(Key::Line),
        || {
            info!(file = "report.csv", line = 3u64, "imported");
        },
    );
    let loc = line.at("logging.googleapis.com/sourceLocation");
    assert_eq!(loc.keys(), ["file", "line"], "{line:?}");
    assert_eq!(loc.str("file"), "tests/schemas.rs");
    let at: u64 = loc
        .str("line")
        .parse()
        .expect("the line as a decimal string");
    assert!(at > 600, "{at}");
    assert_eq!(line.str("file"), "report.csv");
    assert_eq!(line.num("line"), "3");

    // Only the line: the object has just it; neither: no object.
    let (line, ()) = one(Schema::gcp("p").enable(Key::Line), outside);
    assert_eq!(
        line.at("logging.googleapis.com/sourceLocation").keys(),
        ["line"]
    );
    let (line, ()) = one(Schema::gcp("p"), outside);
    assert!(
        !line.has("logging.googleapis.com/sourceLocation"),
        "{line:?}"
    );

    // Renamed: at the top level, under the new name, as before the object (the store's object
    // only knows `file` and `line`).
    let (line, ()) = one(
        Schema::gcp("p")
            .enable(Key::File)
            .enable(Key::Line)
            .rename(Key::File, "code.file"),
        outside,
    );
    assert!(
        !line.has("logging.googleapis.com/sourceLocation"),
        "{line:?}"
    );
    assert_eq!(line.str("code.file"), "tests/schemas.rs");
    assert!(line.has("line"), "{line:?}");
}

#[test]
fn gcp_severities() {
    let (lines, ()) = run(Schema::gcp("my-project"), every_level);
    let got: Vec<&str> = lines.iter().map(|l| l.str("severity")).collect();
    assert_eq!(got, ["DEBUG", "DEBUG", "INFO", "WARNING", "ERROR"]);
}

#[test]
fn gcp_trace_sampled_false() {
    let (lines, sc) = run_with(
        &provider_with(Sampler::AlwaysOff),
        Schema::gcp("my-project"),
        in_span,
    );
    let line = &lines[0];
    assert_eq!(
        line.str("logging.googleapis.com/trace"),
        format!("projects/my-project/traces/{}", trace_hex(&sc))
    );
    assert_eq!(
        line.at("logging.googleapis.com/trace_sampled"),
        &Json::Bool(false)
    );
}

#[test]
fn gcp_project_id_is_escaped_in_the_trace() {
    let (line, sc) = one(Schema::gcp("we\"ird\\proj"), in_span);
    assert_eq!(
        line.str("logging.googleapis.com/trace"),
        format!("projects/we\"ird\\proj/traces/{}", trace_hex(&sc))
    );
}

// ---------------------------------------------------------------------------------------------
// Datadog

#[test]
fn datadog_inside_a_span() {
    let (line, sc) = one(
        Schema::datadog()
            .service_name("orders")
            .service_version("1.2.3")
            .environment("prod"),
        in_span,
    );
    assert_keys(
        &line,
        &[
            "timestamp",
            "status",
            "message",
            "logger.name",
            "dd.trace_id",
            "dd.span_id",
            "dd.service",
            "dd.version",
            "dd.env",
            "order.item_count",
            "order.customer_id",
        ],
    );
    assert_eq!(line.str("timestamp"), MILLIS);
    assert_eq!(line.str("status"), "info");
    assert_eq!(line.str("logger.name"), "orders");
    assert!(is_decimal_u64(line.str("dd.trace_id")));
    assert!(is_decimal_u64(line.str("dd.span_id")));
    assert_eq!(line.str("dd.trace_id"), trace_low64(&sc));
    assert_eq!(line.str("dd.span_id"), span_u64(&sc));
    assert_eq!(line.str("dd.service"), "orders");
    assert_eq!(line.str("dd.version"), "1.2.3");
    assert_eq!(line.str("dd.env"), "prod");
}

#[test]
fn datadog_outside_a_span() {
    let (line, ()) = one(Schema::datadog(), outside);
    assert_keys(
        &line,
        &[
            "timestamp",
            "status",
            "message",
            "logger.name",
            "order.item_count",
        ],
    );
    assert_eq!(line.str("timestamp"), MILLIS);
}

#[test]
fn datadog_with_an_error() {
    let (line, ()) = one(Schema::datadog(), with_error);
    assert_keys(
        &line,
        &[
            "timestamp",
            "status",
            "message",
            "logger.name",
            "error.message",
            "error.stack",
        ],
    );
    assert_eq!(line.str("status"), "error");
    assert_eq!(line.str("error.message"), CHAIN[0]);
    assert_stack_text(line.str("error.stack"));
}

#[test]
fn datadog_statuses() {
    let (lines, ()) = run(Schema::datadog(), every_level);
    let got: Vec<&str> = lines.iter().map(|l| l.str("status")).collect();
    assert_eq!(got, ["trace", "debug", "info", "warn", "error"]);
}

#[test]
fn datadog_ids_over_many_spans() {
    // Many fresh ids, so high bits of the lower 64 and leading zero bytes are covered.
    let (lines, scs) = run(Schema::datadog(), || {
        (0..64)
            .map(|i| {
                let span = info_span!("s", i);
                span.in_scope(|| info!("x"));
                common::span_context(&span)
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(lines.len(), scs.len());
    for (line, sc) in lines.iter().zip(&scs) {
        assert_eq!(line.str("dd.trace_id"), trace_low64(sc), "{line:?}");
        assert_eq!(line.str("dd.span_id"), span_u64(sc), "{line:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// every preset

fn presets() -> Vec<(&'static str, Schema)> {
    vec![
        ("default", Schema::default()),
        ("otel", Schema::otel()),
        ("ecs", Schema::ecs()),
        ("gcp", Schema::gcp("my-project")),
        ("datadog", Schema::datadog()),
    ]
}

/// The trace id as `schema` spells it (with the GCP prefix, or Datadog's decimal).
fn spelled_trace_id(preset: &str, sc: &SpanContext) -> String {
    match preset {
        "gcp" => format!("projects/my-project/traces/{}", trace_hex(sc)),
        "datadog" => trace_low64(sc),
        _ => trace_hex(sc),
    }
}

#[test]
fn rename_trace_id_on_every_preset() {
    for (preset, schema) in presets() {
        let old = schema.key(Key::TraceId).expect("on").to_owned();
        let (line, sc) = one(schema.rename(Key::TraceId, "trace"), in_span);
        assert!(!line.has(&old), "{preset}: {old:?} still there: {line:?}");
        assert_eq!(
            line.str("trace"),
            spelled_trace_id(preset, &sc),
            "{preset}: {line:?}"
        );
    }
}

#[test]
fn rename_any_written_key_on_every_preset() {
    for (preset, schema) in presets() {
        let schema = schema
            .service_name("orders")
            .service_version("1")
            .environment("e");
        let (before, ()) = one(schema.clone(), || {
            in_span();
        });
        let mut renamed = 0;
        for key in Key::ALL {
            let Some(old) = schema.key(key).map(str::to_owned) else {
                continue;
            };
            if !before.has(&old) {
                continue; // not written on this line (opt-in, nested only, errors only)
            }
            let new = format!("renamed.{key:?}");
            let (after, ()) = one(schema.clone().rename(key, new.clone()), || {
                in_span();
            });
            let expected: Vec<String> = before
                .keys()
                .iter()
                .map(|k| {
                    if *k == old {
                        new.clone()
                    } else {
                        (*k).to_owned()
                    }
                })
                .collect();
            assert_eq!(
                after.keys(),
                expected,
                "{preset}: renaming {key:?} ({old:?}) to {new:?}"
            );
            assert!(!after.has(&old), "{preset}: {old:?} is still written");
            if !matches!(
                key,
                Key::Timestamp | Key::TraceId | Key::SpanId | Key::TransactionId
            ) {
                // Values do not depend on the key's name (the ids differ per run).
                assert_eq!(
                    after.at(&new),
                    before.at(&old),
                    "{preset}: value of {key:?}"
                );
            }
            renamed += 1;
        }
        assert!(renamed >= 7, "{preset}: only {renamed} keys tried");
    }
}

#[test]
fn rename_error_keys_on_flat_presets() {
    for (preset, schema) in [
        ("otel", Schema::otel()),
        ("ecs", Schema::ecs()),
        ("datadog", Schema::datadog()),
    ] {
        let old_msg = schema.key(Key::ErrorMessage).expect("on").to_owned();
        let old_st = schema.key(Key::ErrorStackTrace).expect("on").to_owned();
        let schema = schema
            .rename(Key::ErrorMessage, "err.msg")
            .rename(Key::ErrorStackTrace, "err.trace");
        let (line, ()) = one(schema, with_error);
        assert!(
            !line.has(&old_msg) && !line.has(&old_st),
            "{preset}: {line:?}"
        );
        assert_eq!(line.str("err.msg"), CHAIN[0], "{preset}");
        assert_stack_text(line.str("err.trace"));
    }
}

#[test]
fn renamed_key_is_reserved_against_user_fields() {
    for (preset, schema) in presets() {
        let (line, _) = one(schema.rename(Key::TraceId, "trace"), || {
            let span = info_span!("s");
            span.in_scope(|| info!(trace = "user value", "x"));
            common::span_context(&span)
        });
        assert_eq!(line.str("fields.trace"), "user value", "{preset}: {line:?}");
        assert_ne!(line.str("trace"), "user value", "{preset}");
    }
}

#[test]
fn every_preset_keeps_user_fields_named_like_its_keys() {
    // A user field spelled like one of the preset's own keys is moved under `fields.`.
    for (preset, schema) in presets() {
        let level_key = schema.key(Key::Level).expect("on").to_owned();
        let (line, _) = one(schema, || {
            let span = info_span!("s");
            span.in_scope(|| {
                info!(
                    level = "user-level",
                    "log.level" = "user-log-level",
                    severity = "user-severity",
                    status = "user-status",
                    "x"
                )
            });
            common::span_context(&span)
        });
        assert!(
            ["INFO", "info"].contains(&line.str(&level_key)),
            "{preset}: the level keeps its own value: {line:?}"
        );
        let values: Vec<&str> = line
            .keys()
            .iter()
            .filter_map(|k| line.at(k).as_str())
            .collect();
        for v in [
            "user-level",
            "user-log-level",
            "user-severity",
            "user-status",
        ] {
            assert!(values.contains(&v), "{preset}: {v:?} lost in {line:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// from_name

/// A line written with `schema` for the standard event outside a span, for comparing schemas.
fn fingerprint(schema: Schema) -> Vec<(String, Json)> {
    let schema = schema.service_name("svc");
    let (line, ()) = one(schema, outside);
    match line {
        Json::Obj(members) => members,
        _ => unreachable!(),
    }
}

fn same_preset(a: &Schema, b: &Schema) -> bool {
    Key::ALL.iter().all(|&k| a.key(k) == b.key(k))
        && fingerprint(a.clone()) == fingerprint(b.clone())
}

#[test]
fn from_name_every_preset() {
    let cases: [(&str, Schema); 12] = [
        ("default", Schema::default()),
        ("", Schema::default()),
        ("traceline", Schema::default()),
        ("otel", Schema::otel()),
        ("opentelemetry", Schema::otel()),
        ("ecs", Schema::ecs()),
        ("elastic", Schema::ecs()),
        (" ECS ", Schema::ecs()),
        ("datadog", Schema::datadog()),
        ("dd", Schema::datadog()),
        ("gcp:proj", Schema::gcp("proj")),
        ("GCP:proj", Schema::gcp("proj")),
    ];
    for (name, expected) in cases {
        let got = Schema::from_name(name).unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert!(same_preset(&got, &expected), "{name:?}");
    }
    // The presets differ from each other, so the comparison above means something.
    let all = presets();
    for (i, (a, sa)) in all.iter().enumerate() {
        for (b, sb) in &all[i + 1..] {
            assert!(!same_preset(sa, sb), "{a} and {b} look the same");
        }
    }
}

#[test]
fn from_name_gcp_with_project_writes_the_project() {
    let schema = Schema::from_name("gcp:proj-42").expect("gcp:<project>");
    let (line, sc) = one(schema, in_span);
    assert_eq!(
        line.str("logging.googleapis.com/trace"),
        format!("projects/proj-42/traces/{}", trace_hex(&sc))
    );
    assert_eq!(line.str("severity"), "INFO");
}

#[test]
fn from_name_unknown_is_a_clear_error() {
    // `gcp:` is a known schema without its project id: its own message (unit test in
    // `src/schema.rs`).
    for name in ["splunk", "ECS2", "json", "otel:x"] {
        let err = match Schema::from_name(name) {
            Ok(_) => panic!("{name:?} should not be a preset"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(
            msg.contains("default, otel, ecs, gcp, datadog"),
            "{name:?}: {msg}"
        );
        assert!(
            msg.contains(name),
            "{name:?}: the message names the input: {msg}"
        );
        let _: &dyn Error = &err;
    }
    let msg = match Schema::from_name("bad\nname") {
        Ok(_) => panic!("not a preset"),
        Err(e) => e.to_string(),
    };
    assert!(!msg.contains('\n'), "the name is escaped: {msg:?}");
}

#[test]
fn from_name_gcp_needs_a_project() {
    // The only test in this file that reads or writes GOOGLE_CLOUD_PROJECT.
    let saved = std::env::var_os("GOOGLE_CLOUD_PROJECT");
    // SAFETY: no other test in this binary touches the environment.
    unsafe { std::env::remove_var("GOOGLE_CLOUD_PROJECT") };
    let msg = match Schema::from_name("gcp") {
        Ok(_) => panic!("gcp without a project must fail"),
        Err(e) => e.to_string(),
    };
    assert!(msg.contains("GOOGLE_CLOUD_PROJECT"), "{msg}");
    assert!(msg.contains("gcp:<project-id>"), "{msg}");

    // SAFETY: as above.
    unsafe { std::env::set_var("GOOGLE_CLOUD_PROJECT", "env-proj") };
    let got = Schema::from_name("gcp");
    let google = Schema::from_name("google");
    match saved {
        // SAFETY: as above.
        Some(v) => unsafe { std::env::set_var("GOOGLE_CLOUD_PROJECT", v) },
        // SAFETY: as above.
        None => unsafe { std::env::remove_var("GOOGLE_CLOUD_PROJECT") },
    }
    for schema in [got, google] {
        let schema = schema.expect("gcp with GOOGLE_CLOUD_PROJECT set");
        let (line, sc) = one(schema, in_span);
        assert_eq!(
            line.str("logging.googleapis.com/trace"),
            format!("projects/env-proj/traces/{}", trace_hex(&sc))
        );
    }
}

/// Runs `f` under registry + traceline (no OpenTelemetry) with `schema` and the fixed clock;
/// returns the one line.
fn only_line_with(schema: Schema, f: impl FnOnce()) -> Json {
    let (cap, layer) = capture_layer();
    let layer = layer.with_schema(schema).with_clock(fixed_clock);
    with_default(tracing_subscriber::registry().with(layer), f);
    cap.only_line()
}

#[test]
fn flat_error_parts_switched_off_are_not_written_and_free_their_names() {
    // Stack traces off: message and type stay. A user field of that name is no collision.
    let line = only_line_with(Schema::ecs().disable(Key::ErrorStackTrace), || {
        error!(
            error = &chained_error() as &(dyn Error + 'static),
            error.stack_trace = "mine",
            "failed"
        );
    });
    assert_eq!(line.str("error.message"), "payment declined");
    assert_eq!(line.str("error.stack_trace"), "mine");
    // Every part off: the error is written under its own key, as an object, not lost.
    let off = Schema::ecs()
        .disable(Key::ErrorMessage)
        .disable(Key::ErrorType)
        .disable(Key::ErrorStackTrace);
    let line = only_line_with(off, || {
        error!(error = &chained_error() as &(dyn Error + 'static), "failed");
    });
    assert!(
        !line.keys().iter().any(|k| k.starts_with("error.")),
        "{line:?}"
    );
    assert_eq!(line.at("error").str("message"), "payment declined");
    // Only the type on, and an error whose type is not known (not given through
    // `record_error`): nothing of it could be written flat, so it is an object too.
    let type_only = Schema::ecs()
        .disable(Key::ErrorMessage)
        .disable(Key::ErrorStackTrace);
    let line = only_line_with(type_only.clone(), || {
        error!(error = &chained_error() as &(dyn Error + 'static), "failed");
    });
    // (Under the collision prefix: `error` is the dotted parent of `error.type`, still on.)
    assert!(!line.has("error.type"), "{line:?}");
    assert_eq!(line.at("fields.error").str("message"), "payment declined");
    // With its type known, the type is written flat.
    let line = only_line_with(type_only, || {
        traceline::record_error(&chained_error());
    });
    assert_eq!(line.str("error.type"), "schemas::Failure");
    assert!(!line.has("fields.error"), "{line:?}");
}

#[test]
fn nested_objects_switched_off_are_not_written_and_free_their_names() {
    use traceline::FieldLayout;
    let nested = || Schema::default().field_layout(FieldLayout::Nested);
    let in_span = || info_span!("req", a = 1u64).in_scope(|| info!(b = 2u64, "x"));
    // `span` off: a static field may take its name; the span list stays.
    let line = only_line_with(
        nested().disable(Key::Span).static_field("span", "blue"),
        in_span,
    );
    assert_eq!(line.str("span"), "blue");
    assert_eq!(line.at("spans").as_arr().len(), 1);
    // `spans` off: the innermost span stays.
    let line = only_line_with(nested().disable(Key::Spans), in_span);
    assert!(!line.has("spans"));
    assert_eq!(line.at("span").str("name"), "req");
    // `fields` off: the event's fields go at the top level, colliding ones behind the prefix.
    let line = only_line_with(nested().disable(Key::Fields), || {
        info_span!("req", a = 1u64).in_scope(|| info!(b = 2u64, span = "mine", "x"))
    });
    assert!(!line.has("fields"));
    assert_eq!(line.num("b"), "2");
    assert_eq!(line.str("fields.span"), "mine");
    assert_eq!(line.at("span").str("name"), "req");
}

#[test]
fn labels_switched_off_are_not_written() {
    let line = only_line_with(
        Schema::ecs().label("team", "payments").disable(Key::Labels),
        || info!(labels = "mine", "x"),
    );
    assert_eq!(line.str("labels"), "mine");
}

/// No key of a line is the dotted parent of another (Elasticsearch and Datadog expand dotted
/// keys into objects, and refuse a value and an object under one name): a user field named
/// like the parent or a child of a key the preset writes takes the `fields.` prefix.
#[test]
fn a_field_named_like_the_parent_or_child_of_a_line_key_is_prefixed() {
    for schema in [
        Schema::ecs().service_name("pay"),
        Schema::default().service_name("pay"),
        Schema::datadog().service_name("pay"),
    ] {
        let (line, ()) = one(schema, || {
            let err = chained_error();
            error!(
                error = &err as &dyn Error,
                log = "x",
                service = "stripe",
                trace = "t",
                message.id = 7,
                "write failed"
            )
        });
        no_value_is_a_parent(&line.keys(), &line);
        assert_eq!(line.str("fields.service"), "stripe", "{line:?}");
    }
}

/// A field named like the collision prefix's stem (`fields`) would be a value beside the keys
/// renamed under it (`fields.error`, `fields.service`): it is renamed too, for event, span and
/// static fields alike, and wherever fields go at the top level (also nested with the `fields`
/// object off).
#[test]
fn a_field_named_like_the_collision_prefix_is_prefixed_too() {
    let no_parent_value = |line: &Json| {
        let keys = line.keys();
        no_value_is_a_parent(&keys, line);
        assert!(keys.iter().all(|k| *k != "fields"), "{line:?}");
    };
    let schemas = || {
        [
            Schema::ecs().service_name("pay"),
            Schema::datadog().service_name("pay"),
            Schema::default().service_name("pay"),
            Schema::default()
                .service_name("pay")
                .field_layout(traceline::FieldLayout::Nested)
                .disable(Key::Fields),
        ]
    };
    for (i, schema) in schemas().into_iter().enumerate() {
        let flat = i < 3;
        let (lines, ()) = run(schema, || {
            let err = chained_error();
            error!(
                error = &err as &dyn Error,
                service = "stripe",
                fields = "name,email",
                "update failed"
            );
            let span = info_span!("op", fields = "span", service = "s");
            let _e = span.enter();
            info!("inside");
        });
        assert_eq!(lines.len(), 2);
        lines.iter().for_each(no_parent_value);
        assert_eq!(
            lines[0].str("fields.fields"),
            "name,email",
            "{:?}",
            lines[0]
        );
        assert_eq!(lines[0].str("fields.service"), "stripe", "{:?}", lines[0]);
        if flat {
            assert_eq!(lines[1].str("fields.fields"), "span", "{:?}", lines[1]);
        } else {
            // Nested: span fields are in the span's object, beside its name.
            assert_eq!(lines[1].at("span").str("fields"), "span", "{:?}", lines[1]);
        }
    }
    for schema in schemas() {
        let (line, ()) = one(schema.static_field("fields", "static"), || {
            info!(service = "stripe", "x")
        });
        no_parent_value(&line);
        assert_eq!(line.str("fields.fields"), "static", "{line:?}");
        assert_eq!(line.str("fields.service"), "stripe", "{line:?}");
    }
}

/// A static field named like a line key gets the collision prefix with the nested layout too
/// (building the schema used to loop for ever: the prefixed key is a child of the reserved
/// `fields` object's key).
#[test]
fn a_static_field_named_like_a_line_key_is_prefixed_with_nested_fields() {
    for (schema, key) in [
        (
            Schema::datadog()
                .field_layout(traceline::FieldLayout::Nested)
                .static_field("host", "web-1"),
            "host",
        ),
        (
            Schema::default()
                .field_layout(traceline::FieldLayout::Nested)
                .static_field("level", "web-1"),
            "level",
        ),
        (
            Schema::ecs()
                .field_layout(traceline::FieldLayout::Nested)
                .static_field("log.level", "web-1"),
            "log.level",
        ),
    ] {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(
                one(schema, || {
                    info!(
                        n = 1,
                        host = "user",
                        level = "user",
                        log.level = "user",
                        fields = "x",
                        "x"
                    )
                })
                .0,
            );
        });
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the schema is built and the line written");
        assert_eq!(line.str(&format!("fields.{key}")), "web-1", "{line:?}");
        assert_eq!(line.at("fields").num("n"), "1", "{line:?}");
        // The event's own field of that name, inside `fields`, takes the prefix there: once
        // dotted keys are expanded, no path is written twice.
        assert_eq!(
            line.at("fields").str(&format!("fields.{key}")),
            "user",
            "{line:?}"
        );
        let paths = distinct_paths(&line);
        no_value_is_a_parent(&paths, &line);
    }
}

/// Asserts that no key (or path) of `line` is the dotted parent of another: stores that expand
/// dotted keys refuse a value and an object under one name.
fn no_value_is_a_parent<K: AsRef<str>>(keys: &[K], line: &Json) {
    for a in keys {
        for b in keys {
            assert!(
                !b.as_ref().starts_with(&format!("{}.", a.as_ref())),
                "{:?} is a value and the parent of {:?}: {line:?}",
                a.as_ref(),
                b.as_ref()
            );
        }
    }
}

/// The paths of `line`'s values once dotted keys are expanded, checked to be written once each.
fn distinct_paths(line: &Json) -> Vec<String> {
    let mut paths = Vec::new();
    leaf_paths("", line, &mut paths);
    let mut sorted = paths.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), paths.len(), "a path twice: {line:?}");
    paths
}

/// The paths of a line's values once dotted keys are expanded (`a.b` and `{"a":{"b":…}}` are
/// the same path).
fn leaf_paths(prefix: &str, v: &Json, out: &mut Vec<String>) {
    match v {
        Json::Obj(members) => {
            for (k, v) in members {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_paths(&path, v, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// Names the store reads as its own, though the preset does not write them: Cloud Logging's
/// `time`, `httpRequest`, …; Datadog's `host`, `service`, `source`.
#[test]
fn fields_named_like_a_stores_special_fields_are_prefixed() {
    let (line, ()) = one(Schema::gcp("p"), || {
        info!(time = "yesterday", httpRequest = "GET /", "x")
    });
    assert_eq!(line.str("fields.time"), "yesterday", "{line:?}");
    assert_eq!(line.str("fields.httpRequest"), "GET /", "{line:?}");
    assert!(!line.has("time") && !line.has("httpRequest"), "{line:?}");
    let (line, ()) = one(Schema::datadog().service_name("orders"), || {
        info!(service = "stripe", host = "h", source = "s", "x")
    });
    for k in ["service", "host", "source"] {
        assert!(!line.has(k), "{k}: {line:?}");
        assert!(line.has(&format!("fields.{k}")), "{k}: {line:?}");
    }
}

/// ECS with nested fields: the span object is not written under `span`, ECS's own object
/// (beside `span.id`).
#[test]
fn ecs_nested_span_object_is_not_ecs_span() {
    let (line, ()) = one(
        Schema::ecs().field_layout(traceline::FieldLayout::Nested),
        || info_span!("order", id = 7).in_scope(|| info!("x")),
    );
    assert!(!line.has("span"), "{line:?}");
    assert_eq!(line.at("tracing.span").str("name"), "order", "{line:?}");
}

/// Cloud Logging takes `logging.googleapis.com/labels` as the entry's labels, a map of
/// strings: the gcp preset writes labels there, values as strings, keys as given.
#[test]
fn gcp_labels_are_the_entrys_string_labels() {
    let (line, ()) = one(
        Schema::gcp("p")
            .label("shard", 3)
            .label("team.name", "checkout"),
        outside,
    );
    let labels = line.at("logging.googleapis.com/labels");
    assert_eq!(labels.str("shard"), "3", "{line:?}");
    assert_eq!(labels.str("team.name"), "checkout", "{line:?}");
    assert!(!line.has("labels"), "{line:?}");
    // ECS keeps its own rules.
    let (line, ()) = one(Schema::ecs().label("team.name", "checkout"), outside);
    assert_eq!(line.at("labels").str("team_name"), "checkout");
}

/// The local root's span id (`Key::TransactionId`) is spelled as the span ids are: with
/// Datadog's decimal ids, on the root span's own line it equals `dd.span_id`.
#[test]
fn the_transaction_id_is_spelled_as_the_span_ids() {
    let (line, sc) = one(Schema::datadog().enable(Key::TransactionId), in_span);
    assert_eq!(line.str("dd.span_id"), span_u64(&sc));
    assert_eq!(line.str("transactionId"), span_u64(&sc), "{line:?}");
    let (line, sc) = one(Schema::default().enable(Key::TransactionId), in_span);
    assert_eq!(line.str("transactionId"), span_hex(&sc), "{line:?}");
}

/// Two keys renamed onto one name, or onto each other's dotted parent: the later key takes the
/// collision prefix, and the line has no key twice, nor a value that is a parent.
#[test]
fn keys_renamed_onto_each_other_are_not_written_twice() {
    let (line, _) = one(Schema::default().rename(Key::Target, "level"), in_span);
    assert_eq!(line.str("level"), "INFO");
    assert_eq!(line.str("fields.level"), "orders", "{line:?}");
    let (line, _) = one(
        Schema::default()
            .rename(Key::Target, "msg")
            .rename(Key::Message, "msg.text"),
        in_span,
    );
    // The message's key comes first in the line, and keeps its name.
    assert_eq!(line.str("msg.text"), "order created", "{line:?}");
    assert_eq!(line.str("fields.msg"), "orders", "{line:?}");
}

/// Keys renamed onto the collision prefix's stem, onto each other, or onto the fields object's
/// key: the schema settles (building it used to recurse without end), and the line has no key
/// twice nor a path that is a value and a parent, every key's value still on it.
#[test]
fn keys_renamed_onto_the_stem_or_each_other_settle() {
    use traceline::FieldLayout::{Flatten, Nested};
    let schemas = [
        Schema::default()
            .rename(Key::Target, "fields")
            .rename(Key::ThreadName, "level"),
        Schema::default()
            .rename(Key::Fields, "level")
            .field_layout(Nested),
        Schema::default()
            .rename(Key::Level, "fields")
            .field_layout(Nested),
        Schema::default()
            .rename(Key::Level, "fields")
            .rename(Key::Message, "fields"),
        Schema::default()
            .rename(Key::Level, "fields")
            .rename(Key::Target, "fields.x"),
        Schema::default()
            .rename(Key::Target, "fields.fields")
            .rename(Key::Level, "level")
            .rename(Key::Message, "level"),
        Schema::default()
            .rename(Key::Target, "fields")
            .field_layout(Flatten),
    ];
    for schema in schemas {
        let (line, _) = one(schema.clone(), || {
            info_span!("s", job = 7).in_scope(|| info!(target: "orders", message2 = 1, "hello"))
        });
        let paths = distinct_paths(&line);
        no_value_is_a_parent(&paths, &line);
        let text = format!("{line:?}");
        for v in ["INFO", "orders", "hello"] {
            assert!(text.contains(v), "{v} lost: {schema:?} {line:?}");
        }
    }
}

/// ECS writes the service name as `event.dataset` too, unless a key of the line took that name.
#[test]
fn a_key_named_event_dataset_is_not_written_twice() {
    let (line, _) = one(
        Schema::ecs()
            .rename(Key::Target, "event.dataset")
            .service_name("svc"),
        in_span,
    );
    let mut paths = Vec::new();
    leaf_paths("", &line, &mut paths);
    assert_eq!(
        paths.iter().filter(|p| *p == "event.dataset").count(),
        1,
        "{line:?}"
    );
    assert_eq!(line.str("event.dataset"), "orders");
}

/// With no message on the line, the message is left out and a second field named `message`,
/// a user field, is kept.
#[test]
fn with_no_message_a_second_message_field_is_kept() {
    let (line, _) = one(Schema::default().disable(Key::Message), || {
        info!(message = "first", message = "second")
    });
    let text = format!("{line:?}");
    assert!(!text.contains("first"), "{line:?}");
    assert!(text.contains("second"), "a user field lost: {line:?}");
}

/// Renames that leave every prefixed name a child of a key (the stem's dotted parent is a
/// key; a name's prefixed parents are all keys): the schema still builds, keys distinct.
#[test]
fn renames_no_prefix_can_settle_still_build() {
    use traceline::FieldLayout::Flatten;
    let builds = |schema: Schema| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (line, _) = one(schema, in_span);
            let _ = tx.send(line);
        });
        rx.recv_timeout(std::time::Duration::from_secs(20))
            .expect("building the schema never finished")
    };
    for schema in [
        Schema::default()
            .field_layout(Flatten)
            .rename(Key::Fields, "a.b")
            .rename(Key::Timestamp, "a")
            .rename(Key::Target, "level"),
        Schema::default()
            .rename(Key::Timestamp, "x")
            .rename(Key::Level, "fields.x")
            .rename(Key::SeverityNumber, "fields.fields.x")
            .rename(Key::Message, "fields.fields.fields.x")
            .rename(Key::Target, "fields.fields.fields.fields.x")
            .rename(Key::TraceId, "x.y"),
    ] {
        let line = builds(schema);
        distinct_paths(&line);
    }
}

/// The layer's own settings that change a line hold whatever their order around
/// `with_schema`: set before it or after, the ECS line is the same (exact keys, in order, and
/// values), and a setting wins over what the schema set itself.
#[test]
fn layer_settings_hold_before_or_after_with_schema() {
    use traceline::{FieldLayout, TimestampFormat};
    type Settings = fn(traceline::Layer<common::Capture>) -> traceline::Layer<common::Capture>;
    let settings: Settings = |l| {
        l.with_service_name("orders")
            .with_service_version("1.4.2")
            .with_environment("staging")
            .with_static_field("region", "eu-west-1")
            .with_file(true)
            .with_line_number(true)
            .with_thread_names(true)
            .with_target(false)
            .with_trace_flags(true)
            .with_timestamp_format(TimestampFormat::Rfc3339Millis)
            .with_field_layout(FieldLayout::Nested)
    };
    let provider = provider();
    let line = |settings_first: bool| {
        let (cap, layer) = capture_layer();
        let schema = Schema::ecs().service_name("from-the-schema");
        let layer = if settings_first {
            settings(layer).with_schema(schema)
        } else {
            settings(layer.with_schema(schema))
        };
        let layer = layer.with_clock(fixed_clock);
        with_default(otel_subscriber(&provider, layer), || {
            info_span!(target: "orders", "createOrder", order.customer_id = 42).in_scope(|| {
                // One call site for both runs: the same file and line.
                event!(target: "orders", Level::INFO, order.item_count = 3, "order created");
            })
        });
        let mut lines = cap.lines();
        assert_eq!(lines.len(), 1);
        // Each run has a trace of its own: the ids are left out.
        match lines.remove(0) {
            Json::Obj(members) => Json::Obj(
                members
                    .into_iter()
                    .filter(|(k, _)| {
                        !["trace.id", "span.id", "transaction.id"].contains(&k.as_str())
                    })
                    .collect(),
            ),
            other => panic!("not an object: {other:?}"),
        }
    };
    let after = line(false);
    let before = line(true);
    assert_eq!(before.keys(), after.keys());
    assert_eq!(before, after);
    assert_eq!(before.str("service.name"), "orders", "{before:?}");
    assert_eq!(before.str("service.version"), "1.4.2");
    assert_eq!(before.str("region"), "eu-west-1");
    assert_eq!(before.str("@timestamp"), MILLIS);
    for key in [
        "log.origin.file.name",
        "log.origin.file.line",
        "process.thread.name",
    ] {
        assert!(before.has(key), "{key}: {before:?}");
    }
    assert!(!before.has("log.logger"), "{before:?}");
    assert!(
        before.keys().iter().any(|k| k.ends_with("environment")),
        "{before:?}"
    );
}

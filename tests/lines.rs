//! The shape of each line: keys, order, values, escaping, layouts, timestamps and write errors.

mod common;

use std::error::Error;
use std::fmt;
use std::io;
use std::time::{Duration, UNIX_EPOCH};

use common::{
    Capture, Json, assert_ids, capture_layer, check_line, fixed_clock, otel_subscriber, provider,
    span_context,
};
use traceline::{FieldLayout, TimestampFormat};
use tracing::subscriber::with_default;
use tracing::{debug, error, field, info, info_span, trace, warn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

/// Runs `f` under registry + traceline (no OpenTelemetry layer) with a fixed clock.
fn plain<W>(layer: traceline::Layer<W>, f: impl FnOnce())
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let subscriber = tracing_subscriber::registry().with(layer.with_clock(fixed_clock));
    with_default(subscriber, f);
}

fn one_line(f: impl FnOnce()) -> Json {
    let (cap, layer) = capture_layer();
    plain(layer, f);
    cap.only_line()
}

#[test]
fn exact_line_without_span() {
    let (cap, layer) = capture_layer();
    plain(layer, || {
        info!(target: "orders", customer_id = 42, item_count = 3_u64, "order created");
    });
    assert_eq!(
        cap.text(),
        "{\"timestamp\":\"2026-11-25T10:32:03.123456789Z\",\"level\":\"INFO\",\
         \"message\":\"order created\",\"target\":\"orders\",\
         \"customer_id\":42,\"item_count\":3}\n"
    );
    assert_eq!(cap.write_calls(), 1);
}

#[test]
fn exact_line_inside_a_span_with_ids() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let sc = with_default(
        otel_subscriber(&provider, layer.with_clock(fixed_clock)),
        || {
            let span = info_span!("createOrder");
            span.in_scope(|| warn!(target: "orders", attempt = 2, "slow"));
            span_context(&span)
        },
    );
    assert_eq!(
        cap.text(),
        format!(
            "{{\"timestamp\":\"2026-11-25T10:32:03.123456789Z\",\"level\":\"WARN\",\
             \"message\":\"slow\",\"target\":\"orders\",\"traceId\":\"{}\",\"spanId\":\"{}\",\
             \"traceFlags\":\"01\",\"attempt\":2}}\n",
            sc.trace_id(),
            sc.span_id()
        )
    );
}

#[test]
fn key_order_with_every_optional_key() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let layer = layer
        .with_file(true)
        .with_line_number(true)
        .with_thread_names(true)
        .with_thread_ids(true)
        .with_service_name("orders")
        .with_service_version("1.2.3")
        .with_environment("staging")
        .with_static_field("region", "eu-west-1");
    with_default(otel_subscriber(&provider, layer), || {
        info_span!("s", span_field = 1).in_scope(|| info!(event_field = 2, "ordered"));
    });
    let line = cap.only_line();
    assert_eq!(
        line.keys(),
        [
            "timestamp",
            "level",
            "message",
            "target",
            "traceId",
            "spanId",
            "traceFlags",
            "file",
            "line",
            "threadName",
            "threadId",
            "service.name",
            "service.version",
            "deployment.environment",
            "region",
            "event_field",
            "span_field",
        ]
    );
}

#[test]
fn levels() {
    let (cap, layer) = capture_layer();
    let subscriber = tracing_subscriber::registry()
        .with(layer.with_filter(tracing_subscriber::filter::LevelFilter::TRACE));
    with_default(subscriber, || {
        trace!("t");
        debug!("d");
        info!("i");
        warn!("w");
        error!("e");
    });
    let levels: Vec<String> = cap
        .lines()
        .iter()
        .map(|l| l.str("level").to_owned())
        .collect();
    assert_eq!(levels, ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]);
}

#[test]
fn opt_in_keys_are_off_by_default() {
    let line = one_line(|| info!("plain"));
    for key in ["file", "line", "threadName", "threadId", "service.name"] {
        assert!(!line.has(key), "{key:?} should be opt-in: {line:?}");
    }
    assert_eq!(line.keys(), ["timestamp", "level", "message", "target"]);
}

#[test]
fn file_and_line() {
    let (cap, layer) = capture_layer();
    let mut expected_line = 0;
    plain(layer.with_file(true).with_line_number(true), || {
        expected_line = line!() + 1;
        info!("here");
    });
    let line = cap.only_line();
    assert_eq!(line.str("file"), file!());
    assert_eq!(line.num("line"), expected_line.to_string());
}

#[test]
fn thread_name_and_id() {
    let (cap, layer) = capture_layer();
    let layer = layer.with_thread_names(true).with_thread_ids(true);
    std::thread::Builder::new()
        .name("worker-\"7\"".to_owned())
        .spawn(move || plain(layer, || info!("from a named thread")))
        .unwrap()
        .join()
        .unwrap();
    let (cap2, layer2) = capture_layer();
    let layer2 = layer2.with_thread_names(true).with_thread_ids(true);
    std::thread::Builder::new()
        .name("other".to_owned())
        .spawn(move || plain(layer2, || info!("from another thread")))
        .unwrap()
        .join()
        .unwrap();
    let line = cap.only_line();
    assert_eq!(line.str("threadName"), "worker-\"7\"");
    let id: u64 = line
        .num("threadId")
        .parse()
        .expect("threadId is an integer");
    assert!(id > 0);
    let other: u64 = cap2.only_line().num("threadId").parse().unwrap();
    assert_ne!(id, other, "two threads, two ids");
}

#[test]
fn target_and_trace_flags_can_be_switched_off() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let layer = layer.with_target(false).with_trace_flags(false);
    with_default(otel_subscriber(&provider, layer), || {
        info_span!("s").in_scope(|| info!("x"));
    });
    let line = cap.only_line();
    assert!(!line.has("target"));
    assert!(!line.has("traceFlags"));
    assert!(line.has("traceId") && line.has("spanId"));
}

#[test]
fn static_fields_and_service_on_every_line() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let layer = layer
        .with_service_name("orders")
        .with_service_version("1.2.3")
        .with_environment("staging")
        .with_static_field("region", "eu-west-1")
        .with_static_field("pod", 3)
        .with_static_field("canary", true);
    with_default(otel_subscriber(&provider, layer), || {
        info!("outside");
        info_span!("s").in_scope(|| info!("inside"));
    });
    let lines = cap.lines();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(line.str("service.name"), "orders");
        assert_eq!(line.str("service.version"), "1.2.3");
        assert_eq!(line.str("deployment.environment"), "staging");
        assert_eq!(line.str("region"), "eu-west-1");
        assert_eq!(line.num("pod"), "3");
        assert_eq!(line.at("canary"), &Json::Bool(true));
    }
}

#[test]
fn static_and_user_fields_never_duplicate_schema_keys() {
    let (cap, layer) = capture_layer();
    let layer = layer
        .with_service_name("orders")
        .with_static_field("service.name", "shadowed")
        .with_static_field("level", "static-level")
        .with_static_field("region", "eu");
    plain(layer, || {
        info!(
            service.name = "user-service",
            region = "user-region",
            "collisions"
        );
    });
    let line = cap.only_line();
    assert_eq!(line.str("service.name"), "orders");
    assert_eq!(line.str("level"), "INFO");
    assert_eq!(line.str("fields.level"), "static-level");
    assert_eq!(line.str("region"), "eu");
    assert_eq!(line.str("fields.service.name"), "user-service");
    assert_eq!(line.str("fields.region"), "user-region");
}

#[test]
fn span_fields_are_merged_inner_over_outer_event_over_span() {
    let line = one_line(|| {
        let outer = info_span!("outer", user_id = "u1", a = 1, shared = "outer");
        let _o = outer.enter();
        let inner = info_span!("inner", a = 2, b = "inner", shared = "inner");
        let _i = inner.enter();
        info!(b = "event", c = 3, "merged");
    });
    assert_eq!(line.str("user_id"), "u1");
    assert_eq!(line.num("a"), "2");
    assert_eq!(line.str("b"), "event");
    assert_eq!(line.num("c"), "3");
    assert_eq!(line.str("shared"), "inner");
    assert!(!line.has("fields") && !line.has("span") && !line.has("spans"));
    let mut user_keys: Vec<&str> = line.keys()[4..].to_vec();
    user_keys.sort_unstable();
    assert_eq!(user_keys, ["a", "b", "c", "shared", "user_id"]);
}

#[test]
fn span_fields_of_an_explicit_parent() {
    let line = one_line(|| {
        let request = info_span!("request", user_id = "u9");
        let other = info_span!("other", user_id = "wrong", other_only = 1);
        let _o = other.enter();
        info!(parent: &request, "explicit");
    });
    assert_eq!(line.str("user_id"), "u9");
    assert!(!line.has("other_only"));
}

#[test]
fn nested_layout() {
    let (cap, layer) = capture_layer();
    plain(layer.with_field_layout(FieldLayout::Nested), || {
        let outer = info_span!("outer", user_id = "u1", a = 1);
        let _o = outer.enter();
        let inner = info_span!("inner", a = 2, name = "field called name");
        let _i = inner.enter();
        info!(b = "event", level = "user level", "nested");
    });
    let line = cap.only_line();
    assert_eq!(line.str("message"), "nested");
    assert_eq!(line.str("level"), "INFO");
    assert!(!line.has("user_id") && !line.has("a") && !line.has("b"));
    let fields = line.at("fields");
    assert_eq!(fields.str("b"), "event");
    assert_eq!(fields.str("level"), "user level");
    let span = line.at("span");
    assert_eq!(span.str("name"), "inner");
    assert_eq!(span.num("a"), "2");
    let spans = line.at("spans").as_arr();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0].str("name"), "outer");
    assert_eq!(spans[0].str("user_id"), "u1");
    assert_eq!(spans[0].num("a"), "1");
    assert_eq!(spans[1].str("name"), "inner");
    assert_eq!(spans[1].num("a"), "2");
    let renamed: Vec<&Json> = span
        .keys()
        .iter()
        .filter(|k| **k != "name")
        .map(|k| span.at(k))
        .collect();
    assert!(
        renamed.contains(&&Json::Str("field called name".to_owned())),
        "the span's own `name` field is kept under another key: {span:?}"
    );
}

#[test]
fn nested_layout_outside_spans() {
    let (cap, layer) = capture_layer();
    plain(layer.with_field_layout(FieldLayout::Nested), || {
        info!(x = 1, "no span");
    });
    let line = cap.only_line();
    assert_eq!(line.at("fields").num("x"), "1");
    assert!(!line.has("span") && !line.has("spans"));
}

#[test]
fn user_fields_with_reserved_names_are_renamed() {
    let line = one_line(|| {
        let span = info_span!("s", timestamp = "span ts", target = "span target");
        let _e = span.enter();
        info!(
            level = "user level",
            traceId = "user trace",
            spanId = "user span",
            traceFlags = "user flags",
            timestamp = 7,
            target = "user target",
            correlationId = "user corr",
            "reserved names"
        );
    });
    assert_eq!(line.str("level"), "INFO");
    assert_eq!(line.str("timestamp"), "2026-11-25T10:32:03.123456789Z");
    assert_eq!(line.str("target"), "lines");
    assert!(!line.has("traceId") && !line.has("spanId") && !line.has("traceFlags"));
    assert_eq!(line.str("fields.level"), "user level");
    assert_eq!(line.str("fields.traceId"), "user trace");
    assert_eq!(line.str("fields.spanId"), "user span");
    assert_eq!(line.str("fields.traceFlags"), "user flags");
    assert_eq!(line.num("fields.timestamp"), "7");
    assert_eq!(line.str("fields.target"), "user target");
    assert_eq!(line.str("fields.correlationId"), "user corr");
}

#[test]
fn renamed_keys_chain_instead_of_colliding() {
    let line = one_line(|| {
        info!(
            "fields.level" = "literal",
            level = "renamed",
            "fields.fields.level" = "deeper",
            "chain"
        );
    });
    let mut values: Vec<(&str, &str)> = line
        .keys()
        .into_iter()
        .filter(|k| k.ends_with("level") && *k != "level")
        .map(|k| (k, line.str(k)))
        .collect();
    values.sort_unstable();
    assert_eq!(values.len(), 3, "{line:?}");
    let mut found: Vec<&str> = values.iter().map(|(_, v)| *v).collect();
    found.sort_unstable();
    assert_eq!(found, ["deeper", "literal", "renamed"]);
    assert_eq!(line.str("fields.level"), "literal");
}

#[test]
fn duplicate_field_names_in_one_event() {
    let line = one_line(|| info!(a = 1, a = 2, "dup"));
    let mut nums: Vec<&str> = line
        .keys()
        .into_iter()
        .filter(|k| k.ends_with('a'))
        .map(|k| line.num(k))
        .collect();
    nums.sort_unstable();
    assert_eq!(nums, ["1", "2"]);
}

#[test]
fn duplicate_field_names_in_one_span_keep_both_values() {
    // As in an event: the first keeps the name, the second goes behind the prefix. A value
    // recorded later by name replaces the first field's value only.
    let line = one_line(|| {
        let span = info_span!("s", a = 1, a = 2);
        let _e = span.enter();
        info!("in span");
    });
    assert_eq!(line.num("a"), "1");
    assert_eq!(line.num("fields.a"), "2");
    let line = one_line(|| {
        let span = info_span!("s", a = 1, a = 2);
        span.record("a", 3);
        let _e = span.enter();
        info!("in span");
    });
    assert_eq!(line.num("a"), "3");
    assert_eq!(line.num("fields.a"), "2");
}

#[test]
fn user_field_named_message_next_to_a_format_message() {
    let line = one_line(|| info!(message = "user value", "the real message"));
    assert_eq!(line.str("message"), "the real message");
    assert_eq!(line.str("fields.message"), "user value");
}

#[test]
fn message_given_as_a_field_only() {
    let line = one_line(|| info!(message = "only as a field", x = 1));
    assert_eq!(line.str("message"), "only as a field");
    assert!(!line.has("fields.message"));
}

#[test]
fn event_without_message() {
    let line = one_line(|| info!(x = 1));
    assert!(!line.has("message") || line.str("message").is_empty());
    assert_eq!(line.num("x"), "1");
}

#[test]
fn control_characters_and_line_separators_are_escaped() {
    let mut all_controls: String = (0u8..0x20).map(char::from).collect();
    all_controls.push_str("\u{7f}\u{2028}\u{2029}\u{1b}[31mred\u{1b}[0m\"\\/é日本😀");
    let (cap, layer) = capture_layer();
    let subject = all_controls.clone();
    plain(layer, move || {
        let span = info_span!("s", span_value = subject.as_str());
        let _e = span.enter();
        info!(value = subject.as_str(), debug = ?subject, "{subject}");
    });
    let text = cap.text();
    assert!(text.contains(r"\u001b[31mred\u001b[0m"), "{text}");
    assert!(
        text.contains(r"\u2028") && text.contains(r"\u2029"),
        "{text}"
    );
    assert!(text.contains(r"\u0000"), "{text}");
    let line = check_line(&text);
    assert_eq!(line.str("message"), all_controls);
    assert_eq!(line.str("value"), all_controls);
    assert_eq!(line.str("span_value"), all_controls);
    assert_eq!(line.str("debug"), format!("{all_controls:?}"));
}

#[test]
fn field_names_are_escaped() {
    let line = one_line(|| {
        info!(
            "a\"b" = 1,
            "a\nb" = 2,
            "a\u{1b}b" = 3,
            "é" = 4,
            "x\u{2028}" = 5,
            "names"
        );
    });
    assert_eq!(line.num("a\"b"), "1");
    assert_eq!(line.num("a\nb"), "2");
    assert_eq!(line.num("a\u{1b}b"), "3");
    assert_eq!(line.num("é"), "4");
    assert_eq!(line.num("x\u{2028}"), "5");
}

#[test]
fn multi_line_message_stays_on_one_line() {
    let (cap, layer) = capture_layer();
    plain(layer, || {
        info!("first\nsecond\r\nthird\u{2028}fourth");
        info!("{}", "a\n".repeat(100) + "end");
    });
    let text = cap.text();
    assert_eq!(text.matches('\n').count(), 2, "{text}");
    let lines = cap.lines();
    assert_eq!(
        lines[0].str("message"),
        "first\nsecond\r\nthird\u{2028}fourth"
    );
    assert_eq!(lines[1].str("message"), "a\n".repeat(100) + "end");
}

#[test]
fn non_finite_floats_are_strings() {
    let (cap, layer) = capture_layer();
    plain(layer, || {
        let span = info_span!("s", span_nan = f64::NAN, span_inf = f64::INFINITY);
        let _e = span.enter();
        info!(
            nan = f64::NAN,
            inf = f64::INFINITY,
            neg_inf = f64::NEG_INFINITY,
            neg_zero = -0.0_f64,
            half = 0.5_f64,
            tiny = 5e-324_f64,
            big = 1e300_f64,
            "floats"
        );
    });
    let line = cap.only_line();
    assert_eq!(line.str("nan"), "NaN");
    assert_eq!(line.str("inf"), "Infinity");
    assert_eq!(line.str("neg_inf"), "-Infinity");
    assert_eq!(line.str("span_nan"), "NaN");
    assert_eq!(line.str("span_inf"), "Infinity");
    let f = |k: &str| line.num(k).parse::<f64>().unwrap();
    assert_eq!(f("half"), 0.5);
    assert_eq!(f("tiny"), 5e-324);
    assert_eq!(f("big"), 1e300);
    assert!(f("neg_zero") == 0.0 && f("neg_zero").is_sign_negative());
}

#[test]
fn wide_integers_are_exact() {
    let (cap, layer) = capture_layer();
    plain(layer, || {
        let span = info_span!("s", span_u128 = u128::MAX - 1);
        let _e = span.enter();
        info!(
            u128_max = u128::MAX,
            i128_min = i128::MIN,
            i128_max = i128::MAX,
            u64_max = u64::MAX,
            i64_min = i64::MIN,
            above_f64 = 9_007_199_254_740_993_u64,
            "wide"
        );
    });
    let text = cap.text();
    for expected in [
        "\"u128_max\":340282366920938463463374607431768211455",
        "\"i128_min\":-170141183460469231731687303715884105728",
        "\"i128_max\":170141183460469231731687303715884105727",
        "\"u64_max\":18446744073709551615",
        "\"i64_min\":-9223372036854775808",
        "\"above_f64\":9007199254740993",
        "\"span_u128\":340282366920938463463374607431768211454",
    ] {
        assert!(text.contains(expected), "{expected} not in {text}");
    }
    let line = check_line(&text);
    assert_eq!(line.num("u128_max"), u128::MAX.to_string());
}

#[derive(Debug)]
#[allow(dead_code)]
struct Point {
    x: i32,
    label: &'static str,
}

struct MultiLineDebug;

impl fmt::Debug for MultiLineDebug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("line one\nline two\u{1b}")
    }
}

struct FailingDebug;

impl fmt::Debug for FailingDebug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("partial \"")?;
        Err(fmt::Error)
    }
}

#[test]
fn debug_and_display_values() {
    let p = Point {
        x: -3,
        label: "a \"quoted\" label",
    };
    let line = one_line(|| {
        info!(
            point = ?p,
            shown = %"display \u{1b}",
            multi = ?MultiLineDebug,
            some = ?Some(1),
            "debug values"
        );
    });
    assert_eq!(line.str("point"), format!("{p:?}"));
    assert_eq!(line.str("shown"), "display \u{1b}");
    assert_eq!(line.str("multi"), "line one\nline two\u{1b}");
    assert_eq!(line.str("some"), "Some(1)");
}

#[test]
fn a_failing_debug_impl_still_gives_a_valid_line() {
    let line = one_line(|| info!(bad = ?FailingDebug, after = 1, "still valid"));
    assert!(matches!(line.at("bad"), Json::Str(_)), "{line:?}");
    assert_eq!(line.num("after"), "1");
    assert_eq!(line.str("message"), "still valid");
}

#[derive(Debug)]
struct PaymentError {
    source: GatewayError,
}

impl fmt::Display for PaymentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("payment declined")
    }
}

impl Error for PaymentError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

#[derive(Debug)]
struct GatewayError {
    source: io::Error,
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("gateway \"eu\" unavailable\nretry later")
    }
}

impl Error for GatewayError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

fn payment_error() -> PaymentError {
    PaymentError {
        source: GatewayError {
            source: io::Error::new(io::ErrorKind::TimedOut, "card network timed out"),
        },
    }
}

#[test]
fn error_values_with_their_source_chain() {
    let err = payment_error();
    let line = one_line(|| error!(error = &err as &dyn Error, "payment failed"));
    let e = line.at("error");
    assert_eq!(e.str("message"), "payment declined");
    let chain: Vec<&str> = e
        .at("chain")
        .as_arr()
        .iter()
        .map(|j| j.as_str().unwrap())
        .collect();
    assert_eq!(
        chain,
        [
            "gateway \"eu\" unavailable\nretry later",
            "card network timed out"
        ]
    );
}

#[test]
fn error_without_source_and_error_in_a_span() {
    let root = io::Error::other("plain failure");
    let err = payment_error();
    let line = one_line(|| {
        let span = info_span!("s", cause = &err as &dyn Error);
        let _e = span.enter();
        error!(error = &root as &dyn Error, "failed");
    });
    assert_eq!(line.at("error").str("message"), "plain failure");
    assert!(line.at("error").at("chain").as_arr().is_empty());
    assert_eq!(line.at("cause").str("message"), "payment declined");
    assert_eq!(line.at("cause").at("chain").as_arr().len(), 2);
}

#[test]
fn span_record_updates_fields() {
    let (cap, layer) = capture_layer();
    plain(layer, || {
        let span = info_span!("req", status = field::Empty, attempt = 1, user = "u1");
        let _e = span.enter();
        info!("before");
        span.record("status", 200);
        span.record("attempt", 2);
        info!("after");
        span.record("attempt", "third");
        span.record("user", field::display("u\n2"));
        info!("again");
    });
    let lines = cap.lines();
    assert!(!lines[0].has("status"));
    assert_eq!(lines[0].num("attempt"), "1");
    assert_eq!(lines[1].num("status"), "200");
    assert_eq!(lines[1].num("attempt"), "2");
    assert_eq!(lines[1].str("user"), "u1");
    assert_eq!(lines[2].str("attempt"), "third");
    assert_eq!(lines[2].str("user"), "u\n2");
    assert_eq!(lines[2].num("status"), "200");
}

#[test]
fn span_record_in_nested_layout() {
    let (cap, layer) = capture_layer();
    plain(layer.with_field_layout(FieldLayout::Nested), || {
        let span = info_span!("req", status = field::Empty);
        let _e = span.enter();
        span.record("status", 503);
        span.record("status", 504);
        info!("recorded");
    });
    let line = cap.only_line();
    assert_eq!(line.at("span").num("status"), "504");
    assert_eq!(line.at("spans").as_arr()[0].num("status"), "504");
}

#[test]
fn a_huge_field_is_written_intact_with_the_limits_off() {
    let huge: String = (0..1_048_576u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect::<String>()
        + "\n\"end\"";
    let (cap, layer) = capture_layer();
    let layer = layer
        .with_max_field_len(usize::MAX)
        .with_max_line_len(usize::MAX);
    let value = huge.clone();
    plain(layer, move || {
        info!(huge = value.as_str(), "{}", value);
    });
    let line = cap.only_line();
    assert_eq!(line.str("huge").len(), huge.len());
    assert_eq!(line.str("huge"), huge);
    assert_eq!(line.str("message"), huge);
    assert_eq!(cap.write_calls(), 1);
}

#[test]
fn timestamp_formats() {
    let cases = [
        (
            TimestampFormat::Rfc3339Nanos,
            "\"2026-11-25T10:32:03.123456789Z\"",
        ),
        (
            TimestampFormat::Rfc3339Micros,
            "\"2026-11-25T10:32:03.123456Z\"",
        ),
        (
            TimestampFormat::Rfc3339Millis,
            "\"2026-11-25T10:32:03.123Z\"",
        ),
        (TimestampFormat::UnixMillis, "1795602723123"),
        (TimestampFormat::UnixNanos, "1795602723123456789"),
    ];
    for (format, expected) in cases {
        let (cap, layer) = capture_layer();
        plain(layer.with_timestamp_format(format), || info!("t"));
        let text = cap.text();
        assert!(
            text.starts_with(&format!("{{\"timestamp\":{expected},\"level\"")),
            "{format:?}: {text}"
        );
        check_line(&text);
    }
}

#[test]
fn timestamp_from_the_real_clock_is_recent_utc() {
    let (cap, layer) = capture_layer();
    let subscriber = tracing_subscriber::registry().with(layer);
    let before = std::time::SystemTime::now();
    with_default(subscriber, || info!("now"));
    let after = std::time::SystemTime::now();
    let line = cap.only_line();
    let ts = line.str("timestamp");
    assert_eq!(ts.len(), 30, "{ts}");
    let parsed = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    assert_eq!(parsed.offset(), time::UtcOffset::UTC);
    let t: std::time::SystemTime = parsed.into();
    assert!(t >= before && t <= after, "{ts}");
}

/// A clock before 1970 (a host whose clock was never set) gives a valid line with that time,
/// not the epoch.
#[test]
fn clock_before_the_epoch_gives_a_valid_line_with_its_time() {
    let (cap, layer) = capture_layer();
    let subscriber = tracing_subscriber::registry()
        .with(layer.with_clock(|| UNIX_EPOCH - Duration::from_millis(1500)));
    with_default(subscriber, || info!("old"));
    assert_eq!(
        cap.only_line().str("timestamp"),
        "1969-12-31T23:59:58.500000000Z"
    );
}

#[test]
fn one_write_call_per_line() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    with_default(otel_subscriber(&provider, layer), || {
        let span = info_span!("s", a = "x".repeat(10_000));
        let _e = span.enter();
        for i in 0..20 {
            info!(i, big = "y".repeat(i * 1000), "line");
        }
    });
    assert_eq!(cap.write_calls(), 20);
    assert_eq!(cap.lines().len(), 20);
}

#[test]
fn ids_follow_the_schema_with_nested_layout() {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let sc = with_default(
        otel_subscriber(&provider, layer.with_field_layout(FieldLayout::Nested)),
        || {
            let span = info_span!("s");
            span.in_scope(|| info!(a = 1, "nested with ids"));
            span_context(&span)
        },
    );
    assert_ids(&cap.only_line(), &sc);
}

#[test]
fn capture_helper_sees_every_line() {
    let cap = Capture::new();
    let layer = traceline::layer().with_writer(cap.clone());
    plain(layer, || {
        for i in 0..3 {
            info!(i, "n");
        }
    });
    let lines = cap.lines();
    let seen: Vec<&str> = lines.iter().map(|l| l.num("i")).collect();
    assert_eq!(seen, ["0", "1", "2"]);
}

#[test]
fn span_field_named_message_or_level() {
    let line = one_line(|| {
        let span = info_span!("s", message = "span message", level = "span level");
        let _e = span.enter();
        info!("event message");
    });
    assert_eq!(line.str("message"), "event message");
    assert_eq!(line.str("level"), "INFO");
    assert_eq!(line.str("fields.message"), "span message");
    assert_eq!(line.str("fields.level"), "span level");
}

#[test]
fn static_field_values_are_escaped_like_event_values() {
    let (cap, layer) = capture_layer();
    let layer = layer
        .with_static_field("note", "a\u{2028}b\u{2029}c\u{1b}d\ne")
        .with_static_field(
            "nested",
            serde_json::json!({ "k": "x\u{2028}y", "list": ["\u{2029}"] }),
        )
        .with_service_name("svc\u{2028}");
    plain(layer, || info!("static values"));
    let text = cap.text();
    let line = check_line(&text);
    assert_eq!(line.str("note"), "a\u{2028}b\u{2029}c\u{1b}d\ne");
    assert_eq!(line.at("nested").str("k"), "x\u{2028}y");
    assert_eq!(line.str("service.name"), "svc\u{2028}");
}

/// The nested layout's list of spans runs from the root to the event's span, each span with
/// its own fields, however many there are (with text that needs escaping and characters of
/// several bytes, which the list's assembly must keep whole).
#[test]
fn nested_layout_lists_every_span_from_the_root_in_order() {
    let (cap, layer) = capture_layer();
    plain(layer.with_field_layout(FieldLayout::Nested), || {
        let mut entered = Vec::new();
        for level in 0..20u64 {
            let note = format!("lévél \"{level}\"\n€");
            entered.push(info_span!("level", level, note = note.as_str()).entered());
        }
        info!("deep");
    });
    let line = cap.only_line();
    let spans = line.at("spans").as_arr();
    assert_eq!(spans.len(), 20);
    for (i, span) in spans.iter().enumerate() {
        assert_eq!(span.str("name"), "level");
        assert_eq!(span.num("level"), i.to_string(), "{span:?}");
        assert_eq!(span.str("note"), format!("lévél \"{i}\"\n€"));
    }
    assert_eq!(line.at("span").num("level"), "19");
}

//! Values that try to break a line: a `Debug` or `Display` impl that panics, values past the
//! field length limit, lines past the line length limit. The program goes on and every line
//! is still one valid JSON object with its ids.
#![cfg(feature = "install")]

mod common;
mod install_support;

use std::fmt;

use common::{assert_ids, capture_layer, otel_subscriber, provider, span_context};
use install_support as support;
use tracing::subscriber::with_default;
use tracing::{error, info, info_span};
use tracing_subscriber::prelude::*;

/// Panics when formatted, after writing a little.
struct Panics;

impl fmt::Debug for Panics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{\"half")?;
        panic!("Debug panicked on purpose");
    }
}

impl fmt::Display for Panics {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        panic!("Display panicked on purpose");
    }
}

/// An error whose cause panics when asked for: `source()` itself panics.
#[derive(Debug)]
struct CauseOfPanic;

impl fmt::Display for CauseOfPanic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("outer failure")
    }
}

impl std::error::Error for CauseOfPanic {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        panic!("source() panicked on purpose");
    }
}

#[test]
fn an_error_whose_source_panics_keeps_its_message_and_the_rest_of_the_line() {
    let (cap, layer) = capture_layer();
    with_default(tracing_subscriber::registry().with(layer), || {
        let err = CauseOfPanic;
        let span = info_span!(
            "request",
            cause = &err as &(dyn std::error::Error + 'static)
        );
        let _e = span.enter();
        error!(
            before = 1,
            error = &err as &(dyn std::error::Error + 'static),
            after = "still here",
            "failed"
        );
    });
    let line = cap.only_line();
    for key in ["error", "cause"] {
        let object = line.at(key);
        assert_eq!(object.str("message"), "outer failure", "{key}: {object:?}");
        assert!(object.at("chain").as_arr().is_empty(), "{key}: {object:?}");
    }
    assert_eq!(line.num("before"), "1");
    assert_eq!(line.str("after"), "still here");
}

#[test]
fn a_panicking_debug_value_leaves_a_placeholder_and_the_rest_of_the_line() {
    // traceline alone: the OpenTelemetry layer formats span fields too, and does not catch.
    let (cap, layer) = capture_layer();
    with_default(tracing_subscriber::registry().with(layer), || {
        let span = info_span!("request", bad = ?Panics, ok = 1);
        let _e = span.enter();
        info!(before = 1, value = ?Panics, shown = %Panics, after = "still here", "{:?}", Panics);
    });
    let line = cap.only_line();
    assert_eq!(line.str("value"), "<Debug panicked>");
    // tracing hands `%value` to layers as a `Debug` value.
    assert_eq!(line.str("shown"), "<Debug panicked>");
    assert_eq!(line.str("message"), "<Debug panicked>");
    assert_eq!(line.str("bad"), "<Debug panicked>");
    assert_eq!(line.num("before"), "1");
    assert_eq!(line.num("ok"), "1");
    assert_eq!(line.str("after"), "still here");
}

#[test]
fn child_entry() {
    let Some(scenario) = support::scenario() else {
        return;
    };
    assert_eq!(scenario, "global_panicking_value");
    let _guard = traceline::builder().try_init().unwrap();
    let span = info_span!("job");
    let _e = span.enter();
    error!(value = ?Panics, "first");
    info!("second");
}

#[test]
fn a_panicking_value_does_not_crash_a_process_set_up_by_init() {
    let out = support::run("child_entry", "global_panicking_value", &[]);
    let lines = support::json_lines(&out.stdout);
    let messages: Vec<&str> = lines
        .iter()
        .filter_map(|l| support::str_of(l, "message"))
        .collect();
    assert_eq!(messages, ["first", "second"]);
    assert_eq!(
        support::str_of(&lines[0], "value"),
        Some("<Debug panicked>")
    );
    assert!(support::str_of(&lines[0], "traceId").is_some());
}

#[test]
fn values_past_the_field_limit_are_cut_with_a_marker() {
    let (cap, layer) = capture_layer();
    let layer = layer.with_max_field_len(10);
    let provider = provider();
    with_default(otel_subscriber(&provider, layer), || {
        let span = info_span!("s", span_text = "0123456789abcdef");
        let _e = span.enter();
        let err = std::io::Error::other("an error message longer than ten bytes");
        info!(
            text = "0123456789abcdef",
            short = "0123456789",
            utf8 = "ééééééé", // 14 bytes: cut inside no character
            debug = ?vec![1, 2, 3, 4, 5, 6, 7],
            error = &err as &dyn std::error::Error,
            "a message of more than ten bytes"
        );
    });
    let line = cap.only_line();
    assert_eq!(line.str("text"), "0123456789…[truncated 6 bytes]");
    assert_eq!(line.str("short"), "0123456789");
    assert_eq!(line.str("utf8"), "ééééé…[truncated 4 bytes]");
    assert_eq!(line.str("debug"), "[1, 2, 3, …[truncated]");
    assert_eq!(line.str("span_text"), "0123456789…[truncated 6 bytes]");
    // The message is `format_args!`, formatted like a `Debug` value: cut where it stops.
    assert_eq!(line.str("message"), "a message …[truncated]");
    assert_eq!(line.at("error").str("message"), "an error m…[truncated]");
}

#[test]
fn default_field_limit_is_64_kib() {
    assert_eq!(traceline::DEFAULT_MAX_FIELD_LEN, 64 * 1024);
    let (cap, layer) = capture_layer();
    let big = "z".repeat(traceline::DEFAULT_MAX_FIELD_LEN + 5);
    with_default(tracing_subscriber::registry().with(layer), || {
        info!(big = big.as_str(), fits = &big[..100])
    });
    let line = cap.only_line();
    let cut = line.str("big");
    assert!(
        cut.ends_with("…[truncated 5 bytes]"),
        "{}",
        &cut[cut.len() - 40..]
    );
    assert_eq!(
        cut.len(),
        traceline::DEFAULT_MAX_FIELD_LEN + "…[truncated 5 bytes]".len()
    );
    assert_eq!(line.str("fits").len(), 100);
}

#[test]
fn a_line_past_the_line_limit_keeps_its_core_keys_and_says_how_long_it_was() {
    let (cap, layer) = capture_layer();
    let layer = layer
        .with_max_line_len(4096)
        .with_service_name("orders")
        .with_static_field("region", "eu-west-1");
    let provider = provider();
    let chunk = "c".repeat(1000);
    let sc = with_default(otel_subscriber(&provider, layer), || {
        let _scope = traceline::correlation::scope(
            traceline::correlation::CorrelationId::parse("req-7").unwrap(),
        )
        .entered();
        let span = info_span!("s", span_field = chunk.as_str());
        let _e = span.enter();
        info!(
            a = chunk.as_str(),
            b = chunk.as_str(),
            c = chunk.as_str(),
            d = chunk.as_str(),
            "big"
        );
        info!(small = 1, "small");
        span_context(&span)
    });
    let lines = cap.lines();
    assert_eq!(lines.len(), 2);
    let big = &lines[0];
    for key in ["a", "b", "c", "d", "span_field"] {
        assert!(!big.has(key), "{key} kept: {:?}", big.keys());
    }
    assert_eq!(big.str("message"), "big");
    assert_eq!(big.str("level"), "INFO");
    assert_eq!(big.str("service.name"), "orders");
    assert_eq!(big.str("region"), "eu-west-1");
    assert_eq!(big.str("correlationId"), "req-7");
    assert!(
        big.has("timestamp") && big.has("target"),
        "{:?}",
        big.keys()
    );
    assert_ids(big, &sc);
    let whole: usize = big.num(traceline::TRUNCATED_KEY).parse().unwrap();
    assert!(whole > 5000, "{whole}");
    let text = cap.text();
    assert!(text.lines().next().unwrap().len() < 4096);
    // Lines under the limit are untouched.
    assert!(!lines[1].has(traceline::TRUNCATED_KEY));
    assert_eq!(lines[1].str("span_field"), chunk);
}

#[test]
fn a_long_message_is_shortened_until_the_line_fits_the_limit() {
    let (cap, layer) = capture_layer();
    let layer = layer.with_max_line_len(1024);
    let long = "m\"".repeat(25_000); // 50 KB, half of it escaped
    with_default(tracing_subscriber::registry().with(layer), || {
        info!(field = "x", "{long}");
        info!(field = "x", message_str = 1, "short");
    });
    let text = cap.text();
    let first = text.lines().next().unwrap();
    assert!(first.len() < 1024, "{} bytes", first.len());
    let lines = cap.lines();
    let message = lines[0].str("message");
    assert!(message.starts_with("m\"m\""), "{message}");
    assert!(message.ends_with("…[truncated]"), "{message}");
    assert!(!lines[0].has("field"));
    let whole: usize = lines[0].num(traceline::TRUNCATED_KEY).parse().unwrap();
    assert!(whole > 75_000, "{whole}");
    assert_eq!(lines[1].str("message"), "short");
}

#[test]
fn a_zero_line_limit_still_gives_valid_lines_with_the_core_keys() {
    let (cap, layer) = capture_layer();
    let layer = layer.with_max_line_len(0).with_max_field_len(0);
    with_default(tracing_subscriber::registry().with(layer), || {
        info!(field = "value", "message");
    });
    let line = cap.only_line();
    assert_eq!(line.str("level"), "INFO");
    assert!(!line.has("field"));
    assert!(line.has(traceline::TRUNCATED_KEY));
}

#[test]
fn the_truncation_key_never_collides_with_a_field_or_a_schema_key() {
    use traceline::{Key, Schema};
    let key = traceline::TRUNCATED_KEY;
    for schema in [
        Schema::default(),
        Schema::default().rename(Key::Target, key),
        Schema::ecs(),
    ] {
        let (cap, layer) = capture_layer();
        let layer = layer
            .with_schema(schema.static_field(key, "static"))
            .with_max_line_len(600);
        with_default(tracing_subscriber::registry().with(layer), || {
            let span = info_span!("s", traceline.truncated = "span field");
            let _e = span.enter();
            info!(traceline.truncated = "event field", "fits");
            info!(
                traceline.truncated = "event field",
                pad = "p".repeat(1000).as_str(),
                "cut"
            );
        });
        // The strict parser rejects a key written twice.
        let lines = cap.lines();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[1].keys().iter().any(|k| k.ends_with(key)),
            "{:?}",
            lines[1].keys()
        );
        let cut_marker = lines[1]
            .keys()
            .into_iter()
            .filter(|k| k.ends_with(key))
            .filter(|k| lines[1].get(k).and_then(|v| v.as_str()).is_none())
            .count();
        assert_eq!(cut_marker, 1, "{:?}", lines[1].keys());
    }
}

/// A line cut at the limit whose core keys (without the message) fit with room to spare gets a
/// message short enough for the whole line to fit: the marker that says the message was cut
/// must not make the line longer than the message it replaces, nor than the limit.
#[test]
fn a_short_message_cut_to_fit_never_pushes_the_line_past_the_limit() {
    let message = "order 7 charged"; // 15 bytes
    let big = "x".repeat(1000);
    // The whole line, uncut, to know the number the cut line carries.
    let (cap, layer) = capture_layer();
    let layer = layer.with_clock(common::fixed_clock);
    with_default(tracing_subscriber::registry().with(layer), || {
        info!(big = big.as_str(), "{message}");
    });
    let whole = cap.text().len();
    // The cut line with an empty message: its core keys and the truncation key.
    let target = module_path!();
    let floor = format!(
        r#"{{"timestamp":"2026-11-25T10:32:03.123456789Z","level":"INFO","message":"","target":"{target}","{}":{whole}}}"#,
        traceline::TRUNCATED_KEY
    )
    .len()
        + 1; // the newline
    for room in 0..message.len() {
        // Room for `room` bytes of the message, not for all of it.
        let limit = floor + room;
        let (cap, layer) = capture_layer();
        let layer = layer
            .with_clock(common::fixed_clock)
            .with_max_line_len(limit);
        with_default(tracing_subscriber::registry().with(layer), || {
            info!(big = big.as_str(), "{message}");
        });
        let text = cap.text();
        let line = cap.only_line();
        assert!(line.has(traceline::TRUNCATED_KEY), "{text}");
        assert!(
            text.len() <= limit,
            "limit {limit} (the core keys take {floor}), line of {} bytes: {text}",
            text.len()
        );
    }
}

/// A layer left at its defaults cuts a line at 256 KiB: four fields of 60 KiB each (each under
/// the field limit) make a 240 KiB line, written whole; five make a 300 KiB one, which keeps
/// its core keys, drops the fields and says how long it would have been.
#[test]
fn default_line_limit_is_256_kib() {
    assert_eq!(traceline::DEFAULT_MAX_LINE_LEN, 256 * 1024);
    let (cap, layer) = capture_layer();
    let part = "y".repeat(60 * 1024);
    let p = part.as_str();
    with_default(tracing_subscriber::registry().with(layer), || {
        info!(a = p, b = p, c = p, d = p, "four big fields");
        info!(a = p, b = p, c = p, d = p, e = p, "five big fields");
    });
    let text = cap.text();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 2);
    let (whole, cut) = (&lines[0], &lines[1]);
    assert!(whole.get(traceline::TRUNCATED_KEY).is_none());
    assert_eq!(whole["d"].as_str().map(str::len), Some(60 * 1024));
    let cut_len = text.lines().nth(1).unwrap().len();
    assert!(
        cut_len <= traceline::DEFAULT_MAX_LINE_LEN,
        "{cut_len} bytes"
    );
    assert_eq!(cut["message"], "five big fields");
    assert!(
        cut.get("a").is_none() && cut.get("e").is_none(),
        "fields dropped"
    );
    let would = cut[traceline::TRUNCATED_KEY]
        .as_u64()
        .expect("the length it would have had");
    assert!(would > 5 * 60 * 1024, "{would}");
}

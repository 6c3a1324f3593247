//! Property tests: whatever the message, field names and values, every output is exactly one
//! line of valid JSON without a duplicate key, and the message and every value come back.

mod common;

use common::{
    Json, assert_ids, capture_layer, check_line, otel_subscriber, provider, span_context,
};
use proptest::prelude::*;
use traceline::FieldLayout;
use tracing::field::{DebugValue, Value};
use tracing::subscriber::with_default;
use tracing::{info, info_span};

/// Keys the default schema writes itself.
const SCHEMA_KEYS: [&str; 7] = [
    "timestamp",
    "level",
    "message",
    "target",
    "traceId",
    "spanId",
    "traceFlags",
];

/// Event field names, tricky on purpose: reserved names, a name that spells a renamed key, and
/// names that need escaping.
const EVENT_NAMES: [&str; 9] = [
    "level",
    "traceId",
    "timestamp",
    "target",
    "fields.level",
    "a\"b",
    "a\nb",
    "é",
    "plain",
];

/// Span field names; none of them can be written under a key an event field can take.
const SPAN_NAMES: [&str; 5] = ["user_id", "s\"q", "s\nl", "traceFlags", "spanId"];

#[derive(Debug, Clone)]
enum V {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    U128(u128),
    I128(i128),
    Debug(DebugValue<String>),
}

fn as_value(v: &V) -> &dyn Value {
    match v {
        V::Str(s) => s,
        V::I64(n) => n,
        V::U64(n) => n,
        V::F64(n) => n,
        V::Bool(b) => b,
        V::U128(n) => n,
        V::I128(n) => n,
        V::Debug(d) => d,
    }
}

/// Whether `json` is how `v` should be written.
fn matches(v: &V, json: &Json) -> bool {
    match (v, json) {
        (V::Str(s), Json::Str(j)) => s == j,
        (V::Debug(d), Json::Str(j)) => format!("{d:?}") == *j,
        (V::I64(n), Json::Num(j)) => n.to_string() == *j,
        (V::U64(n), Json::Num(j)) => n.to_string() == *j,
        (V::U128(n), Json::Num(j)) => n.to_string() == *j,
        (V::I128(n), Json::Num(j)) => n.to_string() == *j,
        (V::Bool(b), Json::Bool(j)) => b == j,
        (V::F64(f), Json::Str(j)) if f.is_nan() => j == "NaN",
        (V::F64(f), Json::Str(j)) if f.is_infinite() => {
            j == if *f > 0.0 { "Infinity" } else { "-Infinity" }
        }
        (V::F64(f), Json::Num(j)) if f.is_finite() => j
            .parse::<f64>()
            .is_ok_and(|p| p == *f && p.is_sign_negative() == f.is_sign_negative()),
        _ => false,
    }
}

fn tricky_string() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        3 => any::<char>(),
        1 => prop::sample::select(vec![
            '\n', '\r', '\t', '\0', '\u{1b}', '\u{7f}', '\u{2028}', '\u{2029}', '"', '\\', '/',
            'é', '😀', '\u{feff}', '\u{8}', '\u{c}', '{', '}', ',', ':',
        ]),
    ];
    prop::collection::vec(ch, 0..48).prop_map(String::from_iter)
}

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => any::<f64>(),
        1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 0.0]),
    ]
}

fn any_v() -> impl Strategy<Value = V> {
    prop_oneof![
        4 => tricky_string().prop_map(V::Str),
        1 => any::<i64>().prop_map(V::I64),
        1 => any::<u64>().prop_map(V::U64),
        2 => any_f64().prop_map(V::F64),
        1 => any::<bool>().prop_map(V::Bool),
        1 => any::<u128>().prop_map(V::U128),
        1 => any::<i128>().prop_map(V::I128),
        1 => tricky_string().prop_map(|s| V::Debug(tracing::field::debug(s))),
    ]
}

fn slots(n: usize) -> impl Strategy<Value = Vec<Option<V>>> {
    prop::collection::vec(prop::option::weighted(0.7, any_v()), n..=n)
}

fn candidates(name: &str) -> Vec<String> {
    (0..4).map(|k| "fields.".repeat(k) + name).collect()
}

/// Finds a distinct key for every expected `(name, value)` among `keys`, each key spelled
/// `fields.` × k + name and holding the value.
fn assign(expected: &[(&str, &V)], line: &Json, keys: &mut Vec<String>) -> bool {
    let Some(((name, value), rest)) = expected.split_first() else {
        return true;
    };
    for key in candidates(name) {
        if keys.contains(&key) {
            continue;
        }
        if SCHEMA_KEYS.contains(&key.as_str()) {
            continue;
        }
        if line.get(&key).is_some_and(|j| matches(value, j)) {
            keys.push(key);
            if assign(rest, line, keys) {
                return true;
            }
            keys.pop();
        }
    }
    false
}

fn opt(slots: &[Option<V>], i: usize) -> Option<&dyn Value> {
    slots[i].as_ref().map(as_value)
}

fn log_flat(
    message: &str,
    ev: &[Option<V>],
    sp: &[Option<V>],
    layout: FieldLayout,
) -> (String, Json) {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let sc = with_default(
        otel_subscriber(&provider, layer.with_field_layout(layout)),
        || {
            let span = info_span!(
                "prop",
                "user_id" = opt(sp, 0),
                "s\"q" = opt(sp, 1),
                "s\nl" = opt(sp, 2),
                "traceFlags" = opt(sp, 3),
                "spanId" = opt(sp, 4),
            );
            span.in_scope(|| {
                info!(
                    "level" = opt(ev, 0),
                    "traceId" = opt(ev, 1),
                    "timestamp" = opt(ev, 2),
                    "target" = opt(ev, 3),
                    "fields.level" = opt(ev, 4),
                    "a\"b" = opt(ev, 5),
                    "a\nb" = opt(ev, 6),
                    "é" = opt(ev, 7),
                    "plain" = opt(ev, 8),
                    "{}",
                    message
                );
            });
            span_context(&span)
        },
    );
    let text = cap.text();
    assert_eq!(cap.write_calls(), 1, "one write call for one event");
    let line = check_line(&text);
    assert_ids(&line, &sc);
    (text, line)
}

fn present<'a>(names: &[&'a str], slots: &'a [Option<V>]) -> Vec<(&'a str, &'a V)> {
    names
        .iter()
        .zip(slots)
        .filter_map(|(n, v)| v.as_ref().map(|v| (*n, v)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn flat_lines_are_valid_and_round_trip(
        message in tricky_string(),
        ev in slots(EVENT_NAMES.len()),
        sp in slots(SPAN_NAMES.len()),
    ) {
        let (text, line) = log_flat(&message, &ev, &sp, FieldLayout::Flatten);
        prop_assert!(text.ends_with('\n') && text.matches('\n').count() == 1, "{}", text);
        prop_assert_eq!(line.str("message"), message.as_str());
        prop_assert_eq!(line.str("level"), "INFO");
        prop_assert_eq!(line.str("target"), "property");

        let mut expected = present(&EVENT_NAMES, &ev);
        expected.extend(present(&SPAN_NAMES, &sp));
        let user_keys: Vec<&str> = line
            .keys()
            .into_iter()
            .filter(|k| !SCHEMA_KEYS.contains(k))
            .collect();
        prop_assert_eq!(user_keys.len(), expected.len(), "{}", text);
        let mut taken = Vec::new();
        prop_assert!(assign(&expected, &line, &mut taken), "values not found in {}", text);
        for (name, _) in &expected {
            if !["level", "traceId", "timestamp", "target", "traceFlags", "spanId"].contains(name) {
                continue;
            }
            prop_assert!(!taken.iter().any(|k| k == name), "{} kept its reserved name", name);
        }
    }

    #[test]
    fn nested_lines_are_valid_and_round_trip(
        message in tricky_string(),
        ev in slots(EVENT_NAMES.len()),
        sp in slots(SPAN_NAMES.len()),
    ) {
        let (text, line) = log_flat(&message, &ev, &sp, FieldLayout::Nested);
        prop_assert_eq!(line.str("message"), message.as_str());
        let expected = present(&EVENT_NAMES, &ev);
        if expected.is_empty() {
            prop_assert!(line.get("fields").is_none_or(|f| f.keys().is_empty()), "{}", text);
        } else {
            let fields = line.at("fields");
            prop_assert_eq!(fields.keys().len(), expected.len(), "{}", text);
            for (name, v) in &expected {
                prop_assert!(fields.get(name).is_some_and(|j| matches(v, j)), "{:?} in {}", name, text);
            }
        }
        let span = line.at("span");
        prop_assert_eq!(span.str("name"), "prop");
        let spans = line.at("spans").as_arr();
        prop_assert_eq!(spans.len(), 1);
        prop_assert_eq!(&spans[0], span);
        let expected = present(&SPAN_NAMES, &sp);
        prop_assert_eq!(span.keys().len(), expected.len() + 1, "{}", text);
        for (name, v) in &expected {
            prop_assert!(span.get(name).is_some_and(|j| matches(v, j)), "{:?} in {}", name, text);
        }
    }

    #[test]
    fn a_user_field_named_message_never_duplicates_or_loses_a_value(
        message in tricky_string(),
        user in any_v(),
    ) {
        let (cap, layer) = capture_layer();
        let subscriber = tracing_subscriber::layer::SubscriberExt::with(
            tracing_subscriber::registry(),
            layer,
        );
        with_default(subscriber, || {
            info!("message" = as_value(&user), other = 1, "{}", message);
        });
        let text = cap.text();
        let line = check_line(&text);
        prop_assert_eq!(line.str("message"), message.as_str());
        let mut taken = Vec::new();
        prop_assert!(
            assign(&[("message", &user)], &line, &mut taken),
            "the user's `message` value is missing from {}",
            text
        );
    }

    #[test]
    fn static_fields_with_any_names_never_duplicate(
        statics in prop::collection::vec(
            (
                prop_oneof![
                    prop::sample::select(vec![
                        "level", "message", "timestamp", "traceId", "fields.level",
                        "fields.fields.level", "region", "a\"b", "é",
                    ]).prop_map(str::to_owned),
                    tricky_string(),
                ],
                prop_oneof![
                    tricky_string().prop_map(serde_json::Value::from),
                    any::<i64>().prop_map(serde_json::Value::from),
                    any::<bool>().prop_map(serde_json::Value::from),
                ],
            ),
            0..6,
        ),
        message in tricky_string(),
    ) {
        let (cap, mut layer) = capture_layer();
        for (k, v) in &statics {
            layer = layer.with_static_field(k.clone(), v.clone());
        }
        let subscriber = tracing_subscriber::layer::SubscriberExt::with(
            tracing_subscriber::registry(),
            layer,
        );
        with_default(subscriber, || {
            info!(level = "user", region = "user", "{}", message);
        });
        let text = cap.text();
        let line = check_line(&text);
        prop_assert_eq!(line.str("message"), message.as_str());
        prop_assert_eq!(line.str("level"), "INFO");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut last: Vec<(&str, &serde_json::Value)> = Vec::new();
        for (k, v) in &statics {
            last.retain(|(k2, _)| k2 != k);
            last.push((k.as_str(), v));
        }
        let user_keys = line.keys().len() - 4;
        prop_assert_eq!(user_keys, last.len() + 2, "{}", text);
        for (k, v) in last {
            let found = candidates(k).iter().any(|c| value.get(c.as_str()) == Some(v));
            prop_assert!(found, "static field {:?} missing from {}", k, text);
        }
    }
}

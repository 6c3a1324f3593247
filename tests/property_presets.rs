//! Property tests across every schema preset, in both field layouts: whatever the user's field
//! names (including every key any preset writes itself) and values, each event is exactly one
//! line of valid JSON, no object in it holds a key twice, and the preset's own keys keep their
//! own values.
//!
//! Field names in `tracing` macros are fixed at compile time, so the events and spans here use
//! callsites built at run time from generated names.

mod common;

use std::error::Error;
use std::sync::OnceLock;

use common::{
    Failure, capture_layer, check_line, dyn_callsite, otel_subscriber, provider, span_context,
};
use opentelemetry::trace::SpanContext;
use proptest::prelude::*;
use traceline::{FieldLayout, Key, Schema};
use tracing::Level;
use tracing::field::Value;
use tracing::metadata::Kind;
use tracing::subscriber::with_default;

/// Every key the presets can write (opt-ins and renamable parts included), as user field names.
fn preset_keys() -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for schema in presets() {
        for k in Key::ALL {
            if let Some(name) = schema.clone().enable(k).key(k) {
                keys.push(name.to_owned());
            }
        }
    }
    keys.extend(
        [
            "trace.id",
            "@timestamp",
            "log.level",
            "severity_text",
            "dd.trace_id",
            "logging.googleapis.com/trace",
            "labels",
            "ecs.version",
            "event.dataset",
            "error.message",
            "error.stack_trace",
            "exception.stacktrace",
            "error.stack",
            "error",
        ]
        .map(str::to_owned),
    );
    keys.sort();
    keys.dedup();
    // A user field named `message` next to the format message is a separate, known issue.
    keys.retain(|k| k != "message");
    keys
}

fn name_pool() -> &'static [String] {
    static POOL: OnceLock<Vec<String>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut pool = preset_keys();
        let prefixed: Vec<String> = pool
            .iter()
            .flat_map(|k| [format!("fields.{k}"), format!("fields.fields.{k}")])
            .collect();
        pool.extend(prefixed);
        pool.extend(
            [
                "name",
                "fields.name",
                "fields.fields.name",
                "fields.",
                "fields",
                "",
                "a\"b",
                "a\nb",
                "\\",
                "é",
                "\u{2028}",
                "plain",
                "x.y",
                "traceline.correlation_id",
            ]
            .map(str::to_owned),
        );
        pool.sort();
        pool.dedup();
        pool
    })
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(name_pool()),
        1 => "[a-z.@/_]{0,12}",
        1 => any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ]
}

#[derive(Debug, Clone)]
enum V {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    U128(u128),
    I128(i128),
    Debug(String),
    Error(Failure),
}

fn tricky_string() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        3 => any::<char>(),
        1 => prop::sample::select(vec![
            '\n', '\r', '\t', '\0', '\u{1b}', '\u{7f}', '\u{2028}', '\u{2029}', '"', '\\', '/',
            'é', '😀', '\u{feff}', '{', '}', ',', ':',
        ]),
    ];
    prop::collection::vec(ch, 0..24).prop_map(String::from_iter)
}

fn failure() -> impl Strategy<Value = Failure> {
    prop::collection::vec(tricky_string(), 1..4).prop_map(|msgs| {
        msgs.into_iter()
            .rev()
            .fold(None, |source: Option<Box<Failure>>, m| {
                Some(Box::new(Failure(m, source)))
            })
            .map(|b| *b)
            .expect("at least one")
    })
}

fn any_v() -> impl Strategy<Value = V> {
    prop_oneof![
        4 => tricky_string().prop_map(V::Str),
        1 => any::<i64>().prop_map(V::I64),
        1 => any::<u64>().prop_map(V::U64),
        1 => any::<f64>().prop_map(V::F64),
        1 => any::<bool>().prop_map(V::Bool),
        1 => any::<u128>().prop_map(V::U128),
        1 => any::<i128>().prop_map(V::I128),
        1 => tricky_string().prop_map(V::Debug),
        2 => failure().prop_map(V::Error),
    ]
}

fn fields(max: usize) -> impl Strategy<Value = Vec<(String, Option<V>)>> {
    prop::collection::vec(
        (field_name(), prop::option::weighted(0.85, any_v())),
        0..max,
    )
}

/// Holds the `&dyn Error`s and debug values that the `&dyn Value`s borrow.
struct Values<'a> {
    errors: Vec<Option<&'a (dyn Error + 'static)>>,
    debugs: Vec<Option<tracing::field::DebugValue<&'a String>>>,
}

impl<'a> Values<'a> {
    fn new(fields: &'a [(String, Option<V>)]) -> Self {
        Values {
            errors: fields
                .iter()
                .map(|(_, v)| match v {
                    Some(V::Error(e)) => Some(e as &(dyn Error + 'static)),
                    _ => None,
                })
                .collect(),
            debugs: fields
                .iter()
                .map(|(_, v)| match v {
                    Some(V::Debug(s)) => Some(tracing::field::debug(s)),
                    _ => None,
                })
                .collect(),
        }
    }

    fn get(&self, fields: &'a [(String, Option<V>)], i: usize) -> Option<&dyn Value> {
        Some(match fields[i].1.as_ref()? {
            V::Str(s) => s as &dyn Value,
            V::I64(n) => n,
            V::U64(n) => n,
            V::F64(n) => n,
            V::Bool(b) => b,
            V::U128(n) => n,
            V::I128(n) => n,
            V::Debug(_) => self.debugs[i].as_ref().expect("debug value"),
            V::Error(_) => self.errors[i].as_ref().expect("error value"),
        })
    }
}

fn presets() -> [Schema; 5] {
    [
        Schema::default(),
        Schema::otel(),
        Schema::ecs(),
        Schema::gcp("my-project"),
        Schema::datadog(),
    ]
}

/// Every opt-in key on, service settings and labels set: the most reserved keys at once.
fn everything_on(schema: Schema) -> Schema {
    let mut s = schema;
    for k in [
        Key::SeverityNumber,
        Key::TraceFlags,
        Key::TransactionId,
        Key::File,
        Key::Line,
        Key::ThreadName,
        Key::ThreadId,
    ] {
        s = s.enable(k);
    }
    s.service_name("svc")
        .service_version("1.0")
        .environment("prod")
        .label("team.name", "checkout")
        .label("labels", 1)
}

#[derive(Debug)]
struct Case {
    full: bool,
    nested: bool,
    in_span: bool,
    message: Option<String>,
    event: Vec<(String, Option<V>)>,
    outer: Vec<(String, Option<V>)>,
    inner: Vec<(String, Option<V>)>,
    recorded: Vec<(usize, V)>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.8),
        prop::option::weighted(0.9, tricky_string()),
        fields(12),
        fields(6),
        fields(6),
        prop::collection::vec((0usize..6, any_v()), 0..3),
    )
        .prop_map(
            |(full, nested, in_span, message, event, outer, inner, recorded)| Case {
                full,
                nested,
                in_span,
                message,
                event,
                outer,
                inner,
                recorded,
            },
        )
}

fn span_with(name: &str, fields: &[(String, Option<V>)]) -> tracing::Span {
    let names: Vec<String> = fields.iter().map(|(n, _)| n.clone()).collect();
    let meta = dyn_callsite("presets", Kind::SPAN, name, &names, Level::INFO);
    let vals = Values::new(fields);
    let values: Vec<Option<&dyn Value>> = (0..fields.len()).map(|i| vals.get(fields, i)).collect();
    tracing::Span::new(meta, &meta.fields().value_set_all(&values))
}

/// Logs the case's event (inside two spans, or none) and returns the raw output and the
/// innermost span's context.
fn log(schema: Schema, c: &Case) -> (String, Option<SpanContext>) {
    let (cap, layer) = capture_layer();
    let layout = if c.nested {
        FieldLayout::Nested
    } else {
        FieldLayout::Flatten
    };
    let provider = provider();
    let sc = with_default(
        otel_subscriber(&provider, layer.with_schema(schema.field_layout(layout))),
        || {
            let mut names: Vec<String> = Vec::new();
            if c.message.is_some() {
                names.push("message".to_owned());
            }
            names.extend(c.event.iter().map(|(n, _)| n.clone()));
            let meta = dyn_callsite("presets", Kind::EVENT, "event", &names, Level::INFO);
            let vals = Values::new(&c.event);
            let mut values: Vec<Option<&dyn Value>> = Vec::new();
            if let Some(m) = &c.message {
                values.push(Some(m as &dyn Value));
            }
            values.extend((0..c.event.len()).map(|i| vals.get(&c.event, i)));
            let fire = || {
                tracing::Event::dispatch(meta, &meta.fields().value_set_all(&values));
            };
            if c.in_span {
                let outer = span_with("outer", &c.outer);
                let _o = outer.enter();
                let inner = span_with("inner", &c.inner);
                for (i, v) in &c.recorded {
                    // Fields recorded after creation, when the span has that many.
                    if let Some((name, _)) = c.inner.get(*i) {
                        let one = [(name.clone(), Some(v.clone()))];
                        let vals = Values::new(&one);
                        if let Some(value) = vals.get(&one, 0) {
                            inner.record(name.as_str(), value);
                        }
                    }
                }
                let _i = inner.enter();
                fire();
                Some(span_context(&inner))
            } else {
                fire();
                None
            }
        },
    );
    (cap.text(), sc)
}

fn level_name(schema: &Schema) -> &'static str {
    match schema.key(Key::Level) {
        Some("status") => "info",
        _ => "INFO",
    }
}

fn spelled_trace_id(schema: &Schema, sc: &SpanContext) -> String {
    match schema.key(Key::TraceId) {
        Some("dd.trace_id") => (u128::from_be_bytes(sc.trace_id().to_bytes()) as u64).to_string(),
        Some("logging.googleapis.com/trace") => {
            format!("projects/my-project/traces/{}", sc.trace_id())
        }
        _ => sc.trace_id().to_string(),
    }
}

fn check(preset: usize, c: &Case) -> Result<(), TestCaseError> {
    let mut schema = presets()[preset].clone();
    if c.full {
        schema = everything_on(schema);
    }
    let (text, sc) = log(schema.clone(), c);
    // One line, valid JSON, no duplicate key in any object.
    prop_assert!(text.ends_with('\n'), "no trailing newline: {:?}", text);
    let body = &text[..text.len() - 1];
    prop_assert!(
        !body.contains(|c: char| (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}'),
        "raw newline or control character: {:?}",
        text
    );
    if let Err(e) = common::parse_strict(body) {
        return Err(TestCaseError::fail(format!("{e}: {text:?}")));
    }
    let line = check_line(&text);

    // The preset's own keys hold the preset's values, whatever the user fields are named.
    let level_key = schema.key(Key::Level).expect("on");
    prop_assert_eq!(line.str(level_key), level_name(&schema), "{:?}", line);
    if let Some(m) = &c.message {
        let key = schema.key(Key::Message).expect("on");
        prop_assert_eq!(line.str(key), m.as_str(), "{:?}", line);
    }
    let target_key = schema.key(Key::Target).expect("on");
    prop_assert_eq!(line.str(target_key), "presets::dynamic");
    match &sc {
        Some(sc) => {
            let key = schema.key(Key::TraceId).expect("on");
            prop_assert_eq!(line.str(key), spelled_trace_id(&schema, sc), "{:?}", line);
        }
        None => {
            let key = schema.key(Key::TraceId).expect("on");
            prop_assert!(!line.has(key), "no trace id outside a span: {:?}", line);
        }
    }
    if c.full {
        let key = schema.key(Key::ServiceName).expect("on");
        prop_assert_eq!(line.str(key), "svc");
        let labels_key = schema.key(Key::Labels).expect("on");
        let mut labels = line.at(labels_key).keys();
        labels.sort_unstable();
        // Cloud Logging's labels keep their keys (and are strings); the others follow ECS.
        let team = if labels_key == "logging.googleapis.com/labels" {
            "team.name"
        } else {
            "team_name"
        };
        prop_assert_eq!(labels, vec!["labels", team]);
    }
    if schema.key(Key::Timestamp) == Some("@timestamp") {
        prop_assert_eq!(&line.keys()[..2], &["@timestamp", "log.level"][..]);
        prop_assert!(line.has("ecs.version"));
    }
    Ok(())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn default_never_writes_a_key_twice(c in case()) {
        check(0, &c)?;
    }

    #[test]
    fn otel_never_writes_a_key_twice(c in case()) {
        check(1, &c)?;
    }

    #[test]
    fn ecs_never_writes_a_key_twice(c in case()) {
        check(2, &c)?;
    }

    #[test]
    fn gcp_never_writes_a_key_twice(c in case()) {
        check(3, &c)?;
    }

    #[test]
    fn datadog_never_writes_a_key_twice(c in case()) {
        check(4, &c)?;
    }
}

/// Every preset, both layouts, every tricky name at once as event and span fields: a fixed
/// worst case next to the random ones.
#[test]
fn all_tricky_names_at_once() {
    let names = name_pool();
    let mk = |vs: &mut dyn FnMut(usize) -> V| -> Vec<(String, Option<V>)> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), Some(vs(i))))
            .collect()
    };
    let mut failures = Vec::new();
    for preset in 0..5 {
        for full in [false, true] {
            for nested in [false, true] {
                let c = Case {
                    full,
                    nested,
                    in_span: true,
                    message: Some("all at once".to_owned()),
                    event: mk(&mut |i| {
                        if i % 7 == 0 {
                            V::Error(Failure(format!("e{i}"), None))
                        } else {
                            V::Str(format!("event {i}"))
                        }
                    }),
                    outer: mk(&mut |i| V::I64(i as i64)),
                    inner: mk(&mut |i| V::Str(format!("inner {i}"))),
                    recorded: Vec::new(),
                };
                if let Err(e) = check(preset, &c) {
                    let e = e.to_string();
                    let e: String = e.chars().take(300).collect();
                    failures.push(format!("preset {preset} full={full} nested={nested}: {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn one_event(nested: bool, event: Vec<(String, Option<V>)>) -> Case {
    Case {
        full: false,
        nested,
        in_span: false,
        message: Some("m".to_owned()),
        event,
        outer: Vec::new(),
        inner: Vec::new(),
        recorded: Vec::new(),
    }
}

/// The flat error keys (`error.message`, `exception.message`…) next to a user field of the
/// same name, in both layouts.
#[test]
fn flat_error_next_to_a_user_field_named_like_its_key() {
    let mut failures = Vec::new();
    for (preset, key) in [
        (1, "exception.message"),
        (2, "error.message"),
        (4, "error.message"),
    ] {
        for nested in [false, true] {
            let c = one_event(
                nested,
                vec![
                    (key.to_owned(), Some(V::Str("user".to_owned()))),
                    (
                        "err".to_owned(),
                        Some(V::Error(Failure("boom".to_owned(), None))),
                    ),
                ],
            );
            if let Err(e) = check(preset, &c) {
                failures.push(format!("preset {preset} nested={nested}: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// With nested fields, a span field `name` (moved to `fields.name`, as `name` holds the span's
/// name) next to a span field literally named `fields.name`.
#[test]
fn nested_span_fields_name_and_fields_name() {
    let mut failures = Vec::new();
    for preset in 0..5 {
        let c = Case {
            full: false,
            nested: true,
            in_span: true,
            message: Some("m".to_owned()),
            event: Vec::new(),
            outer: Vec::new(),
            inner: vec![
                ("name".to_owned(), Some(V::Str("a".to_owned()))),
                ("fields.name".to_owned(), Some(V::Str("b".to_owned()))),
            ],
            recorded: Vec::new(),
        };
        if let Err(e) = check(preset, &c) {
            failures.push(format!("preset {preset}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

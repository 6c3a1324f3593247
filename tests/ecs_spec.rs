//! `Schema::ecs()` output checked against the ecs-logging specification
//! (github.com/elastic/ecs-logging, `spec/spec.json`, spec version 1.0 for ECS 1.x): required
//! fields, field types, the order of the first keys, dotted top-level keys, `event.dataset` and
//! label key sanitisation. The requirements are restated below as constants.

mod common;

use std::error::Error;
use std::fmt;

use common::{Json, capture_layer, fixed_clock, otel_subscriber, provider, span_context};
use opentelemetry::trace::SpanContext;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use traceline::{FieldLayout, Key, Schema};
use tracing::subscriber::with_default;
use tracing::{Level, event, info, info_span};

/// A field type as the ecs-logging spec names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SpecType {
    Datetime,
    String,
    Integer,
    Object,
}

/// Every field of ecs-logging `spec/spec.json` with its `type`.
const SPEC_FIELDS: [(&str, SpecType); 20] = [
    ("@timestamp", SpecType::Datetime),
    ("log.level", SpecType::String),
    ("message", SpecType::String),
    ("ecs.version", SpecType::String),
    ("labels", SpecType::Object),
    ("trace.id", SpecType::String),
    ("transaction.id", SpecType::String),
    ("service.name", SpecType::String),
    ("service.node.name", SpecType::String),
    ("service.version", SpecType::String),
    ("event.dataset", SpecType::String),
    ("service.environment", SpecType::String),
    ("process.thread.name", SpecType::String),
    ("log.logger", SpecType::String),
    ("log.origin.file.line", SpecType::Integer),
    ("log.origin.file.name", SpecType::String),
    ("log.origin.function", SpecType::String),
    ("error.type", SpecType::String),
    ("error.message", SpecType::String),
    ("error.stack_trace", SpecType::String),
];

/// Fields with `"required": true` in the spec.
const SPEC_REQUIRED: [&str; 3] = ["@timestamp", "log.level", "ecs.version"];

/// Fields with an `index`, in index order (0, 1, 2): "Field order, as specified by 'index', is
/// RECOMMENDED. ECS loggers must implement field order unless the logging framework makes that
/// impossible."
const SPEC_INDEX_ORDER: [&str; 3] = ["@timestamp", "log.level", "message"];

/// Fields with `"top_level_field": true`: "This field SHOULD NOT be a nested object field but at
/// the top level with a dot in the property name."
const SPEC_TOP_LEVEL_DOTTED: [&str; 2] = ["log.level", "ecs.version"];

/// `labels.sanitization.key`: these characters in a label key are replaced by `_`.
const SPEC_LABEL_REPLACEMENTS: [char; 3] = ['.', '*', '\\'];
const SPEC_LABEL_SUBSTITUTE: char = '_';

/// The spec's `ecs.version` is `1.x`.
const SPEC_ECS_MAJOR: &str = "1.";

/// Checks one line against every requirement above that applies to any ECS line.
fn check_spec(line: &Json) {
    let keys = line.keys();
    for req in SPEC_REQUIRED {
        assert!(line.has(req), "required {req:?} missing: {line:?}");
    }
    // Field order: the indexed fields that are present come first, in index order.
    let indexed: Vec<&str> = SPEC_INDEX_ORDER
        .iter()
        .copied()
        .filter(|k| line.has(k))
        .collect();
    assert_eq!(
        &keys[..indexed.len()],
        &indexed[..],
        "first keys must be {indexed:?}: {line:?}"
    );
    for (field, ty) in SPEC_FIELDS {
        let Some(v) = line.get(field) else { continue };
        match (ty, v) {
            (SpecType::Datetime, Json::Str(s)) => {
                let t = OffsetDateTime::parse(s, &Rfc3339)
                    .unwrap_or_else(|e| panic!("{field} {s:?} is not RFC 3339: {e}"));
                assert!(s.ends_with('Z'), "{field} {s:?} is not UTC");
                assert!(t.year() >= 2000, "{field} {s:?}");
            }
            (SpecType::String, Json::Str(_)) => {}
            (SpecType::Integer, Json::Num(n)) => {
                assert!(
                    n.parse::<u64>().is_ok(),
                    "{field} is not an integer: {n:?} in {line:?}"
                );
            }
            (SpecType::Object, Json::Obj(members)) => {
                if field == "labels" {
                    for (k, _) in members {
                        assert!(
                            !k.contains(SPEC_LABEL_REPLACEMENTS),
                            "label key {k:?} is not sanitised"
                        );
                    }
                }
            }
            _ => panic!("{field} should be {ty:?}, is {v:?} in {line:?}"),
        }
    }
    // Dotted names stay dotted keys at the top level: no `log`, `ecs`, `error`… object.
    for (field, _) in SPEC_FIELDS {
        if let Some((head, _)) = field.split_once('.') {
            assert!(
                !line.has(head),
                "{head:?} written as a nested object instead of dotted {field:?}: {line:?}"
            );
        }
    }
    for field in SPEC_TOP_LEVEL_DOTTED {
        assert!(
            keys.contains(&field),
            "{field:?} must be a top-level key: {line:?}"
        );
    }
    assert!(
        line.str("ecs.version").starts_with(SPEC_ECS_MAJOR),
        "ecs.version {:?} is not 1.x",
        line.str("ecs.version")
    );
    assert!(
        ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&line.str("log.level")),
        "log.level {:?}",
        line.str("log.level")
    );
    // event.dataset defaults to service.name when a service name is configured.
    if let Some(name) = line.get("service.name") {
        assert_eq!(line.get("event.dataset"), Some(name), "{line:?}");
    }
}

fn sanitised(key: &str) -> String {
    key.chars()
        .map(|c| {
            if SPEC_LABEL_REPLACEMENTS.contains(&c) {
                SPEC_LABEL_SUBSTITUTE
            } else {
                c
            }
        })
        .collect()
}

#[derive(Debug)]
struct Failure(&'static str, Option<Box<Failure>>);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Error for Failure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.1.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

fn failure() -> Failure {
    Failure(
        "refund failed",
        Some(Box::new(Failure("ledger locked", None))),
    )
}

fn at_level(level: Level, with_error: bool) {
    let err = failure();
    macro_rules! ev {
        ($lvl:expr) => {
            if with_error {
                event!(target: "shop::refunds", $lvl, error = &err as &dyn Error, amount = 5, "refund")
            } else {
                event!(target: "shop::refunds", $lvl, amount = 5, "refund")
            }
        };
    }
    match level {
        Level::TRACE => ev!(Level::TRACE),
        Level::DEBUG => ev!(Level::DEBUG),
        Level::INFO => ev!(Level::INFO),
        Level::WARN => ev!(Level::WARN),
        _ => ev!(Level::ERROR),
    }
}

const LEVELS: [(Level, &str); 5] = [
    (Level::TRACE, "TRACE"),
    (Level::DEBUG, "DEBUG"),
    (Level::INFO, "INFO"),
    (Level::WARN, "WARN"),
    (Level::ERROR, "ERROR"),
];

/// Where an event is logged.
#[derive(Clone, Copy, Debug)]
enum Place {
    NoSpan,
    Span,
    Nested,
}

struct Logged {
    line: Json,
    level: &'static str,
    place: Place,
    with_error: bool,
    /// The event's span and the local root, when in a span.
    ids: Option<(SpanContext, SpanContext)>,
}

/// Every level × no span / one span / three nested spans × with and without an error.
fn log_matrix(schema: Schema) -> Vec<Logged> {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let mut meta = Vec::new();
    with_default(
        otel_subscriber(&provider, layer.with_schema(schema).with_clock(fixed_clock)),
        || {
            for (level, name) in LEVELS {
                for place in [Place::NoSpan, Place::Span, Place::Nested] {
                    for with_error in [false, true] {
                        let ids = match place {
                            Place::NoSpan => {
                                at_level(level, with_error);
                                None
                            }
                            Place::Span => {
                                let s = info_span!("refund", order.id = 7);
                                s.in_scope(|| at_level(level, with_error));
                                Some((span_context(&s), span_context(&s)))
                            }
                            Place::Nested => {
                                let root = info_span!("request", http.method = "POST");
                                let _r = root.enter();
                                let mid = info_span!("service");
                                let _m = mid.enter();
                                let leaf = info_span!("db", db.system = "postgresql");
                                let _l = leaf.enter();
                                at_level(level, with_error);
                                Some((span_context(&leaf), span_context(&root)))
                            }
                        };
                        meta.push((name, place, with_error, ids));
                    }
                }
            }
        },
    );
    let lines = cap.lines();
    assert_eq!(lines.len(), meta.len());
    lines
        .into_iter()
        .zip(meta)
        .map(|(line, (level, place, with_error, ids))| Logged {
            line,
            level,
            place,
            with_error,
            ids,
        })
        .collect()
}

fn check_logged(l: &Logged) {
    check_logged_in(l, false);
}

/// With nested fields, an error stays an object inside `fields` (flat `error.*` keys are for
/// the flattened layout); the spec's required keys are at the top level either way.
fn check_logged_in(l: &Logged, nested: bool) {
    let line = &l.line;
    check_spec(line);
    assert_eq!(line.str("log.level"), l.level);
    assert_eq!(line.str("message"), "refund");
    assert_eq!(line.str("log.logger"), "shop::refunds");
    match &l.ids {
        Some((sc, root)) => {
            assert_eq!(line.str("trace.id"), sc.trace_id().to_string());
            assert_eq!(line.str("span.id"), sc.span_id().to_string());
            assert_eq!(line.str("transaction.id"), root.span_id().to_string());
        }
        None => {
            for k in ["trace.id", "span.id", "transaction.id"] {
                assert!(!line.has(k), "{k} outside a span: {line:?}");
            }
        }
    }
    if l.with_error && nested {
        let err = line.at("fields").at("error");
        assert_eq!(err.str("message"), "refund failed");
        assert!(!line.has("error.message") && !line.has("error.stack_trace"));
    } else if l.with_error {
        assert_eq!(line.str("error.message"), "refund failed");
        let st = line.str("error.stack_trace");
        assert!(
            st.starts_with("refund failed") && st.contains("ledger locked"),
            "stack trace as plain text: {st:?}"
        );
        assert!(!line.has("error"), "no nested error object: {line:?}");
    } else {
        assert!(!line.has("error.message") && !line.has("error.stack_trace"));
    }
    let _ = l.place;
}

#[test]
fn every_level_place_and_error_meets_the_spec() {
    let logged = log_matrix(Schema::ecs());
    assert_eq!(logged.len(), 5 * 3 * 2);
    for l in &logged {
        check_logged(l);
        // The exact order: the indexed three, then the rest of what the preset writes.
        let keys = l.line.keys();
        let mut expected = vec!["@timestamp", "log.level", "message", "log.logger"];
        if l.ids.is_some() {
            expected.extend(["trace.id", "span.id", "transaction.id"]);
        }
        expected.push("ecs.version");
        assert_eq!(
            &keys[..expected.len()],
            &expected[..],
            "{:?} {:?}",
            l.place,
            l.line
        );
    }
}

#[test]
fn with_service_and_labels_meets_the_spec() {
    let labels = [("team.name", "checkout"), ("a*b\\c", "x"), ("ok", "y")];
    let mut schema = Schema::ecs()
        .service_name("refunds")
        .service_version("3.1.4")
        .environment("staging");
    for (k, v) in labels {
        schema = schema.label(k, v);
    }
    let logged = log_matrix(schema);
    for l in &logged {
        check_logged(l);
        let line = &l.line;
        assert_eq!(line.str("service.name"), "refunds");
        assert_eq!(line.str("event.dataset"), "refunds");
        assert_eq!(line.str("service.version"), "3.1.4");
        assert_eq!(line.str("service.environment"), "staging");
        let got = line.at("labels");
        let mut want: Vec<String> = labels.iter().map(|(k, _)| sanitised(k)).collect();
        want.sort();
        let mut keys = got.keys();
        keys.sort_unstable();
        assert_eq!(keys, want, "{line:?}");
        for (k, v) in labels {
            assert_eq!(got.str(&sanitised(k)), v);
        }
    }
}

#[test]
fn file_line_and_thread_opt_ins_meet_the_spec() {
    let schema = Schema::ecs()
        .enable(Key::File)
        .enable(Key::Line)
        .enable(Key::ThreadName)
        .enable(Key::ThreadId);
    assert_eq!(schema.key(Key::File), Some("log.origin.file.name"));
    assert_eq!(schema.key(Key::Line), Some("log.origin.file.line"));
    let logged = log_matrix(schema.clone());
    for l in &logged {
        check_logged(l);
        let line = &l.line;
        assert!(
            line.str("log.origin.file.name").ends_with("ecs_spec.rs"),
            "{line:?}"
        );
        let n: u32 = line.num("log.origin.file.line").parse().expect("integer");
        assert!(n > 0);
        assert!(
            line.str("process.thread.name")
                .contains("file_line_and_thread_opt_ins"),
            "{line:?}"
        );
        assert!(line.num("process.thread.id").parse::<u64>().is_ok());
    }

    // The line number is the callsite's.
    let (cap, layer) = capture_layer();
    let here = with_default(
        otel_subscriber(&provider(), layer.with_schema(schema)),
        || {
            let here = line!() + 1;
            info!("where am I");
            here
        },
    );
    let line = cap.only_line();
    check_spec(&line);
    assert_eq!(line.num("log.origin.file.line"), here.to_string());
    assert_eq!(line.str("log.origin.file.name"), file!());
}

#[test]
fn layer_opt_ins_meet_the_spec_too() {
    let (cap, layer) = capture_layer();
    let layer = layer
        .with_schema(Schema::ecs())
        .with_file(true)
        .with_line_number(true)
        .with_thread_names(true);
    with_default(otel_subscriber(&provider(), layer), || {
        let s = info_span!("s");
        s.in_scope(|| info!("x"));
    });
    let line = cap.only_line();
    check_spec(&line);
    for k in [
        "log.origin.file.name",
        "log.origin.file.line",
        "process.thread.name",
    ] {
        assert!(line.has(k), "{k} missing: {line:?}");
    }
}

#[test]
fn an_event_without_a_message_meets_the_spec() {
    let (cap, layer) = capture_layer();
    with_default(
        otel_subscriber(&provider(), layer.with_schema(Schema::ecs())),
        || info!(amount = 5),
    );
    let line = cap.only_line();
    check_spec(&line);
    assert_eq!(&line.keys()[..2], ["@timestamp", "log.level"]);
    assert!(!line.has("message"));
}

#[test]
fn user_fields_named_like_spec_fields_do_not_break_it() {
    let (cap, layer) = capture_layer();
    with_default(
        otel_subscriber(
            &provider(),
            layer.with_schema(Schema::ecs().service_name("svc").label("l", 1)),
        ),
        || {
            let s = info_span!(
                "s",
                "ecs.version" = 2,
                "log.level" = 3,
                "event.dataset" = "mine"
            );
            s.in_scope(|| {
                info!(
                    "@timestamp" = 1,
                    "log.level" = "user",
                    "ecs.version" = "9.9",
                    "trace.id" = 5,
                    "labels" = "user labels",
                    "service.name" = "user service",
                    "event.dataset" = "user dataset",
                    "error.message" = 7,
                    "x"
                )
            });
        },
    );
    let line = cap.only_line();
    check_spec(&line);
    assert_eq!(line.str("service.name"), "svc");
    assert_eq!(line.str("event.dataset"), "svc");
    assert_eq!(line.str("ecs.version"), traceline::schema::ECS_VERSION);
    assert_eq!(line.str("log.level"), "INFO");
    assert_eq!(line.at("labels").keys(), ["l"]);
}

/// `event.dataset` is the service name "if not explicitly configured otherwise" (the spec): a
/// static field `event.dataset` replaces it, under its own name, once.
#[test]
fn an_explicit_event_dataset_replaces_the_service_name() {
    let (cap, layer) = capture_layer();
    let schema = Schema::ecs()
        .service_name("orders")
        .static_field("event.dataset", "orders.access");
    with_default(
        otel_subscriber(&provider(), layer.with_schema(schema)),
        || info!(target: "orders", "x"),
    );
    let line = cap.only_line();
    assert_eq!(line.str("service.name"), "orders");
    assert_eq!(line.str("event.dataset"), "orders.access");
    assert!(
        !line
            .keys()
            .iter()
            .any(|k| k.ends_with("fields.event.dataset")),
        "{line:?}"
    );
}

#[test]
fn nested_field_layout_keeps_the_spec_keys_at_the_top_level() {
    let logged = log_matrix(Schema::ecs().field_layout(FieldLayout::Nested));
    for l in &logged {
        // `fields`, `span` and `spans` hold the user's data; the spec's keys stay at the top
        // level.
        check_logged_in(l, true);
    }
}

/// `transaction.id` is the event's local root even when a per-layer filter hides every span of
/// the event from traceline (its `trace.id` and `span.id` are still the hidden span's own).
#[test]
fn transaction_id_is_written_when_the_events_spans_are_hidden_from_traceline() {
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::prelude::*;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let (cap, layer) = capture_layer();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("t")))
        .with(
            layer
                .with_schema(Schema::ecs())
                .with_filter(filter_fn(|m| !(m.is_span() && m.name() == "internal"))),
        );
    let id = |s: &tracing::Span| s.context().span().span_context().span_id().to_string();
    let (visible_root, hidden_root, hidden_child) = with_default(subscriber, || {
        let visible = info_span!("request");
        visible.in_scope(|| info!("in visible root"));
        let hidden = info_span!("internal");
        let child = hidden.in_scope(|| info_span!(parent: &hidden, "internal"));
        hidden.in_scope(|| info!("in hidden root"));
        child.in_scope(|| info!("in hidden child"));
        (id(&visible), id(&hidden), id(&child))
    });
    let lines = cap.lines();
    let find = |m: &str| lines.iter().find(|l| l.str("message") == m).unwrap();
    assert_eq!(find("in visible root").str("transaction.id"), visible_root);
    let hidden = find("in hidden root");
    assert_eq!(hidden.str("span.id"), hidden_root);
    assert_eq!(hidden.str("transaction.id"), hidden_root, "{hidden:?}");
    let child = find("in hidden child");
    assert_eq!(child.str("span.id"), hidden_child);
    assert_eq!(child.str("transaction.id"), hidden_root, "{child:?}");
}

/// The local root of an event whose spans are all hidden from traceline is worked out on the
/// span's first line and kept: later lines do not walk the span's ancestors again (counted by
/// the lookups of layers in the subscriber, which each step of the walk makes).
#[test]
fn the_local_root_of_a_hidden_span_is_worked_out_once() {
    use opentelemetry::trace::TracerProvider as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::prelude::*;
    /// Counts the subscriber's downcasts to a layer (each ids lookup makes some).
    struct Count(Arc<AtomicUsize>);
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Count {
        unsafe fn downcast_raw(&self, id: std::any::TypeId) -> Option<*const ()> {
            self.0.fetch_add(1, Ordering::Relaxed);
            (id == std::any::TypeId::of::<Self>()).then_some(self as *const Self as *const ())
        }
    }
    let per_event = |schema: Schema, depth: usize| {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let n = Arc::new(AtomicUsize::new(0));
        let (_cap, layer) = capture_layer();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("t")))
            .with(
                layer
                    .with_schema(schema)
                    .with_filter(filter_fn(|m| !(m.is_span() && m.name() == "internal"))),
            )
            .with(Count(n.clone()));
        with_default(subscriber, || {
            let mut entered = Vec::new();
            for _ in 0..depth {
                entered.push(info_span!("internal").entered());
            }
            for _ in 0..10 {
                info!("warm");
            }
            let before = n.load(Ordering::Relaxed);
            for _ in 0..100 {
                info!("steady");
            }
            (n.load(Ordering::Relaxed) - before) / 100
        })
    };
    let default_20 = per_event(Schema::default(), 20);
    let ecs_20 = per_event(Schema::ecs(), 20);
    assert!(
        ecs_20 <= default_20 + 2,
        "ECS: {ecs_20} lookups per event at depth 20 (default schema: {default_20})"
    );
}

//! Hostile field names and value sets, every preset and layout: each line is one JSON object
//! with no key twice, whatever names the fields have and whatever order (or how many times) a
//! value set gives them in.

mod common;

use common::{Capture, dyn_callsite, split_lines};
use opentelemetry::trace::TracerProvider as _;
use traceline::{ErrorLayout, FieldLayout, Key, Schema};
use tracing::Level;
use tracing::field::Value;
use tracing::metadata::Kind;
use tracing::subscriber::with_default;
use tracing_subscriber::prelude::*;

fn presets() -> Vec<(&'static str, Schema)> {
    vec![
        ("default", Schema::default()),
        ("otel", Schema::otel()),
        ("ecs", Schema::ecs()),
        ("gcp", Schema::gcp("p")),
        ("datadog", Schema::datadog()),
    ]
}

/// Every key name the presets write, and names that stress the rules.
fn hostile_names() -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for (_, s) in presets() {
        for k in Key::ALL {
            if let Some(n) = s.clone().enable(k).key(k) {
                v.push(n.to_owned());
                v.push(format!("fields.{n}"));
            }
        }
    }
    for n in [
        "fields",
        "fields.",
        "",
        ".",
        "a\"b",
        "a\\b",
        "\n",
        "\u{0}",
        "name",
        "message",
        "r#type",
        "type",
        "chain",
        "traceline.truncated",
        "traceline",
        "event.dataset",
        "event",
        "ecs.version",
        "labels",
        "time",
        "host",
        "service",
        "dd",
        "error",
        "exception",
        "log",
        "log.target",
        "trace",
        "span",
        "spans",
        "otel.name",
        "traceline.correlation_id",
        "password",
        "x.y",
        "x",
    ] {
        v.push(n.to_owned());
    }
    v.sort();
    v.dedup();
    v
}

/// Strict check: returns an error text for a bad line, instead of panicking.
fn bad(line: &str) -> Option<String> {
    let body = line.strip_suffix('\n')?;
    if let Err(e) = common::parse_strict(body) {
        return Some(format!("{e}: {line:?}"));
    }
    if serde_json::from_str::<serde_json::Value>(body).is_err() {
        return Some(format!("serde_json rejects: {line:?}"));
    }
    None
}

fn check_all(what: &str, text: &str, expect: usize, failures: &mut Vec<String>) {
    let lines = split_lines(text);
    if lines.len() != expect {
        failures.push(format!(
            "{what}: {} lines, want {expect}: {text:?}",
            lines.len()
        ));
    }
    for l in &lines {
        if let Some(e) = bad(l) {
            failures.push(format!("{what}: {e}"));
        }
    }
}

fn str_values(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("v{i}")).collect()
}

fn event_with(names: &[String]) {
    let meta = dyn_callsite("hostile", Kind::EVENT, "event", names, Level::WARN);
    let vals = str_values(names.len());
    let vals: Vec<Option<&dyn Value>> = vals.iter().map(|v| Some(v as &dyn Value)).collect();
    tracing::Event::dispatch(meta, &meta.fields().value_set_all(&vals));
}

fn span_with(names: &[String]) -> tracing::Span {
    let meta = dyn_callsite("hostile", Kind::SPAN, "span", names, Level::INFO);
    let vals = str_values(names.len());
    let vals: Vec<Option<&dyn Value>> = vals.iter().map(|v| Some(v as &dyn Value)).collect();
    tracing::Span::new(meta, &meta.fields().value_set_all(&vals))
}

fn setups() -> Vec<(String, Schema)> {
    let mut out = Vec::new();
    for (name, s) in presets() {
        for nested in [false, true] {
            let mut s = s.clone();
            if nested {
                s = s.field_layout(FieldLayout::Nested);
            }
            out.push((format!("{name} nested={nested}"), s.clone()));
            let full = s
                .clone()
                .enable(Key::File)
                .enable(Key::Line)
                .enable(Key::ThreadName)
                .enable(Key::ThreadId)
                .enable(Key::TransactionId)
                .enable(Key::SeverityNumber)
                .service_name("svc")
                .service_version("1")
                .environment("prod")
                .static_field("region", "eu")
                .static_field("level", "static-level")
                .static_field("fields.level", 1)
                .label("team", "x");
            out.push((format!("{name} nested={nested} full"), full.clone()));
            out.push((
                format!("{name} nested={nested} full flat-errors"),
                full.error_layout(ErrorLayout::Flat),
            ));
            out.push((
                format!("{name} nested={nested} no fields key"),
                s.disable(Key::Fields),
            ));
        }
    }
    out
}

#[test]
fn hostile_names_in_events_and_spans_every_schema() {
    let names = hostile_names();
    let mut failures = Vec::new();
    for (what, schema) in setups() {
        for max_line in [usize::MAX, 300] {
            let cap = Capture::new();
            let provider = common::provider();
            let layer = traceline::layer()
                .with_schema(schema.clone())
                .with_writer(cap.clone())
                .with_max_line_len(max_line)
                .with_max_field_len(8);
            let sub = tracing_subscriber::registry()
                .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("h")))
                .with(layer);
            let mut n = 0;
            with_default(sub, || {
                // Events alone.
                let mut with_msg = vec!["message".to_owned()];
                with_msg.extend(names.iter().cloned());
                event_with(&with_msg);
                n += 1;
                // Spans with the same names, nested, and events inside.
                let outer = span_with(&names).entered();
                let mut rev = names.clone();
                rev.reverse();
                let inner = span_with(&rev).entered();
                event_with(&with_msg);
                n += 1;
                event_with(&["message".to_owned(), "x".to_owned()]);
                n += 1;
                event_with(&[]);
                n += 1;
                drop(inner);
                drop(outer);
            });
            check_all(
                &format!("{what} max_line={max_line}"),
                &cap.text(),
                n,
                &mut failures,
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn run_default(schema: Schema, f: impl FnOnce()) -> String {
    let cap = Capture::new();
    let layer = traceline::layer()
        .with_schema(schema)
        .with_writer(cap.clone());
    with_default(tracing_subscriber::registry().with(layer), f);
    cap.text()
}

#[test]
fn two_message_fields_recorded_out_of_order() {
    let names = vec!["message".to_owned(), "message".to_owned()];
    let meta = dyn_callsite("hostile", Kind::EVENT, "event", &names, Level::INFO);
    let text = run_default(Schema::default(), || {
        let f: Vec<_> = meta.fields().iter().collect();
        let (a, b) = ("first", "second");
        tracing::Event::dispatch(
            meta,
            &meta.fields().value_set(&[
                (&f[1], Some(&b as &dyn Value)),
                (&f[0], Some(&a as &dyn Value)),
            ]),
        );
    });
    let mut failures = Vec::new();
    check_all("out of order messages", &text, 1, &mut failures);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The first `message` given is the line's message; the other is a field of its own.
    let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(v["message"], "second", "{text}");
    assert_eq!(v["fields.fields.message"], "first", "{text}");
}

#[test]
fn many_fields_recorded_out_of_order() {
    // 64 fillers, then one field named like the prefixed key of field 0.
    let mut names = vec!["level".to_owned()];
    names.extend((1..64).map(|i| format!("f{i}")));
    names.push("fields.level".to_owned());
    let meta = dyn_callsite("hostile", Kind::EVENT, "event", &names, Level::INFO);
    let text = run_default(Schema::default(), || {
        let f: Vec<_> = meta.fields().iter().collect();
        let v = 1u64;
        let mut vs: Vec<(&tracing::field::Field, Option<&dyn Value>)> =
            f.iter().map(|f| (f, Some(&v as &dyn Value))).collect();
        vs.reverse();
        // value_set takes arrays; go through the dispatcher with a ValueSet built from a slice.
        let arr: [(&tracing::field::Field, Option<&dyn Value>); 65] = vs.try_into().ok().unwrap();
        tracing::Event::dispatch(meta, &meta.fields().value_set(&arr));
    });
    let mut failures = Vec::new();
    check_all("many out of order", &text, 1, &mut failures);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn many_fields_in_order_in_spans() {
    let mut failures = Vec::new();
    for (what, schema) in setups() {
        let mut names = vec!["level".to_owned()];
        names.extend((1..70).map(|i| format!("f{i}")));
        names.push("fields.level".to_owned());
        names.push("level".to_owned());
        names.push("message".to_owned());
        names.push("fields.fields.level".to_owned());
        let cap = Capture::new();
        let layer = traceline::layer()
            .with_schema(schema)
            .with_writer(cap.clone());
        with_default(tracing_subscriber::registry().with(layer), || {
            let s1 = span_with(&names).entered();
            let s2 = span_with(&names).entered();
            event_with(&names);
            let mut short = vec!["message".to_owned()];
            short.extend(names.iter().take(3).cloned());
            event_with(&short);
            drop(s2);
            drop(s1);
        });
        check_all(&what, &cap.text(), 2, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn span_record_all_with_repeats() {
    let mut failures = Vec::new();
    for (what, schema) in setups() {
        let text = run_default(schema, || {
            let span = tracing::info_span!(
                "s",
                a = tracing::field::Empty,
                a = tracing::field::Empty,
                level = tracing::field::Empty,
                fields.level = tracing::field::Empty
            )
            .entered();
            tracing::record_all!(span, a = 1, a = 2, level = 3, fields.level = 4);
            tracing::record_all!(span, fields.level = 5, level = 6, a = 7);
            span.record("level", 8);
            tracing::info!(a = 0, "in span");
            tracing::info!(fields.level = 0, "in span");
            tracing::info!(level = 0, "in span");
        });
        check_all(&what, &text, 3, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[derive(Debug)]
struct E(&'static str, Option<Box<E>>);
impl std::fmt::Display for E {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for E {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.1.as_deref().map(|e| e as _)
    }
}

#[test]
fn two_layers_log_bridge_errors_and_filters() {
    use tracing_subscriber::filter::filter_fn;
    let mut failures = Vec::new();
    let all = setups();
    for (i, (wa, a)) in all.iter().enumerate() {
        let (wb, b) = &all[(i * 7 + 3) % all.len()];
        let (ca, cb) = (Capture::new(), Capture::new());
        let provider = common::provider();
        let la = traceline::layer()
            .with_schema(a.clone())
            .with_writer(ca.clone())
            .with_max_field_len(5);
        let lb = traceline::layer()
            .with_schema(b.clone())
            .with_writer(cb.clone())
            .with_filter(filter_fn(|m| !m.name().contains("hidden")));
        let sub = tracing_subscriber::registry()
            .with(la)
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("h")))
            .with(lb);
        let mut n = 0;
        with_default(sub, || {
            let err = E("outer", Some(Box::new(E("inner", None))));
            let s = tracing::info_span!(
                "outer",
                error = "span error",
                error.message = "m",
                error.type = "t",
                exception.message = "x",
                labels = 1,
                labels.team = 2,
                ecs.version = 3,
                event.dataset = 4,
                time = 5,
                dd.trace_id = 6,
                traceline.correlation_id = 7,
            )
            .entered();
            let h = tracing::info_span!("hidden", level = 1, message = 2, a = 3).entered();
            let c = traceline::correlation::scope(
                traceline::correlation::CorrelationId::parse("req-1").unwrap(),
            )
            .entered();
            traceline::record_error(&err);
            n += 1;
            traceline::record_error_dyn(&err);
            n += 1;
            tracing::error!(
                error = &err as &(dyn std::error::Error + 'static),
                error2 = &err as &(dyn std::error::Error + 'static),
                error.message = "dup",
                otel.status_code = "x",
                "{}",
                "msg"
            );
            n += 1;
            tracing_log::format_trace(
                &log::Record::builder()
                    .args(format_args!("from log"))
                    .level(log::Level::Warn)
                    .target("log.level")
                    .module_path(Some("m"))
                    .file(Some("f\"ile.rs"))
                    .line(Some(7))
                    .build(),
            )
            .unwrap();
            n += 1;
            tracing::info!(parent: None, a = 1, "root");
            n += 1;
            tracing::info!(parent: &s, level = 1, "explicit");
            n += 1;
            drop(c);
            drop(h);
            drop(s);
        });
        check_all(&format!("A {wa}"), &ca.text(), n, &mut failures);
        check_all(&format!("B {wb}"), &cb.text(), n, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn one_field_given_twice_in_a_value_set() {
    let names = vec!["a".to_owned()];
    let ev = dyn_callsite("hostile", Kind::EVENT, "event", &names, Level::INFO);
    let sp = dyn_callsite("hostile", Kind::SPAN, "span", &names, Level::INFO);
    let text = run_default(Schema::default().field_layout(FieldLayout::Nested), || {
        let (x, y) = (1u64, 2u64);
        let f = sp.fields().field("a").unwrap();
        let span = tracing::Span::new(
            sp,
            &sp.fields()
                .value_set(&[(&f, Some(&x as &dyn Value)), (&f, Some(&y as &dyn Value))]),
        );
        let _e = span.enter();
        tracing::info!("span only");
        let f = ev.fields().field("a").unwrap();
        tracing::Event::dispatch(
            ev,
            &ev.fields()
                .value_set(&[(&f, Some(&x as &dyn Value)), (&f, Some(&y as &dyn Value))]),
        );
    });
    let mut failures = Vec::new();
    check_all("one field twice", &text, 2, &mut failures);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The first value given wins, in the span and in the event.
    let lines: Vec<serde_json::Value> = split_lines(&text)
        .iter()
        .map(|l| serde_json::from_str(l.trim_end()).unwrap())
        .collect();
    assert_eq!(lines[0]["span"]["a"], 1, "{text}");
    assert_eq!(lines[1]["fields"]["a"], 1, "{text}");
}

/// A span callsite whose keys need the collision prefix records through the merge, which
/// keeps one value per field too.
#[test]
fn one_field_given_twice_in_a_span_with_a_prefixed_key() {
    let names = vec!["level".to_owned(), "a".to_owned()];
    let sp = dyn_callsite("hostile", Kind::SPAN, "span", &names, Level::INFO);
    for layout in [FieldLayout::Nested, FieldLayout::Flatten] {
        let text = run_default(Schema::default().field_layout(layout), || {
            let (x, y, l) = (1u64, 2u64, "lvl");
            let a = sp.fields().field("a").unwrap();
            let level = sp.fields().field("level").unwrap();
            let span = tracing::Span::new(
                sp,
                &sp.fields().value_set(&[
                    (&a, Some(&x as &dyn Value)),
                    (&level, Some(&l as &dyn Value)),
                    (&a, Some(&y as &dyn Value)),
                ]),
            );
            let _e = span.enter();
            tracing::info!("in the span");
        });
        let mut failures = Vec::new();
        check_all(&format!("{layout:?}"), &text, 1, &mut failures);
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

/// One line with fields named `names`: an event's own, or (`in_span`) those of the span an
/// event is logged in.
fn log_fields(in_span: bool, names: &[String]) {
    if in_span {
        let span = span_with(names);
        let _e = span.enter();
        tracing::info!("in span");
    } else {
        event_with(names);
    }
}

/// The top-level keys of `line` of which one is the dotted parent of another (`a` and `a.b`):
/// stores that expand dotted keys into objects (Elasticsearch, Datadog) refuse such a line.
fn dotted_kin_keys(line: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    let mut kin = Vec::new();
    for a in &keys {
        for b in &keys {
            if b.len() > a.len() && b.starts_with(a.as_str()) && b.as_bytes()[a.len()] == b'.' {
                kin.push(((*a).clone(), (*b).clone()));
            }
        }
    }
    kin
}

/// A static field that took the collision prefix (named like a key of the line) and an event
/// or span field named like its dotted child or parent: the field takes the prefix once more,
/// instead of being written as the dotted child or parent of the static field's key.
#[test]
fn a_field_is_never_the_dotted_kin_of_a_prefixed_static_field() {
    let cases: Vec<(Schema, &str, &str)> = vec![
        (Schema::default(), "level", "level.x"),
        (Schema::ecs(), "error.message", "error"),
        (Schema::ecs(), "log.level", "log.level.name"),
        (Schema::default(), "message", "message.id"),
        (Schema::datadog(), "dd.trace_id", "dd"),
    ];
    let mut failures = Vec::new();
    for (schema, static_name, field) in cases {
        for in_span in [false, true] {
            let cap = Capture::new();
            let layer = traceline::layer()
                .with_schema(schema.clone())
                .with_static_field(static_name, "static")
                .with_writer(cap.clone());
            let names = vec![field.to_owned()];
            with_default(tracing_subscriber::registry().with(layer), || {
                log_fields(in_span, &names)
            });
            let text = cap.text();
            let line = text.lines().next().unwrap_or_default();
            let kin = dotted_kin_keys(line);
            if !kin.is_empty() || bad(&format!("{line}\n")).is_some() {
                failures.push(format!(
                    "static {static_name:?}, field {field:?} (in span: {in_span}): {kin:?} in {line}"
                ));
            }
            // The field's value is on the line, under some key of its own.
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let values = v
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| k.ends_with(field))
                .count();
            if values == 0 {
                failures.push(format!("field {field:?} missing: {line}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// With the collision prefix's stem renamed to a dotted name (`a.b`), its dotted parent (`a`)
/// is the parent of every renamed key: a field named so takes the prefix too.
#[test]
fn the_dotted_parent_of_a_renamed_stem_is_taken() {
    for (schema, what, clash) in [
        (
            Schema::default().rename(Key::Fields, "a.b"),
            "default",
            "level",
        ),
        (Schema::ecs().rename(Key::Fields, "a.b"), "ecs", "log.level"),
    ] {
        for in_span in [false, true] {
            let names = vec![clash.to_owned(), "a".to_owned()];
            let text = run_default(schema.clone(), || log_fields(in_span, &names));
            let line = text.lines().next().unwrap();
            assert!(bad(&format!("{line}\n")).is_none(), "{line}");
            assert_eq!(
                dotted_kin_keys(line),
                Vec::<(String, String)>::new(),
                "{what}, in span {in_span}: {line}"
            );
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v[format!("a.b.{clash}").as_str()], "v0", "{line}");
            assert_eq!(v["a.b.a"], "v1", "{line}");
        }
    }
}

/// An event with fields `names` valued `vals`.
fn event_valued(names: &[String], vals: &[String]) {
    let meta = dyn_callsite("hostile", Kind::EVENT, "event", names, Level::WARN);
    let vals: Vec<Option<&dyn Value>> = vals.iter().map(|v| Some(v as &dyn Value)).collect();
    tracing::Event::dispatch(meta, &meta.fields().value_set_all(&vals));
}

/// A span with fields `names` valued `vals`.
fn span_valued(names: &[String], vals: &[String]) -> tracing::Span {
    let meta = dyn_callsite("hostile", Kind::SPAN, "span", names, Level::INFO);
    let vals: Vec<Option<&dyn Value>> = vals.iter().map(|v| Some(v as &dyn Value)).collect();
    tracing::Span::new(meta, &meta.fields().value_set_all(&vals))
}

/// A field of one scope (the event, a span) whose key is the one a field of another name in
/// another scope was renamed into (`fields.level` beside `level`, which is a core key) is
/// written under a key of its own, not dropped as if shadowed: only a field of the same name
/// in a closer scope shadows one. Every preset, with its own level key.
#[test]
fn a_field_renamed_into_another_scopes_key_loses_no_value() {
    let mut failures = Vec::new();
    for (preset, schema) in presets() {
        let level = schema.key(Key::Level).unwrap().to_owned();
        // The key a field named like the level key is written under, in this preset.
        let text = run_default(schema.clone(), || {
            event_valued(std::slice::from_ref(&level), &["probe".to_owned()])
        });
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        let renamed = v
            .as_object()
            .unwrap()
            .iter()
            .find(|(_, v)| *v == "probe")
            .map(|(k, _)| k.clone())
            .unwrap();
        assert_ne!(renamed, level, "{preset}: {text}");
        // (the event's field, the inner span's, the outer span's)
        let shapes: Vec<[Option<String>; 3]> = vec![
            [Some(level.clone()), Some(renamed.clone()), None],
            [Some(renamed.clone()), Some(level.clone()), None],
            [None, Some(level.clone()), Some(renamed.clone())],
            [None, Some(renamed.clone()), Some(level.clone())],
            [Some(level.clone()), None, Some(renamed.clone())],
        ];
        for shape in shapes {
            let text = run_default(schema.clone(), || {
                let one = |i: usize| -> (Vec<String>, Vec<String>) {
                    match &shape[i] {
                        Some(n) => (vec![n.clone()], vec![format!("value-{i}")]),
                        None => (vec![], vec![]),
                    }
                };
                let (on, ov) = one(2);
                let outer = span_valued(&on, &ov);
                let _o = outer.enter();
                let (inn, iv) = one(1);
                let inner = span_valued(&inn, &iv);
                let _i = inner.enter();
                let (en, ev) = one(0);
                event_valued(&en, &ev);
            });
            let line = text.lines().next().unwrap();
            if let Some(e) = bad(&format!("{line}\n")) {
                failures.push(format!("{preset} {shape:?}: {e}"));
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for (i, name) in shape.iter().enumerate() {
                if name.is_some() {
                    let want = format!("value-{i}");
                    let n = times_written(&v, &want);
                    if n != 1 {
                        failures.push(format!("{preset} {shape:?}: {want} {n} times: {line}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// How many top-level keys of `line` hold the string `value`.
fn times_written(line: &serde_json::Value, value: &str) -> usize {
    line.as_object()
        .unwrap()
        .values()
        .filter(|v| *v == value)
        .count()
}

/// A span field moved past a renamed field of another name still shadows a field of its own
/// name in an outer span: the event's `level` is written as `fields.level`, both spans have a
/// field named `fields.level`, and only the inner one's value is on the line.
#[test]
fn a_moved_span_field_still_shadows_an_outer_field_of_its_name() {
    let names = vec!["fields.level".to_owned()];
    let text = run_default(Schema::default(), || {
        let outer = span_valued(&names, &["outer-value".to_owned()]);
        let _o = outer.enter();
        let inner = span_valued(&names, &["inner-value".to_owned()]);
        let _i = inner.enter();
        event_valued(&["level".to_owned()], &["event-value".to_owned()]);
    });
    let line = text.lines().next().unwrap();
    assert!(bad(&format!("{line}\n")).is_none(), "{line}");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let values: Vec<&serde_json::Value> = v.as_object().unwrap().values().collect();
    assert!(values.contains(&&"event-value".into()), "{line}");
    assert!(values.contains(&&"inner-value".into()), "{line}");
    assert!(!values.contains(&&"outer-value".into()), "{line}");
}

/// Two fields of one span with one name, the first moved past a renamed event field: the
/// second is moved again, not taken as shadowed (only the event's and inner spans' fields
/// shadow a span's).
#[test]
fn a_sibling_of_a_moved_span_field_is_not_dropped() {
    let names = vec!["fields.level".to_owned(), "fields.level".to_owned()];
    let text = run_default(Schema::default(), || {
        let span = span_valued(&names, &["first".to_owned(), "second".to_owned()]);
        let _g = span.enter();
        event_valued(&["level".to_owned()], &["event-value".to_owned()]);
    });
    let line = text.lines().next().unwrap();
    assert!(bad(&format!("{line}\n")).is_none(), "{line}");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let values: Vec<&serde_json::Value> = v.as_object().unwrap().values().collect();
    for want in ["event-value", "first", "second"] {
        assert!(values.contains(&&want.into()), "{want}: {line}");
    }
}

/// The line of an event with fields `shape[0]`, inside a span with fields `shape[1]`, inside one
/// with fields `shape[2]`; field `j` of scope `i` is valued `value-{i}-{j}`.
fn line_of_scopes(schema: &Schema, shape: &[Vec<String>; 3]) -> String {
    run_default(schema.clone(), || {
        let vals = |i: usize| -> Vec<String> {
            (0..shape[i].len())
                .map(|j| format!("value-{i}-{j}"))
                .collect()
        };
        let outer = span_valued(&shape[2], &vals(2));
        let _o = outer.enter();
        let inner = span_valued(&shape[1], &vals(1));
        let _i = inner.enter();
        event_valued(&shape[0], &vals(0));
    })
}

/// Fields of the event and of its spans, or of one of them, named so that one key is the
/// dotted parent of another (`user` and `user.id`): every value is on the line once, under a
/// key of its own, and no key is the dotted parent of another (stores that expand dotted keys,
/// Elasticsearch and Datadog, would refuse the line). Every preset; a field of the same name
/// in a closer scope still shadows one (the outer span's `user` under the inner span's).
#[test]
fn fields_of_any_scope_are_never_dotted_kin() {
    let s = |v: &[&str]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    // (the event's fields, the inner span's, the outer span's)
    let shapes: Vec<[Vec<String>; 3]> = vec![
        [s(&["user.id"]), s(&["user"]), s(&[])],
        [s(&["user"]), s(&["user.id"]), s(&[])],
        [s(&["user", "user.id"]), s(&[]), s(&[])],
        [s(&[]), s(&["http", "http.method"]), s(&[])],
        [s(&[]), s(&["a.b"]), s(&["a"])],
        [s(&[]), s(&["a"]), s(&["a.b.c"])],
        [s(&["a.b"]), s(&["a"]), s(&["a.b.c"])],
        [s(&["order.id"]), s(&["order"]), s(&["order.id.x"])],
        [s(&["x.y"]), s(&["fields.x"]), s(&["x"])],
        [s(&["level"]), s(&["fields.level.y"]), s(&[])],
        [s(&["fields.level.y"]), s(&[]), s(&["level"])],
    ];
    let mut failures = Vec::new();
    for (preset, schema) in presets() {
        for shape in &shapes {
            let text = line_of_scopes(&schema, shape);
            let line = text.lines().next().unwrap();
            if let Some(e) = bad(&format!("{line}\n")) {
                failures.push(format!("{preset} {shape:?}: {e}"));
                continue;
            }
            let kin = dotted_kin_keys(line);
            if !kin.is_empty() {
                failures.push(format!("{preset} {shape:?}: {kin:?} in {line}"));
            }
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for (i, names) in shape.iter().enumerate() {
                for j in 0..names.len() {
                    let want = format!("value-{i}-{j}");
                    let n = times_written(&v, &want);
                    if n != 1 {
                        failures.push(format!("{preset} {shape:?}: {want} {n} times: {line}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A field of the same name in a closer scope still shadows an outer one when a dotted
/// relative is about: the outer span's `user` is not written beside the inner span's `user`,
/// and the event's `user.id` moves the inner span's `user` out of its way.
#[test]
fn shadowing_holds_beside_dotted_kin() {
    let text = run_default(Schema::default(), || {
        let outer = span_valued(&["user".to_owned()], &["outer".to_owned()]);
        let _o = outer.enter();
        let inner = span_valued(&["user".to_owned()], &["inner".to_owned()]);
        let _i = inner.enter();
        event_valued(&["user.id".to_owned()], &["event".to_owned()]);
    });
    let line = text.lines().next().unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["user.id"], "event", "{line}");
    assert_eq!(v["fields.user"], "inner", "{line}");
    let values: Vec<&serde_json::Value> = v.as_object().unwrap().values().collect();
    assert!(!values.contains(&&"outer".into()), "{line}");
    assert!(dotted_kin_keys(line).is_empty(), "{line}");
}

/// A field of the event or of an inner span hides an outer field of its name even when the
/// two took different keys (one of them moved out of the way of a dotted relative in its own
/// scope): the outer value is never written beside it.
#[test]
fn a_closer_field_hides_an_outer_one_of_its_name_whatever_keys_they_took() {
    let s = |v: &[&str]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    // (the event's fields, the inner span's, the outer span's), and the values hidden
    let shapes: Vec<([Vec<String>; 3], Vec<&str>)> = vec![
        (
            [s(&["user.id", "user"]), s(&["user"]), s(&[])],
            vec!["value-1-0"],
        ),
        (
            [s(&[]), s(&["user.id", "user"]), s(&["user"])],
            vec!["value-2-0"],
        ),
        (
            [s(&["user"]), s(&["user.id", "user"]), s(&[])],
            vec!["value-1-1"],
        ),
        (
            [s(&["a", "a.b"]), s(&["a.b", "a"]), s(&["a", "a.b"])],
            vec!["value-1-0", "value-1-1", "value-2-0", "value-2-1"],
        ),
    ];
    for (preset, schema) in presets() {
        for (shape, hidden) in &shapes {
            let text = line_of_scopes(&schema, shape);
            let line = text.lines().next().unwrap();
            assert!(bad(&format!("{line}\n")).is_none(), "{line}");
            assert!(
                dotted_kin_keys(line).is_empty(),
                "{preset} {shape:?}: {line}"
            );
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for (i, names) in shape.iter().enumerate() {
                for j in 0..names.len() {
                    let want = format!("value-{i}-{j}");
                    let times = usize::from(!hidden.contains(&want.as_str()));
                    assert_eq!(
                        times_written(&v, &want),
                        times,
                        "{preset} {shape:?}: {want}: {line}"
                    );
                }
            }
        }
    }
}

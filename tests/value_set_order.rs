//! Hand-built value sets (fields out of declared order, given twice) against spans and
//! schemas: every line is strict JSON with one key per field.

mod common;

use common::{Capture, Failure, dyn_callsite, split_lines};
use traceline::{ErrorLayout, FieldLayout, Key, Redaction, Schema};
use tracing::Level;
use tracing::field::{Field, Value};
use tracing::metadata::Kind;
use tracing::subscriber::with_default;
use tracing_subscriber::prelude::*;

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn run(schema: Schema, redaction: Option<Redaction>, f: impl FnOnce()) -> String {
    let cap = Capture::new();
    let mut layer = traceline::layer()
        .with_schema(schema)
        .with_writer(cap.clone());
    if let Some(r) = redaction {
        layer = layer.with_redaction(r);
    }
    with_default(tracing_subscriber::registry().with(layer), f);
    cap.text()
}

fn strict(text: &str) -> Vec<serde_json::Value> {
    split_lines(text)
        .iter()
        .map(|l| {
            let body = l.trim_end_matches('\n');
            if let Err(e) = common::parse_strict(body) {
                panic!("{e}: {body}");
            }
            serde_json::from_str(body).unwrap()
        })
        .collect()
}

/// An entered span with one field, recorded straight into its fragments.
fn span_field(name: &str) -> tracing::Span {
    let sp = dyn_callsite("vso", Kind::SPAN, "span", &names(&[name]), Level::INFO);
    let v = "span";
    let f = sp.fields().iter().next().unwrap();
    tracing::Span::new(sp, &sp.fields().value_set(&[(&f, Some(&v as &dyn Value))]))
}

/// Two `message` fields given second first: the first-declared one is keyed on the line
/// (`fields.fields.message`; `fields.message` with the message key switched off), a key whose
/// bit the callsite's cached keys do not have, so a span field with that key was not checked
/// for shadowing.
#[test]
fn a_message_keyed_on_the_line_shadows_span_fields() {
    let ev = dyn_callsite(
        "vso",
        Kind::EVENT,
        "event",
        &names(&["message", "message"]),
        Level::INFO,
    );
    for (schema, key) in [
        (Schema::default(), "fields.fields.message"),
        (Schema::default().disable(Key::Message), "fields.message"),
    ] {
        let text = run(schema, None, || {
            let _s = span_field(key).entered();
            let f: Vec<Field> = ev.fields().iter().collect();
            let (a, b) = ("first", "second");
            tracing::Event::dispatch(
                ev,
                &ev.fields().value_set(&[
                    (&f[1], Some(&b as &dyn Value)),
                    (&f[0], Some(&a as &dyn Value)),
                ]),
            );
        });
        let v = strict(&text);
        assert_eq!(v[0][key], "first", "{text}");
    }
}

/// An error field given twice with flat errors: the first value is on the line (as the flat
/// error keys), the second is not.
#[test]
fn a_flat_error_given_twice_keeps_its_first_value() {
    let ev = dyn_callsite("vso", Kind::EVENT, "event", &names(&["err"]), Level::ERROR);
    let schema = Schema::ecs().error_layout(ErrorLayout::Flat);
    let text = run(schema, None, || {
        let f = ev.fields().field("err").unwrap();
        let (a, b) = (
            Failure("first".into(), None),
            Failure("second".into(), None),
        );
        let (a, b): (
            &(dyn std::error::Error + 'static),
            &(dyn std::error::Error + 'static),
        ) = (&a, &b);
        tracing::Event::dispatch(
            ev,
            &ev.fields()
                .value_set(&[(&f, Some(&a as &dyn Value)), (&f, Some(&b as &dyn Value))]),
        );
    });
    let v = strict(&text);
    assert!(v[0].get("err").is_none(), "{text}");
}

/// A field past the 64 cached ones given twice keeps its first value, as a cached one does.
#[test]
fn a_field_past_the_cached_ones_given_twice_keeps_its_first_value() {
    let n: Vec<String> = (0..66).map(|i| format!("f{i}")).collect();
    let ev = dyn_callsite("vso", Kind::EVENT, "event", &n, Level::INFO);
    let text = run(
        Schema::default().field_layout(FieldLayout::Nested),
        None,
        || {
            let f = ev.fields().field("f65").unwrap();
            let (a, b) = (1u64, 2u64);
            tracing::Event::dispatch(
                ev,
                &ev.fields()
                    .value_set(&[(&f, Some(&a as &dyn Value)), (&f, Some(&b as &dyn Value))]),
            );
        },
    );
    let v = strict(&text);
    assert_eq!(v[0]["fields"], serde_json::json!({"f65": 1}), "{text}");
}

/// A span field given twice keeps the same value whether or not its callsite's keys need the
/// collision prefix.
#[test]
fn a_span_field_given_twice_keeps_the_same_value_in_both_span_paths() {
    let mut got = Vec::new();
    for fields in [&["a"][..], &["level", "a"][..]] {
        let sp = dyn_callsite("vso", Kind::SPAN, "span", &names(fields), Level::INFO);
        let text = run(Schema::default(), None, || {
            let f = sp.fields().field("a").unwrap();
            let (x, y) = (1u64, 2u64);
            let span = tracing::Span::new(
                sp,
                &sp.fields()
                    .value_set(&[(&f, Some(&x as &dyn Value)), (&f, Some(&y as &dyn Value))]),
            );
            let _e = span.enter();
            tracing::info!("in");
        });
        got.push(strict(&text)[0]["a"].clone());
    }
    assert_eq!(got[0], got[1]);
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const POOL: &[&str] = &[
    "message",
    "message",
    "a",
    "level",
    "fields.level",
    "fields.message",
    "fields.fields.message",
    "fields.fields.fields.message",
    "msg",
    "fields.msg",
    "err",
    "error",
    "error.message",
    "password",
    "log.target",
    "x",
    "fields.a",
];

fn dispatch<const N: usize>(meta: &'static tracing::Metadata<'static>, picks: [(usize, usize); N]) {
    let fields: Vec<Field> = meta.fields().iter().collect();
    let err = Failure("boom".into(), Some(Box::new(Failure("cause".into(), None))));
    let err: &(dyn std::error::Error + 'static) = &err;
    let s = "s";
    let n = 7u64;
    let t = true;
    let vals: [&dyn Value; 4] = [&s, &n, &t, &err];
    let set: [(&Field, Option<&dyn Value>); N] =
        std::array::from_fn(|i| (&fields[picks[i].0], Some(vals[picks[i].1])));
    tracing::Event::dispatch(meta, &meta.fields().value_set(&set));
}

#[test]
fn random_value_sets() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut failures = Vec::new();
    let mut schemas: Vec<(String, Schema)> = Vec::new();
    for (p, s) in [
        ("default", Schema::default()),
        ("otel", Schema::otel()),
        ("ecs", Schema::ecs()),
        ("gcp", Schema::gcp("p")),
        ("datadog", Schema::datadog()),
    ] {
        for layout in [FieldLayout::Flatten, FieldLayout::Nested] {
            for msg in 0..3 {
                for flat in [false, true] {
                    let mut s = s.clone().field_layout(layout);
                    match msg {
                        1 => s = s.disable(Key::Message),
                        2 => s = s.rename(Key::Message, "msg"),
                        _ => {}
                    }
                    if flat {
                        s = s.error_layout(ErrorLayout::Flat);
                    }
                    schemas.push((format!("{p} {layout:?} msg={msg} flat={flat}"), s));
                }
            }
        }
    }
    let rounds: usize = std::env::var("TRACELINE_VALUE_SET_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    for round in 0..rounds {
        let (what, schema) = &schemas[round % schemas.len()];
        let nf = 1 + rng.below(6);
        let mut ev_names: Vec<String> = (0..nf)
            .map(|_| POOL[rng.below(POOL.len())].to_owned())
            .collect();
        let wide = rng.below(4) == 0;
        if wide {
            // Cached fields, then the pool again past 64.
            let mut w: Vec<String> = ev_names.clone();
            w.extend((w.len()..64).map(|i| format!("pad{i}")));
            w.extend(ev_names.iter().cloned());
            ev_names = w;
        }
        let ev = dyn_callsite("vso", Kind::EVENT, "event", &ev_names, Level::INFO);
        let sp_names: Vec<String> = (0..1 + rng.below(4))
            .map(|_| POOL[rng.below(POOL.len())].to_owned())
            .collect();
        let sp = dyn_callsite("vso", Kind::SPAN, "span", &sp_names, Level::INFO);
        let len = ev_names.len();
        let mut picks = [(0usize, 0usize); 8];
        for p in &mut picks {
            let i = if wide && rng.below(2) == 0 {
                64 + rng.below(len - 64)
            } else {
                rng.below(len.min(64).min(nf.max(1)))
            };
            *p = (i, rng.below(4));
        }
        let enter = rng.below(3) != 0;
        let redaction = (rng.below(2) == 0).then(|| Redaction::default().deny("a").deny("message"));
        let text = run(schema.clone(), redaction, || {
            let s = "sv";
            let svals: Vec<(Field, &dyn Value)> =
                sp.fields().iter().map(|f| (f, &s as &dyn Value)).collect();
            let span = match svals.len() {
                1 => tracing::Span::new(
                    sp,
                    &sp.fields().value_set(&[(&svals[0].0, Some(svals[0].1))]),
                ),
                2 => tracing::Span::new(
                    sp,
                    &sp.fields().value_set(&[
                        (&svals[1].0, Some(svals[1].1)),
                        (&svals[0].0, Some(svals[0].1)),
                    ]),
                ),
                3 => tracing::Span::new(
                    sp,
                    &sp.fields().value_set(&[
                        (&svals[2].0, Some(svals[2].1)),
                        (&svals[0].0, Some(svals[0].1)),
                        (&svals[1].0, Some(svals[1].1)),
                        (&svals[2].0, Some(svals[2].1)),
                    ]),
                ),
                _ => tracing::Span::new(
                    sp,
                    &sp.fields().value_set(&[
                        (&svals[3].0, Some(svals[3].1)),
                        (&svals[1].0, Some(svals[1].1)),
                        (&svals[0].0, Some(svals[0].1)),
                        (&svals[2].0, Some(svals[2].1)),
                    ]),
                ),
            };
            let _g = enter.then(|| span.enter());
            let k = rng.below(3);
            match k {
                0 => dispatch(ev, [picks[0], picks[1]]),
                1 => dispatch(ev, [picks[0], picks[1], picks[2], picks[3]]),
                _ => dispatch(ev, picks),
            }
        });
        for l in split_lines(&text) {
            let body = l.trim_end_matches('\n');
            if let Err(e) = common::parse_strict(body) {
                failures.push(format!("{what} ev={ev_names:?} picks={picks:?} sp={sp_names:?} enter={enter}: {e}: {body}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

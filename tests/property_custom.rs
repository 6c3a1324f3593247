//! Property tests on custom set-ups: custom schemas (renamed keys, switched off and on, static
//! fields, labels, service settings, both layouts, both error layouts), spans whose fields are
//! recorded later (Empty fields recorded once or twice), nested spans sharing names with event
//! fields and schema keys, tiny `max_line_len` / `max_field_len` with multi-byte text, odd field
//! names (dots, quotes, control characters, empty), two traceline layers in one subscriber, and
//! records from the `log` crate through the tracing-log bridge. Every line must pass the strict
//! checker (`common::check_line`): one line, valid JSON, no key twice in any object.

mod common;

use std::error::Error;
use std::sync::OnceLock;

use common::{Capture, Failure, check_line, dyn_callsite, provider, split_lines};
use opentelemetry::trace::TracerProvider as _;
use proptest::prelude::*;
use traceline::{ErrorLayout, FieldLayout, FlagsFormat, IdFormat, Key, Schema, TimestampFormat};
use tracing::Level;
use tracing::field::Value;
use tracing::metadata::Kind;
use tracing::subscriber::with_default;
use tracing_subscriber::prelude::*;

// ===== Dynamic callsites =====

// ===== Values =====

#[derive(Debug, Clone)]
enum V {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Debug(String),
    Error(Failure),
}

/// Multi-byte heavy text: every char is 1 to 4 bytes, escapes and U+2028 included.
fn tricky_string() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        2 => any::<char>(),
        3 => prop::sample::select(vec![
            '\n', '\r', '\t', '\0', '\u{1b}', '\u{7f}', '\u{2028}', '\u{2029}', '"', '\\', '/',
            'é', '😀', '\u{feff}', '{', '}', ',', ':', 'a', '€', '\u{e2}', '\u{80}', '.',
        ]),
    ];
    prop::collection::vec(ch, 0..40).prop_map(String::from_iter)
}

fn failure() -> impl Strategy<Value = Failure> {
    prop::collection::vec(tricky_string(), 1..3).prop_map(|msgs| {
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
        5 => tricky_string().prop_map(V::Str),
        1 => any::<i64>().prop_map(V::I64),
        1 => any::<u64>().prop_map(V::U64),
        1 => any::<f64>().prop_map(V::F64),
        1 => any::<bool>().prop_map(V::Bool),
        2 => tricky_string().prop_map(V::Debug),
        2 => failure().prop_map(V::Error),
    ]
}

/// Holds what the `&dyn Value`s borrow.
enum Holder<'a> {
    Plain(&'a V),
    Debug(tracing::field::DebugValue<&'a String>),
    Error(Box<dyn Error + 'static>),
}

impl<'a> Holder<'a> {
    fn new(v: &'a V) -> Self {
        match v {
            V::Debug(s) => Holder::Debug(tracing::field::debug(s)),
            V::Error(e) => Holder::Error(Box::new(e.clone())),
            _ => Holder::Plain(v),
        }
    }
    fn value(&self) -> &dyn Value {
        match self {
            Holder::Plain(V::Str(s)) => s,
            Holder::Plain(V::I64(n)) => n,
            Holder::Plain(V::U64(n)) => n,
            Holder::Plain(V::F64(n)) => n,
            Holder::Plain(V::Bool(b)) => b,
            Holder::Plain(_) => unreachable!(),
            Holder::Debug(d) => d,
            Holder::Error(e) => e,
        }
    }
}

fn with_values<R>(values: &[Option<V>], f: impl FnOnce(&[Option<&dyn Value>]) -> R) -> R {
    let holders: Vec<Option<Holder<'_>>> =
        values.iter().map(|v| v.as_ref().map(Holder::new)).collect();
    let values: Vec<Option<&dyn Value>> = holders
        .iter()
        .map(|h| h.as_ref().map(Holder::value))
        .collect();
    f(&values)
}

// ===== Names =====

fn presets() -> Vec<Schema> {
    vec![
        Schema::default(),
        Schema::otel(),
        Schema::ecs(),
        Schema::gcp("p"),
        Schema::datadog(),
    ]
}

/// Every key name the presets have, and names that stress the collision rules.
fn name_pool() -> &'static [String] {
    static POOL: OnceLock<Vec<String>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut pool: Vec<String> = Vec::new();
        for s in presets() {
            for k in Key::ALL {
                if let Some(n) = s.clone().enable(k).key(k) {
                    pool.push(n.to_owned());
                }
            }
        }
        pool.extend(
            [
                "fields",
                "fields.",
                "fields.fields",
                "fields.level",
                "fields.fields.level",
                "name",
                "fields.name",
                "",
                ".",
                "..",
                "a\"b",
                "a\nb",
                "\\",
                "é",
                "\u{2028}",
                "\u{0}",
                "\u{1f}",
                "x",
                "x.y",
                "x.y.z",
                "x.",
                ".x",
                "log.target",
                "log.file",
                "log.line",
                "log.module_path",
                "log",
                "message",
                "fields.message",
                "traceline.correlation_id",
                "traceline.truncated",
                "fields.traceline.truncated",
                "traceline",
                "event.dataset",
                "event",
                "ecs.version",
                "labels",
                "labels.x",
                "logging.googleapis.com/sourceLocation",
                "logging.googleapis.com/labels",
                "logging.googleapis.com/insertId",
                "time",
                "host",
                "service",
                "chain",
                "type",
                "span",
                "spans",
                "otel.name",
                "otel.kind",
                "f",
                "f.x",
                "f.f",
                "attrs",
                "attrs.level",
                "error",
                "exception",
                "trace",
                "dd",
                "severity",
                "user_id",
                "password",
                "token",
                "😀",
                "msg",
                "file",
                "line",
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
        8 => prop::sample::select(name_pool()),
        2 => "[a-z.]{0,6}",
        1 => any::<String>().prop_map(|s| s.chars().take(6).collect()),
        1 => tricky_string().prop_map(|s| s.chars().take(6).collect()),
    ]
}

/// Names `Key::Fields` may be renamed to: never the name of another key (a known limit).
fn stem_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "fields", "f", "attrs", "data", "a\"b", "é", "x.y", "ctx", "",
    ])
    .prop_map(str::to_owned)
}

// ===== Schemas =====

#[derive(Debug, Clone)]
enum J {
    S(String),
    N(i64),
    B(bool),
    O(Vec<(String, String)>),
}

impl J {
    fn json(&self) -> serde_json::Value {
        match self {
            J::S(s) => s.clone().into(),
            J::N(n) => (*n).into(),
            J::B(b) => (*b).into(),
            J::O(kv) => serde_json::Value::Object(
                kv.iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
                    .collect(),
            ),
        }
    }
}

fn any_j() -> impl Strategy<Value = J> {
    prop_oneof![
        3 => tricky_string().prop_map(J::S),
        1 => any::<i64>().prop_map(J::N),
        1 => any::<bool>().prop_map(J::B),
        1 => prop::collection::vec((field_name(), tricky_string()), 0..3).prop_map(J::O),
    ]
}

#[derive(Debug, Clone)]
enum Mod {
    Rename(usize, String),
    /// Renames key `.0` to the current name of key `.1` (its name even when it is off).
    RenameLike(usize, usize),
    /// A static field named like key `.0`.
    StaticLike(usize, J),
    /// Every opt-in key on, service settings and labels set.
    Everything,
    RenameFields(String),
    Disable(usize),
    Enable(usize),
    Static(String, J),
    Label(String, J),
    Service(u8, String),
    Layout(bool),
    Errors(bool),
    Ids(bool),
    Flags(bool),
    TracePrefix(String),
    Timestamp(u8),
}

/// Keys other than `Key::Fields` (whose renaming onto another key is a known limit).
fn key_index() -> impl Strategy<Value = usize> {
    (0..Key::ALL.len()).prop_filter("not Fields", |&i| Key::ALL[i] != Key::Fields)
}

fn any_mod() -> impl Strategy<Value = Mod> {
    prop_oneof![
        6 => (key_index(), field_name()).prop_map(|(k, n)| Mod::Rename(k, n)),
        4 => (key_index(), 0..Key::ALL.len()).prop_map(|(k, j)| Mod::RenameLike(k, j)),
        2 => (0..Key::ALL.len(), any_j()).prop_map(|(k, v)| Mod::StaticLike(k, v)),
        2 => Just(Mod::Everything),
        1 => stem_name().prop_map(Mod::RenameFields),
        2 => (0..Key::ALL.len()).prop_map(Mod::Disable),
        3 => (0..Key::ALL.len()).prop_map(Mod::Enable),
        4 => (field_name(), any_j()).prop_map(|(k, v)| Mod::Static(k, v)),
        1 => (field_name(), any_j()).prop_map(|(k, v)| Mod::Label(k, v)),
        2 => (0u8..3, tricky_string()).prop_map(|(i, s)| Mod::Service(i, s)),
        2 => any::<bool>().prop_map(Mod::Layout),
        1 => any::<bool>().prop_map(Mod::Errors),
        1 => any::<bool>().prop_map(Mod::Ids),
        1 => any::<bool>().prop_map(Mod::Flags),
        1 => tricky_string().prop_map(Mod::TracePrefix),
        1 => (0u8..5).prop_map(Mod::Timestamp),
    ]
}

#[derive(Debug, Clone)]
struct Cfg {
    preset: usize,
    mods: Vec<Mod>,
    max_line: Option<usize>,
    max_field: Option<usize>,
}

fn cfg() -> impl Strategy<Value = Cfg> {
    (
        0usize..5,
        prop::collection::vec(any_mod(), 0..10),
        prop::option::weighted(0.4, prop_oneof![0usize..64, 64usize..600, 600usize..2000]),
        prop::option::weighted(0.4, 0usize..12),
    )
        .prop_map(|(preset, mods, max_line, max_field)| Cfg {
            preset,
            mods,
            max_line,
            max_field,
        })
}

fn build_schema(c: &Cfg) -> Schema {
    let mut s = presets()[c.preset].clone();
    for m in &c.mods {
        s = match m.clone() {
            Mod::Rename(k, n) => s.rename(Key::ALL[k], n),
            Mod::RenameLike(k, j) => {
                let name = s
                    .clone()
                    .enable(Key::ALL[j])
                    .key(Key::ALL[j])
                    .unwrap()
                    .to_owned();
                s.rename(Key::ALL[k], name)
            }
            Mod::StaticLike(k, v) => {
                let name = s
                    .clone()
                    .enable(Key::ALL[k])
                    .key(Key::ALL[k])
                    .unwrap()
                    .to_owned();
                s.static_field(name, v.json())
            }
            Mod::Everything => {
                let mut s = s;
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
            Mod::RenameFields(n) => s.rename(Key::Fields, n),
            Mod::Disable(k) => s.disable(Key::ALL[k]),
            Mod::Enable(k) => s.enable(Key::ALL[k]),
            Mod::Static(k, v) => s.static_field(k, v.json()),
            Mod::Label(k, v) => s.label(&k, v.json()),
            Mod::Service(0, v) => s.service_name(v),
            Mod::Service(1, v) => s.service_version(v),
            Mod::Service(_, v) => s.environment(v),
            Mod::Layout(n) => s.field_layout(if n {
                FieldLayout::Nested
            } else {
                FieldLayout::Flatten
            }),
            Mod::Errors(f) => s.error_layout(if f {
                ErrorLayout::Flat
            } else {
                ErrorLayout::Object
            }),
            Mod::Ids(h) => s.id_format(if h {
                IdFormat::Hex
            } else {
                IdFormat::DecimalLow64
            }),
            Mod::Flags(h) => s.flags_format(if h {
                FlagsFormat::Hex
            } else {
                FlagsFormat::Bool
            }),
            Mod::TracePrefix(p) => s.trace_id_prefix(p),
            Mod::Timestamp(i) => s.timestamp_format(
                [
                    TimestampFormat::Rfc3339Millis,
                    TimestampFormat::Rfc3339Micros,
                    TimestampFormat::Rfc3339Nanos,
                    TimestampFormat::UnixMillis,
                    TimestampFormat::UnixNanos,
                ][i as usize],
            ),
        };
    }
    s
}

fn build_layer(c: &Cfg, cap: &Capture) -> traceline::Layer<Capture> {
    let mut l = traceline::layer()
        .with_writer(cap.clone())
        .log_internal_errors(false)
        .with_schema(build_schema(c));
    if let Some(n) = c.max_line {
        l = l.with_max_line_len(n);
    }
    if let Some(n) = c.max_field {
        l = l.with_max_field_len(n);
    }
    l
}

// ===== Cases =====

type Fields = Vec<(String, Option<V>)>;

fn fields(max: usize) -> impl Strategy<Value = Fields> {
    prop::collection::vec((field_name(), prop::option::weighted(0.7, any_v())), 0..max)
}

#[derive(Debug, Clone)]
struct SpanSpec {
    name: String,
    fields: Fields,
    /// (field index, value), recorded after creation (an index past the fields: none).
    records: Vec<(usize, V)>,
}

fn span_spec() -> impl Strategy<Value = SpanSpec> {
    (
        field_name(),
        fields(7),
        prop::collection::vec((0usize..7, any_v()), 0..5),
    )
        .prop_map(|(name, fields, records)| SpanSpec {
            name,
            fields,
            records,
        })
}

#[derive(Debug, Clone)]
struct Case {
    a: Cfg,
    b: Option<Cfg>,
    otel: bool,
    spans: Vec<SpanSpec>,
    message: Option<String>,
    event: Fields,
    /// A `log` record after the event: (target, message).
    log: Option<(String, String)>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        cfg(),
        prop::option::weighted(0.3, cfg()),
        any::<bool>(),
        prop::collection::vec(span_spec(), 0..4),
        prop::option::weighted(0.8, tricky_string()),
        fields(10),
        prop::option::weighted(0.3, (tricky_string(), tricky_string())),
    )
        .prop_map(|(a, b, otel, spans, message, event, log)| Case {
            a,
            b,
            otel,
            spans,
            message,
            event,
            log,
        })
}

/// A tiny pool of names that spell one chain of keys, so that many fields collide; past 64
/// fields (the cached ones) too.
fn small_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "x",
        "fields.x",
        "fields.fields.x",
        "message",
        "level",
        "fields.level",
        "",
        "fields.",
        "fields",
        "error",
        "e",
        "name",
        "fields.name",
        "f.x",
        "f",
        "log.target",
    ])
    .prop_map(str::to_owned)
}

fn many_fields(max: usize) -> impl Strategy<Value = Fields> {
    prop::collection::vec((small_name(), prop::option::weighted(0.8, any_v())), 0..max)
}

fn many_case() -> impl Strategy<Value = Case> {
    (
        cfg(),
        prop::option::weighted(0.3, cfg()),
        any::<bool>(),
        prop::collection::vec(
            (
                small_name(),
                many_fields(75),
                prop::collection::vec((0usize..75, any_v()), 0..8),
            )
                .prop_map(|(name, fields, records)| SpanSpec {
                    name,
                    fields,
                    records,
                }),
            0..3,
        ),
        prop::option::weighted(0.8, tricky_string()),
        many_fields(90),
        prop::option::weighted(0.2, (tricky_string(), tricky_string())),
    )
        .prop_map(|(a, b, otel, spans, message, event, log)| Case {
            a,
            b,
            otel,
            spans,
            message,
            event,
            log,
        })
}

fn run(c: &Case) -> Vec<(String, usize)> {
    let provider = provider();
    let cap_a = Capture::new();
    let cap_b = Capture::new();
    let otel = c
        .otel
        .then(|| tracing_opentelemetry::layer().with_tracer(provider.tracer("custom")));
    let subscriber = tracing_subscriber::registry()
        .with(otel)
        .with(build_layer(&c.a, &cap_a))
        .with(c.b.as_ref().map(|b| build_layer(b, &cap_b)));
    with_default(subscriber, || {
        let mut entered = Vec::new();
        for s in &c.spans {
            let names: Vec<String> = s.fields.iter().map(|(n, _)| n.clone()).collect();
            let meta = dyn_callsite("custom", Kind::SPAN, &s.name, &names, Level::INFO);
            let values: Vec<Option<V>> = s.fields.iter().map(|(_, v)| v.clone()).collect();
            let span = with_values(&values, |vals| {
                tracing::Span::new(meta, &meta.fields().value_set_all(vals))
            });
            entered.push((span.entered(), meta));
        }
        // Fields recorded later, in every span, while all are entered.
        for (s, (span, meta)) in c.spans.iter().zip(&entered) {
            for (i, v) in &s.records {
                let Some(field) = meta.fields().iter().nth(*i) else {
                    continue;
                };
                let one = [Some(v.clone())];
                with_values(&one, |vals| {
                    span.record_all(&meta.fields().value_set(&[(&field, vals[0])]));
                });
            }
        }
        let mut names: Vec<String> = Vec::new();
        if c.message.is_some() {
            names.push("message".to_owned());
        }
        names.extend(c.event.iter().map(|(n, _)| n.clone()));
        let meta = dyn_callsite("custom", Kind::EVENT, "event", &names, Level::WARN);
        let mut values: Vec<Option<V>> = Vec::new();
        if let Some(m) = &c.message {
            values.push(Some(V::Str(m.clone())));
        }
        values.extend(c.event.iter().map(|(_, v)| v.clone()));
        with_values(&values, |vals| {
            tracing::Event::dispatch(meta, &meta.fields().value_set_all(vals));
        });
        if let Some((target, msg)) = &c.log {
            tracing_log::format_trace(
                &log::Record::builder()
                    .args(format_args!("{msg}"))
                    .level(log::Level::Error)
                    .target(target)
                    .module_path(Some("custom::log"))
                    .file(Some("src/é\"q.rs"))
                    .line(Some(42))
                    .build(),
            )
            .unwrap();
        }
        drop(entered);
    });
    let expected = 1 + usize::from(c.log.is_some());
    let mut out = vec![(cap_a.text(), expected)];
    if c.b.is_some() {
        out.push((cap_b.text(), expected));
    }
    out
}

/// Cases that hit a documented limit (`Key::Fields` renamed onto another key's name, see
/// `Schema::rename`), skipped unless `TRACELINE_PROPERTY_ALL` is set.
fn known(c: &Case) -> bool {
    if std::env::var_os("TRACELINE_PROPERTY_ALL").is_some() {
        return false;
    }
    let mut cfgs = vec![&c.a];
    cfgs.extend(c.b.as_ref());
    cfgs.iter().any(|cfg| {
        let s = build_schema(cfg);
        let stem = s.key(Key::Fields).map(str::to_owned).unwrap_or_else(|| {
            s.clone()
                .enable(Key::Fields)
                .key(Key::Fields)
                .unwrap()
                .to_owned()
        });
        Key::ALL
            .iter()
            .filter(|&&k| k != Key::Fields)
            .filter_map(|&k| s.key(k))
            .any(|n| n == stem)
    })
}

fn check_case(c: &Case) -> Result<(), TestCaseError> {
    if known(c) {
        return Ok(());
    }
    for (text, expected) in run(c) {
        let lines = split_lines(&text);
        prop_assert_eq!(lines.len(), expected, "{:?}", text);
        for l in &lines {
            let body = &l[..l.len() - 1];
            if let Err(e) = common::parse_strict(body) {
                return Err(TestCaseError::fail(format!("{e}: {l:?}")));
            }
            check_line(l);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn custom_set_ups_give_valid_lines_without_duplicate_keys(c in case()) {
        check_case(&c)?;
    }

    #[test]
    fn many_colliding_fields_give_valid_lines(c in many_case()) {
        check_case(&c)?;
    }
}

/// Prints a few generated lines (`TRACELINE_PROPERTY_SHOW=1`, with `--nocapture`) to see what
/// the generator reaches.
#[test]
fn show_samples() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    if std::env::var_os("TRACELINE_PROPERTY_SHOW").is_none() {
        return;
    }
    let mut runner = TestRunner::default();
    for _ in 0..8 {
        let c = case().new_tree(&mut runner).unwrap().current();
        for (text, _) in run(&c) {
            println!("{text}");
        }
    }
}

/// A key renamed to the name of Cloud Logging's source-location object (where the file and
/// line go) takes the collision prefix: the object keeps its name, the line no key twice.
#[test]
fn a_key_renamed_to_gcps_source_location_object_takes_the_prefix() {
    let cap = Capture::new();
    let schema = Schema::gcp("p")
        .enable(Key::File)
        .rename(Key::Target, "logging.googleapis.com/sourceLocation");
    let layer = traceline::layer()
        .with_writer(cap.clone())
        .with_schema(schema);
    with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info!("hi");
    });
    let text = cap.text();
    let line = check_line(&text);
    assert_eq!(
        line.at("logging.googleapis.com/sourceLocation").str("file"),
        file!(),
        "{text}"
    );
}

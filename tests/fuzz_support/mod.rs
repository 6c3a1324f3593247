//! The `json_line` fuzz target's input decoder and line checker, shared by
//! `fuzz/fuzz_targets/json_line.rs` and `tests/fuzz_corpus.rs` (which replays the corpus on
//! stable). Both include `tests/common/mod.rs` as `crate::common` for the strict JSON parser.
//!
//! [`decode`] turns any bytes into a [`Input`]: a schema preset and field layout, 0–3 nested
//! spans with fields (some recorded after creation), an optional correlation scope, and an
//! event at any level with an optional message and fields of every value type `tracing` has,
//! under arbitrary names. [`run`] logs it through a fresh-per-configuration subscriber (with the
//! OpenTelemetry layer or without), and [`check`] panics with the line and the reason when the
//! line is not exactly what traceline promises:
//!
//! - one `write` call, one line, ending in `\n`, no raw newline, control character or U+2028;
//! - valid JSON (RFC 8259 and `serde_json`), an object, no duplicate key at any depth;
//! - every key the schema writes holds its exact value (timestamp, level, message, target,
//!   trace and span ids, flags, transaction id, correlation id, static fields, flat errors);
//! - every event and span field is written under the key the collision rules give it, with its
//!   exact value (or `"[REDACTED]"` for a secret-looking name), and no other key is present.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error;
use std::fmt::{self, Write as _};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::sync::{Mutex, OnceLock};

use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::trace::SdkTracerProvider;
use traceline::correlation::CorrelationId;
use traceline::{FieldLayout, Key, Redaction, Schema};
use tracing::callsite::{Callsite, Identifier};
use tracing::field::{Field, FieldSet, Value, Visit};
use tracing::metadata::Kind;
use tracing::subscriber::Interest;
use tracing::{Dispatch, Level, Metadata};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

use crate::common::{self, Json};

/// Event fields beyond this are cut (a `tracing` callsite never has this many in practice).
/// Past 256, so that more than 256 fields spelling one key are reached (see
/// `fuzz/regressions/README.md`).
pub const MAX_FIELDS: usize = 300;
/// Longest decoded string, in bytes.
const MAX_STR: usize = 8 << 10;
/// Bytes of strings one input may decode to in all (repeats make long strings from few bytes;
/// this keeps every run fast).
const MAX_TOTAL_STR: usize = 32 << 10;
/// Dynamic callsites kept before existing ones are reused.
const MAX_CALLSITES: usize = 4096;
/// Bytes of names leaked for callsites before existing ones are reused.
const MAX_LEAKED: usize = 32 << 20;
/// The field `traceline::correlation::scope` gives its span.
const CORRELATION_FIELD: &str = "traceline.correlation_id";
/// The fixed timestamp, as the presets write it (`common::fixed_clock`).
const NANOS: &str = "2026-11-25T10:32:03.123456789Z";
const MILLIS: &str = "2026-11-25T10:32:03.123Z";
const DEFAULT_TARGET: &str = "fuzz::json_line";

// ===== Decoding =====

/// Reads bytes front to back; past the end every read is zero, so any input decodes.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Most fields one callsite gets.
    max_fields: usize,
    /// String bytes left to decode.
    budget: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader {
            data,
            pos: 0,
            max_fields: MAX_FIELDS,
            budget: MAX_TOTAL_STR,
        }
    }

    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let start = self.pos.min(self.data.len());
        let end = self.pos.saturating_add(n).min(self.data.len());
        let mut v = self.data[start..end].to_vec();
        v.resize(n, 0);
        self.pos = self.pos.saturating_add(n);
        v
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        self.take(N).try_into().expect("N bytes")
    }

    pub fn exhausted(&self) -> bool {
        self.pos >= self.data.len()
    }
}

/// The schema presets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Preset {
    Default,
    Otel,
    Ecs,
    Gcp,
    Datadog,
}

impl Preset {
    pub const ALL: [Preset; 5] = [
        Preset::Default,
        Preset::Otel,
        Preset::Ecs,
        Preset::Gcp,
        Preset::Datadog,
    ];

    pub fn schema(self) -> Schema {
        match self {
            Preset::Default => Schema::default(),
            Preset::Otel => Schema::otel(),
            Preset::Ecs => Schema::ecs(),
            Preset::Gcp => Schema::gcp("p"),
            Preset::Datadog => Schema::datadog(),
        }
    }

    fn level_names(self) -> [&'static str; 5] {
        match self {
            Preset::Gcp => ["DEBUG", "DEBUG", "INFO", "WARNING", "ERROR"],
            Preset::Datadog => ["trace", "debug", "info", "warn", "error"],
            _ => ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"],
        }
    }

    fn timestamp(self) -> &'static str {
        match self {
            Preset::Datadog => MILLIS,
            _ => NANOS,
        }
    }

    /// Errors go to top-level `error.*` keys ([`traceline::ErrorLayout::Flat`]).
    fn flat_errors(self) -> bool {
        matches!(self, Preset::Otel | Preset::Ecs | Preset::Datadog)
    }

    /// Static fields the preset writes on every line.
    /// Names the store reads as its own, reserved though the preset does not write them.
    fn store_reserved(self) -> &'static [&'static str] {
        match self {
            Preset::Datadog => &[
                "host", "service", "source", "trace_id", "span_id", "env", "version",
            ],
            Preset::Gcp => &[
                "time",
                "timestamp",
                "timestampSeconds",
                "timestampNanos",
                "httpRequest",
                "logging.googleapis.com/labels",
                "logging.googleapis.com/sourceLocation",
                "logging.googleapis.com/insertId",
                "logging.googleapis.com/operation",
            ],
            _ => &[],
        }
    }

    fn static_fields(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Preset::Ecs => &[("ecs.version", traceline::schema::ECS_VERSION)],
            _ => &[],
        }
    }

    fn trace_id(self, sc: &SpanContext) -> String {
        match self {
            Preset::Datadog => (u128::from_be_bytes(sc.trace_id().to_bytes()) as u64).to_string(),
            Preset::Gcp => format!("projects/p/traces/{}", sc.trace_id()),
            _ => sc.trace_id().to_string(),
        }
    }

    fn span_id(self, sc: &SpanContext) -> String {
        match self {
            Preset::Datadog => u64::from_be_bytes(sc.span_id().to_bytes()).to_string(),
            _ => sc.span_id().to_string(),
        }
    }

    fn flags(self, sampled: bool) -> Exp<'static> {
        match self {
            Preset::Gcp => Exp::Bool(sampled),
            _ => Exp::Text(if sampled { "01" } else { "00" }.to_owned()),
        }
    }
}

/// An error with a chain of sources, outermost first.
#[derive(Debug, Clone)]
pub struct Chain(pub Vec<String>);

/// One link of a [`Chain`] as a real `Error` whose `source()` is the next link.
#[derive(Debug)]
pub struct Failure {
    message: String,
    source: Option<Box<Failure>>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for Failure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

impl Chain {
    pub fn error(&self) -> Failure {
        let mut source = None;
        for m in self.0.iter().skip(1).rev() {
            source = Some(Box::new(Failure {
                message: m.clone(),
                source,
            }));
        }
        Failure {
            message: self.0.first().cloned().unwrap_or_default(),
            source,
        }
    }
}

/// Text printed by `Debug`, written in pieces of `chunk` characters (0: one `write_char` each),
/// as derived `Debug` impls write many small pieces.
#[derive(Clone)]
pub struct DebugText {
    pub text: String,
    pub chunk: usize,
    /// Return an error after writing the text, as a broken `Debug` impl can.
    pub fail: bool,
}

impl fmt::Debug for DebugText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.chunk == 0 {
            for c in self.text.chars() {
                f.write_char(c)?;
            }
        } else {
            let mut piece = String::new();
            for (i, c) in self.text.chars().enumerate() {
                piece.push(c);
                if (i + 1) % self.chunk == 0 {
                    f.write_str(&piece)?;
                    piece.clear();
                }
            }
            f.write_str(&piece)?;
        }
        if self.fail { Err(fmt::Error) } else { Ok(()) }
    }
}

/// A field value of any type `tracing` records.
#[derive(Clone)]
pub enum V {
    Str(String),
    U64(u64),
    I64(i64),
    U128(u128),
    I128(i128),
    F64(f64),
    Bool(bool),
    /// `?value`
    Debug(DebugText),
    /// `%value`
    Display(String),
    Error(Chain),
    Bytes(Vec<u8>),
}

impl fmt::Debug for V {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            V::Str(s) => write!(f, "Str({s:?})"),
            V::U64(n) => write!(f, "U64({n})"),
            V::I64(n) => write!(f, "I64({n})"),
            V::U128(n) => write!(f, "U128({n})"),
            V::I128(n) => write!(f, "I128({n})"),
            V::F64(n) => write!(f, "F64({n:?} = {:#018x})", n.to_bits()),
            V::Bool(b) => write!(f, "Bool({b})"),
            V::Debug(d) => write!(f, "Debug({:?}, chunk {}, fail {})", d.text, d.chunk, d.fail),
            V::Display(s) => write!(f, "Display({s:?})"),
            V::Error(c) => write!(f, "Error({:?})", c.0),
            V::Bytes(b) => write!(f, "Bytes({b:?})"),
        }
    }
}

/// A value as `tracing` takes it: owns the wrappers a `&dyn Value` borrows.
enum Holder<'a> {
    Plain(&'a V),
    Debug(tracing::field::DebugValue<&'a DebugText>),
    Display(tracing::field::DisplayValue<&'a String>),
    Error(Box<dyn Error + 'static>),
    Bytes(&'a [u8]),
}

/// Runs `f` with `values` as the `tracing` values of a value set (`None`: no value).
fn with_values<R>(values: &[Option<V>], f: impl FnOnce(&[Option<&dyn Value>]) -> R) -> R {
    let holders: Vec<Option<Holder<'_>>> =
        values.iter().map(|v| v.as_ref().map(Holder::new)).collect();
    let values: Vec<Option<&dyn Value>> = holders
        .iter()
        .map(|h| h.as_ref().map(Holder::value))
        .collect();
    f(&values)
}

impl<'a> Holder<'a> {
    fn new(v: &'a V) -> Self {
        match v {
            V::Debug(d) => Holder::Debug(tracing::field::debug(d)),
            V::Display(s) => Holder::Display(tracing::field::display(s)),
            V::Error(c) => Holder::Error(Box::new(c.error())),
            V::Bytes(b) => Holder::Bytes(b),
            _ => Holder::Plain(v),
        }
    }

    fn value(&self) -> &dyn Value {
        match self {
            Holder::Plain(V::Str(s)) => s,
            Holder::Plain(V::U64(n)) => n,
            Holder::Plain(V::I64(n)) => n,
            Holder::Plain(V::U128(n)) => n,
            Holder::Plain(V::I128(n)) => n,
            Holder::Plain(V::F64(n)) => n,
            Holder::Plain(V::Bool(b)) => b,
            Holder::Plain(_) => unreachable!("wrapped in Holder::new"),
            Holder::Debug(d) => d,
            Holder::Display(d) => d,
            Holder::Error(e) => e,
            Holder::Bytes(b) => b,
        }
    }
}

pub type Fields = Vec<(String, Option<V>)>;

#[derive(Debug, Clone)]
pub struct SpanSpec {
    pub name: String,
    pub fields: Fields,
    /// `(field index, value)` recorded after the span is created.
    pub records: Vec<(usize, V)>,
}

#[derive(Debug, Clone)]
pub struct Input {
    pub preset: Preset,
    pub nested: bool,
    pub otel: bool,
    pub level: usize,
    pub target: String,
    /// The message, and whether it is recorded as `&str` (else as `format_args!`-like Display).
    pub message: Option<(String, bool)>,
    pub fields: Fields,
    /// Outermost first.
    pub spans: Vec<SpanSpec>,
    /// Where in the span stack the correlation scope goes, and its id.
    pub scope: Option<(usize, String)>,
    /// Log `traceline::record_error(&error)` instead of the event.
    pub record_error: Option<Chain>,
}

/// Names a fuzzer would rarely spell byte by byte: every key any preset writes, the collision
/// prefix, redacted names, escapes.
pub fn name_pool() -> &'static [String] {
    static POOL: OnceLock<Vec<String>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut pool: Vec<String> = Vec::new();
        for p in Preset::ALL {
            let schema = p.schema();
            for k in Key::ALL {
                if let Some(name) = schema.clone().enable(k).key(k) {
                    pool.push(name.to_owned());
                }
            }
        }
        pool.extend(
            [
                traceline::TRUNCATED_KEY,
                "ecs.version",
                "event.dataset",
                "labels",
                "error",
                "name",
                "fields",
                "fields.",
                "",
                ".",
                "a\"b",
                "a\nb",
                "\\",
                "\"",
                "é",
                "\u{2028}",
                "\u{0}",
                "x.y",
                "plain",
                "user_id",
                "message",
                CORRELATION_FIELD,
                "otel.name",
                "otel.kind",
                "otel.status_code",
                "password",
                "db.password",
                "accessToken",
                "X-Api-Key",
                "Set-Cookie",
                "session",
                "possession",
                "tokens_used",
                "mypassword",
            ]
            .map(str::to_owned),
        );
        let prefixed: Vec<String> = pool
            .iter()
            .flat_map(|k| [format!("fields.{k}"), format!("fields.fields.{k}")])
            .collect();
        pool.extend(prefixed);
        pool.sort();
        pool.dedup();
        pool
    })
}

/// Characters that need care in JSON or in the escaper's word-at-a-time scan.
const TRICKY: [char; 32] = [
    '"',
    '\\',
    '\n',
    '\r',
    '\t',
    '\0',
    '\u{1}',
    '\u{8}',
    '\u{c}',
    '\u{1b}',
    '\u{1f}',
    ' ',
    '\u{7f}',
    '\u{80}',
    '\u{2028}',
    '\u{2029}',
    '\u{2027}',
    '\u{202a}',
    '\u{e2}',
    'é',
    '😀',
    '\u{feff}',
    '\u{fffd}',
    '\u{10ffff}',
    '/',
    '{',
    '}',
    ',',
    ':',
    '[',
    'a',
    '.',
];

fn decode_string(r: &mut Reader<'_>, depth: u8) -> String {
    let tag = r.byte();
    let s = match tag {
        // Raw bytes; invalid UTF-8 becomes U+FFFD.
        0x00..=0xBF => String::from_utf8_lossy(&r.take(tag as usize)).into_owned(),
        // Characters from the tricky table, or any scalar value.
        0xC0..=0xDF => {
            let n = (tag - 0xC0) as usize;
            let mut s = String::new();
            for _ in 0..n {
                let b = r.byte();
                if b < 0xC0 {
                    s.push(TRICKY[b as usize % TRICKY.len()]);
                } else {
                    let [x, y, z] = r.array::<3>();
                    let c = u32::from_be_bytes([0, x, y, z]) % 0x11_0000;
                    s.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                }
            }
            s
        }
        // A name from the pool.
        0xE0..=0xEF => {
            let pool = name_pool();
            let i = (((tag - 0xE0) as usize) << 8) | r.byte() as usize;
            pool[i % pool.len()].clone()
        }
        // A string repeated: long values, escapes at every offset of the 8-byte scan.
        0xF0..=0xFE if depth < 2 => {
            let count = ((tag - 0xF0) as usize) * 256 + r.byte() as usize + 1;
            let inner = decode_string(r, depth + 1);
            let mut s = String::new();
            if !inner.is_empty() {
                let n = count.min(MAX_STR.min(r.budget) / inner.len());
                s = inner.repeat(n);
            }
            s
        }
        0xF0..=0xFE => String::new(),
        // A long raw string.
        0xFF => {
            let [hi, lo] = r.array::<2>();
            let n = (u16::from_be_bytes([hi, lo]) as usize).min(MAX_STR);
            String::from_utf8_lossy(&r.take(n)).into_owned()
        }
    };
    let max = MAX_STR.min(r.budget);
    let s = if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_owned()
    } else {
        s
    };
    r.budget -= s.len();
    s
}

const SPECIAL_F64: [f64; 16] = [
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    -0.0,
    0.0,
    f64::MIN_POSITIVE,
    5e-324,
    f64::MAX,
    f64::MIN,
    f64::EPSILON,
    1e15,
    1e-3,
    0.1,
    -123.456,
    4_503_599_627_370_496.0,
    9_007_199_254_740_993.0,
];

fn decode_chain(r: &mut Reader<'_>) -> Chain {
    let b = r.byte();
    // Usually short; sometimes past the 64 causes traceline writes.
    let n = if b >= 0xF0 {
        60 + (b - 0xF0) as usize
    } else {
        1 + (b % 5) as usize
    };
    Chain((0..n).map(|_| decode_string(r, 0)).collect())
}

/// A value, or `None` for a field declared but not recorded.
fn decode_value(r: &mut Reader<'_>, otel: bool) -> Option<V> {
    let tag = r.byte();
    if tag >= 0xF0 {
        return None;
    }
    Some(match tag % 16 {
        0 | 1 => V::Str(decode_string(r, 0)),
        2 => V::U64(u64::from_le_bytes(r.array())),
        3 => V::I64(i64::from_le_bytes(r.array())),
        4 => V::U128(u128::from_le_bytes(r.array())),
        5 => V::I128(i128::from_le_bytes(r.array())),
        6 => V::F64(f64::from_le_bytes(r.array())),
        7 => V::F64(SPECIAL_F64[r.byte() as usize % SPECIAL_F64.len()]),
        8 => V::Bool(r.byte() & 1 == 1),
        9 | 10 => {
            let chunk = r.byte();
            V::Debug(DebugText {
                text: decode_string(r, 0),
                chunk: (chunk % 20) as usize,
                // tracing-opentelemetry formats values with `format!`, which panics on a
                // failing impl: only without it.
                fail: !otel && chunk >= 0xF0,
            })
        }
        11 => V::Display(decode_string(r, 0)),
        12 | 13 => V::Error(decode_chain(r)),
        14 => {
            let n = r.byte() as usize % 40;
            V::Bytes(r.take(n))
        }
        _ => V::Str(name_pool()[r.byte() as usize % name_pool().len()].clone()),
    })
}

fn decode_fields(r: &mut Reader<'_>, otel: bool) -> Fields {
    let b = r.byte();
    let n = if b >= 0xF0 {
        // Many fields: past the 64 traceline caches keys for, up to MAX_FIELDS.
        ((b - 0xF0) as usize * 64 + r.byte() as usize).min(r.max_fields)
    } else {
        (b % 9) as usize
    };
    let mut fields = Vec::with_capacity(n);
    for _ in 0..n {
        // Many fields need many bytes: zeros past the end would make slow inputs cheap.
        if r.exhausted() {
            break;
        }
        let name = decode_string(r, 0);
        let value = decode_value(r, otel);
        fields.push((name, value));
    }
    fields
}

/// Decodes any bytes into an input.
pub fn decode(data: &[u8]) -> Input {
    decode_with_max_fields(data, MAX_FIELDS)
}

/// [`decode`], with up to `max_fields` fields per callsite (up to 1,023).
pub fn decode_with_max_fields(data: &[u8], max_fields: usize) -> Input {
    let mut r = Reader::new(data);
    r.max_fields = max_fields;
    let preset = Preset::ALL[r.byte() as usize % 5];
    let flags = r.byte();
    let nested = flags & 1 != 0;
    let otel = flags & 2 != 0;
    let has_scope = flags & 4 != 0;
    let has_message = flags & 8 != 0;
    let custom_target = flags & 16 != 0;
    let record_error = flags & 32 != 0;
    let n_spans = (flags >> 6) as usize;
    let level = r.byte() as usize % 5;
    let target = if custom_target {
        decode_string(&mut r, 0)
    } else {
        DEFAULT_TARGET.to_owned()
    };
    let message = has_message.then(|| {
        let as_str = r.byte() & 1 == 1;
        (decode_string(&mut r, 0), as_str)
    });
    let fields = decode_fields(&mut r, otel);
    let mut spans = Vec::new();
    for _ in 0..n_spans {
        let name = decode_string(&mut r, 0);
        let fields = decode_fields(&mut r, otel);
        let n = r.byte() as usize % 4;
        let records = (0..n)
            .filter_map(|_| {
                let i = r.byte() as usize;
                decode_value(&mut r, otel).map(|v| (i, v))
            })
            .collect();
        spans.push(SpanSpec {
            name,
            fields,
            records,
        });
    }
    let scope = has_scope.then(|| {
        let at = r.byte() as usize % (n_spans + 1);
        let raw = decode_string(&mut r, 0);
        let id = if CorrelationId::parse(&raw).is_ok() {
            raw
        } else {
            let mut id = String::from("req-");
            for b in raw.bytes().take(40) {
                let _ = write!(id, "{b:02x}");
            }
            id
        };
        (at, id)
    });
    let record_error = record_error.then(|| decode_chain(&mut r));
    Input {
        preset,
        nested,
        otel,
        level,
        target,
        message,
        fields,
        spans,
        scope,
        record_error,
    }
}

// ===== Dynamic callsites =====

/// A callsite whose metadata (field names, name, target) is made at run time.
struct DynCallsite(OnceLock<Metadata<'static>>);

impl Callsite for DynCallsite {
    fn set_interest(&self, _: Interest) {}
    fn metadata(&self) -> &Metadata<'_> {
        self.0.get().expect("metadata set at creation")
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct CallsiteKey {
    span: bool,
    level: usize,
    name: String,
    target: String,
    fields: Vec<String>,
}

#[derive(Default)]
struct Callsites {
    map: HashMap<CallsiteKey, &'static Metadata<'static>>,
    spans: Vec<&'static Metadata<'static>>,
    events: Vec<&'static Metadata<'static>>,
    leaked: usize,
}

const LEVELS: [Level; 5] = [
    Level::TRACE,
    Level::DEBUG,
    Level::INFO,
    Level::WARN,
    Level::ERROR,
];

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// The callsite for `key`: made (and leaked) on first use; once [`MAX_CALLSITES`] exist, an
/// existing one of the same kind chosen by the key's hash, whatever its names. Callers must
/// use the returned metadata's names, not the key's.
fn callsite(key: CallsiteKey) -> &'static Metadata<'static> {
    static CALLSITES: OnceLock<Mutex<Callsites>> = OnceLock::new();
    let mut cs = CALLSITES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(meta) = cs.map.get(&key) {
        return meta;
    }
    let size: usize =
        key.name.len() + key.target.len() + key.fields.iter().map(|f| f.len() + 16).sum::<usize>();
    let list = if key.span { &cs.spans } else { &cs.events };
    if !list.is_empty() && (cs.map.len() >= MAX_CALLSITES || cs.leaked + size > MAX_LEAKED) {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        return list[h.finish() as usize % list.len()];
    }
    let meta = new_callsite(&key);
    cs.leaked += size;
    if key.span {
        cs.spans.push(meta);
    } else {
        cs.events.push(meta);
    }
    cs.map.insert(key, meta);
    meta
}

/// Makes, leaks and registers a callsite.
fn new_callsite(key: &CallsiteKey) -> &'static Metadata<'static> {
    let site: &'static DynCallsite = Box::leak(Box::new(DynCallsite(OnceLock::new())));
    let names: Vec<&'static str> = key.fields.iter().map(|f| leak(f)).collect();
    let meta = Metadata::new(
        leak(&key.name),
        leak(&key.target),
        LEVELS[key.level],
        Some("fuzz/json_line"),
        Some(1),
        Some("fuzz::json_line"),
        FieldSet::new(Box::leak(names.into_boxed_slice()), Identifier(site)),
        if key.span { Kind::SPAN } else { Kind::EVENT },
    );
    assert!(site.0.set(meta).is_ok(), "metadata set once");
    tracing::callsite::register(site);
    site.0.get().expect("just set")
}

// ===== Running =====

thread_local! {
    /// What the layer wrote on this thread: bytes and `write` calls.
    static OUT: RefCell<(Vec<u8>, usize)> = const { RefCell::new((Vec::new(), 0)) };
    static DISPATCHES: RefCell<HashMap<(Preset, bool, bool, bool), Dispatch>> =
        RefCell::new(HashMap::new());
}

/// Writes into this thread's [`OUT`].
#[derive(Clone, Copy)]
struct LocalWriter;

impl io::Write for LocalWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        OUT.with(|o| {
            let mut o = o.borrow_mut();
            o.0.extend_from_slice(data);
            o.1 += 1;
        });
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LocalWriter {
    type Writer = LocalWriter;
    fn make_writer(&'a self) -> LocalWriter {
        LocalWriter
    }
}

fn provider() -> &'static SdkTracerProvider {
    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
    PROVIDER.get_or_init(common::provider)
}

/// One subscriber per configuration and thread, reused across inputs.
fn dispatch(preset: Preset, nested: bool, otel: bool, limited: bool) -> Dispatch {
    DISPATCHES.with(|d| {
        d.borrow_mut()
            .entry((preset, nested, otel, limited))
            .or_insert_with(|| {
                let layout = if nested {
                    FieldLayout::Nested
                } else {
                    FieldLayout::Flatten
                };
                let (max_field, max_line) = if limited {
                    (LIMITED_FIELD, LIMITED_LINE)
                } else {
                    // The exact model of `check` is of lines written whole.
                    (usize::MAX, usize::MAX)
                };
                let layer = traceline::layer()
                    .with_writer(LocalWriter)
                    .with_schema(preset.schema().field_layout(layout))
                    .with_clock(common::fixed_clock)
                    .with_max_field_len(max_field)
                    .with_max_line_len(max_line);
                if otel {
                    Dispatch::new(common::otel_subscriber(provider(), layer))
                } else {
                    Dispatch::new(tracing_subscriber::registry().with(layer))
                }
            })
            .clone()
    })
}

/// A field list resolved against the callsite actually used.
pub struct Resolved {
    pub meta: &'static Metadata<'static>,
    /// One per field of `meta`.
    pub values: Vec<Option<V>>,
}

fn resolve(
    span: bool,
    level: usize,
    name: &str,
    target: &str,
    fields: &[(String, Option<V>)],
) -> Resolved {
    let meta = callsite(CallsiteKey {
        span,
        level,
        name: name.to_owned(),
        target: target.to_owned(),
        fields: fields.iter().map(|(n, _)| n.clone()).collect(),
    });
    // A reused callsite may have another number of fields: values are taken in order.
    let values = (0..meta.fields().len())
        .map(|i| fields.get(i).and_then(|(_, v)| v.clone()))
        .collect();
    Resolved { meta, values }
}

/// One span of the stack as logged.
pub enum SpanPlan {
    User {
        fields: Resolved,
        /// `(field index, value)`, indexes valid for `fields.meta`.
        records: Vec<(usize, V)>,
    },
    Scope(String),
}

/// An input bound to the callsites that log it.
pub struct Plan<'a> {
    pub input: &'a Input,
    /// The event's fields, the message (when there is one) first; `None` for `record_error`.
    pub event: Option<Resolved>,
    pub spans: Vec<SpanPlan>,
}

pub fn plan(input: &Input) -> Plan<'_> {
    let mut spans: Vec<SpanPlan> = input
        .spans
        .iter()
        .map(|s| {
            let fields = resolve(true, 2, &s.name, DEFAULT_TARGET, &s.fields);
            let n = fields.meta.fields().len();
            let records = if n == 0 {
                Vec::new()
            } else {
                s.records.iter().map(|(i, v)| (i % n, v.clone())).collect()
            };
            SpanPlan::User { fields, records }
        })
        .collect();
    if let Some((at, id)) = &input.scope {
        spans.insert((*at).min(spans.len()), SpanPlan::Scope(id.clone()));
    }
    let message_value = input.message.as_ref().map(|(m, as_str)| {
        if *as_str {
            V::Str(m.clone())
        } else {
            V::Display(m.clone())
        }
    });
    let event = input.record_error.is_none().then(|| {
        // Field names with the message first, as the `tracing` macros order them.
        let mut names: Fields = Vec::new();
        if let Some(v) = &message_value {
            names.push(("message".to_owned(), Some(v.clone())));
        }
        names.extend(input.fields.iter().cloned());
        resolve(false, input.level, "event", &input.target, &names)
    });
    Plan {
        input,
        event,
        spans,
    }
}

/// What one input made traceline write.
#[derive(Clone)]
pub struct Output {
    pub text: Vec<u8>,
    pub writes: usize,
    /// Span contexts of the innermost and outermost span (with the OpenTelemetry layer).
    pub leaf: Option<SpanContext>,
    pub root: Option<SpanContext>,
}

fn value_set_record(span: &tracing::Span, meta: &'static Metadata<'static>, i: usize, v: &V) {
    let field = meta.fields().iter().nth(i).expect("index checked");
    let holder = Holder::new(v);
    let values = [(&field, Some(holder.value()))];
    span.record_all(&meta.fields().value_set(&values));
}

pub fn run(plan: &Plan<'_>) -> Output {
    run_with(plan, false)
}

/// Logs `plan` through a layer with the length limits off, or with small ones (`limited`).
fn run_with(plan: &Plan<'_>, limited: bool) -> Output {
    let input = plan.input;
    OUT.with(|o| {
        let mut o = o.borrow_mut();
        o.0.clear();
        o.1 = 0;
    });
    let dispatch = dispatch(input.preset, input.nested, input.otel, limited);
    let (leaf, root) = tracing::dispatcher::with_default(&dispatch, || {
        let mut entered: Vec<tracing::span::EnteredSpan> = Vec::new();
        for s in &plan.spans {
            let span = match s {
                SpanPlan::User { fields, records } => {
                    let span = with_values(&fields.values, |values| {
                        tracing::Span::new(fields.meta, &fields.meta.fields().value_set_all(values))
                    });
                    for (i, v) in records {
                        value_set_record(&span, fields.meta, *i, v);
                    }
                    span
                }
                SpanPlan::Scope(id) => {
                    traceline::correlation::scope(CorrelationId::parse(id).expect("valid id"))
                }
            };
            entered.push(span.entered());
        }
        match (&plan.event, &input.record_error) {
            (_, Some(chain)) => traceline::record_error(&chain.error()),
            (Some(event), None) => with_values(&event.values, |values| {
                tracing::Event::dispatch(event.meta, &event.meta.fields().value_set_all(values))
            }),
            (None, None) => unreachable!("an event or record_error"),
        }
        let contexts = if input.otel && !entered.is_empty() {
            let cx = |s: &tracing::Span| s.context().span().span_context().clone();
            (
                entered.last().map(|s| cx(s)),
                entered.first().map(|s| cx(s)),
            )
        } else {
            (None, None)
        };
        while let Some(s) = entered.pop() {
            drop(s);
        }
        contexts
    });
    OUT.with(|o| {
        let mut o = o.borrow_mut();
        Output {
            text: std::mem::take(&mut o.0),
            writes: o.1,
            leaf,
            root,
        }
    })
}

// ===== Checking =====

/// What a value in the line must be.
#[derive(Debug, Clone)]
pub enum Exp<'a> {
    Text(String),
    Num(String),
    Bool(bool),
    /// How traceline writes this field value.
    Value(&'a V),
    /// An error object, with the type `record_error` adds.
    ErrorObject(&'a Chain, Option<&'static str>),
    Obj(Vec<(String, Exp<'a>)>),
    Arr(Vec<Exp<'a>>),
}

fn redacted() -> Exp<'static> {
    Exp::Text(traceline::redact::REDACTED.to_owned())
}

/// The causes traceline writes: at most 64.
fn causes(c: &Chain) -> &[String] {
    let rest = c.0.get(1..).unwrap_or(&[]);
    &rest[..rest.len().min(64)]
}

fn chain_text(c: &Chain) -> String {
    let mut s = c.0.first().cloned().unwrap_or_default();
    for cause in causes(c) {
        s.push_str("\ncaused by: ");
        s.push_str(cause);
    }
    s
}

fn debug_text(d: &DebugText) -> String {
    if d.fail {
        "<Debug failed>".to_owned()
    } else {
        d.text.clone()
    }
}

/// Whether `json` is `exp`; `Err` says where it differs.
fn matches(exp: &Exp<'_>, json: &Json) -> Result<(), String> {
    let ok = match (exp, json) {
        (Exp::Text(s), Json::Str(j)) => s == j,
        (Exp::Num(s), Json::Num(j)) => s == j,
        (Exp::Bool(b), Json::Bool(j)) => b == j,
        (Exp::Value(v), _) => return value_matches(v, json),
        (Exp::ErrorObject(c, ty), _) => {
            let mut fields = vec![
                ("message".to_owned(), Exp::Text(c.0[0].clone())),
                (
                    "chain".to_owned(),
                    Exp::Arr(causes(c).iter().map(|s| Exp::Text(s.clone())).collect()),
                ),
            ];
            if let Some(ty) = ty {
                fields.push(("type".to_owned(), Exp::Text((*ty).to_owned())));
            }
            return match_object(&fields, json).map_err(|e| format!("error object: {e}"));
        }
        (Exp::Obj(fields), _) => return match_object(fields, json),
        (Exp::Arr(items), Json::Arr(got)) => {
            if items.len() != got.len() {
                return Err(format!(
                    "array of {} items, expected {}",
                    got.len(),
                    items.len()
                ));
            }
            for (i, (e, g)) in items.iter().zip(got).enumerate() {
                matches(e, g).map_err(|m| format!("[{i}]: {m}"))?;
            }
            true
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("expected {exp:?}, found {json:?}"))
    }
}

fn value_matches(v: &V, json: &Json) -> Result<(), String> {
    let ok = match (v, json) {
        (V::Str(s), Json::Str(j)) | (V::Display(s), Json::Str(j)) => s == j,
        (V::Debug(d), Json::Str(j)) => debug_text(d) == *j,
        (V::U64(n), Json::Num(j)) => n.to_string() == *j,
        (V::I64(n), Json::Num(j)) => n.to_string() == *j,
        (V::U128(n), Json::Num(j)) => n.to_string() == *j,
        (V::I128(n), Json::Num(j)) => n.to_string() == *j,
        (V::Bool(b), Json::Bool(j)) => b == j,
        (V::F64(f), Json::Str(j)) if f.is_nan() => j == "NaN",
        (V::F64(f), Json::Str(j)) if f.is_infinite() => {
            j == if *f > 0.0 { "Infinity" } else { "-Infinity" }
        }
        // Finite: a JSON number that reads back as the same bits.
        (V::F64(f), Json::Num(j)) if f.is_finite() => {
            j.parse::<f64>().is_ok_and(|p| p.to_bits() == f.to_bits())
        }
        (V::Error(c), _) => return matches(&Exp::ErrorObject(c, None), json),
        (V::Bytes(_), Json::Str(j)) => debug_of(v) == *j,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("expected {v:?}, found {json:?}"))
    }
}

/// `v` as `tracing` hands it to a visitor that only takes `&str` and `Debug` (`&[u8]` as its
/// hex `Debug`, an error through `Display`).
fn debug_of(v: &V) -> String {
    static META: OnceLock<&'static Metadata<'static>> = OnceLock::new();
    let meta = META.get_or_init(|| {
        new_callsite(&CallsiteKey {
            span: false,
            level: 0,
            name: "value".to_owned(),
            target: DEFAULT_TARGET.to_owned(),
            fields: vec!["v".to_owned()],
        })
    });
    let field = meta.fields().iter().next().expect("one field");
    message_text(v, &field)
}

fn match_object(expected: &[(String, Exp<'_>)], json: &Json) -> Result<(), String> {
    let Json::Obj(members) = json else {
        return Err(format!("expected an object, found {json:?}"));
    };
    for (k, e) in expected {
        match json.get(k) {
            Some(j) => matches(e, j).map_err(|m| format!("key {k:?}: {m}"))?,
            None => return Err(format!("missing key {k:?}")),
        }
    }
    if members.len() != expected.len() {
        let extra: Vec<&str> = members
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !expected.iter().any(|(e, _)| e == k))
            .collect();
        return Err(format!("unexpected keys {extra:?}"));
    }
    Ok(())
}

/// The text the message visitor writes for a field named `message`: `&str` as is, anything
/// else through `Debug` (tracing's default for the other `record_*`).
fn message_text(v: &V, field: &Field) -> String {
    struct Text(Option<String>);
    impl Visit for Text {
        fn record_str(&mut self, _: &Field, value: &str) {
            self.0 = Some(value.to_owned());
        }
        fn record_debug(&mut self, _: &Field, value: &dyn fmt::Debug) {
            self.0 = Some(format!("{value:?}"));
        }
    }
    if let V::Debug(d) = v {
        return debug_text(d);
    }
    let holder = Holder::new(v);
    let mut t = Text(None);
    holder.value().record(field, &mut t);
    t.0.expect("recorded")
}

/// `prefix` × `depth` + `name`.
fn spelled(prefix: &str, depth: usize, name: &str) -> String {
    prefix.repeat(depth) + name
}

/// Keys user fields must not take.
#[derive(Clone, Default)]
struct Reserved {
    keys: Vec<String>,
    /// The collision prefix's stem (`fields`) where fields go at the top level: taken itself
    /// (renamed keys are its children), its children are not.
    stem: Option<String>,
}

/// Whether two keys, each with the field name it spells (`prefix`×k + name), cannot both be
/// on a flat line: the same key, or one the dotted parent of the other where the parent
/// reaches into the other's name (a parent lying within the other's prefixes would stay one
/// whatever prefixes are added).
fn clash(a: (&str, &str), b: (&str, &str)) -> bool {
    if a.0 == b.0 {
        return true;
    }
    let (short, long) = if a.0.len() < b.0.len() {
        (a, b)
    } else {
        (b, a)
    };
    let long_prefixes = long.0.len() - long.1.len();
    long.0.len() > short.0.len()
        && short.0.len() > long_prefixes
        && long.0.starts_with(short.0)
        && long.0.as_bytes()[short.0.len()] == b'.'
}

/// The first key `prefix`×k + `name` that is neither reserved nor clashes with a taken one
/// (key, name).
fn free_key(prefix: &str, name: &str, reserved: &Reserved, taken: &[(String, String)]) -> String {
    free_key_from(0, prefix, name, reserved, taken)
}

/// [`free_key`], trying `depth` prefixes first.
fn free_key_from(
    mut depth: usize,
    prefix: &str,
    name: &str,
    reserved: &Reserved,
    taken: &[(String, String)],
) -> String {
    loop {
        let key = spelled(prefix, depth, name);
        // A name with no prefix yet is taken by a reserved key it is the dotted parent or
        // child of (`error` beside `error.message`), and by the stem itself.
        let kin = depth == 0
            && (reserved.stem.as_deref() == Some(name)
                || reserved.keys.iter().any(|r| {
                    let (short, long) = if r.len() < key.len() {
                        (r.as_str(), key.as_str())
                    } else {
                        (key.as_str(), r.as_str())
                    };
                    long.len() > short.len()
                        && long.starts_with(short)
                        && long.as_bytes()[short.len()] == b'.'
                }));
        if !kin
            && !reserved.keys.contains(&key)
            && !taken.iter().any(|(k, n)| clash((k, n), (&key, name)))
        {
            return key;
        }
        depth += 1;
    }
}

/// A span's recorded state, as traceline keeps it.
struct SpanModel<'a> {
    name: String,
    /// `(field index, field name, key, value)`, in the order written.
    entries: Vec<(usize, String, String, Exp<'a>)>,
    correlation: Option<Exp<'a>>,
}

impl<'a> SpanModel<'a> {
    fn record(
        &mut self,
        index: usize,
        name: &str,
        v: &'a V,
        prefix: &str,
        reserved: &Reserved,
        redaction: &Redaction,
    ) {
        if name == CORRELATION_FIELD {
            self.correlation = Some(Exp::Value(v));
            return;
        }
        // `otel.*` span fields are instructions to tracing-opentelemetry: not on lines.
        if name.starts_with("otel.") {
            return;
        }
        // Recorded again: the new value replaces the field's old one, at the end. Another
        // field of the same name keeps its own.
        self.entries.retain(|(i, _, _, _)| *i != index);
        let taken: Vec<(String, String)> = self
            .entries
            .iter()
            .map(|(_, n, k, _)| (k.clone(), n.clone()))
            .collect();
        let key = free_key(prefix, name, reserved, &taken);
        let exp = if redaction.is_denied(name) {
            redacted()
        } else {
            Exp::Value(v)
        };
        self.entries.push((index, name.to_owned(), key, exp));
    }

    fn object(&self) -> Exp<'a> {
        let mut fields = vec![("name".to_owned(), Exp::Text(self.name.clone()))];
        fields.extend(
            self.entries
                .iter()
                .map(|(_, _, k, e)| (k.clone(), e.clone())),
        );
        Exp::Obj(fields)
    }
}

/// Panics with the line and `what` when `cond` is false.
macro_rules! ensure {
    ($cond:expr, $text:expr, $($what:tt)+) => {
        if !$cond {
            panic!(
                "traceline wrote a bad line: {}\nline: {:?}",
                format!($($what)+),
                String::from_utf8_lossy($text)
            );
        }
    };
}

/// Checks `out` against everything `plan` says the line must hold.
pub fn check(plan: &Plan<'_>, out: &Output) {
    let input = plan.input;
    let text = &out.text[..];
    ensure!(
        out.writes == 1,
        text,
        "{} write calls, expected 1",
        out.writes
    );
    let raw = std::str::from_utf8(text);
    ensure!(raw.is_ok(), text, "not UTF-8: {:?}", raw.err());
    let raw = raw.expect("checked");
    ensure!(raw.ends_with('\n'), text, "no trailing newline");
    ensure!(raw.matches('\n').count() == 1, text, "more than one line");
    ensure!(!raw.contains('\r'), text, "raw carriage return");
    // Valid JSON (strict parser and serde_json), an object, no raw control character or
    // U+2028/U+2029, no duplicate key at any depth.
    let line = common::check_line(raw);

    let preset = input.preset;
    let schema = preset.schema();
    let flat = !input.nested;
    let key = |k: Key| schema.key(k).map(str::to_owned);
    let prefix = format!("{}.", schema.key(Key::Fields).expect("on"));
    let redaction = Redaction::default();

    // Keys user fields must not take (`Schema::compile`).
    let mut reserved: Vec<String> = Vec::new();
    for k in Key::ALL {
        let structural = matches!(k, Key::Fields | Key::Span | Key::Spans);
        let error = matches!(k, Key::ErrorMessage | Key::ErrorType | Key::ErrorStackTrace);
        let service = matches!(
            k,
            Key::ServiceName | Key::ServiceVersion | Key::ServiceEnvironment
        );
        if (structural && flat) || (error && !preset.flat_errors()) || service {
            continue;
        }
        if let Some(name) = key(k) {
            reserved.push(name);
        }
    }
    // The key a line cut at the line length limit gets.
    reserved.push(traceline::TRUNCATED_KEY.to_owned());
    reserved.extend(preset.static_fields().iter().map(|(k, _)| (*k).to_owned()));
    reserved.extend(preset.store_reserved().iter().map(|k| (*k).to_owned()));
    let (event_reserved, span_reserved) = if flat {
        let reserved = Reserved {
            keys: reserved,
            stem: schema.key(Key::Fields).map(str::to_owned),
        };
        (reserved.clone(), reserved)
    } else {
        (
            // Inside the `fields` object, a field named like the stem is renamed too.
            Reserved {
                keys: Vec::new(),
                stem: schema.key(Key::Fields).map(str::to_owned),
            },
            Reserved {
                keys: vec!["name".to_owned()],
                stem: None,
            },
        )
    };

    let mut top: Vec<(String, Exp<'_>)> = Vec::new();
    let level_names = preset.level_names();

    // The event as recorded: names from the callsite actually used.
    let error_fields: Fields;
    let record_error_type = std::any::type_name::<Failure>();
    let (meta, values, error_type): (&Metadata<'_>, Vec<Option<&V>>, Option<&'static str>) =
        match (&plan.event, &input.record_error) {
            (_, Some(chain)) => {
                let meta = out_meta_of_record_error();
                error_fields = meta
                    .fields()
                    .iter()
                    .map(|f| {
                        let v = match f.name() {
                            "message" => V::Display(chain.0[0].clone()),
                            "error" => V::Error(chain.clone()),
                            "otel.status_code" => V::Str("ERROR".to_owned()),
                            other => panic!("record_error has an unknown field {other:?}"),
                        };
                        (f.name().to_owned(), Some(v))
                    })
                    .collect();
                (
                    meta,
                    error_fields.iter().map(|(_, v)| v.as_ref()).collect(),
                    Some(record_error_type),
                )
            }
            (Some(e), None) => (e.meta, e.values.iter().map(Option::as_ref).collect(), None),
            (None, None) => unreachable!(),
        };
    let level_index = LEVELS
        .iter()
        .position(|l| l == meta.level())
        .expect("a level");

    if let Some(k) = key(Key::Timestamp) {
        top.push((k, Exp::Text(preset.timestamp().to_owned())));
    }
    if let Some(k) = key(Key::Level) {
        top.push((k, Exp::Text(level_names[level_index].to_owned())));
    }
    if let Some(k) = key(Key::SeverityNumber) {
        top.push((k, Exp::Num([1, 5, 9, 13, 17][level_index].to_string())));
    }
    if let Some(k) = key(Key::Target) {
        top.push((k, Exp::Text(meta.target().to_owned())));
    }
    for (k, v) in preset.static_fields() {
        top.push(((*k).to_owned(), Exp::Text((*v).to_owned())));
    }

    // Keys of the first 64 fields, decided per callsite from the declared names.
    let names: Vec<Field> = meta.fields().iter().collect();
    let first_declared_message = names.iter().position(|f| f.name() == "message");
    let mut declared_keys: Vec<String> = Vec::new();
    let mut callsite_taken: Vec<(String, String)> = Vec::new();
    for (i, f) in names.iter().enumerate().take(64) {
        if Some(i) == first_declared_message {
            declared_keys.push(f.name().to_owned());
            continue;
        }
        let k = free_key(&prefix, f.name(), &event_reserved, &callsite_taken);
        callsite_taken.push((k.clone(), f.name().to_owned()));
        declared_keys.push(k);
    }
    // The values as recorded: the first recorded `message` is the message.
    let mut message: Option<String> = None;
    // The keys taken, each with the field name behind it.
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut event_fields: Vec<(String, Exp<'_>)> = Vec::new();
    let mut flat_error_used = false;
    for (i, (f, v)) in names.iter().zip(&values).enumerate() {
        let Some(v) = v else { continue };
        let name = f.name();
        if name == "message" && message.is_none() {
            message = Some(message_text(v, f));
            continue;
        }
        let denied = redaction.is_denied(name);
        if let V::Error(chain) = v {
            if preset.flat_errors() && flat && !flat_error_used && !denied {
                flat_error_used = true;
                // Its own key is not written, but it shadows span fields of its name (past
                // the 64 cached fields, by the bare name).
                seen.push((
                    if i < 64 {
                        declared_keys[i].clone()
                    } else {
                        name.to_owned()
                    },
                    name.to_owned(),
                ));
                top.push((
                    key(Key::ErrorMessage).expect("on"),
                    Exp::Text(chain.0[0].clone()),
                ));
                if let Some(ty) = error_type {
                    top.push((key(Key::ErrorType).expect("on"), Exp::Text(ty.to_owned())));
                }
                top.push((
                    key(Key::ErrorStackTrace).expect("on"),
                    Exp::Text(chain_text(chain)),
                ));
                continue;
            }
        }
        let k = if i < 64 {
            declared_keys[i].clone()
        } else {
            free_key(&prefix, name, &event_reserved, &seen)
        };
        seen.push((k.clone(), name.to_owned()));
        let exp = if denied {
            redacted()
        } else if let (V::Error(chain), Some(ty)) = (v, error_type) {
            Exp::ErrorObject(chain, Some(ty))
        } else {
            Exp::Value(v)
        };
        event_fields.push((k, exp));
    }
    if let Some(m) = &message {
        top.push((key(Key::Message).expect("on"), Exp::Text(m.clone())));
    }

    // The spans, outermost first, as traceline records them.
    let mut models: Vec<SpanModel<'_>> = Vec::new();
    for s in &plan.spans {
        let parent_corr = models.last().and_then(|m| m.correlation.clone());
        let m = match s {
            SpanPlan::User { fields, records } => {
                let mut m = SpanModel {
                    name: fields.meta.name().to_owned(),
                    entries: Vec::new(),
                    correlation: None,
                };
                for (i, (f, v)) in fields.meta.fields().iter().zip(&fields.values).enumerate() {
                    if let Some(v) = v {
                        m.record(i, f.name(), v, &prefix, &span_reserved, &redaction);
                    }
                }
                if m.correlation.is_none() {
                    m.correlation = parent_corr;
                }
                for (i, v) in records {
                    let f = fields.meta.fields().iter().nth(*i).expect("valid index");
                    m.record(*i, f.name(), v, &prefix, &span_reserved, &redaction);
                }
                m
            }
            SpanPlan::Scope(id) => SpanModel {
                name: "correlation".to_owned(),
                entries: Vec::new(),
                correlation: Some(Exp::Text(id.clone())),
            },
        };
        models.push(m);
    }

    if let (Some(leaf), Some(root)) = (&out.leaf, &out.root) {
        ensure!(
            leaf.is_valid() && root.is_valid(),
            text,
            "span contexts not valid"
        );
        if let Some(k) = key(Key::TraceId) {
            top.push((k, Exp::Text(preset.trace_id(leaf))));
        }
        if let Some(k) = key(Key::SpanId) {
            top.push((k, Exp::Text(preset.span_id(leaf))));
        }
        if let Some(k) = key(Key::TraceFlags) {
            top.push((k, preset.flags(leaf.is_sampled())));
        }
        if let Some(k) = key(Key::TransactionId) {
            top.push((k, Exp::Text(root.span_id().to_string())));
        }
    }
    if let Some(leaf) = models.last() {
        if let (Some(k), Some(c)) = (key(Key::CorrelationId), &leaf.correlation) {
            top.push((k, c.clone()));
        }
    }

    if flat {
        top.extend(event_fields);
        // Span fields, innermost span first. A field of the same name as one of the event or
        // of an inner span is shadowed, whatever keys they took; one whose key clashes with a
        // key taken (by a field of another name renamed into it, or the dotted parent or child
        // of one) takes the collision prefix again, as often as it takes to be free.
        for m in models.iter().rev() {
            // Only the event's and the inner spans' fields shadow this span's.
            let closer = seen.len();
            for (_, name, k, e) in &m.entries {
                if seen[..closer].iter().any(|(_, n)| n == name) {
                    continue;
                }
                if !seen.iter().any(|(sk, n)| clash((sk, n), (k, name))) {
                    seen.push((k.clone(), name.clone()));
                    top.push((k.clone(), e.clone()));
                    continue;
                }
                let depth = (k.len() - name.len()) / prefix.len();
                let moved = free_key_from(depth + 1, &prefix, name, &span_reserved, &seen);
                seen.push((moved.clone(), name.clone()));
                top.push((moved, e.clone()));
            }
        }
    } else {
        if !event_fields.is_empty() {
            top.push((key(Key::Fields).expect("on"), Exp::Obj(event_fields)));
        }
        if let Some(leaf) = models.last() {
            top.push((key(Key::Span).expect("on"), leaf.object()));
            top.push((
                key(Key::Spans).expect("on"),
                Exp::Arr(models.iter().map(SpanModel::object).collect()),
            ));
        }
    }

    if let Err(e) = match_object(&top, &line) {
        panic!(
            "traceline wrote a line that does not hold the event: {e}\nline: {raw:?}\nexpected: {top:#?}"
        );
    }
    if preset == Preset::Ecs {
        let keys = line.keys();
        ensure!(
            keys.len() >= 2 && keys[..2] == ["@timestamp", "log.level"],
            text,
            "ECS lines start with @timestamp and log.level"
        );
    }
}

/// The metadata of the event `traceline::record_error` logs (one callsite, found through a
/// layer that keeps the last event's metadata).
fn out_meta_of_record_error() -> &'static Metadata<'static> {
    static META: OnceLock<&'static Metadata<'static>> = OnceLock::new();
    META.get_or_init(|| {
        struct Keep;
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Keep {
            fn on_event(
                &self,
                event: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                KEPT.with(|k| k.set(Some(event.metadata())));
            }
        }
        thread_local! {
            static KEPT: std::cell::Cell<Option<&'static Metadata<'static>>> =
                const { std::cell::Cell::new(None) };
        }
        let subscriber = tracing_subscriber::registry().with(Keep);
        tracing::subscriber::with_default(subscriber, || {
            traceline::record_error(&Chain(vec!["x".to_owned()]).error());
        });
        KEPT.with(|k| k.get()).expect("record_error logs an event")
    })
}

/// Decodes, logs and checks one input: what the fuzz target and the corpus test run.
pub fn run_and_check(data: &[u8]) {
    check_input(&decode(data));
}

/// Logs and checks a decoded input.
pub fn check_input(input: &Input) {
    let plan = plan(input);
    let out = run(&plan);
    check(&plan, &out);
    check_limited(&run_with(&plan, true));
}

/// The field length limit of the limited run.
const LIMITED_FIELD: usize = 48;
/// The line length limit of the limited run.
const LIMITED_LINE: usize = 1024;

/// The same input through a layer with small length limits: still one valid line without
/// duplicate keys, no longer than the limit unless it was cut to its core keys (and then it
/// says how long it would have been).
fn check_limited(out: &Output) {
    let text = &out.text[..];
    ensure!(
        out.writes == 1,
        text,
        "{} write calls, expected 1",
        out.writes
    );
    let raw = std::str::from_utf8(text).expect("UTF-8");
    ensure!(
        raw.ends_with('\n') && raw.matches('\n').count() == 1,
        text,
        "not one line"
    );
    let line = common::check_line(raw);
    match line.get(traceline::TRUNCATED_KEY) {
        None => ensure!(
            raw.len() <= LIMITED_LINE,
            text,
            "{} bytes, past the line limit, not cut",
            raw.len()
        ),
        Some(_) => {
            let whole: usize = line
                .num(traceline::TRUNCATED_KEY)
                .parse()
                .expect("a length");
            ensure!(
                whole > LIMITED_LINE,
                text,
                "cut at {whole} bytes, under the limit"
            );
        }
    }
}

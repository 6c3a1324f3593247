//! Helpers shared by the integration tests: a capturing writer, subscriber builders and a strict
//! JSON parser that rejects duplicate keys and keeps key order and raw number text.
#![allow(dead_code)]

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

/// A [`MakeWriter`] that appends every `write` call to a shared buffer and counts the calls.
#[derive(Clone, Default)]
pub struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
    writes: Arc<AtomicUsize>,
}

pub struct CaptureWriter {
    buf: Arc<Mutex<Vec<u8>>>,
    writes: Arc<AtomicUsize>,
}

impl io::Write for CaptureWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.lock().unwrap().extend_from_slice(data);
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = CaptureWriter;
    fn make_writer(&'a self) -> CaptureWriter {
        CaptureWriter {
            buf: self.buf.clone(),
            writes: self.writes.clone(),
        }
    }
}

impl Capture {
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.buf.lock().unwrap().clone()
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.bytes()).expect("output is UTF-8")
    }

    /// How many `write` calls the layer made.
    pub fn write_calls(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    /// The output split into lines, each checked with [`check_line`].
    pub fn lines(&self) -> Vec<Json> {
        split_lines(&self.text())
            .into_iter()
            .map(|l| check_line(&l))
            .collect()
    }

    /// The single line written so far.
    pub fn only_line(&self) -> Json {
        let mut lines = self.lines();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one line:\n{}",
            self.text()
        );
        lines.remove(0)
    }
}

/// The messages of the lines of `text`, in order, each line checked ([`check_line`]: one JSON
/// object, no duplicate key).
pub fn messages(text: &str) -> Vec<String> {
    split_lines(text)
        .iter()
        .map(|l| check_line(l).str("message").to_string())
        .collect()
}

/// Splits output into lines, each keeping its `\n`. Panics if the output does not end with one.
pub fn split_lines(text: &str) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    assert!(
        text.ends_with('\n'),
        "output does not end with a newline: {text:?}"
    );
    text.split_inclusive('\n').map(str::to_owned).collect()
}

/// Checks one raw line (with its trailing `\n`): exactly one line, no raw control characters
/// (C0, DEL, C1) or U+2028/U+2029, a JSON object without duplicate keys that `serde_json`
/// accepts too.
pub fn check_line(raw: &str) -> Json {
    assert!(raw.ends_with('\n'), "line does not end with \\n: {raw:?}");
    let body = &raw[..raw.len() - 1];
    assert!(!body.contains('\n'), "line holds a raw newline: {raw:?}");
    if let Some(c) = body
        .chars()
        .find(|&c| (c as u32) < 0x20 || (0x7F..0xA0).contains(&(c as u32)))
    {
        panic!("raw control character {:#x} in line: {raw:?}", c as u32);
    }
    assert!(
        !body.contains('\u{2028}') && !body.contains('\u{2029}'),
        "raw U+2028/U+2029 in line: {raw:?}"
    );
    let json = parse_strict(body).unwrap_or_else(|e| panic!("{e}: {raw:?}"));
    assert!(
        matches!(json, Json::Obj(_)),
        "line is not a JSON object: {raw:?}"
    );
    serde_json::from_str::<serde_json::Value>(body)
        .unwrap_or_else(|e| panic!("serde_json rejects the line ({e}): {raw:?}"));
    json
}

/// A parsed JSON value that keeps object key order and the raw text of numbers.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value under `key`, panicking with the whole value when it is missing.
    pub fn at(&self, key: &str) -> &Json {
        self.get(key)
            .unwrap_or_else(|| panic!("no key {key:?} in {self:?}"))
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn keys(&self) -> Vec<&str> {
        match self {
            Json::Obj(members) => members.iter().map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    pub fn str(&self, key: &str) -> &str {
        match self.at(key) {
            Json::Str(s) => s,
            other => panic!("{key:?} is not a string: {other:?}"),
        }
    }

    pub fn num(&self, key: &str) -> &str {
        match self.at(key) {
            Json::Num(s) => s,
            other => panic!("{key:?} is not a number: {other:?}"),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_arr(&self) -> &[Json] {
        match self {
            Json::Arr(items) => items,
            other => panic!("not an array: {other:?}"),
        }
    }
}

/// Parses `text` as exactly one JSON value (RFC 8259), rejecting any object that holds the same
/// key twice.
pub fn parse_strict(text: &str) -> Result<Json, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
        depth: 0,
    };
    p.ws();
    let v = p.value()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("trailing characters at byte {}", p.i));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("invalid JSON at byte {}: {what}", self.i))
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn lit(&mut self, word: &str, v: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            self.err("bad literal")
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map(Json::Str),
            Some(b't') => self.lit("true", Json::Bool(true)),
            Some(b'f') => self.lit("false", Json::Bool(false)),
            Some(b'n') => self.lit("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.err("expected a value"),
        }
    }

    fn object(&mut self) -> Result<Json, String> {
        self.depth += 1;
        if self.depth > 256 {
            return self.err("nested too deeply");
        }
        self.i += 1;
        let mut members: Vec<(String, Json)> = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            self.depth -= 1;
            return Ok(Json::Obj(members));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return self.err("expected a key");
            }
            let key = self.string()?;
            if members.iter().any(|(k, _)| *k == key) {
                return self.err(&format!("duplicate key {key:?}"));
            }
            self.ws();
            if self.peek() != Some(b':') {
                return self.err("expected ':'");
            }
            self.i += 1;
            self.ws();
            let v = self.value()?;
            members.push((key, v));
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(Json::Obj(members));
                }
                _ => return self.err("expected ',' or '}'"),
            }
        }
    }

    fn array(&mut self) -> Result<Json, String> {
        self.depth += 1;
        if self.depth > 256 {
            return self.err("nested too deeply");
        }
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            self.depth -= 1;
            return Ok(Json::Arr(items));
        }
        loop {
            self.ws();
            items.push(self.value()?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(Json::Arr(items));
                }
                _ => return self.err("expected ',' or ']'"),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let Some(digits) = self.s.get(self.i..self.i + 4) else {
            return self.err("short \\u escape");
        };
        let text = std::str::from_utf8(digits).map_err(|e| e.to_string())?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return self.err("bad \\u escape");
        }
        self.i += 4;
        Ok(u32::from_str_radix(text, 16).expect("hex digits"))
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let start = self.i;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.i += 1;
            }
            out.push_str(std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?);
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let Some(e) = self.peek() else {
                        return self.err("unterminated escape");
                    };
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&hi) {
                                if !self.s[self.i..].starts_with(b"\\u") {
                                    return self.err("lone high surrogate");
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return self.err("bad low surrogate");
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return self.err("lone low surrogate");
                            } else {
                                hi
                            };
                            out.push(char::from_u32(c).expect("valid scalar"));
                        }
                        _ => return self.err("bad escape"),
                    }
                }
                Some(_) => return self.err("raw control character in string"),
                None => return self.err("unterminated string"),
            }
        }
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
            }
            _ => return self.err("bad number"),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.err("bad fraction");
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.err("bad exponent");
            }
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).expect("ASCII");
        Ok(Json::Num(text.to_owned()))
    }
}

/// An SDK tracer provider with no exporter: real ids, sampled.
pub fn provider() -> SdkTracerProvider {
    SdkTracerProvider::builder().build()
}

/// An SDK tracer provider with no exporter and the given sampler.
pub fn provider_with(sampler: Sampler) -> SdkTracerProvider {
    SdkTracerProvider::builder().with_sampler(sampler).build()
}

/// A traceline layer writing into a new [`Capture`].
pub fn capture_layer() -> (Capture, traceline::Layer<Capture>) {
    let cap = Capture::new();
    let layer = traceline::layer().with_writer(cap.clone());
    (cap, layer)
}

/// registry + tracing-opentelemetry (tracer from `provider`) + `layer`.
pub fn otel_subscriber<L>(
    provider: &SdkTracerProvider,
    layer: L,
) -> impl tracing::Subscriber + Send + Sync + 'static + use<L>
where
    L: tracing_subscriber::Layer<
            tracing_subscriber::layer::Layered<
                tracing_opentelemetry::OpenTelemetryLayer<
                    tracing_subscriber::Registry,
                    opentelemetry_sdk::trace::SdkTracer,
                >,
                tracing_subscriber::Registry,
            >,
        > + Send
        + Sync
        + 'static,
{
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("traceline-tests")))
        .with(layer)
}

/// The span context the OpenTelemetry layer reports for `span`.
pub fn span_context(span: &tracing::Span) -> SpanContext {
    span.context().span().span_context().clone()
}

/// Asserts that `line` carries exactly the ids and sampled flag of `sc`.
pub fn assert_ids(line: &Json, sc: &SpanContext) {
    assert!(sc.is_valid(), "span context is not valid: {sc:?}");
    let trace_id = line.str("traceId");
    let span_id = line.str("spanId");
    assert_eq!(trace_id, sc.trace_id().to_string(), "traceId in {line:?}");
    assert_eq!(span_id, sc.span_id().to_string(), "spanId in {line:?}");
    assert!(
        trace_id.len() == 32
            && trace_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "traceId is not 32 lowercase hex digits: {trace_id:?}"
    );
    assert!(
        span_id.len() == 16
            && span_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "spanId is not 16 lowercase hex digits: {span_id:?}"
    );
    let flags = if sc.is_sampled() { "01" } else { "00" };
    assert_eq!(line.str("traceFlags"), flags, "traceFlags in {line:?}");
}

/// Asserts that `line` has none of the id keys.
pub fn assert_no_ids(line: &Json) {
    for key in ["traceId", "spanId", "traceFlags"] {
        assert!(!line.has(key), "unexpected {key:?} in {line:?}");
    }
}

/// 2026-11-25T10:32:03.123456789Z
pub fn fixed_clock() -> SystemTime {
    UNIX_EPOCH + Duration::new(1_795_602_723, 123_456_789)
}

/// What a [`Steps`] writer does on one call.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// Takes at most this many bytes.
    Take(usize),
    /// Takes everything.
    Whole,
    WouldBlock,
    Interrupted,
    /// Fails with an error, before taking a byte.
    Fail,
    /// Panics, before taking a byte.
    Panic,
}

/// A writer that does `steps[i]` on its write call `i`, then `after` on every later call; what
/// it takes goes to `out`.
#[derive(Clone)]
pub struct Steps {
    pub out: Capture,
    calls: Arc<AtomicUsize>,
    steps: &'static [Step],
    after: Step,
}

impl Steps {
    pub fn new(steps: &'static [Step], after: Step) -> Steps {
        Steps {
            out: Capture::default(),
            calls: Default::default(),
            steps,
            after,
        }
    }
}

impl io::Write for Steps {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let n = match self.steps.get(call).copied().unwrap_or(self.after) {
            Step::Take(n) => data.len().min(n),
            Step::Whole => data.len(),
            Step::WouldBlock => return Err(io::ErrorKind::WouldBlock.into()),
            Step::Interrupted => return Err(io::ErrorKind::Interrupted.into()),
            Step::Fail => return Err(io::Error::other("failing")),
            Step::Panic => panic!("the writer panics on purpose"),
        };
        io::Write::write_all(&mut self.out.make_writer(), &data[..n])?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// traceline's layer writing through `make`, with the lost-lines diagnostic off: as a writer
/// of its own, or behind the non-blocking queue (whose guard comes with it).
#[cfg(feature = "install")]
pub fn output_layer<M>(
    make: M,
    non_blocking: bool,
) -> (
    traceline::Layer<tracing_subscriber::fmt::writer::BoxMakeWriter>,
    Option<traceline::install::OutputGuard>,
)
where
    M: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    if non_blocking {
        let (layer, guard) = traceline::layer()
            .log_internal_errors(false)
            .with_output(traceline::install::Writer::custom(make).non_blocking())
            .unwrap();
        (layer, Some(guard))
    } else {
        let layer = traceline::layer()
            .with_writer(tracing_subscriber::fmt::writer::BoxMakeWriter::new(make))
            .log_internal_errors(false);
        (layer, None)
    }
}

/// Runs the test `name` of this test binary again in a child process, with `var` set (the test
/// then runs its scenario and prints what it found), and checks that the child exited well and
/// printed `expected`.
pub fn in_child(name: &str, var: &str, expected: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(var, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(expected),
        "status {:?}, stdout {stdout:?}, stderr tail {:?}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
    );
}

/// A line `Writer::file` has taken part of, then stalls on (see [`stall_a_file_line`]).
#[cfg(feature = "install")]
pub struct StalledFileLine {
    pub dir: std::path::PathBuf,
    /// The file the layer writes to.
    pub path: std::path::PathBuf,
    pub dispatch: tracing::Dispatch,
    pub guard: traceline::install::OutputGuard,
    pub stats: traceline::Stats,
    /// The thread logging the stalled line (it retries for up to 2 s).
    pub line: std::thread::JoinHandle<()>,
}

/// In a child process only (it sets the process's file size limit, and ignores `SIGXFSZ`): a
/// layer writing to `Writer::file(<temp dir named after dir_name>, "app.log", rotation)` writes
/// one line, then a file size limit (`RLIMIT_FSIZE`) lets the file take 10 bytes of the next
/// line, logged on a thread of its own, and refuses the rest (`EFBIG`) until
/// [`lift_file_size_limit`]. Returns once the file holds those 10 bytes.
///
/// (Behind the `install` feature as `Writer::file` is; the fuzz target, which shares this
/// module, has neither it nor `libc`.)
#[cfg(feature = "install")]
pub fn stall_a_file_line(
    dir_name: &str,
    rotation: traceline::install::Rotation,
) -> StalledFileLine {
    // SAFETY: ignoring a signal; this is a child process of a test.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let dir = std::env::temp_dir().join(format!("{dir_name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (layer, guard) = traceline::layer()
        .log_internal_errors(false)
        .with_output(traceline::install::Writer::file(&dir, "app.log", rotation))
        .unwrap();
    let stats = layer.stats();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("before"));
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let path = files[0].clone();
    let size = std::fs::metadata(&path).unwrap().len();
    set_file_size_limit(size + 10);
    let d = dispatch.clone();
    let line = std::thread::spawn(move || {
        tracing::dispatcher::with_default(&d, || tracing::info!(pad = "a".repeat(200), "A"))
    });
    while std::fs::metadata(&path).unwrap().len() < size + 10 {
        std::thread::yield_now();
    }
    StalledFileLine {
        dir,
        path,
        dispatch,
        guard,
        stats,
        line,
    }
}

/// Room again for a [`stall_a_file_line`] file.
#[cfg(feature = "install")]
pub fn lift_file_size_limit() {
    set_file_size_limit(libc::RLIM_INFINITY);
}

#[cfg(feature = "install")]
pub fn set_file_size_limit(limit: libc::rlim_t) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reading and setting this process's own limit, through valid pointers.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut r), 0);
        r.rlim_cur = limit;
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &r), 0);
    }
}

/// A callsite whose name and field names are chosen at run time (leaked: a few per test
/// case), for generated events and spans.
struct DynCallsite(std::sync::OnceLock<tracing::Metadata<'static>>);

impl tracing::callsite::Callsite for DynCallsite {
    fn set_interest(&self, _: tracing::subscriber::Interest) {}
    fn metadata(&self) -> &tracing::Metadata<'_> {
        self.0.get().expect("metadata set at creation")
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// The metadata of a new, registered callsite: `kind`, `name`, `fields`, `level`, in module
/// `module` (its target `<module>::dynamic`).
pub fn dyn_callsite(
    module: &str,
    kind: tracing::metadata::Kind,
    name: &str,
    fields: &[String],
    level: tracing::Level,
) -> &'static tracing::Metadata<'static> {
    let cs: &'static DynCallsite = Box::leak(Box::new(DynCallsite(std::sync::OnceLock::new())));
    let names: Vec<&'static str> = fields.iter().map(|f| leak(f)).collect();
    let names: &'static [&'static str] = Box::leak(names.into_boxed_slice());
    let meta = tracing::Metadata::new(
        leak(name),
        leak(&format!("{module}::dynamic")),
        level,
        Some(file!()),
        Some(line!()),
        Some(leak(module)),
        tracing::field::FieldSet::new(names, tracing::callsite::Identifier(cs)),
        kind,
    );
    assert!(cs.0.set(meta).is_ok());
    tracing::callsite::register(cs);
    cs.0.get().expect("just set")
}

/// An error with a message and an optional cause, for generated error fields.
#[derive(Debug, Clone)]
pub struct Failure(pub String, pub Option<Box<Failure>>);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.1
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Whether `tool` runs (`tool <arg>` exits 0).
pub fn tool_installed(tool: &str, arg: &str) -> bool {
    std::process::Command::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `tool` is missing: in CI (where `.ci/run` installs it) that fails the test; elsewhere the
/// test is skipped with a notice, so `cargo test` runs on a machine with only the Rust
/// toolchain.
pub fn missing_tool(tool: &str, install: &str) {
    let msg = format!("{tool} is not installed: {install} (.ci/run does this)");
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{msg}");
    }
    // Straight to stderr: the test harness captures `eprintln!` of a passing test, and this
    // notice is for whoever runs the tests.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("skipped: {msg}\n").as_bytes(),
    );
}

/// Where the program `name` is, if installed: on the `PATH`, or in an `sbin` directory (where
/// Debian puts daemons and `logrotate`, and which may not be on the `PATH`).
pub fn find_tool(name: &str) -> Option<std::path::PathBuf> {
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(std::path::PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// A future instrumented with a span, to be dropped in a thread-local destructor.
pub type AtExitTask = tracing::instrument::Instrumented<std::future::Ready<()>>;

/// Drops its task when the thread's locals are destroyed, and reports whether that went
/// without a panic.
struct DroppedAtExit(Option<AtExitTask>, Option<std::sync::mpsc::Sender<bool>>);

impl Drop for DroppedAtExit {
    fn drop(&mut self) {
        if let (Some(task), Some(report)) = (self.0.take(), self.1.take()) {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(task)));
            let _ = report.send(ok.is_ok());
        }
    }
}

thread_local! {
    static AT_EXIT: std::cell::RefCell<DroppedAtExit> =
        const { std::cell::RefCell::new(DroppedAtExit(None, None)) };
}

/// Registers this thread's at-exit slot now: thread-locals are destroyed in the reverse order
/// of their registration, so the slot is destroyed before those registered earlier and after
/// those registered later.
pub fn register_at_exit() {
    AT_EXIT.with(|_| ());
}

/// Keeps `task` in this thread's at-exit slot ([`register_at_exit`]): it is dropped when the
/// thread's locals are destroyed, and `report` then says whether that went without a panic.
pub fn drop_at_exit(task: AtExitTask, report: std::sync::mpsc::Sender<bool>) {
    AT_EXIT.with(|t| *t.borrow_mut() = DroppedAtExit(Some(task), Some(report)));
}

/// A [`MakeWriter`] that routes by target, as `make_writer_for(meta)` allows: `audit` lines to
/// a buffered file, every other line (and the writer for no particular line) nowhere. Only a
/// flush of the writer for the line's own target reaches the file.
pub struct AuditByTarget(Mutex<std::io::BufWriter<std::fs::File>>);

impl AuditByTarget {
    /// Routes `audit` lines to a new buffered file at `path`.
    pub fn create(path: &std::path::Path) -> AuditByTarget {
        let file = std::fs::File::create(path).unwrap();
        AuditByTarget(Mutex::new(std::io::BufWriter::new(file)))
    }
}

/// The writer [`AuditByTarget`] gives.
pub enum AuditOrNowhere<'a> {
    Audit(std::sync::MutexGuard<'a, std::io::BufWriter<std::fs::File>>),
    Nowhere,
}

impl io::Write for AuditOrNowhere<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            AuditOrNowhere::Audit(w) => w.write(buf),
            AuditOrNowhere::Nowhere => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            AuditOrNowhere::Audit(w) => w.flush(),
            AuditOrNowhere::Nowhere => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for AuditByTarget {
    type Writer = AuditOrNowhere<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        AuditOrNowhere::Nowhere
    }
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        if meta.target() == "audit" {
            AuditOrNowhere::Audit(self.0.lock().unwrap())
        } else {
            AuditOrNowhere::Nowhere
        }
    }
}

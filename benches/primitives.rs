//! traceline's JSON string escaping and RFC 3339 timestamps beside `serde_json`'s string
//! serializer and the `time` crate's RFC 3339 formatter, on the same inputs; and the cost of
//! the redaction deny list on an event that has no denied field.
//!
//! `cargo bench --bench primitives` runs the criterion groups, then a summary: traceline
//! against each reference on the same input, measured in alternation, fastest of many short
//! passes, as ratios (criterion measures one function after the other, which on a shared
//! machine can put a slow spell on one side only). `TRACELINE_BENCH_SUMMARY_ONLY=1` prints only
//! the summary.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group};
use time::format_description::well_known::Rfc3339;

fn inputs() -> Vec<(&'static str, String)> {
    vec![
        ("short_ascii", "order created".to_owned()),
        ("short_with_quotes", "user \"alice\" not found".to_owned()),
        ("short_with_newline", "line one\nline two".to_owned()),
        (
            "long_ascii",
            "GET /api/v1/orders/42/items?page=3&per_page=50 completed in 12ms for customer alice@example.com "
                .repeat(4),
        ),
        (
            "escape_heavy",
            "line 1\n\t\"quoted\" C:\\path\\to\\file\r\n\u{1b}[31mred\u{1b}[0m ".repeat(4),
        ),
        (
            "non_ascii",
            "Größe 42 — 日本語のログ メッセージ, ünïcödé ✓ Ελληνικά ".repeat(4),
        ),
    ]
}

/// 256 different strings made of the escape-heavy input's pieces in random order, each about as
/// long. One fixed input, escaped millions of times, lets the branch predictor learn where its
/// escapes are, which favours code that branches on every escape; cycling through these does
/// not (real log values differ from line to line).
fn varied_escape_heavy() -> Vec<String> {
    let pieces = [
        "line ", "1", "\n", "\t", "\"", "quoted", " C:", "\\", "path", "to", "file", "\r",
        "\u{1b}", "[31m", "red", "[0m", " ",
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..256)
        .map(|_| {
            let mut s = String::new();
            while s.len() < 190 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                s.push_str(pieces[(state % pieces.len() as u64) as usize]);
            }
            s
        })
        .collect()
}

/// The next of `set` after the one at `*i`, in turn.
fn in_turn<'s>(set: &'s [String], i: &mut usize) -> &'s str {
    *i = (*i + 1) % set.len();
    &set[*i]
}

/// The functions compared, each writing into a reused buffer.
fn traceline_str(buf: &mut Vec<u8>, s: &str) {
    buf.clear();
    traceline::json::write_str(buf, black_box(s));
    black_box(buf.len());
}

fn serde_json_str(buf: &mut Vec<u8>, s: &str) {
    buf.clear();
    serde_json::to_writer(&mut *buf, black_box(s)).unwrap();
    black_box(buf.len());
}

fn traceline_timestamp(buf: &mut Vec<u8>, t: SystemTime) {
    buf.clear();
    traceline::TimestampFormat::Rfc3339Nanos.write(buf, black_box(t));
    black_box(buf.len());
}

fn time_timestamp(buf: &mut Vec<u8>, t: SystemTime) {
    buf.clear();
    time::OffsetDateTime::from(black_box(t))
        .format_into(buf, &Rfc3339)
        .unwrap();
    black_box(buf.len());
}

/// A clock that moves: every call a different second (no cached date helps).
fn next_second(secs: &mut u64) -> SystemTime {
    *secs = 1_600_000_000 + (*secs + 86_401) % 1_000_000_000;
    UNIX_EPOCH + Duration::new(*secs, 7)
}

/// The instant the fixed-clock timestamp benches format.
const INSTANT: Duration = Duration::new(1_795_602_723, 123_456_789);

fn escaping(c: &mut Criterion) {
    for (name, s) in inputs() {
        let mut g = c.benchmark_group(format!("write_str/{name}"));
        let mut buf = Vec::with_capacity(4096);
        g.bench_function("traceline", |b| b.iter(|| traceline_str(&mut buf, &s)));
        g.bench_function("serde_json", |b| b.iter(|| serde_json_str(&mut buf, &s)));
        g.finish();
    }
    let set = varied_escape_heavy();
    let mut g = c.benchmark_group("write_str/escape_heavy_varied");
    let mut buf = Vec::with_capacity(4096);
    let mut i = 0;
    g.bench_function("traceline", |b| {
        b.iter(|| traceline_str(&mut buf, in_turn(&set, &mut i)))
    });
    g.bench_function("serde_json", |b| {
        b.iter(|| serde_json_str(&mut buf, in_turn(&set, &mut i)))
    });
    g.finish();
}

fn timestamps(c: &mut Criterion) {
    let t = UNIX_EPOCH + INSTANT;
    let mut g = c.benchmark_group("timestamp_rfc3339");
    let mut buf = Vec::with_capacity(64);
    g.bench_function("traceline", |b| b.iter(|| traceline_timestamp(&mut buf, t)));
    g.bench_function("time", |b| {
        b.iter(|| {
            let s = time::OffsetDateTime::from(black_box(t))
                .format(&Rfc3339)
                .unwrap();
            black_box(s.len())
        })
    });
    g.bench_function("time_into_vec", |b| b.iter(|| time_timestamp(&mut buf, t)));
    let mut secs = INSTANT.as_secs();
    g.bench_function("traceline_moving_clock", |b| {
        b.iter(|| traceline_timestamp(&mut buf, next_second(&mut secs)))
    });
    g.bench_function("time_moving_clock", |b| {
        b.iter(|| time_timestamp(&mut buf, next_second(&mut secs)))
    });
    g.finish();
}

/// A writer that drops lines: the layer's own cost, nothing else.
struct Discard;

impl std::io::Write for Discard {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(black_box(buf).len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The same event (no field with a denied name) through a layer with the default deny list
/// and through one with redaction off: the list must cost nothing measurable.
fn redaction(c: &mut Criterion) {
    use tracing_subscriber::prelude::*;
    let mut g = c.benchmark_group("redaction_event_without_denied_fields");
    for (name, redaction) in [
        ("default_deny_list", traceline::Redaction::default()),
        ("off", traceline::Redaction::none()),
    ] {
        let subscriber = tracing_subscriber::registry().with(
            traceline::layer()
                .with_redaction(redaction)
                .with_writer(|| Discard),
        );
        let dispatch = tracing::Dispatch::new(subscriber);
        tracing::dispatcher::with_default(&dispatch, || {
            g.bench_function(name, |b| {
                b.iter(|| {
                    tracing::info!(
                        order.id = black_box(42u64),
                        customer = "alice@example.com",
                        paid = true,
                        amount = 12.5f64,
                        user_id = 7u64,
                        "order created"
                    )
                })
            });
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = escaping, timestamps, redaction
}

/// Nanoseconds per call of `f`, over `n` calls.
fn per_call(n: u64, f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

/// Passes of each side in [`ratio`].
const PASSES: usize = 41;

/// traceline's function and the reference's, in alternation: [`PASSES`] passes of ~2 ms each,
/// the fastest of each side, and the median of the two sides' ratios within each pass (measured
/// ~2 ms apart, so that a slowdown of the host, or one lucky pass, moves neither figure much).
fn ratio(label: &str, ours: &mut dyn FnMut(), theirs: &mut dyn FnMut()) {
    let batch = |f: &mut dyn FnMut()| ((2e6 / per_call(1000, f).max(1.0)) as u64).max(1000);
    let (n_ours, n_theirs) = (batch(ours), batch(theirs));
    let (mut a, mut b) = (f64::INFINITY, f64::INFINITY);
    let mut within = Vec::with_capacity(PASSES);
    for _ in 0..PASSES {
        let (x, y) = (per_call(n_ours, ours), per_call(n_theirs, theirs));
        (a, b) = (a.min(x), b.min(y));
        within.push(x / y);
    }
    within.sort_by(f64::total_cmp);
    println!(
        "  {label:<56} {a:>8.1} ns against {b:>8.1} ns: {:.2}x (median within passes {:.2}x)",
        a / b,
        within[within.len() / 2]
    );
}

fn summary() {
    println!();
    println!("traceline / reference, same input, fastest of {PASSES} alternating passes:");
    let mut buf = Vec::with_capacity(4096);
    let mut other = Vec::with_capacity(4096);
    for (name, s) in inputs() {
        ratio(
            &format!("write_str {name} / serde_json"),
            &mut || traceline_str(&mut buf, &s),
            &mut || serde_json_str(&mut other, &s),
        );
    }
    let set = varied_escape_heavy();
    let (mut i, mut j) = (0, 0);
    ratio(
        "write_str escape_heavy, 256 inputs in turn / serde_json",
        &mut || traceline_str(&mut buf, in_turn(&set, &mut i)),
        &mut || serde_json_str(&mut other, in_turn(&set, &mut j)),
    );
    let t = UNIX_EPOCH + INSTANT;
    ratio(
        "RFC 3339 timestamp / time (format_into a Vec)",
        &mut || traceline_timestamp(&mut buf, t),
        &mut || time_timestamp(&mut other, t),
    );
    let (mut s1, mut s2) = (INSTANT.as_secs(), INSTANT.as_secs());
    ratio(
        "the same, a different second every call",
        &mut || traceline_timestamp(&mut buf, next_second(&mut s1)),
        &mut || time_timestamp(&mut other, next_second(&mut s2)),
    );
}

fn main() {
    if std::env::var_os("TRACELINE_BENCH_SUMMARY_ONLY").is_none() {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return;
    }
    summary();
}

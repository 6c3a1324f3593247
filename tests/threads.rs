//! Eight threads × 100 000 events into one OS pipe: every line is the bytes of one atomic
//! `write`, parses, carries its thread's ids, and none is lost, repeated, reordered or mixed.
#![cfg(unix)]
// `std::io::pipe` (Rust 1.87) is newer than the crate's `rust-version`; only this test needs it.
#![allow(clippy::incompatible_msrv)]

mod common;

use std::io::{BufRead, BufReader, PipeReader, PipeWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use common::{check_line, provider, span_context};
use opentelemetry::trace::SpanContext;
use opentelemetry::trace::TracerProvider as _;
use serde_json::Value;
use tracing::{Dispatch, info, info_span};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

const THREADS: usize = 8;
const PER_THREAD: u64 = 100_000;
/// A write of at most `PIPE_BUF` bytes to a pipe is atomic (POSIX); `PIPE_BUF` is 4096 on Linux.
/// The lines here are about 300 bytes, under POSIX's lowest allowed value (512) too.
const PIPE_BUF: usize = 4096;
/// Every this many lines (and the first and last of each thread) also go through the strict
/// parser, which rejects duplicate keys; all lines go through `serde_json` and the field checks.
const STRICT_EVERY: u64 = 101;

/// Quotes, backslashes, control characters, JSON punctuation, a line break in several spellings,
/// multi-byte UTF-8 and the two characters JavaScript treats as line ends.
const AWKWARD: &str =
    "q\"uo\\te\n\r\t\u{0}\u{1b}[31m\u{7f} }{\"x\":[1,2]}\n{ é 𝄞 \u{2028}\u{2029} \u{feff}";

fn message(seq: u64) -> String {
    format!("{AWKWARD}#{seq}")
}

/// Hands the layer the pipe itself: each `write_all` of a line is one `write(2)` of the whole
/// line (lines are shorter than `PIPE_BUF`), counted, and checked to hold exactly one line.
struct PipeOut {
    pipe: PipeWriter,
    writes: Arc<AtomicU64>,
    bad_writes: Arc<AtomicU64>,
}

struct PipeLine<'a>(&'a PipeOut);

impl Write for PipeLine<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let out = self.0;
        out.writes.fetch_add(1, Ordering::Relaxed);
        let one_line = buf.len() < PIPE_BUF
            && buf.last() == Some(&b'\n')
            && !buf[..buf.len() - 1].contains(&b'\n');
        if !one_line {
            out.bad_writes.fetch_add(1, Ordering::Relaxed);
        }
        (&out.pipe).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for PipeOut {
    type Writer = PipeLine<'a>;
    fn make_writer(&'a self) -> PipeLine<'a> {
        PipeLine(self)
    }
}

/// What the reader thread found.
#[derive(Debug)]
struct Report {
    lines: u64,
    longest: usize,
    strict_checked: u64,
    /// The first problem, if any; the reader keeps draining after it so writers never block.
    first_error: Option<String>,
    /// Per thread, the next `seq` expected (so, at the end, how many lines arrived).
    next: Vec<u64>,
}

/// Thread `t`'s span ids as the lines spell them.
struct Expected {
    trace_id: String,
    span_id: String,
}

/// Reads the pipe to its end, checking each line as it arrives (800 000 lines are never held in
/// memory at once).
fn drain(pipe: PipeReader, expected: &[Expected]) -> Report {
    let mut reader = BufReader::with_capacity(1 << 16, pipe);
    let mut report = Report {
        lines: 0,
        longest: 0,
        strict_checked: 0,
        first_error: None,
        next: vec![0; THREADS],
    };
    let mut raw = Vec::with_capacity(1024);
    loop {
        raw.clear();
        let n = reader.read_until(b'\n', &mut raw).expect("read the pipe");
        if n == 0 {
            break;
        }
        if report.first_error.is_some() {
            continue;
        }
        if let Err(e) = check(&raw, &mut report, expected) {
            report.first_error = Some(format!(
                "line {}: {e}\n{}",
                report.lines,
                String::from_utf8_lossy(&raw)
            ));
        }
    }
    report
}

fn check(raw: &[u8], report: &mut Report, expected: &[Expected]) -> Result<(), String> {
    report.lines += 1;
    report.longest = report.longest.max(raw.len());
    if raw.len() >= PIPE_BUF {
        return Err(format!("{} bytes, not less than PIPE_BUF", raw.len()));
    }
    if raw.last() != Some(&b'\n') {
        return Err("the output ends in the middle of a line".into());
    }
    let text = std::str::from_utf8(raw).map_err(|e| format!("not UTF-8: {e}"))?;
    let body = &text[..text.len() - 1];
    if let Some(b) = body.bytes().find(|&b| b < 0x20) {
        return Err(format!("raw control character {b:#x}"));
    }
    let line: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let num = |key: &str| {
        line.get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("no integer {key:?}"))
    };
    let string = |key: &str| {
        line.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no string {key:?}"))
    };
    let t = num("thread")? as usize;
    let seq = num("seq")?;
    if t >= THREADS || seq >= PER_THREAD {
        return Err(format!("thread {t} seq {seq} out of range"));
    }
    if seq != report.next[t] {
        return Err(format!(
            "thread {t}: seq {seq} where {} was expected (lost, repeated or reordered)",
            report.next[t]
        ));
    }
    report.next[t] += 1;
    if num("worker")? != t as u64 {
        return Err("span field `worker` is not the line's thread".into());
    }
    let logged = string("message")?
        .strip_prefix(AWKWARD)
        .and_then(|rest| rest.strip_prefix('#'))
        .and_then(|n| n.parse::<u64>().ok());
    if logged != Some(seq) {
        return Err("message differs from the one logged".into());
    }
    let want = &expected[t];
    if string("traceId")? != want.trace_id || string("spanId")? != want.span_id {
        return Err(format!("ids are not those of thread {t}'s span"));
    }
    if string("traceFlags")? != "01" {
        return Err("traceFlags is not 01".into());
    }
    if seq % STRICT_EVERY == 0 || seq == PER_THREAD - 1 {
        // Panics (caught by the caller's thread) with the reason.
        let strict = std::panic::catch_unwind(|| check_line(text))
            .map_err(|_| "the strict parser rejects the line".to_string())?;
        if strict.str("message") != message(seq) || strict.str("traceId") != want.trace_id {
            return Err("the strict parser reads other values than serde_json".into());
        }
        report.strict_checked += 1;
    }
    Ok(())
}

#[test]
fn eight_threads_share_one_pipe_without_losing_or_mixing_lines() {
    let (reader, writer) = std::io::pipe().expect("create a pipe");
    let writes = Arc::new(AtomicU64::new(0));
    let bad_writes = Arc::new(AtomicU64::new(0));
    let provider = provider();
    let layer = traceline::layer()
        .log_internal_errors(false)
        .with_writer(PipeOut {
            pipe: writer,
            writes: writes.clone(),
            bad_writes: bad_writes.clone(),
        });
    let stats = layer.stats();
    // The OpenTelemetry layer sees spans only, as `traceline::init()` sets it up: events are
    // not copied into the spans as span events.
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("threads"))
                    .with_filter(filter_fn(|meta| meta.is_span())),
            )
            .with(layer),
    );

    // Each thread makes its span and reports its ids, then all start logging together once the
    // reader is running.
    let start = Arc::new(Barrier::new(THREADS + 1));
    let (ids_tx, ids_rx) = std::sync::mpsc::channel::<(usize, SpanContext)>();
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let dispatch = dispatch.clone();
            let start = start.clone();
            let ids_tx = ids_tx.clone();
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    let span = info_span!("worker", worker = t);
                    let _entered = span.enter();
                    ids_tx.send((t, span_context(&span))).unwrap();
                    start.wait();
                    for seq in 0..PER_THREAD {
                        info!(thread = t, seq, "{AWKWARD}#{seq}");
                    }
                })
            })
        })
        .collect();
    drop(ids_tx);
    drop(dispatch);

    let mut contexts: Vec<Option<SpanContext>> = vec![None; THREADS];
    for _ in 0..THREADS {
        let (t, sc) = ids_rx.recv().expect("a logging thread panicked");
        contexts[t] = Some(sc);
    }
    let contexts: Vec<SpanContext> = contexts.into_iter().map(Option::unwrap).collect();
    let expected: Vec<Expected> = contexts
        .iter()
        .map(|sc| Expected {
            trace_id: sc.trace_id().to_string(),
            span_id: sc.span_id().to_string(),
        })
        .collect();
    let reader = std::thread::spawn(move || drain(reader, &expected));
    start.wait();
    for w in writers {
        w.join().expect("a logging thread panicked");
    }
    // The last dispatch (and with it the pipe's write end) goes with the writer threads'
    // clones; the reader then sees the end of the pipe.
    let report = reader.join().expect("the reader panicked");

    if let Some(e) = &report.first_error {
        panic!("{e}");
    }
    assert_eq!(
        (
            stats.lines_written(),
            stats.lines_dropped(),
            stats.write_errors()
        ),
        (THREADS as u64 * PER_THREAD, 0, 0),
        "lines counted as written, dropped, refused"
    );
    assert_eq!(report.lines, THREADS as u64 * PER_THREAD, "{report:?}");
    assert_eq!(report.next, vec![PER_THREAD; THREADS], "lines per thread");
    assert_eq!(
        writes.load(Ordering::Relaxed),
        report.lines,
        "one write call per line"
    );
    assert_eq!(
        bad_writes.load(Ordering::Relaxed),
        0,
        "writes that were not exactly one line shorter than PIPE_BUF"
    );
    assert!(report.longest < PIPE_BUF, "{report:?}");
    assert!(
        report.strict_checked >= THREADS as u64 * (PER_THREAD / STRICT_EVERY),
        "{report:?}"
    );
    let traces: std::collections::HashSet<_> = contexts.iter().map(|c| c.trace_id()).collect();
    assert_eq!(traces.len(), THREADS, "each thread's span is its own trace");
}

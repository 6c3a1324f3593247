//! Two threads × 50 000 events into one shared writer: every line intact, none lost.

mod common;

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::sync::{Arc, Barrier};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{Capture, Json, check_line, otel_subscriber, provider, span_context, split_lines};
use opentelemetry::trace::SpanContext;
use tracing::{Dispatch, info, info_span};

const THREADS: u64 = 2;
const PER_THREAD: u64 = 50_000;

/// Logs `PER_THREAD` events from each of `THREADS` threads, all starting together, each under
/// the dispatch `make_dispatch(thread)` returns. Returns each thread's span context.
fn run(make_dispatch: impl Fn(u64) -> Dispatch) -> Vec<SpanContext> {
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let dispatch = make_dispatch(t);
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    let span = info_span!("worker", worker = t);
                    let _entered = span.enter();
                    barrier.wait();
                    for seq in 0..PER_THREAD {
                        let pad = "x".repeat((seq % 97) as usize);
                        info!(thread = t, seq, pad = pad.as_str(), "event\n{seq}");
                    }
                    span_context(&span)
                })
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn check_all(text: &str, contexts: &[SpanContext]) {
    let lines = split_lines(text);
    assert_eq!(
        lines.len() as u64,
        THREADS * PER_THREAD,
        "lines lost or split"
    );
    let mut seen = vec![vec![false; PER_THREAD as usize]; THREADS as usize];
    let mut next = vec![0u64; THREADS as usize];
    for raw in &lines {
        let line: Json = check_line(raw);
        let t: u64 = line.num("thread").parse().unwrap();
        let seq: u64 = line.num("seq").parse().unwrap();
        assert!(t < THREADS && seq < PER_THREAD, "{raw}");
        assert!(!seen[t as usize][seq as usize], "duplicate line {raw}");
        seen[t as usize][seq as usize] = true;
        assert_eq!(seq, next[t as usize], "thread {t} lines out of order");
        next[t as usize] += 1;
        assert_eq!(line.str("message"), format!("event\n{seq}"));
        assert_eq!(line.str("pad").len() as u64, seq % 97);
        assert_eq!(line.num("worker"), t.to_string());
        let sc = &contexts[t as usize];
        assert_eq!(line.str("traceId"), sc.trace_id().to_string());
        assert_eq!(line.str("spanId"), sc.span_id().to_string());
    }
    for (t, s) in seen.iter().enumerate() {
        let missing = s.iter().filter(|x| !**x).count();
        assert_eq!(missing, 0, "thread {t} lost {missing} lines");
    }
    assert_ne!(contexts[0].trace_id(), contexts[1].trace_id());
}

#[test]
fn two_threads_one_subscriber_one_locked_buffer() {
    let cap = Capture::new();
    let provider = provider();
    let dispatch = Dispatch::new(otel_subscriber(
        &provider,
        traceline::layer().with_writer(cap.clone()),
    ));
    let contexts = run(|_| dispatch.clone());
    assert_eq!(cap.write_calls() as u64, THREADS * PER_THREAD);
    check_all(&cap.text(), &contexts);
}

#[test]
fn two_threads_two_subscribers_one_append_only_file() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let path = std::env::temp_dir().join(format!(
        "traceline-concurrency-{}-{nanos}.log",
        std::process::id()
    ));
    let file = Arc::new(
        OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .unwrap(),
    );
    let provider = provider();
    let contexts = run(|_| {
        Dispatch::new(otel_subscriber(
            &provider,
            traceline::layer().with_writer(file.clone()),
        ))
    });
    drop(file);
    let mut text = String::new();
    File::open(&path)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    check_all(&text, &contexts);
}

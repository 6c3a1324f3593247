//! Spans used the hard ways: handed between threads, never entered, outliving their parent,
//! entered on several threads at once, created and closed by the ten thousand, disabled, or
//! re-parented before their first line. Every line keeps exactly the ids of the span that
//! logged it, and nothing panics or goes missing.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Barrier};

use common::{Capture, Json, assert_ids, assert_no_ids, otel_subscriber, span_context};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::{Dispatch, Span, debug, debug_span, info, info_span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

/// A subscriber (registry + OpenTelemetry + traceline into a [`Capture`]) whose provider
/// exports every ended span to memory, so tests can see which spans ended and how they link.
struct Setup {
    cap: Capture,
    exporter: InMemorySpanExporter,
    dispatch: Dispatch,
    _provider: SdkTracerProvider,
}

fn setup() -> Setup {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let cap = Capture::new();
    let dispatch = Dispatch::new(otel_subscriber(
        &provider,
        traceline::layer().with_writer(cap.clone()),
    ));
    Setup {
        cap,
        exporter,
        dispatch,
        _provider: provider,
    }
}

impl Setup {
    /// Runs `f` under this subscriber on the current thread.
    fn here<R>(&self, f: impl FnOnce() -> R) -> R {
        tracing::dispatcher::with_default(&self.dispatch, f)
    }

    /// Runs `f` under this subscriber on a new thread and waits for it.
    fn on_thread<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let dispatch = self.dispatch.clone();
        std::thread::spawn(move || tracing::dispatcher::with_default(&dispatch, f))
            .join()
            .expect("the thread panicked")
    }

    fn ended(&self) -> Vec<SpanData> {
        self.exporter.get_finished_spans().unwrap()
    }

    fn ended_named(&self, name: &str) -> Vec<SpanData> {
        self.ended()
            .into_iter()
            .filter(|s| s.name == name)
            .collect()
    }
}

fn message_line<'a>(lines: &'a [Json], message: &str) -> &'a Json {
    let found: Vec<_> = lines
        .iter()
        .filter(|l| l.get("message").and_then(Json::as_str) == Some(message))
        .collect();
    assert_eq!(found.len(), 1, "lines with message {message:?}: {lines:?}");
    found[0]
}

fn exported_is(span: &SpanData, sc: &SpanContext) {
    assert_eq!(span.span_context.trace_id(), sc.trace_id(), "{span:?}");
    assert_eq!(span.span_context.span_id(), sc.span_id(), "{span:?}");
}

#[test]
fn span_made_on_the_test_thread_is_used_and_closed_on_another() {
    let s = setup();
    let (span, sc) = s.here(|| {
        let span = info_span!("handed_over");
        span.in_scope(|| info!("on the creating thread"));
        let sc = span_context(&span);
        (span, sc)
    });
    s.on_thread(move || {
        span.in_scope(|| info!("on the closing thread"));
        drop(span);
    });
    let lines = s.cap.lines();
    assert_eq!(lines.len(), 2);
    assert_ids(message_line(&lines, "on the creating thread"), &sc);
    assert_ids(message_line(&lines, "on the closing thread"), &sc);
    let ended = s.ended_named("handed_over");
    assert_eq!(ended.len(), 1, "the span ended once, on the other thread");
    exported_is(&ended[0], &sc);
}

#[test]
fn span_made_on_another_thread_is_used_and_closed_on_the_test_thread() {
    let s = setup();
    let (span, sc) = s.on_thread(|| {
        let span = info_span!("handed_back");
        span.in_scope(|| info!("on the creating thread"));
        let sc = span_context(&span);
        (span, sc)
    });
    s.here(|| {
        span.in_scope(|| info!("on the closing thread"));
        drop(span);
    });
    let lines = s.cap.lines();
    assert_eq!(lines.len(), 2);
    assert_ids(message_line(&lines, "on the creating thread"), &sc);
    assert_ids(message_line(&lines, "on the closing thread"), &sc);
    let ended = s.ended_named("handed_back");
    assert_eq!(ended.len(), 1);
    exported_is(&ended[0], &sc);
}

#[test]
fn never_entered_span_as_explicit_parent_on_four_threads_at_once() {
    // The span's first line (which looks its ids up and caches them) races on four threads.
    const THREADS: usize = 4;
    const PER_THREAD: usize = 500;
    let s = setup();
    let never = s.here(|| info_span!("never_entered"));
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let never = never.clone();
            let barrier = barrier.clone();
            let dispatch = s.dispatch.clone();
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    barrier.wait();
                    let child = info_span!(parent: &never, "child_of_never", t);
                    for i in 0..PER_THREAD {
                        info!(parent: &never, t, i, "to the never-entered span");
                        info!(parent: &child, t, i, "to its child");
                    }
                    span_context(&child)
                })
            })
        })
        .collect();
    let children: Vec<SpanContext> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let sc = span_context(&never);
    drop(never);

    let lines = s.cap.lines();
    assert_eq!(lines.len(), THREADS * PER_THREAD * 2);
    for line in &lines {
        let t: usize = line.num("t").parse().unwrap();
        match line.str("message") {
            "to the never-entered span" => assert_ids(line, &sc),
            "to its child" => assert_ids(line, &children[t]),
            other => panic!("unexpected line {other:?}"),
        }
    }
    for child in &children {
        assert_eq!(child.trace_id(), sc.trace_id());
    }
    let ended = s.ended();
    let parent = ended.iter().find(|e| e.name == "never_entered").unwrap();
    exported_is(parent, &sc);
    let kids: Vec<_> = ended
        .iter()
        .filter(|e| e.name == "child_of_never")
        .collect();
    assert_eq!(kids.len(), THREADS);
    assert!(kids.iter().all(|k| k.parent_span_id == sc.span_id()));
}

#[test]
fn child_outlives_its_parent() {
    let s = setup();
    // Once with a parent that logged (its ids known) before it was dropped, once with a parent
    // nobody looked at before the child's first line.
    let (child_a, child_b) = s.here(|| {
        let parent_a = info_span!("parent_a");
        parent_a.in_scope(|| info!("in parent_a"));
        let child_a = info_span!(parent: &parent_a, "child_a");
        let parent_b = info_span!("parent_b");
        let child_b = info_span!(parent: &parent_b, "child_b");
        drop(parent_a);
        drop(parent_b);
        child_a.in_scope(|| info!("child_a after its parent was dropped"));
        (child_a, child_b)
    });
    // child_b's first line comes from another thread, after its parent handle is gone.
    let child_b = s.on_thread(move || {
        child_b.in_scope(|| info!("child_b after its parent was dropped"));
        child_b
    });
    let (sc_a, sc_b) = (span_context(&child_a), span_context(&child_b));
    // Closing a child closes its parent through the current dispatcher: drop them under it.
    s.here(|| drop((child_a, child_b)));

    let lines = s.cap.lines();
    assert_eq!(lines.len(), 3);
    let ended = s.ended();
    let get = |name: &str| {
        ended
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name} did not end: {ended:?}"))
            .clone()
    };
    for (parent, child, sc, msg) in [
        (
            "parent_a",
            "child_a",
            &sc_a,
            "child_a after its parent was dropped",
        ),
        (
            "parent_b",
            "child_b",
            &sc_b,
            "child_b after its parent was dropped",
        ),
    ] {
        let (parent, child) = (get(parent), get(child));
        let line = message_line(&lines, msg);
        assert_ids(line, sc);
        exported_is(&child, sc);
        assert_eq!(
            line.str("traceId"),
            parent.span_context.trace_id().to_string(),
            "the child's line carries its parent's trace"
        );
        assert_ne!(
            line.str("spanId"),
            parent.span_context.span_id().to_string(),
            "and its own span id"
        );
        assert_eq!(child.parent_span_id, parent.span_context.span_id());
    }
    assert_eq!(
        message_line(&lines, "in parent_a").str("traceId"),
        sc_a.trace_id().to_string()
    );
}

#[test]
fn one_span_entered_on_two_threads_at_once() {
    const PER_THREAD: usize = 1_000;
    let s = setup();
    let shared = s.here(|| info_span!("shared"));
    let both_inside = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|t| {
            let span = shared.clone();
            let both_inside = both_inside.clone();
            let dispatch = s.dispatch.clone();
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    let _entered = span.enter();
                    // Both threads are inside the span from here until the second wait.
                    both_inside.wait();
                    for i in 0..PER_THREAD {
                        info!(t, i, "inside the shared span");
                    }
                    both_inside.wait();
                })
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let sc = span_context(&shared);
    drop(shared);

    let lines = s.cap.lines();
    assert_eq!(lines.len(), 2 * PER_THREAD);
    let mut per_thread = [0usize; 2];
    for line in &lines {
        assert_ids(line, &sc);
        per_thread[line.num("t").parse::<usize>().unwrap()] += 1;
    }
    assert_eq!(per_thread, [PER_THREAD; 2]);
    let ended = s.ended_named("shared");
    assert_eq!(ended.len(), 1, "ended once, after both threads left it");
    exported_is(&ended[0], &sc);
}

#[test]
fn many_short_spans_on_four_threads_each_line_has_its_own_spans_ids() {
    // Span ids of closed spans are reused by the registry: a stale cached id would show here.
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 20_000;
    const CHILD_EVERY: u64 = 8;
    let s = setup();
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let barrier = barrier.clone();
            let dispatch = s.dispatch.clone();
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    barrier.wait();
                    let mut ids = Vec::with_capacity(PER_THREAD as usize);
                    for i in 0..PER_THREAD {
                        let span = info_span!("short", t, i);
                        let _entered = span.enter();
                        info!(t, i, inner = false, "short span");
                        let inner = (i % CHILD_EVERY == 0).then(|| {
                            let child = info_span!("inner");
                            child.in_scope(|| info!(t, i, inner = true, "inner span"));
                            span_context(&child)
                        });
                        ids.push((span_context(&span), inner));
                    }
                    ids
                })
            })
        })
        .collect();
    let expected: Vec<Vec<(SpanContext, Option<SpanContext>)>> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();

    let lines = s.cap.lines();
    let children = THREADS * PER_THREAD.div_ceil(CHILD_EVERY);
    assert_eq!(lines.len() as u64, THREADS * PER_THREAD + children);
    let mut seen = HashSet::new();
    for line in &lines {
        let t: usize = line.num("t").parse().unwrap();
        let i: usize = line.num("i").parse().unwrap();
        let inner = line.at("inner") == &Json::Bool(true);
        assert!(seen.insert((t, i, inner)), "line repeated: {line:?}");
        let (outer, child) = &expected[t][i];
        if inner {
            let child = child
                .as_ref()
                .expect("an inner line only where a child was made");
            assert_ids(line, child);
            assert_eq!(child.trace_id(), outer.trace_id());
        } else {
            assert_ids(line, outer);
        }
    }
    let span_ids: HashSet<_> = expected
        .iter()
        .flatten()
        .flat_map(|(o, c)| std::iter::once(o.span_id()).chain(c.as_ref().map(|c| c.span_id())))
        .collect();
    assert_eq!(
        span_ids.len() as u64,
        THREADS * PER_THREAD + children,
        "every span got ids of its own"
    );
    assert_eq!(s.ended().len() as u64, THREADS * PER_THREAD + children);
}

#[test]
fn span_none_and_disabled_spans_log_without_ids() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let cap = Capture::new();
    let subscriber = otel_subscriber(&provider, traceline::layer().with_writer(cap.clone()))
        .with(LevelFilter::INFO);
    let (outer_sc, root_sc) = tracing::subscriber::with_default(subscriber, || {
        Span::none().in_scope(|| info!("in Span::none"));
        info!(parent: &Span::none(), "parent Span::none");

        let off = debug_span!("filtered_out", x = 1);
        assert!(off.is_disabled());
        off.in_scope(|| info!("in a disabled span"));
        info!(parent: &off, "disabled span as parent");
        off.record("x", 2);
        assert!(!span_context(&off).is_valid());
        assert!(off.set_parent(opentelemetry::Context::new()).is_err());

        let outer = info_span!("outer");
        let _o = outer.enter();
        off.in_scope(|| info!("in a disabled span inside outer"));
        info!(parent: &Span::none(), "parent Span::none inside outer");
        debug!("filtered out event");
        let root = info_span!(parent: &off, "child_of_disabled");
        root.in_scope(|| info!("in a child of a disabled span"));
        (span_context(&outer), span_context(&root))
    });

    let lines = cap.lines();
    assert_eq!(lines.len(), 7, "{lines:?}");
    for msg in [
        "in Span::none",
        "parent Span::none",
        "in a disabled span",
        "disabled span as parent",
        "parent Span::none inside outer",
    ] {
        assert_no_ids(message_line(&lines, msg));
    }
    assert_ids(
        message_line(&lines, "in a disabled span inside outer"),
        &outer_sc,
    );
    let root_line = message_line(&lines, "in a child of a disabled span");
    assert_ids(root_line, &root_sc);
    assert_ne!(
        root_sc.trace_id(),
        outer_sc.trace_id(),
        "a child of a disabled span is a root, not a child of the current span"
    );
    assert!(lines.iter().all(|l| !l.has("x")));
    let names: HashSet<String> = exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .map(|s| s.name.into_owned())
        .collect();
    assert_eq!(
        names,
        HashSet::from(["outer".to_owned(), "child_of_disabled".to_owned()])
    );
}

const REMOTE_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const REMOTE_SPAN: &str = "00f067aa0ba902b7";

fn remote_context() -> opentelemetry::Context {
    let carrier = HashMap::from([(
        "traceparent".to_owned(),
        format!("00-{REMOTE_TRACE}-{REMOTE_SPAN}-01"),
    )]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    assert!(cx.span().span_context().is_remote());
    cx
}

#[test]
fn set_parent_before_the_first_line_on_other_threads() {
    let s = setup();
    let span = s.here(|| info_span!("server"));
    // Re-parented on a second thread; a child made on a third (making a child starts the
    // parent's OpenTelemetry span, so this is the last moment for `set_parent`); the child's
    // first line on a fourth, before any line of the parent; the parent's on a fifth.
    let span = s.on_thread(move || {
        span.set_parent(remote_context())
            .expect("nothing has started the span yet");
        span
    });
    let (span, child) = s.on_thread(move || {
        let child = info_span!(parent: &span, "handler");
        (span, child)
    });
    let child = s.on_thread(move || {
        child.in_scope(|| info!("first line of the child"));
        child
    });
    let span = s.on_thread(move || {
        span.in_scope(|| info!("first line of the re-parented span"));
        span
    });
    let (sc, child_sc) = (span_context(&span), span_context(&child));
    s.here(|| drop((child, span)));

    let lines = s.cap.lines();
    assert_eq!(lines.len(), 2);
    let line = message_line(&lines, "first line of the re-parented span");
    assert_ids(line, &sc);
    assert_eq!(line.str("traceId"), REMOTE_TRACE);
    assert_ne!(line.str("spanId"), REMOTE_SPAN);
    let line = message_line(&lines, "first line of the child");
    assert_ids(line, &child_sc);
    assert_eq!(line.str("traceId"), REMOTE_TRACE);
    assert_ne!(child_sc.span_id(), sc.span_id());

    let server = &s.ended_named("server")[0];
    exported_is(server, &sc);
    assert_eq!(server.parent_span_id.to_string(), REMOTE_SPAN);
    let handler = &s.ended_named("handler")[0];
    exported_is(handler, &child_sc);
    assert_eq!(handler.parent_span_id, sc.span_id());
}

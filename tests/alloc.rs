//! traceline allocates nothing per event in steady state: with a counting global allocator,
//! 1000 events after a warm-up cost zero heap allocations (registry + traceline), and exactly as
//! many as the registry + OpenTelemetry layer alone when that layer is installed; with a span
//! created per event, one allocation per span and none per event. A 100 MB value costs a
//! bounded number of bytes (the field length limit), not 100 MB.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Dispatch;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

struct Counting;

thread_local! {
    // Per thread: tests running in parallel do not disturb each other's counts.
    static COUNT: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

fn bump(bytes: usize) {
    let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    let _ = BYTES.try_with(|c| c.set(c.get() + bytes as u64));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    COUNT.with(Cell::get)
}

/// Discards lines (so the writer itself allocates nothing).
#[derive(Clone, Copy)]
struct Sink;

impl io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = Sink;
    fn make_writer(&'a self) -> Sink {
        Sink
    }
}

#[derive(Debug)]
#[allow(dead_code)]
struct Item {
    sku: &'static str,
    qty: u32,
}

fn event(i: u64) {
    tracing::info!(
        order.id = i,
        customer = "alice@example.com",
        paid = true,
        amount = 12.5f64,
        item = ?Item { sku: "SKU-1234", qty: 3 },
        "order created"
    );
}

#[derive(Clone, Copy, Debug)]
enum Workload {
    NestedSpans,
    NoSpan,
    /// A span created, entered, an event, the span dropped: per event.
    SpanPerEvent,
}

const EVENTS: u64 = 1000;

/// Allocations for `EVENTS` events after a warm-up of as many, under `dispatch`.
fn count(dispatch: &Dispatch, workload: Workload) -> u64 {
    tracing::dispatcher::with_default(dispatch, || {
        let run = |n: u64| -> u64 {
            let before = allocations();
            for i in 0..n {
                event(i);
            }
            allocations() - before
        };
        match workload {
            Workload::NestedSpans => {
                let outer = tracing::info_span!("request", http.method = "GET", user_id = 42u64);
                let _o = outer.enter();
                let inner = tracing::info_span!("db.query", db.table = "orders", attempt = 1u64);
                let _i = inner.enter();
                run(EVENTS);
                run(EVENTS)
            }
            Workload::NoSpan => {
                run(EVENTS);
                run(EVENTS)
            }
            Workload::SpanPerEvent => {
                let run = |n: u64| -> u64 {
                    let before = allocations();
                    for i in 0..n {
                        let span = tracing::info_span!("work", job = i);
                        let _e = span.enter();
                        event(i);
                    }
                    allocations() - before
                };
                run(EVENTS);
                run(EVENTS)
            }
        }
    })
}

fn otel<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    otel_layer()
}

#[test]
fn traceline_allocates_nothing_per_event() {
    for workload in [Workload::NestedSpans, Workload::NoSpan] {
        let d = Dispatch::new(
            tracing_subscriber::registry().with(traceline::layer().with_writer(Sink)),
        );
        let n = count(&d, workload);
        assert_eq!(n, 0, "{workload:?}: {n} allocations in {EVENTS} events");
    }
}

#[test]
fn traceline_adds_no_allocation_to_the_opentelemetry_layer() {
    for workload in [Workload::NestedSpans, Workload::NoSpan] {
        // The floor is measured twice around traceline: its count must be stable to compare.
        let floor = || {
            count(
                &Dispatch::new(tracing_subscriber::registry().with(otel())),
                workload,
            )
        };
        let before = floor();
        let with = count(
            &Dispatch::new(
                tracing_subscriber::registry()
                    .with(otel())
                    .with(traceline::layer().with_writer(Sink)),
            ),
            workload,
        );
        let after = floor();
        assert_eq!(
            before, after,
            "{workload:?}: the floor itself is not stable"
        );
        assert_eq!(
            with, before,
            "{workload:?}: registry + OTel + traceline made {with} allocations in {EVENTS} events, \
             registry + OTel alone {before}"
        );
    }
}

#[test]
fn traceline_allocates_nothing_with_a_spans_only_opentelemetry_layer() {
    use tracing_subscriber::filter::filter_fn;
    for workload in [Workload::NestedSpans, Workload::NoSpan] {
        let d = Dispatch::new(
            tracing_subscriber::registry()
                .with(otel().with_filter(filter_fn(|m| m.is_span())))
                .with(traceline::layer().with_writer(Sink)),
        );
        let n = count(&d, workload);
        assert_eq!(n, 0, "{workload:?}: {n} allocations in {EVENTS} events");
    }
}

fn bytes_allocated() -> u64 {
    BYTES.with(Cell::get)
}

/// Prints its length in bytes worth of `x`, one piece at a time, counting the pieces.
struct Huge {
    len: usize,
    pieces: Cell<usize>,
}

impl std::fmt::Debug for Huge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let piece = "x".repeat(4096);
        for _ in 0..self.len / piece.len() {
            self.pieces.set(self.pieces.get() + 1);
            f.write_str(&piece)?;
        }
        Ok(())
    }
}

#[test]
fn a_100_mb_value_costs_memory_bounded_by_the_field_limit() {
    const MB100: usize = 100 * 1024 * 1024;
    let text = "y".repeat(MB100);
    let huge = Huge {
        len: MB100,
        pieces: Cell::new(0),
    };
    let d =
        Dispatch::new(tracing_subscriber::registry().with(traceline::layer().with_writer(Sink)));
    tracing::dispatcher::with_default(&d, || {
        let before = bytes_allocated();
        let start = std::time::Instant::now();
        tracing::info!(text = text.as_str(), debug = ?huge, "{}", text);
        let took = start.elapsed();
        let bytes = bytes_allocated() - before;
        // Three values of 100 MB each, cut at 64 KiB: the line buffer grows to a few hundred
        // KiB (once per thread), plus the Debug value's own 4 KiB pieces.
        assert!(bytes < 4 * 1024 * 1024, "{bytes} bytes allocated");
        assert!(
            huge.pieces.get() <= traceline::DEFAULT_MAX_FIELD_LEN / 4096 + 1,
            "the Debug value was formatted on past the limit: {} pieces",
            huge.pieces.get()
        );
        assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
    });
}

/// A span created per event: traceline keeps one allocation per span (its data's place in the
/// span's extensions, which the registry boxes) and none per event, on top of whatever the
/// OpenTelemetry layer makes, with the `traceline::otel` wrapper as `init()` sets it up, with
/// and without `init()`'s spans-only filter.
#[test]
fn traceline_allocates_once_per_span_and_nothing_per_event() {
    use tracing_subscriber::filter::filter_fn;
    let alone = count(
        &Dispatch::new(tracing_subscriber::registry().with(traceline::layer().with_writer(Sink))),
        Workload::SpanPerEvent,
    );
    assert_eq!(
        alone, EVENTS,
        "registry + traceline: {alone} allocations for {EVENTS} spans"
    );
    for spans_only in [false, true] {
        let floor = || {
            let registry = tracing_subscriber::registry();
            let d =
                if spans_only {
                    Dispatch::new(registry.with(
                        traceline::otel(otel_layer()).with_filter(filter_fn(|m| m.is_span())),
                    ))
                } else {
                    Dispatch::new(registry.with(traceline::otel(otel_layer())))
                };
            count(&d, Workload::SpanPerEvent)
        };
        let before = floor();
        let registry = tracing_subscriber::registry();
        let with = if spans_only {
            count(
                &Dispatch::new(
                    registry
                        .with(traceline::otel(otel_layer()).with_filter(filter_fn(|m| m.is_span())))
                        .with(traceline::layer().with_writer(Sink)),
                ),
                Workload::SpanPerEvent,
            )
        } else {
            count(
                &Dispatch::new(
                    registry
                        .with(traceline::otel(otel_layer()))
                        .with(traceline::layer().with_writer(Sink)),
                ),
                Workload::SpanPerEvent,
            )
        };
        let after = floor();
        assert_eq!(
            before, after,
            "spans only {spans_only}: the floor itself is not stable"
        );
        assert_eq!(
            with,
            before + EVENTS,
            "spans only {spans_only}: registry + OTel + traceline made {with} allocations for \
             {EVENTS} spans, registry + OTel alone {before}"
        );
    }
}

/// The OpenTelemetry layer itself, for `traceline::otel`.
fn otel_layer<S>()
-> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::AlwaysOn)
        .build();
    tracing_opentelemetry::layer().with_tracer(provider.tracer("alloc-test"))
}

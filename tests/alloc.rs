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
    /// Bytes allocated less bytes freed, on this thread.
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn bump(bytes: usize) {
    let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    let _ = BYTES.try_with(|c| c.set(c.get() + bytes as u64));
    let _ = LIVE.try_with(|c| c.set(c.get() + bytes as i64));
}

fn freed(bytes: usize) {
    let _ = LIVE.try_with(|c| c.set(c.get() - bytes as i64));
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
        freed(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump(new_size);
        freed(layout.size());
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

/// Allocations for `EVENTS` calls of `f` after a warm-up of as many, under `dispatch`.
fn count_with(dispatch: &Dispatch, f: impl Fn(u64)) -> u64 {
    tracing::dispatcher::with_default(dispatch, || {
        for i in 0..EVENTS {
            f(i);
        }
        let before = allocations();
        for i in 0..EVENTS {
            f(i);
        }
        allocations() - before
    })
}

/// Two traceline layers in one subscriber (stdout in one schema, a file in another) each keep
/// their keys per callsite: no allocation per event, in spans or not.
#[test]
fn two_traceline_layers_allocate_nothing_per_event() {
    let two = || {
        Dispatch::new(
            tracing_subscriber::registry()
                .with(traceline::layer().with_writer(Sink))
                .with(
                    traceline::layer()
                        .with_schema(traceline::Schema::ecs())
                        .with_writer(Sink),
                ),
        )
    };
    for workload in [Workload::NoSpan, Workload::NestedSpans] {
        let n = count(&two(), workload);
        assert_eq!(n, 0, "{workload:?}: {n} allocations in {EVENTS} events");
    }
    // One allocation per span and layer (each layer's data), none per event.
    let n = count(&two(), Workload::SpanPerEvent);
    assert_eq!(
        n,
        2 * EVENTS,
        "span per event: {n} allocations in {EVENTS} events"
    );
}

// 300 event callsites: more than the first cache's 256 slots, so that some of them start
// their probe at one slot.
macro_rules! callsites {
    ($($n:literal)*) => {
        fn at(k: usize, i: u64) {
            match k {
                $( $n => tracing::info!(n = i, "callsite {}", $n), )*
                _ => unreachable!(),
            }
        }
        const SITES: usize = [$($n),*].len();
    };
}
callsites!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79 80 81 82 83 84 85 86 87 88 89 90 91 92 93 94 95 96 97 98 99 100 101 102 103 104 105 106 107 108 109 110 111 112 113 114 115 116 117 118 119 120 121 122 123 124 125 126 127 128 129 130 131 132 133 134 135 136 137 138 139 140 141 142 143 144 145 146 147 148 149 150 151 152 153 154 155 156 157 158 159 160 161 162 163 164 165 166 167 168 169 170 171 172 173 174 175 176 177 178 179 180 181 182 183 184 185 186 187 188 189 190 191 192 193 194 195 196 197 198 199 200 201 202 203 204 205 206 207 208 209 210 211 212 213 214 215 216 217 218 219 220 221 222 223 224 225 226 227 228 229 230 231 232 233 234 235 236 237 238 239 240 241 242 243 244 245 246 247 248 249 250 251 252 253 254 255 256 257 258 259 260 261 262 263 264 265 266 267 268 269 270 271 272 273 274 275 276 277 278 279 280 281 282 283 284 285 286 287 288 289 290 291 292 293 294 295 296 297 298 299);

/// Callsites logged in turn, however their addresses fall, keep their keys: no allocation
/// per event once each has logged.
#[test]
fn many_callsites_logged_in_turn_allocate_nothing_per_event() {
    let d =
        Dispatch::new(tracing_subscriber::registry().with(traceline::layer().with_writer(Sink)));
    let floor = count_with(&Dispatch::new(tracing_subscriber::registry()), |i| {
        at(i as usize % SITES, i)
    });
    assert_eq!(floor, 0);
    let n = tracing::dispatcher::with_default(&d, || {
        for i in 0..SITES as u64 {
            at(i as usize, i);
        }
        let before = allocations();
        for round in 0..3 {
            for i in 0..SITES {
                at(i, round);
            }
        }
        allocations() - before
    });
    assert_eq!(
        n,
        0,
        "{n} allocations in {} events over {SITES} callsites",
        3 * SITES
    );
}

/// The nested layout's list of spans is walked without collecting them: no allocation per
/// event, however deep the spans (tracing-subscriber collects a scope into a vector past 16,
/// or always without its `smallvec` feature).
#[test]
fn nested_layout_allocates_nothing_per_event_however_deep() {
    let d = Dispatch::new(
        tracing_subscriber::registry().with(
            traceline::layer()
                .with_field_layout(traceline::FieldLayout::Nested)
                .with_writer(Sink),
        ),
    );
    for depth in [2u64, 16, 17, 40] {
        let n = tracing::dispatcher::with_default(&d, || {
            let mut entered = Vec::new();
            for level in 0..depth {
                entered.push(tracing::info_span!("level", level).entered());
            }
            let event = |i: u64| tracing::info!(i, "event");
            (0..EVENTS).for_each(event);
            let before = allocations();
            (0..EVENTS).for_each(event);
            allocations() - before
        });
        assert_eq!(
            n, 0,
            "{depth} nested spans: {n} allocations in {EVENTS} events"
        );
    }
}

/// A line cut at the line length limit (a field too long, or a message) is cut in reused
/// buffers: no allocation per event.
#[test]
fn lines_past_the_line_limit_allocate_nothing_per_event() {
    let body = "x".repeat(20 * 1024);
    let layer = || {
        Dispatch::new(
            tracing_subscriber::registry().with(
                traceline::layer()
                    .with_max_line_len(16 * 1024)
                    .with_writer(Sink),
            ),
        )
    };
    let field = |i: u64| tracing::info!(i, body = body.as_str(), "upload");
    let message = |i: u64| tracing::info!(i, "{}", body);
    assert_eq!(
        count_with(&Dispatch::new(tracing_subscriber::registry()), field),
        0
    );
    let n = count_with(&layer(), field);
    assert_eq!(n, 0, "a field too long: {n} allocations in {EVENTS} events");
    let n = count_with(&layer(), message);
    assert_eq!(
        n, 0,
        "a message too long: {n} allocations in {EVENTS} events"
    );
}

/// Layers made and dropped one after another (a dispatcher per task, per test, a `reload`)
/// each leave their keys in the thread's cache: it keeps a bounded number of them, not one set
/// per layer ever made.
#[test]
fn the_callsite_cache_keeps_a_bounded_number_of_dropped_layers_keys() {
    let live = || LIVE.with(Cell::get);
    let run = |n: usize| {
        for _ in 0..n {
            let d = Dispatch::new(
                tracing_subscriber::registry().with(traceline::layer().with_writer(Sink)),
            );
            tracing::dispatcher::with_default(&d, || {
                tracing::info!(a = 1, b = "two", c = 3.0, "one callsite")
            });
        }
    };
    run(5_000);
    let before = live();
    run(20_000);
    let grown = live() - before;
    assert!(
        grown < 2 << 20,
        "{grown} bytes kept by 20000 dropped layers' cache entries"
    );
}

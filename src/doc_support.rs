//! Support for the sample lines in the schema docs: fixed ids and a fixed clock, so each
//! preset's documented line is produced, and checked, by its doc test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use tracing_subscriber::prelude::*;

use crate::Schema;

#[derive(Debug, Default)]
struct FixedIds(AtomicU64);

impl opentelemetry_sdk::trace::IdGenerator for FixedIds {
    fn new_trace_id(&self) -> TraceId {
        TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736_u128)
    }
    fn new_span_id(&self) -> SpanId {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        SpanId::from(0x00f067aa0ba902b7_u64 + n)
    }
}

#[derive(Clone, Default)]
struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The line `schema` writes for `info!(order.item_count = 3, "order created")` inside an
/// entered `createOrder` span with `order.customer_id = 42`, at 2026-11-25T10:32:03.123456789Z,
/// in trace `4bf92f3577b34da6a3ce929d0e0e4736`, service `orders`.
pub fn sample_line(schema: Schema) -> String {
    let layer = crate::layer()
        .with_schema(schema.service_name("orders"))
        .with_clock(|| UNIX_EPOCH + Duration::new(1_795_602_723, 123_456_789));
    let text = run(layer, || {
        let span = tracing::info_span!(target: "orders", "createOrder", order.customer_id = 42);
        let _entered = span.enter();
        tracing::event!(target: "orders", tracing::Level::INFO, order.item_count = 3, "order created");
    });
    text.trim_end().to_owned()
}

/// The lines `layer` writes (its writer replaced by a buffer) for what `log` logs, parsed. It
/// runs in a subscriber with the OpenTelemetry layer (fixed ids), inside an entered
/// `createOrder` span with `order.customer_id = 42`.
pub fn lines<W>(layer: crate::Layer<W>, log: impl FnOnce()) -> Vec<serde_json::Value>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    let text = run(layer, || {
        let span = tracing::info_span!("createOrder", order.customer_id = 42);
        let _entered = span.enter();
        log();
    });
    text.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// What `layer` (its writer replaced by a buffer) writes for what `log` logs, in a subscriber
/// with the OpenTelemetry layer giving fixed ids.
fn run<W>(layer: crate::Layer<W>, log: impl FnOnce()) -> String
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_id_generator(FixedIds::default())
        .build();
    let buf = Buf::default();
    let out = buf.clone();
    let subscriber = tracing_subscriber::registry()
        .with(crate::otel(
            tracing_opentelemetry::layer().with_tracer(provider.tracer("doc")),
        ))
        .with(layer.with_writer(move || out.clone()));
    tracing::subscriber::with_default(subscriber, log);
    let bytes = buf.0.lock().expect("not poisoned").clone();
    String::from_utf8(bytes).expect("UTF-8")
}

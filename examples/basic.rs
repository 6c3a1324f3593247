//! Registry + OpenTelemetry layer (SDK tracer provider, no exporter) + traceline.
//!
//! `cargo run --example basic | jq -c 'select(.traceId != null)'`
use std::error::Error;
use std::fmt;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{error, info, info_span, warn};
use tracing_subscriber::prelude::*;

#[derive(Debug)]
struct PaymentError {
    source: std::io::Error,
}

impl fmt::Display for PaymentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("payment declined")
    }
}

impl Error for PaymentError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

fn main() {
    // Real ids, no exporter: the provider only generates trace and span ids.
    let provider = SdkTracerProvider::builder().build();
    tracing_subscriber::registry()
        .with(traceline::otel(
            tracing_opentelemetry::layer().with_tracer(provider.tracer("basic")),
        ))
        .with(
            traceline::layer()
                .with_service_name("orders")
                .with_service_version(env!("CARGO_PKG_VERSION")),
        )
        .init();

    info!("starting up (no span: no traceId)");

    let order = info_span!("createOrder", order.customer_id = 42, user_id = "u-17");
    let _order = order.enter();
    info!(order.item_count = 3, "order created");
    {
        let db = info_span!("db.insert", db.system = "postgresql");
        let _db = db.enter();
        info!(rows = 1_u64, elapsed_ms = 2.5, "inserted order");
    }
    let err = PaymentError {
        source: std::io::Error::new(std::io::ErrorKind::TimedOut, "card network timed out"),
    };
    warn!(
        attempt = 1,
        "retrying payment\nwith a second line in the message"
    );
    error!(error = &err as &dyn Error, "payment failed");
    drop(_order);
    let _ = provider.shutdown();
}

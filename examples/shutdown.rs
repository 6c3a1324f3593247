//! A tokio service that shuts down cleanly on SIGTERM or Ctrl-C: the spans of the last
//! requests are exported and every queued line is written before the process exits.
//!
//! `OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317 OTEL_EXPORTER_OTLP_PROTOCOL=grpc cargo run --example shutdown`
//! then `kill -TERM <pid>` (or Ctrl-C).
//!
//! `SHUTDOWN_EXAMPLE_LINES=N` logs N lines at start (and `SHUTDOWN_EXAMPLE_NON_BLOCKING=1`
//! writes them through the non-blocking queue); the tests use it.
use std::time::Duration;

use traceline::install::Writer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut writer = Writer::stdout();
    if std::env::var_os("SHUTDOWN_EXAMPLE_NON_BLOCKING").is_some() {
        writer = writer.non_blocking();
    }
    let guard = traceline::builder()
        .service_name("shutdown-example")
        .writer(writer)
        .try_init()?;

    let lines: u64 = std::env::var("SHUTDOWN_EXAMPLE_LINES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let worker = tokio::spawn(async move {
        let span = tracing::info_span!("batch");
        let _entered = span.enter();
        for i in 0..lines {
            tracing::info!(i, "work item done");
        }
        // Tell whoever is watching that the work is logged; then serve until stopped.
        eprintln!("ready");
    });
    worker.await?;
    let server = tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });

    wait_for_shutdown_signal().await?;
    server.abort();
    // Exports pending spans and writes queued lines, bounded by the shutdown timeout (5 s).
    guard.shutdown()?;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C received, shutting down"),
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_shutdown_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await?;
    tracing::info!("Ctrl-C received, shutting down");
    Ok(())
}

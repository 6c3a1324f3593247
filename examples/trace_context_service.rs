//! The test service that the W3C Trace Context test harness drives.
//!
//! `cargo run --example trace_context_service --features http -- 127.0.0.1:5000`, then, from
//! a checkout of w3c/trace-context: `python test/test.py http://127.0.0.1:5000/test`.
//!
//! For each `{url, arguments}` in the POSTed JSON array, the service POSTs `arguments` to
//! `url`, with the trace context that [`traceline::http::PropagateLayer`] injects.
use axum::{Json, Router, routing::post};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::TracerProvider as _;
use serde_json::Value;
use tower::{Service, ServiceBuilder, ServiceExt};
use traceline::http::{CorrelationLayer, PropagateLayer};
use tracing_subscriber::prelude::*;

async fn test(Json(calls): Json<Value>) -> &'static str {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut client = ServiceBuilder::new()
        .layer(PropagateLayer::new())
        .service(client);
    for call in calls.as_array().into_iter().flatten() {
        let (Some(url), Some(args)) = (call["url"].as_str(), call.get("arguments")) else {
            continue;
        };
        let req = http::Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(args.to_string())))
            .expect("valid request");
        match client.ready().await.expect("client ready").call(req).await {
            Ok(resp) => tracing::info!(status = resp.status().as_u16(), url, "callback sent"),
            Err(err) => tracing::warn!(error = %err, url, "callback failed"),
        }
    }
    "ok"
}

#[tokio::main]
async fn main() {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    tracing_subscriber::registry()
        // The service's own lines; hyper's and axum's per-connection TRACE lines would bury
        // them. `RUST_LOG` overrides: keep traceline's spans in it (`warn,traceline=info`), as
        // a filter that turns off the INFO request and client spans turns propagation off too.
        // (`traceline::init()` keeps them on whatever the filter says.)
        .with(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with(traceline::otel(
            tracing_opentelemetry::layer().with_tracer(provider.tracer("w3c")),
        ))
        .with(traceline::layer().with_service_name("trace-context-service"))
        .init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5000".into());
    let app = Router::new()
        .route("/test", post(test))
        .layer(CorrelationLayer::new());
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    tracing::info!(%addr, "listening");
    axum::serve(listener, app).await.expect("serve");
}

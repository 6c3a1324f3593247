//! `init()` with a filter that names only the application (`RUST_LOG=myapp=info`): traceline's own
//! spans stay on, so lines keep the correlation id and the caller's trace; the access log follows
//! the filter. A process of its own: `init()` installs the global subscriber.
#![cfg(all(feature = "http", feature = "install"))]

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use traceline::http::CorrelationLayer;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The correlation scope and the HTTP request span survive `RUST_LOG=myapp=info`: the scope's
/// id is current inside it, and the handler's line carries the caller's trace and
/// correlation id. The access log (INFO, target `traceline::http::access`) is not written: the filter
/// did not ask for it.
#[tokio::test(flavor = "current_thread")]
async fn an_app_only_filter_keeps_trace_continuation_and_correlation() {
    let capture = common::Capture::new();
    let _guard = traceline::builder()
        .env(|_| None)
        .filter("myapp=info")
        .log_bridge(false)
        .writer(traceline::install::Writer::custom(capture.clone()))
        .try_init()
        .unwrap();

    let id = traceline::correlation::CorrelationId::parse("scope-1").unwrap();
    let in_scope =
        traceline::correlation::scope(id.clone()).in_scope(traceline::correlation::current);

    let app = Router::new()
        .route(
            "/hello",
            get(|| async {
                tracing::info!(target: "myapp", "handling hello");
                "ok"
            }),
        )
        .layer(CorrelationLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let req = Request::get(format!("http://{addr}/hello"))
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .header("x-correlation-id", "req-123")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = Client::builder(TokioExecutor::new())
        .build_http()
        .request(req)
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-correlation-id"], "req-123");
    let _ = resp.into_body().collect().await;

    let lines = capture.lines();
    let line = lines
        .iter()
        .find(|l| l.str("message") == "handling hello")
        .expect("the handler's line");
    assert_eq!(in_scope, Some(id), "correlation::current() in a scope");
    assert_eq!(line.str("traceId"), TRACE, "{line:?}");
    assert_eq!(line.str("correlationId"), "req-123", "{line:?}");
    // Only the application's line: the access log stays under the filter.
    assert_eq!(lines.len(), 1, "{lines:?}");
}

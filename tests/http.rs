//! Real axum servers and hyper clients on loopback, with the correlation middleware.
#![cfg(feature = "http")]

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::TracerProvider as _;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{Service, ServiceBuilder, ServiceExt};
use traceline::correlation::{self, CorrelationId};
use traceline::http::{CorrelationLayer, PropagateLayer};
use tracing::Instrument;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
    fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is JSON"))
            .collect()
    }
}

/// Registry + OTel (SDK provider, no exporter) + traceline into a capture buffer, as the
/// thread's default. Tests run on a current-thread runtime so every task sees it.
fn install(service: &str) -> (Capture, tracing::subscriber::DefaultGuard) {
    let capture = Capture::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .with(
            traceline::layer()
                .with_service_name(service)
                .with_writer(capture.clone()),
        );
    let guard = tracing::subscriber::set_default(subscriber);
    (capture, guard)
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        async move { axum::serve(listener, app).await.unwrap() }.instrument(tracing::Span::none()),
    );
    addr
}

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Serves one HTTP/2 connection on loopback with the hyper service `svc`; returns its address.
async fn serve_h2_once<S, B>(svc: S) -> SocketAddr
where
    S: hyper::service::Service<Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    accept_once(|io| async move {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, svc)
            .await;
    })
    .await
}

/// Accepts one connection on a loopback port and hands it to `serve` (outside every span);
/// returns the port's address.
async fn accept_once<F, Fut>(serve: F) -> SocketAddr
where
    F: FnOnce(hyper_util::rt::TokioIo<tokio::net::TcpStream>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        async move {
            let (stream, _) = listener.accept().await.unwrap();
            serve(hyper_util::rt::TokioIo::new(stream)).await;
        }
        .instrument(tracing::Span::none()),
    );
    addr
}

fn h2_client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// Sends `req` through `client` and asserts that the client did not get the whole body (the
/// stream was reset or closed before its end).
async fn body_fails(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    req: Request<Empty<Bytes>>,
) {
    let what = format!("{} {}", req.method(), req.uri().path());
    let resp = client.request(req).await.unwrap();
    let got = resp.into_body().collect().await;
    assert!(
        got.is_err(),
        "{what}: the client saw the failure: {:?}",
        got.map(|c| c.to_bytes())
    );
}

async fn get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, HeaderValue)],
) -> (StatusCode, HeaderMap, String) {
    let mut req = Request::get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, v.clone());
    }
    let resp = client()
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn hello_app() -> Router {
    Router::new()
        .route(
            "/hello",
            get(|| async {
                tracing::info!("handling hello");
                correlation::current()
                    .map(|c| c.to_string())
                    .unwrap_or_default()
            }),
        )
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .layer(CorrelationLayer::new())
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test(flavor = "current_thread")]
async fn continues_the_callers_trace_and_correlation_id() {
    let (capture, _g) = install("svc");
    let addr = serve(hello_app()).await;
    let tp = format!("00-{TRACE}-00f067aa0ba902b7-01");
    let (status, headers, body) = get_with(
        addr,
        "/hello",
        &[
            ("traceparent", tp.parse().unwrap()),
            ("x-correlation-id", "req-123".parse().unwrap()),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-correlation-id"], "req-123");
    assert_eq!(body, "req-123", "correlation::current() inside the handler");
    let lines = capture.lines();
    let handled: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "handling hello")
        .collect();
    assert_eq!(handled.len(), 1);
    assert_eq!(handled[0]["traceId"], TRACE);
    assert_ne!(
        handled[0]["spanId"], "00f067aa0ba902b7",
        "a new span id, child of the caller"
    );
    assert_eq!(handled[0]["correlationId"], "req-123");
    assert_eq!(handled[0]["http.request.method"], "GET");
    assert_eq!(handled[0]["url.path"], "/hello");
    let access: Vec<_> = lines
        .iter()
        .filter(|l| {
            l["target"] == "traceline::http::access" && l["http.response.status_code"] == 200
        })
        .collect();
    assert_eq!(access.len(), 1, "one access-log line: {lines:?}");
    assert_eq!(access[0]["traceId"], TRACE);
    assert_eq!(access[0]["correlationId"], "req-123");
    assert!(access[0]["latency_ms"].as_f64().unwrap() >= 0.0);
}

#[tokio::test(flavor = "current_thread")]
async fn x_request_id_is_used_when_x_correlation_id_is_absent() {
    let (_capture, _g) = install("svc");
    let addr = serve(hello_app()).await;
    let (_, headers, body) = get_with(
        addr,
        "/hello",
        &[("x-request-id", "nginx-abc".parse().unwrap())],
    )
    .await;
    assert_eq!(headers["x-correlation-id"], "nginx-abc");
    assert_eq!(body, "nginx-abc");
}

/// A client's invalid `x-correlation-id` does not hide a proxy's valid `x-request-id`: that
/// one is used, and a WARN line says the other was ignored (giving its length, not its value).
#[tokio::test(flavor = "current_thread")]
async fn an_invalid_first_header_falls_back_to_the_next_valid_one() {
    let (capture, _g) = install("svc");
    let addr = serve(hello_app()).await;
    let (_, headers, body) = get_with(
        addr,
        "/hello",
        &[
            ("x-correlation-id", "../etc".parse().unwrap()),
            ("x-request-id", "nginx-def".parse().unwrap()),
        ],
    )
    .await;
    assert_eq!(headers["x-correlation-id"], "nginx-def");
    assert_eq!(body, "nginx-def");
    let lines = capture.lines();
    let warn = lines
        .iter()
        .find(|l| l["level"] == "WARN")
        .expect("a WARN line");
    assert_eq!(
        warn["message"],
        "ignored an invalid incoming correlation id; used the next header's"
    );
    assert_eq!(warn["header"], "x-correlation-id");
    assert_eq!(warn["length"], 6);
    assert!(!capture.text().contains("../etc"));
}

#[tokio::test(flavor = "current_thread")]
async fn invalid_traceparent_starts_a_new_trace_and_tracestate_is_dropped() {
    let (capture, _g) = install("svc");
    let addr = serve(hello_app()).await;
    let bad = format!("00-{}-00f067aa0ba902b7-01", TRACE.to_uppercase());
    get_with(
        addr,
        "/hello",
        &[
            ("traceparent", bad.parse().unwrap()),
            ("tracestate", "foo=1".parse().unwrap()),
        ],
    )
    .await;
    let line = capture
        .lines()
        .into_iter()
        .find(|l| l["message"] == "handling hello")
        .unwrap();
    let trace = line["traceId"].as_str().unwrap();
    assert_eq!(trace.len(), 32);
    assert_ne!(trace, TRACE.to_lowercase());
}

#[tokio::test(flavor = "current_thread")]
async fn requests_without_a_valid_traceparent_each_start_a_trace_inside_a_connection_span() {
    // A server that runs each connection in a span of its own, a common pattern with hyper:
    // requests on one keep-alive connection with no (or an invalid) traceparent are separate
    // traces, not children of the connection's.
    let (capture, _g) = install("svc");
    let app = hello_app();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connection_trace = Arc::new(Mutex::new(None));
    let seen = connection_trace.clone();
    tokio::spawn(
        async move {
            let (io, peer) = listener.accept().await.unwrap();
            let span = tracing::info_span!("connection", %peer);
            *seen.lock().unwrap() = Some(trace_id_of(&span));
            let svc = hyper_util::service::TowerToHyperService::new(app);
            hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
                .instrument(span)
                .await
                .unwrap();
        }
        .instrument(tracing::Span::none()),
    );
    let bad = format!(
        "traceparent: 00-{}-00f067aa0ba902b7-01\r\n",
        TRACE.to_uppercase()
    );
    let requests = format!(
        "GET /hello HTTP/1.1\r\nhost: x\r\n\r\n\
         GET /hello HTTP/1.1\r\nhost: x\r\n{bad}\r\n\
         GET /hello HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(requests.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out)
            .matches("HTTP/1.1 200")
            .count(),
        3
    );
    let connection = connection_trace.lock().unwrap().clone().unwrap();
    let traces: Vec<String> = capture
        .lines()
        .into_iter()
        .filter(|l| l["message"] == "handling hello")
        .map(|l| l["traceId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(traces.len(), 3);
    for t in &traces {
        assert_eq!(t.len(), 32);
        assert_ne!(*t, connection, "a request joined the connection's trace");
    }
    assert!(
        traces[0] != traces[1] && traces[1] != traces[2] && traces[0] != traces[2],
        "requests share a trace: {traces:?}"
    );
}

/// The OpenTelemetry trace id of `span`, as hex.
fn trace_id_of(span: &tracing::Span) -> String {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    span.context().span().span_context().trace_id().to_string()
}

#[tokio::test(flavor = "current_thread")]
async fn latency_counts_work_the_inner_service_does_in_call() {
    // Some services do their work in `call` and return a ready future.
    let (capture, _g) = install("svc");
    let svc = ServiceBuilder::new()
        .layer(CorrelationLayer::new())
        .service(tower::service_fn(|_req: Request<Empty<Bytes>>| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(
                Empty::<Bytes>::new(),
            )))
        }));
    let resp = svc
        .oneshot(Request::get("/work").body(Empty::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let access: Vec<Value> = capture
        .lines()
        .into_iter()
        .filter(|l| l.get("latency_ms").is_some())
        .collect();
    assert_eq!(access.len(), 1, "{access:?}");
    let latency = access[0]["latency_ms"].as_f64().unwrap();
    assert!(
        latency >= 50.0,
        "latency_ms {latency} leaves out the work done in call"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn server_errors_mark_the_span_and_log_at_error() {
    let (capture, exporter, provider, _g) = exporting_lines();
    let addr = serve(hello_app()).await;
    let (status, headers, _) = get_with(addr, "/fail", &[]).await;
    assert_eq!(status, 500);
    let id = headers["x-correlation-id"].to_str().unwrap().to_owned();
    assert!(CorrelationId::parse(&id).is_ok());
    let access = capture
        .lines()
        .into_iter()
        .find(|l| l["http.response.status_code"] == 500)
        .unwrap();
    assert_eq!(access["level"], "ERROR");
    assert_eq!(access["correlationId"], id.as_str());
    assert!(server_span_failed(&exporter, &provider, "/fail"));
}

/// Sends one raw HTTP/1.1 request with `header_line` and returns the raw response.
async fn raw_request(addr: SocketAddr, header_line: &[u8]) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = b"GET /hello HTTP/1.1\r\nhost: x\r\nconnection: close\r\n".to_vec();
    req.extend_from_slice(header_line);
    req.extend_from_slice(b"\r\n\r\n");
    s.write_all(&req).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    out
}

/// Sends one hostile correlation header (raw bytes, as an attacker would) and checks it is
/// replaced, never echoed in the response nor written into a line.
async fn hostile_case(name: &str, header: &[u8], forbidden: &[&str]) {
    let (capture, _g) = install("svc");
    let addr = serve(hello_app()).await;
    let before = capture.text().len();
    let resp = raw_request(addr, header).await;
    let resp_text = String::from_utf8_lossy(&resp).into_owned();
    let status_line = resp_text.lines().next().unwrap_or_default().to_owned();
    let new_lines = capture.text()[before..].to_owned();
    for &hostile in forbidden {
        assert!(
            !resp_text.contains(hostile),
            "{name}: response echoes {hostile:?}: {resp_text}"
        );
        assert!(
            !new_lines.contains(hostile),
            "{name}: a line holds {hostile:?}: {new_lines}"
        );
    }
    if name == "lf" {
        assert!(
            resp_text.contains("x-correlation-id: ok-part"),
            "{resp_text}"
        );
        return;
    }
    if status_line.contains(" 200 ") {
        let echoed = resp_text
            .lines()
            .find_map(|l| l.strip_prefix("x-correlation-id: "))
            .unwrap_or_else(|| panic!("{name}: no id echoed: {resp_text}"));
        let id = CorrelationId::parse(echoed.trim()).unwrap();
        assert_eq!(id.as_str().len(), 32, "{name}: a generated id");
        let warn = new_lines
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|l| l["level"] == "WARN")
            .unwrap_or_else(|| panic!("{name}: no WARN line: {new_lines}"));
        assert_eq!(
            warn["message"],
            "replaced an invalid incoming correlation id"
        );
        assert_eq!(warn["correlationId"], id.as_str());
        assert!(warn["length"].as_u64().is_some());
    } else {
        // hyper itself refused the request (bare CR/LF): nothing reached the service.
        assert!(
            status_line.contains(" 400 ") || resp.is_empty(),
            "{name}: {status_line}"
        );
    }

    for line in capture.text().lines() {
        serde_json::from_str::<Value>(line).expect("every line is JSON");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn hostile_header_with_cr_is_refused_or_replaced() {
    hostile_case(
        "crlf",
        b"x-correlation-id: evil\rinjected: 1",
        &["evil", "injected"],
    )
    .await;
}

/// A bare LF ends the header: "ok-part" is a valid id, the rest another header.
#[tokio::test(flavor = "current_thread")]
async fn hostile_header_with_lf_cannot_inject_a_header() {
    hostile_case(
        "lf",
        b"x-correlation-id: ok-part\ninjected: 1",
        &["injected"],
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn hostile_header_with_encoded_crlf_is_replaced() {
    hostile_case(
        "encoded_crlf",
        b"x-correlation-id: a%0d%0aSet-Cookie:x",
        &["%0d", "Set-Cookie"],
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn hostile_header_of_10_kb_is_replaced() {
    let ten_kb = "A".repeat(10 * 1024);
    let header = format!("x-correlation-id: {ten_kb}");
    hostile_case("ten_kb", header.as_bytes(), &[&ten_kb[..64]]).await;
}

#[tokio::test(flavor = "current_thread")]
async fn hostile_header_with_non_ascii_is_replaced() {
    hostile_case(
        "non_ascii",
        "x-correlation-id: évil-ü".as_bytes(),
        &["évil", "vil-"],
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn empty_header_is_replaced() {
    hostile_case("empty", b"x-correlation-id: ", &[]).await;
}

#[tokio::test(flavor = "current_thread")]
async fn hostile_header_with_dotdot_is_replaced() {
    hostile_case(
        "dotdot",
        b"x-correlation-id: ../../etc/passwd",
        &["../", "passwd"],
    )
    .await;
}

/// An absolute path would leave the directory an application joins the id to.
#[tokio::test(flavor = "current_thread")]
async fn hostile_header_with_an_absolute_path_is_replaced() {
    hostile_case(
        "absolute",
        b"x-correlation-id: /etc/passwd",
        &["/etc/passwd"],
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn hostile_header_with_esc_is_replaced() {
    hostile_case(
        "esc",
        b"x-correlation-id: a\x1b[31mred",
        &["\u{1b}", "[31m"],
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn two_correlation_headers_are_replaced() {
    hostile_case(
        "two_values",
        b"x-correlation-id: firstQv\r\nx-correlation-id: secondQv",
        &["firstQv", "secondQv"],
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn ten_kb_value_reports_its_length() {
    let (capture, _g) = install("svc");
    let addr = serve(hello_app()).await;
    let v = "A".repeat(10 * 1024);
    get_with(addr, "/hello", &[("x-correlation-id", v.parse().unwrap())]).await;
    let warn = capture
        .lines()
        .into_iter()
        .find(|l| l["level"] == "WARN")
        .unwrap();
    assert_eq!(warn["length"], 10 * 1024);
    assert_eq!(warn["header"], "x-correlation-id");
}

#[tokio::test(flavor = "current_thread")]
async fn ids_survive_await_and_spawned_tasks() {
    let (capture, _g) = install("svc");
    let id = CorrelationId::parse("scope-1").unwrap();
    let scope = correlation::scope(id.clone());
    async {
        tracing::info!(step = 1u64, "before await");
        tokio::task::yield_now().await;
        tracing::info!(step = 2u64, "after await");
        let child = tokio::spawn(
            async {
                tokio::task::yield_now().await;
                tracing::info!(step = 3u64, "in spawned task");
                correlation::current()
            }
            .in_current_span(),
        );
        assert_eq!(
            child.await.unwrap(),
            Some(CorrelationId::parse("scope-1").unwrap())
        );
        async { tracing::info!(step = 4u64, "in child span") }
            .instrument(tracing::info_span!("child"))
            .await;
    }
    .instrument(scope)
    .await;
    let lines = capture.lines();
    assert_eq!(lines.len(), 4);
    let trace = lines[0]["traceId"].as_str().unwrap().to_owned();
    for l in &lines {
        assert_eq!(l["correlationId"], "scope-1", "{l}");
        assert_eq!(l["traceId"], trace.as_str(), "{l}");
    }
    assert_eq!(correlation::current(), None, "outside the scope");
}

/// Service A calls service B through `PropagateLayer`; both log one trace and one id.
#[tokio::test(flavor = "current_thread")]
async fn two_services_share_trace_and_correlation_id() {
    let (capture, _g) = install("both");
    let b = serve(
        Router::new()
            .route(
                "/pay",
                get(|headers: HeaderMap| async move {
                    tracing::info!("payments: charging");
                    headers
                        .get("tracestate")
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default()
                }),
            )
            .layer(CorrelationLayer::new()),
    )
    .await;
    let a = serve(
        Router::new()
            .route(
                "/order",
                get(|State(b): State<SocketAddr>| async move {
                    tracing::info!("orders: calling payments");
                    let mut client = ServiceBuilder::new()
                        .layer(PropagateLayer::new())
                        .service(client());
                    let req = Request::get(format!("http://{b}/pay"))
                        .body(Empty::new())
                        .unwrap();
                    let resp = client.ready().await.unwrap().call(req).await.unwrap();
                    let body = resp.into_body().collect().await.unwrap().to_bytes();
                    String::from_utf8(body.to_vec()).unwrap()
                }),
            )
            .with_state(b)
            .layer(CorrelationLayer::new()),
    )
    .await;
    let tp = format!("00-{TRACE}-00f067aa0ba902b7-01");
    let (_, headers, body) = get_with(
        a,
        "/order",
        &[
            ("traceparent", tp.parse().unwrap()),
            (
                "tracestate",
                "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7".parse().unwrap(),
            ),
            ("x-correlation-id", "order-77".parse().unwrap()),
        ],
    )
    .await;
    assert_eq!(headers["x-correlation-id"], "order-77");
    assert_eq!(
        body, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
        "tracestate passed on unchanged"
    );
    let lines = capture.lines();
    let a_line = lines
        .iter()
        .find(|l| l["message"] == "orders: calling payments")
        .unwrap();
    let b_line = lines
        .iter()
        .find(|l| l["message"] == "payments: charging")
        .unwrap();
    for l in [a_line, b_line] {
        assert_eq!(l["traceId"], TRACE);
        assert_eq!(l["correlationId"], "order-77");
    }
    assert_ne!(a_line["spanId"], b_line["spanId"]);
}

#[tokio::test(flavor = "current_thread")]
async fn the_matched_route_is_recorded_when_the_router_gives_it() {
    let (capture, _g) = install("svc");
    let app = Router::new()
        .route(
            "/users/{id}",
            get(|| async {
                tracing::info!("looking up user");
                "ok"
            }),
        )
        // As `CorrelationLayer::route` says: `.layer`, so that unmatched requests get one too.
        .layer(
            CorrelationLayer::new()
                .route(|ext| ext.get::<axum::extract::MatchedPath>().map(|m| m.as_str())),
        );
    let addr = serve(app).await;
    let (status, _, _) = get_with(addr, "/users/42", &[]).await;
    assert_eq!(status, 200);
    // An unmatched request (a 404) still gets its id echoed and an access line.
    let (status, headers, _) = get_with(
        addr,
        "/user/42",
        &[("x-correlation-id", "typo-1".parse().unwrap())],
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(headers["x-correlation-id"], "typo-1");
    assert!(
        capture
            .lines()
            .iter()
            .any(|l| l["http.response.status_code"] == 404 && l["correlationId"] == "typo-1"),
        "no access line for the 404"
    );
    let line = capture
        .lines()
        .into_iter()
        .find(|l| l["message"] == "looking up user")
        .unwrap();
    assert_eq!(line["http.route"], "/users/{id}");
    assert_eq!(line["url.path"], "/users/42");
    // `otel.*` span fields are tracing-opentelemetry's, not the line's.
    assert!(line.get("otel.name").is_none(), "{line}");
}

#[tokio::test(flavor = "current_thread")]
async fn correlation_id_can_be_the_trace_id_and_server_timing_names_the_trace() {
    let (capture, _g) = install("svc");
    let app = Router::new()
        .route(
            "/hello",
            get(|| async {
                tracing::info!("handling hello");
                "ok"
            }),
        )
        .layer(
            CorrelationLayer::new()
                .correlation_id_from_trace_id(true)
                .server_timing(true),
        );
    let addr = serve(app).await;
    // A caller's trace: the id is its trace id.
    let tp = format!("00-{TRACE}-00f067aa0ba902b7-01");
    let (_, headers, _) = get_with(addr, "/hello", &[("traceparent", tp.parse().unwrap())]).await;
    assert_eq!(headers["x-correlation-id"], TRACE);
    let timing = headers["server-timing"].to_str().unwrap().to_owned();
    assert!(
        timing.starts_with(&format!("trace;desc=00-{TRACE}-")),
        "{timing}"
    );
    assert!(timing.ends_with("-01"), "{timing}");
    // No caller trace: the id is the new trace's id, as the lines show.
    let (_, headers, _) = get_with(addr, "/hello", &[]).await;
    let id = headers["x-correlation-id"].to_str().unwrap().to_owned();
    let lines = capture.lines();
    let line = lines
        .iter()
        .filter(|l| l["message"] == "handling hello")
        .nth(1)
        .unwrap();
    assert_eq!(line["traceId"], id.as_str());
    assert_eq!(line["correlationId"], id.as_str());
    // A valid incoming id still wins.
    let (_, headers, _) = get_with(
        addr,
        "/hello",
        &[("x-correlation-id", "given-1".parse().unwrap())],
    )
    .await;
    assert_eq!(headers["x-correlation-id"], "given-1");
}

/// Registry + OTel exporting to memory + traceline (lines discarded), as the thread's default.
fn exporting() -> (
    opentelemetry_sdk::trace::InMemorySpanExporter,
    opentelemetry_sdk::trace::SdkTracerProvider,
    tracing::subscriber::DefaultGuard,
) {
    let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("t")))
        .with(traceline::layer().with_writer(Capture::default()));
    let guard = tracing::subscriber::set_default(subscriber);
    (exporter, provider, guard)
}

/// [`exporting`], with the lines it writes.
fn exporting_lines() -> (
    Capture,
    opentelemetry_sdk::trace::InMemorySpanExporter,
    opentelemetry_sdk::trace::SdkTracerProvider,
    tracing::subscriber::DefaultGuard,
) {
    let capture = Capture::default();
    let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("t")))
        .with(traceline::layer().with_writer(capture.clone()));
    let guard = tracing::subscriber::set_default(subscriber);
    (capture, exporter, provider, guard)
}

/// Whether the server span of the request to `path`, exported so far, is marked as an error.
fn server_span_failed(
    exporter: &opentelemetry_sdk::trace::InMemorySpanExporter,
    provider: &opentelemetry_sdk::trace::SdkTracerProvider,
    path: &str,
) -> bool {
    let _ = provider.force_flush();
    let spans = exporter.get_finished_spans().unwrap();
    let span = spans
        .iter()
        .find(|s| {
            s.span_kind == opentelemetry::trace::SpanKind::Server
                && s.attributes
                    .iter()
                    .any(|kv| kv.key.as_str() == "url.path" && kv.value.as_str() == path)
        })
        .unwrap_or_else(|| panic!("no server span for {path}"));
    matches!(span.status, opentelemetry::trace::Status::Error { .. })
}

/// A span's `rpc.grpc.status_code`, and whether it is marked as an error.
fn grpc_outcome(s: &opentelemetry_sdk::trace::SpanData) -> (Option<opentelemetry::Value>, bool) {
    let code = s
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "rpc.grpc.status_code")
        .map(|kv| kv.value.clone());
    (
        code,
        matches!(s.status, opentelemetry::trace::Status::Error { .. }),
    )
}

/// The client spans exported so far, in the order they ended.
fn client_spans(
    exporter: &opentelemetry_sdk::trace::InMemorySpanExporter,
    provider: &opentelemetry_sdk::trace::SdkTracerProvider,
) -> Vec<opentelemetry_sdk::trace::SpanData> {
    let _ = provider.force_flush();
    let mut spans = exporter.get_finished_spans().unwrap();
    spans.retain(|s| s.span_kind == opentelemetry::trace::SpanKind::Client);
    spans
}

/// Exactly one client span was exported, with status ERROR.
fn assert_one_failed_client_span(
    exporter: &opentelemetry_sdk::trace::InMemorySpanExporter,
    provider: &opentelemetry_sdk::trace::SdkTracerProvider,
) {
    let spans = client_spans(exporter, provider);
    assert_eq!(spans.len(), 1);
    assert!(
        matches!(spans[0].status, opentelemetry::trace::Status::Error { .. }),
        "{:?}",
        spans[0].status
    );
}

/// A tower "client" that records the headers of the request it gets, and answers `status`.
fn recording_client(
    seen: Arc<Mutex<Option<HeaderMap>>>,
    status: StatusCode,
) -> impl Service<Request<()>, Response = http::Response<String>, Error = std::convert::Infallible>
{
    tower::service_fn(move |req: Request<()>| {
        let seen = seen.clone();
        async move {
            tracing::info!(target: "app", "client transport sending");
            *seen.lock().unwrap() = Some(req.headers().clone());
            let mut resp = http::Response::new(String::new());
            *resp.status_mut() = status;
            Ok::<_, std::convert::Infallible>(resp)
        }
    })
}

/// Sends one request through `PropagateLayer` from inside a `handler` span; returns the
/// handler's trace id and the `traceparent` sent, if any.
async fn traceparent_sent_from_a_handler() -> (String, Option<String>) {
    let handler = tracing::info_span!(target: "app", "handler");
    let expected = trace_id_of(&handler);
    let seen = Arc::new(Mutex::new(None));
    let client = ServiceBuilder::new()
        .layer(PropagateLayer::new())
        .service(recording_client(seen.clone(), StatusCode::OK));
    client
        .oneshot(Request::new(()))
        .instrument(handler)
        .await
        .unwrap();
    let headers = seen.lock().unwrap().clone().unwrap();
    let sent = headers
        .get("traceparent")
        .map(|v| v.to_str().unwrap().to_owned());
    (expected, sent)
}

#[tokio::test(flavor = "current_thread")]
async fn the_client_sends_the_callers_trace_when_a_filter_disables_its_span() {
    // Quieting traceline's HTTP spans and access log must not break propagation.
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(
            "info,traceline::http=warn",
        ))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("t")))
        .with(traceline::layer().with_writer(Capture::default()));
    let _g = tracing::subscriber::set_default(subscriber);
    let (expected, sent) = traceparent_sent_from_a_handler().await;
    assert!(
        sent.as_deref().is_some_and(|tp| tp.contains(&expected)),
        "expected a traceparent in trace {expected}, got {sent:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_client_sends_the_callers_trace_when_its_span_is_hidden_from_opentelemetry() {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("t"))
        .with_filter(tracing_subscriber::filter::filter_fn(|m| {
            !m.target().starts_with("traceline::http")
        }));
    let subscriber = tracing_subscriber::registry()
        .with(otel)
        .with(traceline::layer().with_writer(Capture::default()));
    let _g = tracing::subscriber::set_default(subscriber);
    let (expected, sent) = traceparent_sent_from_a_handler().await;
    assert!(
        sent.as_deref().is_some_and(|tp| tp.contains(&expected)),
        "expected a traceparent in trace {expected}, got {sent:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_client_spans_url_has_no_credentials_or_signatures() {
    let (capture, _g) = install("client");
    let client = ServiceBuilder::new()
        .layer(PropagateLayer::new())
        .service(recording_client(Arc::new(Mutex::new(None)), StatusCode::OK));
    let req = Request::get(
        "http://alice:s3cr3t-pw@db.internal:8080/q?page=2&X-Goog-Signature=abc123&sig=def456&apiKey=k-789",
    )
    .body(())
    .unwrap();
    client.oneshot(req).await.unwrap();
    let lines = capture.lines();
    let line = lines
        .iter()
        .find(|l| l["message"] == "client transport sending")
        .unwrap();
    assert_eq!(
        line["url.full"],
        "http://REDACTED:REDACTED@db.internal:8080/q?page=2&X-Goog-Signature=REDACTED&sig=REDACTED&apiKey=REDACTED"
    );
    for secret in ["s3cr3t-pw", "alice", "abc123", "def456", "k-789"] {
        assert!(!capture.text().contains(secret), "{secret} written");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_4xx_answer_marks_the_client_span_as_an_error() {
    let (exporter, provider, _g) = exporting();
    for status in [StatusCode::OK, StatusCode::NOT_FOUND] {
        let client = ServiceBuilder::new()
            .layer(PropagateLayer::new())
            .service(recording_client(Arc::new(Mutex::new(None)), status));
        client.oneshot(Request::new(())).await.unwrap();
    }
    let statuses: Vec<_> = client_spans(&exporter, &provider)
        .iter()
        .map(|s| matches!(s.status, opentelemetry::trace::Status::Error { .. }))
        .collect();
    assert_eq!(statuses, [false, true], "200 then 404");
}

/// A gRPC service behind a `CorrelationLayer` that answers `POST /pkg.Orders/{code}` with a
/// "trailers-only" response: HTTP 200, `grpc-status: {code}` in the headers, no message.
fn grpc_trailers_only_app() -> Router {
    Router::new()
        .route(
            "/pkg.Orders/{code}",
            axum::routing::post(
                |axum::extract::Path(code): axum::extract::Path<String>| async move {
                    (
                        [
                            ("content-type", "application/grpc".to_owned()),
                            ("grpc-status", code),
                        ],
                        "",
                    )
                },
            ),
        )
        .layer(CorrelationLayer::new())
}

/// A gRPC server answers a call that fails before any message with a "trailers-only" response:
/// HTTP 200, `grpc-status` in the headers. The access line and the request span say so: an
/// error for a server's fault (INTERNAL), not for the caller's (NOT_FOUND).
#[tokio::test(flavor = "current_thread")]
async fn grpc_status_in_a_trailers_only_answer_is_recorded() {
    let (capture, exporter, provider, _g) = exporting_lines();
    let app = grpc_trailers_only_app();
    let addr = serve(app).await;
    for code in ["13", "5", "0"] {
        let req = Request::post(format!("http://{addr}/pkg.Orders/{code}"))
            .body(Empty::new())
            .unwrap();
        let resp = client().request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    // A 503 (from a proxy, say) with a gRPC status: an HTTP failure, logged as one.
    let failing = tower::service_fn(|_req: Request<()>| async {
        let mut resp = http::Response::new(String::new());
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let headers = resp.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from_static("5"));
        Ok::<_, std::convert::Infallible>(resp)
    });
    let failing = ServiceBuilder::new()
        .layer(CorrelationLayer::new())
        .service(failing);
    let req = Request::post("/pkg.Orders/Unavailable").body(()).unwrap();
    failing.oneshot(req).await.unwrap();
    // A `grpc-status` header on a response that is not gRPC means nothing.
    let json = tower::service_fn(|_req: Request<()>| async {
        let mut resp = http::Response::new(String::new());
        let headers = resp.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("grpc-status", HeaderValue::from_static("13"));
        Ok::<_, std::convert::Infallible>(resp)
    });
    let json = ServiceBuilder::new()
        .layer(CorrelationLayer::new())
        .service(json);
    json.oneshot(Request::post("/json").body(()).unwrap())
        .await
        .unwrap();
    let lines = capture.lines();
    let access = |code: u64| {
        lines
            .iter()
            .find(|l| l["rpc.grpc.status_code"] == code)
            .unwrap_or_else(|| panic!("no access line with grpc-status {code}: {lines:?}"))
    };
    let internal = access(13);
    assert_eq!(internal["level"], "ERROR");
    assert_eq!(
        internal["message"],
        "POST /pkg.Orders/13 failed with grpc-status 13"
    );
    assert!(server_span_failed(&exporter, &provider, "/pkg.Orders/13"));
    let not_found = access(5);
    assert_eq!(not_found["level"], "INFO");
    assert_eq!(
        not_found["message"],
        "POST /pkg.Orders/5 completed with grpc-status 5"
    );
    assert!(!server_span_failed(&exporter, &provider, "/pkg.Orders/5"));
    assert_eq!(access(0)["level"], "INFO");
    let by_message = |m: &str| {
        lines
            .iter()
            .find(|l| l["message"] == m)
            .unwrap_or_else(|| panic!("no line {m:?}: {lines:?}"))
    };
    let unavailable = by_message("POST /pkg.Orders/Unavailable failed with 503");
    assert_eq!(unavailable["level"], "ERROR");
    let json = by_message("POST /json completed with 200");
    assert!(json.get("rpc.grpc.status_code").is_none(), "{json}");
    assert_eq!(json["level"], "INFO");
}

#[tokio::test(flavor = "current_thread")]
async fn a_non_ok_grpc_status_marks_the_client_span_as_an_error() {
    let (exporter, provider, _g) = exporting();
    // OK, NOT_FOUND, not a code (UNKNOWN to a gRPC client), and NOT_FOUND on a response that
    // is not gRPC (its `grpc-status` means nothing).
    let answers = [
        ("0", "application/grpc"),
        ("5", "application/grpc+proto"),
        ("abc", "application/grpc"),
        ("5", "application/json"),
    ];
    for (code, content_type) in answers {
        let server = tower::service_fn(move |_req: Request<()>| async move {
            let mut resp = http::Response::new(String::new());
            let headers = resp.headers_mut();
            headers.insert("grpc-status", HeaderValue::from_static(code));
            headers.insert("content-type", HeaderValue::from_static(content_type));
            Ok::<_, std::convert::Infallible>(resp)
        });
        let client = ServiceBuilder::new()
            .layer(PropagateLayer::new())
            .service(server);
        client.oneshot(Request::new(())).await.unwrap();
    }
    let statuses: Vec<_> = client_spans(&exporter, &provider)
        .iter()
        .map(grpc_outcome)
        .collect();
    // Exported as ints, as the conventions type them (not as the strings "0", "5", "2").
    let code = |c: i64| Some(opentelemetry::Value::I64(c));
    assert_eq!(
        statuses,
        [
            (code(0), false),
            (code(5), true),
            (code(2), true),
            (None, false)
        ]
    );
}

/// OpenTelemetry's HTTP conventions type `http.response.status_code` as an int: both the
/// server's and the client's span export it as one (not as the string "404").
#[tokio::test]
async fn status_codes_are_exported_as_ints() {
    let (exporter, provider, _guard) = exporting();
    let client = ServiceBuilder::new()
        .layer(PropagateLayer::new())
        .layer(CorrelationLayer::new())
        .service(tower::service_fn(|_req: Request<()>| async {
            let mut resp = http::Response::new(String::new());
            *resp.status_mut() = StatusCode::NOT_FOUND;
            Ok::<_, std::convert::Infallible>(resp)
        }));
    let resp = client.oneshot(Request::new(())).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // The server span ends with the response body.
    drop(resp);
    let _ = provider.force_flush();
    let spans = exporter.get_finished_spans().unwrap();
    let kinds: Vec<_> = spans.iter().map(|s| s.span_kind.clone()).collect();
    assert!(
        kinds.contains(&opentelemetry::trace::SpanKind::Server),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&opentelemetry::trace::SpanKind::Client),
        "{kinds:?}"
    );
    for span in &spans {
        let status = span
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "http.response.status_code")
            .map(|kv| kv.value.clone());
        assert_eq!(
            status,
            Some(opentelemetry::Value::I64(404)),
            "{:?}: {:?}",
            span.span_kind,
            span.attributes
        );
    }
}

/// Logs when dropped: stands for handler state whose `Drop` logs (a transaction rolled back).
struct LogOnDrop(&'static str);

impl Drop for LogOnDrop {
    fn drop(&mut self) {
        tracing::warn!("{}", self.0);
    }
}

fn slow_app() -> Router {
    Router::new()
        .route(
            "/slow",
            get(|| async {
                let _state = LogOnDrop("rolled back");
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                "done"
            }),
        )
        .layer(CorrelationLayer::new())
}

/// Sends a request and hangs up before the response (a browser navigating away, a client
/// timeout), then waits for the server to notice.
async fn send_and_hang_up(addr: SocketAddr, id: &str) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET /slow HTTP/1.1\r\nhost: x\r\nx-correlation-id: {id}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    drop(s);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
}

fn access_lines(capture: &Capture) -> Vec<Value> {
    capture
        .lines()
        .into_iter()
        .filter(|l| l["target"] == traceline::http::ACCESS_TARGET)
        .collect()
}

/// A request the client abandons gets one access line, at WARN, with its ids; and what the
/// handler logs while it is dropped carries them too.
#[tokio::test(flavor = "current_thread")]
async fn a_request_the_client_abandons_gets_one_warn_access_line_and_keeps_its_ids() {
    let (capture, _g) = install("svc");
    let addr = serve(slow_app()).await;
    send_and_hang_up(addr, "gone-1").await;
    let access = access_lines(&capture);
    assert_eq!(access.len(), 1, "{access:?}");
    assert_eq!(access[0]["level"], "WARN");
    assert_eq!(
        access[0]["message"],
        "GET /slow abandoned before its response"
    );
    assert_eq!(access[0]["correlationId"], "gone-1");
    assert!(
        access[0]["latency_ms"].as_f64().unwrap() >= 40.0,
        "{}",
        access[0]
    );
    let rolled_back = capture
        .lines()
        .into_iter()
        .find(|l| l["message"] == "rolled back")
        .expect("the handler's state was dropped");
    assert_eq!(rolled_back["correlationId"], "gone-1", "{rolled_back}");
    assert_eq!(
        rolled_back["traceId"], access[0]["traceId"],
        "{rolled_back}"
    );
}

/// Lines logged while a streamed body is produced carry the request's ids, and the request
/// span lasts until the body ends.
#[tokio::test(flavor = "current_thread")]
async fn lines_logged_while_a_streamed_body_is_produced_carry_the_requests_ids() {
    use futures_util::StreamExt as _;
    let (capture, _g) = install("svc");
    let app = Router::new()
        .route(
            "/export",
            get(|| async {
                let rows = futures_util::stream::iter(0..3u32).map(|i| {
                    tracing::info!(row = i, "exporting row");
                    Ok::<_, std::convert::Infallible>(Bytes::from(format!("row {i}\n")))
                });
                axum::body::Body::from_stream(rows)
            }),
        )
        .layer(CorrelationLayer::new());
    let addr = serve(app).await;
    let (status, _, body) = get_with(
        addr,
        "/export",
        &[("x-correlation-id", "export-1".parse().unwrap())],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, "row 0\nrow 1\nrow 2\n");
    let lines = capture.lines();
    let access = access_lines(&capture);
    assert_eq!(access.len(), 1);
    let rows: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "exporting row")
        .collect();
    assert_eq!(rows.len(), 3);
    for l in &rows {
        assert_eq!(l["correlationId"], "export-1", "{l}");
        assert_eq!(l["traceId"], access[0]["traceId"], "{l}");
        assert_eq!(l["spanId"], access[0]["spanId"], "{l}");
    }
}

/// A router nested with a `CorrelationLayer` of its own (axum `nest`) joins the outer one's
/// request: the id the caller gets back is the one the handler's lines carry, in the caller's
/// trace, with one access line, and the inner layer's route on the span.
#[tokio::test(flavor = "current_thread")]
async fn a_nested_router_with_its_own_layer_joins_the_outer_request() {
    let (capture, _g) = install("svc");
    let orders = Router::new()
        .route(
            "/orders/{id}",
            get(|| async {
                tracing::info!("looking up order");
                correlation::current().unwrap().to_string()
            }),
        )
        .layer(
            CorrelationLayer::new()
                .route(|ext| ext.get::<axum::extract::MatchedPath>().map(|m| m.as_str())),
        );
    let app = Router::new()
        .nest("/api", orders)
        .layer(CorrelationLayer::new());
    let addr = serve(app).await;
    let tp = format!("00-{TRACE}-00f067aa0ba902b7-01");
    let (status, headers, body) = get_with(
        addr,
        "/api/orders/7",
        &[("traceparent", tp.parse().unwrap())],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-correlation-id"], body.as_str());
    let line = capture
        .lines()
        .into_iter()
        .find(|l| l["message"] == "looking up order")
        .unwrap();
    assert_eq!(line["correlationId"], body.as_str(), "{line}");
    assert_eq!(line["traceId"], TRACE, "{line}");
    assert_eq!(line["url.path"], "/api/orders/7", "{line}");
    assert_eq!(line["http.route"], "/api/orders/{id}", "{line}");
    let access = access_lines(&capture);
    assert_eq!(access.len(), 1, "{access:?}");
    assert_eq!(access[0]["spanId"], line["spanId"]);
}

/// A `CorrelationId` the application put in a request's extensions (its own middleware, or a
/// request handed on in-process) is not taken for an outer layer: the only layer still
/// continues the caller's trace, takes the caller's id, echoes it and writes the access line.
#[tokio::test(flavor = "current_thread")]
async fn a_correlation_id_in_the_extensions_does_not_pass_the_request_through() {
    let (capture, _g) = install("svc");
    let svc = tower::Layer::layer(
        &CorrelationLayer::new(),
        tower::service_fn(|_r: Request<()>| async {
            tracing::info!("in handler");
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        }),
    );
    let mut req = Request::get("/x")
        .header("x-correlation-id", "caller-1")
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .body(())
        .unwrap();
    req.extensions_mut()
        .insert(CorrelationId::parse("from-extension").unwrap());
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.headers()["x-correlation-id"], "caller-1");
    let lines = capture.lines();
    let handler = lines.iter().find(|l| l["message"] == "in handler").unwrap();
    assert_eq!(handler["correlationId"], "caller-1", "{handler}");
    assert_eq!(handler["traceId"], TRACE, "{handler}");
    assert_eq!(access_lines(&capture).len(), 1, "{lines:?}");
}

/// A body of `chunks` (each after `gap`), then `end`: `None` ends it, `Some(e)` fails it.
fn streamed(
    chunks: usize,
    gap: std::time::Duration,
    end: Option<io::Error>,
) -> http_body_util::StreamBody<
    futures_util::stream::BoxStream<'static, Result<http_body::Frame<Bytes>, io::Error>>,
> {
    use futures_util::StreamExt;
    let data = futures_util::stream::iter(0..chunks).then(move |i| async move {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        Ok(http_body::Frame::data(Bytes::from_static(b"part")))
    });
    let end = futures_util::stream::iter(end.map(Err));
    http_body_util::StreamBody::new(data.chain(end).boxed())
}

/// The access line is written when the response's body has ended, not when its head is ready:
/// its latency is the whole response's.
#[tokio::test(flavor = "current_thread")]
async fn the_access_line_waits_for_the_end_of_the_body() {
    let (capture, _g) = install("svc");
    let gap = std::time::Duration::from_millis(150);
    let svc = tower::Layer::layer(
        &CorrelationLayer::new(),
        tower::service_fn(move |_r: Request<()>| async move {
            Ok::<_, std::convert::Infallible>(http::Response::new(streamed(2, gap, None)))
        }),
    );
    let resp = svc
        .oneshot(Request::get("/dl").body(()).unwrap())
        .await
        .unwrap();
    assert!(access_lines(&capture).is_empty(), "{}", capture.text());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"partpart");
    let access = access_lines(&capture);
    assert_eq!(access.len(), 1, "{access:?}");
    assert_eq!(access[0]["level"], "INFO");
    assert_eq!(access[0]["message"], "GET /dl completed with 200");
    let latency = access[0]["latency_ms"].as_f64().unwrap();
    assert!(latency >= 150.0, "latency {latency} ms leaves out the body");
}

/// A body that fails part-way is not logged as a success: one ERROR access line, with the
/// status that went out in the head.
#[tokio::test(flavor = "current_thread")]
async fn a_body_that_fails_part_way_gets_an_error_access_line() {
    let (capture, _g) = install("svc");
    let svc = tower::Layer::layer(
        &CorrelationLayer::new(),
        tower::service_fn(|_r: Request<()>| async {
            let body = streamed(1, Default::default(), Some(io::Error::other("disk gone")));
            Ok::<_, std::convert::Infallible>(http::Response::new(body))
        }),
    );
    let resp = svc
        .oneshot(Request::get("/dl").body(()).unwrap())
        .await
        .unwrap();
    assert!(resp.into_body().collect().await.is_err());
    let access = access_lines(&capture);
    assert_eq!(access.len(), 1, "{access:?}");
    assert_eq!(access[0]["level"], "ERROR", "{}", access[0]);
    assert_eq!(
        access[0]["message"],
        "GET /dl failed while sending its body"
    );
    assert_eq!(access[0]["http.response.status_code"], 200);
}

/// A body dropped before its end (the client went away mid-download) gets a WARN access line
/// saying so; a HEAD request, whose body is never sent, gets its line with the head.
#[tokio::test(flavor = "current_thread")]
async fn a_body_dropped_before_its_end_gets_a_warn_access_line() {
    let (capture, _g) = install("svc");
    let svc = tower::Layer::layer(
        &CorrelationLayer::new(),
        tower::service_fn(|_r: Request<()>| async {
            let body = streamed(3, std::time::Duration::from_secs(3600), None);
            Ok::<_, std::convert::Infallible>(http::Response::new(body))
        }),
    );
    let resp = svc
        .clone()
        .oneshot(Request::get("/dl").body(()).unwrap())
        .await
        .unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "part");
    assert!(access_lines(&capture).is_empty());
    drop(body);
    let access = access_lines(&capture);
    assert_eq!(access.len(), 1, "{access:?}");
    assert_eq!(access[0]["level"], "WARN", "{}", access[0]);
    assert_eq!(
        access[0]["message"],
        "GET /dl abandoned while sending its body"
    );
    assert_eq!(access[0]["http.response.status_code"], 200);

    let resp = svc
        .oneshot(Request::head("/dl").body(()).unwrap())
        .await
        .unwrap();
    let access = access_lines(&capture);
    assert_eq!(access.len(), 2, "{access:?}");
    assert_eq!(access[1]["message"], "HEAD /dl completed with 200");
    drop(resp);
    assert_eq!(access_lines(&capture).len(), 2);
}

/// The access lines once there are `n` of them (the server's task may finish after the
/// client has its response), or after 2 s whatever there is.
async fn access_lines_when(capture: &Capture, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        if access_lines(capture).len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    access_lines(capture)
}

/// The level and message of each access line, once there are `n` of them (see
/// [`access_lines_when`]).
async fn access_said(capture: &Capture, n: usize) -> Vec<(String, String)> {
    access_lines_when(capture, n)
        .await
        .iter()
        .map(|l| {
            let said = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
            (said("level"), said("message"))
        })
        .collect()
}

/// A download as axum's docs and tower-http's `ServeFile` send it, a streamed body with a
/// `content-length`, over a real HTTP/1.1 connection: hyper stops once that many bytes are out
/// and drops the body without asking it for its end. The line says the response completed.
#[tokio::test(flavor = "current_thread")]
async fn a_streamed_body_of_announced_length_sent_whole_is_completed() {
    let (capture, _g) = install("svc");
    let app = Router::new()
        .route(
            "/file",
            get(|| async {
                let chunks = futures_util::stream::iter([
                    Ok::<_, io::Error>(Bytes::from_static(b"hello ")),
                    Ok(Bytes::from_static(b"world")),
                ]);
                http::Response::builder()
                    .header("content-length", "11")
                    .body(axum::body::Body::from_stream(chunks))
                    .unwrap()
            }),
        )
        .route(
            "/empty",
            get(|| async {
                let none = futures_util::stream::iter(Vec::<Result<Bytes, io::Error>>::new());
                http::Response::builder()
                    .header("content-length", "0")
                    .body(axum::body::Body::from_stream(none))
                    .unwrap()
            }),
        )
        .layer(CorrelationLayer::new());
    let addr = serve(app).await;
    let (status, _, body) = get_with(
        addr,
        "/file",
        &[("x-correlation-id", "dl-1".parse().unwrap())],
    )
    .await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "hello world"));
    let (status, _, body) = get_with(addr, "/empty", &[]).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, ""));
    let access = access_lines_when(&capture, 2).await;
    assert_eq!(access.len(), 2, "{access:?}");
    assert_eq!(access[0]["correlationId"], "dl-1");
    assert_eq!(access[0]["level"], "INFO", "{}", access[0]);
    assert_eq!(access[0]["message"], "GET /file completed with 200");
    assert_eq!(access[1]["message"], "GET /empty completed with 200");
}

/// A plain HTTP response whose body ends with trailers, over a real HTTP/2 connection:
/// trailers are a body's last frame, and hyper drops the body once it has sent them. The line
/// says the response completed.
#[tokio::test(flavor = "current_thread")]
async fn a_body_ending_with_trailers_is_completed() {
    let (capture, _g) = install("svc");
    let svc = tower::Layer::layer(
        &CorrelationLayer::new(),
        tower::service_fn(|_req: Request<hyper::body::Incoming>| async {
            let mut trailers = HeaderMap::new();
            trailers.insert("x-checksum", HeaderValue::from_static("abc"));
            let frames = vec![
                Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from_static(
                    b"data",
                ))),
                Ok(http_body::Frame::trailers(trailers)),
            ];
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::StreamBody::new(
                futures_util::stream::iter(frames),
            )))
        }),
    );
    let addr = serve_h2_once(hyper_util::service::TowerToHyperService::new(svc)).await;
    let resp = h2_client()
        .request(
            Request::get(format!("http://{addr}/report"))
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["x-checksum"], "abc");
    assert_eq!(&collected.to_bytes()[..], b"data");
    let access = access_lines_when(&capture, 1).await;
    assert_eq!(access.len(), 1, "{access:?}");
    assert_eq!(access[0]["level"], "INFO", "{}", access[0]);
    assert_eq!(access[0]["message"], "GET /report completed with 200");
}

/// `traceline::http::access=warn` quiets the access log and keeps the request spans: the
/// handler's lines keep the caller's trace and correlation id, and calls out continue it.
#[tokio::test(flavor = "current_thread")]
async fn quieting_the_access_log_keeps_the_request_spans() {
    let capture = Capture::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(
            "info,traceline::http::access=warn",
        ))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("t")))
        .with(traceline::layer().with_writer(capture.clone()));
    let _g = tracing::subscriber::set_default(subscriber);
    let sent = Arc::new(Mutex::new(None::<HeaderMap>));
    let seen = sent.clone();
    let app = Router::new()
        .route(
            "/order",
            get(move || {
                let seen = seen.clone();
                async move {
                    tracing::info!("calling payments");
                    let transport = tower::service_fn(move |req: Request<()>| {
                        let seen = seen.clone();
                        async move {
                            *seen.lock().unwrap() = Some(req.headers().clone());
                            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
                        }
                    });
                    ServiceBuilder::new()
                        .layer(PropagateLayer::new())
                        .service(transport)
                        .oneshot(Request::new(()))
                        .await
                        .unwrap();
                    "ok"
                }
            }),
        )
        .layer(CorrelationLayer::new());
    let addr = serve(app).await;
    let tp = format!("00-{TRACE}-00f067aa0ba902b7-01");
    let (_, headers, _) = get_with(
        addr,
        "/order",
        &[
            ("traceparent", tp.parse().unwrap()),
            ("x-correlation-id", "order-9".parse().unwrap()),
        ],
    )
    .await;
    assert_eq!(headers["x-correlation-id"], "order-9");
    assert!(access_lines(&capture).is_empty());
    let line = capture
        .lines()
        .into_iter()
        .find(|l| l["message"] == "calling payments")
        .unwrap();
    assert_eq!(line["traceId"], TRACE, "{line}");
    assert_eq!(line["correlationId"], "order-9", "{line}");
    let sent = sent.lock().unwrap().clone().unwrap();
    assert!(
        sent.get("traceparent")
            .is_some_and(|v| v.to_str().unwrap().contains(TRACE)),
        "{sent:?}"
    );
}

/// A gRPC status sent in the trailers, after the messages, over real HTTP/2: recorded on the
/// request span and given by the call's access line, which waits for it; a stream that ends
/// without one says so.
#[tokio::test(flavor = "current_thread")]
async fn a_grpc_status_in_the_trailers_is_logged_when_the_body_ends() {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use tower::Layer as _;
    let (capture, exporter, provider, _g) = exporting_lines();
    let grpc = |status: Option<&'static str>| {
        tower::service_fn(move |_req: Request<hyper::body::Incoming>| async move {
            let mut frames = vec![Ok::<_, std::convert::Infallible>(Frame::data(
                Bytes::from_static(b"\0\0\0\0\0"),
            ))];
            if let Some(code) = status {
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", HeaderValue::from_static(code));
                frames.push(Ok(Frame::trailers(trailers)));
            }
            tracing::info!("streaming the reply");
            let body = StreamBody::new(futures_util::stream::iter(frames));
            let mut resp = http::Response::new(body);
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/grpc"));
            Ok::<_, std::convert::Infallible>(resp)
        })
    };
    for (path, status) in [
        ("/svc/Ok", Some("0")),
        ("/svc/Broken", Some("13")),
        ("/svc/Cut", None),
    ] {
        let svc = CorrelationLayer::new().layer(grpc(status));
        let addr = serve_h2_once(hyper_util::service::TowerToHyperService::new(svc)).await;
        let resp = h2_client()
            .request(
                Request::post(format!("http://{addr}{path}"))
                    .header("content-type", "application/grpc")
                    .body(Empty::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        let collected = resp.into_body().collect().await.unwrap();
        assert_eq!(
            collected
                .trailers()
                .and_then(|t| t.get("grpc-status"))
                .map(|v| v.to_str().unwrap()),
            status
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let access = access_lines(&capture);
    let said: Vec<(&str, &str)> = access
        .iter()
        .map(|l| (l["level"].as_str().unwrap(), l["message"].as_str().unwrap()))
        .collect();
    assert_eq!(
        said,
        [
            ("INFO", "POST /svc/Ok completed with grpc-status 0"),
            ("ERROR", "POST /svc/Broken failed with grpc-status 13"),
            ("WARN", "POST /svc/Cut ended without a gRPC status"),
        ]
    );
    // The reply was streamed inside the request span: its line has the request's ids.
    let streaming: Vec<Value> = capture
        .lines()
        .into_iter()
        .filter(|l| l["message"] == "streaming the reply")
        .collect();
    assert_eq!(streaming.len(), 3);
    for (line, access) in streaming.iter().zip(&access) {
        assert_eq!(line["spanId"], access["spanId"]);
    }
    let _ = provider.force_flush();
    let codes: Vec<_> = exporter
        .get_finished_spans()
        .unwrap()
        .iter()
        .filter(|s| s.span_kind == opentelemetry::trace::SpanKind::Server)
        .map(grpc_outcome)
        .collect();
    assert_eq!(
        codes,
        [
            (Some(opentelemetry::Value::I64(0)), false),
            (Some(opentelemetry::Value::I64(13)), true),
            (None, false),
        ]
    );
}

/// The client reads a gRPC status sent in the trailers, after the messages, over real HTTP/2:
/// recorded on the client span, which lasts until the body ends; a code other than OK marks it
/// as an error.
#[tokio::test(flavor = "current_thread")]
async fn the_client_records_a_grpc_status_in_the_trailers() {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let (exporter, provider, _guard) = exporting();
    for (done, code) in ["0", "14"].into_iter().enumerate() {
        let server =
            hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| async move {
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", HeaderValue::from_static(code));
                let frames = vec![
                    Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(
                        b"\0\0\0\0\0",
                    ))),
                    Ok(Frame::trailers(trailers)),
                ];
                let mut resp =
                    http::Response::new(StreamBody::new(futures_util::stream::iter(frames)));
                resp.headers_mut()
                    .insert("content-type", HeaderValue::from_static("application/grpc"));
                Ok::<_, std::convert::Infallible>(resp)
            });
        let addr = serve_h2_once(server).await;
        let client = ServiceBuilder::new()
            .layer(PropagateLayer::new())
            .service(h2_client());
        let resp = client
            .oneshot(
                Request::post(format!("http://{addr}/svc/Call"))
                    .header("content-type", "application/grpc")
                    .body(Empty::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        // Not ended yet: the body is still to be read.
        assert_eq!(client_spans(&exporter, &provider).len(), done);
        let collected = resp.into_body().collect().await.unwrap();
        assert!(collected.trailers().is_some());
        assert_eq!(client_spans(&exporter, &provider).len(), done + 1);
    }
    let statuses: Vec<_> = client_spans(&exporter, &provider)
        .iter()
        .map(grpc_outcome)
        .collect();
    assert_eq!(
        statuses,
        [
            (Some(opentelemetry::Value::I64(0)), false),
            (Some(opentelemetry::Value::I64(14)), true),
        ]
    );
}

/// A handler that panics (no catch-panic layer): one ERROR access line with the panic's
/// message and the request's ids, and the request span marked as an error; not "abandoned".
#[tokio::test(flavor = "current_thread")]
async fn a_panicking_handler_gets_an_error_access_line_with_the_panic() {
    let (capture, exporter, provider, _g) = exporting_lines();
    let app = Router::new()
        .route(
            "/panic",
            get(|| async {
                if std::hint::black_box(true) {
                    panic!("order table missing");
                }
                "unreachable"
            }),
        )
        .layer(CorrelationLayer::new());
    let addr = serve(app).await;
    let sent = client()
        .request(
            Request::get(format!("http://{addr}/panic"))
                .header("x-correlation-id", "boom-1")
                .body(Empty::new())
                .unwrap(),
        )
        .await;
    assert!(sent.is_err(), "the server closed the connection");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let access = access_lines(&capture);
    assert_eq!(access.len(), 1, "{access:?}");
    assert_eq!(access[0]["level"], "ERROR");
    assert_eq!(access[0]["message"], "GET /panic panicked");
    assert_eq!(access[0]["panic"], "order table missing");
    assert_eq!(access[0]["correlationId"], "boom-1");
    assert!(access[0]["traceId"].is_string());
    let _ = provider.force_flush();
    let server: Vec<_> = exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.span_kind == opentelemetry::trace::SpanKind::Server)
        .collect();
    assert_eq!(server.len(), 1);
    assert!(matches!(
        server[0].status,
        opentelemetry::trace::Status::Error { .. }
    ));
}

/// The edges of the server's response body: gRPC-Web (status inside the body) and HEAD (body
/// never read) are logged when the head is ready, not as missing their status; a body
/// unwrapped while its gRPC status is due says so; a body that fails part-way marks the
/// request span as an error; `ResponseBody` is `Default` (tower-http's `Cors` and `Timeout`
/// need it).
#[tokio::test(flavor = "current_thread")]
async fn the_server_bodys_edge_cases_are_logged_once_and_right() {
    use http_body_util::{Full, StreamBody};
    use hyper::body::Frame;
    use tower::Layer as _;
    fn default_body<T: Default>() -> T {
        T::default()
    }
    let _: traceline::http::ResponseBody<axum::body::Body> = default_body();

    let (capture, exporter, provider, _g) = exporting_lines();
    let answer = |content_type: &'static str| {
        CorrelationLayer::new().layer(tower::service_fn(move |_req: Request<()>| async move {
            let mut resp = http::Response::new(Full::new(Bytes::from_static(b"\0\0\0\0\0")));
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static(content_type));
            Ok::<_, std::convert::Infallible>(resp)
        }))
    };
    // gRPC-Web, read to the end.
    let resp = answer("application/grpc-web+proto")
        .oneshot(Request::post("/pkg.Svc/Get").body(()).unwrap())
        .await
        .unwrap();
    resp.into_body().collect().await.unwrap();
    // HEAD on a gRPC-typed route, body never read.
    let resp = answer("application/grpc")
        .oneshot(Request::head("/pkg.Svc/Get").body(()).unwrap())
        .await
        .unwrap();
    drop(resp);
    // gRPC, unwrapped before its trailers.
    let resp = answer("application/grpc")
        .oneshot(Request::post("/pkg.Svc/Unwrapped").body(()).unwrap())
        .await
        .unwrap();
    let _inner = resp.into_body().into_inner();
    let said: Vec<(String, String)> = access_lines(&capture)
        .iter()
        .map(|l| (l["level"].to_string(), l["message"].to_string()))
        .collect();
    let expected = [
        ("INFO", "POST /pkg.Svc/Get completed with 200"),
        ("INFO", "HEAD /pkg.Svc/Get completed with 200"),
        (
            "WARN",
            "POST /pkg.Svc/Unwrapped unwrapped before its gRPC status",
        ),
    ]
    .map(|(l, m)| (format!("\"{l}\""), format!("\"{m}\"")));
    assert_eq!(said, expected);

    // A plain body that fails part-way.
    let failing = CorrelationLayer::new().layer(tower::service_fn(|_req: Request<()>| async {
        let frames = vec![
            Ok(Frame::data(Bytes::from_static(b"part"))),
            Err(io::Error::other("disk read failed")),
        ];
        Ok::<_, std::convert::Infallible>(http::Response::new(StreamBody::new(
            futures_util::stream::iter(frames),
        )))
    }));
    let resp = failing
        .oneshot(Request::get("/download").body(()).unwrap())
        .await
        .unwrap();
    assert!(resp.into_body().collect().await.is_err());
    let _ = provider.force_flush();
    let spans = exporter.get_finished_spans().unwrap();
    let download = spans
        .iter()
        .find(|s| {
            s.attributes
                .iter()
                .any(|kv| kv.key.as_str() == "url.path" && kv.value.as_str() == "/download")
        })
        .expect("the request span ended");
    assert!(matches!(
        download.status,
        opentelemetry::trace::Status::Error { .. }
    ));
}

/// A service that panics in `call`, before it returns a future: the same ERROR access line
/// with the panic's message and the request's ids; the panic goes on.
#[tokio::test(flavor = "current_thread")]
async fn a_service_that_panics_in_call_gets_an_error_access_line() {
    use futures_util::FutureExt as _;
    use tower::Layer as _;
    let (capture, _g) = install("svc");
    let svc = CorrelationLayer::new().layer(tower::service_fn(|_req: Request<()>| {
        if std::hint::black_box(true) {
            panic!("bad config");
        }
        std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(
            String::new(),
        )))
    }));
    let req = Request::get("/p")
        .header("x-correlation-id", "boom-2")
        .body(())
        .unwrap();
    let outcome = std::panic::AssertUnwindSafe(svc.oneshot(req))
        .catch_unwind()
        .await;
    assert!(outcome.is_err(), "the panic goes on");
    let access = access_lines(&capture);
    assert_eq!(access.len(), 1, "{access:?}");
    assert_eq!(access[0]["level"], "ERROR");
    assert_eq!(access[0]["message"], "GET /p panicked");
    assert_eq!(access[0]["panic"], "bad config");
    assert_eq!(access[0]["correlationId"], "boom-2");
}

/// Baggage the application puts on an outgoing request is kept, and wins over the caller's
/// member of the same key; the caller's other members are added (not replaced by them).
#[tokio::test(flavor = "current_thread")]
async fn baggage_set_on_an_outgoing_request_is_merged_with_the_callers() {
    use tower::Layer as _;
    let (_exporter, _provider, _guard) = exporting();
    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let server = CorrelationLayer::new().layer(tower::service_fn(move |_req: Request<()>| {
        let record = record.clone();
        async move {
            let out = Request::get("http://payments/charge")
                .header("baggage", "tenant=acme,tier=silver")
                .body(())
                .unwrap();
            PropagateLayer::new()
                .layer(recording_client(record, StatusCode::OK))
                .oneshot(out)
                .await
                .unwrap();
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        }
    }));
    let incoming = Request::get("/orders")
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .header("baggage", "userId=alice,tier=gold")
        .body(())
        .unwrap();
    server.oneshot(incoming).await.unwrap();
    let headers = seen.lock().unwrap().clone().unwrap();
    let baggage = headers["baggage"].to_str().unwrap().to_owned();
    let members: Vec<&str> = baggage.split(',').collect();
    assert_eq!(
        members,
        ["tenant=acme", "tier=silver", "userId=alice"],
        "{baggage}"
    );
}

/// A handler that continues another trace (a queued message's, through the propagator, as
/// OpenTelemetry does it) sends that trace's `tracestate` with its `traceparent`, not the HTTP
/// caller's: a `tracestate` belongs to the trace it came with.
#[tokio::test(flavor = "current_thread")]
async fn a_trace_continued_in_a_handler_goes_out_with_its_own_tracestate() {
    use opentelemetry::propagation::TextMapPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    const REQUEST_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const MESSAGE_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    let (_capture, _g) = install("front");
    let downstream = serve(Router::new().route(
        "/echo",
        get(|h: HeaderMap| async move {
            let get = |k: &str| {
                h.get(k)
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            };
            format!("{}\n{}", get("traceparent"), get("tracestate"))
        }),
    ))
    .await;
    let call = |d: SocketAddr, continue_message: bool| async move {
        let span = tracing::info_span!("process message");
        if continue_message {
            let mut message = std::collections::HashMap::new();
            message.insert(
                "traceparent".to_owned(),
                format!("00-{MESSAGE_TRACE}-b7ad6b7169203331-01"),
            );
            message.insert("tracestate".to_owned(), "rojo=msg".to_owned());
            let cx =
                opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&message);
            span.set_parent(cx).unwrap();
        }
        async move {
            let mut client = ServiceBuilder::new()
                .layer(PropagateLayer::new())
                .service(client());
            let req = Request::get(format!("http://{d}/echo"))
                .body(Empty::new())
                .unwrap();
            let resp = client.ready().await.unwrap().call(req).await.unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            String::from_utf8(body.to_vec()).unwrap()
        }
        .instrument(span)
        .await
    };
    let front = serve(
        Router::new()
            .route(
                "/message",
                get(move |State(d): State<SocketAddr>| call(d, true)),
            )
            .route(
                "/request",
                get(move |State(d): State<SocketAddr>| call(d, false)),
            )
            .with_state(downstream)
            .layer(CorrelationLayer::new()),
    )
    .await;
    let caller = [
        (
            "traceparent",
            HeaderValue::from_str(&format!("00-{REQUEST_TRACE}-00f067aa0ba902b7-01")).unwrap(),
        ),
        ("tracestate", HeaderValue::from_static("congo=req")),
    ];
    let (_, _, body) = get_with(front, "/message", &caller).await;
    let (traceparent, tracestate) = body.split_once('\n').unwrap();
    assert!(traceparent.contains(MESSAGE_TRACE), "{traceparent}");
    assert_eq!(tracestate, "rojo=msg", "{traceparent}");
    // In the caller's own trace, the caller's `tracestate` still goes on.
    let (_, _, body) = get_with(front, "/request", &caller).await;
    let (traceparent, tracestate) = body.split_once('\n').unwrap();
    assert!(traceparent.contains(REQUEST_TRACE), "{traceparent}");
    assert_eq!(tracestate, "congo=req", "{traceparent}");
}

/// Serves one HTTP/1.1 connection on loopback with the hyper service `svc` (upgrades on, as
/// `axum::serve` and a forward proxy have them); returns its address.
async fn serve_h1_upgradable_once<S, B>(svc: S) -> SocketAddr
where
    S: hyper::service::Service<Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    accept_once(|io| async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .with_upgrades()
            .await;
    })
    .await
}

/// A 2xx answer to CONNECT has no body in HTTP/1.1 (RFC 9110 §9.3.6): hyper sends the head
/// and drops the body unread, as it does for HEAD, 1xx, 204 and 304. The tunnel was opened,
/// so the access line says the request completed, not that the client went away. Its target
/// names an authority, not a path: the span has no `url.path` (not an empty one).
#[tokio::test(flavor = "current_thread")]
async fn a_2xx_answer_to_connect_is_completed_not_abandoned() {
    use tower::Layer as _;
    let (capture, _g) = install("svc");
    let svc = CorrelationLayer::new().layer(tower::service_fn(
        |_req: Request<hyper::body::Incoming>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                Bytes::from_static(b"tunnel open"),
            )))
        },
    ));
    let addr = serve_h1_upgradable_once(hyper_util::service::TowerToHyperService::new(svc)).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.contains("tunnel open"), "hyper sends no body: {head}");
    let access = access_lines_when(&capture, 1).await;
    drop(s);
    assert_eq!(access.len(), 1, "{access:?}");
    assert_eq!(
        (
            access[0]["level"].as_str(),
            access[0]["message"].as_str(),
            access[0]["http.response.status_code"].as_u64()
        ),
        (
            Some("INFO"),
            Some("CONNECT example.com:443 completed with 200"),
            Some(200)
        ),
        "{}",
        access[0]
    );
    assert!(access[0].get("url.path").is_none(), "{}", access[0]);
}

/// A handler that streams its body and panics part-way (a `Body::from_stream` whose stream
/// panics): a server fault like a handler that panics, so one ERROR access line with the
/// panic's message and an error span; not a WARN saying that the client went away.
#[tokio::test(flavor = "current_thread")]
async fn a_body_that_panics_part_way_gets_an_error_access_line() {
    use futures_util::StreamExt as _;
    let (capture, exporter, provider, _g) = exporting_lines();
    let app = Router::new()
        .route(
            "/export",
            get(|| async {
                let rows = futures_util::stream::iter(0..2).then(|i| async move {
                    if i == 1 {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        if std::hint::black_box(true) {
                            panic!("row decoder broke");
                        }
                    }
                    Ok::<_, io::Error>(Bytes::from_static(b"row\n"))
                });
                axum::body::Body::from_stream(rows)
            }),
        )
        .layer(CorrelationLayer::new());
    let addr = serve(app).await;
    let resp = client()
        .request(
            Request::get(format!("http://{addr}/export"))
                .header("x-correlation-id", "boom-3")
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.into_body().collect().await.is_err(),
        "the body was cut"
    );
    let access = access_lines_when(&capture, 1).await;
    assert_eq!(access.len(), 1, "{access:?}");
    assert_eq!(access[0]["correlationId"], "boom-3");
    assert_eq!(
        (access[0]["level"].as_str(), access[0]["message"].as_str()),
        (Some("ERROR"), Some("GET /export panicked")),
        "{}",
        access[0]
    );
    assert_eq!(access[0]["panic"], "row decoder broke");
    let _ = provider.force_flush();
    let server: Vec<_> = exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.span_kind == opentelemetry::trace::SpanKind::Server)
        .collect();
    assert_eq!(server.len(), 1);
    assert!(
        matches!(server[0].status, opentelemetry::trace::Status::Error { .. }),
        "{:?}",
        server[0].status
    );
}

/// A gRPC reply whose trailers carry no `grpc-status` (a proxy or a broken handler that sent
/// other trailers) ended without a gRPC status, as one whose stream ends without trailers
/// does: the client reads it as a failed call. Not "completed with 200".
#[tokio::test(flavor = "current_thread")]
async fn grpc_trailers_without_a_status_are_not_a_success() {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use tower::Layer as _;
    let (capture, _g) = install("svc");
    let svc = CorrelationLayer::new().layer(tower::service_fn(
        |_req: Request<hyper::body::Incoming>| async {
            let mut trailers = HeaderMap::new();
            trailers.insert("x-server-load", HeaderValue::from_static("0.3"));
            let frames = vec![
                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
                Ok(Frame::trailers(trailers)),
            ];
            let mut resp = http::Response::new(StreamBody::new(futures_util::stream::iter(frames)));
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/grpc"));
            Ok::<_, std::convert::Infallible>(resp)
        },
    ));
    let addr = serve_h2_once(hyper_util::service::TowerToHyperService::new(svc)).await;
    let resp = h2_client()
        .request(
            Request::post(format!("http://{addr}/svc/NoStatus"))
                .header("content-type", "application/grpc")
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let collected = resp.into_body().collect().await.unwrap();
    assert!(collected.trailers().unwrap().get("grpc-status").is_none());
    assert_eq!(
        access_said(&capture, 1).await,
        [(
            "WARN".to_owned(),
            "POST /svc/NoStatus ended without a gRPC status".to_owned()
        )]
    );
}

/// Over HTTP/2 hyper keeps polling a body after the bytes its `content-length` announced,
/// until its end: a body that then fails makes hyper reset the stream, and the client gets
/// an error, not the response. The access line must not say it completed.
#[tokio::test(flavor = "current_thread")]
async fn h2_body_failing_after_its_announced_length_is_not_completed() {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use tower::Layer as _;
    let (capture, _g) = install("svc");
    let svc = CorrelationLayer::new().layer(tower::service_fn(
        |_req: Request<hyper::body::Incoming>| async {
            use futures_util::StreamExt as _;
            let frames = futures_util::stream::iter(0..2).then(|i| async move {
                if i == 0 {
                    return Ok::<_, io::Error>(Frame::data(Bytes::from_static(b"data")));
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                Err(io::Error::other("checksum mismatch"))
            });
            let resp = http::Response::builder()
                .header("content-length", "4")
                .body(StreamBody::new(frames))
                .unwrap();
            Ok::<_, std::convert::Infallible>(resp)
        },
    ));
    let addr = serve_h2_once(hyper_util::service::TowerToHyperService::new(svc)).await;
    body_fails(
        &h2_client(),
        Request::get(format!("http://{addr}/blob"))
            .body(Empty::new())
            .unwrap(),
    )
    .await;
    assert_eq!(
        access_said(&capture, 1).await,
        [(
            "ERROR".to_owned(),
            "GET /blob failed while sending its body".to_owned()
        )]
    );
}

/// The client span ends when the response body ends (its last frame read), not when the
/// caller happens to drop the body value: "keeps the client span open until the body ends
/// (the span's duration is the whole exchange)".
#[tokio::test(flavor = "current_thread")]
async fn the_client_span_ends_when_the_response_body_ends() {
    let (exporter, provider, _g) = exporting();
    let addr = serve(Router::new().route("/data", get(|| async { "payload" }))).await;
    let client = ServiceBuilder::new()
        .layer(PropagateLayer::new())
        .service(client());
    let resp = client
        .oneshot(
            Request::get(format!("http://{addr}/data"))
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = resp.into_body();
    let mut read = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            read.extend_from_slice(&data);
        }
    }
    assert_eq!(read, b"payload");
    // The body is at its end; the value is still held (as a response kept for later is).
    assert_eq!(
        client_spans(&exporter, &provider).len(),
        1,
        "the exchange is over, the client span should have ended"
    );
    drop(body);
}

/// A transport whose response future panics: the client span is marked as an error, as the
/// server side marks its request span for a handler that panics, and the panic goes on.
#[tokio::test(flavor = "current_thread")]
async fn a_transport_that_panics_marks_the_client_span_as_an_error() {
    use futures_util::FutureExt as _;
    use tower::Layer as _;
    let (exporter, provider, _g) = exporting();
    let client = PropagateLayer::new().layer(tower::service_fn(|_req: Request<()>| async {
        if std::hint::black_box(true) {
            panic!("connection pool poisoned");
        }
        Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    }));
    let sent = std::panic::AssertUnwindSafe(client.oneshot(Request::new(())))
        .catch_unwind()
        .await;
    assert!(sent.is_err(), "the panic goes on");
    assert_one_failed_client_span(&exporter, &provider);
}

/// A transport that panics in `call` (before any future): the same.
#[tokio::test(flavor = "current_thread")]
async fn a_transport_that_panics_in_call_marks_the_client_span_as_an_error() {
    #[derive(Clone)]
    struct Boom;
    impl Service<Request<()>> for Boom {
        type Response = http::Response<String>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<()>) -> Self::Future {
            panic!("no connection slot");
        }
    }
    use tower::Layer as _;
    let (exporter, provider, _g) = exporting();
    let mut client = PropagateLayer::new().layer(Boom);
    let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        client.call(Request::new(()))
    }));
    assert!(called.is_err(), "the panic goes on");
    assert_one_failed_client_span(&exporter, &provider);
}

/// A response body that panics part-way: the client span is marked as an error.
#[tokio::test(flavor = "current_thread")]
async fn a_response_body_that_panics_marks_the_client_span_as_an_error() {
    use futures_util::FutureExt as _;
    use futures_util::StreamExt as _;
    use tower::Layer as _;
    let (exporter, provider, _g) = exporting();
    let client = PropagateLayer::new().layer(tower::service_fn(|_req: Request<()>| async {
        let frames = futures_util::stream::iter(0..2).map(|i| {
            if i == 1 && std::hint::black_box(true) {
                panic!("decoder broke");
            }
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from_static(b"x")))
        });
        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::StreamBody::new(
            frames,
        )))
    }));
    let resp = client.oneshot(Request::new(())).await.unwrap();
    let read = std::panic::AssertUnwindSafe(resp.into_body().collect())
        .catch_unwind()
        .await;
    assert!(read.is_err(), "the panic goes on");
    assert_one_failed_client_span(&exporter, &provider);
}

/// A response whose body is at its end from the start (204 No Content: `is_end_stream()` is
/// true before any frame is read, and callers do not read it): the exchange is over when the
/// response arrives, so the client span ends then, not when the caller drops the response.
#[tokio::test(flavor = "current_thread")]
async fn the_client_span_of_an_empty_response_ends_with_the_response() {
    use http_body::Body as _;
    let (exporter, provider, _g) = exporting();
    let addr = serve(Router::new().route("/gone", get(|| async { StatusCode::NO_CONTENT }))).await;
    let client = ServiceBuilder::new()
        .layer(PropagateLayer::new())
        .service(client());
    let resp = client
        .oneshot(
            Request::get(format!("http://{addr}/gone"))
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(resp.body().is_end_stream(), "the body is at its end");
    // The response is kept (as a response kept for later is).
    assert_eq!(
        client_spans(&exporter, &provider).len(),
        1,
        "the exchange is over, the client span should have ended"
    );
    drop(resp);
}

/// A body that ends before the `content-length` it announced: over HTTP/1 hyper closes the
/// connection, over HTTP/2 the client resets the stream; either way the client gets an error,
/// not the response. The access line must not say it completed.
#[tokio::test(flavor = "current_thread")]
async fn a_body_shorter_than_its_announced_length_is_not_completed() {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use tower::Layer as _;
    let (capture, _g) = install("svc");
    let svc = CorrelationLayer::new().layer(tower::service_fn(
        |_req: Request<hyper::body::Incoming>| async {
            let frames = futures_util::stream::iter([Ok::<_, io::Error>(Frame::data(
                Bytes::from_static(b"data"),
            ))]);
            let resp = http::Response::builder()
                .header("content-length", "10")
                .body(StreamBody::new(frames))
                .unwrap();
            Ok::<_, std::convert::Infallible>(resp)
        },
    ));
    let h1 = accept_once({
        let svc = svc.clone();
        |io| async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, hyper_util::service::TowerToHyperService::new(svc))
                .await;
        }
    })
    .await;
    let got = async {
        let resp = client()
            .request(
                Request::get(format!("http://{h1}/h1"))
                    .body(Empty::new())
                    .unwrap(),
            )
            .await
            .map_err(|e| e.to_string())?;
        resp.into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| e.to_string())
    }
    .await;
    assert!(got.is_err(), "the client saw the failure: {got:?}");

    let h2 = serve_h2_once(hyper_util::service::TowerToHyperService::new(svc)).await;
    body_fails(
        &h2_client(),
        Request::get(format!("http://{h2}/h2"))
            .body(Empty::new())
            .unwrap(),
    )
    .await;

    assert_eq!(
        access_said(&capture, 2).await,
        [
            (
                "ERROR".to_owned(),
                "GET /h1 failed while sending its body".to_owned()
            ),
            (
                "ERROR".to_owned(),
                "GET /h2 failed while sending its body".to_owned()
            ),
        ]
    );
}

/// Over HTTP/2, bytes past the announced `content-length` make the response malformed: the
/// client resets the stream and never gets it. The access line must not say it completed.
#[tokio::test(flavor = "current_thread")]
async fn h2_body_longer_than_its_announced_length_is_not_completed() {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use tower::Layer as _;
    let (capture, _g) = install("svc");
    let svc = CorrelationLayer::new().layer(tower::service_fn(
        |req: Request<hyper::body::Incoming>| async move {
            let frames = futures_util::stream::iter([
                Ok::<_, io::Error>(Frame::data(Bytes::from_static(b"data"))),
                Ok(Frame::data(Bytes::from_static(b"more"))),
            ]);
            let announced = if req.uri().path() == "/zero" {
                "0"
            } else {
                "4"
            };
            let resp = http::Response::builder()
                .header("content-length", announced)
                .body(StreamBody::new(frames))
                .unwrap();
            Ok::<_, std::convert::Infallible>(resp)
        },
    ));
    let addr = serve_h2_once(hyper_util::service::TowerToHyperService::new(svc)).await;
    let client = h2_client();
    for path in ["/blob", "/zero"] {
        body_fails(
            &client,
            Request::get(format!("http://{addr}{path}"))
                .body(Empty::new())
                .unwrap(),
        )
        .await;
    }
    assert_eq!(
        access_said(&capture, 2).await,
        [
            (
                "ERROR".to_owned(),
                "GET /blob failed while sending its body".to_owned()
            ),
            (
                "ERROR".to_owned(),
                "GET /zero failed while sending its body".to_owned()
            ),
        ]
    );
}

/// A gRPC answer with neither a status in its headers nor a body: hyper ends the stream with
/// the head, and no trailers follow. The call ended without a status (the client did not go
/// away), and the access line says so.
#[tokio::test(flavor = "current_thread")]
async fn a_grpc_answer_ending_with_its_head_without_a_status_says_so() {
    use tower::Layer as _;
    let (capture, _g) = install("svc");
    let svc = CorrelationLayer::new().layer(tower::service_fn(
        |_req: Request<hyper::body::Incoming>| async {
            let mut resp = http::Response::new(Empty::<Bytes>::new());
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/grpc"));
            Ok::<_, std::convert::Infallible>(resp)
        },
    ));
    let addr = serve_h2_once(hyper_util::service::TowerToHyperService::new(svc)).await;
    let resp = h2_client()
        .request(
            Request::post(format!("http://{addr}/svc/Empty"))
                .header("content-type", "application/grpc")
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let collected = resp.into_body().collect().await.unwrap();
    assert!(collected.trailers().is_none());
    assert_eq!(
        access_said(&capture, 1).await,
        [(
            "WARN".to_owned(),
            "POST /svc/Empty ended without a gRPC status".to_owned()
        )]
    );
}

/// Over HTTP/2 a head that ends the stream while announcing a `content-length` other than 0
/// is malformed (RFC 9113 §8.1.1): the client resets the stream and never gets the response.
/// The access line must not say it completed.
#[tokio::test(flavor = "current_thread")]
async fn h2_head_ending_the_stream_with_a_nonzero_length_is_not_completed() {
    use tower::Layer as _;
    let (capture, _g) = install("svc");
    let svc = CorrelationLayer::new().layer(tower::service_fn(
        |_req: Request<hyper::body::Incoming>| async {
            let resp = http::Response::builder()
                .header("content-length", "4")
                .body(Empty::<Bytes>::new())
                .unwrap();
            Ok::<_, std::convert::Infallible>(resp)
        },
    ));
    let addr = serve_h2_once(hyper_util::service::TowerToHyperService::new(svc)).await;
    let got = h2_client()
        .request(
            Request::get(format!("http://{addr}/gone"))
                .body(Empty::new())
                .unwrap(),
        )
        .await;
    assert!(got.is_err(), "the client saw the failure: {got:?}");
    assert_eq!(
        access_said(&capture, 1).await,
        [(
            "ERROR".to_owned(),
            "GET /gone failed while sending its body".to_owned()
        )]
    );
}

/// A gRPC answer whose messages are shorter than the `content-length` it announced, then
/// trailers with a status: over HTTP/2 the client resets the stream at the trailers and the
/// call fails. The access line must not say it completed.
#[tokio::test(flavor = "current_thread")]
async fn a_grpc_answer_shorter_than_its_announced_length_is_not_completed() {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use tower::Layer as _;
    let (capture, _g) = install("svc");
    let svc = CorrelationLayer::new().layer(tower::service_fn(
        |_req: Request<hyper::body::Incoming>| async {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let frames = vec![
                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
                Ok(Frame::trailers(trailers)),
            ];
            let resp = http::Response::builder()
                .header("content-type", "application/grpc")
                .header("content-length", "10")
                .body(StreamBody::new(futures_util::stream::iter(frames)))
                .unwrap();
            Ok::<_, std::convert::Infallible>(resp)
        },
    ));
    let addr = serve_h2_once(hyper_util::service::TowerToHyperService::new(svc)).await;
    body_fails(
        &h2_client(),
        Request::post(format!("http://{addr}/svc/Short"))
            .header("content-type", "application/grpc")
            .body(Empty::new())
            .unwrap(),
    )
    .await;
    assert_eq!(
        access_said(&capture, 1).await,
        [(
            "ERROR".to_owned(),
            "POST /svc/Short failed while sending its body".to_owned()
        )]
    );
}

/// A body that says it has ended, and whose size hint alone gives a length of 4: over HTTP/2
/// the head ends the stream without a `content-length` (the server takes the length from the
/// size hint only for a body still to come), and the client gets the response. The access
/// line says it completed.
#[tokio::test(flavor = "current_thread")]
async fn h2_head_ending_the_stream_without_a_length_header_is_completed_whatever_the_size_hint() {
    use tower::Layer as _;
    struct EndedWithAHint;
    impl http_body::Body for EndedWithAHint {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Ready(None)
        }
        fn is_end_stream(&self) -> bool {
            true
        }
        fn size_hint(&self) -> http_body::SizeHint {
            http_body::SizeHint::with_exact(4)
        }
    }
    let (capture, _g) = install("svc");
    let svc = CorrelationLayer::new().layer(tower::service_fn(
        |_req: Request<hyper::body::Incoming>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(EndedWithAHint))
        },
    ));
    let addr = serve_h2_once(hyper_util::service::TowerToHyperService::new(svc)).await;
    let resp = h2_client()
        .request(
            Request::get(format!("http://{addr}/hinted"))
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("content-length").is_none());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
    assert_eq!(
        access_said(&capture, 1).await,
        [(
            "INFO".to_owned(),
            "GET /hinted completed with 200".to_owned()
        )]
    );
}

/// A call dropped before its answer (a timeout around it) over a real connection: the client
/// span is marked as an error, `error.type = "cancelled"`; a call answered in time is not.
#[tokio::test(flavor = "current_thread")]
async fn a_client_call_cancelled_before_its_answer_marks_the_client_span() {
    let (exporter, provider, _g) = exporting();
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                "late"
            }),
        )
        .route("/fast", get(|| async { "now" }));
    let addr = serve(app).await;
    let client = ServiceBuilder::new()
        .layer(PropagateLayer::new())
        .service(client());
    let get = |path: &str| {
        Request::get(format!("http://{addr}{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let fast = client.clone().oneshot(get("/fast")).await.unwrap();
    drop(fast);
    let slow = tokio::time::timeout(
        std::time::Duration::from_millis(100),
        client.oneshot(get("/slow")),
    )
    .await;
    assert!(slow.is_err(), "timed out");
    let spans = client_spans(&exporter, &provider);
    let outcome: Vec<(bool, Option<String>)> = spans
        .iter()
        .map(|s| {
            (
                matches!(s.status, opentelemetry::trace::Status::Error { .. }),
                s.attributes
                    .iter()
                    .find(|kv| kv.key.as_str() == "error.type")
                    .map(|kv| kv.value.to_string()),
            )
        })
        .collect();
    assert_eq!(
        outcome,
        [(false, None), (true, Some("cancelled".to_owned()))],
        "{spans:#?}"
    );
}

/// A handler that answers an interim status (103, 100) as its response: the client gets a 500
/// (hyper sends one in its place over HTTP/1), and the access line and the span say the
/// request failed, not that it completed with 103. 101 (an upgrade) stays a final answer.
#[tokio::test(flavor = "current_thread")]
async fn an_interim_status_as_the_response_is_logged_as_a_failure() {
    let (capture, exporter, provider, _g) = exporting_lines();
    let app = Router::new()
        .route(
            "/hint",
            get(|| async { StatusCode::from_u16(103).unwrap() }),
        )
        .route("/continue", get(|| async { StatusCode::CONTINUE }))
        .layer(CorrelationLayer::new());
    let addr = serve(app).await;
    for (path, code) in [("/hint", 103), ("/continue", 100)] {
        let (status, _, _) = get_with(addr, path, &[]).await;
        assert_eq!(status, 500, "{path}: what the client gets");
        let access = capture
            .lines()
            .into_iter()
            .find(|l| {
                l["target"] == "traceline::http::access"
                    && l["message"].as_str().is_some_and(|m| m.contains(path))
            })
            .unwrap_or_else(|| panic!("no access line for {path}: {}", capture.text()));
        assert_eq!(access["level"], "ERROR", "{access}");
        assert_eq!(access["http.response.status_code"], code, "{access}");
        assert!(
            access["message"]
                .as_str()
                .unwrap()
                .contains("interim status"),
            "{access}"
        );
        assert!(server_span_failed(&exporter, &provider, path), "{path}");
    }
}

/// The finished spans of `provider`'s exporter once `n` have ended (the server span ends when
/// the server drops the response body, after the client has it).
async fn finished_spans(
    exporter: &opentelemetry_sdk::trace::InMemorySpanExporter,
    provider: &opentelemetry_sdk::trace::SdkTracerProvider,
    n: usize,
) -> Vec<opentelemetry_sdk::trace::SpanData> {
    let mut spans = Vec::new();
    for _ in 0..200 {
        let _ = provider.force_flush();
        spans = exporter.get_finished_spans().unwrap();
        if spans.len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    spans
}

fn span_attr(span: &opentelemetry_sdk::trace::SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// The route a nested router's layer knows names the exported span, not only its
/// `http.route`: the outer span is already started when the inner layer sees the request.
#[tokio::test(flavor = "current_thread")]
async fn a_nested_routers_route_names_the_exported_span() {
    let (exporter, provider, _g) = exporting();
    let orders = Router::new()
        .route("/orders/{id}", get(|| async { "ok" }))
        .layer(
            CorrelationLayer::new()
                .route(|ext| ext.get::<axum::extract::MatchedPath>().map(|m| m.as_str())),
        );
    let app = Router::new()
        .nest("/api", orders)
        .layer(CorrelationLayer::new());
    let addr = serve(app).await;
    let (status, _, _) = get_with(addr, "/api/orders/7", &[]).await;
    assert_eq!(status, 200);
    let spans = finished_spans(&exporter, &provider, 1).await;
    let server = spans
        .iter()
        .find(|s| s.span_kind == opentelemetry::trace::SpanKind::Server)
        .expect("the server span was exported");
    assert_eq!(
        span_attr(server, "http.route").as_deref(),
        Some("/api/orders/{id}")
    );
    assert_eq!(server.name, "GET /api/orders/{id}");
}

/// A method the conventions do not know is `_OTHER` on the server's and the client's spans,
/// with the method itself in `http.request.method_original`, and names them `HTTP`: a
/// caller cannot make up span names. The access line keeps the method as sent.
#[tokio::test(flavor = "current_thread")]
async fn an_unknown_method_is_recorded_as_other_on_both_spans() {
    let (capture, exporter, provider, _g) = exporting_lines();
    let app = Router::new()
        .fallback(|| async { "ok" })
        .layer(CorrelationLayer::new());
    let addr = serve(app).await;
    let client = ServiceBuilder::new()
        .layer(PropagateLayer::new())
        .service(client());
    let req = Request::builder()
        .method(http::Method::from_bytes(b"FOOBAR").unwrap())
        .uri(format!("http://{addr}/x"))
        .body(Empty::new())
        .unwrap();
    let resp = client.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();
    let spans = finished_spans(&exporter, &provider, 2).await;
    assert_eq!(spans.len(), 2, "a server and a client span: {spans:?}");
    for span in &spans {
        let kind = &span.span_kind;
        assert_eq!(
            span_attr(span, "http.request.method").as_deref(),
            Some("_OTHER"),
            "{kind:?}"
        );
        assert_eq!(
            span_attr(span, "http.request.method_original").as_deref(),
            Some("FOOBAR"),
            "{kind:?}"
        );
        assert_eq!(span.name, "HTTP", "{kind:?}");
    }
    let access = access_lines(&capture);
    assert_eq!(access.len(), 1, "{access:?}");
    assert!(
        access[0]["message"].as_str().unwrap().contains("FOOBAR"),
        "{}",
        access[0]
    );
    // A known method is recorded as it is, with no `method_original`.
    let (status, _, _) = get_with(addr, "/y", &[]).await;
    assert_eq!(status, 200);
    let spans = finished_spans(&exporter, &provider, 3).await;
    let get = spans.last().unwrap();
    assert_eq!(
        span_attr(get, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(span_attr(get, "http.request.method_original"), None);
    assert_eq!(get.name, "GET");
}

/// `known_methods` replaces the list: a method added is named as it is (with the route), one
/// left out becomes `_OTHER`.
#[tokio::test(flavor = "current_thread")]
async fn known_methods_replace_the_default_list() {
    let (exporter, provider, _g) = exporting();
    let purge = http::Method::from_bytes(b"PURGE").unwrap();
    let app = Router::new()
        .route("/items/{id}", axum::routing::any(|| async { "ok" }))
        .layer(
            CorrelationLayer::new()
                .known_methods([purge.clone()])
                .route(|ext| ext.get::<axum::extract::MatchedPath>().map(|m| m.as_str())),
        );
    let addr = serve(app).await;
    let client = ServiceBuilder::new()
        .layer(PropagateLayer::new().known_methods([purge.clone()]))
        .service(client());
    for method in [purge.clone(), http::Method::GET] {
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}/items/3"))
            .body(Empty::new())
            .unwrap();
        let resp = client.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap();
    }
    let spans = finished_spans(&exporter, &provider, 4).await;
    assert_eq!(spans.len(), 4, "{spans:?}");
    let names: Vec<(String, Option<String>, Option<String>)> = spans
        .iter()
        .map(|s| {
            (
                s.name.to_string(),
                span_attr(s, "http.request.method"),
                span_attr(s, "http.request.method_original"),
            )
        })
        .collect();
    let named = |name: &str, method: &str, original: Option<&str>| {
        names
            .iter()
            .any(|(n, m, o)| n == name && m.as_deref() == Some(method) && o.as_deref() == original)
    };
    assert!(named("PURGE /items/{id}", "PURGE", None), "{names:?}");
    assert!(named("PURGE", "PURGE", None), "{names:?}");
    assert!(
        named("HTTP /items/{id}", "_OTHER", Some("GET")),
        "{names:?}"
    );
    assert!(named("HTTP", "_OTHER", Some("GET")), "{names:?}");
}

/// `PropagateLayer` called from a span the OpenTelemetry layer does not see (its filter hides
/// DEBUG spans), in a task spawned inside it, sends the caller's trace with its `tracestate`
/// and `baggage`, as `inject` does from the same span: not a trace of its own.
#[tokio::test(flavor = "current_thread")]
async fn propagate_layer_in_a_span_hidden_from_opentelemetry_sends_the_callers_trace() {
    use tracing_subscriber::filter::LevelFilter;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("t"))
                .with_filter(LevelFilter::INFO),
        )
        .with(traceline::layer().with_writer(std::io::sink));
    let _g = tracing::subscriber::set_default(subscriber);
    // Answers with the trace headers it received.
    let downstream = serve(Router::new().route(
        "/echo",
        get(|h: HeaderMap| async move {
            let get = |k: &str| {
                h.get(k)
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            };
            format!(
                "{}|{}|{}",
                get("traceparent"),
                get("tracestate"),
                get("baggage")
            )
        }),
    ))
    .await;
    let upstream = serve(
        Router::new()
            .route(
                "/work",
                get(move || {
                    async move {
                        tokio::spawn(
                            async move {
                                let mut injected = HeaderMap::new();
                                traceline::http::inject(&mut injected);
                                let client = ServiceBuilder::new()
                                    .layer(PropagateLayer::new())
                                    .service(client());
                                let req = Request::get(format!("http://{downstream}/echo"))
                                    .body(Empty::new())
                                    .unwrap();
                                let resp = client.oneshot(req).await.unwrap();
                                let body = resp.into_body().collect().await.unwrap().to_bytes();
                                format!(
                                    "{}\n{}",
                                    injected["traceparent"].to_str().unwrap(),
                                    String::from_utf8_lossy(&body)
                                )
                            }
                            .in_current_span(),
                        )
                        .await
                        .unwrap()
                    }
                    .instrument(tracing::debug_span!("work"))
                }),
            )
            .layer(CorrelationLayer::new()),
    )
    .await;
    let (status, _, body) = get_with(
        upstream,
        "/work",
        &[
            (
                "traceparent",
                format!("00-{TRACE}-00f067aa0ba902b7-01").parse().unwrap(),
            ),
            ("tracestate", "rojo=00f067aa0ba902b7".parse().unwrap()),
            ("baggage", "userId=alice".parse().unwrap()),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let (injected, sent) = body.split_once('\n').unwrap();
    assert!(injected.contains(TRACE), "inject: {injected}");
    let mut sent = sent.split('|');
    let (traceparent, tracestate, baggage) = (
        sent.next().unwrap(),
        sent.next().unwrap(),
        sent.next().unwrap(),
    );
    assert!(
        traceparent.contains(TRACE),
        "PropagateLayer sent another trace: {traceparent} (inject sent {injected})"
    );
    assert_eq!(tracestate, "rojo=00f067aa0ba902b7");
    assert_eq!(baggage, "userId=alice");
}

/// The baggage members the application put in a request itself are kept, their values
/// percent-encoded where they hold what a baggage value cannot (a space, a non-ASCII letter),
/// with the caller's baggage and without it; the caller's members of other keys are added.
#[test]
fn inject_keeps_the_applications_own_baggage_members_percent_encoded() {
    let send = |incoming: HeaderMap, own: &str| {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("t")))
            .with(traceline::layer().with_writer(std::io::sink));
        tracing::subscriber::with_default(subscriber, || {
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            let span = tracing::info_span!("request");
            span.set_parent(traceline::http::trace_context::extract(&incoming).unwrap())
                .unwrap();
            let _e = span.enter();
            let mut out = HeaderMap::new();
            out.insert("baggage", HeaderValue::from_bytes(own.as_bytes()).unwrap());
            traceline::http::inject(&mut out);
            out.get("baggage")
                .map(|v| String::from_utf8(v.as_bytes().to_vec()).unwrap())
        })
    };
    let mut with_baggage = HeaderMap::new();
    with_baggage.insert(
        "traceparent",
        HeaderValue::from_str(&format!("00-{TRACE}-00f067aa0ba902b7-01")).unwrap(),
    );
    with_baggage.insert(
        "baggage",
        HeaderValue::from_static("userId=alice,tier=bronze"),
    );
    let mut without_baggage = with_baggage.clone();
    without_baggage.remove("baggage");
    let own = "note=hello world,city=Zürich;src=app x,tier=gold silver";
    let merged = send(with_baggage.clone(), own).unwrap();
    assert_eq!(
        merged,
        "note=hello%20world,city=Z%C3%BCrich;src=app%20x,tier=gold%20silver,userId=alice"
    );
    let alone = send(without_baggage, own).unwrap();
    assert_eq!(
        alone,
        "note=hello%20world,city=Z%C3%BCrich;src=app%20x,tier=gold%20silver"
    );
    // A member whose key is not a token cannot be repaired: it is dropped, and a caller's
    // member is still added; with nothing valid left, no header at all.
    assert_eq!(
        send(with_baggage, "bad key=1").unwrap(),
        "userId=alice,tier=bronze"
    );
    let mut only_trace = HeaderMap::new();
    only_trace.insert(
        "traceparent",
        HeaderValue::from_str(&format!("00-{TRACE}-00f067aa0ba902b7-01")).unwrap(),
    );
    // A `%` that starts no escape is a literal one, and W3C Baggage says it must be encoded
    // (else the next service decodes another value, or drops the member); an escape the
    // application wrote itself is kept.
    assert_eq!(
        send(
            only_trace.clone(),
            "discount=100%,note=a b%zz;p=5%,done=a%20b%2,tail=%"
        )
        .unwrap(),
        "discount=100%25,note=a%20b%25zz;p=5%25,done=a%20b%252,tail=%25"
    );
    assert_eq!(send(only_trace, "bad key=1"), None);
}

/// A request sent from a span hidden from the OpenTelemetry layer, with no tracked ancestor,
/// under a remote context the code attached: the client span continues that attached trace,
/// as the OpenTelemetry layer has it.
#[test]
fn a_client_span_keeps_the_attached_remote_parent_when_sent_from_an_untracked_span() {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    };
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("t"))
        .with_filter(tracing_subscriber::filter::filter_fn(|m| {
            m.target() != "hidden"
        }));
    let subscriber = tracing_subscriber::registry()
        .with(otel)
        .with(traceline::layer().with_writer(std::io::sink));
    let _g = tracing::subscriber::set_default(subscriber);
    let remote = SpanContext::new(
        TraceId::from_hex(TRACE).unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let _cx = opentelemetry::Context::new()
        .with_remote_span_context(remote)
        .attach();
    let _hidden = tracing::info_span!(target: "hidden", "consume").entered();
    let seen: Arc<Mutex<Option<HeaderMap>>> = Arc::default();
    let seen2 = seen.clone();
    let mut client = ServiceBuilder::new()
        .layer(PropagateLayer::new())
        .service(tower::service_fn(move |req: Request<()>| {
            *seen2.lock().unwrap() = Some(req.headers().clone());
            std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(
                String::new(),
            )))
        }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = client.ready().await.unwrap();
        c.call(Request::new(())).await.unwrap();
    });
    let headers = seen.lock().unwrap().clone().unwrap();
    let tp = headers
        .get("traceparent")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        tp.as_deref().is_some_and(|tp| tp.contains(TRACE)),
        "the attached remote trace was not continued: traceparent {tp:?}"
    );
}

/// `PropagateLayer` is `Copy`, as tower-http's small layers are: one value can be layered
/// onto several clients.
#[test]
fn propagate_layer_is_copy() {
    fn copy<T: Copy>(t: T) -> (T, T) {
        (t, t)
    }
    let (a, b) = copy(PropagateLayer::new().known_methods([http::Method::GET]));
    let _ = (a, b);
}

/// Every value of `key` among a span's exported attributes, as text.
fn attribute_values(span: &opentelemetry_sdk::trace::SpanData, key: &str) -> Vec<String> {
    span.attributes
        .iter()
        .filter(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
        .collect()
}

/// The exported server span of the request to `path`.
fn server_span(
    exporter: &opentelemetry_sdk::trace::InMemorySpanExporter,
    provider: &opentelemetry_sdk::trace::SdkTracerProvider,
    path: &str,
) -> opentelemetry_sdk::trace::SpanData {
    let _ = provider.force_flush();
    exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .find(|s| {
            s.span_kind == opentelemetry::trace::SpanKind::Server
                && attribute_values(s, "url.path") == [path]
        })
        .unwrap_or_else(|| panic!("no server span for {path}"))
}

/// A failed request's exported server span says why in `error.type`, as OpenTelemetry's HTTP
/// conventions ask, exactly once: the status for a 5xx (also when its body then fails), the
/// error's type for an error from the inner service, `panic` for a handler that panics. A
/// request that succeeds has none, and the lines carry none (it is not a span field).
#[tokio::test(flavor = "current_thread")]
async fn a_failed_requests_server_span_names_its_error_type_once() {
    let (capture, exporter, provider, _g) = exporting_lines();
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/fail-then-break",
            get(|| async {
                // The head and a first part go out before the body fails.
                let gap = std::time::Duration::from_millis(50);
                let body = streamed(2, gap, Some(io::Error::other("disk gone")));
                (StatusCode::BAD_GATEWAY, axum::body::Body::new(body))
            }),
        )
        .route(
            "/panic",
            get(|| async {
                if std::hint::black_box(true) {
                    panic!("no orders table");
                }
                "unreachable"
            }),
        )
        .layer(CorrelationLayer::new());
    let addr = serve(app).await;
    let (status, _, _) = get_with(addr, "/ok", &[]).await;
    assert_eq!(status, 200);
    let resp = client()
        .request(
            Request::get(format!("http://{addr}/fail-then-break"))
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert!(resp.into_body().collect().await.is_err(), "the body broke");
    let panicked = client()
        .request(
            Request::get(format!("http://{addr}/panic"))
                .body(Empty::new())
                .unwrap(),
        )
        .await;
    assert!(panicked.is_err(), "the server closed the connection");
    // An error from the inner service (a tower service, not axum, whose handlers cannot fail).
    let failing = ServiceBuilder::new()
        .layer(CorrelationLayer::new())
        .service(tower::service_fn(|_req: Request<()>| async {
            Err::<http::Response<String>, _>(io::Error::other("backend down"))
        }));
    let err = failing
        .oneshot(Request::get("/inner-error").body(()).unwrap())
        .await;
    assert!(err.is_err());
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;

    let error_type =
        |path: &str| attribute_values(&server_span(&exporter, &provider, path), "error.type");
    assert_eq!(error_type("/ok"), Vec::<String>::new());
    assert_eq!(error_type("/fail-then-break"), ["502"]);
    assert_eq!(error_type("/panic"), ["panic"]);
    assert_eq!(error_type("/inner-error"), ["std::io::error::Error"]);
    for path in ["/fail-then-break", "/panic", "/inner-error"] {
        assert!(server_span_failed(&exporter, &provider, path), "{path}");
    }
    let lines = capture.lines();
    assert!(lines.len() >= 4, "{lines:?}");
    for line in &lines {
        assert!(line.get("error.type").is_none(), "{line}");
    }
}

/// A gRPC server's fault names the exported server span's `error.type` with the code's name,
/// as OpenTelemetry's RPC conventions do; a caller's error (NOT_FOUND) leaves it unset.
#[tokio::test(flavor = "current_thread")]
async fn a_grpc_fault_names_the_error_type_with_the_codes_name() {
    let (exporter, provider, _g) = exporting();
    let app = grpc_trailers_only_app();
    let addr = serve(app).await;
    for code in ["14", "5"] {
        let req = Request::post(format!("http://{addr}/pkg.Orders/{code}"))
            .body(Empty::new())
            .unwrap();
        assert_eq!(client().request(req).await.unwrap().status(), 200);
    }
    let error_type =
        |path: &str| attribute_values(&server_span(&exporter, &provider, path), "error.type");
    assert_eq!(error_type("/pkg.Orders/14"), ["UNAVAILABLE"]);
    assert_eq!(error_type("/pkg.Orders/5"), Vec::<String>::new());
}

/// The exported server span carries the protocol's version, and the scheme where the request
/// names it (HTTP/2's `:scheme`); an HTTP/1.1 request, which does not, has no `url.scheme`.
#[tokio::test(flavor = "current_thread")]
async fn the_server_span_has_the_protocol_version_and_the_scheme_when_it_is_known() {
    let (exporter, provider, _g) = exporting();
    let app = Router::new()
        .route("/h1", get(|| async { "ok" }))
        .layer(CorrelationLayer::new());
    let addr = serve(app).await;
    assert_eq!(get_with(addr, "/h1", &[]).await.0, 200);
    let svc = hyper_util::service::TowerToHyperService::new(
        ServiceBuilder::new()
            .layer(CorrelationLayer::new())
            .service(tower::service_fn(
                |_req: Request<hyper::body::Incoming>| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(String::from("ok")))
                },
            )),
    );
    let h2 = serve_h2_once(svc).await;
    let resp = h2_client()
        .request(
            Request::get(format!("http://{h2}/h2"))
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    resp.into_body().collect().await.unwrap();
    let h1 = server_span(&exporter, &provider, "/h1");
    assert_eq!(attribute_values(&h1, "network.protocol.version"), ["1.1"]);
    assert_eq!(attribute_values(&h1, "url.scheme"), Vec::<String>::new());
    let h2 = server_span(&exporter, &provider, "/h2");
    assert_eq!(attribute_values(&h2, "network.protocol.version"), ["2"]);
    assert_eq!(attribute_values(&h2, "url.scheme"), ["http"]);
}

/// A client span carries `server.address` and `server.port` (OpenTelemetry's HTTP conventions
/// require both), the scheme's port when the URI has none; a failed call names its
/// `error.type`: the status for a 4xx or 5xx, the transport error's type for a connection
/// refused. A call that succeeds has none.
#[tokio::test(flavor = "current_thread")]
async fn a_client_span_has_its_server_and_the_error_type_of_a_failed_call() {
    let (exporter, provider, _g) = exporting();
    let app = Router::new().route("/ok", get(|| async { "ok" }));
    let addr = serve(app).await;
    // A port with nothing listening: bound, then closed.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let client = ServiceBuilder::new()
        .layer(PropagateLayer::new())
        .service(client());
    for uri in [
        format!("http://{addr}/ok"),
        format!("http://{addr}/missing"),
        format!("http://{closed}/refused"),
    ] {
        let sent = client
            .clone()
            .oneshot(Request::get(uri).body(Empty::<Bytes>::new()).unwrap())
            .await;
        if let Ok(resp) = sent {
            resp.into_body().collect().await.unwrap();
        }
    }
    // No request is sent: the span is made with the URI alone.
    let recording = ServiceBuilder::new()
        .layer(PropagateLayer::new())
        .service(recording_client(Arc::new(Mutex::new(None)), StatusCode::OK));
    recording
        .oneshot(Request::get("https://[::1]/v6").body(()).unwrap())
        .await
        .unwrap();
    let spans = client_spans(&exporter, &provider);
    let seen: Vec<(Vec<String>, Vec<String>, Vec<String>)> = spans
        .iter()
        .map(|s| {
            (
                attribute_values(s, "server.address"),
                attribute_values(s, "server.port"),
                attribute_values(s, "error.type"),
            )
        })
        .collect();
    let port = |a: SocketAddr| vec![a.port().to_string()];
    let none = Vec::<String>::new;
    assert_eq!(
        seen,
        [
            (vec!["127.0.0.1".to_owned()], port(addr), none()),
            (
                vec!["127.0.0.1".to_owned()],
                port(addr),
                vec!["404".to_owned()]
            ),
            (
                vec!["127.0.0.1".to_owned()],
                port(closed),
                vec!["hyper_util::client::legacy::client::Error".to_owned()]
            ),
            (vec!["::1".to_owned()], vec!["443".to_owned()], none()),
        ],
        "{spans:#?}"
    );
}

/// A server answering `ok` at every one-segment path, behind the correlation middleware.
async fn serve_ok_at_any_path() -> SocketAddr {
    let app = Router::new()
        .route("/{name}", get(|| async { "ok" }))
        .layer(CorrelationLayer::new());
    serve(app).await
}

/// The exported server span carries the caller's `User-Agent` as `user_agent.original`: as
/// sent when short, cut to 512 bytes at a character boundary when long, left out when it is
/// not UTF-8 text; and it is not a field on the lines.
#[tokio::test(flavor = "current_thread")]
async fn the_server_span_exports_the_user_agent_within_a_bound() {
    let (capture, exporter, provider, _g) = exporting_lines();
    let addr = serve_ok_at_any_path().await;
    // 511 ASCII bytes, then characters of 3 bytes: the cut falls inside the first of them.
    let long = format!("{}{}", "a".repeat(511), "€".repeat(600));
    let agents = [
        (
            "short",
            HeaderValue::from_static("orders-client/1.4 (rust)"),
        ),
        ("long", HeaderValue::from_str(&long).unwrap()),
        (
            "binary",
            HeaderValue::from_bytes(b"agent \xff\xfe").unwrap(),
        ),
    ];
    for (path, agent) in &agents {
        let (status, _, _) =
            get_with(addr, &format!("/{path}"), &[("user-agent", agent.clone())]).await;
        assert_eq!(status, 200);
    }
    let agent = |path: &str| {
        attribute_values(
            &server_span(&exporter, &provider, path),
            "user_agent.original",
        )
    };
    assert_eq!(agent("/short"), ["orders-client/1.4 (rust)"]);
    assert_eq!(agent("/long"), ["a".repeat(511)]);
    assert_eq!(agent("/binary"), Vec::<String>::new());
    for line in capture.lines() {
        assert!(line.get("user_agent.original").is_none(), "{line}");
    }
}

/// The server span exports the request's query as `url.query` (without the `?`), with the
/// values of the signature parameters OpenTelemetry names, and of those the default deny list
/// names, replaced by `REDACTED`, cut to 2048
/// bytes; a request without a query has none; and it is not a field on the lines.
#[tokio::test(flavor = "current_thread")]
async fn the_server_span_exports_the_query_with_signatures_redacted() {
    let (capture, exporter, provider, _g) = exporting_lines();
    let addr = serve_ok_at_any_path().await;
    let long = format!("q={}&sig=secret", "a".repeat(3000));
    let requests = [
        "/signed?q=rust&sig=abc&Signature=x%2By&page=2&flag&AWSAccessKeyId=AKIA&X-Goog-Signature=g",
        "/oauth?access_token=tok-1&api_key=k-2&client_secret=s-3&tokens_used=4&state=xyz",
        "/plain",
        "/empty?",
        &format!("/long?{long}"),
    ];
    for path in requests {
        let (status, _, _) = get_with(addr, path, &[]).await;
        assert_eq!(status, 200);
    }
    let query =
        |path: &str| attribute_values(&server_span(&exporter, &provider, path), "url.query");
    assert_eq!(
        query("/signed"),
        [
            "q=rust&sig=REDACTED&Signature=REDACTED&page=2&flag&AWSAccessKeyId=REDACTED&X-Goog-Signature=REDACTED"
        ]
    );
    // The names the default deny list redacts in fields, too.
    assert_eq!(
        query("/oauth"),
        ["access_token=REDACTED&api_key=REDACTED&client_secret=REDACTED&tokens_used=4&state=xyz"]
    );
    assert_eq!(query("/plain"), Vec::<String>::new());
    assert_eq!(query("/empty"), [""]);
    assert_eq!(query("/long"), [long[..2048].to_string()]);
    let lines = capture.lines();
    assert!(!lines.is_empty());
    for line in lines {
        assert!(line.get("url.query").is_none(), "{line}");
        assert!(!line.to_string().contains("secret"), "{line}");
    }
}

/// A subscriber that looks spans up as the registry does, but is not `Registry` to a downcast
/// (a subscriber of the application's own, with span storage of its own).
struct NotRegistry(tracing_subscriber::Registry);

impl tracing::Subscriber for NotRegistry {
    fn register_callsite(
        &self,
        m: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.0.register_callsite(m)
    }
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        self.0.enabled(m)
    }
    fn new_span(&self, attrs: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        self.0.new_span(attrs)
    }
    fn record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        self.0.record(id, values)
    }
    fn record_follows_from(&self, id: &tracing::span::Id, follows: &tracing::span::Id) {
        self.0.record_follows_from(id, follows)
    }
    fn event(&self, event: &tracing::Event<'_>) {
        self.0.event(event)
    }
    fn enter(&self, id: &tracing::span::Id) {
        self.0.enter(id)
    }
    fn exit(&self, id: &tracing::span::Id) {
        self.0.exit(id)
    }
    fn clone_span(&self, id: &tracing::span::Id) -> tracing::span::Id {
        self.0.clone_span(id)
    }
    fn try_close(&self, id: tracing::span::Id) -> bool {
        self.0.try_close(id)
    }
    fn current_span(&self) -> tracing_core::span::Current {
        self.0.current_span()
    }
}

impl<'a> tracing_subscriber::registry::LookupSpan<'a> for NotRegistry {
    type Data =
        <tracing_subscriber::Registry as tracing_subscriber::registry::LookupSpan<'a>>::Data;
    fn span_data(&'a self, id: &tracing::span::Id) -> Option<Self::Data> {
        self.0.span_data(id)
    }
}

/// `error.type` is set once whatever the subscriber is built on: a 502 whose body then fails,
/// under a subscriber that is not tracing-subscriber's `Registry`, is exported with `"502"`
/// alone.
#[tokio::test(flavor = "current_thread")]
async fn error_type_is_set_once_under_a_subscriber_that_is_not_the_registry() {
    let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = NotRegistry(tracing_subscriber::Registry::default())
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("t")));
    let _g = tracing::subscriber::set_default(subscriber);
    for client in [false, true] {
        let path = if client { "/client" } else { "/server" };
        let answer = tower::service_fn(|_r: Request<()>| async {
            let body = streamed(1, Default::default(), Some(io::Error::other("gone")));
            let mut resp = http::Response::new(body);
            *resp.status_mut() = StatusCode::BAD_GATEWAY;
            Ok::<_, std::convert::Infallible>(resp)
        });
        let req = Request::get(path).body(()).unwrap();
        let body = if client {
            let svc = ServiceBuilder::new()
                .layer(PropagateLayer::new())
                .service(answer);
            svc.oneshot(req).await.unwrap().into_body().collect().await
        } else {
            let svc = ServiceBuilder::new()
                .layer(CorrelationLayer::new())
                .service(answer);
            svc.oneshot(req).await.unwrap().into_body().collect().await
        };
        assert!(body.is_err(), "{path}: the body broke");
    }
    assert_eq!(
        attribute_values(&server_span(&exporter, &provider, "/server"), "error.type"),
        ["502"]
    );
    let client = client_spans(&exporter, &provider);
    assert_eq!(client.len(), 1);
    assert_eq!(attribute_values(&client[0], "error.type"), ["502"]);
}

/// The scheme of an HTTP/1.1 request's absolute-form target is whatever the client wrote (here
/// one that names no protocol, over plain TCP): it is not exported as `url.scheme`.
#[tokio::test(flavor = "current_thread")]
async fn an_http1_absolute_form_scheme_is_not_exported() {
    let (exporter, provider, _g) = exporting();
    let app = Router::new()
        .route("/abs", get(|| async { "ok" }))
        .layer(CorrelationLayer::new());
    let addr = serve(app).await;
    for target in ["made-up-scheme-1234://x/abs", "https://x/abs"] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        assert!(
            out.starts_with(b"HTTP/1.1 200"),
            "{target}: {}",
            String::from_utf8_lossy(&out)
        );
    }
    let _ = provider.force_flush();
    let spans: Vec<_> = exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.span_kind == opentelemetry::trace::SpanKind::Server)
        .collect();
    assert_eq!(spans.len(), 2);
    for span in &spans {
        assert_eq!(
            attribute_values(span, "url.scheme"),
            Vec::<String>::new(),
            "{span:?}"
        );
    }
}

/// A router nested with a `CorrelationLayer` of its own, both layers giving the route: the
/// request's one span is exported with one `http.route`, one `rpc.grpc.status_code` (a status
/// in the trailers of a gRPC answer) and one `error.type`, each value set once.
#[tokio::test(flavor = "current_thread")]
async fn a_nested_layer_sets_each_attribute_of_the_request_span_once() {
    let (exporter, provider, _g) = exporting();
    let route: traceline::http::RouteFn =
        |ext| ext.get::<axum::extract::MatchedPath>().map(|m| m.as_str());
    let grpc = || async {
        use futures_util::StreamExt;
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("13"));
        let frames = futures_util::stream::iter([
            Ok::<_, io::Error>(http_body::Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
            Ok(http_body::Frame::trailers(trailers)),
        ]);
        let body = http_body_util::StreamBody::new(frames.boxed());
        (
            [("content-type", "application/grpc")],
            axum::body::Body::new(body),
        )
    };
    let orders = Router::new()
        .route("/pkg.Orders/Get", axum::routing::post(grpc))
        .layer(CorrelationLayer::new().route(route));
    let app = Router::new()
        .nest("/api", orders)
        .layer(CorrelationLayer::new().route(route));
    let addr = serve(app).await;
    let req = Request::post(format!("http://{addr}/api/pkg.Orders/Get"))
        .header("content-type", "application/grpc")
        .body(Empty::new())
        .unwrap();
    let resp = h2_client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let whole = resp.into_body().collect().await.unwrap();
    assert_eq!(whole.trailers().unwrap()["grpc-status"], "13");
    let span = server_span(&exporter, &provider, "/api/pkg.Orders/Get");
    for key in ["http.route", "rpc.grpc.status_code", "error.type"] {
        assert_eq!(attribute_values(&span, key).len(), 1, "{key}: {span:#?}");
    }
    assert_eq!(attribute_values(&span, "error.type"), ["INTERNAL"]);
}

/// A router nested with a `CorrelationLayer` of its own names the request's one span with the
/// outer layer's method list, the list that recorded its method: the span's name and its
/// `http.request.method` always agree, and a nested layer that knows more methods cannot let a
/// caller make up span names.
#[tokio::test(flavor = "current_thread")]
async fn a_nested_layer_names_the_span_with_the_outer_layers_methods() {
    let purge = || http::Method::from_bytes(b"PURGE").unwrap();
    let route: traceline::http::RouteFn =
        |ext| ext.get::<axum::extract::MatchedPath>().map(|m| m.as_str());
    for outer_knows_purge in [true, false] {
        let (exporter, provider, _g) = exporting();
        let (outer, inner) = if outer_knows_purge {
            (
                CorrelationLayer::new().known_methods([http::Method::GET, purge()]),
                CorrelationLayer::new().route(route),
            )
        } else {
            (
                CorrelationLayer::new(),
                CorrelationLayer::new()
                    .route(route)
                    .known_methods([http::Method::GET, purge()]),
            )
        };
        let items = Router::new()
            .route("/items/{id}", axum::routing::any(|| async { "ok" }))
            .layer(inner);
        let app = Router::new().nest("/api", items).layer(outer);
        let addr = serve(app).await;
        let req = Request::builder()
            .method(purge())
            .uri(format!("http://{addr}/api/items/3"))
            .body(Empty::new())
            .unwrap();
        let resp = client().request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap();
        let span = server_span(&exporter, &provider, "/api/items/3");
        let (name, method) = if outer_knows_purge {
            ("PURGE /api/items/{id}", "PURGE")
        } else {
            ("HTTP /api/items/{id}", "_OTHER")
        };
        assert_eq!(span.name, name, "outer knows PURGE: {outer_knows_purge}");
        assert_eq!(attribute_values(&span, "http.request.method"), [method]);
    }
}

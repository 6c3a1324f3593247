//! Two services on loopback, one trace: `cargo run --example demo`.
//!
//! The orders service (this process) takes orders; its `createOrder` span holds a `db.insert`
//! span and a `payment.process` span that calls the payments service, a second process (this
//! same binary started with `payments`), over HTTP. The demo sends three requests itself —
//! one continuing a caller's `traceparent` and `x-correlation-id`, one plain, one whose payment
//! fails — and prints the JSON lines of both services on stdout. Every line of one request
//! shares its `traceId` and `correlationId`, whichever process wrote it.
use std::error::Error;
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::TracerProvider as _;
use tower::{Service, ServiceBuilder, ServiceExt};
use traceline::http::{CorrelationLayer, PropagateLayer};
use tracing::{Instrument, error, info, info_span, warn};
use tracing_subscriber::prelude::*;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// The payments service answered with an error status.
#[derive(Debug)]
struct UpstreamError {
    status: u16,
    body: String,
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "payments service answered {}: {}",
            self.status, self.body
        )
    }
}

impl Error for UpstreamError {}

/// Charging the card failed.
#[derive(Debug)]
struct PaymentError {
    source: UpstreamError,
}

impl fmt::Display for PaymentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("payment could not be processed")
    }
}

impl Error for PaymentError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

fn install(service: &str) -> opentelemetry_sdk::trace::SdkTracerProvider {
    // An SDK provider without exporter: real trace and span ids, nothing sent anywhere.
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info,h2=warn,hyper=warn".into()),
        ))
        .with(traceline::otel(
            tracing_opentelemetry::layer().with_tracer(provider.tracer(service.to_owned())),
        ))
        .with(
            traceline::layer()
                .with_service_name(service)
                .with_service_version(env!("CARGO_PKG_VERSION")),
        )
        .init();
    provider
}

async fn charge(Path((customer, cents)): Path<(u64, u64)>) -> Result<String, (StatusCode, String)> {
    async move {
        info!(payment.amount_cents = cents, "charging card");
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        if customer == 13 {
            warn!(card.issuer = "acme-bank", "card issuer timed out");
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "card issuer timed out".into(),
            ));
        }
        info!(payment.id = "pay-9c1f", "card charged");
        Ok("pay-9c1f".into())
    }
    .instrument(info_span!("chargeCard", payment.customer_id = customer))
    .await
}

async fn payments_main() {
    let provider = install("payments");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    // The parent reads the port from stderr; stdout carries only JSON lines.
    eprintln!("PORT {}", listener.local_addr().expect("addr").port());
    let app = Router::new()
        .route("/payments/{customer}/{cents}", post(charge))
        .layer(CorrelationLayer::new());
    // Stop when the parent closes our stdin.
    let stop = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin()
            .read_line(&mut sink)
            .map(|n| n > 0)
            .unwrap_or(false)
        {}
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.await;
        })
        .await
        .expect("serve");
    let _ = provider.shutdown();
}

async fn call_payments(
    client: HttpClient,
    payments: SocketAddr,
    customer: u64,
    cents: u64,
) -> Result<String, PaymentError> {
    let mut client = ServiceBuilder::new()
        .layer(PropagateLayer::new())
        .service(client);
    let req = http::Request::post(format!("http://{payments}/payments/{customer}/{cents}"))
        .body(Empty::new())
        .expect("request");
    let resp = client
        .ready()
        .await
        .expect("ready")
        .call(req)
        .await
        .map_err(|e| PaymentError {
            source: UpstreamError {
                status: 0,
                body: e.to_string(),
            },
        })?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    if status >= 400 {
        return Err(PaymentError {
            source: UpstreamError { status, body },
        });
    }
    Ok(body)
}

async fn create_order(
    State((client, payments)): State<(HttpClient, SocketAddr)>,
    Path((customer, items)): Path<(u64, u64)>,
) -> Result<String, (StatusCode, String)> {
    let span = info_span!(
        "createOrder",
        order.customer_id = customer,
        order.item_count = items
    );
    async move {
        info!("order received");
        async {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            info!(db.rows_affected = 1_u64, "order row inserted");
        }
        .instrument(info_span!(
            "db.insert",
            db.system = "postgresql",
            db.operation.name = "INSERT"
        ))
        .await;
        let pay = info_span!("payment.process", otel.status_code = tracing::field::Empty);
        let cents = items * 1250;
        let result = call_payments(client, payments, customer, cents)
            .instrument(pay.clone())
            .await;
        match result {
            Ok(payment) => {
                info!(payment.id = payment.as_str(), "order created");
                Ok(format!("order created, payment {payment}\n"))
            }
            Err(err) => {
                pay.record("otel.status_code", "ERROR");
                pay.in_scope(|| error!(error = &err as &dyn Error, "order failed"));
                let id = traceline::correlation::current()
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                Err((
                    StatusCode::BAD_GATEWAY,
                    format!("payment failed; correlation id {id}\n"),
                ))
            }
        }
    }
    .instrument(span)
    .await
}

async fn orders_main() {
    // Start the payments service as a second process and forward its lines.
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .arg("payments")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the payments process");
    let mut child_err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut first = String::new();
    child_err.read_line(&mut first).expect("payments port");
    let port: u16 = first
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .expect("payments prints its port");
    let child_out = child.stdout.take().expect("stdout");
    let forward = std::thread::spawn(move || {
        for line in BufReader::new(child_out).lines().map_while(Result::ok) {
            // One write per line: lines of the two processes never interleave.
            let _ = std::io::stdout().write_all(format!("{line}\n").as_bytes());
        }
    });

    let provider = install("orders");
    let payments: SocketAddr = ([127, 0, 0, 1], port).into();
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let app = Router::new()
        .route("/orders/{customer}/{items}", post(create_order))
        .with_state((client.clone(), payments))
        .layer(CorrelationLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let orders = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // The requests a caller would send. The first continues the caller's trace.
    let requests: [(&str, Vec<(&str, &str)>); 3] = [
        (
            "/orders/42/3",
            vec![
                (
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
                ("x-correlation-id", "checkout-7f3a9c"),
            ],
        ),
        ("/orders/7/1", vec![]),
        ("/orders/13/2", vec![]),
    ];
    for (path, headers) in requests {
        let mut req = http::Request::post(format!("http://{orders}{path}"));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = client
            .request(req.body(Empty::new()).expect("request"))
            .await
            .expect("orders answers");
        let _ = resp.into_body().collect().await;
    }

    server.abort();
    drop(child.stdin.take()); // payments stops on stdin EOF
    let _ = child.wait();
    let _ = forward.join();
    info!(
        hint = "cargo run --example demo | jq -c 'select(.traceId==\"4bf92f3577b34da6a3ce929d0e0e4736\")'",
        "demo finished: pipe the output through the hint's jq filter to follow one trace across both services"
    );
    let _ = provider.shutdown();
}

#[tokio::main]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("payments") {
        payments_main().await;
    } else {
        orders_main().await;
    }
}

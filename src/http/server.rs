//! Middleware for incoming requests: request span, trace continuation, correlation id.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use opentelemetry::trace::TraceContextExt;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::trace_context;
use crate::correlation::{CorrelationId, validate};
use crate::fields::CORRELATION_FIELD;

/// The header the correlation id is read from first and echoed in: `x-correlation-id`.
///
/// ```
/// assert_eq!(traceline::http::X_CORRELATION_ID, "x-correlation-id");
/// ```
pub const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
/// The header read when `x-correlation-id` is absent: `x-request-id`.
///
/// ```
/// assert_eq!(traceline::http::X_REQUEST_ID, "x-request-id");
/// ```
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone, Debug)]
struct Config {
    headers: Vec<HeaderName>,
    response_header: HeaderName,
    from_trace_id: bool,
    server_timing: bool,
    access_log: bool,
    route: Option<RouteFn>,
}

/// Reads the matched route template (`/users/{id}`) from a request's extensions.
///
/// ```
/// let route: traceline::http::RouteFn = |ext| ext.get::<&'static str>().copied();
/// let mut ext = http::Extensions::new();
/// ext.insert("/users/{id}");
/// assert_eq!(route(&ext), Some("/users/{id}"));
/// ```
pub type RouteFn = fn(&http::Extensions) -> Option<&str>;

/// A [`tower_layer::Layer`] that gives every request a span carrying its trace and
/// correlation id. See the [module docs](super) for what it does per request.
///
/// ```
/// use traceline::http::CorrelationLayer;
///
/// let layer = CorrelationLayer::new()
///     .header("x-amzn-request-id".parse().unwrap())
///     .server_timing(true);
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct CorrelationLayer {
    config: Arc<Config>,
}

impl Default for CorrelationLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl CorrelationLayer {
    /// Reads `x-correlation-id`, then `x-request-id`; echoes `x-correlation-id`; writes an
    /// access-log line per request; no `server-timing`.
    ///
    /// ```
    /// let layer = traceline::http::CorrelationLayer::new();
    /// # let _ = layer;
    /// ```
    pub fn new() -> Self {
        CorrelationLayer {
            config: Arc::new(Config {
                headers: vec![X_CORRELATION_ID, X_REQUEST_ID],
                response_header: X_CORRELATION_ID,
                from_trace_id: false,
                server_timing: false,
                access_log: true,
                route: None,
            }),
        }
    }

    fn map(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Also reads the correlation id from `name`, after the headers already configured.
    ///
    /// ```
    /// let layer = traceline::http::CorrelationLayer::new().header("x-amzn-request-id".parse().unwrap());
    /// # let _ = layer;
    /// ```
    pub fn header(self, name: HeaderName) -> Self {
        self.map(|c| {
            if !c.headers.contains(&name) {
                c.headers.push(name)
            }
        })
    }

    /// Reads the correlation id only from `names`, in that order.
    ///
    /// ```
    /// let layer = traceline::http::CorrelationLayer::new().headers(vec!["x-request-id".parse().unwrap()]);
    /// # let _ = layer;
    /// ```
    pub fn headers(self, names: Vec<HeaderName>) -> Self {
        self.map(|c| c.headers = names)
    }

    /// The response header that echoes the id (default `x-correlation-id`).
    ///
    /// ```
    /// let layer = traceline::http::CorrelationLayer::new().response_header("x-request-id".parse().unwrap());
    /// # let _ = layer;
    /// ```
    pub fn response_header(self, name: HeaderName) -> Self {
        self.map(|c| c.response_header = name)
    }

    /// When the request brings no valid id, use its trace id (32 hex digits) instead of a new
    /// random one, as many Node.js services do.
    ///
    /// ```
    /// let layer = traceline::http::CorrelationLayer::new().correlation_id_from_trace_id(true);
    /// # let _ = layer;
    /// ```
    pub fn correlation_id_from_trace_id(self, on: bool) -> Self {
        self.map(|c| c.from_trace_id = on)
    }

    /// Adds `server-timing: trace;desc=<traceparent>` to responses, so a browser or caller can
    /// find the trace of a response (off by default).
    ///
    /// ```
    /// let layer = traceline::http::CorrelationLayer::new().server_timing(true);
    /// # let _ = layer;
    /// ```
    pub fn server_timing(self, on: bool) -> Self {
        self.map(|c| c.server_timing = on)
    }

    /// Where the router puts the matched route, for `http.route` and the span name
    /// (`GET /users/{id}`). The router must have run before the layer sees the request: with
    /// axum, add the layer with `Router::route_layer`.
    ///
    /// ```
    /// use axum::{Router, extract::MatchedPath, routing::get};
    /// use traceline::http::CorrelationLayer;
    ///
    /// let app: Router = Router::new()
    ///     .route("/users/{id}", get(|| async { "ok" }))
    ///     .route_layer(
    ///         CorrelationLayer::new().route(|ext| ext.get::<MatchedPath>().map(|m| m.as_str())),
    ///     );
    /// ```
    pub fn route(self, route: RouteFn) -> Self {
        self.map(|c| c.route = Some(route))
    }

    /// Writes one access-log line per request when its response is ready (on by default):
    /// ERROR for a 5xx, and for a gRPC server fault in a trailers-only answer (`grpc-status`
    /// in the headers, recorded as `rpc.grpc.status_code`); INFO otherwise.
    ///
    /// ```
    /// let layer = traceline::http::CorrelationLayer::new().access_log(false);
    /// # let _ = layer;
    /// ```
    pub fn access_log(self, on: bool) -> Self {
        self.map(|c| c.access_log = on)
    }
}

impl<S> Layer<S> for CorrelationLayer {
    type Service = Correlation<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Correlation {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service made by [`CorrelationLayer`].
///
/// ```
/// use tower::{Layer, ServiceExt};
/// use traceline::http::CorrelationLayer;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let svc = CorrelationLayer::new().layer(tower::service_fn(|_req: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
/// }));
/// let req = http::Request::get("/").header("x-correlation-id", "req-7").body(()).unwrap();
/// let resp = svc.oneshot(req).await.unwrap();
/// assert_eq!(resp.headers()["x-correlation-id"], "req-7");
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct Correlation<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Correlation<S> {
    /// Wraps `inner` with the default settings (as `CorrelationLayer::new().layer(inner)`).
    ///
    /// ```
    /// let svc = traceline::http::Correlation::new(tower::service_fn(|_req: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
    /// }));
    /// # let _ = svc;
    /// ```
    pub fn new(inner: S) -> Self {
        CorrelationLayer::new().layer(inner)
    }

    /// The wrapped service.
    ///
    /// ```
    /// let svc = traceline::http::Correlation::new(7);
    /// assert_eq!(*svc.get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    ///
    /// ```
    /// let mut svc = traceline::http::Correlation::new(7);
    /// *svc.get_mut() += 1;
    /// assert_eq!(svc.into_inner(), 8);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    ///
    /// ```
    /// assert_eq!(traceline::http::Correlation::new(7).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// What the incoming correlation headers held.
enum Incoming {
    Valid(CorrelationId),
    Absent,
    /// An invalid value (or several values) of this many bytes in this header.
    Rejected(HeaderName, usize),
}

fn read_incoming(headers: &HeaderMap, names: &[HeaderName]) -> Incoming {
    for name in names {
        let mut values = headers.get_all(name).iter();
        let Some(first) = values.next() else { continue };
        let rest: usize = values.map(|v| v.len()).sum();
        if rest > 0 || headers.get_all(name).iter().count() > 1 {
            return Incoming::Rejected(name.clone(), first.len() + rest);
        }
        return match validate(first.as_bytes()) {
            Ok(()) => Incoming::Valid(
                CorrelationId::parse(first.to_str().expect("validated ASCII"))
                    .expect("validated above"),
            ),
            Err(_) => Incoming::Rejected(name.clone(), first.len()),
        };
    }
    Incoming::Absent
}

/// `00-<trace id>-<span id>-<flags>` of a span, if it has real ids.
pub(crate) fn traceparent_of(cx: &opentelemetry::Context) -> Option<String> {
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8() & 1
        )
    })
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Correlation<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: fmt::Display,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The latency counts the inner service's `call` too: some do their work there.
        let start = Instant::now();
        let method = req.method().clone();
        let path: Box<str> = req.uri().path().into();
        let span = tracing::info_span!(
            target: "traceline::http",
            "HTTP request",
            otel.name = %method,
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = %method,
            url.path = req.uri().path(),
            http.route = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            rpc.grpc.status_code = tracing::field::Empty,
            { CORRELATION_FIELD } = tracing::field::Empty,
        );
        if let Some(route) = self.config.route.and_then(|f| f(req.extensions())) {
            span.record("http.route", route);
            span.record("otel.name", format!("{method} {route}"));
        }
        // Before anything reads the span's ids: once started, its parent cannot change. With
        // no valid `traceparent` the request starts a trace of its own, whatever span the
        // server runs in (one per connection, say): unrelated requests are not one trace.
        let _ = span.set_parent(trace_context::extract(req.headers()).unwrap_or_default());
        let incoming = read_incoming(req.headers(), &self.config.headers);
        let id = match &incoming {
            Incoming::Valid(id) => id.clone(),
            _ if self.config.from_trace_id => {
                let cx = span.context();
                let sc = cx.span().span_context().clone();
                if sc.is_valid() {
                    CorrelationId::from_hex_bytes(&sc.trace_id().to_bytes())
                } else {
                    CorrelationId::generate()
                }
            }
            _ => CorrelationId::generate(),
        };
        span.record(CORRELATION_FIELD, id.as_str());
        if let Incoming::Rejected(header, length) = &incoming {
            span.in_scope(|| {
                tracing::warn!(
                    target: "traceline::http",
                    header = header.as_str(),
                    length = *length as u64,
                    "replaced an invalid incoming correlation id"
                )
            });
        }
        req.extensions_mut().insert(id.clone());
        let future = span.in_scope(|| self.inner.call(req));
        ResponseFuture {
            inner: future,
            span,
            id,
            method,
            path,
            start,
            config: self.config.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Correlation`]. When the inner service's response is ready it
    /// adds the correlation id header, records the status on the request span, and writes the
    /// access-log line (with the status and the latency): nothing is written before.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use tower::{Layer, Service};
    /// use tracing_subscriber::prelude::*;
    ///
    /// #[derive(Clone, Default)]
    /// struct Lines(Arc<Mutex<Vec<u8>>>);
    /// impl std::io::Write for Lines {
    ///     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
    ///         self.0.lock().unwrap().extend_from_slice(b);
    ///         Ok(b.len())
    ///     }
    ///     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
    /// }
    ///
    /// let lines = Lines::default();
    /// let out = lines.clone();
    /// let _g = tracing::subscriber::set_default(
    ///     tracing_subscriber::registry().with(traceline::layer().with_writer(move || out.clone())),
    /// );
    /// let mut svc = traceline::http::CorrelationLayer::new().layer(tower::service_fn(
    ///     |_req: http::Request<()>| async {
    ///         let mut resp = http::Response::new(());
    ///         *resp.status_mut() = http::StatusCode::NOT_FOUND;
    ///         Ok::<_, std::convert::Infallible>(resp)
    ///     },
    /// ));
    /// let future = svc.call(http::Request::get("/orders/7").body(()).unwrap());
    /// assert!(lines.0.lock().unwrap().is_empty(), "nothing before the response");
    ///
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let resp = rt.block_on(future).unwrap();
    /// assert!(resp.headers().contains_key("x-correlation-id"));
    /// let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    /// let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    /// assert_eq!(line["message"], "GET /orders/7 completed with 404");
    /// assert_eq!(line["http.response.status_code"], 404);
    /// assert_eq!(line["correlationId"], resp.headers()["x-correlation-id"].to_str().unwrap());
    /// ```
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        id: CorrelationId,
        method: http::Method,
        path: Box<str>,
        start: Instant,
        config: Arc<Config>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: fmt::Display,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let result = ready!(this.inner.poll(cx));
        let latency_ms = this.start.elapsed().as_micros() as f64 / 1000.0;
        let method = this.method.as_str();
        let path = &**this.path;
        match result {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let grpc = super::record_response(this.span, &response, false);
                let headers = response.headers_mut();
                headers.insert(
                    this.config.response_header.clone(),
                    HeaderValue::from_str(this.id.as_str()).expect("validated id"),
                );
                if this.config.server_timing {
                    if let Some(tp) = traceparent_of(&this.span.context()) {
                        let v = format!("trace;desc={tp}");
                        headers.append("server-timing", HeaderValue::from_str(&v).expect("ASCII"));
                    }
                }
                if this.config.access_log {
                    // A gRPC status speaks for the call only on a 200: any other HTTP status
                    // is a failure outside gRPC (a proxy's, say), logged as such.
                    match grpc.filter(|_| status == 200) {
                        Some(code) if super::grpc_server_fault(code) => tracing::error!(
                            target: "traceline::http",
                            latency_ms,
                            http.response.status_code = status,
                            rpc.grpc.status_code = code,
                            "{method} {path} failed with grpc-status {code}"
                        ),
                        Some(code) => tracing::info!(
                            target: "traceline::http",
                            latency_ms,
                            http.response.status_code = status,
                            rpc.grpc.status_code = code,
                            "{method} {path} completed with grpc-status {code}"
                        ),
                        None if status >= 500 => tracing::error!(
                            target: "traceline::http",
                            latency_ms,
                            http.response.status_code = status,
                            "{method} {path} failed with {status}"
                        ),
                        None => tracing::info!(
                            target: "traceline::http",
                            latency_ms,
                            http.response.status_code = status,
                            "{method} {path} completed with {status}"
                        ),
                    }
                }
                Poll::Ready(Ok(response))
            }
            Err(err) => {
                this.span.record("otel.status_code", "ERROR");
                if this.config.access_log {
                    tracing::error!(
                        target: "traceline::http",
                        latency_ms,
                        error = %err,
                        "{method} {path} failed"
                    );
                }
                Poll::Ready(Err(err))
            }
        }
    }
}

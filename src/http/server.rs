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
use tracing::instrument::{Instrument, Instrumented};
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
    known_methods: super::KnownMethods,
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
                known_methods: super::KnownMethods::from_env(),
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
    /// (`GET /users/{id}`). The router must have run before the layer sees the request: axum
    /// 0.8 matches the route before the layers added with `Router::layer` run, so add it with
    /// `.layer` (`route_layer` would leave unmatched requests, the 404s, without a span, an
    /// echoed id or an access line).
    ///
    /// ```
    /// use axum::{Router, extract::MatchedPath, routing::get};
    /// use traceline::http::CorrelationLayer;
    ///
    /// let app: Router = Router::new()
    ///     .route("/users/{id}", get(|| async { "ok" }))
    ///     .layer(CorrelationLayer::new().route(|ext| ext.get::<MatchedPath>().map(|m| m.as_str())));
    /// ```
    pub fn route(self, route: RouteFn) -> Self {
        self.map(|c| c.route = Some(route))
    }

    /// Writes one access-log line per request, target [`ACCESS_TARGET`] (on by default), when
    /// its response has been sent whole: at the end of its body (with no body, a HEAD request,
    /// a 2xx answer to CONNECT or a 204, 304 or 101 status, with its head), its latency the
    /// whole response's. ERROR for a 5xx, for a gRPC server fault (`grpc-status` in the
    /// headers or the trailers, recorded as `rpc.grpc.status_code`), for a body that fails or
    /// panics part-way, for a handler that answers an interim status (1xx but 101) as its
    /// response, which no server sends as such; INFO otherwise; WARN for a request abandoned before its response, its
    /// body dropped before its end (the client went away), or a gRPC call that ends without a
    /// status.
    ///
    /// ```
    /// let layer = traceline::http::CorrelationLayer::new().access_log(false);
    /// # let _ = layer;
    /// ```
    pub fn access_log(self, on: bool) -> Self {
        self.map(|c| c.access_log = on)
    }

    /// The request methods the span names as they are (by default GET, HEAD, POST, PUT,
    /// DELETE, CONNECT, OPTIONS, TRACE and PATCH, or the comma-separated list in
    /// `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS` when it is set as the layer is made). Any
    /// other method is recorded as `http.request.method = "_OTHER"`, with the method itself in
    /// `http.request.method_original`, and names the span `HTTP` (`HTTP /users/{id}` with a
    /// route), as OpenTelemetry's HTTP conventions say: a client cannot add a span name to the
    /// trace store with each method it makes up. The access line keeps the method as sent.
    ///
    /// ```
    /// use http::Method;
    ///
    /// let purge = Method::from_bytes(b"PURGE").unwrap();
    /// let layer = traceline::http::CorrelationLayer::new()
    ///     .known_methods([Method::GET, Method::POST, purge]);
    /// # let _ = layer;
    /// ```
    pub fn known_methods(self, methods: impl IntoIterator<Item = http::Method>) -> Self {
        let known = super::KnownMethods::list(methods);
        self.map(|c| c.known_methods = known)
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
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
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
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
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

/// The mark a [`Correlation`] leaves in the extensions of a request it handles: a nested one
/// passes the request through, in this request span. `route`: the `http.route` recorded on the
/// span so far (a nested layer records its own only when it differs: each value recorded is
/// exported); `known_methods`: the outer layer's, which named the span and recorded its
/// method (a nested layer names the span with the same list).
#[derive(Clone)]
struct Handled {
    span: Span,
    route: Option<Box<str>>,
    known_methods: super::KnownMethods,
}

/// What the incoming correlation headers held: the first valid id, in the configured order,
/// and the first header whose value was refused (an invalid value, or several values, of this
/// many bytes). A refused header does not stop the next one from being read: a client's junk
/// `x-correlation-id` does not hide a proxy's valid `x-request-id`.
struct Incoming {
    valid: Option<CorrelationId>,
    rejected: Option<(HeaderName, usize)>,
}

fn read_incoming(headers: &HeaderMap, names: &[HeaderName]) -> Incoming {
    let mut rejected = None;
    for name in names {
        let mut values = headers.get_all(name).iter();
        let Some(first) = values.next() else { continue };
        let rest: usize = values.map(|v| v.len()).sum();
        let valid = if rest > 0 || headers.get_all(name).iter().count() > 1 {
            None
        } else {
            validate(first.as_bytes()).ok().map(|()| {
                CorrelationId::parse(first.to_str().expect("validated ASCII"))
                    .expect("validated above")
            })
        };
        match valid {
            Some(id) => {
                return Incoming {
                    valid: Some(id),
                    rejected,
                };
            }
            None => {
                rejected.get_or_insert((name.clone(), first.len() + rest));
            }
        }
    }
    Incoming {
        valid: None,
        rejected,
    }
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
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        if let Some(outer) = req.extensions().get::<Handled>() {
            // Already inside an outer `Correlation` (a nested router with a layer of its own):
            // the request keeps that one's span, trace and id, and gets one access line. The
            // route this layer knows goes on the outer span. (A `CorrelationId` the application
            // put in the extensions says nothing of that: only the outer layer's own mark does.)
            // The outer layer's future and body record the outcome; this one's pass through.
            let span = outer.span.clone();
            let route = self.config.route.and_then(|f| f(req.extensions()));
            if let Some(route) = route.filter(|r| outer.route.as_deref() != Some(*r)) {
                span.record("http.route", route);
                let name = super::span_name(outer.known_methods.name(req.method()), Some(route));
                // The outer span was entered before this call, so the OpenTelemetry layer has
                // started it: it takes a new name only through the span itself.
                span.context().span().update_name(name.clone());
                span.record("otel.name", name);
                let handled = Handled {
                    span: span.clone(),
                    route: Some(route.into()),
                    known_methods: outer.known_methods,
                };
                req.extensions_mut().insert(handled);
            }
            let future = self.inner.call(req);
            return ResponseFuture {
                inner: future.instrument(span.clone()),
                span,
                request: None,
                failed: false,
            };
        }
        // The latency counts the inner service's `call` too: some do their work there.
        let start = Instant::now();
        let method = req.method().clone();
        // A CONNECT request names an authority, not a path: the line says which.
        let path: Box<str> = match (req.uri().path(), req.uri().authority()) {
            ("", Some(authority)) => authority.as_str().into(),
            (path, _) => path.into(),
        };
        let known = self.config.known_methods.name(&method);
        let span = tracing::info_span!(
            target: "traceline::http",
            "HTTP request",
            otel.name = known.unwrap_or("HTTP"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = known.unwrap_or("_OTHER"),
            http.request.method_original = tracing::field::Empty,
            // None for a CONNECT request's authority-form target, which has no path.
            url.path = Some(req.uri().path()).filter(|p| !p.is_empty()),
            http.route = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            rpc.grpc.status_code = tracing::field::Empty,
            { CORRELATION_FIELD } = tracing::field::Empty,
        );
        if known.is_none() {
            span.record("http.request.method_original", method.as_str());
        }
        // For the exported span only (span fields are written on every line of the request):
        // the protocol version, and the scheme where the protocol gives it (HTTP/2's
        // `:scheme`, `http` or `https`). An HTTP/1.x request does not say whether it came over
        // TLS (the scheme of an absolute-form target is whatever the client wrote), and is left
        // without one.
        if let Some(version) = super::protocol_version(req.version()) {
            span.set_attribute("network.protocol.version", version);
        }
        if let Some(scheme) = super::url_scheme(&req) {
            span.set_attribute("url.scheme", scheme);
        }
        if let Some(query) = super::url_query(req.uri()) {
            span.set_attribute("url.query", query);
        }
        if let Some(agent) = super::user_agent(req.headers()) {
            span.set_attribute("user_agent.original", agent);
        }
        let route = self.config.route.and_then(|f| f(req.extensions()));
        if let Some(route) = route {
            span.record("http.route", route);
            span.record("otel.name", super::span_name(known, Some(route)));
        }
        let route: Option<Box<str>> = route.map(Into::into);
        // Before anything reads the span's ids: once started, its parent cannot change. With
        // no valid `traceparent` the request starts a trace of its own, whatever span the
        // server runs in (one per connection, say): unrelated requests are not one trace.
        let on = super::propagators();
        let _ = span.set_parent(trace_context::extract_with(req.headers(), on).unwrap_or_default());
        let incoming = read_incoming(req.headers(), &self.config.headers);
        let id = match &incoming.valid {
            Some(id) => id.clone(),
            None if self.config.from_trace_id => {
                let cx = span.context();
                let sc = cx.span().span_context().clone();
                if sc.is_valid() {
                    CorrelationId::from_hex_bytes(&sc.trace_id().to_bytes())
                } else {
                    CorrelationId::generate()
                }
            }
            None => CorrelationId::generate(),
        };
        span.record(CORRELATION_FIELD, id.as_str());
        if let Some((header, length)) = &incoming.rejected {
            span.in_scope(|| {
                if incoming.valid.is_some() {
                    tracing::warn!(
                        target: "traceline::http",
                        header = header.as_str(),
                        length = *length as u64,
                        "ignored an invalid incoming correlation id; used the next header's"
                    )
                } else {
                    tracing::warn!(
                        target: "traceline::http",
                        header = header.as_str(),
                        length = *length as u64,
                        "replaced an invalid incoming correlation id"
                    )
                }
            });
        }
        req.extensions_mut().insert(id.clone());
        req.extensions_mut().insert(Handled {
            span: span.clone(),
            route,
            known_methods: self.config.known_methods,
        });
        let access = Access {
            method,
            path,
            start,
            version: req.version(),
        };
        let inner = &mut self.inner;
        let called = span.in_scope(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.call(req)))
        });
        let future = match called {
            Ok(future) => future,
            // A service that panics in `call`, before any future: the same line as a handler
            // that panics while running.
            Err(panic) => {
                super::fail(&span, &mut false, super::PANIC);
                if self.config.access_log {
                    span.in_scope(|| access.log_panic(panic_message(&*panic)));
                }
                std::panic::resume_unwind(panic)
            }
        };
        ResponseFuture {
            inner: future.instrument(span.clone()),
            span,
            failed: false,
            request: Some(Box::new(RequestInfo {
                id,
                access,
                config: self.config.clone(),
            })),
        }
    }
}

/// What the access line of a request says besides its outcome.
#[derive(Debug)]
struct Access {
    method: http::Method,
    path: Box<str>,
    start: Instant,
    /// The request's HTTP version: an HTTP/1 server stops at a body's announced length, an
    /// HTTP/2 one reads the body to its end.
    version: http::Version,
}

impl Access {
    fn latency_ms(&self) -> f64 {
        self.start.elapsed().as_micros() as f64 / 1000.0
    }

    /// The access line of a response whose outcome is `status` (and `grpc`, a gRPC status
    /// seen in its headers or trailers).
    fn log(&self, status: u16, grpc: Option<u16>) {
        let latency_ms = self.latency_ms();
        let (method, path) = (self.method.as_str(), &*self.path);
        // A gRPC status speaks for the call only on a 200: any other HTTP status is a failure
        // outside gRPC (a proxy's, say), logged as such.
        match grpc.filter(|_| status == 200) {
            Some(code) if super::grpc_server_fault(code) => tracing::error!(
                target: ACCESS_TARGET,
                latency_ms,
                http.response.status_code = status,
                rpc.grpc.status_code = code,
                "{method} {path} failed with grpc-status {code}"
            ),
            Some(code) => tracing::info!(
                target: ACCESS_TARGET,
                latency_ms,
                http.response.status_code = status,
                rpc.grpc.status_code = code,
                "{method} {path} completed with grpc-status {code}"
            ),
            None if status >= 500 => tracing::error!(
                target: ACCESS_TARGET,
                latency_ms,
                http.response.status_code = status,
                "{method} {path} failed with {status}"
            ),
            None => tracing::info!(
                target: ACCESS_TARGET,
                latency_ms,
                http.response.status_code = status,
                "{method} {path} completed with {status}"
            ),
        }
    }

    /// The access line of a request the inner service answered with an error.
    fn log_error(&self, err: &dyn fmt::Display) {
        let latency_ms = self.latency_ms();
        let (method, path) = (self.method.as_str(), &*self.path);
        tracing::error!(
            target: ACCESS_TARGET,
            latency_ms,
            error = %err,
            "{method} {path} failed"
        );
    }

    /// The access line of a request whose handler panicked.
    fn log_panic(&self, message: &str) {
        let latency_ms = self.latency_ms();
        let (method, path) = (self.method.as_str(), &*self.path);
        tracing::error!(
            target: ACCESS_TARGET,
            latency_ms,
            panic = message,
            "{method} {path} panicked"
        );
    }

    /// The access line of a response whose body failed part-way (the inner body's error).
    fn log_failed_body(&self, status: u16) {
        let latency_ms = self.latency_ms();
        let (method, path) = (self.method.as_str(), &*self.path);
        tracing::error!(
            target: ACCESS_TARGET,
            latency_ms,
            http.response.status_code = status,
            "{method} {path} failed while sending its body"
        );
    }

    /// The access line of a response whose head has an interim status (1xx, not 101) as its
    /// final one: servers send no such response (hyper sends a 500 over HTTP/1 in its place,
    /// and resets the stream over HTTP/2).
    fn log_not_final(&self, status: u16) {
        let latency_ms = self.latency_ms();
        let (method, path) = (self.method.as_str(), &*self.path);
        tracing::error!(
            target: ACCESS_TARGET,
            latency_ms,
            http.response.status_code = status,
            "{method} {path} failed: the handler answered {status}, an interim status the server \
             cannot send as the response (it sends 500 or resets the stream instead)"
        );
    }

    /// The access line of a response whose body stopped before its end, not by its own
    /// error: `what` says how.
    fn log_cut(&self, status: u16, what: &str) {
        let latency_ms = self.latency_ms();
        let (method, path) = (self.method.as_str(), &*self.path);
        tracing::warn!(
            target: ACCESS_TARGET,
            latency_ms,
            http.response.status_code = status,
            "{method} {path} {what}"
        );
    }

    /// The access line of a request whose outcome is not known: `what` says why.
    fn log_incomplete(&self, what: &str) {
        let latency_ms = self.latency_ms();
        let (method, path) = (self.method.as_str(), &*self.path);
        tracing::warn!(
            target: ACCESS_TARGET,
            latency_ms,
            "{method} {path} {what}"
        );
    }
}

/// The target of the access-log lines: `traceline::http::access`. A filter can quiet them
/// (`traceline::http::access=warn`) and keep the request spans, whose target is
/// `traceline::http`.
///
/// ```
/// assert_eq!(traceline::http::ACCESS_TARGET, "traceline::http::access");
/// ```
pub const ACCESS_TARGET: &str = "traceline::http::access";

/// The text of a panic's payload (`panic!("…")` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic with no message")
}

/// A request handled by this layer (not passed through to an outer one).
#[derive(Debug)]
struct RequestInfo {
    id: CorrelationId,
    access: Access,
    config: Arc<Config>,
}

pin_project_lite::pin_project! {
    /// The response future of [`Correlation`]. The inner service's future runs inside the
    /// request span (and is dropped inside it: a handler's clean-up logs carry the request's
    /// ids). When the response is ready it adds the correlation id header and records the
    /// status on the request span; the access-log line (with the status and the latency)
    /// follows when the body has been sent ([`ResponseBody`]), or now when there is no body to
    /// send: nothing is written before. A request whose future is dropped first (the client
    /// went away, the connection was reset, a gRPC deadline passed) gets a WARN access line
    /// saying it was abandoned, with its latency. A handler that panics gets an ERROR access line
    /// with the panic's message (`panic`), and the request span is marked as an error; the
    /// panic then goes on as before (to tower-http's `CatchPanicLayer`, or the server).
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
    ///         let mut resp = http::Response::new(String::new());
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
        inner: Instrumented<F>,
        span: Span,
        // `None` once the response is ready, and for a request passed through to an outer
        // `Correlation`.
        request: Option<Box<RequestInfo>>,
        // Whether the span was marked as failed (its `error.type` set).
        failed: bool,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(request) = this.request.take() {
                if request.config.access_log {
                    this.span
                        .in_scope(|| request.access.log_incomplete("abandoned before its response"));
                }
            }
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
    E: fmt::Display,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            this.inner.as_mut().poll(cx)
        }));
        let result = match polled {
            Ok(poll) => ready!(poll),
            Err(panic) => {
                // The handler panicked: a server fault, logged with the request's ids (the
                // panic message, otherwise on stderr only), then passed on unchanged.
                if let Some(request) = this.request.take() {
                    super::fail(this.span, this.failed, super::PANIC);
                    if request.config.access_log {
                        let message = panic_message(&*panic);
                        this.span.in_scope(|| request.access.log_panic(message));
                    }
                }
                std::panic::resume_unwind(panic)
            }
        };
        let Some(request) = this.request.take() else {
            // Passed through: the outer `Correlation` answers for the request.
            return Poll::Ready(
                result.map(|r| r.map(|b| ResponseBody::plain(b, this.span.clone()))),
            );
        };
        let _entered = this.span.enter();
        let RequestInfo { id, access, config } = *request;
        match result {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let grpc = super::record_response(this.span, this.failed, &response, false);
                let headers = response.headers_mut();
                headers.insert(
                    config.response_header.clone(),
                    HeaderValue::from_str(id.as_str()).expect("validated id"),
                );
                if config.server_timing {
                    if let Some(tp) = traceparent_of(&this.span.context()) {
                        let v = format!("trace;desc={tp}");
                        headers.append("server-timing", HeaderValue::from_str(&v).expect("ASCII"));
                    }
                }
                // A gRPC answer with no status in its headers has it in its trailers: its
                // access line waits for them.
                // (Not for HEAD, whose body is never read, nor gRPC-Web, whose status is in the
                // body.)
                let trailers = grpc.is_none()
                    && status == 200
                    && access.method != http::Method::HEAD
                    && super::has_grpc_trailers(response.headers());
                // A server stops sending once a body of known length is out, without asking the
                // body for its end.
                let announced = response
                    .headers()
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                let length = announced.or_else(|| response.body().size_hint().exact());
                // Any other line waits for the end of the body: its latency is the whole
                // response's, and a body that fails or is dropped half-sent is not logged as a
                // success. Written now when no body follows.
                // Over HTTP/2 the body is read to its end (its last frame, or its error),
                // whatever length it announced.
                let stops_at_length = access.version < http::Version::HTTP_2;
                let no_body = access.method == http::Method::HEAD
                    || (access.method == http::Method::CONNECT && (200..300).contains(&status))
                    || status < 200
                    || status == 204
                    || status == 304
                    || (length == Some(0) && stops_at_length)
                    || response.body().is_end_stream();
                // Over HTTP/2 a head that ends the stream while announcing a length other
                // than 0 is malformed (but for HEAD, 204 and 304): the client resets it. (A
                // server takes the length from the body's size only for a body still to come:
                // a head that ends the stream announces only the length in its headers.)
                let malformed = !stops_at_length
                    && response.body().is_end_stream()
                    && announced.is_some_and(|len| len > 0)
                    && access.method != http::Method::HEAD
                    && status != 204
                    && status != 304;
                // An interim status as the final one: never sent as such (101 starts an
                // upgrade, and is final).
                let not_final = (100..200).contains(&status) && status != 101;
                if malformed || not_final {
                    super::fail(this.span, this.failed, super::OTHER_ERROR);
                }
                let access = if !config.access_log {
                    None
                } else if not_final {
                    access.log_not_final(status);
                    None
                } else if malformed {
                    access.log_failed_body(status);
                    None
                } else if trailers && response.body().is_end_stream() {
                    // The head ends the stream: no trailers, so no status, follow.
                    access.log_incomplete("ended without a gRPC status");
                    None
                } else if trailers || !no_body {
                    Some(Pending {
                        access,
                        status,
                        grpc,
                        trailers,
                        left: length,
                        stops_at_length,
                    })
                } else {
                    access.log(status, grpc);
                    None
                };
                let span = this.span.clone();
                let failed = *this.failed;
                Poll::Ready(Ok(response.map(|body| ResponseBody {
                    inner: body,
                    state: BodyState {
                        span,
                        pending: access.map(Box::new),
                        failed,
                        joined: false,
                    },
                })))
            }
            Err(err) => {
                super::fail(this.span, this.failed, super::error_type_of::<E>());
                if config.access_log {
                    access.log_error(&err);
                }
                Poll::Ready(Err(err))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The response body of [`Correlation`]: the inner body, produced inside the request span,
    /// which lives until the body ends.
    ///
    /// - Lines logged while a streamed body is produced (a download, a gRPC server stream)
    ///   carry the request's ids and correlation id.
    /// - The request's OpenTelemetry span ends when the body does, not when its head is sent.
    /// - The access line is written when the body ends (its last frame, its trailers, or, over
    ///   HTTP/1, the bytes its `content-length` announced, after which the server stops asking;
    ///   an HTTP/2 server reads a body to its end): its latency counts the whole body. A body
    ///   that fails or panics part-way, or that does not match the `content-length` it
    ///   announced (shorter; over HTTP/2 also longer: the client gets an error, not the
    ///   response), gets an ERROR line instead (a panic's with its message in `panic`, the span
    ///   marked, the panic passed on), and one dropped before its end (the client went away) a
    ///   WARN line, both with the status sent in the head.
    /// - A gRPC status sent in the trailers (after the messages) is recorded on the span as
    ///   `rpc.grpc.status_code`, and the call's access line, which waits for it, gives it. A
    ///   call whose body is dropped before its trailers, or whose trailers or stream end
    ///   without a status, gets a WARN access line saying so.
    ///
    /// It implements [`http_body::Body`] when the inner body does.
    ///
    /// ```
    /// use tower::{Layer, ServiceExt};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let svc = traceline::http::CorrelationLayer::new().layer(tower::service_fn(
    ///     |_req: http::Request<()>| async {
    ///         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hello")))
    ///     },
    /// ));
    /// let resp = svc.oneshot(http::Request::new(())).await.unwrap();
    /// assert_eq!(resp.into_body().into_inner(), "hello");
    /// # });
    /// ```
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        state: BodyState,
    }
}

/// The request span of a [`ResponseBody`], and the access line waiting for the end of the
/// body (written, saying so, if the body fails or is dropped first).
#[derive(Debug)]
struct BodyState {
    span: Span,
    pending: Option<Box<Pending>>,
    /// Whether the span was marked as failed (its `error.type` set).
    failed: bool,
    /// The body of a request passed through to an outer [`Correlation`], whose own body wraps
    /// this one and records the outcome: this one only produces the body in the span.
    joined: bool,
}

/// An access line waiting for the end of its response's body.
#[derive(Debug)]
struct Pending {
    access: Access,
    status: u16,
    /// The gRPC status in the headers.
    grpc: Option<u16>,
    /// A gRPC call whose status comes in the trailers.
    trailers: bool,
    /// The bytes of a body of known length still to go.
    left: Option<u64>,
    /// Whether the server stops at the announced length (HTTP/1), rather than reading the body
    /// to its end (HTTP/2).
    stops_at_length: bool,
}

impl Pending {
    /// The body ended (with or without trailers): the line waiting in `pending` is written.
    /// A body that ends short of the length it announced did not get through whole: the
    /// client gets an error, not the response.
    fn ended(pending: &mut Option<Box<Pending>>, span: &Span, failed: &mut bool) {
        if let Some(p) = pending.take() {
            if p.left.is_some_and(|left| left > 0) {
                super::fail(span, failed, super::OTHER_ERROR);
                p.access.log_failed_body(p.status);
            } else if p.trailers {
                p.access.log_incomplete("ended without a gRPC status");
            } else {
                p.access.log(p.status, p.grpc);
            }
        }
    }
}

impl Drop for BodyState {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            self.span.in_scope(|| {
                if p.trailers {
                    p.access.log_incomplete("abandoned before its gRPC status");
                } else {
                    // The client went away, or the server stopped sending.
                    p.access
                        .log_cut(p.status, "abandoned while sending its body");
                }
            });
        }
    }
}

impl<B> ResponseBody<B> {
    fn plain(inner: B, span: Span) -> Self {
        ResponseBody {
            inner,
            state: BodyState {
                span,
                pending: None,
                failed: false,
                joined: true,
            },
        }
    }

    /// The inner body.
    ///
    /// ```
    /// # use tower::{Layer, ServiceExt};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let svc = traceline::http::CorrelationLayer::new().layer(tower::service_fn(
    /// #     |_req: http::Request<()>| async { Ok::<_, std::convert::Infallible>(http::Response::new(String::from("7"))) },
    /// # ));
    /// let resp = svc.oneshot(http::Request::new(())).await.unwrap();
    /// assert_eq!(resp.body().get_ref(), "7");
    /// # });
    /// ```
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Unwraps the inner body. The request span ends here, not with the inner body, and an
    /// access line still waiting for the end of the body is written now (a gRPC call's
    /// saying that its status was not seen).
    ///
    /// ```
    /// # use tower::{Layer, ServiceExt};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let svc = traceline::http::CorrelationLayer::new().layer(tower::service_fn(
    /// #     |_req: http::Request<()>| async { Ok::<_, std::convert::Infallible>(http::Response::new(String::from("7"))) },
    /// # ));
    /// let resp = svc.oneshot(http::Request::new(())).await.unwrap();
    /// assert_eq!(resp.into_body().into_inner(), "7");
    /// # });
    /// ```
    pub fn into_inner(self) -> B {
        let ResponseBody { inner, mut state } = self;
        if let Some(p) = state.pending.take() {
            state.span.in_scope(|| {
                if p.trailers {
                    p.access.log_incomplete("unwrapped before its gRPC status");
                } else {
                    // Where the body goes from here is not seen: the line is written now.
                    p.access.log(p.status, p.grpc);
                }
            });
        }
        inner
    }
}

/// An empty body (tower-http's `Cors`, `Timeout` and others answer with `Default` bodies),
/// outside any request span.
///
/// ```
/// let body: traceline::http::ResponseBody<String> = Default::default();
/// assert_eq!(body.into_inner(), "");
/// ```
impl<B: Default> Default for ResponseBody<B> {
    fn default() -> Self {
        ResponseBody::plain(B::default(), Span::none())
    }
}

impl<B: http_body::Body> http_body::Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let state = this.state;
        let _entered = state.span.enter();
        if state.joined {
            return this.inner.poll_frame(cx);
        }
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            this.inner.as_mut().poll_frame(cx)
        }));
        let frame = match polled {
            Ok(poll) => ready!(poll),
            Err(panic) => {
                // The body panicked part-way: a server fault, as a handler that panics, not
                // a client that went away.
                super::fail(&state.span, &mut state.failed, super::PANIC);
                if let Some(p) = state.pending.take() {
                    p.access.log_panic(panic_message(&*panic));
                }
                std::panic::resume_unwind(panic)
            }
        };
        match &frame {
            Some(Ok(frame)) => {
                let mut end = false;
                if let Some(trailers) = frame.trailers_ref() {
                    let code = super::grpc_code(trailers);
                    let grpc = super::record_grpc(&state.span, &mut state.failed, code, false);
                    // Without a `grpc-status` in them, the call ended without a status: said
                    // below, as for a body that ends without trailers.
                    // A body short of the length it announced fails, whatever its status
                    // (said below).
                    let whole = |p: &Pending| p.left.is_none_or(|left| left == 0);
                    if grpc.is_some()
                        && state
                            .pending
                            .as_ref()
                            .is_some_and(|p| p.trailers && whole(p))
                    {
                        if let Some(p) = state.pending.take() {
                            p.access.log(200, grpc);
                        }
                    }
                    // Trailers are a body's last frame.
                    end = true;
                }
                let mut overrun = false;
                if let (Some(data), Some(p)) = (frame.data_ref(), state.pending.as_mut()) {
                    if let Some(left) = &mut p.left {
                        let len = bytes::Buf::remaining(data) as u64;
                        // Over HTTP/2 bytes past the announced length make the response
                        // malformed: the stream is reset. (An HTTP/1 server cuts them off.)
                        overrun = len > *left && !p.stops_at_length;
                        *left = left.saturating_sub(len);
                        end |= *left == 0 && p.stops_at_length && !p.trailers;
                    }
                }
                if overrun {
                    super::fail(&state.span, &mut state.failed, super::OTHER_ERROR);
                    if let Some(p) = state.pending.take() {
                        p.access.log_failed_body(p.status);
                    }
                }
                // A server sends no more once the body says it is at its end, its trailers are
                // out, or the length it announced.
                if end || this.inner.is_end_stream() {
                    Pending::ended(&mut state.pending, &state.span, &mut state.failed);
                }
            }
            Some(Err(_)) => {
                // The body failed part-way: the response did not get through whole.
                super::fail(
                    &state.span,
                    &mut state.failed,
                    super::error_type_of::<B::Error>(),
                );
                if let Some(p) = state.pending.take() {
                    if p.trailers {
                        p.access.log_incomplete("failed before its gRPC status");
                    } else {
                        p.access.log_failed_body(p.status);
                    }
                }
            }
            None => Pending::ended(&mut state.pending, &state.span, &mut state.failed),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

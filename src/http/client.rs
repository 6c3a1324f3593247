//! Middleware for outgoing requests: trace context and correlation id go along.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A [`tower_layer::Layer`] for HTTP clients. Every request runs in a client span (child of
/// the span that sends it, `otel.kind = "client"`, with `http.request.method` (`_OTHER` for a
/// method the conventions do not know: [`PropagateLayer::known_methods`]), `url.full`
/// (credentials and signatures in it replaced by `REDACTED`) and
/// `http.response.status_code`), and carries that span's `traceparent`, the caller's
/// `tracestate` and `baggage`, and the `x-correlation-id` in effect (see [`super::inject`]).
/// Each call so gets its own parent id, as W3C Trace Context expects. A client that adds the
/// origin below this layer (a tonic `Channel`, whose requests carry only the path here) gets
/// that path as `url.full`: put the layer where requests have their whole URL to have it.
///
/// ```
/// use tower::ServiceBuilder;
/// use traceline::http::PropagateLayer;
///
/// # async fn run() {
/// let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
///     .build_http::<http_body_util::Empty<bytes::Bytes>>();
/// let client = ServiceBuilder::new().layer(PropagateLayer::new()).service(client);
/// # let _ = client;
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct PropagateLayer {
    known_methods: super::KnownMethods,
}

impl Default for PropagateLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl PropagateLayer {
    /// A layer that injects the current span's context into every request.
    ///
    /// ```
    /// let layer = traceline::http::PropagateLayer::new();
    /// # let _ = layer;
    /// ```
    pub fn new() -> Self {
        PropagateLayer {
            known_methods: super::KnownMethods::from_env(),
        }
    }

    /// The request methods the client span names as they are; any other is
    /// `http.request.method = "_OTHER"` (itself in `http.request.method_original`) and names
    /// the span `HTTP`. The default and the environment variable are those of
    /// [`CorrelationLayer::known_methods`](super::CorrelationLayer::known_methods).
    ///
    /// ```
    /// use http::Method;
    ///
    /// let layer = traceline::http::PropagateLayer::new()
    ///     .known_methods([Method::GET, Method::from_bytes(b"PURGE").unwrap()]);
    /// # let _ = layer;
    /// ```
    pub fn known_methods(mut self, methods: impl IntoIterator<Item = http::Method>) -> Self {
        self.known_methods = super::KnownMethods::list(methods);
        self
    }
}

impl<S> Layer<S> for PropagateLayer {
    type Service = Propagate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Propagate {
            inner,
            known_methods: self.known_methods,
        }
    }
}

/// The service made by [`PropagateLayer`].
///
/// ```
/// use tower::{Layer, ServiceExt};
/// use traceline::http::PropagateLayer;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// // A "transport" that answers with the correlation id it was sent.
/// let svc = PropagateLayer::new().layer(tower::service_fn(|req: http::Request<()>| async move {
///     let sent = req.headers().get("x-correlation-id").map(|v| v.to_str().unwrap().to_owned());
///     Ok::<_, std::convert::Infallible>(http::Response::new(sent.unwrap_or_default()))
/// }));
/// let id = traceline::correlation::CorrelationId::parse("job-1").unwrap();
/// let _g = tracing::subscriber::set_default(
///     tracing_subscriber::registry().with(traceline::layer().with_writer(std::io::sink)),
/// );
/// # use tracing_subscriber::prelude::*;
/// use tracing::Instrument;
/// let resp = svc
///     .oneshot(http::Request::new(()))
///     .instrument(traceline::correlation::scope(id))
///     .await
///     .unwrap();
/// assert_eq!(resp.into_body().into_inner(), "job-1");
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct Propagate<S> {
    inner: S,
    known_methods: super::KnownMethods,
}

impl<S> Propagate<S> {
    /// Wraps `inner` (as `PropagateLayer::new().layer(inner)`).
    ///
    /// ```
    /// let client = traceline::http::Propagate::new(tower::service_fn(|_req: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
    /// }));
    /// # let _ = client;
    /// ```
    pub fn new(inner: S) -> Self {
        PropagateLayer::new().layer(inner)
    }

    /// The wrapped service.
    ///
    /// ```
    /// assert_eq!(*traceline::http::Propagate::new(7).get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    ///
    /// ```
    /// let mut client = traceline::http::Propagate::new(7);
    /// *client.get_mut() += 1;
    /// assert_eq!(client.into_inner(), 8);
    /// ```
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    ///
    /// ```
    /// assert_eq!(traceline::http::Propagate::new(7).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResB> Service<Request<B>> for Propagate<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: http_body::Body,
{
    type Response = Response<ClientBody<ResB>>;
    type Error = S::Error;
    type Future = ClientFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let known = self.known_methods.name(req.method());
        let span = tracing::info_span!(
            target: "traceline::http",
            "HTTP client request",
            otel.name = known.unwrap_or("HTTP"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
            http.request.method = known.unwrap_or("_OTHER"),
            http.request.method_original = tracing::field::Empty,
            url.full = %UrlFull(req.uri()),
            server.address = tracing::field::Empty,
            server.port = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        if known.is_none() {
            span.record("http.request.method_original", req.method().as_str());
        }
        if let Some((address, port)) = super::server_of(req.uri()) {
            span.record("server.address", address);
            if let Some(port) = port {
                span.record("server.port", i64::from(port));
            }
        }
        // Sent from a span the OpenTelemetry layer does not track (one its filter hides), in a
        // task where nothing attached that span's trace, the client span would start a trace
        // of its own: its parent is the context the sending span's trace goes out with (its
        // own, else its nearest tracked ancestor's), as `inject` sends it. Set before anything
        // reads the client span's ids.
        // With no such trace (the sending span and its ancestors untracked), the layer's own
        // choice stands: a context the code attached on the thread, say.
        let tracked = super::sent_context(&Span::current()).filter(|cx| {
            use opentelemetry::trace::TraceContextExt;
            cx.span().span_context().is_valid()
        });
        if let Some(parent) = tracked {
            let _ = span.set_parent(parent);
        }
        // The client span's context; when a filter hides it (from every layer, or from the
        // OpenTelemetry layer only), the trace of the span that sends the request.
        let cx = super::sent_context(&span).filter(|cx| {
            use opentelemetry::trace::TraceContextExt;
            cx.span().span_context().is_valid()
        });
        if let Some(cx) = cx.or_else(|| super::sent_context(&Span::current())) {
            super::inject_context(&cx, req.headers_mut());
        }
        super::inject_correlation(req.headers_mut());
        let inner = &mut self.inner;
        let called = span.in_scope(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.call(req)))
        });
        let inner = match called {
            Ok(inner) => inner,
            // A transport that panics in `call`: the exchange failed, as one whose future
            // panics; the panic goes on.
            Err(panic) => {
                super::fail(&span, &mut false, super::PANIC);
                std::panic::resume_unwind(panic)
            }
        };
        ClientFuture {
            inner,
            span,
            failed: false,
        }
    }
}

/// A request's URI as `url.full` is written: credentials in it are replaced by `REDACTED`, and
/// so are the values of the query parameters that carry signatures (`AWSAccessKeyId`,
/// `Signature`, `sig`, `X-Goog-Signature`), as OpenTelemetry's URL conventions say, and of
/// those the default deny list names (`access_token`, `api_key`…).
struct UrlFull<'a>(&'a http::Uri);

impl std::fmt::Display for UrlFull<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let uri = self.0;
        if let Some(scheme) = uri.scheme_str() {
            write!(f, "{scheme}://")?;
        }
        if let Some(authority) = uri.authority() {
            match authority.as_str().rsplit_once('@') {
                Some((user, host)) if user.contains(':') => write!(f, "REDACTED:REDACTED@{host}")?,
                Some((_, host)) => write!(f, "REDACTED@{host}")?,
                None => f.write_str(authority.as_str())?,
            }
        }
        f.write_str(uri.path())?;
        if let Some(query) = uri.query() {
            write!(f, "?{}", super::RedactedQuery(query))?;
        }
        Ok(())
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Propagate`]. When the response (or the error) is ready it
    /// records the status on the client span, and marks the span as an error for a 4xx, a 5xx,
    /// a gRPC status other than OK, a transport error, or a transport that panics; with a
    /// response the span goes on in its [`ClientBody`], else it ends when the future is dropped.
    /// Dropped before its answer (a timeout around the call, a `select!` that took another
    /// branch), the future marks the span as an error too, with `error.type = "cancelled"`:
    /// the caller got no response.
    ///
    /// ```
    /// use opentelemetry::trace::TracerProvider as _;
    /// use opentelemetry::{KeyValue, Value};
    /// use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    /// use tower::{Layer, ServiceExt};
    /// use tracing_subscriber::prelude::*;
    ///
    /// let exporter = InMemorySpanExporter::default();
    /// let provider = SdkTracerProvider::builder()
    ///     .with_simple_exporter(exporter.clone())
    ///     .build();
    /// let _g = tracing::subscriber::set_default(
    ///     tracing_subscriber::registry()
    ///         .with(traceline::otel(tracing_opentelemetry::layer().with_tracer(provider.tracer("doc"))))
    ///         .with(traceline::layer().with_writer(std::io::sink)),
    /// );
    /// // A "transport" that answers 503.
    /// let svc = traceline::http::PropagateLayer::new().layer(tower::service_fn(
    ///     |_req: http::Request<()>| async {
    ///         let mut resp = http::Response::new(String::new());
    ///         *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    ///         Ok::<_, std::convert::Infallible>(resp)
    ///     },
    /// ));
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let resp = rt
    ///     .block_on(svc.oneshot(http::Request::get("http://payments/charge").body(()).unwrap()))
    ///     .unwrap();
    /// assert_eq!(resp.status(), 503);
    /// drop(resp); // the client span ends with the response body
    ///
    /// let spans = exporter.get_finished_spans().unwrap();
    /// assert_eq!(spans.len(), 1);
    /// let client = &spans[0];
    /// assert_eq!(client.span_kind, opentelemetry::trace::SpanKind::Client);
    /// assert!(matches!(client.status, opentelemetry::trace::Status::Error { .. }));
    /// assert!(client.attributes.contains(&KeyValue::new("http.response.status_code", Value::I64(503))));
    /// ```
    pub struct ClientFuture<F> {
        #[pin]
        inner: F,
        // `Span::none()` once the answer is ready.
        span: Span,
        // Whether the span was marked as failed (its `error.type` set).
        failed: bool,
    }

    impl<F> PinnedDrop for ClientFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Unwinding from a panic of the transport, which marked the span already.
            if !this.span.is_none() && !std::thread::panicking() {
                this.span
                    .record("otel.status_description", "cancelled before the response");
                super::fail(this.span, this.failed, "cancelled");
            }
        }
    }
}

impl<F, B, E> Future for ClientFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<ClientBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let result = {
            let _entered = this.span.enter();
            let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                this.inner.as_mut().poll(cx)
            }));
            match polled {
                Ok(poll) => ready!(poll),
                // The transport panicked: the span is marked, as the server marks its request
                // span for a handler that panics, and the panic goes on.
                Err(panic) => {
                    super::fail(this.span, this.failed, super::PANIC);
                    std::panic::resume_unwind(panic)
                }
            }
        };
        match &result {
            Ok(resp) => {
                super::record_response(this.span, this.failed, resp, true);
            }
            Err(_) => super::fail(this.span, this.failed, super::error_type_of::<E>()),
        }
        // The body holds the span from here on: it ends with the body, not with this future.
        let span = std::mem::replace(this.span, Span::none());
        // A body already at its end (204, 304, a HEAD response, a trailers-only gRPC answer)
        // is often never read: the exchange is over now, and the span ends here.
        let span = match &result {
            Ok(resp) if resp.body().is_end_stream() => Span::none(),
            _ => span,
        };
        let failed = *this.failed;
        Poll::Ready(result.map(|resp| {
            resp.map(|inner| ClientBody {
                inner,
                span,
                failed,
            })
        }))
    }
}

pin_project_lite::pin_project! {
    /// The response body of [`Propagate`]. It keeps the client span open until the body ends
    /// (its last frame, an error, a panic, or this value dropped: the span's duration is the
    /// whole exchange), and records a gRPC status sent in the
    /// trailers, after the messages, on it (`rpc.grpc.status_code`; any code but OK marks
    /// the client span as an error). It implements [`http_body::Body`] when the inner body
    /// does.
    ///
    /// ```
    /// use tower::{Layer, ServiceExt};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let client = traceline::http::PropagateLayer::new().layer(tower::service_fn(
    ///     |_req: http::Request<()>| async {
    ///         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("pong")))
    ///     },
    /// ));
    /// let resp = client.oneshot(http::Request::new(())).await.unwrap();
    /// assert_eq!(*resp.body().get_ref(), "pong");
    /// assert_eq!(resp.into_body().into_inner(), "pong");
    /// # });
    /// ```
    #[derive(Debug)]
    pub struct ClientBody<B> {
        #[pin]
        inner: B,
        span: Span,
        // Whether the span was marked as failed (its `error.type` set).
        failed: bool,
    }
}

impl<B> ClientBody<B> {
    /// The inner body.
    ///
    /// ```
    /// # use tower::{Layer, ServiceExt};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let client = traceline::http::PropagateLayer::new().layer(tower::service_fn(
    /// #     |_req: http::Request<()>| async { Ok::<_, std::convert::Infallible>(http::Response::new(String::from("7"))) },
    /// # ));
    /// let resp = client.oneshot(http::Request::new(())).await.unwrap();
    /// assert_eq!(*resp.body().get_ref(), "7");
    /// # });
    /// ```
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// Unwraps the inner body (the client span then ends when this value is dropped).
    ///
    /// ```
    /// # use tower::{Layer, ServiceExt};
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # let client = traceline::http::PropagateLayer::new().layer(tower::service_fn(
    /// #     |_req: http::Request<()>| async { Ok::<_, std::convert::Infallible>(http::Response::new(String::from("7"))) },
    /// # ));
    /// let resp = client.oneshot(http::Request::new(())).await.unwrap();
    /// assert_eq!(resp.into_body().into_inner(), "7");
    /// # });
    /// ```
    pub fn into_inner(self) -> B {
        self.inner
    }
}

/// An empty body, outside any client span.
///
/// ```
/// let body: traceline::http::ClientBody<String> = Default::default();
/// assert_eq!(body.into_inner(), "");
/// ```
impl<B: Default> Default for ClientBody<B> {
    fn default() -> Self {
        ClientBody {
            inner: B::default(),
            span: Span::none(),
            failed: false,
        }
    }
}

impl<B: http_body::Body> http_body::Body for ClientBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            this.inner.as_mut().poll_frame(cx)
        }));
        let frame = match polled {
            Ok(poll) => ready!(poll),
            // The body panicked part-way: the exchange failed; the panic goes on.
            Err(panic) => {
                super::fail(this.span, this.failed, super::PANIC);
                *this.span = Span::none();
                std::panic::resume_unwind(panic)
            }
        };
        let end = match &frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    super::record_grpc(this.span, this.failed, super::grpc_code(trailers), true);
                }
                // Trailers are a body's last frame.
                frame.is_trailers() || this.inner.is_end_stream()
            }
            Some(Err(_)) => {
                super::fail(this.span, this.failed, super::error_type_of::<B::Error>());
                true
            }
            None => true,
        };
        if end {
            // The exchange is over: the client span ends now, not when the body value is
            // dropped (the caller may keep it).
            *this.span = Span::none();
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

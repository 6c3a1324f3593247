//! Middleware for outgoing requests: trace context and correlation id go along.

use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

/// A [`tower_layer::Layer`] for HTTP clients: every request gets the `traceparent`,
/// `tracestate`, `baggage` and `x-correlation-id` of the span that sends it (see
/// [`super::inject`]).
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
#[derive(Clone, Copy, Debug, Default)]
pub struct PropagateLayer {
    _priv: (),
}

impl PropagateLayer {
    /// A layer that injects the current span's context into every request.
    ///
    /// ```
    /// let layer = traceline::http::PropagateLayer::new();
    /// # let _ = layer;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for PropagateLayer {
    type Service = Propagate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Propagate { inner }
    }
}

/// The service made by [`PropagateLayer`].
#[derive(Clone, Debug)]
pub struct Propagate<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Propagate<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        super::inject(req.headers_mut());
        self.inner.call(req)
    }
}

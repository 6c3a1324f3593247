//! HTTP middleware (feature `http`): correlation ids and W3C trace context across services.
//!
//! # Server side
//! [`CorrelationLayer`] is a [`tower_layer::Layer`], so it works with axum, hyper and tonic.
//! Per request it:
//! 1. continues the caller's trace: `traceparent` / `tracestate` / `baggage` are parsed
//!    strictly ([`trace_context`]) and set as the parent of the request span before anything
//!    reads its ids; a missing or invalid `traceparent` starts a new trace, as W3C Trace
//!    Context Level 1 says, even when the server runs inside a span of its own (one per
//!    connection, say);
//! 2. takes the correlation id from `x-correlation-id`, else `x-request-id` (configurable):
//!    the first of them with a valid value ([`CorrelationId`](crate::correlation::CorrelationId)),
//!    else a new one. An invalid value is never echoed nor logged: a WARN line says that a
//!    value was refused and gives its length;
//! 3. runs the request in a span with OpenTelemetry HTTP semantic-convention fields
//!    (`http.request.method`, `_OTHER` for a method the conventions do not know, see
//!    [`CorrelationLayer::known_methods`]; `url.path`, `http.route` when
//!    [`CorrelationLayer::route`] says where the router keeps it, `http.response.status_code`,
//!    `otel.kind = "server"`,
//!    `otel.status_code = "ERROR"` on 5xx) and the correlation id, which every line logged
//!    while handling the request carries; the id is also in the request's extensions. The
//!    exported span also gets `network.protocol.version`, `url.scheme` over HTTP/2 (`http` or
//!    `https`; HTTP/1.x requests do not say), `url.query` when the request has one (signature
//!    parameters' values replaced by `REDACTED`, up to 2048 bytes), `user_agent.original` (up
//!    to 512 bytes), and for
//!    a failed request `error.type` (the status code, the error's type, `panic`, a gRPC code's
//!    name, or `_OTHER`); these are not span fields, so lines do not carry them;
//! 4. echoes `x-correlation-id` in the response (and, optionally, `server-timing`);
//! 5. writes one access-log line (target [`ACCESS_TARGET`]) when the response has been sent
//!    whole, at the end of its body: method, path, status, `latency_ms` (the whole response's),
//!    ids (for a gRPC call, with the status in its trailers); ERROR for a 5xx, for an error
//!    from the inner service (`failed`, with `error`), for a handler that panics (`panicked`,
//!    with the panic's message in `panic`; the span is marked and the panic goes on) and for
//!    a body that fails part-way; WARN for a request abandoned before its response, or its
//!    body dropped before its end;
//! 6. produces the response body inside the request span ([`ResponseBody`]): lines logged
//!    while streaming carry the request's ids, and the span ends with the body.
//!
//! ```
//! use axum::{Router, routing::get};
//! use traceline::http::CorrelationLayer;
//!
//! let app: Router = Router::new()
//!     .route("/orders", get(|| async { "ok" }))
//!     .layer(CorrelationLayer::new());
//! ```
//!
//! # Client side
//! [`inject`] writes the current span's context into outgoing headers; [`PropagateLayer`]
//! does it for every request of a tower/hyper client. With `reqwest`:
//!
//! ```ignore
//! let mut headers = http::HeaderMap::new();
//! traceline::http::inject(&mut headers);
//! let response = client.get(url).headers(headers).send().await?;
//! ```
//!
//! # Pitfalls
//! - Put `CorrelationLayer` outermost (the last `.layer` call in axum), so that everything
//!   else runs inside the request span.
//! - The request span needs the OpenTelemetry layer in the subscriber to have ids, and to be
//!   visible to it (not filtered out) for the caller's trace to continue: a service without the
//!   OpenTelemetry layer does not pass the caller's `traceparent` on. In a subscriber built by
//!   hand, a filter such as `RUST_LOG=warn` turns the INFO request and client spans off, and
//!   with them the propagation: keep them with a directive for their target
//!   (`warn,traceline=info`). `traceline::init()` keeps them on whatever the filter says.

mod client;
mod server;
pub mod trace_context;

use http::{HeaderMap, HeaderValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use client::{ClientBody, ClientFuture, Propagate, PropagateLayer};
pub use server::{
    ACCESS_TARGET, Correlation, CorrelationLayer, ResponseBody, ResponseFuture, RouteFn,
    X_CORRELATION_ID, X_REQUEST_ID,
};

use trace_context::Propagated;

/// The request methods OpenTelemetry's HTTP conventions know by default: the eight of RFC 9110
/// and PATCH.
const STANDARD_METHODS: [http::Method; 9] = [
    http::Method::GET,
    http::Method::HEAD,
    http::Method::POST,
    http::Method::PUT,
    http::Method::DELETE,
    http::Method::CONNECT,
    http::Method::OPTIONS,
    http::Method::TRACE,
    http::Method::PATCH,
];

/// The environment variable OpenTelemetry's HTTP conventions name for the list of known request
/// methods: comma-separated, case-sensitive, replacing the default list.
pub(crate) const KNOWN_METHODS_VAR: &str = "OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS";

/// Which request methods the spans name as they are. Any other method is
/// `http.request.method = "_OTHER"` (the method itself in `http.request.method_original`) and
/// names the span `HTTP`, as OpenTelemetry's HTTP conventions say: a client cannot make a new
/// span name or attribute value in the trace store with each method it invents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KnownMethods(Option<&'static [http::Method]>);

impl KnownMethods {
    /// The list in [`KNOWN_METHODS_VAR`] when it is set and not empty, else the default one.
    /// Entries that are not methods (not HTTP tokens) are left out.
    pub(crate) fn from_env() -> KnownMethods {
        KnownMethods::from_var(std::env::var(KNOWN_METHODS_VAR).ok().as_deref())
    }

    fn from_var(value: Option<&str>) -> KnownMethods {
        match value {
            Some(v) if !v.trim().is_empty() => KnownMethods::list(
                v.split(',')
                    .filter_map(|m| http::Method::from_bytes(m.trim().as_bytes()).ok()),
            ),
            _ => KnownMethods(None),
        }
    }

    /// The list `methods`, kept once per process for each different list (so that the layers
    /// holding it stay `Copy`).
    pub(crate) fn list(methods: impl IntoIterator<Item = http::Method>) -> KnownMethods {
        static LISTS: std::sync::Mutex<Vec<&'static [http::Method]>> =
            std::sync::Mutex::new(Vec::new());
        let methods: Vec<http::Method> = methods.into_iter().collect();
        let mut lists = LISTS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&kept) = lists.iter().find(|l| ***l == methods[..]) {
            return KnownMethods(Some(kept));
        }
        let kept: &'static [http::Method] = Box::leak(methods.into_boxed_slice());
        lists.push(kept);
        KnownMethods(Some(kept))
    }

    /// `method`'s name when it is known, else `None` (`_OTHER`).
    pub(crate) fn name<'m>(&self, method: &'m http::Method) -> Option<&'m str> {
        let list = self.0.unwrap_or(&STANDARD_METHODS);
        list.contains(method).then(|| method.as_str())
    }
}

/// The span name for `method` (`HTTP` for one not known), with the route when there is one.
pub(crate) fn span_name(known: Option<&str>, route: Option<&str>) -> String {
    let method = known.unwrap_or("HTTP");
    match route {
        Some(route) => format!("{method} {route}"),
        None => method.to_owned(),
    }
}

/// Which W3C propagators the middleware uses, for incoming and outgoing requests alike: both
/// unless [`init()`](crate::init) was told otherwise by `OTEL_PROPAGATORS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Propagators {
    /// `traceparent` and `tracestate`.
    pub(crate) trace_context: bool,
    /// `baggage`.
    pub(crate) baggage: bool,
}

impl Propagators {
    pub(crate) const ALL: Propagators = Propagators {
        trace_context: true,
        baggage: true,
    };
}

/// [`Propagators`] as bits: 1 trace context, 2 baggage.
static PROPAGATORS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(3);

/// Sets the propagators the middleware uses (from `OTEL_PROPAGATORS`, by `init()`).
#[cfg_attr(not(feature = "install"), allow(dead_code))]
pub(crate) fn set_propagators(p: Propagators) {
    let bits = u8::from(p.trace_context) | (u8::from(p.baggage) << 1);
    PROPAGATORS.store(bits, std::sync::atomic::Ordering::Relaxed);
}

pub(crate) fn propagators() -> Propagators {
    let bits = PROPAGATORS.load(std::sync::atomic::Ordering::Relaxed);
    Propagators {
        trace_context: bits & 1 != 0,
        baggage: bits & 2 != 0,
    }
}

/// Writes the current span's `traceparent`, `tracestate`, `baggage` and `x-correlation-id`
/// into `headers`, replacing any already there (baggage members already there are kept, their
/// values percent-encoded where they hold what a baggage value cannot, such as a space, a
/// non-ASCII letter or a `%` that starts no escape, and the caller's others added; a member
/// whose key is not a token is dropped), so the next service continues the trace.
///
/// Nothing is written for what the current span does not have (no ids outside a span or
/// without an OpenTelemetry layer; no correlation id outside a scope). A span the
/// OpenTelemetry layer does not track, such as a correlation scope under `init()`, sends the
/// trace of its nearest ancestor that it tracks.
///
/// The parent id sent is the current span's: calls made from one span all name it. For a
/// client span per call (its own id, status and duration in the trace), send through
/// [`PropagateLayer`], or call `inject` inside a span made for the call.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// traceline::http::inject(&mut headers);
/// assert!(headers.get("traceparent").is_none()); // no span here
/// ```
pub fn inject(headers: &mut HeaderMap) {
    if let Some(cx) = sent_context(&tracing::Span::current()) {
        inject_context(&cx, headers);
    }
    inject_correlation(headers);
}

/// The context whose trace a request sent from `span` carries: the span's own; for a span the
/// OpenTelemetry layer does not track (a correlation scope, or one its filter hides), its
/// nearest tracked ancestor's. `None` for a disabled span.
fn sent_context(span: &tracing::Span) -> Option<opentelemetry::Context> {
    use opentelemetry::trace::TraceContextExt;
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        return Some(cx);
    }
    Some(crate::ids::nearest_tracked_of(span).unwrap_or(cx))
}

/// `network.protocol.version` as OpenTelemetry's conventions write it (`1.1`, `2`).
fn protocol_version(version: http::Version) -> Option<&'static str> {
    Some(match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_11 => "1.1",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => return None,
    })
}

/// A server request's `url.scheme`: `http` or `https` from HTTP/2's (or HTTP/3's) `:scheme`;
/// `None` for HTTP/1.x, whose requests do not say how they came (the scheme of an
/// absolute-form target is the client's to write), and for any other scheme.
fn url_scheme<B>(req: &http::Request<B>) -> Option<&'static str> {
    if req.version() < http::Version::HTTP_2 {
        return None;
    }
    match req.uri().scheme_str()? {
        "http" => Some("http"),
        "https" => Some("https"),
        _ => None,
    }
}

/// Longest `user_agent.original` exported, in bytes: a header of any length (up to the
/// server's limit on a request's head) is the caller's to choose.
const USER_AGENT_MAX: usize = 512;

/// A request's `User-Agent`, as `user_agent.original` is exported: text only (a value that is
/// not UTF-8 is left out), cut to [`USER_AGENT_MAX`] bytes at a character boundary.
fn user_agent(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::USER_AGENT)?;
    let text = std::str::from_utf8(value.as_bytes()).ok()?;
    Some(text[..crate::json::floor_char_boundary(text, USER_AGENT_MAX)].to_owned())
}

/// Longest `url.query` exported, in bytes (after redaction): like the user agent, a query of
/// any length is the caller's to choose.
const URL_QUERY_MAX: usize = 2048;

/// A server request's `url.query`: the query without its `?` ([`RedactedQuery`]), cut to
/// [`URL_QUERY_MAX`] bytes; `None` when the request has none.
fn url_query(uri: &http::Uri) -> Option<String> {
    let mut query = RedactedQuery(uri.query()?).to_string();
    query.truncate(crate::json::floor_char_boundary(&query, URL_QUERY_MAX));
    Some(query)
}

/// A URL's query as OpenTelemetry's URL conventions say to export it (`url.query`, and the
/// query of `url.full`): the values of the parameters that carry signatures
/// (`AWSAccessKeyId`, `Signature`, `sig`, `X-Goog-Signature`) replaced by `REDACTED`, and so
/// are those of the parameters the default deny list names (`access_token`, `api_key`,
/// `password`…, see [`Redaction`](crate::Redaction)); the rest as sent.
struct RedactedQuery<'a>(&'a str);

impl std::fmt::Display for RedactedQuery<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, pair) in self.0.split('&').enumerate() {
            if i > 0 {
                f.write_str("&")?;
            }
            match pair.split_once('=') {
                Some((key, _))
                    if SIGNATURE_PARAMS.contains(&key) || crate::redact::denied_by_default(key) =>
                {
                    write!(f, "{key}=REDACTED")?;
                }
                _ => f.write_str(pair)?,
            }
        }
        Ok(())
    }
}

/// Query parameters whose values are secrets (OpenTelemetry's URL conventions).
const SIGNATURE_PARAMS: [&str; 4] = ["AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature"];

/// A client request's `server.address` (an IPv6 address without its brackets) and
/// `server.port`: the URI's port, else the scheme's (80 for `http`, 443 for `https`). `None`
/// for a URI without a host.
fn server_of(uri: &http::Uri) -> Option<(&str, Option<u16>)> {
    let host = uri.host()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = uri.port_u16().or(match uri.scheme_str() {
        Some("http") => Some(80),
        Some("https") => Some(443),
        _ => None,
    });
    Some((host, port))
}

/// `error.type` for a request that failed without an error value or a status to name it (a
/// body shorter or longer than it announced, an interim status given as the response).
const OTHER_ERROR: &str = "_OTHER";

/// `error.type` for a handler, transport or body that panicked.
const PANIC: &str = "panic";

/// `error.type` for an error of type `E`: its type's path
/// (`hyper_util::client::legacy::client::Error`),
/// as OpenTelemetry's conventions ask for an exception's type; `_OTHER` for a boxed
/// `dyn Error`, whose path says nothing of the error.
fn error_type_of<E>() -> &'static str {
    let name = std::any::type_name::<E>();
    if name.contains("dyn ") {
        OTHER_ERROR
    } else {
        name
    }
}

/// Marks a request span as failed: `otel.status_code = "ERROR"`, and the exported span's
/// `error.type`, OpenTelemetry's HTTP conventions' low-cardinality answer to "why" (the status
/// code, an error's type, [`PANIC`], [`OTHER_ERROR`]).
///
/// `error.type` is set once, by the first failure (a 500 whose body then fails stays `"500"`):
/// each value set on an OpenTelemetry span is exported, so a second would be a duplicate
/// attribute. `failed` says whether the request's span was marked before; it goes with the
/// span from the response future to the body. `error.type` goes to the exported span only,
/// not to the span's fields: those are written on every line logged in the request, and the
/// access line already says what failed.
fn fail(span: &tracing::Span, failed: &mut bool, error_type: impl Into<opentelemetry::Value>) {
    span.record("otel.status_code", "ERROR");
    if !std::mem::replace(failed, true) {
        span.set_attribute("error.type", error_type);
    }
}

/// Records a response on its request span: `http.response.status_code`, and marks it as
/// failed ([`fail`], `error.type` the status code) for 5xx, and for 4xx on a client span
/// (OpenTelemetry's HTTP conventions: a 4xx is the server's answer to a client error, the
/// client's failure); then its gRPC status, if any (see [`record_grpc`]), which it
/// returns.
fn record_response<B>(
    span: &tracing::Span,
    failed: &mut bool,
    response: &http::Response<B>,
    client: bool,
) -> Option<u16> {
    let status = response.status().as_u16();
    // As an i64: tracing-opentelemetry exports an unsigned value as a string, and the
    // conventions make the status an int.
    span.record("http.response.status_code", i64::from(status));
    if status >= 500 || (client && status >= 400) {
        fail(span, failed, status.to_string());
    }
    record_grpc(span, failed, grpc_status(response.headers()), client)
}

/// The gRPC status of a gRPC response (`content-type: application/grpc…`) that carries it in
/// its headers (a "trailers-only" response: the way gRPC servers, tonic among them, answer a
/// call that fails before any message). A value that is not a code (0–16) is UNKNOWN (2), as
/// gRPC clients read it. A status sent in trailers after a body is not seen here.
fn grpc_status(headers: &HeaderMap) -> Option<u16> {
    if !is_grpc(headers) {
        return None;
    }
    grpc_code(headers)
}

/// Whether a response is gRPC's (`content-type: application/grpc…`, gRPC-Web included).
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

/// Whether a response is gRPC over HTTP/2, whose status comes in HTTP trailers
/// (`application/grpc`, `application/grpc+proto`, `application/grpc; …`); not gRPC-Web, whose
/// trailers are a frame inside the body.
fn has_grpc_trailers(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|ct| ct.as_bytes().strip_prefix(b"application/grpc"))
        .is_some_and(|rest| rest.is_empty() || rest[0] == b'+' || rest[0] == b';')
}

/// The `grpc-status` in `headers` (a response's, or its trailers), UNKNOWN (2) for a value
/// that is not a code.
fn grpc_code(headers: &HeaderMap) -> Option<u16> {
    let value = headers.get("grpc-status")?.as_bytes();
    let code = match value {
        [d @ b'0'..=b'9'] => u16::from(d - b'0'),
        [b'1', d @ b'0'..=b'6'] => 10 + u16::from(d - b'0'),
        _ => 2,
    };
    Some(code)
}

/// Whether a gRPC status code is an error of the server's: OpenTelemetry's RPC conventions
/// mark a server span as an error for these only (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED,
/// INTERNAL, UNAVAILABLE, DATA_LOSS); the others are the caller's (like HTTP 4xx).
fn grpc_server_fault(code: u16) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// Records a gRPC status, when there is one (`grpc_status` of a response's headers,
/// `grpc_code` of its trailers), on its request span: `rpc.grpc.status_code`, and marks it as
/// failed ([`fail`], `error.type` the code's name) for a server's fault (a server span) or any
/// non-OK code (a client span). Returns the code.
fn record_grpc(
    span: &tracing::Span,
    failed: &mut bool,
    code: Option<u16>,
    client: bool,
) -> Option<u16> {
    let code = code?;
    span.record("rpc.grpc.status_code", i64::from(code));
    if (client && code != 0) || (!client && grpc_server_fault(code)) {
        fail(span, failed, grpc_code_name(code));
    }
    Some(code)
}

/// A gRPC status code's name (`UNAVAILABLE`), as OpenTelemetry's RPC conventions give it in
/// `error.type`; [`OTHER_ERROR`] past the 17 codes (never given: unknown values read as 2).
fn grpc_code_name(code: u16) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.get(usize::from(code)).copied().unwrap_or(OTHER_ERROR)
}

fn inject_correlation(headers: &mut HeaderMap) {
    if let Some(id) = crate::correlation::current() {
        headers.insert(
            X_CORRELATION_ID,
            HeaderValue::from_str(id.as_str()).expect("validated id"),
        );
    }
}

fn inject_context(cx: &opentelemetry::Context, headers: &mut HeaderMap) {
    let Some(tp) = server::traceparent_of(cx) else {
        return;
    };
    let on = propagators();
    let propagated = cx.get::<Propagated>();
    if on.trace_context {
        inject_trace_context(cx, &tp, propagated, headers);
    }
    if on.baggage {
        inject_baggage(propagated, headers);
    }
}

fn inject_trace_context(
    cx: &opentelemetry::Context,
    tp: &str,
    propagated: Option<&Propagated>,
    headers: &mut HeaderMap,
) {
    use opentelemetry::trace::TraceContextExt;
    headers.insert("traceparent", HeaderValue::from_str(tp).expect("ASCII"));
    // The caller's `tracestate` as it came, with the caller's trace only: a handler that
    // continues another trace (a queued message's) sends that trace's own state.
    let trace_id = cx.span().span_context().trace_id();
    let state = propagated
        .and_then(|p| p.tracestate.as_ref())
        .filter(|(t, _)| *t == trace_id)
        .map(|(_, s)| s.clone())
        .or_else(|| {
            let h = cx.span().span_context().trace_state().header();
            (!h.is_empty()).then_some(h)
        });
    match state.and_then(|s| HeaderValue::from_str(&s).ok()) {
        Some(v) => {
            headers.insert("tracestate", v);
        }
        None => {
            headers.remove("tracestate");
        }
    }
}

fn inject_baggage(propagated: Option<&Propagated>, headers: &mut HeaderMap) {
    let incoming = propagated.and_then(|p| p.baggage.as_deref());
    if !headers.contains_key("baggage") {
        if let Some(b) = incoming.and_then(|b| HeaderValue::from_str(b).ok()) {
            headers.insert("baggage", b);
        }
        return;
    }
    // Members the request already carries (set by the application) stay, made valid where
    // they can be (their values percent-encoded), and win over the caller's members of the
    // same key; the caller's others are added.
    let merged = trace_context::merge_baggage(
        headers.get_all("baggage").iter().map(HeaderValue::as_bytes),
        incoming,
    );
    match merged.and_then(|b| HeaderValue::from_str(&b).ok()) {
        Some(b) => {
            headers.insert("baggage", b);
        }
        // Nothing valid in it: no header at all.
        None => {
            headers.remove("baggage");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::KnownMethods;
    use http::Method;

    #[test]
    fn the_default_known_methods_are_rfc_9110s_and_patch() {
        let known = KnownMethods::from_var(None);
        for m in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        ] {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(known.name(&m), Some(m.as_str()));
        }
        for m in ["PURGE", "get", "PROPFIND", "FOOBAR"] {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(known.name(&m), None, "{m}");
        }
        // Empty or blank means unset.
        assert_eq!(KnownMethods::from_var(Some("")), known);
        assert_eq!(KnownMethods::from_var(Some("  ")), known);
    }

    #[test]
    fn the_environment_list_replaces_the_default_one() {
        let known = KnownMethods::from_var(Some("GET, PURGE,,bad method,post"));
        let name = |m: &str| {
            known
                .name(&Method::from_bytes(m.as_bytes()).unwrap())
                .map(str::to_owned)
        };
        assert_eq!(name("GET").as_deref(), Some("GET"));
        assert_eq!(name("PURGE").as_deref(), Some("PURGE"));
        // Case-sensitive, and a full replacement of the default list.
        assert_eq!(name("post").as_deref(), Some("post"));
        assert_eq!(name("POST"), None);
        assert_eq!(name("DELETE"), None);
    }
}

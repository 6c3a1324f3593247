//! One-call install: the global subscriber, configured from the environment.
//!
//! [`init()`](crate::init) installs, as the global default:
//! - a `tracing_subscriber::EnvFilter` from `RUST_LOG` (default `info`);
//! - the OpenTelemetry layer with an SDK tracer provider, exporting over OTLP when an endpoint
//!   is set (or `OTEL_TRACES_EXPORTER=otlp` asks for the local default). With no endpoint, or
//!   with `OTEL_TRACES_EXPORTER=none`, the provider has no exporter: lines still carry real
//!   ids;
//! - traceline's JSON [`Layer`](crate::Layer);
//! - the `log` crate bridge, so `log::info!` from dependencies comes out as the same lines;
//! - the global OpenTelemetry tracer provider and text-map propagator.
//!
//! It returns a [`Guard`] that flushes spans and lines when dropped.
//!
//! ```no_run
//! fn main() -> Result<(), traceline::InitError> {
//!     let _guard = traceline::init()?;
//!     let span = tracing::info_span!("createOrder", order.customer_id = 42);
//!     let _entered = span.enter();
//!     tracing::info!("order created"); // {"level":"INFO",...,"traceId":"…","spanId":"…"}
//!     Ok(())
//! }
//! ```
//!
//! # Settings
//! Each setting is taken from, in this order, the first that gives one:
//! 1. the [`Builder`] method, in code;
//! 2. the environment variable;
//! 3. the default.
//!
//! An empty variable counts as unset. A value that cannot be used is an [`InitError`] naming
//! the variable, never a silent fallback.
//!
//! | Builder | Environment | Default |
//! |---|---|---|
//! | [`filter`](Builder::filter) | `RUST_LOG` | `info` (it chooses the lines; spans at INFO and above stay on: see below) |
//! | [`service_name`](Builder::service_name), else the [`schema`](Builder::schema)'s own | `OTEL_SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES` | none (the resource says `unknown_service:<executable>`) |
//! | [`service_version`](Builder::service_version) and [`environment`](Builder::environment), else the [`schema`](Builder::schema)'s own | `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k2=v2`, values %-encoded; `service.version`, `deployment.environment.name` or `deployment.environment` on the lines too) | none |
//! | [`otlp_endpoint`](Builder::otlp_endpoint) | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is), `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended for HTTP) | none: ids, no export |
//! | – | `OTEL_TRACES_EXPORTER` (`otlp`, `none`) | `otlp` when an endpoint is set; `otlp` with no endpoint sends to `http://localhost:4318` (`:4317` for gRPC) |
//! | – | `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, `OTEL_EXPORTER_OTLP_HEADERS` (`k=v,k2=v2`, values %-encoded) | none |
//! | – | `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds; `0`: no limit) | `10000` |
//! | – | `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`, `OTEL_EXPORTER_OTLP_COMPRESSION` (`gzip`, `none`) | `none` |
//! | [`protocol`](Builder::protocol) | `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc`, `http/protobuf`) | `http/protobuf` |
//! | [`sample_ratio`](Builder::sample_ratio), [`sampler`](Builder::sampler) | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | `parentbased_always_on` |
//! | [`sdk_disabled`](Builder::sdk_disabled) | `OTEL_SDK_DISABLED` (`true`/`false`) | `false` |
//! | – | `OTEL_PROPAGATORS` (`tracecontext`, `baggage`, `none`): the global OpenTelemetry propagator, and what the [`http`](crate::http) middleware reads from requests and sends on (`x-correlation-id` goes out whatever the setting) | `tracecontext,baggage` |
//! | [`schema`](Builder::schema) | `TRACELINE_SCHEMA` (`default`, `otel`, `ecs`, `gcp:<project-id>` or `gcp` with `GOOGLE_CLOUD_PROJECT`, `datadog`) | [`Schema::default`](crate::Schema::default) |
//! | [`writer`](Builder::writer) | – | stdout, blocking |
//!
//! `OTEL_TRACES_SAMPLER` accepts `always_on`, `always_off`, `traceidratio`,
//! `parentbased_always_on`, `parentbased_always_off` and `parentbased_traceidratio`;
//! `OTEL_TRACES_SAMPLER_ARG` is the ratio (0.0 to 1.0, default 1.0) for the two ratio samplers.
//! Where a setting has a `TRACES_` variable and a generic one, the `TRACES_` one wins when set.
//! With `OTEL_SDK_DISABLED=true` no tracer provider is installed and lines carry no ids; the
//! exporter's and sampler's settings are then not read (nor, with `OTEL_TRACES_EXPORTER=none`,
//! the exporter's), so they cannot stop the program from starting. A caller's `traceparent` is
//! still passed on to the services this one calls (OpenTelemetry's no-op tracer, as its API
//! works without an SDK), so the trace is not broken at this service.
//!
//! # `RUST_LOG`: lines, not spans
//! The filter chooses which lines are written. Spans at INFO and above stay on whatever level
//! it sets for their target, as long as that level is not `off`: `RUST_LOG=warn` keeps the
//! `traceId` on the WARN and ERROR lines logged inside them and still exports the traces,
//! while `RUST_LOG=myapp=debug` (every other target off) keeps the spans of dependencies out,
//! and `RUST_LOG=warn,noisy=off` turns `noisy`'s spans off. Spans below INFO follow the filter.
//! traceline's own spans (the correlation scope, the HTTP request and client spans) stay on
//! unless a directive naming their target turns it off (`traceline=off`): they carry the
//! correlation id and continue the caller's trace. Quiet the access log with
//! `traceline::http::access=warn`.
//!
//! Three kinds of lines are kept by a filter that does not name them: `record_error`'s
//! (target `traceline::error`, the application's own error), the WARN saying that lines were
//! dropped (target `traceline::install`, see [`Writer::queue_limit`](crate::install::Writer::queue_limit)),
//! and the OpenTelemetry SDK's diagnostics at WARN (`opentelemetry*` targets: export errors, an
//! unreachable collector; their targets are the crates' published names, like
//! `opentelemetry-otlp`, and a directive naming `opentelemetry_otlp` applies to them too). None
//! goes past the filter's default level when that is stricter (`error`, `off`).
//!
//! `service.name` (and `service.version`, `deployment.environment.name` when given in
//! `OTEL_RESOURCE_ATTRIBUTES`) are written on every line as well as set on the resource.
//!
//! # Sampling and ids
//! Every span gets ids, sampled or not, and every line inside a span carries them with
//! `traceFlags` saying whether the trace was sampled: sampling 1 % of traces for export never
//! hides the ids of the other 99 % from the logs.
//!
//! # What the OpenTelemetry layer sees
//! It gets spans only: log events are not copied into spans as span events (that costs an
//! allocation per event and duplicates what the lines already ship). Turn it on with
//! [`Builder::span_events`]. An `error!` inside a span still marks the exported span as
//! failed (status ERROR), as with `tracing-opentelemetry` alone: in Tempo or Jaeger the span
//! shows red, and its lines (same `traceId`) say why. Two kinds of spans are kept from it: traceline's correlation
//! scope (`target: traceline::correlation`, internal, never exported) and every span whose
//! target is the exporter's network stack (`h2`, `hyper`, `hyper_util`, `tonic`, `tower`,
//! `reqwest`, `opentelemetry*`), which would otherwise export themselves in a loop. That is
//! by target: the application's own spans under those targets are not exported either (its
//! request spans from traceline's middleware are, whatever the server library).
//!
//! # Shutting down on SIGTERM
//! Wait for the signal beside the server, then let the guard go out of scope (or call
//! [`Guard::shutdown`]): the spans of the last requests are exported and queued lines are
//! written before the process exits. `examples/shutdown.rs` runs this:
//!
//! ```no_run
//! # #[cfg(unix)]
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let guard = traceline::init()?;
//!     let server = tokio::spawn(async { /* serve requests */ });
//!
//!     let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
//!     tokio::select! {
//!         _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
//!         _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: shutting down"),
//!     }
//!     server.abort(); // or a graceful stop of your server
//!     guard.shutdown()?; // flushes spans and lines, bounded by the shutdown timeout
//!     Ok(())
//! }
//! # #[cfg(not(unix))] fn main() {}
//! ```

mod config;
mod error;
pub(crate) mod guard;
mod runtime;
pub(crate) mod writer;

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::level_filters::LevelFilter;
use tracing_core::{Metadata, subscriber::Interest};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Filter, Layer as _, SubscriberExt as _};

pub use config::Protocol;
pub use error::InitError;
pub use guard::{Guard, OutputGuard, ShutdownError};
pub use writer::{DEFAULT_QUEUE_BYTES, DEFAULT_QUEUE_LIMIT, MAX_QUEUE_LIMIT, Rotation, Writer};

use config::EnvLookup;
use runtime::ExporterRuntime;

use crate::Schema;

/// Installs the global subscriber configured from the environment: see the
/// [module docs](crate::install) for what is installed and which variables are read.
///
/// Returns an error, never panics, when a setting is invalid or a global subscriber is already
/// set (so calling it twice is an error).
///
/// ```no_run
/// let _guard = traceline::init()?;
/// tracing::info!("ready");
/// # Ok::<(), traceline::InitError>(())
/// ```
pub fn init() -> Result<Guard, InitError> {
    builder().try_init()
}

/// Like [`init()`], but panics with the [`InitError`]'s message (which says what to fix).
///
/// ```no_run
/// let _guard = traceline::init_or_panic();
/// ```
pub fn init_or_panic() -> Guard {
    match init() {
        Ok(guard) => guard,
        Err(err) => panic!("traceline::init failed: {err}"),
    }
}

/// Starts a [`Builder`]: the same install as [`init()`], with settings given in code.
///
/// ```no_run
/// let _guard = traceline::builder()
///     .service_name("orders")
///     .otlp_endpoint("http://localhost:4317")
///     .protocol(traceline::install::Protocol::Grpc)
///     .sample_ratio(0.1)
///     .filter("info,orders=debug")
///     .try_init()?;
/// # Ok::<(), traceline::InitError>(())
/// ```
pub fn builder() -> Builder {
    Builder::default()
}

/// Settings for [`init()`] given in code; each one set here wins over its environment
/// variable (see the [module docs](crate::install#settings)). Made by [`builder()`].
///
/// ```
/// // An invalid setting is an error, before anything is installed.
/// let err = traceline::builder().sample_ratio(1.5).try_init().unwrap_err();
/// assert!(err.to_string().contains("sample"), "{err}");
/// ```
pub struct Builder {
    env: EnvLookup,
    /// With the process environment (not [`Builder::env`]'s lookup): the variables read whose
    /// values are not UTF-8.
    not_unicode: Option<config::NotUnicode>,
    service_name: Option<String>,
    service_version: Option<String>,
    environment: Option<String>,
    endpoint: Option<String>,
    protocol: Option<Protocol>,
    sampler: Option<Sampler>,
    sdk_disabled: Option<bool>,
    schema: Option<Schema>,
    writer: Option<Writer>,
    filter: Option<String>,
    span_events: bool,
    log_bridge: bool,
    timeout: Duration,
    redaction: Option<crate::Redaction>,
    max_field_len: Option<usize>,
    max_line_len: Option<usize>,
    layers: Vec<UserLayer>,
    /// The first setting that cannot be used (a layer given to [`Builder::layer`], a ratio
    /// out of range): an error from `try_init` whatever settings come after it.
    rejected: Option<InitError>,
}

/// A layer added with [`Builder::layer`].
type UserLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("service_name", &self.service_name)
            .field("service_version", &self.service_version)
            .field("environment", &self.environment)
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("sdk_disabled", &self.sdk_disabled)
            .field("filter", &self.filter)
            .field("writer", &self.writer)
            .field("span_events", &self.span_events)
            .field("log_bridge", &self.log_bridge)
            .field("timeout", &self.timeout)
            .field("layers", &self.layers.len())
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        let (env, not_unicode) = config::process_env();
        Builder {
            env,
            not_unicode: Some(not_unicode),
            service_name: None,
            service_version: None,
            environment: None,
            endpoint: None,
            protocol: None,
            sampler: None,
            sdk_disabled: None,
            schema: None,
            writer: None,
            filter: None,
            span_events: false,
            log_bridge: true,
            timeout: Duration::from_secs(5),
            redaction: None,
            max_field_len: None,
            max_line_len: None,
            layers: Vec::new(),
            rejected: None,
        }
    }
}

impl Builder {
    /// Which fields are written as `"[REDACTED]"`, as [`Layer::with_redaction`](crate::Layer::with_redaction)
    /// (default: [`Redaction::default`](crate::Redaction::default)). The OTLP export sends the
    /// span attributes it denies (span fields, recorded by the OpenTelemetry layer under their
    /// names) as `"[REDACTED]"` too.
    ///
    /// ```
    /// use traceline::Redaction;
    /// let b = traceline::builder().redaction(Redaction::default().deny("ssn"));
    /// # let _ = b;
    /// ```
    pub fn redaction(mut self, redaction: crate::Redaction) -> Self {
        self.redaction = Some(redaction);
        self
    }

    /// The length limit of field values, as
    /// [`Layer::with_max_field_len`](crate::Layer::with_max_field_len).
    ///
    /// ```
    /// let b = traceline::builder().max_field_len(4096);
    /// # let _ = b;
    /// ```
    pub fn max_field_len(mut self, bytes: usize) -> Self {
        self.max_field_len = Some(bytes);
        self
    }

    /// The length limit of lines, as
    /// [`Layer::with_max_line_len`](crate::Layer::with_max_line_len).
    ///
    /// ```
    /// let b = traceline::builder().max_line_len(64 * 1024);
    /// # let _ = b;
    /// ```
    pub fn max_line_len(mut self, bytes: usize) -> Self {
        self.max_line_len = Some(bytes);
        self
    }

    /// Adds `layer` to the subscriber `init()` installs, beside traceline's: a human-readable
    /// `fmt` layer on stderr, an error reporter, a metrics layer. It sees the events and spans
    /// the filter (`RUST_LOG`, [`filter`](Self::filter)) lets through, and the spans kept for
    /// the trace; give it a per-layer filter (`.with_filter(…)`) to see fewer. Layers run in
    /// the order they are added, before the OpenTelemetry layer and traceline's.
    ///
    /// `init()` has its OpenTelemetry layer already: a second one would panic on the first
    /// span (both store their data in the span), so `tracing-opentelemetry`'s layer, bare,
    /// filtered or in [`otel`](crate::otel()), is refused with an error from `try_init` (one
    /// behind a `Box<dyn Layer>` cannot be seen). Configure the trace through the builder and
    /// `OTEL_*`, or build the subscriber yourself around [`layer()`](crate::layer()).
    ///
    /// ```no_run
    /// use tracing_subscriber::{Layer as _, filter::LevelFilter};
    ///
    /// // JSON lines on stdout; WARN and ERROR also as readable text on stderr.
    /// let _guard = traceline::builder()
    ///     .layer(
    ///         tracing_subscriber::fmt::layer()
    ///             .with_writer(std::io::stderr)
    ///             .with_filter(LevelFilter::WARN),
    ///     )
    ///     .try_init()?;
    /// # Ok::<(), traceline::InitError>(())
    /// ```
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
    {
        // `tracing-opentelemetry`'s layer, bare, filtered or wrapped (`traceline::otel`), by the
        // name of the layer's type: one behind a `Box<dyn Layer>` cannot be seen.
        if std::any::type_name::<L>().contains("tracing_opentelemetry::layer::OpenTelemetryLayer<")
        {
            self.rejected.get_or_insert(InitError::invalid(
                "Builder::layer",
                "tracing_opentelemetry::OpenTelemetryLayer",
                "init() has its OpenTelemetry layer already, and a second one panics on the \
                 first span: configure the trace with the builder and OTEL_* variables, or build \
                 the subscriber yourself with traceline::layer() and traceline::otel(...)",
            ));
            return self;
        }
        self.layers.push(Box::new(layer));
        self
    }

    /// The service name, on the resource and on every line (`service.name`). Wins over a name
    /// the schema sets ([`Builder::schema`]), which wins over `OTEL_SERVICE_NAME` and
    /// `OTEL_RESOURCE_ATTRIBUTES`: lines and resource always carry the same name.
    ///
    /// ```
    /// let b = traceline::builder().service_name("orders");
    /// # let _ = b;
    /// ```
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// The service version, on the resource and on every line (`service.version`). Wins over
    /// a version the schema sets, which wins over `service.version` in
    /// `OTEL_RESOURCE_ATTRIBUTES`.
    ///
    /// ```
    /// let b = traceline::builder().service_version(env!("CARGO_PKG_VERSION"));
    /// # let _ = b;
    /// ```
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.service_version = Some(version.into());
        self
    }

    /// The deployment environment (`production`, `staging`), on the resource
    /// (`deployment.environment.name`) and on every line (under the schema's key:
    /// `deployment.environment`, ECS's `service.environment`, Datadog's `dd.env`). Wins over
    /// one the schema sets, which wins over `OTEL_RESOURCE_ATTRIBUTES`.
    ///
    /// ```
    /// let b = traceline::builder().environment("production");
    /// # let _ = b;
    /// ```
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }

    /// The OTLP collector's URL: a base URL, as in `OTEL_EXPORTER_OTLP_ENDPOINT` (over HTTP,
    /// `/v1/traces` is appended), or the full traces URL, ending in `/v1/traces`, taken as it
    /// is. Wins over both endpoint variables.
    ///
    /// ```
    /// let b = traceline::builder().otlp_endpoint("http://localhost:4318");
    /// # let _ = b;
    /// ```
    pub fn otlp_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The OTLP transport. Wins over `OTEL_EXPORTER_OTLP_PROTOCOL`.
    ///
    /// ```
    /// use traceline::install::Protocol;
    /// let b = traceline::builder().protocol(Protocol::Grpc);
    /// # let _ = b;
    /// ```
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// Samples this fraction of new traces (0.0 to 1.0) and follows the caller's decision for
    /// continued ones: `parentbased_traceidratio`. Wins over `OTEL_TRACES_SAMPLER`. Lines keep
    /// their ids either way.
    ///
    /// ```
    /// let b = traceline::builder().sample_ratio(0.05);
    /// # let _ = b;
    /// ```
    pub fn sample_ratio(mut self, ratio: f64) -> Self {
        match config::check_ratio("Builder::sample_ratio", ratio) {
            Ok(r) => {
                self.sampler = Some(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                    r,
                ))));
            }
            // Kept whatever comes after: a later `sampler` does not make it right.
            Err(err) => {
                self.rejected.get_or_insert(err);
            }
        }
        self
    }

    /// Any OpenTelemetry SDK sampler. Wins over `OTEL_TRACES_SAMPLER`.
    ///
    /// ```
    /// use opentelemetry_sdk::trace::Sampler;
    /// let b = traceline::builder().sampler(Sampler::AlwaysOn);
    /// # let _ = b;
    /// ```
    pub fn sampler(mut self, sampler: Sampler) -> Self {
        self.sampler = Some(sampler);
        self
    }

    /// Turns the OpenTelemetry SDK off (`true`) or on (`false`), whatever
    /// `OTEL_SDK_DISABLED` says. Off means no tracer provider and no ids on lines; a caller's
    /// `traceparent` is still passed on to the services this one calls, as OpenTelemetry's
    /// API does without an SDK.
    ///
    /// ```
    /// let b = traceline::builder().sdk_disabled(false);
    /// # let _ = b;
    /// ```
    pub fn sdk_disabled(mut self, disabled: bool) -> Self {
        self.sdk_disabled = Some(disabled);
        self
    }

    /// The line format. Wins over `TRACELINE_SCHEMA`. A service name, version or environment
    /// set on the schema (or as its static field under that key) goes on the resource too,
    /// and wins over the environment's (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`); a
    /// name, version or environment set with [`Builder::service_name`],
    /// [`Builder::service_version`] or [`Builder::environment`] wins over the schema's.
    ///
    /// ```
    /// use traceline::{Key, Schema};
    /// let b = traceline::builder().schema(Schema::default().rename(Key::TraceId, "trace_id"));
    /// # let _ = b;
    /// ```
    pub fn schema(mut self, schema: Schema) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Where lines go (default: stdout, blocking).
    ///
    /// ```
    /// use traceline::install::Writer;
    /// let b = traceline::builder().writer(Writer::stderr().non_blocking());
    /// # let _ = b;
    /// ```
    pub fn writer(mut self, writer: Writer) -> Self {
        self.writer = Some(writer);
        self
    }

    /// The filter, in `RUST_LOG` syntax (`info,orders=debug,hyper=warn`). Wins over
    /// `RUST_LOG`.
    ///
    /// ```
    /// let b = traceline::builder().filter("warn,orders=info");
    /// # let _ = b;
    /// ```
    pub fn filter(mut self, directives: impl Into<String>) -> Self {
        self.filter = Some(directives.into());
        self
    }

    /// Also records every log event as an event on its OpenTelemetry span (off by default;
    /// either way an ERROR event marks its span as failed). `record_error`'s own line is not
    /// copied: the error is on the span already, as one `exception` event.
    ///
    /// ```
    /// let b = traceline::builder().span_events(true);
    /// # let _ = b;
    /// ```
    pub fn span_events(mut self, on: bool) -> Self {
        self.span_events = on;
        self
    }

    /// Whether records of the `log` crate are turned into lines (on by default). Turn it off
    /// when another `log` logger is installed.
    ///
    /// ```
    /// let b = traceline::builder().log_bridge(false);
    /// # let _ = b;
    /// ```
    pub fn log_bridge(mut self, on: bool) -> Self {
        self.log_bridge = on;
        self
    }

    /// How long [`Guard`] waits for the exporter, and for a non-blocking writer's output to
    /// take the lines still queued, when shutting down (default 5 s each). Lines the output has
    /// not taken by then are counted as dropped ([`Guard::stats`]), so the counts are complete
    /// once the guard is gone (but for a line whose write has not returned a second later).
    /// `Duration::MAX` waits as long as it takes. With the gRPC protocol outside a
    /// multi-threaded tokio runtime, the exporter's own runtime then takes up to 1 s more to
    /// stop.
    ///
    /// ```
    /// let b = traceline::builder().shutdown_timeout(std::time::Duration::from_secs(2));
    /// # let _ = b;
    /// ```
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reads settings not given in code from `lookup` instead of the process environment (for
    /// tests, or settings kept elsewhere). `lookup` gets a variable name and returns its value.
    /// (`opentelemetry-otlp` also reads the header, timeout and compression variables from the
    /// process environment itself: its headers are added to these, and its timeout and
    /// compression apply when `lookup` sets none.)
    ///
    /// ```
    /// let b = traceline::builder().env(|name| match name {
    ///     "OTEL_SERVICE_NAME" => Some("orders".to_string()),
    ///     _ => None,
    /// });
    /// # let _ = b;
    /// ```
    pub fn env(mut self, lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        self.env = std::sync::Arc::new(lookup);
        self.not_unicode = None;
        self
    }

    /// Checks every setting, then installs the global subscriber. Nothing is installed when
    /// an error is returned for a setting, or when a global subscriber is already set.
    ///
    /// ```no_run
    /// let _guard = traceline::builder().service_name("orders").try_init()?;
    /// # Ok::<(), traceline::InitError>(())
    /// ```
    pub fn try_init(self) -> Result<Guard, InitError> {
        let plan = self.plan()?;
        if tracing::dispatcher::has_been_set() {
            return Err(InitError::AlreadyInstalled);
        }
        plan.install()
    }

    /// Resolves and checks every setting without side effects.
    fn plan(self) -> Result<Plan, InitError> {
        // A variable read whose value is not UTF-8 read as unset: refused, whatever else the
        // settings gave (it may be why they failed).
        let not_unicode = self.not_unicode.clone();
        let plan = self.plan_settings();
        let names = not_unicode.map(|n| n.lock().unwrap_or_else(|e| e.into_inner()).clone());
        match names.as_deref().and_then(config::not_unicode_error) {
            Some(err) => Err(err),
            None => plan,
        }
    }

    /// [`Builder::plan`], reading the settings.
    fn plan_settings(self) -> Result<Plan, InitError> {
        if let Some(err) = self.rejected {
            return Err(err);
        }
        let env = &self.env;
        let get = |name: &str| config::get(env, name);

        let filter_src = match self.filter {
            Some(f) => ("Builder::filter", f),
            None => match get("RUST_LOG") {
                Some(f) => ("RUST_LOG", f),
                None => ("RUST_LOG", "info".to_string()),
            },
        };
        // `warn, myapp=debug`: `EnvFilter` would read ` myapp` (with the space) as a target;
        // the spaces around each directive are dropped, as they were meant.
        let filter_src = (
            filter_src.0,
            filter_src
                .1
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .collect::<Vec<_>>()
                .join(","),
        );
        // Nothing but commas and spaces (`RUST_LOG=" , "`) says no more than an empty
        // variable: the default, not a filter that lets only errors through.
        let filter_src = if filter_src.1.is_empty() {
            (filter_src.0, "info".to_string())
        } else {
            filter_src
        };
        let mut filter = EnvFilter::builder().parse(&filter_src.1).map_err(|err| {
            InitError::invalid(
                filter_src.0,
                &filter_src.1,
                format!("{err}; expected directives such as `info` or `warn,my_crate=debug`"),
            )
        })?;
        let directives = Directives::parse(&filter_src.1);
        // The SDK's own INFO lines ("global tracer provider is set") are noise; its warnings
        // and export errors are kept (for each target no directive names), unless the
        // filter's default is stricter (`error`, `off`).
        let level = directives.capped(LevelFilter::WARN);
        for quiet in OTEL_INTERNAL {
            if !directives.names(quiet) && !directives.names(&quiet.replace('-', "_")) {
                let directive = format!("{quiet}={level}").parse().expect("valid directive");
                filter = filter.add_directive(directive);
            }
        }
        // The SDK's diagnostics use the crates' published names as targets
        // (`opentelemetry-otlp`): a directive naming the Rust name applies to them too.
        for (target, level, _) in &directives.0 {
            if let Some(rest) = target.strip_prefix("opentelemetry_") {
                if rest.starts_with("otlp") || rest.starts_with("http") {
                    let twin = format!("opentelemetry-{rest}={level}");
                    if let Ok(directive) = twin.parse() {
                        filter = filter.add_directive(directive);
                    }
                }
            }
        }
        // Kept by a filter that does not name them (`myapp=debug`,
        // `…,traceline::http::access=warn`): the line `record_error` writes, the application's
        // error; and the WARN saying lines were dropped, which a filter that keeps only the
        // application's targets must not hide.
        for (target, cap) in [
            ("traceline::error", LevelFilter::ERROR),
            ("traceline::install", LevelFilter::WARN),
        ] {
            if !directives.names(target) {
                let level = directives.capped(cap);
                let directive = format!("{target}={level}")
                    .parse()
                    .expect("valid directive");
                filter = filter.add_directive(directive);
            }
        }

        let disabled = match self.sdk_disabled {
            Some(d) => d,
            None => match get("OTEL_SDK_DISABLED") {
                Some(v) => config::boolean("OTEL_SDK_DISABLED", &v)?,
                None => false,
            },
        };

        let mut attributes =
            config::resource_attributes(get("OTEL_RESOURCE_ATTRIBUTES").as_deref())?;
        let attr = |key: &str| {
            attributes
                .iter()
                .rev()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.as_str().into_owned())
        };
        let schema = match self.schema {
            Some(s) => s,
            None => match get("TRACELINE_SCHEMA") {
                Some(name) => config::schema_preset(&name, get)?,
                None => Schema::default(),
            },
        };
        // One name, version and environment for the lines and the resource, code first:
        // `Builder::service_name`, then the schema's own, then the environment's.
        let service_name = self
            .service_name
            .or_else(|| schema.service_setting(0))
            .or_else(|| get("OTEL_SERVICE_NAME"))
            .or_else(|| attr("service.name"));
        // Set in code: the builder's, else the schema's.
        let from_schema = [
            self.service_version.or_else(|| schema.service_setting(1)),
            self.environment.or_else(|| schema.service_setting(2)),
        ];
        let service_version = from_schema[0].clone().or_else(|| attr("service.version"));
        let environment = from_schema[1].clone().or_else(|| {
            attr("deployment.environment.name").or_else(|| attr("deployment.environment"))
        });
        // Each resolved setting replaces what `OTEL_RESOURCE_ATTRIBUTES` had under its keys
        // (the environment under both its current and its older name).
        let mut set = |keys: &[&str], key: &'static str, value: String| {
            attributes.retain(|kv| !keys.contains(&kv.key.as_str()));
            attributes.push(KeyValue::new(key, value));
        };
        // With no name: as the OpenTelemetry resource spec says for a service with no name.
        let name = service_name.clone().unwrap_or_else(unknown_service);
        set(&["service.name"], "service.name", name);
        if let Some(version) = from_schema[0].clone() {
            set(&["service.version"], "service.version", version);
        }
        if let Some(env) = from_schema[1].clone() {
            let keys = ["deployment.environment", "deployment.environment.name"];
            set(&keys, "deployment.environment.name", env);
        }

        // With the SDK off, or nothing exported, the exporter's settings are never used: they
        // are not read, and cannot stop the program from starting.
        let exported = match get("OTEL_TRACES_EXPORTER") {
            _ if disabled => None,
            Some(v) => Some(config::traces_exported(&v)?),
            None => None,
        };
        // An endpoint set in code wins over `OTEL_TRACES_EXPORTER=none`.
        let exporting = !disabled && (self.endpoint.is_some() || exported != Some(false));
        let protocol = match self.protocol {
            Some(p) => p,
            None => signal_or_generic(
                exporting,
                &get,
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                Protocol::parse,
            )?
            .unwrap_or(Protocol::HttpProtobuf),
        };
        // The base URL + `/v1/traces` over HTTP, as the specification builds it from
        // `OTEL_EXPORTER_OTLP_ENDPOINT` (the same variable means the same URL to every SDK);
        // `Builder::otlp_endpoint` also takes the full URL.
        // The path goes on the URL's path: a query (or fragment) stays after it.
        let traces_path = |base: &str, full_taken: bool| -> String {
            let (head, tail) = base.split_at(base.find(['?', '#']).unwrap_or(base.len()));
            if protocol == Protocol::Grpc
                || (full_taken && head.trim_end_matches('/').ends_with("/v1/traces"))
            {
                base.to_string()
            } else {
                format!("{}/v1/traces{tail}", head.trim_end_matches('/'))
            }
        };
        let endpoint = match self.endpoint {
            _ if disabled => None,
            Some(url) => Some(traces_path(
                &config::endpoint("Builder::otlp_endpoint", &url)?,
                true,
            )),
            // `none`: ids on every line, nothing sent.
            None if !exporting => None,
            None => match get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
                Some(url) => Some(config::endpoint(
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    &url,
                )?),
                None => match get("OTEL_EXPORTER_OTLP_ENDPOINT") {
                    Some(url) => Some(traces_path(
                        &config::endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", &url)?,
                        false,
                    )),
                    // `OTEL_TRACES_EXPORTER=otlp` asks for export: to the specification's
                    // default collector, on this host.
                    None if exported == Some(true) => Some(match protocol {
                        Protocol::Grpc => "http://localhost:4317".to_string(),
                        Protocol::HttpProtobuf => "http://localhost:4318/v1/traces".to_string(),
                    }),
                    None => None,
                },
            },
        };
        // Read here rather than left to `opentelemetry-otlp`, which takes an empty signal
        // variable as set (hiding the generic one) and drops a value it cannot parse.
        let headers = signal_or_generic(
            exporting,
            &get,
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
            config::headers,
        )?
        .unwrap_or_default();
        let export_timeout = signal_or_generic(
            exporting,
            &get,
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            config::timeout_ms,
        )?;
        let gzip = signal_or_generic(
            exporting,
            &get,
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
            config::gzip,
        )?
        .unwrap_or(false);

        let sampler = match self.sampler {
            Some(s) => s,
            None if disabled => Sampler::AlwaysOff,
            None => config::sampler(
                get("OTEL_TRACES_SAMPLER").as_deref(),
                get("OTEL_TRACES_SAMPLER_ARG").as_deref(),
            )?
            .unwrap_or_else(|| Sampler::ParentBased(Box::new(Sampler::AlwaysOn))),
        };
        let propagators = config::propagators(get("OTEL_PROPAGATORS").as_deref())?;

        let schema = with_service(schema, service_name, service_version, environment);

        Ok(Plan {
            filter: InstallFilter {
                env: filter,
                directives,
            },
            disabled,
            attributes,
            protocol,
            endpoint,
            headers,
            export_timeout,
            gzip,
            sampler,
            propagators,
            schema,
            writer: self.writer.unwrap_or_default(),
            span_events: self.span_events,
            log_bridge: self.log_bridge,
            timeout: self.timeout,
            redaction: self.redaction,
            max_field_len: self.max_field_len,
            max_line_len: self.max_line_len,
            layers: self.layers,
        })
    }
}

/// `base` (the registry, with the layers added by [`Builder::layer`]) + the filter + the
/// OpenTelemetry layer (with `tracer`) + traceline's layer.
fn compose<S>(
    base: S,
    filter: InstallFilter,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
    span_events: bool,
    json: crate::Layer<tracing_subscriber::fmt::writer::BoxMakeWriter>,
) -> tracing::Dispatch
where
    S: tracing::Subscriber
        + for<'a> tracing_subscriber::registry::LookupSpan<'a>
        + Send
        + Sync
        + 'static,
{
    let otel = tracer.as_ref().map(|t| {
        crate::otel(tracing_opentelemetry::layer().with_tracer(t.clone())).with_filter(OtelFilter {
            events: span_events,
        })
    });
    // With the SDK disabled, OpenTelemetry's no-op tracer, as its API works without an SDK:
    // no spans and no ids of this service's own, but a caller's context is handed on, so a
    // request's `traceparent` still reaches the services it calls.
    let pass_through = tracer.is_none().then(|| {
        crate::otel(tracing_opentelemetry::layer()).with_filter(OtelFilter { events: false })
    });
    // With span events on, the OpenTelemetry layer marks the spans itself. (Not an `Option`
    // of a layer: that would not be told its dispatcher.)
    let error_status = ErrorStatus {
        on: otel.is_some() && !span_events,
        dispatch: std::sync::OnceLock::new(),
    };
    tracing::Dispatch::new(
        base.with(filter)
            .with(otel)
            .with(pass_through)
            .with(error_status)
            .with(json),
    )
}

/// Sets the resolved service fields on the schema (the schema's own, where it had them, are
/// among what was resolved: see [`Builder::service_name`]).
fn with_service(
    mut schema: Schema,
    name: Option<String>,
    version: Option<String>,
    environment: Option<String>,
) -> Schema {
    if let Some(name) = name {
        schema = schema.service_name(name);
    }
    if let Some(version) = version {
        schema = schema.service_version(version);
    }
    if let Some(env) = environment {
        schema = schema.environment(env);
    }
    schema
}

/// The setting of the signal's own variable `signal`, else of `generic`, parsed by `parse`;
/// `None` when neither is set, or when nothing is exported (the setting is then not read).
fn signal_or_generic<T>(
    exporting: bool,
    get: &impl Fn(&str) -> Option<String>,
    signal: &'static str,
    generic: &'static str,
    parse: fn(&'static str, &str) -> Result<T, InitError>,
) -> Result<Option<T>, InitError> {
    if !exporting {
        return Ok(None);
    }
    match (get(signal), get(generic)) {
        (Some(v), _) => parse(signal, &v).map(Some),
        (None, Some(v)) => parse(generic, &v).map(Some),
        (None, None) => Ok(None),
    }
}

/// `unknown_service:` and the executable's name, as the OpenTelemetry resource conventions
/// name a service that was given no name (`unknown_service` when the name is not known).
fn unknown_service() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .map_or_else(
            || "unknown_service".to_string(),
            |n| format!("unknown_service:{n}"),
        )
}

/// The plain directives of a `RUST_LOG` filter: each target with its level (`""` for the
/// default level), and the field names it lists (`target[{a,b}]=level`, which `EnvFilter`
/// ranks above `target=level` for spans, whatever their order). Span-scoped ones
/// (`target[span]=level`) are left out: they are about events inside such spans.
#[derive(Debug, Default)]
struct Directives(Vec<(String, LevelFilter, Vec<String>)>);

impl Directives {
    fn parse(filter: &str) -> Self {
        let mut out = Vec::new();
        for d in filter.split(',').map(str::trim) {
            if d.is_empty() {
                continue;
            }
            // `target[{field}]=level` (fields, no span name) is `target=level` for spans, as
            // `EnvFilter` reads it; one that names a span is about events inside such spans.
            let owned;
            let mut fields = Vec::new();
            let d = match d.split_once('[') {
                Some((target, rest)) => {
                    let Some((inner, level)) = rest.rsplit_once("]=") else {
                        continue;
                    };
                    if !inner.starts_with('{') || inner.contains('=') {
                        continue;
                    }
                    fields = inner
                        .trim_start_matches('{')
                        .trim_end_matches('}')
                        .split(',')
                        .map(|f| f.trim().to_string())
                        .filter(|f| !f.is_empty())
                        .collect();
                    owned = format!("{target}={level}");
                    owned.as_str()
                }
                None => d,
            };
            match d.split_once('=') {
                Some((target, level)) => {
                    if let Ok(level) = level.trim().parse::<LevelFilter>() {
                        out.push((target.trim().to_string(), level, fields));
                    }
                }
                None => match d.parse::<LevelFilter>() {
                    Ok(level) => out.push((String::new(), level, fields)),
                    // A target alone: all its levels.
                    Err(_) => out.push((d.to_string(), LevelFilter::TRACE, fields)),
                },
            }
        }
        Directives(out)
    }

    /// The level the filter gives spans of `target`, as `EnvFilter` ranks its directives: the
    /// longest target that starts it; of those, the one listing the most field names, then the
    /// greatest list; of equal ones, the last (else the default level, ranked the same way;
    /// else off).
    fn level_for(&self, target: &str) -> LevelFilter {
        let rank = |t: &String, f: &Vec<String>| (t.len(), f.len(), f.clone());
        let mut best: Option<(_, LevelFilter)> = None;
        for (t, level, fields) in &self.0 {
            if target.starts_with(t.as_str()) {
                let r = rank(t, fields);
                if best.as_ref().is_none_or(|(b, _)| r >= *b) {
                    best = Some((r, *level));
                }
            }
        }
        best.map_or(LevelFilter::OFF, |(_, l)| l)
    }

    /// Whether a directive (not the default level) applies to `target`.
    fn names(&self, target: &str) -> bool {
        self.0
            .iter()
            .any(|(t, _, _)| !t.is_empty() && target.starts_with(t.as_str()))
    }

    /// Whether a directive that names `target` (not the default level) turns it off.
    fn names_off(&self, target: &str) -> bool {
        self.0.iter().any(|(t, level, _)| {
            !t.is_empty() && target.starts_with(t.as_str()) && *level == LevelFilter::OFF
        }) && self.level_for(target) == LevelFilter::OFF
    }

    /// The default level: the level given alone (ranked as [`Directives::level_for`] ranks).
    fn default_level(&self) -> Option<LevelFilter> {
        self.0
            .iter()
            .any(|(t, _, _)| t.is_empty())
            .then(|| self.level_for(""))
    }

    /// `cap`, or the default level when that is stricter (`error`, `off`).
    fn capped(&self, cap: LevelFilter) -> LevelFilter {
        match self.default_level() {
            Some(level) if level < cap => level,
            _ => cap,
        }
    }
}

/// Targets of the OpenTelemetry SDK's own diagnostics, kept at WARN unless the filter names
/// them.
const OTEL_INTERNAL: &[&str] = &[
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
    // The SDK's diagnostics name their crate as it is published.
    "opentelemetry-otlp",
    "opentelemetry-http",
];

/// Everything checked, nothing installed yet.
struct Plan {
    filter: InstallFilter,
    disabled: bool,
    attributes: Vec<KeyValue>,
    protocol: Protocol,
    endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`, decoded.
    headers: Vec<(String, String)>,
    /// `OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT`.
    export_timeout: Option<Duration>,
    /// `OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION=gzip`.
    gzip: bool,
    sampler: Sampler,
    propagators: config::Propagators,
    schema: Schema,
    writer: Writer,
    span_events: bool,
    log_bridge: bool,
    timeout: Duration,
    redaction: Option<crate::Redaction>,
    max_field_len: Option<usize>,
    max_line_len: Option<usize>,
    layers: Vec<UserLayer>,
}

impl Plan {
    fn install(self) -> Result<Guard, InitError> {
        let mut runtime = None;
        let mut export = None;
        let export_failures = std::sync::Arc::new(guard::ExportFailures::default());
        let provider = if self.disabled {
            None
        } else {
            let resource = Resource::builder_empty()
                .with_detector(Box::new(
                    opentelemetry_sdk::resource::TelemetryResourceDetector,
                ))
                .with_attributes(self.attributes.clone())
                .build();
            let mut builder = SdkTracerProvider::builder()
                .with_sampler(self.sampler)
                .with_resource(resource.clone());
            if let Some(endpoint) = &self.endpoint {
                let exporter = match self.protocol {
                    Protocol::Grpc => {
                        let rt = ExporterRuntime::current_or_own()?;
                        let exporter = {
                            // tonic spawns its connection task on the runtime entered here.
                            let _entered = rt.handle().enter();
                            use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
                            let mut metadata = http::HeaderMap::new();
                            for (k, v) in &self.headers {
                                // Checked when read: a header name and a value.
                                if let (Ok(k), Ok(v)) = (
                                    http::HeaderName::from_bytes(k.as_bytes()),
                                    http::HeaderValue::from_str(v),
                                ) {
                                    metadata.append(k, v);
                                }
                            }
                            let mut b = opentelemetry_otlp::SpanExporter::builder()
                                .with_tonic()
                                .with_endpoint(endpoint.clone())
                                .with_metadata(
                                    opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(
                                        metadata,
                                    ),
                                );
                            if let Some(t) = self.export_timeout {
                                b = b.with_timeout(t);
                            }
                            if self.gzip {
                                b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
                            }
                            b.build()
                        };
                        match exporter {
                            Ok(e) => {
                                runtime = Some(rt);
                                e
                            }
                            Err(err) => {
                                rt.stop(self.timeout);
                                return Err(InitError::Exporter(config::scrub_query(
                                    err.to_string(),
                                    endpoint,
                                )));
                            }
                        }
                    }
                    Protocol::HttpProtobuf => {
                        use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
                        let mut b = opentelemetry_otlp::SpanExporter::builder()
                            .with_http()
                            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                            .with_endpoint(endpoint.clone())
                            // `with_headers` %-decodes the values again: escape the `%` they hold.
                            .with_headers(
                                self.headers
                                    .iter()
                                    .map(|(k, v)| (k.clone(), v.replace('%', "%25")))
                                    .collect(),
                            );
                        if let Some(t) = self.export_timeout {
                            b = b.with_timeout(t);
                        }
                        if self.gzip {
                            b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
                        }
                        b.build().map_err(|err| {
                            InitError::Exporter(config::scrub_query(err.to_string(), endpoint))
                        })?
                    }
                };
                let batch =
                    opentelemetry_sdk::trace::BatchSpanProcessor::builder(guard::Counted::new(
                        exporter,
                        export_failures.clone(),
                        endpoint.clone(),
                        self.redaction.clone().unwrap_or_default(),
                        self.max_field_len.unwrap_or(crate::DEFAULT_MAX_FIELD_LEN),
                    ))
                    .build();
                let shared = guard::Export::new(batch, &resource, export_failures.clone());
                builder = builder.with_span_processor(guard::ExportProcessor(shared.clone()));
                export = Some(shared);
            }
            Some(builder.build())
        };

        let stats = crate::Stats::default();
        let non_blocking = self.writer.is_non_blocking();
        let plain = self.writer.is_plain();
        let built = match self.writer.build(&stats, true) {
            Ok(b) => b,
            Err(err) => {
                if let Some(rt) = runtime.take() {
                    rt.stop(self.timeout);
                }
                return Err(err);
            }
        };
        let mut json = crate::layer()
            .with_schema(self.schema)
            .with_writer(built.make)
            .with_stats(stats.clone(), !non_blocking)
            .with_plain(plain);
        if let Some(r) = self.redaction {
            json = json.with_redaction(r);
        }
        if let Some(n) = self.max_field_len {
            json = json.with_max_field_len(n);
        }
        if let Some(n) = self.max_line_len {
            json = json.with_max_line_len(n);
        }

        let tracer = provider.as_ref().map(|p| p.tracer("traceline"));
        let log_max = self.filter.env.max_level_hint();
        // The added layers chained into one (a `Vec` or an `Option` of layers would not pass
        // `on_register_dispatch` on, which a layer needs to find the ids), and none at all when
        // there are none.
        let added = self
            .layers
            .into_iter()
            .reduce(|a, b| Box::new(a.and_then(b)));
        let mut guard = Guard {
            provider,
            runtime,
            writer: built.worker,
            flush_writer: built.flush,
            monitor: None,
            stats,
            timeout: self.timeout,
            export_failures,
            export,
            origin: guard::Origin::here(),
        };
        // Everything that can fail runs before anything global is set: an error leaves
        // nothing installed, and the call can be retried (with `.log_bridge(false)`, say).
        if non_blocking {
            guard.monitor = Some(guard::Monitor::start(
                guard.stats.clone(),
                Duration::from_secs(1),
            )?);
        }
        // One install at a time: of two threads calling `init()` at once, the second waits and
        // is told the subscriber is set, not that another `log` logger is.
        static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
        if tracing::dispatcher::has_been_set() {
            return Err(InitError::AlreadyInstalled);
        }
        if self.log_bridge {
            use tracing_log::AsLog as _;
            // The filter's own level: the spans it keeps are not `log` records.
            let max = log_max.unwrap_or(tracing::level_filters::LevelFilter::TRACE);
            tracing_log::LogTracer::builder()
                .with_max_level(max.as_log())
                .init()
                .map_err(|e| InitError::Install(e.to_string()))?;
        }
        // Made last: a `Dispatch` registers with `tracing`'s callsites (the max level, the
        // interest cache) as it is made, which an install that failed must not leave behind.
        let subscriber = match added {
            Some(added) => compose(
                tracing_subscriber::registry().with(added),
                self.filter,
                tracer,
                self.span_events,
                json,
            ),
            None => compose(
                tracing_subscriber::registry(),
                self.filter,
                tracer,
                self.span_events,
                json,
            ),
        };
        if tracing::dispatcher::set_global_default(subscriber).is_err() {
            // Set by another thread since the check above.
            return Err(InitError::AlreadyInstalled);
        }

        if let Some(p) = &guard.provider {
            opentelemetry::global::set_tracer_provider(p.clone());
        }
        set_propagator(self.propagators);
        Ok(guard)
    }
}

fn set_propagator(p: config::Propagators) {
    #[cfg(feature = "http")]
    crate::http::set_propagators(crate::http::Propagators {
        trace_context: p.trace_context,
        baggage: p.baggage,
    });
    use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
    use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
    let mut list: Vec<Box<dyn TextMapPropagator + Send + Sync>> = Vec::new();
    if p.trace_context {
        list.push(Box::new(TraceContextPropagator::new()));
    }
    if p.baggage {
        list.push(Box::new(BaggagePropagator::new()));
    }
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(list));
}

/// The `RUST_LOG` filter for lines; spans at INFO and above stay on whatever level it sets
/// for their target, unless that level is `off`. A filter that disabled them would take the
/// ids off the WARN and ERROR lines logged inside them (`RUST_LOG=warn`) and drop them from
/// the exported traces. traceline's own spans (the correlation scope, the HTTP request and
/// client spans; INFO) stay on unless a directive naming their target turns it off
/// (`RUST_LOG=myapp=debug` keeps them): without them the correlation id leaves every line of a
/// request and the trace between services breaks. Spans below INFO, and all events, follow the
/// filter.
struct InstallFilter {
    env: EnvFilter,
    directives: Directives,
}

impl InstallFilter {
    fn kept_span(&self, meta: &Metadata<'_>) -> bool {
        if !meta.is_span() || *meta.level() > tracing::Level::INFO {
            return false;
        }
        let target = meta.target();
        if matches!(target, "traceline::correlation" | "traceline::http") {
            !self.directives.names_off(target)
        } else {
            self.directives.level_for(target) != LevelFilter::OFF
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for InstallFilter
where
    S: tracing::Subscriber,
    EnvFilter: tracing_subscriber::Layer<S>,
{
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        // Always registered with the filter: its span-scoped directives (`[correlation]=debug`)
        // need to know the callsite.
        let interest = self.env.register_callsite(meta);
        if self.kept_span(meta) {
            Interest::always()
        } else {
            interest
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        let env = self.env.max_level_hint()?;
        Some(env.max(tracing::level_filters::LevelFilter::INFO))
    }

    fn enabled(&self, meta: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.kept_span(meta) || self.env.enabled(meta, ctx)
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        self.env.on_new_span(attrs, id, ctx);
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        self.env.on_record(id, values, ctx);
    }

    fn on_enter(&self, id: &tracing::span::Id, ctx: Context<'_, S>) {
        self.env.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &tracing::span::Id, ctx: Context<'_, S>) {
        self.env.on_exit(id, ctx);
    }

    fn on_close(&self, id: tracing::span::Id, ctx: Context<'_, S>) {
        self.env.on_close(id, ctx);
    }
}

struct OtelFilter {
    events: bool,
}

const NOT_EXPORTED: &[&str] = &[
    "traceline::correlation",
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "reqwest",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
    "opentelemetry_http",
    "opentelemetry-otlp",
    "opentelemetry-http",
];

/// Targets whose ERROR events [`ErrorStatus`] leaves alone: `record_error`'s line, whose
/// error is on the span already, and the HTTP middleware's, which sets the span's status and
/// `error.type` itself.
const OWN_ERRORS: &[&str] = &["traceline::error", "traceline::http"];

/// With span events off, marks the OpenTelemetry span of an ERROR event as failed (status
/// ERROR, no description), as the OpenTelemetry layer does when it gets the event; the event
/// is not copied onto the span (nor are its values formatted again: a `Debug` value that
/// panics is the line's to catch). A span the OpenTelemetry layer does not track (a
/// correlation scope) has its nearest tracked ancestor marked, as `record_error` does.
struct ErrorStatus {
    /// Whether it marks spans (there is an OpenTelemetry layer, and span events are off).
    on: bool,
    dispatch: std::sync::OnceLock<tracing::dispatcher::WeakDispatch>,
}

impl<S> tracing_subscriber::Layer<S> for ErrorStatus
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        use opentelemetry::trace::TraceContextExt as _;
        let meta = event.metadata();
        // As the OpenTelemetry layer would see it with span events on: not the exporter's own
        // network stack, not the SDK's suppressed work.
        if !self.on
            || *meta.level() != tracing::Level::ERROR
            || under(meta.target(), OWN_ERRORS)
            || under(meta.target(), NOT_EXPORTED)
            || opentelemetry::Context::is_current_telemetry_suppressed()
        {
            return;
        }
        let Some(id) = ctx.event_span(event).map(|s| s.id()) else {
            return;
        };
        let Some(dispatch) = self.dispatch.get().and_then(|d| d.upgrade()) else {
            return;
        };
        let cx = tracing_opentelemetry::get_otel_context(&id, &dispatch)
            .filter(|cx| cx.span().span_context().is_valid())
            .or_else(|| crate::ids::nearest_tracked(&dispatch, &id));
        if let Some(cx) = cx {
            cx.span()
                .set_status(opentelemetry::trace::Status::error(""));
        }
    }
}

/// Whether `target` is one of `targets` or a module under one.
fn under(target: &str, targets: &[&str]) -> bool {
    targets.iter().any(|t| {
        target
            .strip_prefix(t)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

impl OtelFilter {
    fn wants(&self, meta: &Metadata<'_>) -> bool {
        if !(meta.is_span() || self.events) {
            return false;
        }
        // `record_error`'s line: its error is on the span already (its `exception` event and
        // status), and a copy would be a second event and the error again on the span.
        if meta.is_event() && under(meta.target(), &["traceline::error"]) {
            return false;
        }
        !under(meta.target(), NOT_EXPORTED)
    }
}

impl<S> Filter<S> for OtelFilter {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        // The SDK's export thread marks its work as suppressed: nothing it does becomes a span.
        self.wants(meta) && !opentelemetry::Context::is_current_telemetry_suppressed()
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.wants(meta) {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Directives;
    use tracing::level_filters::LevelFilter;

    /// The plan of a builder given these variables (and nothing else from the process).
    fn plan_with(
        builder: super::Builder,
        vars: &'static [(&'static str, &'static str)],
    ) -> Result<super::Plan, crate::InitError> {
        builder
            .env(move |name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            })
            .plan()
    }

    /// Every resource value under `key`, and what a line written with the plan's schema holds
    /// under `line_key` (as text).
    fn resource_and_line(
        plan: &super::Plan,
        key: &str,
        line_key: &str,
    ) -> (Vec<String>, Option<String>) {
        let resource = plan
            .attributes
            .iter()
            .filter(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.as_str().into_owned())
            .collect();
        let layer = crate::layer().with_schema(plan.schema.clone());
        let line = &crate::doc_support::lines(layer, || tracing::info!("x"))[0];
        let value = line.get(line_key).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        (resource, value)
    }

    /// Lines and resource carry one service name, version and environment, code first:
    /// `Builder::service_name`, then the schema's (set with `service_name` & co or as a static
    /// field under that key, whatever its value's type, and whether or not the key is written),
    /// then `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`; the resource holds each once
    /// (the environment under its current name or its older one, not both).
    #[test]
    fn lines_and_resource_carry_one_service_name_version_and_environment() {
        use crate::{Key, Schema};
        let env: &[(&str, &str)] = &[
            ("OTEL_SERVICE_NAME", "from-env"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.version=0.0.1-env,deployment.environment=env-staging",
            ),
        ];
        let name = |plan: &super::Plan| resource_and_line(plan, "service.name", "service.name");
        let version =
            |plan: &super::Plan| resource_and_line(plan, "service.version", "service.version");
        let both = |v: &str| (vec![v.to_owned()], Some(v.to_owned()));
        // The environment under its current name on the resource (its older name not kept),
        // and on the line.
        let environment = |plan: &super::Plan| {
            let current = resource_and_line(
                plan,
                "deployment.environment.name",
                "deployment.environment",
            );
            let older = resource_and_line(plan, "deployment.environment", "-").0;
            (current, older)
        };

        let plan = plan_with(
            super::builder()
                .service_name("orders")
                .schema(Schema::ecs().service_name("billing")),
            env,
        )
        .unwrap();
        assert_eq!(name(&plan), both("orders"));
        assert_eq!(
            resource_and_line(&plan, "service.name", "event.dataset")
                .1
                .as_deref(),
            Some("orders")
        );

        let plan = plan_with(
            super::builder().schema(Schema::ecs().service_name("billing")),
            env,
        )
        .unwrap();
        assert_eq!(name(&plan), both("billing"));

        let coded = Schema::default()
            .static_field("service.name", 42)
            .static_field("service.version", "2.0.0")
            .static_field("deployment.environment", "prod");
        let plan = plan_with(super::builder().schema(coded), env).unwrap();
        assert_eq!(name(&plan), both("42"));
        assert_eq!(version(&plan), both("2.0.0"));
        assert_eq!(environment(&plan), (both("prod"), Vec::<String>::new()));

        // The key switched off: the field is written as any static field, and is the name.
        let off = Schema::default()
            .disable(Key::ServiceName)
            .static_field("service.name", "x");
        let plan = plan_with(super::builder().schema(off), env).unwrap();
        assert_eq!(name(&plan), both("x"));

        // The builder's version and environment win over the schema's and the environment's.
        let plan = plan_with(
            super::builder()
                .service_version("3.1.0")
                .environment("prod-eu")
                .schema(Schema::default().service_version("x").environment("y")),
            env,
        )
        .unwrap();
        assert_eq!(version(&plan), both("3.1.0"));
        assert_eq!(environment(&plan), (both("prod-eu"), Vec::<String>::new()));

        let plan = plan_with(super::builder(), env).unwrap();
        assert_eq!(name(&plan), both("from-env"));
        assert_eq!(version(&plan), both("0.0.1-env"));
        let (resource, line) =
            resource_and_line(&plan, "deployment.environment", "deployment.environment");
        assert_eq!((resource, line), both("env-staging"));
    }

    /// ECS's `event.dataset` is the service name however the schema was given it: with
    /// `service_name`, or as a static field under its key.
    #[test]
    fn event_dataset_comes_from_a_static_service_name_too() {
        use crate::Schema;
        for schema in [
            Schema::ecs().service_name("orders"),
            Schema::ecs().static_field("service.name", "orders"),
        ] {
            let layer = crate::layer().with_schema(schema);
            let line = &crate::doc_support::lines(layer, || tracing::info!("x"))[0];
            assert_eq!(line["service.name"], "orders", "{line}");
            assert_eq!(line["event.dataset"], "orders", "{line}");
        }
    }

    /// An invalid setting stays an error whatever settings come after it.
    #[test]
    fn an_invalid_sample_ratio_is_an_error_even_when_a_sampler_follows() {
        use opentelemetry_sdk::trace::Sampler;
        for builder in [
            super::builder()
                .sample_ratio(1.5)
                .sampler(Sampler::AlwaysOn),
            super::builder().sample_ratio(-0.1).sample_ratio(0.5),
        ] {
            let err = plan_with(builder, &[]).err().expect("an error");
            assert!(err.to_string().contains("Builder::sample_ratio"), "{err}");
        }
        assert!(plan_with(super::builder().sample_ratio(0.5), &[]).is_ok());
    }

    #[test]
    fn a_filter_of_only_commas_and_spaces_is_the_default_as_an_empty_one_is() {
        let plan = |value: &'static str| {
            super::builder()
                .env(move |name| (name == "RUST_LOG").then(|| value.to_string()))
                .plan()
                .expect("plan")
        };
        for value in ["", " , ", ",", "info"] {
            let filter = plan(value).filter;
            assert_eq!(
                filter.env.max_level_hint(),
                Some(LevelFilter::INFO),
                "{value:?}"
            );
        }
        assert_eq!(
            plan("warn").filter.env.max_level_hint(),
            Some(LevelFilter::WARN)
        );
    }

    #[test]
    fn a_targets_level_is_found_as_env_filter_finds_it() {
        let d = Directives::parse(
            "warn,hyper=off, h2 = OFF ,noisy[req]=off,myapp=debug,myapp::db=error,tower",
        );
        assert_eq!(d.level_for("hyper::client"), LevelFilter::OFF);
        assert_eq!(d.level_for("h2"), LevelFilter::OFF);
        assert_eq!(d.level_for("noisy"), LevelFilter::WARN);
        assert_eq!(d.level_for("myapp::orders"), LevelFilter::DEBUG);
        assert_eq!(d.level_for("myapp::db::pool"), LevelFilter::ERROR);
        assert_eq!(d.level_for("tower::buffer"), LevelFilter::TRACE);
        assert_eq!(d.level_for("other"), LevelFilter::WARN);
        let app_only = Directives::parse("myapp=debug");
        assert_eq!(app_only.level_for("other"), LevelFilter::OFF);
        assert!(!app_only.names_off("traceline::http"));
        let off = Directives::parse("info,traceline=off");
        assert!(off.names_off("traceline::http"));
        assert!(!Directives::parse("off").names_off("traceline::http"));
        let fields = Directives::parse("info,noisy[{pool.hint}]=off,other[req{id=1}]=off");
        assert_eq!(fields.level_for("noisy::pool"), LevelFilter::OFF);
        assert_eq!(fields.level_for("other"), LevelFilter::INFO);
        assert!(
            Directives::parse("myapp=debug,traceline::http::access=warn")
                .names("traceline::http::access")
        );
        assert!(
            !Directives::parse("myapp=debug,traceline::http::access=warn")
                .names("traceline::error")
        );
        assert!(Directives::parse("traceline=warn").names("traceline::error"));
    }

    /// Spans of `myapp` get the level a real `EnvFilter` gives them, whatever the order of
    /// the directives (`EnvFilter` ranks one listing field names above a plain one).
    #[test]
    fn span_levels_agree_with_env_filter_in_any_order() {
        use tracing_subscriber::prelude::*;
        fn env_filter_level(filter: &str) -> LevelFilter {
            let subscriber =
                tracing_subscriber::registry().with(tracing_subscriber::EnvFilter::new(filter));
            tracing::subscriber::with_default(subscriber, || {
                let on = [
                    !tracing::trace_span!(target: "myapp", "s").is_disabled(),
                    !tracing::debug_span!(target: "myapp", "s").is_disabled(),
                    !tracing::info_span!(target: "myapp", "s").is_disabled(),
                    !tracing::warn_span!(target: "myapp", "s").is_disabled(),
                    !tracing::error_span!(target: "myapp", "s").is_disabled(),
                ];
                let levels = [
                    LevelFilter::TRACE,
                    LevelFilter::DEBUG,
                    LevelFilter::INFO,
                    LevelFilter::WARN,
                    LevelFilter::ERROR,
                ];
                levels
                    .into_iter()
                    .zip(on)
                    .find_map(|(l, on)| on.then_some(l))
                    .unwrap_or(LevelFilter::OFF)
            })
        }
        for filter in [
            "myapp=info,myapp[{noisy}]=off",
            "myapp[{noisy}]=off,myapp=info",
            "[{x}]=off,info",
            "info,[{x}]=off",
            "myapp=debug,myapp[{a}]=warn,myapp[{b}]=error",
            "myapp[{b}]=error,myapp[{a}]=warn,myapp=debug",
            "myapp=warn,myapp=debug",
            "debug,myapp=error,myapp::db=trace",
        ] {
            assert_eq!(
                Directives::parse(filter).level_for("myapp"),
                env_filter_level(filter),
                "{filter}"
            );
        }
    }

    #[test]
    fn the_sdks_diagnostics_never_go_past_the_filters_default_level() {
        let w = |f: &str| Directives::parse(f).capped(LevelFilter::WARN);
        assert_eq!(w("info"), LevelFilter::WARN);
        assert_eq!(w("myapp=debug"), LevelFilter::WARN);
        assert_eq!(w("error"), LevelFilter::ERROR);
        assert_eq!(w("off"), LevelFilter::OFF);
        assert_eq!(w("off,myapp=info"), LevelFilter::OFF);
        assert_eq!(w("error,debug"), LevelFilter::WARN);
    }
}

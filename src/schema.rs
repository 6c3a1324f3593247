//! Schemas: which key each part of a line is written under, and how values are spelled.
//!
//! A [`Schema`] is data. Every preset is a table of key names plus a few spelling choices (level
//! names, id encoding, error layout), and every key can be renamed or switched off:
//!
//! ```
//! use traceline::{Key, Schema};
//!
//! let schema = Schema::default()
//!     .rename(Key::TraceId, "trace")
//!     .disable(Key::Target)
//!     .enable(Key::File);
//! assert_eq!(schema.key(Key::TraceId), Some("trace"));
//! assert_eq!(schema.key(Key::Target), None);
//! assert_eq!(schema.key(Key::File), Some("file"));
//! ```
//!
//! # Key collisions
//! A line never holds the same key twice. The keys a schema writes itself (timestamp, level,
//! message, ids, static fields…) are reserved: a user field with a reserved name is written
//! under `fields.<name>` instead (for example `fields.level`), and so is a field named `fields`
//! where fields go at the top level (it would be a value beside the renamed keys under it).
//! When event and span fields share a name, the event's own field wins over the innermost
//! span's, which wins over outer spans'. Where fields go at the top level, no key is the
//! dotted parent of another either (stores that expand dotted keys, Elasticsearch and
//! Datadog, would refuse a line with a value and an object under one name): a field named
//! like the dotted parent or child of a reserved key, or of a user field written before it
//! (a span's `user` beside the event's `user.id`), takes the prefix too.

use std::borrow::Cow;

use crate::timestamp::TimestampFormat;

/// A part of the line whose key a [`Schema`] names.
///
/// ```
/// use traceline::{Key, Schema};
/// assert_eq!(Schema::ecs().key(Key::TraceId), Some("trace.id"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Key {
    /// When the event happened. Default `timestamp`.
    Timestamp,
    /// The level as text. Default `level`.
    Level,
    /// The OpenTelemetry severity number (TRACE=1, DEBUG=5, INFO=9, WARN=13, ERROR=17).
    /// Off by default; on in [`Schema::otel`].
    SeverityNumber,
    /// The event's message. Default `message`.
    Message,
    /// The event's target (usually the module path). Default `target`.
    Target,
    /// The trace id of the event's span. Default `traceId`.
    TraceId,
    /// The span id of the event's span. Default `spanId`.
    SpanId,
    /// Whether the trace is sampled. Default `traceFlags` (`"01"` / `"00"`).
    TraceFlags,
    /// The span id of the local root span (ECS `transaction.id`): the outermost span of the
    /// event's trace in this process, so a request that starts a trace of its own inside a
    /// connection span is its own root. Off by default.
    TransactionId,
    /// The correlation id of the enclosing request scope. Default `correlationId`.
    CorrelationId,
    /// The source file of the callsite. Off by default; default name `file`.
    File,
    /// The source line of the callsite. Off by default; default name `line`.
    Line,
    /// The current thread's name. Off by default; default name `threadName`.
    ThreadName,
    /// The current thread's id (a number). Off by default; default name `threadId`.
    ThreadId,
    /// The service's name. Default `service.name`; written only when a name is set.
    ServiceName,
    /// The service's version. Default `service.version`; written only when set.
    ServiceVersion,
    /// The deployment environment. Default `deployment.environment`; written only when set.
    ServiceEnvironment,
    /// With [`FieldLayout::Nested`], the object holding the event's fields. Default `fields`.
    /// It is also the prefix given to a user field that collides with a reserved key. Switched
    /// off, nested event fields go at the top level (colliding ones still take the prefix).
    Fields,
    /// With [`FieldLayout::Nested`], the object holding the innermost span. Default `span`.
    /// Switched off, the innermost span is only in [`Key::Spans`].
    Span,
    /// With [`FieldLayout::Nested`], the list of spans from root to leaf. Default `spans`.
    Spans,
    /// With [`ErrorLayout::Flat`], the error's message. Default `error.message`.
    ErrorMessage,
    /// With [`ErrorLayout::Flat`], the error's type. Default `error.type`.
    ErrorType,
    /// With [`ErrorLayout::Flat`], the error with its causes as text. Default `error.stack_trace`.
    /// Each of the three flat error parts can be switched off; with all three off (or with only
    /// the type on, for an error whose type is not known), the error is written as an object
    /// under its field's own key.
    ErrorStackTrace,
    /// The object holding [`Schema::label`]s. Default `labels`; written only when there are some.
    Labels,
}

impl Key {
    /// Every key, in the order the line writes them.
    ///
    /// ```
    /// assert_eq!(traceline::Key::ALL[0], traceline::Key::Timestamp);
    /// ```
    pub const ALL: [Key; 24] = [
        Key::Timestamp,
        Key::Level,
        Key::SeverityNumber,
        Key::Message,
        Key::Target,
        Key::TraceId,
        Key::SpanId,
        Key::TraceFlags,
        Key::TransactionId,
        Key::CorrelationId,
        Key::File,
        Key::Line,
        Key::ThreadName,
        Key::ThreadId,
        Key::ServiceName,
        Key::ServiceVersion,
        Key::ServiceEnvironment,
        Key::Fields,
        Key::Span,
        Key::Spans,
        Key::ErrorMessage,
        Key::ErrorType,
        Key::ErrorStackTrace,
        Key::Labels,
    ];
    const COUNT: usize = Key::ALL.len();
}

/// How trace and span ids are spelled.
///
/// ```
/// use traceline::{IdFormat, Schema};
/// let s = Schema::default().id_format(IdFormat::DecimalLow64);
/// # let _ = s;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdFormat {
    /// Lowercase hex, 32 digits for a trace id and 16 for a span id (W3C, OTLP).
    Hex,
    /// The lower 64 bits as a decimal string (Datadog's `dd.trace_id` / `dd.span_id`).
    DecimalLow64,
}

/// How the sampled flag is spelled.
///
/// ```
/// use traceline::{FlagsFormat, Schema};
/// let s = Schema::default().flags_format(FlagsFormat::Bool);
/// # let _ = s;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlagsFormat {
    /// Two hex digits, `"01"` when sampled, `"00"` when not (W3C `trace-flags`).
    Hex,
    /// `true` / `false` (Google Cloud's `trace_sampled`).
    Bool,
}

/// Where event and span fields go.
///
/// ```
/// use traceline::{FieldLayout, Schema};
/// let s = Schema::default().field_layout(FieldLayout::Nested);
/// assert_eq!(s.key(traceline::Key::Fields), Some("fields"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FieldLayout {
    /// At the top level of the line, next to `message` (the default): `jq '.user_id'` and
    /// LogQL `| json` see them with no setup. Span fields are merged in, inner over outer, and
    /// the event's own fields win.
    #[default]
    Flatten,
    /// Like `tracing-subscriber`'s JSON: `fields` holds the event's fields, `span` the innermost
    /// span (its `name` and fields) and `spans` every span from root to leaf.
    Nested,
}

/// How a field holding a `&dyn Error` is written.
///
/// ```
/// use traceline::{ErrorLayout, Key, Schema};
/// let s = Schema::default().error_layout(ErrorLayout::Flat);
/// assert_eq!(s.key(Key::ErrorMessage), Some("error.message"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ErrorLayout {
    /// Under the field's own name, as `{"message": "...", "chain": ["cause", ...]}`.
    #[default]
    Object,
    /// The first error of an event goes to the top-level keys [`Key::ErrorMessage`],
    /// [`Key::ErrorType`] (when known, see [`crate::record_error`]) and
    /// [`Key::ErrorStackTrace`] (ECS); further errors as [`Self::Object`]. With
    /// [`FieldLayout::Nested`] every error is an object inside `fields`.
    Flat,
}

/// The names and spellings of one output format. See the [module docs](self).
///
/// ```
/// use traceline::schema::{Key, Schema};
///
/// let schema = Schema::ecs().rename(Key::Message, "msg");
/// assert_eq!(schema.key(Key::TraceId), Some("trace.id"));
/// assert_eq!(schema.key(Key::Message), Some("msg"));
/// let layer = traceline::layer().with_schema(schema);
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct Schema {
    pub(crate) names: [Cow<'static, str>; Key::COUNT],
    pub(crate) enabled: [bool; Key::COUNT],
    pub(crate) levels: [Cow<'static, str>; 5],
    pub(crate) timestamp: TimestampFormat,
    pub(crate) ids: IdFormat,
    pub(crate) trace_id_prefix: Cow<'static, str>,
    pub(crate) flags: FlagsFormat,
    pub(crate) fields: FieldLayout,
    pub(crate) errors: ErrorLayout,
    pub(crate) service: [Option<String>; 3],
    pub(crate) static_fields: Vec<(Cow<'static, str>, serde_json::Value)>,
    pub(crate) labels: Vec<(String, serde_json::Value)>,
    /// Write the service name as `event.dataset` too (ECS).
    pub(crate) dataset_from_service: bool,
    /// Names the store reads as its own, which user fields must not take though this schema
    /// does not write them (Cloud Logging's `time`, Datadog's `host`).
    pub(crate) store_reserved: &'static [&'static str],
    /// Labels as Cloud Logging takes them: string values, keys as given.
    pub(crate) string_labels: bool,
    /// The object the file and line go in, under their own keys (Cloud Logging's
    /// `logging.googleapis.com/sourceLocation`, the line as a string), instead of the top level.
    pub(crate) source_location: Option<&'static str>,
}

impl Default for Schema {
    /// traceline's own format: camelCase `traceId` / `spanId` / `traceFlags` (as OTLP/JSON spells
    /// them), fields at the top level. Loki: `{app="x"} | json | traceId="<id>"`.
    ///
    /// ```
    /// use traceline::{Key, Schema};
    /// let s = Schema::default();
    /// assert_eq!(s.key(Key::Timestamp), Some("timestamp"));
    /// assert_eq!(s.key(Key::TraceId), Some("traceId"));
    /// assert_eq!(s.key(Key::SpanId), Some("spanId"));
    /// assert_eq!(s.key(Key::File), None); // opt-in
    /// ```
    ///
    /// Sample line (an event inside a span; produced and checked by this doc test):
    ///
    /// ```
    /// # use traceline::Schema;
    /// # #[cfg(feature = "install")] {
    /// let line = traceline::doc_support::sample_line(Schema::default());
    /// assert_eq!(line, r#"{"timestamp":"2026-11-25T10:32:03.123456789Z","level":"INFO","message":"order created","target":"orders","traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","traceFlags":"01","service.name":"orders","order.item_count":3,"order.customer_id":42}"#);
    /// # }
    /// ```
    ///
    /// Find one trace in Loki: `{app="orders"} |= "4bf92f3577b34da6a3ce929d0e0e4736" | json | traceId="4bf92f3577b34da6a3ce929d0e0e4736"`; with jq: `jq 'select(.traceId=="4bf92f3577b34da6a3ce929d0e0e4736")'`.
    fn default() -> Self {
        let name = |k: Key| -> &'static str {
            match k {
                Key::Timestamp => "timestamp",
                Key::Level => "level",
                Key::SeverityNumber => "severityNumber",
                Key::Message => "message",
                Key::Target => "target",
                Key::TraceId => "traceId",
                Key::SpanId => "spanId",
                Key::TraceFlags => "traceFlags",
                Key::TransactionId => "transactionId",
                Key::CorrelationId => "correlationId",
                Key::File => "file",
                Key::Line => "line",
                Key::ThreadName => "threadName",
                Key::ThreadId => "threadId",
                Key::ServiceName => "service.name",
                Key::ServiceVersion => "service.version",
                Key::ServiceEnvironment => "deployment.environment",
                Key::Fields => "fields",
                Key::Span => "span",
                Key::Spans => "spans",
                Key::ErrorMessage => "error.message",
                Key::ErrorType => "error.type",
                Key::ErrorStackTrace => "error.stack_trace",
                Key::Labels => "labels",
            }
        };
        let off = |k: Key| {
            matches!(
                k,
                Key::SeverityNumber
                    | Key::TransactionId
                    | Key::File
                    | Key::Line
                    | Key::ThreadName
                    | Key::ThreadId
            )
        };
        Schema {
            names: Key::ALL.map(|k| Cow::Borrowed(name(k))),
            enabled: Key::ALL.map(|k| !off(k)),
            levels: ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].map(Cow::Borrowed),
            timestamp: TimestampFormat::Rfc3339Nanos,
            ids: IdFormat::Hex,
            trace_id_prefix: Cow::Borrowed(""),
            flags: FlagsFormat::Hex,
            fields: FieldLayout::Flatten,
            errors: ErrorLayout::Object,
            service: [None, None, None],
            static_fields: Vec::new(),
            labels: Vec::new(),
            dataset_from_service: false,
            store_reserved: &[],
            string_labels: false,
            source_location: None,
        }
    }
}

/// The name given to [`Schema::from_name`] is not a preset.
///
/// ```
/// let err = traceline::Schema::from_name("splunk").unwrap_err();
/// assert!(err.to_string().contains("default, otel, ecs, gcp, datadog"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownSchema {
    name: String,
    gcp_without_project: bool,
}

impl std::fmt::Display for UnknownSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.gcp_without_project {
            write!(
                f,
                "schema `gcp` needs a project id (with no space or `/` in it): set \
                 GOOGLE_CLOUD_PROJECT, or write `gcp:<project-id>`"
            )
        } else {
            write!(
                f,
                "unknown schema `{}`; choose one of default, otel, ecs, gcp, datadog \
                 (gcp as `gcp:<project-id>` or with GOOGLE_CLOUD_PROJECT set)",
                self.name.escape_debug()
            )
        }
    }
}

impl std::error::Error for UnknownSchema {}

impl Schema {
    /// OpenTelemetry's "trace context in non-OTLP log formats": `trace_id`, `span_id`,
    /// `trace_flags`, `severity_text`, `severity_number`, `body`; errors as `exception.*`.
    ///
    /// ```
    /// # use traceline::{Key, Schema};
    /// let s = Schema::otel();
    /// assert_eq!(s.key(Key::TraceId), Some("trace_id"));
    /// assert_eq!(s.key(Key::SeverityNumber), Some("severity_number"));
    /// assert_eq!(s.key(Key::Message), Some("body"));
    /// ```
    ///
    /// Sample line (an event inside a span; produced and checked by this doc test):
    ///
    /// ```
    /// # use traceline::Schema;
    /// # #[cfg(feature = "install")] {
    /// let line = traceline::doc_support::sample_line(Schema::otel());
    /// assert_eq!(line, r#"{"timestamp":"2026-11-25T10:32:03.123456789Z","severity_text":"INFO","severity_number":9,"body":"order created","target":"orders","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","trace_flags":"01","service.name":"orders","order.item_count":3,"order.customer_id":42}"#);
    /// # }
    /// ```
    ///
    /// Find one trace in Loki: `{app="orders"} | json | trace_id="4bf92f3577b34da6a3ce929d0e0e4736"`.
    pub fn otel() -> Self {
        Schema::default()
            .rename(Key::Level, "severity_text")
            .rename(Key::SeverityNumber, "severity_number")
            .rename(Key::Message, "body")
            .rename(Key::TraceId, "trace_id")
            .rename(Key::SpanId, "span_id")
            .rename(Key::TraceFlags, "trace_flags")
            .rename(Key::CorrelationId, "correlation_id")
            .rename(Key::ServiceEnvironment, "deployment.environment.name")
            .rename_off(Key::File, "code.file.path")
            .rename_off(Key::Line, "code.line.number")
            .rename_off(Key::ThreadName, "thread.name")
            .rename_off(Key::ThreadId, "thread.id")
            .rename(Key::ErrorMessage, "exception.message")
            .rename(Key::ErrorType, "exception.type")
            .rename(Key::ErrorStackTrace, "exception.stacktrace")
            .error_layout(ErrorLayout::Flat)
    }

    /// Elastic Common Schema, as the ecs-logging spec asks: `@timestamp`, `log.level` and
    /// `message` first, `ecs.version`, `log.logger`, `trace.id`, `span.id`, `transaction.id`
    /// (the local root span), `service.*`, `event.dataset`, flat `error.*` keys. The
    /// correlation id goes to `http.request.id`, ECS's field for exactly that.
    /// `event.dataset` is the service name unless configured otherwise, as the ecs-logging spec
    /// says: a static field `event.dataset` replaces it
    /// (`.static_field("event.dataset", "orders.access")`).
    ///
    /// ```
    /// # use traceline::{Key, Schema};
    /// let s = Schema::ecs();
    /// assert_eq!(s.key(Key::Timestamp), Some("@timestamp"));
    /// assert_eq!(s.key(Key::TraceId), Some("trace.id"));
    /// assert_eq!(s.key(Key::TransactionId), Some("transaction.id"));
    /// ```
    ///
    /// Sample line (an event inside a span; produced and checked by this doc test):
    ///
    /// ```
    /// # use traceline::Schema;
    /// # #[cfg(feature = "install")] {
    /// let line = traceline::doc_support::sample_line(Schema::ecs());
    /// assert_eq!(line, r#"{"@timestamp":"2026-11-25T10:32:03.123456789Z","log.level":"INFO","message":"order created","log.logger":"orders","trace.id":"4bf92f3577b34da6a3ce929d0e0e4736","span.id":"00f067aa0ba902b7","transaction.id":"00f067aa0ba902b7","service.name":"orders","event.dataset":"orders","ecs.version":"1.12.0","order.item_count":3,"order.customer_id":42}"#);
    /// # }
    /// ```
    ///
    /// Find one trace in Kibana: `trace.id:4bf92f3577b34da6a3ce929d0e0e4736`.
    pub fn ecs() -> Self {
        let mut s = Schema::default()
            .rename(Key::Timestamp, "@timestamp")
            .rename(Key::Level, "log.level")
            .rename(Key::Target, "log.logger")
            .rename(Key::TraceId, "trace.id")
            .rename(Key::SpanId, "span.id")
            .rename(Key::TransactionId, "transaction.id")
            .rename(Key::CorrelationId, "http.request.id")
            .rename(Key::ServiceEnvironment, "service.environment")
            .rename_off(Key::File, "log.origin.file.name")
            .rename_off(Key::Line, "log.origin.file.line")
            .rename_off(Key::ThreadName, "process.thread.name")
            .rename_off(Key::ThreadId, "process.thread.id")
            .disable(Key::TraceFlags)
            .error_layout(ErrorLayout::Flat)
            .static_field("ecs.version", ECS_VERSION);
        // With nested fields: not ECS's own `span` object.
        s.names[Key::Span as usize] = Cow::Borrowed("tracing.span");
        s.names[Key::Spans as usize] = Cow::Borrowed("tracing.spans");
        s.dataset_from_service = true;
        s
    }

    /// Google Cloud Logging's structured logs: `severity` (`DEBUG` for TRACE, `WARNING` for
    /// WARN), `logging.googleapis.com/trace` as `projects/<project_id>/traces/<traceId>`,
    /// `logging.googleapis.com/spanId`, `logging.googleapis.com/trace_sampled` (a boolean);
    /// with [`Key::File`] / [`Key::Line`] on, the entry's source location,
    /// `"logging.googleapis.com/sourceLocation":{"file":"src/main.rs","line":"42"}` (renaming
    /// either key writes both at the top level instead, under their names).
    ///
    /// ```
    /// # use traceline::{Key, Schema};
    /// let s = Schema::gcp("my-project");
    /// assert_eq!(s.key(Key::Level), Some("severity"));
    /// assert_eq!(s.key(Key::TraceId), Some("logging.googleapis.com/trace"));
    /// ```
    ///
    /// Sample line (an event inside a span; produced and checked by this doc test):
    ///
    /// ```
    /// # use traceline::Schema;
    /// # #[cfg(feature = "install")] {
    /// let line = traceline::doc_support::sample_line(Schema::gcp("my-project"));
    /// assert_eq!(line, r#"{"timestamp":"2026-11-25T10:32:03.123456789Z","severity":"INFO","message":"order created","target":"orders","logging.googleapis.com/trace":"projects/my-project/traces/4bf92f3577b34da6a3ce929d0e0e4736","logging.googleapis.com/spanId":"00f067aa0ba902b7","logging.googleapis.com/trace_sampled":true,"service.name":"orders","order.item_count":3,"order.customer_id":42}"#);
    /// # }
    /// ```
    ///
    /// Find one trace in the Logs Explorer: `trace="projects/my-project/traces/4bf92f3577b34da6a3ce929d0e0e4736"`.
    ///
    /// # Panics
    ///
    /// When `project_id` (spaces around it left out) is empty, or has a space, a control
    /// character or a `/` in it: `projects//traces/…` names no trace Cloud Logging can find.
    /// [`Schema::try_gcp`] returns an error instead, for an id read from configuration.
    pub fn gcp(project_id: &str) -> Self {
        match Schema::try_gcp(project_id) {
            Ok(s) => s,
            Err(e) => panic!("{e} (got {project_id:?})"),
        }
    }

    /// [`Schema::gcp`], or an error when `project_id` (spaces around it left out) is not a
    /// project id: empty, or with a space, a control character or a `/` in it.
    ///
    /// ```
    /// # use traceline::{Key, Schema};
    /// assert!(Schema::try_gcp(" my-project ").is_ok());
    /// let err = Schema::try_gcp("").unwrap_err();
    /// assert!(err.to_string().contains("needs a project id"));
    /// assert!(Schema::try_gcp("a/b").is_err());
    /// ```
    pub fn try_gcp(project_id: &str) -> Result<Self, UnknownSchema> {
        let id = project_id.trim();
        if id.is_empty()
            || id
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(UnknownSchema {
                name: format!("gcp:{project_id}"),
                gcp_without_project: true,
            });
        }
        Ok(Schema::gcp_checked(id))
    }

    fn gcp_checked(project_id: &str) -> Self {
        let mut s = Schema::default()
            .rename(Key::Level, "severity")
            .level_names(["DEBUG", "DEBUG", "INFO", "WARNING", "ERROR"])
            .rename(Key::TraceId, "logging.googleapis.com/trace")
            .trace_id_prefix(format!("projects/{project_id}/traces/"))
            .rename(Key::SpanId, "logging.googleapis.com/spanId")
            .rename(Key::TraceFlags, "logging.googleapis.com/trace_sampled")
            .rename(Key::Labels, "logging.googleapis.com/labels")
            .flags_format(FlagsFormat::Bool);
        // The entry's labels: a map of strings.
        s.string_labels = true;
        // `with_file` / `with_line_number`: the entry's source location.
        s.source_location = Some("logging.googleapis.com/sourceLocation");
        // Cloud Logging's special fields: its agent takes them out of the payload and applies
        // them to the entry (a user `time` would become the entry's time).
        s.store_reserved = &[
            "time",
            "timestamp",
            "timestampSeconds",
            "timestampNanos",
            "httpRequest",
            "logging.googleapis.com/labels",
            "logging.googleapis.com/sourceLocation",
            "logging.googleapis.com/insertId",
            "logging.googleapis.com/operation",
        ];
        s
    }

    /// Datadog: `dd.trace_id` / `dd.span_id` as the decimal of the ids' lower 64 bits,
    /// `status`, `dd.service` / `dd.version` / `dd.env`, `logger.name`, flat `error.kind`,
    /// `error.message`, `error.stack`.
    ///
    /// ```
    /// # use traceline::{Key, Schema};
    /// let s = Schema::datadog();
    /// assert_eq!(s.key(Key::TraceId), Some("dd.trace_id"));
    /// assert_eq!(s.key(Key::ServiceName), Some("dd.service"));
    /// ```
    ///
    /// Sample line (an event inside a span; produced and checked by this doc test):
    ///
    /// ```
    /// # use traceline::Schema;
    /// # #[cfg(feature = "install")] {
    /// let line = traceline::doc_support::sample_line(Schema::datadog());
    /// assert_eq!(line, r#"{"timestamp":"2026-11-25T10:32:03.123Z","status":"info","message":"order created","logger.name":"orders","dd.trace_id":"11803532876627986230","dd.span_id":"67667974448284343","dd.service":"orders","order.item_count":3,"order.customer_id":42}"#);
    /// # }
    /// ```
    ///
    /// Find one trace in Datadog Logs: `@dd.trace_id:11803532876627986230` (the trace id's lower 64 bits, as Datadog's own tracers write it).
    pub fn datadog() -> Self {
        let mut s = Schema::default()
            .rename(Key::Level, "status")
            .level_names(["trace", "debug", "info", "warn", "error"])
            .rename(Key::Target, "logger.name")
            .rename(Key::TraceId, "dd.trace_id")
            .rename(Key::SpanId, "dd.span_id")
            .id_format(IdFormat::DecimalLow64)
            .disable(Key::TraceFlags)
            .rename(Key::ServiceName, "dd.service")
            .rename(Key::ServiceVersion, "dd.version")
            .rename(Key::ServiceEnvironment, "dd.env")
            .rename_off(Key::ThreadName, "logger.thread_name")
            .rename(Key::ErrorMessage, "error.message")
            .rename(Key::ErrorType, "error.kind")
            .rename(Key::ErrorStackTrace, "error.stack")
            .timestamp_format(TimestampFormat::Rfc3339Millis)
            .error_layout(ErrorLayout::Flat);
        // Datadog's reserved attributes: a user field `service` would become the log's service
        // and break the link to its traces.
        s.store_reserved = &[
            "host", "service", "source", "trace_id", "span_id", "env", "version",
        ];
        s
    }

    /// A preset by name, as `TRACELINE_SCHEMA` gives it: `default`, `otel`, `ecs`,
    /// `gcp:<project-id>` (or `gcp` with `GOOGLE_CLOUD_PROJECT` set), `datadog`.
    ///
    /// ```
    /// # use traceline::{Key, Schema};
    /// assert_eq!(Schema::from_name("ecs").unwrap().key(Key::Level), Some("log.level"));
    /// assert!(Schema::from_name("gcp:p1").is_ok());
    /// ```
    pub fn from_name(name: &str) -> Result<Self, UnknownSchema> {
        Self::from_name_in(name, |var| std::env::var(var).ok())
    }

    /// [`Schema::from_name`], with `GOOGLE_CLOUD_PROJECT` read through `get` (as `init()` reads
    /// every variable, through `Builder::env` when one is given).
    pub(crate) fn from_name_in(
        name: &str,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, UnknownSchema> {
        // No project id, or not one: a known schema missing its project id.
        let gcp = |project: &str| {
            Schema::try_gcp(project).map_err(|_| UnknownSchema {
                name: name.into(),
                gcp_without_project: true,
            })
        };
        let lower = name.trim().to_ascii_lowercase();
        match lower.as_str() {
            "" | "default" | "traceline" => Ok(Schema::default()),
            "otel" | "opentelemetry" => Ok(Schema::otel()),
            "ecs" | "elastic" => Ok(Schema::ecs()),
            "datadog" | "dd" => Ok(Schema::datadog()),
            "gcp" | "google" => gcp(&get("GOOGLE_CLOUD_PROJECT").unwrap_or_default()),
            _ => match name.trim().split_once(':') {
                Some((g, project)) if g.eq_ignore_ascii_case("gcp") => gcp(project),
                _ => Err(UnknownSchema {
                    name: name.into(),
                    gcp_without_project: false,
                }),
            },
        }
    }

    /// Sets the name of an opt-in key without switching it on.
    fn rename_off(mut self, key: Key, name: &'static str) -> Self {
        self.names[key as usize] = Cow::Borrowed(name);
        self
    }

    /// Adds an entry to the `labels` object (ECS `labels`). Keys are sanitised as the
    /// ecs-logging spec asks: `.`, `*` and `\\` become `_`. With [`Schema::gcp`] the object is
    /// `logging.googleapis.com/labels` (the log entry's labels), keys are kept as given and
    /// values written as strings, as Cloud Logging's labels are.
    ///
    /// ```
    /// use traceline::Schema;
    /// let s = Schema::ecs().label("team.name", "checkout");
    /// # let _ = s;
    /// ```
    pub fn label(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        let key: String = key
            .chars()
            .map(|c| {
                if !self.string_labels && matches!(c, '.' | '*' | '\\') {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        self.labels.retain(|(k, _)| *k != key);
        self.labels.push((key, value.into()));
        self
    }
}

/// The ECS version the [`Schema::ecs`] preset declares: the last 1.x minor release (the line the
/// ecs-logging spec is written for), which has every field the preset writes
/// (`http.request.id` came in 1.9, `service.environment` in 1.12).
///
/// ```
/// assert_eq!(traceline::schema::ECS_VERSION, "1.12.0");
/// ```
pub const ECS_VERSION: &str = "1.12.0";

impl Schema {
    /// The key written for `key`, or `None` when it is switched off.
    ///
    /// ```
    /// use traceline::{Key, Schema};
    /// assert_eq!(Schema::default().key(Key::TraceId), Some("traceId"));
    /// assert_eq!(Schema::default().key(Key::File), None);
    /// ```
    pub fn key(&self, key: Key) -> Option<&str> {
        self.enabled[key as usize].then(|| &*self.names[key as usize])
    }

    /// Writes `key` under `name` (and switches it on). A name another key of the line already
    /// has (or the dotted parent or child of one) takes the collision prefix, as a user field
    /// would (`fields.level`): a line never holds one key twice.
    ///
    /// ```
    /// use traceline::{Key, Schema};
    /// let s = Schema::default().rename(Key::Message, "msg");
    /// assert_eq!(s.key(Key::Message), Some("msg"));
    /// ```
    pub fn rename(mut self, key: Key, name: impl Into<Cow<'static, str>>) -> Self {
        self.names[key as usize] = name.into();
        self.enabled[key as usize] = true;
        self
    }

    /// Switches `key` on under its current name.
    ///
    /// ```
    /// use traceline::{Key, Schema};
    /// assert_eq!(Schema::default().enable(Key::ThreadName).key(Key::ThreadName), Some("threadName"));
    /// ```
    pub fn enable(mut self, key: Key) -> Self {
        self.enabled[key as usize] = true;
        self
    }

    /// Switches `key` off: the line does not carry it.
    ///
    /// ```
    /// use traceline::{Key, Schema};
    /// assert_eq!(Schema::default().disable(Key::TraceFlags).key(Key::TraceFlags), None);
    /// ```
    pub fn disable(mut self, key: Key) -> Self {
        self.enabled[key as usize] = false;
        self
    }

    /// Sets the words written for TRACE, DEBUG, INFO, WARN and ERROR, in that order.
    ///
    /// ```
    /// use traceline::Schema;
    /// let s = Schema::default().level_names(["trace", "debug", "info", "warn", "error"]);
    /// # let _ = s;
    /// ```
    pub fn level_names(mut self, names: [&'static str; 5]) -> Self {
        self.levels = names.map(Cow::Borrowed);
        self
    }

    /// Sets how the timestamp is written.
    ///
    /// ```
    /// use traceline::{Schema, TimestampFormat};
    /// let s = Schema::default().timestamp_format(TimestampFormat::Rfc3339Millis);
    /// # let _ = s;
    /// ```
    pub fn timestamp_format(mut self, format: TimestampFormat) -> Self {
        self.timestamp = format;
        self
    }

    /// Sets how trace and span ids are spelled.
    ///
    /// ```
    /// use traceline::{IdFormat, Schema};
    /// let s = Schema::default().id_format(IdFormat::DecimalLow64);
    /// # let _ = s;
    /// ```
    pub fn id_format(mut self, format: IdFormat) -> Self {
        self.ids = format;
        self
    }

    /// Text written before the trace id inside its string, e.g. `projects/my-project/traces/`.
    ///
    /// ```
    /// use traceline::Schema;
    /// let s = Schema::default().trace_id_prefix("projects/p/traces/");
    /// # let _ = s;
    /// ```
    pub fn trace_id_prefix(mut self, prefix: impl Into<Cow<'static, str>>) -> Self {
        self.trace_id_prefix = prefix.into();
        self
    }

    /// Sets how the sampled flag is spelled.
    ///
    /// ```
    /// use traceline::{FlagsFormat, Schema};
    /// let s = Schema::default().flags_format(FlagsFormat::Bool);
    /// # let _ = s;
    /// ```
    pub fn flags_format(mut self, format: FlagsFormat) -> Self {
        self.flags = format;
        self
    }

    /// Sets where event and span fields go.
    ///
    /// ```
    /// use traceline::{FieldLayout, Schema};
    /// let s = Schema::default().field_layout(FieldLayout::Nested);
    /// # let _ = s;
    /// ```
    pub fn field_layout(mut self, layout: FieldLayout) -> Self {
        self.fields = layout;
        self
    }

    /// Sets how `&dyn Error` fields are written.
    ///
    /// ```
    /// use traceline::{ErrorLayout, Schema};
    /// let s = Schema::default().error_layout(ErrorLayout::Flat);
    /// # let _ = s;
    /// ```
    pub fn error_layout(mut self, layout: ErrorLayout) -> Self {
        self.errors = layout;
        self
    }

    /// Sets the service name written under [`Key::ServiceName`].
    ///
    /// ```
    /// use traceline::Schema;
    /// let s = Schema::default().service_name("orders");
    /// # let _ = s;
    /// ```
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service[0] = Some(name.into());
        self
    }

    /// Sets the service version written under [`Key::ServiceVersion`].
    ///
    /// ```
    /// use traceline::Schema;
    /// let s = Schema::default().service_version(env!("CARGO_PKG_VERSION"));
    /// # let _ = s;
    /// ```
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.service[1] = Some(version.into());
        self
    }

    /// Sets the deployment environment written under [`Key::ServiceEnvironment`].
    ///
    /// ```
    /// use traceline::Schema;
    /// let s = Schema::default().environment("production");
    /// # let _ = s;
    /// ```
    pub fn environment(mut self, env: impl Into<String>) -> Self {
        self.service[2] = Some(env.into());
        self
    }

    /// Adds a field written on every line, after the ids. A later field with the same key
    /// replaces an earlier one. A field under the key of the service name, version or
    /// environment (`service.name`, …) is that setting's value (as text), as `service_name` &
    /// co set it, ECS's `event.dataset` and `init()`'s resource included; where both are given,
    /// `service_name` & co win (a line never holds one key twice).
    ///
    /// ```
    /// use traceline::Schema;
    /// let s = Schema::default().static_field("region", "eu-west-1").static_field("pod", 3);
    /// # let _ = s;
    /// ```
    pub fn static_field(
        mut self,
        key: impl Into<Cow<'static, str>>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        let key = key.into();
        self.static_fields.retain(|(k, _)| *k != key);
        self.static_fields.push((key, value.into()));
        self
    }

    /// The service name (`0`), version (`1`) or environment (`2`) this schema writes: the one
    /// set with `service_name` & co, else a static field's value under that setting's key (its
    /// text: a number is written as a string), whether or not the key is switched on.
    pub(crate) fn service_setting(&self, i: usize) -> Option<String> {
        if let Some(set) = &self.service[i] {
            return Some(set.clone());
        }
        let key = &*self.names[SERVICE_KEYS[i] as usize];
        self.static_fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
    }
}

/// The keys of the service settings, in the order of `Schema::service`.
const SERVICE_KEYS: [Key; 3] = [
    Key::ServiceName,
    Key::ServiceVersion,
    Key::ServiceEnvironment,
];

/// Names that user fields must not take, with a cheap length pre-check.
#[derive(Clone, Debug, Default)]
pub(crate) struct Reserved {
    keys: Vec<Box<str>>,
    len_mask: u128,
    /// The collision prefix without its dot (`fields`), with a flat layout: the parent of every
    /// renamed key, so never a value itself. Only the name itself is taken; its dotted children
    /// are what renamed keys are.
    stem: Option<Box<str>>,
    /// Whether the dotted parents of `stem` (`a` for `a.b`) are taken too: at the top level,
    /// where every renamed key is their child; not inside the `fields` object.
    stem_parents: bool,
}

impl Reserved {
    fn add(&mut self, key: &str) {
        self.len_mask |= 1u128 << key.len().min(127);
        self.keys.push(key.into());
    }

    /// Whether `prefix` repeated `depth` times followed by `name` is reserved. A name (with no
    /// prefix yet) is also taken when it is the dotted parent or child of a reserved key:
    /// `error` beside `error.message`, `log.level.x` beside `log.level`. Stores that expand
    /// dotted keys into objects (Elasticsearch, Datadog) would hold a value and an object
    /// under one name, and refuse the line.
    #[inline]
    pub(crate) fn contains(&self, prefix: &str, depth: Depth, name: &str) -> bool {
        let len = prefix.len() * depth as usize + name.len();
        if self.len_mask & (1u128 << len.min(127)) != 0
            && self.keys.iter().any(|k| key_is(prefix, depth, name, k))
        {
            return true;
        }
        if depth == 0 {
            return self.keys.iter().any(|k| dotted_kin(k, name))
                || self.stem.as_deref().is_some_and(|stem| {
                    stem == name
                        || (self.stem_parents && dotted_kin(stem, name) && stem.len() > name.len())
                });
        }
        // A prefixed key is also taken when it is the dotted parent or child of a reserved key
        // that took the prefix itself (`fields.level.x` beside a static field `level` written
        // as `fields.level`).
        self.keys
            .iter()
            .any(|k| prefixed_kin(k, prefix, depth, name))
    }

    /// The first depth at which `name` is not reserved: its key is `prefix`×depth + `name`.
    pub(crate) fn free_depth(&self, prefix: &str, name: &str) -> Depth {
        let mut depth = 0;
        while self.contains(prefix, depth, name) {
            depth += 1;
        }
        depth
    }
}

/// How many times the collision prefix precedes a name in its key (one more for each field
/// that would otherwise write the same key: as many as a callsite has fields).
pub(crate) type Depth = u32;

/// Whether one of `a` and `b` is the other followed by `.` and more.
fn dotted_kin(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() < b.len() { (a, b) } else { (b, a) };
    long.len() > short.len() && long.as_bytes()[short.len()] == b'.' && long.starts_with(short)
}

/// Whether `key` and `prefix`×`depth` + `name` are dotted kin ([`dotted_kin`]) through `name`:
/// not when `key` followed by a dot lies within the prefixes (every prefixed key is a dotted
/// child of the stem, and of a key named like the prefix repeated, by design). Looked at in
/// place, with no string built.
fn prefixed_kin(key: &str, prefix: &str, depth: Depth, name: &str) -> bool {
    let p = prefix.len() * depth as usize;
    let total = p + name.len();
    let at = |i: usize| spelled_byte(prefix, (depth, name), i);
    let k = key.as_bytes();
    let (short, dot) = match k.len().cmp(&total) {
        std::cmp::Ordering::Less => (k.len(), at(k.len())),
        std::cmp::Ordering::Greater => (total, k[total]),
        std::cmp::Ordering::Equal => return false,
    };
    dot == b'.' && (0..short).all(|i| k[i] == at(i)) && k.len() >= p
}

/// Whether `prefix`×`depth` + `name` spells `key`.
#[inline]
pub(crate) fn key_is(prefix: &str, depth: Depth, name: &str, key: &str) -> bool {
    let mut rest = key;
    for _ in 0..depth {
        match rest.strip_prefix(prefix) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest == name
}

/// Whether two (depth, name) keys spell the same string. Keys of different lengths are told
/// apart without comparing text.
#[inline]
pub(crate) fn same_key(prefix: &str, a: (Depth, &str), b: (Depth, &str)) -> bool {
    use std::cmp::Ordering::*;
    if spelled_len(prefix, a) != spelled_len(prefix, b) {
        return false;
    }
    match a.0.cmp(&b.0) {
        Equal => a.1 == b.1,
        Less => key_is(prefix, b.0 - a.0, b.1, a.1),
        Greater => key_is(prefix, a.0 - b.0, a.1, b.1),
    }
}

/// Whether two (depth, name) keys cannot both be on a flat line: the same string, or one the
/// dotted parent of the other (`user` and `user.id`: stores that expand dotted keys into
/// objects would hold a value and an object under one name, and refuse the line).
pub(crate) fn clashes(prefix: &str, a: (Depth, &str), b: (Depth, &str)) -> bool {
    same_key(prefix, a, b) || keys_kin(prefix, a, b)
}

/// Whether one of two (depth, name) keys is the dotted parent of the other, spelled out with
/// the prefix, with no string built. Only when the parent reaches into the other's name: not
/// when it lies within the other's prefixes (`fields.fields` beside `fields.fields.x`), as
/// more prefixes would never part them, and every prefixed key is a child of the prefix by
/// design.
fn keys_kin(prefix: &str, a: (Depth, &str), b: (Depth, &str)) -> bool {
    let len = |key| spelled_len(prefix, key);
    let at = |key, i| spelled_byte(prefix, key, i);
    let (short, long) = if len(a) < len(b) { (a, b) } else { (b, a) };
    let n = len(short);
    len(long) > n
        && n > prefix.len() * long.0 as usize
        && at(long, n) == b'.'
        && (0..n).all(|i| at(short, i) == at(long, i))
}

/// The length of the (depth, name) key `prefix`×`depth` + `name`.
#[inline]
fn spelled_len(prefix: &str, (depth, name): (Depth, &str)) -> usize {
    prefix.len() * depth as usize + name.len()
}

/// Byte `i` of the (depth, name) key `prefix`×`depth` + `name`, with no string built.
fn spelled_byte(prefix: &str, (depth, name): (Depth, &str), i: usize) -> u8 {
    let p = prefix.len() * depth as usize;
    if i < p {
        prefix.as_bytes()[i % prefix.len()]
    } else {
        name.as_bytes()[i - p]
    }
}

/// A schema turned into the byte fragments the hot path copies.
///
/// Every fragment starts with `,`: the line's first comma is turned into `{` at the end.
#[derive(Clone, Debug)]
pub(crate) struct Compiled {
    /// `,"traceline.truncated":` (behind the collision prefix if a schema key has that name).
    pub(crate) truncated: Box<[u8]>,
    pub(crate) timestamp: Option<Piece<HEAD_PIECE>>,
    pub(crate) timestamp_format: TimestampFormat,
    /// `,"level":"INFO"` (and the severity number, if on), then the message's key and opening
    /// quote when the schema writes messages, per level: what follows the timestamp.
    pub(crate) head: [Piece<HEAD_PIECE>; 5],
    /// How many bytes at the end of each `head` open the message (0 when the schema writes no
    /// message).
    pub(crate) message_open: usize,
    pub(crate) target: Option<Box<[u8]>>,
    /// `,"traceId":"` followed by the trace id prefix.
    pub(crate) trace_id: Option<Box<[u8]>>,
    pub(crate) span_id: Option<Box<[u8]>>,
    pub(crate) flags: Option<Box<[u8]>>,
    pub(crate) transaction_id: Option<Box<[u8]>>,
    /// Span ids as decimal numbers (the transaction id too), not hex.
    pub(crate) ids_decimal: bool,
    pub(crate) correlation_id: Option<Box<[u8]>>,
    pub(crate) file: Option<Box<[u8]>>,
    pub(crate) line: Option<Box<[u8]>>,
    /// `,"<key>":` of the object the file and line go in (the line then as a string).
    pub(crate) source_location: Option<Box<[u8]>>,
    pub(crate) thread_name: Option<Box<[u8]>>,
    pub(crate) thread_id: Option<Box<[u8]>>,
    /// Service and static fields, ready to copy.
    pub(crate) static_fields: Box<[u8]>,
    pub(crate) flags_format: FlagsFormat,
    pub(crate) layout: FieldLayout,
    /// With [`FieldLayout::Nested`], the key of the event's fields object; `None` when the
    /// layout is flat or the key is switched off (the fields then go at the top level).
    pub(crate) fields_key: Option<Box<[u8]>>,
    pub(crate) span_key: Option<Box<[u8]>>,
    pub(crate) spans_key: Option<Box<[u8]>>,
    /// Prefix for user fields that collide: `fields.`.
    pub(crate) prefix: Box<str>,
    pub(crate) errors: ErrorLayout,
    /// With [`ErrorLayout::Flat`], the keys of the error's parts; `None` for a part switched
    /// off.
    pub(crate) error_message: Option<Box<[u8]>>,
    pub(crate) error_type: Option<Box<[u8]>>,
    pub(crate) error_stack_trace: Option<Box<[u8]>>,
    /// Keys event fields must not take.
    pub(crate) event_reserved: Reserved,
    /// Keys span fields must not take.
    pub(crate) span_reserved: Reserved,
    /// The ids part of a line, unsampled and sampled, when ids are hex (decimal ids are written
    /// key by key).
    pub(crate) ids_line: [Option<IdsLine>; 2],
}

/// A fragment of a line the hot path copies: when at most `N` bytes long, with one copy of
/// constant size cut back to its length (no call); longer ones (long custom key names) as they
/// are.
#[derive(Clone, Debug)]
pub(crate) enum Piece<const N: usize> {
    Short([u8; N], u8),
    Long(Box<[u8]>),
}

/// The size of the line's head fragments ([`Compiled::head`], the timestamp key, a callsite's
/// target).
pub(crate) const HEAD_PIECE: usize = 48;

/// The size of the ids part of a line copied in one store (91 bytes in the default schema, 94 in
/// OpenTelemetry's, 75 in ECS).
pub(crate) const IDS_PIECE: usize = 96;

impl<const N: usize> Piece<N> {
    pub(crate) fn new(bytes: &[u8]) -> Self {
        match u8::try_from(bytes.len()) {
            Ok(len) if bytes.len() <= N => {
                let mut short = [0; N];
                short[..bytes.len()].copy_from_slice(bytes);
                Piece::Short(short, len)
            }
            _ => Piece::Long(bytes.into()),
        }
    }

    /// Appends the fragment to `out`.
    #[inline(always)]
    pub(crate) fn put(&self, out: &mut Vec<u8>) {
        match self {
            Piece::Short(bytes, len) => crate::json::put_block(out, bytes, usize::from(*len)),
            Piece::Long(bytes) => out.extend_from_slice(bytes),
        }
    }

    /// The fragment's bytes.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Piece::Short(bytes, len) => &bytes[..usize::from(*len)],
            Piece::Long(bytes) => bytes,
        }
    }
}

/// The trace flags as written on a line.
pub(crate) fn flags_text(format: FlagsFormat, sampled: bool) -> &'static [u8] {
    match (format, sampled) {
        (FlagsFormat::Hex, true) => b"\"01\"",
        (FlagsFormat::Hex, false) => b"\"00\"",
        (FlagsFormat::Bool, true) => b"true",
        (FlagsFormat::Bool, false) => b"false",
    }
}

/// The ids part of a line (trace id, span id and flags, as the schema has them) with zeros
/// where the hex digits go: written with one copy, then the digits are put in place.
#[derive(Clone, Debug)]
pub(crate) struct IdsLine {
    pub(crate) bytes: Piece<IDS_PIECE>,
    /// Where the trace id's 32 digits and the span id's 16 go.
    pub(crate) trace_at: Option<usize>,
    pub(crate) span_at: Option<usize>,
}

impl IdsLine {
    fn build(
        trace_id: Option<&[u8]>,
        span_id: Option<&[u8]>,
        flags: Option<&[u8]>,
        flags_format: FlagsFormat,
        sampled: bool,
    ) -> Self {
        let mut bytes = Vec::new();
        let mut id = |key: Option<&[u8]>, digits: usize| {
            key.map(|k| {
                bytes.extend_from_slice(k);
                let at = bytes.len();
                bytes.resize(at + digits, b'0');
                bytes.push(b'"');
                at
            })
        };
        let trace_at = id(trace_id, 32);
        let span_at = id(span_id, 16);
        if let Some(k) = flags {
            bytes.extend_from_slice(k);
            bytes.extend_from_slice(flags_text(flags_format, sampled));
        }
        IdsLine {
            bytes: Piece::new(&bytes),
            trace_at,
            span_at,
        }
    }
}

/// Writes a JSON value with traceline's complete escaping (serde_json leaves U+2028/U+2029).
fn write_value(out: &mut Vec<u8>, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => crate::json::write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                crate::json::write_key(out, k);
                write_value(out, item);
            }
            out.push(b'}');
        }
        other => serde_json::to_writer(out, other).expect("writing to a Vec cannot fail"),
    }
}

fn frag(key: &str) -> Box<[u8]> {
    let mut v = vec![b','];
    crate::json::write_key(&mut v, key);
    v.into()
}

impl Schema {
    /// The keys this schema writes at the top level of a line (not the structural ones a flat
    /// layout leaves out, nor the parts of an error written as an object, nor a service key
    /// without a value, nor the file and line inside their object), with their names.
    fn line_keys(&self, source_location: bool) -> impl Iterator<Item = (Key, &str)> {
        let flat = self.fields == FieldLayout::Flatten;
        Key::ALL.into_iter().filter_map(move |k| {
            let structural = matches!(k, Key::Fields | Key::Span | Key::Spans);
            let error = matches!(k, Key::ErrorMessage | Key::ErrorType | Key::ErrorStackTrace);
            let service = matches!(
                k,
                Key::ServiceName | Key::ServiceVersion | Key::ServiceEnvironment
            );
            if (structural && flat) || (error && self.errors != ErrorLayout::Flat) {
                return None;
            }
            if service
                && self
                    .service_setting(k as usize - Key::ServiceName as usize)
                    .is_none()
            {
                return None;
            }
            if matches!(k, Key::File | Key::Line) && source_location {
                return None; // inside their object
            }
            Some((k, self.key(k)?))
        })
    }

    /// The key of the object the file and line go in, under the store's own names (`file`,
    /// `line`); renaming either writes both at the top level, as named.
    fn source_location_key(&self) -> Option<&'static str> {
        self.source_location.filter(|_| {
            matches!(self.key(Key::File), None | Some("file"))
                && matches!(self.key(Key::Line), None | Some("line"))
                && (self.key(Key::File).is_some() || self.key(Key::Line).is_some())
        })
    }

    pub(crate) fn compile(&self) -> Compiled {
        match self.distinct_keys(self.source_location_key().is_some()) {
            Some(distinct) => distinct.compile_distinct(),
            None => self.compile_distinct(),
        }
    }

    /// This schema with the names of its line keys made distinct, when two clash: the same
    /// name, or one the dotted parent of the other (stores that expand dotted keys would hold a
    /// value and an object under one name), or the collision prefix's stem where fields go at
    /// the top level (the renamed fields are its children). The later key takes the collision
    /// prefix, as a user field would; the fields object's key (the stem) keeps its name.
    /// `None` when no names clash.
    fn distinct_keys(&self, source_location: bool) -> Option<Schema> {
        let stem = &*self.names[Key::Fields as usize];
        let prefix = format!("{stem}.");
        let stem_is_key = self.fields == FieldLayout::Nested && self.key(Key::Fields).is_some();
        let clashes = |taken: &[String], name: &str| {
            ((name == stem || (dotted_kin(stem, name) && stem.len() > name.len())) && !stem_is_key)
                || taken.iter().any(|t| {
                    t == name
                        // A renamed key is a child of the stem by design: the fields object
                        // keeps a place for it.
                        || (dotted_kin(t, name) && !(t == stem && name.starts_with(&prefix)))
                })
        };
        let mut taken: Vec<String> = Vec::new();
        if stem_is_key {
            taken.push(stem.to_string());
        }
        // The object the file and line go in (Cloud Logging's source location) is a key of
        // the line too: a key renamed to its name takes the prefix.
        if let Some(object) = self.source_location_key().filter(|_| source_location) {
            taken.push(object.to_owned());
        }
        let mut renamed: Option<Schema> = None;
        for (k, name) in self.line_keys(source_location) {
            if k == Key::Fields {
                continue;
            }
            let mut candidate = name.to_string();
            // A few prefixes settle any real schema. A name that stays a child of another key
            // whatever the prefix (a key named `fields.fields`, or one named like a dotted
            // parent of the stem) is numbered, then spelled with no dot at all: only an equal
            // name clashes with that, and the numbers run out of taken names.
            let mut n = 0;
            while clashes(&taken, &candidate) {
                n += 1;
                candidate = match n {
                    1..=4 => format!("{}{name}", prefix.repeat(n)),
                    5..=8 => format!("{prefix}{name}_{n}"),
                    _ => format!("{}_{n}", name.replace('.', "_")),
                };
            }
            if candidate != name {
                renamed.get_or_insert_with(|| self.clone()).names[k as usize] =
                    candidate.clone().into();
            }
            taken.push(candidate);
        }
        renamed
    }

    /// [`Schema::compile`] for a schema whose line keys are distinct.
    fn compile_distinct(&self) -> Compiled {
        let on = |k: Key| self.key(k).map(frag);
        let source_location = self.source_location_key();
        let mut reserved = Reserved::default();
        let flat = self.fields == FieldLayout::Flatten;
        let prefix = format!("{}.", self.names[Key::Fields as usize]);
        for (_, name) in self.line_keys(source_location.is_some()) {
            reserved.add(name);
        }
        for name in self.store_reserved {
            reserved.add(name);
        }
        if let Some(object) = source_location {
            reserved.add(object);
        }
        // The collision prefix: renamed keys are its dotted children, so where fields go at the
        // top level a field named like its stem (`fields`) is renamed too; with the nested
        // layout the stem is the `fields` object's key, reserved above.
        if flat || self.key(Key::Fields).is_none() {
            reserved.stem = Some(self.names[Key::Fields as usize].clone().into());
            reserved.stem_parents = true;
        }
        let prefixed =
            |depth: Depth, name: &str| format!("{}{name}", prefix.repeat(depth as usize));
        // The key of a line cut at the line length limit: never a key of the line's own.
        let truncated = prefixed(
            reserved.free_depth(&prefix, crate::layer::TRUNCATED_KEY),
            crate::layer::TRUNCATED_KEY,
        );
        reserved.add(&truncated);
        let mut static_fields = Vec::new();
        for (i, k) in SERVICE_KEYS.into_iter().enumerate() {
            // Set with `service_name` & co, else as a static field under the key.
            if let (Some(name), Some(v)) = (self.key(k), self.service_setting(i)) {
                static_fields.extend_from_slice(&frag(name));
                crate::json::write_str(&mut static_fields, &v);
            }
        }
        // ECS's `event.dataset`, unless a key of the line took that name (or its parent's), or
        // a static field gives it explicitly (written with the static fields, under its name).
        let explicit = self.static_fields.iter().any(|(k, _)| k == "event.dataset");
        if self.dataset_from_service && !explicit && !reserved.contains(&prefix, 0, "event.dataset")
        {
            if let Some(name) = self.service_setting(0) {
                static_fields.extend_from_slice(&frag("event.dataset"));
                crate::json::write_str(&mut static_fields, &name);
                reserved.add("event.dataset");
            }
        }
        if let (false, Some(key)) = (self.labels.is_empty(), self.key(Key::Labels)) {
            static_fields.extend_from_slice(&frag(key));
            let object: serde_json::Map<String, serde_json::Value> = self
                .labels
                .iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(_) => (k.clone(), v.clone()),
                    other if self.string_labels => (k.clone(), other.to_string().into()),
                    other => (k.clone(), other.clone()),
                })
                .collect();
            write_value(&mut static_fields, &serde_json::Value::Object(object));
            reserved.add(key);
        }
        for (k, v) in &self.static_fields {
            // Under a service key that is on, the service setting is written above (this
            // field's value, or the one set with `service_name` & co, which wins): never two keys.
            if SERVICE_KEYS.iter().any(|s| self.key(*s) == Some(k)) {
                continue;
            }
            // A static field named like a schema key gets the collision prefix, as user fields do.
            let key = prefixed(reserved.free_depth(&prefix, k), k);
            static_fields.extend_from_slice(&frag(&key));
            write_value(&mut static_fields, v);
            reserved.add(&key);
        }
        let message = on(Key::Message);
        let message_open = message.as_ref().map_or(0, |k| k.len() + 1);
        let head = std::array::from_fn(|i| {
            let mut v = Vec::new();
            if let Some(k) = self.key(Key::Level) {
                v.extend_from_slice(&frag(k));
                crate::json::write_str(&mut v, &self.levels[i]);
            }
            if let Some(k) = self.key(Key::SeverityNumber) {
                v.extend_from_slice(&frag(k));
                crate::json::write_u64(&mut v, [1, 5, 9, 13, 17][i]);
            }
            if let Some(k) = &message {
                v.extend_from_slice(k);
                v.push(b'"');
            }
            Piece::new(&v)
        });
        let quoted = |k: Key, prefix: &str| {
            self.key(k).map(|name| {
                let mut v = frag(name).into_vec();
                v.push(b'"');
                crate::json::escape_into(&mut v, prefix);
                v.into_boxed_slice()
            })
        };
        // Span fields go at the top level with a flat layout, else in objects beside `name`.
        let span_reserved = if flat {
            reserved.clone()
        } else {
            let mut r = Reserved::default();
            r.add("name");
            r
        };
        // With the `fields` object switched off, nested event fields go at the top level, and
        // take the prefix on a collision as flattened ones do.
        let fields_key = if flat { None } else { on(Key::Fields) };
        let event_reserved = if fields_key.is_none() {
            reserved
        } else {
            // Inside the `fields` object, the names of top-level keys under its name (a static
            // field renamed `fields.level`, or named so) are taken: once dotted keys are
            // expanded, `fields.level` and `"fields":{"level":…}` are one key.
            let mut inside = Reserved {
                // Keys renamed inside the object are children of the stem there too.
                stem: Some(self.names[Key::Fields as usize].clone().into()),
                ..Reserved::default()
            };
            for k in &reserved.keys {
                if let Some(rest) = k.strip_prefix(prefix.as_str()) {
                    inside.add(rest);
                }
            }
            inside
        };
        let trace_id = quoted(Key::TraceId, &self.trace_id_prefix);
        let span_id = quoted(Key::SpanId, "");
        let flags = on(Key::TraceFlags);
        let ids_line = |sampled| {
            (self.ids == IdFormat::Hex).then(|| {
                IdsLine::build(
                    trace_id.as_deref(),
                    span_id.as_deref(),
                    flags.as_deref(),
                    self.flags,
                    sampled,
                )
            })
        };
        let ids_line = [ids_line(false), ids_line(true)];
        Compiled {
            ids_line,
            truncated: frag(&truncated),
            timestamp: on(Key::Timestamp).map(|k| Piece::new(&k)),
            timestamp_format: self.timestamp,
            head,
            message_open,
            target: on(Key::Target),
            trace_id,
            span_id,
            flags,
            transaction_id: quoted(Key::TransactionId, ""),
            ids_decimal: self.ids != IdFormat::Hex,
            correlation_id: on(Key::CorrelationId),
            file: on(Key::File),
            line: on(Key::Line),
            source_location: source_location.map(frag),
            thread_name: on(Key::ThreadName),
            thread_id: on(Key::ThreadId),
            static_fields: static_fields.into(),
            flags_format: self.flags,
            layout: self.fields,
            fields_key,
            span_key: on(Key::Span),
            spans_key: on(Key::Spans),
            prefix: format!("{}.", self.names[Key::Fields as usize]).into(),
            errors: self.errors,
            error_message: on(Key::ErrorMessage),
            error_type: on(Key::ErrorType),
            error_stack_trace: on(Key::ErrorStackTrace),
            event_reserved,
            span_reserved,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gcp_schema_without_a_project_says_so() {
        for name in ["gcp", "gcp:", "GCP:"] {
            let err = Schema::from_name_in(name, |_| None)
                .unwrap_err()
                .to_string();
            assert!(err.contains("needs a project id"), "{name}: {err}");
        }
        let err = Schema::from_name_in("gcpx", |_| None)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("unknown schema"), "{err}");
        assert!(Schema::from_name_in("gcp:my-project", |_| None).is_ok());
        // Blank, or no project id (a space or a `/` in it): refused, from either place.
        for name in ["gcp: ", "gcp:a b", "gcp:a/b", "gcp:\u{7f}"] {
            let err = Schema::from_name_in(name, |_| None)
                .unwrap_err()
                .to_string();
            assert!(err.contains("needs a project id"), "{name:?}: {err}");
        }
        for value in ["", " ", "\t", "my project", "p/traces/x"] {
            let err = Schema::from_name_in("gcp", |_| Some(value.to_owned()))
                .unwrap_err()
                .to_string();
            assert!(err.contains("needs a project id"), "{value:?}: {err}");
        }
        assert!(Schema::from_name_in("gcp", |_| Some("my-project".into())).is_ok());
        assert!(Schema::try_gcp("").is_err());
        assert!(Schema::try_gcp("example.com:my-project").is_ok());
    }

    /// Spaces around a project id are left out of the trace's resource name.
    #[test]
    fn a_gcp_project_id_is_trimmed() {
        for s in [
            Schema::gcp(" my-project\n"),
            Schema::from_name_in("gcp: my-project ", |_| None).unwrap(),
            Schema::from_name_in("gcp", |_| Some(" my-project ".into())).unwrap(),
        ] {
            assert_eq!(s.trace_id_prefix, "projects/my-project/traces/");
        }
    }

    #[test]
    #[should_panic(expected = "needs a project id")]
    fn a_blank_gcp_project_id_panics_in_the_constructor() {
        let _ = Schema::gcp(" ");
    }

    #[test]
    fn pieces_of_every_length_are_copied_whole_after_what_is_there() {
        for len in 0..=HEAD_PIECE + 2 {
            let fragment: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let piece = Piece::<HEAD_PIECE>::new(&fragment);
            assert_eq!(matches!(piece, Piece::Short(..)), len <= HEAD_PIECE);
            assert_eq!(piece.bytes(), fragment);
            let mut out = b"{\"x\":1".to_vec();
            piece.put(&mut out);
            piece.put(&mut out);
            let mut want = b"{\"x\":1".to_vec();
            want.extend_from_slice(&fragment);
            want.extend_from_slice(&fragment);
            assert_eq!(out, want);
        }
    }

    #[test]
    fn the_hex_ids_of_the_built_in_schemas_take_one_store() {
        for schema in [Schema::default(), Schema::otel(), Schema::ecs()] {
            let compiled = schema.compile();
            for line in compiled.ids_line.iter().flatten() {
                assert!(matches!(line.bytes, Piece::Short(..)), "{line:?}");
            }
        }
    }
}

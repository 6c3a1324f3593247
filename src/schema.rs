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
//! under `fields.<name>` instead (for example `fields.level`). When event and span fields share a
//! name, the event's own field wins over the innermost span's, which wins over outer spans'.

use std::borrow::Cow;

use crate::timestamp::TimestampFormat;

/// A part of the line whose key a [`Schema`] names.
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
    /// The span id of the local root span (ECS `transaction.id`). Off by default.
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
    /// It is also the prefix given to a user field that collides with a reserved key.
    Fields,
    /// With [`FieldLayout::Nested`], the object holding the innermost span. Default `span`.
    Span,
    /// With [`FieldLayout::Nested`], the list of spans from root to leaf. Default `spans`.
    Spans,
    /// With [`ErrorLayout::Flat`], the error's message. Default `error.message`.
    ErrorMessage,
    /// With [`ErrorLayout::Flat`], the error's type. Default `error.type`.
    ErrorType,
    /// With [`ErrorLayout::Flat`], the error with its causes as text. Default `error.stack_trace`.
    ErrorStackTrace,
}

impl Key {
    /// Every key, in the order the line writes them.
    pub const ALL: [Key; 23] = [
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
    ];
    const COUNT: usize = Key::ALL.len();
}

/// How trace and span ids are spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdFormat {
    /// Lowercase hex, 32 digits for a trace id and 16 for a span id (W3C, OTLP).
    Hex,
    /// The lower 64 bits as a decimal string (Datadog's `dd.trace_id` / `dd.span_id`).
    DecimalLow64,
}

/// How the sampled flag is spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlagsFormat {
    /// Two hex digits, `"01"` when sampled, `"00"` when not (W3C `trace-flags`).
    Hex,
    /// `true` / `false` (Google Cloud's `trace_sampled`).
    Bool,
}

/// Where event and span fields go.
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ErrorLayout {
    /// Under the field's own name, as `{"message": "...", "chain": ["cause", ...]}`.
    #[default]
    Object,
    /// The first error of an event goes to the top-level keys [`Key::ErrorMessage`],
    /// [`Key::ErrorType`] and [`Key::ErrorStackTrace`] (ECS); further errors as [`Self::Object`].
    Flat,
}

/// The names and spellings of one output format. See the [module docs](self).
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
        }
    }
}

impl Schema {
    /// The key written for `key`, or `None` when it is switched off.
    pub fn key(&self, key: Key) -> Option<&str> {
        self.enabled[key as usize].then(|| &*self.names[key as usize])
    }

    /// Writes `key` under `name` (and switches it on).
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
    /// replaces an earlier one.
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
}

/// Names that user fields must not take, with a cheap length pre-check.
#[derive(Clone, Debug, Default)]
pub(crate) struct Reserved {
    keys: Vec<Box<str>>,
    len_mask: u128,
}

impl Reserved {
    fn add(&mut self, key: &str) {
        self.len_mask |= 1u128 << key.len().min(127);
        self.keys.push(key.into());
    }

    /// Whether `prefix` repeated `depth` times followed by `name` is reserved.
    #[inline]
    pub(crate) fn contains(&self, prefix: &str, depth: u8, name: &str) -> bool {
        let len = prefix.len() * depth as usize + name.len();
        if self.len_mask & (1u128 << len.min(127)) == 0 {
            return false;
        }
        self.keys.iter().any(|k| key_is(prefix, depth, name, k))
    }
}

/// Whether `prefix`×`depth` + `name` spells `key`.
#[inline]
pub(crate) fn key_is(prefix: &str, depth: u8, name: &str, key: &str) -> bool {
    let mut rest = key;
    for _ in 0..depth {
        match rest.strip_prefix(prefix) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest == name
}

/// Whether two (depth, name) keys spell the same string.
#[inline]
pub(crate) fn same_key(prefix: &str, a: (u8, &str), b: (u8, &str)) -> bool {
    use std::cmp::Ordering::*;
    match a.0.cmp(&b.0) {
        Equal => a.1 == b.1,
        Less => key_is(prefix, b.0 - a.0, b.1, a.1),
        Greater => key_is(prefix, a.0 - b.0, a.1, b.1),
    }
}

/// A schema turned into the byte fragments the hot path copies.
///
/// Every fragment starts with `,`: the line's first comma is turned into `{` at the end.
#[derive(Clone, Debug)]
pub(crate) struct Compiled {
    pub(crate) timestamp: Option<Box<[u8]>>,
    pub(crate) timestamp_format: TimestampFormat,
    /// `,"level":"INFO"` (and the severity number, if on), per level.
    pub(crate) level: [Box<[u8]>; 5],
    pub(crate) message: Option<Box<[u8]>>,
    pub(crate) target: Option<Box<[u8]>>,
    /// `,"traceId":"` followed by the trace id prefix.
    pub(crate) trace_id: Option<Box<[u8]>>,
    pub(crate) span_id: Option<Box<[u8]>>,
    pub(crate) flags: Option<Box<[u8]>>,
    pub(crate) transaction_id: Option<Box<[u8]>>,
    pub(crate) correlation_id: Option<Box<[u8]>>,
    pub(crate) file: Option<Box<[u8]>>,
    pub(crate) line: Option<Box<[u8]>>,
    pub(crate) thread_name: Option<Box<[u8]>>,
    pub(crate) thread_id: Option<Box<[u8]>>,
    /// Service and static fields, ready to copy.
    pub(crate) static_fields: Box<[u8]>,
    pub(crate) ids: IdFormat,
    pub(crate) flags_format: FlagsFormat,
    pub(crate) layout: FieldLayout,
    pub(crate) fields_key: Box<[u8]>,
    pub(crate) span_key: Box<[u8]>,
    pub(crate) spans_key: Box<[u8]>,
    /// Prefix for user fields that collide: `fields.`.
    pub(crate) prefix: Box<str>,
    pub(crate) errors: ErrorLayout,
    pub(crate) error_message: Box<[u8]>,
    pub(crate) error_stack_trace: Box<[u8]>,
    /// Keys event fields must not take.
    pub(crate) event_reserved: Reserved,
    /// Keys span fields must not take.
    pub(crate) span_reserved: Reserved,
}

fn frag(key: &str) -> Box<[u8]> {
    let mut v = vec![b','];
    crate::json::write_key(&mut v, key);
    v.into()
}

impl Schema {
    pub(crate) fn compile(&self) -> Compiled {
        let on = |k: Key| self.key(k).map(frag);
        let mut reserved = Reserved::default();
        let flat = self.fields == FieldLayout::Flatten;
        for k in Key::ALL {
            let structural = matches!(k, Key::Fields | Key::Span | Key::Spans);
            let error = matches!(k, Key::ErrorMessage | Key::ErrorType | Key::ErrorStackTrace);
            let service = matches!(
                k,
                Key::ServiceName | Key::ServiceVersion | Key::ServiceEnvironment
            );
            if (structural && flat) || (error && self.errors != ErrorLayout::Flat) {
                continue;
            }
            if service && self.service[k as usize - Key::ServiceName as usize].is_none() {
                continue;
            }
            if let Some(name) = self.key(k) {
                reserved.add(name);
            }
        }
        let mut static_fields = Vec::new();
        for (i, k) in [
            Key::ServiceName,
            Key::ServiceVersion,
            Key::ServiceEnvironment,
        ]
        .into_iter()
        .enumerate()
        {
            if let (Some(name), Some(v)) = (self.key(k), &self.service[i]) {
                static_fields.extend_from_slice(&frag(name));
                crate::json::write_str(&mut static_fields, v);
            }
        }
        for (k, v) in &self.static_fields {
            let is_service = [
                Key::ServiceName,
                Key::ServiceVersion,
                Key::ServiceEnvironment,
            ]
            .iter()
            .enumerate()
            .any(|(i, s)| self.service[i].is_some() && self.key(*s) == Some(k));
            if is_service {
                continue; // the service setting wins; never two keys
            }
            // A static field named like a schema key gets the collision prefix, as user fields do.
            let prefix = format!("{}.", self.names[Key::Fields as usize]);
            let mut key = k.to_string();
            while reserved.contains("", 0, &key) {
                key.insert_str(0, &prefix);
            }
            static_fields.extend_from_slice(&frag(&key));
            serde_json::to_writer(&mut static_fields, v).expect("writing to a Vec cannot fail");
            reserved.add(&key);
        }
        let level = std::array::from_fn(|i| {
            let mut v = Vec::new();
            if let Some(k) = self.key(Key::Level) {
                v.extend_from_slice(&frag(k));
                crate::json::write_str(&mut v, &self.levels[i]);
            }
            if let Some(k) = self.key(Key::SeverityNumber) {
                v.extend_from_slice(&frag(k));
                crate::json::write_u64(&mut v, [1, 5, 9, 13, 17][i]);
            }
            v.into()
        });
        let quoted = |k: Key, prefix: &str| {
            self.key(k).map(|name| {
                let mut v = frag(name).into_vec();
                v.push(b'"');
                crate::json::escape_into(&mut v, prefix);
                v.into_boxed_slice()
            })
        };
        let mut span_reserved = Reserved::default();
        let event_reserved = if flat {
            span_reserved = reserved.clone();
            reserved
        } else {
            span_reserved.add("name");
            Reserved::default()
        };
        Compiled {
            timestamp: on(Key::Timestamp),
            timestamp_format: self.timestamp,
            level,
            message: on(Key::Message),
            target: on(Key::Target),
            trace_id: quoted(Key::TraceId, &self.trace_id_prefix),
            span_id: quoted(Key::SpanId, ""),
            flags: on(Key::TraceFlags),
            transaction_id: quoted(Key::TransactionId, ""),
            correlation_id: on(Key::CorrelationId),
            file: on(Key::File),
            line: on(Key::Line),
            thread_name: on(Key::ThreadName),
            thread_id: on(Key::ThreadId),
            static_fields: static_fields.into(),
            ids: self.ids,
            flags_format: self.flags,
            layout: self.fields,
            fields_key: frag(&self.names[Key::Fields as usize]),
            span_key: frag(&self.names[Key::Span as usize]),
            spans_key: frag(&self.names[Key::Spans as usize]),
            prefix: format!("{}.", self.names[Key::Fields as usize]).into(),
            errors: self.errors,
            error_message: frag(&self.names[Key::ErrorMessage as usize]),
            error_stack_trace: frag(&self.names[Key::ErrorStackTrace as usize]),
            event_reserved,
            span_reserved,
        }
    }
}

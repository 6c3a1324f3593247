//! The `tracing-subscriber` layer that writes one JSON line per event.

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tracing_core::dispatcher::WeakDispatch;
use tracing_core::{Dispatch, Event, Level, Subscriber, span};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{Extensions, LookupSpan, Registry, SpanRef};

use crate::fields::{
    CallsiteKeys, Entry, EventVisitor, MessageVisitor, SpanData, SpanKeys, SpanSlot, SpanVisitor,
    merge,
};
use crate::ids::{self, Ids};
use crate::json;
use crate::output::{self, Stats};
use crate::redact::Redaction;
use crate::schema::{Compiled, FieldLayout, Key, Schema, flags_text};
use crate::timestamp::TimestampFormat;

/// Returns a layer that writes every event as one JSON line to stdout, with the default
/// [`Schema`].
///
/// ```
/// use tracing_subscriber::prelude::*;
///
/// let subscriber = tracing_subscriber::registry().with(traceline::layer());
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::info!(order.customer_id = 42, "order created");
/// });
/// ```
pub fn layer() -> Layer {
    Layer::new(crate::StdoutLine::lock as fn() -> crate::StdoutLine)
}

/// A layer setting that changes the schema, kept to be applied again by `with_schema`.
type SchemaEdit = std::sync::Arc<dyn Fn(Schema) -> Schema + Send + Sync>;

/// A [`tracing_subscriber::Layer`] that writes every event as one line of JSON carrying the
/// OpenTelemetry `traceId` and `spanId` of the event's span. Made by [`layer()`].
///
/// `W` is the [`MakeWriter`] lines go to, changed with [`Layer::with_writer`].
///
/// ```
/// use std::io::Write;
/// use std::sync::{Arc, Mutex};
/// use tracing_subscriber::prelude::*;
///
/// #[derive(Clone, Default)]
/// struct Lines(Arc<Mutex<Vec<u8>>>);
/// impl Write for Lines {
///     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
///         self.0.lock().unwrap().extend_from_slice(b);
///         Ok(b.len())
///     }
///     fn flush(&mut self) -> std::io::Result<()> {
///         Ok(())
///     }
/// }
///
/// let lines = Lines::default();
/// let out = lines.clone();
/// let layer = traceline::layer().with_writer(move || out.clone());
/// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
///     tracing::info!(order.id = 7, "order created");
/// });
/// let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
/// assert!(text.contains(r#""message":"order created""#), "{text}");
/// assert!(text.contains(r#""order.id":7"#), "{text}");
/// ```
///
/// To change what is logged at run time, wrap a filter in `tracing_subscriber::reload`, not
/// this layer. A layer swapped in by `reload`, or put in an `Option` or a `Vec` of layers, is
/// never told its subscriber (`tracing-subscriber` does not pass `on_register_dispatch` on): it
/// finds it when one of the subscriber's spans is entered, scoped or global. Until then (an
/// event whose only span was never entered, say) it finds it only while it is the global
/// default and no scoped one exists in the process, and its lines carry no ids otherwise
/// (they keep correlation ids and span fields; a swapped-in layer, those of spans made after
/// the swap). A swapped-in layer finds it through spans made after the swap: a correlation
/// scope made before the swap and entered before any such span (hidden from OpenTelemetry, as
/// `init()` has it) does not yet keep the spans made inside it in its trace.
pub struct Layer<W = fn() -> crate::StdoutLine> {
    make_writer: W,
    schema: Schema,
    compiled: Compiled,
    clock: fn() -> SystemTime,
    dispatch: OnceLock<WeakDispatch>,
    stats: Stats,
    /// Whether this layer counts lines as written (false when a queue behind the writer does).
    counting: bool,
    /// Whether the writer is one output whatever the line's level and target (standard
    /// output, a file): a line cut there is ended by whichever line comes next. Unknown for a
    /// writer given with `with_writer`, which may route lines by level or target.
    plain: bool,
    log_internal_errors: bool,
    redaction: Redaction,
    max_field: usize,
    max_line: usize,
    /// Identifies this layer's configuration in the per-thread callsite cache.
    id: u64,
    /// The layer's own settings that change the schema (`with_file`, `with_service_name`, …),
    /// in order: [`Layer::with_schema`] applies them again on top of a new schema, so they hold
    /// whether they come before it or after.
    edits: Vec<SchemaEdit>,
    /// The key of the [`otel`](crate::otel) layer in this layer's subscriber (0: none), whose
    /// notes give a span's ids as it is entered.
    watch: AtomicU64,
}

thread_local! {
    /// The OpenTelemetry contexts attached for correlation scopes entered on this thread,
    /// innermost last (see `Layer::enter_scope`).
    /// Each entry names its subscriber too (its registry's address): span ids are unique
    /// within one subscriber only, and a nested subscriber on the thread hands out the same
    /// ones.
    static ATTACHED: RefCell<Vec<(usize, span::Id, opentelemetry::ContextGuard)>> =
        const { RefCell::new(Vec::new()) };
}

/// Names the subscriber behind `dispatch` by its registry's address (0 for a subscriber that
/// is not built on a [`Registry`]).
fn subscriber_key(dispatch: &Dispatch) -> usize {
    dispatch
        .downcast_ref::<Registry>()
        .map_or(0, |r| std::ptr::from_ref(r) as usize)
}

fn next_layer_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl<W> std::fmt::Debug for Layer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer")
            .field("schema", &self.schema)
            .field("log_internal_errors", &self.log_internal_errors)
            .finish_non_exhaustive()
    }
}

/// The longest field value written whole, in bytes of text, unless
/// [`Layer::with_max_field_len`] says otherwise: 64 KiB.
///
/// ```
/// assert_eq!(traceline::DEFAULT_MAX_FIELD_LEN, 65_536);
/// ```
pub const DEFAULT_MAX_FIELD_LEN: usize = 64 * 1024;

/// The longest line written whole, in bytes, unless [`Layer::with_max_line_len`] says
/// otherwise: 256 KiB, the line limit of Grafana Loki and of Google Cloud Logging entries.
///
/// ```
/// assert_eq!(traceline::DEFAULT_MAX_LINE_LEN, 262_144);
/// ```
pub const DEFAULT_MAX_LINE_LEN: usize = 256 * 1024;

/// The key a line cut at the line length limit gets, with the length it would have had (behind
/// the collision prefix, `fields.`, should a key of the schema have this name).
///
/// ```
/// assert_eq!(traceline::TRUNCATED_KEY, "traceline.truncated");
/// ```
pub const TRUNCATED_KEY: &str = "traceline.truncated";

impl<W> Layer<W> {
    fn new(make_writer: W) -> Self {
        let schema = Schema::default();
        Layer {
            make_writer,
            compiled: schema.compile(),
            schema,
            clock: SystemTime::now,
            dispatch: OnceLock::new(),
            stats: Stats::default(),
            counting: true,
            // Standard output.
            plain: true,
            log_internal_errors: true,
            redaction: Redaction::default(),
            max_field: DEFAULT_MAX_FIELD_LEN,
            max_line: DEFAULT_MAX_LINE_LEN,
            id: next_layer_id(),
            edits: Vec::new(),
            watch: AtomicU64::new(0),
        }
    }

    /// Sends lines to another [`MakeWriter`]: `std::io::stderr`, a `Mutex<File>`, a
    /// `tracing_appender` writer, or anything that implements it.
    ///
    /// Such a writer may route lines by level or target (`make_writer_for`), so a line it left
    /// cut is ended with a newline through the writer of its own level and target: on a writer
    /// that does not route, a line cut at one level and ended after a line of another level
    /// leaves an empty line. `with_output`'s standard output, standard
    /// error and files are known not to route, and leave none.
    ///
    /// ```
    /// let layer = traceline::layer().with_writer(std::io::stderr);
    /// # let _ = layer;
    /// ```
    pub fn with_writer<W2>(self, make_writer: W2) -> Layer<W2>
    where
        W2: for<'w> MakeWriter<'w> + 'static,
    {
        Layer {
            make_writer,
            schema: self.schema,
            compiled: self.compiled,
            clock: self.clock,
            dispatch: self.dispatch,
            stats: self.stats,
            // The new writer is not a queue that counts its lines itself, and may route.
            counting: true,
            plain: false,
            log_internal_errors: self.log_internal_errors,
            redaction: self.redaction,
            max_field: self.max_field,
            max_line: self.max_line,
            id: self.id,
            edits: self.edits,
            watch: self.watch,
        }
    }

    /// Uses `schema` for key names and spellings.
    ///
    /// The layer's own settings that change what a line holds (`with_file`, `with_line_number`,
    /// `with_thread_names`, `with_thread_ids`, `with_target`, `with_trace_flags`,
    /// `with_timestamp_format`, `with_field_layout`, `with_service_name`,
    /// `with_service_version`, `with_environment`, `with_static_field`) apply on top of it,
    /// whether they come before this call or after: `layer().with_service_name("orders")
    /// .with_schema(Schema::ecs())` writes ECS lines with `service.name`. Where such a setting
    /// and `schema` both set something, the setting wins; but a service name, version or
    /// environment set on either wins over a static field under its key, as everywhere.
    ///
    /// ```
    /// use traceline::{Key, Schema};
    /// let layer = traceline::layer().with_schema(Schema::default().rename(Key::TraceId, "trace"));
    /// // {…,"trace":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":…}
    /// # #[cfg(feature = "install")] {
    /// # let line = &traceline::doc_support::lines(layer, || tracing::info!("paid"))[0];
    /// # assert_eq!(line["trace"], "4bf92f3577b34da6a3ce929d0e0e4736");
    /// # assert!(line.get("traceId").is_none());
    /// # }
    /// ```
    pub fn with_schema(self, schema: Schema) -> Self {
        let schema = self.edits.iter().fold(schema, |s, edit| edit(s));
        self.set_schema(schema)
    }

    fn set_schema(mut self, schema: Schema) -> Self {
        self.schema = schema;
        self.compiled = self.schema.compile();
        self.id = next_layer_id();
        self
    }

    /// Applies a setting to the schema, and keeps it for [`Layer::with_schema`].
    fn map_schema(mut self, f: impl Fn(Schema) -> Schema + Send + Sync + 'static) -> Self {
        let schema = f(self.schema.clone());
        self.edits.push(std::sync::Arc::new(f));
        self.set_schema(schema)
    }

    fn toggle(self, key: Key, on: bool) -> Self {
        self.map_schema(move |s| if on { s.enable(key) } else { s.disable(key) })
    }

    /// Writes the callsite's source file (off by default).
    ///
    /// ```
    /// let layer = traceline::layer().with_file(true).with_line_number(true);
    /// // {…,"file":"src/orders.rs","line":42,…}
    /// # #[cfg(feature = "install")] {
    /// # let line = &traceline::doc_support::lines(layer, || tracing::info!("paid"))[0];
    /// # assert!(line["file"].as_str().unwrap().ends_with(".rs"), "{line}");
    /// # assert!(line["line"].as_u64().unwrap() > 0, "{line}");
    /// # }
    /// ```
    pub fn with_file(self, on: bool) -> Self {
        self.toggle(Key::File, on)
    }

    /// Writes the callsite's line number (off by default).
    ///
    /// ```
    /// let layer = traceline::layer().with_line_number(true);
    /// // {…,"line":42,…}
    /// # #[cfg(feature = "install")] {
    /// # let line = &traceline::doc_support::lines(layer, || tracing::info!("paid"))[0];
    /// # assert!(line["line"].as_u64().unwrap() > 0, "{line}");
    /// # assert!(line.get("file").is_none());
    /// # }
    /// ```
    pub fn with_line_number(self, on: bool) -> Self {
        self.toggle(Key::Line, on)
    }

    /// Writes the current thread's name (off by default).
    ///
    /// ```
    /// let layer = traceline::layer().with_thread_names(true);
    /// // {…,"threadName":"main",…}
    /// # #[cfg(feature = "install")] {
    /// # let line = &traceline::doc_support::lines(layer, || tracing::info!("paid"))[0];
    /// # assert!(line["threadName"].is_string(), "{line}");
    /// # }
    /// ```
    pub fn with_thread_names(self, on: bool) -> Self {
        self.toggle(Key::ThreadName, on)
    }

    /// Writes the current thread's id as a number (off by default).
    ///
    /// ```
    /// let layer = traceline::layer().with_thread_ids(true);
    /// // {…,"threadId":1,…}
    /// # #[cfg(feature = "install")] {
    /// # let line = &traceline::doc_support::lines(layer, || tracing::info!("paid"))[0];
    /// # assert!(line["threadId"].is_u64(), "{line}");
    /// # }
    /// ```
    pub fn with_thread_ids(self, on: bool) -> Self {
        self.toggle(Key::ThreadId, on)
    }

    /// Writes the event's target (on by default).
    ///
    /// ```
    /// let layer = traceline::layer().with_target(false);
    /// // no "target" key
    /// # #[cfg(feature = "install")] {
    /// # let line = &traceline::doc_support::lines(layer, || tracing::info!("paid"))[0];
    /// # assert!(line.get("target").is_none(), "{line}");
    /// # assert_eq!(line["message"], "paid");
    /// # }
    /// ```
    pub fn with_target(self, on: bool) -> Self {
        self.toggle(Key::Target, on)
    }

    /// Writes the sampled flag (on by default, as `traceFlags`: `"01"` sampled, `"00"` not).
    ///
    /// ```
    /// let layer = traceline::layer().with_trace_flags(false);
    /// // traceId and spanId, no "traceFlags"
    /// # #[cfg(feature = "install")] {
    /// # let line = &traceline::doc_support::lines(layer, || tracing::info!("paid"))[0];
    /// # assert!(line.get("traceFlags").is_none(), "{line}");
    /// # assert_eq!(line["spanId"].as_str().unwrap().len(), 16);
    /// # }
    /// ```
    pub fn with_trace_flags(self, on: bool) -> Self {
        self.toggle(Key::TraceFlags, on)
    }

    /// Sets how timestamps are written.
    ///
    /// ```
    /// use traceline::TimestampFormat;
    /// let layer = traceline::layer().with_timestamp_format(TimestampFormat::Rfc3339Millis);
    /// // {"timestamp":"2026-11-25T10:32:03.123Z",…}
    /// # #[cfg(feature = "install")] {
    /// # let line = &traceline::doc_support::lines(layer, || tracing::info!("paid"))[0];
    /// # let ts = line["timestamp"].as_str().unwrap();
    /// # assert_eq!((ts.len(), &ts[19..20], &ts[23..]), (24, ".", "Z"), "{ts}");
    /// # }
    /// ```
    pub fn with_timestamp_format(self, format: TimestampFormat) -> Self {
        self.map_schema(move |s| s.timestamp_format(format))
    }

    /// Sets where event and span fields go: top level (default) or nested objects.
    ///
    /// ```
    /// use traceline::FieldLayout;
    /// let layer = traceline::layer().with_field_layout(FieldLayout::Nested);
    /// // {…,"fields":{"order.item_count":3},…}
    /// # #[cfg(feature = "install")] {
    /// # let line = &traceline::doc_support::lines(layer, || tracing::info!(order.item_count = 3, "paid"))[0];
    /// # assert_eq!(line["fields"]["order.item_count"], 3, "{line}");
    /// # assert!(line.get("order.item_count").is_none());
    /// # }
    /// ```
    pub fn with_field_layout(self, layout: FieldLayout) -> Self {
        self.map_schema(move |s| s.field_layout(layout))
    }

    /// Writes `service.name` on every line.
    ///
    /// ```
    /// let layer = traceline::layer().with_service_name("orders");
    /// // {…,"service.name":"orders",…}
    /// # #[cfg(feature = "install")] {
    /// # let line = &traceline::doc_support::lines(layer, || tracing::info!("paid"))[0];
    /// # assert_eq!(line["service.name"], "orders");
    /// # }
    /// ```
    pub fn with_service_name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.map_schema(move |s| s.service_name(name.clone()))
    }

    /// Writes `service.version` on every line.
    ///
    /// ```
    /// let layer = traceline::layer().with_service_version("1.4.2");
    /// // {…,"service.version":"1.4.2",…}
    /// # #[cfg(feature = "install")] {
    /// # let line = &traceline::doc_support::lines(layer, || tracing::info!("paid"))[0];
    /// # assert_eq!(line["service.version"], "1.4.2");
    /// # }
    /// ```
    pub fn with_service_version(self, version: impl Into<String>) -> Self {
        let version = version.into();
        self.map_schema(move |s| s.service_version(version.clone()))
    }

    /// Writes `deployment.environment` on every line.
    ///
    /// ```
    /// let layer = traceline::layer().with_environment("staging");
    /// // {…,"deployment.environment":"staging",…}
    /// # #[cfg(feature = "install")] {
    /// # let line = &traceline::doc_support::lines(layer, || tracing::info!("paid"))[0];
    /// # assert_eq!(line["deployment.environment"], "staging");
    /// # }
    /// ```
    pub fn with_environment(self, env: impl Into<String>) -> Self {
        let env = env.into();
        self.map_schema(move |s| s.environment(env.clone()))
    }

    /// Writes `key: value` on every line (after the ids, before event fields). Under the key of
    /// the service name, version or environment (`service.name`, …) it is that setting's value
    /// (as text), unless `with_service_name` & co, or the schema, set it: those always win
    /// over a static field (a line never holds one key twice).
    ///
    /// ```
    /// let layer = traceline::layer().with_static_field("region", "eu-west-1");
    /// // {…,"region":"eu-west-1",…}; an event field of that name becomes "fields.region"
    /// # #[cfg(feature = "install")] {
    /// # let line = &traceline::doc_support::lines(layer, || tracing::info!(region = "us-east-1", "paid"))[0];
    /// # assert_eq!(line["region"], "eu-west-1");
    /// # assert_eq!(line["fields.region"], "us-east-1", "{line}");
    /// # }
    /// ```
    pub fn with_static_field(
        self,
        key: impl Into<std::borrow::Cow<'static, str>>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        let (key, value) = (key.into(), value.into());
        self.map_schema(move |s| s.static_field(key.clone(), value.clone()))
    }

    /// Reads the time from `clock` instead of [`SystemTime::now`] (for tests with a fixed clock).
    ///
    /// ```
    /// use std::time::{SystemTime, UNIX_EPOCH};
    /// let layer = traceline::layer().with_clock(|| UNIX_EPOCH);
    /// // {"timestamp":"1970-01-01T00:00:00.000000000Z",…}
    /// # #[cfg(feature = "install")] {
    /// # let line = &traceline::doc_support::lines(layer, || tracing::info!("paid"))[0];
    /// # assert_eq!(line["timestamp"], "1970-01-01T00:00:00.000000000Z");
    /// # }
    /// ```
    pub fn with_clock(mut self, clock: fn() -> SystemTime) -> Self {
        self.clock = clock;
        self
    }

    /// Whether lost lines are reported on stderr (on by default): one message when lines start
    /// being lost, then at most one every 10 seconds, with the reason and the counts. Lines are
    /// counted either way: see [`Layer::stats`].
    ///
    /// ```
    /// let layer = traceline::layer().log_internal_errors(false);
    /// # let _ = layer;
    /// ```
    pub fn log_internal_errors(mut self, on: bool) -> Self {
        self.log_internal_errors = on;
        // The output `with_output` built reports through these counters too.
        self.stats.counters().silence(!on);
        self
    }

    /// Which fields are written as `"[REDACTED]"` (default: [`Redaction::default`], the deny
    /// list of the [`redact`](crate::redact) module).
    ///
    /// ```
    /// use traceline::Redaction;
    /// let layer = traceline::layer().with_redaction(Redaction::default().deny("ssn"));
    /// // {…,"ssn":"[REDACTED]",…}
    /// # #[cfg(feature = "install")] {
    /// # let line = &traceline::doc_support::lines(layer, || tracing::info!(ssn = "078-05-1120", "checked"))[0];
    /// # assert_eq!(line["ssn"], "[REDACTED]");
    /// # }
    /// ```
    pub fn with_redaction(mut self, redaction: Redaction) -> Self {
        self.redaction = redaction;
        self.id = next_layer_id();
        self
    }

    /// Cuts field values (and the message) longer than `bytes` bytes of text, ending them
    /// with `…[truncated N bytes]` (`…[truncated]` for `Debug` and `Display` values, which
    /// stop being formatted at the limit). Default [`DEFAULT_MAX_FIELD_LEN`]; `usize::MAX`
    /// for no limit.
    ///
    /// ```
    /// let layer = traceline::layer().with_max_field_len(1024);
    /// // {…,"body":"xxxx…xxx…[truncated 3976 bytes]",…}
    /// # #[cfg(feature = "install")] {
    /// # let line = &traceline::doc_support::lines(layer, || tracing::info!(body = "x".repeat(5000), "uploaded"))[0];
    /// # let body = line["body"].as_str().unwrap();
    /// # assert!(body.starts_with(&"x".repeat(1024)) && !body.starts_with(&"x".repeat(1025)), "{body}");
    /// # assert!(body.ends_with("…[truncated 3976 bytes]"), "{body}");
    /// # }
    /// ```
    pub fn with_max_field_len(mut self, bytes: usize) -> Self {
        self.max_field = bytes;
        self
    }

    /// Lines longer than `bytes` keep their timestamp, level, message, target, ids,
    /// correlation id, file, line, thread and static fields, lose their event and span fields,
    /// have their message shortened as far as the limit needs, and get the key
    /// [`TRUNCATED_KEY`] with the length the line would have had. Only those kept keys
    /// themselves (without the message) can make a line longer than the limit. Default
    /// [`DEFAULT_MAX_LINE_LEN`]; `usize::MAX` for no limit.
    ///
    /// ```
    /// let layer = traceline::layer().with_max_line_len(16 * 1024);
    /// // the 64 KiB field is left out; the line says how long it would have been
    /// # #[cfg(feature = "install")] {
    /// # let line = &traceline::doc_support::lines(layer, || tracing::info!(body = "x".repeat(64 * 1024), "uploaded"))[0];
    /// # assert!(line.get("body").is_none(), "{line}");
    /// # assert_eq!(line["message"], "uploaded");
    /// # assert!(line[traceline::TRUNCATED_KEY].as_u64().unwrap() > 64 * 1024, "{line}");
    /// # }
    /// ```
    pub fn with_max_line_len(mut self, bytes: usize) -> Self {
        self.max_line = bytes;
        self
    }

    /// Counters of the lines written and dropped and of the writer's errors.
    ///
    /// ```
    /// let layer = traceline::layer();
    /// let stats = layer.stats();
    /// # assert_eq!(stats.write_errors(), 0);
    /// ```
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// Writes through an [`install::Writer`](crate::install::Writer), as [`init()`](crate::init)
    /// does, in a subscriber built by hand: a rotating file, or a non-blocking queue that
    /// counts what it drops (in [`stats`](Self::stats), with a WARN line each second that
    /// drops some, sent to the global default). Returns the layer and the guard that writes out
    /// what is queued when it is dropped.
    ///
    /// ```
    /// use traceline::install::{Rotation, Writer};
    /// use tracing_subscriber::prelude::*;
    ///
    /// let dir = std::env::temp_dir().join("traceline-doc-with-output");
    /// let (layer, guard) = traceline::layer()
    ///     .with_output(Writer::file(&dir, "app.log", Rotation::Never).non_blocking())?;
    /// let subscriber = tracing_subscriber::registry().with(layer);
    /// tracing::subscriber::with_default(subscriber, || tracing::info!("to the file"));
    /// drop(guard); // the queued line is written
    /// let text = std::fs::read_to_string(dir.join("app.log"))?;
    /// assert!(text.contains(r#""message":"to the file""#));
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "install")]
    pub fn with_output(
        self,
        writer: crate::install::Writer,
    ) -> Result<
        (
            Layer<tracing_subscriber::fmt::writer::BoxMakeWriter>,
            crate::install::OutputGuard,
        ),
        crate::InitError,
    > {
        let stats = self.stats.clone();
        let non_blocking = writer.is_non_blocking();
        let plain = writer.is_plain();
        let built = writer.build(&stats, self.log_internal_errors)?;
        let monitor = if non_blocking {
            Some(crate::install::guard::Monitor::start(
                stats.clone(),
                std::time::Duration::from_secs(1),
            )?)
        } else {
            None
        };
        let guard = crate::install::OutputGuard {
            worker: built.worker,
            flush: built.flush,
            monitor,
            timeout: std::time::Duration::from_secs(5),
        };
        Ok((
            self.with_writer(built.make)
                .with_stats(stats, !non_blocking)
                .with_plain(plain),
            guard,
        ))
    }

    /// Counts into `stats`; with `counting` false, lines handed to the writer are not counted
    /// as written here (a queue behind the writer counts them when it writes them).
    #[cfg(feature = "install")]
    pub(crate) fn with_stats(mut self, stats: Stats, counting: bool) -> Self {
        self.stats = stats;
        self.counting = counting;
        self
    }

    /// Whether the writer is one output along every route (see the field).
    #[cfg(feature = "install")]
    pub(crate) fn with_plain(mut self, plain: bool) -> Self {
        self.plain = plain;
        self
    }

    /// The schema in use.
    ///
    /// ```
    /// use traceline::Key;
    /// assert_eq!(traceline::layer().schema().key(Key::SpanId), Some("spanId"));
    /// ```
    pub fn schema(&self) -> &Schema {
        &self.schema
    }
}

/// Per-thread buffers reused for every line.
#[derive(Default)]
struct Scratch {
    buf: Vec<u8>,
    seen: Vec<(crate::schema::Depth, &'static str)>,
    /// The event's fields, written before the line's ids and copied in after them.
    fields: Vec<u8>,
    /// Keys per callsite and layer (see [`cached`]).
    callsites: Cache<CallsiteKeys>,
    /// The fields past the cached ones already met in the event (those before are in a mask).
    wide: Vec<usize>,
    /// Where each span's object ends in the nested layout's list of spans.
    marks: Vec<usize>,
    /// The marker of a line cut at the length limit, and its message formatted again.
    spare: (Vec<u8>, Vec<u8>),
}

const CALLSITE_SLOTS: usize = 256;
const SPAN_CALLSITE_SLOTS: usize = 64;

thread_local! {
    /// Where span fields are recorded before they are copied into the span's [`SpanData`].
    static SPAN_SCRATCH: RefCell<SpanScratch> = const { RefCell::new(SpanScratch::new()) };
}

/// Buffers for recording span fields: the values as recorded, then the keyed fragments.
struct SpanScratch {
    values: Vec<u8>,
    raw: Vec<Entry>,
    buf: Vec<u8>,
    entries: Vec<Entry>,
    /// Keys per span callsite and layer (see [`cached`]).
    keys: Cache<SpanKeys>,
}

impl SpanScratch {
    const fn new() -> Self {
        SpanScratch {
            values: Vec::new(),
            raw: Vec::new(),
            buf: Vec::new(),
            entries: Vec::new(),
            keys: Cache::new(),
        }
    }

    /// A visitor recording values into this scratch (no lock held while it runs).
    fn visitor<'a>(
        &'a mut self,
        correlation: &'a mut Option<std::sync::Arc<[u8]>>,
        redaction: &'a Redaction,
        max: usize,
    ) -> SpanVisitor<'a> {
        SpanVisitor {
            values: &mut self.values,
            raw: &mut self.raw,
            correlation,
            redaction,
            max,
            keys: None,
            done: 0,
        }
    }

    /// Adds the values recorded here to `data`'s fragments.
    fn store(&mut self, data: &mut SpanData, c: &Compiled) {
        self.buf.extend_from_slice(data.buf.as_slice());
        self.entries.extend_from_slice(data.entries.as_slice());
        merge(&mut self.buf, &mut self.entries, &self.values, &self.raw, c);
        data.buf.set(&self.buf);
        data.entries.set(&self.entries);
    }
}

/// The cached keys of a span callsite, built on its first span.
fn span_keys<'k>(
    cache: &'k mut Cache<SpanKeys>,
    meta: &'static tracing_core::Metadata<'static>,
    layer: u64,
    c: &Compiled,
    redaction: &Redaction,
) -> &'k SpanKeys {
    let addr = meta as *const _ as usize;
    cached(
        cache,
        SPAN_CALLSITE_SLOTS,
        (addr, layer),
        |k| (k.addr, k.layer),
        || SpanKeys::build(meta, layer, c, redaction),
    )
}

/// A per-thread cache of keys per callsite and layer: an open-addressed table that grows and
/// does not evict, so that callsites whose addresses fall on one slot, and several layers
/// logging one callsite, each keep their entry (steady state builds nothing). Past
/// [`CACHE_LIMIT`] entries (layers made and dropped, each leaving its own) it starts again
/// empty.
struct Cache<K> {
    slots: Vec<Option<K>>,
    used: usize,
}

impl<K> Cache<K> {
    const fn new() -> Self {
        Cache {
            slots: Vec::new(),
            used: 0,
        }
    }
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Cache::new()
    }
}

/// The most entries a [`Cache`] keeps.
const CACHE_LIMIT: usize = 4096;

/// The entry for the callsite at `addr` of the layer `layer` in `cache` (at least `slots`
/// slots, a power of two): `build` makes it the first time; `key` gives an entry's callsite
/// and layer back.
#[inline(always)]
fn cached<K>(
    cache: &mut Cache<K>,
    slots: usize,
    (addr, layer): (usize, u64),
    key: impl Fn(&K) -> (usize, u64),
    build: impl FnOnce() -> K,
) -> &K {
    if cache.slots.is_empty() {
        cache.slots.resize_with(slots, || None);
    }
    let mask = cache.slots.len() - 1;
    let mut i = cache_index(addr, layer) & mask;
    loop {
        match &cache.slots[i] {
            Some(k) if key(k) == (addr, layer) => {
                return cache.slots[i].as_ref().expect("just seen");
            }
            Some(_) => i = (i + 1) & mask,
            None => break,
        }
    }
    cache_insert(cache, slots, i, build(), key)
}

/// Where the probe for `(addr, layer)` starts: the address's bits above the alignment, mixed
/// with the layer's id.
#[inline(always)]
fn cache_index(addr: usize, layer: u64) -> usize {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let h = ((addr as u64) >> 4).wrapping_add(layer.wrapping_mul(K));
    (h.wrapping_mul(K) >> 32) as usize
}

/// Puts `entry` at the free slot `i`. Past [`CACHE_LIMIT`] entries the cache starts again
/// with `slots` slots; past half full, it doubles first (and the entry goes where the new
/// table's probe for it ends).
#[cold]
#[inline(never)]
fn cache_insert<K>(
    cache: &mut Cache<K>,
    slots: usize,
    mut i: usize,
    entry: K,
    key: impl Fn(&K) -> (usize, u64),
) -> &K {
    let free = |table: &[Option<K>], (a, l): (usize, u64)| {
        let mask = table.len() - 1;
        let mut j = cache_index(a, l) & mask;
        while table[j].is_some() {
            j = (j + 1) & mask;
        }
        j
    };
    if cache.used >= CACHE_LIMIT {
        cache.slots.clear();
        cache.slots.resize_with(slots, || None);
        cache.used = 0;
        i = free(&cache.slots, key(&entry));
    } else if (cache.used + 1) * 2 > cache.slots.len() {
        let old = std::mem::take(&mut cache.slots);
        cache.slots.resize_with(old.len() * 2, || None);
        for k in old.into_iter().flatten() {
            let j = free(&cache.slots, key(&k));
            cache.slots[j] = Some(k);
        }
        i = free(&cache.slots, key(&entry));
    }
    cache.used += 1;
    cache.slots[i] = Some(entry);
    cache.slots[i].as_ref().expect("just put")
}

/// Runs `f` with this thread's (emptied) span recording buffers, or fresh ones when they are
/// in use (a field's `Debug` that makes a span).
fn with_span_scratch<R>(f: impl FnOnce(&mut SpanScratch) -> R) -> R {
    let mut f = Some(f);
    let done = SPAN_SCRATCH.try_with(|cell| {
        let mut scratch = cell.try_borrow_mut().ok()?;
        scratch.values.clear();
        scratch.raw.clear();
        scratch.buf.clear();
        scratch.entries.clear();
        Some((f.take()?)(&mut scratch))
    });
    match (done, f) {
        (Ok(Some(r)), _) => r,
        // In use, or gone with the thread (a thread-local's destructor making a span).
        (_, Some(f)) => f(&mut SpanScratch::new()),
        (_, None) => unreachable!("the buffers were used, so the closure ran"),
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        buf: Vec::with_capacity(1024),
        seen: Vec::with_capacity(16),
        fields: Vec::with_capacity(512),
        callsites: Cache::new(),
        wide: Vec::new(),
        marks: Vec::new(),
        spare: (Vec::new(), Vec::new()),
    });
    static THREAD: (Box<[u8]>, u64) = this_thread();
}

/// The current thread's name (as a JSON string) and numeric id.
fn this_thread() -> (Box<[u8]>, u64) {
    let t = std::thread::current();
    let mut name = Vec::new();
    json::write_str(&mut name, t.name().unwrap_or(""));
    let id = format!("{:?}", t.id());
    let id = id
        .trim_start_matches("ThreadId(")
        .trim_end_matches(')')
        .parse()
        .unwrap_or(0);
    (name.into(), id)
}

impl<W: 'static> Layer<W> {
    /// The ids of `span`, cached in its [`SpanData`] after the first lookup.
    fn ids<S>(&self, span: &SpanRef<'_, S>) -> Option<Ids>
    where
        S: for<'a> LookupSpan<'a>,
    {
        self.ids_and_extensions(span).0
    }

    /// The ids of `span` (cached in its [`SpanData`] after the first lookup), and its
    /// extensions, still locked for the caller's further reads.
    #[inline(always)]
    fn ids_and_extensions<'s, S>(&self, span: &'s SpanRef<'_, S>) -> (Option<Ids>, Extensions<'s>)
    where
        S: for<'a> LookupSpan<'a>,
    {
        let ext = span.extensions();
        let data = ext.get::<SpanSlot>().and_then(|d| d.of(self.id));
        if let Some(ids) = data.and_then(|d| d.ids.get()) {
            return (ids, ext);
        }
        // Noted as the span was entered on this thread: cached with the lock already held.
        if let Some(ids) = self.entered(&span.id()) {
            if let Some(d) = data {
                d.ids.set(Some(ids));
            }
            return (Some(ids), ext);
        }
        drop(ext);
        self.look_up_and_cache(span)
    }

    /// The ids the [`otel`](crate::otel) layer of this layer's subscriber noted as the span
    /// `id` was entered on this thread, while it is still entered.
    #[inline]
    fn entered(&self, id: &span::Id) -> Option<Ids> {
        ids::entered(self.watch.load(Ordering::Relaxed), id)
    }

    /// [`ids_and_extensions`](Self::ids_and_extensions) on a span's first line: the
    /// OpenTelemetry layer is asked without the lock held, then the ids are cached. A span it
    /// does not know (filtered out of it, like the correlation scope) logs with the ids of its
    /// nearest ancestor that has some.
    #[inline(never)]
    fn look_up_and_cache<'s, S>(&self, span: &'s SpanRef<'_, S>) -> (Option<Ids>, Extensions<'s>)
    where
        S: for<'a> LookupSpan<'a>,
    {
        let id = span.id();
        let ids = self.uncached_ids(&id).or_else(|| {
            self.ancestors_ids(&id)
                .unwrap_or_else(|| span.parent().and_then(|p| self.ids(&p)))
        });
        let ext = span.extensions();
        // Without its subscriber (a layer not told it, before it finds it) the layer cannot
        // ask: "no ids" then is no answer, and is not kept for the span's later lines.
        if self.dispatch.get().is_some() {
            if let Some(data) = ext.get::<SpanSlot>().and_then(|d| d.of(self.id)) {
                data.ids.set(ids);
            }
        }
        (ids, ext)
    }

    /// The cached keys of the fields of `event`'s callsite, built on the callsite's first event.
    fn callsite_keys<'c>(
        &self,
        cache: &'c mut Cache<CallsiteKeys>,
        event: &Event<'_>,
    ) -> &'c CallsiteKeys {
        let meta = event.metadata();
        let addr = meta as *const _ as usize;
        cached(
            cache,
            CALLSITE_SLOTS,
            (addr, self.id),
            |k| (k.addr, k.layer),
            || {
                CallsiteKeys::build(
                    meta,
                    self.id,
                    &self.compiled,
                    &self.redaction,
                    event.is_log(),
                )
            },
        )
    }

    /// The ids of the nearest ancestor of the span `id` that has some, for a span the
    /// OpenTelemetry layer does not know. Per-layer filters may hide spans from either layer, so
    /// the ancestors are walked in the registry, unfiltered (a span this layer sees answers from
    /// its cache). `None` when the subscriber's spans are not in a [`Registry`].
    #[cold]
    #[inline(never)]
    fn ancestors_ids(&self, id: &span::Id) -> Option<Option<Ids>> {
        let dispatch = self.dispatch(id)?;
        let found = ids::find_ancestor(&dispatch, id, |s| {
            let cached = s
                .extensions()
                .get::<SpanSlot>()
                .and_then(|d| d.of(self.id)?.ids.get());
            // A cached "no ids" is an answer too: it was worked out from the ancestors.
            cached.or_else(|| ids::lookup(&s.id(), &dispatch).map(Some))
        });
        found.map(Option::flatten)
    }

    /// [`Layer::local_root`] of a span hidden from this layer (it has none of this layer's
    /// data): worked out on its first line, then kept with the span in the registry.
    #[cold]
    fn hidden_local_root(&self, own: &span::Id, trace_id: &[u8; 16]) -> Option<[u8; 8]> {
        let dispatch = self.dispatch(own)?;
        let Some(span) = dispatch
            .downcast_ref::<Registry>()
            .and_then(|r| r.span(own))
        else {
            return self.local_root(own, trace_id);
        };
        let kept = span
            .extensions()
            .get::<HiddenRoots>()
            .and_then(|m| m.0.iter().find(|(l, _)| *l == self.id).map(|&(_, r)| r));
        if let Some(root) = kept {
            return root;
        }
        // The walk asks the OpenTelemetry layer: no lock held.
        let root = self.local_root(own, trace_id);
        let mut ext = span.extensions_mut();
        match ext.get_mut::<HiddenRoots>() {
            Some(m) => m.0.push((self.id, root)),
            None => ext.insert(HiddenRoots(vec![(self.id, root)])),
        }
        root
    }

    /// The span id of the local root of the span `own`'s part of the trace `trace_id` (ECS
    /// `transaction.id`): the outermost of `own` and its ancestors that OpenTelemetry knows by
    /// ids of its own in that trace, walked in the registry, unfiltered. Spans it does not know
    /// (a correlation scope) are passed over; a span of another trace (a connection span around
    /// a request that started its own trace) ends the walk.
    #[cold]
    #[inline(never)]
    fn local_root(&self, own: &span::Id, trace_id: &[u8; 16]) -> Option<[u8; 8]> {
        let dispatch = self.dispatch(own)?;
        let registry = dispatch.downcast_ref::<Registry>()?;
        let mut root = None;
        let mut span = registry.span(own);
        while let Some(s) = span {
            match ids::lookup(&s.id(), &dispatch) {
                Some(ids) if ids.trace_id == *trace_id => root = Some(ids.span_id),
                Some(_) => break,
                None => {}
            }
            span = s.parent();
        }
        root
    }

    /// On entering a correlation scope the OpenTelemetry layer does not track (`init()` keeps
    /// scopes out of exported traces): its nearest tracked ancestor's context becomes the
    /// thread's current one until the scope is exited. Spans created inside then join that
    /// trace, also in a task spawned into the scope, where the scope is the only span entered.
    #[cold]
    #[inline(never)]
    fn enter_scope<S>(&self, id: &span::Id, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        // By its callsite, not by this layer's data: a scope made before this layer was
        // swapped in with `reload` has only the data of the layer it replaced.
        let is_scope = ctx
            .span(id)
            .is_some_and(|span| span.metadata().target() == crate::correlation::TARGET);
        if !is_scope {
            return;
        }
        let Some(dispatch) = self.dispatch(id) else {
            return;
        };
        if tracing_opentelemetry::get_otel_context(id, &dispatch).is_some() {
            return;
        }
        // Not in a thread-local destructor after OpenTelemetry's context is gone (attaching
        // would panic there, and a panic in a destructor aborts).
        if !ids::context_usable() {
            return;
        }
        if let Some(cx) = ids::nearest_tracked(&dispatch, id) {
            let guard = cx.attach();
            let key = subscriber_key(&dispatch);
            let _ =
                ATTACHED.try_with(|attached| attached.borrow_mut().push((key, id.clone(), guard)));
        }
    }

    /// The subscriber this layer is part of (`id`: a span of it, in case it has to be found).
    fn dispatch(&self, id: &span::Id) -> Option<Dispatch> {
        match self.dispatch.get() {
            Some(weak) => weak.upgrade(),
            None => self.find_dispatch(id),
        }
    }

    /// The subscriber of a layer it was never told (one inside an `Option` or a `Vec` of
    /// layers, which do not pass `on_register_dispatch` on, or swapped in with
    /// `tracing_subscriber::reload`): the dispatcher `tracing` gives here, when its registry
    /// holds this layer's data for the span `id` (or an ancestor, for a span hidden from this
    /// layer). In `on_enter` that is the thread's dispatcher, scoped or global; inside an
    /// event's or a new span's dispatch it is the global default while no scoped one exists in
    /// the process, and none otherwise.
    #[cold]
    #[inline(never)]
    fn find_dispatch(&self, id: &span::Id) -> Option<Dispatch> {
        let found = tracing::dispatcher::get_default(|d| {
            let registry = d.downcast_ref::<Registry>()?;
            let mut span = registry.span(id);
            while let Some(s) = span {
                if s.extensions()
                    .get::<SpanSlot>()
                    .is_some_and(|slot| slot.of(self.id).is_some())
                {
                    return Some(d.clone());
                }
                span = s.parent();
            }
            None
        })?;
        self.register(&found);
        Some(found)
    }

    /// Keeps `subscriber` (weakly), and the key of its [`otel`](crate::otel) layer.
    fn register(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
        if let Some(watch) = subscriber.downcast_ref::<ids::EnterEnd>() {
            self.watch.store(watch.key, Ordering::Relaxed);
        }
    }

    /// The ids of the span `id`, else of its nearest ancestor that has some.
    fn ids_or_ancestors(&self, id: &span::Id) -> Option<Ids> {
        self.entered(id)
            .or_else(|| self.uncached_ids(id))
            .or_else(|| self.ancestors_ids(id).flatten())
    }

    /// The nearest ancestor of the span `own` that this layer sees, for an event whose own span
    /// a per-layer filter hides from it: its fields and correlation id go on the line. Walked in
    /// the registry, unfiltered, so that it is an ancestor of the event's span, not whatever span
    /// is entered on the thread.
    #[cold]
    #[inline(never)]
    fn nearest_seen<'c, S>(
        &self,
        own: &span::Id,
        ctx: &'c Context<'_, S>,
        event: &Event<'_>,
    ) -> Option<SpanRef<'c, S>>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let found = self
            .dispatch(own)
            .and_then(|dispatch| ids::find_ancestor(&dispatch, own, |s| ctx.span(&s.id())));
        match found {
            Some(seen) => seen,
            None => ctx.event_span(event),
        }
    }

    /// The ids of a span, asked of the OpenTelemetry layer (for spans this layer does not see,
    /// hidden by a per-layer filter, without the cache).
    fn uncached_ids(&self, id: &span::Id) -> Option<Ids> {
        let dispatch = self.dispatch(id)?;
        ids::lookup(id, &dispatch)
    }

    #[inline]
    fn write_ids(&self, buf: &mut Vec<u8>, ids: &Ids) {
        let c = &self.compiled;
        if let Some(line) = &c.ids_line[usize::from(ids.sampled)] {
            let at = buf.len();
            line.bytes.put(buf);
            if let Some(p) = line.trace_at {
                buf[at + p..at + p + 32].copy_from_slice(&ids.hex[..32]);
            }
            if let Some(p) = line.span_at {
                buf[at + p..at + p + 16].copy_from_slice(&ids.hex[32..]);
            }
            return;
        }
        // Ids as decimal numbers (the low 64 bits): hex ids always have a template.
        if let Some(k) = &c.trace_id {
            buf.extend_from_slice(k);
            let lo = u64::from_be_bytes(ids.trace_id[8..].try_into().expect("8 bytes"));
            json::write_u64(buf, lo);
            buf.push(b'"');
        }
        if let Some(k) = &c.span_id {
            buf.extend_from_slice(k);
            json::write_u64(buf, u64::from_be_bytes(ids.span_id));
            buf.push(b'"');
        }
        if let Some(k) = &c.flags {
            buf.extend_from_slice(k);
            buf.extend_from_slice(flags_text(c.flags_format, ids.sampled));
        }
    }

    /// Formats `event` into `s.buf`, cut to the line length limit. Puts a `log` record's
    /// normalized metadata (its own target and level), which its line is routed by, in
    /// `normalized` (left `None` for other events: no copy of a whole `Metadata` per line).
    fn format<'e, S>(
        &self,
        event: &'e Event<'e>,
        ctx: &Context<'_, S>,
        s: &mut Scratch,
        normalized: &mut Option<tracing_core::Metadata<'e>>,
    ) where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let c = &self.compiled;
        let Scratch {
            buf,
            seen,
            fields,
            callsites,
            wide,
            marks,
            spare,
        } = s;
        buf.clear();
        seen.clear();
        fields.clear();
        wide.clear();
        // Events bridged from the `log` crate carry their real target, file and line in
        // `log.*` fields; the normalized metadata has them.
        let keys = self.callsite_keys(callsites, event);
        let from_log = keys.from_log;
        if from_log {
            *normalized = log_metadata(event);
        }
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());

        if let Some(k) = &c.timestamp {
            k.put(buf);
            c.timestamp_format.write(buf, (self.clock)());
        }
        // The level, and the message's key and opening quote.
        c.head[level_index(meta.level())].put(buf);
        // One pass over the event's values: the message goes into the line here, the other
        // fields into `fields`, copied in after the ids.
        // The event's own span. A per-layer filter may hide it (and its ancestors) from this
        // layer, but the ids must still be its own; its fields come from the nearest span this
        // layer sees.
        let own = if event.is_root() {
            None
        } else if event.is_contextual() {
            ctx.current_span().id().cloned()
        } else {
            event.parent().cloned()
        };
        // With no span of its own (a root event, or no span entered) the event has no span this
        // layer sees either.
        let leaf = own
            .as_ref()
            .and_then(|id| ctx.span(id).or_else(|| self.nearest_seen(id, ctx, event)));
        // Which keys the event's fields took matters only for span fields they shadow (and for
        // fields past the cached ones).
        let track = (leaf.is_some() && c.layout == FieldLayout::Flatten)
            || event.metadata().fields().len() > crate::fields::CACHED_FIELDS;
        let mut message = None;
        {
            let body = buf.len();
            let mark = body - c.message_open;
            let mut v = EventVisitor {
                buf: fields,
                seen,
                track,
                plain: keys.plain(from_log),
                c,
                skip_log_fields: from_log,
                flat_error_used: false,
                keys,
                redaction: &self.redaction,
                message_left_out: false,
                message: (c.message_open != 0).then_some(MessageVisitor {
                    buf,
                    found: false,
                    max: self.max_field,
                }),
                max: self.max_field,
                done: 0,
                done_wide: wide,
            };
            event.record(&mut v);
            if v.message.is_some_and(|m| m.found) {
                message = Some(body..buf.len());
                buf.push(b'"');
            } else {
                buf.truncate(mark);
            }
        }
        if let Some(k) = &c.target {
            if from_log {
                // The normalized metadata's target: the record's own, not the callsite's.
                write_key_str(buf, k, meta.target());
            } else {
                // Escaped once per callsite.
                keys.put_target(buf);
            }
        }

        // The leaf's extensions, locked once for its cached ids, its correlation id and its
        // fields (a lookup that asks the OpenTelemetry layer runs without the lock).
        let mut leaf_ext = None;
        let ids = match (&leaf, &own) {
            (Some(l), Some(id)) if l.id() != *id => {
                let ids = self.ids_or_ancestors(id);
                leaf_ext = Some(l.extensions());
                ids
            }
            (Some(l), _) => {
                let (ids, ext) = self.ids_and_extensions(l);
                leaf_ext = Some(ext);
                ids
            }
            (None, Some(id)) => self.ids_or_ancestors(id),
            (None, None) => None,
        };
        if let Some(ids) = ids {
            self.write_ids(buf, &ids);
        }
        if let (Some(leaf), Some(ext)) = (&leaf, &leaf_ext) {
            let data = ext.get::<SpanSlot>().and_then(|d| d.of(self.id));
            // A span this layer has no data of (made before the layer was swapped in with
            // `reload`) still has the correlation id another traceline layer kept.
            let any = || ext.get::<SpanSlot>().map(|d| &**d);
            if let (Some(k), Some(v)) = (
                &c.correlation_id,
                data.or_else(any).and_then(|d| d.correlation.as_ref()),
            ) {
                buf.extend_from_slice(k);
                buf.extend_from_slice(v);
            }
            if let (Some(k), Some(ids), Some(own)) = (&c.transaction_id, &ids, &own) {
                // Worked out on the span's first line and cached, when the span is the event's
                // own (else the cache would hold another span's answer).
                let cache = data.filter(|_| leaf.id() == *own);
                let root = match cache.and_then(|d| d.transaction.get()) {
                    Some(root) => root,
                    None => {
                        // The walk asks the OpenTelemetry layer: no lock held.
                        let cache = cache.is_some();
                        drop(leaf_ext.take());
                        let root = self.local_root(own, &ids.trace_id);
                        let ext = leaf.extensions();
                        if let Some(d) = ext.get::<SpanSlot>().and_then(|d| d.of(self.id)) {
                            if cache {
                                d.transaction.set(root);
                            }
                        }
                        leaf_ext = Some(ext);
                        root
                    }
                };
                if let Some(span_id) = root {
                    write_transaction_id(buf, k, c, span_id);
                }
            }
        } else if let (None, Some(k), Some(ids), Some(own)) = (&leaf, &c.transaction_id, &ids, &own)
        {
            // The event's spans are all hidden from this layer: its local root is kept with
            // the event's span in the registry, under this layer's id, on its first line.
            if let Some(span_id) = self.hidden_local_root(own, &ids.trace_id) {
                write_transaction_id(buf, k, c, span_id);
            }
        }

        if let Some(object) = &c.source_location {
            write_source_location(buf, object, c, meta);
        } else if c.file.is_some() || c.line.is_some() {
            write_file_and_line(buf, c, meta);
        }
        if c.thread_name.is_some() || c.thread_id.is_some() {
            write_thread(buf, c);
        }
        if !c.static_fields.is_empty() {
            buf.extend_from_slice(&c.static_fields);
        }
        let core_end = buf.len();

        match c.layout {
            FieldLayout::Flatten => {
                buf.extend_from_slice(fields);
                // Keys already on the line, as bits, and their dotted parents' bits: a span
                // field whose bit is among neither, and none of whose parents' bits is among
                // the keys', is neither shadowed nor the dotted kin of a key on the line, with
                // no comparison.
                let prefix = &*c.prefix;
                let mut taken = Taken {
                    keys: keys.key_bits,
                    parents: keys.parent_bits,
                };
                if leaf.is_some() && keys.reorderable {
                    for &(d, n) in seen.iter() {
                        taken.add(prefix, d, n);
                    }
                }
                let mut add = |ext: &Extensions<'_>| {
                    if let Some(data) = ext.get::<SpanSlot>().and_then(|d| d.of(self.id)) {
                        let (entries, fragments) = (data.entries.as_slice(), data.buf.as_slice());
                        // The fragments are the entries' back to back: when no key of the span
                        // can clash with one taken already, nor two of its own keys be the same
                        // (by bits), they are copied in one piece. (Its own keys are not kin:
                        // they were given the prefix as the span was recorded.)
                        let (bits, parents, shared) =
                            entries.iter().fold((0, 0, 0), |(m, p, s), e| {
                                (m | e.bit, p | e.parents, s | (m & e.bit))
                            });
                        if shared & bits == 0
                            && !taken.may_clash(bits, parents)
                            && entries.first().is_none_or(|e| e.start == 0)
                            && entries
                                .last()
                                .is_none_or(|e| e.end as usize == fragments.len())
                        {
                            debug_assert!(entries.windows(2).all(|w| w[0].end == w[1].start));
                            taken.take(bits, parents);
                            seen.extend(entries.iter().map(|e| (e.depth, e.name)));
                            buf.extend_from_slice(fragments);
                            return;
                        }
                        add_fields_one_by_one(buf, seen, &mut taken, prefix, c, entries, fragments);
                    }
                };
                if let Some(leaf) = &leaf {
                    if let Some(ext) = leaf_ext.take() {
                        add(&ext);
                    }
                    let mut span = leaf.parent();
                    while let Some(s) = span {
                        add(&s.extensions());
                        span = s.parent();
                    }
                }
            }
            FieldLayout::Nested => {
                drop(leaf_ext.take());
                write_nested(buf, marks, fields, c, leaf.as_ref(), self.id);
            }
        }

        if buf.len() + 2 > self.max_line {
            self.cut_line(event, buf, core_end, message, spare);
        }
        if buf.is_empty() {
            buf.push(b'{');
        } else {
            buf[0] = b'{';
        }
        buf.extend_from_slice(b"}\n");
    }
}

impl<W> Layer<W> {
    /// Cuts a line past the line length limit to its core keys (everything before
    /// `core_end`), and its message (the body at `message`) as short as the limit needs.
    #[cold]
    fn cut_line(
        &self,
        event: &Event<'_>,
        buf: &mut Vec<u8>,
        core_end: usize,
        message: Option<std::ops::Range<usize>>,
        (marker, text): &mut (Vec<u8>, Vec<u8>),
    ) {
        let whole = buf.len() + 2;
        buf.truncate(core_end);
        marker.clear();
        marker.extend_from_slice(&self.compiled.truncated);
        json::write_u64(marker, whole as u64);
        let fits = |len: usize| len + marker.len() + 2 <= self.max_line;
        if let Some(body) = message.filter(|_| !fits(buf.len())) {
            // Format the message again with less room, until the line fits or it is empty.
            let over = buf.len() + marker.len() + 2 - self.max_line;
            let mut max = body.len().saturating_sub(over + json::TRUNCATED.len());
            loop {
                text.clear();
                event.record(&mut MessageVisitor {
                    buf: text,
                    found: false,
                    max,
                });
                if fits(buf.len() - body.len() + text.len()) {
                    break;
                }
                if max == 0 {
                    // Not even the marker of a cut message fits: no message text at all.
                    text.clear();
                    break;
                }
                max /= 2;
            }
            buf.splice(body, text.iter().copied());
        }
        buf.extend_from_slice(marker);
    }
}

/// The file and line in their object (`"logging.googleapis.com/sourceLocation":{"file":…,
/// "line":"42"}`, the line a string as Cloud Logging's `LogEntrySourceLocation` has it).
#[cold]
fn write_source_location(
    buf: &mut Vec<u8>,
    object: &[u8],
    c: &Compiled,
    meta: &tracing_core::Metadata<'_>,
) {
    let mark = buf.len();
    buf.extend_from_slice(object);
    let start = buf.len();
    if let (Some(k), Some(file)) = (&c.file, meta.file()) {
        buf.extend_from_slice(k);
        json::write_str(buf, file);
    }
    if let (Some(k), Some(line)) = (&c.line, meta.line()) {
        buf.extend_from_slice(k);
        buf.push(b'"');
        json::write_u64(buf, line.into());
        buf.push(b'"');
    }
    close_object(buf, mark, start);
}

/// Turns `,"key":` + `,a,b` at `start` into `"key":{a,b}`, or drops the key when empty.
fn close_object(buf: &mut Vec<u8>, mark: usize, start: usize) {
    if buf.len() == start {
        buf.truncate(mark);
    } else {
        buf[start] = b'{';
        buf.push(b'}');
    }
}

/// The local roots of a span hidden from the traceline layers that asked, by layer id.
struct HiddenRoots(Vec<(u64, Option<[u8; 8]>)>);

/// `,"transaction.id":"<span_id>"`, spelled as the span ids are (a local root's own lines
/// carry it twice).
fn write_transaction_id(buf: &mut Vec<u8>, key: &[u8], c: &Compiled, span_id: [u8; 8]) {
    buf.extend_from_slice(key);
    if c.ids_decimal {
        json::write_u64(buf, u64::from_be_bytes(span_id));
    } else {
        json::write_hex(buf, &span_id);
    }
    buf.push(b'"');
}

/// The objects of `leaf` and of its ancestors this layer sees, from the root down, comma
/// separated, with no list collected: each is written after the last from the leaf up, then the
/// run is turned around in place (the whole of it reversed, then each object back), with
/// `marks` (reused) holding where each object ended.
fn write_spans_from_root<S>(
    buf: &mut Vec<u8>,
    marks: &mut Vec<usize>,
    leaf: &SpanRef<'_, S>,
    layer: u64,
) where
    S: for<'a> LookupSpan<'a>,
{
    let start = buf.len();
    marks.clear();
    write_span_object(buf, leaf, layer);
    marks.push(buf.len());
    let mut next = leaf.parent();
    while let Some(span) = next {
        buf.push(b',');
        write_span_object(buf, &span, layer);
        marks.push(buf.len());
        next = span.parent();
    }
    if marks.len() < 2 {
        return;
    }
    let end = buf.len();
    buf[start..end].reverse();
    // Object `i` was at `from..to`; reversed, it is at `start + end - to..start + end - from`.
    let mut from = start;
    for &to in marks.iter() {
        buf[start + end - to..start + end - from].reverse();
        from = to + 1;
    }
}

fn write_span_object<S>(buf: &mut Vec<u8>, span: &SpanRef<'_, S>, layer: u64)
where
    S: for<'a> LookupSpan<'a>,
{
    buf.extend_from_slice(b"{\"name\":");
    json::write_str(buf, span.name());
    if let Some(data) = span
        .extensions()
        .get::<SpanSlot>()
        .and_then(|d| d.of(layer))
    {
        buf.extend_from_slice(data.buf.as_slice());
    }
    buf.push(b'}');
}

#[inline]
fn level_index(level: &Level) -> usize {
    match *level {
        Level::TRACE => 0,
        Level::DEBUG => 1,
        Level::INFO => 2,
        Level::WARN => 3,
        Level::ERROR => 4,
    }
}

/// The normalized metadata of an event bridged from the `log` crate (its own target, file and
/// line).
#[cold]
#[inline(never)]
fn log_metadata<'e>(event: &'e Event<'e>) -> Option<tracing_core::Metadata<'e>> {
    event.normalized_metadata()
}

/// `key` then `value` as a JSON string, out of the line's usual path.
#[cold]
#[inline(never)]
fn write_key_str(buf: &mut Vec<u8>, key: &[u8], value: &str) {
    buf.extend_from_slice(key);
    json::write_str(buf, value);
}

/// The file and line keys, when the schema has them.
#[inline(never)]
fn write_file_and_line(buf: &mut Vec<u8>, c: &Compiled, meta: &tracing_core::Metadata<'_>) {
    if let Some(k) = &c.file {
        if let Some(file) = meta.file() {
            buf.extend_from_slice(k);
            json::write_str(buf, file);
        }
    }
    if let Some(k) = &c.line {
        if let Some(line) = meta.line() {
            buf.extend_from_slice(k);
            json::write_u64(buf, line.into());
        }
    }
}

/// The thread name and id keys, when the schema has them.
#[inline(never)]
fn write_thread(buf: &mut Vec<u8>, c: &Compiled) {
    let mut put = |(name, id): &(Box<[u8]>, u64)| {
        if let Some(k) = &c.thread_name {
            buf.extend_from_slice(k);
            buf.extend_from_slice(name);
        }
        if let Some(k) = &c.thread_id {
            buf.extend_from_slice(k);
            json::write_u64(buf, *id);
        }
    };
    if THREAD.try_with(&mut put).is_err() {
        // Gone with the thread: a thread-local's destructor logging.
        put(&this_thread());
    }
}

/// The keys on a flat line so far, as [`line_bits`](crate::fields::line_bits), and the bits of
/// their dotted parents ([`parent_bits`](crate::fields::parent_bits)).
struct Taken {
    keys: u64,
    parents: u64,
}

impl Taken {
    /// Whether keys with these bits (and parents' bits) may be taken already, or be the dotted
    /// parent or child of a key taken: when not, they surely are neither.
    #[inline]
    fn may_clash(&self, bits: u64, parents: u64) -> bool {
        self.keys & (bits | parents) != 0 || self.parents & bits != 0
    }

    #[inline]
    fn take(&mut self, bits: u64, parents: u64) {
        self.keys |= bits;
        self.parents |= parents;
    }

    fn add(&mut self, prefix: &str, depth: crate::schema::Depth, name: &str) {
        self.take(
            crate::fields::line_bits(prefix, depth, name),
            crate::fields::parent_bits(prefix, depth, name),
        );
    }
}

/// A span's fields one by one, when some key of the span may clash with one on the line
/// already (taken by the event or an inner span, or its dotted kin, by their bits) or two of
/// its own keys may be the same.
#[cold]
#[inline(never)]
fn add_fields_one_by_one(
    buf: &mut Vec<u8>,
    seen: &mut Vec<(crate::schema::Depth, &'static str)>,
    taken: &mut Taken,
    prefix: &str,
    c: &Compiled,
    entries: &[crate::fields::Entry],
    fragments: &[u8],
) {
    // The keys of the event and of the inner spans: only a field of those shadows one of this
    // span, by its name, whatever key either took (two fields of this span with one name are
    // both written).
    let closer = seen.len();
    for e in entries {
        let key = (e.depth, e.name);
        if taken.may_clash(e.bit, e.parents) {
            if seen[..closer].iter().any(|&(_, name)| name == e.name) {
                continue; // by a field of its name in the event or an inner span
            }
            if seen.iter().any(|&k| crate::schema::clashes(prefix, k, key)) {
                // Another field's key (one renamed into this one's), or its dotted parent or
                // child (`user` beside an event's `user.id`): this field takes the collision
                // prefix again.
                let depth =
                    crate::fields::write_moved(buf, &c.span_reserved, prefix, e, fragments, seen);
                taken.add(prefix, depth, e.name);
                seen.push((depth, e.name));
                continue;
            }
        }
        taken.take(e.bit, e.parents);
        seen.push(key);
        buf.extend_from_slice(e.fragment(fragments));
    }
}

/// The fields of the nested layout: the event's in their object, then the event's span and the
/// spans from the root down, each an object of its own.
#[inline(never)]
fn write_nested<S>(
    buf: &mut Vec<u8>,
    marks: &mut Vec<usize>,
    fields: &[u8],
    c: &Compiled,
    leaf: Option<&SpanRef<'_, S>>,
    layer: u64,
) where
    S: for<'a> LookupSpan<'a>,
{
    if let Some(k) = &c.fields_key {
        let mark = buf.len();
        buf.extend_from_slice(k);
        let start = buf.len();
        buf.extend_from_slice(fields);
        close_object(buf, mark, start);
    } else {
        buf.extend_from_slice(fields);
    }
    if let (Some(k), Some(leaf)) = (&c.span_key, leaf) {
        buf.extend_from_slice(k);
        write_span_object(buf, leaf, layer);
    }
    // From the leaf up: the event's own span's ancestors that this layer sees, the same spans
    // as `span` and as the flat layout's fields (not whatever span is entered on the thread
    // when a filter hides the event's span).
    if let (Some(k), Some(leaf)) = (&c.spans_key, leaf) {
        buf.extend_from_slice(k);
        buf.push(b'[');
        write_spans_from_root(buf, marks, leaf, layer);
        buf.push(b']');
    }
}

impl<S, W> tracing_subscriber::Layer<S> for Layer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        self.register(subscriber);
    }

    /// Notes each event callsite, for a guard's flush to reach every writer a `MakeWriter`
    /// that routes by target or level gives; the interest is the default one.
    fn register_callsite(
        &self,
        metadata: &'static tracing_core::Metadata<'static>,
    ) -> tracing_core::subscriber::Interest {
        if metadata.is_event() {
            output::note_event_callsite(metadata);
        }
        tracing_core::subscriber::Interest::always()
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut data = SpanSlot::new();
        data.layer = self.id;
        if attrs.metadata().target() == crate::correlation::TARGET {
            data.scope = true;
            crate::fields::SCOPES.fetch_add(1, Ordering::Relaxed);
        }
        if !attrs.metadata().fields().is_empty() {
            with_span_scratch(|s| {
                let SpanScratch {
                    values, raw, keys, ..
                } = &mut *s;
                let keys = span_keys(
                    keys,
                    attrs.metadata(),
                    self.id,
                    &self.compiled,
                    &self.redaction,
                );
                // Where no key needs the collision prefix, each value lands behind its key
                // and the fragments need no merge.
                let direct = keys.usable();
                attrs.record(&mut SpanVisitor {
                    values,
                    raw,
                    correlation: &mut data.correlation,
                    redaction: &self.redaction,
                    max: self.max_field,
                    keys: direct.then_some(keys),
                    done: 0,
                });
                if direct {
                    data.buf.set(values);
                    data.entries.set(raw);
                } else {
                    s.store(&mut data, &self.compiled);
                }
            });
        }
        // A span recorded with its own correlation id counts it here; one without inherits
        // its parent's (none to inherit while no span has one).
        if let Some(id) = data.correlation.take() {
            data.set_correlation(id);
        } else if crate::fields::CORRELATED.load(Ordering::Relaxed) != 0 {
            if let Some(parent) = span.parent() {
                // The parent's data of this layer, else of another traceline layer (a parent
                // made before this layer was swapped in with `reload`): the correlation id is
                // the same.
                let inherited = parent
                    .extensions()
                    .get::<SpanSlot>()
                    .and_then(|d| d.of(self.id).unwrap_or(d).correlation.clone());
                if let Some(id) = inherited {
                    data.set_correlation(id);
                }
            }
        }
        let mut ext = span.extensions_mut();
        if let Some(other) = ext.replace(data) {
            // Another traceline layer in the same subscriber got there first: its data goes
            // behind this layer's.
            if let Some(ours) = ext.get_mut::<SpanSlot>() {
                ours.chain(other);
            }
        }
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        // A layer never told its subscriber finds it here, where `tracing` gives the thread's
        // dispatcher, scoped or global (entering a span is not dispatched through it).
        if self.dispatch.get().is_none() {
            self.find_dispatch(id);
        }
        if crate::fields::SCOPES.load(Ordering::Relaxed) != 0 {
            self.enter_scope(id, &ctx);
        }
    }

    fn on_exit(&self, id: &span::Id, _ctx: Context<'_, S>) {
        // Only a scope entered on this thread has a context here (and a scope is alive).
        if crate::fields::SCOPES.load(Ordering::Relaxed) == 0 {
            return;
        }
        let _ = ATTACHED.try_with(|attached| {
            let mut attached = attached.borrow_mut();
            if attached.is_empty() {
                return;
            }
            let Some(key) = self.dispatch(id).map(|d| subscriber_key(&d)) else {
                return;
            };
            // The innermost entry of this scope, wherever it is: spans may be exited in any
            // order (guards dropped in the order they were made).
            if let Some(i) = attached
                .iter()
                .rposition(|(subscriber, scope, _)| (*subscriber, scope) == (key, id))
            {
                attached.remove(i);
            }
        });
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        with_span_scratch(|s| {
            // The values are formatted before the span's extensions are locked: a `Debug` impl
            // that logs inside this span must not wait for a lock held here.
            let mut correlation = None;
            values.record(&mut s.visitor(&mut correlation, &self.redaction, self.max_field));
            let mut ext = span.extensions_mut();
            let Some(data) = ext.get_mut::<SpanSlot>().and_then(|d| d.of_mut(self.id)) else {
                return;
            };
            s.store(data, &self.compiled);
            if let Some(id) = correlation {
                data.set_correlation(id);
            }
        });
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let line = |scratch: &mut Scratch| {
            let mut normalized = None;
            self.format(event, &ctx, scratch, &mut normalized);
            self.write(event, &scratch.buf, normalized.as_ref());
        };
        let done = SCRATCH.try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => {
                line(&mut scratch);
                true
            }
            Err(_) => false,
        });
        if done != Ok(true) {
            // Re-entered (a writer that logs), or the buffer is gone with the thread (a
            // thread-local's destructor logging): use a buffer of our own.
            line(&mut Scratch::default());
        }
    }
}

impl<W> Layer<W>
where
    W: for<'w> MakeWriter<'w> + 'static,
{
    /// Writes `event`'s line; `normalized`: a `log` record's own metadata (see
    /// [`Self::format`]).
    fn write(
        &self,
        event: &Event<'_>,
        line: &[u8],
        normalized: Option<&tracing_core::Metadata<'_>>,
    ) {
        if let Some(n) = normalized {
            return self.write_log(n, line);
        }
        let meta = event.metadata();
        self.write_to(meta, output::RouteRef::Event(meta), line);
    }

    /// [`Self::write`] for a record of the `log` crate: it comes through the bridge's callsite
    /// for its level (target `log`), and is routed by its own target and level (`n`, its
    /// normalized metadata), as its line says.
    #[cold]
    #[inline(never)]
    fn write_log(&self, n: &tracing_core::Metadata<'_>, line: &[u8]) {
        // A guard flushes the writer of each such target (one output has one writer).
        if !self.plain {
            output::note_line_target(n.target(), *n.level());
        }
        self.write_to(n, output::RouteRef::Line(n.target(), *n.level()), line);
    }

    /// Writes `line` along `route`, with `for_line` the metadata a `MakeWriter` is given for it.
    #[inline(always)]
    fn write_to(
        &self,
        for_line: &tracing_core::Metadata<'_>,
        route: output::RouteRef<'_>,
        line: &[u8],
    ) {
        let counters = self.stats.counters();
        let report = self.log_internal_errors;
        let never = &output::NEVER_GIVE_UP;
        let progress = output::Progress::default();
        // A writer that panics loses its line, counted, not the program.
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if !self.counting {
                // A queue: it takes every line and counts it itself.
                progress.counted.set(true);
                let _ = self.make_writer.make_writer_for(for_line).write_all(line);
                return;
            }
            // One output along every route: the cut of a line is ended by the next line,
            // whatever its level (no cut per route, no newline owed to a route).
            let route = if self.plain {
                output::RouteRef::Plain
            } else {
                route
            };
            output::write_routed(line, route, counters, report, never, &progress, |route| {
                match route {
                    output::RouteRef::Event(m) => self.make_writer.make_writer_for(m),
                    output::RouteRef::Line(t, l) => self
                        .make_writer
                        .make_writer_for(&output::line_metadata(t, l)),
                    output::RouteRef::Plain => self.make_writer.make_writer_for(for_line),
                }
            });
        }));
        // A panic after the line was counted (a writer that panics in or after its write:
        // `write_routed` counts the line, and notes a cut, itself) changes nothing; before (in
        // `make_writer`), the line is lost.
        if written.is_err() && !progress.counted.get() {
            let err = io::Error::other("the writer panicked");
            counters.dropped(output::Loss::Write(&err), report);
        }
    }
}

#[cfg(all(test, feature = "install"))]
mod tests {
    use std::io::{self, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt as _;

    #[derive(Clone, Copy)]
    enum Step {
        Take(usize),
        WouldBlock,
        Panic,
        Whole,
    }

    /// Does `steps[i]` on its write call `i`, then takes everything.
    #[derive(Clone)]
    struct Steps {
        out: Arc<Mutex<Vec<u8>>>,
        calls: Arc<AtomicUsize>,
        steps: &'static [Step],
    }

    impl Write for Steps {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            let n = match self.steps.get(call).copied().unwrap_or(Step::Whole) {
                Step::Take(n) => data.len().min(n),
                Step::Whole => data.len(),
                Step::WouldBlock => return Err(io::ErrorKind::WouldBlock.into()),
                Step::Panic => panic!("the writer panics on purpose"),
            };
            self.out.lock().unwrap().extend_from_slice(&data[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A writer that is one output whatever a line's level (standard output, a file): a line
    /// cut there is ended by the next line, whatever its level, and no later line is preceded
    /// by an empty one. (A writer given with `with_writer` may route by level: each level's
    /// output is owed its own newline there.)
    #[test]
    fn a_cut_line_on_one_output_is_ended_once_whatever_the_next_lines_level() {
        for plain in [true, false] {
            let w = Steps {
                out: Arc::default(),
                calls: Arc::default(),
                steps: &[Step::Take(10), Step::Panic, Step::WouldBlock],
            };
            let w2 = w.clone();
            let layer = crate::layer()
                .with_writer(move || w2.clone())
                .log_internal_errors(false)
                .with_plain(plain);
            tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
                tracing::warn!("first");
                tracing::info!("second");
                tracing::info!("third");
                tracing::info!("fourth");
            });
            let text = String::from_utf8(w.out.lock().unwrap().clone()).unwrap();
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            assert_eq!(lines[0].len(), 11, "the cut line, ended: {text:?}");
            if plain {
                assert!(!lines.contains(&"\n"), "an empty line: {text:?}");
                assert_eq!(lines.len(), 4, "{text:?}");
            } else {
                // The WARN output is owed its newline apart: one empty line on a writer that
                // turns out not to route.
                assert_eq!(lines.iter().filter(|l| **l == "\n").count(), 1, "{text:?}");
            }
        }
    }
}

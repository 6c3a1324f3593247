//! Where lines go: stdout, stderr, a rotating file, or any `MakeWriter`, each either written
//! in place (blocking) or handed to a background thread through a bounded queue.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// How often a file written by [`Writer::file`] starts a new file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rotation {
    /// A new file every hour: `prefix.YYYY-MM-DD-HH`.
    Hourly,
    /// A new file every day: `prefix.YYYY-MM-DD`.
    Daily,
    /// One file, never rotated: `prefix`.
    Never,
}

enum Target {
    Stdout,
    Stderr,
    File {
        dir: PathBuf,
        prefix: String,
        rotation: Rotation,
    },
    Custom(BoxMakeWriter),
}

/// Where [`init()`](crate::init) writes lines, set with
/// [`Builder::writer`](crate::install::Builder::writer). The default is [`Writer::stdout`],
/// blocking.
///
/// Blocking writers write each line before the logging call returns: nothing is ever lost, and
/// a slow reader slows the program down. [`Writer::non_blocking`] hands lines to a background
/// thread through a bounded queue instead; when the queue is full, lines are dropped and
/// counted (see [`Guard::dropped_lines`](crate::Guard::dropped_lines)) and a WARN line says how
/// many. [`Guard`](crate::Guard) writes out what is queued when it is dropped.
///
/// ```
/// use traceline::install::{Rotation, Writer};
///
/// let to_stderr = Writer::stderr();
/// let to_files = Writer::file("/var/log/orders", "orders.log", Rotation::Daily).non_blocking();
/// let bounded = Writer::stdout().non_blocking().queue_limit(10_000);
/// # let _ = (to_stderr, to_files, bounded);
/// ```
pub struct Writer {
    target: Target,
    non_blocking: bool,
    queue_limit: usize,
    lossy: bool,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = match &self.target {
            Target::Stdout => "stdout".to_string(),
            Target::Stderr => "stderr".to_string(),
            Target::File {
                dir,
                prefix,
                rotation,
            } => format!("file {}/{prefix} ({rotation:?})", dir.display()),
            Target::Custom(_) => "custom".to_string(),
        };
        f.debug_struct("Writer")
            .field("target", &target)
            .field("non_blocking", &self.non_blocking)
            .field("queue_limit", &self.queue_limit)
            .field("lossy", &self.lossy)
            .finish()
    }
}

impl Default for Writer {
    fn default() -> Self {
        Writer::stdout()
    }
}

/// The queue length of [`Writer::non_blocking`] unless [`Writer::queue_limit`] says otherwise.
pub const DEFAULT_QUEUE_LIMIT: usize = 128_000;

impl Writer {
    fn new(target: Target) -> Self {
        Writer {
            target,
            non_blocking: false,
            queue_limit: DEFAULT_QUEUE_LIMIT,
            lossy: true,
        }
    }

    /// Standard output (the default).
    ///
    /// ```
    /// let w = traceline::install::Writer::stdout();
    /// # let _ = w;
    /// ```
    pub fn stdout() -> Self {
        Writer::new(Target::Stdout)
    }

    /// Standard error.
    ///
    /// ```
    /// let w = traceline::install::Writer::stderr();
    /// # let _ = w;
    /// ```
    pub fn stderr() -> Self {
        Writer::new(Target::Stderr)
    }

    /// Files in `dir` named after `prefix`, rotated hourly, daily or never (through
    /// `tracing-appender`). The directory is created if needed.
    ///
    /// ```
    /// use traceline::install::{Rotation, Writer};
    /// let w = Writer::file("logs", "app.log", Rotation::Hourly);
    /// # let _ = w;
    /// ```
    pub fn file(dir: impl Into<PathBuf>, prefix: impl Into<String>, rotation: Rotation) -> Self {
        Writer::new(Target::File {
            dir: dir.into(),
            prefix: prefix.into(),
            rotation,
        })
    }

    /// Any [`MakeWriter`], such as a `Mutex<File>` or a test buffer.
    ///
    /// ```
    /// let w = traceline::install::Writer::custom(std::io::sink);
    /// # let _ = w;
    /// ```
    pub fn custom<M>(make_writer: M) -> Self
    where
        M: for<'a> MakeWriter<'a> + Send + Sync + 'static,
    {
        Writer::new(Target::Custom(BoxMakeWriter::new(make_writer)))
    }

    /// Writes from a background thread through a bounded queue, so logging never waits for
    /// the output. Lines that do not fit in the queue are dropped and counted.
    ///
    /// ```
    /// let w = traceline::install::Writer::stdout().non_blocking();
    /// # let _ = w;
    /// ```
    pub fn non_blocking(mut self) -> Self {
        self.non_blocking = true;
        self
    }

    /// How many lines the non-blocking queue holds (default [`DEFAULT_QUEUE_LIMIT`]). Implies
    /// [`Writer::non_blocking`].
    ///
    /// ```
    /// let w = traceline::install::Writer::stdout().queue_limit(1_000);
    /// # let _ = w;
    /// ```
    pub fn queue_limit(mut self, lines: usize) -> Self {
        self.non_blocking = true;
        self.queue_limit = lines.max(1);
        self
    }

    /// When the non-blocking queue is full, wait for room instead of dropping the line
    /// (default: drop). Implies [`Writer::non_blocking`].
    ///
    /// ```
    /// let w = traceline::install::Writer::stdout().wait_when_full();
    /// # let _ = w;
    /// ```
    pub fn wait_when_full(mut self) -> Self {
        self.non_blocking = true;
        self.lossy = false;
        self
    }

    /// Builds the `MakeWriter`; the worker guard and counter exist in non-blocking mode.
    pub(crate) fn build(self) -> std::io::Result<Built> {
        if !self.non_blocking {
            let make = match self.target {
                Target::Stdout => BoxMakeWriter::new(std::io::stdout),
                Target::Stderr => BoxMakeWriter::new(std::io::stderr),
                Target::File {
                    dir,
                    prefix,
                    rotation,
                } => BoxMakeWriter::new(appender(dir, prefix, rotation)?),
                Target::Custom(m) => m,
            };
            return Ok(Built {
                make,
                worker: None,
                dropped: DroppedLines::default(),
            });
        }
        let builder = NonBlockingBuilder::default()
            .lossy(self.lossy)
            .buffered_lines_limit(self.queue_limit)
            .thread_name("traceline-writer");
        let (nb, worker) = match self.target {
            Target::Stdout => builder.finish(std::io::stdout()),
            Target::Stderr => builder.finish(std::io::stderr()),
            Target::File {
                dir,
                prefix,
                rotation,
            } => builder.finish(appender(dir, prefix, rotation)?),
            Target::Custom(m) => builder.finish(OwnedWriter(m)),
        };
        let dropped = DroppedLines {
            counter: Some(nb.error_counter()),
            reported: Arc::new(AtomicU64::new(0)),
        };
        Ok(Built {
            make: BoxMakeWriter::new(nb),
            worker: Some(worker),
            dropped,
        })
    }
}

fn appender(
    dir: PathBuf,
    prefix: String,
    rotation: Rotation,
) -> std::io::Result<tracing_appender::rolling::RollingFileAppender> {
    use tracing_appender::rolling;
    std::fs::create_dir_all(&dir)?;
    let rotation = match rotation {
        Rotation::Hourly => rolling::Rotation::HOURLY,
        Rotation::Daily => rolling::Rotation::DAILY,
        Rotation::Never => rolling::Rotation::NEVER,
    };
    rolling::RollingFileAppender::builder()
        .rotation(rotation)
        .filename_prefix(prefix)
        .build(&dir)
        .map_err(std::io::Error::other)
}

/// A `MakeWriter` used as a plain `Write` by the background thread.
struct OwnedWriter(BoxMakeWriter);

impl std::io::Write for OwnedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.make_writer().write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.make_writer().write_all(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.make_writer().flush()
    }
}

pub(crate) struct Built {
    pub(crate) make: BoxMakeWriter,
    pub(crate) worker: Option<WorkerGuard>,
    pub(crate) dropped: DroppedLines,
}

/// How many lines a [non-blocking](Writer::non_blocking) writer dropped because its queue was
/// full. Always zero for blocking writers. Cheap to clone and read from anywhere.
///
/// ```no_run
/// let guard = traceline::builder()
///     .writer(traceline::install::Writer::stdout().non_blocking())
///     .try_init()?;
/// let dropped = guard.dropped_lines();
/// // ... later, in a health or metrics endpoint:
/// println!("log lines dropped so far: {}", dropped.count());
/// # Ok::<(), traceline::InitError>(())
/// ```
#[derive(Clone, Default)]
pub struct DroppedLines {
    counter: Option<ErrorCounter>,
    reported: Arc<AtomicU64>,
}

impl std::fmt::Debug for DroppedLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DroppedLines").field(&self.count()).finish()
    }
}

impl DroppedLines {
    /// Lines dropped so far.
    ///
    /// ```
    /// assert_eq!(traceline::install::DroppedLines::default().count(), 0);
    /// ```
    pub fn count(&self) -> u64 {
        self.counter
            .as_ref()
            .map_or(0, |c| c.dropped_lines() as u64)
    }

    /// Lines dropped since the last call that returned a number, for the WARN line.
    pub(crate) fn take_unreported(&self) -> u64 {
        let total = self.count();
        let before = self.reported.swap(total, Ordering::Relaxed);
        total.saturating_sub(before)
    }

    pub(crate) fn is_counting(&self) -> bool {
        self.counter.is_some()
    }
}

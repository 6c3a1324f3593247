//! Where lines go: stdout, stderr, a rotating file, or any `MakeWriter`, each either written
//! in place (blocking) or handed to a background thread through a bounded queue.

use crate::output::line_metadata;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

use std::panic::AssertUnwindSafe;

use tracing_core::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use super::InitError;
use super::guard::Origin;
use crate::Stats;
use crate::output::{self, Loss};

/// How often a file written by [`Writer::file`] starts a new file.
///
/// ```
/// use traceline::install::{Rotation, Writer};
/// let w = Writer::file("/var/log/orders", "orders.log", Rotation::Daily);
/// # let _ = w;
/// ```
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
/// Blocking writers write each line before the logging call returns: a slow reader slows the
/// program down, and a line is lost only when the output fails (a closed pipe, a full disk,
/// an output stuck past a bound), counted in [`Stats`](crate::Stats). [`Writer::non_blocking`] hands lines to a background
/// thread through a bounded queue instead; when the queue is full, lines are dropped and
/// counted (see [`Guard::stats`](crate::Guard::stats)), a WARN line says how many, and
/// logging threads never wait for the output. [`Guard`](crate::Guard) writes out what is queued when it is dropped.
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
    queue_bytes: usize,
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
            .field("queue_bytes", &self.queue_bytes)
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
///
/// ```
/// assert_eq!(traceline::install::DEFAULT_QUEUE_LIMIT, 128_000);
/// ```
pub const DEFAULT_QUEUE_LIMIT: usize = 128_000;

/// How many bytes of lines the non-blocking queue holds unless [`Writer::queue_bytes`] says
/// otherwise: 64 MiB. With lines of a few hundred bytes the queue fills up by its line count
/// first; with large ones (a request body logged whole), this keeps a stalled output from
/// filling the memory.
///
/// ```
/// assert_eq!(traceline::install::DEFAULT_QUEUE_BYTES, 64 << 20);
/// ```
pub const DEFAULT_QUEUE_BYTES: usize = 64 << 20;

/// The longest non-blocking queue [`Writer::queue_limit`] takes: the queue's slots are made up
/// front (48 bytes each, about 200 MB at this length), so a longer one is refused with an
/// [`InitError`] instead of failing to allocate.
///
/// ```
/// assert_eq!(traceline::install::MAX_QUEUE_LIMIT, 1 << 22);
/// ```
pub const MAX_QUEUE_LIMIT: usize = 1 << 22;

impl Writer {
    fn new(target: Target) -> Self {
        Writer {
            target,
            non_blocking: false,
            queue_limit: DEFAULT_QUEUE_LIMIT,
            queue_bytes: DEFAULT_QUEUE_BYTES,
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

    /// Files in `dir` named after `prefix`, rotated hourly, daily or never, and named as
    /// `tracing-appender` names them (`app.log.2026-11-27-09`, `app.log.2026-11-27`, or
    /// `app.log`). The directory is created if needed; an empty `prefix`, or one that is a
    /// path rather than a file name (`/var/log/app.log`, `sub/app.log`, `..`), is refused.
    ///
    /// A file removed or renamed while the program runs (an `rm`, `logrotate` without
    /// `copytruncate`) is made again under its name: the name is checked on a line at most
    /// every 0.1 s. Lines logged before that go to the renamed file, so `logrotate` needs no
    /// `postrotate` signal; with `compress`, add `delaycompress` (those lines would otherwise go
    /// into a file it compresses and removes), and prefer `copytruncate` to `rotate 0` or
    /// `renamecopy`. After an `rm`, the lines of that moment go to the removed file. On systems
    /// other than Unix, only a name that no longer exists is noticed.
    ///
    /// A relative `dir` (an empty one is the working directory) is taken from the working
    /// directory when the writer is built. A regular file that already ends inside a line (an
    /// earlier run's line left cut) has that line ended before the first new one, where the
    /// file can be read (on a full disk, with the first new line once there is room: a line
    /// that cannot be preceded by the newline is dropped and counted). A file that cannot be opened (at a rotation, or made again) leaves
    /// lines going to the current one, says so on stderr (unless
    /// [`log_internal_errors(false)`](crate::Layer::log_internal_errors)), and is tried again
    /// on a line 0.1 s or more later. Old files are not removed.
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

    /// How many lines the non-blocking queue holds (default [`DEFAULT_QUEUE_LIMIT`], at most
    /// [`MAX_QUEUE_LIMIT`]: building the writer with more is an [`InitError`]). Implies
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

    /// How many bytes of lines the non-blocking queue holds (default
    /// [`DEFAULT_QUEUE_BYTES`]): the queue is full when either limit is reached. A line always
    /// goes into an empty queue, whatever its length. Implies [`Writer::non_blocking`].
    ///
    /// ```
    /// let w = traceline::install::Writer::stdout().queue_bytes(16 << 20);
    /// # let _ = w;
    /// ```
    pub fn queue_bytes(mut self, bytes: usize) -> Self {
        self.non_blocking = true;
        self.queue_bytes = bytes;
        self
    }

    /// When the non-blocking queue is full, wait for room instead of dropping the line
    /// (default: drop). Implies [`Writer::non_blocking`]. A line logged by the output itself,
    /// on the background thread, never waits (that would wait for its own thread), nor does
    /// the WARN line that reports dropped lines: each is dropped and counted when the queue is
    /// full. Nor does a line once a shutdown has run out of time behind an output that stopped
    /// taking lines: it is dropped and counted, and the logging thread goes on.
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

    pub(crate) fn is_non_blocking(&self) -> bool {
        self.non_blocking
    }

    /// Whether every line goes to one output, whatever its level and target (not a custom
    /// `MakeWriter`, which may route).
    pub(crate) fn is_plain(&self) -> bool {
        !matches!(self.target, Target::Custom(_))
    }

    /// Builds the `MakeWriter`, counting into `stats` (and saying on stderr when lines are
    /// lost, with `report`); the worker exists in non-blocking mode.
    pub(crate) fn build(self, stats: &Stats, report: bool) -> Result<Built, InitError> {
        if !self.non_blocking {
            // Locked per line: a line the output takes in pieces is never mixed with another.
            let make = match self.target {
                Target::Stdout => BoxMakeWriter::new(crate::StdoutLine::lock),
                Target::Stderr => BoxMakeWriter::new(|| std::io::stderr().lock()),
                Target::File {
                    dir,
                    prefix,
                    rotation,
                } => BoxMakeWriter::new(LockedFile::new(dir, prefix, rotation, stats, report)?),
                Target::Custom(m) => {
                    // Kept by the guard too, which flushes it (a `BufWriter` inside, say) when
                    // it is dropped: the global subscriber never is.
                    let shared = Arc::new(SharedMake {
                        make: m,
                        after_guard: AtomicBool::new(false),
                    });
                    return Ok(Built {
                        make: BoxMakeWriter::new(SharedMakeWriter(shared.clone())),
                        worker: None,
                        flush: Some(Flush(shared)),
                    });
                }
            };
            return Ok(Built {
                make,
                worker: None,
                flush: None,
            });
        }
        let out = match self.target {
            // Locked for each whole line, as the blocking writer does: a line the output takes
            // in pieces is never mixed with another thread's output.
            Target::Stdout => Out::PerLine(BoxMakeWriter::new(crate::StdoutLine::lock)),
            Target::Stderr => Out::PerLine(BoxMakeWriter::new(|| std::io::stderr().lock())),
            Target::File {
                dir,
                prefix,
                rotation,
                // Asked for its writer once per line: it rotates between lines, never inside one.
            } => Out::PerLine(BoxMakeWriter::new(LockedFile::new(
                dir, prefix, rotation, stats, report,
            )?)),
            // A custom `MakeWriter` may route by level or target: each line carries them.
            Target::Custom(m) => Out::Routed(m),
        };
        if self.queue_limit > MAX_QUEUE_LIMIT {
            return Err(InitError::invalid(
                "Writer::queue_limit",
                self.queue_limit.to_string(),
                format!(
                    "the queue's slots are made up front; give at most {MAX_QUEUE_LIMIT} lines \
                     (the default is {DEFAULT_QUEUE_LIMIT}), or use a blocking writer"
                ),
            ));
        }
        let (queue, worker) = Queue::start(
            out,
            (self.queue_limit, self.queue_bytes),
            self.lossy,
            stats,
            report,
        )?;
        Ok(Built {
            make: BoxMakeWriter::new(queue),
            worker: Some(worker),
            flush: None,
        })
    }
}

/// The bounded queue of [`Writer::non_blocking`]: logging threads put lines in, one background
/// thread writes them out.
struct Queue {
    /// Whether lines carry their level and target to the output.
    routed: bool,
    tx: mpsc::SyncSender<Msg>,
    /// How many bytes of lines the queue holds ([`Writer::queue_bytes`]).
    byte_limit: usize,
    lossy: bool,
    shared: Arc<Shared>,
    stats: Stats,
    report: bool,
}

/// What the logging threads and the background writer share besides the channel.
struct Shared {
    /// The process the background writer runs in: a forked child has the queue but not the
    /// thread. Asked per line by the fork counter only; by process id (a system call) where it
    /// matters, on a full queue and at the shutdown.
    origin: Origin,
    /// Lines in the queue: put in by the logging threads, taken out by the writer. What such a
    /// child, whose lines went into the queue, counts as lost when it stops, and what a
    /// shutdown that ran out of time counts as dropped. Each line is counted by whoever takes
    /// it out of this number ([`Shared::claim`]): the writer, a logging thread whose send
    /// failed, or the shutdown, which takes all at once.
    queued: AtomicUsize,
    /// The bytes of the lines in the channel: added before a line is sent, taken off as the
    /// writer receives it.
    queued_bytes: AtomicUsize,
    /// Set when the writer shuts down: lines are refused (and counted) from then on.
    closed: AtomicBool,
    /// Logging threads between their check of `closed` and the end of their send: the writer
    /// waits for them before its last look at the queue, so that no line is left in it.
    sending: AtomicUsize,
    /// Set when the shutdown timeout ran out: queued lines are counted as dropped, not written.
    abandoned: AtomicBool,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            origin: Origin::here(),
            queued: AtomicUsize::new(0),
            queued_bytes: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            sending: AtomicUsize::new(0),
            abandoned: AtomicBool::new(false),
        }
    }
}

impl Shared {
    /// Takes one line out of [`queued`](Shared::queued), to be counted by the caller; `false`
    /// when a shutdown that ran out of time took it (and counted it) already.
    #[inline]
    fn claim(&self) -> bool {
        self.queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Whether this is a child forked from the process the background writer runs in.
    #[inline]
    fn forked(&self) -> bool {
        self.origin.forked_with_handlers()
    }
}

enum Msg {
    /// A line; for a routed output, behind the event's target (`target_len` bytes).
    Line {
        bytes: Vec<u8>,
        target_len: usize,
        level: Level,
    },
    Shutdown,
}

/// Where the background thread writes.
enum Out {
    /// An output asked for a writer once per line: standard output or error, locked for the
    /// line; a file, which then rotates between lines, never inside one.
    PerLine(BoxMakeWriter),
    /// A custom `MakeWriter`, asked for a writer per line with the line's level and target.
    Routed(BoxMakeWriter),
}

impl Out {
    /// Writes a queued line (its target in front when routed); `give_up` is set by a shutdown
    /// that ran out of time; `progress` says, after a panic, how far the line got.
    fn write_line(
        &mut self,
        (bytes, target_len, level): (&[u8], usize, Level),
        counters: &output::Counters,
        report: bool,
        give_up: &std::sync::atomic::AtomicBool,
        progress: &output::Progress,
    ) {
        match self {
            Out::PerLine(make) => {
                output::write_routed(
                    bytes,
                    output::RouteRef::Plain,
                    counters,
                    report,
                    give_up,
                    progress,
                    |_| make.make_writer(),
                );
            }
            Out::Routed(make) => {
                let (target, line) = bytes.split_at(target_len);
                let target = std::str::from_utf8(target).unwrap_or_default();
                output::write_routed(
                    line,
                    output::RouteRef::Line(target, level),
                    counters,
                    report,
                    give_up,
                    progress,
                    |route| match route {
                        output::RouteRef::Line(t, l) => make.make_writer_for(&line_metadata(t, l)),
                        _ => make.make_writer_for(&line_metadata(target, level)),
                    },
                );
            }
        }
    }

    fn flush(&mut self) {
        match self {
            Out::PerLine(make) => {
                let _ = make.make_writer().flush();
            }
            Out::Routed(make) => flush_all(make),
        }
    }
}

/// Flushes every writer `make` gives: the one for no particular line, the one for each level,
/// and the one for each event callsite seen (a `MakeWriter` that routes by level or target
/// gives a different one, or none, for each).
fn flush_all(make: &BoxMakeWriter) {
    // Each on its own: one that panics keeps none of the others from being flushed. A writer
    // is let go apart from its flush: one that panics in both must not abort the program (a
    // panic while a panic unwinds).
    fn flush<W: Write>(get: impl FnOnce() -> W) {
        let Ok(mut w) = std::panic::catch_unwind(AssertUnwindSafe(get)) else {
            return;
        };
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| w.flush()));
        let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(w)));
    }
    flush(|| make.make_writer());
    for level in crate::output::LEVELS {
        flush(|| make.make_writer_for(&line_metadata("", level)));
    }
    for metadata in crate::output::event_callsites() {
        flush(|| make.make_writer_for(metadata));
    }
    // `log` records are routed by their own targets, not their callsite's.
    for (target, level) in crate::output::line_targets() {
        flush(|| make.make_writer_for(&line_metadata(&target, level)));
    }
}

thread_local! {
    /// Set on the background writer's thread (a line its output logs must not wait for room
    /// in the queue that only this thread empties) and on the dropped-lines monitor's (its
    /// WARN line must not keep a guard's shutdown waiting on a stuck output).
    static ON_WRITER_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Lines logged on this thread never wait for room in a full queue: they are dropped and
/// counted.
pub(crate) fn never_wait_on_this_thread() {
    let _ = ON_WRITER_THREAD.try_with(|on| on.set(true));
}

impl Queue {
    fn start(
        mut out: Out,
        (limit, byte_limit): (usize, usize),
        lossy: bool,
        stats: &Stats,
        report: bool,
    ) -> std::io::Result<(Queue, Worker)> {
        let routed = matches!(out, Out::Routed(_));
        let (tx, rx) = mpsc::sync_channel::<Msg>(limit);
        let shared = Arc::new(Shared::default());
        let (done_tx, done) = mpsc::channel::<()>();
        let thread = {
            let stats = stats.clone();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("traceline-writer".into())
                .spawn(move || {
                    ON_WRITER_THREAD.with(|on| on.set(true));
                    let counters = stats.counters();
                    let mut take = |msg: Msg| {
                        if let Msg::Line {
                            bytes,
                            target_len,
                            level,
                        } = msg
                        {
                            shared.queued_bytes.fetch_sub(bytes.len(), Ordering::SeqCst);
                            if !shared.claim() {
                                // Counted as dropped by a shutdown that ran out of time.
                                return;
                            }
                            if shared.abandoned.load(Ordering::SeqCst) {
                                counters.dropped(Loss::Abandoned, report);
                                return;
                            }
                            // A writer that panics loses its line, counted, not the thread
                            // (and with it every later line).
                            let progress = output::Progress::default();
                            let written = std::panic::catch_unwind(AssertUnwindSafe(|| {
                                out.write_line(
                                    (&bytes, target_len, level),
                                    counters,
                                    report,
                                    &shared.abandoned,
                                    &progress,
                                )
                            }));
                            // A panic after the line was counted (`write_routed` counts a line
                            // whose writer panics, and notes its cut) changes nothing; before
                            // (in `make_writer`), the line is lost.
                            if written.is_err() && !progress.counted.get() {
                                let err = std::io::Error::other("the writer panicked");
                                counters.dropped(Loss::Write(&err), report);
                            }
                        }
                    };
                    while let Ok(msg) = rx.recv() {
                        if matches!(msg, Msg::Shutdown) {
                            break;
                        }
                        take(msg);
                    }
                    // Shut down: later lines are refused (and counted); every line already
                    // sent, or being sent, is written (or counted).
                    shared.closed.store(true, Ordering::SeqCst);
                    loop {
                        while let Ok(msg) = rx.try_recv() {
                            take(msg);
                        }
                        if shared.sending.load(Ordering::SeqCst) == 0 {
                            while let Ok(msg) = rx.try_recv() {
                                take(msg);
                            }
                            break;
                        }
                        std::thread::yield_now();
                    }
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| out.flush()));
                    let _ = done_tx.send(());
                })?
        };
        let queue = Queue {
            routed,
            tx: tx.clone(),
            byte_limit,
            lossy,
            shared: shared.clone(),
            stats: stats.clone(),
            report,
        };
        Ok((
            queue,
            Worker {
                tx,
                done: std::sync::Mutex::new(done),
                shared,
                thread: Some(thread),
                stats: stats.clone(),
                report,
            },
        ))
    }
}

impl Queue {
    /// Sends a line if the queue has room for it, in lines and in bytes (a line always goes
    /// into a queue that holds no bytes); `Full` hands it back.
    fn try_put(&self, msg: Msg) -> Result<(), mpsc::TrySendError<Msg>> {
        let len = match &msg {
            Msg::Line { bytes, .. } => bytes.len(),
            Msg::Shutdown => 0,
        };
        let before = self.shared.queued_bytes.fetch_add(len, Ordering::SeqCst);
        if before > 0 && before + len > self.byte_limit {
            self.shared.queued_bytes.fetch_sub(len, Ordering::SeqCst);
            return Err(mpsc::TrySendError::Full(msg));
        }
        self.tx.try_send(msg).inspect_err(|_| {
            self.shared.queued_bytes.fetch_sub(len, Ordering::SeqCst);
        })
    }
}

impl<'a> MakeWriter<'a> for Queue {
    type Writer = QueueWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        QueueWriter {
            queue: self,
            line: Vec::new(),
            target_len: 0,
            level: Level::INFO,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        let mut w = self.make_writer();
        w.level = *meta.level();
        if self.routed {
            // The target goes in front of the line, in the one allocation the line takes.
            w.line.reserve(meta.target().len() + 512);
            w.line.extend_from_slice(meta.target().as_bytes());
            w.target_len = meta.target().len();
        }
        w
    }
}

/// Hands each `write` (a whole line: the layer writes lines in one call) to the queue.
struct QueueWriter<'a> {
    queue: &'a Queue,
    /// The target of a routed line, then the line.
    line: Vec<u8>,
    target_len: usize,
    level: Level,
}

impl Write for QueueWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let q = self.queue;
        let counters = q.stats.counters();
        q.shared.sending.fetch_add(1, Ordering::SeqCst);
        // The line's place in `queued` is taken before `closed` is looked at, and given back
        // (claimed) when the line is not queued: a shutdown that closed the queue and counted
        // what was in it either counted this line too, or is seen closed here.
        q.shared.queued.fetch_add(1, Ordering::SeqCst);
        let sent = if q.shared.forked() {
            // Nothing would ever take the line out of the queue: the thread that empties it
            // runs in the parent only.
            Err(Loss::Forked)
        } else if q.shared.closed.load(Ordering::SeqCst) {
            Err(Loss::Closed)
        } else {
            let mut bytes = std::mem::take(&mut self.line);
            bytes.truncate(self.target_len);
            bytes.extend_from_slice(buf);
            let msg = Msg::Line {
                bytes,
                target_len: self.target_len,
                level: self.level,
            };
            match q.try_put(msg) {
                Ok(()) => Ok(()),
                Err(mpsc::TrySendError::Disconnected(_)) => Err(Loss::Closed),
                // A full queue in a child the fork counter missed stays full: the thread that
                // empties it runs in the parent only.
                Err(mpsc::TrySendError::Full(_)) if q.shared.origin.pid_changed() => {
                    Err(Loss::Forked)
                }
                // On the writer's own thread (its output logging), waiting for room would wait
                // for this thread.
                Err(mpsc::TrySendError::Full(_))
                    if q.lossy || ON_WRITER_THREAD.with(std::cell::Cell::get) =>
                {
                    Err(Loss::QueueFull)
                }
                Err(mpsc::TrySendError::Full(msg)) => wait_for_room(q, msg),
            }
        };
        let sent = match sent {
            // Counted as dropped by a shutdown that ran out of time already.
            Err(_) if !q.shared.claim() => Ok(()),
            sent => sent,
        };
        q.shared.sending.fetch_sub(1, Ordering::SeqCst);
        if let Err(loss) = sent {
            counters.dropped(loss, q.report);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// [`Writer::wait_when_full`]: tries again until the queue has room, with pauses growing to a
/// millisecond; gives up (the line is then dropped) when a shutdown ran out of time, which
/// would leave the line waiting for an output that may never take it.
fn wait_for_room(q: &Queue, mut msg: Msg) -> Result<(), Loss<'static>> {
    let mut pause = Duration::from_micros(10);
    loop {
        if q.shared.abandoned.load(Ordering::SeqCst) {
            return Err(Loss::Abandoned);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(1));
        match q.try_put(msg) {
            Ok(()) => return Ok(()),
            Err(mpsc::TrySendError::Full(m)) => msg = m,
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(Loss::Closed),
        }
    }
}

/// Stops the background writer of a [`Queue`] once everything queued is written.
pub(crate) struct Worker {
    tx: mpsc::SyncSender<Msg>,
    shared: Arc<Shared>,
    /// In a `Mutex` only to make the guards holding the worker `Sync` (a guard kept in a
    /// `static`): only the thread stopping the worker waits on it.
    done: std::sync::Mutex<mpsc::Receiver<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Where the lines a child the fork counter missed cannot write are counted.
    stats: Stats,
    report: bool,
}

/// How long a shutdown that ran out of time waits for a line being written to be counted.
const ABANDON_GRACE: Duration = Duration::from_secs(1);

/// `timeout` from now; a timeout too long for the clock (`Duration::MAX`) waits as long as
/// the clock allows.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(u64::from(u32::MAX))))
        .unwrap_or(now)
}

impl Worker {
    /// Writes out what is queued and stops, waiting at most `timeout` for the output. Lines the
    /// output has not taken by then are counted as dropped, so that the counts are complete
    /// when this returns; a line whose write is still under way is given [`ABANDON_GRACE`] more
    /// to be counted (a write that never returns leaves that one line uncounted).
    pub(crate) fn stop(mut self, timeout: Duration) {
        if self.shared.forked() {
            // A forked child: the thread runs in the parent only (joining it here fails), and
            // the lines in the queue are the parent's, which writes them. Lines logged in this
            // process were refused and counted. The channels are left alone too: dropping
            // them takes their locks, which the parent's thread may have held at the fork.
            std::mem::forget(self);
            return;
        }
        if self.shared.origin.pid_changed() {
            // A child made without `fork()`'s handlers: its lines went into the queue, which
            // nothing here empties. They are counted as lost (with the parent's still queued
            // at the fork, which cannot be told apart), and later ones are refused, counted.
            self.close_and_drop_queued(Loss::Forked);
            // As above: the thread and the channels are the parent's.
            std::mem::forget(self);
            return;
        }
        let deadline = deadline_after(timeout);
        let sent = self.send_shutdown(deadline);
        let finished = sent && self.wait(deadline);
        if !finished {
            // Out of time: what is still queued is counted as dropped here, not left to the
            // writer, whose output may never return from a write (a reader that stopped
            // reading); later lines are refused and counted.
            self.shared.abandoned.store(true, Ordering::SeqCst);
            self.close_and_drop_queued(Loss::Abandoned);
            let grace = deadline_after(ABANDON_GRACE);
            if !((sent || self.send_shutdown(grace)) && self.wait(grace)) {
                return;
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Refuses later lines and counts every line still queued as lost for `loss`, taking them
    /// out of [`Shared::queued`] at once (the writer then leaves them uncounted).
    fn close_and_drop_queued(&self, loss: Loss<'_>) {
        self.shared.closed.store(true, Ordering::SeqCst);
        let counters = self.stats.counters();
        for _ in 0..self.shared.queued.swap(0, Ordering::SeqCst) {
            counters.dropped(loss, self.report);
        }
    }

    /// Puts the shutdown message in the queue (which may be full: the worker is draining it).
    fn send_shutdown(&self, deadline: Instant) -> bool {
        let mut msg = Msg::Shutdown;
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => return true,
                Err(mpsc::TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return false,
            }
        }
    }

    fn wait(&self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        done.recv_timeout(left).is_ok()
    }
}

/// Checks the name of a [`Writer::file`] file and makes its directory.
fn file_dir(dir: &Path, prefix: &str) -> Result<(), InitError> {
    if prefix.is_empty() {
        // A file named after the date alone, a rotated file with an empty name: refused.
        return Err(InitError::InvalidValue {
            setting: "Writer::file",
            value: prefix.to_string(),
            reason: "the file name (prefix) is empty; give the file a name, such as \"app.log\""
                .into(),
        });
    }
    // A name, not a path: an absolute one would put the files outside `dir` (`join` drops
    // `dir`), a relative one into a directory nothing makes; `.` and `..` are no file's name.
    let mut parts = Path::new(prefix).components();
    let plain = matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(name)), None) if name == std::ffi::OsStr::new(prefix)
    );
    if !plain {
        return Err(InitError::InvalidValue {
            setting: "Writer::file",
            value: prefix.to_string(),
            reason: "the file name (prefix) must be a plain file name, such as \"app.log\", \
                     not a path; put the directory in `dir`"
                .into(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|source| InitError::LogDirectory {
        dir: dir.to_path_buf(),
        source,
    })
}

/// The period (hour or day since the epoch, UTC) `t` falls in; `None` for a file never
/// rotated.
fn period(rotation: Rotation, t: SystemTime) -> Option<u64> {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match rotation {
        Rotation::Hourly => Some(secs / 3600),
        Rotation::Daily => Some(secs / 86_400),
        Rotation::Never => None,
    }
}

/// The name of the file of `period`: `prefix.YYYY-MM-DD-HH` (hourly), `prefix.YYYY-MM-DD`
/// (daily), or `prefix` (never rotated), as `tracing-appender` names them.
fn period_file_name(prefix: &str, rotation: Rotation, period: Option<u64>) -> String {
    let Some(period) = period else {
        return prefix.to_string();
    };
    let (days, hour) = match rotation {
        Rotation::Hourly => (period / 24, Some(period % 24)),
        _ => (period, None),
    };
    let (y, m, d) = crate::timestamp::civil_from_days(days as i64);
    match hour {
        Some(h) => format!("{prefix}.{y:04}-{m:02}-{d:02}-{h:02}"),
        None => format!("{prefix}.{y:04}-{m:02}-{d:02}"),
    }
}

/// How often, at most, the name of a [`Writer::file`] file is checked (and a file that could
/// not be opened is tried again), in milliseconds of the wall clock.
const NAME_CHECK_MS: u64 = 100;

/// A log file, locked for the whole line, as standard output is: a line the file takes in
/// pieces (a full disk, a file size limit) is never mixed with another thread's. The file is
/// chosen once per line, when the line takes the lock, with one read of the clock: a rotation
/// happens between lines, never inside one.
///
/// A file removed or renamed while the program runs (an `rm`, `logrotate` without
/// `copytruncate`) is noticed on the first line [`NAME_CHECK_MS`] or more after the last check
/// of its name, by the name no longer naming the open file, and made again. A newer file is opened as the first
/// byte goes to it, not when a writer is only asked to flush.
///
/// A line left cut in a file is ended there: when the file is replaced before the newline it is
/// owed could be written, the newline goes to the file that holds the cut line (where it can),
/// and the newer file, which starts on a line of its own, is not given an empty line.
struct LockedFile {
    lock: std::sync::Mutex<FileState>,
    /// Absolute: a later change of the working directory does not move the file.
    dir: PathBuf,
    prefix: String,
    rotation: Rotation,
    stats: Stats,
    report: bool,
}

/// The file lines go to.
struct FileState {
    file: std::fs::File,
    /// Its period.
    period: Option<u64>,
    path: PathBuf,
    /// Who it is on its file system (device and inode), to tell that its name was given to
    /// another file; `None` where that is not known.
    identity: Option<(u64, u64)>,
    /// Whether it ends with a whole line (or is empty).
    at_line_start: bool,
    /// When (milliseconds of the wall clock) the name was last checked.
    checked: u64,
    /// When a newer file last failed to open, while it does.
    failed: Option<u64>,
}

/// A file's device and inode.
fn identity(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

/// Milliseconds since the epoch (0 before it).
fn millis(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether [`NAME_CHECK_MS`] have passed since `last` (or the clock was set back past it).
fn due(now: u64, last: u64) -> bool {
    now >= last.saturating_add(NAME_CHECK_MS) || now < last
}

impl LockedFile {
    fn new(
        dir: PathBuf,
        prefix: String,
        rotation: Rotation,
        stats: &Stats,
        report: bool,
    ) -> Result<Self, InitError> {
        // `Path::new("app.log").parent()` is an empty path: the working directory.
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        file_dir(&dir, &prefix)?;
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        let now = SystemTime::now();
        let period = period(rotation, now);
        let path = dir.join(period_file_name(&prefix, rotation, period));
        let opened = open_log(&dir, &path).map_err(|source| InitError::LogFile {
            path: path.clone(),
            source,
        })?;
        Ok(LockedFile {
            lock: std::sync::Mutex::new(FileState {
                file: opened.file,
                period,
                path,
                identity: opened.identity,
                at_line_start: opened.at_line_start,
                checked: millis(now),
                failed: None,
            }),
            dir,
            prefix,
            rotation,
            stats: stats.clone(),
            report,
        })
    }

    /// Opens the file of `period` in place of the one in `state`, which is kept when that
    /// fails (and tried again on a line [`NAME_CHECK_MS`] or more later; the first failure of
    /// a run of them is said on stderr).
    fn replace(&self, state: &mut FileState, period: Option<u64>, now: u64) {
        let path = self
            .dir
            .join(period_file_name(&self.prefix, self.rotation, period));
        let opened = match open_log(&self.dir, &path) {
            Ok(opened) => opened,
            Err(err) => {
                if state.failed.is_none() && self.stats.counters().may_report(self.report) {
                    let now_into = if period == state.period {
                        // Made again: the name went away from the open file.
                        "the file that had that name (renamed or removed)".to_string()
                    } else {
                        format!("{:?}", state.path)
                    };
                    output::report_on_stderr(format!(
                        "traceline: cannot open the log file {path:?} ({err}); lines go on \
                         into {now_into} until it can be opened, tried again on a line \
                         {NAME_CHECK_MS} ms or more later\n"
                    ));
                }
                state.failed = Some(now);
                return;
            }
        };
        // A line left cut in the older file is ended there, where it can be. The older file
        // is not written again: the newer one starts as it ends.
        if !state.at_line_start {
            let _ = (&state.file).write_all(b"\n");
        }
        state.file = opened.file;
        state.period = period;
        state.path = path;
        state.identity = opened.identity;
        state.at_line_start = opened.at_line_start;
        state.checked = now;
        state.failed = None;
    }
}

/// A log file opened by [`open_log`].
struct Opened {
    file: std::fs::File,
    identity: Option<(u64, u64)>,
    /// Whether it ends with a whole line (or is empty).
    at_line_start: bool,
}

/// Opens (creates) the log file at `path` for appending, making `dir` again if it is gone. A
/// regular file that ends inside a line (an earlier run's line left cut) has the line ended
/// first, where it can be read, so that the next line is not glued to it.
///
/// Opened for writing only: a FIFO (or a pipe reached through `/dev/stdout`) opened for reading
/// too would keep its own reader, and a write would wait for room forever once the real reader
/// left, instead of failing.
fn open_log(dir: &Path, path: &Path) -> std::io::Result<Opened> {
    let open = || {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
    };
    let file = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            open()?
        }
        other => other?,
    };
    let meta = file.metadata().ok();
    let identity = meta.as_ref().and_then(identity);
    let mut at_line_start = true;
    if let Some(meta) = meta.filter(|m| m.is_file() && m.len() > 0) {
        if last_byte(path, identity, meta.len()).is_some_and(|b| b != b'\n') {
            at_line_start = (&file).write_all(b"\n").is_ok();
        }
    }
    Ok(Opened {
        file,
        identity,
        at_line_start,
    })
}

/// The byte at `len - 1` of the regular file at `path`, read through a handle of its own (when
/// the file it opens is the one of `identity`, where that is known).
fn last_byte(path: &Path, identity: Option<(u64, u64)>, len: u64) -> Option<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if identity.is_some() && self::identity(&meta) != identity {
        return None;
    }
    file.seek(SeekFrom::Start(len - 1)).ok()?;
    let mut last = [0u8];
    file.read_exact(&mut last).ok()?;
    Some(last[0])
}

/// Whether the name of the file in `state` still names it: `false` when the file was removed
/// or renamed (and, where files have an identity, when another file took its name).
fn still_named(state: &FileState) -> bool {
    match std::fs::metadata(&state.path) {
        Ok(meta) => state.identity.is_none() || identity(&meta) == state.identity,
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// The file of one line, locked; `pending`: the period of a file to open in place of the one
/// in `state` as the first byte is written.
struct LockedFileWriter<'a> {
    state: std::sync::MutexGuard<'a, FileState>,
    owner: &'a LockedFile,
    pending: Option<(Option<u64>, u64)>,
    /// Nothing written through this writer yet: its first bytes start a line.
    fresh: bool,
}

impl<'a> MakeWriter<'a> for LockedFile {
    type Writer = LockedFileWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        let mut state = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemTime::now();
        let ms = millis(now);
        let period = period(self.rotation, now);
        let retry = state.failed.is_none_or(|failed| due(ms, failed));
        let mut pending = None;
        // Forward only: a clock set back keeps the newer file.
        if period > state.period {
            if retry {
                pending = Some((period, ms));
            }
        } else if retry && due(ms, state.checked) {
            // Noted as checked only when the name is still the file's: a writer dropped
            // unused (a line that let its writer go to end a cut one first) leaves the
            // replacement to the next writer.
            if still_named(&state) {
                state.checked = ms;
            } else {
                pending = Some((state.period, ms));
            }
        }
        LockedFileWriter {
            state,
            owner: self,
            pending,
            fresh: true,
        }
    }
}

impl Write for LockedFileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some((period, now)) = self.pending.take() {
            self.owner.replace(&mut self.state, period, now);
        }
        if self.state.at_line_start && buf.first() == Some(&b'\n') {
            // The newline owed to a line cut in the file before this one, which ended it: none
            // is owed here.
            self.fresh = false;
            return Ok(1);
        }
        if std::mem::take(&mut self.fresh)
            && !self.state.at_line_start
            && buf.first() != Some(&b'\n')
        {
            // The file ends inside a line this process did not cut (an earlier run's, which
            // could not be ended when the file was opened: a full disk): it is ended before
            // this line starts, or the line is not written (and is counted as lost).
            if let Err(e) = (&self.state.file).write_all(b"\n") {
                self.fresh = true;
                return Err(e);
            }
            self.state.at_line_start = true;
        }
        let n = (&self.state.file).write(buf)?;
        if n > 0 {
            self.state.at_line_start = buf.get(n - 1) == Some(&b'\n');
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        (&self.state.file).flush()
    }
}

/// A custom `MakeWriter` shared between the layer and the guard, which flushes it.
struct SharedMakeWriter(Arc<SharedMake>);

struct SharedMake {
    make: BoxMakeWriter,
    /// Set once the guard is gone (or shut down): each line's writer is then flushed as it is
    /// let go, since no one will flush the writer later.
    after_guard: AtomicBool,
}

impl<'a> MakeWriter<'a> for SharedMakeWriter {
    type Writer = FlushedAfterGuard<'a, <BoxMakeWriter as MakeWriter<'a>>::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        FlushedAfterGuard {
            inner: self.0.make.make_writer(),
            after_guard: &self.0.after_guard,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        FlushedAfterGuard {
            inner: self.0.make.make_writer_for(meta),
            after_guard: &self.0.after_guard,
        }
    }
}

/// A custom writer for one line; flushed as it is let go once the guard is gone, so that a
/// line logged after that (a request still finishing on another thread) does not stay in a
/// buffer (a `BufWriter`) that nothing flushes any more.
struct FlushedAfterGuard<'a, W: Write> {
    inner: W,
    after_guard: &'a AtomicBool,
}

impl<W: Write> Write for FlushedAfterGuard<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Drop for FlushedAfterGuard<'_, W> {
    fn drop(&mut self) {
        if self.after_guard.load(Ordering::Acquire) {
            let _ = self.inner.flush();
        }
    }
}

/// Flushes a blocking custom writer (run by the guard).
pub(crate) struct Flush(Arc<SharedMake>);

impl Flush {
    pub(crate) fn run(&self) {
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| flush_all(&self.0.make)));
    }

    /// The guard is going: from now on each line is flushed as its writer is let go, and what
    /// the writer holds now is flushed.
    pub(crate) fn finish(&self) {
        self.0.after_guard.store(true, Ordering::Release);
        self.run();
    }
}

pub(crate) struct Built {
    pub(crate) make: BoxMakeWriter,
    pub(crate) worker: Option<Worker>,
    pub(crate) flush: Option<Flush>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicU64;

    /// Collects what the worker writes, optionally slowly.
    #[derive(Clone, Default)]
    struct Sink {
        out: Arc<Mutex<Vec<u8>>>,
        delay: Duration,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(self.delay);
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A queue whose background writer writes to clones of `out`.
    fn queue_on<W: Write + Clone + Send + Sync + 'static>(
        out: &W,
        limit: usize,
        lossy: bool,
        stats: &Stats,
    ) -> (Queue, Worker) {
        queue_of_bytes_on(out, (limit, DEFAULT_QUEUE_BYTES), lossy, stats)
    }

    /// [`queue_on`], with a limit in bytes too.
    fn queue_of_bytes_on<W: Write + Clone + Send + Sync + 'static>(
        out: &W,
        limits: (usize, usize),
        lossy: bool,
        stats: &Stats,
    ) -> (Queue, Worker) {
        let out = out.clone();
        Queue::start(
            Out::PerLine(BoxMakeWriter::new(move || out.clone())),
            limits,
            lossy,
            stats,
            false,
        )
        .unwrap()
    }

    fn lines_in(sink: &Sink) -> u64 {
        sink.out
            .lock()
            .unwrap()
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64
    }

    #[test]
    fn lines_logged_while_the_writer_shuts_down_are_all_counted() {
        for lossy in [true, false] {
            for _ in 0..60 {
                let sink = Sink::default();
                let stats = Stats::default();
                let (queue, worker) = queue_on(&sink, 4, lossy, &stats);
                let queue = Arc::new(queue);
                let emitted = Arc::new(AtomicU64::new(0));
                let stop = Arc::new(AtomicBool::new(false));
                let threads: Vec<_> = (0..4)
                    .map(|_| {
                        let (queue, emitted, stop) = (queue.clone(), emitted.clone(), stop.clone());
                        std::thread::spawn(move || {
                            while !stop.load(Ordering::Relaxed) {
                                let _ = queue.make_writer().write(b"{}\n");
                                emitted.fetch_add(1, Ordering::Relaxed);
                            }
                        })
                    })
                    .collect();
                std::thread::sleep(Duration::from_micros(200));
                worker.stop(Duration::from_secs(5));
                stop.store(true, Ordering::Relaxed);
                threads.into_iter().for_each(|t| t.join().unwrap());
                let (written, dropped) = (stats.lines_written(), stats.lines_dropped());
                assert_eq!(written + dropped, emitted.load(Ordering::Relaxed));
                assert_eq!(lines_in(&sink), written);
            }
        }
    }

    /// A writer let go unused (a line that lets its writer go to end a cut one first) does not
    /// use up the check of the file's name: the next writer makes the renamed file again.
    #[test]
    fn a_writer_let_go_unused_leaves_the_renamed_file_to_the_next() {
        let dir =
            std::env::temp_dir().join(format!("traceline-unit-unused-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = LockedFile::new(
            dir.clone(),
            "app.log".into(),
            Rotation::Never,
            &Stats::default(),
            false,
        )
        .unwrap();
        file.make_writer().write_all(b"one\n").unwrap();
        std::fs::rename(dir.join("app.log"), dir.join("app.log.1")).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        drop(file.make_writer());
        file.make_writer().write_all(b"two\n").unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
        let (renamed, made) = (read("app.log.1"), read("app.log"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!((renamed.as_str(), made.as_str()), ("one\n", "two\n"));
    }

    #[test]
    fn files_are_named_as_tracing_appender_names_them() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_795_602_723);
        let hour = period(Rotation::Hourly, t).unwrap();
        let day = period(Rotation::Daily, t).unwrap();
        assert_eq!(
            period_file_name("app.log", Rotation::Hourly, Some(hour)),
            "app.log.2026-11-25-10"
        );
        assert_eq!(
            period_file_name("app.log", Rotation::Daily, Some(day)),
            "app.log.2026-11-25"
        );
        assert_eq!(period(Rotation::Never, t), None);
        assert_eq!(
            period_file_name("app.log", Rotation::Never, None),
            "app.log"
        );
    }

    #[test]
    fn lines_the_output_is_too_slow_for_by_the_timeout_are_counted_as_dropped() {
        let sink = Sink {
            delay: Duration::from_millis(5),
            ..Sink::default()
        };
        let stats = Stats::default();
        let (queue, worker) = queue_on(&sink, 2000, true, &stats);
        for _ in 0..1000 {
            queue.make_writer().write_all(b"{}\n").unwrap();
        }
        let start = Instant::now();
        worker.stop(Duration::from_millis(200));
        assert!(start.elapsed() < Duration::from_millis(200) + ABANDON_GRACE);
        let (written, dropped) = (stats.lines_written(), stats.lines_dropped());
        assert_eq!(written + dropped, 1000);
        assert!(dropped > 500, "{written} written in 200 ms at 5 ms each?");
        assert_eq!(lines_in(&sink), written);
    }

    /// An output whose first write waits until `release` is sent (or dropped): a shipper that
    /// stopped reading its pipe.
    #[derive(Clone)]
    struct Hung {
        release: Arc<Mutex<mpsc::Receiver<()>>>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Hung {
        /// The output, and what releases its first write (sent or dropped).
        fn new() -> (Hung, mpsc::Sender<()>) {
            let (release, wait) = mpsc::channel();
            let hung = Hung {
                release: Arc::new(Mutex::new(wait)),
                out: Arc::default(),
            };
            (hung, release)
        }
    }

    impl Write for Hung {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.release.lock().unwrap().recv();
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The queue is bounded in bytes as well as in lines: behind a stalled output, lines of
    /// 4000 bytes fill a budget of 10 000 after two (the line the output holds is out of the
    /// queue), and the rest are dropped and counted; a line longer than the whole budget still
    /// goes into an empty queue.
    #[test]
    fn the_queue_holds_at_most_its_bytes() {
        let (hung, release) = Hung::new();
        let stats = Stats::default();
        let (queue, worker) = queue_of_bytes_on(&hung, (1000, 10_000), true, &stats);
        let mut line = vec![b'x'; 3999];
        line.push(b'\n');
        queue.make_writer().write_all(&line).unwrap();
        // The output takes the first line and holds it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while queue.shared.queued.load(Ordering::SeqCst) != 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        for _ in 0..9 {
            queue.make_writer().write_all(&line).unwrap();
        }
        assert_eq!((stats.lines_written(), stats.lines_dropped()), (0, 7));
        assert_eq!(queue.shared.queued_bytes.load(Ordering::SeqCst), 8000);
        drop(release);
        let mut big = vec![b'y'; 19_999];
        big.push(b'\n');
        let deadline = Instant::now() + Duration::from_secs(10);
        while stats.lines_written() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        queue.make_writer().write_all(&big).unwrap();
        worker.stop(Duration::from_secs(10));
        assert_eq!((stats.lines_written(), stats.lines_dropped()), (4, 7));
        assert_eq!(hung.out.lock().unwrap().len(), 3 * 4000 + 20_000);
        assert_eq!(queue.shared.queued_bytes.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn lines_queued_behind_a_write_that_does_not_return_are_counted_by_the_timeout() {
        let (hung, release) = Hung::new();
        let stats = Stats::default();
        let (queue, worker) = queue_on(&hung, 2000, true, &stats);
        for _ in 0..1000 {
            queue.make_writer().write_all(b"{}\n").unwrap();
        }
        let start = Instant::now();
        worker.stop(Duration::from_millis(200));
        let took = start.elapsed();
        assert!(took < Duration::from_millis(200) + ABANDON_GRACE + Duration::from_millis(500));
        // The line the output holds is neither written nor dropped yet; every other one is
        // counted as dropped.
        assert_eq!((stats.lines_written(), stats.lines_dropped()), (0, 999));
        // Later lines are refused and counted.
        queue.make_writer().write_all(b"{}\n").unwrap();
        assert_eq!(stats.lines_dropped(), 1000);
        // The output comes back: its line is counted as written, and the lines counted as
        // dropped are not written nor counted again.
        drop(release);
        let deadline = Instant::now() + Duration::from_secs(10);
        while stats.lines_written() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!((stats.lines_written(), stats.lines_dropped()), (1, 1000));
        assert_eq!(hung.out.lock().unwrap().as_slice(), b"{}\n");
    }

    /// Threads logging all through a shutdown that runs out of time behind a hung output:
    /// once the threads are done, every line but the one the output holds is counted, and
    /// that one too once the output comes back; nothing is counted twice.
    #[test]
    fn lines_sent_while_a_timed_out_shutdown_counts_the_queue_are_each_counted_once() {
        for lossy in [true, false] {
            let (hung, release) = Hung::new();
            let stats = Stats::default();
            let (queue, worker) = queue_on(&hung, 64, lossy, &stats);
            let queue = Arc::new(queue);
            let stop = Arc::new(AtomicBool::new(false));
            let senders: Vec<_> = (0..3)
                .map(|_| {
                    let (queue, stop) = (queue.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let mut sent = 0u64;
                        while !stop.load(Ordering::SeqCst) {
                            queue.make_writer().write_all(b"{}\n").unwrap();
                            sent += 1;
                        }
                        sent
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(50));
            worker.stop(Duration::from_millis(50));
            std::thread::sleep(Duration::from_millis(20));
            stop.store(true, Ordering::SeqCst);
            // Waiting senders (`wait_when_full`) give up once the shutdown ran out of time.
            let sent: u64 = senders.into_iter().map(|t| t.join().unwrap()).sum();
            let counted = stats.lines_written() + stats.lines_dropped();
            assert_eq!(
                counted + 1,
                sent,
                "lossy {lossy}: all but the held line counted"
            );
            drop(release);
            let deadline = Instant::now() + Duration::from_secs(10);
            while stats.lines_written() == 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(
                (
                    stats.lines_written(),
                    stats.lines_written() + stats.lines_dropped()
                ),
                (1, sent),
                "lossy {lossy}"
            );
        }
    }

    #[test]
    fn a_queue_longer_than_the_limit_is_refused_not_allocated() {
        let stats = Stats::default();
        for lines in [usize::MAX, MAX_QUEUE_LIMIT + 1] {
            let err = Writer::stdout()
                .queue_limit(lines)
                .build(&stats, false)
                .err()
                .expect("refused");
            let msg = err.to_string();
            assert!(
                msg.contains("Writer::queue_limit") && msg.contains("at most"),
                "{msg}"
            );
        }
        assert!(
            Writer::stdout()
                .queue_limit(1000)
                .build(&stats, false)
                .is_ok()
        );
    }

    #[test]
    fn the_longest_shutdown_timeout_waits_instead_of_overflowing_the_clock() {
        let sink = Sink::default();
        let stats = Stats::default();
        let (queue, worker) = queue_on(&sink, 16, true, &stats);
        for _ in 0..10 {
            queue.make_writer().write_all(b"{}\n").unwrap();
        }
        worker.stop(Duration::MAX);
        assert_eq!((stats.lines_written(), stats.lines_dropped()), (10, 0));
        assert_eq!(lines_in(&sink), 10);
    }
}

//! Getting a finished line out: the write loop, the counters, the diagnostic on stderr.
//!
//! A line is handed to the writer whole. Short writes are continued until the line is
//! complete; `Interrupted` is retried; `WouldBlock` before the line's first byte is waited out
//! for at most [`WOULD_BLOCK_WAIT`], then the line is dropped whole; any other error before
//! the first byte drops it at once. Once part of a line is written, every error is retried for
//! up to [`FINISH_LINE_WAIT`] so that a passing failure or a slow reader never leaves half a
//! line; a writer that stays broken for that long leaves the line cut, and the next line starts
//! with a newline so that it stands on its own. A writer that kept a line waiting for its first
//! byte the whole time is not waited for again (for a first byte) until a line gets through. Every line ends up counted as written or dropped, never
//! both, never neither.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long a writer that answers `WouldBlock` is given to take a line's first byte.
pub(crate) const WOULD_BLOCK_WAIT: Duration = Duration::from_millis(50);
/// How many `Interrupted` answers in a row are retried at once, before the writer is waited
/// for as one that is not ready.
const INTERRUPTED_RETRIES: u32 = 64;
/// How long it is given to take the rest of a line it has started taking.
pub(crate) const FINISH_LINE_WAIT: Duration = Duration::from_secs(2);
/// The shortest time between two diagnostics on stderr.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Standard output as traceline writes lines to it (the writer of [`layer()`](crate::layer),
/// and of `init()`'s stdout writer): locked for the whole line, so that no other thread's
/// line, nor `print!` output, is mixed into it; what `print!` left in std's buffer written out
/// first; then the line written to the file descriptor itself, unbuffered (on Unix).
///
/// A line the pipe takes only in part is then known to be cut, and is finished or dropped
/// as the write guarantees say, where std's line buffer would keep its tail, report it as
/// written, and lose it if the process ended before anything else was printed. A closed
/// standard output is an error (counted, said once on stderr), where std's `Stdout` takes
/// every write as done.
///
/// ```
/// use std::io::Write;
///
/// let mut out = traceline::StdoutLine::lock();
/// out.write_all(b"{\"message\":\"hello\"}\n").unwrap();
/// ```
pub struct StdoutLine {
    lock: io::StdoutLock<'static>,
    flushed: bool,
}

impl StdoutLine {
    /// Locks standard output for one line.
    ///
    /// ```
    /// let layer = traceline::layer().with_writer(traceline::StdoutLine::lock);
    /// # let _ = layer;
    /// ```
    pub fn lock() -> StdoutLine {
        StdoutLine {
            lock: io::stdout().lock(),
            flushed: false,
        }
    }
}

impl fmt::Debug for StdoutLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StdoutLine")
    }
}

impl Write for StdoutLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.flushed {
            // `print!` output before this line goes out before it.
            self.lock.flush()?;
            self.flushed = true;
        }
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            Ok(rustix::io::write(self.lock.as_fd(), buf)?)
        }
        #[cfg(not(unix))]
        {
            self.lock.write(buf)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.lock.flush()
    }
}

/// What happened to the lines of a [`Layer`](crate::Layer) (or of
/// `init()`'s writer): how many were written, how many were dropped, and how
/// many writes failed. Cheap to clone; every clone reads the same counters.
///
/// Once the writer is flushed (for `init()`, once the
/// `Guard` is dropped), `lines_written() + lines_dropped()` is exactly the
/// number of lines logged.
///
/// ```
/// use tracing_subscriber::prelude::*;
///
/// let layer = traceline::layer().with_writer(std::io::sink);
/// let stats = layer.stats();
/// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
///     tracing::info!("one");
///     tracing::info!("two");
/// });
/// assert_eq!((stats.lines_written(), stats.lines_dropped(), stats.write_errors()), (2, 0, 0));
/// ```
#[derive(Clone, Default)]
pub struct Stats(Arc<Counters>);

impl fmt::Debug for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stats")
            .field("lines_written", &self.lines_written())
            .field("lines_dropped", &self.lines_dropped())
            .field("write_errors", &self.write_errors())
            .finish()
    }
}

impl Stats {
    /// Lines the writer took whole.
    ///
    /// ```
    /// assert_eq!(traceline::layer().stats().lines_written(), 0);
    /// ```
    pub fn lines_written(&self) -> u64 {
        self.0.written.sum()
    }

    /// Lines lost: the writer failed, or the non-blocking queue was full.
    ///
    /// ```
    /// assert_eq!(traceline::layer().stats().lines_dropped(), 0);
    /// ```
    pub fn lines_dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }

    /// Writes that failed with an error (a closed pipe, a full disk, a writer that stayed
    /// `WouldBlock`). Each failed line counts once.
    ///
    /// ```
    /// assert_eq!(traceline::layer().stats().write_errors(), 0);
    /// ```
    pub fn write_errors(&self) -> u64 {
        self.0.errors.load(Ordering::Relaxed)
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.0
    }
}

/// The counters behind [`Stats`].
#[derive(Default)]
pub(crate) struct Counters {
    written: Sharded,
    dropped: AtomicU64,
    errors: AtomicU64,
    /// Milliseconds after [`epoch`] before which no diagnostic is written.
    quiet_until: AtomicU64,
    /// No diagnostic at all (`log_internal_errors(false)` on a layer counting here, whenever
    /// it was set: a non-blocking output built before reads it too).
    silenced: AtomicBool,
    /// The last write stopped inside a line: the next line starts with a newline.
    broken_line: AtomicBool,
    /// Where the lines left cut went (an output may route lines by level or target to more
    /// than one writer): the newline that ends each goes there, not to the next line's writer.
    cut_routes: std::sync::Mutex<Vec<(Route, u64)>>,
    /// Numbers the cuts, so that a newline written for one cut never ends a later one made
    /// meanwhile on another thread.
    cut_count: AtomicU64,
    /// The levels (one bit each, and one for lines with none) along which a writer kept a line
    /// waiting for its first byte the whole time: until a line of that level gets through,
    /// lines of it do not wait for their first byte again. Lines of other levels (another
    /// writer of an output that routes by level) still wait. Kept by level, not by level and
    /// target, so that a stuck writer every line reaches (one that does not route) is waited
    /// for once per level, not once per target; an output that routes by target shares the
    /// state of its writers of one level.
    stuck: AtomicU8,
}

/// What a routing output is asked for a writer with: an event's metadata (a layer's own
/// writer), a queued line's target and level (the non-blocking writer's), or nothing (an
/// output with one writer).
#[derive(Clone, Debug)]
pub(crate) enum Route {
    Event(&'static tracing_core::Metadata<'static>),
    #[cfg_attr(not(feature = "install"), allow(dead_code))]
    Line(String, tracing_core::Level),
    #[cfg_attr(not(feature = "install"), allow(dead_code))]
    Plain,
}

/// A [`Route`] borrowed, for a line on its way (no allocation unless it is left cut).
#[derive(Clone, Copy, Debug)]
pub(crate) enum RouteRef<'a> {
    Event(&'static tracing_core::Metadata<'static>),
    #[cfg_attr(not(feature = "install"), allow(dead_code))]
    Line(&'a str, tracing_core::Level),
    #[cfg_attr(not(feature = "install"), allow(dead_code))]
    Plain,
}

impl Route {
    /// The same route, borrowed.
    fn as_ref(&self) -> RouteRef<'_> {
        match self {
            Route::Event(m) => RouteRef::Event(m),
            Route::Line(t, l) => RouteRef::Line(t, *l),
            Route::Plain => RouteRef::Plain,
        }
    }

    fn is(&self, other: &Route) -> bool {
        self.as_ref().is(other)
    }
}

impl RouteRef<'_> {
    fn is(self, r: &Route) -> bool {
        match (self, r) {
            (RouteRef::Event(a), Route::Event(b)) => {
                a.level() == b.level() && a.target() == b.target()
            }
            (RouteRef::Line(t, l), Route::Line(u, m)) => t == u && l == *m,
            (RouteRef::Plain, Route::Plain) => true,
            _ => false,
        }
    }

    /// One bit for the route's level, one for a line with none.
    fn level_bit(self) -> u8 {
        let level = match self {
            RouteRef::Event(m) => *m.level(),
            RouteRef::Line(_, l) => l,
            RouteRef::Plain => return 1 << 5,
        };
        1 << match level {
            tracing_core::Level::TRACE => 0,
            tracing_core::Level::DEBUG => 1,
            tracing_core::Level::INFO => 2,
            tracing_core::Level::WARN => 3,
            tracing_core::Level::ERROR => 4,
        }
    }

    fn owned(self) -> Route {
        match self {
            RouteRef::Event(m) => Route::Event(m),
            RouteRef::Line(t, l) => Route::Line(t.to_owned(), l),
            RouteRef::Plain => Route::Plain,
        }
    }
}

impl Counters {
    #[inline]
    pub(crate) fn written(&self) {
        self.written.add(1);
    }

    /// Whether a diagnostic may go on stderr: `report`, and not silenced.
    pub(crate) fn may_report(&self, report: bool) -> bool {
        report && !self.silenced.load(Ordering::Relaxed)
    }

    /// Turns the diagnostics on stderr off, or back on.
    pub(crate) fn silence(&self, silenced: bool) {
        self.silenced.store(silenced, Ordering::Relaxed);
    }

    /// Whether a line was left cut and not ended yet.
    #[inline]
    pub(crate) fn line_is_broken(&self) -> bool {
        self.broken_line.load(Ordering::Relaxed)
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Vec<(Route, u64)>> {
        self.cut_routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The number of the cut pending on `route`, if one waits for its newline.
    fn pending(&self, route: &Route) -> Option<u64> {
        self.routes()
            .iter()
            .find(|(r, _)| r.is(route))
            .map(|(_, n)| *n)
    }

    /// Forgets the cuts in `ended` (a newline reached each), unless a line was cut again on
    /// the same route since.
    #[cold]
    fn ended(&self, ended: &[(Route, u64)]) {
        let mut routes = self.routes();
        routes.retain(|(r, n)| !ended.iter().any(|(e, m)| e.is(r) && m == n));
        if routes.is_empty() {
            self.broken_line.store(false, Ordering::Relaxed);
        }
    }

    /// Whether a writer along `route`'s level kept a line waiting for its first byte the whole
    /// time, and no line of that level got through since.
    #[inline]
    fn is_stuck(&self, route: RouteRef<'_>) -> bool {
        let stuck = self.stuck.load(Ordering::Relaxed);
        // Nothing stuck (the usual case): no more to look at.
        stuck != 0 && stuck & route.level_bit() != 0
    }

    /// Notes that the writer along `route` is stuck, or (`stuck` false) that a line got
    /// through there.
    #[cold]
    fn set_stuck(&self, route: RouteRef<'_>, stuck: bool) {
        if stuck {
            self.stuck.fetch_or(route.level_bit(), Ordering::Relaxed);
        } else {
            self.stuck.fetch_and(!route.level_bit(), Ordering::Relaxed);
        }
    }

    /// Notes that a line sent along `route` was left cut (or its writer panicked after taking
    /// part of it): a newline is owed there.
    #[cold]
    pub(crate) fn line_cut(&self, route: Route) {
        let n = self.cut_count.fetch_add(1, Ordering::Relaxed) + 1;
        let mut routes = self.routes();
        match routes.iter_mut().find(|(r, _)| r.is(&route)) {
            Some(entry) => entry.1 = n,
            None => routes.push((route, n)),
        }
        self.broken_line.store(true, Ordering::Relaxed);
    }

    /// Counts a dropped line, saying why on stderr when `report` and the last report is old
    /// enough.
    pub(crate) fn dropped(&self, loss: Loss<'_>, report: bool) {
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if matches!(loss, Loss::Write(_)) {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if self.may_report(report) && self.claim_report() {
            let why = match loss {
                Loss::Write(err) => format!("the writer failed ({err})"),
                Loss::QueueFull => "the non-blocking writer's queue is full (raise \
                     Writer::queue_limit or Writer::queue_bytes, or use Writer::wait_when_full)"
                    .to_string(),
                Loss::Closed => {
                    "the non-blocking writer was shut down (its Guard or OutputGuard was \
                     dropped)"
                        .to_string()
                }
                Loss::Forked => "the non-blocking writer's thread does not run in this forked \
                     child process (make the writer after the fork)"
                    .to_string(),
                Loss::Abandoned => "the output was too slow to take the queued lines within \
                     the shutdown timeout (Builder::shutdown_timeout for init()'s Guard, 5 s \
                     for an OutputGuard)"
                    .to_string(),
            };
            let msg = format!(
                "traceline: log lines are being lost: {why}; {dropped} dropped so far, {} \
                 written, {} write errors. Next report in {} s at the earliest.\n",
                self.written.sum(),
                self.errors.load(Ordering::Relaxed),
                REPORT_EVERY.as_secs()
            );
            report_on_stderr(msg);
        }
    }

    /// Whether this caller may write a diagnostic now (at most one per [`REPORT_EVERY`]).
    fn claim_report(&self) -> bool {
        let now = epoch().elapsed().as_millis() as u64;
        let until = self.quiet_until.load(Ordering::Relaxed);
        now >= until
            && self
                .quiet_until
                .compare_exchange(
                    until,
                    now + REPORT_EVERY.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

/// Why a line was dropped.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Loss<'a> {
    /// The writer returned this error.
    Write(&'a io::Error),
    /// The non-blocking queue had no room.
    #[cfg_attr(not(feature = "install"), allow(dead_code))]
    QueueFull,
    /// The non-blocking writer no longer runs.
    #[cfg_attr(not(feature = "install"), allow(dead_code))]
    Closed,
    /// The non-blocking writer's shutdown ran out of time before the output took the line.
    #[cfg_attr(not(feature = "install"), allow(dead_code))]
    Abandoned,
    /// Logged in a forked child, which has the non-blocking writer's queue but not its thread.
    #[cfg_attr(not(feature = "install"), allow(dead_code))]
    Forked,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A counter split over cache lines, so that threads counting at once do not contend: each of
/// up to [`OWNED`] live threads that count has a cache line of its own, which it alone writes (a
/// load and a store, no read-modify-write); threads past them share one, counted atomically. A
/// thread's line passes to a later thread when it ends, so a program that starts threads all
/// along (a pool that lets idle threads go) keeps lines of their own for the threads it has.
struct Sharded {
    owned: Box<[Shard]>,
    shared: Shard,
}

impl Default for Sharded {
    fn default() -> Self {
        Sharded {
            owned: (0..OWNED).map(|_| Shard::default()).collect(),
            shared: Shard::default(),
        }
    }
}

/// How many threads get a counter of their own (in every [`Sharded`]).
const OWNED: usize = 64;

#[derive(Default)]
#[repr(align(128))]
struct Shard(AtomicU64);

/// Indexes below [`OWNED`] whose threads ended, for the next threads to take.
static FREE_INDEXES: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

/// A thread's index: below [`OWNED`], the thread's own counter in every [`Sharded`], which no
/// other live thread has. Given back as the thread ends.
struct ThreadIndex(usize);

impl ThreadIndex {
    fn take() -> ThreadIndex {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let freed = FREE_INDEXES.lock().unwrap_or_else(|e| e.into_inner()).pop();
        // The mutex orders the ended thread's last count before this thread's first: the
        // counter's load and store stay exact.
        ThreadIndex(freed.unwrap_or_else(|| NEXT.fetch_add(1, Ordering::Relaxed)))
    }
}

impl Drop for ThreadIndex {
    fn drop(&mut self) {
        // Counting later in this thread's end (another thread-local's destructor logging) finds
        // the index gone and uses the shared counter.
        if self.0 < OWNED {
            FREE_INDEXES
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(self.0);
        }
    }
}

thread_local! {
    static INDEX: ThreadIndex = ThreadIndex::take();
}

impl Sharded {
    #[inline]
    fn add(&self, n: u64) {
        let i = INDEX.try_with(|i| i.0).unwrap_or(usize::MAX);
        match self.owned.get(i) {
            // Only this thread writes it: no other write can come between the load and the
            // store.
            Some(own) => own
                .0
                .store(own.0.load(Ordering::Relaxed) + n, Ordering::Relaxed),
            None => {
                self.shared.0.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    fn sum(&self) -> u64 {
        self.owned
            .iter()
            .chain([&self.shared])
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum()
    }
}

/// What became of a line handed to [`write_line`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Written,
    Dropped,
    /// Dropped with part of it written: the caller notes where it went
    /// ([`Counters::line_cut`]).
    Cut,
}

/// A writer that notes whether it took a byte: after a panic, whether the line was begun.
pub(crate) struct Watch<'a, W> {
    pub(crate) inner: W,
    pub(crate) progress: &'a Progress,
}

impl<W: Write> Write for Watch<'_, W> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf);
        if let Ok(n @ 1..) = written {
            self.progress.taken.set(self.progress.taken.get() + n);
        }
        written
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The event callsites the layers of this process have seen (each once), in the order seen.
static EVENT_CALLSITES: std::sync::Mutex<(
    Vec<&'static tracing_core::Metadata<'static>>,
    Option<std::collections::HashSet<usize>>,
)> = std::sync::Mutex::new((Vec::new(), None));

/// Notes an event callsite (registered once per subscriber that holds a layer).
pub(crate) fn note_event_callsite(metadata: &'static tracing_core::Metadata<'static>) {
    let mut seen = EVENT_CALLSITES.lock().unwrap_or_else(|e| e.into_inner());
    let (list, set) = &mut *seen;
    if set
        .get_or_insert_with(Default::default)
        .insert(metadata as *const _ as usize)
    {
        list.push(metadata);
    }
}

/// The targets and levels of the `log` records written so far, by target: a bit per level.
static LINE_TARGETS: std::sync::Mutex<Option<std::collections::HashMap<Box<str>, u8>>> =
    std::sync::Mutex::new(None);

/// Notes the target and level a `log` record's line was routed by (its callsite is the
/// bridge's, target `log`): a guard flushes the writer of each.
pub(crate) fn note_line_target(target: &str, level: tracing_core::Level) {
    let bit = RouteRef::Line(target, level).level_bit();
    // Each thread takes the process's lock once per target and level it logs.
    thread_local! {
        static NOTED: std::cell::RefCell<std::collections::HashMap<Box<str>, u8>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    let new = NOTED
        .try_with(|noted| {
            noted
                .try_borrow_mut()
                .map_or(true, |mut noted| add_level(&mut noted, target, bit))
        })
        .unwrap_or(true);
    if !new {
        return;
    }
    let mut seen = LINE_TARGETS.lock().unwrap_or_else(|e| e.into_inner());
    add_level(seen.get_or_insert_with(Default::default), target, bit);
}

/// Adds the level `bit` to `target`'s in `seen`; whether it was not there yet. (The target is
/// copied only the first time it is seen.)
fn add_level(seen: &mut std::collections::HashMap<Box<str>, u8>, target: &str, bit: u8) -> bool {
    match seen.get_mut(target) {
        Some(bits) if *bits & bit != 0 => false,
        Some(bits) => {
            *bits |= bit;
            true
        }
        None => {
            seen.insert(target.into(), bit);
            true
        }
    }
}

/// The targets and levels of the `log` records written so far.
#[cfg_attr(not(feature = "install"), allow(dead_code))]
pub(crate) fn line_targets() -> Vec<(String, tracing_core::Level)> {
    let seen = LINE_TARGETS.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::new();
    for (target, bits) in seen.iter().flatten() {
        for level in LEVELS {
            if bits & RouteRef::Line("", level).level_bit() != 0 {
                out.push((target.to_string(), level));
            }
        }
    }
    out
}

/// Every level, lowest first.
pub(crate) const LEVELS: [tracing_core::Level; 5] = [
    tracing_core::Level::TRACE,
    tracing_core::Level::DEBUG,
    tracing_core::Level::INFO,
    tracing_core::Level::WARN,
    tracing_core::Level::ERROR,
];

/// Stands for a line's target and level where a `MakeWriter` asks for metadata: a line routed
/// by those alone (a queued line, a `log` record's), its callsite's, and nothing else.
pub(crate) const fn line_metadata(
    target: &str,
    level: tracing_core::Level,
) -> tracing_core::Metadata<'_> {
    tracing_core::Metadata::new(
        "traceline line",
        target,
        level,
        None,
        None,
        None,
        tracing_core::field::FieldSet::new(&[], tracing_core::identify_callsite!(&LINE_CALLSITE)),
        tracing_core::metadata::Kind::EVENT,
    )
}

/// The callsite of [`line_metadata`] (never registered: nothing is logged through it).
struct LineCallsite;

impl tracing_core::Callsite for LineCallsite {
    fn set_interest(&self, _: tracing_core::subscriber::Interest) {}
    fn metadata(&self) -> &tracing_core::Metadata<'_> {
        static META: tracing_core::Metadata<'static> = line_metadata("", tracing_core::Level::INFO);
        &META
    }
}

static LINE_CALLSITE: LineCallsite = LineCallsite;

/// The event callsites seen so far: where a line may have been routed by its metadata.
#[cfg_attr(not(feature = "install"), allow(dead_code))]
pub(crate) fn event_callsites() -> Vec<&'static tracing_core::Metadata<'static>> {
    EVENT_CALLSITES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .0
        .clone()
}

/// The longest a thread waits for a diagnostic to reach stderr.
const REPORT_WAIT: Duration = Duration::from_millis(100);

/// A diagnostic and where to say it was written.
type Report = (String, std::sync::mpsc::SyncSender<()>);

/// Writes `msg` on stderr from a thread of its own, waiting at most [`REPORT_WAIT`] for it: a
/// stderr nobody reads (a pipe into the same stalled collector as the lines) must not hold a
/// logging thread up. Usually the message is out before this returns. While stderr stays
/// stalled, a few messages wait their turn and later ones are not written.
pub(crate) fn report_on_stderr(msg: String) {
    // The process the reporter thread runs in: a forked child has the channel but not the
    // thread, and makes a reporter of its own.
    type Reporter = (u32, Option<std::sync::mpsc::SyncSender<Report>>);
    static REPORTER: std::sync::Mutex<Option<Reporter>> = std::sync::Mutex::new(None);
    let pid = std::process::id();
    let reporter = {
        let mut r = REPORTER.lock().unwrap_or_else(|e| e.into_inner());
        if r.as_ref().is_none_or(|(p, _)| *p != pid) {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Report>(4);
            let spawned = std::thread::Builder::new()
                .name("traceline-report".into())
                .spawn(move || {
                    for (msg, written) in rx {
                        let _ = io::stderr().write_all(msg.as_bytes());
                        let _ = written.try_send(());
                    }
                });
            *r = Some((pid, spawned.ok().map(|_| tx)));
        }
        r.as_ref().and_then(|(_, tx)| tx.clone())
    };
    let Some(reporter) = reporter else {
        // No thread to be had: said here, at the risk of waiting.
        let _ = io::stderr().write_all(msg.as_bytes());
        return;
    };
    let (written, wait) = std::sync::mpsc::sync_channel(1);
    if reporter.try_send((msg, written)).is_ok() {
        let _ = wait.recv_timeout(REPORT_WAIT);
    }
}

/// Never set: for writers no shutdown gives up on.
pub(crate) static NEVER_GIVE_UP: AtomicBool = AtomicBool::new(false);

/// Writes `line` along `route`, counting it once, as written or dropped. First the lines left
/// cut are ended, each with a newline through the writer it went to (`make` gives the writer
/// for a route; each is dropped before the next is made). While one of them cannot be ended,
/// the line goes with a newline in front: its writer may be that one, and the line must not be
/// glued to the cut one, nor held up by another output that is broken.
pub(crate) fn write_routed<W: Write>(
    line: &[u8],
    route: RouteRef<'_>,
    counters: &Counters,
    report: bool,
    give_up: &AtomicBool,
    progress: &Progress,
    mut make: impl FnMut(RouteRef<'_>) -> W,
) {
    let mut owed = Vec::new();
    if counters.line_is_broken() {
        owed = mend(counters, give_up, &mut make);
    }
    let mut w = Watch {
        inner: make(route),
        progress,
    };
    // A line cut while this one waited for its writer (a lock another thread held while its
    // line failed): the writer is let go for the cut to be ended, then taken again. (A cut is
    // noted before its writer is let go.)
    let mut tries = 0;
    while owed.is_empty() && counters.line_is_broken() && tries < 3 {
        drop(w);
        owed = mend(counters, give_up, &mut make);
        w = Watch {
            inner: make(route),
            progress,
        };
        tries += 1;
    }
    // With the writer held: the cuts now pending on the routes owed and on this line's own
    // (another line may have ended one meanwhile, and been cut there itself, or cut this
    // line's route while this one waited for its writer).
    if !owed.is_empty() || counters.line_is_broken() {
        let now = counters.routes().clone();
        owed = now
            .into_iter()
            .filter(|(r, _)| route.is(r) || owed.iter().any(|(o, _)| o.is(r)))
            .collect();
    }
    let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if !owed.is_empty() {
            let mut with_newline = Vec::with_capacity(line.len() + 1);
            with_newline.push(b'\n');
            with_newline.extend_from_slice(line);
            write_line(&mut w, &with_newline, route, counters, report, give_up)
        } else {
            write_line(&mut w, line, route, counters, report, give_up)
        }
    }));
    // The newline in front, when the line has one: taken alone, it ends the cut owed on this
    // line's route, and leaves no part of this line behind.
    let front = usize::from(!owed.is_empty());
    let (outcome, panic) = match written {
        Ok(outcome) => (outcome, None),
        Err(panic) => (Outcome::Dropped, Some(panic)),
    };
    let panicked = panic.is_some();
    if panicked && !progress.counted.get() {
        // A writer that panics: the line is lost (noted before the writer is let go: a line
        // waiting for it must see where things stand).
        let err = io::Error::other("the writer panicked");
        counters.dropped(Loss::Write(&err), report);
    }
    progress.counted.set(true);
    let taken = progress.taken.get();
    // Before the writer is let go, so that a line waiting for it sees where things stand, and a
    // writer that panics as it is dropped cannot leave them unnoted.
    if (outcome == Outcome::Cut || panicked) && taken > front {
        counters.line_cut(route.owned());
    } else if front == 1 && (outcome == Outcome::Written || taken == 1) {
        // The newline in front ended the cut owed on this line's own route, if one was.
        owed.retain(|(r, _)| route.is(r));
        counters.ended(&owed);
    }
    if let Some(panic) = panic {
        // The writer is let go first, on its own: one that panics again as it is dropped
        // must not abort the program by panicking while this panic unwinds.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(w)));
        std::panic::resume_unwind(panic)
    }
    drop(w);
}

/// Ends the lines left cut; gives back the cuts that could not be ended.
#[cold]
#[inline(never)]
fn mend<W: Write>(
    counters: &Counters,
    give_up: &AtomicBool,
    make: &mut impl FnMut(RouteRef<'_>) -> W,
) -> Vec<(Route, u64)> {
    let routes: Vec<(Route, u64)> = counters.routes().clone();
    let mut owed = Vec::new();
    for (r, n) in routes {
        let borrowed = r.as_ref();
        // No wait for a writer that is not ready: the line goes with a newline in front
        // instead, and the next line tries again (a broken output must not slow a healthy
        // one down).
        let mended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut w = make(borrowed);
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // With the writer held: another line may have ended this cut while this one
                // waited for it (lines waiting on one locked writer all find the cut), and
                // may have been cut there itself.
                let Some(now) = counters.pending(&r) else {
                    return true;
                };
                let done = write_whole(&mut w, b"\n", Duration::ZERO, give_up).is_ok();
                if done {
                    // Before the writer is let go: the next line to hold it sees the cut
                    // ended.
                    counters.ended(std::slice::from_ref(&(r.clone(), now)));
                }
                done
            }));
            // Let go on its own: a writer that panics again as it is dropped must not abort.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(w)));
            done.unwrap_or(false)
        }));
        // A writer that panics is still owed the newline (it may not have taken it).
        if !mended.unwrap_or(false) {
            owed.push((r, n));
        }
    }
    owed
}

/// One writer lent anew for each use: the writer of an output with one writer, along every
/// route (each use ends before the next begins).
#[cfg(test)]
pub(crate) struct Lent<'a, T: Write>(pub(crate) std::cell::RefMut<'a, T>);

#[cfg(test)]
impl<T: Write> Write for Lent<'_, T> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// How far a line has got: how many bytes its writer took, and whether it was counted (written
/// or dropped). Read after a panic, to count the line once and to tell whether it was begun.
#[derive(Default)]
pub(crate) struct Progress {
    /// How many bytes the writer took.
    pub(crate) taken: std::cell::Cell<usize>,
    pub(crate) counted: std::cell::Cell<bool>,
}

/// Writes `line` whole to `w`, counting it as written or dropped. A line left cut sets the
/// broken-line flag; the caller notes its route.
pub(crate) fn write_line(
    w: &mut impl Write,
    line: &[u8],
    route: RouteRef<'_>,
    counters: &Counters,
    report: bool,
    give_up: &AtomicBool,
) -> Outcome {
    // A writer that kept a line waiting for its first byte the whole time is not waited for
    // again until a line gets through to it. A line it has started taking is always given the
    // time to finish (unless a shutdown gives up): a slow reader gets whole lines.
    let stuck = counters.is_stuck(route);
    let first_byte = if stuck {
        Duration::ZERO
    } else {
        WOULD_BLOCK_WAIT
    };
    match write_whole(w, line, first_byte, give_up) {
        Ok(()) => {
            if stuck {
                counters.set_stuck(route, false);
            }
            counters.written();
            Outcome::Written
        }
        Err((err, started)) => {
            if !started
                && matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                )
            {
                counters.set_stuck(route, true);
            }
            counters.dropped(Loss::Write(&err), report);
            if started {
                counters.broken_line.store(true, Ordering::Relaxed);
                Outcome::Cut
            } else {
                Outcome::Dropped
            }
        }
    }
}

/// [`write_routed`] through one writer (an output that does not route).
#[cfg(test)]
pub(crate) fn write_line_to(
    w: &mut impl Write,
    line: &[u8],
    counters: &Counters,
    report: bool,
    give_up: &AtomicBool,
) {
    let progress = Progress::default();
    let w = std::cell::RefCell::new(w);
    write_routed(
        line,
        RouteRef::Plain,
        counters,
        report,
        give_up,
        &progress,
        |_| Lent(w.borrow_mut()),
    );
}

/// Writes all of `line`. Before its first byte is taken, `WouldBlock` is waited out for up to
/// `first_byte` and other errors drop the line whole; once part of it is written, every error
/// is retried for up to [`FINISH_LINE_WAIT`], so that a line is never left cut by a passing
/// failure. On error, also says whether part of the line was written.
fn write_whole(
    w: &mut impl Write,
    line: &[u8],
    first_byte: Duration,
    give_up: &AtomicBool,
) -> Result<(), (io::Error, bool)> {
    let mut left = line;
    let mut failing_since: Option<Instant> = None;
    // `Interrupted` answers in a row: retried at once a few times (a signal), then handled as
    // a writer that is not ready (the budgets of `WouldBlock` before the line's first byte, of
    // any error after it), so that one answering nothing else never holds a line, or the
    // newline owed to a cut one, longer than another failing writer would.
    let mut interrupted = 0u32;
    while !left.is_empty() {
        let started = left.len() < line.len();
        let err = match w.write(left) {
            Ok(0) => io::Error::new(io::ErrorKind::WriteZero, "the writer took no bytes"),
            Ok(n) => {
                left = &left[n.min(left.len())..];
                failing_since = None;
                interrupted = 0;
                continue;
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {
                interrupted += 1;
                if interrupted <= INTERRUPTED_RETRIES && !give_up.load(Ordering::SeqCst) {
                    continue;
                }
                err
            }
            Err(err) => err,
        };
        let limit = match (started, err.kind()) {
            (true, _) => FINISH_LINE_WAIT,
            (false, io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => first_byte,
            (false, _) => return Err((err, false)),
        };
        let since = *failing_since.get_or_insert_with(Instant::now);
        // A shutdown that ran out of time gives up on the line at once.
        if since.elapsed() >= limit || give_up.load(Ordering::SeqCst) {
            return Err((err, started));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// A newline written for one cut never ends a later cut on the same route, made meanwhile
    /// (on another thread): only the cut it was written for is forgotten.
    #[test]
    fn an_ended_cut_is_the_one_the_newline_was_written_for() {
        let c = Counters::default();
        c.line_cut(Route::Plain);
        let seen = c.routes().clone();
        c.line_cut(Route::Plain); // cut again, after the newline was written for the first
        c.ended(&seen);
        assert!(c.line_is_broken());
        assert_eq!(c.routes().len(), 1);
        let seen = c.routes().clone();
        c.ended(&seen);
        assert!(!c.line_is_broken());
        assert!(c.routes().is_empty());
    }

    /// After a diagnostic, the next waits [`REPORT_EVERY`]: claimed once, then refused until
    /// then.
    #[test]
    fn a_diagnostic_waits_ten_seconds_after_the_last() {
        let c = Counters::default();
        assert!(c.claim_report(), "the first is written");
        assert!(!c.claim_report(), "the next, at once, is not");
        let until = c.quiet_until.load(Ordering::Relaxed);
        let now = epoch().elapsed().as_millis() as u64;
        assert!(
            until >= now + REPORT_EVERY.as_millis() as u64 - 1_000,
            "quiet for {} ms",
            until.saturating_sub(now)
        );
        // Once the time is past, the next is written.
        c.quiet_until.store(now, Ordering::Relaxed);
        assert!(c.claim_report());
    }

    /// The tests that start threads to count, one at a time: each needs the counters of its own
    /// that the other's threads would hold.
    static THREAD_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Every count arrives, from threads with a counter of their own and from the threads past
    /// them that share one, counting at the same time.
    #[test]
    fn the_sharded_count_is_exact_across_more_threads_than_own_counters() {
        let _alone = THREAD_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let c = std::sync::Arc::new(Sharded::default());
        // All alive at once: more threads than counters of their own.
        let all = std::sync::Arc::new(std::sync::Barrier::new(OWNED + 16));
        let threads: Vec<_> = (0..OWNED + 16)
            .map(|_| {
                let (c, all) = (c.clone(), all.clone());
                std::thread::spawn(move || {
                    INDEX.with(|_| ());
                    all.wait();
                    for _ in 0..1000 {
                        c.add(1);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(c.sum(), (OWNED as u64 + 16) * 1000);
        assert!(
            c.shared.0.load(Ordering::Relaxed) > 0,
            "some threads shared"
        );
    }

    /// A thread started after many others have come and gone still gets a counter of its own:
    /// ended threads give theirs back. Counts made on the old threads stay in the sum.
    #[test]
    fn threads_that_end_give_their_counter_to_later_threads() {
        let _alone = THREAD_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let c = std::sync::Arc::new(Sharded::default());
        for _ in 0..OWNED * 4 {
            let c = c.clone();
            std::thread::spawn(move || c.add(1)).join().unwrap();
        }
        let late = {
            let c = c.clone();
            std::thread::spawn(move || {
                c.add(1);
                INDEX.with(|i| i.0)
            })
            .join()
            .unwrap()
        };
        assert!(
            late < OWNED,
            "a late thread shares the atomic counter (index {late})"
        );
        assert_eq!(c.sum(), OWNED as u64 * 4 + 1);
    }

    use super::*;

    /// Takes at most `chunk` bytes per call, after `blocks` calls answering `WouldBlock`.
    struct Flaky {
        out: Vec<u8>,
        chunk: usize,
        blocks: usize,
        fail_after: Option<usize>,
        /// How many times to fail once `fail_after` bytes are written.
        fail_times: usize,
    }

    impl Write for Flaky {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            if self.blocks > 0 {
                self.blocks -= 1;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if let Some(limit) = self.fail_after {
                if self.out.len() >= limit && self.fail_times > 0 {
                    self.fail_times -= 1;
                    return Err(io::Error::from_raw_os_error(28)); // ENOSPC
                }
            }
            let n = data.len().min(self.chunk);
            self.out.extend_from_slice(&data[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn flaky(chunk: usize, blocks: usize, fail_after: Option<usize>) -> Flaky {
        Flaky {
            out: Vec::new(),
            chunk,
            blocks,
            fail_after,
            fail_times: usize::MAX,
        }
    }

    #[test]
    fn short_writes_are_completed() {
        let c = Counters::default();
        let mut w = flaky(3, 0, None);
        write_line_to(&mut w, b"{\"a\":1}\n", &c, false, &NEVER_GIVE_UP);
        write_line_to(&mut w, b"{\"b\":2}\n", &c, false, &NEVER_GIVE_UP);
        assert_eq!(w.out, b"{\"a\":1}\n{\"b\":2}\n");
        assert_eq!((c.written.sum(), c.dropped.load(Ordering::Relaxed)), (2, 0));
    }

    #[test]
    fn would_block_is_retried_then_the_line_is_dropped_whole() {
        let c = Counters::default();
        let mut w = flaky(100, 5, None);
        write_line_to(&mut w, b"{}\n", &c, false, &NEVER_GIVE_UP);
        assert_eq!(w.out, b"{}\n");
        let mut stuck = flaky(100, usize::MAX, None);
        let start = Instant::now();
        write_line_to(&mut stuck, b"{}\n", &c, false, &NEVER_GIVE_UP);
        let first = start.elapsed();
        assert!(
            first >= WOULD_BLOCK_WAIT && first < WOULD_BLOCK_WAIT * 20,
            "{first:?}"
        );
        // Still stuck: the next lines are dropped without waiting again.
        let start = Instant::now();
        for _ in 0..100 {
            write_line_to(&mut stuck, b"{}\n", &c, false, &NEVER_GIVE_UP);
        }
        assert!(start.elapsed() < WOULD_BLOCK_WAIT, "{:?}", start.elapsed());
        assert!(stuck.out.is_empty());
        assert_eq!(c.written.sum(), 1);
        assert_eq!(c.dropped.load(Ordering::Relaxed), 101);
        assert_eq!(c.errors.load(Ordering::Relaxed), 101);
        // A line gets through: lines wait again.
        stuck.blocks = 0;
        write_line_to(&mut stuck, b"{}\n", &c, false, &NEVER_GIVE_UP);
        assert_eq!(c.stuck.load(Ordering::Relaxed), 0);
        stuck.blocks = 3;
        write_line_to(&mut stuck, b"{}\n", &c, false, &NEVER_GIVE_UP);
        assert_eq!(c.written.sum(), 3);
    }

    #[test]
    fn a_line_cut_by_an_error_is_ended_before_the_next_one() {
        let c = Counters::default();
        let mut w = flaky(4, 0, Some(4));
        let start = Instant::now();
        write_line_to(&mut w, b"{\"a\":1}\n", &c, false, &NEVER_GIVE_UP);
        // The rest of the line was retried for the whole wait before giving up.
        assert!(start.elapsed() >= FINISH_LINE_WAIT);
        assert_eq!(w.out, b"{\"a\"");
        w.fail_after = None;
        write_line_to(&mut w, b"{\"b\":2}\n", &c, false, &NEVER_GIVE_UP);
        assert_eq!(w.out, b"{\"a\"\n{\"b\":2}\n");
        assert_eq!((c.written.sum(), c.dropped.load(Ordering::Relaxed)), (1, 1));
    }

    #[test]
    fn a_passing_error_inside_a_line_is_retried_until_the_line_is_whole() {
        let c = Counters::default();
        let mut w = flaky(4, 0, Some(4));
        w.fail_times = 3;
        write_line_to(&mut w, b"{\"a\":1}\n", &c, false, &NEVER_GIVE_UP);
        assert_eq!(w.out, b"{\"a\":1}\n");
        assert_eq!((c.written.sum(), c.dropped.load(Ordering::Relaxed)), (1, 0));
    }

    #[test]
    fn a_writer_dead_inside_a_line_is_waited_for_once() {
        let c = Counters::default();
        let mut w = flaky(4, 0, Some(4));
        write_line_to(&mut w, b"{\"a\":1}\n", &c, false, &NEVER_GIVE_UP);
        let start = Instant::now();
        for _ in 0..10 {
            write_line_to(&mut w, b"{\"b\":2}\n", &c, false, &NEVER_GIVE_UP);
        }
        assert!(start.elapsed() < FINISH_LINE_WAIT, "{:?}", start.elapsed());
        assert_eq!(w.out, b"{\"a\"");
        assert_eq!(
            (c.written.sum(), c.dropped.load(Ordering::Relaxed)),
            (0, 11)
        );
    }

    #[test]
    fn one_diagnostic_per_period() {
        let c = Counters::default();
        assert!(c.claim_report());
        assert!(!c.claim_report());
        assert!(!c.claim_report());
    }

    #[test]
    fn sharded_counts_from_many_threads_add_up() {
        let c = Arc::new(Counters::default());
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| c.written()))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(c.written.sum(), 12_000);
    }
}

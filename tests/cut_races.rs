//! Lines cut by a failing or panicking writer while other threads wait for the same writer,
//! with the interleavings forced by channels: no line glued to a cut one, no empty line, every
//! line counted once.
#![cfg(feature = "install")]

mod common;

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use common::{Step, Steps, in_child, output_layer};
use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

fn me() -> Option<String> {
    std::thread::current().name().map(str::to_owned)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// A: a writer that panics in `write` after taking part of the line. The writer (a lock) is let
// go while the panic unwinds, before the layer notes the cut: a line waiting for the lock is
// written glued to the cut one.

struct PanicState {
    out: Vec<u8>,
    t1_calls: usize,
}

struct PanicGate {
    state: Mutex<PanicState>,
    took: Mutex<Sender<()>>,
    t2_done: Mutex<Sender<()>>,
    t2_done_rx: Mutex<Receiver<()>>,
}

struct PanicGuard<'a> {
    g: Option<MutexGuard<'a, PanicState>>,
    gate: &'a PanicGate,
}

impl Write for PanicGuard<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let s = self.g.as_mut().unwrap();
        if me().as_deref() == Some("T1") {
            s.t1_calls += 1;
            if s.t1_calls == 1 {
                s.out.extend_from_slice(&buf[..5]);
                lock(&self.gate.took).send(()).unwrap();
                return Ok(5);
            }
            panic!("T1's writer panics mid-line, on purpose");
        }
        s.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        drop(self.g.take()); // the lock is let go
        match me().as_deref() {
            // T1 unwinding: it is preempted here until T2 has written (T2 got the lock).
            Some("T1") if std::thread::panicking() => {
                let _ = lock(&self.gate.t2_done_rx).recv_timeout(Duration::from_secs(5));
            }
            Some("T2") => {
                let _ = lock(&self.gate.t2_done).send(());
            }
            _ => {}
        }
    }
}

impl<'a> MakeWriter<'a> for PanicGate {
    type Writer = PanicGuard<'a>;
    fn make_writer(&'a self) -> PanicGuard<'a> {
        PanicGuard {
            g: Some(lock(&self.state)),
            gate: self,
        }
    }
}

#[test]
fn a_line_waiting_on_a_lock_is_not_glued_to_a_line_cut_by_a_panicking_writer() {
    let (took_tx, took_rx) = channel();
    let (done_tx, done_rx) = channel();
    let gate = Arc::new(PanicGate {
        state: Mutex::new(PanicState {
            out: Vec::new(),
            t1_calls: 0,
        }),
        took: Mutex::new(took_tx),
        t2_done: Mutex::new(done_tx),
        t2_done_rx: Mutex::new(done_rx),
    });
    struct ArcGate(Arc<PanicGate>);
    impl<'a> MakeWriter<'a> for ArcGate {
        type Writer = PanicGuard<'a>;
        fn make_writer(&'a self) -> PanicGuard<'a> {
            self.0.make_writer()
        }
    }
    let layer = traceline::layer()
        .with_writer(ArcGate(gate.clone()))
        .log_internal_errors(false);
    let stats = layer.stats();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let d = dispatch.clone();
    let t1 = std::thread::Builder::new()
        .name("T1".into())
        .spawn(move || tracing::dispatcher::with_default(&d, || tracing::info!("first")))
        .unwrap();
    took_rx.recv().unwrap();
    let d = dispatch.clone();
    let t2 = std::thread::Builder::new()
        .name("T2".into())
        .spawn(move || tracing::dispatcher::with_default(&d, || tracing::info!("second")))
        .unwrap();
    t1.join().unwrap();
    t2.join().unwrap();
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("third"));
    let text = String::from_utf8(lock(&gate.state).out.clone()).unwrap();
    assert_eq!((stats.lines_written(), stats.lines_dropped()), (2, 1));
    assert_eq!(
        text.as_bytes()[5],
        b'\n',
        "a line glued to the cut one: {text:?}"
    );
    for l in text[6..].split_inclusive('\n') {
        serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|_| panic!("not a whole line: {l:?} in {text:?}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Writers driven by a mode, for B and C.

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Ok,
    Fail,
    /// Takes this many bytes of the next write, then panics on the write after (and is Ok).
    Cut(usize),
}

struct Side {
    out: Vec<u8>,
    mode: Mode,
    took: bool,
}

impl Side {
    fn new() -> Arc<Mutex<Side>> {
        Arc::new(Mutex::new(Side {
            out: Vec::new(),
            mode: Mode::Ok,
            took: false,
        }))
    }
}

fn set(s: &Arc<Mutex<Side>>, m: Mode) {
    let mut s = lock(s);
    s.mode = m;
    s.took = false;
}

fn text(s: &Arc<Mutex<Side>>) -> String {
    String::from_utf8(lock(s).out.clone()).unwrap()
}

struct SideW(Arc<Mutex<Side>>);

impl Write for SideW {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = lock(&self.0);
        match s.mode {
            Mode::Ok => {
                s.out.extend_from_slice(buf);
                Ok(buf.len())
            }
            Mode::Fail => Err(io::Error::other("broken")),
            Mode::Cut(n) => {
                if !s.took {
                    s.took = true;
                    let n = n.min(buf.len());
                    s.out.extend_from_slice(&buf[..n]);
                    Ok(n)
                } else {
                    s.mode = Mode::Ok;
                    s.took = false;
                    drop(s);
                    panic!("the writer panics mid-line, on purpose");
                }
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// B: two routes. WARN's cut cannot be ended; a line on INFO (thread B) waits for its writer;
// meanwhile another INFO line is cut. B's line goes with a newline in front (which ends the
// INFO cut), but the INFO cut is not forgotten: the next line's mend writes a second newline,
// an empty line.

struct Router {
    warn: Arc<Mutex<Side>>,
    info: Arc<Mutex<Side>>,
    reached: Mutex<Sender<()>>,
    go: Mutex<Receiver<()>>,
}

impl<'a> MakeWriter<'a> for Router {
    type Writer = SideW;
    fn make_writer(&'a self) -> SideW {
        SideW(self.info.clone())
    }
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> SideW {
        if *meta.level() == Level::WARN {
            return SideW(self.warn.clone());
        }
        if me().as_deref() == Some("B") {
            lock(&self.reached).send(()).unwrap();
            lock(&self.go).recv().unwrap();
        }
        SideW(self.info.clone())
    }
}

#[test]
fn a_cut_on_the_lines_own_route_ended_by_its_newline_is_forgotten() {
    let (warn, info) = (Side::new(), Side::new());
    let (reached_tx, reached_rx) = channel();
    let (go_tx, go_rx) = channel();
    let layer = traceline::layer()
        .with_writer(Router {
            warn: warn.clone(),
            info: info.clone(),
            reached: Mutex::new(reached_tx),
            go: Mutex::new(go_rx),
        })
        .log_internal_errors(false);
    let stats = layer.stats();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    // A cut on WARN, whose writer then stays broken.
    set(&warn, Mode::Cut(5));
    tracing::dispatcher::with_default(&dispatch, || tracing::warn!("a"));
    set(&warn, Mode::Fail);
    // B: cannot end the WARN cut, then waits for its INFO writer.
    let d = dispatch.clone();
    let b = std::thread::Builder::new()
        .name("B".into())
        .spawn(move || tracing::dispatcher::with_default(&d, || tracing::info!("b")))
        .unwrap();
    reached_rx.recv().unwrap();
    // Meanwhile an INFO line is cut.
    set(&info, Mode::Cut(5));
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("c"));
    set(&info, Mode::Ok);
    set(&warn, Mode::Ok);
    go_tx.send(()).unwrap();
    b.join().unwrap();
    // Both outputs healthy again.
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("d"));
    assert_eq!((stats.lines_written(), stats.lines_dropped()), (2, 2));
    let text = text(&info);
    // "\n" (WARN could not be ended) and the 5 bytes of the cut line "c" (the newline included).
    let after_cut = &text[5..];
    assert!(after_cut.starts_with('\n'), "glued: {text:?}");
    let lines: Vec<&str> = after_cut[1..].split_inclusive('\n').collect();
    assert_eq!(
        lines.len(),
        2,
        "lines b and d after the cut line, nothing else: {text:?}"
    );
    for l in lines {
        serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|_| panic!("not a whole line: {l:?} in {text:?}"));
    }
}

// ---------------------------------------------------------------------------------------------
// C: a line that finds a cut once it holds its writer lets it go and mends, at most 3 times;
// a 4th cut made while it waits again for its writer is not looked for: the line is glued.

struct Pauser {
    side: Arc<Mutex<Side>>,
    b_makes: AtomicUsize,
    reached: Mutex<Sender<()>>,
    go: Mutex<Receiver<()>>,
}

impl<'a> MakeWriter<'a> for Pauser {
    type Writer = SideW;
    fn make_writer(&'a self) -> SideW {
        if me().as_deref() == Some("B") {
            // The line's own writer is made on B's calls 1, 3, 5, 7 (mend's on 2, 4, 6).
            let n = self.b_makes.fetch_add(1, Ordering::SeqCst) + 1;
            if n % 2 == 1 {
                lock(&self.reached).send(()).unwrap();
                lock(&self.go).recv().unwrap();
            }
        }
        SideW(self.side.clone())
    }
}

#[test]
fn a_line_is_not_glued_to_a_cut_made_while_it_waited_a_fourth_time() {
    let side = Side::new();
    let (reached_tx, reached_rx) = channel();
    let (go_tx, go_rx) = channel();
    let layer = traceline::layer()
        .with_writer(Pauser {
            side: side.clone(),
            b_makes: AtomicUsize::new(0),
            reached: Mutex::new(reached_tx),
            go: Mutex::new(go_rx),
        })
        .log_internal_errors(false);
    let stats = layer.stats();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let d = dispatch.clone();
    let b = std::thread::Builder::new()
        .name("B".into())
        .spawn(move || tracing::dispatcher::with_default(&d, || tracing::info!("b")))
        .unwrap();
    for _ in 0..4 {
        // B waits for its writer: another line is cut meanwhile.
        reached_rx.recv().unwrap();
        set(&side, Mode::Cut(5));
        tracing::dispatcher::with_default(&dispatch, || tracing::info!("cut"));
        go_tx.send(()).unwrap();
    }
    b.join().unwrap();
    assert_eq!((stats.lines_written(), stats.lines_dropped()), (1, 4));
    let text = text(&side);
    let b_line = text
        .split_inclusive('\n')
        .find(|l| l.contains("\"b\""))
        .expect("B's line");
    assert!(
        serde_json::from_str::<serde_json::Value>(b_line).is_ok(),
        "B's line glued to a cut one: {b_line:?}\nall: {text:?}"
    );
}

// ---- Writers that take only the newline in front, panic in flush, or panic twice ----------------

/// A line cut (a panic after 10 bytes); the owed newline fails once, so the next line goes
/// with a newline in front; the writer takes only that newline and then panics. The newline
/// ended the cut: the line after must not get another newline in front (an empty line).
/// Through the layer's own writer and through the non-blocking worker.
#[test]
fn a_line_whose_writer_took_only_its_leading_newline_leaves_no_empty_line() {
    static STEPS: &[Step] = &[
        Step::Take(10), // line 1: 10 bytes
        Step::Panic,    // line 1: cut
        Step::Fail,     // line 2: mend's newline fails
        Step::Take(1),  // line 2: the "\n" in front is taken
        Step::Panic,    // line 2: lost
    ];
    let mut failures = Vec::new();
    for non_blocking in [false, true] {
        let w = Steps::new(STEPS, Step::Whole);
        let w2 = w.clone();
        let (layer, guard) = output_layer(move || w2.clone(), non_blocking);
        let stats = layer.stats();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            tracing::info!("first");
            tracing::info!("second");
            tracing::info!("third");
        });
        drop(guard);
        let text = w.out.text();
        let counts = (stats.lines_written(), stats.lines_dropped());
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        if counts != (1, 2) || lines.contains(&"\n") || lines.len() != 2 {
            failures.push(format!(
                "non-blocking {non_blocking}: counts {counts:?}, output {text:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "expected the cut line, then the third line, no empty line:\n{}",
        failures.join("\n")
    );
}

/// Takes every line; panics when flushed.
struct PanicsOnFlush;

impl Write for PanicsOnFlush {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        panic!("this output panics when flushed, on purpose");
    }
}

/// A handle on one shared `BufWriter` over a shared buffer.
#[derive(Clone)]
struct Buffered(Arc<Mutex<io::BufWriter<Sink>>>);

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for Buffered {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().write(data)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().unwrap().flush()
    }
}

/// A blocking custom writer routing the "audit" target to a buffered output and every other
/// line to an output that panics when flushed: dropping the guard flushes the healthy buffered output all the
/// same (the subscriber itself, global in an application, is never dropped). The line is
/// counted as written, so it must reach the sink.
#[test]
fn a_writer_panicking_in_flush_does_not_keep_a_healthy_one_from_being_flushed() {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let mut failures = Vec::new();
    for non_blocking in [false, true] {
        let sink = Sink::default();
        let buffered = Buffered(Arc::new(Mutex::new(io::BufWriter::new(sink.clone()))));
        let b = buffered.clone();
        let make = (|| PanicsOnFlush)
            .with_filter(|m| m.target() != "audit")
            .or_else(move || b.clone());
        let writer = traceline::install::Writer::custom(make);
        let writer = if non_blocking {
            writer.non_blocking()
        } else {
            writer
        };
        let (layer, guard) = traceline::layer()
            .log_internal_errors(false)
            .with_output(writer)
            .unwrap();
        let stats = layer.stats();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        tracing::dispatcher::with_default(
            &dispatch,
            || tracing::info!(target: "audit", "kept in the buffer"),
        );
        drop(guard); // flushes the custom writer (the subscriber, `dispatch`, lives on)
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        if stats.lines_written() != 1 || !text.contains("kept in the buffer") {
            failures.push(format!(
                "non-blocking {non_blocking}: written {}, the healthy output holds {text:?}",
                stats.lines_written()
            ));
        }
        drop(dispatch);
    }
    assert!(
        failures.is_empty(),
        "a line counted as written never reached the healthy output:\n{}",
        failures.join("\n")
    );
}

/// A writer that panics in `write` and panics again as it is dropped: the program goes on
/// (run in a child process, since a panic while unwinding aborts).
#[test]
fn a_writer_panicking_in_write_and_in_drop_does_not_abort_the_program() {
    if std::env::var_os("TRACELINE_CUT_RACES_CHILD").is_some() {
        struct Twice;
        impl Write for Twice {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                panic!("write panics, on purpose");
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        impl Drop for Twice {
            fn drop(&mut self) {
                panic!("drop panics, on purpose");
            }
        }
        let layer = traceline::layer()
            .with_writer(|| Twice)
            .log_internal_errors(false);
        let stats = layer.stats();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            tracing::info!("lost");
        });
        println!("STATS {} {}", stats.lines_written(), stats.lines_dropped());
        return;
    }
    in_child(
        "a_writer_panicking_in_write_and_in_drop_does_not_abort_the_program",
        "TRACELINE_CUT_RACES_CHILD",
        "STATS 0 1",
    );
}

// ---- A writer that panics in flush and again as it is dropped -------------------------------------

/// Its drop flushes, as a buffering writer's does.
struct FlushTwice {
    flushed: bool,
}

impl Write for FlushTwice {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.flushed = true;
        panic!("flush panics, on purpose");
    }
}

impl Drop for FlushTwice {
    fn drop(&mut self) {
        if self.flushed {
            panic!("drop panics after a flush, on purpose");
        }
    }
}

fn flush_twice_child(non_blocking: bool) {
    let writer = traceline::install::Writer::custom(|| FlushTwice { flushed: false });
    let writer = if non_blocking {
        writer.non_blocking()
    } else {
        writer
    };
    let (layer, guard) = traceline::layer()
        .log_internal_errors(false)
        .with_output(writer)
        .unwrap();
    let stats = layer.stats();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("one"));
    drop(guard); // flushes the custom writer
    println!("STATS {} {}", stats.lines_written(), stats.lines_dropped());
}

fn run_flush_twice(name: &str, non_blocking: bool) {
    if std::env::var_os("TRACELINE_CUT_RACES_FLUSH_CHILD").is_some() {
        flush_twice_child(non_blocking);
        return;
    }
    in_child(name, "TRACELINE_CUT_RACES_FLUSH_CHILD", "STATS 1 0");
}

#[test]
fn blocking_custom_writer_panicking_in_flush_and_drop_does_not_abort() {
    run_flush_twice(
        "blocking_custom_writer_panicking_in_flush_and_drop_does_not_abort",
        false,
    );
}

#[test]
fn non_blocking_custom_writer_panicking_in_flush_and_drop_does_not_abort() {
    run_flush_twice(
        "non_blocking_custom_writer_panicking_in_flush_and_drop_does_not_abort",
        true,
    );
}

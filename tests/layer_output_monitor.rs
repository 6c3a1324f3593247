//! The dropped-lines WARN of a `wait_when_full` output is logged through the global default,
//! here into that output's own full queue: it must not hold the guard's drop past its 5 s
//! bound (this binary's only test installs the global default).
#![cfg(feature = "install")]

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use traceline::install::Writer;
use tracing_subscriber::prelude::*;

/// Fails its first write, then hangs until released.
#[derive(Clone, Default)]
struct FailThenHang {
    calls: Arc<AtomicUsize>,
    released: Arc<(Mutex<bool>, Condvar)>,
}

impl Write for FailThenHang {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(std::io::Error::other("disk full"));
        }
        let (lock, cv) = &*self.released;
        let mut r = lock.lock().unwrap();
        while !*r {
            r = cv.wait(r).unwrap();
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for FailThenHang {
    type Writer = FailThenHang;
    fn make_writer(&'a self) -> FailThenHang {
        self.clone()
    }
}

#[test]
fn dropping_the_guard_takes_at_most_its_timeout() {
    let out = FailThenHang::default();
    let (layer, guard) = traceline::layer()
        .log_internal_errors(false)
        .with_output(Writer::custom(out.clone()).queue_limit(1).wait_when_full())
        .unwrap();
    tracing_subscriber::registry().with(layer).init();
    tracing::info!("fails"); // dropped, counted
    std::thread::sleep(Duration::from_millis(50));
    tracing::info!("hangs in the output");
    std::thread::sleep(Duration::from_millis(50));
    tracing::info!("fills the queue");
    // Let the monitor see the dropped line and log its WARN.
    std::thread::sleep(Duration::from_millis(1500));

    // Release the output after 20 s, so that the test ends.
    let released = out.released.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(20));
        *released.0.lock().unwrap() = true;
        released.1.notify_all();
    });
    let start = Instant::now();
    drop(guard);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(7),
        "the guard's drop took {took:?} (5 s timeout + 1 s grace)"
    );
}

//! A tokio runtime for the gRPC exporter when the program has none that can drive it.
//!
//! tonic's channel runs its connection as a task on the runtime it was created in. A
//! multi-thread runtime keeps driving it while the thread that drops the `Guard` blocks; a
//! current-thread runtime would not (that thread is the only one driving it), and a plain
//! `main` has no runtime at all. In those cases the exporter gets a runtime of its own, built,
//! run and dropped on a thread of its own, so no runtime is ever created or dropped inside an
//! async context.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};

pub(crate) struct ExporterRuntime {
    handle: Handle,
    own: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl ExporterRuntime {
    /// The current runtime if it is multi-thread, else one of our own.
    pub(crate) fn current_or_own() -> std::io::Result<Self> {
        if let Ok(handle) = Handle::try_current() {
            if handle.runtime_flavor() == RuntimeFlavor::MultiThread {
                return Ok(ExporterRuntime { handle, own: None });
            }
        }
        let (handle_tx, handle_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("traceline-otlp".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("traceline-otlp-worker")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(err) => {
                        let _ = handle_tx.send(Err(err));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                let _ = stop_rx.recv();
                rt.shutdown_timeout(Duration::from_secs(1));
            })?;
        let handle = handle_rx
            .recv()
            .map_err(|_| std::io::Error::other("the exporter runtime thread exited"))??;
        Ok(ExporterRuntime {
            handle,
            own: Some((stop_tx, thread)),
        })
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Stops our own runtime (the caller's is left alone).
    pub(crate) fn stop(self, _timeout: Duration) {
        if let Some((stop, thread)) = self.own {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

//! `init()` exporting to rotel, a real OpenTelemetry collector (from PyPI: `rotel`), over
//! gRPC and HTTP/protobuf: the spans it prints carry exactly the ids the JSON lines carried.
//! `.ci/run` installs rotel; without it this test fails in CI and is skipped elsewhere.
#![cfg(feature = "install")]

mod common;
mod install_support;

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use install_support as support;
use support::str_of;

const ENTRY: &str = "child_entry";

/// Runs the scenario named by `TRACELINE_CHILD` when this binary is a child process.
#[test]
fn child_entry() {
    let Some(scenario) = support::scenario() else {
        return;
    };
    let _guard = traceline::init().expect("init from the environment");
    assert_eq!(scenario, "nested");
    for i in 0..10 {
        let root = tracing::info_span!("request", i);
        let _r = root.enter();
        tracing::info!(i, "request started");
        let db = tracing::info_span!("db.query");
        let _d = db.enter();
        tracing::info!("querying");
    }
}

fn rotel_agent() -> Option<String> {
    if let Ok(path) = std::env::var("ROTEL_AGENT") {
        return Some(path);
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => Some(String::from_utf8(o.stdout).unwrap().trim().to_owned()),
        _ => None,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// rotel on loopback, printing every span it receives; killed when dropped.
struct Rotel {
    child: Child,
    output: Arc<Mutex<String>>,
    grpc: u16,
    http: u16,
}

impl Rotel {
    fn start() -> Rotel {
        let (grpc, http) = (free_port(), free_port());
        let mut child = Command::new(rotel_agent().expect("checked at the start of the test"))
            .args([
                "start",
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{grpc}"),
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{http}"),
                "--exporter",
                "blackhole",
                "--debug-log",
                "traces",
                "--debug-log-verbosity",
                "detailed",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rotel-agent");
        let output = Arc::new(Mutex::new(String::new()));
        for mut pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    output
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let rotel = Rotel {
            child,
            output,
            grpc,
            http,
        };
        rotel.wait_for(|out| out.contains("Starting Rotel"), "rotel to start");
        rotel
    }

    fn wait_for(&self, done: impl Fn(&str) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if done(&self.output.lock().unwrap()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out waiting for {what}; rotel printed:\n{}",
            self.output.lock().unwrap()
        );
    }
}

/// (trace id, span id) of every span rotel printed.
fn received(out: &str) -> BTreeSet<(String, String)> {
    let mut spans = BTreeSet::new();
    let mut trace = None;
    for line in out.lines() {
        let line = line.trim();
        if let Some(t) = line.strip_prefix("Trace ID") {
            trace = Some(t.trim_start_matches([' ', ':']).trim().to_owned());
        } else if let Some(id) = line.strip_prefix("ID ") {
            let id = id.trim_start_matches([' ', ':']).trim().to_owned();
            if let Some(t) = trace.take() {
                spans.insert((t, id));
            }
        }
    }
    spans
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn rotel_receives_the_ids_the_lines_carry_over_grpc_and_http() {
    if rotel_agent().is_none() {
        return common::missing_tool(
            "rotel",
            "run `pip install rotel==0.0.1a15` (or set ROTEL_AGENT to the rotel-agent binary)",
        );
    }
    let rotel = Rotel::start();
    for (protocol, port) in [("grpc", rotel.grpc), ("http/protobuf", rotel.http)] {
        let endpoint = format!("http://127.0.0.1:{port}");
        let out = support::run(
            ENTRY,
            "nested",
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_SERVICE_NAME", "rotel-test"),
            ],
        );
        let lines: Vec<_> = support::json_lines(&out.stdout)
            .into_iter()
            .filter(|l| str_of(l, "target") == Some("install_rotel"))
            .collect();
        assert_eq!(lines.len(), 20, "{protocol}");
        let logged: BTreeSet<(String, String)> = lines
            .iter()
            .map(|l| {
                (
                    str_of(l, "traceId").unwrap().to_owned(),
                    str_of(l, "spanId").unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(logged.len(), 20, "every line its own span");
        rotel.wait_for(
            |out| logged.is_subset(&received(out)),
            &format!("the {protocol} spans"),
        );
    }
}

//! Shared by the `install_*` tests: running a scenario in a child process (init() installs a
//! global subscriber, so each install gets a process of its own), reading its JSON lines, and a
//! real OTLP/HTTP receiver that decodes the protobuf requests it is sent.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// Every variable the install reads; cleared in children so the parent's environment never
/// leaks into a scenario.
pub const VARS: &[&str] = &[
    "RUST_LOG",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SDK_DISABLED",
    "OTEL_PROPAGATORS",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "GOOGLE_CLOUD_PROJECT",
    "TRACELINE_SCHEMA",
];

/// The scenario this process should run, when it is a child.
pub fn scenario() -> Option<String> {
    std::env::var("TRACELINE_CHILD").ok()
}

/// A command running `scenario` in a fresh copy of this test binary, through the test named
/// `entry` (which calls the scenario when `TRACELINE_CHILD` is set).
pub fn child(entry: &str, scenario: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary path"));
    cmd.args([entry, "--exact", "--nocapture", "--test-threads=1", "-q"]);
    for v in VARS {
        cmd.env_remove(v);
    }
    cmd.env("TRACELINE_CHILD", scenario);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// [`run`] on the runtime's blocking threads, for a test whose receiver runs on the runtime
/// meanwhile.
pub async fn run_async(
    entry: &'static str,
    scenario: &'static str,
    env: Vec<(&'static str, String)>,
) -> Output {
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run(entry, scenario, &env)
    })
    .await
    .unwrap()
}

/// Runs `scenario` to the end and returns its output, failing when it failed.
pub fn run(entry: &str, scenario: &str, env: &[(&str, &str)]) -> Output {
    let out = child(entry, scenario, env)
        .output()
        .expect("spawn the child test process");
    assert!(
        out.status.success(),
        "child `{scenario}` failed: {}\nstdout (tail): {}\nstderr: {}",
        out.status,
        tail(&String::from_utf8_lossy(&out.stdout)),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `scenario` and returns its output, or `None` when it had not exited within `limit`
/// (it is killed then: a deadlock).
pub fn run_limited(
    entry: &str,
    scenario: &str,
    env: &[(&str, &str)],
    limit: std::time::Duration,
) -> Option<Output> {
    use std::io::Read;
    let mut cmd = child(entry, scenario, env);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn the child test process");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        stdout.read_to_end(&mut v).unwrap();
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        stderr.read_to_end(&mut v).unwrap();
        v
    });
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    match status {
        Some(status) => Some(Output {
            status,
            stdout,
            stderr,
        }),
        None => {
            eprintln!(
                "child `{scenario}` killed after {limit:?}\nstdout (tail):\n{}\nstderr (tail):\n{}",
                tail(&String::from_utf8_lossy(&stdout)),
                tail(&String::from_utf8_lossy(&stderr))
            );
            None
        }
    }
}

pub fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The JSON lines in `stdout` (the test harness's own lines are skipped). Every line that looks
/// like JSON must parse.
pub fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

pub fn str_of<'a>(line: &'a Value, key: &str) -> Option<&'a str> {
    line.get(key).and_then(Value::as_str)
}

/// A span as an OTLP receiver got it.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    pub resource: HashMap<String, String>,
}

/// A real OTLP/HTTP receiver on loopback: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest` (gzip-compressed or not), answered with an empty
/// `ExportTraceServiceResponse`. It keeps each request's headers.
pub struct HttpReceiver {
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    paths: Arc<Mutex<Vec<String>>>,
    headers: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

impl HttpReceiver {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    /// [`HttpReceiver::start`] on the address `addr`.
    pub async fn start_on(addr: &str) -> Self {
        use http_body_util::{BodyExt, Full};
        use hyper::body::Bytes;
        use hyper::service::service_fn;
        use hyper_util::rt::{TokioExecutor, TokioIo};

        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let headers = Arc::new(Mutex::new(Vec::new()));
        let (s, p, h) = (spans.clone(), paths.clone(), headers.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (s, p, h) = (s.clone(), p.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (s, p, h) = (s.clone(), p.clone(), h.clone());
                        async move {
                            p.lock().unwrap().push(req.uri().path().to_string());
                            let seen: HashMap<String, String> = req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                                .collect();
                            let gzip =
                                seen.get("content-encoding").map(String::as_str) == Some("gzip");
                            let ct = seen.get("content-type").cloned().unwrap_or_default();
                            h.lock().unwrap().push(seen);
                            let mut body = req.into_body().collect().await?.to_bytes().to_vec();
                            if gzip {
                                use std::io::Read as _;
                                let mut plain = Vec::new();
                                flate2::read::GzDecoder::new(&body[..])
                                    .read_to_end(&mut plain)
                                    .expect("a gzip body");
                                body = plain;
                            }
                            let status = if ct == "application/x-protobuf" {
                                s.lock().unwrap().extend(decode_request(&body));
                                200
                            } else {
                                415
                            };
                            Ok::<_, hyper::Error>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        HttpReceiver {
            addr,
            spans,
            paths,
            headers,
        }
    }

    /// The headers of each request received, names in lowercase.
    pub fn headers(&self) -> Vec<HashMap<String, String>> {
        self.headers.lock().unwrap().clone()
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

/// The fake OTLP/gRPC collector on loopback, drained while a child runs: its queue is small and
/// blocks the exporter when full.
pub struct GrpcReceiver {
    endpoint: String,
    received: Arc<Mutex<Vec<fake_opentelemetry_collector::ExportedSpan>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    drain: tokio::task::JoinHandle<()>,
}

impl GrpcReceiver {
    pub async fn start() -> Self {
        let mut server = fake_opentelemetry_collector::FakeCollectorServer::start()
            .await
            .unwrap();
        let endpoint = server.endpoint();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let drain = {
            let (received, stop) = (received.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    let got = server
                        .exported_spans(1, std::time::Duration::from_millis(100))
                        .await;
                    let empty = got.is_empty();
                    received.lock().unwrap().extend(got);
                    if empty && stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                }
            })
        };
        GrpcReceiver {
            endpoint,
            received,
            stop,
            drain,
        }
    }

    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// Stops draining once nothing more arrives; returns every span received.
    pub async fn finish(self) -> Vec<fake_opentelemetry_collector::ExportedSpan> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.drain.await.unwrap();
        std::mem::take(&mut *self.received.lock().unwrap())
    }
}

/// Protobuf wire format: (field number, value) pairs of one message.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn fields(mut buf: &[u8]) -> Vec<(u64, Wire<'_>)> {
    fn varint(buf: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = buf[0];
            *buf = &buf[1..];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
        }
        v
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf);
        let value = match key & 7 {
            0 => Wire::Varint(varint(&mut buf)),
            1 => {
                buf = &buf[8..];
                Wire::Fixed
            }
            2 => {
                let len = varint(&mut buf) as usize;
                let (v, rest) = buf.split_at(len);
                buf = rest;
                Wire::Bytes(v)
            }
            5 => {
                buf = &buf[4..];
                Wire::Fixed
            }
            t => panic!("unexpected protobuf wire type {t}"),
        };
        out.push((key >> 3, value));
    }
    out
}

fn sub(msg: &[u8], field: u64) -> Vec<&[u8]> {
    fields(msg)
        .into_iter()
        .filter_map(|(n, v)| match v {
            Wire::Bytes(b) if n == field => Some(b),
            _ => None,
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn text(b: Option<&&[u8]>) -> String {
    b.map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

/// Decodes `ExportTraceServiceRequest` (opentelemetry-proto's trace_service.proto).
pub fn decode_request(body: &[u8]) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for rs in sub(body, 1) {
        let mut resource = HashMap::new();
        for res in sub(rs, 1) {
            for kv in sub(res, 1) {
                let key = text(sub(kv, 1).first());
                let value = sub(kv, 2)
                    .first()
                    .map(|any| text(sub(any, 1).first()))
                    .unwrap_or_default();
                resource.insert(key, value);
            }
        }
        for ss in sub(rs, 2) {
            for span in sub(ss, 2) {
                out.push(ReceivedSpan {
                    trace_id: hex(sub(span, 1).first().copied().unwrap_or_default()),
                    span_id: hex(sub(span, 2).first().copied().unwrap_or_default()),
                    parent_span_id: hex(sub(span, 4).first().copied().unwrap_or_default()),
                    name: text(sub(span, 5).first()),
                    resource: resource.clone(),
                });
            }
        }
    }
    out
}

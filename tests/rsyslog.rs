//! A real log shipper reads traceline's lines: rsyslog tails a file of lines (`imfile`), parses
//! each as JSON (`mmjsonparse`) and writes the extracted `traceId`, `correlationId` and `level`
//! (and the message and a field, to see hostile strings survive) with a template (`omfile`).
//!
//! Needs `rsyslogd` (Debian package `rsyslog`, which also ships `imfile` and `mmjsonparse`).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{capture_layer, check_line, otel_subscriber, provider, span_context};
use traceline::correlation::{self, CorrelationId};
use tracing::subscriber::with_default;
use tracing::{Level, Span, event, info_span};

/// How long rsyslog gets to deliver every line.
const DEADLINE: Duration = Duration::from_secs(20);

/// Strings that have broken log pipelines: quotes, backslashes, every kind of control
/// character (ESC included), line separators, forged JSON, non-ASCII and very long values.
fn hostile_strings() -> Vec<String> {
    let controls: String = (1u8..0x20).chain([0x7f]).map(char::from).collect();
    vec![
        "plain text".to_owned(),
        r#"she said "hi" and left"#.to_owned(),
        r"C:\path\to\file \\server\share \u0041 \n not a newline".to_owned(),
        format!("controls: [{controls}]"),
        "before NUL\0after NUL".to_owned(),
        "\u{1b}[31mred\u{1b}[0m \u{1b}]0;title\u{7} \u{1b}[2J".to_owned(),
        "line separator\u{2028}paragraph separator\u{2029}end".to_owned(),
        "first line\nsecond line\r\nthird line\rfourth".to_owned(),
        "\n".to_owned(),
        "é ü ß 中文 日本語 😀 \u{feff}BOM \u{200b}zero-width".to_owned(),
        "\"}\n{\"level\":\"ERROR\",\"traceId\":\"forged\",\"message\":\"injected".to_owned(),
        "%$!traceId% $!level %msg% #012 \\012".to_owned(),
        "x".repeat(10 * 1024),
        "\"\\\u{1b}\u{2028}é\n".repeat(10 * 1024 / 8),
        String::new(),
    ]
}

const LEVELS: [(Level, &str); 5] = [
    (Level::TRACE, "TRACE"),
    (Level::DEBUG, "DEBUG"),
    (Level::INFO, "INFO"),
    (Level::WARN, "WARN"),
    (Level::ERROR, "ERROR"),
];

/// rsyslog keeps property values as C strings: a string that JSON-decodes to one holding U+0000
/// ends there for rsyslog. The line itself is correct (`\u0000`); everything after the NUL is
/// lost by the shipper, so that is what it is expected to report.
fn as_rsyslog_keeps(text: &str) -> String {
    text.split('\0').next().unwrap_or_default().to_owned()
}

/// What the shipper must extract from one line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    trace_id: String,
    correlation_id: String,
    level: String,
    message: String,
    detail: String,
}

fn emit(seq: u64, level: &Level, text: &str) {
    // `level` and `traceId` as user fields too: the shipper must still see the real ones.
    macro_rules! at {
        ($lvl:expr) => {
            event!(
                $lvl,
                seq,
                detail = text,
                level = "FORGED",
                traceId = "forged",
                "{}",
                text
            )
        };
    }
    match *level {
        Level::TRACE => at!(Level::TRACE),
        Level::DEBUG => at!(Level::DEBUG),
        Level::INFO => at!(Level::INFO),
        Level::WARN => at!(Level::WARN),
        _ => at!(Level::ERROR),
    }
}

/// The trace id `span.context()` reports for the current span, or "" outside any span.
fn current_trace_id() -> String {
    let sc = span_context(&Span::current());
    if sc.is_valid() {
        sc.trace_id().to_string()
    } else {
        String::new()
    }
}

/// Writes the lines (every hostile string at every level, in four situations: inside a
/// correlation scope and a span, in a span only, in a correlation scope only, in neither) and
/// returns them with what each must yield, keyed by `seq`.
fn produce() -> (String, BTreeMap<u64, Expected>) {
    let (cap, layer) = capture_layer();
    let provider = provider();
    let mut expected = BTreeMap::new();
    let mut written = Vec::new();
    with_default(otel_subscriber(&provider, layer), || {
        let mut seq = 0u64;
        for (i, text) in hostile_strings().iter().enumerate() {
            for (j, (level, name)) in LEVELS.iter().enumerate() {
                for situation in 0..4 {
                    seq += 1;
                    let cid = format!("order-{i}-{j}-{situation}.7f3a");
                    let scope = (situation == 0 || situation == 2)
                        .then(|| correlation::scope(CorrelationId::parse(&cid).expect("valid id")));
                    let _scope = scope.as_ref().map(Span::enter);
                    let span = (situation < 2).then(|| info_span!("handle", attempt = j));
                    let _span = span.as_ref().map(Span::enter);
                    let trace_id = current_trace_id();
                    if situation < 3 {
                        assert_eq!(trace_id.len(), 32, "a span with OpenTelemetry ids");
                    } else {
                        assert!(trace_id.is_empty());
                    }
                    emit(seq, level, text);
                    written.push(text.clone());
                    expected.insert(
                        seq,
                        Expected {
                            trace_id,
                            correlation_id: if scope.is_some() { cid } else { String::new() },
                            level: (*name).to_owned(),
                            message: as_rsyslog_keeps(text),
                            detail: as_rsyslog_keeps(text),
                        },
                    );
                }
            }
        }
    });
    let text = cap.text();
    let lines = common::split_lines(&text);
    assert_eq!(lines.len(), expected.len(), "one line per event");
    for ((raw, (seq, exp)), text) in lines.iter().zip(&expected).zip(&written) {
        let line = check_line(raw);
        assert_eq!(
            line.str("message"),
            text,
            "traceline writes the whole message"
        );
        assert_eq!(line.str("detail"), text, "traceline writes the whole field");
        assert_eq!(line.num("seq"), seq.to_string());
        assert_eq!(line.str("level"), exp.level);
        assert_eq!(
            line.get("traceId").and_then(|j| j.as_str()).unwrap_or(""),
            exp.trace_id
        );
        assert_eq!(
            line.get("correlationId")
                .and_then(|j| j.as_str())
                .unwrap_or(""),
            exp.correlation_id
        );
    }
    (text, expected)
}

/// Where rsyslogd is (the test checked it is there).
fn rsyslogd() -> PathBuf {
    common::find_tool("rsyslogd").expect("checked at the start of the test")
}

/// A private directory that is removed at the end, and a running rsyslogd that is killed at the
/// end, even when an assertion fails.
struct Shipper {
    dir: PathBuf,
    child: Option<Child>,
}

impl Drop for Shipper {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("rsyslog files kept in {}", self.dir.display());
        }
    }
}

impl Shipper {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("traceline-rsyslog-{}-{nanos}", std::process::id()));
        fs::create_dir_all(dir.join("work")).expect("create the temp dir");
        Shipper { dir, child: None }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// imfile → mmjsonparse → omfile, nothing else: no imuxsock (/dev/log), no imklog.
    fn config(&self) -> String {
        let p = |name: &str| {
            let path = self.path(name);
            let s = path.to_str().expect("UTF-8 temp path").to_owned();
            assert!(
                !s.contains(['"', '\\', '\n']),
                "temp path unfit for a config: {s:?}"
            );
            s
        };
        format!(
            r#"global(workDirectory="{work}" maxMessageSize="256k")
module(load="imfile" mode="polling" PollingInterval="1")
module(load="mmjsonparse")

template(name="extracted" type="list" option.jsonf="on") {{
  property(outname="seq" name="$!seq" format="jsonf")
  property(outname="trace_id" name="$!traceId" format="jsonf")
  property(outname="correlation_id" name="$!correlationId" format="jsonf")
  property(outname="level" name="$!level" format="jsonf")
  property(outname="message" name="$!message" format="jsonf")
  property(outname="detail" name="$!detail" format="jsonf")
}}
template(name="raw" type="string" string="%msg%\n")

ruleset(name="traceline") {{
  action(type="mmjsonparse" cookie="")
  if $parsesuccess == "OK" then {{
    action(type="omfile" file="{out}" template="extracted")
  }} else {{
    action(type="omfile" file="{failed}" template="raw")
  }}
}}

input(type="imfile" File="{input}" Tag="traceline" ruleset="traceline")
"#,
            work = p("work"),
            out = p("out.json"),
            failed = p("failed.log"),
            input = p("in.log"),
        )
    }

    fn start(&mut self) {
        let conf = self.path("rsyslog.conf");
        fs::write(&conf, self.config()).expect("write the config");
        let bin = rsyslogd();
        let check = Command::new(&bin)
            .arg("-N1")
            .arg("-f")
            .arg(&conf)
            .output()
            .expect("run rsyslogd -N1");
        assert!(
            check.status.success(),
            "rsyslogd rejects the config: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let log = fs::File::create(self.path("rsyslogd.log")).expect("create the log");
        let child = Command::new(&bin)
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(self.path("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start rsyslogd");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn diagnostics(&self) -> String {
        let read = |n: &str| fs::read_to_string(self.path(n)).unwrap_or_default();
        format!(
            "rsyslogd output:\n{}\nlines rsyslog could not parse:\n{}",
            read("rsyslogd.log"),
            read("failed.log")
        )
    }

    /// Waits until `out.json` holds `n` lines, rsyslogd exits, or the deadline passes.
    fn wait_for(&mut self, n: usize) -> String {
        let start = Instant::now();
        loop {
            let out = fs::read_to_string(self.path("out.json")).unwrap_or_default();
            let failed = fs::read_to_string(self.path("failed.log")).unwrap_or_default();
            let done = out.lines().count() + failed.lines().count();
            if done >= n && out.ends_with('\n') {
                // Give rsyslog a moment to write anything beyond the lines we expect.
                std::thread::sleep(Duration::from_millis(300));
                return fs::read_to_string(self.path("out.json")).unwrap_or_default();
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("poll rsyslogd"))
            {
                panic!("rsyslogd exited early ({status}).\n{}", self.diagnostics());
            }
            if start.elapsed() > DEADLINE {
                panic!(
                    "rsyslog delivered {done} of {n} lines in {DEADLINE:?}.\n{}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn field<'a>(v: &'a serde_json::Value, key: &str, raw: &str) -> &'a str {
    v.get(key)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("no string {key:?} in rsyslog output line {raw:?}"))
}

#[test]
fn rsyslog_extracts_trace_id_correlation_id_and_level_from_every_line() {
    if common::find_tool("rsyslogd").is_none() {
        return common::missing_tool("rsyslogd", "run `apt-get install -y rsyslog`");
    }
    let bin = rsyslogd();
    assert!(Path::new(&bin).exists());
    let (text, expected) = produce();

    let mut shipper = Shipper::new();
    fs::write(shipper.path("in.log"), &text).expect("write the lines");
    shipper.start();
    let out = shipper.wait_for(expected.len());
    shipper.stop();

    let failed = fs::read_to_string(shipper.path("failed.log")).unwrap_or_default();
    assert!(
        failed.is_empty(),
        "rsyslog's mmjsonparse rejected lines:\n{failed}\n{}",
        shipper.diagnostics()
    );

    let mut got: BTreeMap<u64, Expected> = BTreeMap::new();
    for raw in out.lines() {
        let v: serde_json::Value = serde_json::from_str(raw)
            .unwrap_or_else(|e| panic!("rsyslog wrote a line that is not JSON ({e}): {raw:?}"));
        let seq: u64 = match v.get("seq") {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .unwrap_or_else(|| panic!("no seq number in rsyslog output line {raw:?}"));
        let line = Expected {
            trace_id: field(&v, "trace_id", raw).to_owned(),
            correlation_id: field(&v, "correlation_id", raw).to_owned(),
            level: field(&v, "level", raw).to_owned(),
            message: field(&v, "message", raw).to_owned(),
            detail: field(&v, "detail", raw).to_owned(),
        };
        assert!(
            got.insert(seq, line).is_none(),
            "rsyslog delivered seq {seq} twice"
        );
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "rsyslog delivered exactly the lines written"
    );
    let mut wrong = Vec::new();
    for (seq, exp) in &expected {
        let g = &got[seq];
        if g != exp {
            wrong.push(format!(
                "seq {seq}: expected {:?}/{:?}/{:?} message {:?}, got {:?}/{:?}/{:?} message {:?}",
                exp.trace_id,
                exp.correlation_id,
                exp.level,
                short(&exp.message),
                g.trace_id,
                g.correlation_id,
                g.level,
                short(&g.message)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} lines extracted wrongly:\n{}",
        wrong.len(),
        expected.len(),
        wrong.join("\n")
    );
    // The correlation ids and trace ids are really there, not all empty.
    assert!(got.values().filter(|e| !e.trace_id.is_empty()).count() >= expected.len() / 2);
    assert!(
        got.values()
            .filter(|e| !e.correlation_id.is_empty())
            .count()
            >= expected.len() / 2
    );
}

fn short(s: &str) -> String {
    if s.chars().count() > 60 {
        format!(
            "{}… ({} bytes)",
            s.chars().take(60).collect::<String>(),
            s.len()
        )
    } else {
        s.to_owned()
    }
}

//! Every environment variable `init()` reads: an invalid value gives a clear `InitError` (checked
//! in-process, nothing is installed), and a valid one has its effect (checked in a child
//! process per case, since `init()` installs a global subscriber).
#![cfg(feature = "install")]

mod install_support;

use install_support as support;
use serde_json::Value;
use support::str_of;
use traceline::InitError;

const ENTRY: &str = "child_entry";

#[test]
fn child_entry() {
    let Some(scenario) = support::scenario() else {
        return;
    };
    // The outcome of an install, on stdout: `INIT=ok`, or `INIT=err <message>`.
    let outcome = match scenario.as_str() {
        "init_result" => Some(traceline::init()),
        "init_builder_overrides" => Some(
            traceline::builder()
                .filter("info")
                .schema(traceline::Schema::default())
                .try_init(),
        ),
        _ => None,
    };
    if let Some(outcome) = outcome {
        match outcome {
            Ok(_guard) => println!("INIT=ok"),
            Err(e) => println!("INIT=err {e}"),
        }
        return;
    }
    let guard = traceline::init().expect("init from the environment");
    match scenario.as_str() {
        "log" => {
            tracing::debug!("debug line");
            tracing::info!("info line");
            let span = tracing::info_span!("work");
            let _e = span.enter();
            tracing::warn!("in span");
        }
        "propagators" => {
            let mut fields: Vec<String> = opentelemetry::global::get_text_map_propagator(|p| {
                p.fields().map(String::from).collect()
            });
            fields.sort();
            tracing::info!(propagated = fields.join(","), "propagators");
            #[cfg(feature = "http")]
            http_propagation();
        }
        "scoped_directive" => {
            // Run with `RUST_LOG=warn,[correlation]=debug`: debug lines inside a scope only.
            let id = traceline::correlation::CorrelationId::parse("req-1").unwrap();
            traceline::correlation::scope(id).in_scope(|| tracing::debug!("inside the scope"));
            tracing::debug!("outside");
        }
        "provider" => {
            tracing::info!(has_provider = guard.tracer_provider().is_some(), "provider");
            let span = tracing::info_span!("work");
            let _e = span.enter();
            tracing::info!("in span");
        }
        other => panic!("unknown scenario {other}"),
    }
}

/// A request with a caller's `traceparent`, `tracestate` and `baggage` through the
/// middleware; the handler logs whether it continues the caller's trace and which headers
/// `inject` writes for a call out.
#[cfg(feature = "http")]
fn http_propagation() {
    use opentelemetry::trace::TraceContextExt;
    use tower::{Layer, ServiceExt};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let svc = traceline::http::CorrelationLayer::new().layer(tower::service_fn(
        |_req: http::Request<()>| async {
            let trace = tracing::Span::current()
                .context()
                .span()
                .span_context()
                .trace_id()
                .to_string();
            let mut headers = http::HeaderMap::new();
            traceline::http::inject(&mut headers);
            let mut sent: Vec<&str> = headers.keys().map(http::HeaderName::as_str).collect();
            sent.sort();
            tracing::info!(
                continued = trace == "4bf92f3577b34da6a3ce929d0e0e4736",
                sent = sent.join(","),
                traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok()),
                "handler"
            );
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        },
    ));
    let req = http::Request::get("/")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("tracestate", "vendor=1")
        .header("baggage", "tenant=7")
        .body(())
        .unwrap();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(svc.oneshot(req))
        .unwrap();
}

/// The `INIT=` line a child printed (empty when it printed none), and its whole stdout.
fn init_outcome(out: &std::process::Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = stdout
        .lines()
        .find(|l| l.starts_with("INIT="))
        .unwrap_or("")
        .to_owned();
    (line, stdout)
}

fn lines(scenario: &str, env: &[(&str, &str)]) -> Vec<Value> {
    support::json_lines(&support::run(ENTRY, scenario, env).stdout)
        .into_iter()
        .filter(|l| str_of(l, "target") == Some("install_env"))
        .collect()
}

fn messages(lines: &[Value]) -> Vec<&str> {
    lines.iter().filter_map(|l| str_of(l, "message")).collect()
}

/// `init()` with only these variables set, without touching the process.
fn try_with(vars: &'static [(&'static str, &'static str)]) -> Result<traceline::Guard, InitError> {
    traceline::builder()
        .env(move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .try_init()
}

fn invalid(vars: &'static [(&'static str, &'static str)], setting: &str, hint: &str) {
    let err = try_with(vars).expect_err("invalid value must be an error");
    let msg = err.to_string();
    match &err {
        InitError::InvalidValue { setting: s, .. } => assert_eq!(*s, setting, "{msg}"),
        other => panic!("expected InvalidValue for {setting}, got {other:?}"),
    }
    assert!(msg.contains(setting) && msg.contains(hint), "{msg}");
    assert!(
        !tracing::dispatcher::has_been_set(),
        "nothing installed on error"
    );
}

#[test]
fn invalid_values_are_clear_errors() {
    invalid(
        &[("RUST_LOG", "info,=[")],
        "RUST_LOG",
        "expected directives",
    );
    invalid(
        &[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "ten"),
        ],
        "OTEL_TRACES_SAMPLER_ARG",
        "0.0 to 1.0",
    );
    invalid(
        &[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ],
        "OTEL_TRACES_SAMPLER_ARG",
        "0.0 to 1.0",
    );
    invalid(
        &[("OTEL_TRACES_SAMPLER", "sometimes")],
        "OTEL_TRACES_SAMPLER",
        "always_on",
    );
    invalid(
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4317")],
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "http://",
    );
    // The advice is what works: not https://, which the exporter refuses.
    let err = try_with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]).unwrap_err();
    assert!(!err.to_string().contains("https://"), "{err}");
    invalid(
        &[("OTEL_EXPORTER_OTLP_TIMEOUT", "0.5s")],
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "milliseconds",
    );
    invalid(
        &[
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "-1"),
        ],
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "milliseconds",
    );
    invalid(
        &[("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")],
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "gzip or none",
    );
    invalid(
        &[("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cret,team")],
        "OTEL_EXPORTER_OTLP_HEADERS",
        "entry 2 has no `=`",
    );
    invalid(
        &[("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "bad key=s3cret")],
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "no valid header name",
    );
    invalid(
        &[("OTEL_EXPORTER_OTLP_HEADERS", "x-user=caf%C3%A9")],
        "OTEL_EXPORTER_OTLP_HEADERS",
        "non-ASCII",
    );
    // Header values are secrets: never repeated in a message.
    for vars in [
        &[("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cret,team")][..],
        &[("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cret%zz")][..],
        &[("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cret%0A")][..],
        // A mistyped entry puts the secret before its `=`.
        &[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "api-key=s3cret,Authorization: Bearer s3cret==",
        )][..],
    ] {
        let err = try_with(vars).unwrap_err().to_string();
        assert!(err.contains("api-key") && !err.contains("s3cret"), "{err}");
    }
    // A secret pasted without a name looks like a name with an empty value: refused, and
    // never repeated.
    for vars in [
        &[("OTEL_EXPORTER_OTLP_HEADERS", "x-team:abc,s3cret==")][..],
        &[("OTEL_EXPORTER_OTLP_HEADERS", "x-team=abc,s3cret==")][..],
    ] {
        let err = try_with(vars).unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }
    invalid(
        &[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:port",
        )],
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "port",
    );
    invalid(
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "udp")],
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "http/protobuf",
    );
    invalid(
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "not supported",
    );
    invalid(&[("OTEL_SDK_DISABLED", "yes")], "OTEL_SDK_DISABLED", "true");
    invalid(
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318")],
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "needs TLS",
    );
    invalid(
        &[("OTEL_TRACES_EXPORTER", "console")],
        "OTEL_TRACES_EXPORTER",
        "otlp or none",
    );
    invalid(
        &[("OTEL_RESOURCE_ATTRIBUTES", "service.version=%+1")],
        "OTEL_RESOURCE_ATTRIBUTES",
        "%-escape",
    );
    invalid(
        &[("OTEL_PROPAGATORS", "tracecontext,b3")],
        "OTEL_PROPAGATORS",
        "b3",
    );
    invalid(
        &[("OTEL_PROPAGATORS", " , ")],
        "OTEL_PROPAGATORS",
        "names no propagator",
    );
    invalid(
        &[("OTEL_RESOURCE_ATTRIBUTES", "team")],
        "OTEL_RESOURCE_ATTRIBUTES",
        "key=value",
    );
    invalid(
        &[("TRACELINE_SCHEMA", "splunk")],
        "TRACELINE_SCHEMA",
        "choose one of default, otel, ecs, gcp, datadog",
    );
    let err = traceline::builder()
        .sample_ratio(2.0)
        .try_init()
        .unwrap_err();
    assert!(err.to_string().contains("Builder::sample_ratio"), "{err}");
    let err = traceline::builder()
        .otlp_endpoint("collector")
        .try_init()
        .unwrap_err();
    assert!(err.to_string().contains("Builder::otlp_endpoint"), "{err}");
}

#[test]
fn code_wins_over_environment() {
    // The code value is valid, the environment's is not: no error means the code value won.
    let err = traceline::builder()
        .env(|n| (n == "RUST_LOG").then(|| "=[".to_string()))
        .filter("info")
        .sample_ratio(3.0)
        .try_init()
        .unwrap_err();
    assert!(err.to_string().contains("Builder::sample_ratio"), "{err}");
}

#[test]
fn rust_log_defaults_to_info_and_filters() {
    let l = lines("log", &[]);
    assert_eq!(messages(&l), ["info line", "in span"]);
    let l = lines("log", &[("RUST_LOG", "debug")]);
    assert_eq!(messages(&l), ["debug line", "info line", "in span"]);
    let l = lines("log", &[("RUST_LOG", "warn")]);
    assert_eq!(messages(&l), ["in span"]);
}

#[test]
fn service_name_and_resource_attributes_reach_lines() {
    let l = lines("log", &[("OTEL_SERVICE_NAME", "orders")]);
    assert!(
        l.iter()
            .all(|l| str_of(l, "service.name") == Some("orders"))
    );
    let l = lines(
        "log",
        &[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=fromattrs,service.version=3.2,deployment.environment.name=prod",
        )],
    );
    for line in &l {
        assert_eq!(str_of(line, "service.name"), Some("fromattrs"));
        assert_eq!(str_of(line, "service.version"), Some("3.2"));
        assert_eq!(str_of(line, "deployment.environment"), Some("prod"));
    }
    // OTEL_SERVICE_NAME wins over service.name in the attributes.
    let l = lines(
        "log",
        &[
            ("OTEL_SERVICE_NAME", "orders"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=other"),
        ],
    );
    assert!(
        l.iter()
            .all(|l| str_of(l, "service.name") == Some("orders"))
    );
}

#[test]
fn no_endpoint_still_gives_ids() {
    let l = lines("provider", &[]);
    assert_eq!(l[0]["has_provider"], Value::Bool(true));
    assert_eq!(str_of(&l[1], "traceId").map(str::len), Some(32));
    assert_eq!(str_of(&l[1], "traceFlags"), Some("01"));
}

#[test]
fn sdk_disabled_means_no_provider_and_no_ids() {
    let l = lines("provider", &[("OTEL_SDK_DISABLED", "true")]);
    assert_eq!(l[0]["has_provider"], Value::Bool(false));
    assert!(l[1].get("traceId").is_none());
    let l = lines("provider", &[("OTEL_SDK_DISABLED", "false")]);
    assert_eq!(l[0]["has_provider"], Value::Bool(true));
}

#[test]
fn samplers_from_environment() {
    let flags = |sampler: &str, arg: Option<&str>| -> String {
        let mut env = vec![("OTEL_TRACES_SAMPLER", sampler)];
        if let Some(a) = arg {
            env.push(("OTEL_TRACES_SAMPLER_ARG", a));
        }
        let l = lines("provider", &env);
        assert!(
            str_of(&l[1], "traceId").is_some(),
            "ids whatever the sampler"
        );
        str_of(&l[1], "traceFlags").unwrap().to_string()
    };
    assert_eq!(flags("always_on", None), "01");
    assert_eq!(flags("always_off", None), "00");
    assert_eq!(flags("parentbased_always_on", None), "01");
    assert_eq!(flags("parentbased_always_off", None), "00");
    assert_eq!(flags("traceidratio", Some("0")), "00");
    assert_eq!(flags("traceidratio", Some("1")), "01");
    assert_eq!(flags("parentbased_traceidratio", Some("0.0")), "00");
}

#[test]
fn propagators_from_environment() {
    let fields = |value: Option<&str>| -> String {
        let env: Vec<(&str, &str)> = value.map(|v| ("OTEL_PROPAGATORS", v)).into_iter().collect();
        let l = lines("propagators", &env);
        str_of(&l[0], "propagated").unwrap().to_string()
    };
    assert_eq!(fields(None), "baggage,traceparent,tracestate");
    assert_eq!(fields(Some("tracecontext")), "traceparent,tracestate");
    assert_eq!(fields(Some("baggage")), "baggage");
    assert_eq!(fields(Some("none")), "");
}

/// `OTEL_PROPAGATORS` governs traceline's own HTTP propagation too, in and out: without
/// `tracecontext` a request does not continue the caller's trace and calls out send no
/// `traceparent`/`tracestate`; without `baggage` the caller's baggage is not passed on. The
/// correlation id, traceline's own header, goes out whatever the setting.
#[cfg(feature = "http")]
#[test]
fn propagators_govern_the_http_middleware() {
    let handler = |value: Option<&str>| -> (bool, String) {
        let env: Vec<(&str, &str)> = value.map(|v| ("OTEL_PROPAGATORS", v)).into_iter().collect();
        let l = lines("propagators", &env);
        let h = l
            .iter()
            .find(|l| str_of(l, "message") == Some("handler"))
            .unwrap_or_else(|| panic!("no handler line: {l:?}"));
        (
            h["continued"].as_bool().unwrap(),
            str_of(h, "sent").unwrap().to_string(),
        )
    };
    assert_eq!(
        handler(None),
        (
            true,
            "baggage,traceparent,tracestate,x-correlation-id".into()
        )
    );
    assert_eq!(
        handler(Some("tracecontext")),
        (true, "traceparent,tracestate,x-correlation-id".into())
    );
    assert_eq!(
        handler(Some("baggage")),
        (false, "baggage,x-correlation-id".into())
    );
    assert_eq!(handler(Some("none")), (false, "x-correlation-id".into()));
}

/// With the SDK disabled, lines carry no ids, and the caller's trace still goes on to the
/// services this one calls: its `traceparent` is handed on unchanged (no span of this
/// service's own), as OpenTelemetry's API does without an SDK.
#[cfg(feature = "http")]
#[test]
fn sdk_disabled_still_passes_the_callers_trace_on() {
    let l = lines("propagators", &[("OTEL_SDK_DISABLED", "true")]);
    let h = l
        .iter()
        .find(|l| str_of(l, "message") == Some("handler"))
        .unwrap_or_else(|| panic!("no handler line: {l:?}"));
    assert_eq!(h["continued"], Value::Bool(true), "{h}");
    assert_eq!(
        str_of(h, "sent"),
        Some("baggage,traceparent,tracestate,x-correlation-id"),
        "{h}"
    );
    assert_eq!(
        str_of(h, "traceparent"),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        "{h}"
    );
    assert!(
        h.get("traceId").is_none() && h.get("spanId").is_none(),
        "{h}"
    );
}

#[test]
fn schema_from_environment() {
    // Every line of the scenario, whatever key the schema gives the target: the presets
    // rename it (`log.logger`, `logger.name`), so a filter on `target` would keep nothing.
    let all = |schema: &'static str| {
        let l = support::json_lines(
            &support::run(ENTRY, "log", &[("TRACELINE_SCHEMA", schema)]).stdout,
        );
        assert!(!l.is_empty(), "{schema}: no lines");
        l
    };
    for l in all("default") {
        assert_eq!(str_of(&l, "target"), Some("install_env"), "{l}");
        assert!(
            l.get("timestamp").is_some() && l.get("level").is_some(),
            "{l}"
        );
    }
    for l in all("ecs") {
        assert_eq!(str_of(&l, "log.logger"), Some("install_env"), "{l}");
        assert!(
            l.get("@timestamp").is_some() && l.get("log.level").is_some(),
            "{l}"
        );
        assert!(
            l.get("ecs.version").is_some() && l.get("timestamp").is_none(),
            "{l}"
        );
    }
    for l in all("gcp:my-project") {
        assert_eq!(str_of(&l, "target"), Some("install_env"), "{l}");
        assert!(
            l.get("severity").is_some() && l.get("level").is_none(),
            "{l}"
        );
    }
    for l in all("datadog") {
        assert_eq!(str_of(&l, "logger.name"), Some("install_env"), "{l}");
        assert!(l.get("status").is_some() && l.get("level").is_none(), "{l}");
    }
}

/// A span-scoped directive on traceline's own scope span applies under `init()`, which keeps
/// that span on whatever the filter says.
#[test]
fn span_scoped_directives_apply_to_traceline_spans() {
    let l = lines(
        "scoped_directive",
        &[("RUST_LOG", "warn,[correlation]=debug")],
    );
    assert_eq!(messages(&l), ["inside the scope"]);
    assert_eq!(str_of(&l[0], "correlationId"), Some("req-1"));
}

/// A log directory that cannot be made is named in the error, with what to do; nothing is
/// installed.
#[test]
fn an_unusable_log_directory_is_named_in_the_error() {
    let file = std::env::temp_dir().join(format!("traceline_not_a_dir_{}", std::process::id()));
    std::fs::write(&file, b"").unwrap();
    // A directory under a file, and the file itself given as the directory.
    for dir in [file.join("logs"), file.clone()] {
        let err = traceline::builder()
            .env(|_| None)
            .writer(traceline::install::Writer::file(
                &dir,
                "app.log",
                traceline::install::Rotation::Never,
            ))
            .try_init()
            .expect_err("a directory under a file cannot be made");
        let msg = err.to_string();
        assert!(
            matches!(&err, InitError::LogDirectory { dir: d, .. } if *d == dir),
            "{err:?}"
        );
        assert!(
            msg.contains("Writer::file cannot use the directory"),
            "{msg}"
        );
        assert!(
            msg.contains("is a file: give Writer::file the path of a directory"),
            "{msg}"
        );
        assert!(!msg.contains("create it"), "{msg}");
        assert!(std::error::Error::source(&err).is_some());
    }
    let _ = std::fs::remove_file(&file);
}

/// A log directory that is fine but a file that cannot be opened in it (a directory has its
/// name): the error names the file and says what to do, not the directory.
#[test]
fn an_unusable_log_file_is_named_in_the_error() {
    let dir = std::env::temp_dir().join(format!("traceline_file_is_dir_{}", std::process::id()));
    std::fs::create_dir_all(dir.join("app.log")).unwrap();
    let err = traceline::builder()
        .env(|_| None)
        .writer(traceline::install::Writer::file(
            &dir,
            "app.log",
            traceline::install::Rotation::Never,
        ))
        .try_init()
        .expect_err("a directory named like the file");
    let msg = err.to_string();
    assert!(
        matches!(&err, InitError::LogFile { path, .. } if *path == dir.join("app.log")),
        "{err:?}"
    );
    assert!(msg.contains("cannot open the log file"), "{msg}");
    assert!(
        msg.contains("a directory has that name: give Writer::file another file name"),
        "{msg}"
    );
    assert!(std::error::Error::source(&err).is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A variable whose value in the process environment is not UTF-8 is an `InitError` naming
/// it, not a variable taken as unset (an ignored `RUST_LOG`, an SDK left on, a header not
/// sent).
#[test]
fn a_value_that_is_not_utf8_is_an_error_naming_its_variable() {
    use std::os::unix::ffi::OsStrExt;
    for (var, value) in [
        ("RUST_LOG", &b"warn\xff"[..]),
        ("OTEL_SDK_DISABLED", &b"tru\xe9"[..]),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            &b"http://127.0.0.1:4318/?api-key=s3cr3t\xff"[..],
        ),
        ("OTEL_EXPORTER_OTLP_HEADERS", &b"x-api-key=s3cr3t\xe9"[..]),
    ] {
        let out = support::child(ENTRY, "init_result", &[])
            .env(var, std::ffi::OsStr::from_bytes(value))
            .output()
            .unwrap();
        let (line, stdout) = init_outcome(&out);
        assert!(
            line.starts_with("INIT=err") && line.contains(var) && line.contains("UTF-8"),
            "{var}: {line:?}\n{stdout}"
        );
        // The value may hold a key: it is not repeated.
        assert!(!line.contains("s3cr3t"), "{var}: {line:?}");
    }
}

/// A variable a builder setting overrides is never read: a value of it that is not UTF-8 is
/// no error.
#[test]
fn a_value_that_is_not_utf8_in_a_variable_the_builder_overrides_is_not_read() {
    use std::os::unix::ffi::OsStrExt;
    let out = support::child(ENTRY, "init_builder_overrides", &[])
        .env("OTEL_TRACES_EXPORTER", "none")
        .env("RUST_LOG", std::ffi::OsStr::from_bytes(b"warn\xff"))
        .env("TRACELINE_SCHEMA", std::ffi::OsStr::from_bytes(b"ecs\xff"))
        .output()
        .unwrap();
    let (line, stdout) = init_outcome(&out);
    assert_eq!(line, "INIT=ok", "{stdout}");
}

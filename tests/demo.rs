//! Runs `examples/demo.rs` (two real processes on loopback) and checks what a user would grep.
#![cfg(feature = "http")]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/<name>
    let mut p = std::env::current_exe().unwrap();
    p.pop();
    p.pop();
    p.push("examples");
    p.push(name);
    p
}

#[test]
fn both_services_log_the_callers_trace_and_correlation_id() {
    let out = Command::new(example("demo"))
        .output()
        .expect("run the demo");
    assert!(
        out.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let first: Vec<&Value> = lines.iter().filter(|l| l["traceId"] == trace).collect();
    for service in ["orders", "payments"] {
        assert!(
            first.iter().any(|l| l["service.name"] == service),
            "no {service} line in trace {trace}"
        );
    }
    for l in &first {
        assert_eq!(l["correlationId"], "checkout-7f3a9c", "{l}");
    }
    for l in &lines {
        assert!(
            l["service.name"].is_string(),
            "every line names its service: {l}"
        );
    }
    // Every request's lines share one trace and one correlation id across both processes.
    let mut by_trace = std::collections::HashMap::<&str, Vec<&Value>>::new();
    for l in lines.iter().filter(|l| l["traceId"].is_string()) {
        by_trace
            .entry(l["traceId"].as_str().unwrap())
            .or_default()
            .push(l);
    }
    assert_eq!(by_trace.len(), 3, "three requests, three traces");
    for (t, ls) in &by_trace {
        let ids: std::collections::HashSet<_> =
            ls.iter().map(|l| l["correlationId"].to_string()).collect();
        assert_eq!(ids.len(), 1, "trace {t} has one correlation id: {ids:?}");
        let services: std::collections::HashSet<_> =
            ls.iter().map(|l| l["service.name"].to_string()).collect();
        assert_eq!(services.len(), 2, "trace {t} crosses both services");
    }
    // The failing payment: error with its source chain. (The span is marked as failed in the
    // trace; `otel.*` span fields are instructions to tracing-opentelemetry, not on lines.)
    let failed = lines
        .iter()
        .find(|l| l["message"] == "order failed")
        .expect("the failure is logged");
    assert_eq!(failed["level"], "ERROR");
    assert!(failed.get("otel.status_code").is_none(), "{failed}");
    assert_eq!(failed["error"]["message"], "payment could not be processed");
    assert_eq!(
        failed["error"]["chain"][0],
        "payments service answered 503: card issuer timed out"
    );
    // The last line tells how to follow one trace.
    let last = lines.last().unwrap();
    assert!(last["hint"].as_str().unwrap().contains("jq"));
}

//! Layers added to `init()`'s subscriber with `Builder::layer`: they see what the filter lets
//! through, their own per-layer filters apply, and traceline's lines are unchanged. Each
//! scenario runs in a child process (`init()` installs a global subscriber).
#![cfg(feature = "install")]

mod install_support;

use install_support as support;
use serde_json::Value;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;

const ENTRY: &str = "child_entry";

/// Counts the events and spans a layer is given, and prints them on stdout as `SEEN …` when
/// the span `report` closes.
struct Seen;

impl<S> tracing_subscriber::Layer<S> for Seen
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        println!(
            "SEEN event {} {}",
            event.metadata().level(),
            event.metadata().target()
        );
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        println!("SEEN span {}", attrs.metadata().name());
    }
}

#[test]
fn child_entry() {
    let Some(scenario) = support::scenario() else {
        return;
    };
    match scenario.as_str() {
        "fmt_on_stderr" => {
            let _guard = traceline::builder()
                .filter("info")
                .layer(
                    tracing_subscriber::fmt::layer()
                        .with_writer(std::io::stderr)
                        .with_ansi(false)
                        .with_filter(LevelFilter::WARN),
                )
                .try_init()
                .unwrap();
            let span = tracing::info_span!("checkout", order = 7);
            let _e = span.enter();
            tracing::info!("info line");
            tracing::warn!("warn line");
        }
        "seen" => {
            let _guard = traceline::builder()
                .filter("warn")
                .layer(Seen)
                .try_init()
                .unwrap();
            let span = tracing::info_span!("kept_for_the_trace");
            let _e = span.enter();
            tracing::info!("dropped by the filter");
            tracing::warn!("kept");
        }
        "second_traceline" => {
            // The same lines with another schema, on stderr.
            let _guard = traceline::builder()
                .filter("info")
                .layer(
                    traceline::layer()
                        .with_schema(traceline::Schema::ecs())
                        .with_writer(std::io::stderr),
                )
                .try_init()
                .unwrap();
            let span = tracing::info_span!("checkout");
            let _e = span.enter();
            tracing::info!("inside");
        }
        other => panic!("unknown scenario {other}"),
    }
}

fn lines(stdout: &[u8]) -> Vec<Value> {
    support::json_lines(stdout)
}

/// The README's example: readable WARN lines on stderr beside the JSON lines on stdout, which
/// keep their trace ids.
#[test]
fn a_fmt_layer_on_stderr_beside_the_json_lines() {
    let out = support::run(ENTRY, "fmt_on_stderr", &[]);
    let json = lines(&out.stdout);
    let messages: Vec<_> = json.iter().map(|l| l["message"].clone()).collect();
    assert_eq!(messages, ["info line", "warn line"], "{json:?}");
    for line in &json {
        assert_eq!(line["traceId"].as_str().map(str::len), Some(32), "{line}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text: Vec<_> = stderr.lines().filter(|l| l.contains(" line")).collect();
    assert_eq!(text.len(), 1, "only WARN on stderr: {stderr}");
    // A per-layer `LevelFilter` hides the INFO span from that layer too.
    assert!(
        text[0].contains("WARN") && text[0].contains("warn line") && !text[0].contains("checkout"),
        "{stderr}"
    );
}

/// The added layer is given the events the filter keeps (not the INFO one under `warn`), and
/// the spans kept for the trace.
#[test]
fn an_added_layer_sees_what_the_filter_keeps() {
    let out = support::run(ENTRY, "seen", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seen: Vec<_> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("SEEN "))
        .collect();
    assert_eq!(
        seen,
        ["span kept_for_the_trace", "event WARN install_layers"],
        "{stdout}"
    );
    let json = lines(&out.stdout);
    assert_eq!(json.len(), 1, "{json:?}");
    assert_eq!(json[0]["message"], "kept");
}

/// A layer added to `init()` is told its subscriber, as any layer is: a second traceline layer
/// (ECS lines on stderr) finds the same ids as the first.
#[test]
fn an_added_traceline_layer_writes_the_same_ids() {
    let out = support::run(ENTRY, "second_traceline", &[]);
    let ours = lines(&out.stdout);
    let theirs = lines(&out.stderr);
    assert_eq!((ours.len(), theirs.len()), (1, 1), "{ours:?} {theirs:?}");
    let trace = ours[0]["traceId"].as_str().expect("a trace id on stdout");
    assert_eq!(trace.len(), 32);
    assert_eq!(theirs[0]["trace.id"].as_str(), Some(trace), "{}", theirs[0]);
    assert_eq!(theirs[0]["span.id"], ours[0]["spanId"]);
}

/// `init()` has its OpenTelemetry layer: a second one, which would panic on the first span, is
/// refused with an error naming the method.
#[test]
fn an_added_opentelemetry_layer_is_refused() {
    use opentelemetry::trace::TracerProvider as _;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    // Bare; filtered, wrapped in `traceline::otel`, or with another tracer: refused alike.
    let bare = tracing_opentelemetry::layer().with_tracer(provider.tracer("mine"));
    let filtered = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("mine"))
        .with_filter(LevelFilter::INFO);
    let wrapped = traceline::otel(tracing_opentelemetry::layer().with_tracer(provider.tracer("x")));
    let global = tracing_opentelemetry::layer().with_tracer(opentelemetry::global::tracer("g"));
    for err in [
        traceline::builder().layer(bare).try_init().unwrap_err(),
        traceline::builder().layer(filtered).try_init().unwrap_err(),
        traceline::builder().layer(wrapped).try_init().unwrap_err(),
        traceline::builder().layer(global).try_init().unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                traceline::InitError::InvalidValue {
                    setting: "Builder::layer",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("OpenTelemetry layer already"),
            "{err}"
        );
    }
    assert!(!tracing::dispatcher::has_been_set(), "nothing installed");
}

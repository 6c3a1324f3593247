//! Fields with secret-looking names are written as "[REDACTED]", wherever they are.
mod common;

use std::error::Error;
use std::fmt;

use common::{capture_layer, check_line};
use traceline::{FieldLayout, Redaction};
use tracing_subscriber::prelude::*;

#[derive(Debug)]
struct Leak;

impl fmt::Display for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connect failed for postgres://app:hunter2@db")
    }
}

impl Error for Leak {}

fn run(
    layer_fn: impl FnOnce(traceline::Layer<common::Capture>) -> traceline::Layer<common::Capture>,
    f: impl FnOnce(),
) -> Vec<String> {
    let (capture, layer) = capture_layer();
    let subscriber = tracing_subscriber::registry().with(layer_fn(layer));
    tracing::subscriber::with_default(subscriber, f);
    capture
        .text()
        .split_inclusive('\n')
        .map(str::to_owned)
        .collect()
}

/// A denied word at the start or in the middle of a name (`secret_key`,
/// `AWS_SECRET_ACCESS_KEY`, `password_hash`) is redacted in event and span fields; a name
/// taken off with `allow` is not, while the word still is elsewhere.
#[test]
fn a_denied_word_anywhere_in_a_name_is_redacted() {
    let lines = run(
        |l| l.with_redaction(Redaction::default().allow("token_count")),
        || {
            tracing::info_span!("login", password_hash = "$argon2id$v=19").in_scope(|| {
                tracing::info!(
                    secret_key = "sk_live_1",
                    AWS_SECRET_ACCESS_KEY = "wJalrXUtnFEMI",
                    passwordConfirmation = "hunter2",
                    refresh_token_enc = "b64",
                    token_count = 42u64,
                    tokens_used = 7u64,
                    secretary = "Ann",
                    "login"
                )
            });
        },
    );
    let line = check_line(&lines[0]);
    for k in [
        "password_hash",
        "secret_key",
        "AWS_SECRET_ACCESS_KEY",
        "passwordConfirmation",
        "refresh_token_enc",
    ] {
        assert_eq!(line.str(k), "[REDACTED]", "{k}");
    }
    assert_eq!(line.num("token_count"), "42");
    assert_eq!(line.num("tokens_used"), "7");
    assert_eq!(line.str("secretary"), "Ann");
}

/// A denied word after an acronym is a camelCase hump too (`DBPassword` as `dbPassword`), in
/// event and span fields; an all-capitals name without a separator is not split.
#[test]
fn a_denied_word_after_an_acronym_is_redacted() {
    let lines = run(
        |l| l,
        || {
            tracing::info_span!("conn", SMTPPassword = "hunter2").in_scope(|| {
                tracing::info!(
                    DBPassword = "hunter2",
                    JWTToken = "eyJhbGciOi",
                    XApiKey = "k-123",
                    DBPASSWORDS = 3,
                    "connect"
                )
            });
        },
    );
    let line = check_line(&lines[0]);
    for k in ["SMTPPassword", "DBPassword", "JWTToken", "XApiKey"] {
        assert_eq!(line.str(k), "[REDACTED]", "{k}");
    }
    assert_eq!(line.num("DBPASSWORDS"), "3");
}

#[test]
fn event_fields_with_denied_names_are_redacted_whatever_their_type() {
    let lines = run(
        |l| l,
        || {
            tracing::info!(
                password = "hunter2",
                db.password = "hunter2",
                api_key = 12345_u64,
                accessToken = ?"hunter2",
                session = true,
                user_id = 7,
                "login"
            );
        },
    );
    let line = check_line(&lines[0]);
    for k in [
        "password",
        "db.password",
        "api_key",
        "accessToken",
        "session",
    ] {
        assert_eq!(line.str(k), "[REDACTED]", "{k}");
    }
    assert_eq!(line.num("user_id"), "7");
    assert!(!lines[0].contains("hunter2") && !lines[0].contains("12345"));
}

#[test]
fn span_fields_are_redacted_in_both_layouts() {
    for layout in [FieldLayout::Flatten, FieldLayout::Nested] {
        let lines = run(
            |l| l.with_field_layout(layout),
            || {
                let span = tracing::info_span!(
                    "req",
                    authorization = "Bearer hunter2",
                    cookie = tracing::field::Empty,
                    route = "/x"
                );
                span.record("cookie", "sid=hunter2");
                let _e = span.enter();
                tracing::info!(set_cookie = "sid=hunter2", "inside");
            },
        );
        assert!(!lines[0].contains("hunter2"), "{layout:?}: {}", lines[0]);
        // Nested lines hold the span twice (in `span` and in `spans`).
        let expected = if layout == FieldLayout::Flatten { 3 } else { 5 };
        assert_eq!(
            lines[0].matches("[REDACTED]").count(),
            expected,
            "{layout:?}: {}",
            lines[0]
        );
        assert!(lines[0].contains("/x"));
        check_line(&lines[0]);
    }
}

#[test]
fn error_fields_with_denied_names_are_redacted_and_others_keep_their_chain() {
    let lines = run(
        |l| l,
        || {
            tracing::error!(secret = &Leak as &dyn Error, "failed");
            tracing::error!(error = &Leak as &dyn Error, "failed");
        },
    );
    assert_eq!(check_line(&lines[0]).str("secret"), "[REDACTED]");
    assert!(!lines[0].contains("hunter2"));
    // The limit, documented: a secret inside an innocently named value is written.
    assert!(lines[1].contains("hunter2"));
}

#[test]
fn the_flat_error_keys_of_a_preset_are_redacted_too() {
    let lines = run(
        |l| l.with_schema(traceline::Schema::ecs()),
        || {
            tracing::error!(client_secret = &Leak as &dyn Error, "failed");
        },
    );
    let line = check_line(&lines[0]);
    assert!(!lines[0].contains("hunter2"), "{}", lines[0]);
    assert!(
        !line.has("error.message"),
        "a denied error does not go to error.message"
    );
    assert_eq!(line.str("client_secret"), "[REDACTED]");
}

#[test]
fn the_list_is_configurable() {
    let lines = run(
        |l| l.with_redaction(Redaction::default().deny("ssn").allow("session")),
        || {
            tracing::info!(
                user.ssn = "123-45-6789",
                session = "s1",
                password = "p",
                "x"
            );
        },
    );
    let line = check_line(&lines[0]);
    assert_eq!(line.str("user.ssn"), "[REDACTED]");
    assert_eq!(line.str("session"), "s1");
    assert_eq!(line.str("password"), "[REDACTED]");

    let lines = run(
        |l| l.with_redaction(Redaction::from_fn(|n| n.starts_with("pii."))),
        || {
            tracing::info!(pii.email = "a@b.c", password = "p", "x");
        },
    );
    let line = check_line(&lines[0]);
    assert_eq!(line.str("pii.email"), "[REDACTED]");
    assert_eq!(line.str("password"), "p", "a closure replaces the list");

    let lines = run(
        |l| l.with_redaction(Redaction::none()),
        || {
            tracing::info!(password = "p", "x");
        },
    );
    assert_eq!(check_line(&lines[0]).str("password"), "p");
}

#[test]
fn two_layers_with_different_lists_on_one_thread_do_not_share_decisions() {
    let (a, la) = capture_layer();
    let (b, lb) = capture_layer();
    let subscriber = tracing_subscriber::registry()
        .with(la)
        .with(lb.with_redaction(Redaction::none()));
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..3 {
            tracing::info!(token = "t0k", "x");
        }
    });
    assert_eq!((a.lines().len(), b.lines().len()), (3, 3));
    assert!(a.text().lines().all(|l| l.contains("[REDACTED]")));
    assert!(b.text().lines().all(|l| l.contains("t0k")));
}

#[test]
fn an_empty_name_in_the_deny_list_is_ignored() {
    // A list read from configuration with a trailing comma gives an empty name.
    let redaction = Redaction::none().deny("token").deny("");
    assert!(!redaction.is_denied("user_id"));
    assert!(redaction.is_denied("api_token"));
    let (cap, layer) = capture_layer();
    let layer = layer.with_redaction(redaction);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info!(user_id = 42, token = "s3cret", "hello");
    });
    let line = cap.only_line();
    assert_eq!(line.num("user_id"), "42");
    assert_eq!(line.str("token"), "[REDACTED]");
}

/// Session ids are on the default list (`session_id`, `sessionId`), but OpenTelemetry's own
/// attribute for one, `session.id` (semantic conventions, "session" namespace), is written as is.
#[test]
fn the_opentelemetry_session_id_attribute_is_redacted() {
    let r = Redaction::default();
    assert!(r.is_denied("session_id") && r.is_denied("sessionId"));
    assert!(r.is_denied("session.id"), "session.id is not redacted");
    let lines = run(
        |l| l,
        || {
            tracing::info!(session.id = "s3cr3t-session", "login");
        },
    );
    let line = check_line(&lines[0]);
    assert_eq!(line.str("session.id"), "[REDACTED]", "{}", lines[0]);
}

//! Another `log` logger already set: `init()` with the bridge fails with a clear error and
//! installs nothing (nor changes `tracing`'s max level), so that the retry its message suggests
//! (`.log_bridge(false)`) works.
#![cfg(feature = "install")]

mod common;

use traceline::InitError;
use traceline::install::Writer;

struct Other;

impl log::Log for Other {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, _: &log::Record<'_>) {}
    fn flush(&self) {}
}

static OTHER: Other = Other;

#[test]
fn a_logger_already_set_fails_cleanly_and_the_suggested_retry_works() {
    log::set_logger(&OTHER).expect("the first logger");
    let buf = common::Capture::new();
    let level = tracing::level_filters::LevelFilter::current();
    let err = traceline::builder()
        .writer(Writer::custom(buf.clone()).non_blocking())
        .try_init()
        .expect_err("the bridge cannot be set");
    // Nor is `tracing`'s global max level changed by the subscriber that was not installed.
    assert_eq!(tracing::level_filters::LevelFilter::current(), level);
    assert!(matches!(err, InitError::Install(_)), "{err:?}");
    assert!(err.to_string().contains(".log_bridge(false)"), "{err}");
    assert!(
        !tracing::dispatcher::has_been_set(),
        "nothing installed on error"
    );

    let guard = traceline::builder()
        .writer(Writer::custom(buf.clone()).non_blocking())
        .log_bridge(false)
        .try_init()
        .expect("the retry without the bridge");
    tracing::info!("after the retry");
    drop(guard);
    assert!(buf.text().contains("after the retry"), "{}", buf.text());
}

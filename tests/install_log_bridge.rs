//! `log` records bridged by `init()` keep the record's own target, file and line on the line.
#![cfg(feature = "install")]

mod common;

use traceline::install::Writer;
use traceline::{Key, Schema};

#[test]
fn log_records_keep_their_target_file_and_line() {
    let buf = common::Capture::new();
    let _guard = traceline::builder()
        .writer(Writer::custom(buf.clone()))
        .schema(Schema::default().enable(Key::File).enable(Key::Line))
        .try_init()
        .unwrap();
    log::info!(target: "dependency::module", "from the log crate");
    let line_no = line!() - 1;
    let text = buf.text();
    let line: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .find(|l: &serde_json::Value| l["message"] == "from the log crate")
        .unwrap();
    assert_eq!(line["target"], "dependency::module", "{line}");
    assert_eq!(line["file"], file!(), "{line}");
    assert_eq!(line["line"], line_no, "{line}");
}

//! `log` records bridged by `init()` keep the record's own target, file and line on the line.

use std::io::Write;
use std::sync::{Arc, Mutex};

use traceline::install::Writer;
use traceline::{Key, Schema};
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buf {
    type Writer = Buf;
    fn make_writer(&'a self) -> Buf {
        self.clone()
    }
}

#[test]
fn log_records_keep_their_target_file_and_line() {
    let buf = Buf::default();
    let _guard = traceline::builder()
        .writer(Writer::custom(buf.clone()))
        .schema(Schema::default().enable(Key::File).enable(Key::Line))
        .try_init()
        .unwrap();
    log::info!(target: "dependency::module", "from the log crate");
    let line_no = line!() - 1;
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let line: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .find(|l: &serde_json::Value| l["message"] == "from the log crate")
        .unwrap();
    assert_eq!(line["target"], "dependency::module", "{line}");
    assert_eq!(line["file"], file!(), "{line}");
    assert_eq!(line["line"], line_no, "{line}");
}

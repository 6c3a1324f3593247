//! Fuzzes the JSON line writer: arbitrary field names, values, messages, spans and schema
//! presets. Any invalid line, duplicate key, lost value or panic aborts with the reason.
#![no_main]

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../tests/fuzz_support/mod.rs"]
mod fuzz_support;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fuzz_support::run_and_check(data);
});

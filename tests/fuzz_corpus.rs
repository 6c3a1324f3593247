//! The `json_line` fuzz target's checks on stable: every input of the committed corpus
//! (`fuzz/corpus/json_line`), then a few thousand generated inputs, each decoded into an event
//! and checked line by line (see `tests/fuzz_support`).

mod common;
mod fuzz_support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/json_line");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let data = std::fs::read(&path).expect("corpus file");
            (path.display().to_string(), data)
        })
        .collect();
    files.sort();
    files
}

/// Runs every input, then fails once, naming each input that failed and why.
fn run_all(inputs: impl IntoIterator<Item = (String, Vec<u8>)>) -> usize {
    let mut failures = Vec::new();
    let mut n = 0;
    for (name, data) in inputs {
        n += 1;
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| fuzz_support::run_and_check(&data))) {
            let why = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("panic");
            let why: String = why.chars().take(2000).collect();
            failures.push(format!("{name} ({data:02x?}):\n{why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} inputs failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    n
}

#[test]
fn corpus_inputs_give_valid_lines() {
    let n = run_all(corpus());
    assert!(n >= 20, "the corpus holds only {n} inputs");
}

/// xorshift64*: the same inputs on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Inputs shaped like the decoder's: mostly small bytes (short strings, few fields), some
/// tags that pick the tricky-character table, the name pool or repeats.
fn generated(count: usize) -> impl Iterator<Item = (String, Vec<u8>)> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..count).map(move |i| {
        let len = rng.below(160) as usize;
        let data: Vec<u8> = (0..len)
            .map(|_| match rng.below(10) {
                0..=3 => rng.below(12) as u8,
                4 => 0xC0 + rng.below(32) as u8,
                5 => 0xE0 + rng.below(16) as u8,
                // Repeats, many fields, failing `Debug`, long error chains: rarer, as they are
                // slow in a debug build.
                6 if rng.below(16) == 0 => 0xF0 + rng.below(16) as u8,
                _ => rng.next() as u8 & 0xEF,
            })
            .collect();
        (format!("generated #{i}"), data)
    })
}

#[test]
fn generated_inputs_give_valid_lines() {
    run_all(generated(3000));
}

/// The checker itself: a line that differs from what traceline writes in any way that matters
/// is rejected.
#[test]
fn checker_rejects_tampered_lines() {
    let data = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/json_line/seed-spans-3-otel-scope"),
    )
    .expect("seed");
    let input = fuzz_support::decode(&data);
    let plan = fuzz_support::plan(&input);
    let out = fuzz_support::run(&plan);
    fuzz_support::check(&plan, &out);
    let line = String::from_utf8(out.text.clone()).expect("UTF-8");
    let tampered = [
        line.replacen('{', r#"{"level":"INFO","#, 1),
        line.replacen("\"a\":1,", "", 1),
        line.replacen("\"a\":1", "\"a\":2", 1),
        line.replacen("in spans", "in spanz", 1),
        line.replacen("span level", "span\nlevel", 1),
        line.replacen("}\n", ",\"extra\":true}\n", 1),
        line.replacen("\"c late\"", "\"c late\u{2028}\"", 1),
        line.trim_end().to_owned(),
        format!("{line}{line}"),
    ];
    for (i, t) in tampered.iter().enumerate() {
        assert_ne!(t, &line, "tampering #{i} changed nothing");
        let bad = fuzz_support::Output {
            text: t.clone().into_bytes(),
            ..out.clone()
        };
        let caught = catch_unwind(AssertUnwindSafe(|| fuzz_support::check(&plan, &bad)));
        assert!(
            caught.is_err(),
            "the checker accepts tampered line #{i}: {t}"
        );
    }
}

/// Inputs that made traceline fail (`fuzz/regressions/json_line`), decoded without the field
/// limit the fuzz target keeps to stay fast.
#[test]
fn regressions_give_valid_lines() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/json_line");
    let mut failures = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("regressions directory")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for path in files {
        let data = std::fs::read(&path).expect("regression input");
        let input = fuzz_support::decode_with_max_fields(&data, 1023);
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| fuzz_support::check_input(&input))) {
            let why = e
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| e.downcast_ref::<&str>().copied())
                .unwrap_or("panic");
            failures.push(format!("{}: {why}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

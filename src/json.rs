//! The JSON writer: escaping and number formatting on the hot path.
//!
//! Everything here appends to a `Vec<u8>` and never allocates beyond growing it. Escaping is
//! complete: `"`, `\`, every control character (U+0000–U+001F, so ESC cannot reach a terminal)
//! and U+2028 / U+2029 (which break JavaScript-based consumers that split on them) are escaped,
//! so a logged string can never end a line or forge a key.
//!
//! These functions are public so that the micro-benchmarks can measure them against
//! `serde_json`; they are not needed to use the crate.

use std::fmt;

/// What to write for each byte: 0 means copy as is.
const __: u8 = 0;
const UU: u8 = b'u'; // \u00XX
const QU: u8 = b'"';
const BS: u8 = b'\\';
const BB: u8 = b'b';
const TT: u8 = b't';
const NN: u8 = b'n';
const FF: u8 = b'f';
const RR: u8 = b'r';
const E2: u8 = 1; // first byte of U+2028 / U+2029: look ahead

static ESCAPE: [u8; 256] = {
    let mut t = [__; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = UU;
        i += 1;
    }
    t[0x08] = BB;
    t[0x09] = TT;
    t[0x0A] = NN;
    t[0x0C] = FF;
    t[0x0D] = RR;
    t[b'"' as usize] = QU;
    t[b'\\' as usize] = BS;
    t[0xE2] = E2;
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";
const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// True when some byte of the word may need attention: a control character, `"`, `\`, or any
/// non-ASCII byte (U+2028/U+2029 are non-ASCII; other non-ASCII bytes are then copied as is).
#[inline(always)]
fn word_needs_attention(w: u64) -> bool {
    let lt_space = w.wrapping_sub(LO * 0x20) & !w;
    let q = w ^ (LO * b'"' as u64);
    let quote = q.wrapping_sub(LO) & !q;
    let b = w ^ (LO * b'\\' as u64);
    let backslash = b.wrapping_sub(LO) & !b;
    (lt_space | quote | backslash | w) & HI != 0
}

/// Appends `s` as a JSON string, quotes included.
///
/// ```
/// let mut out = Vec::new();
/// traceline::json::write_str(&mut out, "a \"b\"\n\u{1b}[31m");
/// assert_eq!(out, br#""a \"b\"\n\u001b[31m""#);
/// ```
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    escape_into(out, s);
    out.push(b'"');
}

/// Appends the escaped contents of `s`, without quotes.
///
/// ```
/// let mut out = b"\"".to_vec();
/// traceline::json::escape_into(&mut out, "line\u{2028}sep");
/// out.push(b'"');
/// assert_eq!(out, br#""line\u2028sep""#);
/// ```
pub fn escape_into(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let len = bytes.len();
    let mut start = 0;
    let mut i = 0;
    while i < len {
        // Skip eight clean bytes at a time.
        while i + 8 <= len {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[i..i + 8]);
            if word_needs_attention(u64::from_le_bytes(word)) {
                break;
            }
            i += 8;
        }
        let end = (i + 8).min(len);
        while i < end {
            let b = bytes[i];
            let e = ESCAPE[b as usize];
            if e == __ {
                i += 1;
                continue;
            }
            if e == E2 {
                // U+2028 is E2 80 A8, U+2029 is E2 80 A9; `s` is valid UTF-8 so the bytes exist
                // whenever the first two match.
                if bytes.get(i + 1) == Some(&0x80) && matches!(bytes.get(i + 2), Some(0xA8 | 0xA9))
                {
                    out.extend_from_slice(&bytes[start..i]);
                    out.extend_from_slice(if bytes[i + 2] == 0xA8 {
                        b"\\u2028"
                    } else {
                        b"\\u2029"
                    });
                    i += 3;
                    start = i;
                } else {
                    i += 1;
                }
                continue;
            }
            out.extend_from_slice(&bytes[start..i]);
            if e == UU {
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xF) as usize],
                ]);
            } else {
                out.extend_from_slice(&[b'\\', e]);
            }
            i += 1;
            start = i;
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// A [`fmt::Write`] that escapes everything written through it into a JSON string body.
///
/// `Debug` and `Display` output goes straight into the line, with no `String` in between.
///
/// ```
/// use std::fmt::Write;
/// let mut out = Vec::new();
/// write!(traceline::json::Escaper(&mut out), "{:?}", "quoted").unwrap();
/// assert_eq!(out, br#"\"quoted\""#);
/// ```
pub struct Escaper<'a>(pub &'a mut Vec<u8>);

impl fmt::Write for Escaper<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

/// Appends `value`'s `Debug` output as a JSON string.
pub(crate) fn write_debug(out: &mut Vec<u8>, value: &dyn fmt::Debug) {
    out.push(b'"');
    let start = out.len();
    if fmt::write(&mut Escaper(out), format_args!("{value:?}")).is_err() {
        // A Debug impl that fails must not leave half a value: replace it.
        out.truncate(start);
        out.extend_from_slice(b"<Debug failed>");
    }
    out.push(b'"');
}

/// Appends `value`'s `Display` output as a JSON string.
pub(crate) fn write_display(out: &mut Vec<u8>, value: &dyn fmt::Display) {
    out.push(b'"');
    let start = out.len();
    if fmt::write(&mut Escaper(out), format_args!("{value}")).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"<Display failed>");
    }
    out.push(b'"');
}

/// Appends an unsigned integer.
#[inline]
pub(crate) fn write_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends a signed integer.
#[inline]
pub(crate) fn write_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends a 128-bit unsigned integer, every digit exact.
#[inline]
pub(crate) fn write_u128(out: &mut Vec<u8>, v: u128) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends a 128-bit signed integer, every digit exact.
#[inline]
pub(crate) fn write_i128(out: &mut Vec<u8>, v: i128) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends a float. JSON has no NaN or infinity, so those become the strings `"NaN"`,
/// `"Infinity"` and `"-Infinity"` (the spelling JavaScript, Jackson and Elasticsearch accept).
///
/// ```
/// let mut out = Vec::new();
/// traceline::json::write_f64(&mut out, f64::NAN);
/// out.push(b' ');
/// traceline::json::write_f64(&mut out, 0.5);
/// assert_eq!(out, b"\"NaN\" 0.5");
/// ```
#[inline]
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    } else if v.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if v > 0.0 {
        out.extend_from_slice(b"\"Infinity\"");
    } else {
        out.extend_from_slice(b"\"-Infinity\"");
    }
}

/// Appends `bytes.len() * 2` lowercase hex digits.
#[inline]
pub(crate) fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 0xF) as usize]);
    }
}

/// Appends `"key":` with the key escaped.
#[inline]
pub(crate) fn write_key(out: &mut Vec<u8>, key: &str) {
    write_str(out, key);
    out.push(b':');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut v = Vec::new();
        write_str(&mut v, s);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn escapes_every_control_character() {
        for c in 0u32..0x20 {
            let s = char::from_u32(c).unwrap().to_string();
            let out = esc(&s);
            assert!(out.starts_with("\"\\"), "{c:#x} -> {out}");
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, s);
        }
        assert_eq!(esc("\u{1b}"), r#""\u001b""#);
        assert_eq!(esc("\u{7f}"), "\"\u{7f}\"");
    }

    #[test]
    fn escapes_line_separators_and_keeps_other_non_ascii() {
        assert_eq!(esc("a\u{2028}b\u{2029}c"), r#""a\u2028b\u2029c""#);
        assert_eq!(esc("日本\u{2027}é"), "\"日本\u{2027}é\"");
    }

    #[test]
    fn matches_serde_json_on_long_mixed_input() {
        let s = "0123456789abcdef\"quoted\" \\ back\tslash\r\n and ünïcödé \u{2028} end ".repeat(7);
        for cut in 0..s.len() {
            if !s.is_char_boundary(cut) {
                continue;
            }
            let part = &s[cut..];
            let out = esc(part);
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, part);
            assert!(!out.contains('\n') && !out.contains('\u{2028}'));
        }
    }

    #[test]
    fn non_finite_floats_are_valid_json() {
        for v in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            1e300,
            5e-324,
        ] {
            let mut out = Vec::new();
            write_f64(&mut out, v);
            serde_json::from_slice::<serde_json::Value>(&out).unwrap();
        }
    }

    #[test]
    fn u128_is_exact() {
        let mut out = Vec::new();
        write_u128(&mut out, u128::MAX);
        assert_eq!(out, b"340282366920938463463374607431768211455");
        out.clear();
        write_i128(&mut out, i128::MIN);
        assert_eq!(out, b"-170141183460469231731687303715884105728");
    }
}

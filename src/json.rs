//! The JSON writer: escaping and number formatting on the hot path.
//!
//! Everything here appends to a `Vec<u8>` and never allocates beyond growing it. Escaping is
//! complete: `"`, `\`, every control character (C0, U+0000–U+001F, so ESC cannot reach a
//! terminal; DEL, U+007F; C1, U+0080–U+009F, among them the one-character CSI that starts a
//! terminal colour code and NEL, which Python's `splitlines` takes for a line break) and
//! U+2028 / U+2029 (which break JavaScript-based consumers that split on them) are escaped, so
//! a logged string can never end a line or forge a key.
//!
//! A string of 8 to 32 bytes, on x86-64, is classified whole with SSE2 compares (one or two
//! overlapping 16-byte vectors, one bit per byte): a clean one is copied a word at a time, and
//! in one that needs escaping only the bytes that escape are visited, each clean run between
//! them stored as whole words and each escape as one word.
//!
//! Any other string is first checked a word at a time; a clean one (the common case) is copied
//! whole. One that needs escaping takes one of three paths from its first dirty word on:
//! - at most 32 bytes left: a byte at a time with a table, clean stretches four bytes per
//!   branch, each clean run and each escape stored as one or two words (no copy calls);
//! - longer, on x86-64 with SSSE3 (checked once at run time): 16 bytes at a time, classified
//!   with vector compares and written with byte shuffles from tables indexed by which bytes
//!   escape, no branch per escape (a chunk with a C1 control or U+2028/U+2029 goes byte by
//!   byte);
//! - longer, without SSSE3 (other CPUs and architectures): a word at a time.
//!
//! The crate's only `unsafe` code outside its tests is in this module, in four places: the
//! call into the SSSE3 code once the CPU is known to have it, the calls into two small SSE2
//! functions (the escape compares, and the hex digits of ids; compiled only for targets that
//! have SSE2, as every x86-64 CPU does), and setting a line's length over bytes written into
//! its free capacity. What each gains, measured with
//! `benches/primitives.rs`, is in `benches/HISTORY.md` ("Escaping 16 bytes at a time", "Short
//! strings classified with SSE2").
//!
//! These functions are public so that the micro-benchmarks can measure them against
//! `serde_json`; they are not needed to use the crate.

use std::fmt;

#[cfg(target_arch = "x86_64")]
mod ssse3;
mod tail;

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
const C2: u8 = 2; // first byte of U+0080–U+00BF: look ahead for a C1 control

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
    t[0x7F] = UU;
    t[0xC2] = C2;
    t[0xE2] = E2;
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";
const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// One bit (the high bit of the byte) for each byte of the little-endian word `w` that may need
/// attention: a control character, `"`, `\\`, DEL, `0xC2` (the first byte of a C1 control) or
/// `0xE2` (the first byte of U+2028 / U+2029).
/// Other non-ASCII bytes are copied as they are.
///
/// Bits above a set bit can be false positives (borrows move upward), but the lowest set bit is
/// always a byte that needs attention, and a zero mask means the word is clean.
#[inline(always)]
fn attention_mask(w: u64) -> u64 {
    let lt_space = w.wrapping_sub(LO * 0x20) & !w;
    let q = w ^ (LO * b'"' as u64);
    let quote = q.wrapping_sub(LO) & !q;
    let b = w ^ (LO * b'\\' as u64);
    let backslash = b.wrapping_sub(LO) & !b;
    let e = w ^ (LO * 0xE2);
    let e2 = e.wrapping_sub(LO) & !e;
    let c = w ^ (LO * 0xC2);
    let c2 = c.wrapping_sub(LO) & !c;
    let d = w ^ (LO * 0x7F);
    let del = d.wrapping_sub(LO) & !d;
    (lt_space | quote | backslash | e2 | c2 | del) & HI
}

/// Appends the first `len` bytes of `block` with one copy of constant size (no call for a
/// length known only at run time), then cuts the line back to them.
#[inline(always)]
pub(crate) fn put_block<const N: usize>(out: &mut Vec<u8>, block: &[u8; N], len: usize) {
    debug_assert!(len <= N);
    let end = out.len() + len;
    out.extend_from_slice(block);
    out.truncate(end);
}

#[inline(always)]
fn load(bytes: &[u8], i: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[i..i + 8]);
    u64::from_le_bytes(word)
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
    escape::<true>(out, s);
}

/// Appends the escaped contents of `s`, without quotes.
///
/// ```
/// let mut out = b"\"".to_vec();
/// traceline::json::escape_into(&mut out, "line\u{2028}sep");
/// out.push(b'"');
/// assert_eq!(out, br#""line\u2028sep""#);
/// ```
#[inline]
pub fn escape_into(out: &mut Vec<u8>, s: &str) {
    escape::<false>(out, s);
}

/// Appends the escaped contents of `s`, in quotes when `QUOTED`. The quotes are written with
/// the contents: each separate push would be one more trip through the line's length in
/// memory.
#[inline(always)]
fn escape<const QUOTED: bool>(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let len = bytes.len();
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if (8..=SCAN).contains(&len) {
        // Every byte classified at once; a clean string copied a word at a time.
        let m = short_mask(bytes);
        if m != 0 {
            return escape_masked::<QUOTED>(out, bytes, m);
        }
        return put_short_clean::<QUOTED>(out, bytes);
    }
    // Clean strings (the common case) are checked 16 bytes at a time (see `may_escape`), the
    // rest a word at a time, and copied at once.
    let mut i = 0;
    while i + 16 <= len {
        if may_escape(load(bytes, i), load(bytes, i + 8)) {
            return escape_rest::<QUOTED>(out, bytes, 0, i);
        }
        i += 16;
    }
    while i + 8 <= len {
        if attention_mask(load(bytes, i)) != 0 {
            return escape_rest::<QUOTED>(out, bytes, 0, i);
        }
        i += 8;
    }
    if len < 8 {
        // The string padded with spaces: checked, then stored as one word cut to length.
        let mut w = LO * 0x20;
        for (j, &b) in bytes.iter().enumerate() {
            w ^= u64::from(b ^ 0x20) << (8 * j);
        }
        if may_escape(w, w) {
            return escape_rest::<QUOTED>(out, bytes, w, 0);
        }
        if QUOTED {
            // `"`, the string, `"`: one block.
            let text = u128::from(w) & ((1 << (8 * len)) - 1);
            let block = 0x22 | text << 8 | 0x22 << (8 * (len + 1));
            put_block(out, &block.to_le_bytes(), len + 2);
        } else {
            put_block(out, &w.to_le_bytes(), len);
        }
        return;
    }
    // Every byte before `i` is clean, so the last whole word (overlapping them) gives an exact
    // answer without copying through memory.
    let last = load(bytes, len - 8);
    if i < len && attention_mask(last) != 0 {
        return escape_rest::<QUOTED>(out, bytes, 0, i);
    }
    if len <= 16 {
        // The first and the last word, overlapping: two stores instead of a call.
        tail::append(
            out,
            2 * 8 + 2,
            #[inline(always)]
            |t| {
                if QUOTED {
                    t.push(b'"');
                }
                t.put_block(&load(bytes, 0).to_le_bytes(), len - 8);
                t.put_block(&last.to_le_bytes(), 8);
                if QUOTED {
                    t.push(b'"');
                }
            },
        );
    } else if QUOTED {
        out.reserve(len + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
    } else {
        out.extend_from_slice(bytes);
    }
}

/// Like [`attention_mask`], but exact in every byte (no borrows between bytes), so every set
/// bit can be acted on.
#[inline(always)]
fn exact_mask(w: u64) -> u64 {
    const M: u64 = LO * 0x7F;
    #[inline(always)]
    fn zero_bytes(x: u64) -> u64 {
        !(((x & M) + M) | x | M)
    }
    let lt_space = !(((w & M) + LO * 0x60) | w) & HI;
    lt_space
        | zero_bytes(w ^ (LO * b'"' as u64))
        | zero_bytes(w ^ (LO * b'\\' as u64))
        | zero_bytes(w ^ (LO * 0xE2))
        | zero_bytes(w ^ (LO * 0xC2))
        | zero_bytes(w ^ (LO * 0x7F))
}

/// The escape sequence for each byte that needs one (length 0: none).
static SEQUENCES: [([u8; 6], u8); 256] = {
    let mut t = [([0u8; 6], 0u8); 256];
    let mut i = 0;
    while i < 256 {
        let e = ESCAPE[i];
        if e == UU {
            t[i] = ([b'\\', b'u', b'0', b'0', HEX[i >> 4], HEX[i & 0xF]], 6);
        } else if e != __ && e != E2 && e != C2 {
            t[i] = ([b'\\', e, 0, 0, 0, 0], 2);
        }
        i += 1;
    }
    t
};

/// Strings up to this long take [`escape_scan`].
const SCAN: usize = 32;

/// Each escaped byte's sequence in the low bytes of a word (little-endian), its length in the
/// top byte; 1 for a C2 or E2 (looked at with the bytes after it), 0 for the others.
static PACKED: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let (seq, n) = SEQUENCES[i];
        if n != 0 {
            let mut w = (n as u64) << 56;
            let mut j = 0;
            while j < n as usize {
                w |= (seq[j] as u64) << (8 * j);
                j += 1;
            }
            t[i] = w;
        } else if ESCAPE[i] != __ {
            // A C2 or E2: looked at with the bytes after it.
            t[i] = 1;
        }
        i += 1;
    }
    t
};

/// Escapes a string with at most [`SCAN`] bytes left from `i` (`bytes[..i]` clean; `padded`:
/// the string in one word padded with spaces, when it is shorter than a word), in quotes when
/// `QUOTED`.
///
/// It looks at a byte at a time, as `serde_json` does: a table lookup and a branch per byte,
/// which the CPU predicts and runs ahead of, with no data dependence from byte to byte. Clean
/// stretches go four bytes per branch, the clean runs between escapes are copied as one or
/// two words (no copy call), and each escape is one word from [`PACKED`]. The vector code's
/// fixed costs (a whole chunk classified, a chain of tables behind each escape) do not pay off
/// on a handful of bytes: it takes 7–50 % longer on strings of 17 to 22 bytes with an escape or
/// two.
#[inline(always)]
fn escape_scan<const QUOTED: bool>(out: &mut Vec<u8>, bytes: &[u8], padded: u64, i: usize) {
    let len = bytes.len();
    debug_assert!(len - i <= SCAN);
    out.reserve(i + 6 * (len - i) + 2);
    if QUOTED {
        out.push(b'"');
    }
    let mut start = 0;
    let mut k = i;
    while k < len {
        if k + 4 <= len {
            // Four lookups, one branch.
            let f = |j: usize| ESCAPE[usize::from(bytes[k + j])];
            if f(0) | f(1) | f(2) | f(3) == __ {
                k += 4;
                continue;
            }
        }
        let e = PACKED[usize::from(bytes[k])];
        if e == 0 {
            k += 1;
            continue;
        }
        let n = (e >> 56) as usize;
        if n == 2 {
            scan_run(out, bytes, padded, start, k);
            out.extend_from_slice(&e.to_le_bytes()[..2]);
            k += 1;
            start = k;
        } else if n != 0 {
            scan_run(out, bytes, padded, start, k);
            out.extend_from_slice(&e.to_le_bytes()[..6]);
            k += 1;
            start = k;
        } else if let Some((seq, n, used)) = escape_lead(bytes, k) {
            scan_run(out, bytes, padded, start, k);
            out.extend_from_slice(&seq[..n]);
            k += used;
            start = k;
        } else {
            k += 1;
        }
    }
    scan_run(out, bytes, padded, start, len);
    if QUOTED {
        out.push(b'"');
    }
}

/// Which of the 16 bytes `lo` (the first 8) and `hi` (the last 8) may need escaping, one bit
/// each (bit `j`: byte `j`; exact, with the same meaning as [`exact_mask`]'s bits), from a few
/// SSE2 compares.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn sse2_mask(lo: u64, hi: u64) -> u32 {
    // `#[inline]`: without it the compiler keeps this a call of its own, in every caller
    // (primitives bench: short strings 0.62× → 0.42× `serde_json`'s time, 0.90× → 0.75× with
    // quotes).
    #[target_feature(enable = "sse2")]
    #[inline]
    fn mask(lo: u64, hi: u64) -> u32 {
        use core::arch::x86_64::*;
        let v = _mm_set_epi64x(hi as i64, lo as i64);
        let splat = |b: u8| _mm_set1_epi8(b as i8);
        let controls = _mm_cmpeq_epi8(_mm_min_epu8(v, splat(0x1F)), v);
        let quote = _mm_cmpeq_epi8(v, splat(b'"'));
        let backslash = _mm_cmpeq_epi8(v, splat(b'\\'));
        let del = _mm_cmpeq_epi8(v, splat(0x7F));
        let c2 = _mm_cmpeq_epi8(v, splat(0xC2));
        let e2 = _mm_cmpeq_epi8(v, splat(0xE2));
        let any = _mm_or_si128(
            _mm_or_si128(_mm_or_si128(controls, quote), _mm_or_si128(backslash, del)),
            _mm_or_si128(c2, e2),
        );
        _mm_movemask_epi8(any) as u32
    }
    // SAFETY: compiled only for targets with SSE2 (every x86-64 CPU has it: it is part of the
    // architecture's baseline), so the CPU running this has the feature `mask` is built for.
    #[allow(unsafe_code)]
    unsafe {
        mask(lo, hi)
    }
}

/// Whether one of the 16 bytes `lo` and `hi` may need escaping: with SSE2 compares where the
/// target has them, else a word at a time.
#[inline(always)]
fn may_escape(lo: u64, hi: u64) -> bool {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    return sse2_mask(lo, hi) != 0;
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    return attention_mask(lo) | attention_mask(hi) != 0;
}

/// [`sse2_mask`] for a string of 8 to [`SCAN`] bytes: bit `j` for byte `j` (two overlapping
/// vectors past 16 bytes; a byte in both has the same bit in each).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn short_mask(bytes: &[u8]) -> u32 {
    let len = bytes.len();
    debug_assert!((8..=SCAN).contains(&len));
    if len <= 16 {
        let m = sse2_mask(load(bytes, 0), load(bytes, len - 8));
        (m & 0xFF) | (m >> 8) << (len - 8)
    } else {
        let head = sse2_mask(load(bytes, 0), load(bytes, 8));
        let end = sse2_mask(load(bytes, len - 16), load(bytes, len - 8));
        head | end << (len - 16)
    }
}

/// Appends a clean string of 8 to [`SCAN`] bytes, in quotes when `QUOTED`: whole words, the
/// last one overlapping the one before (no copy call).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn put_short_clean<const QUOTED: bool>(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len();
    debug_assert!((8..=SCAN).contains(&len));
    tail::append(
        out,
        SCAN + 2 + 8,
        #[inline(always)]
        |t| {
            if QUOTED {
                t.push(b'"');
            }
            let word = |k: usize| load(bytes, k).to_le_bytes();
            if len <= 16 {
                t.put_block(&word(0), len - 8);
            } else if len <= 24 {
                t.put_block(&word(0), 8);
                t.put_block(&word(8), len - 16);
            } else {
                t.put_block(&word(0), 8);
                t.put_block(&word(8), 8);
                t.put_block(&word(16), len - 24);
            }
            t.put_block(&word(len - 8), 8);
            if QUOTED {
                t.push(b'"');
            }
        },
    );
}

/// Escapes a string of 8 to [`SCAN`] bytes that needs it, in quotes when `QUOTED`: every byte
/// is classified at once (two overlapping 16-byte vectors, one bit per byte), then only the
/// bytes that escape are visited, each clean run between them copied as one or two words and
/// each escape stored as one word. No branch per clean byte, and none whose outcome depends on
/// where the escapes are but the loop over them.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(never)]
fn escape_masked<const QUOTED: bool>(out: &mut Vec<u8>, bytes: &[u8], mut m: u32) {
    let len = bytes.len();
    debug_assert!((8..=SCAN).contains(&len));
    tail::append(
        out,
        6 * len + 2 + 8,
        #[inline(always)]
        |t| {
            if QUOTED {
                t.push(b'"');
            }
            let mut start = 0;
            while m != 0 {
                let pos = m.trailing_zeros() as usize;
                m &= m - 1;
                let e = PACKED[usize::from(bytes[pos])];
                let n = (e >> 56) as usize;
                if n != 0 {
                    put_run(t, bytes, start, pos);
                    t.put_block(&e.to_le_bytes(), n);
                    start = pos + 1;
                } else if let Some((seq, n, used)) = escape_lead(bytes, pos) {
                    // A C1 control or U+2028 / U+2029 (the bytes after its first are never
                    // flagged).
                    put_run(t, bytes, start, pos);
                    t.put(&seq[..n]);
                    start = pos + used;
                }
            }
            put_run(t, bytes, start, len);
            if QUOTED {
                t.push(b'"');
            }
        },
    );
}

/// Appends the clean run `bytes[start..end]` (`bytes` at least 8 bytes long) a word at a time:
/// whole words stored, the next store written over what the last one put past the run (the
/// tail has 7 bytes of room past the escaped string for that).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn put_run(t: &mut tail::Tail<'_>, bytes: &[u8], start: usize, end: usize) {
    let len = bytes.len();
    let mut k = start;
    while k < end {
        let w = if k + 8 <= len {
            load(bytes, k)
        } else {
            load(bytes, len - 8) >> (8 * (k + 8 - len))
        };
        t.put_block(&w.to_le_bytes(), (end - k).min(8));
        k += 8;
    }
}

/// [`escape_at`] for a C2 or E2 byte, out of the way.
#[cold]
#[inline(never)]
fn escape_lead(bytes: &[u8], p: usize) -> Option<([u8; 6], usize, usize)> {
    escape_at(bytes, p)
}

/// [`copy_run`] for [`escape_scan`]: a string shorter than a word has its runs cut from
/// `padded`, the string in one word.
#[inline(always)]
fn scan_run(out: &mut Vec<u8>, bytes: &[u8], padded: u64, start: usize, end: usize) {
    if bytes.len() < 8 {
        put_block(out, &(padded >> (8 * start)).to_le_bytes(), end - start);
    } else {
        copy_run(out, bytes, start, end);
    }
}

/// [`escape_from`], or [`escape_scan`] for a short string; in quotes when `QUOTED`.
#[inline(always)]
fn escape_rest<const QUOTED: bool>(out: &mut Vec<u8>, bytes: &[u8], padded: u64, i: usize) {
    if bytes.len() - i <= SCAN {
        escape_scan::<QUOTED>(out, bytes, padded, i);
    } else {
        if QUOTED {
            out.push(b'"');
        }
        escape_from(out, bytes, i);
        if QUOTED {
            out.push(b'"');
        }
    }
}

/// Escapes `bytes`, of which `bytes[..i]` are known to be clean: 16 bytes at a time with byte
/// shuffles where the CPU has them (x86-64 with SSSE3), else a word at a time.
#[inline(never)]
fn escape_from(out: &mut Vec<u8>, bytes: &[u8], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if ssse3::available() {
        // SAFETY: the CPU has SSSE3, checked just above; the function is safe code otherwise.
        #[allow(unsafe_code)]
        unsafe {
            ssse3::escape_from(out, bytes, i)
        };
        return;
    }
    escape_from_scalar(out, bytes, i);
}

/// The escape for the byte at `pos`: its sequence (padded to 6 bytes), the sequence's length,
/// and how many bytes of `bytes` it stands for. `None` for a byte that stays as it is, among
/// them a C2 or E2 that starts a character other than a C1 control or U+2028 / U+2029.
#[inline(always)]
fn escape_at(bytes: &[u8], pos: usize) -> Option<([u8; 6], usize, usize)> {
    let b = bytes[pos];
    let (seq, n) = SEQUENCES[usize::from(b)];
    if n != 0 {
        return Some((seq, usize::from(n), 1));
    }
    match (b, bytes.get(pos + 1), bytes.get(pos + 2)) {
        // U+0080–U+009F (the C1 controls) are C2 80 to C2 9F; other characters starting with
        // C2 stay.
        (0xC2, Some(&next @ 0x80..=0x9F), _) => Some((
            [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(next >> 4)],
                HEX[usize::from(next & 0xF)],
            ],
            6,
            2,
        )),
        // U+2028 is E2 80 A8, U+2029 is E2 80 A9; other characters starting with E2 stay.
        (0xE2, Some(0x80), Some(&last @ (0xA8 | 0xA9))) => Some((
            if last == 0xA8 {
                *b"\\u2028"
            } else {
                *b"\\u2029"
            },
            6,
            3,
        )),
        _ => None,
    }
}

/// What [`escape_scan`] takes as `padded`: a string shorter than a word, in one word padded
/// with spaces (0 for a longer one, which it does not use).
#[inline(always)]
fn padded(bytes: &[u8]) -> u64 {
    if bytes.len() < 8 {
        last_word(bytes, 0)
    } else {
        0
    }
}

/// The bytes of `bytes` from `k` (fewer than 8) as a word padded with spaces, put together in
/// registers: a word loaded from bytes just stored one by one would wait for them.
#[inline(always)]
fn last_word(bytes: &[u8], k: usize) -> u64 {
    let len = bytes.len();
    let n = len - k;
    debug_assert!(n < 8);
    let spaces = (LO * 0x20) << (8 * n);
    if len >= 8 {
        (load(bytes, len - 8) >> (8 * (8 - n))) | spaces
    } else {
        let mut w = spaces;
        for (j, &b) in bytes[k..].iter().enumerate() {
            w |= u64::from(b) << (8 * j);
        }
        w
    }
}

/// [`escape_from`], a word at a time.
fn escape_from_scalar(out: &mut Vec<u8>, bytes: &[u8], mut i: usize) {
    let len = bytes.len();
    out.reserve(len + 16);
    let mut start = 0;
    while i < len {
        let mut m = exact_mask(if i + 8 <= len {
            load(bytes, i)
        } else {
            last_word(bytes, i)
        });
        while m != 0 {
            let pos = i + (m.trailing_zeros() / 8) as usize;
            m &= m - 1;
            // The bytes after a C2 or E2 are never flagged themselves.
            if let Some((seq, n, used)) = escape_at(bytes, pos) {
                copy_run(out, bytes, start, pos);
                // Constant lengths: copied inline, no call.
                if n == 2 {
                    out.extend_from_slice(&seq[..2]);
                } else {
                    out.extend_from_slice(&seq);
                }
                start = pos + used;
            }
        }
        i += 8;
    }
    out.extend_from_slice(&bytes[start.min(len)..]);
}

/// Appends the clean run `bytes[start..end]`: a run of up to 8 bytes (the common case
/// between escapes) as one word stored and cut back to length, no call.
#[inline(always)]
fn copy_run(out: &mut Vec<u8>, bytes: &[u8], start: usize, end: usize) {
    let run = end - start;
    if run == 0 {
    } else if run <= 8 && start + 8 <= bytes.len() {
        put_block(out, &load(bytes, start).to_le_bytes(), run);
    } else if run <= 8 && end >= 8 {
        // The word ending with the run, moved down to it.
        let w = load(bytes, end - 8) >> (8 * (8 - run));
        put_block(out, &w.to_le_bytes(), run);
    } else if (8..=16).contains(&run) {
        // Its first and its last word, overlapping.
        put_block(out, &load(bytes, start).to_le_bytes(), run - 8);
        out.extend_from_slice(&load(bytes, end - 8).to_le_bytes());
    } else {
        out.extend_from_slice(&bytes[start..end]);
    }
}

/// Pieces up to this long are checked and copied at once (see [`is_clean`]).
const SHORT: usize = 16;

/// Whether a short piece needs no escaping (exact: the word checks used from 9 bytes on answer
/// "is any byte one that needs attention" exactly).
/// The pieces of up to 8 bytes (`": "`, `", "`, `" { "`, short names) take a table lookup per
/// byte, with no loop; longer ones (a message, a string value) two overlapping words.
#[inline(always)]
fn is_clean(bytes: &[u8]) -> bool {
    let ok = |b: u8| ESCAPE[b as usize] == __;
    match *bytes {
        [] => true,
        [a] => ok(a),
        [a, b] => ok(a) & ok(b),
        [a, b, c] => ok(a) & ok(b) & ok(c),
        [a, b, c, d] => ok(a) & ok(b) & ok(c) & ok(d),
        // 5 to 8 bytes: the first 4 and the last 4, which overlap.
        [a, b, c, d, ref rest @ ..] if rest.len() <= 4 => {
            let [e, f, g, h] = [
                bytes[bytes.len() - 4],
                bytes[bytes.len() - 3],
                bytes[bytes.len() - 2],
                bytes[bytes.len() - 1],
            ];
            ok(a) & ok(b) & ok(c) & ok(d) & ok(e) & ok(f) & ok(g) & ok(h)
        }
        // 9 bytes and more: a word at a time, the last word overlapping the one before.
        _ => {
            let n = bytes.len();
            let mut mask = attention_mask(load(bytes, n - 8));
            let mut i = 0;
            while i + 8 < n {
                mask |= attention_mask(load(bytes, i));
                i += 8;
            }
            mask == 0
        }
    }
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
        let bytes = s.as_bytes();
        if bytes.len() <= SHORT {
            if is_clean(bytes) {
                self.0.extend_from_slice(bytes);
            } else {
                escape_scan::<false>(self.0, bytes, padded(bytes), 0);
            }
        } else {
            escape_into(self.0, s);
        }
        Ok(())
    }

    #[inline]
    fn write_char(&mut self, c: char) -> fmt::Result {
        if c.is_ascii() {
            let (seq, n) = &SEQUENCES[c as usize];
            match *n {
                0 => self.0.push(c as u8),
                2 => self.0.extend_from_slice(&seq[..2]),
                _ => self.0.extend_from_slice(seq),
            }
            Ok(())
        } else {
            self.write_str(c.encode_utf8(&mut [0; 4]))
        }
    }
}

/// Appends `args` escaped, without quotes, cut after `max` bytes of text (before escaping)
/// with [`TRUNCATED`] after them. A `Debug`/`Display` impl that fails leaves `failed`; one that
/// panics leaves `panicked`, and the panic goes no further.
#[inline]
pub(crate) fn write_fmt_body(
    out: &mut Vec<u8>,
    args: fmt::Arguments<'_>,
    max: usize,
    failed: &[u8],
    panicked: &[u8],
) {
    let start = out.len();
    let mut w = Bounded {
        out: &mut *out,
        left: max,
        cut: false,
        stage: [0; STAGE],
        fill: 0,
    };
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fmt::write(&mut w, args)));
    w.flush();
    let cut = w.cut;
    match result {
        // Cut at the limit (whether or not the impl passed the error on).
        Ok(_) if cut => out.extend_from_slice(TRUNCATED.as_bytes()),
        Ok(Ok(())) => {}
        Ok(Err(_)) => {
            // A Debug impl that fails must not leave half a value: replace it.
            out.truncate(start);
            out.extend_from_slice(failed);
        }
        Err(_) => {
            out.truncate(start);
            out.extend_from_slice(panicked);
        }
    }
}

/// What follows a value cut at the field length limit, inside its string.
pub(crate) const TRUNCATED: &str = "…[truncated]";

/// Bytes [`Bounded`] gathers before they go into the line.
const STAGE: usize = 64;

/// An [`Escaper`] that takes at most `left` more bytes, then fails (which ends the `Debug` or
/// `Display` impl writing through it early: a huge value is never formatted whole).
///
/// The short pieces a `Debug` impl writes one by one (`" { "`, a field name, `": "`, a small
/// number, a `"` escaped) are gathered in a buffer on the stack with a few fixed-size stores
/// each, and go into the line together: one copy per value instead of one per piece.
struct Bounded<'a> {
    out: &'a mut Vec<u8>,
    left: usize,
    cut: bool,
    stage: [u8; STAGE],
    /// How many bytes of `stage` are gathered.
    fill: usize,
}

impl fmt::Write for Bounded<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let bytes = s.as_bytes();
        let n = bytes.len();
        // Pieces of up to 3 bytes (`": "`, `", "`, `" { "`, a digit) are the most common: their
        // path needs few registers. Longer ones are checked a word at a time, out of line.
        if n > 3 {
            return self.write_str_long(s);
        }
        if n <= self.left && self.fill <= STAGE - SHORT {
            if n == 0 {
                return Ok(());
            }
            let (a, b, c) = (bytes[0], bytes[n / 2], bytes[n - 1]);
            if ESCAPE[a as usize] | ESCAPE[b as usize] | ESCAPE[c as usize] == __ {
                let at = self.fill;
                self.stage[at] = a;
                self.stage[at + n / 2] = b;
                self.stage[at + n - 1] = c;
                self.fill += n;
                self.left -= n;
                return Ok(());
            }
        }
        self.write_str_slow(s)
    }

    #[inline]
    fn write_char(&mut self, c: char) -> fmt::Result {
        if c.is_ascii() && self.left != 0 && self.fill <= STAGE - SHORT {
            let at = self.fill;
            // An escape sequence is at most 6 bytes.
            let (seq, n) = &SEQUENCES[c as usize];
            let n = if *n == 0 {
                self.stage[at] = c as u8;
                1
            } else {
                self.stage[at..at + 6].copy_from_slice(seq);
                *n as usize
            };
            self.fill += n;
            self.left -= 1;
            return Ok(());
        }
        self.write_char_slow(c)
    }
}

impl Bounded<'_> {
    /// Moves the gathered bytes into the line: the whole buffer, a copy of constant size, cut
    /// back to what was gathered.
    #[inline]
    fn flush(&mut self) {
        put_block(self.out, &self.stage, self.fill);
        self.fill = 0;
    }

    /// [`fmt::Write::write_str`] for pieces of more than 3 bytes.
    #[inline(never)]
    fn write_str_long(&mut self, s: &str) -> fmt::Result {
        let bytes = s.as_bytes();
        if bytes.len() <= self.left && self.fill <= STAGE - SHORT {
            let at = self.fill;
            if let Ok(room) = <&mut [u8; SHORT]>::try_from(&mut self.stage[at..at + SHORT]) {
                if put_clean(room, bytes) {
                    self.fill += bytes.len();
                    self.left -= bytes.len();
                    return Ok(());
                }
            }
        }
        self.write_str_slow(s)
    }

    #[inline(never)]
    fn write_str_slow(&mut self, s: &str) -> fmt::Result {
        self.flush();
        if s.len() <= self.left {
            self.left -= s.len();
            return fmt::Write::write_str(&mut Escaper(self.out), s);
        }
        let head = &s[..floor_char_boundary(s, self.left)];
        let _ = fmt::Write::write_str(&mut Escaper(self.out), head);
        self.left = 0;
        self.cut = true;
        Err(fmt::Error)
    }

    #[inline(never)]
    fn write_char_slow(&mut self, c: char) -> fmt::Result {
        self.flush();
        if c.len_utf8() <= self.left {
            self.left -= c.len_utf8();
            return fmt::Write::write_char(&mut Escaper(self.out), c);
        }
        self.left = 0;
        self.cut = true;
        Err(fmt::Error)
    }
}

/// Stores `bytes` (4 to [`SHORT`] bytes long) at the start of `room` when they need no escaping
/// (and returns `true`), with fixed-size stores: the piece's first and last 4 or 8 bytes, which
/// overlap. Leaves `room` in any state when it returns `false`.
#[inline(always)]
fn put_clean(room: &mut [u8; SHORT], bytes: &[u8]) -> bool {
    let n = bytes.len();
    if n > 8 {
        if n > SHORT {
            return false;
        }
        let (lo, hi) = (load(bytes, 0), load(bytes, n - 8));
        if may_escape(lo, hi) {
            return false;
        }
        room[..8].copy_from_slice(&lo.to_le_bytes());
        room[n - 8..n].copy_from_slice(&hi.to_le_bytes());
        true
    } else if n >= 4 {
        let (lo, hi) = (load4(bytes, 0), load4(bytes, n - 4));
        let w = u64::from(lo) | u64::from(hi) << 32;
        if may_escape(w, w) {
            return false;
        }
        room[..4].copy_from_slice(&lo.to_le_bytes());
        room[n - 4..n].copy_from_slice(&hi.to_le_bytes());
        true
    } else {
        false
    }
}

#[inline(always)]
fn load4(bytes: &[u8], i: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[i..i + 4]);
    u32::from_le_bytes(word)
}

/// The largest `i <= max` that is a character boundary of `s`.
pub(crate) fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut i = max.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Appends `s` escaped, without quotes, cut after `max` bytes with a marker saying how many
/// bytes were left out.
#[inline]
pub(crate) fn escape_max(out: &mut Vec<u8>, s: &str, max: usize) {
    if s.len() <= max {
        return escape_into(out, s);
    }
    let head = floor_char_boundary(s, max);
    escape_into(out, &s[..head]);
    out.extend_from_slice("…[truncated ".as_bytes());
    write_u64(out, (s.len() - head) as u64);
    out.extend_from_slice(b" bytes]");
}

/// Appends `s` as a JSON string, cut after `max` bytes (see [`escape_max`]).
#[inline]
pub(crate) fn write_str_max(out: &mut Vec<u8>, s: &str, max: usize) {
    if s.len() <= max {
        return write_str(out, s);
    }
    out.push(b'"');
    escape_max(out, s, max);
    out.push(b'"');
}

/// Appends `value`'s `Debug` output as a JSON string, cut after `max` bytes.
pub(crate) fn write_debug(out: &mut Vec<u8>, value: &dyn fmt::Debug, max: usize) {
    out.push(b'"');
    write_fmt_body(
        out,
        format_args!("{value:?}"),
        max,
        b"<Debug failed>",
        b"<Debug panicked>",
    );
    out.push(b'"');
}

/// Appends `value`'s `Display` output as a JSON string, cut after `max` bytes.
pub(crate) fn write_display(out: &mut Vec<u8>, value: &dyn fmt::Display, max: usize) {
    out.push(b'"');
    write_fmt_body(
        out,
        format_args!("{value}"),
        max,
        b"<Display failed>",
        b"<Display panicked>",
    );
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
        if !write_short_decimal(out, v) {
            out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
        }
    } else if v.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if v > 0.0 {
        out.extend_from_slice(b"\"Infinity\"");
    } else {
        out.extend_from_slice(b"\"-Infinity\"");
    }
}

/// Writes `v` when it is exactly the nearest double to a decimal with at most 4 fractional
/// digits (12.5, 0.25, 100.0, -3.1416), the same text `ryu` writes for it; returns `false`
/// (writing nothing) for every other value.
///
/// The candidate is `n = round(|v| * 10^4)`, and `n / 10^4` (one correctly rounded division of
/// two exact doubles) giving back `|v|` proves `|v|` is the nearest double to `n / 10^4`.
/// The digits are unique: `|v| * 10^4 < 2^52` keeps the double's spacing below `10^-4`, so at
/// most one decimal with 4 fractional digits rounds to `|v|`, and no shorter decimal with more
/// fractional digits does either; that is the shortest text, `n / 10^4` with the trailing zeros
/// of its fraction removed (`.0` when none is left). Integers up to `10^15` too large for that
/// scale are written the same way (the spacing stays below 1).
#[inline]
fn write_short_decimal(out: &mut Vec<u8>, v: f64) -> bool {
    use crate::timestamp::DIGITS2;
    const SCALE: f64 = 10_000.0;
    const LIMIT: f64 = 4_503_599_627_370_496.0; // 2^52
    let a = v.abs();
    if !(1e-3..1e15).contains(&a) {
        return false;
    }
    let t = a * SCALE;
    let (int, frac) = if t < LIMIT {
        // Below 2^52 the spacing of doubles is at most 1/2: `t + 0.5` is exact.
        let n = (t + 0.5) as i64 as u64;
        // `n < 2^52`: converted as a signed integer, one instruction.
        if n as i64 as f64 / SCALE != a {
            return false;
        }
        (n / 10_000, (n % 10_000) as usize)
    } else {
        let n = a as i64 as u64;
        if n as f64 != a {
            return false;
        }
        (n, 0)
    };
    // The text, built around a point at a fixed place (at most a sign, 15 digits, the point and
    // 4 digits), then copied as one block of constant size and cut to length.
    const POINT: usize = 20;
    let mut text = [0u8; 48];
    text[POINT] = b'.';
    text[POINT + 1..POINT + 3].copy_from_slice(&DIGITS2[frac / 100]);
    text[POINT + 3..POINT + 5].copy_from_slice(&DIGITS2[frac % 100]);
    // The fraction without its trailing zeros, at least one digit ("12.0").
    let frac_len = if frac % 100 != 0 {
        if frac % 10 != 0 { 4 } else { 3 }
    } else if frac % 1_000 != 0 {
        2
    } else {
        1
    };
    let mut at = POINT;
    let mut rest = int;
    while rest >= 100 {
        at -= 2;
        text[at..at + 2].copy_from_slice(&DIGITS2[(rest % 100) as usize]);
        rest /= 100;
    }
    if rest >= 10 {
        at -= 2;
        text[at..at + 2].copy_from_slice(&DIGITS2[rest as usize]);
    } else {
        at -= 1;
        text[at] = b'0' + rest as u8;
    }
    if v < 0.0 {
        at -= 1;
        text[at] = b'-';
    }
    let block: &[u8; 24] = text[at..at + 24].try_into().expect("24 bytes");
    put_block(out, block, POINT + 1 + frac_len - at);
    true
}

/// Appends `bytes.len() * 2` lowercase hex digits.
#[inline]
pub(crate) fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    let at = out.len();
    out.resize(at + 2 * bytes.len(), 0);
    hex_into(&mut out[at..], bytes);
}

/// Writes the lowercase hex digits of `bytes` into `out` (twice as long), a byte at a time
/// from a table: independent loads, shorter than word-at-a-time arithmetic once the compiler
/// vectorizes that.
#[inline]
pub(crate) fn hex_into(out: &mut [u8], bytes: &[u8]) {
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
    }
}

/// The 32 lowercase hex digits of a trace id and the 16 of a span id, back to back.
#[inline]
pub(crate) fn hex_ids(trace_id: &[u8; 16], span_id: &[u8; 8]) -> [u8; 48] {
    let mut hex = [0; 48];
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        let word = |b: &[u8], k: usize| load(b, k);
        let (a, b) = hex16(word(trace_id, 0), word(trace_id, 8));
        let (c, _) = hex16(word(span_id, 0), 0);
        hex[..16].copy_from_slice(&a);
        hex[16..32].copy_from_slice(&b);
        hex[32..].copy_from_slice(&c);
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        hex_into(&mut hex[..32], trace_id);
        hex_into(&mut hex[32..], span_id);
    }
    hex
}

/// The lowercase hex digits of the 16 bytes `lo` (the first 8, little-endian) and `hi`: the
/// first 8 bytes' 16 digits, then the last 8 bytes'. Nibbles split and interleaved, and turned
/// into digits, with a few SSE2 operations on all 16 bytes at once.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn hex16(lo: u64, hi: u64) -> ([u8; 16], [u8; 16]) {
    // `#[inline]`, as `sse2_mask`'s: a call of its own otherwise.
    #[target_feature(enable = "sse2")]
    #[inline]
    fn digits(lo: u64, hi: u64) -> [u64; 4] {
        use core::arch::x86_64::*;
        let v = _mm_set_epi64x(hi as i64, lo as i64);
        let nibble = _mm_set1_epi8(0x0F);
        let low = _mm_and_si128(v, nibble);
        let high = _mm_and_si128(_mm_srli_epi16::<4>(v), nibble);
        // Each byte's high nibble, then its low one.
        let first = _mm_unpacklo_epi8(high, low);
        let second = _mm_unpackhi_epi8(high, low);
        // '0' + n, and 39 more for 'a'–'f'.
        let ascii = |n: __m128i| {
            let letters = _mm_and_si128(_mm_cmpgt_epi8(n, _mm_set1_epi8(9)), _mm_set1_epi8(39));
            _mm_add_epi8(_mm_add_epi8(n, _mm_set1_epi8(b'0' as i8)), letters)
        };
        let (first, second) = (ascii(first), ascii(second));
        let words = |x: __m128i| {
            (
                _mm_cvtsi128_si64(x) as u64,
                _mm_cvtsi128_si64(_mm_unpackhi_epi64(x, x)) as u64,
            )
        };
        let ((a, b), (c, d)) = (words(first), words(second));
        [a, b, c, d]
    }
    // SAFETY: compiled only for targets with SSE2 (every x86-64 CPU has it: it is part of the
    // architecture's baseline), so the CPU running this has the feature `digits` is built for.
    #[allow(unsafe_code)]
    let [a, b, c, d] = unsafe { digits(lo, hi) };
    let mut first = [0; 16];
    first[..8].copy_from_slice(&a.to_le_bytes());
    first[8..].copy_from_slice(&b.to_le_bytes());
    let mut second = [0; 16];
    second[..8].copy_from_slice(&c.to_le_bytes());
    second[8..].copy_from_slice(&d.to_le_bytes());
    (first, second)
}

/// The two lowercase hex digits of each byte value.
static HEX_PAIRS: [[u8; 2]; 256] = {
    let mut t = [[0; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 0xF]];
        i += 1;
    }
    t
};

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
        // DEL and the C1 controls (two bytes each in UTF-8: C2 80 to C2 9F).
        for c in [0x7Fu32].into_iter().chain(0x80..0xA0) {
            let s = char::from_u32(c).unwrap().to_string();
            for text in [
                s.clone(),
                format!("ab{s}cd"),
                format!("0123456789{s}abcdef"),
            ] {
                let out = esc(&text);
                assert!(out.contains(&format!("\\u{c:04x}")), "{c:#x} -> {out}");
                assert!(!out.contains(s.as_str()), "{c:#x} -> {out}");
                let back: String = serde_json::from_str(&out).unwrap();
                assert_eq!(back, text);
            }
        }
        assert_eq!(esc("\u{85}\u{9b}31m"), r#""\u0085\u009b31m""#);
        // Other characters starting with C2 stay as they are.
        assert_eq!(esc("\u{a0}©°£\u{bf}"), "\"\u{a0}©°£\u{bf}\"");
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

    /// Escaping one character at a time, the plain way.
    fn reference(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\u{2028}' => out.push_str("\\u2028"),
                '\u{2029}' => out.push_str("\\u2029"),
                c if (c as u32) < 0x20 || (0x7F..0xA0).contains(&(c as u32)) => {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    #[test]
    fn matches_reference_at_every_offset_and_length() {
        let specials = [
            "\"",
            "\\",
            "\n",
            "\u{0}",
            "\u{1f}",
            "\u{1b}",
            " ",
            "\u{7f}",
            "\u{80}",
            "\u{85}",
            "\u{9f}",
            "\u{a0}",
            "©",
            "\u{2028}",
            "\u{2029}",
            "\u{2027}",
            "—",
            "✓",
            "é",
            "日",
            "\u{10ffff}",
        ];
        for len in 0..24 {
            for a in specials {
                for b in specials {
                    for pos in 0..=len {
                        let mut s = "x".repeat(len);
                        s.insert_str(pos, a);
                        s.push_str(b);
                        let mut t = "y".repeat(len);
                        t.insert_str(len - pos, b);
                        t.insert_str(0, a);
                        for s in [&s, &t] {
                            assert_eq!(esc(s), reference(s), "{s:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn dense_escapes_match_reference() {
        // Strings where most bytes need escaping: several escapes in one word, and separators
        // across word boundaries.
        let pieces = [
            "\"", "\\", "\n", "\t", "\u{1}", "\u{1b}", "a", "é", "\u{2028}", "\u{2029}",
            "\u{2027}", "日", "\u{7f}", "\u{85}", "\u{9b}", "\u{a0}",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for round in 0..20_000 {
            let mut s = String::new();
            for _ in 0..(round % 97) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                s.push_str(pieces[(state % pieces.len() as u64) as usize]);
            }
            for prefix in ["", "{\"k\":"] {
                let mut out = prefix.as_bytes().to_vec();
                write_str(&mut out, &s);
                assert_eq!(
                    out,
                    format!("{prefix}{}", reference(&s)).as_bytes(),
                    "{s:?}"
                );
            }
        }
    }

    /// An escaping path: the line, the string, its clean start.
    type Path = fn(&mut Vec<u8>, &[u8], usize);

    /// Every way a string is escaped once it is known to need it, by name: the byte loop for
    /// short rests (with and without the quotes) and the dispatch to the longer paths, the word
    /// loop, the vector code where the CPU has it, and the dispatch between those two.
    fn escape_paths() -> Vec<(&'static str, Path)> {
        /// The byte loop for short rests, else the dispatch to the longer paths.
        fn rest(out: &mut Vec<u8>, bytes: &[u8], i: usize) {
            escape_rest::<false>(out, bytes, padded(bytes), i);
        }
        /// The same with the quotes written around: checked, then taken off.
        fn rest_quoted(out: &mut Vec<u8>, bytes: &[u8], i: usize) {
            let at = out.len();
            escape_rest::<true>(out, bytes, padded(bytes), i);
            assert_eq!(out.get(at), Some(&b'"'), "no opening quote");
            assert_eq!(out.pop(), Some(b'"'), "no closing quote");
            out.remove(at);
        }
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut paths: Vec<(&str, Path)> = vec![
            ("rest", rest),
            ("rest quoted", rest_quoted),
            ("scalar", escape_from_scalar),
            ("dispatch", escape_from),
        ];
        #[cfg(target_arch = "x86_64")]
        if ssse3::available() {
            #[allow(unsafe_code)]
            fn vector(out: &mut Vec<u8>, bytes: &[u8], i: usize) {
                // SAFETY: only listed when the CPU has SSSE3.
                unsafe { ssse3::escape_from(out, bytes, i) }
            }
            paths.push(("ssse3", vector));
        }
        paths
    }

    /// Every way a string can be escaped once it is known to need it (the byte loop for short
    /// rests, the vector code where the CPU has it, the word loop elsewhere),
    /// each given every clean start it can be: the same bytes as the reference.
    #[test]
    fn every_escape_path_matches_reference() {
        let pieces = [
            "\"",
            "\\",
            "\n",
            "\t",
            "\r",
            "\u{8}",
            "\u{c}",
            "\u{0}",
            "\u{1}",
            "\u{1b}",
            "\u{1f}",
            "a",
            "bc",
            "defgh",
            "é",
            "\u{2028}",
            "\u{2029}",
            "\u{2027}",
            "—",
            "日",
            "\u{7f}",
            "\u{80}",
            "\u{85}",
            "\u{9b}",
            "\u{9f}",
            "\u{a0}",
            "©",
            "\u{10ffff}",
            " ",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let paths = escape_paths();
        for round in 0..30_000 {
            // A clean start of any length, then pieces (few or many escapes), up to ~90 bytes.
            let clean = "abcdefgh".repeat(5)[..next(41)].to_owned();
            let mut s = clean.clone();
            let dense = round % 3 != 0;
            for _ in 0..next(60) {
                if dense || next(8) == 0 {
                    s.push_str(pieces[next(pieces.len())]);
                } else {
                    s.push('x');
                }
            }
            let want = reference(&s);
            let want = &want.as_bytes()[1..want.len() - 1];
            // Every clean start the callers can give: whole words of the clean start.
            for i in (0..=clean.len()).step_by(8) {
                for (name, path) in &paths {
                    for prefix in [&b""[..], b"{\"k\":\""] {
                        let mut out = prefix.to_vec();
                        path(&mut out, s.as_bytes(), i);
                        assert_eq!(
                            &out[prefix.len()..],
                            want,
                            "{name} from {i}: {s:?} gave {:?}",
                            String::from_utf8_lossy(&out)
                        );
                        assert_eq!(&out[..prefix.len()], prefix);
                    }
                }
            }
        }
    }

    #[test]
    fn clean_strings_of_every_length_land_whole_after_what_is_there() {
        for len in 0..40 {
            let s: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            for prefix in ["", "k", "{\"key\":"] {
                let mut out = prefix.as_bytes().to_vec();
                escape_into(&mut out, &s);
                assert_eq!(out, format!("{prefix}{s}").as_bytes(), "{len}");
            }
        }
    }

    #[test]
    fn short_decimals_match_ryu() {
        let mut values = vec![
            0.001,
            0.5,
            12.5,
            100.0,
            0.1,
            0.3,
            1.1,
            2.675,
            999_999_999_999_999.0,
        ];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let scale = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5][(i % 6) as usize];
            values.push((x % 10_000_000_000) as f64 / scale);
            values.push(-((x >> 20) as f64) / scale);
            values.push(f64::from_bits(x >> 2));
            values.push((i as f64) * 0.1);
        }
        // Near the edges of the short path: its range, the scale's 2^52 limit, the integers
        // above it, and sums that miss a short decimal (0.1 + 0.2); each with its neighbours.
        let mut edges = vec![
            0.000_999_9,
            0.001_000_1,
            0.0015,
            0.1 + 0.2,
            0.2,
            0.7 + 0.1,
            1.0 - 1e-4,
            123_456_789_012.5,
            99_999_999_999.999_9,
            450_359_962_737.049_6,
            450_359_962_737.049_5,
            450_359_962_737.0,
            450_359_962_738.0,
            1e11 + 0.000_1,
            1e12,
            1_700_000_000_123.0,
            1e14 + 1.0,
            1e15 - 1.0,
            1e15,
            4_503_599_627_370_495.0,
        ];
        for k in 0..=5 {
            let scale = 10f64.powi(k);
            for n in (1..2_000u64).chain(9_990..10_010).chain(99_990..100_010) {
                edges.push(n as f64 / scale);
            }
        }
        for v in edges {
            for bits in [v.to_bits() - 1, v.to_bits(), v.to_bits() + 1] {
                let v = f64::from_bits(bits);
                values.push(v);
                values.push(-v);
            }
        }
        for v in values {
            if !v.is_finite() {
                continue;
            }
            let mut ours = Vec::new();
            write_f64(&mut ours, v);
            let theirs = ryu::Buffer::new().format_finite(v).to_owned();
            assert_eq!(std::str::from_utf8(&ours).unwrap(), theirs, "{v:e}");
        }
        // The common values take the short path, not ryu.
        for v in [12.5, 0.1, 0.3, -7.125, 0.001, 100.0, 123_456_789.25, 1e14] {
            assert!(write_short_decimal(&mut Vec::new(), v), "{v}");
        }
    }

    #[test]
    fn short_pieces_are_checked_at_every_position() {
        for len in 0..=SHORT + 1 {
            for pos in 0..len {
                for b in 0..=255u8 {
                    let mut piece = vec![b'x'; len];
                    piece[pos] = b;
                    let want = piece.iter().all(|&b| ESCAPE[b as usize] == __);
                    assert_eq!(is_clean(&piece), want, "{piece:?}");
                }
            }
        }
    }

    #[test]
    fn integers_match_format_at_every_digit_count() {
        let mut values = vec![0u64, u64::MAX];
        for p in 0..20 {
            let t = 10u64.pow(p);
            values.extend([t - 1, t, t + 1, t / 10 * 9 + 7]);
        }
        for v in values {
            let mut out = b"[".to_vec();
            write_u64(&mut out, v);
            assert_eq!(out, format!("[{v}").as_bytes());
            for s in [v as i64, (v as i64).wrapping_neg(), i64::MIN, i64::MAX] {
                let mut out = Vec::new();
                write_i64(&mut out, s);
                assert_eq!(out, s.to_string().as_bytes());
            }
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

    #[test]
    fn debug_and_display_output_is_escaped_whatever_its_pieces() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct T<'a> {
            s: &'a str,
            n: u8,
        }
        let samples = [
            "",
            "plain",
            "quote\" and \\ backslash",
            "line\nbreak\r\t\u{1b}[31m",
            "sep\u{2028}and\u{2029}",
            "ünïcödé and 日本",
            "exactly8",
            "sixteen bytes!!!",
        ];
        for text in samples {
            for long in [text.to_owned(), text.repeat(9)] {
                let t = T { s: &long, n: 7 };
                let mut out = Vec::new();
                write_debug(&mut out, &t, usize::MAX);
                let back: String = serde_json::from_slice(&out).unwrap();
                assert_eq!(back, format!("{t:?}"));
                let mut out = Vec::new();
                write_display(&mut out, &long, usize::MAX);
                let back: String = serde_json::from_slice(&out).unwrap();
                assert_eq!(back, long);
                assert!(
                    !out.contains(&b'\n') && !out.windows(3).any(|w| w == "\u{2028}".as_bytes())
                );
            }
        }
    }

    #[test]
    fn long_strings_are_cut_at_a_char_boundary_with_the_count() {
        let s = "ab€cd"; // € is 3 bytes, at 2..5
        let mut out = Vec::new();
        write_str_max(&mut out, s, 3);
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, "ab…[truncated 5 bytes]");
        let mut out = Vec::new();
        write_str_max(&mut out, s, 7);
        assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), s);
    }

    #[test]
    fn debug_output_stops_at_the_limit() {
        struct Endless(std::cell::Cell<usize>);
        impl fmt::Debug for Endless {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                loop {
                    self.0.set(self.0.get() + 1);
                    f.write_str("0123456789\"")?;
                }
            }
        }
        let value = Endless(std::cell::Cell::new(0));
        let mut out = Vec::new();
        write_debug(&mut out, &value, 25);
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, format!("0123456789\"0123456789\"012{TRUNCATED}"));
        assert_eq!(value.0.get(), 3, "formatting went on past the limit");
    }

    #[test]
    fn a_panicking_value_leaves_a_placeholder() {
        struct Panics;
        impl fmt::Display for Panics {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("half")?;
                panic!("Display panicked on purpose");
            }
        }
        let mut out = b"[".to_vec();
        write_display(&mut out, &Panics, usize::MAX);
        out.push(b']');
        let back: Vec<String> = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, ["<Display panicked>"]);
    }

    #[test]
    fn ids_hex_matches_format() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            (state >> 56) as u8
        };
        let mut cases: Vec<([u8; 16], [u8; 8])> = vec![([0; 16], [0; 8]), ([0xFF; 16], [0xFF; 8])];
        // Every byte value in every position.
        for b in 0..=255u8 {
            cases.push(([b; 16], [b; 8]));
        }
        for _ in 0..2000 {
            cases.push((
                std::array::from_fn(|_| next()),
                std::array::from_fn(|_| next()),
            ));
        }
        for (trace, span) in cases {
            let want: String = trace
                .iter()
                .chain(&span)
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(std::str::from_utf8(&hex_ids(&trace, &span)).unwrap(), want);
        }
    }

    #[test]
    fn hex_matches_format_for_every_length_and_nibble() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for len in 0..=20 {
            for _ in 0..50 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                        (state >> 56) as u8
                    })
                    .collect();
                let mut out = Vec::new();
                write_hex(&mut out, &bytes);
                let want: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(String::from_utf8(out).unwrap(), want);
            }
        }
        let mut out = Vec::new();
        write_hex(
            &mut out,
            &[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xff, 0x00],
        );
        assert_eq!(out, b"0123456789abcdefff00");
    }

    #[test]
    fn pieces_gathered_or_written_through_come_out_escaped_and_in_order() {
        // Pieces of every length up to past `SHORT`, from an alphabet of clean bytes and bytes
        // that need escaping or a look ahead, written as `write_str` or `write_char`, so that
        // the gathering buffer fills, overflows and is bypassed at every offset.
        enum Piece {
            Str(String),
            Char(char),
        }
        struct Pieces(Vec<Piece>);
        impl fmt::Display for Pieces {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for p in &self.0 {
                    match p {
                        Piece::Str(s) => f.write_str(s)?,
                        Piece::Char(c) => fmt::Write::write_char(f, *c)?,
                    }
                }
                Ok(())
            }
        }
        const ALPHABET: [char; 12] = [
            'x', 'y', ' ', '"', '\\', '\n', '\u{1f}', 'é', '\u{2028}', '€', '日', '\u{7f}',
        ];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: usize| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize % n
        };
        // The string body `write_str` writes (the reference escaper), without its quotes.
        let escaped = |s: &str| {
            let mut out = Vec::new();
            write_str(&mut out, s);
            out[1..out.len() - 1].to_vec()
        };
        let quoted = |mut body: Vec<u8>| {
            body.insert(0, b'"');
            body.push(b'"');
            body
        };
        for _ in 0..3000 {
            let mut pieces = Vec::new();
            let mut all = String::new();
            for _ in 0..1 + next(40) {
                // Mostly clean pieces, so that the buffer fills up between the others.
                let clean = next(4) != 0;
                let pick = |next: &mut dyn FnMut(usize) -> usize| {
                    if clean {
                        ALPHABET[next(3)]
                    } else {
                        ALPHABET[next(ALPHABET.len())]
                    }
                };
                if next(5) == 0 {
                    let c = pick(&mut next);
                    all.push(c);
                    pieces.push(Piece::Char(c));
                } else {
                    let piece: String = (0..next(SHORT + 3)).map(|_| pick(&mut next)).collect();
                    all.push_str(&piece);
                    pieces.push(Piece::Str(piece));
                }
            }
            let value = Pieces(pieces);
            let mut out = Vec::new();
            write_display(&mut out, &value, usize::MAX);
            assert_eq!(out, quoted(escaped(&all)), "{all:?}");
            let max = next(all.len() + 2);
            let mut out = Vec::new();
            write_display(&mut out, &value, max);
            let mut want = escaped(&all[..floor_char_boundary(&all, max)]);
            if all.len() > max {
                want.extend_from_slice(TRUNCATED.as_bytes());
            }
            assert_eq!(out, quoted(want), "{all:?} cut at {max}");
        }
    }

    #[test]
    fn a_value_that_ignores_the_limit_is_still_marked_cut() {
        struct Stubborn;
        impl fmt::Display for Stubborn {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for _ in 0..10 {
                    let _ = f.write_str("abcdefghij");
                }
                Ok(())
            }
        }
        let mut out = Vec::new();
        write_display(&mut out, &Stubborn, 15);
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, format!("abcdefghijabcde{TRUNCATED}"));
    }

    /// Differential test of every escape path against [`reference`]: random strings mixing
    /// ASCII, every C0 control, DEL, C1 controls, U+00A0–U+00BF, U+2027–U+2029, other
    /// characters of 2, 3 and 4 bytes (a clean start of 0–149 bytes, then a body of 0–300
    /// bytes, or of 70 000 bytes every 500th string), every clean start a caller can give, and
    /// lines with various contents and capacities (none, exactly full, exactly the output's
    /// size, spare capacity holding leftover bytes).
    /// `TRACELINE_ESCAPE_ROUNDS` sets the number of strings (default 3 000).
    #[test]
    fn escape_paths_match_reference_on_random_strings() {
        let rounds: u64 = std::env::var("TRACELINE_ESCAPE_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3_000);
        let mut state = std::env::var("TRACELINE_ESCAPE_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0x2545_f491_4f6c_dd1du64)
            | 1;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        };
        fn char_in(lo: u32, hi: u32, r: u64) -> char {
            let c = lo + (r % u64::from(hi - lo + 1)) as u32;
            char::from_u32(c).unwrap_or('\u{fffd}')
        }
        // One character of class `class`, `r` picking within it.
        fn pick(class: u64, r: u64) -> char {
            match class {
                0 => char_in(0x20, 0x7E, r),
                1 => char_in(0, 0x1F, r),
                2 => ['"', '\\', '\n', '\t', '\r', '\u{8}', '\u{c}', '\u{0}'][(r % 8) as usize],
                3 => '\u{7f}',
                4 => char_in(0x80, 0x9F, r),
                5 => char_in(0xA0, 0xBF, r),
                6 => char_in(0xC0, 0x7FF, r),
                7 => [
                    '\u{2028}', '\u{2029}', '\u{2027}', '\u{202a}', '\u{2000}', '\u{20ac}',
                ][(r % 6) as usize],
                8 => char_in(0x2000, 0x2FFF, r),
                9 => char_in(0x800, 0xFFFF, r),
                10 => char_in(0x10000, 0x10FFFF, r),
                _ => 'x',
            }
        }
        const CLASSES: u64 = 12;
        // Whether a byte may be in a clean start (what `escape_into` checks a word at a time).
        let clean_byte =
            |b: u8| !(b < 0x20 || b == b'"' || b == b'\\' || b == 0x7F || b == 0xC2 || b == 0xE2);
        let paths = escape_paths();
        let mut cases = 0u64;
        for round in 0..rounds {
            // A clean start (ASCII and characters without C2 / E2 lead bytes), then a body whose
            // characters come from a few classes, weighted.
            let mut s = String::new();
            let clean_len = if next(3) == 0 { 0 } else { next(150) };
            while s.len() < clean_len as usize {
                s.push(match next(10) {
                    0 => 'é',
                    1 => '日',
                    2 => '\u{1f600}',
                    3 => '\u{ff}',
                    _ => char_in(0x20, 0x7E, next(95)),
                });
                if s.ends_with(['"', '\\']) {
                    s.pop();
                }
            }
            let target = if round % 500 == 499 {
                70_000
            } else {
                next(301)
            } as usize;
            let weights: Vec<u64> = (0..CLASSES)
                .map(|_| if next(3) == 0 { 0 } else { 1 + next(10) })
                .collect();
            let total: u64 = weights.iter().sum::<u64>().max(1);
            let body_start = s.len();
            while s.len() - body_start < target {
                let mut w = next(total);
                let mut class = CLASSES - 1;
                for (c, &cw) in weights.iter().enumerate() {
                    if w < cw {
                        class = c as u64;
                        break;
                    }
                    w -= cw;
                }
                s.push(pick(class, next(1 << 32)));
            }
            let bytes = s.as_bytes();
            let want = reference(&s);
            let want = &want.as_bytes()[1..want.len() - 1];
            // Every clean start: 0, and each multiple of 8 with only clean bytes before it.
            let mut starts = vec![0];
            let mut i = 8;
            while i <= bytes.len() && bytes[..i].iter().all(|&b| clean_byte(b)) {
                starts.push(i);
                i += 8;
            }
            // The lines the output is appended to.
            let out_len = want.len();
            let prefix: Vec<u8> = (0..next(3) * next(80))
                .map(|k| b'a' + (k % 26) as u8)
                .collect();
            let lines = |prefix: &[u8], pick: u64| -> Vec<u8> {
                match pick {
                    0 => Vec::new(),
                    1 => Vec::with_capacity(0),
                    2 => {
                        let mut v = Vec::with_capacity(prefix.len());
                        v.extend_from_slice(prefix);
                        v
                    }
                    3 => {
                        let mut v = Vec::with_capacity(prefix.len() + out_len);
                        v.extend_from_slice(prefix);
                        v
                    }
                    4 => {
                        let mut v = Vec::with_capacity(prefix.len() + bytes.len());
                        v.extend_from_slice(prefix);
                        v
                    }
                    5 => {
                        let mut v = Vec::with_capacity(prefix.len() + out_len.saturating_sub(1));
                        v.extend_from_slice(prefix);
                        v
                    }
                    _ => {
                        // Spare capacity holding bytes no valid output has (0xFF).
                        let cap = prefix.len() + (pick as usize * 37) % (2 * out_len + 300);
                        let mut v = vec![0xFF; cap];
                        v.truncate(0);
                        v.extend_from_slice(prefix);
                        v
                    }
                }
            };
            for &i in &starts {
                for (name, path) in &paths {
                    let pick = next(9);
                    let mut out = lines(&prefix, pick);
                    let p = if pick < 2 { 0 } else { prefix.len() };
                    path(&mut out, bytes, i);
                    cases += 1;
                    if &out[p..] != want || out[..p] != prefix[..p] {
                        panic!(
                            "{name} from {i} (line {pick}, prefix {p}): {s:?}\n gave {:?}\n want {:?}",
                            String::from_utf8_lossy(&out[p..]),
                            String::from_utf8_lossy(want)
                        );
                    }
                }
            }
            // The public entry points from the start.
            let mut out = lines(&prefix, next(9));
            let p = out.len();
            escape_into(&mut out, &s);
            assert_eq!(&out[p..], want, "escape_into: {s:?}");
            let mut out = Vec::new();
            write_str(&mut out, &s);
            assert_eq!(&out[1..out.len() - 1], want, "write_str: {s:?}");
            cases += 2;
        }
        eprintln!(
            "escape_paths_match_reference_on_random_strings: {rounds} strings, {cases} cases"
        );
    }

    /// Strings of 1 MiB made of one escape (or a few, alternating), through every path from
    /// a few clean starts, into an empty line and a line whose capacity is exactly its length.
    #[test]
    fn huge_dense_strings_match_reference() {
        let mib = 1 << 20;
        let fill = |piece: &str| piece.repeat(mib / piece.len());
        let strings = [
            fill("\u{1}"),
            fill("\u{85}"),
            fill("\u{2028}"),
            fill("\""),
            fill("\u{1}\u{85}\u{2029}\n"),
            format!("{}{}", "a".repeat(64), fill("\u{0}")),
        ];
        let paths = escape_paths();
        for s in &strings {
            let want = reference(s);
            let want = &want.as_bytes()[1..want.len() - 1];
            let starts: &[usize] = if s.starts_with('a') {
                &[0, 8, 56, 64]
            } else {
                &[0]
            };
            for &i in starts {
                for (name, path) in &paths {
                    for mut out in [Vec::new(), b"{\"k\":\"".to_vec()] {
                        let p = out.len();
                        path(&mut out, s.as_bytes(), i);
                        assert!(&out[p..] == want, "{name} from {i} on {:?}", &s[..8]);
                    }
                }
            }
        }
    }

    /// Two characters placed at every pair of positions in 'x' padding (so every chunk and
    /// word boundary, a string ending right after a multi-byte character, a C2 or E2 lead at
    /// the last bytes of a chunk), through every path from every clean start.
    /// `TRACELINE_ESCAPE_PAIRS_LEN` sets the longest padding (default 20).
    #[test]
    fn two_characters_at_every_pair_of_positions_match_reference() {
        let max: usize = std::env::var("TRACELINE_ESCAPE_PAIRS_LEN")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20);
        let specials = [
            "\"",
            "\n",
            "\u{0}",
            "\u{1f}",
            "\u{7f}",
            "\u{80}",
            "\u{9f}",
            "\u{a0}",
            "\u{bf}",
            "\u{2028}",
            "\u{2029}",
            "\u{2027}",
            "é",
            "\u{10ffff}",
            "x",
        ];
        let paths = escape_paths();
        for n in 0..=max {
            for p in 0..=n {
                for q in 0..=n - p {
                    for a in specials {
                        for b in specials {
                            let s = format!(
                                "{}{a}{}{b}{}",
                                "x".repeat(p),
                                "x".repeat(q),
                                "x".repeat(n - p - q)
                            );
                            let want = reference(&s);
                            let want = &want.as_bytes()[1..want.len() - 1];
                            for i in (0..=p).step_by(8) {
                                for (name, path) in &paths {
                                    let mut out = Vec::new();
                                    path(&mut out, s.as_bytes(), i);
                                    assert!(out == want, "{name} from {i}: {s:?}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Checks one string through every public and internal entry: quoted and unquoted, after
    /// existing content, into a line with no spare capacity, and through the `fmt::Write` paths.
    fn check_all_entries(s: &str) {
        use std::fmt::Write as _;
        let want = reference(s);
        let body = &want[1..want.len() - 1];
        for prefix in ["", "{\"k\":"] {
            // Spare capacity and exactly full.
            for exact in [false, true] {
                let mut out = Vec::with_capacity(if exact { prefix.len() } else { 200 });
                out.extend_from_slice(prefix.as_bytes());
                write_str(&mut out, s);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    format!("{prefix}{want}"),
                    "write_str {s:?}"
                );
                let mut out = Vec::with_capacity(if exact { prefix.len() } else { 200 });
                out.extend_from_slice(prefix.as_bytes());
                escape_into(&mut out, s);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    format!("{prefix}{body}"),
                    "escape_into {s:?}"
                );
            }
            let mut out = prefix.as_bytes().to_vec();
            Escaper(&mut out).write_str(s).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out),
                format!("{prefix}{body}"),
                "Escaper {s:?}"
            );
            let mut out = prefix.as_bytes().to_vec();
            write!(Escaper(&mut out), "{s}|{s:?}").unwrap();
            let dbg = reference(&format!("{s}|{s:?}"));
            assert_eq!(
                String::from_utf8_lossy(&out),
                format!("{prefix}{}", &dbg[1..dbg.len() - 1]),
                "Escaper fmt {s:?}"
            );
            let mut out = prefix.as_bytes().to_vec();
            write_fmt_body(&mut out, format_args!("{s:?}{s}"), 10_000, b"F", b"P");
            let dbg = reference(&format!("{s:?}{s}"));
            assert_eq!(
                String::from_utf8_lossy(&out),
                format!("{prefix}{}", &dbg[1..dbg.len() - 1]),
                "write_fmt_body {s:?}"
            );
        }
        let mut out = Vec::new();
        for c in s.chars() {
            Escaper(&mut out).write_char(c).unwrap();
        }
        assert_eq!(String::from_utf8_lossy(&out), body, "Escaper chars {s:?}");
        // The byte loop and the longer paths from every whole-word clean start.
        let bytes = s.as_bytes();
        let padded = padded(bytes);
        let clean_words = bytes
            .chunks(8)
            .take_while(|c| c.iter().all(|&b| ESCAPE[usize::from(b)] == __))
            .count();
        let mut i = 0;
        while i <= bytes.len() && i / 8 <= clean_words {
            if i == 0 || i < bytes.len() {
                let mut out = b"xy".to_vec();
                escape_rest::<true>(&mut out, bytes, padded, i);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    format!("xy{want}"),
                    "escape_rest from {i}: {s:?}"
                );
                if bytes.len() - i <= SCAN {
                    let mut out = Vec::new();
                    escape_scan::<false>(&mut out, bytes, padded, i);
                    assert_eq!(
                        String::from_utf8_lossy(&out),
                        body,
                        "escape_scan from {i}: {s:?}"
                    );
                }
            }
            i += 8;
        }
    }

    /// Every string of up to `DEPTH` pieces over an alphabet of specials, between clean runs of
    /// every length that moves it across the 4-byte groups, the word boundaries and the
    /// 32-byte limit of the byte loop.
    #[test]
    fn brute_force_short_strings_match_reference() {
        const ALPHABET: [&str; 11] = [
            "a", "\"", "\\", "\n", "\u{1}", "\u{7f}", "\u{85}", "é", "\u{2028}", "€", "\u{a1}",
        ];
        const DEPTH: usize = if cfg!(debug_assertions) { 4 } else { 5 };
        let mut count = 0u64;
        let mut idx = [0usize; DEPTH + 1];
        for depth in 0..=DEPTH {
            let total = ALPHABET.len().pow(depth as u32);
            for mut n in 0..total {
                let mut core = String::new();
                for slot in idx.iter_mut().take(depth) {
                    *slot = n % ALPHABET.len();
                    n /= ALPHABET.len();
                    core.push_str(ALPHABET[*slot]);
                }
                let lead_max = if depth <= 3 { 36 } else { 12 };
                let trail_max = if depth <= 3 { 9 } else { 4 };
                for lead in 0..=lead_max {
                    for trail in 0..=trail_max {
                        let s = format!(
                            "{}{core}{}",
                            &"bcdefghijk".repeat(4)[..lead],
                            &"xyzwvutsrq"[..trail]
                        );
                        check_all_entries(&s);
                        count += 1;
                    }
                }
            }
        }
        assert!(count > 100_000, "{count}");
    }

    /// Random strings of up to ~40 bytes drawn from specials and plain bytes.
    #[test]
    fn random_short_strings_match_reference() {
        const PIECES: [&str; 22] = [
            "a", "b", " ", "\"", "\\", "\n", "\t", "\r", "\u{8}", "\u{c}", "\u{0}", "\u{1f}",
            "\u{7f}", "\u{80}", "\u{9f}", "\u{a0}", "\u{c2}", "é", "\u{2028}", "\u{2029}",
            "\u{2027}", "€",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let rounds = if cfg!(debug_assertions) {
            200_000
        } else {
            2_000_000
        };
        for _ in 0..rounds {
            let mut s = String::new();
            let target = next(42);
            while s.len() < target {
                s.push_str(PIECES[next(PIECES.len())]);
            }
            check_all_entries(&s);
        }
    }
}

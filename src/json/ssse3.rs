//! Escaping text dense with escapes, 16 bytes at a time, with SSSE3 byte shuffles.
//!
//! Scalar code spends 1.5–2 cycles per byte on text whose every word holds an escape: each
//! escape is a branch, a copy of the clean run before it and a store of its sequence. Here a
//! chunk of 16 bytes is classified with a dozen vector compares (clean, a two-byte escape such
//! as `\n`, a six-byte `\u00XX`). Each half whose escapes are all two-byte is written with one
//! shuffle and one OR from tables indexed by which of its bytes escape; a half with a six-byte
//! escape, 4 bytes at a time with two shuffles each, from an 81-entry table: no branch per
//! escape.
//!
//! Used only where the running CPU has SSSE3 (checked once; Intel since Core 2 in 2006, AMD
//! since Bobcat and Bulldozer in 2011), and only for a string known to need escaping with more
//! than 32 bytes left to look at: clean strings never get here, and short rests take the byte
//! loop in `json.rs`. The output is byte for byte the scalar code's (the tests compare both
//! with a plain reference).

use super::tail::{Tail, append};
use super::{ESCAPE, HEX, UU, escape_at};
use core::arch::x86_64::*;

/// Whether the running CPU can run [`escape_from`].
#[inline]
pub(super) fn available() -> bool {
    std::arch::is_x86_feature_detected!("ssse3")
}

/// Room kept free in the line past the write position for one chunk: 16 bytes of six-byte
/// escapes, and the whole vectors stored past the last escape's end.
const ROOM: usize = 128;

/// The escape letter of the two-byte escapes among the controls below 16 (`\b`, `\t`, `\n`,
/// `\f`, `\r`), by the control's value; 0 for the others.
const SHORT_CONTROLS: [u8; 16] = {
    let mut t = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        let e = ESCAPE[i];
        if e != UU {
            t[i] = e;
        }
        i += 1;
    }
    t
};

/// How 8 bytes are written when those that escape take two bytes: one shuffle of
/// `[byte 0..8, escape letter 0..8]` (byte `j`, or a zero lane then letter `j`), the
/// backslashes put into the zero lanes, and how many bytes that makes.
#[derive(Clone, Copy)]
struct Short {
    shuffle: [u8; 16],
    backslashes: [u8; 16],
    len: u8,
}

/// One [`Short`] for each set of two-byte escapes in 8 bytes (bit `j`: byte `j` escapes).
static SHORTS: [Short; 256] = {
    let mut t = [Short {
        shuffle: [0x80; 16],
        backslashes: [0; 16],
        len: 0,
    }; 256];
    let mut m = 0;
    while m < 256 {
        let mut at = 0;
        let mut j = 0;
        while j < 8 {
            if m & (1 << j) != 0 {
                t[m].backslashes[at] = b'\\';
                t[m].shuffle[at + 1] = 8 + j as u8;
                at += 2;
            } else {
                t[m].shuffle[at] = j as u8;
                at += 1;
            }
            j += 1;
        }
        t[m].len = at as u8;
        m += 1;
    }
    t
};

/// How 4 bytes are written when some need a six-byte escape: two shuffles of
/// `[byte 0..4, escape letter 0..4, high hex digit 0..4, low hex digit 0..4]`, each with
/// constant bytes (`\`, `u`, `0`) put into the lanes the shuffle leaves at zero.
#[derive(Clone, Copy)]
struct Group {
    shuffle: [[u8; 16]; 2],
    constant: [[u8; 16]; 2],
    len: u8,
}

/// One [`Group`] for each way 4 bytes can be: each clean, a two-byte or a six-byte escape
/// (3^4 = 81), by the index [`GROUP_OF`] gives.
static GROUPS: [Group; 81] = {
    let mut t = [Group {
        shuffle: [[0x80; 16]; 2],
        constant: [[0; 16]; 2],
        len: 0,
    }; 81];
    let mut code = 0;
    while code < 81 {
        let mut out = [0x80u8; 32];
        let mut constant = [0u8; 32];
        let mut at = 0;
        let mut j = 0;
        let mut c = code;
        while j < 4 {
            match c % 3 {
                0 => {
                    out[at] = j as u8;
                    at += 1;
                }
                1 => {
                    constant[at] = b'\\';
                    out[at + 1] = 4 + j as u8;
                    at += 2;
                }
                _ => {
                    constant[at] = b'\\';
                    constant[at + 1] = b'u';
                    constant[at + 2] = b'0';
                    constant[at + 3] = b'0';
                    out[at + 4] = 8 + j as u8;
                    out[at + 5] = 12 + j as u8;
                    at += 6;
                }
            }
            c /= 3;
            j += 1;
        }
        let mut k = 0;
        while k < 16 {
            t[code].shuffle[0][k] = out[k];
            t[code].shuffle[1][k] = out[16 + k];
            t[code].constant[0][k] = constant[k];
            t[code].constant[1][k] = constant[16 + k];
            k += 1;
        }
        t[code].len = at as u8;
        code += 1;
    }
    t
};

/// The [`GROUPS`] index of 4 bytes, by which of them take a two-byte escape (low 4 bits) and
/// which a six-byte one (high 4 bits).
static GROUP_OF: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut m = 0;
    while m < 256 {
        let mut code = 0;
        let mut j = 3;
        loop {
            let class = if m & (0x10 << j) != 0 {
                2
            } else if m & (1 << j) != 0 {
                1
            } else {
                0
            };
            code = code * 3 + class;
            if j == 0 {
                break;
            }
            j -= 1;
        }
        t[m] = code as u8;
        m += 1;
    }
    t
};

#[inline]
#[target_feature(enable = "ssse3")]
fn load(bytes: &[u8], i: usize) -> __m128i {
    let lo = u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
    let hi = u64::from_le_bytes(bytes[i + 8..i + 16].try_into().unwrap());
    _mm_set_epi64x(hi as i64, lo as i64)
}

#[inline]
#[target_feature(enable = "ssse3")]
fn constant(bytes: &[u8; 16]) -> __m128i {
    load(bytes, 0)
}

#[inline]
#[target_feature(enable = "ssse3")]
fn bytes_of(v: __m128i) -> [u8; 16] {
    let lo = _mm_cvtsi128_si64(v) as u64;
    let hi = _mm_cvtsi128_si64(_mm_unpackhi_epi64(v, v)) as u64;
    let mut both = [0; 16];
    both[..8].copy_from_slice(&lo.to_le_bytes());
    both[8..].copy_from_slice(&hi.to_le_bytes());
    both
}

#[inline]
#[target_feature(enable = "ssse3")]
fn splat(b: u8) -> __m128i {
    _mm_set1_epi8(b as i8)
}

/// Escapes `bytes`, of which `bytes[..i]` are known to be clean.
///
/// # Safety
///
/// The CPU must have SSSE3 ([`available`]).
#[target_feature(enable = "ssse3")]
pub(super) fn escape_from(out: &mut Vec<u8>, bytes: &[u8], mut i: usize) {
    let len = bytes.len();
    if i >= len {
        out.extend_from_slice(bytes);
        return;
    }
    // The chunks end where the string does when they can (none padded): the first starts up
    // to 15 bytes early, in the clean start, whose bytes come out as they are.
    let r = (len - i) % 16;
    if r != 0 && i >= 16 - r {
        i -= 16 - r;
    }
    // A short clean start is stored 16 bytes at a time with the first chunk: no call.
    let mut clean = i;
    if clean > ROOM - 16 {
        out.extend_from_slice(&bytes[..i]);
        clean = 0;
    }
    while i < len {
        // Room for the chunks and, in one go, for the rest were a quarter of it to take a
        // two-byte escape (more room is made as it runs out: the line grows as a `Vec` does,
        // at least doubling).
        append(out, clean + ROOM + (len - i) + (len - i) / 4, |t| {
            for k in (0..clean).step_by(16) {
                t.put_block(&bytes_of(window(bytes, k)), (clean - k).min(16));
            }
            clean = 0;
            while i < len && t.free() >= ROOM {
                let read = chunk(t, bytes, i);
                if i + 16 >= len {
                    // The spaces past the end were written one byte each, last: cut off.
                    t.cut(i + 16 - len);
                    i = len;
                } else {
                    i += read;
                }
            }
        });
    }
}

/// Eight spaces.
const SPACES: u64 = 0x2020_2020_2020_2020;

/// For `n` bytes left (1 to 15) in the last 16 of a string: the shuffle that moves them to the
/// front, and the spaces that go after them.
static SLIDE: [([u8; 16], [u8; 16]); 16] = {
    let mut t = [([0x80u8; 16], [0u8; 16]); 16];
    let mut n = 1;
    while n < 16 {
        let mut j = 0;
        while j < 16 {
            if j < n {
                t[n].0[j] = (16 - n + j) as u8;
            } else {
                t[n].1[j] = b' ';
            }
            j += 1;
        }
        n += 1;
    }
    t
};

/// The 16 bytes of `bytes` from `i`, padded with spaces past its end. Never through memory
/// written just before: a vector loaded from bytes just stored one by one waits for them.
#[inline]
#[target_feature(enable = "ssse3")]
fn window(bytes: &[u8], i: usize) -> __m128i {
    if i + 16 <= bytes.len() {
        load(bytes, i)
    } else {
        let (lo, hi) = window_end(bytes, i);
        _mm_set_epi64x(hi as i64, lo as i64)
    }
}

/// [`window`] past the last 16 bytes, as two words (returned in registers).
#[inline(never)]
#[target_feature(enable = "ssse3")]
fn window_end(bytes: &[u8], i: usize) -> (u64, u64) {
    let len = bytes.len();
    if i >= len {
        return (SPACES, SPACES);
    }
    let n = len - i;
    if len >= 16 {
        let (shuffle, spaces) = &SLIDE[n];
        let v = _mm_or_si128(
            _mm_shuffle_epi8(load(bytes, len - 16), constant(shuffle)),
            constant(spaces),
        );
        return (
            _mm_cvtsi128_si64(v) as u64,
            _mm_cvtsi128_si64(_mm_unpackhi_epi64(v, v)) as u64,
        );
    }
    let rest = &bytes[i..];
    let lo = padded_word(&rest[..n.min(8)]);
    let hi = if n > 8 {
        padded_word(&rest[8..])
    } else {
        SPACES
    };
    (lo, hi)
}

/// Up to 8 bytes as a little-endian word, padded with spaces.
#[inline]
fn padded_word(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    let load4 = |i: usize| u64::from(u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap()));
    match n {
        0 => SPACES,
        8 => u64::from_le_bytes(bytes.try_into().unwrap()),
        4..=7 => load4(0) | load4(n - 4) << (8 * (n - 4)) | SPACES << (8 * n),
        _ => {
            let mut w = SPACES << (8 * n);
            for (j, &b) in bytes.iter().enumerate() {
                w |= u64::from(b) << (8 * j);
            }
            w
        }
    }
}

/// Writes through `t` the escaped form of the 16 bytes of `bytes` from `i` (padded with
/// spaces), and of up to 2 bytes more when a character that needs escaping starts in the last
/// two. Returns how many bytes of `bytes` it took: 16, 17 or 18.
#[inline]
#[target_feature(enable = "ssse3")]
fn chunk(t: &mut Tail<'_>, bytes: &[u8], i: usize) -> usize {
    let b = window(bytes, i);
    let lead = _mm_or_si128(
        _mm_cmpeq_epi8(b, splat(0xC2)),
        _mm_cmpeq_epi8(b, splat(0xE2)),
    );
    if _mm_movemask_epi8(lead) != 0 {
        // C2 80–9F is a C1 control, E2 80 A8 / A9 a line or paragraph separator: escaped, one
        // byte at a time. Other characters starting with C2 or E2 are clean.
        let next = window(bytes, i + 16);
        let n1 = _mm_alignr_epi8(next, b, 1);
        let n2 = _mm_alignr_epi8(next, b, 2);
        let c1 = _mm_and_si128(
            _mm_cmpeq_epi8(b, splat(0xC2)),
            _mm_cmpeq_epi8(_mm_and_si128(n1, splat(0xE0)), splat(0x80)),
        );
        let separator = _mm_and_si128(
            _mm_and_si128(
                _mm_cmpeq_epi8(b, splat(0xE2)),
                _mm_cmpeq_epi8(n1, splat(0x80)),
            ),
            _mm_cmpeq_epi8(_mm_or_si128(n2, splat(1)), splat(0xA9)),
        );
        if _mm_movemask_epi8(_mm_or_si128(c1, separator)) != 0 {
            let mut bytes = [0; 32];
            bytes[..16].copy_from_slice(&bytes_of(b));
            bytes[16..].copy_from_slice(&bytes_of(next));
            return byte_by_byte(t, &bytes);
        }
    }
    // Controls (at most 0x1F), and those below 16 that have a letter.
    let control = _mm_cmpeq_epi8(_mm_max_epu8(b, splat(0x1F)), splat(0x1F));
    let below_16 = _mm_cmpeq_epi8(_mm_max_epu8(b, splat(0x0F)), splat(0x0F));
    let letter = _mm_and_si128(_mm_shuffle_epi8(constant(&SHORT_CONTROLS), b), below_16);
    let lettered = _mm_andnot_si128(_mm_cmpeq_epi8(letter, _mm_setzero_si128()), below_16);
    let quote_or_backslash = _mm_or_si128(
        _mm_cmpeq_epi8(b, splat(b'"')),
        _mm_cmpeq_epi8(b, splat(b'\\')),
    );
    let short = _mm_or_si128(lettered, quote_or_backslash);
    let letters = _mm_or_si128(letter, _mm_and_si128(quote_or_backslash, b));
    let long = _mm_or_si128(
        _mm_andnot_si128(lettered, control),
        _mm_cmpeq_epi8(b, splat(0x7F)),
    );
    let short_mask = _mm_movemask_epi8(short) as usize;
    let long_mask = _mm_movemask_epi8(long) as usize;
    if short_mask | long_mask == 0 {
        t.put_block(&bytes_of(b), 16);
        return 16;
    }
    if long_mask == 0 {
        short_half(t, _mm_unpacklo_epi64(b, letters), short_mask & 0xFF);
        short_half(t, _mm_unpackhi_epi64(b, letters), short_mask >> 8);
        return 16;
    }
    let high = _mm_shuffle_epi8(
        constant(HEX),
        _mm_and_si128(_mm_srli_epi16(b, 4), splat(0x0F)),
    );
    let low = _mm_shuffle_epi8(constant(HEX), _mm_and_si128(b, splat(0x0F)));
    // [bytes 0-3, letters 0-3, bytes 4-7, letters 4-7], the same for the hex digits; then
    // each group of 4 as [bytes, letters, high digits, low digits].
    let (bl0, bl1) = (
        _mm_unpacklo_epi32(b, letters),
        _mm_unpackhi_epi32(b, letters),
    );
    let (hl0, hl1) = (_mm_unpacklo_epi32(high, low), _mm_unpackhi_epi32(high, low));
    for (half, bl, hl, pair) in [
        (0, bl0, hl0, _mm_unpacklo_epi64(b, letters)),
        (8, bl1, hl1, _mm_unpackhi_epi64(b, letters)),
    ] {
        let (s, l) = ((short_mask >> half) & 0xFF, (long_mask >> half) & 0xFF);
        if l == 0 {
            short_half(t, pair, s);
        } else {
            group(t, _mm_unpacklo_epi64(bl, hl), (s & 0xF) | (l & 0xF) << 4);
            group(t, _mm_unpackhi_epi64(bl, hl), (s >> 4) | (l >> 4) << 4);
        }
    }
    16
}

/// Writes 8 bytes, of which those in `mask` take a two-byte escape, from
/// `[bytes, escape letters]`.
#[inline]
#[target_feature(enable = "ssse3")]
fn short_half(t: &mut Tail<'_>, pair: __m128i, mask: usize) {
    let short = &SHORTS[mask];
    let v = _mm_or_si128(
        _mm_shuffle_epi8(pair, constant(&short.shuffle)),
        constant(&short.backslashes),
    );
    t.put_block(&bytes_of(v), usize::from(short.len));
}

/// Writes 4 bytes from `[bytes, escape letters, high hex digits, low hex digits]`; `classes`
/// has the two-byte escapes in its low 4 bits, the six-byte ones in its high 4.
#[inline]
#[target_feature(enable = "ssse3")]
fn group(t: &mut Tail<'_>, source: __m128i, classes: usize) {
    let g = &GROUPS[usize::from(GROUP_OF[classes])];
    let mut block = [0; 32];
    for k in 0..2 {
        let v = _mm_or_si128(
            _mm_shuffle_epi8(source, constant(&g.shuffle[k])),
            constant(&g.constant[k]),
        );
        block[16 * k..16 * k + 16].copy_from_slice(&bytes_of(v));
    }
    t.put_block(&block, usize::from(g.len));
}

/// [`chunk`] one byte at a time, for a chunk with a C1 control or a line separator: the 16
/// bytes, then the 16 after them.
#[inline(never)]
fn byte_by_byte(t: &mut Tail<'_>, bytes: &[u8; 32]) -> usize {
    let mut j = 0;
    while j < 16 {
        match escape_at(bytes, j) {
            Some((seq, n, used)) => {
                t.put(&seq[..n]);
                j += used;
            }
            None => {
                t.push(bytes[j]);
                j += 1;
            }
        }
    }
    j
}

//! Timestamps: RFC 3339 in UTC with 3, 6 or 9 fractional digits, or Unix epoch numbers.
//!
//! Formatting is done by hand (a civil-from-days conversion and a digit-pair table): it runs
//! once per line, and the micro-benchmark `benches/primitives.rs` compares it with the `time`
//! crate's RFC 3339 formatter.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How the timestamp of a line is written.
///
/// ```
/// use traceline::TimestampFormat;
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let t = UNIX_EPOCH + Duration::new(1_795_602_723, 123_456_789);
/// let mut out = Vec::new();
/// TimestampFormat::Rfc3339Nanos.write(&mut out, t);
/// assert_eq!(out, br#""2026-11-25T10:32:03.123456789Z""#);
/// out.clear();
/// TimestampFormat::Rfc3339Millis.write(&mut out, t);
/// assert_eq!(out, br#""2026-11-25T10:32:03.123Z""#);
/// out.clear();
/// TimestampFormat::UnixMillis.write(&mut out, t);
/// assert_eq!(out, b"1795602723123");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TimestampFormat {
    /// `"2026-11-25T10:32:03.123Z"`: what Elasticsearch's `date` type keeps.
    Rfc3339Millis,
    /// `"2026-11-25T10:32:03.123456Z"`.
    Rfc3339Micros,
    /// `"2026-11-25T10:32:03.123456789Z"` (the default): Loki's RFC3339Nano, ES `date_nanos`.
    #[default]
    Rfc3339Nanos,
    /// Milliseconds since the Unix epoch, as a JSON number.
    UnixMillis,
    /// Nanoseconds since the Unix epoch, as a JSON number.
    UnixNanos,
}

/// `"00"` to `"99"`; the entries past 99 are never read, they let a 7-bit index go unchecked.
pub(crate) static DIGITS2: [[u8; 2]; 128] = {
    let mut t = [[0u8; 2]; 128];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

thread_local! {
    /// The last second formatted on this thread, and its `"YYYY-MM-DDTHH:MM:SS.` text.
    static LAST_SECOND: std::cell::Cell<(u64, [u8; 32])> =
        const { std::cell::Cell::new((u64::MAX, [0; 32])) };
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
#[inline]
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The `"YYYY-MM-DDTHH:MM:SS.` text of `secs` at the start of a 32-byte buffer, and the
/// nanoseconds to write after it (the last ones of 9999 for times past it). Kept for the
/// thread's next line when the second is before 9999.
#[inline(never)]
fn format_second(secs: u64, nanos: u32) -> ([u8; 32], u32) {
    let b = second_text((secs / 86_400) as i64, (secs % 86_400) as usize, nanos);
    if b.0[1..5] != *b"9999" {
        LAST_SECOND.with(|c| c.set((secs, b.0)));
    }
    b
}

/// The time `before` the Unix epoch, as [`format_second`] gives it (never cached).
#[cold]
#[inline(never)]
fn format_second_before_epoch(before: Duration) -> ([u8; 32], u32) {
    let (secs, nanos) = before_epoch(before, 1);
    second_text(
        secs.div_euclid(86_400) as i64,
        secs.rem_euclid(86_400) as usize,
        nanos as u32,
    )
}

/// `-before` in units of `1 / per_second` s, rounded down (`-0.5001 s` is `-501` ms, as the
/// digits of its RFC 3339 text, `23:59:59.499`, say), and the rest (non-negative).
fn before_epoch(before: Duration, per_second: i128) -> (i128, i128) {
    let total = -(before.as_nanos() as i128);
    let unit = 1_000_000_000 / per_second;
    (total.div_euclid(unit), total.rem_euclid(unit))
}

/// The `"YYYY-MM-DDTHH:MM:SS.` text of the second `sod` of the day `days` after 1970-01-01, and
/// the nanoseconds to write after it: years past 9999 are written as the last nanosecond of
/// 9999, years before 0000 as its first.
fn second_text(days: i64, sod: usize, nanos: u32) -> ([u8; 32], u32) {
    let (mut y, mut mo, mut da) = civil_from_days(days);
    let (mut sod, mut nanos) = (sod, nanos);
    if y > 9999 {
        (y, mo, da, sod, nanos) = (9999, 12, 31, 86_399, 999_999_999);
    } else if y < 0 {
        (y, mo, da, sod, nanos) = (0, 1, 1, 0, 0);
    }
    let y = y as usize;
    let mut b = [0u8; 32];
    b[0] = b'"';
    b[1..3].copy_from_slice(&DIGITS2[y / 100]);
    b[3..5].copy_from_slice(&DIGITS2[y % 100]);
    b[5] = b'-';
    b[6..8].copy_from_slice(&DIGITS2[mo as usize]);
    b[8] = b'-';
    b[9..11].copy_from_slice(&DIGITS2[da as usize]);
    b[11] = b'T';
    b[12..14].copy_from_slice(&DIGITS2[sod / 3600]);
    b[14] = b':';
    b[15..17].copy_from_slice(&DIGITS2[(sod / 60) % 60]);
    b[17] = b':';
    b[18..20].copy_from_slice(&DIGITS2[sod % 60]);
    b[20] = b'.';
    (b, nanos)
}

impl TimestampFormat {
    /// Appends the timestamp for `t`, as a JSON value (quoted for RFC 3339).
    ///
    /// Times before 1970 are written as they are (`1969-12-31T23:59:59.500Z`, `-500` ms); in the
    /// RFC 3339 formats, years past 9999 as the last nanosecond of 9999 and years before 0000
    /// as its first (the Unix formats write the number).
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use traceline::TimestampFormat;
    ///
    /// let t = UNIX_EPOCH + Duration::new(1_795_602_723, 123_456_789);
    /// let mut out = Vec::new();
    /// TimestampFormat::Rfc3339Millis.write(&mut out, t);
    /// assert_eq!(out, br#""2026-11-25T10:32:03.123Z""#);
    /// ```
    pub fn write(self, out: &mut Vec<u8>, t: SystemTime) {
        // The length of the text, quotes included.
        let len = match self {
            TimestampFormat::Rfc3339Millis => 26,
            TimestampFormat::Rfc3339Micros => 29,
            TimestampFormat::Rfc3339Nanos => 32,
            TimestampFormat::UnixMillis | TimestampFormat::UnixNanos => {
                return self.write_number(out, t);
            }
        };
        let (mut b, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => {
                let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
                // The date and time of day change once a second: formatted once per second
                // per thread.
                match LAST_SECOND.with(std::cell::Cell::get) {
                    (cached, b) if cached == secs => (b, nanos),
                    _ => format_second(secs, nanos),
                }
            }
            Err(e) => format_second_before_epoch(e.duration()),
        };
        // The 9 fractional digits from the top: `x / 2^57` is `nanos / 10^8` with a fraction
        // accurate to better than `10^-8` (the error is below `10^9 / 2^57`), so each step's
        // `* 100` brings the next two digits above bit 57.
        const SHIFT: u32 = 57;
        const MASK: u64 = (1 << SHIFT) - 1;
        let mut x = u64::from(nanos) * ((1 << SHIFT) / 100_000_000 + 1);
        b[21] = b'0' + (x >> SHIFT) as u8;
        for at in [22, 24, 26, 28] {
            x = (x & MASK) * 100;
            b[at..at + 2].copy_from_slice(&DIGITS2[(x >> SHIFT) as usize]);
        }
        b[len - 2] = b'Z';
        b[len - 1] = b'"';
        crate::json::put_block(out, &b, len);
    }

    /// [`TimestampFormat::write`] for the Unix epoch numbers (out of line: the RFC 3339 path
    /// then needs fewer registers).
    #[inline(never)]
    fn write_number(self, out: &mut Vec<u8>, t: SystemTime) {
        let d = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d,
            Err(e) => {
                let per_second = if self == TimestampFormat::UnixMillis {
                    1_000
                } else {
                    1_000_000_000
                };
                let (units, _) = before_epoch(e.duration(), per_second);
                return crate::json::write_i128(out, units);
            }
        };
        let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
        // In `u128`: a clock past the year 584 million must not overflow.
        let (secs, nanos) = (u128::from(secs), u128::from(nanos));
        let number = if self == TimestampFormat::UnixMillis {
            secs * 1000 + nanos / 1_000_000
        } else {
            secs * 1_000_000_000 + nanos
        };
        crate::json::write_u128(out, number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use time::format_description::well_known::Rfc3339;

    /// Times before 1970 keep their date and their sign, as the `time` crate writes them.
    #[test]
    fn times_before_1970_are_written_as_they_are() {
        let cases: [(Duration, &str, i128, i128); 4] = [
            (
                Duration::from_millis(500),
                "1969-12-31T23:59:59.500000000Z",
                -500,
                -500_000_000,
            ),
            (
                Duration::new(0, 500_100_000),
                "1969-12-31T23:59:59.499900000Z",
                -501,
                -500_100_000,
            ),
            (
                Duration::new(86_400 * 365, 0),
                "1969-01-01T00:00:00.000000000Z",
                -31_536_000_000,
                -31_536_000_000_000_000,
            ),
            (
                Duration::new(4_102_444_800 - 1, 999_999_999),
                "1840-01-01T00:00:00.000000001Z",
                -4_102_444_800_000,
                -4_102_444_799_999_999_999,
            ),
        ];
        for (before, text, millis, nanos) in cases {
            let t = UNIX_EPOCH - before;
            let reference = time::OffsetDateTime::from(t).format(&Rfc3339).unwrap();
            let mut out = Vec::new();
            TimestampFormat::Rfc3339Nanos.write(&mut out, t);
            assert_eq!(out, format!("\"{text}\"").as_bytes(), "{before:?}");
            // The same instant as the `time` crate's text (which drops trailing zeros).
            let ours = time::OffsetDateTime::parse(text, &Rfc3339).unwrap();
            assert_eq!(
                ours,
                time::OffsetDateTime::parse(&reference, &Rfc3339).unwrap()
            );
            out.clear();
            TimestampFormat::Rfc3339Millis.write(&mut out, t);
            assert_eq!(
                out,
                format!("\"{}Z\"", &text[..23]).as_bytes(),
                "{before:?}"
            );
            out.clear();
            TimestampFormat::UnixMillis.write(&mut out, t);
            assert_eq!(out, millis.to_string().as_bytes(), "{before:?}");
            out.clear();
            TimestampFormat::UnixNanos.write(&mut out, t);
            assert_eq!(out, nanos.to_string().as_bytes(), "{before:?}");
        }
        // Before year 0: its first nanosecond.
        let t = UNIX_EPOCH - Duration::new(62_167_219_200 + 86_400, 0);
        let mut out = Vec::new();
        TimestampFormat::Rfc3339Micros.write(&mut out, t);
        assert_eq!(out, br#""0000-01-01T00:00:00.000000Z""#);
        // The next line of the thread, at a time after 1970, is not taken from a cache the
        // earlier time filled.
        out.clear();
        TimestampFormat::Rfc3339Millis.write(&mut out, UNIX_EPOCH + Duration::from_millis(1));
        assert_eq!(out, br#""1970-01-01T00:00:00.001Z""#);
    }

    #[test]
    fn epoch_numbers_of_far_future_times_do_not_overflow() {
        let t = UNIX_EPOCH + Duration::new(1 << 60, 5_000_000);
        let mut out = Vec::new();
        TimestampFormat::UnixMillis.write(&mut out, t);
        assert_eq!(out, b"1152921504606846976005");
        out.clear();
        TimestampFormat::UnixNanos.write(&mut out, t);
        assert_eq!(out, b"1152921504606846976005000000");
    }

    #[test]
    fn agrees_with_the_time_crate_over_four_centuries() {
        // Every 7919th day plus odd seconds, from 1970 to ~2400, incl. leap days.
        let mut day = 0u64;
        while day < 157_000 {
            let secs = day * 86_400 + (day * 7_777) % 86_400;
            let nanos = ((day * 104_729) % 1_000_000_000) as u32;
            let t = UNIX_EPOCH + Duration::new(secs, nanos);
            let mut out = Vec::new();
            TimestampFormat::Rfc3339Nanos.write(&mut out, t);
            let ours = std::str::from_utf8(&out)
                .unwrap()
                .trim_matches('"')
                .to_owned();
            let theirs = time::OffsetDateTime::from(t).format(&Rfc3339).unwrap();
            // `time` trims trailing zeros of the fraction; compare as parsed instants.
            let a = time::OffsetDateTime::parse(&ours, &Rfc3339).unwrap();
            let b = time::OffsetDateTime::parse(&theirs, &Rfc3339).unwrap();
            assert_eq!(a, b, "{ours} vs {theirs}");
            assert_eq!(ours.len(), 30);
            day += 79;
        }
    }

    #[test]
    fn leap_day_and_precision() {
        let t = UNIX_EPOCH + Duration::new(951_782_400 + 3_723, 5_000_007); // 2000-02-29T01:02:03
        let f = |fmt: TimestampFormat| {
            let mut out = Vec::new();
            fmt.write(&mut out, t);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            f(TimestampFormat::Rfc3339Nanos),
            r#""2000-02-29T01:02:03.005000007Z""#
        );
        assert_eq!(
            f(TimestampFormat::Rfc3339Micros),
            r#""2000-02-29T01:02:03.005000Z""#
        );
        assert_eq!(
            f(TimestampFormat::Rfc3339Millis),
            r#""2000-02-29T01:02:03.005Z""#
        );
        assert_eq!(f(TimestampFormat::UnixNanos), "951786123005000007");
        assert_eq!(f(TimestampFormat::UnixMillis), "951786123005");
    }

    #[test]
    fn every_fraction_digit_is_exact() {
        let secs = 1_795_602_723;
        let mut nanos = (0..1_000_000_000u32).step_by(997).collect::<Vec<_>>();
        for p in [
            1,
            10,
            100,
            1_000,
            10_000,
            100_000,
            1_000_000,
            10_000_000,
            100_000_000,
        ] {
            for k in 1..10 {
                nanos.extend([p * k - 1, p * k, p * k + 1]);
            }
        }
        nanos.push(999_999_999);
        for (i, n) in nanos.into_iter().enumerate() {
            // Every other one a new second, so both the cached and the fresh path are checked.
            let t = UNIX_EPOCH + Duration::new(secs + (i as u64 & 1) * i as u64, n);
            let mut out = Vec::new();
            TimestampFormat::Rfc3339Nanos.write(&mut out, t);
            assert_eq!(&out[21..30], format!("{n:09}").as_bytes(), "{n}");
            assert_eq!(&out[30..], b"Z\"");
        }
    }

    #[test]
    fn past_9999_is_clamped() {
        let t = UNIX_EPOCH + Duration::new(253_402_300_800 + 5, 7); // 10000-01-01T00:00:05
        for _ in 0..2 {
            let mut out = Vec::new();
            TimestampFormat::Rfc3339Micros.write(&mut out, t);
            assert_eq!(out, br#""9999-12-31T23:59:59.999999Z""#);
        }
    }
}

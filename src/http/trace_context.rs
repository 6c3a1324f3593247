//! W3C Trace Context (Level 1) and Baggage headers, parsed strictly.
//!
//! opentelemetry's stock `TraceContextPropagator` accepts malformed `traceparent` values, reads
//! only the first of several headers and uses an outdated `tracestate` key grammar. These
//! parsers follow the Recommendation and the W3C test suite instead; the validated
//! `tracestate` and `baggage` text is carried unchanged so that [`super::inject`] writes it
//! back as it came.
//!
//! `tracestate` keys follow the grammar of the current W3C test suite (the Level 2 draft's: a
//! key may start with a digit, a multi-tenant key is not limited to one `@`, and duplicate
//! keys are passed on rather than discarding the header). The Level 1 Recommendation's
//! stricter grammar, and its suite's strict mode, would discard such headers.

use http::HeaderMap;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};

/// A valid `traceparent`.
///
/// ```
/// use traceline::http::trace_context::parse_traceparent;
/// let tp = parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert_eq!(tp.parent_id, 0x00f067aa0ba902b7u64.to_be_bytes());
/// assert!(tp.sampled);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace id, never all zero.
    pub trace_id: [u8; 16],
    /// The caller's span id, never all zero.
    pub parent_id: [u8; 8],
    /// Bit 0 of the flags. Other flag bits are not propagated.
    pub sampled: bool,
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &v[start..end]
}

fn lower_hex(v: &[u8], out: &mut [u8]) -> Option<()> {
    debug_assert_eq!(v.len(), out.len() * 2);
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    for (i, o) in out.iter_mut().enumerate() {
        *o = digit(v[2 * i])? << 4 | digit(v[2 * i + 1])?;
    }
    Some(())
}

/// Parses one `traceparent` value.
///
/// ```
/// use traceline::http::trace_context::parse_traceparent;
///
/// let tp = parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert!(tp.sampled);
/// // Uppercase, wrong lengths, version ff and all-zero ids start a new trace:
/// assert!(parse_traceparent(b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_none());
/// assert!(parse_traceparent(b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_none());
/// assert!(parse_traceparent(b"00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
/// ```
pub fn parse_traceparent(value: &[u8]) -> Option<TraceParent> {
    let v = trim_ows(value);
    if v.len() < 55 {
        return None;
    }
    let mut version = [0u8; 1];
    lower_hex(&v[0..2], &mut version)?;
    match version[0] {
        0xff => return None,
        0x00 if v.len() != 55 => return None,
        _ if v.len() > 55 && v[55] != b'-' => return None,
        _ => {}
    }
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut parent_id = [0u8; 8];
    let mut flags = [0u8; 1];
    lower_hex(&v[3..35], &mut trace_id)?;
    lower_hex(&v[36..52], &mut parent_id)?;
    lower_hex(&v[53..55], &mut flags)?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some(TraceParent {
        trace_id,
        parent_id,
        sampled: flags[0] & 1 == 1,
    })
}

fn valid_key(k: &[u8]) -> bool {
    let first_ok = matches!(k.first(), Some(b'a'..=b'z' | b'0'..=b'9'));
    first_ok
        && k.len() <= 256
        && k[1..]
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/' | b'@'))
}

fn valid_value(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= 256
        && v.last() != Some(&b' ')
        && v.iter()
            .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
}

/// Longest `tracestate` passed on; longer lists lose whole members, long ones first.
///
/// ```
/// use traceline::http::trace_context::{parse_tracestate, TRACESTATE_MAX_LEN};
/// // Three members of 202 characters and a short one: over the limit, long ones go (from
/// // the end) until the list fits.
/// let long = format!("a={x},b=1,c={x},d={x}", x = "x".repeat(200));
/// assert!(long.len() > TRACESTATE_MAX_LEN);
/// let kept = parse_tracestate([long.as_bytes()]).unwrap();
/// assert!(kept.len() <= TRACESTATE_MAX_LEN);
/// assert!(kept.contains(",b=1,") && !kept.contains("d="));
/// ```
pub const TRACESTATE_MAX_LEN: usize = 512;

/// Combines and validates the `tracestate` values of a request, in order.
///
/// Returns `None` when there is nothing to keep: no members, an invalid member (the whole
/// header is then discarded, as the W3C suite expects), or more than 32 members. Lists over
/// 512 characters are shortened by dropping members over 128 characters, then members from
/// the end.
///
/// ```
/// use traceline::http::trace_context::parse_tracestate;
///
/// let joined = parse_tracestate([&b"foo=1 ,bar=2"[..], b"", b"t@v=x"]).unwrap();
/// assert_eq!(joined, "foo=1,bar=2,t@v=x");
/// assert_eq!(parse_tracestate([&b"foo=,bar=3"[..]]), None);
/// ```
pub fn parse_tracestate<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<String> {
    let mut members: Vec<&[u8]> = Vec::new();
    for value in values {
        for member in value.split(|&b| b == b',') {
            let member = trim_ows(member);
            if member.is_empty() {
                continue;
            }
            let eq = member.iter().position(|&b| b == b'=')?;
            if !valid_key(&member[..eq]) || !valid_value(&member[eq + 1..]) {
                return None;
            }
            members.push(member);
        }
    }
    if members.is_empty() || members.len() > 32 {
        return None;
    }
    let total = |m: &[&[u8]]| m.iter().map(|x| x.len()).sum::<usize>() + m.len().saturating_sub(1);
    while total(&members) > TRACESTATE_MAX_LEN {
        match members.iter().rposition(|m| m.len() > 128) {
            Some(i) => members.remove(i),
            None => members.pop().expect("non-empty while over the limit"),
        };
    }
    let joined = members.join(&b","[..]);
    String::from_utf8(joined).ok().filter(|s| !s.is_empty())
}

/// At most this many baggage members are passed on.
///
/// ```
/// use traceline::http::trace_context::{parse_baggage, BAGGAGE_MAX_MEMBERS};
/// let many: Vec<String> = (0..100).map(|i| format!("k{i}=v")).collect();
/// let kept = parse_baggage([many.join(",").as_bytes()]).unwrap();
/// assert_eq!(kept.split(',').count(), BAGGAGE_MAX_MEMBERS);
/// ```
pub const BAGGAGE_MAX_MEMBERS: usize = 64;
/// At most this many bytes of baggage are passed on (never a partial member).
///
/// ```
/// use traceline::http::trace_context::{parse_baggage, BAGGAGE_MAX_LEN};
/// // Ten members of 1000 bytes: the first eight fit.
/// let big: Vec<String> = (0..10).map(|i| format!("k{i}={}", "x".repeat(997))).collect();
/// let kept = parse_baggage([big.join(",").as_bytes()]).unwrap();
/// assert!(kept.len() <= BAGGAGE_MAX_LEN);
/// assert_eq!(kept.split(',').count(), 8);
/// ```
pub const BAGGAGE_MAX_LEN: usize = 8192;

fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn baggage_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

/// A token: a baggage member's key, or a property's.
fn token(k: &[u8]) -> bool {
    !k.is_empty() && k.iter().all(|&b| tchar(b))
}

/// `key OWS "=" OWS value`, or `key OWS` (a property with no value): the key and the value,
/// spaces around them left out.
fn key_value(part: &[u8]) -> (&[u8], Option<&[u8]>) {
    match part.iter().position(|&b| b == b'=') {
        Some(eq) => (trim_ows(&part[..eq]), Some(trim_ows(&part[eq + 1..]))),
        None => (trim_ows(part), None),
    }
}

fn valid_baggage_member(m: &[u8]) -> bool {
    let mut parts = m.split(|&b| b == b';');
    let Some((key, Some(value))) = parts.next().map(key_value) else {
        return false;
    };
    token(key) && value.iter().all(|&b| baggage_octet(b)) && parts.all(valid_baggage_property)
}

/// `property = key OWS "=" OWS value / key OWS` (a token key; a value of baggage octets).
fn valid_baggage_property(p: &[u8]) -> bool {
    let (key, value) = key_value(p);
    token(key) && value.is_none_or(|v| v.iter().all(|&b| baggage_octet(b)))
}

/// Combines the `baggage` values of a request: invalid members are dropped, and at most 64
/// members and 8192 bytes are kept, whole members only.
///
/// ```
/// use traceline::http::trace_context::parse_baggage;
/// assert_eq!(parse_baggage([&b"userId=alice, bad member ,isProd=false"[..]]).unwrap(), "userId=alice,isProd=false");
/// ```
pub fn parse_baggage<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<String> {
    let mut out: Vec<u8> = Vec::new();
    let mut count = 0;
    'outer: for value in values {
        for member in value.split(|&b| b == b',') {
            let member = trim_ows(member);
            if member.is_empty() || !valid_baggage_member(member) {
                continue;
            }
            if count == BAGGAGE_MAX_MEMBERS {
                break 'outer;
            }
            // A member that does not fit is dropped; the ones after it may still fit.
            let extra = member.len() + usize::from(!out.is_empty());
            if out.len() + extra > BAGGAGE_MAX_LEN {
                continue;
            }
            if !out.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(member);
            count += 1;
        }
    }
    String::from_utf8(out).ok().filter(|s| !s.is_empty())
}

/// A member an application put in a request's `baggage` itself, made valid where it can be:
/// the bytes of its value and of its properties' values that are not baggage octets (a space,
/// a quote, a backslash, a control or a non-ASCII byte), and a `%` that does not start an
/// escape (`100%`), are percent-encoded, as W3C Baggage asks; an escape the application wrote
/// (`a%20b`) is kept. `None` for an empty member, or one whose key (or a property's key) is
/// not a token, which nothing can repair.
fn encode_baggage_member(m: &[u8]) -> Option<Vec<u8>> {
    fn encode(out: &mut Vec<u8>, value: &[u8]) {
        for (i, &b) in value.iter().enumerate() {
            let literal_percent = b == b'%'
                && !value
                    .get(i + 1..i + 3)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
            if baggage_octet(b) && !literal_percent {
                out.push(b);
            } else {
                out.push(b'%');
                out.push(b"0123456789ABCDEF"[usize::from(b >> 4)]);
                out.push(b"0123456789ABCDEF"[usize::from(b & 0xF)]);
            }
        }
    }
    let mut parts = trim_ows(m).split(|&b| b == b';');
    let (key, Some(value)) = key_value(parts.next()?) else {
        return None;
    };
    if !token(key) {
        return None;
    }
    let mut out = key.to_vec();
    out.push(b'=');
    encode(&mut out, value);
    for p in parts {
        let (k, v) = key_value(p);
        if !token(k) {
            return None;
        }
        out.push(b';');
        out.extend_from_slice(k);
        if let Some(v) = v {
            out.push(b'=');
            encode(&mut out, v);
        }
    }
    Some(out)
}

/// The `baggage` a request sends: the members the application put in it (`own`, the values of
/// its `baggage` headers), made valid where they can be ([`encode_baggage_member`]), then the
/// caller's members (`incoming`) of other keys, within the W3C limits. `None` when no member
/// is left.
pub(crate) fn merge_baggage<'a>(
    own: impl IntoIterator<Item = &'a [u8]>,
    incoming: Option<&str>,
) -> Option<String> {
    let own: Vec<Vec<u8>> = own
        .into_iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .filter_map(encode_baggage_member)
        .collect();
    let own_keys: Vec<&[u8]> = own.iter().map(|m| key_value(m).0).collect();
    let added: Vec<&str> = incoming
        .unwrap_or_default()
        .split(',')
        .filter(|m| !own_keys.contains(&key_value(m.as_bytes()).0))
        .collect();
    let added = added.join(",");
    parse_baggage(own.iter().map(Vec::as_slice).chain([added.as_bytes()]))
}

/// What came in with a request and goes out unchanged with the calls it makes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Propagated {
    /// The `tracestate` as it came, and the trace it belongs to: it goes out only with that
    /// trace's `traceparent` (a handler may continue another trace, a queued message's).
    pub(crate) tracestate: Option<(TraceId, String)>,
    pub(crate) baggage: Option<String>,
}

/// Builds the parent context for a request from its headers: a remote span context when the
/// `traceparent` is valid (with its `tracestate`), and the `baggage`. `None` when the request
/// carries neither.
///
/// ```
/// use http::HeaderMap;
/// use opentelemetry::trace::TraceContextExt;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
/// let cx = traceline::http::trace_context::extract(&headers).unwrap();
/// assert_eq!(cx.span().span_context().trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// ```
pub fn extract(headers: &HeaderMap) -> Option<opentelemetry::Context> {
    extract_with(headers, super::Propagators::ALL)
}

/// [`extract`], reading only what the propagators `on` take.
pub(crate) fn extract_with(
    headers: &HeaderMap,
    on: super::Propagators,
) -> Option<opentelemetry::Context> {
    let mut tp = headers.get_all("traceparent").iter();
    let parent = match (tp.next(), tp.next()) {
        (Some(one), None) if on.trace_context => parse_traceparent(one.as_bytes()),
        _ => None, // none, or two or more: restart the trace
    };
    let tracestate = parent
        .and_then(|_| parse_tracestate(headers.get_all("tracestate").iter().map(|v| v.as_bytes())));
    let baggage = on
        .baggage
        .then(|| parse_baggage(headers.get_all("baggage").iter().map(|v| v.as_bytes())))
        .flatten();
    if parent.is_none() && baggage.is_none() {
        return None;
    }
    let mut cx = opentelemetry::Context::new();
    if let Some(p) = parent {
        let state = tracestate
            .as_deref()
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        let sc = SpanContext::new(
            TraceId::from_bytes(p.trace_id),
            SpanId::from_bytes(p.parent_id),
            if p.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            state,
        );
        cx = cx.with_remote_span_context(sc);
    }
    Some(
        cx.with_value(Propagated {
            tracestate: parent
                .zip(tracestate)
                .map(|(p, s)| (TraceId::from_bytes(p.trace_id), s)),
            baggage,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TID: &str = "12345678901234567890123456789012";

    fn tp(s: &str) -> Option<TraceParent> {
        parse_traceparent(s.as_bytes())
    }

    #[test]
    fn traceparent_valid_forms() {
        let p = tp(&format!("00-{TID}-1234567890123456-01")).unwrap();
        assert_eq!(p.trace_id[0], 0x12);
        assert!(p.sampled);
        assert!(
            !tp(&format!("00-{TID}-1234567890123456-00"))
                .unwrap()
                .sampled
        );
        // Unknown flag bits are dropped, bit 0 kept.
        assert!(
            !tp(&format!("00-{TID}-1234567890123456-02"))
                .unwrap()
                .sampled
        );
        assert!(
            tp(&format!("00-{TID}-1234567890123456-03"))
                .unwrap()
                .sampled
        );
        // Higher versions: first 55 chars, when followed by '-'.
        assert!(tp(&format!("cc-{TID}-1234567890123456-01")).is_some());
        assert!(
            tp(&format!(
                "cc-{TID}-1234567890123456-01-what-the-future-will-be-like"
            ))
            .is_some()
        );
        // Surrounding whitespace is tolerated.
        for ows in [" ", "\t", "\t ", " \t"] {
            assert!(tp(&format!("{ows}00-{TID}-1234567890123456-01{ows}")).is_some());
        }
    }

    #[test]
    fn traceparent_invalid_forms_restart_the_trace() {
        for bad in [
            format!("cc-{TID}-1234567890123456-01.what-the-future-will-be-like"),
            format!("00-{TID}-1234567890123456-01-what-the-future-will-be-like"),
            format!("ff-{TID}-1234567890123456-01"),
            format!(".0-{TID}-1234567890123456-01"),
            format!("0.-{TID}-1234567890123456-01"),
            format!("000-{TID}-1234567890123456-01"),
            format!("0000-{TID}-1234567890123456-01"),
            format!("0-{TID}-1234567890123456-01"),
            "00-00000000000000000000000000000000-1234567890123456-01".into(),
            "00-.2345678901234567890123456789012-1234567890123456-01".into(),
            "00-1234567890123456789012345678901.-1234567890123456-01".into(),
            "00-123456789012345678901234567890123-1234567890123456-01".into(),
            "00-1234567890123456789012345678901-1234567890123456-01".into(),
            format!("00-{TID}-0000000000000000-01"),
            format!("00-{TID}-.234567890123456-01"),
            format!("00-{TID}-123456789012345.-01"),
            format!("00-{TID}-12345678901234567-01"),
            format!("00-{TID}-123456789012345-01"),
            format!("00-{TID}-1234567890123456-.0"),
            format!("00-{TID}-1234567890123456-0."),
            format!("00-{TID}-1234567890123456-001"),
            format!("00-{TID}-1234567890123456-1"),
            format!("00-{TID}-1234567890123456-01."),
            format!(
                "00-{}-1234567890123456-01",
                TID.to_uppercase().replace('1', "A")
            ),
            format!("00-{TID}-123456789012345A-01"),
            "0".into(),
            "000".into(),
            String::new(),
        ] {
            assert_eq!(tp(&bad), None, "{bad:?}");
        }
    }

    fn ts(values: &[&str]) -> Option<String> {
        parse_tracestate(values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn tracestate_joins_headers_in_order_and_trims() {
        assert_eq!(
            ts(&["foo=1,bar=2", "rojo=1,congo=2", "baz=3"]).unwrap(),
            "foo=1,bar=2,rojo=1,congo=2,baz=3"
        );
        assert_eq!(
            ts(&["foo=1 \t , \t bar=2, \t baz=3"]).unwrap(),
            "foo=1,bar=2,baz=3"
        );
        assert_eq!(ts(&["", "foo=1"]).unwrap(), "foo=1");
        assert_eq!(ts(&[""]), None);
        // Duplicate keys are passed on as they came.
        assert_eq!(ts(&["foo=1", "foo=2"]).unwrap(), "foo=1,foo=2");
    }

    #[test]
    fn tracestate_key_grammar() {
        let all_key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
        let all_value: String = (0x20u8..=0x7e)
            .filter(|b| *b != b',' && *b != b'=')
            .map(char::from)
            .collect();
        assert!(ts(&[&format!("{all_key}={all_value}")]).is_some());
        assert!(ts(&[&format!("{all_key}@a-z0-9_-*/={all_value}")]).is_some());
        for ok in [
            "foo@=1",
            "foo@@bar=1",
            "foo@bar@baz=1",
            "t@vvvvvvvvvvvvvvv=1",
        ] {
            assert!(ts(&[ok, "bar=2"]).is_some(), "{ok}");
        }
        let long_tenant = format!("{}@{}=1", "t".repeat(241), "v".repeat(14));
        assert!(ts(&["foo=1", &long_tenant]).is_some());
        assert!(ts(&["foo=1", &format!("{}=1", "z".repeat(256))]).is_some());
        assert_eq!(ts(&["foo=1", &format!("{}=1", "z".repeat(257))]), None);
        for bad in ["@foo=1,bar=2", "foo =1", "FOO=1", "foo.bar=1", "=1"] {
            assert_eq!(ts(&[bad]), None, "{bad}");
        }
    }

    #[test]
    fn tracestate_values_and_member_limit() {
        for bad in ["foo=bar=baz", "foo=,bar=3", "foo=a\u{7f}", "foo=é"] {
            assert_eq!(ts(&[bad]), None, "{bad}");
        }
        let members: Vec<String> = (1..=33).map(|i| format!("bar{i:02}={i:02}")).collect();
        assert_eq!(
            ts(&[&members[..32].join(",")]).unwrap().split(',').count(),
            32
        );
        assert_eq!(ts(&[&members.join(",")]), None);
    }

    #[test]
    fn tracestate_over_512_drops_long_members_first() {
        let long = format!("big={}", "x".repeat(200));
        let small: Vec<String> = (0..20)
            .map(|i| format!("k{i:02}={}", "v".repeat(14)))
            .collect();
        let mut all = vec![long.clone()];
        all.extend(small.iter().cloned());
        let out = ts(&[&all.join(",")]).unwrap();
        assert!(!out.contains("big="), "the long member goes first");
        assert!(out.len() <= TRACESTATE_MAX_LEN);
        assert!(out.starts_with("k00="));
    }

    #[test]
    fn baggage_limits_and_invalid_members() {
        assert_eq!(
            parse_baggage([&b"a=1;prop=x, b=%20two"[..], b"c=3"]).unwrap(),
            "a=1;prop=x,b=%20two,c=3"
        );
        assert_eq!(parse_baggage([&b"noequals, a=1"[..]]).unwrap(), "a=1");
        assert_eq!(parse_baggage([&b"a=\"q\""[..]]), None);
        let many: Vec<String> = (0..100).map(|i| format!("k{i}=v")).collect();
        let out = parse_baggage([many.join(",").as_bytes()]).unwrap();
        assert_eq!(out.split(',').count(), BAGGAGE_MAX_MEMBERS);
        let big: Vec<String> = (0..10)
            .map(|i| format!("k{i}={}", "v".repeat(1000)))
            .collect();
        let out = parse_baggage([big.join(",").as_bytes()]).unwrap();
        assert!(out.len() <= BAGGAGE_MAX_LEN);
        assert!(
            out.split(',').all(|m| m.len() == 1003),
            "whole members only"
        );
        // A member too big to fit is dropped; the ones after it still go.
        let s = format!("a=1,big={},b=2", "x".repeat(9000));
        assert_eq!(parse_baggage([s.as_bytes()]).unwrap(), "a=1,b=2");
    }

    #[test]
    fn baggage_properties_follow_the_grammar() {
        // `property = key OWS "=" OWS value / key OWS`
        assert_eq!(
            parse_baggage([&b"a=1; p = x;flag"[..]]).as_deref(),
            Some("a=1; p = x;flag")
        );
        for bad in ["a=1;p=\"q\"", "a=1;=x", "a=1;p\\x", "a=1;"] {
            assert_eq!(parse_baggage([bad.as_bytes()]), None, "{bad}");
        }
    }

    #[test]
    fn extract_requires_exactly_one_traceparent_and_drops_tracestate_without_it() {
        let good = format!("00-{TID}-1234567890123456-01");
        let mut h = HeaderMap::new();
        h.append("traceparent", good.parse().unwrap());
        h.append("tracestate", "foo=1".parse().unwrap());
        let cx = extract(&h).unwrap();
        assert_eq!(cx.span().span_context().trace_id().to_string(), TID);
        assert!(cx.span().span_context().is_remote());
        assert_eq!(
            cx.get::<Propagated>()
                .unwrap()
                .tracestate
                .as_ref()
                .map(|(t, s)| (t.to_string(), s.as_str())),
            Some((TID.to_string(), "foo=1"))
        );

        h.append("traceparent", good.parse().unwrap());
        assert!(
            extract(&h).is_none(),
            "two traceparent headers restart the trace"
        );

        let mut h = HeaderMap::new();
        h.append("tracestate", "foo=1".parse().unwrap());
        assert!(extract(&h).is_none());
    }
}

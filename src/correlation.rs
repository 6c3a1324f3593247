//! Correlation ids: one id per request scope, on every line logged inside it.
//!
//! A [`CorrelationId`] is validated text. [`scope`] makes a span that carries it: every line
//! logged inside that span (in child spans, across `.await`, in tasks spawned with
//! `.in_current_span()`) gets a `correlationId` key, and [`current`] reads it back, for error
//! bodies and outgoing calls.
//!
//! ```
//! use tracing::Instrument;
//! use traceline::correlation::{self, CorrelationId};
//!
//! # let subscriber = tracing_subscriber::registry().with(traceline::layer());
//! # use tracing_subscriber::prelude::*;
//! # tracing::subscriber::with_default(subscriber, || {
//! let id = CorrelationId::parse("order-7f3a").unwrap();
//! let span = correlation::scope(id.clone());
//! let _entered = span.enter();
//! tracing::info!("charging card"); // ... "correlationId":"order-7f3a" ...
//! assert_eq!(correlation::current(), Some(id));
//! # });
//! ```
//!
//! The scope is a span with target `traceline::correlation` at level `INFO`. In a subscriber
//! you build yourself, a filter that turns that target off (for example an `EnvFilter` of
//! `myapp=debug` alone) disables the scope, and the id with it: add `traceline=info` to such
//! filters. `traceline::install` keeps the scope (and the HTTP spans) on unless a directive
//! naming their target turns it `off` (`traceline=off`), and keeps the scope span out of
//! exported traces. Spans made while such a hidden scope is entered still join the trace the
//! scope was made in; a span given the scope as its explicit parent
//! (`info_span!(parent: &scope, ..)`) does not: `tracing-opentelemetry` 0.34 takes a parent
//! hidden from it for no parent, and starts a new trace (its lines keep the correlation id).
//! Enter the scope instead of naming it as the parent.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::registry::{LookupSpan, Registry};

use crate::fields::{CORRELATION_FIELD, SpanSlot};

/// Longest correlation id accepted, in bytes.
///
/// ```
/// use traceline::correlation::{CorrelationId, MAX_LEN};
/// assert!(CorrelationId::parse(&"a".repeat(MAX_LEN)).is_ok());
/// assert!(CorrelationId::parse(&"a".repeat(MAX_LEN + 1)).is_err());
/// ```
pub const MAX_LEN: usize = 128;

/// A validated correlation id: 1 to 128 characters of `A-Z a-z 0-9 . _ : + / = -`, with no
/// `..` in it and no `/` in front.
///
/// The rule admits UUIDs, ULIDs, 32-hex ids (nginx `$request_id`, W3C trace ids), Envoy's
/// `x-request-id` and base64 text (standard base64 that starts with `/`, about one random id
/// in 64, is refused: send base64url, or generate another), and nothing that could break a
/// header, a log line or a Unix path: no whitespace, control characters, quotes, `%`, `\`, `;`, `,`, non-ASCII, `..`,
/// or a leading `/` (so on Unix the id is safe to use in a file path: joined to a directory, it
/// stays inside it; and appended to a URL path as text). On Windows it is not: `:` is allowed,
/// and an id like `C:x` joined to a directory is a path on drive `C:` instead. Nor is it a safe
/// URL reference to resolve against a base URL: `:` is allowed (base64, `urn:uuid:` ids), so an
/// id like `https://host/x` would replace the base. Percent-encode it, or append it as text,
/// when building URLs.
///
/// ```
/// use traceline::correlation::CorrelationId;
///
/// assert!(CorrelationId::parse("8f14e45f-ceea-467f-a0e6-2a5bd1c3e9d0").is_ok());
/// assert!(CorrelationId::parse("01JD3Q0V9K5X6ZJ3W6M1T2Y4BC").is_ok());
/// assert!(CorrelationId::parse("a\r\nInjected: yes").is_err());
/// assert!(CorrelationId::parse("").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CorrelationId(Box<str>);

/// Why a correlation id was rejected. The message never repeats the rejected text, so it is
/// safe to log.
///
/// ```
/// use traceline::correlation::{CorrelationId, InvalidCorrelationId};
///
/// let err = CorrelationId::parse("a b").unwrap_err();
/// assert_eq!(err, InvalidCorrelationId::InvalidChar { index: 1 });
/// assert!(err.to_string().contains("byte 1"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidCorrelationId {
    /// The value is empty.
    Empty,
    /// The value is longer than [`MAX_LEN`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The value holds a byte outside `A-Z a-z 0-9 . _ : + / = -`.
    InvalidChar {
        /// The position of the first such byte.
        index: usize,
    },
    /// The value holds `..`, a path traversal.
    DotDot {
        /// The position of the first `..`.
        index: usize,
    },
    /// The value starts with `/`: an absolute path (joined to a directory, it replaces it).
    LeadingSlash,
}

impl fmt::Display for InvalidCorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("correlation id is empty; send 1 to 128 characters"),
            Self::TooLong { len } => write!(
                f,
                "correlation id is {len} bytes long; shorten it to at most {MAX_LEN} bytes"
            ),
            Self::InvalidChar { index } => write!(
                f,
                "correlation id has a character outside [A-Za-z0-9._:+/=-] at byte {index}; \
                 use letters, digits and . _ : + / = - only"
            ),
            Self::DotDot { index } => write!(
                f,
                "correlation id has `..` at byte {index}; path traversal sequences are not \
                 accepted: remove the `..` (single dots are fine)"
            ),
            Self::LeadingSlash => f.write_str(
                "correlation id starts with `/`, an absolute path; remove the leading `/` \
                 (a `/` further in is fine)",
            ),
        }
    }
}

impl std::error::Error for InvalidCorrelationId {}

#[inline]
fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'+' | b'/' | b'=' | b'-')
}

/// Checks `bytes` against the correlation id rule.
pub(crate) fn validate(bytes: &[u8]) -> Result<(), InvalidCorrelationId> {
    if bytes.is_empty() {
        return Err(InvalidCorrelationId::Empty);
    }
    if bytes.len() > MAX_LEN {
        return Err(InvalidCorrelationId::TooLong { len: bytes.len() });
    }
    if let Some(index) = bytes.iter().position(|&b| !allowed(b)) {
        return Err(InvalidCorrelationId::InvalidChar { index });
    }
    if bytes[0] == b'/' {
        return Err(InvalidCorrelationId::LeadingSlash);
    }
    match bytes.windows(2).position(|w| w == b"..") {
        Some(index) => Err(InvalidCorrelationId::DotDot { index }),
        None => Ok(()),
    }
}

impl CorrelationId {
    /// Validates `s` as a correlation id.
    ///
    /// ```
    /// use traceline::correlation::CorrelationId;
    /// let id = CorrelationId::parse("req-42").unwrap();
    /// assert_eq!(id.as_str(), "req-42");
    /// ```
    pub fn parse(s: &str) -> Result<Self, InvalidCorrelationId> {
        validate(s.as_bytes())?;
        Ok(CorrelationId(s.into()))
    }

    /// Makes a new random id: 32 lowercase hex digits (128 bits), the shape of nginx's
    /// `$request_id` and of a W3C trace id.
    ///
    /// ```
    /// use traceline::correlation::CorrelationId;
    /// let a = CorrelationId::generate();
    /// assert_eq!(a.as_str().len(), 32);
    /// assert_ne!(a, CorrelationId::generate());
    /// ```
    pub fn generate() -> Self {
        // SipHash keyed with per-process random keys, over a counter and the clock: unique in
        // practice and unpredictable from outside, without a random-number crate.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let state = std::collections::hash_map::RandomState::new();
        let mut bytes = [0u8; 16];
        for (i, half) in bytes.chunks_mut(8).enumerate() {
            let mut h = state.build_hasher();
            h.write_u64(n);
            h.write_u64(t);
            h.write_usize(i);
            half.copy_from_slice(&h.finish().to_be_bytes());
        }
        Self::from_hex_bytes(&bytes)
    }

    /// The id of a 16-byte trace id, as 32 lowercase hex digits.
    pub(crate) fn from_hex_bytes(bytes: &[u8]) -> Self {
        use fmt::Write;
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            let _ = write!(out, "{b:02x}");
        }
        CorrelationId(out.into())
    }

    /// The id as text.
    ///
    /// ```
    /// use traceline::correlation::CorrelationId;
    /// assert_eq!(CorrelationId::parse("x1").unwrap().as_str(), "x1");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CorrelationId({:?})", &*self.0)
    }
}

impl FromStr for CorrelationId {
    type Err = InvalidCorrelationId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for CorrelationId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A span that puts `id` on every line logged inside it.
///
/// Enter it, or attach it to a future with [`tracing::Instrument::instrument`]; child spans
/// and tasks spawned with `.in_current_span()` inherit the id.
///
/// ```
/// use tracing::Instrument;
/// use traceline::correlation::{self, CorrelationId};
///
/// async fn handle() { tracing::info!("inside"); }
/// let fut = handle().instrument(correlation::scope(CorrelationId::generate()));
/// # drop(fut);
/// ```
pub fn scope(id: CorrelationId) -> tracing::Span {
    tracing::info_span!(
        target: TARGET,
        "correlation",
        { CORRELATION_FIELD } = id.as_str()
    )
}

/// The target of a scope's span.
pub(crate) const TARGET: &str = "traceline::correlation";

/// The correlation id in effect for the current span, if any.
///
/// Works when the global or scoped subscriber is a [`tracing_subscriber::Registry`] with a
/// traceline layer in it.
///
/// ```
/// assert_eq!(traceline::correlation::current(), None);
/// ```
pub fn current() -> Option<CorrelationId> {
    tracing::dispatcher::get_default(|dispatch| {
        let current = dispatch.current_span();
        let id = current.id()?;
        let registry = dispatch.downcast_ref::<Registry>()?;
        let span = registry.span(id)?;
        span.scope().find_map(|s| {
            let ext = s.extensions();
            let raw = ext.get::<SpanSlot>()?.correlation.as_ref()?.clone();
            let text: String = serde_json::from_slice(&raw).ok()?;
            CorrelationId::parse(&text).ok()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_id_shapes() {
        for ok in [
            "8f14e45f-ceea-467f-a0e6-2a5bd1c3e9d0",     // UUID (Envoy)
            "01JD3Q0V9K5X6ZJ3W6M1T2Y4BC",               // ULID
            "4bf92f3577b34da6a3ce929d0e0e4736",         // nginx $request_id / trace id
            "Root=1-67891233-abcdef012345678912345678", // AWS X-Ray style
            "dGVzdA==",
            "a",
            &"x".repeat(128),
        ] {
            assert!(CorrelationId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_hostile_values_with_a_reason() {
        assert_eq!(CorrelationId::parse(""), Err(InvalidCorrelationId::Empty));
        assert_eq!(
            CorrelationId::parse(&"x".repeat(10_240)),
            Err(InvalidCorrelationId::TooLong { len: 10_240 })
        );
        for (bad, at) in [
            ("a\r\nb", 1),
            ("ab\n", 2),
            ("ünï", 0),
            ("a b", 1),
            ("a\u{1b}[31m", 1),
            ("a\"b", 1),
            ("%0d%0a", 0),
        ] {
            let err = CorrelationId::parse(bad).unwrap_err();
            assert_eq!(
                err,
                InvalidCorrelationId::InvalidChar { index: at },
                "{bad:?}"
            );
            assert!(!err.to_string().contains(bad));
        }
        assert_eq!(
            CorrelationId::parse("../etc/passwd"),
            Err(InvalidCorrelationId::DotDot { index: 0 })
        );
        assert_eq!(
            CorrelationId::parse("a/../b"),
            Err(InvalidCorrelationId::DotDot { index: 2 })
        );
        assert_eq!(
            CorrelationId::parse("/etc/passwd"),
            Err(InvalidCorrelationId::LeadingSlash)
        );
        assert_eq!(
            CorrelationId::parse("//host/x"),
            Err(InvalidCorrelationId::LeadingSlash)
        );
        assert!(
            CorrelationId::parse("a/b/c").is_ok(),
            "a `/` further in is fine"
        );
        assert!(
            InvalidCorrelationId::LeadingSlash
                .to_string()
                .contains("remove the leading `/`")
        );
    }

    #[test]
    fn generated_ids_are_32_hex_and_distinct() {
        let ids: std::collections::HashSet<_> =
            (0..10_000).map(|_| CorrelationId::generate()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(10) {
            assert_eq!(id.as_str().len(), 32);
            assert!(
                id.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
    }

    #[test]
    fn from_str_and_display_round_trip() {
        let id: CorrelationId = "abc:1".parse().unwrap();
        assert_eq!(id.to_string(), "abc:1");
    }
}

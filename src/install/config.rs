//! Reading and checking settings from the environment. Nothing here installs anything, so every
//! mistake is reported before the process is changed.

use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::Sampler;

use super::InitError;
use crate::Schema;

/// Where settings that are not given in code are read from.
pub(crate) type EnvLookup = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The names of variables read whose value is not UTF-8.
pub(crate) type NotUnicode = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// The process environment; a variable whose value is not UTF-8 reads as unset, and its name
/// is noted in the list given back, for `init()` to refuse it (only variables actually read:
/// one a builder setting overrides is never read).
pub(crate) fn process_env() -> (EnvLookup, NotUnicode) {
    let not_unicode = NotUnicode::default();
    let noted = not_unicode.clone();
    let lookup: EnvLookup = std::sync::Arc::new(move |name| match std::env::var(name) {
        Ok(v) => Some(v),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            noted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(name.to_owned());
            None
        }
    });
    (lookup, not_unicode)
}

/// Every variable `init()` reads from the process environment.
pub(crate) const VARIABLES: &[&str] = &[
    "RUST_LOG",
    "TRACELINE_SCHEMA",
    "GOOGLE_CLOUD_PROJECT",
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_PROPAGATORS",
    "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
];

/// The error for the first variable read (`names`) whose value is not UTF-8: it names the
/// variable, not its value (which may hold a key).
pub(crate) fn not_unicode_error(names: &[String]) -> Option<InitError> {
    let name = names.first()?;
    let setting = VARIABLES
        .iter()
        .find(|v| **v == name.as_str())
        .copied()
        .unwrap_or("the environment");
    Some(InitError::invalid(
        setting,
        "…",
        "the value is not valid UTF-8; set it to text, or unset it",
    ))
}

/// Reads `name`, treating an empty value as unset (as the OpenTelemetry spec asks).
pub(crate) fn get(env: &EnvLookup, name: &str) -> Option<String> {
    env(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The OTLP transport.
///
/// ```
/// use traceline::install::Protocol;
/// let builder = traceline::builder().protocol(Protocol::Grpc);
/// # let _ = builder;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// OTLP over gRPC (`grpc`), usually port 4317.
    Grpc,
    /// OTLP over HTTP with a protobuf body (`http/protobuf`), usually port 4318. The default, as
    /// in the OpenTelemetry specification.
    HttpProtobuf,
}

impl Protocol {
    pub(crate) fn parse(setting: &'static str, value: &str) -> Result<Self, InitError> {
        match value.to_ascii_lowercase().as_str() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "http/json" => Err(InitError::invalid(
                setting,
                value,
                "OTLP/JSON is not supported by traceline; use `http/protobuf` or `grpc`",
            )),
            _ => Err(InitError::invalid(
                setting,
                value,
                "unknown protocol; use `grpc` or `http/protobuf`",
            )),
        }
    }
}

/// Parses `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`. `None` when unset.
pub(crate) fn sampler(name: Option<&str>, arg: Option<&str>) -> Result<Option<Sampler>, InitError> {
    let Some(name) = name else { return Ok(None) };
    let ratio = || -> Result<f64, InitError> {
        match arg {
            None => Ok(1.0),
            Some(a) => parse_ratio("OTEL_TRACES_SAMPLER_ARG", a),
        }
    };
    let sampler = match name.to_ascii_lowercase().as_str() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio()?),
        "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        "parentbased_traceidratio" => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio()?)))
        }
        _ => {
            return Err(InitError::invalid(
                "OTEL_TRACES_SAMPLER",
                name,
                "unknown sampler; use one of always_on, always_off, traceidratio, \
                 parentbased_always_on, parentbased_always_off, parentbased_traceidratio",
            ));
        }
    };
    Ok(Some(sampler))
}

pub(crate) fn parse_ratio(setting: &'static str, value: &str) -> Result<f64, InitError> {
    match value.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(InitError::invalid(
            setting,
            value,
            "expected a number from 0.0 to 1.0, the fraction of traces to keep (0.1 keeps 10 %)",
        )),
    }
}

pub(crate) fn check_ratio(setting: &'static str, ratio: f64) -> Result<f64, InitError> {
    if (0.0..=1.0).contains(&ratio) {
        Ok(ratio)
    } else {
        Err(InitError::invalid(
            setting,
            ratio.to_string(),
            "expected a number from 0.0 to 1.0, the fraction of traces to keep (0.1 keeps 10 %)",
        ))
    }
}

/// Parses a boolean setting: `true` or `false`, any case.
pub(crate) fn boolean(setting: &'static str, value: &str) -> Result<bool, InitError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(InitError::invalid(
            setting,
            value,
            "expected `true` or `false`",
        )),
    }
}

/// The propagators named by `OTEL_PROPAGATORS`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Propagators {
    pub(crate) trace_context: bool,
    pub(crate) baggage: bool,
}

pub(crate) fn propagators(value: Option<&str>) -> Result<Propagators, InitError> {
    let Some(value) = value else {
        return Ok(Propagators {
            trace_context: true,
            baggage: true,
        });
    };
    let mut p = Propagators::default();
    let mut named = false;
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        named = true;
        match name.to_ascii_lowercase().as_str() {
            "tracecontext" => p.trace_context = true,
            "baggage" => p.baggage = true,
            "none" => {}
            _ => {
                return Err(InitError::invalid(
                    "OTEL_PROPAGATORS",
                    value,
                    format!(
                        "`{name}` is not supported; use a comma-separated list of \
                         tracecontext, baggage, or none"
                    ),
                ));
            }
        }
    }
    if !named {
        // Not read as `none`: a list of empty entries is more likely a mistake in the
        // deployment's settings than a wish to stop passing the trace on.
        return Err(InitError::invalid(
            "OTEL_PROPAGATORS",
            value,
            "names no propagator; use a comma-separated list of tracecontext, baggage, or \
             none (unset for both)",
        ));
    }
    Ok(p)
}

/// Parses `OTEL_RESOURCE_ATTRIBUTES`: `key=value` pairs separated by commas, keys and values
/// percent-encoded.
pub(crate) fn resource_attributes(value: Option<&str>) -> Result<Vec<KeyValue>, InitError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let bad = |why: &str| {
        InitError::invalid(
            "OTEL_RESOURCE_ATTRIBUTES",
            value,
            format!(
                "{why}; expected key=value pairs separated by commas, e.g. service.version=1.2,deployment.environment.name=prod"
            ),
        )
    };
    let mut out = Vec::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| bad(&format!("`{pair}` has no `=`")))?;
        // Keys and values alike: `,` and `=` in either are %-encoded (the specification).
        let k =
            percent_decode(k.trim()).ok_or_else(|| bad(&format!("`{pair}` has a bad %-escape")))?;
        if k.is_empty() {
            return Err(bad(&format!("`{pair}` has an empty key")));
        }
        let v =
            percent_decode(v.trim()).ok_or_else(|| bad(&format!("`{pair}` has a bad %-escape")))?;
        out.push(KeyValue::new(k, v));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            // Two hex digits, no sign (`from_str_radix` alone takes `%+1`).
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Checks an OTLP endpoint: an absolute `http://` URL with a host (`https://` is refused with
/// a clear message: the exporter is built without TLS). The scheme is read in any case, and
/// given back in lowercase; an empty port is the scheme's default.
pub(crate) fn endpoint(setting: &'static str, value: &str) -> Result<String, InitError> {
    // First: no other message may repeat a URL that holds credentials. Any `@` is taken for
    // them, also past a `/`, `?` or `#`: a password holding one of those (as base64 text may)
    // ends the authority early for a URL parser, and the rest would be repeated in errors and
    // export failures.
    let after_scheme = value.split_once("://").map_or(value, |(_, rest)| rest);
    if let Some((_, rest)) = after_scheme.rsplit_once('@') {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        // Never repeated in the message: the credentials are secrets.
        return Err(InitError::invalid(
            setting,
            format!("http://REDACTED@{host}…"),
            "credentials in the endpoint URL are not supported: remove the `user:password@` \
             part, and authenticate at a collector or sidecar on a trusted network (an `@` \
             that is not a credential, in a path or query, is written %40)",
        ));
    }
    // Past this point messages repeat the URL without its query, which may hold a key
    // (`?api-key=…`), as export failures do.
    let shown = without_query(value);
    let scheme = value.split_once("://").map(|(scheme, _)| scheme);
    if scheme.is_some_and(|s| s.eq_ignore_ascii_case("https")) {
        return Err(InitError::invalid(
            setting,
            shown.as_str(),
            "https:// needs TLS, which traceline's OTLP exporter is built without: send to an \
             http:// endpoint, e.g. a collector on localhost or a sidecar that forwards over TLS",
        ));
    }
    let rest = value
        .split_once("://")
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("http"))
        .map(|(_, rest)| rest)
        .ok_or_else(|| {
            InitError::invalid(
                setting,
                shown.as_str(),
                "an OTLP endpoint must be a URL starting with http://, \
                 e.g. http://collector:4317 (gRPC) or http://collector:4318 (HTTP)",
            )
        })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((host, tail)) = v6.split_once(']') else {
            return Err(InitError::invalid(
                setting,
                shown.as_str(),
                "the IPv6 address has no closing `]`; expected e.g. http://[::1]:4318",
            ));
        };
        // RFC 6874: a zone id follows `%25`. Neither exporter's client can use one (each
        // looks the bracketed text up as a host name), so spans would only be lost later.
        if host.contains('%') {
            return Err(InitError::invalid(
                setting,
                shown.as_str(),
                "an IPv6 address with a zone id (`%25…`) cannot be connected to by the OTLP \
                 exporter: give a global or loopback address, or a host name",
            ));
        }
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(InitError::invalid(
                setting,
                shown.as_str(),
                format!("`[{host}]` is not an IPv6 address; expected e.g. http://[::1]:4318"),
            ));
        }
        if !tail.is_empty() && !tail.starts_with(':') {
            return Err(InitError::invalid(
                setting,
                shown.as_str(),
                format!(
                    "`{tail}` after the IPv6 address is not a port (`:` and 1-65535); \
                     expected e.g. http://[::1]:4318"
                ),
            ));
        }
        (host, tail.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    // `host:` with no digits is the scheme's default port (RFC 3986, and the OTLP exporter
    // specification). Digits only: `parse` would take a sign (`+4318`), which the URL does
    // not.
    if let Some(port) = port.filter(|p| !p.is_empty()) {
        if !port.bytes().all(|b| b.is_ascii_digit())
            || !matches!(port.parse::<u16>(), Ok(p) if p > 0)
        {
            return Err(InitError::invalid(
                setting,
                shown.as_str(),
                format!("`{port}` is not a port number (1-65535)"),
            ));
        }
    }
    // A host name holds letters, digits, `-._~`, `%` escapes and RFC 3986's sub-delimiters.
    let name_char = |b: u8| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b);
    let v6 = authority.starts_with('[');
    if host.is_empty()
        || value.chars().any(|c| c.is_whitespace() || c.is_control())
        || (!v6 && !host.bytes().all(name_char))
    {
        return Err(InitError::invalid(
            setting,
            shown.as_str(),
            "the URL has no host or contains spaces; expected e.g. http://collector:4318",
        ));
    }
    Ok(format!("http://{rest}"))
}

/// `url` with its query, if it has one, replaced by `…`: the text errors may show.
pub(crate) fn without_query(url: &str) -> String {
    match url.split_once('?') {
        Some((before, _)) => format!("{before}?…"),
        None => url.to_owned(),
    }
}

/// `text` (an error's message) with the query of `url`, if it has one, replaced by `…`.
pub(crate) fn scrub_query(text: String, url: &str) -> String {
    match url
        .split_once('?')
        .map(|(_, q)| q.split('#').next().unwrap_or(q))
    {
        Some(q) if !q.is_empty() && text.contains(q) => text.replace(q, "…"),
        _ => text,
    }
}

/// `OTEL_TRACES_EXPORTER`: whether spans are exported (`otlp`) or not (`none`).
pub(crate) fn traces_exported(value: &str) -> Result<bool, InitError> {
    let mut otlp = false;
    let mut named = false;
    // Empty entries (`otlp,`) are skipped, as in `OTEL_PROPAGATORS`; no entry at all is not.
    for name in value.split(',').map(str::trim) {
        if name.is_empty() && !value.trim().is_empty() {
            continue;
        }
        named = true;
        match name.to_ascii_lowercase().as_str() {
            "otlp" => otlp = true,
            "none" => {}
            _ => {
                return Err(InitError::invalid(
                    "OTEL_TRACES_EXPORTER",
                    value,
                    "expected otlp or none (console, zipkin and others are not built in)",
                ));
            }
        }
    }
    if !named {
        return Err(InitError::invalid(
            "OTEL_TRACES_EXPORTER",
            value,
            "expected otlp or none (console, zipkin and others are not built in)",
        ));
    }
    Ok(otlp)
}

/// The schema preset named by `TRACELINE_SCHEMA`.
///
/// Presets are data: adding one is one more arm here.
pub(crate) fn schema_preset(
    value: &str,
    get: impl Fn(&str) -> Option<String>,
) -> Result<Schema, InitError> {
    Schema::from_name_in(value, get)
        .map_err(|e| InitError::invalid("TRACELINE_SCHEMA", value, e.to_string()))
}

/// Parses `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`: `key=value` pairs separated by commas, values
/// percent-encoded, each a valid HTTP header. The values are secrets (API keys): a message never
/// repeats them, only the keys.
pub(crate) fn headers(
    setting: &'static str,
    value: &str,
) -> Result<Vec<(String, String)>, InitError> {
    // Only what is certainly a header name is repeated: a mistyped entry (`Authorization:
    // Bearer …`, base64 padding) may hold the secret before its `=`.
    // An entry is shown by its name only when it is certainly `name=value`: a secret pasted
    // without a name (base64 `c2VjcmV0==`) would look like a name with an empty value.
    let keys_only = value
        .split(',')
        .map(|pair| {
            let has_value = pair
                .split_once('=')
                .is_some_and(|(_, v)| !v.trim().trim_matches('=').is_empty());
            match name_of(pair) {
                Some(k) if has_value => format!("{k}=…"),
                _ => "…".to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    let bad = |why: String| {
        InitError::invalid(
            setting,
            keys_only.clone(),
            format!(
                "{why}; expected key=value pairs separated by commas, values %-encoded, e.g. x-api-key=KEY,x-team=orders"
            ),
        )
    };
    let mut out = Vec::new();
    for (i, pair) in value.split(',').map(str::trim).enumerate() {
        if pair.is_empty() {
            continue;
        }
        let n = i + 1;
        let Some((_, v)) = pair.split_once('=') else {
            return Err(bad(format!("entry {n} has no `=`")));
        };
        let Some(k) = name_of(pair) else {
            return Err(bad(format!(
                "entry {n} has no valid header name before its `=`"
            )));
        };
        // Not `name=` nor `name==`: likely a pasted secret, not a header.
        if v.trim().trim_matches('=').is_empty() {
            return Err(bad(format!("entry {n} has no value")));
        }
        let v = percent_decode(v.trim())
            .ok_or_else(|| bad(format!("the value of `{k}` has a bad %-escape")))?;
        // What an HTTP header value can carry as text: visible ASCII, spaces and tabs.
        if !v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
            return Err(bad(format!(
                "the value of `{k}` has a control character or a non-ASCII character, which an HTTP header cannot carry"
            )));
        }
        out.push((k.to_ascii_lowercase(), v));
    }
    Ok(out)
}

/// The header name before the `=` of an entry, when it is one.
fn name_of(pair: &str) -> Option<&str> {
    pair.split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| is_header_name(k))
}

/// An HTTP header name: one or more token characters.
fn is_header_name(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// What `0` means for an export timeout: no limit, as the specification says. A year stands
/// for it: no export outlives it, and no client overflows adding it to the clock.
pub(crate) const NO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// Parses `OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT`: a whole number of milliseconds, `0` for no
/// limit.
pub(crate) fn timeout_ms(
    setting: &'static str,
    value: &str,
) -> Result<std::time::Duration, InitError> {
    match value.parse::<u64>() {
        Ok(0) => Ok(NO_TIMEOUT),
        Ok(ms) => Ok(std::time::Duration::from_millis(ms)),
        _ => Err(InitError::invalid(
            setting,
            value,
            "expected a whole number of milliseconds (0 for no limit), e.g. 10000 for 10 s \
             (no unit)",
        )),
    }
}

/// Parses `OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION`: `true` for `gzip`, `false` for `none`.
pub(crate) fn gzip(setting: &'static str, value: &str) -> Result<bool, InitError> {
    match value.to_ascii_lowercase().as_str() {
        "gzip" => Ok(true),
        "none" => Ok(false),
        _ => Err(InitError::invalid(
            setting,
            value,
            "expected gzip or none (zstd is not built in)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_that_is_not_utf8_is_an_error_naming_its_variable_not_its_value() {
        let err = not_unicode_error(&["OTEL_EXPORTER_OTLP_HEADERS".to_owned()])
            .unwrap()
            .to_string();
        assert!(err.contains("OTEL_EXPORTER_OTLP_HEADERS"), "{err}");
        assert!(err.contains("not valid UTF-8"), "{err}");
        assert!(not_unicode_error(&[]).is_none());
    }

    /// Every variable the install code reads has its name in the list (for the error).
    #[test]
    fn every_variable_read_is_in_the_list() {
        let sources = [
            include_str!("mod.rs"),
            include_str!("config.rs"),
            include_str!("../schema.rs"),
        ];
        let mut missing = Vec::new();
        for text in sources {
            for piece in text.split('"').skip(1).step_by(2) {
                let named = piece.starts_with("OTEL_")
                    || ["RUST_LOG", "TRACELINE_SCHEMA", "GOOGLE_CLOUD_PROJECT"].contains(&piece);
                if named
                    && !piece.ends_with('_')
                    && piece.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
                    && !VARIABLES.contains(&piece)
                {
                    missing.push(piece.to_owned());
                }
            }
        }
        assert!(missing.is_empty(), "{missing:?}");
    }

    #[test]
    fn endpoints() {
        for ok in [
            "http://localhost:4317",
            "http://127.0.0.1:4318/",
            "http://[::1]:4317",
            "http://[::ffff:10.0.0.1]",
            "http://otel_collector.svc:4318",
            "http://collector:4318/custom/path",
        ] {
            assert_eq!(endpoint("X", ok).unwrap(), ok);
        }
        // The scheme in any case (RFC 3986), given back in lowercase for the exporter.
        assert_eq!(
            endpoint("X", "HTTP://Collector:4318/v1/traces").unwrap(),
            "http://Collector:4318/v1/traces"
        );
        // An empty port is the scheme's default.
        for ok in [
            "http://127.0.0.1:/v1/traces",
            "http://[::1]:",
            "http://collector:",
        ] {
            assert_eq!(endpoint("X", ok).unwrap(), ok);
        }
        for bad in [
            "localhost:4317",
            "http://",
            "http://:4317",
            "http://host:port",
            "http://host:99999",
            "ftp://host",
            "http://ho st:1",
            // A sign before the port, an IPv6 address that is none, text after the address,
            // a character no host name has.
            "http://host:+4318",
            "http://host:-1",
            "http://[zz]:4318",
            "http://[::1]x:4317",
            "http://[::1",
            "http://a<b>:4318",
            "http://a\"b:4318",
        ] {
            assert!(endpoint("X", bad).is_err(), "{bad}");
        }
        // A zone id: no exporter client connects to one.
        for zoned in ["http://[fe80::1%25eth0]:4317", "http://[::1%25lo]:4318"] {
            let err = endpoint("X", zoned).unwrap_err().to_string();
            assert!(err.contains("zone id"), "{err}");
        }
        // A key in the query is never repeated, whatever the error.
        for keyed in [
            "https://collector.example.com/v1/traces?api-key=s3cr3t",
            "http://collector:431800/otlp?api-key=s3cr3t",
            "http://collector:4318/otlp?api-key=s3cr3t&x=a b",
            "ftp://collector/?api-key=s3cr3t",
            "http://[zz]:4318/?api-key=s3cr3t",
        ] {
            let err = endpoint("X", keyed).unwrap_err().to_string();
            assert!(!err.contains("s3cr3t"), "{err}");
            assert!(err.contains("?…"), "{err}");
        }
        assert_eq!(
            scrub_query(
                "error sending to http://c:4318/x?k=s3cr3t".into(),
                "http://c:4318/x?k=s3cr3t"
            ),
            "error sending to http://c:4318/x?…"
        );
        // No TLS in the exporter: refused up front, not lost at export.
        for tls in [
            "https://collector.example.com",
            "HTTPS://collector.example.com",
        ] {
            let err = endpoint("X", tls).unwrap_err();
            assert!(err.to_string().contains("needs TLS"), "{err}");
        }
        // Credentials: refused for what they are, and never repeated.
        for creds in [
            "http://user:s3cret@collector:4318",
            "http://s3cret@collector",
            "https://user:s3cret@collector:4318",
        ] {
            let msg = endpoint("X", creds).unwrap_err().to_string();
            assert!(msg.contains("credentials in the endpoint URL"), "{msg}");
            assert!(!msg.contains("s3cret"), "{msg}");
        }
        // A password holding `/`, `?` or `#` ends the authority for a URL parser: whatever
        // the error, the URL is not repeated.
        for creds in [
            "http://user:s3cret/x@collector:4318",
            "http://user:s3cret?x@collector:4318",
            "http://user:s3cret#x@collector:4318",
        ] {
            let msg = endpoint("X", creds).unwrap_err().to_string();
            assert!(!msg.contains("s3cret"), "{msg}");
        }
        // Any `@` is taken for credentials (a password may hold `/`, ending the authority
        // early for a URL parser): refused, never repeated, with the way to write a real one.
        for at in [
            "http://localhost:4318/s3cret@collector:4318",
            "http://collector:4318/v1/traces?tenant=s3cret@corp",
        ] {
            let msg = endpoint("X", at).unwrap_err().to_string();
            assert!(msg.contains("%40") && !msg.contains("s3cret"), "{msg}");
        }
    }

    #[test]
    fn traces_exporter() {
        assert!(traces_exported("otlp").unwrap());
        assert!(traces_exported(" OTLP ").unwrap());
        assert!(!traces_exported("none").unwrap());
        assert!(traces_exported("otlp,none").unwrap());
        for bad in ["console", "otlp,zipkin", "jaeger", ""] {
            assert!(traces_exported(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn gcp_project_is_looked_up_like_any_variable() {
        let lookup = |k: &str| (k == "GOOGLE_CLOUD_PROJECT").then(|| "p1".to_string());
        assert!(schema_preset("gcp", lookup).is_ok());
        assert!(schema_preset("GCP", lookup).is_ok());
        assert!(schema_preset("gcp:p2", |_| None).is_ok());
        assert!(schema_preset("nope", lookup).is_err());
    }

    #[test]
    fn percent_escapes_are_two_hex_digits() {
        assert_eq!(percent_decode("a%20b%2Cc").as_deref(), Some("a b,c"));
        for bad in ["%+1", "%-1", "%2", "%zz", "% 1"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn samplers() {
        assert!(sampler(None, Some("0.5")).unwrap().is_none());
        assert!(matches!(
            sampler(Some("traceidratio"), Some("0.25")).unwrap(),
            Some(Sampler::TraceIdRatioBased(r)) if r == 0.25
        ));
        assert!(matches!(
            sampler(Some("traceidratio"), None).unwrap(),
            Some(Sampler::TraceIdRatioBased(r)) if r == 1.0
        ));
        for arg in ["abc", "1.5", "-0.1", "NaN"] {
            assert!(sampler(Some("traceidratio"), Some(arg)).is_err(), "{arg}");
            assert!(
                sampler(Some("parentbased_traceidratio"), Some(arg)).is_err(),
                "{arg}"
            );
        }
        assert!(sampler(Some("jaeger_remote"), None).is_err());
    }

    #[test]
    fn attributes() {
        let attrs = resource_attributes(Some(
            "service.version=1.2, team=a%2Cb,deployment.environment.name=prod",
        ))
        .unwrap();
        assert_eq!(attrs.len(), 3);
        assert_eq!(attrs[1].value.as_str(), "a,b");
        assert!(resource_attributes(Some("novalue")).is_err());
        assert!(resource_attributes(Some("=x")).is_err());
        assert!(resource_attributes(Some("k=%zz")).is_err());
        // Keys are %-decoded like values: `,` and `=` in a key are written encoded.
        let attrs = resource_attributes(Some("team%3Dname=orders, a%2Cb=1")).unwrap();
        assert_eq!(attrs[0].key.as_str(), "team=name");
        assert_eq!(attrs[1].key.as_str(), "a,b");
        assert!(resource_attributes(Some("k%zz=v")).is_err());
    }

    #[test]
    fn timeouts() {
        assert_eq!(
            timeout_ms("X", "2500").unwrap(),
            std::time::Duration::from_millis(2500)
        );
        // `0` is no limit (the specification), not an error and not an instant timeout.
        assert_eq!(timeout_ms("X", "0").unwrap(), NO_TIMEOUT);
        assert!(NO_TIMEOUT >= std::time::Duration::from_secs(24 * 3600));
        for bad in ["", "-1", "1.5", "10s", "ten"] {
            let err = timeout_ms("X", bad).unwrap_err().to_string();
            assert!(err.contains("0 for no limit"), "{err}");
        }
    }

    #[test]
    fn propagator_lists() {
        assert_eq!(
            propagators(Some("baggage")).unwrap(),
            Propagators {
                trace_context: false,
                baggage: true
            }
        );
        assert_eq!(propagators(Some("none")).unwrap(), Propagators::default());
        assert!(propagators(Some("b3")).is_err());
    }
}

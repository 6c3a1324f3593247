//! Redaction: fields whose names say they hold a secret are written as `"[REDACTED]"`.
//!
//! The default deny list is `password`, `passwd`, `secret`, `token`, `api_key`, `apikey`,
//! `authorization`, `cookie`, `set-cookie`, `session`, `session_id`, `sessionid`,
//! `session.id` (OpenTelemetry's attribute), `connection_string`, `connectionstring`,
//! `database_url`, `databaseurl`, `private_key` and `privatekey` (session ids and connection
//! strings hold secrets too). A field is redacted when
//! its name is one of these or ends with one after a separator or a camelCase hump, ignoring
//! case and treating `-` and `_` alike: `password`, `db.password`, `user_token`,
//! `accessToken`, `DBPassword`, `X-Api-Key`, `Set-Cookie`, `http.session_id`, `sessionId`,
//! `DATABASE_URL` are redacted; `possession`, `tokens_used` and `DBPASSWORD` (all capitals, no
//! separator: no word to be told apart) are not.
//!
//! It covers event fields, span fields and error fields, in every layout, whatever the value's
//! type; with `init()`, the exported spans' attributes too. Its limits: it looks at field *names* only. A secret inside a message, inside a
//! `Debug` value of another field, or in a field with an innocent name is written as is.
//!
//! The decision is made once per callsite, with the callsite's keys, so redaction costs
//! nothing per event.
//!
//! ```
//! use traceline::Redaction;
//!
//! let r = Redaction::default().deny("ssn").allow("session");
//! assert!(r.is_denied("user.ssn"));
//! assert!(r.is_denied("db.password"));
//! assert!(!r.is_denied("session"));
//! assert!(Redaction::from_fn(|name| name.starts_with("pii.")).is_denied("pii.email"));
//! ```

use std::fmt;
use std::sync::Arc;

/// What a redacted value is written as.
///
/// ```
/// assert_eq!(traceline::redact::REDACTED, "[REDACTED]");
/// ```
pub const REDACTED: &str = "[REDACTED]";

/// The names redacted by default.
///
/// ```
/// let r = traceline::Redaction::default();
/// assert!(traceline::redact::DEFAULT_DENY_LIST.iter().all(|name| r.is_denied(name)));
/// ```
pub const DEFAULT_DENY_LIST: [&str; 19] = [
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "set-cookie",
    "session",
    "session_id",
    "sessionid",
    "session.id",
    "connection_string",
    "connectionstring",
    "database_url",
    "databaseurl",
    "private_key",
    "privatekey",
];

#[derive(Clone)]
enum Rule {
    Off,
    List(Vec<Box<[u8]>>),
    Fn(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

/// Which field names are redacted. See the [module docs](self).
///
/// ```
/// use traceline::Redaction;
///
/// let redaction = Redaction::default().deny("ssn");
/// assert!(redaction.is_denied("customer.ssn") && redaction.is_denied("sessionId"));
/// let layer = traceline::layer().with_redaction(redaction);
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct Redaction {
    rule: Rule,
}

impl fmt::Debug for Redaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Rule::Off => f.write_str("Redaction::none()"),
            Rule::List(l) => f
                .debug_list()
                .entries(l.iter().map(|p| String::from_utf8_lossy(p)))
                .finish(),
            Rule::Fn(_) => f.write_str("Redaction::from_fn(..)"),
        }
    }
}

fn normalize(name: &str) -> Box<[u8]> {
    name.bytes()
        .map(|b| {
            if b == b'-' {
                b'_'
            } else {
                b.to_ascii_lowercase()
            }
        })
        .collect()
}

impl Default for Redaction {
    /// The default deny list.
    ///
    /// ```
    /// assert!(traceline::Redaction::default().is_denied("Authorization"));
    /// ```
    fn default() -> Self {
        Redaction {
            rule: Rule::List(DEFAULT_DENY_LIST.iter().map(|n| normalize(n)).collect()),
        }
    }
}

impl Redaction {
    /// Whether no name at all is denied.
    #[cfg(feature = "install")]
    pub(crate) fn is_off(&self) -> bool {
        match &self.rule {
            Rule::Off => true,
            Rule::List(list) => list.is_empty(),
            Rule::Fn(_) => false,
        }
    }

    /// Redacts nothing.
    ///
    /// ```
    /// assert!(!traceline::Redaction::none().is_denied("password"));
    /// ```
    pub fn none() -> Self {
        Redaction { rule: Rule::Off }
    }

    /// Redacts the fields for which `deny(name)` is true. It should depend on the name only:
    /// its answer is cached per callsite.
    ///
    /// ```
    /// let r = traceline::Redaction::from_fn(|name| name.contains("card"));
    /// assert!(r.is_denied("card_number"));
    /// ```
    pub fn from_fn(deny: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Redaction {
            rule: Rule::Fn(Arc::new(deny)),
        }
    }

    /// Adds `name` to the deny list (on a list made by `default()` or `none()`). An empty name
    /// (a list read from configuration with a trailing comma, say) is ignored.
    ///
    /// ```
    /// assert!(traceline::Redaction::none().deny("iban").is_denied("customer.iban"));
    /// assert!(!traceline::Redaction::none().deny("").is_denied("user_id"));
    /// ```
    pub fn deny(mut self, name: &str) -> Self {
        let n = normalize(name);
        if n.is_empty() {
            return self;
        }
        match &mut self.rule {
            Rule::List(l) => {
                if !l.contains(&n) {
                    l.push(n);
                }
            }
            Rule::Off => self.rule = Rule::List(vec![n]),
            Rule::Fn(_) => {}
        }
        self
    }

    /// Removes `name` from the deny list.
    ///
    /// ```
    /// assert!(!traceline::Redaction::default().allow("session").is_denied("session"));
    /// ```
    pub fn allow(mut self, name: &str) -> Self {
        let n = normalize(name);
        if let Rule::List(l) = &mut self.rule {
            l.retain(|p| *p != n);
        }
        self
    }

    /// Whether a field called `name` is redacted.
    ///
    /// ```
    /// let r = traceline::Redaction::default();
    /// assert!(r.is_denied("db.password") && r.is_denied("accessToken"));
    /// assert!(!r.is_denied("possession") && !r.is_denied("tokens_used"));
    /// ```
    pub fn is_denied(&self, name: &str) -> bool {
        match &self.rule {
            Rule::Off => false,
            Rule::Fn(f) => f(name),
            Rule::List(list) => list.iter().any(|p| suffix_match(name.as_bytes(), p)),
        }
    }
}

/// `name` equals `pattern`, or ends with it after a separator or a camelCase hump (`dbPassword`,
/// and after an acronym, `DBPassword`), ignoring ASCII case and `-` vs `_`.
fn suffix_match(name: &[u8], pattern: &[u8]) -> bool {
    let (n, m) = (name.len(), pattern.len());
    if n < m || m == 0 {
        return false;
    }
    let start = n - m;
    let same = name[start..].iter().zip(pattern).all(|(&a, &b)| {
        let a = if a == b'-' {
            b'_'
        } else {
            a.to_ascii_lowercase()
        };
        a == b
    });
    if !same {
        return false;
    }
    if start == 0 {
        return true;
    }
    let before = name[start - 1];
    // A hump: an upper-case letter after a lower-case one or a digit, or the upper-case letter
    // that starts a word after an acronym (the `P` of `DBPassword`, followed by lower case).
    let starts_word = || name.get(start + 1).is_some_and(u8::is_ascii_lowercase);
    !before.is_ascii_alphanumeric()
        || (name[start].is_ascii_uppercase() && (!before.is_ascii_uppercase() || starts_word()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_list_matches_names_and_suffixes() {
        let r = Redaction::default();
        for yes in [
            "password",
            "PASSWORD",
            "db.password",
            "user_passwd",
            "client-secret",
            "token",
            "refresh_token",
            "accessToken",
            "api_key",
            "x-api-key",
            "X-Api-Key",
            "apikey",
            "authorization",
            "http.request.header.authorization",
            "cookie",
            "Set-Cookie",
            "set_cookie",
            "session",
            "user.session",
            // A word after an acronym.
            "DBPassword",
            "SMTPPassword",
            "XApiKey",
            "JWTToken",
            "AWSSecret",
            // Session ids and connection strings.
            "session_id",
            "http.session_id",
            "sessionId",
            "SESSION_ID",
            "session.id",
            "http.session.id",
            "connection_string",
            "db.connectionString",
            "DATABASE_URL",
            "databaseUrl",
            "tls.private_key",
            "privateKey",
        ] {
            assert!(r.is_denied(yes), "{yes}");
        }
        for no in [
            "possession",
            "tokens_used",
            "secretary_name",
            "user_id",
            "message",
            "mypassword",
            "MYPASSWORD",
            "DBPASSWORD",
            "",
        ] {
            assert!(!r.is_denied(no), "{no}");
        }
    }
}

//! Redaction: fields whose names say they hold a secret are written as `"[REDACTED]"`.
//!
//! The default deny list is `password`, `passwd`, `secret`, `token`, `api_key`, `apikey`,
//! `authorization`, `cookie`, `set-cookie`, `session`, `session_id`, `sessionid`,
//! `session.id` (OpenTelemetry's attribute), `connection_string`, `connectionstring`,
//! `database_url`, `databaseurl`, `private_key` and `privatekey` (session ids and connection
//! strings hold secrets too). A field is redacted when one of these is a word of its name, or
//! several words in a row: at its start, at its end or in between, set apart by a separator
//! (`.`, `_`, `-`), a camelCase hump or a digit, ignoring case and treating `.`, `-` and `_`
//! alike (`api_key` also denies `stripe.api.key` and `X-Api-Key`).
//! `password`, `db.password`, `user_token`, `accessToken`, `DBPassword`, `X-Api-Key`,
//! `Set-Cookie`, `http.session_id`, `sessionId`, `DATABASE_URL`, and also `secret_key`,
//! `AWS_SECRET_ACCESS_KEY`, `password_hash`, `passwordConfirmation` and `password2` are
//! redacted; `possession`, `tokens_used`, `secretary` and `DBPASSWORD` (all capitals, no
//! separator: no word to be told apart) are not.
//!
//! A secret's name is more often a longer phrase around the word than the word alone, so a
//! word anywhere counts: a field whose name only mentions one (`token_count`,
//! `session_duration_ms`) is redacted too. Keep such a field with
//! [`allow`](Redaction::allow), which takes that one name off (`allow("token_count")`), or
//! a word off the list (`allow("token")`).
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
    /// The words denied, and the names allowed whatever words they hold; both normalized.
    List {
        deny: Vec<Box<[u8]>>,
        allow: Vec<Box<[u8]>>,
    },
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
            Rule::List { deny, allow } => {
                let names = |l: &[Box<[u8]>]| {
                    l.iter()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .collect::<Vec<_>>()
                };
                f.debug_struct("Redaction")
                    .field("deny", &names(deny))
                    .field("allow", &names(allow))
                    .finish()
            }
            Rule::Fn(_) => f.write_str("Redaction::from_fn(..)"),
        }
    }
}

fn normalize(name: &str) -> Box<[u8]> {
    name.bytes().map(normal_byte).collect()
}

impl Default for Redaction {
    /// The default deny list.
    ///
    /// ```
    /// assert!(traceline::Redaction::default().is_denied("Authorization"));
    /// ```
    fn default() -> Self {
        Redaction {
            rule: Rule::List {
                deny: DEFAULT_DENY_LIST.iter().map(|n| normalize(n)).collect(),
                allow: Vec::new(),
            },
        }
    }
}

impl Redaction {
    /// Whether no name at all is denied.
    #[cfg(feature = "install")]
    pub(crate) fn is_off(&self) -> bool {
        match &self.rule {
            Rule::Off => true,
            Rule::List { deny, .. } => deny.is_empty(),
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
            Rule::List { deny, allow } => {
                allow.retain(|a| *a != n);
                if !deny.contains(&n) {
                    deny.push(n);
                }
            }
            Rule::Off => {
                self.rule = Rule::List {
                    deny: vec![n],
                    allow: Vec::new(),
                }
            }
            Rule::Fn(_) => {}
        }
        self
    }

    /// Keeps a field called `name` (ignoring case, `-` and `_` alike) whatever words its name
    /// holds, and takes `name` off the deny list when it is there, so that no name holding it
    /// as a word is redacted for it any more.
    ///
    /// ```
    /// let r = traceline::Redaction::default().allow("token_count");
    /// assert!(!r.is_denied("token_count") && r.is_denied("refresh_token"));
    /// let r = traceline::Redaction::default().allow("session");
    /// assert!(!r.is_denied("session") && !r.is_denied("session_duration_ms"));
    /// ```
    pub fn allow(mut self, name: &str) -> Self {
        let n = normalize(name);
        if let Rule::List { deny, allow } = &mut self.rule {
            deny.retain(|p| *p != n);
            if !n.is_empty() && !allow.contains(&n) {
                allow.push(n);
            }
        }
        self
    }

    /// Whether a field called `name` is redacted.
    ///
    /// ```
    /// let r = traceline::Redaction::default();
    /// assert!(r.is_denied("db.password") && r.is_denied("accessToken"));
    /// assert!(r.is_denied("aws_secret_access_key") && r.is_denied("password_hash"));
    /// assert!(!r.is_denied("possession") && !r.is_denied("tokens_used"));
    /// ```
    pub fn is_denied(&self, name: &str) -> bool {
        match &self.rule {
            Rule::Off => false,
            Rule::Fn(f) => f(name),
            Rule::List { deny, allow } => {
                let name = name.as_bytes();
                !allow.iter().any(|a| same_name(name, a))
                    && deny.iter().any(|p| word_match(name, p))
            }
        }
    }
}

/// Whether the default deny list redacts a field (or a URL query parameter) called `name`.
#[cfg(feature = "http")]
pub(crate) fn denied_by_default(name: &str) -> bool {
    static DEFAULT: std::sync::LazyLock<Redaction> = std::sync::LazyLock::new(Redaction::default);
    DEFAULT.is_denied(name)
}

/// `name`, normalized, is `normalized`.
fn same_name(name: &[u8], normalized: &[u8]) -> bool {
    name.len() == normalized.len()
        && name
            .iter()
            .zip(normalized)
            .all(|(&a, &b)| normal_byte(a) == b)
}

/// A byte as [`normalize`] makes it: separators (`-`, `.`) as `_`, letters in lower case.
fn normal_byte(b: u8) -> u8 {
    if b == b'-' || b == b'.' {
        b'_'
    } else {
        b.to_ascii_lowercase()
    }
}

/// Whether `pattern` (normalized) is one or more whole words of `name`, ignoring ASCII case
/// and `.`, `-` vs `_`: it starts `name` or a word in it (after a separator, a digit or a
/// camelCase hump: `oauth2token`, `dbPassword`, and after an acronym, `DBPassword`), and ends
/// `name` or a word in it (before a separator, a digit or a hump: `password_hash`,
/// `password2`, `passwordHash`).
fn word_match(name: &[u8], pattern: &[u8]) -> bool {
    let (n, m) = (name.len(), pattern.len());
    if n < m || m == 0 {
        return false;
    }
    (0..=n - m).any(|start| {
        let end = start + m;
        name[start..end]
            .iter()
            .zip(pattern)
            .all(|(&a, &b)| normal_byte(a) == b)
            && starts_word(name, start)
            && ends_word(name, end)
    })
}

fn starts_word(name: &[u8], start: usize) -> bool {
    if start == 0 {
        return true;
    }
    let before = name[start - 1];
    // A separator or a digit before it (`oauth2token`), or a hump: an upper-case letter after
    // a lower-case one, or the upper-case letter that starts a word after an acronym (the `P`
    // of `DBPassword`, followed by lower case).
    let next_lower = || name.get(start + 1).is_some_and(u8::is_ascii_lowercase);
    !before.is_ascii_alphabetic()
        || (name[start].is_ascii_uppercase() && (!before.is_ascii_uppercase() || next_lower()))
}

fn ends_word(name: &[u8], end: usize) -> bool {
    let Some(&after) = name.get(end) else {
        return true;
    };
    let last = name[end - 1];
    // A separator or a digit after the word's letters, or a hump (`passwordHash`). In all
    // capitals, `PASSWORDHASH`, no word is told apart.
    !after.is_ascii_alphabetic() || (after.is_ascii_uppercase() && !last.is_ascii_uppercase())
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
            // A word at the start or in the middle of a name.
            "secret_key",
            "SECRET_KEY",
            "aws_secret_access_key",
            "AWS_SECRET_ACCESS_KEY",
            "password_hash",
            "passwordConfirmation",
            "PasswordHash",
            "client_secret_value",
            "refresh_token_enc",
            "x-api-key-id",
            "session_id_hash",
            "password2",
            "db.password.old",
            // Separators alike, a digit before a word.
            "stripe.api.key",
            "tls.private.key",
            "database.url",
            "db.connection.string",
            "oauth2token",
            "s3secret",
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
            "PASSWORDHASH",
            "secretary",
            "tokenizer",
            "sessions",
            "api_keys_count",
            "",
        ] {
            assert!(!r.is_denied(no), "{no}");
        }
    }

    #[test]
    fn allow_keeps_one_name_or_takes_a_word_off() {
        let r = Redaction::default().allow("Token-Count");
        assert!(!r.is_denied("token_count") && !r.is_denied("TOKEN_COUNT"));
        assert!(r.is_denied("token_count_secret") && r.is_denied("refresh_token"));
        let r = Redaction::default().allow("token");
        assert!(!r.is_denied("refresh_token") && !r.is_denied("token_count"));
        assert!(r.is_denied("password"));
        // Denied again after being allowed.
        let r = Redaction::default()
            .allow("token_count")
            .deny("token_count");
        assert!(r.is_denied("token_count"));
        assert!(!Redaction::none().allow("x").is_denied("x"));
    }
}

//! What can go wrong when installing, each case saying what to change.

use std::fmt;

/// Why [`init()`](crate::init) or [`Builder::try_init`](crate::install::Builder::try_init)
/// did not install anything. The message names the setting, the value, and what to do.
///
/// ```
/// let err = traceline::builder()
///     .env(|name| match name {
///         "OTEL_TRACES_SAMPLER" => Some("traceidratio".into()),
///         "OTEL_TRACES_SAMPLER_ARG" => Some("ten percent".into()),
///         _ => None,
///     })
///     .try_init()
///     .unwrap_err();
/// assert!(matches!(err, traceline::InitError::InvalidValue { .. }));
/// assert!(err.to_string().contains("OTEL_TRACES_SAMPLER_ARG"));
/// ```
///
/// Its `Debug` form is its message too: `fn main() -> Result<(), InitError>` (or a boxed
/// error) prints what to do, not the variant's fields.
#[non_exhaustive]
pub enum InitError {
    /// A global `tracing` subscriber was set before (by an earlier `init()`, or by
    /// `tracing_subscriber::fmt().init()` or similar).
    AlreadyInstalled,
    /// A setting has a value traceline cannot use.
    InvalidValue {
        /// The environment variable or builder method the value came from.
        setting: &'static str,
        /// The value as given.
        value: String,
        /// What was wrong and what would be accepted.
        reason: String,
    },
    /// The OTLP exporter could not be built (its own message is kept).
    Exporter(String),
    /// A thread or runtime needed by the exporter or the writer could not be started.
    Io(std::io::Error),
    /// The directory of [`Writer::file`](crate::install::Writer::file) could not be created
    /// or written to.
    LogDirectory {
        /// The directory.
        dir: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The directory of [`Writer::file`](crate::install::Writer::file) is there, but the log
    /// file in it could not be opened for writing.
    LogFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Installing the subscriber or the `log` bridge failed after the checks passed (for example
    /// another `log` logger was set first).
    Install(String),
}

impl InitError {
    pub(crate) fn invalid(
        setting: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        InitError::InvalidValue {
            setting,
            value: value.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Debug for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::AlreadyInstalled => f.write_str(
                "a global tracing subscriber is already set: call traceline::init() once, \
                 at the start of main, and remove other subscriber installs \
                 (tracing_subscriber::fmt().init(), set_global_default)",
            ),
            InitError::InvalidValue {
                setting,
                value,
                reason,
            } => write!(f, "{setting}={value:?} is not valid: {reason}"),
            InitError::Exporter(msg) => write!(
                f,
                "the OTLP exporter could not be built: {msg}; check OTEL_EXPORTER_OTLP_* settings"
            ),
            InitError::Io(err) => write!(
                f,
                "could not start a background thread: {err}; the process may be at its \
                 thread or memory limit (ulimit -u, container limits)"
            ),
            InitError::LogDirectory { dir, source }
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotADirectory
                ) =>
            {
                write!(
                    f,
                    "Writer::file cannot use the directory {dir:?}: {source}; it, or a \
                     directory above it, is a file: give Writer::file the path of a directory"
                )
            }
            InitError::LogDirectory { dir, source } => write!(
                f,
                "Writer::file cannot use the directory {dir:?}: {source}; create it, or \
                 choose a directory the process can write to"
            ),
            InitError::LogFile { path, source } => {
                let hint = match source.kind() {
                    std::io::ErrorKind::IsADirectory => {
                        "a directory has that name: give Writer::file another file name"
                    }
                    std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::ReadOnlyFilesystem => {
                        "the process may not write it: fix its permissions, or choose a \
                         directory the process can write to"
                    }
                    _ => "choose a directory where the process can make and write files",
                };
                write!(
                    f,
                    "Writer::file cannot open the log file {path:?}: {source}; {hint}"
                )
            }
            InitError::Install(msg) => write!(
                f,
                "installing the subscriber failed: {msg}; if another `log` logger is set, \
                 remove it or turn the bridge off with .log_bridge(false)"
            ),
        }
    }
}

impl std::error::Error for InitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InitError::Io(err)
            | InitError::LogDirectory { source: err, .. }
            | InitError::LogFile { source: err, .. } => Some(err),
            _ => None,
        }
    }
}

impl From<std::io::Error> for InitError {
    fn from(err: std::io::Error) -> Self {
        InitError::Io(err)
    }
}

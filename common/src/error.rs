//! Error kinds shared by every library boundary: is it worth retrying or not.

use std::fmt;

/// Whether an operation that failed may succeed when tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A transient condition (I/O hiccup, throttling, a server restarting).
    Retryable,
    /// Trying again gives the same answer (bad input, missing object, refused key).
    Permanent,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Retryable => "retryable",
            ErrorKind::Permanent => "permanent",
        })
    }
}

/// An object store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{key}: not found")]
    NotFound { key: String },
    #[error("{key}: refused key: {reason}")]
    BadKey { key: String, reason: &'static str },
    #[error("{key}: {source}")]
    Io {
        key: String,
        #[source]
        source: std::io::Error,
    },
    /// An object store service (S3) answered with an error or could not be reached. The
    /// message carries the status and the service's error code, never credentials.
    #[error("{key}: {what}")]
    Service { key: String, what: String, cause: ServiceCause, status: Option<u16>, code: String },
}

/// Why a call to an object store service failed: decides retrying and the retry counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceCause {
    /// 429, 503 or a SlowDown/Throttling code: back off and try again.
    Throttled,
    /// Another 5xx.
    Server,
    /// A 4xx other than 408 and 429: the request itself is wrong (denied, bad bucket).
    Client,
    /// The request or the response timed out (or 408).
    Timeout,
    /// The service could not be reached (connection refused or reset, DNS).
    Network,
    /// The response could not be read (cut short, malformed).
    Response,
}

impl ServiceCause {
    /// The retry counters' label (one of `retry::CAUSES`).
    pub fn label(self) -> &'static str {
        match self {
            ServiceCause::Throttled => "throttled",
            ServiceCause::Server => "server",
            ServiceCause::Timeout => "timeout",
            ServiceCause::Network => "network",
            ServiceCause::Client | ServiceCause::Response => "other",
        }
    }
}

impl StoreError {
    /// Whether trying the same call again may succeed.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NotFound { .. } | StoreError::BadKey { .. } => ErrorKind::Permanent,
            StoreError::Service { cause: ServiceCause::Client, .. } => ErrorKind::Permanent,
            StoreError::Service { .. } => ErrorKind::Retryable,
            StoreError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::PermissionDenied
                | std::io::ErrorKind::InvalidInput
                | std::io::ErrorKind::InvalidData => ErrorKind::Permanent,
                _ => ErrorKind::Retryable,
            },
        }
    }
}

/// A value someone wrote (a flag, a message field, an environment variable, a card's entry)
/// that cannot be read: what it is for, the value as written and what was expected of it.
/// Its message is one line: `quality "best" is not reference or fast`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{value:?} {expected}", if what.is_empty() { String::new() } else { format!("{what} ") })]
pub struct BadValue {
    /// What the value is for (`layers`, `palette colour`), or empty where the expectation
    /// says it.
    pub what: &'static str,
    pub value: String,
    /// What was expected, as the rest of the sentence (`is not reference or fast`).
    pub expected: String,
}

impl BadValue {
    pub fn new(what: &'static str, value: impl Into<String>, expected: impl Into<String>) -> BadValue {
        BadValue { what, value: value.into(), expected: expected.into() }
    }
}

/// A setting read from the environment (`LAMINA_S3_*`, `LAMINA_AMQP_*`) that cannot be used.
/// Secrets never appear in the message: a URL that may hold a password is named, not shown.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// `<var>_FILE` names a file that cannot be read.
    #[error("{var}_FILE {path}: {source}")]
    File {
        var: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A file a variable names (a CA bundle) cannot be read.
    #[error("{var} {path}: {source}")]
    Named {
        var: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A variable's value cannot be used.
    #[error("{var}: {source}")]
    Value {
        var: &'static str,
        #[source]
        source: BadValue,
    },
    /// The queue URL is not one Lamina can connect to (its scheme is named, never the URL).
    #[error("{var}: {source}")]
    Url {
        var: &'static str,
        #[source]
        source: crate::queue::QueueError,
    },
    /// Two variables that go together, only one of them set.
    #[error("set both {0} and {1}, or neither")]
    Pair(&'static str, &'static str),
}

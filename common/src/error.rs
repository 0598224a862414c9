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

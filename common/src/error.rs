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
}

impl StoreError {
    /// Whether trying the same call again may succeed.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NotFound { .. } | StoreError::BadKey { .. } => ErrorKind::Permanent,
            StoreError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::PermissionDenied
                | std::io::ErrorKind::InvalidInput
                | std::io::ErrorKind::InvalidData => ErrorKind::Permanent,
                _ => ErrorKind::Retryable,
            },
        }
    }
}

//! Locations of inputs and outputs: a local folder or an `s3://bucket/prefix/` URI.

use std::fmt;
use std::path::PathBuf;

/// Where a job reads its images or writes its layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A folder on the local file system.
    Local(PathBuf),
    /// A bucket and a key prefix in S3-compatible object storage (no leading or trailing `/`).
    S3 { bucket: String, prefix: String },
}

/// A location string that could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("{input}: {reason}")]
pub struct LocationError {
    input: String,
    reason: &'static str,
}

impl Location {
    /// Parses `s3://bucket/prefix`, `file:///path` or a plain path.
    pub fn parse(input: &str) -> Result<Location, LocationError> {
        let err = |reason| LocationError { input: input.to_owned(), reason };
        if let Some(rest) = input.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(err("missing bucket name"));
            }
            // S3's own rule is stricter (3 to 63 lowercase letters, digits, '.' and '-'); some
            // S3-compatible servers allow more, nothing allows other characters.
            if bucket.len() > 255
                || !bucket.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                || !bucket.bytes().any(|b| b.is_ascii_alphanumeric())
            {
                return Err(err("not a bucket name (letters, digits, '.', '-' and '_')"));
            }
            if rest.chars().any(char::is_control) {
                return Err(err("control character in the prefix"));
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|s| s == "..") {
                return Err(err("'..' in prefix"));
            }
            return Ok(Location::S3 { bucket: bucket.to_owned(), prefix: prefix.to_owned() });
        }
        if input.contains("://") && !input.starts_with("file://") {
            return Err(err("unsupported scheme (use a local path or s3://bucket/prefix)"));
        }
        let path = input.strip_prefix("file://").unwrap_or(input);
        if path.is_empty() {
            return Err(err("empty path"));
        }
        Ok(Location::Local(PathBuf::from(path)))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}/"),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}/"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_local_and_s3() {
        assert_eq!(Location::parse("photos").unwrap(), Location::Local("photos".into()));
        assert_eq!(Location::parse("file:///tmp/x").unwrap(), Location::Local("/tmp/x".into()));
        assert_eq!(
            Location::parse("s3://bkt/a/b/").unwrap(),
            Location::S3 { bucket: "bkt".into(), prefix: "a/b".into() }
        );
        assert_eq!(Location::parse("s3://bkt").unwrap().to_string(), "s3://bkt/");
        assert!(Location::parse("s3:///x").is_err());
        assert!(Location::parse("s3://b/../x").is_err());
        assert!(Location::parse("gs://b/x").is_err());
        assert!(Location::parse("s3://a b/x").is_err());
        assert!(Location::parse("s3://b/x\ny").is_err());
    }
}

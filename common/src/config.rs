//! Settings shared by every binary that touches object storage, read from `LAMINA_S3_*`
//! environment variables. Secrets may come from a file (`*_FILE`, for Kubernetes Secrets and
//! Docker secrets) and never appear in `Debug` output or logs.

use std::fmt;

use crate::{BadValue, SettingsError};

/// A secret string: printed as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How to reach S3-compatible storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// Custom endpoint (`http://127.0.0.1:3900` for a local Garage); `None` for AWS.
    pub endpoint: Option<String>,
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`), which most non-AWS servers need.
    pub path_style: bool,
    /// Access key id and secret; `None` uses the standard AWS credential chain.
    pub credentials: Option<(String, Secret)>,
    /// Attempts per request, retries included.
    pub max_attempts: u32,
}

impl S3Settings {
    /// Reads `LAMINA_S3_ENDPOINT`, `LAMINA_S3_REGION` (default `us-east-1`),
    /// `LAMINA_S3_PATH_STYLE` (default: true when an endpoint is set),
    /// `LAMINA_S3_ACCESS_KEY_ID[_FILE]`, `LAMINA_S3_SECRET_ACCESS_KEY[_FILE]` and
    /// `LAMINA_S3_MAX_ATTEMPTS` (default 8).
    pub fn from_env() -> Result<S3Settings, SettingsError> {
        let endpoint = var("LAMINA_S3_ENDPOINT")?;
        let region = var("LAMINA_S3_REGION")?.unwrap_or_else(|| "us-east-1".to_owned());
        let path_style = match var("LAMINA_S3_PATH_STYLE")?.as_deref() {
            None => endpoint.is_some(),
            Some("1" | "true" | "yes") => true,
            Some("0" | "false" | "no") => false,
            Some(other) => return Err(bad("LAMINA_S3_PATH_STYLE", other, "is not true or false")),
        };
        let key = var("LAMINA_S3_ACCESS_KEY_ID")?;
        let secret = var("LAMINA_S3_SECRET_ACCESS_KEY")?;
        let credentials = match (key, secret) {
            (Some(k), Some(s)) => Some((k, Secret::new(s))),
            (None, None) => None,
            _ => return Err(SettingsError::Pair("LAMINA_S3_ACCESS_KEY_ID", "LAMINA_S3_SECRET_ACCESS_KEY")),
        };
        let max_attempts = match var("LAMINA_S3_MAX_ATTEMPTS")? {
            Some(n) => n.parse().ok().filter(|&n: &u32| n >= 1).ok_or_else(|| bad("LAMINA_S3_MAX_ATTEMPTS", &n, "is not a positive number"))?,
            None => 8,
        };
        if let Some(e) = &endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(bad("LAMINA_S3_ENDPOINT", e, "does not start with http:// or https://"));
            }
        }
        Ok(S3Settings { endpoint, region, path_style, credentials, max_attempts })
    }
}

/// A secret from an environment variable or the file named by `<name>_FILE`.
pub fn secret_var(name: &str) -> Result<Option<Secret>, SettingsError> {
    Ok(var(name)?.map(Secret::new))
}

/// A variable's value that cannot be used.
pub(crate) fn bad(var: &'static str, value: &str, expected: &str) -> SettingsError {
    SettingsError::Value { var, source: BadValue::new("", value, expected) }
}

/// An environment variable, or the trimmed content of the file named by `<name>_FILE`.
pub(crate) fn var(name: &str) -> Result<Option<String>, SettingsError> {
    if let Ok(v) = std::env::var(name) {
        return Ok(Some(v).filter(|v| !v.is_empty()));
    }
    match std::env::var(format!("{name}_FILE")) {
        Ok(path) => std::fs::read_to_string(&path)
            .map(|s| Some(s.trim().to_owned()))
            .map_err(|source| SettingsError::File { var: name.to_owned(), path, source }),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let s = S3Settings {
            endpoint: None,
            region: "r".into(),
            path_style: false,
            credentials: Some(("AKID".into(), Secret::new("very-secret-value"))),
            max_attempts: 1,
        };
        let printed = format!("{s:?}");
        assert!(!printed.contains("very-secret-value") && printed.contains("<redacted>"));
    }
}

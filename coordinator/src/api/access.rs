//! Who may call the coordinator's HTTP endpoints, and how often.
//!
//! Callers present `Authorization: Bearer <token>`. Tokens come from configuration, each
//! with a role: `read` (jobs, results, the fleet, metrics) or `submit` (that, and submitting
//! and cancelling jobs). A token is kept only as its SHA-256 digest and is never logged or
//! echoed: a caller is named by its role and position (`submit#1`). Each caller gets a token
//! bucket: `rate` requests a second on average, bursts of `burst`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use lamina_common::config::secret_var;
use lamina_common::SettingsError;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read jobs, results, the fleet and metrics.
    Read,
    /// Read, submit jobs and cancel them.
    Submit,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Submit => "submit",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub role: Role,
    /// `role#n`, safe to log: says which configured token without showing it.
    pub name: String,
    /// The token's digest: the scope of the caller's idempotency keys. Never logged.
    pub(crate) scope: [u8; 32],
}

/// Why a request was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No token, or one that is not configured: 401.
    Unknown,
    /// A valid token whose role does not allow this: 403.
    Role(Role),
}

/// The configured tokens.
#[derive(Debug, Default, Clone)]
pub struct Tokens(Vec<(Role, String, [u8; 32])>);

/// A setting of the HTTP endpoints that cannot be used; names the variable, never a token.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("LAMINA_API_TOKENS: entry {entry} is not ROLE:TOKEN with ROLE read or submit and a token of 16 to 256 visible characters")]
    Entry { entry: usize },
    #[error("{var}: {value:?} is not {expected}")]
    Value { var: &'static str, value: String, expected: &'static str },
    #[error("LAMINA_HTTP_TLS_CERT_FILE and LAMINA_HTTP_TLS_KEY_FILE go together: set both or neither")]
    TlsPair,
}

impl Tokens {
    /// Parses `role:token` entries separated by white space or new lines; lines starting
    /// with `#` are comments.
    pub fn parse(text: &str) -> Result<Tokens, AccessError> {
        let mut tokens = Tokens::default();
        let entries = text.lines().filter(|l| !l.trim_start().starts_with('#')).flat_map(str::split_whitespace);
        for (i, entry) in entries.enumerate() {
            let bad = AccessError::Entry { entry: i + 1 };
            let (role, token) = entry.split_once(':').ok_or(AccessError::Entry { entry: i + 1 })?;
            let role = match role {
                "read" => Role::Read,
                "submit" => Role::Submit,
                _ => return Err(bad),
            };
            if !(16..=256).contains(&token.len()) || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad);
            }
            tokens.add(role, token);
        }
        Ok(tokens)
    }

    fn add(&mut self, role: Role, token: &str) {
        let n = self.0.iter().filter(|(r, ..)| *r == role).count() + 1;
        self.0.push((role, format!("{}#{n}", role.as_str()), Sha256::digest(token.as_bytes()).into()));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The caller an `Authorization` header names, if it needs at least `role`.
    pub fn admit(&self, authorization: Option<&str>, role: Role) -> Result<Caller, Denied> {
        let token = authorization.and_then(|v| v.strip_prefix("Bearer ")).map(str::trim).ok_or(Denied::Unknown)?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Digests are compared, so the time taken says nothing about a token's characters.
        let (held, name, scope) = self.0.iter().find(|(_, _, d)| *d == digest).ok_or(Denied::Unknown)?;
        if *held < role {
            return Err(Denied::Role(*held));
        }
        Ok(Caller { role: *held, name: name.clone(), scope: *scope })
    }
}

/// How the HTTP endpoints are served: who may call them, how often, and over what.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub tokens: Tokens,
    /// Requests a second each caller may make on average.
    pub rate: f64,
    /// Requests a caller may make at once after a quiet spell.
    pub burst: f64,
    /// Whether jobs over the API may name local folders (the coordinator's and workers'
    /// file systems); off by default: an API caller names S3 locations only.
    pub allow_local: bool,
    /// PEM certificate chain and private key: the endpoints are served over TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Default for HttpSettings {
    fn default() -> HttpSettings {
        HttpSettings { tokens: Tokens::default(), rate: 20.0, burst: 40.0, allow_local: false, tls: None }
    }
}

impl HttpSettings {
    /// From `LAMINA_API_TOKENS` (or `_FILE`), `LAMINA_HTTP_TOKEN` (or `_FILE`: one token
    /// with the submit role), `LAMINA_API_RATE`, `LAMINA_API_BURST`, `LAMINA_API_ALLOW_LOCAL`
    /// and `LAMINA_HTTP_TLS_CERT_FILE` with `LAMINA_HTTP_TLS_KEY_FILE`.
    pub fn from_env() -> Result<HttpSettings, AccessError> {
        let mut settings = HttpSettings::default();
        if let Some(list) = secret_var("LAMINA_API_TOKENS")? {
            settings.tokens = Tokens::parse(list.expose())?;
        }
        if let Some(token) = secret_var("LAMINA_HTTP_TOKEN")? {
            settings.tokens.add(Role::Submit, token.expose());
        }
        let number = |var: &'static str, default: f64| -> Result<f64, AccessError> {
            match std::env::var(var) {
                Ok(v) if !v.is_empty() => v
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite() && *n > 0.0)
                    .ok_or(AccessError::Value { var, value: v, expected: "a positive number" }),
                _ => Ok(default),
            }
        };
        settings.rate = number("LAMINA_API_RATE", settings.rate)?;
        settings.burst = number("LAMINA_API_BURST", settings.burst)?.max(1.0);
        settings.allow_local = match std::env::var("LAMINA_API_ALLOW_LOCAL").as_deref() {
            Ok("true" | "1") => true,
            Ok("false" | "0" | "") | Err(_) => false,
            Ok(v) => return Err(AccessError::Value { var: "LAMINA_API_ALLOW_LOCAL", value: v.to_owned(), expected: "true or false" }),
        };
        let path = |var| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
        settings.tls = match (path("LAMINA_HTTP_TLS_CERT_FILE"), path("LAMINA_HTTP_TLS_KEY_FILE")) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(AccessError::TlsPair),
        };
        Ok(settings)
    }
}

/// One token bucket per caller.
#[derive(Debug)]
pub struct Limiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Callers remembered at most; a full table forgets the quietest (refilled) buckets.
const BUCKETS_KEPT: usize = 10_000;

impl Limiter {
    pub fn new(rate: f64, burst: f64) -> Limiter {
        Limiter { rate, burst, buckets: Mutex::default() }
    }

    /// Takes one request from `caller`'s bucket; `Err(wait)` when it is empty.
    pub fn take(&self, caller: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= BUCKETS_KEPT && !buckets.contains_key(caller) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (level, at)| *level + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (level, at) = buckets.entry(caller.to_owned()).or_insert((self.burst, now));
        *level = (*level + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *level >= 1.0 {
            *level -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *level) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_roles_and_submit_includes_read() {
        let tokens = Tokens::parse("# the fleet's tokens\nread:rrrrrrrrrrrrrrrrrrrr\nsubmit:ssssssssssssssssssss").unwrap();
        let read = tokens.admit(Some("Bearer rrrrrrrrrrrrrrrrrrrr"), Role::Read).unwrap();
        assert_eq!((read.role, read.name.as_str()), (Role::Read, "read#1"));
        assert_eq!(tokens.admit(Some("Bearer rrrrrrrrrrrrrrrrrrrr"), Role::Submit).unwrap_err(), Denied::Role(Role::Read));
        assert_eq!(tokens.admit(Some("Bearer ssssssssssssssssssss"), Role::Read).unwrap().name, "submit#1");
        assert_eq!(tokens.admit(Some("Bearer ssssssssssssssssssst"), Role::Read).unwrap_err(), Denied::Unknown);
        assert_eq!(tokens.admit(Some("ssssssssssssssssssss"), Role::Read).unwrap_err(), Denied::Unknown, "no Bearer scheme");
        assert_eq!(tokens.admit(None, Role::Read).unwrap_err(), Denied::Unknown);
    }

    #[test]
    fn a_bad_entry_is_named_by_position_and_never_shown() {
        for text in ["read:short", "admin:ssssssssssssssssssss", "ssssssssssssssssssss", "read:ssssssssssssssss\u{7f}sss"] {
            let e = Tokens::parse(&format!("read:rrrrrrrrrrrrrrrrrrrr {text}")).unwrap_err().to_string();
            assert!(e.contains("entry 2"), "{e}");
            assert!(!e.contains("ssss") && !e.contains("short"), "the token leaked: {e}");
        }
    }

    #[test]
    fn the_limiter_allows_a_burst_then_the_rate() {
        let limiter = Limiter::new(10.0, 3.0);
        for _ in 0..3 {
            limiter.take("a").unwrap();
        }
        let wait = limiter.take("a").unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        limiter.take("b").expect("each caller has a bucket of its own");
        std::thread::sleep(Duration::from_millis(120));
        limiter.take("a").expect("refilled at the rate");
    }
}

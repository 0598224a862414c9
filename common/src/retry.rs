//! The one retry helper: exponential backoff with full jitter, for errors that say they are
//! worth retrying. Everything that talks to the network retries through it.

use std::future::Future;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::ErrorKind;

/// How long and how often to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max_delay: Duration,
    /// Give up once this much time has passed since the first attempt.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    /// Rides out a restart or a short outage of a store or broker (minutes, not hours).
    fn default() -> Self {
        RetryPolicy { initial: Duration::from_millis(250), max_delay: Duration::from_secs(15), deadline: Duration::from_secs(180) }
    }
}

/// Anything that knows whether it is worth retrying.
pub trait Retryable {
    fn kind(&self) -> ErrorKind;

    /// Why it failed, for the retry counters: one of [`CAUSES`].
    fn cause(&self) -> &'static str {
        "other"
    }
}

/// The causes retries are counted by (a bounded metric label).
pub const CAUSES: [&str; 6] = ["throttled", "server", "network", "timeout", "broker", "other"];

static RETRIES: [std::sync::atomic::AtomicU64; 6] = [const { std::sync::atomic::AtomicU64::new(0) }; 6];

/// Retries made by this process so far, by cause.
pub fn retries() -> Vec<(&'static str, u64)> {
    CAUSES.iter().zip(&RETRIES).map(|(c, n)| (*c, n.load(std::sync::atomic::Ordering::Relaxed))).collect()
}

fn count_retry(cause: &str) {
    let i = CAUSES.iter().position(|c| *c == cause).unwrap_or(CAUSES.len() - 1);
    RETRIES[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

impl Retryable for crate::StoreError {
    fn kind(&self) -> ErrorKind {
        crate::StoreError::kind(self)
    }

    fn cause(&self) -> &'static str {
        match self {
            crate::StoreError::Service { cause, .. } => cause.label(),
            crate::StoreError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::TimedOut => "timeout",
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset => "network",
                _ => "other",
            },
            _ => "other",
        }
    }
}

/// Runs `op` until it succeeds, fails permanently, or the deadline passes. Waits a random
/// time between 0 and min(max_delay, initial * 2^attempt) between attempts ("full jitter"),
/// so that many workers hitting the same outage do not retry in lockstep.
pub async fn retry<T, E, F, Fut>(what: &str, policy: RetryPolicy, mut op: F) -> Result<T, E>
where
    E: Retryable + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut attempt: u32 = 0;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.kind() == ErrorKind::Retryable && started.elapsed() < policy.deadline => {
                let cap = policy.initial.saturating_mul(1 << attempt.min(20)).min(policy.max_delay);
                let delay = cap.mul_f64(jitter());
                attempt += 1;
                count_retry(e.cause());
                warn!(operation = what, attempt, cause = e.cause(), delay_ms = delay.as_millis() as u64, error = %e, "retrying");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A uniform number in [0, 1) from the clock and a counter (no need for a CSPRNG here).
fn jitter() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut z = nanos ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(ErrorKind);
    impl Retryable for E {
        fn kind(&self) -> ErrorKind {
            self.0
        }
    }
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}", self.0)
        }
    }

    fn fast() -> RetryPolicy {
        RetryPolicy { initial: Duration::from_millis(1), max_delay: Duration::from_millis(2), deadline: Duration::from_secs(5) }
    }

    #[tokio::test]
    async fn retries_transient_errors_until_success() {
        let mut calls = 0;
        let out = retry("t", fast(), || {
            calls += 1;
            let n = calls;
            async move { if n < 4 { Err(E(ErrorKind::Retryable)) } else { Ok(n) } }
        })
        .await;
        assert_eq!(out.unwrap(), 4);
    }

    #[tokio::test]
    async fn gives_up_at_once_on_permanent_errors_and_at_the_deadline() {
        let mut calls = 0;
        let out: Result<(), E> = retry("t", fast(), || {
            calls += 1;
            async { Err(E(ErrorKind::Permanent)) }
        })
        .await;
        assert!(out.is_err());
        assert_eq!(calls, 1);
        let policy = RetryPolicy { deadline: Duration::from_millis(20), ..fast() };
        let started = Instant::now();
        let out: Result<(), E> = retry("t", policy, || async { Err(E(ErrorKind::Retryable)) }).await;
        assert!(out.is_err() && started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn store_errors_are_retried_and_counted_by_their_type_not_their_text() {
        let service = |cause, status| crate::StoreError::Service { key: "k".into(), what: "whatever the text".into(), cause, status, code: String::new() };
        use crate::ServiceCause::*;
        for (cause, status, label, kind) in [
            (Throttled, Some(503), "throttled", ErrorKind::Retryable),
            (Server, Some(500), "server", ErrorKind::Retryable),
            (Timeout, None, "timeout", ErrorKind::Retryable),
            (Network, None, "network", ErrorKind::Retryable),
            (Client, Some(403), "other", ErrorKind::Permanent),
        ] {
            let e = service(cause, status);
            assert_eq!((e.cause(), Retryable::kind(&e)), (label, kind), "{cause:?}");
        }
        let not_found = crate::StoreError::NotFound { key: "k".into() };
        assert_eq!(Retryable::kind(&not_found), ErrorKind::Permanent);
        let lost = crate::queue::QueueError::Lost("connection reset".into());
        assert_eq!((lost.cause(), Retryable::kind(&lost)), ("broker", ErrorKind::Permanent), "a lost broker is never retried in place");
    }

    #[test]
    fn jitter_is_in_the_unit_interval() {
        assert!((0..1000).map(|_| jitter()).all(|j| (0.0..1.0).contains(&j)));
    }
}

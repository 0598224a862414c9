//! The task-queue seam: what the job runner and the worker session need from a message
//! queue, and nothing more. Two real implementations:
//! - [`RabbitBroker`]: RabbitMQ through lapin (durable quorum queues, publisher confirms,
//!   manual acks, dead-lettering), what a fleet runs on;
//! - [`MemoryBroker`]: an in-process queue with the same semantics (confirmed publishes,
//!   acks, rejects to the dead letters, redelivery of what a consumer dropped, a delivery
//!   limit), what `lamina run` runs on.
//!
//! Both carry the same JSON messages under the same queues, declared from one description
//! ([`Topology::queues`]), and every binary opens its broker with one call, [`connect`]
//! (`amqp://` or `amqps://` to RabbitMQ, `memory://NAME` to the in-process queue), so the
//! code above them (the coordinator's job runner, the worker's session, `lamina submit` and
//! `lamina dlq`) is written once. `tests.rs` holds both to the same contract.

mod memory;
mod rabbit;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

use crate::retry::{retry, RetryPolicy, Retryable};
use crate::ErrorKind;

pub use memory::MemoryBroker;
pub use rabbit::RabbitBroker;

use crate::amqp::AmqpSettings;

/// Opens the broker `settings.url` names, as `name` (the connection name RabbitMQ's
/// management UI shows): `amqp://` or `amqps://` connects to RabbitMQ; `memory://NAME` is
/// the in-process queue of that name, shared by every caller in this process.
pub async fn connect(settings: &AmqpSettings, name: &str) -> Result<std::sync::Arc<dyn Broker>, QueueError> {
    let url = settings.url.expose();
    if let Some(queue) = url.strip_prefix("memory://") {
        return Ok(std::sync::Arc::new(memory::named(queue, settings.topology())));
    }
    if url.starts_with("amqp://") || url.starts_with("amqps://") {
        return Ok(std::sync::Arc::new(RabbitBroker::connect(settings, name).await?));
    }
    check_url(url)?;
    Err(QueueError::Url { scheme: scheme(url) })
}

/// Whether a broker URL names a broker this build can open; the error shows only the URL's
/// scheme (the URL may hold a password).
pub fn check_url(url: &str) -> Result<(), QueueError> {
    if ["amqp://", "amqps://", "memory://"].iter().any(|s| url.starts_with(s)) {
        Ok(())
    } else {
        Err(QueueError::Url { scheme: scheme(url) })
    }
}

fn scheme(url: &str) -> String {
    url.split_once("://").map_or("(none)", |(s, _)| s).to_owned()
}

/// Returns of one message (unsettled, or handed back) that its queue allows; the next
/// return dead-letters it. RabbitMQ's quorum queues count so (`x-delivery-limit`: "returned
/// more than this many times"), and the in-process queue does the same (`tests.rs`).
pub const DELIVERY_LIMIT: u32 = 5;
/// The most times one message is delivered: the first delivery and [`DELIVERY_LIMIT`] more.
pub const MAX_DELIVERIES: u32 = DELIVERY_LIMIT + 1;

/// A queue operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The connection to the broker is gone: the session ends and reconnects. Never retried
    /// in place (nothing on a dead connection can succeed).
    #[error("lost the broker: {0}")]
    Lost(String),
    /// The broker refused a message (a negative publisher confirm): worth publishing again.
    #[error("the broker refused the message (negative confirm) on {queue}")]
    Nacked { queue: String },
    #[error("cannot encode message: {0}")]
    Encode(#[from] serde_json::Error),
    /// The broker URL names no broker this build can open.
    #[error("the broker URL's scheme {scheme:?} is not amqp://, amqps:// or memory://")]
    Url { scheme: String },
}

impl QueueError {
    /// Whether the session that met this error should reconnect (rather than give up).
    pub fn is_lost(&self) -> bool {
        matches!(self, QueueError::Lost(_))
    }
}

impl Retryable for QueueError {
    fn kind(&self) -> ErrorKind {
        match self {
            QueueError::Nacked { .. } => ErrorKind::Retryable,
            QueueError::Lost(_) | QueueError::Encode(_) | QueueError::Url { .. } => ErrorKind::Permanent,
        }
    }

    fn cause(&self) -> &'static str {
        "broker"
    }
}

/// The names of a deployment's queues, under a prefix (`lamina` by default) so several
/// deployments or tests share one broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub prefix: String,
}

impl Topology {
    pub fn new(prefix: impl Into<String>) -> Topology {
        Topology { prefix: prefix.into() }
    }

    /// Job requests, consumed by the coordinator.
    pub fn jobs(&self) -> String {
        format!("{}.jobs", self.prefix)
    }

    /// One image each, consumed by the workers of `pool` (a model and device class).
    pub fn tasks(&self, pool: &str) -> String {
        format!("{}.tasks.{pool}", self.prefix)
    }

    /// Results and heartbeats from the workers, consumed by the coordinator.
    pub fn events(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// Dead letters, kept for inspection and replay.
    pub fn dead(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// The coordinator's copy of the dead letters.
    pub fn dead_watch(&self) -> String {
        format!("{}.dead.watch", self.prefix)
    }

    /// The fanout exchange every queue dead-letters to.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dead-letters", self.prefix)
    }
}

/// The most dead-letter copies the coordinator's watch queue keeps: if no coordinator reads
/// it, the oldest go first.
pub const DEAD_WATCH_CAP: u32 = 100_000;

/// One queue of the topology, as every broker declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDecl {
    pub name: String,
    /// Messages that die here (rejected, or returned unsettled [`DELIVERY_LIMIT`] times) go
    /// to the dead-letter queues.
    pub dead_letters: bool,
    /// At most this many messages; the oldest are dropped past it.
    pub max_length: Option<u32>,
    /// Receives a copy of every dead letter.
    pub dead_letter_queue: bool,
}

impl Topology {
    /// Every queue of a deployment with the task queues of `pools`: the one description
    /// RabbitMQ's and the in-process queue's `declare` both follow.
    pub fn queues(&self, pools: &[&str]) -> Vec<QueueDecl> {
        let queue = |name: String, dead_letters, max_length, dead_letter_queue| QueueDecl { name, dead_letters, max_length, dead_letter_queue };
        let mut queues = vec![
            queue(self.dead(), false, None, true),
            queue(self.dead_watch(), false, Some(DEAD_WATCH_CAP), true),
            queue(self.events(), false, None, false),
            queue(self.jobs(), true, None, false),
        ];
        queues.extend(pools.iter().map(|pool| queue(self.tasks(pool), true, None, false)));
        queues
    }
}

/// Why a message was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeathReason {
    /// A consumer refused it as invalid.
    Rejected,
    /// It came back unsettled [`DELIVERY_LIMIT`] times (a worker died on it each time).
    DeliveryLimit,
    /// Its time to live ran out.
    Expired,
    /// Its queue was full.
    MaxLength,
    /// A reason this version does not know, as the broker said it.
    Other(String),
}

impl DeathReason {
    /// From RabbitMQ's `x-death` reason.
    pub fn parse(reason: &str) -> DeathReason {
        match reason {
            "rejected" => DeathReason::Rejected,
            "delivery_limit" => DeathReason::DeliveryLimit,
            "expired" => DeathReason::Expired,
            "maxlen" => DeathReason::MaxLength,
            other => DeathReason::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::DeliveryLimit => "delivery_limit",
            DeathReason::Expired => "expired",
            DeathReason::MaxLength => "maxlen",
            DeathReason::Other(reason) => reason,
        }
    }
}

impl std::fmt::Display for DeathReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a message was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    pub reason: DeathReason,
    /// The queue it died in.
    pub queue: String,
    pub count: i64,
}

/// Settles one delivery.
#[async_trait::async_trait]
pub trait Settle: Send + Sync {
    /// Done with it: the queue forgets it.
    async fn ack(&self) -> Result<(), QueueError>;
    /// Not a valid message: straight to the dead letters, never redelivered.
    async fn reject(&self) -> Result<(), QueueError>;
    /// Not done: back to the queue, to be delivered again.
    async fn requeue(&self) -> Result<(), QueueError>;
}

/// One message delivered to a consumer. Unsettled deliveries go back to the queue when
/// their consumer (or connection) goes away.
pub struct Delivery {
    pub body: Vec<u8>,
    /// Delivered before (to a consumer that did not settle it).
    pub redelivered: bool,
    /// Set on dead letters.
    pub death: Option<Death>,
    pub settle: Box<dyn Settle>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").field("bytes", &self.body.len()).field("redelivered", &self.redelivered).finish()
    }
}

/// The stream of deliveries of one queue, at most `prefetch` unsettled at a time.
#[async_trait::async_trait]
pub trait Consumer: Send {
    /// The next delivery; `None` when the broker cancelled the consumer.
    async fn next(&mut self) -> Option<Result<Delivery, QueueError>>;
    /// Changes how many unsettled deliveries this consumer may hold; `false` when the
    /// change cannot be made now (an earlier one is still settling) and should be retried.
    async fn set_prefetch(&mut self, prefetch: u16) -> Result<bool, QueueError>;
    /// Stops deliveries; those already held can still be settled.
    async fn cancel(&mut self) -> Result<(), QueueError>;
}

/// A publisher confirm: resolves once the broker holds the message durably.
pub type Confirm = Pin<Box<dyn Future<Output = Result<(), QueueError>> + Send>>;

/// A message queue: the topology, confirmed publishing, consuming with manual settlement.
#[async_trait::async_trait]
pub trait Broker: Send + Sync {
    fn topology(&self) -> &Topology;
    /// Declares the jobs, events and dead-letter queues and the task queue of each pool.
    /// Idempotent: every process does it at start and after reconnecting.
    async fn declare(&self, pools: &[&str]) -> Result<(), QueueError>;
    /// Sends a persistent message to `queue`; the returned confirm resolves once it is
    /// durable, so callers can keep many confirms in flight.
    async fn send(&self, queue: &str, body: Vec<u8>, priority: u8) -> Result<Confirm, QueueError>;
    /// Consumes `queue` with manual acknowledgements.
    async fn consume(&self, queue: &str, tag: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError>;
    /// Messages ready in `queue` (not delivered); `None` when the queue does not exist.
    async fn depth(&self, queue: &str) -> Result<Option<u64>, QueueError>;
    /// Takes the next ready message of `queue` without a consumer (`None` when there is
    /// none), to be settled like any delivery; unsettled, it goes back when the broker is
    /// closed.
    async fn get(&self, queue: &str) -> Result<Option<Delivery>, QueueError>;
    /// Deletes every ready message of `queue`; returns how many.
    async fn purge(&self, queue: &str) -> Result<u64, QueueError>;
    /// Closes the connection: unsettled deliveries go back to their queues.
    async fn close(&self);
}

impl dyn Broker + '_ {
    /// Publishes `message` as JSON and waits for its confirm.
    pub async fn publish<T: serde::Serialize + ?Sized>(&self, queue: &str, message: &T, priority: u8) -> Result<(), QueueError> {
        let body = serde_json::to_vec(message)?;
        self.send(queue, body, priority).await?.await
    }

    /// Publishes with retries through negative confirms (a lost broker is not retried).
    pub async fn publish_retrying<T: serde::Serialize + ?Sized>(
        &self,
        queue: &str,
        message: &T,
        priority: u8,
        policy: RetryPolicy,
    ) -> Result<(), QueueError> {
        let body = serde_json::to_vec(message)?;
        retry("publish", policy, || async { self.send(queue, body.clone(), priority).await?.await }).await
    }
}

/// Publishes many messages to one queue with their confirms in flight together: waiting for
/// each confirm in turn would cap a publisher at one message per broker round trip (a few
/// hundred per second), while a window of outstanding confirms lets the broker batch its
/// disk syncs. Messages come back to the caller once confirmed, in publishing order; a
/// message the broker refuses (negative confirm) is published again, alone, with retries.
pub struct Pipelined<'a, T> {
    broker: &'a dyn Broker,
    queue: String,
    priority: u8,
    window: usize,
    pending: VecDeque<(T, Vec<u8>, Confirm)>,
}

impl<'a, T: serde::Serialize> Pipelined<'a, T> {
    pub fn new(broker: &'a dyn Broker, queue: String, priority: u8, window: usize) -> Pipelined<'a, T> {
        Pipelined { broker, queue, priority, window: window.max(1), pending: VecDeque::new() }
    }

    /// Publishes `message`; returns those confirmed meanwhile (when the window was full).
    pub async fn send(&mut self, message: T) -> Result<Vec<T>, QueueError> {
        let body = serde_json::to_vec(&message)?;
        let confirm = self.broker.send(&self.queue, body.clone(), self.priority).await?;
        self.pending.push_back((message, body, confirm));
        let mut confirmed = Vec::new();
        while self.pending.len() >= self.window {
            confirmed.push(self.settle_one().await?);
        }
        Ok(confirmed)
    }

    /// Waits for every outstanding confirm; returns the messages confirmed.
    pub async fn flush(&mut self) -> Result<Vec<T>, QueueError> {
        let mut confirmed = Vec::with_capacity(self.pending.len());
        while !self.pending.is_empty() {
            confirmed.push(self.settle_one().await?);
        }
        Ok(confirmed)
    }

    async fn settle_one(&mut self) -> Result<T, QueueError> {
        let Some((message, body, confirm)) = self.pending.pop_front() else {
            return Err(QueueError::Lost("nothing pending".to_owned()));
        };
        match confirm.await {
            Ok(()) => Ok(message),
            Err(QueueError::Nacked { .. }) => {
                let (broker, queue, priority) = (self.broker, self.queue.as_str(), self.priority);
                retry("publish again after a negative confirm", RetryPolicy::default(), || async {
                    broker.send(queue, body.clone(), priority).await?.await
                })
                .await?;
                Ok(message)
            }
            Err(e) => Err(e),
        }
    }
}

/// An error that may mean the broker went away (reconnect) rather than a fault of our own.
pub trait SessionError: std::fmt::Display {
    fn is_lost(&self) -> bool;
}

impl SessionError for QueueError {
    fn is_lost(&self) -> bool {
        QueueError::is_lost(self)
    }
}

/// Runs `session` (connect, then serve) until it ends for good: `Ok` or an error that is not
/// a lost broker ends the loop; a lost broker is reconnected with exponential backoff (0.5 s
/// doubling to 15 s) until `shutdown` fires. `what` names the process in the logs.
pub async fn reconnecting<F, Fut, E>(what: &str, shutdown: &tokio_util::sync::CancellationToken, mut session: F) -> Result<(), E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: SessionError,
{
    let mut delay = std::time::Duration::from_millis(500);
    loop {
        match session().await {
            Ok(()) => return Ok(()),
            Err(e) if shutdown.is_cancelled() => {
                tracing::info!(process = what, error = %e, "stopped");
                return Ok(());
            }
            Err(e) if !e.is_lost() => return Err(e),
            Err(e) => {
                tracing::warn!(process = what, error = %e, retry_in_ms = delay.as_millis() as u64, "lost the broker; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
                delay = (delay * 2).min(std::time::Duration::from_secs(15));
            }
        }
    }
}

#[cfg(test)]
mod tests;

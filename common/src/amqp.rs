//! RabbitMQ: connection settings, the topology every part declares (idempotently) at start,
//! and publishing with publisher confirms.
//!
//! Queues (all durable quorum queues, named under a prefix, `lamina` by default):
//! - `<prefix>.jobs`: job requests ([`crate::messages::JobSpec`]), consumed by the coordinator;
//! - `<prefix>.tasks.<pool>`: one image each ([`crate::messages::Task`]), consumed by the
//!   workers of a pool (a model and GPU class); a task redelivered more than
//!   [`DELIVERY_LIMIT`] times (a worker died on it each time) is dead-lettered;
//! - `<prefix>.events`: results and heartbeats from the workers, consumed by the coordinator;
//! - `<prefix>.dead`: dead letters, kept for inspection and replay.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

use crate::config::Secret;

/// Deliveries of one task before RabbitMQ dead-letters it.
pub const DELIVERY_LIMIT: i32 = 5;
/// Largest message accepted on any queue, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// How to reach the broker and which queues to use.
#[derive(Debug, Clone)]
pub struct AmqpSettings {
    /// `amqp://user:password@host:port/vhost` or `amqps://...`; holds a password.
    pub url: Secret,
    /// Prefix of every queue name, so several deployments (or tests) share a broker.
    pub prefix: String,
}

impl AmqpSettings {
    /// Reads `LAMINA_AMQP_URL[_FILE]` (default `amqp://127.0.0.1:5672/%2f`) and
    /// `LAMINA_AMQP_PREFIX` (default `lamina`).
    pub fn from_env() -> Result<AmqpSettings, String> {
        let url = crate::config::var("LAMINA_AMQP_URL")?.unwrap_or_else(|| "amqp://127.0.0.1:5672/%2f".to_owned());
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Err("LAMINA_AMQP_URL must start with amqp:// or amqps://".to_owned());
        }
        let prefix = crate::config::var("LAMINA_AMQP_PREFIX")?.unwrap_or_else(|| "lamina".to_owned());
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(format!("LAMINA_AMQP_PREFIX {prefix:?}: use letters, digits, '-', '_' and '.'"));
        }
        Ok(AmqpSettings { url: Secret::new(url), prefix })
    }

    pub fn jobs(&self) -> String {
        format!("{}.jobs", self.prefix)
    }

    pub fn tasks(&self, pool: &str) -> String {
        format!("{}.tasks.{pool}", self.prefix)
    }

    pub fn events(&self) -> String {
        format!("{}.events", self.prefix)
    }

    pub fn dead(&self) -> String {
        format!("{}.dead", self.prefix)
    }
}

/// The broker failed us.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("broker refused the message (negative confirm) on {queue}")]
    Nacked { queue: String },
    #[error("cannot encode message: {0}")]
    Encode(#[from] serde_json::Error),
}

impl crate::retry::Retryable for AmqpError {
    fn kind(&self) -> crate::ErrorKind {
        match self {
            AmqpError::Encode(_) => crate::ErrorKind::Permanent,
            _ => crate::ErrorKind::Retryable,
        }
    }
}

/// Connects on the tokio runtime, naming the connection after the process.
pub async fn connect(settings: &AmqpSettings, name: &str) -> Result<Connection, AmqpError> {
    let props = ConnectionProperties::default()
        .with_connection_name(name.into())
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current());
    Ok(Connection::connect(settings.url.expose(), props).await?)
}

fn quorum(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    for (k, v) in extra {
        args.insert((*k).into(), v.clone());
    }
    args
}

/// Declares the jobs, events and dead-letter queues and the task queue of each pool.
/// Declaring is idempotent, so every process does it at start and after reconnecting.
pub async fn declare(channel: &Channel, settings: &AmqpSettings, pools: &[&str]) -> Result<(), AmqpError> {
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    let dead_letter = [
        ("x-dead-letter-exchange", AMQPValue::LongString("".into())),
        ("x-dead-letter-routing-key", AMQPValue::LongString(settings.dead().into())),
        ("x-delivery-limit", AMQPValue::LongInt(DELIVERY_LIMIT)),
    ];
    channel.queue_declare(settings.dead().as_str(), durable, quorum(&[])).await?;
    channel.queue_declare(settings.events().as_str(), durable, quorum(&[])).await?;
    channel.queue_declare(settings.jobs().as_str(), durable, quorum(&dead_letter)).await?;
    for pool in pools {
        channel.queue_declare(settings.tasks(pool).as_str(), durable, quorum(&dead_letter)).await?;
    }
    Ok(())
}

/// Puts a channel in confirm mode: every publish on it is acknowledged by the broker.
pub async fn confirming(connection: &Connection) -> Result<Channel, AmqpError> {
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok(channel)
}

/// Publishes `message` as persistent JSON to `queue` and waits for the broker's confirm.
pub async fn publish<T: serde::Serialize>(channel: &Channel, queue: &str, message: &T, priority: u8) -> Result<(), AmqpError> {
    let body = serde_json::to_vec(message)?;
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_priority(priority);
    let confirm = channel
        .basic_publish("", queue, BasicPublishOptions::default(), &body, props)
        .await?
        .await?;
    if confirm.is_nack() {
        return Err(AmqpError::Nacked { queue: queue.to_owned() });
    }
    Ok(())
}

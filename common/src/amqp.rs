//! RabbitMQ: connection settings, the topology every part declares (idempotently) at start,
//! and publishing with publisher confirms.
//!
//! Queues (all durable quorum queues, named under a prefix, `lamina` by default):
//! - `<prefix>.jobs`: job requests ([`crate::messages::JobSpec`]), consumed by the coordinator;
//! - `<prefix>.tasks.<pool>`: one image each ([`crate::messages::Task`]), consumed by the
//!   workers of a pool (a model and GPU class); a task redelivered more than
//!   [`DELIVERY_LIMIT`] times (a worker died on it each time) is dead-lettered;
//! - `<prefix>.events`: results and heartbeats from the workers, consumed by the coordinator;
//! - `<prefix>.dead`: dead letters, kept for inspection and replay (`lamina dlq`);
//! - `<prefix>.dead.watch`: a copy of each dead letter for the coordinator, which records a
//!   dead task as a failed image of its job (so a task that kills every worker it reaches
//!   ends the job's wait instead of blocking it forever).
//!
//! Queues dead-letter to the fanout exchange `<prefix>.dead-letters`, bound to both.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::config::Secret;
use crate::SettingsError;
use crate::queue::{Death, DeathReason, Topology};

/// Deliveries of one task before RabbitMQ dead-letters it.
pub const DELIVERY_LIMIT: i32 = crate::queue::DELIVERY_LIMIT as i32;
/// Largest message accepted on any queue, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// How to reach the broker and which queues to use.
#[derive(Debug, Clone)]
pub struct AmqpSettings {
    /// `amqp://user:password@host:port/vhost`, `amqps://...` (may hold a password), or
    /// `memory://NAME` (the in-process queue: one process only).
    pub url: Secret,
    /// Prefix of every queue name, so several deployments (or tests) share a broker.
    pub prefix: String,
    /// PEM certificates to trust for `amqps://` besides the system's (a private CA).
    pub ca_pem: Option<String>,
}

impl AmqpSettings {
    pub fn new(url: String, prefix: String) -> AmqpSettings {
        AmqpSettings { url: Secret::new(url), prefix, ca_pem: None }
    }

    /// Reads `LAMINA_AMQP_URL[_FILE]` (default `amqp://127.0.0.1:5672/%2f`),
    /// `LAMINA_AMQP_PREFIX` (default `lamina`) and `LAMINA_AMQP_CA_FILE` (PEM certificates to
    /// trust for `amqps://`, for a broker whose certificate a private CA signed).
    pub fn from_env() -> Result<AmqpSettings, SettingsError> {
        let url = crate::config::var("LAMINA_AMQP_URL")?.unwrap_or_else(|| "amqp://127.0.0.1:5672/%2f".to_owned());
        crate::queue::check_url(&url).map_err(|source| SettingsError::Url { var: "LAMINA_AMQP_URL", source })?;
        let prefix = crate::config::var("LAMINA_AMQP_PREFIX")?.unwrap_or_else(|| "lamina".to_owned());
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(crate::config::bad("LAMINA_AMQP_PREFIX", &prefix, "has other characters than letters, digits, '-', '_' and '.'"));
        }
        let ca_pem = match std::env::var("LAMINA_AMQP_CA_FILE").ok().filter(|p| !p.is_empty()) {
            Some(path) => Some(std::fs::read_to_string(&path).map_err(|source| SettingsError::Named { var: "LAMINA_AMQP_CA_FILE", path, source })?),
            None => None,
        };
        Ok(AmqpSettings { url: Secret::new(url), prefix, ca_pem })
    }

    /// The queue names of this deployment.
    pub fn topology(&self) -> Topology {
        Topology::new(self.prefix.clone())
    }

    pub fn jobs(&self) -> String {
        self.topology().jobs()
    }

    pub fn tasks(&self, pool: &str) -> String {
        self.topology().tasks(pool)
    }

    pub fn events(&self) -> String {
        self.topology().events()
    }

    pub fn dead(&self) -> String {
        self.topology().dead()
    }

    pub fn dead_watch(&self) -> String {
        self.topology().dead_watch()
    }

    pub fn dead_letter_exchange(&self) -> String {
        self.topology().dead_letter_exchange()
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

    fn cause(&self) -> &'static str {
        "broker"
    }
}

/// Connects on the tokio runtime, naming the connection after the process.
pub async fn connect(settings: &AmqpSettings, name: &str) -> Result<Connection, AmqpError> {
    let props = ConnectionProperties::default()
        .with_connection_name(name.into())
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current());
    let tls = lapin::tcp::OwnedTLSConfig { identity: None, cert_chain: settings.ca_pem.clone() };
    Ok(Connection::connect_with_config(settings.url.expose(), props, tls).await?)
}

fn quorum(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    for (k, v) in extra {
        args.insert((*k).into(), v.clone());
    }
    args
}

/// Declares the queues of [`Topology::queues`] (the jobs, events and dead-letter queues and
/// the task queue of each pool) as durable quorum queues, and the dead-letter exchange bound
/// to the dead-letter queues. Declaring is idempotent, so every process does it at start and
/// after reconnecting.
pub async fn declare(channel: &Channel, settings: &AmqpSettings, pools: &[&str]) -> Result<(), AmqpError> {
    let topology = settings.topology();
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    let exchange = topology.dead_letter_exchange();
    channel
        .exchange_declare(
            exchange.as_str(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() },
            FieldTable::default(),
        )
        .await?;
    for queue in topology.queues(pools) {
        let mut args = vec![];
        if queue.dead_letters {
            args.push(("x-dead-letter-exchange", AMQPValue::LongString(exchange.as_str().into())));
            args.push(("x-delivery-limit", AMQPValue::LongInt(DELIVERY_LIMIT)));
        }
        if let Some(max) = queue.max_length {
            args.push(("x-max-length", AMQPValue::LongInt(max as i32)));
            args.push(("x-overflow", AMQPValue::LongString("drop-head".into())));
        }
        channel.queue_declare(queue.name.as_str(), durable, quorum(&args)).await?;
        if queue.dead_letter_queue {
            channel.queue_bind(queue.name.as_str(), exchange.as_str(), "", QueueBindOptions::default(), FieldTable::default()).await?;
        }
    }
    Ok(())
}

/// Puts a channel in confirm mode: every publish on it is acknowledged by the broker.
pub async fn confirming(connection: &Connection) -> Result<Channel, AmqpError> {
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok(channel)
}

/// A persistent JSON message's properties.
pub fn properties(priority: u8) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_priority(priority)
}

/// Publishes `message` as persistent JSON to `queue` and waits for the broker's confirm.
pub async fn publish<T: serde::Serialize>(channel: &Channel, queue: &str, message: &T, priority: u8) -> Result<(), AmqpError> {
    let body = serde_json::to_vec(message)?;
    publish_raw(channel, queue, &body, properties(priority)).await
}

/// Publishes a body as it is (with its properties) and waits for the broker's confirm.
pub async fn publish_raw(channel: &Channel, queue: &str, body: &[u8], props: BasicProperties) -> Result<(), AmqpError> {
    let confirm = channel.basic_publish("", queue, BasicPublishOptions::default(), body, props).await?.await?;
    if confirm.is_nack() {
        return Err(AmqpError::Nacked { queue: queue.to_owned() });
    }
    Ok(())
}

/// Why RabbitMQ dead-lettered a message, from its `x-death` header: the reason
/// (`rejected`, `delivery_limit`, `expired`, ...), the queue it died in, and how many times.
pub fn death(props: &BasicProperties) -> Option<Death> {
    let headers = props.headers().as_ref()?;
    let AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")? else { return None };
    let AMQPValue::FieldTable(first) = deaths.as_slice().first()? else { return None };
    let text = |k: &str| match first.inner().get(k) {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        Some(AMQPValue::ShortString(s)) => s.to_string(),
        _ => String::new(),
    };
    let count = match first.inner().get("count") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => i64::from(*n),
        Some(AMQPValue::LongUInt(n)) => i64::from(*n),
        _ => 1,
    };
    Some(Death { reason: DeathReason::parse(&text("reason")), queue: text("queue"), count })
}

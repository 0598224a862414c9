//! RabbitMQ behind the [`Broker`] seam: one connection, a confirm-mode channel for
//! publishing, and a channel per consumer (so each consumer's prefetch is its own).
//!
//! A consumer's prefetch is fixed when it starts, so [`Consumer::set_prefetch`] starts a new
//! consumer with the new prefetch and cancels the old one, whose deliveries already in
//! flight are still handed out (and settled) before it is dropped.
//! Every lapin error ends the session as [`QueueError::Lost`]: a channel that failed is
//! closed by the broker, and reconnecting is how the session recovers.

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, BasicRejectOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};

use super::{Broker, Confirm, Consumer, Delivery, QueueError, Settle, Topology};
use crate::amqp::{self, AmqpSettings};

impl From<lapin::Error> for QueueError {
    fn from(e: lapin::Error) -> QueueError {
        QueueError::Lost(e.to_string())
    }
}

impl From<amqp::AmqpError> for QueueError {
    fn from(e: amqp::AmqpError) -> QueueError {
        match e {
            amqp::AmqpError::Broker(e) => e.into(),
            amqp::AmqpError::Nacked { queue } => QueueError::Nacked { queue },
            amqp::AmqpError::Encode(e) => QueueError::Encode(e),
        }
    }
}

/// A connection to RabbitMQ.
pub struct RabbitBroker {
    settings: AmqpSettings,
    topology: Topology,
    connection: Connection,
    setup: Channel,
    publisher: Channel,
}

impl RabbitBroker {
    /// Connects (naming the connection `name`, as the management UI shows it).
    pub async fn connect(settings: &AmqpSettings, name: &str) -> Result<RabbitBroker, QueueError> {
        let connection = amqp::connect(settings, name).await?;
        let setup = connection.create_channel().await?;
        let publisher = amqp::confirming(&connection).await?;
        Ok(RabbitBroker { settings: settings.clone(), topology: settings.topology(), connection, setup, publisher })
    }
}

#[async_trait::async_trait]
impl Broker for RabbitBroker {
    fn topology(&self) -> &Topology {
        &self.topology
    }

    async fn declare(&self, pools: &[&str]) -> Result<(), QueueError> {
        Ok(amqp::declare(&self.setup, &self.settings, pools).await?)
    }

    async fn send(&self, queue: &str, body: Vec<u8>, priority: u8) -> Result<Confirm, QueueError> {
        let confirm =
            self.publisher.basic_publish("", queue, BasicPublishOptions::default(), &body, amqp::properties(priority)).await?;
        let queue = queue.to_owned();
        Ok(Box::pin(async move {
            if confirm.await?.is_nack() {
                return Err(QueueError::Nacked { queue });
            }
            Ok(())
        }))
    }

    async fn consume(&self, queue: &str, tag: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        let channel = self.connection.create_channel().await?;
        let mut consumer = RabbitConsumer { channel, queue: queue.to_owned(), tag_base: tag.to_owned(), generation: 0, current: None, retiring: None };
        consumer.start(prefetch).await?;
        Ok(Box::new(consumer))
    }

    async fn depth(&self, queue: &str) -> Result<Option<u64>, QueueError> {
        // A passive declare of a missing queue closes its channel: use one of its own.
        let channel = self.connection.create_channel().await?;
        let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let depth = channel.queue_declare(queue, passive, FieldTable::default()).await.ok().map(|q| u64::from(q.message_count()));
        if channel.status().connected() {
            let _ = channel.close(200, "looked").await;
        }
        Ok(depth)
    }

    async fn get(&self, queue: &str) -> Result<Option<Delivery>, QueueError> {
        let got = self.setup.basic_get(queue, BasicGetOptions { no_ack: false }).await?;
        Ok(got.map(|message| delivery(message.delivery)))
    }

    async fn purge(&self, queue: &str) -> Result<u64, QueueError> {
        Ok(u64::from(self.setup.queue_purge(queue, QueuePurgeOptions::default()).await?))
    }

    async fn close(&self) {
        let _ = self.connection.close(200, "closing").await;
    }
}

struct RabbitConsumer {
    channel: Channel,
    queue: String,
    tag_base: String,
    generation: u32,
    /// The consumer in force and its tag.
    current: Option<(String, lapin::Consumer)>,
    /// A consumer replaced by a new prefetch, drained of what the broker already sent it.
    retiring: Option<lapin::Consumer>,
}

impl RabbitConsumer {
    async fn start(&mut self, prefetch: u16) -> Result<(), QueueError> {
        self.generation += 1;
        self.channel.basic_qos(prefetch.max(1), BasicQosOptions::default()).await?;
        let tag = format!("{}-{}", self.tag_base, self.generation);
        let consumer =
            self.channel.basic_consume(self.queue.as_str(), &tag, BasicConsumeOptions::default(), FieldTable::default()).await?;
        if let Some((old_tag, old)) = self.current.replace((tag, consumer)) {
            self.channel.basic_cancel(old_tag.as_str(), BasicCancelOptions::default()).await?;
            self.retiring = Some(old);
        }
        Ok(())
    }
}

fn delivery(d: lapin::message::Delivery) -> Delivery {
    Delivery { death: amqp::death(&d.properties), redelivered: d.redelivered, body: d.data, settle: Box::new(RabbitSettle(d.acker)) }
}

#[async_trait::async_trait]
impl Consumer for RabbitConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, QueueError>> {
        loop {
            let current = &mut self.current.as_mut()?.1;
            let next = match self.retiring.as_mut() {
                None => current.next().await,
                Some(retiring) => tokio::select! {
                    d = current.next() => d,
                    d = retiring.next() => match d {
                        None => {
                            self.retiring = None;
                            continue;
                        }
                        d => d,
                    },
                },
            };
            return next.map(|d| d.map(delivery).map_err(QueueError::from));
        }
    }

    async fn set_prefetch(&mut self, prefetch: u16) -> Result<bool, QueueError> {
        if self.retiring.is_some() {
            // The last change is still draining; the caller tries again later.
            return Ok(false);
        }
        self.start(prefetch).await?;
        Ok(true)
    }

    async fn cancel(&mut self) -> Result<(), QueueError> {
        self.retiring = None;
        if let Some((tag, _)) = self.current.take() {
            self.channel.basic_cancel(tag.as_str(), BasicCancelOptions::default()).await?;
        }
        Ok(())
    }
}

impl Drop for RabbitConsumer {
    /// What this consumer held unsettled goes back to the queue, as with the in-process
    /// queue: its channel closes (in the background: closing is a round trip).
    fn drop(&mut self) {
        if !self.channel.status().connected() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let channel = self.channel.clone();
            runtime.spawn(async move {
                let _ = channel.close(200, "consumer dropped").await;
            });
        }
    }
}

struct RabbitSettle(lapin::acker::Acker);

#[async_trait::async_trait]
impl Settle for RabbitSettle {
    async fn ack(&self) -> Result<(), QueueError> {
        self.0.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    async fn reject(&self) -> Result<(), QueueError> {
        self.0.reject(BasicRejectOptions { requeue: false }).await?;
        Ok(())
    }

    async fn requeue(&self) -> Result<(), QueueError> {
        self.0.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await?;
        Ok(())
    }
}

//! The distributed worker: consumes its pool's task queue, runs the pipeline, publishes each
//! result to the events queue (with a publisher confirm) and only then acknowledges the task.
//!
//! A message that is not a valid task (not JSON, unknown schema or fields, over the size cap,
//! a key that could escape the output) is rejected without requeue, so RabbitMQ dead-letters
//! it at once. A task whose processing kills the worker is redelivered and, after the queue's
//! delivery limit, dead-lettered by RabbitMQ. On shutdown the worker stops consuming, lets the
//! pipeline finish what it holds within the grace period, and closes the connection, which
//! hands anything still unacknowledged back to the queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::FieldTable;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::model::{self, device_name};
use crate::pipeline::{self, Finished, ModelClock, Work, WorkerConfig};
use lamina_common::amqp::{self, AmqpSettings, MAX_MESSAGE_BYTES};
use lamina_common::config::S3Settings;
use lamina_common::keys::check_relative;
use lamina_common::messages::{Event, Heartbeat, Task, EVENT_SCHEMA, TASK_SCHEMA};
use lamina_common::retry::{retry, RetryPolicy};
use lamina_common::store::StoreCache;

/// Everything a worker process needs.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub amqp: AmqpSettings,
    pub s3: S3Settings,
    pub pool: String,
    pub model: String,
    pub worker: WorkerConfig,
    /// Unacknowledged tasks held at once (downloads, the batch, encodes).
    pub prefetch: u16,
    /// How long a stopping worker may take to finish what it holds.
    pub grace: Duration,
    pub heartbeat: Duration,
    pub name: String,
}

/// Why a message is not a task.
pub fn parse_task(body: &[u8]) -> Result<Task, String> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(format!("message of {} bytes is over the {MAX_MESSAGE_BYTES}-byte cap", body.len()));
    }
    let task: Task = serde_json::from_slice(body).map_err(|e| format!("not a task: {e}"))?;
    if task.schema != TASK_SCHEMA {
        return Err(format!("unknown task schema {:?}", task.schema));
    }
    check_relative(&task.key).map_err(|e| e.to_string())?;
    Ok(task)
}

/// Serves until `shutdown` fires (returns Ok) or the broker connection fails (returns Err;
/// the caller reconnects).
pub async fn serve(config: &ServiceConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let model = model::load(&config.model, config.worker.device)?;
    let model_id = model.desc().id.clone();
    let connection = amqp::connect(&config.amqp, &config.name).await.context("cannot connect to the broker")?;
    let channel = connection.create_channel().await?;
    amqp::declare(&channel, &config.amqp, &[&config.pool]).await?;
    let publisher = amqp::confirming(&connection).await?;
    channel.basic_qos(config.prefetch, BasicQosOptions::default()).await?;
    let queue = config.amqp.tasks(&config.pool);
    let mut consumer = channel
        .basic_consume(queue.as_str(), config.name.as_str(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    info!(queue = %queue, model = %model_id, device = %device_name(config.worker.device), prefetch = config.prefetch, "consuming");

    let events = config.amqp.events();
    let (work_tx, work_rx) = mpsc::channel(usize::from(config.prefetch.max(1)));
    let (done_tx, mut done_rx) = mpsc::channel::<Finished>(64);
    let clock = Arc::new(ModelClock::default());
    let stores = Arc::new(StoreCache::new(config.s3.clone()));
    let pipeline = tokio::spawn(pipeline::run(model, config.worker.clone(), stores, work_rx, done_tx, clock));

    let mut work_tx = Some(work_tx);
    let mut ackers = HashMap::new();
    let mut next_ticket = 0u64;
    let mut finished = 0u64;
    let started = std::time::Instant::now();
    let mut heartbeat = tokio::time::interval(config.heartbeat);
    let drain_deadline = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(drain_deadline);
    let outcome = loop {
        tokio::select! {
            _ = shutdown.cancelled(), if work_tx.is_some() => {
                info!(in_flight = ackers.len(), grace_s = config.grace.as_secs(), "stopping: finishing the tasks in hand");
                let _ = channel.basic_cancel(config.name.as_str(), BasicCancelOptions::default()).await;
                work_tx = None;
                drain_deadline.as_mut().reset(tokio::time::Instant::now() + config.grace);
            }
            delivery = consumer.next(), if work_tx.is_some() => match delivery {
                Some(Ok(delivery)) => match parse_task(&delivery.data) {
                    Ok(task) => {
                        next_ticket += 1;
                        ackers.insert(next_ticket, delivery.acker);
                        if let Some(tx) = &work_tx {
                            if tx.send(Work { ticket: next_ticket, task }).await.is_err() {
                                break Err(anyhow::anyhow!("pipeline stopped"));
                            }
                        }
                    }
                    Err(reason) => {
                        warn!(reason = %reason, "rejected a message: dead-lettered");
                        delivery.acker.reject(BasicRejectOptions { requeue: false }).await?;
                    }
                },
                Some(Err(e)) => break Err(anyhow::Error::new(e).context("lost the broker")),
                None => break Err(anyhow::anyhow!("the broker cancelled the consumer")),
            },
            done = done_rx.recv() => match done {
                Some(done) => {
                    info!(job_id = %done.job_id, key = %done.result.key, status = ?done.result.status, "task finished");
                    let event = Event { schema: EVENT_SCHEMA.to_owned(), job_id: Some(done.job_id), result: Some(done.result), heartbeat: None };
                    retry("publish result", RetryPolicy::default(), || amqp::publish(&publisher, &events, &event, 0)).await?;
                    if let Some(acker) = ackers.remove(&done.ticket) {
                        acker.ack(BasicAckOptions::default()).await?;
                    }
                    finished += 1;
                }
                None => break Ok(()),
            },
            _ = heartbeat.tick() => {
                let beat = Heartbeat {
                    worker: config.name.clone(),
                    pool: config.pool.clone(),
                    device: device_name(config.worker.device),
                    model: model_id.clone(),
                    in_flight: ackers.len() as u64,
                    images_per_second: finished as f64 / started.elapsed().as_secs_f64().max(1e-9),
                };
                let event = Event { schema: EVENT_SCHEMA.to_owned(), job_id: None, result: None, heartbeat: Some(beat) };
                amqp::publish(&publisher, &events, &event, 0).await?;
            }
            _ = &mut drain_deadline => {
                warn!(handed_back = ackers.len(), "grace period over: handing the remaining tasks back");
                break Ok(());
            }
        }
    };
    drop(work_tx);
    if outcome.is_ok() && ackers.is_empty() {
        let _ = pipeline.await;
    }
    // Closing hands every unacknowledged task back to the queue.
    let _ = connection.close(200, "worker stopping").await;
    info!(finished, "stopped");
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_messages_that_are_not_valid_tasks() {
        assert!(parse_task(b"{not json").unwrap_err().starts_with("not a task"));
        assert!(parse_task(&vec![b' '; MAX_MESSAGE_BYTES + 1]).unwrap_err().contains("cap"));
        let task = |schema: &str, key: &str, extra: &str| {
            format!(r#"{{"schema":"{schema}","job_id":"j","input":"i","output":"o","key":"{key}","size":1,"etag":null,"params":{{"layers":null,"palette":null}}{extra}}}"#)
        };
        assert!(parse_task(task(TASK_SCHEMA, "a.png", "").as_bytes()).is_ok());
        assert!(parse_task(task("lamina.task/9", "a.png", "").as_bytes()).unwrap_err().contains("schema"));
        assert!(parse_task(task(TASK_SCHEMA, "../a.png", "").as_bytes()).is_err());
        assert!(parse_task(task(TASK_SCHEMA, "a.png", r#","surprise":1"#).as_bytes()).unwrap_err().contains("unknown field"));
    }
}

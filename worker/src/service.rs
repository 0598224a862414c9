//! The distributed worker: consumes its pool's task queue, runs the pipeline, publishes each
//! result to the events queue (with a publisher confirm) and only then acknowledges the task.
//!
//! Written against the [`Broker`] seam: the distributed worker serves RabbitMQ, and
//! `lamina run` serves the in-process queue with this same session.
//!
//! A message that is not a valid task (not JSON, unknown schema or fields, over the size cap,
//! a key that could escape the output) is rejected without requeue, so the queue dead-letters
//! it at once. A task for another model than this worker's is reported failed, never run. A task whose processing kills the worker is redelivered and, after the queue's
//! delivery limit, dead-lettered by RabbitMQ. On shutdown the worker stops consuming, lets the
//! pipeline finish what it holds within the grace period, and closes the connection, which
//! hands anything still unacknowledged back to the queue.
//!
//! Prefetch follows measured throughput: enough tasks to keep the pipeline fed (about two
//! seconds of work plus two batches), never more than ten minutes of work, so no task waits
//! in a worker's hands anywhere near RabbitMQ's 30-minute delivery-ack timeout. A new
//! prefetch applies to a new consumer (RabbitMQ sets a consumer's prefetch when it starts),
//! so the worker starts one and drains the old one's deliveries before dropping it. A worker
//! starts with a prefetch of one until its first task is finished (see `serve`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::metrics::METRICS;
use crate::model::{device_name, SharedModel};
use crate::pipeline::{self, Finished, ModelClock, Work, WorkerConfig};
use lamina_common::amqp::MAX_MESSAGE_BYTES;
use lamina_common::config::S3Settings;
use lamina_common::keys::check_relative;
use lamina_common::messages::{Event, FailureKind, Heartbeat, Task, TaskResult, EVENT_SCHEMA, TASK_SCHEMA};
use lamina_common::queue::{Broker, Consumer, Delivery, QueueError, Settle};
use lamina_common::retry::RetryPolicy;
use lamina_common::store::StoreCache;

/// Everything a worker session needs besides its model and broker.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub s3: S3Settings,
    pub pool: String,
    /// The model as the worker was started with it (`fscs`, `torchscript:PATH`, ...): a task
    /// naming another model is refused.
    pub model: String,
    pub worker: WorkerConfig,
    /// Most unacknowledged tasks held at once; the prefetch in force is sized from the
    /// measured throughput below this.
    pub prefetch: u16,
    /// How long a stopping worker may take to finish what it holds.
    pub grace: Duration,
    pub heartbeat: Duration,
    pub name: String,
    /// Fault injection for tests and drills: the process aborts on a task whose key
    /// contains this text (`LAMINA_FAILPOINT_ABORT_ON_KEY`), as a crashing decoder would.
    pub abort_on_key: Option<String>,
    /// Where the time spent in the model adds up, across sessions (benchmarks read it).
    pub clock: Arc<ModelClock>,
}

/// Why a worker session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The broker failed: reconnect when [`QueueError::is_lost`].
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The pipeline stopped taking work (it cannot recover; the process should end).
    #[error("the pipeline stopped")]
    Pipeline,
}

impl lamina_common::queue::SessionError for SessionError {
    fn is_lost(&self) -> bool {
        matches!(self, SessionError::Queue(e) if e.is_lost())
    }
}

/// Work queued ahead of the model, in seconds of measured throughput.
const LEAD_SECONDS: f64 = 2.0;
/// Most work a worker holds, in seconds: far below RabbitMQ's 30-minute ack timeout.
const MAX_HOLD_SECONDS: f64 = 600.0;
/// How often the prefetch is reconsidered.
const RESIZE_EVERY: Duration = Duration::from_secs(15);
/// The window the throughput is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// The prefetch for a measured rate (images/s; None before anything finished).
pub fn prefetch_for(rate: Option<f64>, batch: usize, cap: u16) -> u16 {
    let cap = f64::from(cap.max(1));
    let floor = (2 * batch) as f64;
    let want = match rate {
        // Nothing measured yet: two batches, enough to start and little to hand back.
        None => floor,
        Some(r) => (r * LEAD_SECONDS).ceil() + floor,
    };
    let limit = rate.map_or(cap, |r| (r * MAX_HOLD_SECONDS).floor().max(1.0));
    want.min(limit).min(cap).max(1.0) as u16
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

/// A task held: how to settle it, since when, and its size.
struct Held {
    settle: Box<dyn Settle>,
    since: Instant,
    bytes: u64,
}

/// Whether a task may run on this worker's model: it names the model the worker was started
/// with (or that model's id), or names none (a task from before tasks named their model).
fn serves(config: &ServiceConfig, model_id: &str, task: &Task) -> Result<(), String> {
    match task.model.as_deref() {
        None => Ok(()),
        Some(wanted) if wanted == config.model || wanted == model_id => Ok(()),
        Some(wanted) => Err(format!(
            "the job asks for model {wanted}, but the workers of pool {} run {} ({model_id}); submit it to a pool that runs {wanted}",
            config.pool, config.model
        )),
    }
}

/// Serves the pool's task queue until `shutdown` fires (Ok, once what it holds is finished
/// or the grace period is over) or the broker fails (Err; the caller reconnects). The model
/// is shared across sessions: it is loaded once per process and outlives reconnects.
pub async fn serve(config: &ServiceConfig, model: SharedModel, broker: Arc<dyn Broker>, shutdown: CancellationToken) -> Result<(), SessionError> {
    let model_id = model.desc().id.clone();
    let devices = model.devices();
    broker.declare(&[&config.pool]).await?;
    let queue = broker.topology().tasks(&config.pool);
    // Slow start: one task until one has finished, so a task that crashes workers takes no
    // innocent task down with it (each crash returns every task the worker held, and the
    // queue dead-letters a task after five returns, whoever caused them).
    let mut session = Session {
        config,
        broker,
        model_id,
        devices,
        held: HashMap::new(),
        next_ticket: 0,
        finished: 0,
        rate: Rate::default(),
        prefetch: 1,
    };
    let mut consumer = session.broker.consume(&queue, &config.name, session.prefetch).await?;
    METRICS.set_prefetch(session.prefetch);
    let devices: Vec<String> = session.devices.iter().map(|&d| device_name(d)).collect();
    info!(queue = %queue, model = %session.model_id, devices = %devices.join(","), prefetch = session.prefetch,
        max_prefetch = config.prefetch, "consuming");

    // The pipeline's intake holds every task the broker may have delivered.
    let (work_tx, work_rx) = mpsc::channel(usize::from(config.prefetch.max(1)) * 2);
    let (done_tx, mut done_rx) = mpsc::channel::<Finished>(64);
    let stores = Arc::new(StoreCache::new(config.s3.clone()));
    let pipeline = tokio::spawn(pipeline::run(model, config.worker.clone(), stores, work_rx, done_tx, config.clock.clone()));

    let mut work_tx = Some(work_tx);
    let mut heartbeat = tokio::time::interval(config.heartbeat);
    let mut resize = tokio::time::interval_at(tokio::time::Instant::now() + RESIZE_EVERY, RESIZE_EVERY);
    let drain_deadline = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(drain_deadline);
    let outcome: Result<(), SessionError> = loop {
        let step = tokio::select! {
            _ = shutdown.cancelled(), if work_tx.is_some() => {
                info!(in_flight = session.held.len(), grace_s = config.grace.as_secs(), "stopping: finishing the tasks in hand");
                let _ = consumer.cancel().await;
                work_tx = None;
                drain_deadline.as_mut().reset(tokio::time::Instant::now() + config.grace);
                Ok(())
            }
            delivery = consumer.next(), if work_tx.is_some() => match (delivery, &work_tx) {
                (Some(Ok(delivery)), Some(tx)) => session.take(delivery, tx).await,
                (Some(Ok(_)), None) => Ok(()),
                (Some(Err(e)), _) => Err(e.into()),
                (None, _) => Err(QueueError::Lost("the broker cancelled the consumer".to_owned()).into()),
            },
            done = done_rx.recv() => match done {
                Some(done) => {
                    let reported = session.report(done).await;
                    if session.finished == 1 {
                        resize.reset_immediately();
                    }
                    reported.map_err(SessionError::from)
                }
                None => break Ok(()),
            },
            _ = heartbeat.tick() => session.heartbeat().await.map_err(SessionError::from),
            _ = resize.tick(), if work_tx.is_some() => session.resize(&mut *consumer).await.map_err(SessionError::from),
            _ = &mut drain_deadline => {
                warn!(handed_back = session.held.len(), "grace period over: handing the remaining tasks back");
                break Ok(());
            }
        };
        if let Err(e) = step {
            break Err(e);
        }
    };
    drop(work_tx);
    if outcome.is_ok() && session.held.is_empty() {
        let _ = pipeline.await;
    }
    // Closing hands every unacknowledged task back to the queue.
    drop(consumer);
    session.broker.close().await;
    info!(finished = session.finished, "stopped");
    outcome
}

/// What one session holds and knows: the tasks in hand, the rate, the prefetch in force.
struct Session<'a> {
    config: &'a ServiceConfig,
    broker: Arc<dyn Broker>,
    model_id: String,
    /// The devices the worker's inference lanes run on.
    devices: Vec<tch::Device>,
    held: HashMap<u64, Held>,
    next_ticket: u64,
    finished: u64,
    rate: Rate,
    prefetch: u16,
}

impl Session<'_> {
    /// A delivery: a task for the pipeline, a task for another model (reported failed), or
    /// not a task at all (dead-lettered).
    async fn take(&mut self, delivery: Delivery, work: &mpsc::Sender<Work>) -> Result<(), SessionError> {
        METRICS.tasks_received.fetch_add(1, Ordering::Relaxed);
        let task = match parse_task(&delivery.body) {
            Ok(task) => task,
            Err(reason) => {
                warn!(reason = %reason, "rejected a message: dead-lettered");
                METRICS.tasks_rejected.fetch_add(1, Ordering::Relaxed);
                return Ok(delivery.settle.reject().await?);
            }
        };
        if let Some(needle) = self.config.abort_on_key.as_deref().filter(|n| task.key.contains(*n)) {
            error!(key = %task.key, failpoint = needle, "failpoint: aborting the process");
            std::process::abort();
        }
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        self.held.insert(ticket, Held { settle: delivery.settle, since: Instant::now(), bytes: task.size });
        update_gauges(&self.held);
        if let Err(reason) = serves(self.config, &self.model_id, &task) {
            warn!(job_id = %task.job_id, key = %task.key, reason = %reason, "refused a task for another model");
            let result = TaskResult::failed(task.key, FailureKind::WrongModel, reason);
            return Ok(self.report(Finished { ticket, job_id: task.job_id, result }).await?);
        }
        work.send(Work { ticket, task }).await.map_err(|_| SessionError::Pipeline)
    }

    /// Publishes a task's result (with a confirm), then acknowledges the task: nothing is
    /// acknowledged before its result is durable. A broker that refuses the event (negative
    /// confirm) gets it again; a lost connection ends the session (the task is redelivered).
    async fn report(&mut self, done: Finished) -> Result<(), QueueError> {
        info!(job_id = %done.job_id, key = %done.result.key, status = ?done.result.status, "task finished");
        METRICS.image(&done.result);
        let event = Event { schema: EVENT_SCHEMA.to_owned(), job_id: Some(done.job_id), result: Some(done.result), heartbeat: None };
        let policy = RetryPolicy { deadline: Duration::from_secs(30), ..RetryPolicy::default() };
        self.broker.publish_retrying(&self.broker.topology().events(), &event, 0, policy).await?;
        if let Some(h) = self.held.remove(&done.ticket) {
            h.settle.ack().await?;
            METRICS.tasks_acked.fetch_add(1, Ordering::Relaxed);
        }
        self.finished += 1;
        self.rate.finished();
        update_gauges(&self.held);
        Ok(())
    }

    /// Publishes this worker's heartbeat; the GPUs are sampled (nvidia-smi) off the runtime.
    async fn heartbeat(&mut self) -> Result<(), QueueError> {
        let images_per_second = self.rate.per_second();
        METRICS.set_rate(images_per_second.unwrap_or(0.0));
        for &device in &self.devices {
            if let Ok(Some((name, used, total))) = tokio::task::spawn_blocking(move || crate::model::gpu_memory(device)).await {
                METRICS.set_gpu(name, used, total);
            }
        }
        let beat = Heartbeat {
            worker: self.config.name.clone(),
            pool: self.config.pool.clone(),
            device: self.devices.iter().map(|&d| device_name(d)).collect::<Vec<_>>().join(","),
            model: self.model_id.clone(),
            in_flight: self.held.len() as u64,
            images_per_second: images_per_second.unwrap_or(0.0),
            prefetch: u64::from(self.prefetch),
            oldest_unacked_seconds: update_gauges(&self.held),
        };
        let event = Event { schema: EVENT_SCHEMA.to_owned(), job_id: None, result: None, heartbeat: Some(beat) };
        self.broker.publish(&self.broker.topology().events(), &event, 0).await?;
        METRICS.heartbeats.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Sizes the prefetch from the measured rate.
    async fn resize(&mut self, consumer: &mut dyn Consumer) -> Result<(), QueueError> {
        let measured = self.rate.per_second();
        let wanted = prefetch_for(measured, self.config.worker.batch_size, self.config.prefetch);
        if wanted != self.prefetch && consumer.set_prefetch(wanted).await? {
            info!(from = self.prefetch, to = wanted, images_per_second = measured.unwrap_or(0.0), "prefetch resized");
            self.prefetch = wanted;
            METRICS.set_prefetch(wanted);
        }
        Ok(())
    }
}

/// Images finished per second over the last [`RATE_WINDOW`].
struct Rate {
    started: Instant,
    recent: VecDeque<Instant>,
}

impl Default for Rate {
    fn default() -> Rate {
        Rate { started: Instant::now(), recent: VecDeque::new() }
    }
}

impl Rate {
    fn finished(&mut self) {
        self.recent.push_back(Instant::now());
    }

    /// Over the last minute (or since the start, when younger); None until something
    /// finished.
    fn per_second(&mut self) -> Option<f64> {
        while self.recent.front().is_some_and(|t| t.elapsed() > RATE_WINDOW) {
            self.recent.pop_front();
        }
        self.recent.front()?;
        let span = self.started.elapsed().min(RATE_WINDOW).as_secs_f64().max(1.0);
        Some(self.recent.len() as f64 / span)
    }
}

/// Sets the in-flight gauges; returns the age of the oldest task held.
fn update_gauges(held: &HashMap<u64, Held>) -> f64 {
    let oldest = held.values().map(|h| h.since.elapsed().as_secs_f64()).fold(0.0, f64::max);
    METRICS.set_in_flight(held.len(), held.values().map(|h| h.bytes).sum(), oldest);
    oldest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_follows_throughput_and_never_holds_ten_minutes_of_work() {
        // Before anything is measured: two batches.
        assert_eq!(prefetch_for(None, 1, 64), 2);
        assert_eq!(prefetch_for(None, 8, 64), 16);
        // A fast GPU worker: two seconds of work plus two batches, up to the cap.
        assert_eq!(prefetch_for(Some(10.0), 4, 64), 28);
        assert_eq!(prefetch_for(Some(500.0), 4, 64), 64);
        // A very slow one: never more than ten minutes of work in hand.
        assert_eq!(prefetch_for(Some(0.004), 8, 64), 2);
        assert_eq!(prefetch_for(Some(0.0001), 8, 64), 1);
    }

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

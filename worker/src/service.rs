//! The distributed worker: consumes its pool's task queue, runs the pipeline, publishes each
//! result to the events queue (with a publisher confirm) and only then acknowledges the task.
//!
//! Written against the [`Broker`] seam: the distributed worker serves RabbitMQ, and
//! `lamina run` serves the in-process queue with this same session.
//!
//! A task of step `render` (its layers are stored and current; other outputs are asked for)
//! is rendered from the stored layers beside the pipeline, without the model; if a layer
//! turns out damaged it joins the pipeline to be decomposed. The pipeline, and with it the
//! model when the session was given one to load on first need, starts with the first image
//! to decompose.
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
use tracing::{error, info, warn, Instrument};

use crate::metrics::METRICS;
use crate::runtime::{device_name, ModelError, ModelSlot};
use crate::pipeline::{self, Finished, ModelClock, Rendering, Work, WorkerConfig};
use lamina_common::amqp::MAX_MESSAGE_BYTES;
use lamina_common::config::S3Settings;
use lamina_common::keys::check_relative;
use lamina_common::messages::{BadMessage, Event, FailureKind, Heartbeat, Step, Task, TaskResult, EVENT_SCHEMA, TASK_SCHEMA};
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
    /// The model, loaded on first need, did not load (the process should end).
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl lamina_common::queue::SessionError for SessionError {
    fn is_lost(&self) -> bool {
        matches!(self, SessionError::Queue(e) if e.is_lost())
    }
}

/// Renderings from stored layers at once: each runs on one core, then waits on the store
/// about as long (reads, and durable writes of documents several times the layers' size,
/// each synced), so twice the cores, and two more, keep the cores busy. Each holds one
/// image's compressed layers and documents.
fn render_concurrency() -> usize {
    std::thread::available_parallelism().map_or(6, |n| 2 * n.get() + 2)
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
pub fn parse_task(body: &[u8]) -> Result<Task, BadMessage> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(BadMessage::TooLarge { bytes: body.len(), cap: MAX_MESSAGE_BYTES });
    }
    let task: Task = serde_json::from_slice(body).map_err(|e| BadMessage::Malformed { what: "task", reason: e.to_string() })?;
    if task.schema != TASK_SCHEMA {
        return Err(BadMessage::Schema { what: "task", schema: task.schema });
    }
    check_relative(&task.key).map_err(|e| BadMessage::Field(e.to_string()))?;
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
pub async fn serve(config: &ServiceConfig, model: Arc<ModelSlot>, broker: Arc<dyn Broker>, shutdown: CancellationToken) -> Result<(), SessionError> {
    broker.declare(&[&config.pool]).await?;
    let queue = broker.topology().tasks(&config.pool);
    // The pipeline's intake holds every task the broker may have delivered.
    let (done_tx, mut done_rx) = mpsc::channel::<Finished>(64);
    let (again_tx, mut again_rx) = mpsc::channel::<Work>(usize::from(config.prefetch.max(1)));
    // Slow start: one task until one has finished, so a task that crashes workers takes no
    // innocent task down with it (each crash returns every task the worker held, and the
    // queue dead-letters a task after five returns, whoever caused them).
    let mut session = Session {
        config,
        broker,
        model_id: model.id().to_owned(),
        devices: model.devices().to_vec(),
        model,
        stores: Arc::new(StoreCache::new(config.s3.clone())),
        pipeline: None,
        done: Some(done_tx),
        again: Some(again_tx),
        renders: Arc::new(tokio::sync::Semaphore::new(render_concurrency())),
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

    let mut accepting = true;
    let mut heartbeat = tokio::time::interval(config.heartbeat);
    let mut resize = tokio::time::interval_at(tokio::time::Instant::now() + RESIZE_EVERY, RESIZE_EVERY);
    let drain_deadline = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(drain_deadline);
    let outcome: Result<(), SessionError> = loop {
        let step = tokio::select! {
            _ = shutdown.cancelled(), if accepting => {
                info!(in_flight = session.held.len(), grace_s = config.grace.as_secs(), "stopping: finishing the tasks in hand");
                let _ = consumer.cancel().await;
                accepting = false;
                session.stop_taking();
                drain_deadline.as_mut().reset(tokio::time::Instant::now() + config.grace);
                Ok(())
            }
            delivery = consumer.next(), if accepting => match delivery {
                Some(Ok(delivery)) => session.take(delivery).await,
                Some(Err(e)) => Err(e.into()),
                None => Err(QueueError::Lost("the broker cancelled the consumer".to_owned()).into()),
            },
            // A rendering found the stored layers unusable: decompose the image instead.
            Some(work) = again_rx.recv() => session.decompose(work).await,
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
            _ = resize.tick(), if accepting => session.resize(&mut *consumer).await.map_err(SessionError::from),
            _ = &mut drain_deadline => {
                warn!(handed_back = session.held.len(), "grace period over: handing the remaining tasks back");
                break Ok(());
            }
        };
        if let Err(e) = step {
            break Err(e);
        }
    };
    session.stop_taking();
    if let Some((_, pipeline)) = session.pipeline.take() {
        if outcome.is_ok() && session.held.is_empty() {
            let _ = pipeline.await;
        }
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
    model: Arc<ModelSlot>,
    stores: Arc<StoreCache>,
    /// The pipeline's intake and task, once an image needed decomposing; its intake is
    /// dropped when the session stops taking work.
    pipeline: Option<(Option<mpsc::Sender<Work>>, tokio::task::JoinHandle<()>)>,
    /// Where results arrive (cloned into the pipeline and every rendering), and where a
    /// rendering hands back an image to decompose; both dropped when the session stops
    /// taking work, so the results channel closes once everything in hand is finished.
    done: Option<mpsc::Sender<Finished>>,
    again: Option<mpsc::Sender<Work>>,
    renders: Arc<tokio::sync::Semaphore>,
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
    async fn take(&mut self, delivery: Delivery) -> Result<(), SessionError> {
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
        match task.step {
            Step::Render => self.render(Work { ticket, task }),
            Step::Decompose => self.decompose(Work { ticket, task }).await,
        }
    }

    /// Renders a task's outputs from its stored layers, beside the pipeline; the result
    /// comes back on the results channel, or the task on the decompose channel.
    fn render(&mut self, work: Work) -> Result<(), SessionError> {
        let (Some(done), Some(again)) = (self.done.clone(), self.again.clone()) else { return Ok(()) };
        let (stores, slots) = (self.stores.clone(), self.renders.clone());
        let span = tracing::info_span!("image", job_id = %work.task.job_id, key = %work.task.key);
        tokio::spawn(
            async move {
                let Ok(_slot) = slots.acquire_owned().await else { return };
                match pipeline::render(&stores, &work.task).await {
                    Rendering::Finished(result) => {
                        let _ = done.send(Finished { ticket: work.ticket, job_id: work.task.job_id.clone(), result }).await;
                    }
                    Rendering::Decompose(reason) => {
                        info!(reason = %reason, "the stored layers cannot be rendered from: decomposing the image again");
                        let mut task = work.task;
                        task.step = Step::Decompose;
                        let _ = again.send(Work { ticket: work.ticket, task }).await;
                    }
                }
            }
            .instrument(span),
        );
        Ok(())
    }

    /// Hands a task to the pipeline, starting it (and loading the model, when the session
    /// loads it on first need) for the first one.
    async fn decompose(&mut self, work: Work) -> Result<(), SessionError> {
        if self.pipeline.is_none() {
            let Some(done) = self.done.clone() else {
                // Stopping: the task stays unacknowledged and goes back to the queue.
                return Ok(());
            };
            let model = self.model.load().await?;
            let (work_tx, work_rx) = mpsc::channel(usize::from(self.config.prefetch.max(1)) * 2);
            let run = pipeline::run(model, self.config.worker.clone(), self.stores.clone(), work_rx, done, self.config.clock.clone());
            self.pipeline = Some((Some(work_tx), tokio::spawn(run)));
        }
        match self.pipeline.as_ref().and_then(|(tx, _)| tx.as_ref()) {
            Some(tx) => tx.send(work).await.map_err(|_| SessionError::Pipeline),
            None => Ok(()),
        }
    }

    /// Takes no more work: the pipeline drains, the results channel closes once every
    /// task in hand has its result.
    fn stop_taking(&mut self) {
        if let Some((tx, _)) = self.pipeline.as_mut() {
            tx.take();
        }
        self.done = None;
        self.again = None;
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
            if let Ok(Some((name, used, total))) = tokio::task::spawn_blocking(move || crate::runtime::gpu_memory(device)).await {
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
        assert!(parse_task(b"{not json").unwrap_err().to_string().starts_with("not a task"));
        assert!(parse_task(&vec![b' '; MAX_MESSAGE_BYTES + 1]).unwrap_err().to_string().contains("cap"));
        let task = |schema: &str, key: &str, extra: &str| {
            format!(r#"{{"schema":"{schema}","job_id":"j","input":"i","output":"o","key":"{key}","size":1,"etag":null,"params":{{"layers":null,"palette":null}}{extra}}}"#)
        };
        assert!(parse_task(task(TASK_SCHEMA, "a.png", "").as_bytes()).is_ok());
        assert!(parse_task(task("lamina.task/9", "a.png", "").as_bytes()).unwrap_err().to_string().contains("schema"));
        assert!(parse_task(task(TASK_SCHEMA, "../a.png", "").as_bytes()).is_err());
        assert!(parse_task(task(TASK_SCHEMA, "a.png", r#","surprise":1"#).as_bytes()).unwrap_err().to_string().contains("unknown field"));
    }
}

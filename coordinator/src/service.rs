//! The distributed coordinator: consumes job requests, fans each job out into one task per
//! image on its pool's task queue (publisher confirms), collects the workers' results from
//! the events queue, writes the job's records, and acknowledges the job message only once
//! `summary.json` is written. A coordinator that dies mid-job leaves the job unacknowledged:
//! RabbitMQ hands it to the next coordinator, which plans it again; images whose manifest is
//! current are skipped, so only the images in flight at the kill are processed twice, and
//! results are counted once per image.
//!
//! Concurrent jobs share each pool's task queue through the [`Scheduler`]: a pool holds a
//! bounded window of tasks, handed out by job priority and then round-robin. Each job is
//! run by a [`JobContext`] runner. Dead letters come back on `<prefix>.dead.watch`: a dead
//! task is recorded as a failed image of its job.
//!
//! Written against the [`Broker`] seam: the distributed coordinator serves RabbitMQ, and
//! `lamina run` serves the in-process queue with this same code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::runner::{JobContext, JobError, JobNote, LIVE_WORKER};
use crate::scheduler::Scheduler;
use crate::state::Shared;
use crate::Summary;
use lamina_common::config::S3Settings;
use lamina_common::messages::{BadMessage, Event, FailureKind, JobSpec, Task, TaskResult, EVENT_SCHEMA, JOB_SCHEMA, TASK_SCHEMA};
use lamina_common::queue::{Broker, Death, DeathReason, Delivery, QueueError, MAX_DELIVERIES};
use lamina_common::Location;
use lamina_common::amqp::MAX_MESSAGE_BYTES;

/// Everything a coordinator process needs.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub s3: S3Settings,
    /// Jobs planned and tracked at once.
    pub max_jobs: u16,
    /// Tasks a pool holds queued or in flight, at least (the window grows to twice the
    /// prefetch of the pool's live workers). Bounds how long a new job waits behind others,
    /// and the images processed twice when a coordinator dies (its successor republishes
    /// what has no manifest yet).
    pub window: usize,
    /// Confirms awaited together while publishing.
    pub confirm_window: usize,
    pub name: String,
    /// How long a stopping coordinator waits for its job runners to hand their jobs back.
    pub grace: Duration,
    /// Where job runners report progress, for a caller that shows it (`lamina run`).
    pub notes: Option<mpsc::UnboundedSender<JobNote>>,
}

/// Results on their way to the job they belong to. Unbounded so that one job's slow record
/// writes never stall routing for the others; bounded in practice by the pool's window (a
/// job has at most a window of tasks out, each reporting once or, redelivered, a few times).
type Routes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<TaskResult>>>>;

/// How often queue depths are read and the pools' windows resized.
const LOOK_EVERY: Duration = Duration::from_secs(2);

/// Checks a job request: size, schema, fields, locations.
pub fn parse_job(body: &[u8]) -> Result<JobSpec, BadMessage> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(BadMessage::TooLarge { bytes: body.len(), cap: MAX_MESSAGE_BYTES });
    }
    let spec: JobSpec = serde_json::from_slice(body).map_err(|e| BadMessage::Malformed { what: "job", reason: e.to_string() })?;
    check_job(&spec)?;
    Ok(spec)
}

/// The rules every job request meets, however it came (a message, the HTTP API): schema,
/// locations, job id, pool, priority.
pub fn check_job(spec: &JobSpec) -> Result<(), BadMessage> {
    if spec.schema != JOB_SCHEMA {
        return Err(BadMessage::Schema { what: "job", schema: spec.schema.clone() });
    }
    for location in [&spec.input, &spec.output] {
        Location::parse(location).map_err(|e| BadMessage::Field(e.to_string()))?;
    }
    if !is_job_id(&spec.job_id) {
        return Err(BadMessage::Field(format!("bad job id {:?}: 1 to {MAX_JOB_ID} letters, digits and '-'", spec.job_id)));
    }
    if spec.pool.is_empty() || spec.pool.len() > MAX_POOL || !spec.pool.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(BadMessage::Field(format!("bad pool name {:?}: 1 to {MAX_POOL} letters, digits, '-', '_' and '.'", spec.pool)));
    }
    if spec.priority > 9 {
        return Err(BadMessage::Field(format!("priority {} is over 9", spec.priority)));
    }
    Ok(())
}

/// The longest pool name: it names a queue (AMQP allows 255 bytes, prefix included).
pub const MAX_POOL: usize = 64;

/// The longest job id: it names the job's records folder.
pub const MAX_JOB_ID: usize = 128;

/// Whether `id` can be a job id: 1 to [`MAX_JOB_ID`] ASCII letters, digits and `-`.
pub fn is_job_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_JOB_ID && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Serves until `shutdown` fires (Ok) or the broker fails (Err; the caller reconnects).
pub async fn serve(config: &CoordinatorConfig, broker: Arc<dyn Broker>, state: Shared, shutdown: CancellationToken) -> Result<(), QueueError> {
    broker.declare(&[]).await?;
    let topology = broker.topology().clone();
    let mut jobs = broker.consume(&topology.jobs(), &format!("{}-jobs", config.name), config.max_jobs.max(1)).await?;
    let mut events = broker.consume(&topology.events(), &format!("{}-events", config.name), 512).await?;
    let mut dead = broker.consume(&topology.dead_watch(), &format!("{}-dead", config.name), 64).await?;
    info!(jobs = %topology.jobs(), events = %topology.events(), max_jobs = config.max_jobs, window = config.window, "coordinating");

    let routes: Routes = Arc::default();
    let context = JobContext {
        broker: broker.clone(),
        s3: config.s3.clone(),
        state: state.clone(),
        scheduler: Arc::new(Scheduler::new(config.window)),
        confirm_window: config.confirm_window,
        notes: config.notes.clone(),
    };
    // Job runners stop through this token (a child of `shutdown`, and cancelled when this
    // session ends with the broker), handing their jobs back.
    let stop_jobs = shutdown.child_token();
    let _stop_on_exit = stop_jobs.clone().drop_guard();
    let mut running = JoinSet::new();
    let mut look = tokio::time::interval(LOOK_EVERY);
    let outcome = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            delivery = jobs.next() => match delivery {
                Some(Ok(delivery)) => if let Err(e) = start_job(delivery, &context, &routes, &state, &stop_jobs, &mut running).await {
                    break Err(e);
                },
                Some(Err(e)) => break Err(e),
                None => break Err(QueueError::Lost("the broker cancelled the job consumer".into())),
            },
            delivery = events.next() => match delivery {
                Some(Ok(delivery)) => {
                    route_event(&delivery.body, &routes, &state);
                    if let Err(e) = delivery.settle.ack().await {
                        break Err(e);
                    }
                }
                Some(Err(e)) => break Err(e),
                None => break Err(QueueError::Lost("the broker cancelled the events consumer".into())),
            },
            delivery = dead.next() => match delivery {
                Some(Ok(delivery)) => {
                    route_dead_letter(&delivery.body, delivery.death.clone(), &routes, &state);
                    if let Err(e) = delivery.settle.ack().await {
                        break Err(e);
                    }
                }
                Some(Err(e)) => break Err(e),
                None => break Err(QueueError::Lost("the broker cancelled the dead-letter consumer".into())),
            },
            _ = look.tick() => if let Err(e) = look_around(&*broker, &state, &context.scheduler).await {
                break Err(e);
            },
            Some(done) = running.join_next(), if !running.is_empty() => match done {
                Ok((id, Ok(summary))) => info!(job_id = %id, images = summary.images, done = summary.done,
                    skipped = summary.skipped, failed = summary.failed, seconds = summary.seconds,
                    cancelled = summary.cancelled, "job finished"),
                Ok((id, Err(e))) => warn!(job_id = %id, error = %e, "job interrupted; handed back to the queue"),
                Err(e) => warn!(error = %e, "job runner crashed"),
            },
        }
    };
    // Unfinished jobs go back to the queue: their runners stop and requeue them, within the
    // grace period; what is left returns to the queue when the connection closes.
    stop_jobs.cancel();
    let drained = tokio::time::timeout(config.grace, async { while running.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(jobs = running.len(), "grace period over: leaving the remaining jobs to the broker");
    }
    drop((jobs, events, dead));
    broker.close().await;
    outcome
}

/// Checks a job message and starts its runner; an invalid one is dead-lettered.
async fn start_job(
    delivery: Delivery,
    context: &JobContext,
    routes: &Routes,
    state: &Shared,
    stop: &CancellationToken,
    running: &mut JoinSet<(String, Result<Summary, JobError>)>,
) -> Result<(), QueueError> {
    let spec = match parse_job(&delivery.body) {
        Ok(spec) => spec,
        Err(reason) => {
            warn!(reason = %reason, "rejected a job message: dead-lettered");
            {
                let mut s = state.lock();
                s.messages_rejected += 1;
            }
            return delivery.settle.reject().await;
        }
    };
    info!(job_id = %spec.job_id, input = %spec.input, output = %spec.output, pool = %spec.pool,
        priority = spec.priority, redelivered = delivery.redelivered, "job received");
    let (tx, rx) = mpsc::unbounded_channel();
    if let Ok(mut r) = routes.lock() {
        r.insert(spec.job_id.clone(), tx);
    }
    let (context, routes, stop) = (context.clone(), routes.clone(), stop.clone());
    running.spawn(async move {
        let id = spec.job_id.clone();
        let outcome = context.run(spec, rx, stop).await;
        if let (Err(e), Some(notes)) = (&outcome, &context.notes) {
            if !matches!(e, JobError::Stopping) {
                let _ = notes.send(JobNote::Interrupted { job_id: id.clone(), error: e.to_string() });
            }
        }
        let settled = match &outcome {
            Ok(_) => delivery.settle.ack().await,
            // Back to the queue, to be tried again (dead-lettered after the delivery limit
            // if it keeps failing).
            Err(_) => delivery.settle.requeue().await,
        };
        if let Err(e) = settled {
            warn!(job_id = %id, error = %e, "could not settle the job message; the broker hands it out again");
        }
        if let Ok(mut r) = routes.lock() {
            r.remove(&id);
        }
        (id, outcome)
    });
    Ok(())
}

/// Reads the depth of the dead-letter and task queues, and sizes each pool's window from
/// the prefetch its live workers report.
async fn look_around(broker: &dyn Broker, state: &Shared, scheduler: &Scheduler) -> Result<(), QueueError> {
    let topology = broker.topology();
    let dead = broker.depth(&topology.dead()).await?;
    let (pools, prefetch) = {
        let mut s = state.lock();
        s.dead_letter_queue = dead;
        let mut prefetch: HashMap<String, usize> = s.pools.keys().map(|p| (p.clone(), 0)).collect();
        for w in s.fleet().iter().filter(|w| w.seconds_since_heartbeat < LIVE_WORKER) {
            *prefetch.entry(w.heartbeat.pool.clone()).or_default() += w.heartbeat.prefetch as usize;
        }
        (s.pools.keys().cloned().collect::<Vec<_>>(), prefetch)
    };
    for (pool, total) in prefetch {
        scheduler.set_fleet_prefetch(&pool, total);
    }
    for pool in pools {
        // A pool whose queue nobody declared yet has no depth to report.
        let ready = broker.depth(&topology.tasks(&pool)).await?;
        {
            let mut s = state.lock();
            s.pools.entry(pool).or_default().queue_ready = ready;
        }
    }
    {
        let mut s = state.lock();
        s.windows = scheduler.windows();
    }
    Ok(())
}

/// Hands a worker's result to its job; heartbeats are logged. Malformed events are dropped
/// with a warning (a result that is lost this way is recovered when the job is planned again).
fn route_event(body: &[u8], routes: &Routes, state: &Shared) {
    let event: Event = match serde_json::from_slice(body) {
        Ok(event) if body.len() <= MAX_MESSAGE_BYTES => event,
        Ok(_) => return warn!("dropped an event over the size cap"),
        Err(e) => return warn!(error = %e, "dropped a malformed event"),
    };
    if event.schema != EVENT_SCHEMA {
        return warn!(schema = %event.schema, "dropped an event of unknown schema");
    }
    if let Some(beat) = event.heartbeat {
        debug!(worker = %beat.worker, pool = %beat.pool, device = %beat.device, in_flight = beat.in_flight,
            images_per_second = beat.images_per_second, "heartbeat");
        {
            let mut s = state.lock();
            s.heartbeat(beat);
        }
    }
    if let (Some(job_id), Some(result)) = (event.job_id, event.result) {
        deliver(routes, &job_id, result);
    }
}

fn deliver(routes: &Routes, job_id: &str, result: TaskResult) {
    let route = routes.lock().ok().and_then(|r| r.get(job_id).cloned());
    match route {
        Some(tx) => {
            let _ = tx.send(result);
        }
        None => debug!(job_id = %job_id, key = %result.key, "result for a job not running here"),
    }
}

/// A dead-lettered task becomes a failed image of its job, with the reason the queue gives;
/// anything else dead-lettered is only counted (it stays in `<prefix>.dead` for operators).
fn route_dead_letter(body: &[u8], death: Option<Death>, routes: &Routes, state: &Shared) {
    let task = serde_json::from_slice::<Task>(body).ok().filter(|t| t.schema == TASK_SCHEMA);
    {
        let mut s = state.lock();
        if task.is_some() {
            s.dead_letters_task += 1;
        } else {
            s.dead_letters_other += 1;
        }
    }
    let Death { reason, queue, count } = death.unwrap_or(Death { reason: DeathReason::Other("unknown".to_owned()), queue: String::new(), count: 1 });
    let Some(task) = task else {
        return warn!(reason = %reason, queue = %queue, "a message was dead-lettered");
    };
    let why = match &reason {
        DeathReason::DeliveryLimit => format!(
            "dead-lettered after {MAX_DELIVERIES} deliveries: the worker stopped every time it took this task (crash, out of memory or killed)"
        ),
        DeathReason::Rejected => "dead-lettered: a worker refused the task as invalid".to_owned(),
        other => format!("dead-lettered ({other}, {count} times)"),
    };
    warn!(job_id = %task.job_id, key = %task.key, reason = %reason, "a task was dead-lettered: recorded as failed");
    deliver(routes, &task.job_id, TaskResult::failed(task.key, FailureKind::DeadLettered, why));
}

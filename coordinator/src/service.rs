//! The distributed coordinator: consumes job requests, fans each job out into one task per
//! image on its pool's task queue (publisher confirms), collects the workers' results from
//! the events queue, writes the job's records, and acknowledges the job message only once
//! `summary.json` is written. A coordinator that dies mid-job leaves the job unacknowledged:
//! RabbitMQ hands it to the next coordinator, which plans it again; images whose manifest is
//! current are skipped, so only the images in flight at the kill are processed twice, and
//! results are counted once per image.
//!
//! Concurrent jobs share each pool's task queue through the [`Scheduler`]: a pool holds a
//! bounded window of tasks, handed out by job priority and then round-robin. Tasks are
//! published with their confirms pipelined ([`amqp::Pipelined`]). Dead letters come back on
//! `<prefix>.dead.watch`: a dead task is recorded as a failed image of its job.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures_lite::StreamExt;
use lapin::acker::Acker;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::scheduler::Scheduler;
use crate::state::Shared;
use crate::{plan, JobRecords, PlanStats, Planner, Progress, Summary};
use lamina_common::amqp::{self, AmqpSettings, MAX_MESSAGE_BYTES};
use lamina_common::config::S3Settings;
use lamina_common::messages::{Event, JobSpec, Task, TaskResult, EVENT_SCHEMA, JOB_SCHEMA, TASK_SCHEMA};
use lamina_common::retry::{retry, RetryPolicy};
use lamina_common::{store, Location};

/// Everything a coordinator process needs.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub amqp: AmqpSettings,
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
}

/// Results on their way to the job they belong to.
type Routes = Arc<Mutex<HashMap<String, mpsc::Sender<TaskResult>>>>;

/// How often queue depths are read and the pools' windows resized.
const LOOK_EVERY: Duration = Duration::from_secs(2);
/// A worker without a heartbeat for this long no longer counts towards its pool's window.
const LIVE_WORKER: f64 = 30.0;

/// Checks a job request: size, schema, fields, locations.
pub fn parse_job(body: &[u8]) -> Result<JobSpec, String> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(format!("message of {} bytes is over the {MAX_MESSAGE_BYTES}-byte cap", body.len()));
    }
    let spec: JobSpec = serde_json::from_slice(body).map_err(|e| format!("not a job: {e}"))?;
    if spec.schema != JOB_SCHEMA {
        return Err(format!("unknown job schema {:?}", spec.schema));
    }
    for location in [&spec.input, &spec.output] {
        Location::parse(location).map_err(|e| e.to_string())?;
    }
    if spec.job_id.is_empty() || !spec.job_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!("bad job id {:?}", spec.job_id));
    }
    if spec.pool.is_empty() || !spec.pool.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(format!("bad pool name {:?}", spec.pool));
    }
    if spec.priority > 9 {
        return Err(format!("priority {} is over 9", spec.priority));
    }
    Ok(spec)
}

/// Serves until `shutdown` fires or the broker connection fails (Err; the caller reconnects).
pub async fn serve(config: &CoordinatorConfig, state: Shared, shutdown: CancellationToken) -> anyhow::Result<()> {
    let connection = amqp::connect(&config.amqp, &config.name).await.context("cannot connect to the broker")?;
    if let Ok(mut s) = state.lock() {
        s.broker_connects += 1;
    }
    let setup = connection.create_channel().await?;
    amqp::declare(&setup, &config.amqp, &[]).await?;
    let publisher = amqp::confirming(&connection).await?;
    let consume = |queue: String, prefetch: u16| {
        let connection = &connection;
        async move {
            let channel = connection.create_channel().await?;
            channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
            let consumer = channel
                .basic_consume(queue.as_str(), "", BasicConsumeOptions::default(), FieldTable::default())
                .await?;
            Ok::<_, lapin::Error>((channel, consumer))
        }
    };
    let (_jobs_channel, mut jobs) = consume(config.amqp.jobs(), config.max_jobs.max(1)).await?;
    let (_events_channel, mut events) = consume(config.amqp.events(), 512).await?;
    let (_dead_channel, mut dead) = consume(config.amqp.dead_watch(), 64).await?;
    info!(jobs = %config.amqp.jobs(), events = %config.amqp.events(), max_jobs = config.max_jobs, window = config.window, "coordinating");

    let routes: Routes = Arc::default();
    let scheduler = Arc::new(Scheduler::new(config.window));
    let mut running = JoinSet::new();
    let mut look = tokio::time::interval(LOOK_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            delivery = jobs.next() => match delivery {
                Some(Ok(delivery)) => match parse_job(&delivery.data) {
                    Ok(spec) => {
                        info!(job_id = %spec.job_id, input = %spec.input, output = %spec.output, pool = %spec.pool,
                            priority = spec.priority, redelivered = delivery.redelivered, "job received");
                        let (tx, rx) = mpsc::channel(1024);
                        if let Ok(mut r) = routes.lock() {
                            r.insert(spec.job_id.clone(), tx);
                        }
                        let job = Job {
                            publisher: publisher.clone(),
                            config: config.clone(),
                            state: state.clone(),
                            scheduler: scheduler.clone(),
                        };
                        let routes = routes.clone();
                        running.spawn(async move {
                            let id = spec.job_id.clone();
                            let acker = delivery.acker;
                            let outcome = job.run(spec, &acker, rx).await;
                            if outcome.is_err() {
                                // Back to the queue, to be tried again (dead-lettered after
                                // the delivery limit if it keeps failing).
                                let _ = acker.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await;
                            }
                            if let Ok(mut r) = routes.lock() {
                                r.remove(&id);
                            }
                            (id, outcome)
                        });
                    }
                    Err(reason) => {
                        warn!(reason = %reason, "rejected a job message: dead-lettered");
                        if let Ok(mut s) = state.lock() {
                            s.messages_rejected += 1;
                        }
                        delivery.acker.reject(BasicRejectOptions { requeue: false }).await?;
                    }
                },
                Some(Err(e)) => return Err(anyhow::Error::new(e).context("lost the broker")),
                None => return Err(anyhow::anyhow!("the broker cancelled the job consumer")),
            },
            delivery = events.next() => match delivery {
                Some(Ok(delivery)) => {
                    route_event(&delivery.data, &routes, &state).await;
                    delivery.acker.ack(BasicAckOptions::default()).await?;
                }
                Some(Err(e)) => return Err(anyhow::Error::new(e).context("lost the broker")),
                None => return Err(anyhow::anyhow!("the broker cancelled the events consumer")),
            },
            delivery = dead.next() => match delivery {
                Some(Ok(delivery)) => {
                    route_dead_letter(&delivery.data, &delivery.properties, &routes, &state).await;
                    delivery.acker.ack(BasicAckOptions::default()).await?;
                }
                Some(Err(e)) => return Err(anyhow::Error::new(e).context("lost the broker")),
                None => return Err(anyhow::anyhow!("the broker cancelled the dead-letter consumer")),
            },
            _ = look.tick() => look_around(&setup, &config.amqp, &state, &scheduler).await?,
            Some(done) = running.join_next(), if !running.is_empty() => match done {
                Ok((id, Ok(summary))) => info!(job_id = %id, images = summary.images, done = summary.done,
                    skipped = summary.skipped, failed = summary.failed, seconds = summary.seconds,
                    cancelled = summary.cancelled, "job finished"),
                Ok((id, Err(e))) => warn!(job_id = %id, error = %format!("{e:#}"), "job interrupted; handed back to the queue"),
                Err(e) => warn!(error = %e, "job runner crashed"),
            },
        }
    }
    // Unfinished jobs stay unacknowledged and return to the queue when the connection closes.
    running.abort_all();
    let _ = connection.close(200, "coordinator stopping").await;
    Ok(())
}

/// Reads the depth of the dead-letter and task queues, and sizes each pool's window from
/// the prefetch its live workers report.
async fn look_around(channel: &Channel, amqp: &AmqpSettings, state: &Shared, scheduler: &Scheduler) -> Result<(), lapin::Error> {
    let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    let dead = channel.queue_declare(amqp.dead().as_str(), passive, FieldTable::default()).await?.message_count();
    let (pools, prefetch) = {
        let Ok(mut s) = state.lock() else { return Ok(()) };
        s.dead_letter_queue = Some(u64::from(dead));
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
        let ready = match channel.queue_declare(amqp.tasks(&pool).as_str(), passive, FieldTable::default()).await {
            Ok(q) => Some(u64::from(q.message_count())),
            Err(_) => return Ok(()),
        };
        if let Ok(mut s) = state.lock() {
            s.pools.entry(pool).or_default().queue_ready = ready;
        }
    }
    if let Ok(mut s) = state.lock() {
        s.windows = scheduler.windows();
    }
    Ok(())
}

/// Hands a worker's result to its job; heartbeats are logged. Malformed events are dropped
/// with a warning (a result that is lost this way is recovered when the job is planned again).
async fn route_event(body: &[u8], routes: &Routes, state: &Shared) {
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
        if let Ok(mut s) = state.lock() {
            s.heartbeat(beat);
        }
    }
    if let (Some(job_id), Some(result)) = (event.job_id, event.result) {
        deliver(routes, &job_id, result).await;
    }
}

async fn deliver(routes: &Routes, job_id: &str, result: TaskResult) {
    let route = routes.lock().ok().and_then(|r| r.get(job_id).cloned());
    match route {
        Some(tx) => {
            let _ = tx.send(result).await;
        }
        None => debug!(job_id = %job_id, key = %result.key, "result for a job not running here"),
    }
}

/// A dead-lettered task becomes a failed image of its job, with the reason RabbitMQ gives;
/// anything else dead-lettered is only counted (it stays in `<prefix>.dead` for operators).
async fn route_dead_letter(body: &[u8], props: &BasicProperties, routes: &Routes, state: &Shared) {
    let death = amqp::death(props);
    let task = serde_json::from_slice::<Task>(body).ok().filter(|t| t.schema == TASK_SCHEMA);
    if let Ok(mut s) = state.lock() {
        if task.is_some() {
            s.dead_letters_task += 1;
        } else {
            s.dead_letters_other += 1;
        }
    }
    let (reason, queue, count) = death.unwrap_or_default();
    let Some(task) = task else {
        return warn!(reason = %reason, queue = %queue, "a message was dead-lettered");
    };
    let why = match reason.as_str() {
        "delivery_limit" => format!(
            "dead-lettered after {} deliveries: the worker stopped every time it took this task (crash, out of memory or killed)",
            amqp::DELIVERY_LIMIT
        ),
        "rejected" => "dead-lettered: a worker refused the task as invalid".to_owned(),
        other => format!("dead-lettered ({other}, {count} times)"),
    };
    warn!(job_id = %task.job_id, key = %task.key, reason = %reason, "a task was dead-lettered: recorded as failed");
    deliver(routes, &task.job_id, TaskResult::failed(task.key, why)).await;
}

/// A 128-bit fingerprint of an image key: a job's dedup set holds these instead of the keys,
/// so a million-image job needs 16 MB for it rather than the keys' length.
pub fn fingerprint(key: &str) -> u128 {
    let digest = Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(bytes)
}

/// What one job runner needs from its coordinator.
struct Job {
    publisher: Channel,
    config: CoordinatorConfig,
    state: Shared,
    scheduler: Arc<Scheduler>,
}

impl Job {
    /// Plans one job, publishes its tasks, counts its results once per image, writes its
    /// records and acknowledges the job message.
    async fn run(self, spec: JobSpec, acker: &Acker, mut results: mpsc::Receiver<TaskResult>) -> anyhow::Result<Summary> {
        let Job { publisher, config, state, scheduler } = self;
        let (in_loc, out_loc) = (Location::parse(&spec.input)?, Location::parse(&spec.output)?);
        amqp::declare(&publisher, &config.amqp, &[&spec.pool]).await?;
        let input = store::open_input(&in_loc, &out_loc, &config.s3).await;
        let output = store::open(&out_loc, &config.s3).await;
        let mut records = retry("write job spec", RetryPolicy::default(), || JobRecords::create(output.clone(), &spec)).await?;
        // A job whose summary exists finished under a coordinator that died before the ack.
        if let Some(summary) = records.finished().await {
            info!(job_id = %spec.job_id, "job already finished: acknowledged");
            acker.ack(BasicAckOptions::default()).await?;
            return Ok(summary);
        }
        let cancel = CancellationToken::new();
        if let Ok(mut s) = state.lock() {
            s.job_started(&spec);
            s.pools.entry(spec.pool.clone()).or_default();
            s.cancels.insert(spec.job_id.clone(), cancel.clone());
            if s.cancel_requests.remove(&spec.job_id) {
                cancel.cancel();
            }
        }
        let (model_id, weights) = model_identity(&spec.model);
        let planner = Planner::for_job(&spec, input, output.clone(), model_id.clone(), weights);
        let stats = Arc::new(PlanStats::default());
        let (task_tx, task_rx) = mpsc::channel(1024);
        let (planned_tx, mut planned_rx) = mpsc::channel(1024);
        let planning = tokio::spawn(plan(planner, task_tx, planned_tx, stats.clone()));
        let acquired = Arc::new(AtomicU64::new(0));
        let publishing = tokio::spawn(publish_tasks(
            task_rx,
            amqp::Pipelined::new(publisher.clone(), config.amqp.tasks(&spec.pool), spec.priority, config.confirm_window),
            scheduler.clone(),
            spec.pool.clone(),
            spec.priority,
            state.clone(),
            acquired.clone(),
        ));

        let started_at = lamina_common::time::now_rfc3339();
        let mut progress = Progress::default();
        let mut seen: HashSet<u128> = HashSet::new();
        // A job picked up again after a coordinator died: its recorded results stand.
        let earlier = records.recorded().await?;
        if !earlier.is_empty() {
            info!(job_id = %spec.job_id, recorded = earlier.len(), "resuming job");
        }
        for result in earlier {
            if seen.insert(fingerprint(&result.key)) {
                progress.count(result.status);
            }
        }
        let mut released = 0u64;
        let mut planning_open = true;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let cancelled = loop {
            if !planning_open && seen.len() as u64 >= stats.images.load(Ordering::Relaxed) {
                break false;
            }
            // A result from the planner (skipped, refused) or from a worker (a published task).
            let (result, from_worker) = tokio::select! {
                _ = cancel.cancelled() => break true,
                r = planned_rx.recv(), if planning_open => match r {
                    Some(r) => (r, false),
                    None => { planning_open = false; continue; }
                },
                r = results.recv() => match r {
                    Some(r) => (r, true),
                    None => anyhow::bail!("result routing closed"),
                },
                _ = tick.tick() => {
                    if let Ok(mut s) = state.lock() {
                        s.job_listed(&spec.job_id, stats.images.load(Ordering::Relaxed), !planning_open);
                    }
                    continue;
                }
            };
            // A redelivered task reports again: count each image once.
            let first_report = seen.insert(fingerprint(&result.key));
            if from_worker && first_report {
                // The task's slot of the pool's window is free again.
                scheduler.release(&spec.pool, 1);
                released += 1;
            }
            if first_report {
                progress.count(result.status);
                if let Ok(mut s) = state.lock() {
                    s.job_result(&spec.job_id, &result, stats.images.load(Ordering::Relaxed), !planning_open);
                }
                records.record(&result).await?;
            }
        };
        planning.abort();
        publishing.abort();
        let _ = publishing.await;
        // Slots this job still holds (tasks in flight when it was cancelled) go back.
        scheduler.release(&spec.pool, acquired.load(Ordering::Relaxed).saturating_sub(released) as usize);
        if cancelled {
            info!(job_id = %spec.job_id, reported = seen.len(), "job cancelled");
        }
        let mut summary = Summary::new(&spec, model_id, &progress, started_at);
        summary.cancelled = cancelled;
        let summary = records.finish(summary).await?;
        acker.ack(BasicAckOptions::default()).await?;
        if let Ok(mut s) = state.lock() {
            s.job_finished(&spec.job_id, cancelled);
        }
        Ok(summary)
    }
}

/// Publishes a job's tasks as its pool's window allows, confirms pipelined.
pub async fn publish_tasks(
    mut tasks: mpsc::Receiver<Task>,
    mut out: amqp::Pipelined<Task>,
    scheduler: Arc<Scheduler>,
    pool: String,
    priority: u8,
    state: Shared,
    acquired: Arc<AtomicU64>,
) -> Result<(), amqp::AmqpError> {
    let count = |n: usize| {
        if n > 0 {
            if let Ok(mut s) = state.lock() {
                s.pools.entry(pool.clone()).or_default().tasks_published += n as u64;
            }
        }
    };
    loop {
        let task = match tasks.try_recv() {
            Ok(task) => task,
            Err(mpsc::error::TryRecvError::Empty) => {
                // Nothing to publish right now: settle the confirms outstanding.
                count(out.flush().await?.len());
                match tasks.recv().await {
                    Some(task) => task,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        scheduler.acquire(&pool, priority).await;
        acquired.fetch_add(1, Ordering::Relaxed);
        count(out.send(task).await?.len());
    }
    count(out.flush().await?.len());
    Ok(())
}

/// The model id and weights hash a manifest must record for an image to be skipped. The
/// coordinator does not load models (it does not link libtorch): it knows the built-in
/// model's identity, and for TorchScript models reads the card's name, version and sha256.
fn model_identity(model: &str) -> (String, String) {
    if model == "fscs" {
        return (lamina_common::FSCS_MODEL_ID.to_owned(), lamina_common::FSCS_WEIGHTS_SHA256.to_owned());
    }
    if let Some((_, id)) = lamina_common::capacity_test_model(model) {
        return (id, String::new());
    }
    let card = model
        .strip_prefix("torchscript:")
        .and_then(|path| std::fs::read(std::path::Path::new(path).with_extension("json")).ok())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    match card {
        Some(c) => (
            format!("{}@{}", c["name"].as_str().unwrap_or(""), c["version"].as_str().unwrap_or("")),
            c["sha256"].as_str().unwrap_or("").to_owned(),
        ),
        // Unknown here: nothing matches, so nothing is skipped (always correct, never stale).
        None => (model.to_owned(), String::new()),
    }
}

//! The distributed coordinator: consumes job requests, fans each job out into one task per
//! image on its pool's task queue (publisher confirms), collects the workers' results from
//! the events queue, writes the job's records, and acknowledges the job message only once
//! `summary.json` is written. A coordinator that dies mid-job leaves the job unacknowledged:
//! RabbitMQ hands it to the next coordinator, which plans it again; images whose manifest is
//! current are skipped, so only the images in flight at the kill are processed twice, and
//! results are counted once per image.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use futures_lite::StreamExt;
use lapin::acker::Acker;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::FieldTable;
use lapin::Channel;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::state::Shared;
use crate::{plan, JobRecords, PlanStats, Planner, Progress, Summary};
use lamina_common::amqp::{self, AmqpSettings, MAX_MESSAGE_BYTES};
use lamina_common::config::S3Settings;
use lamina_common::messages::{Event, JobSpec, TaskResult, EVENT_SCHEMA, JOB_SCHEMA};
use lamina_common::retry::{retry, RetryPolicy};
use lamina_common::{store, Location};

/// Everything a coordinator process needs.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub amqp: AmqpSettings,
    pub s3: S3Settings,
    /// Jobs planned and tracked at once.
    pub max_jobs: u16,
    /// Tasks of one job published but not yet reported, at most. Bounds the queue a job
    /// holds (so jobs interleave), and the images processed twice when a coordinator dies
    /// (its successor republishes what has no manifest yet).
    pub window: usize,
    pub name: String,
}

type Routes = Arc<Mutex<HashMap<String, mpsc::Sender<TaskResult>>>>;

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
    Ok(spec)
}

/// Serves until `shutdown` fires or the broker connection fails (Err; the caller reconnects).
pub async fn serve(config: &CoordinatorConfig, state: Shared, shutdown: CancellationToken) -> anyhow::Result<()> {
    let connection = amqp::connect(&config.amqp, &config.name).await.context("cannot connect to the broker")?;
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
    info!(jobs = %config.amqp.jobs(), events = %config.amqp.events(), max_jobs = config.max_jobs, "coordinating");

    let routes: Routes = Arc::default();
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            delivery = jobs.next() => match delivery {
                Some(Ok(delivery)) => match parse_job(&delivery.data) {
                    Ok(spec) => {
                        info!(job_id = %spec.job_id, input = %spec.input, output = %spec.output, pool = %spec.pool,
                            redelivered = delivery.redelivered, "job received");
                        let (tx, rx) = mpsc::channel(1024);
                        if let Ok(mut r) = routes.lock() {
                            r.insert(spec.job_id.clone(), tx);
                        }
                        let (publisher, config, routes, state) = (publisher.clone(), config.clone(), routes.clone(), state.clone());
                        running.spawn(async move {
                            let id = spec.job_id.clone();
                            let outcome = run_job(spec, delivery.acker, rx, publisher, &config, &state).await;
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
            Some(done) = running.join_next(), if !running.is_empty() => match done {
                Ok((id, Ok(summary))) => info!(job_id = %id, images = summary.images, done = summary.done,
                    skipped = summary.skipped, failed = summary.failed, seconds = summary.seconds, "job finished"),
                Ok((id, Err(e))) => warn!(job_id = %id, error = %format!("{e:#}"), "job interrupted; it stays queued"),
                Err(e) => warn!(error = %e, "job runner crashed"),
            },
        }
    }
    // Unfinished jobs stay unacknowledged and return to the queue when the connection closes.
    running.abort_all();
    let _ = connection.close(200, "coordinator stopping").await;
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
        let route = routes.lock().ok().and_then(|r| r.get(&job_id).cloned());
        match route {
            Some(tx) => {
                let _ = tx.send(result).await;
            }
            None => debug!(job_id = %job_id, key = %result.key, "result for a job not running here"),
        }
    }
}

/// Plans one job, publishes its tasks, counts its results once per image, writes its
/// records and acknowledges the job message.
async fn run_job(
    spec: JobSpec,
    acker: Acker,
    mut results: mpsc::Receiver<TaskResult>,
    publisher: Channel,
    config: &CoordinatorConfig,
    state: &Shared,
) -> anyhow::Result<Summary> {
    let (in_loc, out_loc) = (Location::parse(&spec.input)?, Location::parse(&spec.output)?);
    amqp::declare(&publisher, &config.amqp, &[&spec.pool]).await?;
    let input = store::open_input(&in_loc, &out_loc, &config.s3).await;
    let output = store::open(&out_loc, &config.s3).await;
    let mut records = retry("write job spec", RetryPolicy::default(), || JobRecords::create(output.clone(), &spec)).await?;
    if let Ok(mut s) = state.lock() {
        s.job_started(&spec);
    }
    let (model_id, weights) = model_identity(&spec.model);
    let planner = Planner::for_job(&spec, input, output.clone(), model_id.clone(), weights);
    let stats = Arc::new(PlanStats::default());
    let (task_tx, mut task_rx) = mpsc::channel(1024);
    let (planned_tx, mut planned_rx) = mpsc::channel(1024);
    let planning = tokio::spawn(plan(planner, task_tx, planned_tx, stats.clone()));
    let queue = config.amqp.tasks(&spec.pool);
    let window = Arc::new(tokio::sync::Semaphore::new(config.window.max(1)));
    let publishing = {
        let (publisher, queue, priority, state, window) = (publisher.clone(), queue.clone(), spec.priority, state.clone(), window.clone());
        tokio::spawn(async move {
            while let Some(task) = task_rx.recv().await {
                // A slot is given back by each result a worker reports.
                if let Ok(slot) = window.acquire().await {
                    slot.forget();
                }
                retry("publish task", RetryPolicy::default(), || amqp::publish(&publisher, &queue, &task, priority)).await?;
                if let Ok(mut s) = state.lock() {
                    s.tasks_published += 1;
                }
            }
            Ok::<_, amqp::AmqpError>(())
        })
    };

    let started_at = lamina_common::time::now_rfc3339();
    let mut progress = Progress::default();
    let mut seen = HashSet::new();
    // A job picked up again after a coordinator died: its recorded results stand.
    let earlier = records.recorded().await?;
    if !earlier.is_empty() {
        info!(job_id = %spec.job_id, recorded = earlier.len(), "resuming job");
    }
    for result in earlier {
        if seen.insert(result.key.clone()) {
            progress.count(result.status);
        }
    }
    let mut planning_open = true;
    loop {
        if !planning_open && seen.len() as u64 >= stats.images.load(Ordering::Relaxed) {
            break;
        }
        let result = tokio::select! {
            r = planned_rx.recv(), if planning_open => match r {
                Some(r) => r,
                None => { planning_open = false; continue; }
            },
            r = results.recv() => match r {
                Some(r) => {
                    window.add_permits(1);
                    r
                }
                None => anyhow::bail!("result routing closed"),
            },
        };
        // A redelivered task reports again: count each image once.
        if seen.insert(result.key.clone()) {
            progress.count(result.status);
            if let Ok(mut s) = state.lock() {
                s.job_result(&spec.job_id, &result, stats.images.load(Ordering::Relaxed), !planning_open);
            }
            records.record(&result).await?;
        }
    }
    planning.await?;
    publishing.await??;
    let summary = Summary::new(&spec, model_id, &progress, started_at);
    let summary = records.finish(summary).await?;
    acker.ack(BasicAckOptions::default()).await?;
    if let Ok(mut s) = state.lock() {
        s.job_finished(&spec.job_id);
    }
    Ok(summary)
}

/// The model id and weights hash a manifest must record for an image to be skipped. The
/// coordinator does not load models (it does not link libtorch): it knows the built-in
/// model's identity, and for TorchScript models reads the card's name, version and sha256.
fn model_identity(model: &str) -> (String, String) {
    if model == "fscs" {
        return (lamina_common::FSCS_MODEL_ID.to_owned(), lamina_common::FSCS_WEIGHTS_SHA256.to_owned());
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

//! The job runner: one job from its spec to its summary, over any [`Broker`]. It plans the
//! job (skipping images whose manifest is current), publishes one task per image within its
//! pool's window, counts each image's result once (a redelivered task reports again), writes
//! the job's records, and resumes from the recorded results when it is run again. The
//! distributed coordinator runs it over RabbitMQ; `lamina run` over the in-process queue.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A worker without a heartbeat for this long is not counted as serving its pool.
pub const LIVE_WORKER: f64 = 30.0;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, Instrument};

use crate::scheduler::Scheduler;
use crate::state::{JobState, Shared};
use crate::{plan, JobRecords, PlanStats, Planner, Progress, Summary};
use lamina_common::config::S3Settings;
use lamina_common::messages::{JobSpec, Task, TaskResult};
use lamina_families::{ModelSpec, UnknownModel};
use lamina_common::queue::{Broker, Pipelined, QueueError};
use lamina_common::retry::{retry, RetryPolicy};
use lamina_common::{store, Location};

/// What a job runner reports as it goes, for a caller that shows progress (`lamina run`).
#[derive(Debug, Clone)]
pub enum JobNote {
    /// An image's result, counted for the first time; `listed` images are known so far.
    Result { job_id: String, result: TaskResult, listed: u64 },
    /// The job's summary is written.
    Finished { summary: Summary },
    /// The job stopped short of a summary (its stores unreachable past the retries); it is
    /// handed back to the queue.
    Interrupted { job_id: String, error: String },
}

/// How a run of a job ended, short of a summary.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The coordinator is stopping: the job goes back to the queue unfinished.
    #[error("the coordinator is stopping")]
    Stopping,
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("job records: {0}")]
    Records(#[from] lamina_common::StoreError),
    #[error("{0}")]
    Spec(String),
}

/// What a job runner shares with the other jobs of its coordinator.
#[derive(Clone)]
pub struct JobContext {
    pub broker: Arc<dyn Broker>,
    pub s3: S3Settings,
    pub state: Shared,
    pub scheduler: Arc<Scheduler>,
    /// Confirms awaited together while publishing.
    pub confirm_window: usize,
    pub notes: Option<mpsc::UnboundedSender<JobNote>>,
}

/// A 128-bit fingerprint of an image key: a job's dedup set holds these instead of the keys,
/// so a million-image job needs 16 MB for it rather than the keys' length.
pub fn fingerprint(key: &str) -> u128 {
    let digest = Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_le_bytes(bytes)
}

impl JobContext {
    /// Runs `spec` to its summary. `results` carries the workers' results for this job;
    /// `stop` ends the run early without a summary (the job is handed back).
    pub async fn run(
        &self,
        spec: JobSpec,
        results: mpsc::UnboundedReceiver<TaskResult>,
        stop: CancellationToken,
    ) -> Result<Summary, JobError> {
        let span = tracing::info_span!("job", job_id = %spec.job_id);
        self.run_job(spec, results, stop).instrument(span).await
    }

    async fn run_job(
        &self,
        spec: JobSpec,
        mut results: mpsc::UnboundedReceiver<TaskResult>,
        stop: CancellationToken,
    ) -> Result<Summary, JobError> {
        let parse = |l: &str| Location::parse(l).map_err(|e| JobError::Spec(e.to_string()));
        let (in_loc, out_loc) = (parse(&spec.input)?, parse(&spec.output)?);
        self.broker.declare(&[&spec.pool]).await?;
        let input = store::open_input(&in_loc, &out_loc, &self.s3).await;
        let output = store::open(&out_loc, &self.s3).await;
        let records = retry("write job spec", RetryPolicy::default(), || JobRecords::create(output.clone(), &spec)).await?;
        // A job whose summary exists finished under a coordinator that died before the ack.
        if let Some(summary) = records.finished().await {
            info!("job already finished");
            return Ok(summary);
        }
        let cancel = self.register(&spec);
        let model = ModelSpec::parse(&spec.model);
        if let Some(reason) = refusal(&spec, &model, &self.state) {
            info!(reason = %reason, "job refused");
            let mut summary = Summary::new(&spec, String::new(), &Progress::default(), lamina_common::time::now_rfc3339());
            summary.error = Some(reason);
            return self.finish(&spec, records, summary, JobState::Failed).await;
        }
        // Unknown here (a TorchScript card only the workers can read): nothing matches, so
        // nothing is skipped (always correct, never stale).
        let identity = model.ok().and_then(|m| m.identity());
        let (model_id, weights) = identity.map_or((spec.model.clone(), String::new()), |i| (i.id, i.weights_sha256));
        let planner = Planner::for_job(&spec, input, output.clone(), model_id.clone(), weights);
        // Planning and publishing end with the job, however it ends.
        let done = stop.child_token();
        let _stop_helpers = done.clone().drop_guard();
        let mut fanout = self.fan_out(&spec, planner, &done);

        let started_at = lamina_common::time::now_rfc3339();
        let mut tally = Tally { context: self, spec: &spec, records, progress: Progress::default(), seen: HashSet::new(), released: 0 };
        tally.resume().await?;
        let mut planning_open = true;
        let mut publishing_open = true;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let cancelled = loop {
            let listed = fanout.stats.images.load(Ordering::Relaxed);
            if !planning_open && tally.seen.len() as u64 >= listed {
                break false;
            }
            // A result from the planner (skipped, refused) or from a worker (a published task).
            let (result, from_worker) = tokio::select! {
                _ = stop.cancelled() => return Err(JobError::Stopping),
                _ = cancel.cancelled() => break true,
                failed = &mut fanout.failed, if publishing_open => match failed {
                    Ok(e) => return Err(e.into()),
                    Err(_) => { publishing_open = false; continue; }
                },
                r = fanout.planned.recv(), if planning_open => match r {
                    Some(r) => (r, false),
                    None => { planning_open = false; continue; }
                },
                r = results.recv() => match r {
                    Some(r) => (r, true),
                    None => return Err(JobError::Stopping),
                },
                _ = tick.tick() => {
                    {
                        let mut s = self.state.lock();
                        s.job_listed(&spec.job_id, listed, !planning_open);
                        s.job_ignored(&spec.job_id, fanout.stats.ignored.load(Ordering::Relaxed));
                        let waiting = !s.pool_has_live_workers(&spec.pool, LIVE_WORKER);
                        s.job_waiting(&spec.job_id, waiting);
                    }
                    continue;
                }
            };
            tally.count(result, from_worker, listed, !planning_open).await?;
        };
        if cancelled {
            // Results already routed to this job still count: a stopped `lamina run` records
            // the images its worker finished before the stop.
            while let Ok(result) = results.try_recv() {
                let listed = fanout.stats.images.load(Ordering::Relaxed);
                tally.count(result, true, listed, !planning_open).await?;
            }
            info!(reported = tally.seen.len(), "job cancelled");
        }
        done.cancel();
        let _ = fanout.planning.await;
        let _ = fanout.publishing.await;
        // Slots this job still holds (tasks in flight when it was cancelled) go back.
        let held = fanout.acquired.load(Ordering::Relaxed).saturating_sub(tally.released);
        self.scheduler.release(&spec.pool, held as usize);
        let Tally { records, progress, .. } = tally;
        let mut summary = Summary::new(&spec, model_id, &progress, started_at);
        summary.cancelled = cancelled;
        summary.ignored = fanout.stats.ignored.load(Ordering::Relaxed);
        summary.ignored_examples = fanout.stats.ignored_examples.lock().map(|e| e.clone()).unwrap_or_default();
        if cancelled {
            summary.interrupted_by = self.state.lock().interruptions.remove(&spec.job_id);
        }
        let state = if cancelled { JobState::Cancelled } else { JobState::Finished };
        self.finish(&spec, records, summary, state).await
    }

    /// Shows the job as running and returns its cancel switch (already thrown when a cancel
    /// for it came before it did).
    fn register(&self, spec: &JobSpec) -> CancellationToken {
        let cancel = CancellationToken::new();
        {
            let mut s = self.state.lock();
            s.job_started(spec);
            s.pools.entry(spec.pool.clone()).or_default();
            s.cancels.insert(spec.job_id.clone(), cancel.clone());
            if s.cancel_requests.remove(&spec.job_id) {
                cancel.cancel();
            }
        }
        cancel
    }

    /// Starts planning (listing, skipping current images) and publishing (within the
    /// pool's window) on their own tasks, both ending when `done` fires.
    fn fan_out(&self, spec: &JobSpec, planner: Planner, done: &CancellationToken) -> Fanout {
        let stats = Arc::new(PlanStats::default());
        let (task_tx, task_rx) = mpsc::channel(1024);
        let (planned_tx, planned) = mpsc::channel(1024);
        let planning = {
            let (stats, done) = (stats.clone(), done.clone());
            tokio::spawn(async move { done.run_until_cancelled(plan(planner, task_tx, planned_tx, stats)).await }.in_current_span())
        };
        let acquired = Arc::new(AtomicU64::new(0));
        // Publishing ends by itself once every task is confirmed; an error (the broker is
        // gone) comes back through `failed` and ends the run.
        let (failed_tx, failed) = tokio::sync::oneshot::channel::<QueueError>();
        let publisher = Publisher {
            broker: self.broker.clone(),
            scheduler: self.scheduler.clone(),
            state: self.state.clone(),
            pool: spec.pool.clone(),
            priority: spec.priority,
            confirm_window: self.confirm_window,
            acquired: acquired.clone(),
        };
        let done = done.clone();
        let publishing = tokio::spawn(
            async move {
                if let Some(Err(e)) = done.run_until_cancelled(publisher.run(task_rx)).await {
                    let _ = failed_tx.send(e);
                }
            }
            .in_current_span(),
        );
        Fanout { stats, planned, failed, acquired, planning, publishing }
    }

    /// Writes the job's summary and reports the job over.
    async fn finish(&self, spec: &JobSpec, records: JobRecords, summary: Summary, state: JobState) -> Result<Summary, JobError> {
        let summary = records.finish(summary).await?;
        {
            let mut s = self.state.lock();
            s.job_finished(&spec.job_id, state, summary.error.clone());
        }
        if let Some(notes) = &self.notes {
            let _ = notes.send(JobNote::Finished { summary: summary.clone() });
        }
        Ok(summary)
    }
}

/// A job's planning and publishing, running.
struct Fanout {
    stats: Arc<PlanStats>,
    /// Results the planner gives without a task (skipped, refused keys).
    planned: mpsc::Receiver<TaskResult>,
    failed: tokio::sync::oneshot::Receiver<QueueError>,
    /// Slots of the pool's window taken.
    acquired: Arc<AtomicU64>,
    planning: tokio::task::JoinHandle<Option<()>>,
    publishing: tokio::task::JoinHandle<()>,
}

/// A job's results, each image counted once (a redelivered task reports again), recorded
/// in `results.jsonl`, shown, and reported to whoever watches the job.
struct Tally<'a> {
    context: &'a JobContext,
    spec: &'a JobSpec,
    records: JobRecords,
    progress: Progress,
    seen: HashSet<u128>,
    /// Window slots given back (one per first report of a published task).
    released: u64,
}

impl Tally<'_> {
    /// Counts what an earlier run of this job recorded (a coordinator that died).
    async fn resume(&mut self) -> Result<(), JobError> {
        let earlier = self.records.recorded().await?;
        if !earlier.is_empty() {
            info!(recorded = earlier.len(), "resuming job");
        }
        for result in earlier {
            if self.seen.insert(fingerprint(&result.key)) {
                self.progress.count(result.status);
            }
        }
        Ok(())
    }

    async fn count(&mut self, result: TaskResult, from_worker: bool, listed: u64, listing_complete: bool) -> Result<(), JobError> {
        if !self.seen.insert(fingerprint(&result.key)) {
            return Ok(());
        }
        if from_worker {
            // The task's slot of the pool's window is free again.
            self.context.scheduler.release(&self.spec.pool, 1);
            self.released += 1;
        }
        self.progress.count(result.status);
        {
            let mut s = self.context.state.lock();
            s.job_result(&self.spec.job_id, &result, listed, listing_complete);
        }
        self.records.record(&result).await?;
        if let Some(notes) = &self.context.notes {
            let _ = notes.send(JobNote::Result { job_id: self.spec.job_id.clone(), result, listed });
        }
        Ok(())
    }
}

/// Publishes a job's tasks as its pool's window allows, confirms pipelined.
pub struct Publisher {
    pub broker: Arc<dyn Broker>,
    pub scheduler: Arc<Scheduler>,
    pub state: Shared,
    pub pool: String,
    pub priority: u8,
    pub confirm_window: usize,
    /// Slots of the window taken so far.
    pub acquired: Arc<AtomicU64>,
}

impl Publisher {
    /// Publishes every task `tasks` yields; returns when it is closed and all are confirmed.
    pub async fn run(self, mut tasks: mpsc::Receiver<Task>) -> Result<(), QueueError> {
        let queue = self.broker.topology().tasks(&self.pool);
        let mut out = Pipelined::new(&*self.broker, queue, self.priority, self.confirm_window);
        let count = |n: usize| {
            if n > 0 {
                {
                    let mut s = self.state.lock();
                    s.pools.entry(self.pool.clone()).or_default().tasks_published += n as u64;
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
            self.scheduler.acquire(&self.pool, self.priority).await;
            self.acquired.fetch_add(1, Ordering::Relaxed);
            count(out.send(task).await?.len());
        }
        count(out.flush().await?.len());
        Ok(())
    }
}

/// Why a job cannot run at all, found before any image is read: a model the job names
/// that does not exist or refuses its parameters, or a pool whose live workers all run
/// another model.
pub(crate) fn refusal(spec: &JobSpec, model: &Result<ModelSpec, UnknownModel>, state: &Shared) -> Option<String> {
    let model = match model {
        Ok(model) => model,
        Err(unknown) => return Some(unknown.to_string()),
    };
    if let Err(reason) = model.check_params(&spec.params) {
        return Some(format!("model {} refuses the job's parameters: {reason}", spec.model));
    }
    let id = model.identity()?.id;
    let s = state.lock();
    let live: Vec<String> = s
        .fleet()
        .into_iter()
        .filter(|w| w.heartbeat.pool == spec.pool && w.seconds_since_heartbeat < LIVE_WORKER)
        .map(|w| w.heartbeat.model)
        .collect();
    // No live worker yet: the job waits for one (a worker refuses a task for another model).
    if live.is_empty() || live.iter().any(|m| *m == id) {
        return None;
    }
    let mut running: Vec<&str> = live.iter().map(String::as_str).collect();
    running.sort_unstable();
    running.dedup();
    Some(format!(
        "no live worker of pool {} runs model {} ({id}); they run {}: submit the job to a pool that runs it",
        spec.pool,
        spec.model,
        running.join(", ")
    ))
}

//! What the coordinator knows right now, shared between the job runners, the event router
//! and the HTTP endpoints: jobs with their progress, the fleet from its heartbeats, counters.
//! Guarded by one mutex behind [`Shared`], never held across an await, with one policy for
//! a lock a panicking holder poisoned: the state is views and counters, each update leaves
//! it usable, so it is taken over and serving goes on (a status page that answers 500 for
//! the rest of the process's life helps no one).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde::Serialize;

use lamina_common::messages::{Heartbeat, JobSpec, Status, TaskResult};

/// Failures kept per job for the status view (all of them are in results.jsonl).
const RECENT_FAILURES: usize = 10;
/// Finished jobs kept in the view.
const FINISHED_KEPT: usize = 100;

/// The coordinator's state, shared: the only way in is [`Shared::lock`] (or [`Shared::read`]).
#[derive(Debug, Clone, Default)]
pub struct Shared(Arc<Mutex<State>>);

impl Shared {
    /// The state, locked; a poisoned lock is taken over (see the module's note).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads from the state under the lock.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock())
    }
}

/// Where a job is, as the status endpoints show it (lowercase, `cancel-requested`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Submitted over the API and waiting in the jobs queue for a coordinator to start it.
    Queued,
    Running,
    Cancelling,
    Finished,
    Cancelled,
    /// Refused before any image was read (its model or parameters); the summary says why.
    Failed,
    /// A cancel for a job this coordinator has not started (kept until it arrives).
    CancelRequested,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Cancelling => "cancelling",
            JobState::Finished => "finished",
            JobState::Cancelled => "cancelled",
            JobState::Failed => "failed",
            JobState::CancelRequested => "cancel-requested",
        }
    }

    /// Still planning or waiting for results.
    pub fn is_active(self) -> bool {
        matches!(self, JobState::Running | JobState::Cancelling)
    }

    /// Over: its summary is written.
    pub fn is_over(self) -> bool {
        matches!(self, JobState::Finished | JobState::Cancelled | JobState::Failed)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Cancel requests kept for jobs this coordinator has not started yet.
const CANCEL_REQUESTS_KEPT: usize = 10_000;
/// Jobs submitted here and not started (another coordinator may have taken them) kept in
/// the view.
const QUEUED_KEPT: usize = 10_000;

#[derive(Debug, Default)]
pub struct State {
    pub(crate) jobs: BTreeMap<String, JobView>,
    pub(crate) workers: BTreeMap<String, WorkerView>,
    /// Per pool: tasks published, heartbeats received, ready messages in the task queue.
    pub(crate) pools: BTreeMap<String, PoolCounters>,
    pub(crate) results_done: u64,
    pub(crate) results_rendered: u64,
    pub(crate) results_skipped: u64,
    pub(crate) results_failed: u64,
    pub(crate) messages_rejected: u64,
    pub(crate) dead_letters_task: u64,
    pub(crate) dead_letters_other: u64,
    /// Messages in the dead-letter queue at the last look (None until the first).
    pub(crate) dead_letter_queue: Option<u64>,
    pub(crate) jobs_completed: u64,
    pub(crate) jobs_cancelled: u64,
    pub(crate) jobs_failed: u64,
    pub(crate) broker_connects: u64,
    /// The running jobs' cancel switches.
    pub(crate) cancels: BTreeMap<String, tokio_util::sync::CancellationToken>,
    /// Jobs asked to be cancelled before they started here.
    pub(crate) cancel_requests: HashSet<String>,
    /// Why a job was stopped, when a signal rather than a user's cancel stopped it
    /// (`SIGINT`, `SIGTERM`); recorded in its summary.
    pub(crate) interruptions: BTreeMap<String, String>,
    /// The pools' windows at the last look.
    pub(crate) windows: Vec<crate::scheduler::WindowView>,
}

#[derive(Debug, Default, Clone)]
pub struct PoolCounters {
    pub tasks_published: u64,
    pub heartbeats: u64,
    pub queue_ready: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub job_id: String,
    pub input: String,
    pub output: String,
    pub model: String,
    pub pool: String,
    pub priority: u8,
    pub state: JobState,
    /// Images listed so far (final once the listing is complete).
    pub images: u64,
    pub listing_complete: bool,
    /// Files listed that are not images, left alone.
    pub ignored: u64,
    /// No live worker serves the job's pool: its tasks wait in the queue for one.
    pub waiting_for_workers: bool,
    pub done: u64,
    /// Rendered again from stored layers (other formats asked for), without the model.
    pub rendered: u64,
    pub skipped: u64,
    pub failed: u64,
    pub images_per_second: f64,
    pub eta_seconds: Option<f64>,
    pub recent_failures: VecDeque<String>,
    /// Why the job was refused (state `failed`): its model, its parameters, no worker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds from its start to its summary, once it is over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    #[serde(skip)]
    started: Option<Instant>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerView {
    #[serde(flatten)]
    pub heartbeat: Heartbeat,
    pub seconds_since_heartbeat: f64,
    #[serde(skip)]
    seen: Option<Instant>,
}

impl JobView {
    /// A job just submitted: queued, nothing counted yet.
    pub fn queued(spec: &JobSpec) -> JobView {
        JobView { state: JobState::Queued, started: None, ..JobView::new(spec) }
    }

    /// A job that is over, from its `summary.json` (a coordinator that restarted since).
    pub fn from_summary(spec: &JobSpec, summary: &crate::Summary) -> JobView {
        let state = match (&summary.error, summary.cancelled) {
            (Some(_), _) => JobState::Failed,
            (None, true) => JobState::Cancelled,
            (None, false) => JobState::Finished,
        };
        JobView {
            state,
            images: summary.images,
            listing_complete: true,
            ignored: summary.ignored,
            done: summary.done,
            rendered: summary.rendered,
            skipped: summary.skipped,
            failed: summary.failed,
            images_per_second: summary.images_per_second,
            eta_seconds: (state == JobState::Finished).then_some(0.0),
            recent_failures: summary.failures.iter().take(RECENT_FAILURES).cloned().collect(),
            error: summary.error.clone(),
            seconds: Some(summary.seconds),
            started: None,
            ..JobView::new(spec)
        }
    }

    fn new(spec: &JobSpec) -> JobView {
        JobView {
            job_id: spec.job_id.clone(),
            input: spec.input.clone(),
            output: spec.output.clone(),
            model: spec.model.clone(),
            pool: spec.pool.clone(),
            priority: spec.priority,
            state: JobState::Running,
            images: 0,
            listing_complete: false,
            ignored: 0,
            waiting_for_workers: false,
            done: 0,
            rendered: 0,
            skipped: 0,
            failed: 0,
            images_per_second: 0.0,
            eta_seconds: None,
            recent_failures: VecDeque::new(),
            error: None,
            seconds: None,
            started: Some(Instant::now()),
        }
    }
}

impl State {
    pub fn job_started(&mut self, spec: &JobSpec) {
        self.jobs.insert(spec.job_id.clone(), JobView::new(spec));
    }

    /// A job submitted over the API: shown as queued until a coordinator starts it.
    pub fn job_submitted(&mut self, spec: &JobSpec) {
        self.jobs.entry(spec.job_id.clone()).or_insert_with(|| JobView::queued(spec));
        let queued: Vec<String> = self.jobs.values().filter(|j| j.state == JobState::Queued).map(|j| j.job_id.clone()).collect();
        for id in queued.iter().take(queued.len().saturating_sub(QUEUED_KEPT)) {
            self.jobs.remove(id);
        }
    }

    /// One job's view.
    pub fn job(&self, job_id: &str) -> Option<JobView> {
        self.jobs.get(job_id).cloned()
    }

    /// Up to `limit` jobs in descending id order after `cursor` (an id), and whether more
    /// follow.
    pub fn jobs_page(&self, cursor: Option<&str>, limit: usize) -> (Vec<JobView>, bool) {
        let mut older = match cursor {
            Some(c) => Box::new(self.jobs.range::<str, _>((std::ops::Bound::Unbounded, std::ops::Bound::Excluded(c))).rev()) as Box<dyn Iterator<Item = _>>,
            None => Box::new(self.jobs.iter().rev()),
        };
        let page: Vec<JobView> = older.by_ref().take(limit).map(|(_, v)| v.clone()).collect();
        (page, older.next().is_some())
    }

    pub fn job_result(&mut self, job_id: &str, result: &TaskResult, images: u64, listing_complete: bool) {
        match result.status {
            Status::Done => self.results_done += 1,
            Status::Rendered => self.results_rendered += 1,
            Status::Skipped => self.results_skipped += 1,
            Status::Failed => self.results_failed += 1,
        }
        let Some(job) = self.jobs.get_mut(job_id) else { return };
        match result.status {
            Status::Done => job.done += 1,
            Status::Rendered => job.rendered += 1,
            Status::Skipped => job.skipped += 1,
            Status::Failed => {
                job.failed += 1;
                if job.recent_failures.len() == RECENT_FAILURES {
                    job.recent_failures.pop_front();
                }
                job.recent_failures.push_back(format!("{}: {}", result.key, result.reason.as_deref().unwrap_or("failed")));
            }
        }
        job.images = images;
        job.listing_complete = listing_complete;
        let secs = job.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let finished = job.done + job.rendered + job.skipped + job.failed;
        job.images_per_second = if secs > 0.0 { finished as f64 / secs } else { 0.0 };
        job.eta_seconds = (listing_complete && job.images_per_second > 0.0)
            .then(|| images.saturating_sub(finished) as f64 / job.images_per_second);
    }

    /// The listing's progress, between results.
    pub fn job_listed(&mut self, job_id: &str, images: u64, listing_complete: bool) {
        if let Some(job) = self.jobs.get_mut(job_id) {
            job.images = images;
            job.listing_complete = listing_complete;
        }
    }

    pub fn job_ignored(&mut self, job_id: &str, ignored: u64) {
        if let Some(job) = self.jobs.get_mut(job_id) {
            job.ignored = ignored;
        }
    }

    /// Whether any worker of `pool` sent a heartbeat in the last `live` seconds.
    pub fn pool_has_live_workers(&self, pool: &str, live: f64) -> bool {
        self.fleet().iter().any(|w| w.heartbeat.pool == pool && w.seconds_since_heartbeat < live)
    }

    /// Marks a running job as waiting (or no longer waiting) for a worker of its pool.
    pub fn job_waiting(&mut self, job_id: &str, waiting: bool) {
        if let Some(job) = self.jobs.get_mut(job_id) {
            job.waiting_for_workers = waiting;
        }
    }

    /// Records how a job ended: `Finished`, `Cancelled` or `Failed`.
    pub fn job_finished(&mut self, job_id: &str, state: JobState, error: Option<String>) {
        if let Some(job) = self.jobs.get_mut(job_id) {
            job.state = state;
            job.eta_seconds = (state == JobState::Finished).then_some(0.0);
            job.error = error;
            job.seconds = job.started.map(|s| (s.elapsed().as_secs_f64() * 1000.0).round() / 1000.0);
        }
        match state {
            JobState::Cancelled => self.jobs_cancelled += 1,
            JobState::Failed => self.jobs_failed += 1,
            _ => self.jobs_completed += 1,
        }
        self.cancels.remove(job_id);
        let finished: Vec<String> =
            self.jobs.values().filter(|j| j.state.is_over()).map(|j| j.job_id.clone()).collect();
        for id in finished.iter().take(finished.len().saturating_sub(FINISHED_KEPT)) {
            self.jobs.remove(id);
        }
    }

    /// Asks a job to stop: a running job stops publishing and writes its summary; one not
    /// started here is cancelled when it arrives. Returns the job's state afterwards.
    pub fn cancel(&mut self, job_id: &str) -> JobState {
        if let Some(token) = self.cancels.get(job_id) {
            token.cancel();
            if let Some(job) = self.jobs.get_mut(job_id) {
                job.state = JobState::Cancelling;
            }
            return JobState::Cancelling;
        }
        match self.jobs.get_mut(job_id) {
            // Queued here and not started: cancelled when a coordinator starts it.
            Some(job) if job.state == JobState::Queued => {
                job.state = JobState::CancelRequested;
                self.cancel_requests.insert(job_id.to_owned());
                return JobState::CancelRequested;
            }
            Some(job) => return job.state,
            None => {}
        }
        if self.cancel_requests.len() < CANCEL_REQUESTS_KEPT {
            self.cancel_requests.insert(job_id.to_owned());
        }
        JobState::CancelRequested
    }

    /// Stops a job because the process was told to stop (`signal`, e.g. `SIGTERM`): like a
    /// cancel, and its summary says which signal it was.
    pub fn interrupt(&mut self, job_id: &str, signal: &str) -> JobState {
        self.interruptions.insert(job_id.to_owned(), signal.to_owned());
        self.cancel(job_id)
    }

    /// Images listed and not yet reported, per pool, over the running jobs.
    pub fn pending_by_pool(&self) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = self.pools.keys().map(|p| (p.clone(), 0)).collect();
        for job in self.jobs.values().filter(|j| j.state.is_active()) {
            *out.entry(job.pool.clone()).or_default() += job.images.saturating_sub(job.done + job.rendered + job.skipped + job.failed);
        }
        out
    }

    pub fn heartbeat(&mut self, beat: Heartbeat) {
        self.pools.entry(beat.pool.clone()).or_default().heartbeats += 1;
        let view = WorkerView { heartbeat: beat.clone(), seconds_since_heartbeat: 0.0, seen: Some(Instant::now()) };
        self.workers.insert(beat.worker, view);
    }

    /// The fleet with the age of each heartbeat filled in.
    /// The broker connection was made (again).
    pub fn broker_connected(&mut self) {
        self.broker_connects += 1;
    }

    /// Tasks published to `pool`'s queue by this coordinator.
    pub fn tasks_published(&self, pool: &str) -> u64 {
        self.pools.get(pool).map_or(0, |p| p.tasks_published)
    }

    pub fn fleet(&self) -> Vec<WorkerView> {
        self.workers
            .values()
            .map(|w| {
                let mut w = w.clone();
                w.seconds_since_heartbeat = w.seen.map_or(f64::INFINITY, |s| (s.elapsed().as_secs_f64() * 10.0).round() / 10.0);
                w
            })
            .collect()
    }
}

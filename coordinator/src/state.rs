//! What the coordinator knows right now, shared between the job runners, the event router
//! and the HTTP endpoints: jobs with their progress, the fleet from its heartbeats, counters.
//! Guarded by a plain mutex that is never held across an await.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use lamina_common::messages::{Heartbeat, JobSpec, Status, TaskResult};

/// Failures kept per job for the status view (all of them are in results.jsonl).
const RECENT_FAILURES: usize = 10;
/// Finished jobs kept in the view.
const FINISHED_KEPT: usize = 100;

pub type Shared = Arc<Mutex<State>>;

#[derive(Debug, Default)]
pub struct State {
    pub jobs: BTreeMap<String, JobView>,
    pub workers: BTreeMap<String, WorkerView>,
    pub tasks_published: u64,
    pub results_done: u64,
    pub results_skipped: u64,
    pub results_failed: u64,
    pub messages_rejected: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub job_id: String,
    pub input: String,
    pub output: String,
    pub model: String,
    pub pool: String,
    /// `running` or `finished`.
    pub state: &'static str,
    /// Images listed so far (final once the listing is complete).
    pub images: u64,
    pub listing_complete: bool,
    pub done: u64,
    pub skipped: u64,
    pub failed: u64,
    pub images_per_second: f64,
    pub eta_seconds: Option<f64>,
    pub recent_failures: VecDeque<String>,
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

impl State {
    pub fn job_started(&mut self, spec: &JobSpec) {
        let view = JobView {
            job_id: spec.job_id.clone(),
            input: spec.input.clone(),
            output: spec.output.clone(),
            model: spec.model.clone(),
            pool: spec.pool.clone(),
            state: "running",
            images: 0,
            listing_complete: false,
            done: 0,
            skipped: 0,
            failed: 0,
            images_per_second: 0.0,
            eta_seconds: None,
            recent_failures: VecDeque::new(),
            started: Some(Instant::now()),
        };
        self.jobs.insert(spec.job_id.clone(), view);
    }

    pub fn job_result(&mut self, job_id: &str, result: &TaskResult, images: u64, listing_complete: bool) {
        match result.status {
            Status::Done => self.results_done += 1,
            Status::Skipped => self.results_skipped += 1,
            Status::Failed => self.results_failed += 1,
        }
        let Some(job) = self.jobs.get_mut(job_id) else { return };
        match result.status {
            Status::Done => job.done += 1,
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
        let finished = job.done + job.skipped + job.failed;
        job.images_per_second = if secs > 0.0 { finished as f64 / secs } else { 0.0 };
        job.eta_seconds = (listing_complete && job.images_per_second > 0.0)
            .then(|| images.saturating_sub(finished) as f64 / job.images_per_second);
    }

    pub fn job_finished(&mut self, job_id: &str) {
        if let Some(job) = self.jobs.get_mut(job_id) {
            job.state = "finished";
            job.eta_seconds = Some(0.0);
        }
        let finished: Vec<String> = self.jobs.values().filter(|j| j.state == "finished").map(|j| j.job_id.clone()).collect();
        for id in finished.iter().take(finished.len().saturating_sub(FINISHED_KEPT)) {
            self.jobs.remove(id);
        }
    }

    pub fn heartbeat(&mut self, beat: Heartbeat) {
        let view = WorkerView { heartbeat: beat.clone(), seconds_since_heartbeat: 0.0, seen: Some(Instant::now()) };
        self.workers.insert(beat.worker, view);
    }

    /// The fleet with the age of each heartbeat filled in.
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

//! The coordinator's service and job runner over the in-process queue, fast and without
//! RabbitMQ: a redelivered result is counted once, a job resumes from its recorded results,
//! a cancelled job ends with a summary that says so, a task that crashes every worker it
//! reaches is dead-lettered and recorded as a failed image, and a job message is only
//! acknowledged once its summary is written. The test plays the worker pool: it takes tasks
//! off the task queue and publishes results as a worker would.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lamina_common::messages::{Event, FailureKind, JobSpec, Status, Task, TaskResult, EVENT_SCHEMA};
use lamina_common::params::DecomposeParams;
use lamina_common::queue::{Broker, Consumer, Delivery, MemoryBroker, Topology, MAX_DELIVERIES};
use lamina_coordinator::service::{serve, CoordinatorConfig};
use lamina_coordinator::state::{JobState, Shared};
use lamina_coordinator::{JobNote, Summary};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Engine {
    broker: Arc<dyn Broker>,
    state: Shared,
    notes: mpsc::UnboundedReceiver<JobNote>,
    stop: CancellationToken,
    dir: tempfile::TempDir,
}

/// Settings for a job on local folders (nothing reaches S3).
pub fn local_only() -> lamina_common::config::S3Settings {
    lamina_common::config::S3Settings { endpoint: None, region: "us-east-1".into(), path_style: false, credentials: None, max_attempts: 1 }
}

/// A coordinator over the in-process queue, and an input folder holding `images`.
fn engine(images: &[&str]) -> Engine {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("in")).unwrap();
    for key in images {
        std::fs::write(dir.path().join("in").join(key), key.as_bytes()).unwrap();
    }
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new(Topology::new("t")));
    let state = Shared::default();
    let (tx, notes) = mpsc::unbounded_channel();
    let config = CoordinatorConfig {
        s3: local_only(),
        max_jobs: 2,
        window: 64,
        confirm_window: 8,
        name: "test".into(),
        grace: Duration::from_secs(5),
        notes: Some(tx),
    };
    let stop = CancellationToken::new();
    let (b, s, t) = (broker.clone(), state.clone(), stop.clone());
    tokio::spawn(async move { serve(&config, b, s, t).await });
    Engine { broker, state, notes, stop, dir }
}

impl Engine {
    fn spec(&self, job_id: &str) -> JobSpec {
        let mut spec = JobSpec::new(
            self.dir.path().join("in").display().to_string(),
            self.dir.path().join("out").display().to_string(),
            "fscs".into(),
            DecomposeParams::default(),
            Default::default(),
        );
        spec.job_id = job_id.to_owned();
        spec
    }

    async fn submit(&self, spec: &JobSpec) {
        self.broker.publish(&self.broker.topology().jobs(), spec, 0).await.unwrap();
    }

    async fn workers(&self) -> Box<dyn Consumer> {
        self.broker.consume(&self.broker.topology().tasks("default"), "pool", 100).await.unwrap()
    }

    async fn report(&self, task: &Task, status: Status) {
        let result = match status {
            Status::Failed => TaskResult::failed(task.key.clone(), FailureKind::Decode, "broken"),
            _ => TaskResult { status, ..TaskResult::skipped(task.key.clone()) },
        };
        let event = Event { schema: EVENT_SCHEMA.into(), job_id: Some(task.job_id.clone()), result: Some(result), heartbeat: None };
        self.broker.publish(&self.broker.topology().events(), &event, 0).await.unwrap();
    }

    /// Waits for the job's summary, collecting the results reported on the way.
    async fn finished(&mut self) -> (Summary, Vec<TaskResult>) {
        let mut results = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(20), self.notes.recv()).await.expect("the job ends in time") {
                Some(JobNote::Result { result, .. }) => results.push(result),
                Some(JobNote::Finished { summary }) => return (summary, results),
                Some(JobNote::Interrupted { error, .. }) => panic!("the job stopped: {error}"),
                None => panic!("the coordinator stopped"),
            }
        }
    }

    fn records(&self, job_id: &str, file: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("out/_lamina/jobs").join(job_id).join(file)).unwrap_or_default()
    }
}

async fn task(workers: &mut Box<dyn Consumer>) -> (Task, Delivery) {
    let delivery = tokio::time::timeout(Duration::from_secs(10), workers.next()).await.expect("a task in time").unwrap().unwrap();
    (serde_json::from_slice(&delivery.body).unwrap(), delivery)
}

fn keys(results: &str) -> Vec<String> {
    let mut keys: Vec<String> = results.lines().map(|l| serde_json::from_str::<TaskResult>(l).unwrap().key).collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn a_result_reported_twice_is_counted_once_and_the_job_is_acknowledged_after_its_summary() {
    let mut engine = engine(&["a.png", "b.png", "c.png"]);
    engine.submit(&engine.spec("j1")).await;
    let mut workers = engine.workers().await;
    for i in 0..3 {
        let (task, delivery) = task(&mut workers).await;
        assert_eq!(task.model.as_deref(), Some("fscs"), "a task names its job's model");
        engine.report(&task, Status::Done).await;
        if i == 0 {
            // The worker died after publishing but before acking: the task's redelivery
            // reports the same image again.
            engine.report(&task, Status::Done).await;
        }
        delivery.settle.ack().await.unwrap();
    }
    let (summary, reported) = engine.finished().await;
    assert_eq!((summary.images, summary.done, summary.failed), (3, 3, 0), "{summary:?}");
    assert_eq!(reported.len(), 3);
    assert_eq!(keys(&engine.records("j1", "results.jsonl")), ["a.png", "b.png", "c.png"]);
    assert!(engine.records("j1", "summary.json").contains("\"done\": 3"));
    // The job message is gone from the queue: acknowledged, not handed back.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(engine.broker.depth(&engine.broker.topology().jobs()).await.unwrap(), Some(0));
    engine.stop.cancel();
}

#[tokio::test]
async fn a_job_run_again_resumes_from_its_recorded_results() {
    let mut engine = engine(&["a.png", "b.png", "c.png"]);
    // An earlier coordinator recorded a.png as failed, then died.
    let records = engine.dir.path().join("out/_lamina/jobs/j2");
    std::fs::create_dir_all(&records).unwrap();
    std::fs::write(records.join("results.jsonl"), format!("{}\n", serde_json::to_string(&TaskResult::failed("a.png", FailureKind::Decode, "earlier")).unwrap())).unwrap();
    engine.submit(&engine.spec("j2")).await;
    let mut workers = engine.workers().await;
    // Every image without a manifest is planned again; a.png's new report is not counted.
    for _ in 0..3 {
        let (task, delivery) = task(&mut workers).await;
        engine.report(&task, Status::Done).await;
        delivery.settle.ack().await.unwrap();
    }
    let (summary, reported) = engine.finished().await;
    assert_eq!((summary.images, summary.done, summary.failed), (3, 2, 1), "{summary:?}");
    assert_eq!(reported.len(), 2);
    assert_eq!(keys(&engine.records("j2", "results.jsonl")), ["a.png", "b.png", "c.png"]);
    engine.stop.cancel();
}

#[tokio::test]
async fn a_cancelled_job_stops_and_says_so_and_a_cancel_before_the_start_is_kept() {
    let mut engine = engine(&["a.png", "b.png", "c.png", "d.png"]);
    engine.submit(&engine.spec("j3")).await;
    let mut workers = engine.workers().await;
    let (task1, delivery) = task(&mut workers).await;
    engine.report(&task1, Status::Done).await;
    delivery.settle.ack().await.unwrap();
    assert!(matches!(engine.notes.recv().await, Some(JobNote::Result { .. })));
    let state = engine.state.lock().cancel("j3");
    assert_eq!(state, JobState::Cancelling);
    let (summary, _) = engine.finished().await;
    assert!(summary.cancelled, "{summary:?}");
    assert_eq!(summary.images, 1, "{summary:?}");
    assert!(summary.interrupted_by.is_none());

    // Cancelled before it arrives: it ends at once, nothing published.
    assert_eq!(engine.state.lock().interrupt("j4", "SIGTERM"), JobState::CancelRequested);
    engine.submit(&engine.spec("j4")).await;
    let (summary, _) = engine.finished().await;
    assert!(summary.cancelled);
    assert_eq!((summary.job_id.as_str(), summary.interrupted_by.as_deref()), ("j4", Some("SIGTERM")));
    engine.stop.cancel();
}

#[tokio::test]
async fn a_task_that_crashes_every_worker_is_dead_lettered_and_recorded_as_failed() {
    let mut engine = engine(&["poison.png", "fine.png"]);
    engine.submit(&engine.spec("j5")).await;
    let mut crashes = 0;
    let mut answered = 0;
    while answered < 1 || crashes < MAX_DELIVERIES {
        // A worker takes one task at a time; on the poison it dies holding it.
        let mut worker = engine.broker.consume(&engine.broker.topology().tasks("default"), "w", 1).await.unwrap();
        let (task, delivery) = task(&mut worker).await;
        if task.key == "poison.png" {
            crashes += 1;
            drop(delivery);
            drop(worker);
            continue;
        }
        engine.report(&task, Status::Done).await;
        delivery.settle.ack().await.unwrap();
        answered += 1;
    }
    let (summary, reported) = engine.finished().await;
    assert_eq!((summary.images, summary.done, summary.failed), (2, 1, 1), "{summary:?}");
    let poison = reported.iter().find(|r| r.key == "poison.png").unwrap();
    assert_eq!(poison.status, Status::Failed);
    assert!(poison.reason.as_deref().unwrap().contains(&format!("after {MAX_DELIVERIES} deliveries")), "{poison:?}");
    engine.stop.cancel();
}

#[tokio::test]
async fn an_invalid_job_message_is_dead_lettered_and_the_coordinator_goes_on() {
    let mut engine = engine(&["a.png"]);
    engine.broker.publish(&engine.broker.topology().jobs(), "not a job", 0).await.unwrap();
    engine.submit(&engine.spec("j6")).await;
    let mut workers = engine.workers().await;
    let (task, delivery) = task(&mut workers).await;
    engine.report(&task, Status::Done).await;
    delivery.settle.ack().await.unwrap();
    let (summary, _) = engine.finished().await;
    assert_eq!(summary.done, 1);
    let mut dead = engine.broker.consume(&engine.broker.topology().dead(), "ops", 1).await.unwrap();
    let letter = tokio::time::timeout(Duration::from_secs(5), dead.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(letter.death.unwrap().reason, lamina_common::queue::DeathReason::Rejected);
    assert!(Path::new(&engine.dir.path().join("out/_lamina/jobs/j6/summary.json")).exists());
    engine.stop.cancel();
}

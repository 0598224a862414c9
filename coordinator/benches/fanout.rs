//! The coordinator's fan-out rate and memory on a very large listing.
//!
//! Runs the coordinator's own planning and publishing code (the planner streaming the
//! listing, the pool scheduler, confirms pipelined) against the real RabbitMQ, on a
//! synthetic listing of N images with no manifests yet (every image becomes a task), and a
//! consumer that takes the tasks away as a fleet would. Prints tasks/s with confirms and the
//! process's peak resident memory, which includes the job's dedup set of N fingerprints
//! (what a coordinator holds at the end of a job of N images).
//!
//!   cargo bench -p lamina-coordinator --bench fanout -- [IMAGES] [CONFIRM_WINDOW]
//!
//! Needs `LAMINA_AMQP_URL` (default amqp://127.0.0.1:5672/%2f).

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use tokio::sync::mpsc;

use lamina_common::amqp::{self, AmqpSettings};
use lamina_common::params::DecomposeParams;
use lamina_common::{ObjectMeta, ObjectStore, StoreError};
use lamina_coordinator::scheduler::Scheduler;
use lamina_common::queue::{Broker, RabbitBroker};
use lamina_coordinator::runner::Publisher;
use lamina_coordinator::fingerprint;
use lamina_coordinator::{plan, PlanStats, Planner};

/// A listing of `n` images under nested prefixes, generated as it is read; nothing else.
#[derive(Debug)]
struct Synthetic(u64);

#[async_trait]
impl ObjectStore for Synthetic {
    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        Err(StoreError::NotFound { key: key.to_owned() })
    }
    async fn get_opt(&self, _key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }
    async fn put(&self, _key: &str, _bytes: Vec<u8>) -> Result<(), StoreError> {
        Ok(())
    }
    async fn append(&self, _key: &str, _bytes: &[u8]) -> Result<(), StoreError> {
        Ok(())
    }
    async fn delete(&self, _key: &str) -> Result<(), StoreError> {
        Ok(())
    }
    async fn etag(&self, _key: &str) -> Result<String, StoreError> {
        Ok("0".repeat(32))
    }
    async fn list(&self, _prefix: &str, tx: mpsc::Sender<Result<ObjectMeta, StoreError>>) {
        for i in 0..self.0 {
            let meta = ObjectMeta {
                key: format!("archive/{:03}/{:03}/photo-{i:08}.jpg", i / 1_000_000, (i / 1000) % 1000),
                size: 1_000_000 + i % 1000,
                etag: Some(format!("{:032x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15))),
            };
            if tx.send(Ok(meta)).await.is_err() {
                return;
            }
        }
    }
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let images: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let confirm_window: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(256);
    let url = std::env::var("LAMINA_AMQP_URL").unwrap_or_else(|_| "amqp://127.0.0.1:5672/%2f".into());
    let settings = AmqpSettings::new(url, format!("lamina-bench-{}", std::process::id()));
    let pool = "fanout";
    let connection = amqp::connect(&settings, "lamina-fanout-bench").await?;
    let setup = connection.create_channel().await?;
    amqp::declare(&setup, &settings, &[pool]).await?;
    let queue = settings.tasks(pool);

    // The fleet: takes tasks off the queue as fast as the broker hands them out.
    let drain_connection = amqp::connect(&settings, "lamina-fanout-drain").await?;
    let drain_channel = drain_connection.create_channel().await?;
    let mut drain = drain_channel
        .basic_consume(queue.as_str(), "", BasicConsumeOptions { no_ack: true, ..BasicConsumeOptions::default() }, FieldTable::default())
        .await?;
    let drained = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(Ok(_)) = drain.next().await {
            n += 1;
        }
        n
    });

    let store: Arc<dyn ObjectStore> = Arc::new(Synthetic(images));
    let planner = Planner {
        job_id: "bench".into(),
        input_location: "s3://bench/in".into(),
        output_location: "s3://bench/out".into(),
        input: store.clone(),
        output: store,
        model_id: lamina_families::fscs::MODEL_ID.into(),
        weights_sha256: lamina_families::fscs::WEIGHTS_SHA256.into(),
        params: DecomposeParams::default(),
        render: Default::default(),
        model: Some("fscs".into()),
    };
    let stats = Arc::new(PlanStats::default());
    let (task_tx, task_rx) = mpsc::channel(1024);
    let (planned_tx, mut planned_rx) = mpsc::channel(1024);
    let started = Instant::now();
    let planning = tokio::spawn(plan(planner, task_tx, planned_tx, stats.clone()));
    tokio::spawn(async move { while planned_rx.recv().await.is_some() {} });
    // A window as large as the job: this measures publishing, not the fleet's pace.
    let scheduler = Arc::new(Scheduler::new(images as usize + 1));
    let state = lamina_coordinator::state::Shared::default();
    let broker: Arc<dyn Broker> = Arc::new(RabbitBroker::connect(&settings, "lamina-fanout-publisher").await?);
    let publisher = Publisher {
        broker: broker.clone(),
        scheduler,
        state: state.clone(),
        pool: pool.to_owned(),
        priority: 0,
        confirm_window,
        acquired: Arc::new(AtomicU64::new(0)),
    };
    publisher.run(task_rx).await?;
    broker.close().await;
    planning.await?;
    let seconds = started.elapsed().as_secs_f64();
    let published = state.read(|s| s.tasks_published(pool));
    // The job's dedup set at its end: one fingerprint per image.
    let mut seen: HashSet<u128> = HashSet::new();
    for i in 0..images {
        seen.insert(fingerprint(&format!("archive/{:03}/{:03}/photo-{i:08}.jpg", i / 1_000_000, (i / 1000) % 1000)));
    }
    println!(
        "fan-out: {published} tasks published with confirms in {seconds:.1} s = {:.0} tasks/s (confirm window {confirm_window}); \
         peak RSS {:.0} MB with the dedup set of {} fingerprints",
        published as f64 / seconds,
        peak_rss_mb(),
        seen.len()
    );
    setup.queue_delete(queue.as_str(), QueueDeleteOptions::default()).await?;
    for q in [settings.jobs(), settings.events(), settings.dead(), settings.dead_watch()] {
        let _ = setup.queue_delete(q.as_str(), QueueDeleteOptions::default()).await;
    }
    let _ = setup.exchange_delete(settings.dead_letter_exchange().as_str(), Default::default()).await;
    let _ = drain_connection.close(200, "done").await;
    let drained = drained.await.unwrap_or(0);
    let _ = connection.close(200, "done").await;
    eprintln!("drained {drained} tasks");
    Ok(())
}

//! `lamina run IN OUT`: the coordinator's planner and the worker's pipeline in one process,
//! joined by an in-process queue, on local folders.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::RunArgs;
use crate::report::Reporter;
use lamina_common::config::S3Settings;
use lamina_common::messages::Task;
use lamina_common::store::{self, StoreCache};
use lamina_coordinator::{plan, JobRecords, JobSpec, PlanStats, Planner, Progress, Summary};
use lamina_worker::model;
use lamina_worker::pipeline::{self, Finished, ModelClock, Work, WorkerConfig};

/// What a finished run measured.
pub struct Outcome {
    pub summary: Summary,
    /// Seconds the model was busy (forward passes), for the share of time outside it.
    pub model_seconds: f64,
    pub wall_seconds: f64,
}

pub async fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            warn!("interrupted: finishing the images in flight, then writing the summary");
            on_signal.cancel();
        }
    });
    let mut reporter = Reporter::new(&args.progress);
    let outcome = run_job(&args, &mut reporter, cancel).await?;
    reporter.finish();
    let s = &outcome.summary;
    println!(
        "{} images: {} done, {} skipped (unchanged), {} failed in {:.1}s ({:.2} images/s); records in {}/_lamina/jobs/{}",
        s.images, s.done, s.skipped, s.failed, s.seconds, s.images_per_second, args.output, s.job_id
    );
    Ok(if s.failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Runs one job to completion (or until cancelled) and writes its records.
pub async fn run_job(args: &RunArgs, reporter: &mut Reporter, cancel: CancellationToken) -> anyhow::Result<Outcome> {
    let (in_loc, out_loc) = args.locations()?;
    let s3 = S3Settings::from_env().map_err(anyhow::Error::msg)?;
    let params = args.model.params()?;
    let device = args.model.device()?;
    let model = model::load(&args.model.model, device).context("--model")?;
    model.check_params(&params)?;
    let desc = model.desc().clone();
    info!(input = %in_loc, output = %out_loc, model = %desc.id, device = %model::device_name(device),
        batch_size = args.batch_size, max_megapixels = args.max_megapixels, "starting");

    let input = store::open_input(&in_loc, &out_loc, &s3).await;
    let output = store::open(&out_loc, &s3).await;
    let spec = JobSpec::new(args.input.clone(), args.output.clone(), args.model.model.clone(), params);
    let mut records = JobRecords::create(output.clone(), &spec).await.context("cannot write the job records")?;

    let batch = usize::from(args.batch_size);
    let (task_tx, task_rx) = mpsc::channel(4 * batch + 8);
    let (result_tx, mut result_rx) = mpsc::channel(256);
    let clock = Arc::new(ModelClock::default());
    let config = WorkerConfig { max_pixels: args.max_pixels(), batch_size: batch, device };
    let stores = Arc::new(StoreCache::new(s3.clone()));
    stores.insert(&spec.input, input.clone());
    stores.insert(&spec.output, output.clone());
    // The in-process queue: tasks go straight to the pipeline, results straight back.
    let (work_tx, work_rx) = mpsc::channel(4 * batch + 8);
    let (finished_tx, mut finished_rx) = mpsc::channel::<Finished>(64);
    let worker = tokio::spawn(pipeline::run(model, config, stores, work_rx, finished_tx, clock.clone()));
    let mut task_rx: mpsc::Receiver<Task> = task_rx;
    tokio::spawn(async move {
        while let Some(task) = task_rx.recv().await {
            if work_tx.send(Work { ticket: 0, task }).await.is_err() {
                break;
            }
        }
    });
    let forward = result_tx.clone();
    tokio::spawn(async move {
        while let Some(finished) = finished_rx.recv().await {
            if forward.send(finished.result).await.is_err() {
                break;
            }
        }
    });
    let planner = Planner::for_job(&spec, input, output.clone(), desc.id.clone(), desc.weights_sha256.clone());
    let stats = Arc::new(PlanStats::default());
    let planning = {
        let stats = stats.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = plan(planner, task_tx, result_tx, stats) => {}
                _ = cancel.cancelled() => {}
            }
        })
    };

    let started_at = lamina_common::time::now_rfc3339();
    let started = Instant::now();
    let mut progress = Progress::default();
    // The channel closes once the planner and the whole pipeline have let go of it: every
    // image has reported by then.
    while let Some(result) = result_rx.recv().await {
        progress.count(result.status);
        let total = stats.images.load(Ordering::Relaxed);
        reporter.set_total(total);
        reporter.result(&result, &progress, total);
        records.record(&result).await.context("cannot append to results.jsonl")?;
    }
    let _ = planning.await;
    let _ = worker.await;
    let wall = started.elapsed().as_secs_f64();
    let summary = Summary::new(&spec, desc.id.clone(), &progress, started_at);
    let summary = records.finish(summary).await.context("cannot write summary.json")?;
    Ok(Outcome { summary, model_seconds: clock.busy_seconds(), wall_seconds: wall })
}


//! `lamina run IN OUT`: the fleet in one process. The coordinator's service (job runner,
//! result routing, records) and the worker's session (pipeline, report, ack after durable)
//! run over the in-process queue ([`MemoryBroker`]), exactly as they run over RabbitMQ in a
//! fleet: one engine, two transports.
//!
//! The model is loaded when the first image needs decomposing: a run that only renders other
//! formats from layers already stored (or skips everything) never loads it.
//!
//! Stopping: the first SIGINT or SIGTERM stops the worker taking new images; it finishes
//! what it holds, the job's summary is written marked as interrupted, and `lamina` exits
//! with 130 (SIGINT) or 143 (SIGTERM). A second signal abandons the images in hand.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::RunArgs;
use crate::report::Reporter;
use lamina_common::config::S3Settings;
use lamina_common::messages::JobSpec;
use lamina_families::ModelSpec;
use lamina_common::queue::{Broker, MemoryBroker, Topology};
use lamina_common::signal::StopSignal;
use lamina_coordinator::service::CoordinatorConfig;
use lamina_coordinator::state::Shared;
use lamina_coordinator::{JobNote, Progress, Summary};
use lamina_worker::runtime;
use lamina_worker::pipeline::{ModelClock, WorkerConfig};
use lamina_worker::service::ServiceConfig;

/// The pool of the single machine's one worker.
const POOL: &str = "default";
/// Unacknowledged tasks the in-process worker may hold (its prefetch follows throughput
/// below this, as in a fleet).
const PREFETCH: u16 = 32;
/// How long the services take to stop once the job is over.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// What a finished run measured.
pub struct Outcome {
    pub summary: Summary,
    /// Seconds the model was busy (forward passes), for the share of time outside it.
    pub model_seconds: f64,
    pub wall_seconds: f64,
    /// The signal that stopped the run early, if one did.
    pub stopped_by: Option<StopSignal>,
}

/// How a run is told to stop: the first signal (finish what is in hand), the second
/// (abandon it).
#[derive(Clone)]
pub struct Stop {
    pub first: watch::Receiver<Option<StopSignal>>,
    pub abandon: CancellationToken,
    /// Keeps `first` open when nothing else sends on it.
    _sender: Arc<watch::Sender<Option<StopSignal>>>,
}

impl Stop {
    /// Listens for SIGINT and SIGTERM.
    pub fn on_signals() -> Stop {
        let (tx, first) = watch::channel(None);
        let abandon = CancellationToken::new();
        let tx = Arc::new(tx);
        let (signals, second) = (tx.clone(), abandon.clone());
        tokio::spawn(async move { lamina_common::signal::on_signals(&signals, second).await });
        Stop { first, abandon, _sender: tx }
    }

    /// Never fires (benchmarks).
    pub fn never() -> Stop {
        let (tx, first) = watch::channel(None);
        Stop { first, abandon: CancellationToken::new(), _sender: Arc::new(tx) }
    }
}

pub async fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    let stop = Stop::on_signals();
    let signalled = stop.first.clone();
    let mut reporter = Reporter::new(&args.progress);
    let outcome = match run_job(&args, &mut reporter, stop).await {
        Ok(outcome) => outcome,
        Err(e) => {
            reporter.finish();
            // Stopped by a signal before a summary could be written: still the signal's code.
            let signal = *signalled.borrow();
            return match signal {
                Some(signal) => {
                    eprintln!("lamina: {}", format!("{e:#}").replace('\n', " "));
                    Ok(ExitCode::from(signal.exit_code()))
                }
                None => Err(e),
            };
        }
    };
    reporter.finish();
    let s = &outcome.summary;
    let records = format!("{}/_lamina/jobs/{}", args.output, s.job_id);
    if let Some(signal) = outcome.stopped_by {
        println!(
            "interrupted by {} after {} images: {} done{}, {} skipped (unchanged), {} failed in {:.1}s; records in {records}",
            signal.name(),
            s.images,
            s.done,
            s.rendered_note(),
            s.skipped,
            s.failed,
            s.seconds
        );
        return Ok(ExitCode::from(signal.exit_code()));
    }
    let ignored = match s.ignored {
        0 => String::new(),
        n => format!("; {n} other files left alone (not images, e.g. {})", s.ignored_examples.first().map_or("", String::as_str)),
    };
    println!(
        "{} images: {} done{}, {} skipped (unchanged), {} failed in {:.1}s ({:.2} images/s){ignored}; records in {records}",
        s.images, s.done, s.rendered_note(), s.skipped, s.failed, s.seconds, s.images_per_second
    );
    Ok(if s.failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Runs one job to completion (or until stopped) and writes its records.
pub async fn run_job(args: &RunArgs, reporter: &mut Reporter, stop: Stop) -> anyhow::Result<Outcome> {
    let (_, out_loc) = args.locations()?;
    let s3 = S3Settings::from_env()?;
    // An output that cannot be reached (wrong endpoint, a certificate nobody vouches for,
    // bad credentials) is a configuration error: one line, before any work.
    if let lamina_common::Location::S3 { .. } = out_loc {
        let output = lamina_common::store::open(&out_loc, &s3).await;
        output.get_opt("_lamina/jobs/.probe").await.with_context(|| format!("OUT {}", args.output))?;
    }
    let params = args.decompose.params();
    let device = args.device.device()?;
    let budget = lamina_worker::args::memory_budget(args.limits.memory.memory_budget, device);
    let layout = args.device.lane_spec()?;
    let lanes = layout.devices.len() * layout.per_device;
    // The parameter rule is checked now, from the model's description; the model itself
    // loads when an image first needs it.
    let spec = ModelSpec::parse(&args.model.model).map_err(anyhow::Error::msg).context("--model")?;
    let description = spec.describe();
    if let Some(reason) = description.unread {
        anyhow::bail!("--model: {reason}");
    }
    description.rule.check(&params).map_err(anyhow::Error::msg).context("--model")?;
    let id = description.identity.map_or_else(|| args.model.model.clone(), |i| i.id);
    info!(input = %args.input, output = %args.output, model = %id, device = %runtime::device_name(device), lanes,
        batch_size = args.limits.batch_size, max_megapixels = args.limits.max_megapixels, "starting");
    let (spec_name, model_params) = (args.model.model.clone(), params.clone());
    let devices = layout.devices.clone();
    let slot = runtime::ModelSlot::lazy(id, devices, move || {
        let loaded = runtime::load_lanes(&spec_name, &layout)?;
        loaded.first().lock().check_params(&model_params)?;
        info!(model = %loaded.desc().id, precision = %loaded.calibration().precision, "model loaded");
        Ok(Arc::new(loaded))
    });

    let mut engine = Engine::start(args, s3, device, budget, slot);
    let mut spec = JobSpec::new(args.input.clone(), args.output.clone(), args.model.model.clone(), params, args.output_args.render());
    spec.pool = POOL.to_owned();
    engine.broker.publish(&engine.broker.topology().jobs(), &spec, 0).await.context("queueing the job")?;
    let started = Instant::now();
    let (summary, stopped_by) = engine.follow(&spec, reporter, stop.clone()).await?;
    let wall = started.elapsed().as_secs_f64();
    engine.stop(stop.abandon.is_cancelled()).await;
    Ok(Outcome { summary, model_seconds: engine.clock.busy_seconds(), wall_seconds: wall, stopped_by })
}

/// The coordinator's service and a worker session over one in-process queue.
struct Engine {
    broker: Arc<dyn Broker>,
    state: Shared,
    notes: mpsc::UnboundedReceiver<JobNote>,
    clock: Arc<ModelClock>,
    coordinating: Option<tokio::task::JoinHandle<Result<(), lamina_common::queue::QueueError>>>,
    working: Option<tokio::task::JoinHandle<Result<(), lamina_worker::service::SessionError>>>,
    coordinator_stop: CancellationToken,
    worker_stop: CancellationToken,
}

impl Engine {
    fn start(args: &RunArgs, s3: S3Settings, device: tch::Device, budget: u64, slot: Arc<runtime::ModelSlot>) -> Engine {
        let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new(Topology::new("lamina")));
        let state = Shared::default();
        let (notes_tx, notes) = mpsc::unbounded_channel();
        let coordinator = CoordinatorConfig {
            s3: s3.clone(),
            max_jobs: 1,
            window: 64,
            confirm_window: 256,
            name: "lamina-run".to_owned(),
            grace: STOP_GRACE,
            notes: Some(notes_tx),
        };
        let clock = Arc::new(ModelClock::default());
        let worker = ServiceConfig {
            s3,
            pool: POOL.to_owned(),
            model: args.model.model.clone(),
            worker: WorkerConfig {
                max_pixels: args.limits.max_pixels(),
                batch_size: usize::from(args.limits.batch_size),
                device,
                memory_budget: budget,
            },
            prefetch: PREFETCH,
            // A stopped run finishes the images it holds, however long they take; a second
            // signal abandons them.
            grace: Duration::from_secs(24 * 3600),
            heartbeat: Duration::from_secs(1),
            name: "lamina-run".to_owned(),
            abort_on_key: None,
            clock: clock.clone(),
        };
        let (coordinator_stop, worker_stop) = (CancellationToken::new(), CancellationToken::new());
        let coordinating = tokio::spawn({
            let (broker, state, stop) = (broker.clone(), state.clone(), coordinator_stop.clone());
            async move { lamina_coordinator::service::serve(&coordinator, broker, state, stop).await }
        });
        let working = tokio::spawn({
            let (broker, stop) = (broker.clone(), worker_stop.clone());
            async move { lamina_worker::service::serve(&worker, slot, broker, stop).await }
        });
        Engine {
            broker,
            state,
            notes,
            clock,
            coordinating: Some(coordinating),
            working: Some(working),
            coordinator_stop,
            worker_stop,
        }
    }

    /// Shows the job's results as they come, until its summary is written; handles the
    /// stop signals. Returns the summary and the signal that stopped the job, if one did.
    async fn follow(&mut self, spec: &JobSpec, reporter: &mut Reporter, mut stop: Stop) -> anyhow::Result<(Summary, Option<StopSignal>)> {
        let mut progress = Progress::default();
        let mut stopped_by: Option<StopSignal> = None;
        let summary = loop {
            tokio::select! {
                note = self.notes.recv() => match note {
                    Some(JobNote::Result { result, listed, .. }) => {
                        progress.count(result.status);
                        reporter.set_total(listed);
                        reporter.result(&result, &progress, listed);
                    }
                    Some(JobNote::Finished { summary }) => break summary,
                    Some(JobNote::Interrupted { error, .. }) => anyhow::bail!("the job stopped: {error}"),
                    None => anyhow::bail!("the job runner stopped before the job's summary was written"),
                },
                changed = stop.first.changed(), if stopped_by.is_none() => {
                    let Ok(()) = changed else { continue };
                    let Some(signal) = *stop.first.borrow() else { continue };
                    warn!(signal = signal.name(), "stopping: finishing the images in hand, then writing the summary (again to abandon them)");
                    stopped_by = Some(signal);
                    self.worker_stop.cancel();
                }
                // The worker ended: after a stop, having finished what it held (the job ends
                // here); on its own, because its model did not load or it failed.
                ended = async { match self.working.as_mut() { Some(w) => w.await, None => std::future::pending().await } }, if self.working.is_some() => {
                    self.working = None;
                    if stopped_by.is_some() {
                        self.settle_events().await;
                        interrupt(&self.state, &spec.job_id, stopped_by);
                        continue;
                    }
                    match ended {
                        Ok(Err(lamina_worker::service::SessionError::Model(e))) => anyhow::bail!("--model: {e}"),
                        Ok(Err(e)) => anyhow::bail!("the worker stopped: {e}"),
                        Err(e) => anyhow::bail!("the worker crashed: {e}"),
                        Ok(Ok(())) => anyhow::bail!("the worker stopped before the job ended"),
                    }
                }
                _ = stop.abandon.cancelled(), if stopped_by.is_some() => {
                    warn!("stopping now: the images in hand are abandoned (their outputs are redone next time)");
                    interrupt(&self.state, &spec.job_id, stopped_by);
                    // The summary comes at once unless the runner is stuck (its store away).
                    match tokio::time::timeout(Duration::from_secs(5), finished(&mut self.notes)).await {
                        Ok(Some(summary)) => break summary,
                        _ => anyhow::bail!("stopped by a second signal before the job's summary could be written"),
                    }
                }
                // The in-process queue never fails: a coordinator that ends mid-job is a fault
                // of the engine, reported rather than waited on forever.
                ended = async { match self.coordinating.as_mut() { Some(c) => c.await, None => std::future::pending().await } }, if self.coordinating.is_some() => {
                    match ended {
                        Ok(Err(e)) => anyhow::bail!("the job runner stopped: {e}"),
                        Err(e) => anyhow::bail!("the job runner crashed: {e}"),
                        Ok(Ok(())) => anyhow::bail!("the job runner stopped before the job ended"),
                    }
                }
            }
        };
        Ok((summary, stopped_by))
    }

    /// Lets the last results reach the runner (the events queue drained) before the job is
    /// stopped, so the images the worker finished are recorded.
    async fn settle_events(&self) {
        let events = self.broker.topology().events();
        for _ in 0..100 {
            if self.broker.depth(&events).await.ok().flatten().unwrap_or(0) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// The job is over: the services stop (the worker holds nothing by now); after a second
    /// signal, without waiting for them.
    async fn stop(&mut self, now: bool) {
        self.worker_stop.cancel();
        self.coordinator_stop.cancel();
        if now {
            return;
        }
        if let Some(working) = self.working.take() {
            let _ = tokio::time::timeout(STOP_GRACE, working).await;
        }
        if let Some(coordinating) = self.coordinating.take() {
            let _ = tokio::time::timeout(STOP_GRACE, coordinating).await;
        }
    }
}

/// Ends the job now, its summary marked with the signal that stopped it.
fn interrupt(state: &Shared, job_id: &str, signal: Option<StopSignal>) {
    {
        let mut s = state.lock();
        s.interrupt(job_id, signal.map_or("signal", StopSignal::name));
    }
}

/// Waits for the job's summary, passing over the results still on their way.
async fn finished(notes: &mut mpsc::UnboundedReceiver<JobNote>) -> Option<Summary> {
    loop {
        match notes.recv().await? {
            JobNote::Finished { summary } => return Some(summary),
            JobNote::Interrupted { .. } => return None,
            JobNote::Result { .. } => {}
        }
    }
}

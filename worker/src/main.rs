//! `lamina-worker`: consumes a pool's task queue and decomposes images on this machine's
//! device. Configuration comes from flags or `LAMINA_*` variables; S3 and broker settings
//! from `LAMINA_S3_*` and `LAMINA_AMQP_*` (secrets may come from `*_FILE`).

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use lamina_common::amqp::AmqpSettings;
use lamina_common::config::S3Settings;
use lamina_common::queue::reconnecting;
use lamina_worker::metrics::METRICS;
use lamina_worker::runtime::{self, parse_devices, LaneArgs, LaneSpec};
use lamina_worker::pipeline::WorkerConfig;
use lamina_worker::service::{serve, ServiceConfig};

#[derive(Debug, Parser)]
#[command(name = "lamina-worker", version, about = "Decompose images from a Lamina task queue")]
struct Args {
    /// The worker pool (task queue) to serve: a model and GPU class.
    #[arg(long, env = "LAMINA_POOL", default_value = "default")]
    pool: String,
    /// `fscs`, `objects`, `objects-small`, `pipeline:CARD.json` or `torchscript:PATH`.
    #[arg(long, env = "LAMINA_MODEL", default_value = "fscs")]
    model: String,
    /// auto (CUDA when present), cpu, cuda, cuda:N, several (cuda:0,cuda:1) or cuda:all:
    /// one worker drives every device named, with its own inference lanes on each.
    #[arg(long, env = "LAMINA_DEVICE", default_value = "auto")]
    device: String,
    #[command(flatten)]
    lanes: LaneArgs,
    #[arg(long, env = "LAMINA_BATCH_SIZE", default_value_t = 1)]
    batch_size: u16,
    /// Most unacknowledged tasks held at once; the prefetch in force follows the measured
    /// throughput below this.
    #[arg(long, env = "LAMINA_PREFETCH", default_value_t = 32)]
    prefetch: u16,
    #[arg(long, env = "LAMINA_MAX_MEGAPIXELS", default_value_t = 64.0)]
    max_megapixels: f64,
    /// Memory one forward pass may use (e.g. 3GiB): larger images run in tiles. `auto`: 2 GiB
    /// on a CPU, 60% of the GPU's memory on CUDA.
    #[arg(long, env = "LAMINA_MEMORY_BUDGET", default_value = "auto")]
    memory_budget: String,
    /// Seconds a stopping worker may spend finishing the tasks it holds.
    #[arg(long, env = "LAMINA_DRAIN_GRACE_SECONDS", default_value_t = 25)]
    grace_seconds: u64,
    #[arg(long, env = "LAMINA_HEARTBEAT_SECONDS", default_value_t = 10)]
    heartbeat_seconds: u64,
    /// Address of `/health` and `/metrics` (Prometheus).
    #[arg(long, env = "LAMINA_METRICS_ADDR", default_value = "127.0.0.1:9091")]
    metrics: std::net::SocketAddr,
    #[arg(long, env = "LAMINA_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    lamina_common::logging::init(&args.log_format);
    lamina_worker::alloc::tune_for_inference();
    let settings = config(&args).and_then(|(c, l)| Ok((c, l, AmqpSettings::from_env()?)));
    let (config, layout, amqp) = match settings {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("lamina-worker: {e}");
            return ExitCode::from(2);
        }
    };
    info!(pool = %config.pool, model = %config.model, prefetch = config.prefetch, grace_s = config.grace.as_secs(),
        amqp = ?amqp, s3 = ?config.s3, "starting");
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else {
        eprintln!("lamina-worker: cannot start the async runtime");
        return ExitCode::from(2);
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(lamina_common::signal::on_shutdown(shutdown.clone()));
        let metrics = tokio::spawn(lamina_worker::metrics::serve(args.metrics, shutdown.clone()));
        // The model is loaded once, off the async runtime, and outlives broker reconnects.
        let spec = config.model.clone();
        let model = match tokio::task::spawn_blocking(move || runtime::load_lanes(&spec, &layout)).await {
            Ok(Ok(lanes)) => runtime::ModelSlot::loaded(Arc::new(lanes)),
            Ok(Err(e)) => {
                error!(error = %e, "cannot load the model; giving up");
                return ExitCode::from(1);
            }
            Err(e) => {
                error!(error = %e, "loading the model crashed; giving up");
                return ExitCode::from(1);
            }
        };
        // Reconnect with backoff while the broker is away; a stop request ends the process.
        let served = reconnecting("worker", &shutdown, || async {
            let broker = lamina_common::queue::connect(&amqp, &config.name).await?;
            METRICS.broker_connects.fetch_add(1, Ordering::Relaxed);
            serve(&config, model.clone(), broker, shutdown.clone()).await
        });
        lamina_common::signal::exit_code(served, metrics, "metrics endpoint", args.metrics, &shutdown).await
    })
}

fn config(args: &Args) -> Result<(ServiceConfig, LaneSpec), String> {
    let devices = parse_devices(&args.device)?;
    let device = devices.first().copied().ok_or("--device names no device")?;
    let layout = args.lanes.spec(devices)?;
    if args.max_megapixels.is_nan() || args.max_megapixels <= 0.0 {
        return Err("--max-megapixels must be positive".into());
    }
    let config = ServiceConfig {
        s3: S3Settings::from_env()?,
        pool: args.pool.clone(),
        model: args.model.clone(),
        worker: WorkerConfig {
            max_pixels: (args.max_megapixels * 1e6) as u64,
            batch_size: usize::from(args.batch_size.max(1)),
            device,
            memory_budget: memory_budget(&args.memory_budget, device).map_err(|e| format!("--memory-budget {e}"))?,
        },
        prefetch: args.prefetch.max(1),
        grace: Duration::from_secs(args.grace_seconds),
        heartbeat: Duration::from_secs(args.heartbeat_seconds.max(1)),
        name: format!("lamina-worker-{}-{}", hostname(), std::process::id()),
        abort_on_key: std::env::var("LAMINA_FAILPOINT_ABORT_ON_KEY").ok().filter(|v| !v.is_empty()),
        clock: Default::default(),
    };
    Ok((config, layout))
}

fn memory_budget(text: &str, device: tch::Device) -> Result<u64, String> {
    match text {
        "auto" => Ok(lamina_worker::pipeline::default_memory_budget(device)),
        text => lamina_common::bytes::parse(text),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "host".into())
}

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
use lamina_common::args::{LimitArgs, LogArgs, PoolArgs};
use lamina_worker::args::{memory_budget, DeviceArgs, ModelArgs};
use lamina_worker::runtime::{self, LaneSpec};
use lamina_worker::pipeline::WorkerConfig;
use lamina_worker::service::{serve, ServiceConfig};

#[derive(Debug, Parser)]
#[command(name = "lamina-worker", version, about = "Decompose images from a Lamina task queue")]
struct Args {
    #[command(flatten)]
    pool: PoolArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    limits: LimitArgs,
    /// Most unacknowledged tasks held at once; the prefetch in force follows the measured
    /// throughput below this.
    #[arg(long, env = "LAMINA_PREFETCH", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    prefetch: u16,
    /// Seconds a stopping worker may spend finishing the tasks it holds.
    #[arg(long, env = "LAMINA_DRAIN_GRACE_SECONDS", default_value_t = 25)]
    grace_seconds: u64,
    #[arg(long, env = "LAMINA_HEARTBEAT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    heartbeat_seconds: u64,
    /// Address of `/health` and `/metrics` (Prometheus).
    #[arg(long, env = "LAMINA_METRICS_ADDR", default_value = "127.0.0.1:9091")]
    metrics: std::net::SocketAddr,
    #[command(flatten)]
    log: LogArgs,
}

fn main() -> ExitCode {
    let args: Args = lamina_common::args::parse("lamina-worker");
    lamina_common::logging::init(&args.log.log_format);
    lamina_worker::alloc::tune_for_inference();
    let settings = config(&args).and_then(|(c, l)| Ok((c, l, AmqpSettings::from_env().map_err(|e| e.to_string())?)));
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
    let device = args.device.device().map_err(|e| e.to_string())?;
    let layout = args.device.lane_spec().map_err(|e| e.to_string())?;
    let config = ServiceConfig {
        s3: S3Settings::from_env().map_err(|e| e.to_string())?,
        pool: args.pool.pool.clone(),
        model: args.model.model.clone(),
        worker: WorkerConfig {
            max_pixels: args.limits.max_pixels(),
            batch_size: usize::from(args.limits.batch_size),
            device,
            memory_budget: memory_budget(args.limits.memory.memory_budget, device),
        },
        prefetch: args.prefetch,
        grace: Duration::from_secs(args.grace_seconds),
        heartbeat: Duration::from_secs(args.heartbeat_seconds),
        name: format!("lamina-worker-{}-{}", hostname(), std::process::id()),
        abort_on_key: std::env::var("LAMINA_FAILPOINT_ABORT_ON_KEY").ok().filter(|v| !v.is_empty()),
        clock: Default::default(),
    };
    Ok((config, layout))
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "host".into())
}

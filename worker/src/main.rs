//! `lamina-worker`: consumes a pool's task queue and decomposes images on this machine's
//! device. Configuration comes from flags or `LAMINA_*` variables; S3 and broker settings
//! from `LAMINA_S3_*` and `LAMINA_AMQP_*` (secrets may come from `*_FILE`).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use lamina_common::amqp::AmqpSettings;
use lamina_common::config::S3Settings;
use lamina_worker::model::parse_device;
use lamina_worker::pipeline::WorkerConfig;
use lamina_worker::service::{serve, ServiceConfig};

#[derive(Debug, Parser)]
#[command(name = "lamina-worker", version, about = "Decompose images from a Lamina task queue")]
struct Args {
    /// The worker pool (task queue) to serve: a model and GPU class.
    #[arg(long, env = "LAMINA_POOL", default_value = "default")]
    pool: String,
    /// `fscs` or `torchscript:PATH`.
    #[arg(long, env = "LAMINA_MODEL", default_value = "fscs")]
    model: String,
    /// auto (CUDA when present), cpu, cuda or cuda:N.
    #[arg(long, env = "LAMINA_DEVICE", default_value = "auto")]
    device: String,
    #[arg(long, env = "LAMINA_BATCH_SIZE", default_value_t = 1)]
    batch_size: u16,
    /// Most unacknowledged tasks held at once; the prefetch in force follows the measured
    /// throughput below this.
    #[arg(long, env = "LAMINA_PREFETCH", default_value_t = 32)]
    prefetch: u16,
    #[arg(long, env = "LAMINA_MAX_MEGAPIXELS", default_value_t = 64.0)]
    max_megapixels: f64,
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
    let config = match config(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("lamina-worker: {e}");
            return ExitCode::from(2);
        }
    };
    info!(pool = %config.pool, model = %config.model, prefetch = config.prefetch, grace_s = config.grace.as_secs(),
        amqp = ?config.amqp, s3 = ?config.s3, "starting");
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else {
        eprintln!("lamina-worker: cannot start the async runtime");
        return ExitCode::from(2);
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(lamina_common::signal::on_shutdown(shutdown.clone()));
        let metrics = tokio::spawn(lamina_worker::metrics::serve(args.metrics, shutdown.clone()));
        // Reconnect with backoff while the broker is away; a model that does not load, or a
        // stop request, ends the process.
        let mut delay = Duration::from_millis(500);
        loop {
            if metrics.is_finished() {
                error!(address = %args.metrics, "the metrics endpoint stopped (is the address in use?)");
                return ExitCode::from(2);
            }
            match serve(&config, shutdown.clone()).await {
                Ok(()) => return ExitCode::SUCCESS,
                Err(e) if shutdown.is_cancelled() => {
                    error!(error = %format!("{e:#}"), "stopped");
                    return ExitCode::SUCCESS;
                }
                Err(e) if !lost_the_broker(&e) => {
                    error!(error = %format!("{e:#}"), "giving up");
                    return ExitCode::from(1);
                }
                Err(e) => {
                    warn!(error = %format!("{e:#}"), retry_in_ms = delay.as_millis() as u64, "worker lost the broker");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return ExitCode::SUCCESS,
                    }
                    delay = (delay * 2).min(Duration::from_secs(15));
                }
            }
        }
    })
}

fn config(args: &Args) -> Result<ServiceConfig, String> {
    let device = parse_device(&args.device)?;
    if args.max_megapixels.is_nan() || args.max_megapixels <= 0.0 {
        return Err("--max-megapixels must be positive".into());
    }
    Ok(ServiceConfig {
        amqp: AmqpSettings::from_env()?,
        s3: S3Settings::from_env()?,
        pool: args.pool.clone(),
        model: args.model.clone(),
        worker: WorkerConfig {
            max_pixels: (args.max_megapixels * 1e6) as u64,
            batch_size: usize::from(args.batch_size.max(1)),
            device,
        },
        prefetch: args.prefetch.max(1),
        grace: Duration::from_secs(args.grace_seconds),
        heartbeat: Duration::from_secs(args.heartbeat_seconds.max(1)),
        name: format!("lamina-worker-{}-{}", hostname(), std::process::id()),
        abort_on_key: std::env::var("LAMINA_FAILPOINT_ABORT_ON_KEY").ok().filter(|v| !v.is_empty()),
    })
}

/// Whether an error came from the broker connection (reconnect) rather than from the model
/// or the settings (give up).
fn lost_the_broker(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<lapin::Error>() || c.is::<lamina_common::amqp::AmqpError>()) || format!("{e:#}").contains("lost the broker")
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "host".into())
}

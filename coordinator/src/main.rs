//! `lamina-coordinator`: turns job requests into tasks for the worker pools and keeps each
//! job's records. It does not link libtorch. Settings from `LAMINA_AMQP_*` and `LAMINA_S3_*`
//! (secrets may come from `*_FILE`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::info;

use lamina_common::amqp::AmqpSettings;
use lamina_common::config::S3Settings;
use lamina_common::queue::reconnecting;
use lamina_common::store::StoreCache;
use lamina_coordinator::api::access::HttpSettings;
use lamina_coordinator::api::{Api, BrokerSlot};
use lamina_coordinator::service::{serve, CoordinatorConfig};

#[derive(Debug, Parser)]
#[command(name = "lamina-coordinator", version, about = "Fan Lamina jobs out to worker pools")]
struct Args {
    /// Address of the HTTP endpoints (health, jobs, fleet, metrics).
    #[arg(long, env = "LAMINA_HTTP_ADDR", default_value = "127.0.0.1:9090")]
    http: std::net::SocketAddr,
    /// Tasks a pool holds queued or in flight, at least (grows to twice the prefetch of the
    /// pool's live workers); shared between jobs by priority, then round-robin.
    #[arg(long, env = "LAMINA_POOL_WINDOW", default_value_t = 64)]
    window: usize,
    /// Publisher confirms awaited together.
    #[arg(long, env = "LAMINA_CONFIRM_WINDOW", default_value_t = 256)]
    confirm_window: usize,
    /// Jobs planned and tracked at once.
    #[arg(long, env = "LAMINA_MAX_JOBS", default_value_t = 8)]
    max_jobs: u16,
    /// Seconds a stopping coordinator waits for its jobs to be handed back to the queue.
    #[arg(long, env = "LAMINA_DRAIN_GRACE_SECONDS", default_value_t = 10)]
    grace_seconds: u64,
    #[command(flatten)]
    log: lamina_common::args::LogArgs,
}

fn main() -> ExitCode {
    let args: Args = lamina_common::args::parse("lamina-coordinator");
    lamina_common::logging::init(&args.log.log_format);
    let http = match HttpSettings::from_env() {
        Ok(http) => http,
        Err(e) => {
            eprintln!("lamina-coordinator: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some((cert, key)) = &http.tls {
        if let Err(e) = lamina_coordinator::tls::server_config(cert, key) {
            eprintln!("lamina-coordinator: {e}");
            return ExitCode::from(2);
        }
    }
    let settings = (AmqpSettings::from_env(), S3Settings::from_env());
    let (amqp, config) = match settings {
        (Ok(amqp), Ok(s3)) => {
            let config = CoordinatorConfig {
                s3,
                max_jobs: args.max_jobs.max(1),
                window: args.window.max(1),
                confirm_window: args.confirm_window.max(1),
                name: format!("lamina-coordinator-{}", std::process::id()),
                grace: Duration::from_secs(args.grace_seconds),
                notes: None,
            };
            (amqp, config)
        }
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("lamina-coordinator: {e}");
            return ExitCode::from(2);
        }
    };
    info!(amqp = ?amqp, s3 = ?config.s3, max_jobs = config.max_jobs, window = config.window, http = %args.http, tokens = !http.tokens.is_empty(), tls = http.tls.is_some(), "starting");
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else {
        eprintln!("lamina-coordinator: cannot start the async runtime");
        return ExitCode::from(2);
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(lamina_common::signal::on_shutdown(shutdown.clone()));
        let state = lamina_coordinator::state::Shared::default();
        let slot = BrokerSlot::default();
        let stores = Arc::new(StoreCache::new(config.s3.clone()));
        let api = Api::new(state.clone(), slot.clone(), stores, Arc::new(http));
        let http = tokio::spawn(lamina_coordinator::http::serve(args.http, api, shutdown.clone()));
        // Reconnect with backoff while the broker is away; stop when told to.
        let served = reconnecting("coordinator", &shutdown, || async {
            let broker = lamina_common::queue::connect(&amqp, &config.name).await?;
            state.lock().broker_connected();
            slot.set(Some(broker.clone()));
            let served = serve(&config, broker, state.clone(), shutdown.clone()).await;
            slot.set(None);
            served
        });
        lamina_common::signal::exit_code(served, http, "HTTP endpoints", args.http, &shutdown).await
    })
}

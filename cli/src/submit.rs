//! `lamina submit`: puts a job on the broker's job queue (with a publisher confirm), or
//! submits it to the coordinator's JSON API with `--api URL`, and prints its id; with
//! `--wait`, follows it until it is over (its `summary.json`, or the API's job state).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{DecomposeArgs, ModelArgs, OutputArgs, PoolArgs};
use crate::http::Endpoint;
use lamina_common::amqp::AmqpSettings;
use lamina_common::queue;
use lamina_common::config::S3Settings;
use lamina_common::messages::JobSpec;
use lamina_common::{store, Location};
use lamina_coordinator::Summary;

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Where the images are: s3://bucket/prefix (or a folder every worker can read).
    #[arg(long, env = "LAMINA_INPUT")]
    pub input: String,
    /// Where layers, manifests and job records go.
    #[arg(long, env = "LAMINA_OUTPUT")]
    pub output: String,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub decompose: DecomposeArgs,
    #[command(flatten)]
    pub output_args: OutputArgs,
    #[command(flatten)]
    pub pool: PoolArgs,
    /// 0 to 9: a pool's free slots go to the waiting job of highest priority first.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=9))]
    pub priority: u8,
    /// Follow the job until it is finished.
    #[arg(long)]
    pub wait: bool,
    /// Submit through the coordinator's JSON API at this address (http:// or https://)
    /// instead of the broker, with the token in LAMINA_API_TOKEN (or LAMINA_API_TOKEN_FILE).
    #[arg(long, env = "LAMINA_API_URL")]
    pub api: Option<String>,
}

pub async fn main(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    for location in [&args.input, &args.output] {
        Location::parse(location)?;
    }
    let mut spec = JobSpec::new(args.input.clone(), args.output.clone(), args.model.model.clone(), args.decompose.params(), args.output_args.render());
    spec.pool = args.pool.pool.clone();
    spec.priority = args.priority;
    if let Some(url) = &args.api {
        let endpoint = Endpoint::new(url, &["LAMINA_API_TOKEN", "LAMINA_HTTP_TOKEN"])?;
        return over_api(&endpoint, &spec, args.wait).await;
    }
    let amqp_settings = AmqpSettings::from_env()?;
    let broker = queue::connect(&amqp_settings, "lamina-submit").await.context("cannot connect to the broker")?;
    broker.declare(&[&spec.pool]).await?;
    broker.publish(&broker.topology().jobs(), &spec, spec.priority).await?;
    broker.close().await;
    println!("{}", spec.job_id);
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let summary = wait(&spec).await?;
    if let Some(error) = &summary.error {
        println!("job refused: {error}");
        return Ok(ExitCode::from(1));
    }
    if summary.cancelled {
        println!("cancelled after {} images: {} done{}, {} skipped, {} failed", summary.images, summary.done, summary.rendered_note(), summary.skipped, summary.failed);
        return Ok(ExitCode::from(1));
    }
    println!(
        "{} images: {} done{}, {} skipped (unchanged), {} failed in {:.1}s",
        summary.images, summary.done, summary.rendered_note(), summary.skipped, summary.failed, summary.seconds
    );
    Ok(if summary.failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Polls the job's records until `summary.json` appears.
async fn wait(spec: &JobSpec) -> anyhow::Result<Summary> {
    let s3 = S3Settings::from_env()?;
    let output = store::open(&Location::parse(&spec.output)?, &s3).await;
    let prefix = spec.records_prefix();
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
    bar.enable_steady_tick(Duration::from_millis(200));
    loop {
        // The store may be briefly unreachable while the job runs: keep watching.
        match output.get_opt(&format!("{prefix}/summary.json")).await {
            Ok(Some(bytes)) => {
                bar.finish_and_clear();
                return serde_json::from_slice(&bytes).context("summary.json");
            }
            Ok(None) => {}
            Err(e) => {
                bar.set_message(format!("job {}: cannot read its records ({e}); retrying", spec.job_id));
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        }
        if let Ok(Some(results)) = output.get_opt(&format!("{prefix}/results.jsonl")).await {
            let lines = results.iter().filter(|&&b| b == b'\n').count();
            bar.set_message(format!("job {}: {lines} images finished", spec.job_id));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Submits `spec` to the API (retried with the same idempotency key while the coordinator
/// cannot be reached or asks to wait, so a retry never makes a second job), then follows it.
async fn over_api(endpoint: &Endpoint, spec: &JobSpec, wait: bool) -> anyhow::Result<ExitCode> {
    let body = serde_json::to_vec(spec)?;
    let key = spec.job_id.clone();
    let mut delay = Duration::from_millis(500);
    let mut tries = 0;
    let reply = loop {
        tries += 1;
        let reply = endpoint.send(hyper::Method::POST, "/api/v1/jobs", Some(body.clone()), &[("idempotency-key", &key)]).await;
        let again = match &reply {
            Err(_) => true,
            Ok(r) => matches!(r.status.as_u16(), 429 | 503) || r.status.as_u16() == 409 && r.reason().contains("still being handled"),
        };
        if !again || tries == 6 {
            break reply?;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(8));
    };
    if !reply.status.is_success() {
        anyhow::bail!("the coordinator refused the job ({}): {}", reply.status, reply.reason());
    }
    println!("{}", spec.job_id);
    if !wait {
        return Ok(ExitCode::SUCCESS);
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
    bar.enable_steady_tick(Duration::from_millis(200));
    let path = format!("/api/v1/jobs/{}", spec.job_id);
    let job = loop {
        match endpoint.send(hyper::Method::GET, &path, None, &[]).await {
            Ok(r) if r.status.is_success() => {
                let job = r.json();
                let n = |k: &str| job[k].as_u64().unwrap_or(0);
                if matches!(job["state"].as_str(), Some("finished" | "cancelled" | "failed")) {
                    break job;
                }
                bar.set_message(format!("job {}: {}, {} of {} images finished", spec.job_id, job["state"].as_str().unwrap_or("?"), n("done") + n("rendered") + n("skipped") + n("failed"), n("images")));
            }
            Ok(r) if r.status == hyper::StatusCode::NOT_FOUND => {
                anyhow::bail!("the coordinator no longer knows job {} (restarted?): its records are in {}/_lamina/jobs/{}/", spec.job_id, spec.output.trim_end_matches('/'), spec.job_id)
            }
            Ok(r) => bar.set_message(format!("job {}: {}: {}; retrying", spec.job_id, r.status, r.reason())),
            Err(e) => bar.set_message(format!("job {}: {e}; retrying", spec.job_id)),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    bar.finish_and_clear();
    let n = |k: &str| job[k].as_u64().unwrap_or(0);
    let rendered = match n("rendered") {
        0 => String::new(),
        r => format!(", {r} re-rendered from stored layers"),
    };
    match job["state"].as_str() {
        Some("failed") => {
            println!("job refused: {}", job["error"].as_str().unwrap_or("(no reason given)"));
            Ok(ExitCode::from(1))
        }
        Some("cancelled") => {
            println!("cancelled after {} images: {} done{rendered}, {} skipped, {} failed", n("done") + n("rendered") + n("skipped") + n("failed"), n("done"), n("skipped"), n("failed"));
            Ok(ExitCode::from(1))
        }
        _ => {
            println!(
                "{} images: {} done{rendered}, {} skipped (unchanged), {} failed in {:.1}s",
                n("images"),
                n("done"),
                n("skipped"),
                n("failed"),
                job["seconds"].as_f64().unwrap_or(0.0)
            );
            Ok(if n("failed") > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
    }
}

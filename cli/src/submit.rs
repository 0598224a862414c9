//! `lamina submit`: puts a job on the broker's job queue (with a publisher confirm) and
//! prints its id; with `--wait`, follows it until its `summary.json` is written.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{DecomposeArgs, ModelArgs, OutputArgs, PoolArgs};
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
}

pub async fn main(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    for location in [&args.input, &args.output] {
        Location::parse(location)?;
    }
    let amqp_settings = AmqpSettings::from_env()?;
    let mut spec = JobSpec::new(args.input.clone(), args.output.clone(), args.model.model.clone(), args.decompose.params(), args.output_args.render());
    spec.pool = args.pool.pool.clone();
    spec.priority = args.priority;
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

//! `lamina status [JOB]` and `lamina cancel JOB`: ask the coordinator how jobs and the fleet
//! are doing (progress, rate, ETA, recent failures, each worker's last heartbeat), or stop a
//! job. They use the coordinator's HTTP endpoints, or its JSON API with `--api URL`
//! (`https://` too), which is all a laptop outside the cluster needs.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use hyper::Method;
use serde_json::Value;

use crate::http::Endpoint;

/// Where the coordinator answers: its HTTP address, or its API.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// The coordinator's HTTP address (its status endpoints).
    #[arg(long, env = "LAMINA_COORDINATOR_URL", default_value = "http://127.0.0.1:9090")]
    pub coordinator: String,
    /// Use the coordinator's JSON API at this address instead (http:// or https://), with
    /// the token in LAMINA_API_TOKEN (or LAMINA_API_TOKEN_FILE).
    #[arg(long, env = "LAMINA_API_URL")]
    pub api: Option<String>,
}

impl CoordinatorArgs {
    /// The endpoint to ask, and whether it is the API.
    pub fn endpoint(&self) -> anyhow::Result<(Endpoint, bool)> {
        Ok(match &self.api {
            Some(url) => (Endpoint::new(url, &["LAMINA_API_TOKEN", "LAMINA_HTTP_TOKEN"])?, true),
            None => (Endpoint::new(&self.coordinator, &["LAMINA_HTTP_TOKEN", "LAMINA_API_TOKEN"])?, false),
        })
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One job's id; all jobs when left out.
    pub job: Option<String>,
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    /// Print the coordinator's JSON as it is.
    #[arg(long)]
    pub json: bool,
}

pub async fn main(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let (endpoint, api) = args.coordinator.endpoint()?;
    let path = match (&args.job, api) {
        (Some(id), true) => format!("/api/v1/jobs/{id}"),
        (None, true) => "/api/v1/jobs?limit=1000".to_owned(),
        (Some(id), false) => format!("/jobs/{id}"),
        (None, false) => "/jobs".to_owned(),
    };
    let body = endpoint.get(&path).await?;
    if args.json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let jobs: Vec<Value> = match serde_json::from_str::<Value>(&body)? {
        Value::Array(jobs) => jobs,
        Value::Object(page) if page.contains_key("next_cursor") => page.get("jobs").and_then(Value::as_array).cloned().unwrap_or_default(),
        one => vec![one],
    };
    if jobs.is_empty() {
        println!("no jobs");
    }
    for job in &jobs {
        let n = |k: &str| job[k].as_u64().unwrap_or(0);
        let eta = job["eta_seconds"].as_f64().map_or("-".to_owned(), |s| format!("{s:.0}s"));
        let total = if job["listing_complete"].as_bool() == Some(true) { n("images").to_string() } else { format!("{}+", n("images")) };
        let rendered = match n("rendered") {
            0 => String::new(),
            r => format!(", {r} re-rendered"),
        };
        println!(
            "{}  {:<8} {} done{rendered}, {} skipped, {} failed of {total}  {:.2} images/s  eta {eta}",
            job["job_id"].as_str().unwrap_or("?"),
            job["state"].as_str().unwrap_or("?"),
            n("done"),
            n("skipped"),
            n("failed"),
            job["images_per_second"].as_f64().unwrap_or(0.0),
        );
        for failure in job["recent_failures"].as_array().into_iter().flatten() {
            println!("    failed: {}", failure.as_str().unwrap_or(""));
        }
    }
    if let Ok(overview) = endpoint.get("/overview").await {
        let overview: Value = serde_json::from_str(&overview).unwrap_or_default();
        let dead = &overview["dead_letters"];
        if let Some(n) = dead["queue_messages"].as_u64() {
            println!("dead letters: {n} waiting (see `lamina dlq list`)");
        }
    }
    // The fleet is on the status endpoints, which the API's address serves as well.
    let fleet = endpoint.get("/fleet").await.unwrap_or_default();
    let workers: Vec<Value> = serde_json::from_str(&fleet).unwrap_or_default();
    println!("fleet: {} worker(s)", workers.len());
    for w in &workers {
        println!(
            "    {}  pool {}  {}  {:.2} images/s  {} in flight  heartbeat {:.0}s ago",
            w["worker"].as_str().unwrap_or("?"),
            w["pool"].as_str().unwrap_or("?"),
            w["device"].as_str().unwrap_or("?"),
            w["images_per_second"].as_f64().unwrap_or(0.0),
            w["in_flight"].as_u64().unwrap_or(0),
            w["seconds_since_heartbeat"].as_f64().unwrap_or(f64::NAN),
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The job to cancel.
    pub job: String,
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
}

/// `lamina cancel JOB`: the coordinator stops publishing the job's tasks, lets those already
/// queued finish, writes the job's summary (marked cancelled) and drops it.
pub async fn cancel(args: CancelArgs) -> anyhow::Result<ExitCode> {
    let (endpoint, api) = args.coordinator.endpoint()?;
    let path = if api { format!("/api/v1/jobs/{}/cancel", args.job) } else { format!("/jobs/{}/cancel", args.job) };
    let reply = endpoint.send(Method::POST, &path, None, &[]).await?;
    if !reply.status.is_success() && reply.status != hyper::StatusCode::CONFLICT {
        bail!("{path}: {}: {}", reply.status, reply.reason());
    }
    match reply.json()["state"].as_str().unwrap_or("?") {
        "cancel-requested" => println!("{}: not running on this coordinator yet; it will be cancelled when it starts", args.job),
        state => println!("{}: {state}", args.job),
    }
    Ok(ExitCode::SUCCESS)
}

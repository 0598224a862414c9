//! `lamina status [JOB]`: asks the coordinator's HTTP endpoints how jobs and the fleet are
//! doing: progress, rate, ETA, recent failures, and each worker's last heartbeat.

use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use serde_json::Value;

use lamina_common::config::secret_var;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One job's id; all jobs when left out.
    pub job: Option<String>,
    /// The coordinator's HTTP address.
    #[arg(long, env = "LAMINA_COORDINATOR_URL", default_value = "http://127.0.0.1:9090")]
    pub coordinator: String,
    /// Print the coordinator's JSON as it is.
    #[arg(long)]
    pub json: bool,
}

pub async fn main(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let path = match &args.job {
        Some(id) => format!("/jobs/{id}"),
        None => "/jobs".to_owned(),
    };
    let body = get(&args.coordinator, &path).await?;
    let fleet = get(&args.coordinator, "/fleet").await?;
    if args.json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let jobs: Vec<Value> = match serde_json::from_str::<Value>(&body)? {
        Value::Array(jobs) => jobs,
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
    if let Ok(overview) = get(&args.coordinator, "/overview").await {
        let overview: Value = serde_json::from_str(&overview).unwrap_or_default();
        let dead = &overview["dead_letters"];
        if let Some(n) = dead["queue_messages"].as_u64() {
            println!("dead letters: {n} waiting (see `lamina dlq list`)");
        }
    }
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
    /// The coordinator's HTTP address.
    #[arg(long, env = "LAMINA_COORDINATOR_URL", default_value = "http://127.0.0.1:9090")]
    pub coordinator: String,
}

/// `lamina cancel JOB`: the coordinator stops publishing the job's tasks, lets those already
/// queued finish, writes the job's summary (marked cancelled) and drops it.
pub async fn cancel(args: CancelArgs) -> anyhow::Result<ExitCode> {
    let body = request(hyper::Method::POST, &args.coordinator, &format!("/jobs/{}/cancel", args.job)).await?;
    let state: Value = serde_json::from_str(&body).unwrap_or_default();
    match state["state"].as_str().unwrap_or("?") {
        "cancel-requested" => println!("{}: not running on this coordinator yet; it will be cancelled when it starts", args.job),
        state => println!("{}: {state}", args.job),
    }
    Ok(ExitCode::SUCCESS)
}

async fn get(base: &str, path: &str) -> anyhow::Result<String> {
    request(hyper::Method::GET, base, path).await
}

/// An HTTP/1.1 request, with the bearer token from `LAMINA_HTTP_TOKEN[_FILE]` when set.
async fn request(method: hyper::Method, base: &str, path: &str) -> anyhow::Result<String> {
    let authority = base.strip_prefix("http://").context("--coordinator must be an http:// address")?.trim_end_matches('/');
    let stream = tokio::net::TcpStream::connect(authority).await.with_context(|| format!("cannot reach the coordinator at {base}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = hyper::Request::builder().method(method).uri(path).header(hyper::header::HOST, authority);
    if let Some(token) = secret_var("LAMINA_HTTP_TOKEN").map_err(anyhow::Error::msg)? {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {}", token.expose()));
    }
    let response = sender.send_request(request.body(Empty::<Bytes>::new())?).await?;
    let status = response.status();
    let body = String::from_utf8_lossy(&response.into_body().collect().await?.to_bytes()).into_owned();
    if !status.is_success() && status != hyper::StatusCode::CONFLICT {
        bail!("{base}{path}: {status}: {}", body.trim());
    }
    Ok(body)
}

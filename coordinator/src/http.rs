//! The coordinator's HTTP endpoints: the status page, health, jobs, one job, cancel, the
//! fleet, an overview for the page, Prometheus metrics, and the versioned JSON API under
//! `/api/v1` ([`crate::api`]). Binds 127.0.0.1 unless told otherwise, over TLS when a
//! certificate is configured. The API always requires a bearer token; the other endpoints
//! do once any token is configured (reading needs the `read` role, cancelling `submit`),
//! except `/health` and the page itself (a static file without data, which asks for the
//! token).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Request, State as AxumState};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::api::access::{HttpSettings, Role};
use crate::api::Api;
use crate::state::Shared;

#[derive(Clone)]
struct App {
    state: Shared,
    api: Api,
}

/// Serves until `shutdown` fires.
pub async fn serve(addr: SocketAddr, api: Api, shutdown: CancellationToken) -> std::io::Result<()> {
    let settings: Arc<HttpSettings> = api.settings.clone();
    let app = App { state: api.state.clone(), api: api.clone() };
    let router = Router::new()
        .route("/jobs", get(jobs))
        .route("/jobs/{id}", get(job))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/fleet", get(fleet))
        .route("/overview", get(overview))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(app.clone(), authorise))
        .route("/health", get(|| async { "ok\n" }))
        .route("/", get(page))
        .with_state(app)
        .merge(api.router())
        .layer(DefaultBodyLimit::max(lamina_common::amqp::MAX_MESSAGE_BYTES));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    match &settings.tls {
        Some((cert, key)) => {
            let config = crate::tls::server_config(cert, key).map_err(std::io::Error::other)?;
            tracing::info!(address = %local, tls = true, api = crate::api::BASE, "serving HTTPS");
            let listener = crate::tls::TlsListener::new(listener, config)?;
            axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await
        }
        None => {
            tracing::info!(address = %local, tls = false, api = crate::api::BASE, "serving HTTP");
            axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await
        }
    }
}

/// Once any token is configured, reading needs a `read` token and changing needs `submit`.
async fn authorise(AxumState(app): AxumState<App>, request: Request, next: Next) -> Response {
    if !app.api.settings.tokens.is_empty() {
        let role = if request.method() == Method::GET { Role::Read } else { Role::Submit };
        if let Err(response) = app.api.admit(request.headers(), role) {
            return response;
        }
    }
    next.run(request).await
}

async fn jobs(AxumState(app): AxumState<App>) -> Response {
    let jobs: Vec<_> = app.state.read(|s| s.jobs.values().cloned().collect());
    Json(jobs).into_response()
}

async fn job(AxumState(app): AxumState<App>, Path(id): Path<String>) -> Response {
    match app.state.read(|s| s.jobs.get(&id).cloned()) {
        Some(job) => Json(job).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no job {id} here\n")).into_response(),
    }
}

/// Cancels a job: 202 with the state it is in now, 409 when it already finished.
async fn cancel(AxumState(app): AxumState<App>, Path(id): Path<String>) -> Response {
    if !crate::service::is_job_id(&id) {
        return (StatusCode::BAD_REQUEST, "bad job id\n").into_response();
    }
    let mut s = app.state.lock();
    let state = s.cancel(&id);
    drop(s);
    tracing::info!(job_id = %id, state = %state, "cancel requested");
    let code = if state.is_over() { StatusCode::CONFLICT } else { StatusCode::ACCEPTED };
    (code, Json(serde_json::json!({ "job_id": id, "state": state }))).into_response()
}

/// The status page: static, it reads `/overview` every two seconds.
async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], include_str!("status.html")).into_response()
}

/// Everything the status page shows, in one read.
async fn overview(AxumState(app): AxumState<App>) -> Response {
    let s = app.state.lock();
    let mut jobs: Vec<_> = s.jobs.values().cloned().collect();
    // Running jobs first, newest first within each group (job ids are time-ordered).
    jobs.sort_by(|a, b| (!a.state.is_active(), &b.job_id).cmp(&(!b.state.is_active(), &a.job_id)));
    let body = serde_json::json!({
        "generated_at": lamina_common::time::now_rfc3339(),
        "jobs": jobs,
        "fleet": s.fleet(),
        "dead_letters": { "queue_messages": s.dead_letter_queue, "seen": s.dead_letters_task + s.dead_letters_other },
    });
    drop(s);
    Json(body).into_response()
}

async fn fleet(AxumState(app): AxumState<App>) -> Response {
    Json(app.state.read(|s| s.fleet())).into_response()
}

/// Prometheus text exposition; labels are bounded (status, pool, outcome, kind), never a
/// job id, a worker or a key. The names are listed in docs/metrics.md.
async fn metrics(AxumState(app): AxumState<App>) -> Response {
    let s = app.state.lock();
    let mut page = lamina_common::exposition::Exposition::default();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| page.metric(name, kind, help, samples);
    let one = lamina_common::exposition::Exposition::one;
    let pool = |p: &str| format!("{{pool=\"{p}\"}}");
    let active = s.jobs.values().filter(|j| j.state.is_active()).count() as f64;
    metric("lamina_coordinator_jobs_active", "gauge", "Jobs being planned or tracked.", &one(active));
    metric(
        "lamina_coordinator_jobs_finished_total",
        "counter",
        "Jobs whose summary was written, by outcome.",
        &[
            ("{outcome=\"completed\"}".into(), s.jobs_completed as f64),
            ("{outcome=\"cancelled\"}".into(), s.jobs_cancelled as f64),
            ("{outcome=\"failed\"}".into(), s.jobs_failed as f64),
        ],
    );
    let pending: Vec<(String, f64)> = s.pending_by_pool().iter().map(|(p, n)| (pool(p), *n as f64)).collect();
    metric("lamina_coordinator_images_pending", "gauge", "Images listed by running jobs and not yet reported, by pool.", &pending);
    let published: Vec<(String, f64)> = s.pools.iter().map(|(p, c)| (pool(p), c.tasks_published as f64)).collect();
    metric("lamina_coordinator_tasks_published_total", "counter", "Tasks published with a broker confirm, by pool.", &published);
    let in_flight: Vec<(String, f64)> = s.windows.iter().map(|w| (pool(&w.pool), w.in_use as f64)).collect();
    metric("lamina_coordinator_tasks_in_flight", "gauge", "Tasks published and not yet reported, by pool.", &in_flight);
    let window: Vec<(String, f64)> = s.windows.iter().map(|w| (pool(&w.pool), w.capacity as f64)).collect();
    metric("lamina_coordinator_pool_window", "gauge", "Tasks a pool may hold queued or in flight, by pool.", &window);
    metric(
        "lamina_coordinator_results_total",
        "counter",
        "Image results counted, by status.",
        &[
            ("{status=\"done\"}".into(), s.results_done as f64),
            ("{status=\"rendered\"}".into(), s.results_rendered as f64),
            ("{status=\"skipped\"}".into(), s.results_skipped as f64),
            ("{status=\"failed\"}".into(), s.results_failed as f64),
        ],
    );
    metric(
        "lamina_coordinator_dead_letters_total",
        "counter",
        "Dead-lettered messages seen, by kind.",
        &[("{kind=\"task\"}".into(), s.dead_letters_task as f64), ("{kind=\"other\"}".into(), s.dead_letters_other as f64)],
    );
    if let Some(n) = s.dead_letter_queue {
        metric("lamina_coordinator_dead_letter_queue_messages", "gauge", "Messages waiting in the dead-letter queue.", &one(n as f64));
    }
    let ready: Vec<(String, f64)> = s.pools.iter().filter_map(|(p, c)| Some((pool(p), c.queue_ready? as f64))).collect();
    metric("lamina_coordinator_task_queue_messages", "gauge", "Ready messages in the task queue, by pool.", &ready);
    metric("lamina_coordinator_messages_rejected_total", "counter", "Invalid job or event messages refused.", &one(s.messages_rejected as f64));
    let beats: Vec<(String, f64)> = s.pools.iter().map(|(p, c)| (pool(p), c.heartbeats as f64)).collect();
    metric("lamina_coordinator_heartbeats_total", "counter", "Worker heartbeats received, by pool.", &beats);
    let fleet = s.fleet();
    let mut pools: std::collections::BTreeMap<&str, (f64, f64, f64)> = s.pools.keys().map(|p| (p.as_str(), (0.0, 0.0, 0.0))).collect();
    for w in fleet.iter().filter(|w| w.seconds_since_heartbeat < 30.0) {
        let entry = pools.entry(w.heartbeat.pool.as_str()).or_default();
        entry.0 += 1.0;
        entry.1 += w.heartbeat.images_per_second;
        entry.2 = entry.2.max(w.heartbeat.oldest_unacked_seconds);
    }
    let per_pool = |f: fn(&(f64, f64, f64)) -> f64| pools.iter().map(|(p, v)| (pool(p), f(v))).collect::<Vec<_>>();
    metric("lamina_coordinator_workers", "gauge", "Workers with a heartbeat in the last 30 seconds, by pool.", &per_pool(|v| v.0));
    metric("lamina_coordinator_fleet_images_per_second", "gauge", "Images per second the live workers report, by pool.", &per_pool(|v| v.1));
    metric(
        "lamina_coordinator_oldest_unacked_task_seconds",
        "gauge",
        "Oldest task a live worker holds unacknowledged, by pool.",
        &per_pool(|v| v.2),
    );
    metric("lamina_coordinator_broker_connects_total", "counter", "Connections made to the broker.", &one(s.broker_connects as f64));
    drop(s);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], page.finish()).into_response()
}

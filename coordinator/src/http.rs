//! The coordinator's HTTP endpoints: health, jobs, one job, the fleet, Prometheus metrics.
//! Binds 127.0.0.1 unless told otherwise; with a token configured, every endpoint but
//! `/health` requires `Authorization: Bearer <token>`.

use std::fmt::Write;
use std::net::SocketAddr;

use axum::extract::{Path, Request, State as AxumState};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::state::Shared;
use lamina_common::config::Secret;

#[derive(Clone)]
struct App {
    state: Shared,
    token: Option<Secret>,
}

/// Serves until `shutdown` fires.
pub async fn serve(addr: SocketAddr, token: Option<Secret>, state: Shared, shutdown: CancellationToken) -> std::io::Result<()> {
    let app = App { state, token };
    let router = Router::new()
        .route("/jobs", get(jobs))
        .route("/jobs/{id}", get(job))
        .route("/fleet", get(fleet))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(app.clone(), authorise))
        .route("/health", get(|| async { "ok\n" }))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(address = %listener.local_addr()?, "serving HTTP");
    axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

async fn authorise(AxumState(app): AxumState<App>, request: Request, next: Next) -> Response {
    if let Some(token) = &app.token {
        let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.expose()) {
            return (StatusCode::UNAUTHORIZED, "bearer token required\n").into_response();
        }
    }
    next.run(request).await
}

async fn jobs(AxumState(app): AxumState<App>) -> Response {
    let jobs: Vec<_> = app.state.lock().map(|s| s.jobs.values().cloned().collect()).unwrap_or_default();
    Json(jobs).into_response()
}

async fn job(AxumState(app): AxumState<App>, Path(id): Path<String>) -> Response {
    match app.state.lock().ok().and_then(|s| s.jobs.get(&id).cloned()) {
        Some(job) => Json(job).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no job {id} here\n")).into_response(),
    }
}

async fn fleet(AxumState(app): AxumState<App>) -> Response {
    Json(app.state.lock().map(|s| s.fleet()).unwrap_or_default()).into_response()
}

/// Prometheus text exposition; labels are bounded (status, pool), never a job id or key.
async fn metrics(AxumState(app): AxumState<App>) -> Response {
    let Ok(s) = app.state.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let active = s.jobs.values().filter(|j| j.state == "running").count() as f64;
    metric("lamina_coordinator_jobs_active", "gauge", "Jobs being planned or tracked.", &[("", active)]);
    metric("lamina_coordinator_tasks_published_total", "counter", "Tasks published with a broker confirm.", &[("", s.tasks_published as f64)]);
    metric(
        "lamina_coordinator_results_total",
        "counter",
        "Image results counted, by status.",
        &[
            ("{status=\"done\"}", s.results_done as f64),
            ("{status=\"skipped\"}", s.results_skipped as f64),
            ("{status=\"failed\"}", s.results_failed as f64),
        ],
    );
    metric("lamina_coordinator_messages_rejected_total", "counter", "Invalid job or event messages refused.", &[("", s.messages_rejected as f64)]);
    let fleet = s.fleet();
    let mut pools: std::collections::BTreeMap<&str, (f64, f64)> = Default::default();
    for w in fleet.iter().filter(|w| w.seconds_since_heartbeat < 30.0) {
        let entry = pools.entry(w.heartbeat.pool.as_str()).or_default();
        entry.0 += 1.0;
        entry.1 += w.heartbeat.images_per_second;
    }
    let labels: Vec<(String, f64, f64)> = pools.iter().map(|(p, (n, r))| (format!("{{pool=\"{p}\"}}"), *n, *r)).collect();
    let workers: Vec<(&str, f64)> = labels.iter().map(|(l, n, _)| (l.as_str(), *n)).collect();
    let rates: Vec<(&str, f64)> = labels.iter().map(|(l, _, r)| (l.as_str(), *r)).collect();
    metric("lamina_coordinator_workers", "gauge", "Workers with a heartbeat in the last 30 seconds, by pool.", &workers);
    metric("lamina_coordinator_fleet_images_per_second", "gauge", "Images per second the live workers report, by pool.", &rates);
    drop(s);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

//! The versioned JSON API under `/api/v1`, described by `docs/openapi.json` (served at
//! `/api/v1/openapi.json`): submit a job, read one, list jobs, list a job's results, cancel.
//!
//! A job submitted here is the AMQP job message (docs/messages.md) with the server filling
//! in what it can (`schema`, `job_id`, `created_at`), checked by the same rules
//! ([`crate::service::check_job`] and the runner's refusals), then published to the jobs
//! queue with a confirm. Its `spec.json` is written to the output first: that both proves
//! the output is usable before anything is queued and makes an `Idempotency-Key` hold across
//! coordinator restarts (the key decides the job id, and a job id whose `spec.json` exists is
//! not queued twice). Every error is one line of JSON, `{"error": "..."}`.

pub mod access;
pub mod results;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State as AxumState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::runner::refusal;
use crate::service::{check_job, is_job_id};
use crate::state::{JobView, Shared};
use access::{Caller, Denied, HttpSettings, Limiter, Role};
use lamina_common::amqp::MAX_MESSAGE_BYTES;
use lamina_common::messages::{JobSpec, Status, TaskResult, JOB_SCHEMA};
use lamina_common::params::{DecomposeParams, RenderParams};
use lamina_common::queue::Broker;
use lamina_common::store::StoreCache;
use lamina_common::{Location, ServiceCause, StoreError};
use lamina_families::ModelSpec;

/// The OpenAPI document, the one description of this API.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// Where the API lives.
pub const BASE: &str = "/api/v1";

/// Items a page holds when the caller does not say, and at most.
const PAGE_DEFAULT: usize = 50;
const PAGE_MAX: usize = 1000;
/// Idempotency keys remembered in memory (the job records make them durable).
const KEYS_KEPT: usize = 100_000;
/// Longest location or model string accepted.
const MAX_FIELD: usize = 1024;

/// The broker the coordinator is connected to now, for publishing submitted jobs; empty
/// while it reconnects.
#[derive(Clone, Default)]
pub struct BrokerSlot(Arc<Mutex<Option<Arc<dyn Broker>>>>);

impl BrokerSlot {
    pub fn set(&self, broker: Option<Arc<dyn Broker>>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = broker;
    }

    fn get(&self) -> Option<Arc<dyn Broker>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// What the API's handlers share.
#[derive(Clone)]
pub struct Api {
    pub state: Shared,
    pub broker: BrokerSlot,
    pub stores: Arc<StoreCache>,
    pub settings: Arc<HttpSettings>,
    pub limiter: Arc<Limiter>,
    keys: Arc<Mutex<Keys>>,
}

/// Idempotency keys seen: `(caller scope, key)` to the job and the request's fingerprint;
/// `None` while the first request with the key is being handled.
#[derive(Default)]
struct Keys {
    map: HashMap<[u8; 32], Option<(String, [u8; 32])>>,
    order: std::collections::VecDeque<[u8; 32]>,
}

impl Api {
    pub fn new(state: Shared, broker: BrokerSlot, stores: Arc<StoreCache>, settings: Arc<HttpSettings>) -> Api {
        let limiter = Arc::new(Limiter::new(settings.rate, settings.burst));
        Api { state, broker, stores, settings, limiter, keys: Arc::default() }
    }

    /// The routes under [`BASE`].
    pub fn router(self) -> Router {
        Router::new()
            .route(&format!("{BASE}/openapi.json"), get(openapi))
            .route(&format!("{BASE}/jobs"), post(submit).get(list_jobs))
            .route(&format!("{BASE}/jobs/{{job_id}}"), get(get_job))
            .route(&format!("{BASE}/jobs/{{job_id}}/results"), get(list_results))
            .route(&format!("{BASE}/jobs/{{job_id}}/cancel"), post(cancel))
            .fallback(not_found)
            .with_state(self)
    }

    /// The caller, if its token allows `role` and its bucket is not empty.
    pub fn admit(&self, headers: &HeaderMap, role: Role) -> Result<Caller, Response> {
        let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let caller = match self.settings.tokens.admit(authorization, role) {
            Ok(caller) => caller,
            Err(Denied::Unknown) => {
                let mut response = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required (Authorization: Bearer TOKEN)");
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return Err(response);
            }
            Err(Denied::Role(held)) => {
                return Err(error(StatusCode::FORBIDDEN, &format!("this token's role ({}) may not {}", held.as_str(), match role {
                    Role::Submit => "submit or cancel jobs",
                    Role::Read => "read",
                })))
            }
        };
        if let Err(wait) = self.limiter.take(&caller.name) {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, &format!("too many requests: at most {} a second; try again shortly", self.settings.rate));
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            return Err(response);
        }
        Ok(caller)
    }
}

/// One line of JSON saying what went wrong.
pub fn error(status: StatusCode, message: &str) -> Response {
    let line = message.replace(['\n', '\r'], " ");
    (status, Json(serde_json::json!({ "error": line }))).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint: see /api/v1/openapi.json")
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// A job request over HTTP: the job message's fields, with `schema`, `job_id`,
/// `created_at`, `pool`, `priority`, `params` and `render` optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Submission {
    schema: Option<String>,
    job_id: Option<String>,
    input: String,
    output: String,
    model: String,
    pool: Option<String>,
    priority: Option<u8>,
    params: Option<DecomposeParams>,
    render: Option<RenderParams>,
    created_at: Option<String>,
}

/// What makes two requests the same job: everything but the id and the time.
fn fingerprint(spec: &JobSpec) -> [u8; 32] {
    let same = (&spec.input, &spec.output, &spec.model, &spec.pool, spec.priority, &spec.params, &spec.render);
    Sha256::digest(serde_json::to_vec(&same).unwrap_or_default()).into()
}

/// The job id an idempotency key stands for, per caller: a UUID-shaped digest.
fn keyed_job_id(scope: &[u8; 32], key: &str) -> String {
    let digest = Sha256::new().chain_update(b"lamina.api.idempotency\0").chain_update(scope).chain_update(key.as_bytes()).finalize();
    let h = hex::encode(&digest[..16]);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn key_slot(scope: &[u8; 32], key: &str) -> [u8; 32] {
    Sha256::new().chain_update(scope).chain_update(key.as_bytes()).finalize().into()
}

/// `POST /api/v1/jobs`.
async fn submit(AxumState(api): AxumState<Api>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let caller = match api.admit(&headers, Role::Submit) {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, &format!("the request body is over {MAX_MESSAGE_BYTES} bytes"))
        }
        Err(rejection) => return error(StatusCode::BAD_REQUEST, &format!("cannot read the request body: {}", rejection.body_text())),
    };
    let json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(|v| v.split(';').next()).map(str::trim);
    if json != Some("application/json") {
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "the body must be JSON (Content-Type: application/json)");
    }
    let key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(key)) if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic() || b == b' ') => Some(key.to_owned()),
        Some(_) => return error(StatusCode::BAD_REQUEST, "Idempotency-Key must be 1 to 255 visible ASCII characters"),
    };
    let submission: Submission = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("not a job request: {e}")),
    };
    for (name, value) in [("input", &submission.input), ("output", &submission.output), ("model", &submission.model)] {
        if value.len() > MAX_FIELD {
            return error(StatusCode::BAD_REQUEST, &format!("{name} is over {MAX_FIELD} bytes"));
        }
    }
    if submission.created_at.as_ref().is_some_and(|t| t.len() > 64) {
        return error(StatusCode::BAD_REQUEST, "created_at is over 64 bytes");
    }
    let mut spec = JobSpec::new(submission.input, submission.output, submission.model, submission.params.unwrap_or_default(), submission.render.unwrap_or_default());
    spec.schema = submission.schema.unwrap_or_else(|| JOB_SCHEMA.to_owned());
    spec.pool = submission.pool.unwrap_or(spec.pool);
    spec.priority = submission.priority.unwrap_or(0);
    spec.created_at = submission.created_at.unwrap_or(spec.created_at);
    match (&submission.job_id, &key) {
        (Some(id), _) => spec.job_id = id.clone(),
        (None, Some(key)) => spec.job_id = keyed_job_id(&caller.scope, key),
        (None, None) => {}
    }
    if let Err(reason) = check_job(&spec) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, &reason.to_string());
    }
    for (name, location) in [("input", &spec.input), ("output", &spec.output)] {
        if !api.settings.allow_local && matches!(Location::parse(location), Ok(Location::Local(_))) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("{name} {location:?}: the API takes s3:// locations only (the coordinator allows local folders with LAMINA_API_ALLOW_LOCAL=true)"),
            );
        }
    }
    if let Some(reason) = refusal(&spec, &ModelSpec::parse(&spec.model), &api.state) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, &reason);
    }
    let print = fingerprint(&spec);
    // An idempotency key: the same request again gets the same job.
    let slot = key.as_ref().map(|k| key_slot(&caller.scope, k));
    if let Some(slot) = slot {
        let mut keys = api.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match keys.map.get(&slot) {
            Some(None) => return error(StatusCode::CONFLICT, "a request with this Idempotency-Key is still being handled; try again"),
            Some(Some((id, seen))) if *seen == print => {
                let id = id.clone();
                drop(keys);
                return replay(&api, &id, &spec, None);
            }
            Some(Some(_)) => return error(StatusCode::UNPROCESSABLE_ENTITY, "this Idempotency-Key was used with a different request"),
            None => {
                keys.map.insert(slot, None);
                keys.order.push_back(slot);
                while keys.order.len() > KEYS_KEPT {
                    if let Some(old) = keys.order.pop_front() {
                        keys.map.remove(&old);
                    }
                }
            }
        }
    }
    let outcome = enqueue(&api, &spec, print, key.is_some()).await;
    if let Some(slot) = slot {
        let mut keys = api.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &outcome {
            Ok(_) => {
                keys.map.insert(slot, Some((spec.job_id.clone(), print)));
            }
            Err(_) => {
                keys.map.remove(&slot);
            }
        }
    }
    match outcome {
        Ok(Enqueued::New) => {
            tracing::info!(job_id = %spec.job_id, caller = %caller.name, input = %spec.input, output = %spec.output, model = %spec.model, "job submitted over the API");
            let view = api.state.read(|s| s.job(&spec.job_id)).unwrap_or_else(|| JobView::queued(&spec));
            let mut response = (StatusCode::CREATED, Json(view)).into_response();
            if let Ok(location) = HeaderValue::from_str(&format!("{BASE}/jobs/{}", spec.job_id)) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Ok(Enqueued::Existing(view)) => replay(&api, &spec.job_id, &spec, view),
        Err(response) => response,
    }
}

/// The job an earlier request with the same key made: 200, marked as a replay. Its view is
/// this coordinator's, else the one its records give (`recorded`), else queued.
fn replay(api: &Api, job_id: &str, spec: &JobSpec, recorded: Option<JobView>) -> Response {
    let view = api
        .state
        .read(|s| s.job(job_id))
        .or(recorded)
        .unwrap_or_else(|| JobView::queued(&JobSpec { job_id: job_id.to_owned(), ..spec.clone() }));
    let mut response = (StatusCode::OK, Json(view)).into_response();
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

enum Enqueued {
    New,
    /// The job's records exist already with the same request (an idempotent retry that
    /// outlived a coordinator), with the job's view when its summary is written.
    Existing(Option<JobView>),
}

/// Writes the job's `spec.json` and publishes the job.
async fn enqueue(api: &Api, spec: &JobSpec, print: [u8; 32], keyed: bool) -> Result<Enqueued, Response> {
    // A keyed retry is told apart from a clash by the records below; anything else with a
    // known id is a clash.
    if !keyed && api.state.read(|s| s.job(&spec.job_id).is_some()) {
        return Err(error(StatusCode::CONFLICT, &format!("job {} exists already", spec.job_id)));
    }
    let output = api
        .stores
        .get(&spec.output)
        .await
        .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, &format!("output: {e}")))?;
    let spec_key = format!("{}/spec.json", spec.records_prefix());
    let store_error = |e: StoreError| match &e {
        StoreError::Service { cause: ServiceCause::Client, .. } | StoreError::BadKey { .. } | StoreError::NotFound { .. } => {
            error(StatusCode::UNPROCESSABLE_ENTITY, &format!("cannot use the output {}: {e}", spec.output))
        }
        _ => {
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, &format!("cannot reach the output {} now: {e}", spec.output));
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(5));
            r
        }
    };
    if let Some(bytes) = output.get_opt(&spec_key).await.map_err(store_error)? {
        let earlier: Option<JobSpec> = serde_json::from_slice(&bytes).ok();
        if keyed && earlier.as_ref().is_some_and(|e| fingerprint(e) == print) {
            let summary = output.get_opt(&format!("{}/summary.json", spec.records_prefix())).await.ok().flatten();
            let view = summary.and_then(|b| serde_json::from_slice::<crate::Summary>(&b).ok()).map(|s| JobView::from_summary(spec, &s));
            return Ok(Enqueued::Existing(view));
        }
        return Err(error(StatusCode::CONFLICT, &format!("job {} exists already in {}", spec.job_id, spec.output)));
    }
    let json = serde_json::to_vec_pretty(spec).unwrap_or_default();
    output.put(&spec_key, json).await.map_err(store_error)?;
    let unavailable = |why: String| {
        let mut r = error(StatusCode::SERVICE_UNAVAILABLE, &why);
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(5));
        r
    };
    let Some(broker) = api.broker.get() else {
        let _ = output.delete(&spec_key).await;
        return Err(unavailable("the coordinator is reconnecting to its broker; try again shortly".to_owned()));
    };
    let queue = broker.topology().jobs();
    if let Err(e) = broker.publish(&queue, spec, spec.priority).await {
        let _ = output.delete(&spec_key).await;
        return Err(unavailable(format!("cannot queue the job: {e}")));
    }
    api.state.lock().job_submitted(spec);
    Ok(Enqueued::New)
}

/// `limit` and `cursor` from a query string; anything else is refused.
fn page_query(query: Option<&str>) -> Result<(usize, Option<String>), Response> {
    let (mut limit, mut cursor) = (PAGE_DEFAULT, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value).ok_or_else(|| error(StatusCode::BAD_REQUEST, &format!("query parameter {name}: bad percent-encoding")))?;
        match name {
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=PAGE_MAX).contains(n))
                    .ok_or_else(|| error(StatusCode::BAD_REQUEST, &format!("limit must be a whole number from 1 to {PAGE_MAX}")))?;
            }
            "cursor" => {
                if value.is_empty() || value.len() > 256 {
                    return Err(error(StatusCode::BAD_REQUEST, "cursor must be the next_cursor of an earlier page"));
                }
                cursor = Some(value);
            }
            other => return Err(error(StatusCode::BAD_REQUEST, &format!("unknown query parameter {:?} (limit and cursor are known)", lamina_common::keys::printable(other)))),
        }
    }
    Ok((limit, cursor))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn check_id(job_id: &str) -> Result<(), Response> {
    if is_job_id(job_id) {
        Ok(())
    } else {
        Err(error(StatusCode::BAD_REQUEST, "a job id is 1 to 128 letters, digits and '-'"))
    }
}

#[derive(Serialize)]
struct JobPage {
    jobs: Vec<JobView>,
    next_cursor: Option<String>,
}

/// `GET /api/v1/jobs`: newest job id first (ids made here are time-ordered).
async fn list_jobs(AxumState(api): AxumState<Api>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    if let Err(response) = api.admit(&headers, Role::Read) {
        return response;
    }
    let (limit, cursor) = match page_query(query.as_deref()) {
        Ok(q) => q,
        Err(response) => return response,
    };
    if cursor.as_deref().is_some_and(|c| !is_job_id(c)) {
        return error(StatusCode::BAD_REQUEST, "cursor must be the next_cursor of an earlier page");
    }
    let (jobs, more) = api.state.read(|s| s.jobs_page(cursor.as_deref(), limit));
    let next_cursor = more.then(|| jobs.last().map(|j| j.job_id.clone())).flatten();
    Json(JobPage { jobs, next_cursor }).into_response()
}

/// `GET /api/v1/jobs/{job_id}`.
async fn get_job(AxumState(api): AxumState<Api>, headers: HeaderMap, Path(job_id): Path<String>) -> Response {
    if let Err(response) = api.admit(&headers, Role::Read) {
        return response;
    }
    if let Err(response) = check_id(&job_id) {
        return response;
    }
    match api.state.read(|s| s.job(&job_id)) {
        Some(view) => Json(view).into_response(),
        None => error(StatusCode::NOT_FOUND, &format!("no job {job_id} on this coordinator (finished jobs are kept for a while; their records stay in the output)")),
    }
}

/// One image of a job, as the results listing shows it.
#[derive(Serialize)]
struct ImageResult {
    #[serde(flatten)]
    result: TaskResult,
    /// Where the image's outputs are: `<output>/<key>/`.
    folder: String,
    /// The full locations of the files it wrote (done, rendered) or of its manifest (skipped).
    outputs: Vec<String>,
}

#[derive(Serialize)]
struct ResultPage {
    job_id: String,
    results: Vec<ImageResult>,
    /// Where the next page starts; `null` once the job is over and every result was listed.
    /// While the job runs, the last page's cursor picks up results reported later.
    next_cursor: Option<String>,
}

/// `GET /api/v1/jobs/{job_id}/results`: the job's `results.jsonl`, a page at a time.
async fn list_results(AxumState(api): AxumState<Api>, headers: HeaderMap, Path(job_id): Path<String>, RawQuery(query): RawQuery) -> Response {
    if let Err(response) = api.admit(&headers, Role::Read) {
        return response;
    }
    if let Err(response) = check_id(&job_id) {
        return response;
    }
    let (limit, cursor) = match page_query(query.as_deref()) {
        Ok(q) => q,
        Err(response) => return response,
    };
    let from = match cursor.map(|c| c.parse::<u64>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "cursor must be the next_cursor of an earlier page"),
    };
    let Some(view) = api.state.read(|s| s.job(&job_id)) else {
        return error(StatusCode::NOT_FOUND, &format!("no job {job_id} on this coordinator"));
    };
    let store = match api.stores.get(&view.output).await {
        Ok(store) => store,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, &format!("output: {e}")),
    };
    let over = view.state.is_over();
    let prefix = format!("_lamina/jobs/{job_id}");
    let page = match results::page(&*store, &prefix, over, from, limit).await {
        Ok(page) => page,
        Err(e) => {
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, &format!("cannot read the job's results now: {e}"));
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(5));
            return r;
        }
    };
    let base = view.output.trim_end_matches('/').to_owned();
    let results = page
        .results
        .into_iter()
        .map(|result| {
            let folder = format!("{base}/{}/", result.key);
            let outputs = match result.status {
                Status::Failed => Vec::new(),
                Status::Skipped => vec![format!("{folder}{}", lamina_common::manifest::MANIFEST_FILE)],
                Status::Done | Status::Rendered => result.files.iter().map(|f| format!("{folder}{f}")).collect(),
            };
            ImageResult { result, folder, outputs }
        })
        .collect();
    let next_cursor = (!(over && page.at_end)).then(|| page.next.to_string());
    Json(ResultPage { job_id, results, next_cursor }).into_response()
}

/// `POST /api/v1/jobs/{job_id}/cancel`: 202 with the state the job is in now, 409 when it
/// already finished.
async fn cancel(AxumState(api): AxumState<Api>, headers: HeaderMap, Path(job_id): Path<String>) -> Response {
    let caller = match api.admit(&headers, Role::Submit) {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    if let Err(response) = check_id(&job_id) {
        return response;
    }
    let state = api.state.lock().cancel(&job_id);
    tracing::info!(job_id = %job_id, caller = %caller.name, state = %state, "cancel requested over the API");
    let code = if state.is_over() { StatusCode::CONFLICT } else { StatusCode::ACCEPTED };
    (code, Json(serde_json::json!({ "job_id": job_id, "state": state }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_document_is_json_and_names_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("docs/openapi.json is JSON");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
        let paths = doc["paths"].as_object().expect("paths");
        for (path, methods) in [
            ("/api/v1/openapi.json", &["get"][..]),
            ("/api/v1/jobs", &["get", "post"]),
            ("/api/v1/jobs/{job_id}", &["get"]),
            ("/api/v1/jobs/{job_id}/results", &["get"]),
            ("/api/v1/jobs/{job_id}/cancel", &["post"]),
        ] {
            let item = paths.get(path).unwrap_or_else(|| panic!("{path} is not in the document"));
            for method in methods {
                assert!(item.get(*method).is_some(), "{method} {path} is not in the document");
            }
        }
        assert_eq!(paths.len(), 5, "the document describes a route the server does not have");
    }

    #[test]
    fn a_key_names_the_same_job_for_the_same_caller_only() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(keyed_job_id(&a, "k"), keyed_job_id(&a, "k"));
        assert_ne!(keyed_job_id(&a, "k"), keyed_job_id(&b, "k"));
        assert!(is_job_id(&keyed_job_id(&a, "k")));
    }

    #[test]
    fn queries_are_checked() {
        assert_eq!(page_query(Some("limit=10&cursor=abc")).ok(), Some((10, Some("abc".to_owned()))));
        assert_eq!(page_query(None).ok(), Some((PAGE_DEFAULT, None)));
        for bad in ["limit=0", "limit=1001", "limit=x", "limit=-1", "cursor=", "other=1", "limit=%zz"] {
            assert!(page_query(Some(bad)).is_err(), "{bad}");
        }
    }
}

//! What travels between the coordinator and the workers: tasks (one image each) and their
//! results. Both are JSON with a schema tag, validated on receipt: unknown fields are refused.

use serde::{Deserialize, Serialize};

use crate::params::{DecomposeParams, RenderParams};

pub const TASK_SCHEMA: &str = "lamina.task/1";
pub const JOB_SCHEMA: &str = "lamina.job/1";
pub const EVENT_SCHEMA: &str = "lamina.event/1";

/// One image to decompose, or to render again from its stored layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub schema: String,
    pub job_id: String,
    /// The job's input location (`s3://bucket/prefix` or a local path).
    pub input: String,
    /// The job's output location.
    pub output: String,
    /// Key of the input relative to the job's input location; also names the output folder.
    pub key: String,
    pub size: u64,
    /// The content fingerprint when the listing gave one.
    pub etag: Option<String>,
    pub params: DecomposeParams,
    /// What to render from the layers (formats, cropping). Left out when the default.
    #[serde(default, skip_serializing_if = "RenderParams::is_default")]
    pub render: RenderParams,
    /// `render` when the image's stored layers are current and only its outputs need
    /// making again (the worker decomposes instead if a layer file turns out damaged).
    /// Left out when `decompose`.
    #[serde(default, skip_serializing_if = "Step::is_decompose")]
    pub step: Step,
    /// The model the job names (`fscs`, `torchscript:PATH`, ... or a model id): a worker
    /// that runs another model reports the task failed instead of running it. Absent in
    /// tasks from before this field, which any worker runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// What a task asks of a worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// Run the model, store the layers, render the outputs.
    #[default]
    Decompose,
    /// Render the outputs from the stored layers, without the model.
    Render,
}

impl Step {
    pub fn is_decompose(&self) -> bool {
        *self == Step::Decompose
    }
}

/// How one image of a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Decomposed; layers and manifest written.
    Done,
    /// A manifest with the same input, model and parameters already existed.
    Skipped,
    /// The stored layers were current; the outputs were rendered again from them (other
    /// formats asked for, or a rendered file missing) without running the model.
    Rendered,
    /// Not decomposed; `reason` says why.
    Failed,
}

/// Why an image failed, as a bounded set (for metrics labels, and for filtering results
/// without parsing reasons). The one-line `reason` beside it says the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Empty, or not an image at all.
    NotAnImage,
    /// An image whose data stops early.
    Truncated,
    /// Over the pixel limit or the model's size limit.
    TooLarge,
    /// An image format Lamina does not decode.
    Unsupported,
    /// Corrupt image data.
    Decode,
    /// The model failed or refused the image.
    Model,
    /// The layers could not be encoded.
    Encode,
    /// The input could not be read or the outputs written.
    Store,
    /// A key that could escape the output location.
    BadKey,
    /// The task names another model than the worker runs.
    WrongModel,
    /// Every worker that took the task stopped on it (or refused it as invalid).
    DeadLettered,
    /// A kind this version does not know (sent by a newer worker).
    #[serde(other)]
    Other,
}

impl FailureKind {
    pub const ALL: [FailureKind; 12] = [
        FailureKind::NotAnImage,
        FailureKind::Truncated,
        FailureKind::TooLarge,
        FailureKind::Unsupported,
        FailureKind::Decode,
        FailureKind::Model,
        FailureKind::Encode,
        FailureKind::Store,
        FailureKind::BadKey,
        FailureKind::WrongModel,
        FailureKind::DeadLettered,
        FailureKind::Other,
    ];

    /// The name in results and metric labels (`not_an_image`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::NotAnImage => "not_an_image",
            FailureKind::Truncated => "truncated",
            FailureKind::TooLarge => "too_large",
            FailureKind::Unsupported => "unsupported",
            FailureKind::Decode => "decode",
            FailureKind::Model => "model",
            FailureKind::Encode => "encode",
            FailureKind::Store => "store",
            FailureKind::BadKey => "bad_key",
            FailureKind::WrongModel => "wrong_model",
            FailureKind::DeadLettered => "dead_lettered",
            FailureKind::Other => "other",
        }
    }
}

/// One line of a job's `results.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskResult {
    pub key: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// Why it failed, as one of a bounded set (failed results only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kind: Option<FailureKind>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub layers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub psnr_db: Option<f64>,
    /// Wall time from fetch to manifest written, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ms: Option<f64>,
    /// The files this result wrote in the image's folder (`<output>/<key>/`), the manifest
    /// last; empty when nothing was written (skipped, failed).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub files: Vec<String>,
}

impl TaskResult {
    pub fn failed(key: impl Into<String>, kind: FailureKind, reason: impl Into<String>) -> TaskResult {
        TaskResult { status: Status::Failed, reason: Some(reason.into()), kind: Some(kind), ..TaskResult::skipped(key) }
    }

    pub fn skipped(key: impl Into<String>) -> TaskResult {
        TaskResult { key: key.into(), status: Status::Skipped, reason: None, kind: None, layers: None, psnr_db: None, ms: None, files: Vec::new() }
    }
}

/// What a job asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub schema: String,
    pub job_id: String,
    pub input: String,
    pub output: String,
    pub model: String,
    /// The worker pool (task queue) that runs the job.
    #[serde(default = "default_pool")]
    pub pool: String,
    /// 0 (default) to 9; higher jobs are served first.
    #[serde(default)]
    pub priority: u8,
    /// The model's parameters.
    pub params: DecomposeParams,
    /// What to render from the layers. Left out when the default (PNG layers only).
    #[serde(default, skip_serializing_if = "RenderParams::is_default")]
    pub render: RenderParams,
    pub created_at: String,
}

fn default_pool() -> String {
    "default".to_owned()
}

impl JobSpec {
    pub fn new(input: String, output: String, model: String, params: DecomposeParams, render: RenderParams) -> JobSpec {
        JobSpec {
            schema: JOB_SCHEMA.to_owned(),
            job_id: uuid::Uuid::now_v7().to_string(),
            input,
            output,
            model,
            pool: default_pool(),
            priority: 0,
            params,
            render,
            created_at: crate::time::now_rfc3339(),
        }
    }

    /// The folder of this job's records, relative to the output location.
    pub fn records_prefix(&self) -> String {
        format!("_lamina/jobs/{}", self.job_id)
    }
}


/// What workers report to the coordinator on the events queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub schema: String,
    /// The job a result belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<Heartbeat>,
}

/// A worker's periodic report of itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub worker: String,
    pub pool: String,
    pub device: String,
    pub model: String,
    pub in_flight: u64,
    pub images_per_second: f64,
    /// The prefetch in force (unacknowledged tasks the worker may hold).
    #[serde(default)]
    pub prefetch: u64,
    /// Age of the oldest task the worker holds unacknowledged.
    #[serde(default)]
    pub oldest_unacked_seconds: f64,
}

/// Why a message is not one the receiver can act on: it goes to the dead letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadMessage {
    #[error("message of {bytes} bytes is over the {cap}-byte cap")]
    TooLarge { bytes: usize, cap: usize },
    /// Not JSON, or not the message's fields (`what`: job, task).
    #[error("not a {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("unknown {what} schema {schema:?}")]
    Schema { what: &'static str, schema: String },
    /// A field that cannot be used (a location, a key, an id, a pool, a priority).
    #[error("{0}")]
    Field(String),
}

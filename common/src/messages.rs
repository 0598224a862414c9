//! What travels between the coordinator and the workers: tasks (one image each) and their
//! results. Both are JSON with a schema tag, validated on receipt: unknown fields are refused.

use serde::{Deserialize, Serialize};

use crate::params::DecomposeParams;

pub const TASK_SCHEMA: &str = "lamina.task/1";

/// One image to decompose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub schema: String,
    pub job_id: String,
    /// Key of the input relative to the job's input location; also names the output folder.
    pub key: String,
    pub size: u64,
    /// The content fingerprint when the listing gave one.
    pub etag: Option<String>,
    pub params: DecomposeParams,
}

/// How one image of a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Decomposed; layers and manifest written.
    Done,
    /// A manifest with the same input, model and parameters already existed.
    Skipped,
    /// Not decomposed; `reason` says why.
    Failed,
}

/// One line of a job's `results.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskResult {
    pub key: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub layers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub psnr_db: Option<f64>,
    /// Wall time from fetch to manifest written, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ms: Option<f64>,
}

impl TaskResult {
    pub fn failed(key: impl Into<String>, reason: impl Into<String>) -> TaskResult {
        TaskResult { key: key.into(), status: Status::Failed, reason: Some(reason.into()), layers: None, psnr_db: None, ms: None }
    }

    pub fn skipped(key: impl Into<String>) -> TaskResult {
        TaskResult { key: key.into(), status: Status::Skipped, reason: None, layers: None, psnr_db: None, ms: None }
    }
}

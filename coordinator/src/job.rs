//! A job's records under `<out>/_lamina/jobs/<job-id>/`: `spec.json` (what was asked),
//! `results.jsonl` (one line per image, appended in chunks) and `summary.json` (at the end).
//!
//! Where appending rewrites the whole object (S3 has no append), each chunk is written as
//! its own object under `results.parts/` instead, and `results.jsonl` is assembled from the
//! parts when the job ends (streamed, a multipart upload), then the parts are deleted: a
//! million-image job writes its results once or twice, not a million times over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use lamina_common::messages::{JobSpec, JOB_SCHEMA};
use lamina_common::messages::{Status, TaskResult};
use crate::Progress;
use lamina_common::retry::{retry, RetryPolicy};
use lamina_common::{ObjectStore, StoreError};

pub const SUMMARY_SCHEMA: &str = "lamina.summary/1";
/// Lines buffered before an append; bounds both memory and the number of small writes.
const CHUNK_LINES: usize = 512;
/// Longest time a result waits in the buffer.
const CHUNK_AGE: Duration = Duration::from_secs(2);
/// Failures listed in the summary (all of them are in results.jsonl).
const SUMMARY_FAILURES: usize = 100;

/// How a job ended, written to `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub schema: String,
    pub job_id: String,
    pub input: String,
    pub output: String,
    pub model: String,
    pub model_id: String,
    pub images: u64,
    pub done: u64,
    /// Images whose stored layers were current and whose outputs were rendered again from
    /// them (other formats asked for, a rendered file missing), without the model.
    #[serde(default)]
    pub rendered: u64,
    pub skipped: u64,
    pub failed: u64,
    pub started_at: String,
    pub finished_at: String,
    pub seconds: f64,
    /// Images decomposed (not skipped) per second of wall time.
    pub images_per_second: f64,
    /// The first failures, `key: reason`.
    pub failures: Vec<String>,
    /// Files in the input left alone because they are not images (by their extension).
    #[serde(default)]
    pub ignored: u64,
    /// The first few of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_examples: Vec<String>,
    /// The job was cancelled: `images` counts only what was reported before it stopped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
    /// The signal that stopped the job (`SIGINT`, `SIGTERM`), when one did; it is then also
    /// `cancelled`. Images finished before the stop are recorded and count as current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted_by: Option<String>,
    /// Why the job was refused before any image was read (its model, its parameters, or no
    /// worker for its model); no image was processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Summary {
    /// `", N re-rendered from stored layers"` when images were re-rendered, for the one-line
    /// reports; empty otherwise.
    pub fn rendered_note(&self) -> String {
        match self.rendered {
            0 => String::new(),
            n => format!(", {n} re-rendered from stored layers"),
        }
    }

    /// The summary of `spec` from its counted results; `failures` are filled in by
    /// [`JobRecords::finish`].
    pub fn new(spec: &JobSpec, model_id: String, progress: &Progress, started_at: String) -> Summary {
        let wall = progress.started.elapsed().as_secs_f64();
        Summary {
            schema: SUMMARY_SCHEMA.to_owned(),
            job_id: spec.job_id.clone(),
            input: spec.input.clone(),
            output: spec.output.clone(),
            model: spec.model.clone(),
            model_id,
            images: progress.finished(),
            done: progress.done,
            rendered: progress.rendered,
            skipped: progress.skipped,
            failed: progress.failed,
            started_at,
            finished_at: lamina_common::time::now_rfc3339(),
            seconds: (wall * 1000.0).round() / 1000.0,
            images_per_second: if wall > 0.0 { progress.done as f64 / wall } else { 0.0 },
            failures: Vec::new(),
            ignored: 0,
            ignored_examples: Vec::new(),
            cancelled: false,
            interrupted_by: None,
            error: None,
        }
    }
}

/// Writes a job's records as results arrive.
pub struct JobRecords {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    buffer: Vec<u8>,
    lines: usize,
    oldest: Option<Instant>,
    failures: Vec<String>,
    /// The next part's number, when results go to parts (stores without in-place append).
    next_part: Option<u64>,
}

impl JobRecords {
    /// Writes `spec.json` and gets ready to append results.
    pub async fn create(store: Arc<dyn ObjectStore>, spec: &JobSpec) -> Result<JobRecords, StoreError> {
        let prefix = spec.records_prefix();
        let json = serde_json::to_vec_pretty(spec).unwrap_or_default();
        store.put(&format!("{prefix}/spec.json"), json).await?;
        let next_part = (!store.appends_in_place()).then_some(0);
        Ok(JobRecords { store, prefix, buffer: Vec::new(), lines: 0, oldest: None, failures: Vec::new(), next_part })
    }

    /// The summary of an earlier run of this job that finished (the coordinator died
    /// before acknowledging the job message), if there is one.
    pub async fn finished(&self) -> Option<Summary> {
        let bytes = self.store.get_opt(&format!("{}/summary.json", self.prefix)).await.ok()??;
        serde_json::from_slice(&bytes).ok()
    }

    /// The results an earlier run of this job (a coordinator that died) already recorded,
    /// so a resumed job counts each image once. A line cut short by the crash is dropped
    /// from the file as well.
    pub async fn recorded(&mut self) -> Result<Vec<TaskResult>, StoreError> {
        let store = &self.store;
        let key = format!("{}/results.jsonl", self.prefix);
        let mut bytes = retry("read job results", RetryPolicy::default(), || store.get_opt(&key)).await?;
        if self.next_part.is_some() {
            let parts = self.parts().await?;
            match (parts.is_empty(), bytes.take()) {
                // results.jsonl was assembled and the parts deleted, but the summary is
                // missing: the file becomes part 0 again, so assembling it again keeps it.
                (true, Some(assembled)) => {
                    let first = self.part_key(0);
                    retry("write job results", RetryPolicy::default(), || store.put(&first, assembled.clone())).await?;
                    self.next_part = Some(1);
                    bytes = Some(assembled);
                }
                (true, None) => {}
                (false, _) => {
                    let mut all = Vec::new();
                    for part in &parts {
                        all.extend_from_slice(&retry("read job results", RetryPolicy::default(), || store.get(part)).await?);
                    }
                    self.next_part = Some(parts.last().and_then(|p| part_number(p)).map_or(0, |n| n + 1));
                    bytes = Some(all);
                }
            }
        }
        let Some(bytes) = bytes else { return Ok(Vec::new()) };
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < bytes.len() && self.next_part.is_none() {
            self.store.put(&key, bytes[..complete].to_vec()).await?;
        }
        let results: Vec<TaskResult> = bytes[..complete]
            .split(|&b| b == b'\n')
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect();
        for r in results.iter().filter(|r| r.status == Status::Failed).take(SUMMARY_FAILURES) {
            self.failures.push(format!("{}: {}", r.key, r.reason.as_deref().unwrap_or("failed")));
        }
        Ok(results)
    }

    fn part_key(&self, n: u64) -> String {
        format!("{}/results.parts/{n:08}.jsonl", self.prefix)
    }

    /// The parts written so far, in order.
    async fn parts(&self) -> Result<Vec<String>, StoreError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(256);
        let store = self.store.clone();
        let prefix = format!("{}/results.parts/", self.prefix);
        let lister = tokio::spawn(async move { store.list(&prefix, tx).await });
        let mut parts = Vec::new();
        while let Some(item) = rx.recv().await {
            let meta = item?;
            if part_number(&meta.key).is_some() {
                parts.push(meta.key);
            }
        }
        let _ = lister.await;
        parts.sort();
        Ok(parts)
    }

    /// Records one result; appends the buffer when it is full or old.
    pub async fn record(&mut self, result: &TaskResult) -> Result<(), StoreError> {
        if result.status == Status::Failed && self.failures.len() < SUMMARY_FAILURES {
            self.failures.push(format!("{}: {}", result.key, result.reason.as_deref().unwrap_or("failed")));
        }
        if let Ok(line) = serde_json::to_vec(result) {
            self.buffer.extend_from_slice(&line);
            self.buffer.push(b'\n');
            self.lines += 1;
        }
        let oldest = *self.oldest.get_or_insert_with(Instant::now);
        if self.lines >= CHUNK_LINES || oldest.elapsed() >= CHUNK_AGE {
            self.flush().await?;
        }
        Ok(())
    }

    /// Appends whatever is buffered (or writes it as the next part), retrying through a
    /// store outage.
    pub async fn flush(&mut self) -> Result<(), StoreError> {
        if !self.buffer.is_empty() {
            let store = &self.store;
            match self.next_part {
                Some(n) => {
                    let (key, buffer) = (self.part_key(n), &self.buffer);
                    retry("write job results", RetryPolicy::default(), || store.put(&key, buffer.clone())).await?;
                    self.next_part = Some(n + 1);
                }
                None => {
                    let (key, buffer) = (format!("{}/results.jsonl", self.prefix), &self.buffer);
                    retry("append job results", RetryPolicy::default(), || store.append(&key, buffer)).await?;
                }
            }
            self.buffer.clear();
        }
        self.lines = 0;
        self.oldest = None;
        Ok(())
    }

    /// Flushes and writes `summary.json`.
    pub async fn finish(mut self, mut summary: Summary) -> Result<Summary, StoreError> {
        self.flush().await?;
        if self.next_part.is_some() {
            let parts = self.parts().await?;
            let (store, key) = (&self.store, format!("{}/results.jsonl", self.prefix));
            retry("assemble job results", RetryPolicy::default(), || store.concat(&key, &parts)).await?;
            for part in &parts {
                // Left-over parts are harmless: the next read of a finished job ignores them.
                let _ = store.delete(part).await;
            }
        }
        summary.failures = std::mem::take(&mut self.failures);
        let json = serde_json::to_vec_pretty(&summary).unwrap_or_default();
        let (store, key) = (&self.store, format!("{}/summary.json", self.prefix));
        retry("write job summary", RetryPolicy::default(), || store.put(&key, json.clone())).await?;
        Ok(summary)
    }
}

/// The number of a part key (`.../results.parts/00000012.jsonl`).
fn part_number(key: &str) -> Option<u64> {
    key.rsplit('/').next()?.strip_suffix(".jsonl")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_common::messages::FailureKind;
    use lamina_common::params::DecomposeParams;
    use lamina_common::store::LocalStore;

    #[tokio::test]
    async fn a_resumed_job_reads_what_was_recorded_and_drops_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path()));
        let spec = JobSpec::new("in".into(), "out".into(), "fscs".into(), DecomposeParams::default(), Default::default());
        let mut first = JobRecords::create(store.clone(), &spec).await.unwrap();
        first.record(&TaskResult::skipped("a.png")).await.unwrap();
        first.record(&TaskResult::failed("b.png", FailureKind::NotAnImage, "empty file (0 bytes)")).await.unwrap();
        first.flush().await.unwrap();
        // The coordinator died in the middle of an append.
        store.append(&format!("{}/results.jsonl", spec.records_prefix()), b"{\"key\":\"c.p").await.unwrap();

        let mut again = JobRecords::create(store.clone(), &spec).await.unwrap();
        let earlier = again.recorded().await.unwrap();
        assert_eq!(earlier.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["a.png", "b.png"]);
        again.record(&TaskResult::skipped("c.png")).await.unwrap();
        again.flush().await.unwrap();
        let text = String::from_utf8(store.get(&format!("{}/results.jsonl", spec.records_prefix())).await.unwrap()).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.lines().all(|l| serde_json::from_str::<TaskResult>(l).is_ok()), "{text}");
        assert_eq!(again.failures, vec!["b.png: empty file (0 bytes)".to_owned()]);
    }

    /// A local folder that behaves like S3: no in-place append.
    #[derive(Debug)]
    struct NoAppend(LocalStore);

    #[async_trait::async_trait]
    impl ObjectStore for NoAppend {
        async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
            self.0.get(key).await
        }
        async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
            self.0.put(key, bytes).await
        }
        async fn append(&self, _key: &str, _bytes: &[u8]) -> Result<(), StoreError> {
            panic!("results must go to parts on a store without in-place append")
        }
        async fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.0.delete(key).await
        }
        async fn etag(&self, key: &str) -> Result<String, StoreError> {
            self.0.etag(key).await
        }
        async fn list(&self, prefix: &str, tx: tokio::sync::mpsc::Sender<Result<lamina_common::ObjectMeta, StoreError>>) {
            self.0.list(prefix, tx).await
        }
    }

    #[tokio::test]
    async fn without_in_place_append_results_go_to_parts_survive_a_restart_and_are_assembled_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(NoAppend(LocalStore::new(dir.path())));
        let spec = JobSpec::new("in".into(), "out".into(), "fscs".into(), DecomposeParams::default(), Default::default());
        let prefix = spec.records_prefix();
        let mut first = JobRecords::create(store.clone(), &spec).await.unwrap();
        first.record(&TaskResult::skipped("a.png")).await.unwrap();
        first.flush().await.unwrap();
        first.record(&TaskResult::failed("b.png", FailureKind::NotAnImage, "empty file (0 bytes)")).await.unwrap();
        first.flush().await.unwrap();
        assert!(store.get_opt(&format!("{prefix}/results.jsonl")).await.unwrap().is_none());
        // The coordinator dies; its successor reads both parts and goes on.
        let mut again = JobRecords::create(store.clone(), &spec).await.unwrap();
        let earlier = again.recorded().await.unwrap();
        assert_eq!(earlier.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["a.png", "b.png"]);
        again.record(&TaskResult::skipped("c.png")).await.unwrap();
        let progress = Progress::default();
        again.finish(Summary::new(&spec, "m".into(), &progress, "t".into())).await.unwrap();
        let text = String::from_utf8(store.get(&format!("{prefix}/results.jsonl")).await.unwrap()).unwrap();
        assert_eq!(text.lines().map(|l| serde_json::from_str::<TaskResult>(l).unwrap().key).collect::<Vec<_>>(), ["a.png", "b.png", "c.png"]);
        assert!(!dir.path().join(&prefix).join("results.parts").read_dir().is_ok_and(|mut d| d.next().is_some()), "parts deleted");
    }
}


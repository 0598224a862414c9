//! The planner: streams the input listing and decides each image's step: skipped (manifest
//! current and every output in place), rendered (layers current and intact, outputs to make
//! again from them), or decomposed. It hands out one task per image that needs work. The
//! listing is never held in memory: items flow through bounded channels, and at most
//! CHECK_CONCURRENCY checks (a manifest read and a listing of the image's folder) run at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::debug;

use lamina_common::keys::{check_relative, join, printable};
use std::collections::HashMap;

use lamina_common::manifest::{Manifest, Need, MANIFEST_FILE};
use lamina_common::messages::{FailureKind, Step, Task, TaskResult, TASK_SCHEMA};
use lamina_common::params::{DecomposeParams, RenderParams};
use lamina_common::{ObjectMeta, ObjectStore};

/// Manifest reads in flight at once while planning.
const CHECK_CONCURRENCY: usize = 16;
/// The extensions of images: every raster format the decoder reads, and the photo formats
/// it does not (AVIF, HEIF, JPEG XL), which are reported failed with a reason rather than
/// passed over. Everything else in the input is left alone, counted, and the first few
/// named in the job's summary.
const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "jpe", "jfif", "png", "apng", "webp", "tif", "tiff", "bmp", "dib", "gif", "tga", "icb", "vda", "vst", "ico",
    "pbm", "pgm", "ppm", "pnm", "pam", "ff", "farbfeld", "qoi", "hdr", "exr", "dds", "avif", "heic", "heif", "jxl",
];
/// Files left alone that a summary names.
pub const IGNORED_EXAMPLES: usize = 10;

/// Whether a key names an image Lamina decomposes (by extension, case-insensitive).
pub fn is_image_key(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    name.rsplit_once('.')
        .is_some_and(|(stem, ext)| !stem.is_empty() && IMAGE_EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext)))
}

/// What a job needs to plan its tasks.
#[derive(Debug, Clone)]
pub struct Planner {
    pub job_id: String,
    /// The locations as the tasks name them.
    pub input_location: String,
    pub output_location: String,
    pub input: Arc<dyn ObjectStore>,
    pub output: Arc<dyn ObjectStore>,
    pub model_id: String,
    pub weights_sha256: String,
    pub params: DecomposeParams,
    pub render: RenderParams,
    /// The model the job names, carried by every task.
    pub model: Option<String>,
}

impl Planner {
    /// The planner of `spec`, over its opened stores, for the model identity its manifests
    /// must record to count as current.
    pub fn for_job(
        spec: &lamina_common::messages::JobSpec,
        input: Arc<dyn ObjectStore>,
        output: Arc<dyn ObjectStore>,
        model_id: String,
        weights_sha256: String,
    ) -> Planner {
        Planner {
            job_id: spec.job_id.clone(),
            input_location: spec.input.clone(),
            output_location: spec.output.clone(),
            input,
            output,
            model_id,
            weights_sha256,
            params: spec.params.clone(),
            render: spec.render.clone(),
            model: Some(spec.model.clone()),
        }
    }
}

/// Counts of a plan, readable while planning.
#[derive(Debug, Default)]
pub struct PlanStats {
    /// Images listed (each gets one result).
    pub images: AtomicU64,
    /// Files listed that are not images by their extension: left alone.
    pub ignored: AtomicU64,
    /// The first [`IGNORED_EXAMPLES`] of them.
    pub ignored_examples: std::sync::Mutex<Vec<String>>,
}

impl PlanStats {
    fn ignore(&self, key: &str) {
        self.ignored.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut examples) = self.ignored_examples.lock() {
            if examples.len() < IGNORED_EXAMPLES {
                examples.push(printable(key));
            }
        }
    }
}

/// Lists the input and sends a task per image to `tasks`, or a result straight to `results`
/// when the image is skipped or its key is refused. Every listed image gets exactly one of
/// the two. Returns when the listing is exhausted.
pub async fn plan(planner: Planner, tasks: mpsc::Sender<Task>, results: mpsc::Sender<TaskResult>, stats: Arc<PlanStats>) {
    let (list_tx, mut list_rx) = mpsc::channel(1024);
    let input = planner.input.clone();
    let lister = tokio::spawn(async move { input.list("", list_tx).await });
    let planner = Arc::new(planner);
    let mut checks = JoinSet::new();
    while let Some(item) = list_rx.recv().await {
        let meta = match item {
            Ok(meta) if is_image_key(&meta.key) => meta,
            Ok(meta) => {
                stats.ignore(&meta.key);
                continue;
            }
            Err(e) => {
                // A folder that cannot be read is reported like a failed image.
                stats.images.fetch_add(1, Ordering::Relaxed);
                let _ = results.send(TaskResult::failed(e.to_string(), FailureKind::Store, "cannot list")).await;
                continue;
            }
        };
        stats.images.fetch_add(1, Ordering::Relaxed);
        while checks.len() >= CHECK_CONCURRENCY {
            checks.join_next().await;
        }
        let (planner, tasks, results) = (planner.clone(), tasks.clone(), results.clone());
        checks.spawn(async move {
            let outcome = check(&planner, meta).await;
            match outcome {
                Ok(task) => {
                    let _ = tasks.send(task).await;
                }
                Err(result) => {
                    let _ = results.send(result).await;
                }
            }
        });
    }
    while checks.join_next().await.is_some() {}
    let _ = lister.await;
}

/// A task for `meta`, or the result that makes one unnecessary (skipped or refused).
async fn check(planner: &Planner, meta: ObjectMeta) -> Result<Task, TaskResult> {
    if let Err(e) = check_relative(&meta.key) {
        return Err(TaskResult::failed(printable(&meta.key), FailureKind::BadKey, e.to_string()));
    }
    let step = match current_manifest(planner, &meta).await {
        None => Step::Decompose,
        Some(manifest) => match manifest.needs(&present(planner, &meta.key).await, &planner.render) {
            Need::Nothing => {
                debug!(key = %meta.key, "skipped: manifest is current");
                return Err(TaskResult::skipped(meta.key));
            }
            Need::Render => Step::Render,
            Need::Decompose => {
                debug!(key = %meta.key, "a layer file is missing or damaged: decomposing again");
                Step::Decompose
            }
        },
    };
    Ok(Task {
        schema: TASK_SCHEMA.to_owned(),
        job_id: planner.job_id.clone(),
        input: planner.input_location.clone(),
        output: planner.output_location.clone(),
        key: meta.key,
        size: meta.size,
        etag: meta.etag,
        params: planner.params.clone(),
        render: planner.render.clone(),
        step,
        model: planner.model.clone(),
    })
}

/// The files in an image's output folder and their sizes: one listing (a single request on
/// S3 for a folder of a few files). A listing that fails reads as an empty folder, so the
/// image is decomposed again: always correct, never stale.
async fn present(planner: &Planner, key: &str) -> HashMap<String, u64> {
    let prefix = format!("{key}/");
    let (tx, mut rx) = mpsc::channel(64);
    let output = planner.output.clone();
    let lister = {
        let prefix = prefix.clone();
        tokio::spawn(async move { output.list(&prefix, tx).await })
    };
    let mut files = HashMap::new();
    while let Some(item) = rx.recv().await {
        match item {
            Ok(meta) => {
                if let Some(name) = meta.key.strip_prefix(&prefix) {
                    files.insert(name.to_owned(), meta.size);
                }
            }
            Err(_) => {
                files.clear();
                break;
            }
        }
    }
    drop(rx);
    let _ = lister.await;
    files
}

/// The image's manifest, when it records this very input, model and model parameters. Any
/// doubt (unreadable or foreign manifest) means "not current": the image is redone.
async fn current_manifest(planner: &Planner, meta: &ObjectMeta) -> Option<Manifest> {
    let key = join(&meta.key, MANIFEST_FILE).ok()?;
    let bytes = planner.output.get_opt(&key).await.ok()??;
    let manifest = serde_json::from_slice::<Manifest>(&bytes).ok()?;
    if manifest.input.size != meta.size {
        return None;
    }
    let etag = match &meta.etag {
        Some(etag) => etag.clone(),
        None => planner.input.etag(&meta.key).await.ok()?,
    };
    manifest.matches(&etag, &planner.model_id, &planner.weights_sha256, &planner.params).then_some(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_image_extensions() {
        for key in ["a.jpg", "b/c.JPEG", "x.png", "y.webp", "z.tif", "z.TIFF", "q.bmp", "g.gif", "t.tga", "i.ico", "p.ppm", "f.ff", "q.qoi", "h.hdr", "e.exr"] {
            assert!(is_image_key(key), "{key}");
        }
        for key in ["notes.txt", "png", "dir.png/readme", ".png", "a.pngx"] {
            assert!(!is_image_key(key), "{key}");
        }
    }
}

//! The planner: streams the input listing, skips images whose manifest is current, and hands
//! out one task per remaining image. The listing is never held in memory: items flow through
//! bounded channels, and at most CHECK_CONCURRENCY manifest checks run at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::debug;

use lamina_common::keys::{check_relative, join, printable};
use lamina_common::manifest::{Manifest, MANIFEST_FILE};
use lamina_common::messages::{FailureKind, Task, TaskResult, TASK_SCHEMA};
use lamina_common::params::DecomposeParams;
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
    if current_manifest(planner, &meta).await {
        debug!(key = %meta.key, "skipped: manifest is current");
        return Err(TaskResult::skipped(meta.key));
    }
    Ok(Task {
        schema: TASK_SCHEMA.to_owned(),
        job_id: planner.job_id.clone(),
        input: planner.input_location.clone(),
        output: planner.output_location.clone(),
        key: meta.key,
        size: meta.size,
        etag: meta.etag,
        params: planner.params.clone(),
        model: planner.model.clone(),
    })
}

/// Whether the image's manifest records this very input, model and parameters. Any doubt
/// (unreadable or foreign manifest) means "not current": the image is redone.
async fn current_manifest(planner: &Planner, meta: &ObjectMeta) -> bool {
    let Ok(key) = join(&meta.key, MANIFEST_FILE) else { return false };
    let Ok(Some(bytes)) = planner.output.get_opt(&key).await else { return false };
    let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) else { return false };
    if manifest.input.size != meta.size {
        return false;
    }
    let etag = match &meta.etag {
        Some(etag) => etag.clone(),
        None => match planner.input.etag(&meta.key).await {
            Ok(etag) => etag,
            Err(_) => return false,
        },
    };
    manifest.matches(&etag, &planner.model_id, &planner.weights_sha256, &planner.params)
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

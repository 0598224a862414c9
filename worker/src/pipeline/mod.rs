//! The worker pipeline: four stages joined by bounded channels, so that downloads, decoding
//! and encoding overlap with inference and memory stays bounded whatever the job's size.
//!
//! ```text
//! tasks -> fetch+decode (async I/O, decode on the blocking pool, FETCH_CONCURRENCY at once)
//!       -> [decoded: 2 x batch x lanes] -> inference (a batcher thread, and one thread per
//!                                          lane: a model replica on a device)
//!       -> [inferred: 2]          -> encode (rayon, all cores) + write layers, preview, manifest
//!       -> results
//! ```
//! Capacities: the decoded channel holds two batches per lane so no lane waits for its next
//! batch, and no more (each decoded 1024^2 image is 16 MB of floats); decoded pixels in
//! flight are also bounded to twice the largest allowed image. The inferred channel holds
//! two images so encoding one never stalls the model. An image's layers travel as bands of
//! full-width rows (one band for an image that ran whole, a row of tiles at a time for a
//! large one), each streamed into its PNG encoders as it arrives, so no stage after the
//! model holds a whole layer of a large image.
//! A task's result is sent only after its manifest is written (ack after durable).

mod batch;
mod fetch;
mod infer;
mod render;
mod write;

pub use batch::{bucket_side, decompose_stacked};
pub use render::{render, Rendering};

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::decode::Decoded;
use crate::runtime::{ModelDesc, SharedModel};
use lamina_common::manifest::Timings;
use lamina_common::messages::{Task, TaskResult};
use lamina_common::store::StoreCache;
use lamina_common::ObjectStore;

/// Downloads and decodes in flight at once: enough to hide object-store latency.
const FETCH_CONCURRENCY: usize = 4;
/// Images encoded and written at once (each encode itself fans out over all cores).
const WRITE_CONCURRENCY: usize = 2;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Images larger than this many pixels are refused from their header.
    pub max_pixels: u64,
    /// Most images per forward pass (images of one size bucket and the same parameters).
    pub batch_size: usize,
    /// Where inference runs, for manifests and logs.
    pub device: tch::Device,
    /// Bytes one forward pass may use: larger images run in tiles, and batches hold only
    /// as many images as fit.
    pub memory_budget: u64,
}

/// The default memory budget for a device: 2 GiB on a CPU, 60% of a GPU's memory.
pub fn default_memory_budget(device: tch::Device) -> u64 {
    match device {
        tch::Device::Cuda(_) => crate::runtime::gpu_memory(device).map_or(8 << 30, |(_, _, total)| total / 10 * 6),
        _ => 2 << 30,
    }
}

/// A task and the ticket its result carries back (the queue delivery to acknowledge).
#[derive(Debug)]
pub struct Work {
    pub ticket: u64,
    pub task: Task,
}

/// A task's result, sent only once its outputs are durable.
#[derive(Debug)]
pub struct Finished {
    pub ticket: u64,
    pub job_id: String,
    pub result: TaskResult,
}

impl Finished {
    fn new(ticket: u64, task: &Task, result: TaskResult) -> Finished {
        Finished { ticket, job_id: task.job_id.clone(), result }
    }
}

/// An image between stages.
struct Item {
    ticket: u64,
    task: Task,
    output: Arc<dyn ObjectStore>,
    started: Instant,
    etag: String,
    image: Arc<Decoded>,
    timings: Timings,
    /// The image's span (`job_id`, `key`): every stage logs inside it.
    span: tracing::Span,
    /// This image's share of the decoded-pixel budget, given back when the item is done.
    _room: tokio::sync::OwnedSemaphorePermit,
}

/// An image whose layers are on their way: what they are made of, then the layers
/// themselves in bands.
struct Inferred {
    item: Item,
    sources: Vec<Vec<usize>>,
    palette: Option<Vec<[u8; 3]>>,
    /// Each model layer's role and words, where the model reports them (design models).
    labels: Vec<lamina_common::manifest::LayerLabel>,
    bands: mpsc::Receiver<Band>,
    /// Where and in which precision it ran (for the manifest).
    device: tch::Device,
    precision: crate::runtime::Precision,
}

/// What follows an [`Inferred`] image, in order: its layers' rows top to bottom, then
/// `Done` (or `Failed` when the model fails part way).
enum Band {
    /// The next rows of every layer, 8-bit straight RGBA, one buffer per layer.
    Rows(Vec<Vec<u8>>),
    Done { inference_ms: f64 },
    Failed(String),
}

/// Counters of model time, for benchmarks and the share of wall time outside the model.
#[derive(Debug, Default)]
pub struct ModelClock {
    busy_ns: std::sync::atomic::AtomicU64,
}

impl ModelClock {
    fn add(&self, d: std::time::Duration) {
        self.busy_ns.fetch_add(d.as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Total time spent inside the model, in seconds.
    pub fn busy_seconds(&self) -> f64 {
        self.busy_ns.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9
    }
}

/// Runs the pipeline until `tasks` is closed and drained; every task yields exactly one
/// result on `results`. The model moves onto a dedicated inference thread.
pub async fn run(
    model: SharedModel,
    config: WorkerConfig,
    stores: Arc<StoreCache>,
    tasks: mpsc::Receiver<Work>,
    results: mpsc::Sender<Finished>,
    clock: Arc<ModelClock>,
) {
    // Encoding runs on rayon's global pool: start its threads now, not lazily under the
    // memory pressure of the first large image (where a thread that cannot start panics).
    if let Err(e) = rayon::ThreadPoolBuilder::new().build_global() {
        tracing::debug!(error = %e, "rayon's pool was already running");
    }
    let _ = rayon::current_num_threads();
    let desc: ModelDesc = model.desc().clone();
    let batch = config.batch_size.max(1);
    let budget = config.memory_budget;
    // Two batches per lane wait decoded, so every lane finds its next batch ready.
    let (decoded_tx, decoded_rx) = mpsc::channel(2 * batch * model.lanes().len());
    let (inferred_tx, inferred_rx) = mpsc::channel(2);
    let fetcher = tokio::spawn(fetch::run(stores, config.clone(), desc.clone(), tasks, decoded_tx, results.clone()));
    let infer_results = results.clone();
    let inference = std::thread::Builder::new()
        .name("lamina-inference".into())
        .spawn(move || infer::run(model, batch, budget, decoded_rx, inferred_tx, infer_results, clock));
    let writer = write::run(desc, inferred_rx, results);
    writer.await;
    let _ = fetcher.await;
    if let Ok(handle) = inference {
        let _ = tokio::task::spawn_blocking(move || handle.join()).await;
    }
}

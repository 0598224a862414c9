//! Stage 2: inference. One batcher thread groups ready images into batches and prepares
//! their input on the host; one thread per lane (a model replica on a device, see
//! `model/lanes.rs`) takes the next batch, runs the model and quantises the layers to 8-bit
//! RGBA on the device (so only bytes cross back to the host).
//!
//! ```text
//! decoded -> batcher (size buckets, memory fit, pad + stack + pin on the host)
//!         -> [work: one per lane] -> lane 0 (device 0) \
//!                                 -> lane 1 (device 0)  -> inferred
//!                                 -> lane 2 (device 1) /
//! ```
//! While a lane runs its forward pass, the batcher prepares the next batch and the other
//! lanes copy inputs in and layers out, so host work and copies overlap the device's work.
//!
//! **Size buckets.** A batch holds images of the same *bucket*: each padded side rounded up
//! to a step of an eighth of its octave (at most 12.5% of padding a side; never finer than
//! the model's size multiple), so images of an archive of mixed sizes still share forward
//! passes. Images are padded to the bucket by repeating their edge pixels, and each image's
//! global statistics are taken over its own pixels, so a batched image's layers lie within
//! 1/255 of its unbatched ones (tested). Models whose result depends on the whole padded
//! frame (object models resize their input) batch only images of one size. A bucket whose
//! batch of two would not fit the memory budget is not used: such images pad only to the
//! size multiple.
//!
//! **Memory.** A batch holds only as many images as fit the budget together, by the
//! footprint measured at start-up (`model/calibrate.rs`). An image that needs more than the
//! budget alone, or that fast mode reduces, runs alone through `Model::decompose_large`
//! (tiles), or is refused with the reason when the model cannot tile. Should the device run
//! out of memory anyway, the batch is split and retried one image at a time, and an image
//! that fails alone runs again in tiles of a quarter of what it was thought to need.
//!
//! A batch holds only images with the same parameters: a pool worker serves several jobs at
//! once, and a model runs a whole batch with one set of parameters. Batching changes how
//! fast an image is done, never what is written beyond that 1/255.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tch::Device;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::batch::{bucket, infer, padded, prepare, split_batch, Input};
use super::{fetch::ms, Band, Finished, Inferred, Item, ModelClock};
use crate::runtime::calibrate::Calibration;
use crate::runtime::{device_name, runs_large, whole_bytes, Lane, LayerSink, Model, ModelDesc, ModelError, Precision, SharedModel};
use lamina_common::messages::{FailureKind, TaskResult};

/// Runs the batcher on this thread and one thread per lane, until `decoded` closes.
pub(super) fn run(
    lanes: SharedModel,
    batch_size: usize,
    budget: u64,
    decoded: mpsc::Receiver<Item>,
    inferred: mpsc::Sender<Inferred>,
    results: mpsc::Sender<Finished>,
    clock: Arc<ModelClock>,
) {
    quiet_lane_panics();
    let desc = lanes.desc().clone();
    let calibration = lanes.calibration().clone();
    // Models size their tiles from their own figure; hand them the budget that figure and
    // the measured footprint agree on.
    // Lanes on one device run at once: each batch gets that device's share of the budget.
    let per_device = (lanes.lanes().len() / lanes.devices().len().max(1)).max(1) as u64;
    let budget = budget / per_device;
    let model_budget = calibration.model_budget(&desc, budget);
    let pin = lanes.first().device;
    let (work_tx, work_rx) = sync_channel::<Unit>(lanes.lanes().len());
    // Each lane holds the receiver while it runs: should every lane stop, the receiver goes
    // and the batcher stops too instead of waiting for a taker.
    let work_rx = Arc::new(Mutex::new(work_rx));
    std::thread::scope(|scope| {
        for (index, lane) in lanes.lanes().iter().enumerate() {
            let (work_rx, inferred, results, clock) = (work_rx.clone(), inferred.clone(), results.clone(), clock.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("lamina-lane-{index}"))
                .spawn_scoped(scope, move || run_lane(index, lane, &work_rx, model_budget, &inferred, &results, &clock));
            if let Err(e) = spawned {
                warn!(lane = index, error = %e, "cannot start an inference lane");
            }
        }
        drop(work_rx);
        let batcher = Batcher { desc: &desc, calibration: &calibration, batch_size, budget, model_budget, pin: pin.is_cuda().then_some(pin) };
        batcher.run(decoded, work_tx, &results);
    });
}

/// What a lane is handed.
enum Unit {
    /// Images that share a forward pass at `shape`; on a GPU with their input already
    /// padded, stacked and pinned on the host.
    Batch { items: Vec<Item>, shape: (i64, i64), input: Option<Input> },
    /// One image for `Model::decompose_large`.
    Large(Item),
}

struct Batcher<'a> {
    desc: &'a ModelDesc,
    calibration: &'a Calibration,
    batch_size: usize,
    budget: u64,
    model_budget: u64,
    /// The GPU to pin host buffers for (None on a CPU).
    pin: Option<Device>,
}

impl Batcher<'_> {
    fn run(&self, mut decoded: mpsc::Receiver<Item>, work: SyncSender<Unit>, results: &mpsc::Sender<Finished>) {
        let mut pending: Vec<Item> = Vec::new();
        loop {
            if pending.is_empty() {
                match decoded.blocking_recv() {
                    Some(item) => pending.push(item),
                    None => return,
                }
            }
            while pending.len() < 4 * self.batch_size {
                match decoded.try_recv() {
                    Ok(item) => pending.push(item),
                    Err(_) => break,
                }
            }
            let unit = self.next(&mut pending);
            if let Err(std::sync::mpsc::SendError(unit)) = work.send(unit) {
                // Every lane has stopped (none could start, or all failed): each image still
                // gets its one result.
                let items = match unit {
                    Unit::Batch { items, .. } => items,
                    Unit::Large(item) => vec![item],
                };
                for item in items {
                    let reason = "no inference lane is running (the worker's log says why)";
                    item.span.in_scope(|| warn!(reason, "image not run"));
                    let failed = TaskResult::failed(item.task.key.clone(), FailureKind::Model, reason);
                    if results.blocking_send(Finished::new(item.ticket, &item.task, failed)).is_err() {
                        return;
                    }
                }
            }
        }
    }

    fn large(&self, item: &Item) -> bool {
        runs_large(self.desc, item.image.width, item.image.height, &item.task.params, self.model_budget)
    }

    /// The oldest image leads; ready images of its bucket and parameters join it, as many as
    /// fit the memory budget together.
    fn next(&self, pending: &mut Vec<Item>) -> Unit {
        if self.large(&pending[0]) {
            return Unit::Large(pending.remove(0));
        }
        let lead = &pending[0];
        let shape = bucket(self.desc, self.calibration, self.budget, lead.image.height, lead.image.width);
        let fit = (self.budget / self.calibration.image_bytes(self.desc, shape.1 as u32, shape.0 as u32).max(1)).max(1) as usize;
        let joins = |lead: &Item, item: &Item| {
            bucket(self.desc, self.calibration, self.budget, item.image.height, item.image.width) == shape
                && lead.task.params == item.task.params
                && !self.large(item)
        };
        let (batch, rest) = split_batch(std::mem::take(pending), self.batch_size.min(fit), joins);
        *pending = rest;
        // Alone, an image needs no more padding than its size multiple.
        let shape = if batch.len() == 1 { padded(self.desc, &batch[0]) } else { shape };
        debug!(images = batch.len(), waiting = pending.len(), height = shape.0, width = shape.1, "batch");
        let input = self.pin.filter(|_| batch.len() > 1).map(|device| prepare(&batch, shape, Some(device)));
        Unit::Batch { items: batch, shape, input }
    }
}

/// A lane's thread: takes units until the batcher stops.
fn run_lane(
    index: usize,
    lane: &Lane,
    work: &Arc<Mutex<Receiver<Unit>>>,
    budget: u64,
    inferred: &mpsc::Sender<Inferred>,
    results: &mpsc::Sender<Finished>,
    clock: &ModelClock,
) {
    // This thread owns its model while it runs (see `SharedModel`).
    let model = lane.lock();
    let ctx = LaneCtx { model: &**model, index, budget, inferred, results, clock };
    loop {
        let unit = match work.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(unit) => unit,
            Err(_) => return,
        };
        let going = match unit {
            Unit::Large(item) => ctx.large(item, budget),
            Unit::Batch { items, shape, input } => ctx.batch(items, shape, input),
        };
        if !going {
            return;
        }
    }
}

/// What a lane works with.
struct LaneCtx<'a> {
    model: &'a dyn Model,
    index: usize,
    budget: u64,
    inferred: &'a mpsc::Sender<Inferred>,
    results: &'a mpsc::Sender<Finished>,
    clock: &'a ModelClock,
}

impl LaneCtx<'_> {
    fn device(&self) -> Device {
        self.model.device()
    }

    /// Runs `f`, turning a panic into an error: tch panics where libtorch raises inside an
    /// operation that cannot return one (running out of memory, most often), and a lane
    /// must outlive any image.
    fn guard<T>(&self, f: impl FnOnce() -> Result<T, ModelError>) -> Result<T, ModelError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic without a message");
            Err(ModelError::Crashed { model: self.model.desc().id.clone(), reason: torch_reason(message) })
        })
        .map_err(ModelError::classify)
    }

    /// Runs a batch and hands its images on; false when the pipeline is shutting down.
    fn batch(&self, items: Vec<Item>, shape: (i64, i64), input: Option<Input>) -> bool {
        let started = Instant::now();
        let outcome = self.guard(|| infer(self.model, &items, shape, input));
        let elapsed = started.elapsed();
        self.clock.add(elapsed);
        crate::metrics::METRICS.observe("inference", elapsed.as_secs_f64());
        let count = items.len();
        let per_image = ms(elapsed) / count as f64;
        if matches!(&outcome, Err(e) if out_of_memory(e)) && self.device() == Device::Cpu {
            crate::alloc::release_free_memory();
        }
        match outcome {
            Ok(outputs) => {
                crate::metrics::METRICS.lane(self.index, &device_name(self.device()), count);
                for (item, (layers, sources, palette, labels)) in items.into_iter().zip(outputs) {
                    let (tx, bands) = mpsc::channel(2);
                    // Capacity 2: both fit, so these sends never wait.
                    let _ = tx.try_send(Band::Rows(layers));
                    let _ = tx.try_send(Band::Done { inference_ms: per_image });
                    let precision = self.model.precision_for(item.task.params.quality);
                    let inferred = Inferred { item, sources, palette, labels, bands, device: self.device(), precision };
                    if self.inferred.blocking_send(inferred).is_err() {
                        return false;
                    }
                }
                true
            }
            Err(e) if out_of_memory(&e) && count > 1 => {
                warn!(images_in_batch = count, lane = self.index, "out of device memory; running the batch's images one at a time");
                items.into_iter().all(|item| {
                    let shape = padded(self.model.desc(), &item);
                    self.batch(vec![item], shape, None)
                })
            }
            Err(e) if out_of_memory(&e) => {
                let item = items.into_iter().next();
                item.is_none_or(|item| {
                    // A quarter of what the image was thought to need (or of the budget, if
                    // less): tiles the device has room for.
                    let need = whole_bytes(self.model.desc(), item.image.width, item.image.height);
                    let budget = self.budget.min(need) / 4;
                    item.span.in_scope(|| warn!(lane = self.index, budget, "out of device memory; running the image in tiles"));
                    self.large(item, budget)
                })
            }
            Err(e) => {
                let reason = e.to_string();
                for item in items {
                    item.span.in_scope(|| warn!(images_in_batch = count, error = %reason, "inference failed"));
                    let failed = TaskResult::failed(item.task.key.clone(), FailureKind::Model, reason.clone());
                    if self.results.blocking_send(Finished::new(item.ticket, &item.task, failed)).is_err() {
                        return false;
                    }
                }
                true
            }
        }
    }

    /// Runs one large image through `decompose_large`; false when the pipeline is shutting
    /// down.
    fn large(&self, item: Item, budget: u64) -> bool {
        let (image, params, span) = (item.image.clone(), item.task.params.clone(), item.span.clone());
        let (ticket, task) = (item.ticket, item.task.clone());
        span.in_scope(|| debug!(width = image.width, height = image.height, quality = %params.quality, lane = self.index, "large image"));
        let started = Instant::now();
        let precision = self.model.precision_for(params.quality);
        let mut sink = ChannelSink { item: Some(item), inferred: self.inferred, bands: None, device: self.device(), precision, labels: Vec::new() };
        let outcome = self.guard(|| self.model.decompose_large(&image, &params, budget, &mut sink));
        let elapsed = started.elapsed();
        self.clock.add(elapsed);
        crate::metrics::METRICS.observe("inference", elapsed.as_secs_f64());
        if outcome.is_ok() {
            crate::metrics::METRICS.lane(self.index, &device_name(self.device()), 1);
        }
        match (outcome, sink.bands) {
            (Ok(()), Some(tx)) => tx.blocking_send(Band::Done { inference_ms: ms(elapsed) }).is_ok(),
            (Err(ModelError::SinkClosed), _) => false,
            (Err(e), Some(tx)) => {
                span.in_scope(|| warn!(error = %e, "inference failed part way"));
                tx.blocking_send(Band::Failed(e.to_string())).is_ok()
            }
            (outcome, None) => {
                let (kind, reason) = match outcome {
                    Err(e @ ModelError::TooLarge { .. }) => (FailureKind::TooLarge, e.to_string()),
                    Err(e) if out_of_memory(&e) => (
                        FailureKind::TooLarge,
                        format!("model {}: out of device memory even in tiles of {} (lower --memory-budget, or run it on a larger device): {}", self.model.desc().id, lamina_common::bytes::human(budget), first_line(&e.to_string())),
                    ),
                    Err(e) => (FailureKind::Model, e.to_string()),
                    Ok(()) => (FailureKind::Model, "the model made no layers".to_owned()),
                };
                span.in_scope(|| warn!(error = %reason, "inference failed"));
                self.results.blocking_send(Finished::new(ticket, &task, TaskResult::failed(task.key.clone(), kind, reason))).is_ok()
            }
        }
    }
}

/// The reason in a panic message from tch: libtorch's own words, without the wrapping
/// (`called Result::unwrap() on an Err value: Torch("...")`), the enforce location and the
/// C++ stack that follows.
fn torch_reason(message: &str) -> String {
    let inner = message.split_once("Torch(\"").map_or(message, |(_, rest)| rest);
    let inner = inner.split("\\n").next().unwrap_or(inner);
    let inner = first_line(inner).trim_end_matches("\")").trim();
    // "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: ..."
    let inner = match inner.strip_prefix("[enforce fail at ") {
        Some(rest) => rest.split_once("] ").map_or(rest, |(_, r)| r).trim_start_matches("err == 0. "),
        None => inner,
    };
    inner.to_owned()
}

/// Keeps the panics that lanes catch (see `LaneCtx::guard`) out of the standard error: the
/// lane logs the reason itself, in one line.
pub(super) fn quiet_lane_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !std::thread::current().name().is_some_and(|n| n.starts_with("lamina-lane-")) {
                previous(info);
            }
        }));
    });
}

fn first_line(s: &str) -> &str {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or(s).trim()
}

/// Whether a model error (classified by [`LaneCtx::guard`]) is the device running out of
/// memory.
fn out_of_memory(e: &ModelError) -> bool {
    e.is_out_of_memory()
}

/// Hands a large image's bands on as the model makes them.
struct ChannelSink<'a> {
    /// The image, until its header goes out.
    item: Option<Item>,
    inferred: &'a mpsc::Sender<Inferred>,
    bands: Option<mpsc::Sender<Band>>,
    device: Device,
    precision: Precision,
    /// Each model layer's role and words, where the model says (design models).
    labels: Vec<lamina_common::manifest::LayerLabel>,
}

impl LayerSink for ChannelSink<'_> {
    fn labels(&mut self, labels: Vec<lamina_common::manifest::LayerLabel>) {
        self.labels = labels;
    }

    fn begin(&mut self, sources: Vec<Vec<usize>>, palette: Option<Vec<[u8; 3]>>) -> Result<(), ModelError> {
        let item = self.item.take().ok_or(ModelError::SinkClosed)?;
        // One band waits while the next is made: two bands of a large image in memory.
        let (tx, bands) = mpsc::channel(1);
        let labels = std::mem::take(&mut self.labels);
        let inferred = Inferred { item, sources, palette, labels, bands, device: self.device, precision: self.precision };
        self.inferred.blocking_send(inferred).map_err(|_| ModelError::SinkClosed)?;
        self.bands = Some(tx);
        Ok(())
    }

    fn rows(&mut self, layers: Vec<Vec<u8>>) -> Result<(), ModelError> {
        let tx = self.bands.as_ref().ok_or(ModelError::SinkClosed)?;
        tx.blocking_send(Band::Rows(layers)).map_err(|_| ModelError::SinkClosed)
    }
}

#[cfg(test)]
mod tests {
    use super::torch_reason;

    #[test]
    fn a_torch_panic_becomes_libtorchs_own_words() {
        let message = r#"called `Result::unwrap()` on an `Err` value: Torch("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate 577536000 bytes. Error code 12 (Cannot allocate memory)\nframe #0: c10::ThrowEnforceNotMet(char const*)\nframe #1: ...")"#;
        assert_eq!(torch_reason(message), "DefaultCPUAllocator: can't allocate memory: you tried to allocate 577536000 bytes. Error code 12 (Cannot allocate memory)");
        assert_eq!(torch_reason("index out of range"), "index out of range");
        assert_eq!(torch_reason("first\nsecond"), "first");
    }
}

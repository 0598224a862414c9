//! Stage 2: the inference thread. It owns the model, groups ready images into batches, runs
//! the model, and quantises the layers to 8-bit RGBA on the device (so only bytes cross back
//! to the host).
//!
//! An image whose forward pass would need more than the memory budget, or that fast mode
//! reduces, runs alone through `Model::decompose_large`, which hands its layers on band by
//! band; a batch holds only as many images as fit the budget together.
//!
//! A batch holds only images of the same padded size *and* the same parameters: a pool
//! worker serves several jobs at once, and a model runs a whole batch with one set of
//! parameters, so an image must never share a forward pass with another job's `--layers`
//! or `--palette`. Batching changes how fast an image is done, never what is written.

use std::sync::Arc;
use std::time::Instant;

use tch::{Kind, Tensor};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{fetch::ms, Band, Finished, Inferred, Item, ModelClock};
use crate::model::{quantise, whole_bytes, Batch, LayerSink, Model, ModelError, SharedModel};
use lamina_common::messages::{FailureKind, TaskResult};

pub(super) fn run(
    model: SharedModel,
    batch_size: usize,
    budget: u64,
    mut decoded: mpsc::Receiver<Item>,
    inferred: mpsc::Sender<Inferred>,
    results: mpsc::Sender<Finished>,
    clock: Arc<ModelClock>,
) {
    // This thread owns the model while it runs (see `SharedModel`).
    let model = crate::model::lock(&model);
    let multiple = model.desc().size_multiple.max(1);
    let padded = |item: &Item| (round_up(item.image.height, multiple), round_up(item.image.width, multiple));
    let mut pending: Vec<Item> = Vec::new();
    loop {
        if pending.is_empty() {
            match decoded.blocking_recv() {
                Some(item) => pending.push(item),
                None => return,
            }
        }
        while pending.len() < 4 * batch_size {
            match decoded.try_recv() {
                Ok(item) => pending.push(item),
                Err(_) => break,
            }
        }
        let lead = &pending[0];
        if model.is_large(lead.image.width, lead.image.height, &lead.task.params, budget) {
            let item = pending.remove(0);
            if !run_large(&**model, item, budget, &inferred, &results, &clock) {
                return;
            }
            continue;
        }
        // The oldest image leads; ready images of its padded size and parameters join it, as
        // many as fit the memory budget together.
        let fit = (budget / whole_bytes(model.desc(), lead.image.width, lead.image.height).max(1)).max(1) as usize;
        let (batch, rest) = split_batch(std::mem::take(&mut pending), batch_size.min(fit), |lead, item| {
            padded(lead) == padded(item) && lead.task.params == item.task.params
        });
        pending = rest;
        let shape = padded(&batch[0]);
        debug!(images = batch.len(), waiting = pending.len(), height = shape.0, width = shape.1, "batch");
        let started = Instant::now();
        let outcome = infer(&**model, &batch, shape);
        let elapsed = started.elapsed();
        clock.add(elapsed);
        crate::metrics::METRICS.observe("inference", elapsed.as_secs_f64());
        let batch_len = batch.len();
        let per_image = ms(elapsed) / batch_len as f64;
        match outcome {
            Ok(outputs) => {
                for (item, (layers, sources, palette)) in batch.into_iter().zip(outputs) {
                    let (tx, bands) = mpsc::channel(2);
                    // Capacity 2: both fit, so these sends never wait.
                    let _ = tx.try_send(Band::Rows(layers));
                    let _ = tx.try_send(Band::Done { inference_ms: per_image });
                    if inferred.blocking_send(Inferred { item, sources, palette, bands }).is_err() {
                        return;
                    }
                }
            }
            Err(reason) => {
                for item in batch {
                    item.span.in_scope(|| warn!(images_in_batch = batch_len, error = %reason, "inference failed"));
                    let failed = TaskResult::failed(item.task.key.clone(), FailureKind::Model, reason.clone());
                    if results.blocking_send(Finished::new(item.ticket, &item.task, failed)).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Hands a large image's bands on as the model makes them.
struct ChannelSink<'a> {
    /// The image, until its header goes out.
    item: Option<Item>,
    inferred: &'a mpsc::Sender<Inferred>,
    bands: Option<mpsc::Sender<Band>>,
}

impl LayerSink for ChannelSink<'_> {
    fn begin(&mut self, sources: Vec<Vec<usize>>, palette: Option<Vec<[u8; 3]>>) -> Result<(), ModelError> {
        let item = self.item.take().ok_or(ModelError::SinkClosed)?;
        // One band waits while the next is made: two bands of a large image in memory.
        let (tx, bands) = mpsc::channel(1);
        self.inferred.blocking_send(Inferred { item, sources, palette, bands }).map_err(|_| ModelError::SinkClosed)?;
        self.bands = Some(tx);
        Ok(())
    }

    fn rows(&mut self, layers: Vec<Vec<u8>>) -> Result<(), ModelError> {
        let tx = self.bands.as_ref().ok_or(ModelError::SinkClosed)?;
        tx.blocking_send(Band::Rows(layers)).map_err(|_| ModelError::SinkClosed)
    }
}

/// Runs one large image through `decompose_large`; false when the pipeline is shutting down.
fn run_large(
    model: &dyn Model,
    item: Item,
    budget: u64,
    inferred: &mpsc::Sender<Inferred>,
    results: &mpsc::Sender<Finished>,
    clock: &ModelClock,
) -> bool {
    let (image, params, span) = (item.image.clone(), item.task.params.clone(), item.span.clone());
    let (ticket, task) = (item.ticket, item.task.clone());
    span.in_scope(|| debug!(width = image.width, height = image.height, quality = %params.quality, "large image"));
    let started = Instant::now();
    let mut sink = ChannelSink { item: Some(item), inferred, bands: None };
    let outcome = model.decompose_large(&image, &params, budget, &mut sink);
    let elapsed = started.elapsed();
    clock.add(elapsed);
    crate::metrics::METRICS.observe("inference", elapsed.as_secs_f64());
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
                Err(e) => (FailureKind::Model, e.to_string()),
                Ok(()) => (FailureKind::Model, "the model made no layers".to_owned()),
            };
            span.in_scope(|| warn!(error = %reason, "inference failed"));
            results.blocking_send(Finished::new(ticket, &task, TaskResult::failed(task.key.clone(), kind, reason))).is_ok()
        }
    }
}

/// Takes the first item and up to `max - 1` later ones that `joins` the first into a batch,
/// in arrival order; returns the batch and the rest, still in arrival order.
fn split_batch<T>(pending: Vec<T>, max: usize, joins: impl Fn(&T, &T) -> bool) -> (Vec<T>, Vec<T>) {
    let mut items = pending.into_iter();
    let Some(lead) = items.next() else { return (Vec::new(), Vec::new()) };
    let mut batch = vec![lead];
    let mut rest = Vec::new();
    for item in items {
        if batch.len() < max && joins(&batch[0], &item) {
            batch.push(item);
        } else {
            rest.push(item);
        }
    }
    (batch, rest)
}

fn round_up(v: u32, m: i64) -> i64 {
    (i64::from(v) + m - 1) / m * m
}

type Output = (Vec<Vec<u8>>, Vec<Vec<usize>>, Option<Vec<[u8; 3]>>);

/// Runs a batch. On the CPU each image goes through the model alone even when it shares a
/// batch: the CPU's convolution kernels differ with the batch size in the last bits of a
/// float, which can move a quantised value by 1/255, and batching buys nothing on a CPU
/// (BENCHMARKS.md). So on the CPU an image's layers are bitwise the same whatever shares its
/// batch; on a GPU the batch is one forward pass, within 1/255 of an unbatched run.
fn infer(model: &dyn Model, batch: &[Item], shape: (i64, i64)) -> Result<Vec<Output>, String> {
    if model.device() != tch::Device::Cpu || batch.len() == 1 {
        return infer_batch(model, batch, shape);
    }
    let mut outputs = Vec::with_capacity(batch.len());
    for one in batch.chunks(1) {
        outputs.extend(infer_batch(model, one, shape)?);
    }
    Ok(outputs)
}

/// Pads each image to `shape` (edge pixels repeated), runs the model, crops back, quantises.
fn infer_batch(model: &dyn Model, batch: &[Item], (ph, pw): (i64, i64)) -> Result<Vec<Output>, String> {
    let device = model.device();
    let sizes: Vec<(i64, i64)> = batch.iter().map(|i| (i64::from(i.image.height), i64::from(i.image.width))).collect();
    let pad = |t: Tensor, h: i64, w: i64| {
        if (h, w) == (ph, pw) {
            t
        } else {
            t.unsqueeze(0).replication_pad2d([0, pw - w, 0, ph - h]).squeeze_dim(0)
        }
    };
    let images: Vec<Tensor> = batch
        .iter()
        .zip(&sizes)
        .map(|(item, &(h, w))| pad(Tensor::from_slice(&item.image.rgb).view([3, h, w]), h, w))
        .collect();
    let images = Tensor::stack(&images, 0).to_device(device);
    let alpha = batch.iter().any(|i| i.image.alpha.is_some()).then(|| {
        let planes: Vec<Tensor> = batch
            .iter()
            .zip(&sizes)
            .map(|(item, &(h, w))| match &item.image.alpha {
                Some(a) => pad(Tensor::from_slice(a).view([1, h, w]), h, w),
                None => Tensor::ones([1, ph, pw], (Kind::Float, tch::Device::Cpu)),
            })
            .collect();
        Tensor::stack(&planes, 0).to_device(device)
    });
    // Every image of a batch has these parameters (see the module's documentation).
    let params = &batch[0].task.params;
    debug_assert!(batch.iter().all(|i| &i.task.params == params));
    let out = model
        .decompose(&Batch { images: &images, sizes: &sizes, alpha: alpha.as_ref() }, params)
        .map_err(|e| e.to_string())?;
    let mut outputs = Vec::with_capacity(batch.len());
    for (i, ((&(h, w), sources), palette)) in sizes.iter().zip(out.sources).zip(out.palettes).enumerate() {
        let layers = quantise(&out.layers.get(i as i64).narrow(2, 0, h).narrow(3, 0, w)).map_err(|e| e.to_string())?;
        outputs.push((layers, sources, palette));
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::split_batch;

    #[test]
    fn a_batch_takes_only_images_that_match_its_lead_in_arrival_order() {
        // (image, padded size, parameters): two jobs' images interleaved, one odd size.
        let pending = vec![(0, 64, "a"), (1, 64, "b"), (2, 64, "a"), (3, 72, "a"), (4, 64, "a"), (5, 64, "a"), (6, 64, "b")];
        let joins = |lead: &(i32, i32, &str), item: &(i32, i32, &str)| lead.1 == item.1 && lead.2 == item.2;
        let (batch, rest) = split_batch(pending, 3, joins);
        assert_eq!(batch.iter().map(|i| i.0).collect::<Vec<_>>(), [0, 2, 4]);
        assert_eq!(rest.iter().map(|i| i.0).collect::<Vec<_>>(), [1, 3, 5, 6]);
        let (batch, rest) = split_batch(rest, 3, joins);
        assert_eq!(batch.iter().map(|i| i.0).collect::<Vec<_>>(), [1, 6]);
        assert_eq!(rest.iter().map(|i| i.0).collect::<Vec<_>>(), [3, 5]);
        assert!(split_batch(Vec::<(i32, i32, &str)>::new(), 3, joins).0.is_empty());
    }
}

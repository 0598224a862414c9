//! Stage 2: the inference thread. It owns the model, groups ready images into batches, runs
//! the model, and quantises the layers to 8-bit RGBA on the device (so only bytes cross back
//! to the host).
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

use super::{fetch::ms, Finished, Inferred, Item, ModelClock};
use crate::model::{Batch, Model, SharedModel};
use lamina_common::messages::{FailureKind, TaskResult};

pub(super) fn run(
    model: SharedModel,
    batch_size: usize,
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
        // The oldest image leads; ready images of its padded size and parameters join it.
        let (batch, rest) = split_batch(std::mem::take(&mut pending), batch_size, |lead, item| {
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
                for (mut item, (layers, sources, palette)) in batch.into_iter().zip(outputs) {
                    item.timings.inference = per_image;
                    if inferred.blocking_send(Inferred { item, layers, sources, palette }).is_err() {
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
        let layers = out.layers.get(i as i64).narrow(2, 0, h).narrow(3, 0, w);
        let q = (layers * 255.0 + 0.5).floor().clamp(0.0, 255.0).to_kind(Kind::Uint8);
        // Colour is meaningless where alpha is 0; zeroing it makes layers compress better.
        let visible = q.narrow(1, 3, 1).gt(0).to_kind(Kind::Uint8);
        let q = Tensor::cat(&[q.narrow(1, 0, 3) * &visible, q.narrow(1, 3, 1)], 1);
        let q = q.permute([0, 2, 3, 1]).contiguous().to_device(tch::Device::Cpu);
        let l = q.size()[0];
        let bytes = Vec::<u8>::try_from(q.view(-1)).map_err(|e| e.to_string())?;
        let per_layer = (h * w * 4) as usize;
        let layers = bytes.chunks_exact(per_layer).map(<[u8]>::to_vec).collect::<Vec<_>>();
        debug_assert_eq!(layers.len() as i64, l);
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

//! Stage 2: the inference thread. It owns the model, groups ready images of the same padded
//! size into batches, runs the model, and quantises the layers to 8-bit RGBA on the device
//! (so only bytes cross back to the host).

use std::sync::Arc;
use std::time::Instant;

use tch::{Kind, Tensor};
use tokio::sync::mpsc;
use tracing::warn;

use super::{fetch::ms, Finished, Inferred, Item, ModelClock};
use crate::model::{Batch, Model};
use lamina_common::messages::TaskResult;

pub(super) fn run(
    model: Box<dyn Model>,
    batch_size: usize,
    mut decoded: mpsc::Receiver<Item>,
    inferred: mpsc::Sender<Inferred>,
    results: mpsc::Sender<Finished>,
    clock: Arc<ModelClock>,
) {
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
        // The oldest image leads; ready images of its padded size join it.
        let shape = padded(&pending[0]);
        let mut batch = Vec::with_capacity(batch_size);
        let mut rest = Vec::with_capacity(pending.len());
        for item in pending.drain(..) {
            if batch.len() < batch_size && padded(&item) == shape {
                batch.push(item);
            } else {
                rest.push(item);
            }
        }
        pending = rest;
        let started = Instant::now();
        let outcome = infer_batch(&*model, &batch, shape);
        let elapsed = started.elapsed();
        clock.add(elapsed);
        crate::metrics::METRICS.observe("inference", elapsed.as_secs_f64());
        let per_image = ms(elapsed) / batch.len() as f64;
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
                warn!(images = batch.len(), error = %reason, "inference failed");
                for item in batch {
                    let failed = TaskResult::failed(item.task.key.clone(), reason.clone());
                    if results.blocking_send(Finished::new(item.ticket, &item.task, failed)).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

fn round_up(v: u32, m: i64) -> i64 {
    (i64::from(v) + m - 1) / m * m
}

type Output = (Vec<Vec<u8>>, Vec<Vec<usize>>, Option<Vec<[u8; 3]>>);

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
    let params = &batch[0].task.params;
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

//! Batches: which waiting images share a forward pass (same parameters, same bucket), the
//! shape they are padded to (size buckets, the memory fit), their input padded and stacked
//! on the host, and the stacked forward pass with each image's layers cropped back to its
//! size. See `infer.rs` for how the batcher and the lanes use them.

use tch::{Device, Kind, Tensor};

use super::Item;
use crate::runtime::calibrate::Calibration;
use crate::runtime::{quantise, Batch, Model, ModelDesc, ModelError};

/// A batch's input on the host.
pub(super) struct Input {
    pub(super) images: Tensor,
    pub(super) alpha: Option<Tensor>,
}

/// Takes the first item and up to `max - 1` later ones that `joins` the first into a batch,
/// in arrival order; returns the batch and the rest, still in arrival order.
pub(super) fn split_batch<T>(pending: Vec<T>, max: usize, joins: impl Fn(&T, &T) -> bool) -> (Vec<T>, Vec<T>) {
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

pub(super) fn round_up(v: i64, m: i64) -> i64 {
    (v + m - 1) / m * m
}

/// An image's size padded to the model's size multiple.
pub(super) fn padded(desc: &ModelDesc, item: &Item) -> (i64, i64) {
    let m = desc.size_multiple.max(1);
    (round_up(i64::from(item.image.height), m), round_up(i64::from(item.image.width), m))
}

/// The side a padded side is batched at: rounded up to an eighth of its octave (at most
/// 12.5% more), in steps of the size multiple.
pub fn bucket_side(side: i64, multiple: i64) -> i64 {
    let m = multiple.max(1);
    let side = round_up(side.max(1), m);
    let octave = 1i64 << (63 - side.leading_zeros());
    round_up(side, round_up((octave / 8).max(m), m))
}

/// The shape an image is batched at: its bucket when the model takes padding and a batch of
/// two fits the budget there, else its own padded size.
pub(super) fn bucket(desc: &ModelDesc, calibration: &Calibration, budget: u64, height: u32, width: u32) -> (i64, i64) {
    let m = desc.size_multiple.max(1);
    let own = (round_up(i64::from(height), m), round_up(i64::from(width), m));
    if !desc.caps().pads {
        return own;
    }
    let shape = (bucket_side(own.0, m), bucket_side(own.1, m));
    let two = calibration.image_bytes(desc, shape.1 as u32, shape.0 as u32).saturating_mul(2);
    if two <= budget {
        shape
    } else {
        own
    }
}

pub(super) type Output = (Vec<Vec<u8>>, Vec<Vec<usize>>, Option<Vec<[u8; 3]>>, Vec<lamina_common::manifest::LayerLabel>);

/// Runs a batch. On the CPU each image goes through the model alone at its own padded
/// size even when it shares a batch: the CPU's convolution kernels differ with the batch
/// size in the last bits of a float, which can move a quantised value by 1/255, and
/// batching buys nothing on a CPU (BENCHMARKS.md). So on the CPU an image's layers are
/// bitwise the same whatever shares its batch; on a GPU the batch is one forward pass at its
/// bucket's size, within 1/255 of an unbatched run.
pub(super) fn infer(model: &dyn Model, batch: &[Item], shape: (i64, i64), input: Option<Input>) -> Result<Vec<Output>, ModelError> {
    if model.device() != Device::Cpu {
        return infer_batch(model, batch, shape, input);
    }
    let mut outputs = Vec::with_capacity(batch.len());
    for one in batch.chunks(1) {
        outputs.extend(infer_batch(model, one, padded(model.desc(), &one[0]), None)?);
    }
    Ok(outputs)
}

/// Pads each image to `shape` (edge pixels repeated) and stacks them on the host, in pinned
/// memory when `pin` names a GPU (so the copy to it can run alongside other work).
pub(super) fn prepare(batch: &[Item], shape: (i64, i64), pin: Option<Device>) -> Input {
    let images: Vec<&crate::decode::Decoded> = batch.iter().map(|i| &*i.image).collect();
    stack(&images, shape, pin)
}

/// [`prepare`] for decoded images.
pub(super) fn stack(images: &[&crate::decode::Decoded], (ph, pw): (i64, i64), pin: Option<Device>) -> Input {
    let pad = |t: Tensor, h: i64, w: i64| {
        if (h, w) == (ph, pw) {
            t
        } else {
            t.unsqueeze(0).replication_pad2d([0, pw - w, 0, ph - h]).squeeze_dim(0)
        }
    };
    let sizes: Vec<(i64, i64)> = images.iter().map(|i| (i64::from(i.height), i64::from(i.width))).collect();
    let planes: Vec<Tensor> = images.iter().zip(&sizes).map(|(i, &(h, w))| pad(Tensor::from_slice(&i.rgb).view([3, h, w]), h, w)).collect();
    let alpha = images.iter().any(|i| i.alpha.is_some()).then(|| {
        let planes: Vec<Tensor> = images
            .iter()
            .zip(&sizes)
            .map(|(i, &(h, w))| match &i.alpha {
                Some(a) => pad(Tensor::from_slice(a).view([1, h, w]), h, w),
                None => Tensor::ones([1, ph, pw], (Kind::Float, Device::Cpu)),
            })
            .collect();
        Tensor::stack(&planes, 0)
    });
    let images = Tensor::stack(&planes, 0);
    match pin {
        Some(device) => Input { images: images.pin_memory(device), alpha: alpha.map(|a| a.pin_memory(device)) },
        None => Input { images, alpha },
    }
}

/// Runs `batch` padded to `shape` in one forward pass and quantises each image's layers,
/// cropped back to its size.
pub(super) fn infer_batch(model: &dyn Model, batch: &[Item], shape: (i64, i64), input: Option<Input>) -> Result<Vec<Output>, ModelError> {
    let images: Vec<&crate::decode::Decoded> = batch.iter().map(|i| &*i.image).collect();
    let params = &batch[0].task.params;
    // Every image of a batch has these parameters (see the module's documentation).
    debug_assert!(batch.iter().all(|i| &i.task.params == params));
    run_stacked(model, &images, shape, input, params)
}

pub(super) fn run_stacked(
    model: &dyn Model,
    images: &[&crate::decode::Decoded],
    shape: (i64, i64),
    input: Option<Input>,
    params: &lamina_common::params::DecomposeParams,
) -> Result<Vec<Output>, ModelError> {
    let device = model.device();
    let sizes: Vec<(i64, i64)> = images.iter().map(|i| (i64::from(i.height), i64::from(i.width))).collect();
    let input = input.unwrap_or_else(|| stack(images, shape, None));
    // Non-blocking from pinned memory: the copy is queued behind the device's work.
    let on_device = |t: &Tensor| t.to_device_(device, Kind::Float, true, false);
    let (images_t, alpha) = (on_device(&input.images), input.alpha.as_ref().map(on_device));
    let out = model.decompose(&Batch { images: &images_t, sizes: &sizes, alpha: alpha.as_ref() }, params)?;
    let mut outputs = Vec::with_capacity(images.len());
    let labels = out.labels.into_iter().chain(std::iter::repeat_with(Vec::new));
    for (i, (((&(h, w), sources), palette), labels)) in sizes.iter().zip(out.sources).zip(out.palettes).zip(labels).enumerate() {
        let layers = quantise(&out.layers.get(i as i64).narrow(2, 0, h).narrow(3, 0, w)).map_err(crate::runtime::torch_err(&model.desc().id))?;
        outputs.push((layers, sources, palette, labels));
    }
    Ok(outputs)
}

/// Decomposes `images` in one forward pass at `shape` (each image's bucket, or any shape at
/// least as large as every image and a multiple of the model's), as a GPU lane does: the
/// quantised layers of each image, cropped to its size. For tests and benchmarks of
/// batching.
pub fn decompose_stacked(
    model: &dyn Model,
    images: &[&crate::decode::Decoded],
    shape: (i64, i64),
    params: &lamina_common::params::DecomposeParams,
) -> Result<Vec<Vec<Vec<u8>>>, ModelError> {
    Ok(run_stacked(model, images, shape, None, params)?.into_iter().map(|(layers, ..)| layers).collect())
}

#[cfg(test)]
mod tests {
    use super::{bucket_side, split_batch};

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

    #[test]
    fn buckets_pad_a_side_by_at_most_an_eighth_in_steps_of_the_multiple() {
        assert_eq!(bucket_side(451, 8), 480);
        assert_eq!(bucket_side(300, 8), 320);
        assert_eq!(bucket_side(1000, 8), 1024);
        assert_eq!(bucket_side(1024, 8), 1024);
        assert_eq!(bucket_side(1025, 8), 1152);
        assert_eq!(bucket_side(20, 8), 24);
        assert_eq!(bucket_side(7, 1), 7);
        for side in 1..5000 {
            let b = bucket_side(side, 8);
            assert!(b >= side && b % 8 == 0 && (b - side) as f64 <= (side as f64 / 8.0).max(8.0), "{side} -> {b}");
        }
        // Many sizes, few buckets: 1000 sides from 600 to 1599 fall into 12.
        let buckets: std::collections::BTreeSet<i64> = (600..1600).map(|s| bucket_side(s, 8)).collect();
        assert!(buckets.len() <= 12, "{buckets:?}");
    }
}

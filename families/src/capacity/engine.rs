//! The capacity-test model (`capacity-test:MS`): holds each batch for a fixed time without
//! using the CPU, standing in for GPU time, and returns two real layers (a flat layer of
//! the image's mean colour under the image itself), which composite back to the input
//! exactly. It exists to measure how a fleet of workers scales (queueing, S3, encoding,
//! result reporting) on machines without GPUs; it is named as what it is and never a
//! default.

use std::time::Duration;

use tch::{Kind, Tensor};

use crate::{Batch, Decomposed, Model, ModelDesc, ModelError};
use lamina_common::params::DecomposeParams;

pub struct CapacityTest {
    desc: ModelDesc,
    hold: Duration,
}

impl CapacityTest {
    pub fn new(ms: u64, id: String) -> CapacityTest {
        let desc = ModelDesc { id, weights_sha256: String::new(), layers: 2, size_multiple: 1, max_side: 16384, bytes_per_pixel: 16, family: &lamina_families::capacity::FAMILY, rule: lamina_families::capacity::FAMILY.rule };
        CapacityTest { desc, hold: Duration::from_millis(ms) }
    }
}

impl Model for CapacityTest {
    fn desc(&self) -> &ModelDesc {
        &self.desc
    }

    fn device(&self) -> tch::Device {
        tch::Device::Cpu
    }


    fn decompose(&self, batch: &Batch<'_>, _params: &DecomposeParams) -> Result<Decomposed, ModelError> {
        // The stand-in for the GPU: the thread sleeps, the CPU is free.
        std::thread::sleep(self.hold);
        let images = batch.images;
        let ones = images.ones_like().narrow(1, 0, 1);
        let mean = images.mean_dim(&[2i64, 3][..], true, Kind::Float).expand_as(images);
        let bottom = Tensor::cat(&[mean, ones.shallow_clone()], 1);
        let top = Tensor::cat(&[images.shallow_clone(), ones], 1);
        let layers = Tensor::stack(&[bottom, top], 1);
        let n = batch.sizes.len();
        Ok(Decomposed { layers, sources: vec![vec![vec![0], vec![1]]; n], palettes: vec![None; n], labels: vec![Vec::new(); n] })
    }
}

/// Makes `capacity-test:MS` (it runs on the CPU whatever the device).
pub fn load(text: &str, _device: tch::Device) -> Result<Box<dyn Model>, ModelError> {
    let ms = lamina_families::capacity::hold_ms(text).ok_or_else(|| ModelError::Load { path: text.to_owned(), reason: "bad capacity-test model".to_owned() })?;
    Ok(Box::new(CapacityTest::new(ms, lamina_families::capacity::id(ms))))
}

//! The capacity-test model (`capacity-test:MS`): holds each batch for a fixed time without
//! using the CPU, standing in for GPU time, and returns two real layers (a flat layer of
//! the image's mean colour under the image itself), which composite back to the input
//! exactly. It exists to measure how a fleet of workers scales (queueing, S3, encoding,
//! result reporting) on machines without GPUs; it is named as what it is and never a
//! default.

use std::time::Duration;

use tch::{Kind, Tensor};

use super::{Batch, Decomposed, Model, ModelDesc, ModelError};
use lamina_common::model::ModelSpec;
use lamina_common::params::DecomposeParams;

pub struct CapacityTest {
    desc: ModelDesc,
    hold: Duration,
}

impl CapacityTest {
    pub fn new(spec: &str) -> Option<CapacityTest> {
        let (ms, id) = lamina_common::capacity_test_model(spec)?;
        let desc = ModelDesc { id, weights_sha256: String::new(), layers: 2, size_multiple: 1, max_side: 16384, bytes_per_pixel: 16, objects: false, fast_reduces: false, pads: false };
        Some(CapacityTest { desc, hold: Duration::from_millis(ms) })
    }
}

impl Model for CapacityTest {
    fn desc(&self) -> &ModelDesc {
        &self.desc
    }

    fn device(&self) -> tch::Device {
        tch::Device::Cpu
    }

    fn check_params(&self, params: &DecomposeParams) -> Result<(), ModelError> {
        ModelSpec::CapacityTest(self.hold.as_millis() as u64)
            .check_params(params, None)
            .map_err(|reason| ModelError::Params { model: self.desc.id.clone(), reason })
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
        Ok(Decomposed { layers, sources: vec![vec![vec![0], vec![1]]; n], palettes: vec![None; n] })
    }
}

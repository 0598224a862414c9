//! What the model tests share about layer stacks: compositing them, comparing them, and a
//! sink that collects the bands a streamed image arrives in.
#![allow(dead_code)]

use lamina_common::manifest::LayerLabel;
use lamina_worker::runtime::{LayerSink, ModelError};
use tch::{Kind, Tensor};

/// Composites `[L,4,H,W]` straight-alpha layers bottom first.
pub fn composite(layers: &Tensor) -> Tensor {
    let mut acc = layers.get(0).narrow(0, 0, 3) * layers.get(0).narrow(0, 3, 1);
    for i in 1..layers.size()[0] {
        let (c, a) = (layers.get(i).narrow(0, 0, 3), layers.get(i).narrow(0, 3, 1));
        acc = &c * &a + acc * (1.0 - &a);
    }
    acc
}

/// Peak signal-to-noise ratio of two images in [0,1], in dB.
pub fn psnr(a: &Tensor, b: &Tensor) -> f64 {
    let mse = f64::try_from((a - b).square().mean(Kind::Float)).unwrap();
    10.0 * (1.0 / mse.max(1e-12)).log10()
}

/// Collects the bands (and the header) a large image's layers arrive in.
#[derive(Default)]
pub struct Collect {
    pub sources: Vec<Vec<usize>>,
    pub palette: Option<Vec<[u8; 3]>>,
    pub labels: Vec<LayerLabel>,
    pub layers: Vec<Vec<u8>>,
    pub bands: usize,
}

impl LayerSink for Collect {
    fn labels(&mut self, labels: Vec<LayerLabel>) {
        self.labels = labels;
    }

    fn begin(&mut self, sources: Vec<Vec<usize>>, palette: Option<Vec<[u8; 3]>>) -> Result<(), ModelError> {
        self.layers = vec![Vec::new(); sources.len()];
        self.sources = sources;
        self.palette = palette;
        Ok(())
    }

    fn rows(&mut self, layers: Vec<Vec<u8>>) -> Result<(), ModelError> {
        for (all, band) in self.layers.iter_mut().zip(layers) {
            all.extend(band);
        }
        self.bands += 1;
        Ok(())
    }
}

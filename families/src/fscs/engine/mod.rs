//! FSCS, Fast Soft Color Segmentation (Akimoto et al., CVPR 2020), rebuilt in tch with the
//! authors' pretrained 7-layer weights (MIT; see `models/fscs/LICENSE`).
//!
//! Procedure: palette by k-means (or given), mask generator -> alphas, normalise, guided
//! filter, normalise, residue predictor -> colours; then the product steps the reference
//! lacks: clamp and renormalise the alphas so the written layers recomposite to the image,
//! merge similar layers down to the requested count, and convert the alpha-add layers to
//! normal-blend layers, bottom first.

mod guided;
mod kmeans;
mod large;
mod net;
mod upsample;

use sha2::{Digest, Sha256};
use tch::{nn, Device, Kind, Tensor};

use crate::blend::{alpha_add_to_normal, merge_alpha_add, pad_groups, plan_layers};
use crate::{torch_err, Batch, Decomposed, LayerSink, Model, ModelDesc, ModelError, Precision};
use crate::Decoded;
use lamina_common::params::{DecomposeParams, Quality};

pub use guided::{guided_coefficients, guided_filter, luma};
pub use kmeans::palette as kmeans_palette;

/// The palette size the pretrained weights were trained for.
pub const K: usize = lamina_families::fscs::LAYERS;
/// The weights, embedded so that the binary is self-contained.
static WEIGHTS: &[u8] = include_bytes!("../../../../models/fscs/fscs-k7.safetensors");
pub use lamina_families::fscs::WEIGHTS_SHA256;
const GUIDED_RADIUS: i64 = 3;
const GUIDED_EPS: f64 = 1e-6;
/// Peak working memory of one forward pass per input pixel (both networks, guided filter,
/// merging), measured on the CPU at 1 and 4 MP (BENCHMARKS.md): with the memory budget it
/// decides the tile size.
const BYTES_PER_PIXEL: u64 = 1800;

/// The FSCS model on one device.
pub struct Fscs {
    desc: ModelDesc,
    // Keeps the parameters alive; the networks hold views into it.
    vs: nn::VarStore,
    mask_generator: net::UNet,
    residue_predictor: net::UNet,
    device: Device,
    /// The networks' precision (everything around them runs in fp32).
    precision: Precision,
    /// The fp32 weights, kept once the precision first changes.
    master: Option<Vec<(String, Tensor)>>,
    /// Both networks again in fast mode's precision, when it differs from the reference one.
    fast: Option<Reduced>,
}

/// A copy of both networks in another precision (2.8 MB of weights in bf16 or fp16).
struct Reduced {
    precision: Precision,
    // Keeps the parameters alive; the networks hold views into it.
    _vs: nn::VarStore,
    mask_generator: net::UNet,
    residue_predictor: net::UNet,
}

/// Which copy of the networks a pass runs on.
struct Nets<'a> {
    mask_generator: &'a net::UNet,
    residue_predictor: &'a net::UNet,
    kind: Kind,
}

impl Fscs {
    /// Builds both networks on `device` and loads the embedded weights after checking their
    /// sha256.
    pub fn load(device: Device) -> Result<Fscs, ModelError> {
        let load_err = |reason: String| ModelError::Load { path: "models/fscs/fscs-k7.safetensors".into(), reason };
        let digest = hex::encode(Sha256::digest(WEIGHTS));
        if digest != WEIGHTS_SHA256 {
            return Err(load_err(format!("sha256 {digest} does not match {WEIGHTS_SHA256}")));
        }
        let mut vs = nn::VarStore::new(device);
        let k = K as i64;
        let mask_generator = net::UNet::new(vs.root() / "mask_generator", 3 + 3 * k, k);
        let residue_predictor = net::UNet::new(vs.root() / "residue_predictor", 3 + 4 * k, 3 * k);
        let file = safetensors::SafeTensors::deserialize(WEIGHTS).map_err(|e| load_err(e.to_string()))?;
        let mut vars = vs.variables();
        if file.len() != vars.len() {
            return Err(load_err(format!("{} tensors in the file, {} in the networks", file.len(), vars.len())));
        }
        tch::no_grad(|| -> Result<(), ModelError> {
            for (name, view) in file.tensors() {
                let var = vars.get_mut(&name).ok_or_else(|| load_err(format!("unexpected tensor {name}")))?;
                let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
                if view.dtype() != safetensors::Dtype::F32 || shape != var.size() {
                    return Err(load_err(format!("tensor {name}: {:?} {shape:?}, expected F32 {:?}", view.dtype(), var.size())));
                }
                let src = Tensor::from_data_size(view.data(), &shape, Kind::Float);
                var.copy_(&src);
            }
            Ok(())
        })?;
        // Channels-last (NHWC) convolution weights: with NHWC activations libtorch's CPU
        // convolutions run 1.6x faster than NCHW ones on the residue predictor at 1024^2.
        tch::no_grad(|| {
            for (_, mut var) in vs.variables() {
                if var.dim() == 4 {
                    let nhwc = net::channels_last(&var);
                    var.set_data(&nhwc);
                }
            }
        });
        vs.freeze();
        let desc = ModelDesc {
            id: lamina_families::fscs::MODEL_ID.to_owned(),
            weights_sha256: WEIGHTS_SHA256.to_owned(),
            layers: K,
            size_multiple: 8,
            max_side: u32::MAX,
            bytes_per_pixel: BYTES_PER_PIXEL,
            family: &lamina_families::fscs::FAMILY,
            rule: lamina_families::fscs::FAMILY.rule,
        };
        Ok(Fscs { desc, vs, mask_generator, residue_predictor, device, precision: Precision::Fp32, master: None, fast: None })
    }

    /// Steps 2-7 of the reference procedure: the alpha-add layers for `images` (`[B,3,H,W]`)
    /// and `palettes` (`[B,K,3]` in [0,1]). Returns colours `[B,K,3,H,W]` and alphas
    /// `[B,K,1,H,W]` (alphas sum to 1 per pixel but may leave [0,1]: the guided filter
    /// overshoots).
    pub fn alpha_add(&self, images: &Tensor, palettes: &Tensor) -> (Tensor, Tensor) {
        self.alpha_add_within(images, palettes, None, Quality::Reference)
    }

    /// The networks that images of `quality` run on.
    fn nets(&self, quality: Quality) -> Nets<'_> {
        match (&self.fast, quality) {
            (Some(r), Quality::Fast) => Nets { mask_generator: &r.mask_generator, residue_predictor: &r.residue_predictor, kind: r.precision.kind() },
            _ => Nets { mask_generator: &self.mask_generator, residue_predictor: &self.residue_predictor, kind: self.precision.kind() },
        }
    }

    /// The fp32 weights: the kept copy once the precision has changed, else the live ones.
    fn fp32_weights(&self) -> Vec<(String, Tensor)> {
        match &self.master {
            Some(master) => master.iter().map(|(name, t)| (name.clone(), t.shallow_clone())).collect(),
            None => self.vs.variables().into_iter().collect(),
        }
    }

    /// [`Fscs::alpha_add`] for padded images: each residue's mean is taken over its image's
    /// own `(height, width)`, so padding (to the size multiple, or to a batch's size bucket)
    /// does not shift an image's colours.
    fn alpha_add_within(&self, images: &Tensor, palettes: &Tensor, sizes: Option<&[(i64, i64)]>, quality: Quality) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            let (b, _, h, w) = images.size4().unwrap_or((0, 3, 0, 0));
            let (planes, alpha, residue) = self.networks(images, palettes, quality);
            let mean = match sizes {
                Some(sizes) if sizes.iter().any(|&s| s != (h, w)) => {
                    let means: Vec<Tensor> = sizes
                        .iter()
                        .enumerate()
                        .map(|(i, &(ih, iw))| residue.get(i as i64).narrow(1, 0, ih).narrow(2, 0, iw).mean_dim([1, 2].as_slice(), true, Kind::Float))
                        .collect();
                    Tensor::stack(&means, 0)
                }
                _ => residue.mean_dim([2, 3].as_slice(), true, Kind::Float),
            };
            let residue = &residue - mean;
            let colour = (planes + residue.view([b, K as i64, 3, h, w])).clamp(0.0, 1.0);
            (colour, alpha)
        })
    }

    /// Both networks and the guided filter: the palette planes `[B,K,3,H,W]`, the alphas
    /// `[B,K,1,H,W]` and the residue predictor's output `[B,3K,H,W]` before its per-image
    /// mean is taken off (the one step that needs the whole image: a tiled run takes the
    /// whole image's mean, see `large.rs`).
    fn networks(&self, images: &Tensor, palettes: &Tensor, quality: Quality) -> (Tensor, Tensor, Tensor) {
        tch::no_grad(|| {
            let (b, _, h, w) = images.size4().unwrap_or((0, 3, 0, 0));
            let k = K as i64;
            let planes = palettes.view([b, k, 3, 1, 1]).expand([b, k, 3, h, w], false);
            let nets = self.nets(quality);
            let kind = nets.kind;
            let net_images = images.to_kind(kind);
            let x = Tensor::cat(&[images.shallow_clone(), planes.reshape([b, 3 * k, h, w])], 1);
            let alpha = nets.mask_generator.forward(&x.to_kind(kind), &net_images).to_kind(Kind::Float).sigmoid();
            let alpha = normalise(&alpha);
            let alpha = normalise(&guided_filter(&luma(images), &alpha, GUIDED_RADIUS, GUIDED_EPS));
            let alpha = alpha.view([b, k, 1, h, w]);
            let per_layer = Tensor::cat(&[planes.shallow_clone(), alpha.shallow_clone()], 2).reshape([b, 4 * k, h, w]);
            let x = Tensor::cat(&[images.shallow_clone(), per_layer], 1);
            let residue = nets.residue_predictor.forward(&x.to_kind(kind), &net_images).to_kind(Kind::Float).tanh();
            (planes, alpha, residue)
        })
    }

    fn palettes(&self, batch: &Batch<'_>, params: &DecomposeParams) -> Vec<Vec<[u8; 3]>> {
        if let Some(given) = &params.palette {
            return vec![given.clone(); batch.sizes.len()];
        }
        batch
            .sizes
            .iter()
            .enumerate()
            .map(|(i, &(h, w))| {
                let image = batch.images.get(i as i64).narrow(1, 0, h).narrow(2, 0, w);
                let mask = batch.alpha.map(|a| a.get(i as i64).get(0).narrow(0, 0, h).narrow(1, 0, w).ge(0.5));
                kmeans::palette(&image, mask.as_ref(), K)
            })
            .collect()
    }
}

fn normalise(alpha: &Tensor) -> Tensor {
    alpha / (alpha.sum_dim_intlist(1, true, Kind::Float) + 1e-8)
}

impl Model for Fscs {
    fn desc(&self) -> &ModelDesc {
        &self.desc
    }

    fn device(&self) -> Device {
        self.device
    }


    fn precision(&self) -> Precision {
        self.precision
    }

    fn set_precision(&mut self, precision: Precision) -> Result<(), ModelError> {
        if precision == self.precision {
            return Ok(());
        }
        // The fp32 weights are kept aside the first time, so going back to fp32 restores
        // them exactly (a round trip through fp16 would not).
        let master = self.master.get_or_insert_with(|| tch::no_grad(|| self.vs.variables().into_iter().map(|(name, var)| (name, var.copy())).collect()));
        let mut vars = self.vs.variables();
        tch::no_grad(|| {
            for (name, weights) in master.iter() {
                if let Some(var) = vars.get_mut(name) {
                    // `to_kind` keeps the channels-last layout of the convolution weights.
                    var.set_data(&weights.to_kind(precision.kind()));
                }
            }
        });
        self.precision = precision;
        if self.fast.as_ref().is_some_and(|r| r.precision == precision) {
            self.fast = None;
        }
        Ok(())
    }

    fn fast_precision(&self) -> Precision {
        self.fast.as_ref().map_or(self.precision, |r| r.precision)
    }

    fn set_fast_precision(&mut self, precision: Precision) -> Result<(), ModelError> {
        if precision == self.precision {
            self.fast = None;
            return Ok(());
        }
        if self.fast.as_ref().is_some_and(|r| r.precision == precision) {
            return Ok(());
        }
        let k = K as i64;
        let mut vs = nn::VarStore::new(self.device);
        let mask_generator = net::UNet::new(vs.root() / "mask_generator", 3 + 3 * k, k);
        let residue_predictor = net::UNet::new(vs.root() / "residue_predictor", 3 + 4 * k, 3 * k);
        let weights = self.fp32_weights();
        let mut vars = vs.variables();
        tch::no_grad(|| {
            for (name, fp32) in &weights {
                if let Some(var) = vars.get_mut(name) {
                    // `to_kind` keeps the channels-last layout of the convolution weights.
                    var.set_data(&fp32.to_kind(precision.kind()));
                }
            }
        });
        vs.freeze();
        self.fast = Some(Reduced { precision, _vs: vs, mask_generator, residue_predictor });
        Ok(())
    }

    fn decompose_large(&self, image: &Decoded, params: &DecomposeParams, budget: u64, sink: &mut dyn LayerSink) -> Result<(), ModelError> {
        self.check_params(params)?;
        match params.quality {
            Quality::Fast => self.fast(image, params, budget, sink),
            Quality::Reference => self.tiled(image, params, budget, sink),
        }
    }

    fn decompose(&self, batch: &Batch<'_>, params: &DecomposeParams) -> Result<Decomposed, ModelError> {
        self.check_params(params)?;
        let palettes = self.palettes(batch, params);
        let flat: Vec<f32> = palettes.iter().flatten().flatten().map(|&v| f32::from(v) / 255.0).collect();
        let b = batch.sizes.len() as i64;
        let palette_t = Tensor::from_slice(&flat).view([b, K as i64, 3]).to_device(self.device);
        let (colour, alpha) = self.alpha_add_within(batch.images, &palette_t, Some(batch.sizes), params.quality);
        tch::no_grad(|| {
            // The reference's flaw, fixed: clamped alphas must still sum to 1.
            let alpha = normalise(&alpha.clamp(0.0, 1.0));
            let merges = params.layers.is_some() || params.min_coverage.is_some();
            let planned: Vec<Option<Vec<Vec<usize>>>> = if merges {
                let masses = alpha_masses(&alpha, batch.sizes);
                palettes
                    .iter()
                    .zip(&masses)
                    .zip(batch.sizes)
                    .map(|((p, m), &(h, w))| {
                        let colours: Vec<[f64; 3]> = p.iter().map(|c| c.map(|v| f64::from(v) / 255.0)).collect();
                        plan_layers(&colours, m, (h * w) as f64, params)
                    })
                    .collect()
            } else {
                vec![None; palettes.len()]
            };
            let (colour, alpha, sources) = if planned.iter().any(Option::is_some) {
                let groups = pad_groups(planned.into_iter().map(|g| g.unwrap_or_else(|| (0..K).map(|i| vec![i]).collect())).collect());
                let (c, a) = merge_alpha_add(&colour, &alpha, &groups);
                (c, a, groups)
            } else {
                (colour, alpha, vec![(0..K).map(|i| vec![i]).collect(); b as usize])
            };
            let layers = Tensor::cat(&[colour, alpha_add_to_normal(&alpha)], 2);
            Ok::<_, tch::TchError>(Decomposed { layers, sources, labels: vec![Vec::new(); palettes.len()], palettes: palettes.into_iter().map(Some).collect() })
        })
        .map_err(torch_err(&self.desc.id))
    }
}

/// Each layer's total alpha inside each image's unpadded region.
fn alpha_masses(alpha: &Tensor, sizes: &[(i64, i64)]) -> Vec<Vec<f64>> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &(h, w))| {
            let a = alpha.get(i as i64).narrow(2, 0, h).narrow(3, 0, w);
            let m = a.sum_dim_intlist([1, 2, 3].as_slice(), false, Kind::Double).to_device(Device::Cpu);
            Vec::<f64>::try_from(m).unwrap_or_else(|_| vec![1.0; K])
        })
        .collect()
}

/// Loads FSCS (`--model fscs`) on `device`.
pub fn load(_text: &str, device: Device) -> Result<Box<dyn Model>, ModelError> {
    Ok(Box::new(Fscs::load(device)?))
}

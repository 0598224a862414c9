//! The design engine: the text detector on the model's device (`detect.rs`), then the
//! graphic taken apart on the CPU (`layout.rs`), then the layers stacked bottom to top:
//! background, images, shapes, text. Each layer's role travels with it to the manifest.

pub mod detect;
pub mod layout;

use tch::{Device, Kind, Tensor};

use crate::objects::push_pull;
use crate::{Batch, Decomposed, Model, ModelDesc, ModelError};
use detect::TextDetector;
use layout::{Element, Image, Layout};
use lamina_common::manifest::LayerRole;
use lamina_common::params::DecomposeParams;
use lamina_families::design::{identity, min_coverage, FAMILY, MAX_DESIGN_LAYERS};

pub struct DesignModel {
    desc: ModelDesc,
    detector: TextDetector,
    device: Device,
}

/// Makes `design` on `device` (the detector runs there; the layout on the CPU).
pub fn load(_text: &str, device: Device) -> Result<Box<dyn Model>, ModelError> {
    let detector = TextDetector::load(device)?;
    let id = identity();
    // Per pixel: the input and its copies (planar f32, 12 B each: the image, the text's
    // unmixed background, the background layer), the region labels and sizes (8 B) and
    // masks, and the layers handed back (16 B a layer, the most layers at once).
    let bytes_per_pixel = 4 * 12 + 16 + 16 * u64::from(MAX_DESIGN_LAYERS);
    let desc = ModelDesc {
        id: id.id,
        weights_sha256: id.weights_sha256,
        layers: usize::from(MAX_DESIGN_LAYERS),
        size_multiple: 1,
        max_side: 16384,
        bytes_per_pixel,
        family: &FAMILY,
        rule: FAMILY.rule,
    };
    Ok(Box::new(DesignModel { desc, detector, device }))
}

impl Model for DesignModel {
    fn desc(&self) -> &ModelDesc {
        &self.desc
    }

    fn device(&self) -> Device {
        self.device
    }

    fn decompose(&self, batch: &Batch<'_>, params: &DecomposeParams) -> Result<Decomposed, ModelError> {
        self.check_params(params)?;
        let torch = |source| ModelError::Torch { model: self.desc.id.clone(), source };
        let mut stacks = Vec::with_capacity(batch.sizes.len());
        for (b, &(h, w)) in batch.sizes.iter().enumerate() {
            let image = batch.images.get(b as i64).narrow(1, 0, h).narrow(2, 0, w);
            let texts = self.detector.detect(&image, w as usize, h as usize).map_err(torch)?;
            let rgb = Vec::<f32>::try_from(image.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().view([-1])).map_err(torch)?;
            let (w, h) = (w as usize, h as usize);
            let min_pixels = min_coverage(params) * (w * h) as f64;
            let most = params.layer_target().map_or(usize::from(MAX_DESIGN_LAYERS), usize::from);
            let layout = layout::decompose(&Image { rgb: &rgb, width: w, height: h }, &texts, min_pixels, most.saturating_sub(1));
            stacks.push(self.stack(layout, w, h).map_err(torch)?);
        }
        // One tensor for the batch: every image's stack padded with empty layers to the most.
        let most = stacks.iter().map(|(t, _)| t.size()[0]).max().unwrap_or(1);
        let (ph, pw) = (batch.images.size()[2], batch.images.size()[3]);
        let mut layers = Vec::with_capacity(stacks.len());
        let mut sources = Vec::with_capacity(stacks.len());
        let mut roles = Vec::with_capacity(stacks.len());
        for ((stack, mut kinds), &(h, w)) in stacks.into_iter().zip(batch.sizes) {
            let l = stack.size()[0];
            let padded = stack.f_constant_pad_nd([0, pw - w, 0, ph - h, 0, 0, 0, most - l]).map_err(torch)?;
            layers.push(padded);
            kinds.resize(most as usize, LayerRole::Shape);
            sources.push((0..l as usize).map(|i| vec![i]).collect());
            roles.push(kinds);
        }
        let layers = Tensor::f_stack(&layers, 0).map_err(torch)?.to_device(self.device);
        let n = batch.sizes.len();
        Ok(Decomposed { layers, sources, palettes: vec![None; n], roles })
    }
}

impl DesignModel {
    /// One image's layers, `[L,4,H,W]` straight RGBA, and each layer's role.
    fn stack(&self, layout: Layout, w: usize, h: usize) -> Result<(Tensor, Vec<LayerRole>), tch::TchError> {
        let (wi, hi) = (w as i64, h as i64);
        let background = Tensor::from_slice(&layout.background).view([1, 3, hi, wi]);
        // A photographic background is filled under the elements taken off it.
        let known = background.isnan().logical_not().to_kind(Kind::Float).narrow(1, 0, 1);
        let background = if bool::try_from(known.min().lt(1.0))? { push_pull(&background.nan_to_num(0.0, None, None), &known).clamp(0.0, 1.0) } else { background };
        let mut layers = vec![Tensor::cat(&[background.squeeze_dim(0), Tensor::ones([1, hi, wi], (Kind::Float, Device::Cpu))], 0)];
        let mut roles = vec![LayerRole::Background];
        for e in &layout.elements {
            layers.push(place(e, w, h));
            roles.push(match e.kind {
                layout::Kind::Image => LayerRole::Image,
                layout::Kind::Shape => LayerRole::Shape,
                layout::Kind::Text => LayerRole::Text,
            });
        }
        Ok((Tensor::f_stack(&layers, 0)?, roles))
    }
}

/// An element placed on a transparent `w` x `h` canvas: `[4,H,W]`.
fn place(e: &Element, w: usize, h: usize) -> Tensor {
    let inside = Tensor::from_slice(&e.rgba).view([4, e.height as i64, e.width as i64]);
    let (left, top) = (e.x0 as i64, e.y0 as i64);
    let (right, bottom) = ((w - e.x0 - e.width) as i64, (h - e.y0 - e.height) as i64);
    inside.constant_pad_nd([left, right, top, bottom])
}

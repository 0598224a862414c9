//! The design engine: the text detector on the model's device (`detect.rs`), then the
//! graphic taken apart on the CPU (`layout.rs`), then the layers stacked bottom to top:
//! background, images, shapes, text, and the words of each text layer read by the
//! recogniser on the model's device (`read.rs`). Each layer's role and words travel with it
//! to the manifest.

pub mod detect;
pub mod layout;
mod pinned;
pub mod read;

use tch::{Device, Kind, Tensor};

use crate::objects::push_pull;
use crate::{Batch, Decoded, Decomposed, LayerSink, Model, ModelDesc, ModelError};
use detect::TextDetector;
use layout::{Element, Image, Layout};
use lamina_common::manifest::{LayerLabel, LayerRole};
use read::TextReader;
use lamina_common::params::DecomposeParams;
use lamina_families::design::{identity, min_coverage, FAMILY, MAX_DESIGN_LAYERS};

/// Bytes per pixel of the streamed path ([`Model::decompose_large`]): the layout's own
/// working set (the unmixed copy and the background: 24 B; region labels, sizes and border
/// counts: 20 B; masks and owners: 12 B; region boxes: up to 40 B; joining a shape's pieces:
/// 9 B; a tinted panel's candidate pixels and their surface: 20 B) and the photographic background's fill (16 B). The
/// layers themselves go out in bands of [`BAND_ROWS`] rows.
const STREAMED_BYTES_PER_PIXEL: u64 = 141;
/// Rows per band handed to the encoder on the streamed path.
const BAND_ROWS: usize = 64;

pub struct DesignModel {
    desc: ModelDesc,
    detector: TextDetector,
    reader: TextReader,
    device: Device,
}

/// Makes `design` on `device` (the detector runs there; the layout on the CPU).
pub fn load(_text: &str, device: Device) -> Result<Box<dyn Model>, ModelError> {
    let detector = TextDetector::load(device)?;
    let reader = TextReader::load(device)?;
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
    Ok(Box::new(DesignModel { desc, detector, reader, device }))
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
            let image = Image { rgb: &rgb, width: w, height: h };
            let layout = layout::decompose(&image, &texts, min_pixels, most.saturating_sub(1));
            let labels = self.labels(&image, &layout.elements).map_err(torch)?;
            stacks.push((self.stack(layout, w, h).map_err(torch)?, labels));
        }
        // One tensor for the batch: every image's stack padded with empty layers to the most.
        let most = stacks.iter().map(|(t, _)| t.size()[0]).max().unwrap_or(1);
        let (ph, pw) = (batch.images.size()[2], batch.images.size()[3]);
        let mut layers = Vec::with_capacity(stacks.len());
        let mut sources = Vec::with_capacity(stacks.len());
        let mut all_labels = Vec::with_capacity(stacks.len());
        for ((stack, mut labels), &(h, w)) in stacks.into_iter().zip(batch.sizes) {
            let l = stack.size()[0];
            let padded = stack.f_constant_pad_nd([0, pw - w, 0, ph - h, 0, 0, 0, most - l]).map_err(torch)?;
            layers.push(padded);
            labels.resize(most as usize, LayerLabel::from(LayerRole::Shape));
            sources.push((0..l as usize).map(|i| vec![i]).collect());
            all_labels.push(labels);
        }
        let layers = Tensor::f_stack(&layers, 0).map_err(torch)?.to_device(self.device);
        let n = batch.sizes.len();
        Ok(Decomposed { layers, sources, palettes: vec![None; n], labels: all_labels })
    }

    /// An image too large to hand back whole: the same layout, its layers streamed in bands
    /// from the elements' own boxes, so memory is the layout's working set, not a layer stack.
    fn decompose_large(&self, image: &Decoded, params: &DecomposeParams, budget: u64, sink: &mut dyn LayerSink) -> Result<(), ModelError> {
        self.check_params(params)?;
        let (w, h) = (image.width as usize, image.height as usize);
        let need = STREAMED_BYTES_PER_PIXEL * (w * h) as u64;
        if need > budget {
            return Err(ModelError::TooLarge {
                model: self.desc.id.clone(),
                reason: format!(
                    "a {w}x{h} graphic needs about {} to take apart, over the memory budget of {} (raise --memory-budget)",
                    lamina_common::bytes::human(need),
                    lamina_common::bytes::human(budget)
                ),
            });
        }
        let torch = |source| ModelError::Torch { model: self.desc.id.clone(), source };
        let tensor = Tensor::from_slice(&image.rgb).view([3, h as i64, w as i64]).to_device(self.device);
        let texts = self.detector.detect(&tensor, w, h).map_err(torch)?;
        drop(tensor);
        let min_pixels = min_coverage(params) * (w * h) as f64;
        let most = params.layer_target().map_or(usize::from(MAX_DESIGN_LAYERS), usize::from);
        let whole = Image { rgb: &image.rgb, width: w, height: h };
        let mut layout = layout::decompose(&whole, &texts, min_pixels, most.saturating_sub(1));
        let labels = self.labels(&whole, &layout.elements).map_err(torch)?;
        if layout.background.iter().any(|v| v.is_nan()) {
            let filled = fill(&layout.background, w, h).map_err(torch)?;
            layout.background = filled;
        }
        sink.labels(labels);
        sink.begin((0..=layout.elements.len()).map(|i| vec![i]).collect(), None)?;
        let n = w * h;
        for y0 in (0..h).step_by(BAND_ROWS) {
            let rows = BAND_ROWS.min(h - y0);
            let mut band = Vec::with_capacity(layout.elements.len() + 1);
            let mut bg = vec![255u8; rows * w * 4];
            for r in 0..rows {
                for x in 0..w {
                    let i = (y0 + r) * w + x;
                    for c in 0..3 {
                        bg[(r * w + x) * 4 + c] = byte(layout.background[c * n + i]);
                    }
                }
            }
            band.push(bg);
            for e in &layout.elements {
                let mut rgba = vec![0u8; rows * w * 4];
                let m = e.width * e.height;
                for r in 0..rows {
                    let y = y0 + r;
                    if y < e.y0 || y >= e.y0 + e.height {
                        continue;
                    }
                    for x in e.x0..e.x0 + e.width {
                        let j = (y - e.y0) * e.width + (x - e.x0);
                        let a = byte(e.rgba[3 * m + j]);
                        if a == 0 {
                            continue;
                        }
                        let out = (r * w + x) * 4;
                        for c in 0..3 {
                            rgba[out + c] = byte(e.rgba[c * m + j]);
                        }
                        rgba[out + 3] = a;
                    }
                }
                band.push(rgba);
            }
            sink.rows(band)?;
        }
        Ok(())
    }
}

/// A value in [0,1] as the 8-bit value [`crate::quantise`] makes of it.
fn byte(v: f32) -> u8 {
    (v * 255.0 + 0.5).floor().clamp(0.0, 255.0) as u8
}

fn role(kind: layout::Kind) -> LayerRole {
    match kind {
        layout::Kind::Image => LayerRole::Image,
        layout::Kind::Shape => LayerRole::Shape,
        layout::Kind::Text => LayerRole::Text,
    }
}

/// A photographic background (planar RGB, NaN where elements were taken off) filled from
/// around the holes by the object models' push-pull.
fn fill(background: &[f32], w: usize, h: usize) -> Result<Vec<f32>, tch::TchError> {
    let (wi, hi) = (w as i64, h as i64);
    let t = Tensor::from_slice(background).view([1, 3, hi, wi]);
    let known = t.isnan().logical_not().to_kind(Kind::Float).narrow(1, 0, 1);
    let filled = push_pull(&t.nan_to_num(0.0, None, None), &known).clamp(0.0, 1.0);
    Vec::<f32>::try_from(filled.contiguous().view([-1]))
}

impl DesignModel {
    /// Each layer's role, bottom first, and for a text layer the words the recogniser reads
    /// in its lines (all of them read in one go).
    fn labels(&self, image: &Image<'_>, elements: &[Element]) -> Result<Vec<LayerLabel>, tch::TchError> {
        let lines: Vec<read::Line> = elements.iter().filter(|e| e.kind == layout::Kind::Text).flat_map(|e| e.lines.iter().copied()).collect();
        let mut read = self.reader.read(image, &lines, self.device)?.into_iter();
        let mut labels = vec![LayerLabel::from(LayerRole::Background)];
        for e in elements {
            let text = match e.kind {
                layout::Kind::Text => read::words(&e.lines.iter().map(|&l| (l, read.next().flatten())).collect::<Vec<_>>()),
                _ => None,
            };
            labels.push(LayerLabel { role: role(e.kind), text });
        }
        Ok(labels)
    }

    /// One image's layers, `[L,4,H,W]` straight RGBA.
    fn stack(&self, layout: Layout, w: usize, h: usize) -> Result<Tensor, tch::TchError> {
        let (wi, hi) = (w as i64, h as i64);
        // A photographic background is filled under the elements taken off it.
        let background = if layout.background.iter().any(|v| v.is_nan()) { fill(&layout.background, w, h)? } else { layout.background };
        let background = Tensor::from_slice(&background).view([1, 3, hi, wi]);
        let mut layers = vec![Tensor::cat(&[background.squeeze_dim(0), Tensor::ones([1, hi, wi], (Kind::Float, Device::Cpu))], 0)];
        for e in &layout.elements {
            layers.push(place(e, w, h));
        }
        Tensor::f_stack(&layers, 0)
    }
}

/// An element placed on a transparent `w` x `h` canvas: `[4,H,W]`.
fn place(e: &Element, w: usize, h: usize) -> Tensor {
    let inside = Tensor::from_slice(&e.rgba).view([4, e.height as i64, e.width as i64]);
    let (left, top) = (e.x0 as i64, e.y0 as i64);
    let (right, bottom) = ((w - e.x0 - e.width) as i64, (h - e.y0 - e.height) as i64);
    inside.constant_pad_nd([left, right, top, bottom])
}

//! Object layers of an image too large to peel whole within the memory budget.
//!
//! The matte network sees a fixed 320^2 or 1024^2 input whatever the image's size, so the
//! loop loses nothing by running on a reduced copy (area means, sized to the budget). What
//! must be full size is brought back a band of rows at a time, so no full-resolution
//! intermediate is ever whole in memory:
//!
//! - each object's alpha and estimated foreground, and each filled background, bilinearly
//!   from the reduced run;
//! - the image's own detail, pixel by pixel: where an object is soft the background takes
//!   the rest of the pixel (`B = (C - a F) / (1 - a)`, with the smooth estimated `F`, so no
//!   halo), where it is nearly opaque the object's colour does (`F = (C - (1 - a) B) / a`),
//!   so the layers recomposite to the full-size image, not to its reduced copy.

use tch::{Kind, Tensor};

use super::{known, stack_layers, ObjectModel, Peeled};
use crate::Decoded;
use crate::resample::{bands, crop, reduce, reduced_size};
use crate::{quantise, LayerSink, ModelError};
use lamina_common::params::DecomposeParams;

/// Bytes per full-size pixel of one band: the band's image and, per object, its alpha,
/// colours, background and temporaries, and the quantised layers.
const BAND_BYTES_PER_PIXEL: u64 = 400;
/// Below this alpha the object's colour is the smooth estimate; above it, what the pixel
/// leaves after the background.
const SOLVE_FOR_COLOUR: f64 = 0.1;

/// `1 - alpha`.
fn rest_exact(alpha: &Tensor) -> Tensor {
    alpha.ones_like() - alpha
}

impl ObjectModel {
    pub(super) fn peel_large(&self, image: &Decoded, params: &DecomposeParams, budget: u64, sink: &mut dyn LayerSink) -> Result<(), ModelError> {
        let (h, w) = (i64::from(image.height), i64::from(image.width));
        // Half the budget for the reduced run, a quarter for each band.
        let target = (budget / 2 / self.desc.bytes_per_pixel.max(1)).max(64 * 64);
        let (lh, lw) = reduced_size((h, w), target);
        let low = reduce(&image.rgb, 3, (h, w), (lh, lw), self.device);
        let found = tch::no_grad(|| self.peel(&low, params))?;
        let count = found.len() + 1;
        sink.begin((0..count).map(|i| vec![i]).collect(), None)?;
        let band_rows = ((budget / 4 / BAND_BYTES_PER_PIXEL / count as u64 / w.max(1) as u64) as i64).clamp(8, 1024);
        bands(&image.rgb, (h, w), (lh, lw), band_rows, self.device, |band| {
            let layers = tch::no_grad(|| {
                let mut current = band.full.shallow_clone();
                let mut peeled = Vec::with_capacity(found.len());
                for p in &found {
                    let alpha = band.up(&p.alpha).clamp(0.0, 1.0);
                    let smooth = band.up(&p.colour);
                    let fill = band.up(&p.under);
                    let rest: Tensor = 1.0 - &alpha;
                    let rest = rest.clamp_min(1e-3);
                    let back = ((&current - &alpha * &smooth) / &rest).clamp(0.0, 1.0);
                    let k = known(&alpha);
                    let under = &k * back + (1.0 - &k) * fill;
                    let solved: Tensor = (&current - &rest_exact(&alpha) * &under) / alpha.clamp_min(1e-3);
                    let solved = solved.clamp(0.0, 1.0);
                    let colour = solved.where_self(&alpha.gt(SOLVE_FOR_COLOUR), &smooth);
                    let parts = if p.parts.len() == 1 { vec![alpha.shallow_clone()] } else { p.parts.iter().map(|part| band.up(part).clamp(0.0, 1.0)).collect() };
                    peeled.push(Peeled { colour, alpha, parts, under: under.shallow_clone() });
                    current = under;
                }
                let mut layers = Tensor::stack(&stack_layers(&current, peeled), 1).get(0);
                if let Some(a) = &image.alpha {
                    let rows = (band.y0 as usize, band.y1 as usize);
                    let a = Tensor::from_slice(&crop(a, 1, (h as usize, w as usize), rows, (0, w as usize))).view([1, 1, band.y1 - band.y0, w]).to_device(self.device);
                    layers = Tensor::cat(&[layers.narrow(1, 0, 3), layers.narrow(1, 3, 1) * a], 1);
                }
                layers.to_kind(Kind::Float)
            });
            sink.rows(quantise(&layers).map_err(|source| ModelError::Torch { model: self.desc.id.clone(), source })?)
        })
    }
}

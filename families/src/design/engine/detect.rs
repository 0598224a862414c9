//! The text detector: PP-OCRv6's DB detector, converted to TorchScript by
//! `ops/fetch-models.sh` (see models/design/README.md), and its post-processing as PaddleOCR
//! does it: the probability map thresholded, its connected kernels scored, each kept kernel
//! grown back by the unclip distance to the box of the words it holds.

use std::path::PathBuf;

use tch::{Device, Kind, Tensor};

use crate::ModelError;
use lamina_families::design::TEXT_DETECTOR_SHA256;

/// The TorchScript file in the models folder, and the record of where it came from.
pub const FILE: &str = "ppocr_det.pt";

/// PaddleOCR's settings for this detector (rapidocr's `config.yaml`): the shorter side is
/// brought up to 736 pixels; pixels above 0.3 are text; a kernel whose mean probability is
/// under 0.5 is dropped; kernels grow by 1.6 times their area over their perimeter.
const LIMIT_SIDE: f64 = 736.0;
const THRESHOLD: f32 = 0.3;
const BOX_THRESHOLD: f32 = 0.5;
const UNCLIP_RATIO: f64 = 1.6;
/// The longest side the detector sees: larger graphics are reduced (their words are large
/// enough to be found at this size), so its memory and time stay bounded.
const MAX_SIDE: f64 = 1536.0;

/// A box of words, in image pixels (`x1`, `y1` exclusive).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextBox {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
    /// The detector's mean probability over the kernel.
    pub score: f32,
}

pub struct TextDetector {
    module: tch::CModule,
    pub path: PathBuf,
}

impl TextDetector {
    /// Loads the detector, refusing a file that is not the conversion of the pinned ONNX.
    pub fn load(device: Device) -> Result<TextDetector, ModelError> {
        let pinned = super::pinned::load(FILE, "text detector", TEXT_DETECTOR_SHA256, &[], device)?;
        Ok(TextDetector { module: pinned.module, path: pinned.path })
    }

    /// The network on a prepared input (`[B,3,H,W]`, BGR in [-1,1], sides multiples of 32):
    /// its probability map `[B,1,H,W]`, for checks against the ONNX file.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor, tch::TchError> {
        tch::no_grad(|| self.module.forward_ts(&[input]))
    }

    /// The input the network gets for `image` (`[3,H,W]` RGB in [0,1]): BGR in [-1,1], the
    /// shorter side brought to 736 pixels (the longer at most 1536), each a multiple of 32.
    pub fn input(image: &Tensor) -> Result<Tensor, tch::TchError> {
        let (_, h, w) = image.size3()?;
        let short = h.min(w) as f64;
        let long = h.max(w) as f64;
        let ratio = if short < LIMIT_SIDE { LIMIT_SIDE / short } else { 1.0 }.min(MAX_SIDE / long);
        let side = |v: i64| (((v as f64 * ratio) / 32.0).round() as i64 * 32).max(32);
        // BGR, as PaddleOCR's models were trained, scaled to [-1, 1].
        let bgr = image.flip([0]).unsqueeze(0);
        Ok(bgr.f_upsample_bilinear2d([side(h), side(w)], false, None, None)? * 2.0 - 1.0)
    }

    /// The probability map of `image` (`[3,H,W]` RGB in [0,1], on the detector's device) at
    /// the detector's working size, as `(map, width, height)` on the CPU.
    pub fn probability(&self, image: &Tensor) -> Result<(Vec<f32>, usize, usize), tch::TchError> {
        tch::no_grad(|| {
            let input = Self::input(image)?;
            let (rh, rw) = (input.size()[2], input.size()[3]);
            let out = self.module.forward_ts(&[input])?;
            let map = out.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?.f_view([-1])?;
            Ok((Vec::<f32>::try_from(&map)?, rw as usize, rh as usize))
        })
    }

    /// The boxes of words in a `width` x `height` image (`[3,H,W]` RGB in [0,1]).
    pub fn detect(&self, image: &Tensor, width: usize, height: usize) -> Result<Vec<TextBox>, tch::TchError> {
        let (map, mw, mh) = self.probability(image)?;
        Ok(boxes(&map, mw, mh, width, height))
    }
}

/// PaddleOCR's post-processing on a `mw` x `mh` probability map, boxes scaled to the image.
pub fn boxes(map: &[f32], mw: usize, mh: usize, width: usize, height: usize) -> Vec<TextBox> {
    // Thresholded, then dilated by a 2x2 kernel (use_dilation), as PaddleOCR does.
    let above: Vec<bool> = map.iter().map(|&p| p > THRESHOLD).collect();
    let mut mask = above.clone();
    for y in 0..mh {
        for x in 0..mw {
            if above[y * mw + x] {
                for (dy, dx) in [(0, 1), (1, 0), (1, 1)] {
                    let (yy, xx) = (y + dy, x + dx);
                    if yy < mh && xx < mw {
                        mask[yy * mw + xx] = true;
                    }
                }
            }
        }
    }
    let (sx, sy) = (width as f64 / mw as f64, height as f64 / mh as f64);
    let mut seen = vec![false; mw * mh];
    let mut found = Vec::new();
    let mut stack = Vec::new();
    for start in 0..mw * mh {
        if !mask[start] || seen[start] {
            continue;
        }
        // One kernel: its pixels' box, area and summed probability.
        let (mut x0, mut y0, mut x1, mut y1, mut area, mut sum) = (usize::MAX, usize::MAX, 0, 0, 0usize, 0f64);
        seen[start] = true;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % mw, i / mw);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            area += 1;
            sum += f64::from(map[i]);
            let mut visit = |j: usize| {
                if mask[j] && !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < mw {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - mw);
            }
            if y + 1 < mh {
                visit(i + mw);
            }
        }
        let (bw, bh) = ((x1 - x0 + 1) as f64, (y1 - y0 + 1) as f64);
        let score = (sum / area as f64) as f32;
        // PaddleOCR drops boxes under 3 pixels a side and kernels under the box threshold.
        if bw.min(bh) < 3.0 || score < BOX_THRESHOLD {
            continue;
        }
        let grow = bw * bh * UNCLIP_RATIO / (2.0 * (bw + bh));
        let scale = |v: f64, s: f64, limit: usize| ((v * s).round().max(0.0) as usize).min(limit);
        found.push(TextBox {
            x0: scale(x0 as f64 - grow, sx, width),
            y0: scale(y0 as f64 - grow, sy, height),
            x1: scale(x1 as f64 + 1.0 + grow, sx, width),
            y1: scale(y1 as f64 + 1.0 + grow, sy, height),
            score,
        });
    }
    found.retain(|b| b.x1 > b.x0 && b.y1 > b.y0);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_grows_by_the_unclip_distance_and_weak_ones_are_dropped() {
        let (mw, mh) = (40, 20);
        let mut map = vec![0.0f32; mw * mh];
        // A strong 10x4 kernel and a weak one.
        for y in 8..12 {
            for x in 5..15 {
                map[y * mw + x] = 0.9;
            }
            for x in 25..35 {
                map[y * mw + x] = 0.4;
            }
        }
        let found = boxes(&map, mw, mh, 80, 40);
        assert_eq!(found.len(), 1, "{found:?}");
        let b = found[0];
        // Dilated to 11x5; grown by 11*5*1.6/32 = 2.75 each side; scaled by 2.
        assert_eq!((b.x0, b.y0, b.x1, b.y1), (5, 11, 38, 32), "{b:?}");
    }
}

//! Fast mode's full-resolution pass on a CPU, fused into one loop per pixel.
//!
//! The tensor form (`large.rs`, used on CUDA) makes some forty passes over every full-size
//! intermediate (bilinear sampling of the guided filter's coefficients and of the colours,
//! normalisation, the colour correction, the normal-blend conversion, quantisation), each
//! one written to memory and read back: at 2048^2 with seven layers that is gigabytes of
//! traffic for arithmetic that fits in registers. Here each pixel is done start to finish:
//! the reduced grids are sampled (rows lerped once per output row, columns per pixel), the
//! seven alphas, colours and their bytes computed in place, and only the RGBA bytes written.
//! Rows run in parallel. Same arithmetic as the tensor form, in the same order (a unit test
//! holds the two to one step of 8 bits).

use rayon::prelude::*;

use super::K;
use crate::resample::sample_at;

/// The reduced grids fast mode brings to full size, on the host: the guided filter's
/// coefficients `a` and `b` (`[n, lh, lw]`, the alpha is `a * luma + b`) and the layers'
/// colours (`[n * 3, lh, lw]`, layer-major), for an image reduced to `lh x lw`.
pub(super) struct Reduced {
    pub n: usize,
    pub lh: usize,
    pub lw: usize,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    pub colour: Vec<f32>,
}

fn byte(v: f32) -> u8 {
    (v * 255.0 + 0.5).floor().clamp(0.0, 255.0) as u8
}

impl Reduced {
    /// Rows `y0..y1` of every layer as 8-bit straight RGBA, full width (one buffer per
    /// layer, as `quantise` makes them), from the image's planar RGB `rgb` of `h x w`.
    pub fn rows(&self, rgb: &[f32], (h, w): (usize, usize), (y0, y1): (usize, usize)) -> Vec<Vec<u8>> {
        let n = self.n.min(K);
        let columns: Vec<(usize, usize, f32)> = (0..w).map(|x| sample_at(x, self.lw, w)).collect();
        let per_row: Vec<Vec<u8>> = (y0..y1).into_par_iter().map(|y| self.row(rgb, (h, w), y, n, &columns)).collect();
        (0..n)
            .map(|i| {
                let mut layer = Vec::with_capacity((y1 - y0) * w * 4);
                for row in &per_row {
                    layer.extend_from_slice(&row[i * w * 4..(i + 1) * w * 4]);
                }
                layer
            })
            .collect()
    }

    /// One output row: `n` layers of `w` RGBA pixels, layer after layer.
    fn row(&self, rgb: &[f32], (h, w): (usize, usize), y: usize, n: usize, columns: &[(usize, usize, f32)]) -> Vec<u8> {
        let (lh, lw) = (self.lh, self.lw);
        let (top, bottom, t) = sample_at(y, lh, h);
        // The reduced grids' rows lerped to this row: a, b, then the colours, lw each.
        let channels = 5 * n;
        let mut lerped = vec![0f32; channels * lw];
        let grids = [(&self.a, 0usize, n), (&self.b, n, n), (&self.colour, 2 * n, 3 * n)];
        for (grid, first, count) in grids {
            for c in 0..count {
                let plane = &grid[c * lh * lw..(c + 1) * lh * lw];
                let (up, down) = (&plane[top * lw..(top + 1) * lw], &plane[bottom * lw..(bottom + 1) * lw]);
                let out = &mut lerped[(first + c) * lw..(first + c + 1) * lw];
                for ((o, &u), &d) in out.iter_mut().zip(up).zip(down) {
                    *o = u + (d - u) * t;
                }
            }
        }
        let sample = |channel: usize, (left, right, s): (usize, usize, f32)| {
            let line = &lerped[channel * lw..(channel + 1) * lw];
            line[left] + (line[right] - line[left]) * s
        };
        let plane = h * w;
        let mut out = vec![0u8; n * w * 4];
        for (x, &at) in columns.iter().enumerate() {
            let p = y * w + x;
            let full = [rgb[p], rgb[plane + p], rgb[2 * plane + p]];
            let luma = full[0] * 0.299 + full[1] * 0.587 + full[2] * 0.114;
            let mut alpha = [0f32; K];
            let mut sum = 0f32;
            for (i, a) in alpha.iter_mut().enumerate().take(n) {
                *a = (sample(i, at) * luma + sample(n + i, at)).clamp(0.0, 1.0);
                sum += *a;
            }
            let mut colour = [[0f32; 3]; K];
            let mut rebuilt = [0f32; 3];
            for i in 0..n {
                alpha[i] /= sum + 1e-8;
                for c in 0..3 {
                    colour[i][c] = sample(2 * n + i * 3 + c, at);
                    rebuilt[c] += colour[i][c] * alpha[i];
                }
            }
            let mut cumulative = 0f32;
            for i in 0..n {
                cumulative += alpha[i];
                let normal = if cumulative > 1e-6 { (alpha[i] / cumulative.max(1e-12)).clamp(0.0, 1.0) } else { 0.0 };
                let a = byte(normal);
                let px = &mut out[(i * w + x) * 4..(i * w + x) * 4 + 4];
                px[3] = a;
                if a > 0 {
                    for c in 0..3 {
                        px[c] = byte((colour[i][c] + full[c] - rebuilt[c]).clamp(0.0, 1.0));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::resample::{axis, sample_at};

    #[test]
    fn positions_match_the_tensor_resampler() {
        for (full, n) in [(37, 10), (1200, 1154), (40, 10)] {
            let (lo, hi, t) = axis(0, full, n, full, tch::Device::Cpu);
            let (lo, hi, t) = (Vec::<i64>::try_from(lo).unwrap(), Vec::<i64>::try_from(hi).unwrap(), Vec::<f32>::try_from(t).unwrap());
            for o in 0..full as usize {
                let (l, h, s) = sample_at(o, n as usize, full as usize);
                assert_eq!((l as i64, h as i64), (lo[o], hi[o]), "{o}");
                assert!((s - t[o]).abs() < 1e-6, "{o}");
            }
        }
    }
}

//! Foreground and background colours under a soft matte: multi-level foreground estimation
//! (Germer, Uelwer, Conrad, Harmeling, "Fast Multi-Level Foreground Estimation", ICPR 2020),
//! vectorised over the batch in tch so it runs where the model runs.
//!
//! Where a matte is soft (hair, fur, anti-aliased edges) a pixel is `a*F + (1-a)*B`. Cutting
//! the object out with the pixel's own colour (`F = I`) keeps the old background in its edge:
//! the halo users see when the object is moved onto another background. This solves, level
//! by level from 1x1 up to full size, for the smooth `F` and `B` that reproduce the image, with
//! a smoothness weight that falls where the matte changes. The paper updates pixels in place
//! (Gauss-Seidel); here every pixel updates at once (Jacobi), which is what a GPU does well.

use tch::{Kind, Tensor};

/// The paper's constants.
const REGULARISATION: f64 = 1e-5;
const GRADIENT_WEIGHT: f64 = 1.0;
/// Iterations on levels up to `SMALL_SIZE` pixels on a side, and on the larger ones. Jacobi
/// updates spread more slowly than in-place ones, so the large levels get one more than the
/// paper's 2.
const SMALL_ITERATIONS: usize = 10;
const BIG_ITERATIONS: usize = 3;
const SMALL_SIZE: i64 = 32;

/// The foreground and background colours (`[B,3,H,W]` each, in [0,1]) of `image`
/// (`[B,3,H,W]`) under `alpha` (`[B,1,H,W]`).
pub fn estimate(image: &Tensor, alpha: &Tensor) -> (Tensor, Tensor) {
    tch::no_grad(|| {
        let size = image.size();
        let (h0, w0) = (size[2], size[3]);
        let levels = (h0.max(w0) as f64).log2().ceil().max(1.0) as i32;
        let mut f = image.mean_dim([2, 3].as_slice(), true, Kind::Float);
        let mut b = f.shallow_clone();
        for level in 0..=levels {
            let t = f64::from(level) / f64::from(levels);
            let h = ((h0 as f64).powf(t).round() as i64).clamp(1, h0);
            let w = ((w0 as f64).powf(t).round() as i64).clamp(1, w0);
            let (img, a) = if (h, w) == (h0, w0) { (image.shallow_clone(), alpha.shallow_clone()) } else { (area(image, h, w), area(alpha, h, w)) };
            f = nearest(&f, h, w);
            b = nearest(&b, h, w);
            let iterations = if h <= SMALL_SIZE && w <= SMALL_SIZE { SMALL_ITERATIONS } else { BIG_ITERATIONS };
            for _ in 0..iterations {
                (f, b) = update(&img, &a, &f, &b);
            }
        }
        (f, b)
    })
}

/// One Jacobi sweep: each pixel's least-squares `F` and `B` given its four neighbours'.
fn update(image: &Tensor, alpha: &Tensor, f: &Tensor, b: &Tensor) -> (Tensor, Tensor) {
    let a0 = alpha;
    let a1 = 1.0 - alpha;
    let mut a00 = a0 * a0;
    let mut a11 = &a1 * &a1;
    let a01 = a0 * &a1;
    let mut b0 = a0 * image;
    let mut b1 = &a1 * image;
    let (alpha_n, f_n, b_n) = (neighbours(alpha), neighbours(f), neighbours(b));
    for ((an, fn_), bn) in alpha_n.iter().zip(&f_n).zip(&b_n) {
        let weight = (a0 - an).abs() * GRADIENT_WEIGHT + REGULARISATION;
        a00 += &weight;
        a11 += &weight;
        b0 += &weight * fn_;
        b1 += &weight * bn;
    }
    let det = &a00 * &a11 - &a01 * &a01;
    let f = ((&a11 * &b0 - &a01 * &b1) / &det).clamp(0.0, 1.0);
    let b = ((&a00 * &b1 - &a01 * &b0) / &det).clamp(0.0, 1.0);
    (f, b)
}

/// The four neighbours of every pixel (edges repeated), as whole tensors.
fn neighbours(x: &Tensor) -> [Tensor; 4] {
    let size = x.size();
    let (h, w) = (size[2], size[3]);
    let padded = x.replication_pad2d([1, 1, 1, 1]);
    [
        padded.narrow(2, 0, h).narrow(3, 1, w),
        padded.narrow(2, 2, h).narrow(3, 1, w),
        padded.narrow(2, 1, h).narrow(3, 0, w),
        padded.narrow(2, 1, h).narrow(3, 2, w),
    ]
}

/// Area-averaged downscale.
pub fn area(x: &Tensor, h: i64, w: i64) -> Tensor {
    x.adaptive_avg_pool2d([h, w])
}

fn nearest(x: &Tensor, h: i64, w: i64) -> Tensor {
    x.upsample_nearest2d([h, w], None, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn recovers_the_foreground_colour_under_a_soft_edge() {
        // Red over blue with a horizontal ramp of alpha: the pixels in the ramp are purple,
        // but the estimated foreground there is red and the background blue.
        let (h, w) = (16i64, 32i64);
        let opts = (Kind::Float, Device::Cpu);
        let alpha = Tensor::linspace(-1.0, 2.0, w, opts).clamp(0.0, 1.0).view([1, 1, 1, w]).expand([1, 1, h, w], false).contiguous();
        let red = Tensor::from_slice(&[1.0f32, 0.0, 0.0]).view([1, 3, 1, 1]);
        let blue = Tensor::from_slice(&[0.0f32, 0.0, 1.0]).view([1, 3, 1, 1]);
        let image = &alpha * &red + (1.0 - &alpha) * &blue;
        let (f, b) = estimate(&image, &alpha);
        let soft = alpha.gt(0.1).logical_and(&alpha.lt(0.9));
        let f_err = f64::try_from((&f - &red).abs().sum_dim_intlist(1, true, Kind::Float).masked_select(&soft).max()).unwrap();
        let b_err = f64::try_from((&b - &blue).abs().sum_dim_intlist(1, true, Kind::Float).masked_select(&soft).max()).unwrap();
        assert!(f_err < 0.05, "foreground off by {f_err}");
        assert!(b_err < 0.05, "background off by {b_err}");
        // And the estimate reproduces the image.
        let again: Tensor = &alpha * &f + (1.0 - &alpha) * &b;
        let off: Tensor = again - &image;
        assert!(f64::try_from(off.abs().max()).unwrap() < 0.02);
    }
}

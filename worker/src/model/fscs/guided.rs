//! The guided filter (He, Sun, Tang), vectorised over batch and layers: every layer of every
//! image is filtered in one set of tensor ops, with the image's luma as the guide.

use tch::Tensor;

/// Mean over a (2r+1)^2 window, normalised by the number of pixels inside the image at the
/// borders (so edges are not darkened).
fn box_mean(x: &Tensor, r: i64) -> Tensor {
    let k = 2 * r + 1;
    x.avg_pool2d([k, k], [1, 1], [r, r], false, false, None::<i64>)
}

/// Filters `p` (`[B,L,H,W]`, one channel per layer) guided by `guide` (`[B,1,H,W]`).
pub fn guided_filter(guide: &Tensor, p: &Tensor, r: i64, eps: f64) -> Tensor {
    let (a, b) = guided_coefficients(guide, p, r, eps);
    a * guide + b
}

/// The guided filter's smoothed linear coefficients: the output is `a * guide + b`. Computed
/// at low resolution and upsampled, they carry `p` to a finer guide's resolution (the fast
/// guided filter, He and Sun 2015): edges come from the fine guide, not from `p`.
pub fn guided_coefficients(guide: &Tensor, p: &Tensor, r: i64, eps: f64) -> (Tensor, Tensor) {
    let mean_i = box_mean(guide, r);
    let mean_p = box_mean(p, r);
    let cov_ip = box_mean(&(guide * p), r) - &mean_i * &mean_p;
    let var_i = box_mean(&(guide * guide), r) - &mean_i * &mean_i;
    let a = cov_ip / (var_i + eps);
    let b = mean_p - &a * &mean_i;
    (box_mean(&a, r), box_mean(&b, r))
}

/// ITU-R BT.601 luma of `[B,3,H,W]` RGB, as `[B,1,H,W]`.
pub fn luma(image: &Tensor) -> Tensor {
    let w = Tensor::from_slice(&[0.299f32, 0.587, 0.114]).view([1, 3, 1, 1]).to_device(image.device());
    (image * w).sum_dim_intlist(1, true, tch::Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_input_passes_through_unchanged() {
        let guide = Tensor::rand([1, 1, 16, 12], (tch::Kind::Float, tch::Device::Cpu));
        let p = Tensor::full([1, 3, 16, 12], 0.25, (tch::Kind::Float, tch::Device::Cpu));
        let q = guided_filter(&guide, &p, 3, 1e-6);
        assert!(f64::try_from((q - 0.25).abs().max()).unwrap() < 1e-4);
    }

    #[test]
    fn the_guide_itself_is_preserved_where_it_has_structure() {
        let guide = Tensor::rand([1, 1, 16, 16], (tch::Kind::Float, tch::Device::Cpu));
        let q = guided_filter(&guide, &guide, 3, 1e-6);
        assert!(f64::try_from((q - &guide).abs().max()).unwrap() < 1e-2);
    }
}

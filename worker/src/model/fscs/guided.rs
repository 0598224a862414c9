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

/// The colour guided filter's smoothed coefficients (He, Sun, Tang, section 3.5): with an
/// RGB guide `[B,3,H,W]` the output is `a_r * R + a_g * G + a_b * B + b` per layer, so an
/// edge between two colours of equal luma still guides `p` (the luma guide cannot see it).
/// Returns `a` as `[B,L*3,H,W]` (each layer's three coefficients together) and `b` as
/// `[B,L,H,W]`, for `p` of `[B,L,H,W]`. The 3x3 covariance is inverted in closed form per
/// pixel.
pub fn colour_guided_coefficients(guide: &Tensor, p: &Tensor, r: i64, eps: f64) -> (Tensor, Tensor) {
    let (b, l, h, w) = p.size4().unwrap_or((0, 0, 0, 0));
    let mean_i = box_mean(guide, r);
    let mean_p = box_mean(p, r);
    // cov(I_c, p) for every layer and channel: [B,L,3,H,W].
    let ip = (guide.unsqueeze(1) * p.unsqueeze(2)).view([b, l * 3, h, w]);
    let cov = box_mean(&ip, r).view([b, l, 3, h, w]) - mean_i.unsqueeze(1) * mean_p.unsqueeze(2);
    // The guide's covariance, eps on the diagonal.
    let c = |i: i64| guide.narrow(1, i, 1);
    let m = |i: i64| mean_i.narrow(1, i, 1);
    let var = |i: i64, j: i64| box_mean(&(c(i) * c(j)), r) - m(i) * m(j);
    let (rr, rg, rb) = (var(0, 0) + eps, var(0, 1), var(0, 2));
    let (gg, gb, bb) = (var(1, 1) + eps, var(1, 2), var(2, 2) + eps);
    // Its inverse by the adjugate (symmetric: six distinct entries).
    let inv_rr = &gg * &bb - &gb * &gb;
    let inv_rg = &gb * &rb - &rg * &bb;
    let inv_rb = &rg * &gb - &gg * &rb;
    let inv_gg = &rr * &bb - &rb * &rb;
    let inv_gb = &rb * &rg - &rr * &gb;
    let inv_bb = &rr * &gg - &rg * &rg;
    let det = &rr * &inv_rr + &rg * &inv_rg + &rb * &inv_rb;
    let (cr, cg, cb) = (cov.select(2, 0), cov.select(2, 1), cov.select(2, 2));
    let a_r = (&inv_rr * &cr + &inv_rg * &cg + &inv_rb * &cb) / &det;
    let a_g = (&inv_rg * &cr + &inv_gg * &cg + &inv_gb * &cb) / &det;
    let a_b = (&inv_rb * &cr + &inv_gb * &cg + &inv_bb * &cb) / &det;
    let offset = mean_p - &a_r * m(0) - &a_g * m(1) - &a_b * m(2);
    let a = Tensor::stack(&[a_r, a_g, a_b], 2).view([b, l * 3, h, w]);
    (box_mean(&a, r), box_mean(&offset, r))
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
    fn the_colour_guide_separates_colours_of_equal_luma() {
        // Left half red, right half a green of the same luma; p is 1 on the left. The luma
        // guide sees a flat image and smears p across the edge; the colour guide keeps it.
        let (h, w) = (8i64, 16i64);
        let opts = (tch::Kind::Float, tch::Device::Cpu);
        let left = Tensor::arange(w, opts).lt(w / 2).to_kind(tch::Kind::Float).view([1, 1, 1, w]).expand([1, 1, h, w], false);
        let green = 0.299 * 0.8 / 0.587;
        let guide = Tensor::cat(&[&left * 0.8, (1.0 - &left) * green, Tensor::zeros([1, 1, h, w], opts)], 1);
        let p = left.contiguous();
        let (a, b) = colour_guided_coefficients(&guide, &p, 2, 1e-4);
        let q = (a.view([1, 1, 3, h, w]) * guide.unsqueeze(1)).sum_dim_intlist(2, false, tch::Kind::Float) + b;
        assert!(f64::try_from((&q - &p).abs().max()).unwrap() < 0.02, "colour guide");
        let (a, b) = guided_coefficients(&luma(&guide), &p, 2, 1e-4);
        let q = a * luma(&guide) + b;
        assert!(f64::try_from((&q - &p).abs().max()).unwrap() > 0.2, "the luma guide cannot see this edge");
        // A constant p passes through.
        let flat = Tensor::full([1, 2, h, w], 0.25, opts);
        let guide = Tensor::rand([1, 3, h, w], opts);
        let (a, b) = colour_guided_coefficients(&guide, &flat, 2, 1e-4);
        let q = (a.view([1, 2, 3, h, w]) * guide.unsqueeze(1)).sum_dim_intlist(2, false, tch::Kind::Float) + b;
        assert!(f64::try_from((q - 0.25).abs().max()).unwrap() < 1e-4);
    }

    #[test]
    fn the_guide_itself_is_preserved_where_it_has_structure() {
        let guide = Tensor::rand([1, 1, 16, 16], (tch::Kind::Float, tch::Device::Cpu));
        let q = guided_filter(&guide, &guide, 3, 1e-6);
        assert!(f64::try_from((q - &guide).abs().max()).unwrap() < 1e-2);
    }
}

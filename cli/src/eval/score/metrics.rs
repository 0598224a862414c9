//! The per-pair metrics: RGB L1 over the reference's covered pixels, soft alpha IoU, cost.

use super::*;

/// The three per-pair values, computed in one pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairScore {
    pub rgb_l1: f64,
    pub alpha_iou: f64,
    pub cost: f64,
}

/// `value / 255.0` for every byte value, as numpy computes it.
pub(super) fn unit_table() -> [f64; 256] {
    let mut t = [0.0; 256];
    for (v, slot) in t.iter_mut().enumerate() {
        *slot = v as f64 / 255.0;
    }
    t
}

/// LayerD's `RGBL1()(x, y)`, `AlphaIoU()(x, y)` and `RGBL1_AIoU()(x, y)` for `x` against
/// the reference `y` (same size): the RGB L1 mask is `y`'s alpha > 0.
pub fn pair_score(x: &Rgba, y: &Rgba) -> PairScore {
    let unit = unit_table();
    let (xd, yd) = (&x.data, &y.data);
    let n = xd.len().min(yd.len()) / 4;
    // Per pixel, as numpy's arrays hold them: the mean of the three absolute differences
    // times the mask, min(alpha), max(alpha).
    let [num, inter, union] = np_sum_by(n, &|i| {
        let (p, g) = (&xd[4 * i..4 * i + 4], &yd[4 * i..4 * i + 4]);
        let d = (((unit[p[0] as usize] - unit[g[0] as usize]).abs() + (unit[p[1] as usize] - unit[g[1] as usize]).abs())
            + (unit[p[2] as usize] - unit[g[2] as usize]).abs())
            / 3.0;
        let mask = if g[3] > 0 { 1.0 } else { 0.0 };
        let (pa, ga) = (unit[p[3] as usize], unit[g[3] as usize]);
        [d * mask, pa.min(ga), pa.max(ga)]
    });
    let count = yd.chunks_exact(4).take(n).filter(|g| g[3] > 0).count();
    let rgb_l1 = num / (count as f64 + 1e-8);
    let alpha_iou = if union > 0.0 { inter / union } else { 0.0 };
    let cost = (rgb_l1 + (1.0 - alpha_iou)) / 2.0;
    PairScore { rgb_l1, alpha_iou, cost }
}

/// LayerD's `RGBL1`: mean absolute RGB difference (in [0, 1]) over the pixels where the
/// reference `y` has alpha > 0, divided by (that count + 1e-8).
#[cfg_attr(not(test), allow(dead_code))]
pub fn rgb_l1(x: &Rgba, y: &Rgba) -> f64 {
    pair_score(x, y).rgb_l1
}

/// LayerD's `AlphaIoU`: sum of min(alpha) over sum of max(alpha); 0 when both are empty.
#[cfg_attr(not(test), allow(dead_code))]
pub fn alpha_iou(x: &Rgba, y: &Rgba) -> f64 {
    pair_score(x, y).alpha_iou
}

/// LayerD's cost `RGBL1_AIoU`: (RGB L1 + (1 - alpha IoU)) / 2.
#[cfg_attr(not(test), allow(dead_code))]
pub fn cost(x: &Rgba, y: &Rgba) -> f64 {
    pair_score(x, y).cost
}

//! Splitting an object layer into its elements: the connected parts of its matte, each on a
//! layer of its own (as LayerD's later versions do), so that two cut-out words or a product
//! and its separate lid can be moved apart.
//!
//! Components are found on the matte's opaque core (alpha > 0.5) at a reduced size, 8-connected;
//! every other pixel of the matte (soft edges, and parts over the limit) joins the component
//! that grows to it first, so the parts' alphas add up to the matte exactly and the layers
//! still recomposite to the image.

use std::collections::VecDeque;

use tch::{Device, Kind, Tensor};

/// The longest side of the grid the components are found on.
const GRID: f64 = 256.0;
/// Components smaller than this share of the grid join their neighbours instead.
const MIN_SHARE: f64 = 0.001;
/// How far (in grid cells) the components grow to claim the matte's soft pixels.
const GROW: usize = 24;

/// Splits `alpha` (`[B,1,H,W]`) into at most `max_parts` parts (`[B,1,H,W]` each, summing to
/// `alpha`), largest first; one part (the matte itself) when it has one component.
pub fn split(alpha: &Tensor, max_parts: usize) -> Vec<Tensor> {
    let size = alpha.size();
    let (b, h, w) = (size[0], size[2], size[3]);
    if max_parts < 2 {
        return vec![alpha.shallow_clone()];
    }
    let scale = (h.max(w) as f64 / GRID).max(1.0);
    let (gh, gw) = (((h as f64 / scale).ceil() as i64).max(1), ((w as f64 / scale).ceil() as i64).max(1));
    let grid = alpha.adaptive_avg_pool2d([gh, gw]).to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
    let cells = Vec::<f32>::try_from(grid.view(-1)).unwrap_or_default();
    let per = (gh * gw) as usize;
    if cells.len() != per * b as usize {
        return vec![alpha.shallow_clone()];
    }
    // Per image: a label per grid cell (-1: none yet), components largest first.
    let mut labels = Vec::with_capacity(cells.len());
    let mut most = 1usize;
    for image in cells.chunks_exact(per) {
        let (l, n) = components(image, gh as usize, gw as usize, max_parts);
        most = most.max(n);
        labels.extend(l);
    }
    if most < 2 {
        return vec![alpha.shallow_clone()];
    }
    let labels = Tensor::from_slice(&labels).view([b, 1, gh, gw]).to_device(alpha.device());
    let labels = labels.to_kind(Kind::Float).upsample_nearest2d([h, w], None, None).to_kind(Kind::Int64);
    (0..most as i64).map(|k| alpha * labels.eq(k).to_kind(Kind::Float)).collect()
}

/// Labels the 8-connected components of `cells > 0.5` (largest first, at most `max_parts`,
/// none under `MIN_SHARE`), then grows them over the rest of the matte; cells left unclaimed
/// go to the largest. Returns the labels and the number of parts.
fn components(cells: &[f32], h: usize, w: usize, max_parts: usize) -> (Vec<i64>, usize) {
    let mut label = vec![-1i64; cells.len()];
    let mut comps: Vec<Vec<usize>> = Vec::new();
    let neighbours = |i: usize| {
        let (y, x) = ((i / w) as i64, (i % w) as i64);
        (-1i64..=1).flat_map(move |dy| (-1i64..=1).map(move |dx| (y + dy, x + dx))).filter(move |&(ny, nx)| ny >= 0 && nx >= 0 && (ny as usize) < h && (nx as usize) < w && (ny, nx) != (y, x)).map(move |(ny, nx)| ny as usize * w + nx as usize)
    };
    let mut seen = vec![false; cells.len()];
    for start in 0..cells.len() {
        if seen[start] || cells[start] <= 0.5 {
            continue;
        }
        let mut members = Vec::new();
        let mut queue = VecDeque::from([start]);
        seen[start] = true;
        while let Some(i) = queue.pop_front() {
            members.push(i);
            for j in neighbours(i) {
                if !seen[j] && cells[j] > 0.5 {
                    seen[j] = true;
                    queue.push_back(j);
                }
            }
        }
        comps.push(members);
    }
    comps.sort_by_key(|c| std::cmp::Reverse(c.len()));
    let min_cells = ((cells.len() as f64) * MIN_SHARE).ceil() as usize;
    let kept = comps.iter().take(max_parts).take_while(|c| c.len() >= min_cells.max(1)).count();
    let mut frontier = VecDeque::new();
    for (k, c) in comps.iter().take(kept).enumerate() {
        for &i in c {
            label[i] = k as i64;
            frontier.push_back((i, 0usize));
        }
    }
    // Grow breadth first over the matte's other pixels (soft edges, dropped components).
    while let Some((i, d)) = frontier.pop_front() {
        if d >= GROW {
            continue;
        }
        for j in neighbours(i) {
            if label[j] < 0 && cells[j] > 0.0 {
                label[j] = label[i];
                frontier.push_back((j, d + 1));
            }
        }
    }
    for l in &mut label {
        if *l < 0 {
            *l = 0;
        }
    }
    (label, kept.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_blobs_become_two_parts_that_add_up_to_the_matte() {
        let opts = (Kind::Float, Device::Cpu);
        let alpha = Tensor::zeros([1, 1, 40, 60], opts);
        let _ = alpha.narrow(2, 5, 10).narrow(3, 5, 10).fill_(1.0);
        let _ = alpha.narrow(2, 20, 15).narrow(3, 30, 25).fill_(1.0);
        // A soft halo around the second blob.
        let _ = alpha.narrow(2, 19, 1).narrow(3, 30, 25).fill_(0.3);
        let parts = split(&alpha, 4);
        assert_eq!(parts.len(), 2);
        let sum = Tensor::stack(&parts, 0).sum_dim_intlist(0, false, Kind::Float);
        assert!(f64::try_from((sum - &alpha).abs().max()).unwrap() < 1e-6);
        // Largest first: the second blob (15 x 25) with its halo.
        let first = &parts[0];
        assert!(f64::try_from(first.narrow(2, 20, 15).narrow(3, 30, 25).min()).unwrap() == 1.0);
        assert!(f64::try_from(first.narrow(2, 19, 1).narrow(3, 30, 25).min()).unwrap() > 0.29);
        assert!(f64::try_from(parts[1].narrow(2, 5, 10).narrow(3, 5, 10).min()).unwrap() == 1.0);
        // One part when the limit allows only one.
        assert_eq!(split(&alpha, 1).len(), 1);
    }
}

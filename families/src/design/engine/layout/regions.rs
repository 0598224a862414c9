//! Regions of near-equal neighbouring pixels, blobs, boxes, and whether a thin region is a
//! line drawn over one other region.

use super::*;

/// Regions of 4-connected pixels whose neighbours differ by at most [`STEP`] per channel;
/// each pixel's label is its region's root index. Covered pixels are regions of their own.
pub(super) fn regions(image: &Image<'_>, covered: &[bool]) -> Vec<u32> {
    let (w, h) = (image.width, image.height);
    let n = w * h;
    let mut parent: Vec<u32> = (0..n as u32).collect();
    fn find(parent: &mut [u32], mut i: u32) -> u32 {
        while parent[i as usize] != i {
            let up = parent[parent[i as usize] as usize];
            parent[i as usize] = up;
            i = up;
        }
        i
    }
    let near = |a: usize, b: usize| {
        let (p, q) = (image.px(a), image.px(b));
        (p[0] - q[0]).abs() <= STEP && (p[1] - q[1]).abs() <= STEP && (p[2] - q[2]).abs() <= STEP
    };
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if covered[i] {
                continue;
            }
            for j in [(x + 1 < w).then(|| i + 1), (y + 1 < h).then(|| i + w)].into_iter().flatten() {
                if !covered[j] && near(i, j) {
                    let (a, b) = (find(&mut parent, i as u32), find(&mut parent, j as u32));
                    if a != b {
                        parent[a.max(b) as usize] = a.min(b);
                    }
                }
            }
        }
    }
    (0..n as u32).map(|i| find(&mut parent, i)).collect()
}

/// 8-connected blobs of the set pixels of `mask` (cleared as they are taken).
pub(super) fn blobs(mask: &mut [bool], w: usize, h: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !mask[start] {
            continue;
        }
        mask[start] = false;
        stack.push(start);
        let mut blob = Vec::new();
        while let Some(i) = stack.pop() {
            blob.push(i);
            let (x, y) = (i % w, i / w);
            for yy in y.saturating_sub(1)..(y + 2).min(h) {
                for xx in x.saturating_sub(1)..(x + 2).min(w) {
                    let j = yy * w + xx;
                    if mask[j] {
                        mask[j] = false;
                        stack.push(j);
                    }
                }
            }
        }
        out.push(blob);
    }
    out
}

/// Each region's box `(x, y, width, height)`, by label.
pub(super) fn region_boxes(labels: &[u32], w: usize) -> std::collections::HashMap<u32, (usize, usize, usize, usize)> {
    let mut corners: std::collections::HashMap<u32, (usize, usize, usize, usize)> = std::collections::HashMap::new();
    for (i, &l) in labels.iter().enumerate() {
        let (x, y) = (i % w, i / w);
        let c = corners.entry(l).or_insert((x, y, x, y));
        *c = (c.0.min(x), c.1.min(y), c.2.max(x), c.3.max(y));
    }
    corners.into_iter().map(|(l, (x0, y0, x1, y1))| (l, (x0, y0, x1 + 1 - x0, y1 + 1 - y0))).collect()
}

/// The box `(x, y, width, height)` of some pixels.
pub(super) fn bounds(pixels: &[usize], w: usize) -> (usize, usize, usize, usize) {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for &i in pixels {
        let (x, y) = (i % w, i / w);
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    (x0, y0, x1 + 1 - x0, y1 + 1 - y0)
}

/// The pixels of region `label`.
pub(super) fn region(labels: &[u32], label: u32) -> impl Iterator<Item = usize> + '_ {
    labels.iter().enumerate().filter(move |(_, l)| **l == label).map(|(i, _)| i)
}

/// Whether a thin region lies inside one other region: looking three pixels to each side of
/// it (past its anti-aliased edge), nearly all the regions seen are one. A strip of ringing
/// along an edge sees the shape on one side and what is under it on the other.
pub(super) fn drawn_over_one_region(pixels: &[usize], labels: &[u32], sizes: &[usize], label: u32, w: usize, h: usize) -> bool {
    let mut seen: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    let mut total = 0usize;
    for &i in pixels {
        let (x, y) = ((i % w) as i64, (i / w) as i64);
        for (dx, dy) in [(-3, 0), (3, 0), (0, -3), (0, 3)] {
            let (xx, yy) = (x + dx, y + dy);
            if xx < 0 || yy < 0 || xx >= w as i64 || yy >= h as i64 {
                continue;
            }
            let other = labels[yy as usize * w + xx as usize];
            if other != label && sizes[other as usize] >= SMALL_REGION {
                *seen.entry(other).or_default() += 1;
                total += 1;
            }
        }
    }
    seen.values().max().is_some_and(|&most| total > 0 && most as f64 >= 0.9 * total as f64)
}

//! Steep gradients. A narrow bar or label whose gradient climbs more than a region's step
//! ([`STEP`]) per pixel falls apart into strips one pixel wide across it: along the gradient's
//! contour lines each row or column is one colour, a thin region of its own. Strips side by
//! side that together lie on one plane are one shape again. A feathered edge's strips curve
//! round it and a photograph's shading is no plane, so neither is joined; a straight edge's
//! anti-aliased strip meets another only at a corner, and a corner is no thick shape.

use super::*;

/// The fewest strips side by side that make a shape.
const RAMP_STRIPS: usize = 3;

/// Groups of `strips` (label, pixels: thin regions along edges, see `mod.rs`) side by side on
/// one plane, each a shape of its own: its plane and pixels, under the first strip's label.
/// Strips off the plane (the anti-aliased strips along the shape's edges) are left out and
/// stay edges.
pub(super) fn ramps(base: &Image<'_>, strips: &[(u32, Vec<usize>)], labels: &[u32]) -> Vec<(u32, Plane, Vec<usize>)> {
    let (w, h) = (base.width, base.height);
    if strips.len() < RAMP_STRIPS {
        return Vec::new();
    }
    let index: std::collections::HashMap<u32, usize> = strips.iter().enumerate().map(|(k, (l, _))| (*l, k)).collect();
    let mut parent: Vec<usize> = (0..strips.len()).collect();
    fn root(parent: &mut [usize], mut k: usize) -> usize {
        while parent[k] != k {
            parent[k] = parent[parent[k]];
            k = parent[k];
        }
        k
    }
    for (k, (_, pixels)) in strips.iter().enumerate() {
        for &i in pixels {
            let (x, y) = (i % w, i / w);
            for j in [(x + 1 < w).then(|| i + 1), (y + 1 < h).then(|| i + w)].into_iter().flatten() {
                if let Some(&o) = index.get(&labels[j]) {
                    let (a, b) = (root(&mut parent, k), root(&mut parent, o));
                    parent[a.max(b)] = a.min(b);
                }
            }
        }
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = std::collections::BTreeMap::new();
    for k in 0..strips.len() {
        groups.entry(root(&mut parent, k)).or_default().push(k);
    }
    let residual = |plane: &Plane, pixels: &[usize]| pixels.iter().map(|&i| f64::from(distance(base.px(i), plane.at(i % w, i / w)))).sum::<f64>() / pixels.len().max(1) as f64;
    let mut out = Vec::new();
    for members in groups.into_values().filter(|m| m.len() >= RAMP_STRIPS) {
        // The plane of them all, then of the strips on it (not the edges' mixed strips).
        let all: Vec<usize> = members.iter().flat_map(|&k| strips[k].1.iter().copied()).collect();
        let plane = fit_plane_trimmed(base, &all);
        let on: Vec<usize> = members.into_iter().filter(|&k| residual(&plane, &strips[k].1) <= f64::from(FLAT)).collect();
        if on.len() < RAMP_STRIPS {
            continue;
        }
        let pixels: Vec<usize> = on.iter().flat_map(|&k| strips[k].1.iter().copied()).collect();
        let plane = fit_plane(base, pixels.iter().copied());
        let (_, _, bw, bh) = bounds(&pixels, w);
        let thick = pixels.len() as f64 >= MIN_THICKNESS * bw.max(bh) as f64;
        if thick && residual(&plane, &pixels) <= f64::from(FLAT) {
            out.push((strips[on[0]].0, plane, pixels));
        }
    }
    out
}

//! Tinted panels: one colour laid partly transparent over a gradient background (a band, a
//! panel behind words). Over the background such a panel is a region whose colour is
//! `a·C + (1-a)·B`, `B` the background's surface: the gradient shows through it, its change
//! scaled by `1-a`, which measures the opacity `a` (over a flat colour nothing changes and
//! the same region is as well an opaque shape, which it is then taken for). Inside the
//! panel's box, what it covers is unmixed from under it (`(p - a·C) / (1-a)`), so the
//! shapes and soft elements under it are found whole, and the panel is a layer of its own
//! colour at its opacity.

use super::*;
use std::collections::HashMap;

/// The background must change across a region by at least this much (the standard
/// deviation of its surface there, over the three channels) for the region's opacity to be
/// measured: less, and an opaque shape fits as well.
const TINT_SPREAD: f64 = 8.0 / 255.0;
/// A tint's opacity lies between these: above, it is an opaque shape over a gradient; below,
/// no panel a designer would set.
const TINT_MIN: f64 = 0.2;
const TINT_MAX: f64 = 0.85;
/// A region is a tint when its fit holds at least this share of it within [`TINT_CLOSE`]
/// (the rest shows what is under the panel: a glow, a shape's edge).
const TINT_HOLDS: f64 = 0.5;
const TINT_CLOSE: f32 = 2.0 / 255.0;
/// How far out of the colour cube a panel's colour, or what it covers, may be (rounding).
const TINT_GAMUT: f32 = 3.0 / 255.0;
/// A panel is at least this many pixels thick on average (its area over its longer side).
const TINT_THICKNESS: f64 = 8.0;
/// Fits to the nearer half of a region.
const ROUNDS: usize = 5;
/// Histogram bins of half an 8-bit level for the median distance (the last holds the rest).
const BINS: usize = 128;

/// A tinted panel: its colour, its opacity, and the alpha of each pixel it covers (its
/// opacity inside, a share of it on its anti-aliased edge).
pub(super) struct Panel {
    pub colour: [f32; 3],
    pub alpha: Vec<(usize, f32)>,
}

/// A panel found: its region over the background, its opacity, its colour and its box.
type Found = (u32, f64, [f32; 3], (usize, usize, usize, usize));

/// A region's colour as `k·B + c`: `k = 1 - a`, `c = a·C`.
#[derive(Clone, Copy)]
struct Fit {
    k: f64,
    c: [f64; 3],
}

impl Fit {
    fn at(&self, b: [f32; 3]) -> [f32; 3] {
        [0, 1, 2].map(|ch| (self.k * f64::from(b[ch]) + self.c[ch]) as f32)
    }
}

/// Least-squares sums for one `k` shared by the channels and a `c` per channel.
#[derive(Default, Clone, Copy)]
struct Sums {
    n: f64,
    p: [f64; 3],
    b: [f64; 3],
    bb: [f64; 3],
    pb: [f64; 3],
}

impl Sums {
    fn add(&mut self, p: [f32; 3], b: [f32; 3]) {
        self.n += 1.0;
        for ch in 0..3 {
            let (p, b) = (f64::from(p[ch]), f64::from(b[ch]));
            self.p[ch] += p;
            self.b[ch] += b;
            self.bb[ch] += b * b;
            self.pb[ch] += p * b;
        }
    }

    /// The fit, when the background changes across the pixels by at least [`TINT_SPREAD`].
    fn fit(&self) -> Option<Fit> {
        let var: f64 = (0..3).map(|ch| self.bb[ch] - self.b[ch] * self.b[ch] / self.n).sum();
        let cov: f64 = (0..3).map(|ch| self.pb[ch] - self.p[ch] * self.b[ch] / self.n).sum();
        if self.n < 1.0 || var / self.n < TINT_SPREAD * TINT_SPREAD {
            return None;
        }
        let k = cov / var;
        Some(Fit { k, c: [0, 1, 2].map(|ch| (self.p[ch] - k * self.b[ch]) / self.n) })
    }
}

/// The tinted panels over the background `plane` among the regions (`labels`, `sizes`) of at
/// least `min_pixels`.
pub(super) fn panels(base: &Image<'_>, plane: &Plane, labels: &[u32], sizes: &[usize], bg_label: u32, min_pixels: f64) -> Vec<Panel> {
    let (w, h) = (base.width, base.height);
    let least = min_pixels.max((SMALL_REGION * 16) as f64);
    // The candidates' pixels, each with its region's slot (labels run along rows, so the
    // last one found is tried first).
    let mut slots: HashMap<u32, u32> = HashMap::new();
    let mut regions: Vec<u32> = Vec::new();
    let mut members: Vec<(u32, u32, [f32; 3])> = Vec::new();
    let mut last = (u32::MAX, 0u32);
    for (i, &l) in labels.iter().enumerate() {
        if l == bg_label || (sizes[l as usize] as f64) < least {
            continue;
        }
        if l != last.0 {
            let next = regions.len() as u32;
            let slot = *slots.entry(l).or_insert(next);
            if slot == next {
                regions.push(l);
            }
            last = (l, slot);
        }
        members.push((i as u32, last.1, plane.at(i % w, i / w)));
    }
    // A panel is thick: a thin region (a row along an anti-aliased edge, a line) is one
    // colour over the background at a partial coverage as well.
    let mut extent = vec![(0usize, (usize::MAX, usize::MAX, 0usize, 0usize)); regions.len()];
    for &(i, slot, _) in &members {
        let (x, y) = (i as usize % w, i as usize / w);
        let e = &mut extent[slot as usize];
        e.0 += 1;
        e.1 = (e.1 .0.min(x), e.1 .1.min(y), e.1 .2.max(x), e.1 .3.max(y));
    }
    let thick: Vec<bool> = extent.iter().map(|&(count, (x0, y0, x1, y1))| count as f64 >= TINT_THICKNESS * (x1 + 1 - x0).max(y1 + 1 - y0) as f64).collect();
    members.retain(|&(_, slot, _)| thick[slot as usize]);
    if members.is_empty() {
        return Vec::new();
    }
    // Fitted to the whole region, then again and again to the nearer half of it (at least
    // what lies within [`TINT_CLOSE`]): the rest shows what is under the panel. Each fit with
    // the distance it keeps.
    let mut fits: Vec<Option<(Fit, f32)>> = vec![None; regions.len()];
    for round in 0..ROUNDS {
        if round > 0 {
            // Each fit's median distance, from a histogram of [`BINS`] steps of half an
            // 8-bit level.
            let mut histograms = vec![[0u32; BINS]; regions.len()];
            for &(i, slot, b) in &members {
                if let Some((f, _)) = &fits[slot as usize] {
                    let p = base.px(i as usize);
                    histograms[slot as usize][((distance(p, f.at(b)) * 510.0) as usize).min(BINS - 1)] += 1;
                }
            }
            for (fit, histogram) in fits.iter_mut().zip(&histograms) {
                let Some(fit) = fit else { continue };
                let total: u32 = histogram.iter().sum();
                let (mut seen, mut bin) = (0, 0);
                while bin + 1 < BINS && 2 * (seen + histogram[bin]) < total {
                    seen += histogram[bin];
                    bin += 1;
                }
                fit.1 = ((bin + 1) as f32 / 510.0).max(TINT_CLOSE);
            }
        }
        let mut sums = vec![Sums::default(); regions.len()];
        for &(i, slot, b) in &members {
            let fit = &fits[slot as usize];
            if round > 0 && fit.is_none() {
                continue;
            }
            let p = base.px(i as usize);
            if let Some((f, keep)) = fit {
                if distance(p, f.at(b)) > *keep {
                    continue;
                }
            }
            sums[slot as usize].add(p, b);
        }
        fits = sums.iter().map(|s| s.fit().map(|f| (f, f32::INFINITY))).collect();
        if fits.iter().all(Option::is_none) {
            break;
        }
    }
    // What each fit holds, and the box of that.
    let mut held: Vec<(usize, (usize, usize, usize, usize))> = vec![(0, (usize::MAX, usize::MAX, 0, 0)); regions.len()];
    for &(i, slot, b) in &members {
        if let Some((f, _)) = &fits[slot as usize] {
            let p = base.px(i as usize);
            if distance(p, f.at(b)) <= TINT_CLOSE {
                let (x, y) = (i as usize % w, i as usize / w);
                let e = &mut held[slot as usize];
                e.0 += 1;
                e.1 = (e.1 .0.min(x), e.1 .1.min(y), e.1 .2.max(x), e.1 .3.max(y));
            }
        }
    }
    drop(members);
    let mut found: Vec<Found> = Vec::new();
    for (slot, fit) in fits.iter().enumerate() {
        let (Some((f, _)), l) = (fit, &regions[slot]) else { continue };
        let (count, bounds) = held[slot];
        let a = 1.0 - f.k;
        if (count as f64) < TINT_HOLDS * sizes[*l as usize] as f64 || !(TINT_MIN..=TINT_MAX).contains(&a) {
            continue;
        }
        let colour = f.c.map(|c| (c / a) as f32);
        if colour.iter().any(|&c| !(-TINT_GAMUT..=1.0 + TINT_GAMUT).contains(&c)) {
            continue;
        }
        found.push((*l, a, colour.map(|c| c.clamp(0.0, 1.0)), bounds));
    }
    // Over a flat colour (the surface the same at the corners and the centre), the panels
    // that half cover a shape.
    let flat = [(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)].iter().all(|&(x, y)| distance(plane.at(x, y), plane.at(w / 2, h / 2)) <= TINT_CLOSE);
    if found.is_empty() && flat {
        found = flat_panels(base, labels, sizes, bg_label, least);
    }
    found.sort_by_key(|&(l, ..)| (std::cmp::Reverse(sizes[l as usize]), l));
    // Each panel's box (and the anti-aliased row or column around it): pixels of the
    // background are outside; pixels on the mix of the background and the panel over it
    // are its edge; others are covered when what is under them is a colour.
    let mut claimed = vec![false; w * h];
    let mut panels = Vec::new();
    for (_, a, colour, (x0, y0, x1, y1)) in found {
        let a = a as f32;
        let mut alpha = Vec::new();
        for y in y0.saturating_sub(1)..(y1 + 2).min(h) {
            for x in x0.saturating_sub(1)..(x1 + 2).min(w) {
                let i = y * w + x;
                let (p, b) = (base.px(i), plane.at(x, y));
                if claimed[i] || distance(p, b) <= STEP {
                    continue;
                }
                let over = [0, 1, 2].map(|ch| a * colour[ch] + (1.0 - a) * b[ch]);
                let (share, off) = unmix(p, b, over);
                let cover = if off <= TINT_CLOSE {
                    share * a
                } else if (0..3).all(|ch| (-TINT_GAMUT..=1.0 + TINT_GAMUT).contains(&((p[ch] - a * colour[ch]) / (1.0 - a)))) {
                    a
                } else {
                    continue;
                };
                if cover > 0.0 {
                    claimed[i] = true;
                    alpha.push((i, cover));
                }
            }
        }
        // A panel all but the colour around it is none.
        if alpha.iter().map(|&(_, a)| f64::from(a)).sum::<f64>() >= least {
            panels.push(Panel { colour, alpha });
        }
    }
    panels
}

/// A region's mean colour, how far its pixels lie from it (root mean square), and its box.
struct Stats {
    n: f64,
    sum: [f64; 3],
    squares: f64,
    bounds: (usize, usize, usize, usize),
}

impl Stats {
    fn mean(&self) -> [f32; 3] {
        self.sum.map(|s| (s / self.n) as f32)
    }

    fn flat(&self) -> bool {
        let mean = self.sum.map(|s| s / self.n);
        let spread = self.squares / self.n - mean.iter().map(|m| m * m).sum::<f64>();
        spread <= f64::from(TINT_CLOSE * TINT_CLOSE)
    }
}

/// Over a flat colour `B` nothing shows through a panel, except where it covers something
/// else: its region over the background (`P1`), its region over a shape (`P2`, inside the
/// panel's box) and that shape where it is seen beside the panel (`E`) hold
/// `P1 - P2 = (1-a)·(B - E)`, the three channels for one `a`. The panels found so, as
/// (region over the background, opacity, colour, box).
fn flat_panels(base: &Image<'_>, labels: &[u32], sizes: &[usize], bg_label: u32, least: f64) -> Vec<Found> {
    let (w, h) = (base.width, base.height);
    let mut stats: HashMap<u32, Stats> = HashMap::new();
    for (i, &l) in labels.iter().enumerate() {
        if (sizes[l as usize] as f64) < least {
            continue;
        }
        let (p, x, y) = (base.px(i), i % w, i / w);
        let s = stats.entry(l).or_insert(Stats { n: 0.0, sum: [0.0; 3], squares: 0.0, bounds: (x, y, x, y) });
        s.n += 1.0;
        for ch in 0..3 {
            s.sum[ch] += f64::from(p[ch]);
            s.squares += f64::from(p[ch]) * f64::from(p[ch]);
        }
        let b = s.bounds;
        s.bounds = (b.0.min(x), b.1.min(y), b.2.max(x), b.3.max(y));
    }
    stats.retain(|_, s| s.flat());
    let Some(ground) = stats.get(&bg_label).map(Stats::mean) else { return Vec::new() };
    // Regions that meet, across an anti-aliased edge of a pixel or two.
    let mut meet: std::collections::HashSet<(u32, u32)> = std::collections::HashSet::new();
    for y in 0..h {
        for x in 0..w {
            let a = labels[y * w + x];
            if !stats.contains_key(&a) {
                continue;
            }
            for (dx, dy) in [(1, 0), (2, 0), (0, 1), (0, 2)] {
                if x + dx < w && y + dy < h {
                    let b = labels[(y + dy) * w + x + dx];
                    if b != a && stats.contains_key(&b) {
                        meet.insert((a.min(b), a.max(b)));
                    }
                }
            }
        }
    }
    let meets = |a: u32, b: u32| meet.contains(&(a.min(b), a.max(b)));
    let inside = |a: (usize, usize, usize, usize), b: (usize, usize, usize, usize)| a.0 + 2 >= b.0 && a.1 + 2 >= b.1 && a.2 <= b.2 + 2 && a.3 <= b.3 + 2;
    let mut found = Vec::new();
    for (&r1, s1) in &stats {
        let (x0, y0, x1, y1) = s1.bounds;
        if r1 == bg_label || !meets(r1, bg_label) || s1.n < TINT_THICKNESS * (x1 + 1 - x0).max(y1 + 1 - y0) as f64 {
            continue;
        }
        let p1 = s1.mean();
        let mut best: Option<(f32, f64, [f32; 3])> = None;
        for (&r2, s2) in &stats {
            if r2 == r1 || r2 == bg_label || !meets(r1, r2) || !inside(s2.bounds, s1.bounds) {
                continue;
            }
            let p2 = s2.mean();
            for (&e, se) in &stats {
                if e == r1 || e == r2 || e == bg_label || !meets(r2, e) || inside(se.bounds, s1.bounds) {
                    continue;
                }
                let seen = se.mean();
                let d = [0, 1, 2].map(|ch| ground[ch] - seen[ch]);
                let len2: f32 = d.iter().map(|v| v * v).sum();
                if len2 < 0.01 {
                    continue;
                }
                let step = [0, 1, 2].map(|ch| p1[ch] - p2[ch]);
                let k = (0..3).map(|ch| step[ch] * d[ch]).sum::<f32>() / len2;
                let off = distance(step, d.map(|v| k * v));
                let a = 1.0 - f64::from(k);
                let colour = [0, 1, 2].map(|ch| (p1[ch] - k * ground[ch]) / a as f32);
                let valid = off <= TINT_GAMUT && (TINT_MIN..=TINT_MAX).contains(&a) && colour.iter().all(|&c| (-TINT_GAMUT..=1.0 + TINT_GAMUT).contains(&c));
                if valid && best.is_none_or(|(o, ..)| off < o) {
                    best = Some((off, a, colour.map(|c| c.clamp(0.0, 1.0))));
                }
            }
        }
        if let Some((_, a, colour)) = best {
            found.push((r1, a, colour, s1.bounds));
        }
    }
    found
}

/// What a pixel `p` shows from under a tint of `colour` at `alpha`.
pub(super) fn under_tint(p: [f32; 3], colour: [f32; 3], alpha: f32) -> [f32; 3] {
    [0, 1, 2].map(|ch| ((p[ch] - alpha * colour[ch]) / (1.0 - alpha)).clamp(0.0, 1.0))
}

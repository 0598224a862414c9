//! Elements as layers: building one from its pixels' alpha and colour, each shape's
//! anti-aliased edge, and the layer limit (merging the smallest into the nearest of its kind).

use super::*;

/// Busy pixels this far from a region are no edge of it.
pub(super) const EDGE_REACH: usize = 2;

/// The edge pixels of each shape: pixels not `blocked` within [`EDGE_REACH`] of a shape's
/// pixels (`owner`), unmixed between its colour (`models`) and what is `below`; a pixel goes
/// to the shape it unmixes against best. Returns `(pixel, alpha)` per shape.
pub(super) fn shape_edges(base: &Image<'_>, blocked: &[bool], owner: &[u32], models: &[Plane], below: impl Fn(usize) -> [f32; 3]) -> Vec<Vec<(usize, f32)>> {
    let (w, h) = (base.width, base.height);
    let mut edges: Vec<Vec<(usize, f32)>> = vec![Vec::new(); models.len()];
    for (i, _) in blocked.iter().enumerate().filter(|(_, b)| !**b) {
        let (x, y) = (i % w, i / w);
        let mut best: Option<(u32, f32, f32)> = None;
        for yy in y.saturating_sub(EDGE_REACH)..(y + EDGE_REACH + 1).min(h) {
            for xx in x.saturating_sub(EDGE_REACH)..(x + EDGE_REACH + 1).min(w) {
                let k = owner[yy * w + xx];
                if k == u32::MAX || best.is_some_and(|(b, _, _)| b == k) {
                    continue;
                }
                let colour = models[k as usize].at(x, y);
                let (alpha, off) = unmix(base.px(i), below(i), colour);
                if alpha > 0.02 && off < 0.08 && best.is_none_or(|(_, _, o)| off < o) {
                    best = Some((k, alpha, off));
                }
            }
        }
        if let Some((k, alpha, _)) = best {
            edges[k as usize].push((i, alpha));
        }
    }
    edges
}

/// Down to `max_elements`: the smallest element joins the nearest one of its kind (a word
/// the next word of its line, a shape the next shape); one alone of its kind stays in the
/// background as pixels. Then bottom to top: images, shapes, text, the largest first.
/// `over`: pairs of element ids `(over, under)` of shapes whose outlines say which is on top
/// (`order.rs`); an element merged into another passes its pairs on to it.
pub(super) fn limit(mut kept: Vec<Element>, max_elements: usize, over: &[(usize, usize)]) -> Vec<Element> {
    let mut over = over.to_vec();
    while kept.len() > max_elements {
        // Tinted panels last: what they cover was unmixed from under them.
        let Some(smallest) = (0..kept.len()).min_by(|&a, &b| kept[a].tint.cmp(&kept[b].tint).then(kept[a].coverage.total_cmp(&kept[b].coverage))) else { break };
        let e = kept.remove(smallest);
        let nearest = (0..kept.len()).filter(|&j| kept[j].kind == e.kind).min_by(|&a, &b| gap(&kept[a], &e).total_cmp(&gap(&kept[b], &e)));
        if let Some(j) = nearest {
            kept[j] = merge(&kept[j], &e);
            let into = kept[j].id;
            for pair in &mut over {
                for id in [&mut pair.0, &mut pair.1] {
                    if *id == e.id {
                        *id = into;
                    }
                }
            }
        }
    }
    kept.sort_by(|a, b| a.kind.cmp(&b.kind).then(b.sort_as.total_cmp(&a.sort_as)).then(b.under.cmp(&a.under)).then(b.coverage.total_cmp(&a.coverage)));
    order::restack(kept, &over)
}

/// How far apart two elements' centres are.
pub(super) fn gap(a: &Element, b: &Element) -> f64 {
    let centre = |e: &Element| (e.x0 as f64 + e.width as f64 / 2.0, e.y0 as f64 + e.height as f64 / 2.0);
    let ((ax, ay), (bx, by)) = (centre(a), centre(b));
    (ax - bx).hypot(ay - by)
}

/// One element of `a` with `b` over it ("over", straight alpha), on the union of their boxes.
pub(super) fn merge(a: &Element, b: &Element) -> Element {
    let (x0, y0) = (a.x0.min(b.x0), a.y0.min(b.y0));
    let (x1, y1) = ((a.x0 + a.width).max(b.x0 + b.width), (a.y0 + a.height).max(b.y0 + b.height));
    let (w, h) = (x1 - x0, y1 - y0);
    let m = w * h;
    let mut rgba = vec![0f32; 4 * m];
    let mut coverage = 0.0;
    for e in [a, b] {
        let em = e.width * e.height;
        for y in 0..e.height {
            for x in 0..e.width {
                let (i, j) = (y * e.width + x, (e.y0 + y - y0) * w + (e.x0 + x - x0));
                let top = e.rgba[3 * em + i];
                if top == 0.0 {
                    continue;
                }
                let under = rgba[3 * m + j];
                let out = top + under * (1.0 - top);
                for c in 0..3 {
                    rgba[c * m + j] = (e.rgba[c * em + i] * top + rgba[c * m + j] * under * (1.0 - top)) / out;
                }
                rgba[3 * m + j] = out;
            }
        }
    }
    for j in 0..m {
        coverage += f64::from(rgba[3 * m + j]);
    }
    Element { kind: a.kind, x0, y0, width: w, height: h, rgba, coverage, sort_as: a.sort_as, under: a.under, tint: a.tint && b.tint, id: a.id, lines: [&a.lines[..], &b.lines[..]].concat() }
}

/// An element from its pixels' alpha (image indices), coloured by `colour(x, y, index)`.
pub(super) fn element(kind: Kind, alpha: &[(usize, f32)], w: usize, colour: impl Fn(usize, usize, usize) -> [f32; 3]) -> Element {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for &(i, _) in alpha {
        let (x, y) = (i % w, i / w);
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    let (bw, bh) = (x1 + 1 - x0, y1 + 1 - y0);
    let m = bw * bh;
    let mut rgba = vec![0f32; 4 * m];
    let mut coverage = 0.0;
    for &(i, a) in alpha {
        let (x, y) = (i % w, i / w);
        let j = (y - y0) * bw + (x - x0);
        let c = colour(x, y, i);
        for ch in 0..3 {
            rgba[ch * m + j] = c[ch];
        }
        rgba[3 * m + j] = a;
        coverage += f64::from(a);
    }
    Element { kind, x0, y0, width: bw, height: bh, rgba, coverage, sort_as: coverage, under: false, tint: false, id: 0, lines: Vec::new() }
}

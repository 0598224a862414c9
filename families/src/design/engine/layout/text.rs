//! Text boxes taken off as text layers: the local background fitted to a ring around the
//! box, the text colour the median of the pixels farthest from it, and each pixel's alpha
//! unmixed between the two.

use super::*;

/// A text element from box `b`, or `None` when the box holds no text of its own colour;
/// `under` gets the unmixed background under it and `covered` its pixels.
pub(super) fn text_element(image: &Image<'_>, b: &TextBox, under: &mut [f32], covered: &mut [bool]) -> Option<Element> {
    let (w, h) = (image.width, image.height);
    let n = w * h;
    let ring = ring(b, w, h, 2);
    if ring.is_empty() {
        return None;
    }
    // The local background: a plane through the ring (a flat colour or the gradient there),
    // fitted again twice without the ring pixels far off it (where the ring crosses a photo
    // or a shape).
    let mut plane = fit_plane(image, ring.iter().copied());
    for _ in 0..2 {
        let residuals: Vec<f32> = ring.iter().map(|&i| distance(image.px(i), plane.at(i % w, i / w))).collect();
        let mut sorted = residuals.clone();
        sorted.sort_by(f32::total_cmp);
        let keep = (3.0 * sorted[sorted.len() / 2]).max(3.0 / 255.0);
        plane = fit_plane(image, ring.iter().zip(&residuals).filter(|(_, r)| **r <= keep).map(|(i, _)| *i));
    }
    let bg_at = |i: usize| plane.at(i % w, i / w);
    let inside: Vec<usize> = (b.y0..b.y1).flat_map(|y| (b.x0..b.x1).map(move |x| y * w + x)).collect();
    let mut far: Vec<(f32, usize)> = inside.iter().map(|&i| (distance(image.px(i), bg_at(i)), i)).collect();
    far.sort_by(|a, b| b.0.total_cmp(&a.0));
    let top = far[(far.len() / 50).min(far.len() - 1)].0;
    if top < MIN_CONTRAST {
        return None;
    }
    let text = median(far.iter().take_while(|(d, _)| *d >= 0.7 * top).map(|(_, i)| image.px(*i)));
    let mut alpha = Vec::new();
    let (mut foreground, mut mixed) = (0usize, 0usize);
    for &i in &inside {
        let p = image.px(i);
        let (a, off) = unmix(p, bg_at(i), text);
        let a = if a < 0.06 || off > 0.1 { 0.0 } else if a > 0.94 { 1.0 } else { a };
        // Of the pixels that are not the background, how many are a mix of it and the text.
        if distance(p, bg_at(i)) > EXPLAINED {
            foreground += 1;
            if a > 0.0 && off <= EXPLAINED {
                mixed += 1;
            }
        }
        if a > 0.0 {
            alpha.push((i, a));
        }
    }
    // Words are two colours mixed: a box whose other pixels are mostly neither the
    // background nor the text's mix with it (a photograph, a textured region the detector
    // took for text) is not taken off as text. Another word or shape in the box is a
    // minority and does not count against it.
    if alpha.is_empty() || (mixed as f64) < TEXT_MIXED * foreground as f64 {
        return None;
    }
    // Words are glyphs apart: one solid blob filling most of its box is a shape the
    // detector took for text (a disc, a bar), left to the shapes.
    let strong: Vec<usize> = alpha.iter().filter(|(_, a)| *a >= 0.5).map(|(i, _)| *i).collect();
    if !strong.is_empty() {
        let (x0, y0, bw, bh) = bounds(&strong, w);
        let mut solid = vec![false; bw * bh];
        for &i in &strong {
            solid[(i / w - y0) * bw + (i % w - x0)] = true;
        }
        if blobs(&mut solid, bw, bh).iter().any(|blob| blob.len() * 2 > bw * bh) {
            return None;
        }
    }
    for &(i, a) in &alpha {
        covered[i] = true;
        let p = image.px(i);
        for c in 0..3 {
            under[c * n + i] = if a < 0.9 { ((p[c] - a * text[c]) / (1.0 - a)).clamp(0.0, 1.0) } else { bg_at(i)[c] };
        }
    }
    Some(element(Kind::Text, &alpha, w, |_, _, _| text))
}

/// Alpha of `p` as a mix of `top` over `below`, and how far `p` lies off that mix.
pub(super) fn unmix(p: [f32; 3], below: [f32; 3], top: [f32; 3]) -> (f32, f32) {
    let d = [top[0] - below[0], top[1] - below[1], top[2] - below[2]];
    let len2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
    if len2 < 1e-6 {
        return (0.0, distance(p, below));
    }
    let v = [p[0] - below[0], p[1] - below[1], p[2] - below[2]];
    let a = ((v[0] * d[0] + v[1] * d[1] + v[2] * d[2]) / len2).clamp(0.0, 1.0);
    let mix = [below[0] + a * d[0], below[1] + a * d[1], below[2] + a * d[2]];
    (a, distance(p, mix))
}

pub(super) fn median(pixels: impl Iterator<Item = [f32; 3]>) -> [f32; 3] {
    let mut chans: [Vec<f32>; 3] = Default::default();
    for p in pixels {
        for c in 0..3 {
            chans[c].push(p[c]);
        }
    }
    chans.map(|mut v| {
        if v.is_empty() {
            return 0.0;
        }
        let mid = v.len() / 2;
        *v.select_nth_unstable_by(mid, f32::total_cmp).1
    })
}

/// The pixels of a band `width` wide just outside box `b`.
pub(super) fn ring(b: &TextBox, w: usize, h: usize, width: usize) -> Vec<usize> {
    let (x0, y0) = (b.x0.saturating_sub(width), b.y0.saturating_sub(width));
    let (x1, y1) = ((b.x1 + width).min(w), (b.y1 + width).min(h));
    let mut out = Vec::new();
    for y in y0..y1 {
        for x in x0..x1 {
            if x < b.x0 || x >= b.x1 || y < b.y0 || y >= b.y1 {
                out.push(y * w + x);
            }
        }
    }
    out
}

/// The large region most of the ring around box `b` belongs to.
pub(super) fn ring_label(labels: &[u32], covered: &[bool], sizes: &[usize], b: &TextBox, w: usize, h: usize) -> Option<u32> {
    let mut counts: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for i in ring(b, w, h, 2) {
        if !covered[i] && sizes[labels[i] as usize] >= SMALL_REGION {
            *counts.entry(labels[i]).or_default() += 1;
        }
    }
    counts.into_iter().max_by_key(|(_, c)| *c).map(|(l, _)| l)
}

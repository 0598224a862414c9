//! Takes a graphic apart into its elements, on the CPU, from the image and the detector's
//! text boxes:
//!
//! 1. **Text.** In each box, the local background is the median of a ring just outside it and
//!    the text colour the median of the pixels farthest from it. Each pixel's alpha unmixes
//!    it between the two (its projection on the segment from background to text colour), so
//!    anti-aliased edges get fractional alpha and the layer's colour is the text's own;
//!    pixels off that segment (another colour: a photo, a shape) get none.
//! 2. **Regions.** The rest of the image is split into regions of neighbouring pixels that
//!    differ by at most [`STEP`] per channel: a flat colour or a smooth gradient is one
//!    region, a photograph many tiny ones. Pixels under text join the region around them.
//! 3. **Background.** The region touching most of the image's border, when it touches at
//!    least [`FLAT_BORDER`] of it, is a flat or gradient background: a plane per channel is
//!    fitted to it and continued under every element. Otherwise the background is
//!    photographic and keeps its own pixels (the object models' push-pull fill goes under the
//!    elements taken off it).
//! 4. **Shapes** are the other large regions: their own colour, alpha 1 inside, fractional
//!    only on the anti-aliased edge pixels around them (unmixed against the background
//!    model). **Images** are the large blobs of busy pixels (on a flat background only).
//!
//! Elements under the minimum coverage, or beyond the layer count, stay in the background
//! as pixels, so the layers always recomposite to the input.

use super::detect::TextBox;

/// Neighbouring pixels of one region differ by at most this much per channel (of 1).
pub const STEP: f32 = 4.5 / 255.0;
/// A shape's pixels lie this close to its plane on average: drawn fills are exact to the
/// 8-bit step, a photograph's smooth tones are not.
const FLAT: f32 = 1.5 / 255.0;
/// A shape is on average at least this many pixels thick (its area over its longer side).
const MIN_THICKNESS: f64 = 2.5;
/// A background is flat (or a gradient) when its region holds this share of the border.
const FLAT_BORDER: f64 = 0.3;
/// Text whose colour is this close to its background is not taken off.
const MIN_CONTRAST: f32 = 0.12;
/// A pixel of a text box is the background, or on the mix of background and text colour,
/// when it lies this close to it.
const EXPLAINED: f32 = 0.06;
/// The share of a text box's non-background pixels that must be on that mix for it to be
/// taken off as text.
const TEXT_MIXED: f64 = 0.6;
/// Regions smaller than this many pixels are busy (photographs, edges).
const SMALL_REGION: usize = 24;
/// Busy pixels this far from a region are no edge of it.
const EDGE_REACH: usize = 2;

/// What an element is (bottom to top: images, shapes, text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Image,
    Shape,
    Text,
}

/// One element: its kind, its box, and its straight RGBA inside the box (planar: R, G, B,
/// A, each `width * height` of the box).
#[derive(Debug, Clone)]
pub struct Element {
    pub kind: Kind,
    pub x0: usize,
    pub y0: usize,
    pub width: usize,
    pub height: usize,
    pub rgba: Vec<f32>,
    /// Its alpha's sum, in pixels.
    pub coverage: f64,
}

/// The decomposition: the opaque background (planar RGB, the whole image; NaN where a
/// photographic background is to be filled under the elements) and the elements over it,
/// bottom first.
pub struct Layout {
    pub background: Vec<f32>,
    pub elements: Vec<Element>,
}

/// An image to take apart: planar RGB in [0,1].
pub struct Image<'a> {
    pub rgb: &'a [f32],
    pub width: usize,
    pub height: usize,
}

impl Image<'_> {
    fn px(&self, i: usize) -> [f32; 3] {
        let n = self.width * self.height;
        [self.rgb[i], self.rgb[n + i], self.rgb[2 * n + i]]
    }
}

/// Takes `image` apart. `min_pixels`: elements covering fewer pixels stay in the background;
/// `max_elements`: the most elements kept (the largest of each kind first, text first).
pub fn decompose(image: &Image<'_>, texts: &[TextBox], min_pixels: f64, max_elements: usize) -> Layout {
    let (w, h) = (image.width, image.height);
    let n = w * h;
    // 1. Text, and what lies under it.
    let mut under = image.rgb.to_vec();
    let mut covered = vec![false; n];
    let mut elements = Vec::new();
    for b in texts {
        if let Some(text) = text_element(image, b, &mut under, &mut covered) {
            elements.push(text);
        }
    }
    let base = Image { rgb: &under, width: w, height: h };
    // 2. Regions of the rest.
    let labels = regions(&base, &covered);
    let mut sizes = vec![0usize; n];
    for &l in &labels {
        sizes[l as usize] += 1;
    }
    // Pixels under text join the region most of the box's ring belongs to.
    let mut labels = labels;
    for b in texts {
        if let Some(l) = ring_label(&labels, &covered, &sizes, b, w, h) {
            for y in b.y0..b.y1 {
                for x in b.x0..b.x1 {
                    if covered[y * w + x] {
                        labels[y * w + x] = l;
                        sizes[l as usize] += 1;
                    }
                }
            }
        }
    }
    // 3. The background.
    let mut border = vec![0usize; n];
    for x in 0..w {
        border[labels[x] as usize] += 1;
        border[labels[(h - 1) * w + x] as usize] += 1;
    }
    for y in 0..h {
        border[labels[y * w] as usize] += 1;
        border[labels[y * w + w - 1] as usize] += 1;
    }
    let perimeter = (2 * (w + h)) as f64;
    let (bg_label, bg_border) = border.iter().enumerate().max_by_key(|(_, c)| **c).map(|(l, c)| (l as u32, *c)).unwrap_or((0, 0));
    let flat = bg_border as f64 >= FLAT_BORDER * perimeter && sizes[bg_label as usize] >= SMALL_REGION;
    // Fitted to the pixels seen, not to those the text unmixing estimated.
    let plane = flat.then(|| fit_plane(&base, region(&labels, bg_label).filter(|&i| !covered[i])));
    let busy: Vec<bool> = labels.iter().map(|&l| sizes[l as usize] < SMALL_REGION).collect();
    let mut boxes = region_boxes(&labels, w);
    // Regions the background's plane explains (parts of it cut off by a stripe, the holes
    // of shapes) are background too.
    if let Some(p) = &plane {
        let mut error: std::collections::HashMap<u32, (f64, usize)> = std::collections::HashMap::new();
        for (i, &l) in labels.iter().enumerate() {
            if l != bg_label && sizes[l as usize] >= SMALL_REGION {
                let e = error.entry(l).or_default();
                e.0 += f64::from(distance(base.px(i), p.at(i % w, i / w)));
                e.1 += 1;
            }
        }
        let joined: std::collections::HashSet<u32> = error.into_iter().filter(|(_, (sum, count))| sum / *count as f64 <= f64::from(STEP)).map(|(l, _)| l).collect();
        for l in labels.iter_mut() {
            if joined.contains(l) {
                *l = bg_label;
            }
        }
    }
    // 4. Images, shapes and their edges. An image is a dense blob of busy pixels (on a flat
    // background); every region wholly inside its box is part of it.
    let mut image_of = vec![u32::MAX; n];
    let mut images: Vec<Vec<usize>> = Vec::new();
    let mut absorbed: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    if flat {
        let mut left: Vec<bool> = (0..n).map(|i| busy[i] && !covered[i]).collect();
        for blob in blobs(&mut left, w, h) {
            let b = bounds(&blob, w);
            let density = blob.len() as f64 / (b.2 * b.3) as f64;
            if (blob.len() as f64) < min_pixels.max(SMALL_REGION as f64 * 16.0) || density < 0.25 {
                continue;
            }
            let k = images.len() as u32;
            for &i in &blob {
                image_of[i] = k;
            }
            images.push(blob);
            let inside = |r: &(usize, usize, usize, usize)| r.0 + 2 >= b.0 && r.1 + 2 >= b.1 && r.0 + r.2 <= b.0 + b.2 + 2 && r.1 + r.3 <= b.1 + b.3 + 2;
            boxes.retain(|l, r| {
                let inner = *l != bg_label && inside(r);
                if inner {
                    absorbed.insert(*l, k);
                }
                !inner
            });
        }
        // The regions inside an image's box join it.
        for (i, l) in labels.iter().enumerate() {
            if let Some(&k) = absorbed.get(l) {
                if image_of[i] == u32::MAX {
                    image_of[i] = k;
                    images[k as usize].push(i);
                }
            }
        }
    }
    let mut owner = vec![u32::MAX; n];
    let mut shapes: Vec<u32> = boxes
        .keys()
        .copied()
        .filter(|&l| l != bg_label && sizes[l as usize] >= SMALL_REGION && (sizes[l as usize] as f64) >= min_pixels && labels[l as usize] == l)
        .collect();
    shapes.sort_by_key(|&l| (std::cmp::Reverse(sizes[l as usize]), l));
    let below = |i: usize| match &plane {
        Some(p) => p.at(i % w, i / w),
        None => base.px(i),
    };
    let mut members: std::collections::HashMap<u32, Vec<usize>> = shapes.iter().map(|&l| (l, Vec::new())).collect();
    for (i, l) in labels.iter().enumerate() {
        if let Some(pixels) = members.get_mut(l) {
            pixels.push(i);
        }
    }
    let mut shape_elements = Vec::new();
    for &l in &shapes {
        let k = shape_elements.len();
        let pixels = members.remove(&l).unwrap_or_default();
        if pixels.is_empty() {
            continue;
        }
        let model = fit_plane(&base, pixels.iter().copied().filter(|&i| !covered[i]));
        // A shape is flat or a smooth gradient: its pixels lie on its plane. A region grown
        // across a photograph's soft tones does not.
        let residual = pixels.iter().map(|&i| f64::from(distance(base.px(i), model.at(i % w, i / w)))).sum::<f64>() / pixels.len() as f64;
        // A strip one or two pixels wide along an edge (a resampled edge's ringing) is part
        // of that edge, not a shape of its own; a line drawn over one region is a shape.
        let (_, _, bw, bh) = bounds(&pixels, w);
        let thin = (pixels.len() as f64) < MIN_THICKNESS * bw.max(bh) as f64;
        if residual > f64::from(FLAT) || (thin && !drawn_over_one_region(&pixels, &labels, &sizes, l, w, h)) {
            continue;
        }
        for &i in &pixels {
            owner[i] = k as u32;
        }
        shape_elements.push((l, model, pixels));
    }
    // Edge pixels: busy pixels next to a shape, unmixed between it and what is below.
    let mut edges: Vec<Vec<(usize, f32)>> = vec![Vec::new(); shape_elements.len()];
    for i in 0..n {
        if !busy[i] || covered[i] || image_of[i] != u32::MAX {
            continue;
        }
        let (x, y) = (i % w, i / w);
        let mut best: Option<(u32, f32, f32)> = None;
        for yy in y.saturating_sub(EDGE_REACH)..(y + EDGE_REACH + 1).min(h) {
            for xx in x.saturating_sub(EDGE_REACH)..(x + EDGE_REACH + 1).min(w) {
                let k = owner[yy * w + xx];
                if k == u32::MAX || best.is_some_and(|(b, _, _)| b == k) {
                    continue;
                }
                let colour = shape_elements[k as usize].1.at(x, y);
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
    let mut taken = vec![false; n];
    for ((label, model, pixels), edge) in shape_elements.iter().zip(&edges) {
        let mut alpha: Vec<(usize, f32)> = pixels.iter().map(|&i| (i, 1.0)).collect();
        alpha.extend(edge.iter().copied());
        for &(i, _) in &alpha {
            taken[i] = true;
        }
        // Inside, the region's own pixels (a shape's colour is its own, texture and all); on
        // its edge, the fitted colour the edge pixels were unmixed with.
        elements.push(element(Kind::Shape, &alpha, w, |x, y, i| if labels[i] == *label { base.px(i) } else { model.at(x, y) }));
    }
    for image in &images {
        let alpha: Vec<(usize, f32)> = image.iter().map(|&i| (i, 1.0)).collect();
        elements.push(element(Kind::Image, &alpha, w, |_, _, i| base.px(i)));
    }
    // Down to the limit: the smallest element joins the nearest one of its kind (a word the
    // next word of its line, a shape the next shape); one alone of its kind stays in the
    // background as pixels.
    elements.retain(|e| e.coverage >= min_pixels.max(1.0));
    let mut kept = elements;
    while kept.len() > max_elements {
        let Some(smallest) = (0..kept.len()).min_by(|&a, &b| kept[a].coverage.total_cmp(&kept[b].coverage)) else { break };
        let e = kept.remove(smallest);
        let nearest = (0..kept.len()).filter(|&j| kept[j].kind == e.kind).min_by(|&a, &b| gap(&kept[a], &e).total_cmp(&gap(&kept[b], &e)));
        if let Some(j) = nearest {
            kept[j] = merge(&kept[j], &e);
        }
    }
    kept.sort_by(|a, b| a.kind.cmp(&b.kind).then(b.coverage.total_cmp(&a.coverage)));
    // The background: the plane (or the pixels) under the kept elements, the input itself
    // everywhere else, so the stack recomposites to the input.
    let mut under_kept = vec![false; n];
    for e in &kept {
        for y in 0..e.height {
            for x in 0..e.width {
                if e.rgba[3 * e.width * e.height + y * e.width + x] > 0.0 {
                    under_kept[(e.y0 + y) * w + e.x0 + x] = true;
                }
            }
        }
    }
    let mut background = image.rgb.to_vec();
    match &plane {
        Some(p) => {
            for i in 0..n {
                if under_kept[i] {
                    let c = p.at(i % w, i / w);
                    for ch in 0..3 {
                        background[ch * n + i] = c[ch];
                    }
                }
            }
        }
        None => {
            // Photographic: the kept text and shapes' pixels are filled from around them.
            for i in 0..n {
                if under_kept[i] {
                    for ch in 0..3 {
                        background[ch * n + i] = f32::NAN;
                    }
                }
            }
        }
    }
    Layout { background, elements: kept }
}

/// A text element from box `b`, or `None` when the box holds no text of its own colour;
/// `under` gets the unmixed background under it and `covered` its pixels.
fn text_element(image: &Image<'_>, b: &TextBox, under: &mut [f32], covered: &mut [bool]) -> Option<Element> {
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

/// How far apart two elements' centres are.
fn gap(a: &Element, b: &Element) -> f64 {
    let centre = |e: &Element| (e.x0 as f64 + e.width as f64 / 2.0, e.y0 as f64 + e.height as f64 / 2.0);
    let ((ax, ay), (bx, by)) = (centre(a), centre(b));
    (ax - bx).hypot(ay - by)
}

/// One element of `a` with `b` over it ("over", straight alpha), on the union of their boxes.
fn merge(a: &Element, b: &Element) -> Element {
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
    Element { kind: a.kind, x0, y0, width: w, height: h, rgba, coverage }
}

/// An element from its pixels' alpha (image indices), coloured by `colour(x, y, index)`.
fn element(kind: Kind, alpha: &[(usize, f32)], w: usize, colour: impl Fn(usize, usize, usize) -> [f32; 3]) -> Element {
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
    Element { kind, x0, y0, width: bw, height: bh, rgba, coverage }
}

/// Alpha of `p` as a mix of `top` over `below`, and how far `p` lies off that mix.
fn unmix(p: [f32; 3], below: [f32; 3], top: [f32; 3]) -> (f32, f32) {
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

fn distance(a: [f32; 3], b: [f32; 3]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

fn median(pixels: impl Iterator<Item = [f32; 3]>) -> [f32; 3] {
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
fn ring(b: &TextBox, w: usize, h: usize, width: usize) -> Vec<usize> {
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
fn ring_label(labels: &[u32], covered: &[bool], sizes: &[usize], b: &TextBox, w: usize, h: usize) -> Option<u32> {
    let mut counts: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for i in ring(b, w, h, 2) {
        if !covered[i] && sizes[labels[i] as usize] >= SMALL_REGION {
            *counts.entry(labels[i]).or_default() += 1;
        }
    }
    counts.into_iter().max_by_key(|(_, c)| *c).map(|(l, _)| l)
}

/// Regions of 4-connected pixels whose neighbours differ by at most [`STEP`] per channel;
/// each pixel's label is its region's root index. Covered pixels are regions of their own.
fn regions(image: &Image<'_>, covered: &[bool]) -> Vec<u32> {
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
fn blobs(mask: &mut [bool], w: usize, h: usize) -> Vec<Vec<usize>> {
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

/// A colour that is flat or a linear gradient: `c + gx * x + gy * y` per channel.
#[derive(Debug, Clone, Copy)]
pub struct Plane {
    c: [f64; 3],
    gx: [f64; 3],
    gy: [f64; 3],
}

impl Plane {
    pub fn at(&self, x: usize, y: usize) -> [f32; 3] {
        let (x, y) = (x as f64, y as f64);
        [0, 1, 2].map(|ch| (self.c[ch] + self.gx[ch] * x + self.gy[ch] * y).clamp(0.0, 1.0) as f32)
    }
}

/// Whether a thin region lies inside one other region: looking three pixels to each side of
/// it (past its anti-aliased edge), nearly all the regions seen are one. A strip of ringing
/// along an edge sees the shape on one side and what is under it on the other.
fn drawn_over_one_region(pixels: &[usize], labels: &[u32], sizes: &[usize], label: u32, w: usize, h: usize) -> bool {
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

/// Each region's box `(x, y, width, height)`, by label.
fn region_boxes(labels: &[u32], w: usize) -> std::collections::HashMap<u32, (usize, usize, usize, usize)> {
    let mut corners: std::collections::HashMap<u32, (usize, usize, usize, usize)> = std::collections::HashMap::new();
    for (i, &l) in labels.iter().enumerate() {
        let (x, y) = (i % w, i / w);
        let c = corners.entry(l).or_insert((x, y, x, y));
        *c = (c.0.min(x), c.1.min(y), c.2.max(x), c.3.max(y));
    }
    corners.into_iter().map(|(l, (x0, y0, x1, y1))| (l, (x0, y0, x1 + 1 - x0, y1 + 1 - y0))).collect()
}

/// The box `(x, y, width, height)` of some pixels.
fn bounds(pixels: &[usize], w: usize) -> (usize, usize, usize, usize) {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for &i in pixels {
        let (x, y) = (i % w, i / w);
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
    }
    (x0, y0, x1 + 1 - x0, y1 + 1 - y0)
}

/// The pixels of region `label`.
fn region(labels: &[u32], label: u32) -> impl Iterator<Item = usize> + '_ {
    labels.iter().enumerate().filter(move |(_, l)| **l == label).map(|(i, _)| i)
}

/// The least-squares plane of the colours of `pixels`.
fn fit_plane(image: &Image<'_>, pixels: impl Iterator<Item = usize>) -> Plane {
    let w = image.width;
    // Normal equations over (1, x, y), centred for conditioning.
    let (mut s, mut sx, mut sy, mut sxx, mut syy, mut sxy) = (0f64, 0f64, 0f64, 0f64, 0f64, 0f64);
    let mut sv = [0f64; 3];
    let mut sxv = [0f64; 3];
    let mut syv = [0f64; 3];
    for i in pixels {
        let (x, y) = ((i % w) as f64, (i / w) as f64);
        let p = image.px(i);
        s += 1.0;
        sx += x;
        sy += y;
        sxx += x * x;
        syy += y * y;
        sxy += x * y;
        for c in 0..3 {
            let v = f64::from(p[c]);
            sv[c] += v;
            sxv[c] += x * v;
            syv[c] += y * v;
        }
    }
    if s == 0.0 {
        return Plane { c: [0.0; 3], gx: [0.0; 3], gy: [0.0; 3] };
    }
    let (mx, my) = (sx / s, sy / s);
    let (cxx, cyy, cxy) = (sxx / s - mx * mx, syy / s - my * my, sxy / s - mx * my);
    let det = cxx * cyy - cxy * cxy;
    let mut plane = Plane { c: [0.0; 3], gx: [0.0; 3], gy: [0.0; 3] };
    for c in 0..3 {
        let mv = sv[c] / s;
        let (cxv, cyv) = (sxv[c] / s - mx * mv, syv[c] / s - my * mv);
        let (gx, gy) = if det.abs() > 1e-9 {
            ((cxv * cyy - cyv * cxy) / det, (cyv * cxx - cxv * cxy) / det)
        } else if cxx > 1e-9 {
            (cxv / cxx, 0.0)
        } else if cyy > 1e-9 {
            (0.0, cyv / cyy)
        } else {
            (0.0, 0.0)
        };
        plane.gx[c] = gx;
        plane.gy[c] = gy;
        plane.c[c] = mv - gx * mx - gy * my;
    }
    plane
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A graphic drawn here: a horizontal gradient background, a flat red rectangle, and a
    /// dark anti-aliased bar standing in for a word inside a box the detector would give.
    fn graphic(w: usize, h: usize) -> Vec<f32> {
        let n = w * h;
        let mut rgb = vec![0f32; 3 * n];
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let g = 0.2 + 0.6 * x as f32 / (w - 1) as f32;
                let mut p = [g, g, 0.9];
                if (10..40).contains(&x) && (8..30).contains(&y) {
                    p = [0.9, 0.1, 0.1];
                }
                // The "word": two hollow glyphs (2-pixel strokes) in rows 40-55, columns 50-67
                // and 72-89, their outermost columns half covered.
                let glyph = |x0: usize| (x0..x0 + 18).contains(&x) && (x < x0 + 2 || x >= x0 + 16 || y < 42 || y >= 54);
                if (40..56).contains(&y) && (glyph(50) || glyph(72)) {
                    let a = if x == 50 || x == 89 { 0.5 } else { 1.0 };
                    let t = [0.1, 0.1, 0.1];
                    p = [0, 1, 2].map(|c| a * t[c] + (1.0 - a) * p[c]);
                }
                for c in 0..3 {
                    rgb[c * n + i] = p[c];
                }
            }
        }
        rgb
    }

    #[test]
    fn a_gradient_background_is_continued_exactly_under_a_shape_and_text() {
        let (w, h) = (120, 64);
        let rgb = graphic(w, h);
        let image = Image { rgb: &rgb, width: w, height: h };
        let word = TextBox { x0: 46, y0: 36, x1: 94, y1: 60, score: 0.9 };
        let layout = decompose(&image, &[word], 16.0, 31);
        let kinds: Vec<Kind> = layout.elements.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec![Kind::Shape, Kind::Text], "{kinds:?}");
        // Under the rectangle and the word the background is the gradient itself.
        let n = w * h;
        for (x, y) in [(20, 20), (60, 48), (50, 46)] {
            let want = 0.2 + 0.6 * x as f32 / (w - 1) as f32;
            let got = layout.background[y * w + x];
            assert!((got - want).abs() < 2.0 / 255.0, "background at ({x},{y}) is {got}, the gradient {want}");
            assert!((layout.background[2 * n + y * w + x] - 0.9).abs() < 2.0 / 255.0);
        }
        // The shape: its own red, alpha 1 inside, exactly its rectangle.
        let shape = &layout.elements[0];
        assert_eq!((shape.x0, shape.y0, shape.width, shape.height), (10, 8, 30, 22));
        let m = shape.width * shape.height;
        assert!(shape.rgba[3 * m..].iter().all(|&a| a == 1.0));
        assert!((shape.rgba[0] - 0.9).abs() < 1e-3 && (shape.rgba[m] - 0.1).abs() < 1e-3);
        // The text: its true colour everywhere, alpha 1 in the strokes, 1/2 on the edges.
        let text = &layout.elements[1];
        let m = text.width * text.height;
        assert!((0..3).all(|c| text.rgba[c * m..(c + 1) * m].iter().zip(&text.rgba[3 * m..]).all(|(v, a)| *a == 0.0 || (v - 0.1).abs() < 1e-3)));
        let alpha_at = |x: usize, y: usize| text.rgba[3 * m + (y - text.y0) * text.width + (x - text.x0)];
        assert_eq!(alpha_at(60, 41), 1.0);
        assert_eq!(alpha_at(60, 48), 0.0, "inside a glyph");
        assert_eq!(alpha_at(70, 48), 0.0, "between the glyphs");
        assert!((alpha_at(50, 48) - 0.5).abs() < 0.03, "edge alpha {}", alpha_at(50, 48));
    }

    #[test]
    fn beyond_the_layer_count_the_smallest_elements_merge_or_stay_in_the_background() {
        let (w, h) = (120, 64);
        let rgb = graphic(w, h);
        let image = Image { rgb: &rgb, width: w, height: h };
        // Two words of one colour: at two elements they stay apart, at one they become one
        // layer; at none they stay in the background, which then is the input itself.
        let words = [TextBox { x0: 46, y0: 36, x1: 70, y1: 60, score: 0.9 }, TextBox { x0: 70, y0: 36, x1: 94, y1: 60, score: 0.9 }];
        let kinds = |layout: &Layout| layout.elements.iter().map(|e| e.kind).collect::<Vec<_>>();
        assert_eq!(kinds(&decompose(&image, &words, 16.0, 3)), vec![Kind::Shape, Kind::Text, Kind::Text]);
        let merged = decompose(&image, &words, 16.0, 2);
        assert_eq!(kinds(&merged), vec![Kind::Shape, Kind::Text]);
        let text = &merged.elements[1];
        assert_eq!((text.x0, text.width), (50, 40), "one layer spanning both words");
        let none = decompose(&image, &words, 16.0, 0);
        assert!(none.elements.is_empty());
        assert_eq!(none.background, rgb);
    }

    #[test]
    fn a_thin_line_over_the_background_is_a_shape() {
        let (w, h) = (120, 64);
        let mut rgb = graphic(w, h);
        let n = w * h;
        // A two-pixel dark green vertical line, rows 4-59, columns 112-113.
        for y in 4..60 {
            for x in 112..114 {
                for (c, v) in [0.1, 0.5, 0.2].into_iter().enumerate() {
                    rgb[c * n + y * w + x] = v;
                }
            }
        }
        let layout = decompose(&Image { rgb: &rgb, width: w, height: h }, &[], 16.0, 31);
        let line = layout.elements.iter().find(|e| e.x0 == 112).expect("the line is a layer");
        assert_eq!((line.kind, line.y0, line.width, line.height), (Kind::Shape, 4, 2, 56));
        // Under it the gradient goes on.
        let want = 0.2 + 0.6 * 112.0 / (w - 1) as f32;
        assert!((layout.background[30 * w + 112] - want).abs() < 2.0 / 255.0);
    }

    #[test]
    fn a_blank_image_is_its_background_alone() {
        let (w, h) = (32, 16);
        let rgb = vec![0.5f32; 3 * w * h];
        let layout = decompose(&Image { rgb: &rgb, width: w, height: h }, &[], 4.0, 31);
        assert!(layout.elements.is_empty());
        assert_eq!(layout.background, rgb);
    }
}

//! Takes a graphic apart into its elements, on the CPU, from the image and the detector's
//! text boxes:
//!
//! 1. **Text** (`text.rs`). In each box, the local background is a plane fitted to a ring
//!    just outside it and the text colour the median of the pixels farthest from it. Each pixel's alpha unmixes
//!    it between the two (its projection on the segment from background to text colour), so
//!    anti-aliased edges get fractional alpha and the layer's colour is the text's own;
//!    pixels off that segment (another colour: a photo, a shape) get none. A gradient word
//!    gets a plane as its colour; words on a label the box takes in whole are unmixed against
//!    the label's colour; words set as one block are one layer (`join_blocks`).
//! 2. **Regions** (`regions.rs`). The rest of the image is split into regions of neighbouring pixels that
//!    differ by at most [`STEP`] per channel: a flat colour or a smooth gradient is one
//!    region, a photograph many tiny ones. Pixels under text join the region around them.
//! 3. **Background.** The region touching most of the image's border, when it touches at
//!    least [`FLAT_BORDER`] of it, is a flat or gradient background (`background.rs`): a
//!    surface per channel (`plane.rs`; radial or quadratic when that holds nearly all of the
//!    region, as a radial gradient and a swell do, else a plane), fitted robustly so what leaked into the region does not tilt it,
//!    is continued under every element. Otherwise the background is
//!    photographic and keeps its own pixels (the object models' push-pull fill goes under the
//!    elements taken off it).
//! 4. **Shapes** are the other large regions: their own colour, alpha 1 inside, fractional
//!    only on the anti-aliased edge pixels around them (unmixed against the background
//!    model); pieces of one shape that another over it cuts apart are one (`pieces.rs`), a
//!    steep gradient's one-pixel strips side by side on one plane are one (`ramps.rs`), a
//!    rectangle partly under others is completed under them, and a shape runs on beneath a
//!    word or a shape lying across it where it is seen on both sides (`hidden.rs`). **Images**
//!    (`images.rs`) are the large blobs of busy pixels (on a flat background only). A
//!    region that is one colour partly transparent over the background (its opacity seen in
//!    the gradient showing through it, or in a shape it half covers) is a tinted panel
//!    (`tinted.rs`): what it covers is unmixed from under it and the regions found again, so
//!    it is a layer at its opacity over whole shapes. Shapes of one colour set in a row (the
//!    letters of a word the detector missed, a set of stripes) are one layer (`letters.rs`).
//! 5. **Soft elements** (`soft.rs`): on a flat or gradient background, blobs still standing
//!    off its plane (feathered discs, glows, blurred shadows) whose pixels are mixes of the
//!    background and one colour; alpha unmixed as for text. Blobs of several soft elements
//!    run into one another come apart one element at a time; a drawn blob that comes apart
//!    only in slivers (a glow whose colour runs far from middle to rim) is one element as it
//!    is seen. A drop shadow runs on under the shape that casts it.
//!
//! Shapes go bottom to top largest first, except where their outlines say which lies over
//! the other (`order.rs`: the one on top is seen whole, the one under it with a notch).
//!
//! Elements under the minimum coverage, or beyond the layer count (`elements.rs`, which also
//! builds each layer and a shape's edge), stay in the background as pixels, so the layers always recomposite to the input.

mod background;
mod elements;
mod hidden;
mod images;
mod letters;
mod order;
mod pieces;
mod plane;
mod ramps;
mod regions;
mod soft;
mod text;
mod tinted;

use super::detect::TextBox;
use background::*;
use elements::*;
use hidden::*;
use images::*;
use pieces::*;
use plane::*;
use regions::*;
use text::*;
use tinted::under_tint;

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
    /// Where it goes among its kind, largest first: its coverage, or for a shape completed
    /// under others the coverage of the lowest of them, with `under` set so that it goes
    /// just below that one.
    pub sort_as: f64,
    pub under: bool,
    /// A tinted panel (`tinted.rs`): partly transparent over what it covers, which is found
    /// under it, so it goes over the other shapes and the background under it is what shows
    /// through it.
    pub tint: bool,
    /// Which element it is, for the pairs of shapes that say which lies over which.
    pub id: usize,
    /// A text element's lines: the detector's boxes of words it was found in (`x0, y0, x1,
    /// y1`, the ends exclusive), which the recogniser reads; empty for other elements.
    pub lines: Vec<[usize; 4]>,
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

impl Element {
    /// Its alpha and colour at canvas pixel `(x, y)`, when that is inside its box.
    fn at_mut(&mut self, x: usize, y: usize) -> Option<(&mut f32, [f32; 3])> {
        if x < self.x0 || y < self.y0 || x >= self.x0 + self.width || y >= self.y0 + self.height {
            return None;
        }
        let (m, j) = (self.width * self.height, (y - self.y0) * self.width + x - self.x0);
        let colour = [self.rgba[j], self.rgba[m + j], self.rgba[2 * m + j]];
        Some((&mut self.rgba[3 * m + j], colour))
    }
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
    let mut hosts = Vec::with_capacity(texts.len());
    for b in texts {
        let found = text_element(image, b, &mut under, &mut covered);
        hosts.push(found.as_ref().and_then(|(_, host)| *host));
        elements.extend(found.map(|(text, _)| text));
    }
    let mut elements = join_blocks(elements);
    // 2. and 3. Regions of the rest, and the background.
    let (mut labels, mut sizes, bg_label, mut plane) = segment(&Image { rgb: &under, width: w, height: h }, texts, &hosts, &covered);
    // Tinted panels over a gradient: what they cover is unmixed from under them, and the
    // regions found again.
    let panels = match &plane {
        Some(p) => tinted::panels(&Image { rgb: &under, width: w, height: h }, p, &labels, &sizes, bg_label, min_pixels),
        None => Vec::new(),
    };
    let bg_label = if panels.is_empty() {
        bg_label
    } else {
        for panel in &panels {
            for &(i, a) in &panel.alpha {
                let p = [under[i], under[n + i], under[2 * n + i]];
                let u = under_tint(p, panel.colour, a);
                for c in 0..3 {
                    under[c * n + i] = u[c];
                }
            }
        }
        let again;
        drop(std::mem::take(&mut labels));
        drop(std::mem::take(&mut sizes));
        (labels, sizes, again, plane) = segment(&Image { rgb: &under, width: w, height: h }, texts, &hosts, &covered);
        again
    };
    let base = Image { rgb: &under, width: w, height: h };
    let busy: Vec<bool> = labels.iter().map(|&l| sizes[l as usize] < SMALL_REGION).collect();
    let mut boxes = region_boxes(&labels, w);
    if let Some(p) = &plane {
        join_explained(&base, p, &mut labels, &sizes, bg_label);
    }
    // 4. Images (on a flat or gradient background), shapes and their edges.
    let (images, image_of) = match &plane {
        Some(p) => image_blobs(&base, p, &busy, &covered, &labels, &mut boxes, bg_label, min_pixels),
        None => (Vec::new(), vec![u32::MAX; n]),
    };
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
    // Strips along an edge: the anti-aliased row or column of a straight edge is one colour
    // along its length, so it is a region of its own, not busy; it is edge all the same.
    let mut strip = vec![false; n];
    let mut strips = Vec::new();
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
        if residual > f64::from(FLAT) {
            continue;
        }
        if thin && !drawn_over_one_region(&pixels, &labels, &sizes, l, w, h) {
            for &i in &pixels {
                strip[i] = true;
            }
            strips.push((l, pixels));
            continue;
        }
        for &i in &pixels {
            owner[i] = k as u32;
        }
        shape_elements.push((l, model, pixels));
    }
    // A steep gradient's strips side by side on one plane are one shape (`ramps.rs`).
    for (l, model, pixels) in ramps::ramps(&base, &strips, &labels) {
        for &i in &pixels {
            (strip[i], labels[i], owner[i]) = (false, l, shape_elements.len() as u32);
        }
        shape_elements.push((l, model, pixels));
    }
    drop(strips);
    let edge: Vec<bool> = (0..n).map(|i| busy[i] || strip[i]).collect();
    let joined = join_pieces(&base, &mut shape_elements, &mut owner, &mut labels, bg_label, &edge);
    let mut stacked = order::stacking(&shape_elements, &owner, w, h);
    let models: Vec<Plane> = shape_elements.iter().map(|(_, model, _)| *model).collect();
    let blocked: Vec<bool> = (0..n).map(|i| !(busy[i] || strip[i]) || covered[i] || image_of[i] != u32::MAX).collect();
    // Rectangles partly hidden by shapes over them are completed under them (on a flat or
    // gradient background); the edges of those shapes are then unmixed against the
    // rectangle's colour, not the background's.
    let (mut hidden, mut completed) = match &plane {
        Some(_) => completions(&shape_elements, &owner, &labels, bg_label, &blocked, w),
        None => (vec![Vec::new(); shape_elements.len()], vec![u32::MAX; n]),
    };
    // And a shape that another lies across runs on beneath it.
    if plane.is_some() {
        under_shapes(&base, &shape_elements, &owner, &blocked, &joined, &mut stacked, &mut hidden, &mut completed);
    }
    let below = |i: usize| match completed[i] {
        u32::MAX => below(i),
        k => models[k as usize].at(i % w, i / w),
    };
    let edges = shape_edges(&base, &blocked, &owner, &models, below);
    // A shape a word lies across runs on beneath it, and the word's alpha there is unmixed
    // against the shape's colour, not the background's.
    let mut beneath = vec![Vec::new(); shape_elements.len()];
    for (i, k) in under_text(&covered, &owner, w, h) {
        let (x, y) = (i % w, i / w);
        for word in elements.iter_mut().filter(|e| e.kind == Kind::Text) {
            if let Some((a, colour)) = word.at_mut(x, y).filter(|(a, _)| **a > 0.0) {
                let (unmixed, off) = unmix(image.px(i), models[k as usize].at(x, y), colour);
                if off <= EXPLAINED {
                    *a = unmixed;
                }
            }
        }
        beneath[k as usize].push(i);
    }
    let mut taken = vec![false; n];
    let first_shape = elements.len();
    for (k, ((label, model, pixels), edge)) in shape_elements.iter().zip(&edges).enumerate() {
        let mut alpha: Vec<(usize, f32)> = pixels.iter().map(|&i| (i, 1.0)).collect();
        alpha.extend(edge.iter().copied().filter(|&(i, _)| completed[i] != k as u32));
        for &(i, _) in &alpha {
            taken[i] = true;
        }
        alpha.extend(hidden[k].iter().filter(|&&i| completed[i] == k as u32).map(|&i| (i, 1.0)));
        alpha.extend(beneath[k].iter().map(|&i| (i, 1.0)));
        // Inside, the region's own pixels (a shape's colour is its own, texture and all); on
        // its edge and where it is hidden, its fitted colour.
        elements.push(element(Kind::Shape, &alpha, w, |x, y, i| if labels[i] == *label { base.px(i) } else { model.at(x, y) }));
    }
    place_completed(&mut elements[first_shape..], &hidden, &owner);
    // 5. Soft elements: what still stands off a flat or gradient background.
    let mut cast = Vec::new();
    if let Some(p) = &plane {
        let mut blocked: Vec<bool> = (0..n).map(|i| taken[i] || covered[i] || image_of[i] != u32::MAX).collect();
        for (soft, casting) in soft::soft_elements(&base, p, &mut blocked, min_pixels, &owner) {
            // A drop shadow goes under the shape that casts it.
            if let Some(k) = casting {
                cast.push((first_shape + k as usize, elements.len()));
            }
            elements.push(soft);
        }
    }
    for image in &images {
        let alpha: Vec<(usize, f32)> = image.iter().map(|&i| (i, 1.0)).collect();
        elements.push(element(Kind::Image, &alpha, w, |_, _, i| base.px(i)));
    }
    for panel in &panels {
        let mut e = element(Kind::Shape, &panel.alpha, w, |_, _, _| panel.colour);
        (e.sort_as, e.tint) = (0.0, true);
        elements.push(e);
    }
    for (id, e) in elements.iter_mut().enumerate() {
        e.id = id;
    }
    let mut over: Vec<(usize, usize)> = stacked.iter().map(|&(a, b)| (first_shape + a, first_shape + b)).chain(cast).collect();
    // Shapes of one colour in a row (the letters of a word the detector missed, stripes) are
    // one layer.
    letters::join_rows(&mut elements, first_shape..first_shape + shape_elements.len(), &mut over);
    elements.retain(|e| e.coverage >= min_pixels.max(1.0));
    let kept = limit(elements, max_elements, &over);
    let background = fill_background(image, plane.as_ref(), &kept);
    Layout { background, elements: kept }
}

/// The regions of `base` (pixels under text joined to what the words are on), the size of
/// each, and the background's region and, when flat or a gradient, its surface.
fn segment(base: &Image<'_>, texts: &[TextBox], hosts: &[Option<usize>], covered: &[bool]) -> (Vec<u32>, Vec<usize>, u32, Option<Plane>) {
    let (w, h) = (base.width, base.height);
    let n = w * h;
    let labels = regions(base, covered);
    let mut sizes = vec![0usize; n];
    for &l in &labels {
        sizes[l as usize] += 1;
    }
    // Pixels under text join the label the words are on, else the region most of the box's
    // ring belongs to. On a label, the label's colour inside letters (the counter of an "o")
    // is the label too.
    let mut labels = labels;
    let region_box = region_boxes(&labels, w);
    for (b, host) in texts.iter().zip(hosts) {
        let on_label = host.filter(|&i| sizes[labels[i] as usize] >= SMALL_REGION);
        let host = on_label.map(|i| labels[i]);
        if let Some(l) = host.or_else(|| ring_label(&labels, covered, &sizes, b, w, h)) {
            for y in b.y0..b.y1 {
                for x in b.x0..b.x1 {
                    let i = y * w + x;
                    let counter = on_label.is_some_and(|hi| {
                        let (rx, ry, rw, rh) = region_box[&labels[i]];
                        labels[i] != l && rx > b.x0 && ry > b.y0 && rx + rw < b.x1 && ry + rh < b.y1 && distance(base.px(i), base.px(hi)) <= STEP
                    });
                    if covered[i] || counter {
                        labels[i] = l;
                        sizes[l as usize] += 1;
                    }
                }
            }
        }
    }
    // The background.
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
    let plane = flat.then(|| background_surface(base, &labels, bg_label, covered));
    (labels, sizes, bg_label, plane)
}

#[cfg(test)]
mod tests;

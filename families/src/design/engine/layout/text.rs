//! Text boxes taken off as text layers: the local background fitted to a ring around the
//! box (or, for words on a label the box takes in whole, the label's own colour), the text
//! colour the median of the pixels farthest from it (or the gradient through them), and each
//! pixel's alpha unmixed between the two. Words set as one block are then one layer.

use super::*;

/// A word's colour is a gradient when a plane holds this share of its strongest pixels.
const GRADIENT_HOLDS: f64 = 0.8;
/// Words on a label the detector boxed whole: the label's colour is at least this share of
/// the box's pixels that are not the colour around it.
const LABEL_SHARE: f64 = 0.4;
/// Words on a label have its colour on both sides of this share of their strong pixels.
const ENCLOSED: f64 = 0.9;
/// Words whose colours are this close can be of one block (see [`join_blocks`]).
pub(super) const BLOCK_COLOUR: f32 = 0.08;
/// Words of one block are at most this many times taller than each other.
const BLOCK_SIZE: f64 = 1.6;
/// The next word of a line is at most this many of the taller word's heights away.
const WORD_GAP: f64 = 1.5;
/// The next line of a block is at most this many of the taller line's heights below.
const LINE_GAP: f64 = 1.0;

/// A text element from box `b` and, for words on a label inside the box, one pixel of the
/// label (the region under the words); `None` when the box holds no text of its own colour.
/// `under` gets the unmixed background under it and `covered` its pixels.
pub(super) fn text_element(image: &Image<'_>, b: &TextBox, under: &mut [f32], covered: &mut [bool]) -> Option<(Element, Option<usize>)> {
    let (w, h) = (image.width, image.height);
    let n = w * h;
    let ring = ring(b, w, h, 2);
    if ring.is_empty() {
        return None;
    }
    // The local background: a plane through the ring (a flat colour or the gradient there),
    // fitted again twice without the ring pixels far off it (where the ring crosses a photo
    // or a shape).
    let plane = fit_plane_trimmed(image, &ring);
    let inside: Vec<usize> = (b.y0..b.y1).flat_map(|y| (b.x0..b.x1).map(move |x| y * w + x)).collect();
    // Words on a label (a pill, a button) the detector boxed whole: the ring is what is
    // around the label, and the words' background is the label's colour inside the box.
    let (found, host, bg) = match unmix_text(image, &inside, &plane, None) {
        Some(found) => (found, None, plane),
        None => {
            let (label, host) = label_inside(image, &inside, &plane)?;
            let found = unmix_text(image, &inside, &label, Some(&plane))?;
            if !on_label(image, b, &found.0, &label) {
                return None;
            }
            (found, Some(host), label)
        }
    };
    let (alpha, text) = found;
    for &(i, a) in &alpha {
        covered[i] = true;
        let p = image.px(i);
        let (t, below) = (text.at(i % w, i / w), bg.at(i % w, i / w));
        for c in 0..3 {
            under[c * n + i] = if a < 0.9 { ((p[c] - a * t[c]) / (1.0 - a)).clamp(0.0, 1.0) } else { below[c] };
        }
    }
    let mut word = element(Kind::Text, &alpha, w, |x, y, _| text.at(x, y));
    word.lines = vec![[b.x0, b.y0, b.x1, b.y1]];
    Some((word, host))
}

/// The text in the pixels `inside` a box over the background `bg`: each pixel's alpha and the
/// text's colour, or `None` when they are not a word of one colour (or gradient) over it.
/// Pixels that are the `outside` colour (around a label the words are on) are no part of it.
fn unmix_text(image: &Image<'_>, inside: &[usize], bg: &Plane, outside: Option<&Plane>) -> Option<(Vec<(usize, f32)>, Plane)> {
    let w = image.width;
    let bg_at = |i: usize| bg.at(i % w, i / w);
    let is_outside = |i: usize| outside.is_some_and(|o| distance(image.px(i), o.at(i % w, i / w)) <= EXPLAINED);
    let mut far: Vec<(f32, usize)> = inside.iter().filter(|&&i| !is_outside(i)).map(|&i| (distance(image.px(i), bg_at(i)), i)).collect();
    if far.is_empty() {
        return None;
    }
    far.sort_by(|a, b| b.0.total_cmp(&a.0));
    let top = far[(far.len() / 50).min(far.len() - 1)].0;
    if top < MIN_CONTRAST {
        return None;
    }
    let strongest: Vec<usize> = far.iter().take_while(|(d, _)| *d >= 0.7 * top).map(|(_, i)| *i).collect();
    let text = text_colour(image, &strongest);
    let mut alpha = Vec::new();
    let (mut foreground, mut mixed) = (0usize, 0usize);
    for &(_, i) in &far {
        let p = image.px(i);
        let (a, off) = unmix(p, bg_at(i), text.at(i % w, i / w));
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
    alpha.sort_unstable_by_key(|&(i, _)| i);
    Some((alpha, text))
}

/// The label a box's words are on, when the box holds one: the most common colour of the
/// pixels inside that are not the `outside` colour around the box, when it is at least
/// [`LABEL_SHARE`] of them, as a plane through the pixels near it (a gradient label); with one
/// of its pixels.
fn label_inside(image: &Image<'_>, inside: &[usize], outside: &Plane) -> Option<(Plane, usize)> {
    let w = image.width;
    let rest: Vec<usize> = inside.iter().copied().filter(|&i| distance(image.px(i), outside.at(i % w, i / w)) > EXPLAINED).collect();
    // The most common colour, by bins of 1/8 per channel.
    let bin = |i: usize| image.px(i).map(|v| ((v * 8.0) as usize).min(7));
    let mut counts: std::collections::HashMap<[usize; 3], usize> = std::collections::HashMap::new();
    for &i in &rest {
        *counts.entry(bin(i)).or_default() += 1;
    }
    let (mode, _) = counts.into_iter().max_by_key(|&(k, c)| (c, k))?;
    let colour = median(rest.iter().filter(|&&i| bin(i) == mode).map(|&i| image.px(i)));
    let near: Vec<usize> = rest.iter().copied().filter(|&i| distance(image.px(i), colour) <= EXPLAINED).collect();
    if (near.len() as f64) < LABEL_SHARE * rest.len() as f64 || near.is_empty() {
        return None;
    }
    Some((fit_plane(image, near.iter().copied()), near[near.len() / 2]))
}

/// Whether words found on a label lie on it: in its row of the box, nearly every strong
/// pixel of them ([`ENCLOSED`]) has the label's colour to its left and to its right (a shadow
/// beside a shape, which the label test also finds, has the background on one side).
fn on_label(image: &Image<'_>, b: &TextBox, alpha: &[(usize, f32)], label: &Plane) -> bool {
    let w = image.width;
    let is_label = |x: usize, y: usize| distance(image.px(y * w + x), label.at(x, y)) <= EXPLAINED;
    let strong: Vec<usize> = alpha.iter().filter(|(_, a)| *a >= 0.5).map(|(i, _)| *i).collect();
    let enclosed = strong
        .iter()
        .filter(|&&i| {
            let (x, y) = (i % w, i / w);
            (b.x0..x).any(|xx| is_label(xx, y)) && (x + 1..b.x1).any(|xx| is_label(xx, y))
        })
        .count();
    !strong.is_empty() && enclosed as f64 >= ENCLOSED * strong.len() as f64
}

/// The text's colour from its strongest pixels: their median, or, when the text is filled
/// with a gradient, the plane through them (fitted again without the pixels far off it: a
/// stroke's edge, another word in the box). The plane is taken when it holds at least
/// [`GRADIENT_HOLDS`] of the pixels within [`EXPLAINED`] and half as many again as the median.
fn text_colour(image: &Image<'_>, strongest: &[usize]) -> Plane {
    let w = image.width;
    let flat = Plane::flat(median(strongest.iter().map(|&i| image.px(i))));
    let plane = fit_plane_trimmed(image, strongest);
    let held = |p: &Plane| strongest.iter().filter(|&&i| distance(image.px(i), p.at(i % w, i / w)) <= EXPLAINED).count() as f64;
    let (by_plane, by_flat) = (held(&plane), held(&flat));
    if by_plane >= GRADIENT_HOLDS * strongest.len() as f64 && by_plane >= 1.5 * by_flat {
        plane
    } else {
        flat
    }
}

/// Words set as one block become one text layer, as a designer sets them in one text box:
/// two words of one colour and size are of a block when one is the next word of the other's
/// line (level with it, at most [`WORD_GAP`] of their height apart) or of its next line
/// (overlapping it across, at most [`LINE_GAP`] of their height below it); blocks are what
/// those links join. Heights differ by up to [`BLOCK_SIZE`] within one size (a word of small
/// letters beside one with capitals).
pub(super) fn join_blocks(words: Vec<Element>) -> Vec<Element> {
    let n = words.len();
    let colours: Vec<Option<[f32; 3]>> = words.iter().map(colour_of).collect();
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for a in 0..n {
        for b in a + 1..n {
            let (Some(ca), Some(cb)) = (colours[a], colours[b]) else { continue };
            if distance(ca, cb) <= BLOCK_COLOUR && of_one_block(&words[a], &words[b]) {
                let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
                parent[ra.max(rb)] = ra.min(rb);
            }
        }
    }
    let mut blocks: Vec<Option<Element>> = vec![None; n];
    for (i, word) in words.into_iter().enumerate() {
        let r = root(&mut parent, i);
        blocks[r] = Some(match blocks[r].take() {
            None => word,
            Some(block) => {
                let mut joined = merge(&block, &word);
                joined.sort_as = joined.coverage;
                joined
            }
        });
    }
    blocks.into_iter().flatten().collect()
}

/// Whether two words of one colour are of one block (see [`join_blocks`]).
fn of_one_block(a: &Element, b: &Element) -> bool {
    let Some((lo, hi, down, across)) = sizes_and_overlaps(a, b) else { return false };
    let next_line = down < 0.5 * lo && across > 0.0 && -down <= LINE_GAP * hi;
    of_one_line(a, b) || next_line
}

/// Whether two elements of one size are of one line: level with each other (overlapping by
/// half the smaller one's height) and at most [`WORD_GAP`] of the taller one's height apart.
pub(super) fn of_one_line(a: &Element, b: &Element) -> bool {
    sizes_and_overlaps(a, b).is_some_and(|(lo, hi, down, across)| down >= 0.5 * lo && -across <= WORD_GAP * hi)
}

/// Two elements' smaller and larger heights and how much their boxes overlap down and across
/// (negative: how far apart they are), when they are of one size (within [`BLOCK_SIZE`]).
fn sizes_and_overlaps(a: &Element, b: &Element) -> Option<(f64, f64, f64, f64)> {
    let (lo, hi) = ((a.height.min(b.height)) as f64, (a.height.max(b.height)) as f64);
    if hi > BLOCK_SIZE * lo {
        return None;
    }
    let overlap = |a0: usize, a1: usize, b0: usize, b1: usize| a1.min(b1) as f64 - a0.max(b0) as f64;
    let down = overlap(a.y0, a.y0 + a.height, b.y0, b.y0 + b.height);
    let across = overlap(a.x0, a.x0 + a.width, b.x0, b.x0 + b.width);
    Some((lo, hi, down, across))
}

/// A text element's colour where it first has a pixel (at the top left; a gradient's there),
/// `None` when it has none.
fn colour_of(e: &Element) -> Option<[f32; 3]> {
    let m = e.width * e.height;
    (0..m).find(|&j| e.rgba[3 * m + j] > 0.0).map(|j| [e.rgba[j], e.rgba[m + j], e.rgba[2 * m + j]])
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

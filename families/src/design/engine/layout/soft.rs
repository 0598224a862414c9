//! Soft elements: feathered discs, glows, blurred shadows. On a flat or gradient background
//! they are what is left off the background's plane once text, shapes and images are taken:
//! neither flat (no shape) nor busy in the way a photograph is. Each blob of such pixels is
//! one element when its pixels are mixes of the background and one colour, the colour of its
//! most distant pixels (its core); each pixel's alpha unmixes it between the two, as for text,
//! and its colour is the one that gives the pixel back exactly over the plane, so the stack
//! still recomposites to the input. Soft elements whose edges run into one another make one
//! blob no colour explains: it comes apart one element at a time (`split`), and the rings
//! a glow comes apart in are joined again. A drawn blob that comes apart only in slivers is
//! one element as it is seen (`as_seen`).

use super::*;

/// Pixels at least this far from the background's plane are the body of a soft element
/// (three region steps: the plane's own noise and a shape's ringing stay below it).
pub(super) const SOFT_DELTA: f32 = 3.0 * STEP;
/// Pixels this far from the plane still belong to a soft element's fading edge.
const SOFT_EDGE: f32 = STEP / 2.0;
/// The share of a blob's pixels, its farthest, whose mean colour is its core colour.
const CORE_SHARE: f64 = 0.05;
/// A soft element's box covers at most this share of the canvas.
const MAX_SPAN: f64 = 0.5;
/// A soft element is at most this opaque where it meets the canvas's edge.
const EDGE_ALPHA: f32 = 0.5;
/// Below this alpha a pixel's colour is the core's where the colour that gives it back
/// exactly is out of range (dividing by a tiny alpha amplifies noise).
const COLOUR_ALPHA: f32 = 0.25;
/// A shadow is at most this opaque at its core: a darker blob is a dark element.
const SHADOW_ALPHA: f32 = 0.65;
/// A shadow's colour: no channel above this.
const SHADOW_DARK: f32 = 0.2;
/// A fading edge may rise this much in alpha from one pixel to the next (noise).
const RISE: f32 = 0.05;
/// A blob of soft elements run into one another comes apart into at most this many parts,
/// each grown from one of the first [`SEEDS`] seeds that gives more than a sliver.
const MAX_PARTS: usize = 16;
const SEEDS: usize = 16;
/// A part of a blob enclosed by another for this share of its edge is a ring of that one;
/// a gap of up to [`GAP`] pixels that neither took may lie between them.
const ENCLOSED: f64 = 0.6;
const GAP: usize = 3;
/// A blob taken as it is seen (`as_seen`) runs off the canvas along at most this share of the
/// outline of its box.
const CUT_SHARE: f64 = 0.25;
/// A drawn surface's pixels lie this close to the mean of their four neighbours (half an
/// 8-bit step in each channel, and less: the rounding of a straight ramp).
const STRAIGHT: f32 = FLAT / 2.0;

/// Finds the soft elements among the pixels not `taken`, over the background `plane`. A
/// shadow that meets a shape (`owner`: each pixel's shape) is that shape's drop shadow: it
/// goes on under the shape (see [`under_shape`]) and comes back with the shape's index.
pub(super) fn soft_elements(base: &Image<'_>, plane: &Plane, taken: &mut [bool], min_pixels: f64, owner: &[u32]) -> Vec<(Element, Option<u32>)> {
    let (w, h) = (base.width, base.height);
    let far = |i: usize| distance(base.px(i), plane.at(i % w, i / w));
    let mut body: Vec<bool> = (0..w * h).map(|i| !taken[i] && far(i) >= SOFT_DELTA).collect();
    let least = min_pixels.max(SMALL_REGION as f64 * 16.0);
    // Blobs to look at, each with the blob it was split from (its family) and how many parts
    // were split off that one.
    let mut queue: Vec<(Vec<usize>, usize, usize)> = blobs(&mut body, w, h).into_iter().enumerate().map(|(k, b)| (b, k, 0)).collect();
    queue.reverse();
    let mut found: Vec<Soft> = Vec::new();
    while let Some((mut blob, family, split_off)) = queue.pop() {
        blob.retain(|&i| !taken[i]);
        if (blob.len() as f64) < least {
            continue;
        }
        // One colour over the background explains the blob, as it explains a word; when
        // none does, soft elements run into one another there, and they come apart.
        if !is_soft(base, plane, &blob) {
            if split_off < MAX_PARTS {
                if let Some((part, rest)) = split(base, plane, &blob, least) {
                    queue.extend(rest.into_iter().rev().map(|r| (r, family, split_off + 1)));
                    queue.push((part, family, split_off + 1));
                    continue;
                }
            }
            if let Some(soft) = as_seen(base, plane, &blob, taken, owner, family) {
                for &(i, _) in &soft.alpha {
                    taken[i] = true;
                }
                found.push(soft);
            }
            continue;
        }
        let Some((core, below)) = core_colour(base, plane, &blob) else { continue };
        let dark = shadow(core, below);
        let core = dark.unwrap_or(core);
        // A part split off others fades out strictly, so its edge does not run on along the
        // faint edges of the others.
        let rise = if split_off == 0 { RISE } else { 0.0 };
        let mut alpha = grow(base, plane, core, &blob, taken, rise);
        // A fading edge that runs on over the canvas is the background's shading: the blob
        // alone is the element then.
        let (_, _, gw, gh) = bounds(&alpha.iter().map(|&(i, _)| i).collect::<Vec<_>>(), w);
        if (gw * gh) as f64 > MAX_SPAN * (w * h) as f64 {
            alpha = blob.iter().map(|&i| (i, unmix(base.px(i), plane.at(i % w, i / w), core).0)).filter(|&(_, a)| a > 0.0).collect();
            alpha.sort_unstable_by_key(|&(i, _)| i);
        }
        for &(i, _) in &alpha {
            taken[i] = true;
        }
        found.push(Soft { family, alpha, core, cores: Vec::new(), dark: dark.is_some() });
    }
    // A glow's colour runs from its centre to its rim, so it comes apart in rings, each
    // enclosed by the one around it: a part whose edge meets another of the same blob for
    // most of its length is that one's.
    let mut owner_of: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for (k, soft) in found.iter().enumerate() {
        owner_of.extend(soft.alpha.iter().map(|&(i, _)| (i, k)));
    }
    // Rings join from the inside out: once the inner rings are one with a ring, its edge is
    // its outer edge alone, so the passes go on while a ring joins another. A part is looked
    // at again only when a part it meets has joined another since (else its answer is the
    // same), so the passes cost what changed.
    let mut merged_into: Vec<usize> = (0..found.len()).collect();
    let mut neighbours: Vec<Vec<usize>> = vec![Vec::new(); found.len()];
    let (mut looked_at, mut moved_at): (Vec<Option<usize>>, Vec<usize>) = (vec![None; found.len()], vec![0; found.len()]);
    let mut joins = 0usize;
    let mut joined = true;
    while joined {
        joined = false;
        for k in (0..found.len()).rev() {
            if found[k].dark || merged_into[k] != k {
                continue;
            }
            if looked_at[k].is_some_and(|at| neighbours[k].iter().all(|&j| moved_at[j] <= at)) {
                continue;
            }
            looked_at[k] = Some(joins);
            let mut met = std::collections::BTreeSet::new();
            let mut meets: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
            let mut edge = 0usize;
            for &(i, _) in &found[k].alpha {
                let (x, y) = (i % w, i / w);
                for (dx, dy) in [(-1i64, 0i64), (1, 0), (0, -1), (0, 1)] {
                    // What lies beyond this edge, across a gap of a few pixels neither part took.
                    let mut beyond = None;
                    for step in 1..=GAP as i64 {
                        let (nx, ny) = (x as i64 + step * dx, y as i64 + step * dy);
                        if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                            break;
                        }
                        let j = ny as usize * w + nx as usize;
                        if let Some(&o) = owner_of.get(&j) {
                            met.insert(o);
                            beyond = Some(merged_into[o]);
                            break;
                        }
                    }
                    match beyond {
                        Some(o) if o == k => {}
                        Some(o) => {
                            edge += 1;
                            *meets.entry(o).or_default() += 1;
                        }
                        None => edge += 1,
                    }
                }
            }
            neighbours[k] = met.into_iter().collect();
            let around = meets.into_iter().filter(|&(o, _)| found[o].family == found[k].family && !found[o].dark).max_by_key(|&(o, n)| (n, std::cmp::Reverse(o)));
            if let Some((o, n)) = around {
                if n as f64 >= ENCLOSED * edge as f64 {
                    joins += 1;
                    for (j, m) in merged_into.iter_mut().enumerate() {
                        if *m == k {
                            (*m, moved_at[j]) = (o, joins);
                        }
                    }
                    joined = true;
                }
            }
        }
    }
    let mut groups: Vec<Option<Soft>> = found.into_iter().map(Some).collect();
    for k in (0..groups.len()).rev() {
        let o = merged_into[k];
        if o != k {
            if let Some(inner) = groups[k].take() {
                if let Some(outer) = groups[o].as_mut() {
                    // Its faint pixels keep its own core as their colour.
                    outer.cores.extend(inner.alpha.iter().map(|&(i, _)| (i, inner.core)));
                    outer.cores.extend(inner.cores);
                    outer.cores.sort_unstable_by_key(|&(i, _)| i);
                    outer.alpha.extend(inner.alpha);
                    outer.alpha.sort_unstable_by_key(|&(i, _)| i);
                }
            }
        }
    }
    let found: Vec<Soft> = groups.into_iter().flatten().collect();
    let mut out = Vec::new();
    for Soft { mut alpha, core, cores, dark, .. } in found {
        let seen = alpha.len();
        let casting = if dark { under_shape(&mut alpha, owner, w, h) } else { None };
        out.push((
            element(Kind::Shape, &alpha, w, |x, y, i| {
                let (p, below) = (base.px(i), plane.at(x, y));
                let a = alpha_at(&alpha, i);
                let own_core = || cores.binary_search_by_key(&i, |&(j, _)| j).map_or(core, |k| cores[k].1);
                if owner[i] != u32::MAX || a <= 0.0 {
                    return own_core();
                }
                let exact = [0, 1, 2].map(|c| (p[c] - (1.0 - a) * below[c]) / a);
                // Faint pixels take the colour that gives them back only where it is a colour
                // (dividing by a small alpha amplifies the noise of the 8-bit steps).
                if a < COLOUR_ALPHA && exact.iter().any(|v| !(0.0..=1.0).contains(v)) {
                    return own_core();
                }
                exact.map(|v| v.clamp(0.0, 1.0))
            }),
            casting.filter(|_| alpha.len() > seen),
        ));
    }
    out
}

/// A soft element found: the blob it came from, its alpha by pixel (sorted), the
/// colour of its core (and of the cores of the rings it took in, by pixel, sorted), and
/// whether it is a shadow.
struct Soft {
    family: usize,
    alpha: Vec<(usize, f32)>,
    core: [f32; 3],
    cores: Vec<(usize, [f32; 3])>,
    dark: bool,
}

/// The share of a shadow's pixels, its most opaque, whose least alpha is the shadow's opacity
/// under the shape that casts it.
const SHADOW_CORE: f64 = 0.05;

/// A drop shadow runs on under the shape that casts it (the shape it meets most, within
/// [`EDGE_REACH`]), as a designer's shadow layer does: over the shape's own pixels inside the
/// convex hull of what is seen of the shadow, at the shadow's opacity (the least alpha of its
/// [`SHADOW_CORE`] most opaque pixels). `alpha` (sorted by pixel) gets those pixels; returns
/// the shape, if any meets it.
fn under_shape(alpha: &mut Vec<(usize, f32)>, owner: &[u32], w: usize, h: usize) -> Option<u32> {
    let mut meets: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for &(i, _) in alpha.iter() {
        let (x, y) = (i % w, i / w);
        for yy in y.saturating_sub(EDGE_REACH)..(y + EDGE_REACH + 1).min(h) {
            for xx in x.saturating_sub(EDGE_REACH)..(x + EDGE_REACH + 1).min(w) {
                let k = owner[yy * w + xx];
                if k != u32::MAX {
                    *meets.entry(k).or_default() += 1;
                }
            }
        }
    }
    let (&shape, _) = meets.iter().max_by_key(|&(k, count)| (*count, std::cmp::Reverse(*k)))?;
    let mut by_alpha: Vec<f32> = alpha.iter().map(|&(_, a)| a).collect();
    by_alpha.sort_by(|a, b| b.total_cmp(a));
    let opacity = by_alpha[((by_alpha.len() as f64 * SHADOW_CORE) as usize).min(by_alpha.len() - 1)];
    let pixels: Vec<usize> = alpha.iter().map(|&(i, _)| i).collect();
    let hull = order::Hull::of(&pixels, w);
    let (x0, y0, bw, bh) = bounds(&pixels, w);
    for y in y0..y0 + bh {
        for x in x0..x0 + bw {
            let i = y * w + x;
            if owner[i] == shape && hull.holds(x, y) {
                alpha.push((i, opacity));
            }
        }
    }
    alpha.sort_unstable_by_key(|&(i, _)| i);
    alpha.dedup_by_key(|&mut (i, _)| i);
    Some(shape)
}

/// Whether `pixels` are mixes of the background and one colour (a soft element, not a
/// photograph).
pub(super) fn is_soft(base: &Image<'_>, plane: &Plane, pixels: &[usize]) -> bool {
    let (w, h) = (base.width, base.height);
    let Some((core, _)) = core_colour(base, plane, pixels) else { return false };
    let unmixed = |i: usize| unmix(base.px(i), plane.at(i % w, i / w), core);
    let mixed = pixels.iter().filter(|&&i| unmixed(i).1 <= EXPLAINED).count();
    // An element fades out inside the canvas; what stays opaque up to the canvas's edge is
    // the background itself where it is no plane (a radial or many-stop gradient).
    let on_edge = |i: usize| {
        let (x, y) = (i % w, i / w);
        x == 0 || y == 0 || x == w - 1 || y == h - 1
    };
    let cut_off = pixels.iter().any(|&i| on_edge(i) && unmixed(i).0 > EDGE_ALPHA);
    // And an element lies on the background: a swell spanning most of the canvas is the
    // background's own shading (a radial gradient), not something on it.
    let (_, _, bw, bh) = bounds(pixels, w);
    let sprawling = (bw * bh) as f64 > MAX_SPAN * (w * h) as f64;
    mixed as f64 >= TEXT_MIXED * pixels.len() as f64 && !cut_off && !sprawling
}

/// Soft elements that run into one another make one blob no single colour explains. The one
/// its farthest pixel belongs to comes off: its core is the mean of the blob's farthest
/// pixels of that pixel's colour, and its part the pixels that are mixes of the background and
/// that core connected to it. Where that part is a sliver, the next farthest pixel is the
/// seed. Returns the part and the rest of the blob in connected pieces, or `None` when no
/// seed gives more than a sliver or a part would be the blob as it is.
fn split(base: &Image<'_>, plane: &Plane, blob: &[usize], least: f64) -> Option<(Vec<usize>, Vec<Vec<usize>>)> {
    let w = base.width;
    let mut by_distance: Vec<(f32, usize)> = blob.iter().map(|&i| (distance(base.px(i), plane.at(i % w, i / w)), i)).collect();
    by_distance.sort_by(|a, b| b.0.total_cmp(&a.0));
    let take = ((blob.len() as f64 * CORE_SHARE).ceil() as usize).max(1);
    // A seed whose part is a sliver too small to be an element is no element's middle (a
    // vessel of a photograph, a ring of a glow whose colour runs on from it): the next
    // farthest pixel outside the slivers is tried, a few times.
    let in_blob: std::collections::HashSet<usize> = blob.iter().copied().collect();
    let mut slivers: std::collections::HashSet<usize> = std::collections::HashSet::new();
    let mut part = Vec::new();
    for _ in 0..SEEDS {
        let Some(&(_, seed)) = by_distance.iter().find(|(_, i)| !slivers.contains(i)) else { return None };
        let seed_colour = base.px(seed);
        let like: Vec<usize> = by_distance.iter().map(|&(_, i)| i).filter(|&i| distance(base.px(i), seed_colour) <= MIN_CONTRAST / 2.0).take(take).collect();
        let mut core = [0f32; 3];
        for &i in &like {
            let p = base.px(i);
            for c in 0..3 {
                core[c] += p[c] / like.len() as f32;
            }
        }
        // Its body only: the fading edge, where another element's edge is a mix of the
        // background and almost any colour, is grown back from the body as for any soft
        // element. Only what the seed reaches is looked at, so a sliver costs its own size.
        part = connected(seed, w, base.height, |i| {
            let (a, off) = unmix(base.px(i), plane.at(i % w, i / w), core);
            in_blob.contains(&i) && a >= COLOUR_ALPHA && off <= EXPLAINED
        });
        if part.len() == blob.len() {
            return None;
        }
        if part.len() as f64 >= least {
            break;
        }
        slivers.insert(seed);
        slivers.extend(part.drain(..));
    }
    if part.is_empty() {
        return None;
    }
    part.sort_unstable();
    // The rest in connected pieces, each started from its first pixel, so the order of the
    // pieces (and what each takes when it grows) does not depend on hashing.
    let rest: Vec<usize> = blob.iter().copied().filter(|i| part.binary_search(i).is_err()).collect();
    let mut left: std::collections::HashSet<usize> = rest.iter().copied().collect();
    let mut starts = rest;
    starts.sort_unstable();
    let mut pieces = Vec::new();
    for start in starts {
        if !left.contains(&start) {
            continue;
        }
        let mut piece = connected(start, w, base.height, |j| left.contains(&j));
        for i in &piece {
            left.remove(i);
        }
        piece.sort_unstable();
        pieces.push(piece);
    }
    Some((part, pieces))
}

/// A blob no one colour explains and that comes apart no further: a glow, whose colour runs
/// from its centre to its rim, or soft elements run into one another so far that none stands
/// alone. It is one element as it is seen: where a pixel is a mix of the background and the
/// blob's core, its alpha unmixes it; elsewhere it is as opaque as the blob's mixes are at
/// their most (its plateau), and more where the pixel needs it for its colour to give it back
/// exactly. Its fading edge grows as any soft element's. `None` when the blob is no element:
/// it reaches the canvas's edge opaque, or spans most of it (the background's own shading).
fn as_seen(base: &Image<'_>, plane: &Plane, blob: &[usize], taken: &[bool], owner: &[u32], family: usize) -> Option<Soft> {
    let (w, h) = (base.width, base.height);
    // Its colour is its own pixels', not those of a shape's edge it takes in.
    let clear: Vec<usize> = blob.iter().copied().filter(|&i| !near_shape(owner, i, w, h)).collect();
    let (core, below) = core_colour(base, plane, if clear.is_empty() { blob } else { &clear })?;
    // A shadow as any soft element's: near black, partly transparent.
    let dark = shadow(core, below);
    let core = dark.unwrap_or(core);
    let (_, _, bw, bh) = bounds(blob, w);
    if (bw * bh) as f64 > MAX_SPAN * (w * h) as f64 {
        return None;
    }
    let on_edge = |i: usize| {
        let (x, y) = (i % w, i / w);
        x == 0 || y == 0 || x == w - 1 || y == h - 1
    };
    // Cut off by the canvas, as an element placed partly off it is, along a short stretch of
    // its outline; the background's shading runs along the canvas's edge.
    let cut = blob.iter().filter(|&&i| on_edge(i) && unmix(base.px(i), plane.at(i % w, i / w), core).0 > EDGE_ALPHA).count();
    if cut as f64 > CUT_SHARE * 2.0 * (bw + bh) as f64 {
        return None;
    }
    if !drawn(base, blob) {
        return None;
    }
    let mut on_mix: Vec<f32> = blob.iter().map(|&i| unmix(base.px(i), plane.at(i % w, i / w), core)).filter(|&(_, off)| off <= EXPLAINED).map(|(a, _)| a).collect();
    on_mix.sort_by(|a, b| a.total_cmp(b));
    let plateau = on_mix.get(((on_mix.len() as f64 * (1.0 - CORE_SHARE)) as usize).min(on_mix.len().saturating_sub(1))).copied().unwrap_or(1.0);
    let mut alpha = grow(base, plane, core, blob, taken, 0.0);
    let mut inside = blob.to_vec();
    inside.sort_unstable();
    for (i, a) in alpha.iter_mut() {
        if inside.binary_search(i).is_err() {
            continue;
        }
        let (p, below) = (base.px(*i), plane.at(*i % w, *i / w));
        let (mixed, off) = unmix(p, below, core);
        *a = if off <= EXPLAINED { mixed } else { plateau.max(least_alpha(p, below)) };
    }
    alpha.retain(|&(_, a)| a > 0.0);
    Some(Soft { family, alpha, core, cores: Vec::new(), dark: dark.is_some() })
}

/// Whether a blob is drawn, not photographed: a drawn fill, gradient or glow is straight to
/// the 8-bit step, so most of its pixels lie within [`STRAIGHT`] of the mean of their four
/// neighbours; a photograph's grain does not (an edge, drawn or not, is a thin line of
/// pixels, which the median does not see).
fn drawn(base: &Image<'_>, blob: &[usize]) -> bool {
    let (w, h) = (base.width, base.height);
    let mut bends: Vec<f32> = blob
        .iter()
        .filter(|&&i| (1..w - 1).contains(&(i % w)) && (1..h - 1).contains(&(i / w)))
        .map(|&i| {
            let around = [base.px(i - 1), base.px(i + 1), base.px(i - w), base.px(i + w)];
            distance(base.px(i), [0, 1, 2].map(|c| around.iter().map(|p| p[c]).sum::<f32>() / 4.0))
        })
        .collect();
    if bends.is_empty() {
        return false;
    }
    let middle = bends.len() / 2;
    let (_, median, _) = bends.select_nth_unstable_by(middle, |a, b| a.total_cmp(b));
    *median <= STRAIGHT
}

/// Whether a shape's pixel lies within [`EDGE_REACH`] of pixel `i`.
fn near_shape(owner: &[u32], i: usize, w: usize, h: usize) -> bool {
    let (x, y) = (i % w, i / w);
    (y.saturating_sub(EDGE_REACH)..(y + EDGE_REACH + 1).min(h)).any(|yy| (x.saturating_sub(EDGE_REACH)..(x + EDGE_REACH + 1).min(w)).any(|xx| owner[yy * w + xx] != u32::MAX))
}

/// The least alpha at which some colour over `below` gives `p` back.
fn least_alpha(p: [f32; 3], below: [f32; 3]) -> f32 {
    let mut a = 0f32;
    for c in 0..3 {
        let d = p[c] - below[c];
        let room = if d > 0.0 { 1.0 - below[c] } else { below[c] };
        if room > 1e-6 {
            a = a.max(d.abs() / room);
        }
    }
    a.min(1.0)
}

/// The pixels 8-connected to `start` among those `inside` accepts (empty when it does not
/// accept `start`).
fn connected(start: usize, w: usize, h: usize, inside: impl Fn(usize) -> bool) -> Vec<usize> {
    if !inside(start) {
        return Vec::new();
    }
    let mut seen = std::collections::HashSet::from([start]);
    let mut stack = vec![start];
    let mut out = Vec::new();
    while let Some(i) = stack.pop() {
        out.push(i);
        let (x, y) = (i % w, i / w);
        for yy in y.saturating_sub(1)..(y + 2).min(h) {
            for xx in x.saturating_sub(1)..(x + 2).min(w) {
                let j = yy * w + xx;
                if !seen.contains(&j) && inside(j) {
                    seen.insert(j);
                    stack.push(j);
                }
            }
        }
    }
    out
}

/// The mean colour of the blob's pixels farthest from the plane, if it stands out from it,
/// and the plane's mean colour under them.
fn core_colour(base: &Image<'_>, plane: &Plane, blob: &[usize]) -> Option<([f32; 3], [f32; 3])> {
    let w = base.width;
    let mut by_distance: Vec<(f32, usize)> = blob.iter().map(|&i| (distance(base.px(i), plane.at(i % w, i / w)), i)).collect();
    by_distance.sort_by(|a, b| b.0.total_cmp(&a.0));
    let take = ((blob.len() as f64 * CORE_SHARE).ceil() as usize).max(1);
    let (mut sum, mut under) = ([0f32; 3], [0f32; 3]);
    for &(_, i) in &by_distance[..take] {
        let (p, b) = (base.px(i), plane.at(i % w, i / w));
        for c in 0..3 {
            sum[c] += p[c];
            under[c] += b[c];
        }
    }
    let core = sum.map(|s| s / take as f32);
    let (_, i) = by_distance[take - 1];
    (distance(core, plane.at(i % w, i / w)) >= MIN_CONTRAST).then_some((core, under.map(|s| s / take as f32)))
}

/// A shadow's colour, when the blob is one: a core that darkens the background under it in
/// every channel, and that is the background mixed with a near-black colour at most
/// [`SHADOW_ALPHA`] opaque. The colour is where the line from the background through the core
/// leaves the colour cube (its first channel reaching 0); the pixels' alpha is then measured
/// against it, so the core comes out partly transparent, as a shadow is. A core seen over one
/// background colour alone is as well a lighter colour more opaque: the darkest explanation
/// is the one a shadow has, and a blob that is not dark enough for it keeps its core colour.
fn shadow(core: [f32; 3], below: [f32; 3]) -> Option<[f32; 3]> {
    let mut t = f32::INFINITY;
    for c in 0..3 {
        let d = below[c] - core[c];
        if d <= MIN_CONTRAST / 4.0 {
            return None;
        }
        t = t.min(below[c] / d);
    }
    let dark = [0, 1, 2].map(|c| (below[c] + t * (core[c] - below[c])).max(0.0));
    (1.0 / t <= SHADOW_ALPHA && dark.iter().all(|&v| v <= SHADOW_DARK)).then_some(dark)
}

/// The blob and the fading edge around it: neighbours that are still a mix of the plane and
/// the core colour and stand off the plane at all. Returns `(pixel, alpha)`.
fn grow(base: &Image<'_>, plane: &Plane, core: [f32; 3], blob: &[usize], taken: &[bool], rise: f32) -> Vec<(usize, f32)> {
    let (w, h) = (base.width, base.height);
    let mut seen: std::collections::HashSet<usize> = blob.iter().copied().collect();
    let mut out: Vec<(usize, f32)> = Vec::with_capacity(blob.len());
    let mut stack: Vec<usize> = blob.to_vec();
    while let Some(i) = stack.pop() {
        let (x, y) = (i % w, i / w);
        let (a, off) = unmix(base.px(i), plane.at(x, y), core);
        out.push((i, a));
        for (dx, dy) in [(-1i64, 0i64), (1, 0), (0, -1), (0, 1)] {
            let (nx, ny) = (x as i64 + dx, y as i64 + dy);
            if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                continue;
            }
            let j = ny as usize * w + nx as usize;
            if taken[j] || seen.contains(&j) {
                continue;
            }
            let p = base.px(j);
            let below = plane.at(nx as usize, ny as usize);
            let (aj, offj) = unmix(p, below, core);
            // Fading out: still on the mix, off the plane, and no more opaque than here.
            if distance(p, below) >= SOFT_EDGE && offj <= EXPLAINED && aj > 0.0 && aj <= a + rise && off <= EXPLAINED {
                seen.insert(j);
                stack.push(j);
            }
        }
    }
    out.retain(|&(_, a)| a > 0.0);
    out.sort_unstable_by_key(|&(i, _)| i);
    out
}

fn alpha_at(alpha: &[(usize, f32)], i: usize) -> f32 {
    alpha.binary_search_by_key(&i, |&(j, _)| j).map_or(0.0, |k| alpha[k].1)
}

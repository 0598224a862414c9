//! Rectangles partly hidden by other shapes over them are completed under them: a designer
//! drew the whole panel and put the others on top.

use super::*;

/// For each shape of `shapes` (label, model, pixels), the part of it that other shapes hide
/// when it is a rectangle partly under them (see [`hidden_part`]), and for every pixel the
/// first shape completed there (`u32::MAX` for none). `owner` is each pixel's shape.
pub(super) fn completions(shapes: &[(u32, Plane, Vec<usize>)], owner: &[u32], labels: &[u32], bg_label: u32, blocked: &[bool], w: usize) -> (Vec<Vec<usize>>, Vec<u32>) {
    let boxes: Vec<_> = shapes.iter().map(|(_, _, pixels)| bounds(pixels, w)).collect();
    let hidden: Vec<Vec<usize>> = (0..shapes.len()).map(|k| hidden_part(k, &boxes, &shapes[k].2, owner, labels, bg_label, blocked, w)).collect();
    let mut completed = vec![u32::MAX; owner.len()];
    for (k, part) in hidden.iter().enumerate() {
        for &i in part {
            if completed[i] == u32::MAX {
                completed[i] = k as u32;
            }
        }
    }
    (hidden, completed)
}

/// A completed shape goes just below the lowest (largest) of the shapes over it. `shapes`
/// are the shapes' elements, in the order of `hidden`.
pub(super) fn place_completed(shapes: &mut [Element], hidden: &[Vec<usize>], owner: &[u32]) {
    for (k, part) in hidden.iter().enumerate() {
        let lowest = part
            .iter()
            .filter_map(|&i| (owner[i] != u32::MAX).then_some(owner[i] as usize))
            .max_by(|&a, &b| shapes[a].coverage.total_cmp(&shapes[b].coverage).then(b.cmp(&a)));
        if let Some(o) = lowest {
            let sort_as = shapes[o].coverage;
            let e = &mut shapes[k];
            (e.sort_as, e.under) = (sort_as, true);
        }
    }
}

/// Shares of a shape's box (see [`hidden_part`]).
const HIDDEN_MIN: f64 = 0.02;
const SEEN_MIN: f64 = 0.3;
const OPEN_MAX: f64 = 0.005;
/// The most of a hidden shape's seen pixels that may lie inside the box of a shape over it.
const SEEN_INSIDE_MAX: f64 = 0.1;

/// The part of shape `k` that other shapes hide, when it is a rectangle partly under them:
/// every pixel of its box is its own, another shape's, or an edge between them (at most
/// [`OPEN_MAX`] of the box is anything else: background, text, a picture), at least
/// [`SEEN_MIN`] of the box is seen and at least [`HIDDEN_MIN`] hidden, and every shape hiding
/// it reaches out of its box (one wholly inside is a picture in a frame, not over it) and
/// has little of the shape's seen part inside its own box (see below). A
/// circle's or a triangle's box has background in its corners, so only rectangles are
/// completed. Empty otherwise. `boxes` are the shapes' boxes, `pixels` shape `k`'s region.
#[allow(clippy::too_many_arguments)]
fn hidden_part(k: usize, boxes: &[(usize, usize, usize, usize)], pixels: &[usize], owner: &[u32], labels: &[u32], bg_label: u32, blocked: &[bool], w: usize) -> Vec<usize> {
    let (x0, y0, bw, bh) = boxes[k];
    let area = (bw * bh) as f64;
    if (pixels.len() as f64) < SEEN_MIN * area {
        return Vec::new();
    }
    let (mut hidden, mut open, mut seams) = (Vec::new(), 0usize, 0usize);
    for y in y0..y0 + bh {
        for x in x0..x0 + bw {
            let i = y * w + x;
            match owner[i] {
                o if o == k as u32 => {}
                u32::MAX if labels[i] == bg_label || blocked[i] => open += 1,
                u32::MAX => {
                    seams += 1;
                    hidden.push(i);
                }
                o => {
                    let (ox, oy, ow, oh) = boxes[o as usize];
                    if ox >= x0 && oy >= y0 && ox + ow <= x0 + bw && oy + oh <= y0 + bh {
                        return Vec::new();
                    }
                    hidden.push(i);
                }
            }
        }
    }
    if (open as f64) > OPEN_MAX * area || ((hidden.len() - seams) as f64) < HIDDEN_MIN * area {
        return Vec::new();
    }
    // A shape under another is seen only outside it: one seen inside the other's box (a
    // word on a panel, showing the panel between its strokes) lies over it instead.
    let mut over: Vec<u32> = hidden.iter().map(|&i| owner[i]).filter(|&o| o != u32::MAX).collect();
    over.sort_unstable();
    over.dedup();
    for o in over {
        let (ox, oy, ow, oh) = boxes[o as usize];
        let inside = pixels.iter().filter(|&&i| (ox..ox + ow).contains(&(i % w)) && (oy..oy + oh).contains(&(i / w))).count();
        if inside as f64 > SEEN_INSIDE_MAX * pixels.len() as f64 {
            return Vec::new();
        }
    }
    hidden
}

/// The most pixels of a word a row or column may cross for a shape to run on beneath it.
const UNDER_TEXT_RUN: usize = 64;

/// Pixels under text (`covered`, no shape's own) that a shape runs on beneath: the word lies
/// across the shape (a frame's side, a bar), and the pixel's row or column of covered pixels
/// ends on both sides in that shape (past at most [`EDGE_REACH`] pixels of an edge that is no
/// shape's). Returns `(pixel, shape)`.
pub(super) fn under_text(covered: &[bool], owner: &[u32], w: usize, h: usize) -> Vec<(usize, u32)> {
    // The shape a walk from `i` along `(dx, dy)` meets past the covered pixels, if any.
    let end = |i: usize, dx: i64, dy: i64| walk_to_shape(i, (dx, dy), (w, h), owner, UNDER_TEXT_RUN, |j| covered[j] && owner[j] == u32::MAX, |_| true, &mut Vec::new());
    let mut out = Vec::new();
    for i in (0..w * h).filter(|&i| covered[i] && owner[i] == u32::MAX) {
        for (dx, dy) in [(1, 0), (0, 1)] {
            if let Some(k) = end(i, -dx, -dy).filter(|&k| end(i, dx, dy) == Some(k)) {
                out.push((i, k));
                break;
            }
        }
    }
    out
}

/// An edge pixel at the end of such a run is a mix of the upper shape's colour over the lower
/// one's at most this far off (as [`shape_edges`] asks of an edge).
const SEAM_OFF: f32 = 0.08;

/// The widest run of a shape over another that the other is completed across.
const UNDER_SHAPE_RUN: usize = 64;

/// Where a shape lies across another, the other runs on beneath it: a pixel of shape `c`
/// whose row or column of `c`'s pixels (at most [`UNDER_SHAPE_RUN`], past at most
/// [`EDGE_REACH`] pixels of edge at each end) ends on both sides in one shape `s`, when `c`
/// lies over `s`: its outline says so (`over`, pairs `(over, under)`), or nothing says `s`
/// is over `c` and either `c` is the smaller (a shape seen on both sides of a smaller one,
/// a letter, an icon, lies under it: shapes are drawn whole and put one on another) or `s`
/// was joined from pieces (`joined`) that `c` cut apart and is not all inside `c`'s box. The run
/// and the edge pixels at its ends are added to `s`'s `hidden` part (`completed` there, so
/// that `c`'s edge is unmixed against `s`), and the pair `(c, s)` to `over`.
#[allow(clippy::too_many_arguments)]
pub(super) fn under_shapes(base: &Image<'_>, shapes: &[(u32, Plane, Vec<usize>)], owner: &[u32], blocked: &[bool], joined: &[bool], over: &mut Vec<(usize, usize)>, hidden: &mut [Vec<usize>], completed: &mut [u32]) {
    let (w, h) = (base.width, base.height);
    let boxes: Vec<_> = shapes.iter().map(|(_, _, pixels)| bounds(pixels, w)).collect();
    // An edge pixel at a run's end is the upper shape's edge over the lower one.
    let seam = |j: usize, c: u32, s: u32| {
        let (x, y) = (j % w, j / w);
        unmix(base.px(j), shapes[s as usize].1.at(x, y), shapes[c as usize].1.at(x, y)).1 < SEAM_OFF
    };
    // A shape whose pieces lie all inside another's box (words on a panel, found as shapes)
    // lies on it: what is between them is the panel, seen.
    let inside = |s: usize, c: usize| {
        let ((sx, sy, sw, sh), (cx, cy, cw, ch)) = (boxes[s], boxes[c]);
        sx >= cx && sy >= cy && sx + sw <= cx + cw && sy + sh <= cy + ch
    };
    let smaller = |c: usize, s: usize| shapes[c].2.len() < shapes[s].2.len();
    let lies_over = |c: usize, s: usize, over: &[(usize, usize)]| over.contains(&(c, s)) || ((joined[s] && !inside(s, c)) || smaller(c, s)) && !over.contains(&(s, c));
    // From pixel `i` of shape `c` along `(dx, dy)`: the shape met past `c`'s run and the edge,
    // and the pixels crossed on the way (the run's and the edge's).
    let walk = |i: usize, dx: i64, dy: i64, path: &mut Vec<usize>| walk_to_shape(i, (dx, dy), (w, h), owner, UNDER_SHAPE_RUN, |j| owner[j] == owner[i], |j| !blocked[j], path);
    let (mut left, mut right) = (Vec::new(), Vec::new());
    for i in 0..w * h {
        let c = owner[i];
        if c == u32::MAX {
            continue;
        }
        for (dx, dy) in [(1, 0), (0, 1)] {
            left.clear();
            right.clear();
            let Some(s) = walk(i, -dx, -dy, &mut left) else { continue };
            if walk(i, dx, dy, &mut right) != Some(s) || !lies_over(c as usize, s as usize, over) {
                continue;
            }
            if left.iter().chain(&right).any(|&j| owner[j] == u32::MAX && !seam(j, c, s)) {
                continue;
            }
            for &j in std::iter::once(&i).chain(&left).chain(&right) {
                if completed[j] == u32::MAX {
                    completed[j] = s;
                    hidden[s as usize].push(j);
                }
            }
            // At once, so that the other way round is never taken as well.
            if !over.contains(&(c as usize, s as usize)) {
                over.push((c as usize, s as usize));
            }
            break;
        }
    }
}

/// Walks from pixel `i` along `step` over at most `most` pixels that `run` takes, then over at
/// most [`EDGE_REACH`] unowned pixels that `open` takes, to the first pixel of a shape
/// (`owner`), which it returns; `None` past those, or at the canvas's edge. The pixels crossed
/// go to `path`.
#[allow(clippy::too_many_arguments)]
fn walk_to_shape(i: usize, step: (i64, i64), (w, h): (usize, usize), owner: &[u32], most: usize, run: impl Fn(usize) -> bool, open: impl Fn(usize) -> bool, path: &mut Vec<usize>) -> Option<u32> {
    let (mut x, mut y) = ((i % w) as i64, (i / w) as i64);
    let (mut ran, mut opened) = (0usize, 0usize);
    loop {
        (x, y) = (x + step.0, y + step.1);
        if x < 0 || y < 0 || x >= w as i64 || y >= h as i64 {
            return None;
        }
        let j = y as usize * w + x as usize;
        if opened == 0 && run(j) {
            ran += 1;
            if ran > most {
                return None;
            }
        } else if owner[j] != u32::MAX {
            return Some(owner[j]);
        } else if open(j) {
            opened += 1;
            if opened > EDGE_REACH {
                return None;
            }
        } else {
            return None;
        }
        path.push(j);
    }
}

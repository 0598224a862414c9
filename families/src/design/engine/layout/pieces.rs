//! Pieces of one shape that another shape over it cuts apart (a frame crossed by a line, a
//! ring under a bar): shapes of one colour that meet across other shapes, within
//! [`PIECE_GAP`] pixels, are one shape.

use super::*;

/// The widest shape over another that still leaves its pieces one shape.
const PIECE_GAP: usize = 16;
/// Two pieces are one colour where they meet when their colours there are this close.
const PIECE_COLOUR: f32 = 6.0 / 255.0;

/// Joins the pieces among `shapes` (label, colour, pixels), in place: the pieces' pixels go to
/// the first (largest) of them, under its label, with a colour fitted to all of them; `owner`
/// and `labels` follow. Returns whether each shape (in the new order) was joined from pieces. A cut is crossed over other shapes' pixels and `edge` pixels (busy
/// ones, strips along edges) only, never the background (`bg_label`) or a soft region.
#[allow(clippy::too_many_arguments)]
pub(super) fn join_pieces(base: &Image<'_>, shapes: &mut Vec<(u32, Plane, Vec<usize>)>, owner: &mut [u32], labels: &mut [u32], bg_label: u32, edge: &[bool]) -> Vec<bool> {
    let (w, h) = (base.width, base.height);
    let count = shapes.len();
    if count < 2 {
        return vec![false; count];
    }
    let mut parent: Vec<usize> = (0..count).collect();
    fn root(parent: &mut [usize], mut k: usize) -> usize {
        while parent[k] != k {
            parent[k] = parent[parent[k]];
            k = parent[k];
        }
        k
    }
    // From each shape, step over other shapes' pixels and the unowned edges between them (not
    // the background) up to the gap; a shape of the same colour reached there is a piece.
    // One byte a pixel (the gap is under 255 steps) and the pixels touched, to clear.
    let mut depth = vec![u8::MAX; w * h];
    let mut touched: Vec<u32> = Vec::new();
    for k in 0..count {
        let mut frontier: Vec<u32> = shapes[k].2.iter().map(|&i| i as u32).collect();
        for &i in &frontier {
            depth[i as usize] = 0;
            touched.push(i);
        }
        for step in 1..=PIECE_GAP {
            let mut next = Vec::new();
            for &i in &frontier {
                let i = i as usize;
                let (x, y) = (i % w, i / w);
                let around = [(x > 0).then(|| i - 1), (x + 1 < w).then(|| i + 1), (y > 0).then(|| i - w), (y + 1 < h).then(|| i + w)];
                for j in around.into_iter().flatten() {
                    if depth[j] != u8::MAX {
                        continue;
                    }
                    depth[j] = step as u8;
                    touched.push(j as u32);
                    let o = owner[j];
                    if o != u32::MAX && o as usize != k {
                        let same = distance(shapes[k].1.at(j % w, j / w), shapes[o as usize].1.at(j % w, j / w)) <= PIECE_COLOUR;
                        if same && step > 1 {
                            let (a, b) = (root(&mut parent, k), root(&mut parent, o as usize));
                            parent[a.max(b)] = a.min(b);
                            continue;
                        }
                    }
                    if o as usize != k && labels[j] != bg_label && (o != u32::MAX || edge[j]) {
                        next.push(j as u32);
                    }
                }
            }
            frontier = next;
        }
        for i in touched.drain(..) {
            depth[i as usize] = u8::MAX;
        }
    }
    if (0..count).all(|k| parent[k] == k) {
        return vec![false; count];
    }
    // Each piece into its root: pixels, label; then the colour fitted again to them all.
    let mut merged: Vec<Option<(u32, Plane, Vec<usize>)>> = shapes.drain(..).map(Some).collect();
    for k in 0..count {
        let r = root(&mut parent, k);
        if r != k {
            if let Some((_, _, pixels)) = merged[k].take() {
                let label = merged[r].as_ref().map_or(0, |s| s.0);
                for &i in &pixels {
                    labels[i] = label;
                }
                if let Some(s) = merged[r].as_mut() {
                    s.2.extend(pixels);
                }
            }
        }
    }
    let mut joined = Vec::with_capacity(count);
    for (k, s) in merged.iter_mut().enumerate() {
        let Some(s) = s.as_mut() else { continue };
        let root_of_others = (0..count).any(|j| j != k && root(&mut parent, j) == k);
        if root_of_others {
            s.1 = fit_plane(base, s.2.iter().copied());
        }
        joined.push(root_of_others);
    }
    shapes.extend(merged.into_iter().flatten());
    owner.fill(u32::MAX);
    for (k, (_, _, pixels)) in shapes.iter().enumerate() {
        for &i in pixels {
            owner[i] = k as u32;
        }
    }
    joined
}

//! Which shape lies over which, read from their outlines. Drawn shapes are mostly convex: the
//! one on top is seen whole, so its outline runs on unbroken, and the one under it is seen
//! with a notch where the top one covers it. The notch lies inside the lower shape's convex
//! hull and is filled by the upper shape's pixels; the upper shape's hull holds none of the
//! lower one's. Where two shapes meet, the one with more of its pixels inside the other's
//! hull is over it. A straight edge shared by two shapes tells nothing, and the layers keep
//! their order by size there.

use super::*;

/// Shapes this close (in pixels, past the anti-aliased edge between them) meet.
const MEET: i64 = 3;
/// The fewest pixels of a shape inside another's hull that put it over the other ...
const OVER_MIN: usize = 16;
/// ... and how many times more of them there must be than of the other's inside its hull.
const OVER_RATIO: usize = 3;
/// A shape over another, seen whole, has next to none of the other's pixels in its hull: at
/// most this share of them. A letter, a frame or a ring holds the other in its hull for its
/// own outline's sake, and tells nothing this way.
const UNDER_INSIDE_MAX: f64 = 0.02;
/// The shape under, with the upper one's pixels inside its hull, fills at least this share
/// of that hull: it was convex, and the upper one fills its notch. A frame's or a ring's hull
/// is mostly its hole.
const NOTCH_FILLED: f64 = 0.9;

/// Pairs `(over, under)` of indices into `shapes` (label, colour, pixels) for shapes that
/// meet and whose outlines say which is on top; `owner` is each pixel's shape.
pub(super) fn stacking(shapes: &[(u32, Plane, Vec<usize>)], owner: &[u32], w: usize, h: usize) -> Vec<(usize, usize)> {
    let mut meeting = std::collections::BTreeSet::new();
    for (i, &a) in owner.iter().enumerate() {
        if a == u32::MAX {
            continue;
        }
        let (x, y) = ((i % w) as i64, (i / w) as i64);
        for dy in 0..=MEET {
            for dx in -MEET..=MEET {
                if dy == 0 && dx <= 0 {
                    continue;
                }
                let (xx, yy) = (x + dx, y + dy);
                if xx < 0 || xx >= w as i64 || yy >= h as i64 {
                    continue;
                }
                let b = owner[yy as usize * w + xx as usize];
                if b != u32::MAX && b != a {
                    meeting.insert((a.min(b) as usize, a.max(b) as usize));
                }
            }
        }
    }
    if meeting.is_empty() {
        return Vec::new();
    }
    let hulls: Vec<Option<Hull>> = (0..shapes.len())
        .map(|k| meeting.iter().any(|&(a, b)| a == k || b == k).then(|| Hull::of(&shapes[k].2, w)))
        .collect();
    let inside = |k: usize, of: usize| hulls[of].as_ref().map_or(0, |hull| shapes[k].2.iter().filter(|&&i| hull.holds(i % w, i / w)).count());
    // `top` over `under`, with `filling` of its pixels inside the hull of `under` and
    // `crossing` of those of `under` inside its own.
    let over = |top: usize, under: usize, filling: usize, crossing: usize| {
        let whole = hulls[under].as_ref().map_or(0.0, Hull::area);
        filling >= OVER_MIN
            && filling > OVER_RATIO * crossing
            && crossing as f64 <= UNDER_INSIDE_MAX * shapes[under].2.len() as f64
            && (shapes[under].2.len() + filling) as f64 >= NOTCH_FILLED * whole
            && top != under
    };
    let mut out = Vec::new();
    for (a, b) in meeting {
        let (in_b, in_a) = (inside(a, b), inside(b, a));
        if over(a, b, in_b, in_a) {
            out.push((a, b));
        } else if over(b, a, in_a, in_b) {
            out.push((b, a));
        }
    }
    out
}

/// A pixel set's convex hull, as the span of columns it holds on each row.
pub(super) struct Hull {
    y0: usize,
    spans: Vec<(f64, f64)>,
}

impl Hull {
    pub(super) fn of(pixels: &[usize], w: usize) -> Hull {
        // Each row's ends are the only candidates for the hull's corners.
        let (mut y0, mut y1) = (usize::MAX, 0);
        for &i in pixels {
            (y0, y1) = (y0.min(i / w), y1.max(i / w));
        }
        let mut ends = vec![(usize::MAX, 0usize); y1 + 1 - y0];
        for &i in pixels {
            let (x, e) = (i % w, &mut ends[i / w - y0]);
            *e = (e.0.min(x), e.1.max(x));
        }
        let mut points: Vec<(i64, i64)> = Vec::with_capacity(2 * ends.len());
        for (r, &(l, rt)) in ends.iter().enumerate() {
            if l != usize::MAX {
                points.push((l as i64, (y0 + r) as i64));
                if rt != l {
                    points.push((rt as i64, (y0 + r) as i64));
                }
            }
        }
        let corners = convex_hull(points);
        // Each row's span: where the hull's edges cross it.
        let mut spans = vec![(f64::INFINITY, f64::NEG_INFINITY); ends.len()];
        let m = corners.len();
        for k in 0..m {
            let (p, q) = (corners[k], corners[(k + 1) % m]);
            let (lo, hi) = (p.1.min(q.1), p.1.max(q.1));
            for y in lo..=hi {
                let x = if p.1 == q.1 { p.0.min(q.0) as f64 } else { p.0 as f64 + (q.0 - p.0) as f64 * (y - p.1) as f64 / (q.1 - p.1) as f64 };
                let x_hi = if p.1 == q.1 { p.0.max(q.0) as f64 } else { x };
                let s = &mut spans[y as usize - y0];
                *s = (s.0.min(x), s.1.max(x_hi));
            }
        }
        Hull { y0, spans }
    }

    /// How many pixels it holds.
    fn area(&self) -> f64 {
        self.spans.iter().map(|&(l, r)| (r.floor() - l.ceil() + 1.0).max(0.0)).sum()
    }

    pub(super) fn holds(&self, x: usize, y: usize) -> bool {
        y >= self.y0 && self.spans.get(y - self.y0).is_some_and(|&(l, r)| x as f64 >= l - 1e-9 && x as f64 <= r + 1e-9)
    }
}

/// The convex hull of `points` (Andrew's monotone chain), counter-clockwise, without
/// collinear points; a single point or a segment when the points are.
fn convex_hull(mut points: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    points.sort_unstable();
    points.dedup();
    if points.len() < 3 {
        return points;
    }
    let cross = |o: (i64, i64), a: (i64, i64), b: (i64, i64)| (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0);
    let mut hull: Vec<(i64, i64)> = Vec::with_capacity(points.len() + 1);
    for pass in 0..2 {
        let start = hull.len();
        let ordered: Box<dyn Iterator<Item = &(i64, i64)>> = if pass == 0 { Box::new(points.iter()) } else { Box::new(points.iter().rev()) };
        for &p in ordered {
            while hull.len() >= start + 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0 {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// Reorders `elements` (sorted bottom first) so that each shape lies over those `over` says
/// it covers (pairs of ids, `(over, under)`), moving as little as it can: in their order,
/// each element goes in after the shapes it covers that are not in yet (and theirs before
/// them). Where the pairs contradict one another (a cycle), the first pair met holds.
pub(super) fn restack(elements: Vec<Element>, over: &[(usize, usize)]) -> Vec<Element> {
    if over.is_empty() {
        return elements;
    }
    let n = elements.len();
    let position: std::collections::HashMap<usize, usize> = elements.iter().enumerate().map(|(k, e)| (e.id, k)).collect();
    let mut unders: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in over {
        if let (Some(&pa), Some(&pb)) = (position.get(&a), position.get(&b)) {
            if pa != pb && !unders[pa].contains(&pb) {
                unders[pa].push(pb);
            }
        }
    }
    for list in &mut unders {
        list.sort_unstable();
    }
    // Depth first, without recursion: (element, how many of its unders are done).
    let mut state = vec![0u8; n]; // 0 not yet, 1 on the way, 2 placed
    let mut order = Vec::with_capacity(n);
    for start in 0..n {
        if state[start] != 0 {
            continue;
        }
        state[start] = 1;
        let mut stack = vec![(start, 0usize)];
        while let Some(&mut (k, ref mut next)) = stack.last_mut() {
            if let Some(&u) = unders[k].get(*next) {
                *next += 1;
                if state[u] == 0 {
                    state[u] = 1;
                    stack.push((u, 0));
                }
            } else {
                stack.pop();
                state[k] = 2;
                order.push(k);
            }
        }
    }
    let mut slots: Vec<Option<Element>> = elements.into_iter().map(Some).collect();
    order.into_iter().filter_map(|k| slots[k].take()).collect()
}

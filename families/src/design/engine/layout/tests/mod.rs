//! The layout's behaviour on graphics drawn here, one role or rule a test.

use super::*;

mod background;
mod overlaps;
mod shapes;
mod soft;
mod text;

/// An element's alpha at canvas pixel `(x, y)`: 0 outside its box.
fn alpha_of(e: &Element, x: usize, y: usize) -> f32 {
    let inside = x >= e.x0 && x < e.x0 + e.width && y >= e.y0 && y < e.y0 + e.height;
    if inside {
        e.rgba[3 * e.width * e.height + (y - e.y0) * e.width + x - e.x0]
    } else {
        0.0
    }
}

/// A canvas of `w` x `h` whose pixel `(x, y)` is `colour(x, y)`, quantised to 8 bits as a
/// file would be (planar RGB).
fn drawn(w: usize, h: usize, colour: impl Fn(usize, usize) -> [f32; 3]) -> Vec<f32> {
    let n = w * h;
    let mut rgb = vec![0f32; 3 * n];
    for y in 0..h {
        for x in 0..w {
            for (c, v) in colour(x, y).into_iter().enumerate() {
                rgb[c * n + y * w + x] = (v * 255.0).round() / 255.0;
            }
        }
    }
    rgb
}

/// How much of pixel `(x, y)` a disc covers (4 x 4 samples, as the layered set draws).
fn disc_coverage(x: usize, y: usize, (cx, cy): (f32, f32), r: f32) -> f32 {
    let inside = (0..16).filter(|s| {
        let (sx, sy) = (x as f32 + (s % 4) as f32 / 4.0 + 0.125, y as f32 + (s / 4) as f32 / 4.0 + 0.125);
        (sx - cx).hypot(sy - cy) <= r
    });
    inside.count() as f32 / 16.0
}

/// `top` at alpha `a` over `below`.
fn over(top: [f32; 3], a: f32, below: [f32; 3]) -> [f32; 3] {
    [0, 1, 2].map(|c| a * top[c] + (1.0 - a) * below[c])
}

/// An element's colour at canvas pixel `(x, y)`, inside its box.
fn colour_at(e: &Element, x: usize, y: usize) -> [f32; 3] {
    let (m, j) = (e.width * e.height, (y - e.y0) * e.width + x - e.x0);
    [e.rgba[j], e.rgba[m + j], e.rgba[2 * m + j]]
}

/// The layers composited over the background at canvas pixel `(x, y)` (`n` pixels, `w` wide).
fn composite_at(layout: &Layout, n: usize, w: usize, x: usize, y: usize) -> [f32; 3] {
    let i = y * w + x;
    let mut px = [layout.background[i], layout.background[n + i], layout.background[2 * n + i]];
    for e in &layout.elements {
        let a = alpha_of(e, x, y);
        if a > 0.0 {
            let top = colour_at(e, x, y);
            for c in 0..3 {
                px[c] = top[c] * a + px[c] * (1.0 - a);
            }
        }
    }
    px
}

/// The layers composited over the background give the input `rgb` back (within two 8-bit
/// steps) at each of `points`.
fn assert_recomposites(layout: &Layout, rgb: &[f32], w: usize, points: &[(usize, usize)]) {
    let n = rgb.len() / 3;
    for &(x, y) in points {
        let (i, px) = (y * w + x, composite_at(layout, n, w, x, y));
        assert!((0..3).all(|c| (px[c] - rgb[c * n + i]).abs() < 2.0 / 255.0), "recomposite at {x},{y}: {px:?}");
    }
}

/// The peak signal-to-noise ratio of the layers composited over the background against the
/// input `rgb`, in dB.
fn psnr(layout: &Layout, rgb: &[f32], w: usize) -> f64 {
    let n = rgb.len() / 3;
    let mut squared = 0f64;
    for i in 0..n {
        let px = composite_at(layout, n, w, i % w, i / w);
        squared += (0..3).map(|c| f64::from(px[c] - rgb[c * n + i]).powi(2)).sum::<f64>();
    }
    10.0 * (3.0 * n as f64 / squared.max(1e-12)).log10()
}

/// The soft IoU of an element's alpha against the true alpha over a `w` x `h` canvas: the
/// sum of the smaller over the sum of the larger, as the evaluation scores layers.
fn soft_iou(e: &Element, w: usize, h: usize, truth: impl Fn(usize, usize) -> f32) -> f64 {
    let (mut inter, mut union) = (0f64, 0f64);
    for y in 0..h {
        for x in 0..w {
            let (got, want) = (alpha_of(e, x, y), truth(x, y));
            inter += f64::from(got.min(want));
            union += f64::from(got.max(want));
        }
    }
    inter / union
}

/// A graphic drawn here: a horizontal gradient background, a flat red rectangle, and a
/// dark anti-aliased bar standing in for a word inside a box the detector would give.
fn graphic(w: usize, h: usize) -> Vec<f32> {
    graphic_with(w, h, [0.1, 0.1, 0.1])
}

/// [`graphic`] with its second glyph in colour `second`.
fn graphic_with(w: usize, h: usize, second: [f32; 3]) -> Vec<f32> {
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
                let t = if x >= 72 { second } else { [0.1, 0.1, 0.1] };
                p = [0, 1, 2].map(|c| a * t[c] + (1.0 - a) * p[c]);
            }
            for c in 0..3 {
                rgb[c * n + i] = p[c];
            }
        }
    }
    rgb
}

/// The layout's two shape layers, bottom first; fails, listing what it found, unless there
/// are exactly two.
fn two_shapes(layout: &Layout) -> (&Element, &Element) {
    let shapes: Vec<&Element> = layout.elements.iter().filter(|e| e.kind == Kind::Shape).collect();
    let found: Vec<_> = layout.elements.iter().map(|e| (e.kind, e.x0, e.y0, e.width, e.height, e.coverage)).collect();
    assert_eq!(shapes.len(), 2, "{found:?}");
    (shapes[0], shapes[1])
}

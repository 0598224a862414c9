//! Rasterising the layers: shapes with supersampled (anti-aliased) edges, feathered objects,
//! box-blurred shadows, colour fills, 8-bit quantisation, and the exact 8-bit composite.
//!
//! Floating point is limited to `+ - * /`, `sqrt` and `floor`, which IEEE 754 defines exactly
//! (correctly rounded), so every machine computes the same bits; no `sin`, `exp` or `powf`,
//! whose results differ between math libraries. Blurs and quantisation are integer arithmetic.

use image::{RgbImage, RgbaImage};

pub type Rgb = [u8; 3];

/// A mask value at full strength: 16 supersamples x 255 alpha steps. A hard shape's value is
/// its opacity (0..=255) times the supersamples inside it (0..=16), exact; a pixel's 8-bit
/// alpha is the value rounded to a multiple of 16, `(v + 8) / 16`.
pub const FULL: u32 = 16 * 255;

/// Supersamples per pixel side: 4 x 4 = 16 coverage samples per pixel.
const SUB: u32 = 4;

/// A canvas-sized alpha mask, values in `0..=FULL`.
#[derive(Clone)]
pub struct Mask {
    pub w: u32,
    pub h: u32,
    pub v: Vec<u32>,
}

impl Mask {
    pub fn new(w: u32, h: u32) -> Self {
        Mask { w, h, v: vec![0; (w * h) as usize] }
    }

    fn at(&self, x: i64, y: i64) -> u32 {
        if x < 0 || y < 0 || x >= i64::from(self.w) || y >= i64::from(self.h) {
            0
        } else {
            self.v[(y as u32 * self.w + x as u32) as usize]
        }
    }

    /// The mask moved by whole pixels (what falls off the canvas is lost).
    pub fn shifted(&self, dx: i64, dy: i64) -> Mask {
        let mut out = Mask::new(self.w, self.h);
        for y in 0..self.h {
            for x in 0..self.w {
                out.v[(y * self.w + x) as usize] = self.at(i64::from(x) - dx, i64::from(y) - dy);
            }
        }
        out
    }

    /// `passes` box blurs of radius `radius`, horizontal then vertical, zero outside the
    /// canvas. Three passes approximate a Gaussian closely (central limit) without `exp`;
    /// each average is rounded half up in integers, so the result is exact everywhere.
    pub fn blurred(&self, radius: u32, passes: u32) -> Mask {
        let mut m = self.clone();
        for _ in 0..passes {
            m = m.box_pass(radius, true).box_pass(radius, false);
        }
        m
    }

    fn box_pass(&self, radius: u32, horizontal: bool) -> Mask {
        let (len, lines) = if horizontal { (self.w, self.h) } else { (self.h, self.w) };
        let index = |line: u32, i: u32| if horizontal { line * self.w + i } else { i * self.w + line } as usize;
        let n = u64::from(2 * radius + 1);
        let mut out = Mask::new(self.w, self.h);
        for line in 0..lines {
            // Prefix sums along the line: window sums in O(1) each.
            let mut prefix = vec![0u64; len as usize + 1];
            for i in 0..len {
                prefix[i as usize + 1] = prefix[i as usize] + u64::from(self.v[index(line, i)]);
            }
            for i in 0..len {
                let lo = i.saturating_sub(radius) as usize;
                let hi = (i + radius + 1).min(len) as usize;
                let sum = prefix[hi] - prefix[lo];
                out.v[index(line, i)] = ((sum + n / 2) / n) as u32;
            }
        }
        out
    }

    /// Each value times `num / den`, rounded half up.
    pub fn scaled(&self, num: u32, den: u32) -> Mask {
        let v = self.v.iter().map(|&v| ((u64::from(v) * u64::from(num) + u64::from(den / 2)) / u64::from(den)) as u32);
        Mask { w: self.w, h: self.h, v: v.collect() }
    }
}

/// A hard-edged region: a pixel's coverage is the fraction of its 4 x 4 supersamples inside.
pub enum Shape {
    Rect { x0: f64, y0: f64, x1: f64, y1: f64 },
    /// A rectangle with corners rounded to radius `r`.
    RoundRect { x0: f64, y0: f64, x1: f64, y1: f64, r: f64 },
    Ellipse { cx: f64, cy: f64, rx: f64, ry: f64 },
    /// A polygon (even-odd rule), so concave outlines such as stars and arrows work.
    Polygon { points: Vec<(f64, f64)> },
    /// A line of font8x8 glyphs: each glyph bit a `scale` x `scale` square, with the top
    /// sheared right by `slant` per pixel of height above the baseline (an oblique face).
    Text { x0: f64, y0: f64, scale: f64, slant: f64, glyphs: Vec<[u8; 8]> },
    /// Every point of any of the parts: stripes, icons made of several pieces.
    Union(Vec<Shape>),
    /// The outer shape with the holes cut out: outlines (rings, frames) and icons with holes.
    Cut { outer: Box<Shape>, holes: Vec<Shape> },
}

impl Shape {
    /// The box `(x0, y0, x1, y1)` that holds the shape.
    pub fn bounds(&self) -> (f64, f64, f64, f64) {
        match self {
            Shape::Rect { x0, y0, x1, y1 } | Shape::RoundRect { x0, y0, x1, y1, .. } => (*x0, *y0, *x1, *y1),
            Shape::Ellipse { cx, cy, rx, ry } => (cx - rx, cy - ry, cx + rx, cy + ry),
            Shape::Polygon { points } => points.iter().fold(
                (f64::MAX, f64::MAX, f64::MIN, f64::MIN),
                |(a, b, c, d), &(x, y)| (a.min(x), b.min(y), c.max(x), d.max(y)),
            ),
            Shape::Text { x0, y0, scale, slant, glyphs } => {
                let height = 8.0 * scale;
                (*x0, *y0, x0 + glyphs.len() as f64 * height + slant * height, y0 + height)
            }
            Shape::Union(parts) => parts.iter().map(Shape::bounds).fold(
                (f64::MAX, f64::MAX, f64::MIN, f64::MIN),
                |(a, b, c, d), (x0, y0, x1, y1)| (a.min(x0), b.min(y0), c.max(x1), d.max(y1)),
            ),
            Shape::Cut { outer, .. } => outer.bounds(),
        }
    }

    fn contains(&self, x: f64, y: f64) -> bool {
        match self {
            Shape::Rect { x0, y0, x1, y1 } => x >= *x0 && x < *x1 && y >= *y0 && y < *y1,
            Shape::RoundRect { x0, y0, x1, y1, r } => {
                if x < *x0 || x >= *x1 || y < *y0 || y >= *y1 {
                    return false;
                }
                // Distance beyond the inner rectangle whose corners are the arcs' centres.
                let dx = (x0 + r - x).max(x - (x1 - r)).max(0.0);
                let dy = (y0 + r - y).max(y - (y1 - r)).max(0.0);
                dx * dx + dy * dy <= r * r
            }
            Shape::Ellipse { cx, cy, rx, ry } => {
                let (u, v) = ((x - cx) / rx, (y - cy) / ry);
                u * u + v * v <= 1.0
            }
            Shape::Polygon { points } => {
                let mut inside = false;
                let mut j = points.len() - 1;
                for i in 0..points.len() {
                    let ((xi, yi), (xj, yj)) = (points[i], points[j]);
                    if (yi > y) != (yj > y) && x < xj + (y - yj) * (xi - xj) / (yi - yj) {
                        inside = !inside;
                    }
                    j = i;
                }
                inside
            }
            Shape::Text { x0, y0, scale, slant, glyphs } => {
                let row = ((y - y0) / scale).floor();
                if !(0.0..8.0).contains(&row) {
                    return false;
                }
                let shear = slant * (y0 + 8.0 * scale - y);
                let col = ((x - x0 - shear) / scale).floor();
                if col < 0.0 || col >= glyphs.len() as f64 * 8.0 {
                    return false;
                }
                let (col, row) = (col as usize, row as usize);
                // font8x8 stores one byte per row, least significant bit leftmost.
                glyphs[col / 8][row] >> (col % 8) & 1 == 1
            }
            Shape::Union(parts) => parts.iter().any(|p| p.contains(x, y)),
            Shape::Cut { outer, holes } => outer.contains(x, y) && !holes.iter().any(|h| h.contains(x, y)),
        }
    }

    /// The shape's mask at `opacity` (0..=255): value `opacity x supersamples inside`.
    pub fn mask(&self, w: u32, h: u32, opacity: u32) -> Mask {
        let mut mask = Mask::new(w, h);
        let (bx0, by0, bx1, by1) = self.bounds();
        let clamp = |v: f64, hi: u32| v.floor().max(0.0).min(f64::from(hi)) as u32;
        let (px0, px1) = (clamp(bx0, w), clamp(bx1 + 1.0, w));
        let (py0, py1) = (clamp(by0, h), clamp(by1 + 1.0, h));
        let step = 1.0 / f64::from(SUB);
        for py in py0..py1 {
            for px in px0..px1 {
                let mut inside = 0;
                for sy in 0..SUB {
                    let y = f64::from(py) + (f64::from(sy) + 0.5) * step;
                    for sx in 0..SUB {
                        let x = f64::from(px) + (f64::from(sx) + 0.5) * step;
                        inside += u32::from(self.contains(x, y));
                    }
                }
                mask.v[(py * w + px) as usize] = opacity * inside;
            }
        }
        mask
    }
}

/// `smoothstep`: 0 below `e0`, 1 above `e1`, the cubic `3t^2 - 2t^3` between; a soft edge
/// with no kink, made of multiplications only.
fn smoothstep(e0: f64, e1: f64, x: f64) -> f64 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// A feathered ellipse: full `opacity` (0..=255) inside, fading to zero across a band of
/// `feather` pixels (measured along the shorter radius) centred on the outline.
pub fn soft_ellipse(w: u32, h: u32, (cx, cy): (f64, f64), (rx, ry): (f64, f64), feather: f64, opacity: u32) -> Mask {
    let mut mask = Mask::new(w, h);
    let r = rx.min(ry);
    // Normalised distance: 1 on the outline; the band is `feather / r` wide in those units.
    let band = feather / r;
    let peak = f64::from(opacity * 16);
    for py in 0..h {
        for px in 0..w {
            let (u, v) = ((f64::from(px) + 0.5 - cx) / rx, (f64::from(py) + 0.5 - cy) / ry);
            let d = (u * u + v * v).sqrt();
            let keep = 1.0 - smoothstep(1.0 - band / 2.0, 1.0 + band / 2.0, d);
            mask.v[(py * w + px) as usize] = (peak * keep + 0.5).floor() as u32;
        }
    }
    mask
}

/// What colours a layer's pixels: one colour, or a two-colour gradient.
pub enum Fill {
    Flat(Rgb),
    /// From `from` at `start` to `to` at `end`, constant across the direction between them.
    Linear { from: Rgb, to: Rgb, start: (f64, f64), end: (f64, f64) },
    /// From `inner` at `centre` to `outer` at `radius` and beyond.
    Radial { inner: Rgb, outer: Rgb, centre: (f64, f64), radius: f64 },
}

impl Fill {
    /// The colour at point `(x, y)` (pixel centres are at `+0.5`).
    pub fn at(&self, x: f64, y: f64) -> Rgb {
        match self {
            Fill::Flat(c) => *c,
            Fill::Linear { from, to, start, end } => {
                let (dx, dy) = (end.0 - start.0, end.1 - start.1);
                let t = ((x - start.0) * dx + (y - start.1) * dy) / (dx * dx + dy * dy);
                mix(*from, *to, t)
            }
            Fill::Radial { inner, outer, centre, radius } => {
                let (dx, dy) = (x - centre.0, y - centre.1);
                mix(*inner, *outer, (dx * dx + dy * dy).sqrt() / radius)
            }
        }
    }

    /// Whether the colour varies (for the sample table).
    pub fn is_gradient(&self) -> bool {
        !matches!(self, Fill::Flat(_))
    }
}

/// `a + (b - a) t`, `t` clamped to `[0, 1]`, rounded half up to 8 bits.
fn mix(a: Rgb, b: Rgb, t: f64) -> Rgb {
    let t = t.clamp(0.0, 1.0);
    let channel = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * t + 0.5).floor() as u8;
    [channel(a[0], b[0]), channel(a[1], b[1]), channel(a[2], b[2])]
}

/// The 8-bit straight-alpha layer of `mask` coloured by `fill`. Fully transparent pixels are
/// `(0, 0, 0, 0)`: their colour means nothing, and a constant compresses to nothing.
pub fn layer(mask: &Mask, fill: &Fill) -> RgbaImage {
    RgbaImage::from_fn(mask.w, mask.h, |x, y| {
        let alpha = (mask.v[(y * mask.w + x) as usize].min(FULL) + 8) / 16;
        if alpha == 0 {
            return image::Rgba([0, 0, 0, 0]);
        }
        let [r, g, b] = fill.at(f64::from(x) + 0.5, f64::from(y) + 0.5);
        image::Rgba([r, g, b, alpha as u8])
    })
}

/// An opaque layer covering the canvas (the bottom layer of a sample).
pub fn opaque(w: u32, h: u32, fill: &Fill) -> RgbaImage {
    RgbaImage::from_fn(w, h, |x, y| {
        let [r, g, b] = fill.at(f64::from(x) + 0.5, f64::from(y) + 0.5);
        image::Rgba([r, g, b, 255])
    })
}

/// The composite of 8-bit straight-alpha `layers`, bottom first, with "over", rounded to 8 bits
/// once at the end: `C_0 = c_0`, `C_k = a_k c_k + (1 - a_k) C_(k-1)` with `a_k = alpha_k / 255`.
/// The bottom layer is opaque, so every partial composite is opaque too and "over" needs no
/// alpha division. The sums are exact integers over `255^k` (at most `255^6`, far inside
/// `u64`); the final value is rounded half up. Returns `None` if the bottom layer is not opaque
/// or the sizes differ.
pub fn composite(layers: &[RgbaImage]) -> Option<RgbImage> {
    let bottom = layers.first()?;
    let (w, h) = bottom.dimensions();
    if bottom.pixels().any(|p| p[3] != 255) || layers.iter().any(|l| l.dimensions() != (w, h)) {
        return None;
    }
    let denominator = 255u64.pow(layers.len() as u32 - 1);
    Some(RgbImage::from_fn(w, h, |x, y| {
        let mut out = [0u8; 3];
        for (c, value) in out.iter_mut().enumerate() {
            // `acc / scale` is the composite so far; `scale = 255^k` after layer k.
            let mut acc = u64::from(bottom.get_pixel(x, y)[c]);
            let mut scale = 1u64;
            for layer in &layers[1..] {
                let p = layer.get_pixel(x, y);
                let a = u64::from(p[3]);
                acc = a * u64::from(p[c]) * scale + (255 - a) * acc;
                scale *= 255;
            }
            *value = ((2 * acc + denominator) / (2 * denominator)) as u8;
        }
        image::Rgb(out)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A half-covered pixel gets alpha 128 ((8 x 255 + 8) / 16), and a box blur keeps a
    /// uniform mask uniform away from the edges: the integer rounding has no drift.
    #[test]
    fn coverage_and_blur_are_exact() {
        let half = Shape::Rect { x0: 0.0, y0: 0.0, x1: 0.5, y1: 1.0 }.mask(2, 1, 255);
        assert_eq!(half.v, vec![8 * 255, 0]);
        assert_eq!(layer(&half, &Fill::Flat([1, 2, 3])).get_pixel(0, 0).0, [1, 2, 3, 128]);
        let mut flat = Mask::new(20, 20);
        flat.v.iter_mut().for_each(|v| *v = FULL);
        assert_eq!(flat.blurred(2, 3).v[10 * 20 + 10], FULL);
    }

    /// The composite matches "over" done by hand, rounded once at the end: white at alpha
    /// 128 over black is exactly 128, and a second one on top is 128 + 127/255 x 128 = 191.75,
    /// which rounds to 192.
    #[test]
    fn composite_rounds_once() {
        let black = RgbaImage::from_pixel(1, 1, image::Rgba([0, 0, 0, 255]));
        let half_white = RgbaImage::from_pixel(1, 1, image::Rgba([255, 255, 255, 128]));
        let one = composite(&[black.clone(), half_white.clone()]).unwrap();
        assert_eq!(one.get_pixel(0, 0).0, [128; 3]);
        let two = composite(&[black, half_white.clone(), half_white]).unwrap();
        assert_eq!(two.get_pixel(0, 0).0, [192; 3]);
    }
}

//! Drawing a sample's layers: the palette, words and outlines they draw from, and one method
//! per element (a shape, a word, a soft disc, a shadowed shape, a panel, a bar, stripes, an
//! outline, a line, an icon, a text block), each adding its layer and a note of what it is.

use std::path::Path;

use image::RgbaImage;

use crate::photo;
use crate::raster::{self, soft_ellipse, Fill, Rgb, Shape};
use crate::rng::Rng;
use crate::samples::{Backdrop, Dir};

/// Vivid and neutral colours for foreground layers.
const PALETTE: [Rgb; 18] = [
    [230, 57, 70],
    [241, 143, 1],
    [255, 209, 102],
    [6, 214, 160],
    [17, 138, 178],
    [7, 59, 76],
    [131, 56, 236],
    [255, 0, 110],
    [58, 134, 255],
    [251, 86, 7],
    [46, 196, 182],
    [255, 255, 255],
    [20, 20, 20],
    [141, 153, 174],
    [43, 45, 66],
    [128, 185, 24],
    [250, 163, 7],
    [255, 240, 243],
];

/// Shadow colours: near-black, some tinted.
const SHADOWS: [Rgb; 4] = [[0, 0, 0], [20, 16, 40], [35, 22, 10], [8, 30, 40]];

/// Words for text layers: at most 7 glyphs, so any fits a 256-pixel canvas at 3x (24 px each).
const WORDS: [&str; 24] = [
    "LAYER", "Lamina", "RGBA", "Hello", "SALE", "Open", "TOP", "alpha", "Draft", "NEW", "cafe", "Stack", "Over",
    "moon", "Cat", "GO!", "Note", "Hi", "99%", "Zoom", "ink", "Soft", "Edit me", "Layer 2",
];

/// Polygon outlines on a 100 x 100 grid, integers so no trigonometry is needed: the star's
/// and pentagon's points are a regular pentagram's, rounded once by hand.
const POLYGONS: [(&str, &[(i32, i32)]); 8] = [
    ("triangle", &[(50, 0), (100, 100), (0, 100)]),
    ("right triangle", &[(0, 0), (100, 100), (0, 100)]),
    ("diamond", &[(50, 0), (100, 50), (50, 100), (0, 50)]),
    ("pentagon", &[(50, 0), (98, 35), (79, 90), (21, 90), (2, 35)]),
    ("hexagon", &[(25, 0), (75, 0), (100, 50), (75, 100), (25, 100), (0, 50)]),
    ("star", &[(50, 0), (61, 35), (98, 35), (68, 56), (79, 90), (50, 69), (21, 90), (32, 56), (2, 35), (39, 35)]),
    ("arrow", &[(0, 35), (60, 35), (60, 10), (100, 50), (60, 90), (60, 65), (0, 65)]),
    ("L-shape", &[(0, 0), (40, 0), (40, 60), (100, 60), (100, 100), (0, 100)]),
];

fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// An 8-bit opacity in percent, rounded.
fn percent(opacity: u32) -> u32 {
    (opacity * 100 + 127) / 255
}

/// A layer's description, saying whether its colour is a gradient.
fn noted(what: &str, fill: &Fill) -> String {
    if fill.is_gradient() {
        format!("{what}, gradient")
    } else {
        what.to_owned()
    }
}

/// Builds one sample's layers, bottom first, and notes what each one is.
pub struct Builder {
    rng: Rng,
    w: u32,
    h: u32,
    pub layers: Vec<RgbaImage>,
    pub notes: Vec<String>,
    /// The background's colours (none for a photo): new layers stand apart from them.
    base: Vec<Rgb>,
    /// The colours picked so far: a new layer stands apart from the last two.
    picked: Vec<Rgb>,
    /// The box of a label that the next text goes on.
    label: Option<(f64, f64, f64, f64)>,
    /// Words already written: each text layer of a sample says something else.
    words: Vec<&'static str>,
    /// Text blocks placed so far, and how many the sample has: each takes the next band of
    /// the canvas.
    blocks: usize,
    pub bands: usize,
}

impl Builder {
    /// A builder for a `w` x `h` sample whose details come from `seed`.
    pub fn new(seed: &str, w: u32, h: u32) -> Builder {
        Builder {
            rng: Rng::from_name(seed),
            w,
            h,
            layers: Vec::new(),
            notes: Vec::new(),
            base: Vec::new(),
            picked: Vec::new(),
            label: None,
            words: Vec::new(),
            blocks: 0,
            bands: 0,
        }
    }

    fn w(&self) -> f64 {
        f64::from(self.w)
    }

    fn h(&self) -> f64 {
        f64::from(self.h)
    }

    /// The shorter side: sizes scale with it so elements fit any aspect.
    fn side(&self) -> f64 {
        self.w().min(self.h())
    }

    fn push(&mut self, layer: RgbaImage, note: String) {
        self.layers.push(layer);
        self.notes.push(note);
    }

    pub fn backdrop(&mut self, backdrop: &Backdrop, photos: &Path) -> Result<(), String> {
        let (w, h) = (self.w, self.h);
        match *backdrop {
            Backdrop::Photo { file, crop } => {
                let rgb = photo::background(&photos.join(file), crop, w, h)?;
                let [x, y, cw, ch] = crop;
                self.push(
                    RgbaImage::from_fn(w, h, |px, py| {
                        let [r, g, b] = rgb.get_pixel(px, py).0;
                        image::Rgba([r, g, b, 255])
                    }),
                    format!("photo {file} (crop {cw}x{ch} at {x},{y})"),
                );
            }
            Backdrop::Flat(c) => {
                self.base.push(c);
                self.push(raster::opaque(w, h, &Fill::Flat(c)), format!("flat {}", hex(c)));
            }
            Backdrop::Gradient { from, to, dir } => {
                self.base.extend([from, to]);
                let (fw, fh) = (self.w(), self.h());
                let (fill, how) = match dir {
                    Dir::Horizontal => (Fill::Linear { from, to, start: (0.0, 0.0), end: (fw, 0.0) }, "horizontal"),
                    Dir::Vertical => (Fill::Linear { from, to, start: (0.0, 0.0), end: (0.0, fh) }, "vertical"),
                    Dir::Diagonal => (Fill::Linear { from, to, start: (0.0, 0.0), end: (fw, fh) }, "diagonal"),
                    Dir::Radial => {
                        let radius = (fw * fw + fh * fh).sqrt() / 2.0;
                        (Fill::Radial { inner: from, outer: to, centre: (fw / 2.0, fh / 2.0), radius }, "radial")
                    }
                };
                self.push(raster::opaque(w, h, &fill), format!("{how} gradient {} to {}", hex(from), hex(to)));
            }
        }
        Ok(())
    }

    /// A palette colour far (in summed channel differences) from the background's and the
    /// last two layers' colours, so that each layer stands out from what it most likely covers.
    fn colour(&mut self) -> Rgb {
        let recent = &self.picked[self.picked.len().saturating_sub(2)..];
        let avoid: Vec<Rgb> = self.base.iter().chain(recent).copied().collect();
        let mut best = PALETTE[0];
        let mut best_distance = -1;
        for _ in 0..12 {
            let c = *self.rng.pick(&PALETTE);
            let distance = avoid
                .iter()
                .map(|a| (0..3).map(|i| (i32::from(a[i]) - i32::from(c[i])).abs()).sum::<i32>())
                .min()
                .unwrap_or(765);
            if distance > best_distance {
                (best, best_distance) = (c, distance);
            }
            if distance >= 200 {
                break;
            }
        }
        self.picked.push(best);
        best
    }

    /// A flat colour, or (one time in `odds`) a linear gradient across the box.
    fn fill(&mut self, (x0, y0, x1, y1): (f64, f64, f64, f64), odds: i64) -> Fill {
        let from = self.colour();
        if !self.rng.chance(1, odds) {
            return Fill::Flat(from);
        }
        let to = self.colour();
        let (start, end) = match self.rng.range(0, 2) {
            0 => ((x0, y0), (x1, y0)),
            1 => ((x0, y0), (x0, y1)),
            _ => ((x0, y0), (x1, y1)),
        };
        Fill::Linear { from, to, start, end }
    }

    /// A random hard shape of width and height between 18% and `max` of the shorter side,
    /// centred in the middle 70% of the canvas; its name and box.
    fn random_shape(&mut self, max: f64) -> (Shape, &'static str, (f64, f64, f64, f64)) {
        let side = self.side();
        let sw = side * self.rng.uniform(0.18, max);
        let mut sh = side * self.rng.uniform(0.18, max);
        let kind = self.rng.range(0, 3);
        if kind == 2 && self.rng.chance(1, 3) {
            sh = sw;
        }
        let cx = self.w() * self.rng.uniform(0.15, 0.85);
        let cy = self.h() * self.rng.uniform(0.15, 0.85);
        let (x0, y0, x1, y1) = (cx - sw / 2.0, cy - sh / 2.0, cx + sw / 2.0, cy + sh / 2.0);
        let bounds = (x0, y0, x1, y1);
        match kind {
            0 => (Shape::Rect { x0, y0, x1, y1 }, "rectangle", bounds),
            1 => {
                let r = sw.min(sh) * self.rng.uniform(0.1, 0.45);
                (Shape::RoundRect { x0, y0, x1, y1, r }, "rounded rectangle", bounds)
            }
            2 => {
                let name = if sw == sh { "disc" } else { "ellipse" };
                (Shape::Ellipse { cx, cy, rx: sw / 2.0, ry: sh / 2.0 }, name, bounds)
            }
            _ => {
                let (name, outline) = *self.rng.pick(&POLYGONS);
                let (flip_x, flip_y, turn) = (self.rng.chance(1, 2), self.rng.chance(1, 2), self.rng.chance(1, 2));
                let points = outline
                    .iter()
                    .map(|&(px, py)| {
                        let (px, py) = if turn { (py, px) } else { (px, py) };
                        let px = if flip_x { 100 - px } else { px };
                        let py = if flip_y { 100 - py } else { py };
                        (x0 + f64::from(px) * sw / 100.0, y0 + f64::from(py) * sh / 100.0)
                    })
                    .collect();
                (Shape::Polygon { points }, name, bounds)
            }
        }
    }

    pub fn shape(&mut self) {
        let (shape, name, bounds) = self.random_shape(0.5);
        let fill = self.fill(bounds, 3);
        let mask = shape.mask(self.w, self.h, 255);
        self.push(raster::layer(&mask, &fill), noted(name, &fill));
    }

    pub fn label(&mut self) {
        let (w, h) = (self.w() * self.rng.uniform(0.5, 0.8), self.h() * self.rng.uniform(0.15, 0.28));
        let x0 = self.rng.uniform(0.04 * self.w(), 0.96 * self.w() - w);
        let y0 = self.rng.uniform(0.04 * self.h(), 0.96 * self.h() - h);
        let r = w.min(h) * self.rng.uniform(0.1, 0.5);
        let shape = Shape::RoundRect { x0, y0, x1: x0 + w, y1: y0 + h, r };
        let fill = self.fill((x0, y0, x0 + w, y0 + h), 4);
        let mask = shape.mask(self.w, self.h, 255);
        self.label = Some((x0, y0, x0 + w, y0 + h));
        self.push(raster::layer(&mask, &fill), noted("label", &fill));
    }

    /// A word in font8x8 glyphs at 3x to 8x (in half steps), sometimes oblique: centred on
    /// the label if one waits for it, else anywhere it fits.
    pub fn text(&mut self) {
        let slant = *self.rng.pick(&[0.0, 0.0, 0.125, 0.25]);
        let label = self.label.take();
        let (bx0, by0, bx1, by1) =
            label.unwrap_or((0.04 * self.w(), 0.04 * self.h(), 0.96 * self.w(), 0.96 * self.h()));
        let (room_w, room_h) = ((bx1 - bx0) * 0.9, (by1 - by0) * 0.8);
        // A word of n glyphs at scale s is 8 s (n + slant) wide and 8 s high.
        let fits = |word: &str, scale: f64| {
            8.0 * scale * (word.len() as f64 + slant) <= room_w && 8.0 * scale <= room_h
        };
        let words: Vec<&str> =
            WORDS.iter().copied().filter(|word| fits(word, 3.0) && !self.words.contains(word)).collect();
        let word = *self.rng.pick(if words.is_empty() { &["Hi"] } else { &words });
        self.words.push(word);
        let halves: Vec<i64> = (6..=16).filter(|&half| fits(word, half as f64 / 2.0)).collect();
        let scale = *self.rng.pick(if halves.is_empty() { &[6] } else { &halves }) as f64 / 2.0;
        let (tw, th) = (8.0 * scale * (word.len() as f64 + slant), 8.0 * scale);
        let (x0, y0) = match label {
            Some(_) => ((bx0 + bx1 - tw) / 2.0, (by0 + by1 - th) / 2.0),
            None => (self.rng.uniform(bx0, (bx1 - tw).max(bx0)), self.rng.uniform(by0, (by1 - th).max(by0))),
        };
        let glyphs = word.bytes().map(|c| font8x8::legacy::BASIC_LEGACY[usize::from(c)]).collect();
        let shape = Shape::Text { x0, y0, scale, slant, glyphs };
        let fill = self.fill(shape.bounds(), 4);
        let mask = shape.mask(self.w, self.h, 255);
        let oblique = if slant > 0.0 { ", oblique" } else { "" };
        self.push(raster::layer(&mask, &fill), noted(&format!("text \"{word}\" at {scale}x{oblique}"), &fill));
    }

    /// A feathered disc or ellipse, 67% to 100% opaque in the middle, sometimes a glow (a
    /// radial gradient from a second colour in the centre).
    pub fn soft(&mut self) {
        let side = self.side();
        let rx = side * self.rng.uniform(0.08, 0.22);
        let ry = if self.rng.chance(1, 2) { rx } else { rx * self.rng.uniform(0.55, 1.6) };
        let feather = rx.min(ry) * self.rng.uniform(0.3, 1.0);
        let centre = (self.w() * self.rng.uniform(0.15, 0.85), self.h() * self.rng.uniform(0.15, 0.85));
        let opacity = self.rng.range(170, 255) as u32;
        let outer = self.colour();
        let glow = self.rng.chance(1, 3);
        let fill = if glow {
            Fill::Radial { inner: self.colour(), outer, centre, radius: rx.max(ry) }
        } else {
            Fill::Flat(outer)
        };
        let mask = soft_ellipse(self.w, self.h, centre, (rx, ry), feather, opacity);
        let what = if rx == ry { "soft disc" } else { "soft ellipse" };
        let glow = if glow { ", glow" } else { "" };
        self.push(raster::layer(&mask, &fill), format!("{what} {}%{glow}", percent(opacity)));
    }

    /// A shape and, one layer below it, its drop shadow: the shape's coverage moved down and
    /// sideways, blurred (three box passes), dark, at 30% to 60%.
    pub fn shadowed(&mut self) {
        let (shape, name, bounds) = self.random_shape(0.45);
        let fill = self.fill(bounds, 3);
        let mask = shape.mask(self.w, self.h, 255);
        let side = self.side();
        let offset = (side * self.rng.uniform(0.02, 0.05) + 0.5).floor() as i64;
        let dx = if self.rng.chance(1, 3) { -offset } else { offset };
        let radius = 1 + (side * self.rng.uniform(0.006, 0.02)) as u32;
        let opacity = self.rng.range(77, 153) as u32;
        let shadow = mask.shifted(dx, offset).blurred(radius, 3).scaled(opacity, 255);
        let colour = *self.rng.pick(&SHADOWS);
        let note = format!("drop shadow {}% of the next layer", percent(opacity));
        self.push(raster::layer(&shadow, &Fill::Flat(colour)), note);
        self.push(raster::layer(&mask, &fill), noted(name, &fill));
    }

    /// A semi-transparent tinted panel (uniform 30% to 70% inside): a band across the canvas,
    /// a rectangle or a rounded rectangle.
    pub fn overlay(&mut self) {
        let (fw, fh) = (self.w(), self.h());
        let opacity = self.rng.range(77, 178) as u32;
        let (shape, what) = match self.rng.range(0, 2) {
            0 => {
                let band = fh * self.rng.uniform(0.15, 0.35);
                let y0 = self.rng.uniform(0.0, fh - band);
                (Shape::Rect { x0: -1.0, y0, x1: fw + 1.0, y1: y0 + band }, "band")
            }
            kind => {
                let (w, h) = (fw * self.rng.uniform(0.35, 0.85), fh * self.rng.uniform(0.25, 0.6));
                let (x0, y0) = (self.rng.uniform(0.0, fw - w), self.rng.uniform(0.0, fh - h));
                let (x1, y1) = (x0 + w, y0 + h);
                if kind == 1 {
                    (Shape::Rect { x0, y0, x1, y1 }, "panel")
                } else {
                    let r = w.min(h) * self.rng.uniform(0.05, 0.3);
                    (Shape::RoundRect { x0, y0, x1, y1, r }, "rounded panel")
                }
            }
        };
        let fill = Fill::Flat(self.colour());
        let mask = shape.mask(self.w, self.h, opacity);
        self.push(raster::layer(&mask, &fill), format!("tinted {what} {}%", percent(opacity)));
    }
    /// A band across the whole canvas, horizontal or (one time in three) vertical, 6% to 18%
    /// of the shorter side thick.
    pub fn bar(&mut self) {
        let (fw, fh) = (self.w(), self.h());
        let t = self.side() * self.rng.uniform(0.06, 0.18);
        let (shape, what) = if self.rng.chance(1, 3) {
            let x0 = self.rng.uniform(0.05 * fw, 0.95 * fw - t);
            (Shape::Rect { x0, y0: -1.0, x1: x0 + t, y1: fh + 1.0 }, "vertical bar")
        } else {
            let y0 = self.rng.uniform(0.05 * fh, 0.95 * fh - t);
            (Shape::Rect { x0: -1.0, y0, x1: fw + 1.0, y1: y0 + t }, "bar")
        };
        let fill = self.fill(shape.bounds(), 3);
        let mask = shape.mask(self.w, self.h, 255);
        self.push(raster::layer(&mask, &fill), noted(what, &fill));
    }

    /// Two to five parallel stripes of one colour, horizontal, vertical or at 45 degrees, in a
    /// box of 40% to 90% of the canvas.
    pub fn stripes(&mut self) {
        let (fw, fh) = (self.w(), self.h());
        let (bw, bh) = (fw * self.rng.uniform(0.4, 0.9), fh * self.rng.uniform(0.4, 0.9));
        let (x0, y0) = (self.rng.uniform(0.0, fw - bw), self.rng.uniform(0.0, fh - bh));
        let n = self.rng.range(2, 5) as usize;
        let t = (self.side() * self.rng.uniform(0.025, 0.07)).max(3.0);
        let direction = self.rng.range(0, 2);
        // The stripes share the box's long extent across them: pitch = thickness + gap.
        let across = if direction == 1 { bw } else { bh };
        let pitch = (across / n as f64).max(t * 1.5);
        let parts = (0..n)
            .map(|i| {
                let o = i as f64 * pitch;
                match direction {
                    0 => Shape::Rect { x0, y0: y0 + o, x1: x0 + bw, y1: y0 + o + t },
                    1 => Shape::Rect { x0: x0 + o, y0, x1: x0 + o + t, y1: y0 + bh },
                    // A parallelogram leaning right by its height (45 degrees).
                    _ => Shape::Polygon {
                        points: vec![(x0 + o + bh * 0.5, y0), (x0 + o + bh * 0.5 + t * 1.4, y0), (x0 + o + t * 1.4, y0 + bh), (x0 + o, y0 + bh)],
                    },
                }
            })
            .collect();
        let shape = Shape::Union(parts);
        let what = ["horizontal", "vertical", "diagonal"][direction as usize];
        let fill = self.fill(shape.bounds(), 5);
        let mask = shape.mask(self.w, self.h, 255);
        self.push(raster::layer(&mask, &fill), noted(&format!("{n} {what} stripes"), &fill));
    }

    /// The outline of a rectangle, rounded rectangle or ellipse, stroked 2% to 5% of the
    /// shorter side (at least 3 pixels).
    pub fn outline(&mut self) {
        let side = self.side();
        let (sw, sh) = (side * self.rng.uniform(0.25, 0.6), side * self.rng.uniform(0.25, 0.6));
        let (cx, cy) = (self.w() * self.rng.uniform(0.25, 0.75), self.h() * self.rng.uniform(0.25, 0.75));
        let (x0, y0, x1, y1) = (cx - sw / 2.0, cy - sh / 2.0, cx + sw / 2.0, cy + sh / 2.0);
        let t = (side * self.rng.uniform(0.02, 0.05)).max(3.0);
        let (outer, inner, what) = match self.rng.range(0, 2) {
            0 => (Shape::Rect { x0, y0, x1, y1 }, Shape::Rect { x0: x0 + t, y0: y0 + t, x1: x1 - t, y1: y1 - t }, "frame"),
            1 => {
                let r = sw.min(sh) * self.rng.uniform(0.15, 0.45);
                let inner = Shape::RoundRect { x0: x0 + t, y0: y0 + t, x1: x1 - t, y1: y1 - t, r: (r - t).max(0.0) };
                (Shape::RoundRect { x0, y0, x1, y1, r }, inner, "rounded frame")
            }
            _ => {
                let (rx, ry) = (sw / 2.0, if self.rng.chance(1, 2) { sw / 2.0 } else { sh / 2.0 });
                let what = if rx == ry { "ring" } else { "elliptic ring" };
                (Shape::Ellipse { cx, cy, rx, ry }, Shape::Ellipse { cx, cy, rx: rx - t, ry: ry - t }, what)
            }
        };
        let shape = Shape::Cut { outer: Box::new(outer), holes: vec![inner] };
        let fill = self.fill(shape.bounds(), 6);
        let mask = shape.mask(self.w, self.h, 255);
        self.push(raster::layer(&mask, &fill), format!("{} {:.0} px", noted(what, &fill), t));
    }

    /// A straight stroke 1.5 to 8 pixels wide: a horizontal rule under or over the middle, or
    /// a slanted line across a third to two thirds of the canvas.
    pub fn line(&mut self) {
        let (fw, fh) = (self.w(), self.h());
        let t = self.rng.uniform(1.5, 8.0);
        let (a, b, what) = if self.rng.chance(1, 2) {
            let y = fh * self.rng.uniform(0.1, 0.9);
            let x0 = fw * self.rng.uniform(0.05, 0.4);
            ((x0, y), (x0 + fw * self.rng.uniform(0.3, 0.55), y), "rule")
        } else {
            let (x0, y0) = (fw * self.rng.uniform(0.1, 0.5), fh * self.rng.uniform(0.1, 0.9));
            let (x1, y1) = (x0 + fw * self.rng.uniform(0.25, 0.45), fh * self.rng.uniform(0.1, 0.9));
            ((x0, y0), (x1, y1), "line")
        };
        // The segment widened by t/2 on both sides: a quadrilateral.
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len = (dx * dx + dy * dy).sqrt();
        let (nx, ny) = (-dy / len * t / 2.0, dx / len * t / 2.0);
        let points = vec![(a.0 + nx, a.1 + ny), (b.0 + nx, b.1 + ny), (b.0 - nx, b.1 - ny), (a.0 - nx, a.1 - ny)];
        let fill = Fill::Flat(self.colour());
        let mask = Shape::Polygon { points }.mask(self.w, self.h, 255);
        self.push(raster::layer(&mask, &fill), format!("{what} {t:.1} px"));
    }

    /// A flat pictogram 12% to 25% of the shorter side, made of pieces on a 100 x 100 grid:
    /// a pin, a house with a door, a plus, a heart, a check mark, a picture frame or a speech
    /// bubble.
    pub fn icon(&mut self) {
        let s = self.side() * self.rng.uniform(0.12, 0.25);
        let (x0, y0) = (self.rng.uniform(0.05 * self.w(), 0.95 * self.w() - s), self.rng.uniform(0.05 * self.h(), 0.95 * self.h() - s));
        let p = |x: f64, y: f64| (x0 + x * s / 100.0, y0 + y * s / 100.0);
        let rect = |a: f64, b: f64, c: f64, d: f64| {
            let ((x0, y0), (x1, y1)) = (p(a, b), p(c, d));
            Shape::Rect { x0, y0, x1, y1 }
        };
        let disc = |cx: f64, cy: f64, r: f64| {
            let (cx, cy) = p(cx, cy);
            Shape::Ellipse { cx, cy, rx: r * s / 100.0, ry: r * s / 100.0 }
        };
        let polygon = |points: &[(f64, f64)]| Shape::Polygon { points: points.iter().map(|&(x, y)| p(x, y)).collect() };
        let (shape, what) = match self.rng.range(0, 6) {
            0 => (
                Shape::Cut {
                    outer: Box::new(Shape::Union(vec![disc(50.0, 38.0, 36.0), polygon(&[(18.0, 52.0), (82.0, 52.0), (50.0, 100.0)])])),
                    holes: vec![disc(50.0, 38.0, 14.0)],
                },
                "pin icon",
            ),
            1 => (
                Shape::Cut {
                    outer: Box::new(Shape::Union(vec![polygon(&[(50.0, 0.0), (100.0, 45.0), (0.0, 45.0)]), rect(14.0, 44.0, 86.0, 100.0)])),
                    holes: vec![rect(40.0, 64.0, 60.0, 100.5)],
                },
                "house icon",
            ),
            2 => (Shape::Union(vec![rect(36.0, 0.0, 64.0, 100.0), rect(0.0, 36.0, 100.0, 64.0)]), "plus icon"),
            3 => (
                Shape::Union(vec![disc(28.0, 30.0, 26.0), disc(72.0, 30.0, 26.0), polygon(&[(4.0, 40.0), (96.0, 40.0), (50.0, 92.0)])]),
                "heart icon",
            ),
            4 => (polygon(&[(0.0, 55.0), (15.0, 40.0), (38.0, 62.0), (85.0, 12.0), (100.0, 27.0), (38.0, 92.0)]), "check icon"),
            5 => (
                Shape::Union(vec![
                    Shape::Cut { outer: Box::new(rect(0.0, 8.0, 100.0, 92.0)), holes: vec![rect(9.0, 17.0, 91.0, 83.0)] },
                    polygon(&[(9.0, 83.0), (38.0, 45.0), (60.0, 70.0), (72.0, 58.0), (91.0, 83.0)]),
                    disc(72.0, 34.0, 9.0),
                ]),
                "picture icon",
            ),
            _ => (
                Shape::Union(vec![
                    {
                        let ((x0, y0), (x1, y1)) = (p(0.0, 0.0), p(100.0, 72.0));
                        Shape::RoundRect { x0, y0, x1, y1, r: 16.0 * s / 100.0 }
                    },
                    polygon(&[(20.0, 70.0), (48.0, 70.0), (16.0, 100.0)]),
                ]),
                "speech bubble icon",
            ),
        };
        let fill = self.fill(shape.bounds(), 8);
        let mask = shape.mask(self.w, self.h, 255);
        self.push(raster::layer(&mask, &fill), noted(what, &fill));
    }

    /// One to three lines of words of one colour and size, left-aligned, in the next of the
    /// canvas's horizontal bands (one band per block of the sample).
    pub fn block(&mut self) {
        let (fw, fh) = (self.w(), self.h());
        let band = 0.92 * fh / self.bands.max(1) as f64;
        let (by0, by1) = (0.04 * fh + self.blocks as f64 * band, 0.04 * fh + (self.blocks + 1) as f64 * band);
        self.blocks += 1;
        let room_w = 0.9 * fw;
        let lines = self.rng.range(1, 3) as usize;
        // Each line is 8 s high with 3 s between lines: `lines` of them fill 11 s lines - 3 s.
        let scale_for_height = (by1 - by0) * 0.8 / (11.0 * lines as f64 - 3.0);
        let mut words = Vec::with_capacity(lines);
        for _ in 0..lines {
            let fitting: Vec<&str> =
                WORDS.iter().copied().filter(|w| 24.0 * w.len() as f64 <= room_w && !self.words.contains(w)).collect();
            let word = *self.rng.pick(if fitting.is_empty() { &["Hi"] } else { &fitting });
            self.words.push(word);
            words.push(word);
        }
        let longest = words.iter().map(|w| w.len()).max().unwrap_or(1) as f64;
        let top = (room_w / (8.0 * longest)).min(scale_for_height).max(2.0);
        let halves: Vec<i64> = (4..=16).filter(|&half| half as f64 / 2.0 <= top).collect();
        let scale = *self.rng.pick(if halves.is_empty() { &[4] } else { &halves }) as f64 / 2.0;
        let height = 8.0 * scale * lines as f64 + 3.0 * scale * (lines as f64 - 1.0);
        let widest = 8.0 * scale * longest;
        let x0 = self.rng.uniform(0.05 * fw, (0.95 * fw - widest).max(0.05 * fw));
        let y0 = self.rng.uniform(by0, (by1 - height).max(by0));
        let parts = words
            .iter()
            .enumerate()
            .map(|(i, word)| Shape::Text {
                x0,
                y0: y0 + i as f64 * 11.0 * scale,
                scale,
                slant: 0.0,
                glyphs: word.bytes().map(|c| font8x8::legacy::BASIC_LEGACY[usize::from(c)]).collect(),
            })
            .collect();
        let shape = Shape::Union(parts);
        let fill = self.fill(shape.bounds(), 6);
        let mask = shape.mask(self.w, self.h, 255);
        let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
        self.push(raster::layer(&mask, &fill), noted(&format!("text block {} at {scale}x", quoted.join(" / ")), &fill));
    }
}

//! The samples: the table that names them, and the recipes that say which elements a row's
//! layers are (drawn by `draw.rs`).
//!
//! A row fixes what a reader of the set needs to know (background, kind of content, size,
//! layer count); the details (positions, colours, words) come from a PRNG seeded with the
//! sample's name, so the table stays short and every sample is still reproducible.

use std::path::Path;

use image::{RgbImage, RgbaImage};

use crate::draw::Builder;
use crate::raster::{self, Rgb};

/// What the bottom layer is.
pub enum Backdrop {
    /// A crop `[x, y, width, height]` of a photo in assets/samples, shrunk to the canvas.
    Photo { file: &'static str, crop: [u32; 4] },
    Flat(Rgb),
    Gradient { from: Rgb, to: Rgb, dir: Dir },
}

#[derive(Clone, Copy)]
pub enum Dir {
    Horizontal,
    Vertical,
    Diagonal,
    Radial,
}

/// What the foreground layers hold; the name's middle word.
#[derive(Clone, Copy)]
pub enum Content {
    /// Hard-edged filled shapes.
    Shapes,
    /// A label and words on it, or words alone.
    Text,
    /// Feathered discs and ellipses.
    Soft,
    /// Shapes with drop shadows, each shadow its own layer.
    Shadow,
    /// Semi-transparent tinted panels over shapes, with text.
    Overlay,
    /// A little of everything.
    Mixed,
    /// Bars across the canvas and sets of parallel stripes.
    Stripes,
    /// Outlined shapes (frames, rings, stroked rounded rectangles) and straight strokes.
    Outlines,
    /// Small flat pictograms made of several pieces, some with holes.
    Icons,
    /// Blocks of words of one colour and size each (a headline, a line or two of copy), in
    /// several colours.
    Blocks,
}

impl Content {
    fn word(self) -> &'static str {
        match self {
            Content::Shapes => "shapes",
            Content::Text => "text",
            Content::Soft => "soft",
            Content::Shadow => "shadow",
            Content::Overlay => "overlay",
            Content::Mixed => "mixed",
            Content::Stripes => "stripes",
            Content::Outlines => "outlines",
            Content::Icons => "icons",
            Content::Blocks => "blocks",
        }
    }
}

/// One row of the table.
pub struct Spec {
    pub backdrop: Backdrop,
    pub content: Content,
    pub w: u32,
    pub h: u32,
    /// Layers including the bottom one.
    pub layers: usize,
}

const fn photo(file: &'static str, crop: [u32; 4], content: Content, w: u32, h: u32, layers: usize) -> Spec {
    Spec { backdrop: Backdrop::Photo { file, crop }, content, w, h, layers }
}

const fn flat(colour: Rgb, content: Content, w: u32, h: u32, layers: usize) -> Spec {
    Spec { backdrop: Backdrop::Flat(colour), content, w, h, layers }
}

const fn gradient(from: Rgb, to: Rgb, dir: Dir, content: Content, w: u32, h: u32, layers: usize) -> Spec {
    Spec { backdrop: Backdrop::Gradient { from, to, dir }, content, w, h, layers }
}

/// The set. The first 32 rows: half photographic, half flat or gradient, layer counts 2 to 6;
/// then rows for what designs hold besides (bars, stripes, outlines, icons, text blocks,
/// text over photos). Photographic canvases at most 512 px a side (they cost the most
/// bytes), a few flat ones up to 1024. Appending a row leaves every other sample unchanged.
pub fn table() -> Vec<Spec> {
    use Content::*;
    use Dir::*;
    vec![
        photo("astronaut.png", [0, 0, 512, 512], Shapes, 288, 288, 3),
        photo("astronaut.png", [0, 64, 512, 384], Text, 352, 264, 4),
        photo("astronaut.png", [176, 40, 288, 384], Shadow, 264, 352, 5),
        photo("chelsea.png", [0, 0, 451, 300], Soft, 384, 256, 2),
        photo("chelsea.png", [100, 0, 300, 300], Overlay, 256, 256, 6),
        photo("chelsea.png", [140, 0, 256, 300], Mixed, 256, 300, 3),
        photo("coffee.png", [0, 0, 600, 400], Mixed, 384, 256, 6),
        photo("coffee.png", [120, 20, 360, 360], Shapes, 288, 288, 5),
        photo("coffee.png", [60, 80, 480, 320], Text, 384, 256, 2),
        photo("rocket.jpg", [0, 0, 640, 427], Shapes, 384, 256, 4),
        photo("rocket.jpg", [190, 0, 256, 427], Text, 256, 427, 6),
        photo("rocket.jpg", [100, 50, 480, 320], Shadow, 384, 256, 3),
        photo("hubble_deep_field.jpg", [0, 0, 1000, 872], Soft, 294, 256, 4),
        photo("hubble_deep_field.jpg", [200, 150, 600, 600], Overlay, 256, 256, 2),
        photo("retina.jpg", [0, 0, 1411, 1411], Mixed, 320, 320, 5),
        photo("retina.jpg", [250, 400, 960, 640], Soft, 384, 256, 4),
        flat([246, 241, 232], Shapes, 512, 512, 2),
        flat([30, 34, 45], Text, 1024, 768, 5),
        flat([255, 255, 255], Shadow, 512, 384, 4),
        flat([233, 196, 106], Overlay, 768, 1024, 3),
        flat([42, 157, 143], Soft, 400, 300, 6),
        flat([20, 20, 20], Mixed, 1024, 1024, 4),
        flat([200, 220, 240], Text, 320, 480, 3),
        flat([255, 183, 3], Shapes, 480, 360, 6),
        gradient([255, 200, 221], [162, 210, 255], Horizontal, Shapes, 512, 384, 3),
        gradient([15, 32, 39], [44, 83, 100], Vertical, Text, 768, 512, 6),
        gradient([255, 255, 255], [190, 190, 200], Radial, Shadow, 448, 448, 3),
        gradient([247, 37, 133], [58, 12, 163], Diagonal, Soft, 1024, 576, 2),
        gradient([254, 250, 224], [212, 163, 115], Vertical, Overlay, 384, 512, 5),
        gradient([224, 251, 252], [61, 90, 128], Horizontal, Mixed, 416, 416, 5),
        gradient([255, 236, 210], [252, 182, 159], Diagonal, Text, 256, 512, 2),
        gradient([40, 40, 60], [120, 110, 160], Radial, Shapes, 512, 288, 4),
        // What designs hold besides: bars and stripes, outlines and strokes, icons, text
        // blocks in several colours, and text over photos.
        flat([250, 250, 247], Stripes, 512, 384, 4),
        flat([38, 70, 83], Outlines, 480, 480, 4),
        flat([255, 255, 255], Icons, 512, 512, 5),
        flat([252, 228, 236], Blocks, 640, 480, 4),
        gradient([255, 241, 208], [255, 190, 118], Vertical, Stripes, 448, 448, 3),
        gradient([230, 240, 255], [120, 150, 210], Diagonal, Outlines, 512, 320, 5),
        gradient([60, 30, 90], [20, 10, 40], Radial, Icons, 384, 384, 4),
        gradient([220, 245, 230], [160, 210, 190], Horizontal, Blocks, 512, 512, 3),
        photo("coffee.png", [0, 20, 600, 380], Blocks, 384, 256, 4),
        photo("astronaut.png", [100, 0, 412, 412], Icons, 320, 320, 3),
        photo("rocket.jpg", [40, 20, 600, 400], Stripes, 384, 256, 3),
        photo("chelsea.png", [0, 0, 360, 300], Outlines, 300, 256, 4),
    ]
}

/// A made sample: its layers bottom first, their composite, and what each layer is.
pub struct Sample {
    pub name: String,
    pub layers: Vec<RgbaImage>,
    pub composite: RgbImage,
    /// One short description per layer, bottom first.
    pub notes: Vec<String>,
}

impl Spec {
    /// The background's kind: the name's first word.
    pub fn kind(&self) -> &'static str {
        match self.backdrop {
            Backdrop::Photo { .. } => "photo",
            Backdrop::Flat(_) => "flat",
            Backdrop::Gradient { .. } => "gradient",
        }
    }

    /// `<kind>-<content>-<nn>-<layers>l.png`, `nn` the 1-based row number.
    pub fn name(&self, index: usize) -> String {
        format!("{}-{}-{:02}-{}l.png", self.kind(), self.content.word(), index + 1, self.layers)
    }

    /// The photo the background comes from, if any.
    pub fn photo(&self) -> Option<&'static str> {
        match self.backdrop {
            Backdrop::Photo { file, .. } => Some(file),
            _ => None,
        }
    }

    /// Makes the sample; `photos` is the folder of the bundled photos. Variant 0 is the
    /// committed set; another variant draws the details from another seed.
    pub fn make(&self, index: usize, variant: u32, photos: &Path) -> Result<Sample, String> {
        let name = self.name(index);
        let seed = if variant == 0 { name.clone() } else { format!("{name}#variant-{variant}") };
        let mut b = Builder::new(&seed, self.w, self.h);
        b.backdrop(&self.backdrop, photos)?;
        let elements = recipe(self.content, self.layers - 1).ok_or_else(|| format!("{name}: no recipe"))?;
        b.bands = elements.iter().filter(|e| matches!(e, Element::Block)).count();
        for element in elements {
            match element {
                Element::Shape => b.shape(),
                Element::Label => b.label(),
                Element::Text => b.text(),
                Element::Soft => b.soft(),
                Element::Shadowed => b.shadowed(),
                Element::Overlay => b.overlay(),
                Element::Bar => b.bar(),
                Element::Stripes => b.stripes(),
                Element::Outline => b.outline(),
                Element::Line => b.line(),
                Element::Icon => b.icon(),
                Element::Block => b.block(),
            }
        }
        if b.layers.len() != self.layers {
            return Err(format!("{name}: made {} layers", b.layers.len()));
        }
        // A ground-truth layer with nothing in it could never be matched: an error in the table.
        if let Some(n) = (1..b.layers.len()).find(|&n| b.layers[n].pixels().all(|p| p[3] == 0)) {
            return Err(format!("{name}: layer {n} ({}) is empty", b.notes[n]));
        }
        let composite = raster::composite(&b.layers).ok_or_else(|| format!("{name}: bottom layer not opaque"))?;
        Ok(Sample { name, layers: b.layers, composite, notes: b.notes })
    }
}

/// One foreground element; a shadowed shape is two layers, the others one.
#[derive(Clone, Copy)]
enum Element {
    Shape,
    /// An opaque rounded rectangle that the next text is centred on.
    Label,
    Text,
    Soft,
    Shadowed,
    Overlay,
    /// One band across the whole canvas.
    Bar,
    /// Two to five parallel stripes of one colour.
    Stripes,
    /// A frame, ring or stroked rounded rectangle.
    Outline,
    /// A straight stroke: a rule or a slanted line.
    Line,
    Icon,
    /// One to three lines of words of one colour and size.
    Block,
}

/// The elements of `n` foreground layers of `content`, bottom first; `None` where `content`
/// cannot fill `n` layers (a shadowed shape needs two).
fn recipe(content: Content, n: usize) -> Option<Vec<Element>> {
    use Element::*;
    let elements = match (content, n) {
        (_, 0) => return None,
        (Content::Shapes, n) => vec![Shape; n],
        (Content::Text, 1) => vec![Text],
        (Content::Text, n) => [vec![Label], vec![Text; n - 1]].concat(),
        (Content::Soft, n) => vec![Soft; n],
        (Content::Shadow, 1) => return None,
        (Content::Shadow, n) => [vec![Shadowed; n / 2], vec![Text; n % 2]].concat(),
        (Content::Overlay, 1) => vec![Overlay],
        (Content::Overlay, 2) => vec![Shape, Overlay],
        (Content::Overlay, 3) => vec![Shape, Overlay, Text],
        (Content::Overlay, 4) => vec![Soft, Shape, Overlay, Text],
        (Content::Overlay, n) => [vec![Shape, Overlay, Shape, Overlay], vec![Text; n - 4]].concat(),
        (Content::Mixed, 1) => vec![Shape],
        (Content::Mixed, 2) => vec![Soft, Text],
        (Content::Mixed, 3) => vec![Overlay, Shape, Text],
        (Content::Mixed, 4) => vec![Soft, Shadowed, Text],
        (Content::Mixed, n) => [vec![Soft, Shadowed, Overlay], vec![Text; n - 4]].concat(),
        (Content::Stripes, 1) => vec![Stripes],
        (Content::Stripes, 2) => vec![Bar, Text],
        (Content::Stripes, 3) => vec![Stripes, Bar, Text],
        (Content::Stripes, n) => [vec![Bar, Stripes, Shape], vec![Text; n - 3]].concat(),
        (Content::Outlines, 1) => vec![Outline],
        (Content::Outlines, 2) => vec![Outline, Line],
        (Content::Outlines, 3) => vec![Outline, Line, Text],
        (Content::Outlines, n) => [vec![Outline, Line, Outline], vec![Line; n - 4], vec![Text]].concat(),
        (Content::Icons, 1) => vec![Icon],
        (Content::Icons, n) => [vec![Icon; n - 1], vec![Text]].concat(),
        (Content::Blocks, n) => vec![Block; n],
    };
    Some(elements)
}

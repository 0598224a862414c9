//! Layered documents that editors open: a Photoshop document ([`psd`]) and an OpenRaster
//! document ([`ora`]), plus layers cropped to their bounding boxes.
//!
//! This is the rendering step: everything here is made from the stored layer PNGs alone, so a
//! fresh decomposition and a later re-rendering (other formats asked for) run the same code
//! on the same bytes and write the same documents. The layers are read back row by row in
//! lockstep, each from the rectangle its PNG covers (the canvas, or its bounding box when it
//! was stored cropped): each row of each layer goes into its PSD channels (PackBits) and,
//! when the placement changes, into a PNG of the new rectangle; the rows' composite goes into
//! the documents' merged images and the thumbnail. Memory is the compressed outputs plus one
//! row per layer, whatever the image's size: a document never needs the layers uncompressed.

pub mod ora;
pub mod psd;
mod zip;

use std::io::{Cursor, Write};

use crate::encode::SharedBuf;
use lamina_common::manifest::BBox;
use lamina_common::params::{Format, RenderParams};

/// The document formats: each is one file in this folder behind [`FormatWriter`], listed
/// once here (its name, for `--formats`, is the [`Format`] it is registered under).
const WRITERS: &[(Format, Open)] = &[(Format::Psd, psd::open), (Format::Ora, ora::open)];

/// Opens a format's writer for a stack.
type Open = fn(&Stack<'_>) -> Result<Box<dyn FormatWriter>, RenderError>;

/// Why a rendering failed: a stored layer that cannot be used (the image should be
/// decomposed again), or an output that cannot be made from good layers (a canvas too large
/// for the format, an encoder failing), which decomposing again would not change.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    Layer(String),
    #[error("{0}")]
    Output(String),
}

/// What a writer is told before the first row: the canvas, whether the input had
/// transparency, and each layer's name and the rectangle it keeps (bottom first).
pub struct Stack<'a> {
    pub width: u32,
    pub height: u32,
    pub has_alpha: bool,
    pub names: &'a [String],
    pub rects: &'a [BBox],
}

/// A document format's writer, fed the finished layers row by row (top to bottom), so a
/// document never needs the layers uncompressed.
pub trait FormatWriter: Send {
    /// Row `y` of the canvas: each layer's part inside its rectangle (8-bit straight RGBA;
    /// `None` where the row is outside it), and the row's composite (premultiplied RGBA in
    /// [0,1], the whole width).
    fn row(&mut self, y: u32, layers: &[Option<&[u8]>], composite: &[[f32; 4]]) -> Result<(), RenderError>;

    /// The finished document, `(file name, bytes)`. `layer_pngs` are the layer files as
    /// written (each holding its rectangle), for formats that embed them.
    fn finish(self: Box<Self>, layer_pngs: &[Vec<u8>]) -> Result<(String, Vec<u8>), RenderError>;
}

/// One stored layer: its name, its PNG, the rectangle of the canvas that PNG covers, and
/// the layer's bounding box (the rectangle kept when cropping). Pixels outside `placed` are
/// transparent black, which is what the encoder stores for every invisible pixel, so a layer
/// read from a cropped PNG equals the full-canvas one.
pub struct DocLayer {
    pub name: String,
    pub png: Vec<u8>,
    pub placed: BBox,
    pub bbox: BBox,
}

/// What [`build`] makes: the layers' PNGs as they are to be written (cropped or not), and the
/// documents as `(file name, bytes)`.
pub struct Documents {
    pub pngs: Vec<Vec<u8>>,
    pub files: Vec<(String, Vec<u8>)>,
}

/// Builds what `render` asks for from a canvas of `width` x `height` and its stored layers
/// (bottom first); `has_alpha` says whether the input had transparency, which the PSD's
/// merged image then carries.
pub fn build(width: u32, height: u32, layers: Vec<DocLayer>, has_alpha: bool, render: &RenderParams) -> Result<Documents, RenderError> {
    let canvas = BBox { x: 0, y: 0, width, height };
    let rects: Vec<BBox> = layers.iter().map(|l| if render.crop_layers { l.bbox } else { canvas }).collect();
    for l in &layers {
        if !fits(l.placed, canvas) || !fits(l.bbox, canvas) {
            return Err(RenderError::Layer(format!("layer {:?} lies outside the {width}x{height} canvas", l.name)));
        }
    }
    let wanted: Vec<&(Format, Open)> = WRITERS.iter().filter(|(format, _)| render.formats.contains(*format)).collect();
    // The stored PNGs already are the layer files asked for: nothing to read.
    if wanted.is_empty() && layers.iter().zip(&rects).all(|(l, r)| l.placed == *r) {
        return Ok(Documents { pngs: layers.into_iter().map(|l| l.png).collect(), files: Vec::new() });
    }
    let mut readers = layers
        .iter()
        .map(|l| {
            let mut decoder = png::Decoder::new(Cursor::new(l.png.as_slice()));
            decoder.set_transformations(png::Transformations::IDENTITY);
            let reader = decoder.read_info().map_err(|e| RenderError::Layer(format!("cannot read back layer {:?}: {e}", l.name)))?;
            let info = reader.info();
            let (pw, ph) = (l.placed.width, l.placed.height);
            if (info.width, info.height, info.color_type, info.bit_depth) != (pw, ph, png::ColorType::Rgba, png::BitDepth::Eight) {
                return Err(RenderError::Layer(format!("layer {:?} is not {pw}x{ph} 8-bit RGBA", l.name)));
            }
            Ok(reader)
        })
        .collect::<Result<Vec<_>, RenderError>>()?;

    let names: Vec<String> = layers.iter().map(|l| l.name.clone()).collect();
    let stack = Stack { width, height, has_alpha, names: &names, rects: &rects };
    let mut writers = wanted.iter().map(|(_, open)| open(&stack)).collect::<Result<Vec<_>, _>>()?;
    // A layer file is written anew only where its rectangle changes (cropped <-> whole).
    let mut placed_anew = layers
        .iter()
        .zip(&rects)
        .map(|(l, r)| if l.placed == *r { Ok(None) } else { StreamPng::new(r.width, r.height).map(Some).map_err(RenderError::Output) })
        .collect::<Result<Vec<_>, _>>()?;
    let mut full = vec![vec![0u8; width as usize * 4]; layers.len()];
    let mut premultiplied = vec![[0f32; 4]; width as usize];
    for y in 0..height {
        premultiplied.fill([0.0; 4]);
        for (i, reader) in readers.iter_mut().enumerate() {
            let p = layers[i].placed;
            let row = &mut full[i];
            if y >= p.y && y < p.y + p.height {
                let stored = match reader.next_row() {
                    Ok(Some(row)) => row.data(),
                    Ok(None) => return Err(RenderError::Layer(format!("layer {:?} ends after {} rows", layers[i].name, y - p.y))),
                    Err(e) => return Err(RenderError::Layer(format!("cannot read back layer {:?}: {e}", layers[i].name))),
                };
                row[p.x as usize * 4..(p.x + p.width) as usize * 4].copy_from_slice(stored);
            } else if y == p.y + p.height {
                // Below the stored rectangle: transparent again.
                row.fill(0);
            }
            over(&mut premultiplied, row);
        }
        let parts: Vec<Option<&[u8]>> = full
            .iter()
            .zip(&rects)
            .map(|(row, r)| (y >= r.y && y < r.y + r.height).then(|| &row[r.x as usize * 4..(r.x + r.width) as usize * 4]))
            .collect();
        for (png, part) in placed_anew.iter_mut().zip(&parts) {
            if let (Some(png), Some(part)) = (png.as_mut(), part) {
                png.row(part).map_err(RenderError::Output)?;
            }
        }
        for writer in &mut writers {
            writer.row(y, &parts, &premultiplied)?;
        }
    }

    drop(readers);
    let pngs = layers
        .into_iter()
        .zip(placed_anew)
        .map(|(l, anew)| match anew {
            Some(png) => png.finish().map_err(RenderError::Output),
            None => Ok(l.png),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let files = writers.into_iter().map(|w| w.finish(&pngs)).collect::<Result<Vec<_>, _>>()?;
    Ok(Documents { pngs, files })
}

fn fits(r: BBox, canvas: BBox) -> bool {
    u64::from(r.x) + u64::from(r.width) <= u64::from(canvas.width) && u64::from(r.y) + u64::from(r.height) <= u64::from(canvas.height)
}

pub(crate) fn quantise(v: f32) -> u8 {
    (v * 255.0 + 0.5).clamp(0.0, 255.0) as u8
}

/// Composites one row of 8-bit straight RGBA over `acc` (premultiplied RGBA in [0,1]). Each
/// pixel is one four-lane step, `[r, g, b, 1] a + acc (1 - a)`, with no branch, so the
/// compiler makes vector code of it; a transparent pixel leaves `acc` exactly as it was.
pub(crate) fn over(acc: &mut [[f32; 4]], line: &[u8]) {
    for (acc, px) in acc.iter_mut().zip(line.chunks_exact(4)) {
        let a = f32::from(px[3]) / 255.0;
        let colour = [f32::from(px[0]) / 255.0, f32::from(px[1]) / 255.0, f32::from(px[2]) / 255.0, 1.0];
        for c in 0..4 {
            acc[c] = colour[c] * a + acc[c] * (1.0 - a);
        }
    }
}

/// A PNG (8-bit RGBA) written row by row.
pub(crate) struct StreamPng {
    writer: png::StreamWriter<'static, SharedBuf>,
    bytes: SharedBuf,
}

impl StreamPng {
    pub(crate) fn new(width: u32, height: u32) -> Result<StreamPng, String> {
        let bytes = SharedBuf::default();
        let mut encoder = png::Encoder::new(bytes.clone(), width, height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        let writer = encoder.write_header().map_err(|e| e.to_string())?.into_stream_writer().map_err(|e| e.to_string())?;
        Ok(StreamPng { writer, bytes })
    }

    pub(crate) fn row(&mut self, rgba: &[u8]) -> Result<(), String> {
        self.writer.write_all(rgba).map_err(|e| e.to_string())
    }

    pub(crate) fn finish(self) -> Result<Vec<u8>, String> {
        self.writer.finish().map_err(|e| e.to_string())?;
        Ok(self.bytes.take())
    }
}


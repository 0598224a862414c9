//! Layered documents that editors open: a Photoshop document ([`psd`]) and an OpenRaster
//! document ([`ora`]), plus layers cropped to their bounding boxes.
//!
//! Everything is built in one pass over the finished layer PNGs, read back row by row in
//! lockstep: each row of each layer goes into its PSD channels (PackBits) and, when
//! cropping, into a cropped PNG; the rows' composite goes into the documents' merged images
//! and the thumbnail. Memory is the compressed outputs plus one row per layer, whatever the
//! image's size: a document never needs the layers uncompressed.

pub mod ora;
pub mod psd;
mod zip;

use std::io::{Cursor, Write};

use crate::encode::SharedBuf;
use lamina_common::manifest::BBox;
use lamina_common::params::{DecomposeParams, Format};

/// The thumbnail's longest side (the OpenRaster spec's limit).
const THUMBNAIL: u32 = 256;

/// One written layer: its name, its full-canvas PNG and the rectangle to keep.
pub struct DocLayer {
    pub name: String,
    pub png: Vec<u8>,
    pub bbox: BBox,
}

/// What [`build`] makes: the layers' PNGs as they are to be written (cropped or not), and the
/// documents as `(file name, bytes)`.
pub struct Documents {
    pub pngs: Vec<Vec<u8>>,
    pub files: Vec<(String, Vec<u8>)>,
}

/// Builds the documents `params` asks for from a canvas of `width` x `height` and its
/// layers (bottom first); `has_alpha` says whether the input had transparency, which the
/// PSD's merged image then carries.
pub fn build(width: u32, height: u32, layers: Vec<DocLayer>, has_alpha: bool, params: &DecomposeParams) -> Result<Documents, String> {
    let crop = params.crop_layers;
    let want_psd = params.formats.contains(Format::Psd);
    let want_ora = params.formats.contains(Format::Ora);
    let rects: Vec<BBox> =
        layers.iter().map(|l| if crop { l.bbox } else { BBox { x: 0, y: 0, width, height } }).collect();
    let mut readers = layers
        .iter()
        .map(|l| {
            let mut decoder = png::Decoder::new(Cursor::new(l.png.as_slice()));
            decoder.set_transformations(png::Transformations::IDENTITY);
            let reader = decoder.read_info().map_err(|e| format!("cannot read back layer {:?}: {e}", l.name))?;
            let info = reader.info();
            if (info.width, info.height, info.color_type, info.bit_depth) != (width, height, png::ColorType::Rgba, png::BitDepth::Eight) {
                return Err(format!("layer {:?} is not {width}x{height} 8-bit RGBA", l.name));
            }
            Ok(reader)
        })
        .collect::<Result<Vec<_>, String>>()?;

    let mut psd = if want_psd { Some(psd::Writer::new(width, height, &rects, has_alpha)?) } else { None };
    let mut cropped = if crop { Some(rects.iter().map(|r| StreamPng::new(r.width, r.height)).collect::<Result<Vec<_>, _>>()?) } else { None };
    let mut merged = if want_ora { Some(StreamPng::new(width, height)?) } else { None };
    let mut thumb = want_ora.then(|| Thumbnail::new(width, height));
    let w = width as usize;
    let mut premultiplied = vec![[0f32; 4]; w];
    let mut straight = vec![0u8; w * 4];
    for y in 0..height {
        premultiplied.fill([0.0; 4]);
        for (i, reader) in readers.iter_mut().enumerate() {
            let row = match reader.next_row() {
                Ok(Some(row)) => row.data(),
                Ok(None) => return Err(format!("layer {:?} ends after {y} rows", layers[i].name)),
                Err(e) => return Err(format!("cannot read back layer {:?}: {e}", layers[i].name)),
            };
            over(&mut premultiplied, row);
            let r = rects[i];
            if y < r.y || y >= r.y + r.height {
                continue;
            }
            let part = &row[r.x as usize * 4..(r.x + r.width) as usize * 4];
            if let Some(psd) = psd.as_mut() {
                psd.layer_row(i, part);
            }
            if let Some(cropped) = cropped.as_mut() {
                cropped[i].row(part)?;
            }
        }
        if let Some(psd) = psd.as_mut() {
            psd.merged_row(&premultiplied);
        }
        if let Some(merged) = merged.as_mut() {
            for (px, out) in premultiplied.iter().zip(straight.chunks_exact_mut(4)) {
                let a = px[3];
                for c in 0..3 {
                    out[c] = if a > 0.0 { quantise(px[c] / a) } else { 0 };
                }
                out[3] = quantise(a);
            }
            merged.row(&straight)?;
        }
        if let Some(thumb) = thumb.as_mut() {
            thumb.row(y, &premultiplied);
        }
    }

    drop(readers);
    let names: Vec<String> = layers.iter().map(|l| l.name.clone()).collect();
    let pngs = match cropped {
        Some(cropped) => cropped.into_iter().map(StreamPng::finish).collect::<Result<Vec<_>, _>>()?,
        None => layers.into_iter().map(|l| l.png).collect(),
    };
    let mut files = Vec::new();
    if let Some(psd) = psd {
        files.push(psd.finish(&names)?);
    }
    if let (Some(merged), Some(thumb)) = (merged, thumb) {
        let stack: Vec<ora::Layer<'_>> = names
            .iter()
            .zip(&rects)
            .zip(&pngs)
            .enumerate()
            .map(|(i, ((name, rect), png))| ora::Layer { name, file: lamina_common::keys::layer_name(i), x: rect.x, y: rect.y, png })
            .collect();
        let ora = ora::write(width, height, &stack, &merged.finish()?, &thumb.png()?)?;
        files.push((ora::FILE.to_owned(), ora));
    }
    Ok(Documents { pngs, files })
}

fn quantise(v: f32) -> u8 {
    (v * 255.0 + 0.5).clamp(0.0, 255.0) as u8
}

/// Composites one row of 8-bit straight RGBA over `acc` (premultiplied RGBA in [0,1]).
pub(crate) fn over(acc: &mut [[f32; 4]], line: &[u8]) {
    for (acc, px) in acc.iter_mut().zip(line.chunks_exact(4)) {
        let a = f32::from(px[3]) / 255.0;
        if a == 0.0 {
            continue;
        }
        for c in 0..3 {
            acc[c] = f32::from(px[c]) / 255.0 * a + acc[c] * (1.0 - a);
        }
        acc[3] = a + acc[3] * (1.0 - a);
    }
}

/// A PNG (8-bit RGBA) written row by row.
struct StreamPng {
    writer: png::StreamWriter<'static, SharedBuf>,
    bytes: SharedBuf,
}

impl StreamPng {
    fn new(width: u32, height: u32) -> Result<StreamPng, String> {
        let bytes = SharedBuf::default();
        let mut encoder = png::Encoder::new(bytes.clone(), width, height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        let writer = encoder.write_header().map_err(|e| e.to_string())?.into_stream_writer().map_err(|e| e.to_string())?;
        Ok(StreamPng { writer, bytes })
    }

    fn row(&mut self, rgba: &[u8]) -> Result<(), String> {
        self.writer.write_all(rgba).map_err(|e| e.to_string())
    }

    fn finish(self) -> Result<Vec<u8>, String> {
        self.writer.finish().map_err(|e| e.to_string())?;
        Ok(self.bytes.take())
    }
}

/// The composite reduced to at most [`THUMBNAIL`] pixels a side by area averaging
/// (premultiplied, so transparent pixels do not darken edges).
struct Thumbnail {
    width: u32,
    height: u32,
    tw: u32,
    th: u32,
    sums: Vec<[f64; 4]>,
    counts: Vec<u32>,
}

impl Thumbnail {
    fn new(width: u32, height: u32) -> Thumbnail {
        let scale = (f64::from(THUMBNAIL) / f64::from(width.max(height))).min(1.0);
        let tw = ((f64::from(width) * scale).round() as u32).clamp(1, THUMBNAIL);
        let th = ((f64::from(height) * scale).round() as u32).clamp(1, THUMBNAIL);
        let n = (tw * th) as usize;
        Thumbnail { width, height, tw, th, sums: vec![[0.0; 4]; n], counts: vec![0; n] }
    }

    fn row(&mut self, y: u32, premultiplied: &[[f32; 4]]) {
        let ty = (u64::from(y) * u64::from(self.th) / u64::from(self.height)) as u32;
        for (x, px) in premultiplied.iter().enumerate() {
            let tx = (x as u64 * u64::from(self.tw) / u64::from(self.width)) as u32;
            let i = (ty * self.tw + tx) as usize;
            for c in 0..4 {
                self.sums[i][c] += f64::from(px[c]);
            }
            self.counts[i] += 1;
        }
    }

    fn png(&self) -> Result<Vec<u8>, String> {
        let mut rgba = vec![0u8; self.sums.len() * 4];
        for ((sum, &count), out) in self.sums.iter().zip(&self.counts).zip(rgba.chunks_exact_mut(4)) {
            let a = sum[3] / f64::from(count.max(1));
            for c in 0..3 {
                out[c] = if sum[3] > 0.0 { quantise((sum[c] / sum[3]) as f32) } else { 0 };
            }
            out[3] = quantise(a as f32);
        }
        crate::encode::encode_png(self.tw, self.th, &rgba).map_err(|e| e.to_string())
    }
}

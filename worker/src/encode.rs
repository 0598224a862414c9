//! Encoding: quantised layers in; PNGs, per-layer statistics, the recomposite PSNR and the
//! contact sheet out. Layers are encoded in parallel on the rayon pool (all cores). The layer
//! PNGs are the stored decomposition: every other output is rendered from them
//! ([`crate::documents::build`]), now or by a later job that asks for other formats.
//!
//! Invisible pixels are stored as transparent black: a pixel whose alpha is 0 carries no
//! colour anyone can see, and one canonical value makes a layer stored cropped to its bounding
//! box equal to the same layer stored whole (and compresses better).
//!
//! Input alpha: the model decomposes the colour; each layer's alpha is then multiplied by the
//! input's alpha, so whatever was transparent in the input is transparent in every layer.
//! Where the input is opaque or fully transparent the stack recomposites exactly to the
//! input; at soft edges the stack is slightly more opaque than the input (normal blending
//! cannot split a partial coverage across layers exactly), and the PSNR shows it.

use std::io::Write;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use crate::decode::Decoded;
use crate::documents::{self, DocLayer};
use lamina_common::keys::layer_name;
use lamina_common::manifest::{BBox, LayerInfo, LayerLabel, LayerRole, OutputFile, PREVIEW_FILE};
use lamina_common::params::{Format, RenderParams};

/// Largest side of a tile in the contact sheet.
const TILE: u32 = 256;
const GUTTER: u32 = 8;

/// Why an image's layers could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The layers handed over do not fit the image (a band of the wrong size, rows missing).
    #[error("{0}")]
    Layers(String),
    /// A PNG encoder failed.
    #[error("{0}")]
    Output(String),
    /// Rendering the documents from the layers failed.
    #[error(transparent)]
    Render(#[from] crate::documents::RenderError),
}

/// One image's encoded outputs.
#[derive(Debug)]
pub struct Encoded {
    /// `(file name, PNG bytes)` of the written layers, bottom first.
    pub files: Vec<(String, Vec<u8>)>,
    pub layers: Vec<LayerInfo>,
    /// Model layers with no visible pixel, not written.
    pub dropped: Vec<usize>,
    pub preview: Vec<u8>,
    pub psnr_db: Option<f64>,
    /// Size and sha256 of every file and the preview, for the manifest.
    pub outputs: Vec<OutputFile>,
}

/// Applies the input alpha, drops invisible layers, encodes the rest and the preview, and
/// measures how well the written layers rebuild the input: [`StreamEncoder`] fed the whole
/// image as one band.
pub fn encode_image(layers: Vec<Vec<u8>>, sources: &[Vec<usize>], input: &Arc<Decoded>, params: &RenderParams) -> Result<Encoded, EncodeError> {
    let mut encoder = StreamEncoder::new(input.clone(), sources.to_vec(), params);
    encoder.push(layers)?;
    encoder.finish()
}

/// Encodes an image's layers as they arrive in bands of full-width rows, top to bottom, so
/// that no stage after the model holds a whole layer: each layer streams into its own PNG
/// encoder (only the compressed bytes stay), and the statistics, the recomposite PSNR and
/// the contact sheet's samples are accumulated band by band. Memory is the compressed
/// layers plus one band, whatever the image's size.
pub struct StreamEncoder {
    input: Arc<Decoded>,
    sources: Vec<Vec<usize>>,
    params: RenderParams,
    /// The next row to arrive.
    row: u32,
    layers: Vec<LayerStream>,
    squared_error: f64,
    thumb: Thumb,
    /// Each model layer's role and words (object and design models; empty for colour layers).
    labels: Vec<LayerLabel>,
}

struct LayerStream {
    png: Option<png::StreamWriter<'static, SharedBuf>>,
    bytes: SharedBuf,
    stats: Stats,
    /// The contact sheet's samples of this layer, `thumb.w * thumb.h` RGBA.
    thumb: Vec<u8>,
}

/// The PNG encoder's output, shared so the bytes can be taken once the encoder finishes.
#[derive(Clone, Default)]
pub(crate) struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    pub(crate) fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A layer's bounding box, alpha mass and alpha-weighted colour sums.
#[derive(Clone, Copy)]
struct Stats {
    x0: u32,
    y0: u32,
    x1: u32,
    y1: u32,
    sum_a: f64,
    sum_c: [f64; 3],
}

impl Default for Stats {
    fn default() -> Stats {
        Stats { x0: u32::MAX, y0: u32::MAX, x1: 0, y1: 0, sum_a: 0.0, sum_c: [0.0; 3] }
    }
}

/// The contact sheet's tile geometry: nearest samples at the tile pixels' centres.
#[derive(Clone, Copy)]
struct Thumb {
    w: u32,
    h: u32,
    scale: f64,
}

impl Thumb {
    fn new(w: u32, h: u32) -> Thumb {
        let scale = (f64::from(TILE) / f64::from(w.max(h))).min(1.0);
        let tw = ((f64::from(w) * scale).round() as u32).max(1);
        let th = ((f64::from(h) * scale).round() as u32).max(1);
        Thumb { w: tw, h: th, scale }
    }

    /// The source column (or row) of tile column (or row) `t` in an image `n` pixels long.
    fn source(&self, t: u32, n: u32) -> u32 {
        (((f64::from(t) + 0.5) / self.scale) as u32).min(n - 1)
    }
}

impl StreamEncoder {
    /// An encoder for `sources.len()` layers of `input`'s size, rendering what `params` asks
    /// for (formats, cropping).
    pub fn new(input: Arc<Decoded>, sources: Vec<Vec<usize>>, params: &RenderParams) -> StreamEncoder {
        let thumb = Thumb::new(input.width, input.height);
        let layers = sources
            .iter()
            .map(|_| LayerStream {
                png: None,
                bytes: SharedBuf::default(),
                stats: Stats::default(),
                thumb: vec![0; (thumb.w * thumb.h * 4) as usize],
            })
            .collect();
        StreamEncoder { input, sources, params: params.clone(), row: 0, layers, squared_error: 0.0, thumb, labels: Vec::new() }
    }

    /// Each model layer's role and words (object and design models): the manifest and the
    /// documents name the layers so. A written layer made of several model layers is the
    /// background when one of them is, else takes its first one's role and words.
    pub fn labels(mut self, labels: Vec<LayerLabel>) -> StreamEncoder {
        self.labels = labels;
        self
    }

    /// Takes the next rows of every layer (8-bit straight RGBA, full width, one buffer per
    /// layer, all with the same number of rows).
    pub fn push(&mut self, mut band: Vec<Vec<u8>>) -> Result<(), EncodeError> {
        let (w, h) = (self.input.width, self.input.height);
        let row_bytes = w as usize * 4;
        if band.len() != self.layers.len() {
            return Err(EncodeError::Layers(format!("a band has {} layers, expected {}", band.len(), self.layers.len())));
        }
        let bytes = band.first().map_or(0, Vec::len);
        if bytes == 0 || bytes % row_bytes != 0 || band.iter().any(|l| l.len() != bytes) {
            return Err(EncodeError::Layers(format!("a band's layers are not whole rows of {w} pixels")));
        }
        let rows = (bytes / row_bytes) as u32;
        let r0 = self.row;
        if r0 + rows > h {
            return Err(EncodeError::Layers(format!("{} rows arrived for an image {h} rows high", r0 + rows)));
        }
        let n = w as usize * h as usize;
        let first = r0 as usize * w as usize;
        match &self.input.alpha {
            Some(alpha) => {
                let alpha = &alpha[first..first + rows as usize * w as usize];
                band.par_iter_mut().for_each(|layer| {
                    for (px, &a) in layer.chunks_exact_mut(4).zip(alpha) {
                        px[3] = (f32::from(px[3]) * a + 0.5) as u8;
                        if px[3] == 0 {
                            px[..3].fill(0);
                        }
                    }
                });
            }
            None => band.par_iter_mut().for_each(|layer| {
                for px in layer.chunks_exact_mut(4).filter(|px| px[3] == 0) {
                    px[..3].fill(0);
                }
            }),
        }
        let thumb = self.thumb;
        let input = &self.input;
        let band_ref = &band;
        let (written, error) = rayon::join(
            || {
                self.layers.par_iter_mut().zip(band_ref.par_iter()).try_for_each(|(layer, pixels)| {
                    if layer.png.is_none() {
                        let mut encoder = png::Encoder::new(layer.bytes.clone(), w, h);
                        encoder.set_color(png::ColorType::Rgba);
                        encoder.set_depth(png::BitDepth::Eight);
                        encoder.set_compression(png::Compression::Fast);
                        let writer = encoder.write_header().map_err(|e| e.to_string())?;
                        layer.png = Some(writer.into_stream_writer().map_err(|e| e.to_string())?);
                    }
                    if let Some(png) = layer.png.as_mut() {
                        png.write_all(pixels).map_err(|e| e.to_string())?;
                    }
                    layer.stats.add(pixels, w, r0);
                    for ty in 0..thumb.h {
                        let sy = thumb.source(ty, h);
                        if sy < r0 || sy >= r0 + rows {
                            continue;
                        }
                        for tx in 0..thumb.w {
                            let sx = thumb.source(tx, w);
                            let from = (((sy - r0) * w + sx) * 4) as usize;
                            let to = ((ty * thumb.w + tx) * 4) as usize;
                            layer.thumb[to..to + 4].copy_from_slice(&pixels[from..from + 4]);
                        }
                    }
                    Ok::<(), String>(())
                })
            },
            || {
                // The recomposite's squared error over this band, rows in parallel.
                (0..rows as usize)
                    .into_par_iter()
                    .map(|y| {
                        let mut se = 0f64;
                        let mut acc = vec![[0f32; 3]; w as usize];
                        for layer in band_ref {
                            let line = &layer[y * row_bytes..(y + 1) * row_bytes];
                            over(&mut acc, line);
                        }
                        for (x, px) in acc.iter().enumerate() {
                            let i = first + y * w as usize + x;
                            let a = input.alpha.as_ref().map_or(1.0, |al| al[i]);
                            for (c, &v) in px.iter().enumerate() {
                                let d = f64::from(v) - f64::from(input.rgb[c * n + i] * a);
                                se += d * d;
                            }
                        }
                        se
                    })
                    .sum::<f64>()
            },
        );
        written.map_err(EncodeError::Output)?;
        self.squared_error += error;
        self.row += rows;
        Ok(())
    }

    /// Finishes every PNG, drops the layers with no visible pixel, renders what the
    /// parameters ask for, and returns the files, the per-layer statistics, the contact
    /// sheet and the recomposite PSNR.
    pub fn finish(self) -> Result<Encoded, EncodeError> {
        let (w, h) = (self.input.width, self.input.height);
        if self.row != h {
            return Err(EncodeError::Layers(format!("the layers ended after {} of {h} rows", self.row)));
        }
        let mut pngs = Vec::new();
        let mut infos = Vec::new();
        let mut dropped = Vec::new();
        let mut thumbs = Vec::new();
        let pixels = f64::from(w) * f64::from(h);
        for (layer, sources) in self.layers.into_iter().zip(self.sources) {
            if let Some(png) = layer.png {
                png.finish().map_err(|e| EncodeError::Output(e.to_string()))?;
            }
            if layer.stats.sum_a <= 0.0 {
                dropped.extend(sources);
                continue;
            }
            let of = |i: &usize| self.labels.get(*i);
            let label = sources.iter().filter_map(of).find(|l| l.role == LayerRole::Background).or_else(|| sources.first().and_then(of));
            infos.push(layer.stats.info(infos.len(), sources, pixels, label));
            pngs.push(layer.bytes.take());
            thumbs.push(layer.thumb);
        }
        let mse = self.squared_error / (3.0 * pixels);
        let psnr_db = (mse > 0.0).then(|| 10.0 * (1.0 / mse).log10());
        let preview = contact_sheet(&self.input, self.thumb, &thumbs).map_err(EncodeError::Output)?;
        let canvas = BBox { x: 0, y: 0, width: w, height: h };
        let layers = infos
            .iter()
            .zip(pngs)
            .map(|(info, png)| DocLayer { name: info.name.clone(), png, placed: canvas, bbox: info.bbox.unwrap_or(canvas) })
            .collect();
        let built = documents::build(w, h, layers, self.input.alpha.is_some(), &self.params)?;
        debug_assert!(self.params.formats.contains(Format::Png));
        let mut files: Vec<(String, Vec<u8>)> = built.pngs.into_iter().enumerate().map(|(i, png)| (layer_name(i), png)).collect();
        files.extend(built.files);
        let layers = infos.len();
        let named = files[..layers].iter().map(|(name, bytes)| (name.as_str(), bytes.as_slice()));
        let mut outputs = digests(named.chain([(PREVIEW_FILE, preview.as_slice())]));
        outputs.extend(files[layers..].iter().map(|(name, bytes)| OutputFile::sized(name.as_str(), bytes)));
        Ok(Encoded { files, layers: infos, dropped, preview, psnr_db, outputs })
    }
}

/// The manifest's record of `files` (name and bytes), hashed in parallel.
pub fn digests<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<OutputFile> {
    let all: Vec<(&str, &[u8])> = files.into_iter().collect();
    all.par_iter().map(|(name, bytes)| OutputFile::of(*name, bytes)).collect()
}

impl Stats {
    /// Adds a band of straight RGBA whose first row is image row `y0`.
    fn add(&mut self, pixels: &[u8], width: u32, y0: u32) {
        for (i, px) in pixels.chunks_exact(4).enumerate() {
            if px[3] == 0 {
                continue;
            }
            let (x, y) = (i as u32 % width, y0 + i as u32 / width);
            (self.x0, self.y0, self.x1, self.y1) = (self.x0.min(x), self.y0.min(y), self.x1.max(x), self.y1.max(y));
            let a = f64::from(px[3]);
            self.sum_a += a;
            for c in 0..3 {
                self.sum_c[c] += a * f64::from(px[c]);
            }
        }
    }

    /// The manifest's record of written layer `index`, named by its index and colour.
    /// Colour layers are named by their colour, object models' layers by what they are, a
    /// design's layers by their role and colour and, for text, the words read in it.
    fn info(&self, index: usize, sources: Vec<usize>, pixels: f64, label: Option<&LayerLabel>) -> LayerInfo {
        let (role, text) = (label.map(|l| l.role), label.and_then(|l| l.text.clone()));
        let bbox = (self.x0 <= self.x1).then(|| BBox { x: self.x0, y: self.y0, width: self.x1 - self.x0 + 1, height: self.y1 - self.y0 + 1 });
        let color = self.sum_c.map(|s| if self.sum_a > 0.0 { (s / self.sum_a).round() as u8 } else { 0 });
        let name = match role {
            None => format!("{index:02} #{:02x}{:02x}{:02x}", color[0], color[1], color[2]),
            Some(LayerRole::Background) => format!("{index:02} background"),
            Some(LayerRole::Object) => format!("{index:02} object"),
            Some(role) => {
                let named = format!("{index:02} {} #{:02x}{:02x}{:02x}", role.as_str(), color[0], color[1], color[2]);
                match &text {
                    Some(words) => format!("{named} \u{201c}{}\u{201d}", shortened(words)),
                    None => named,
                }
            }
        };
        LayerInfo { file: Some(layer_name(index)), name, sources, color, bbox, coverage: self.sum_a / 255.0 / pixels.max(1.0), role, text }
    }
}

/// Words for a layer's name: its lines on one line, at most [`NAME_WORDS`] characters.
fn shortened(words: &str) -> String {
    let line = words.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(NAME_WORDS) {
        Some((cut, _)) => format!("{}\u{2026}", line[..cut].trim_end()),
        None => line,
    }
}

/// The most characters of a text layer's words its name holds.
const NAME_WORDS: usize = 40;

/// Composites one row of straight RGBA "over" `acc` (premultiplied RGB).
fn over(acc: &mut [[f32; 3]], line: &[u8]) {
    for (acc, px) in acc.iter_mut().zip(line.chunks_exact(4)) {
        let a = f32::from(px[3]) / 255.0;
        for c in 0..3 {
            acc[c] = f32::from(px[c]) / 255.0 * a + acc[c] * (1.0 - a);
        }
    }
}

/// Encodes 8-bit RGBA as PNG with fast DEFLATE: layers are mostly empty or flat, which it
/// compresses well at a fraction of the default level's time.
pub fn encode_png(width: u32, height: u32, rgba: &[u8]) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::with_capacity(rgba.len() / 4);
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    encoder.write_header()?.write_image_data(rgba)?;
    Ok(out)
}

/// Composites `layers` bottom to top with "over" and returns premultiplied RGB per pixel.
pub fn recomposite<'a>(layers: impl Iterator<Item = &'a [u8]> + Clone, pixels: usize) -> Vec<[f32; 3]> {
    let mut out = vec![[0f32; 3]; pixels];
    for layer in layers {
        for (acc, px) in out.iter_mut().zip(layer.chunks_exact(4)) {
            let a = f32::from(px[3]) / 255.0;
            for c in 0..3 {
                acc[c] = f32::from(px[c]) / 255.0 * a + acc[c] * (1.0 - a);
            }
        }
    }
    out
}

/// The contact sheet: the input, then each layer, on a checkerboard, in a grid.
fn contact_sheet(input: &Decoded, thumb: Thumb, layers: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    let (w, h) = (input.width, input.height);
    let n = w as usize * h as usize;
    let mut original = vec![0u8; (thumb.w * thumb.h * 4) as usize];
    for ty in 0..thumb.h {
        for tx in 0..thumb.w {
            let i = (thumb.source(ty, h) * w + thumb.source(tx, w)) as usize;
            let a = input.alpha.as_ref().map_or(1.0, |al| al[i]);
            let px = [input.rgb[i], input.rgb[n + i], input.rgb[2 * n + i], a].map(|v| (v * 255.0 + 0.5) as u8);
            let o = ((ty * thumb.w + tx) * 4) as usize;
            original[o..o + 4].copy_from_slice(&px);
        }
    }
    let mut tiles: Vec<&[u8]> = vec![original.as_slice()];
    tiles.extend(layers.iter().map(Vec::as_slice));
    let (tw, th) = (thumb.w, thumb.h);
    let cols = (tiles.len() as u32).min(4);
    let rows = (tiles.len() as u32).div_ceil(cols);
    let (sw, sh) = (cols * (tw + GUTTER) + GUTTER, rows * (th + GUTTER) + GUTTER);
    let mut sheet = vec![255u8; (sw * sh * 4) as usize];
    for (t, tile) in tiles.iter().enumerate() {
        let (ox, oy) = (GUTTER + (t as u32 % cols) * (tw + GUTTER), GUTTER + (t as u32 / cols) * (th + GUTTER));
        for ty in 0..th {
            for tx in 0..tw {
                let px = &tile[((ty * tw + tx) * 4) as usize..][..4];
                let check = if ((tx / 8) + (ty / 8)) % 2 == 0 { 204.0 } else { 153.0 };
                let a = f32::from(px[3]) / 255.0;
                let o = (((oy + ty) * sw + ox + tx) * 4) as usize;
                for c in 0..3 {
                    sheet[o + c] = (f32::from(px[c]) * a + check * (1.0 - a) + 0.5) as u8;
                }
            }
        }
    }
    encode_png(sw, sh, &sheet).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(w: u32, h: u32, rgb: [f32; 3], alpha: Option<Vec<f32>>) -> Arc<Decoded> {
        let n = (w * h) as usize;
        let mut planes = vec![0f32; 3 * n];
        for c in 0..3 {
            planes[c * n..(c + 1) * n].fill(rgb[c]);
        }
        Arc::new(Decoded { width: w, height: h, rgb: planes, alpha, format: "png".into(), color: "rgb8".into(), orientation: 1 })
    }

    /// A deterministic pseudo-random image and two layers with soft alpha.
    fn noisy(w: u32, h: u32) -> (Arc<Decoded>, Vec<Vec<u8>>) {
        let n = (w * h) as usize;
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        };
        let layers: Vec<Vec<u8>> = (0..2).map(|_| (0..4 * n).map(|_| next()).collect()).collect();
        let rgb = (0..3 * n).map(|i| (i % 251) as f32 / 250.0).collect();
        let alpha = Some((0..n).map(|i| if i % 7 == 0 { 0.0 } else { 1.0 }).collect());
        let image = Decoded { width: w, height: h, rgb, alpha, format: "png".into(), color: "rgba8".into(), orientation: 1 };
        (Arc::new(image), layers)
    }

    #[test]
    fn bands_encode_exactly_what_the_whole_image_encodes() {
        let (w, h) = (37, 29);
        let (image, layers) = noisy(w, h);
        let whole = encode_image(layers.clone(), &[vec![0], vec![1]], &image, &RenderParams::default()).unwrap();
        let mut streamed = StreamEncoder::new(image.clone(), vec![vec![0], vec![1]], &RenderParams::default());
        let row = (w * 4) as usize;
        for (r0, rows) in [(0, 1), (1, 10), (11, 17), (28, 1)] {
            streamed.push(layers.iter().map(|l| l[r0 * row..(r0 + rows) * row].to_vec()).collect()).unwrap();
        }
        let streamed = streamed.finish().unwrap();
        for (a, b) in whole.files.iter().zip(&streamed.files) {
            assert_eq!(a.0, b.0);
            let (da, db) = (image::load_from_memory(&a.1).unwrap(), image::load_from_memory(&b.1).unwrap());
            assert_eq!(da.to_rgba8().as_raw(), db.to_rgba8().as_raw(), "{}", a.0);
        }
        assert_eq!(serde_json::to_value(&whole.layers).unwrap(), serde_json::to_value(&streamed.layers).unwrap());
        let (pa, pb) = (whole.psnr_db.unwrap(), streamed.psnr_db.unwrap());
        assert!((pa - pb).abs() < 1e-9, "{pa} vs {pb}");
        assert_eq!(whole.preview, streamed.preview);
    }

    #[test]
    fn a_stream_that_ends_early_or_overflows_is_an_error_not_a_panic() {
        let (image, layers) = noisy(8, 4);
        let mut short = StreamEncoder::new(image.clone(), vec![vec![0], vec![1]], &RenderParams::default());
        short.push(layers.iter().map(|l| l[..32 * 2].to_vec()).collect()).unwrap();
        assert!(short.finish().unwrap_err().to_string().contains("after 2 of 4 rows"));
        let mut long = StreamEncoder::new(image.clone(), vec![vec![0], vec![1]], &RenderParams::default());
        long.push(layers.clone()).unwrap();
        assert!(long.push(layers.clone()).unwrap_err().to_string().contains("8 rows arrived"));
        let mut ragged = StreamEncoder::new(image, vec![vec![0], vec![1]], &RenderParams::default());
        assert!(ragged.push(vec![layers[0].clone(), layers[1][..32].to_vec()]).is_err());
        assert!(ragged.push(vec![layers[0].clone()]).is_err());
    }

    #[test]
    fn exact_layers_recomposite_without_error_and_empty_layers_are_dropped() {
        let img = input(2, 1, [1.0, 0.0, 0.0], None);
        let red = vec![255, 0, 0, 255, 255, 0, 0, 255];
        let empty = vec![0u8; 8];
        let enc = encode_image(vec![red, empty], &[vec![0], vec![1, 2]], &img, &RenderParams::default()).unwrap();
        assert_eq!(enc.files.len(), 1);
        assert_eq!(enc.dropped, vec![1, 2]);
        assert_eq!(enc.psnr_db, None, "identical recomposite has no finite PSNR");
        let info = &enc.layers[0];
        assert_eq!((info.color, info.coverage), ([255, 0, 0], 1.0));
        assert_eq!(info.bbox, Some(BBox { x: 0, y: 0, width: 2, height: 1 }));
        let decoded = image::load_from_memory(&enc.files[0].1).unwrap().to_rgba8();
        assert_eq!(decoded.as_raw(), &[255, 0, 0, 255, 255, 0, 0, 255]);
        assert!(image::load_from_memory(&enc.preview).is_ok());
    }

    #[test]
    fn a_text_layer_is_named_by_its_role_colour_and_words() {
        let img = input(2, 1, [1.0, 1.0, 1.0], None);
        let (white, red) = (vec![255u8, 255, 255, 255, 255, 255, 255, 255], vec![255u8, 0, 0, 255, 0, 0, 0, 0]);
        let long = "a line of words far longer than a layer name should hold whole";
        let labels = vec![
            LayerLabel::from(LayerRole::Background),
            LayerLabel { role: LayerRole::Text, text: Some("SPRING\nSALE".into()) },
            LayerLabel { role: LayerRole::Text, text: Some(long.into()) },
            LayerLabel { role: LayerRole::Shape, text: None },
        ];
        let mut enc = StreamEncoder::new(img, vec![vec![0], vec![1], vec![2], vec![3]], &RenderParams::default()).labels(labels);
        enc.push(vec![white, red.clone(), red.clone(), red]).unwrap();
        let layers = enc.finish().unwrap().layers;
        let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["00 background", "01 text #ff0000 \u{201c}SPRING SALE\u{201d}", "02 text #ff0000 \u{201c}a line of words far longer than a layer\u{2026}\u{201d}", "03 shape #ff0000"]);
        // The manifest keeps the words whole, lines and all.
        assert_eq!(layers[1].text.as_deref(), Some("SPRING\nSALE"));
        assert_eq!(layers[2].text.as_deref(), Some(long));
        assert_eq!((layers[0].text.as_ref(), layers[3].text.as_ref()), (None, None));
    }

    #[test]
    fn input_alpha_masks_every_layer() {
        let img = input(2, 1, [0.0, 0.0, 1.0], Some(vec![1.0, 0.0]));
        let blue = vec![0, 0, 255, 255, 0, 0, 255, 255];
        let enc = encode_image(vec![blue], &[vec![0]], &img, &RenderParams::default()).unwrap();
        let decoded = image::load_from_memory(&enc.files[0].1).unwrap().to_rgba8();
        assert_eq!(decoded.as_raw(), &[0, 0, 255, 255, 0, 0, 0, 0]);
        assert_eq!(enc.layers[0].bbox, Some(BBox { x: 0, y: 0, width: 1, height: 1 }));
    }
}

//! Encoding: quantised layers in; PNGs, per-layer statistics, the recomposite PSNR and the
//! contact sheet out. Layers are encoded in parallel on the rayon pool (all cores).
//!
//! Input alpha: the model decomposes the colour; each layer's alpha is then multiplied by the
//! input's alpha, so whatever was transparent in the input is transparent in every layer.
//! Where the input is opaque or fully transparent the stack recomposites exactly to the
//! input; at soft edges the stack is slightly more opaque than the input (normal blending
//! cannot split a partial coverage across layers exactly), and the PSNR shows it.

use rayon::prelude::*;

use crate::decode::Decoded;
use lamina_common::keys::layer_name;
use lamina_common::manifest::{BBox, LayerInfo};

/// Largest side of a tile in the contact sheet.
const TILE: u32 = 256;
const GUTTER: u32 = 8;

/// One image's encoded outputs.
pub struct Encoded {
    /// `(file name, PNG bytes)` of the written layers, bottom first.
    pub files: Vec<(String, Vec<u8>)>,
    pub layers: Vec<LayerInfo>,
    /// Model layers with no visible pixel, not written.
    pub dropped: Vec<usize>,
    pub preview: Vec<u8>,
    pub psnr_db: Option<f64>,
}

/// Applies the input alpha, drops invisible layers, encodes the rest and the preview, and
/// measures how well the written layers rebuild the input.
pub fn encode_image(mut layers: Vec<Vec<u8>>, sources: &[Vec<usize>], input: &Decoded) -> Result<Encoded, png::EncodingError> {
    let (w, h) = (input.width, input.height);
    if let Some(alpha) = &input.alpha {
        layers.par_iter_mut().for_each(|layer| {
            for (px, &a) in layer.chunks_exact_mut(4).zip(alpha) {
                px[3] = (f32::from(px[3]) * a + 0.5) as u8;
                if px[3] == 0 {
                    px[..3].fill(0);
                }
            }
        });
    }
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for (layer, src) in layers.into_iter().zip(sources) {
        if layer.chunks_exact(4).any(|px| px[3] > 0) {
            kept.push((layer, src.clone()));
        } else {
            dropped.extend(src.iter().copied());
        }
    }
    let pngs: Vec<Result<Vec<u8>, _>> = kept.par_iter().map(|(layer, _)| encode_png(w, h, layer)).collect();
    let (psnr_db, preview) = rayon::join(
        || recomposite_psnr(kept.iter().map(|(l, _)| l.as_slice()), input),
        || contact_sheet(kept.iter().map(|(l, _)| l.as_slice()), input),
    );
    let mut files = Vec::with_capacity(kept.len());
    let mut infos = Vec::with_capacity(kept.len());
    for (i, ((layer, src), png)) in kept.iter().zip(pngs).enumerate() {
        files.push((layer_name(i), png?));
        infos.push(layer_info(layer_name(i), src.clone(), layer, w));
    }
    Ok(Encoded { files, layers: infos, dropped, preview: preview?, psnr_db })
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

fn layer_info(file: String, sources: Vec<usize>, layer: &[u8], width: u32) -> LayerInfo {
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    let mut sum_a = 0f64;
    let mut sum_c = [0f64; 3];
    for (i, px) in layer.chunks_exact(4).enumerate() {
        if px[3] == 0 {
            continue;
        }
        let (x, y) = (i as u32 % width, i as u32 / width);
        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        let a = f64::from(px[3]);
        sum_a += a;
        for c in 0..3 {
            sum_c[c] += a * f64::from(px[c]);
        }
    }
    let pixels = (layer.len() / 4).max(1) as f64;
    let bbox = (x0 <= x1).then(|| BBox { x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1 });
    let color = sum_c.map(|s| if sum_a > 0.0 { (s / sum_a).round() as u8 } else { 0 });
    LayerInfo { file, sources, color, bbox, coverage: sum_a / 255.0 / pixels }
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

/// PSNR (dB) of the recomposited layers against the input, both premultiplied by the input
/// alpha; `None` when identical.
fn recomposite_psnr<'a>(layers: impl Iterator<Item = &'a [u8]> + Clone, input: &Decoded) -> Option<f64> {
    let n = input.width as usize * input.height as usize;
    let rebuilt = recomposite(layers, n);
    let mut se = 0f64;
    for (i, px) in rebuilt.iter().enumerate() {
        let a = input.alpha.as_ref().map_or(1.0, |al| al[i]);
        for (c, &v) in px.iter().enumerate() {
            let d = f64::from(v) - f64::from(input.rgb[c * n + i] * a);
            se += d * d;
        }
    }
    let mse = se / (3 * n) as f64;
    (mse > 0.0).then(|| 10.0 * (1.0 / mse).log10())
}

/// The contact sheet: the input, then each layer, on a checkerboard, in a grid.
fn contact_sheet<'a>(layers: impl Iterator<Item = &'a [u8]>, input: &Decoded) -> Result<Vec<u8>, png::EncodingError> {
    let (w, h) = (input.width, input.height);
    let n = (w * h) as usize;
    let original: Vec<u8> = (0..n)
        .flat_map(|i| {
            let a = input.alpha.as_ref().map_or(1.0, |al| al[i]);
            [input.rgb[i], input.rgb[n + i], input.rgb[2 * n + i], a].map(|v| (v * 255.0 + 0.5) as u8)
        })
        .collect();
    let mut tiles: Vec<&[u8]> = vec![original.as_slice()];
    tiles.extend(layers.map(|l| -> &[u8] { l }));
    let scale = (TILE as f64 / f64::from(w.max(h))).min(1.0);
    let (tw, th) = (((f64::from(w) * scale).round() as u32).max(1), ((f64::from(h) * scale).round() as u32).max(1));
    let cols = (tiles.len() as u32).min(4);
    let rows = (tiles.len() as u32).div_ceil(cols);
    let (sw, sh) = (cols * (tw + GUTTER) + GUTTER, rows * (th + GUTTER) + GUTTER);
    let mut sheet = vec![255u8; (sw * sh * 4) as usize];
    for (t, tile) in tiles.iter().enumerate() {
        let (ox, oy) = (GUTTER + (t as u32 % cols) * (tw + GUTTER), GUTTER + (t as u32 / cols) * (th + GUTTER));
        for ty in 0..th {
            for tx in 0..tw {
                // Nearest sample at the tile's pixel centre: sharp and cheap.
                let sx = (((f64::from(tx) + 0.5) / scale) as u32).min(w - 1);
                let sy = (((f64::from(ty) + 0.5) / scale) as u32).min(h - 1);
                let px = &tile[((sy * w + sx) * 4) as usize..][..4];
                let check = if ((tx / 8) + (ty / 8)) % 2 == 0 { 204.0 } else { 153.0 };
                let a = f32::from(px[3]) / 255.0;
                let o = (((oy + ty) * sw + ox + tx) * 4) as usize;
                for c in 0..3 {
                    sheet[o + c] = (f32::from(px[c]) * a + check * (1.0 - a) + 0.5) as u8;
                }
            }
        }
    }
    encode_png(sw, sh, &sheet)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(w: u32, h: u32, rgb: [f32; 3], alpha: Option<Vec<f32>>) -> Decoded {
        let n = (w * h) as usize;
        let mut planes = vec![0f32; 3 * n];
        for c in 0..3 {
            planes[c * n..(c + 1) * n].fill(rgb[c]);
        }
        Decoded { width: w, height: h, rgb: planes, alpha, format: "png".into(), color: "rgb8".into(), orientation: 1 }
    }

    #[test]
    fn exact_layers_recomposite_without_error_and_empty_layers_are_dropped() {
        let img = input(2, 1, [1.0, 0.0, 0.0], None);
        let red = vec![255, 0, 0, 255, 255, 0, 0, 255];
        let empty = vec![0u8; 8];
        let enc = encode_image(vec![red, empty], &[vec![0], vec![1, 2]], &img).unwrap();
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
    fn input_alpha_masks_every_layer() {
        let img = input(2, 1, [0.0, 0.0, 1.0], Some(vec![1.0, 0.0]));
        let blue = vec![0, 0, 255, 255, 0, 0, 255, 255];
        let enc = encode_image(vec![blue], &[vec![0]], &img).unwrap();
        let decoded = image::load_from_memory(&enc.files[0].1).unwrap().to_rgba8();
        assert_eq!(decoded.as_raw(), &[0, 0, 255, 255, 0, 0, 0, 0]);
        assert_eq!(enc.layers[0].bbox, Some(BBox { x: 0, y: 0, width: 1, height: 1 }));
    }
}

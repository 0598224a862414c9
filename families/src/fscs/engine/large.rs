//! FSCS on an image of any size in memory bounded by the budget, and the fast mode.
//!
//! **Reference mode, in tiles** (two passes, so the result is the untiled one):
//! 1. The padded image is cut into square tiles on a grid of multiples of 8 (so every tile
//!    sees the networks' stride-8 grid where the whole image would). Each tile runs both
//!    networks and the guided filter with [`MARGIN`] pixels of context on every side that
//!    has image, and only its core is kept. The cores' alphas and raw residues go to a
//!    spill file (half precision, outside the process's memory), while the whole image's
//!    residue sum and layer masses are added up.
//! 2. The residue predictor's output has its mean over the *whole* image taken off (as the
//!    untiled run does; a tile's own mean would shift each tile's colours), merges are
//!    planned from the whole image's masses, and the spilled cores become layers one row of
//!    tiles at a time, handed on as bands of full-width rows.
//!
//! **Fast mode**: the networks see the image reduced to at most [`FAST_PIXELS`] (area
//! averaging, by whatever ratio brings it there). The alphas come back to full resolution by the fast
//! guided filter (coefficients at low resolution, upsampled, applied to the full image's
//! luma) and the colours bilinearly; then every layer's colour is moved by the difference
//! between the full image and the layers' recomposition (alpha-add layers' alphas sum to
//! 1, so this makes the stack rebuild the full image up to clamping). Full-resolution work
//! goes band by band, so memory stays bounded at any size.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use tch::{Device, Kind, Tensor};

use super::{guided_coefficients, kmeans, luma, normalise, Fscs, BYTES_PER_PIXEL, GUIDED_RADIUS, K};
use crate::Decoded;
use crate::blend::{alpha_add_to_normal, merge_alpha_add, plan_layers};
use super::upsample;
use crate::resample::{bands, crop, reduce, reduced_size, Band};
use crate::{quantise, LayerSink, ModelError};
use lamina_common::params::{DecomposeParams, Quality};

/// Context around each tile's core, in pixels: more than the networks' effective reach (the
/// tiled-versus-whole test measures the difference), a multiple of 8.
pub(super) const MARGIN: i64 = 48;
const MULTIPLE: i64 = 8;
/// The smallest tile core, whatever the budget (a budget below it costs time, not memory).
const MIN_CORE: i64 = 32;
/// The guided upsampler's regulariser: larger than the reference filter's, so texture the
/// low-resolution alphas never saw is not amplified into them.
const FAST_EPS: f64 = 1e-4;
/// Working memory per pixel of a full-resolution band in fast mode (upsampled alphas and
/// colours, their corrections, normal-blend conversion, quantisation).
const BAND_BYTES_PER_PIXEL: u64 = 800;

/// The most pixels the networks see in fast mode under `budget`.
pub(super) fn fast_pixels(budget: u64) -> u64 {
    crate::fast_pixels(BYTES_PER_PIXEL, budget)
}

/// The side of a tile's core for `budget`: the largest multiple of 8 whose tile, margins
/// included, fits.
pub(super) fn core_side(budget: u64) -> i64 {
    let side = ((budget / BYTES_PER_PIXEL) as f64).sqrt() as i64 / MULTIPLE * MULTIPLE;
    (side - 2 * MARGIN).max(MIN_CORE)
}

fn round_up(v: i64) -> i64 {
    (v + MULTIPLE - 1) / MULTIPLE * MULTIPLE
}

/// The tiles along an axis `n` long (a multiple of 8) for cores of at most `core`: each tile's
/// core (`[start, end)`, together covering `0..n`) and the input window it runs in, the core
/// with `MARGIN` of context on every side that has image. As few windows as cover the axis,
/// all one length (a multiple of 8, at most `core + 2 * MARGIN`), so each forward pass reuses
/// the memory the previous one freed instead of fragmenting the heap with odd sizes. A window
/// at an edge of the image needs context on its inner side only, so edge cores are `MARGIN`
/// longer than middle ones: k windows of length W cover `k * W - 2 * (k - 1) * MARGIN`.
fn tiles(n: i64, core: i64) -> Vec<((i64, i64), (i64, i64))> {
    let most = core + 2 * MARGIN;
    if n <= most {
        return vec![((0, n), (0, n))];
    }
    let count = (n - 2 * MARGIN + core - 1) / core.max(1);
    let win = round_up((n + 2 * (count - 1) * MARGIN + count - 1) / count).min(most);
    let inner = win - 2 * MARGIN;
    (0..count)
        .map(|i| {
            let start = if i == 0 { 0 } else { win - MARGIN + (i - 1) * inner };
            let end = if i == count - 1 { n } else { win - MARGIN + i * inner };
            let from = (start - MARGIN).clamp(0, n - win);
            ((start, end), (from, from + win))
        })
        .collect()
}

/// Where the tiles' intermediate results wait between the passes: an unnamed temporary
/// file (in `LAMINA_SPILL_DIR`, else the system's temporary folder), gone when dropped.
struct Spill {
    file: File,
    /// Byte offset and shape of each tile, in the order written.
    tiles: Vec<(u64, Vec<i64>)>,
    end: u64,
}

impl Spill {
    fn new() -> Result<Spill, String> {
        let dir = std::env::var_os("LAMINA_SPILL_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        let file = tempfile::tempfile_in(&dir).map_err(|e| format!("cannot make a spill file in {}: {e}", dir.display()))?;
        Ok(Spill { file, tiles: Vec::new(), end: 0 })
    }

    fn write(&mut self, t: &Tensor) -> Result<(), String> {
        let half = t.to_kind(Kind::Half).to_device(Device::Cpu).contiguous();
        let numel = half.numel();
        let mut bytes = vec![0u8; numel * 2];
        half.copy_data_u8(&mut bytes, numel);
        self.file.write_all_at(&bytes, self.end).map_err(|e| format!("cannot write the spill file: {e}"))?;
        self.tiles.push((self.end, half.size()));
        self.end += bytes.len() as u64;
        Ok(())
    }

    fn read(&self, index: usize, device: Device) -> Result<Tensor, String> {
        let (offset, shape) = &self.tiles[index];
        let mut bytes = vec![0u8; shape.iter().product::<i64>() as usize * 2];
        self.file.read_exact_at(&mut bytes, *offset).map_err(|e| format!("cannot read the spill file: {e}"))?;
        Ok(Tensor::from_data_size(&bytes, shape, Kind::Half).to_device(device).to_kind(Kind::Float))
    }
}

impl Fscs {
    fn failed(&self, reason: String) -> ModelError {
        ModelError::Contract { model: self.desc.id.clone(), reason }
    }

    fn torch(&self, source: tch::TchError) -> ModelError {
        ModelError::Torch { model: self.desc.id.clone(), source }
    }

    /// The palette for a whole image: the given one, or k-means drawn from the host buffers.
    fn palette_of(&self, image: &Decoded, params: &DecomposeParams) -> Vec<[u8; 3]> {
        params.palette.clone().unwrap_or_else(|| kmeans::palette_of_planes(&image.rgb, image.alpha.as_deref(), K, self.device))
    }

    fn palette_tensor(&self, palette: &[[u8; 3]]) -> Tensor {
        let flat: Vec<f32> = palette.iter().flatten().map(|&v| f32::from(v) / 255.0).collect();
        Tensor::from_slice(&flat).view([1, K as i64, 3]).to_device(self.device)
    }

    /// Which model layers form each output layer, from each layer's alpha mass.
    fn groups(palette: &[[u8; 3]], masses: &[f64], pixels: f64, params: &DecomposeParams) -> Option<Vec<Vec<usize>>> {
        let colours: Vec<[f64; 3]> = palette.iter().map(|c| c.map(|v| f64::from(v) / 255.0)).collect();
        plan_layers(&colours, masses, pixels, params)
    }

    /// Reference mode over tiles; see the module's documentation.
    pub(super) fn tiled(&self, image: &Decoded, params: &DecomposeParams, budget: u64, sink: &mut dyn LayerSink) -> Result<(), ModelError> {
        let (h, w) = (i64::from(image.height), i64::from(image.width));
        let (ph, pw) = (round_up(h), round_up(w));
        let core = core_side(budget);
        let k = K as i64;
        let palette = self.palette_of(image, params);
        let palette_t = self.palette_tensor(&palette);
        let mut spill = Spill::new().map_err(|e| self.failed(e))?;
        let (rows, cols) = (tiles(ph, core), tiles(pw, core));
        let mut residue_sum = Tensor::zeros([3 * k], (Kind::Double, self.device));
        let mut masses = Tensor::zeros([k], (Kind::Double, self.device));
        let size = (h as usize, w as usize);
        tch::no_grad(|| -> Result<(), ModelError> {
            for &((r0, r1), (ir0, ir1)) in &rows {
                for &((c0, c1), (ic0, ic1)) in &cols {
                    let pixels = crop(&image.rgb, 3, size, (ir0 as usize, ir1 as usize), (ic0 as usize, ic1 as usize));
                    let x = Tensor::from_slice(&pixels).view([1, 3, ir1 - ir0, ic1 - ic0]).to_device(self.device);
                    drop(pixels);
                    let (_, alpha, residue) = self.networks(&x, &palette_t, Quality::Reference);
                    let (ch, cw) = (r1 - r0, c1 - c0);
                    let alpha = alpha.narrow(3, r0 - ir0, ch).narrow(4, c0 - ic0, cw);
                    let residue = residue.narrow(2, r0 - ir0, ch).narrow(3, c0 - ic0, cw);
                    residue_sum += residue.sum_dim_intlist([0, 2, 3].as_slice(), false, Kind::Double);
                    let (vh, vw) = (h.min(r1) - r0, w.min(c1) - c0);
                    let clean = normalise(&alpha.clamp(0.0, 1.0)).narrow(3, 0, vh).narrow(4, 0, vw);
                    masses += clean.sum_dim_intlist([0, 2, 3, 4].as_slice(), false, Kind::Double);
                    spill.write(&Tensor::cat(&[alpha.reshape([1, k, ch, cw]), residue], 1)).map_err(|e| self.failed(e))?;
                }
            }
            Ok(())
        })?;
        let mean = (residue_sum / (ph * pw) as f64).to_kind(Kind::Float).view([1, 3 * k, 1, 1]);
        let masses = Vec::<f64>::try_from(masses.to_device(Device::Cpu)).map_err(|e| self.torch(e))?;
        let groups = Self::groups(&palette, &masses, (h * w) as f64, params);
        let sources = groups.clone().unwrap_or_else(|| (0..K).map(|i| vec![i]).collect());
        sink.begin(sources, Some(palette.clone()))?;
        let planes = palette_t.view([1, k, 3, 1, 1]);
        let layer_count = sources_len(&groups);
        for (i, &((r0, r1), _)) in rows.iter().enumerate() {
            // The band is assembled in bytes: each tile is quantised on the device as soon as
            // it is made, so no float copy of a full-width band ever exists.
            let vh = (h.min(r1) - r0) as usize;
            let mut band = vec![vec![0u8; vh * w as usize * 4]; layer_count];
            for (j, &((c0, c1), _)) in cols.iter().enumerate() {
                let (ch, cw) = (r1 - r0, c1 - c0);
                let tile = spill.read(i * cols.len() + j, self.device).map_err(|e| self.failed(e))?;
                let layers = tch::no_grad(|| {
                    let alpha = tile.narrow(1, 0, k).view([1, k, 1, ch, cw]);
                    let residue = tile.narrow(1, k, 3 * k) - &mean;
                    let colour = (&planes + residue.view([1, k, 3, ch, cw])).clamp(0.0, 1.0);
                    let alpha = normalise(&alpha.clamp(0.0, 1.0));
                    let (colour, alpha) = match &groups {
                        Some(g) => merge_alpha_add(&colour, &alpha, std::slice::from_ref(g)),
                        None => (colour, alpha),
                    };
                    Tensor::cat(&[colour, alpha_add_to_normal(&alpha)], 2).get(0)
                });
                let vw = (w.min(c1) - c0) as usize;
                let piece = quantise(&layers.narrow(2, 0, vh as i64).narrow(3, 0, vw as i64)).map_err(|e| self.torch(e))?;
                for (whole, part) in band.iter_mut().zip(&piece) {
                    for (y, row) in part.chunks_exact(vw * 4).enumerate() {
                        let at = (y * w as usize + c0 as usize) * 4;
                        whole[at..at + vw * 4].copy_from_slice(row);
                    }
                }
            }
            sink.rows(band)?;
        }
        Ok(())
    }

    /// Fast mode; see the module's documentation.
    pub(super) fn fast(&self, image: &Decoded, params: &DecomposeParams, budget: u64, sink: &mut dyn LayerSink) -> Result<(), ModelError> {
        let (h, w) = (i64::from(image.height), i64::from(image.width));
        let (lh, lw) = reduced_size((h, w), fast_pixels(budget));
        let low = reduce(&image.rgb, 3, (h, w), (lh, lw), self.device);
        let low_alpha = image.alpha.as_ref().map(|a| reduce(a, 1, (h, w), (lh, lw), self.device));
        let palette = match &params.palette {
            Some(p) => p.clone(),
            None => kmeans::palette(&low.get(0), low_alpha.as_ref().map(|a| a.get(0).get(0).ge(0.5)).as_ref(), K),
        };
        let palette_t = self.palette_tensor(&palette);
        let (lph, lpw) = (round_up(lh), round_up(lw));
        let padded = low.replication_pad2d([0, lpw - lw, 0, lph - lh]);
        let (colour, alpha) = self.alpha_add_within(&padded, &palette_t, None, Quality::Fast);
        let (colour, alpha, masses) = tch::no_grad(|| {
            let colour = colour.narrow(3, 0, lh).narrow(4, 0, lw);
            let alpha = normalise(&alpha.narrow(3, 0, lh).narrow(4, 0, lw).clamp(0.0, 1.0));
            let masses = alpha.sum_dim_intlist([0, 2, 3, 4].as_slice(), false, Kind::Double).to_device(Device::Cpu);
            (colour, alpha, masses)
        });
        let masses = Vec::<f64>::try_from(masses).map_err(|e| self.torch(e))?;
        let groups = Self::groups(&palette, &masses, (lh * lw) as f64, params);
        let (colour, alpha) = match &groups {
            Some(g) => tch::no_grad(|| merge_alpha_add(&colour, &alpha, std::slice::from_ref(g))),
            None => (colour, alpha),
        };
        let n = colour.size()[1];
        let (a, b) = tch::no_grad(|| guided_coefficients(&luma(&low), &alpha.view([1, n, lh, lw]), GUIDED_RADIUS, FAST_EPS));
        let colour = colour.view([1, 3 * n, lh, lw]);
        let sources = groups.unwrap_or_else(|| (0..K).map(|i| vec![i]).collect());
        sink.begin(sources, Some(palette))?;
        // A quarter of the budget per band: the low-resolution tensors, the decoded input and
        // the bands queued for encoding share the rest.
        let band_rows = ((budget / 4 / BAND_BYTES_PER_PIXEL / w.max(1) as u64) as i64).clamp(8, 1024);
        if self.device == Device::Cpu {
            // On a CPU the full-resolution pass is one fused loop per pixel (`upsample.rs`).
            let host = |t: &Tensor| Vec::<f32>::try_from(t.contiguous().view(-1)).map_err(|e| self.torch(e));
            let (n, lh, lw) = (n as usize, lh as usize, lw as usize);
            let reduced = upsample::Reduced { n, lh, lw, a: host(&a)?, b: host(&b)?, colour: host(&colour)? };
            if n > K || [reduced.a.len(), reduced.b.len(), reduced.colour.len()] != [n * lh * lw, n * lh * lw, 3 * n * lh * lw] {
                return Err(self.failed(format!("fast mode's reduced grids do not match {n} layers of {lw}x{lh}")));
            }
            let (h, w, step) = (h as usize, w as usize, band_rows as usize);
            for y0 in (0..h).step_by(step) {
                sink.rows(reduced.rows(&image.rgb, (h, w), (y0, (y0 + step).min(h))))?;
            }
            return Ok(());
        }
        bands(&image.rgb, (h, w), (lh, lw), band_rows, self.device, |band| {
            sink.rows(quantise(&upsampled(&band, &a, &b, &colour, n, w)).map_err(|e| self.torch(e))?)
        })
    }
}

/// Fast mode's full-resolution pass over one band as tensor operations (on CUDA; on a CPU
/// `upsample.rs` does the same fused): the alphas from the guided filter's coefficients
/// `a`, `b` and the full image's luma, the colours sampled bilinearly and moved so the
/// stack rebuilds the full image. `[n,4,rows,w]` normal-blend layers in [0,1].
fn upsampled(band: &Band<'_>, a: &Tensor, b: &Tensor, colour: &Tensor, n: i64, w: i64) -> Tensor {
    let rows = band.y1 - band.y0;
    tch::no_grad(|| {
        let alpha = band.up(a) * luma(&band.full) + band.up(b);
        let alpha = normalise(&alpha.clamp(0.0, 1.0)).view([1, n, 1, rows, w]);
        let colour = band.up(colour).view([1, n, 3, rows, w]);
        let rebuilt = (&colour * &alpha).sum_dim_intlist(1, false, Kind::Float);
        let colour = (colour + (&band.full - rebuilt).unsqueeze(1)).clamp(0.0, 1.0);
        Tensor::cat(&[colour, alpha_add_to_normal(&alpha)], 2).get(0)
    })
}

/// How many output layers `groups` makes (all of the model's when nothing is merged).
fn sources_len(groups: &Option<Vec<Vec<usize>>>) -> usize {
    groups.as_ref().map_or(K, Vec::len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resample::{axis, bilinear};

    #[test]
    fn tiles_cover_the_image_and_crops_repeat_the_edges() {
        // An axis that fits one window is taken whole.
        assert_eq!(tiles(40, 96), vec![((0, 40), (0, 40))]);
        // 2048 with cores of at most 992 (windows of 1088): two windows of 1072, not three.
        assert_eq!(tiles(2048, 992), vec![((0, 1024), (0, 1072)), ((1024, 2048), (976, 2048))]);
        // 4000: four windows, where cores of one length would need five.
        assert_eq!(tiles(4000, 992).len(), 4);
        for n in [200, 208, 1000, 1416, 2048, 4000, 8088] {
            for core in [32, 96, 200, 992] {
                let t = tiles(n, core);
                let win = t[0].1 .1 - t[0].1 .0;
                assert!(win <= core + 2 * MARGIN && win % MULTIPLE == 0, "{n} {core}: window {win}");
                assert_eq!((t[0].0 .0, t[t.len() - 1].0 .1), (0, n), "{n} {core}: cores cover the axis");
                for (i, &((s, e), (from, to))) in t.iter().enumerate() {
                    assert_eq!(to - from, win, "{n} {core}: one window length");
                    assert!(s < e && s % MULTIPLE == 0, "{n} {core}: core {s}..{e}");
                    assert!(from >= 0 && to <= n, "{n} {core}: window {from}..{to}");
                    assert!(s - from >= MARGIN.min(s) && to - e >= MARGIN.min(n - e), "{n} {core}: core {s}..{e} in window {from}..{to}");
                    if i > 0 {
                        assert_eq!(s, t[i - 1].0 .1, "{n} {core}: cores meet");
                    }
                }
            }
        }
        assert!(core_side(1) >= MIN_CORE);
        assert_eq!(core_side(2 << 30), 992, "windows of 1088 at the default CPU budget");
        // 2 channels of 2x3.
        let planes = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0];
        let got = crop(&planes, 2, (2, 3), (1, 3), (2, 5));
        assert_eq!(got, vec![6.0, 6.0, 6.0, 6.0, 6.0, 6.0, 12.0, 12.0, 12.0, 12.0, 12.0, 12.0]);
        assert_eq!(crop(&planes, 1, (2, 3), (0, 1), (0, 3)), vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn area_means_and_bilinear_sampling_invert_on_smooth_data() {
        // A linear ramp reduced (by a whole ratio and by an odd one) and sampled back is the
        // ramp again inside the border: area means sit where bilinear sampling looks for them.
        let (h, w) = (8i64, 12i64);
        let ramp: Vec<f32> = (0..h * w).map(|i| (i % w) as f32).collect();
        for (lh, lw) in [(4, 6), (5, 7)] {
            let low = reduce(&ramp, 1, (h, w), (lh, lw), Device::Cpu);
            assert_eq!(low.size(), vec![1, 1, lh, lw]);
            let back = bilinear(&low, &axis(0, h, lh, h, Device::Cpu), &axis(0, w, lw, w, Device::Cpu));
            let back = Vec::<f32>::try_from(back.reshape([-1])).unwrap();
            for y in 0..h {
                for x in 2..w - 2 {
                    // Exact for a whole ratio; within a tenth of a step for another (the
                    // mean of a staircase over a window that cuts its steps).
                    let tolerance = if lw == 6 { 1e-4 } else { 0.1 };
                    assert!((back[(y * w + x) as usize] - x as f32).abs() < tolerance, "{lh}x{lw} ({y},{x}): {}", back[(y * w + x) as usize]);
                }
            }
        }
        // Whole ratios are block means; other ratios weigh the pixels a reduced pixel
        // covers by how much of them it covers: 3 pixels into 2 take 1.5 each.
        let even = reduce(&[1.0, 3.0, 5.0, 7.0, 1.0, 3.0, 5.0, 7.0], 1, (2, 4), (1, 2), Device::Cpu);
        assert_eq!(Vec::<f32>::try_from(even.reshape([-1])).unwrap(), vec![2.0, 6.0]);
        let odd = Vec::<f32>::try_from(reduce(&[1.0, 4.0, 7.0], 1, (1, 3), (1, 2), Device::Cpu).reshape([-1])).unwrap();
        assert!((odd[0] - 2.0).abs() < 1e-6 && (odd[1] - 6.0).abs() < 1e-6, "{odd:?}");
        // Sizes: an image over the target keeps its aspect and nearly all its pixels.
        assert_eq!(reduced_size((900, 1200), 1 << 20), (886, 1182));
        assert_eq!(reduced_size((2048, 2048), 1 << 20), (1024, 1024));
        assert_eq!(reduced_size((600, 800), 1 << 20), (600, 800));
        assert_eq!(reduced_size((1, 100_000), 1000), (1, 1000));
    }

    #[test]
    fn the_fused_cpu_pass_makes_the_tensor_passs_bytes() {
        // Reduced grids of a 3x reduction with guided-filter-like coefficients, and a full
        // image; both forms of fast mode's full-resolution pass, compared byte for byte.
        let (h, w, n) = (37i64, 50i64, 5i64);
        let (lh, lw) = (13i64, 17i64);
        tch::manual_seed(7);
        let opts = (Kind::Float, Device::Cpu);
        let a = (Tensor::rand([1, n, lh, lw], opts) - 0.5) * 2.0;
        let b = Tensor::rand([1, n, lh, lw], opts) * 0.6;
        let colour = Tensor::rand([1, 3 * n, lh, lw], opts);
        let rgb = Vec::<f32>::try_from(Tensor::rand([3 * h * w], opts)).unwrap();
        let mut tensor = vec![Vec::new(); n as usize];
        bands(&rgb, (h, w), (lh, lw), 16, Device::Cpu, |band| {
            for (all, part) in tensor.iter_mut().zip(quantise(&upsampled(&band, &a, &b, &colour, n, w))?) {
                all.extend(part);
            }
            Ok::<_, tch::TchError>(())
        })
        .unwrap();
        let host = |t: &Tensor| Vec::<f32>::try_from(t.contiguous().view(-1)).unwrap();
        let reduced = upsample::Reduced { n: n as usize, lh: lh as usize, lw: lw as usize, a: host(&a), b: host(&b), colour: host(&colour) };
        let mut fused = vec![Vec::new(); n as usize];
        for y0 in (0..h as usize).step_by(10) {
            for (all, part) in fused.iter_mut().zip(reduced.rows(&rgb, (h as usize, w as usize), (y0, (y0 + 10).min(h as usize)))) {
                all.extend(part);
            }
        }
        let (mut most, mut off, mut total) = (0u8, 0usize, 0usize);
        for (t, u) in tensor.iter().zip(&fused) {
            assert_eq!(t.len(), (h * w * 4) as usize);
            assert_eq!(t.len(), u.len());
            for (&x, &y) in t.iter().zip(u) {
                most = most.max(x.abs_diff(y));
                off += usize::from(x != y);
                total += 1;
            }
        }
        // Float rounding in a different order moves a byte across a rounding edge now and
        // then; never by more than one step.
        assert!(most <= 1, "largest difference {most}");
        assert!(off * 100 < total, "{off} of {total} bytes differ");
    }

    #[test]
    fn the_spill_file_gives_back_what_it_took_in_half_precision() {
        let mut spill = Spill::new().unwrap();
        let a = Tensor::rand([1, 4, 3, 5], (Kind::Float, Device::Cpu));
        let b = Tensor::rand([1, 2, 7, 2], (Kind::Float, Device::Cpu));
        spill.write(&a).unwrap();
        spill.write(&b).unwrap();
        let (ra, rb) = (spill.read(0, Device::Cpu).unwrap(), spill.read(1, Device::Cpu).unwrap());
        assert_eq!(rb.size(), vec![1, 2, 7, 2]);
        assert!(f64::try_from((ra - a).abs().max()).unwrap() < 1e-3);
        assert!(f64::try_from((rb - b).abs().max()).unwrap() < 1e-3);
    }
}

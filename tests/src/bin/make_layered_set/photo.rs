//! Photographic backgrounds: a crop of a bundled photo, shrunk by area averaging in integers.
//!
//! `image`'s resize filters are not used: their arithmetic (floating point, SIMD, kernel
//! choices) may change between versions, and the set must not. Area averaging in integers is
//! exact: every output pixel is the mean of the source area it covers, rounded half up.

use std::path::Path;

use image::RgbImage;

/// The crop `[x, y, width, height]` of the photo at `path`, resized to `w` x `h`.
pub fn background(path: &Path, crop: [u32; 4], w: u32, h: u32) -> Result<RgbImage, String> {
    let photo = image::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?.to_rgb8();
    let [cx, cy, cw, ch] = crop;
    if cw == 0 || ch == 0 || cx + cw > photo.width() || cy + ch > photo.height() {
        return Err(format!(
            "crop {crop:?} does not fit {} ({} x {})",
            path.display(),
            photo.width(),
            photo.height()
        ));
    }
    Ok(area_resize(&photo, crop, w, h))
}

/// For each output index `0..out`, the source indices `0..src` it overlaps and by how much.
///
/// On a grid where each source pixel is `out` units wide and each output pixel `src` units,
/// output pixel `o` covers `[o src, (o + 1) src)`; its weights (the overlaps with each source
/// pixel) are integers that sum to `src`.
fn weights(src: u32, out: u32) -> Vec<Vec<(u32, u64)>> {
    (0..out)
        .map(|o| {
            let (lo, hi) = (u64::from(o) * u64::from(src), u64::from(o + 1) * u64::from(src));
            let first = (lo / u64::from(out)) as u32;
            let last = ((hi - 1) / u64::from(out)) as u32;
            (first..=last)
                .map(|i| {
                    let (a, b) = (u64::from(i) * u64::from(out), u64::from(i + 1) * u64::from(out));
                    (i, b.min(hi) - a.max(lo))
                })
                .collect()
        })
        .collect()
}

/// Area-averages the `crop` of `src` to `w` x `h`: horizontal weighted sums first (kept exact,
/// undivided), then vertical ones, then a single rounded division by the area.
fn area_resize(src: &RgbImage, crop: [u32; 4], w: u32, h: u32) -> RgbImage {
    let [cx, cy, cw, ch] = crop;
    let (wx, wy) = (weights(cw, w), weights(ch, h));
    // Rows of the crop summed horizontally: `ch` rows of `w` pixels, each `cw` times too big.
    let mut rows = vec![[0u64; 3]; (ch * w) as usize];
    for y in 0..ch {
        for (x, taps) in wx.iter().enumerate() {
            let sum = &mut rows[(y * w) as usize + x];
            for &(i, weight) in taps {
                let p = src.get_pixel(cx + i, cy + y);
                for c in 0..3 {
                    sum[c] += weight * u64::from(p[c]);
                }
            }
        }
    }
    let area = u64::from(cw) * u64::from(ch);
    RgbImage::from_fn(w, h, |x, y| {
        let mut sum = [0u64; 3];
        for &(j, weight) in &wy[y as usize] {
            let row = rows[(j * w + x) as usize];
            for c in 0..3 {
                sum[c] += weight * row[c];
            }
        }
        image::Rgb(sum.map(|s| ((2 * s + area) / (2 * area)) as u8))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Weights cover each output pixel exactly: they sum to the source length, so a uniform
    /// photo stays uniform, and halving a 2-pixel pattern gives the rounded mean.
    #[test]
    fn area_weights_sum_to_source_width() {
        for (src, out) in [(600, 384), (1411, 352), (512, 512), (427, 256)] {
            for taps in weights(src, out) {
                assert_eq!(taps.iter().map(|t| t.1).sum::<u64>(), u64::from(src));
            }
        }
        let src = RgbImage::from_fn(2, 1, |x, _| image::Rgb([if x == 0 { 10 } else { 21 }; 3]));
        assert_eq!(area_resize(&src, [0, 0, 2, 1], 1, 1).get_pixel(0, 0).0, [16; 3]);
    }
}

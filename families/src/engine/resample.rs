//! Resampling between an image and a reduced copy of it, a band of rows at a time: area
//! averaging down (by any ratio), bilinear back up (pixel centres aligned). Large images take
//! these paths so that no full-resolution intermediate is ever whole in memory.

use tch::{Device, Tensor};

/// Rows `r0..r1` and columns `c0..c1` of `channels` planes of `h x w` floats, in the padded
/// image's coordinates: rows and columns past the image repeat its last ones, as the
/// untiled run's replication padding does.
pub(crate) fn crop(planes: &[f32], channels: usize, (h, w): (usize, usize), (r0, r1): (usize, usize), (c0, c1): (usize, usize)) -> Vec<f32> {
    let mut out = Vec::with_capacity(channels * (r1 - r0) * (c1 - c0));
    for c in 0..channels {
        let plane = &planes[c * h * w..(c + 1) * h * w];
        for r in r0..r1 {
            let row = &plane[r.min(h - 1) * w..][..w];
            out.extend_from_slice(&row[c0.min(w)..c1.min(w)]);
            out.extend(std::iter::repeat_n(row[w - 1], c1.saturating_sub(c0.max(w))));
        }
    }
    out
}

/// The size of the reduced copy of an `h x w` image that holds at most `target` pixels: the
/// image's own size when it fits, else the largest size of the same aspect under `target`
/// (any ratio, not only whole ones: an image just over the target keeps nearly all its
/// pixels, where halving each side would drop three quarters of them).
pub(crate) fn reduced_size((h, w): (i64, i64), target: u64) -> (i64, i64) {
    let pixels = (h.max(1) * w.max(1)) as f64;
    if pixels <= target as f64 {
        return (h, w);
    }
    let s = (pixels / target.max(1) as f64).sqrt();
    let lh = ((h as f64 / s).floor() as i64).clamp(1, h);
    // A side that cannot shrink below one pixel leaves the other the rest of the target.
    let lw = ((w as f64 / s).floor() as i64).min(target as i64 / lh).clamp(1, w);
    (lh, lw)
}

/// Area weights along an axis of `full` pixels reduced to `n`: for each output pixel, the
/// first source pixel it covers and each covered pixel's share of it (they sum to 1). Output
/// pixel `j` covers `[j full / n, (j + 1) full / n)` of the source; for a whole ratio these
/// are block means.
fn area_taps(full: usize, n: usize) -> Vec<(usize, Vec<f32>)> {
    let ratio = full as f64 / n as f64;
    (0..n)
        .map(|j| {
            let (lo, hi) = (j as f64 * ratio, ((j + 1) as f64 * ratio).min(full as f64));
            let first = lo.floor() as usize;
            let last = (hi.ceil() as usize).clamp(first + 1, full);
            let weights = (first..last).map(|i| ((hi.min(i as f64 + 1.0) - lo.max(i as f64)) / (hi - lo)) as f32).collect();
            (first, weights)
        })
        .collect()
}

/// `channels` planes of `h x w` reduced to `lh x lw` by area averaging (every reduced pixel
/// the mean of the source area it covers), reduced rows in parallel, with no full-size
/// intermediate: `[1, channels, lh, lw]` on `device`.
pub(crate) fn reduce(planes: &[f32], channels: usize, (h, w): (i64, i64), (lh, lw): (i64, i64), device: Device) -> Tensor {
    use rayon::prelude::*;
    let (h, w, lh, lw) = (h as usize, w as usize, lh.max(1) as usize, lw.max(1) as usize);
    let (rows, cols) = (area_taps(h, lh), area_taps(w, lw));
    let mut out = vec![0f32; channels * lh * lw];
    out.par_chunks_mut(lw).enumerate().for_each(|(index, line)| {
        let (c, j) = (index / lh, index % lh);
        let plane = &planes[c * h * w..(c + 1) * h * w];
        let (first, weights) = &rows[j];
        for (i, &wy) in weights.iter().enumerate() {
            let source = &plane[(first + i) * w..(first + i + 1) * w];
            for (o, (x0, wx)) in line.iter_mut().zip(&cols) {
                let sum: f32 = wx.iter().zip(&source[*x0..]).map(|(a, b)| a * b).sum();
                *o += wy * sum;
            }
        }
    });
    Tensor::from_slice(&out).view([1, channels as i64, lh as i64, lw as i64]).to_device(device)
}

/// Where output pixel `o` of an axis `full` long samples a reduced copy `n` long: the two
/// neighbours and the weight of the second (pixel centres aligned, as `align_corners =
/// false`, and as [`reduce`] places its pixels).
pub(crate) fn sample_at(o: usize, n: usize, full: usize) -> (usize, usize, f32) {
    let s = ((o as f64 + 0.5) * n as f64 / full as f64 - 0.5).clamp(0.0, (n - 1) as f64);
    let i = s.floor() as usize;
    (i, (i + 1).min(n - 1), (s - i as f64) as f32)
}

/// Bilinear sampling positions for output positions `o0..o1` of an axis `full` long, from a
/// reduced copy `n` long (see [`sample_at`]).
pub(crate) fn axis(o0: i64, o1: i64, n: i64, full: i64, device: Device) -> (Tensor, Tensor, Tensor) {
    let mut lo = Vec::with_capacity((o1 - o0) as usize);
    let mut hi = Vec::with_capacity(lo.capacity());
    let mut t = Vec::with_capacity(lo.capacity());
    for o in o0..o1 {
        let (i, j, s) = sample_at(o as usize, n as usize, full as usize);
        lo.push(i as i64);
        hi.push(j as i64);
        t.push(s);
    }
    let on = |v: Tensor| v.to_device(device);
    (on(Tensor::from_slice(&lo)), on(Tensor::from_slice(&hi)), on(Tensor::from_slice(&t)))
}

/// Samples `x` (`[1,C,h,w]`) at the positions `rows` x `cols`.
pub(crate) fn bilinear(x: &Tensor, rows: &(Tensor, Tensor, Tensor), cols: &(Tensor, Tensor, Tensor)) -> Tensor {
    let top = x.index_select(2, &rows.0);
    let y = &top + (x.index_select(2, &rows.1) - &top) * rows.2.view([1, 1, -1, 1]);
    let left = y.index_select(3, &cols.0);
    &left + (y.index_select(3, &cols.1) - &left) * cols.2.view([1, 1, 1, -1])
}


/// One band of rows of a full-size image, with the sampling positions that bring a reduced
/// copy of it (see [`bands`]) to the same rows.
pub(crate) struct Band<'a> {
    /// The band's first row and one past its last.
    pub y0: i64,
    pub y1: i64,
    /// `[1,3,rows,w]`: the image's own pixels in the band, on the device.
    pub full: Tensor,
    along: (Tensor, Tensor, Tensor),
    cols: &'a (Tensor, Tensor, Tensor),
}

impl Band<'_> {
    /// `x` (`[1,C,lh,lw]`, the reduced copy's grid) sampled bilinearly at the band's pixels.
    pub fn up(&self, x: &Tensor) -> Tensor {
        bilinear(x, &self.along, self.cols)
    }
}

/// Walks planar RGB `rgb` of `h x w` in bands of `band_rows` rows, for a reduced copy of
/// `lh x lw` (see [`reduce`]), calling `each` band after band.
pub(crate) fn bands<E>(
    rgb: &[f32],
    (h, w): (i64, i64),
    (lh, lw): (i64, i64),
    band_rows: i64,
    device: Device,
    mut each: impl FnMut(Band<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let cols = axis(0, w, lw, w, device);
    for y0 in (0..h).step_by(band_rows.max(1) as usize) {
        let y1 = (y0 + band_rows).min(h);
        let pixels = crop(rgb, 3, (h as usize, w as usize), (y0 as usize, y1 as usize), (0, w as usize));
        let full = Tensor::from_slice(&pixels).view([1, 3, y1 - y0, w]).to_device(device);
        drop(pixels);
        each(Band { y0, y1, full, along: axis(y0, y1, lh, h, device), cols: &cols })?;
    }
    Ok(())
}

//! Resampling between an image and a reduced copy of it, a band of rows at a time: block
//! means down, bilinear back up (pixel centres aligned). Large images take these paths so
//! that no full-resolution intermediate is ever whole in memory.

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

/// Block means of `channels` planes of `h x w` over `f x f` blocks (partial blocks at the
/// right and bottom average the pixels they have), computed a band of rows at a time:
/// `[1, channels, ceil(h/f), ceil(w/f)]` on `device`.
pub(crate) fn reduce(planes: &[f32], channels: usize, (h, w): (i64, i64), f: i64, device: Device) -> Tensor {
    let band = f * (4096 / f).max(1);
    let pieces: Vec<Tensor> = (0..h)
        .step_by(band as usize)
        .map(|y0| {
            let y1 = (y0 + band).min(h);
            let pixels = crop(planes, channels, (h as usize, w as usize), (y0 as usize, y1 as usize), (0, w as usize));
            let t = Tensor::from_slice(&pixels).view([1, channels as i64, y1 - y0, w]);
            t.avg_pool2d([f, f], [f, f], [0, 0], true, false, None::<i64>)
        })
        .collect();
    Tensor::cat(&pieces, 2).to_device(device)
}

/// Bilinear sampling positions along one axis: for output positions `o0..o1` of an axis
/// reduced `f` times to `n` samples, the two neighbours and the weight of the second
/// (pixel centres aligned, as `align_corners = false`).
pub(crate) fn axis(o0: i64, o1: i64, n: i64, f: i64, device: Device) -> (Tensor, Tensor, Tensor) {
    let mut lo = Vec::with_capacity((o1 - o0) as usize);
    let mut hi = Vec::with_capacity(lo.capacity());
    let mut t = Vec::with_capacity(lo.capacity());
    for o in o0..o1 {
        let s = ((o as f64 + 0.5) / f as f64 - 0.5).clamp(0.0, (n - 1) as f64);
        let i = s.floor() as i64;
        lo.push(i);
        hi.push((i + 1).min(n - 1));
        t.push((s - i as f64) as f32);
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
/// `lh x lw` made with blocks of `f` (see [`reduce`]), calling `each` band after band.
pub(crate) fn bands<E>(
    rgb: &[f32],
    (h, w): (i64, i64),
    (lh, lw): (i64, i64),
    f: i64,
    band_rows: i64,
    device: Device,
    mut each: impl FnMut(Band<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let cols = axis(0, w, lw, f, device);
    for y0 in (0..h).step_by(band_rows.max(1) as usize) {
        let y1 = (y0 + band_rows).min(h);
        let pixels = crop(rgb, 3, (h as usize, w as usize), (y0 as usize, y1 as usize), (0, w as usize));
        let full = Tensor::from_slice(&pixels).view([1, 3, y1 - y0, w]).to_device(device);
        drop(pixels);
        each(Band { y0, y1, full, along: axis(y0, y1, lh, f, device), cols: &cols })?;
    }
    Ok(())
}

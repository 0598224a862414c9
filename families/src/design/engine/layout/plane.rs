//! Flat colours and linear gradients: a plane per channel, fitted by least squares.

use super::*;

/// A colour that is flat or a linear gradient: `c + gx * x + gy * y` per channel.
#[derive(Debug, Clone, Copy)]
pub struct Plane {
    c: [f64; 3],
    gx: [f64; 3],
    gy: [f64; 3],
}

impl Plane {
    pub fn at(&self, x: usize, y: usize) -> [f32; 3] {
        let (x, y) = (x as f64, y as f64);
        [0, 1, 2].map(|ch| (self.c[ch] + self.gx[ch] * x + self.gy[ch] * y).clamp(0.0, 1.0) as f32)
    }
}

/// The least-squares plane of the colours of `pixels`.
pub(super) fn fit_plane(image: &Image<'_>, pixels: impl Iterator<Item = usize>) -> Plane {
    let w = image.width;
    // Normal equations over (1, x, y), centred for conditioning.
    let (mut s, mut sx, mut sy, mut sxx, mut syy, mut sxy) = (0f64, 0f64, 0f64, 0f64, 0f64, 0f64);
    let mut sv = [0f64; 3];
    let mut sxv = [0f64; 3];
    let mut syv = [0f64; 3];
    for i in pixels {
        let (x, y) = ((i % w) as f64, (i / w) as f64);
        let p = image.px(i);
        s += 1.0;
        sx += x;
        sy += y;
        sxx += x * x;
        syy += y * y;
        sxy += x * y;
        for c in 0..3 {
            let v = f64::from(p[c]);
            sv[c] += v;
            sxv[c] += x * v;
            syv[c] += y * v;
        }
    }
    if s == 0.0 {
        return Plane { c: [0.0; 3], gx: [0.0; 3], gy: [0.0; 3] };
    }
    let (mx, my) = (sx / s, sy / s);
    let (cxx, cyy, cxy) = (sxx / s - mx * mx, syy / s - my * my, sxy / s - mx * my);
    let det = cxx * cyy - cxy * cxy;
    let mut plane = Plane { c: [0.0; 3], gx: [0.0; 3], gy: [0.0; 3] };
    for c in 0..3 {
        let mv = sv[c] / s;
        let (cxv, cyv) = (sxv[c] / s - mx * mv, syv[c] / s - my * mv);
        let (gx, gy) = if det.abs() > 1e-9 {
            ((cxv * cyy - cyv * cxy) / det, (cyv * cxx - cxv * cxy) / det)
        } else if cxx > 1e-9 {
            (cxv / cxx, 0.0)
        } else if cyy > 1e-9 {
            (0.0, cyv / cyy)
        } else {
            (0.0, 0.0)
        };
        plane.gx[c] = gx;
        plane.gy[c] = gy;
        plane.c[c] = mv - gx * mx - gy * my;
    }
    plane
}

pub(super) fn distance(a: [f32; 3], b: [f32; 3]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

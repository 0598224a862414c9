//! Flat colours and smooth gradients: per channel, a plane (`c + gx * x + gy * y`: flat or a
//! linear gradient) or, for a background, a quadratic surface (which also follows a swell) or
//! a radial gradient (`c + k * r`, r the distance from its centre: linear in that distance, as
//! an editor draws one), fitted by least squares.

use super::*;

/// The terms fitted: 1, u, v (a plane), u², uv, v² (quadratic) and r, the distance from the
/// centre (radial; a radial gradient is centred on its centre), over centred, scaled
/// coordinates (u, v) for conditioning.
const TERMS: usize = 7;
/// The radial term's index.
const RADIAL: usize = 6;

/// A colour that varies smoothly over the image.
#[derive(Debug, Clone, Copy)]
pub struct Plane {
    /// Centre and scale of the coordinates.
    mx: f64,
    my: f64,
    scale: f64,
    /// Per channel, the coefficients of the terms (unused ones zero).
    coef: [[f64; TERMS]; 3],
}

fn basis(u: f64, v: f64) -> [f64; TERMS] {
    [1.0, u, v, u * u, u * v, v * v, u.hypot(v)]
}

impl Plane {
    /// One colour everywhere.
    pub fn flat(colour: [f32; 3]) -> Plane {
        let mut coef = [[0.0; TERMS]; 3];
        for ch in 0..3 {
            coef[ch][0] = f64::from(colour[ch]);
        }
        Plane { mx: 0.0, my: 0.0, scale: 1.0, coef }
    }

    pub fn at(&self, x: usize, y: usize) -> [f32; 3] {
        let (u, v) = ((x as f64 - self.mx) / self.scale, (y as f64 - self.my) / self.scale);
        // The distance from the centre only where a radial term is used (it is the dearest).
        let b = if self.coef.iter().any(|c| c[RADIAL] != 0.0) { basis(u, v) } else { [1.0, u, v, u * u, u * v, v * v, 0.0] };
        [0, 1, 2].map(|ch| (0..TERMS).map(|t| self.coef[ch][t] * b[t]).sum::<f64>().clamp(0.0, 1.0) as f32)
    }
}

/// The least-squares plane of the colours of `pixels`.
pub(super) fn fit_plane(image: &Image<'_>, pixels: impl Iterator<Item = usize>) -> Plane {
    fit(image, pixels, 3)
}

/// The plane of `pixels`, fitted again twice without those far off it (over three times the
/// median distance, and over three 8-bit steps): what crosses a ring around a word (a photo,
/// a shape), a stroke's edge or another word among a word's pixels.
pub(super) fn fit_plane_trimmed(image: &Image<'_>, pixels: &[usize]) -> Plane {
    let w = image.width;
    let mut plane = fit_plane(image, pixels.iter().copied());
    if pixels.is_empty() {
        return plane;
    }
    for _ in 0..2 {
        let off: Vec<f32> = pixels.iter().map(|&i| distance(image.px(i), plane.at(i % w, i / w))).collect();
        let mut sorted = off.clone();
        sorted.sort_by(f32::total_cmp);
        let keep = (3.0 * sorted[sorted.len() / 2]).max(3.0 / 255.0);
        plane = fit_plane(image, pixels.iter().zip(&off).filter(|(_, d)| **d <= keep).map(|(&i, _)| i));
    }
    plane
}

/// The least-squares quadratic surface of the colours of `pixels`: a plane where they are
/// flat or a linear gradient, curved where they swell.
pub(super) fn fit_quadratic(image: &Image<'_>, pixels: impl Iterator<Item = usize>) -> Plane {
    fit(image, pixels, RADIAL)
}

/// The least-squares radial gradient of the colours of `pixels`: its centre searched for on a
/// grid over their box, finer and finer around the best (each centre scored on a sample of
/// the pixels), then the colour linear in the distance from it.
pub(super) fn fit_radial(image: &Image<'_>, pixels: &[usize]) -> Plane {
    let w = image.width;
    if pixels.is_empty() {
        return fit(image, pixels.iter().copied(), 1);
    }
    let sample: Vec<usize> = pixels.iter().copied().step_by((pixels.len() / 2048).max(1)).collect();
    let (x0, y0, bw, bh) = bounds(pixels, w);
    let off = |centre: (f64, f64)| {
        let p = radial_about(image, &sample, centre);
        sample.iter().map(|&i| f64::from(distance(image.px(i), p.at(i % w, i / w)))).sum::<f64>()
    };
    let mut best = (x0 as f64 + bw as f64 / 2.0, y0 as f64 + bh as f64 / 2.0);
    let mut step = (bw.max(bh) as f64 / 8.0).max(1.0);
    let mut best_off = off(best);
    while step >= 0.5 {
        let around = best;
        for dy in -4..=4 {
            for dx in -4..=4 {
                let c = (around.0 + f64::from(dx) * step, around.1 + f64::from(dy) * step);
                let o = off(c);
                if o < best_off {
                    (best, best_off) = (c, o);
                }
            }
        }
        step /= 4.0;
    }
    radial_about(image, pixels, best)
}

/// The least-squares `c + k * r` per channel, r the distance from `centre`.
fn radial_about(image: &Image<'_>, pixels: &[usize], centre: (f64, f64)) -> Plane {
    let w = image.width;
    let scale = (image.width.max(image.height) as f64 / 2.0).max(1.0);
    let (mut n, mut sr, mut srr) = (0f64, 0f64, 0f64);
    let (mut sc, mut scr) = ([0f64; 3], [0f64; 3]);
    for &i in pixels {
        let r = (((i % w) as f64 - centre.0) / scale).hypot(((i / w) as f64 - centre.1) / scale);
        let p = image.px(i);
        (n, sr, srr) = (n + 1.0, sr + r, srr + r * r);
        for c in 0..3 {
            sc[c] += f64::from(p[c]);
            scr[c] += f64::from(p[c]) * r;
        }
    }
    let det = n * srr - sr * sr;
    let mut coef = [[0f64; TERMS]; 3];
    for c in 0..3 {
        if det.abs() > 1e-12 {
            coef[c][RADIAL] = (n * scr[c] - sr * sc[c]) / det;
            coef[c][0] = (sc[c] - coef[c][RADIAL] * sr) / n;
        } else if n > 0.0 {
            coef[c][0] = sc[c] / n;
        }
    }
    Plane { mx: centre.0, my: centre.1, scale, coef }
}

/// Least squares over the first `terms` terms, by the normal equations; a term the pixels
/// cannot determine (all in one row, say) is left out.
fn fit(image: &Image<'_>, pixels: impl Iterator<Item = usize>, terms: usize) -> Plane {
    let w = image.width;
    let pixels: Vec<usize> = pixels.collect();
    let zero = Plane { mx: 0.0, my: 0.0, scale: 1.0, coef: [[0.0; TERMS]; 3] };
    if pixels.is_empty() {
        return zero;
    }
    let n = pixels.len() as f64;
    let mx = pixels.iter().map(|&i| (i % w) as f64).sum::<f64>() / n;
    let my = pixels.iter().map(|&i| (i / w) as f64).sum::<f64>() / n;
    let scale = (image.width.max(image.height) as f64 / 2.0).max(1.0);
    let mut ata = [[0f64; TERMS]; TERMS];
    let mut atb = [[0f64; TERMS]; 3];
    for &i in &pixels {
        let b = basis(((i % w) as f64 - mx) / scale, ((i / w) as f64 - my) / scale);
        let p = image.px(i);
        for (r, row) in ata.iter_mut().enumerate().take(terms) {
            for (c, cell) in row.iter_mut().enumerate().take(terms) {
                *cell += b[r] * b[c];
            }
            for (sums, v) in atb.iter_mut().zip(p) {
                sums[r] += b[r] * f64::from(v);
            }
        }
    }
    Plane { mx, my, scale, coef: atb.map(|sums| solve(ata, sums, terms)) }
}

/// Solves the `terms` x `terms` system by Gaussian elimination with partial pivoting; an
/// unknown without a usable pivot is set to zero (the term is left out).
fn solve(mut a: [[f64; TERMS]; TERMS], mut b: [f64; TERMS], terms: usize) -> [f64; TERMS] {
    let tiny = 1e-9 * (0..terms).map(|i| a[i][i].abs()).fold(0.0, f64::max).max(1e-12);
    let mut used = [false; TERMS];
    let mut pivot_of = [usize::MAX; TERMS];
    for col in 0..terms {
        let Some(row) = (0..terms).filter(|&r| !used[r]).max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs())) else { continue };
        if a[row][col].abs() <= tiny {
            continue;
        }
        used[row] = true;
        pivot_of[col] = row;
        for r in 0..terms {
            if r != row {
                let f = a[r][col] / a[row][col];
                if f != 0.0 {
                    let pivot = a[row];
                    for (cell, p) in a[r].iter_mut().zip(pivot).take(terms) {
                        *cell -= f * p;
                    }
                    b[r] -= f * b[row];
                }
            }
        }
    }
    let mut x = [0f64; TERMS];
    for col in 0..terms {
        let row = pivot_of[col];
        if row != usize::MAX {
            x[col] = b[row] / a[row][col];
        }
    }
    x
}

pub(super) fn distance(a: [f32; 3], b: [f32; 3]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: usize, h: usize, f: impl Fn(usize, usize) -> f32) -> Vec<f32> {
        let mut rgb = vec![0f32; 3 * w * h];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    rgb[c * w * h + y * w + x] = f(x, y) * (1.0 - 0.2 * c as f32);
                }
            }
        }
        rgb
    }

    #[test]
    fn a_linear_gradient_is_fitted_exactly_by_both_and_a_radial_swell_by_the_quadratic() {
        let (w, h) = (64, 48);
        let linear = image(w, h, |x, y| 0.1 + 0.01 * x as f32 + 0.005 * y as f32);
        let radial = image(w, h, |x, y| 0.9 - 0.0004 * ((x as f32 - 30.0).powi(2) + (y as f32 - 20.0).powi(2)));
        for (rgb, quadratic_only) in [(&linear, false), (&radial, true)] {
            let img = Image { rgb, width: w, height: h };
            let all = || 0..w * h;
            let worst = |p: &Plane| all().map(|i| distance(img.px(i), p.at(i % w, i / w))).fold(0f32, f32::max);
            let (plane, quadratic) = (fit_plane(&img, all()), fit_quadratic(&img, all()));
            assert!(worst(&quadratic) < 1e-4, "quadratic off by {}", worst(&quadratic));
            assert_eq!(worst(&plane) < 1e-4, !quadratic_only, "plane off by {}", worst(&plane));
        }
        // A radial gradient as an editor draws one (linear in the distance from its centre,
        // here off the middle): the radial fit finds the centre and holds it to 8-bit
        // precision; the quadratic misses its point.
        let cone = image(w, h, |x, y| 0.2 + 0.012 * (x as f32 - 37.5).hypot(y as f32 - 21.0));
        let img = Image { rgb: &cone, width: w, height: h };
        let all: Vec<usize> = (0..w * h).collect();
        let worst = |p: &Plane| all.iter().map(|&i| distance(img.px(i), p.at(i % w, i / w))).fold(0f32, f32::max);
        let (radial, quadratic) = (fit_radial(&img, &all), fit_quadratic(&img, all.iter().copied()));
        assert!(worst(&radial) < 0.5 / 255.0, "radial off by {}", worst(&radial));
        assert!(worst(&quadratic) > 4.0 / 255.0, "quadratic off by only {}", worst(&quadratic));
        // Pixels in one row cannot determine a vertical term: it is left out, not invented.
        let img = Image { rgb: &linear, width: w, height: h };
        let row = fit_quadratic(&img, (0..w).map(|x| 10 * w + x));
        assert!((row.at(5, 10)[0] - img.px(10 * w + 5)[0]).abs() < 1e-4);
    }
}

//! The background of a flat or gradient graphic: its surface (a plane, or quadratic where
//! that holds nearly all of its region), fitted robustly; the regions it explains; and the
//! background layer filled under the elements taken off it.

use super::*;

/// A background is a quadratic surface when that surface holds this share of its region
/// within a soft element's reach (designed backgrounds are smooth; photographs are not).
const SURFACE_FIT: f64 = 0.9;

/// How close a radial gradient must hold the background's pixels to be taken over the
/// quadratic surface: two 8-bit steps.
const RADIAL_CLOSE: f32 = 2.0 / 255.0;
/// The share of the background's pixels the quadratic must hold that close for no radial
/// gradient to be tried.
const QUADRATIC_ENOUGH: f64 = 0.99;

/// The background's surface, fitted to the pixels of its region seen (not those the text
/// unmixing estimated) and trimmed (see [`robust`]): quadratic where that holds nearly all of
/// the region (a radial gradient's swell, which no plane follows), a plane otherwise (a
/// photograph's sky is no surface, and a quadratic would overshoot under what is taken off).
pub(super) fn background_surface(base: &Image<'_>, labels: &[u32], bg_label: u32, covered: &[bool]) -> Plane {
    let w = base.width;
    let seen: Vec<usize> = region(labels, bg_label).filter(|&i| !covered[i]).collect();
    let on = |p: &Plane| seen.iter().filter(|&&i| distance(base.px(i), p.at(i % w, i / w)) <= soft::SOFT_DELTA).count() as f64;
    let holds = |p: &Plane| on(p) >= SURFACE_FIT * seen.len() as f64;
    let quadratic = robust(base, &seen, |image, pixels| fit_quadratic(image, pixels.iter().copied()));
    // A radial gradient: the quadratic follows its swell, but not its point at the centre,
    // where the leftover would read as a soft element. Taken when it holds more of the
    // region close (within two 8-bit steps) than the quadratic does.
    // Not tried where the quadratic already holds nearly all of it close (a flat colour, a
    // linear gradient).
    let close = |p: &Plane| seen.iter().filter(|&&i| distance(base.px(i), p.at(i % w, i / w)) <= RADIAL_CLOSE).count();
    let close_quadratic = close(&quadratic);
    if close_quadratic as f64 >= QUADRATIC_ENOUGH * seen.len() as f64 {
        return quadratic;
    }
    let radial = robust(base, &seen, fit_radial);
    if holds(&radial) && (!holds(&quadratic) || close(&radial) > close_quadratic) {
        radial
    } else if holds(&quadratic) {
        quadratic
    } else {
        robust(base, &seen, |image, pixels| fit_plane(image, pixels.iter().copied()))
    }
}

/// Regions the background's surface explains (parts of it cut off by a stripe, the holes of
/// shapes) become background too.
pub(super) fn join_explained(base: &Image<'_>, plane: &Plane, labels: &mut [u32], sizes: &[usize], bg_label: u32) {
    let w = base.width;
    let mut error: std::collections::HashMap<u32, (f64, usize)> = std::collections::HashMap::new();
    for (i, &l) in labels.iter().enumerate() {
        if l != bg_label && sizes[l as usize] >= SMALL_REGION {
            let e = error.entry(l).or_default();
            e.0 += f64::from(distance(base.px(i), plane.at(i % w, i / w)));
            e.1 += 1;
        }
    }
    let joined: std::collections::HashSet<u32> = error.into_iter().filter(|(_, (sum, count))| sum / *count as f64 <= f64::from(STEP)).map(|(l, _)| l).collect();
    for l in labels.iter_mut() {
        if joined.contains(l) {
            *l = bg_label;
        }
    }
}

/// The background: the surface (or, on a photograph, NaN for the fill) under the kept
/// elements, what shows through a tinted panel where no other element is, the input itself
/// everywhere else, so the stack recomposites to the input.
pub(super) fn fill_background(image: &Image<'_>, plane: Option<&Plane>, kept: &[Element]) -> Vec<f32> {
    let (w, n) = (image.width, image.width * image.height);
    let mut background = image.rgb.to_vec();
    // Under a tinted panel, what shows through it (unless another element takes the pixel).
    for e in kept.iter().filter(|e| e.tint) {
        let m = e.width * e.height;
        for y in 0..e.height {
            for x in 0..e.width {
                let a = e.rgba[3 * m + y * e.width + x];
                if a <= 0.0 {
                    continue;
                }
                let i = (e.y0 + y) * w + e.x0 + x;
                let j = y * e.width + x;
                let u = under_tint(image.px(i), [e.rgba[j], e.rgba[m + j], e.rgba[2 * m + j]], a);
                for ch in 0..3 {
                    background[ch * n + i] = u[ch];
                }
            }
        }
    }
    for e in kept.iter().filter(|e| !e.tint) {
        for y in 0..e.height {
            for x in 0..e.width {
                if e.rgba[3 * e.width * e.height + y * e.width + x] <= 0.0 {
                    continue;
                }
                let i = (e.y0 + y) * w + e.x0 + x;
                // Photographic: the kept elements' pixels are filled from around them.
                let c = plane.map_or([f32::NAN; 3], |p| p.at(i % w, i / w));
                for ch in 0..3 {
                    background[ch * n + i] = c[ch];
                }
            }
        }
    }
    background
}

/// Fits `model` to `pixels`, then again and again to the nearer half of them (at least
/// everything within a soft element's reach of the fit), so the background, which is most of
/// its region, wins over what leaked into it (a feathered element's fading edge).
pub(super) fn robust(base: &Image<'_>, pixels: &[usize], model: impl Fn(&Image<'_>, &[usize]) -> Plane) -> Plane {
    let w = base.width;
    let mut fit = model(base, pixels);
    for _ in 0..4 {
        let off: Vec<f32> = pixels.iter().map(|&i| distance(base.px(i), fit.at(i % w, i / w))).collect();
        let mut sorted = off.clone();
        let mid = sorted.len() / 2;
        if mid >= sorted.len() {
            break;
        }
        let keep = *sorted.select_nth_unstable_by(mid, f32::total_cmp).1;
        let keep = keep.max(soft::SOFT_DELTA);
        let near: Vec<usize> = pixels.iter().zip(&off).filter(|(_, d)| **d <= keep).map(|(&i, _)| i).collect();
        if near.is_empty() {
            break;
        }
        fit = model(base, &near);
    }
    fit
}

//! Images: on a flat or gradient background, a photograph placed in the design is a dense
//! blob of busy pixels (regions smaller than [`SMALL_REGION`]); every region wholly inside
//! its box is part of it.

use super::*;
use std::collections::HashMap;

/// A blob of busy pixels is an image when it fills at least this share of its box.
const IMAGE_DENSITY: f64 = 0.25;
/// An image covers at least this many small regions' worth of pixels.
const IMAGE_REGIONS: f64 = 16.0;

/// The images over the background `plane`: each one's pixels, and for every pixel the image
/// it belongs to (`u32::MAX` for none). The regions they take in leave `boxes`.
#[allow(clippy::too_many_arguments)]
pub(super) fn image_blobs(base: &Image<'_>, plane: &Plane, busy: &[bool], covered: &[bool], labels: &[u32], boxes: &mut HashMap<u32, (usize, usize, usize, usize)>, bg_label: u32, min_pixels: f64) -> (Vec<Vec<usize>>, Vec<u32>) {
    let (w, h) = (base.width, base.height);
    let n = w * h;
    let mut image_of = vec![u32::MAX; n];
    let mut images: Vec<Vec<usize>> = Vec::new();
    let mut absorbed: HashMap<u32, u32> = HashMap::new();
    let mut left: Vec<bool> = (0..n).map(|i| busy[i] && !covered[i]).collect();
    for blob in blobs(&mut left, w, h) {
        let b = bounds(&blob, w);
        let density = blob.len() as f64 / (b.2 * b.3) as f64;
        if (blob.len() as f64) < min_pixels.max(SMALL_REGION as f64 * IMAGE_REGIONS) || density < IMAGE_DENSITY {
            continue;
        }
        let k = images.len() as u32;
        for &i in &blob {
            image_of[i] = k;
        }
        images.push(blob);
        let inside = |r: &(usize, usize, usize, usize)| r.0 + 2 >= b.0 && r.1 + 2 >= b.1 && r.0 + r.2 <= b.0 + b.2 + 2 && r.1 + r.3 <= b.1 + b.3 + 2;
        boxes.retain(|l, r| {
            let inner = *l != bg_label && inside(r);
            if inner {
                absorbed.insert(*l, k);
            }
            !inner
        });
    }
    // The regions inside an image's box join it.
    for (i, l) in labels.iter().enumerate() {
        if let Some(&k) = absorbed.get(l) {
            if image_of[i] == u32::MAX {
                image_of[i] = k;
                images[k as usize].push(i);
            }
        }
    }
    // A blob that is one colour mixed with the background (a feathered disc, a glow) is no
    // photograph: it is left to the soft elements.
    images.retain(|pixels| !soft::is_soft(base, plane, pixels));
    image_of.fill(u32::MAX);
    for (k, pixels) in images.iter().enumerate() {
        for &i in pixels {
            image_of[i] = k as u32;
        }
    }
    (images, image_of)
}

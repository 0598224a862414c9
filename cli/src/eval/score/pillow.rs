//! Pillow's integer `alpha_composite`, and LayerD's grouping of non-overlapping top layers
//! (`group_top_layers_indices`) composited with it.

use super::*;

/// Pillow's `SHIFTFORDIV255`.
#[inline]
pub(super) fn div255s(a: u32) -> u32 {
    ((a >> 8) + a) >> 8
}

/// One pixel of Pillow's `Image.alpha_composite(dst, src)`: `src` over `dst`, with Pillow's
/// integer arithmetic (`libImaging/AlphaComposite.c`, `PRECISION_BITS` 7). A transparent
/// `src` leaves all four bytes of `dst`, including its colour under alpha 0.
#[inline]
pub fn over_pixel(dst: [u8; 4], src: [u8; 4]) -> [u8; 4] {
    if src[3] == 0 {
        return dst;
    }
    let (sa, da) = (src[3] as u32, dst[3] as u32);
    let blend = da * (255 - sa);
    let outa255 = sa * 255 + blend;
    let coef1 = sa * 255 * 255 * 128 / outa255;
    let coef2 = 255 * 128 - coef1;
    let ch = |s: u8, d: u8| (div255s(s as u32 * coef1 + d as u32 * coef2 + (0x80 << 7)) >> 7) as u8;
    [ch(src[0], dst[0]), ch(src[1], dst[1]), ch(src[2], dst[2]), div255s(outa255 + 0x80) as u8]
}

/// `Image.alpha_composite(dst, src)`: `src` drawn over `dst` (both the same size).
pub fn over(dst: &Rgba, src: &Rgba) -> Rgba {
    let mut data = Vec::with_capacity(dst.data.len());
    for (d, s) in dst.pixels().zip(src.pixels()) {
        data.extend_from_slice(&over_pixel([d[0], d[1], d[2], d[3]], [s[0], s[1], s[2], s[3]]));
    }
    Rgba { width: dst.width, height: dst.height, data }
}

/// `functools.reduce(Image.alpha_composite, layers)`: the layers in order, each over the
/// result so far; one layer is returned unchanged.
pub fn composite_all(layers: &[&Rgba]) -> Option<Rgba> {
    let (first, rest) = layers.split_first()?;
    let mut out = (*first).clone();
    for layer in rest {
        out = over(&out, layer);
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------
// Grouping of non-overlapping top layers

/// LayerD's `group_top_layers_indices`: repeatedly peel off the layers whose hard mask
/// (alpha > 0) overlaps no later remaining layer; the groups come back back-to-front, each
/// in ascending index order.
pub fn group_top_layers(layers: &[Rgba]) -> Vec<Vec<usize>> {
    let masks: Vec<Vec<u64>> = layers.iter().map(hard_mask).collect();
    let overlaps = |a: usize, b: usize| masks[a].iter().zip(&masks[b]).any(|(x, y)| x & y != 0);
    let mut remaining: Vec<usize> = (0..layers.len()).collect();
    let mut groups_front_first = Vec::new();
    while !remaining.is_empty() {
        let mut current = Vec::new();
        for (pos, &target) in remaining.iter().enumerate() {
            if !remaining[pos + 1..].iter().any(|&later| overlaps(target, later)) {
                current.push(target);
            }
        }
        remaining.retain(|i| !current.contains(i));
        groups_front_first.push(current);
    }
    groups_front_first.reverse();
    groups_front_first
}

/// The pixels with alpha > 0, one bit each.
pub(super) fn hard_mask(layer: &Rgba) -> Vec<u64> {
    let mut bits = vec![0u64; (layer.data.len() / 4).div_ceil(64)];
    for (i, px) in layer.pixels().enumerate() {
        if px[3] > 0 {
            bits[i / 64] |= 1 << (i % 64);
        }
    }
    bits
}

/// The stack as LayerD scores it: one composited image per group, back to front.
pub fn grouped(layers: &[Rgba]) -> Vec<Rgba> {
    group_top_layers(layers)
        .iter()
        .filter_map(|group| composite_all(&group.iter().map(|&i| &layers[i]).collect::<Vec<_>>()))
        .collect()
}

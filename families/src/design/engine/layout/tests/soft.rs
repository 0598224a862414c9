//! Soft elements: feathered discs, blurred shadows, and a drop shadow under its shape.

use super::*;

#[test]
fn a_feathered_disc_over_a_gradient_is_one_soft_layer_with_its_alpha() {
    let (w, h) = (160, 120);
    // A vertical gradient, and a teal disc: opaque to radius 18, fading linearly to
    // nothing at radius 40, quantised to 8 bits as a file would be.
    let (cx, cy, core, edge) = (70.0f32, 60.0f32, 18.0f32, 40.0f32);
    let teal = [0.05f32, 0.55, 0.6];
    let truth = |x: usize, y: usize| {
        let r = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
        ((edge - r) / (edge - core)).clamp(0.0, 1.0)
    };
    let rgb = drawn(w, h, |x, y| {
        let g = 0.9 - 0.5 * y as f32 / (h - 1) as f32;
        over(teal, truth(x, y), [g, g * 0.9, 0.3])
    });
    let layout = decompose(&Image { rgb: &rgb, width: w, height: h }, &[], 16.0, 31);
    assert_eq!(layout.elements.len(), 1, "one layer: {:?}", layout.elements.iter().map(|e| (e.kind, e.x0, e.y0, e.width, e.height)).collect::<Vec<_>>());
    let disc = &layout.elements[0];
    let m = disc.width * disc.height;
    // Its alpha is the disc's own, soft IoU against the truth over the whole image.
    let iou = soft_iou(disc, w, h, truth);
    assert!(iou > 0.9, "soft IoU {iou:.3}");
    // Its colour is the teal where it is opaque, and the background the gradient under it.
    let centre = (60 - disc.y0) * disc.width + 70 - disc.x0;
    assert!((0..3).all(|c| (disc.rgba[c * m + centre] - teal[c]).abs() < 2.0 / 255.0));
    let want = 0.9 - 0.5 * 60.0 / (h - 1) as f32;
    assert!((layout.background[60 * w + 70] - want).abs() < 3.0 / 255.0, "{}", layout.background[60 * w + 70]);
}

#[test]
fn a_blurred_shadow_over_a_flat_colour_is_one_partly_transparent_dark_layer() {
    let (w, h) = (160, 120);
    let n = w * h;
    // A light flat background and a shadow: a near-black at 45% to radius 20, fading to
    // nothing at radius 38, quantised to 8 bits.
    let (cx, cy, core, edge, opacity) = (80.0f32, 60.0f32, 20.0f32, 38.0f32, 0.45f32);
    let (ink, below) = ([0.08f32, 0.06, 0.16], [0.93f32, 0.9, 0.85]);
    let truth = |x: usize, y: usize| {
        let r = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
        opacity * ((edge - r) / (edge - core)).clamp(0.0, 1.0)
    };
    let rgb = drawn(w, h, |x, y| over(ink, truth(x, y), below));
    let layout = decompose(&Image { rgb: &rgb, width: w, height: h }, &[], 16.0, 31);
    assert_eq!(layout.elements.len(), 1, "one layer");
    let shadow = &layout.elements[0];
    let m = shadow.width * shadow.height;
    // Partly transparent, as the shadow is (an opaque reading would score about 0.45).
    let iou = soft_iou(shadow, w, h, truth);
    assert!(iou > 0.85, "soft IoU {iou:.3}");
    let centre = (60 - shadow.y0) * shadow.width + 80 - shadow.x0;
    assert!((shadow.rgba[3 * m + centre] - opacity).abs() < 0.06, "alpha {}", shadow.rgba[3 * m + centre]);
    assert!((0..3).all(|c| shadow.rgba[c * m + centre] <= 0.2), "a dark colour");
    assert!((0..3).all(|c| (layout.background[c * n + 60 * w + 80] - below[c]).abs() < 2.0 / 255.0), "the flat colour under it");
}

#[test]
fn a_drop_shadow_runs_on_under_the_shape_that_casts_it() {
    // An orange square (columns 30-69, rows 20-59) over its drop shadow: the square moved 10
    // pixels down and right, black at 50%, its edges fading smoothly over 24 pixels (so that
    // all of it that is seen fades); a flat background.
    let (w, h) = (110, 90);
    let (bg, orange) = ([0.9, 0.92, 0.95], [0.95, 0.5, 0.1]);
    let fade = |t: f32| {
        let t = t.clamp(0.0, 1.0);
        t * t * (3.0 - 2.0 * t)
    };
    let ramp = |v: f32, lo: f32, hi: f32| fade((v - lo) / 24.0 + 0.5) * fade((hi - v) / 24.0 + 0.5);
    let shadow = |x: usize, y: usize| 0.5 * ramp(x as f32 + 0.5, 40.0, 80.0) * ramp(y as f32 + 0.5, 30.0, 70.0);
    let rgb = drawn(w, h, |x, y| {
        let square = (30..70).contains(&x) && (20..60).contains(&y);
        if square { orange } else { over([0.0; 3], shadow(x, y), bg) }
    });
    let image = Image { rgb: &rgb, width: w, height: h };
    let layout = decompose(&image, &[], 16.0, 31);
    let found = || format!("{:?}", layout.elements.iter().map(|e| (e.kind, e.x0, e.y0, e.width, e.height, e.coverage)).collect::<Vec<_>>());
    let square = layout.elements.iter().position(|e| alpha_of(e, 50, 40) == 1.0).unwrap_or_else(|| panic!("no square: {}", found()));
    let cast = layout.elements.iter().position(|e| alpha_of(e, 74, 45) > 0.0).unwrap_or_else(|| panic!("no shadow: {}", found()));
    assert!(cast < square, "the shadow is under the square: {}", found());
    let (cast, square) = (&layout.elements[cast], &layout.elements[square]);
    assert!(distance(colour_at(square, 50, 40), orange) < 2.0 / 255.0, "the square: {:?}", colour_at(square, 50, 40));
    // Seen beside the square, and on under it (inside the hull of what is seen) at its
    // opacity, in its dark colour.
    assert!((alpha_of(cast, 74, 45) - shadow(74, 45)).abs() < 0.06, "beside: {}", alpha_of(cast, 74, 45));
    for (x, y) in [(60, 50), (66, 45), (55, 56)] {
        assert!((alpha_of(cast, x, y) - 0.5).abs() < 0.1, "under the square at {x},{y}: {}", alpha_of(cast, x, y));
        assert!(colour_at(cast, x, y).iter().all(|&v| v < 0.2), "dark at {x},{y}: {:?}", colour_at(cast, x, y));
    }
    assert_recomposites(&layout, &rgb, w, &[(74, 45), (50, 66), (60, 50), (40, 30), (80, 70), (100, 85)]);
}

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

/// A feathered disc's alpha: `opacity` to radius `core`, fading linearly to nothing at `edge`.
fn feathered(x: usize, y: usize, (cx, cy): (f32, f32), core: f32, edge: f32, opacity: f32) -> f32 {
    let r = (x as f32 + 0.5 - cx).hypot(y as f32 + 0.5 - cy);
    opacity * ((edge - r) / (edge - core)).clamp(0.0, 1.0)
}

#[test]
fn soft_discs_of_three_colours_run_into_one_another_and_come_apart() {
    // A flat teal background and three discs in a row, each over the one before it, their
    // fading edges over one another: one blob that no single colour explains.
    let (w, h) = (260, 110);
    let bg = [0.16f32, 0.61, 0.56];
    let discs = [([0.92f32, 0.55, 0.05], 60.0f32, 0.95f32), ([0.5, 0.75, 0.1], 125.0, 0.9), ([0.45, 0.3, 0.85], 190.0, 0.92)];
    let alpha = |k: usize, x: usize, y: usize| feathered(x, y, (discs[k].1, 55.0), 20.0, 36.0, discs[k].2);
    let rgb = drawn(w, h, |x, y| (0..3).fold(bg, |below, k| over(discs[k].0, alpha(k, x, y), below)));
    let layout = decompose(&Image { rgb: &rgb, width: w, height: h }, &[], 16.0, 31);
    let found = format!("{:?}", layout.elements.iter().map(|e| (e.kind, e.x0, e.y0, e.width, e.height, e.coverage)).collect::<Vec<_>>());
    assert_eq!(layout.elements.len(), 3, "three layers: {found}");
    for (k, &(colour, cx, opacity)) in discs.iter().enumerate() {
        let x = cx as usize;
        let at = layout.elements.iter().position(|e| alpha_of(e, x, 55) > 0.9).unwrap_or_else(|| panic!("no disc {k}: {found}"));
        let e = &layout.elements[at];
        // Its colour as seen (over the teal, whose share in its middle no layer can tell
        // from its opacity), and nothing of the middles of the others.
        assert!(distance(colour_at(e, x, 55), over(colour, opacity, bg)) < 0.03, "disc {k}: {:?}", colour_at(e, x, 55));
        for (j, other) in discs.iter().enumerate().filter(|&(j, _)| j != k) {
            assert_eq!(alpha_of(e, other.1 as usize, 55), 0.0, "disc {k} takes disc {j}'s middle: {found}");
        }
        // Near its true alpha where it fades out alone (above and below its middle).
        for y in [22, 25, 85, 88] {
            let want = alpha(k, x, y) / opacity;
            assert!((alpha_of(e, x, y) - want).abs() < 0.1, "disc {k} at {x},{y}: {} against {want}", alpha_of(e, x, y));
        }
    }
    // Each disc's own pixels come back exactly; where two fade out over one another, the few
    // faint pixels neither colour explains stay close (the whole at 35 dB and more).
    assert_recomposites(&layout, &rgb, w, &[(60, 55), (125, 55), (190, 55), (125, 25), (190, 88), (5, 5)]);
    let db = psnr(&layout, &rgb, w);
    assert!(db >= 35.0, "{db:.1} dB");
}

#[test]
fn a_glow_is_one_soft_layer_though_its_colour_runs_from_centre_to_rim() {
    // A flat background and a glowing disc: orange in the middle to yellow at its rim (a
    // radial gradient), 90% opaque, fading at its edge. It stays one layer: blobs of soft
    // elements of different colours come apart, a glow does not.
    let (w, h) = (160, 120);
    let (bg, inner, outer) = ([0.16f32, 0.61, 0.56], [0.9f32, 0.35, 0.1], [0.95f32, 0.85, 0.2]);
    let centre = (80.0, 60.0);
    let alpha = |x: usize, y: usize| feathered(x, y, centre, 26.0, 40.0, 0.9);
    let rgb = drawn(w, h, |x, y| {
        let t = ((x as f32 + 0.5 - centre.0).hypot(y as f32 + 0.5 - centre.1) / 40.0).min(1.0);
        over([0, 1, 2].map(|c| inner[c] + t * (outer[c] - inner[c])), alpha(x, y), bg)
    });
    let layout = decompose(&Image { rgb: &rgb, width: w, height: h }, &[], 16.0, 31);
    let found = format!("{:?}", layout.elements.iter().map(|e| (e.kind, e.x0, e.y0, e.width, e.height, e.coverage)).collect::<Vec<_>>());
    assert_eq!(layout.elements.len(), 1, "one layer: {found}");
    let glow = &layout.elements[0];
    // Unmixed against one colour, the middle of a glow is not all opaque: its soft IoU is
    // short of a flat disc's.
    let iou = soft_iou(glow, w, h, alpha);
    assert!(iou > 0.6, "soft IoU {iou:.3}");
    assert_recomposites(&layout, &rgb, w, &[(80, 60), (100, 60), (80, 92), (115, 60), (5, 5)]);
}

#[test]
fn glows_whose_middles_are_far_from_their_rims_are_each_one_layer_middle_and_all() {
    // A flat teal background and two glows apart whose colour runs far from middle to rim:
    // purple to a dark navy, and a dark olive (close to the background) to orange, 76% and
    // 79% opaque, fading out from radius 30 to 43. One colour over the background explains
    // neither: the first comes apart in rings, each enclosed by the next once the ones inside
    // it are joined to it. Each glow is one layer, its middle with it, and the background
    // under it is the teal.
    let (w, h) = (240, 110);
    let n = w * h;
    let bg = [0.165f32, 0.616, 0.561];
    let rgb8 = |c: [f32; 3]| c.map(|v| v / 255.0);
    let glows = [((60.0f32, 55.0f32), rgb8([129.0, 56.0, 233.0]), rgb8([7.0, 59.0, 76.0]), 0.76f32), ((180.0, 55.0), rgb8([42.0, 72.0, 65.0]), rgb8([190.0, 125.0, 15.0]), 0.79)];
    let alpha = |k: usize, x: usize, y: usize| feathered(x, y, glows[k].0, 30.0, 43.0, glows[k].3);
    let rgb = drawn(w, h, |x, y| {
        (0..2).fold(bg, |below, k| {
            let ((cx, cy), inner, outer, _) = glows[k];
            let t = ((x as f32 + 0.5 - cx).hypot(y as f32 + 0.5 - cy) / 43.0).min(1.0);
            over([0, 1, 2].map(|c| inner[c] + t * (outer[c] - inner[c])), alpha(k, x, y), below)
        })
    });
    let layout = decompose(&Image { rgb: &rgb, width: w, height: h }, &[], 16.0, 31);
    let found = format!("{:?}", layout.elements.iter().map(|e| (e.kind, e.x0, e.y0, e.width, e.height, e.coverage)).collect::<Vec<_>>());
    assert_eq!(layout.elements.len(), 2, "two layers: {found}");
    for (k, &((cx, cy), _, _, opacity)) in glows.iter().enumerate() {
        let (x, y) = (cx as usize, cy as usize);
        let at = layout.elements.iter().position(|e| alpha_of(e, x, y) > 0.5).unwrap_or_else(|| panic!("glow {k} has no middle: {found}"));
        let e = &layout.elements[at];
        // The middle, a point halfway out and the fading rim are on the one layer.
        for (px, py, least) in [(x, y, 0.5), (x + 20, y, 0.5), (x, y + 36, 0.2)] {
            assert!(alpha_of(e, px, py) > least * opacity, "glow {k} at {px},{py}: {}", alpha_of(e, px, py));
        }
        assert!((0..3).all(|c| (layout.background[c * n + y * w + x] - bg[c]).abs() < 2.0 / 255.0), "glow {k}: the teal under its middle");
    }
    assert_recomposites(&layout, &rgb, w, &[(60, 55), (80, 55), (180, 55), (180, 91), (5, 5)]);
    let db = psnr(&layout, &rgb, w);
    assert!(db >= 35.0, "{db:.1} dB");
}

#[test]
fn a_glow_cut_by_a_disc_over_it_is_one_layer_and_the_disc_another() {
    // The purple-to-navy glow of the test above, and a green disc over its side: one blob.
    // The disc comes off, and what is left of the glow comes apart in rings cut short by the
    // disc, which join again: one layer with its middle, halfway out and its rim on it, the
    // disc its own, and the teal under both.
    let (w, h) = (200, 110);
    let n = w * h;
    let bg = [0.165f32, 0.616, 0.561];
    let (inner, outer) = ([129.0f32 / 255.0, 56.0 / 255.0, 233.0 / 255.0], [7.0f32 / 255.0, 59.0 / 255.0, 76.0 / 255.0]);
    let green = [120.0f32 / 255.0, 180.0 / 255.0, 32.0 / 255.0];
    let glow = |x: usize, y: usize| feathered(x, y, (70.0, 55.0), 30.0, 43.0, 0.76);
    let disc = |x: usize, y: usize| feathered(x, y, (112.0, 40.0), 18.0, 28.0, 0.9);
    let rgb = drawn(w, h, |x, y| {
        let t = ((x as f32 + 0.5 - 70.0).hypot(y as f32 + 0.5 - 55.0) / 43.0).min(1.0);
        let under = over([0, 1, 2].map(|c| inner[c] + t * (outer[c] - inner[c])), glow(x, y), bg);
        over(green, disc(x, y), under)
    });
    let layout = decompose(&Image { rgb: &rgb, width: w, height: h }, &[], 16.0, 31);
    let found = format!("{:?}", layout.elements.iter().map(|e| (e.kind, e.x0, e.y0, e.width, e.height, e.coverage)).collect::<Vec<_>>());
    assert_eq!(layout.elements.len(), 2, "two layers: {found}");
    let at = layout.elements.iter().position(|e| alpha_of(e, 70, 55) > 0.5).unwrap_or_else(|| panic!("the glow has no middle: {found}"));
    let e = &layout.elements[at];
    for (x, y, least) in [(70, 55, 0.5), (70, 75, 0.5), (50, 55, 0.5), (70, 91, 0.2)] {
        assert!(alpha_of(e, x, y) > least * 0.76, "the glow at {x},{y}: {}", alpha_of(e, x, y));
    }
    assert_eq!(alpha_of(e, 112, 40), 0.0, "the glow takes the disc's middle: {found}");
    for (x, y) in [(70, 55), (112, 40)] {
        assert!((0..3).all(|c| (layout.background[c * n + y * w + x] - bg[c]).abs() < 2.0 / 255.0), "the teal under {x},{y}");
    }
    assert_recomposites(&layout, &rgb, w, &[(70, 55), (70, 75), (112, 40), (5, 5)]);
    let db = psnr(&layout, &rgb, w);
    assert!(db >= 35.0, "{db:.1} dB");
}

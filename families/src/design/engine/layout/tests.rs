//! The layout's behaviour on graphics drawn here, one role or rule a test.

use super::*;

/// An element's alpha at canvas pixel `(x, y)`: 0 outside its box.
fn alpha_of(e: &Element, x: usize, y: usize) -> f32 {
    let inside = x >= e.x0 && x < e.x0 + e.width && y >= e.y0 && y < e.y0 + e.height;
    if inside {
        e.rgba[3 * e.width * e.height + (y - e.y0) * e.width + x - e.x0]
    } else {
        0.0
    }
}

/// A canvas of `w` x `h` whose pixel `(x, y)` is `colour(x, y)`, quantised to 8 bits as a
/// file would be (planar RGB).
fn drawn(w: usize, h: usize, colour: impl Fn(usize, usize) -> [f32; 3]) -> Vec<f32> {
    let n = w * h;
    let mut rgb = vec![0f32; 3 * n];
    for y in 0..h {
        for x in 0..w {
            for (c, v) in colour(x, y).into_iter().enumerate() {
                rgb[c * n + y * w + x] = (v * 255.0).round() / 255.0;
            }
        }
    }
    rgb
}

/// How much of pixel `(x, y)` a disc covers (4 x 4 samples, as the layered set draws).
fn disc_coverage(x: usize, y: usize, (cx, cy): (f32, f32), r: f32) -> f32 {
    let inside = (0..16).filter(|s| {
        let (sx, sy) = (x as f32 + (s % 4) as f32 / 4.0 + 0.125, y as f32 + (s / 4) as f32 / 4.0 + 0.125);
        (sx - cx).hypot(sy - cy) <= r
    });
    inside.count() as f32 / 16.0
}

/// `top` at alpha `a` over `below`.
fn over(top: [f32; 3], a: f32, below: [f32; 3]) -> [f32; 3] {
    [0, 1, 2].map(|c| a * top[c] + (1.0 - a) * below[c])
}

/// An element's colour at canvas pixel `(x, y)`, inside its box.
fn colour_at(e: &Element, x: usize, y: usize) -> [f32; 3] {
    let (m, j) = (e.width * e.height, (y - e.y0) * e.width + x - e.x0);
    [e.rgba[j], e.rgba[m + j], e.rgba[2 * m + j]]
}

/// The layers composited over the background give the input `rgb` back (within two 8-bit
/// steps) at each of `points`.
fn assert_recomposites(layout: &Layout, rgb: &[f32], w: usize, points: &[(usize, usize)]) {
    let n = rgb.len() / 3;
    for &(x, y) in points {
        let i = y * w + x;
        let mut px = [layout.background[i], layout.background[n + i], layout.background[2 * n + i]];
        for e in &layout.elements {
            let a = alpha_of(e, x, y);
            if a > 0.0 {
                let top = colour_at(e, x, y);
                for c in 0..3 {
                    px[c] = top[c] * a + px[c] * (1.0 - a);
                }
            }
        }
        assert!((0..3).all(|c| (px[c] - rgb[c * n + i]).abs() < 2.0 / 255.0), "recomposite at {x},{y}: {px:?}");
    }
}

/// The soft IoU of an element's alpha against the true alpha over a `w` x `h` canvas: the
/// sum of the smaller over the sum of the larger, as the evaluation scores layers.
fn soft_iou(e: &Element, w: usize, h: usize, truth: impl Fn(usize, usize) -> f32) -> f64 {
    let (mut inter, mut union) = (0f64, 0f64);
    for y in 0..h {
        for x in 0..w {
            let (got, want) = (alpha_of(e, x, y), truth(x, y));
            inter += f64::from(got.min(want));
            union += f64::from(got.max(want));
        }
    }
    inter / union
}

/// A graphic drawn here: a horizontal gradient background, a flat red rectangle, and a
/// dark anti-aliased bar standing in for a word inside a box the detector would give.
fn graphic(w: usize, h: usize) -> Vec<f32> {
    graphic_with(w, h, [0.1, 0.1, 0.1])
}

/// [`graphic`] with its second glyph in colour `second`.
fn graphic_with(w: usize, h: usize, second: [f32; 3]) -> Vec<f32> {
    let n = w * h;
    let mut rgb = vec![0f32; 3 * n];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let g = 0.2 + 0.6 * x as f32 / (w - 1) as f32;
            let mut p = [g, g, 0.9];
            if (10..40).contains(&x) && (8..30).contains(&y) {
                p = [0.9, 0.1, 0.1];
            }
            // The "word": two hollow glyphs (2-pixel strokes) in rows 40-55, columns 50-67
            // and 72-89, their outermost columns half covered.
            let glyph = |x0: usize| (x0..x0 + 18).contains(&x) && (x < x0 + 2 || x >= x0 + 16 || y < 42 || y >= 54);
            if (40..56).contains(&y) && (glyph(50) || glyph(72)) {
                let a = if x == 50 || x == 89 { 0.5 } else { 1.0 };
                let t = if x >= 72 { second } else { [0.1, 0.1, 0.1] };
                p = [0, 1, 2].map(|c| a * t[c] + (1.0 - a) * p[c]);
            }
            for c in 0..3 {
                rgb[c * n + i] = p[c];
            }
        }
    }
    rgb
}

#[test]
fn a_gradient_background_is_continued_exactly_under_a_shape_and_text() {
    let (w, h) = (120, 64);
    let rgb = graphic(w, h);
    let image = Image { rgb: &rgb, width: w, height: h };
    let word = TextBox { x0: 46, y0: 36, x1: 94, y1: 60, score: 0.9 };
    let layout = decompose(&image, &[word], 16.0, 31);
    let kinds: Vec<Kind> = layout.elements.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![Kind::Shape, Kind::Text], "{kinds:?}");
    // Under the rectangle and the word the background is the gradient itself.
    let n = w * h;
    for (x, y) in [(20, 20), (60, 48), (50, 46)] {
        let want = 0.2 + 0.6 * x as f32 / (w - 1) as f32;
        let got = layout.background[y * w + x];
        assert!((got - want).abs() < 2.0 / 255.0, "background at ({x},{y}) is {got}, the gradient {want}");
        assert!((layout.background[2 * n + y * w + x] - 0.9).abs() < 2.0 / 255.0);
    }
    // The shape: its own red, alpha 1 inside, exactly its rectangle.
    let shape = &layout.elements[0];
    assert_eq!((shape.x0, shape.y0, shape.width, shape.height), (10, 8, 30, 22));
    let m = shape.width * shape.height;
    assert!(shape.rgba[3 * m..].iter().all(|&a| a == 1.0));
    assert!((shape.rgba[0] - 0.9).abs() < 1e-3 && (shape.rgba[m] - 0.1).abs() < 1e-3);
    // The text: its true colour everywhere, alpha 1 in the strokes, 1/2 on the edges.
    let text = &layout.elements[1];
    let m = text.width * text.height;
    assert!((0..3).all(|c| text.rgba[c * m..(c + 1) * m].iter().zip(&text.rgba[3 * m..]).all(|(v, a)| *a == 0.0 || (v - 0.1).abs() < 1e-3)));
    let alpha_at = |x: usize, y: usize| text.rgba[3 * m + (y - text.y0) * text.width + (x - text.x0)];
    assert_eq!(alpha_at(60, 41), 1.0);
    assert_eq!(alpha_at(60, 48), 0.0, "inside a glyph");
    assert_eq!(alpha_at(70, 48), 0.0, "between the glyphs");
    assert!((alpha_at(50, 48) - 0.5).abs() < 0.03, "edge alpha {}", alpha_at(50, 48));
}

#[test]
fn beyond_the_layer_count_the_smallest_elements_merge_or_stay_in_the_background() {
    let (w, h) = (120, 64);
    let rgb = graphic_with(w, h, [0.5, 0.05, 0.45]);
    let image = Image { rgb: &rgb, width: w, height: h };
    // Two words of two colours: at two elements they stay apart, at one they become one
    // layer; at none they stay in the background, which then is the input itself.
    let words = [TextBox { x0: 46, y0: 36, x1: 70, y1: 60, score: 0.9 }, TextBox { x0: 70, y0: 36, x1: 94, y1: 60, score: 0.9 }];
    let kinds = |layout: &Layout| layout.elements.iter().map(|e| e.kind).collect::<Vec<_>>();
    assert_eq!(kinds(&decompose(&image, &words, 16.0, 3)), vec![Kind::Shape, Kind::Text, Kind::Text]);
    let merged = decompose(&image, &words, 16.0, 2);
    assert_eq!(kinds(&merged), vec![Kind::Shape, Kind::Text]);
    let text = &merged.elements[1];
    assert_eq!((text.x0, text.width), (50, 40), "one layer spanning both words");
    let none = decompose(&image, &words, 16.0, 0);
    assert!(none.elements.is_empty());
    assert_eq!(none.background, rgb);
}

/// A canvas of one colour with words drawn on it: each word `(x0, y0, glyphs, colour)` is
/// `glyphs` hollow glyphs 16 pixels square (2-pixel strokes, 2 pixels apart), its colour
/// at each pixel `colour(x)`; returns the image and each word's box as the detector gives it.
#[allow(clippy::type_complexity)]
fn words_on(w: usize, h: usize, ground: [f32; 3], words: &[(usize, usize, usize, &dyn Fn(usize) -> [f32; 3])]) -> (Vec<f32>, Vec<TextBox>) {
    let n = w * h;
    let mut rgb: Vec<f32> = (0..3 * n).map(|j| ground[j / n]).collect();
    let mut boxes = Vec::new();
    for &(x0, y0, glyphs, colour) in words {
        for g in 0..glyphs {
            let gx = x0 + 18 * g;
            for y in y0..y0 + 16 {
                for x in gx..gx + 16 {
                    if x < gx + 2 || x >= gx + 14 || y < y0 + 2 || y >= y0 + 14 {
                        for (c, v) in colour(x).into_iter().enumerate() {
                            rgb[c * n + y * w + x] = v;
                        }
                    }
                }
            }
        }
        boxes.push(TextBox { x0: x0 - 3, y0: y0 - 3, x1: x0 + 18 * glyphs + 1, y1: y0 + 19, score: 0.9 });
    }
    (rgb, boxes)
}

#[test]
fn words_of_one_colour_and_size_set_as_a_block_are_one_text_layer() {
    let (w, h) = (140, 64);
    let (blue, red) = ([0.1, 0.2, 0.6], [0.8, 0.1, 0.1]);
    // Two words on a line and one on the next line in blue (a block); one red word beside.
    let (rgb, boxes) = words_on(w, h, [0.95, 0.93, 0.85], &[(8, 6, 2, &|_| blue), (58, 6, 2, &|_| blue), (8, 34, 2, &|_| blue), (84, 34, 2, &|_| red)]);
    let layout = decompose(&Image { rgb: &rgb, width: w, height: h }, &boxes, 16.0, 31);
    let texts: Vec<&Element> = layout.elements.iter().filter(|e| e.kind == Kind::Text).collect();
    assert_eq!(texts.len(), 2, "the blue block and the red word");
    let block = texts.iter().find(|e| e.x0 == 8).expect("the block");
    assert_eq!((block.y0, block.width, block.height), (6, 84, 44), "both lines, both words of the first");
    assert!((block.coverage - 3.0 * 2.0 * 112.0).abs() < 1.0, "three words of two glyphs: {}", block.coverage);
    let word = texts.iter().find(|e| e.x0 == 84).expect("the red word");
    assert_eq!((word.y0, word.width, word.height), (34, 34, 16));
}

#[test]
fn a_gradient_word_on_a_label_boxed_whole_is_a_text_layer_in_its_gradient_over_the_whole_label() {
    let (w, h) = (160, 80);
    let n = w * h;
    let (sky, teal) = ([0.78, 0.86, 0.92], [0.05, 0.8, 0.6]);
    let (from, to) = ([0.95, 0.4, 0.05], [0.3, 0.1, 0.1]);
    let gradient = |x: usize| {
        let t = (x as f32 - 40.0) / 52.0;
        [0, 1, 2].map(|c| from[c] + t * (to[c] - from[c]))
    };
    let (mut rgb, _) = words_on(w, h, sky, &[]);
    for y in 20..60 {
        for x in 20..140 {
            for c in 0..3 {
                rgb[c * n + y * w + x] = teal[c];
            }
        }
    }
    // The word "on" the label: drawn over the teal, and the detector boxes the label.
    let (word, _) = words_on(w, h, teal, &[(40, 32, 3, &gradient)]);
    for y in 32..48 {
        for x in 40..92 {
            for c in 0..3 {
                rgb[c * n + y * w + x] = word[c * n + y * w + x];
            }
        }
    }
    let label = TextBox { x0: 20, y0: 20, x1: 140, y1: 60, score: 0.9 };
    let layout = decompose(&Image { rgb: &rgb, width: w, height: h }, &[label], 16.0, 31);
    let kinds: Vec<Kind> = layout.elements.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![Kind::Shape, Kind::Text], "the label, then the word");
    let (shape, text) = (&layout.elements[0], &layout.elements[1]);
    // The word: its strokes opaque, its colour the gradient's at each end, nothing else.
    assert_eq!((text.x0, text.y0, text.width, text.height), (40, 32, 52, 16));
    assert!((text.coverage - 3.0 * 112.0).abs() < 1.0, "coverage {}", text.coverage);
    for x in [40usize, 90] {
        let got = colour_at(text, x, text.y0 + 8);
        assert!(distance(got, gradient(x)) < 3.0 / 255.0, "at x {x}: {got:?} against {:?}", gradient(x));
    }
    // The label: the whole rectangle, in teal under the word too; the sky under it.
    assert_eq!((shape.x0, shape.y0, shape.width, shape.height), (20, 20, 120, 40));
    assert!((shape.coverage - 4800.0).abs() < 1.0, "coverage {}", shape.coverage);
    let under_word = 12 * shape.width + 21;
    let sm = shape.width * shape.height;
    let got = [shape.rgba[under_word], shape.rgba[sm + under_word], shape.rgba[2 * sm + under_word]];
    assert!(distance(got, teal) < 2.0 / 255.0, "{got:?}");
    assert!(distance([layout.background[40 * w + 60], layout.background[n + 40 * w + 60], layout.background[2 * n + 40 * w + 60]], sky) < 2.0 / 255.0);
}

#[test]
fn a_radial_gradient_background_is_continued_exactly_and_its_centre_is_no_layer() {
    let (w, h) = (160, 120);
    let n = w * h;
    // A radial gradient centred on the canvas, dark in the middle, and an opaque square.
    let mut rgb = vec![0f32; 3 * n];
    let colour = |x: usize, y: usize| {
        let t = ((x as f32 + 0.5 - 80.0).hypot(y as f32 + 0.5 - 60.0) / 100.0).min(1.0);
        [0.16, 0.16, 0.24].map(|c| ((c + t * (0.55 - c)) * 255.0).round() / 255.0)
    };
    for y in 0..h {
        for x in 0..w {
            let p = if (100..140).contains(&x) && (20..60).contains(&y) { [0.9, 0.8, 0.2] } else { colour(x, y) };
            for c in 0..3 {
                rgb[c * n + y * w + x] = p[c];
            }
        }
    }
    let layout = decompose(&Image { rgb: &rgb, width: w, height: h }, &[], 16.0, 31);
    let kinds: Vec<Kind> = layout.elements.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![Kind::Shape], "the square alone, no soft layer at the centre");
    for (x, y) in [(80, 60), (120, 40), (5, 5)] {
        let got = [0, 1, 2].map(|c| layout.background[c * n + y * w + x]);
        assert!(distance(got, colour(x, y)) < 1.5 / 255.0, "at ({x}, {y}): {got:?} against {:?}", colour(x, y));
    }
}

#[test]
fn a_frame_cut_in_two_by_a_bar_over_it_is_one_layer() {
    let (w, h) = (120, 100);
    let n = w * h;
    // A teal frame (6-pixel stroke, box 20-99 x 20-79) and an orange bar over it, 8 pixels
    // wide, from top to bottom at columns 56-63: the frame is seen in two pieces.
    let mut rgb = vec![0f32; 3 * n];
    for y in 0..h {
        for x in 0..w {
            let frame = (20..100).contains(&x) && (20..80).contains(&y) && !((26..94).contains(&x) && (26..74).contains(&y));
            let p = if (56..64).contains(&x) {
                [0.95, 0.6, 0.1]
            } else if frame {
                [0.0, 0.6, 0.55]
            } else {
                [0.96, 0.95, 0.9]
            };
            for c in 0..3 {
                rgb[c * n + y * w + x] = p[c];
            }
        }
    }
    let layout = decompose(&Image { rgb: &rgb, width: w, height: h }, &[], 16.0, 31);
    let boxes: Vec<(Kind, usize, usize, usize, usize)> = layout.elements.iter().map(|e| (e.kind, e.x0, e.y0, e.width, e.height)).collect();
    assert_eq!(boxes.len(), 2, "{boxes:?}");
    assert!(boxes.contains(&(Kind::Shape, 20, 20, 80, 60)), "the frame, both pieces: {boxes:?}");
    assert!(boxes.contains(&(Kind::Shape, 56, 0, 8, 100)), "the bar: {boxes:?}");
}

#[test]
fn a_thin_line_over_the_background_is_a_shape() {
    let (w, h) = (120, 64);
    let mut rgb = graphic(w, h);
    let n = w * h;
    // A two-pixel dark green vertical line, rows 4-59, columns 112-113.
    for y in 4..60 {
        for x in 112..114 {
            for (c, v) in [0.1, 0.5, 0.2].into_iter().enumerate() {
                rgb[c * n + y * w + x] = v;
            }
        }
    }
    let layout = decompose(&Image { rgb: &rgb, width: w, height: h }, &[], 16.0, 31);
    let line = layout.elements.iter().find(|e| e.x0 == 112).expect("the line is a layer");
    assert_eq!((line.kind, line.y0, line.width, line.height), (Kind::Shape, 4, 2, 56));
    // Under it the gradient goes on.
    let want = 0.2 + 0.6 * 112.0 / (w - 1) as f32;
    assert!((layout.background[30 * w + 112] - want).abs() < 2.0 / 255.0);
}

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
fn a_rectangles_straight_anti_aliased_edges_are_its_own_and_leave_no_line_behind() {
    let (w, h) = (96, 64);
    let n = w * h;
    // A rectangle from x 20.5 to 60.25 and y 10.75 to 40.5 over a flat colour: its edge
    // rows and columns are one partial coverage each along their length.
    let (bg, fill) = ([0.2f32, 0.3, 0.4], [0.9f32, 0.5, 0.1]);
    let cover = |x: usize, y: usize| {
        let span = |lo: f32, hi: f32, p: usize| (hi.min(p as f32 + 1.0) - lo.max(p as f32)).clamp(0.0, 1.0);
        span(20.5, 60.25, x) * span(10.75, 40.5, y)
    };
    let rgb = drawn(w, h, |x, y| over(fill, cover(x, y), bg));
    let layout = decompose(&Image { rgb: &rgb, width: w, height: h }, &[], 16.0, 31);
    assert_eq!(layout.elements.len(), 1, "one layer");
    let e = &layout.elements[0];
    let alpha = |x: usize, y: usize| alpha_of(e, x, y);
    for (x, y) in [(40, 10), (40, 40), (20, 25), (60, 25), (40, 25), (20, 10)] {
        assert!((alpha(x, y) - cover(x, y)).abs() < 0.03, "alpha at {x},{y}: {} for coverage {}", alpha(x, y), cover(x, y));
    }
    // No line of the edge is left in the background.
    for (x, y) in [(40, 10), (40, 40), (20, 25), (60, 25)] {
        assert!((0..3).all(|c| (layout.background[c * n + y * w + x] - bg[c]).abs() < 2.0 / 255.0), "background at {x},{y}");
    }
}

/// A rectangle partly under another is completed: its layer covers the whole rectangle,
/// hidden part included, in its own colour, and lies just below the one over it, so the
/// stack still recomposites to the input. A circle partly under the same rectangle is
/// not (its box has background in its corners).
#[test]
fn a_rectangle_partly_under_another_is_completed_under_it() {
    let (w, h) = (160, 100);
    let n = w * h;
    let (bg, red, blue, green) = ([0.9f32, 0.9, 0.85], [0.8f32, 0.1, 0.1], [0.1f32, 0.2, 0.7], [0.1f32, 0.6, 0.2]);
    let in_red = |x: usize, y: usize| (10..60).contains(&x) && (10..50).contains(&y);
    let in_blue = |x: usize, y: usize| (40..90).contains(&x) && (30..80).contains(&y);
    let in_green = |x: usize, y: usize| (x as f32 - 100.0).hypot(y as f32 - 55.0) < 18.0;
    let mut rgb = vec![0f32; 3 * n];
    for y in 0..h {
        for x in 0..w {
            // Red, then the circle, then blue over both (the circle's left edge is hidden).
            let p = if in_blue(x, y) {
                blue
            } else if in_green(x, y) {
                green
            } else if in_red(x, y) {
                red
            } else {
                bg
            };
            for c in 0..3 {
                rgb[c * n + y * w + x] = p[c];
            }
        }
    }
    let layout = decompose(&Image { rgb: &rgb, width: w, height: h }, &[], 16.0, 31);
    let find = |colour: [f32; 3]| layout.elements.iter().position(|e| (0..3).all(|c| (e.rgba[c * e.width * e.height + e.width * e.height / 2] - colour[c]).abs() < 0.02));
    let (Some(r), Some(b)) = (find(red), find(blue)) else { panic!("no red or blue layer") };
    let e = &layout.elements[r];
    for (x, y) in [(45, 35), (55, 45), (15, 15), (59, 49)] {
        assert!(alpha_of(e, x, y) > 0.99, "red at {x},{y}: {}", alpha_of(e, x, y));
    }
    assert!(alpha_of(e, 65, 35) < 0.01, "red stops at its edge");
    assert!(r < b, "the completed rectangle lies below the one over it");
    // The circle is not completed, neither under the blue rectangle nor into its box.
    let Some(g) = find(green) else { panic!("no green layer") };
    for (x, y) in [(85, 55), (116, 39)] {
        assert!(alpha_of(&layout.elements[g], x, y) < 0.01, "circle at {x},{y}: {}", alpha_of(&layout.elements[g], x, y));
    }
    assert!(alpha_of(&layout.elements[g], 100, 55) > 0.99, "the circle is a layer");
    assert_recomposites(&layout, &rgb, w, &[(45, 35), (20, 20), (80, 70), (85, 55), (100, 55), (116, 39), (5, 5)]);
}

#[test]
fn a_blank_image_is_its_background_alone() {
    let (w, h) = (32, 16);
    let rgb = vec![0.5f32; 3 * w * h];
    let layout = decompose(&Image { rgb: &rgb, width: w, height: h }, &[], 4.0, 31);
    assert!(layout.elements.is_empty());
    assert_eq!(layout.background, rgb);
}

/// A panel of one colour at 60% over a vertical gradient, and a blue rectangle that the
/// panel half covers: the panel is one layer at its opacity in its own colour, the rectangle
/// one layer whole (under the panel too), the gradient goes on under both, and the stack
/// recomposites to the input.
#[test]
fn a_tinted_panel_over_a_gradient_is_a_layer_at_its_opacity_and_what_it_covers_is_whole() {
    let (w, h) = (160, 120);
    let n = w * h;
    let (tint, opacity, blue) = ([0.95f32, 0.45, 0.1], 0.6f32, [0.1f32, 0.5, 0.75]);
    let ground = |y: usize| [0.95 - 0.4 * y as f32 / (h - 1) as f32, 0.9 - 0.3 * y as f32 / (h - 1) as f32, 0.8];
    let in_blue = |x: usize, y: usize| (30..90).contains(&x) && (20..70).contains(&y);
    let in_panel = |x: usize, y: usize| (20..140).contains(&x) && (50..105).contains(&y);
    let rgb = drawn(w, h, |x, y| {
        let p = if in_blue(x, y) { blue } else { ground(y) };
        if in_panel(x, y) { over(tint, opacity, p) } else { p }
    });
    let layout = decompose(&Image { rgb: &rgb, width: w, height: h }, &[], 16.0, 31);
    let boxes: Vec<(usize, usize, usize, usize)> = layout.elements.iter().map(|e| (e.x0, e.y0, e.width, e.height)).collect();
    assert_eq!(boxes, vec![(30, 20, 60, 50), (20, 50, 120, 55)], "the rectangle whole, then the panel over it");
    let (rect, panel) = (&layout.elements[0], &layout.elements[1]);
    assert!(panel.tint);
    for (x, y) in [(100, 80), (50, 60), (25, 100)] {
        assert!((alpha_of(panel, x, y) - opacity).abs() < 0.02, "panel alpha at {x},{y}: {}", alpha_of(panel, x, y));
        assert!(distance(colour_at(panel, x, y), tint) < 0.02, "panel colour at {x},{y}");
    }
    for (x, y) in [(50, 30), (50, 60), (85, 65)] {
        assert!(alpha_of(rect, x, y) > 0.99, "rectangle at {x},{y}: {}", alpha_of(rect, x, y));
        assert!(distance(colour_at(rect, x, y), blue) < 0.02, "rectangle colour at {x},{y}");
    }
    for (x, y) in [(100, 80), (10, 60), (120, 10)] {
        let got = [0, 1, 2].map(|c| layout.background[c * n + y * w + x]);
        assert!(distance(got, ground(y)) < 2.0 / 255.0, "background at {x},{y}: {got:?}");
    }
    assert_recomposites(&layout, &rgb, w, &[(100, 80), (50, 60), (50, 30), (25, 100), (5, 5)]);
}

/// Over a flat colour a panel at 50% shows its opacity where it covers a disc: the panel is
/// one layer at that opacity, the disc one layer whole, the flat colour under both.
#[test]
fn a_tinted_panel_over_a_flat_colour_and_a_disc_is_a_layer_at_its_opacity() {
    let (w, h) = (160, 120);
    let n = w * h;
    let (ground, tint, opacity, red) = ([0.9f32, 0.8, 0.45], [0.1f32, 0.3, 0.6], 0.5f32, [0.85f32, 0.2, 0.2]);
    let in_disc = |x: usize, y: usize| (x as f32 + 0.5 - 60.0).hypot(y as f32 + 0.5 - 50.0) < 25.0;
    let in_panel = |x: usize, y: usize| (70..150).contains(&x) && (30..100).contains(&y);
    let rgb = drawn(w, h, |x, y| {
        let p = if in_disc(x, y) { red } else { ground };
        if in_panel(x, y) { over(tint, opacity, p) } else { p }
    });
    let layout = decompose(&Image { rgb: &rgb, width: w, height: h }, &[], 16.0, 31);
    let boxes: Vec<(usize, usize, usize, usize)> = layout.elements.iter().map(|e| (e.x0, e.y0, e.width, e.height)).collect();
    assert_eq!(boxes.len(), 2, "{boxes:?}");
    let (disc, panel) = (&layout.elements[0], &layout.elements[1]);
    assert!(panel.tint && (panel.x0, panel.y0, panel.width, panel.height) == (70, 30, 80, 70), "{boxes:?}");
    assert!((alpha_of(panel, 120, 60) - opacity).abs() < 0.02, "panel alpha {}", alpha_of(panel, 120, 60));
    for (x, y) in [(45, 50), (75, 50)] {
        assert!(alpha_of(disc, x, y) > 0.99, "the disc at {x},{y}, seen and under the panel");
        assert!(distance(colour_at(disc, x, y), red) < 0.02, "disc colour at {x},{y}");
    }
    let under = [0, 1, 2].map(|c| layout.background[c * n + 60 * w + 120]);
    assert!(distance(under, ground) < 2.0 / 255.0, "{under:?}");
}

#[test]
fn a_shape_whose_corner_notches_a_disc_lies_over_it_though_it_is_the_larger() {
    // A blue disc, and over it an orange rectangle (larger than the disc's visible part, so
    // size alone would put it under) whose corner cuts into the disc.
    let (w, h) = (120, 80);
    let (bg, disc, rect) = ([0.9, 0.9, 0.85], [0.1, 0.3, 0.8], [0.95, 0.55, 0.1]);
    let disc_cover = |x: usize, y: usize| disc_coverage(x, y, (40.0, 40.0), 26.0);
    let rect_cover = |x: usize, y: usize| {
        let span = |v: usize, lo: f32| ((v as f32 + 1.0).min(200.0) - (v as f32).max(lo)).clamp(0.0, 1.0);
        span(x, 50.5) * span(y, 40.5)
    };
    let rgb = drawn(w, h, |x, y| over(rect, rect_cover(x, y), over(disc, disc_cover(x, y), bg)));
    let image = Image { rgb: &rgb, width: w, height: h };
    let layout = decompose(&image, &[], 16.0, 31);
    let shapes: Vec<&Element> = layout.elements.iter().filter(|e| e.kind == Kind::Shape).collect();
    assert_eq!(shapes.len(), 2, "{:?}", layout.elements.iter().map(|e| (e.kind, e.x0, e.y0, e.coverage)).collect::<Vec<_>>());
    let (under, top) = (shapes[0], shapes[1]);
    assert!(top.coverage > under.coverage, "the rectangle is the larger: {} against {}", top.coverage, under.coverage);
    assert!(distance(colour_at(under, 30, 40), disc) < 2.0 / 255.0, "the disc is under: {:?}", colour_at(under, 30, 40));
    assert!(distance(colour_at(top, 100, 60), rect) < 2.0 / 255.0, "the rectangle is on top: {:?}", colour_at(top, 100, 60));
    assert_recomposites(&layout, &rgb, w, &[(50, 44), (50, 50), (60, 40), (50, 75), (30, 40), (100, 60)]);
}

#[test]
fn a_narrow_bar_whose_gradient_climbs_steeply_across_it_is_one_shape() {
    // A vertical bar 25 pixels wide, its colour climbing 8/255 a column in red and 4/255 in
    // green (more than a region's step: each column is a region of its own), its edges half
    // covering columns 40 and 65, over a flat background.
    let (w, h) = (120, 90);
    let bg = [0.98, 0.98, 0.97];
    let bar = |x: usize| [(40.0 + 8.0 * (x as f32 - 40.0)) / 255.0, (50.0 + 4.0 * (x as f32 - 40.0)) / 255.0, 0.25];
    let cover = |x: usize| ((x as f32 + 1.0).min(65.5) - (x as f32).max(40.5)).clamp(0.0, 1.0);
    let rgb = drawn(w, h, |x, y| if (5..85).contains(&y) { over(bar(x), cover(x), bg) } else { bg });
    let image = Image { rgb: &rgb, width: w, height: h };
    let layout = decompose(&image, &[], 16.0, 31);
    let shapes: Vec<&Element> = layout.elements.iter().filter(|e| e.kind == Kind::Shape).collect();
    assert_eq!(shapes.len(), 1, "{:?}", layout.elements.iter().map(|e| (e.kind, e.x0, e.width, e.coverage)).collect::<Vec<_>>());
    let e = shapes[0];
    // Whole inside, in its own colour at each column, half on its edges.
    for x in 41..65 {
        assert_eq!(alpha_of(e, x, 45), 1.0, "column {x}");
        assert!(distance(colour_at(e, x, 45), bar(x)) < 2.0 / 255.0, "column {x}: {:?}", colour_at(e, x, 45));
    }
    for x in [40, 65] {
        assert!((alpha_of(e, x, 45) - 0.5).abs() < 0.1, "edge {x}: {}", alpha_of(e, x, 45));
    }
    assert_recomposites(&layout, &rgb, w, &[(40, 45), (41, 45), (52, 20), (64, 80), (65, 45), (20, 45)]);
}

#[test]
fn a_shape_a_word_lies_across_runs_on_beneath_the_word() {
    // A blue bar (columns 64-69, the whole height) and a dark word across it (two hollow
    // glyphs of 2-pixel strokes in rows 40-55, columns 50-67 and 72-89, their outermost
    // columns half covered), over a flat background; the detector's box holds the word.
    let (w, h) = (120, 80);
    let (bg, blue, dark) = ([0.95, 0.95, 0.9], [0.1, 0.3, 0.8], [0.1, 0.1, 0.1]);
    let glyph = |x: usize, y: usize, x0: usize| (40..56).contains(&y) && (x0..x0 + 18).contains(&x) && (x < x0 + 2 || x >= x0 + 16 || y < 42 || y >= 54);
    let rgb = drawn(w, h, |x, y| {
        let under = if (64..70).contains(&x) { blue } else { bg };
        let a = if !(glyph(x, y, 50) || glyph(x, y, 72)) { 0.0 } else if x == 50 || x == 89 { 0.5 } else { 1.0 };
        over(dark, a, under)
    });
    let image = Image { rgb: &rgb, width: w, height: h };
    let word = TextBox { x0: 46, y0: 36, x1: 94, y1: 60, score: 0.9 };
    let layout = decompose(&image, &[word], 16.0, 31);
    let kinds: Vec<Kind> = layout.elements.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![Kind::Shape, Kind::Text], "{:?}", layout.elements.iter().map(|e| (e.kind, e.x0, e.y0, e.width, e.height, e.coverage)).collect::<Vec<_>>());
    let (bar, text) = (&layout.elements[0], &layout.elements[1]);
    // The bar is whole under the stroke that crosses it, in its colour, and not beyond its
    // sides.
    for (x, y) in [(66, 47), (67, 50), (66, 41), (67, 55)] {
        assert_eq!(alpha_of(text, x, y), 1.0, "the word at {x},{y}");
        assert_eq!(alpha_of(bar, x, y), 1.0, "the bar at {x},{y}");
        assert!(distance(colour_at(bar, x, y), blue) < 2.0 / 255.0, "at {x},{y}: {:?}", colour_at(bar, x, y));
    }
    for (x, y) in [(51, 47), (56, 40), (62, 41), (73, 47), (80, 54)] {
        assert_eq!(alpha_of(bar, x, y), 0.0, "beside the bar at {x},{y}");
    }
    assert_recomposites(&layout, &rgb, w, &[(66, 47), (64, 40), (73, 47), (50, 47), (89, 47), (56, 40), (68, 47), (68, 20)]);
}

#[test]
fn a_disc_a_line_crosses_runs_on_beneath_the_line() {
    // A blue disc (centre 46,40, radius 20) and an orange line over it (columns 20-99, rows
    // 31-35, rows 30 and 36 half covered), over a flat background: the line cuts the disc in
    // two.
    let (w, h) = (120, 80);
    let (bg, blue, orange) = ([0.95, 0.95, 0.9], [0.1, 0.3, 0.8], [0.95, 0.5, 0.1]);
    let disc = |x: usize, y: usize| disc_coverage(x, y, (46.0, 40.0), 20.0);
    let rgb = drawn(w, h, |x, y| {
        let a = if !(20..100).contains(&x) { 0.0 } else if (31..36).contains(&y) { 1.0 } else if y == 30 || y == 36 { 0.5 } else { 0.0 };
        over(orange, a, over(blue, disc(x, y), bg))
    });
    let image = Image { rgb: &rgb, width: w, height: h };
    let layout = decompose(&image, &[], 16.0, 31);
    let shapes: Vec<&Element> = layout.elements.iter().filter(|e| e.kind == Kind::Shape).collect();
    assert_eq!(shapes.len(), 2, "{:?}", layout.elements.iter().map(|e| (e.kind, e.x0, e.y0, e.width, e.height, e.coverage)).collect::<Vec<_>>());
    let (under, line) = (shapes[0], shapes[1]);
    assert!(distance(colour_at(under, 46, 50), blue) < 2.0 / 255.0, "the disc is under: {:?}", colour_at(under, 46, 50));
    assert!(distance(colour_at(line, 80, 33), orange) < 2.0 / 255.0, "the line is on top: {:?}", colour_at(line, 80, 33));
    // Under the line and its edges the disc is whole, in its colour; the line's edge over it
    // is half covered, unmixed against the disc; beside the disc, nothing of it.
    for x in [36, 46, 56] {
        for y in 30..37 {
            assert_eq!(alpha_of(under, x, y), 1.0, "the disc at {x},{y}");
            assert!(distance(colour_at(under, x, y), blue) < 2.0 / 255.0);
        }
        for y in [30, 36] {
            assert!((alpha_of(line, x, y) - 0.5).abs() < 0.05, "the line's edge at {x},{y}: {}", alpha_of(line, x, y));
        }
    }
    for x in [22, 70, 90] {
        assert_eq!(alpha_of(under, x, 33), 0.0, "beside the disc at {x},33");
    }
    assert_recomposites(&layout, &rgb, w, &[(46, 30), (46, 33), (46, 36), (70, 30), (70, 33), (46, 50), (46, 25)]);
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

#[test]
fn a_disc_a_smaller_letter_lies_on_runs_on_beneath_it() {
    // A blue disc (centre 50,40, radius 30) and on it a dark "L" (columns 40-45 of rows
    // 25-54, and rows 49-54 of columns 40-61), over a flat background. The letter is no
    // convex shape, so its outline does not tell which is on top; the smaller lies on the
    // larger.
    let (w, h) = (110, 80);
    let (bg, blue, dark) = ([0.95, 0.95, 0.9], [0.1, 0.3, 0.8], [0.15, 0.1, 0.1]);
    let letter = |x: usize, y: usize| ((40..46).contains(&x) && (25..55).contains(&y)) || ((40..62).contains(&x) && (49..55).contains(&y));
    let rgb = drawn(w, h, |x, y| if letter(x, y) { dark } else { over(blue, disc_coverage(x, y, (50.0, 40.0), 30.0), bg) });
    let image = Image { rgb: &rgb, width: w, height: h };
    let layout = decompose(&image, &[], 16.0, 31);
    let shapes: Vec<&Element> = layout.elements.iter().filter(|e| e.kind == Kind::Shape).collect();
    assert_eq!(shapes.len(), 2, "{:?}", layout.elements.iter().map(|e| (e.kind, e.x0, e.y0, e.width, e.height, e.coverage)).collect::<Vec<_>>());
    let (under, top) = (shapes[0], shapes[1]);
    assert!(distance(colour_at(top, 42, 30), dark) < 2.0 / 255.0, "the letter is on top: {:?}", colour_at(top, 42, 30));
    for (x, y) in [(42, 30), (43, 40), (50, 52), (58, 50)] {
        assert_eq!(alpha_of(under, x, y), 1.0, "the disc under the letter at {x},{y}");
        assert!(distance(colour_at(under, x, y), blue) < 2.0 / 255.0, "at {x},{y}: {:?}", colour_at(under, x, y));
    }
    assert_recomposites(&layout, &rgb, w, &[(42, 30), (50, 52), (39, 40), (46, 40), (62, 50), (90, 70)]);
}

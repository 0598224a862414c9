//! What lies over what: which shape is on top, and the layers that run on under what
//! covers them (rectangles, shapes under words and other shapes, tinted panels).

use super::*;

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
    let (under, top) = two_shapes(&layout);
    assert!(top.coverage > under.coverage, "the rectangle is the larger: {} against {}", top.coverage, under.coverage);
    assert!(distance(colour_at(under, 30, 40), disc) < 2.0 / 255.0, "the disc is under: {:?}", colour_at(under, 30, 40));
    assert!(distance(colour_at(top, 100, 60), rect) < 2.0 / 255.0, "the rectangle is on top: {:?}", colour_at(top, 100, 60));
    assert_recomposites(&layout, &rgb, w, &[(50, 44), (50, 50), (60, 40), (50, 75), (30, 40), (100, 60)]);
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
    let (under, line) = two_shapes(&layout);
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
    let (under, top) = two_shapes(&layout);
    assert!(distance(colour_at(top, 42, 30), dark) < 2.0 / 255.0, "the letter is on top: {:?}", colour_at(top, 42, 30));
    for (x, y) in [(42, 30), (43, 40), (50, 52), (58, 50)] {
        assert_eq!(alpha_of(under, x, y), 1.0, "the disc under the letter at {x},{y}");
        assert!(distance(colour_at(under, x, y), blue) < 2.0 / 255.0, "at {x},{y}: {:?}", colour_at(under, x, y));
    }
    assert_recomposites(&layout, &rgb, w, &[(42, 30), (50, 52), (39, 40), (46, 40), (62, 50), (90, 70)]);
}

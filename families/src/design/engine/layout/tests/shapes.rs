//! Shapes: crisp edges, pieces of one shape, thin lines, steep gradients, the layer count.

use super::*;

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

#[test]
fn shapes_of_one_colour_in_a_row_are_one_layer_and_others_stay_apart() {
    let (w, h) = (200, 120);
    // On a pale background: five dark "letters" in a row (heights 14 to 20, 6 pixels apart),
    // a sixth of another colour level with them, and one of the letters' colour far below.
    let letters = [(20, 30, 10, 20), (36, 36, 10, 14), (52, 30, 8, 20), (66, 36, 10, 14), (82, 30, 12, 20)];
    let ink = [0.1, 0.15, 0.3];
    let red = [0.85, 0.2, 0.15];
    let rgb = drawn(w, h, |x, y| {
        let inside = |&(x0, y0, bw, bh): &(usize, usize, usize, usize)| (x0..x0 + bw).contains(&x) && (y0..y0 + bh).contains(&y);
        if letters.iter().any(inside) || inside(&(40, 90, 12, 18)) {
            ink
        } else if inside(&(100, 30, 10, 20)) {
            red
        } else {
            [0.95, 0.94, 0.9]
        }
    });
    let layout = decompose(&Image { rgb: &rgb, width: w, height: h }, &[], 16.0, 31);
    let boxes: Vec<(usize, usize, usize, usize)> = layout.elements.iter().map(|e| (e.x0, e.y0, e.width, e.height)).collect();
    assert_eq!(boxes.len(), 3, "{boxes:?}");
    assert!(boxes.contains(&(20, 30, 74, 20)), "the five letters, one layer: {boxes:?}");
    assert!(boxes.contains(&(100, 30, 10, 20)), "the red one, apart: {boxes:?}");
    assert!(boxes.contains(&(40, 90, 12, 18)), "the one below, apart: {boxes:?}");
    assert_recomposites(&layout, &rgb, w, &[(25, 40), (60, 40), (104, 40), (45, 95), (5, 5)]);
}

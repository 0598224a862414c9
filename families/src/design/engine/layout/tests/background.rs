//! The background: flat colours and gradients continued exactly under what is taken off,
//! and an image with nothing on it.

use super::*;

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
fn a_blank_image_is_its_background_alone() {
    let (w, h) = (32, 16);
    let rgb = vec![0.5f32; 3 * w * h];
    let layout = decompose(&Image { rgb: &rgb, width: w, height: h }, &[], 4.0, 31);
    assert!(layout.elements.is_empty());
    assert_eq!(layout.background, rgb);
}

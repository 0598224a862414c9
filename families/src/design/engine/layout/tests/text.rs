//! Text layers: words set as one block, and words on a label the detector boxed whole.

use super::*;

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

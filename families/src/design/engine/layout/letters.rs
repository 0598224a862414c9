//! Shapes of one colour set in a row, as the letters of a word are (a word the detector did
//! not box: an oblique bitmap word, a logotype) or a set of stripes: one layer, as a designer
//! sets a word in one text box and repeats a stripe in one layer. Two shapes are of one row on
//! the rule that joins the words of a line into a block (`text.rs`): level with each other,
//! of one size, at most [`WORD_GAP`] of the taller one's height apart, and of one colour
//! (neighbours within [`BLOCK_COLOUR`], so a gradient running across a word joins it too).

use super::text::{of_one_line, BLOCK_COLOUR};
use super::*;

/// Joins the shapes among `elements[shapes]` that are of one row (each into the first of its
/// row, the others left empty for the coverage filter to drop), and passes the pairs in
/// `over` (element ids) of those joined on to the shape they joined.
pub(super) fn join_rows(elements: &mut [Element], shapes: std::ops::Range<usize>, over: &mut Vec<(usize, usize)>) {
    let candidates: Vec<usize> = shapes.filter(|&k| elements[k].kind == Kind::Shape && !elements[k].tint && elements[k].coverage > 0.0).collect();
    let colours: Vec<[f32; 3]> = candidates.iter().map(|&k| mean_colour(&elements[k])).collect();
    let mut parent: Vec<usize> = (0..candidates.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for a in 0..candidates.len() {
        for b in a + 1..candidates.len() {
            let (ea, eb) = (&elements[candidates[a]], &elements[candidates[b]]);
            if distance(colours[a], colours[b]) <= BLOCK_COLOUR && of_one_line(ea, eb) {
                let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
                parent[ra.max(rb)] = ra.min(rb);
            }
        }
    }
    for a in 0..candidates.len() {
        let r = root(&mut parent, a);
        if r == a {
            continue;
        }
        let (into, from) = (candidates[r], candidates[a]);
        let mut joined = merge(&elements[into], &elements[from]);
        joined.sort_as = joined.coverage;
        elements[into] = joined;
        let (gone, kept) = (elements[from].id, elements[into].id);
        elements[from].coverage = 0.0;
        for pair in over.iter_mut() {
            for id in [&mut pair.0, &mut pair.1] {
                if *id == gone {
                    *id = kept;
                }
            }
        }
    }
    over.retain(|(a, b)| a != b);
}

/// An element's colour: the mean of its pixels' colours, weighted by alpha.
fn mean_colour(e: &Element) -> [f32; 3] {
    let m = e.width * e.height;
    let (mut sum, mut weight) = ([0f64; 3], 0f64);
    for j in 0..m {
        let a = f64::from(e.rgba[3 * m + j]);
        for (c, s) in sum.iter_mut().enumerate() {
            *s += a * f64::from(e.rgba[c * m + j]);
        }
        weight += a;
    }
    sum.map(|s| (s / weight.max(f64::MIN_POSITIVE)) as f32)
}

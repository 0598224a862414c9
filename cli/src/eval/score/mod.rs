//! The scoring core of `lamina eval`: LayerD's layer-decomposition metric (Suzuki et al.,
//! ICCV 2025, github.com/CyberAgentAILab/LayerD, Apache-2.0) reproduced on plain RGBA8
//! buffers, with no I/O. `docs/eval.md` states the definitions; this file follows LayerD's
//! Python (`layerd.evaluation` and `group_top_layers_indices`) step by step, including its
//! floating-point evaluation order:
//!
//! - layers of one stack that do not overlap (hard masks, alpha > 0) are grouped and
//!   composited with Pillow's integer `alpha_composite` ([`over`]);
//! - per pair: RGB L1 over the reference's pixels with alpha > 0 ([`rgb_l1`]), soft alpha
//!   IoU ([`alpha_iou`]) and their cost ([`cost`]);
//! - the two sequences are aligned by dynamic time warping ([`dtw_path`]);
//! - up to `max_edits` greedy merges of adjacent layers, on either side ([`evaluate`]);
//! - per-level means over samples, carrying a sample's last result forward ([`aggregate`]).
//!
//! Sums over pixels and the means over lists reproduce numpy's summation (pairwise, as
//! numpy 2.3 and later sum a contiguous array, [`np_sum`]); Python's `sum` is a plain
//! left-to-right sum.

mod dtw;
mod metrics;
mod numpy;
mod pillow;

use std::collections::HashMap;

pub use dtw::*;
pub use metrics::*;
pub use numpy::*;
pub use pillow::*;

/// One layer: 8-bit RGBA, straight (not premultiplied) alpha, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgba {
    pub width: u32,
    pub height: u32,
    /// `width * height * 4` bytes.
    pub data: Vec<u8>,
}

impl Rgba {
    /// A fully transparent (0, 0, 0, 0) layer.
    pub fn transparent(width: u32, height: u32) -> Rgba {
        Rgba { width, height, data: vec![0; width as usize * height as usize * 4] }
    }

    fn pixels(&self) -> std::slice::ChunksExact<'_, u8> {
        self.data.chunks_exact(4)
    }
}

/// The scores LayerD records for one edit level of one sample, in its key order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EditScore {
    pub edits: usize,
    pub cost: f64,
    pub rgb_l1: f64,
    pub alpha_iou: f64,
}

/// One entry of LayerD's `aggregated_scores.json`, in its key order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aggregate {
    pub max_edits: usize,
    pub avg_edits: f64,
    pub count: usize,
    pub avg_cost: f64,
    pub avg_rgb_l1: f64,
    pub avg_alpha_iou: f64,
}

/// Why a pair of stacks cannot be scored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScoreError {
    /// LayerD skips a sample with fewer than 2 layers on either side (pred checked first).
    TooFewLayers { side: &'static str, count: usize },
    /// A layer's size differs from the first prediction layer's (LayerD fails on this).
    SizeMismatch { side: &'static str, index: usize, size: (u32, u32), expected: (u32, u32) },
    /// A layer's buffer does not hold `width * height * 4` bytes.
    BadBuffer { side: &'static str, index: usize },
}

impl std::fmt::Display for ScoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScoreError::TooFewLayers { side, count } => write!(
                f,
                "{side} has {count} layer{}; LayerD's evaluation needs at least 2 layers on each side",
                if *count == 1 { "" } else { "s" }
            ),
            ScoreError::SizeMismatch { side, index, size, expected } => write!(
                f,
                "{side} layer {index} is {}x{}, but the layers are {}x{}",
                size.0, size.1, expected.0, expected.1
            ),
            ScoreError::BadBuffer { side, index } => {
                write!(f, "{side} layer {index}: its buffer does not hold width x height RGBA pixels")
            }
        }
    }
}

impl std::error::Error for ScoreError {}

// ---------------------------------------------------------------------------------------
// The edit loop

/// A layer in the edit loop, with an identity for the score cache.
struct Node {
    id: usize,
    image: Rgba,
}

/// Per-pair scores by (first argument, reference) identity: the metrics are pure, so a
/// pair is computed once however often LayerD's code asks for it.
struct Scorer {
    cache: HashMap<(usize, usize), PairScore>,
    next_id: usize,
}

impl Scorer {
    fn node(&mut self, image: Rgba) -> Node {
        self.next_id += 1;
        Node { id: self.next_id, image }
    }

    fn score(&mut self, x: &Node, y: &Node) -> PairScore {
        *self.cache.entry((x.id, y.id)).or_insert_with(|| pair_score(&x.image, &y.image))
    }

    /// `1 - cost(x, y)`, Merge's similarity.
    fn sim(&mut self, x: &Node, y: &Node) -> f64 {
        1.0 - self.score(x, y).cost
    }

    /// Python's `sum(sim(x, g) for g in group)`.
    fn sim_sum(&mut self, x: &Node, group: &[&Node]) -> f64 {
        let mut acc = 0.0;
        for g in group {
            acc += self.sim(x, g);
        }
        acc
    }

    /// `DynamicTimeWarping.__call__`: the path and the scores averaged over it.
    fn dtw(&mut self, pred: &[Node], gt: &[Node], edits: usize) -> (Vec<(usize, usize)>, EditScore) {
        let c: Vec<Vec<f64>> = pred.iter().map(|p| gt.iter().map(|g| self.score(p, g).cost).collect()).collect();
        let path = dtw_path(&c);
        let scores: Vec<PairScore> = path.iter().map(|&(i, j)| self.score(&pred[i], &gt[j])).collect();
        let mean = |f: fn(&PairScore) -> f64| np_mean(&scores.iter().map(f).collect::<Vec<_>>());
        let score = EditScore { edits, cost: mean(|s| s.cost), rgb_l1: mean(|s| s.rgb_l1), alpha_iou: mean(|s| s.alpha_iou) };
        (path, score)
    }

    /// `Merge._compute_merged_scores` + `_find_best_match` for one side: the adjacent pair
    /// whose merge gains most by LayerD's rule (first on ties), with the merged image.
    fn best_merge(&mut self, ls: &[Node], gts: &[Node], pairs: &[(usize, usize)]) -> Option<(usize, f64, Node)> {
        if ls.len() <= 2 {
            return None;
        }
        let mut best: Option<(usize, f64, Node)> = None;
        for i in 0..ls.len() - 1 {
            let merged = over(&ls[i].image, &ls[i + 1].image);
            let merged = self.node(merged);
            let g0: Vec<&Node> = pairs.iter().filter(|p| p.0 == i).map(|p| &gts[p.1]).collect();
            let g1: Vec<&Node> = pairs.iter().filter(|p| p.0 == i + 1).map(|p| &gts[p.1]).collect();
            let cur = self.sim_sum(&ls[i], &g0) + self.sim_sum(&ls[i + 1], &g1);
            let mut candidates = vec![self.sim_sum(&merged, &g0), self.sim_sum(&merged, &g1)];
            if i + 2 < ls.len() {
                candidates.push(self.sim_sum(&ls[i + 2], &g0));
                candidates.push(self.sim_sum(&ls[i + 2], &g1));
            }
            // LayerD: `adjustedDs = [d + candidateDs[0] for d in candidateDs[1:]]`.
            let mut max_d = f64::NEG_INFINITY;
            for d in &candidates[1..] {
                let adjusted = d + candidates[0];
                if adjusted > max_d {
                    max_d = adjusted;
                }
            }
            if max_d > cur {
                let gain = max_d - cur;
                if best.as_ref().is_none_or(|b| gain > b.1) {
                    best = Some((i, gain, merged));
                }
            }
        }
        best
    }
}

/// LayerD's `LayersEditDist(max_edits)(pred, gt)`: group both stacks, align them, then up
/// to `max_edits` greedy merges (prediction or reference side, whichever gains more; the
/// reference on ties), recording the scores after each. Layers are bottom first.
pub fn evaluate(pred: &[Rgba], gt: &[Rgba], max_edits: usize) -> Result<Vec<EditScore>, ScoreError> {
    check(pred, gt)?;
    let mut scorer = Scorer { cache: HashMap::new(), next_id: 0 };
    let mut p: Vec<Node> = grouped(pred).into_iter().map(|im| scorer.node(im)).collect();
    let mut g: Vec<Node> = grouped(gt).into_iter().map(|im| scorer.node(im)).collect();
    let (mut path, score) = scorer.dtw(&p, &g, 0);
    let mut results = vec![score];
    let mut edits = 0;
    while edits < max_edits {
        let swapped: Vec<(usize, usize)> = path.iter().map(|&(i, j)| (j, i)).collect();
        let best_pred = scorer.best_merge(&p, &g, &path);
        let best_gt = scorer.best_merge(&g, &p, &swapped);
        let gain = |b: &Option<(usize, f64, Node)>| b.as_ref().map_or(f64::NEG_INFINITY, |b| b.1);
        let (side, (i, _, merged)) = match (gain(&best_pred) > gain(&best_gt), best_pred, best_gt) {
            (true, Some(b), _) => (&mut p, b),
            (_, _, Some(b)) => (&mut g, b),
            _ => break,
        };
        side.splice(i..i + 2, [merged]);
        edits += 1;
        let (new_path, score) = scorer.dtw(&p, &g, edits);
        path = new_path;
        results.push(score);
    }
    Ok(results)
}

/// The checks LayerD applies before scoring: at least 2 layers a side (else it skips the
/// sample), and every layer the same size (else it fails).
pub fn check(pred: &[Rgba], gt: &[Rgba]) -> Result<(), ScoreError> {
    for (side, layers) in [("pred", pred), ("gt", gt)] {
        if layers.len() < 2 {
            return Err(ScoreError::TooFewLayers { side, count: layers.len() });
        }
    }
    let expected = (pred[0].width, pred[0].height);
    for (side, layers) in [("pred", pred), ("gt", gt)] {
        for (index, layer) in layers.iter().enumerate() {
            if (layer.width, layer.height) != expected {
                return Err(ScoreError::SizeMismatch { side, index, size: (layer.width, layer.height), expected });
            }
            if layer.data.len() != layer.width as usize * layer.height as usize * 4 {
                return Err(ScoreError::BadBuffer { side, index });
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Aggregation

/// LayerD's `LayersEditDist.aggregate`: for each level 0..(longest list), means over every
/// sample, a sample that stopped earlier contributing its last result; `count` is how many
/// samples reached the level. Samples in the order given (LayerD: sorted by name).
pub fn aggregate(results: &[Vec<EditScore>]) -> Vec<Aggregate> {
    let levels = results.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(levels);
    for i in 0..levels {
        // LayerD lists the samples that reach level i first, then the others' last results.
        let mut picked: Vec<&EditScore> = results.iter().filter_map(|r| r.get(i)).collect();
        let count = picked.len();
        if count == 0 {
            continue;
        }
        picked.extend(results.iter().filter(|r| i >= r.len()).filter_map(|r| r.last()));
        let mean = |f: &dyn Fn(&EditScore) -> f64| np_mean(&picked.iter().map(|s| f(s)).collect::<Vec<_>>());
        out.push(Aggregate {
            max_edits: i,
            avg_edits: mean(&|s| s.edits as f64),
            count,
            avg_cost: mean(&|s| s.cost),
            avg_rgb_l1: mean(&|s| s.rgb_l1),
            avg_alpha_iou: mean(&|s| s.alpha_iou),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w` x `h` layer filled with `px`.
    fn solid(w: u32, h: u32, px: [u8; 4]) -> Rgba {
        Rgba { width: w, height: h, data: px.repeat((w * h) as usize) }
    }

    /// A transparent `w` x `h` layer with `px` on the rectangle [x0, x1) x [y0, y1).
    fn rect(w: u32, h: u32, (x0, y0, x1, y1): (u32, u32, u32, u32), px: [u8; 4]) -> Rgba {
        let mut layer = Rgba::transparent(w, h);
        for y in y0..y1 {
            for x in x0..x1 {
                let k = ((y * w + x) * 4) as usize;
                layer.data[k..k + 4].copy_from_slice(&px);
            }
        }
        layer
    }

    /// Pillow's integer `alpha_composite` on hand-computed pixels: a transparent source
    /// keeps the destination's four bytes (colour under alpha 0 included); an opaque source
    /// replaces it; half alpha rounds 127.5 down to 128 by Pillow's shift arithmetic (not
    /// float rounding); two half-transparent colours give (170, 0, 85, 192).
    #[test]
    fn alpha_composite_integer_rounding() {
        assert_eq!(over_pixel([10, 20, 30, 0], [1, 2, 3, 0]), [10, 20, 30, 0]);
        assert_eq!(over_pixel([9, 9, 9, 77], [200, 100, 0, 255]), [200, 100, 0, 255]);
        assert_eq!(over_pixel([0, 0, 0, 255], [255, 255, 255, 128]), [128, 128, 128, 255]);
        assert_eq!(over_pixel([0, 0, 255, 128], [255, 0, 0, 128]), [170, 0, 85, 192]);
        // Over a transparent destination the source comes through unchanged.
        assert_eq!(over_pixel([50, 60, 70, 0], [1, 2, 3, 4]), [1, 2, 3, 4]);
        let back = solid(2, 1, [0, 0, 255, 128]);
        let front = rect(2, 1, (0, 0, 1, 1), [255, 0, 0, 128]);
        assert_eq!(over(&back, &front).data, vec![170, 0, 85, 192, 0, 0, 255, 128]);
    }

    /// numpy's pairwise summation: short lists add left to right, longer ones in eight
    /// lanes and halves; on values whose sums are exact every order agrees.
    #[test]
    fn numpy_summation_order() {
        assert_eq!(np_sum(&[]), 0.0);
        assert_eq!(np_sum(&[1.0, 2.0, 3.0]), 6.0);
        let ints: Vec<f64> = (0..20000).map(|v| v as f64).collect();
        assert_eq!(np_sum(&ints), 19999.0 * 20000.0 / 2.0);
        // 1e16 + 1 + 1 ... sequentially loses every 1; pairwise adds the ones in lanes first.
        let mut v = vec![1e16];
        v.extend(std::iter::repeat_n(1.0, 15));
        assert_eq!(np_sum(&v), 1e16 + 8.0 + 6.0);
        assert_eq!(np_mean(&[1.0, 2.0]), 1.5);
    }

    /// Identical stacks score perfectly at 0 edits and no merge can beat that:
    /// LayerD writes `[{edits: 0, cost: 0.0, rgb_l1: 0.0, alpha_iou: 1.0}]`.
    #[test]
    fn identical_stacks_are_perfect() {
        let stack = vec![
            solid(6, 4, [10, 20, 30, 255]),
            rect(6, 4, (0, 0, 4, 3), [200, 10, 10, 255]),
            rect(6, 4, (2, 1, 6, 4), [10, 200, 10, 128]),
        ];
        let result = evaluate(&stack, &stack, 5).unwrap();
        assert_eq!(result, vec![EditScore { edits: 0, cost: 0.0, rgb_l1: 0.0, alpha_iou: 1.0 }]);
    }

    /// A colour offset of `k` levels on every pixel the reference covers gives RGB L1
    /// k/255 (to within LayerD's 1e-8 added to the pixel count in the denominator and the
    /// f64 rounding of the three-channel mean), alpha IoU 1 and cost (k/255)/2; the exact
    /// value of LayerD's formula is checked too.
    #[test]
    fn colour_offset_gives_offset_over_255() {
        for k in [1u8, 17, 51, 128, 255] {
            let gt = vec![solid(5, 3, [0, 0, 0, 255]), rect(5, 3, (1, 1, 4, 3), [0, 0, 0, 255])];
            let pred = vec![solid(5, 3, [k, k, k, 255]), rect(5, 3, (1, 1, 4, 3), [k, k, k, 255])];
            let x = k as f64 / 255.0;
            let s = pair_score(&pred[0], &gt[0]);
            assert!((s.rgb_l1 - x).abs() < 1e-8, "k={k}: {}", s.rgb_l1);
            let per_pixel = ((x + x) + x) / 3.0;
            assert_eq!(s.rgb_l1, np_sum(&[per_pixel; 15]) / (15.0 + 1e-8));
            assert_eq!(s.alpha_iou, 1.0);
            let result = evaluate(&pred, &gt, 5).unwrap();
            assert_eq!(result.len(), 1);
            assert!((result[0].rgb_l1 - x).abs() < 1e-8, "k={k}: {result:?}");
            assert_eq!(result[0].alpha_iou, 1.0);
            assert!((result[0].cost - x / 2.0).abs() < 1e-8);
        }
        // The mask is the reference's alpha: colour under reference alpha 0 does not count,
        // and the prediction's alpha does not matter.
        let g = rect(4, 1, (0, 0, 2, 1), [0, 0, 0, 255]);
        let mut p = solid(4, 1, [255, 255, 255, 0]);
        p.data[0..3].copy_from_slice(&[0, 0, 0]);
        assert!((rgb_l1(&p, &g) - 0.5).abs() < 1e-8);
    }

    /// Disjoint alphas have IoU 0 (cost at least 1/2), and two empty layers have IoU 0,
    /// not 1, as in LayerD's `calc_soft_iou`.
    #[test]
    fn disjoint_alphas_have_zero_iou() {
        let a = rect(4, 4, (0, 0, 2, 4), [1, 2, 3, 255]);
        let b = rect(4, 4, (2, 0, 4, 4), [1, 2, 3, 255]);
        assert_eq!(alpha_iou(&a, &b), 0.0);
        assert!(cost(&a, &b) >= 0.5);
        let empty = Rgba::transparent(4, 4);
        assert_eq!(alpha_iou(&empty, &empty), 0.0);
        assert_eq!(cost(&empty, &empty), 0.5);
    }

    /// Soft IoU on hand-picked alphas: (255, 128, 0, 51) against (255, 255, 102, 0) gives
    /// sum(min) / sum(max) = (255 + 128) / (255 + 255 + 102 + 51) = 383 / 663.
    #[test]
    fn soft_alpha_iou_by_hand() {
        let mk = |alphas: [u8; 4]| Rgba { width: 4, height: 1, data: alphas.iter().flat_map(|&a| [0, 0, 0, a]).collect() };
        let iou = alpha_iou(&mk([255, 128, 0, 51]), &mk([255, 255, 102, 0]));
        assert!((iou - 383.0 / 663.0).abs() < 1e-15, "{iou}");
        // Symmetric.
        assert_eq!(iou, alpha_iou(&mk([255, 255, 102, 0]), &mk([255, 128, 0, 51])));
    }

    /// Grouping peels off layers that overlap no later layer: background 0, A (1), B over
    /// A (2), C over the background only (3) give [[0], [1], [2, 3]]; an empty layer lands
    /// in the front-most group; groups composite in ascending order.
    #[test]
    fn groups_non_overlapping_top_layers() {
        let bg = solid(8, 4, [9, 9, 9, 255]);
        let a = rect(8, 4, (0, 0, 3, 2), [255, 0, 0, 255]);
        let b = rect(8, 4, (2, 1, 4, 3), [0, 255, 0, 255]);
        let c = rect(8, 4, (6, 0, 8, 4), [0, 0, 255, 255]);
        let layers = vec![bg.clone(), a.clone(), b.clone(), c.clone()];
        assert_eq!(group_top_layers(&layers), vec![vec![0], vec![1], vec![2, 3]]);
        let groups = grouped(&layers);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[2], over(&b, &c));
        // Disjoint layers over a background collapse to two groups; an empty layer joins
        // the front-most group.
        let empty = Rgba::transparent(8, 4);
        let layers = vec![bg.clone(), empty.clone(), a.clone(), c.clone()];
        assert_eq!(group_top_layers(&layers), vec![vec![0], vec![1, 2, 3]]);
        assert_eq!(group_top_layers(std::slice::from_ref(&bg)), vec![vec![0]]);
        // Fully nested layers stay apart.
        assert_eq!(group_top_layers(&[bg.clone(), a.clone(), a.clone()]), vec![vec![0], vec![1], vec![2]]);
    }

    /// DTW's backtrack on hand matrices: ties prefer the diagonal, then the step that
    /// lowers the prediction index; a zero-cost diagonal is followed.
    #[test]
    fn dtw_tie_breaking() {
        assert_eq!(dtw_path(&[vec![0.0, 0.0], vec![0.0, 0.0]]), vec![(0, 0), (1, 1)]);
        assert_eq!(dtw_path(&[vec![0.5]]), vec![(0, 0)]);
        assert_eq!(dtw_path(&[vec![0.1, 0.2, 0.3]]), vec![(0, 0), (0, 1), (0, 2)]);
        // At (1, 1): D[0][0] = 1 > D[0][1] = D[1][0] = 0.5 → the tie goes "up" (pred - 1).
        let c = vec![vec![1.0, -0.5], vec![-0.5, 0.0]];
        assert_eq!(dtw_path(&c), vec![(0, 0), (0, 1), (1, 1)]);
    }

    /// A prediction with an extra layer (a small patch over the foreground) aligns
    /// background-background, foreground-foreground and patch-foreground:
    /// path (0,0), (1,1), (2,1); the scores are the plain means over those three pairs, and
    /// the patch's RGB L1 counts its colour under alpha 0 where the reference is visible.
    #[test]
    fn dtw_aligns_extra_prediction_layer() {
        let bg = solid(8, 8, [30, 30, 30, 255]);
        let fg = rect(8, 8, (1, 1, 7, 7), [220, 40, 40, 255]);
        let patch = rect(8, 8, (2, 2, 4, 4), [220, 40, 40, 255]);
        let pred = vec![bg.clone(), fg.clone(), patch.clone()];
        let gt = vec![bg.clone(), fg.clone()];
        let c: Vec<Vec<f64>> = pred.iter().map(|p| gt.iter().map(|g| cost(p, g)).collect()).collect();
        assert_eq!(dtw_path(&c), vec![(0, 0), (1, 1), (2, 1)]);
        let result = evaluate(&pred, &gt, 0).unwrap();
        let patch_score = pair_score(&patch, &fg);
        assert_eq!(patch_score.alpha_iou, 4.0 / 36.0);
        assert_eq!(result.len(), 1);
        assert_eq!(result[0].cost, np_mean(&[0.0, 0.0, patch_score.cost]));
        assert_eq!(result[0].alpha_iou, np_mean(&[1.0, 1.0, patch_score.alpha_iou]));
        // The patch's colour under its alpha 0 (black) counts wherever the foreground is
        // visible: 32 of the foreground's 36 pixels differ by (220 + 40 + 40) / 3 levels.
        assert!((patch_score.rgb_l1 - 32.0 * (300.0 / 3.0 / 255.0) / 36.0).abs() < 1e-9);
        assert_eq!(result[0].rgb_l1, np_mean(&[0.0, 0.0, patch_score.rgb_l1]));
    }

    /// A foreground split into two overlapping prediction layers: merging them (pred side,
    /// i = 1) restores the reference, so edits=1 scores perfectly; then both sides have 2
    /// layers, no merge is possible and the list ends (no padding up to max_edits).
    #[test]
    fn merge_edit_improves_at_one_edit() {
        let bg = solid(8, 8, [30, 30, 30, 255]);
        let fg = rect(8, 8, (1, 1, 7, 7), [220, 40, 40, 255]);
        let patch = rect(8, 8, (2, 2, 4, 4), [220, 40, 40, 255]);
        let result = evaluate(&[bg.clone(), fg.clone(), patch], &[bg, fg], 5).unwrap();
        assert_eq!(result.len(), 2);
        assert!(result[0].cost > 0.0);
        assert_eq!(result[1], EditScore { edits: 1, cost: 0.0, rgb_l1: 0.0, alpha_iou: 1.0 });
    }

    /// The reference side is merged too: a reference foreground split in two against a
    /// single prediction foreground is merged on the GT side (its candidates compare the
    /// merged reference against the prediction).
    #[test]
    fn merge_edit_on_reference_side() {
        let bg = solid(8, 8, [30, 30, 30, 255]);
        let fg = rect(8, 8, (1, 1, 7, 7), [220, 40, 40, 255]);
        let patch = rect(8, 8, (2, 2, 4, 4), [220, 40, 40, 255]);
        let result = evaluate(&[bg.clone(), fg.clone()], &[bg, fg, patch], 5).unwrap();
        assert_eq!(result.len(), 2);
        assert_eq!(result[1], EditScore { edits: 1, cost: 0.0, rgb_l1: 0.0, alpha_iou: 1.0 });
        // max_edits = 0 records only the unedited alignment.
        assert_eq!(
            evaluate(&[solid(2, 2, [0; 4]), solid(2, 2, [0; 4])], &[solid(2, 2, [0; 4]), solid(2, 2, [0; 4])], 0)
                .unwrap()
                .len(),
            1
        );
    }

    /// Aggregation: means over every sample at each level, a sample that stopped early
    /// carrying its last result forward; `count` says how many reached the level; the
    /// list is as long as the longest sample's.
    #[test]
    fn aggregate_carries_last_result_forward() {
        let a = vec![
            EditScore { edits: 0, cost: 0.25, rgb_l1: 0.5, alpha_iou: 0.0 },
            EditScore { edits: 1, cost: 0.0, rgb_l1: 0.0, alpha_iou: 1.0 },
        ];
        let b = vec![EditScore { edits: 0, cost: 0.5, rgb_l1: 0.25, alpha_iou: 0.5 }];
        let agg = aggregate(&[a, b]);
        assert_eq!(agg.len(), 2);
        assert_eq!(
            agg[0],
            Aggregate { max_edits: 0, avg_edits: 0.0, count: 2, avg_cost: 0.375, avg_rgb_l1: 0.375, avg_alpha_iou: 0.25 }
        );
        assert_eq!(
            agg[1],
            Aggregate { max_edits: 1, avg_edits: 0.5, count: 1, avg_cost: 0.25, avg_rgb_l1: 0.125, avg_alpha_iou: 0.75 }
        );
        assert!(aggregate(&[]).is_empty());
    }

    /// Fewer than 2 layers (pred checked first) is LayerD's skip; a layer of another size
    /// is an error; neither panics.
    #[test]
    fn bad_stacks_are_errors() {
        let l = solid(2, 2, [0, 0, 0, 255]);
        assert_eq!(evaluate(std::slice::from_ref(&l), &[], 5), Err(ScoreError::TooFewLayers { side: "pred", count: 1 }));
        assert_eq!(
            evaluate(&[l.clone(), l.clone()], std::slice::from_ref(&l), 5),
            Err(ScoreError::TooFewLayers { side: "gt", count: 1 })
        );
        let big = solid(3, 2, [0, 0, 0, 255]);
        assert!(matches!(
            evaluate(&[l.clone(), l.clone()], &[l.clone(), big], 5),
            Err(ScoreError::SizeMismatch { side: "gt", index: 1, .. })
        ));
        let short = Rgba { width: 2, height: 2, data: vec![0; 3] };
        assert_eq!(
            evaluate(&[l.clone(), short], &[l.clone(), l.clone()], 5),
            Err(ScoreError::BadBuffer { side: "pred", index: 1 })
        );
    }
}

//! Turning alpha-add layers (alphas sum to 1 at every pixel; image = sum of alpha * colour)
//! into layers an editor stacks with the normal blend mode, and merging alpha-add layers.

use tch::{Kind, Tensor};

use lamina_common::params::{DecomposeParams, LayerCount, AUTO_DISTANCE};

/// Converts alpha-add layers to normal-blend layers, bottom first.
///
/// `alpha` is `[B,L,1,H,W]` with alphas summing to 1 over L. Layer i gets
/// `alpha_i / sum_{j<=i} alpha_j` (0 where that sum is 0): compositing the layers bottom to
/// top with "over" then rebuilds `sum_i alpha_i * colour_i`.
pub fn alpha_add_to_normal(alpha: &Tensor) -> Tensor {
    let cumulative = alpha.cumsum(1, Kind::Float);
    let ratio = alpha / cumulative.clamp_min(1e-12);
    ratio.where_self(&cumulative.gt(1e-6), &ratio.zeros_like()).clamp(0.0, 1.0)
}

/// Merges alpha-add layers exactly: alphas add, colours average weighted by alpha.
///
/// `groups[b][n]` lists the layers of image b that form output layer n (every image must
/// have the same number of groups). `colour` is `[B,L,3,H,W]`, `alpha` `[B,L,1,H,W]`.
pub fn merge_alpha_add(colour: &Tensor, alpha: &Tensor, groups: &[Vec<Vec<usize>>]) -> (Tensor, Tensor) {
    let (b, l) = (colour.size()[0], colour.size()[1]);
    let n = groups.first().map_or(0, Vec::len) as i64;
    let mut assign = vec![0f32; (b * n * l) as usize];
    for (bi, image_groups) in groups.iter().enumerate() {
        for (ni, group) in image_groups.iter().enumerate() {
            for &li in group {
                assign[(bi as i64 * n * l + ni as i64 * l + li as i64) as usize] = 1.0;
            }
        }
    }
    let assign = Tensor::from_slice(&assign).view([b, n, l]).to_device(colour.device());
    let merged_alpha = Tensor::einsum("bnl,blchw->bnchw", &[&assign, alpha], None::<&[i64]>);
    let premultiplied = Tensor::einsum("bnl,blchw->bnchw", &[&assign, &(colour * alpha)], None::<&[i64]>);
    let merged_colour = (premultiplied / merged_alpha.clamp_min(1e-8)).clamp(0.0, 1.0);
    (merged_colour, merged_alpha)
}

/// Chooses which layers to merge so that `target` remain: repeatedly joins the two groups
/// whose union costs least (Ward's criterion: alpha mass times squared colour distance), so
/// small layers fold into the most similar neighbours first. Groups keep bottom-first order.
pub fn plan_merges(colours: &[[f64; 3]], masses: &[f64], target: usize) -> Vec<Vec<usize>> {
    struct Group {
        members: Vec<usize>,
        mass: f64,
        colour: [f64; 3],
    }
    let mut groups: Vec<Group> = colours
        .iter()
        .zip(masses)
        .enumerate()
        .map(|(i, (c, m))| Group { members: vec![i], mass: m.max(1e-9), colour: *c })
        .collect();
    while groups.len() > target.max(1) {
        let mut best = (f64::INFINITY, 0, 1);
        for i in 0..groups.len() {
            for j in i + 1..groups.len() {
                let (a, b) = (&groups[i], &groups[j]);
                let d2: f64 = (0..3).map(|c| (a.colour[c] - b.colour[c]).powi(2)).sum();
                let cost = a.mass * b.mass / (a.mass + b.mass) * d2;
                if cost < best.0 {
                    best = (cost, i, j);
                }
            }
        }
        let (_, i, j) = best;
        let b = groups.remove(j);
        let a = &mut groups[i];
        let mass = a.mass + b.mass;
        for c in 0..3 {
            a.colour[c] = (a.colour[c] * a.mass + b.colour[c] * b.mass) / mass;
        }
        a.mass = mass;
        a.members.extend(b.members);
        a.members.sort_unstable();
    }
    groups.sort_by_key(|g| g.members[0]);
    groups.into_iter().map(|g| g.members).collect()
}

/// Which model layers form each output layer under `params`, from each model layer's
/// palette colour (sRGB in [0,1]) and alpha mass (over an image of `pixels` pixels):
/// a fixed count merges by [`plan_merges`]; `auto` by [`auto_merges`]; then, with a minimum
/// coverage, [`merge_sparse`]. `None` when every model layer stays alone.
pub fn plan_layers(colours: &[[f64; 3]], masses: &[f64], pixels: f64, params: &DecomposeParams) -> Option<Vec<Vec<usize>>> {
    let k = colours.len();
    let mut groups = match params.layers {
        Some(LayerCount::Count(n)) if usize::from(n) < k => plan_merges(colours, masses, usize::from(n)),
        Some(LayerCount::Auto) => auto_merges(colours),
        _ => (0..k).map(|i| vec![i]).collect(),
    };
    if let Some(share) = params.min_coverage {
        merge_sparse(&mut groups, colours, masses, share.get() * pixels);
    }
    (groups.len() < k).then_some(groups)
}

fn distance(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    (0..3).map(|c| (a[c] - b[c]).powi(2)).sum::<f64>().sqrt()
}

/// `--layers auto`: joins the two groups whose farthest colours are nearest (complete
/// linkage) while those lie within [`AUTO_DISTANCE`]: every pair of colours inside a merged
/// layer is within it, so no merged layer spans colours far apart, whatever order the
/// merges take. Merging alpha-add layers is exact, so nothing visible is lost.
pub fn auto_merges(colours: &[[f64; 3]]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = (0..colours.len()).map(|i| vec![i]).collect();
    loop {
        let mut best = (f64::INFINITY, 0, 0);
        for i in 0..groups.len() {
            for j in i + 1..groups.len() {
                let linkage = groups[i]
                    .iter()
                    .flat_map(|&a| groups[j].iter().map(move |&b| (a, b)))
                    .map(|(a, b)| distance(&colours[a], &colours[b]))
                    .fold(0.0, f64::max);
                if linkage < best.0 {
                    best = (linkage, i, j);
                }
            }
        }
        let (linkage, i, j) = best;
        if linkage >= AUTO_DISTANCE {
            break;
        }
        let b = groups.remove(j);
        groups[i].extend(b);
        groups[i].sort_unstable();
    }
    groups.sort_by_key(|g| g[0]);
    groups
}

/// `--min-coverage`: while more than one group is left and the smallest covers less than
/// `min_mass` (alpha mass), it joins the group whose mean colour is nearest its own.
pub fn merge_sparse(groups: &mut Vec<Vec<usize>>, colours: &[[f64; 3]], masses: &[f64], min_mass: f64) {
    let mass = |g: &[usize]| g.iter().map(|&i| masses[i].max(0.0)).sum::<f64>();
    let colour = |g: &[usize]| {
        let m = mass(g);
        let weight = |i: usize| if m > 0.0 { masses[i].max(0.0) / m } else { 1.0 / g.len() as f64 };
        let mut c = [0.0; 3];
        for &i in g {
            for (ch, v) in c.iter_mut().enumerate() {
                *v += colours[i][ch] * weight(i);
            }
        }
        c
    };
    while groups.len() > 1 {
        let Some((small, m)) = groups.iter().map(|g| mass(g)).enumerate().min_by(|a, b| a.1.total_cmp(&b.1)) else { break };
        if m >= min_mass {
            break;
        }
        let own = colour(&groups[small]);
        let Some(into) = (0..groups.len())
            .filter(|&g| g != small)
            .min_by(|&a, &b| distance(&own, &colour(&groups[a])).total_cmp(&distance(&own, &colour(&groups[b]))))
        else {
            break;
        };
        let moved = std::mem::take(&mut groups[small]);
        groups[into].extend(moved);
        groups[into].sort_unstable();
        groups.remove(small);
    }
    groups.sort_by_key(|g| g[0]);
}

/// Pads every image's groups with empty ones to the batch's largest count (a batch is one
/// tensor): an empty group merges to a layer with no alpha, which is dropped unwritten.
pub fn pad_groups(mut groups: Vec<Vec<Vec<usize>>>) -> Vec<Vec<Vec<usize>>> {
    let n = groups.iter().map(Vec::len).max().unwrap_or(0);
    for g in &mut groups {
        g.resize(n, Vec::new());
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn over(layers: &[( [f32; 3], f32)]) -> [f32; 3] {
        let mut out = [0f32; 3];
        for (colour, a) in layers {
            for c in 0..3 {
                out[c] = colour[c] * a + out[c] * (1.0 - a);
            }
        }
        out
    }

    #[test]
    fn normal_blend_rebuilds_the_alpha_add_sum() {
        let alphas = [0.2f32, 0.0, 0.5, 0.3];
        let colours = [[1.0f32, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.5]];
        let alpha = Tensor::from_slice(&alphas).view([1, 4, 1, 1, 1]);
        let normal = Vec::<f32>::try_from(alpha_add_to_normal(&alpha).flatten(0, -1)).unwrap();
        let stacked: Vec<_> = colours.iter().copied().zip(normal.iter().copied()).collect();
        let got = over(&stacked);
        for c in 0..3 {
            let want: f32 = (0..4).map(|i| alphas[i] * colours[i][c]).sum();
            assert!((got[c] - want).abs() < 1e-6, "channel {c}: {} vs {want}", got[c]);
        }
        assert_eq!(normal[0], 1.0, "the bottom layer is opaque where it has any alpha");
        assert_eq!(normal[1], 0.0, "a layer with no alpha stays empty");
    }

    #[test]
    fn merging_is_exact_for_alpha_add_layers() {
        let colour = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0]).view([1, 3, 3, 1, 1]);
        let alpha = Tensor::from_slice(&[0.25f32, 0.25, 0.5]).view([1, 3, 1, 1, 1]);
        let (mc, ma) = merge_alpha_add(&colour, &alpha, &[vec![vec![0, 1], vec![2]]]);
        let before = (&colour * &alpha).sum_dim_intlist(1, false, tch::Kind::Float);
        let after = (&mc * &ma).sum_dim_intlist(1, false, tch::Kind::Float);
        assert!(f64::try_from((before - after).abs().max()).unwrap() < 1e-6);
        assert_eq!(Vec::<f32>::try_from(ma.flatten(0, -1)).unwrap(), vec![0.5, 0.5]);
        assert_eq!(Vec::<f32>::try_from(mc.flatten(0, -1)).unwrap()[..3], [0.5, 0.0, 0.5]);
    }

    #[test]
    fn plans_merge_the_most_similar_layers_first() {
        let colours = [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.05, 0.0, 0.0], [0.9, 0.9, 1.0]];
        let groups = plan_merges(&colours, &[1.0, 1.0, 1.0, 1.0], 2);
        assert_eq!(groups, vec![vec![0, 2], vec![1, 3]]);
        assert_eq!(plan_merges(&colours, &[1.0; 4], 4).len(), 4);
    }

    #[test]
    fn auto_merges_only_colours_that_all_lie_close() {
        // A chain 0 - 1 - 2 of steps 0.15: single linkage would join all three, complete
        // linkage keeps the ends (0.3 apart) in different layers.
        let colours = [[0.0, 0.0, 0.0], [0.15, 0.0, 0.0], [0.3, 0.0, 0.0], [1.0, 1.0, 1.0], [0.95, 1.0, 1.0]];
        let groups = auto_merges(&colours);
        assert_eq!(groups.len(), 3, "{groups:?}");
        assert!(groups.contains(&vec![3, 4]), "{groups:?}");
        for g in &groups {
            for &a in g {
                for &b in g {
                    assert!(distance(&colours[a], &colours[b]) < AUTO_DISTANCE, "{groups:?}");
                }
            }
        }
        let apart = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
        assert_eq!(auto_merges(&apart), vec![vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn sparse_layers_join_their_nearest_colour_and_the_rest_stay() {
        let colours = [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.9, 0.9, 0.9], [0.1, 0.0, 0.0]];
        let masses = [50.0, 40.0, 1.0, 0.5];
        let mut groups = vec![vec![0], vec![1], vec![2], vec![3]];
        merge_sparse(&mut groups, &colours, &masses, 2.0);
        assert_eq!(groups, vec![vec![0, 3], vec![1, 2]]);
        let mut one = vec![vec![0], vec![1]];
        merge_sparse(&mut one, &colours, &[0.0, 0.0], 10.0);
        assert_eq!(one.len(), 1, "merging stops at one layer");
        let p = DecomposeParams { min_coverage: Some(lamina_common::params::Share::parse("0.02").unwrap()), ..DecomposeParams::default() };
        assert_eq!(plan_layers(&colours, &masses, 100.0, &p), Some(vec![vec![0, 3], vec![1, 2]]));
        assert_eq!(plan_layers(&colours, &masses, 100.0, &DecomposeParams::default()), None);
        assert_eq!(pad_groups(vec![vec![vec![0], vec![1]], vec![vec![0, 1]]])[1], vec![vec![0, 1], vec![]]);
    }
}

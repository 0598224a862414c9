//! The palette: k-means over a pixel subsample, in tensor ops on the model's device.
//!
//! Deterministic for a given image: the subsample and the k-means++ seeding draw from a
//! fixed-seed generator, and the palette is sorted by cluster size (largest first, so the
//! most common colour becomes the bottom layer) and rounded to 8 bits (so a manifest's
//! palette passed back with `--palette` reproduces the run exactly).

use tch::{Kind, Tensor};

/// Pixels sampled per image: plenty for 7 clusters, cheap on any device.
const SAMPLES: i64 = 16_384;
const MAX_ITERATIONS: usize = 50;
const SEED: u64 = 0x1a31_0a5e_ed00_0007;

/// SplitMix64: tiny, fast and fully deterministic across platforms.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: i64) -> i64 {
        (self.next_u64() % n.max(1) as u64) as i64
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Finds `k` palette colours for `image` (`[3,H,W]` in [0,1]); `mask` (`[H,W]`, bool)
/// restricts the search to opaque pixels when the image has alpha.
pub fn palette(image: &Tensor, mask: Option<&Tensor>, k: usize) -> Vec<[u8; 3]> {
    let device = image.device();
    let pixels = image.reshape([3, -1]).transpose(0, 1);
    let mut rng = Rng(SEED);
    let masked = mask.map(|m| m.reshape([-1]).nonzero().squeeze_dim(1)).filter(|idx| idx.size()[0] >= k as i64);
    let n = masked.as_ref().map_or(pixels.size()[0], |idx| idx.size()[0]);
    let picks = Tensor::from_slice(&picks(n, &mut rng)).to_device(device);
    let rows = match &masked {
        Some(pool) => pool.index_select(0, &picks),
        None => picks,
    };
    let sample = pixels.index_select(0, &rows).to_kind(Kind::Float);
    cluster(&sample, k, &mut rng)
}

/// The same palette as [`palette`] would find for the image whose planar RGB is `rgb`
/// (`3 * pixels` floats) and whose alpha is `alpha`, drawn straight from the host buffers
/// so that a large image never becomes one tensor.
pub fn palette_of_planes(rgb: &[f32], alpha: Option<&[f32]>, k: usize, device: tch::Device) -> Vec<[u8; 3]> {
    let n = rgb.len() / 3;
    let mut rng = Rng(SEED);
    let pool: Option<Vec<u32>> = alpha
        .map(|a| a.iter().enumerate().filter(|(_, &v)| v >= 0.5).map(|(i, _)| i as u32).collect::<Vec<u32>>())
        .filter(|pool| pool.len() >= k);
    let count = pool.as_ref().map_or(n, Vec::len) as i64;
    let mut sample = Vec::new();
    for pick in picks(count, &mut rng) {
        let i = pool.as_ref().map_or(pick as usize, |p| p[pick as usize] as usize);
        sample.extend([rgb[i], rgb[n + i], rgb[2 * n + i]]);
    }
    let sample = Tensor::from_slice(&sample).view([-1, 3]).to_device(device);
    cluster(&sample, k, &mut rng)
}

/// Which of `n` candidates to sample: all of them up to `SAMPLES`, else `SAMPLES` draws.
fn picks(n: i64, rng: &mut Rng) -> Vec<i64> {
    if n <= SAMPLES {
        (0..n).collect()
    } else {
        (0..SAMPLES).map(|_| rng.below(n)).collect()
    }
}

/// k-means on `sample` (`[M,3]`), sorted by cluster size and rounded to 8 bits.
fn cluster(sample: &Tensor, k: usize, rng: &mut Rng) -> Vec<[u8; 3]> {
    let centres = seed_plus_plus(sample, k, rng);
    let (centres, counts) = lloyd(sample, centres, k);

    let centres = Vec::<f32>::try_from(centres.to_device(tch::Device::Cpu).reshape([-1])).unwrap_or_default();
    let counts = Vec::<i64>::try_from(counts.to_device(tch::Device::Cpu)).unwrap_or_default();
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(counts.get(i).copied().unwrap_or(0)));
    order
        .iter()
        .map(|&i| {
            let q = |c: usize| (centres.get(3 * i + c).copied().unwrap_or(0.0) * 255.0).round().clamp(0.0, 255.0) as u8;
            [q(0), q(1), q(2)]
        })
        .collect()
}

/// k-means++ seeding: each next centre is drawn with probability proportional to its squared
/// distance to the nearest centre chosen so far.
fn seed_plus_plus(sample: &Tensor, k: usize, rng: &mut Rng) -> Tensor {
    let m = sample.size()[0];
    let first = sample.get(rng.below(m));
    let mut d2 = (sample - &first).square().sum_dim_intlist(1, false, Kind::Float);
    let mut centres = vec![first];
    for _ in 1..k {
        let total = f64::try_from(d2.sum(Kind::Double)).unwrap_or(0.0);
        let index = if total > 0.0 {
            let target = rng.unit() * total;
            let below = d2.to_kind(Kind::Double).cumsum(0, Kind::Double).lt(target).sum(Kind::Int64);
            i64::try_from(below).unwrap_or(0).min(m - 1)
        } else {
            rng.below(m)
        };
        let centre = sample.get(index);
        d2 = d2.minimum(&(sample - &centre).square().sum_dim_intlist(1, false, Kind::Float));
        centres.push(centre);
    }
    Tensor::stack(&centres, 0)
}

/// Lloyd iterations until the centres stop moving. Returns the centres and cluster sizes.
fn lloyd(sample: &Tensor, mut centres: Tensor, k: usize) -> (Tensor, Tensor) {
    let k = k as i64;
    let device = sample.device();
    let ones = Tensor::ones([sample.size()[0]], (Kind::Float, device));
    let mut counts = Tensor::zeros([k], (Kind::Float, device));
    for _ in 0..MAX_ITERATIONS {
        let assign = nearest(sample, &centres);
        let sums = Tensor::zeros([k, 3], (Kind::Float, device)).index_add(0, &assign, sample);
        counts = Tensor::zeros([k], (Kind::Float, device)).index_add(0, &assign, &ones);
        let filled = counts.gt(0.0).unsqueeze(1);
        let next = (sums / counts.clamp_min(1.0).unsqueeze(1)).where_self(&filled, &centres);
        let shift = f64::try_from((&next - &centres).abs().max()).unwrap_or(0.0);
        centres = next;
        if shift < 1e-6 {
            break;
        }
    }
    (centres, counts.to_kind(Kind::Int64))
}

fn nearest(sample: &Tensor, centres: &Tensor) -> Tensor {
    let d: Tensor = sample.square().sum_dim_intlist(1, true, Kind::Float) - sample.matmul(&centres.transpose(0, 1)) * 2.0
        + centres.square().sum_dim_intlist(1, false, Kind::Float).unsqueeze(0);
    d.argmin(1, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_colours_of_a_two_colour_image_largest_first() {
        // 3/4 red, 1/4 blue.
        let mut data = vec![0f32; 3 * 8 * 8];
        for y in 0..8 {
            for x in 0..8 {
                let blue = y < 2;
                data[if blue { 2 } else { 0 } * 64 + y * 8 + x] = 1.0;
            }
        }
        let image = Tensor::from_slice(&data).view([3, 8, 8]);
        let p = palette(&image, None, 2);
        assert_eq!(p, vec![[255, 0, 0], [0, 0, 255]]);
    }

    #[test]
    fn is_deterministic_and_ignores_masked_pixels() {
        let image = Tensor::rand([3, 64, 64], (Kind::Float, tch::Device::Cpu));
        assert_eq!(palette(&image, None, 7), palette(&image, None, 7));
        let mut data = vec![0.5f32; 3 * 16];
        data[0] = 1.0; // one bright transparent pixel
        let image = Tensor::from_slice(&data).view([3, 4, 4]);
        let mask = Tensor::from_slice(&[false, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true]).view([4, 4]);
        assert!(palette(&image, Some(&mask), 2).iter().all(|c| *c == [128, 128, 128]));
    }

    #[test]
    fn the_host_sampler_finds_the_same_palette_as_the_tensor_one() {
        // More pixels than SAMPLES, so the random draws are exercised too.
        let (h, w) = (100i64, 200i64);
        let image = Tensor::rand([3, h, w], (Kind::Float, tch::Device::Cpu));
        let alpha = Tensor::rand([h, w], (Kind::Float, tch::Device::Cpu));
        let rgb = Vec::<f32>::try_from(image.reshape([-1])).unwrap();
        let a = Vec::<f32>::try_from(alpha.reshape([-1])).unwrap();
        assert_eq!(palette_of_planes(&rgb, None, 7, tch::Device::Cpu), palette(&image, None, 7));
        assert_eq!(palette_of_planes(&rgb, Some(&a), 7, tch::Device::Cpu), palette(&image, Some(&alpha.ge(0.5)), 7));
    }
}

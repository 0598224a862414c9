//! Filling the background under a removed object, behind a narrow trait so that a network
//! (a user's TorchScript inpainter, see `recipe.rs`) can replace the classical fill.
//!
//! The classical fill is push-pull (Gortler et al., "The Lumigraph", 1996): a pyramid of
//! weighted averages of the known pixels is pulled down to 1x1, then each level's holes are
//! filled from the level below it on the way back up, so every hole gets the smooth
//! continuation of the colours around it whatever its size, in `O(pixels)` work on the
//! device. Known pixels are kept exactly.

use tch::{Kind, Tensor};

use super::matte::StageError;
use super::u2net::resize;

/// Fills `image` (`[B,3,H,W]` in [0,1]) where `known` (`[B,1,H,W]` in [0,1]) is below 1:
/// pixels with `known == 1` are kept, those with 0 are made up, those between are blended.
pub trait Fill: Send {
    fn fill(&self, image: &Tensor, known: &Tensor) -> Result<Tensor, StageError>;
    /// A short name for manifests and logs.
    fn name(&self) -> String;
}

/// The classical push-pull fill.
pub struct PushPull;

impl Fill for PushPull {
    fn fill(&self, image: &Tensor, known: &Tensor) -> Result<Tensor, StageError> {
        Ok(tch::no_grad(|| push_pull(image, known)))
    }

    fn name(&self) -> String {
        "push-pull".to_owned()
    }
}

/// Below this summed weight a pyramid cell counts as empty.
const EMPTY: f64 = 1e-6;

pub fn push_pull(image: &Tensor, known: &Tensor) -> Tensor {
    // Pull: premultiplied colour and weight, halved level by level.
    let mut levels = vec![(image * known, known.shallow_clone())];
    loop {
        let (colour, weight) = &levels[levels.len() - 1];
        let size = weight.size();
        if size[2] <= 1 && size[3] <= 1 {
            break;
        }
        let pool = |x: &Tensor| x.avg_pool2d([2, 2], [2, 2], [0, 0], true, false, None::<i64>);
        let next = (pool(colour), pool(weight));
        levels.push(next);
    }
    // The coarsest level: the mean of what is known (grey where nothing is).
    let (colour, weight) = levels.pop().unwrap_or_else(|| (image * known, known.shallow_clone()));
    let mut filled = (&colour / weight.clamp_min(EMPTY)).where_self(&weight.gt(EMPTY), &colour.full_like(0.5));
    // Push: each level keeps what it knows and takes the rest from the level below.
    while let Some((colour, weight)) = levels.pop() {
        let size = weight.size();
        let below = resize(&filled, size[2], size[3]);
        let own = &colour / weight.clamp_min(EMPTY);
        // A cell's own average counts in proportion to how much of it was known.
        let trust = weight.clamp(0.0, 1.0);
        filled = &trust * own + (1.0 - &trust) * below;
    }
    filled.clamp(0.0, 1.0).to_kind(Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn keeps_known_pixels_and_fills_a_hole_with_its_surroundings() {
        let opts = (Kind::Float, Device::Cpu);
        // A horizontal grey ramp with a square hole in the middle.
        let (h, w) = (40i64, 64i64);
        let ramp = Tensor::linspace(0.0, 1.0, w, opts).view([1, 1, 1, w]).expand([1, 3, h, w], false).contiguous();
        let known = Tensor::ones([1, 1, h, w], opts);
        let _ = known.narrow(2, 12, 16).narrow(3, 24, 16).fill_(0.0);
        let holed = &ramp * &known;
        let filled = push_pull(&holed, &known);
        let kept = (&filled - &ramp).abs() * &known;
        assert!(f64::try_from(kept.max()).unwrap() < 1e-5, "known pixels changed");
        // Inside the hole the fill continues the ramp to within a few grey levels.
        let hole_err = f64::try_from((&filled - &ramp).abs().narrow(2, 12, 16).narrow(3, 24, 16).mean(Kind::Float)).unwrap();
        assert!(hole_err < 0.08, "hole filled off by {hole_err}");
        // Nothing known: grey, not NaN.
        let none = push_pull(&holed, &known.zeros_like());
        assert!(!bool::try_from(none.isnan().any()).unwrap());
    }
}

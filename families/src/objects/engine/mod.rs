//! Object layers: each salient object on its own soft-matted RGBA layer over a background
//! whose hidden parts are filled in. The recipe is LayerD's loop (Suzuki et al., ICCV 2025)
//! with the stages that can be had without a model hub:
//!
//! 1. matte the top object with a salient-object network (`matte.rs`: U2-Netp or IS-Net
//!    built in, or a user's TorchScript network),
//! 2. estimate its foreground colours where the matte is soft, so no old background stays in
//!    its edge (`foreground.rs`),
//! 3. fill the background under it (`fill.rs`: classical push-pull, or a user's inpainter),
//! 4. repeat on the filled background until a matte covers too little or the layer limit is
//!    reached.
//!
//! The layers come out in Lamina's contract: the background at the bottom, opaque; the
//! objects above it, the first one found on top; straight alpha, normal blend. The built-in
//! models are recipes too ([`Recipe::builtin`]); `--model pipeline:card.json` names a user's
//! stages (`recipe.rs`).

mod elements;
mod fill;
mod foreground;
mod large;
mod matte;
mod onnx;
mod recipe;
mod u2net;

use tch::{Device, Kind, Tensor};

use crate::{Batch, Decomposed, Model, ModelDesc, ModelError};
use lamina_families::ModelIdentity;
use lamina_common::params::{DecomposeParams, LayerCount};
use lamina_families::objects::card::{Recipe, DEFAULT_MIN_COVERAGE, DEFAULT_OBJECT_LAYERS, MAX_OBJECT_LAYERS};

pub use fill::{push_pull, Fill, PushPull};
pub use foreground::estimate as estimate_foreground;
pub use matte::{models_dir, network_input, BuiltinNet, Matte, NetMatte, StageError, ISNET, U2NETP};
pub use u2net::Arch;

/// Where `known` (the share of a pixel that is background, `1 - alpha`) reaches 1: pixels
/// at most `1 - 1/KNOWN_SLOPE` covered keep their estimated background exactly, so the
/// layers recomposite to the image there; only under nearly opaque object pixels does the
/// fill take over.
const KNOWN_SLOPE: f64 = 20.0;
/// A new matte with more than this share of its mass where earlier objects were is the
/// filled hole found again (a "ghost"), and peeling stops for that image.
const GHOST_SHARE: f64 = 0.5;
/// Peak working memory per pixel of one loop step on the CPU (the matte at its fixed size
/// aside): image, matte, foreground and background estimates with their neighbour views,
/// the fill pyramid, and the layers kept so far. Measured at 1 and 4 MP (BENCHMARKS.md).
const BYTES_PER_PIXEL: u64 = 600;

/// An object model on one device: the recipe's stages, loaded.
pub struct ObjectModel {
    desc: ModelDesc,
    device: Device,
    matte: Box<dyn Matte>,
    fill: Box<dyn Fill>,
    foreground: bool,
    /// Split each object into its connected parts.
    elements: bool,
    max_layers: u8,
    min_coverage: f64,
    /// The matting network's precision (foreground estimation and fill run in fp32).
    precision: crate::Precision,
}

impl ObjectModel {
    /// A built-in object model (`objects` or `objects-small`).
    pub fn builtin(net: lamina_families::objects::ObjectNet, device: Device) -> Result<ObjectModel, ModelError> {
        Self::from_recipe(Recipe::builtin(net.builtin()), net.identity(), device)
    }

    /// A user's recipe (`pipeline:PATH`).
    pub fn pipeline(path: &std::path::Path, device: Device) -> Result<ObjectModel, ModelError> {
        let description = lamina_families::objects::describe(&format!("pipeline:{}", path.display()));
        let identity = description.identity.ok_or_else(|| match description.unread { Some(e) => ModelError::Card(e), None => ModelError::Load { path: path.display().to_string(), reason: "cannot read the pipeline card".to_owned() } })?;
        let recipe = Recipe::read(path).map_err(ModelError::Card)?;
        Self::from_recipe(recipe, identity, device)
    }

    fn from_recipe(recipe: Recipe, identity: ModelIdentity, device: Device) -> Result<ObjectModel, ModelError> {
        let (matte, fill) = recipe::load_stages(&recipe, device)?;
        let max_layers = recipe.max_layers.unwrap_or(DEFAULT_OBJECT_LAYERS);
        let desc = ModelDesc {
            id: identity.id,
            weights_sha256: identity.weights_sha256,
            layers: usize::from(max_layers),
            size_multiple: 1,
            max_side: u32::MAX,
            bytes_per_pixel: BYTES_PER_PIXEL,
            family: &lamina_families::objects::FAMILY,
            rule: lamina_families::objects::FAMILY.rule,
        };
        Ok(ObjectModel {
            desc,
            device,
            matte,
            fill,
            foreground: recipe.foreground,
            elements: recipe.elements,
            max_layers,
            min_coverage: recipe.min_coverage.unwrap_or(DEFAULT_MIN_COVERAGE),
            precision: crate::Precision::Fp32,
        })
    }

    /// The most layers an image gets under `params`, background included.
    pub fn layer_limit(&self, params: &DecomposeParams) -> usize {
        usize::from(match params.layers {
            Some(LayerCount::Count(n)) => n,
            Some(LayerCount::Auto) => MAX_OBJECT_LAYERS,
            None => self.max_layers,
        })
    }

    fn err(&self, e: StageError) -> ModelError {
        match e {
            StageError::Card(card) => ModelError::Card(card),
            e => ModelError::Contract { model: self.desc.id.clone(), reason: e.to_string() },
        }
    }

    /// Peels objects off `images` (`[B,3,H,W]`, all one size), in the order found (the top
    /// one first).
    pub fn peel(&self, images: &Tensor, params: &DecomposeParams) -> Result<Vec<Peeled>, ModelError> {
        let min_coverage = params.min_coverage.map_or(self.min_coverage, |s| s.get());
        let b = images.size()[0];
        let mut current = images.shallow_clone();
        let mut active = Tensor::ones([b, 1, 1, 1], (Kind::Bool, self.device));
        let mut found: Vec<Peeled> = Vec::new();
        let mut taken: Option<Tensor> = None;
        let limit = self.layer_limit(params);
        // Layers so far: the background and every object part.
        let mut layers = 1;
        while layers < limit {
            let alpha = self.matte.matte(&current).map_err(|e| self.err(e))?;
            let coverage = alpha.mean_dim([1, 2, 3].as_slice(), true, Kind::Float);
            active = active.logical_and(&coverage.ge(min_coverage));
            // A matte that lies mostly where earlier objects were has found the filled hole,
            // not a new object: that image is done.
            if let Some(taken) = &taken {
                let mass = alpha.sum_dim_intlist([1, 2, 3].as_slice(), true, Kind::Float);
                let inside = alpha.minimum(taken).sum_dim_intlist([1, 2, 3].as_slice(), true, Kind::Float);
                active = active.logical_and(&inside.le_tensor(&(mass * GHOST_SHARE)));
            }
            if !bool::try_from(active.any()).unwrap_or(false) {
                break;
            }
            let alpha = alpha * active.to_kind(Kind::Float);
            taken = Some(match taken {
                Some(t) => t.maximum(&alpha),
                None => alpha.shallow_clone(),
            });
            let (colour, back) = if self.foreground { estimate_foreground(&current, &alpha) } else { (current.shallow_clone(), current.shallow_clone()) };
            let filled = self.fill.fill(&back, &known(&alpha)).map_err(|e| self.err(e))?;
            current = filled.where_self(&active, &current);
            let parts = if self.elements { elements::split(&alpha, limit - layers) } else { vec![alpha.shallow_clone()] };
            layers += parts.len();
            found.push(Peeled { colour, alpha, parts, under: current.shallow_clone() });
        }
        Ok(found)
    }
}

/// Where the background under an object is known (1) or must be filled (0), from its alpha.
fn known(alpha: &Tensor) -> Tensor {
    let rest: Tensor = 1.0 - alpha;
    (rest * KNOWN_SLOPE).clamp(0.0, 1.0)
}

/// One object peeled off: its colours and alpha, its parts' alphas (the alpha itself unless
/// split into elements; they add up to it), and the image under it with the hole filled
/// (`[B,3,H,W]`, `[B,1,H,W]`, `[B,1,H,W]` each, `[B,3,H,W]`).
pub struct Peeled {
    pub colour: Tensor,
    pub alpha: Tensor,
    pub parts: Vec<Tensor>,
    pub under: Tensor,
}

/// The layers in Lamina's order, each `[B,4,H,W]`: the background (the image under the last
/// object, opaque), then the objects from the last found to the first.
pub fn stack_layers(images: &Tensor, found: Vec<Peeled>) -> Vec<Tensor> {
    let background = found.last().map_or_else(|| images.shallow_clone(), |p| p.under.shallow_clone());
    let opaque = background.narrow(1, 0, 1).ones_like();
    let mut layers = vec![Tensor::cat(&[background, opaque], 1)];
    for p in found.into_iter().rev() {
        // The smallest part lowest: the largest stays on top.
        layers.extend(p.parts.iter().rev().map(|part| Tensor::cat(&[&p.colour, part], 1)));
    }
    layers
}

impl Model for ObjectModel {
    fn desc(&self) -> &ModelDesc {
        &self.desc
    }

    fn device(&self) -> Device {
        self.device
    }

    fn precision(&self) -> crate::Precision {
        self.precision
    }

    fn set_precision(&mut self, precision: crate::Precision) -> Result<(), ModelError> {
        self.matte.set_kind(precision.kind()).map_err(|e| self.err(e))?;
        self.precision = precision;
        Ok(())
    }


    fn decompose(&self, batch: &Batch<'_>, params: &DecomposeParams) -> Result<Decomposed, ModelError> {
        self.check_params(params)?;
        // Plain NCHW: a channels-last input (a permuted HWC buffer) makes the dilated
        // convolutions and the full-size steps 2.5x slower on the CPU.
        let images = batch.images.contiguous();
        let found = tch::no_grad(|| self.peel(&images, params))?;
        let mut layers = Tensor::stack(&stack_layers(&images, found), 1);
        if let Some(alpha) = batch.alpha {
            // A transparent input stays transparent in every layer.
            let a = layers.narrow(2, 3, 1) * alpha.unsqueeze(1);
            layers = Tensor::cat(&[layers.narrow(2, 0, 3), a], 2);
        }
        let n = batch.sizes.len();
        let count = layers.size()[1] as usize;
        debug_assert!(count >= 1);
        Ok(Decomposed { layers, sources: vec![(0..count).map(|i| vec![i]).collect(); n], palettes: vec![None; n], labels: vec![Vec::new(); n] })
    }

    fn decompose_large(&self, image: &crate::Decoded, params: &DecomposeParams, budget: u64, sink: &mut dyn crate::LayerSink) -> Result<(), ModelError> {
        self.check_params(params)?;
        self.peel_large(image, params, budget, sink)
    }
}

/// Loads `objects`, `objects-small` or `pipeline:PATH` on `device`.
pub fn load(text: &str, device: Device) -> Result<Box<dyn Model>, ModelError> {
    match (lamina_families::objects::ObjectNet::named(text), lamina_families::objects::pipeline_card(text)) {
        (Some(net), _) => Ok(Box::new(ObjectModel::builtin(net, device)?)),
        (None, Some(path)) => Ok(Box::new(ObjectModel::pipeline(path, device)?)),
        (None, None) => Err(ModelError::Load { path: text.to_owned(), reason: "not an object model".to_owned() }),
    }
}

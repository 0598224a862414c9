//! What every family's engine shares: one trait, one output contract, one error type.
//!
//! The contract every model keeps: input `[B,3,H,W]` float32 in [0,1] (H and W padded to
//! the model's size multiple); output `[B,L,4,H,W]` straight-alpha RGBA in [0,1], layer 0 at
//! the bottom, composited with the normal ("over") blend mode. The device runtime that runs
//! them (devices, lanes, calibration, memory probes) is the worker's.

pub mod blend;
mod precision;
pub mod resample;

use tch::Tensor;

use lamina_families::{Capabilities, Family, ParamRule};
use lamina_common::params::{DecomposeParams, Quality, FAST_PIXELS};

pub use blend::{alpha_add_to_normal, merge_alpha_add, plan_merges};
pub use precision::{Precision, PrecisionChoice, AUTO_TOLERANCE};

/// A decoded image, ready to become a model input.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub width: u32,
    pub height: u32,
    /// Planar RGB, `3 * height * width` floats in [0,1].
    pub rgb: Vec<f32>,
    /// `height * width` floats in [0,1], only when some pixel is not opaque.
    pub alpha: Option<Vec<f32>>,
    /// Container format, lowercase (`png`, `jpeg`, ...).
    pub format: String,
    /// Pixel type as stored (`rgb8`, `rgba16`, `l8`, ...).
    pub color: String,
    /// EXIF orientation that was applied (1 = none).
    pub orientation: u8,
}

/// A model failed to load, refused its parameters, or broke the contract.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {reason}")]
    Load { path: String, reason: String },
    /// The model card, or a file it names, is missing or wrong.
    #[error(transparent)]
    Card(#[from] lamina_families::CardError),
    #[error("model {model}: {reason}")]
    Params { model: String, reason: String },
    /// The image needs more memory than the budget allows and the model cannot tile.
    #[error("model {model}: {reason}")]
    TooLarge { model: String, reason: String },
    /// The pipeline stopped taking the layers (shutdown).
    #[error("the layers' consumer went away")]
    SinkClosed,
    #[error("model {model} broke the output contract: {reason}")]
    Contract { model: String, reason: String },
    /// libtorch raised inside an operation that cannot return an error (tch panics then);
    /// the inference lane caught it and goes on.
    #[error("model {model} failed: {reason}")]
    Crashed { model: String, reason: String },
    #[error("model {model}: {source}")]
    Torch {
        model: String,
        #[source]
        source: tch::TchError,
    },
    /// The device ran out of memory. libtorch says so only in its message, so the message is
    /// read once, where an inference lane receives the model's error ([`ModelError::classify`]);
    /// everything after that decides by this variant.
    #[error("{reason}")]
    OutOfMemory { model: String, reason: String },
}

/// What libtorch's allocators say when memory runs out (CUDA: "out of memory"; the CPU
/// allocator: "not enough memory", or the C library's "cannot allocate memory").
const OUT_OF_MEMORY: [&str; 4] = ["out of memory", "not enough memory", "can't allocate memory", "cannot allocate memory"];

impl ModelError {
    /// The same error, as [`ModelError::OutOfMemory`] when libtorch's message says the device
    /// ran out of memory.
    pub fn classify(self) -> ModelError {
        let model = match &self {
            ModelError::Torch { model, .. } | ModelError::Contract { model, .. } | ModelError::Crashed { model, .. } => model.clone(),
            _ => return self,
        };
        let reason = self.to_string();
        let lower = reason.to_ascii_lowercase();
        if OUT_OF_MEMORY.iter().any(|m| lower.contains(m)) {
            ModelError::OutOfMemory { model, reason }
        } else {
            self
        }
    }

    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, ModelError::OutOfMemory { .. })
    }
}

/// What identifies a model's outputs: same id, same weights, same parameters, same layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDesc {
    /// Name and version, e.g. `fscs-k7@1`.
    pub id: String,
    pub weights_sha256: String,
    /// How many layers the model makes before merging or dropping.
    pub layers: usize,
    /// Input height and width must be multiples of this.
    pub size_multiple: i64,
    /// The longest side the model accepts (`u32::MAX` when it tiles: any size).
    pub max_side: u32,
    /// Working memory of one forward pass per input pixel, in bytes: with the memory budget
    /// it decides whether an image runs whole, in tiles, or how many share a batch.
    pub bytes_per_pixel: u64,
    /// The model's family: what it can do ([`Family::caps`]) and how it explains its layers.
    pub family: &'static Family,
    /// The parameters it takes, from its family (narrowed by its card, where it has one).
    pub rule: ParamRule,
}

impl ModelDesc {
    pub fn caps(&self) -> &'static Capabilities {
        &self.family.caps
    }
}

/// One batch handed to a model.
pub struct Batch<'a> {
    /// `[B,3,H,W]` float32 in [0,1], on the model's device, padded to the size multiple.
    pub images: &'a Tensor,
    /// The unpadded `(height, width)` of each image.
    pub sizes: &'a [(i64, i64)],
    /// `[B,1,H,W]` input alpha in [0,1] when an image has one (palette search ignores
    /// transparent pixels).
    pub alpha: Option<&'a Tensor>,
}

/// A model's answer for one batch.
pub struct Decomposed {
    /// `[B,L,4,H,W]` normal-blend straight-alpha layers in [0,1].
    pub layers: Tensor,
    /// For each image, for each output layer, the model layers merged into it.
    pub sources: Vec<Vec<Vec<usize>>>,
    /// For each image, the palette used (palette models only).
    pub palettes: Vec<Option<Vec<[u8; 3]>>>,
    /// For each image, each model layer's role (and a text layer's words) where the model
    /// reports them layer by layer (design models); empty where the family's
    /// [`Roles`](lamina_families::Roles) say it.
    pub labels: Vec<Vec<lamina_common::manifest::LayerLabel>>,
}

/// Receives one image's layers band by band from [`Model::decompose_large`].
pub trait LayerSink {
    /// Called once before any band: which model layers form each output layer, and the
    /// palette (palette models only).
    fn begin(&mut self, sources: Vec<Vec<usize>>, palette: Option<Vec<[u8; 3]>>) -> Result<(), ModelError>;
    /// Each model layer's role and words, before [`LayerSink::begin`], from models that
    /// report them layer by layer (design models).
    fn labels(&mut self, labels: Vec<lamina_common::manifest::LayerLabel>) {
        let _ = labels;
    }
    /// The next rows of every layer, top to bottom: 8-bit straight RGBA, full width, one
    /// buffer per layer, as [`quantise`] makes them.
    fn rows(&mut self, layers: Vec<Vec<u8>>) -> Result<(), ModelError>;
}

/// Quantises `[L,4,H,W]` normal-blend layers in [0,1] to 8-bit RGBA, one buffer per layer
/// (`H*W*4` bytes, row-major), on the device so only bytes cross to the host. Colour is
/// zeroed where alpha is 0: it is meaningless there, and zeros compress better.
pub fn quantise(layers: &Tensor) -> Result<Vec<Vec<u8>>, tch::TchError> {
    let (l, _, h, w) = layers.size4()?;
    let q = (layers * 255.0 + 0.5).floor().clamp(0.0, 255.0).to_kind(tch::Kind::Uint8);
    let visible = q.narrow(1, 3, 1).gt(0).to_kind(tch::Kind::Uint8);
    let q = Tensor::cat(&[q.narrow(1, 0, 3) * &visible, q.narrow(1, 3, 1)], 1);
    let q = q.permute([0, 2, 3, 1]).contiguous().to_device(tch::Device::Cpu);
    let bytes = Vec::<u8>::try_from(q.view(-1))?;
    let per_layer = (h * w * 4) as usize;
    debug_assert_eq!(bytes.len(), per_layer * l as usize);
    Ok(bytes.chunks_exact(per_layer.max(1)).map(<[u8]>::to_vec).collect())
}

/// A decomposition model on one device. Inference is blocking: call it from a dedicated
/// thread, never from an async runtime's workers.
pub trait Model: Send {
    fn desc(&self) -> &ModelDesc;

    /// The device the model's parameters live on; inputs go there.
    fn device(&self) -> tch::Device;

    /// The precision the networks run in.
    fn precision(&self) -> Precision {
        Precision::Fp32
    }

    /// Runs the networks in `precision` from now on (the steps around them stay fp32).
    /// Models that run in fp32 only refuse anything else.
    fn set_precision(&mut self, precision: Precision) -> Result<(), ModelError> {
        match precision {
            Precision::Fp32 => Ok(()),
            other => Err(ModelError::Params { model: self.desc().id.clone(), reason: format!("runs in fp32 only, not {other}") }),
        }
    }

    /// The precision the networks run in for fast-mode images: the reference precision
    /// unless [`Model::set_fast_precision`] chose another.
    fn fast_precision(&self) -> Precision {
        self.precision()
    }

    /// Runs the networks in `precision` for fast-mode images from now on, keeping the
    /// reference precision for the rest. Models with one set of weights refuse any
    /// precision but their reference one.
    fn set_fast_precision(&mut self, precision: Precision) -> Result<(), ModelError> {
        if precision == self.precision() {
            Ok(())
        } else {
            Err(ModelError::Params { model: self.desc().id.clone(), reason: format!("runs fast mode in its reference precision only, not {precision}") })
        }
    }

    /// The precision the networks run in for images of `quality`.
    fn precision_for(&self, quality: Quality) -> Precision {
        match quality {
            Quality::Fast => self.fast_precision(),
            Quality::Reference => self.precision(),
        }
    }

    /// Checks parameters by the family's rule ([`ParamRule`]), once before any image is read
    /// and again on every batch.
    fn check_params(&self, params: &DecomposeParams) -> Result<(), ModelError> {
        let desc = self.desc();
        desc.rule.check(params).map_err(|refusal| ModelError::Params { model: desc.id.clone(), reason: refusal.to_string() })
    }

    /// Decomposes a batch.
    fn decompose(&self, batch: &Batch<'_>, params: &DecomposeParams) -> Result<Decomposed, ModelError>;

    /// Decomposes one image that [`runs_large`] says is large (the batcher decides from the
    /// model's [`ModelDesc`], its one description of how the model batches and tiles), in memory bounded by
    /// `budget`, handing the layers to `sink` band by band. Models that cannot tile refuse
    /// with the reason.
    fn decompose_large(&self, image: &Decoded, params: &DecomposeParams, budget: u64, sink: &mut dyn LayerSink) -> Result<(), ModelError> {
        let _ = (params, sink);
        let need = whole_bytes(self.desc(), image.width, image.height);
        Err(ModelError::TooLarge {
            model: self.desc().id.clone(),
            reason: format!(
                "a {}x{} image needs about {} in one forward pass, over the memory budget of {}, and this model cannot run in tiles (raise --memory-budget)",
                image.width,
                image.height,
                lamina_common::bytes::human(need),
                lamina_common::bytes::human(budget)
            ),
        })
    }
}

/// Whether an image takes [`Model::decompose_large`]: it needs more than `budget` bytes in
/// one forward pass, or fast mode reduces it.
pub fn runs_large(desc: &ModelDesc, width: u32, height: u32, params: &DecomposeParams, budget: u64) -> bool {
    let pixels = u64::from(width) * u64::from(height);
    let fast = desc.caps().fast_reduces && params.quality == Quality::Fast && pixels > fast_pixels(desc.bytes_per_pixel, budget);
    fast || whole_bytes(desc, width, height) > budget
}

/// The most pixels the networks see in fast mode: about 1 MP, less when the budget is
/// smaller.
pub fn fast_pixels(bytes_per_pixel: u64, budget: u64) -> u64 {
    FAST_PIXELS.min(budget / bytes_per_pixel.max(1)).max(64 * 64)
}

/// Working memory of one forward pass over an image of this size (padded to the model's
/// size multiple).
pub fn whole_bytes(desc: &ModelDesc, width: u32, height: u32) -> u64 {
    let m = desc.size_multiple.max(1) as u64;
    let pad = |v: u32| u64::from(v).div_ceil(m) * m;
    pad(width).saturating_mul(pad(height)).saturating_mul(desc.bytes_per_pixel)
}

pub fn torch_err(model: &str) -> impl FnOnce(tch::TchError) -> ModelError + '_ {
    move |source| ModelError::Torch { model: model.to_owned(), source }
}

#[cfg(test)]
mod error_tests {
    use super::ModelError;

    #[test]
    fn running_out_of_memory_is_known_by_its_type_and_keeps_its_message() {
        let crashed = ModelError::Crashed { model: "m@1".into(), reason: "CUDA out of memory. Tried to allocate 2.00 GiB".into() };
        let text = crashed.to_string();
        let classified = crashed.classify();
        assert!(classified.is_out_of_memory());
        assert_eq!(classified.to_string(), text);
        let cpu = ModelError::Contract { model: "m@1".into(), reason: "DefaultCPUAllocator: not enough memory: you tried to allocate 1 GB".into() };
        assert!(cpu.classify().is_out_of_memory());
        // Other failures stay what they are, whatever their words.
        assert!(!ModelError::Crashed { model: "m@1".into(), reason: "index out of range".into() }.classify().is_out_of_memory());
        let params = ModelError::Params { model: "m@1".into(), reason: "out of memory in the name only".into() };
        assert!(matches!(params.classify(), ModelError::Params { .. }));
    }
}

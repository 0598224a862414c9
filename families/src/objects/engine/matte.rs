//! The first stage of the object recipe: a salient-object network that mattes the top layer.
//! Networks see a fixed square input (resized from the image, as they were trained); the
//! matte comes back to the image's size. Built in: U2-Netp and IS-Net (`u2net.rs`); a
//! user's own is a TorchScript file (`recipe.rs`).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use super::onnx;
use super::u2net::{resize, Arch, U2Net};
use crate::torchscript::first_line;

/// Mattes a batch: `[B,3,H,W]` in [0,1] to `[B,1,H,W]` in [0,1].
pub trait Matte: Send {
    fn matte(&self, images: &Tensor) -> Result<Tensor, StageError>;
    /// Runs the network in `kind` from now on (its input is cast to it, its matte back to
    /// fp32).
    fn set_kind(&mut self, kind: Kind) -> Result<(), StageError>;
}

/// A stage network of the recipe (the matte or the inpainter) that cannot be loaded, failed
/// while running, or broke its contract; its file is named.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{}: {reason}", path.display())]
    Load { path: PathBuf, reason: String },
    #[error("{}: the {stage} failed: {reason}", path.display())]
    Failed { path: PathBuf, stage: &'static str, reason: String },
    #[error("{}: the {stage} broke its contract: {reason}", path.display())]
    Contract { path: PathBuf, stage: &'static str, reason: String },
    /// A user's stage file is missing or is not the one its card names.
    #[error(transparent)]
    Card(#[from] lamina_families::CardError),
}

/// How a network wants its input: `(x - mean) / std` per channel, x in [0,1].
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
pub struct Normalise {
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

/// Resizes `images` to `size`^2 (area-averaged where it shrinks, bilinear where it grows)
/// and normalises them.
pub fn network_input(images: &Tensor, size: i64, norm: &Normalise) -> Tensor {
    let s = images.size();
    let (h, w) = (s[2], s[3]);
    let shrunk = if h > size || w > size { images.adaptive_avg_pool2d([h.min(size), w.min(size)]) } else { images.shallow_clone() };
    let x = resize(&shrunk, size, size);
    let device = images.device();
    let mean = Tensor::from_slice(&norm.mean.map(|v| v as f32)).view([1, 3, 1, 1]).to_device(device);
    let std = Tensor::from_slice(&norm.std.map(|v| v as f32)).view([1, 3, 1, 1]).to_device(device);
    (x - mean) / std
}

/// A built-in matting network, with the weights of its published ONNX file.
pub struct NetMatte {
    net: U2Net,
    size: i64,
    norm: Normalise,
    kind: Kind,
}

/// A built-in network: its file, where it comes from and what it expects.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinNet {
    pub arch: Arch,
    pub file: &'static str,
    pub sha256: &'static str,
    pub size: i64,
    pub norm: Normalise,
    /// What `ops/fetch-models.sh` is given to fetch it.
    pub fetch: &'static str,
}

pub const U2NETP: BuiltinNet = BuiltinNet {
    arch: Arch::U2Netp,
    file: "u2netp.onnx",
    sha256: lamina_families::objects::U2NETP_SHA256,
    size: 320,
    // ImageNet statistics, as U2-Net was trained.
    norm: Normalise { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
    fetch: "small",
};

pub const ISNET: BuiltinNet = BuiltinNet {
    arch: Arch::IsNet,
    file: "isnet_fp16.onnx",
    sha256: lamina_families::objects::ISNET_SHA256,
    size: 1024,
    // (rgb - 128) / 256 with rgb in 0..255, as the package that ships the weights feeds it.
    norm: Normalise { mean: [128.0 / 255.0; 3], std: [256.0 / 255.0; 3] },
    fetch: "all",
};

/// Where the fetched model files live: `$LAMINA_MODELS`, else `$LAMINA_CACHE/models`, else
/// the per-user cache (`~/.cache/lamina/models`), as `ops/fetch-models.sh` writes them.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LAMINA_MODELS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(cache) = std::env::var_os("LAMINA_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(cache).join("models");
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("lamina").join("models")
}

impl NetMatte {
    /// Loads `net` from the models folder, refusing a missing or altered file with the
    /// command that fetches it.
    pub fn load(net: &BuiltinNet, device: Device) -> Result<NetMatte, StageError> {
        let path = models_dir().join(net.file);
        let fetch = format!("run ops/fetch-models.sh {} (or set LAMINA_MODELS to the folder that holds it)", net.fetch);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => return Err(StageError::Load { path, reason: format!("cannot read the weights ({e}): {fetch}") }),
        };
        let digest = hex::encode(Sha256::digest(&bytes));
        if digest != net.sha256 {
            return Err(StageError::Load { path, reason: format!("sha256 {digest} is not the published file's {}: {fetch}", net.sha256) });
        }
        Self::from_bytes(net, &bytes, device).map_err(|e| match e {
            StageError::Load { reason, .. } => StageError::Load { path, reason },
            other => other,
        })
    }

    /// Builds `net` from its ONNX file's bytes (errors name the file by its name in the
    /// models folder).
    pub fn from_bytes(net: &BuiltinNet, bytes: &[u8], device: Device) -> Result<NetMatte, StageError> {
        let load = |reason: String| StageError::Load { path: PathBuf::from(net.file), reason };
        let convs = onnx::conv_nodes(bytes).map_err(load)?;
        let built = tch::no_grad(|| U2Net::from_convs(net.arch, convs, device)).map_err(load)?;
        Ok(NetMatte { net: built, size: net.size, norm: net.norm, kind: Kind::Float })
    }

    /// The network's raw matte at its own input size (`[B,1,S,S]`), for conformance tests.
    pub fn at_input_size(&self, normalised: &Tensor) -> Tensor {
        tch::no_grad(|| self.net.forward(normalised))
    }
}

impl Matte for NetMatte {
    fn matte(&self, images: &Tensor) -> Result<Tensor, StageError> {
        let s = images.size();
        let input = network_input(images, self.size, &self.norm).to_kind(self.kind);
        Ok(tch::no_grad(|| resize(&self.net.forward(&input).to_kind(Kind::Float), s[2], s[3]).clamp(0.0, 1.0)))
    }

    fn set_kind(&mut self, kind: Kind) -> Result<(), StageError> {
        self.net.set_kind(kind);
        self.kind = kind;
        Ok(())
    }
}

/// A user's matting network: a TorchScript file that takes `[B,3,S,S]` normalised and
/// returns a matte `[B,1,S,S]` (or a tuple or list whose `output`-th element is one), as
/// probabilities or as logits (`sigmoid: true`).
pub struct ScriptMatte {
    module: tch::CModule,
    device: Device,
    kind: Kind,
    sha256: String,
    path: PathBuf,
    size: i64,
    norm: Normalise,
    output: usize,
    sigmoid: bool,
}

impl ScriptMatte {
    pub fn load(path: &Path, sha256: &str, size: i64, norm: Normalise, output: usize, sigmoid: bool, device: Device) -> Result<ScriptMatte, lamina_families::CardError> {
        let module = load_script(path, sha256, device)?;
        Ok(ScriptMatte { module, device, kind: Kind::Float, sha256: sha256.to_owned(), path: path.to_owned(), size, norm, output, sigmoid })
    }
}

/// Loads a TorchScript stage after checking its sha256.
pub fn load_script(path: &Path, sha256: &str, device: Device) -> Result<tch::CModule, lamina_families::CardError> {
    let err = |reason: String| lamina_families::CardError { path: path.to_owned(), reason };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read ({e})")))?;
    let digest = hex::encode(Sha256::digest(&bytes));
    if !digest.eq_ignore_ascii_case(sha256) {
        return Err(err(format!("sha256 {digest} does not match the recipe's {sha256}")));
    }
    let mut module = tch::CModule::load_data_on_device(&mut std::io::Cursor::new(bytes), device)
        .map_err(|e| err(format!("not a loadable TorchScript file: {}", first_line(&e.to_string()))))?;
    module.set_eval();
    Ok(module)
}

/// Checks a stage's output tensor: shape, float, no NaN, within [0,1] (after `sigmoid`).
pub(crate) fn check_stage_output(path: &Path, stage: &'static str, out: &Tensor, want: &[i64]) -> Result<(), StageError> {
    let bad = |reason: String| StageError::Contract { path: path.to_owned(), stage, reason };
    if out.size() != want {
        return Err(bad(format!("output shape {:?}, expected {want:?}", out.size())));
    }
    if !matches!(out.kind(), Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double) {
        return Err(bad(format!("output dtype {:?}, expected a float tensor", out.kind())));
    }
    if bool::try_from(out.isnan().any()).unwrap_or(true) {
        return Err(bad("output contains NaN".into()));
    }
    let (lo, hi) = (f64::try_from(out.min()).unwrap_or(f64::NAN), f64::try_from(out.max()).unwrap_or(f64::NAN));
    if !(lo >= -1e-3 && hi <= 1.0 + 1e-3) {
        return Err(bad(format!("output values span [{lo:.4}, {hi:.4}], outside [0, 1]")));
    }
    Ok(())
}

impl Matte for ScriptMatte {
    fn matte(&self, images: &Tensor) -> Result<Tensor, StageError> {
        const STAGE: &str = "matte network";
        let s = images.size();
        let input = network_input(images, self.size, &self.norm).to_kind(self.kind);
        let broke = |reason: String| StageError::Contract { path: self.path.clone(), stage: STAGE, reason };
        let out = tch::no_grad(|| self.module.forward_is(&[tch::IValue::Tensor(input)]))
            .map_err(|e| StageError::Failed { path: self.path.clone(), stage: STAGE, reason: first_line(&e.to_string()).to_owned() })?;
        let out = match out {
            tch::IValue::Tensor(t) if self.output == 0 => t,
            tch::IValue::Tuple(v) | tch::IValue::GenericList(v) => match v.into_iter().nth(self.output) {
                Some(tch::IValue::Tensor(t)) => t,
                _ => return Err(broke(format!("output {} is not a tensor", self.output))),
            },
            tch::IValue::TensorList(v) => v.into_iter().nth(self.output).ok_or_else(|| broke(format!("it returned fewer than {} tensors", self.output + 1)))?,
            _ => return Err(broke("it returned no tensor".to_owned())),
        };
        if !matches!(out.kind(), Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double) {
            return Err(broke(format!("output dtype {:?}, expected a float tensor", out.kind())));
        }
        let out = out.to_kind(Kind::Float);
        let out = if self.sigmoid { out.sigmoid() } else { out };
        check_stage_output(&self.path, STAGE, &out, &[s[0], 1, self.size, self.size])?;
        Ok(tch::no_grad(|| resize(&out, s[2], s[3]).clamp(0.0, 1.0)))
    }

    fn set_kind(&mut self, kind: Kind) -> Result<(), StageError> {
        // From the file again (checked again), so fp32 after fp16 is the file's fp32.
        let mut module = load_script(&self.path, &self.sha256, self.device)?;
        if kind != Kind::Float {
            module.to(self.device, kind, false);
        }
        self.module = module;
        self.kind = kind;
        Ok(())
    }
}

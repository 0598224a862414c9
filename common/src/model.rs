//! Models as every part names them: the spec a job or a worker gives (`fscs`, `objects`,
//! `objects-small`, `pipeline:PATH`, `torchscript:PATH`, `capacity-test:MS`), the identity manifests record (what decides
//! whether an image is current), the model card of a TorchScript model, and the rule for
//! which parameters a model takes. The coordinator (which does not load models), the worker
//! and the CLI all use these, so a job the model would refuse is refused once, up front.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::params::DecomposeParams;

/// The built-in model's identity, as its manifests record it. The worker checks the weights
/// it loads against the hash; the coordinator uses both to decide which images are current.
pub const FSCS_MODEL_ID: &str = "fscs-k7@1";
pub const FSCS_WEIGHTS_SHA256: &str = "a304fbdf3b57d04b6ff483ae7f065e3cf553da8e1eb73b5ce8ccf3e585e117d0";
/// The palette size FSCS's pretrained weights were trained for.
pub const FSCS_LAYERS: usize = 7;

/// The published matting weights of the object models: the files `ops/fetch-models.sh`
/// fetches, checked every time a model loads.
pub const U2NETP_SHA256: &str = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8";
pub const ISNET_SHA256: &str = "b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb";

/// A built-in object model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectNet {
    /// `objects`: IS-Net mattes (1024^2 input, 44 M parameters).
    IsNet,
    /// `objects-small`: U2-Netp mattes (320^2 input, 1.1 M parameters).
    U2Netp,
}

impl ObjectNet {
    /// The recipe's name for the matte network.
    pub fn builtin(self) -> &'static str {
        match self {
            ObjectNet::IsNet => "isnet",
            ObjectNet::U2Netp => "u2netp",
        }
    }

    pub fn identity(self) -> ModelIdentity {
        let (id, sha) = match self {
            ObjectNet::IsNet => ("objects-isnet@1", ISNET_SHA256),
            ObjectNet::U2Netp => ("objects-u2netp@1", U2NETP_SHA256),
        };
        ModelIdentity { id: id.to_owned(), weights_sha256: sha.to_owned() }
    }
}

/// A model as a job or a worker names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    /// The built-in Fast Soft Color Segmentation model.
    Fscs,
    /// A built-in object model: objects over a filled background.
    Objects(ObjectNet),
    /// An object recipe of the user's (a pipeline card naming its stages).
    Pipeline(PathBuf),
    /// A TorchScript file with its model card beside it.
    TorchScript(PathBuf),
    /// The capacity-test stand-in (holds each batch this many milliseconds); never a default.
    CapacityTest(u64),
}

/// What identifies a model's outputs: manifests record both, and an image is current only
/// when they match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIdentity {
    /// Name and version, e.g. `fscs-k7@1`.
    pub id: String,
    pub weights_sha256: String,
}

impl ModelSpec {
    pub fn parse(spec: &str) -> Result<ModelSpec, String> {
        match spec {
            "fscs" => return Ok(ModelSpec::Fscs),
            "objects" => return Ok(ModelSpec::Objects(ObjectNet::IsNet)),
            "objects-small" => return Ok(ModelSpec::Objects(ObjectNet::U2Netp)),
            _ => {}
        }
        if let Some(path) = spec.strip_prefix("pipeline:").filter(|p| !p.is_empty()) {
            return Ok(ModelSpec::Pipeline(PathBuf::from(path)));
        }
        if let Some(path) = spec.strip_prefix("torchscript:").filter(|p| !p.is_empty()) {
            return Ok(ModelSpec::TorchScript(PathBuf::from(path)));
        }
        if let Some((ms, _)) = capacity_test_model(spec) {
            return Ok(ModelSpec::CapacityTest(ms));
        }
        Err(format!("unknown model {spec:?} (use fscs, objects, objects-small, pipeline:PATH or torchscript:PATH)"))
    }

    /// The card of a TorchScript model (read from beside its file).
    pub fn card(&self) -> Option<Result<ModelCard, String>> {
        match self {
            ModelSpec::TorchScript(path) => Some(ModelCard::read(&ModelCard::path_for(path))),
            _ => None,
        }
    }

    /// The identity its manifests record; `None` for a TorchScript model whose card cannot
    /// be read here (the coordinator may not see the workers' files): then nothing counts as
    /// current, which is always correct and never stale.
    pub fn identity(&self) -> Option<ModelIdentity> {
        match self {
            ModelSpec::Fscs => Some(ModelIdentity { id: FSCS_MODEL_ID.to_owned(), weights_sha256: FSCS_WEIGHTS_SHA256.to_owned() }),
            ModelSpec::CapacityTest(ms) => Some(ModelIdentity { id: capacity_test_id(*ms), weights_sha256: String::new() }),
            ModelSpec::Objects(net) => Some(net.identity()),
            // The card names its stages' sha256, so the card's own hash covers the weights.
            ModelSpec::Pipeline(path) => {
                let bytes = std::fs::read(path).ok()?;
                let recipe = crate::recipe::Recipe::read(path).ok()?;
                Some(ModelIdentity { id: format!("{}@{}", recipe.name, recipe.version), weights_sha256: hex::encode(Sha256::digest(&bytes)) })
            }
            ModelSpec::TorchScript(_) => {
                let card = self.card()?.ok()?;
                Some(ModelIdentity { id: format!("{}@{}", card.name, card.version), weights_sha256: card.sha256.to_lowercase() })
            }
        }
    }

    /// Whether the model takes `params`; the reason when it does not. `card` is the model's
    /// card for a TorchScript model (unchecked when `None`: the workers check it).
    pub fn check_params(&self, params: &DecomposeParams, card: Option<&ModelCard>) -> Result<(), String> {
        match self {
            ModelSpec::Fscs => {
                if let Some(n) = params.layer_target() {
                    if !(2..=FSCS_LAYERS as u8).contains(&n) {
                        return Err(format!("--layers {n} is out of range (2 to {FSCS_LAYERS})"));
                    }
                }
                match &params.palette {
                    Some(p) if p.len() != FSCS_LAYERS => {
                        Err(format!("the palette has {} colours; this model needs exactly {FSCS_LAYERS}", p.len()))
                    }
                    _ => Ok(()),
                }
            }
            ModelSpec::TorchScript(_) => {
                if params.palette.is_some() {
                    return Err("this model takes no palette".to_owned());
                }
                if !params.quality.is_reference() {
                    return Err("this model has no fast mode (--quality fast is for fscs)".to_owned());
                }
                if params.min_coverage.is_some() {
                    return Err("this model's normal-blend layers cannot be merged by coverage (--min-coverage is for fscs)".to_owned());
                }
                match (params.layer_target(), card) {
                    (Some(n), Some(card)) if usize::from(n) != card.layers => {
                        Err(format!("this model makes {} normal-blend layers and cannot merge them to {n}", card.layers))
                    }
                    _ => Ok(()),
                }
            }
            ModelSpec::Objects(_) | ModelSpec::Pipeline(_) => {
                if params.palette.is_some() {
                    return Err("this model takes no palette (--palette is for fscs)".to_owned());
                }
                if !params.quality.is_reference() {
                    return Err("this model has no fast mode (--quality fast is for fscs)".to_owned());
                }
                match params.layer_target() {
                    Some(n) if !(2..=crate::recipe::MAX_OBJECT_LAYERS).contains(&n) => {
                        Err(format!("--layers {n} is out of range (2 to {}: the background and up to {} objects)", crate::recipe::MAX_OBJECT_LAYERS, crate::recipe::MAX_OBJECT_LAYERS - 1))
                    }
                    _ => Ok(()),
                }
            }
            ModelSpec::CapacityTest(_) if params.palette.is_some() => Err("this model takes no palette".to_owned()),
            ModelSpec::CapacityTest(_) if !params.quality.is_reference() => Err("this model has no fast mode".to_owned()),
            ModelSpec::CapacityTest(_) if params.min_coverage.is_some() => Err("this model takes no --min-coverage".to_owned()),
            ModelSpec::CapacityTest(_) => Ok(()),
        }
    }
}

/// The capacity-test model, `capacity-test:MS`: its hold time per batch in milliseconds and
/// the id its manifests record. It stands in for GPU time when measuring how a fleet scales
/// on a machine without GPUs; it is never a default.
pub fn capacity_test_model(spec: &str) -> Option<(u64, String)> {
    let ms: u64 = spec.strip_prefix("capacity-test:")?.parse().ok()?;
    Some((ms, capacity_test_id(ms)))
}

fn capacity_test_id(ms: u64) -> String {
    format!("capacity-test-{ms}ms@1")
}

/// `model.json` beside `model.pt`: what a TorchScript model is and how to feed it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    pub name: String,
    pub version: String,
    /// Layers per image in the model's output.
    pub layers: usize,
    /// Input height and width must be multiples of this.
    pub size_multiple: i64,
    /// The longest image side the model accepts.
    pub max_side: u32,
    /// sha256 of the TorchScript file, lowercase hex.
    pub sha256: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Peak working memory of one forward pass per input pixel, in bytes (default 1024):
    /// with the worker's memory budget it decides which images run and how many share a
    /// batch. An image over the budget is refused with the reason (such a model cannot be
    /// run in tiles without knowing its receptive field).
    #[serde(default)]
    pub bytes_per_pixel: Option<u64>,
}

/// The working memory per pixel assumed for a TorchScript model whose card does not say.
pub const DEFAULT_BYTES_PER_PIXEL: u64 = 1024;

impl ModelCard {
    /// The card for `model`: the same path with the extension `.json`.
    pub fn path_for(model: &Path) -> PathBuf {
        model.with_extension("json")
    }

    /// Reads and checks a card; the error names the file and what is wrong.
    pub fn read(path: &Path) -> Result<ModelCard, String> {
        let err = |reason: String| format!("{}: {reason}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read model card: {e}")))?;
        let card: ModelCard = serde_json::from_str(&text).map_err(|e| err(format!("bad model card: {e}")))?;
        if card.layers == 0 || card.size_multiple < 1 || card.max_side == 0 {
            return Err(err("bad model card: layers, size_multiple and max_side must be positive".into()));
        }
        if card.sha256.len() != 64 || !card.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err("bad model card: sha256 must be 64 hex digits".into()));
        }
        Ok(card)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(layers: Option<u8>, palette: usize) -> DecomposeParams {
        DecomposeParams { layers: layers.map(crate::params::LayerCount::Count), palette: (palette > 0).then(|| vec![[0, 0, 0]; palette]), ..DecomposeParams::default() }
    }

    #[test]
    fn specs_parse_and_name_their_identity() {
        assert_eq!(ModelSpec::parse("fscs").unwrap().identity().unwrap().id, FSCS_MODEL_ID);
        assert_eq!(ModelSpec::parse("capacity-test:300").unwrap().identity().unwrap().id, "capacity-test-300ms@1");
        assert!(ModelSpec::parse("torchscript:/nowhere/m.pt").unwrap().identity().is_none());
        assert!(ModelSpec::parse("resnet").unwrap_err().contains("unknown model"));
        assert!(ModelSpec::parse("torchscript:").is_err());
    }

    #[test]
    fn parameters_are_checked_by_one_rule() {
        let fscs = ModelSpec::Fscs;
        assert!(fscs.check_params(&params(Some(3), 7), None).is_ok());
        assert!(fscs.check_params(&params(Some(9), 0), None).unwrap_err().contains("--layers 9 is out of range"));
        assert!(fscs.check_params(&params(None, 3), None).unwrap_err().contains("exactly 7"));
        let card = ModelCard {
            name: "m".into(),
            version: "1".into(),
            layers: 4,
            size_multiple: 8,
            max_side: 1024,
            sha256: "0".repeat(64),
            description: None,
            bytes_per_pixel: None,
        };
        let ts = ModelSpec::TorchScript("m.pt".into());
        assert!(ts.check_params(&params(Some(4), 0), Some(&card)).is_ok());
        assert!(ts.check_params(&params(Some(3), 0), Some(&card)).is_err());
        assert!(ts.check_params(&params(None, 7), None).unwrap_err().contains("no palette"));
        assert!(ModelSpec::CapacityTest(1).check_params(&params(Some(3), 0), None).is_ok());
        let fast = DecomposeParams { quality: crate::params::Quality::Fast, ..DecomposeParams::default() };
        assert!(fscs.check_params(&fast, None).is_ok());
        assert!(ts.check_params(&fast, Some(&card)).unwrap_err().contains("no fast mode"));
        let auto = DecomposeParams { layers: Some(crate::params::LayerCount::Auto), ..DecomposeParams::default() };
        assert!(fscs.check_params(&auto, None).is_ok());
        assert!(ts.check_params(&auto, Some(&card)).is_ok(), "auto keeps what a fixed-count model makes");
        let sparse = DecomposeParams { min_coverage: Some(crate::params::Share::parse("1%").unwrap()), ..DecomposeParams::default() };
        assert!(fscs.check_params(&sparse, None).is_ok());
        assert!(ts.check_params(&sparse, Some(&card)).unwrap_err().contains("--min-coverage"));
    }
}

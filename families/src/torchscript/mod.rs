//! Bring-your-own model: `torchscript:PATH`, a TorchScript file that follows the layer
//! contract, described by its card `model.json` beside it (`engine.rs` loads and checks it).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Capabilities, Description, Family, Large, LayerRule, ModelIdentity, ParamRule, Roles};

pub static FAMILY: Family = Family {
    name: "torchscript",
    forms: "torchscript:PATH",
    listed: true,
    rule: ParamRule { layers: LayerRule::Any, palette: None, fast: false, min_coverage: false },
    caps: Capabilities { roles: Roles::Colour, pads: false, fast_reduces: false, fast_copy: false, large: Large::Refuse },
    accepts: |text| model_path(text).is_some(),
    describe,
    explain: crate::explain_count,
};

pub fn model_path(text: &str) -> Option<&Path> {
    text.strip_prefix("torchscript:").filter(|p| !p.is_empty()).map(Path::new)
}

pub fn describe(text: &str) -> Description {
    let mut description = Description { identity: None, rule: FAMILY.rule, caps: FAMILY.caps, unread: None };
    if let Some(path) = model_path(text) {
        match ModelCard::read(&ModelCard::path_for(path)) {
            Ok(card) => {
                description.rule.layers = LayerRule::Exactly(card.layers);
                description.identity = Some(card.identity());
            }
            Err(reason) => description.unread = Some(reason),
        }
    }
    description
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
    pub fn read(path: &Path) -> Result<ModelCard, crate::CardError> {
        let err = |reason: String| crate::CardError { path: path.to_owned(), reason };
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

    /// The identity its manifests record: the card names the file's sha256.
    pub fn identity(&self) -> ModelIdentity {
        ModelIdentity { id: format!("{}@{}", self.name, self.version), weights_sha256: self.sha256.to_lowercase() }
    }
}

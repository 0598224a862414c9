//! The model card: a small JSON file next to a TorchScript model that says what it is and
//! how to feed it. Loading checks the model file against the card's sha256.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ModelError;

/// `model.json` beside `model.pt`.
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
}

impl ModelCard {
    /// The card for `model`: the same path with the extension `.json`.
    pub fn path_for(model: &Path) -> PathBuf {
        model.with_extension("json")
    }

    pub fn read(path: &Path) -> Result<ModelCard, ModelError> {
        let err = |reason: String| ModelError::Load { path: path.display().to_string(), reason };
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

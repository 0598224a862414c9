//! The object recipe as a file: a model card of kind `pipeline` (`--model pipeline:PATH`)
//! that names the stages of the object-layer loop. The built-in object models are such
//! recipes too ([`Recipe::builtin`]), so a user's card changes only what it names.
//!
//! ```json
//! {
//!   "kind": "pipeline", "name": "my-recipe", "version": "1",
//!   "matte": { "torchscript": "birefnet.pt", "sha256": "…", "input_size": 1024,
//!              "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
//!              "output": 0, "sigmoid": true },
//!   "inpaint": { "torchscript": "lama.pt", "sha256": "…", "size_multiple": 8 },
//!   "foreground": true, "elements": false, "max_layers": 4, "min_coverage": 0.005
//! }
//! ```
//! Paths are relative to the card. `"matte": {"builtin": "isnet"}` (or `"u2netp"`) takes a
//! built-in network; leaving out `inpaint` takes the classical fill.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The most layers an object model makes: the background and seven objects.
pub const MAX_OBJECT_LAYERS: u8 = 8;
/// Layers (background included) when neither the recipe nor `--layers` says.
pub const DEFAULT_OBJECT_LAYERS: u8 = 4;
/// The loop stops when a new matte covers less than this share of the image.
pub const DEFAULT_MIN_COVERAGE: f64 = 0.005;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Always `pipeline`.
    pub kind: String,
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: Option<String>,
    pub matte: MatteStage,
    /// A network that fills the background under each object; the classical fill if absent.
    #[serde(default)]
    pub inpaint: Option<InpaintStage>,
    /// Multi-level foreground estimation on the matte's soft pixels (default on).
    #[serde(default = "yes")]
    pub foreground: bool,
    /// Split each object into its connected parts ("elements"), each on its own layer
    /// (default off); they count toward the layer limit.
    #[serde(default)]
    pub elements: bool,
    /// Most layers, background included (2 to 8, default 4); `--layers N` lowers it.
    #[serde(default)]
    pub max_layers: Option<u8>,
    /// Stop when a new matte covers less than this share of the image (default 0.005);
    /// `--min-coverage` overrides it.
    #[serde(default)]
    pub min_coverage: Option<f64>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum MatteStage {
    /// `u2netp` or `isnet`.
    Builtin { builtin: String },
    Script(ScriptMatte),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptMatte {
    pub torchscript: PathBuf,
    pub sha256: String,
    /// The square side the network takes.
    pub input_size: i64,
    #[serde(default = "imagenet_mean")]
    pub mean: [f64; 3],
    #[serde(default = "imagenet_std")]
    pub std: [f64; 3],
    /// Which output is the matte when the network returns several (default 0).
    #[serde(default)]
    pub output: usize,
    /// The output is logits: apply a sigmoid (default false: already in [0,1]).
    #[serde(default)]
    pub sigmoid: bool,
}

fn imagenet_mean() -> [f64; 3] {
    [0.485, 0.456, 0.406]
}

fn imagenet_std() -> [f64; 3] {
    [0.229, 0.224, 0.225]
}

/// A TorchScript inpainter: `forward(image [B,3,H,W] in [0,1], mask [B,1,H,W], 1 = fill)`
/// returns `[B,3,H,W]` in [0,1].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InpaintStage {
    pub torchscript: PathBuf,
    pub sha256: String,
    /// Height and width are padded to a multiple of this (default 8).
    #[serde(default = "eight")]
    pub size_multiple: i64,
}

fn eight() -> i64 {
    8
}

impl Recipe {
    /// The recipe of a built-in object model (`isnet` or `u2netp` matte, classical fill).
    pub fn builtin(net: &str) -> Recipe {
        Recipe {
            kind: "pipeline".into(),
            name: format!("objects-{net}"),
            version: "1".into(),
            description: None,
            matte: MatteStage::Builtin { builtin: net.into() },
            inpaint: None,
            foreground: true,
            elements: false,
            max_layers: None,
            min_coverage: None,
        }
    }

    /// Reads and checks a recipe; stage paths come back resolved against its folder. The
    /// error names the file and what is wrong.
    pub fn read(path: &Path) -> Result<Recipe, crate::CardError> {
        let err = |reason: String| crate::CardError { path: path.to_owned(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read the pipeline card: {e}")))?;
        let mut recipe: Recipe = serde_json::from_str(&text).map_err(|e| err(format!("bad pipeline card: {e}")))?;
        recipe.check().map_err(|reason| err(format!("bad pipeline card: {reason}")))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        if let MatteStage::Script(m) = &mut recipe.matte {
            m.torchscript = dir.join(&m.torchscript);
        }
        if let Some(i) = &mut recipe.inpaint {
            i.torchscript = dir.join(&i.torchscript);
        }
        Ok(recipe)
    }

    fn check(&self) -> Result<(), String> {
        if self.kind != "pipeline" {
            return Err(format!("kind is {:?}, expected \"pipeline\"", self.kind));
        }
        let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        match &self.matte {
            MatteStage::Builtin { builtin } if !matches!(builtin.as_str(), "isnet" | "u2netp") => {
                return Err(format!("matte builtin {builtin:?} is not one of isnet, u2netp"));
            }
            MatteStage::Script(m) if !hex(&m.sha256) => return Err("matte sha256 must be 64 hex digits".into()),
            MatteStage::Script(m) if !(16..=4096).contains(&m.input_size) => return Err("matte input_size must be 16 to 4096".into()),
            MatteStage::Script(m) if m.std.iter().any(|&s| s <= 0.0) => return Err("matte std must be positive".into()),
            _ => {}
        }
        if let Some(i) = &self.inpaint {
            if !hex(&i.sha256) {
                return Err("inpaint sha256 must be 64 hex digits".into());
            }
            if !(1..=256).contains(&i.size_multiple) {
                return Err("inpaint size_multiple must be 1 to 256".into());
            }
        }
        if let Some(n) = self.max_layers {
            if !(2..=MAX_OBJECT_LAYERS).contains(&n) {
                return Err(format!("max_layers must be 2 to {MAX_OBJECT_LAYERS}"));
            }
        }
        if let Some(c) = self.min_coverage {
            if !(0.0..1.0).contains(&c) {
                return Err("min_coverage must be in [0, 1)".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recipe.json");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn a_card_with_script_stages_resolves_their_paths() {
        let sha = "ab".repeat(32);
        let (dir, path) = write(&format!(
            r#"{{"kind":"pipeline","name":"r","version":"2","matte":{{"torchscript":"m.pt","sha256":"{sha}","input_size":64}},"inpaint":{{"torchscript":"i.pt","sha256":"{sha}"}},"max_layers":3}}"#
        ));
        let r = Recipe::read(&path).unwrap();
        match &r.matte {
            MatteStage::Script(m) => assert_eq!(m.torchscript, dir.path().join("m.pt")),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.inpaint.as_ref().unwrap().size_multiple, 8);
        assert!(r.foreground);
        let (_dir, path) = write(r#"{"kind":"pipeline","name":"b","version":"1","matte":{"builtin":"isnet"}}"#);
        assert_eq!(Recipe::read(&path).unwrap().matte, MatteStage::Builtin { builtin: "isnet".into() });
    }

    #[test]
    fn bad_cards_name_the_file_and_the_fault() {
        for (text, fault) in [
            (r#"{"kind":"model","name":"r","version":"1","matte":{"builtin":"isnet"}}"#, "kind"),
            (r#"{"kind":"pipeline","name":"r","version":"1","matte":{"builtin":"sam"}}"#, "not one of"),
            (r#"{"kind":"pipeline","name":"r","version":"1","matte":{"builtin":"isnet"},"max_layers":12}"#, "max_layers"),
            (r#"{"kind":"pipeline","name":"r","version":"1","matte":{"torchscript":"m.pt","sha256":"x","input_size":64}}"#, "sha256"),
            (r#"{"kind":"pipeline","name":"r"}"#, "bad pipeline card"),
        ] {
            let (_dir, path) = write(text);
            let e = Recipe::read(&path).unwrap_err().to_string();
            assert!(e.contains("recipe.json") && e.contains(fault), "{e}");
        }
    }
}

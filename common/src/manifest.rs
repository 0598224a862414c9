//! The per-image manifest (`<out>/<rel>/manifest.json`), written last: an image is done if
//! and only if its manifest exists. Its schema is documented in `docs/manifest.md`.

use serde::{Deserialize, Serialize};

use crate::params::DecomposeParams;

/// The schema identifier written into every manifest.
pub const MANIFEST_SCHEMA: &str = "lamina.manifest/1";
/// The file name of the manifest inside an image's output folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The file name of the contact sheet inside an image's output folder.
pub const PREVIEW_FILE: &str = "preview.png";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    pub input: InputInfo,
    pub model: ModelInfo,
    pub params: DecomposeParams,
    pub canvas: Canvas,
    /// Written layers, bottom first, composited with the normal ("over") blend mode.
    pub layers: Vec<LayerInfo>,
    /// How many layers were written and why (absent in manifests from before the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_count: Option<LayerCountInfo>,
    /// Every file written for this image besides the manifest, relative to its folder:
    /// the layer PNGs, the documents, the contact sheet (empty in manifests from before the
    /// field, which wrote the layers' `file`s and the `preview`).
    #[serde(default)]
    pub files: Vec<String>,
    /// Model layers that had no visible pixel and were not written.
    pub dropped: Vec<usize>,
    /// The palette the model used (palette models only), in model layer order.
    pub palette: Option<Vec<[u8; 3]>>,
    /// PSNR in dB of the written layers recomposited over each other against the input
    /// (colours premultiplied by the input alpha); `null` when they are identical.
    pub recomposite_psnr_db: Option<f64>,
    pub preview: Option<String>,
    pub timings_ms: Timings,
    pub job_id: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputInfo {
    /// Key relative to the job's input location.
    pub key: String,
    pub size: u64,
    /// Content fingerprint: S3's ETag, or `sha256:<hex>` for local files.
    pub etag: String,
    pub format: String,
    /// Pixel type as decoded (`rgb8`, `rgba16`, `l8`, ...).
    pub color: String,
    /// EXIF orientation applied (1 = none).
    pub orientation: u8,
    pub has_alpha: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Model name and version, e.g. `fscs-k7@1`.
    pub id: String,
    pub weights_sha256: String,
    pub device: String,
    /// The networks' precision (fp32, fp16 or bf16); absent in manifests written before it
    /// was recorded, which ran in fp32. Informational: it does not decide whether an output
    /// is current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canvas {
    pub width: u32,
    pub height: u32,
}

/// The layer count an image ended with, and the rule that chose it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerCountInfo {
    pub chosen: usize,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// The layer's PNG (`layer-NN.png`); absent when PNG is not among the formats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The layer's name in the documents (`00 #a1b2c3`: index and colour).
    #[serde(default)]
    pub name: String,
    /// Model layers merged into this one (one entry when nothing was merged).
    pub sources: Vec<usize>,
    /// The layer's mean colour, weighted by alpha.
    pub color: [u8; 3],
    /// Smallest rectangle holding every pixel with alpha > 0. With `params.crop_layers`
    /// the layer's files hold just this rectangle, placed at (`x`, `y`) on the canvas.
    pub bbox: Option<BBox>,
    /// Sum of alpha over the canvas divided by its area.
    pub coverage: f64,
    /// What the layer is, for object models: the filled-in background or an object over
    /// it. Absent for colour layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<LayerRole>,
}

/// What an object model's layer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerRole {
    /// The bottom layer: the image with every object taken out and the holes filled.
    Background,
    /// An object with its soft matte and estimated foreground colours.
    Object,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BBox {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub fetch: f64,
    pub decode: f64,
    pub inference: f64,
    pub encode: f64,
    pub write: f64,
}

impl LayerInfo {
    /// The layer's PNG file name; empty when PNG was not written.
    pub fn png(&self) -> &str {
        self.file.as_deref().unwrap_or("")
    }
}

impl Manifest {
    /// Whether this manifest records the same input, model and parameters, so the image
    /// need not be decomposed again.
    pub fn matches(&self, etag: &str, model_id: &str, weights_sha256: &str, params: &DecomposeParams) -> bool {
        self.schema == MANIFEST_SCHEMA
            && self.input.etag == etag
            && self.model.id == model_id
            && self.model.weights_sha256 == weights_sha256
            && &self.params == params
    }
}

//! The per-image manifest (`<out>/<rel>/manifest.json`), written last: an image is done if
//! and only if its manifest exists. Its schema is documented in `docs/manifest.md`.

use serde::{Deserialize, Serialize};

use crate::params::{DecomposeParams, RenderParams};

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
    /// The model's parameters: with the input and the model, what decides whether the
    /// layers are current.
    #[serde(deserialize_with = "crate::params::recorded")]
    pub params: DecomposeParams,
    /// What was rendered from the layers (formats, cropping); absent in manifests from
    /// before the two steps were apart, whose outputs are rendered again when next asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render: Option<RenderParams>,
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
    /// Size and sha256 of every file in `files` (absent in manifests from before the field):
    /// a layer file that is missing or differs makes the image decompose again; a rendered
    /// file that is missing makes it render again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputFile>,
    /// Set when the outputs were rendered again from the stored layers (a later job asked
    /// for other formats, or a rendered file was missing): that job and when. `job_id` and
    /// `created_at` stay those of the decomposition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered: Option<Rendered>,
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

/// One written file: its name in the image's folder, its size, and for the stored
/// decomposition (the layer files and the contact sheet) its sha256, which a rendering checks
/// before it reads a layer. Documents carry no hash: they are made again from the layers
/// whenever one is missing, and hashing them would cost a rendering a tenth of its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    pub file: String,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl OutputFile {
    /// The record of a file of the stored decomposition: size and sha256.
    pub fn of(file: impl Into<String>, bytes: &[u8]) -> OutputFile {
        use sha2::Digest;
        OutputFile { file: file.into(), bytes: bytes.len() as u64, sha256: Some(hex::encode(sha2::Sha256::digest(bytes))) }
    }

    /// The record of a rendered file: its size.
    pub fn sized(file: impl Into<String>, bytes: &[u8]) -> OutputFile {
        OutputFile { file: file.into(), bytes: bytes.len() as u64, sha256: None }
    }
}

/// The re-rendering that last wrote an image's outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendered {
    pub job_id: String,
    pub at: String,
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
    /// The layer's PNG (`layer-NN.png`); absent in manifests from before the layer PNGs were
    /// always written, when PNG was not among the formats.
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
    /// The words read in a text layer (design models), its lines joined by newlines; absent
    /// where nothing could be read with confidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// What a layer is, for the models whose layers have roles (object and design models).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerRole {
    /// The bottom layer: the image with every object or element taken out and the holes
    /// filled.
    Background,
    /// An object with its soft matte and estimated foreground colours (object models).
    Object,
    /// A photographic region of a graphic (design models).
    Image,
    /// A region of one flat colour or a smooth gradient, crisp-edged (design models).
    Shape,
    /// A line or block of words of one colour (design models).
    Text,
}

/// What a model says of one of its layers, layer by layer (design models): its role, and for
/// a text layer the words read in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerLabel {
    pub role: LayerRole,
    pub text: Option<String>,
}

impl From<LayerRole> for LayerLabel {
    fn from(role: LayerRole) -> LayerLabel {
        LayerLabel { role, text: None }
    }
}

impl LayerRole {
    pub fn as_str(self) -> &'static str {
        match self {
            LayerRole::Background => "background",
            LayerRole::Object => "object",
            LayerRole::Image => "image",
            LayerRole::Shape => "shape",
            LayerRole::Text => "text",
        }
    }
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
    /// Whether this manifest records the same input, model and model parameters, so the
    /// image need not be decomposed again (its stored layers permitting).
    pub fn matches(&self, etag: &str, model_id: &str, weights_sha256: &str, params: &DecomposeParams) -> bool {
        self.schema == MANIFEST_SCHEMA
            && self.input.etag == etag
            && self.model.id == model_id
            && self.model.weights_sha256 == weights_sha256
            && &self.params == params
    }

    /// The layer files, bottom first (the stored decomposition); `None` when a layer has no
    /// file (a manifest from before the layer PNGs were always written).
    pub fn layer_files(&self) -> Option<Vec<&str>> {
        self.layers.iter().map(|l| l.file.as_deref()).collect()
    }

    /// The recorded size and sha256 of `file`, if the manifest has them.
    pub fn output(&self, file: &str) -> Option<&OutputFile> {
        self.outputs.iter().find(|o| o.file == file)
    }

    /// What the image's outputs need, given the files present in its folder (name and
    /// size) and the rendering asked for: nothing, a rendering from the stored layers, or a
    /// new decomposition (a layer file or the contact sheet, which holds the input's
    /// thumbnail, missing or of another size than recorded).
    pub fn needs(&self, present: &std::collections::HashMap<String, u64>, render: &RenderParams) -> Need {
        let intact = |file: &str| match (present.get(file), self.output(file)) {
            (Some(&size), Some(out)) => size == out.bytes,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let stored = self.layer_files().is_some_and(|layers| layers.into_iter().chain(self.preview.as_deref()).all(intact));
        if !stored {
            return Need::Decompose;
        }
        if self.render.as_ref() == Some(render) && self.files.iter().all(|f| intact(f)) {
            Need::Nothing
        } else {
            Need::Render
        }
    }
}

/// What an image whose decomposition is current still needs ([`Manifest::needs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Every output is there as recorded.
    Nothing,
    /// The layers are intact; other outputs are missing or other ones are asked for.
    Render,
    /// A layer file is missing or damaged.
    Decompose,
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::params::Formats;

    fn layer(file: &str) -> LayerInfo {
        LayerInfo { file: Some(file.into()), name: String::new(), sources: vec![0], color: [0; 3], bbox: None, coverage: 1.0, role: None, text: None }
    }

    /// A manifest of two layers, a PSD and the contact sheet, rendered as `render`.
    fn manifest(render: RenderParams) -> Manifest {
        let files = ["layer-00.png", "layer-01.png", "layers.psd", "preview.png"];
        Manifest {
            schema: MANIFEST_SCHEMA.into(),
            input: InputInfo { key: "a.png".into(), size: 1, etag: "e".into(), format: "png".into(), color: "rgb8".into(), orientation: 1, has_alpha: false },
            model: ModelInfo { id: "m@1".into(), weights_sha256: "w".into(), device: "cpu".into(), precision: None },
            params: DecomposeParams::default(),
            render: Some(render),
            canvas: Canvas { width: 1, height: 1 },
            layers: vec![layer("layer-00.png"), layer("layer-01.png")],
            layer_count: None,
            files: files.map(String::from).to_vec(),
            outputs: files.iter().map(|f| OutputFile::of(*f, f.as_bytes())).collect(),
            rendered: None,
            dropped: vec![],
            palette: None,
            recomposite_psnr_db: None,
            preview: Some(PREVIEW_FILE.into()),
            timings_ms: Timings::default(),
            job_id: "j".into(),
            created_at: String::new(),
        }
    }

    fn present(m: &Manifest) -> HashMap<String, u64> {
        m.outputs.iter().map(|o| (o.file.clone(), o.bytes)).collect()
    }

    #[test]
    fn what_an_image_needs_follows_its_files_and_the_rendering_asked_for() {
        let psd = RenderParams { formats: Formats::parse("psd").unwrap(), crop_layers: false };
        let m = manifest(psd.clone());
        let all = present(&m);
        assert_eq!(m.needs(&all, &psd), Need::Nothing);
        // Other outputs asked for, or a document gone: rendered from the stored layers.
        assert_eq!(m.needs(&all, &RenderParams::default()), Need::Render);
        assert_eq!(m.needs(&all, &RenderParams { crop_layers: true, ..psd.clone() }), Need::Render);
        let mut no_psd = all.clone();
        no_psd.remove("layers.psd");
        assert_eq!(m.needs(&no_psd, &psd), Need::Render);
        // A layer file (or the contact sheet, which holds the input's thumbnail) gone or cut
        // short: decomposed again.
        for file in ["layer-01.png", "preview.png"] {
            let mut missing = all.clone();
            missing.remove(file);
            assert_eq!(m.needs(&missing, &psd), Need::Decompose, "{file} missing");
            let mut short = all.clone();
            short.insert(file.into(), 3);
            assert_eq!(m.needs(&short, &psd), Need::Decompose, "{file} cut short");
        }
        // A manifest from before `render` and `outputs`: its files by name, then rendered.
        let old = Manifest { render: None, outputs: vec![], ..m.clone() };
        assert_eq!(old.needs(&all, &RenderParams::default()), Need::Render);
        // One from before the layer PNGs were always written: no layers to render from.
        let mut documents_only = old.clone();
        documents_only.layers[0].file = None;
        assert_eq!(documents_only.needs(&all, &RenderParams::default()), Need::Decompose);
    }

    #[test]
    fn manifests_from_before_the_render_step_still_read_with_their_model_parameters() {
        let mut json = serde_json::to_value(manifest(RenderParams::default())).unwrap();
        json["params"] = serde_json::json!({"layers": 3, "palette": null, "formats": ["png", "psd"], "crop_layers": true});
        json.as_object_mut().unwrap().remove("render");
        let old: Manifest = serde_json::from_value(json).unwrap();
        assert_eq!(old.params.layers, Some(crate::params::LayerCount::Count(3)));
        assert_eq!(old.render, None);
    }
}

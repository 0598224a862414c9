//! The parameters of an image's two steps. [`DecomposeParams`]: everything besides the input
//! bytes and the model that changes the layers; two runs with equal parameters make identical
//! layers, and only these decide whether an image must be decomposed again.
//! [`RenderParams`]: what is made from the stored layers (documents, cropping); a change of
//! these alone re-renders the outputs from the layers already written, without the model.

use serde::{Deserialize, Serialize};
use crate::BadValue;

/// The model's parameters, recorded in every manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecomposeParams {
    /// How many layers to keep: a number (the most similar layers are merged down to it),
    /// `auto` (similar layers are merged while the merged layers stay faithful; see
    /// [`AUTO_DISTANCE`]), or `None` to keep what the model makes. Layers with no visible
    /// pixel are dropped after merging.
    pub layers: Option<LayerCount>,
    /// A fixed palette (8-bit RGB, one colour per model layer) instead of the one k-means
    /// finds; only for palette-based models such as `fscs`.
    pub palette: Option<Vec<[u8; 3]>>,
    /// `reference` (the default: the networks see every pixel) or `fast` (the networks see
    /// the image reduced to about one megapixel; the layers come back to full resolution
    /// guided by the full image). Left out of messages and manifests when `reference`, so
    /// outputs written before the field existed stay current.
    #[serde(default, skip_serializing_if = "Quality::is_reference")]
    pub quality: Quality,
    /// Layers covering less than this share of the image (alpha mass over area) are merged
    /// into the layer of the nearest colour. Left out when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_coverage: Option<Share>,
}

/// What is made from an image's stored layers: the rendering step's parameters, recorded in
/// every manifest. Changing them never re-runs a model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderParams {
    /// What is written besides the manifest and the contact sheet: the layer PNGs (always:
    /// they are the stored decomposition), a Photoshop document, an OpenRaster document.
    /// Left out when PNG only (the default).
    #[serde(default, skip_serializing_if = "Formats::is_png_only")]
    pub formats: Formats,
    /// Every layer file holds only its bounding box (`bbox` in the manifest gives its
    /// offset), in PNG and in the documents. Left out when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub crop_layers: bool,
}

impl RenderParams {
    pub fn is_default(&self) -> bool {
        *self == RenderParams::default()
    }
}

/// Reads the model's parameters as a manifest records them, including manifests from before
/// the output options moved to `render` (their `formats` and `crop_layers` are passed over:
/// the stored layers say how they were written).
pub fn recorded<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<DecomposeParams, D::Error> {
    #[derive(Deserialize)]
    struct Recorded {
        layers: Option<LayerCount>,
        palette: Option<Vec<[u8; 3]>>,
        #[serde(default)]
        quality: Quality,
        #[serde(default)]
        min_coverage: Option<Share>,
        #[serde(default, rename = "formats")]
        _formats: Option<serde::de::IgnoredAny>,
        #[serde(default, rename = "crop_layers")]
        _crop_layers: Option<serde::de::IgnoredAny>,
    }
    let r = Recorded::deserialize(deserializer)?;
    Ok(DecomposeParams { layers: r.layers, palette: r.palette, quality: r.quality, min_coverage: r.min_coverage })
}

/// Under `--layers auto`, two model layers may share an output layer only if their palette
/// colours lie within this distance (Euclidean, sRGB scaled to [0,1], so 0.2 is about 30
/// levels in each channel); every pair inside a merged layer must (complete linkage), so a
/// merged layer never spans colours an editor would want apart. Merging alpha-add layers is
/// exact: the recomposite does not change, no visible region is lost.
pub const AUTO_DISTANCE: f64 = 0.2;

/// How many layers to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "CountRepr", into = "CountRepr")]
pub enum LayerCount {
    /// Merge the most similar layers until this many remain.
    Count(u8),
    /// Merge while the merged layers stay faithful ([`AUTO_DISTANCE`]).
    Auto,
}

/// How [`LayerCount`] travels: a number or the word `"auto"`.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum CountRepr {
    Count(u8),
    Word(String),
}

impl TryFrom<CountRepr> for LayerCount {
    type Error = BadValue;

    fn try_from(repr: CountRepr) -> Result<LayerCount, BadValue> {
        match repr {
            CountRepr::Count(n) => Ok(LayerCount::Count(n)),
            CountRepr::Word(word) => LayerCount::parse(&word),
        }
    }
}

impl From<LayerCount> for CountRepr {
    fn from(count: LayerCount) -> CountRepr {
        match count {
            LayerCount::Count(n) => CountRepr::Count(n),
            LayerCount::Auto => CountRepr::Word("auto".to_owned()),
        }
    }
}

impl LayerCount {
    /// `auto` or a number from 1 to 255.
    pub fn parse(text: &str) -> Result<LayerCount, BadValue> {
        match text.trim() {
            "auto" => Ok(LayerCount::Auto),
            n => n.parse::<u8>().map(LayerCount::Count).map_err(|_| BadValue::new("layers", text, "is not a number from 1 to 255 or auto")),
        }
    }

    /// The fixed count, if one was asked for.
    pub fn count(self) -> Option<u8> {
        match self {
            LayerCount::Count(n) => Some(n),
            LayerCount::Auto => None,
        }
    }
}

impl std::fmt::Display for LayerCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerCount::Count(n) => write!(f, "{n}"),
            LayerCount::Auto => f.write_str("auto"),
        }
    }
}

/// A share of an image in [0, 1] (a finite number, so equality is an equivalence).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Share(f64);

impl Eq for Share {}

impl TryFrom<f64> for Share {
    type Error = BadValue;

    fn try_from(value: f64) -> Result<Share, BadValue> {
        if (0.0..=1.0).contains(&value) {
            Ok(Share(value))
        } else {
            Err(BadValue::new("", value.to_string(), "is not a share from 0 to 1"))
        }
    }
}

impl From<Share> for f64 {
    fn from(share: Share) -> f64 {
        share.0
    }
}

impl Share {
    /// `0.02` or `2%`.
    pub fn parse(text: &str) -> Result<Share, BadValue> {
        let text = text.trim();
        let value = match text.strip_suffix('%') {
            Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
            None => text.parse::<f64>(),
        };
        value.map_err(|_| BadValue::new("", text, "is not a share such as 0.02 or 2%")).and_then(Share::try_from)
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One straight-alpha RGBA PNG per layer, `layer-NN.png`, bottom first. Always written:
    /// the layer PNGs are the stored decomposition every other output is rendered from.
    Png,
    /// `layers.psd` (`layers.psb` when a side is over 30000 pixels): 8-bit RGB, one pixel
    /// layer per Lamina layer, with the composite as its merged image.
    Psd,
    /// `layers.ora`: OpenRaster, as GIMP, Krita and MyPaint open it.
    Ora,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Png, Format::Psd, Format::Ora];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Psd => "psd",
            Format::Ora => "ora",
        }
    }
}

/// A set of formats, kept sorted (`png`, `psd`, `ora`) so equal sets compare and serialise
/// equal. It always holds `png`: the layer PNGs are the stored decomposition, so asking for
/// `psd` alone writes the PNGs and the PSD.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<Format>", into = "Vec<Format>")]
pub struct Formats(Vec<Format>);

impl Default for Formats {
    fn default() -> Formats {
        Formats(vec![Format::Png])
    }
}

impl TryFrom<Vec<Format>> for Formats {
    type Error = BadValue;

    fn try_from(mut formats: Vec<Format>) -> Result<Formats, BadValue> {
        if formats.is_empty() {
            return Err(BadValue::new("formats", "", "names no format (choose from png, psd, ora)"));
        }
        formats.push(Format::Png);
        formats.sort_unstable();
        formats.dedup();
        Ok(Formats(formats))
    }
}

impl From<Formats> for Vec<Format> {
    fn from(formats: Formats) -> Vec<Format> {
        formats.0
    }
}

impl Formats {
    /// `"png,psd,ora"`, any non-empty subset in any order.
    pub fn parse(text: &str) -> Result<Formats, BadValue> {
        let formats = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                Format::ALL.into_iter().find(|f| f.as_str() == s.to_ascii_lowercase()).ok_or_else(|| BadValue::new("format", s, "is not png, psd or ora"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Formats::try_from(formats)
    }

    pub fn contains(&self, format: Format) -> bool {
        self.0.contains(&format)
    }

    pub fn is_png_only(&self) -> bool {
        self.0 == [Format::Png]
    }

    pub fn iter(&self) -> impl Iterator<Item = Format> + '_ {
        self.0.iter().copied()
    }
}

impl std::fmt::Display for Formats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|f| f.as_str()).collect();
        f.write_str(&names.join(","))
    }
}

/// How closely the networks look at an image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    /// The networks run on every pixel (in tiles when the image is large).
    #[default]
    Reference,
    /// The networks run on the image reduced to at most [`FAST_PIXELS`]; alphas come back to
    /// full resolution by guided upsampling and colours are corrected so the layers still
    /// rebuild the full image.
    Fast,
}

/// The most pixels the networks see in fast mode (1024 x 1024).
pub const FAST_PIXELS: u64 = 1 << 20;

impl Quality {
    pub fn is_reference(&self) -> bool {
        *self == Quality::Reference
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Reference => "reference",
            Quality::Fast => "fast",
        }
    }

    pub fn parse(text: &str) -> Result<Quality, BadValue> {
        match text {
            "reference" => Ok(Quality::Reference),
            "fast" => Ok(Quality::Fast),
            other => Err(BadValue::new("quality", other, "is not reference or fast")),
        }
    }
}

impl std::fmt::Display for Quality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DecomposeParams {
    /// The fixed layer count asked for, if any.
    pub fn layer_target(&self) -> Option<u8> {
        self.layers.and_then(LayerCount::count)
    }

    /// Whether layers may be merged beyond a fixed count (auto or a minimum coverage).
    pub fn merges_by_content(&self) -> bool {
        self.layers == Some(LayerCount::Auto) || self.min_coverage.is_some()
    }

    /// Why an image has the layers it has, in one line for the manifest: `model_layers`
    /// made by the model, `written` written, `dropped` model layers left out as invisible.
    pub fn explain_count(&self, model_layers: usize, written: usize, dropped: usize) -> String {
        let mut why = match self.layers {
            None => format!("the model's {model_layers} layers"),
            Some(LayerCount::Count(n)) => format!("--layers {n}: the most similar of {model_layers} layers merged down to {}", usize::from(n).min(model_layers)),
            Some(LayerCount::Auto) => format!(
                "--layers auto: of {model_layers} layers, those whose colours all lie within {AUTO_DISTANCE} of each other (sRGB distance) merged"
            ),
        };
        if let Some(share) = self.min_coverage {
            why.push_str(&format!("; layers covering under {}% merged into the nearest colour", share.get() * 100.0));
        }
        if dropped > 0 {
            why.push_str(&format!("; {dropped} model layers with no visible pixel dropped"));
        }
        why.push_str(&format!("; {written} written"));
        why
    }

    /// Parses `"r,g,b;r,g,b;..."`.
    pub fn parse_palette(text: &str) -> Result<Vec<[u8; 3]>, BadValue> {
        text.split(';')
            .filter(|s| !s.trim().is_empty())
            .map(|colour| {
                let parts: Vec<&str> = colour.split(',').map(str::trim).collect();
                let [r, g, b] = parts.as_slice() else {
                    return Err(BadValue::new("palette colour", colour, "is not r,g,b"));
                };
                let channel = |s: &str| {
                    s.parse::<u8>().map_err(|_| BadValue::new("palette value", s, "is not a number from 0 to 255"))
                };
                Ok([channel(r)?, channel(g)?, channel(b)?])
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_palettes() {
        assert_eq!(DecomposeParams::parse_palette("1,2,3; 4,5,6").unwrap(), vec![[1, 2, 3], [4, 5, 6]]);
        assert!(DecomposeParams::parse_palette("1,2").is_err());
        assert!(DecomposeParams::parse_palette("1,2,300").is_err());
    }

    #[test]
    fn reference_quality_is_left_out_so_older_manifests_still_match() {
        let reference = DecomposeParams::default();
        assert_eq!(serde_json::to_string(&reference).unwrap(), r#"{"layers":null,"palette":null}"#);
        let old: DecomposeParams = serde_json::from_str(r#"{"layers":3,"palette":null}"#).unwrap();
        assert_eq!(old.quality, Quality::Reference);
        let fast = DecomposeParams { quality: Quality::Fast, ..DecomposeParams::default() };
        let text = serde_json::to_string(&fast).unwrap();
        assert!(text.contains(r#""quality":"fast""#), "{text}");
        assert_eq!(serde_json::from_str::<DecomposeParams>(&text).unwrap(), fast);
        assert!(serde_json::from_str::<DecomposeParams>(r#"{"layers":null,"palette":null,"quality":"best"}"#).is_err());
    }

    #[test]
    fn layers_travel_as_a_number_or_auto() {
        let auto: DecomposeParams = serde_json::from_str(r#"{"layers":"auto","palette":null}"#).unwrap();
        assert_eq!(auto.layers, Some(LayerCount::Auto));
        assert_eq!(serde_json::to_string(&auto).unwrap(), r#"{"layers":"auto","palette":null}"#);
        let three: DecomposeParams = serde_json::from_str(r#"{"layers":3,"palette":null}"#).unwrap();
        assert_eq!((three.layers, three.layer_target()), (Some(LayerCount::Count(3)), Some(3)));
        assert!(serde_json::from_str::<DecomposeParams>(r#"{"layers":"many","palette":null}"#).is_err());
        assert!(serde_json::from_str::<DecomposeParams>(r#"{"layers":300,"palette":null}"#).is_err());
        assert_eq!(LayerCount::parse("auto"), Ok(LayerCount::Auto));
        assert_eq!(LayerCount::parse("4"), Ok(LayerCount::Count(4)));
        assert!(LayerCount::parse("four").is_err());
    }

    #[test]
    fn formats_are_a_sorted_non_empty_set_left_out_when_png_only() {
        let f = Formats::parse("ora, PSD,png,ora").unwrap();
        assert_eq!(f.to_string(), "png,psd,ora");
        assert!(f.contains(Format::Psd) && !Formats::default().contains(Format::Ora));
        assert!(Formats::parse("").is_err());
        assert!(Formats::parse("png,tiff").unwrap_err().to_string().contains("tiff"));
        // The layer PNGs are the stored decomposition: every set holds them.
        assert_eq!(Formats::parse("psd").unwrap().to_string(), "png,psd");
        let params = DecomposeParams { min_coverage: Some(Share::parse("2%").unwrap()), ..DecomposeParams::default() };
        let text = serde_json::to_string(&params).unwrap();
        assert_eq!(text, r#"{"layers":null,"palette":null,"min_coverage":0.02}"#);
        assert_eq!(serde_json::from_str::<DecomposeParams>(&text).unwrap(), params);
        assert!(serde_json::from_str::<DecomposeParams>(r#"{"layers":null,"palette":null,"min_coverage":1.5}"#).is_err());
        // Output options are the rendering step's, not the model's.
        assert!(serde_json::from_str::<DecomposeParams>(r#"{"layers":null,"palette":null,"formats":["psd"]}"#).is_err());
        let render = RenderParams { formats: Formats::parse("ora").unwrap(), crop_layers: true };
        let text = serde_json::to_string(&render).unwrap();
        assert_eq!(text, r#"{"formats":["png","ora"],"crop_layers":true}"#);
        assert_eq!(serde_json::from_str::<RenderParams>(&text).unwrap(), render);
        assert_eq!(serde_json::to_string(&RenderParams::default()).unwrap(), "{}");
        assert!(serde_json::from_str::<RenderParams>(r#"{"formats":[]}"#).is_err());
        assert!(serde_json::from_str::<RenderParams>(r#"{"layers":3}"#).is_err());
        assert_eq!(Share::parse("0.5").unwrap().get(), 0.5);
        assert!(Share::parse("-1").is_err() && Share::parse("lots").is_err());
    }
}

//! The parameters of a decomposition: everything besides the input bytes and the model that
//! changes what is written. Two runs with equal parameters write identical layers.

use serde::{Deserialize, Serialize};

/// User-visible decomposition parameters, recorded in every manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecomposeParams {
    /// The most layers to keep; `None` keeps what the model makes. Similar layers are merged
    /// down to this count, then layers with no visible pixel are dropped.
    pub layers: Option<u8>,
    /// A fixed palette (8-bit RGB, one colour per model layer) instead of the one k-means
    /// finds; only for palette-based models such as `fscs`.
    pub palette: Option<Vec<[u8; 3]>>,
    /// `reference` (the default: the networks see every pixel) or `fast` (the networks see
    /// the image reduced to about one megapixel; the layers come back to full resolution
    /// guided by the full image). Left out of messages and manifests when `reference`, so
    /// outputs written before the field existed stay current.
    #[serde(default, skip_serializing_if = "Quality::is_reference")]
    pub quality: Quality,
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

    pub fn parse(text: &str) -> Result<Quality, String> {
        match text {
            "reference" => Ok(Quality::Reference),
            "fast" => Ok(Quality::Fast),
            other => Err(format!("quality {other:?} is not reference or fast")),
        }
    }
}

impl std::fmt::Display for Quality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DecomposeParams {
    /// Parses `"r,g,b;r,g,b;..."`.
    pub fn parse_palette(text: &str) -> Result<Vec<[u8; 3]>, String> {
        text.split(';')
            .filter(|s| !s.trim().is_empty())
            .map(|colour| {
                let parts: Vec<&str> = colour.split(',').map(str::trim).collect();
                let [r, g, b] = parts.as_slice() else {
                    return Err(format!("palette colour {colour:?} is not r,g,b"));
                };
                let channel = |s: &str| {
                    s.parse::<u8>().map_err(|_| format!("palette value {s:?} is not a number from 0 to 255"))
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
}

//! Design layers: a flattened graphic (a banner, a poster, a social post, a logo) taken
//! apart as its maker built it: an opaque background (its flat colour or gradient continued
//! under everything), then image layers (photographic regions), shape layers (regions of one
//! flat colour or a smooth gradient, with crisp anti-aliased edges) and text layers (words
//! found by a pretrained text detector, their alpha unmixed from the local background so the
//! layer's colour is the text's own, and the words in it read by a pretrained recogniser).
//! The engine is in `engine/`.

use crate::{Capabilities, Count, Description, Family, Large, LayerRule, ModelIdentity, ParamRule, Roles};
use lamina_common::params::{DecomposeParams, LayerCount, Share};

/// The text detector's ONNX file (PP-OCRv6 small, from the rapidocr 3.10.0 wheel), as
/// `ops/fetch-models.sh` pins it; its TorchScript conversion is checked against it.
pub const TEXT_DETECTOR_SHA256: &str = "090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f";

/// The text recogniser's ONNX file (PP-OCRv6 small, from the same wheel): the words of each
/// text layer are read with its TorchScript conversion, checked against it.
pub const TEXT_RECOGNISER_SHA256: &str = "6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884";

/// The most layers one graphic gets; `auto` merges the smallest elements beyond it.
pub const MAX_DESIGN_LAYERS: u8 = 32;

/// Elements covering less than this share of the image are merged into the background
/// under `auto`, unless `--min-coverage` says otherwise.
pub const DEFAULT_MIN_COVERAGE: f64 = 0.0002;

pub static FAMILY: Family = Family {
    name: "design",
    forms: "design",
    listed: true,
    rule: ParamRule {
        layers: LayerRule::Range { min: 1, max: MAX_DESIGN_LAYERS, what: "the background and up to 31 text, shape and image layers" },
        palette: None,
        fast: false,
        min_coverage: true,
    },
    caps: Capabilities { roles: Roles::Design, pads: false, fast_reduces: false, fast_copy: false, large: Large::Whole },
    accepts: |text| text == "design",
    describe,
    explain,
};

pub fn identity() -> ModelIdentity {
    ModelIdentity { id: "design@4".to_owned(), weights_sha256: TEXT_DETECTOR_SHA256.to_owned() }
}

pub fn describe(_text: &str) -> Description {
    Description { identity: Some(identity()), rule: FAMILY.rule, caps: FAMILY.caps, unread: None }
}

/// The share under which an element is merged into the background.
pub fn min_coverage(params: &DecomposeParams) -> f64 {
    params.min_coverage.map_or(DEFAULT_MIN_COVERAGE, Share::get)
}

pub fn explain(params: &DecomposeParams, count: Count) -> String {
    let limit = match params.layers {
        Some(LayerCount::Count(n)) => format!("--layers {n}: the smallest elements merged into the nearest layer of their role"),
        Some(LayerCount::Auto) | None => format!("--layers auto: every element found, at most {MAX_DESIGN_LAYERS} layers"),
    };
    let cover = min_coverage(params) * 100.0;
    let written = count.written;
    format!("the background, then image, shape and text layers: {limit}; elements covering under {cover}% of the image kept in the background; {written} written")
}

//! Object layers: each salient object on its own soft-matted layer over a background whose
//! hidden parts are filled in (`engine/`). `objects` (IS-Net mattes) and `objects-small`
//! (U2-Netp) are built-in recipes; `pipeline:PATH` is a user's recipe card naming its own
//! stages (`card.rs`).

pub mod card;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::{Capabilities, Count, Description, Family, Large, LayerRule, ModelIdentity, ParamRule, Roles};
use card::{Recipe, DEFAULT_MIN_COVERAGE, MAX_OBJECT_LAYERS};
use lamina_common::params::{DecomposeParams, LayerCount, Share};

/// The published matting weights of the object models: the files `ops/fetch-models.sh`
/// fetches, checked every time a model loads.
pub const U2NETP_SHA256: &str = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8";
pub const ISNET_SHA256: &str = "b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb";

pub static FAMILY: Family = Family {
    name: "objects",
    forms: "objects, objects-small, pipeline:PATH",
    listed: true,
    rule: ParamRule {
        layers: LayerRule::Range { min: 2, max: MAX_OBJECT_LAYERS, what: "the background and up to 7 objects" },
        palette: None,
        fast: false,
        min_coverage: true,
    },
    caps: Capabilities { roles: Roles::Objects, pads: false, fast_reduces: false, fast_copy: false, large: Large::Tiles },
    accepts: |text| ObjectNet::named(text).is_some() || pipeline_card(text).is_some(),
    describe,
    explain,
};

/// A built-in object model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectNet {
    /// `objects`: IS-Net mattes (1024^2 input, 44 M parameters).
    IsNet,
    /// `objects-small`: U2-Netp mattes (320^2 input, 1.1 M parameters).
    U2Netp,
}

impl ObjectNet {
    pub fn named(text: &str) -> Option<ObjectNet> {
        match text {
            "objects" => Some(ObjectNet::IsNet),
            "objects-small" => Some(ObjectNet::U2Netp),
            _ => None,
        }
    }

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

pub fn pipeline_card(text: &str) -> Option<&Path> {
    text.strip_prefix("pipeline:").filter(|p| !p.is_empty()).map(Path::new)
}

pub fn describe(text: &str) -> Description {
    let mut description = Description { identity: None, rule: FAMILY.rule, caps: FAMILY.caps, unread: None };
    if let Some(net) = ObjectNet::named(text) {
        description.identity = Some(net.identity());
    } else if let Some(path) = pipeline_card(text) {
        // The card names its stages' sha256, so the card's own hash covers the weights.
        let bytes = std::fs::read(path).map_err(|e| crate::CardError { path: path.to_owned(), reason: format!("cannot read the pipeline card: {e}") });
        match bytes.and_then(|bytes| Ok((Recipe::read(path)?, bytes))) {
            Ok((recipe, bytes)) => {
                description.identity = Some(ModelIdentity { id: format!("{}@{}", recipe.name, recipe.version), weights_sha256: hex::encode(Sha256::digest(&bytes)) });
            }
            Err(reason) => description.unread = Some(reason),
        }
    }
    description
}

/// Why an image has the layers it has: the loop peels objects until the model's limit of
/// layers (background included) or until a matte covers under the minimum coverage.
pub fn explain(params: &DecomposeParams, count: Count) -> String {
    let limit = match params.layers {
        Some(LayerCount::Count(n)) => format!("--layers {n}"),
        Some(LayerCount::Auto) => format!("--layers auto: at most {MAX_OBJECT_LAYERS}"),
        None => format!("the model's limit of {}", count.model_layers),
    };
    let cover = params.min_coverage.map_or(DEFAULT_MIN_COVERAGE, Share::get) * 100.0;
    let objects = match count.written.saturating_sub(1) {
        1 => "1 object".to_owned(),
        n => format!("{n} objects"),
    };
    let written = count.written;
    format!("the background and {objects}: objects are peeled off until {limit} layers or until a new matte covers under {cover}% of the image; {written} written")
}

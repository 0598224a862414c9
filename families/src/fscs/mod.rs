//! FSCS, Fast Soft Color Segmentation (Akimoto et al., CVPR 2020): `--model fscs`, colour
//! layers from the authors' pretrained 7-layer weights, built in (`engine/`).

use crate::{Capabilities, Description, Family, Large, LayerRule, ModelIdentity, ParamRule, Roles};

/// The identity manifests record. The worker checks the weights it loads against the hash;
/// the coordinator uses both to decide which images are current.
pub const MODEL_ID: &str = "fscs-k7@1";
pub const WEIGHTS_SHA256: &str = "a304fbdf3b57d04b6ff483ae7f065e3cf553da8e1eb73b5ce8ccf3e585e117d0";
/// The palette size the pretrained weights were trained for.
pub const LAYERS: usize = 7;

pub static FAMILY: Family = Family {
    name: "fscs",
    forms: "fscs",
    listed: true,
    rule: ParamRule { layers: LayerRule::Range { min: 2, max: LAYERS as u8, what: "" }, palette: Some(LAYERS), fast: true, min_coverage: true },
    caps: Capabilities { roles: Roles::Colour, pads: true, fast_reduces: true, fast_copy: true, large: Large::Tiles },
    accepts: |text| text == "fscs",
    describe: |_| Description {
        identity: Some(ModelIdentity { id: MODEL_ID.to_owned(), weights_sha256: WEIGHTS_SHA256.to_owned() }),
        rule: FAMILY.rule,
        caps: FAMILY.caps,
        unread: None,
    },
    explain: crate::explain_count,
};

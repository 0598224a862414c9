//! The capacity-test stand-in (`capacity-test:MS`): holds each batch for a fixed time
//! without using the CPU, standing in for GPU time when measuring how a fleet scales on
//! machines without GPUs (`engine.rs`). Named as what it is, never a default, not listed.

use crate::{Capabilities, Description, Family, Large, LayerRule, ModelIdentity, ParamRule, Roles};

pub static FAMILY: Family = Family {
    name: "capacity-test",
    forms: "capacity-test:MS",
    listed: false,
    rule: ParamRule { layers: LayerRule::Any, palette: None, fast: false, min_coverage: false },
    caps: Capabilities { roles: Roles::Colour, pads: false, fast_reduces: false, fast_copy: false, large: Large::Refuse },
    accepts: |text| hold_ms(text).is_some(),
    describe: |text| Description {
        identity: hold_ms(text).map(|ms| ModelIdentity { id: id(ms), weights_sha256: String::new() }),
        rule: FAMILY.rule,
        caps: FAMILY.caps,
        unread: None,
    },
    explain: crate::explain_count,
};

/// The hold time per batch of `capacity-test:MS`, in milliseconds.
pub fn hold_ms(text: &str) -> Option<u64> {
    text.strip_prefix("capacity-test:")?.parse().ok()
}

/// The id its manifests record.
pub fn id(ms: u64) -> String {
    format!("capacity-test-{ms}ms@1")
}

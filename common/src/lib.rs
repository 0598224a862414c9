//! Lamina's shared vocabulary: where things are ([`location`]), how they are stored
//! ([`store`]), what a decomposition records ([`manifest`]), what travels between the
//! coordinator and the workers ([`messages`]), and the small helpers every part needs.
#![forbid(unsafe_code)]

pub mod amqp;
pub mod config;
pub mod error;
pub mod keys;
pub mod logging;
pub mod location;
pub mod manifest;
pub mod messages;
pub mod params;
pub mod retry;
pub mod signal;
pub mod store;
pub mod time;

pub use error::{ErrorKind, StoreError};

/// The built-in model's identity, as its manifests record it. The worker checks the weights
/// it loads against the hash; the coordinator (which does not load models) uses both to
/// decide which images are current.
pub const FSCS_MODEL_ID: &str = "fscs-k7@1";
pub const FSCS_WEIGHTS_SHA256: &str = "a304fbdf3b57d04b6ff483ae7f065e3cf553da8e1eb73b5ce8ccf3e585e117d0";
pub use location::Location;
pub use store::{ObjectMeta, ObjectStore};

/// The capacity-test model, `capacity-test:MS`: its hold time per batch in milliseconds and
/// the id its manifests record. It stands in for GPU time when measuring how a fleet scales
/// on a machine without GPUs; it is never a default.
pub fn capacity_test_model(spec: &str) -> Option<(u64, String)> {
    let ms: u64 = spec.strip_prefix("capacity-test:")?.parse().ok()?;
    Some((ms, format!("capacity-test-{ms}ms@1")))
}

//! The device runtime: which devices a worker runs on and how (`device.rs`: CUDA, GPU
//! memory probes), its inference lanes (`lanes.rs`), the start-up calibration of batch
//! sizes and precision (`calibrate.rs`), and the lazily loaded model of `lamina run`
//! (`slot.rs`). The models themselves are the families' (`lamina_families`, their networks
//! compiled by `lamina_engine`): this module re-exports the engine (the `Model` trait, its
//! contract and errors) and loads models through the one table of families.

pub mod calibrate;
mod device;
pub mod lanes;
mod slot;

pub use device::{cuda_device_count, device_name, gpu_memory, load_cuda, parse_device, parse_devices, BadDevice};
pub use lamina_engine::*;
pub use lamina_families::ModelSpec;
pub use lanes::{load_lanes, Lane, LaneArgs, LaneSpec, Lanes};
pub use slot::ModelSlot;

/// A worker's models, shared by the sessions of one process: loaded once, they outlive
/// broker reconnects. A session's inference threads hold the lanes' locks while they run, so
/// a new session's pipeline waits for the old one's to finish.
pub type SharedModel = std::sync::Arc<Lanes>;

/// Shares one loaded model as a single lane.
pub fn shared(model: Box<dyn Model>) -> SharedModel {
    std::sync::Arc::new(Lanes::single(model))
}

/// Loads a model by its `--model` text, through the family that answers to it
/// ([`lamina_families::FAMILIES`]).
pub fn load(spec: &str, device: tch::Device) -> Result<Box<dyn Model>, ModelError> {
    let parsed = ModelSpec::parse(spec).map_err(|e| ModelError::Load { path: spec.to_owned(), reason: e.to_string() })?;
    lamina_engine::load(&parsed, device)
}

//! The flags of the worker's groups that need the model families or libtorch, declared once
//! and shared by `lamina-worker` and `lamina run`/`submit`/`bench` (the other groups are in
//! `lamina_common::args`).

use clap::Args;

use lamina_common::args::MemoryBudget;
use lamina_families::ModelSpec;

use crate::runtime::{LaneArgs, LaneSpec};

/// Which model.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// `fscs` (colour layers, built in), `objects` (objects over a filled background, IS-Net
    /// mattes), `objects-small` (the same with U2-Netp: fast), `design` (a graphic's
    /// background, image, shape and text layers), `pipeline:CARD.json` (an object recipe with
    /// your own TorchScript stages) or `torchscript:PATH` (a model card PATH with .json must
    /// sit beside it). The object models' weights and the text detector: ops/fetch-models.sh.
    #[arg(long, env = "LAMINA_MODEL", default_value = "fscs", value_parser = model)]
    pub model: String,
}

/// A `--model` some family answers to.
fn model(text: &str) -> Result<String, lamina_families::UnknownModel> {
    ModelSpec::parse(text).map(|_| text.to_owned())
}

/// Where inference runs on this machine.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// Where inference runs: auto (CUDA when present), cpu, cuda, cuda:N, several
    /// (cuda:0,cuda:1) or cuda:all (one process drives every device named, with its own
    /// inference lanes on each).
    #[arg(long, env = "LAMINA_DEVICE", default_value = "auto")]
    pub device: String,
    #[command(flatten)]
    pub lanes: LaneArgs,
}

/// Why the devices or lanes asked for cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// `--device` names a device this machine does not have or this build does not know.
    #[error("--device: {0}")]
    Device(#[from] crate::runtime::BadDevice),
    #[error("--device names no device")]
    NoDevice,
    #[error("--precision: {0}")]
    Precision(lamina_common::BadValue),
    #[error("--warm-up: {0}")]
    WarmUp(lamina_common::BadValue),
}

impl DeviceArgs {
    pub fn devices(&self) -> Result<Vec<tch::Device>, DeviceError> {
        Ok(crate::runtime::parse_devices(&self.device)?)
    }

    /// The first (or only) device.
    pub fn device(&self) -> Result<tch::Device, DeviceError> {
        self.devices()?.first().copied().ok_or(DeviceError::NoDevice)
    }

    /// The inference lanes to load on the devices named.
    pub fn lane_spec(&self) -> Result<LaneSpec, DeviceError> {
        self.lanes.spec(self.devices()?)
    }
}

/// The memory budget of one forward pass on `device`.
pub fn memory_budget(budget: MemoryBudget, device: tch::Device) -> u64 {
    match budget {
        MemoryBudget::Auto => crate::pipeline::default_memory_budget(device),
        MemoryBudget::Bytes(bytes) => bytes,
    }
}

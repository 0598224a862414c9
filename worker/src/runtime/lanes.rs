//! Inference lanes: the models a worker runs, one per inference thread.
//!
//! A lane is a model replica on one device with a thread of its own (see `pipeline/infer.rs`).
//! A machine with N GPUs runs one worker process with N devices (`--device cuda:all` or
//! `cuda:0,cuda:1,...`), and each device may have more than one lane (`--lanes-per-device`):
//! while one lane's forward pass runs, another's inputs travel to the device and its layers
//! come back and are quantised, so the copies and the host-side steps overlap with the
//! device's work. All lanes serve the same task queue, through one batcher, so a batch goes
//! to whichever lane is free first.

use std::sync::{Mutex, MutexGuard};

use tch::Device;

use super::calibrate::{calibrate, Calibration, WarmUp};
use super::{device_name, Model, ModelDesc, ModelError, PrecisionChoice};

/// One model replica on one device.
pub struct Lane {
    model: Mutex<Box<dyn Model>>,
    pub device: Device,
}

impl Lane {
    /// Locks the lane's model (a panic in an earlier holder leaves the model usable).
    pub fn lock(&self) -> MutexGuard<'_, Box<dyn Model>> {
        self.model.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A worker's lanes, all running the same model.
pub struct Lanes {
    lanes: Vec<Lane>,
    desc: ModelDesc,
    /// The first device's calibration (a worker's devices are alike).
    calibration: Calibration,
}

impl Lanes {
    /// One lane with the model's own memory figure (no warm-up).
    pub fn single(model: Box<dyn Model>) -> Lanes {
        let desc = model.desc().clone();
        let calibration = Calibration { fast_precision: model.fast_precision(), ..Calibration::assumed(&desc, model.precision()) };
        let device = model.device();
        Lanes { lanes: vec![Lane { model: Mutex::new(model), device }], desc, calibration }
    }

    pub fn desc(&self) -> &ModelDesc {
        &self.desc
    }

    pub fn calibration(&self) -> &Calibration {
        &self.calibration
    }

    pub fn lanes(&self) -> &[Lane] {
        &self.lanes
    }

    pub fn first(&self) -> &Lane {
        &self.lanes[0]
    }

    /// The distinct devices, in order.
    pub fn devices(&self) -> Vec<Device> {
        let mut devices: Vec<Device> = Vec::new();
        for lane in &self.lanes {
            if !devices.contains(&lane.device) {
                devices.push(lane.device);
            }
        }
        devices
    }
}

/// How to lay out a worker's lanes.
#[derive(Debug, Clone)]
pub struct LaneSpec {
    pub devices: Vec<Device>,
    pub per_device: usize,
    pub precision: PrecisionChoice,
    pub warm_up: WarmUp,
}

impl LaneSpec {
    /// One lane on `device`, fp32, no warm-up on a CPU.
    pub fn one(device: Device) -> LaneSpec {
        LaneSpec { devices: vec![device], per_device: 1, precision: PrecisionChoice::Auto, warm_up: WarmUp::Auto }
    }

    /// The lanes per device when not configured: two on a GPU (one computes while the
    /// other's copies and host-side steps run), one on a CPU (libtorch's own threads use
    /// every core already).
    pub fn default_per_device(device: Device) -> usize {
        if device.is_cuda() {
            2
        } else {
            1
        }
    }
}

/// Loads `spec` once per lane and calibrates the first replica on each device; the other
/// replicas of a device take its precision.
pub fn load_lanes(spec: &str, layout: &LaneSpec) -> Result<Lanes, ModelError> {
    if layout.devices.is_empty() {
        return Err(ModelError::Load { path: spec.to_owned(), reason: "no device to run on".to_owned() });
    }
    let mut lanes = Vec::new();
    let mut calibration: Option<Calibration> = None;
    for &device in &layout.devices {
        let mut device_calibration: Option<Calibration> = None;
        for _ in 0..layout.per_device.max(1) {
            let mut model = super::load(spec, device)?;
            match &device_calibration {
                None => device_calibration = Some(calibrate(&mut *model, layout.precision, layout.warm_up)?),
                Some(c) => {
                    model.set_precision(c.precision)?;
                    model.set_fast_precision(c.fast_precision)?;
                }
            }
            lanes.push(Lane { model: Mutex::new(model), device });
        }
        tracing::debug!(device = %device_name(device), lanes = layout.per_device, "lanes loaded");
        if calibration.is_none() {
            calibration = device_calibration;
        }
    }
    let desc = lanes[0].lock().desc().clone();
    let calibration = calibration.unwrap_or_else(|| Calibration::assumed(&desc, super::Precision::Fp32));
    Ok(Lanes { lanes, desc, calibration })
}

/// The command-line flags (and `LAMINA_*` variables) that lay out lanes, shared by
/// `lamina-worker` and `lamina run`/`bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct LaneArgs {
    /// The networks' precision: auto (on CUDA the fastest of fp32, bf16 and fp16 whose
    /// layers stay within 1/255 of fp32's, measured at start-up; on a CPU fp32, and bf16 for
    /// fast mode where the CPU has bf16 instructions), fp32, fp16 or bf16 (both modes).
    #[arg(long, env = "LAMINA_PRECISION", default_value = "auto")]
    pub precision: String,
    /// Inference threads per device, each with its own model replica, sharing the device's
    /// memory budget (default: 2 on a GPU, so copies and host work overlap the forward
    /// pass; 1 on a CPU).
    #[arg(long, env = "LAMINA_LANES_PER_DEVICE", value_parser = clap::value_parser!(u16).range(1..=16))]
    pub lanes_per_device: Option<u16>,
    /// Measure the model's memory per pixel (and with --precision auto, its speed per
    /// precision) at start-up: auto (on CUDA), on or off.
    #[arg(long, env = "LAMINA_WARM_UP", default_value = "auto")]
    pub warm_up: String,
}

impl LaneArgs {
    /// The lane layout over `devices`.
    pub fn spec(&self, devices: Vec<Device>) -> Result<LaneSpec, crate::args::DeviceError> {
        let precision = PrecisionChoice::parse(&self.precision).map_err(crate::args::DeviceError::Precision)?;
        let warm_up = WarmUp::parse(&self.warm_up).map_err(crate::args::DeviceError::WarmUp)?;
        let first = devices.first().copied().unwrap_or(Device::Cpu);
        let per_device = self.lanes_per_device.map_or_else(|| LaneSpec::default_per_device(first), usize::from);
        Ok(LaneSpec { devices, per_device, precision, warm_up })
    }
}

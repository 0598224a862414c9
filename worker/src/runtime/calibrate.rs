//! Start-up calibration: how much device memory one image's forward pass takes, measured
//! rather than assumed, and (with `--precision auto`) which precision the networks run in.
//!
//! Memory: two warm-up passes over a synthetic photo, a small one then one four times its
//! pixels, each measured as the rise of the device's memory in use over what it held before
//! (on CUDA, the memory the driver reports in use: the caching allocator keeps the pass's
//! peak reserved; on a CPU, the process's peak resident set, reset before each pass). The
//! two points give a fixed cost and a cost per pixel, with a safety margin on top, and
//! batches are sized from them. When the device cannot say (no driver library, a kernel
//! without `/proc/self/clear_refs`), the model's own figure stands and the log says so.
//!
//! Precision (`auto`, CUDA only): each precision runs the larger warm-up image; the fastest
//! whose layers stay within [`AUTO_TOLERANCE`] (mean absolute, 0-1 scale) of fp32's wins.
//! On a CPU `auto` keeps reference mode in fp32, the published procedure's arithmetic.
//!
//! Fast mode's precision (`auto`): on CUDA the one chosen above. On a CPU with bf16
//! instructions (AMX or AVX-512 BF16, where libtorch's bf16 convolutions run 1.3-1.4 x
//! faster than fp32's: BENCHMARKS.md), bf16 when a model can hold a second copy of its
//! networks and that copy's layers on a small photo stay within the tolerance of fp32's;
//! otherwise the reference precision. It costs two passes over a 128-pixel image at start-up.

use std::time::Instant;

use tch::{Device, Kind, Tensor};
use tracing::{info, warn};

use super::{whole_bytes, Batch, Model, ModelDesc, ModelError, Precision, PrecisionChoice, AUTO_TOLERANCE};
use lamina_common::params::{DecomposeParams, Quality};

/// Head-room on top of the measured footprint: allocator fragmentation and images whose
/// content makes a model work harder than the warm-up photo.
const MARGIN: f64 = 1.25;

/// The memory one image's forward pass takes: `fixed + per_pixel * pixels` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    pub fixed: u64,
    pub per_pixel: u64,
}

impl Footprint {
    pub fn bytes(&self, pixels: u64) -> u64 {
        self.fixed.saturating_add(self.per_pixel.saturating_mul(pixels))
    }
}

/// One precision's warm-up: its time on the larger warm-up image and how far its layers lie
/// from fp32's.
#[derive(Debug, Clone)]
pub struct Trial {
    pub precision: Precision,
    pub ms: f64,
    pub mean_abs_diff: f64,
    /// An error instead of a result (a device without kernels for that precision).
    pub error: Option<String>,
}

/// What calibration found for one device.
#[derive(Debug, Clone)]
pub struct Calibration {
    pub footprint: Footprint,
    /// Whether `footprint` was measured (otherwise it is the model's own figure).
    pub measured: bool,
    pub precision: Precision,
    /// The networks' precision for fast-mode images.
    pub fast_precision: Precision,
    pub trials: Vec<Trial>,
}

impl Calibration {
    /// The model's own figure, unmeasured.
    pub fn assumed(desc: &ModelDesc, precision: Precision) -> Calibration {
        Calibration { footprint: Footprint { fixed: 0, per_pixel: desc.bytes_per_pixel }, measured: false, precision, fast_precision: precision, trials: Vec::new() }
    }

    /// Bytes one image of `width` x `height` (padded to the model's multiple) needs.
    pub fn image_bytes(&self, desc: &ModelDesc, width: u32, height: u32) -> u64 {
        let pixels = whole_bytes(desc, width, height) / desc.bytes_per_pixel.max(1);
        self.footprint.bytes(pixels)
    }

    /// The budget as a model's own per-pixel figure should see it: models size their tiles
    /// from `ModelDesc::bytes_per_pixel`, so where the measurement found more memory per
    /// pixel than that figure, the model is handed a proportionally smaller budget. A
    /// measurement below the figure never enlarges tiles (tiling stays reproducible).
    pub fn model_budget(&self, desc: &ModelDesc, budget: u64) -> u64 {
        if !self.measured || self.footprint.per_pixel <= desc.bytes_per_pixel {
            return budget;
        }
        let room = budget.saturating_sub(self.footprint.fixed);
        (room as f64 * desc.bytes_per_pixel as f64 / self.footprint.per_pixel as f64) as u64
    }
}

/// Where to measure memory, and whether to at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmUp {
    /// On CUDA devices only (the default: a CPU's figures are the models' own, measured
    /// for BENCHMARKS.md, and a CPU worker starts at once).
    Auto,
    On,
    Off,
}

impl WarmUp {
    pub fn parse(text: &str) -> Result<WarmUp, lamina_common::BadValue> {
        match text {
            "auto" => Ok(WarmUp::Auto),
            "on" | "true" | "1" => Ok(WarmUp::On),
            "off" | "false" | "0" => Ok(WarmUp::Off),
            other => Err(lamina_common::BadValue::new("warm-up setting", other, "is not auto, on or off")),
        }
    }

    fn runs_on(self, device: Device) -> bool {
        match self {
            WarmUp::Auto => device.is_cuda(),
            WarmUp::On => true,
            WarmUp::Off => false,
        }
    }
}

/// Calibrates `model` on its device: sets its precision and measures its footprint.
pub fn calibrate(model: &mut dyn Model, choice: PrecisionChoice, warm_up: WarmUp) -> Result<Calibration, ModelError> {
    let sides = if model.device().is_cuda() { (512, 1024) } else { CPU_SIDES };
    calibrate_at(model, choice, warm_up, sides)
}

/// The warm-up images' sides on a CPU.
pub const CPU_SIDES: (i64, i64) = (256, 512);

/// [`calibrate`] with warm-up images of `sides` (the smaller, then the larger).
pub fn calibrate_at(model: &mut dyn Model, choice: PrecisionChoice, warm_up: WarmUp, sides: (i64, i64)) -> Result<Calibration, ModelError> {
    let device = model.device();
    let desc = model.desc().clone();
    let fixed = match choice {
        PrecisionChoice::Fixed(p) => Some(p),
        PrecisionChoice::Auto if !device.is_cuda() => Some(Precision::Fp32),
        PrecisionChoice::Auto => None,
    };
    if !warm_up.runs_on(device) {
        let precision = fixed.unwrap_or(Precision::Fp32);
        model.set_precision(precision)?;
        let fast_precision = choose_fast_precision(model, choice, precision)?;
        return Ok(Calibration { fast_precision, ..Calibration::assumed(&desc, precision) });
    }
    let (small, large) = sides;
    // Memory first, in fp32 (reduced precision needs less, so the figure stays safe), while
    // nothing is cached yet: a later pass would reuse what an earlier one left.
    model.set_precision(Precision::Fp32)?;
    let params = DecomposeParams::default();
    let probe = Probe::new(device);
    let mut points = Vec::new();
    // On CUDA the caching allocator keeps what a pass reserved, so both passes are measured
    // from the memory in use before the first; on a CPU each pass starts from a trimmed heap.
    let mut baseline: Option<u64> = None;
    for side in [small, large] {
        let image = warm_up_image(side, device);
        let now = probe.as_ref().and_then(|p| p.reset());
        let before = if device.is_cuda() { *baseline.get_or_insert_with(|| now.unwrap_or(0)) } else { now.unwrap_or(0) };
        let before = now.map(|_| before);
        let layers = run(model, &image, &params)?;
        drop(layers);
        let rise = match (&probe, before) {
            (Some(p), Some(before)) => p.peak().map(|peak| peak.saturating_sub(before)),
            _ => None,
        };
        points.push(((side * side) as u64, rise));
    }
    let footprint = match points[..] {
        [(p1, Some(m1)), (p2, Some(m2))] if m2 > 0 => Some(fit(p1, m1, p2, m2)),
        _ => None,
    };
    let (footprint, measured) = match footprint {
        Some(f) => (f, true),
        None => {
            warn!(model = %desc.id, device = %super::device_name(device), "cannot measure device memory here; using the model's own figure");
            (Calibration::assumed(&desc, Precision::Fp32).footprint, false)
        }
    };
    let (precision, trials) = match fixed {
        Some(p) => (p, Vec::new()),
        None => choose_precision(model, &warm_up_image(large, device), &params)?,
    };
    model.set_precision(precision)?;
    let fast_precision = choose_fast_precision(model, choice, precision)?;
    info!(model = %desc.id, device = %super::device_name(device), precision = %precision, fast_precision = %fast_precision,
        fixed_mib = footprint.fixed >> 20, bytes_per_pixel = footprint.per_pixel, measured, "calibrated");
    Ok(Calibration { footprint, measured, precision, fast_precision, trials })
}

/// The side of the image fast mode's precision is checked on, on a CPU.
const FAST_CHECK_SIDE: i64 = 128;

/// Sets and returns fast mode's precision (see the module's documentation); `precision` is
/// the reference mode's, already set.
fn choose_fast_precision(model: &mut dyn Model, choice: PrecisionChoice, precision: Precision) -> Result<Precision, ModelError> {
    let device = model.device();
    let candidate = match choice {
        PrecisionChoice::Fixed(p) => p,
        PrecisionChoice::Auto if device.is_cuda() || !cpu_runs_bf16() => precision,
        PrecisionChoice::Auto => Precision::Bf16,
    };
    if candidate == precision || model.set_fast_precision(candidate).is_err() {
        model.set_fast_precision(precision)?;
        return Ok(precision);
    }
    let image = warm_up_image(FAST_CHECK_SIDE, device);
    let reference = run(model, &image, &DecomposeParams::default())?;
    let fast = DecomposeParams { quality: Quality::Fast, ..DecomposeParams::default() };
    let checked = run(model, &image, &fast).map(|layers| {
        if layers.size() == reference.size() {
            f64::try_from((&layers - &reference).abs().mean(Kind::Double)).unwrap_or(f64::INFINITY)
        } else {
            f64::INFINITY
        }
    });
    match checked {
        Ok(diff) if diff <= AUTO_TOLERANCE => {
            info!(model = %model.desc().id, precision = %candidate, mean_abs_diff = diff, "fast mode runs the networks in reduced precision");
            Ok(candidate)
        }
        outcome => {
            info!(model = %model.desc().id, precision = %candidate, outcome = ?outcome.map_err(|e| e.to_string()), "fast mode keeps the reference precision");
            model.set_fast_precision(precision)?;
            Ok(precision)
        }
    }
}

/// Whether this CPU has bf16 arithmetic (AMX or AVX-512 BF16), where libtorch's bf16
/// kernels beat fp32's. `LAMINA_CPU_BF16=0` or `1` overrides what the CPU says.
pub fn cpu_runs_bf16() -> bool {
    match std::env::var("LAMINA_CPU_BF16").ok().as_deref() {
        Some("0") => return false,
        Some("1") => return true,
        _ => {}
    }
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|info| info.lines().filter(|l| l.starts_with("flags")).any(|l| l.split_whitespace().any(|f| f == "amx_bf16" || f == "avx512_bf16")))
        .unwrap_or(false)
}

/// The line through two (pixels, bytes) points, with the margin on top; a line that would
/// fall (noise) becomes the larger point's bytes per pixel.
fn fit(p1: u64, m1: u64, p2: u64, m2: u64) -> Footprint {
    let slope = if m2 > m1 && p2 > p1 { (m2 - m1) as f64 / (p2 - p1) as f64 } else { m2 as f64 / p2.max(1) as f64 };
    let fixed = (m2 as f64 - slope * p2 as f64).max(0.0);
    Footprint { fixed: (fixed * MARGIN) as u64, per_pixel: (slope * MARGIN).ceil() as u64 }
}

/// Times each precision on `image` and keeps the fastest within tolerance of fp32.
fn choose_precision(model: &mut dyn Model, image: &Tensor, params: &DecomposeParams) -> Result<(Precision, Vec<Trial>), ModelError> {
    let mut reference: Option<Tensor> = None;
    let mut trials = Vec::new();
    for precision in Precision::ALL {
        let outcome = model.set_precision(precision).and_then(|()| {
            let _warm = run(model, image, params)?;
            let started = Instant::now();
            let layers = run(model, image, params)?;
            Ok((layers, started.elapsed().as_secs_f64() * 1e3))
        });
        let trial = match outcome {
            Ok((layers, ms)) => {
                let diff = match &reference {
                    None => 0.0,
                    Some(r) if r.size() == layers.size() => f64::try_from((&layers - r).abs().mean(Kind::Double)).unwrap_or(f64::INFINITY),
                    Some(_) => f64::INFINITY,
                };
                if reference.is_none() {
                    reference = Some(layers);
                }
                Trial { precision, ms, mean_abs_diff: diff, error: None }
            }
            Err(e) if precision == Precision::Fp32 => return Err(e),
            Err(e) => Trial { precision, ms: f64::INFINITY, mean_abs_diff: f64::INFINITY, error: Some(e.to_string()) },
        };
        info!(precision = %trial.precision, ms = trial.ms, mean_abs_diff = trial.mean_abs_diff, error = ?trial.error, "precision trial");
        trials.push(trial);
    }
    let best = trials
        .iter()
        .filter(|t| t.error.is_none() && t.mean_abs_diff <= AUTO_TOLERANCE)
        .min_by(|a, b| a.ms.total_cmp(&b.ms))
        .map_or(Precision::Fp32, |t| t.precision);
    Ok((best, trials))
}

/// One forward pass; the layers on the CPU (which also waits for the device to finish).
fn run(model: &dyn Model, image: &Tensor, params: &DecomposeParams) -> Result<Tensor, ModelError> {
    let (_, _, h, w) = image.size4().map_err(super::torch_err(&model.desc().id))?;
    let sizes = [(h, w)];
    let out = model.decompose(&Batch { images: image, sizes: &sizes, alpha: None }, params)?;
    Ok(out.layers.to_device(Device::Cpu))
}

/// A deterministic photo-like image: a lit gradient, a few soft discs of distinct colours
/// and fine texture, so palettes, mattes and filters do the work a real photo makes them do.
pub fn warm_up_image(side: i64, device: Device) -> Tensor {
    let opts = (Kind::Float, Device::Cpu);
    let y = Tensor::arange(side, opts).view([side, 1]) / side as f64;
    let x = Tensor::arange(side, opts).view([1, side]) / side as f64;
    let mut channels: Vec<Tensor> = [0.2f64, 0.5, 0.8].iter().map(|&c| (&x * 0.3 + &y * 0.2 + c * 0.5).expand([side, side], false)).collect();
    let discs = [(0.3, 0.35, 0.18, [0.9, 0.2, 0.1]), (0.65, 0.6, 0.22, [0.1, 0.6, 0.9]), (0.5, 0.2, 0.1, [0.95, 0.9, 0.2])];
    for (cx, cy, r, colour) in discs {
        let d: Tensor = ((&x - cx).square() + (&y - cy).square()).sqrt();
        let inside: Tensor = ((d - r) * -40.0).sigmoid();
        for (c, v) in channels.iter_mut().zip(colour) {
            let blended: Tensor = &*c * (1.0 - &inside) + &inside * v;
            *c = blended;
        }
    }
    let texture: Tensor = ((&x * 97.0).sin() * (&y * 89.0).cos()) * 0.03;
    let image = Tensor::stack(&channels, 0) + texture.unsqueeze(0);
    image.clamp(0.0, 1.0).unsqueeze(0).to_device(device)
}

/// Reads a device's memory in use and its peak.
enum Probe {
    /// The process's resident set (`/proc/self/status`); the peak is reset through
    /// `/proc/self/clear_refs`.
    Cpu,
    Cuda(cuda::Driver, usize),
}

impl Probe {
    fn new(device: Device) -> Option<Probe> {
        match device {
            Device::Cpu => cpu::usable().then_some(Probe::Cpu),
            Device::Cuda(i) => cuda::Driver::open().map(|d| Probe::Cuda(d, i)),
            _ => None,
        }
    }

    /// Resets the peak and returns the memory in use now.
    fn reset(&self) -> Option<u64> {
        match self {
            Probe::Cpu => cpu::reset(),
            Probe::Cuda(driver, index) => driver.used(*index),
        }
    }

    /// The peak since the last reset. On CUDA the caching allocator keeps the pass's blocks
    /// reserved, so the memory in use after the pass is its peak.
    fn peak(&self) -> Option<u64> {
        match self {
            Probe::Cpu => cpu::status("VmHWM:"),
            Probe::Cuda(driver, index) => driver.used(*index),
        }
    }
}

mod cpu {
    /// A `/proc/self/status` field in bytes.
    pub fn status(field: &str) -> Option<u64> {
        let text = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = text.lines().find(|l| l.starts_with(field))?;
        let kib: u64 = line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    }

    pub fn usable() -> bool {
        status("VmHWM:").is_some() && std::fs::OpenOptions::new().write(true).open("/proc/self/clear_refs").is_ok()
    }

    /// Returns freed heap memory to the kernel (so the next pass's rise is all its own) and
    /// resets the peak resident set to the current one.
    pub fn reset() -> Option<u64> {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory of the C heap; it takes no pointers.
        unsafe {
            libc::malloc_trim(0);
        }
        std::fs::write("/proc/self/clear_refs", "5").ok()?;
        status("VmRSS:")
    }
}

mod cuda {
    //! The CUDA driver's memory report, through `libcuda.so.1` (installed with the NVIDIA
    //! driver; nothing to link at build time). Each query pushes the device's primary
    //! context, which PyTorch already uses, so the numbers are that device's.

    use std::ffi::{c_int, c_uint, c_void};

    type CuResult = c_int;
    type Init = unsafe extern "C" fn(c_uint) -> CuResult;
    type DeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> CuResult;
    type Retain = unsafe extern "C" fn(*mut *mut c_void, c_int) -> CuResult;
    type Release = unsafe extern "C" fn(c_int) -> CuResult;
    type Push = unsafe extern "C" fn(*mut c_void) -> CuResult;
    type Pop = unsafe extern "C" fn(*mut *mut c_void) -> CuResult;
    type MemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> CuResult;

    pub struct Driver {
        device_get: DeviceGet,
        retain: Retain,
        release: Release,
        push: Push,
        pop: Pop,
        mem_get_info: MemGetInfo,
    }

    impl Driver {
        pub fn open() -> Option<Driver> {
            // SAFETY: dlopen/dlsym with NUL-terminated names; each symbol is cast to the
            // signature the CUDA driver API documents for it, and the library stays loaded
            // (it is never dlclosed).
            unsafe {
                let lib = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
                if lib.is_null() {
                    return None;
                }
                let sym = |name: &std::ffi::CStr| {
                    let p = libc::dlsym(lib, name.as_ptr());
                    (!p.is_null()).then_some(p)
                };
                let init: Init = std::mem::transmute(sym(c"cuInit")?);
                if init(0) != 0 {
                    return None;
                }
                Some(Driver {
                    device_get: std::mem::transmute::<*mut c_void, DeviceGet>(sym(c"cuDeviceGet")?),
                    retain: std::mem::transmute::<*mut c_void, Retain>(sym(c"cuDevicePrimaryCtxRetain")?),
                    release: std::mem::transmute::<*mut c_void, Release>(sym(c"cuDevicePrimaryCtxRelease_v2")?),
                    push: std::mem::transmute::<*mut c_void, Push>(sym(c"cuCtxPushCurrent_v2")?),
                    pop: std::mem::transmute::<*mut c_void, Pop>(sym(c"cuCtxPopCurrent_v2")?),
                    mem_get_info: std::mem::transmute::<*mut c_void, MemGetInfo>(sym(c"cuMemGetInfo_v2")?),
                })
            }
        }

        /// Bytes in use on CUDA device `index` (every process's, as the driver counts them).
        pub fn used(&self, index: usize) -> Option<u64> {
            // SAFETY: the out-pointers point at live locals; the context pushed is popped
            // and released before returning, whatever the query answered.
            unsafe {
                let mut device: c_int = 0;
                if (self.device_get)(&mut device, c_int::try_from(index).ok()?) != 0 {
                    return None;
                }
                let mut ctx: *mut c_void = std::ptr::null_mut();
                if (self.retain)(&mut ctx, device) != 0 {
                    return None;
                }
                let mut answer = None;
                if (self.push)(ctx) == 0 {
                    let (mut free, mut total) = (0usize, 0usize);
                    if (self.mem_get_info)(&mut free, &mut total) == 0 {
                        answer = Some(total.saturating_sub(free) as u64);
                    }
                    let mut popped: *mut c_void = std::ptr::null_mut();
                    (self.pop)(&mut popped);
                }
                (self.release)(device);
                answer
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_through_two_points_with_margin() {
        // 10 MB fixed, 1000 B/px.
        let f = fit(1 << 16, 10_000_000 + 65_536_000, 1 << 18, 10_000_000 + 262_144_000);
        assert_eq!(f.per_pixel, 1250);
        assert!((f.fixed as f64 - 12.5e6).abs() < 1e3, "{f:?}");
        // Noise that makes the larger pass cheaper: bytes per pixel of the larger.
        let f = fit(100, 5000, 400, 4000);
        assert_eq!((f.fixed, f.per_pixel), (0, 13));
    }

    #[test]
    fn a_measured_footprint_over_the_models_figure_shrinks_its_budget() {
        let desc = ModelDesc { id: "m@1".into(), weights_sha256: String::new(), layers: 2, size_multiple: 8, max_side: u32::MAX, bytes_per_pixel: 1000, family: &lamina_families::fscs::FAMILY, rule: lamina_families::fscs::FAMILY.rule };
        let mut c = Calibration::assumed(&desc, Precision::Fp32);
        assert_eq!(c.model_budget(&desc, 1 << 30), 1 << 30);
        c.measured = true;
        c.footprint = Footprint { fixed: 0, per_pixel: 500 };
        assert_eq!(c.model_budget(&desc, 1 << 30), 1 << 30, "a smaller measurement never enlarges tiles");
        c.footprint = Footprint { fixed: 1 << 20, per_pixel: 2000 };
        assert_eq!(c.model_budget(&desc, 1 << 30), ((1u64 << 30) - (1 << 20)) / 2);
        assert_eq!(c.image_bytes(&desc, 100, 100), (1 << 20) + 2000 * 104 * 104);
    }
}

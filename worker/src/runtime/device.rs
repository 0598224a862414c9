//! Device selection: `auto` (CUDA when present), `cpu`, `cuda` or `cuda:N`.

use tch::Device;

/// A device name this machine does not have or this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadDevice {
    #[error("unknown device {0:?} (use auto, cpu, cuda or cuda:N)")]
    Unknown(String),
    #[error("bad CUDA device index in {0:?}")]
    Index(String),
    #[error("device {name} requested but {found} CUDA device(s) found")]
    Missing { name: String, found: i64 },
    #[error("device {device} named twice in {names:?} (use --lanes-per-device for more lanes on one device)")]
    Twice { device: String, names: String },
}

/// libtorch's CUDA backend, loaded on first need: true once it is loaded. Nothing in Lamina
/// references its symbols (it registers itself when loaded), and loading it with the CUDA
/// libraries it pulls in takes about 0.4 s, which a process that never names a CUDA device
/// (`--device cpu`, a re-rendering, `lamina --version`) should not pay. So the binaries do
/// not link it; naming a CUDA device, or `auto`, loads it here: by its soname (found through
/// the binary's rpath or LD_LIBRARY_PATH, like libtorch itself), else from the folder the
/// build linked against. A libtorch built without CUDA has none, and no CUDA device is seen.
pub fn load_cuda() -> bool {
    static LOADED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LOADED.get_or_init(|| {
        let built = option_env!("LAMINA_LIBTORCH_LIB").map(|dir| format!("{dir}/libtorch_cuda.so"));
        ["libtorch_cuda.so".to_owned()].into_iter().chain(built).any(|name| open_global(&name))
    })
}

/// Loads a shared library for good, its symbols visible to every later library.
fn open_global(name: &str) -> bool {
    #[cfg(unix)]
    {
        let Ok(name) = std::ffi::CString::new(name) else { return false };
        // SAFETY: the name is a valid C string; the handle is kept open for the process's
        // life (never closed), which is what running the library's registrations needs.
        unsafe { !libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL).is_null() }
    }
    #[cfg(not(unix))]
    {
        let _ = name;
        false
    }
}

/// How many CUDA devices this process sees (loading the CUDA backend first).
pub fn cuda_device_count() -> i64 {
    if load_cuda() {
        tch::Cuda::device_count()
    } else {
        0
    }
}

/// Parses a device name; `auto` picks the first CUDA device when one is usable.
pub fn parse_device(name: &str) -> Result<Device, BadDevice> {
    let cuda_count = cuda_device_count;
    match name {
        "auto" => {
            load_cuda();
            Ok(Device::cuda_if_available())
        }
        "cpu" => Ok(Device::Cpu),
        "cuda" => parse_device("cuda:0"),
        _ => {
            let Some(index) = name.strip_prefix("cuda:") else {
                return Err(BadDevice::Unknown(name.to_owned()));
            };
            let index: usize = index.parse().map_err(|_| BadDevice::Index(name.to_owned()))?;
            if (index as i64) < cuda_count() {
                Ok(Device::Cuda(index))
            } else {
                Err(BadDevice::Missing { name: name.to_owned(), found: cuda_count() })
            }
        }
    }
}

/// Parses a list of devices: one name, several separated by commas (`cuda:0,cuda:1`), or
/// `cuda:all` (every CUDA device this process sees).
pub fn parse_devices(names: &str) -> Result<Vec<Device>, BadDevice> {
    if names == "cuda:all" {
        let n = cuda_device_count();
        if n == 0 {
            return Err(BadDevice::Missing { name: names.to_owned(), found: 0 });
        }
        return Ok((0..n as usize).map(Device::Cuda).collect());
    }
    let devices = names.split(',').map(|n| parse_device(n.trim())).collect::<Result<Vec<_>, _>>()?;
    let mut seen = Vec::new();
    for d in &devices {
        if seen.contains(d) {
            return Err(BadDevice::Twice { device: device_name(*d), names: names.to_owned() });
        }
        seen.push(*d);
    }
    Ok(devices)
}

/// A short name for manifests and logs.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_owned(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// GPU memory (device name, bytes used, bytes total) of a CUDA device, read with
/// `nvidia-smi` (shipped with the NVIDIA driver); None on the CPU or when it cannot tell.
/// This counts every process on the GPU, as an operator watching for out-of-memory wants.
pub fn gpu_memory(device: Device) -> Option<(String, u64, u64)> {
    let Device::Cuda(index) = device else { return None };
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=memory.used,memory.total", "--format=csv,noheader,nounits", &format!("--id={index}")])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut fields = text.trim().split(',').map(|f| f.trim().parse::<u64>().ok());
    let (used, total) = (fields.next()??, fields.next()??);
    Some((device_name(device), used * 1024 * 1024, total * 1024 * 1024))
}

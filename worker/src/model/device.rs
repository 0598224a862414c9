//! Device selection: `auto` (CUDA when present), `cpu`, `cuda` or `cuda:N`.

use tch::Device;

/// Parses a device name; `auto` picks the first CUDA device when one is usable.
pub fn parse_device(name: &str) -> Result<Device, String> {
    let cuda_count = || tch::Cuda::device_count();
    match name {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => parse_device("cuda:0"),
        _ => {
            let Some(index) = name.strip_prefix("cuda:") else {
                return Err(format!("unknown device {name:?} (use auto, cpu, cuda or cuda:N)"));
            };
            let index: usize = index.parse().map_err(|_| format!("bad CUDA device index in {name:?}"))?;
            if (index as i64) < cuda_count() {
                Ok(Device::Cuda(index))
            } else {
                Err(format!("device {name} requested but {} CUDA device(s) found", cuda_count()))
            }
        }
    }
}

/// A short name for manifests and logs.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_owned(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

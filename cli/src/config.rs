//! The typed configuration of `lamina run`, validated before any image is read.

use anyhow::{bail, Context};
use clap::Args;

pub use lamina_common::args::{DecomposeArgs, LimitArgs, MemoryArgs, OutputArgs, PoolArgs};
use lamina_common::Location;
pub use lamina_worker::args::{DeviceArgs, ModelArgs};

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Folder or s3://bucket/prefix of images (searched recursively: JPEG, PNG, WebP, TIFF, BMP, GIF, TGA, ICO, PNM, QOI, HDR, OpenEXR, ...).
    #[arg(value_name = "IN")]
    pub input: String,
    /// Folder or s3://bucket/prefix for the layers, manifests and job records.
    #[arg(value_name = "OUT")]
    pub output: String,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub decompose: DecomposeArgs,
    #[command(flatten)]
    pub output_args: OutputArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Progress display: a bar on a terminal, log lines otherwise.
    #[arg(long, env = "LAMINA_PROGRESS", default_value = "auto", value_parser = ["auto", "bar", "log", "none"])]
    pub progress: String,
}

impl RunArgs {
    /// The input and output locations, checked: a local input must be a folder, a local
    /// output is created.
    pub fn locations(&self) -> anyhow::Result<(Location, Location)> {
        let input = Location::parse(&self.input).map_err(|e| anyhow::anyhow!("IN {e}"))?;
        let output = Location::parse(&self.output).map_err(|e| anyhow::anyhow!("OUT {e}"))?;
        if let Location::Local(path) = &input {
            if !path.is_dir() {
                bail!("IN {}: not a folder", path.display());
            }
        }
        if let Location::Local(path) = &output {
            std::fs::create_dir_all(path).with_context(|| format!("OUT {}: cannot create", path.display()))?;
        }
        Ok((input, output))
    }
}

//! The typed configuration of `lamina run`, validated before any image is read.

use anyhow::{bail, Context};
use clap::Args;

use lamina_common::params::DecomposeParams;
use lamina_common::Location;

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
    /// Most images per forward pass (images of the same padded size are batched).
    #[arg(long, env = "LAMINA_BATCH_SIZE", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub batch_size: u16,
    /// Refuse images larger than this many megapixels (checked from the header).
    #[arg(long, env = "LAMINA_MAX_MEGAPIXELS", default_value_t = 64.0)]
    pub max_megapixels: f64,
    /// Progress display: a bar on a terminal, log lines otherwise.
    #[arg(long, env = "LAMINA_PROGRESS", default_value = "auto", value_parser = ["auto", "bar", "log", "none"])]
    pub progress: String,
}

/// Which model, where, with which parameters.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// `fscs` (built in) or `torchscript:PATH` (a model card PATH with .json must sit beside it).
    #[arg(long, env = "LAMINA_MODEL", default_value = "fscs")]
    pub model: String,
    /// Where inference runs: auto (CUDA when present), cpu, cuda or cuda:N.
    #[arg(long, env = "LAMINA_DEVICE", default_value = "auto")]
    pub device: String,
    /// Keep at most this many layers (2-7 for fscs): the most similar layers are merged.
    #[arg(long, env = "LAMINA_LAYERS")]
    pub layers: Option<u8>,
    /// A fixed palette instead of k-means: "r,g,b;r,g,b;..." (7 colours for fscs).
    #[arg(long, env = "LAMINA_PALETTE")]
    pub palette: Option<String>,
}

impl ModelArgs {
    pub fn params(&self) -> anyhow::Result<DecomposeParams> {
        let palette = match &self.palette {
            Some(text) => Some(DecomposeParams::parse_palette(text).map_err(anyhow::Error::msg).context("--palette")?),
            None => None,
        };
        Ok(DecomposeParams { layers: self.layers, palette })
    }

    pub fn device(&self) -> anyhow::Result<tch::Device> {
        lamina_worker::model::parse_device(&self.device).map_err(anyhow::Error::msg).context("--device")
    }
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
        if self.max_megapixels.is_nan() || self.max_megapixels <= 0.0 {
            bail!("--max-megapixels must be positive");
        }
        Ok((input, output))
    }

    pub fn max_pixels(&self) -> u64 {
        (self.max_megapixels * 1e6) as u64
    }
}

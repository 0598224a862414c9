//! The typed configuration of `lamina run`, validated before any image is read.

use anyhow::{bail, Context};
use clap::Args;

use lamina_common::params::{DecomposeParams, Formats, LayerCount, Quality, RenderParams, Share};
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
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub lanes: lamina_worker::runtime::LaneArgs,
    /// Most images per forward pass (images of one size bucket and the same parameters).
    #[arg(long, env = "LAMINA_BATCH_SIZE", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub batch_size: u16,
    /// Refuse images larger than this many megapixels (checked from the header).
    #[arg(long, env = "LAMINA_MAX_MEGAPIXELS", default_value_t = 64.0)]
    pub max_megapixels: f64,
    /// Memory one forward pass may use (e.g. 3GiB, 512MiB): larger images run in tiles, so
    /// any size fits. `auto`: 2 GiB on a CPU, 60% of the GPU's memory on CUDA.
    #[arg(long, env = "LAMINA_MEMORY_BUDGET", default_value = "auto")]
    pub memory_budget: String,
    /// Progress display: a bar on a terminal, log lines otherwise.
    #[arg(long, env = "LAMINA_PROGRESS", default_value = "auto", value_parser = ["auto", "bar", "log", "none"])]
    pub progress: String,
}

/// Where inference runs on this machine (`lamina run`, `lamina bench`; a fleet's workers
/// take theirs from their own settings, so `lamina submit` has no such flag).
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// Where inference runs: auto (CUDA when present), cpu, cuda, cuda:N, several
    /// (cuda:0,cuda:1) or cuda:all.
    #[arg(long, env = "LAMINA_DEVICE", default_value = "auto")]
    pub device: String,
}

/// Which model, with which parameters, rendered how.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// `fscs` (colour layers, built in), `objects` (objects over a filled background, IS-Net
    /// mattes), `objects-small` (the same with U2-Netp: fast), `pipeline:CARD.json` (an object
    /// recipe with your own TorchScript stages) or `torchscript:PATH` (a model card PATH with
    /// .json must sit beside it). The object models' weights: ops/fetch-models.sh.
    #[arg(long, env = "LAMINA_MODEL", default_value = "fscs")]
    pub model: String,
    /// Keep at most this many layers (2-7 for fscs; the most similar are merged), or `auto`:
    /// merge layers whose colours lie close while the result stays faithful. Object models:
    /// at most this many layers, background included (2-8; default 4; auto: up to 8).
    #[arg(long, env = "LAMINA_LAYERS", value_parser = LayerCount::parse)]
    pub layers: Option<LayerCount>,
    /// Merge layers covering less than this share of the image (0.02 or 2%) into the layer
    /// of the nearest colour. Object models: stop peeling objects when a new matte covers
    /// less than this (default 0.5%).
    #[arg(long, env = "LAMINA_MIN_COVERAGE", value_parser = Share::parse)]
    pub min_coverage: Option<Share>,
    /// What to write, any of png,psd,ora: the layer PNGs (always written: they are the stored
    /// layers), a Photoshop document, an OpenRaster document (GIMP, Krita). Changing only
    /// this (or --crop-layers) on a finished output renders from the stored layers without
    /// running the model.
    #[arg(long, env = "LAMINA_FORMATS", default_value = "png", value_parser = Formats::parse)]
    pub formats: Formats,
    /// Crop every layer to its bounding box (placed by offsets), in PNGs and documents.
    #[arg(long, env = "LAMINA_CROP_LAYERS")]
    pub crop_layers: bool,
    /// A fixed palette instead of k-means: "r,g,b;r,g,b;..." (7 colours for fscs).
    #[arg(long, env = "LAMINA_PALETTE")]
    pub palette: Option<String>,
    /// reference (the networks see every pixel) or fast (they see the image reduced to about
    /// 1 MP; the layers come back to full size guided by the full image). fscs only.
    #[arg(long, env = "LAMINA_QUALITY", default_value = "reference", value_parser = ["reference", "fast"])]
    pub quality: String,
}

impl ModelArgs {
    pub fn params(&self) -> anyhow::Result<DecomposeParams> {
        let palette = match &self.palette {
            Some(text) => Some(DecomposeParams::parse_palette(text).map_err(anyhow::Error::msg).context("--palette")?),
            None => None,
        };
        let quality = Quality::parse(&self.quality).map_err(anyhow::Error::msg).context("--quality")?;
        Ok(DecomposeParams {
            layers: self.layers,
            palette,
            quality,
            min_coverage: self.min_coverage,
        })
    }

    /// What to render from the layers.
    pub fn render(&self) -> RenderParams {
        RenderParams { formats: self.formats.clone(), crop_layers: self.crop_layers }
    }

}

impl DeviceArgs {
    /// The first (or only) device.
    pub fn device(&self) -> anyhow::Result<tch::Device> {
        self.devices()?.first().copied().context("--device names no device")
    }

    pub fn devices(&self) -> anyhow::Result<Vec<tch::Device>> {
        lamina_worker::runtime::parse_devices(&self.device).map_err(anyhow::Error::msg).context("--device")
    }

    /// The inference lanes to load on the devices named.
    pub fn lane_spec(&self, lanes: &lamina_worker::runtime::LaneArgs) -> anyhow::Result<lamina_worker::runtime::LaneSpec> {
        lanes.spec(self.devices()?).map_err(anyhow::Error::msg)
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

    /// The memory budget for one forward pass on `device`.
    pub fn memory_budget(&self, device: tch::Device) -> anyhow::Result<u64> {
        match self.memory_budget.as_str() {
            "auto" => Ok(lamina_worker::pipeline::default_memory_budget(device)),
            text => lamina_common::bytes::parse(text).map_err(anyhow::Error::msg).context("--memory-budget"),
        }
    }
}

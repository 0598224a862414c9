//! The flags every binary shares, declared once: each group has one validation, one default
//! and one environment variable per flag, and a binary takes a group whole (`#[command(
//! flatten)]`) or not at all, so no binary accepts a flag it would ignore. The groups that
//! need libtorch (the model, the device) are the worker's (`lamina_worker::args`); the queue
//! and the store are configured by environment only (`LAMINA_AMQP_*`: [`crate::amqp`],
//! `LAMINA_S3_*`: [`crate::store`]).

use clap::Args;

use crate::params::{DecomposeParams, Formats, LayerCount, Quality, RenderParams, Share};

/// How the process logs.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log lines as text or as JSON objects (one per line).
    #[arg(long, global = true, env = "LAMINA_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// Which worker pool (task queue: a model and device class).
#[derive(Debug, Clone, Args)]
pub struct PoolArgs {
    /// The worker pool: a job's tasks go to its queue, a worker serves one.
    #[arg(long, env = "LAMINA_POOL", default_value = "default")]
    pub pool: String,
}

/// How much memory one forward pass may use.
#[derive(Debug, Clone, Args)]
pub struct MemoryArgs {
    /// Memory one forward pass may use (e.g. 3GiB, 512MiB): larger images run in tiles, so
    /// any size fits. `auto`: 2 GiB on a CPU, 60% of the GPU's memory on CUDA.
    #[arg(long, env = "LAMINA_MEMORY_BUDGET", default_value = "auto", value_parser = MemoryBudget::parse)]
    pub memory_budget: MemoryBudget,
}

/// `--memory-budget`: `auto` (decided per device) or a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryBudget {
    Auto,
    Bytes(u64),
}

/// A `--memory-budget` that is neither `auto` nor a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct BadMemoryBudget {
    pub text: String,
    /// What is wrong with it (not a number, an unknown unit).
    pub reason: crate::BadValue,
}

impl MemoryBudget {
    pub fn parse(text: &str) -> Result<MemoryBudget, BadMemoryBudget> {
        match text {
            "auto" => Ok(MemoryBudget::Auto),
            text => crate::bytes::parse(text).map(MemoryBudget::Bytes).map_err(|reason| BadMemoryBudget { text: text.to_owned(), reason }),
        }
    }
}

impl std::fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemoryBudget::Auto => f.write_str("auto"),
            MemoryBudget::Bytes(bytes) => write!(f, "{bytes}"),
        }
    }
}

/// What one worker (or `lamina run`) takes on at once.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Most images per forward pass (images of one size bucket and the same parameters).
    #[arg(long, env = "LAMINA_BATCH_SIZE", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub batch_size: u16,
    /// Refuse images larger than this many megapixels (checked from the header).
    #[arg(long, env = "LAMINA_MAX_MEGAPIXELS", default_value_t = 64.0, value_parser = positive)]
    pub max_megapixels: f64,
    #[command(flatten)]
    pub memory: MemoryArgs,
}

impl LimitArgs {
    pub fn max_pixels(&self) -> u64 {
        (self.max_megapixels * 1e6) as u64
    }
}

fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{text:?} is not a positive number")),
    }
}

/// The model's parameters: what decides an image's layers besides the model.
#[derive(Debug, Clone, Args)]
pub struct DecomposeArgs {
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
    /// A fixed palette instead of k-means: "r,g,b;r,g,b;..." (7 colours for fscs).
    #[arg(long, env = "LAMINA_PALETTE", value_parser = DecomposeParams::parse_palette)]
    pub palette: Option<Palette>,
    /// reference (the networks see every pixel) or fast (they see the image reduced to about
    /// 1 MP; the layers come back to full size guided by the full image). fscs only.
    #[arg(long, env = "LAMINA_QUALITY", default_value = "reference", value_parser = Quality::parse)]
    pub quality: Quality,
}

/// A parsed `--palette`.
pub type Palette = Vec<[u8; 3]>;

impl DecomposeArgs {
    pub fn params(&self) -> DecomposeParams {
        DecomposeParams { layers: self.layers, palette: self.palette.clone(), quality: self.quality, min_coverage: self.min_coverage }
    }
}

/// What is rendered from the layers: changing only these re-renders, never re-decomposes.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// What to write, any of png,psd,ora: the layer PNGs (always written: they are the stored
    /// layers), a Photoshop document, an OpenRaster document (GIMP, Krita). Changing only
    /// this (or --crop-layers) on a finished output renders from the stored layers without
    /// running the model.
    #[arg(long, env = "LAMINA_FORMATS", default_value = "png", value_parser = Formats::parse)]
    pub formats: Formats,
    /// Crop every layer to its bounding box (placed by offsets), in PNGs and documents.
    #[arg(long, env = "LAMINA_CROP_LAYERS")]
    pub crop_layers: bool,
}

impl OutputArgs {
    pub fn render(&self) -> RenderParams {
        RenderParams { formats: self.formats.clone(), crop_layers: self.crop_layers }
    }
}

/// Parses a binary's flags; a bad flag or value is one line on stderr, `NAME: <reason>`,
/// and exit status 2 (help and version print as clap prints them).
pub fn parse<T: clap::Parser>(name: &str) -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let text = e.render().to_string();
            let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("bad arguments");
            eprintln!("{name}: {}", line.trim_start_matches("error: "));
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Both {
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        decompose: DecomposeArgs,
    }

    #[test]
    fn each_flag_is_validated_where_it_is_declared() {
        let ok = Both::try_parse_from(["x", "--memory-budget", "512MiB", "--batch-size", "4", "--palette", "1,2,3;4,5,6", "--quality", "fast"]).unwrap();
        assert_eq!(ok.limits.memory.memory_budget, MemoryBudget::Bytes(512 << 20));
        assert_eq!((ok.limits.batch_size, ok.limits.max_pixels()), (4, 64_000_000));
        assert_eq!(ok.decompose.params().palette.unwrap().len(), 2);
        assert_eq!(ok.decompose.params().quality, Quality::Fast);
        for bad in [["--batch-size", "0"], ["--max-megapixels", "0"], ["--max-megapixels", "NaN"], ["--memory-budget", "lots"], ["--quality", "best"], ["--palette", "1,2"]] {
            assert!(Both::try_parse_from(["x", bad[0], bad[1]]).is_err(), "{bad:?}");
        }
        assert_eq!(MemoryBudget::parse(&MemoryBudget::Bytes(3 << 30).to_string()), Ok(MemoryBudget::Bytes(3 << 30)));
        let bad = MemoryBudget::parse("3 parsecs").unwrap_err();
        assert_eq!(bad.text, "3 parsecs");
        assert!(bad.to_string().contains("unknown unit"), "{bad}");
    }
}

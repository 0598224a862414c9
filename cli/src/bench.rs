//! `lamina bench`: model-only throughput (forward passes on decoded tensors, per size and
//! batch) and end-to-end `lamina run` throughput on the same machine and device, with the
//! share of wall time spent outside the model. Prints a Markdown table for BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use tch::{Kind, Tensor};

use crate::config::{DecomposeArgs, DeviceArgs, LimitArgs, MemoryArgs, ModelArgs, OutputArgs, RunArgs};
use crate::report::Reporter;
use crate::run::{run_job, Stop};
use lamina_common::params::DecomposeParams;
use lamina_worker::runtime::{self, Batch, Model};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub decompose: DecomposeArgs,
    #[command(flatten)]
    pub output_args: OutputArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Folder of photos to benchmark on.
    #[arg(long, default_value = "assets/samples")]
    pub images: PathBuf,
    /// Square sizes for the model-only runs.
    #[arg(long, value_delimiter = ',', default_value = "512,1024")]
    pub sizes: Vec<i64>,
    /// Batch sizes for the model-only runs.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub batches: Vec<i64>,
    /// Least time spent per measurement (at least two passes are always timed).
    #[arg(long, default_value_t = 8.0)]
    pub seconds: f64,
    /// Skip the end-to-end runs.
    #[arg(long)]
    pub model_only: bool,
    /// Images in the end-to-end run at the largest size.
    #[arg(long, default_value_t = 8)]
    pub e2e_images: usize,
    /// Also run the end-to-end runs in fast mode and compare: images/s of both modes and
    /// each bundled photo's recomposite PSNR in both.
    #[arg(long)]
    pub compare_fast: bool,
    /// Large-image runs instead: one photo resized to each of these many megapixels (4:3),
    /// one `lamina run` each, with its wall time, time per pixel against the first size, and
    /// the process's peak resident memory during the run (e.g. `--large 1,4,12,24,49`).
    #[arg(long, value_delimiter = ',')]
    pub large: Vec<f64>,
    /// Precisions for the model-only runs (e.g. fp32,bf16,fp16); default: the one `--precision`
    /// chooses.
    #[arg(long, value_delimiter = ',')]
    pub precisions: Vec<String>,
    /// Batch size of the end-to-end runs (as `lamina run --batch-size`).
    #[arg(long, default_value_t = 1)]
    pub e2e_batch: u16,
    /// The memory budget of the end-to-end runs.
    #[command(flatten)]
    pub memory: MemoryArgs,
}

pub async fn main(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let device = args.device.device()?;
    let params = args.decompose.params();
    let photos = load_photos(&args.images)?;
    println!("device: {}  threads: {}  model: {}", runtime::device_name(device), tch::get_num_threads(), args.model.model);
    if !args.large.is_empty() {
        return large(&args, &photos).await;
    }
    println!();
    println!("| measurement | size | batch | precision | images/s | ms/image |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut layout = args.device.lane_spec()?;
    layout.devices.truncate(1);
    layout.per_device = 1;
    let lanes = runtime::load_lanes(&args.model.model, &layout)?;
    let mut model = lanes.first().lock();
    let mut precisions = Vec::new();
    for name in &args.precisions {
        match runtime::PrecisionChoice::parse(name).context("--precisions")? {
            runtime::PrecisionChoice::Fixed(p) => precisions.push(p),
            runtime::PrecisionChoice::Auto => precisions.push(lanes.calibration().precision),
        }
    }
    if precisions.is_empty() {
        precisions.push(lanes.calibration().precision);
    }
    let chosen = lanes.calibration().precision;
    // Batch 1 is always measured: it is what the end-to-end runs below compare against.
    let mut batches = args.batches.clone();
    if !batches.contains(&1) {
        batches.insert(0, 1);
    }
    let mut batch1 = std::collections::HashMap::new();
    for &precision in &precisions {
        model.set_precision(precision)?;
        for &size in &args.sizes {
            let mut best = (0.0f64, 0i64);
            for &batch in &batches {
                // A batch too large for the device's memory is a row, not the end of the run
                // (libtorch's failures arrive as panics from tch).
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model_rate(&**model, &photos, size, batch, &params, args.seconds)));
                let rate = match outcome {
                    Ok(Ok(rate)) => rate,
                    Ok(Err(e)) => {
                        println!("| model only | {size}^2 | {batch} | {precision} | failed: {} | - |", first_line(&e.to_string()));
                        break;
                    }
                    Err(_) => {
                        println!("| model only | {size}^2 | {batch} | {precision} | failed (out of memory?) | - |");
                        break;
                    }
                };
                println!("| model only | {size}^2 | {batch} | {precision} | {rate:.3} | {:.0} |", 1000.0 / rate);
                if precision == chosen {
                    let best_so_far: &mut f64 = batch1.entry(size).or_insert(0.0);
                    *best_so_far = best_so_far.max(rate);
                }
                if rate > best.0 {
                    best = (rate, batch);
                }
            }
            if best.1 > 0 {
                println!("| model only, best batch | {size}^2 | {} | {precision} | {:.3} | {:.0} |", best.1, best.0, 1000.0 / best.0);
            }
        }
    }
    drop(model);
    drop(lanes);
    if args.model_only {
        return Ok(ExitCode::SUCCESS);
    }

    let tmp = tempfile::tempdir().context("temporary folder")?;
    let samples = run_once(&args, &args.images, &tmp.path().join("samples-out")).await?;
    let n = samples.summary.done;
    println!(
        "| lamina run, bundled photos ({n} images, mixed sizes) | - | {} | {chosen} | {:.3} | {:.0} |",
        args.e2e_batch,
        samples.summary.images_per_second,
        1000.0 / samples.summary.images_per_second
    );
    if args.compare_fast {
        return compare_fast(&args, &photos, &tmp, &batch1).await;
    }
    let mut ratios = Vec::new();
    if let Some(&size) = args.sizes.iter().max() {
        let input = tmp.path().join(format!("in-{size}"));
        write_squares(&photos, size as u32, args.e2e_images, &input)?;
        let run = run_once(&args, &input, &tmp.path().join(format!("out-{size}"))).await?;
        let rate = run.summary.images_per_second;
        println!("| lamina run, {} images | {size}^2 | {} | {chosen} | {rate:.3} | {:.0} |", run.summary.done, args.e2e_batch, 1000.0 / rate);
        ratios.push((size, rate, batch1.get(&size).copied(), 1.0 - run.model_seconds / run.wall_seconds));
    }
    println!();
    println!(
        "bundled photos: {:.1}% of wall time outside the model",
        100.0 * (1.0 - samples.model_seconds / samples.wall_seconds)
    );
    for (size, e2e, model_rate, outside) in ratios {
        if let Some(model_rate) = model_rate {
            println!(
                "{size}^2: end to end {e2e:.3} images/s = {:.2} x model-only at its best batch ({model_rate:.3} images/s); {:.1}% of wall time outside the model",
                e2e / model_rate,
                100.0 * outside
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn load_photos(dir: &Path) -> anyhow::Result<Vec<image::DynamicImage>> {
    let mut photos = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))?.flatten().collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        if let Ok(img) = image::open(entry.path()) {
            photos.push(img);
        }
    }
    if photos.is_empty() {
        bail!("{}: no images to benchmark on", dir.display());
    }
    Ok(photos)
}

/// Images per second of `decompose` alone on a batch of `batch` photos of `size`^2.
fn model_rate(m: &dyn Model, photos: &[image::DynamicImage], size: i64, batch: i64, params: &DecomposeParams, seconds: f64) -> anyhow::Result<f64> {
    let tensors: Vec<Tensor> = (0..batch as usize)
        .map(|i| {
            let img = photos[i % photos.len()].resize_exact(size as u32, size as u32, image::imageops::FilterType::Triangle).to_rgb8();
            let data: Vec<f32> = img.as_raw().iter().map(|&v| f32::from(v) / 255.0).collect();
            Tensor::from_slice(&data).view([size, size, 3]).permute([2, 0, 1])
        })
        .collect();
    let images = Tensor::stack(&tensors, 0).to_device(m.device());
    let sizes = vec![(size, size); batch as usize];
    let pass = || -> anyhow::Result<()> {
        let out = m.decompose(&Batch { images: &images, sizes: &sizes, alpha: None }, params)?;
        // Reading a value back waits for the device to finish.
        let _ = f64::try_from(out.layers.sum(Kind::Float))?;
        Ok(())
    };
    pass()?; // warm-up
    let started = Instant::now();
    let mut passes = 0;
    while passes < 2 || started.elapsed().as_secs_f64() < seconds {
        pass()?;
        passes += 1;
    }
    Ok((passes * batch) as f64 / started.elapsed().as_secs_f64())
}

fn write_squares(photos: &[image::DynamicImage], size: u32, n: usize, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for i in 0..n {
        let img = photos[i % photos.len()].resize_exact(size, size, image::imageops::FilterType::Triangle).to_rgb8();
        img.save(dir.join(format!("photo-{i:03}.png"))).context("write benchmark input")?;
    }
    Ok(())
}

async fn run_once(args: &BenchArgs, input: &Path, output: &Path) -> anyhow::Result<crate::run::Outcome> {
    run_with(args, args.decompose.quality.as_str(), input, output).await
}

async fn run_with(args: &BenchArgs, quality: &str, input: &Path, output: &Path) -> anyhow::Result<crate::run::Outcome> {
    let mut decompose = args.decompose.clone();
    decompose.quality = lamina_common::params::Quality::parse(quality)?;
    let run = RunArgs {
        input: input.display().to_string(),
        output: output.display().to_string(),
        model: args.model.clone(),
        decompose,
        output_args: args.output_args.clone(),
        device: args.device.clone(),
        limits: LimitArgs { batch_size: args.e2e_batch.max(1), max_megapixels: 200.0, memory: args.memory.clone() },
        progress: "none".into(),
    };
    run_job(&run, &mut Reporter::new("none"), Stop::never()).await
}

/// Each image's recomposite PSNR from the manifests under `out`, by input key.
fn psnrs(out: &Path) -> anyhow::Result<std::collections::BTreeMap<String, f64>> {
    let mut found = std::collections::BTreeMap::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == lamina_common::manifest::MANIFEST_FILE) {
                let m: lamina_common::manifest::Manifest = serde_json::from_slice(&std::fs::read(&path)?)?;
                found.insert(m.input.key.clone(), m.recomposite_psnr_db.unwrap_or(f64::INFINITY));
            }
        }
    }
    Ok(found)
}

/// Reference against fast mode, end to end, in one process: on the bundled photos (already
/// run in reference mode as `samples`) and on photos resized to the largest size.
async fn compare_fast(
    args: &BenchArgs,
    photos: &[image::DynamicImage],
    tmp: &tempfile::TempDir,
    model_rates: &std::collections::HashMap<i64, f64>,
) -> anyhow::Result<ExitCode> {
    let fast_samples = run_with(args, "fast", &args.images, &tmp.path().join("samples-fast")).await?;
    println!(
        "| lamina run --quality fast, bundled photos ({} images) | - | {} | - | {:.3} | {:.0} |",
        fast_samples.summary.done,
        args.e2e_batch,
        fast_samples.summary.images_per_second,
        1000.0 / fast_samples.summary.images_per_second
    );
    let mut rates = Vec::new();
    let mut outside = Vec::new();
    if let Some(&size) = args.sizes.iter().max() {
        let input = tmp.path().join(format!("in-{size}"));
        write_squares(photos, size as u32, args.e2e_images, &input)?;
        for quality in ["reference", "fast"] {
            let run = run_with(args, quality, &input, &tmp.path().join(format!("out-{size}-{quality}"))).await?;
            let rate = run.summary.images_per_second;
            println!("| lamina run --quality {quality}, {} images | {size}^2 | {} | - | {rate:.3} | {:.0} |", run.summary.done, args.e2e_batch, 1000.0 / rate);
            if let (Some(model_rate), "reference") = (model_rates.get(&size), quality) {
                outside.push(format!(
                    "{size}^2: end to end {rate:.3} images/s = {:.2} x model-only at its best batch ({model_rate:.3} images/s); {:.1}% of wall time outside the model",
                    rate / model_rate,
                    100.0 * (1.0 - run.model_seconds / run.wall_seconds)
                ));
            }
            rates.push(rate);
        }
    }
    println!();
    if let [reference, fast] = rates[..] {
        println!("fast mode: {:.2} x the images/s of reference mode at the largest size", fast / reference);
    }
    for line in outside {
        println!("{line}");
    }
    let reference = psnrs(&tmp.path().join("samples-out"))?;
    let fast = psnrs(&tmp.path().join("samples-fast"))?;
    println!();
    println!("| bundled photo | reference PSNR (dB) | fast PSNR (dB) | fast - reference |");
    println!("| --- | --- | --- | --- |");
    for (key, r) in &reference {
        if let Some(f) = fast.get(key) {
            println!("| {key} | {r:.2} | {f:.2} | {:+.2} |", f - r);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One photo at each size of `--large`, each decomposed by its own `lamina run` process
/// (so each peak is that run's alone), with its time and peak resident memory.
async fn large(args: &BenchArgs, photos: &[image::DynamicImage]) -> anyhow::Result<ExitCode> {
    let tmp = tempfile::tempdir().context("temporary folder")?;
    let exe = std::env::current_exe().context("finding the lamina binary")?;
    println!();
    println!("| photo | megapixels | quality | seconds | s/MP | s/MP vs first | peak RSS | recomposite PSNR |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut first = None;
    for (i, &mp) in args.large.iter().enumerate() {
        let (w, h) = ((mp * 1e6 * 4.0 / 3.0).sqrt().round() as u32, (mp * 1e6 * 3.0 / 4.0).sqrt().round() as u32);
        let input = tmp.path().join(format!("in-{i}"));
        std::fs::create_dir_all(&input)?;
        let img = photos[0].resize_exact(w, h, image::imageops::FilterType::Triangle).to_rgb8();
        img.save(input.join("photo.png")).context("write benchmark input")?;
        drop(img);
        let output = tmp.path().join(format!("out-{i}"));
        let mut command = std::process::Command::new(&exe);
        command.arg("run").arg(&input).arg(&output);
        command.args(["--model", &args.model.model, "--device", &args.device.device, "--quality", args.decompose.quality.as_str()]);
        command.args(["--precision", &args.device.lanes.precision, "--warm-up", &args.device.lanes.warm_up]);
        command.args(["--formats", &args.output_args.formats.to_string()]);
        if args.output_args.crop_layers {
            command.arg("--crop-layers");
        }
        command.args(["--memory-budget", &args.memory.memory_budget.to_string(), "--max-megapixels", "200", "--progress", "none"]);
        command.stdout(std::process::Stdio::null());
        let (status, peak) = tokio::task::spawn_blocking(move || run_measured(command)).await??;
        if !status.success() {
            bail!("lamina run on the {w}x{h} photo failed ({status})");
        }
        let summary = std::fs::read_dir(output.join("_lamina/jobs"))?
            .flatten()
            .find_map(|job| std::fs::read(job.path().join("summary.json")).ok())
            .context("the run left no summary")?;
        let summary: serde_json::Value = serde_json::from_slice(&summary)?;
        let seconds = summary["seconds"].as_f64().unwrap_or(f64::NAN);
        let real_mp = f64::from(w) * f64::from(h) / 1e6;
        let per_mp = seconds / real_mp;
        let base = *first.get_or_insert(per_mp);
        let psnr = psnrs(&output)?.into_values().next().unwrap_or(f64::NAN);
        println!(
            "| {w}x{h} | {real_mp:.1} | {} | {seconds:.1} | {per_mp:.2} | {:.2} | {} | {psnr:.2} |",
            args.decompose.quality,
            per_mp / base,
            lamina_common::bytes::human(peak)
        );
        let _ = std::fs::remove_dir_all(&output);
        let _ = std::fs::remove_dir_all(&input);
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `command` to its end; its exit status and peak resident memory (from `wait4`).
fn run_measured(mut command: std::process::Command) -> anyhow::Result<(std::process::ExitStatus, u64)> {
    use std::os::unix::process::ExitStatusExt;
    let child = command.spawn().context("starting lamina run")?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data, zeroed is a valid value, and wait4 writes only into it
    // and `status`; the child is ours and has not been waited for.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if waited != pid {
        bail!("waiting for lamina run: {}", std::io::Error::last_os_error());
    }
    // ru_maxrss is in kilobytes on Linux.
    Ok((std::process::ExitStatus::from_raw(status), usage.ru_maxrss as u64 * 1024))
}


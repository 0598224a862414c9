//! `make-layered-set OUT_DIR [--variant N]`: writes the layered ground-truth set used to
//! score layer decompositions (eval/layered-set in the repository). `--variant N` (N >= 1)
//! writes another set of the same table (same names, backgrounds, sizes and layer counts)
//! whose positions, colours and words are drawn anew: more images to score on when 32 are
//! too few to tell two settings apart. Variant 0, the default, is the committed set.
//!
//! For each sample it writes the composite `OUT_DIR/inputs/<name>.png` (opaque 8-bit RGB) and
//! its true layers `OUT_DIR/gt/<name>.png/layer-NN.png` (8-bit straight-alpha RGBA, bottom
//! first), then `README.md` (the sample table) and `LICENSE.md`. Same bytes of pixels on every
//! run and machine: see `raster` and `photo` for how, and the `layered_set` test for the check.
//! `inputs/` and `gt/` under OUT_DIR are replaced, so no sample of an older table lingers.

// The modules live in make_layered_set/ beside this file (a crate root looks for them next
// to itself, hence the paths).
#[path = "make_layered_set/docs.rs"]
mod docs;
#[path = "make_layered_set/draw.rs"]
mod draw;
#[path = "make_layered_set/photo.rs"]
mod photo;
#[path = "make_layered_set/raster.rs"]
mod raster;
#[path = "make_layered_set/rng.rs"]
mod rng;
#[path = "make_layered_set/samples.rs"]
mod samples;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("make-layered-set: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || format!("usage: make-layered-set OUT_DIR [--variant N]   (e.g. {})", docs::COMMAND);
    let (out, variant) = match args.as_slice() {
        [dir] if !dir.starts_with('-') => (PathBuf::from(dir), 0),
        [dir, flag, n] if !dir.starts_with('-') && flag == "--variant" => {
            (PathBuf::from(dir), n.parse::<u32>().map_err(|_| format!("--variant {n}: not a whole number; {}", usage()))?)
        }
        _ => return Err(usage()),
    };
    // The bundled photos, found from this crate's source folder: a dev tool run from the
    // repository, never installed elsewhere.
    let photos = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/samples");
    if !photos.is_dir() {
        return Err(format!("the bundled photos are missing: {} is not a folder", photos.display()));
    }

    for sub in ["inputs", "gt"] {
        let dir = out.join(sub);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
        }
    }
    let specs = samples::table();
    let mut made = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        if let Some(file) = spec.photo() {
            if docs::photo_terms(file).is_none() {
                return Err(format!("{file} is not one of the photos whose terms the set lists"));
            }
        }
        let sample = spec.make(index, variant, &photos)?;
        let (w, h) = sample.composite.dimensions();
        write_png(&out.join("inputs").join(&sample.name), sample.composite.as_raw(), w, h, ExtendedColorType::Rgb8)?;
        for (n, layer) in sample.layers.iter().enumerate() {
            let path = out.join("gt").join(&sample.name).join(format!("layer-{n:02}.png"));
            write_png(&path, layer.as_raw(), w, h, ExtendedColorType::Rgba8)?;
        }
        eprintln!("{} ({w}x{h}, {} layers)", sample.name, sample.layers.len());
        made.push(sample);
    }
    write_text(&out.join("README.md"), &docs::readme(&specs, &made))?;
    write_text(&out.join("LICENSE.md"), &docs::license(&specs, &made))?;
    eprintln!("wrote {} samples to {}", made.len(), out.display());
    Ok(())
}

/// Encodes in memory, then writes, so that a failed write is reported rather than lost in a
/// buffered writer's drop. Best compression: the set is committed to the repository. (Any
/// PNG decoder gives the same pixels whatever the encoder's version; only the bytes may vary.)
fn write_png(path: &Path, pixels: &[u8], w: u32, h: u32, colour: ExtendedColorType) -> Result<(), String> {
    let mut bytes = Vec::new();
    PngEncoder::new_with_quality(&mut bytes, CompressionType::Best, FilterType::Adaptive)
        .write_image(pixels, w, h, colour)
        .map_err(|e| format!("cannot encode {}: {e}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn write_text(path: &Path, text: &str) -> Result<(), String> {
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
        .and_then(|()| std::fs::write(path, text))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

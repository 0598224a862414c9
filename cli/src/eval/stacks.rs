//! Finding the stacks on either side of `lamina eval` and reading them: Lamina output
//! folders (by their manifests, cropped layers placed on the canvas) and plain folders of
//! layer PNGs, decoded to RGBA8 as Pillow decodes them.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use image::{DynamicImage, ImageFormat, ImageReader};

use lamina_common::manifest::{Manifest, MANIFEST_FILE, MANIFEST_SCHEMA};

use super::score::Rgba;


/// One layer file of a stack.
#[derive(Debug, Clone)]
pub(super) struct LayerFile {
    pub(super) path: PathBuf,
    /// Where its top-left corner sits on the canvas (cropped layers only).
    pub(super) offset: Option<(u32, u32)>,
}

/// One image's layers as found on disk, bottom first; every file's header is read and its
/// size checked against the canvas.
#[derive(Debug, Clone)]
pub(super) struct Stack {
    pub(super) canvas: (u32, u32),
    pub(super) layers: Vec<LayerFile>,
}

/// Every stack under `root`, by name (its folder relative to `root`, `/`-separated; `.` for
/// `root` itself).
pub(super) fn discover(root: &Path, side: &str) -> anyhow::Result<BTreeMap<String, Stack>> {
    let kind = side.to_uppercase();
    match std::fs::metadata(root) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => bail!("{kind} {} is not a folder", root.display()),
        Err(e) => bail!("{kind} folder {} cannot be read: {e}", root.display()),
    }
    let mut stacks = BTreeMap::new();
    let walker = walkdir::WalkDir::new(root).follow_links(true).sort_by_file_name().into_iter();
    // Hidden folders are skipped, as LayerD's glob skips them.
    for entry in walker.filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.')) {
        let entry = entry.with_context(|| format!("cannot list {kind} folder {}", root.display()))?;
        if !entry.file_type().is_dir() {
            continue;
        }
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let name = if rel.as_os_str().is_empty() {
            ".".to_owned()
        } else {
            rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
        };
        if let Some(stack) = read_stack(entry.path(), &format!("{side} {name}"))? {
            stacks.insert(name, stack);
        }
    }
    if stacks.is_empty() {
        bail!("{kind} folder {} holds no layer stacks (no {MANIFEST_FILE}, no layer-NN.png files)", root.display());
    }
    Ok(stacks)
}

/// The stack in `dir`: its manifest's layers when it has one, else its `layer-*.png` files
/// (or LayerD's `NNNN.png`) sorted by name; `None` when it holds neither.
pub(super) fn read_stack(dir: &Path, label: &str) -> anyhow::Result<Option<Stack>> {
    let manifest = dir.join(MANIFEST_FILE);
    if manifest.is_file() {
        return read_manifest_stack(dir, &manifest, label).map(Some);
    }
    let mut lamina_named = Vec::new();
    let mut layerd_named = Vec::new();
    let listing = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in listing {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || entry.path().is_dir() {
            continue;
        }
        let (stem, ext) = name.rsplit_once('.').unwrap_or((name.as_str(), ""));
        let looks_lamina = stem.starts_with("layer-");
        let looks_layerd = !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit());
        if !looks_lamina && !looks_layerd {
            continue;
        }
        if ext != "png" {
            bail!("{}: not a PNG layer: layer files must be named *.png (lowercase)", entry.path().display());
        }
        if looks_lamina {
            lamina_named.push(name);
        } else {
            layerd_named.push(name);
        }
    }
    if !lamina_named.is_empty() && !layerd_named.is_empty() {
        bail!(
            "{}: mixes layer-NN.png ({}) and NNNN.png ({}) files; which are the layers?",
            dir.display(),
            lamina_named[0],
            layerd_named[0]
        );
    }
    let mut names = if lamina_named.is_empty() { layerd_named } else { lamina_named };
    if names.is_empty() {
        return Ok(None);
    }
    names.sort();
    let mut first: Option<((u32, u32), PathBuf)> = None;
    let mut layers = Vec::with_capacity(names.len());
    for name in &names {
        let path = dir.join(name);
        let size = png_size(&path)?;
        match &first {
            None => first = Some((size, path.clone())),
            Some(((w, h), first_path)) if (*w, *h) != size => bail!(
                "{}: layer is {}x{}, but {} is {w}x{h}; every layer of a stack must have the same size",
                path.display(),
                size.0,
                size.1,
                first_path.display()
            ),
            Some(_) => {}
        }
        layers.push(LayerFile { path, offset: None });
    }
    let canvas = first.map_or((0, 0), |c| c.0);
    Ok(Some(Stack { canvas, layers }))
}

/// The stack a Lamina manifest describes (layers in manifest order, bottom first; cropped
/// layers placed at their bbox).
pub(super) fn read_manifest_stack(dir: &Path, manifest_path: &Path, label: &str) -> anyhow::Result<Stack> {
    let text = std::fs::read_to_string(manifest_path).with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not a Lamina manifest: {e}", manifest_path.display()))?;
    if manifest.schema != MANIFEST_SCHEMA {
        bail!("{}: schema {:?}, expected {MANIFEST_SCHEMA:?}", manifest_path.display(), manifest.schema);
    }
    let canvas = (manifest.canvas.width, manifest.canvas.height);
    // Cropped layers: as the rendering recorded it, or (manifests from before `render`) a
    // layer file smaller than the canvas, placed at its bbox.
    let cropped = manifest.render.as_ref().is_some_and(|r| r.crop_layers);
    let mut layers = Vec::with_capacity(manifest.layers.len());
    for (k, layer) in manifest.layers.iter().enumerate() {
        let Some(file) = layer.file.as_deref().filter(|f| !f.is_empty()) else {
            bail!("{label}: layer {k} has no PNG file: the image was written without png in --formats (run lamina again to store its layers)");
        };
        let path = dir.join(file);
        let size = png_size(&path)?;
        let crop = cropped || size != canvas;
        let offset = match (crop, layer.bbox) {
            (true, Some(b)) => {
                if size != (b.width, b.height) {
                    bail!(
                        "{}: cropped layer is {}x{}, but its bbox in the manifest is {}x{}",
                        path.display(),
                        size.0,
                        size.1,
                        b.width,
                        b.height
                    );
                }
                if b.x as u64 + b.width as u64 > canvas.0 as u64 || b.y as u64 + b.height as u64 > canvas.1 as u64 {
                    bail!(
                        "{}: bbox {}x{} at ({}, {}) does not fit the {}x{} canvas",
                        path.display(),
                        b.width,
                        b.height,
                        b.x,
                        b.y,
                        canvas.0,
                        canvas.1
                    );
                }
                Some((b.x, b.y))
            }
            _ => {
                if size != canvas {
                    bail!(
                        "{}: layer is {}x{}, but the manifest's canvas is {}x{}",
                        path.display(),
                        size.0,
                        size.1,
                        canvas.0,
                        canvas.1
                    );
                }
                None
            }
        };
        layers.push(LayerFile { path, offset });
    }
    Ok(Stack { canvas, layers })
}

/// A PNG's size from its header; an error naming the file when it is not a PNG.
pub(super) fn png_size(path: &Path) -> anyhow::Result<(u32, u32)> {
    png_reader(path)?.into_dimensions().map_err(|e| anyhow::anyhow!("{}: not a readable PNG: {e}", path.display()))
}

pub(super) fn png_reader(path: &Path) -> anyhow::Result<ImageReader<BufReader<File>>> {
    let file = File::open(path).map_err(|e| anyhow::anyhow!("{}: cannot open: {e}", path.display()))?;
    Ok(ImageReader::with_format(BufReader::new(file), ImageFormat::Png))
}

/// Decodes a stack to canvas-sized RGBA8 layers.
pub(super) fn load_stack(stack: &Stack) -> anyhow::Result<Vec<Rgba>> {
    stack.layers.iter().map(|layer| load_layer(layer, stack.canvas)).collect()
}

pub(super) fn load_layer(layer: &LayerFile, canvas: (u32, u32)) -> anyhow::Result<Rgba> {
    let image = png_reader(&layer.path)?
        .decode()
        .map_err(|e| anyhow::anyhow!("{}: not a readable PNG: {e}", layer.path.display()))?;
    let rgba = to_rgba_like_pillow(image);
    let Some((x0, y0)) = layer.offset else {
        return Ok(rgba);
    };
    let mut out = Rgba::transparent(canvas.0, canvas.1);
    let (cw, w) = (canvas.0 as usize, rgba.width as usize);
    for (y, row) in rgba.data.chunks_exact(w * 4).enumerate() {
        let start = ((y0 as usize + y) * cw + x0 as usize) * 4;
        if let Some(dst) = out.data.get_mut(start..start + w * 4) {
            dst.copy_from_slice(row);
        }
    }
    Ok(out)
}

/// `Image.open(p).convert("RGBA")` as Pillow does it for PNGs: 8-bit data as is (palette
/// and tRNS expanded by the decoder), 16-bit colour and grey+alpha by their high byte,
/// 16-bit grey clipped to 255.
pub(super) fn to_rgba_like_pillow(image: DynamicImage) -> Rgba {
    let (width, height) = (image.width(), image.height());
    let data = match image {
        DynamicImage::ImageRgba8(im) => im.into_raw(),
        DynamicImage::ImageRgb8(im) => im.into_raw().chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
        DynamicImage::ImageLuma8(im) => im.into_raw().into_iter().flat_map(|l| [l, l, l, 255]).collect(),
        DynamicImage::ImageLumaA8(im) => im.into_raw().chunks_exact(2).flat_map(|p| [p[0], p[0], p[0], p[1]]).collect(),
        DynamicImage::ImageRgba16(im) => im.into_raw().into_iter().map(|v| (v >> 8) as u8).collect(),
        DynamicImage::ImageRgb16(im) => {
            im.into_raw().chunks_exact(3).flat_map(|p| [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8, 255]).collect()
        }
        DynamicImage::ImageLumaA16(im) => im
            .into_raw()
            .chunks_exact(2)
            .flat_map(|p| {
                let l = (p[0] >> 8) as u8;
                [l, l, l, (p[1] >> 8) as u8]
            })
            .collect(),
        DynamicImage::ImageLuma16(im) => im
            .into_raw()
            .into_iter()
            .flat_map(|v| {
                let l = v.min(255) as u8;
                [l, l, l, 255]
            })
            .collect(),
        other => other.to_rgba8().into_raw(),
    };
    Rgba { width, height, data }
}

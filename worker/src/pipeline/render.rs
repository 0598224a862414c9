//! The rendering step on its own: a task whose stored layers are current (the planner saw
//! the same input, model and model parameters, and every layer file in place) gets its
//! outputs made again from those layers, without the model: other formats, cropped or whole
//! layer files. The layers are checked against the manifest's sizes and sha256 first; a
//! layer that is missing, damaged or of the wrong shape sends the image back to be
//! decomposed, never into a broken document.
//!
//! Commit order is the decomposition's: the new files first, the manifest last (recording
//! the rendering), then the files the new rendering no longer lists are deleted. A crash
//! part way leaves the old manifest, whose recorded sizes then disagree with a rewritten
//! layer file, so the next run decomposes that image again: correct, if slower.

use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::fetch::ms;
use super::write::{put_all, put_manifest};
use crate::documents::{self, DocLayer, RenderError};
use crate::encode::digests;
use lamina_common::keys::join;
use lamina_common::manifest::{BBox, Manifest, OutputFile, Rendered, MANIFEST_FILE, PREVIEW_FILE};
use lamina_common::messages::{FailureKind, Status, Task, TaskResult};
use lamina_common::params::RenderParams;
use lamina_common::retry::{retry, RetryPolicy};
use lamina_common::store::StoreCache;
use lamina_common::ObjectStore;

/// How a rendering task ended.
#[derive(Debug)]
pub enum Rendering {
    /// Rendered (or failed for a reason a decomposition would not fix: the store).
    Finished(TaskResult),
    /// The stored layers cannot be used (the reason): decompose the image instead.
    Decompose(String),
}

/// Renders `task`'s outputs from the layers stored for it.
pub async fn render(stores: &StoreCache, task: &Task) -> Rendering {
    let started = Instant::now();
    let key = task.key.as_str();
    let store_failed = |e: String| Rendering::Finished(TaskResult::failed(key, FailureKind::Store, format!("cannot render: {e}")));
    let output = match stores.get(&task.output).await {
        Ok(output) => output,
        Err(e) => return store_failed(e.to_string()),
    };
    let manifest = match read_manifest(&output, key).await {
        Ok(Some(manifest)) => manifest,
        Ok(None) => return Rendering::Decompose("no readable manifest".to_owned()),
        Err(e) => return store_failed(e),
    };
    if manifest.params != task.params || manifest.input.key != task.key {
        return Rendering::Decompose("the manifest records other parameters".to_owned());
    }
    let pngs = match stored_layers(&output, &manifest).await {
        Ok(Ok(pngs)) => pngs,
        Ok(Err(reason)) => return Rendering::Decompose(reason),
        Err(e) => return store_failed(e),
    };
    // Everything CPU-bound (checking the layers, rendering, hashing) runs as one task on
    // rayon's pool, off the async runtime.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (shared, render) = (Arc::new(manifest), task.render.clone());
    let manifest = shared.clone();
    rayon::spawn(move || {
        let _ = tx.send(checked(&shared, pngs).map_err(Made::Decompose).and_then(|layers| rendered(&shared, layers, &render)));
    });
    let (files, outputs, rewritten) = match rx.await {
        Ok(Ok(made)) => made,
        Ok(Err(Made::Decompose(reason))) => return Rendering::Decompose(reason),
        Ok(Err(Made::Failed(reason))) => return Rendering::Finished(TaskResult::failed(key, FailureKind::Encode, reason)),
        Err(_) => return Rendering::Finished(TaskResult::failed(key, FailureKind::Encode, "the renderer crashed")),
    };
    let manifest = Arc::unwrap_or_clone(manifest);
    let names = manifest.layers.len();
    let listed: Vec<String> = files.iter().map(|(name, _)| name.clone()).chain([PREVIEW_FILE.to_owned()]).collect();
    let stale: Vec<String> = manifest.files.iter().filter(|f| !listed.contains(f)).cloned().collect();
    let writes: Vec<(String, Vec<u8>)> = files
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i >= names || rewritten[*i])
        .map(|(_, file)| file)
        .collect();
    if let Err(e) = put_all(&output, key, writes).await {
        return store_failed(e);
    }
    let layer_count = manifest.layers.len();
    let psnr_db = manifest.recomposite_psnr_db;
    let files = listed.iter().cloned().chain([MANIFEST_FILE.to_owned()]).collect();
    let manifest = Manifest {
        render: Some(task.render.clone()),
        files: listed,
        outputs,
        rendered: Some(Rendered { job_id: task.job_id.clone(), at: lamina_common::time::now_rfc3339() }),
        ..manifest
    };
    if let Err(result) = put_manifest(&output, &manifest).await {
        return Rendering::Finished(result);
    }
    for file in stale {
        if let Ok(path) = join(key, &file) {
            if let Err(e) = output.delete(&path).await {
                warn!(file = %file, error = %e, "cannot delete an output the new rendering no longer lists");
            }
        }
    }
    debug!(layers = layer_count, "rendered again from the stored layers");
    Rendering::Finished(TaskResult {
        key: key.to_owned(),
        status: Status::Rendered,
        reason: None,
        kind: None,
        layers: Some(layer_count),
        psnr_db,
        ms: Some(ms(started.elapsed())),
        files,
    })
}

async fn read_manifest(output: &Arc<dyn ObjectStore>, key: &str) -> Result<Option<Manifest>, String> {
    let path = join(key, MANIFEST_FILE).map_err(|e| e.to_string())?;
    let bytes = retry("read manifest", RetryPolicy::default(), || output.get_opt(&path)).await.map_err(|e| e.to_string())?;
    Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
}

/// The manifest's layer files, read: `Ok(Err(reason))` when the manifest lists none (one
/// from before the layer PNGs were always written) or one is missing, `Err` when the store
/// fails.
async fn stored_layers(output: &Arc<dyn ObjectStore>, manifest: &Manifest) -> Result<Result<Vec<Vec<u8>>, String>, String> {
    let Some(files) = manifest.layer_files() else {
        return Ok(Err("the layers were not stored as PNGs".to_owned()));
    };
    let mut reads = JoinSet::new();
    for (i, file) in files.iter().enumerate() {
        let path = join(&manifest.input.key, file).map_err(|e| e.to_string())?;
        let output = output.clone();
        reads.spawn(async move { (i, retry("read layer", RetryPolicy::default(), || output.get_opt(&path)).await) });
    }
    let mut pngs: Vec<Option<Vec<u8>>> = vec![None; files.len()];
    while let Some(read) = reads.join_next().await {
        let (i, bytes) = read.map_err(|e| format!("reader crashed: {e}"))?;
        pngs[i] = bytes.map_err(|e| e.to_string())?;
    }
    Ok(pngs.into_iter().zip(files).map(|(png, file)| png.ok_or_else(|| format!("{file} is missing"))).collect())
}

/// The stored layers checked against the manifest (size and sha256 as recorded; the canvas's
/// or the layer's box's size) and placed; the reason when one cannot be used.
fn checked(manifest: &Manifest, pngs: Vec<Vec<u8>>) -> Result<Vec<DocLayer>, String> {
    let canvas = BBox { x: 0, y: 0, width: manifest.canvas.width, height: manifest.canvas.height };
    let mut layers = Vec::with_capacity(pngs.len());
    for (info, png) in manifest.layers.iter().zip(pngs) {
        let file = info.png();
        if let Some(recorded) = manifest.output(file) {
            if OutputFile::of(file, &png) != *recorded {
                return Err(format!("{file} is not the file the manifest records (size or sha256)"));
            }
        }
        let bbox = info.bbox.unwrap_or(canvas);
        let placed = match png_size(&png) {
            Some((w, h)) if (w, h) == (canvas.width, canvas.height) => canvas,
            Some((w, h)) if (w, h) == (bbox.width, bbox.height) => bbox,
            Some((w, h)) => return Err(format!("{file} is {w}x{h}, neither the canvas nor the layer's box")),
            None => return Err(format!("{file} is not a PNG")),
        };
        layers.push(DocLayer { name: info.name.clone(), png, placed, bbox });
    }
    Ok(layers)
}

/// The files `render` asks for, made from the checked layers: the layer files (then the
/// documents), their records for the manifest, and which layer files were made anew (their
/// rectangle changed) and must be written.
/// Why the rendering's CPU work made nothing: the stored layers cannot be used (decompose
/// the image instead), or an output cannot be made from them (the image fails).
enum Made {
    Decompose(String),
    Failed(String),
}

fn rendered(manifest: &Manifest, layers: Vec<DocLayer>, render: &RenderParams) -> Result<(Vec<(String, Vec<u8>)>, Vec<OutputFile>, Vec<bool>), Made> {
    let canvas = manifest.canvas;
    let whole = BBox { x: 0, y: 0, width: canvas.width, height: canvas.height };
    let rewritten: Vec<bool> = layers.iter().map(|l| l.placed != if render.crop_layers { l.bbox } else { whole }).collect();
    let built = documents::build(canvas.width, canvas.height, layers, manifest.input.has_alpha, render).map_err(|e| match e {
        RenderError::Layer(reason) => Made::Decompose(format!("cannot render from the stored layers: {reason}")),
        RenderError::Output(reason) => Made::Failed(format!("cannot render: {reason}")),
    })?;
    let names: Vec<String> = manifest.layers.iter().map(|l| l.png().to_owned()).collect();
    let files: Vec<(String, Vec<u8>)> = names.iter().cloned().zip(built.pngs).chain(built.files).collect();
    // Layer files kept as they were keep their record (checked above); the rest are hashed,
    // and every layer when the manifest has no records (one from before `outputs`).
    let all = || files.iter().map(|(name, bytes)| (name.as_str(), bytes.as_slice()));
    let kept: Vec<OutputFile> = names.iter().zip(&rewritten).filter(|(_, r)| !**r).filter_map(|(name, _)| manifest.output(name).cloned()).collect();
    let mut outputs = if kept.len() == rewritten.iter().filter(|r| !**r).count() {
        let made = all().take(names.len()).enumerate().filter(|(i, _)| rewritten[*i]).map(|(_, file)| file);
        kept.into_iter().chain(digests(made)).collect()
    } else {
        digests(all().take(names.len()))
    };
    outputs.extend(all().skip(names.len()).map(|(name, bytes)| OutputFile::sized(name, bytes)));
    outputs.extend(manifest.output(PREVIEW_FILE).cloned());
    Ok((files, outputs, rewritten))
}

/// A PNG's width and height, from its header.
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    let reader = png::Decoder::new(std::io::Cursor::new(png)).read_info().ok()?;
    let info = reader.info();
    Some((info.width, info.height))
}

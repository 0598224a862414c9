//! Stage 3: encode (on rayon, all cores) and write an image's outputs in commit order: the
//! layers and the preview first, the manifest last. Only then is the result sent, so a
//! result always stands for durable outputs.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, warn, Instrument};

use super::{fetch::ms, Band, Finished, Inferred, WRITE_CONCURRENCY};
use crate::encode::{Encoded, StreamEncoder};
use crate::runtime::{device_name, ModelDesc};
use lamina_common::keys::join;
use lamina_common::manifest::{Canvas, InputInfo, LayerCountInfo, LayerLabel, LayerRole, Manifest, ModelInfo, MANIFEST_FILE, MANIFEST_SCHEMA, PREVIEW_FILE};
use lamina_common::messages::{FailureKind, Status, TaskResult};
use lamina_common::retry::{retry, RetryPolicy};
use lamina_common::ObjectStore;

pub(super) async fn run(
    desc: ModelDesc,
    mut inferred: mpsc::Receiver<Inferred>,
    results: mpsc::Sender<Finished>,
) {
    let slots = Arc::new(Semaphore::new(WRITE_CONCURRENCY));
    let mut writing = JoinSet::new();
    while let Some(image) = inferred.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else { break };
        let (desc, device, results) = (desc.clone(), device_name(image.device), results.clone());
        let (ticket, task, span) = (image.item.ticket, image.item.task.clone(), image.item.span.clone());
        writing.spawn(
            async move {
                // In a task of its own, so a panic while encoding (a thread that cannot start
                // under memory pressure, say) still gives the image its one result.
                let key = task.key.clone();
                let writing = tokio::spawn(async move { finish(&desc, &device, image).await }.in_current_span());
                let result = writing.await.unwrap_or_else(|e| {
                    let reason = match e.try_into_panic() {
                        Ok(panic) => panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned())).unwrap_or_default(),
                        Err(e) => e.to_string(),
                    };
                    let reason = reason.lines().next().unwrap_or_default().to_owned();
                    warn!(error = %reason, "writing the layers crashed");
                    TaskResult::failed(key, FailureKind::Encode, format!("writing the layers crashed: {reason}"))
                });
                debug!(status = ?result.status, "outputs written");
                let _ = results.send(Finished::new(ticket, &task, result)).await;
                drop(permit);
            }
            .instrument(span),
        );
        while writing.try_join_next().is_some() {}
    }
    while writing.join_next().await.is_some() {}
}

async fn finish(desc: &ModelDesc, device: &str, image: Inferred) -> TaskResult {
    let Inferred { mut item, sources, palette, labels, mut bands, precision, .. } = image;
    let output = item.output.clone();
    let key = item.task.key.clone();
    let labels = match desc.caps().roles {
        lamina_families::Roles::Colour => Vec::new(),
        lamina_families::Roles::Objects => (0..desc.layers).map(|i| LayerLabel::from(if i == 0 { LayerRole::Background } else { LayerRole::Object })).collect(),
        lamina_families::Roles::Design => labels,
    };
    let mut encoder = StreamEncoder::new(item.image.clone(), sources, &item.task.render).labels(labels);
    let mut encoding = std::time::Duration::ZERO;
    let crashed = || TaskResult::failed(key.clone(), FailureKind::Encode, "layer encoder crashed");
    let cannot = |e: crate::encode::EncodeError| TaskResult::failed(key.clone(), FailureKind::Encode, format!("cannot encode layers: {e}"));
    loop {
        match bands.recv().await {
            Some(Band::Rows(rows)) => {
                let started = Instant::now();
                let (tx, rx) = tokio::sync::oneshot::channel();
                rayon::spawn(move || {
                    let pushed = encoder.push(rows);
                    let _ = tx.send((encoder, pushed));
                });
                let Ok((back, pushed)) = rx.await else { return crashed() };
                encoder = back;
                encoding += started.elapsed();
                if let Err(e) = pushed {
                    return cannot(e);
                }
            }
            Some(Band::Done { inference_ms }) => {
                item.timings.inference = inference_ms;
                break;
            }
            Some(Band::Failed(reason)) => return TaskResult::failed(key, FailureKind::Model, reason),
            None => return TaskResult::failed(key, FailureKind::Model, "inference stopped before the layers were complete"),
        }
    }
    let started = Instant::now();
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let _ = tx.send(encoder.finish());
    });
    let encoded: Encoded = match rx.await {
        Ok(Ok(encoded)) => encoded,
        Ok(Err(e)) => return cannot(e),
        Err(_) => return crashed(),
    };
    item.timings.encode = ms(encoding + started.elapsed());

    let write_started = Instant::now();
    let Encoded { files: written, layers, dropped, preview, psnr_db, outputs } = encoded;
    let objects: Vec<(String, Vec<u8>)> = written.into_iter().chain([(PREVIEW_FILE.to_owned(), preview)]).collect();
    let files: Vec<String> = objects.iter().map(|(name, _)| name.clone()).collect();
    if let Err(e) = put_all(&output, &key, objects).await {
        return TaskResult::failed(key, FailureKind::Store, format!("cannot write output: {e}"));
    }
    item.timings.write = ms(write_started.elapsed());
    crate::metrics::METRICS.observe_image(&item.timings);
    let image = &item.image;
    let manifest = Manifest {
        schema: MANIFEST_SCHEMA.to_owned(),
        input: InputInfo {
            key: key.clone(),
            size: item.task.size,
            etag: item.etag.clone(),
            format: image.format.clone(),
            color: image.color.clone(),
            orientation: image.orientation,
            has_alpha: image.alpha.is_some(),
        },
        model: ModelInfo { id: desc.id.clone(), weights_sha256: desc.weights_sha256.clone(), device: device.to_owned(), precision: Some(precision.name().to_owned()) },
        params: item.task.params.clone(),
        render: Some(item.task.render.clone()),
        canvas: Canvas { width: image.width, height: image.height },
        layer_count: Some(LayerCountInfo { chosen: layers.len(), why: explain(desc, &item.task.params, layers.len(), dropped.len()) }),
        files,
        outputs,
        rendered: None,
        layers,
        dropped,
        palette,
        recomposite_psnr_db: psnr_db.map(|p| (p * 100.0).round() / 100.0),
        preview: Some(PREVIEW_FILE.to_owned()),
        timings_ms: item.timings,
        job_id: item.task.job_id.clone(),
        created_at: lamina_common::time::now_rfc3339(),
    };
    if let Err(result) = put_manifest(&output, &manifest).await {
        return result;
    }
    TaskResult {
        key,
        status: Status::Done,
        reason: None,
        kind: None,
        layers: Some(manifest.layers.len()),
        psnr_db: manifest.recomposite_psnr_db,
        ms: Some(ms(item.started.elapsed())),
        files: manifest.files.iter().cloned().chain([MANIFEST_FILE.to_owned()]).collect(),
    }
}

/// Writes an image's files (`(name, bytes)`, names relative to its folder) at once, each
/// retried; the bytes move into shared buffers, so a retry resends them without a copy.
pub(super) async fn put_all(output: &Arc<dyn ObjectStore>, key: &str, objects: Vec<(String, Vec<u8>)>) -> Result<(), String> {
    let mut puts = JoinSet::new();
    for (name, bytes) in objects {
        let path = join(key, &name).map_err(|e| e.to_string())?;
        let (output, bytes) = (output.clone(), bytes::Bytes::from(bytes));
        puts.spawn(async move { retry("write layer", RetryPolicy::default(), || output.put_shared(&path, bytes.clone())).await });
    }
    while let Some(done) = puts.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(e) => return Err(format!("writer crashed: {e}")),
        }
    }
    Ok(())
}

/// Writes the manifest, last: from here on the image counts as done.
pub(super) async fn put_manifest(output: &Arc<dyn ObjectStore>, manifest: &Manifest) -> Result<(), TaskResult> {
    let key = &manifest.input.key;
    let written = match (serde_json::to_vec_pretty(manifest), join(key, MANIFEST_FILE)) {
        (Ok(json), Ok(path)) => retry("write manifest", RetryPolicy::default(), || output.put(&path, json.clone())).await,
        (Err(e), _) => return Err(TaskResult::failed(key.clone(), FailureKind::Encode, format!("cannot serialise manifest: {e}"))),
        (_, Err(e)) => Err(e),
    };
    written.map_err(|e| TaskResult::failed(key.clone(), FailureKind::Store, format!("cannot write output: {e}")))
}

/// Why an image has the layers it has, for the manifest.
fn explain(desc: &ModelDesc, params: &lamina_common::params::DecomposeParams, written: usize, dropped: usize) -> String {
    (desc.family.explain)(params, lamina_families::Count { model_layers: desc.layers, written, dropped })
}

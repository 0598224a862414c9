//! Stage 1: fetch each task's input and decode it (on the blocking pool), a few at a time.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, Instrument};

use super::{Finished, Item, Work, WorkerConfig, FETCH_CONCURRENCY};
use crate::decode::{decode_named, dimensions};
use crate::runtime::ModelDesc;
use lamina_common::manifest::Timings;
use lamina_common::messages::{FailureKind, Task, TaskResult};
use lamina_common::store::StoreCache;
use lamina_common::retry::{retry, RetryPolicy};
use lamina_common::store::sha256_etag;

pub(super) async fn run(
    stores: Arc<StoreCache>,
    config: WorkerConfig,
    desc: ModelDesc,
    mut tasks: mpsc::Receiver<Work>,
    decoded: mpsc::Sender<Item>,
    results: mpsc::Sender<Finished>,
) {
    let mut running = JoinSet::new();
    let mut open = true;
    // Decoded pixels in flight (queued for the model, in the model, being encoded) are
    // bounded to twice the largest image, whatever the batch size: a run of 64 MP images
    // holds two of them decoded, not a channel's worth.
    let pixels = Arc::new(Semaphore::new(pixel_units(2 * config.max_pixels.max(1)) as usize));
    while open || !running.is_empty() {
        tokio::select! {
            task = tasks.recv(), if open && running.len() < FETCH_CONCURRENCY => match task {
                Some(work) => {
                    let (stores, config, desc, pixels) = (stores.clone(), config.clone(), desc.clone(), pixels.clone());
                    let span = tracing::info_span!("image", job_id = %work.task.job_id, key = %work.task.key);
                    running.spawn(
                        async move {
                            let Work { ticket, task } = work;
                            prepare(&stores, &config, &desc, &pixels, ticket, task).await
                        }
                        .instrument(span),
                    );
                }
                None => open = false,
            },
            Some(done) = running.join_next(), if !running.is_empty() => {
                let sent = match done {
                    Ok(Ok(item)) => decoded.send(item).await.is_ok(),
                    Ok(Err(failed)) => results.send(failed).await.is_ok(),
                    Err(panic) => {
                        debug!(error = %panic, "fetch task ended abnormally");
                        true
                    }
                };
                if !sent {
                    return;
                }
            }
        }
    }
}

/// Fetches and decodes one input; a failure becomes the task's result.
/// Pixels in units of 1024, the decoded-pixel semaphore's permits.
fn pixel_units(pixels: u64) -> u32 {
    pixels.div_ceil(1024).min(u64::from(u32::MAX >> 4)) as u32
}

async fn prepare(
    stores: &StoreCache,
    config: &WorkerConfig,
    desc: &ModelDesc,
    pixels: &Arc<Semaphore>,
    ticket: u64,
    task: Task,
) -> Result<Item, Finished> {
    let started = Instant::now();
    let fail = |kind: FailureKind, reason: String| Finished::new(ticket, &task, TaskResult::failed(task.key.clone(), kind, reason));
    let input = stores.get(&task.input).await.map_err(|e| fail(FailureKind::Store, format!("input location: {e}")))?;
    let output = stores.get(&task.output).await.map_err(|e| fail(FailureKind::Store, format!("output location: {e}")))?;
    let bytes = retry("fetch", RetryPolicy::default(), || input.get(&task.key))
        .await
        .map_err(|e| fail(FailureKind::Store, format!("cannot read input: {e}")))?;
    let fetched = Instant::now();
    let etag = task.etag.clone().unwrap_or_else(|| sha256_etag(&bytes));
    let max_pixels = config.max_pixels;
    let name = task.key.clone();
    // Room for this image's decoded pixels (refused sizes take none: they fail below).
    let units = dimensions(&bytes, &name)
        .map(|(w, h)| u64::from(w) * u64::from(h))
        .filter(|&n| n <= max_pixels)
        .map_or(0, pixel_units)
        .min(pixel_units(2 * max_pixels.max(1)));
    let room = pixels.clone().acquire_many_owned(units).await.map_err(|_| fail(FailureKind::Decode, "worker stopping".into()))?;
    let decoded = tokio::task::spawn_blocking(move || decode_named(&bytes, &name, max_pixels))
        .await
        .map_err(|e| fail(FailureKind::Decode, format!("decoder crashed: {e}")))?
        .map_err(|e| fail(e.kind(), e.to_string()))?;
    if decoded.width.max(decoded.height) > desc.max_side {
        return Err(fail(FailureKind::TooLarge, format!(
            "image is {}x{}, over model {}'s longest side of {} pixels",
            decoded.width, decoded.height, desc.id, desc.max_side
        )));
    }
    let timings = Timings {
        fetch: ms(fetched - started),
        decode: ms(fetched.elapsed()),
        ..Timings::default()
    };
    let span = tracing::Span::current();
    debug!(width = decoded.width, height = decoded.height, "decoded");
    Ok(Item { ticket, task, output, started, etag, image: Arc::new(decoded), timings, span, _room: room })
}

pub(super) fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

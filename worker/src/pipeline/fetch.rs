//! Stage 1: fetch each task's input and decode it (on the blocking pool), a few at a time.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::debug;

use super::{Item, WorkerConfig, FETCH_CONCURRENCY};
use crate::decode::decode;
use crate::model::ModelDesc;
use lamina_common::manifest::Timings;
use lamina_common::messages::{Task, TaskResult};
use lamina_common::retry::{retry, RetryPolicy};
use lamina_common::store::sha256_etag;
use lamina_common::ObjectStore;

pub(super) async fn run(
    input: Arc<dyn ObjectStore>,
    config: WorkerConfig,
    desc: ModelDesc,
    mut tasks: mpsc::Receiver<Task>,
    decoded: mpsc::Sender<Item>,
    results: mpsc::Sender<TaskResult>,
) {
    let mut running = JoinSet::new();
    let mut open = true;
    while open || !running.is_empty() {
        tokio::select! {
            task = tasks.recv(), if open && running.len() < FETCH_CONCURRENCY => match task {
                Some(task) => {
                    let (input, config, desc) = (input.clone(), config.clone(), desc.clone());
                    running.spawn(async move { prepare(&*input, &config, &desc, task).await });
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
async fn prepare(input: &dyn ObjectStore, config: &WorkerConfig, desc: &ModelDesc, task: Task) -> Result<Item, TaskResult> {
    let started = Instant::now();
    let fail = |reason: String| TaskResult::failed(task.key.clone(), reason);
    let bytes = retry("fetch", RetryPolicy::default(), || input.get(&task.key))
        .await
        .map_err(|e| fail(format!("cannot read input: {e}")))?;
    let fetched = Instant::now();
    let etag = task.etag.clone().unwrap_or_else(|| sha256_etag(&bytes));
    let max_pixels = config.max_pixels;
    let decoded = tokio::task::spawn_blocking(move || decode(&bytes, max_pixels))
        .await
        .map_err(|e| fail(format!("decoder crashed: {e}")))?
        .map_err(|e| fail(e.to_string()))?;
    if decoded.width.max(decoded.height) > desc.max_side {
        return Err(fail(format!(
            "image is {}x{}, over model {}'s longest side of {} pixels",
            decoded.width, decoded.height, desc.id, desc.max_side
        )));
    }
    let timings = Timings {
        fetch: ms(fetched - started),
        decode: ms(fetched.elapsed()),
        ..Timings::default()
    };
    Ok(Item { task, started, etag, image: Arc::new(decoded), timings })
}

pub(super) fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

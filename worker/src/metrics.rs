//! The worker's Prometheus metrics (listed in docs/metrics.md) and the small HTTP server
//! that serves them with `/health`. Process-wide: the pipeline records stage times, the
//! service records tasks, the retry helper counts retries by cause.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use lamina_common::messages::{FailureKind, Status, TaskResult};

/// Upper bounds of the stage-time buckets, in seconds.
const BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
pub const STAGES: [&str; 5] = ["fetch", "decode", "inference", "encode", "upload"];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Every counter and gauge of the worker.
#[derive(Debug, Default)]
pub struct Metrics {
    stages: Mutex<[Histogram; STAGES.len()]>,
    pub tasks_received: AtomicU64,
    pub tasks_acked: AtomicU64,
    pub tasks_rejected: AtomicU64,
    images: [AtomicU64; 4],
    failures: [AtomicU64; FailureKind::ALL.len()],
    pub heartbeats: AtomicU64,
    pub broker_connects: AtomicU64,
    /// Gauges set by the service (f64 bits).
    in_flight_tasks: AtomicU64,
    in_flight_bytes: AtomicU64,
    oldest_unacked: AtomicU64,
    prefetch: AtomicU64,
    images_per_second: AtomicU64,
    /// Per CUDA device: its name, bytes used and total.
    gpu: Mutex<Vec<(String, u64, u64)>>,
    /// Per inference lane: its device, batches run and images in them.
    lanes: Mutex<Vec<(String, u64, u64)>>,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

impl Metrics {
    /// Records `seconds` spent by one image (inference: one batch) in `stage`.
    pub fn observe(&self, stage: &str, seconds: f64) {
        let Some(i) = STAGES.iter().position(|s| *s == stage) else { return };
        let Ok(mut stages) = self.stages.lock() else { return };
        let h = &mut stages[i];
        for (bound, count) in BUCKETS.iter().zip(h.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// Records the stage times (milliseconds) of a finished image, inference excepted.
    pub fn observe_image(&self, t: &lamina_common::manifest::Timings) {
        for (stage, ms) in [("fetch", t.fetch), ("decode", t.decode), ("encode", t.encode), ("upload", t.write)] {
            self.observe(stage, ms / 1000.0);
        }
    }

    /// Counts a finished image by status, and a failure by its kind.
    pub fn image(&self, result: &TaskResult) {
        if let Some(kind) = result.kind {
            let i = FailureKind::ALL.iter().position(|k| *k == kind).unwrap_or(FailureKind::ALL.len() - 1);
            self.failures[i].fetch_add(1, Ordering::Relaxed);
        }
        let i = match result.status {
            Status::Done => 0,
            Status::Skipped => 1,
            Status::Failed => 2,
            Status::Rendered => 3,
        };
        self.images[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_in_flight(&self, tasks: usize, bytes: u64, oldest_seconds: f64) {
        self.in_flight_tasks.store((tasks as f64).to_bits(), Ordering::Relaxed);
        self.in_flight_bytes.store((bytes as f64).to_bits(), Ordering::Relaxed);
        self.oldest_unacked.store(oldest_seconds.to_bits(), Ordering::Relaxed);
    }

    pub fn set_prefetch(&self, prefetch: u16) {
        self.prefetch.store(f64::from(prefetch).to_bits(), Ordering::Relaxed);
    }

    pub fn set_rate(&self, images_per_second: f64) {
        self.images_per_second.store(images_per_second.to_bits(), Ordering::Relaxed);
    }

    /// GPU memory (used, total) of `device`, when it is a CUDA device.
    pub fn set_gpu(&self, device: String, used: u64, total: u64) {
        if let Ok(mut gpu) = self.gpu.lock() {
            match gpu.iter_mut().find(|g| g.0 == device) {
                Some(entry) => *entry = (device, used, total),
                None => gpu.push((device, used, total)),
            }
        }
    }

    /// Counts a batch of `images` run by inference lane `lane` on `device`.
    pub fn lane(&self, lane: usize, device: &str, images: usize) {
        let Ok(mut lanes) = self.lanes.lock() else { return };
        if lanes.len() <= lane {
            lanes.resize(lane + 1, (String::new(), 0, 0));
        }
        let entry = &mut lanes[lane];
        entry.0 = device.to_owned();
        entry.1 += 1;
        entry.2 += images as u64;
    }

    /// Images each lane has run: (lane, device, images).
    pub fn lane_images(&self) -> Vec<(usize, String, u64)> {
        self.lanes.lock().map(|l| l.iter().enumerate().map(|(i, (d, _, n))| (i, d.clone(), *n)).collect()).unwrap_or_default()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut page = lamina_common::exposition::Exposition::default();
        let gauge = |v: &AtomicU64| f64::from_bits(v.load(Ordering::Relaxed));
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| page.metric(name, kind, help, samples);
        let one = lamina_common::exposition::Exposition::one;
        let count = |v: &AtomicU64| v.load(Ordering::Relaxed) as f64;
        metric("lamina_worker_tasks_received_total", "counter", "Task messages delivered to this worker.", &one(count(&self.tasks_received)));
        metric("lamina_worker_tasks_acked_total", "counter", "Tasks acknowledged after their result was confirmed.", &one(count(&self.tasks_acked)));
        metric("lamina_worker_tasks_rejected_total", "counter", "Invalid task messages rejected to the dead-letter queue.", &one(count(&self.tasks_rejected)));
        let images: Vec<(String, f64)> =
            ["done", "skipped", "failed", "rendered"].iter().zip(&self.images).map(|(s, n)| (format!("{{status=\"{s}\"}}"), count(n))).collect();
        metric("lamina_worker_images_total", "counter", "Images finished, by status.", &images);
        let failures: Vec<(String, f64)> =
            FailureKind::ALL.iter().zip(&self.failures).map(|(k, n)| (format!("{{kind=\"{}\"}}", k.as_str()), count(n))).collect();
        metric("lamina_worker_failures_total", "counter", "Images failed, by kind of failure.", &failures);
        metric("lamina_worker_images_per_second", "gauge", "Images finished per second over the last minute.", &one(gauge(&self.images_per_second)));
        metric("lamina_worker_in_flight_tasks", "gauge", "Tasks held unacknowledged.", &one(gauge(&self.in_flight_tasks)));
        metric("lamina_worker_in_flight_bytes", "gauge", "Input bytes of the tasks held.", &one(gauge(&self.in_flight_bytes)));
        metric("lamina_worker_oldest_unacked_task_seconds", "gauge", "Age of the oldest task held.", &one(gauge(&self.oldest_unacked)));
        metric("lamina_worker_prefetch", "gauge", "Prefetch in force.", &one(gauge(&self.prefetch)));
        let retries: Vec<(String, f64)> =
            lamina_common::retry::retries().into_iter().map(|(c, n)| (format!("{{cause=\"{c}\"}}"), n as f64)).collect();
        metric("lamina_worker_retries_total", "counter", "Retried operations against S3 or the broker, by cause.", &retries);
        metric("lamina_worker_heartbeats_total", "counter", "Heartbeats published.", &one(count(&self.heartbeats)));
        metric("lamina_worker_broker_connects_total", "counter", "Connections made to the broker.", &one(count(&self.broker_connects)));
        let gpus = self.gpu.lock().map(|g| g.clone()).unwrap_or_default();
        if !gpus.is_empty() {
            let label = |device: &str| format!("{{device=\"{device}\"}}");
            let used: Vec<(String, f64)> = gpus.iter().map(|(d, used, _)| (label(d), *used as f64)).collect();
            let total: Vec<(String, f64)> = gpus.iter().map(|(d, _, total)| (label(d), *total as f64)).collect();
            metric("lamina_worker_gpu_memory_used_bytes", "gauge", "GPU memory in use on the device.", &used);
            metric("lamina_worker_gpu_memory_total_bytes", "gauge", "GPU memory of the device.", &total);
        }
        let lanes = self.lanes.lock().map(|l| l.clone()).unwrap_or_default();
        let label = |i: usize, d: &str| format!("{{lane=\"{i}\",device=\"{d}\"}}");
        let batches: Vec<(String, f64)> = lanes.iter().enumerate().map(|(i, (d, b, _))| (label(i, d), *b as f64)).collect();
        let images: Vec<(String, f64)> = lanes.iter().enumerate().map(|(i, (d, _, n))| (label(i, d), *n as f64)).collect();
        metric("lamina_worker_lane_batches_total", "counter", "Forward passes (batches or large images) run, by inference lane.", &batches);
        metric("lamina_worker_lane_images_total", "counter", "Images run, by inference lane.", &images);
        let stages = self.stages.lock().map(|s| s.clone()).unwrap_or_default();
        let out = page.raw();
        let _ = writeln!(
            out,
            "# HELP lamina_worker_stage_seconds Time one image (inference: one batch) spends in each stage.\n# TYPE lamina_worker_stage_seconds histogram"
        );
        for (stage, h) in STAGES.iter().zip(&stages) {
            for (bound, n) in BUCKETS.iter().zip(&h.counts) {
                let _ = writeln!(out, "lamina_worker_stage_seconds_bucket{{stage=\"{stage}\",le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(out, "lamina_worker_stage_seconds_bucket{{stage=\"{stage}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "lamina_worker_stage_seconds_sum{{stage=\"{stage}\"}} {}", h.sum);
            let _ = writeln!(out, "lamina_worker_stage_seconds_count{{stage=\"{stage}\"}} {}", h.count);
        }
        page.finish()
    }
}

/// Serves `/health` and `/metrics` on `addr` until `shutdown` fires.
pub async fn serve(addr: std::net::SocketAddr, shutdown: tokio_util::sync::CancellationToken) -> std::io::Result<()> {
    use axum::http::header;
    use axum::routing::get;
    let router = axum::Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(|| async { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], METRICS.render()) }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(address = %listener.local_addr()?, "serving metrics");
    axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_render_every_stage() {
        let m = Metrics::default();
        m.observe("fetch", 0.02);
        m.observe("fetch", 3.0);
        m.observe("nonsense", 1.0);
        let text = m.render();
        assert!(text.contains("lamina_worker_stage_seconds_bucket{stage=\"fetch\",le=\"0.025\"} 1"), "{text}");
        assert!(text.contains("lamina_worker_stage_seconds_bucket{stage=\"fetch\",le=\"5\"} 2"), "{text}");
        assert!(text.contains("lamina_worker_stage_seconds_count{stage=\"upload\"} 0"), "{text}");
        assert!(!text.contains("nonsense"));
        assert!(!text.contains("gpu_memory"), "no GPU metrics without a CUDA device");
    }
}

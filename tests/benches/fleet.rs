//! How the distributed mode scales with workers, on any machine: N real `lamina-worker`
//! processes running the capacity-test model (each batch held for a fixed time without
//! using the CPU, standing in for GPU time; real layers written), one real coordinator, the
//! real RabbitMQ and Garage. For each N it reports images/s and the ratio to N times one
//! worker's rate; the fleet scales perfectly when the ratio is 1.
//!
//!   cargo build --release --workspace --bins
//!   cargo bench -p lamina-tests --bench fleet -- [HOLD_MS] [IMAGES_PER_WORKER] [N...]
//!
//! Defaults: 1000 ms, 12 images per worker, N = 1 8 32. Needs the test services
//! (`eval "$(ops/services.sh)"`).
//!
//!   cargo bench -p lamina-tests --bench fleet -- overhead [IMAGES] [SIDE]
//!
//! measures what the queue and S3 cost instead: the same images (default 24 at 512 px)
//! decomposed with the real model on the CPU by `lamina run` from a local folder, and by one
//! worker of a distributed fleet from S3; images/s of both, from their summaries.

use std::time::{Duration, Instant};

use image::ImageFormat;
use lamina_common::store::S3Store;
use lamina_common::ObjectStore;
use lamina_tests::*;

fn wait_for_workers(http: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while http_json(http, "/fleet").as_array().map_or(0, Vec::len) < n {
        assert!(Instant::now() < deadline, "only {:?} workers came up", http_json(http, "/fleet").as_array().map(Vec::len));
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if args.first().map(String::as_str) == Some("overhead") {
        let images = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(24);
        let side = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(512);
        return overhead(images, side).await;
    }
    let hold: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let per_worker: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(12);
    let counts: Vec<usize> = match args.get(2..) {
        Some(rest) if !rest.is_empty() => rest.iter().filter_map(|a| a.parse().ok()).collect(),
        _ => vec![1, 8, 32],
    };
    let settings = s3_settings();
    let model = format!("capacity-test:{hold}");
    let mut baseline = None;
    println!("capacity-test model holding each image {hold} ms; {per_worker} images per worker");
    for &n in &counts {
        let bucket = new_bucket(&format!("fleet-{n}"));
        let prefix = format!("lamina-bench-{}-{n}", std::process::id());
        let logs = tempfile::tempdir().unwrap();
        let http = format!("127.0.0.1:{}", free_port());
        let mut children = vec![spawn_with("lamina-coordinator", &prefix, &logs.path().join("coordinator.log"), &[("LAMINA_HTTP_ADDR", &http)])];
        for i in 0..n {
            children.push(spawn_with(
                "lamina-worker",
                &prefix,
                &logs.path().join(format!("worker-{i}.log")),
                &[("LAMINA_MODEL", &model), ("RUST_LOG", "warn")],
            ));
        }
        let _fleet = Fleet(children);
        let images = fleet_images(n * per_worker, 64);
        let input = S3Store::new(&settings, &bucket, "in").await;
        for (key, img) in &images {
            input.put(key, encode(img, ImageFormat::Png)).await.unwrap();
        }
        let h = http.clone();
        tokio::task::spawn_blocking(move || wait_for_workers(&h, n)).await.unwrap();
        let (src, dst, model) = (format!("s3://{bucket}/in"), format!("s3://{bucket}/out"), model.clone());
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(binary("lamina"))
                .args(["submit", "--input", &src, "--output", &dst, "--model", &model, "--wait"])
                .env("LAMINA_AMQP_PREFIX", &prefix)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{}", explain(&out));
        let job_id = String::from_utf8_lossy(&out.stdout).lines().next().unwrap().trim().to_owned();
        let output = S3Store::new(&settings, &bucket, "out").await;
        let summary: serde_json::Value =
            serde_json::from_slice(&output.get(&format!("_lamina/jobs/{job_id}/summary.json")).await.unwrap()).unwrap();
        assert_eq!(summary["done"].as_u64(), Some(images.len() as u64), "{summary}");
        let rate = summary["images_per_second"].as_f64().unwrap();
        let one = *baseline.get_or_insert(rate / n as f64);
        println!(
            "{n:>3} worker(s): {} images in {:.1} s = {rate:.2} images/s = {:.2} x {n} x one worker",
            images.len(),
            summary["seconds"].as_f64().unwrap(),
            rate / (one * n as f64)
        );
    }
}

/// `lamina run` on local files against one distributed worker on S3, same images.
async fn overhead(n: usize, side: u32) {
    let settings = s3_settings();
    let images = fleet_images(n, side);
    let local = tempfile::tempdir().unwrap();
    let bucket = new_bucket("overhead");
    let input = S3Store::new(&settings, &bucket, "in").await;
    for (key, img) in &images {
        let bytes = encode(img, ImageFormat::Png);
        write(&local.path().join("in"), key, &bytes);
        input.put(key, bytes).await.unwrap();
    }
    // Single-machine mode.
    let (src, dst) = (local.path().join("in"), local.path().join("out"));
    let out = std::process::Command::new(binary("lamina"))
        .args(["run", src.to_str().unwrap(), dst.to_str().unwrap(), "--device", "cpu"])
        .env("LAMINA_PROGRESS", "none")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", explain(&out));
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(job_dir(&dst).join("summary.json")).unwrap()).unwrap();
    let run_rate = summary["images_per_second"].as_f64().unwrap();

    // One worker of a fleet, from S3 to S3.
    let prefix = format!("lamina-bench-{}-overhead", std::process::id());
    let logs = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let _fleet = Fleet(vec![
        spawn_with("lamina-coordinator", &prefix, &logs.path().join("coordinator.log"), &[("LAMINA_HTTP_ADDR", &http)]),
        spawn_with("lamina-worker", &prefix, &logs.path().join("worker.log"), &[("RUST_LOG", "warn")]),
    ]);
    let h = http.clone();
    tokio::task::spawn_blocking(move || wait_for_workers(&h, 1)).await.unwrap();
    let (src, dst) = (format!("s3://{bucket}/in"), format!("s3://{bucket}/out"));
    let p = prefix.clone();
    let out = tokio::task::spawn_blocking(move || submit(&src, &dst, &p)).await.unwrap();
    assert!(out.status.success(), "{}", explain(&out));
    let job_id = String::from_utf8_lossy(&out.stdout).lines().next().unwrap().trim().to_owned();
    let output = S3Store::new(&settings, &bucket, "out").await;
    let summary: serde_json::Value =
        serde_json::from_slice(&output.get(&format!("_lamina/jobs/{job_id}/summary.json")).await.unwrap()).unwrap();
    let fleet_rate = summary["images_per_second"].as_f64().unwrap();
    println!(
        "{n} images of about {side} px, fscs on the CPU: lamina run (local) {run_rate:.3} images/s; one distributed worker (RabbitMQ + S3) \
         {fleet_rate:.3} images/s = {:.3} x lamina run",
        fleet_rate / run_rate
    );
}

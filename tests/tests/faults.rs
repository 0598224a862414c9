//! Faults injected into the real fleet (real processes, RabbitMQ, Garage): workers killed
//! with SIGKILL at random moments, and a worker told to stop with SIGTERM. The job must
//! complete with every image exactly once in its records, and no image may be marked done
//! (have a manifest) without all of its layers. These tests are the slowest of the suite.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use image::ImageFormat;
use lamina_common::manifest::Manifest;
use lamina_common::messages::{Status, TaskResult};
use lamina_common::store::S3Store;
use lamina_common::ObjectStore;
use lamina_tests::*;

/// The keys a worker's log says it finished (published and acknowledged).
fn finished_keys(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("task finished"))
        .filter_map(|l| l.split("key=").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap_or_default().to_owned())
        .collect()
}

async fn upload(store: &S3Store, images: &BTreeMap<String, image::DynamicImage>) {
    for (key, img) in images {
        store.put(key, encode(img, ImageFormat::Png)).await.unwrap();
    }
}

/// Every image has one results line (done, or skipped when `skips` allows it: an image
/// finished while no coordinator was listening) and a manifest whose layers all exist and
/// decode.
async fn check_complete(output: &S3Store, images: &BTreeMap<String, image::DynamicImage>, stdout: &str, skips: bool) {
    let job_id = stdout.lines().next().unwrap().trim();
    let lines: Vec<TaskResult> = String::from_utf8(output.get(&format!("_lamina/jobs/{job_id}/results.jsonl")).await.unwrap())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), images.len(), "one results line per image");
    let keys: BTreeSet<&str> = lines.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys.len(), images.len(), "an image was reported twice");
    let ok = |r: &TaskResult| r.status == Status::Done || (skips && r.status == Status::Skipped);
    assert!(lines.iter().all(ok), "{lines:#?}");
    for key in images.keys() {
        let manifest: Manifest = serde_json::from_slice(&output.get(&format!("{key}/manifest.json")).await.unwrap()).unwrap();
        for layer in &manifest.layers {
            let bytes = output.get(&format!("{key}/{}", layer.png())).await.unwrap();
            let img = image::load_from_memory(&bytes).unwrap_or_else(|e| panic!("{key}/{}: {e}", layer.png()));
            assert_eq!((img.width(), img.height()), (manifest.canvas.width, manifest.canvas.height));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_killed_at_random_moments_lose_no_image_and_mark_none_done_half_written() {
    let settings = s3_settings();
    let bucket = new_bucket("sigkill");
    let prefix = format!("lamina-kill-{}", std::process::id());
    let _queues = Queues(prefix.clone());
    let logs = tempfile::tempdir().unwrap();
    let log = |name: &str| logs.path().join(name);
    let mut fleet = Fleet(vec![
        spawn_service("lamina-coordinator", &prefix, &log("coordinator.log")),
        spawn_service("lamina-worker", &prefix, &log("worker-0.log")),
        spawn_service("lamina-worker", &prefix, &log("worker-1.log")),
    ]);
    let images = fleet_images(300, 64);
    upload(&S3Store::new(&settings, &bucket, "in").await, &images).await;

    let (src, dst, p) = (format!("s3://{bucket}/in"), format!("s3://{bucket}/out"), prefix.clone());
    let job = tokio::task::spawn_blocking(move || submit(&src, &dst, &p));
    // Five kills at pseudo-random moments (seeded by the clock; printed for reproduction).
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    println!("kill schedule seed {seed}");
    let mut workers_started = 2;
    for kill in 0..5 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(200 + seed % 700)).await;
        assert!(!job.is_finished(), "the job finished before kill {kill}: make it longer");
        let victim = 1 + kill % 2;
        fleet.0[victim].kill().unwrap(); // SIGKILL
        fleet.0[victim].wait().unwrap();
        fleet.0[victim] = spawn_service("lamina-worker", &prefix, &log(&format!("worker-{workers_started}.log")));
        workers_started += 1;
    }
    let out = job.await.unwrap();
    let all_logs = || {
        (0..workers_started)
            .map(|i| format!("worker-{i}.log"))
            .chain(["coordinator.log".to_owned()])
            .map(|l| format!("--- {l}\n{}", std::fs::read_to_string(log(&l)).unwrap_or_default()))
            .collect::<String>()
    };
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("300 images: 300 done, 0 skipped (unchanged), 0 failed"), "{}\n{}", explain(&out), all_logs());
    check_complete(&S3Store::new(&settings, &bucket, "out").await, &images, &stdout, false).await;

    let processed: usize = (0..workers_started).map(|i| finished_keys(&log(&format!("worker-{i}.log"))).len()).sum();
    println!("5 workers killed: {processed} results published for 300 images ({} published twice)", processed.saturating_sub(300));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_told_to_stop_finishes_what_it_holds_exits_zero_and_nothing_it_did_is_redone() {
    let settings = s3_settings();
    let bucket = new_bucket("sigterm");
    let prefix = format!("lamina-term-{}", std::process::id());
    let _queues = Queues(prefix.clone());
    let logs = tempfile::tempdir().unwrap();
    let log = |name: &str| logs.path().join(name);
    let mut fleet = Fleet(vec![
        spawn_service("lamina-coordinator", &prefix, &log("coordinator.log")),
        spawn_service("lamina-worker", &prefix, &log("stopping.log")),
    ]);
    let images = fleet_images(120, 64);
    upload(&S3Store::new(&settings, &bucket, "in").await, &images).await;

    let (src, dst, p) = (format!("s3://{bucket}/in"), format!("s3://{bucket}/out"), prefix.clone());
    let job = tokio::task::spawn_blocking(move || submit(&src, &dst, &p));
    // Let it work a little, then stop it as a spot reclaim or a scale-down would.
    for _ in 0..200 {
        if finished_keys(&log("stopping.log")).len() >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = fleet.0[1].id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut status = None;
    for _ in 0..300 {
        if let Some(s) = fleet.0[1].try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = status.expect("the worker did not exit within 30 s of SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", std::fs::read_to_string(log("stopping.log")).unwrap());
    assert!(!job.is_finished(), "the job finished before the stop: make it longer");

    fleet.0.push(spawn_service("lamina-worker", &prefix, &log("taking-over.log")));
    let out = job.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("120 images: 120 done"), "{}", explain(&out));
    check_complete(&S3Store::new(&settings, &bucket, "out").await, &images, &stdout, false).await;

    let first: BTreeSet<String> = finished_keys(&log("stopping.log")).into_iter().collect();
    let second: BTreeSet<String> = finished_keys(&log("taking-over.log")).into_iter().collect();
    assert!(first.len() >= 10, "the stopped worker finished {} tasks", first.len());
    assert!(first.is_disjoint(&second), "redone after a clean stop: {:?}", first.intersection(&second).collect::<Vec<_>>());
    assert_eq!(first.len() + second.len(), 120);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_coordinator_killed_mid_job_and_started_again_finishes_it_with_exact_counts() {
    let settings = s3_settings();
    let bucket = new_bucket("coordinator");
    let prefix = format!("lamina-coord-{}", std::process::id());
    let _queues = Queues(prefix.clone());
    let logs = tempfile::tempdir().unwrap();
    let log = |name: &str| logs.path().join(name);
    // A pool holds at most WINDOW tasks queued or in flight: what a dying coordinator can
    // leave behind for its successor to publish again.
    const WINDOW: usize = 16;
    let coordinator = |name: &str| {
        let http = format!("127.0.0.1:{}", free_port());
        spawn_with("lamina-coordinator", &prefix, &log(name), &[("LAMINA_HTTP_ADDR", &http), ("LAMINA_POOL_WINDOW", "16")])
    };
    let mut fleet = Fleet(vec![
        coordinator("coordinator-1.log"),
        // Prefetch capped at 4, so the pool's window stays at 16 (twice the fleet's prefetch).
        spawn_with("lamina-worker", &prefix, &log("worker-1.log"), &[("LAMINA_PREFETCH", "4")]),
        spawn_with("lamina-worker", &prefix, &log("worker-2.log"), &[("LAMINA_PREFETCH", "4")]),
    ]);
    let images = fleet_images(200, 48);
    upload(&S3Store::new(&settings, &bucket, "in").await, &images).await;

    let (src, dst, p) = (format!("s3://{bucket}/in"), format!("s3://{bucket}/out"), prefix.clone());
    let job = tokio::task::spawn_blocking(move || submit(&src, &dst, &p));
    let done = || finished_keys(&log("worker-1.log")).len() + finished_keys(&log("worker-2.log")).len();
    // Kill once the first chunk of results is recorded, so the restarted coordinator resumes
    // from recorded results as well as from manifests.
    let records = S3Store::new(&settings, &bucket, "out/_lamina/jobs").await;
    for _ in 0..600 {
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let (_, recorded) = tokio::join!(records.list("", tx), async {
            let mut found = false;
            while let Some(meta) = rx.recv().await {
                // On S3 results are recorded as parts until the job ends.
                found |= meta.is_ok_and(|m| m.key.contains("/results.parts/") && m.size > 0);
            }
            found
        });
        if recorded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(done() > 0 && !job.is_finished(), "the job should be under way");
    fleet.0[0].kill().unwrap(); // SIGKILL: the job message returns to the queue
    fleet.0[0].wait().unwrap();
    let at_kill = done();
    tokio::time::sleep(Duration::from_millis(500)).await;
    fleet.0[0] = coordinator("coordinator-2.log");

    let out = job.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let logs_text = || std::fs::read_to_string(log("coordinator-2.log")).unwrap_or_default();
    assert!(stdout.contains("200 images:") && stdout.contains(" 0 failed"), "{}\n{}", explain(&out), logs_text());
    let first_log = std::fs::read_to_string(log("coordinator-1.log")).unwrap_or_default();
    assert!(logs_text().contains("resuming job"), "{first_log}\n---\n{}", logs_text());
    check_complete(&S3Store::new(&settings, &bucket, "out").await, &images, &stdout, true).await;
    let processed = done();
    let twice = processed.saturating_sub(200);
    println!("coordinator killed after {at_kill} images: {processed} results published for 200 images ({twice} twice)");
    // The old coordinator's window, still queued, and the new one's first window: at most
    // two windows plus what the two workers hold (prefetch 4 each) are done twice.
    assert!(twice <= 2 * WINDOW + 8, "{twice} images processed twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_that_crashes_every_worker_is_dead_lettered_and_reported_failed_in_its_job() {
    let settings = s3_settings();
    let bucket = new_bucket("poison");
    let prefix = format!("lamina-poison-{}", std::process::id());
    let _queues = Queues(prefix.clone());
    let logs = tempfile::tempdir().unwrap();
    let log = |name: &str| logs.path().join(name);
    let http = format!("127.0.0.1:{}", free_port());
    // The failpoint makes a worker abort on this one key, as a decoder that crashes would.
    let crash = [("LAMINA_FAILPOINT_ABORT_ON_KEY", "poison-pill")];
    let mut fleet = Fleet(vec![
        spawn_with("lamina-coordinator", &prefix, &log("coordinator.log"), &[("LAMINA_HTTP_ADDR", &http)]),
        spawn_with("lamina-worker", &prefix, &log("worker-0.log"), &crash),
    ]);
    let mut images = fleet_images(20, 32);
    images.insert("generated/poison-pill.png".to_owned(), sample("coffee.png", 32));
    upload(&S3Store::new(&settings, &bucket, "in").await, &images).await;

    let (src, dst, p) = (format!("s3://{bucket}/in"), format!("s3://{bucket}/out"), prefix.clone());
    let job = tokio::task::spawn_blocking(move || submit(&src, &dst, &p));
    // A supervisor, as systemd or Kubernetes would be: a worker that dies is started again.
    let mut started = 1;
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    while !job.is_finished() {
        assert!(std::time::Instant::now() < deadline, "the job never finished");
        if let Ok(Some(_)) = fleet.0[1].try_wait() {
            fleet.0[1] = spawn_with("lamina-worker", &prefix, &log(&format!("worker-{started}.log")), &crash);
            started += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = job.await.unwrap();
    let all_logs = || {
        (0..started)
            .map(|i| format!("worker-{i}.log"))
            .chain(["coordinator.log".to_owned()])
            .map(|l| format!("--- {l}\n{}", std::fs::read_to_string(log(&l)).unwrap_or_default()))
            .collect::<String>()
    };
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("21 images: 20 done, 0 skipped (unchanged), 1 failed"), "{}\n{}", explain(&out), all_logs());
    let job_id = stdout.lines().next().unwrap().trim();
    let output = S3Store::new(&settings, &bucket, "out").await;
    let lines: Vec<TaskResult> = String::from_utf8(output.get(&format!("_lamina/jobs/{job_id}/results.jsonl")).await.unwrap())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 21);
    let poison = lines.iter().find(|r| r.key == "generated/poison-pill.png").expect("the crashing task has a result line");
    assert_eq!(poison.status, Status::Failed);
    let reason = poison.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("dead-lettered after 6 deliveries"), "{reason}");
    assert!(output.get_opt("generated/poison-pill.png/manifest.json").await.unwrap().is_none());
    // The worker died once per delivery, and the dead letter is kept for operators.
    assert!(started >= 6, "the worker crashed on each of the 6 deliveries ({started} started)");
    let metrics = http_get(&http, "/metrics", None);
    assert!(metrics.contains("lamina_coordinator_dead_letters_total{kind=\"task\"} 1"), "{metrics}");
    let list = Command::new(binary("lamina")).args(["dlq", "list"]).env("LAMINA_AMQP_PREFIX", &prefix).output().unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(listed.contains(job_id) && listed.contains("generated/poison-pill.png") && listed.contains("delivery limit"), "{}", explain(&list));
    println!("poison task: {started} worker processes started, result: {reason}");
}

//! Jobs sharing a pool, end to end (real coordinator, worker, RabbitMQ, Garage): a
//! high-priority job submitted behind a long low-priority one is served first, a job
//! cancelled mid-way stops, writes a summary that says so, and frees the pool; a job whose
//! model no live worker of the pool runs, or whose parameters its model refuses, is refused
//! once, at the coordinator, before any image is read.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use image::ImageFormat;
use lamina_common::store::S3Store;
use lamina_common::ObjectStore;
use lamina_tests::*;

fn submit_model(input: &str, output: &str, prefix: &str, priority: u8) -> Output {
    Command::new(binary("lamina"))
        .args(["submit", "--input", input, "--output", output, "--model", "capacity-test:300", "--priority", &priority.to_string(), "--wait"])
        .env("LAMINA_AMQP_PREFIX", prefix)
        .output()
        .unwrap()
}

fn job_state(http: &str, job_id: &str) -> serde_json::Value {
    http_json(http, &format!("/jobs/{job_id}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_high_priority_job_overtakes_a_long_one_and_a_cancelled_job_stops_with_its_summary() {
    let settings = s3_settings();
    let bucket = new_bucket("priority");
    let prefix = format!("lamina-sched-{}", std::process::id());
    let _queues = Queues(prefix.clone());
    let logs = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let _fleet = Fleet(vec![
        spawn_with("lamina-coordinator", &prefix, &logs.path().join("coordinator.log"), &[("LAMINA_HTTP_ADDR", &http), ("LAMINA_POOL_WINDOW", "4")]),
        spawn_with("lamina-worker", &prefix, &logs.path().join("worker.log"), &[("LAMINA_PREFETCH", "2"), ("LAMINA_MODEL", "capacity-test:300")]),
    ]);
    let show = || {
        read_logs(logs.path(), &["coordinator.log", "worker.log"])
    };
    let store = S3Store::new(&settings, &bucket, "").await;
    for (key, img) in fleet_images(60, 16) {
        store.put(&format!("long/{key}"), encode(&img, ImageFormat::Png)).await.unwrap();
    }
    for (key, img) in fleet_images(8, 16) {
        store.put(&format!("urgent/{key}"), encode(&img, ImageFormat::Png)).await.unwrap();
    }

    // The long job, priority 0, first.
    let (b, p) = (bucket.clone(), prefix.clone());
    let long = std::thread::spawn(move || submit_model(&format!("s3://{b}/long"), &format!("s3://{b}/out-long"), &p, 0));
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_json(&http, "/jobs").as_array().and_then(|j| j.first()).map_or(0, |j| j["done"].as_u64().unwrap_or(0)) < 3 {
        assert!(Instant::now() < deadline, "the long job did not start\n{}", show());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The urgent job, priority 9, behind it on the same pool.
    let (b, p) = (bucket.clone(), prefix.clone());
    let urgent = tokio::task::spawn_blocking(move || submit_model(&format!("s3://{b}/urgent"), &format!("s3://{b}/out-urgent"), &p, 9));
    let urgent = urgent.await.unwrap();
    assert!(String::from_utf8_lossy(&urgent.stdout).contains("8 images: 8 done"), "{}\n{}", explain(&urgent), show());
    let jobs = http_json(&http, "/jobs");
    let long_view = jobs.as_array().unwrap().iter().find(|j| j["input"].as_str().unwrap().ends_with("/long")).unwrap().clone();
    let long_done = long_view["done"].as_u64().unwrap();
    assert_eq!(long_view["state"], "running", "{long_view}");
    // Behind a FIFO queue the urgent job would wait for all 60; it waited for about one window.
    assert!(long_done < 30, "the long job did {long_done} images before the urgent one finished\n{}", show());
    println!("the urgent job finished after the long one had done {long_done} of 60");

    // Cancel the long job: it stops, its summary says so, and the pool is free again.
    let long_id = long_view["job_id"].as_str().unwrap().to_owned();
    let cancel = Command::new(binary("lamina")).args(["cancel", &long_id, "--coordinator", &format!("http://{http}")]).output().unwrap();
    assert!(String::from_utf8_lossy(&cancel.stdout).contains("cancelling"), "{}", explain(&cancel));
    let long = tokio::task::spawn_blocking(move || long.join().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&long.stdout);
    assert_eq!(long.status.code(), Some(1), "{}", explain(&long));
    assert!(stdout.contains("cancelled after"), "{}", explain(&long));
    let summary: serde_json::Value =
        serde_json::from_slice(&store.get(&format!("out-long/_lamina/jobs/{long_id}/summary.json")).await.unwrap()).unwrap();
    assert_eq!(summary["cancelled"], true, "{summary}");
    assert!(summary["images"].as_u64().unwrap() < 60, "{summary}");
    assert_eq!(job_state(&http, &long_id)["state"], "cancelled");
    let again = Command::new(binary("lamina")).args(["cancel", &long_id, "--coordinator", &format!("http://{http}")]).output().unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("cancelled"), "{}", explain(&again));
    let metrics = http_get(&http, "/metrics", None);
    assert!(metrics.contains("lamina_coordinator_jobs_finished_total{outcome=\"cancelled\"} 1"), "{metrics}");

    // A job naming a model that no live worker of the pool runs: refused with its reason.
    let refused = |model: &str, extra: &[&str], out: &str| {
        Command::new(binary("lamina"))
            .args(["submit", "--input", &format!("s3://{bucket}/urgent"), "--output", &format!("s3://{bucket}/{out}"), "--model", model])
            .args(extra)
            .arg("--wait")
            .env("LAMINA_AMQP_PREFIX", &prefix)
            .output()
            .unwrap()
    };
    let wrong = refused("fscs", &[], "out-wrong");
    let stdout = String::from_utf8_lossy(&wrong.stdout);
    assert_eq!(wrong.status.code(), Some(1), "{}", explain(&wrong));
    assert!(stdout.contains("job refused: no live worker of pool default runs model fscs"), "{}", explain(&wrong));
    let wrong_id = stdout.lines().next().unwrap().trim().to_owned();
    assert_eq!(job_state(&http, &wrong_id)["state"], "failed");
    // Parameters the model refuses: one clear reason, no image read.
    let bad = refused("capacity-test:300", &["--palette", "1,2,3"], "out-bad");
    assert_eq!(bad.status.code(), Some(1), "{}", explain(&bad));
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert!(stdout.contains("refuses the job's parameters: this model takes no palette"), "{}", explain(&bad));
    let bad_id = stdout.lines().next().unwrap().trim();
    let summary: serde_json::Value =
        serde_json::from_slice(&store.get(&format!("out-bad/_lamina/jobs/{bad_id}/summary.json")).await.unwrap()).unwrap();
    assert_eq!((summary["images"].as_u64(), summary["done"].as_u64()), (Some(0), Some(0)), "{summary}");
    let metrics = http_get(&http, "/metrics", None);
    assert!(metrics.contains("lamina_coordinator_jobs_finished_total{outcome=\"failed\"} 2"), "{metrics}");
}

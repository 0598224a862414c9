//! Outages of the services Lamina depends on, injected into the real system: a RabbitMQ
//! node stopped and started again mid-job, and the S3 server down for 20 seconds mid-job.
//! Each test runs its own broker or S3 server (same software as the shared ones, ports of
//! its own), so taking it down touches nothing else. Slow tests: about a minute each.

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use image::ImageFormat;
use lamina_common::manifest::Manifest;
use lamina_common::messages::{Status, TaskResult};
use lamina_common::store::S3Store;
use lamina_common::ObjectStore;
use lamina_tests::*;

/// `lamina submit --wait` with extra settings (which broker, which S3 server).
fn submit_with(input: &str, output: &str, prefix: &str, env: &[(&str, &str)]) -> Output {
    Command::new(binary("lamina"))
        .args(["submit", "--input", input, "--output", output, "--wait"])
        .env("LAMINA_AMQP_PREFIX", prefix)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Waits until the coordinator reports at least `n` images finished in its one job.
fn wait_for_progress(http: &str, n: u64, logs: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let jobs = http_json(http, "/jobs");
        let finished = jobs
            .as_array()
            .and_then(|j| j.first())
            .map_or(0, |j| ["done", "skipped", "failed"].iter().map(|k| j[k].as_u64().unwrap_or(0)).sum::<u64>());
        if finished >= n {
            return;
        }
        assert!(Instant::now() < deadline, "the job did not reach {n} images\n{}", logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Checks the job's records and outputs: one result line per image, none failed, every
/// manifest present with layers that decode and composite back to the input.
async fn check_outputs(output: &S3Store, originals: &std::collections::BTreeMap<String, image::DynamicImage>, job_id: &str) {
    let records = format!("_lamina/jobs/{job_id}");
    let text = String::from_utf8(output.get(&format!("{records}/results.jsonl")).await.unwrap()).unwrap();
    let results: Vec<TaskResult> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let keys: BTreeSet<&str> = results.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(results.len(), originals.len(), "one line per image");
    assert_eq!(keys, originals.keys().map(String::as_str).collect(), "every image, once");
    assert!(results.iter().all(|r| r.status != Status::Failed), "no failed image: {results:?}");
    let summary: serde_json::Value = serde_json::from_slice(&output.get(&format!("{records}/summary.json")).await.unwrap()).unwrap();
    assert_eq!(summary["images"].as_u64(), Some(originals.len() as u64));
    assert_eq!(summary["failed"].as_u64(), Some(0));
    let scratch = tempfile::tempdir().unwrap();
    for (key, original) in originals {
        let manifest: Manifest = serde_json::from_slice(&output.get(&format!("{key}/manifest.json")).await.unwrap()).unwrap();
        let dir = scratch.path().join(key);
        std::fs::create_dir_all(&dir).unwrap();
        for layer in &manifest.layers {
            std::fs::write(dir.join(layer.png()), output.get(&format!("{key}/{}", layer.png())).await.unwrap()).unwrap();
        }
        let psnr = recomposite_psnr(&dir, &manifest, original);
        if let (Some(claimed), Some(measured)) = (manifest.recomposite_psnr_db, psnr) {
            assert!((claimed - measured).abs() < 0.5, "{key}: manifest claims {claimed} dB, layers give {measured} dB");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restart_mid_job_is_survived_with_exact_counts() {
    let settings = s3_settings();
    let bucket = new_bucket("broker-restart");
    let mut broker = tokio::task::spawn_blocking(PrivateBroker::start).await.unwrap();
    let url = broker.url();
    let prefix = format!("lamina-test-{}-broker", std::process::id());
    let logs = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let log = |name: &str| logs.path().join(name);
    let _fleet = Fleet(vec![
        spawn_with("lamina-coordinator", &prefix, &log("coordinator.log"), &[("LAMINA_AMQP_URL", &url), ("LAMINA_HTTP_ADDR", &http)]),
        spawn_with("lamina-worker", &prefix, &log("worker-1.log"), &[("LAMINA_AMQP_URL", &url)]),
        spawn_with("lamina-worker", &prefix, &log("worker-2.log"), &[("LAMINA_AMQP_URL", &url)]),
    ]);
    let show = || {
        read_logs(logs.path(), &["coordinator.log", "worker-1.log", "worker-2.log"])
    };
    let input = S3Store::new(&settings, &bucket, "in").await;
    let originals = fleet_images(150, 24);
    for (key, img) in &originals {
        input.put(key, encode(img, ImageFormat::Png)).await.unwrap();
    }
    let (src, dst) = (format!("s3://{bucket}/in"), format!("s3://{bucket}/out"));
    let (p, u) = (prefix.clone(), url.clone());
    let submitted = std::thread::spawn(move || submit_with(&src, &dst, &p, &[("LAMINA_AMQP_URL", &u)]));

    let h = http.clone();
    tokio::task::block_in_place(|| wait_for_progress(&h, 30, &show));
    let restarted_at = Instant::now();
    tokio::task::block_in_place(|| broker.restart());
    eprintln!("broker restarted in {:.1}s", restarted_at.elapsed().as_secs_f64());

    let out = tokio::task::block_in_place(|| submitted.join().unwrap());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{}\n--- broker\n{}", explain(&out), show(), broker.log());
    assert!(stdout.contains("150 images:") && stdout.contains(", 0 failed"), "{}\n{}", explain(&out), show());
    let job_id = stdout.lines().next().unwrap().trim().to_owned();
    let output = S3Store::new(&settings, &bucket, "out").await;
    check_outputs(&output, &originals, &job_id).await;
    let all = show();
    assert!(all.contains("lost the broker"), "the processes saw the broker go:\n{all}");
    eprintln!("{}", stdout.lines().last().unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_store_down_for_20_seconds_mid_job_is_ridden_out_without_failed_images() {
    let mut garage = tokio::task::spawn_blocking(PrivateGarage::start).await.unwrap();
    let mut settings = s3_settings();
    settings.endpoint = Some(garage.endpoint());
    let bucket = garage.bucket.clone();
    let endpoint = garage.endpoint();
    let prefix = format!("lamina-test-{}-s3-outage", std::process::id());
    let _queues = Queues(prefix.clone());
    let logs = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let log = |name: &str| logs.path().join(name);
    let _fleet = Fleet(vec![
        spawn_with("lamina-coordinator", &prefix, &log("coordinator.log"), &[("LAMINA_S3_ENDPOINT", &endpoint), ("LAMINA_HTTP_ADDR", &http)]),
        spawn_with("lamina-worker", &prefix, &log("worker.log"), &[("LAMINA_S3_ENDPOINT", &endpoint), ("LAMINA_METRICS_ADDR", &metrics)]),
    ]);
    let show = || {
        read_logs(logs.path(), &["coordinator.log", "worker.log"])
    };
    let input = S3Store::new(&settings, &bucket, "in").await;
    let originals = fleet_images(80, 24);
    for (key, img) in &originals {
        input.put(key, encode(img, ImageFormat::Png)).await.unwrap();
    }
    let (src, dst) = (format!("s3://{bucket}/in"), format!("s3://{bucket}/out"));
    let (p, e) = (prefix.clone(), endpoint.clone());
    let submitted = std::thread::spawn(move || submit_with(&src, &dst, &p, &[("LAMINA_S3_ENDPOINT", &e)]));

    let h = http.clone();
    tokio::task::block_in_place(|| wait_for_progress(&h, 15, &show));
    garage.kill();
    eprintln!("S3 server down");
    tokio::time::sleep(Duration::from_secs(20)).await;
    tokio::task::block_in_place(|| garage.start_again());
    eprintln!("S3 server back");

    let out = tokio::task::block_in_place(|| submitted.join().unwrap());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{}\n--- garage\n{}", explain(&out), show(), garage.log());
    assert!(stdout.contains("80 images: 80 done, 0 skipped (unchanged), 0 failed"), "{}\n{}", explain(&out), show());
    let job_id = stdout.lines().next().unwrap().trim().to_owned();
    let output = S3Store::new(&settings, &bucket, "out").await;
    check_outputs(&output, &originals, &job_id).await;

    // The outage shows in the worker's metrics and logs, not as failed images.
    let scraped = http_get(&metrics, "/metrics", None);
    let retries: f64 = scraped
        .lines()
        .filter(|l| l.starts_with("lamina_worker_retries_total{") && !l.contains("cause=\"broker\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(retries > 0.0, "the worker counted its S3 retries:\n{scraped}\n{}", show());
    assert!(scraped.contains("lamina_worker_images_total{status=\"failed\"} 0"), "{scraped}");
    assert!(show().contains("retrying"), "the retries are logged:\n{}", show());
    eprintln!("S3 retries counted by the worker: {retries}");
}

#[tokio::test(flavor = "multi_thread")]
async fn services_reach_a_broker_over_amqps_by_configuration() {
    let settings = s3_settings();
    let bucket = new_bucket("amqps");
    let broker = tokio::task::spawn_blocking(PrivateBroker::start_tls).await.unwrap();
    let (url, ca) = (broker.url(), broker.ca_file().display().to_string());
    assert!(url.starts_with("amqps://"));
    let prefix = format!("lamina-test-{}-tls", std::process::id());
    let logs = tempfile::tempdir().unwrap();
    let log = |name: &str| logs.path().join(name);
    let tls = [("LAMINA_AMQP_URL", url.as_str()), ("LAMINA_AMQP_CA_FILE", ca.as_str())];
    let _fleet = Fleet(vec![spawn_service_with("lamina-coordinator", &prefix, &log("coordinator.log"), &tls), spawn_with("lamina-worker", &prefix, &log("worker.log"), &tls)]);
    let input = S3Store::new(&settings, &bucket, "in").await;
    let originals = fleet_images(10, 24);
    for (key, img) in &originals {
        input.put(key, encode(img, ImageFormat::Png)).await.unwrap();
    }
    let (src, dst, p) = (format!("s3://{bucket}/in"), format!("s3://{bucket}/out"), prefix.clone());
    let (u, c) = (url.clone(), ca.clone());
    let out = tokio::task::spawn_blocking(move || submit_with(&src, &dst, &p, &[("LAMINA_AMQP_URL", &u), ("LAMINA_AMQP_CA_FILE", &c)]))
        .await
        .unwrap();
    let logs_text = || std::fs::read_to_string(log("coordinator.log")).unwrap_or_default() + &std::fs::read_to_string(log("worker.log")).unwrap_or_default();
    assert!(String::from_utf8_lossy(&out.stdout).contains("10 images: 10 done"), "{}\n{}\n{}", explain(&out), logs_text(), broker.log());

    // Without the CA the broker's certificate is not trusted: no connection.
    let refused = Command::new(binary("lamina"))
        .args(["dlq", "list"])
        .env("LAMINA_AMQP_PREFIX", &prefix)
        .env("LAMINA_AMQP_URL", &url)
        .env_remove("LAMINA_AMQP_CA_FILE")
        .output()
        .unwrap();
    assert!(!refused.status.success(), "{}", explain(&refused));
}

/// A coordinator with a free HTTP port and extra settings.
fn spawn_service_with(bin: &str, prefix: &str, log: &std::path::Path, env: &[(&str, &str)]) -> std::process::Child {
    let http = format!("127.0.0.1:{}", free_port());
    let mut all = env.to_vec();
    all.push(("LAMINA_HTTP_ADDR", &http));
    spawn_with(bin, prefix, log, &all)
}

/// A TLS-terminating proxy (Python's asyncio and ssl, no packages) in front of the shared
/// Garage, so the S3 client talks https:// with a certificate a private CA signed.
const TLS_PROXY: &str = r#"
import asyncio, ssl, sys
listen, target = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except Exception:
        pass
    finally:
        w.close()
async def handle(cr, cw):
    sr, sw = await asyncio.open_connection("127.0.0.1", target)
    await asyncio.gather(pipe(cr, sw), pipe(sr, cw))
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen, ssl=ctx)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"#;

#[test]
fn s3_over_https_works_by_configuration_and_an_untrusted_certificate_is_refused() {
    let settings = s3_settings();
    let garage_port: u16 = settings.endpoint.as_deref().and_then(|e| e.rsplit(':').next()?.trim_end_matches('/').parse().ok()).expect("endpoint port");
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    std::fs::write(dir.path().join("proxy.py"), TLS_PROXY).unwrap();
    let port = free_port();
    let proxy = Command::new("python3")
        .arg(dir.path().join("proxy.py"))
        .args([port.to_string(), garage_port.to_string()])
        .arg(dir.path().join("server.pem"))
        .arg(dir.path().join("server.key"))
        .spawn()
        .unwrap();
    let _proxy = Fleet(vec![proxy]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the TLS proxy did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let input = dir.path().join("in");
    write(&input, "logo.png", &encode(&sample("logo.png", 48), ImageFormat::Png));
    let bucket = new_bucket("https");
    let run = |ca: Option<&std::path::Path>, out: &str| {
        let mut cmd = Command::new(binary("lamina"));
        cmd.args(["run", input.to_str().unwrap(), &format!("s3://{bucket}/{out}")])
            .env("LAMINA_DEVICE", "cpu")
            .env("LAMINA_PROGRESS", "none")
            .env("LAMINA_S3_ENDPOINT", format!("https://127.0.0.1:{port}"))
            .env_remove("SSL_CERT_FILE");
        if let Some(ca) = ca {
            // The S3 client trusts the system's roots plus SSL_CERT_FILE.
            cmd.env("SSL_CERT_FILE", ca);
        }
        cmd.output().unwrap()
    };
    let ok = run(Some(&dir.path().join("ca.pem")), "trusted");
    assert!(ok.status.success(), "{}", explain(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("1 images: 1 done"), "{}", explain(&ok));
    let refused = run(None, "untrusted");
    assert_eq!(refused.status.code(), Some(2), "{}", explain(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.lines().last().unwrap_or_default().contains("cannot reach S3"), "{}", explain(&refused));
}

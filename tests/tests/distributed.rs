//! The distributed mode end to end: the real `lamina-coordinator` and two real
//! `lamina-worker` processes, the real RabbitMQ and a real S3 server (Garage), a job of 200
//! images spread over nested prefixes. Every output is checked (manifests, layers decoded and
//! recomposited at the PSNR their manifest claims, one results line per image, summary
//! counts); a second submission processes nothing; a third worker, in a pool of its own,
//! runs the small object model for a job that names that pool and model; messages that are
//! not valid tasks or jobs end in the dead-letter queue.

use std::collections::BTreeSet;
use image::ImageFormat;
use lamina_common::amqp::{self, AmqpSettings};
use lamina_common::manifest::{LayerRole, Manifest};
use lamina_common::messages::{Status, TaskResult};
use lamina_common::store::S3Store;
use lamina_common::ObjectStore;
use lamina_tests::*;
use lapin::options::BasicGetOptions;
use std::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn a_coordinator_and_two_workers_decompose_200_images_from_s3_exactly_once() {
    let settings = s3_settings();
    let bucket = new_bucket("fleet");
    let prefix = format!("lamina-test-{}", std::process::id());
    let _queues = Queues(prefix.clone());
    let logs = tempfile::tempdir().unwrap();
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let token = "status-token-for-this-test";
    let _fleet = Fleet(vec![
        spawn_with(
            "lamina-coordinator",
            &prefix,
            &logs.path().join("coordinator.log"),
            &[("LAMINA_HTTP_ADDR", &http), ("LAMINA_HTTP_TOKEN", token)],
        ),
        spawn_service("lamina-worker", &prefix, &logs.path().join("worker-1.log")),
        // The second worker runs two inference lanes, batches of up to four from size
        // buckets, and measures its memory footprint at start-up (as on a GPU).
        spawn_with(
            "lamina-worker",
            &prefix,
            &logs.path().join("worker-2.log"),
            &[("LAMINA_LANES_PER_DEVICE", "2"), ("LAMINA_WARM_UP", "on"), ("LAMINA_BATCH_SIZE", "4")],
        ),
    ]);
    let input = S3Store::new(&settings, &bucket, "in").await;
    let originals = fleet_images(200, 24);
    for (key, img) in &originals {
        input.put(key, encode(img, ImageFormat::Png)).await.unwrap();
    }
    let show_logs = || {
        read_logs(logs.path(), &["coordinator.log", "worker-1.log", "worker-2.log", "worker-objects.log"])
    };

    let (src, dst) = (format!("s3://{bucket}/in"), format!("s3://{bucket}/out"));
    let p = prefix.clone();
    let (s, d) = (src.clone(), dst.clone());
    let first = tokio::task::spawn_blocking(move || submit(&s, &d, &p)).await.unwrap();
    assert!(first.status.success(), "{}\n{}", explain(&first), show_logs());
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains("200 images: 200 done, 0 skipped (unchanged), 0 failed"), "{}\n{}", explain(&first), show_logs());
    let job_id = stdout.lines().next().unwrap().trim().to_owned();
    let worker2 = std::fs::read_to_string(logs.path().join("worker-2.log")).unwrap();
    assert!(worker2.contains("calibrated") && worker2.contains("measured=true"), "the warm-up measured the footprint\n{}", show_logs());

    // Every image: a manifest, layers that decode and recomposite at the claimed PSNR.
    let output = S3Store::new(&settings, &bucket, "out").await;
    let scratch = tempfile::tempdir().unwrap();
    for (key, original) in &originals {
        let manifest: Manifest = serde_json::from_slice(&output.get(&format!("{key}/manifest.json")).await.unwrap()).unwrap();
        assert_eq!(manifest.job_id, job_id);
        let dir = scratch.path().join(key);
        std::fs::create_dir_all(&dir).unwrap();
        for layer in &manifest.layers {
            std::fs::write(dir.join(layer.png()), output.get(&format!("{key}/{}", layer.png())).await.unwrap()).unwrap();
        }
        let psnr = recomposite_psnr(&dir, &manifest, original).unwrap();
        let claimed = manifest.recomposite_psnr_db.unwrap();
        assert!((psnr - claimed).abs() < 0.05, "{key}: recomposite {psnr:.2} dB, manifest claims {claimed:.2}");
    }

    // The job's records: one line per image, each image once, counts that add up.
    let records = format!("_lamina/jobs/{job_id}");
    let results: Vec<TaskResult> = String::from_utf8(output.get(&format!("{records}/results.jsonl")).await.unwrap())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 200);
    let keys: BTreeSet<&str> = results.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, originals.keys().map(String::as_str).collect());
    assert!(results.iter().all(|r| r.status == Status::Done));
    let summary: serde_json::Value = serde_json::from_slice(&output.get(&format!("{records}/summary.json")).await.unwrap()).unwrap();
    assert_eq!((summary["images"].as_u64(), summary["done"].as_u64(), summary["failed"].as_u64()), (Some(200), Some(200), Some(0)));

    // Both workers took part.
    for log in ["worker-1.log", "worker-2.log"] {
        let text = std::fs::read_to_string(logs.path().join(log)).unwrap();
        assert!(text.contains("consuming"), "{log} never consumed\n{}", show_logs());
    }

    // The coordinator's view: the finished job, both workers, metrics; behind the token.
    let status = |with_token: bool| {
        let mut cmd = Command::new(binary("lamina"));
        cmd.args(["status", &job_id, "--coordinator", &format!("http://{http}")]);
        if with_token {
            cmd.env("LAMINA_HTTP_TOKEN", token);
        }
        cmd.output().unwrap()
    };
    let shown = status(true);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains(&format!("{job_id}  finished 200 done, 0 skipped, 0 failed of 200")), "{}", explain(&shown));
    assert!(text.contains("fleet: 2 worker(s)"), "{}", explain(&shown));
    let refused = status(false);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"), "{}", explain(&refused));
    let metrics = http_get(&http, "/metrics", Some(token));
    assert!(metrics.contains("lamina_coordinator_tasks_published_total{pool=\"default\"} 200"), "{metrics}");
    assert!(metrics.contains("lamina_coordinator_results_total{status=\"done\"} 200"), "{metrics}");
    assert!(metrics.contains("lamina_coordinator_workers{pool=\"default\"} 2"), "{metrics}");
    assert!(http_get(&http, "/health", None).ends_with("ok\n"));

    // The same job again: every image is skipped by its manifest.
    let (p, s, d) = (prefix.clone(), src.clone(), dst.clone());
    let second = tokio::task::spawn_blocking(move || submit(&s, &d, &p)).await.unwrap();
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("200 images: 0 done, 200 skipped"),
        "{}\n{}",
        explain(&second),
        show_logs()
    );

    // One input changed: exactly that image is decomposed again.
    let changed = "photos/coffee.png.png";
    input.put(changed, encode(&sample("rocket.jpg", 40), ImageFormat::Png)).await.unwrap();
    let (p, s, d) = (prefix.clone(), src.clone(), dst.clone());
    let third = tokio::task::spawn_blocking(move || submit(&s, &d, &p)).await.unwrap();
    assert!(
        String::from_utf8_lossy(&third.stdout).contains("200 images: 1 done, 199 skipped"),
        "{}\n{}",
        explain(&third),
        show_logs()
    );
    let third_id = String::from_utf8_lossy(&third.stdout).lines().next().unwrap().trim().to_owned();
    let redone: Manifest = serde_json::from_slice(&output.get(&format!("{changed}/manifest.json")).await.unwrap()).unwrap();
    assert_eq!(redone.job_id, third_id, "the changed image's manifest comes from the third job");

    // Other formats for the same output: the fleet renders them from the stored layers (no
    // image is decomposed), and the manifests say which job rendered them.
    let (p, s, d) = (prefix.clone(), src.clone(), dst.clone());
    let rendered = tokio::task::spawn_blocking(move || submit_with(&s, &d, &p, &["--formats", "png,psd"])).await.unwrap();
    assert!(
        String::from_utf8_lossy(&rendered.stdout).contains("200 images: 0 done, 200 re-rendered from stored layers, 0 skipped"),
        "{}\n{}",
        explain(&rendered),
        show_logs()
    );
    let rendered_id = String::from_utf8_lossy(&rendered.stdout).lines().next().unwrap().trim().to_owned();
    let manifest: Manifest = serde_json::from_slice(&output.get(&format!("{changed}/manifest.json")).await.unwrap()).unwrap();
    assert_eq!((manifest.job_id.as_str(), manifest.rendered.as_ref().map(|r| r.job_id.as_str())), (third_id.as_str(), Some(rendered_id.as_str())));
    let psd = output.get(&format!("{changed}/layers.psd")).await.unwrap();
    assert_eq!(manifest.output("layers.psd").map(|o| o.bytes), Some(psd.len() as u64));

    // A fleet job asking for documents and an automatic layer count: the workers write a
    // PSD and an OpenRaster file per image that independent readers open with the right
    // layers, and record the count and why.
    let (p, s, d) = (prefix.clone(), format!("s3://{bucket}/in"), format!("s3://{bucket}/documents"));
    let documents = tokio::task::spawn_blocking(move || submit_with(&s, &d, &p, &["--formats", "png,psd,ora", "--layers", "auto"])).await.unwrap();
    assert!(String::from_utf8_lossy(&documents.stdout).contains("200 images: 200 done"), "{}\n{}", explain(&documents), show_logs());
    let written = S3Store::new(&settings, &bucket, "documents").await;
    let fetched = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    for key in originals.keys().take(5) {
        let manifest: Manifest = serde_json::from_slice(&written.get(&format!("{key}/manifest.json")).await.unwrap()).unwrap();
        assert!(manifest.files.iter().any(|f| f == "layers.psd") && manifest.files.iter().any(|f| f == "layers.ora"), "{key}: {:?}", manifest.files);
        assert!(manifest.layer_count.as_ref().is_some_and(|c| c.why.contains("--layers auto")), "{key}");
        let dir = fetched.path().join(key);
        std::fs::create_dir_all(&dir).unwrap();
        for file in manifest.files.iter().chain(["manifest.json".to_owned()].iter()) {
            std::fs::write(dir.join(file), written.get(&format!("{key}/{file}")).await.unwrap()).unwrap();
        }
        dirs.push(dir);
    }
    let reports = check_documents(&dirs.iter().map(|d| d.as_path()).collect::<Vec<_>>(), false);
    assert_eq!(reports.len(), 5);

    // Object layers in the fleet: a worker of its own pool runs the small object model and
    // takes a job that names that pool and model (the job waits for it to come up); every
    // photo comes back as a background and objects that recomposite to it.
    let _objects_worker = Fleet(vec![spawn_with(
        "lamina-worker",
        &prefix,
        &logs.path().join("worker-objects.log"),
        &[("LAMINA_POOL", "objects"), ("LAMINA_MODEL", "objects-small")],
    )]);
    let objects_in = S3Store::new(&settings, &bucket, "objects-in").await;
    let photos: Vec<(String, image::DynamicImage)> = ["chelsea.png", "rocket.jpg", "coffee.png"].iter().map(|p| (format!("{p}.png"), sample(p, 160))).collect();
    for (key, img) in &photos {
        objects_in.put(key, encode(img, ImageFormat::Png)).await.unwrap();
    }
    let (p, s, d) = (prefix.clone(), format!("s3://{bucket}/objects-in"), format!("s3://{bucket}/objects-out"));
    let objects = tokio::task::spawn_blocking(move || submit_with(&s, &d, &p, &["--pool", "objects", "--model", "objects-small", "--formats", "png,psd"])).await.unwrap();
    assert!(String::from_utf8_lossy(&objects.stdout).contains("3 images: 3 done"), "{}\n{}", explain(&objects), show_logs());
    let objects_out = S3Store::new(&settings, &bucket, "objects-out").await;
    let fetched = tempfile::tempdir().unwrap();
    for (key, original) in &photos {
        let manifest: Manifest = serde_json::from_slice(&objects_out.get(&format!("{key}/manifest.json")).await.unwrap()).unwrap();
        assert_eq!(manifest.model.id, "objects-u2netp@1");
        assert_eq!(manifest.model.precision.as_deref(), Some("fp32"), "{key}: auto is fp32 on a CPU");
        assert_eq!(manifest.layers[0].role, Some(LayerRole::Background), "{key}");
        assert!(manifest.layers.len() >= 2 && manifest.layers[1..].iter().all(|l| l.role == Some(LayerRole::Object)), "{key}");
        let dir = fetched.path().join(key);
        std::fs::create_dir_all(&dir).unwrap();
        for file in &manifest.files {
            std::fs::write(dir.join(file), objects_out.get(&format!("{key}/{file}")).await.unwrap()).unwrap();
        }
        let psnr = recomposite_psnr(&dir, &manifest, original).unwrap_or(f64::INFINITY);
        assert!(psnr >= 35.0, "{key}: recomposite {psnr:.2} dB");
    }

    // Fast mode in the fleet: a 2 MP photo (over fast mode's 1 MP) with `--quality fast`: the
    // networks see it reduced, the layers come back at full size, the manifest says so.
    let fast_in = S3Store::new(&settings, &bucket, "fast-in").await;
    let retina = image::open(repo_root().join("assets/samples/retina.jpg")).unwrap();
    assert!(u64::from(retina.width()) * u64::from(retina.height()) > 1_000_000);
    fast_in.put("retina.png", encode(&retina, ImageFormat::Png)).await.unwrap();
    let (p, s, d) = (prefix.clone(), format!("s3://{bucket}/fast-in"), format!("s3://{bucket}/fast-out"));
    let fast = tokio::task::spawn_blocking(move || submit_with(&s, &d, &p, &["--quality", "fast"])).await.unwrap();
    assert!(String::from_utf8_lossy(&fast.stdout).contains("1 images: 1 done"), "{}\n{}", explain(&fast), show_logs());
    let fast_out = S3Store::new(&settings, &bucket, "fast-out").await;
    let manifest: Manifest = serde_json::from_slice(&fast_out.get("retina.png/manifest.json").await.unwrap()).unwrap();
    assert_eq!(manifest.params.quality, lamina_common::params::Quality::Fast);
    assert_eq!((manifest.canvas.width, manifest.canvas.height), (retina.width(), retina.height()));
    // With `auto` precision fast mode runs the networks in bf16 where the CPU has bf16
    // instructions (the workers here run on this CPU).
    let bf16_cpu = std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|i| i.contains(" amx_bf16") || i.contains(" avx512_bf16"));
    assert_eq!(manifest.model.precision.as_deref(), Some(if bf16_cpu { "bf16" } else { "fp32" }), "fast mode's precision");
    let dir = fetched.path().join("fast");
    std::fs::create_dir_all(&dir).unwrap();
    for file in &manifest.files {
        std::fs::write(dir.join(file), fast_out.get(&format!("retina.png/{file}")).await.unwrap()).unwrap();
    }
    let psnr = recomposite_psnr(&dir, &manifest, &retina).unwrap_or(f64::INFINITY);
    assert!(psnr >= 40.0, "fast mode: recomposite {psnr:.2} dB");

    // Messages that are not valid tasks or jobs are dead-lettered, not retried.
    let amqp_settings = AmqpSettings::new(std::env::var("LAMINA_AMQP_URL").unwrap(), prefix.clone());
    let connection = amqp::connect(&amqp_settings, "test").await.unwrap();
    let channel = amqp::confirming(&connection).await.unwrap();
    for (queue, body) in [
        (amqp_settings.tasks("default"), serde_json::json!({"schema": "lamina.task/1", "surprise": true})),
        (amqp_settings.tasks("default"), serde_json::json!({"schema": "lamina.task/99"})),
        (amqp_settings.jobs(), serde_json::json!("not a job")),
        // Over the 64 KiB cap.
        (amqp_settings.tasks("default"), serde_json::json!({"schema": "lamina.task/1", "padding": "x".repeat(70 * 1024)})),
    ] {
        amqp::publish(&channel, &queue, &body, 0).await.unwrap();
    }
    let mut dead = 0;
    for _ in 0..100 {
        if let Some(message) = channel.basic_get(amqp_settings.dead().as_str(), BasicGetOptions { no_ack: true }).await.unwrap() {
            assert!(serde_json::from_slice::<serde_json::Value>(&message.delivery.data).is_ok());
            dead += 1;
            if dead == 4 {
                break;
            }
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    assert_eq!(dead, 4, "the dead-letter queue should hold the four bad messages\n{}", show_logs());

    // Credentials appear in nothing the services logged, nor in the job's records or a manifest.
    let secret = std::env::var("LAMINA_S3_SECRET_ACCESS_KEY").unwrap();
    assert!(!show_logs().contains(&secret), "a log holds the S3 secret");
    for key in [format!("_lamina/jobs/{job_id}/results.jsonl"), format!("_lamina/jobs/{job_id}/summary.json"), format!("_lamina/jobs/{job_id}/spec.json"), "photos/coffee.png.png/manifest.json".to_owned()] {
        let text = String::from_utf8_lossy(&output.get(&key).await.unwrap()).into_owned();
        assert!(!text.contains(&secret), "{key} holds the S3 secret");
    }
}

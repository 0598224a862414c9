//! `lamina run s3://... s3://...` against a real S3 server (Garage): images are read from one
//! prefix and layers, manifests and job records written under another, in the same bucket
//! (the output prefix inside the input prefix is not decomposed again); a second run skips
//! everything by the listing's ETags; the credentials appear in nothing the run wrote.

use std::collections::BTreeMap;

use image::ImageFormat;
use lamina_common::manifest::Manifest;
use lamina_common::messages::{Status, TaskResult};
use lamina_common::store::S3Store;
use lamina_common::ObjectStore;
use lamina_tests::*;
use tokio::sync::mpsc;

async fn keys(store: &S3Store) -> Vec<String> {
    let (tx, mut rx) = mpsc::channel(16);
    let (_, keys) = tokio::join!(store.list("", tx), async {
        let mut keys = vec![];
        while let Some(meta) = rx.recv().await {
            keys.push(meta.unwrap().key);
        }
        keys
    });
    keys
}

#[tokio::test(flavor = "multi_thread")]
async fn decomposes_from_s3_to_s3_and_skips_everything_the_second_time() {
    let settings = s3_settings();
    let bucket = new_bucket("run");
    let input = S3Store::new(&settings, &bucket, "photos").await;
    let mut originals = BTreeMap::new();
    for (key, name, side) in [("a/coffee.png", "coffee.png", 72), ("a/b/chelsea.png", "chelsea.png", 64), ("rocket.png", "rocket.jpg", 60)] {
        let img = sample(name, side);
        input.put(key, encode(&img, ImageFormat::Png)).await.unwrap();
        originals.insert(key.to_owned(), img);
    }
    input.put("broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg".to_vec()).await.unwrap();

    let (src, dst) = (format!("s3://{bucket}/photos/"), format!("s3://{bucket}/photos/layers/"));
    let run = tokio::task::spawn_blocking(move || (lamina(&["run", &src, &dst]), lamina(&["run", &src, &dst])));
    let (first, second) = run.await.unwrap();
    assert_eq!(first.status.code(), Some(1), "one broken image: exit 1\n{}", explain(&first));
    assert!(String::from_utf8_lossy(&first.stdout).contains("4 images: 3 done, 0 skipped"), "{}", explain(&first));
    assert!(String::from_utf8_lossy(&second.stdout).contains("4 images: 0 done, 3 skipped"), "{}", explain(&second));

    let output = S3Store::new(&settings, &bucket, "photos/layers").await;
    let tmp = tempfile::tempdir().unwrap();
    for (key, original) in &originals {
        let manifest: Manifest = serde_json::from_slice(&output.get(&format!("{key}/manifest.json")).await.unwrap()).unwrap();
        assert_eq!(manifest.input.etag.len(), 32, "{key}: the manifest records the S3 ETag");
        // Download the layers and recomposite them exactly as a user would.
        let dir = tmp.path().join(key);
        std::fs::create_dir_all(&dir).unwrap();
        for layer in &manifest.layers {
            let bytes = output.get(&format!("{key}/{}", layer.png())).await.unwrap();
            std::fs::write(dir.join(layer.png()), bytes).unwrap();
        }
        let psnr = recomposite_psnr(&dir, &manifest, original).unwrap();
        assert!((psnr - manifest.recomposite_psnr_db.unwrap()).abs() < 0.05 && psnr > 24.0, "{key}: {psnr:.2} dB");
    }
    assert!(output.get_opt("broken.jpg/manifest.json").await.unwrap().is_none());

    // Both jobs' records are there; the second job's results say "skipped" three times.
    let all = keys(&output).await;
    let results: Vec<&String> = all.iter().filter(|k| k.ends_with("/results.jsonl")).collect();
    assert_eq!(results.len(), 2, "{all:#?}");
    let mut skipped_runs = 0;
    for key in results {
        let lines: Vec<TaskResult> = String::from_utf8(output.get(key).await.unwrap())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4, "one line per image: {lines:#?}");
        if lines.iter().filter(|r| r.status == Status::Skipped).count() == 3 {
            skipped_runs += 1;
        }
        assert_eq!(lines.iter().filter(|r| r.status == Status::Failed).count(), 1);
    }
    assert_eq!(skipped_runs, 1);

    // No layer of a layer: the output prefix inside the input prefix was not listed.
    assert!(all.iter().all(|k| !k.contains("layer-00.png/")), "{all:#?}");

    // The secret is in nothing the runs printed or wrote.
    let secret = std::env::var("LAMINA_S3_SECRET_ACCESS_KEY").unwrap();
    for out in [&first, &second] {
        assert!(!String::from_utf8_lossy(&out.stdout).contains(&secret) && !String::from_utf8_lossy(&out.stderr).contains(&secret));
    }
    for key in all.iter().filter(|k| k.ends_with(".json") || k.ends_with(".jsonl")) {
        assert!(!String::from_utf8_lossy(&output.get(key).await.unwrap()).contains(&secret), "{key} holds the secret");
    }
}

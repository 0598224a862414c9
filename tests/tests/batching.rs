//! Batching never changes an image's result. One worker with batch size 4 serves two jobs
//! over the same images at once (real coordinator, worker and RabbitMQ), one asking for 3
//! layers and one for 5, both with a fixed palette: every manifest records its own job's
//! parameters, its layers come from them (the same sources and the same pixels as a
//! batch-size-1 `lamina run` of that job, whose two inference lanes took the images in
//! turn), and the worker really formed batches of several images while the two jobs' tasks
//! were interleaved on its queue. The networks in bf16 give layers close to fp32's, and
//! the manifests say which precision ran.

use std::path::Path;
use std::process::{Command, Output};

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use lamina_tests::*;

const PALETTE: &str = "20,20,20;235,235,235;200,40,40;40,160,60;40,60,200;220,200,60;140,90,50";
const SIDE: u32 = 40;

fn submit_layers(input: &Path, output: &Path, prefix: &str, layers: u8) -> Output {
    Command::new(binary("lamina"))
        .args(["submit", "--input", &input.display().to_string(), "--output", &output.display().to_string()])
        .args(["--layers", &layers.to_string(), "--palette", PALETTE, "--wait"])
        .env("LAMINA_AMQP_PREFIX", prefix)
        .output()
        .unwrap()
}

/// Twelve images of one padded size: the bundled photos squeezed, and gradients.
fn inputs(dir: &Path) -> Vec<String> {
    let mut keys = Vec::new();
    for name in ["astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "rocket.jpg", "retina.jpg"] {
        let img = sample(name, 64).resize_exact(SIDE, SIDE, image::imageops::FilterType::Triangle);
        keys.push(format!("{name}.png"));
        write(dir, &format!("{name}.png"), &encode(&img, ImageFormat::Png));
    }
    for i in 0..6u32 {
        let img = RgbImage::from_fn(SIDE, SIDE, |x, y| Rgb([(x * 6 + i * 30) as u8, (y * 5 + i * 17) as u8, ((x + y) * 3 + i * 40) as u8]));
        keys.push(format!("gradient-{i}.png"));
        write(dir, &format!("gradient-{i}.png"), &encode(&DynamicImage::ImageRgb8(img), ImageFormat::Png));
    }
    keys
}

/// The batch sizes the worker logged (`batch images=N ...`, a debug line of its inference
/// stage).
fn batch_sizes(log: &str) -> Vec<usize> {
    log.lines()
        .filter(|l| l.contains(" batch images="))
        .filter_map(|l| l.split("images=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn two_jobs_sharing_batches_each_get_their_own_parameters_and_the_unbatched_result() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let keys = inputs(&input);
    let prefix = format!("lamina-batching-{}", std::process::id());
    let _queues = Queues(prefix.clone());
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let _fleet = Fleet(vec![
        spawn_service("lamina-coordinator", &prefix, &logs.join("coordinator.log")),
        spawn_with(
            "lamina-worker",
            &prefix,
            &logs.join("worker.log"),
            &[("LAMINA_BATCH_SIZE", "4"), ("LAMINA_PREFETCH", "16"), ("RUST_LOG", "info,lamina_worker::pipeline=debug")],
        ),
    ]);
    let show = || read_logs(&logs, &["coordinator.log", "worker.log"]);

    // Both jobs submitted together: the coordinator interleaves their tasks on the pool.
    let jobs: Vec<_> = [3u8, 5]
        .map(|n| {
            let (input, output, prefix) = (input.clone(), dir.path().join(format!("out-{n}")), prefix.clone());
            std::thread::spawn(move || submit_layers(&input, &output, &prefix, n))
        })
        .into_iter()
        .collect();
    for job in jobs {
        let out = job.join().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("12 images: 12 done"), "{}\n{}", explain(&out), show());
    }
    let sizes = batch_sizes(&std::fs::read_to_string(logs.join("worker.log")).unwrap());
    assert_eq!(sizes.iter().sum::<usize>(), 24, "every image went through one logged batch: {sizes:?}\n{}", show());
    assert!(sizes.iter().any(|&n| n > 1), "the worker never batched: {sizes:?}");
    println!("batch sizes of the shared worker: {sizes:?}");

    for n in [3u8, 5] {
        let (fleet_out, single_out) = (dir.path().join(format!("out-{n}")), dir.path().join(format!("single-{n}")));
        let single = lamina(&[
            "run",
            &input.display().to_string(),
            &single_out.display().to_string(),
            "--layers",
            &n.to_string(),
            "--palette",
            PALETTE,
            "--batch-size",
            "1",
            // Two inference lanes take the images in turn: still the same bytes.
            "--lanes-per-device",
            "2",
        ]);
        assert!(single.status.success(), "{}", explain(&single));
        for key in &keys {
            let shared = manifest(&fleet_out, key).unwrap_or_else(|| panic!("{key}: no manifest for the {n}-layer job"));
            let alone = manifest(&single_out, key).unwrap();
            assert_eq!(shared.params.layer_target(), Some(n), "{key}");
            assert!(shared.layers.len() <= usize::from(n), "{key}: {} layers for --layers {n}", shared.layers.len());
            let sources = |m: &lamina_common::manifest::Manifest| m.layers.iter().map(|l| l.sources.clone()).collect::<Vec<_>>();
            assert_eq!(sources(&shared), sources(&alone), "{key}, --layers {n}: merged layers differ from a batch-size-1 run");
            for (a, b) in shared.layers.iter().zip(&alone.layers) {
                let a = image::open(fleet_out.join(key).join(a.png())).unwrap().to_rgba8();
                let b = image::open(single_out.join(key).join(b.png())).unwrap().to_rgba8();
                let differ = a.as_raw().iter().zip(b.as_raw()).filter(|(x, y)| x != y).count();
                let worst = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0);
                // Bitwise on the CPU, whatever shared the image's batch.
                assert_eq!(worst, 0, "{key}, --layers {n}: {differ} layer bytes differ from a batch-size-1 run, by up to {worst}/255");
            }
        }
    }
}

#[test]
fn reduced_precision_is_recorded_and_stays_close_to_fp32() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    for name in ["astronaut.png", "chelsea.png", "coffee.png"] {
        write(&input, &format!("{name}.png"), &encode(&sample(name, 96), ImageFormat::Png));
    }
    let run = |precision: &str| {
        let out = dir.path().join(precision);
        let run = lamina(&["run", &input.display().to_string(), &out.display().to_string(), "--precision", precision, "--palette", PALETTE]);
        assert!(run.status.success(), "{}", explain(&run));
        out
    };
    let (fp32, bf16) = (run("fp32"), run("bf16"));
    for name in ["astronaut.png", "chelsea.png", "coffee.png"] {
        let key = format!("{name}.png");
        let (a, b) = (manifest(&fp32, &key).unwrap(), manifest(&bf16, &key).unwrap());
        assert_eq!(a.model.precision.as_deref(), Some("fp32"));
        assert_eq!(b.model.precision.as_deref(), Some("bf16"), "{key}: the manifest says which precision ran");
        assert_eq!(a.layers.len(), b.layers.len(), "{key}");
        let (mut sum, mut n) = (0u64, 0usize);
        for (la, lb) in a.layers.iter().zip(&b.layers) {
            let x = image::open(fp32.join(&key).join(la.png())).unwrap().to_rgba8();
            let y = image::open(bf16.join(&key).join(lb.png())).unwrap().to_rgba8();
            sum += x.as_raw().iter().zip(y.as_raw()).map(|(p, q)| u64::from(p.abs_diff(*q))).sum::<u64>();
            n += x.as_raw().len();
        }
        let mean = sum as f64 / n as f64 / 255.0;
        println!("{key}: bf16 layers' mean |diff| from fp32 {mean:.5}");
        assert!(mean < 2.0 / 255.0, "{key}: {mean}");
        let psnr = |m: &lamina_common::manifest::Manifest| m.recomposite_psnr_db.unwrap_or(f64::INFINITY);
        println!("{key}: recomposite {:.2} dB in fp32, {:.2} dB in bf16", psnr(&a), psnr(&b));
        assert!((psnr(&a) - psnr(&b)).abs() < 0.5, "{key}: {:.2} vs {:.2} dB", psnr(&a), psnr(&b));
    }
}

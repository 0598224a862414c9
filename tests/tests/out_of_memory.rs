//! A worker never dies of running out of memory. `lamina run` is started with its address
//! space limited to 2 GiB more than a run of a small photo takes (libtorch's libraries are
//! most of that) and a memory budget far above it, so the model tries a 3 MP photo in one
//! forward pass (about 4.5 GB) and libtorch's allocator really fails part way: the inference
//! lane catches it, runs the photo again in tiles of a quarter of its estimated need, and
//! the photo comes out whole (layers that decode and recomposite to it) beside a small one.

use std::path::Path;
use std::process::{Command, Stdio};

use image::ImageFormat;
use lamina_tests::*;

#[test]
fn an_image_that_runs_the_device_out_of_memory_is_retried_in_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let big = sample("astronaut.png", 512).resize_exact(2000, 1500, image::imageops::FilterType::Triangle);
    write(&input, "big.png", &encode(&big, ImageFormat::Png));
    let small = sample("chelsea.png", 128);
    write(&input, "small.png", &encode(&small, ImageFormat::Png));
    let small_only = dir.path().join("small-only");
    write(&small_only, "small.png", &encode(&small, ImageFormat::Png));
    let baseline = peak_address_space(&small_only, &dir.path().join("baseline-out"));
    let limit = baseline + (2u64 << 30);
    println!("address space of a small run: {} MiB; limit {} MiB", baseline >> 20, limit >> 20);
    let out = dir.path().join("out");
    let run = Command::new("prlimit")
        .arg(format!("--as={limit}"))
        .arg(binary("lamina"))
        .args(["run", &input.display().to_string(), &out.display().to_string()])
        .args(["--device", "cpu", "--memory-budget", "64GiB", "--progress", "log"])
        .output()
        .expect("prlimit (util-linux) runs");
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{}", explain(&run));
    assert!(String::from_utf8_lossy(&run.stdout).contains("2 images: 2 done"), "{}", explain(&run));
    assert!(log.contains("out of device memory; running the image in tiles"), "the whole pass did not run out of memory:\n{log}");
    for (key, original) in [("big.png", &big), ("small.png", &small)] {
        let m = manifest(&out, key).unwrap();
        assert_eq!(m.canvas.width, original.width());
        let psnr = recomposite_psnr(&out.join(key), &m, original).unwrap_or(f64::INFINITY);
        println!("{key}: {} layers, recomposite {psnr:.2} dB", m.layers.len());
        assert!(psnr >= 25.0, "{key}: {psnr:.2} dB");
        let claimed = m.recomposite_psnr_db.unwrap_or(f64::INFINITY);
        assert!((psnr - claimed).abs() < 0.1 || psnr.is_infinite(), "{key}: {psnr:.2} dB decoded, {claimed:.2} claimed");
    }
}

/// The peak address space (`VmPeak`) of a `lamina run` over `input`, sampled while it runs.
fn peak_address_space(input: &Path, output: &Path) -> u64 {
    let mut child = Command::new(binary("lamina"))
        .args(["run", &input.display().to_string(), &output.display().to_string(), "--device", "cpu", "--progress", "none"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    while child.try_wait().unwrap().is_none() {
        if let Ok(text) = std::fs::read_to_string(&status) {
            if let Some(kib) = text.lines().find_map(|l| l.strip_prefix("VmPeak:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()) {
                peak = peak.max(kib * 1024);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(peak > 0, "could not read the run's address space");
    peak
}

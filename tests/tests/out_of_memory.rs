//! A worker never dies of running out of memory. `lamina run` is started with its address
//! space limited to 3 GiB and a memory budget far above it, so the model tries a 3 MP photo
//! in one forward pass and libtorch's allocator really fails part way: the inference lane
//! catches it, runs the photo again in tiles of a quarter of its estimated need, and the
//! photo comes out whole (layers that decode and recomposite to it) beside a small one.

use std::process::Command;

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
    let out = dir.path().join("out");
    let run = Command::new("prlimit")
        .arg(format!("--as={}", 3u64 << 30))
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

//! End-to-end tests of the object models through the real `lamina` binary: `objects-small`
//! decomposes real photos into a background and objects whose files decode, are named by
//! role in the manifest and the PSD, and recomposite to the photo; a photo over the memory
//! budget takes the banded path and still does; and a missing weight file stops the model
//! with one line naming the file and the command that fetches it.

use std::path::Path;

use image::ImageFormat;
use lamina_common::manifest::{LayerRole, Manifest};
use lamina_tests::*;

fn check_roles(out: &Path, key: &str) -> Manifest {
    let m = manifest(out, key).unwrap_or_else(|| panic!("{key}: no manifest"));
    assert_eq!(m.model.id, "objects-u2netp@1", "{key}");
    assert!(m.layers.len() >= 2, "{key}: {} layers", m.layers.len());
    assert_eq!(m.layers[0].role, Some(LayerRole::Background), "{key}");
    assert_eq!(m.layers[0].name, "00 background");
    assert!((m.layers[0].coverage - 1.0).abs() < 1e-6, "{key}: the background is not opaque");
    for layer in &m.layers[1..] {
        assert_eq!(layer.role, Some(LayerRole::Object), "{key}");
        assert!(layer.bbox.is_some() && layer.coverage > 0.0, "{key}");
    }
    assert!(m.layer_count.as_ref().is_some_and(|c| c.why.contains("objects")), "{key}: {:?}", m.layer_count);
    m
}

/// `lamina run IN OUT --model objects-small` with more options.
fn run_small(input: &Path, out: &Path, options: &[&str]) -> std::process::Output {
    let mut args = vec!["run", input.to_str().unwrap(), out.to_str().unwrap(), "--model", "objects-small", "--progress", "none"];
    args.extend_from_slice(options);
    lamina(&args)
}

#[test]
fn objects_small_decomposes_photos_into_a_background_and_objects() {
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let photos = [("chelsea.png", sample("chelsea.png", 240)), ("rocket.png", sample("rocket.jpg", 200))];
    for (key, img) in &photos {
        write(input.path(), key, &encode(img, ImageFormat::Png));
    }
    let run = run_small(input.path(), out.path(), &["--formats", "png,psd"]);
    assert!(run.status.success(), "{}", explain(&run));
    let mut dirs = Vec::new();
    for (key, img) in &photos {
        let m = check_roles(out.path(), key);
        let dir = out.path().join(key);
        let db = recomposite_psnr(&dir, &m, img).unwrap_or(f64::INFINITY);
        assert!(db >= 35.0, "{key}: recomposite {db:.2} dB");
        assert!(m.recomposite_psnr_db.is_some_and(|p| p >= 35.0), "{key}: {:?}", m.recomposite_psnr_db);
        dirs.push(dir);
    }
    // The PSD opens in psd-tools with every layer's pixels and its name as the manifest has
    // it ("00 background", "01 object", ...).
    let reports = check_documents(&dirs.iter().map(|d| d.as_path()).collect::<Vec<_>>(), false);
    assert_eq!(reports.len(), 2);
}

#[test]
fn a_photo_over_the_memory_budget_is_peeled_reduced_and_rebuilt_in_bands() {
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let img = sample("chelsea.png", 900);
    write(input.path(), "big.png", &encode(&img, ImageFormat::Png));
    // 64 MiB: far less than a whole-image pass over 900 x 600 pixels needs.
    let run = run_small(input.path(), out.path(), &["--memory-budget", "64MiB"]);
    assert!(run.status.success(), "{}", explain(&run));
    let m = check_roles(out.path(), "big.png");
    let db = recomposite_psnr(&out.path().join("big.png"), &m, &img).unwrap_or(f64::INFINITY);
    assert!(db >= 35.0, "recomposite {db:.2} dB");
}

#[test]
fn a_missing_weight_file_names_the_file_and_the_command_that_fetches_it() {
    let input = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    write(input.path(), "chelsea.png", &encode(&sample("chelsea.png", 64), ImageFormat::Png));
    let run = std::process::Command::new(binary("lamina"))
        .args(["run", input.path().to_str().unwrap(), out.path().to_str().unwrap(), "--model", "objects-small", "--progress", "none"])
        .env("LAMINA_MODELS", empty.path())
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    let line = stderr.lines().find(|l| l.contains("u2netp.onnx")).unwrap_or_else(|| panic!("{}", explain(&run)));
    assert!(line.contains(&empty.path().display().to_string()) && line.contains("ops/fetch-models.sh small"), "{line}");
    // An altered file is refused the same way.
    std::fs::write(empty.path().join("u2netp.onnx"), b"not the weights").unwrap();
    let run = std::process::Command::new(binary("lamina"))
        .args(["run", input.path().to_str().unwrap(), out.path().to_str().unwrap(), "--model", "objects-small", "--progress", "none"])
        .env("LAMINA_MODELS", empty.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && stderr.contains("sha256") && stderr.contains("ops/fetch-models.sh small"), "{}", explain(&run));
}

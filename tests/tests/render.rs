//! Decomposing and rendering are two steps, end to end through `lamina run`: a run that
//! changes only the output options (formats, cropping) renders them from the layers already
//! stored, without loading the model, and writes the documents a fresh run writes; the
//! manifest and the job's records say which images were re-rendered. A layer file that is
//! deleted or damaged makes its image decompose again, never a broken document.

use std::path::{Path, PathBuf};

use image::ImageFormat;
use lamina_common::manifest::Manifest;
use lamina_common::messages::Status;
use lamina_tests::*;

fn inputs(dir: &Path) {
    write(dir, "coffee.png", &encode(&sample("coffee.png", 96), ImageFormat::Png));
    // Real soft transparency, and (transparent left of column 20) layers smaller than the
    // canvas, so cropping has work to do.
    let mut logo = sample("logo.png", 64).to_rgba8();
    for (x, _, px) in logo.enumerate_pixels_mut() {
        if x < 20 {
            px[3] = 0;
        }
    }
    write(dir, "nested/logo.png", &encode(&image::DynamicImage::ImageRgba8(logo), ImageFormat::Png));
}

const KEYS: [&str; 2] = ["coffee.png", "nested/logo.png"];

fn run(input: &Path, out: &Path, options: &[&str]) -> String {
    let mut args = vec!["run", input.to_str().unwrap(), out.to_str().unwrap()];
    args.extend_from_slice(options);
    let run = lamina(&args);
    assert!(run.status.success(), "{}", explain(&run));
    format!("{}\n{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr))
}

/// The newest job's records folder (job ids are time-ordered).
fn last_job(out: &Path) -> PathBuf {
    let mut jobs: Vec<PathBuf> = std::fs::read_dir(out.join("_lamina/jobs")).unwrap().map(|e| e.unwrap().path()).collect();
    jobs.sort();
    jobs.pop().unwrap()
}

fn rgba(path: &Path) -> image::RgbaImage {
    image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgba8()
}

/// Every layer of `key` decodes to the same pixels under `a` and `b`.
fn same_layers(a: &Path, b: &Path, key: &str, m: &Manifest) {
    for layer in &m.layers {
        let (pa, pb) = (a.join(key).join(layer.png()), b.join(key).join(layer.png()));
        assert_eq!(rgba(&pa), rgba(&pb), "{key} {}", layer.png());
    }
}

#[test]
fn other_formats_render_from_the_stored_layers_without_the_model_and_equal_a_fresh_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, later, fresh) = (tmp.path().join("in"), tmp.path().join("later"), tmp.path().join("fresh"));
    inputs(&input);
    let first = run(&input, &later, &[]);
    assert!(first.contains("2 images: 2 done, 0 skipped"), "{first}");
    let decomposed: Vec<Manifest> = KEYS.iter().map(|k| manifest(&later, k).unwrap()).collect();

    let second = run(&input, &later, &["--formats", "png,psd,ora"]);
    assert!(second.contains("2 images: 0 done, 2 re-rendered from stored layers, 0 skipped (unchanged), 0 failed"), "{second}");
    assert!(!second.contains("model loaded"), "a rendering loaded the model:\n{second}");
    let job = last_job(&later);
    let job_id = job.file_name().unwrap().to_string_lossy().into_owned();
    let results = results(&job);
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r.status == Status::Rendered && r.layers.is_some()), "{results:?}");
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(job.join("summary.json")).unwrap()).unwrap();
    assert_eq!((summary["done"].as_u64(), summary["rendered"].as_u64()), (Some(0), Some(2)), "{summary}");

    let fresh_run = run(&input, &fresh, &["--formats", "png,psd,ora"]);
    assert!(fresh_run.contains("2 images: 2 done, 0 skipped"), "{fresh_run}");
    for (key, before) in KEYS.iter().zip(&decomposed) {
        let m = manifest(&later, key).unwrap();
        // The decomposition is the first job's; the rendering is recorded beside it.
        assert_eq!((&m.job_id, &m.created_at, &m.layers), (&before.job_id, &before.created_at, &before.layers));
        assert_eq!(m.rendered.as_ref().map(|r| r.job_id.as_str()), Some(job_id.as_str()));
        assert_eq!(m.render.as_ref().map(|r| r.formats.to_string()), Some("png,psd,ora".to_owned()));
        for file in ["layers.psd", "layers.ora"] {
            let (a, b) = (std::fs::read(later.join(key).join(file)).unwrap(), std::fs::read(fresh.join(key).join(file)).unwrap());
            assert!(a == b, "{key} {file}: the re-rendered document differs from a fresh run's");
            let recorded = m.output(file).unwrap();
            assert_eq!(recorded.bytes, a.len() as u64);
        }
        same_layers(&later, &fresh, key, &m);
    }
    let reports = check_documents(&[&later.join("coffee.png"), &later.join("nested/logo.png")], false);
    assert!(reports.iter().all(|r| r["psd"].is_object() && r["ora"].is_object()), "both documents read back: {reports:?}");

    let third = run(&input, &later, &["--formats", "png,psd,ora"]);
    assert!(third.contains("2 images: 0 done, 2 skipped (unchanged)"), "{third}");
}

#[test]
fn cropping_and_uncropping_render_from_the_stored_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out, whole) = (tmp.path().join("in"), tmp.path().join("out"), tmp.path().join("whole"));
    inputs(&input);
    let cropped = run(&input, &out, &["--crop-layers"]);
    assert!(cropped.contains("2 done, 0 skipped"), "{cropped}");
    run(&input, &whole, &[]);

    // Cropped -> whole: every layer file is the canvas again, pixel for pixel a fresh run's.
    let uncropped = run(&input, &out, &[]);
    assert!(uncropped.contains("0 done, 2 re-rendered from stored layers"), "{uncropped}");
    for key in KEYS {
        let m = manifest(&out, key).unwrap();
        for layer in &m.layers {
            let png = rgba(&out.join(key).join(layer.png()));
            assert_eq!(png.dimensions(), (m.canvas.width, m.canvas.height), "{key} {}", layer.png());
        }
        same_layers(&out, &whole, key, &m);
    }

    // Whole -> cropped: each file holds its bounding box.
    let again = run(&input, &out, &["--crop-layers", "--formats", "psd"]);
    assert!(again.contains("0 done, 2 re-rendered from stored layers"), "{again}");
    let m = manifest(&out, "nested/logo.png").unwrap();
    let mut smaller = 0;
    for layer in &m.layers {
        let bbox = layer.bbox.unwrap();
        let png = rgba(&out.join("nested/logo.png").join(layer.png()));
        assert_eq!(png.dimensions(), (bbox.width, bbox.height), "{}", layer.png());
        smaller += usize::from(bbox.width * bbox.height < m.canvas.width * m.canvas.height);
    }
    assert!(smaller > 0, "the logo has layers smaller than its canvas");
    let reports = check_documents(&[&out.join("nested/logo.png")], false);
    assert!(reports[0]["psd"].is_object(), "the cropped PSD read back: {reports:?}");
}

#[test]
fn a_deleted_or_damaged_layer_file_makes_its_image_decompose_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    inputs(&input);
    run(&input, &out, &[]);

    // Deleted: the planner sees it missing from the image's folder.
    std::fs::remove_file(out.join("coffee.png/layer-01.png")).unwrap();
    let deleted = run(&input, &out, &[]);
    assert!(deleted.contains("2 images: 1 done, 1 skipped"), "{deleted}");
    let m = manifest(&out, "coffee.png").unwrap();
    assert!(m.rendered.is_none());
    for layer in &m.layers {
        rgba(&out.join("coffee.png").join(layer.png()));
    }

    // Damaged in place (same size): the rendering finds its sha256 wrong and decomposes
    // instead; the other image renders.
    let path = out.join("nested/logo.png/layer-00.png");
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&path, &bytes).unwrap();
    let damaged = run(&input, &out, &["--formats", "png,ora"]);
    assert!(damaged.contains("2 images: 1 done, 1 re-rendered from stored layers, 0 skipped"), "{damaged}");
    let statuses: Vec<(String, Status)> = results(&last_job(&out)).into_iter().map(|r| (r.key, r.status)).collect();
    assert!(statuses.contains(&("nested/logo.png".to_owned(), Status::Done)), "{statuses:?}");
    assert!(statuses.contains(&("coffee.png".to_owned(), Status::Rendered)), "{statuses:?}");
    let m = manifest(&out, "nested/logo.png").unwrap();
    assert_eq!(m.output("layer-00.png").unwrap(), &lamina_common::manifest::OutputFile::of("layer-00.png", &std::fs::read(&path).unwrap()));
    check_documents(&[&out.join("coffee.png"), &out.join("nested/logo.png")], false);
}

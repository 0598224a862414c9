//! End-to-end tests of `lamina run IN OUT` (single-machine mode): the real binary, real
//! libtorch, real files. Every check opens what the run wrote: layers are decoded and
//! recomposited, records are counted, manifests compared.

use std::collections::BTreeMap;
use std::path::Path;

use image::{DynamicImage, ImageFormat};
use lamina_common::messages::{FailureKind, Status};
use lamina_tests::*;

/// The bundled logo at `side` pixels, fully transparent left of column `x`.
fn logo_transparent_left_of(side: u32, x: u32) -> DynamicImage {
    let mut logo = sample("logo.png", side).to_rgba8();
    for (col, _, px) in logo.enumerate_pixels_mut() {
        if col < x {
            px[3] = 0;
        }
    }
    DynamicImage::ImageRgba8(logo)
}

/// Builds an input folder with images of every supported kind, nested, plus bad files.
/// Returns the inputs that must succeed (with the image as the test decodes it) and the
/// ones that must fail (with a phrase their reason must contain).
fn mixed_input(dir: &Path) -> (BTreeMap<String, DynamicImage>, BTreeMap<String, &'static str>) {
    let coffee = sample("coffee.png", 96);
    let chelsea = sample("chelsea.png", 80);
    // Transparent on the left half: every layer must be transparent there too.
    let logo = logo_transparent_left_of(64, 32);
    let mut good = BTreeMap::new();
    let mut put = |key: &str, bytes: Vec<u8>, decoded: DynamicImage| {
        write(dir, key, &bytes);
        good.insert(key.to_owned(), decoded);
    };
    put("coffee.png", encode(&coffee, ImageFormat::Png), coffee.clone());
    put("cats/chelsea.jpg", encode(&chelsea, ImageFormat::Jpeg), image::load_from_memory(&encode(&chelsea, ImageFormat::Jpeg)).unwrap());
    put("cats/deeper/chelsea.webp", encode(&DynamicImage::ImageRgba8(chelsea.to_rgba8()), ImageFormat::WebP), DynamicImage::ImageRgba8(chelsea.to_rgba8()));
    put("logo-rgba.png", encode(&logo, ImageFormat::Png), logo.clone());
    let gray16 = DynamicImage::ImageLuma16(coffee.to_luma16());
    put("formats/gray16.png", encode(&gray16, ImageFormat::Png), gray16);
    let tiff = DynamicImage::ImageRgb16(coffee.to_rgb16());
    put("formats/photo.tiff", encode(&tiff, ImageFormat::Tiff), tiff);
    put("formats/photo.bmp", encode(&coffee, ImageFormat::Bmp), coffee.clone());
    let gif_bytes = encode(&DynamicImage::ImageRgba8(coffee.to_rgba8()), ImageFormat::Gif);
    put("formats/photo.gif", gif_bytes.clone(), image::load_from_memory(&gif_bytes).unwrap());
    let odd = coffee.crop_imm(0, 0, 37, 23);
    put("formats/odd-37x23.png", encode(&odd, ImageFormat::Png), odd);
    // The formats beyond the web's: each must be decoded, none left alone.
    for (key, format) in [
        ("more/photo.tga", ImageFormat::Tga),
        ("more/photo.qoi", ImageFormat::Qoi),
        ("more/photo.ppm", ImageFormat::Pnm),
    ] {
        put(key, encode(&coffee, format), coffee.clone());
    }
    // Icons hold RGBA images.
    let icon = DynamicImage::ImageRgba8(coffee.to_rgba8());
    put("more/photo.ico", encode(&icon, ImageFormat::Ico), icon);
    let farbfeld = DynamicImage::ImageRgba16(coffee.to_rgba16());
    put("more/photo.ff", encode(&farbfeld, ImageFormat::Farbfeld), farbfeld);
    // Linear light, as HDR and OpenEXR hold it: Lamina shows it with the sRGB curve, which
    // gives the photo back.
    let linear = DynamicImage::ImageRgb32F(image::Rgb32FImage::from_fn(coffee.width(), coffee.height(), |x, y| {
        let p = coffee.to_rgb8().get_pixel(x, y).0;
        image::Rgb(p.map(|v| {
            let c = f32::from(v) / 255.0;
            if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
        }))
    }));
    for (key, format) in [("more/photo.hdr", ImageFormat::Hdr), ("more/photo.exr", ImageFormat::OpenExr)] {
        let bytes = encode(&linear, format);
        // What the file holds (HDR rounds to its 8-bit mantissas), shown with the sRGB curve.
        let held = image::load_from_memory(&bytes).unwrap().to_rgb32f();
        let shown = image::Rgb32FImage::from_fn(held.width(), held.height(), |x, y| {
            image::Rgb(held.get_pixel(x, y).0.map(|v| {
                let v = v.clamp(0.0, 1.0);
                if v <= 0.003_130_8 { v * 12.92 } else { 1.055 * v.powf(1.0 / 2.4) - 0.055 }
            }))
        });
        put(key, bytes, DynamicImage::ImageRgb32F(shown));
    }
    let rotated = jpeg_with_orientation(&coffee, 6);
    put("exif-rotated.jpg", rotated.clone(), image::load_from_memory(&rotated).unwrap().rotate90());

    let mut bad = BTreeMap::new();
    let mut put_bad = |key: &str, bytes: Vec<u8>, why: &'static str| {
        write(dir, key, &bytes);
        bad.insert(key.to_owned(), why);
    };
    put_bad("bad/empty.png", Vec::new(), "empty file");
    put_bad("bad/random.jpg", (0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect(), "not a supported image");
    let jpeg = encode(&coffee, ImageFormat::Jpeg);
    put_bad("bad/truncated.jpg", jpeg[..jpeg.len() / 3].to_vec(), "corrupt or truncated jpeg");
    put_bad("bad/bomb.png", png_claiming(100_000, 100_000), "over the 64.0 MP limit");
    write(dir, "notes.txt", b"not an image, ignored");
    (good, bad)
}

#[test]
fn decomposes_a_folder_and_every_written_layer_set_rebuilds_its_input() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    let (good, bad) = mixed_input(&input);

    let run = lamina(&["run", input.to_str().unwrap(), out.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1), "a run with failed images exits 1\n{}", explain(&run));

    // One result line per image; the text file is not an image and is not counted.
    let job = job_dir(&out);
    let results = results(&job);
    assert_eq!(results.len(), good.len() + bad.len(), "{results:#?}");
    let by_key: BTreeMap<_, _> = results.iter().map(|r| (r.key.clone(), r)).collect();
    assert_eq!(by_key.len(), results.len(), "an image was reported twice");

    for (key, decoded) in &good {
        let r = by_key[key.as_str()];
        assert_eq!(r.status, Status::Done, "{key}: {r:?}");
        let m = manifest(&out, key).unwrap_or_else(|| panic!("{key}: no manifest"));
        assert_eq!(m.input.key, *key);
        assert_eq!(m.model.id, "fscs-k7@1");
        assert_eq!(m.layers.len(), r.layers.unwrap());
        assert!((2..=7).contains(&m.layers.len()), "{key}: {} layers", m.layers.len());
        let files: Vec<_> = std::fs::read_dir(out.join(key)).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(files.len(), m.layers.len() + 2, "{key}: layers + preview + manifest, found {files:?}");
        let psnr = recomposite_psnr(&out.join(key), &m, decoded);
        let claimed = m.recomposite_psnr_db;
        match (psnr, claimed) {
            (Some(p), Some(c)) => assert!((p - c).abs() < 0.05, "{key}: recomposite {p:.2} dB, manifest claims {c:.2}"),
            other => panic!("{key}: psnr {other:?}"),
        }
        assert!(psnr.unwrap() > 24.0, "{key}: recomposite only {psnr:?} dB");
        assert!(image::open(out.join(key).join("preview.png")).is_ok(), "{key}: preview does not decode");
    }
    let rotated = manifest(&out, "exif-rotated.jpg").unwrap();
    assert_eq!((rotated.canvas.width, rotated.canvas.height, rotated.input.orientation), (64, 96, 6));
    let logo = manifest(&out, "logo-rgba.png").unwrap();
    assert!(logo.input.has_alpha);
    for layer in &logo.layers {
        let bbox = layer.bbox.unwrap();
        assert!(bbox.x >= 32, "{}: visible pixels where the input is transparent", layer.png());
    }
    assert_eq!(manifest(&out, "formats/gray16.png").unwrap().input.color, "l16");

    let kinds = [
        ("bad/empty.png", FailureKind::NotAnImage),
        ("bad/random.jpg", FailureKind::Unsupported),
        ("bad/truncated.jpg", FailureKind::Truncated),
        ("bad/bomb.png", FailureKind::TooLarge),
    ];
    for (key, kind) in kinds {
        assert_eq!(by_key[key].kind, Some(kind), "{key}: {:?}", by_key[key]);
    }
    for (key, why) in &bad {
        let r = by_key[key.as_str()];
        assert_eq!(r.status, Status::Failed, "{key}: {r:?}");
        let reason = r.reason.as_deref().unwrap();
        assert!(reason.contains(why), "{key}: reason {reason:?} lacks {why:?}");
        assert!(!reason.contains('\n'), "{key}: reason spans lines");
        assert!(manifest(&out, key).is_none(), "{key}: failed image has a manifest");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(stderr.contains(key.as_str()), "{key} not reported on the console");
    }

    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(job.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["images"], (good.len() + bad.len()) as u64);
    assert_eq!(summary["done"], good.len() as u64);
    assert_eq!(summary["failed"], bad.len() as u64);
    assert_eq!(summary["skipped"], 0);
    assert_eq!(summary["failures"].as_array().unwrap().len(), bad.len());
    // The one file that is not an image is left alone, and said to be.
    assert_eq!(summary["ignored"], 1, "{summary}");
    assert_eq!(summary["ignored_examples"], serde_json::json!(["notes.txt"]));
    assert!(String::from_utf8_lossy(&run.stdout).contains("1 other files left alone (not images, e.g. notes.txt)"), "{}", explain(&run));
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(job.join("spec.json")).unwrap()).unwrap();
    assert_eq!(spec["model"], "fscs");
}

#[test]
fn a_second_run_skips_unchanged_images_and_redoes_a_changed_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    write(&input, "a/coffee.png", &encode(&sample("coffee.png", 64), ImageFormat::Png));
    write(&input, "b/chelsea.png", &encode(&sample("chelsea.png", 64), ImageFormat::Png));
    let args = ["run", input.to_str().unwrap(), out.to_str().unwrap()];
    let first = lamina(&args);
    assert!(first.status.success(), "{}", explain(&first));
    let before = manifest(&out, "a/coffee.png").unwrap();
    let layer_before = std::fs::read(out.join("a/coffee.png/layer-00.png")).unwrap();

    let second = lamina(&args);
    assert!(second.status.success(), "{}", explain(&second));
    assert!(String::from_utf8_lossy(&second.stdout).contains("0 done, 2 skipped"), "{}", explain(&second));
    assert_eq!(manifest(&out, "a/coffee.png").unwrap(), before, "a skipped image's manifest was rewritten");

    // Change one image: only it is decomposed again.
    write(&input, "a/coffee.png", &encode(&sample("coffee.png", 64).fliph(), ImageFormat::Png));
    let third = lamina(&args);
    assert!(third.status.success(), "{}", explain(&third));
    assert!(String::from_utf8_lossy(&third.stdout).contains("1 done, 1 skipped"), "{}", explain(&third));
    let after = manifest(&out, "a/coffee.png").unwrap();
    assert_ne!(after.input.etag, before.input.etag);
    assert_ne!(std::fs::read(out.join("a/coffee.png/layer-00.png")).unwrap(), layer_before);

    // Other parameters are another decomposition: nothing is skipped.
    let fewer = lamina(&["run", input.to_str().unwrap(), out.to_str().unwrap(), "--layers", "3"]);
    assert!(String::from_utf8_lossy(&fewer.stdout).contains("2 done, 0 skipped"), "{}", explain(&fewer));
}

#[test]
fn layer_count_and_palette_options_are_honoured_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    let coffee = sample("coffee.png", 96);
    write(&input, "coffee.png", &encode(&coffee, ImageFormat::Png));

    let merged = lamina(&["run", input.to_str().unwrap(), out.join("three").to_str().unwrap(), "--layers", "3"]);
    assert!(merged.status.success(), "{}", explain(&merged));
    let m = manifest(&out.join("three"), "coffee.png").unwrap();
    assert!(m.layers.len() <= 3 && m.params.layer_target() == Some(3));
    let mut sources: Vec<usize> = m.layers.iter().flat_map(|l| l.sources.clone()).chain(m.dropped.clone()).collect();
    sources.sort();
    assert_eq!(sources, (0..7).collect::<Vec<_>>(), "every model layer is merged into one output or dropped");
    let psnr = recomposite_psnr(&out.join("three/coffee.png"), &m, &coffee).unwrap();
    assert!(psnr > 24.0, "merged layers recomposite at {psnr:.1} dB");

    let palette = "0,0,0;255,255,255;120,40,20;200,120,60;90,60,40;230,200,170;150,90,60";
    let fixed = lamina(&["run", input.to_str().unwrap(), out.join("fixed").to_str().unwrap(), "--palette", palette]);
    assert!(fixed.status.success(), "{}", explain(&fixed));
    let m = manifest(&out.join("fixed"), "coffee.png").unwrap();
    let want: Vec<[u8; 3]> = vec![[0, 0, 0], [255, 255, 255], [120, 40, 20], [200, 120, 60], [90, 60, 40], [230, 200, 170], [150, 90, 60]];
    assert_eq!(m.palette.as_ref(), Some(&want));
    assert_eq!(m.params.palette.as_ref(), Some(&want));

    // The palette k-means found, passed back, reproduces the layers byte for byte.
    let auto = lamina(&["run", input.to_str().unwrap(), out.join("auto").to_str().unwrap()]);
    assert!(auto.status.success(), "{}", explain(&auto));
    let found = manifest(&out.join("auto"), "coffee.png").unwrap().palette.unwrap();
    let text: Vec<String> = found.iter().map(|c| format!("{},{},{}", c[0], c[1], c[2])).collect();
    let again = lamina(&["run", input.to_str().unwrap(), out.join("again").to_str().unwrap(), "--palette", &text.join(";")]);
    assert!(again.status.success(), "{}", explain(&again));
    for layer in 0..manifest(&out.join("auto"), "coffee.png").unwrap().layers.len() {
        let name = format!("coffee.png/layer-{layer:02}.png");
        assert_eq!(std::fs::read(out.join("auto").join(&name)).unwrap(), std::fs::read(out.join("again").join(&name)).unwrap(), "{name}");
    }
}

#[test]
fn bad_configuration_is_refused_in_one_line_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    for (args, phrase) in [
        (vec!["run", missing.to_str().unwrap(), tmp.path().join("o").to_str().unwrap()], "not a folder"),
        (vec!["run", tmp.path().to_str().unwrap(), tmp.path().join("o").to_str().unwrap(), "--layers", "9"], "out of range"),
        (vec!["run", tmp.path().to_str().unwrap(), tmp.path().join("o").to_str().unwrap(), "--palette", "1,2"], "--palette"),
        (vec!["run", tmp.path().to_str().unwrap(), tmp.path().join("o").to_str().unwrap(), "--device", "tpu"], "unknown device"),
        (vec!["run", tmp.path().to_str().unwrap(), tmp.path().join("o").to_str().unwrap(), "--model", "torchscript:/nope.pt"], "nope.json"),
    ] {
        let out = lamina(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}\n{}", explain(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("lamina: ") && last.contains(phrase), "{args:?}: {last:?}");
    }
}

#[test]
fn a_torchscript_model_runs_end_to_end_and_its_exact_layers_rebuild_the_input() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    let python = std::env::var("LAMINA_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = repo_root().join("worker/tests/fixtures/create_jit_models.py");
    let made = std::process::Command::new(python).arg(script).arg(&models).status().unwrap();
    assert!(made.success());
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    let coffee = sample("coffee.png", 50);
    write(&input, "coffee.png", &encode(&coffee, ImageFormat::Png));
    let model = format!("torchscript:{}", models.join("two_layer.pt").display());
    let run = lamina(&["run", input.to_str().unwrap(), out.to_str().unwrap(), "--model", &model]);
    assert!(run.status.success(), "{}", explain(&run));
    let m = manifest(&out, "coffee.png").unwrap();
    assert_eq!(m.model.id, "two-layer@1");
    assert!(m.palette.is_none());
    // Layer 0 is the image itself, opaque: the stack rebuilds the input exactly.
    assert_eq!(recomposite_psnr(&out.join("coffee.png"), &m, &coffee), None);
    assert_eq!(m.recomposite_psnr_db, None);
}

#[test]
fn a_stopped_run_finishes_the_images_in_hand_writes_its_summary_and_exits_with_the_signal() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    for (signal, code, name) in [("TERM", 143, "SIGTERM"), ("INT", 130, "SIGINT")] {
        let tmp = tempfile::tempdir().unwrap();
        let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
        let photos = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "retina.jpg", "hubble_deep_field.jpg"];
        let total = 30;
        for i in 0..total {
            write(&input, &format!("img-{i:02}.png"), &encode(&sample(photos[i % photos.len()], 192), ImageFormat::Png));
        }
        let mut child = Command::new(binary("lamina"))
            .args(["run", input.to_str().unwrap(), out.to_str().unwrap()])
            .env("LAMINA_DEVICE", "cpu")
            .env("LAMINA_PROGRESS", "log")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Signal once the first image is done: the run is mid-way.
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut log = String::new();
        let mut line = String::new();
        while stderr.read_line(&mut line).unwrap() > 0 {
            log.push_str(&line);
            if line.contains("image done") {
                break;
            }
            line.clear();
        }
        assert!(log.contains("image done"), "{log}");
        let pid = child.id().to_string();
        assert!(Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap().success());
        let rest = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
            rest
        });
        let status = child.wait().unwrap();
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
        let log = log + &rest.join().unwrap();
        assert_eq!(status.code(), Some(code), "{name}\n{stdout}\n{log}");
        assert!(stdout.contains(&format!("interrupted by {name} after")), "{stdout}");

        // The summary says what happened; every recorded image is really done.
        let job = job_dir(&out);
        let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(job.join("summary.json")).unwrap()).unwrap();
        assert_eq!((summary["cancelled"].as_bool(), summary["interrupted_by"].as_str()), (Some(true), Some(name)), "{summary}");
        let recorded = results(&job);
        let done = recorded.iter().filter(|r| r.status == Status::Done).count();
        assert!(done >= 1 && done < total, "{name}: {done} of {total} done before the stop");
        assert_eq!(summary["done"].as_u64(), Some(done as u64), "{summary}");
        for r in &recorded {
            assert!(manifest(&out, &r.key).is_some(), "{}: recorded done without a manifest", r.key);
        }

        // Run again: what was done is skipped, the rest is done.
        let again = lamina(&["run", input.to_str().unwrap(), out.to_str().unwrap()]);
        assert!(again.status.success(), "{}", explain(&again));
        let line = String::from_utf8_lossy(&again.stdout);
        assert!(line.contains(&format!("{total} images: ")) && line.contains(" 0 failed"), "{line}");
        let skipped: usize = line.split(" skipped").next().and_then(|l| l.rsplit(", ").next()).and_then(|n| n.trim().parse().ok()).unwrap();
        assert!(skipped >= done, "{name}: {skipped} skipped on the second run, {done} recorded done before\n{line}");
    }
}

/// Decodes every layer of `key` under `out`, in manifest order.
fn layers(out: &Path, key: &str) -> Vec<image::RgbaImage> {
    let m = manifest(out, key).unwrap_or_else(|| panic!("{key}: no manifest under {}", out.display()));
    m.layers.iter().map(|l| image::open(out.join(key).join(l.png())).unwrap().to_rgba8()).collect()
}

#[test]
fn a_photo_over_the_memory_budget_runs_in_tiles_and_fast_mode_is_recorded_and_current() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    let coffee = sample("coffee.png", 400);
    // Transparent on the left third: tiles and fast mode must keep it transparent.
    let logo = logo_transparent_left_of(240, 80);
    write(&input, "coffee.png", &encode(&coffee, ImageFormat::Png));
    write(&input, "logo.png", &encode(&logo, ImageFormat::Png));
    let inputs = [("coffee.png", &coffee), ("logo.png", &logo)];
    let run = |out: &str, extra: &[&str]| {
        let out = tmp.path().join(out);
        let mut args = vec!["run", input.to_str().unwrap(), out.to_str().unwrap()];
        args.extend(extra);
        let run = lamina(&args);
        assert!(run.status.success(), "{}", explain(&run));
        (out, String::from_utf8_lossy(&run.stdout).into_owned())
    };

    // The whole image in one pass, then the same with a budget so small that every image
    // runs in dozens of 32-pixel tiles.
    let (whole, _) = run("whole", &[]);
    let (tiled, _) = run("tiled", &["--memory-budget", "256KiB"]);
    for (key, image) in inputs {
        let (a, b) = (manifest(&whole, key).unwrap(), manifest(&tiled, key).unwrap());
        assert_eq!(a.params, b.params, "the budget is not a parameter: both outputs are the same decomposition");
        assert_eq!(a.palette, b.palette);
        assert_eq!(a.layers.len(), b.layers.len(), "{key}");
        let (la, lb) = (layers(&whole, key), layers(&tiled, key));
        let (mut sum, mut n) = (0u64, 0u64);
        for (x, y) in la.iter().zip(&lb) {
            for (p, q) in x.as_raw().iter().zip(y.as_raw()) {
                sum += u64::from(p.abs_diff(*q));
                n += 1;
            }
        }
        let mean = sum as f64 / n as f64;
        assert!(mean <= 1.0, "{key}: tiled layers differ from whole ones by {mean:.3}/255 on average");
        let psnr = recomposite_psnr(&tiled.join(key), &b, image).unwrap();
        assert!((psnr - b.recomposite_psnr_db.unwrap()).abs() < 0.05, "{key}: the manifest's PSNR is not what the layers give");
        assert!((psnr - a.recomposite_psnr_db.unwrap()).abs() < 0.1, "{key}: tiled {psnr:.2} dB vs whole {:?}", a.recomposite_psnr_db);
    }
    for layer in &manifest(&tiled, "logo.png").unwrap().layers {
        assert!(layer.bbox.unwrap().x >= 80, "{}: visible where the input is transparent", layer.png());
    }

    // Fast mode: the networks see each photo reduced 2 x 2 under this budget; the layers are
    // full size, rebuild the photo at least as well, and the manifest says how they were made.
    let fast_args = ["--quality", "fast", "--memory-budget", "64MiB"];
    let (fast, _) = run("fast", &fast_args);
    for (key, image) in inputs {
        let m = manifest(&fast, key).unwrap();
        assert_eq!(m.params.quality, lamina_common::params::Quality::Fast);
        let text = std::fs::read_to_string(fast.join(key).join("manifest.json")).unwrap();
        assert!(text.contains(r#""quality": "fast""#), "{key}: {text}");
        assert!(layers(&fast, key).iter().all(|l| (l.width(), l.height()) == (image.width(), image.height())));
        let psnr = recomposite_psnr(&fast.join(key), &m, image).unwrap();
        let reference = manifest(&whole, key).unwrap().recomposite_psnr_db.unwrap();
        assert!(psnr >= reference - 0.5, "{key}: fast {psnr:.2} dB vs reference {reference:.2} dB");
    }
    for layer in &manifest(&fast, "logo.png").unwrap().layers {
        assert!(layer.bbox.unwrap().x >= 80, "{}: visible where the input is transparent", layer.png());
    }
    // The mode is part of what makes an output current.
    let (_, again) = run("fast", &fast_args);
    assert!(again.contains("0 done, 2 skipped"), "{again}");
    let (_, reference) = run("fast", &[]);
    assert!(reference.contains("2 done, 0 skipped"), "{reference}");
}

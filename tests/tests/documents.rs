//! Layered documents and layer-count control, end to end through `lamina run`: the PSD (or
//! PSB) and OpenRaster files are read back by independent readers (psd-tools, GIMP in batch
//! mode, and Python's zipfile/ElementTree in `tests/tools/check_documents.py`; the `psd`
//! crate here), which
//! must find the manifest's layers, names, order and offsets, the PNG layers' pixels and
//! merged images equal to the layers' recomposition. `--layers auto` and `--min-coverage`
//! must merge by their documented rules and record the count and why.

use std::path::Path;

use image::{DynamicImage, ImageFormat};
use lamina_common::manifest::Manifest;
use lamina_tests::*;

/// The input: a photo, a logo with real transparency, and a panorama strip wider than a
/// PSD may be (30000 pixels), which must become a PSB.
fn inputs(dir: &Path) {
    write(dir, "coffee.png", &encode(&sample("coffee.png", 96), ImageFormat::Png));
    write(dir, "nested/logo.png", &encode(&logo(), ImageFormat::Png));
    let coffee = sample("coffee.png", 96).to_rgb8();
    let strip = image::RgbImage::from_fn(30_016, 8, |x, y| *coffee.get_pixel(x % coffee.width(), y * 4));
    write(dir, "strip.png", &encode(&DynamicImage::ImageRgb8(strip), ImageFormat::Png));
}

/// The bundled logo (real soft transparency) at 64 pixels, transparent left of column 20,
/// so no layer covers the whole canvas.
fn logo() -> DynamicImage {
    let mut logo = sample("logo.png", 64).to_rgba8();
    for (x, _, px) in logo.enumerate_pixels_mut() {
        if x < 20 {
            px[3] = 0;
        }
    }
    DynamicImage::ImageRgba8(logo)
}

/// Every file the manifest lists exists, and nothing else was written beside it.
fn assert_files_listed(dir: &Path, m: &Manifest) {
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "manifest.json")
        .collect();
    on_disk.sort();
    let mut listed = m.files.clone();
    listed.sort();
    assert_eq!(on_disk, listed, "{}", dir.display());
}

#[test]
fn psd_and_ora_open_in_independent_readers_with_the_layers_the_manifest_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    inputs(&input);
    let run = lamina(&["run", input.to_str().unwrap(), out.to_str().unwrap(), "--formats", "png,psd,ora"]);
    assert!(run.status.success(), "{}", explain(&run));
    let keys = ["coffee.png", "nested/logo.png", "strip.png"];
    for key in keys {
        let m = manifest(&out, key).unwrap();
        assert_files_listed(&out.join(key), &m);
        let doc = if key == "strip.png" { "layers.psb" } else { "layers.psd" };
        assert!(m.files.iter().any(|f| f == doc) && m.files.iter().any(|f| f == "layers.ora"), "{key}: {:?}", m.files);
        assert!(m.layers.iter().all(|l| l.file.is_some() && !l.name.is_empty()));
        let count = m.layer_count.as_ref().unwrap();
        assert_eq!(count.chosen, m.layers.len());
    }
    let dirs: Vec<_> = keys.iter().map(|k| out.join(k)).collect();
    let reports = check_documents(&dirs.iter().map(|d| d.as_path()).collect::<Vec<_>>(), true);
    assert_eq!(reports.len(), 3);
    assert_eq!(reports[2]["psd"]["file"], "layers.psb", "{reports:?}");
    for report in &reports[..2] {
        assert!(report["gimp"]["flattened_max_error"].as_f64().is_some(), "GIMP opened the PSD: {report}");
    }

    // The `psd` crate, a second PSD reader: names, order, pixels, merged image.
    for key in ["coffee.png", "nested/logo.png"] {
        let m = manifest(&out, key).unwrap();
        let bytes = std::fs::read(out.join(key).join("layers.psd")).unwrap();
        let psd = psd::Psd::from_bytes(&bytes).unwrap_or_else(|e| panic!("{key}: the psd crate cannot read it: {e}"));
        assert_eq!((psd.width(), psd.height()), (m.canvas.width, m.canvas.height));
        assert_eq!(psd.layers().len(), m.layers.len(), "{key}");
        // The psd crate lists layers top first.
        for (layer, info) in psd.layers().iter().rev().zip(&m.layers) {
            assert_eq!(layer.name(), info.name, "{key}");
            let png = image::open(out.join(key).join(info.png())).unwrap().to_rgba8();
            let got = layer.rgba();
            // The psd crate gives no colour where alpha is 0; compare the visible pixels.
            for (a, b) in got.chunks_exact(4).zip(png.as_raw().chunks_exact(4)) {
                assert_eq!(a[3], b[3], "{key} {}: alpha", info.name);
                if b[3] > 0 {
                    assert_eq!(&a[..3], &b[..3], "{key} {}: colour", info.name);
                }
            }
        }
    }
}

#[test]
fn cropped_layers_and_documents_place_every_layer_at_its_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    write(&input, "logo.png", &encode(&logo(), ImageFormat::Png));
    let cropped = out.join("cropped");
    let run = lamina(&["run", input.to_str().unwrap(), cropped.to_str().unwrap(), "--formats", "png,psd,ora", "--crop-layers"]);
    assert!(run.status.success(), "{}", explain(&run));
    let m = manifest(&cropped, "logo.png").unwrap();
    assert!(m.render.as_ref().unwrap().crop_layers);
    let mut smaller = 0;
    for layer in &m.layers {
        let bbox = layer.bbox.unwrap();
        let png = image::open(cropped.join("logo.png").join(layer.png())).unwrap();
        assert_eq!((png.width(), png.height()), (bbox.width, bbox.height), "{}", layer.png());
        smaller += usize::from(bbox.width * bbox.height < 64 * 64);
    }
    assert!(smaller > 0, "the logo's layers do not all cover the canvas, so some must be cropped");
    check_documents(&[&cropped.join("logo.png")], true);

    // Asking for documents alone still stores the layer PNGs: they are the decomposition
    // every later rendering is made from.
    let documents = out.join("documents");
    let run = lamina(&["run", input.to_str().unwrap(), documents.to_str().unwrap(), "--formats", "ora,psd"]);
    assert!(run.status.success(), "{}", explain(&run));
    let m = manifest(&documents, "logo.png").unwrap();
    assert!(m.layers.iter().all(|l| l.file.is_some()));
    let mut files = m.files.clone();
    files.sort();
    let mut expected: Vec<String> = (0..m.layers.len()).map(lamina_common::keys::layer_name).collect();
    expected.extend(["layers.ora", "layers.psd", "preview.png"].map(String::from));
    expected.sort();
    assert_eq!(files, expected);
    assert_files_listed(&documents.join("logo.png"), &m);
    check_documents(&[&documents.join("logo.png")], false);

    // Other formats are another rendering, not another decomposition: a run with PNG only
    // renders from the stored layers and removes the documents it no longer lists.
    let again = lamina(&["run", input.to_str().unwrap(), documents.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 done, 1 re-rendered from stored layers, 0 skipped"), "{}", explain(&again));
    let m = manifest(&documents, "logo.png").unwrap();
    assert_files_listed(&documents.join("logo.png"), &m);
    assert!(!documents.join("logo.png/layers.psd").exists());
}

#[test]
fn auto_layer_count_merges_only_close_colours_and_min_coverage_folds_small_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in"), tmp.path().join("out"));
    let coffee = sample("coffee.png", 96);
    write(&input, "coffee.png", &encode(&coffee, ImageFormat::Png));
    write(&input, "chelsea.png", &encode(&sample("chelsea.png", 96), ImageFormat::Png));

    let auto = lamina(&["run", input.to_str().unwrap(), out.join("auto").to_str().unwrap(), "--layers", "auto"]);
    assert!(auto.status.success(), "{}", explain(&auto));
    for key in ["coffee.png", "chelsea.png"] {
        let m = manifest(&out.join("auto"), key).unwrap();
        let palette = m.palette.clone().unwrap();
        let count = m.layer_count.clone().unwrap();
        assert_eq!(count.chosen, m.layers.len());
        assert!(count.why.contains("--layers auto"), "{}", count.why);
        let mut all: Vec<usize> = m.layers.iter().flat_map(|l| l.sources.clone()).chain(m.dropped.clone()).collect();
        all.sort();
        assert_eq!(all, (0..7).collect::<Vec<_>>(), "{key}: every model layer is in one output layer or dropped");
        for layer in &m.layers {
            for &a in &layer.sources {
                for &b in &layer.sources {
                    let d: f64 = (0..3).map(|c| ((f64::from(palette[a][c]) - f64::from(palette[b][c])) / 255.0).powi(2)).sum::<f64>().sqrt();
                    assert!(d < lamina_common::params::AUTO_DISTANCE, "{key}: colours {a} and {b} merged at distance {d:.3}");
                }
            }
        }
        // Merging alpha-add layers is exact: nothing visible is lost.
        let psnr = recomposite_psnr(&out.join("auto").join(key), &m, &image::open(input.join(key)).unwrap()).unwrap_or(f64::INFINITY);
        assert!(psnr > 30.0, "{key}: auto layers recomposite at {psnr:.1} dB");
    }

    let sparse = lamina(&["run", input.to_str().unwrap(), out.join("sparse").to_str().unwrap(), "--min-coverage", "8%"]);
    assert!(sparse.status.success(), "{}", explain(&sparse));
    for key in ["coffee.png", "chelsea.png"] {
        let m = manifest(&out.join("sparse"), key).unwrap();
        assert!(m.layer_count.as_ref().unwrap().why.contains("under 8%"), "{:?}", m.layer_count);
        if m.layers.len() > 1 {
            for layer in &m.layers {
                // Normal-blend coverage is at least the alpha-add mass the rule looks at.
                assert!(layer.coverage >= 0.08 - 0.005, "{key}: layer {} covers {:.3}", layer.name, layer.coverage);
            }
        }
    }

    let bad = lamina(&["run", input.to_str().unwrap(), out.join("bad").to_str().unwrap(), "--min-coverage", "150%"]);
    assert_eq!(bad.status.code(), Some(2), "{}", explain(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a share"), "{}", explain(&bad));
}

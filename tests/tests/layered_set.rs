//! The layered ground-truth set in eval/layered-set, made by `make-layered-set`
//! (tests/src/bin/make_layered_set.rs): the committed files are exactly what the generator
//! makes, and every sample keeps the promises of eval/layered-set/README.md, so that scores
//! computed against the set mean what the README says they mean.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use image::{ColorType, DynamicImage, RgbaImage};
use lamina_tests::{explain, repo_root};

/// The generator writes at most this many bytes: the set is committed to the repository.
const MAX_BYTES: u64 = 8 * 1024 * 1024;

fn set_dir() -> PathBuf {
    repo_root().join("eval/layered-set")
}

/// Every file under `dir`, as paths relative to it.
fn files(dir: &Path) -> BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(path.strip_prefix(root).expect("under root").to_path_buf());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

fn open(path: &Path) -> DynamicImage {
    image::open(path).unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()))
}

/// The samples' file names (`<name>.png` under `inputs/`), sorted.
fn sample_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("inputs"))
        .expect("inputs/ exists")
        .map(|e| e.expect("directory entry").file_name().into_string().expect("UTF-8 name"))
        .collect();
    names.sort();
    names
}

/// A sample's layers, bottom first, after checking that its folder holds `layer-00.png`,
/// `layer-01.png`, ... with no gap and nothing else.
fn layers(dir: &Path, name: &str) -> Vec<DynamicImage> {
    let folder = dir.join("gt").join(name);
    let found = files(&folder);
    let expected: BTreeSet<PathBuf> = (0..found.len()).map(|n| PathBuf::from(format!("layer-{n:02}.png"))).collect();
    assert_eq!(found, expected, "{}: layers must be layer-00.png, layer-01.png, ... only", folder.display());
    expected.iter().map(|file| open(&folder.join(file))).collect()
}

/// Running the generator again gives the committed set: the same files, the PNGs decoding to
/// the same pixels (compared as RGBA, with the same colour type and size), the same README
/// and LICENSE text. This is what makes the set reproducible from source on any machine, and
/// what catches a generator change committed without the regenerated set.
#[test]
fn regenerated_set_equals_committed_set() {
    let committed = set_dir();
    let tmp = tempfile::tempdir().expect("temp dir");
    let fresh = tmp.path().join("layered-set");
    let out = Command::new(env!("CARGO_BIN_EXE_make-layered-set")).arg(&fresh).output().expect("run make-layered-set");
    assert!(out.status.success(), "make-layered-set failed: {}", explain(&out));

    let (want, got) = (files(&committed), files(&fresh));
    assert_eq!(
        want, got,
        "the generator makes other files than eval/layered-set holds: regenerate it with ops/make-layered-set.sh"
    );
    let mut differ = Vec::new();
    for file in &want {
        let (a, b) = (committed.join(file), fresh.join(file));
        let same = if file.extension().is_some_and(|e| e == "png") {
            let (a, b) = (open(&a), open(&b));
            a.color() == b.color() && a.to_rgba8() == b.to_rgba8()
        } else {
            std::fs::read(&a).expect("committed file") == std::fs::read(&b).expect("fresh file")
        };
        if !same {
            differ.push(file.display().to_string());
        }
    }
    assert!(
        differ.is_empty(),
        "files that differ from what the generator makes now ({}): {differ:?}\n\
         If the generator changed on purpose, regenerate the set (ops/make-layered-set.sh) and commit it. \
         Backgrounds from JPEG photos also depend on the JPEG decoder version pinned in Cargo.lock.",
        differ.len()
    );
}

/// `--variant 1` makes another set of the same table: the same files (names, so sizes and
/// layer counts), with inputs of the same sizes, but other content drawn.
#[test]
fn a_variant_has_the_same_samples_with_other_content() {
    let committed = set_dir();
    let tmp = tempfile::tempdir().expect("temp dir");
    let fresh = tmp.path().join("variant");
    let out = Command::new(env!("CARGO_BIN_EXE_make-layered-set")).arg(&fresh).args(["--variant", "1"]).output().expect("run make-layered-set");
    assert!(out.status.success(), "make-layered-set --variant 1 failed: {}", explain(&out));
    let png = |dir: &Path| -> BTreeSet<PathBuf> { files(dir).into_iter().filter(|f| f.extension().is_some_and(|e| e == "png")).collect() };
    assert_eq!(png(&committed), png(&fresh), "a variant writes the committed set's files");
    let inputs: Vec<PathBuf> = files(&committed.join("inputs")).into_iter().collect();
    let mut same = 0;
    for input in &inputs {
        let (a, b) = (open(&committed.join("inputs").join(input)), open(&fresh.join("inputs").join(input)));
        assert_eq!((a.width(), a.height()), (b.width(), b.height()), "{}", input.display());
        same += usize::from(a.to_rgba8() == b.to_rgba8());
    }
    assert_eq!(same, 0, "{same} of {} inputs are the committed ones", inputs.len());
    let bad = Command::new(env!("CARGO_BIN_EXE_make-layered-set")).arg(&fresh).args(["--variant", "x"]).output().expect("run make-layered-set");
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--variant x"), "{}", explain(&bad));
}

/// Every sample keeps the promises the set is scored by: at least 30 samples, about half with
/// photographic backgrounds, every layer count from 2 to 6 present; names that say the
/// background kind and the layer count; an opaque 8-bit RGB input with sides of 256 to 1024
/// pixels; 8-bit RGBA layers of the input's size, the bottom one opaque, none empty, fully
/// transparent pixels (0, 0, 0, 0); the input equal to the "over" composite of the layers
/// within 1/255 per channel; anti-aliased (partly transparent) edges in every sample, and a
/// real share of partly transparent pixels where the content is soft (feathered objects,
/// shadows, tinted panels); the README's table and the LICENSE list every sample they should.
#[test]
fn samples_keep_the_sets_promises() {
    let dir = set_dir();
    let names = sample_names(&dir);
    assert!(names.len() >= 30, "only {} samples", names.len());
    let photos = names.iter().filter(|n| n.starts_with("photo-")).count();
    assert!(
        (names.len() * 2 / 5..=names.len() * 3 / 5).contains(&photos),
        "{photos} of {} samples have photographic backgrounds, not about half",
        names.len()
    );
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("README.md");
    let license = std::fs::read_to_string(dir.join("LICENSE.md")).expect("LICENSE.md");
    let mut counts = BTreeSet::new();
    for name in &names {
        let parts: Vec<&str> = name.trim_end_matches(".png").split('-').collect();
        assert!(parts.len() == 4 && name.ends_with(".png"), "{name}: not <kind>-<content>-<nn>-<N>l.png");
        assert!(["photo", "flat", "gradient"].contains(&parts[0]), "{name}: unknown background kind");
        assert!(readme.contains(&format!("| {name} |")), "{name} is missing from README.md's table");
        if parts[0] == "photo" {
            assert!(license.contains(name.as_str()), "LICENSE.md does not say which photo {name} uses");
        }

        let input = open(&dir.join("inputs").join(name));
        assert_eq!(input.color(), ColorType::Rgb8, "{name}: the input is not 8-bit RGB");
        let (w, h) = (input.width(), input.height());
        assert!((256..=1024).contains(&w) && (256..=1024).contains(&h), "{name}: {w}x{h} is outside 256..=1024");

        let layers = layers(&dir, name);
        let stated: usize = parts[3].trim_end_matches('l').parse().unwrap_or_else(|_| panic!("{name}: layer count"));
        assert_eq!(layers.len(), stated, "{name}: the name says {stated} layers");
        assert!((2..=6).contains(&layers.len()), "{name}: {} layers", layers.len());
        counts.insert(layers.len());
        let layers: Vec<RgbaImage> = layers
            .iter()
            .enumerate()
            .map(|(n, l)| {
                assert_eq!(l.color(), ColorType::Rgba8, "{name}: layer {n} is not 8-bit RGBA");
                assert_eq!((l.width(), l.height()), (w, h), "{name}: layer {n} is not the input's size");
                l.to_rgba8()
            })
            .collect();
        assert!(layers[0].pixels().all(|p| p[3] == 255), "{name}: the bottom layer is not opaque");
        for (n, layer) in layers.iter().enumerate().skip(1) {
            assert!(layer.pixels().any(|p| p[3] > 0), "{name}: layer {n} is empty");
            assert!(
                layer.pixels().all(|p| p[3] > 0 || p.0 == [0; 4]),
                "{name}: layer {n} has transparent pixels that are not (0, 0, 0, 0)"
            );
        }

        // "Over", straight alpha, in floating point: the bottom layer is opaque, so every
        // partial composite is too.
        let input = input.to_rgb8();
        let mut worst = 0f64;
        for (i, want) in input.pixels().enumerate() {
            let (x, y) = (i as u32 % w, i as u32 / w);
            for c in 0..3 {
                let mut acc = f64::from(layers[0].get_pixel(x, y)[c]);
                for layer in &layers[1..] {
                    let p = layer.get_pixel(x, y);
                    let a = f64::from(p[3]) / 255.0;
                    acc = a * f64::from(p[c]) + (1.0 - a) * acc;
                }
                worst = worst.max((acc - f64::from(want[c])).abs());
            }
        }
        assert!(worst <= 1.0, "{name}: the input is {worst:.2}/255 away from the composite of its layers");

        // Partly transparent pixels per foreground layer.
        let partial: Vec<usize> =
            layers[1..].iter().map(|l| l.pixels().filter(|p| p[3] > 0 && p[3] < 255).count()).collect();
        assert!(partial.iter().any(|&n| n > 0), "{name}: no layer has anti-aliased (partly transparent) pixels");
        if ["soft", "shadow", "overlay", "mixed"].contains(&parts[1]) {
            let most = partial.iter().copied().max().unwrap_or(0);
            assert!(
                most * 100 >= (w * h) as usize,
                "{name}: soft content, yet no layer has 1% of its pixels partly transparent ({most})"
            );
        }
    }
    assert_eq!(counts, (2..=6).collect(), "layer counts 2 to 6 must all be present");
}

/// The set stays small enough to live in the repository (under 6 MiB): photographic samples
/// cost the most bytes, and a table change that grows them should be a decision.
#[test]
fn set_is_small() {
    let dir = set_dir();
    let total: u64 = files(&dir).iter().map(|f| std::fs::metadata(dir.join(f)).expect("metadata").len()).sum();
    assert!(total < MAX_BYTES, "eval/layered-set holds {total} bytes, over {MAX_BYTES}");
}

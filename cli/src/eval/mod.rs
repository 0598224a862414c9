//! `lamina eval PRED GT`: scores layer decompositions against layered ground truth with
//! LayerD's metric (after LayerD's evaluation, Suzuki et al., ICCV 2025,
//! github.com/CyberAgentAILab/LayerD, Apache-2.0; definitions in `docs/eval.md`).
//!
//! This module finds and reads the stacks on both sides, checks them, prints the table and
//! writes the JSON; the scoring itself is [`score`], which does no I/O.

mod output;
pub mod score;
mod stacks;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;


use output::*;
use score::{Aggregate, EditScore};
use stacks::*;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The decompositions to score: a Lamina output folder (any model), or folders of
    /// layer-NN.png stacks. Image folders are found recursively.
    #[arg(value_name = "PRED")]
    pub pred: PathBuf,
    /// The reference: `<name>/layer-NN.png` stacks (bottom first; LayerD's `0000.png` naming
    /// is read too), `<name>` being the input's path as in Lamina's output (or that path
    /// without its extension, as LayerD's dataset names them), or another Lamina output
    /// folder.
    #[arg(value_name = "GT")]
    pub gt: PathBuf,
    /// Most greedy merge edits (LayerD's --max-edits); scores are reported for 0 to this.
    #[arg(long, env = "LAMINA_EVAL_MAX_EDITS", default_value_t = 5)]
    pub max_edits: usize,
    /// Also write every score as JSON to FILE (format in docs/eval.md).
    #[arg(long, env = "LAMINA_EVAL_JSON", value_name = "FILE")]
    pub json: Option<PathBuf>,
}

pub fn main(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let mut table: Option<Table> = None;
    let report = evaluate_folders(&args.pred, &args.gt, args.max_edits, |names, sample| {
        let table = table.get_or_insert_with(|| {
            let table = Table::new(names);
            println!("{}", table.header());
            table
        });
        println!("{}", table.row(sample));
    })?;
    print!("{}", summary(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, to_json(&report)).with_context(|| format!("cannot write {}", path.display()))?;
        println!("scores written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------
// Scoring folders

/// One scored image.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub pred_layers: usize,
    pub gt_layers: usize,
    /// LayerD's per-sample list: the scores after 0, 1, ... merges.
    pub scores: Vec<EditScore>,
}

/// An image in both folders that LayerD would not score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub samples: Vec<Sample>,
    pub aggregated: Vec<Aggregate>,
    pub only_in_pred: Vec<String>,
    pub only_in_gt: Vec<String>,
    pub skipped: Vec<Skipped>,
}

/// Scores every image found in both `pred` and `gt`, in name order, calling `on_sample`
/// with all matched names and each result as it is done. An error when either folder is
/// missing or empty, any stack is unreadable or inconsistent in size, or nothing could be
/// scored.
pub fn evaluate_folders(
    pred: &Path,
    gt: &Path,
    max_edits: usize,
    mut on_sample: impl FnMut(&[&str], &Sample),
) -> anyhow::Result<Report> {
    let pred_stacks = discover(pred, "pred")?;
    let gt_stacks = discover(gt, "gt")?;
    let pairs = match_names(&pred_stacks, &gt_stacks);
    let only_in_pred: Vec<String> = pred_stacks.keys().filter(|k| !pairs.contains_key(*k)).cloned().collect();
    let matched_gt: std::collections::BTreeSet<&String> = pairs.values().collect();
    let only_in_gt: Vec<String> = gt_stacks.keys().filter(|k| !matched_gt.contains(k)).cloned().collect();
    let matched: Vec<(&String, &Stack, &Stack)> = pairs
        .iter()
        .filter_map(|(name, gt_name)| Some((name, pred_stacks.get(name)?, gt_stacks.get(gt_name)?)))
        .collect();
    if matched.is_empty() {
        let count = |n: usize| if n == 1 { "1 stack".to_owned() } else { format!("{n} stacks") };
        bail!(
            "no image is in both PRED {} ({}) and GT {} ({}): images pair by folder path relative to each",
            pred.display(),
            count(pred_stacks.len()),
            gt.display(),
            count(gt_stacks.len())
        );
    }
    // Every size problem is reported before any scoring.
    for (name, p, g) in &matched {
        if !p.layers.is_empty() && !g.layers.is_empty() && p.canvas != g.canvas {
            bail!(
                "{name}: pred layers are {}x{}, gt layers are {}x{}; both sides must have the same size",
                p.canvas.0,
                p.canvas.1,
                g.canvas.0,
                g.canvas.1
            );
        }
    }
    let names: Vec<&str> = matched.iter().map(|(n, _, _)| n.as_str()).collect();
    let mut samples = Vec::new();
    let mut skipped = Vec::new();
    for (name, p, g) in &matched {
        // LayerD's skip, on the file counts, before any decoding (pred first, as LayerD).
        let short = [("pred", p), ("gt", g)].into_iter().find(|(_, s)| s.layers.len() < 2);
        if let Some((side, stack)) = short {
            let reason = score::ScoreError::TooFewLayers { side, count: stack.layers.len() }.to_string();
            skipped.push(Skipped { name: name.to_string(), reason });
            continue;
        }
        let pred_layers = load_stack(p)?;
        let gt_layers = load_stack(g)?;
        let scores = score::evaluate(&pred_layers, &gt_layers, max_edits).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let sample = Sample { name: name.to_string(), pred_layers: p.layers.len(), gt_layers: g.layers.len(), scores };
        on_sample(&names, &sample);
        samples.push(sample);
    }
    if samples.is_empty() {
        let first = &skipped[0];
        bail!(
            "nothing to score: {}: {}{}",
            first.name,
            first.reason,
            if skipped.len() > 1 { format!(" (and {} more images skipped)", skipped.len() - 1) } else { String::new() }
        );
    }
    let lists: Vec<Vec<EditScore>> = samples.iter().map(|s| s.scores.clone()).collect();
    let aggregated = score::aggregate(&lists);
    Ok(Report { samples, aggregated, only_in_pred, only_in_gt, skipped })
}

/// Pairs each prediction with its reference: the same name, or else (as LayerD's dataset
/// names its folders) the same name without the file extension (`a/cat.png` with `a/cat`),
/// when exactly one prediction claims that reference. Keyed by the prediction's name.
fn match_names(pred: &BTreeMap<String, Stack>, gt: &BTreeMap<String, Stack>) -> BTreeMap<String, String> {
    let mut pairs: BTreeMap<String, String> =
        pred.keys().filter(|name| gt.contains_key(*name)).map(|name| (name.clone(), name.clone())).collect();
    let mut claims: BTreeMap<String, Vec<&String>> = BTreeMap::new();
    for name in pred.keys().filter(|name| !gt.contains_key(*name)) {
        let (dir, file) = name.rsplit_once('/').map_or(("", name.as_str()), |(d, f)| (d, f));
        let Some((stem, _ext)) = file.rsplit_once('.').filter(|(stem, _)| !stem.is_empty()) else {
            continue;
        };
        let key = if dir.is_empty() { stem.to_owned() } else { format!("{dir}/{stem}") };
        if gt.contains_key(&key) && !pred.contains_key(&key) {
            claims.entry(key).or_default().push(name);
        }
    }
    for (key, names) in claims {
        if let [name] = names.as_slice() {
            pairs.insert((*name).clone(), key);
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    use image::{DynamicImage, ImageBuffer, ImageFormat, Rgba as Px};
    use tempfile::TempDir;

    /// A rectangle [x0, x1) x [y0, y1) and its colour.
    type Patch = ((u32, u32, u32, u32), [u8; 4]);

    /// Writes a `w` x `h` RGBA PNG filled with `px`, with `over` painted on its rectangle.
    fn png(path: &Path, w: u32, h: u32, px: [u8; 4], over: Option<Patch>) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let im = ImageBuffer::from_fn(w, h, |x, y| match over {
            Some(((x0, y0, x1, y1), q)) if x >= x0 && x < x1 && y >= y0 && y < y1 => Px(q),
            _ => Px(px),
        });
        im.save_with_format(path, ImageFormat::Png).unwrap();
    }

    /// A two-layer stack (opaque background, red square) in `dir`.
    fn stack(dir: &Path, w: u32, h: u32) {
        png(&dir.join("layer-00.png"), w, h, [20, 30, 40, 255], None);
        png(&dir.join("layer-01.png"), w, h, [0, 0, 0, 0], Some(((1, 1, 3, 3), [200, 0, 0, 255])));
    }

    fn run(pred: &Path, gt: &Path) -> anyhow::Result<Report> {
        evaluate_folders(pred, gt, 5, |_, _| {})
    }

    /// The message of an expected error, on one line.
    fn error(result: anyhow::Result<Report>) -> String {
        match result {
            Ok(_) => panic!("expected an error"),
            Err(e) => {
                let text = format!("{e:#}");
                assert!(!text.contains('\n'), "{text}");
                text
            }
        }
    }

    fn manifest_json(layers: &str, crop: bool, w: u32, h: u32) -> String {
        format!(
            r#"{{"schema":"lamina.manifest/1",
            "input":{{"key":"a.png","size":1,"etag":"sha256:00","format":"png","color":"rgba8","orientation":1,"has_alpha":true}},
            "model":{{"id":"fscs-k7@1","weights_sha256":"00","device":"cpu"}},
            "params":{{"layers":null,"palette":null}}{},
            "canvas":{{"width":{w},"height":{h}}},
            "layers":[{layers}],
            "dropped":[],"palette":null,"recomposite_psnr_db":null,"preview":null,
            "timings_ms":{{"fetch":0,"decode":0,"inference":0,"encode":0,"write":0}},
            "job_id":"j","created_at":"2026-01-01T00:00:00Z"}}"#,
            if crop { r#","render":{"crop_layers":true}"# } else { "" }
        )
    }

    /// Identical GT-shaped folders (nested names) score perfectly; names are the folder
    /// paths; images on one side only are listed, not scored; the JSON has LayerD's keys.
    #[test]
    fn identical_folders_and_unmatched_names() {
        let (pred, gt) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        for root in [pred.path(), gt.path()] {
            stack(&root.join("photos/cat.png"), 4, 4);
        }
        stack(&pred.path().join("only-pred.png"), 4, 4);
        stack(&gt.path().join("only-gt.png"), 4, 4);
        let report = run(pred.path(), gt.path()).unwrap();
        assert_eq!(report.samples.len(), 1);
        assert_eq!(report.samples[0].name, "photos/cat.png");
        assert_eq!(report.samples[0].scores, vec![EditScore { edits: 0, cost: 0.0, rgb_l1: 0.0, alpha_iou: 1.0 }]);
        assert_eq!(report.only_in_pred, vec!["only-pred.png"]);
        assert_eq!(report.only_in_gt, vec!["only-gt.png"]);
        let json = to_json(&report);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["samples"]["photos/cat.png"][0]["alpha_iou"], 1.0);
        assert_eq!(value["aggregated"][0]["count"], 1);
        assert!(json.contains(
            "  \"aggregated\": [\n    {\n      \"max_edits\": 0,\n      \"avg_edits\": 0.0,\n      \"count\": 1,\n      \"avg_cost\": 0.0,"
        ));
        assert!(json.contains("\"only_in_gt\": [\n    \"only-gt.png\"\n  ],\n  \"skipped\": []"));
    }

    /// A Lamina output (manifest, cropped layers placed at their bbox) scores against the
    /// same layers written uncropped as GT: identical, so perfect.
    #[test]
    fn manifest_with_cropped_layers() {
        let (pred, gt) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        stack(&gt.path().join("a.png"), 4, 4);
        let dir = pred.path().join("a.png");
        png(&dir.join("layer-00.png"), 4, 4, [20, 30, 40, 255], None);
        png(&dir.join("layer-01.png"), 2, 2, [200, 0, 0, 255], None);
        let layers = r#"{"file":"layer-00.png","sources":[0],"color":[0,0,0],"bbox":{"x":0,"y":0,"width":4,"height":4},"coverage":1},
                        {"file":"layer-01.png","sources":[1],"color":[0,0,0],"bbox":{"x":1,"y":1,"width":2,"height":2},"coverage":0.25}"#;
        std::fs::write(dir.join("manifest.json"), manifest_json(layers, true, 4, 4)).unwrap();
        let report = run(pred.path(), gt.path()).unwrap();
        assert_eq!(report.samples[0].scores, vec![EditScore { edits: 0, cost: 0.0, rgb_l1: 0.0, alpha_iou: 1.0 }]);
        // The loader places the crop on a transparent canvas.
        let loaded = load_stack(&read_stack(&dir, "pred a.png").unwrap().unwrap()).unwrap();
        let gt_loaded = load_stack(&read_stack(&gt.path().join("a.png"), "gt a.png").unwrap().unwrap()).unwrap();
        assert_eq!(loaded, gt_loaded);
    }

    /// A manifest layer without a PNG (written without png in --formats) is an error that
    /// names the image.
    #[test]
    fn manifest_without_png_is_an_error() {
        let (pred, gt) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        stack(&gt.path().join("a.png"), 4, 4);
        let dir = pred.path().join("a.png");
        std::fs::create_dir_all(&dir).unwrap();
        let layers = r#"{"sources":[0],"color":[0,0,0],"bbox":null,"coverage":1}"#;
        std::fs::write(dir.join("manifest.json"), manifest_json(layers, false, 4, 4)).unwrap();
        let text = error(run(pred.path(), gt.path()));
        assert!(text.contains("pred a.png: layer 0 has no PNG file") && text.contains("without png in --formats"), "{text}");
    }

    /// Layers of different sizes within a stack, or between the two sides, are errors
    /// naming the files or the image.
    #[test]
    fn size_mismatches_are_errors() {
        let (pred, gt) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        stack(&gt.path().join("a.png"), 4, 4);
        stack(&pred.path().join("a.png"), 4, 4);
        png(&pred.path().join("a.png/layer-02.png"), 5, 4, [0; 4], None);
        let text = error(run(pred.path(), gt.path()));
        assert!(text.contains("layer-02.png: layer is 5x4, but") && text.contains("layer-00.png is 4x4"), "{text}");

        let pred = TempDir::new().unwrap();
        stack(&pred.path().join("a.png"), 4, 3);
        let text = error(run(pred.path(), gt.path()));
        assert!(text.contains("a.png: pred layers are 4x3, gt layers are 4x4"), "{text}");
    }

    /// A GT image with one layer: skipped with LayerD's reason when other images score; an
    /// error when it is the only image (nothing to score).
    #[test]
    fn one_layer_gt_is_skipped_or_an_error() {
        let (pred, gt) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        stack(&pred.path().join("one.png"), 4, 4);
        png(&gt.path().join("one.png/layer-00.png"), 4, 4, [1, 2, 3, 255], None);
        let text = error(run(pred.path(), gt.path()));
        assert!(text.contains("nothing to score: one.png: gt has 1 layer; LayerD's evaluation needs at least 2"), "{text}");

        stack(&pred.path().join("two.png"), 4, 4);
        stack(&gt.path().join("two.png"), 4, 4);
        let report = run(pred.path(), gt.path()).unwrap();
        assert_eq!(report.samples.len(), 1);
        assert_eq!(report.samples[0].name, "two.png");
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(report.skipped[0].name, "one.png");
        assert!(report.skipped[0].reason.starts_with("gt has 1 layer"));
        let value: serde_json::Value = serde_json::from_str(&to_json(&report)).unwrap();
        assert_eq!(value["skipped"][0]["name"], "one.png");
        assert_eq!(value["aggregated"][0]["count"], 1);
    }

    /// Missing, non-folder and empty PRED or GT folders are errors, as is a pair of
    /// folders with no image in common.
    #[test]
    fn missing_or_empty_folders_are_errors() {
        let (pred, gt) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        stack(&gt.path().join("a.png"), 4, 4);
        let text = error(run(pred.path(), gt.path()));
        assert!(text.starts_with("PRED folder") && text.contains("holds no layer stacks"), "{text}");
        let text = error(run(&pred.path().join("nope"), gt.path()));
        assert!(text.starts_with("PRED folder") && text.contains("cannot be read"), "{text}");
        stack(&pred.path().join("b.png"), 4, 4);
        let text = error(run(pred.path(), &gt.path().join("nope")));
        assert!(text.starts_with("GT folder"), "{text}");
        let text = error(run(pred.path(), &gt.path().join("a.png/layer-00.png")));
        assert!(text.contains("is not a folder"), "{text}");
        let text = error(run(pred.path(), gt.path()));
        assert!(text.starts_with("no image is in both"), "{text}");
    }

    /// A layer-NN.png that is not a PNG (garbage, or a JPEG under that name) and a
    /// layer-like file that is not *.png are errors naming the file.
    #[test]
    fn non_png_layers_are_errors() {
        let (pred, gt) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        stack(&gt.path().join("a.png"), 4, 4);
        stack(&pred.path().join("a.png"), 4, 4);
        std::fs::write(pred.path().join("a.png/layer-02.png"), b"not an image").unwrap();
        let text = error(run(pred.path(), gt.path()));
        assert!(text.contains("layer-02.png: not a readable PNG"), "{text}");

        let jpeg = image::RgbImage::new(4, 4);
        jpeg.save_with_format(pred.path().join("a.png/layer-02.png"), ImageFormat::Jpeg).unwrap();
        let text = error(run(pred.path(), gt.path()));
        assert!(text.contains("layer-02.png: not a readable PNG"), "{text}");

        std::fs::remove_file(pred.path().join("a.png/layer-02.png")).unwrap();
        std::fs::write(pred.path().join("a.png/layer-02.jpg"), b"x").unwrap();
        let text = error(run(pred.path(), gt.path()));
        assert!(text.contains("layer-02.jpg: not a PNG layer"), "{text}");
    }

    /// A truncated PNG (valid header, cut data) passes the size check and fails at
    /// decoding with the file named, not a panic.
    #[test]
    fn truncated_png_is_an_error() {
        let (pred, gt) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        stack(&gt.path().join("a.png"), 4, 4);
        stack(&pred.path().join("a.png"), 4, 4);
        let path = pred.path().join("a.png/layer-01.png");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let text = error(run(pred.path(), gt.path()));
        assert!(text.contains("layer-01.png"), "{text}");
    }

    /// LayerD's own layout (`0000.png`, `0001.png`) reads as a stack; mixing it with
    /// layer-NN.png in one folder is an error.
    #[test]
    fn layerd_numbered_layers() {
        let (pred, gt) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        stack(&pred.path().join("a"), 4, 4);
        png(&gt.path().join("a/0000.png"), 4, 4, [20, 30, 40, 255], None);
        png(&gt.path().join("a/0001.png"), 4, 4, [0, 0, 0, 0], Some(((1, 1, 3, 3), [200, 0, 0, 255])));
        let report = run(pred.path(), gt.path()).unwrap();
        assert_eq!(report.samples[0].scores[0].cost, 0.0);
        png(&gt.path().join("a/layer-00.png"), 4, 4, [0; 4], None);
        let text = error(run(pred.path(), gt.path()));
        assert!(text.contains("mixes layer-NN.png"), "{text}");
    }

    /// A prediction `<id>.png` (Lamina names folders by input file) matches a reference
    /// `<id>` (LayerD's dataset naming) when no reference has the full name and no other
    /// prediction claims it; ambiguous claims stay unmatched.
    #[test]
    fn names_match_without_extension() {
        let (pred, gt) = (TempDir::new().unwrap(), TempDir::new().unwrap());
        stack(&pred.path().join("test/000123.png"), 4, 4);
        stack(&gt.path().join("test/000123"), 4, 4);
        stack(&pred.path().join("x.png"), 4, 4);
        stack(&pred.path().join("x.jpg"), 4, 4);
        stack(&gt.path().join("x"), 4, 4);
        let report = run(pred.path(), gt.path()).unwrap();
        assert_eq!(report.samples.len(), 1);
        assert_eq!(report.samples[0].name, "test/000123.png");
        assert_eq!(report.only_in_pred, vec!["x.jpg", "x.png"]);
        assert_eq!(report.only_in_gt, vec!["x"]);
    }

    /// Pillow's `convert("RGBA")` for 16-bit PNGs: colour by the high byte, grey clipped.
    #[test]
    fn sixteen_bit_like_pillow() {
        let im = ImageBuffer::<Px<u16>, _>::from_raw(1, 1, vec![0x1234, 0xff00, 0x00ff, 0x8080]).unwrap();
        let rgba = to_rgba_like_pillow(DynamicImage::ImageRgba16(im));
        assert_eq!(rgba.data, vec![0x12, 0xff, 0x00, 0x80]);
        let grey = ImageBuffer::<image::Luma<u16>, _>::from_raw(2, 1, vec![200, 1000]).unwrap();
        assert_eq!(to_rgba_like_pillow(DynamicImage::ImageLuma16(grey)).data, vec![200, 200, 200, 255, 255, 255, 255, 255]);
    }

    /// Python's float repr, as `json.dump` writes floats.
    #[test]
    fn python_float_repr() {
        for (x, s) in [
            (0.0, "0.0"),
            (1.0, "1.0"),
            (0.5, "0.5"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (3.2e-5, "3.2e-05"),
            (1.5e-7, "1.5e-07"),
            (123.456, "123.456"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345e17, "1.2345e+17"),
            (0.30000000000000004, "0.30000000000000004"),
            (-2.5, "-2.5"),
            (1.0 / 3.0, "0.3333333333333333"),
        ] {
            assert_eq!(py_float_repr(x), s, "{x}");
        }
        let mut out = String::new();
        py_json_string("a\"b\\c\u{7f}é😀", &mut out);
        assert_eq!(out, r#""a\"b\\c\u007f\u00e9\ud83d\ude00""#);
    }
}

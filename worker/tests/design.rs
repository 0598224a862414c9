//! Proves the design family on a graphic made for the repository (assets/designs/poster.png:
//! a gradient background, a photo, a stripe, a disc with a hole, an outlined badge and three
//! lines of text in known colours):
//! - the text detector and the recogniser, converted to TorchScript and run by Lamina's
//!   libtorch, give what onnxruntime gives from the pinned ONNX files on the same input (the
//!   detector's probability map, the recogniser's class probabilities for each box found on
//!   the poster);
//! - the poster comes apart into its roles, bottom to top: background, the photo as an image
//!   layer, the shapes, the text; each text layer reads the words drawn there and has the
//!   text's true colour, the stripe is
//!   crisp (alpha 1 inside, 0 outside), the gradient background is continued exactly under
//!   the stripe, and the layers recomposite to the poster (>= 35 dB);
//! - a photo with no design in it still gives an opaque background and a stack that
//!   recomposites; a blank image gives its background alone; tiny and one-pixel-thin images
//!   give a stack too;
//! - an image over the memory budget for a whole stack takes the streamed path, whose bands
//!   hold byte for byte the layers (and roles and words) of the whole path; one whose working set
//!   would not fit either is refused with the reason.
//!
//! Needs the detector and the recogniser (`ops/fetch-models.sh small`) and, for the reference, the project
//! venv's python with onnxruntime (`LAMINA_PYTHON`, set by ops/test.sh).

use std::path::PathBuf;
use std::process::Command;

use lamina_common::manifest::{LayerLabel, LayerRole};
use lamina_common::params::DecomposeParams;
use lamina_engine::design::detect::TextDetector;
use lamina_engine::design::layout::Image;
use lamina_engine::design::read::TextReader;
use lamina_engine::objects::models_dir;
use lamina_worker::runtime::{quantise, Batch, Model, ModelError};
use tch::{Device, Kind, Tensor};

mod stacks;
use stacks::{composite, psnr, Collect};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn image(path: &str) -> Tensor {
    let bytes = std::fs::read(root().join(path)).unwrap();
    let d = lamina_worker::decode::decode(&bytes, u64::MAX).unwrap();
    Tensor::from_slice(&d.rgb).view([1, 3, i64::from(d.height), i64::from(d.width)])
}

fn design() -> Box<dyn Model> {
    let spec = lamina_families::ModelSpec::parse("design").unwrap();
    lamina_engine::load(&spec, Device::Cpu).unwrap()
}

/// The model's layers `[L,4,H,W]` and labels for one image.
fn labelled(model: &dyn Model, images: &Tensor) -> (Tensor, Vec<LayerLabel>) {
    let s = images.size();
    let out = model.decompose(&Batch { images, sizes: &[(s[2], s[3])], alpha: None }, &DecomposeParams::default()).unwrap();
    let count = out.sources[0].len() as i64;
    (out.layers.get(0).narrow(0, 0, count), out.labels[0][..count as usize].to_vec())
}

/// The model's layers `[L,4,H,W]` and roles for one image.
fn run(model: &dyn Model, images: &Tensor) -> (Tensor, Vec<LayerRole>) {
    let (layers, labels) = labelled(model, images);
    (layers, labels.iter().map(|l| l.role).collect())
}

/// What onnxruntime makes of `input` with the ONNX file `model` in the models folder.
fn onnxruntime(model: &str, input: &Tensor) -> Tensor {
    let dir = tempfile::tempdir().unwrap();
    let raw: Vec<f32> = Vec::try_from(input.contiguous().view([-1])).unwrap();
    std::fs::write(dir.path().join("in.f32"), raw.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let shape = input.size().iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    let script = format!(
        "import numpy as np, onnxruntime as ort\n\
         x = np.fromfile(r'{}', dtype='<f4').reshape({shape})\n\
         s = ort.InferenceSession(r'{}', providers=['CPUExecutionProvider'])\n\
         y = s.run(None, {{s.get_inputs()[0].name: x}})[0]\n\
         y.astype('<f4').tofile(r'{}')\n\
         open(r'{}', 'w').write(' '.join(map(str, y.shape)))\n",
        dir.path().join("in.f32").display(),
        models_dir().join(model).display(),
        dir.path().join("out.f32").display(),
        dir.path().join("out.shape").display()
    );
    let python = std::env::var("LAMINA_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(python).arg("-c").arg(script).status().unwrap();
    assert!(status.success(), "onnxruntime did not run {model}");
    let bytes = std::fs::read(dir.path().join("out.f32")).unwrap();
    let values: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let shape: Vec<i64> = std::fs::read_to_string(dir.path().join("out.shape")).unwrap().split(' ').map(|v| v.parse().unwrap()).collect();
    Tensor::from_slice(&values).view(shape.as_slice())
}


fn at(t: &Tensor, c: i64, y: i64, x: i64) -> f64 {
    t.double_value(&[c, y, x])
}

#[test]
fn the_detector_agrees_with_onnxruntime() {
    let detector = TextDetector::load(Device::Cpu).unwrap();
    let input = TextDetector::input(&image("assets/designs/poster.png").get(0)).unwrap();
    let ours = detector.forward(&input).unwrap();
    let theirs = onnxruntime("ppocr_det.onnx", &input);
    let s = input.size();
    let worst = f64::try_from((ours.to_kind(Kind::Float) - &theirs).abs().max()).unwrap();
    println!("text detector on the poster ({}x{}): largest difference from onnxruntime {worst:.2e}", s[3], s[2]);
    assert!(worst < 1e-4, "{worst}");
    // It does find text there.
    assert!(f64::try_from(theirs.max()).unwrap() > 0.9);
}

#[test]
fn the_recogniser_agrees_with_onnxruntime() {
    let reader = TextReader::load(Device::Cpu).unwrap();
    let poster = image("assets/designs/poster.png");
    let boxes = TextDetector::load(Device::Cpu).unwrap().detect(&poster.get(0), 800, 560).unwrap();
    // The three lines of words (and the disc with a hole, which reads as a letter to the
    // detector; the layout keeps it a shape).
    assert!(boxes.len() >= 3, "{boxes:?}");
    let rgb: Vec<f32> = Vec::try_from(poster.contiguous().view([-1])).unwrap();
    let whole = Image { rgb: &rgb, width: 800, height: 560 };
    for b in boxes {
        let input = TextReader::input(&whole, [b.x0, b.y0, b.x1, b.y1]).unwrap().unsqueeze(0);
        let ours = reader.forward(&input).unwrap();
        let theirs = onnxruntime("ppocr_rec.onnx", &input);
        assert_eq!(ours.size(), theirs.size());
        assert_eq!(ours.size()[2], reader.classes() as i64, "the character list does not fit the network");
        let worst = f64::try_from((ours.to_kind(Kind::Float) - &theirs).abs().max()).unwrap();
        // The same character wins in every column.
        let same = ours.argmax(2, false).eq_tensor(&theirs.argmax(2, false)).all();
        println!("text recogniser on the poster's line at {b:?} ({} columns): largest difference from onnxruntime {worst:.2e}", ours.size()[1]);
        assert!(worst < 1e-4 && bool::try_from(same).unwrap(), "{worst}");
    }
}

#[test]
fn a_poster_comes_apart_into_its_roles() {
    let model = design();
    let poster = image("assets/designs/poster.png");
    let (layers, labels) = labelled(&*model, &poster);
    let roles: Vec<LayerRole> = labels.iter().map(|l| l.role).collect();
    use LayerRole::*;
    assert_eq!(roles, vec![Background, Image, Shape, Shape, Shape, Shape, Text, Text, Text], "{roles:?}");
    // The text layers read the words make_poster.py drew; no other layer has words.
    let mut words: Vec<&str> = labels.iter().filter_map(|l| l.text.as_deref()).collect();
    words.sort();
    assert_eq!(words, ["45", "SPRING SALE", "photo shoot ideas"], "{labels:?}");
    assert!(labels.iter().all(|l| l.text.is_none() || l.role == Text));
    // The background is opaque; under the stripe it is the gradient the poster was drawn
    // with (make_poster.py), to the 8-bit step.
    let bg = layers.get(0);
    assert_eq!(f64::try_from(bg.narrow(0, 3, 1).min()).unwrap(), 1.0);
    for x in [10i64, 400, 790] {
        let t = x as f64 / 799.0;
        let want = [(250.0 - 40.0 * t).floor(), (236.0 - 30.0 * t).floor(), (220.0 + 20.0 * t).floor()];
        for c in 0..3 {
            let got = at(&bg, c, 320, x) * 255.0;
            assert!((got - want[c as usize]).abs() <= 1.0, "background channel {c} at ({x}, 320): {got}, drawn {}", want[c as usize]);
        }
    }
    // The photo is an image layer covering exactly where it was pasted.
    let photo = layers.get(1).narrow(0, 3, 1);
    assert_eq!(f64::try_from(photo.narrow(1, 60, 200).narrow(2, 450, 300).min()).unwrap(), 1.0);
    assert_eq!(f64::try_from(photo.sum(Kind::Float)).unwrap(), 300.0 * 200.0);
    // The stripe: crisp, its own colour.
    let stripe = layers.get(2);
    let alpha = stripe.narrow(0, 3, 1);
    assert_eq!(f64::try_from(alpha.narrow(1, 300, 41).min()).unwrap(), 1.0);
    assert_eq!(f64::try_from(alpha.sum(Kind::Float)).unwrap(), 800.0 * 41.0);
    assert!((at(&stripe, 0, 320, 400) * 255.0 - 233.0).abs() < 0.5 && (at(&stripe, 1, 320, 400) * 255.0 - 30.0).abs() < 0.5);
    // Each text layer is one colour, the text's own, wherever it is visible.
    let drawn = [[26.0, 26.0, 26.0], [255.0, 120.0, 0.0], [120.0, 40.0, 160.0]];
    for i in 6..9 {
        let layer = layers.get(i);
        let visible = layer.narrow(0, 3, 1).gt(0.0);
        let count = f64::try_from(visible.sum(Kind::Float)).unwrap();
        assert!(count > 500.0, "text layer {i} has {count} visible pixels");
        let mean: Vec<f64> = (0..3).map(|c| f64::try_from((layer.get(c) * visible.get(0)).sum(Kind::Float)).unwrap() / count * 255.0).collect();
        let nearest = drawn.iter().map(|d| (0..3).map(|c| (d[c] - mean[c]).abs()).fold(0.0, f64::max)).fold(f64::MAX, f64::min);
        assert!(nearest <= 2.0, "text layer {i}'s colour {mean:?} is none of the drawn {drawn:?}");
        // Anti-aliased edges: fractional alpha exists, and no colour fringe comes with it.
        let soft = f64::try_from(layer.narrow(0, 3, 1).gt(0.05).logical_and(&layer.narrow(0, 3, 1).lt(0.95)).sum(Kind::Float)).unwrap();
        assert!(soft > 10.0, "text layer {i} has no soft edge");
    }
    let rebuilt = composite(&layers);
    let db = psnr(&rebuilt, &poster.get(0));
    println!("poster: {} layers, recomposite {db:.1} dB", roles.len());
    assert!(db >= 35.0, "{db}");
}

#[test]
fn a_photo_gives_a_stack_and_a_blank_image_its_background() {
    let model = design();
    let photo = image("assets/samples/chelsea.png");
    let (layers, roles) = run(&*model, &photo);
    assert_eq!(roles[0], LayerRole::Background);
    assert_eq!(f64::try_from(layers.get(0).narrow(0, 3, 1).min()).unwrap(), 1.0);
    let db = psnr(&composite(&layers), &photo.get(0));
    println!("chelsea: {} layers ({roles:?}), recomposite {db:.1} dB", roles.len());
    assert!(db >= 35.0, "{db}");
    let blank = Tensor::full([1, 3, 96, 128], 0.25, (Kind::Float, Device::Cpu));
    let (layers, roles) = run(&*model, &blank);
    assert_eq!(roles, vec![LayerRole::Background]);
    assert!(f64::try_from((layers.get(0).narrow(0, 0, 3) - 0.25).abs().max()).unwrap() < 1e-6);
    // Tiny and thin images: a stack, never a panic.
    for (h, w) in [(1, 1), (2, 3), (1, 64), (64, 1)] {
        let tiny = Tensor::rand([1, 3, h, w], (Kind::Float, Device::Cpu));
        let (layers, roles) = run(&*model, &tiny);
        assert_eq!(roles[0], LayerRole::Background, "{w}x{h}");
        assert!(psnr(&composite(&layers), &tiny.get(0)) >= 35.0, "{w}x{h}");
    }
}

#[test]
fn the_streamed_path_gives_the_whole_paths_layers_in_bands() {
    let model = design();
    let bytes = std::fs::read(root().join("assets/designs/poster.png")).unwrap();
    let decoded = lamina_worker::decode::decode(&bytes, u64::MAX).unwrap();
    let poster = image("assets/designs/poster.png");
    let (whole, labels) = labelled(&*model, &poster);
    let mut sink = Collect::default();
    model.decompose_large(&decoded, &DecomposeParams::default(), 256 << 20, &mut sink).unwrap();
    assert_eq!(sink.labels, labels);
    assert!(sink.bands > 1, "{} bands", sink.bands);
    let expected = quantise(&whole).unwrap();
    assert_eq!(sink.layers.len(), expected.len());
    for (i, (got, want)) in sink.layers.iter().zip(&expected).enumerate() {
        assert!(got == want, "layer {i} differs from the whole path's");
    }
    let refused = model.decompose_large(&decoded, &DecomposeParams::default(), 1 << 20, &mut Collect::default()).unwrap_err();
    assert!(matches!(refused, ModelError::TooLarge { .. }) && refused.to_string().contains("raise --memory-budget"), "{refused}");
}

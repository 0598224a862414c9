//! Proves the bring-your-own-model backend: a TorchScript model that keeps the contract runs
//! and its layers rebuild the image; models that break it (shape, NaN, range), a model file
//! that does not match its card's sha256, and a missing card are refused with an error that
//! names the model and what was wrong. The fixtures are made by
//! `tests/fixtures/create_jit_models.py` with the project venv's python.

use std::path::{Path, PathBuf};
use std::process::Command;

use lamina_common::params::DecomposeParams;
use lamina_worker::runtime::{self, Batch, ModelError};
use tch::{Device, Kind, Tensor};

fn fixtures() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/create_jit_models.py");
    let python = std::env::var("LAMINA_PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python).arg(&script).arg(dir.path()).status().expect("run python");
    assert!(status.success(), "{python} {} failed (is the project venv on PATH?)", script.display());
    dir
}

fn load(dir: &Path, name: &str) -> Result<Box<dyn runtime::Model>, ModelError> {
    runtime::load(&format!("torchscript:{}", dir.join(format!("{name}.pt")).display()), Device::Cpu)
}

fn run(m: &dyn runtime::Model, images: &Tensor) -> Result<runtime::Decomposed, ModelError> {
    let (_, _, h, w) = images.size4().unwrap();
    let sizes = vec![(h, w); images.size()[0] as usize];
    m.decompose(&Batch { images, sizes: &sizes, alpha: None }, &DecomposeParams::default())
}

#[test]
fn a_model_that_keeps_the_contract_rebuilds_the_image() {
    let dir = fixtures();
    let m = load(dir.path(), "two_layer").unwrap();
    assert_eq!(m.desc().id, "two-layer@1");
    assert_eq!(m.desc().layers, 2);
    let images = Tensor::rand([2, 3, 16, 24], (Kind::Float, Device::Cpu));
    let out = run(&*m, &images).unwrap();
    assert_eq!(out.layers.size(), [2, 2, 4, 16, 24]);
    // Over-composite bottom to top and compare with the input.
    let bottom = out.layers.narrow(1, 0, 1).squeeze_dim(1);
    let top = out.layers.narrow(1, 1, 1).squeeze_dim(1);
    let a = top.narrow(1, 3, 1);
    let rebuilt: Tensor = top.narrow(1, 0, 3) * &a + bottom.narrow(1, 0, 3) * (1.0 - &a);
    assert!(f64::try_from((rebuilt - &images).abs().max()).unwrap() < 1e-6);
    assert_eq!(out.sources[0], vec![vec![0], vec![1]]);
}

#[test]
fn contract_breaches_are_refused_with_the_reason() {
    let dir = fixtures();
    let images = Tensor::rand([1, 3, 8, 8], (Kind::Float, Device::Cpu));
    for (name, expected) in [
        ("bad_shape", "model bad-shape@1 broke the output contract: output shape [1, 3, 8, 8], expected [1, 2, 4, 8, 8]"),
        ("nan_output", "model nan-output@1 broke the output contract: output contains NaN"),
        ("out_of_range", "model out-of-range@1 broke the output contract: output values span [2.0000, 2.0000], outside [0, 1]"),
    ] {
        let m = load(dir.path(), name).unwrap();
        let err = run(&*m, &images).err().expect("breach accepted");
        assert_eq!(err.to_string(), expected);
    }
}

#[test]
fn a_model_that_does_not_match_its_card_is_not_loaded() {
    let dir = fixtures();
    let card = dir.path().join("two_layer.json");
    let text = std::fs::read_to_string(&card).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let good = json["sha256"].as_str().unwrap().to_owned();
    std::fs::write(&card, text.replace(&good, &"0".repeat(64))).unwrap();
    let err = load(dir.path(), "two_layer").err().expect("tampered model loaded").to_string();
    assert!(err.contains("two_layer.pt: sha256") && err.contains("does not match"), "{err}");

    std::fs::remove_file(&card).unwrap();
    let err = load(dir.path(), "two_layer").err().expect("model without card loaded").to_string();
    assert!(err.contains("two_layer.json: cannot read model card"), "{err}");
}

#[test]
fn parameters_the_model_cannot_honour_are_refused() {
    let dir = fixtures();
    let m = load(dir.path(), "two_layer").unwrap();
    let palette = DecomposeParams { palette: Some(vec![[0, 0, 0]; 7]), ..DecomposeParams::default() };
    assert!(m.check_params(&palette).is_err());
    let fewer = DecomposeParams { layers: Some(lamina_common::params::LayerCount::Count(1)), ..DecomposeParams::default() };
    assert!(m.check_params(&fewer).unwrap_err().to_string().contains("cannot merge"));
    assert!(runtime::load("nonsense", Device::Cpu).is_err());
}

//! Proves the tch port of FSCS computes what the authors' reference implementation computes:
//! with the reference's palettes, its alpha-add layers (before Lamina's clamp/renormalise/
//! convert steps), clamped and rounded to 8 bits as the reference saved them, match the
//! reference's layers to a mean absolute difference of at most 0.5/255 per channel.

use std::path::PathBuf;

use lamina_engine::fscs::Fscs;
use tch::{Device, Kind, Tensor};

const TOLERANCE: f64 = 0.5 / 255.0;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/fscs").join(name)
}

fn check_vector(model: &Fscs, name: &str) -> f64 {
    let input = image::open(data(name).join("input.png")).unwrap().to_rgb8();
    let (w, h) = (input.width() as i64, input.height() as i64);
    let pixels: Vec<f32> = input.as_raw().iter().map(|&v| f32::from(v) / 255.0).collect();
    let image = Tensor::from_slice(&pixels).view([h, w, 3]).permute([2, 0, 1]).unsqueeze(0);

    let card: serde_json::Value = serde_json::from_slice(&std::fs::read(data(name).join("palette.json")).unwrap()).unwrap();
    let palette: Vec<f32> = card["palette_rgb8"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32 / 255.0).collect::<Vec<_>>())
        .collect();
    let palette = Tensor::from_slice(&palette).view([1, 7, 3]);

    let (colour, alpha) = model.alpha_add(&image, &palette);
    let layers = Tensor::cat(&[colour, alpha], 2).get(0);
    let quantised = (layers.clamp(0.0, 1.0) * 255.0 + 0.5).floor().to_kind(Kind::Uint8);

    let mut worst = 0f64;
    for layer in 0..7 {
        let path = data(name).join(format!("expected/layer-{layer:02}.png"));
        let expected = image::open(&path).unwrap().to_rgba8();
        assert_eq!((expected.width() as i64, expected.height() as i64), (w, h));
        let ours = Vec::<u8>::try_from(quantised.get(layer).permute([1, 2, 0]).contiguous().view(-1)).unwrap();
        for channel in 0..4 {
            let total: u64 = ours
                .iter()
                .skip(channel)
                .step_by(4)
                .zip(expected.as_raw().iter().skip(channel).step_by(4))
                .map(|(&a, &b)| u64::from(a.abs_diff(b)))
                .sum();
            let mad = total as f64 / (w * h) as f64 / 255.0;
            println!("{name} layer {layer} channel {channel}: mean abs diff {:.4}/255", mad * 255.0);
            worst = worst.max(mad);
        }
    }
    assert!(worst <= TOLERANCE, "{name}: worst mean abs diff {:.4}/255 > 0.5/255", worst * 255.0);
    worst
}

#[test]
fn matches_the_reference_layers_on_all_vectors() {
    let model = Fscs::load(Device::Cpu).unwrap();
    for name in ["astronaut", "chelsea", "coffee"] {
        let worst = check_vector(&model, name);
        println!("{name}: worst channel mean abs diff {:.4}/255", worst * 255.0);
    }
}

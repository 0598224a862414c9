//! Proves that an image of any size runs in memory bounded by the budget, and what the fast
//! mode gives up:
//! - FSCS forced into many small tiles (a tiny budget) writes the same layers as the whole
//!   image in one pass, within 1/255 mean absolute, with the same palette and merges;
//! - fast mode (the networks at a reduced size, layers brought back by guided upsampling)
//!   rebuilds the image about as well as reference mode;
//! - a model that cannot tile refuses an image over the budget with the reason, and the
//!   worker's batches never hold more than the budget allows.

use std::sync::Arc;

use lamina_common::params::{DecomposeParams, LayerCount, Quality};
use lamina_worker::decode::{decode, Decoded};
use lamina_worker::runtime::{self, quantise, Batch, Model, ModelError};
use tch::{Device, Tensor};

mod stacks;
use stacks::Collect;

/// A bundled test photo, resized to `w x h`.
fn photo(w: u32, h: u32) -> Arc<Decoded> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/samples/astronaut.png");
    let img = image::open(path).unwrap().resize_exact(w, h, image::imageops::FilterType::Triangle);
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    Arc::new(decode(&png, 100_000_000).unwrap())
}

/// The whole image in one forward pass, as the worker runs images that fit.
fn whole(m: &dyn Model, image: &Decoded, params: &DecomposeParams) -> Collect {
    let (h, w) = (i64::from(image.height), i64::from(image.width));
    let (ph, pw) = ((h + 7) / 8 * 8, (w + 7) / 8 * 8);
    let t = Tensor::from_slice(&image.rgb).view([1, 3, h, w]).replication_pad2d([0, pw - w, 0, ph - h]);
    let out = m.decompose(&Batch { images: &t, sizes: &[(h, w)], alpha: None }, params).unwrap();
    let layers = quantise(&out.layers.get(0).narrow(2, 0, h).narrow(3, 0, w)).unwrap();
    Collect { sources: out.sources[0].clone(), palette: out.palettes[0].clone(), layers, bands: 1, ..Collect::default() }
}

/// Mean and largest absolute difference of two stacks, in 1/255 steps.
fn difference(a: &[Vec<u8>], b: &[Vec<u8>]) -> (f64, u8) {
    let (mut sum, mut max, mut n) = (0u64, 0u8, 0u64);
    for (la, lb) in a.iter().zip(b) {
        assert_eq!(la.len(), lb.len());
        for (&x, &y) in la.iter().zip(lb) {
            let d = x.abs_diff(y);
            sum += u64::from(d);
            max = max.max(d);
            n += 1;
        }
    }
    (sum as f64 / n as f64, max)
}

/// PSNR (dB) of the stack composited bottom to top against the image.
fn psnr(layers: &[Vec<u8>], image: &Decoded) -> f64 {
    let n = image.width as usize * image.height as usize;
    let rebuilt = lamina_worker::encode::recomposite(layers.iter().map(Vec::as_slice), n);
    let mut se = 0f64;
    for (i, px) in rebuilt.iter().enumerate() {
        for c in 0..3 {
            let d = f64::from(px[c]) - f64::from(image.rgb[c * n + i]);
            se += d * d;
        }
    }
    10.0 * (3.0 * n as f64 / se).log10()
}

#[test]
fn tiles_write_the_layers_the_whole_image_writes() {
    let m = runtime::load("fscs", Device::Cpu).unwrap();
    // 300 x 212: not a multiple of the tile or of 8, so edge tiles are partial and padded.
    let image = photo(300, 212);
    // A budget this small forces the smallest tiles: windows of 128 with middle cores of 32
    // (edge cores, with context on one side only, 80): 4 x 7 of them.
    let budget = 64 << 10;
    for layers in [None, Some(LayerCount::Count(3)), Some(LayerCount::Auto)] {
        let params = DecomposeParams { layers, ..DecomposeParams::default() };
        assert!(runtime::runs_large(m.desc(), image.width, image.height, &params, budget));
        assert!(!runtime::runs_large(m.desc(), image.width, image.height, &params, 2 << 30));
        let reference = whole(&*m, &image, &params);
        let mut tiled = Collect::default();
        m.decompose_large(&image, &params, budget, &mut tiled).unwrap();
        assert_eq!(tiled.bands, 4, "one band per row of tiles");
        assert_eq!(tiled.palette, reference.palette, "the palette is the whole image's");
        assert_eq!(tiled.sources, reference.sources, "merges are planned from the whole image");
        let (mean, max) = difference(&tiled.layers, &reference.layers);
        eprintln!("layers {layers:?}: tiled vs whole: mean |diff| {mean:.4}/255, max {max}/255");
        assert!(mean <= 1.0, "mean difference {mean}/255 over 1/255");
        let (pt, pr) = (psnr(&tiled.layers, &image), psnr(&reference.layers, &image));
        assert!((pt - pr).abs() < 0.1, "tiled {pt:.2} dB vs whole {pr:.2} dB");
    }
}

#[test]
fn fast_mode_rebuilds_the_image_about_as_well_as_reference_mode() {
    let m = runtime::load("fscs", Device::Cpu).unwrap();
    let image = photo(384, 288);
    // Under this budget fast mode runs the networks on at most budget/1800 pixels: here the
    // image reduced 2 x 2 (192 x 144).
    let budget = 48_000 * 1800;
    let fast = DecomposeParams { quality: Quality::Fast, ..DecomposeParams::default() };
    assert!(runtime::runs_large(m.desc(), image.width, image.height, &fast, budget));
    assert!(!runtime::runs_large(m.desc(), image.width, image.height, &DecomposeParams::default(), budget * 4));
    let mut out = Collect::default();
    m.decompose_large(&image, &fast, budget, &mut out).unwrap();
    assert_eq!(out.layers.len(), 7);
    assert!(out.layers.iter().all(|l| l.len() == 384 * 288 * 4));
    let reference = whole(&*m, &image, &DecomposeParams::default());
    let (pf, pr) = (psnr(&out.layers, &image), psnr(&reference.layers, &image));
    eprintln!("recomposite PSNR: fast {pf:.2} dB, reference {pr:.2} dB");
    assert!(pf >= pr - 0.5, "fast {pf:.2} dB is more than 0.5 dB under reference {pr:.2} dB");
    // Merging works in fast mode too.
    let three = DecomposeParams { layers: Some(LayerCount::Count(3)), quality: Quality::Fast, ..DecomposeParams::default() };
    let mut merged = Collect::default();
    m.decompose_large(&image, &three, budget, &mut merged).unwrap();
    assert_eq!(merged.sources.len(), 3);
    assert!(psnr(&merged.layers, &image) > 30.0);
}

#[test]
fn a_model_that_cannot_tile_refuses_an_image_over_the_budget() {
    let m = runtime::load("capacity-test:0", Device::Cpu).unwrap();
    let image = photo(64, 48);
    let params = DecomposeParams::default();
    let budget = 1000;
    assert!(runtime::runs_large(m.desc(), 64, 48, &params, budget));
    let err = m.decompose_large(&image, &params, budget, &mut Collect::default()).unwrap_err();
    assert!(matches!(err, ModelError::TooLarge { .. }));
    let text = err.to_string();
    assert!(text.contains("64x48") && text.contains("over the memory budget of 1000 B") && text.contains("--memory-budget"), "{text}");
}

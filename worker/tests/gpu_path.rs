//! The GPU path's parts, proved on the CPU:
//! - images of mixed sizes padded to one size bucket and run in one forward pass (as a GPU
//!   lane runs a batch) give each image the layers it gets alone, within 1/255 mean
//!   absolute;
//! - the networks in bf16 stay close to fp32 (the steps around them stay fp32), and a model
//!   can go back to fp32 exactly;
//! - start-up calibration measures a footprint that grows with the image, and keeps the
//!   model's own figure when told not to measure;
//! - two lanes on one device load two replicas that decompose alike;
//! - with `--precision auto` fast mode runs the networks in bf16 on a CPU with bf16
//!   instructions (within 1/255 of fp32) while reference mode stays fp32 bit for bit, one
//!   lane serving both.

use std::sync::Arc;

use lamina_common::params::{DecomposeParams, Quality};
use lamina_worker::decode::{decode, Decoded};
use lamina_worker::runtime::calibrate::{calibrate, warm_up_image, WarmUp};
use lamina_worker::runtime::{self, Batch, Precision, PrecisionChoice};
use lamina_worker::pipeline::{bucket_side, decompose_stacked};
use tch::{Device, Kind, Tensor};

/// Calibration measures the whole process's peak memory, so the tests that run models take
/// turns (the test harness runs them on parallel threads).
static TURNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURNS.lock().unwrap_or_else(|p| p.into_inner())
}

fn photo(name: &str, w: u32, h: u32) -> Arc<Decoded> {
    let path = format!("{}/../assets/samples/{name}", env!("CARGO_MANIFEST_DIR"));
    let img = image::open(path).unwrap().resize_exact(w, h, image::imageops::FilterType::Triangle);
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    Arc::new(decode(&png, 100_000_000).unwrap())
}

fn padded(image: &Decoded) -> (i64, i64) {
    ((i64::from(image.height) + 7) / 8 * 8, (i64::from(image.width) + 7) / 8 * 8)
}

/// Mean and largest absolute difference of two images' layers, on the 0-1 scale.
fn diff(a: &[Vec<u8>], b: &[Vec<u8>]) -> (f64, f64) {
    assert_eq!(a.len(), b.len(), "layer counts differ");
    let (mut sum, mut max, mut n) = (0.0f64, 0.0f64, 0usize);
    for (la, lb) in a.iter().zip(b) {
        assert_eq!(la.len(), lb.len());
        for (&x, &y) in la.iter().zip(lb) {
            let d = f64::from(x.abs_diff(y)) / 255.0;
            sum += d;
            max = max.max(d);
        }
        n += la.len();
    }
    (sum / n as f64, max)
}

#[test]
fn mixed_sizes_in_one_bucket_match_their_unbatched_layers() {
    let _turn = turn();
    let m = runtime::load("fscs", Device::Cpu).unwrap();
    let images = [photo("astronaut.png", 226, 161), photo("coffee.png", 232, 170), photo("chelsea.png", 240, 176)];
    let buckets: Vec<(i64, i64)> = images.iter().map(|i| (bucket_side(padded(i).0, 8), bucket_side(padded(i).1, 8))).collect();
    assert!(buckets.iter().all(|b| *b == buckets[0]), "one bucket for all three: {buckets:?}");
    let shape = buckets[0];
    assert_eq!(shape, (176, 240));
    for params in [DecomposeParams::default(), DecomposeParams { layers: Some(lamina_common::params::LayerCount::Count(4)), ..Default::default() }] {
        let refs: Vec<&Decoded> = images.iter().map(|i| &**i).collect();
        let batched = decompose_stacked(&*m, &refs, shape, &params).unwrap();
        for (image, together) in images.iter().zip(&batched) {
            let alone = decompose_stacked(&*m, &[&**image], padded(image), &params).unwrap().remove(0);
            let (mean, max) = diff(&alone, together);
            println!("{}x{} in a {}x{} batch: mean |diff| {mean:.5}, max {max:.3}", image.width, image.height, shape.1, shape.0);
            assert!(mean <= 1.0 / 255.0, "{}x{}: mean |diff| {mean} over 1/255", image.width, image.height);
        }
    }
}

/// `[1,L,4,H,W]` layers of one forward pass at the model's current precision.
fn layers(m: &dyn runtime::Model, image: &Tensor) -> Tensor {
    let (_, _, h, w) = image.size4().unwrap();
    m.decompose(&Batch { images: image, sizes: &[(h, w)], alpha: None }, &DecomposeParams::default()).unwrap().layers
}

#[test]
fn bf16_networks_stay_close_to_fp32_and_fp32_comes_back_exactly() {
    let _turn = turn();
    for spec in ["fscs", "objects-small"] {
        let mut m = runtime::load(spec, Device::Cpu).unwrap();
        let image = warm_up_image(128, Device::Cpu);
        let fp32 = layers(&*m, &image);
        m.set_precision(Precision::Bf16).unwrap();
        assert_eq!(m.precision(), Precision::Bf16);
        let bf16 = layers(&*m, &image);
        assert_eq!(bf16.kind(), Kind::Float, "{spec}: layers stay fp32");
        assert_eq!(bf16.size(), fp32.size());
        let mean = f64::try_from((&bf16 - &fp32).abs().mean(Kind::Double)).unwrap();
        println!("{spec}: bf16 networks, mean |diff| from fp32 {mean:.5}");
        // bf16 keeps 8 bits of mantissa: its layers are near fp32's (FSCS within 1/255 mean
        // absolute, U2-Netp's mattes not: the start-up trial measures each precision and
        // `auto` keeps only those within 1/255).
        assert!(mean > 0.0 && mean < 0.05, "{spec}: {mean}");
        m.set_precision(Precision::Fp32).unwrap();
        let back = layers(&*m, &image);
        assert!(back.equal(&fp32), "{spec}: fp32 again gives the same layers bit for bit");
    }
}

#[test]
fn calibration_measures_a_footprint_on_the_cpu_or_keeps_the_models_figure() {
    let _turn = turn();
    let mut m = runtime::load("fscs", Device::Cpu).unwrap();
    let assumed = calibrate(&mut *m, PrecisionChoice::Auto, WarmUp::Off).unwrap();
    assert!(!assumed.measured);
    assert_eq!(assumed.footprint.per_pixel, m.desc().bytes_per_pixel);
    assert_eq!(assumed.precision, Precision::Fp32, "auto is fp32 on a CPU");
    let measured = calibrate(&mut *m, PrecisionChoice::Auto, WarmUp::On).unwrap();
    println!("fscs on the CPU: {:?}", measured.footprint);
    if measured.measured {
        // The measurement is of the real process: hundreds of bytes to a few KB per pixel.
        assert!((100..20_000).contains(&measured.footprint.per_pixel), "{:?}", measured.footprint);
        // And an image's share grows with its pixels: from 256^2 to 1024^2 by at least 100 B
        // for each pixel added. (The fixed part is the process's, model and runtime: how much
        // of it the allocator still holds varies from run to run, so no ratio of the totals.)
        let small = measured.image_bytes(m.desc(), 256, 256);
        let big = measured.image_bytes(m.desc(), 1024, 1024);
        assert!(big > small && big - small >= 100 * (1024 * 1024 - 256 * 256), "{small} {big}");
    }
    let fixed = calibrate(&mut *m, PrecisionChoice::Fixed(Precision::Bf16), WarmUp::Off).unwrap();
    assert_eq!((fixed.precision, m.precision()), (Precision::Bf16, Precision::Bf16));
}

#[test]
fn two_lanes_on_one_device_decompose_alike() {
    let _turn = turn();
    let layout = runtime::LaneSpec { devices: vec![Device::Cpu], per_device: 2, precision: PrecisionChoice::Auto, warm_up: WarmUp::Off };
    let lanes = runtime::load_lanes("fscs", &layout).unwrap();
    assert_eq!(lanes.lanes().len(), 2);
    assert_eq!(lanes.devices(), vec![Device::Cpu]);
    let image = photo("coffee.png", 96, 64);
    let out: Vec<Vec<Vec<u8>>> = lanes
        .lanes()
        .iter()
        .map(|lane| decompose_stacked(&**lane.lock(), &[&*image], padded(&image), &DecomposeParams::default()).unwrap().remove(0))
        .collect();
    assert_eq!(out[0], out[1]);
}

#[test]
fn fast_mode_runs_in_bf16_on_a_bf16_cpu_and_reference_mode_stays_fp32() {
    let _turn = turn();
    // One test, so the variable that stands in for the CPU's flags is not raced.
    let image = photo("chelsea.png", 120, 80);
    let reference = DecomposeParams::default();
    let fast = DecomposeParams { quality: Quality::Fast, ..DecomposeParams::default() };
    let mut plain = runtime::load("fscs", Device::Cpu).unwrap();
    let fp32 = decompose_stacked(&*plain, &[&*image], padded(&image), &reference).unwrap().remove(0);
    std::env::set_var("LAMINA_CPU_BF16", "1");
    let auto = calibrate(&mut *plain, PrecisionChoice::Auto, WarmUp::Off).unwrap();
    std::env::set_var("LAMINA_CPU_BF16", "0");
    let mut other = runtime::load("fscs", Device::Cpu).unwrap();
    let without = calibrate(&mut *other, PrecisionChoice::Auto, WarmUp::Off).unwrap();
    std::env::remove_var("LAMINA_CPU_BF16");
    assert_eq!((auto.precision, auto.fast_precision), (Precision::Fp32, Precision::Bf16), "a bf16 CPU: fast mode in bf16");
    assert_eq!((plain.precision_for(Quality::Reference), plain.precision_for(Quality::Fast)), (Precision::Fp32, Precision::Bf16));
    assert_eq!((without.precision, without.fast_precision), (Precision::Fp32, Precision::Fp32), "no bf16 on the CPU: fp32");
    // The same model serves both modes: reference bit for bit as before, fast within 1/255.
    let again = decompose_stacked(&*plain, &[&*image], padded(&image), &reference).unwrap().remove(0);
    assert_eq!(again, fp32, "reference mode is untouched by the fast copy");
    let bf16 = decompose_stacked(&*plain, &[&*image], padded(&image), &fast).unwrap().remove(0);
    let (mean, _) = diff(&bf16, &fp32);
    println!("fast mode in bf16: mean |diff| from fp32 {mean:.5}");
    assert!(mean > 0.0 && mean <= 1.0 / 255.0, "{mean}");
    // A fixed precision holds for both modes; the object model keeps one copy, so its fast
    // mode stays in its reference precision.
    let fixed = calibrate(&mut *plain, PrecisionChoice::Fixed(Precision::Fp32), WarmUp::Off).unwrap();
    assert_eq!((fixed.fast_precision, plain.precision_for(Quality::Fast)), (Precision::Fp32, Precision::Fp32));
    let fast_again = decompose_stacked(&*plain, &[&*image], padded(&image), &fast).unwrap().remove(0);
    assert_eq!(fast_again, fp32, "below 1 MP fast mode in fp32 is reference mode");
    let mut objects = runtime::load("objects-small", Device::Cpu).unwrap();
    std::env::set_var("LAMINA_CPU_BF16", "1");
    let c = calibrate(&mut *objects, PrecisionChoice::Auto, WarmUp::Off).unwrap();
    std::env::remove_var("LAMINA_CPU_BF16");
    assert_eq!(c.fast_precision, Precision::Fp32);
}

#[test]
fn device_lists_parse_and_refuse_repeats() {
    assert_eq!(runtime::parse_devices("cpu").unwrap(), vec![Device::Cpu]);
    let e = runtime::parse_devices("cpu,cpu").unwrap_err();
    assert!(matches!(e, runtime::BadDevice::Twice { .. }), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("named twice") && e.contains("--lanes-per-device"), "{e}");
    if runtime::cuda_device_count() == 0 {
        let e = runtime::parse_devices("cuda:all").unwrap_err();
        assert!(matches!(e, runtime::BadDevice::Missing { found: 0, .. }), "{e:?}");
        assert!(e.to_string().contains("0 CUDA device(s) found"), "{e}");
    }
}

/// libtorch's CUDA backend is not linked but loaded when a CUDA device is named: after that,
/// a tensor on the GPU is made (a GPU machine) or refused for want of a GPU or driver, never
/// for want of a CUDA backend, which is what a binary that never loaded it says.
#[test]
fn naming_a_cuda_device_loads_libtorchs_cuda_backend() {
    let _ = runtime::parse_device("auto");
    if !runtime::load_cuda() {
        let dir = option_env!("LAMINA_LIBTORCH_LIB").unwrap_or("");
        assert!(!std::path::Path::new(dir).join("libtorch_cuda.so").exists(), "libtorch has a CUDA library but it did not load");
        return;
    }
    if let Err(e) = tch::Tensor::f_zeros([1], (tch::Kind::Float, Device::Cuda(0))) {
        let e = e.to_string();
        assert!(!e.contains("'CUDA' backend"), "the CUDA backend is not registered: {e}");
    }
}

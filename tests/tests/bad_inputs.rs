//! Bad and unusual inputs end to end. A generated corpus (truncated, corrupt, empty and
//! mislabelled files; decompression bombs in six formats; 16-bit, grey, palette, bit-packed,
//! interlaced, float, CMYK, progressive, animated, EXIF-rotated, transparent, tiny and long
//! images) goes through the real coordinator and one real worker over real S3 (Garage), and
//! through `lamina run` on a local folder. Every image ends as done (with layers that decode
//! and rebuild it at the PSNR its manifest claims) or as failed with a one-line reason that
//! names the cause; the worker never crashes, its peak memory stays bounded (bombs are refused
//! from their headers), and both modes reach the same outcome for every image.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, DynamicImage, Frame, ImageDecoder, ImageFormat, ImageReader, Rgb, RgbImage, Rgba, RgbaImage};
use lamina_common::manifest::Manifest;
use lamina_common::messages::{Status, TaskResult};
use lamina_common::store::S3Store;
use lamina_common::ObjectStore;
use lamina_tests::*;
use serde_json::{json, Value};

/// What an input must end as.
enum Expect {
    /// Decomposed: the canvas has this size and the manifest's `input` has these fields.
    Done { size: (u32, u32), input: Vec<(&'static str, Value)>, layers: Option<usize> },
    /// Refused, with a reason containing one of these phrases.
    Fails(&'static [&'static str]),
    /// Either outcome is correct (what a decoder makes of garbage is its own business); a
    /// failure still needs a well-formed reason, and both modes must agree.
    Either,
}

struct Case {
    key: String,
    bytes: Vec<u8>,
    expect: Expect,
}

fn done(size: (u32, u32), input: &[(&'static str, Value)]) -> Expect {
    Expect::Done { size, input: input.to_vec(), layers: None }
}

const CORRUPT_PNG: &[&str] = &["corrupt or truncated png"];
const CORRUPT_JPEG: &[&str] = &["corrupt or truncated jpeg"];
const CORRUPT_WEBP: &[&str] = &["corrupt or truncated webp"];
const CORRUPT_TIFF: &[&str] = &["corrupt or truncated tiff"];
const CORRUPT_BMP: &[&str] = &["corrupt or truncated bmp"];
const UNSUPPORTED: &[&str] = &["not a supported image"];
const EMPTY: &[&str] = &["empty file (0 bytes)"];

/// A small picture with flat regions, gradients and a little noise (so that compressed
/// formats have real data to lose when cut).
fn pattern(w: u32, h: u32, seed: u32) -> RgbImage {
    const COLOURS: [[u8; 3]; 4] = [[200, 60, 40], [40, 120, 200], [230, 210, 80], [30, 30, 40]];
    RgbImage::from_fn(w, h, |x, y| {
        let [r, g, b] = COLOURS[((x / 8 + y / 8 + seed) % 4) as usize];
        let noise = (x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663) ^ seed).wrapping_mul(2_654_435_761) >> 27;
        let shade = ((x * 3 + y * 2) % 24 + noise) as u8;
        Rgb([r.saturating_add(shade), g.saturating_add(shade / 2), b.saturating_sub(shade / 2)])
    })
}

fn rgb(img: &RgbImage) -> DynamicImage {
    DynamicImage::ImageRgb8(img.clone())
}

/// An RGB image's pixels as packed 24-bit samples, for `craft::png`.
fn packed_rgb(img: &RgbImage) -> impl Fn(u32, u32) -> u64 + '_ {
    move |x, y| {
        let p = img.get_pixel(x, y);
        (u64::from(p[0]) << 16) | (u64::from(p[1]) << 8) | u64::from(p[2])
    }
}

/// The corpus: every kind of bad or unusual input, one key each, with its expected outcome.
fn corpus() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |key: &str, bytes: Vec<u8>, expect: Expect| {
        cases.push(Case { key: format!("corpus/{key}"), bytes, expect });
    };
    let photo = pattern(48, 40, 0);
    let png = encode(&rgb(&photo), ImageFormat::Png);
    let jpeg = encode(&rgb(&photo), ImageFormat::Jpeg);
    let webp = encode(&rgb(&photo), ImageFormat::WebP);
    let gif = encode(&DynamicImage::ImageRgba8(rgb(&photo).to_rgba8()), ImageFormat::Gif);
    let tiff = encode(&rgb(&photo), ImageFormat::Tiff);
    let bmp = encode(&rgb(&photo), ImageFormat::Bmp);
    let half = |bytes: &[u8]| bytes[..bytes.len() / 2].to_vec();
    let fmt = |f: &str| [("format", json!(f))];

    // Nothing, or not an image at all.
    add("empty-zero-bytes.png", Vec::new(), Expect::Fails(EMPTY));
    add("empty-zero-bytes.jpg", Vec::new(), Expect::Fails(EMPTY));
    add("random-bytes.jpg", (0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect(), Expect::Fails(UNSUPPORTED));
    add("text-file-named.png", b"This is a text file, not a picture.\n".repeat(20), Expect::Fails(UNSUPPORTED));
    // A format known by its magic bytes that Lamina does not decode (AVIF).
    let avif = [b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf".as_slice(), &[0u8; 64]].concat();
    add("avif-content.avif", avif, Expect::Fails(UNSUPPORTED));
    // An image under the wrong name is decoded by its content.
    add("ppm-content-named.png", [b"P6\n2 2\n255\n".as_slice(), &[7u8; 12]].concat(), done((2, 2), &fmt("pnm")));

    // Truncated.
    add("png-truncated-half.png", half(&png), Expect::Fails(CORRUPT_PNG));
    add("png-truncated-header-only.png", png[..33].to_vec(), Expect::Fails(CORRUPT_PNG));
    add("png-truncated-signature-only.png", png[..8].to_vec(), Expect::Fails(CORRUPT_PNG));
    add("jpeg-truncated-half.jpg", half(&jpeg), Expect::Fails(CORRUPT_JPEG));
    let sos = craft::jpeg_segment(&jpeg, |m| m == 0xDA).expect("a scan");
    let sos_end = sos + 2 + usize::from(u16::from_be_bytes([jpeg[sos + 2], jpeg[sos + 3]]));
    add("jpeg-truncated-before-scan-data.jpg", jpeg[..sos_end].to_vec(), Expect::Fails(CORRUPT_JPEG));
    add("webp-truncated-half.webp", half(&webp), Expect::Fails(CORRUPT_WEBP));
    add("webp-truncated-riff-header-only.webp", webp[..12].to_vec(), Expect::Fails(CORRUPT_WEBP));
    add("tiff-truncated-half.tif", half(&tiff), Expect::Fails(CORRUPT_TIFF));
    add("bmp-truncated-half.bmp", half(&bmp), Expect::Fails(CORRUPT_BMP));
    add("gif-truncated-half.gif", half(&gif), Expect::Either);

    // Corrupt.
    let idat = craft::png_chunk_data(&png, b"IDAT");
    let mut flipped = png.clone();
    let middle = idat.start + idat.len() / 2;
    for b in &mut flipped[middle..middle + 8] {
        *b ^= 0xFF;
    }
    add("png-corrupt-idat-flipped-bytes.png", flipped.clone(), Expect::Fails(CORRUPT_PNG));
    // The same damage with a CRC that matches it: only the inflater and the filters can tell.
    craft::png_fix_crc(&mut flipped, b"IDAT");
    add("png-corrupt-idat-flipped-bytes-crc-fixed.png", flipped, Expect::Either);
    let mut bad_crc = png.clone();
    for b in &mut bad_crc[idat.end..idat.end + 4] {
        *b ^= 0xA5;
    }
    add("png-corrupt-idat-bad-crc.png", bad_crc, Expect::Fails(CORRUPT_PNG));
    let ihdr = craft::png_chunk_data(&png, b"IHDR");
    let mut bad_ihdr = png.clone();
    bad_ihdr[ihdr.end] ^= 0x01;
    add("png-corrupt-ihdr-bad-crc.png", bad_ihdr, Expect::Fails(CORRUPT_PNG));
    add("png-claims-0x16.png", png_claiming(0, 16), Expect::Fails(&["corrupt or truncated png", "image has no pixels"]));
    let mut garbage = jpeg.clone();
    let (mut from, to) = (sos_end + (jpeg.len() - 2 - sos_end) / 3, sos_end + 2 * (jpeg.len() - 2 - sos_end) / 3);
    while garbage[from - 1] == 0xFF {
        from += 1;
    }
    for (i, b) in garbage[from..to].iter_mut().enumerate() {
        *b = ((i as u32).wrapping_mul(2_246_822_519) >> 24) as u8 & 0xFE; // never 0xFF: no markers
    }
    add("jpeg-corrupt-garbage-in-scan.jpg", garbage, Expect::Either);
    let mut bad_signature = webp.clone();
    bad_signature[20] = 0x00; // the VP8L signature byte, 0x2f
    add("webp-corrupt-lossless-signature.webp", bad_signature, Expect::Fails(CORRUPT_WEBP));
    let mut bad_bits = webp.clone();
    let mid = bad_bits.len() / 2;
    for b in &mut bad_bits[mid..mid + 16] {
        *b ^= 0x5A;
    }
    add("webp-corrupt-bitstream.webp", bad_bits, Expect::Either);

    // Decompression bombs: valid headers claiming huge images, refused before any pixel.
    add(
        "bomb-png-100000x100000.png",
        png_claiming(100_000, 100_000),
        Expect::Fails(&["image is 100000x100000 (10000.0 MP), over the 64.0 MP limit"]),
    );
    add(
        "bomb-jpeg-sof-65000x65000.jpg",
        craft::jpeg_claiming(&jpeg, 65_000, 65_000),
        Expect::Fails(&["image is 65000x65000 (4225.0 MP), over the 64.0 MP limit"]),
    );
    add(
        "bomb-webp-16000x16000.webp",
        craft::webp_claiming(&webp, 16_000, 16_000),
        Expect::Fails(&["image is 16000x16000 (256.0 MP), over the 64.0 MP limit"]),
    );
    add(
        "bomb-gif-65535x65535.gif",
        craft::gif_claiming(&gif, 65_535, 65_535),
        Expect::Fails(&["image is 65535x65535 (4294.8 MP), over the 64.0 MP limit"]),
    );
    add(
        "bomb-tiff-100000x100000.tif",
        craft::tiff_grey_claiming(100_000, 100_000),
        Expect::Fails(&["image is 100000x100000 (10000.0 MP), over the 64.0 MP limit"]),
    );
    add(
        "bomb-bmp-65535x65535.bmp",
        craft::bmp_claiming(&bmp, 65_535, 65_535),
        Expect::Fails(&["image is 65535x65535 (4294.8 MP), over the 64.0 MP limit"]),
    );

    // Longer than any one forward pass would take whole: there is no longest-side limit,
    // such strips run like any image (in tiles when over the memory budget).
    add("png-long-10000x8.png", encode(&rgb(&pattern(10_000, 8, 1)), ImageFormat::Png), done((10_000, 8), &[]));
    add("png-tall-8x10000.png", encode(&rgb(&pattern(8, 10_000, 2)), ImageFormat::Png), done((8, 10_000), &[]));

    // Unusual but valid: every one is decomposed.
    add("png-rgb8.png", png.clone(), done((48, 40), &[("format", json!("png")), ("color", json!("rgb8")), ("has_alpha", json!(false))]));
    let rgb16 = DynamicImage::ImageRgb16(rgb(&pattern(40, 32, 3)).to_rgb16());
    add("png-rgb16.png", encode(&rgb16, ImageFormat::Png), done((40, 32), &[("color", json!("rgb16"))]));
    let grey8 = DynamicImage::ImageLuma8(rgb(&pattern(40, 32, 4)).to_luma8());
    add("png-grey8.png", encode(&grey8, ImageFormat::Png), done((40, 32), &[("color", json!("l8"))]));
    let grey16 = DynamicImage::ImageLuma16(rgb(&pattern(40, 32, 5)).to_luma16());
    add("png-grey16.png", encode(&grey16, ImageFormat::Png), done((40, 32), &[("color", json!("l16"))]));
    let mut grey_alpha = rgb(&pattern(40, 32, 6)).to_luma_alpha8();
    for (x, _, px) in grey_alpha.enumerate_pixels_mut() {
        px[1] = (x * 6).min(255) as u8;
    }
    add(
        "png-grey-alpha8.png",
        encode(&DynamicImage::ImageLumaA8(grey_alpha), ImageFormat::Png),
        done((40, 32), &[("color", json!("la8")), ("has_alpha", json!(true))]),
    );
    let mut rgba16 = rgb(&pattern(40, 32, 7)).to_rgba16();
    for (_, y, px) in rgba16.enumerate_pixels_mut() {
        px[3] = if y < 8 { 0 } else { 65_535 };
    }
    add(
        "png-rgba16-top-transparent.png",
        encode(&DynamicImage::ImageRgba16(rgba16), ImageFormat::Png),
        done((40, 32), &[("color", json!("rgba16")), ("has_alpha", json!(true))]),
    );
    let palette: Vec<u8> = (0..24u32).flat_map(|i| [(i * 10) as u8, (255 - i * 9) as u8, ((i * 37) % 256) as u8]).collect();
    let indexed = craft::Png { width: 30, height: 20, depth: 8, color_type: 3, interlaced: false, plte: Some(&palette), trns: None };
    add("png-palette-8bit.png", craft::png(&indexed, &|x, y| u64::from((x / 5 + (y / 5) * 6) % 24)), done((30, 20), &fmt("png")));
    let palette16: Vec<u8> = (0..16u32).flat_map(|i| [(i * 16) as u8, (i * 5) as u8, (250 - i * 15) as u8]).collect();
    let alphas = [0u8, 128, 255, 200];
    let packed =
        craft::Png { width: 27, height: 18, depth: 4, color_type: 3, interlaced: false, plte: Some(&palette16), trns: Some(&alphas) };
    add(
        "png-palette-4bit-with-transparency.png",
        craft::png(&packed, &|x, y| u64::from((x / 4 + y / 3) % 16)),
        done((27, 18), &[("has_alpha", json!(true))]),
    );
    let bilevel = craft::Png { width: 21, height: 13, depth: 1, color_type: 0, interlaced: false, plte: None, trns: None };
    add("png-grey-1bit.png", craft::png(&bilevel, &|x, y| u64::from((x / 3 + y / 3) % 2)), done((21, 13), &fmt("png")));
    let adam7 = craft::Png { width: 37, height: 29, depth: 8, color_type: 2, interlaced: true, plte: None, trns: None };
    let source = pattern(37, 29, 8);
    add("png-interlaced-adam7-37x29.png", craft::png(&adam7, &packed_rgb(&source)), done((37, 29), &fmt("png")));
    let tiny_adam7 = craft::Png { width: 3, height: 2, depth: 8, color_type: 2, interlaced: true, plte: None, trns: None };
    let tiny = pattern(3, 2, 9);
    add("png-interlaced-adam7-3x2-empty-passes.png", craft::png(&tiny_adam7, &packed_rgb(&tiny)), done((3, 2), &fmt("png")));
    add("png-1x1.png", encode(&rgb(&RgbImage::from_pixel(1, 1, Rgb([200, 30, 90]))), ImageFormat::Png), done((1, 1), &fmt("png")));
    add("png-7x7.png", encode(&rgb(&pattern(7, 7, 10)), ImageFormat::Png), done((7, 7), &fmt("png")));
    add("png-odd-333x77.png", encode(&rgb(&pattern(333, 77, 11)), ImageFormat::Png), done((333, 77), &fmt("png")));
    add("png-long-4096x8-at-the-model-limit.png", encode(&rgb(&pattern(4096, 8, 12)), ImageFormat::Png), done((4096, 8), &fmt("png")));
    let mut holes = rgb(&pattern(40, 32, 13)).to_rgba8();
    for (x, y, px) in holes.enumerate_pixels_mut() {
        px[3] = match (x, y) {
            (0..=9, _) => 0,
            (_, 0..=7) => 128,
            _ => 255,
        };
    }
    add(
        "png-rgba-partly-transparent.png",
        encode(&DynamicImage::ImageRgba8(holes), ImageFormat::Png),
        done((40, 32), &[("has_alpha", json!(true))]),
    );
    let clear = DynamicImage::ImageRgba8(RgbaImage::from_pixel(24, 24, Rgba([10, 20, 30, 0])));
    add(
        "png-rgba-fully-transparent.png",
        encode(&clear, ImageFormat::Png),
        // Every layer is transparent everywhere, so none is written.
        Expect::Done { size: (24, 24), input: vec![("has_alpha", json!(true))], layers: Some(0) },
    );
    add("png-uppercase-extension.PNG", encode(&rgb(&pattern(32, 24, 14)), ImageFormat::Png), done((32, 24), &fmt("png")));
    add("png-content-named.jpg", encode(&rgb(&pattern(32, 24, 15)), ImageFormat::Png), done((32, 24), &fmt("png")));
    add("jpeg-content-named.png", encode(&rgb(&pattern(32, 24, 16)), ImageFormat::Jpeg), done((32, 24), &fmt("jpeg")));
    add("jpeg-baseline.jpg", jpeg.clone(), done((48, 40), &[("format", json!("jpeg")), ("orientation", json!(1))]));
    let grey_jpeg = encode(&DynamicImage::ImageLuma8(rgb(&pattern(40, 32, 17)).to_luma8()), ImageFormat::Jpeg);
    add("jpeg-grey.jpg", grey_jpeg, done((40, 32), &[("color", json!("l8"))]));
    // EXIF orientation is applied: the canvas is the photo turned upright.
    add("jpeg-exif-orientation-6.jpg", jpeg_with_orientation(&rgb(&photo), 6), done((40, 48), &[("orientation", json!(6))]));
    add("jpeg-exif-orientation-8.jpg", jpeg_with_orientation(&rgb(&photo), 8), done((40, 48), &[("orientation", json!(8))]));
    let cmyk = craft::jpeg(32, 24, 4, false, Some(0), &|c, bx, by| match c {
        0 => (bx * 70) as u8,
        1 => (by * 90) as u8,
        2 => 60,
        _ => ((bx + by) % 2 * 120) as u8,
    });
    add("jpeg-cmyk-adobe.jpg", cmyk, done((32, 24), &fmt("jpeg")));
    let progressive = craft::jpeg(40, 32, 3, true, None, &|c, bx, by| match c {
        0 => (40 + bx * 40 + by * 10) as u8,
        1 => (88 + bx * 20) as u8,
        _ => (98 + by * 20) as u8,
    });
    add("jpeg-progressive.jpg", progressive, done((40, 32), &fmt("jpeg")));
    add("webp-lossless.webp", webp.clone(), done((48, 40), &[("format", json!("webp")), ("has_alpha", json!(false))]));
    let mut see_through = rgb(&pattern(40, 32, 18)).to_rgba8();
    for (x, _, px) in see_through.enumerate_pixels_mut() {
        px[3] = if x < 12 { 0 } else { 255 };
    }
    add(
        "webp-lossless-alpha.webp",
        encode(&DynamicImage::ImageRgba8(see_through), ImageFormat::WebP),
        done((40, 32), &[("format", json!("webp")), ("has_alpha", json!(true))]),
    );
    add("gif-static.gif", gif.clone(), done((48, 40), &fmt("gif")));
    let mut animated = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut animated);
        encoder.set_repeat(Repeat::Infinite).unwrap();
        let frames = (0..3).map(|i| Frame::from_parts(rgb(&pattern(32, 32, 20 + i)).to_rgba8(), 0, 0, Delay::from_numer_denom_ms(100, 1)));
        encoder.encode_frames(frames).unwrap();
    } // The trailer is written when the encoder is dropped.
    add("gif-animated-3-frames.gif", animated, done((32, 32), &fmt("gif")));
    add("bmp-rgb24.bmp", bmp.clone(), done((48, 40), &fmt("bmp")));
    add("tiff-rgb8.tif", tiff.clone(), done((48, 40), &fmt("tiff")));
    let float = DynamicImage::ImageRgb32F(rgb(&pattern(40, 32, 21)).to_rgb32f());
    add("tiff-rgb32f.tiff", encode(&float, ImageFormat::Tiff), done((40, 32), &[("format", json!("tiff")), ("color", json!("rgb32f"))]));
    // The bomb's builder, honest: proves the bomb above is a well-formed TIFF.
    add("tiff-grey8-handmade-4x4.tif", craft::tiff_grey_claiming(4, 4), done((4, 4), &fmt("tiff")));
    cases
}

/// Decodes an input as the worker does (format from the content, EXIF orientation applied).
fn decode_like_the_worker(bytes: &[u8]) -> DynamicImage {
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().unwrap();
    let mut decoder = reader.into_decoder().unwrap();
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).unwrap();
    img.apply_orientation(orientation);
    img
}

/// Whether a failure reason is one of the worker's: each names its cause.
fn names_a_cause(reason: &str) -> bool {
    ["empty file", "not a supported image", "image is ", "image has no pixels", "corrupt or truncated "]
        .iter()
        .any(|cause| reason.starts_with(cause))
}

/// Checks one mode's results against the corpus; `outputs` holds each done image's manifest
/// and layers under its key. Returns the results by key.
fn check_mode(mode: &str, cases: &[Case], results: &[TaskResult], outputs: &Path) -> BTreeMap<String, TaskResult> {
    let by_key: BTreeMap<String, TaskResult> = results.iter().map(|r| (r.key.clone(), r.clone())).collect();
    assert_eq!(by_key.len(), results.len(), "{mode}: an image was reported twice: {results:#?}");
    let want: BTreeSet<&str> = cases.iter().map(|c| c.key.as_str()).collect();
    let got: BTreeSet<&str> = by_key.keys().map(String::as_str).collect();
    assert_eq!(got, want, "{mode}: one result line per image (and none for the text file)");
    for case in cases {
        let key = case.key.as_str();
        let r = &by_key[key];
        match r.status {
            Status::Failed => {
                let reason = r.reason.as_deref().unwrap_or_default();
                assert!(!reason.trim().is_empty(), "{mode} {key}: failed without a reason");
                assert!(!reason.contains('\n') && !reason.contains('\r'), "{mode} {key}: reason spans lines: {reason:?}");
                assert!(!reason.contains("panicked"), "{mode} {key}: {reason}");
                assert!(names_a_cause(reason), "{mode} {key}: reason names no cause: {reason:?}");
                assert!(manifest(outputs, key).is_none(), "{mode} {key}: a failed image has a manifest");
                match &case.expect {
                    Expect::Fails(phrases) => {
                        assert!(phrases.iter().any(|p| reason.contains(p)), "{mode} {key}: reason {reason:?} lacks {phrases:?}")
                    }
                    Expect::Done { .. } => panic!("{mode} {key}: expected done, failed: {reason}"),
                    Expect::Either => {}
                }
            }
            Status::Done => {
                if let Expect::Fails(phrases) = &case.expect {
                    panic!("{mode} {key}: expected to fail with {phrases:?}, was decomposed: {r:?}");
                }
                let m = manifest(outputs, key).unwrap_or_else(|| panic!("{mode} {key}: done without a manifest"));
                assert_eq!(m.input.key, key);
                assert_eq!(Some(m.layers.len()), r.layers, "{mode} {key}: result and manifest disagree on layers");
                let decoded = decode_like_the_worker(&case.bytes);
                assert_eq!((m.canvas.width, m.canvas.height), (decoded.width(), decoded.height()), "{mode} {key}: canvas");
                if let Expect::Done { size, input, layers } = &case.expect {
                    assert_eq!((m.canvas.width, m.canvas.height), *size, "{mode} {key}: canvas");
                    let recorded = serde_json::to_value(&m.input).unwrap();
                    for (field, value) in input {
                        assert_eq!(&recorded[field], value, "{mode} {key}: manifest input.{field}");
                    }
                    if let Some(n) = layers {
                        assert_eq!(m.layers.len(), *n, "{mode} {key}: layers");
                    }
                }
                // Every layer decodes as 8-bit RGBA of the canvas size, and the stack rebuilds
                // the input at the PSNR the manifest claims.
                match (recomposite_psnr(&outputs.join(key), &m, &decoded), m.recomposite_psnr_db) {
                    (Some(p), Some(c)) => assert!((p - c).abs() < 0.05, "{mode} {key}: recomposite {p:.2} dB, manifest claims {c:.2}"),
                    (None, None) => {}
                    other => panic!("{mode} {key}: recomposite PSNR (measured, claimed) = {other:?}"),
                }
            }
            Status::Skipped | Status::Rendered => panic!("{mode} {key}: {:?} in a fresh output", r.status),
        }
    }
    by_key
}

/// Waits for `children` to exit, failing early (with `logs`) if a watched process exits or
/// the deadline passes. `submit --wait` and `lamina run` have no deadline of their own, and
/// a worker that died would leave the job waiting forever.
async fn wait_all(
    children: &mut Fleet,
    watched: &mut Fleet,
    deadline: Duration,
    logs: &dyn Fn() -> String,
) -> Vec<std::process::ExitStatus> {
    let started = Instant::now();
    let mut statuses = vec![None; children.0.len()];
    while statuses.iter().any(Option::is_none) {
        for (child, status) in children.0.iter_mut().zip(&mut statuses) {
            if status.is_none() {
                *status = child.try_wait().unwrap();
            }
        }
        for child in &mut watched.0 {
            if let Some(exit) = child.try_wait().unwrap() {
                panic!("a service (pid {}) exited during the job: {exit}\n{}", child.id(), logs());
            }
        }
        assert!(started.elapsed() < deadline, "the job did not finish in {deadline:?}\n{}", logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    statuses.into_iter().flatten().collect()
}

/// `command` with its output going to `dir/name.out` and `dir/name.err`.
fn spawn_logged(mut command: Command, dir: &Path, name: &str) -> Child {
    command
        .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{name}.err"))).unwrap())
        .spawn()
        .unwrap()
}

/// Peak resident memory of a live process, in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/PID/status");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmHWM value")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_or_unusual_input_is_done_or_fails_in_one_line_the_worker_survives_in_bounded_memory_and_both_modes_agree() {
    let cases = corpus();
    assert!(cases.len() >= 30, "the corpus has {} kinds", cases.len());
    let settings = s3_settings();
    let bucket = new_bucket("bad-inputs");
    let prefix = format!("lamina-bad-inputs-{}", std::process::id());
    let _queues = Queues(prefix.clone());
    let logs = tempfile::tempdir().unwrap();
    let log = |name: &str| logs.path().join(name);
    let mut fleet = Fleet(vec![
        spawn_service("lamina-coordinator", &prefix, &log("coordinator.log")),
        spawn_service("lamina-worker", &prefix, &log("worker.log")),
    ]);
    let worker_pid = fleet.0[1].id();

    let input = S3Store::new(&settings, &bucket, "in").await;
    let local = tempfile::tempdir().unwrap();
    let (local_in, local_out) = (local.path().join("in"), local.path().join("out"));
    for case in &cases {
        input.put(&case.key, case.bytes.clone()).await.unwrap();
        write(&local_in, &case.key, &case.bytes);
    }
    // Not an image by its extension: listed, never counted.
    input.put("corpus/readme.txt", b"not an image".to_vec()).await.unwrap();
    write(&local_in, "corpus/readme.txt", b"not an image");

    // Both modes at once: the distributed job, and `lamina run` on the local copy (the same
    // commands as `submit()` and `lamina()`, with a deadline).
    let (src, dst) = (format!("s3://{bucket}/in"), format!("s3://{bucket}/out"));
    let mut submit = Command::new(binary("lamina"));
    submit.args(["submit", "--input", &src, "--output", &dst, "--wait"]).env("LAMINA_AMQP_PREFIX", &prefix);
    let mut run = Command::new(binary("lamina"));
    run.args(["run", local_in.to_str().unwrap(), local_out.to_str().unwrap()])
        .env("LAMINA_DEVICE", "cpu")
        .env("LAMINA_PROGRESS", "log")
        .env("RUST_LOG", "info");
    let mut jobs = Fleet(vec![spawn_logged(submit, logs.path(), "submit"), spawn_logged(run, logs.path(), "run")]);
    let show_logs = || {
        ["coordinator.log", "worker.log", "submit.out", "submit.err", "run.out", "run.err"]
            .iter()
            .map(|l| format!("--- {l}\n{}", std::fs::read_to_string(log(*l)).unwrap_or_default()))
            .collect::<String>()
    };
    let statuses = wait_all(&mut jobs, &mut fleet, Duration::from_secs(300), &show_logs).await;

    // The worker is the one started above, still running, and its peak memory is small: no
    // bomb was ever allocated.
    assert!(fleet.0[1].try_wait().unwrap().is_none(), "the worker exited\n{}", show_logs());
    let peak_kib = vm_hwm_kib(worker_pid);
    println!("worker pid {worker_pid}: peak resident memory (VmHWM) {:.0} MiB", peak_kib as f64 / 1024.0);
    let worker_log = std::fs::read_to_string(log("worker.log")).unwrap();
    assert!(!worker_log.contains("panicked"), "the worker panicked\n{}", show_logs());
    let finished = worker_log.lines().filter(|l| l.contains("task finished")).count();
    assert!(finished >= cases.len(), "the one worker finished {finished} tasks of {}\n{}", cases.len(), show_logs());
    assert!(!std::fs::read_to_string(log("coordinator.log")).unwrap().contains("panicked"), "{}", show_logs());

    // Distributed: results and outputs, fetched from S3.
    let submit_out = std::fs::read_to_string(log("submit.out")).unwrap();
    assert_eq!(statuses[0].code(), Some(1), "submit --wait exits 1 when images failed\n{}", show_logs());
    let job_id = submit_out.lines().next().unwrap_or_default().trim().to_owned();
    let output = S3Store::new(&settings, &bucket, "out").await;
    let results: Vec<TaskResult> = String::from_utf8(output.get(&format!("_lamina/jobs/{job_id}/results.jsonl")).await.unwrap())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let fetched = tempfile::tempdir().unwrap();
    for r in results.iter().filter(|r| r.status == Status::Done) {
        let dir = fetched.path().join(&r.key);
        std::fs::create_dir_all(&dir).unwrap();
        let bytes = output.get(&format!("{}/manifest.json", r.key)).await.unwrap();
        let m: Manifest = serde_json::from_slice(&bytes).unwrap();
        std::fs::write(dir.join("manifest.json"), bytes).unwrap();
        for layer in &m.layers {
            std::fs::write(dir.join(layer.png()), output.get(&format!("{}/{}", r.key, layer.png())).await.unwrap()).unwrap();
        }
    }

    // Local: results and outputs on disk.
    let run_stderr = std::fs::read_to_string(log("run.err")).unwrap();
    assert_eq!(statuses[1].code(), Some(1), "lamina run exits 1 when images failed\n{}", show_logs());
    assert!(!run_stderr.contains("panicked"), "lamina run panicked\n{}", show_logs());
    let local_results = lamina_tests::results(&job_dir(&local_out));

    // The table, for the record (visible with --nocapture).
    let local_by_key: BTreeMap<&str, &TaskResult> = local_results.iter().map(|r| (r.key.as_str(), r)).collect();
    let dist_by_key: BTreeMap<&str, &TaskResult> = results.iter().map(|r| (r.key.as_str(), r)).collect();
    let status = |r: Option<&&TaskResult>| r.map_or("missing".to_owned(), |r| format!("{:?}", r.status).to_lowercase());
    println!("{:<52} {:<8} {:<12} {:<8} reason", "key", "expected", "distributed", "local");
    for case in &cases {
        let expected = match case.expect {
            Expect::Done { .. } => "done",
            Expect::Fails(_) => "failed",
            Expect::Either => "either",
        };
        let (d, l) = (dist_by_key.get(case.key.as_str()), local_by_key.get(case.key.as_str()));
        let reason = d.and_then(|r| r.reason.as_deref()).or_else(|| l.and_then(|r| r.reason.as_deref())).unwrap_or("");
        println!("{:<52} {:<8} {:<12} {:<8} {reason}", case.key, expected, status(d), status(l));
    }

    let distributed = check_mode("distributed", &cases, &results, fetched.path());
    let single = check_mode("lamina run", &cases, &local_results, &local_out);
    for case in &cases {
        let (d, l) = (&distributed[&case.key], &single[&case.key]);
        assert_eq!(d.status, l.status, "{}: distributed {d:?}, lamina run {l:?}", case.key);
    }

    // The summaries count the same.
    let failed = distributed.values().filter(|r| r.status == Status::Failed).count();
    let counts = format!("{} images: {} done, 0 skipped (unchanged), {failed} failed", cases.len(), cases.len() - failed);
    assert!(submit_out.contains(&counts), "{counts:?} not in:\n{}", show_logs());
    assert!(std::fs::read_to_string(log("run.out")).unwrap().contains(&counts), "{counts:?} not in:\n{}", show_logs());

    assert!(peak_kib < 4 << 20, "the worker peaked at {peak_kib} KiB: more than 4 GiB");
    drop(jobs);
}

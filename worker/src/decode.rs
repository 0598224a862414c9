//! Decoding: bytes in, planar float RGB (plus alpha when the image has any) out.
//!
//! The pixel limit is checked against the header before any pixel buffer is allocated, so a
//! decompression bomb costs a few bytes of reading. EXIF orientation is applied. Grayscale,
//! 16-bit, palette and alpha inputs all become float RGB in [0,1]; 16-bit precision is kept
//! until the model. What input alpha means for the layers: see `encode.rs`.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader};
use lamina_common::messages::FailureKind;

/// Why an input could not be decoded. Every message is one line naming the reason.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("empty file (0 bytes)")]
    Empty,
    #[error("not a supported image (JPEG, PNG, WebP, TIFF, BMP, GIF, TGA, ICO, PNM, farbfeld, QOI, HDR, OpenEXR or DDS)")]
    Unsupported,
    #[error("image is {width}x{height} ({megapixels:.1} MP), over the {limit_mp:.1} MP limit")]
    TooLarge { width: u32, height: u32, megapixels: f64, limit_mp: f64 },
    #[error("image has no pixels ({width}x{height})")]
    NoPixels { width: u32, height: u32 },
    #[error("corrupt or truncated {format}: {detail}")]
    Corrupt { format: String, detail: String },
}

impl DecodeError {
    /// The bounded kind of this failure.
    pub fn kind(&self) -> FailureKind {
        match self {
            DecodeError::Empty => FailureKind::NotAnImage,
            DecodeError::Unsupported => FailureKind::Unsupported,
            DecodeError::TooLarge { .. } => FailureKind::TooLarge,
            DecodeError::NoPixels { .. } => FailureKind::Decode,
            DecodeError::Corrupt { detail, .. } => {
                let d = detail.to_ascii_lowercase();
                if ["truncat", "end-of-image", "unexpected eof", "unexpected end", "failed to fill whole buffer", "no more data"].iter().any(|t| d.contains(t)) {
                    FailureKind::Truncated
                } else {
                    FailureKind::Decode
                }
            }
        }
    }
}

pub use lamina_engine::Decoded;

/// Decodes `bytes`, refusing images of more than `max_pixels` pixels from their header.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<Decoded, DecodeError> {
    decode_named(bytes, "", max_pixels)
}

/// The width and height in `bytes`' header, when it can be read (a few bytes of reading; no
/// pixel is decoded).
pub fn dimensions(bytes: &[u8], name: &str) -> Option<(u32, u32)> {
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().ok()?;
    if reader.format().is_none() {
        reader.set_format(image::ImageFormat::from_path(name).ok()?);
    }
    reader.into_dimensions().ok()
}

/// Like [`decode`], for a file called `name`: the format comes from the content, or from
/// the name's extension for formats whose files carry no signature (TGA).
pub fn decode_named(bytes: &[u8], name: &str, max_pixels: u64) -> Result<Decoded, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|_| DecodeError::Unsupported)?;
    if reader.format().is_none() {
        // Only TGA has no signature; every other format is known by its content, so random
        // bytes named .jpg stay "not a supported image".
        if let Ok(format @ image::ImageFormat::Tga) = image::ImageFormat::from_path(name) {
            reader.set_format(format);
        }
    }
    let format = reader.format().ok_or(DecodeError::Unsupported)?;
    let format_name = match format {
        image::ImageFormat::Pnm => "pnm".to_owned(),
        other => other.extensions_str().first().copied().unwrap_or("image").replace("jpg", "jpeg"),
    };
    let corrupt = |e: image::ImageError| DecodeError::Corrupt { format: format_name.clone(), detail: one_line(&e.to_string()) };
    if format == image::ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(DecodeError::Corrupt { format: format_name, detail: "no end-of-image marker after the last scan".into() });
    }
    let mut reader = reader;
    let mut limits = image::Limits::default();
    // Headroom for the float copy made below; the pixel count itself is checked next.
    limits.max_alloc = Some(max_pixels.saturating_mul(16).saturating_add(64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Unsupported(_) => DecodeError::Unsupported,
        other => corrupt(other),
    })?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        let mp = |p: u64| p as f64 / 1e6;
        return Err(DecodeError::TooLarge { width, height, megapixels: mp(pixels), limit_mp: mp(max_pixels) });
    }
    if pixels == 0 {
        return Err(DecodeError::NoPixels { width, height });
    }
    let color = format!("{:?}", decoder.original_color_type()).to_lowercase();
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    image.apply_orientation(orientation);
    let linear = matches!(format, image::ImageFormat::Hdr | image::ImageFormat::OpenExr);
    let (rgb, alpha) = planar(&image, linear);
    Ok(Decoded {
        width: image.width(),
        height: image.height(),
        rgb,
        alpha,
        format: format_name,
        color,
        orientation: orientation.to_exif(),
    })
}

/// Splits an image into planar float RGB and (when not fully opaque) alpha. `linear` images
/// (HDR, OpenEXR) hold linear light and are shown with the sRGB curve; other float images
/// (float TIFF) hold display values, like integer ones.
fn planar(image: &DynamicImage, linear: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    let n = image.width() as usize * image.height() as usize;
    let mut rgb = vec![0f32; 3 * n];
    let mut alpha = vec![1f32; n];
    let mut fill = |i: usize, px: [f32; 4]| {
        rgb[i] = px[0];
        rgb[n + i] = px[1];
        rgb[2 * n + i] = px[2];
        alpha[i] = px[3];
    };
    match image {
        DynamicImage::ImageRgb8(img) => {
            for (i, p) in img.pixels().enumerate() {
                fill(i, [f32::from(p[0]) / 255.0, f32::from(p[1]) / 255.0, f32::from(p[2]) / 255.0, 1.0]);
            }
        }
        DynamicImage::ImageRgba8(img) => {
            for (i, p) in img.pixels().enumerate() {
                fill(i, p.0.map(|v| f32::from(v) / 255.0));
            }
        }
        // HDR and OpenEXR hold linear light, possibly above 1: shown as an 8-bit display
        // would, clipped to [0,1] and encoded with the sRGB curve (no tone mapping).
        DynamicImage::ImageRgb32F(_) | DynamicImage::ImageRgba32F(_) if linear => {
            for (i, p) in image.to_rgba32f().pixels().enumerate() {
                let [r, g, b, a] = p.0;
                fill(i, [srgb(r), srgb(g), srgb(b), a.clamp(0.0, 1.0)]);
            }
        }
        other => {
            for (i, p) in other.to_rgba32f().pixels().enumerate() {
                fill(i, p.0.map(|v| v.clamp(0.0, 1.0)));
            }
        }
    }
    let has_alpha = alpha.iter().any(|&a| a < 1.0);
    (rgb, has_alpha.then_some(alpha))
}

/// Linear light (clipped to [0,1]) to an sRGB-encoded value; NaN becomes 0.
fn srgb(linear: f32) -> f32 {
    let v = if linear.is_nan() { 0.0 } else { linear.clamp(0.0, 1.0) };
    if v <= 0.003_130_8 { v * 12.92 } else { 1.055 * v.powf(1.0 / 2.4) - 0.055 }
}

/// Whether a JPEG ends its last scan with an end-of-image marker. The JPEG decoder fills a
/// truncated image with grey instead of failing; a missing EOI gives truncation away. (Inside
/// entropy-coded data 0xFF is always stuffed, so FF D9 cannot occur there by chance.)
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap_or(0);
    bytes[last_scan..].windows(2).any(|w| w == [0xFF, 0xD9])
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(img: DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_rgb_and_keeps_alpha_only_when_used() {
        let rgb = png(DynamicImage::ImageRgb8(image::RgbImage::from_pixel(3, 2, image::Rgb([255, 0, 51]))));
        let d = decode(&rgb, 100).unwrap();
        assert_eq!((d.width, d.height, d.format.as_str(), d.color.as_str()), (3, 2, "png", "rgb8"));
        assert_eq!(&d.rgb[..1], &[1.0]);
        assert!((d.rgb[12] - 0.2).abs() < 1e-6);
        assert!(d.alpha.is_none());
        let rgba = png(DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(2, 2, image::Rgba([0, 0, 0, 128]))));
        assert!(decode(&rgba, 100).unwrap().alpha.is_some());
    }

    #[test]
    fn refuses_bad_input_with_a_reason() {
        assert_eq!(decode(b"", 100).unwrap_err(), DecodeError::Empty);
        assert_eq!(decode(b"hello, not an image at all", 100).unwrap_err(), DecodeError::Unsupported);
        let big = png(DynamicImage::ImageRgb8(image::RgbImage::new(20, 10)));
        assert!(matches!(decode(&big, 100).unwrap_err(), DecodeError::TooLarge { width: 20, height: 10, .. }));
        let truncated = &big[..big.len() / 2];
        let err = decode(truncated, 1000).unwrap_err();
        assert!(matches!(err, DecodeError::Corrupt { .. }), "{err}");
        assert!(!err.to_string().contains('\n'));
    }
}

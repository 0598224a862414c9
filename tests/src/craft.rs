//! Byte-level builders for inputs the image library does not write (palette, bit-packed and
//! interlaced PNGs; CMYK and progressive JPEGs; a TIFF header), and patches that make a valid
//! file claim another size. Only the standard library.

use std::ops::Range;

use crate::crc32;

pub fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in bytes {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

/// A zlib stream of stored (uncompressed) deflate blocks.
pub fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    if data.is_empty() {
        out.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    let mut blocks = data.chunks(65_535).peekable();
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Where the data of a PNG's first chunk of `kind` lies (its CRC follows).
pub fn png_chunk_data(png: &[u8], kind: &[u8; 4]) -> Range<usize> {
    let mut at = 8;
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]) as usize;
        if &png[at + 4..at + 8] == kind {
            return at + 8..at + 8 + len;
        }
        at += 12 + len;
    }
    panic!("no {} chunk", String::from_utf8_lossy(kind));
}

/// Recomputes the CRC of a PNG's first chunk of `kind`.
pub fn png_fix_crc(png: &mut [u8], kind: &[u8; 4]) {
    let data = png_chunk_data(png, kind);
    let crc = crc32(&png[data.start - 4..data.end]);
    png[data.end..data.end + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A PNG's header fields.
pub struct Png<'a> {
    pub width: u32,
    pub height: u32,
    pub depth: u8,
    /// 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA.
    pub color_type: u8,
    /// Adam7.
    pub interlaced: bool,
    pub plte: Option<&'a [u8]>,
    pub trns: Option<&'a [u8]>,
}

const ADAM7: [(u32, u32, u32, u32); 7] =
    [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)];

/// A PNG whose pixel (x, y) is `px(x, y)`: the samples packed into channels x depth bits,
/// first channel most significant (at most 32 bits a pixel). Rows are unfiltered and the
/// zlib stream is stored.
pub fn png(spec: &Png<'_>, px: &dyn Fn(u32, u32) -> u64) -> Vec<u8> {
    let channels: u32 = match spec.color_type {
        0 | 3 => 1,
        4 => 2,
        2 => 3,
        6 => 4,
        other => panic!("colour type {other}"),
    };
    let bits = channels * u32::from(spec.depth);
    assert!(bits <= 32);
    let mask = (1u64 << bits) - 1;
    let passes: &[(u32, u32, u32, u32)] = if spec.interlaced { &ADAM7 } else { &[(0, 0, 1, 1)] };
    let mut raw = Vec::new();
    for &(x0, y0, dx, dy) in passes {
        let pw = spec.width.saturating_sub(x0).div_ceil(dx);
        let ph = spec.height.saturating_sub(y0).div_ceil(dy);
        if pw == 0 || ph == 0 {
            continue; // an empty pass has no rows at all, not even filter bytes
        }
        for row in 0..ph {
            let y = y0 + row * dy;
            raw.push(0); // filter type: none
            let (mut acc, mut n) = (0u64, 0u32);
            for i in 0..pw {
                acc = (acc << bits) | (px(x0 + i * dx, y) & mask);
                n += bits;
                while n >= 8 {
                    n -= 8;
                    raw.push((acc >> n) as u8);
                }
                acc &= (1u64 << n) - 1;
            }
            if n > 0 {
                raw.push((acc << (8 - n)) as u8);
            }
        }
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&spec.width.to_be_bytes());
    ihdr.extend_from_slice(&spec.height.to_be_bytes());
    ihdr.extend_from_slice(&[spec.depth, spec.color_type, 0, 0, u8::from(spec.interlaced)]);
    chunk(&mut out, b"IHDR", &ihdr);
    if let Some(plte) = spec.plte {
        chunk(&mut out, b"PLTE", plte);
    }
    if let Some(trns) = spec.trns {
        chunk(&mut out, b"tRNS", trns);
    }
    chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    chunk(&mut out, b"IEND", &[]);
    out
}

/// Offset of the first JPEG marker segment before the first scan for which `want` holds.
pub fn jpeg_segment(jpeg: &[u8], want: impl Fn(u8) -> bool) -> Option<usize> {
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at] == 0xFF {
        let marker = jpeg[at + 1];
        if want(marker) {
            return Some(at);
        }
        if marker == 0xDA {
            return None;
        }
        at += 2 + usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
    }
    None
}

/// The JPEG with its frame header (SOF0 to SOF3) claiming `width` x `height`.
pub fn jpeg_claiming(jpeg: &[u8], width: u16, height: u16) -> Vec<u8> {
    let at = jpeg_segment(jpeg, |m| (0xC0..=0xC3).contains(&m)).expect("a frame header");
    let mut out = jpeg.to_vec();
    out[at + 5..at + 7].copy_from_slice(&height.to_be_bytes());
    out[at + 7..at + 9].copy_from_slice(&width.to_be_bytes());
    out
}

fn segment(out: &mut Vec<u8>, marker: u8, payload: &[u8]) {
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Entropy-coded bits, MSB first, with 0xFF bytes stuffed.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u32,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u32, len: u32) {
        for i in (0..len).rev() {
            self.acc = (self.acc << 1) | ((value >> i) & 1);
            self.n += 1;
            if self.n == 8 {
                let byte = self.acc as u8;
                self.out.push(byte);
                if byte == 0xFF {
                    self.out.push(0);
                }
                (self.acc, self.n) = (0, 0);
            }
        }
    }

    /// A DC difference: its category (the DC table's code for category s is s in 4 bits),
    /// then the category's extra bits.
    fn dc(&mut self, diff: i32) {
        let size = 32 - diff.unsigned_abs().leading_zeros();
        self.put(size, 4);
        if size > 0 {
            let extra = if diff < 0 { diff + (1 << size) - 1 } else { diff };
            self.put(extra as u32, size);
        }
    }

    /// Pads the last byte with 1 bits and hands the scan's bytes over.
    fn finish(&mut self) -> Vec<u8> {
        while self.n != 0 {
            self.put(1, 1);
        }
        std::mem::take(&mut self.out)
    }
}

/// A JPEG made of flat 8x8 blocks: component c of block (bx, by) has the level
/// `level(c, bx, by)`. All quantisers are 1 and nothing is subsampled; one DC table
/// (categories 0 to 11, 4-bit codes), one AC table (end-of-block only). `progressive`
/// writes SOF2 with a DC scan, then an AC scan per component; `adobe` writes an APP14
/// segment with that colour transform (0: CMYK), otherwise a JFIF APP0 segment.
pub fn jpeg(
    width: u16,
    height: u16,
    components: u8,
    progressive: bool,
    adobe: Option<u8>,
    level: &dyn Fn(usize, u32, u32) -> u8,
) -> Vec<u8> {
    let n = usize::from(components);
    let (bw, bh) = (u32::from(width).div_ceil(8), u32::from(height).div_ceil(8));
    let mut out = vec![0xFF, 0xD8];
    match adobe {
        Some(transform) => segment(&mut out, 0xEE, &[b"Adobe".as_slice(), &[0, 100, 0, 0, 0, 0, transform]].concat()),
        None => segment(&mut out, 0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"),
    }
    segment(&mut out, 0xDB, &[[0u8].as_slice(), &[1u8; 64]].concat());
    let mut sof = vec![8];
    sof.extend_from_slice(&height.to_be_bytes());
    sof.extend_from_slice(&width.to_be_bytes());
    sof.push(components);
    for c in 0..components {
        sof.extend_from_slice(&[c + 1, 0x11, 0]);
    }
    segment(&mut out, if progressive { 0xC2 } else { 0xC0 }, &sof);
    let mut dht = vec![0x00, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    dht.extend(0..12u8);
    dht.extend_from_slice(&[0x10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00]);
    segment(&mut out, 0xC4, &dht);
    let sos = |out: &mut Vec<u8>, comps: &[usize], ss: u8, se: u8| {
        let mut p = vec![comps.len() as u8];
        for &c in comps {
            p.extend_from_slice(&[c as u8 + 1, 0x00]);
        }
        p.extend_from_slice(&[ss, se, 0]);
        segment(out, 0xDA, &p);
    };
    // A flat block of level v has the DC coefficient 8 (v - 128) at quantiser 1.
    let dc = |c: usize, bx: u32, by: u32| (i32::from(level(c, bx, by)) - 128) * 8;
    let all: Vec<usize> = (0..n).collect();
    let mut bits = Bits::default();
    let mut pred = vec![0i32; n];
    sos(&mut out, &all, 0, if progressive { 0 } else { 63 });
    for by in 0..bh {
        for bx in 0..bw {
            for c in 0..n {
                let v = dc(c, bx, by);
                bits.dc(v - pred[c]);
                pred[c] = v;
                if !progressive {
                    bits.put(0, 1); // end of block
                }
            }
        }
    }
    out.extend(bits.finish());
    if progressive {
        for c in 0..n {
            sos(&mut out, &[c], 1, 63);
            for _ in 0..bw * bh {
                bits.put(0, 1); // EOB0: this block's AC coefficients are all zero
            }
            out.extend(bits.finish());
        }
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// A little-endian, uncompressed 8-bit greyscale TIFF claiming `width` x `height` in one
/// strip, followed by 16 bytes of pixels (a whole image at 4x4).
pub fn tiff_grey_claiming(width: u32, height: u32) -> Vec<u8> {
    const ENTRIES: u16 = 9;
    let data_at = 8 + 2 + 12 * u32::from(ENTRIES) + 4;
    let entries: [(u16, u16, u32); ENTRIES as usize] = [
        (256, 4, width),   // ImageWidth, LONG
        (257, 4, height),  // ImageLength
        (258, 3, 8),       // BitsPerSample, SHORT
        (259, 3, 1),       // Compression: none
        (262, 3, 1),       // PhotometricInterpretation: black is zero
        (273, 4, data_at), // StripOffsets
        (277, 3, 1),       // SamplesPerPixel
        (278, 4, height),  // RowsPerStrip: one strip
        (279, 4, 16),      // StripByteCounts
    ];
    let mut out = b"II*\0".to_vec();
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&ENTRIES.to_le_bytes());
    for (tag, kind, value) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        if kind == 3 {
            out.extend_from_slice(&(value as u16).to_le_bytes());
            out.extend_from_slice(&[0, 0]);
        } else {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
    out.extend_from_slice(&0u32.to_le_bytes()); // no next directory
    out.extend((0..16u8).map(|i| i * 16));
    out
}

/// A GIF whose logical screen claims `width` x `height`.
pub fn gif_claiming(gif: &[u8], width: u16, height: u16) -> Vec<u8> {
    assert!(gif.starts_with(b"GIF8"));
    let mut out = gif.to_vec();
    out[6..8].copy_from_slice(&width.to_le_bytes());
    out[8..10].copy_from_slice(&height.to_le_bytes());
    out
}

/// A BMP whose info header claims `width` x `height`.
pub fn bmp_claiming(bmp: &[u8], width: i32, height: i32) -> Vec<u8> {
    assert!(bmp.starts_with(b"BM"));
    let mut out = bmp.to_vec();
    out[18..22].copy_from_slice(&width.to_le_bytes());
    out[22..26].copy_from_slice(&height.to_le_bytes());
    out
}

/// A simple-format lossless WebP whose VP8L header claims `width` x `height` (at most
/// 16384 each).
pub fn webp_claiming(webp: &[u8], width: u32, height: u32) -> Vec<u8> {
    assert!(&webp[12..16] == b"VP8L" && webp[20] == 0x2F, "a simple lossless WebP");
    let mut out = webp.to_vec();
    let header = u32::from_le_bytes([out[21], out[22], out[23], out[24]]);
    let header = (header & 0xF000_0000) | ((height - 1) << 14) | (width - 1);
    out[21..25].copy_from_slice(&header.to_le_bytes());
    out
}

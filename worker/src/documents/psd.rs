//! A Photoshop document writer, after Adobe's "Photoshop File Formats Specification":
//! 8-bit RGB, one pixel layer per Lamina layer (bottom first, normal blend, full opacity,
//! visible), each with its transparency channel (-1) and R, G, B, all PackBits (RLE)
//! compressed, named in the Pascal name and the Unicode name block (`luni`). The merged
//! image section holds the real composite of the layers.
//!
//! Two conventions readers rely on: when the input had transparency the header has four
//! channels, the layer count is written negative ("the first alpha channel holds the
//! merged result's transparency") and the merged colours are matted over white, as
//! Photoshop stores them (readers un-matte them); otherwise three channels. A side over
//! 30000 pixels makes it a large document (PSB, version 2: wider length fields), as
//! Photoshop requires.

use lamina_common::manifest::BBox;

use super::{FormatWriter, RenderError, Stack};

/// The longest side a PSD may have; larger canvases are written as PSB.
pub const PSD_MAX_SIDE: u32 = 30_000;
/// The longest side a PSB may have.
pub const PSB_MAX_SIDE: u32 = 300_000;

/// One channel's PackBits rows: the byte count of each row and the rows back to back.
#[derive(Default)]
struct Channel {
    counts: Vec<u32>,
    data: Vec<u8>,
}

impl Channel {
    fn push(&mut self, row: &[u8]) {
        let before = self.data.len();
        packbits(row, &mut self.data);
        self.counts.push((self.data.len() - before) as u32);
    }
}

/// Builds a document row by row; see the module's documentation.
pub struct Writer {
    width: u32,
    height: u32,
    big: bool,
    has_alpha: bool,
    rects: Vec<BBox>,
    /// Per layer: alpha, R, G, B.
    layers: Vec<[Channel; 4]>,
    /// R, G, B (and alpha).
    merged: Vec<Channel>,
    scratch: Vec<u8>,
}

/// Opens the Photoshop writer for a stack (its entry in the format table).
pub fn open(stack: &Stack<'_>) -> Result<Box<dyn FormatWriter>, RenderError> {
    let writer = Writer::new(stack.width, stack.height, stack.rects, stack.has_alpha)?;
    Ok(Box::new(Document { writer, names: stack.names.to_vec() }))
}

/// The [`Writer`] with the layers' names it is finished with.
struct Document {
    writer: Writer,
    names: Vec<String>,
}

impl FormatWriter for Document {
    fn row(&mut self, _y: u32, layers: &[Option<&[u8]>], composite: &[[f32; 4]]) -> Result<(), RenderError> {
        for (i, part) in layers.iter().enumerate() {
            if let Some(part) = part {
                self.writer.layer_row(i, part);
            }
        }
        self.writer.merged_row(composite);
        Ok(())
    }

    fn finish(self: Box<Self>, _layer_pngs: &[Vec<u8>]) -> Result<(String, Vec<u8>), RenderError> {
        self.writer.finish(&self.names)
    }
}

/// The channel ids in the order each layer's channels are written: transparency, R, G, B.
const LAYER_CHANNELS: [i16; 4] = [-1, 0, 1, 2];

impl Writer {
    pub fn new(width: u32, height: u32, rects: &[BBox], has_alpha: bool) -> Result<Writer, RenderError> {
        if width.max(height) > PSB_MAX_SIDE {
            return Err(RenderError::Output(format!("a {width}x{height} canvas is over the {PSB_MAX_SIDE} pixels a side a Photoshop document can hold")));
        }
        let big = width.max(height) > PSD_MAX_SIDE;
        let channels = if has_alpha { 4 } else { 3 };
        Ok(Writer {
            width,
            height,
            big,
            has_alpha,
            rects: rects.to_vec(),
            layers: rects.iter().map(|_| Default::default()).collect(),
            merged: (0..channels).map(|_| Channel::default()).collect(),
            scratch: Vec::new(),
        })
    }

    /// The document's file name: `layers.psd`, or `layers.psb` for a large canvas.
    pub fn file_name(&self) -> &'static str {
        if self.big {
            "layers.psb"
        } else {
            "layers.psd"
        }
    }

    /// The next row of layer `i` inside its rectangle (8-bit straight RGBA).
    pub fn layer_row(&mut self, i: usize, rgba: &[u8]) {
        for (c, source) in [3usize, 0, 1, 2].into_iter().enumerate() {
            self.scratch.clear();
            self.scratch.extend(rgba.chunks_exact(4).map(|px| px[source]));
            self.layers[i][c].push(&self.scratch);
        }
    }

    /// The next row of the composite (premultiplied RGBA in [0,1]). Colours are matted over
    /// white: where the composite is opaque that is the colour itself.
    pub fn merged_row(&mut self, premultiplied: &[[f32; 4]]) {
        for c in 0..self.merged.len() {
            self.scratch.clear();
            self.scratch.extend(premultiplied.iter().map(|px| {
                let v = if c == 3 { px[3] } else { px[c] + (1.0 - px[3]) };
                (v * 255.0 + 0.5).clamp(0.0, 255.0) as u8
            }));
            self.merged[c].push(&self.scratch);
        }
    }

    /// The finished document: `(file name, bytes)`. `names` are the layers' names, bottom
    /// first.
    pub fn finish(mut self, names: &[String]) -> Result<(String, Vec<u8>), RenderError> {
        let name = self.file_name().to_owned();
        for (i, r) in self.rects.iter().enumerate() {
            if self.layers[i][0].counts.len() != r.height as usize {
                return Err(RenderError::Layer(format!("layer {i} got {} of its {} rows", self.layers[i][0].counts.len(), r.height)));
            }
        }
        let mut out = Vec::new();
        // File header.
        out.extend_from_slice(b"8BPS");
        put16(&mut out, if self.big { 2 } else { 1 });
        out.extend_from_slice(&[0; 6]);
        put16(&mut out, self.merged.len() as u16);
        put32(&mut out, self.height);
        put32(&mut out, self.width);
        put16(&mut out, 8);
        put16(&mut out, 3); // RGB
        put32(&mut out, 0); // colour mode data
        put32(&mut out, 0); // image resources

        // Layer info: the records, then every layer's channel data. The records are small;
        // the channel data moves into the file one channel at a time (each freed as it
        // goes), so the file never sits beside a second copy of the layers.
        let mut records = Vec::new();
        let count = self.layers.len() as i16;
        records.extend_from_slice(&(if self.has_alpha { -count } else { count }).to_be_bytes());
        for ((rect, channels), name) in self.rects.iter().zip(&self.layers).zip(names) {
            for v in [rect.y, rect.x, rect.y + rect.height, rect.x + rect.width] {
                put32(&mut records, v);
            }
            put16(&mut records, 4);
            for (id, channel) in LAYER_CHANNELS.iter().zip(channels) {
                records.extend_from_slice(&id.to_be_bytes());
                self.put_length(&mut records, self.channel_bytes(channel));
            }
            records.extend_from_slice(b"8BIMnorm");
            records.extend_from_slice(&[255, 0, 0, 0]); // opacity, clipping, flags (visible), filler
            let extra = extra_data(name);
            put32(&mut records, extra.len() as u32);
            records.extend_from_slice(&extra);
        }
        let data: u64 = self.layers.iter().flatten().map(|c| self.channel_bytes(c)).sum();
        let unpadded = records.len() as u64 + data;
        let info_len = unpadded.div_ceil(4) * 4;
        let merged: u64 = 2 + self.merged.iter().map(|c| c.counts.len() as u64 * self.count_bytes() + c.data.len() as u64).sum::<u64>();
        let length_bytes: u64 = if self.big { 8 } else { 4 };
        let section = length_bytes + info_len + 4;
        if !self.big && 38 + section + merged > u64::from(u32::MAX) {
            return Err(RenderError::Output("the layers are over the 4 GiB a PSD can hold".to_owned()));
        }
        out.reserve((section + length_bytes + merged) as usize);

        // Layer and mask information section: the layer info and an empty global mask.
        self.put_length(&mut out, section);
        self.put_length(&mut out, info_len);
        out.extend_from_slice(&records);
        drop(records);
        let big = self.big;
        for channels in std::mem::take(&mut self.layers) {
            for channel in channels {
                put_channel_data(&mut out, std::slice::from_ref(&channel), big);
            }
        }
        out.resize(out.len() + (info_len - unpadded) as usize, 0);
        put32(&mut out, 0);

        // Image data: the composite, every channel's row counts first, then the rows.
        put_channel_data(&mut out, &self.merged, big);
        Ok((name, out))
    }

    /// The bytes of one layer channel's data: compression mark, row counts, rows.
    fn channel_bytes(&self, channel: &Channel) -> u64 {
        2 + channel.counts.len() as u64 * self.count_bytes() + channel.data.len() as u64
    }

    /// Bytes of one row count in the RLE tables: 2 in a PSD, 4 in a PSB.
    fn count_bytes(&self) -> u64 {
        if self.big {
            4
        } else {
            2
        }
    }

    fn put_length(&self, out: &mut Vec<u8>, length: u64) {
        if self.big {
            out.extend_from_slice(&length.to_be_bytes());
        } else {
            put32(out, length as u32);
        }
    }
}

/// The compression mark (1, RLE), the row counts of all `channels` (u16, or u32 in a PSB),
/// then their rows.
fn put_channel_data(out: &mut Vec<u8>, channels: &[Channel], big: bool) {
    put16(out, 1);
    for channel in channels {
        for &count in &channel.counts {
            if big {
                put32(out, count);
            } else {
                put16(out, count as u16);
            }
        }
    }
    for channel in channels {
        out.extend_from_slice(&channel.data);
    }
}

/// A layer record's extra data: no mask, no blending ranges, the Pascal name (padded to a
/// multiple of 4) and the Unicode name block.
fn extra_data(name: &str) -> Vec<u8> {
    let mut extra = Vec::new();
    put32(&mut extra, 0);
    put32(&mut extra, 0);
    let ascii: Vec<u8> = name.chars().map(|c| if c.is_ascii() && !c.is_ascii_control() { c as u8 } else { b'?' }).take(255).collect();
    extra.push(ascii.len() as u8);
    extra.extend_from_slice(&ascii);
    while extra.len() % 4 != 0 {
        extra.push(0);
    }
    let units: Vec<u16> = name.encode_utf16().collect();
    let mut unicode = Vec::new();
    put32(&mut unicode, units.len() as u32);
    for unit in units {
        put16(&mut unicode, unit);
    }
    while unicode.len() % 4 != 0 {
        unicode.push(0);
    }
    extra.extend_from_slice(b"8BIMluni");
    put32(&mut extra, unicode.len() as u32);
    extra.extend_from_slice(&unicode);
    extra
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// PackBits (Apple's RLE, as PSD uses it): a header byte n in 0..=127 is followed by n+1
/// literal bytes; n in -127..=-1 by one byte repeated 1-n times. A run of 3 equal bytes is
/// packed where a literal would start (it saves a byte there); inside a literal only runs of
/// 4 or more are, since breaking a literal for 3 costs what it saves. Soft layers hold a
/// short run every dozen bytes or so, half of them of 3, so this also halves the work. A row
/// of w bytes never grows past w + ceil(w/128). The output is written into room made for
/// that bound at once and cut to its length after.
pub fn packbits(row: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + row.len() + row.len().div_ceil(128), 0);
    let buf = &mut out[start..];
    let mut o = 0;
    let flush = |buf: &mut [u8], o: &mut usize, bytes: &[u8]| {
        for chunk in bytes.chunks(128) {
            buf[*o] = (chunk.len() - 1) as u8;
            buf[*o + 1..*o + 1 + chunk.len()].copy_from_slice(chunk);
            *o += 1 + chunk.len();
        }
    };
    let mut literal_start = 0;
    let mut i = 0;
    loop {
        let three_here = i + 2 < row.len() && row[i] == row[i + 1] && row[i + 1] == row[i + 2];
        let Some(j) = (if three_here { Some(i) } else { next_run(row, i) }) else { break };
        let run = run_length(&row[j..]);
        flush(buf, &mut o, &row[literal_start..j]);
        buf[o] = (1i16 - run as i16) as i8 as u8;
        buf[o + 1] = row[j];
        o += 2;
        i = j + run;
        literal_start = i;
    }
    flush(buf, &mut o, &row[literal_start..]);
    out.truncate(start + o);
}

/// The first position at or after `from` where four equal bytes start. Soft layers are
/// mostly literal bytes, so it looks at many positions at once: sixteen with SSE2 (every
/// x86-64 has it), comparing the bytes at offsets 0 to 3 lane by lane, then eight with
/// [`next_run_words`] for the rest of the row.
#[cfg(target_arch = "x86_64")]
fn next_run(row: &[u8], mut k: usize) -> Option<usize> {
    use std::arch::x86_64::{__m128i, _mm_and_si128, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8};
    while k + 19 <= row.len() {
        // SAFETY: SSE2 is part of x86-64; the four unaligned 16-byte loads start at k to
        // k + 3 and end at k + 19 <= row.len(), inside the slice.
        let mask = unsafe {
            let p = row.as_ptr().add(k);
            let x = _mm_loadu_si128(p.cast::<__m128i>());
            let y = _mm_loadu_si128(p.add(1).cast::<__m128i>());
            let z = _mm_loadu_si128(p.add(2).cast::<__m128i>());
            let w = _mm_loadu_si128(p.add(3).cast::<__m128i>());
            _mm_movemask_epi8(_mm_and_si128(_mm_and_si128(_mm_cmpeq_epi8(x, y), _mm_cmpeq_epi8(y, z)), _mm_cmpeq_epi8(z, w)))
        };
        if mask != 0 {
            return Some(k + mask.trailing_zeros() as usize);
        }
        k += 16;
    }
    next_run_words(row, k)
}

#[cfg(not(target_arch = "x86_64"))]
fn next_run(row: &[u8], k: usize) -> Option<usize> {
    next_run_words(row, k)
}

/// [`next_run`] eight positions at a time in plain integers: for words `x`, `y`, `z`, `w`
/// read at offsets 0 to 3, a byte of `(x ^ y) | (y ^ z) | (z ^ w)` is zero exactly where a
/// run of four starts, and the lowest zero byte of a word is found without false positives.
fn next_run_words(row: &[u8], mut k: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let word = |o: usize| row[o..o + 8].try_into().map_or(0, u64::from_le_bytes);
    while k + 11 <= row.len() {
        let (x, y, z, w) = (word(k), word(k + 1), word(k + 2), word(k + 3));
        let t = (x ^ y) | (y ^ z) | (z ^ w);
        let zero = t.wrapping_sub(ONES) & !t & HIGHS;
        if zero != 0 {
            return Some(k + (zero.trailing_zeros() / 8) as usize);
        }
        k += 8;
    }
    (k..row.len().saturating_sub(3)).find(|&j| row[j] == row[j + 1] && row[j + 1] == row[j + 2] && row[j + 2] == row[j + 3])
}

/// How many of `bytes`' first bytes (at most 128, one PackBits run) equal the first; `bytes`
/// is not empty. Layers are mostly long runs (empty or flat regions), so it compares eight
/// bytes at a time while they match.
fn run_length(bytes: &[u8]) -> usize {
    let max = bytes.len().min(128);
    let v = bytes[0];
    let word = u64::from_ne_bytes([v; 8]);
    let mut n = 1;
    while n + 8 <= max && bytes[n..n + 8].try_into().is_ok_and(|w: [u8; 8]| u64::from_ne_bytes(w) == word) {
        n += 8;
    }
    while n < max && bytes[n] == v {
        n += 1;
    }
    n
}

/// Unpacks [`packbits`] output (for tests and checks).
pub fn unpackbits(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    while let Some((&header, rest)) = data.split_first() {
        let n = header as i8;
        if n >= 0 {
            let len = n as usize + 1;
            out.extend_from_slice(rest.get(..len)?);
            data = &rest[len..];
        } else if n != -128 {
            let &byte = rest.first()?;
            out.extend(std::iter::repeat_n(byte, (1 - i16::from(n)) as usize));
            data = &rest[1..];
        } else {
            data = rest;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packbits_round_trips_and_stays_within_its_bound() {
        let mut rows: Vec<Vec<u8>> = vec![vec![], vec![7], vec![1, 1], vec![1, 1, 1], vec![0; 1000], (0..=255).collect()];
        let mut state = 17u32;
        rows.push((0..777).map(|i| if i % 50 < 20 { 9 } else { state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345); (state >> 24) as u8 }).collect());
        for row in rows {
            let mut packed = Vec::new();
            packbits(&row, &mut packed);
            assert_eq!(unpackbits(&packed).unwrap(), row);
            assert!(packed.len() <= row.len() + row.len().div_ceil(128), "{} -> {}", row.len(), packed.len());
        }
        let mut packed = Vec::new();
        packbits(&[5; 300], &mut packed);
        assert_eq!(packed, vec![0x81, 5, 0x81, 5, 0xD5, 5], "runs of 128, 128 and 44");
    }

    /// The fast scan packs exactly as the plain one (a run from where a literal would start
    /// when three equal bytes start there, else from where four do, at most 128 long), so
    /// documents keep their bytes.
    #[test]
    fn packbits_packs_as_the_plain_scan_does() {
        fn plain(row: &[u8], out: &mut Vec<u8>) {
            let flush = |out: &mut Vec<u8>, bytes: &[u8]| {
                for chunk in bytes.chunks(128) {
                    out.push((chunk.len() - 1) as u8);
                    out.extend_from_slice(chunk);
                }
            };
            let (mut i, mut literal_start) = (0, 0);
            while i < row.len() {
                let mut run = 1;
                while i + run < row.len() && row[i + run] == row[i] && run < 128 {
                    run += 1;
                }
                if run >= 4 || (run == 3 && i == literal_start) {
                    flush(out, &row[literal_start..i]);
                    out.push((1i16 - run as i16) as i8 as u8);
                    out.push(row[i]);
                    i += run;
                    literal_start = i;
                } else {
                    i += run;
                }
            }
            flush(out, &row[literal_start..]);
        }
        let mut state = 99u32;
        for len in [0usize, 1, 2, 3, 4, 5, 9, 127, 128, 129, 130, 300, 1000, 4099] {
            for runs in [0u32, 2, 5, 9] {
                let row: Vec<u8> = (0..len)
                    .map(|i| {
                        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                        if runs > 0 && (i as u32 / 7) % runs == 0 { 3 } else { (state >> 29) as u8 }
                    })
                    .collect();
                let (mut fast, mut reference) = (Vec::new(), Vec::new());
                packbits(&row, &mut fast);
                plain(&row, &mut reference);
                assert_eq!(fast, reference, "length {len}, runs {runs}");
            }
        }
    }

    #[test]
    fn a_document_has_the_sections_in_order_with_consistent_lengths() {
        let rects = [BBox { x: 0, y: 0, width: 3, height: 2 }, BBox { x: 1, y: 1, width: 1, height: 1 }];
        let mut w = Writer::new(3, 2, &rects, false).unwrap();
        for _ in 0..2 {
            w.layer_row(0, &[10, 20, 30, 255, 10, 20, 30, 255, 10, 20, 30, 255]);
            w.merged_row(&[[0.5, 0.5, 0.5, 1.0]; 3]);
        }
        w.layer_row(1, &[200, 0, 0, 128]);
        let (name, bytes) = w.finish(&["00 #0a141e".into(), "01 é".into()]).unwrap();
        assert_eq!(name, "layers.psd");
        assert_eq!(&bytes[..6], b"8BPS\0\x01");
        assert_eq!(u16::from_be_bytes([bytes[12], bytes[13]]), 3, "three channels without input alpha");
        let section = u32::from_be_bytes(bytes[34..38].try_into().unwrap()) as usize;
        let info = u32::from_be_bytes(bytes[38..42].try_into().unwrap()) as usize;
        assert_eq!(section, info + 8);
        assert_eq!(i16::from_be_bytes([bytes[42], bytes[43]]), 2);
        let image_data = 38 + section;
        assert_eq!(u16::from_be_bytes([bytes[image_data], bytes[image_data + 1]]), 1, "RLE merged image");
        let counts: Vec<u16> = (0..6).map(|i| u16::from_be_bytes([bytes[image_data + 2 + 2 * i], bytes[image_data + 3 + 2 * i]])).collect();
        assert_eq!(image_data + 2 + 12 + counts.iter().map(|&c| c as usize).sum::<usize>(), bytes.len(), "the merged rows end the file");
        assert!(Writer::new(40_000, 2, &rects, true).unwrap().file_name() == "layers.psb");
        assert!(Writer::new(400_000, 2, &rects, true).is_err());
    }
}

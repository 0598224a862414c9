//! OpenRaster (`layers.ora`), as the OpenRaster specification 0.0.x lays it out: a ZIP whose
//! first member is `mimetype` (stored, `image/openraster`), then `stack.xml` (the layer stack,
//! first child the top layer, each with its x/y offset and `svg:src-over`), the layers as
//! `data/*.png`, the composite as `mergedimage.png` and `Thumbnails/thumbnail.png` (at most
//! 256 pixels a side). GIMP, Krita and MyPaint open it.

use super::{FormatWriter, RenderError, Stack, StreamPng};

/// The document's file name.
pub const FILE: &str = "layers.ora";
/// The thumbnail's longest side (the OpenRaster spec's limit).
const THUMBNAIL: u32 = 256;

/// The writer: the composite streams into `mergedimage.png` and the thumbnail; the layer
/// PNGs as written go into the archive at the end.
struct Writer {
    width: u32,
    height: u32,
    names: Vec<String>,
    rects: Vec<lamina_common::manifest::BBox>,
    merged: StreamPng,
    thumbnail: Thumbnail,
    straight: Vec<u8>,
}

/// Opens the OpenRaster writer for a stack (its entry in the format table).
pub fn open(stack: &Stack<'_>) -> Result<Box<dyn FormatWriter>, RenderError> {
    Ok(Box::new(Writer {
        width: stack.width,
        height: stack.height,
        names: stack.names.to_vec(),
        rects: stack.rects.to_vec(),
        merged: StreamPng::new(stack.width, stack.height).map_err(RenderError::Output)?,
        thumbnail: Thumbnail::new(stack.width, stack.height),
        straight: vec![0; stack.width as usize * 4],
    }))
}

impl FormatWriter for Writer {
    fn row(&mut self, y: u32, _layers: &[Option<&[u8]>], composite: &[[f32; 4]]) -> Result<(), RenderError> {
        for (px, out) in composite.iter().zip(self.straight.chunks_exact_mut(4)) {
            let a = px[3];
            for c in 0..3 {
                out[c] = if a > 0.0 { super::quantise(px[c] / a) } else { 0 };
            }
            out[3] = super::quantise(a);
        }
        self.merged.row(&self.straight).map_err(RenderError::Output)?;
        self.thumbnail.row(y, composite);
        Ok(())
    }

    fn finish(self: Box<Self>, layer_pngs: &[Vec<u8>]) -> Result<(String, Vec<u8>), RenderError> {
        let stack: Vec<Layer<'_>> = self
            .names
            .iter()
            .zip(&self.rects)
            .zip(layer_pngs)
            .enumerate()
            .map(|(i, ((name, rect), png))| Layer { name, file: lamina_common::keys::layer_name(i), x: rect.x, y: rect.y, png })
            .collect();
        let merged = self.merged.finish().map_err(RenderError::Output)?;
        let ora = write(self.width, self.height, &stack, &merged, &self.thumbnail.png().map_err(RenderError::Output)?)?;
        Ok((FILE.to_owned(), ora))
    }
}
/// What the `mimetype` member says.
pub const MIMETYPE: &str = "image/openraster";

/// One layer of the stack.
pub struct Layer<'a> {
    pub name: &'a str,
    /// Its PNG's name inside `data/`.
    pub file: String,
    pub x: u32,
    pub y: u32,
    pub png: &'a [u8],
}

/// The archive for a `width` x `height` canvas; `layers` bottom first.
pub fn write(width: u32, height: u32, layers: &[Layer<'_>], merged: &[u8], thumbnail: &[u8]) -> Result<Vec<u8>, RenderError> {
    let stack = stack_xml(width, height, layers);
    let paths: Vec<String> = layers.iter().map(|l| format!("data/{}", l.file)).collect();
    let mut members: Vec<(&str, &[u8])> = vec![("mimetype", MIMETYPE.as_bytes()), ("stack.xml", stack.as_bytes())];
    members.extend(paths.iter().zip(layers).map(|(path, l)| (path.as_str(), l.png)));
    members.push(("mergedimage.png", merged));
    members.push(("Thumbnails/thumbnail.png", thumbnail));
    super::zip::stored(&members)
}

/// `stack.xml`: the top layer first, as the spec orders the stack.
pub fn stack_xml(width: u32, height: u32, layers: &[Layer<'_>]) -> String {
    let mut xml = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<image version=\"0.0.3\" w=\"{width}\" h=\"{height}\">\n  <stack>\n");
    for l in layers.iter().rev() {
        xml.push_str(&format!(
            "    <layer name=\"{}\" src=\"data/{}\" x=\"{}\" y=\"{}\" opacity=\"1.0\" visibility=\"visible\" composite-op=\"svg:src-over\"/>\n",
            escape(l.name),
            escape(&l.file),
            l.x,
            l.y
        ));
    }
    xml.push_str("  </stack>\n</image>\n");
    xml
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mimetype_comes_first_and_stored_so_its_magic_is_at_offset_30() {
        let png = [1u8, 2, 3];
        let layers = [Layer { name: "00 <a&b>", file: "layer-00.png".into(), x: 3, y: 4, png: &png }];
        let ora = write(10, 20, &layers, &png, &png).unwrap();
        assert_eq!(&ora[..4], b"PK\x03\x04");
        assert_eq!(u16::from_le_bytes([ora[8], ora[9]]), 0, "stored");
        assert_eq!(u16::from_le_bytes([ora[28], ora[29]]), 0, "no extra field");
        assert_eq!(&ora[30..38], b"mimetype");
        assert_eq!(&ora[38..54], MIMETYPE.as_bytes());
        let xml = stack_xml(10, 20, &layers);
        assert!(xml.contains(r#"name="00 &lt;a&amp;b&gt;" src="data/layer-00.png" x="3" y="4""#), "{xml}");
    }
}

/// The composite reduced to at most [`THUMBNAIL`] pixels a side by area averaging
/// (premultiplied, so transparent pixels do not darken edges).
struct Thumbnail {
    height: u32,
    tw: u32,
    th: u32,
    sums: Vec<[f64; 4]>,
    counts: Vec<u32>,
    /// The thumbnail column of each canvas column.
    columns: Vec<u32>,
}

impl Thumbnail {
    fn new(width: u32, height: u32) -> Thumbnail {
        let scale = (f64::from(THUMBNAIL) / f64::from(width.max(height))).min(1.0);
        let tw = ((f64::from(width) * scale).round() as u32).clamp(1, THUMBNAIL);
        let th = ((f64::from(height) * scale).round() as u32).clamp(1, THUMBNAIL);
        let n = (tw * th) as usize;
        let columns = (0..u64::from(width)).map(|x| (x * u64::from(tw) / u64::from(width)) as u32).collect();
        Thumbnail { height, tw, th, sums: vec![[0.0; 4]; n], counts: vec![0; n], columns }
    }

    fn row(&mut self, y: u32, premultiplied: &[[f32; 4]]) {
        let ty = (u64::from(y) * u64::from(self.th) / u64::from(self.height)) as u32;
        let row = (ty * self.tw) as usize;
        for (&tx, px) in self.columns.iter().zip(premultiplied) {
            let i = row + tx as usize;
            for c in 0..4 {
                self.sums[i][c] += f64::from(px[c]);
            }
            self.counts[i] += 1;
        }
    }

    fn png(&self) -> Result<Vec<u8>, String> {
        let mut rgba = vec![0u8; self.sums.len() * 4];
        for ((sum, &count), out) in self.sums.iter().zip(&self.counts).zip(rgba.chunks_exact_mut(4)) {
            let a = sum[3] / f64::from(count.max(1));
            for c in 0..3 {
                out[c] = if sum[3] > 0.0 { super::quantise((sum[c] / sum[3]) as f32) } else { 0 };
            }
            out[3] = super::quantise(a as f32);
        }
        crate::encode::encode_png(self.tw, self.th, &rgba).map_err(|e| e.to_string())
    }
}

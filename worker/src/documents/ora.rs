//! OpenRaster (`layers.ora`), as the OpenRaster specification 0.0.x lays it out: a ZIP whose
//! first member is `mimetype` (stored, `image/openraster`), then `stack.xml` (the layer stack,
//! first child the top layer, each with its x/y offset and `svg:src-over`), the layers as
//! `data/*.png`, the composite as `mergedimage.png` and `Thumbnails/thumbnail.png` (at most
//! 256 pixels a side). GIMP, Krita and MyPaint open it.

/// The document's file name.
pub const FILE: &str = "layers.ora";
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
pub fn write(width: u32, height: u32, layers: &[Layer<'_>], merged: &[u8], thumbnail: &[u8]) -> Result<Vec<u8>, String> {
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

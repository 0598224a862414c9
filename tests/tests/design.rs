//! End-to-end test of design layers through the real `lamina` binary: the bundled poster
//! (assets/designs/poster.png) becomes a background, image, shape and text layers whose
//! files decode, whose manifest says each layer's role, box and colour and each text layer's
//! words, whose PSD and OpenRaster layers are named by role, colour and words (`06 text
//! #1a1a1a “45”`) and open in independent readers (psd-tools, the OpenRaster spec), and which
//! recomposite to the poster; `--layers 4` merges the smallest elements down to four layers,
//! still recompositing, the one text layer holding every line in reading order.

use lamina_common::manifest::LayerRole;
use lamina_tests::*;

#[test]
fn the_poster_becomes_named_design_layers_in_every_format() {
    let out = tempfile::tempdir().unwrap();
    let input = repo_root().join("assets/designs");
    let run = lamina(&["run", input.to_str().unwrap(), out.path().to_str().unwrap(), "--model", "design", "--formats", "png,psd,ora", "--progress", "none"]);
    assert!(run.status.success(), "{}", explain(&run));
    let key = "poster.png";
    let m = manifest(out.path(), key).expect("the poster's manifest");
    assert_eq!(m.model.id, "design@4");
    let roles: Vec<Option<LayerRole>> = m.layers.iter().map(|l| l.role).collect();
    use LayerRole::*;
    assert_eq!(roles, [Background, Image, Shape, Shape, Shape, Shape, Text, Text, Text].map(Some).to_vec());
    assert_eq!(m.layers[0].name, "00 background");
    // Text layers are named by role, their own colour and the words make_poster.py drew
    // in that colour, which the manifest keeps as read.
    let texts: Vec<(&str, Option<&str>)> = m.layers[6..].iter().map(|l| (l.name.as_str(), l.text.as_deref())).collect();
    for (colour, words) in [("#1a1a1a", "45"), ("#ff7800", "SPRING SALE"), ("#7828a0", "photo shoot ideas")] {
        let named = format!("text {colour} \u{201c}{words}\u{201d}");
        assert!(texts.iter().any(|(n, t)| n.ends_with(&named) && *t == Some(words)), "no text layer {named:?} in {texts:?}");
    }
    assert!(m.layers[..6].iter().all(|l| l.text.is_none()));
    // The photo is an image layer at the box it was pasted into.
    let photo = m.layers[1].bbox.expect("the image layer's box");
    assert_eq!((photo.x, photo.y, photo.width, photo.height), (450, 60, 300, 200));
    let dir = out.path().join(key);
    let poster = image::open(&input.join(key)).unwrap();
    let db = recomposite_psnr(&dir, &m, &poster).unwrap_or(f64::INFINITY);
    assert!(db >= 35.0, "recomposite {db:.2} dB");
    // psd-tools and the OpenRaster spec read the same layers, names and pixels.
    let reports = check_documents(&[dir.as_path()], false);
    assert_eq!(reports.len(), 1);

    let four = tempfile::tempdir().unwrap();
    let run = lamina(&["run", input.to_str().unwrap(), four.path().to_str().unwrap(), "--model", "design", "--layers", "4", "--progress", "none"]);
    assert!(run.status.success(), "{}", explain(&run));
    let m = manifest(four.path(), key).unwrap();
    assert_eq!(m.layers.len(), 4, "{:?}", m.layers.iter().map(|l| &l.name).collect::<Vec<_>>());
    assert_eq!(m.layers[3].text.as_deref(), Some("45\nphoto shoot ideas\nSPRING SALE"), "{:?}", m.layers[3]);
    let db = recomposite_psnr(&four.path().join(key), &m, &poster).unwrap_or(f64::INFINITY);
    assert!(db >= 35.0, "--layers 4 recomposites at {db:.2} dB");
}

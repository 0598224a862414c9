//! The set's README.md and LICENSE.md, written from the same table as the images so that
//! the description can never drift from the files.

use std::fmt::Write;

use crate::samples::{Sample, Spec};

/// The command that regenerates the set, from the repository's root.
pub const COMMAND: &str = "cargo run -p lamina-tests --bin make-layered-set -- eval/layered-set";

/// The photos that backgrounds may come from, with their subjects and terms as stated in
/// assets/samples/LICENSES.md.
const PHOTO_TERMS: [(&str, &str, &str); 6] = [
    ("astronaut.png", "Eileen Collins, NASA Great Images database", "public domain (NASA, no known copyright restrictions)"),
    ("chelsea.png", "Chelsea the cat, by Stefan van der Walt", "CC0"),
    ("coffee.png", "coffee cup, by Rachel Michetti (Pikolo Espresso Bar)", "CC0"),
    ("rocket.jpg", "DSCOVR launch on Falcon 9, SpaceX", "public domain (SpaceX release)"),
    ("hubble_deep_field.jpg", "Hubble eXtreme Deep Field, NASA", "public domain"),
    ("retina.jpg", "fundus photograph, Mikael Häggström (Wikimedia)", "CC0 1.0"),
];

/// The terms of `file`, if it is one of the photos backgrounds may use.
pub fn photo_terms(file: &str) -> Option<(&'static str, &'static str)> {
    PHOTO_TERMS.iter().find(|t| t.0 == file).map(|t| (t.1, t.2))
}

const REGENERATE: &str = "## Regenerate

From the repository's root:

```sh
ops/make-layered-set.sh
# which runs
";

const REGENERATE_END: &str = "```

The generator (`tests/src/bin/make_layered_set.rs`) is deterministic: its random numbers come
from its own integer PRNG seeded with each sample's name; its geometry uses only the
floating-point operations IEEE 754 defines exactly (`+ - * /`, `sqrt`, `floor`); photos are
shrunk by integer area averaging. `cargo test -p lamina-tests --test layered_set` regenerates
the set and checks that the committed files decode to the same pixels, and that every sample
keeps the promises above (sizes, layer counts, an opaque bottom layer, the exact composite).
A change to the generator comes with the regenerated set. One input is outside the
generator's control: the backgrounds cut from `rocket.jpg`, `hubble_deep_field.jpg` and
`retina.jpg` are what the JPEG decoder (its version pinned by `Cargo.lock`) makes of them; if
an update of the decoder changes its output, the test names those files, and the set is
regenerated.
";

pub fn readme(specs: &[Spec], samples: &[Sample]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "# Layered ground truth

{n} synthetic images with the RGBA layers they were composited from, to score layer
decompositions against (LayerD-style evaluation: decompose each input, match the predicted
layers to the true ones, and compare their colours and alpha). {photos} have photographic
backgrounds, the others flat colours or two-colour gradients; each has 2 to 6 layers.

## Layout

- `inputs/<name>.png`: the image to decompose, opaque 8-bit RGB.
- `gt/<name>.png/layer-NN.png`: its true layers, bottom first (`layer-00.png` is the opaque
  background), each the size of the input, 8-bit RGBA with straight (not premultiplied) alpha.
  Fully transparent pixels are `(0, 0, 0, 0)`. The folder is named after the input file,
  `.png` included, as Lamina names its output folders (`<out>/<input path>/layer-NN.png`), so
  `lamina run eval/layered-set/inputs OUT` writes its layers to the same relative paths under
  `OUT` as the ground truth has under `gt/`.
- `LICENSE.md`: the terms (CC0, and the photos' terms) and which photo each sample uses.

Names are `<background>-<content>-<nn>-<N>l.png`: background `photo`, `flat` or `gradient`;
content `shapes`, `text`, `soft`, `shadow`, `overlay`, `mixed`, `stripes`, `outlines`,
`icons` or `blocks`; `nn` the sample's number; `N` its number of layers.

## How the inputs are made

Each input is the \"over\" composite of its 8-bit layers, computed exactly and rounded once,
half up, at the end:

    C_0 = c_0,   C_k = a_k c_k + (1 - a_k) C_(k-1),   a_k = alpha_k / 255,   input = round(C_last)

so a decomposition that recovers the layers exactly recomposes the input exactly.

Every foreground layer is one colour or a simple two-colour gradient:

- hard shapes (rectangles, rounded rectangles, ellipses, triangles and other polygons) with
  anti-aliased edges: coverage counted on 4 x 4 samples per pixel;
- text: font8x8 glyphs scaled 3x to 8x, some oblique, anti-aliased the same way;
- soft discs and ellipses, feathered with a smoothstep edge, some with a radial glow;
- drop shadows: a shape's coverage moved down and sideways, blurred (three box passes) and
  darkened to 30% to 60% alpha, as a layer of its own just under its shape;
- tinted bands and panels of uniform 30% to 70% alpha;
- bars across the canvas, and sets of two to five parallel stripes (horizontal, vertical or
  at 45 degrees);
- outlines: frames, rounded frames and rings stroked 3 pixels or more, and straight strokes
  (rules and slanted lines) 1.5 to 8 pixels wide;
- icons: flat pictograms made of several pieces, some with holes (a pin, a house with a
  door, a plus, a heart, a check mark, a picture frame, a speech bubble);
- text blocks: one to three lines of words of one colour and size on one layer, each block
  in its own band of the canvas and its own colour.

Photographic backgrounds are crops of the photos in `assets/samples/`, most of them shrunk
by area averaging. Layers overlap freely.

## Samples

| name | size | layers | layers, bottom first |
| --- | --- | --- | --- |
",
        n = samples.len(),
        photos = specs.iter().filter(|s| s.photo().is_some()).count(),
    );
    for (spec, sample) in specs.iter().zip(samples) {
        let _ = writeln!(
            out,
            "| {} | {}x{} | {} | {} |",
            sample.name,
            spec.w,
            spec.h,
            sample.layers.len(),
            sample.notes.join("; ")
        );
    }
    let _ = write!(out, "\n{REGENERATE}{COMMAND}\n{REGENERATE_END}");
    out.push_str("\n## Licence\n\nCC0 1.0 for the generated content; the photographic backgrounds are public domain or CC0.\nSee [LICENSE.md](LICENSE.md).\n");
    out
}

pub fn license(specs: &[Spec], samples: &[Sample]) -> String {
    let mut out = String::from(
        "# Licence of the layered ground-truth set

The generated content of this folder (shapes, text, gradients, flat backgrounds, the layers
and their composites) is dedicated to the public domain under CC0 1.0 Universal
(<https://creativecommons.org/publicdomain/zero/1.0/>): you may copy, modify, distribute and
use it, for any purpose, without asking permission.

The text is drawn with the font8x8 glyphs (Daniel Hepper, after Marcel Sondaar's and IBM's
VGA fonts), which are public domain. (The `font8x8` crate that carries them, MIT-licensed, is
a dependency of the generator, not part of the set.)

The photographic backgrounds (the bottom layer, and so the input, of every `photo-` sample)
are crops and downscales of photos in `assets/samples/`, under the terms stated in
[assets/samples/LICENSES.md](../../assets/samples/LICENSES.md):

| photo | subject | terms | samples |
| --- | --- | --- | --- |
",
    );
    for (file, subject, terms) in PHOTO_TERMS {
        let users: Vec<&str> = specs
            .iter()
            .zip(samples)
            .filter(|(spec, _)| spec.photo() == Some(file))
            .map(|(_, sample)| sample.name.as_str())
            .collect();
        if !users.is_empty() {
            let _ = writeln!(out, "| {file} | {subject} | {terms} | {} |", users.join(", "));
        }
    }
    let _ = write!(
        out,
        "\nThe other samples use no photo.

## Regenerate

From the repository's root, `ops/make-layered-set.sh`, which runs

```sh
{COMMAND}
```

[README.md](README.md) says what the generator guarantees.
"
    );
    out
}

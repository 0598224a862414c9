//! Lamina's model families, each one folder listed once in [`FAMILIES`].
//!
//! A family is everything one kind of model needs: the `--model` names it answers to, the
//! identity its manifests record (what decides whether an image is current), the parameters
//! it takes ([`ParamRule`]), what it can do ([`Capabilities`]: layer roles, batching at a
//! common size, fast mode, a reduced-precision copy, the large-image strategy) and its
//! engine: its loader and networks, in the same folder, compiled by the `lamina-engine`
//! crate (`engines.rs`) so that the coordinator, which never loads a model, never links
//! libtorch. The coordinator reads the descriptions; the worker and the CLI read the same
//! table and load from it, so a job the model would refuse is refused once, up front, by
//! the same rule.
//!
//! Adding a family: a folder beside `fscs/` with a `FAMILY` constant and an engine with a
//! `load` function, one line in [`table!`] (docs/architecture.md, "Extending Lamina").

pub mod capacity;
pub mod design;
pub mod fscs;
pub mod objects;
pub mod torchscript;

use lamina_common::params::DecomposeParams;

pub use objects::card::MAX_OBJECT_LAYERS;
pub use torchscript::ModelCard;

/// The table: every model family, in the order `--model`'s help lists them, each with the
/// file of its networks (the `lamina-engine` crate compiles those, so the coordinator, which
/// reads the descriptions only, never links a network). Each name is a folder holding its
/// `FAMILY` description (`mod.rs`) and its engine. `table!(then)` hands the list to `then!`.
#[macro_export]
macro_rules! table {
    ($then:ident) => {
        $then! {
            fscs: "fscs/engine/mod.rs",
            objects: "objects/engine/mod.rs",
            design: "design/engine/mod.rs",
            torchscript: "torchscript/engine.rs",
            capacity: "capacity/engine.rs",
        }
    };
}

macro_rules! descriptions {
    ($($family:ident: $engine:literal),* $(,)?) => {
        /// Every model family's description.
        pub static FAMILIES: &[&Family] = &[$(&$family::FAMILY),*];
    };
}

table!(descriptions);

/// One model family: its names and its description (its loader is its engine's `load`).
pub struct Family {
    /// The family's name in messages and docs.
    pub name: &'static str,
    /// The `--model` forms it answers to, for help and errors (`objects, objects-small`).
    pub forms: &'static str,
    /// Listed in help and errors (the capacity-test stand-in is not).
    pub listed: bool,
    /// The parameters the family's models take (a model's card may narrow it:
    /// [`Description::rule`]).
    pub rule: ParamRule,
    pub caps: Capabilities,
    /// Whether a `--model` text names one of this family's models.
    pub accepts: fn(&str) -> bool,
    /// What the model named by the text is: identity, parameter rule, capabilities. Reads
    /// the model's card where it has one; a card that cannot be read here is said in
    /// [`Description::unread`], never an error (the coordinator may not see the workers'
    /// files).
    pub describe: fn(&str) -> Description,
    /// Why an image has the layers it has, in one line for its manifest.
    pub explain: fn(&DecomposeParams, Count) -> String,
}

/// How many layers an image got: `model_layers` made by the model (or its limit), `written`
/// written, `dropped` model layers left out as invisible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub model_layers: usize,
    pub written: usize,
    pub dropped: usize,
}

/// The explanation of colour layers merged by similarity (FSCS and fixed-count models).
pub fn explain_count(params: &DecomposeParams, count: Count) -> String {
    params.explain_count(count.model_layers, count.written, count.dropped)
}

/// Families are told apart by name.
impl PartialEq for Family {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Family {}

impl std::fmt::Debug for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// What identifies a model's outputs: manifests record both, and an image is current only
/// when they match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIdentity {
    /// Name and version, e.g. `fscs-k7@1`.
    pub id: String,
    pub weights_sha256: String,
}

/// A model's description, from its family (and its card, where it has one).
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    /// `None` when the model's card cannot be read here: then nothing counts as current,
    /// which is always correct and never stale.
    pub identity: Option<ModelIdentity>,
    pub rule: ParamRule,
    pub caps: Capabilities,
    /// Why the model's card could not be read here, if it could not.
    pub unread: Option<CardError>,
}

/// Which decomposition parameters a model takes: the one rule the coordinator, the CLI and
/// the worker check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamRule {
    pub layers: LayerRule,
    /// `Some(n)`: takes a palette of exactly `n` colours.
    pub palette: Option<usize>,
    /// Takes `--quality fast`.
    pub fast: bool,
    /// Takes `--min-coverage`.
    pub min_coverage: bool,
}

/// Which `--layers N` a model takes (`auto` is always taken: it keeps what the model makes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerRule {
    /// From `min` to `max`; `what` says what the layers are (`the background and up to 7
    /// objects`), or is empty.
    Range { min: u8, max: u8, what: &'static str },
    /// Exactly the model's own count (a fixed-count model cannot merge its layers).
    Exactly(usize),
    /// Any count (the model's card could not be read here: the workers check it).
    Any,
}

/// What a model's layers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roles {
    /// Colour layers: none has a role.
    Colour,
    /// Layer 0 is the filled background, the others objects over it.
    Objects,
    /// Layer 0 is the background; each layer over it says its role (image, shape, text)
    /// as the model reports it.
    Design,
}

/// How a model runs an image too large for one forward pass within the memory budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Large {
    /// In tiles or bands, streamed to the encoder: any size.
    Tiles,
    /// Analysed whole in a working set of about a hundred bytes a pixel, the layers streamed
    /// to the encoder in bands: as large as that working set fits the budget, refused with
    /// the reason beyond.
    Whole,
    /// Refused with the reason (raise the budget).
    Refuse,
}

/// What a model can do, as the batcher, the lanes and the encoder read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub roles: Roles,
    /// Padding an image (edge pixels repeated) beyond its size multiple leaves its layers
    /// within 1/255 (FSCS), so images of different sizes can share a batch at a common
    /// size; false where the result depends on the whole frame (object models).
    pub pads: bool,
    /// Fast mode runs the networks on a reduced copy of images over about 1 MP.
    pub fast_reduces: bool,
    /// The model can hold a second copy of its networks in a reduced precision for fast
    /// mode (bf16 on a CPU with bf16 instructions), kept only when it stays within 1/255.
    pub fast_copy: bool,
    pub large: Large,
}

/// A model as a job or a worker names it: its family and the text that named it.
#[derive(Clone)]
pub struct ModelSpec {
    family: &'static Family,
    text: String,
}

impl std::fmt::Debug for ModelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.text, self.family.name)
    }
}

impl PartialEq for ModelSpec {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl ModelSpec {
    /// The family that answers to `text`; the error lists every form.
    pub fn parse(text: &str) -> Result<ModelSpec, UnknownModel> {
        match FAMILIES.iter().find(|f| (f.accepts)(text)) {
            Some(family) => Ok(ModelSpec { family, text: text.to_owned() }),
            None => Err(UnknownModel { text: text.to_owned(), forms: forms() }),
        }
    }

    pub fn family(&self) -> &'static Family {
        self.family
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn describe(&self) -> Description {
        (self.family.describe)(&self.text)
    }

    /// The identity its manifests record (`None` when its card cannot be read here).
    pub fn identity(&self) -> Option<ModelIdentity> {
        self.describe().identity
    }

    /// Whether the model takes `params`; the reason when it does not.
    pub fn check_params(&self, params: &DecomposeParams) -> Result<(), Refusal> {
        self.describe().rule.check(params)
    }
}

/// Every `--model` form, for help and errors.
pub fn forms() -> String {
    let forms: Vec<&str> = FAMILIES.iter().filter(|f| f.listed).map(|f| f.forms).collect();
    forms.join(", ")
}

/// The families whose rule takes what `takes` asks, named for a refusal (`fscs`).
fn takers(takes: fn(&ParamRule) -> bool) -> String {
    let names: Vec<&str> = FAMILIES.iter().filter(|f| f.listed && takes(&f.rule)).map(|f| f.name).collect();
    names.join(" and ")
}

/// A model card (or pipeline card) that cannot be read or is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct CardError {
    pub path: std::path::PathBuf,
    pub reason: String,
}

/// A `--model` no family answers to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown model {text:?} (use {forms})")]
pub struct UnknownModel {
    pub text: String,
    /// Every form a family answers to.
    pub forms: String,
}

/// Why a model refuses a job's parameters ([`ParamRule::check`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("--layers {n} is out of range ({min} to {max}{what})")]
    LayersOutOfRange { n: u8, min: u8, max: u8, what: String },
    #[error("this model makes {count} normal-blend layers and cannot merge them to {n}")]
    FixedLayers { n: u8, count: usize },
    #[error("the palette has {given} colours; this model needs exactly {needs}")]
    PaletteSize { given: usize, needs: usize },
    /// `takers` names the families that take it.
    #[error("this model takes no palette (--palette is for {takers})")]
    NoPalette { takers: String },
    #[error("this model has no fast mode (--quality fast is for {takers})")]
    NoFastMode { takers: String },
    #[error("this model's layers cannot be dropped by coverage (--min-coverage is for {takers})")]
    NoMinCoverage { takers: String },
}

impl ParamRule {
    pub fn check(&self, params: &DecomposeParams) -> Result<(), Refusal> {
        if let Some(n) = params.layer_target() {
            match self.layers {
                LayerRule::Range { min, max, what } if !(min..=max).contains(&n) => {
                    let what = if what.is_empty() { String::new() } else { format!(": {what}") };
                    return Err(Refusal::LayersOutOfRange { n, min, max, what });
                }
                LayerRule::Exactly(count) if usize::from(n) != count => return Err(Refusal::FixedLayers { n, count }),
                _ => {}
            }
        }
        match (&params.palette, self.palette) {
            (Some(p), Some(needs)) if p.len() != needs => return Err(Refusal::PaletteSize { given: p.len(), needs }),
            (Some(_), None) => return Err(Refusal::NoPalette { takers: takers(|r| r.palette.is_some()) }),
            _ => {}
        }
        if !params.quality.is_reference() && !self.fast {
            return Err(Refusal::NoFastMode { takers: takers(|r| r.fast) });
        }
        if params.min_coverage.is_some() && !self.min_coverage {
            return Err(Refusal::NoMinCoverage { takers: takers(|r| r.min_coverage) });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_common::params::{LayerCount, Quality, Share};

    fn params(layers: Option<u8>, palette: usize) -> DecomposeParams {
        DecomposeParams { layers: layers.map(LayerCount::Count), palette: (palette > 0).then(|| vec![[0, 0, 0]; palette]), ..DecomposeParams::default() }
    }

    #[test]
    fn specs_parse_to_their_family_and_name_their_identity() {
        assert_eq!(ModelSpec::parse("fscs").unwrap().identity().unwrap().id, fscs::MODEL_ID);
        assert_eq!(ModelSpec::parse("objects-small").unwrap().family().name, "objects");
        assert_eq!(ModelSpec::parse("pipeline:/nowhere/card.json").unwrap().family().name, "objects");
        assert_eq!(ModelSpec::parse("capacity-test:300").unwrap().identity().unwrap().id, "capacity-test-300ms@1");
        let ts = ModelSpec::parse("torchscript:/nowhere/m.pt").unwrap();
        assert!(ts.identity().is_none());
        assert!(ts.describe().unread.unwrap().to_string().contains("/nowhere/m.json"));
        let unknown = ModelSpec::parse("resnet").unwrap_err().to_string();
        assert!(unknown.contains("unknown model") && unknown.contains("objects-small") && unknown.contains("torchscript:PATH"), "{unknown}");
        assert!(ModelSpec::parse("torchscript:").is_err());
    }

    #[test]
    fn every_family_answers_to_its_own_forms_only() {
        for (text, family) in [("fscs", "fscs"), ("objects", "objects"), ("pipeline:c.json", "objects"), ("torchscript:m.pt", "torchscript"), ("capacity-test:5", "capacity-test")] {
            let owners: Vec<&str> = FAMILIES.iter().filter(|f| (f.accepts)(text)).map(|f| f.name).collect();
            assert_eq!(owners, [family], "{text}");
        }
    }

    #[test]
    fn parameters_are_checked_by_one_rule_from_each_familys_description() {
        let fscs = ModelSpec::parse("fscs").unwrap();
        assert!(fscs.check_params(&params(Some(3), 7)).is_ok());
        assert!(fscs.check_params(&params(Some(9), 0)).unwrap_err().to_string().contains("--layers 9 is out of range (2 to 7)"));
        assert!(fscs.check_params(&params(None, 3)).unwrap_err().to_string().contains("exactly 7"));
        let objects = ModelSpec::parse("objects").unwrap();
        assert!(objects.check_params(&params(Some(9), 0)).unwrap_err().to_string().contains("2 to 8: the background and up to 7 objects"));
        assert!(objects.check_params(&params(None, 7)).unwrap_err().to_string().contains("takes no palette (--palette is for fscs)"));

        let dir = std::env::temp_dir().join(format!("lamina-card-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let card = r#"{"name":"m","version":"1","layers":4,"size_multiple":8,"max_side":1024,"sha256":"0000000000000000000000000000000000000000000000000000000000000000"}"#;
        std::fs::write(dir.join("m.json"), card).unwrap();
        let ts = ModelSpec::parse(&format!("torchscript:{}", dir.join("m.pt").display())).unwrap();
        assert!(ts.check_params(&params(Some(4), 0)).is_ok());
        assert!(ts.check_params(&params(Some(3), 0)).unwrap_err().to_string().contains("makes 4 normal-blend layers"));
        let unread = ModelSpec::parse("torchscript:/nowhere/m.pt").unwrap();
        assert!(unread.check_params(&params(Some(3), 0)).is_ok(), "a card the coordinator cannot read is checked by the workers");
        assert!(unread.check_params(&params(None, 7)).unwrap_err().to_string().contains("no palette"));
        assert!(ModelSpec::parse("capacity-test:1").unwrap().check_params(&params(Some(3), 0)).is_ok());

        let fast = DecomposeParams { quality: Quality::Fast, ..DecomposeParams::default() };
        assert!(fscs.check_params(&fast).is_ok());
        assert!(ts.check_params(&fast).unwrap_err().to_string().contains("no fast mode (--quality fast is for fscs)"));
        let auto = DecomposeParams { layers: Some(LayerCount::Auto), ..DecomposeParams::default() };
        assert!(fscs.check_params(&auto).is_ok());
        assert!(ts.check_params(&auto).is_ok(), "auto keeps what a fixed-count model makes");
        let sparse = DecomposeParams { min_coverage: Some(Share::parse("1%").unwrap()), ..DecomposeParams::default() };
        assert!(fscs.check_params(&sparse).is_ok());
        assert!(objects.check_params(&sparse).is_ok());
        assert!(ts.check_params(&sparse).unwrap_err().to_string().contains("--min-coverage is for fscs and objects"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}

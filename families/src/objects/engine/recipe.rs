//! Loads a recipe's stages: the matte network (built in or TorchScript) and the fill
//! (classical, or a TorchScript inpainter), each checked as it loads and as it runs.

use std::path::PathBuf;

use tch::{Device, Kind, Tensor};

use super::fill::{Fill, PushPull};
use super::matte::{check_stage_output, load_script, Matte, NetMatte, Normalise, ScriptMatte, StageError, ISNET, U2NETP};
use crate::torchscript::first_line;
use crate::ModelError;
use lamina_families::objects::card::{MatteStage, Recipe};

/// A recipe's loaded matte and fill stages.
pub type Stages = (Box<dyn Matte>, Box<dyn Fill>);

pub fn load_stages(recipe: &Recipe, device: Device) -> Result<Stages, ModelError> {
    let matte: Box<dyn Matte> = match &recipe.matte {
        MatteStage::Builtin { builtin } => {
            let net = if builtin == "isnet" { &ISNET } else { &U2NETP };
            let loaded = NetMatte::load(net, device).map_err(|e| match e {
                StageError::Card(card) => ModelError::Card(card),
                StageError::Load { path, reason } => ModelError::Load { path: path.display().to_string(), reason },
                other => ModelError::Load { path: net.file.to_owned(), reason: other.to_string() },
            })?;
            Box::new(loaded)
        }
        MatteStage::Script(m) => {
            let norm = Normalise { mean: m.mean, std: m.std };
            Box::new(ScriptMatte::load(&m.torchscript, &m.sha256, m.input_size, norm, m.output, m.sigmoid, device).map_err(ModelError::Card)?)
        }
    };
    let fill: Box<dyn Fill> = match &recipe.inpaint {
        None => Box::new(PushPull),
        Some(stage) => {
            let module = load_script(&stage.torchscript, &stage.sha256, device).map_err(ModelError::Card)?;
            Box::new(ScriptFill { module, path: stage.torchscript.clone(), multiple: stage.size_multiple })
        }
    };
    Ok((matte, fill))
}

/// A user's inpainting network: `forward(image, mask)` with the mask 1 where to fill.
struct ScriptFill {
    module: tch::CModule,
    path: PathBuf,
    multiple: i64,
}

impl Fill for ScriptFill {
    fn fill(&self, image: &Tensor, known: &Tensor) -> Result<Tensor, StageError> {
        const STAGE: &str = "inpainting network";
        let s = image.size();
        let (h, w) = (s[2], s[3]);
        let m = self.multiple;
        let (ph, pw) = ((h + m - 1) / m * m, (w + m - 1) / m * m);
        let pad = |t: &Tensor| if (ph, pw) == (h, w) { t.shallow_clone() } else { t.replication_pad2d([0, pw - w, 0, ph - h]) };
        let missing: Tensor = 1.0 - known;
        let mask = pad(&missing.gt(0.5).to_kind(Kind::Float));
        let out = tch::no_grad(|| self.module.forward_ts(&[pad(image), mask]))
            .map_err(|e| StageError::Failed { path: self.path.clone(), stage: STAGE, reason: first_line(&e.to_string()).to_owned() })?;
        check_stage_output(&self.path, STAGE, &out, &[s[0], 3, ph, pw])?;
        let out = out.to_kind(Kind::Float).narrow(2, 0, h).narrow(3, 0, w);
        // Known pixels stay as they were; the network's pixels fill the rest.
        Ok(image * known + out * (1.0 - known))
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

//! Bring-your-own model: a TorchScript file that follows the contract, described by its card.
//! Every output is checked (shape, value range, NaNs) before anything is written.

use std::path::Path;

use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use lamina_families::torchscript::ModelCard;
use crate::{torch_err, Batch, Decomposed, Model, ModelDesc, ModelError};
use lamina_common::params::DecomposeParams;

/// How far outside [0,1] an output may stray from rounding before it is a contract breach.
const RANGE_SLACK: f64 = 1e-3;

pub struct TorchScriptModel {
    desc: ModelDesc,
    module: tch::CModule,
    device: Device,
    precision: crate::Precision,
    path: std::path::PathBuf,
}

impl TorchScriptModel {
    /// Loads `path` and its card, refusing the model when its sha256 does not match.
    pub fn load(path: &Path, device: Device) -> Result<TorchScriptModel, ModelError> {
        let card = ModelCard::read(&ModelCard::path_for(path))
            .map_err(ModelError::Card)?;
        let err = |reason: String| ModelError::Load { path: path.display().to_string(), reason };
        let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read model: {e}")))?;
        let digest = hex::encode(Sha256::digest(&bytes));
        if !digest.eq_ignore_ascii_case(&card.sha256) {
            return Err(err(format!("sha256 {digest} does not match the model card's {}", card.sha256)));
        }
        let mut module = tch::CModule::load_data_on_device(&mut std::io::Cursor::new(bytes), device)
            .map_err(|e| err(format!("not a loadable TorchScript model: {}", first_line(&e.to_string()))))?;
        module.set_eval();
        let desc = ModelDesc {
            id: format!("{}@{}", card.name, card.version),
            weights_sha256: digest,
            layers: card.layers,
            size_multiple: card.size_multiple,
            max_side: card.max_side,
            bytes_per_pixel: card.bytes_per_pixel.unwrap_or(lamina_families::torchscript::DEFAULT_BYTES_PER_PIXEL),
            family: &lamina_families::torchscript::FAMILY,
            rule: lamina_families::ParamRule { layers: lamina_families::LayerRule::Exactly(card.layers), ..lamina_families::torchscript::FAMILY.rule },
        };
        Ok(TorchScriptModel { desc, module, device, precision: crate::Precision::Fp32, path: path.to_owned() })
    }

    fn contract(&self, reason: String) -> ModelError {
        ModelError::Contract { model: self.desc.id.clone(), reason }
    }

    fn check_output(&self, out: &Tensor, input: &Tensor) -> Result<(), ModelError> {
        let (b, _, h, w) = input.size4().map_err(torch_err(&self.desc.id))?;
        let want = [b, self.desc.layers as i64, 4, h, w];
        if out.size() != want {
            return Err(self.contract(format!("output shape {:?}, expected {want:?}", out.size())));
        }
        if out.kind() != Kind::Float {
            return Err(self.contract(format!("output dtype {:?}, expected float32", out.kind())));
        }
        if bool::try_from(out.isnan().any()).unwrap_or(true) {
            return Err(self.contract("output contains NaN".into()));
        }
        let (lo, hi) = (f64::try_from(out.min()).unwrap_or(f64::NAN), f64::try_from(out.max()).unwrap_or(f64::NAN));
        if !(lo >= -RANGE_SLACK && hi <= 1.0 + RANGE_SLACK) {
            return Err(self.contract(format!("output values span [{lo:.4}, {hi:.4}], outside [0, 1]")));
        }
        Ok(())
    }
}

pub(crate) fn first_line(s: &str) -> &str {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or(s).trim()
}

impl Model for TorchScriptModel {
    fn desc(&self) -> &ModelDesc {
        &self.desc
    }

    fn device(&self) -> Device {
        self.device
    }

    fn precision(&self) -> crate::Precision {
        self.precision
    }

    fn set_precision(&mut self, precision: crate::Precision) -> Result<(), ModelError> {
        if precision == self.precision {
            return Ok(());
        }
        // From the file again (its sha256 checked again), so fp32 after fp16 is the file's
        // fp32, not a round trip through fp16.
        let mut fresh = TorchScriptModel::load(&self.path, self.device)?;
        if precision != crate::Precision::Fp32 {
            fresh.module.to(self.device, precision.kind(), false);
        }
        fresh.precision = precision;
        *self = fresh;
        Ok(())
    }


    fn decompose(&self, batch: &Batch<'_>, params: &DecomposeParams) -> Result<Decomposed, ModelError> {
        self.check_params(params)?;
        let input = batch.images.to_kind(self.precision.kind());
        let out = tch::no_grad(|| self.module.forward_ts(&[&input]))
            .map_err(|e| self.contract(format!("forward failed: {}", first_line(&e.to_string()))))?;
        // In reduced precision the module answers in its own kind; the contract is fp32.
        let out = if self.precision != crate::Precision::Fp32 && out.kind() == self.precision.kind() { out.to_kind(Kind::Float) } else { out };
        self.check_output(&out, batch.images)?;
        let n = batch.sizes.len();
        Ok(Decomposed {
            layers: out.clamp(0.0, 1.0),
            sources: vec![(0..self.desc.layers).map(|i| vec![i]).collect(); n],
            palettes: vec![None; n],
            labels: vec![Vec::new(); n],
        })
    }
}

/// Loads `torchscript:PATH` (its card beside it) on `device`.
pub fn load(text: &str, device: Device) -> Result<Box<dyn Model>, ModelError> {
    let path = lamina_families::torchscript::model_path(text).ok_or_else(|| ModelError::Load { path: text.to_owned(), reason: "not a TorchScript model".to_owned() })?;
    Ok(Box::new(TorchScriptModel::load(path, device)?))
}

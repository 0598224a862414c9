//! Loading a converted text model: the TorchScript file and the files beside it are read,
//! checked against the record `ops/fetch-models.sh` wrote when it converted the pinned ONNX
//! file (`PINNED_SHA256 PT_SHA256 [BESIDE_SHA256...]`), and loaded on the model's device. A
//! file that is missing, altered or not the conversion of the pinned weights is refused with
//! the way to fetch it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tch::Device;

use crate::objects::models_dir;
use crate::ModelError;

/// A converted model, loaded and checked.
pub struct Pinned {
    pub module: tch::CModule,
    pub path: PathBuf,
    /// The files beside it, in the order asked for.
    pub beside: Vec<Vec<u8>>,
}

/// The error for the model at `path`, with how to get it.
pub fn load_error(path: &Path, reason: &str) -> ModelError {
    ModelError::Load {
        path: path.display().to_string(),
        reason: format!("{reason}: run ops/fetch-models.sh small (or set LAMINA_MODELS to the folder that holds it)"),
    }
}

/// Loads `file` from the models folder on `device`: `what` names it in errors, `pinned` is
/// the sha256 of the ONNX file it was converted from, and `beside` lists the files that come
/// with it (`(extension, what)`), each pinned in the record after the TorchScript file.
pub fn load(file: &str, what: &str, pinned: &str, beside: &[(&str, &str)], device: Device) -> Result<Pinned, ModelError> {
    let path = models_dir().join(file);
    let fail = |reason: String| load_error(&path, &reason);
    let bytes = std::fs::read(&path).map_err(|e| fail(format!("cannot read the {what} ({e})")))?;
    let mut digests = vec![pinned.to_owned(), hex::encode(Sha256::digest(&bytes))];
    let mut companions = Vec::with_capacity(beside.len());
    for &(extension, named) in beside {
        let data = std::fs::read(path.with_extension(extension)).map_err(|e| fail(format!("cannot read its {named} ({e})")))?;
        digests.push(hex::encode(Sha256::digest(&data)));
        companions.push(data);
    }
    let record = std::fs::read_to_string(path.with_extension("pt.source")).map_err(|e| fail(format!("cannot read its record ({e})")))?;
    if record.trim() != digests.join(" ") {
        return Err(fail(format!("not the conversion of the pinned {what} {pinned}")));
    }
    let mut module = tch::CModule::load_data_on_device(&mut std::io::Cursor::new(bytes), device)
        .map_err(|e| fail(format!("not a loadable TorchScript file: {}", crate::torchscript::first_line(&e.to_string()))))?;
    module.set_eval();
    Ok(Pinned { module, path, beside: companions })
}

//! A worker's model, loaded once per process: at start-up (a fleet worker, which measures
//! its throughput and memory before it takes tasks), or on the first image that needs it
//! (`lamina run`, where a job that only renders other formats from stored layers never
//! loads a model at all). Either way it outlives broker reconnects.

use std::sync::{Arc, Mutex};

use super::{device_name, ModelError, SharedModel};

type Loader = Box<dyn Fn() -> Result<SharedModel, ModelError> + Send + Sync>;

/// The model a worker session serves, loaded or to be loaded on first need.
pub struct ModelSlot {
    /// The model id tasks may name and heartbeats report.
    id: String,
    devices: Vec<tch::Device>,
    loaded: Mutex<Option<SharedModel>>,
    load: Option<Loader>,
}

impl std::fmt::Debug for ModelSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let devices: Vec<String> = self.devices.iter().map(|&d| device_name(d)).collect();
        f.debug_struct("ModelSlot").field("id", &self.id).field("devices", &devices).field("loaded", &self.get().is_some()).finish()
    }
}

impl ModelSlot {
    /// A model already loaded.
    pub fn loaded(model: SharedModel) -> Arc<ModelSlot> {
        let (id, devices) = (model.desc().id.clone(), model.devices());
        Arc::new(ModelSlot { id, devices, loaded: Mutex::new(Some(model)), load: None })
    }

    /// A model loaded by `load` when first needed; `id` is its identity's id and `devices`
    /// where it will run.
    pub fn lazy(id: String, devices: Vec<tch::Device>, load: impl Fn() -> Result<SharedModel, ModelError> + Send + Sync + 'static) -> Arc<ModelSlot> {
        Arc::new(ModelSlot { id, devices, loaded: Mutex::new(None), load: Some(Box::new(load)) })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn devices(&self) -> &[tch::Device] {
        &self.devices
    }

    /// The model, if it is loaded.
    pub fn get(&self) -> Option<SharedModel> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The model, loading it now (on a blocking thread, once) if it is not loaded yet.
    pub async fn load(self: &Arc<Self>) -> Result<SharedModel, ModelError> {
        if let Some(model) = self.get() {
            return Ok(model);
        }
        let slot = self.clone();
        tokio::task::spawn_blocking(move || {
            // Held while loading, so two callers load once.
            let mut loaded = slot.loaded.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(model) = loaded.as_ref() {
                return Ok(model.clone());
            }
            let load = slot.load.as_ref().ok_or_else(|| ModelError::Load { path: slot.id.clone(), reason: "no model to load".to_owned() })?;
            let model = load()?;
            *loaded = Some(model.clone());
            Ok(model)
        })
        .await
        .unwrap_or_else(|e| Err(ModelError::Crashed { model: self.id.clone(), reason: e.to_string() }))
    }
}

//! `lamina-engine`: the families' networks and loaders, compiled from each family's folder
//! (listed once, in `lamina_families::table!`). What every engine shares is here too: the
//! [`Model`] trait, its output contract, its errors. The device runtime that runs them
//! (devices, lanes, calibration, memory probes) is the worker's.

#[path = "engine/mod.rs"]
mod contract;

pub use contract::*;

use lamina_families::ModelSpec;

/// Loads the model a `--model` text names on a device.
pub type Loader = fn(&str, tch::Device) -> Result<Box<dyn Model>, ModelError>;

macro_rules! engines {
    ($($family:ident: $engine:literal),* $(,)?) => {
        $(
            #[path = $engine]
            pub mod $family;
        )*
        /// Every family's loader, in the order of [`lamina_families::FAMILIES`].
        static LOADERS: &[Loader] = &[$($family::load),*];
    };
}

lamina_families::table!(engines);

/// Loads the model `spec` names on `device`, through its family's loader.
pub fn load(spec: &ModelSpec, device: tch::Device) -> Result<Box<dyn Model>, ModelError> {
    // A spec is only made from the table, so its family is there; said as an error all the same.
    match lamina_families::FAMILIES.iter().position(|f| *f == spec.family()).and_then(|at| LOADERS.get(at)) {
        Some(load) => load(spec.as_str(), device),
        None => Err(ModelError::Load { path: spec.as_str().to_owned(), reason: format!("family {} is not in the table", spec.family().name) }),
    }
}

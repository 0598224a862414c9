//! The model card of a TorchScript model lives in `lamina_common::model`, shared with the
//! coordinator (which reads it to know the model's identity and check a job's parameters).

pub use lamina_common::model::ModelCard;

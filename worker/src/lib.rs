//! Lamina's worker: tasks in; fetch, decode, batch, run the model, encode, write layers and
//! the manifest (last); results out. The same pipeline runs inside `lamina run` (over an
//! in-process queue and local folders) and in the distributed fleet.

pub mod alloc;
pub mod args;
pub mod decode;
pub mod documents;
pub mod encode;
pub mod metrics;
pub mod runtime;
pub mod pipeline;
pub mod service;

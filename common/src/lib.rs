//! Lamina's shared vocabulary: where things are ([`location`]), how they are stored
//! ([`store`]), what a decomposition records ([`manifest`]), what travels between the
//! coordinator and the workers ([`messages`]), and the small helpers every part needs.
#![forbid(unsafe_code)]

pub mod amqp;
pub mod args;
pub mod bytes;
pub mod config;
pub mod error;
pub mod exposition;
pub mod keys;
pub mod logging;
pub mod location;
pub mod manifest;
pub mod messages;
pub mod params;
pub mod queue;
pub mod retry;
pub mod signal;
pub mod store;
pub mod time;

pub use error::{BadValue, ErrorKind, ServiceCause, SettingsError, StoreError};

pub use location::Location;
pub use store::{ObjectMeta, ObjectStore};

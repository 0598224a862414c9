//! Lamina's coordinator: turns a job into per-image tasks, skips images whose manifest is
//! current, tracks progress from results and writes the job's records. `lamina run` drives
//! it over an in-process queue; the distributed coordinator drives it over RabbitMQ.
#![forbid(unsafe_code)]

pub mod api;
pub mod http;
pub mod job;
pub mod planner;
pub mod progress;
pub mod runner;
pub mod scheduler;
pub mod service;
pub mod state;
pub mod tls;

pub use job::{JobRecords, JobSpec, Summary};
pub use planner::{plan, is_image_key, PlanStats, Planner};
pub use progress::Progress;
pub use runner::{fingerprint, JobContext, JobError, JobNote};


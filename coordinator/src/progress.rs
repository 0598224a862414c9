//! Counting a job's results: images listed, done, rendered again, skipped, failed, and the rate.

use std::time::Instant;

use lamina_common::messages::Status;

#[derive(Debug, Clone)]
pub struct Progress {
    pub started: Instant,
    pub done: u64,
    /// Rendered again from stored layers, without the model.
    pub rendered: u64,
    pub skipped: u64,
    pub failed: u64,
}

impl Default for Progress {
    fn default() -> Self {
        Progress { started: Instant::now(), done: 0, rendered: 0, skipped: 0, failed: 0 }
    }
}

impl Progress {
    pub fn count(&mut self, status: Status) {
        match status {
            Status::Done => self.done += 1,
            Status::Rendered => self.rendered += 1,
            Status::Skipped => self.skipped += 1,
            Status::Failed => self.failed += 1,
        }
    }

    pub fn finished(&self) -> u64 {
        self.done + self.rendered + self.skipped + self.failed
    }

    /// Images decomposed per second since the start.
    pub fn rate(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 { self.done as f64 / secs } else { 0.0 }
    }
}

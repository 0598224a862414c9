//! Showing progress: a bar with images/s and ETA on a terminal, structured log lines
//! otherwise, nothing when asked. Failures are always shown, one line each.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tracing::{info, warn};

use lamina_common::messages::{Status, TaskResult};
use lamina_coordinator::Progress;

/// Seconds between progress lines in log mode.
const LOG_EVERY: Duration = Duration::from_secs(10);

pub enum Reporter {
    Bar(ProgressBar),
    Log { last: Instant },
    Quiet,
}

impl Reporter {
    pub fn new(mode: &str) -> Reporter {
        let terminal = std::io::stderr().is_terminal();
        match mode {
            "bar" => Reporter::bar(),
            "auto" if terminal => Reporter::bar(),
            "none" => Reporter::Quiet,
            _ => Reporter::Log { last: Instant::now() },
        }
    }

    fn bar() -> Reporter {
        let bar = ProgressBar::new(0);
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} images  {per_sec}  eta {eta}  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Reporter::Bar(bar)
    }

    /// The number of images known so far (grows while the listing streams).
    pub fn set_total(&self, total: u64) {
        if let Reporter::Bar(bar) = self {
            bar.set_length(total);
        }
    }

    pub fn result(&mut self, result: &TaskResult, progress: &Progress, total: u64) {
        let failure = (result.status == Status::Failed)
            .then(|| format!("failed: {}: {}", result.key, result.reason.as_deref().unwrap_or("unknown reason")));
        match self {
            Reporter::Bar(bar) => {
                if let Some(line) = failure {
                    bar.println(line);
                }
                if result.status == Status::Skipped {
                    bar.set_message(format!("{} skipped (manifest current)", progress.skipped));
                }
                bar.set_position(progress.finished());
            }
            Reporter::Log { last } => {
                match result.status {
                    Status::Failed => warn!(key = %result.key, reason = result.reason.as_deref().unwrap_or(""), "image failed"),
                    Status::Skipped => info!(key = %result.key, "image skipped: manifest is current"),
                    Status::Done => info!(key = %result.key, layers = result.layers, psnr_db = result.psnr_db, ms = result.ms, "image done"),
                    Status::Rendered => info!(key = %result.key, layers = result.layers, ms = result.ms, "image rendered again from its stored layers"),
                }
                if last.elapsed() >= LOG_EVERY {
                    *last = Instant::now();
                    info!(finished = progress.finished(), total, images_per_second = progress.rate(), "progress");
                }
            }
            Reporter::Quiet => {
                if let Some(line) = failure {
                    eprintln!("{line}");
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Reporter::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

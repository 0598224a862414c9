//! Logging for every Lamina binary, to stderr: human-readable text by default, JSON lines when asked. `RUST_LOG`
//! overrides the level (default `info`).

use tracing_subscriber::EnvFilter;

pub fn init(format: &str) {
    init_with(format, "info");
}

/// Like [`init`], with another default filter (when `RUST_LOG` is not set).
pub fn init_with(format: &str, default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder.with_target(false).compact().init();
    }
}

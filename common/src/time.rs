//! Wall-clock timestamps as RFC 3339 strings, the only time format Lamina writes.

/// The current time in RFC 3339, seconds precision, UTC.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

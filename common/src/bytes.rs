//! Byte sizes as people write them (`--memory-budget 3GiB`) and as messages show them.

use crate::BadValue;

/// Parses `4096`, `512KiB`, `512MiB`, `2GiB`, `1.5GB`, `3G` (K, M, G, T: powers of 1024,
/// with or without `iB`/`B`; `KB`, `MB`, `GB`, `TB` too, as most people mean them).
pub fn parse(text: &str) -> Result<u64, BadValue> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| BadValue::new("", text, "is not a size (for example 3GiB or 512MiB)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(BadValue::new("size", text, format!("has an unknown unit {unit:?} (use KiB, MiB, GiB or TiB)"))),
    };
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(BadValue::new("", text, "is not a usable size"));
    }
    Ok(bytes as u64)
}

/// `1.5 GiB`, `512 MiB`, `900 B`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_people_write() {
        assert_eq!(parse("4096").unwrap(), 4096);
        assert_eq!(parse("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse(" 3 gb ").unwrap(), 3 << 30);
        assert!(parse("lots").is_err());
        assert!(parse("3 furlongs").unwrap_err().to_string().contains("unknown unit"));
        assert!(parse("0").is_err());
    }

    #[test]
    fn shows_sizes_briefly() {
        assert_eq!(human(900), "900 B");
        assert_eq!(human(3 << 29), "1.5 GiB");
        assert_eq!(human(512 << 20), "512.0 MiB");
    }
}

//! Output keys derived from input keys, and the checks that keep them inside their prefix.
//!
//! Every output object of an image lives under `<out>/<rel>/`, where `rel` is the input's key
//! relative to the input prefix. A key that could climb out of the prefix (`..`, an absolute
//! path, NUL or control characters, empty segments) is refused before anything is written.

use crate::StoreError;

/// Checks that `rel` is a safe relative key: `/`-separated, no empty, `.` or `..` segments,
/// not absolute, no backslashes, NULs or control characters.
pub fn check_relative(rel: &str) -> Result<(), StoreError> {
    let bad = |reason| Err(StoreError::BadKey { key: printable(rel), reason });
    if rel.is_empty() {
        return bad("empty key");
    }
    if rel.starts_with('/') {
        return bad("absolute path");
    }
    if rel.chars().any(|c| c.is_control()) {
        return bad("control character in key");
    }
    if rel.contains('\\') {
        return bad("backslash in key");
    }
    for segment in rel.split('/') {
        match segment {
            "" => return bad("empty path segment"),
            "." | ".." => return bad("relative path segment"),
            _ => {}
        }
    }
    Ok(())
}

/// Joins a safe relative key under a prefix (which may be empty).
pub fn join(prefix: &str, rel: &str) -> Result<String, StoreError> {
    check_relative(rel)?;
    let prefix = prefix.trim_end_matches('/');
    Ok(if prefix.is_empty() { rel.to_owned() } else { format!("{prefix}/{rel}") })
}

/// The key of layer `index` of an image.
pub fn layer_name(index: usize) -> String {
    format!("layer-{index:02}.png")
}

/// A key made safe to print on one line (control characters escaped).
pub fn printable(key: &str) -> String {
    key.chars().flat_map(char::escape_debug).collect::<String>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_keys_that_escape_the_prefix() {
        for key in ["", "/etc/passwd", "../x.png", "a/../../x", "a//b", "./a", "a\0b", "a\nb", "a\\..\\b"] {
            assert!(check_relative(key).is_err(), "{key:?} was accepted");
        }
    }

    #[test]
    fn accepts_ordinary_nested_keys() {
        for key in ["a.png", "2024/06/photo 1.jpg", "..hidden/x.png", "a..b.png", "ünï/çødé.webp"] {
            check_relative(key).unwrap();
        }
        assert_eq!(join("out/", "a/b.png").unwrap(), "out/a/b.png");
        assert_eq!(join("", "b.png").unwrap(), "b.png");
    }

    #[test]
    fn printable_escapes_control_characters() {
        assert_eq!(printable("a\nb\0"), "a\\nb\\0");
    }
}

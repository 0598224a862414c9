//! The parameters of a decomposition: everything besides the input bytes and the model that
//! changes what is written. Two runs with equal parameters write identical layers.

use serde::{Deserialize, Serialize};

/// User-visible decomposition parameters, recorded in every manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecomposeParams {
    /// The most layers to keep; `None` keeps what the model makes. Similar layers are merged
    /// down to this count, then layers with no visible pixel are dropped.
    pub layers: Option<u8>,
    /// A fixed palette (8-bit RGB, one colour per model layer) instead of the one k-means
    /// finds; only for palette-based models such as `fscs`.
    pub palette: Option<Vec<[u8; 3]>>,
}

impl DecomposeParams {
    /// Parses `"r,g,b;r,g,b;..."`.
    pub fn parse_palette(text: &str) -> Result<Vec<[u8; 3]>, String> {
        text.split(';')
            .filter(|s| !s.trim().is_empty())
            .map(|colour| {
                let parts: Vec<&str> = colour.split(',').map(str::trim).collect();
                let [r, g, b] = parts.as_slice() else {
                    return Err(format!("palette colour {colour:?} is not r,g,b"));
                };
                let channel = |s: &str| {
                    s.parse::<u8>().map_err(|_| format!("palette value {s:?} is not a number from 0 to 255"))
                };
                Ok([channel(r)?, channel(g)?, channel(b)?])
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_palettes() {
        assert_eq!(DecomposeParams::parse_palette("1,2,3; 4,5,6").unwrap(), vec![[1, 2, 3], [4, 5, 6]]);
        assert!(DecomposeParams::parse_palette("1,2").is_err());
        assert!(DecomposeParams::parse_palette("1,2,300").is_err());
    }
}

//! The networks' numeric precision. Only the networks change precision; palettes, the guided
//! filter, normalisation, merging and compositing stay in fp32, so a reduced-precision run
//! differs from an fp32 one only by what the networks' own arithmetic changes (measured at
//! start-up, see `calibrate.rs`, and in BENCHMARKS.md).

use tch::Kind;

/// A precision the networks can run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    Fp32,
    Fp16,
    Bf16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::Fp32, Precision::Fp16, Precision::Bf16];

    pub fn kind(self) -> Kind {
        match self {
            Precision::Fp32 => Kind::Float,
            Precision::Fp16 => Kind::Half,
            Precision::Bf16 => Kind::BFloat16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the operator asked for: a fixed precision (for both quality modes), or `auto`
/// (`calibrate.rs`: on CUDA the fastest precision whose layers stay within
/// [`AUTO_TOLERANCE`] of fp32's, measured at start-up; on a CPU fp32 for reference mode and,
/// where the CPU has bf16 instructions and the model stays within the tolerance, bf16 for
/// fast mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrecisionChoice {
    Auto,
    Fixed(Precision),
}

/// The largest mean absolute difference from fp32's layers (on the 0-1 scale) that `auto`
/// accepts: 1/255, one step of an 8-bit layer.
pub const AUTO_TOLERANCE: f64 = 1.0 / 255.0;

impl PrecisionChoice {
    pub fn parse(text: &str) -> Result<PrecisionChoice, lamina_common::BadValue> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Ok(PrecisionChoice::Auto),
            "fp32" | "float32" => Ok(PrecisionChoice::Fixed(Precision::Fp32)),
            "fp16" | "float16" | "half" => Ok(PrecisionChoice::Fixed(Precision::Fp16)),
            "bf16" | "bfloat16" => Ok(PrecisionChoice::Fixed(Precision::Bf16)),
            _ => Err(lamina_common::BadValue::new("precision", text, "is not auto, fp32, fp16 or bf16")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for p in Precision::ALL {
            assert_eq!(PrecisionChoice::parse(p.name()), Ok(PrecisionChoice::Fixed(p)));
        }
        assert_eq!(PrecisionChoice::parse("AUTO"), Ok(PrecisionChoice::Auto));
        assert!(PrecisionChoice::parse("fp8").unwrap_err().to_string().contains("fp8"));
    }
}

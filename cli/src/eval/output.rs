//! What `lamina eval` shows and writes: the terminal table and the JSON, with LayerD's keys
//! and Python's float formatting so the numbers read the same as LayerD's files.

use std::fmt::Write as _;

use super::score::{Aggregate, EditScore};
use super::*;


pub(super) struct Table {
    pub(super) name_width: usize,
}

impl Table {
    pub(super) fn new(names: &[&str]) -> Table {
        Table { name_width: names.iter().map(|n| n.chars().count()).max().unwrap_or(0).max(5) }
    }

    pub(super) fn header(&self) -> String {
        format!(
            "{:<w$}  {:>7}  {:>8}  {:>11}  {:>6}  {:>5}  {:>8}  {:>9}  {:>6}",
            "image",
            "pred/gt",
            "rgb_l1@0",
            "alpha_iou@0",
            "cost@0",
            "edits",
            "rgb_l1",
            "alpha_iou",
            "cost",
            w = self.name_width
        )
    }

    pub(super) fn row(&self, sample: &Sample) -> String {
        let first = sample.scores.first();
        let last = sample.scores.last();
        let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.4}"));
        format!(
            "{:<w$}  {:>7}  {:>8}  {:>11}  {:>6}  {:>5}  {:>8}  {:>9}  {:>6}",
            sample.name,
            format!("{}/{}", sample.pred_layers, sample.gt_layers),
            f(first.map(|s| s.rgb_l1)),
            f(first.map(|s| s.alpha_iou)),
            f(first.map(|s| s.cost)),
            last.map_or(0, |s| s.edits),
            f(last.map(|s| s.rgb_l1)),
            f(last.map(|s| s.alpha_iou)),
            f(last.map(|s| s.cost)),
            w = self.name_width
        )
    }
}

/// The aggregate table and the lists of images not scored.
pub(super) fn summary(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nLayerD aggregate over {} image{} (an image with fewer merges counts its last result at higher levels):",
        report.samples.len(),
        if report.samples.len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(out, "{:>9}  {:>9}  {:>5}  {:>8}  {:>10}  {:>13}", "max_edits", "avg_edits", "count", "avg_cost", "avg_rgb_l1", "avg_alpha_iou");
    for a in &report.aggregated {
        let _ = writeln!(
            out,
            "{:>9}  {:>9.3}  {:>5}  {:>8.4}  {:>10.4}  {:>13.4}",
            a.max_edits, a.avg_edits, a.count, a.avg_cost, a.avg_rgb_l1, a.avg_alpha_iou
        );
    }
    for (title, names) in [("only in PRED, not scored", &report.only_in_pred), ("only in GT, not scored", &report.only_in_gt)] {
        if !names.is_empty() {
            let _ = writeln!(out, "\n{title} ({}):", names.len());
            for name in names {
                let _ = writeln!(out, "  {name}");
            }
        }
    }
    if !report.skipped.is_empty() {
        let _ = writeln!(out, "\nskipped, as LayerD skips them ({}):", report.skipped.len());
        for s in &report.skipped {
            let _ = writeln!(out, "  {}: {}", s.name, s.reason);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// JSON, written as Python's `json.dump(..., indent=2)` writes it

pub(super) enum Json {
    Int(u64),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

pub(super) fn to_json(report: &Report) -> String {
    let edit = |s: &EditScore| {
        Json::Obj(vec![
            ("edits".into(), Json::Int(s.edits as u64)),
            ("cost".into(), Json::Float(s.cost)),
            ("rgb_l1".into(), Json::Float(s.rgb_l1)),
            ("alpha_iou".into(), Json::Float(s.alpha_iou)),
        ])
    };
    let agg = |a: &Aggregate| {
        Json::Obj(vec![
            ("max_edits".into(), Json::Int(a.max_edits as u64)),
            ("avg_edits".into(), Json::Float(a.avg_edits)),
            ("count".into(), Json::Int(a.count as u64)),
            ("avg_cost".into(), Json::Float(a.avg_cost)),
            ("avg_rgb_l1".into(), Json::Float(a.avg_rgb_l1)),
            ("avg_alpha_iou".into(), Json::Float(a.avg_alpha_iou)),
        ])
    };
    let names = |v: &[String]| Json::Arr(v.iter().map(|n| Json::Str(n.clone())).collect());
    let doc = Json::Obj(vec![
        (
            "samples".into(),
            Json::Obj(report.samples.iter().map(|s| (s.name.clone(), Json::Arr(s.scores.iter().map(edit).collect()))).collect()),
        ),
        ("aggregated".into(), Json::Arr(report.aggregated.iter().map(agg).collect())),
        ("only_in_pred".into(), names(&report.only_in_pred)),
        ("only_in_gt".into(), names(&report.only_in_gt)),
        (
            "skipped".into(),
            Json::Arr(
                report
                    .skipped
                    .iter()
                    .map(|s| Json::Obj(vec![("name".into(), Json::Str(s.name.clone())), ("reason".into(), Json::Str(s.reason.clone()))]))
                    .collect(),
            ),
        ),
    ]);
    let mut out = String::new();
    write_json(&doc, 0, &mut out);
    out.push('\n');
    out
}

pub(super) fn write_json(value: &Json, level: usize, out: &mut String) {
    let pad = |out: &mut String, level: usize| out.extend(std::iter::repeat_n("  ", level));
    match value {
        Json::Int(v) => {
            let _ = write!(out, "{v}");
        }
        Json::Float(v) => out.push_str(&py_float_repr(*v)),
        Json::Str(s) => py_json_string(s, out),
        Json::Arr(items) if items.is_empty() => out.push_str("[]"),
        Json::Obj(items) if items.is_empty() => out.push_str("{}"),
        Json::Arr(items) => {
            out.push_str("[\n");
            for (k, item) in items.iter().enumerate() {
                pad(out, level + 1);
                write_json(item, level + 1, out);
                out.push_str(if k + 1 < items.len() { ",\n" } else { "\n" });
            }
            pad(out, level);
            out.push(']');
        }
        Json::Obj(items) => {
            out.push_str("{\n");
            for (k, (key, item)) in items.iter().enumerate() {
                pad(out, level + 1);
                py_json_string(key, out);
                out.push_str(": ");
                write_json(item, level + 1, out);
                out.push_str(if k + 1 < items.len() { ",\n" } else { "\n" });
            }
            pad(out, level);
            out.push('}');
        }
    }
}

/// A string as Python's `json` writes it (`ensure_ascii`: everything outside printable
/// ASCII escaped, non-ASCII as UTF-16 `\uXXXX`).
pub(super) fn py_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest digits that read back to the same value, in fixed
/// notation for decimal exponents -4 to 15 (always with a fraction: `0.0`, `1.5`), else
/// `1e-05` / `1.5e+16` style.
pub(super) fn py_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            let (int_part, frac) = if digits.len() > int_len {
                (digits[..int_len].to_owned(), digits[int_len..].to_owned())
            } else {
                (format!("{digits:0<int_len$}"), "0".to_owned())
            };
            format!("{sign}{int_part}.{frac}")
        } else {
            format!("{sign}0.{}{digits}", "0".repeat((-exp - 1) as usize))
        }
    } else {
        let mant = if digits.len() > 1 { format!("{}.{}", &digits[..1], &digits[1..]) } else { digits };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mant}e{exp_sign}{:02}", exp.abs())
    }
}

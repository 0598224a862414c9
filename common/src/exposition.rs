//! Prometheus's text exposition format, written by the coordinator's and the workers'
//! `/metrics` endpoints alike.

use std::fmt::Write;

/// A metrics page being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Writes one metric: its help and type lines, then one sample per label set
    /// (`labels` is `""` or `{name="value",...}`).
    pub fn metric(&mut self, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(self.out, "{name}{labels} {value}");
        }
    }

    /// A sample without labels.
    pub fn one(value: f64) -> Vec<(String, f64)> {
        vec![(String::new(), value)]
    }

    /// Appends text written by hand (histograms).
    pub fn raw(&mut self) -> &mut String {
        &mut self.out
    }

    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_help_type_and_samples() {
        let mut page = Exposition::default();
        page.metric("x_total", "counter", "Xs.", &[("{k=\"a\"}".into(), 2.0)]);
        page.metric("y", "gauge", "Y.", &Exposition::one(0.5));
        assert_eq!(page.finish(), "# HELP x_total Xs.\n# TYPE x_total counter\nx_total{k=\"a\"} 2\n# HELP y Y.\n# TYPE y gauge\ny 0.5\n");
    }
}

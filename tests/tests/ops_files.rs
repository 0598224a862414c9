//! Checks of the operations files: the Prometheus alert rules pass `promtool check rules` and
//! their unit tests (`promtool test rules`), and the rules and the Grafana dashboard use only
//! the metric names documented in docs/metrics.md. promtool comes with Debian's prometheus
//! package, which ops/test.sh installs when it is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const RULES: &str = "ops/prometheus/lamina-rules.yml";
const RULE_TESTS: &str = "ops/prometheus/lamina-rules.test.yml";
const DASHBOARD: &str = "ops/grafana/lamina.json";
const METRICS_DOC: &str = "docs/metrics.md";
const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Runs promtool in the repository's root; fails (never skips) when it is not installed.
fn promtool(args: &[&str]) -> Output {
    match Command::new("promtool").args(args).current_dir(root()).output() {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!("promtool is not on PATH: ops/test.sh installs it (Debian's prometheus package)")
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    }
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The documented metrics (from the tables of docs/metrics.md), each with its type.
fn documented_metrics() -> BTreeMap<String, String> {
    let mut metrics = BTreeMap::new();
    for line in read(METRICS_DOC).lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "| `name` | type | labels | meaning |" splits into ["", "`name`", "type", ...].
        if cells.len() < 4 {
            continue;
        }
        let name = cells[1].trim_matches('`');
        if name.starts_with("lamina_") && cells[1].starts_with('`') {
            metrics.insert(name.to_owned(), cells[2].to_owned());
        }
    }
    assert!(metrics.len() >= 20, "too few metrics found in {METRICS_DOC}: {metrics:?}");
    metrics
}

/// Every `lamina_...` metric name in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let is_name_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("lamina_") {
        let starts_word = rest[..at].chars().next_back().map_or(true, |c| !(is_name_char(c) || c == ':'));
        let end = rest[at..].find(|c: char| !is_name_char(c)).map_or(rest.len(), |n| at + n);
        if starts_word && end > at + "lamina_".len() {
            names.push(rest[at..end].to_owned());
        }
        rest = &rest[end..];
    }
    names
}

/// The names in `exprs` that docs/metrics.md does not list (a histogram's `_bucket`, `_sum`
/// and `_count` series count as the histogram).
fn undocumented<'a>(exprs: impl IntoIterator<Item = &'a String>) -> (BTreeSet<String>, BTreeSet<String>) {
    let documented = documented_metrics();
    let mut used = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    for expr in exprs {
        for name in metric_names(expr) {
            let base = HISTOGRAM_SUFFIXES
                .iter()
                .find_map(|suffix| {
                    let base = name.strip_suffix(*suffix)?;
                    (documented.get(base).map(String::as_str) == Some("histogram")).then(|| base.to_owned())
                })
                .unwrap_or_else(|| name.clone());
            if documented.contains_key(&base) {
                used.insert(base);
            } else {
                unknown.insert(name);
            }
        }
    }
    (used, unknown)
}

/// The `expr:` values of the rules file, inline or block scalars (`expr: |`).
fn rule_exprs(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        i += 1;
        let Some(value) = trimmed.strip_prefix("expr:") else { continue };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let mut block = Vec::new();
            while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > indent(line)) {
                block.push(lines[i].trim());
                i += 1;
            }
            exprs.push(block.join("\n").trim().to_owned());
        } else {
            exprs.push(value.trim_matches(|c: char| c == '\'' || c == '"').to_owned());
        }
    }
    exprs
}

/// Every string under an `expr`, `query` or `definition` key, anywhere in the dashboard.
fn dashboard_queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match v {
                    Value::String(s) if matches!(key.as_str(), "expr" | "query" | "definition") => out.push(s.clone()),
                    _ => dashboard_queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

/// Every panel that shows data, rows' nested panels included.
fn data_panels(panels: &[Value]) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in panels {
        if panel["type"] == "row" {
            if let Some(nested) = panel["panels"].as_array() {
                out.extend(data_panels(nested));
            }
        } else {
            out.push(panel);
        }
    }
    out
}

#[test]
fn alert_rules_pass_promtool_check() {
    let out = promtool(&["check", "rules", RULES]);
    assert!(out.status.success(), "promtool check rules {RULES}\n{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"), "{}", describe(&out));
}

#[test]
fn alert_rules_unit_tests_pass() {
    let out = promtool(&["test", "rules", RULE_TESTS]);
    assert!(out.status.success(), "promtool test rules {RULE_TESTS}\n{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"), "{}", describe(&out));
}

#[test]
fn alert_rules_use_only_documented_metrics() {
    let text = read(RULES);
    let exprs = rule_exprs(&text);
    assert!(exprs.len() >= 10, "too few exprs found in {RULES}: {exprs:#?}");
    for expr in &exprs {
        assert!(!expr.is_empty(), "an empty expr in {RULES}");
    }
    let (used, unknown) = undocumented(&exprs);
    assert!(unknown.is_empty(), "{RULES} uses metrics not in {METRICS_DOC}: {unknown:?}");
    assert!(used.len() >= 10, "{RULES} uses too few metrics: {used:?}");
}

#[test]
fn alert_rules_link_existing_runbooks() {
    let text = read(RULES);
    let alerts = text.lines().filter(|l| l.trim_start().starts_with("- alert:")).count();
    let runbooks: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("runbook_url:"))
        .map(|v| v.trim().trim_matches(|c: char| c == '\'' || c == '"'))
        .collect();
    assert_eq!(runbooks.len(), alerts, "every alert needs a runbook_url");
    for runbook in runbooks {
        let file = runbook.split('#').next().unwrap_or(runbook);
        assert!(root().join(file).is_file(), "runbook {runbook} does not exist");
    }
    for name in [
        "LaminaJobStalled",
        "LaminaDeadLettersGrowing",
        "LaminaPoolNoHeartbeats",
        "LaminaHighErrorRate",
        "LaminaWorkerNearAckTimeout",
        "LaminaCoordinatorDown",
        "LaminaBrokerReconnecting",
        "LaminaS3Retries",
    ] {
        assert!(text.contains(&format!("- alert: {name}\n")), "alert {name} is missing from {RULES}");
    }
}

#[test]
fn grafana_dashboard_uses_only_documented_metrics() {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"));
    let panels = dashboard["panels"].as_array().unwrap_or_else(|| panic!("{DASHBOARD} has no panels"));
    let panels = data_panels(panels);
    assert!(panels.len() >= 10, "{DASHBOARD} has too few panels");
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or("<untitled>");
        assert!(
            panel["datasource"].is_object() || panel["datasource"].is_string(),
            "panel {title:?} has no datasource"
        );
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("panel {title:?} has no targets"));
        assert!(!targets.is_empty(), "panel {title:?} has no targets");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "panel {title:?} has a target without an expr");
        }
    }

    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    let (used, unknown) = undocumented(&queries);
    assert!(unknown.is_empty(), "{DASHBOARD} uses metrics not in {METRICS_DOC}: {unknown:?}");
    assert!(used.len() >= 10, "{DASHBOARD} uses too few metrics: {used:?}");

    let variables = dashboard["templating"]["list"].as_array().expect("templating variables");
    assert!(variables.iter().any(|v| v["name"] == "pool"), "{DASHBOARD} needs a `pool` variable");
}

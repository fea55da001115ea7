use super::*;

const ISSUE_EXAMPLE: &str = r#"
service: payment
baseline_version: v7
canary_version: v8
metrics:
  - name: latency
    kind: latency
    direction: increase
    tolerance: 0.10
    tolerance_abs: 0.002
    quantiles: [0.5, 0.99]
    critical: true
    weight: 1.0
    slo: {quantile: 0.99, max: 300}
  - name: error_rate
    kind: error_rate
    tolerance: 0.0
    tolerance_abs: 0.002
policy:
  method: sequential
  alpha: 0.01
  min_samples: 50
  max_duration: 30m
dimensions: [endpoint]
"#;

#[test]
fn the_documented_example_parses_in_every_format() {
    let yaml = AnalysisSpec::parse(ISSUE_EXAMPLE, SpecFormat::Yaml).unwrap();
    assert_eq!(yaml.policy.max_duration, Duration::from_secs(1800));
    assert_eq!(yaml.metrics[1].quantiles, vec![0.5, 0.99]);
    assert_eq!(yaml.dimensions, vec!["endpoint"]);
    let json = serde_json::to_string(&yaml).unwrap();
    assert_eq!(AnalysisSpec::parse(&json, SpecFormat::Json).unwrap(), yaml);
    let toml_text = r#"
service = "payment"
baseline_version = "v7"
canary_version = "v8"
dimensions = ["endpoint"]
[policy]
max_duration = "30m"
[[metrics]]
name = "latency"
kind = "latency"
tolerance = 0.10
tolerance_abs = 0.002
slo = { quantile = 0.99, max = 300 }
[[metrics]]
name = "error_rate"
kind = "error_rate"
tolerance = 0.0
tolerance_abs = 0.002
"#;
    assert_eq!(
        AnalysisSpec::parse(toml_text, SpecFormat::Toml).unwrap(),
        yaml
    );
}

fn check(yaml: &str, field: &str) {
    let err = AnalysisSpec::parse(yaml, SpecFormat::Yaml).unwrap_err();
    assert!(
        err.to_string().contains(field),
        "expected {field:?} in {err}"
    );
}

const BASE: &str = "service: s\nbaseline_version: a\ncanary_version: b\n";

#[test]
fn bad_specs_name_the_field() {
    check(&format!("{BASE}metrics: []\n"), "metrics");
    check(
        &format!("{BASE}metrics:\n  - {{name: x, kind: histogram}}\n"),
        "unknown variant `histogram`",
    );
    check(
        &format!("{BASE}metrics:\n  - {{name: x, kind: latency, tolerance: -0.1}}\n"),
        "metrics[0].tolerance",
    );
    check(
        &format!("{BASE}metrics:\n  - {{name: x, kind: latency}}\npolicy: {{alpha: 0.7}}\n"),
        "policy.alpha",
    );
    check(
        &format!("{BASE}metrics:\n  - {{name: x, kind: latency}}\npolicy: {{alpha: 0}}\n"),
        "policy.alpha",
    );
    check("service: s\nbaseline_version: a\ncanary_version: a\nmetrics:\n  - {name: x, kind: latency}\n", "canary_version");
    check(
        &format!("{BASE}metrics:\n  - {{name: x, kind: latency, quantiles: [1.5]}}\n"),
        "metrics[0].quantiles",
    );
    check(
        &format!("{BASE}metrics:\n  - {{name: x, kind: latency, tolerence: 0.1}}\n"),
        "unknown field `tolerence`",
    );
    check(
        "service: s\ncanary_version: b\nmetrics:\n  - {name: x, kind: latency}\n",
        "metrics[0].slo",
    );
    check(
        &format!(
            "{BASE}metrics:\n  - {{name: x, kind: latency}}\npolicy: {{max_duration: soon}}\n"
        ),
        "invalid duration",
    );
    check(
        &format!(
            "{BASE}metrics:\n  - {{name: x, kind: latency}}\n  - {{name: x, kind: latency}}\n"
        ),
        "metrics[1].name",
    );
    check(
        &format!("{BASE}metrics:\n  - {{name: e, kind: error_rate, slo: {{max: 2}}}}\n"),
        "metrics[0].slo.max",
    );
    check("service: ''\nbaseline_version: a\ncanary_version: b\nmetrics:\n  - {name: x, kind: latency}\n", "invalid service name: is empty");
}

#[test]
fn slo_mode_needs_no_baseline() {
    let spec = AnalysisSpec::parse(
        "service: new\ncanary_version: v1\nmetrics:\n  - {name: latency, kind: latency, slo: {quantile: 0.99, max: 300}}\n",
        SpecFormat::Yaml,
    )
    .unwrap();
    assert!(spec.is_slo_mode());
}

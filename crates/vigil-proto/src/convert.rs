//! Conversions between `vigil.v1` messages and `vigil-core` types.
//!
//! A proto spec becomes a core spec through the spec's own serde contract
//! (the same defaults, the same duration syntax, the same validation), so
//! the gRPC API cannot drift from spec files and the HTTP API: unset
//! optional fields are left out and take the spec's defaults.

use serde_json::{json, Map, Value};
use vigil_core::spec::{AnalysisSpec, Method, SpecError};
use vigil_core::{Direction, MetricKind, MetricStatus, Verdict, VerdictReport};

use crate::v1;

fn bad(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        message: message.into(),
    }
}

/// A proto spec as a validated core spec; the error names the field.
pub fn spec_from_proto(p: &v1::AnalysisSpec) -> Result<AnalysisSpec, SpecError> {
    let mut spec = Map::new();
    spec.insert("service".into(), json!(p.service));
    if let Some(b) = &p.baseline_version {
        spec.insert("baseline_version".into(), json!(b));
    }
    spec.insert("canary_version".into(), json!(p.canary_version));
    let mut metrics = Vec::with_capacity(p.metrics.len());
    for (i, m) in p.metrics.iter().enumerate() {
        let mut o = Map::new();
        o.insert("name".into(), json!(m.name));
        let kind = match v1::MetricKind::try_from(m.kind) {
            Ok(v1::MetricKind::Latency) => "latency",
            Ok(v1::MetricKind::ErrorRate) => "error_rate",
            Ok(v1::MetricKind::Gauge) => "gauge",
            _ => {
                return Err(bad(
                    format!("metrics[{i}].kind"),
                    "must be LATENCY, ERROR_RATE or GAUGE",
                ))
            }
        };
        o.insert("kind".into(), json!(kind));
        match v1::Direction::try_from(m.direction) {
            Ok(v1::Direction::Unspecified) => {}
            Ok(d) => {
                o.insert("direction".into(), json!(direction_name(d)));
            }
            Err(_) => {
                return Err(bad(
                    format!("metrics[{i}].direction"),
                    format!("unknown value {}", m.direction),
                ))
            }
        }
        if let Some(t) = m.tolerance {
            o.insert("tolerance".into(), json!(t));
        }
        if let Some(t) = m.tolerance_abs {
            o.insert("tolerance_abs".into(), json!(t));
        }
        if !m.quantiles.is_empty() {
            o.insert("quantiles".into(), json!(m.quantiles));
        }
        if let Some(c) = m.critical {
            o.insert("critical".into(), json!(c));
        }
        if let Some(w) = m.weight {
            o.insert("weight".into(), json!(w));
        }
        if let Some(slo) = &m.slo {
            let mut s = Map::new();
            if let Some(q) = slo.quantile {
                s.insert("quantile".into(), json!(q));
            }
            s.insert("max".into(), json!(slo.max));
            o.insert("slo".into(), Value::Object(s));
        }
        metrics.push(Value::Object(o));
    }
    spec.insert("metrics".into(), Value::Array(metrics));
    if let Some(p) = &p.policy {
        let mut o = Map::new();
        match v1::Method::try_from(p.method) {
            Ok(v1::Method::Unspecified) => {}
            Ok(v1::Method::Sequential) => {
                o.insert("method".into(), json!("sequential"));
            }
            Ok(v1::Method::FixedHorizon) => {
                o.insert("method".into(), json!("fixed-horizon"));
            }
            Ok(v1::Method::Kayenta) => {
                o.insert("method".into(), json!("kayenta"));
            }
            Err(_) => return Err(bad("policy.method", format!("unknown value {}", p.method))),
        }
        if let Some(a) = p.alpha {
            o.insert("alpha".into(), json!(a));
        }
        if let Some(n) = p.min_samples {
            o.insert("min_samples".into(), json!(n));
        }
        if !p.max_duration.is_empty() {
            o.insert("max_duration".into(), json!(p.max_duration));
        }
        spec.insert("policy".into(), Value::Object(o));
    }
    spec.insert("dimensions".into(), json!(p.dimensions));
    spec_from_json(Value::Object(spec))
}

/// A JSON spec (as the HTTP API receives it) as a validated core spec.
pub fn spec_from_json(v: Value) -> Result<AnalysisSpec, SpecError> {
    let spec: AnalysisSpec = serde_json::from_value(v).map_err(|e| bad("", e.to_string()))?;
    spec.validate()?;
    Ok(spec)
}

fn direction_name(d: v1::Direction) -> &'static str {
    match d {
        v1::Direction::Decrease => "decrease",
        v1::Direction::Either => "either",
        v1::Direction::Increase | v1::Direction::Unspecified => "increase",
    }
}

/// The proto form of a metric kind.
pub fn kind_to_proto(k: MetricKind) -> v1::MetricKind {
    match k {
        MetricKind::Latency => v1::MetricKind::Latency,
        MetricKind::ErrorRate => v1::MetricKind::ErrorRate,
        MetricKind::Gauge => v1::MetricKind::Gauge,
    }
}

/// A core spec as a proto spec (every field explicit).
pub fn spec_to_proto(s: &AnalysisSpec) -> v1::AnalysisSpec {
    v1::AnalysisSpec {
        service: s.service.to_string(),
        baseline_version: s.baseline_version.as_ref().map(ToString::to_string),
        canary_version: s.canary_version.to_string(),
        metrics: s
            .metrics
            .iter()
            .map(|m| v1::MetricSpec {
                name: m.name.to_string(),
                kind: kind_to_proto(m.kind) as i32,
                direction: match m.direction {
                    Direction::Increase => v1::Direction::Increase,
                    Direction::Decrease => v1::Direction::Decrease,
                    Direction::Either => v1::Direction::Either,
                } as i32,
                tolerance: Some(m.tolerance),
                tolerance_abs: Some(m.tolerance_abs),
                quantiles: m.quantiles.clone(),
                critical: Some(m.critical),
                weight: Some(m.weight),
                slo: m.slo.map(|s| v1::Slo {
                    quantile: s.quantile,
                    max: s.max,
                }),
            })
            .collect(),
        policy: Some(v1::Policy {
            method: match s.policy.method {
                Method::Sequential => v1::Method::Sequential,
                Method::FixedHorizon => v1::Method::FixedHorizon,
                Method::Kayenta => v1::Method::Kayenta,
            } as i32,
            alpha: Some(s.policy.alpha),
            min_samples: Some(s.policy.min_samples),
            max_duration: humantime_text(s.policy.max_duration),
        }),
        dimensions: s.dimensions.clone(),
    }
}

fn humantime_text(d: std::time::Duration) -> String {
    // The spec's own serializer writes durations as humantime text.
    serde_json::to_value(vigil_core::Policy {
        max_duration: d,
        ..Default::default()
    })
    .ok()
    .and_then(|v| {
        v.get("max_duration")
            .and_then(Value::as_str)
            .map(str::to_owned)
    })
    .unwrap_or_else(|| format!("{}s", d.as_secs()))
}

/// The proto form of a verdict.
pub fn verdict_to_proto(v: Verdict) -> v1::Verdict {
    match v {
        Verdict::Rollback => v1::Verdict::Rollback,
        Verdict::Continue => v1::Verdict::Continue,
        Verdict::Promote => v1::Verdict::Promote,
        Verdict::Inconclusive => v1::Verdict::Inconclusive,
    }
}

/// The core form of a proto verdict (`None` for `VERDICT_UNSPECIFIED` or an
/// unknown value).
pub fn verdict_from_proto(v: i32) -> Option<Verdict> {
    match v1::Verdict::try_from(v).ok()? {
        v1::Verdict::Rollback => Some(Verdict::Rollback),
        v1::Verdict::Continue => Some(Verdict::Continue),
        v1::Verdict::Promote => Some(Verdict::Promote),
        v1::Verdict::Inconclusive => Some(Verdict::Inconclusive),
        v1::Verdict::Unspecified => None,
    }
}

/// A report of analysis `id` of `service` as its proto form.
pub fn report_to_proto(id: &str, service: &str, r: &VerdictReport) -> v1::VerdictReport {
    v1::VerdictReport {
        analysis_id: id.to_owned(),
        verdict: verdict_to_proto(r.verdict) as i32,
        reason: r.reason.clone(),
        metrics: r
            .metrics
            .iter()
            .map(|m| v1::MetricResult {
                name: m.name.clone(),
                kind: kind_to_proto(m.kind) as i32,
                dimension: m.dimension.clone(),
                status: match m.status {
                    MetricStatus::Pass => v1::MetricStatus::Pass,
                    MetricStatus::Fail => v1::MetricStatus::Fail,
                    MetricStatus::Pending => v1::MetricStatus::Pending,
                } as i32,
                critical: m.critical,
                e_value: m.e_value,
                p_value: m.p_value,
                statistic: m.statistic,
                effect: m.effect.as_ref().map(|e| v1::Effect {
                    what: e.what.clone(),
                    canary: e.canary,
                    baseline: e.baseline,
                    relative: e.relative,
                    canary_low: e.canary_low,
                    canary_high: e.canary_high,
                }),
                n_canary: m.n_canary,
                n_baseline: m.n_baseline,
                summary: m.summary.clone(),
            })
            .collect(),
        worst_dimension: r.worst_dimension.clone(),
        decided_at: r.decided_at,
        evaluated_at: r.evaluated_at,
        service: service.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto_spec() -> v1::AnalysisSpec {
        v1::AnalysisSpec {
            service: "payment".into(),
            baseline_version: Some("v7".into()),
            canary_version: "v8".into(),
            metrics: vec![v1::MetricSpec {
                name: "latency".into(),
                kind: v1::MetricKind::Latency as i32,
                ..Default::default()
            }],
            policy: Some(v1::Policy {
                max_duration: "10m".into(),
                ..Default::default()
            }),
            dimensions: vec![],
        }
    }

    #[test]
    fn unset_fields_take_the_spec_defaults_and_round_trip() {
        let spec = spec_from_proto(&proto_spec()).unwrap();
        assert_eq!(spec.metrics[0].tolerance, 0.1);
        assert_eq!(spec.metrics[0].quantiles, vec![0.5, 0.99]);
        assert!(spec.metrics[0].critical);
        assert_eq!(spec.policy.max_duration.as_secs(), 600);
        assert_eq!(spec.policy.alpha, 0.01);
        let back = spec_from_proto(&spec_to_proto(&spec)).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn errors_name_the_field() {
        let mut p = proto_spec();
        p.metrics[0].tolerance = Some(-1.0);
        assert_eq!(
            spec_from_proto(&p).unwrap_err().field,
            "metrics[0].tolerance"
        );
        let mut p = proto_spec();
        p.metrics[0].kind = 0;
        assert_eq!(spec_from_proto(&p).unwrap_err().field, "metrics[0].kind");
        let mut p = proto_spec();
        p.policy = Some(v1::Policy {
            alpha: Some(0.7),
            ..Default::default()
        });
        assert_eq!(spec_from_proto(&p).unwrap_err().field, "policy.alpha");
        let mut p = proto_spec();
        p.canary_version = "v7".into();
        assert_eq!(spec_from_proto(&p).unwrap_err().field, "canary_version");
    }

    #[test]
    fn verdicts_map_both_ways() {
        for v in [
            Verdict::Rollback,
            Verdict::Continue,
            Verdict::Promote,
            Verdict::Inconclusive,
        ] {
            assert_eq!(verdict_from_proto(verdict_to_proto(v) as i32), Some(v));
            assert_eq!(verdict_to_proto(v).as_str_name(), v.as_str());
        }
        assert_eq!(verdict_from_proto(0), None);
    }
}

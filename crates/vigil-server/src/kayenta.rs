//! A Kayenta-compatible asynchronous API, so Argo Rollouts' `kayenta`
//! provider and Spinnaker use Vigil with no glue code:
//!
//! - `GET /canaryConfig` lists the configured analysis templates (the
//!   `kayenta_configs` of the configuration, or one named `default`) as
//!   Kayenta canary configs (`id`, `name`, `applications`...).
//! - `POST /canary/{configId}` takes Kayenta's execution request
//!   (`scopes.<name>.controlScope` / `experimentScope` with `scope`, and
//!   `thresholds.pass` / `marginal`), starts an analysis of the template
//!   and answers `{"canaryExecutionId": ID}` with 200, as Kayenta does.
//! - `GET /canary/{id}` answers `complete` and, once complete,
//!   `result.judgeResult.score.score`: 100 for PROMOTE, 0 for ROLLBACK,
//!   the marginal threshold for INCONCLUSIVE or a cancelled analysis (which
//!   Argo reads as Inconclusive).
//!
//! A scope names the version (`v8`), or `key=value` pairs separated by
//! commas, spaces or ` and ` with `version` and optionally `service`;
//! without a service in the scope, the template's service or else the
//! `application` query parameter is the service.
//!
//! Auth: Argo's provider sets no headers, but every URL it calls starts
//! with its `address`, so `http://vigil:TOKEN@host:8080` gives all three
//! calls a Basic header with the token (see [`crate::auth`]);
//! `auth.open_routes = ["kayenta"]` serves these routes without a token,
//! as Kayenta itself does, for clients that can send none.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use vigil_core::{ServiceName, Verdict, Version};

use crate::config::Template;
use crate::core::Vigil;
use crate::http::ApiError;
use crate::registry::State as AnalysisState;

/// Kayenta's default thresholds.
const DEFAULT_PASS: f64 = 95.0;
const DEFAULT_MARGINAL: f64 = 75.0;

fn templates(vigil: &Vigil) -> Vec<Template> {
    if vigil.config.kayenta_configs.is_empty() {
        vec![Template::default()]
    } else {
        vigil.config.kayenta_configs.clone()
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct AppQuery {
    application: Option<String>,
}

pub(crate) async fn list_configs(
    State(vigil): State<Arc<Vigil>>,
    Query(q): Query<AppQuery>,
) -> Json<Value> {
    let list: Vec<Value> = templates(&vigil)
        .iter()
        .map(|t| {
            let apps: Vec<String> = t
                .service
                .clone()
                .or_else(|| q.application.clone())
                .into_iter()
                .collect();
            json!({
                "id": t.name,
                "name": t.name,
                "updatedTimestamp": 0,
                "updatedTimestampIso": "1970-01-01T00:00:00Z",
                "applications": apps,
            })
        })
        .collect();
    Json(Value::Array(list))
}

pub(crate) async fn get_config(
    State(vigil): State<Arc<Vigil>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let t = templates(&vigil)
        .into_iter()
        .find(|t| t.name == id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no canary config {id}")))?;
    Ok(Json(json!({
        "id": t.name,
        "name": t.name,
        "applications": t.service.iter().collect::<Vec<_>>(),
        "metrics": t.metrics,
        "policy": t.policy,
        "dimensions": t.dimensions,
    })))
}

/// Service and version named by a scope string.
pub fn parse_scope(scope: &str) -> (Option<String>, Option<String>) {
    let scope = scope.trim();
    if !scope.contains('=') {
        return (None, (!scope.is_empty()).then(|| scope.to_owned()));
    }
    let mut service = None;
    let mut version = None;
    for part in scope
        .split(" and ")
        .flat_map(|p| p.split([',', ' ']))
        .filter(|p| !p.is_empty())
    {
        if let Some((k, v)) = part.split_once('=') {
            match k.trim() {
                "service" | "app" => service = Some(v.trim().to_owned()),
                "version" => version = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    (service, version)
}

#[derive(Debug, Deserialize)]
struct ScopeDetail {
    #[serde(default)]
    scope: String,
}

#[derive(Debug, Deserialize)]
struct ScopePair {
    #[serde(rename = "controlScope")]
    control: ScopeDetail,
    #[serde(rename = "experimentScope")]
    experiment: ScopeDetail,
}

#[derive(Debug, Default, Deserialize)]
struct Thresholds {
    pass: Option<f64>,
    marginal: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct ExecutionRequest {
    scopes: std::collections::BTreeMap<String, ScopePair>,
    #[serde(default)]
    thresholds: Thresholds,
}

pub(crate) async fn start(
    State(vigil): State<Arc<Vigil>>,
    Path(config_id): Path<String>,
    Query(q): Query<AppQuery>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let template = templates(&vigil)
        .into_iter()
        .find(|t| t.name == config_id)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no canary config {config_id}"),
            )
        })?;
    let req: ExecutionRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::field("", format!("malformed execution request: {e}")))?;
    let (name, pair) = req
        .scopes
        .iter()
        .next()
        .ok_or_else(|| ApiError::field("scopes", "at least one scope is needed"))?;
    let (svc_c, baseline) = parse_scope(&pair.control.scope);
    let (svc_e, canary) = parse_scope(&pair.experiment.scope);
    let service = svc_e
        .or(svc_c)
        .or_else(|| template.service.clone())
        .or(q.application)
        .ok_or_else(|| {
            ApiError::field(
                format!("scopes.{name}.experimentScope.scope"),
                "names no service: add service=NAME, or give ?application=NAME",
            )
        })?;
    let field = |which: &str| format!("scopes.{name}.{which}.scope");
    let service = ServiceName::new(&service)
        .map_err(|e| ApiError::field(field("experimentScope"), e.to_string()))?;
    let canary = canary
        .ok_or_else(|| ApiError::field(field("experimentScope"), "names no version"))
        .and_then(|v| {
            Version::new(v).map_err(|e| ApiError::field(field("experimentScope"), e.to_string()))
        })?;
    let baseline = baseline
        .ok_or_else(|| ApiError::field(field("controlScope"), "names no version"))
        .and_then(|v| {
            Version::new(v).map_err(|e| ApiError::field(field("controlScope"), e.to_string()))
        })?;
    let spec = Vigil::spec_from_template(&template, &service, Some(&baseline), &canary)
        .map_err(|e| ApiError::field(e.field, e.message))?;
    let entry = vigil.create(None, spec, "kayenta")?;
    let pass = req.thresholds.pass.unwrap_or(DEFAULT_PASS);
    let marginal = req.thresholds.marginal.unwrap_or(DEFAULT_MARGINAL);
    vigil
        .kayenta_thresholds
        .insert(entry.id.to_string(), (pass, marginal));
    Ok(Json(json!({ "canaryExecutionId": &*entry.id })))
}

pub(crate) async fn status(
    State(vigil): State<Arc<Vigil>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let entry = vigil
        .analyses
        .get(&id)
        .ok_or_else(|| ApiError::not_found(&id))?;
    let p = entry.published();
    let (pass, marginal) = vigil
        .kayenta_thresholds
        .get(&id)
        .map_or((DEFAULT_PASS, DEFAULT_MARGINAL), |t| *t);
    let complete = p.state != AnalysisState::Running;
    let mut body = json!({
        "canaryExecutionId": id,
        "complete": complete,
        "status": if complete { "succeeded" } else { "running" },
        "executionStatus": if complete { "SUCCEEDED" } else { "RUNNING" },
        "application": entry.spec.service.as_str(),
        "canaryConfigId": entry.origin,
        "thresholds": {"pass": pass, "marginal": marginal},
        "vigil": {"verdict": p.report.verdict, "reason": p.report.reason, "state": p.state},
    });
    if complete {
        let (score, classification) = match (p.state, p.report.verdict) {
            (AnalysisState::Decided, Verdict::Promote) => (100.0, "Pass"),
            (AnalysisState::Decided, Verdict::Rollback) => (0.0, "Fail"),
            _ => (marginal, "Marginal"),
        };
        body["result"] = json!({
            "judgeResult": {
                "judgeName": "vigil",
                "score": {"score": score, "classification": classification, "classificationReason": p.report.reason},
            },
        });
    }
    Ok(Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_name_versions_and_services() {
        assert_eq!(parse_scope("v8"), (None, Some("v8".into())));
        assert_eq!(
            parse_scope("service=payment,version=v8"),
            (Some("payment".into()), Some("v8".into()))
        );
        assert_eq!(
            parse_scope("app=payment and version=v7"),
            (Some("payment".into()), Some("v7".into()))
        );
        assert_eq!(parse_scope(""), (None, None));
    }
}

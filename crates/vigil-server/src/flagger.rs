//! Flagger webhooks: `POST /v1/flagger/{hook}` with Flagger's payload
//! (`name`, `namespace`, `phase`, `checksum`, `metadata`).
//!
//! Flagger treats an answer over 202 as a failed check. Its payload names
//! no version, so the analysis compares the two newest versions emitting
//! for the service (`metadata.service`, else `name`); `metadata.baseline`
//! and `metadata.canary` override them. The analysis is started on the
//! first `rollout` check that sees two versions, from the Kayenta template
//! named by `metadata.template` (else the first for the service, else the
//! default).
//!
//! - `confirm-rollout`, `pre-rollout`, `post-rollout`, `event`: 200.
//! - `rollout`: 200 while the verdict is CONTINUE or PROMOTE (or fewer than
//!   two versions emit yet), 409 on ROLLBACK or INCONCLUSIVE.
//! - `confirm-promotion`: 200 only once the verdict is PROMOTE.
//! - `rollback`: Flagger rolls back when this answers 200: 200 on ROLLBACK,
//!   409 otherwise.
//!
//! Auth: a Flagger webhook has only a URL, no headers, so the token rides
//! in it as credentials (`http://flagger:TOKEN@host:8080/v1/flagger/rollout`),
//! which Go's client sends as a Basic header (see [`crate::auth`]); or
//! `auth.open_routes = ["flagger"]`. A 401 counts as a failed check.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use vigil_core::{ServiceName, Verdict, Version};

use crate::config::Template;
use crate::core::Vigil;
use crate::http::ApiError;
use crate::registry::{Entry, State as AnalysisState};

/// Flagger's webhook payload.
#[derive(Debug, Deserialize)]
struct Payload {
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    phase: String,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

fn template(vigil: &Vigil, service: &str, named: Option<&String>) -> Template {
    let all = &vigil.config.kayenta_configs;
    named
        .and_then(|n| all.iter().find(|t| &t.name == n))
        .or_else(|| all.iter().find(|t| t.service.as_deref() == Some(service)))
        .cloned()
        .unwrap_or_default()
}

fn resolve(vigil: &Vigil, p: &Payload) -> Result<Option<Arc<Entry>>, ApiError> {
    let svc = p.metadata.get("service").unwrap_or(&p.name);
    let service =
        ServiceName::new(svc).map_err(|e| ApiError::field("metadata.service", e.to_string()))?;
    let t = template(vigil, service.as_str(), p.metadata.get("template"));
    match (p.metadata.get("baseline"), p.metadata.get("canary")) {
        (Some(b), Some(c)) => {
            let b =
                Version::new(b).map_err(|e| ApiError::field("metadata.baseline", e.to_string()))?;
            let c =
                Version::new(c).map_err(|e| ApiError::field("metadata.canary", e.to_string()))?;
            if let Some(e) = vigil.analyses.has_canary(service.as_str(), c.as_str()) {
                return Ok(Some(e));
            }
            let spec = Vigil::spec_from_template(&t, &service, Some(&b), &c)
                .map_err(|e| ApiError::field(e.field, e.message))?;
            let start = vigil
                .first_seen(&service, &c)
                .unwrap_or_else(|| vigil.stream_now());
            Ok(Some(vigil.create_from(None, spec, "flagger", start)?))
        }
        _ => vigil
            .analysis_for_service(&service, &t, "flagger")
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string())),
    }
}

fn answer(pass: bool, entry: Option<&Entry>, note: &str) -> Response {
    let (verdict, reason, id) = match entry {
        Some(e) => {
            let p = e.published();
            (
                json!(p.report.verdict),
                p.report.reason.clone(),
                json!(&*e.id),
            )
        }
        None => (json!(null), note.to_owned(), json!(null)),
    };
    let status = if pass {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    (
        status,
        Json(json!({"pass": pass, "analysis_id": id, "verdict": verdict, "reason": reason})),
    )
        .into_response()
}

pub(crate) async fn hook(
    State(vigil): State<Arc<Vigil>>,
    Path(hook): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let p: Payload = serde_json::from_slice(&body)
        .map_err(|e| ApiError::field("", format!("malformed Flagger payload: {e}")))?;
    let _ = (&p.namespace, &p.phase);
    match hook.as_str() {
        "confirm-rollout" | "pre-rollout" | "post-rollout" | "event" => {
            Ok(answer(true, None, "acknowledged"))
        }
        "rollout" | "confirm-promotion" | "rollback" => {
            let entry = resolve(&vigil, &p)?;
            let Some(entry) = entry else {
                let waiting = "fewer than two versions of the service emit yet";
                return Ok(answer(hook == "rollout", None, waiting));
            };
            let pub_ = entry.published();
            let v = pub_.report.verdict;
            let cancelled = pub_.state == AnalysisState::Cancelled;
            let pass = match hook.as_str() {
                "rollout" => !cancelled && matches!(v, Verdict::Continue | Verdict::Promote),
                "confirm-promotion" => !cancelled && v == Verdict::Promote,
                _ => v == Verdict::Rollback,
            };
            Ok(answer(pass, Some(&entry), ""))
        }
        other => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "unknown Flagger hook {other:?}: use confirm-rollout, pre-rollout, rollout, \
                 confirm-promotion, post-rollout, rollback or event"
            ),
        )),
    }
}

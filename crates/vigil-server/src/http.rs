//! The HTTP JSON API (axum): analyses, verdicts, ingest, probes and
//! metrics, plus the Kayenta-compatible and Flagger webhook routes.
//!
//! Errors are JSON `{"error": "...", "field": "..."}` with 400 (malformed
//! JSON or an invalid spec; `field` names it), 401, 404, 409 and 413.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use vigil_core::events::{EventReader, LineResult};
use vigil_core::spec::{AnalysisSpec, SpecFormat};
use vigil_proto::convert::spec_from_json;

use crate::auth::{allowed, Access};
use crate::config::RouteGroup;
use crate::core::Vigil;
use crate::ingest::IngestOutcome;
use crate::registry::{CreateError, Entry, State};

/// An API error as JSON.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
    /// The offending field, for 400s about a spec.
    pub field: Option<String>,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            field: None,
        }
    }

    /// 400 naming `field`.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        Self {
            status: StatusCode::BAD_REQUEST,
            message: if field.is_empty() {
                message
            } else {
                format!("{field}: {message}")
            },
            field: (!field.is_empty()).then_some(field),
        }
    }

    /// 404 for analysis `id`.
    pub fn not_found(id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("no analysis {id}"))
    }
}

impl From<CreateError> for ApiError {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::Exists(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            CreateError::BadId(m) => ApiError::field("id", m),
            CreateError::Judge(vigil_judge::JudgeError::Spec(s)) => {
                ApiError::field(s.field, s.message)
            }
            CreateError::Judge(e) => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.message});
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        (self.status, Json(body)).into_response()
    }
}

type Shared = Arc<Vigil>;

/// The JSON view of an analysis.
pub fn analysis_json(e: &Entry) -> Value {
    let p = e.published();
    json!({
        "id": &*e.id,
        "origin": e.origin,
        "state": p.state,
        "created_at": e.created_at,
        "spec": e.spec,
        "verdict": serde_json::from_slice::<Value>(&p.json()).unwrap_or(Value::Null),
    })
}

fn json_bytes(status: StatusCode, body: Bytes) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Every route, with auth, latency metrics and the body limit.
pub fn router(vigil: Shared) -> Router {
    let limit = vigil.config.max_body_bytes;
    Router::new()
        .route("/v1/analyses", post(create).get(list))
        .route("/v1/analyses/{id}", get(show).delete(cancel))
        .route("/v1/analyses/{id}/verdict", get(verdict))
        .route("/v1/services/{service}/verdict", get(service_verdict))
        .route("/v1/ingest", post(ingest))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/canaryConfig", get(crate::kayenta::list_configs))
        .route("/canaryConfig/{id}", get(crate::kayenta::get_config))
        .route(
            "/canary/{id}",
            post(crate::kayenta::start).get(crate::kayenta::status),
        )
        .route("/v1/flagger/{hook}", post(crate::flagger::hook))
        .layer(middleware::from_fn_with_state(vigil.clone(), guard))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(vigil)
}

/// Auth (writes, and reads when configured; probes, metrics and the route
/// groups of `auth.open_routes` stay open) and latency per route.
///
/// Metrics name the route as matched (`/canary/{id}`), never the path or
/// query as sent, and nothing here logs a request: credentials (and ids)
/// stay out of labels and logs.
async fn guard(AxState(vigil): AxState<Shared>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let open = matches!(route.as_str(), "/healthz" | "/readyz" | "/metrics")
        || RouteGroup::of_route(&route).is_some_and(|g| vigil.config.auth.open_routes.contains(&g));
    let access = if matches!(*req.method(), Method::GET | Method::HEAD) {
        Access::Read
    } else {
        Access::Write
    };
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !open
        && !allowed(
            &vigil.tokens,
            vigil.config.auth.require_on_reads,
            access,
            header,
        )
    {
        vigil
            .metrics
            .count_unauthenticated("http", &format!("{} {route}", req.method()));
        let mut r = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "a valid token is required: Authorization: Bearer TOKEN, or Basic \
             credentials with the token as password (a URL like \
             http://vigil:TOKEN@host:port/ for controllers that cannot set headers)",
        )
        .into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let method = req.method().clone();
    let resp = next.run(req).await;
    vigil.metrics.observe_api(
        "http",
        &format!("{method} {route}"),
        started.elapsed().as_secs_f64(),
    );
    resp
}

#[derive(Debug, Deserialize)]
struct CreateQuery {
    id: Option<String>,
}

async fn create(
    AxState(vigil): AxState<Shared>,
    Query(q): Query<CreateQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let spec = if content_type.contains("yaml") || content_type.contains("toml") {
        // A spec file as it is (YAML or TOML), with the same validation.
        let text = std::str::from_utf8(&body)
            .map_err(|e| ApiError::field("", format!("spec is not UTF-8: {e}")))?;
        let format = if content_type.contains("toml") {
            SpecFormat::Toml
        } else {
            SpecFormat::Yaml
        };
        AnalysisSpec::parse(text, format).map_err(|e| ApiError::field(e.field, e.message))?
    } else {
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::field("", format!("malformed JSON: {e}")))?;
        spec_from_json(value).map_err(|e| ApiError::field(e.field, e.message))?
    };
    let entry = vigil.create(q.id, spec, "api")?;
    let mut body = analysis_json(&entry);
    body["id"] = json!(&*entry.id);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    service: Option<String>,
    state: Option<String>,
}

async fn list(
    AxState(vigil): AxState<Shared>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let state = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(State::parse(s).ok_or_else(|| {
            ApiError::field(
                "state",
                format!("{s:?} is not RUNNING, DECIDED or CANCELLED"),
            )
        })?),
    };
    let analyses: Vec<Value> = vigil
        .analyses
        .list(q.service.as_deref().filter(|s| !s.is_empty()), state)
        .iter()
        .map(|e| analysis_json(e))
        .collect();
    Ok(Json(json!({ "analyses": analyses })))
}

async fn show(
    AxState(vigil): AxState<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let e = vigil
        .analyses
        .get(&id)
        .ok_or_else(|| ApiError::not_found(&id))?;
    Ok(Json(analysis_json(&e)))
}

async fn cancel(
    AxState(vigil): AxState<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let e = vigil.cancel(&id).ok_or_else(|| ApiError::not_found(&id))?;
    Ok(Json(analysis_json(&e)))
}

async fn verdict(
    AxState(vigil): AxState<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let e = vigil
        .analyses
        .get(&id)
        .ok_or_else(|| ApiError::not_found(&id))?;
    Ok(json_bytes(StatusCode::OK, e.published().json()))
}

#[derive(Debug, Deserialize)]
struct ServiceVerdictQuery {
    canary: Option<String>,
}

/// The verdict of the newest analysis of a service (optionally of one
/// canary version): what a controller reads when analyses start
/// themselves (`auto_analysis`) and it knows no id.
async fn service_verdict(
    AxState(vigil): AxState<Shared>,
    Path(service): Path<String>,
    Query(q): Query<ServiceVerdictQuery>,
) -> Result<Response, ApiError> {
    let canary = q.canary.filter(|c| !c.is_empty());
    let newest = vigil
        .analyses
        .list(Some(&service), None)
        .into_iter()
        .rfind(|e| {
            e.state() != State::Cancelled
                && canary
                    .as_deref()
                    .is_none_or(|c| e.spec.canary_version.as_str() == c)
        });
    let e = newest.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            match &canary {
                Some(c) => format!("no analysis of service {service} with canary {c}"),
                None => format!("no analysis of service {service}"),
            },
        )
    })?;
    Ok(json_bytes(StatusCode::OK, e.published().json()))
}

/// Decodes a JSON lines body (the `vigil replay` format) and records it.
pub fn ingest_ndjson(vigil: &Vigil, source: &str, body: &[u8]) -> IngestOutcome {
    // Recorded in chunks: counters and the seen-versions map are touched
    // once per chunk, not once per line.
    const CHUNK: usize = 8192;
    let mut outcome = IngestOutcome::default();
    let mut pending = Vec::with_capacity(CHUNK);
    for item in EventReader::new(body, "request body") {
        match item {
            Ok(LineResult::Samples { samples, .. }) => {
                pending.extend(samples);
                if pending.len() >= CHUNK {
                    outcome.merge(vigil.ingest.record(source, &pending));
                    pending.clear();
                }
            }
            Ok(LineResult::Rejected { line, error }) => {
                vigil.ingest.count_rejected(source, "invalid_event", 1);
                outcome.reject(1, || format!("line {line}: {error}"));
            }
            Err(e) => {
                vigil.ingest.count_rejected(source, "unreadable", 1);
                outcome.reject(1, || e.to_string());
                break;
            }
        }
    }
    outcome.merge(vigil.ingest.record(source, &pending));
    outcome
}

async fn ingest(
    AxState(vigil): AxState<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let ct = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let ok = [
            "application/x-ndjson",
            "application/jsonl",
            "application/json",
            "application/jsonlines",
            "text/plain",
        ];
        if !ok.contains(&ct.as_str()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type {ct} is not JSON lines: use application/x-ndjson"),
            ));
        }
    }
    let v = vigil.clone();
    let outcome = tokio::task::spawn_blocking(move || ingest_ndjson(&v, "http", &body))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(json!({
        "accepted": outcome.accepted,
        "rejected": outcome.rejected,
        "errors": outcome.errors,
    })))
}

async fn readyz(AxState(vigil): AxState<Shared>) -> Response {
    let waiting = vigil.readiness.waiting_for();
    if waiting.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("waiting for: {}\n", waiting.join(", ")),
        )
            .into_response()
    }
}

async fn metrics(AxState(vigil): AxState<Shared>) -> Response {
    vigil.metrics.mirror_store(&vigil.store.stats());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        vigil.metrics.encode(),
    )
        .into_response()
}

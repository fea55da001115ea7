//! The `vigil.v1.VigilService` gRPC service.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use vigil_judge::compare;
use vigil_proto::convert::{spec_from_proto, verdict_to_proto};
use vigil_proto::v1::vigil_service_server::VigilService;
use vigil_proto::v1::{self};
use vigil_stats::mann_whitney::Alternative;
use vigil_stats::{BucketCounts, Histogram};

use crate::auth::{allowed, Access};
use crate::core::Vigil;
use crate::registry::{CreateError, Published, State};

/// The service over shared state.
#[derive(Debug, Clone)]
pub struct Service {
    vigil: Arc<Vigil>,
    /// GetVerdict's latency histogram, kept: the hot path does no label
    /// lookup.
    get_verdict_latency: prometheus_client::metrics::histogram::Histogram,
}

impl Service {
    /// A service over `vigil`.
    pub fn new(vigil: Arc<Vigil>) -> Self {
        let get_verdict_latency = vigil.metrics.api_histogram("grpc", "GetVerdict");
        Self {
            vigil,
            get_verdict_latency,
        }
    }

    fn authorize<T>(&self, req: &Request<T>, access: Access) -> Result<(), Status> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if allowed(
            &self.vigil.tokens,
            self.vigil.config.auth.require_on_reads,
            access,
            header,
        ) {
            Ok(())
        } else {
            self.vigil.metrics.count_unauthenticated("grpc", "*");
            Err(Status::unauthenticated(
                "a valid token is required (authorization: Bearer TOKEN, or Basic \
                 credentials with the token as password)",
            ))
        }
    }

    fn observe(&self, method: &str, started: Instant) {
        self.vigil
            .metrics
            .observe_api("grpc", method, started.elapsed().as_secs_f64());
    }

    /// GetVerdict's work: the published verdict, encoded (see
    /// [`crate::verdict_route`]).
    pub(crate) fn verdict_bytes(
        &self,
        req: &Request<v1::GetVerdictRequest>,
    ) -> Result<bytes::Bytes, Status> {
        let started = Instant::now();
        self.authorize(req, Access::Read)?;
        let entry = self.entry(&req.get_ref().analysis_id)?;
        let encoded = entry.published().encoded();
        self.get_verdict_latency
            .observe(started.elapsed().as_secs_f64());
        Ok(encoded)
    }

    fn entry(&self, id: &str) -> Result<Arc<crate::registry::Entry>, Status> {
        if id.is_empty() {
            return Err(Status::invalid_argument("analysis_id: is empty"));
        }
        self.vigil
            .analyses
            .get(id)
            .ok_or_else(|| Status::not_found(format!("no analysis {id}")))
    }
}

/// The status for a failed create.
pub fn create_status(e: CreateError) -> Status {
    match e {
        CreateError::Exists(_) => Status::already_exists(e.to_string()),
        CreateError::BadId(_) | CreateError::Judge(_) => Status::invalid_argument(e.to_string()),
    }
}

type VerdictStream = Pin<Box<dyn Stream<Item = Result<v1::VerdictReport, Status>> + Send>>;

fn arm_histogram(arm: Option<&v1::Arm>, which: &str, scale: f64) -> Result<Histogram, Status> {
    let mut h = Histogram::new();
    let Some(arm) = arm else {
        return Err(Status::invalid_argument(format!("{which}: is missing")));
    };
    let scaled = |v: f64, at: String| -> Result<u64, Status> {
        let s = (v * scale).round();
        if !(v.is_finite() && v >= 0.0) || s >= 2f64.powi(62) {
            return Err(Status::invalid_argument(format!(
                "{at}: must be a finite number in [0, 4.6e15], got {v}"
            )));
        }
        Ok(s as u64)
    };
    for (i, &v) in arm.values.iter().enumerate() {
        let x = scaled(v, format!("{which}.values[{i}]"))?;
        h.record(x)
            .map_err(|e| Status::invalid_argument(format!("{which}.values[{i}]: {e}")))?;
    }
    for (i, b) in arm.buckets.iter().enumerate() {
        let x = scaled(b.value, format!("{which}.buckets[{i}].value"))?;
        h.record_n(x, b.count)
            .map_err(|e| Status::invalid_argument(format!("{which}.buckets[{i}]: {e}")))?;
    }
    if h.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{which}: holds no samples"
        )));
    }
    Ok(h)
}

/// The `Compare` call, stateless.
pub fn compare_call(req: &v1::CompareRequest) -> Result<v1::CompareResponse, Status> {
    // Values are compared at a resolution of 1/1000 of their unit (as the
    // store keeps distributions).
    let scale = vigil_core::metric::DISTRIBUTION_SCALE;
    let baseline = arm_histogram(req.baseline.as_ref(), "baseline", scale)?;
    let canary = arm_histogram(req.canary.as_ref(), "canary", scale)?;
    let confidence = if req.confidence == 0.0 {
        0.99
    } else {
        req.confidence
    };
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(Status::invalid_argument(format!(
            "confidence: must be in (0, 1), got {confidence}"
        )));
    }
    for (name, v) in [
        ("tolerance", req.tolerance),
        ("tolerance_abs", req.tolerance_abs),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(Status::invalid_argument(format!(
                "{name}: must be >= 0, got {v}"
            )));
        }
    }
    let alternative = match v1::Direction::try_from(req.direction) {
        Ok(v1::Direction::Unspecified | v1::Direction::Increase) => Alternative::Greater,
        Ok(v1::Direction::Decrease) => Alternative::Less,
        Ok(v1::Direction::Either) => Alternative::TwoSided,
        Err(_) => return Err(Status::invalid_argument("direction: unknown value")),
    };
    let policy = compare::Policy {
        alternative,
        confidence,
        tolerance: req.tolerance,
        tolerance_abs: req.tolerance_abs,
    };
    let r = compare::compare(&canary, &baseline, scale, &policy)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let q = |q: &compare::Quantiles| v1::Quantiles {
        p50: q.p50,
        p90: q.p90,
        p99: q.p99,
        p99_9: q.p99_9,
    };
    Ok(v1::CompareResponse {
        verdict: match r.verdict {
            compare::Verdict::Rollback => v1::Verdict::Rollback,
            compare::Verdict::Promote => v1::Verdict::Promote,
            compare::Verdict::Inconclusive => v1::Verdict::Inconclusive,
        } as i32,
        reason: r.reason.clone(),
        n_baseline: r.n_baseline,
        n_canary: r.n_canary,
        u: r.mann_whitney.u,
        z: r.mann_whitney.z,
        p_value: r.mann_whitney.p_value,
        p_exact: r.mann_whitney.p_exact,
        shift: r.hodges_lehmann.shift,
        shift_ci_low: r.hodges_lehmann.ci_low,
        shift_ci_high: r.hodges_lehmann.ci_high,
        relative_shift: r.hodges_lehmann.relative_shift,
        baseline_quantiles: Some(q(&r.quantiles.baseline)),
        canary_quantiles: Some(q(&r.quantiles.canary)),
    })
}

/// Whether a watcher of (`id`, `service`) wants `p`.
pub fn watched(p: &Published, id: &str, service: &str) -> bool {
    if !id.is_empty() {
        return &*p.id == id;
    }
    service.is_empty() || &*p.service == service
}

#[tonic::async_trait]
impl VigilService for Service {
    async fn create_analysis(
        &self,
        req: Request<v1::CreateAnalysisRequest>,
    ) -> Result<Response<v1::Analysis>, Status> {
        let started = Instant::now();
        self.authorize(&req, Access::Write)?;
        let req = req.into_inner();
        let spec = req
            .spec
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("spec: is missing"))?;
        let spec = spec_from_proto(spec).map_err(|e| {
            Status::invalid_argument(if e.field.is_empty() {
                format!("spec: {}", e.message)
            } else {
                format!("spec.{e}")
            })
        })?;
        let id = (!req.id.is_empty()).then_some(req.id);
        let entry = self.vigil.create(id, spec, "api").map_err(create_status)?;
        self.observe("CreateAnalysis", started);
        Ok(Response::new(entry.to_proto()))
    }

    async fn get_analysis(
        &self,
        req: Request<v1::GetAnalysisRequest>,
    ) -> Result<Response<v1::Analysis>, Status> {
        let started = Instant::now();
        self.authorize(&req, Access::Read)?;
        let entry = self.entry(&req.get_ref().analysis_id)?;
        self.observe("GetAnalysis", started);
        Ok(Response::new(entry.to_proto()))
    }

    async fn list_analyses(
        &self,
        req: Request<v1::ListAnalysesRequest>,
    ) -> Result<Response<v1::ListAnalysesResponse>, Status> {
        let started = Instant::now();
        self.authorize(&req, Access::Read)?;
        let r = req.get_ref();
        let state = match v1::AnalysisState::try_from(r.state) {
            Ok(v1::AnalysisState::Unspecified) => None,
            Ok(v1::AnalysisState::Running) => Some(State::Running),
            Ok(v1::AnalysisState::Decided) => Some(State::Decided),
            Ok(v1::AnalysisState::Cancelled) => Some(State::Cancelled),
            Err(_) => return Err(Status::invalid_argument("state: unknown value")),
        };
        let service = (!r.service.is_empty()).then_some(r.service.as_str());
        let analyses = self
            .vigil
            .analyses
            .list(service, state)
            .iter()
            .map(|e| e.to_proto())
            .collect();
        self.observe("ListAnalyses", started);
        Ok(Response::new(v1::ListAnalysesResponse { analyses }))
    }

    async fn cancel_analysis(
        &self,
        req: Request<v1::CancelAnalysisRequest>,
    ) -> Result<Response<v1::Analysis>, Status> {
        let started = Instant::now();
        self.authorize(&req, Access::Write)?;
        let id = &req.get_ref().analysis_id;
        self.entry(id)?;
        let entry = self
            .vigil
            .cancel(id)
            .ok_or_else(|| Status::not_found(format!("no analysis {id}")))?;
        self.observe("CancelAnalysis", started);
        Ok(Response::new(entry.to_proto()))
    }

    async fn get_verdict(
        &self,
        req: Request<v1::GetVerdictRequest>,
    ) -> Result<Response<v1::VerdictReport>, Status> {
        let started = Instant::now();
        self.authorize(&req, Access::Read)?;
        let entry = self.entry(&req.get_ref().analysis_id)?;
        let report = entry.published().proto().clone();
        self.get_verdict_latency
            .observe(started.elapsed().as_secs_f64());
        Ok(Response::new(report))
    }

    type WatchVerdictsStream = VerdictStream;

    async fn watch_verdicts(
        &self,
        req: Request<v1::WatchVerdictsRequest>,
    ) -> Result<Response<Self::WatchVerdictsStream>, Status> {
        self.authorize(&req, Access::Read)?;
        let v1::WatchVerdictsRequest {
            analysis_id,
            service,
        } = req.into_inner();
        if !analysis_id.is_empty() {
            self.entry(&analysis_id)?;
        }
        // Subscribe before reading the current verdicts, so no change
        // falls between the two.
        let mut changes = self.vigil.subscribe();
        let current: Vec<_> = if analysis_id.is_empty() {
            let svc = (!service.is_empty()).then_some(service.as_str());
            self.vigil
                .analyses
                .list(svc, None)
                .iter()
                .map(|e| e.published())
                .collect()
        } else {
            self.vigil
                .analyses
                .get(&analysis_id)
                .map(|e| e.published())
                .into_iter()
                .collect()
        };
        let (tx, rx) = mpsc::channel(64);
        let shutdown = self.vigil.shutdown.clone();
        let vigil = self.vigil.clone();
        tokio::spawn(async move {
            for p in current {
                if tx.send(Ok(p.proto().clone())).await.is_err() {
                    return;
                }
            }
            loop {
                let p = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tx.closed() => return,
                    r = changes.recv() => r,
                };
                match p {
                    Ok(p) if watched(&p, &analysis_id, &service) => {
                        if tx.send(Ok(p.proto().clone())).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Too slow a reader: resend the current verdicts.
                        let now: Vec<_> = vigil
                            .analyses
                            .list(None, None)
                            .iter()
                            .map(|e| e.published())
                            .filter(|p| watched(p, &analysis_id, &service))
                            .collect();
                        for p in now {
                            if tx.send(Ok(p.proto().clone())).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn compare(
        &self,
        req: Request<v1::CompareRequest>,
    ) -> Result<Response<v1::CompareResponse>, Status> {
        let started = Instant::now();
        self.authorize(&req, Access::Read)?;
        let out = compare_call(req.get_ref())?;
        self.observe("Compare", started);
        Ok(Response::new(out))
    }

    async fn ingest(
        &self,
        req: Request<Streaming<v1::SampleBatch>>,
    ) -> Result<Response<v1::IngestResponse>, Status> {
        let started = Instant::now();
        self.authorize(&req, Access::Write)?;
        let mut stream = req.into_inner();
        let mut outcome = crate::ingest::IngestOutcome::default();
        let mut index = 0usize;
        while let Some(batch) = stream.message().await? {
            let decoded = vigil_proto::samples_from_batch(&batch);
            for e in &decoded.rejected {
                self.vigil
                    .ingest
                    .count_rejected("grpc", e.reason.as_str(), e.points);
                outcome.reject(e.points, || format!("batch {index}: {e}"));
            }
            let vigil = self.vigil.clone();
            let recorded =
                tokio::task::spawn_blocking(move || vigil.ingest.record("grpc", &decoded.samples))
                    .await
                    .map_err(|e| Status::internal(format!("ingest failed: {e}")))?;
            outcome.merge(recorded);
            index += 1;
        }
        self.observe("Ingest", started);
        Ok(Response::new(v1::IngestResponse {
            accepted: outcome.accepted,
            rejected: outcome.rejected,
            errors: outcome.errors,
        }))
    }
}

/// The proto verdict name of a core verdict (for logs and tests).
pub fn verdict_name(v: vigil_core::Verdict) -> &'static str {
    verdict_to_proto(v).as_str_name()
}

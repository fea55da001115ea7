//! Live analyses: id -> analysis, with the latest verdict published for
//! lock-free reads.
//!
//! Each entry holds its `Analysis` behind a mutex that only the judge
//! ticker takes, and an `ArcSwap` of the latest [`Published`] verdict
//! (the core report, shared with the analysis, and its proto form, that
//! form encoded and its HTTP JSON body, each built by the first read after
//! a publish and kept). A verdict read loads that pointer: it never waits
//! on a judge tick or on ingest.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use bytes::Bytes;
use dashmap::DashMap;
use serde::Serialize;
use vigil_core::spec::AnalysisSpec;
use vigil_core::{MetricResult, Verdict, VerdictReport};
use vigil_judge::analysis::Analysis;
use vigil_proto::convert::report_to_proto;
use vigil_proto::v1;

/// Where an analysis is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Judged on every tick.
    Running,
    /// Reached a terminal verdict.
    Decided,
    /// Cancelled by a client.
    Cancelled,
}

impl State {
    /// The state of an analysis judged on to `verdict` (not cancelled).
    pub fn judged(verdict: Verdict) -> Self {
        if verdict.is_terminal() {
            State::Decided
        } else {
            State::Running
        }
    }

    /// The contract name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "RUNNING",
            State::Decided => "DECIDED",
            State::Cancelled => "CANCELLED",
        }
    }

    /// The proto form.
    pub fn to_proto(self) -> v1::AnalysisState {
        match self {
            State::Running => v1::AnalysisState::Running,
            State::Decided => v1::AnalysisState::Decided,
            State::Cancelled => v1::AnalysisState::Cancelled,
        }
    }

    /// Parses a contract name (case-insensitive).
    pub fn parse(s: &str) -> Option<State> {
        match s.to_ascii_uppercase().as_str() {
            "RUNNING" => Some(State::Running),
            "DECIDED" => Some(State::Decided),
            "CANCELLED" | "CANCELED" => Some(State::Cancelled),
            _ => None,
        }
    }
}

/// The HTTP verdict body (`GET /v1/analyses/{id}/verdict`).
#[derive(Debug, Serialize)]
struct VerdictJson<'a> {
    analysis_id: &'a str,
    service: &'a str,
    state: State,
    verdict: Verdict,
    reason: &'a str,
    metrics: &'a [MetricResult],
    worst_dimension: Option<&'a str>,
    decided_at: Option<f64>,
    evaluated_at: f64,
}

/// One published verdict of one analysis.
///
/// Its wire forms (proto message, encoded GetVerdict body, HTTP JSON body)
/// are made on first read and kept: a tick publishes every running
/// analysis's report on each new slice, and building all three for each
/// was about 4 us per analysis (44 ms of a 10,000-analysis tick) whether
/// or not anything read them before the next slice.
#[derive(Debug)]
pub struct Published {
    /// Analysis id.
    pub id: Arc<str>,
    /// Its service.
    pub service: Arc<str>,
    /// Its state when published.
    pub state: State,
    /// The report (shared with the analysis that made it).
    pub report: Arc<VerdictReport>,
    proto: OnceLock<v1::VerdictReport>,
    encoded: OnceLock<Bytes>,
    json: OnceLock<Bytes>,
}

impl Published {
    /// `report` of analysis `id` (of `service`) in `state`; its wire forms
    /// are built when first read.
    pub fn new(id: Arc<str>, service: Arc<str>, state: State, report: Arc<VerdictReport>) -> Self {
        Self {
            id,
            service,
            state,
            report,
            proto: OnceLock::new(),
            encoded: OnceLock::new(),
            json: OnceLock::new(),
        }
    }

    /// The report as a proto message.
    pub fn proto(&self) -> &v1::VerdictReport {
        self.proto
            .get_or_init(|| report_to_proto(&self.id, &self.service, &self.report))
    }

    /// [`Published::proto`] encoded: GetVerdict's response body as it goes
    /// on the wire (a cheap clone).
    pub fn encoded(&self) -> Bytes {
        self.encoded
            .get_or_init(|| Bytes::from(prost::Message::encode_to_vec(self.proto())))
            .clone()
    }

    /// The report as the HTTP JSON body (a cheap clone).
    pub fn json(&self) -> Bytes {
        self.json
            .get_or_init(|| {
                let report = &self.report;
                serde_json::to_vec(&VerdictJson {
                    analysis_id: &self.id,
                    service: &self.service,
                    state: self.state,
                    verdict: report.verdict,
                    reason: &report.reason,
                    metrics: &report.metrics,
                    worst_dimension: report.worst_dimension.as_deref(),
                    decided_at: report.decided_at,
                    evaluated_at: report.evaluated_at,
                })
                .map(Bytes::from)
                .unwrap_or_else(|e| Bytes::from(format!("{{\"error\":\"{e}\"}}")))
            })
            .clone()
    }

    /// Whether `other` says something new to a watcher (the evaluation
    /// time alone is not news).
    pub fn differs_from(&self, other: &Published) -> bool {
        self.state != other.state
            || self.report.verdict != other.report.verdict
            || self.report.reason != other.report.reason
            || self.report.metrics != other.report.metrics
    }
}

/// One analysis.
#[derive(Debug)]
pub struct Entry {
    /// Its id.
    pub id: Arc<str>,
    /// Its spec.
    pub spec: AnalysisSpec,
    /// Who started it: `api`, `auto`, `kayenta`, `flagger`.
    pub origin: String,
    /// Wall-clock creation time, epoch seconds.
    pub created_at: f64,
    pub(crate) analysis: Mutex<Analysis>,
    published: ArcSwap<Published>,
    pub(crate) ticked: AtomicBool,
    cancelled: AtomicBool,
}

impl Entry {
    /// The latest published verdict (a pointer load).
    pub fn published(&self) -> Arc<Published> {
        self.published.load_full()
    }

    /// Its current state.
    pub fn state(&self) -> State {
        self.published.load().state
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Publishes a new report; returns it when it is news to watchers.
    pub(crate) fn publish(&self, report: Arc<VerdictReport>) -> Option<Arc<Published>> {
        if self.is_cancelled() {
            return None;
        }
        let new = Arc::new(Published::new(
            self.id.clone(),
            self.published.load().service.clone(),
            State::judged(report.verdict),
            report,
        ));
        let old = self.published.swap(new.clone());
        new.differs_from(&old).then_some(new)
    }

    /// The proto form of the analysis with its latest verdict.
    pub fn to_proto(&self) -> v1::Analysis {
        let p = self.published();
        v1::Analysis {
            id: self.id.to_string(),
            spec: Some(vigil_proto::convert::spec_to_proto(&self.spec)),
            state: p.state.to_proto() as i32,
            origin: self.origin.clone(),
            created_at: self.created_at,
            verdict: Some(p.proto().clone()),
        }
    }
}

/// Why an analysis could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The id is taken.
    #[error("analysis {0} already exists")]
    Exists(String),
    /// The id is not usable.
    #[error("id: {0}")]
    BadId(String),
    /// The judge refused the spec.
    #[error(transparent)]
    Judge(#[from] vigil_judge::JudgeError),
}

/// All analyses.
#[derive(Debug, Default)]
pub struct Registry {
    entries: DashMap<Arc<str>, Arc<Entry>>,
    next: AtomicU64,
}

fn waiting_report() -> VerdictReport {
    VerdictReport {
        verdict: Verdict::Continue,
        reason: "waiting for the first completed time slice of data".to_owned(),
        metrics: Vec::new(),
        worst_dimension: None,
        decided_at: None,
        evaluated_at: 0.0,
    }
}

impl Registry {
    /// Starts an analysis at stream time `stream_now`; `id` is generated
    /// (`service-canary-N`) when `None`.
    pub fn create(
        &self,
        id: Option<String>,
        spec: AnalysisSpec,
        origin: &str,
        stream_now: f64,
    ) -> Result<Arc<Entry>, CreateError> {
        let id: Arc<str> = match id.filter(|s| !s.is_empty()) {
            Some(id) => {
                if id.len() > 128
                    || !id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    return Err(CreateError::BadId(format!(
                        "{id:?}: use at most 128 of [A-Za-z0-9._-]"
                    )));
                }
                Arc::from(id)
            }
            None => {
                let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
                let clean = |s: &str| -> String {
                    s.chars()
                        .map(|c| {
                            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                                c
                            } else {
                                '_'
                            }
                        })
                        .take(40)
                        .collect()
                };
                Arc::from(format!(
                    "{}-{}-{n}",
                    clean(spec.service.as_str()),
                    clean(spec.canary_version.as_str())
                ))
            }
        };
        let analysis = Analysis::new(id.to_string(), spec.clone(), stream_now)?;
        let created_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let entry = Arc::new(Entry {
            id: id.clone(),
            origin: origin.to_owned(),
            created_at,
            analysis: Mutex::new(analysis),
            published: ArcSwap::from_pointee(Published::new(
                id.clone(),
                Arc::from(spec.service.as_str()),
                State::Running,
                Arc::new(waiting_report()),
            )),
            spec,
            ticked: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
        });
        match self.entries.entry(id.clone()) {
            dashmap::Entry::Occupied(_) => Err(CreateError::Exists(id.to_string())),
            dashmap::Entry::Vacant(v) => {
                v.insert(entry.clone());
                Ok(entry)
            }
        }
    }

    /// One analysis.
    pub fn get(&self, id: &str) -> Option<Arc<Entry>> {
        self.entries.get(id).map(|e| e.value().clone())
    }

    /// Analyses, filtered, sorted by creation then id.
    pub fn list(&self, service: Option<&str>, state: Option<State>) -> Vec<Arc<Entry>> {
        let mut v: Vec<Arc<Entry>> = self
            .entries
            .iter()
            .filter(|e| service.is_none_or(|s| e.spec.service.as_str() == s))
            .filter(|e| state.is_none_or(|s| e.state() == s))
            .map(|e| e.value().clone())
            .collect();
        v.sort_by(|a, b| {
            a.created_at
                .total_cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        v
    }

    /// Every analysis still being judged.
    pub fn running(&self) -> Vec<Arc<Entry>> {
        self.entries
            .iter()
            .filter(|e| e.state() == State::Running)
            .map(|e| e.value().clone())
            .collect()
    }

    /// Whether a non-cancelled analysis of `service` with `canary` exists.
    pub fn has_canary(&self, service: &str, canary: &str) -> Option<Arc<Entry>> {
        self.entries
            .iter()
            .filter(|e| e.state() != State::Cancelled)
            .find(|e| {
                e.spec.service.as_str() == service && e.spec.canary_version.as_str() == canary
            })
            .map(|e| e.value().clone())
    }

    /// Cancels an analysis; returns it with its cancelled verdict, and
    /// whether this call cancelled it (false: it already was).
    pub fn cancel(&self, id: &str) -> Option<(Arc<Entry>, Option<Arc<Published>>)> {
        let entry = self.get(id)?;
        // The ticker publishes while holding the analysis: taking it here
        // means no tick can overwrite the cancellation afterwards.
        let judging = entry.analysis.lock().unwrap_or_else(|p| p.into_inner());
        if entry.cancelled.swap(true, Ordering::AcqRel) {
            drop(judging);
            return Some((entry, None));
        }
        let old = entry.published();
        let mut report = Arc::clone(&old.report);
        if !report.verdict.is_terminal() {
            let cancelled = Arc::make_mut(&mut report);
            cancelled.reason = format!("cancelled: {}", cancelled.reason);
        }
        let new = Arc::new(Published::new(
            entry.id.clone(),
            old.service.clone(),
            State::Cancelled,
            report,
        ));
        entry.published.store(new.clone());
        drop(judging);
        Some((entry, Some(new)))
    }

    /// Counts by state.
    pub fn counts(&self) -> [(State, i64); 3] {
        let mut c = [
            (State::Running, 0),
            (State::Decided, 0),
            (State::Cancelled, 0),
        ];
        for e in &self.entries {
            let s = e.state();
            if let Some(slot) = c.iter_mut().find(|(k, _)| *k == s) {
                slot.1 += 1;
            }
        }
        c
    }

    /// Number of analyses.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::{Effect, MetricKind, MetricStatus};

    /// GetVerdict sends `encoded` in place of `proto`: they must be the
    /// same message, for a report with every optional field set.
    #[test]
    fn the_encoded_verdict_is_the_proto_verdict() {
        let metric = MetricResult {
            name: "latency".into(),
            kind: MetricKind::Latency,
            dimension: Some("endpoint=/charge".into()),
            status: MetricStatus::Fail,
            critical: true,
            e_value: Some(120.5),
            p_value: Some(0.008),
            statistic: Some(3.2),
            effect: Some(Effect {
                what: "p99".into(),
                canary: Some(41.0),
                baseline: Some(30.0),
                relative: Some(0.37),
                canary_low: Some(38.0),
                canary_high: Some(44.0),
            }),
            n_canary: 1200,
            n_baseline: 1300,
            summary: "p99 37% worse".into(),
        };
        let report = VerdictReport {
            verdict: Verdict::Rollback,
            reason: "latency p99 on /charge is 37% worse".into(),
            metrics: vec![metric],
            worst_dimension: Some("endpoint=/charge".into()),
            decided_at: Some(1_700_000_100.0),
            evaluated_at: 1_700_000_100.0,
        };
        let p = Published::new(
            "a1".into(),
            "checkout".into(),
            State::Decided,
            Arc::new(report),
        );
        let decoded = <v1::VerdictReport as prost::Message>::decode(p.encoded()).unwrap();
        assert_eq!(&decoded, p.proto());
        assert_eq!(decoded.analysis_id, "a1");
        assert_eq!(decoded.metrics.len(), 1);
    }
}

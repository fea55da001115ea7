//! The one ingest path: every sample (gRPC `Ingest`, HTTP `/v1/ingest`,
//! Kafka) enters the store here, is counted once (accepted, or rejected
//! with a reason), and marks its (service, version) as emitting.

use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use vigil_core::store::Store;
use vigil_core::{CoreError, Sample, ServiceName, Version};

use crate::metrics::Metrics;

/// The most rejection messages an ingest call reports back.
pub const MAX_REPORTED_ERRORS: usize = 10;

/// When a version of a service was seen, in stream time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seen {
    /// First sample.
    pub first: f64,
    /// Newest sample.
    pub last: f64,
}

/// What one ingest call did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestOutcome {
    /// Samples recorded.
    pub accepted: u64,
    /// Samples (or points, or lines) rejected.
    pub rejected: u64,
    /// The first few rejections.
    pub errors: Vec<String>,
}

impl IngestOutcome {
    /// Adds a rejection (keeping only the first few messages).
    pub fn reject(&mut self, n: u64, message: impl FnOnce() -> String) {
        self.rejected += n;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(message());
        }
    }

    /// Adds another outcome.
    pub fn merge(&mut self, other: IngestOutcome) {
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        for e in other.errors {
            if self.errors.len() < MAX_REPORTED_ERRORS {
                self.errors.push(e);
            }
        }
    }
}

/// The counter label of a store rejection.
pub fn store_reason(e: &CoreError) -> &'static str {
    match e {
        CoreError::InvalidName { .. } => "invalid_name",
        CoreError::NotFinite { .. } => "not_finite",
        CoreError::Negative { .. } => "negative",
        CoreError::TooLarge { .. } => "too_large",
        CoreError::EmptyHistogram => "empty_histogram",
        CoreError::ErrorsExceedRequests { .. } => "errors_exceed_requests",
        CoreError::KindMismatch { .. } => "kind_mismatch",
        CoreError::TooOld { .. } => "too_old",
        CoreError::Snapshot(_) => "invalid",
    }
}

/// Records samples into the shared store.
#[derive(Debug)]
pub struct Ingestor {
    store: Arc<Store>,
    metrics: Metrics,
    seen: DashMap<(ServiceName, Version), Seen>,
    new_versions: Mutex<Vec<(ServiceName, Version)>>,
}

impl Ingestor {
    /// An ingestor into `store`.
    pub fn new(store: Arc<Store>, metrics: Metrics) -> Self {
        Self {
            store,
            metrics,
            seen: DashMap::new(),
            new_versions: Mutex::new(Vec::new()),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Records `samples` from `source` (`grpc`, `http`, `kafka`): each is
    /// accepted or rejected exactly once, and counted.
    pub fn record(&self, source: &str, samples: &[Sample]) -> IngestOutcome {
        let mut out = IngestOutcome::default();
        // (service, version) -> (min ts, max ts) of this call, so the
        // shared map is touched once per series owner, not per sample.
        let mut touched: Vec<((&ServiceName, &Version), f64, f64)> = Vec::new();
        // One batch into the store (grouped by series and slice there), then
        // the rejections in order, then the accepted samples' owners.
        let batch = self.store.record_batch(samples);
        let mut rejected = batch.rejected.iter().peekable();
        for (i, s) in samples.iter().enumerate() {
            if let Some((_, e)) = rejected.next_if(|(at, _)| *at == i) {
                self.metrics.count_rejected(source, store_reason(e), 1);
                out.reject(1, || {
                    format!("{}/{}/{} at {}: {e}", s.service, s.version, s.metric, s.ts)
                });
                continue;
            }
            out.accepted += 1;
            match touched
                .iter_mut()
                .find(|((svc, ver), _, _)| *svc == &s.service && *ver == &s.version)
            {
                Some((_, lo, hi)) => {
                    *lo = lo.min(s.ts);
                    *hi = hi.max(s.ts);
                }
                None => touched.push(((&s.service, &s.version), s.ts, s.ts)),
            }
        }
        self.metrics.count_ingested(source, out.accepted);
        for ((svc, ver), lo, hi) in touched {
            let key = (svc.clone(), ver.clone());
            if let Some(mut seen) = self.seen.get_mut(&key) {
                seen.first = seen.first.min(lo);
                seen.last = seen.last.max(hi);
                continue;
            }
            let mut fresh = false;
            self.seen
                .entry(key.clone())
                .and_modify(|seen| {
                    seen.first = seen.first.min(lo);
                    seen.last = seen.last.max(hi);
                })
                .or_insert_with(|| {
                    fresh = true;
                    Seen {
                        first: lo,
                        last: hi,
                    }
                });
            if fresh {
                if let Ok(mut q) = self.new_versions.lock() {
                    q.push(key);
                }
            }
        }
        out
    }

    /// Counts rejections that happened before samples existed (bad lines,
    /// bad batch points).
    pub fn count_rejected(&self, source: &str, reason: &str, n: u64) {
        self.metrics.count_rejected(source, reason, n);
    }

    /// Versions first seen since the last call.
    pub fn take_new_versions(&self) -> Vec<(ServiceName, Version)> {
        self.new_versions
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default()
    }

    /// Stream time of the first sample of `version` of `service`.
    pub fn first_seen(&self, service: &ServiceName, version: &Version) -> Option<f64> {
        self.seen
            .get(&(service.clone(), version.clone()))
            .map(|s| s.first)
    }

    /// Versions of `service` with a sample at or after stream time
    /// `since`, oldest first-seen first.
    pub fn emitting(&self, service: &ServiceName, since: f64) -> Vec<(Version, Seen)> {
        let mut v: Vec<(Version, Seen)> = self
            .seen
            .iter()
            .filter(|e| &e.key().0 == service && e.value().last >= since)
            .map(|e| (e.key().1.clone(), *e.value()))
            .collect();
        v.sort_by(|a, b| a.1.first.total_cmp(&b.1.first).then_with(|| a.0.cmp(&b.0)));
        v
    }
}

//! The one ingest path: every sample (gRPC `Ingest`, HTTP `/v1/ingest`,
//! Kafka) enters the store here, is counted once (accepted, or rejected
//! with a reason), and marks its (service, version) as emitting.

use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use vigil_core::store::{BatchOutcome, Store};
use vigil_core::{CoreError, Sample, ServiceName, Version};
use vigil_proto::BatchValues;

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
        // One batch into the store (grouped by series and slice there).
        let batch = self.store.record_batch(samples);
        self.account(source, batch, samples.iter().map(|s| (s, s.ts)))
    }

    /// Records runs of values from `source`, each `(timestamp, value)`
    /// pairs of the series of its head sample (a `SampleBatch` of values,
    /// see `Store::record_values`), without building a sample per point:
    /// accepted, rejected and counted as [`Ingestor::record`] would the
    /// samples they make.
    pub fn record_values(&self, source: &str, runs: &[BatchValues]) -> IngestOutcome {
        let batch = self
            .store
            .record_values(runs.iter().map(|r| (&r.head, &r.points[..])));
        let points = runs
            .iter()
            .flat_map(|r| r.points.iter().map(move |&(ts, _)| (&r.head, ts)));
        self.account(source, batch, points)
    }

    /// Counts what the store did with a batch's points (each a sample's
    /// series and a timestamp, in the order the store saw them): the
    /// rejections in order, then the accepted points' owners, whose first
    /// sight queues an auto analysis check.
    fn account<'s>(
        &self,
        source: &str,
        batch: BatchOutcome,
        points: impl Iterator<Item = (&'s Sample, f64)>,
    ) -> IngestOutcome {
        let mut out = IngestOutcome::default();
        // (service, version) -> (min ts, max ts) of this call, so the
        // shared map is touched once per series owner, not per sample.
        let mut touched: Vec<((&ServiceName, &Version), f64, f64)> = Vec::new();
        let mut rejected = batch.rejected.iter().peekable();
        for (i, (s, ts)) in points.enumerate() {
            if let Some((_, e)) = rejected.next_if(|(at, _)| *at == i) {
                self.metrics.count_rejected(source, store_reason(e), 1);
                out.reject(1, || {
                    format!("{}/{}/{} at {}: {e}", s.service, s.version, s.metric, ts)
                });
                continue;
            }
            out.accepted += 1;
            match touched
                .iter_mut()
                .find(|((svc, ver), _, _)| *svc == &s.service && *ver == &s.version)
            {
                Some((_, lo, hi)) => {
                    *lo = lo.min(ts);
                    *hi = hi.max(ts);
                }
                None => touched.push(((&s.service, &s.version), ts, ts)),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use vigil_core::store::StoreConfig;
    use vigil_core::{Labels, MetricName, Observation};

    fn head(version: &str, metric: &str) -> Sample {
        Sample {
            ts: 0.0,
            service: ServiceName::new("payment").unwrap(),
            version: Version::new(version).unwrap(),
            metric: MetricName::new(metric).unwrap(),
            labels: Labels::from_pairs([("endpoint", "/charge")]),
            observation: Observation::Value(0.0),
        }
    }

    fn ingestor() -> Ingestor {
        let store = Store::new(StoreConfig {
            slice_secs: 10,
            window_secs: 60,
            ..StoreConfig::default()
        });
        Ingestor::new(Arc::new(store), Metrics::new())
    }

    #[test]
    fn values_are_counted_as_the_samples_they_make() {
        // Accepted points in two versions, one too old for the window and
        // one of the wrong kind (`errors` is first recorded as counts).
        let counts = Sample {
            ts: 995.0,
            observation: Observation::Counts {
                requests: 10,
                errors: 1,
            },
            ..head("v7", "errors")
        };
        let runs = vec![
            BatchValues {
                head: head("v7", "latency"),
                points: vec![(1000.0, 5.0), (1001.0, 7.5), (100.0, 2.0)],
            },
            BatchValues {
                head: head("v8", "latency"),
                points: vec![(1002.0, 1.0)],
            },
            BatchValues {
                head: head("v7", "errors"),
                points: vec![(1003.0, 1.0)],
            },
        ];
        let samples: Vec<Sample> = runs
            .iter()
            .flat_map(|r| {
                r.points.iter().map(|&(ts, v)| Sample {
                    ts,
                    observation: Observation::Value(v),
                    ..r.head.clone()
                })
            })
            .collect();
        let (by_samples, by_values) = (ingestor(), ingestor());
        for i in [&by_samples, &by_values] {
            assert_eq!(i.record("kafka", std::slice::from_ref(&counts)).accepted, 1);
        }
        let a = by_samples.record("kafka", &samples);
        let b = by_values.record_values("kafka", &runs);
        assert_eq!((a.accepted, a.rejected), (3, 2));
        assert_eq!((b.accepted, b.rejected, &b.errors), (3, 2, &a.errors));
        // The encoder's order of label sets within a family is a hash
        // map's: compare the lines as sets.
        let counters = |i: &Ingestor| {
            let text = i.metrics.encode();
            let mut lines = text
                .lines()
                .filter(|l| l.starts_with("vigil_ingest"))
                .map(str::to_owned)
                .collect::<Vec<_>>();
            lines.sort();
            lines
        };
        assert_eq!(counters(&by_samples), counters(&by_values));
        assert_eq!(counters(&by_values).len(), 3);
        assert_eq!(
            by_samples.take_new_versions(),
            by_values.take_new_versions()
        );
        let svc = ServiceName::new("payment").unwrap();
        assert_eq!(
            by_samples.emitting(&svc, 0.0),
            by_values.emitting(&svc, 0.0)
        );
        assert_eq!(by_values.emitting(&svc, 0.0).len(), 2);
    }
}

//! Where decoded samples go: the store itself, or the server's ingest path
//! (which also notices new versions and counts by source).

use vigil_core::store::Store;
use vigil_core::Sample;
use vigil_proto::BatchValues;

/// Records a message's validated samples. Implemented by the store, and by
/// whatever wraps it (the server's `Ingestor`), so every ingest path can
/// share one place where samples enter.
pub trait SampleSink: Send + Sync + 'static {
    /// Records `samples`; returns how many were recorded. The sink counts
    /// its own refusals (the store's stats: too old, kind mismatch).
    fn record_samples(&self, samples: &[Sample]) -> u64;

    /// Records runs of values, each of one series: its head's names and
    /// labels with each `(timestamp, value)` pair (see
    /// `Store::record_values`); returns how many were recorded. By default,
    /// as the samples they make.
    fn record_values(&self, runs: &[BatchValues]) -> u64 {
        let samples: Vec<Sample> = runs
            .iter()
            .flat_map(|run| {
                run.points.iter().map(|&(ts, v)| Sample {
                    ts,
                    observation: vigil_core::Observation::Value(v),
                    ..run.head.clone()
                })
            })
            .collect();
        self.record_samples(&samples)
    }
}

impl SampleSink for Store {
    fn record_samples(&self, samples: &[Sample]) -> u64 {
        self.record_batch(samples).recorded as u64
    }

    fn record_values(&self, runs: &[BatchValues]) -> u64 {
        Store::record_values(self, runs.iter().map(|r| (&r.head, &r.points[..]))).recorded as u64
    }
}

impl std::fmt::Debug for dyn SampleSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SampleSink")
    }
}

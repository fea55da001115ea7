//! The data behind each verdict of `vigil bench api` and
//! `benches/get_verdict.rs` (which includes this file): one service's
//! baseline v7 and canary v8 (3 ms slower), 12 slices of latency buckets
//! and error counts, so each analysis carries a full report.

use vigil_core::{CoreError, Labels, MetricName, Observation, Sample, ServiceName, Version};

/// The samples of `service` over 12 slices of 10 s from `t0`.
pub fn service_samples(service: &ServiceName, t0: f64) -> Result<Vec<Sample>, CoreError> {
    let latency = MetricName::new("latency")?;
    let errors = MetricName::new("error_rate")?;
    let mut out = Vec::new();
    for (version, slow) in [("v7", 0.0), ("v8", 3.0)] {
        let version = Version::new(version)?;
        for slice in 0..12 {
            let ts = t0 + 10.0 * f64::from(slice) + 1.0;
            let mk = |metric: &MetricName, observation| Sample {
                ts,
                service: service.clone(),
                version: version.clone(),
                metric: metric.clone(),
                labels: Labels::empty(),
                observation,
            };
            let buckets = (0..40).map(|i| (20.0 + f64::from(i) + slow, 5)).collect();
            out.push(mk(&latency, Observation::Histogram(buckets)));
            out.push(mk(
                &errors,
                Observation::Counts {
                    requests: 200,
                    errors: 1,
                },
            ));
        }
    }
    Ok(out)
}

//! The store's byte accounting (`Store::bytes`, what the memory budget is
//! enforced on) against the heap it really holds, measured by a counting
//! allocator around a store filled with a full window of slices.
//!
//! Its own test binary: the counting allocator is process-wide.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::System;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use vigil_core::store::{Store, StoreConfig};
use vigil_core::{Labels, MetricName, Observation, Sample, ServiceName, Version};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// A small deterministic generator (xorshift64*), enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Live heap bytes requested since the region began (a reallocation is
/// counted in the allocated or deallocated bytes by its difference).
fn live_bytes(region: &Region<'_, System>) -> (i64, i64) {
    let s = region.change();
    (
        s.bytes_allocated as i64 - s.bytes_deallocated as i64,
        s.allocations as i64 - s.deallocations as i64,
    )
}

#[test]
fn accounted_bytes_match_the_heap_held() {
    let config = StoreConfig {
        memory_budget_bytes: usize::MAX,
        ..StoreConfig::default()
    };
    let window = i64::from(config.window_secs / config.slice_secs);
    let services: Vec<ServiceName> = (0..10)
        .map(|i| ServiceName::new(format!("svc-{i}")).unwrap())
        .collect();
    let versions = [Version::new("v1").unwrap(), Version::new("v2").unwrap()];
    let metrics: Vec<MetricName> = (0..10)
        .map(|i| MetricName::new(format!("m{i}")).unwrap())
        .collect();
    let endpoints = [
        Labels::from_pairs([("endpoint", "/a")]),
        Labels::from_pairs([("endpoint", "/b")]),
    ];
    let errors = MetricName::new("error_rate").unwrap();
    let mut rng = Rng(0x5eed);
    let mut batch: Vec<Sample> = Vec::with_capacity(200_000);

    let region = Region::new(GLOBAL);
    let store = Store::new(config);
    for slice in 0..window {
        for service in &services {
            for version in &versions {
                // Distribution series: 5 to 20 lognormal-ish samples per
                // slice, per endpoint (and so 10 to 40 in each aggregate).
                for (m, metric) in metrics.iter().enumerate() {
                    for labels in &endpoints {
                        let n = 5 + rng.next() % 16;
                        for _ in 0..n {
                            let ms = (1.0 + m as f64) * (2.0 * rng.unit() - 1.0).exp() * 10.0;
                            batch.push(Sample {
                                ts: (slice as f64 + rng.unit()) * 10.0,
                                service: service.clone(),
                                version: version.clone(),
                                metric: metric.clone(),
                                labels: labels.clone(),
                                observation: Observation::Value(ms),
                            });
                        }
                    }
                }
                // And a counter series.
                for _ in 0..10 {
                    batch.push(Sample {
                        ts: (slice as f64 + rng.unit()) * 10.0,
                        service: service.clone(),
                        version: version.clone(),
                        metric: errors.clone(),
                        labels: Labels::empty(),
                        observation: Observation::Outcome {
                            error: rng.next().is_multiple_of(100),
                        },
                    });
                }
            }
        }
        let outcome = store.record_batch(&batch);
        assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
        batch.clear();
    }
    drop(batch);
    // The store's own long-lived structures only: the batch buffer is gone.
    let (heap, blocks) = live_bytes(&region);
    // The batch buffer was allocated before the region and freed inside.
    let heap = heap + 200_000 * std::mem::size_of::<Sample>() as i64;
    let blocks = blocks + 1;
    let accounted = store.bytes() as i64;
    let series = store.stats().series as i64;
    assert_eq!(series, 10 * 2 * (10 * 3 + 1));
    let ratio = accounted as f64 / heap as f64;
    println!(
        "{series} series: heap {heap} B in {blocks} blocks ({} B and {} blocks per series), accounted {accounted} B ({} per series), ratio {ratio:.3}",
        heap / series,
        blocks / series,
        accounted / series
    );
    // The accounting adds the allocator's headers and rounding, and three
    // eighths for the binary's allocator's size classes and the blocks
    // freed as series grew, none of which the counting allocator sees: it
    // is above, never below.
    assert!(
        (1.0..=1.45).contains(&ratio),
        "accounted {accounted} B vs heap {heap} B: ratio {ratio:.3}"
    );
}

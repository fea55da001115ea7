//! A seeded generator of a scenario's stream, slice by slice.
//!
//! Each time slice is drawn once, as [`SliceDraw`]: per arm and endpoint
//! (and per side of `change_at_s` when the change falls inside the slice)
//! the number of requests (Poisson), their latencies rounded to the timer
//! resolution and counted by value, and the number of errors (binomial).
//! Two views read the same draw, so they describe the same stream exactly:
//!
//! - [`Generator::aggregated_samples`]: one `Observation::Histogram` and one
//!   `Observation::Counts` per part, what `vigil simulate` records. The store
//!   and judge then cost O(distinct values) per slice, not O(requests).
//! - [`expand_events`]: the individual request events (timestamps spread
//!   over the part's interval, latencies and errors shuffled), for a JSON
//!   lines file `vigil replay` reads, or a live producer.
//!
//! Recording either view into a store leaves identical contents: the same
//! values, the same counts, in the same slices. Determinism: a draw depends
//! only on (scenario, seed, run); event expansion uses its own stream, so
//! expanding or not never changes the draws.

use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution as _, Poisson, StandardNormal};
use serde::Serialize;
use vigil_core::event::{ERROR_RATE_METRIC, LATENCY_METRIC};
use vigil_core::{Labels, MetricName, Observation, Sample, ServiceName, Timestamp, Version};

use crate::scenario::Scenario;
use crate::SimError;

/// Stream time (epoch seconds) at which every simulated stream starts:
/// 2023-11-14T22:13:20Z, a multiple of any slice length that divides 10.
pub const STREAM_START: Timestamp = 1_700_000_000.0;

/// Which side of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arm {
    /// The running version.
    Baseline,
    /// The version under test.
    Canary,
}

/// The requests of one arm and endpoint over one interval of a slice.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// Which arm.
    pub arm: Arm,
    /// Index into the scenario's endpoints; `None` when it has none.
    pub endpoint: Option<usize>,
    /// Interval, stream seconds since the start: `[from_s, to_s)`.
    pub from_s: f64,
    /// See `from_s`.
    pub to_s: f64,
    /// Whether the canary's change applies (canary arm, after `change_at_s`).
    pub changed: bool,
    /// Latencies as (multiple of the timer resolution, count), ascending.
    pub latencies: Vec<(u64, u64)>,
    /// Requests in the interval (the sum of the latency counts).
    pub requests: u64,
    /// Of which failed.
    pub errors: u64,
}

/// One time slice of the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceDraw {
    /// Slice number since the start.
    pub index: u64,
    /// Its parts (empty ones left out).
    pub parts: Vec<Part>,
}

impl SliceDraw {
    /// Canary requests served under the change in this slice.
    pub fn changed_canary_requests(&self) -> u64 {
        self.parts
            .iter()
            .filter(|p| p.changed)
            .map(|p| p.requests)
            .sum()
    }
}

/// One request, as a producer would send it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestEvent {
    /// Stream time, epoch seconds.
    pub ts: Timestamp,
    /// Which arm served it.
    pub arm: Arm,
    /// Index into the scenario's endpoints.
    pub endpoint: Option<usize>,
    /// Its latency.
    pub latency_ms: f64,
    /// Whether it failed.
    pub error: bool,
}

/// Interned names of the samples a scenario produces.
#[derive(Debug, Clone)]
pub struct Names {
    /// The service.
    pub service: ServiceName,
    /// Baseline version.
    pub baseline: Version,
    /// Canary version.
    pub canary: Version,
    /// `latency`.
    pub latency: MetricName,
    /// `error_rate`.
    pub error_rate: MetricName,
    /// Label set per endpoint (index as in the scenario).
    pub endpoints: Vec<Labels>,
    /// Endpoint names.
    pub endpoint_names: Vec<String>,
}

impl Names {
    /// The names of a validated scenario.
    pub fn new(scenario: &Scenario) -> Result<Self, SimError> {
        let a = &scenario.analysis;
        let baseline = a.baseline_version.clone().ok_or_else(|| {
            SimError::Scenario(crate::ScenarioError::new(
                "analysis.baseline_version",
                "is needed",
            ))
        })?;
        Ok(Self {
            service: a.service.clone(),
            baseline,
            canary: a.canary_version.clone(),
            latency: MetricName::new(LATENCY_METRIC)?,
            error_rate: MetricName::new(ERROR_RATE_METRIC)?,
            endpoints: scenario
                .endpoints
                .iter()
                .map(|e| Labels::from_pairs([("endpoint", e.name.as_str())]))
                .collect(),
            endpoint_names: scenario.endpoints.iter().map(|e| e.name.clone()).collect(),
        })
    }

    /// The version of an arm.
    pub fn version(&self, arm: Arm) -> &Version {
        match arm {
            Arm::Baseline => &self.baseline,
            Arm::Canary => &self.canary,
        }
    }

    /// The labels of an endpoint.
    pub fn labels(&self, endpoint: Option<usize>) -> Labels {
        endpoint
            .and_then(|i| self.endpoints.get(i).cloned())
            .unwrap_or_default()
    }
}

/// How one arm/endpoint behaves over an interval.
#[derive(Debug, Clone, Copy)]
struct Behaviour {
    median_ms: f64,
    sigma: f64,
    slow_fraction: f64,
    slow_median_ms: f64,
    slow_sigma: f64,
    /// Applied to every latency (endpoint factor, drift, change).
    factor: f64,
    /// Additionally applied to the slow mode.
    slow_factor: f64,
    tail_fraction: f64,
    tail_multiplier: f64,
    error_rate: f64,
}

/// The stream of one replication, slice by slice.
#[derive(Debug, Clone)]
pub struct Generator {
    scenario: Scenario,
    slice_secs: f64,
    n_slices: u64,
    next: u64,
    rng: ChaCha8Rng,
    shares: Vec<f64>,
    scratch: Vec<u64>,
}

/// The random stream of draws for (seed, run); events use the next one.
fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// The random stream that expands replication `run`'s draws into events.
pub fn event_rng(seed: u64, run: u64) -> ChaCha8Rng {
    rng_for(seed, run.wrapping_mul(2).wrapping_add(1))
}

impl Generator {
    /// The stream of replication `run` of `scenario` under `seed`, in slices
    /// of `slice_secs`.
    pub fn new(scenario: &Scenario, seed: u64, run: u64, slice_secs: u32) -> Self {
        let slice_secs = f64::from(slice_secs.max(1));
        let n_slices = (scenario.duration_s / slice_secs).ceil().max(1.0) as u64;
        let shares = if scenario.endpoints.is_empty() {
            vec![1.0]
        } else {
            let total: f64 = scenario.endpoints.iter().map(|e| e.weight).sum();
            scenario
                .endpoints
                .iter()
                .map(|e| e.weight / total)
                .collect()
        };
        Self {
            scenario: scenario.clone(),
            slice_secs,
            n_slices,
            next: 0,
            rng: rng_for(seed, run.wrapping_mul(2)),
            shares,
            scratch: Vec::new(),
        }
    }

    /// Slices in the stream.
    pub fn n_slices(&self) -> u64 {
        self.n_slices
    }

    /// Slice length, seconds.
    pub fn slice_secs(&self) -> f64 {
        self.slice_secs
    }

    /// Traffic multiplier of the ramp at stream second `t`.
    fn ramp(&self, t: f64) -> f64 {
        match &self.scenario.ramp {
            Some(r) if r.ramp_s > 0.0 => {
                r.start_fraction + (1.0 - r.start_fraction) * (t / r.ramp_s).min(1.0)
            }
            _ => 1.0,
        }
    }

    /// Latency multiplier of the drift at stream second `t`.
    fn drift(&self, t: f64) -> f64 {
        match &self.scenario.drift {
            Some(d) => 1.0 + d.amplitude * (std::f64::consts::TAU * t / d.period_s).sin(),
            None => 1.0,
        }
    }

    fn behaviour(&self, endpoint: Option<usize>, changed: bool, t: f64) -> Behaviour {
        let s = &self.scenario;
        let b = &s.baseline;
        let ep = endpoint.and_then(|i| s.endpoints.get(i));
        let base_error = ep.and_then(|e| e.error_rate).unwrap_or(b.error_rate);
        let mut factor = ep.map_or(1.0, |e| e.latency_factor) * self.drift(t);
        let mut slow_factor = 1.0;
        let (mut tail_fraction, mut tail_multiplier, mut error_rate) = (0.0, 1.0, base_error);
        if changed {
            let c = &s.canary;
            factor *= ep
                .and_then(|e| e.canary_latency_multiplier)
                .unwrap_or(c.latency_multiplier);
            slow_factor = c.slow_multiplier;
            tail_fraction = c.tail_fraction;
            tail_multiplier = c.tail_multiplier;
            error_rate = match ep {
                Some(e) => match (e.canary_error_rate, e.error_rate) {
                    (Some(r), _) => r,
                    (None, Some(own)) if b.error_rate > 0.0 => {
                        (own * s.canary_error_rate() / b.error_rate).min(1.0)
                    }
                    _ => s.canary_error_rate(),
                },
                None => s.canary_error_rate(),
            };
        }
        Behaviour {
            median_ms: b.latency_median_ms,
            sigma: b.latency_sigma,
            slow_fraction: b.slow_fraction,
            slow_median_ms: b.slow_median_ms.unwrap_or(b.latency_median_ms),
            slow_sigma: b.slow_sigma.unwrap_or(b.latency_sigma),
            factor,
            slow_factor,
            tail_fraction,
            tail_multiplier,
            error_rate,
        }
    }

    /// Draws the next slice, or `None` past the end of the stream.
    pub fn next_slice(&mut self) -> Option<SliceDraw> {
        if self.next >= self.n_slices {
            return None;
        }
        let index = self.next;
        self.next += 1;
        let start = index as f64 * self.slice_secs;
        let end = (start + self.slice_secs).min(self.scenario.duration_s);
        let change = self.scenario.canary.change_at_s;
        let intervals: Vec<(f64, f64)> = if change > start && change < end {
            vec![(start, change), (change, end)]
        } else {
            vec![(start, end)]
        };
        let mut parts = Vec::new();
        for (from, to) in intervals {
            let mid = 0.5 * (from + to);
            let rate = self.scenario.rps * self.ramp(mid) * (to - from);
            for arm in [Arm::Baseline, Arm::Canary] {
                let arm_share = match arm {
                    Arm::Baseline => 1.0 - self.scenario.canary_fraction,
                    Arm::Canary => self.scenario.canary_fraction,
                };
                let changed = arm == Arm::Canary && from >= change;
                for e in 0..self.shares.len() {
                    let endpoint = (!self.scenario.endpoints.is_empty()).then_some(e);
                    let mean = rate * arm_share * self.shares[e];
                    let behaviour = self.behaviour(endpoint, changed, mid);
                    if let Some(part) =
                        self.draw_part(arm, endpoint, from, to, changed, mean, behaviour)
                    {
                        parts.push(part);
                    }
                }
            }
        }
        Some(SliceDraw { index, parts })
    }

    #[allow(clippy::too_many_arguments)]
    fn draw_part(
        &mut self,
        arm: Arm,
        endpoint: Option<usize>,
        from_s: f64,
        to_s: f64,
        changed: bool,
        mean: f64,
        b: Behaviour,
    ) -> Option<Part> {
        let n = match Poisson::new(mean) {
            Ok(p) => p.sample(&mut self.rng) as u64,
            Err(_) => 0,
        };
        if n == 0 {
            return None;
        }
        let resolution = self.scenario.timer_resolution_ms;
        self.scratch.clear();
        for _ in 0..n {
            let slow = b.slow_fraction > 0.0 && self.rng.random::<f64>() < b.slow_fraction;
            let z: f64 = self.rng.sample(StandardNormal);
            let mut v = if slow {
                b.slow_median_ms * (b.slow_sigma * z).exp() * b.slow_factor
            } else {
                b.median_ms * (b.sigma * z).exp()
            };
            v *= b.factor;
            if b.tail_fraction > 0.0 && self.rng.random::<f64>() < b.tail_fraction {
                v *= b.tail_multiplier;
            }
            // Rounded to the timer's resolution; capped far above any
            // latency a scenario can mean (an hour), so units stay finite.
            let units = (v.min(3.6e6) / resolution).round().max(0.0) as u64;
            self.scratch.push(units);
        }
        self.scratch.sort_unstable();
        let mut latencies: Vec<(u64, u64)> = Vec::new();
        for &u in &self.scratch {
            match latencies.last_mut() {
                Some((last, count)) if *last == u => *count += 1,
                _ => latencies.push((u, 1)),
            }
        }
        let errors = match Binomial::new(n, b.error_rate) {
            Ok(d) => d.sample(&mut self.rng),
            Err(_) => 0,
        };
        Some(Part {
            arm,
            endpoint,
            from_s,
            to_s,
            changed,
            latencies,
            requests: n,
            errors,
        })
    }

    /// The latency in milliseconds of `units` multiples of the resolution.
    pub fn latency_ms(&self, units: u64) -> f64 {
        units as f64 * self.scenario.timer_resolution_ms
    }

    /// The slice as pre-aggregated samples: per part one latency histogram
    /// and one error count, stamped inside the part's interval.
    pub fn aggregated_samples(&self, draw: &SliceDraw, names: &Names) -> Vec<Sample> {
        let mut out = Vec::with_capacity(draw.parts.len() * 2);
        for p in &draw.parts {
            let ts = STREAM_START + p.from_s;
            let labels = names.labels(p.endpoint);
            let version = names.version(p.arm).clone();
            out.push(Sample {
                ts,
                service: names.service.clone(),
                version: version.clone(),
                metric: names.latency.clone(),
                labels: labels.clone(),
                observation: Observation::Histogram(
                    p.latencies
                        .iter()
                        .map(|&(u, c)| (self.latency_ms(u), c))
                        .collect(),
                ),
            });
            out.push(Sample {
                ts,
                service: names.service.clone(),
                version,
                metric: names.error_rate.clone(),
                labels,
                observation: Observation::Counts {
                    requests: p.requests,
                    errors: p.errors,
                },
            });
        }
        out
    }

    /// The slice as individual requests, in time order: each part's
    /// requests evenly spread over its interval (the first at its start),
    /// latencies shuffled, errors on a random subset.
    pub fn expand_events(&self, draw: &SliceDraw, rng: &mut ChaCha8Rng) -> Vec<RequestEvent> {
        let mut out = Vec::new();
        for p in &draw.parts {
            let mut values: Vec<f64> = Vec::with_capacity(p.requests as usize);
            for &(u, c) in &p.latencies {
                let v = self.latency_ms(u);
                values.extend(std::iter::repeat_n(v, c as usize));
            }
            values.shuffle(rng);
            let mut errors = vec![false; values.len()];
            let n_err = (p.errors as usize).min(values.len());
            for i in rand::seq::index::sample(rng, values.len(), n_err) {
                errors[i] = true;
            }
            let n = values.len() as f64;
            for (j, (latency_ms, error)) in values.into_iter().zip(errors).enumerate() {
                out.push(RequestEvent {
                    ts: STREAM_START + p.from_s + (p.to_s - p.from_s) * (j as f64 / n),
                    arm: p.arm,
                    endpoint: p.endpoint,
                    latency_ms,
                    error,
                });
            }
        }
        out.sort_by(|a, b| a.ts.total_cmp(&b.ts));
        out
    }
}

impl RequestEvent {
    /// The two samples a request feeds: its latency and its outcome.
    pub fn samples(&self, names: &Names) -> [Sample; 2] {
        let labels = names.labels(self.endpoint);
        let version = names.version(self.arm).clone();
        [
            Sample {
                ts: self.ts,
                service: names.service.clone(),
                version: version.clone(),
                metric: names.latency.clone(),
                labels: labels.clone(),
                observation: Observation::Value(self.latency_ms),
            },
            Sample {
                ts: self.ts,
                service: names.service.clone(),
                version,
                metric: names.error_rate.clone(),
                labels,
                observation: Observation::Outcome { error: self.error },
            },
        ]
    }

    /// The request as one line of the JSON lines event format `vigil
    /// replay` reads (no trailing newline).
    pub fn json_line(&self, names: &Names) -> String {
        let mut v = serde_json::json!({
            "ts": self.ts,
            "service": names.service.as_str(),
            "version": names.version(self.arm).as_str(),
            "latency_ms": self.latency_ms,
            "error": self.error,
        });
        if let Some(name) = self.endpoint.and_then(|i| names.endpoint_names.get(i)) {
            v["labels"] = serde_json::json!({ "endpoint": name });
        }
        v.to_string()
    }
}

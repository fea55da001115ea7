//! Replications: a scenario's stream through the real store and judge.
//!
//! Each replication records its stream into a fresh `vigil_core` store and
//! ticks one `vigil_judge::Analysis` per method at every slice boundary, in
//! stream time, as `vigil replay` does: no copy of the judge's logic. The
//! methods of one replication judge the same stream. Replications run in
//! parallel (rayon); each depends only on (scenario, seed, run), and results
//! are collected in run order, so a summary is the same for a seed whatever
//! the number of threads.

use rayon::prelude::*;
use serde::Serialize;
use vigil_core::store::{Store, StoreConfig};
use vigil_core::{AnalysisSpec, Method, Timestamp, Verdict};
use vigil_judge::{Analysis, TimelineEntry};

use crate::generate::{event_rng, Generator, Names, STREAM_START};
use crate::scenario::Scenario;
use crate::SimError;

/// How the stream enters the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// Per slice, one histogram and one count per arm and endpoint (fast).
    Aggregated,
    /// Every request as its own samples (what a live stream or a replayed
    /// file delivers); for checking that both feeds agree.
    Events,
}

/// What one method concluded in one replication.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodRun {
    /// The method.
    pub method: Method,
    /// The terminal verdict, or the last one (CONTINUE) if none was reached.
    pub verdict: Verdict,
    /// Its reason.
    pub reason: String,
    /// Stream time of the terminal verdict (epoch seconds).
    pub decided_at: Option<Timestamp>,
    /// Seconds from `change_at_s` to the terminal verdict (negative for a
    /// verdict before the change).
    pub decision_s: Option<f64>,
    /// Canary requests served under the change up to a ROLLBACK.
    pub exposure_requests: Option<u64>,
    /// Every verdict change.
    pub timeline: Vec<TimelineEntry>,
}

/// One replication.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replication {
    /// Its number (the random stream it used).
    pub run: u64,
    /// One entry per method, in the order asked.
    pub methods: Vec<MethodRun>,
}

/// The store configuration `vigil replay` uses for a spec: the `endpoint`
/// label and the spec's dimensions kept, and a window holding the whole
/// analysis. Kept identical to replay's, so the two agree (tested).
pub fn store_config(spec: &AnalysisSpec) -> StoreConfig {
    let mut labels = vec!["endpoint".to_owned()];
    labels.extend(spec.dimensions.iter().cloned());
    labels.sort();
    labels.dedup();
    let defaults = StoreConfig::default();
    let window_secs = defaults
        .window_secs
        .max(spec.policy.max_duration.as_secs() as u32 + 4 * defaults.slice_secs);
    StoreConfig {
        label_allow_list: labels,
        window_secs,
        ..defaults
    }
}

/// The scenario's spec with another method.
pub fn spec_for(scenario: &Scenario, method: Method) -> AnalysisSpec {
    let mut spec = scenario.analysis.clone();
    spec.policy.method = method;
    spec
}

/// Runs replication `run` of `scenario` under `seed`, judged by `methods`.
pub fn replicate(
    scenario: &Scenario,
    seed: u64,
    run: u64,
    methods: &[Method],
    feed: Feed,
) -> Result<Replication, SimError> {
    let names = Names::new(scenario)?;
    let store = Store::new(store_config(&scenario.analysis));
    let slice_secs = store.config().slice_secs;
    let mut generator = Generator::new(scenario, seed, run, slice_secs);
    let mut events_rng = event_rng(seed, run);
    struct Judged {
        analysis: Analysis,
        exposure: Option<u64>,
    }
    let mut judged = methods
        .iter()
        .map(|&m| {
            Ok(Judged {
                analysis: Analysis::new("sim", spec_for(scenario, m), STREAM_START)?,
                exposure: None,
            })
        })
        .collect::<Result<Vec<_>, SimError>>()?;
    let mut exposed = 0u64;
    while let Some(draw) = generator.next_slice() {
        match feed {
            Feed::Aggregated => {
                for sample in generator.aggregated_samples(&draw, &names) {
                    store.record(&sample)?;
                }
            }
            Feed::Events => {
                for event in generator.expand_events(&draw, &mut events_rng) {
                    for sample in event.samples(&names) {
                        store.record(&sample)?;
                    }
                }
            }
        }
        exposed += draw.changed_canary_requests();
        let now = STREAM_START + (draw.index + 1) as f64 * generator.slice_secs();
        let mut open = false;
        for j in &mut judged {
            if j.analysis.decided().is_some() {
                continue;
            }
            let report = j.analysis.tick(&store, now);
            if report.verdict.is_terminal() {
                j.exposure = Some(exposed);
            } else {
                open = true;
            }
        }
        if !open {
            break;
        }
    }
    let change = STREAM_START + scenario.canary.change_at_s;
    let methods = methods
        .iter()
        .zip(judged)
        .map(|(&method, j)| {
            let shown = j.analysis.decided().or(j.analysis.latest());
            let decided_at = j.analysis.decided().and_then(|d| d.decided_at);
            let verdict = shown.map_or(Verdict::Continue, |r| r.verdict);
            MethodRun {
                method,
                verdict,
                reason: shown.map(|r| r.reason.clone()).unwrap_or_default(),
                decided_at,
                decision_s: decided_at.map(|t| t - change),
                exposure_requests: j.exposure.filter(|_| verdict == Verdict::Rollback),
                timeline: j.analysis.timeline().to_vec(),
            }
        })
        .collect();
    Ok(Replication { run, methods })
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Replications.
    pub runs: u64,
    /// Seed of every random stream.
    pub seed: u64,
    /// Methods judging each replication.
    pub methods: Vec<Method>,
    /// Worker threads (`None`: one per core).
    pub threads: Option<usize>,
}

/// Runs `plan.runs` replications in parallel; results in run order.
pub fn simulate(scenario: &Scenario, plan: &Plan) -> Result<Vec<Replication>, SimError> {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(n) = plan.threads {
        builder = builder.num_threads(n.max(1));
    }
    let pool = builder
        .build()
        .map_err(|e| SimError::Threads(e.to_string()))?;
    pool.install(|| {
        (0..plan.runs)
            .into_par_iter()
            .map(|run| replicate(scenario, plan.seed, run, &plan.methods, Feed::Aggregated))
            .collect()
    })
}

/// One method's results over all replications.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// The method.
    pub method: Method,
    /// Replications.
    pub runs: u64,
    /// The seed.
    pub seed: u64,
    /// Share of runs ending in ROLLBACK.
    pub rollback_rate: f64,
    /// ... in PROMOTE.
    pub promote_rate: f64,
    /// ... in INCONCLUSIVE.
    pub inconclusive_rate: f64,
    /// ... without a terminal verdict by the end of the stream.
    pub continue_rate: f64,
    /// Median seconds from the change to the terminal verdict, over the
    /// runs that reached one.
    pub median_decision_s: Option<f64>,
    /// 90th percentile of the same.
    pub p90_decision_s: Option<f64>,
    /// Median canary requests served under the change before a ROLLBACK.
    pub exposure_requests: Option<f64>,
    /// Share of runs rolled back within 10 minutes after the change (not
    /// before it).
    pub rollback_within_10m_rate: f64,
    /// Median seconds from the change to ROLLBACK, over rolled-back runs.
    pub median_rollback_s: Option<f64>,
}

/// Linear-interpolation quantile of sorted values (type 7).
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// Summarises method `index` (position in the plan's methods).
pub fn summarize(scenario: &Scenario, seed: u64, reps: &[Replication], index: usize) -> Summary {
    let runs: Vec<&MethodRun> = reps.iter().filter_map(|r| r.methods.get(index)).collect();
    let n = runs.len().max(1) as f64;
    let share = |v: Verdict| runs.iter().filter(|r| r.verdict == v).count() as f64 / n;
    let decisions = sorted(runs.iter().filter_map(|r| r.decision_s).collect());
    let rollbacks: Vec<&&MethodRun> = runs
        .iter()
        .filter(|r| r.verdict == Verdict::Rollback)
        .collect();
    let rollback_times = sorted(rollbacks.iter().filter_map(|r| r.decision_s).collect());
    let exposure = sorted(
        rollbacks
            .iter()
            .filter_map(|r| r.exposure_requests)
            .map(|e| e as f64)
            .collect(),
    );
    Summary {
        scenario: scenario.name.clone(),
        method: runs.first().map_or(Method::default(), |r| r.method),
        runs: runs.len() as u64,
        seed,
        rollback_rate: share(Verdict::Rollback),
        promote_rate: share(Verdict::Promote),
        inconclusive_rate: share(Verdict::Inconclusive),
        continue_rate: share(Verdict::Continue),
        median_decision_s: quantile(&decisions, 0.5),
        p90_decision_s: quantile(&decisions, 0.9),
        exposure_requests: quantile(&exposure, 0.5),
        rollback_within_10m_rate: rollback_times
            .iter()
            .filter(|&&t| (0.0..=600.0).contains(&t))
            .count() as f64
            / n,
        median_rollback_s: quantile(&rollback_times, 0.5),
    }
}

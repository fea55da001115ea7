//! The server's shared state ([`Vigil`]) and the judge ticker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use vigil_core::spec::AnalysisSpec;
use vigil_core::store::Store;
use vigil_core::{ServiceName, Version};

use crate::config::{Config, Template};
use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use crate::registry::{CreateError, Entry, Published, Registry, State};

/// Verdict changes buffered per watcher before it is told it lagged.
const WATCH_BUFFER: usize = 4096;

/// Named readiness gates: `/readyz` answers 200 when all are open. The
/// Kafka consumer adds one that opens on partition assignment.
#[derive(Debug, Default, Clone)]
pub struct Readiness {
    gates: Arc<Mutex<HashMap<String, Arc<AtomicBool>>>>,
}

impl Readiness {
    /// Adds a closed gate named `name` (or returns the existing one).
    pub fn gate(&self, name: &str) -> Arc<AtomicBool> {
        match self.gates.lock() {
            Ok(mut g) => g.entry(name.to_owned()).or_default().clone(),
            Err(_) => Arc::new(AtomicBool::new(false)),
        }
    }

    /// Names of closed gates (empty: ready).
    pub fn waiting_for(&self) -> Vec<String> {
        let mut v: Vec<String> = match self.gates.lock() {
            Ok(g) => g
                .iter()
                .filter(|(_, open)| !open.load(Ordering::Acquire))
                .map(|(k, _)| k.clone())
                .collect(),
            Err(_) => vec!["readiness".to_owned()],
        };
        v.sort();
        v
    }
}

/// Everything the APIs, the ticker and plug-ins (Kafka) share.
#[derive(Debug)]
pub struct Vigil {
    /// The effective configuration.
    pub config: Config,
    /// The store every ingest path records into.
    pub store: Arc<Store>,
    /// The one ingest path.
    pub ingest: Ingestor,
    /// Analyses.
    pub analyses: Registry,
    /// Metrics (one registry for the process).
    pub metrics: Metrics,
    /// Readiness gates.
    pub readiness: Readiness,
    /// Accepted bearer tokens (empty: no auth).
    pub tokens: Vec<String>,
    /// Cancelled on shutdown: watch streams end, the ticker stops.
    pub shutdown: CancellationToken,
    /// Kayenta thresholds (pass, marginal) per analysis started by a
    /// Kayenta client.
    pub kayenta_thresholds: dashmap::DashMap<String, (f64, f64)>,
    ticks: std::sync::atomic::AtomicU64,
    last_tick_micros: std::sync::atomic::AtomicU64,
    verdicts: broadcast::Sender<Arc<Published>>,
}

/// Why an analysis could not be started for a service.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The spec built from a template is invalid.
    #[error(transparent)]
    Spec(#[from] vigil_core::SpecError),
    /// The registry refused it.
    #[error(transparent)]
    Create(#[from] CreateError),
}

impl Vigil {
    /// Shared state for `config`, with accepted `tokens`.
    pub fn new(config: Config, tokens: Vec<String>) -> Arc<Self> {
        let metrics = Metrics::new();
        let store = Arc::new(Store::new(config.store.clone()));
        let (verdicts, _) = broadcast::channel(WATCH_BUFFER);
        Arc::new(Self {
            ingest: Ingestor::new(store.clone(), metrics.clone()),
            store,
            analyses: Registry::default(),
            metrics,
            readiness: Readiness::default(),
            tokens,
            shutdown: CancellationToken::new(),
            kayenta_thresholds: dashmap::DashMap::new(),
            ticks: Default::default(),
            last_tick_micros: Default::default(),
            verdicts,
            config,
        })
    }

    /// Stream time now: the start of the newest slice seen, or the wall
    /// clock before any data (stream time follows the wall clock in
    /// production; only replays differ, and they have data first).
    pub fn stream_now(&self) -> f64 {
        match self.store.high_water() {
            Some(h) => self.store.slice_start(h),
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }

    /// Starts an analysis.
    pub fn create(
        &self,
        id: Option<String>,
        spec: AnalysisSpec,
        origin: &str,
    ) -> Result<Arc<Entry>, CreateError> {
        // A canary already emitting is judged from its first sample on, so
        // a controller that asks late loses no evidence.
        let now = self.stream_now();
        let start = self
            .first_seen(&spec.service, &spec.canary_version)
            .filter(|&first| {
                self.store
                    .window_start()
                    .is_some_and(|w| first >= self.store.slice_start(w))
            })
            .map_or(now, |first| first.min(now));
        self.create_from(id, spec, origin, start)
    }

    /// Starts an analysis judging from stream time `start` on (data already
    /// in the store's window counts).
    pub fn create_from(
        &self,
        id: Option<String>,
        spec: AnalysisSpec,
        origin: &str,
        start: f64,
    ) -> Result<Arc<Entry>, CreateError> {
        let entry = self.analyses.create(id, spec, origin, start)?;
        // A full recount is O(analyses): the ticker does it; here one more
        // is running.
        self.metrics
            .analyses
            .get_or_create(&vec![(
                "state".to_owned(),
                State::Running.as_str().to_owned(),
            )])
            .inc();
        Ok(entry)
    }

    /// Stream time of the first sample of `version` of `service`.
    pub fn first_seen(&self, service: &ServiceName, version: &Version) -> Option<f64> {
        self.ingest.first_seen(service, version)
    }

    /// Cancels an analysis and tells watchers.
    pub fn cancel(&self, id: &str) -> Option<Arc<Entry>> {
        let (entry, news) = self.analyses.cancel(id)?;
        if let Some(p) = news {
            self.announce(p);
        }
        self.update_counts();
        Some(entry)
    }

    /// A receiver of every verdict change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.verdicts.subscribe()
    }

    fn announce(&self, p: Arc<Published>) {
        self.metrics.count_verdict(p.report.verdict.as_str());
        // No receiver is fine: nobody is watching.
        let _ = self.verdicts.send(p);
    }

    fn update_counts(&self) {
        for (state, n) in self.analyses.counts() {
            self.metrics.set_analyses(state.as_str(), n);
        }
    }

    /// The spec a template gives for `service` from `baseline` to `canary`.
    pub fn spec_from_template(
        template: &Template,
        service: &ServiceName,
        baseline: Option<&Version>,
        canary: &Version,
    ) -> Result<AnalysisSpec, vigil_core::SpecError> {
        let spec = AnalysisSpec {
            service: service.clone(),
            baseline_version: baseline.cloned(),
            canary_version: canary.clone(),
            metrics: template.metrics.clone(),
            policy: template.policy.clone(),
            dimensions: template.dimensions.clone(),
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Versions of `service` emitting now, oldest first.
    pub fn emitting(&self, service: &ServiceName) -> Vec<Version> {
        let since = match self.store.high_water() {
            Some(h) => self.store.slice_start(h) - self.config.emitting_within.as_secs_f64(),
            None => return Vec::new(),
        };
        self.ingest
            .emitting(service, since)
            .into_iter()
            .map(|(v, _)| v)
            .collect()
    }

    /// The analysis judging the newest emitting version of `service`
    /// against the one before it, started from `template` when there is
    /// none (`origin` says by whom). `None` while fewer than two versions
    /// emit.
    pub fn analysis_for_service(
        &self,
        service: &ServiceName,
        template: &Template,
        origin: &str,
    ) -> Result<Option<Arc<Entry>>, StartError> {
        let versions = self.emitting(service);
        let [.., baseline, canary] = versions.as_slice() else {
            return Ok(None);
        };
        if let Some(e) = self.analyses.has_canary(service.as_str(), canary.as_str()) {
            return Ok(Some(e));
        }
        let spec = Self::spec_from_template(template, service, Some(baseline), canary)?;
        // Judge from the canary's first sample on.
        let start = self
            .first_seen(service, canary)
            .unwrap_or_else(|| self.stream_now());
        match self.create_from(None, spec, origin, start) {
            Ok(e) => Ok(Some(e)),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts auto analyses for versions first seen since the last call.
    fn start_auto_analyses(&self) {
        let new = self.ingest.take_new_versions();
        if self.config.auto_analysis.is_empty() {
            return;
        }
        for (service, version) in new {
            let Some(rule) = self
                .config
                .auto_analysis
                .iter()
                .find(|r| r.matches(service.as_str()))
            else {
                continue;
            };
            let versions = self.emitting(&service);
            // The new version must be the newest, with an older one still emitting.
            let Some(pos) = versions.iter().position(|v| v == &version) else {
                continue;
            };
            if pos == 0 || pos + 1 != versions.len() {
                continue;
            }
            if self
                .analyses
                .has_canary(service.as_str(), version.as_str())
                .is_some()
            {
                continue;
            }
            let template = Template {
                name: "auto".to_owned(),
                service: Some(service.to_string()),
                metrics: rule.metrics.clone(),
                policy: rule.policy.clone(),
                dimensions: rule.dimensions.clone(),
            };
            let baseline = &versions[pos - 1];
            let start = self
                .first_seen(&service, &version)
                .unwrap_or_else(|| self.stream_now());
            match Self::spec_from_template(&template, &service, Some(baseline), &version)
                .map_err(StartError::from)
                .and_then(|spec| Ok(self.create_from(None, spec, "auto", start)?))
            {
                Ok(_) => {}
                Err(e) => eprintln!("vigil: auto analysis for {service} {version}: {e}"),
            }
        }
    }

    /// One judge tick: starts auto analyses, then brings every running
    /// analysis up to stream time (all of them when the slices judged
    /// complete moved, otherwise only those never ticked), publishing
    /// changes. A slice is complete once the stream has left it and
    /// `slice_grace` has passed, or once the stream is a whole slice past
    /// it; `state` carries what that needs from one tick to the next.
    pub fn tick(&self, state: &mut TickState) {
        self.start_auto_analyses();
        let Some(hw) = self.store.high_water() else {
            return;
        };
        // Slices before `complete` are judged: the newest one the stream
        // left only once `slice_grace` has passed since it did (since the
        // store took the first sample of the next slice; since this ticker
        // first saw that slice if the store cannot tell, after a restore).
        let seen_at = match state.high_water {
            Some((h, at)) if h == hw => at,
            _ => {
                let at = match self.store.high_water_since() {
                    Some((h, at)) if h == hw => at,
                    _ => Instant::now(),
                };
                state.high_water = Some((hw, at));
                at
            }
        };
        let complete = if seen_at.elapsed() >= self.config.slice_grace {
            hw
        } else {
            hw - 1
        };
        let moved = state.complete != Some(complete);
        state.complete = Some(complete);
        let running = self.analyses.running();
        if !running.is_empty() {
            // Samples into these slices from now on miss the verdicts
            // (counted); with no analysis running, nothing has read them.
            self.store.set_judged_before(complete);
        }
        let now = self.store.slice_start(complete);
        self.metrics.stream_time.set(self.store.slice_start(hw));
        let started = Instant::now();
        let mut changed = false;
        for entry in running {
            if !moved && entry.ticked.load(Ordering::Acquire) {
                continue;
            }
            let Ok(mut analysis) = entry.analysis.lock() else {
                continue;
            };
            if entry.is_cancelled() {
                continue;
            }
            let report = analysis.tick(&self.store, now);
            entry.ticked.store(true, Ordering::Release);
            if let Some(p) = entry.publish(report.clone()) {
                changed |= p.state != State::Running;
                self.announce(p);
            }
        }
        let took = started.elapsed();
        self.metrics.tick_seconds.observe(took.as_secs_f64());
        self.last_tick_micros
            .store(took.as_micros() as u64, Ordering::Release);
        self.ticks.fetch_add(1, Ordering::AcqRel);
        self.metrics.mirror_store(&self.store.stats());
        if changed || moved {
            self.update_counts();
        }
    }

    /// Judge ticks completed (with stream time present), and the wall time
    /// of the last one.
    pub fn ticks(&self) -> (u64, std::time::Duration) {
        (
            self.ticks.load(Ordering::Acquire),
            std::time::Duration::from_micros(self.last_tick_micros.load(Ordering::Acquire)),
        )
    }

    /// Runs the judge ticker until shutdown (on a blocking thread: ticks
    /// are CPU work).
    pub async fn run_ticker(self: Arc<Self>) {
        let mut interval = tokio::time::interval(self.config.tick_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = TickState::default();
        loop {
            // A slice whose grace is running is judged when the grace ends,
            // not at the next interval tick after that.
            let grace_end = last
                .grace_ends(self.config.slice_grace)
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = interval.tick() => {}
                () = sleep_until_some(grace_end), if grace_end.is_some() => {}
            }
            let me = self.clone();
            let result = tokio::task::spawn_blocking(move || {
                me.tick(&mut last);
                last
            })
            .await;
            match result {
                Ok(l) => last = l,
                Err(e) => eprintln!("vigil: judge tick failed: {e}"),
            }
        }
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What the judge ticker keeps between ticks ([`Vigil::tick`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct TickState {
    /// The store's high-water slice, and when the stream reached it.
    high_water: Option<(i64, Instant)>,
    /// Slices before this one were complete at the last tick.
    complete: Option<i64>,
}

impl TickState {
    /// When the slice the stream left last becomes complete, if its
    /// `grace` is still running.
    pub fn grace_ends(&self, grace: Duration) -> Option<Instant> {
        let (_, seen_at) = self.high_water?;
        let end = seen_at.checked_add(grace)?;
        (end > Instant::now()).then_some(end)
    }
}

#[cfg(test)]
mod tests {
    use vigil_core::{Labels, MetricName, Observation, Sample, ServiceName, Verdict, Version};

    use super::*;

    /// `n` request outcomes of `version` at stream time `ts`, `errors` of
    /// them failed.
    fn requests(version: &str, ts: f64, n: usize, errors: usize) -> Vec<Sample> {
        (0..n)
            .map(|i| Sample {
                ts,
                service: ServiceName::new("pay").unwrap(),
                version: Version::new(version).unwrap(),
                metric: MetricName::new("error_rate").unwrap(),
                labels: Labels::empty(),
                observation: Observation::Outcome { error: i < errors },
            })
            .collect()
    }

    /// A canary's errors that arrive just after the stream entered the next
    /// slice, then the verdict once the grace has passed.
    fn verdict_with_late_errors(grace: Duration) -> (Verdict, u64) {
        let config = Config {
            slice_grace: grace,
            ..Config::default()
        };
        let vigil = Vigil::new(config, Vec::new());
        let t0 = 1_800_000_000.0;
        let spec = serde_json::from_value(serde_json::json!({
            "service": "pay",
            "baseline_version": "v7",
            "canary_version": "v8",
            "metrics": [{"name": "error_rate", "kind": "error_rate", "tolerance_abs": 0.002}],
            "policy": {"min_samples": 50},
        }))
        .unwrap();
        let entry = vigil.create_from(None, spec, "test", t0).unwrap();
        let mut state = TickState::default();
        let record = |version, at, n, errors| {
            let outcome = vigil
                .ingest
                .record("test", &requests(version, t0 + at, n, errors));
            assert_eq!(outcome.rejected, 0);
        };
        // Slice 0: both arms healthy.
        record("v7", 1.0, 1000, 0);
        record("v8", 1.0, 200, 0);
        vigil.tick(&mut state);
        // Slice 1 fills; the stream enters slice 2 (one baseline sample).
        record("v7", 11.0, 1000, 0);
        record("v8", 11.0, 200, 0);
        record("v7", 20.5, 1, 0);
        vigil.tick(&mut state);
        // Then the canary's samples of slice 1 still on their way arrive:
        // half of them errors.
        record("v8", 19.0, 400, 200);
        std::thread::sleep(grace + Duration::from_millis(50));
        vigil.tick(&mut state);
        let after_judged = vigil.store.stats().after_judged;
        // /metrics shows the store's count.
        assert_eq!(vigil.metrics.after_judged.get(), after_judged);
        (entry.published().report.verdict, after_judged)
    }

    #[test]
    fn samples_within_the_grace_are_judged() {
        // A grace long enough that a loaded machine does not end it between
        // the sample that starts it and the next tick.
        assert_eq!(
            verdict_with_late_errors(Duration::from_secs(2)),
            (Verdict::Rollback, 0)
        );
        // Without a grace the slice was judged before they came, and they
        // never are; they are counted.
        assert_eq!(
            verdict_with_late_errors(Duration::ZERO),
            (Verdict::Continue, 400)
        );
    }

    /// With no analysis running, a slice the ticker passed has not been
    /// read: samples that come into it later are not counted as missed.
    #[test]
    fn late_samples_count_only_when_an_analysis_read_their_slice() {
        let config = Config {
            slice_grace: Duration::ZERO,
            ..Config::default()
        };
        let vigil = Vigil::new(config, Vec::new());
        let t0 = 1_800_000_000.0;
        let record = |at| {
            let outcome = vigil.ingest.record("test", &requests("v7", t0 + at, 10, 0));
            assert_eq!(outcome.rejected, 0);
        };
        let mut state = TickState::default();
        record(1.0);
        record(11.0);
        vigil.tick(&mut state);
        record(2.0);
        assert_eq!(vigil.store.stats().after_judged, 0);
    }

    /// The ticker learns when a running grace ends (to tick then rather
    /// than at its next interval), and nothing once it has ended.
    #[test]
    fn the_tick_state_tells_when_the_grace_ends() {
        // Long enough that a loaded machine does not end it between a
        // record and the tick after it.
        let grace = Duration::from_secs(2);
        let config = Config {
            slice_grace: grace,
            ..Config::default()
        };
        let vigil = Vigil::new(config, Vec::new());
        let mut state = TickState::default();
        assert_eq!(state.grace_ends(grace), None, "no stream yet");
        let record = |at| {
            let outcome = vigil
                .ingest
                .record("test", &requests("v7", 1_800_000_000.0 + at, 1, 0));
            assert_eq!(outcome.rejected, 0);
        };
        // The grace runs from the sample that moved the stream into a new
        // slice, not from the tick that saw it.
        let before = Instant::now();
        record(1.0);
        let after = Instant::now();
        vigil.tick(&mut state);
        let end = state.grace_ends(grace).unwrap();
        assert!(end >= before + grace && end <= after + grace);
        std::thread::sleep(end.saturating_duration_since(Instant::now()));
        assert_eq!(state.grace_ends(grace), None, "ended");
        // The stream moves on: a new grace.
        record(11.0);
        vigil.tick(&mut state);
        assert!(state.grace_ends(grace).is_some());
        assert_eq!(state.grace_ends(Duration::ZERO), None);
        // A tick that comes after the grace has passed judges at once.
        record(21.0);
        std::thread::sleep(grace);
        vigil.tick(&mut state);
        assert_eq!(state.grace_ends(grace), None);
        assert_eq!(state.complete, vigil.store.high_water());
    }
}

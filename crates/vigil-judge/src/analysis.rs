//! An analysis: one spec, the evidence gathered so far, the verdict.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use vigil_core::store::{SeriesReader, Slice, SliceData, Store};
use vigil_core::{
    AnalysisSpec, Labels, Method, MetricKind, MetricStatus, SeriesKey, Timestamp, Verdict,
    VerdictReport, Version,
};
use vigil_stats::sequential::combine::holm_weighted;
use vigil_stats::sequential::{EProcess, Evidence};

use crate::kayenta::{self, KayentaResult};
use crate::kayenta_method;
use crate::track::{
    error_rate_name, first_byte, fixed, percent, tolerance_text, touch_result, value_text,
    Assessment, Judging, Text, Track,
};
use crate::JudgeError;

/// A verdict change, in stream time.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TimelineEntry {
    /// When (stream time).
    pub ts: Timestamp,
    /// The new verdict.
    pub verdict: Verdict,
    /// Its reason.
    pub reason: String,
}

/// One running analysis.
#[derive(Debug, Clone)]
pub struct Analysis {
    id: String,
    spec: AnalysisSpec,
    how: Judging,
    created_at: Timestamp,
    next_slice: Option<i64>,
    tracks: Vec<Track>,
    /// The series each track reads, (canary, baseline), built once: a
    /// reader finds its series once, not at every tick.
    readers: Vec<(SeriesReader, Option<SeriesReader>)>,
    /// Each track's share of the evidence ([`Analysis::track_weights`]),
    /// kept: it changes only when a track is added.
    weights: Vec<f64>,
    overall: Evidence,
    /// Shared with whoever keeps it (the server publishes it each tick).
    latest: Option<Arc<VerdictReport>>,
    decided: Option<Arc<VerdictReport>>,
    timeline: Vec<TimelineEntry>,
    /// Whether ticks stop at the first terminal verdict (the default).
    stop_at_terminal: bool,
}

impl Analysis {
    /// Starts an analysis at stream time `created_at`.
    pub fn new(
        id: impl Into<String>,
        spec: AnalysisSpec,
        created_at: Timestamp,
    ) -> Result<Self, JudgeError> {
        spec.validate()?;
        let how = Judging {
            method: spec.policy.method,
            alpha: spec.policy.alpha,
            slo_mode: spec.is_slo_mode(),
        };
        let tracks = spec
            .metrics
            .iter()
            .enumerate()
            .map(|(i, m)| Track::new(i, m, None, how))
            .collect::<Result<Vec<_>, _>>()?;
        let mut analysis = Self {
            id: id.into(),
            spec,
            how,
            created_at,
            next_slice: None,
            tracks: Vec::new(),
            readers: Vec::new(),
            weights: Vec::new(),
            overall: Evidence::default(),
            latest: None,
            decided: None,
            timeline: Vec::new(),
            stop_at_terminal: true,
        };
        for track in tracks {
            analysis.push_track(track);
        }
        Ok(analysis)
    }

    /// Adds a track with the keys it reads.
    fn push_track(&mut self, track: Track) {
        let labels = track.dimension.clone().unwrap_or_default();
        let canary = self.key(&self.spec.canary_version, track.metric, &labels);
        let baseline = self
            .spec
            .baseline_version
            .as_ref()
            .map(|v| self.key(v, track.metric, &labels));
        self.readers
            .push((SeriesReader::new(canary), baseline.map(SeriesReader::new)));
        self.tracks.push(track);
        self.weights = self.track_weights();
    }

    /// Keeps judging after a terminal verdict (for replays that show what
    /// would have happened next); the first terminal verdict is still the
    /// one [`Analysis::decided`] returns.
    pub fn keep_judging_after_decision(&mut self) {
        self.stop_at_terminal = false;
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its spec.
    pub fn spec(&self) -> &AnalysisSpec {
        &self.spec
    }

    /// Every verdict change so far.
    pub fn timeline(&self) -> &[TimelineEntry] {
        &self.timeline
    }

    /// The terminal verdict, once reached.
    pub fn decided(&self) -> Option<&VerdictReport> {
        self.decided.as_deref()
    }

    /// The latest verdict.
    pub fn latest(&self) -> Option<&VerdictReport> {
        self.latest.as_deref()
    }

    /// The latest verdict, shared (as [`Analysis::tick`] returns it).
    pub fn latest_shared(&self) -> Option<&Arc<VerdictReport>> {
        self.latest.as_ref()
    }

    fn key(&self, version: &Version, metric: usize, labels: &Labels) -> SeriesKey {
        SeriesKey {
            service: self.spec.service.clone(),
            version: version.clone(),
            metric: self.spec.metrics[metric].name.clone(),
            labels: labels.clone(),
        }
    }

    /// Reads the judge state feeding a slice adds to, the last report,
    /// which the tick replaces (frees), and the series it reads; returns a
    /// value made of them (for `std::hint::black_box`).
    fn touch(&self) -> u64 {
        let report = self.latest.as_ref().map_or(0, |r| {
            r.metrics
                .iter()
                .fold(first_byte(&r.reason), |acc, m| acc ^ touch_result(m))
        });
        let series = self
            .readers
            .iter()
            .flat_map(|(c, b)| std::iter::once(c).chain(b))
            .fold(report, |acc, r| acc ^ r.touch());
        self.tracks.iter().fold(series, |acc, t| acc ^ t.touch())
    }

    /// Brings the analysis up to stream time `now`: feeds every slice that
    /// completed since the last tick, and returns the verdict (the same as
    /// [`Analysis::latest`] then), shared: a caller that keeps it clones
    /// the `Arc`, not the report's strings. A terminal verdict (ROLLBACK,
    /// PROMOTE, INCONCLUSIVE) stays once reached.
    pub fn tick(&mut self, store: &Store, now: Timestamp) -> &Arc<VerdictReport> {
        // Once decided, the latest report is the decision.
        if !(self.stop_at_terminal && self.decided.is_some()) {
            self.advance(store, now);
        }
        // Always set by `advance` (and before a decision): not reached.
        self.latest.get_or_insert_with(|| {
            Arc::new(VerdictReport {
                verdict: Verdict::Continue,
                reason: "no verdict yet; keep watching".to_owned(),
                metrics: Vec::new(),
                worst_dimension: None,
                decided_at: None,
                evaluated_at: now,
            })
        })
    }

    /// [`Analysis::tick`]'s work: feeds the slices and sets the latest
    /// report (and the decision, once terminal).
    fn advance(&mut self, store: &Store, now: Timestamp) {
        let start = store.slice_of(self.created_at);
        // The slice holding `now` is still filling.
        let last_complete = store.slice_of(now) - 1;
        self.discover_dimensions(store);
        let from = self.next_slice.unwrap_or(start);
        if last_complete >= from {
            // The arms' counters and the series are cold by now (a tick
            // walks every analysis); read them in one tight loop, where the
            // loads overlap, rather than one miss per bucket as the slices
            // are added (-14% of a tick at 10,000 analyses,
            // docs/BENCHMARKS.md).
            std::hint::black_box(self.touch());
            // Slices in time order, every track at each: the combined
            // evidence then sees each slice, as each track's own running
            // maximum does, however many slices one tick catches up on.
            let mut pending: Vec<_> = self
                .readers
                .iter_mut()
                .map(|(canary_reader, baseline_reader)| {
                    let canary = store.read_slices(canary_reader, from, last_complete);
                    let baseline = match baseline_reader {
                        Some(reader) => store.read_slices(reader, from, last_complete),
                        None => Vec::new(),
                    };
                    align(canary, baseline).peekable()
                })
                .collect();
            let combine = self.how.method == Method::Sequential && !self.how.slo_mode;
            while let Some(index) = pending
                .iter_mut()
                .filter_map(|p| p.peek().map(|(i, _, _)| *i))
                .min()
            {
                for (track, p) in self.tracks.iter_mut().zip(pending.iter_mut()) {
                    if let Some((_, c, b)) = p.next_if(|(i, _, _)| *i == index) {
                        track.feed(&self.spec.metrics[track.metric], c, b);
                    }
                }
                if combine {
                    self.set_combined();
                }
            }
            self.next_slice = Some(last_complete + 1);
        }
        let report = self.decide(now);
        if self
            .timeline
            .last()
            .is_none_or(|e| e.verdict != report.verdict)
        {
            self.timeline.push(TimelineEntry {
                ts: now,
                verdict: report.verdict,
                reason: report.reason.clone(),
            });
        }
        let report = Arc::new(report);
        if report.verdict.is_terminal() && self.decided.is_none() {
            self.decided = Some(Arc::clone(&report));
        }
        self.latest = Some(report);
    }

    /// Adds a track for every label set of a judged dimension that the
    /// canary has emitted.
    fn discover_dimensions(&mut self, store: &Store) {
        if self.spec.dimensions.is_empty() {
            return;
        }
        let mut found = Vec::new();
        for (m, metric) in self.spec.metrics.iter().enumerate() {
            for labels in
                store.label_sets(&self.spec.service, &self.spec.canary_version, &metric.name)
            {
                if !self.spec.dimensions.iter().any(|d| labels.get(d).is_some()) {
                    continue;
                }
                let known = self
                    .tracks
                    .iter()
                    .chain(&found)
                    .any(|t| t.metric == m && t.dimension.as_ref() == Some(&labels));
                if known {
                    continue;
                }
                if let Ok(mut track) = Track::new(m, metric, Some(labels.clone()), self.how) {
                    // Catch up from the analysis start: the slices are still
                    // in the store's window.
                    if let Some(next) = self.next_slice {
                        let from = store.slice_of(self.created_at);
                        let canary = store.slices(
                            &self.key(&self.spec.canary_version, m, &labels),
                            from,
                            next - 1,
                        );
                        let baseline = match &self.spec.baseline_version {
                            Some(v) => store.slices(&self.key(v, m, &labels), from, next - 1),
                            None => Vec::new(),
                        };
                        for (_, c, b) in align(canary, baseline) {
                            track.feed(metric, c, b);
                        }
                    }
                    found.push(track);
                }
            }
        }
        for track in found {
            self.push_track(track);
        }
    }

    /// Each track's share of the evidence: its metric's weight, split
    /// evenly over the metric's tracks, normalised to sum to one (all zero
    /// when no metric has weight).
    fn track_weights(&self) -> Vec<f64> {
        let mut per_metric = vec![0usize; self.spec.metrics.len()];
        for t in &self.tracks {
            per_metric[t.metric] += 1;
        }
        let raw: Vec<f64> = self
            .tracks
            .iter()
            .map(|t| self.spec.metrics[t.metric].weight / per_metric[t.metric] as f64)
            .collect();
        let total: f64 = raw.iter().sum();
        if total > 0.0 && total.is_finite() {
            raw.iter().map(|w| w / total).collect()
        } else {
            vec![0.0; raw.len()]
        }
    }

    /// Records the combined evidence now: the weighted mean of the tracks'
    /// current e-values (see [`Analysis::track_weights`]).
    fn set_combined(&mut self) {
        if self.weights.iter().sum::<f64>() > 0.0 {
            let combined: f64 = self
                .weights
                .iter()
                .zip(&self.tracks)
                .map(|(w, t)| w * t.e_value())
                .sum();
            self.overall.set(combined.max(f64::MIN_POSITIVE).ln());
        }
    }

    fn decide(&mut self, now: Timestamp) -> VerdictReport {
        let policy = self.spec.policy.clone();
        let alpha = policy.alpha;
        let n_slo = self
            .spec
            .metrics
            .iter()
            .filter(|m| m.slo.is_some())
            .count()
            .max(1);
        let slo_alpha = alpha / n_slo as f64;
        // The report's results are in track order, and tracks are only
        // ever added at the end (`push_track`).
        let last = self.latest.as_deref().map_or(&[][..], |r| &r.metrics[..]);
        let mut assessed: Vec<Assessment> = self
            .tracks
            .iter_mut()
            .enumerate()
            .map(|(i, t)| {
                t.take_assessment(
                    &self.spec.metrics[t.metric],
                    self.how,
                    slo_alpha,
                    last.get(i),
                )
            })
            .collect();
        let ended = now - self.created_at >= policy.max_duration.as_secs_f64();

        // Enough samples: every critical metric's aggregate in each arm.
        let short = self
            .tracks
            .iter()
            .zip(&assessed)
            .filter(|(t, _)| t.dimension.is_none() && self.spec.metrics[t.metric].critical)
            .map(|(t, _)| {
                let needs_baseline = !self.how.slo_mode;
                let have = if needs_baseline {
                    t.canary.n().min(t.baseline.n())
                } else {
                    t.canary.n()
                };
                (t.metric, have)
            })
            .filter(|&(_, have)| have < policy.min_samples)
            .min_by_key(|&(_, have)| have);

        // Which tracks failed.
        let mut kayenta_score = None;
        let failing: Vec<bool> = match (self.how.method, self.how.slo_mode) {
            (_, true) | (Method::FixedHorizon, false) => {
                assessed.iter().map(|a| a.failed).collect()
            }
            (Method::Sequential, false) => {
                // Weighted Holm over the tracks names the failing ones; its
                // first rejection implies the combined e-value below reaches
                // 1 / alpha, so both use all of alpha.
                let p: Vec<f64> = self.tracks.iter().map(Track::p_value).collect();
                holm_weighted(&p, &self.weights, alpha)
                    .into_iter()
                    .zip(&assessed)
                    .map(|(rejected, a)| rejected && a.beyond_tolerance)
                    .collect()
            }
            (Method::Kayenta, false) => {
                let (failing, score) = self.kayenta_judgement();
                kayenta_score = score;
                failing
            }
        };
        for (a, &f) in assessed.iter_mut().zip(&failing) {
            a.result.status = if f {
                MetricStatus::Fail
            } else if a.within_tolerance {
                MetricStatus::Pass
            } else {
                MetricStatus::Pending
            };
        }

        // The combined evidence (sequential): the weighted mean of the
        // tracks' e-values, each metric's weight shared by its tracks.
        let mut rollback = false;
        if self.how.method == Method::Sequential && !self.how.slo_mode {
            self.set_combined();
            let beyond = assessed
                .iter()
                .any(|a| a.beyond_tolerance && a.e_value > 1.0);
            rollback = self.overall.p_value() <= alpha && beyond;
        }
        let critical_failed = self
            .tracks
            .iter()
            .zip(&failing)
            .any(|(t, &f)| f && self.spec.metrics[t.metric].critical);
        if self.how.method == Method::Sequential {
            rollback |= critical_failed;
        }
        if self.how.method == Method::FixedHorizon || self.how.slo_mode {
            rollback = critical_failed;
        }
        if self.how.method == Method::Kayenta && !self.how.slo_mode {
            rollback = kayenta_score
                .as_ref()
                .is_some_and(|s| s.result == KayentaResult::Fail);
        }
        let all_within = self
            .tracks
            .iter()
            .zip(&assessed)
            .filter(|(t, _)| t.dimension.is_none() && self.spec.metrics[t.metric].critical)
            .all(|(_, a)| a.within_tolerance);

        let worst = worst_track(&self.tracks, &assessed, &failing);
        let worst_dimension = worst
            .and_then(|i| self.tracks[i].dimension.as_ref())
            .filter(|_| rollback)
            .map(ToString::to_string);

        let canary_name = self.spec.canary_version.as_str();
        let baseline_name = self.spec.baseline_version.as_ref().map(|v| v.as_str());
        let (verdict, reason) = if rollback && (short.is_none() || critical_failed) {
            let i = worst.unwrap_or(0);
            (
                Verdict::Rollback,
                self.rollback_reason(i, &assessed[i], canary_name, baseline_name),
            )
        } else if let Some((m, have)) = short {
            let what = &self.spec.metrics[m].name;
            if ended {
                (
                    Verdict::Inconclusive,
                    format!(
                        "analysis ended after {} without a decision: {what} had only {have} of the {} samples per arm the policy needs",
                        humantime_short(policy.max_duration.as_secs_f64()),
                        policy.min_samples
                    ),
                )
            } else {
                (
                    Verdict::Continue,
                    format!(
                        "waiting for samples: {what} has {have} of {} per arm; keep watching",
                        policy.min_samples
                    ),
                )
            }
        } else if all_within && (self.how.method == Method::Sequential || self.how.slo_mode) {
            (
                Verdict::Promote,
                self.promote_reason(&assessed, canary_name, false),
            )
        } else if ended && self.how.method == Method::Kayenta && !self.how.slo_mode {
            match &kayenta_score {
                Some(s) if s.result == KayentaResult::Pass => (
                    Verdict::Promote,
                    format!(
                        "Kayenta score {:.0} reaches the pass threshold {:.0}: promote",
                        s.score,
                        kayenta_method::THRESHOLDS.pass
                    ),
                ),
                Some(s) => (
                    Verdict::Inconclusive,
                    format!(
                        "analysis ended with Kayenta score {:.0}, below the pass threshold {:.0}",
                        s.score,
                        kayenta_method::THRESHOLDS.pass
                    ),
                ),
                None => (
                    Verdict::Inconclusive,
                    "analysis ended with no metric classified".to_owned(),
                ),
            }
        } else if ended {
            if failing.iter().any(|&f| f) {
                (
                    Verdict::Inconclusive,
                    format!(
                        "analysis ended after {} with non-critical metrics failing: {}",
                        humantime_short(policy.max_duration.as_secs_f64()),
                        failing_names(&assessed, &failing)
                    ),
                )
            } else {
                (
                    Verdict::Promote,
                    self.promote_reason(&assessed, canary_name, true),
                )
            }
        } else {
            let detail =
                worst.map_or_else(String::new, |i| format!(": {}", assessed[i].result.summary));
            (
                Verdict::Continue,
                format!("no decision yet{detail}; keep watching"),
            )
        };

        let mut metrics = Vec::with_capacity(assessed.len());
        for (t, a) in self.tracks.iter_mut().zip(assessed) {
            t.keep_assessment(&a);
            metrics.push(a.result);
        }
        VerdictReport {
            verdict,
            reason,
            metrics,
            worst_dimension,
            decided_at: verdict.is_terminal().then_some(now),
            evaluated_at: now,
        }
    }

    /// Kayenta's classification of each aggregate track (dimensions are not
    /// a Kayenta concept) and the score over them.
    fn kayenta_judgement(&self) -> (Vec<bool>, Option<kayenta::Score>) {
        let mut failing = vec![false; self.tracks.len()];
        let mut classified = Vec::new();
        for (i, t) in self.tracks.iter().enumerate() {
            if t.dimension.is_some() {
                continue;
            }
            if let Some(c) = kayenta_method::classify(
                &self.spec.metrics[t.metric],
                &t.points.canary,
                &t.points.baseline,
            ) {
                failing[i] = c.classification.is_failure();
                classified.push(c);
            }
        }
        if classified.is_empty() {
            return (failing, None);
        }
        (
            failing,
            Some(kayenta_method::score(&self.spec.metrics, &classified)),
        )
    }

    fn display_metric<'a>(&'a self, m: usize, what: Option<&'a str>) -> impl fmt::Display + 'a {
        let metric = &self.spec.metrics[m];
        Text(move |f| match metric.kind {
            MetricKind::ErrorRate => f.write_str(&error_rate_name(metric)),
            _ => write!(f, "{} {}", what.unwrap_or("p50"), metric.name),
        })
    }

    fn rollback_reason(
        &self,
        i: usize,
        a: &Assessment,
        canary: &str,
        baseline: Option<&str>,
    ) -> String {
        let t = &self.tracks[i];
        let spec = &self.spec.metrics[t.metric];
        let effect = a.result.effect.clone();
        let what = effect.as_ref().map(|e| e.what.clone());
        let metric = self.display_metric(t.metric, what.as_deref());
        let of = t
            .dimension
            .as_ref()
            .map_or_else(String::new, |d| format!(" of {}", dimension_values(d)));
        let (Some(e), tolerance) = (effect, tolerance_text(spec)) else {
            return format!("{metric}{of} regressed in {canary}: roll back");
        };
        let (c, b) = (e.canary.unwrap_or(f64::NAN), e.baseline.unwrap_or(f64::NAN));
        match (baseline, spec.kind) {
            (None, _) => format!(
                "{metric}{of} is {} in {canary}, over the SLO of {}: roll back",
                value_text(c, spec.kind),
                value_text(b, spec.kind)
            ),
            (Some(base), MetricKind::ErrorRate) => {
                let (c, b) = t.newest_rates_beyond(spec).unwrap_or((c, b));
                format!(
                    "{metric}{of} is {} in {canary} vs {} in {base}, over the {tolerance} tolerance: roll back",
                    percent(c),
                    percent(b)
                )
            }
            (Some(base), kind) => {
                let rel = e.relative.map_or_else(
                    || "different".to_owned(),
                    |r| {
                        if r >= 0.0 {
                            format!("{}% higher", fixed(r * 100.0, 0))
                        } else {
                            format!("{}% lower", fixed(-r * 100.0, 0))
                        }
                    },
                );
                format!(
                    "{metric}{of} is {rel} in {canary} ({} vs {} in {base}), over the {tolerance} tolerance: roll back",
                    value_text(c, kind),
                    value_text(b, kind)
                )
            }
        }
    }

    fn promote_reason(&self, assessed: &[Assessment], canary: &str, at_end: bool) -> String {
        let why = if at_end {
            format!(
                "analysis reached {} with no metric failing",
                humantime_short(self.spec.policy.max_duration.as_secs_f64())
            )
        } else if self.how.slo_mode {
            "every critical metric is confidently within its SLO".to_owned()
        } else {
            "every critical metric is confidently within its tolerance".to_owned()
        };
        // One string, written in place (writing to a String cannot fail).
        let mut reason = format!("{why} in {canary} (");
        let mut first = true;
        for (t, a) in self.tracks.iter().zip(assessed) {
            let Some(e) = a.result.effect.as_ref().filter(|_| t.dimension.is_none()) else {
                continue;
            };
            if !first {
                reason.push_str("; ");
            }
            first = false;
            let spec = &self.spec.metrics[t.metric];
            let metric = self.display_metric(t.metric, Some(&e.what));
            let _ = match spec.kind {
                MetricKind::ErrorRate => write!(
                    reason,
                    "{metric} {} vs {}",
                    percent(e.canary.unwrap_or(0.0)),
                    percent(e.baseline.unwrap_or(0.0))
                ),
                kind => write!(
                    reason,
                    "{metric} {} vs {}",
                    value_text(e.canary.unwrap_or(0.0), kind),
                    value_text(e.baseline.unwrap_or(0.0), kind)
                ),
            };
        }
        reason.push_str("): promote");
        reason
    }
}

/// Pairs the canary's and baseline's slices by index, in order.
fn align(
    canary: Vec<Slice>,
    baseline: Vec<Slice>,
) -> impl Iterator<Item = (i64, Option<SliceData>, Option<SliceData>)> {
    let mut canary = canary.into_iter().peekable();
    let mut baseline = baseline.into_iter().peekable();
    std::iter::from_fn(move || {
        let take = match (canary.peek(), baseline.peek()) {
            (Some(c), Some(b)) if c.index == b.index => (true, true),
            (Some(c), Some(b)) => (c.index < b.index, c.index > b.index),
            (Some(_), None) => (true, false),
            (None, Some(_)) => (false, true),
            (None, None) => return None,
        };
        let c = if take.0 { canary.next() } else { None };
        let b = if take.1 { baseline.next() } else { None };
        let index = c.as_ref().or(b.as_ref()).map(|s| s.index)?;
        Some((index, c.map(|s| s.data), b.map(|s| s.data)))
    })
}

/// The track to name: a failing one first, a failing dimension over the
/// aggregate (it says where to look), then the most evidence; when only
/// a metric's aggregate failed, its dimension with the most evidence whose
/// effect is beyond tolerance, if any.
fn worst_track(tracks: &[Track], assessed: &[Assessment], failing: &[bool]) -> Option<usize> {
    let score = |i: usize| {
        let dimension = tracks[i].dimension.is_some() && failing[i];
        (
            (failing[i], assessed[i].beyond_tolerance, dimension),
            1.0 / tracks[i].p_value().max(1e-300),
        )
    };
    let worst = (0..tracks.len()).max_by(|&a, &b| {
        let (ka, ea) = score(a);
        let (kb, eb) = score(b);
        ka.cmp(&kb).then(ea.total_cmp(&eb))
    })?;
    if tracks[worst].dimension.is_some() || !failing[worst] {
        return Some(worst);
    }
    // The metric as a whole failed before any one dimension did: name the
    // dimension of that metric whose own evidence is strongest and whose
    // effect is beyond tolerance, as the reason should say which endpoint.
    let evidence = |i: usize| 1.0 / tracks[i].p_value().max(1e-300);
    (0..tracks.len())
        .filter(|&i| {
            tracks[i].metric == tracks[worst].metric
                && tracks[i].dimension.is_some()
                && assessed[i].beyond_tolerance
        })
        .max_by(|&a, &b| evidence(a).total_cmp(&evidence(b)))
        .or(Some(worst))
}

fn dimension_values(labels: &Labels) -> String {
    labels.iter().map(|(_, v)| v).collect::<Vec<_>>().join(" ")
}

fn failing_names(assessed: &[Assessment], failing: &[bool]) -> String {
    assessed
        .iter()
        .zip(failing)
        .filter(|(_, &f)| f)
        .map(|(a, _)| match &a.result.dimension {
            Some(d) => format!("{} ({d})", a.result.name),
            None => a.result.name.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn humantime_short(secs: f64) -> String {
    let s = secs.round() as u64;
    if s.is_multiple_of(3600) && s > 0 {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) && s > 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests;

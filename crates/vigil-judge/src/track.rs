//! One metric in one dimension (or as a whole): the evidence gathered slice
//! by slice, and what it says now.

use std::fmt::{self, Write as _};

use vigil_core::metric::DISTRIBUTION_SCALE;
use vigil_core::store::SliceData;
use vigil_core::{
    Direction, Effect, Labels, Method, MetricKind, MetricResult, MetricSpec, MetricStatus,
};
use vigil_stats::mann_whitney::{mann_whitney, Alternative};
use vigil_stats::sequential::counts::{ErrorRateTest, ShareAlternative};
use vigil_stats::sequential::cumulative::{
    coarse_run, quantiles_of_runs, CoarsePair, CumulativeHistogram,
};
use vigil_stats::sequential::proportion::proportion_cs;
use vigil_stats::sequential::quantile::{
    self, FixedQuantileRanks, QuantileBands, QuantileComparison, QuantileDecision, ShiftRule,
};
use vigil_stats::sequential::rank_shift::RankShiftTest;
use vigil_stats::sequential::{EProcess, Evidence};
use vigil_stats::{hodges_lehmann, normal, BucketCounts};

use crate::JudgeError;

/// The quantile directions a metric's direction asks to test.
fn directions(d: Direction) -> &'static [quantile::Direction] {
    match d {
        Direction::Increase => &[quantile::Direction::Increase],
        Direction::Decrease => &[quantile::Direction::Decrease],
        Direction::Either => &[quantile::Direction::Increase, quantile::Direction::Decrease],
    }
}

/// Cumulative data of one arm since the analysis started (or over the
/// recent slices).
#[derive(Debug, Clone)]
pub(crate) enum Cumulative {
    Distribution(CumulativeHistogram),
    Counts { requests: u64, errors: u64 },
}

impl Cumulative {
    /// Empty; a distribution's buckets merge `2^coarsen` of the store's.
    fn new(kind: MetricKind, coarsen: u32) -> Self {
        if kind.is_distribution() {
            Cumulative::Distribution(CumulativeHistogram::coarser(coarsen))
        } else {
            Cumulative::Counts {
                requests: 0,
                errors: 0,
            }
        }
    }

    fn add(&mut self, data: &SliceData) {
        match (self, data) {
            (Cumulative::Distribution(h), SliceData::Distribution(s)) => h.add(s),
            (
                Cumulative::Counts { requests, errors },
                SliceData::Counts {
                    requests: r,
                    errors: e,
                },
            ) => {
                *requests += r;
                *errors += e;
            }
            _ => {}
        }
    }

    /// Samples (requests for counts).
    pub fn n(&self) -> u64 {
        match self {
            Cumulative::Distribution(h) => h.len(),
            Cumulative::Counts { requests, .. } => *requests,
        }
    }

    fn counts(&self) -> (u64, u64) {
        match self {
            Cumulative::Counts { requests, errors } => (*requests, *errors),
            Cumulative::Distribution(_) => (0, 0),
        }
    }

    fn histogram(&self) -> Option<&CumulativeHistogram> {
        match self {
            Cumulative::Distribution(h) => Some(h),
            Cumulative::Counts { .. } => None,
        }
    }
}

/// Bits of the store's bucket index merged in the sequential method's
/// cumulative arms and recent view: 128 buckets per octave, each at most
/// 0.78% wide, instead of the store's 1,024. What the sequential method
/// reads from these are confidence bounds on quantiles, taken at a
/// bucket's low (lower bounds) or high (upper bounds), so they stay valid
/// and widen by at most a bucket; and the point estimates in reasons,
/// which move by at most half a bucket. Its rollback evidence (the rank
/// tests) reads the store's slices at full resolution. A tick adds each
/// sample of a slice to an arm; at the store's resolution nearly every
/// sample touches a counter (a cache line) of its own, and that was about
/// 40% of a tick (docs/BENCHMARKS.md). The fixed-horizon and Kayenta
/// methods keep the store's resolution: their Mann-Whitney and
/// Hodges-Lehmann read the whole arms and would see the merged buckets as
/// ties.
const SEQUENTIAL_COARSEN_BITS: u32 = 3;

/// Quantiles from here into the tail get a rank test of the tail beyond
/// them (a rank test of the whole distribution cannot see the slowest
/// 1-2%); below it, one rank test covers the body: more powerful than a
/// median test for the shifts that move p50.
const TAIL_QUANTILE: f64 = 0.9;

/// Slices kept for the "recent" view a reason reports (one minute of 10 s
/// slices): the cumulative view dilutes a regression that began mid-analysis.
const RECENT_SLICES: usize = 6;
/// Samples (requests) each arm needs in the recent view before it is used.
const RECENT_MIN_SAMPLES: u64 = 30;

/// Per-slice summary points, the time series Kayenta compares.
#[derive(Debug, Clone, Default)]
pub(crate) struct Points {
    pub canary: Vec<f64>,
    pub baseline: Vec<f64>,
}

/// What one arm's slice added to the recent view.
#[derive(Debug, Clone, Copy)]
enum RecentPart {
    /// Nothing (the arm had no data in the slice).
    None,
    /// A distribution: this many pairs of [`Recent::pairs`].
    Pairs(usize),
    Counts {
        requests: u64,
        errors: u64,
    },
}

/// The latest slices of each arm, for the recent view: a distribution
/// slice's coarse (bucket index, count) pairs back to back in one ring,
/// which takes the newest slice's at its back and gives the oldest's up at
/// its front, so a tick neither allocates a slice to keep nor frees one it
/// read a minute ago (the allocator's work on that cold memory was 6% of
/// a judge tick, docs/BENCHMARKS.md).
#[derive(Debug, Clone, Default)]
struct Recent {
    /// Bits of the store's bucket index the pairs merge: the track's
    /// arms merge as many (`SEQUENTIAL_COARSEN_BITS` or 0).
    coarsen: u32,
    /// Per slice, oldest first: (canary, baseline).
    slices: std::collections::VecDeque<(RecentPart, RecentPart)>,
    /// The distribution slices' pairs, oldest first, as
    /// [`coarse_run`] gives them: in the track's coarse buckets, 4 bytes
    /// each (a tick reads them cold; the store's `(u32, u64)` pairs took
    /// three times the bytes for about 1.3 times the pairs).
    pairs: std::collections::VecDeque<CoarsePair>,
}

/// One arm's pairs of a recent slice, in one or two pieces (the ring may
/// wrap inside them).
type ArmPairs<'a> = [&'a [CoarsePair]; 2];

/// Pairs a part holds in the ring.
fn pairs_of(part: RecentPart) -> usize {
    match part {
        RecentPart::Pairs(n) => n,
        _ => 0,
    }
}

impl Recent {
    fn new(coarsen: u32) -> Self {
        Self {
            coarsen,
            ..Self::default()
        }
    }

    fn part(&mut self, data: Option<&SliceData>) -> RecentPart {
        match data {
            None => RecentPart::None,
            Some(SliceData::Distribution(h)) => {
                let pairs = &mut self.pairs;
                RecentPart::Pairs(coarse_run(self.coarsen, h.index_counts(), |p| {
                    pairs.push_back(p);
                }))
            }
            Some(SliceData::Counts { requests, errors }) => RecentPart::Counts {
                requests: *requests,
                errors: *errors,
            },
        }
    }

    fn push(&mut self, canary: Option<&SliceData>, baseline: Option<&SliceData>) {
        let c = self.part(canary);
        let b = self.part(baseline);
        self.slices.push_back((c, b));
    }

    fn len(&self) -> usize {
        self.slices.len()
    }

    /// The `n` pairs from position `at` of the ring, in its two pieces.
    fn pieces(&self, at: usize, n: usize) -> ArmPairs<'_> {
        let (front, back) = self.pairs.as_slices();
        let end = (at + n).min(self.pairs.len());
        let split = front.len();
        [
            front.get(at.min(split)..end.min(split)).unwrap_or_default(),
            back.get(at.max(split) - split..end.max(split) - split)
                .unwrap_or_default(),
        ]
    }

    /// Each slice's pairs of each arm (canary, baseline), oldest first.
    fn iter(&self) -> impl Iterator<Item = [ArmPairs<'_>; 2]> + Clone + '_ {
        let mut at = 0;
        self.slices.iter().map(move |&(c, b)| {
            let (nc, nb) = (pairs_of(c), pairs_of(b));
            let arms = [self.pieces(at, nc), self.pieces(at + nc, nb)];
            at += nc + nb;
            arms
        })
    }

    /// Drops the oldest slice.
    fn pop_front(&mut self) {
        if let Some((c, b)) = self.slices.pop_front() {
            let n = (pairs_of(c) + pairs_of(b)).min(self.pairs.len());
            self.pairs.drain(..n);
        }
    }
}

/// The fixed-quantile confidence bands of a distribution track (sequential
/// method): one set of bounds per quantile and arm, judged in each tested
/// direction.
#[derive(Debug, Clone)]
struct Bands {
    bounds: QuantileBands,
    /// One rule per tested direction.
    rules: Vec<ShiftRule>,
    /// The bands' own arms once they differ from the track's: the bands take
    /// only slices in which both arms have data, the track every slice.
    /// `None` while every slice fed had both.
    paired: Option<(CumulativeHistogram, CumulativeHistogram)>,
    /// Comparisons per direction and quantile on the data fed so far,
    /// when `fresh`; otherwise stale, their vectors kept for the next
    /// (a tick would otherwise free and allocate them per track).
    latest: Vec<Vec<QuantileComparison>>,
    /// Whether `latest` is of the data fed so far.
    fresh: bool,
}

/// Working room of [`Track::recent_quantiles`]: the dense coarse counts,
/// and each arm's quantiles.
#[derive(Debug, Default)]
struct ViewScratch {
    dense: Vec<u64>,
    canary: Vec<Option<u64>>,
    baseline: Vec<Option<u64>>,
}

/// Evidence kept for one track.
#[derive(Debug, Clone)]
pub(crate) struct Track {
    pub metric: usize,
    pub dimension: Option<Labels>,
    pub canary: Cumulative,
    pub baseline: Cumulative,
    /// Rank tests: of the body of the distribution (any quantile below the
    /// tail), one per tested direction, and of the tail beyond each tail
    /// quantile.
    shift: Vec<RankShiftTest>,
    bands: Option<Bands>,
    errors: Option<ErrorRateTest>,
    /// Running maximum of the track's mean e-value (its anytime p-value).
    evidence: Evidence,
    /// One point per slice and arm (Kayenta method; empty for the others,
    /// which do not read them).
    pub points: Points,
    keep_points: bool,
    /// Text of the reasons that does not change with the data: the
    /// tolerance, and the name of each spec quantile (in spec order) or of
    /// the error rate.
    tolerance_text: String,
    names: Vec<String>,
    /// The latest slices of each arm, for the recent view (read from them
    /// when assessed: summing them into a histogram per arm, adding each
    /// slice and taking out the one that leaves, was a fifth of a tick).
    recent: Recent,
    /// Warm-started boundaries of the SLO bound (SLO mode, distributions).
    slo_ranks: Option<FixedQuantileRanks>,
    /// The standing of the data fed so far (a function of the track's
    /// state alone: the spec and judging parameters never change), until
    /// the next slice; its result is the latest report's.
    assessed: Option<Standing>,
}

/// An [`Assessment`] without its result, which the report holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Standing {
    e_value: f64,
    beyond_tolerance: bool,
    within_tolerance: bool,
    failed: bool,
}

/// What a track says now.
#[derive(Debug, Clone)]
pub(crate) struct Assessment {
    pub result: MetricResult,
    /// Evidence against "within tolerance" (sequential; 1 otherwise).
    pub e_value: f64,
    /// Whether the effect itself is beyond tolerance (point estimate), the
    /// gate a rejection must also pass.
    pub beyond_tolerance: bool,
    /// Whether the canary is confidently within tolerance.
    pub within_tolerance: bool,
    /// Whether a non-sequential method (or an SLO bound) says it failed.
    pub failed: bool,
}

/// How a track is judged: the analysis-wide parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Judging {
    pub method: Method,
    pub alpha: f64,
    pub slo_mode: bool,
}

impl Track {
    pub fn new(
        metric: usize,
        spec: &MetricSpec,
        dimension: Option<Labels>,
        how: Judging,
    ) -> Result<Self, JudgeError> {
        let tol_abs_units = spec.tolerance_abs * DISTRIBUTION_SCALE;
        let mut shift = Vec::new();
        let mut bands = None;
        let mut errors = None;
        if how.method == Method::Sequential && !how.slo_mode {
            if spec.kind.is_distribution() {
                let mut rules = Vec::new();
                for &d in directions(spec.direction) {
                    let mut body = false;
                    for &q in &spec.quantiles {
                        // For `decrease` the bad tail is the low one.
                        let q_tail = if d == quantile::Direction::Decrease {
                            1.0 - q
                        } else {
                            q
                        };
                        if q_tail < TAIL_QUANTILE {
                            body = true;
                            continue;
                        }
                        shift.push(RankShiftTest::tail(
                            q_tail,
                            d,
                            spec.tolerance,
                            tol_abs_units,
                        )?);
                    }
                    if body {
                        shift.push(RankShiftTest::new(d, spec.tolerance, tol_abs_units)?);
                    }
                    rules.push(ShiftRule::new(spec.tolerance, tol_abs_units, d)?);
                }
                bands = Some(Bands {
                    bounds: QuantileBands::new(&spec.quantiles, how.alpha)?,
                    rules,
                    paired: None,
                    latest: Vec::new(),
                    fresh: false,
                });
            } else {
                let alternative = if spec.direction == Direction::Either && spec.tolerance == 0.0 {
                    ShareAlternative::Differs
                } else {
                    ShareAlternative::Exceeds
                };
                errors = Some(ErrorRateTest::new(spec.tolerance, alternative)?);
            }
        }
        let coarsen = if how.method == Method::Sequential {
            SEQUENTIAL_COARSEN_BITS
        } else {
            0
        };
        Ok(Self {
            metric,
            dimension,
            canary: Cumulative::new(spec.kind, coarsen),
            baseline: Cumulative::new(spec.kind, coarsen),
            shift,
            bands,
            errors,
            evidence: Evidence::default(),
            points: Points::default(),
            keep_points: how.method == Method::Kayenta,
            tolerance_text: tolerance_text(spec),
            names: if spec.kind.is_distribution() {
                spec.quantiles.iter().map(|&q| quantile_name(q)).collect()
            } else {
                vec![error_rate_name(spec)]
            },
            recent: Recent::new(coarsen),
            slo_ranks: None,
            assessed: None,
        })
    }

    /// Feeds one complete time slice of each arm (either may be absent).
    pub fn feed(
        &mut self,
        spec: &MetricSpec,
        canary: Option<SliceData>,
        baseline: Option<SliceData>,
    ) {
        self.assessed = None;
        if let Some(c) = &canary {
            self.canary.add(c);
            if let Some(p) = self.keep_points.then(|| point(spec, c)).flatten() {
                self.points.canary.push(p);
            }
        }
        if let Some(b) = &baseline {
            self.baseline.add(b);
            if let Some(p) = self.keep_points.then(|| point(spec, b)).flatten() {
                self.points.baseline.push(p);
            }
        }
        if let Some(bands) = &mut self.bands {
            bands.fresh = false;
            let both = matches!(
                (&canary, &baseline),
                (
                    Some(SliceData::Distribution(_)),
                    Some(SliceData::Distribution(_))
                )
            );
            match (&mut bands.paired, both) {
                (Some((pc, pb)), true) => {
                    if let (Some(SliceData::Distribution(c)), Some(SliceData::Distribution(b))) =
                        (&canary, &baseline)
                    {
                        pc.add(c);
                        pb.add(b);
                    }
                }
                (None, false) if canary.is_some() || baseline.is_some() => {
                    // The arms part: the bands keep what they had before.
                    let mut pc = self.canary.histogram().cloned().unwrap_or_default();
                    let mut pb = self.baseline.histogram().cloned().unwrap_or_default();
                    if let Some(SliceData::Distribution(c)) = &canary {
                        let _ = pc.subtract(c);
                    }
                    if let Some(SliceData::Distribution(b)) = &baseline {
                        let _ = pb.subtract(b);
                    }
                    bands.paired = Some((pc, pb));
                }
                _ => {}
            }
        }
        match (&canary, &baseline) {
            (Some(SliceData::Distribution(c)), Some(SliceData::Distribution(b))) => {
                RankShiftTest::update_all(&mut self.shift, c, b);
            }
            (
                Some(SliceData::Counts {
                    requests: rc,
                    errors: ec,
                }),
                Some(SliceData::Counts {
                    requests: rb,
                    errors: eb,
                }),
            ) => {
                if let Some(t) = &mut self.errors {
                    t.update(*rc, *ec, *rb, *eb);
                }
            }
            _ => {}
        }
        let e = self.e_value();
        self.evidence.set(e.max(f64::MIN_POSITIVE).ln());
        self.recent.push(canary.as_ref(), baseline.as_ref());
        if self.recent.len() > RECENT_SLICES {
            self.recent.pop_front();
        }
    }

    /// The bands' comparisons on the data fed so far, per direction and
    /// quantile (computed once per change of the data).
    fn comparisons(&mut self) -> &[Vec<QuantileComparison>] {
        let Some(bands) = &mut self.bands else {
            return &[];
        };
        if !bands.fresh {
            let (c, b) = match &bands.paired {
                Some((c, b)) => (c, b),
                None => match (self.canary.histogram(), self.baseline.histogram()) {
                    (Some(c), Some(b)) => (c, b),
                    _ => return &[],
                },
            };
            bands.latest.resize_with(bands.rules.len(), Vec::new);
            for decisions in &mut bands.latest {
                decisions.clear();
            }
            for (c, b) in bands.bounds.bounds(c, b) {
                for (rule, decisions) in bands.rules.iter().zip(&mut bands.latest) {
                    decisions.push(rule.decide(c, b));
                }
            }
            bands.fresh = true;
        }
        &bands.latest
    }

    /// Reads the memory feeding a slice adds to: the arms' counters (the
    /// bands' own too, once they have them); and what the tick reads
    /// after: the recent view's slices and the sequential tests' state
    /// (the last results' strings are the latest report's, which
    /// `Analysis::touch` reads). Returns a value made of it (for
    /// `std::hint::black_box`).
    pub fn touch(&self) -> u64 {
        let arm = |c: &Cumulative| match c {
            Cumulative::Distribution(h) => h.touch(),
            Cumulative::Counts { requests, .. } => *requests,
        };
        let mut acc = arm(&self.canary) ^ arm(&self.baseline);
        if let Some(bands) = &self.bands {
            acc ^= bands.bounds.touch();
            if let Some((c, b)) = &bands.paired {
                acc ^= c.touch() ^ b.touch();
            }
        }
        for t in &self.shift {
            acc ^= t.touch();
        }
        if let Some(t) = &self.errors {
            acc ^= t.touch();
        }
        let (front, back) = self.recent.pairs.as_slices();
        for pairs in [front, back] {
            // One pair per cache line.
            for &(i, n) in pairs.iter().step_by(16) {
                acc ^= u64::from(i) ^ u64::from(n);
            }
        }
        acc
    }

    /// The track's current e-value: the mean of its sequential tests' (1
    /// when it has none). An average of e-processes on the same slices is
    /// an e-process.
    pub fn e_value(&self) -> f64 {
        if let Some(t) = &self.errors {
            return t.e_value();
        }
        if self.shift.is_empty() {
            return 1.0;
        }
        self.shift.iter().map(EProcess::e_value).sum::<f64>() / self.shift.len() as f64
    }

    /// Anytime-valid p-value of the track: 1 / its largest mean e-value.
    pub fn p_value(&self) -> f64 {
        self.evidence.p_value()
    }

    /// What the track says now. While no slice came in since the last
    /// answer (as when an analysis is ticked more often than slices
    /// complete), that answer again: its standing kept by
    /// [`Track::keep_assessment`], its result a copy of `last`, the result
    /// the latest report holds for this track. The report owns the result
    /// rather than a copy of the track's: a copy of every metric's strings
    /// per tick, and freeing the old ones, was 1-2% of a tick.
    pub fn take_assessment(
        &mut self,
        spec: &MetricSpec,
        how: Judging,
        slo_alpha: f64,
        last: Option<&MetricResult>,
    ) -> Assessment {
        match (self.assessed, last) {
            (Some(s), Some(result)) if result.name == spec.name.as_str() => Assessment {
                result: result.clone(),
                e_value: s.e_value,
                beyond_tolerance: s.beyond_tolerance,
                within_tolerance: s.within_tolerance,
                failed: s.failed,
            },
            _ => self.assess_now(spec, how, slo_alpha),
        }
    }

    /// Keeps the standing of `a`, taken with [`Track::take_assessment`]
    /// since the last slice, as what the track says until the next one
    /// (with the result the report then holds).
    pub fn keep_assessment(&mut self, a: &Assessment) {
        self.assessed = Some(Standing {
            e_value: a.e_value,
            beyond_tolerance: a.beyond_tolerance,
            within_tolerance: a.within_tolerance,
            failed: a.failed,
        });
    }

    fn assess_now(&mut self, spec: &MetricSpec, how: Judging, slo_alpha: f64) -> Assessment {
        let mut a = if how.slo_mode {
            self.assess_slo(spec, slo_alpha)
        } else if spec.kind.is_distribution() {
            self.assess_distribution(spec, how)
        } else {
            self.assess_errors(spec, how)
        };
        a.result.dimension = self.dimension.as_ref().map(ToString::to_string);
        a
    }

    fn base_result(&self, spec: &MetricSpec) -> MetricResult {
        MetricResult {
            name: spec.name.to_string(),
            kind: spec.kind,
            dimension: None,
            status: MetricStatus::Pending,
            critical: spec.critical,
            e_value: None,
            p_value: None,
            statistic: None,
            effect: None,
            n_canary: self.canary.n(),
            n_baseline: self.baseline.n(),
            summary: String::new(),
        }
    }

    /// Counts: the error rates (canary, baseline) of the newest slices in
    /// which each arm has [`RECENT_MIN_SAMPLES`] requests (within the
    /// recent view). Once a track has rejected, this is what a person
    /// wants quoted: an error rate that jumps from 0.1% to 15% is caught
    /// within a slice or two, when the last minute still holds 40-50 s
    /// from before the jump and would say 2-4%.
    fn newest_rates(&self) -> Option<(f64, f64)> {
        let mut sum = [0u64; 4];
        for (c, b) in self.recent.slices.iter().rev() {
            for (at, part) in [(0, c), (2, b)] {
                if let RecentPart::Counts { requests, errors } = part {
                    sum[at] = sum[at].saturating_add(*requests);
                    sum[at + 1] = sum[at + 1].saturating_add(*errors);
                }
            }
            if sum[0] >= RECENT_MIN_SAMPLES && sum[2] >= RECENT_MIN_SAMPLES {
                return Some((sum[1] as f64 / sum[0] as f64, sum[3] as f64 / sum[2] as f64));
            }
        }
        None
    }

    /// Counts: the newest rates ([`Self::newest_rates`]) when they are
    /// beyond tolerance. A rollback reason quotes them: the verdict is
    /// about the canary now, and an endpoint named because the metric as a
    /// whole rejected has not rejected on its own, so its own effect is
    /// still the last minute's, which a change one or two slices old
    /// dilutes (0.1% -> 15% read as 1%).
    pub fn newest_rates_beyond(&self, spec: &MetricSpec) -> Option<(f64, f64)> {
        self.newest_rates()
            .filter(|&(rc, rb)| rates_beyond(spec, rc, rb))
    }

    /// The requests and errors of each arm (canary, baseline) in the
    /// recent view.
    fn recent_counts(&self) -> [(u64, u64); 2] {
        let mut sum = [(0u64, 0u64); 2];
        for (c, b) in &self.recent.slices {
            for (at, part) in [(0, c), (1, b)] {
                if let RecentPart::Counts { requests, errors } = part {
                    sum[at].0 = sum[at].0.saturating_add(*requests);
                    sum[at].1 = sum[at].1.saturating_add(*errors);
                }
            }
        }
        sum
    }

    /// Distributions: the quantiles `qs` of each arm (canary, baseline) in
    /// the recent view, as the arms' coarse buckets read them, when both
    /// arms have [`RECENT_MIN_SAMPLES`] there: what a person wants to hear
    /// about "how much worse" once a regression started mid-analysis.
    fn recent_quantiles(&self, qs: &[f64]) -> Option<Vec<(Option<u64>, Option<u64>)>> {
        thread_local! {
            static SCRATCH: std::cell::RefCell<ViewScratch> = std::cell::RefCell::default();
        }
        let read = |scratch: &mut ViewScratch| {
            let ViewScratch {
                dense,
                canary,
                baseline,
            } = scratch;
            let arm = |k: usize| self.recent.iter().flat_map(move |arms| arms[k]);
            let n_c = quantiles_of_runs(self.recent.coarsen, arm(0), qs, dense, canary);
            if n_c < RECENT_MIN_SAMPLES {
                return None;
            }
            let n_b = quantiles_of_runs(self.recent.coarsen, arm(1), qs, dense, baseline);
            (n_b >= RECENT_MIN_SAMPLES).then(|| {
                canary
                    .iter()
                    .copied()
                    .zip(baseline.iter().copied())
                    .collect()
            })
        };
        // The thread's scratch; a fresh one if it is taken (not reachable)
        // or gone (the thread is ending).
        match SCRATCH.try_with(|cell| cell.try_borrow_mut().ok().map(|mut s| read(&mut s))) {
            Ok(Some(view)) => view,
            _ => read(&mut ViewScratch::default()),
        }
    }

    fn assess_distribution(&mut self, spec: &MetricSpec, how: Judging) -> Assessment {
        // Each band's comparisons cost a bound computation per quantile and
        // arm: computed once per change of the data, for both the effect and
        // the decision.
        self.comparisons();
        let comparisons = self
            .bands
            .as_ref()
            .filter(|b| b.fresh)
            .map_or(&[][..], |b| b.latest.as_slice());
        let mut r = self.base_result(spec);
        let (Some(c_all), Some(b_all)) = (self.canary.histogram(), self.baseline.histogram())
        else {
            return pending(r);
        };
        // The last minute's quantiles, when both arms have enough samples
        // in it; else everything since the start.
        let view = self.recent_quantiles(&spec.quantiles).unwrap_or_else(|| {
            spec.quantiles
                .iter()
                .map(|&q| (c_all.quantile(q), b_all.quantile(q)))
                .collect()
        });
        // The quantile whose change is worst in the bad direction.
        // (badness, q, canary, baseline, index of q in the spec)
        let mut worst: Option<(f64, f64, f64, f64, usize)> = None;
        for (k, (&q, &quantiles)) in spec.quantiles.iter().zip(&view).enumerate() {
            let (Some(cq), Some(bq)) = quantiles else {
                continue;
            };
            let (cq, bq) = (
                cq as f64 / DISTRIBUTION_SCALE,
                bq as f64 / DISTRIBUTION_SCALE,
            );
            let rel = if bq > 0.0 { cq / bq - 1.0 } else { 0.0 };
            let badness = match spec.direction {
                Direction::Increase => rel,
                Direction::Decrease => -rel,
                Direction::Either => rel.abs(),
            };
            if worst.is_none_or(|w| badness > w.0) {
                worst = Some((badness, q, cq, bq, k));
            }
        }
        let Some((_, q, cq, bq, k)) = worst else {
            return pending(r);
        };
        let allowed = |bq: f64| spec.tolerance * bq + spec.tolerance_abs;
        let beyond = match spec.direction {
            Direction::Increase => cq - bq > allowed(bq),
            Direction::Decrease => bq - cq > allowed(bq),
            Direction::Either => (cq - bq).abs() > allowed(bq),
        };
        let band = comparisons
            .first()
            .and_then(|c| c.iter().find(|cmp| cmp.canary.quantile == q))
            .copied();
        r.effect = Some(Effect {
            what: self.names[k].clone(),
            canary: Some(cq),
            baseline: Some(bq),
            relative: (bq > 0.0).then(|| cq / bq - 1.0),
            canary_low: band.map(|cmp| cmp.canary.low as f64 / DISTRIBUTION_SCALE),
            canary_high: band
                .and_then(|cmp| cmp.canary.high)
                .map(|h| h as f64 / DISTRIBUTION_SCALE),
        });
        let mut failed = false;
        let within = match how.method {
            Method::Sequential => {
                r.e_value = Some(self.e_value());
                r.p_value = Some(self.p_value());
                !comparisons.is_empty()
                    && comparisons
                        .iter()
                        .flatten()
                        .all(|cmp| cmp.decision == QuantileDecision::WithinTolerance)
            }
            Method::FixedHorizon | Method::Kayenta => {
                let alternative = match spec.direction {
                    Direction::Increase => Alternative::Greater,
                    Direction::Decrease => Alternative::Less,
                    Direction::Either => Alternative::TwoSided,
                };
                if let Ok(mw) = mann_whitney(c_all, b_all) {
                    let p = mw.p.get(alternative);
                    r.p_value = Some(p);
                    r.statistic = Some(mw.z);
                    if how.method == Method::FixedHorizon {
                        let shift_beyond = hodges_lehmann(c_all, b_all, 1.0 - how.alpha)
                            .ok()
                            .and_then(|hl| hl.relative_shift)
                            .is_some_and(|rel| match spec.direction {
                                Direction::Increase => rel > spec.tolerance,
                                Direction::Decrease => -rel > spec.tolerance,
                                Direction::Either => rel.abs() > spec.tolerance,
                            });
                        failed = p <= how.alpha && shift_beyond;
                    }
                }
                false
            }
        };
        r.summary = format!(
            "{} {} is {} in the canary ({} vs {}), tolerance {}",
            self.names[k],
            spec.name,
            change_text(cq, bq, spec.kind),
            value_text(cq, spec.kind),
            value_text(bq, spec.kind),
            self.tolerance_text
        );
        Assessment {
            result: r,
            e_value: self.e_value(),
            beyond_tolerance: beyond,
            within_tolerance: within,
            failed,
        }
    }

    fn assess_errors(&self, spec: &MetricSpec, how: Judging) -> Assessment {
        let mut r = self.base_result(spec);
        let (nc, ec) = self.canary.counts();
        let (nb, eb) = self.baseline.counts();
        if nc == 0 || nb == 0 {
            return pending(r);
        }
        let beyond_at = |rc: f64, rb: f64| rates_beyond(spec, rc, rb);
        let (all_c, all_b) = (ec as f64 / nc as f64, eb as f64 / nb as f64);
        // The last minute's rates, when both arms have enough requests in
        // it; else everything since the start.
        let [recent_c, recent_b] = self.recent_counts();
        let (view_c, view_b) =
            if recent_c.0 >= RECENT_MIN_SAMPLES && recent_b.0 >= RECENT_MIN_SAMPLES {
                (recent_c, recent_b)
            } else {
                ((nc, ec), (nb, eb))
            };
        let rate = |(n, e): (u64, u64)| {
            if n == 0 {
                0.0
            } else {
                e as f64 / n as f64
            }
        };
        // Once this track alone rejects (sequential), the newest rates:
        // the state the verdict is about. Before, the last minute's, which
        // a single noisy slice moves less.
        let rejected = how.method == Method::Sequential && self.e_value() >= 1.0 / how.alpha;
        let (rc, rb) = rejected
            .then(|| self.newest_rates())
            .flatten()
            .unwrap_or_else(|| (rate(view_c), rate(view_b)));
        let beyond = beyond_at(all_c, all_b) || beyond_at(rc, rb);
        let half = how.alpha / 2.0;
        let cs_c = proportion_cs(ec, nc, half).ok();
        let cs_b = proportion_cs(eb, nb, half).ok();
        r.effect = Some(Effect {
            what: "error rate".to_owned(),
            canary: Some(rc),
            baseline: Some(rb),
            relative: (rb > 0.0).then(|| rc / rb - 1.0),
            canary_low: cs_c.map(|c| c.0),
            canary_high: cs_c.map(|c| c.1),
        });
        let mut failed = false;
        let within = match how.method {
            Method::Sequential => {
                r.e_value = Some(self.e_value());
                r.p_value = Some(self.p_value());
                match (cs_c, cs_b, spec.direction) {
                    (Some(c), Some(b), Direction::Increase) => {
                        c.1 <= (1.0 + spec.tolerance) * b.0 + spec.tolerance_abs
                    }
                    (Some(c), Some(b), Direction::Decrease) => {
                        c.0 >= b.1 / (1.0 + spec.tolerance) - spec.tolerance_abs
                    }
                    (Some(c), Some(b), Direction::Either) => {
                        c.1 <= (1.0 + spec.tolerance) * b.0 + spec.tolerance_abs
                            && c.0 >= b.1 / (1.0 + spec.tolerance) - spec.tolerance_abs
                    }
                    _ => false,
                }
            }
            Method::FixedHorizon | Method::Kayenta => {
                // Two-proportion z-test with pooled variance, on the
                // cumulative counts: what is wired up by hand.
                let pooled = (ec + eb) as f64 / (nc + nb) as f64;
                let se = (pooled * (1.0 - pooled) * (1.0 / nc as f64 + 1.0 / nb as f64)).sqrt();
                if se > 0.0 {
                    let z = (all_c - all_b) / se;
                    let p = match spec.direction {
                        Direction::Increase => normal::sf(z),
                        Direction::Decrease => normal::cdf(z),
                        Direction::Either => (2.0 * normal::sf(z.abs())).min(1.0),
                    };
                    r.p_value = Some(p);
                    r.statistic = Some(z);
                    failed = how.method == Method::FixedHorizon && p <= how.alpha && beyond;
                }
                false
            }
        };
        r.summary = format!(
            "{} is {} in the canary vs {} in the baseline, tolerance {}",
            self.names[0],
            percent(rc),
            percent(rb),
            self.tolerance_text
        );
        Assessment {
            result: r,
            e_value: self.e_value(),
            beyond_tolerance: beyond,
            within_tolerance: within,
            failed,
        }
    }

    /// SLO mode: the canary against an absolute target, with a time-uniform
    /// bound at `alpha` (already split across the SLO metrics).
    fn assess_slo(&mut self, spec: &MetricSpec, alpha: f64) -> Assessment {
        let mut r = self.base_result(spec);
        let Some(slo) = spec.slo else {
            return pending(r);
        };
        let (value, low, high) = match &self.canary {
            Cumulative::Distribution(h) => {
                let q = slo.quantile.unwrap_or(0.99);
                if h.is_empty() {
                    return pending(r);
                }
                let ranks = self
                    .slo_ranks
                    .get_or_insert_with(|| FixedQuantileRanks::new(q, alpha));
                let bound = ranks.bound(h);
                let s = DISTRIBUTION_SCALE;
                (
                    bound.estimate.map_or(0.0, |v| v as f64 / s),
                    bound.low as f64 / s,
                    bound.high.map_or(f64::INFINITY, |v| v as f64 / s),
                )
            }
            Cumulative::Counts { requests, errors } => {
                if *requests == 0 {
                    return pending(r);
                }
                let (lo, hi) = proportion_cs(*errors, *requests, alpha).unwrap_or((0.0, 1.0));
                (*errors as f64 / *requests as f64, lo, hi)
            }
        };
        let what = match slo.quantile {
            Some(q) => quantile_name(q),
            None => "error rate".to_owned(),
        };
        r.effect = Some(Effect {
            what: what.clone(),
            canary: Some(value),
            baseline: Some(slo.max),
            relative: (slo.max > 0.0).then(|| value / slo.max - 1.0),
            canary_low: Some(low),
            canary_high: high.is_finite().then_some(high),
        });
        let failed = low > slo.max;
        let within = high <= slo.max;
        r.summary = format!(
            "{what} of {} is {} (bound {} to {}) against the SLO of {}",
            spec.name,
            value_text(value, spec.kind),
            value_text(low, spec.kind),
            if high.is_finite() {
                value_text(high, spec.kind).to_string()
            } else {
                "unbounded".to_owned()
            },
            value_text(slo.max, spec.kind)
        );
        Assessment {
            result: r,
            e_value: 1.0,
            beyond_tolerance: failed,
            within_tolerance: within,
            failed,
        }
    }
}

/// Whether error rates `rc` (canary) and `rb` (baseline) differ beyond the
/// spec's tolerance in its bad direction.
fn rates_beyond(spec: &MetricSpec, rc: f64, rb: f64) -> bool {
    let allowed = spec.tolerance * rb + spec.tolerance_abs;
    match spec.direction {
        Direction::Decrease => rb - rc > allowed,
        Direction::Either => (rc - rb).abs() > allowed,
        Direction::Increase => rc - rb > allowed,
    }
}

fn pending(mut r: MetricResult) -> Assessment {
    r.summary = format!("{}: no samples yet in one of the arms", r.name);
    Assessment {
        result: r,
        e_value: 1.0,
        beyond_tolerance: false,
        within_tolerance: false,
        failed: false,
    }
}

/// Reads the first byte of each of a result's strings (and so the line
/// their allocator's header is on, which freeing them reads) and returns a
/// value made of them (for `std::hint::black_box`).
pub(crate) fn touch_result(r: &MetricResult) -> u64 {
    first_byte(&r.name)
        ^ first_byte(&r.summary)
        ^ r.dimension.as_deref().map_or(0, first_byte)
        ^ r.effect.as_ref().map_or(0, |e| first_byte(&e.what))
}

/// The first byte of `s` (0 if empty), for the touches above.
pub(crate) fn first_byte(s: &str) -> u64 {
    u64::from(s.as_bytes().first().copied().unwrap_or(0))
}

/// One slice's summary point for Kayenta: the first quantile of the spec
/// for distributions (in the metric's unit), the error rate for counts.
fn point(spec: &MetricSpec, data: &SliceData) -> Option<f64> {
    match data {
        SliceData::Distribution(h) => {
            let q = spec.quantiles.first().copied().unwrap_or(0.5);
            h.quantile(q).map(|v| v as f64 / DISTRIBUTION_SCALE)
        }
        SliceData::Counts { requests, errors } => {
            (*requests > 0).then(|| *errors as f64 / *requests as f64)
        }
    }
}

/// How an error-rate metric is named in sentences: "error rate" for the
/// request events' own metric, "<name> error rate" for any other.
pub(crate) fn error_rate_name(spec: &MetricSpec) -> String {
    if spec.name.as_str() == vigil_core::event::ERROR_RATE_METRIC {
        "error rate".to_owned()
    } else {
        format!("{} error rate", spec.name)
    }
}

/// "p99", "p50", "p99.9".
pub(crate) fn quantile_name(q: f64) -> String {
    let p = format!("{:.3}", q * 100.0);
    let p = p.trim_end_matches('0').trim_end_matches('.');
    format!("p{p}")
}

/// Text written where it is used, by `F`: a reason or summary is built
/// with one allocation rather than one per number in it (a judge tick
/// writes several per analysis).
pub(crate) struct Text<F: Fn(&mut fmt::Formatter<'_>) -> fmt::Result>(pub F);

impl<F: Fn(&mut fmt::Formatter<'_>) -> fmt::Result> fmt::Display for Text<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (self.0)(f)
    }
}

/// A short text formatted on the stack (longer ones are an error).
struct StackText {
    buf: [u8; 40],
    len: usize,
}

impl StackText {
    fn new() -> Self {
        Self {
            buf: [0; 40],
            len: 0,
        }
    }

    fn as_str(&self) -> Result<&str, fmt::Error> {
        std::str::from_utf8(&self.buf[..self.len]).map_err(|_| fmt::Error)
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// `v` with `decimals` decimals, exactly as `format!("{v:.decimals$}")`
/// writes it. The standard library rounds the float's exact value, with
/// a digit generation of its own (about a fifth of what a judge tick spent
/// formatting, docs/BENCHMARKS.md); here, for up to 3 decimals and a
/// scaled value below 1e9, the rounding is that of `v * 10^decimals`
/// unless the product lies within 1e-6 of a half (the product is within
/// 1.2e-7 of the exact value there, so the two round alike), and the
/// digits are an integer's. Anything else goes to the standard library.
pub(crate) fn fixed(v: f64, decimals: usize) -> impl fmt::Display {
    Text(move |f| {
        const POW10: [u64; 4] = [1, 10, 100, 1000];
        if let Some(&scale) = POW10.get(decimals) {
            let x = v.abs() * scale as f64;
            // False for NaN and the infinities.
            if x < 1e9 {
                // Exact: x is below 2^53, and its fraction too.
                let whole = x as u64;
                let fraction = x - whole as f64;
                if (fraction - 0.5).abs() > 1e-6 {
                    let r = whole + u64::from(fraction > 0.5);
                    let sign = if v.is_sign_negative() { "-" } else { "" };
                    return if decimals == 0 {
                        write!(f, "{sign}{r}")
                    } else {
                        write!(f, "{sign}{}.{:0decimals$}", r / scale, r % scale)
                    };
                }
            }
        }
        write!(f, "{v:.decimals$}")
    })
}

/// "120.5 ms", "0.12%", "3.2".
pub(crate) fn value_text(v: f64, kind: MetricKind) -> impl fmt::Display {
    Text(move |f| match kind {
        MetricKind::Latency => write!(f, "{} ms", short(v)),
        MetricKind::ErrorRate => write!(f, "{}", percent(v)),
        MetricKind::Gauge => write!(f, "{}", short(v)),
    })
}

/// A number with at most 3 significant decimals and no trailing zeros.
fn short(v: f64) -> impl fmt::Display {
    Text(move |f| {
        let decimals = if v.abs() >= 100.0 {
            0
        } else if v.abs() >= 1.0 {
            1
        } else {
            3
        };
        let trimmed = |f: &mut fmt::Formatter<'_>, s: &str| {
            f.write_str(if s.contains('.') {
                s.trim_end_matches('0').trim_end_matches('.')
            } else {
                s
            })
        };
        let mut text = StackText::new();
        if write!(text, "{}", fixed(v, decimals)).is_err() {
            // Longer than the stack's room (a huge number): on the heap.
            return trimmed(f, &format!("{v:.decimals$}"));
        }
        trimmed(f, text.as_str()?)
    })
}

/// "1.52%" with enough digits for small rates.
pub(crate) fn percent(rate: f64) -> impl fmt::Display {
    Text(move |f| {
        let p = rate * 100.0;
        if p != 0.0 && p.abs() < 0.1 {
            write!(f, "{}%", fixed(p, 3))
        } else {
            write!(f, "{}%", fixed(p, 1))
        }
    })
}

/// "38% higher", "12% lower", "unchanged".
pub(crate) fn change_text(canary: f64, baseline: f64, kind: MetricKind) -> impl fmt::Display {
    Text(move |f| {
        if baseline <= 0.0 {
            return write!(f, "{} (baseline 0)", value_text(canary, kind));
        }
        let rel = canary / baseline - 1.0;
        if rel.abs() < 0.0005 {
            f.write_str("unchanged")
        } else if rel > 0.0 {
            write!(f, "{}% higher", fixed(rel * 100.0, 0))
        } else {
            write!(f, "{}% lower", fixed(-rel * 100.0, 0))
        }
    })
}

/// "10%", "10% + 5 ms", "0.2 points".
pub(crate) fn tolerance_text(spec: &MetricSpec) -> String {
    let rel = (spec.tolerance > 0.0).then(|| format!("{}%", short(spec.tolerance * 100.0)));
    let abs = (spec.tolerance_abs > 0.0).then(|| match spec.kind {
        MetricKind::ErrorRate => format!("{}-point", short(spec.tolerance_abs * 100.0)),
        _ => value_text(spec.tolerance_abs, spec.kind).to_string(),
    });
    match (rel, abs) {
        (Some(r), Some(a)) => format!("{r} + {a}"),
        (Some(r), None) => r,
        (None, Some(a)) => a,
        (None, None) => "0".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use vigil_core::{AnalysisSpec, SpecFormat};
    use vigil_stats::sequential::quantile::QuantileShiftTest;
    use vigil_stats::SparseHistogram;

    use super::*;

    /// What `track` says now, left with it.
    fn assess(track: &mut Track, metric: &MetricSpec, how: Judging) -> Assessment {
        let a = track.take_assessment(metric, how, how.alpha, None);
        track.keep_assessment(&a);
        a
    }

    /// A slice of `n` pseudo-random values around `centre`.
    fn slice(state: &mut u64, n: usize, centre: u64) -> SliceData {
        let mut h = SparseHistogram::new();
        for _ in 0..n {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            h.record(centre / 2 + *state % centre);
        }
        SliceData::Distribution(h)
    }

    /// A spec of one metric (`metric`, a YAML flow mapping) and the
    /// sequential method at alpha 0.01.
    fn sequential(metric: &str) -> (AnalysisSpec, Judging) {
        let spec = AnalysisSpec::parse(
            &format!(
                "service: s\nbaseline_version: v1\ncanary_version: v2\nmetrics:\n  - {metric}\n"
            ),
            SpecFormat::Yaml,
        )
        .unwrap();
        let how = Judging {
            method: Method::Sequential,
            alpha: 0.01,
            slo_mode: false,
        };
        (spec, how)
    }

    proptest::proptest! {
        /// `fixed` writes what the standard library's `{:.N}` writes: for
        /// any float, and for those a hair from a rounding half.
        #[test]
        fn fixed_writes_as_the_standard_library(
            bits in proptest::num::u64::ANY,
            plain in -2e9..2e9f64,
            half in 0u64..4_000_000,
            ulps in -3i64..=3,
            decimals in 0usize..5,
        ) {
            let scale = 10f64.powi(decimals as i32);
            let near_half = f64::from_bits(
                ((half as f64 + 0.5) / scale).to_bits().saturating_add_signed(ulps),
            );
            let tiny = -(half as f64) * 1e-12;
            for v in [f64::from_bits(bits), plain, plain / 1e6, near_half, -near_half, tiny, -0.0] {
                proptest::prop_assert_eq!(
                    fixed(v, decimals).to_string(),
                    format!("{v:.decimals$}"),
                    "{:e}",
                    v
                );
            }
        }
    }

    #[test]
    fn numbers_read_as_before_in_reasons() {
        let short = |v: f64| short(v).to_string();
        assert_eq!(short(1234.6), "1235");
        assert_eq!(short(84.26), "84.3");
        assert_eq!(short(12.0), "12");
        assert_eq!(short(0.1204), "0.12");
        assert_eq!(short(0.0), "0");
        assert_eq!(short(-0.5), "-0.5");
        assert_eq!(short(f64::NAN), "NaN");
        assert_eq!(short(f64::INFINITY), "inf");
        // Longer than the stack's room: the same digits, from the heap.
        assert_eq!(short(1e300), format!("{:.0}", 1e300));
        assert_eq!(short(-1e300), format!("{:.0}", -1e300));
        assert_eq!(value_text(120.6, MetricKind::Latency).to_string(), "121 ms");
        assert_eq!(value_text(0.4, MetricKind::Gauge).to_string(), "0.4");
        assert_eq!(
            value_text(0.1523, MetricKind::ErrorRate).to_string(),
            "15.2%"
        );
        assert_eq!(percent(0.0005).to_string(), "0.050%");
        assert_eq!(percent(0.0).to_string(), "0.0%");
        let change = |c, b| change_text(c, b, MetricKind::Latency).to_string();
        assert_eq!(change(110.0, 100.0), "10% higher");
        assert_eq!(change(90.0, 100.0), "10% lower");
        assert_eq!(change(100.01, 100.0), "unchanged");
        assert_eq!(change(5.0, 0.0), "5 ms (baseline 0)");
    }

    #[test]
    fn the_recent_view_is_the_sum_of_the_last_slices() {
        // Distributions and counters, with arms missing now and then: the
        // recent view always reads as the sum of the last RECENT_SLICES
        // slices fed, and the ring holds exactly their pairs.
        for metric in [
            "{name: latency, kind: latency, quantiles: [0.5, 0.99]}",
            "{name: errors, kind: error_rate}",
        ] {
            let (spec, how) = sequential(metric);
            let spec = &spec.metrics[0];
            let mut track = Track::new(0, spec, None, how).unwrap();
            let mut state = 0x9E37_79B9_7F4A_7C15;
            let mut fed: Vec<(Option<SliceData>, Option<SliceData>)> = Vec::new();
            for i in 0..40u64 {
                let data = |state: &mut u64, n: usize, centre: u64| {
                    if spec.kind.is_distribution() {
                        slice(state, n, centre)
                    } else {
                        SliceData::Counts {
                            requests: n as u64,
                            errors: *state % 3,
                        }
                    }
                };
                let mut c = (i % 7 != 3).then(|| data(&mut state, 20 + i as usize, 90_000));
                let b = (i % 5 != 2).then(|| data(&mut state, 80, 80_000));
                // Now and then a bucket past u16::MAX (and u32::MAX), which
                // the ring carries in several pairs.
                if let (4, Some(SliceData::Distribution(h))) = (i % 9, &mut c) {
                    h.record_n(90_000, 3 * (1 << 32) + 5);
                }
                fed.push((c.clone(), b.clone()));
                track.feed(spec, c, b);
                let last = &fed[fed.len().saturating_sub(RECENT_SLICES)..];
                let mut canary = Cumulative::new(spec.kind, SEQUENTIAL_COARSEN_BITS);
                let mut baseline = Cumulative::new(spec.kind, SEQUENTIAL_COARSEN_BITS);
                for (c, b) in last {
                    c.iter().for_each(|c| canary.add(c));
                    b.iter().for_each(|b| baseline.add(b));
                }
                if let (Some(c), Some(b)) = (canary.histogram(), baseline.histogram()) {
                    // Read as the coarse arms holding those slices read.
                    let enough = c.len() >= RECENT_MIN_SAMPLES && b.len() >= RECENT_MIN_SAMPLES;
                    let qs = [0.0, 0.01, 0.5, 0.9, 0.99, 1.0];
                    let want = enough.then(|| {
                        qs.iter()
                            .map(|&q| (c.quantile(q), b.quantile(q)))
                            .collect::<Vec<_>>()
                    });
                    assert_eq!(track.recent_quantiles(&qs), want, "{metric} slice {i}");
                    assert!(want.is_some() || i < 2, "{metric} slice {i}");
                } else {
                    assert_eq!(
                        track.recent_counts(),
                        [canary.counts(), baseline.counts()],
                        "{metric} slice {i}"
                    );
                }
                let held: usize = last
                    .iter()
                    .flat_map(|(c, b)| [c, b])
                    .map(|d| match d {
                        Some(SliceData::Distribution(h)) => {
                            coarse_run(SEQUENTIAL_COARSEN_BITS, h.index_counts(), |_| {})
                        }
                        _ => 0,
                    })
                    .sum();
                assert_eq!(track.recent.pairs.len(), held);
            }
        }
    }

    #[test]
    fn bands_take_only_the_slices_with_both_arms() {
        // The track keeps one copy of each arm while every slice has both;
        // once one lacks an arm, the bands (which only take slices with
        // both, like QuantileShiftTest) must go on with their own.
        let (spec, how) = sequential(
            "{name: latency, kind: latency, direction: either, quantiles: [0.5, 0.9], tolerance_abs: 2}",
        );
        let metric = &spec.metrics[0];
        let mut track = Track::new(0, metric, None, how).unwrap();
        let reference = |d| {
            QuantileShiftTest::new(
                &metric.quantiles,
                how.alpha,
                metric.tolerance,
                metric.tolerance_abs * DISTRIBUTION_SCALE,
                d,
            )
            .unwrap()
        };
        let mut up = reference(quantile::Direction::Increase).coarser(SEQUENTIAL_COARSEN_BITS);
        let mut down = reference(quantile::Direction::Decrease).coarser(SEQUENTIAL_COARSEN_BITS);
        // The same bands on the store's own buckets: the track's may only
        // be wider, by at most a merged bucket.
        let mut exact_up = reference(quantile::Direction::Increase);
        let mut state = 0x2545_F491_4F6C_DD1D;
        let mut parted = false;
        for i in 0..40 {
            let c = (i % 7 != 3).then(|| slice(&mut state, 20, 90_000));
            let b = (i % 5 != 2).then(|| slice(&mut state, 80, 80_000));
            if let (Some(SliceData::Distribution(c)), Some(SliceData::Distribution(b))) = (&c, &b) {
                up.update(c, b);
                down.update(c, b);
                exact_up.update(c, b);
            }
            track.feed(metric, c, b);
            parted |= track.bands.as_ref().unwrap().paired.is_some();
            let got = track.comparisons().to_vec();
            assert_eq!(got, vec![up.comparisons(), down.comparisons()], "slice {i}");
            for (coarse, exact) in got[0].iter().zip(exact_up.comparisons()) {
                for (c, e) in [
                    (coarse.canary, exact.canary),
                    (coarse.baseline, exact.baseline),
                ] {
                    assert!(c.low <= e.low, "slice {i}: {c:?} vs {e:?}");
                    assert!(e.low as f64 <= c.low as f64 * (1.0 + 8.0 / 1024.0) + 1.0);
                    match (c.high, e.high) {
                        (Some(ch), Some(eh)) => {
                            assert!(
                                eh <= ch && ch as f64 <= eh as f64 * (1.0 + 8.0 / 1024.0) + 1.0
                            );
                        }
                        (None, _) => {}
                        (Some(_), None) => panic!("slice {i}: coarse bounded, exact not"),
                    }
                }
            }
        }
        assert!(parted);
        // The track's own arms have every slice.
        assert!(track.canary.n() > up.arms().0.len());
    }

    /// An error-rate track (0.2-point tolerance, sequential), with its spec.
    fn error_rate_track() -> (AnalysisSpec, Judging, Track) {
        let (spec, how) = sequential("{name: error_rate, kind: error_rate, tolerance_abs: 0.002}");
        let track = Track::new(0, &spec.metrics[0], None, how).unwrap();
        (spec, how, track)
    }

    /// A slice of `requests` requests, `errors` of them failed.
    fn counts(requests: u64, errors: u64) -> Option<SliceData> {
        Some(SliceData::Counts { requests, errors })
    }

    #[test]
    fn a_rejected_error_rate_quotes_its_newest_slices() {
        let (spec, how, mut track) = error_rate_track();
        let metric = &spec.metrics[0];
        // Ten healthy minutes: 0.1% errors in both arms.
        for i in 0..60 {
            track.feed(metric, counts(100, u64::from(i % 10 == 0)), counts(1000, 1));
        }
        let before = assess(&mut track, metric, how);
        let effect = before.result.effect.unwrap();
        assert!(track.e_value() < 1.0 / how.alpha);
        assert!(effect.canary.unwrap() < 0.02, "{effect:?}");
        // Then 20% errors in the canary, 20 requests a slice: once the
        // track rejects, the newest slices with 30 requests in each arm are
        // quoted, not the minute's mix; before, the minute's.
        let mut minute: std::collections::VecDeque<(u64, u64)> =
            (54..60).map(|i| (100, u64::from(i % 10 == 0))).collect();
        let mut rejected = 0;
        for k in 0..6 {
            track.feed(metric, counts(20, 4), counts(1000, 1));
            minute.pop_front();
            minute.push_back((20, 4));
            let a = assess(&mut track, metric, how);
            let e = a.result.effect.unwrap();
            let (c, b) = (e.canary.unwrap(), e.baseline.unwrap());
            if track.e_value() >= 1.0 / how.alpha {
                rejected += 1;
                // The first spike slice needs the healthy one before it
                // (no errors) to reach 30 canary requests.
                let want = if k == 0 { 4.0 / 120.0 } else { 8.0 / 40.0 };
                assert_eq!((c, b), (want, 2.0 / 2000.0), "slice {k}");
                assert!(a.beyond_tolerance);
            } else {
                let (n, errors) = minute.iter().fold((0, 0), |(n, e), &(r, x)| (n + r, e + x));
                assert_eq!(c, errors as f64 / n as f64, "slice {k}");
            }
        }
        assert!(rejected >= 4, "rejected in {rejected} of 6 slices");
    }

    #[test]
    fn the_newest_rates_are_offered_only_beyond_tolerance() {
        let (spec, _, mut track) = error_rate_track();
        let metric = &spec.metrics[0];
        for _ in 0..6 {
            track.feed(metric, counts(100, 0), counts(1000, 1));
        }
        assert_eq!(track.newest_rates_beyond(metric), None, "healthy");
        // One slice at 15% (the minute's mix: 2.5%): the newest slice is
        // what a rollback reason quotes.
        track.feed(metric, counts(100, 15), counts(1000, 1));
        assert_eq!(track.newest_rates_beyond(metric), Some((0.15, 0.001)));
        // Fewer errors than the baseline is not the bad direction.
        track.feed(metric, counts(100, 0), counts(1000, 50));
        assert_eq!(track.newest_rates_beyond(metric), None);
    }
}

//! Prometheus metrics: one registry the whole process shares.
//!
//! Other parts of the process (the Kafka consumer) register their own
//! metrics through [`Metrics::register`]; `GET /metrics` encodes them all.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};

/// Label pairs of a metric family.
pub type LabelPairs = Vec<(String, String)>;

fn pairs<const N: usize>(kv: [(&str, &str); N]) -> LabelPairs {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn latency_histogram() -> Histogram {
    // 50 us .. ~13 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 19))
}

/// The server's metrics, and the registry holding them.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    /// Samples recorded, by source (`grpc`, `http`, `kafka`).
    pub ingested: Family<LabelPairs, Counter>,
    /// Samples rejected, by source and reason.
    pub rejected: Family<LabelPairs, Counter>,
    /// Live series in the store.
    pub series: Gauge,
    /// Approximate bytes held by the store.
    pub store_bytes: Gauge,
    /// Resident memory of the process (Linux), bytes.
    pub resident_bytes: Gauge,
    /// Wall time of one judge tick over all running analyses.
    pub tick_seconds: Histogram,
    /// Verdict changes published, by verdict.
    pub verdicts: Family<LabelPairs, Counter>,
    /// Analyses by state.
    pub analyses: Family<LabelPairs, Gauge<i64, AtomicI64>>,
    /// API request latency, by API (`grpc`, `http`) and route or method.
    pub api_latency: Family<LabelPairs, Histogram>,
    /// Stream time (epoch seconds) of the newest slice the store has seen.
    pub stream_time: Gauge<f64, AtomicU64>,
    /// Requests refused for a missing or wrong token, by API and route
    /// (the route as matched, `*` for gRPC): a misconfigured controller
    /// shows here before its checks fail.
    pub unauthenticated: Family<LabelPairs, Counter>,
    /// The store's own counters, brought up to date on every judge tick
    /// and scrape ([`Metrics::mirror_store`]): samples whose labels folded into
    /// `other`, series evicted for the memory budget, samples recorded
    /// into a slice the judge had already read.
    pub store_folded: Counter,
    pub store_evicted: Counter,
    pub after_judged: Counter,
    /// Held while those counters are brought up: the ticker and a scrape
    /// may both do it, and each adds what it finds missing.
    mirroring: Arc<Mutex<()>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with the server's metrics, prefixed `vigil_`.
    pub fn new() -> Self {
        // The root has no prefix so that plug-ins (the Kafka consumer)
        // register their own `vigil_*` families beside the server's.
        let mut root = Registry::default();
        let r = root.sub_registry_with_prefix("vigil");
        let m = Self {
            registry: Arc::new(Mutex::new(Registry::default())),
            ingested: Family::default(),
            rejected: Family::default(),
            series: Gauge::default(),
            store_bytes: Gauge::default(),
            resident_bytes: Gauge::default(),
            tick_seconds: Histogram::new(exponential_buckets(0.000_1, 2.0, 18)),
            verdicts: Family::default(),
            analyses: Family::default(),
            api_latency: Family::new_with_constructor(latency_histogram),
            stream_time: Gauge::default(),
            unauthenticated: Family::default(),
            store_folded: Counter::default(),
            store_evicted: Counter::default(),
            after_judged: Counter::default(),
            mirroring: Arc::default(),
        };
        r.register(
            "ingest_samples",
            "Samples recorded into the store",
            m.ingested.clone(),
        );
        r.register(
            "ingest_rejected_samples",
            "Samples rejected, by reason",
            m.rejected.clone(),
        );
        r.register("store_series", "Live series in the store", m.series.clone());
        r.register(
            "store_bytes",
            "Approximate bytes of series data",
            m.store_bytes.clone(),
        );
        r.register(
            "process_resident_bytes",
            "Resident memory of the process",
            m.resident_bytes.clone(),
        );
        r.register(
            "judge_tick_seconds",
            "Wall time of one judge tick over all running analyses",
            m.tick_seconds.clone(),
        );
        r.register(
            "verdict_changes",
            "Verdict changes published, by verdict",
            m.verdicts.clone(),
        );
        r.register("analyses", "Analyses by state", m.analyses.clone());
        r.register(
            "api_request_duration_seconds",
            "API request latency",
            m.api_latency.clone(),
        );
        r.register(
            "api_unauthenticated_requests",
            "Requests refused for missing or invalid credentials, by API and route",
            m.unauthenticated.clone(),
        );
        r.register(
            "stream_time_seconds",
            "Stream time of the newest slice seen (epoch seconds)",
            m.stream_time.clone(),
        );
        r.register(
            "store_folded_samples",
            "Samples whose labels folded into `other` (per-service label-set limit)",
            m.store_folded.clone(),
        );
        r.register(
            "store_evicted_series",
            "Series evicted, least recently updated first, to stay within the memory budget",
            m.store_evicted.clone(),
        );
        r.register(
            "samples_after_judged",
            "Samples recorded into a slice the judge had already passed: later than slice_grace",
            m.after_judged.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(root)),
            ..m
        }
    }

    /// Brings what `/metrics` shows of the store (live series, bytes, and
    /// the counters that mirror the store's) up to `stats`.
    pub fn mirror_store(&self, stats: &vigil_core::store::StatsSnapshot) {
        self.series
            .set(i64::try_from(stats.series).unwrap_or(i64::MAX));
        self.store_bytes
            .set(i64::try_from(stats.bytes).unwrap_or(i64::MAX));
        let Ok(_mirroring) = self.mirroring.lock() else {
            return;
        };
        for (counter, now) in [
            (&self.store_folded, stats.folded_into_other),
            (&self.store_evicted, stats.evicted_series),
            (&self.after_judged, stats.after_judged),
        ] {
            let have = counter.get();
            if now > have {
                counter.inc_by(now - have);
            }
        }
    }

    /// Registers another metric (name without the `vigil_` prefix).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        if let Ok(mut r) = self.registry.lock() {
            r.sub_registry_with_prefix("vigil")
                .register(name, help, metric);
        }
    }

    /// Runs `f` on the root registry (no prefix), for a plug-in that
    /// registers a family of metrics at once; `None` if the registry's lock
    /// was poisoned.
    pub fn with_registry<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> Option<T> {
        self.registry.lock().ok().map(|mut r| f(&mut r))
    }

    /// Counts recorded samples from `source`.
    pub fn count_ingested(&self, source: &str, n: u64) {
        if n > 0 {
            self.ingested
                .get_or_create(&pairs([("source", source)]))
                .inc_by(n);
        }
    }

    /// Counts a request refused for its credentials.
    pub fn count_unauthenticated(&self, api: &str, route: &str) {
        self.unauthenticated
            .get_or_create(&pairs([("api", api), ("route", route)]))
            .inc();
    }

    /// Counts rejected samples from `source` for `reason`.
    pub fn count_rejected(&self, source: &str, reason: &str, n: u64) {
        if n > 0 {
            self.rejected
                .get_or_create(&pairs([("source", source), ("reason", reason)]))
                .inc_by(n);
        }
    }

    /// The latency histogram of one API route, to keep and observe
    /// without a label lookup per call.
    pub fn api_histogram(&self, api: &str, route: &str) -> Histogram {
        self.api_latency
            .get_or_create(&pairs([("api", api), ("route", route)]))
            .clone()
    }

    /// Records one API call's latency.
    pub fn observe_api(&self, api: &str, route: &str, seconds: f64) {
        self.api_latency
            .get_or_create(&pairs([("api", api), ("route", route)]))
            .observe(seconds);
    }

    /// Counts a published verdict change.
    pub fn count_verdict(&self, verdict: &str) {
        self.verdicts
            .get_or_create(&pairs([("verdict", verdict)]))
            .inc();
    }

    /// Sets the number of analyses in `state`.
    pub fn set_analyses(&self, state: &str, n: i64) {
        self.analyses
            .get_or_create(&pairs([("state", state)]))
            .set(n);
    }

    /// The Prometheus text exposition of every registered metric.
    pub fn encode(&self) -> String {
        self.resident_bytes.set(resident_bytes());
        let mut out = String::new();
        match self.registry.lock() {
            Ok(r) => {
                if let Err(e) = encode(&mut out, &r) {
                    out = format!("# encoding failed: {e}\n");
                }
            }
            Err(_) => out.push_str("# metrics registry unavailable\n"),
        }
        out
    }
}

/// Resident set size from `/proc/self/statm` (0 where there is none).
fn resident_bytes() -> i64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<i64>().ok())
        .map_or(0, |pages| pages.saturating_mul(4096))
}

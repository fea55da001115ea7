//! Vigil's domain: names, metric kinds, samples, analysis specs, verdicts,
//! and the store of rolling per-version distributions.
//!
//! Layout:
//! - [`names`]: `ServiceName`, `Version`, `MetricName`, `Labels`, `SeriesKey`.
//! - [`metric`]: `MetricKind`, `Direction`.
//! - [`event`]: decoded stream content (`Sample`, `Observation`).
//! - [`events`]: the JSON lines event format shared by `vigil replay`,
//!   HTTP ingest and the `vigil.events` topic.
//! - [`spec`]: the analysis spec, its parsing (YAML/JSON/TOML) and validation.
//! - [`verdict`]: verdicts and per-metric results.
//! - [`store`]: rolling time-sliced windows per series, concurrent, bounded
//!   in memory, with snapshot/restore.
//!
//! Pure: no file or network IO (readers are generic over `BufRead`), no clock (stream time comes with the samples), no async.
//! The statistics live in `vigil-stats`; the decisions in `vigil-judge`.

pub mod error;
pub mod event;
pub mod events;
pub mod metric;
pub mod names;
pub mod spec;
pub mod store;
pub mod verdict;

pub use error::CoreError;
pub use event::{Observation, Sample, Timestamp};
pub use metric::{Direction, MetricKind};
pub use names::{Labels, MetricName, SeriesKey, ServiceName, Version};
pub use spec::{AnalysisSpec, Method, MetricSpec, Policy, Slo, SpecError, SpecFormat};
pub use verdict::{Effect, MetricResult, MetricStatus, Verdict, VerdictReport};

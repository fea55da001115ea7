//! Seeded traffic scenarios for Vigil, and replications of them through
//! the real store and judge.
//!
//! - [`scenario`]: the scenario file (TOML), validated field by field; its
//!   `[analysis]` table is an analysis spec.
//! - [`library`]: the built-in scenarios (`vigil simulate --list`).
//! - [`generate`]: a deterministic generator of a scenario's stream, read
//!   either as pre-aggregated slices (fast) or as individual request events
//!   (for files and live producers); both views hold the same requests.
//! - [`run`]: replications in stream time through `vigil_core::store::Store`
//!   and `vigil_judge::Analysis`, in parallel, and their summaries.
//!
//! Pure: no IO, no clock.

pub mod generate;
pub mod library;
pub mod run;
pub mod scenario;

pub use generate::{Arm, Generator, Names, RequestEvent, SliceDraw, STREAM_START};
pub use library::{builtin, Builtin, BUILTINS};
pub use run::{replicate, simulate, summarize, Feed, MethodRun, Plan, Replication, Summary};
pub use scenario::{Scenario, ScenarioError};

/// What can go wrong in a simulation.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The scenario is invalid.
    #[error("invalid scenario: {0}")]
    Scenario(#[from] ScenarioError),
    /// The store refused a generated sample (a bug: generated samples are
    /// always valid).
    #[error("the store refused a generated sample: {0}")]
    Core(#[from] vigil_core::CoreError),
    /// The judge refused the analysis.
    #[error("the judge refused the analysis: {0}")]
    Judge(#[from] vigil_judge::JudgeError),
    /// The worker threads could not start.
    #[error("starting worker threads: {0}")]
    Threads(String),
}

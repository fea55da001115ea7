//! `vigil serve`: Vigil as a service for rollout controllers and people.
//!
//! Layout:
//! - [`config`]: the configuration (TOML file, `VIGIL_*` env, flags).
//! - [`core`]: [`Vigil`], the shared state (store, ingest path, analyses,
//!   metrics, readiness, shutdown) and the judge ticker.
//! - [`registry`]: live analyses with their latest verdict published for
//!   lock-free reads.
//! - [`ingest`]: the one ingest path (gRPC, HTTP, Kafka) with counting.
//! - [`grpc`]: the `vigil.v1.VigilService` service; [`verdict_route`]
//!   answers its GetVerdict from the published encoded bytes.
//! - [`http`]: the HTTP JSON API; [`kayenta`] and [`flagger`] routes.
//! - [`auth`]: bearer tokens. [`metrics`]: the Prometheus registry.
//! - [`server`]: binding, TLS, graceful shutdown; [`Handle`] for plug-ins.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod auth;
pub mod config;
pub mod core;
pub mod flagger;
pub mod grpc;
pub mod http;
pub mod ingest;
pub mod kayenta;
pub mod metrics;
pub mod registry;
pub mod server;
pub mod verdict_route;

pub use config::Config;
pub use core::Vigil;
pub use server::{shutdown_signal, Handle, ServeError, Server};

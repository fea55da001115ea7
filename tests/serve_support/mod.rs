//! What the `serve_*` end-to-end tests share: the real server started
//! in-process on ephemeral loopback ports, clients, and synthetic data.

// Each test binary includes this module and uses part of it.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;
use tonic::transport::Channel;
use vigil_proto::v1::vigil_service_client::VigilServiceClient;
use vigil_proto::v1::{CountsPoint, SampleBatch};
use vigil_server::{Config, Handle, ServeError, Server};

/// Every wait in these tests is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Awaits `f`, failing the test if it takes longer than [`LIMIT`].
pub async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {LIMIT:?} waiting for {what}"),
    }
}

/// A server running in this process.
pub struct TestServer {
    pub handle: Handle,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    task: JoinHandle<Result<(), ServeError>>,
}

/// A config for tests: loopback, port 0, fast ticks.
pub fn test_config() -> Config {
    Config {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        tick_interval: Duration::from_millis(20),
        ..Config::default()
    }
}

/// Starts the real server with `config` (its addresses forced to
/// loopback port 0).
pub async fn start(mut config: Config) -> TestServer {
    config.grpc_addr = "127.0.0.1:0".parse().unwrap();
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    let server = Server::bind(config).unwrap();
    let (grpc, http) = (server.grpc_addr(), server.http_addr());
    let handle = server.handle();
    let task = tokio::spawn(server.run(std::future::pending()));
    TestServer {
        handle,
        grpc,
        http,
        task,
    }
}

impl TestServer {
    /// A URL on the HTTP port.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// A gRPC client.
    pub async fn client(&self) -> VigilServiceClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
        VigilServiceClient::new(channel)
    }

    /// Shuts down gracefully and checks the server ended without error.
    pub async fn stop(self) {
        self.handle.shutdown();
        bounded("server shutdown", self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

/// Wall-clock now floored to a 10 s slice: stream time for test data.
pub fn slice_now() -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    (now / 10.0).floor() * 10.0
}

/// Error-rate counters of one version: `slices` slices of 10 s from
/// `start`, each with `requests` requests of which `errors` failed.
pub fn counts_batch(
    service: &str,
    version: &str,
    start: f64,
    slices: usize,
    requests: u64,
    errors: u64,
) -> SampleBatch {
    SampleBatch {
        service: service.into(),
        version: version.into(),
        metric: "error_rate".into(),
        counts: (0..slices)
            .map(|i| CountsPoint {
                ts: start + 10.0 * i as f64 + 1.0,
                requests,
                errors,
            })
            .collect(),
        ..Default::default()
    }
}

/// An error-rate spec of `service`, v7 -> v8 unless given.
pub fn error_rate_spec(service: &str, baseline: &str, canary: &str) -> serde_json::Value {
    serde_json::json!({
        "service": service,
        "baseline_version": baseline,
        "canary_version": canary,
        "metrics": [{"name": "error_rate", "kind": "error_rate", "tolerance_abs": 0.002}],
        "policy": {"min_samples": 50, "max_duration": "1h"},
    })
}

/// JSON of a response body.
pub async fn json(r: reqwest::Response) -> serde_json::Value {
    let text = r.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

//! `vigil serve --otlp-grpc-addr`: an OTLP/gRPC export (spans from the
//! official OpenTelemetry Python SDK, the golden file of the ingest tests)
//! sent to the running binary lands in the server's store through its
//! ingest path, counted as `source="otlp"`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufReader;
use std::process::{Command, Stdio};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

mod common;
use common::{line_after, Killed};

const SPANS: &[u8] = include_bytes!("../crates/vigil-ingest/tests/data/otlp_spans.bin");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_exports_reach_the_served_store() {
    let mut serve = Killed(
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args([
                "serve",
                "--grpc-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
                "--otlp-grpc-addr",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(serve.0.stdout.take().unwrap());
    let http = line_after(&mut out, "vigil: HTTP on ");
    let otlp = line_after(&mut out, "vigil: OTLP/gRPC on ");

    let request = ExportTraceServiceRequest::decode(SPANS).unwrap();
    let n_server_spans = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .filter(|s| s.kind == 2)
        .count();
    assert!(n_server_spans > 0);
    let mut client = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        TraceServiceClient::connect(format!("http://{otlp}")),
    )
    .await
    .unwrap()
    .unwrap();
    client.export(request).await.unwrap();

    // A server span gives a latency and an error_rate sample.
    let metrics = reqwest::get(format!("http://{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let expected = format!(
        "vigil_ingest_samples_total{{source=\"otlp\"}} {}",
        2 * n_server_spans
    );
    assert!(metrics.contains(&expected), "{expected} not in:\n{metrics}");
}

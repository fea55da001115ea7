//! The OTLP/gRPC receiver, through a real tonic client on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use vigil_core::store::{Store, StoreConfig};
use vigil_ingest::decode::{decode, DecodeOptions, Format};
use vigil_ingest::otlp_grpc::{serve, OtlpReceiver};
use vigil_ingest::IngestMetrics;

const SPANS: &[u8] = include_bytes!("data/otlp_spans.bin");
const METRICS: &[u8] = include_bytes!("data/otlp_metrics.bin");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_are_recorded_and_bad_ones_refused() {
    let store = Arc::new(Store::new(StoreConfig::default()));
    let metrics = IngestMetrics::default();
    let receiver = OtlpReceiver::new(
        Arc::clone(&store),
        metrics.clone(),
        DecodeOptions::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(listener, receiver, shutdown.clone()));

    let endpoint = format!("http://{addr}");
    let mut traces = TraceServiceClient::connect(endpoint.clone()).await.unwrap();
    let request = ExportTraceServiceRequest::decode(SPANS).unwrap();
    traces.export(request.clone()).await.unwrap();
    // The same samples as the Kafka path gives for the same bytes.
    let n_spans = decode(Format::OtlpSpans, SPANS, &DecodeOptions::default())
        .unwrap()
        .samples
        .len() as u64;
    assert_eq!(store.stats().recorded, n_spans);

    let mut without_service = request;
    without_service.resource_spans[0]
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .retain(|kv| kv.key != "service.name");
    let status = traces.export(without_service).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("service"), "{status:?}");
    assert_eq!(
        metrics.rejected_count("otlp_grpc_traces", "missing_service"),
        1
    );
    assert_eq!(store.stats().recorded, n_spans);

    let mut metrics_client = MetricsServiceClient::connect(endpoint).await.unwrap();
    metrics_client
        .export(ExportMetricsServiceRequest::decode(METRICS).unwrap())
        .await
        .unwrap();
    let n_metrics = decode(Format::OtlpMetrics, METRICS, &DecodeOptions::default())
        .unwrap()
        .samples
        .len() as u64;
    assert_eq!(store.stats().recorded, n_spans + n_metrics);
    assert_eq!(metrics.samples_count("otlp_grpc_metrics"), n_metrics);

    shutdown.cancel();
    server.await.unwrap().unwrap();
}

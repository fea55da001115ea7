//! An OTLP/gRPC receiver: `TraceService` and `MetricsService` export, so a
//! Collector or an SDK can send to Vigil without Kafka.
//!
//! Off unless configured; [`DEFAULT_PORT`] is OTLP's standard gRPC port. The
//! server mounts the two services ([`OtlpReceiver::trace_service`],
//! [`OtlpReceiver::metrics_service`]) next to its own, or runs them alone
//! with [`serve`]. An export is decoded exactly like a message on the
//! `otlp_spans`/`otlp_metrics` topics: recorded whole, or refused whole with
//! `INVALID_ARGUMENT` naming the problem (and counted under
//! `vigil_ingest_rejected_total{topic="otlp_grpc_traces"|"otlp_grpc_metrics"}`).
//! Decoding and recording run on the blocking pool, not the runtime's workers.

use std::net::SocketAddr;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use vigil_core::store::Store;
use vigil_core::Sample;

use crate::decode::otlp::{metrics_to_samples, spans_to_samples};
use crate::decode::{check_sample, DecodeError, DecodeOptions};
use crate::metrics::IngestMetrics;

/// OTLP's standard gRPC port.
pub const DEFAULT_PORT: u16 = 4317;

/// The `topic` label of exports received over gRPC.
const TRACES_SOURCE: &str = "otlp_grpc_traces";
const METRICS_SOURCE: &str = "otlp_grpc_metrics";

/// Records OTLP exports into the store (cheap to clone).
#[derive(Debug, Clone)]
pub struct OtlpReceiver {
    store: Arc<Store>,
    metrics: IngestMetrics,
    options: Arc<DecodeOptions>,
}

impl OtlpReceiver {
    /// A receiver recording into `store`.
    pub fn new(store: Arc<Store>, metrics: IngestMetrics, options: DecodeOptions) -> Self {
        OtlpReceiver {
            store,
            metrics,
            options: Arc::new(options),
        }
    }

    /// The trace service, for a tonic router.
    pub fn trace_service(&self) -> TraceServiceServer<OtlpReceiver> {
        TraceServiceServer::new(self.clone())
    }

    /// The metrics service, for a tonic router.
    pub fn metrics_service(&self) -> MetricsServiceServer<OtlpReceiver> {
        MetricsServiceServer::new(self.clone())
    }

    /// Decodes with `to_samples` and records, on the blocking pool.
    async fn ingest<T: Send + 'static>(
        &self,
        source: &'static str,
        request: T,
        to_samples: fn(&T, &DecodeOptions) -> Result<Vec<Sample>, DecodeError>,
    ) -> Result<(), Status> {
        let this = self.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let samples = to_samples(&request, &this.options)?;
            for sample in &samples {
                check_sample(sample)?;
            }
            let outcome = this.store.record_batch(&samples);
            for (_, error) in &outcome.rejected {
                this.metrics
                    .store_rejected
                    .get_or_create(&IngestMetrics::reason(crate::consumer::store_reason(error)))
                    .inc();
            }
            let recorded = outcome.recorded as u64;
            this.metrics
                .samples
                .get_or_create(&IngestMetrics::topic(source))
                .inc_by(recorded);
            Ok::<(), DecodeError>(())
        })
        .await
        .map_err(|_| Status::internal("internal error"))?;
        self.metrics
            .messages
            .get_or_create(&IngestMetrics::topic(source))
            .inc();
        outcome.map_err(|error| {
            self.metrics
                .rejected
                .get_or_create(&IngestMetrics::topic_reason(source, error.reason()))
                .inc();
            Status::invalid_argument(error.to_string())
        })
    }
}

#[tonic::async_trait]
impl TraceService for OtlpReceiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.ingest(TRACES_SOURCE, request.into_inner(), spans_to_samples)
            .await?;
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpReceiver {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.ingest(METRICS_SOURCE, request.into_inner(), metrics_to_samples)
            .await?;
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// Serves the two OTLP services alone on `listener` until `shutdown`.
///
/// # Errors
///
/// When the server fails (the listener breaks).
pub async fn serve(
    listener: tokio::net::TcpListener,
    receiver: OtlpReceiver,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(receiver.trace_service())
        .add_service(receiver.metrics_service())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown.cancelled_owned(),
        )
        .await
}

/// The address to listen on for a port: all interfaces, as OTLP receivers do.
pub fn listen_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], port))
}

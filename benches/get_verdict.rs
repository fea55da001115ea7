//! GetVerdict's server-side work per call, in process (no socket, no
//! HTTP/2): one gRPC request through `vigil serve`'s route, which sends
//! the verdict's message encoded once per change
//! (`vigil_server::verdict_route`), beside the same request through
//! tonic's generated route for the same service, which clones and encodes
//! the report on every call. Both answer the same bytes (checked before
//! timing). The analysis holds a real report (two metrics over 12 slices,
//! as in `vigil bench api`). Figures: docs/BENCHMARKS.md, `vigil bench api`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// The `vigil` binary's allocator (`src/main.rs`), so that this measures
/// what the binary does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::{BodyExt as _, Full};
use tonic::codegen::{http, Bytes};
use vigil_core::ServiceName;
use vigil_proto::v1;
use vigil_proto::v1::vigil_service_server::VigilServiceServer;
use vigil_server::grpc::Service;
use vigil_server::verdict_route::VerdictRoute;
use vigil_server::{Config, Vigil};

#[path = "../src/bench/api_fixture.rs"]
mod api_fixture;

/// One analysis of `svc` v8 against v7, judged once over 12 slices.
fn fixture() -> (Arc<Vigil>, String) {
    // No grace: the one tick below judges every complete slice.
    let config = Config {
        slice_grace: std::time::Duration::ZERO,
        ..Config::default()
    };
    let vigil = Vigil::new(config, Vec::new());
    let t0 = (vigil.stream_now() / 10.0).floor() * 10.0;
    let spec = serde_json::from_value(serde_json::json!({
        "service": "svc",
        "baseline_version": "v7",
        "canary_version": "v8",
        "metrics": [
            {"name": "latency", "kind": "latency", "quantiles": [0.5, 0.99]},
            {"name": "error_rate", "kind": "error_rate", "tolerance_abs": 0.002},
        ],
        "policy": {"max_duration": "30m"},
    }))
    .unwrap();
    let id = vigil
        .create_from(None, spec, "bench", t0)
        .unwrap()
        .id
        .to_string();
    let service = ServiceName::new("svc").unwrap();
    let samples = api_fixture::service_samples(&service, t0).unwrap();
    assert_eq!(vigil.ingest.record("bench", &samples).rejected, 0);
    vigil.tick(&mut vigil_server::core::TickState::default());
    (vigil, id)
}

/// A gRPC GetVerdict request as it arrives off HTTP/2.
fn request(frame: &Bytes) -> http::Request<tonic::body::Body> {
    http::Request::builder()
        .method("POST")
        .uri("/vigil.v1.VigilService/GetVerdict")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(Full::new(frame.clone())))
        .unwrap()
}

/// Calls `svc` and returns the response body, checking grpc-status 0.
async fn call<S>(svc: &mut S, frame: &Bytes) -> Bytes
where
    S: tonic::codegen::Service<
        http::Request<tonic::body::Body>,
        Response = http::Response<tonic::body::Body>,
    >,
    S::Error: std::fmt::Debug,
{
    let response = svc.call(request(frame)).await.unwrap();
    let collected = response.into_body().collect().await.unwrap();
    let status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.as_bytes().to_vec());
    assert_eq!(status.as_deref(), Some(&b"0"[..]));
    collected.to_bytes()
}

fn get_verdict(c: &mut Criterion) {
    let (vigil, id) = fixture();
    let message = prost::Message::encode_to_vec(&v1::GetVerdictRequest { analysis_id: id });
    // gRPC framing: not compressed, big-endian length, the message.
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&message);
    let frame = Bytes::from(frame);
    let limit = 4 << 20;
    let mut published = VerdictRoute::new(Service::new(vigil.clone()), limit);
    let mut generated = VigilServiceServer::new(Service::new(vigil.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ours = rt.block_on(call(&mut published, &frame));
    let theirs = rt.block_on(call(&mut generated, &frame));
    assert_eq!(ours, theirs, "the two routes answer differently");
    assert!(ours.len() > 400, "{} bytes", ours.len());

    let mut g = c.benchmark_group("get_verdict_in_process");
    g.bench_function("published_bytes", |b| {
        b.iter(|| rt.block_on(call(&mut published, &frame)));
    });
    g.bench_function("generated_clone_encode", |b| {
        b.iter(|| rt.block_on(call(&mut generated, &frame)));
    });
    g.finish();
}

criterion_group!(benches, get_verdict);
criterion_main!(benches);

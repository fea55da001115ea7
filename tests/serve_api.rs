//! `vigil serve` end to end: the real server on ephemeral loopback ports,
//! a tonic client and an HTTP client: create, ingest, verdict, watch,
//! cancel, list, metrics, graceful end of watch streams.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod serve_support;

use serve_support::*;
use vigil_proto::v1::{self, Verdict};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_ingest_watch_verdict_cancel() {
    let server = start(test_config()).await;
    let http = reqwest::Client::new();
    let mut grpc = server.client().await;

    // Create over HTTP.
    let r = http
        .post(server.url("/v1/analyses"))
        .body(error_rate_spec("payment", "v7", "v8").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created = json(r).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["state"], "RUNNING");
    assert_eq!(created["verdict"]["verdict"], "CONTINUE");

    // Watch over gRPC: the current verdict comes first.
    let mut watch = grpc
        .watch_verdicts(v1::WatchVerdictsRequest {
            analysis_id: id.clone(),
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = bounded("first watch message", watch.message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.verdict(), Verdict::Continue);
    assert_eq!(first.analysis_id, id);

    // A watcher of the whole service sees the same analysis.
    let mut service_watch = grpc
        .watch_verdicts(v1::WatchVerdictsRequest {
            analysis_id: String::new(),
            service: "payment".into(),
        })
        .await
        .unwrap()
        .into_inner();

    // Ingest over gRPC: the canary fails 15% of requests, the baseline
    // 0.1%; one batch has an invalid version and is rejected, counted.
    let start_ts = slice_now();
    let mut bad = counts_batch("payment", "", start_ts, 2, 10, 0);
    bad.metric = "error_rate".into();
    let batches = vec![
        counts_batch("payment", "v7", start_ts, 30, 1000, 1),
        counts_batch("payment", "v8", start_ts, 30, 1000, 150),
        bad,
    ];
    let resp = grpc
        .ingest(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.accepted, 60);
    assert_eq!(resp.rejected, 2);
    assert!(resp.errors[0].contains("version"), "{:?}", resp.errors);

    // The watch stream receives the change to ROLLBACK.
    let rolled_back = bounded("ROLLBACK on the watch stream", async {
        loop {
            let r = watch.message().await.unwrap().expect("stream open");
            if r.verdict() == Verdict::Rollback {
                return r;
            }
        }
    })
    .await;
    assert!(
        rolled_back.reason.contains("error rate"),
        "{}",
        rolled_back.reason
    );
    assert!(rolled_back.decided_at.is_some());
    let seen_by_service = bounded("ROLLBACK on the service watch", async {
        loop {
            let r = service_watch.message().await.unwrap().expect("stream open");
            if r.verdict() == Verdict::Rollback {
                return r;
            }
        }
    })
    .await;
    assert_eq!(seen_by_service.analysis_id, id);

    // The same verdict from GetVerdict and from HTTP.
    let v = grpc
        .get_verdict(v1::GetVerdictRequest {
            analysis_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.verdict(), Verdict::Rollback);
    assert_eq!(v.reason, rolled_back.reason);
    let body = json(
        http.get(server.url(&format!("/v1/analyses/{id}/verdict")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body["verdict"], "ROLLBACK");
    assert_eq!(body["analysis_id"], id.as_str());
    assert_eq!(body["reason"], v.reason.as_str());
    assert!(body["decided_at"].as_f64().is_some());
    let metrics = body["metrics"].as_array().unwrap();
    assert_eq!(metrics[0]["name"], "error_rate");
    assert_eq!(metrics[0]["status"], "fail");

    // Listed as decided, over both APIs.
    let list = grpc
        .list_analyses(v1::ListAnalysesRequest {
            service: "payment".into(),
            state: v1::AnalysisState::Decided as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.analyses.len(), 1);
    assert_eq!(list.analyses[0].id, id);
    let list = json(
        http.get(server.url("/v1/analyses?state=RUNNING"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(list["analyses"].as_array().unwrap().is_empty());

    // Create over gRPC, then cancel over HTTP: the watcher is told.
    let created = grpc
        .create_analysis(v1::CreateAnalysisRequest {
            spec: Some(v1::AnalysisSpec {
                service: "payment".into(),
                baseline_version: Some("v7".into()),
                canary_version: "v9".into(),
                metrics: vec![v1::MetricSpec {
                    name: "latency".into(),
                    kind: v1::MetricKind::Latency as i32,
                    ..Default::default()
                }],
                policy: None,
                dimensions: vec![],
            }),
            id: "payment-v9".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.id, "payment-v9");
    assert_eq!(created.state(), v1::AnalysisState::Running);
    let r = http
        .delete(server.url("/v1/analyses/payment-v9"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["state"], "CANCELLED");
    let cancelled = bounded("the cancellation on the service watch", async {
        loop {
            let r = service_watch.message().await.unwrap().expect("stream open");
            if r.analysis_id == "payment-v9" && r.reason.starts_with("cancelled") {
                return r;
            }
        }
    })
    .await;
    assert_eq!(cancelled.verdict(), Verdict::Continue);
    let got = grpc
        .get_analysis(v1::GetAnalysisRequest {
            analysis_id: "payment-v9".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.state(), v1::AnalysisState::Cancelled);

    // Metrics count what happened.
    let text = http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("vigil_ingest_samples_total{source=\"grpc\"} 60"),
        "{text}"
    );
    assert!(
        text.contains(
            "vigil_ingest_rejected_samples_total{source=\"grpc\",reason=\"invalid_name\"} 2"
        ),
        "{text}"
    );
    assert!(
        text.contains("vigil_verdict_changes_total{verdict=\"ROLLBACK\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("vigil_analyses{state=\"CANCELLED\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "vigil_api_request_duration_seconds_count{api=\"grpc\",route=\"GetVerdict\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("vigil_store_series"), "{text}");
    for counter in [
        "vigil_store_folded_samples_total",
        "vigil_store_evicted_series_total",
        "vigil_samples_after_judged_total",
    ] {
        assert!(text.contains(counter), "{counter}: {text}");
    }

    // Shutdown ends the open watch streams cleanly.
    server.stop().await;
    let end = bounded("the watch stream to end", async {
        loop {
            match watch.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await;
    assert!(matches!(end, Ok(None)), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_ingest_takes_replay_lines_and_reports_rejections() {
    let server = start(test_config()).await;
    let http = reqwest::Client::new();
    let t = slice_now();
    let body = format!(
        "{{\"ts\": {t}, \"service\": \"search\", \"version\": \"v1\", \"latency_ms\": 12.5, \"error\": false, \"labels\": {{\"endpoint\": \"/q\"}}}}\n\
         not json\n\
         {{\"ts\": {t}, \"service\": \"search\", \"version\": \"v2\", \"metric\": \"cpu\", \"value\": 0.25}}\n\
         {{\"ts\": {t}, \"service\": \"search\", \"version\": \"v2\", \"latency_ms\": -3, \"error\": false}}\n"
    );
    let r = http
        .post(server.url("/v1/ingest"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out = json(r).await;
    // The request event feeds latency and error_rate: 2 samples, the
    // metric sample 1; the bad line and the negative latency are rejected.
    assert_eq!(out["accepted"], 3, "{out}");
    assert_eq!(out["rejected"], 2, "{out}");
    let errors = out["errors"].as_array().unwrap();
    assert!(errors[0].as_str().unwrap().starts_with("line 2:"), "{out}");
    assert_eq!(
        server
            .handle
            .store()
            .versions(&vigil_core::ServiceName::new("search").unwrap())
            .len(),
        2
    );

    // A spec file as it is, in YAML; the canary already emits, so the
    // analysis judges from its first sample on.
    let yaml = "service: search\nbaseline_version: v1\ncanary_version: v2\nmetrics:\n  - {name: cpu, kind: gauge}\n";
    let r = http
        .post(server.url("/v1/analyses"))
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = json(r).await["id"].as_str().unwrap().to_owned();
    let started = server.handle.vigil().analyses.get(&id).unwrap();
    assert_eq!(started.spec.metrics[0].name.as_str(), "cpu");
    let r = http
        .post(server.url("/v1/analyses"))
        .header("content-type", "application/yaml")
        .body("service: search\ncanary_version: v2\nmetrics: []\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await["field"], "metrics");

    // The Compare call gives the one-shot result.
    let mut grpc = server.client().await;
    let slow: Vec<f64> = (0..200).map(|i| 100.0 + f64::from(i % 20)).collect();
    let fast: Vec<f64> = (0..200).map(|i| 50.0 + f64::from(i % 20)).collect();
    let r = grpc
        .compare(v1::CompareRequest {
            baseline: Some(v1::Arm {
                values: fast,
                buckets: vec![],
            }),
            canary: Some(v1::Arm {
                values: slow,
                buckets: vec![],
            }),
            direction: v1::Direction::Increase as i32,
            confidence: 0.99,
            tolerance: 0.05,
            tolerance_abs: 0.0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.verdict(), Verdict::Rollback);
    assert_eq!((r.n_baseline, r.n_canary), (200, 200));
    assert!((r.shift - 50.0).abs() < 1.0, "{r:?}");
    server.stop().await;
}

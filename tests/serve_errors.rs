//! Every error case of the `vigil serve` APIs, and auth on and off.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod serve_support;

use serve_support::*;
use tonic::Code;
use vigil_proto::v1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_grpc_errors_have_the_matching_status() {
    let mut config = test_config();
    config.max_body_bytes = 4096;
    let server = start(config).await;
    let http = reqwest::Client::new();

    // Malformed JSON: 400.
    let r = http
        .post(server.url("/v1/analyses"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(json(r).await["error"]
        .as_str()
        .unwrap()
        .contains("malformed JSON"));

    // An invalid spec: 400 naming the field.
    for (patch, field) in [
        (
            serde_json::json!({"policy": {"alpha": 0.7}}),
            "policy.alpha",
        ),
        (
            serde_json::json!({"canary_version": "v7"}),
            "canary_version",
        ),
        (serde_json::json!({"metrics": []}), "metrics"),
    ] {
        let mut spec = error_rate_spec("payment", "v7", "v8");
        for (k, v) in patch.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let r = http
            .post(server.url("/v1/analyses"))
            .body(spec.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let body = json(r).await;
        assert_eq!(body["field"], field, "{body}");
        assert!(body["error"].as_str().unwrap().starts_with(field), "{body}");
    }
    // An unknown field (a typo) is named too.
    let mut spec = error_rate_spec("payment", "v7", "v8");
    spec["metrics"][0]["tolerence"] = 0.1.into();
    let r = http
        .post(server.url("/v1/analyses"))
        .body(spec.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(json(r).await["error"]
        .as_str()
        .unwrap()
        .contains("tolerence"));

    // A taken id: 409; a bad id: 400 naming `id`.
    let spec = error_rate_spec("payment", "v7", "v8").to_string();
    let r = http
        .post(server.url("/v1/analyses?id=a1"))
        .body(spec.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .post(server.url("/v1/analyses?id=a1"))
        .body(spec.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = http
        .post(server.url("/v1/analyses?id=a%20b"))
        .body(spec.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await["field"], "id");

    // Unknown analysis: 404 on every route.
    for r in [
        http.get(server.url("/v1/analyses/nope"))
            .send()
            .await
            .unwrap(),
        http.get(server.url("/v1/analyses/nope/verdict"))
            .send()
            .await
            .unwrap(),
        http.delete(server.url("/v1/analyses/nope"))
            .send()
            .await
            .unwrap(),
        http.get(server.url("/canary/nope")).send().await.unwrap(),
    ] {
        assert_eq!(r.status(), 404);
        assert!(json(r).await["error"].as_str().unwrap().contains("nope"));
    }

    // A bad state filter: 400 naming it.
    let r = http
        .get(server.url("/v1/analyses?state=SLEEPING"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await["field"], "state");

    // Over the body limit: 413, on ingest and on create.
    let big = "x".repeat(5000);
    let r = http
        .post(server.url("/v1/ingest"))
        .header("content-type", "application/x-ndjson")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let r = http
        .post(server.url("/v1/analyses"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    // Not JSON lines: 415.
    let r = http
        .post(server.url("/v1/ingest"))
        .header("content-type", "application/xml")
        .body("<a/>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    // An unknown Flagger hook: 404; a malformed payload: 400.
    let r = http
        .post(server.url("/v1/flagger/deploy"))
        .body(r#"{"name":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .post(server.url("/v1/flagger/rollout"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // gRPC: the matching codes.
    let mut grpc = server.client().await;
    let bad = grpc
        .create_analysis(v1::CreateAnalysisRequest {
            spec: Some(v1::AnalysisSpec {
                service: "payment".into(),
                baseline_version: Some("v7".into()),
                canary_version: "v8".into(),
                metrics: vec![v1::MetricSpec {
                    name: "latency".into(),
                    kind: v1::MetricKind::Latency as i32,
                    quantiles: vec![1.5],
                    ..Default::default()
                }],
                policy: None,
                dimensions: vec![],
            }),
            id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().starts_with("spec.metrics[0].quantiles"),
        "{}",
        bad.message()
    );
    let missing = grpc
        .create_analysis(v1::CreateAnalysisRequest::default())
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert!(missing.message().starts_with("spec"));
    let dup = grpc
        .create_analysis(v1::CreateAnalysisRequest {
            spec: Some(v1::AnalysisSpec {
                service: "payment".into(),
                baseline_version: Some("v7".into()),
                canary_version: "v8".into(),
                metrics: vec![v1::MetricSpec {
                    name: "error_rate".into(),
                    kind: v1::MetricKind::ErrorRate as i32,
                    ..Default::default()
                }],
                policy: None,
                dimensions: vec![],
            }),
            id: "a1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    for status in [
        grpc.get_verdict(v1::GetVerdictRequest {
            analysis_id: "nope".into(),
        })
        .await
        .unwrap_err(),
        grpc.cancel_analysis(v1::CancelAnalysisRequest {
            analysis_id: "nope".into(),
        })
        .await
        .unwrap_err(),
        grpc.get_analysis(v1::GetAnalysisRequest {
            analysis_id: "nope".into(),
        })
        .await
        .unwrap_err(),
        grpc.watch_verdicts(v1::WatchVerdictsRequest {
            analysis_id: "nope".into(),
            service: String::new(),
        })
        .await
        .map(|_| ())
        .unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
    }
    let empty = grpc
        .get_verdict(v1::GetVerdictRequest::default())
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    let no_arm = grpc
        .compare(v1::CompareRequest::default())
        .await
        .unwrap_err();
    assert_eq!(no_arm.code(), Code::InvalidArgument);
    assert!(no_arm.message().starts_with("baseline"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_writes_and_optionally_reads() {
    // Auth off: no token needed anywhere.
    let server = start(test_config()).await;
    let http = reqwest::Client::new();
    let r = http
        .post(server.url("/v1/analyses"))
        .body(error_rate_spec("payment", "v7", "v8").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    server.stop().await;

    // Tokens from the config and a file; required on writes only.
    let dir = std::env::temp_dir().join(format!("vigil-serve-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens");
    std::fs::write(&file, "# team tokens\nfrom-file\n\n").unwrap();
    let mut config = test_config();
    config.auth.tokens = vec!["s3cret".into()];
    config.auth.tokens_file = Some(file.clone());
    let server = start(config.clone()).await;
    let spec = error_rate_spec("payment", "v7", "v8").to_string();
    let r = http
        .post(server.url("/v1/analyses"))
        .body(spec.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = http
        .post(server.url("/v1/analyses?id=a1"))
        .bearer_auth("wrong")
        .body(spec.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    for token in ["s3cret", "from-file"] {
        let r = http
            .post(server.url("/v1/analyses"))
            .bearer_auth(token)
            .body(spec.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "token {token}");
    }
    let r = http
        .post(server.url("/v1/ingest"))
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http.get(server.url("/v1/analyses")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let mut grpc = server.client().await;
    let denied = grpc
        .cancel_analysis(v1::CancelAnalysisRequest {
            analysis_id: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::Unauthenticated);
    let denied = grpc
        .ingest(tokio_stream::iter(Vec::<v1::SampleBatch>::new()))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::Unauthenticated);
    let mut req = tonic::Request::new(v1::ListAnalysesRequest::default());
    req.metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    let list = grpc.list_analyses(req).await.unwrap().into_inner();
    assert_eq!(list.analyses.len(), 2);
    let id = list.analyses[0].id.clone();
    let mut req = tonic::Request::new(v1::CancelAnalysisRequest {
        analysis_id: id.clone(),
    });
    req.metadata_mut()
        .insert("authorization", "Bearer from-file".parse().unwrap());
    grpc.cancel_analysis(req).await.unwrap();
    // Reads need no token here.
    grpc.get_verdict(v1::GetVerdictRequest {
        analysis_id: id.clone(),
    })
    .await
    .unwrap();
    server.stop().await;

    // Required on reads too; probes and metrics stay open.
    config.auth.require_on_reads = true;
    let server = start(config).await;
    let r = http.get(server.url("/v1/analyses")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(server.url("/v1/analyses"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for open in ["/healthz", "/readyz", "/metrics"] {
        let r = http.get(server.url(open)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{open}");
    }
    let mut grpc = server.client().await;
    let denied = grpc
        .get_verdict(v1::GetVerdictRequest {
            analysis_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::Unauthenticated);
    server.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_every_gate() {
    let server = start(test_config()).await;
    let http = reqwest::Client::new();
    let gate = server.handle.readiness_gate("kafka");
    let r = http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("kafka"));
    gate.store(true, std::sync::atomic::Ordering::Release);
    let r = http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    server.stop().await;
}

//! Rollout controllers against `vigil serve`: Argo's `web` provider and
//! `kayenta` provider request shapes, Flagger webhooks, and analyses that
//! start themselves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod serve_support;

use serve_support::*;
use vigil_server::config::AutoRule;

async fn ingest(server: &TestServer, batches: Vec<vigil_proto::v1::SampleBatch>) {
    let mut grpc = server.client().await;
    let r = grpc
        .ingest(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.rejected, 0, "{:?}", r.errors);
}

/// Polls `url` until `done` holds on its JSON (bounded).
async fn poll(url: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let http = reqwest::Client::new();
    bounded(url, async {
        loop {
            let body = json(http.get(url).send().await.unwrap()).await;
            if done(&body) {
                return body;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kayenta_clients_get_an_execution_and_a_score() {
    let server = start(test_config()).await;
    let http = reqwest::Client::new();
    // What Argo's kayenta provider asks first: the config id by name.
    let configs = json(
        http.get(server.url("/canaryConfig?application=payment&configurationAccountName=x"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(configs[0]["name"], "default");
    let config_id = configs[0]["id"].as_str().unwrap().to_owned();

    // Then the execution, in the provider's payload shape.
    let payload = r#"{
        "scopes": {"default": {
            "controlScope": {"scope": "version=v7", "region": "", "step": 60, "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z"},
            "experimentScope": {"scope": "version=v8", "region": "", "step": 60, "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z"}
        }},
        "thresholds": {"pass": 90, "marginal": 75}
    }"#;
    let r = http
        .post(server.url(&format!(
            "/canary/{config_id}?application=payment&metricsAccountName=m&configurationAccountName=c&storageAccountName=s"
        )))
        .header("content-type", "application/json")
        .body(payload)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "Argo requires exactly 200");
    let id = json(r).await["canaryExecutionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = json(
        http.get(server.url(&format!("/canary/{id}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status["complete"], false);

    // The analysis is an ordinary one.
    let a = json(
        http.get(server.url(&format!("/v1/analyses/{id}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a["origin"], "kayenta");
    assert_eq!(a["spec"]["service"], "payment");
    assert_eq!(a["spec"]["baseline_version"], "v7");
    assert_eq!(a["spec"]["canary_version"], "v8");

    let t = slice_now();
    ingest(
        &server,
        vec![
            counts_batch("payment", "v7", t, 30, 1000, 1),
            counts_batch("payment", "v8", t, 30, 1000, 200),
        ],
    )
    .await;
    let done = poll(&server.url(&format!("/canary/{id}")), |b| {
        b["complete"] == true
    })
    .await;
    assert_eq!(done["result"]["judgeResult"]["score"]["score"], 0.0);
    assert_eq!(done["vigil"]["verdict"], "ROLLBACK");

    // Argo's `web` provider reads `$.verdict` of the verdict endpoint.
    let v = json(
        http.get(server.url(&format!("/v1/analyses/{id}/verdict")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["verdict"], "ROLLBACK");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flagger_hooks_judge_the_versions_emitting() {
    let server = start(test_config()).await;
    let http = reqwest::Client::new();
    let payload = r#"{"name": "checkout", "namespace": "shop", "phase": "Progressing", "checksum": "abc", "metadata": {}}"#;
    let hook = |name: &str| {
        http.post(server.url(&format!("/v1/flagger/{name}")))
            .header("content-type", "application/json")
            .body(payload)
            .send()
    };
    for h in ["confirm-rollout", "pre-rollout", "post-rollout", "event"] {
        assert_eq!(hook(h).await.unwrap().status(), 200, "{h}");
    }
    // No versions emitting yet: nothing argues against rolling out, and
    // nothing for promotion or rollback.
    assert_eq!(hook("rollout").await.unwrap().status(), 200);
    assert_eq!(hook("confirm-promotion").await.unwrap().status(), 409);
    assert_eq!(hook("rollback").await.unwrap().status(), 409);

    // v1 runs, then v2 starts emitting with many more errors.
    let t = slice_now();
    ingest(
        &server,
        vec![counts_batch("checkout", "v1", t, 30, 1000, 1)],
    )
    .await;
    ingest(
        &server,
        vec![counts_batch("checkout", "v2", t + 5.0, 30, 1000, 200)],
    )
    .await;
    let r = hook("rollout").await.unwrap();
    let body = json(r).await;
    let id = body["analysis_id"].as_str().unwrap().to_owned();
    let a = json(
        http.get(server.url(&format!("/v1/analyses/{id}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a["origin"], "flagger");
    assert_eq!(a["spec"]["baseline_version"], "v1");
    assert_eq!(a["spec"]["canary_version"], "v2");

    poll(&server.url(&format!("/v1/analyses/{id}/verdict")), |b| {
        b["verdict"] == "ROLLBACK"
    })
    .await;
    let r = hook("rollout").await.unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(
        json(r).await["analysis_id"],
        id.as_str(),
        "the same analysis"
    );
    assert_eq!(hook("confirm-promotion").await.unwrap().status(), 409);
    assert_eq!(hook("rollback").await.unwrap().status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_starts_its_own_analysis() {
    let mut config = test_config();
    config.auto_analysis =
        vec![serde_json::from_value::<AutoRule>(serde_json::json!({"service": "*"})).unwrap()];
    let server = start(config).await;
    let http = reqwest::Client::new();
    let t = slice_now();
    ingest(&server, vec![counts_batch("cart", "v1", t, 20, 500, 1)]).await;
    // One version alone starts nothing.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let list = json(http.get(server.url("/v1/analyses")).send().await.unwrap()).await;
    assert!(list["analyses"].as_array().unwrap().is_empty(), "{list}");

    ingest(
        &server,
        vec![counts_batch("cart", "v2", t + 5.0, 20, 500, 1)],
    )
    .await;
    let list = poll(&server.url("/v1/analyses?service=cart"), |b| {
        !b["analyses"].as_array().unwrap().is_empty()
    })
    .await;
    let a = &list["analyses"][0];
    assert_eq!(a["origin"], "auto");
    assert_eq!(a["spec"]["baseline_version"], "v1");
    assert_eq!(a["spec"]["canary_version"], "v2");
    assert_eq!(a["spec"]["metrics"].as_array().unwrap().len(), 2);
    // More data of v2 starts no second analysis.
    ingest(
        &server,
        vec![counts_batch("cart", "v2", t + 200.0, 2, 500, 1)],
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let list = json(http.get(server.url("/v1/analyses")).send().await.unwrap()).await;
    assert_eq!(list["analyses"].as_array().unwrap().len(), 1);
    server.stop().await;
}

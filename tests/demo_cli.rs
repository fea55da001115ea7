//! `vigil demo` end to end: the real binary with its embedded broker,
//! producers, Kafka consumer, judge and APIs, run to its own end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

/// Both analyses reach their verdicts (payment rolled back for its error
/// rate, checkout promoted), the summary names them with reasons, and the
/// process exits 0 having stopped everything it started. Played at 20x so
/// that the 2-minute story takes seconds; `--timeout-secs` bounds the test.
#[test]
fn demo_rolls_back_payment_and_promotes_checkout() {
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["demo", "--plain", "--speed", "20", "--timeout-secs", "150"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    // The addresses and ready-to-paste client lines come first.
    assert!(stdout.contains("gRPC on 127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("curl -s http://127.0.0.1:"), "{stdout}");
    assert!(
        stdout.contains("vigil.v1.VigilService/GetVerdict"),
        "{stdout}"
    );
    let summary = stdout
        .split("Both verdicts are in")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary:\n{stdout}"));
    let line = |prefix: &str| {
        summary
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{summary}"))
            .to_owned()
    };
    let payment = line("payment v7 -> v8: ROLLBACK");
    assert!(payment.contains("error rate of"), "{payment}");
    assert!(payment.ends_with("roll back"), "{payment}");
    let checkout = line("checkout v1 -> v2: PROMOTE");
    assert!(checkout.ends_with("promote"), "{checkout}");
}

//! End-to-end tests of `vigil compare`: the real binary, real files, stdin.

// Test code: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::Path;

use serde_json::Value;

mod common;
use common::{json, vigil, Scratch, ROOT};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn quick_start_examples_give_the_expected_verdicts() {
    let bad = json(
        &[
            "compare",
            "--baseline",
            "examples/baseline.txt",
            "--canary",
            "examples/canary.txt",
        ],
        None,
    );
    assert_eq!(bad["verdict"], "ROLLBACK");
    for key in [
        "n_baseline",
        "n_canary",
        "mann_whitney",
        "hodges_lehmann",
        "quantiles",
        "reason",
    ] {
        assert!(bad.get(key).is_some(), "missing {key}");
    }
    for key in ["u", "z", "p_value"] {
        assert!(bad["mann_whitney"][key].is_number(), "mann_whitney.{key}");
    }
    for key in ["shift", "ci_low", "ci_high", "relative_shift"] {
        assert!(
            bad["hodges_lehmann"][key].is_number(),
            "hodges_lehmann.{key}"
        );
    }
    for q in ["p50", "p90", "p99", "p99.9"] {
        assert!(
            bad["quantiles"]["canary"][q].is_number()
                && bad["quantiles"]["baseline"][q].is_number()
        );
    }
    assert!(bad["reason"].as_str().unwrap().ends_with("roll back"));

    let ok = json(
        &[
            "compare",
            "--baseline",
            "examples/baseline.txt",
            "--canary",
            "examples/canary_ok.txt",
        ],
        None,
    );
    assert_eq!(ok["verdict"], "PROMOTE", "{}", ok["reason"]);

    // The same canary in every input format gives the same answer.
    let jsonl = json(
        &[
            "compare",
            "--baseline",
            "examples/baseline.txt",
            "--canary",
            "examples/canary.jsonl",
            "--canary-field",
            "latency_ms",
        ],
        None,
    );
    assert_eq!(jsonl["mann_whitney"], bad["mann_whitney"]);

    let table = vigil(
        &[
            "compare",
            "--baseline",
            "examples/baseline.txt",
            "--canary",
            "examples/canary.txt",
        ],
        None,
    );
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(
        text.contains("verdict: ROLLBACK") && text.contains("Mann-Whitney U ="),
        "{text}"
    );
}

/// Integer inputs below 2048 are held exactly, so U and p equal scipy's on
/// the raw samples: checked on golden cases written out as plain files.
#[test]
fn integer_inputs_match_scipy_exactly() {
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{ROOT}/crates/vigil-stats/tests/golden/mann_whitney.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let scratch = Scratch::new("scipy");
    let mut checked = 0;
    for case in golden["cases"].as_array().unwrap() {
        let expand = |pairs: &Value| -> Vec<u64> {
            pairs
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|p| {
                    std::iter::repeat_n(p[0].as_u64().unwrap(), p[1].as_u64().unwrap() as usize)
                })
                .collect()
        };
        let (canary, baseline) = (expand(&case["canary"]), expand(&case["baseline"]));
        if canary.iter().chain(&baseline).any(|&v| v >= 2048) {
            continue;
        }
        let text = |v: &[u64]| v.iter().map(|x| format!("{x}\n")).collect::<String>();
        let name = case["name"].as_str().unwrap();
        let c = scratch.file(&format!("{name}-c.txt"), text(&canary).as_bytes());
        let b = scratch.file(&format!("{name}-b.txt"), text(&baseline).as_bytes());
        for alt in ["two-sided", "greater", "less"] {
            let r = json(
                &[
                    "compare",
                    "--baseline",
                    path(&b),
                    "--canary",
                    path(&c),
                    "--alternative",
                    alt,
                ],
                None,
            );
            assert_eq!(
                r["mann_whitney"]["u"].as_f64().unwrap(),
                case["u"].as_f64().unwrap(),
                "{name}"
            );
            let (ours, scipy) = (
                r["mann_whitney"]["p_value"].as_f64().unwrap(),
                case["p_asymptotic"][alt].as_f64().unwrap(),
            );
            assert!(
                ((ours - scipy) / scipy).abs() < 1e-9,
                "{name} {alt}: {ours} vs scipy {scipy}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 15, "checked {checked} cases");
}

#[test]
fn stdin_and_gzip_are_read() {
    let canary = std::fs::read(format!("{ROOT}/examples/canary.txt")).unwrap();
    let mut gz = gzip(&canary);
    let from_file = json(
        &[
            "compare",
            "--baseline",
            "examples/baseline.txt",
            "--canary",
            "examples/canary.txt",
        ],
        None,
    );
    let from_stdin = json(
        &[
            "compare",
            "--baseline",
            "examples/baseline.txt",
            "--canary",
            "-",
        ],
        Some(&canary),
    );
    assert_eq!(from_file, from_stdin);
    let scratch = Scratch::new("gz");
    let gz_path = scratch.file("canary.txt.gz", &gz);
    let from_gz = json(
        &[
            "compare",
            "--baseline",
            "examples/baseline.txt",
            "--canary",
            path(&gz_path),
        ],
        None,
    );
    assert_eq!(from_file, from_gz);
    let from_gz_stdin = json(
        &[
            "compare",
            "--baseline",
            "examples/baseline.txt",
            "--canary",
            "-",
        ],
        Some(&gz),
    );
    assert_eq!(from_file, from_gz_stdin);
    gz.truncate(gz.len() / 2);
    let truncated = scratch.file("cut.txt.gz", &gz);
    let out = vigil(
        &[
            "compare",
            "--baseline",
            "examples/baseline.txt",
            "--canary",
            path(&truncated),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cut.txt.gz"));
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn bad_input_names_the_file_and_line_and_exits_non_zero() {
    let scratch = Scratch::new("bad");
    let good = scratch.file("good.txt", b"1\n2\n3\n");
    for (name, content, needle) in [
        ("word.txt", &b"1\n2\nabc\n"[..], "line 3"),
        ("nan.txt", b"1\nNaN\n", "line 2"),
        ("inf.txt", b"inf\n", "line 1"),
        ("negative.txt", b"5\n-3\n", "negative value -3 at line 2"),
        ("empty.txt", b"", "no samples"),
        ("binary.txt", b"\xff\xfe\x00\n", "line 1"),
    ] {
        let bad = scratch.file(name, content);
        let out = vigil(
            &["compare", "--baseline", path(&good), "--canary", path(&bad)],
            None,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(name) && stderr.contains(needle),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
    let out = vigil(
        &[
            "compare",
            "--baseline",
            path(&good),
            "--canary",
            "/nonexistent/c.txt",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/c.txt"));
}

//! What the end-to-end tests share: a scratch directory and running the
//! real `vigil` binary.

// Each test binary includes this module and uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

/// The repository root: the binary runs there, so `examples/` resolves.
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A scratch directory removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A fresh directory named after the test process and `name`.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vigil-e2e-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// Writes a file into the directory and returns its path.
    pub fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `vigil` with `args` from the repository root, feeding `stdin`.
pub fn vigil(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .current_dir(ROOT)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        // The command may stop reading early (a replay's first verdict).
        let _ = child.stdin.take().unwrap().write_all(input);
    }
    child.wait_with_output().unwrap()
}

/// Runs `vigil ARGS --json`, asserts success and parses its output.
pub fn json(args: &[&str], stdin: Option<&[u8]>) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = vigil(&all, stdin);
    assert!(
        out.status.success(),
        "vigil {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A child process killed (and reaped) when the test ends, however it ends.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads lines of `out` until one starts with `prefix`; returns the rest,
/// trimmed. Panics at the end of the output.
pub fn line_after(out: &mut impl BufRead, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "no `{prefix}` line");
        if let Some(rest) = line.trim().strip_prefix(prefix) {
            return rest.to_owned();
        }
    }
}

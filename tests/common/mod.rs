//! Helpers shared by the end-to-end tests: run the real `jangteo` binary, wait for
//! conditions under a timeout, start and stop node processes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_jangteo");
pub const WAIT: Duration = Duration::from_secs(30);

/// A `jangteo node` process, killed when dropped.
pub struct NodeProc {
    pub child: Child,
    pub dir: PathBuf,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn jangteo(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run jangteo")
}

pub fn json_ok(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = jangteo(dir, &all);
    assert!(
        out.status.success(),
        "jangteo {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout of {args:?} is not one JSON value: {e}"))
}

/// Polls `check` until it returns Some, failing after `WAIT`.
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn start_node(dir: &Path, bootstrap: Option<&str>) -> (NodeProc, Value) {
    start_node_with(dir, bootstrap, &[])
}

/// Starts `jangteo node` listening on loopback TCP with extra flags (such as `--relay`) and
/// waits for its API.
pub fn start_node_with(dir: &Path, bootstrap: Option<&str>, extra: &[&str]) -> (NodeProc, Value) {
    let mut args = vec!["--listen", "/ip4/127.0.0.1/tcp/0"];
    if let Some(b) = bootstrap {
        args.extend(["--bootstrap", b]);
    }
    args.extend_from_slice(extra);
    start_node_args(dir, &args)
}

/// Starts `jangteo node --no-mdns ARGS…` (no default listen address) and waits until its
/// API answers with at least one address (for a node behind NAT: its relayed address).
pub fn start_node_args(dir: &Path, args: &[&str]) -> (NodeProc, Value) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.with_extension("log"))
        .expect("log file");
    let child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(["node", "--no-mdns"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn node");
    let node = NodeProc {
        child,
        dir: dir.to_owned(),
    };
    let id = wait_for("the node's API and an address", || {
        let out = jangteo(&node.dir, &["--json", "id"]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        (out.status.success() && v["addrs"].as_array().is_some_and(|a| !a.is_empty())).then_some(v)
    });
    (node, id)
}

pub fn tcp_addr(id: &Value) -> String {
    id["addrs"]
        .as_array()
        .expect("addrs")
        .iter()
        .filter_map(Value::as_str)
        .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/"))
        .expect("a loopback TCP address")
        .to_owned()
}

/// Polls `jangteo trade ID` on the node in `dir` until the trade is in `state`.
pub fn trade_state_is(dir: &Path, trade: &str, state: &str) -> Value {
    wait_for(&format!("trade {trade} to be {state}"), || {
        let v = json_ok(dir, &["trade", trade]);
        (v["state"] == state).then_some(v)
    })
}

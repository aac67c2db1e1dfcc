//! Helpers shared by the end-to-end tests: run the real `jangteo` binary, wait for
//! conditions under a timeout, start and stop node processes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use jangteo_node::api::types::{CliErrorBody, IdView, TradeStateName, TradeView};
use serde::de::DeserializeOwned;

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

/// Stdout of `jangteo --json ARGS…`; fails the test unless the command succeeded.
fn json_stdout(dir: &Path, args: &[&str]) -> Vec<u8> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = jangteo(dir, &all);
    assert!(
        out.status.success(),
        "jangteo {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out.stdout
}

/// `jangteo --json ARGS…` decoded as the contract's type `T` (`jangteo_node::api::types`);
/// fails the test unless the command succeeded and printed exactly that shape.
pub fn json_as<T: DeserializeOwned>(dir: &Path, args: &[&str]) -> T {
    let stdout = json_stdout(dir, args);
    serde_json::from_slice(&stdout).unwrap_or_else(|e| {
        panic!(
            "stdout of {args:?} is not the contract's shape: {e}\n{}",
            String::from_utf8_lossy(&stdout)
        )
    })
}

/// `jangteo --json ARGS…` for use inside a wait, decoded as the contract's type `T`: `None`
/// when the command failed (the thing is not there yet, the node is not reachable yet) or
/// its stdout is not that shape, so the caller polls again instead of failing before its
/// deadline.
pub fn json_try_as<T: DeserializeOwned>(dir: &Path, args: &[&str]) -> Option<T> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = jangteo(dir, &all);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The error a failed `jangteo --json …` printed on stdout; fails the test unless stdout is
/// exactly one [`CliErrorBody`].
pub fn cli_error(out: &Output) -> CliErrorBody {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON error {{\"error\": {{code, message}}}}: {e}\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// How long a wait sleeps between two checks.
pub const POLL: Duration = Duration::from_millis(100);

/// Polls `check` every [`POLL`] until it returns Some, or returns None once `timeout` has
/// passed (checking one last time at the deadline). `check` must answer None for "not yet"
/// and must not panic for it: only the caller decides, at the deadline, that it failed.
pub fn poll_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(POLL.min(deadline - now));
    }
}

/// Polls `check` until it returns Some, failing after `timeout`.
pub fn wait_for_within<T>(timeout: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    poll_until(timeout, check)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Polls `check` until it returns Some, failing after `WAIT`.
pub fn wait_for<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    wait_for_within(WAIT, what, check)
}

pub fn start_node(dir: &Path, bootstrap: Option<&str>) -> (NodeProc, IdView) {
    start_node_with(dir, bootstrap, &[])
}

/// Starts `jangteo node` listening on loopback TCP with extra flags (such as `--relay`) and
/// waits for its API.
pub fn start_node_with(dir: &Path, bootstrap: Option<&str>, extra: &[&str]) -> (NodeProc, IdView) {
    let mut args = vec!["--listen", "/ip4/127.0.0.1/tcp/0"];
    if let Some(b) = bootstrap {
        args.extend(["--bootstrap", b]);
    }
    args.extend_from_slice(extra);
    start_node_args(dir, &args)
}

/// Starts `jangteo node --no-mdns ARGS…` (no default listen address) and waits until its
/// API answers with at least one address (for a node behind NAT: its relayed address).
pub fn start_node_args(dir: &Path, args: &[&str]) -> (NodeProc, IdView) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.with_extension("log"))
        .expect("log file");
    // The test network's listing stamp difficulty (SPEC §3.1), unless the test sets one.
    let stamp_bits = (!args.contains(&"--listing-stamp-bits")).then(|| {
        [
            "--listing-stamp-bits".to_owned(),
            jangteo_node::TEST_NETWORK_STAMP_BITS.to_string(),
        ]
    });
    let child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(["node", "--no-mdns"])
        .args(args)
        .args(stamp_bits.iter().flatten())
        .stdin(Stdio::null())
        // A refusal at start is printed on stdout: keep it in the log too.
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("spawn node");
    let mut node = NodeProc {
        child,
        dir: dir.to_owned(),
    };
    let id = wait_for("the node's API and an address", || {
        // A node process that exited will never answer: say so now, with its log.
        if let Ok(Some(status)) = node.child.try_wait() {
            let log = std::fs::read_to_string(node.dir.with_extension("log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            panic!(
                "the node in {} exited ({status}) before its API answered; last log lines:\n{}",
                node.dir.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let v: IdView = json_try_as(&node.dir, &["id"])?;
        (!v.addrs.is_empty()).then_some(v)
    });
    (node, id)
}

pub fn tcp_addr(id: &IdView) -> String {
    id.addrs
        .iter()
        .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/"))
        .expect("a loopback TCP address")
        .to_owned()
}

/// Polls `jangteo trade ID` on the node in `dir` until the trade is in `state`. A trade the
/// node does not hold yet (exit 1) is "not yet", like one in another state; at the deadline
/// the failure names the last answer seen.
pub fn trade_state_is(dir: &Path, trade: &str, state: TradeStateName) -> TradeView {
    let mut last = None;
    poll_until(WAIT, || {
        let v: TradeView = json_try_as(dir, &["trade", trade])?;
        last = Some(v.state);
        (v.state == state).then_some(v)
    })
    .unwrap_or_else(|| {
        panic!(
            "timed out after {WAIT:?} waiting for trade {trade} to be {state} on {}; last state seen: {}",
            dir.display(),
            last.map_or_else(|| "none (the node does not hold the trade)".to_owned(), |s| s.to_string())
        )
    })
}

/// The Python venv `.ci/deps` prepares (`$JANGTEO_VENV`, else `~/.cache/jangteo-venv`), and
/// the path of `tool` in its `bin/`, which must exist: a missing tool fails, it never skips.
pub fn venv_tool(tool: &str) -> PathBuf {
    let venv = std::env::var_os("JANGTEO_VENV")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            dirs::home_dir()
                .expect("a home directory")
                .join(".cache/jangteo-venv")
        });
    let bin = venv.join("bin").join(tool);
    assert!(
        bin.exists(),
        "{} is missing: run .ci/deps to prepare the Python venv (JANGTEO_VENV selects another)",
        bin.display()
    );
    bin
}

/// `img` encoded as a PNG file's bytes.
pub fn png_of(img: &image::RgbImage) -> Vec<u8> {
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    )
    .expect("png");
    png
}

//! Another implementation can join (issue 16): a js-libp2p peer written from SPEC alone
//! (`tests/interop/peer.mjs`: TCP, noise, yamux, gossipsub with the settings of SPEC §8.2,
//! its own deterministic CBOR, blake3 and ed25519) dials a real `jangteo node` process on
//! loopback and joins the `bikes` listing topic.
//!
//! - It receives a listing the node posts, and the content id, listing id, author and
//!   signature it computes are the node's.
//! - It publishes a listing it encoded and signed itself, and the node stores it, shows it
//!   and finds it.
//! - It publishes a listing whose signature does not verify; the node rejects the message
//!   (the peer's gossip score goes negative) and stores nothing.
//!
//! The npm packages are pinned by `tests/interop/package-lock.json` and installed by
//! `.ci/deps` under `$JANGTEO_INTEROP` (default `~/.cache/jangteo-interop`). Node.js and the
//! packages must be there: a missing tool fails the test, never skips it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{cli_error, jangteo, json_as, json_try_as, start_node, tcp_addr, wait_for};
use jangteo_node::api::types::{ListingRef, ListingView, PeerView, StatusView};
use serde::Deserialize;
use serde_json::json;

/// How long one step of the JS peer may take.
const STEP: Duration = Duration::from_secs(20);

/// One line the JS peer prints (see the head of `peer.mjs`).
#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum JsEvent {
    /// SPEC §9 vector 2 re-made by the peer's encoder and signer.
    Vector { ok: bool, id: String },
    /// Connected, subscribed, and the node's subscription has reached the peer.
    Ready { peer_id: String, topic: String },
    /// A gossip message received, as the peer checked it.
    Message(Received),
    /// A listing the peer published.
    Published(Published),
    /// The peer failed.
    Error { message: String },
}

#[derive(Debug, Deserialize)]
struct Received {
    topic: String,
    /// "unsigned": no from, seqno or signature on the gossip message.
    #[serde(rename = "type")]
    kind_of_message: String,
    /// The id the peer's gossipsub gave the message, hex.
    msg_id: String,
    content_id: String,
    canonical: bool,
    sig_ok: bool,
    kind: Option<String>,
    author: Option<String>,
    listing_id: Option<String>,
    listing: Option<serde_json::Value>,
    problem: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Published {
    listing_id: String,
    content_id: String,
    author: String,
    recipients: Vec<String>,
    bad_signature: bool,
    sig_ok: bool,
}

/// The folder `.ci/deps` installed the npm packages in, which must hold them, installed from
/// this checkout's lock file.
fn interop_packages() -> PathBuf {
    let dir = std::env::var_os("JANGTEO_INTEROP")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            dirs::home_dir()
                .expect("a home directory")
                .join(".cache/jangteo-interop")
        });
    let ours = std::fs::read(source_dir().join("package-lock.json")).expect("the lock file");
    let installed = std::fs::read(dir.join(".package-lock.json")).unwrap_or_default();
    assert!(
        ours == installed && dir.join("node_modules").is_dir(),
        "the npm packages of tests/interop are not installed at {} from this package-lock.json: \
         run .ci/deps (JANGTEO_INTEROP selects another folder)",
        dir.display()
    );
    dir.join("node_modules")
}

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop")
}

/// The `node peer.mjs` process, killed when dropped.
struct JsPeer {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::Receiver<Result<JsEvent, String>>,
    log: PathBuf,
}

impl Drop for JsPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl JsPeer {
    /// Copies the script into `dir` beside a link to the installed packages (an ES module
    /// finds its packages only in a `node_modules` above it) and starts it.
    fn start(dir: &Path, dial: &str, category: &str) -> Self {
        std::fs::create_dir_all(dir).expect("js dir");
        std::fs::copy(source_dir().join("peer.mjs"), dir.join("peer.mjs")).expect("copy peer.mjs");
        std::os::unix::fs::symlink(interop_packages(), dir.join("node_modules"))
            .expect("link node_modules");
        let log = dir.join("peer.log");
        let mut child = Command::new("node")
            .arg(dir.join("peer.mjs"))
            .args(["--dial", dial, "--category", category])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("peer log"))
            .spawn()
            .expect("run node (Node.js >= 20.19 must be on PATH: see .ci/deps)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let event =
                    serde_json::from_str::<JsEvent>(&line).map_err(|e| format!("{e}: {line}"));
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            events,
            log,
        }
    }

    fn send(&mut self, cmd: serde_json::Value) {
        writeln!(self.stdin, "{cmd}").expect("write to the JS peer");
        self.stdin.flush().expect("flush");
    }

    /// The next event `pick` takes, skipping the others; fails on an error event, a line
    /// that is not an event, the peer's exit, or after [`STEP`].
    fn expect<T>(&self, what: &str, mut pick: impl FnMut(JsEvent) -> Option<T>) -> T {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = match self.events.recv_timeout(left) {
                Ok(Ok(JsEvent::Error { message })) => {
                    panic!(
                        "the JS peer failed waiting for {what}: {message}{}",
                        self.tail()
                    )
                }
                Ok(Ok(e)) => e,
                Ok(Err(line)) => panic!("the JS peer printed a line that is no event: {line}"),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("timed out after {STEP:?} waiting for {what}{}", self.tail())
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("the JS peer exited waiting for {what}{}", self.tail())
                }
            };
            if let Some(v) = pick(event) {
                return v;
            }
        }
    }

    fn tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        format!(
            "\nlast lines of {}:\n{}",
            self.log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

#[test]
fn a_js_libp2p_peer_joins_the_gossip() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (node, node_id) = start_node(&tmp.path().join("node"), None);
    let mut js = JsPeer::start(&tmp.path().join("js"), &tcp_addr(&node_id), "bikes");

    let vector = js.expect("the SPEC vector", |e| match e {
        JsEvent::Vector { ok, id } => Some((ok, id)),
        _ => None,
    });
    assert!(
        vector.0,
        "the JS encoder does not reproduce SPEC vector 2 (got id {})",
        vector.1
    );
    let (js_peer, topic) = js.expect("the peer to be ready", |e| match e {
        JsEvent::Ready { peer_id, topic } => Some((peer_id, topic)),
        _ => None,
    });
    assert_eq!(topic, "jangteo/v1/listings/bikes");
    // The node sees the JS peer on a listing topic: a post reaches it right away.
    wait_for("the node to see the JS peer on a listing topic", || {
        let s: StatusView = json_try_as(&node.dir, &["status"])?;
        let peers: Vec<PeerView> = json_try_as(&node.dir, &["peers"])?;
        (s.gossip_peers > 0 && peers.iter().any(|p| p.peer_id == js_peer)).then_some(())
    });

    // The node's listing reaches the JS peer, which finds the same ids and a good signature.
    let posted: ListingRef = json_as(
        &node.dir,
        &[
            "post",
            "--title",
            "Brompton folding bike",
            "--price",
            "1500000",
            "--currency",
            "KRW",
            "--category",
            "bikes",
            "--condition",
            "good",
            "--description",
            "2019 model, pickup in Mapo",
            "--location",
            "37.5563,126.9220",
        ],
    );
    let shown: ListingView = json_as(&node.dir, &["show", &posted.id]);
    let got = js.expect("the node's listing on the JS peer", |e| match e {
        JsEvent::Message(m) if m.listing_id.as_deref() == Some(posted.id.as_str()) => Some(m),
        _ => None,
    });
    assert_eq!(got.topic, "jangteo/v1/listings/bikes");
    assert_eq!(
        got.kind_of_message, "unsigned",
        "gossip messages carry no signature"
    );
    assert_eq!(got.problem, None, "{got:?}");
    assert_eq!(got.kind.as_deref(), Some("listing"));
    assert_eq!(
        got.content_id, shown.object,
        "blake3 of the bytes is the content id"
    );
    assert_eq!(
        got.msg_id,
        shown.object[..40],
        "message id = the first 20 bytes of blake3(data)"
    );
    assert!(got.canonical, "the bytes are deterministic CBOR: {got:?}");
    assert!(got.sig_ok, "the signature verifies in JS: {got:?}");
    assert_eq!(got.author.as_deref(), Some(node_id.peer_id.as_str()));
    let body = got.listing.expect("the decoded body");
    assert_eq!(body["title"], "Brompton folding bike");
    assert_eq!(body["price"], 1_500_000);
    assert_eq!(body["currency"], "KRW");
    assert_eq!(body["category"], "bikes");
    assert_eq!(body["condition"], "good");
    assert_eq!(body["location"], json!([37_556_300, 126_922_000]));
    assert_eq!(body["seq"], 1);
    assert_eq!(body["updated"], shown.updated_at);

    // A listing the JS peer encoded and signed: the node stores it, shows it and finds it.
    js.send(json!({
        "cmd": "publish",
        "title": "Strida from a js-libp2p peer",
        "price": 350_000,
        "currency": "KRW",
        "description": "encoded and signed in JavaScript",
    }));
    let good = js.expect("the JS peer's listing to be published", |e| match e {
        JsEvent::Published(p) => Some(p),
        _ => None,
    });
    assert!(!good.bad_signature && good.sig_ok);
    assert_eq!(
        good.author, js_peer,
        "the peer signs with its libp2p identity key"
    );
    assert!(
        good.recipients.contains(&node_id.peer_id),
        "published to the node: {good:?}"
    );
    let stored = wait_for("the node to store the JS peer's listing", || {
        json_try_as::<ListingView>(&node.dir, &["show", &good.listing_id])
    });
    assert_eq!(stored.object, good.content_id);
    assert_eq!(stored.seller, js_peer);
    assert_eq!(stored.title, "Strida from a js-libp2p peer");
    assert_eq!(stored.description, "encoded and signed in JavaScript");
    assert_eq!(stored.price, 350_000);
    assert_eq!(stored.category, "bikes");
    assert_eq!(stored.seq, 1);
    wait_for("the node's search to find it", || {
        let hits: Vec<ListingView> = json_try_as(&node.dir, &["search", "strida"])?;
        hits.iter().any(|h| h.id == good.listing_id).then_some(())
    });

    // A listing whose signature does not verify: the node rejects the message, which costs
    // the peer gossip score, and stores nothing.
    js.send(json!({
        "cmd": "publish",
        "title": "Forged tandem",
        "price": 1000,
        "currency": "KRW",
        "bad_signature": true,
    }));
    let bad = js.expect("the forged listing to be published", |e| match e {
        JsEvent::Published(p) => Some(p),
        _ => None,
    });
    assert!(bad.bad_signature && !bad.sig_ok);
    assert!(bad.recipients.contains(&node_id.peer_id), "{bad:?}");
    let score = wait_for("the node to reject the forged listing", || {
        let peers: Vec<PeerView> = json_try_as(&node.dir, &["peers"])?;
        let score = peers.iter().find(|p| p.peer_id == js_peer)?.score?;
        (score < 0.0).then_some(score)
    });
    let out = jangteo(&node.dir, &["--json", "show", &bad.listing_id]);
    assert!(!out.status.success(), "the forged listing is not stored");
    assert_eq!(cli_error(&out).error.code, "not_found");
    let hits: Vec<ListingView> = json_as(&node.dir, &["search", "tandem"]);
    assert!(
        hits.is_empty(),
        "the forged listing is not indexed: {hits:?}"
    );
    let status: StatusView = json_as(&node.dir, &["status"]);
    assert_eq!(status.listings, 2, "the node's own and the JS peer's");

    js.send(json!({"cmd": "stop"}));
    let exited = common::poll_until(STEP, || js.child.try_wait().ok().flatten())
        .expect("the JS peer to stop");
    assert!(exited.success(), "the JS peer exited with {exited}");
    eprintln!(
        "js-libp2p interop: score after one forged listing {score:.1}; whole test {} ms",
        started.elapsed().as_millis()
    );
}

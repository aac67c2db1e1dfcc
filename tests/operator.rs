//! What a relay operator relies on, with real node processes: the config file in the data
//! directory (`node.toml`) holds the node's flags, command-line flags win over it, a bad file
//! stops the node with the file, line and key; `--metrics` serves Prometheus metrics on an
//! address of its own with libp2p's and the node's figures.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use jangteo_node::api::types::StatusView;

/// A loopback port free now (bound, then released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// `GET path` on `addr`; the status code and body.
fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let host = addr;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of the first sample line of `metric` (with `labels` inside its braces, if any).
fn sample(text: &str, metric: &str, labels: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(metric)?;
        let rest = if labels.is_empty() {
            rest.strip_prefix(' ').or_else(|| {
                rest.strip_prefix('{')
                    .and_then(|r| r.split_once("} ").map(|(_, v)| v))
            })?
        } else {
            let (inside, v) = rest.strip_prefix('{')?.split_once("} ")?;
            if !inside.contains(labels) {
                return None;
            }
            v
        };
        rest.trim().parse().ok()
    })
}

/// Runs `jangteo node ARGS…` that must refuse to start: its exit code and stderr, or a
/// failure if it is still running after 30 s.
fn node_refuses(dir: &Path, args: &[&str]) -> (i32, String) {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(["node", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = child.stderr.take().expect("stderr");
    let mut stdout = child.stdout.take().expect("stdout");
    // The pipes close when the process exits: read them on a thread, wait with a timeout.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut err = String::new();
        let mut out = String::new();
        let _ = stderr.read_to_string(&mut err);
        let _ = stdout.read_to_string(&mut out);
        let _ = tx.send(format!("{err}{out}"));
    });
    let Ok(text) = rx.recv_timeout(WAIT) else {
        let _ = child.kill();
        panic!("the node started although it should have refused {args:?}");
    };
    let status = child.wait().expect("wait");
    (status.code().unwrap_or(-1), text)
}

#[test]
fn config_file_sets_flags_and_flags_win() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("n");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("node.toml"),
        "# follow two categories\nfollow = [\"bikes\", \"books\"]\nno-mdns = true\n",
    )
    .expect("write");
    let (node, _) = start_node(&dir, None);
    let st: StatusView = json_as(&dir, &["status"]);
    assert_eq!(
        st.following,
        vec!["bikes", "books"],
        "the file's follow list"
    );
    drop(node);

    // A flag on the command line replaces the file's list.
    let (node, _) = start_node_with(&dir, None, &["--follow", "tickets"]);
    let st: StatusView = json_as(&dir, &["status"]);
    assert_eq!(st.following, vec!["tickets"], "the flag wins over the file");
    drop(node);
}

#[test]
fn a_bad_config_file_stops_the_node_with_file_line_and_key() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("n");
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("node.toml");

    std::fs::write(&file, "relay = true\nmailbox-cap = 64\n").expect("write");
    let (code, err) = node_refuses(&dir, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("node.toml: line 2") && err.contains("mailbox-cap"),
        "names the file, the line and the key: {err}"
    );

    std::fs::write(&file, "mailbox-cap-mib = 64\n").expect("write");
    let (code, err) = node_refuses(&dir, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("relays only"), "{err}");

    std::fs::write(&file, "relay = \"yes\"\n").expect("write");
    let (code, err) = node_refuses(&dir, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("line 1"), "{err}");

    std::fs::remove_file(&file).expect("rm");
    let missing = tmp.path().join("nowhere.toml");
    let (code, err) = node_refuses(&dir, &["--config", missing.to_str().expect("utf-8")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nowhere.toml"), "{err}");
}

#[test]
fn metrics_from_the_config_file_count_peers_gossip_and_api_requests() {
    let tmp = tempfile::tempdir().expect("tmp");
    let relay_dir = tmp.path().join("relay");
    std::fs::create_dir_all(&relay_dir).expect("dir");
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    std::fs::write(
        relay_dir.join("node.toml"),
        format!("relay = true\nmailbox-cap-mib = 64\nmetrics = \"{metrics_addr}\"\n"),
    )
    .expect("write");
    let (_relay, relay_id) = start_node(&relay_dir, None);
    let (_seller, _) = start_node(&tmp.path().join("seller"), Some(&tcp_addr(&relay_id)));

    // The relay's API is timed by route (ids taken out), on the API's own port.
    let api = std::fs::read_to_string(relay_dir.join("api.json")).expect("api.json");
    let api: serde_json::Value = serde_json::from_str(&api).expect("json");
    let api = api["addr"].as_str().expect("addr").to_owned();
    let token = std::fs::read_to_string(relay_dir.join("api.token")).expect("token");
    assert_eq!(get(&api, "/v1/status", Some(token.trim())).0, 200);
    // Metrics are not served on the API port.
    assert_ne!(get(&api, "/metrics", None).0, 200);

    json_as::<serde_json::Value>(
        &tmp.path().join("seller"),
        &[
            "post",
            "--title",
            "Brompton folding bike",
            "--price",
            "900000",
            "--currency",
            "KRW",
            "--category",
            "bikes",
        ],
    );
    let text = wait_for(
        "the relay's metrics to show the peer and the stored listing",
        || {
            let (status, text) = get(&metrics_addr, "/metrics", None);
            assert_eq!(status, 200);
            let ok = sample(&text, "jangteo_peers", "")? >= 1.0
                && sample(&text, "jangteo_listings_stored_total", "")? >= 1.0
                && sample(&text, "jangteo_gossip_received_total", "what=\"accept\"")? >= 1.0;
            ok.then_some(text)
        },
    );
    assert!(
        sample(
            &text,
            "jangteo_api_requests_total",
            "method=\"GET\",route=\"/v1/status\""
        )
        .is_some_and(|n| n >= 1.0),
        "API requests by route:\n{text}"
    );
    assert!(
        text.contains("jangteo_api_request_seconds_bucket"),
        "latency histogram"
    );
    assert!(
        sample(&text, "jangteo_mailbox_bytes", "").is_some(),
        "mailbox bytes"
    );
    assert!(
        text.contains("libp2p_swarm_connections_established_total")
            || text.contains("libp2p_swarm_connections_incoming_total"),
        "libp2p's own metrics:\n{text}"
    );
    assert!(text.contains("libp2p_gossipsub_messages_total"), "{text}");
}

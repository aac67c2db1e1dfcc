//! How a scenario learns that a node holds a listing: by asking its API every
//! [`crate::scenarios::POLL`] (`poll`, the first way), or by one `GET /v1/events` stream per
//! node filtered to `listing_stored`, read as the node sends it (`events`, the default since
//! issue 16). Polling costs a request per node and listing every 10 ms (4 900 requests a
//! second at 50 nodes, on the same two cores as the nodes) and adds up to 10 ms of
//! granularity; a stream costs nothing while idle and reports a listing the moment the node
//! stored it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use jangteo_node::api::types::EventView;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::procs::Api;

/// How arrival is observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Observe {
    /// `GET /v1/listings/{id}` on every node every 10 ms.
    Poll,
    /// One `listing_stored` event stream per node.
    Events,
}

/// Longest a stream may take to send its `subscribed` event.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of one unfinished line kept from a stream (an event is far shorter).
const LINE_MAX_BYTES: usize = 64 * 1024;

/// When each watched node stored each listing, as its event stream said.
type Seen = HashMap<String, HashMap<usize, Instant>>;

/// Open event streams of some nodes; dropping it closes them.
#[derive(Debug)]
pub struct Arrivals {
    seen: Arc<Mutex<Seen>>,
    changed: watch::Receiver<u64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Arrivals {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Arrivals {
    /// Opens one stream per `(node index, api)` and waits until each is subscribed.
    pub async fn watch(nodes: Vec<(usize, Api)>) -> Result<Self> {
        // Streams last as long as the scenario: no overall request timeout.
        let http = reqwest::Client::builder().no_proxy().build()?;
        let seen = Arc::new(Mutex::new(Seen::new()));
        let (tx, changed) = watch::channel(0u64);
        let tx = Arc::new(tx);
        let mut tasks = Vec::new();
        let mut ready = Vec::new();
        for (i, api) in nodes {
            let resp = http
                .get(format!("{}/v1/events?kinds=listing_stored", api.base()))
                .bearer_auth(api.token())
                .send()
                .await
                .with_context(|| format!("event stream of node {i}"))?;
            if !resp.status().is_success() {
                bail!("event stream of node {i}: {}", resp.status());
            }
            let (up_tx, up_rx) = tokio::sync::oneshot::channel();
            ready.push((i, up_rx));
            tasks.push(tokio::spawn(read_stream(
                i,
                resp,
                seen.clone(),
                tx.clone(),
                up_tx,
            )));
        }
        let out = Self {
            seen,
            changed,
            tasks,
        };
        for (i, up) in ready {
            match tokio::time::timeout(SUBSCRIBE_TIMEOUT, up).await {
                Ok(Ok(())) => {}
                _ => bail!("node {i}'s event stream did not start"),
            }
        }
        Ok(out)
    }

    /// Waits until every node of `nodes` stored `listing`, or until `deadline`; returns
    /// when each did (nodes missing did not by then).
    pub async fn wait(
        &mut self,
        listing: &str,
        nodes: &[usize],
        deadline: Instant,
    ) -> HashMap<usize, Instant> {
        loop {
            self.changed.borrow_and_update();
            let got = self.of(listing);
            if nodes.iter().all(|n| got.contains_key(n)) {
                return got;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.changed.changed()).await {
                Ok(Ok(())) => {}
                _ => return self.of(listing),
            }
        }
    }

    fn of(&self, listing: &str) -> HashMap<usize, Instant> {
        self.seen
            .lock()
            .map(|s| s.get(listing).cloned().unwrap_or_default())
            .unwrap_or_default()
    }
}

async fn read_stream(
    i: usize,
    mut resp: reqwest::Response,
    seen: Arc<Mutex<Seen>>,
    changed: Arc<watch::Sender<u64>>,
    up: tokio::sync::oneshot::Sender<()>,
) {
    let mut up = Some(up);
    let mut buf: Vec<u8> = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let at = Instant::now();
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let Some(data) = line.strip_prefix(b"data:") else {
                continue;
            };
            match serde_json::from_slice::<EventView>(data.trim_ascii()) {
                Ok(EventView::ListingStored { listing }) => {
                    if let Ok(mut s) = seen.lock() {
                        s.entry(listing).or_default().entry(i).or_insert(at);
                    }
                    changed.send_modify(|n| *n += 1);
                }
                Ok(EventView::Subscribed { .. }) => {
                    if let Some(u) = up.take() {
                        let _ = u.send(());
                    }
                }
                _ => {}
            }
        }
        if buf.len() > LINE_MAX_BYTES {
            buf.clear();
        }
    }
}

//! `jangteo-testnet`: many jangteo nodes on one machine, for tests and scenarios.
//!
//! This module owns the in-process [`Cluster`]: N real nodes (real RocksDB in temporary
//! folders, real libp2p over TCP on loopback, mDNS off), wired into one network, with helpers
//! that wait for events under a timeout. Process-based scenarios and reports build on it.

pub mod abuse;
pub mod bootstrap;
pub mod chat_bench;
pub mod flood;
pub mod holepunch;
pub mod hops;
pub mod ingest_bench;
pub mod memory;
pub mod netns;
pub mod observe;
pub mod plot;
pub mod procs;
pub mod scenarios;
pub mod search_bench;
pub mod spam;
pub mod web_bench;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use jangteo_node::{Node, NodeConfig, NodeEvent};
use tokio::sync::broadcast;

/// How the nodes of a cluster are wired at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// Node i dials node i-1: objects must be forwarded hop by hop.
    Chain,
    /// Every node dials node 0.
    Star,
}

/// N in-process nodes.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes, in start order.
    pub nodes: Vec<Node>,
    dirs: Vec<tempfile::TempDir>,
}

/// Waits until `check` returns `Some`, polling the node state every 50 ms, or fails after
/// `timeout` with `what` in the message.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `node` holds `trade` in `state` (a trade not there yet counts as not yet), and
/// returns its view; fails after `timeout`.
pub async fn trade_state_is(
    node: &Node,
    trade: &str,
    state: &str,
    timeout: Duration,
) -> Result<jangteo_node::api::types::TradeView> {
    wait_for(timeout, &format!("trade {trade} to be {state}"), || async {
        node.trades
            .view(trade)
            .ok()
            .filter(|v| v.state.as_str() == state)
    })
    .await
}

/// Waits for a node event matching `pred`, or fails after `timeout`.
pub async fn wait_event(
    rx: &mut broadcast::Receiver<NodeEvent>,
    timeout: Duration,
    mut pred: impl FnMut(&NodeEvent) -> bool,
) -> Result<NodeEvent> {
    tokio::time::timeout(timeout, async {
        loop {
            match rx.recv().await {
                Ok(ev) if pred(&ev) => return Ok(ev),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => bail!("node stopped"),
            }
        }
    })
    .await
    .context("timed out waiting for a node event")?
}

/// The first loopback TCP address a node listens on, with its peer id.
pub async fn tcp_addr(node: &Node) -> Result<String> {
    wait_for(Duration::from_secs(10), "a listen address", || async {
        node.network
            .info()
            .await
            .ok()?
            .listen_addrs
            .into_iter()
            .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/"))
    })
    .await
}

impl Cluster {
    /// Starts `n` nodes wired as `topology`, and waits until each has a gossip peer.
    pub async fn start(n: usize, topology: Topology) -> Result<Self> {
        let mut cluster = Cluster {
            nodes: Vec::with_capacity(n),
            dirs: Vec::with_capacity(n),
        };
        for i in 0..n {
            let bootstrap = match (i, topology) {
                (0, _) => vec![],
                (_, Topology::Chain) => vec![tcp_addr(&cluster.nodes[i - 1]).await?],
                (_, Topology::Star) => vec![tcp_addr(&cluster.nodes[0]).await?],
            };
            cluster.add_node(bootstrap).await?;
        }
        for (i, node) in cluster.nodes.iter().enumerate() {
            if n > 1 {
                wait_for(
                    Duration::from_secs(20),
                    &format!("node {i} to have a gossip peer"),
                    || async { (node.network.info().await.ok()?.gossip_peers > 0).then_some(()) },
                )
                .await?;
            }
        }
        Ok(cluster)
    }

    /// Starts one more node dialing `bootstrap`; returns its index.
    pub async fn add_node(&mut self, bootstrap: Vec<String>) -> Result<usize> {
        self.add_node_with(bootstrap, |_| {}).await
    }

    /// Like [`add_node`](Self::add_node), with the node's configuration adjusted by `tune`
    /// (relay mode, followed categories, ...).
    pub async fn add_node_with(
        &mut self,
        bootstrap: Vec<String>,
        tune: impl FnOnce(&mut NodeConfig),
    ) -> Result<usize> {
        let dir = tempfile::tempdir()?;
        let mut cfg = NodeConfig::new(dir.path());
        cfg.listing_stamp_bits = jangteo_node::TEST_NETWORK_STAMP_BITS;
        cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
        cfg.mdns = false;
        cfg.bootstrap = bootstrap;
        tune(&mut cfg);
        let node = Node::start(cfg).await?;
        self.nodes.push(node);
        self.dirs.push(dir);
        Ok(self.nodes.len() - 1)
    }

    /// Stops node `i` and starts it again on the same data directory, dialing `bootstrap`.
    pub async fn restart(&mut self, i: usize, bootstrap: Vec<String>) -> Result<()> {
        let node = self.nodes.remove(i);
        node.shutdown().await;
        let mut cfg = NodeConfig::new(self.dirs[i].path());
        cfg.listing_stamp_bits = jangteo_node::TEST_NETWORK_STAMP_BITS;
        cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
        cfg.mdns = false;
        cfg.bootstrap = bootstrap;
        self.nodes.insert(i, Node::start(cfg).await?);
        Ok(())
    }

    /// Stops node `i` for good (its data directory stays until the cluster is dropped).
    pub async fn stop(&mut self, i: usize) -> Result<()> {
        let node = self.nodes.remove(i);
        node.shutdown().await;
        Ok(())
    }

    /// Starts a node again on the data directory of a stopped node `dir_index`, at
    /// position `i`.
    pub async fn start_again(
        &mut self,
        i: usize,
        dir_index: usize,
        bootstrap: Vec<String>,
    ) -> Result<()> {
        let mut cfg = NodeConfig::new(self.dirs[dir_index].path());
        cfg.listing_stamp_bits = jangteo_node::TEST_NETWORK_STAMP_BITS;
        cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
        cfg.mdns = false;
        cfg.bootstrap = bootstrap;
        self.nodes.insert(i, Node::start(cfg).await?);
        Ok(())
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        for n in self.nodes {
            n.shutdown().await;
        }
        drop(self.dirs);
    }
}

/// The `p`-quantile (0..=1) of sorted samples, nearest rank; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

//! `bootstrap`: a node with an empty store joins a market of N listings held by one relay
//! process; the time from the fresh node's process start until its `/v1/status` says
//! caught up and counts every listing, the bytes it moved, and its peak RSS.
//!
//! The relay's market is written once through the node's own store and indexer
//! ([`crate::memory::fill`]) into a data folder kept under the cache directory, keyed by N
//! and seed, and reused by later runs (regenerated when older than [`MARKET_MAX_AGE`]), so
//! only the fresh node's join is timed and repeated runs start at once.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::procs::{ProcNet, proc_status_kb};

/// How long the fresh node may take before the run fails.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(600);
/// How often the fresh node's status is read.
pub const POLL: Duration = Duration::from_millis(20);
/// A prepared market older than this is written again (its listings age towards expiry).
pub const MARKET_MAX_AGE: Duration = Duration::from_secs(2 * 24 * 3600);
/// The file in a prepared market's folder saying it is complete: listings and their bytes.
const MARKET_DONE: &str = "market.json";

/// Where prepared markets are kept: `$JANGTEO_MARKET_CACHE`, else `~/.cache/jangteo-markets`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("JANGTEO_MARKET_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache").join("jangteo-markets")
}

/// The relay data folder holding `listings` generated with `seed`, written now if missing
/// or stale; with the listings' total bytes.
pub fn market(listings: usize, seed: u64) -> Result<(PathBuf, u64, bool)> {
    let dir = cache_dir().join(format!("relay-{listings}-{seed}"));
    let done = dir.join(MARKET_DONE);
    let fresh = std::fs::metadata(&done)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < MARKET_MAX_AGE);
    if fresh {
        let meta: Value = serde_json::from_slice(&std::fs::read(&done)?)?;
        let bytes = meta["object_bytes"].as_u64().context("market.json")?;
        return Ok((dir, bytes, true));
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    crate::memory::fill(&dir, listings, seed)?;
    let store = jangteo_node::Store::open(&dir.join(jangteo_node::STORE_DIR))?;
    let mut bytes = 0u64;
    for cat in jangteo_protocol::listing::CATEGORIES {
        for (_, id) in store.sync_items(cat, jangteo_node::ingest::now_ms())? {
            bytes += store
                .object(&jangteo_protocol::ObjectId(id))?
                .map_or(0, |b| b.len() as u64);
        }
    }
    drop(store);
    std::fs::write(
        &done,
        serde_json::to_vec(&json!({"listings": listings, "seed": seed, "object_bytes": bytes}))?,
    )?;
    Ok((dir, bytes, false))
}

/// Runs the measurement.
pub async fn run(bin: PathBuf, listings: usize, seed: u64) -> Result<Value> {
    let t = Instant::now();
    let (dir, object_bytes, reused) =
        tokio::task::spawn_blocking(move || market(listings, seed)).await??;
    let prepare_s = t.elapsed().as_secs_f64();
    let mut net = ProcNet::new(bin)?;
    let relay = net.add_at(dir, &[], &["--relay"]).await?;
    let relay_held = net.nodes[relay].api()?.status().await?.listings;
    if relay_held != listings as u64 {
        bail!("the relay counts {relay_held} listings, expected {listings}");
    }
    let boot = net.addrs([relay]);
    let start = Instant::now();
    let fresh = net.add(&boot).await?;
    let api_up_ms = start.elapsed().as_secs_f64() * 1000.0;
    let api = net.nodes[fresh].api()?.clone();
    let pid = net.nodes[fresh].pid().context("fresh node pid")?;
    let want = listings as u64;
    let status = loop {
        let s = api.status().await?;
        if s.sync.status == jangteo_node::api::types::SyncStatusName::CaughtUp && s.listings >= want
        {
            break s;
        }
        if start.elapsed() > JOIN_TIMEOUT {
            bail!(
                "the fresh node holds {} of {want} after {JOIN_TIMEOUT:?} (sync {:?})",
                s.listings,
                s.sync.status
            );
        }
        tokio::time::sleep(POLL).await;
    };
    let held_ms = start.elapsed().as_secs_f64() * 1000.0;
    let peak_kb = proc_status_kb(pid, "VmHWM:").unwrap_or(0);
    let bytes = status.sync.bytes_sent + status.sync.bytes_received;
    let bulk = status.sync.bulk.clone();
    net.shutdown().await?;
    Ok(json!({
        "listings": listings,
        "held_ms": held_ms,
        "bytes": bytes,
        "bytes_per_object_byte": bytes as f64 / object_bytes.max(1) as f64,
        "peak_rss_mib": peak_kb as f64 / 1024.0,
        "object_bytes": object_bytes,
        "api_up_ms": api_up_ms,
        "bulk_state": bulk.as_ref().map(|b| b.state),
        "bulk_ms": bulk.as_ref().and_then(|b| b.took_ms),
        "bulk_stored": bulk.as_ref().map(|b| b.stored),
        "objects_fetched": status.sync.objects_fetched,
        "market_reused": reused,
        "market_prepare_s": prepare_s,
    }))
}

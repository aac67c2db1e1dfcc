//! `memory`: resident memory of real node processes, idle and with a market of listings in
//! the store, and the time from process start to serving the API with that market.
//! The market is written in this process through the node's own store and indexer into the
//! node's data folder before the process starts, so start-up opens a full store and index.
//! "Serving" is the first answer to `/v1/status` (which counts the open listings).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use jangteo_node::Store;
use jangteo_node::api::types::SearchQuery;
use jangteo_node::ingest::now_ms;
use jangteo_node::services::search::SearchIndex;
use jangteo_protocol::{Kind, SignedObject};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use crate::procs::{ProcNet, proc_status_kb};
use crate::search_bench;

/// How long memory is sampled once a node is serving.
pub const SAMPLE_FOR: Duration = Duration::from_secs(5);

/// RSS samples of `pid` every 100 ms for [`SAMPLE_FOR`]: (last, max) in bytes.
async fn sample_rss(pid: u32) -> (u64, u64) {
    let (mut last, mut max) = (0, 0);
    let end = Instant::now() + SAMPLE_FOR;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while Instant::now() < end {
        tick.tick().await;
        if let Some(kb) = proc_status_kb(pid, "VmRSS:") {
            last = kb * 1024;
            max = max.max(last);
        }
    }
    (last, max)
}

/// Writes `count` generated, signed listings into the store and index of data folder `dir`.
pub fn fill(dir: &std::path::Path, count: usize, seed: u64) -> Result<()> {
    let store = Store::open(&dir.join(jangteo_node::STORE_DIR))?;
    let mut rng = StdRng::seed_from_u64(seed);
    let keys = search_bench::sellers(1000);
    let now = now_ms();
    for i in 0..count {
        let l = search_bench::generate(&mut rng, i, now);
        let obj = SignedObject::sign(Kind::Listing, l.encode(), &keys[i % keys.len()]);
        store.put_listing(&obj, &l, now, false)?;
    }
    let index = SearchIndex::open(&dir.join(jangteo_node::INDEX_DIR), &store)?;
    index.drain_queue(&store)?;
    Ok(())
}

/// Runs the measurement.
pub async fn run(bin: PathBuf, listings: usize, seed: u64) -> Result<Value> {
    // Idle: two connected nodes with empty stores.
    let mut net = ProcNet::start(bin.clone(), 2).await?;
    let pid = net.nodes[0].pid().unwrap_or(0);
    let at_start = net.nodes[0].rss_bytes().unwrap_or(0);
    let (idle, idle_max) = sample_rss(pid).await;
    let idle_hwm = proc_status_kb(pid, "VmHWM:").unwrap_or(0) * 1024;
    net.nodes[1].stop().await?;
    net.nodes[0].stop().await?;
    drop(net);

    // A node whose store already holds `listings`.
    let mut net = ProcNet::new(bin)?;
    let dir = net.root().join("node00");
    let t = Instant::now();
    let d = dir.clone();
    tokio::task::spawn_blocking(move || fill(&d, listings, seed)).await??;
    let fill_s = t.elapsed().as_secs_f64();
    let start = Instant::now();
    net.add(&[]).await?;
    let first_api_ms = start.elapsed().as_secs_f64() * 1000.0;
    net.nodes[0].api()?.status().await?;
    let first_serving_ms = start.elapsed().as_secs_f64() * 1000.0;
    // The first start replays the store's write-ahead log of the bulk write; a node that
    // has run before starts from flushed tables. Time that start, the usual one.
    net.nodes[0].stop().await?;
    let start = Instant::now();
    net.launch(0, &[], &[]).await?;
    let api_ms = start.elapsed().as_secs_f64() * 1000.0;
    let status = net.nodes[0].api()?.status().await?;
    let serving_ms = start.elapsed().as_secs_f64() * 1000.0;
    if status.listings != listings as u64 {
        bail!(
            "the node serves {} listings, expected {listings}",
            status.listings
        );
    }
    let pid = net.nodes[0].pid().unwrap_or(0);
    let loaded_at_start = net.nodes[0].rss_bytes().unwrap_or(0);
    let (loaded_idle, loaded_idle_max) = sample_rss(pid).await;
    // Then searches through the API, as a user would.
    let api = net.nodes[0].api()?.clone();
    let words = [
        "자전거",
        "bike",
        "自転車",
        "laptop",
        "냉장고",
        "camera",
        "sofa",
        "テント",
    ];
    let t = Instant::now();
    let mut hits = 0;
    for i in 0..400 {
        let w = words[i % words.len()];
        let q = SearchQuery {
            q: Some(w.to_owned()),
            limit: Some(20),
            ..SearchQuery::default()
        };
        hits += api.search(&q).await?.len();
    }
    let search_ms = t.elapsed().as_secs_f64() * 1000.0 / 400.0;
    let after_search = net.nodes[0].rss_bytes().unwrap_or(0);
    let loaded_hwm = proc_status_kb(pid, "VmHWM:").unwrap_or(0) * 1024;
    net.shutdown().await?;
    let mib = |b: u64| b as f64 / 1048576.0;
    Ok(json!({
        "idle_rss_mib": mib(idle),
        "idle_rss_max_mib": mib(idle_max),
        "idle_rss_at_start_mib": mib(at_start),
        "idle_peak_mib": mib(idle_hwm),
        "listings": listings,
        "fill_s": fill_s,
        "start_to_serving_ms": serving_ms,
        "start_to_api_ms": api_ms,
        "first_start_to_serving_ms": first_serving_ms,
        "first_start_to_api_ms": first_api_ms,
        "loaded_rss_at_start_mib": mib(loaded_at_start),
        "loaded_rss_mib": mib(loaded_idle),
        "loaded_rss_max_mib": mib(loaded_idle_max),
        "loaded_rss_after_400_searches_mib": mib(after_search),
        "loaded_peak_mib": mib(loaded_hwm),
        "search_mean_ms_via_api": search_ms,
        "search_hits": hits,
    }))
}

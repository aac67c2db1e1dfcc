//! Scenarios over real node processes ([`crate::procs`]): each starts its network, drives
//! it through the API (the contract's types), measures, stops every process and returns one
//! report: typed where a test reads it ([`PropagationReport`], [`CrashReport`]), else a JSON
//! object. Waits are polls of the nodes' API under a timeout; nothing here sleeps to let
//! time pass.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use jangteo_node::api::types::{NewOffer, TradeAction, TradeActionName, TradeStateName};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::observe::{Arrivals, Observe};
use crate::percentile;
use crate::procs::{Api, ProcNet};

/// How often a node is asked whether it holds a listing while a latency is measured.
pub const POLL: Duration = Duration::from_millis(10);
/// How long a listing may take to reach a node before it counts as not delivered.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a network may take to converge after a heal, a restart or churn.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);

/// Polls `api` until it holds listing `id`; milliseconds since `start`, or `None` after
/// `timeout` or once the node stops answering.
pub async fn arrival(api: Api, id: String, start: Instant, timeout: Duration) -> Option<f64> {
    let deadline = start + timeout;
    loop {
        match api.listing(&id).await {
            Ok(Some(_)) => return Some(start.elapsed().as_secs_f64() * 1000.0),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Percentiles of latencies in ms (NaN, printed as null, when there are none).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Latency {
    /// The percentiles of `ms`.
    pub fn of(mut ms: Vec<f64>) -> Self {
        ms.sort_by(f64::total_cmp);
        Self {
            p50_ms: percentile(&ms, 0.50),
            p95_ms: percentile(&ms, 0.95),
            p99_ms: percentile(&ms, 0.99),
            max_ms: ms.last().copied().unwrap_or(f64::NAN),
        }
    }
}

fn stats(ms: Vec<f64>) -> Value {
    serde_json::to_value(Latency::of(ms)).unwrap_or(Value::Null)
}

/// Times from posting listings on random nodes of `net` until every other running node
/// holds each, observed by event streams ([`Observe::Events`]). Returns (delivered pairs,
/// expected pairs, per-listing time until the last node held it, every single delivery
/// time).
pub async fn measure_propagation(
    net: &ProcNet,
    listings: usize,
    rng: &mut StdRng,
    tag: &str,
) -> Result<(usize, usize, Vec<f64>, Vec<f64>)> {
    measure_propagation_with(net, listings, rng, tag, Observe::Events).await
}

/// [`measure_propagation`], observing arrival as `observe` says.
pub async fn measure_propagation_with(
    net: &ProcNet,
    listings: usize,
    rng: &mut StdRng,
    tag: &str,
    observe: Observe,
) -> Result<(usize, usize, Vec<f64>, Vec<f64>)> {
    let up = net.up();
    let mut streams = match observe {
        Observe::Events => {
            let mut apis = Vec::new();
            for &j in &up {
                apis.push((j, net.nodes[j].api()?.clone()));
            }
            Some(Arrivals::watch(apis).await?)
        }
        Observe::Poll => None,
    };
    let (mut delivered, mut expected) = (0, 0);
    let mut last = Vec::with_capacity(listings);
    let mut all = Vec::new();
    for i in 0..listings {
        let origin = up[rng.gen_range(0..up.len())];
        let start = Instant::now();
        let id = net.nodes[origin]
            .api()?
            .post_listing(&format!("{tag} item {i}"), 1000 + i as u64, 1)
            .await?;
        if let Some(streams) = streams.as_mut() {
            let others: Vec<usize> = up.iter().copied().filter(|&j| j != origin).collect();
            let got = streams.wait(&id, &others, start + DELIVERY_TIMEOUT).await;
            expected += others.len();
            let mut slowest = 0.0f64;
            for j in &others {
                if let Some(at) = got.get(j) {
                    let ms = at.saturating_duration_since(start).as_secs_f64() * 1000.0;
                    delivered += 1;
                    slowest = slowest.max(ms);
                    all.push(ms);
                }
            }
            last.push(if got.len() >= others.len() {
                slowest
            } else {
                f64::INFINITY
            });
            continue;
        }
        let mut waits = Vec::new();
        for &j in &up {
            if j != origin {
                waits.push(tokio::spawn(arrival(
                    net.nodes[j].api()?.clone(),
                    id.clone(),
                    start,
                    DELIVERY_TIMEOUT,
                )));
            }
        }
        expected += waits.len();
        let mut slowest = 0.0f64;
        let mut complete = true;
        for w in waits {
            match w.await? {
                Some(ms) => {
                    delivered += 1;
                    slowest = slowest.max(ms);
                    all.push(ms);
                }
                None => complete = false,
            }
        }
        last.push(if complete { slowest } else { f64::INFINITY });
    }
    Ok((delivered, expected, last, all))
}

/// What [`propagation`] measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropagationReport {
    /// Node processes.
    pub nodes: usize,
    /// Listings posted.
    pub listings: usize,
    /// Share of (listing, other node) pairs delivered within [`DELIVERY_TIMEOUT`].
    pub delivered_ratio: f64,
    /// Per listing, the time until the last node held it.
    #[serde(flatten)]
    pub latency: Latency,
}

/// `propagation`: `nodes` processes; each listing is posted on a random node and timed
/// until every other node holds it (observed by event streams).
pub async fn propagation(
    bin: PathBuf,
    nodes: usize,
    listings: usize,
    seed: u64,
) -> Result<(PropagationReport, Vec<f64>)> {
    propagation_observed(bin, nodes, listings, seed, Observe::Events).await
}

/// [`propagation`], observing arrival as `observe` says (polling was the first way).
pub async fn propagation_observed(
    bin: PathBuf,
    nodes: usize,
    listings: usize,
    seed: u64,
    observe: Observe,
) -> Result<(PropagationReport, Vec<f64>)> {
    let net = ProcNet::start(bin, nodes).await?;
    let mut rng = StdRng::seed_from_u64(seed);
    let (delivered, expected, last, all) =
        measure_propagation_with(&net, listings, &mut rng, "propagation", observe).await?;
    net.shutdown().await?;
    let report = PropagationReport {
        nodes,
        listings,
        delivered_ratio: ratio(delivered, expected),
        latency: Latency::of(last),
    };
    Ok((report, all))
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

fn prefixed(prefix: &str, v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (format!("{prefix}{k}"), v))
                .collect(),
        ),
        v => v,
    }
}

/// Open listings a node counts in `/v1/status`.
async fn held(api: &Api) -> Result<u64> {
    Ok(api.status().await?.listings)
}

/// Posts `count` listings on the nodes `on`, round robin, `parallel` requests at a time;
/// returns their ids.
async fn post_many(net: &ProcNet, on: &[usize], count: usize, tag: &str) -> Result<Vec<String>> {
    let mut ids = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(on.len() * 2) {
        let mut posts = Vec::new();
        for &i in chunk {
            let api = net.nodes[on[i % on.len()]].api()?.clone();
            let title = format!("{tag} item {i}");
            posts.push(tokio::spawn(async move {
                api.post_listing(&title, 2000 + i as u64, 1).await
            }));
        }
        for p in posts {
            ids.push(p.await??);
        }
    }
    Ok(ids)
}

/// Waits until every node in `which` counts `want` open listings; returns the time since
/// `start` in ms.
async fn converge(
    net: &ProcNet,
    which: &[usize],
    want: u64,
    start: Instant,
    what: &str,
) -> Result<f64> {
    converge_within(net, which, want, start, what, CONVERGE_TIMEOUT).await
}

async fn converge_within(
    net: &ProcNet,
    which: &[usize],
    want: u64,
    start: Instant,
    what: &str,
    timeout: Duration,
) -> Result<f64> {
    let deadline = start + timeout;
    let mut pending: Vec<usize> = which.to_vec();
    loop {
        let mut still = Vec::new();
        for &i in &pending {
            if held(net.nodes[i].api()?).await.unwrap_or(0) < want {
                still.push(i);
            }
        }
        pending = still;
        if pending.is_empty() {
            return Ok(start.elapsed().as_secs_f64() * 1000.0);
        }
        if Instant::now() >= deadline {
            let mut counts = Vec::new();
            for &i in &pending {
                counts.push((i, held(net.nodes[i].api()?).await.unwrap_or(0)));
            }
            bail!(
                "{what}: after {timeout:?} nodes (index, listings held) {counts:?} still lack some of {want}"
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `catchup`: the last node goes offline while `listings` are posted on the others, then
/// comes back dialing all of them; time until it holds them all (from the process start,
/// and from its API up), and the arrival curve of the listings on it. Also reports whether
/// gossip alone had brought every listing to every online node within 30 s.
pub async fn catchup(bin: PathBuf, nodes: usize, listings: usize) -> Result<(Value, Vec<f64>)> {
    if nodes < 2 {
        bail!("catchup needs at least 2 nodes");
    }
    let mut net = ProcNet::start(bin, nodes).await?;
    let laggard = nodes - 1;
    net.nodes[laggard].stop().await?;
    let others: Vec<usize> = (0..laggard).collect();
    let t = Instant::now();
    post_many(&net, &others, listings, "catchup").await?;
    let post_s = t.elapsed().as_secs_f64();
    let want = listings as u64;
    // Gossip normally brings every listing to every online node; give it a while, then go
    // on with what they hold (each listing is at least on the node it was posted on).
    let online_converged = converge_within(
        &net,
        &others,
        want,
        Instant::now(),
        "the online nodes",
        Duration::from_secs(30),
    )
    .await
    .is_ok();
    let mut online_min_held = want;
    for &i in &others {
        online_min_held = online_min_held.min(held(net.nodes[i].api()?).await?);
    }
    let start = Instant::now();
    let boot = net.addrs(others.iter().copied());
    net.launch(laggard, &boot, &[]).await?;
    let api_up_ms = start.elapsed().as_secs_f64() * 1000.0;
    let api = net.nodes[laggard].api()?.clone();
    // The arrival curve: at each poll, how many it holds; each new listing arrived then.
    let mut arrivals = Vec::with_capacity(listings);
    let mut have = 0u64;
    let deadline = start + CONVERGE_TIMEOUT;
    while have < want {
        let now_held = held(&api).await?;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        for _ in have..now_held.min(want) {
            arrivals.push(ms);
        }
        have = have.max(now_held);
        if have >= want {
            break;
        }
        if Instant::now() >= deadline {
            bail!("catchup: the returning node holds {have} of {want} after {CONVERGE_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
    let total_ms = start.elapsed().as_secs_f64() * 1000.0;
    // What catch-up sync moved (the returning node's counters start with its process).
    let sync = api.status().await?.sync;
    let sync_bytes = sync.bytes_sent + sync.bytes_received;
    let object_bytes = sync.object_bytes_received;
    let sync_objects = sync.objects_fetched;
    net.shutdown().await?;
    let mut report = json!({
        "nodes": nodes,
        "listings": listings,
        "sync_objects_fetched": sync_objects,
        "sync_bytes": sync_bytes,
        "sync_object_bytes": object_bytes,
        // Bytes moved per byte of the objects that were missing (their count times the mean
        // size of what arrived): duplicates fetched from two peers at once count as overhead.
        "sync_bytes_per_missing_byte": sync_bytes as f64
            / ((object_bytes as f64 / sync_objects.max(1) as f64) * listings as f64).max(1.0),
        "posted_per_s": listings as f64 / post_s,
        "online_converged_by_gossip": online_converged,
        "online_min_held": online_min_held,
        "api_up_ms": api_up_ms,
        "caught_up_ms": total_ms,
        "caught_up_after_api_ms": total_ms - api_up_ms,
        "listings_per_s": listings as f64 / ((total_ms - api_up_ms).max(1.0) / 1000.0),
    });
    merge(&mut report, prefixed("arrival_", stats(arrivals.clone())));
    Ok((report, arrivals))
}

/// `partition`: `nodes` processes in one network; the second half restarts cut off from
/// the first (knowing only each other), `listings` are posted on each side, then the first
/// node of the second half restarts knowing both sides (the heal); time until every node
/// holds every listing.
pub async fn partition(bin: PathBuf, nodes: usize, listings: usize) -> Result<Value> {
    if nodes < 4 {
        bail!("partition needs at least 4 nodes");
    }
    let mut net = ProcNet::start(bin, nodes).await?;
    let half = nodes / 2;
    let a: Vec<usize> = (0..half).collect();
    let b: Vec<usize> = (half..nodes).collect();
    // Split: side B stops, then comes back knowing only side B (new ports: side A's
    // addresses for them are dead, and nothing tells either side of the other).
    for &i in &b {
        net.nodes[i].stop().await?;
    }
    net.launch(b[0], &[], &[]).await?;
    let b0 = net.nodes[b[0]].addr.clone();
    for &i in &b[1..] {
        net.launch(i, std::slice::from_ref(&b0), &[]).await?;
    }
    for &i in &b {
        net.wait_gossip(i, 1).await?;
    }
    // Nothing crosses: every peer of side B is in side B.
    let b_peers: HashSet<String> = b.iter().map(|&i| net.nodes[i].peer_id.clone()).collect();
    for &i in &b {
        for p in net.nodes[i].api()?.peers().await? {
            let id = p.peer_id;
            if !b_peers.contains(&id) {
                bail!("partition: node {i} of side B is still connected to {id} of side A");
            }
        }
    }
    let per_side = listings / 2;
    post_many(&net, &a, per_side, "side A").await?;
    post_many(&net, &b, listings - per_side, "side B").await?;
    converge(&net, &a, per_side as u64, Instant::now(), "side A").await?;
    converge(
        &net,
        &b,
        (listings - per_side) as u64,
        Instant::now(),
        "side B",
    )
    .await?;
    // Still split: side A has not seen side B's listings.
    if held(net.nodes[a[0]].api()?).await? != per_side as u64 {
        bail!("partition: side A received side B's listings while split");
    }
    // Heal: the first node of side B restarts knowing a node of side A and its own side.
    let start = Instant::now();
    net.nodes[b[0]].stop().await?;
    let mut boot = net.addrs([a[0]]);
    boot.extend(net.addrs(b[1..].iter().copied()));
    net.launch(b[0], &boot, &[]).await?;
    let api_up_ms = start.elapsed().as_secs_f64() * 1000.0;
    let all: Vec<usize> = (0..nodes).collect();
    let converged_ms = converge(&net, &all, listings as u64, start, "the healed network").await?;
    net.shutdown().await?;
    Ok(json!({
        "nodes": nodes,
        "listings": listings,
        "heal_api_up_ms": api_up_ms,
        "converged_ms": converged_ms,
        "converged_after_api_ms": converged_ms - api_up_ms,
    }))
}

/// `churn`: `nodes` processes; while `listings` are posted one by one (on nodes 0 and 1,
/// which stay), every `every` posts a random other node leaves (SIGTERM) or a stopped one
/// returns, and now and then a new node joins. A listing counts as delivered to a node
/// that was up when it was posted and stayed up until it arrived or the timeout passed.
/// At the end everyone returns and the network must converge.
pub async fn churn(
    bin: PathBuf,
    nodes: usize,
    listings: usize,
    every: usize,
    seed: u64,
) -> Result<Value> {
    if nodes < 4 {
        bail!("churn needs at least 4 nodes");
    }
    let mut net = ProcNet::start(bin, nodes).await?;
    let mut rng = StdRng::seed_from_u64(seed);
    let stable = [0usize, 1];
    let (mut delivered, mut expected, mut left) = (0usize, 0usize, 0usize);
    let mut latencies = Vec::new();
    let (mut leaves, mut returns, mut joins) = (0, 0, 0);
    let mut inflight: Vec<(usize, tokio::task::JoinHandle<Option<f64>>)> = Vec::new();
    for i in 0..listings {
        if i > 0 && i % every.max(1) == 0 {
            // Settle the deliveries in flight before a node may leave.
            for (j, w) in inflight.drain(..) {
                match w.await? {
                    Some(ms) => {
                        delivered += 1;
                        latencies.push(ms);
                    }
                    None if !net.nodes[j].is_up() => left += 1,
                    None => {}
                }
            }
            let down: Vec<usize> = (0..net.nodes.len())
                .filter(|&j| !net.nodes[j].is_up())
                .collect();
            let churnable: Vec<usize> = net
                .up()
                .into_iter()
                .filter(|j| !stable.contains(j))
                .collect();
            let r: f64 = rng.r#gen();
            if r < 0.15 {
                net.add(&net.addrs(stable)).await?;
                joins += 1;
            } else if (r < 0.55 || churnable.len() < 2) && !down.is_empty() {
                let j = down[rng.gen_range(0..down.len())];
                net.launch(j, &net.addrs(stable), &[]).await?;
                returns += 1;
            } else if !churnable.is_empty() {
                let j = churnable[rng.gen_range(0..churnable.len())];
                net.nodes[j].stop().await?;
                leaves += 1;
            }
        }
        let origin = stable[i % 2];
        let start = Instant::now();
        let id = net.nodes[origin]
            .api()?
            .post_listing(&format!("churn item {i}"), 3000 + i as u64, 1)
            .await?;
        for j in net.up() {
            if j != origin {
                expected += 1;
                inflight.push((
                    j,
                    tokio::spawn(arrival(
                        net.nodes[j].api()?.clone(),
                        id.clone(),
                        start,
                        DELIVERY_TIMEOUT,
                    )),
                ));
            }
        }
    }
    for (j, w) in inflight.drain(..) {
        match w.await? {
            Some(ms) => {
                delivered += 1;
                latencies.push(ms);
            }
            None if !net.nodes[j].is_up() => left += 1,
            None => {}
        }
    }
    // Everyone returns; the network must converge.
    let start = Instant::now();
    for j in 0..net.nodes.len() {
        if !net.nodes[j].is_up() {
            net.launch(j, &net.addrs(stable), &[]).await?;
        }
    }
    let all: Vec<usize> = (0..net.nodes.len()).collect();
    let converged_ms = converge(
        &net,
        &all,
        listings as u64,
        start,
        "the network after churn",
    )
    .await?;
    let final_nodes = net.nodes.len();
    net.shutdown().await?;
    let mut report = json!({
        "nodes": nodes,
        "final_nodes": final_nodes,
        "listings": listings,
        "leaves": leaves,
        "returns": returns,
        "joins": joins,
        "delivered_ratio": ratio(delivered, expected - left),
        "deliveries": delivered,
        "expected": expected - left,
        "left_before_delivery": left,
        "converged_after_rejoin_ms": converged_ms,
    });
    merge(&mut report, stats(latencies));
    Ok(report)
}

/// Retries a trade action until the node takes it (the state it acts on may still be on
/// its way), or fails after `timeout`.
async fn act(api: &Api, trade: &str, action: TradeActionName, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match api.act(trade, action, &TradeAction::default()).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e.context(action.as_str())),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

async fn state_is(api: &Api, trade: &str, state: TradeStateName, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(v)) = api.trade(trade).await
            && v.state == state
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("trade {trade} not {state} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One whole trade through both parties' APIs; ms from the offer until the seller sees it
/// completed.
async fn one_trade(seller: Api, buyer: Api, listing: String, timeout: Duration) -> Result<f64> {
    let start = Instant::now();
    let offer = buyer
        .offer(&NewOffer {
            listing,
            ..NewOffer::default()
        })
        .await?;
    let trade = offer.id;
    state_is(&seller, &trade, TradeStateName::Offered, timeout).await?;
    act(&seller, &trade, TradeActionName::Accept, timeout).await?;
    state_is(&buyer, &trade, TradeStateName::Accepted, timeout).await?;
    act(&buyer, &trade, TradeActionName::Paid, timeout).await?;
    state_is(&seller, &trade, TradeStateName::Paid, timeout).await?;
    act(&seller, &trade, TradeActionName::Shipped, timeout).await?;
    state_is(&buyer, &trade, TradeStateName::Shipped, timeout).await?;
    act(&buyer, &trade, TradeActionName::Received, timeout).await?;
    state_is(&seller, &trade, TradeStateName::Completed, timeout).await?;
    Ok(start.elapsed().as_secs_f64() * 1000.0)
}

/// `trades`: `nodes` processes, half sellers and half buyers; each seller posts
/// `trades / sellers` listings, then every trade runs at once (offer, accept, paid,
/// shipped, received), each buyer taking listings of every seller.
pub async fn trades(bin: PathBuf, nodes: usize, trades: usize) -> Result<Value> {
    if nodes < 2 {
        bail!("trades needs at least 2 nodes");
    }
    let net = ProcNet::start(bin, nodes).await?;
    let sellers: Vec<usize> = (0..nodes).step_by(2).collect();
    let buyers: Vec<usize> = (1..nodes).step_by(2).collect();
    let mut work = Vec::with_capacity(trades);
    for t in 0..trades {
        let s = sellers[t % sellers.len()];
        let b = buyers[(t / sellers.len()) % buyers.len()];
        let id = net.nodes[s]
            .api()?
            .post_listing(&format!("trade item {t}"), 50_000 + t as u64, 1)
            .await?;
        work.push((s, b, id));
    }
    for (_, b, id) in &work {
        let api = net.nodes[*b].api()?.clone();
        let id = id.clone();
        crate::wait_for(Duration::from_secs(30), "the listing at its buyer", || {
            let (api, id) = (api.clone(), id.clone());
            async move { api.has_listing(&id).await.ok()?.then_some(()) }
        })
        .await?;
    }
    let start = Instant::now();
    let runs: Vec<_> = work
        .into_iter()
        .map(|(s, b, id)| {
            let seller = net.nodes[s].api().cloned();
            let buyer = net.nodes[b].api().cloned();
            tokio::spawn(
                async move { one_trade(seller?, buyer?, id, Duration::from_secs(60)).await },
            )
        })
        .collect();
    let (mut done, mut failures) = (Vec::new(), Vec::new());
    for r in runs {
        match r.await? {
            Ok(ms) => done.push(ms),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    let wall_s = start.elapsed().as_secs_f64();
    net.shutdown().await?;
    failures.truncate(5);
    let mut report = json!({
        "nodes": nodes,
        "trades": trades,
        "completed": done.len(),
        "completed_ratio": ratio(done.len(), trades),
        "trades_per_s": done.len() as f64 / wall_s,
        "first_failures": failures,
    });
    merge(&mut report, stats(done));
    Ok(report)
}

/// What [`crash`] found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrashReport {
    /// Posts the node acknowledged (before and while it was killed).
    pub acknowledged: usize,
    /// Posts attempted.
    pub attempted: usize,
    /// Acknowledged listings missing after the restart.
    pub lost: usize,
    /// The first of them (at most 5).
    pub first_lost: Vec<String>,
    /// Open listings the restarted node counts.
    pub held_after_restart: u64,
    /// Time from the restart to the API answering, in ms.
    pub restart_ms: f64,
}

/// `crash`: one node process takes posts from `writers` concurrent API clients; after
/// `kill_after` acknowledged posts it is killed with SIGKILL while posts are in flight,
/// then restarted: every acknowledged listing must be there.
pub async fn crash(bin: PathBuf, kill_after: usize, writers: usize) -> Result<CrashReport> {
    let mut net = ProcNet::new(bin)?;
    net.add(&[]).await?;
    let api = net.nodes[0].api()?.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1024);
    let mut tasks = Vec::new();
    for w in 0..writers.max(1) {
        let (api, tx) = (api.clone(), tx.clone());
        tasks.push(tokio::spawn(async move {
            let mut attempts = 0usize;
            for i in 0.. {
                attempts += 1;
                match api
                    .post_listing(&format!("crash item {w}-{i}"), 4000 + i as u64, 1)
                    .await
                {
                    Ok(id) => {
                        if tx.send(id).await.is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            attempts
        }));
    }
    drop(tx);
    let mut acked = Vec::new();
    while acked.len() < kill_after {
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some(id)) => acked.push(id),
            _ => bail!(
                "crash: posts stopped after {} acknowledgements",
                acked.len()
            ),
        }
    }
    net.nodes[0].kill9()?;
    // Acknowledgements that were on their way when the process died count too.
    while let Some(id) = rx.recv().await {
        acked.push(id);
    }
    let mut attempts = 0;
    for t in tasks {
        attempts += t.await?;
    }
    let start = Instant::now();
    net.launch(0, &[], &[]).await?;
    let restart_ms = start.elapsed().as_secs_f64() * 1000.0;
    let api = net.nodes[0].api()?.clone();
    let mut lost = Vec::new();
    for id in &acked {
        if !api.has_listing(id).await? {
            lost.push(id.clone());
        }
    }
    let held_after = held(&api).await?;
    net.shutdown().await?;
    let lost_count = lost.len();
    lost.truncate(5);
    Ok(CrashReport {
        acknowledged: acked.len(),
        attempted: attempts,
        lost: lost_count,
        first_lost: lost,
        held_after_restart: held_after,
        restart_ms,
    })
}

/// `flood`: `nodes` processes; honest propagation of `listings` is timed, then a hostile
/// peer dials up to three nodes and sends `invalid` refusable objects at `per_s` a second
/// while another `listings` are timed. Reports both, what the flooder sent and the score
/// the first node gives it.
pub async fn flood(
    bin: PathBuf,
    nodes: usize,
    listings: usize,
    invalid: usize,
    per_s: u32,
    seed: u64,
) -> Result<Value> {
    let net = ProcNet::start(bin, nodes).await?;
    let mut rng = StdRng::seed_from_u64(seed);
    // Warm-up, not counted: the gossip mesh forms in the first heartbeats.
    measure_propagation(&net, 5, &mut rng, "warm-up").await?;
    let (d0, e0, before, _) = measure_propagation(&net, listings, &mut rng, "before flood").await?;
    let objects = crate::flood::invalid_objects(invalid, seed);
    let targets = net.addrs(0..nodes.min(3));
    let flooder = crate::flood::Flooder::start(&targets, objects, per_s).await?;
    let flooder_id = flooder.peer_id.clone();
    let start = Instant::now();
    // At least `listings`, and on until the flooder has sent everything.
    let (mut d1, mut e1, mut during, mut during_listings) = (0, 0, Vec::new(), 0);
    while during_listings < listings || !flooder.finished() {
        let (d, e, last, _) = measure_propagation(&net, 5, &mut rng, "during flood").await?;
        d1 += d;
        e1 += e;
        during.extend(last);
        during_listings += 5;
    }
    let during_s = start.elapsed().as_secs_f64();
    let score = net.nodes[0]
        .api()?
        .peers()
        .await?
        .into_iter()
        .find(|p| p.peer_id == flooder_id)
        .and_then(|p| p.score);
    let sent = flooder.stop().await?;
    // The nodes still answer and hold every honest listing, and no invalid object.
    let want = (5 + listings + during_listings) as u64;
    for i in 0..nodes {
        let h = held(net.nodes[i].api()?).await?;
        if h != want {
            bail!("flood: node {i} holds {h} listings, expected the {want} honest ones");
        }
    }
    net.shutdown().await?;
    let mut report = json!({
        "nodes": nodes,
        "listings_before": listings,
        "listings_during": during_listings,
        "invalid_sent": sent.sent,
        "invalid_refused_locally": sent.refused_locally,
        "flood_seconds": during_s,
        "flooder_connections_at_end": sent.connected_at_end,
        "flooder_score_at_node0": score,
        "before_delivered_ratio": ratio(d0, e0),
        "during_delivered_ratio": ratio(d1, e1),
    });
    merge(&mut report, prefixed("before_", stats(before)));
    merge(&mut report, prefixed("during_", stats(during)));
    Ok(report)
}

//! Hole punching behind real NAT (issue 16 part 3): one relay on the public bridge and
//! `2 × pairs` home nodes, each (with `--nat`) in its own namespace behind its own NAT router
//! ([`crate::netns::Netns::home`]). In each pair one node posts a listing and the other makes
//! an offer on it: the offer reaches the seller over a circuit through the relay (neither can
//! be dialed), and DCUtR tries to upgrade that connection to a direct one.
//!
//! Measured from the nodes' own events (`GET /v1/events`): a pair is *relayed* when either
//! node reported a `relayed_connection` to the other (or a `hole_punch` outcome), *upgraded*
//! when either reported `hole_punch` with outcome `direct`; the upgrade time is the `ms` the
//! node reports, from its relayed connection to the direct one (the seller's, the side that
//! starts DCUtR, when it has one). Without `--nat` the home nodes run on loopback with
//! `--no-listen` (the old stand-in for NAT): relayed, and nothing to punch through to.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use jangteo_node::api::types::{EventView, HolePunchOutcome, NewOffer, Reachability};
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::netns::Netem;
use crate::procs::{Api, ProcNet};
use crate::{percentile, wait_for};

/// How long a pair's hole punching may take, from the offer, before it counts as not
/// upgraded.
pub const PUNCH_TIMEOUT: Duration = Duration::from_secs(45);
/// How long a home node may take to learn it is private and hold a relay reservation.
pub const RESERVATION_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a listing may take to reach the buyer.
pub const LISTING_TIMEOUT: Duration = Duration::from_secs(60);

/// What `jangteo-testnet holepunch --json` prints (exactly these keys).
#[derive(Debug, Clone, Serialize)]
pub struct HolepunchReport {
    /// Pairs of home nodes that tried to connect.
    pub pairs: usize,
    /// Pairs whose connection went through the relay.
    pub relayed: usize,
    /// Pairs whose relayed connection DCUtR upgraded to a direct one.
    pub upgraded_direct: usize,
    /// Median time from the relayed connection to the direct one, ms (null: none upgraded).
    pub upgrade_p50_ms: Option<f64>,
    /// 99th percentile of the same, ms.
    pub upgrade_p99_ms: Option<f64>,
    /// Whether the home nodes were behind real NAT (human output only).
    #[serde(skip)]
    pub nat: bool,
    /// Upgrade times, ms, sorted (human output only).
    #[serde(skip)]
    pub times_ms: Vec<f64>,
    /// Why the pairs that were not upgraded were not (human output only).
    #[serde(skip)]
    pub failures: Vec<String>,
}

/// The events of one node this scenario looks at, in arrival order.
pub type Seen = Arc<Mutex<Vec<EventView>>>;

/// Follows `GET /v1/events?kinds=relayed_connection,hole_punch` of `api` into `seen`;
/// returns once the stream is subscribed, with the task to abort at the end.
pub async fn follow_events(api: &Api, seen: Seen) -> Result<JoinHandle<()>> {
    let mut resp = api
        .http()
        .get(format!(
            "{}/v1/events?kinds=relayed_connection,hole_punch",
            api.base()
        ))
        .bearer_auth(api.token())
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .context("GET /v1/events")?;
    if !resp.status().is_success() {
        bail!("GET /v1/events: {}", resp.status());
    }
    let (ready_tx, ready_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        let mut buf = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find('\n') {
                let line: String = buf.drain(..=end).collect();
                let Some(data) = line.trim_end().strip_prefix("data:") else {
                    continue;
                };
                let Ok(ev) = serde_json::from_str::<EventView>(data.trim()) else {
                    continue;
                };
                if matches!(ev, EventView::Subscribed { .. }) {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                } else if let Ok(mut s) = seen.lock() {
                    s.push(ev);
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .context("the event stream did not start")?
        .context("the event stream ended")?;
    Ok(task)
}

/// How hole punching ended as one node saw it: outcome, ms since the relayed connection,
/// error.
pub type Punch = (HolePunchOutcome, Option<u64>, Option<String>);

/// What one node saw about `peer`: whether the connection was relayed, and the first
/// hole-punching outcome (direct or not, ms, error).
pub fn outcome_about(seen: &Seen, peer: &str) -> (bool, Option<Punch>) {
    let Ok(s) = seen.lock() else {
        return (false, None);
    };
    let relayed = s
        .iter()
        .any(|e| matches!(e, EventView::RelayedConnection { peer: p } if p == peer));
    let punch = s.iter().find_map(|e| match e {
        EventView::HolePunch {
            peer: p,
            outcome,
            ms,
            error,
        } if p == peer => Some((*outcome, *ms, error.clone())),
        _ => None,
    });
    (relayed || punch.is_some(), punch)
}

/// Waits until home node `api` is private and holds a relay reservation.
pub async fn wait_reserved(api: &Api, what: &str) -> Result<()> {
    wait_for(
        RESERVATION_TIMEOUT,
        &format!("{what} to be private with a relay reservation"),
        || async {
            let s = api.status().await.ok()?;
            (s.reachability == Reachability::Private && !s.relayed_addrs.is_empty()).then_some(())
        },
    )
    .await
}

/// Runs the scenario: one relay, `pairs` pairs of home nodes (behind NAT with `nat`).
pub async fn run(bin: PathBuf, pairs: usize, nat: bool) -> Result<HolepunchReport> {
    if pairs == 0 {
        bail!("--pairs must be at least 1");
    }
    if nat {
        crate::netns::nat_available().map_err(|e| anyhow::anyhow!("--nat cannot run here: {e}"))?;
    }
    let netem = nat.then_some(Netem {
        delay_ms: 0,
        loss_pct: 0.0,
    });
    let mut net = ProcNet::with_netns(bin, netem)?;
    net.add_with(&[], &["--relay"]).await?;
    let relay = vec![net.nodes[0].addr.clone()];
    let mut homes = Vec::new();
    let mut seen: Vec<Seen> = Vec::new();
    let mut followers = Vec::new();
    let result: Result<HolepunchReport> = async {
        for _ in 0..2 * pairs {
            let i = if nat {
                net.add_behind_nat(&relay, &[]).await?
            } else {
                net.add_with(&relay, &["--no-listen"]).await?
            };
            let s: Seen = Arc::default();
            followers.push(follow_events(net.nodes[i].api()?, s.clone()).await?);
            seen.push(s);
            homes.push(i);
        }
        for (k, &i) in homes.iter().enumerate() {
            wait_reserved(net.nodes[i].api()?, &format!("home node {k}")).await?;
        }
        let mut times = Vec::new();
        let mut failures = Vec::new();
        let mut relayed = 0;
        let mut upgraded = 0;
        for p in 0..pairs {
            let (b, s) = (2 * p, 2 * p + 1);
            let (buyer, seller) = (
                net.nodes[homes[b]].api()?.clone(),
                net.nodes[homes[s]].api()?.clone(),
            );
            let (buyer_id, seller_id) = (
                net.nodes[homes[b]].peer_id.clone(),
                net.nodes[homes[s]].peer_id.clone(),
            );
            let listing = seller
                .post_listing(&format!("holepunch 자전거 {p}"), 10_000 + p as u64, 1)
                .await?;
            wait_for(
                LISTING_TIMEOUT,
                &format!("pair {p}: the listing at the buyer"),
                || async { buyer.has_listing(&listing).await.ok()?.then_some(()) },
            )
            .await?;
            buyer
                .offer(&NewOffer {
                    listing,
                    ..NewOffer::default()
                })
                .await
                .with_context(|| format!("pair {p}: the offer"))?;
            let outcome = wait_for(
                PUNCH_TIMEOUT,
                &format!("pair {p}: hole punching to end"),
                || async {
                    let at_seller = outcome_about(&seen[s], &buyer_id);
                    let at_buyer = outcome_about(&seen[b], &seller_id);
                    let direct = |o: &(bool, Option<(HolePunchOutcome, _, _)>)| {
                        matches!(o.1, Some((HolePunchOutcome::Direct, _, _)))
                    };
                    // Done when either side is direct, or the seller (which retries) gave up.
                    (direct(&at_seller) || direct(&at_buyer) || at_seller.1.is_some())
                        .then_some((at_seller, at_buyer))
                },
            )
            .await;
            let (at_seller, at_buyer) = match outcome {
                Ok(o) => o,
                Err(_) => (
                    outcome_about(&seen[s], &buyer_id),
                    outcome_about(&seen[b], &seller_id),
                ),
            };
            if at_seller.0 || at_buyer.0 {
                relayed += 1;
            }
            let direct_ms = [&at_seller, &at_buyer].iter().find_map(|o| match &o.1 {
                Some((HolePunchOutcome::Direct, ms, _)) => Some(*ms),
                _ => None,
            });
            match direct_ms {
                Some(ms) => {
                    upgraded += 1;
                    // No time: neither node saw the relayed connection start (not expected).
                    times.extend(ms.map(|ms| ms as f64));
                }
                None => failures.push(format!(
                    "pair {p}: {}",
                    at_seller
                        .1
                        .and_then(|(_, _, e)| e)
                        .unwrap_or_else(|| "no hole punching outcome".into())
                )),
            }
        }
        times.sort_by(f64::total_cmp);
        let q = |p: f64| (!times.is_empty()).then(|| percentile(&times, p));
        Ok(HolepunchReport {
            pairs,
            relayed,
            upgraded_direct: upgraded,
            upgrade_p50_ms: q(0.5),
            upgrade_p99_ms: q(0.99),
            nat,
            times_ms: times,
            failures,
        })
    }
    .await;
    for f in followers {
        f.abort();
    }
    let shutdown = net.shutdown().await;
    let report = result?;
    shutdown?;
    Ok(report)
}

/// The report for people.
pub fn human(r: &HolepunchReport) -> String {
    let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0} ms"));
    let mut out = format!(
        "holepunch ({}): {} pairs, {} relayed, {} upgraded to direct; upgrade p50 {}, p99 {}\n",
        if r.nat {
            "each home node behind its own NAT router"
        } else {
            "home nodes with --no-listen on loopback"
        },
        r.pairs,
        r.relayed,
        r.upgraded_direct,
        ms(r.upgrade_p50_ms),
        ms(r.upgrade_p99_ms),
    );
    let counts: HashMap<&str, usize> = r.failures.iter().fold(HashMap::new(), |mut m, f| {
        *m.entry(f.split_once(": ").map_or(f.as_str(), |x| x.1))
            .or_default() += 1;
        m
    });
    for (why, n) in counts {
        out.push_str(&format!("  not upgraded ({n}): {why}\n"));
    }
    out
}

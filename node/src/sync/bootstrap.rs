//! A fresh node's first copy of the market: the asking side of `/jangteo/bulk/1`
//! (SPEC §8.9). Reconciliation is made for gaps; for a node that holds nothing of a large
//! market, asking one peer for everything in large pages is far cheaper in round trips and
//! bytes.
//!
//! [`bootstrap`] asks one peer how much it holds, decides whether a bulk copy is worth it
//! ([`worth_bulk`]), then takes each shard page by page, asking for the next page while the
//! current one is verified and stored through [`ingest_batch`] (every object checked as any
//! other). A lying peer ends it: an invalid object is an offense and the session stops, a
//! page over the limits or a cursor that does not move forward likewise, and a stream longer
//! than the peer's own count is cut. Whatever happens, reconciliation runs afterwards with
//! every peer (the sync driver holds it back meanwhile) and fetches what is still missing.

use std::sync::Arc;
use std::time::Instant;

use libp2p::PeerId;
use serde::Serialize;
use serde_bytes::ByteBuf;
use tokio::sync::{broadcast, watch};

use super::{Shard, ShardItems, bulk};
use crate::NodeEvent;
use crate::clock::now_ms;
use crate::ingest::{ingest_batch, judge};
use crate::net::{BULK_PAGE_MAX_BYTES, BULK_PAGE_MAX_OBJECTS, BulkRequest, BulkResponse, Client};

/// A bulk copy is taken only when the peer holds at least this many objects (over the
/// followed shards) that this node does not: below it, reconciliation costs a few round
/// trips and is as quick.
pub const BULK_MIN_MISSING: u64 = 1000;
/// A shard count above this is not believed (no market is that large): the peer is
/// treated as holding this many.
pub const BULK_COUNT_MAX: u64 = 100_000_000;
/// Objects a shard may deliver beyond the peer's own count of it (posts arriving during
/// the copy) before the stream is cut as endless.
pub const BULK_SLACK: u64 = 1000;
/// Most invalid objects reported as offenses from one page (the session stops at the
/// first page holding any): enough to ban the peer, since a bulk page holds only what its
/// server chose to send.
pub const BULK_OFFENSES_MAX: usize = crate::net::peers::BAN_AFTER_INVALID as usize;
/// Most peers a node tries a bulk copy from (one at a time) before relying on
/// reconciliation alone.
pub const BULK_ATTEMPTS_MAX: usize = 3;

/// How a bulk copy went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkState {
    /// Pages are being taken.
    #[default]
    Running,
    /// Every shard was taken to its end.
    Done,
    /// Not worth it: this node holds most of what the peer holds, or the peer little.
    Skipped,
    /// The peer was busy, could not be reached, or stopped answering; reconciliation
    /// takes the rest.
    Failed,
    /// The peer lied (an invalid object, a page over the limits, a cursor going back, an
    /// endless stream): an offense, and reconciliation takes the rest.
    Refused,
}

/// What the status shows of the bulk copy.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BulkInfo {
    /// The peer asked.
    pub peer: String,
    /// How it went.
    pub state: BulkState,
    /// Objects the peer said it holds in the shards taken.
    pub advertised: u64,
    /// Objects received.
    pub received: u64,
    /// Of them, stored (new and valid).
    pub stored: u64,
    /// Bytes received (pages with their framing).
    pub bytes_received: u64,
    /// Of them, the objects' own bytes.
    pub object_bytes_received: u64,
    /// Bytes sent (requests).
    pub bytes_sent: u64,
    /// How long it took (when over).
    pub took_ms: Option<u64>,
    /// Why it was skipped, failed or refused.
    pub reason: Option<String>,
}

/// Whether a bulk copy is worth it: the peer holds at least [`BULK_MIN_MISSING`] objects
/// more than this node, and this node holds less than half of what the peer holds.
pub fn worth_bulk(local: u64, peer: u64) -> bool {
    peer.saturating_sub(local) >= BULK_MIN_MISSING && local.saturating_mul(2) < peer
}

/// The CBOR length of a byte string of `len` bytes (its header and the bytes).
fn cbor_bytes_len(len: usize) -> u64 {
    let header = match len {
        0..=23 => 1,
        24..=0xff => 2,
        0x100..=0xffff => 3,
        _ => 5,
    };
    (header + len) as u64
}

/// Why a session ended early.
enum Stop {
    Failed(String),
    Refused(String),
}

/// Takes a bulk copy of `shards` from `peer`, publishing progress on `progress`; returns
/// how it went. Runs until done (the caller aborts it on shutdown).
pub async fn bootstrap(
    peer: PeerId,
    shards: Vec<Shard>,
    items: Arc<ShardItems>,
    network: Client,
    events: broadcast::Sender<NodeEvent>,
    progress: watch::Sender<BulkInfo>,
) -> BulkInfo {
    let started = Instant::now();
    progress.send_modify(|i| {
        *i = BulkInfo {
            peer: peer.to_string(),
            ..BulkInfo::default()
        }
    });
    let outcome = run(peer, &shards, &items, &network, &events, &progress).await;
    progress.send_modify(|i| {
        i.took_ms = Some(started.elapsed().as_millis() as u64);
        match outcome {
            Ok(true) => i.state = BulkState::Done,
            Ok(false) => i.state = BulkState::Skipped,
            Err(Stop::Failed(why)) => {
                i.state = BulkState::Failed;
                i.reason = Some(why);
            }
            Err(Stop::Refused(why)) => {
                i.state = BulkState::Refused;
                i.reason = Some(why);
            }
        }
    });
    let info = progress.borrow().clone();
    tracing::info!(peer = %peer, state = ?info.state, stored = info.stored,
        took_ms = ?info.took_ms, reason = ?info.reason, "bulk copy over");
    info
}

/// Ok(true): taken; Ok(false): not worth it.
async fn run(
    peer: PeerId,
    shards: &[Shard],
    items: &Arc<ShardItems>,
    network: &Client,
    events: &broadcast::Sender<NodeEvent>,
    progress: &watch::Sender<BulkInfo>,
) -> Result<bool, Stop> {
    let counts = match ask(network, peer, BulkRequest::Counts, progress).await? {
        BulkResponse::Counts(c) => c,
        other => return Err(unexpected(other)),
    };
    let local = {
        let (items, shards) = (items.clone(), shards.to_vec());
        tokio::task::spawn_blocking(move || {
            shards
                .iter()
                .map(|s| items.get(s).map(|i| i.len() as u64).unwrap_or(0))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| Stop::Failed(format!("internal: {e}")))?
    };
    let mut plan = Vec::new();
    let (mut have, mut theirs) = (0u64, 0u64);
    for (shard, held) in shards.iter().zip(local) {
        let n = counts
            .iter()
            .find(|(name, _)| *name == shard.to_string())
            .map_or(0, |(_, n)| (*n).min(BULK_COUNT_MAX));
        have += held;
        theirs += n;
        if n > held {
            plan.push((shard.clone(), n));
        }
    }
    if !worth_bulk(have, theirs) {
        progress.send_modify(|i| {
            i.reason = Some(format!("the peer holds {theirs} objects, this node {have}"));
        });
        return Ok(false);
    }
    progress.send_modify(|i| i.advertised = plan.iter().map(|(_, n)| n).sum());
    for (shard, count) in plan {
        take_shard(peer, &shard, count, items, network, events, progress).await?;
    }
    Ok(true)
}

/// Takes one shard to its end, asking for each next page while storing the current one.
async fn take_shard(
    peer: PeerId,
    shard: &Shard,
    count: u64,
    items: &Arc<ShardItems>,
    network: &Client,
    events: &broadcast::Sender<NodeEvent>,
    progress: &watch::Sender<BulkInfo>,
) -> Result<(), Stop> {
    let request = |after| BulkRequest::Page {
        shard: shard.to_string(),
        after,
    };
    let mut next = Some(spawn_ask(network, peer, request(None), progress));
    let mut last: Option<super::reconcile::Item> = None;
    let mut received = 0u64;
    while let Some(pending) = next.take() {
        let reply = pending
            .await
            .map_err(|e| Stop::Failed(format!("internal: {e}")))??;
        let (objects, cursor) = match reply {
            BulkResponse::Page { objects, next } => (objects, next),
            other => return Err(unexpected(other)),
        };
        let bytes: usize = objects.iter().map(|o| o.len()).sum();
        if objects.len() > BULK_PAGE_MAX_OBJECTS || bytes > BULK_PAGE_MAX_BYTES {
            let _ = network.offense(peer).await;
            return Err(Stop::Refused(format!(
                "a page of {} objects, {bytes} bytes",
                objects.len()
            )));
        }
        received += objects.len() as u64;
        if received > count.saturating_add(BULK_SLACK) {
            let _ = network.offense(peer).await;
            return Err(Stop::Refused(format!(
                "{received} objects of {shard} when the peer counted {count}"
            )));
        }
        if let Some(c) = &cursor {
            let Some(item) = bulk::parse_cursor(c).filter(|i| last.is_none_or(|l| *i > l)) else {
                let _ = network.offense(peer).await;
                return Err(Stop::Refused("a cursor that does not move forward".into()));
            };
            last = Some(item);
            if objects.is_empty() {
                let _ = network.offense(peer).await;
                return Err(Stop::Refused("an empty page that is not the last".into()));
            }
            // Ask for the next page while this one is verified and stored.
            next = Some(spawn_ask(network, peer, request(cursor), progress));
        }
        progress.send_modify(|i| {
            i.received += objects.len() as u64;
            i.object_bytes_received += bytes as u64;
            i.bytes_received += 16 + objects.iter().map(|o| cbor_bytes_len(o.len())).sum::<u64>();
        });
        let (stored, invalid) = store_page(objects, shard, items, events, peer).await?;
        progress.send_modify(|i| i.stored += stored);
        if invalid > 0 {
            for _ in 0..invalid.min(BULK_OFFENSES_MAX) {
                let _ = network.offense(peer).await;
            }
            return Err(Stop::Refused(format!(
                "{invalid} invalid objects in a page of {shard}"
            )));
        }
    }
    Ok(())
}

/// Verifies and stores one page; (stored, invalid).
async fn store_page(
    objects: Vec<ByteBuf>,
    shard: &Shard,
    items: &Arc<ShardItems>,
    events: &broadcast::Sender<NodeEvent>,
    peer: PeerId,
) -> Result<(u64, usize), Stop> {
    let (store, events, kind) = (items.store().clone(), events.clone(), shard.kind());
    tokio::task::spawn_blocking(move || {
        let outcomes = ingest_batch(&store, &objects, Some(kind), now_ms(), false)
            .map_err(|e| Stop::Failed(format!("store: {e}")))?;
        let (mut stored, mut invalid) = (0u64, 0usize);
        for o in outcomes {
            match judge(Ok(o), Some(peer), &events) {
                crate::ingest::Verdict::Accept => stored += 1,
                v if v.is_offense() => invalid += 1,
                _ => {}
            }
        }
        Ok((stored, invalid))
    })
    .await
    .map_err(|e| Stop::Failed(format!("internal: {e}")))?
}

/// The answer to `request` from `peer`; a busy or refusing peer, or none, ends the session.
async fn ask(
    network: &Client,
    peer: PeerId,
    request: BulkRequest,
    progress: &watch::Sender<BulkInfo>,
) -> Result<BulkResponse, Stop> {
    progress.send_modify(|i| i.bytes_sent += 64);
    match network.bulk(peer, request).await {
        Ok(Ok(BulkResponse::Busy(why) | BulkResponse::Refused(why))) => {
            Err(Stop::Failed(format!("the peer answered: {why}")))
        }
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(Stop::Failed(format!("no answer: {e}"))),
        Err(e) => Err(Stop::Failed(e.to_string())),
    }
}

/// [`ask`] on a task of its own, so that the next page travels while this one is stored.
fn spawn_ask(
    network: &Client,
    peer: PeerId,
    request: BulkRequest,
    progress: &watch::Sender<BulkInfo>,
) -> tokio::task::JoinHandle<Result<BulkResponse, Stop>> {
    let (network, progress) = (network.clone(), progress.clone());
    tokio::spawn(async move { ask(&network, peer, request, &progress).await })
}

fn unexpected(r: BulkResponse) -> Stop {
    let what = match r {
        BulkResponse::Counts(_) => "counts",
        BulkResponse::Page { .. } => "a page",
        BulkResponse::Busy(_) => "busy",
        BulkResponse::Refused(_) => "refused",
    };
    Stop::Failed(format!("an answer that does not fit the request: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_only_for_a_large_gap_on_a_near_empty_node() {
        assert!(worth_bulk(0, 100_000));
        assert!(worth_bulk(0, BULK_MIN_MISSING));
        assert!(!worth_bulk(0, BULK_MIN_MISSING - 1), "small: reconcile");
        assert!(
            !worth_bulk(60_000, 100_000),
            "holds most already: reconcile"
        );
        assert!(worth_bulk(40_000, 100_000));
        assert!(!worth_bulk(100_000, 100_000));
    }

    #[test]
    fn cbor_lengths_of_byte_strings() {
        assert_eq!(cbor_bytes_len(0), 1);
        assert_eq!(cbor_bytes_len(23), 24);
        assert_eq!(cbor_bytes_len(24), 26);
        assert_eq!(cbor_bytes_len(1500), 1503);
        assert_eq!(cbor_bytes_len(70_000), 70_005);
    }
}

//! The answering side of `/jangteo/bulk/1` (SPEC §8.9): how many objects each shard holds,
//! and a shard's objects in large pages, in (timestamp, id) order from a cursor, for a
//! fresh node taking its first copy of the market from one peer.
//!
//! It is bounded on every side: a few peers served at once ([`BULK_SESSIONS_MAX`]), the
//! bytes served to one peer and to all of them per window, one page at most
//! [`BULK_PAGE_MAX_BYTES`], pages read from the store on a blocking thread one or two at a
//! time, never on the swarm task. It never verifies or stores objects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jangteo_protocol::ObjectId;
use libp2p::PeerId;
use serde_bytes::ByteBuf;
use tokio::sync::{mpsc, watch};

use super::{Shard, ShardItems, reconcile};
use crate::net::rate::RateLimiter;
use crate::net::{
    BULK_CURSOR_BYTES, BULK_PAGE_MAX_BYTES, BULK_PAGE_MAX_OBJECTS, BulkRequest, BulkResponse,
    Client, InboundBulk, Response, serve_inbound,
};

/// Peers served pages at once; a further one is answered "busy" (and reconciles instead).
pub const BULK_SESSIONS_MAX: usize = 2;
/// A session with no page asked for this long ends, freeing its place.
pub const BULK_SESSION_IDLE: Duration = Duration::from_secs(15);
/// Object bytes served to one peer per [`BULK_PEER_WINDOW`] (a market of a million
/// listings is about 1.5 GB).
pub const BULK_PEER_BYTES_MAX: u64 = 2 * 1024 * 1024 * 1024;
/// The window of [`BULK_PEER_BYTES_MAX`].
pub const BULK_PEER_WINDOW: Duration = Duration::from_secs(600);
/// Object bytes served to all peers together per [`BULK_ALL_WINDOW`] (fresh keys cannot
/// buy more).
pub const BULK_ALL_BYTES_MAX: u64 = 512 * 1024 * 1024;
/// The window of [`BULK_ALL_BYTES_MAX`].
pub const BULK_ALL_WINDOW: Duration = Duration::from_secs(10);
/// Bulk requests answered at once (each reads one page from the store).
pub const BULK_SERVER_WORKERS: usize = 2;

/// The cursor after `item`: its timestamp (big-endian) then its id.
pub fn cursor(item: &reconcile::Item) -> ByteBuf {
    let mut c = Vec::with_capacity(BULK_CURSOR_BYTES);
    c.extend_from_slice(&item.0.to_be_bytes());
    c.extend_from_slice(&item.1);
    ByteBuf::from(c)
}

/// The item a cursor names; None when it is not [`BULK_CURSOR_BYTES`] long.
pub fn parse_cursor(c: &[u8]) -> Option<reconcile::Item> {
    if c.len() != BULK_CURSOR_BYTES {
        return None;
    }
    let ts = u64::from_be_bytes(c[..8].try_into().ok()?);
    let id: [u8; 32] = c[8..].try_into().ok()?;
    Some((ts, id))
}

/// Who is being served pages now, and since when they last asked.
#[derive(Debug, Default)]
struct Sessions {
    last: HashMap<PeerId, Instant>,
}

impl Sessions {
    /// Whether `peer` may be served a page now (it holds a place, or a place is free, which
    /// it then takes).
    fn admit(&mut self, peer: PeerId, now: Instant) -> bool {
        self.last
            .retain(|_, at| now.saturating_duration_since(*at) < BULK_SESSION_IDLE);
        if !self.last.contains_key(&peer) && self.last.len() >= BULK_SESSIONS_MAX {
            return false;
        }
        self.last.insert(peer, now);
        true
    }
}

/// The byte budgets: per peer, and of all peers together (one key).
#[derive(Debug)]
struct Budgets {
    peer: RateLimiter,
    all: RateLimiter<()>,
}

/// Answers other peers' bulk requests.
#[derive(Debug, Clone)]
pub struct BulkServer {
    items: Arc<ShardItems>,
    network: Client,
    sessions: Arc<Mutex<Sessions>>,
    budgets: Arc<Mutex<Budgets>>,
}

impl BulkServer {
    /// A server over the shared item cache.
    pub fn new(items: Arc<ShardItems>, network: Client) -> Self {
        Self {
            items,
            network,
            sessions: Arc::new(Mutex::new(Sessions::default())),
            budgets: Arc::new(Mutex::new(Budgets {
                peer: RateLimiter::new(BULK_PEER_BYTES_MAX, BULK_PEER_WINDOW),
                all: RateLimiter::new(BULK_ALL_BYTES_MAX, BULK_ALL_WINDOW),
            })),
        }
    }

    /// Answers what the swarm task routes here, [`BULK_SERVER_WORKERS`] at a time, until
    /// `shutdown`.
    pub async fn run(self, inbound: mpsc::Receiver<InboundBulk>, shutdown: watch::Receiver<bool>) {
        serve_inbound(inbound, BULK_SERVER_WORKERS, shutdown, move |req| {
            let this = self.clone();
            async move { this.answer(req).await }
        })
        .await;
    }

    /// Why `peer` is not served a page now, if it is not.
    fn refusal(&self, peer: PeerId, now: Instant) -> Option<String> {
        let admitted = self
            .sessions
            .lock()
            .map(|mut s| s.admit(peer, now))
            .unwrap_or(false);
        if !admitted {
            return Some(format!(
                "busy: {BULK_SESSIONS_MAX} bulk sessions at once; reconcile instead"
            ));
        }
        let spent = self
            .budgets
            .lock()
            .map(|b| b.peer.exhausted(&peer, now) || b.all.exhausted(&(), now))
            .unwrap_or(true);
        spent.then(|| "busy: bulk byte budget spent; reconcile instead".to_owned())
    }

    async fn answer(&self, req: InboundBulk) {
        let now = Instant::now();
        let response = match (&req.request, self.refusal(req.peer, now)) {
            (BulkRequest::Page { .. }, Some(why)) => BulkResponse::Busy(why),
            _ => {
                let items = self.items.clone();
                let request = req.request;
                tokio::task::spawn_blocking(move || serve(&items, request))
                    .await
                    .unwrap_or_else(|e| BulkResponse::Refused(format!("internal: {e}")))
            }
        };
        if let BulkResponse::Page { objects, .. } = &response {
            let n: u64 = objects.iter().map(|o| o.len() as u64).sum();
            if let Ok(mut b) = self.budgets.lock() {
                b.peer.spend(req.peer, n, now);
                b.all.spend((), n, now);
            }
        }
        let _ = self
            .network
            .respond(Response::Bulk(req.channel, response))
            .await;
    }
}

/// The answer to one bulk request. Blocking (reads the store).
pub fn serve(items: &ShardItems, request: BulkRequest) -> BulkResponse {
    match request {
        BulkRequest::Counts => {
            let mut counts = Vec::new();
            for shard in Shard::followed(&jangteo_protocol::listing::CATEGORIES) {
                match items.get(&shard) {
                    Ok(i) => counts.push((shard.to_string(), i.len() as u64)),
                    Err(e) => return BulkResponse::Refused(e),
                }
            }
            BulkResponse::Counts(counts)
        }
        BulkRequest::Page { shard, after } => {
            let Some(shard) = Shard::parse(&shard) else {
                return BulkResponse::Refused(format!("unknown shard {shard:?}"));
            };
            let after = match after.as_deref().map(|c| parse_cursor(c)) {
                None => None,
                Some(Some(item)) => Some(item),
                Some(None) => {
                    return BulkResponse::Refused(format!("a cursor is {BULK_CURSOR_BYTES} bytes"));
                }
            };
            page(items, &shard, after)
        }
    }
}

/// One page of `shard` after the item `after`.
fn page(items: &ShardItems, shard: &Shard, after: Option<reconcile::Item>) -> BulkResponse {
    let all = match items.get(shard) {
        Ok(i) => i,
        Err(e) => return BulkResponse::Refused(e),
    };
    let start = after.map_or(0, |a| all.partition_point(|it| *it <= a));
    let mut objects = Vec::new();
    let mut bytes = 0usize;
    let mut taken = start;
    for item in &all[start..] {
        if objects.len() >= BULK_PAGE_MAX_OBJECTS {
            break;
        }
        match items.store().object(&ObjectId(item.1)) {
            Ok(Some(b)) => {
                if bytes + b.len() > BULK_PAGE_MAX_BYTES {
                    break;
                }
                bytes += b.len();
                objects.push(ByteBuf::from(b));
            }
            // Replaced or gone since the items were read: the newer version is its own item.
            Ok(None) => {}
            Err(e) => return BulkResponse::Refused(format!("store: {e}")),
        }
        taken += 1;
    }
    let next = (taken < all.len() && taken > start).then(|| cursor(&all[taken - 1]));
    BulkResponse::Page { objects, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_other_lengths_are_refused() {
        let item = (1_700_000_000_000u64, [7u8; 32]);
        assert_eq!(parse_cursor(&cursor(&item)), Some(item));
        assert_eq!(parse_cursor(&[0u8; 39]), None);
        assert_eq!(parse_cursor(&[0u8; 41]), None);
    }

    #[test]
    fn a_few_sessions_at_once_and_an_idle_one_frees_its_place() {
        let mut s = Sessions::default();
        let t0 = Instant::now();
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        assert!(s.admit(a, t0));
        assert!(s.admit(b, t0));
        assert!(!s.admit(c, t0), "a third peer waits");
        assert!(s.admit(a, t0 + Duration::from_secs(1)), "a holder goes on");
        let later = t0 + BULK_SESSION_IDLE + Duration::from_secs(1);
        assert!(s.admit(c, later), "idle sessions ended");
    }
}

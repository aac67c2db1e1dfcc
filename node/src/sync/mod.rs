//! Catch-up between peers: set reconciliation over each shard's (timestamp, id) items.
//!
//! `reconcile` is the pure protocol step, `scheduler` the pure state machine deciding whom
//! to reconcile with and what to fetch, `driver` the task that carries the scheduler's
//! actions out (requests through the [`crate::net::Client`], items and pages through the
//! store), `server` the side that answers other peers. `bootstrap` and `bulk` are the two
//! sides of the bulk copy a fresh node takes from one peer before it reconciles. Nothing
//! here runs on the swarm task.

pub mod bootstrap;
pub mod bulk;
pub mod driver;
pub mod reconcile;
pub mod scheduler;
pub mod server;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jangteo_protocol::Kind;
use serde::Serialize;

use crate::clock::now_ms;
use crate::store::Store;

/// A set of objects reconciled as one: the listings of one category, all attestations, or
/// all reports. On the wire it is the string `listings/<category>`, `attestations` or
/// `reports`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shard {
    /// The listings of one category (one of [`jangteo_protocol::listing::CATEGORIES`]).
    Listings(&'static str),
    /// Every attestation.
    Attestations,
    /// Every report held (SPEC §7.2).
    Reports,
}

impl Shard {
    /// Parses the wire name; None for a name no node uses.
    pub fn parse(name: &str) -> Option<Shard> {
        match name {
            "attestations" => return Some(Shard::Attestations),
            "reports" => return Some(Shard::Reports),
            _ => {}
        }
        let cat = name.strip_prefix("listings/")?;
        jangteo_protocol::listing::CATEGORIES
            .iter()
            .find(|c| **c == cat)
            .map(|c| Shard::Listings(c))
    }

    /// The listing category, for a listings shard.
    pub fn category(&self) -> Option<&'static str> {
        match self {
            Shard::Listings(c) => Some(c),
            Shard::Attestations | Shard::Reports => None,
        }
    }

    /// The kind of object the shard carries.
    pub fn kind(&self) -> Kind {
        match self {
            Shard::Listings(_) => Kind::Listing,
            Shard::Attestations => Kind::Attestation,
            Shard::Reports => Kind::Report,
        }
    }

    /// The shards reconciled with every peer: the followed listing categories, then
    /// attestations, then reports (after the listings they may name).
    pub fn followed(categories: &[&'static str]) -> Vec<Shard> {
        let mut v: Vec<Shard> = categories.iter().map(|c| Shard::Listings(c)).collect();
        v.push(Shard::Attestations);
        v.push(Shard::Reports);
        v
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shard::Listings(c) => write!(f, "listings/{c}"),
            Shard::Attestations => f.write_str("attestations"),
            Shard::Reports => f.write_str("reports"),
        }
    }
}

/// Where catch-up stands, in one word.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    /// Nothing was compared with any connected peer yet: listings may be missing.
    #[default]
    NotReconciled,
    /// A reconciliation or its fetches are under way.
    CatchingUp,
    /// Compared with at least one peer, and nothing is left to fetch.
    CaughtUp,
}

/// What the API shows about catch-up sync.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncInfo {
    /// Where catch-up stands.
    pub status: SyncStatus,
    /// Connected peers we compared our sets with since they connected.
    pub peers_reconciled: usize,
    /// Peers we are reconciling with now, or waiting for their turn.
    pub in_progress: usize,
    /// Objects learned from peers and not fetched yet.
    pub to_fetch: usize,
    /// Milliseconds since the last reconciliation finished (None: none yet).
    pub last_sync_ms_ago: Option<u64>,
    /// How long the last one took, in ms.
    pub last_sync_took_ms: Option<u64>,
    /// Objects fetched by sync since the node started.
    pub objects_fetched: u64,
    /// Bytes sent by sync (reconciliation messages, id lists).
    pub bytes_sent: u64,
    /// Bytes received by sync (reconciliation messages, objects).
    pub bytes_received: u64,
    /// Of `bytes_received`, the bytes of the objects themselves.
    pub object_bytes_received: u64,
    /// Attempts that compared nothing (the peer does not speak the sync protocol, refused,
    /// or could not be reached).
    pub failed_attempts: u64,
    /// Where catch-up stands for each followed listing category (refreshed at most every
    /// [`SHARDS_REFRESH`]).
    pub categories: Vec<ShardSync>,
    /// The bulk copy taken at start, if one was tried (the last one when several peers
    /// were tried).
    pub bulk: Option<bootstrap::BulkInfo>,
}

/// How often the per-category sync state is recomputed (it walks the fetch queues).
pub const SHARDS_REFRESH: Duration = Duration::from_secs(1);

/// Where catch-up stands for one listing category.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShardSync {
    /// The category.
    pub category: &'static str,
    /// caught up, catching up, or not compared with any connected peer yet.
    pub status: SyncStatus,
    /// Connected peers the category was compared with to the end since they connected.
    pub peers: usize,
    /// Listings of the category learned from peers and not fetched yet.
    pub to_fetch: usize,
    /// Milliseconds since a comparison of the category last finished (None: none yet).
    pub last_ms_ago: Option<u64>,
}

/// How long a shard's items are reused while the store does not change.
pub const ITEMS_FRESH: Duration = Duration::from_secs(30);
/// Shards whose items are cached.
pub const ITEM_CACHE_MAX: usize = 64;

type Cached = (u64, Instant, Arc<Vec<reconcile::Item>>);

/// Each shard's sorted items, kept until the store changes (or [`ITEMS_FRESH`] passes), so
/// serving many rounds to many peers does not rescan the store each time. Shared by the
/// driver and the server; the lock is held only to look up or insert, never while scanning.
#[derive(Debug)]
pub struct ShardItems {
    store: Arc<Store>,
    cache: Mutex<HashMap<Shard, Cached>>,
}

impl ShardItems {
    /// A cache over `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The store the items come from.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// A shard's items, sorted. Blocking (reads the store).
    pub fn get(&self, shard: &Shard) -> Result<Arc<Vec<reconcile::Item>>, String> {
        let generation = match shard {
            Shard::Attestations => self.store.trust_generation(),
            Shard::Reports => self.store.report_generation(),
            Shard::Listings(_) => self.store.listing_generation(),
        };
        if let Ok(cache) = self.cache.lock()
            && let Some((g, at, items)) = cache.get(shard)
            && *g == generation
            && at.elapsed() < ITEMS_FRESH
        {
            return Ok(items.clone());
        }
        let r = match shard {
            Shard::Listings(cat) => self.store.sync_items(cat, now_ms()),
            Shard::Attestations => reconcile::attestation_items(&self.store),
            Shard::Reports => reconcile::report_items(&self.store),
        };
        let mut items = r.map_err(|e| format!("store: {e}"))?;
        items.sort_unstable();
        let items = Arc::new(items);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= ITEM_CACHE_MAX {
                cache.clear();
            }
            cache.insert(shard.clone(), (generation, Instant::now(), items.clone()));
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_round_trip_and_unknown_ones_are_refused() {
        for s in Shard::followed(&jangteo_protocol::listing::CATEGORIES) {
            assert_eq!(Shard::parse(&s.to_string()), Some(s));
        }
        assert_eq!(
            Shard::parse("listings/bikes"),
            Some(Shard::Listings("bikes"))
        );
        assert_eq!(Shard::parse("listings/nonsense"), None);
        assert_eq!(Shard::parse("profiles"), None);
    }

    #[test]
    fn sync_status_serializes_as_before_in_snake_case() {
        let v = serde_json::to_value(SyncStatus::CaughtUp).expect("json");
        assert_eq!(v, "caught_up");
    }
}

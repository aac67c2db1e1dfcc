//! The node's local content-addressed store, on RocksDB.
//!
//! Owns the column families and the rules of what may be written: only objects that were
//! verified by `jangteo_protocol` reach these functions, stored byte for byte under their
//! blake3 id, with a head index holding the highest valid `seq` per listing. Writes that
//! belong together go in one `WriteBatch`. It does no networking and no signature checks.
//!
//! This module opens the database (column families, schema, migrations) and holds what
//! every area shares; each area has its file: `listings` (heads, profiles, pruning),
//! `sync` (catch-up sync items), `index` (the search outbox), `trades` (one trade step = one
//! synced batch), `mailbox`, `blobs` (with their `thumbs`), `attestations` (with trust
//! seeds) and `reports` (with moderators).

mod attestations;
mod blobs;
pub mod conversations;
mod index;
mod kad;
mod listings;
mod mailbox;
mod notifications;
mod objects;
mod reports;
mod sync;
mod thumbs;
mod trades;

use std::path::Path;
use std::sync::Mutex;

use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteBatch, WriteOptions};

use crate::error::StoreError;

pub use attestations::{AttestationRecord, AttestationWrite};
pub use conversations::{ChatWrite, chat_key};
pub use listings::{ListingHead, ListingWrite, StoredListing};
pub use mailbox::{HOLDERS_MAX, MailboxItem, MailboxLimits, MailboxUsage, Quota};
pub use notifications::{Alert, NOTIFICATIONS_MAX, NOTIFICATIONS_PRUNED_TO};
pub use reports::{MODERATORS_MAX, REPORTS_READ_MAX, ReportRecord, ReportWrite};
pub use trades::{DeliveryWrite, ProofWrite, Reservation, TradeStep};

const CF_OBJECTS: &str = "objects";
const CF_LISTING_HEADS: &str = "listing_heads";
const CF_PROFILES: &str = "profiles";
const CF_META: &str = "meta";
/// Listings whose search-index entry is behind the store (an outbox written in the same
/// batch as the listing, emptied by the indexer after its commit).
const CF_INDEX_QUEUE: &str = "index_queue";
/// Trade messages: trade id (32) || message id (32) → envelope bytes.
const CF_TRADE_MESSAGES: &str = "trade_messages";
/// Delivery state of messages this node sent: message id → JSON record.
const CF_DELIVERIES: &str = "deliveries";
/// Relay mailboxes: recipient key (32) || item id (32) → expiry (8, BE, top bit set) ||
/// holder count (1) || holders (32 each) || sealed bytes (items from before the holders:
/// expiry (8, BE) || sealed bytes). Their running counters live in `meta` (`mbx/…`).
const CF_MAILBOX: &str = "mailbox";
/// Attestations: trade id (32) || author (32) → [`AttestationRecord`] of the one that counts.
const CF_ATTESTATIONS: &str = "attestations";
/// Blobs: id (32) || 0xffffffff → manifest; id (32) || chunk index (4, BE) → chunk bytes.
const CF_BLOBS: &str = "blobs";
/// Catch-up sync items of listing heads: shard index (1) || updated_at (8, BE) || object
/// id (32) → expires_at (8, BE). Written in the same batch as the head.
const CF_SYNC_ITEMS: &str = "sync_items";
/// Trade messages in the order this node received them: trade id (32) || arrival (4, BE) ->
/// envelope bytes. Replaces `trade_messages` (keyed by message id), migrated at open.
const CF_TRADE_LOG: &str = "trade_log";
/// Our messages whose delivery is still queued: message id -> trade id (32) || next attempt
/// (8, BE, unix ms). The retry pass reads only this.
const CF_DELIVERY_QUEUE: &str = "delivery_queue";
/// Equivocation proofs held: equivocator (32) || trade (32) -> proof object id.
const CF_EQUIVOCATIONS: &str = "equivocations";
/// Thumbnails of image blobs, a cache: blob id (32) || longest edge in px (2, BE) → the
/// thumbnail service's record (the JPEG, or why the blob cannot have one). Entries of a blob
/// are deleted in the batch that deletes the blob.
const CF_THUMBS: &str = "thumbs";
/// A key's listings that are not retracted: author (32) || listing id (32) → expires_at (8,
/// BE). Written in the batch that writes the head; counts a key's active listings (SPEC §3.1).
const CF_AUTHOR_LISTINGS: &str = "author_listings";
/// A key's attestations: author (32) || trade (32) → when the trade completed (8, BE).
/// Written in the batch that writes the attestation; caps and prunes them (SPEC §7.1).
const CF_AUTHOR_ATTESTATIONS: &str = "author_attestations";
/// DHT entries (Kademlia records and provider records), by the network's own keys.
const CF_KAD: &str = "kad";
/// Reports held: target (listing id or key, 32) || author (32) -> [`ReportRecord`].
const CF_REPORTS: &str = "reports";
/// The same reports by author: author (32) || at (8, BE) || object id (32) -> target (32).
/// Written in the report's batch; read for the per-author caps.
const CF_REPORTS_BY_AUTHOR: &str = "reports_by_author";
/// Conversations: threads, their messages, the outbound queue of messages and receipts,
/// contacts and blocks, each under its own one-byte prefix (see `conversations.rs`).
const CF_CONVERSATIONS: &str = "conversations";
/// Meta key prefix of a reservation: `reserved/` || trade id -> quantity (8, BE).
const RESERVED_PREFIX: &[u8] = b"reserved/";
/// Meta key prefix of when the person last looked at a trade (the web page's unread marks):
/// `seen/` || trade id -> unix ms (8, BE).
const SEEN_PREFIX: &[u8] = b"seen/";
const SYNC_ITEMS_BUILT: &[u8] = b"sync_items/v1";
const AUTHOR_LISTINGS_BUILT: &[u8] = b"author_listings/v1";
const AUTHOR_ATTESTATIONS_BUILT: &[u8] = b"author_attestations/v1";
const COLUMN_FAMILIES: [&str; 21] = [
    CF_KAD,
    CF_AUTHOR_LISTINGS,
    CF_AUTHOR_ATTESTATIONS,
    CF_REPORTS,
    CF_REPORTS_BY_AUTHOR,
    CF_CONVERSATIONS,
    CF_THUMBS,
    CF_TRADE_LOG,
    CF_DELIVERY_QUEUE,
    CF_EQUIVOCATIONS,
    CF_SYNC_ITEMS,
    CF_BLOBS,
    CF_ATTESTATIONS,
    CF_MAILBOX,
    CF_OBJECTS,
    CF_LISTING_HEADS,
    CF_PROFILES,
    CF_META,
    CF_INDEX_QUEUE,
    CF_TRADE_MESSAGES,
    CF_DELIVERIES,
];

const SCHEMA_KEY: &[u8] = b"schema";
const SCHEMA_VERSION: &[u8] = b"1";
/// The RocksDB-backed store.
#[derive(Debug)]
pub struct Store {
    db: DB,
    /// Serializes read-modify-write of head records; reads never take it.
    write_lock: Mutex<()>,
    /// Woken after every write that queued work for the search indexer.
    index_wakeup: tokio::sync::Notify,
    /// Bumped by every write that can change trust (attestations, trade messages, seeds).
    trust_generation: std::sync::atomic::AtomicU64,
    /// Bumped by every write of listing heads (new versions, pruning).
    listing_generation: std::sync::atomic::AtomicU64,
    /// The network's base difficulty of listing stamps (SPEC §3.1); 0 (a store opened
    /// outside a node, and test networks) asks for no stamp.
    stamp_bits: std::sync::atomic::AtomicU32,
    /// Bumped by every write of reports or moderators.
    report_generation: std::sync::atomic::AtomicU64,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_open_files(256);
        opts.set_keep_log_file_num(4);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let cfs = COLUMN_FAMILIES
            .iter()
            .map(|n| ColumnFamilyDescriptor::new(*n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        let store = Self {
            db,
            write_lock: Mutex::new(()),
            index_wakeup: tokio::sync::Notify::new(),
            trust_generation: std::sync::atomic::AtomicU64::new(1),
            listing_generation: std::sync::atomic::AtomicU64::new(1),
            stamp_bits: std::sync::atomic::AtomicU32::new(0),
            report_generation: std::sync::atomic::AtomicU64::new(1),
        };
        let meta = store.cf(CF_META)?;
        match store.db.get_cf(meta, SCHEMA_KEY)? {
            None => store.db.put_cf(meta, SCHEMA_KEY, SCHEMA_VERSION)?,
            Some(v) if v == SCHEMA_VERSION => {}
            Some(_) => return Err(StoreError::Corrupt("unknown schema version")),
        }
        if store.db.get_cf(meta, SYNC_ITEMS_BUILT)?.is_none() {
            store.rebuild_sync_items()?;
        }
        store.migrate_trade_messages()?;
        store.build_mailbox_counters()?;
        store.build_blob_bytes()?;
        if store.db.get_cf(meta, AUTHOR_LISTINGS_BUILT)?.is_none() {
            store.build_author_listings()?;
        }
        if store.db.get_cf(meta, AUTHOR_ATTESTATIONS_BUILT)?.is_none() {
            store.build_author_attestations()?;
        }
        Ok(store)
    }

    fn cf(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or(StoreError::Corrupt("missing column family"))
    }

    /// Makes every write made so far durable: syncs the write-ahead log. A write made with
    /// `durable = false` followed by this is as safe as a durable write once this returns.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true)?;
        Ok(())
    }

    fn write(&self, batch: WriteBatch, durable: bool) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(durable);
        self.db.write_opt(batch, &wo)?;
        Ok(())
    }

    /// Number of entries in a column family.
    fn count(&self, cf: &'static str) -> Result<u64, StoreError> {
        let mut n = 0;
        for item in self.db.iterator_cf(self.cf(cf)?, IteratorMode::Start) {
            item?;
            n += 1;
        }
        Ok(n)
    }
}

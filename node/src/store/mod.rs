//! The node's local content-addressed store, on RocksDB.
//!
//! Owns the column families and the rules of what may be written: only objects that were
//! verified by `jangteo_protocol` reach these functions, stored byte for byte under their
//! blake3 id, with a head index holding the highest valid `seq` per listing. Writes that
//! belong together go in one `WriteBatch`. It does no networking and no signature checks.

use std::path::Path;
use std::sync::Mutex;

use jangteo_protocol::attestation::Attested;
use jangteo_protocol::listing::HeadChoice;
use jangteo_protocol::{Listing, ListingId, ObjectId, Profile, PublicKey, SignedObject};
use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions,
};

use crate::error::StoreError;

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
/// Relay mailboxes: recipient key (32) || item id (32) → expiry (8, BE) || sealed bytes.
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
/// Meta key prefix of a reservation: `reserved/` || trade id -> quantity (8, BE).
const RESERVED_PREFIX: &[u8] = b"reserved/";
const SYNC_ITEMS_BUILT: &[u8] = b"sync_items/v1";
const COLUMN_FAMILIES: [&str; 14] = [
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

/// What the store keeps about the attestation that counts for one author and trade: enough
/// to compute trust without decoding the object again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttestationRecord {
    /// The trade.
    pub trade: ObjectId,
    /// Who rated.
    pub author: PublicKey,
    /// When it was signed.
    pub at: u64,
    /// Its object id.
    pub object: ObjectId,
    /// Who was rated.
    pub about: PublicKey,
    /// 1-5.
    pub score: u8,
    /// The trade's total value (minor units).
    pub value: u64,
}

impl AttestationRecord {
    const LEN: usize = 8 + 32 + 32 + 1 + 8;

    fn key(&self) -> [u8; 64] {
        let mut k = [0u8; 64];
        k[..32].copy_from_slice(&self.trade.0);
        k[32..].copy_from_slice(&self.author.0);
        k
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::LEN);
        v.extend_from_slice(&self.at.to_be_bytes());
        v.extend_from_slice(&self.object.0);
        v.extend_from_slice(&self.about.0);
        v.push(self.score);
        v.extend_from_slice(&self.value.to_be_bytes());
        v
    }

    fn decode(key: &[u8], v: &[u8]) -> Result<Self, StoreError> {
        let bad = || StoreError::Corrupt("attestation record");
        if key.len() != 64 || v.len() != Self::LEN {
            return Err(bad());
        }
        let b32 = |s: &[u8]| <[u8; 32]>::try_from(s).map_err(|_| bad());
        let b8 = |s: &[u8]| <[u8; 8]>::try_from(s).map_err(|_| bad());
        Ok(Self {
            trade: ObjectId(b32(&key[..32])?),
            author: PublicKey(b32(&key[32..])?),
            at: u64::from_be_bytes(b8(&v[..8])?),
            object: ObjectId(b32(&v[8..40])?),
            about: PublicKey(b32(&v[40..72])?),
            score: v[72],
            value: u64::from_be_bytes(b8(&v[73..81])?),
        })
    }
}

/// The head record of a listing: the current version's seq, expiry and object id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListingHead {
    /// Highest valid seq seen.
    pub seq: u64,
    /// When that version expires (unix ms).
    pub expires_at: u64,
    /// Object id of that version.
    pub object: ObjectId,
}

impl ListingHead {
    fn encode(&self) -> [u8; 48] {
        let mut out = [0u8; 48];
        out[..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..16].copy_from_slice(&self.expires_at.to_be_bytes());
        out[16..].copy_from_slice(&self.object.0);
        out
    }

    fn decode(b: &[u8]) -> Result<Self, StoreError> {
        if b.len() != 48 {
            return Err(StoreError::Corrupt("listing head record"));
        }
        let mut seq = [0u8; 8];
        let mut exp = [0u8; 8];
        let mut id = [0u8; 32];
        seq.copy_from_slice(&b[..8]);
        exp.copy_from_slice(&b[8..16]);
        id.copy_from_slice(&b[16..]);
        Ok(Self {
            seq: u64::from_be_bytes(seq),
            expires_at: u64::from_be_bytes(exp),
            object: ObjectId(id),
        })
    }
}

/// The expiry (unix ms) at the head of a mailbox value; 0 (expired) if malformed.
fn mailbox_expiry(value: &[u8]) -> u64 {
    value
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// A mailbox item: its id (blake3 of the sealed bytes) and the sealed bytes.
pub type MailboxItem = ([u8; 32], Vec<u8>);

/// What a write of a verified listing version did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListingWrite {
    /// A listing not seen before.
    New,
    /// A higher seq replaced the head.
    Replaced {
        /// The seq it replaced.
        previous_seq: u64,
    },
    /// This exact object is already stored.
    Duplicate,
    /// A version with the same or a higher seq is already the head; ignored.
    Stale {
        /// The head's seq.
        head_seq: u64,
    },
    /// The version expired already and the listing is unknown here; not stored.
    Expired,
    /// The version changes `created_at`, which is fixed for a listing's life.
    Inconsistent,
    /// Refused by a rule that needs the version held (SPEC §3): the listing is retracted
    /// (retraction is final), or the version moves `expires` earlier. Not the sender's fault:
    /// a forwarder that held an older version could not know.
    Refused(&'static str),
}

impl ListingWrite {
    /// Whether the object was stored.
    pub fn stored(self) -> bool {
        matches!(self, ListingWrite::New | ListingWrite::Replaced { .. })
    }
}

/// A change to what a trade reserves of its listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The trade holds this many units.
    Set(u64),
    /// The trade holds nothing (any earlier reservation is returned).
    Clear,
}

/// A delivery record written with a trade step.
#[derive(Debug, Clone)]
pub struct DeliveryWrite {
    /// Our message.
    pub message: ObjectId,
    /// The record (JSON of the trades service).
    pub record: Vec<u8>,
    /// When queued: when to try again (unix ms). None: no longer queued.
    pub next_attempt: Option<u64>,
}

/// An equivocation proof written with a trade step.
#[derive(Debug, Clone)]
pub struct ProofWrite {
    /// The signed `equivocation` object.
    pub object: SignedObject,
    /// Who equivocated.
    pub author: PublicKey,
    /// In which trade.
    pub trade: ObjectId,
}

/// Everything one trade step writes, as one synced batch ([`Store::commit_trade_step`]).
#[derive(Debug, Clone, Default)]
pub struct TradeStep {
    /// The trade.
    pub trade: ObjectId,
    /// Messages to append to its log, in order.
    pub messages: Vec<SignedObject>,
    /// Delivery records of our messages.
    pub deliveries: Vec<DeliveryWrite>,
    /// What the trade reserves from now on.
    pub reservation: Option<Reservation>,
    /// The listing's next version (signed by this node), with its body.
    pub listing: Option<(SignedObject, Listing)>,
    /// Equivocation proofs found.
    pub proofs: Vec<ProofWrite>,
    /// Whether trust may change (a completed trade).
    pub changes_trust: bool,
}

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
        Ok(store)
    }

    fn sync_key(listing: &Listing, object: &ObjectId) -> [u8; 41] {
        let shard = jangteo_protocol::listing::shard_of(&listing.category);
        let idx = jangteo_protocol::listing::CATEGORIES
            .iter()
            .position(|c| *c == shard)
            .unwrap_or(0) as u8;
        let mut k = [0u8; 41];
        k[0] = idx;
        k[1..9].copy_from_slice(&listing.updated_at.to_be_bytes());
        k[9..].copy_from_slice(&object.0);
        k
    }

    /// Decodes a stored listing object without checking its signature again (it was
    /// checked before it was stored).
    fn stored_listing(bytes: &[u8]) -> Option<Listing> {
        let env = jangteo_protocol::Envelope::decode(bytes).ok()?;
        Listing::decode(&env.body).ok()
    }

    /// Builds the sync items of every listing head (stores made before they existed).
    fn rebuild_sync_items(&self) -> Result<(), StoreError> {
        let cf = self.cf(CF_SYNC_ITEMS)?;
        let mut batch = WriteBatch::default();
        self.for_each_listing(None, |s| {
            batch.put_cf(
                cf,
                Self::sync_key(&s.listing, &s.head.object),
                s.head.expires_at.to_be_bytes(),
            );
            true
        })?;
        batch.put_cf(self.cf(CF_META)?, SYNC_ITEMS_BUILT, b"1");
        self.write(batch, true)
    }

    /// The catch-up sync items of one listing shard: `(updated_at, head object id)` of every
    /// listing head in it that has not expired at `now_ms`, in order.
    pub fn sync_items(&self, shard: &str, now_ms: u64) -> Result<Vec<(u64, [u8; 32])>, StoreError> {
        let Some(idx) = jangteo_protocol::listing::CATEGORIES
            .iter()
            .position(|c| *c == shard)
        else {
            return Ok(Vec::new());
        };
        let idx = idx as u8;
        let mut out = Vec::new();
        for item in self.db.iterator_cf(
            self.cf(CF_SYNC_ITEMS)?,
            IteratorMode::From(&[idx], Direction::Forward),
        ) {
            let (k, v) = item?;
            if k.first() != Some(&idx) {
                break;
            }
            if k.len() != 41 || v.len() != 8 {
                return Err(StoreError::Corrupt("sync item"));
            }
            let mut exp = [0u8; 8];
            exp.copy_from_slice(&v);
            if u64::from_be_bytes(exp) <= now_ms {
                continue;
            }
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&k[1..9]);
            let mut id = [0u8; 32];
            id.copy_from_slice(&k[9..]);
            out.push((u64::from_be_bytes(ts), id));
        }
        Ok(out)
    }

    fn cf(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or(StoreError::Corrupt("missing column family"))
    }

    fn write(&self, batch: WriteBatch, durable: bool) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(durable);
        self.db.write_opt(batch, &wo)?;
        Ok(())
    }

    /// Stores a verified listing version if it is newer than the head, replacing (and
    /// deleting) the previous version in one batch. `durable` syncs the WAL before returning.
    pub fn put_listing(
        &self,
        obj: &SignedObject,
        listing: &Listing,
        now_ms: u64,
        durable: bool,
    ) -> Result<ListingWrite, StoreError> {
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let mut batch = WriteBatch::default();
        let outcome = self.stage_listing(&mut batch, obj, listing, now_ms)?;
        if outcome.stored() {
            self.write(batch, durable)?;
            self.listing_written();
        }
        Ok(outcome)
    }

    fn listing_written(&self) {
        self.listing_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.index_wakeup.notify_one();
    }

    /// Adds the writes of a listing version to `batch` if it becomes the head (SPEC §3: the
    /// highest `seq` wins, except that a retraction wins over every other version; `created`
    /// is fixed and `expires` never moves earlier). The caller holds the write lock.
    fn stage_listing(
        &self,
        batch: &mut WriteBatch,
        obj: &SignedObject,
        listing: &Listing,
        now_ms: u64,
    ) -> Result<ListingWrite, StoreError> {
        let id = listing.id(&obj.envelope().author);
        let objects = self.cf(CF_OBJECTS)?;
        let heads = self.cf(CF_LISTING_HEADS)?;
        if self.db.get_pinned_cf(objects, obj.id().0)?.is_some() {
            return Ok(ListingWrite::Duplicate);
        }
        let previous = self
            .db
            .get_pinned_cf(heads, id.0)?
            .map(|b| ListingHead::decode(&b))
            .transpose()?;
        let outcome = match previous {
            Some(h) => {
                let Some(old) = self
                    .db
                    .get_pinned_cf(objects, h.object.0)?
                    .and_then(|b| Self::stored_listing(&b))
                else {
                    return Ok(ListingWrite::Inconsistent);
                };
                match jangteo_protocol::listing::choose_head(&old, listing) {
                    HeadChoice::Replace => {}
                    HeadChoice::Stale => return Ok(ListingWrite::Stale { head_seq: h.seq }),
                    HeadChoice::Refused(why) => return Ok(ListingWrite::Refused(why)),
                    HeadChoice::Inconsistent => return Ok(ListingWrite::Inconsistent),
                }
                batch.delete_cf(self.cf(CF_SYNC_ITEMS)?, Self::sync_key(&old, &h.object));
                batch.delete_cf(objects, h.object.0);
                ListingWrite::Replaced {
                    previous_seq: h.seq,
                }
            }
            // A retraction is kept past its expiry (until no version can be valid), so an
            // active version arriving after it cannot bring the listing back.
            None if listing.expires_at <= now_ms
                && !(listing.status == jangteo_protocol::ListingStatus::Retracted
                    && listing
                        .created_at
                        .saturating_add(jangteo_protocol::listing::LIFETIME_MAX_MS)
                        > now_ms) =>
            {
                return Ok(ListingWrite::Expired);
            }
            None => ListingWrite::New,
        };
        let head = ListingHead {
            seq: listing.seq,
            expires_at: listing.expires_at,
            object: obj.id(),
        };
        batch.put_cf(objects, obj.id().0, obj.bytes());
        batch.put_cf(heads, id.0, head.encode());
        batch.put_cf(self.cf(CF_INDEX_QUEUE)?, id.0, head.encode());
        batch.put_cf(
            self.cf(CF_SYNC_ITEMS)?,
            Self::sync_key(listing, &obj.id()),
            listing.expires_at.to_be_bytes(),
        );
        Ok(outcome)
    }

    /// Stores a verified profile if it is newer than the one held for its author.
    pub fn put_profile(
        &self,
        obj: &SignedObject,
        profile: &Profile,
        durable: bool,
    ) -> Result<bool, StoreError> {
        let objects = self.cf(CF_OBJECTS)?;
        let profiles = self.cf(CF_PROFILES)?;
        let author = obj.envelope().author;
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let mut batch = WriteBatch::default();
        if let Some(prev) = self.db.get_pinned_cf(profiles, author.0)? {
            if prev.len() != 40 {
                return Err(StoreError::Corrupt("profile record"));
            }
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&prev[..8]);
            if u64::from_be_bytes(ts) >= profile.updated_at {
                return Ok(false);
            }
            batch.delete_cf(objects, &prev[8..]);
        }
        let mut rec = Vec::with_capacity(40);
        rec.extend_from_slice(&profile.updated_at.to_be_bytes());
        rec.extend_from_slice(&obj.id().0);
        batch.put_cf(objects, obj.id().0, obj.bytes());
        batch.put_cf(profiles, author.0, rec);
        self.write(batch, durable)?;
        Ok(true)
    }

    /// The stored bytes of an object.
    pub fn object(&self, id: &ObjectId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_OBJECTS)?, id.0)?)
    }

    /// The head record of a listing.
    pub fn listing_head(&self, id: &ListingId) -> Result<Option<ListingHead>, StoreError> {
        self.db
            .get_pinned_cf(self.cf(CF_LISTING_HEADS)?, id.0)?
            .map(|b| ListingHead::decode(&b))
            .transpose()
    }

    /// The current version of a listing, decoded. Stored objects were verified on the way in;
    /// they are decoded again (not re-verified) on the way out.
    pub fn listing(&self, id: &ListingId) -> Result<Option<StoredListing>, StoreError> {
        let Some(head) = self.listing_head(id)? else {
            return Ok(None);
        };
        let Some(bytes) = self.object(&head.object)? else {
            return Err(StoreError::Corrupt(
                "listing head points to a missing object",
            ));
        };
        StoredListing::from_bytes(*id, head, &bytes).map(Some)
    }

    /// Calls `f` for each listing head in id order, starting after `after`, until it
    /// returns false.
    pub fn for_each_listing(
        &self,
        after: Option<&ListingId>,
        mut f: impl FnMut(StoredListing) -> bool,
    ) -> Result<(), StoreError> {
        let heads = self.cf(CF_LISTING_HEADS)?;
        let mode = match after {
            Some(a) => IteratorMode::From(&a.0, Direction::Forward),
            None => IteratorMode::Start,
        };
        for item in self.db.iterator_cf(heads, mode) {
            let (k, v) = item?;
            let id: [u8; 32] = k
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("listing key"))?;
            if after.is_some_and(|a| a.0 == id) {
                continue;
            }
            let head = ListingHead::decode(&v)?;
            let Some(bytes) = self.object(&head.object)? else {
                return Err(StoreError::Corrupt(
                    "listing head points to a missing object",
                ));
            };
            if !f(StoredListing::from_bytes(ListingId(id), head, &bytes)?) {
                break;
            }
        }
        Ok(())
    }

    /// Number of listing heads (open or not).
    pub fn listing_count(&self) -> Result<u64, StoreError> {
        self.count(CF_LISTING_HEADS)
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

    /// Deletes listings whose head expired before `before_ms`, with their objects. Safe
    /// because every version of a listing expires within its fixed lifetime, and expired
    /// versions of unknown listings are never stored again. Returns how many were removed.
    pub fn prune_expired(&self, before_ms: u64) -> Result<u64, StoreError> {
        let heads = self.cf(CF_LISTING_HEADS)?;
        let objects = self.cf(CF_OBJECTS)?;
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let mut batch = WriteBatch::default();
        let mut n = 0;
        for item in self.db.iterator_cf(heads, IteratorMode::Start) {
            let (k, v) = item?;
            let head = ListingHead::decode(&v)?;
            if head.expires_at < before_ms {
                let listing = self
                    .object(&head.object)?
                    .and_then(|b| Self::stored_listing(&b));
                if let Some(l) = &listing {
                    // A retraction is kept until no version of its listing can be valid any
                    // more, so no older active version can come back (SPEC §3).
                    if l.status == jangteo_protocol::ListingStatus::Retracted
                        && l.created_at
                            .saturating_add(jangteo_protocol::listing::LIFETIME_MAX_MS)
                            >= before_ms
                    {
                        continue;
                    }
                    batch.delete_cf(self.cf(CF_SYNC_ITEMS)?, Self::sync_key(l, &head.object));
                }
                batch.delete_cf(heads, &k);
                batch.delete_cf(objects, head.object.0);
                batch.put_cf(self.cf(CF_INDEX_QUEUE)?, &k, []);
                n += 1;
            }
        }
        if n > 0 {
            self.write(batch, false)?;
            self.listing_generation
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.index_wakeup.notify_one();
        }
        Ok(n)
    }

    /// Moves trades stored by message id (before arrival order was kept) into the trade
    /// log, each trade's messages in id order.
    fn migrate_trade_messages(&self) -> Result<(), StoreError> {
        let old = self.cf(CF_TRADE_MESSAGES)?;
        let mut batch = WriteBatch::default();
        let mut last: Option<[u8; 32]> = None;
        let mut n: u32 = 0;
        let mut moved = 0;
        for item in self.db.iterator_cf(old, IteratorMode::Start) {
            let (k, v) = item?;
            let trade: [u8; 32] = k
                .get(..32)
                .and_then(|s| s.try_into().ok())
                .ok_or(StoreError::Corrupt("trade key"))?;
            if last != Some(trade) {
                last = Some(trade);
                n = 0;
            }
            batch.put_cf(
                self.cf(CF_TRADE_LOG)?,
                Self::log_key(&ObjectId(trade), n),
                &v,
            );
            batch.delete_cf(old, &k);
            // A message of ours still queued before the upgrade goes into the delivery queue.
            let id = *blake3::hash(&v).as_bytes();
            if let Some(rec) = self.db.get_cf(self.cf(CF_DELIVERIES)?, id)?
                && String::from_utf8_lossy(&rec).contains("\"status\":\"queued\"")
            {
                let mut q = [0u8; 40];
                q[..32].copy_from_slice(&trade);
                batch.put_cf(self.cf(CF_DELIVERY_QUEUE)?, id, q);
            }
            n += 1;
            moved += 1;
        }
        if moved > 0 {
            self.write(batch, true)?;
        }
        Ok(())
    }

    fn log_key(trade: &ObjectId, n: u32) -> [u8; 36] {
        let mut k = [0u8; 36];
        k[..32].copy_from_slice(&trade.0);
        k[32..].copy_from_slice(&n.to_be_bytes());
        k
    }

    fn reservation_key(trade: &ObjectId) -> Vec<u8> {
        let mut key = RESERVED_PREFIX.to_vec();
        key.extend_from_slice(&trade.0);
        key
    }

    /// Writes one trade step as one synced batch: the messages appended to the trade's log
    /// (in order, skipping any already held), delivery records (and the delivery queue), the
    /// reservation change, the listing's next version and equivocation proofs. Either all of
    /// it is on disk when this returns, or none of it.
    pub fn commit_trade_step(&self, step: &TradeStep, now_ms: u64) -> Result<(), StoreError> {
        let log = self.cf(CF_TRADE_LOG)?;
        let meta = self.cf(CF_META)?;
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let mut batch = WriteBatch::default();
        if !step.messages.is_empty() {
            let held = self.trade_log_unlocked(&step.trade)?;
            let mut n = held.len() as u32;
            let held_ids: std::collections::HashSet<[u8; 32]> =
                held.iter().map(|b| *blake3::hash(b).as_bytes()).collect();
            for m in &step.messages {
                if held_ids.contains(&m.id().0) {
                    continue;
                }
                batch.put_cf(log, Self::log_key(&step.trade, n), m.bytes());
                n += 1;
            }
        }
        for d in &step.deliveries {
            batch.put_cf(self.cf(CF_DELIVERIES)?, d.message.0, &d.record);
            match d.next_attempt {
                Some(at) => {
                    let mut v = [0u8; 40];
                    v[..32].copy_from_slice(&step.trade.0);
                    v[32..].copy_from_slice(&at.to_be_bytes());
                    batch.put_cf(self.cf(CF_DELIVERY_QUEUE)?, d.message.0, v);
                }
                None => batch.delete_cf(self.cf(CF_DELIVERY_QUEUE)?, d.message.0),
            }
        }
        match step.reservation {
            Some(Reservation::Set(q)) => {
                batch.put_cf(meta, Self::reservation_key(&step.trade), q.to_be_bytes())
            }
            Some(Reservation::Clear) => batch.delete_cf(meta, Self::reservation_key(&step.trade)),
            None => {}
        }
        let mut listing_written = false;
        if let Some((obj, listing)) = &step.listing {
            let w = self.stage_listing(&mut batch, obj, listing, now_ms)?;
            if !w.stored() {
                return Err(StoreError::Conflict(format!(
                    "the listing's next version was not taken: {w:?}"
                )));
            }
            listing_written = true;
        }
        for p in &step.proofs {
            batch.put_cf(self.cf(CF_OBJECTS)?, p.object.id().0, p.object.bytes());
            let mut k = [0u8; 64];
            k[..32].copy_from_slice(&p.author.0);
            k[32..].copy_from_slice(&p.trade.0);
            batch.put_cf(self.cf(CF_EQUIVOCATIONS)?, k, p.object.id().0);
        }
        self.write(batch, true)?;
        if listing_written {
            self.listing_written();
        }
        if step.changes_trust {
            self.bump_trust();
        }
        Ok(())
    }

    fn trade_log_unlocked(&self, trade: &ObjectId) -> Result<Vec<Vec<u8>>, StoreError> {
        let cf = self.cf(CF_TRADE_LOG)?;
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(cf, trade.0) {
            let (k, v) = item?;
            if !k.starts_with(&trade.0) {
                break;
            }
            out.push(v.to_vec());
        }
        Ok(out)
    }

    /// Every message held for a trade (offer included), in the order they were received.
    pub fn trade_messages(&self, trade: &ObjectId) -> Result<Vec<Vec<u8>>, StoreError> {
        self.trade_log_unlocked(trade)
    }

    /// Whether any message of this trade is held.
    pub fn has_trade(&self, trade: &ObjectId) -> Result<bool, StoreError> {
        let cf = self.cf(CF_TRADE_LOG)?;
        Ok(self
            .db
            .prefix_iterator_cf(cf, trade.0)
            .next()
            .transpose()?
            .is_some_and(|(k, _)| k.starts_with(&trade.0)))
    }

    /// Ids of every trade held.
    pub fn trade_ids(&self) -> Result<Vec<ObjectId>, StoreError> {
        let cf = self.cf(CF_TRADE_LOG)?;
        let mut out: Vec<ObjectId> = Vec::new();
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, _) = item?;
            let id: [u8; 32] = k
                .get(..32)
                .and_then(|s| s.try_into().ok())
                .ok_or(StoreError::Corrupt("trade key"))?;
            if out.last().is_none_or(|l| l.0 != id) {
                out.push(ObjectId(id));
            }
        }
        Ok(out)
    }

    /// (trades held, trade messages held).
    pub fn trade_counts(&self) -> Result<(u64, u64), StoreError> {
        let cf = self.cf(CF_TRADE_LOG)?;
        let (mut trades, mut messages) = (0, 0);
        let mut last: Option<Vec<u8>> = None;
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, _) = item?;
            messages += 1;
            let t = k.get(..32).map(<[u8]>::to_vec);
            if t != last {
                trades += 1;
                last = t;
            }
        }
        Ok((trades, messages))
    }

    /// Records the delivery state of a message this node sent (synced); `next_attempt` keeps
    /// it in the delivery queue, None takes it out.
    pub fn set_delivery(
        &self,
        trade: &ObjectId,
        msg: &ObjectId,
        record: &[u8],
        next_attempt: Option<u64>,
    ) -> Result<(), StoreError> {
        self.commit_trade_step(
            &TradeStep {
                trade: *trade,
                deliveries: vec![DeliveryWrite {
                    message: *msg,
                    record: record.to_vec(),
                    next_attempt,
                }],
                ..TradeStep::default()
            },
            0,
        )
    }

    /// The delivery state of a message this node sent.
    pub fn delivery(&self, msg: &ObjectId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_DELIVERIES)?, msg.0)?)
    }

    /// The delivery queue: (message, trade, next attempt unix ms), at most `limit` entries.
    pub fn delivery_queue(
        &self,
        limit: usize,
    ) -> Result<Vec<(ObjectId, ObjectId, u64)>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_DELIVERY_QUEUE)?, IteratorMode::Start)
            .take(limit)
        {
            let (k, v) = item?;
            let id: [u8; 32] = k
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("delivery queue key"))?;
            if v.len() != 40 {
                return Err(StoreError::Corrupt("delivery queue entry"));
            }
            let mut t = [0u8; 32];
            t.copy_from_slice(&v[..32]);
            let mut at = [0u8; 8];
            at.copy_from_slice(&v[32..]);
            out.push((ObjectId(id), ObjectId(t), u64::from_be_bytes(at)));
        }
        Ok(out)
    }

    /// Number of queued deliveries.
    pub fn queued_delivery_count(&self) -> Result<u64, StoreError> {
        self.count(CF_DELIVERY_QUEUE)
    }

    /// What `trade` has reserved of its listing, if anything.
    pub fn reservation(&self, trade: &ObjectId) -> Result<Option<u64>, StoreError> {
        let Some(v) = self
            .db
            .get_cf(self.cf(CF_META)?, Self::reservation_key(trade))?
        else {
            return Ok(None);
        };
        <[u8; 8]>::try_from(v.as_slice())
            .map(u64::from_be_bytes)
            .map(Some)
            .map_err(|_| StoreError::Corrupt("reservation"))
    }

    /// Keys with an equivocation proof held against them.
    pub fn equivocators(&self) -> Result<Vec<PublicKey>, StoreError> {
        let mut out: Vec<PublicKey> = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_EQUIVOCATIONS)?, IteratorMode::Start)
        {
            let (k, _) = item?;
            let a: [u8; 32] = k
                .get(..32)
                .and_then(|s| s.try_into().ok())
                .ok_or(StoreError::Corrupt("equivocation key"))?;
            if out.last().is_none_or(|l| l.0 != a) {
                out.push(PublicKey(a));
            }
        }
        Ok(out)
    }

    /// Whether a proof against `author` for `trade` is held.
    pub fn has_equivocation(
        &self,
        author: &PublicKey,
        trade: &ObjectId,
    ) -> Result<bool, StoreError> {
        let mut k = [0u8; 64];
        k[..32].copy_from_slice(&author.0);
        k[32..].copy_from_slice(&trade.0);
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_EQUIVOCATIONS)?, k)?
            .is_some())
    }

    /// Stores a verified equivocation proof object (gossiped or found here); false when a
    /// proof against that key for that trade is already held.
    pub fn put_equivocation(
        &self,
        obj: &SignedObject,
        author: &PublicKey,
        trade: &ObjectId,
        durable: bool,
    ) -> Result<bool, StoreError> {
        let cf = self.cf(CF_EQUIVOCATIONS)?;
        let mut k = [0u8; 64];
        k[..32].copy_from_slice(&author.0);
        k[32..].copy_from_slice(&trade.0);
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        if self.db.get_pinned_cf(cf, k)?.is_some() {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_OBJECTS)?, obj.id().0, obj.bytes());
        batch.put_cf(cf, k, obj.id().0);
        self.write(batch, durable)?;
        self.bump_trust();
        Ok(true)
    }

    /// Holds a sealed item for `to` until `expires_at`, within the per-recipient limits.
    /// Returns the item id, or why it was refused (the sender sees the reason).
    pub fn mailbox_put(
        &self,
        to: &[u8; 32],
        sealed: &[u8],
        now_ms: u64,
        expires_at: u64,
        max_items: usize,
        max_bytes: usize,
    ) -> Result<Result<[u8; 32], String>, StoreError> {
        let cf = self.cf(CF_MAILBOX)?;
        let id = *blake3::hash(sealed).as_bytes();
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let mut batch = WriteBatch::default();
        let (mut items, mut bytes) = (0usize, 0usize);
        for item in self.db.prefix_iterator_cf(cf, to) {
            let (k, v) = item?;
            if !k.starts_with(to) {
                break;
            }
            if k[32..] == id {
                return Ok(Ok(id));
            }
            let exp = mailbox_expiry(&v);
            if exp <= now_ms {
                batch.delete_cf(cf, &k);
            } else {
                items += 1;
                bytes += v.len();
            }
        }
        if items >= max_items || bytes + sealed.len() > max_bytes {
            self.write(batch, false)?;
            return Ok(Err(format!(
                "mailbox full: the recipient has {items} items ({bytes} bytes) waiting; the limit is {max_items} items and {max_bytes} bytes"
            )));
        }
        let mut key = [0u8; 64];
        key[..32].copy_from_slice(to);
        key[32..].copy_from_slice(&id);
        let mut value = Vec::with_capacity(8 + sealed.len());
        value.extend_from_slice(&expires_at.to_be_bytes());
        value.extend_from_slice(sealed);
        batch.put_cf(cf, key, value);
        self.write(batch, true)?;
        Ok(Ok(id))
    }

    /// Items waiting for `to` that have not expired, up to the given limits.
    pub fn mailbox_fetch(
        &self,
        to: &[u8; 32],
        now_ms: u64,
        max_items: usize,
        max_bytes: usize,
    ) -> Result<Vec<MailboxItem>, StoreError> {
        let cf = self.cf(CF_MAILBOX)?;
        let mut out = Vec::new();
        let mut bytes = 0;
        for item in self.db.prefix_iterator_cf(cf, to) {
            let (k, v) = item?;
            if !k.starts_with(to) || out.len() >= max_items || bytes + v.len() > max_bytes {
                break;
            }
            let exp = mailbox_expiry(&v);
            if exp > now_ms {
                let id: [u8; 32] = k[32..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("mailbox key"))?;
                bytes += v.len();
                out.push((id, v[8..].to_vec()));
            }
        }
        Ok(out)
    }

    /// Deletes items `to` has received.
    pub fn mailbox_ack(&self, to: &[u8; 32], ids: &[[u8; 32]]) -> Result<(), StoreError> {
        let cf = self.cf(CF_MAILBOX)?;
        let mut batch = WriteBatch::default();
        for id in ids {
            let mut key = [0u8; 64];
            key[..32].copy_from_slice(to);
            key[32..].copy_from_slice(id);
            batch.delete_cf(cf, key);
        }
        self.write(batch, true)
    }

    fn bump_trust(&self) {
        self.trust_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Changes whenever a listing head was written or pruned.
    pub fn listing_generation(&self) -> u64 {
        self.listing_generation
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Deletes every blob that no listing held here names (photos of expired or replaced
    /// listings), except those in `keep`. Returns how many were deleted.
    pub fn gc_blobs(&self, keep: &std::collections::HashSet<[u8; 32]>) -> Result<u64, StoreError> {
        let mut referenced: std::collections::HashSet<[u8; 32]> = keep.clone();
        self.for_each_listing(None, |s| {
            referenced.extend(s.listing.images.iter().copied());
            true
        })?;
        let cf = self.cf(CF_BLOBS)?;
        let mut batch = WriteBatch::default();
        let mut n = 0;
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, _) = item?;
            if k.len() != 36 {
                continue;
            }
            let mut id = [0u8; 32];
            id.copy_from_slice(&k[..32]);
            if !referenced.contains(&id) {
                if k[32..] == [0xff; 4] {
                    n += 1;
                }
                batch.delete_cf(cf, &k);
            }
        }
        if n > 0 {
            self.write(batch, false)?;
        }
        Ok(n)
    }

    /// Changes whenever something trust depends on was written.
    pub fn trust_generation(&self) -> u64 {
        self.trust_generation
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stores a verified attestation if it is the one that counts for its author and trade
    /// (the latest; ties: the lowest id), replacing the one it supersedes. Returns whether it
    /// was stored.
    pub fn put_attestation(
        &self,
        obj: &SignedObject,
        a: &Attested,
        durable: bool,
    ) -> Result<bool, StoreError> {
        let objects = self.cf(CF_OBJECTS)?;
        let cf = self.cf(CF_ATTESTATIONS)?;
        let rec = AttestationRecord {
            trade: a.trade,
            author: a.author,
            at: a.attestation.at,
            object: obj.id(),
            about: a.attestation.about,
            score: a.attestation.score,
            value: a.terms.total(),
        };
        let key = rec.key();
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let mut batch = WriteBatch::default();
        if let Some(prev) = self.db.get_pinned_cf(cf, key)? {
            let prev = AttestationRecord::decode(&key, &prev)?;
            if (prev.at, std::cmp::Reverse(prev.object)) >= (rec.at, std::cmp::Reverse(rec.object))
            {
                return Ok(false);
            }
            batch.delete_cf(objects, prev.object.0);
        }
        batch.put_cf(objects, obj.id().0, obj.bytes());
        batch.put_cf(cf, key, rec.encode());
        self.write(batch, durable)?;
        self.bump_trust();
        Ok(true)
    }

    /// Calls `f` for every attestation record, in (trade, author) order after `after`, until
    /// it returns false.
    pub fn for_each_attestation(
        &self,
        after: Option<&[u8; 64]>,
        mut f: impl FnMut(AttestationRecord) -> bool,
    ) -> Result<(), StoreError> {
        let cf = self.cf(CF_ATTESTATIONS)?;
        let mode = match after {
            Some(a) => IteratorMode::From(a, Direction::Forward),
            None => IteratorMode::Start,
        };
        for item in self.db.iterator_cf(cf, mode) {
            let (k, v) = item?;
            if after.is_some_and(|a| a.as_slice() == k.as_ref()) {
                continue;
            }
            if !f(AttestationRecord::decode(&k, &v)?) {
                break;
            }
        }
        Ok(())
    }

    /// Number of attestations held (one per author and trade).
    pub fn attestation_count(&self) -> Result<u64, StoreError> {
        let mut n = 0;
        self.for_each_attestation(None, |_| {
            n += 1;
            true
        })?;
        Ok(n)
    }

    /// The keys this node's user trusts.
    pub fn trusted(&self) -> Result<Vec<PublicKey>, StoreError> {
        let meta = self.cf(CF_META)?;
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(meta, b"trusted/") {
            let (k, _) = item?;
            let Some(rest) = k.strip_prefix(b"trusted/".as_slice()) else {
                break;
            };
            out.push(PublicKey(
                rest.try_into()
                    .map_err(|_| StoreError::Corrupt("trusted key"))?,
            ));
        }
        Ok(out)
    }

    /// Adds (`true`) or removes a key from the trusted set (synced). Returns whether it changed.
    pub fn set_trusted(&self, key: &PublicKey, trusted: bool) -> Result<bool, StoreError> {
        let meta = self.cf(CF_META)?;
        let mut k = b"trusted/".to_vec();
        k.extend_from_slice(&key.0);
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let had = self.db.get_pinned_cf(meta, &k)?.is_some();
        if had == trusted {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        if trusted {
            batch.put_cf(meta, k, b"");
        } else {
            batch.delete_cf(meta, k);
        }
        self.write(batch, true)?;
        self.bump_trust();
        Ok(true)
    }

    fn blob_key(id: &ObjectId, part: u32) -> [u8; 36] {
        let mut k = [0u8; 36];
        k[..32].copy_from_slice(&id.0);
        k[32..].copy_from_slice(&part.to_be_bytes());
        k
    }

    /// Stores a whole blob whose every chunk was checked against `manifest` (synced), in one
    /// batch: a blob is either entirely held or not at all.
    pub fn put_blob(
        &self,
        manifest: &jangteo_protocol::blob::Manifest,
        chunks: &[Vec<u8>],
    ) -> Result<ObjectId, StoreError> {
        let id = manifest.id();
        if chunks.len() != manifest.chunks.len()
            || chunks
                .iter()
                .enumerate()
                .any(|(i, c)| manifest.verify_chunk(i, c).is_err())
        {
            return Err(StoreError::Corrupt("blob chunks do not match the manifest"));
        }
        let cf = self.cf(CF_BLOBS)?;
        let mut batch = WriteBatch::default();
        for (i, c) in chunks.iter().enumerate() {
            batch.put_cf(cf, Self::blob_key(&id, i as u32), c);
        }
        batch.put_cf(cf, Self::blob_key(&id, u32::MAX), manifest.encode());
        self.write(batch, true)?;
        Ok(id)
    }

    /// The manifest of a blob held here.
    pub fn blob_manifest(&self, id: &ObjectId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .db
            .get_cf(self.cf(CF_BLOBS)?, Self::blob_key(id, u32::MAX))?)
    }

    /// Chunk `index` of a blob held here.
    pub fn blob_chunk(&self, id: &ObjectId, index: u32) -> Result<Option<Vec<u8>>, StoreError> {
        if index == u32::MAX {
            return Ok(None);
        }
        Ok(self
            .db
            .get_cf(self.cf(CF_BLOBS)?, Self::blob_key(id, index))?)
    }

    /// The whole blob, if held.
    pub fn blob(&self, id: &ObjectId) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(m) = self.blob_manifest(id)? else {
            return Ok(None);
        };
        let m = jangteo_protocol::blob::Manifest::decode_for(id, &m)
            .map_err(|_| StoreError::Corrupt("blob manifest"))?;
        let mut out = Vec::with_capacity(m.size as usize);
        for i in 0..m.chunks.len() {
            let c = self
                .blob_chunk(id, i as u32)?
                .ok_or(StoreError::Corrupt("blob chunk missing"))?;
            out.extend_from_slice(&c);
        }
        Ok(Some(out))
    }

    /// Ids of every whole blob held.
    pub fn blob_ids(&self) -> Result<Vec<ObjectId>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_BLOBS)?, IteratorMode::Start) {
            let (k, _) = item?;
            if k.len() == 36 && k[32..] == [0xff; 4] {
                let mut id = [0u8; 32];
                id.copy_from_slice(&k[..32]);
                out.push(ObjectId(id));
            }
        }
        Ok(out)
    }

    /// Number of whole blobs held.
    pub fn blob_count(&self) -> Result<u64, StoreError> {
        let mut n = 0;
        for item in self.db.iterator_cf(self.cf(CF_BLOBS)?, IteratorMode::Start) {
            let (k, _) = item?;
            if k.len() == 36 && k[32..] == [0xff; 4] {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Test hook: overwrites one stored chunk with other bytes, to play a lying peer.
    #[doc(hidden)]
    pub fn corrupt_blob_chunk_for_tests(
        &self,
        id: &ObjectId,
        index: u32,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_BLOBS)?, Self::blob_key(id, index), bytes);
        self.write(batch, false)
    }

    /// Deletes every mailbox item that has expired; returns how many.
    pub fn mailbox_sweep(&self, now_ms: u64) -> Result<u64, StoreError> {
        let cf = self.cf(CF_MAILBOX)?;
        let mut batch = WriteBatch::default();
        let mut n = 0;
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item?;
            let exp = mailbox_expiry(&v);
            if exp <= now_ms {
                batch.delete_cf(cf, &k);
                n += 1;
            }
        }
        if n > 0 {
            self.write(batch, false)?;
        }
        Ok(n)
    }

    /// Items and bytes held in mailboxes for others.
    pub fn mailbox_stats(&self) -> Result<(u64, u64), StoreError> {
        let (mut n, mut b) = (0, 0);
        for item in self
            .db
            .iterator_cf(self.cf(CF_MAILBOX)?, IteratorMode::Start)
        {
            let (_, v) = item?;
            n += 1;
            b += v.len() as u64;
        }
        Ok((n, b))
    }

    /// Notified whenever listings were queued for the search indexer.
    pub fn index_wakeup(&self) -> &tokio::sync::Notify {
        &self.index_wakeup
    }

    /// Up to `max` listings waiting for the indexer, with the queue value each had.
    pub fn index_queue(&self, max: usize) -> Result<Vec<(ListingId, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_INDEX_QUEUE)?, IteratorMode::Start)
            .take(max)
        {
            let (k, v) = item?;
            let id: [u8; 32] = k
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("index queue key"))?;
            out.push((ListingId(id), v.to_vec()));
        }
        Ok(out)
    }

    /// Removes indexed entries from the queue, except those re-queued since they were read
    /// (their value changed), which the indexer must see again.
    pub fn index_queue_done(&self, done: &[(ListingId, Vec<u8>)]) -> Result<(), StoreError> {
        let queue = self.cf(CF_INDEX_QUEUE)?;
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let mut batch = WriteBatch::default();
        for (id, seen) in done {
            if self
                .db
                .get_pinned_cf(queue, id.0)?
                .is_some_and(|v| v.as_ref() == seen.as_slice())
            {
                batch.delete_cf(queue, id.0);
            }
        }
        self.write(batch, false)
    }

    /// Empties the indexer queue (after a full rebuild from the heads).
    pub fn clear_index_queue(&self) -> Result<(), StoreError> {
        let queue = self.cf(CF_INDEX_QUEUE)?;
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let mut batch = WriteBatch::default();
        for item in self.db.iterator_cf(queue, IteratorMode::Start) {
            let (k, _) = item?;
            batch.delete_cf(queue, &k);
        }
        self.write(batch, false)
    }
}

/// A listing version as held in the store.
#[derive(Debug, Clone)]
pub struct StoredListing {
    /// Stable id.
    pub id: ListingId,
    /// Head record.
    pub head: ListingHead,
    /// Seller's key.
    pub author: PublicKey,
    /// Decoded body.
    pub listing: Listing,
    /// The exact object bytes.
    pub bytes: Vec<u8>,
}

impl StoredListing {
    fn from_bytes(id: ListingId, head: ListingHead, bytes: &[u8]) -> Result<Self, StoreError> {
        let env = jangteo_protocol::Envelope::decode(bytes)
            .map_err(|_| StoreError::Corrupt("stored object"))?;
        let listing =
            Listing::decode(&env.body).map_err(|_| StoreError::Corrupt("stored listing body"))?;
        Ok(Self {
            id,
            head,
            author: env.author,
            listing,
            bytes: bytes.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use jangteo_protocol::{Kind, ListingStatus};

    const NOW: u64 = 1_760_000_000_000;

    fn listing(seq: u64) -> Listing {
        Listing {
            nonce: [3; 16],
            seq,
            created_at: NOW,
            updated_at: NOW + seq,
            expires_at: NOW + 86_400_000,
            status: ListingStatus::Active,
            title: format!("kettle v{seq}"),
            description: String::new(),
            category: "home".into(),
            condition: None,
            price: 15_000,
            currency: "KRW".into(),
            quantity: 1,
            images: vec![],
            location: None,
            moderators: vec![],
        }
    }

    fn signed(l: &Listing) -> SignedObject {
        SignedObject::sign(Kind::Listing, l.encode(), &SigningKey::from_bytes(&[8; 32]))
    }

    /// SPEC §3: a retraction is final whatever seq follows, a retraction with a lower seq
    /// replaces an active head (so every node ends on it), expires never moves earlier, and
    /// a retracted head outlives its expiry so no older version can come back.
    #[test]
    fn a_retraction_is_final_and_expiry_never_moves_earlier() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let v1 = listing(1);
        let shorter = Listing {
            expires_at: NOW + 3_600_000,
            ..listing(2)
        };
        let put = |l: &Listing| store.put_listing(&signed(l), l, NOW, true).expect("put");
        assert_eq!(put(&v1), ListingWrite::New);
        assert!(matches!(put(&shorter), ListingWrite::Refused(_)));
        let retracted = Listing {
            status: ListingStatus::Retracted,
            ..listing(2)
        };
        let revived = listing(3);
        assert_eq!(put(&revived), ListingWrite::Replaced { previous_seq: 1 });
        // The retraction arrives after a higher active seq: it wins anyway.
        assert_eq!(put(&retracted), ListingWrite::Replaced { previous_seq: 3 });
        assert!(matches!(put(&listing(4)), ListingWrite::Refused(_)));
        assert!(matches!(
            put(&revived),
            ListingWrite::Duplicate | ListingWrite::Stale { .. } | ListingWrite::Refused(_)
        ));
        let id = v1.id(&signed(&v1).envelope().author);
        let head = store.listing(&id).expect("read").expect("held");
        assert_eq!(head.listing.status, ListingStatus::Retracted);
        // Past its expiry the retracted head stays (until created + 180 days) ...
        assert_eq!(store.prune_expired(NOW + 2 * 86_400_000).expect("prune"), 0);
        assert!(matches!(put(&listing(5)), ListingWrite::Refused(_)));
        // ... and goes once no version of the listing can be valid.
        let end = NOW + jangteo_protocol::listing::LIFETIME_MAX_MS + 1;
        assert_eq!(store.prune_expired(end).expect("prune"), 1);
    }

    #[test]
    fn highest_seq_wins_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (v1, v2, v3) = (listing(1), listing(2), listing(3));
        let id;
        {
            let store = Store::open(dir.path()).expect("open");
            assert_eq!(
                store
                    .put_listing(&signed(&v2), &v2, NOW, true)
                    .expect("put"),
                ListingWrite::New
            );
            assert_eq!(
                store
                    .put_listing(&signed(&v1), &v1, NOW, true)
                    .expect("put"),
                ListingWrite::Stale { head_seq: 2 }
            );
            assert_eq!(
                store
                    .put_listing(&signed(&v2), &v2, NOW, true)
                    .expect("put"),
                ListingWrite::Duplicate
            );
            assert_eq!(
                store
                    .put_listing(&signed(&v3), &v3, NOW, true)
                    .expect("put"),
                ListingWrite::Replaced { previous_seq: 2 }
            );
            id = v3.id(&signed(&v3).envelope().author);
            // The replaced version's bytes are gone; the head's are there.
            assert!(store.object(&signed(&v2).id()).expect("get").is_none());
        }
        let store = Store::open(dir.path()).expect("reopen");
        let got = store
            .listing(&id)
            .expect("get")
            .expect("present after reopen");
        assert_eq!(got.listing, v3);
        assert_eq!(got.bytes, signed(&v3).bytes());
        assert_eq!(store.listing_count().expect("count"), 1);
    }

    #[test]
    fn expired_unknown_listing_not_stored_and_prune_removes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let l = listing(1);
        assert_eq!(
            store
                .put_listing(&signed(&l), &l, l.expires_at, false)
                .expect("put"),
            ListingWrite::Expired
        );
        assert!(
            store
                .put_listing(&signed(&l), &l, NOW, false)
                .expect("put")
                .stored()
        );
        assert_eq!(store.prune_expired(NOW).expect("prune"), 0);
        assert_eq!(store.prune_expired(l.expires_at + 1).expect("prune"), 1);
        assert_eq!(store.listing_count().expect("count"), 0);
    }

    #[test]
    fn mailboxes_keep_their_limits_expire_and_delete_on_ack() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let (alice, bob) = ([1u8; 32], [2u8; 32]);
        for i in 0..3u8 {
            assert!(
                store
                    .mailbox_put(&alice, &[i; 100], NOW, NOW + 1000, 3, 10_000)
                    .expect("put")
                    .is_ok()
            );
        }
        // Same item twice: stored once.
        assert!(
            store
                .mailbox_put(&alice, &[0; 100], NOW, NOW + 1000, 3, 10_000)
                .expect("put")
                .is_ok()
        );
        let full = store
            .mailbox_put(&alice, &[9; 100], NOW, NOW + 1000, 3, 10_000)
            .expect("put");
        assert!(full.expect_err("full").contains("mailbox full"));
        assert!(
            store
                .mailbox_put(&bob, &[9; 100], NOW, NOW + 1000, 3, 150)
                .expect("put")
                .is_ok()
        );
        assert!(
            store
                .mailbox_put(&bob, &[8; 100], NOW, NOW + 1000, 3, 150)
                .expect("put")
                .is_err(),
            "bytes limit"
        );
        let items = store
            .mailbox_fetch(&alice, NOW, 10, 1 << 20)
            .expect("fetch");
        assert_eq!(items.len(), 3);
        assert!(
            store
                .mailbox_fetch(&alice, NOW + 1000, 10, 1 << 20)
                .expect("fetch")
                .is_empty(),
            "expired"
        );
        store.mailbox_ack(&alice, &[items[0].0]).expect("ack");
        assert_eq!(
            store
                .mailbox_fetch(&alice, NOW, 10, 1 << 20)
                .expect("fetch")
                .len(),
            2
        );
        assert_eq!(store.mailbox_stats().expect("stats").0, 3);
    }

    #[test]
    fn changed_created_at_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let v1 = listing(1);
        let mut v2 = listing(2);
        v2.created_at += 1;
        store
            .put_listing(&signed(&v1), &v1, NOW, false)
            .expect("put");
        assert_eq!(
            store
                .put_listing(&signed(&v2), &v2, NOW, false)
                .expect("put"),
            ListingWrite::Inconsistent
        );
    }
}

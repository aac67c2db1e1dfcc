//! Listings and profiles: a verified listing version replaces the head when it wins by the
//! protocol's head choice (the previous version deleted, the sync item and the search
//! outbox entry written in the same batch), profiles by `created_at`, and expired heads
//! are pruned.
//!
//! It stores only what `ingest` verified and never decides validity itself: the protocol's
//! rules do.

use jangteo_protocol::listing::HeadChoice;
use jangteo_protocol::{Listing, ListingId, ObjectId, Profile, PublicKey, SignedObject};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::error::StoreError;

use super::{
    AUTHOR_LISTINGS_BUILT, CF_AUTHOR_LISTINGS, CF_INDEX_QUEUE, CF_LISTING_HEADS, CF_META,
    CF_OBJECTS, CF_PROFILES, CF_SYNC_ITEMS, Store,
};

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
    /// (retraction is final), the version moves `expires` earlier, or it follows the held one
    /// too soon. Not the sender's fault: a forwarder that held an older version could not
    /// know.
    Refused(&'static str),
    /// The listing's stamp is worth less than the network's base difficulty (SPEC §3.1):
    /// invalid whatever a node holds, so the sender is at fault. A stamp made for another
    /// listing is worth (almost surely) nothing on this one.
    TooCheap {
        /// Bits of work of the stamp on this listing.
        got: u32,
        /// The base difficulty.
        needed: u32,
    },
    /// A new listing of a key that, by the listings held here, asks a costlier stamp than it
    /// carries (SPEC §3.1). Not the sender's fault: other nodes may hold fewer of that key's
    /// listings.
    StampBelowCount {
        /// Bits of work of the stamp.
        got: u32,
        /// What the key's active listings held here ask.
        needed: u32,
        /// The key's other active listings held here.
        active: u64,
    },
    /// A new listing of a key that has the most active listings held here already (SPEC
    /// §3.1). Not the sender's fault either.
    OverCap {
        /// The key's other active listings held here (at least the cap).
        active: u64,
    },
}

impl ListingWrite {
    /// Whether the object was stored.
    pub fn stored(self) -> bool {
        matches!(self, ListingWrite::New | ListingWrite::Replaced { .. })
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

impl Store {
    /// Sets the network's base difficulty of listing stamps (SPEC §3.1; 0: no stamp asked).
    pub fn set_stamp_bits(&self, bits: u32) {
        self.stamp_bits
            .store(bits, std::sync::atomic::Ordering::Relaxed);
    }

    /// The network's base difficulty of listing stamps.
    pub fn stamp_bits(&self) -> u32 {
        self.stamp_bits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The active listings (not retracted, not expired at `now_ms`) of `author` held here,
    /// leaving out `except`; counts stop at [`jangteo_protocol::listing::LISTING_ACTIVE_MAX`].
    pub fn active_listings(
        &self,
        author: &PublicKey,
        except: Option<&ListingId>,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        let cf = self.cf(CF_AUTHOR_LISTINGS)?;
        let mut n = 0;
        let mode = IteratorMode::From(&author.0, Direction::Forward);
        for item in self.db.iterator_cf(cf, mode) {
            let (k, v) = item?;
            if k.len() != 64 || k[..32] != author.0 {
                break;
            }
            if except.is_some_and(|e| k[32..] == e.0) {
                continue;
            }
            let expires = <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt("author listing record"))?;
            if expires > now_ms {
                n += 1;
                if n >= jangteo_protocol::listing::LISTING_ACTIVE_MAX {
                    break;
                }
            }
        }
        Ok(n)
    }

    fn author_listing_key(author: &PublicKey, id: &ListingId) -> [u8; 64] {
        let mut k = [0u8; 64];
        k[..32].copy_from_slice(&author.0);
        k[32..].copy_from_slice(&id.0);
        k
    }

    /// Builds the per-key index of listings (stores made before it existed).
    pub(super) fn build_author_listings(&self) -> Result<(), StoreError> {
        let cf = self.cf(CF_AUTHOR_LISTINGS)?;
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let mut batch = WriteBatch::default();
        self.for_each_listing(None, |s| {
            if s.listing.status == jangteo_protocol::ListingStatus::Active {
                batch.put_cf(
                    cf,
                    Self::author_listing_key(&s.author, &s.id),
                    s.listing.expires_at.to_be_bytes(),
                );
            }
            true
        })?;
        batch.put_cf(self.cf(CF_META)?, AUTHOR_LISTINGS_BUILT, b"1");
        self.write(batch, true)
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

    pub(super) fn listing_written(&self) {
        self.listing_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.index_wakeup.notify_one();
    }

    /// Adds the writes of a listing version to `batch` if it becomes the head (SPEC §3: the
    /// highest `seq` wins, except that a retraction wins over every other version; `created`
    /// is fixed and `expires` never moves earlier). The caller holds the write lock.
    pub(super) fn stage_listing(
        &self,
        batch: &mut WriteBatch,
        obj: &SignedObject,
        listing: &Listing,
        now_ms: u64,
    ) -> Result<ListingWrite, StoreError> {
        let author = obj.envelope().author;
        let id = listing.id(&author);
        let objects = self.cf(CF_OBJECTS)?;
        let heads = self.cf(CF_LISTING_HEADS)?;
        if self.db.get_pinned_cf(objects, obj.id().0)?.is_some() {
            return Ok(ListingWrite::Duplicate);
        }
        // SPEC §3.1: every version carries a stamp worth the base difficulty at least.
        let base = self.stamp_bits();
        let work = listing.stamp_work(&author);
        if work < base {
            return Ok(ListingWrite::TooCheap {
                got: work,
                needed: base,
            });
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
            // A new active listing: the key's other active listings held here set what its
            // stamp must be worth, up to the cap.
            None if listing.status == jangteo_protocol::ListingStatus::Active => {
                let active = self.active_listings(&author, Some(&id), now_ms)?;
                if active >= jangteo_protocol::listing::LISTING_ACTIVE_MAX {
                    return Ok(ListingWrite::OverCap { active });
                }
                let needed = jangteo_protocol::listing::stamp_bits(base, active);
                if work < needed {
                    return Ok(ListingWrite::StampBelowCount {
                        got: work,
                        needed,
                        active,
                    });
                }
                ListingWrite::New
            }
            None => ListingWrite::New,
        };
        let by_author = Self::author_listing_key(&author, &id);
        if listing.status == jangteo_protocol::ListingStatus::Active {
            batch.put_cf(
                self.cf(CF_AUTHOR_LISTINGS)?,
                by_author,
                listing.expires_at.to_be_bytes(),
            );
        } else {
            batch.delete_cf(self.cf(CF_AUTHOR_LISTINGS)?, by_author);
        }
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

    /// Changes whenever a listing head was written or pruned.
    pub fn listing_generation(&self) -> u64 {
        self.listing_generation
            .load(std::sync::atomic::Ordering::Relaxed)
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
                let bytes = self.object(&head.object)?;
                let listing = bytes.as_deref().and_then(Self::stored_listing);
                if let Some(env) = bytes
                    .as_deref()
                    .and_then(|b| jangteo_protocol::Envelope::decode(b).ok())
                    && let Ok(lid) = <[u8; 32]>::try_from(k.as_ref())
                {
                    batch.delete_cf(
                        self.cf(CF_AUTHOR_LISTINGS)?,
                        Self::author_listing_key(&env.author, &ListingId(lid)),
                    );
                }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use jangteo_protocol::{Kind, ListingStatus};

    const NOW: u64 = 1_760_000_000_000;

    fn listing(seq: u64) -> Listing {
        Listing {
            stamp: None,
            nonce: [3; 16],
            seq,
            created_at: NOW,
            // Versions the least interval apart (SPEC §3.1).
            updated_at: NOW + seq * jangteo_protocol::listing::LISTING_VERSION_INTERVAL_MS,
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

    /// A listing of `key` with nonce `n`, stamped with the lowest nonce worth `bits` or more
    /// (or, with `exactly`, the lowest worth exactly `bits`).
    fn stamped(key: &SigningKey, n: u32, bits: u32, exactly: bool) -> (SignedObject, Listing) {
        let mut l = listing(1);
        l.nonce[..4].copy_from_slice(&n.to_be_bytes());
        let author = PublicKey(key.verifying_key().to_bytes());
        let subject = l.stamp_subject(&author);
        let w = jangteo_protocol::stamp::Worker::new(
            jangteo_protocol::stamp::LISTING_CONTEXT,
            &subject,
        );
        let nonce = (0..)
            .find(|&x| {
                let b = w.bits(x);
                if exactly { b == bits } else { b >= bits }
            })
            .expect("a nonce");
        l.stamp = Some(nonce);
        (SignedObject::sign(Kind::Listing, l.encode(), key), l)
    }

    /// SPEC §3.1: a stamp below the base is refused as invalid whatever is held (a missing
    /// one, one made for another listing); the difficulty grows from a key's sixteenth active
    /// listing held; a version of a held listing needs the base only; refused ones are not
    /// stored.
    #[test]
    fn stamps_below_the_base_or_below_the_count_are_refused_and_not_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store.set_stamp_bits(6);
        let key = SigningKey::from_bytes(&[8; 32]);
        let author = PublicKey(key.verifying_key().to_bytes());
        // None at all.
        let bare = listing(1);
        assert_eq!(
            store
                .put_listing(&signed(&bare), &bare, NOW, true)
                .expect("put"),
            ListingWrite::TooCheap { got: 0, needed: 6 }
        );
        // Another listing's stamp (worth less here: checked by the assertion).
        let (_, other) = stamped(&key, 1, 6, false);
        let mut forged = listing(1);
        forged.nonce[..4].copy_from_slice(&2u32.to_be_bytes());
        forged.stamp = other.stamp;
        let got = forged.stamp_work(&author);
        assert!(got < 6, "this forged stamp happens to be worth {got}");
        let forged_obj = SignedObject::sign(Kind::Listing, forged.encode(), &key);
        assert_eq!(
            store
                .put_listing(&forged_obj, &forged, NOW, true)
                .expect("put"),
            ListingWrite::TooCheap { got, needed: 6 }
        );
        assert!(store.object(&forged_obj.id()).expect("read").is_none());
        // Sixteen listings at exactly the base; the seventeenth needs a bit more.
        for n in 10..26 {
            let (o, l) = stamped(&key, n, 6, true);
            assert_eq!(
                store.put_listing(&o, &l, NOW, false).expect("put"),
                ListingWrite::New
            );
        }
        assert_eq!(
            store.active_listings(&author, None, NOW).expect("count"),
            16
        );
        let (o, l) = stamped(&key, 40, 6, true);
        assert_eq!(
            store.put_listing(&o, &l, NOW, false).expect("put"),
            ListingWrite::StampBelowCount {
                got: 6,
                needed: 7,
                active: 16
            }
        );
        assert!(store.object(&o.id()).expect("read").is_none());
        let (o, l) = stamped(&key, 40, 7, true);
        assert_eq!(
            store.put_listing(&o, &l, NOW, false).expect("put"),
            ListingWrite::New
        );
        // An edit of a held listing at the base, past the interval, is taken.
        let (_, mut edit) = stamped(&key, 10, 6, true);
        edit.seq = 2;
        edit.updated_at += jangteo_protocol::listing::LISTING_VERSION_INTERVAL_MS;
        edit.price = 1;
        let o = SignedObject::sign(Kind::Listing, edit.encode(), &key);
        assert!(
            store
                .put_listing(&o, &edit, NOW, false)
                .expect("put")
                .stored()
        );
        // Expired listings count no more; the store opened again counts the same.
        assert_eq!(
            store
                .active_listings(&author, None, NOW + 86_400_000)
                .expect("count"),
            0
        );
        drop(store);
        let store = Store::open(dir.path()).expect("open again");
        assert_eq!(
            store.active_listings(&author, None, NOW).expect("count"),
            17
        );
    }

    /// SPEC §3.1: at most 1 000 active listings per key; a retraction frees a place; an
    /// edit of a held listing is not a new one; another key is not affected.
    #[test]
    fn a_key_holds_at_most_the_cap_of_active_listings() {
        use jangteo_protocol::listing::LISTING_ACTIVE_MAX;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let key = SigningKey::from_bytes(&[8; 32]);
        let author = PublicKey(key.verifying_key().to_bytes());
        let make = |n: u32| {
            let mut l = listing(1);
            l.nonce[..4].copy_from_slice(&n.to_be_bytes());
            l
        };
        for n in 0..LISTING_ACTIVE_MAX as u32 {
            let l = make(n);
            assert_eq!(
                store.put_listing(&signed(&l), &l, NOW, false).expect("put"),
                ListingWrite::New
            );
        }
        let over = make(5000);
        assert_eq!(
            store
                .put_listing(&signed(&over), &over, NOW, false)
                .expect("put"),
            ListingWrite::OverCap {
                active: LISTING_ACTIVE_MAX
            }
        );
        assert!(store.listing(&over.id(&author)).expect("read").is_none());
        // An edit of one held is taken.
        let mut edit = make(7);
        edit.seq = 2;
        edit.updated_at += jangteo_protocol::listing::LISTING_VERSION_INTERVAL_MS;
        assert!(
            store
                .put_listing(&signed(&edit), &edit, NOW, false)
                .expect("put")
                .stored()
        );
        // Another key posts freely.
        let other = SigningKey::from_bytes(&[9; 32]);
        assert_eq!(
            store
                .put_listing(
                    &SignedObject::sign(Kind::Listing, over.encode(), &other),
                    &over,
                    NOW,
                    false
                )
                .expect("put"),
            ListingWrite::New
        );
        // A retraction (at once: no interval) frees a place.
        let mut gone = make(8);
        gone.seq = 2;
        gone.status = ListingStatus::Retracted;
        assert!(
            store
                .put_listing(&signed(&gone), &gone, NOW, false)
                .expect("put")
                .stored()
        );
        assert_eq!(
            store
                .put_listing(&signed(&over), &over, NOW, false)
                .expect("put"),
            ListingWrite::New
        );
    }
}

//! Reports and moderators: the reports this node holds (by target, and by author for the
//! caps of SPEC §7.2), and the keys its user subscribed to as moderators.
//!
//! Which of an author's reports to keep is the protocol's rule
//! ([`jangteo_protocol::report::admit`]); this file carries it out in one batch per report
//! and weighs nothing: the moderation service does.

use jangteo_protocol::report::{Admission, HeldReport, Report, ReportReason, admit};
use jangteo_protocol::{ListingId, ObjectId, PublicKey, SignedObject};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::error::StoreError;

use super::{CF_META, CF_OBJECTS, CF_REPORTS, CF_REPORTS_BY_AUTHOR, Store};

/// Meta key prefix of a moderator this node's user subscribed to: `moderator/` || key.
const MODERATOR_PREFIX: &[u8] = b"moderator/";
/// Most reports about one target [`Store::reports_about`] reads.
pub const REPORTS_READ_MAX: usize = 4096;
/// Most moderators a node subscribes to.
pub const MODERATORS_MAX: usize = 64;

/// What the store keeps about one report held: enough to weigh and show it without decoding
/// the object again (the text is read from the object when shown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportRecord {
    /// The listing id, or the key, reported.
    pub target: [u8; 32],
    /// Who reported.
    pub author: PublicKey,
    /// When it was signed.
    pub at: u64,
    /// Its object id.
    pub object: ObjectId,
    /// Why.
    pub reason: ReportReason,
    /// The key reported (for a listing: its seller).
    pub about: PublicKey,
    /// Whether it is about a listing (else about the key `about`).
    pub listing: bool,
}

impl ReportRecord {
    const LEN: usize = 8 + 32 + 1 + 1 + 32;

    fn key(&self) -> [u8; 64] {
        let mut k = [0u8; 64];
        k[..32].copy_from_slice(&self.target);
        k[32..].copy_from_slice(&self.author.0);
        k
    }

    /// `author (32) || at (8, BE) || object (32)`: the author's reports in time order.
    fn author_key(&self) -> [u8; 72] {
        let mut k = [0u8; 72];
        k[..32].copy_from_slice(&self.author.0);
        k[32..40].copy_from_slice(&self.at.to_be_bytes());
        k[40..].copy_from_slice(&self.object.0);
        k
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::LEN);
        v.extend_from_slice(&self.at.to_be_bytes());
        v.extend_from_slice(&self.object.0);
        v.push(self.reason.code());
        v.push(u8::from(self.listing));
        v.extend_from_slice(&self.about.0);
        v
    }

    fn decode(key: &[u8], v: &[u8]) -> Result<Self, StoreError> {
        let bad = || StoreError::Corrupt("report record");
        if key.len() != 64 || v.len() != Self::LEN {
            return Err(bad());
        }
        let b32 = |s: &[u8]| <[u8; 32]>::try_from(s).map_err(|_| bad());
        let b8 = |s: &[u8]| <[u8; 8]>::try_from(s).map_err(|_| bad());
        Ok(Self {
            target: b32(&key[..32])?,
            author: PublicKey(b32(&key[32..])?),
            at: u64::from_be_bytes(b8(&v[..8])?),
            object: ObjectId(b32(&v[8..40])?),
            reason: ReportReason::from_code(v[40]).ok_or_else(bad)?,
            listing: v[41] != 0,
            about: PublicKey(b32(&v[42..74])?),
        })
    }

    fn held(&self) -> HeldReport {
        HeldReport {
            id: self.object,
            target: self.target,
            at: self.at,
        }
    }
}

/// What a write of a verified report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportWrite {
    /// Stored (and the reports it superseded or pushed out deleted).
    Stored,
    /// About a listing this node does not hold: not stored (sync offers it again).
    ListingNotHeld,
    /// About a listing held here whose seller is not the report's `about`: invalid.
    WrongSeller,
    /// Not kept by the caps of SPEC §7.2 (or held already); why.
    Refused(&'static str),
}

impl Store {
    /// Stores a verified report if the caps of SPEC §7.2 keep it, deleting what it supersedes
    /// or pushes out, in one batch.
    pub fn put_report(
        &self,
        obj: &SignedObject,
        report: &Report,
        durable: bool,
    ) -> Result<ReportWrite, StoreError> {
        let author = obj.envelope().author;
        if let Some(listing) = report.listing {
            match self.listing(&ListingId(listing))? {
                None => return Ok(ReportWrite::ListingNotHeld),
                Some(l) if l.author != report.about => return Ok(ReportWrite::WrongSeller),
                Some(_) => {}
            }
        }
        let rec = ReportRecord {
            target: report.target(),
            author,
            at: report.at,
            object: obj.id(),
            reason: report.reason,
            about: report.about,
            listing: report.listing.is_some(),
        };
        let objects = self.cf(CF_OBJECTS)?;
        let by_target = self.cf(CF_REPORTS)?;
        let by_author = self.cf(CF_REPORTS_BY_AUTHOR)?;
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let held = self.reports_of(&author)?;
        let held_reports: Vec<HeldReport> = held.iter().map(ReportRecord::held).collect();
        let evict = match admit(&held_reports, rec.held()) {
            Admission::Take { evict } => evict,
            Admission::Refuse(why) => return Ok(ReportWrite::Refused(why)),
        };
        let mut batch = WriteBatch::default();
        for gone in held.iter().filter(|h| evict.contains(&h.object)) {
            batch.delete_cf(objects, gone.object.0);
            batch.delete_cf(by_target, gone.key());
            batch.delete_cf(by_author, gone.author_key());
        }
        batch.put_cf(objects, obj.id().0, obj.bytes());
        batch.put_cf(by_target, rec.key(), rec.encode());
        batch.put_cf(by_author, rec.author_key(), rec.target);
        self.write(batch, durable)?;
        self.bump_reports();
        Ok(ReportWrite::Stored)
    }

    /// Every report of `author` held, oldest first (at most the protocol's cap, plus what an
    /// older version of the caps let in).
    pub fn reports_by(&self, author: &PublicKey) -> Result<Vec<ReportRecord>, StoreError> {
        self.reports_of(author)
    }

    fn reports_of(&self, author: &PublicKey) -> Result<Vec<ReportRecord>, StoreError> {
        let by_author = self.cf(CF_REPORTS_BY_AUTHOR)?;
        let by_target = self.cf(CF_REPORTS)?;
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(by_author, IteratorMode::From(&author.0, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(&author.0) {
                break;
            }
            let target: [u8; 32] = v
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("report author index"))?;
            let mut key = [0u8; 64];
            key[..32].copy_from_slice(&target);
            key[32..].copy_from_slice(&author.0);
            let Some(rec) = self.db.get_pinned_cf(by_target, key)? else {
                return Err(StoreError::Corrupt("report author index names no record"));
            };
            out.push(ReportRecord::decode(&key, &rec)?);
            // Bounded: the caps keep far fewer; this only guards against a corrupt store.
            if out.len() > 4 * jangteo_protocol::report::REPORTS_HELD_MAX {
                break;
            }
        }
        Ok(out)
    }

    /// The reports held about `target` (a listing id or a key), at most
    /// [`REPORTS_READ_MAX`], in author order.
    pub fn reports_about(&self, target: &[u8; 32]) -> Result<Vec<ReportRecord>, StoreError> {
        let cf = self.cf(CF_REPORTS)?;
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(target, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(target) || out.len() >= REPORTS_READ_MAX {
                break;
            }
            out.push(ReportRecord::decode(&k, &v)?);
        }
        Ok(out)
    }

    /// Calls `f` for every report record held, in (target, author) order, until it returns
    /// false.
    pub fn for_each_report(
        &self,
        mut f: impl FnMut(ReportRecord) -> bool,
    ) -> Result<(), StoreError> {
        for item in self
            .db
            .iterator_cf(self.cf(CF_REPORTS)?, IteratorMode::Start)
        {
            let (k, v) = item?;
            if !f(ReportRecord::decode(&k, &v)?) {
                break;
            }
        }
        Ok(())
    }

    /// Changes whenever a report was stored or deleted.
    pub fn report_generation(&self) -> u64 {
        self.report_generation
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn bump_reports(&self) {
        self.report_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The keys whose reports count as this node's own.
    pub fn moderators(&self) -> Result<Vec<PublicKey>, StoreError> {
        let meta = self.cf(CF_META)?;
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(meta, MODERATOR_PREFIX) {
            let (k, _) = item?;
            let Some(rest) = k.strip_prefix(MODERATOR_PREFIX) else {
                break;
            };
            out.push(PublicKey(
                rest.try_into()
                    .map_err(|_| StoreError::Corrupt("moderator key"))?,
            ));
        }
        Ok(out)
    }

    /// Subscribes to (`true`) or drops a moderator (synced). Returns whether it changed.
    pub fn set_moderator(&self, key: &PublicKey, on: bool) -> Result<bool, StoreError> {
        let meta = self.cf(CF_META)?;
        let mut k = MODERATOR_PREFIX.to_vec();
        k.extend_from_slice(&key.0);
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let had = self.db.get_pinned_cf(meta, &k)?.is_some();
        if had == on {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        if on {
            batch.put_cf(meta, k, b"");
        } else {
            batch.delete_cf(meta, k);
        }
        self.write(batch, true)?;
        self.bump_reports();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use jangteo_protocol::report::REPORTS_PER_DAY_MAX;
    use jangteo_protocol::{Kind, Listing, ListingStatus};

    const T: u64 = 1_767_225_600_000;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn pk(seed: u8) -> PublicKey {
        PublicKey(key(seed).verifying_key().to_bytes())
    }

    fn sign(r: &Report, by: u8) -> SignedObject {
        SignedObject::sign(Kind::Report, r.encode(), &key(by))
    }

    fn key_report(about: u8, at: u64) -> Report {
        Report {
            about: pk(about),
            listing: None,
            reason: ReportReason::Spam,
            text: String::new(),
            at,
        }
    }

    #[test]
    fn reports_of_listings_need_the_listing_and_its_seller() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        let l = Listing {
            nonce: [1; 16],
            seq: 1,
            created_at: T,
            updated_at: T,
            expires_at: T + 86_400_000 * 30,
            status: ListingStatus::Active,
            title: "bike".into(),
            description: String::new(),
            category: "bikes".into(),
            condition: None,
            price: 1000,
            currency: "KRW".into(),
            quantity: 1,
            images: vec![],
            location: None,
            moderators: vec![],
            stamp: None,
        };
        let id = l.id(&pk(1));
        let report = Report {
            about: pk(1),
            listing: Some(id.0),
            reason: ReportReason::Scam,
            text: "no bike".into(),
            at: T + 10,
        };
        let obj = sign(&report, 2);
        assert_eq!(
            store.put_report(&obj, &report, false).expect("put"),
            ReportWrite::ListingNotHeld
        );
        let lobj = SignedObject::sign(Kind::Listing, l.encode(), &key(1));
        assert!(
            store
                .put_listing(&lobj, &l, T, false)
                .expect("listing")
                .stored()
        );
        let wrong = Report {
            about: pk(3),
            ..report.clone()
        };
        assert_eq!(
            store
                .put_report(&sign(&wrong, 2), &wrong, false)
                .expect("put"),
            ReportWrite::WrongSeller
        );
        assert_eq!(
            store.put_report(&obj, &report, false).expect("put"),
            ReportWrite::Stored
        );
        assert!(matches!(
            store.put_report(&obj, &report, false).expect("put"),
            ReportWrite::Refused(_)
        ));
        let about = store.reports_about(&id.0).expect("read");
        assert_eq!(about.len(), 1);
        assert_eq!(
            (about[0].author, about[0].reason, about[0].listing),
            (pk(2), ReportReason::Scam, true)
        );
        assert!(store.object(&obj.id()).expect("read").is_some());
    }

    #[test]
    fn a_flood_from_one_key_stops_at_the_day_cap_and_superseded_reports_go() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        let mut kept = 0;
        for target in 10..40u8 {
            let r = key_report(target, T + u64::from(target));
            if store.put_report(&sign(&r, 2), &r, false).expect("put") == ReportWrite::Stored {
                kept += 1;
            }
        }
        assert!(kept >= REPORTS_PER_DAY_MAX);
        assert_eq!(
            store.reports_by(&pk(2)).expect("read").len(),
            REPORTS_PER_DAY_MAX
        );
        let mut objects = 0;
        store
            .for_each_object(None, |_, _| {
                objects += 1;
                true
            })
            .expect("scan");
        assert_eq!(objects, REPORTS_PER_DAY_MAX, "evicted objects are deleted");
        // A later report of a held target replaces it.
        let held = store.reports_by(&pk(2)).expect("read");
        let target = held[0].about;
        let mut again = key_report(0, T + 1000);
        again.about = target;
        again.reason = ReportReason::Scam;
        assert_eq!(
            store
                .put_report(&sign(&again, 2), &again, false)
                .expect("put"),
            ReportWrite::Stored
        );
        let now = store.reports_about(&target.0).expect("read");
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].reason, ReportReason::Scam);
        assert_eq!(
            store.reports_by(&pk(2)).expect("read").len(),
            REPORTS_PER_DAY_MAX
        );
    }

    #[test]
    fn moderators_persist() {
        let dir = tempfile::tempdir().expect("dir");
        {
            let store = Store::open(dir.path()).expect("store");
            assert!(store.set_moderator(&pk(5), true).expect("add"));
            assert!(!store.set_moderator(&pk(5), true).expect("again"));
            assert!(store.set_moderator(&pk(6), true).expect("add"));
            assert!(store.set_moderator(&pk(6), false).expect("rm"));
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.moderators().expect("read"), vec![pk(5)]);
    }
}

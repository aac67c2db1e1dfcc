//! Reputation inputs: the attestation that counts per trade and author, the keys the user
//! trusts as seeds, and the generation counter bumped by every write that can change trust.
//!
//! It computes no trust: the protocol's trust math and the reputation service do.

use jangteo_protocol::attestation::Attested;
use jangteo_protocol::{ObjectId, PublicKey, SignedObject};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::error::StoreError;

use super::{
    AUTHOR_ATTESTATIONS_BUILT, CF_ATTESTATIONS, CF_AUTHOR_ATTESTATIONS, CF_META, CF_OBJECTS, Store,
};

/// What a write of a verified attestation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttestationWrite {
    /// It counts now (new, or superseding the one held for its author and trade).
    Stored,
    /// The one held for its author and trade supersedes it.
    Superseded,
    /// Its author has the most attestations held here already (SPEC §7.1). Not the sender's
    /// fault: other nodes may hold fewer.
    OverCap {
        /// The author's attestations held here.
        held: u64,
    },
    /// Its trade completed longer ago than attestations are kept (SPEC §7.1).
    Old,
    /// Its stamp is worth less than the network's attestation difficulty (SPEC §7.1): invalid
    /// everywhere, the sender at fault.
    TooCheap {
        /// Bits of work the stamp is worth.
        got: u32,
        /// Bits the network asks.
        needed: u32,
    },
}

impl AttestationWrite {
    /// Whether the attestation was stored.
    pub fn stored(self) -> bool {
        self == AttestationWrite::Stored
    }
}

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
    /// The trade's currency (ISO 4217 letters; zeros in a record written before it was kept).
    pub currency: [u8; 3],
    /// Whether the rated party was the trade's seller (the author its buyer); true in a record
    /// written before the role was kept.
    pub about_seller: bool,
}

impl AttestationRecord {
    /// A record as first written (no currency, no role).
    const LEN_V1: usize = 8 + 32 + 32 + 1 + 8;
    const LEN: usize = Self::LEN_V1 + 3 + 1;

    /// The currency code, if the record holds it.
    pub fn currency(&self) -> Option<&str> {
        if self.currency == [0; 3] {
            return None;
        }
        std::str::from_utf8(&self.currency).ok()
    }

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
        v.extend_from_slice(&self.currency);
        v.push(u8::from(self.about_seller));
        v
    }

    fn decode(key: &[u8], v: &[u8]) -> Result<Self, StoreError> {
        let bad = || StoreError::Corrupt("attestation record");
        if key.len() != 64 || (v.len() != Self::LEN && v.len() != Self::LEN_V1) {
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
            currency: v
                .get(81..84)
                .and_then(|c| c.try_into().ok())
                .unwrap_or([0; 3]),
            about_seller: v.get(84).is_none_or(|&b| b != 0),
        })
    }
}

impl Store {
    /// Stores a verified attestation if it is the one that counts for its author and trade
    /// (the latest; ties: the lowest id), replacing the one it supersedes, while its trade is
    /// recent enough to be kept and its author holds fewer than the most attestations a node
    /// keeps per author, and its stamp is worth the network's attestation difficulty
    /// (SPEC §7.1).
    pub fn put_attestation(
        &self,
        obj: &SignedObject,
        a: &Attested,
        now_ms: u64,
        durable: bool,
    ) -> Result<AttestationWrite, StoreError> {
        let needed = self.attestation_stamp_bits();
        let got = a.attestation.stamp_work(&a.author);
        if got < needed {
            return Ok(AttestationWrite::TooCheap { got, needed });
        }
        if a.completed_at
            .saturating_add(jangteo_protocol::limits::ATTESTATION_RETENTION_MS)
            <= now_ms
        {
            return Ok(AttestationWrite::Old);
        }
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
            currency: a.terms.currency.as_bytes().try_into().unwrap_or([0; 3]),
            about_seller: a.author == a.buyer,
        };
        let key = rec.key();
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let mut batch = WriteBatch::default();
        if let Some(prev) = self.db.get_pinned_cf(cf, key)? {
            let prev = AttestationRecord::decode(&key, &prev)?;
            if (prev.at, std::cmp::Reverse(prev.object)) >= (rec.at, std::cmp::Reverse(rec.object))
            {
                return Ok(AttestationWrite::Superseded);
            }
            batch.delete_cf(objects, prev.object.0);
        } else {
            let held = self.attestations_of(&rec.author)?;
            if held >= jangteo_protocol::limits::ATTESTATIONS_PER_AUTHOR_MAX {
                return Ok(AttestationWrite::OverCap { held });
            }
        }
        batch.put_cf(objects, obj.id().0, obj.bytes());
        batch.put_cf(cf, key, rec.encode());
        batch.put_cf(
            self.cf(CF_AUTHOR_ATTESTATIONS)?,
            Self::author_attestation_key(&rec.author, &rec.trade),
            a.completed_at.to_be_bytes(),
        );
        self.write(batch, durable)?;
        self.bump_trust();
        Ok(AttestationWrite::Stored)
    }

    /// The difficulty an attestation's stamp must have here: the network's listing
    /// difficulty less two (SPEC §7.1).
    pub fn attestation_stamp_bits(&self) -> u32 {
        jangteo_protocol::attestation::stamp_bits(self.stamp_bits())
    }

    fn author_attestation_key(author: &PublicKey, trade: &ObjectId) -> [u8; 64] {
        let mut k = [0u8; 64];
        k[..32].copy_from_slice(&author.0);
        k[32..].copy_from_slice(&trade.0);
        k
    }

    /// The attestations of `author` held here, counted up to
    /// [`jangteo_protocol::limits::ATTESTATIONS_PER_AUTHOR_MAX`].
    pub fn attestations_of(&self, author: &PublicKey) -> Result<u64, StoreError> {
        let cf = self.cf(CF_AUTHOR_ATTESTATIONS)?;
        let mut n = 0;
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&author.0, Direction::Forward))
        {
            let (k, _) = item?;
            if k.len() != 64 || k[..32] != author.0 {
                break;
            }
            n += 1;
            if n >= jangteo_protocol::limits::ATTESTATIONS_PER_AUTHOR_MAX {
                break;
            }
        }
        Ok(n)
    }

    /// Builds the per-author index of attestations (stores made before it existed); the
    /// time a record's trade completed is not in the record, so its `at` stands for it.
    pub(super) fn build_author_attestations(&self) -> Result<(), StoreError> {
        let cf = self.cf(CF_AUTHOR_ATTESTATIONS)?;
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let mut batch = WriteBatch::default();
        self.for_each_attestation(None, |r| {
            batch.put_cf(
                cf,
                Self::author_attestation_key(&r.author, &r.trade),
                r.at.to_be_bytes(),
            );
            true
        })?;
        batch.put_cf(self.cf(CF_META)?, AUTHOR_ATTESTATIONS_BUILT, b"1");
        self.write(batch, true)
    }

    /// Deletes the attestations whose trade completed before `before_ms`, with their objects
    /// (SPEC §7.1). Returns how many.
    pub fn prune_attestations(&self, before_ms: u64) -> Result<u64, StoreError> {
        let by_author = self.cf(CF_AUTHOR_ATTESTATIONS)?;
        let cf = self.cf(CF_ATTESTATIONS)?;
        let objects = self.cf(CF_OBJECTS)?;
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let mut batch = WriteBatch::default();
        let mut n = 0;
        for item in self.db.iterator_cf(by_author, IteratorMode::Start) {
            let (k, v) = item?;
            let completed = <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt("author attestation record"))?;
            if completed >= before_ms || k.len() != 64 {
                continue;
            }
            let mut key = [0u8; 64];
            key[..32].copy_from_slice(&k[32..]);
            key[32..].copy_from_slice(&k[..32]);
            if let Some(rec) = self.db.get_pinned_cf(cf, key)? {
                let rec = AttestationRecord::decode(&key, &rec)?;
                batch.delete_cf(objects, rec.object.0);
            }
            batch.delete_cf(cf, key);
            batch.delete_cf(by_author, &k);
            n += 1;
        }
        if n > 0 {
            self.write(batch, false)?;
            self.bump_trust();
        }
        Ok(n)
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

    /// Changes whenever something trust depends on was written.
    pub fn trust_generation(&self) -> u64 {
        self.trust_generation
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn bump_trust(&self) {
        self.trust_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_keeps_currency_and_role_and_an_old_one_still_reads() {
        let rec = AttestationRecord {
            trade: ObjectId([1; 32]),
            author: PublicKey([2; 32]),
            at: 1_700_000_000_000,
            object: ObjectId([3; 32]),
            about: PublicKey([4; 32]),
            score: 5,
            value: 50_000,
            currency: *b"KRW",
            about_seller: false,
        };
        let bytes = rec.encode();
        assert_eq!(bytes.len(), AttestationRecord::LEN);
        let back = AttestationRecord::decode(&rec.key(), &bytes).expect("decode");
        assert_eq!(back, rec);
        assert_eq!(back.currency(), Some("KRW"));
        // A record written before currency and role were kept.
        let old = AttestationRecord::decode(&rec.key(), &bytes[..AttestationRecord::LEN_V1])
            .expect("old record");
        assert_eq!(old.currency(), None);
        assert!(old.about_seller);
        assert_eq!(
            (old.value, old.score, old.at),
            (rec.value, rec.score, rec.at)
        );
        assert!(AttestationRecord::decode(&rec.key(), &bytes[..80]).is_err());
    }
}

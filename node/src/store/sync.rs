//! Catch-up sync items: one entry per listing head, keyed by shard, `updated_at` and object
//! id, written in the head's own batch (`listings.rs`) and rebuilt once for stores made
//! before they existed; read by the sync service per shard.
//!
//! It only mirrors the heads; it never stores or drops a listing.

use jangteo_protocol::{Listing, ObjectId};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::error::StoreError;

use super::{CF_META, CF_SYNC_ITEMS, SYNC_ITEMS_BUILT, Store};

impl Store {
    pub(super) fn sync_key(listing: &Listing, object: &ObjectId) -> [u8; 41] {
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
    pub(super) fn stored_listing(bytes: &[u8]) -> Option<Listing> {
        let env = jangteo_protocol::Envelope::decode(bytes).ok()?;
        Listing::decode(&env.body).ok()
    }

    /// Builds the sync items of every listing head (stores made before they existed).
    pub(super) fn rebuild_sync_items(&self) -> Result<(), StoreError> {
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
}

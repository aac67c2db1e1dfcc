//! Thumbnails of image blobs: a cache keyed by blob id and edge length, so that a thumbnail
//! asked for again costs one read instead of a decode.
//!
//! Stores the thumbnail service's records as it gets them and does not look inside them.
//! It never holds a thumbnail of a blob it no longer holds: `gc_blobs` deletes a blob's
//! thumbnails in the batch that deletes the blob (and any stray ones written meanwhile).

use jangteo_protocol::ObjectId;
use rocksdb::WriteBatch;

use crate::error::StoreError;

use super::{CF_THUMBS, Store};

impl Store {
    fn thumb_key(id: &ObjectId, edge: u16) -> [u8; 34] {
        let mut k = [0u8; 34];
        k[..32].copy_from_slice(&id.0);
        k[32..].copy_from_slice(&edge.to_be_bytes());
        k
    }

    /// The cached thumbnail record of blob `id` at `edge` px, if any.
    pub fn thumb(&self, id: &ObjectId, edge: u16) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .db
            .get_cf(self.cf(CF_THUMBS)?, Self::thumb_key(id, edge))?)
    }

    /// Caches the thumbnail record of blob `id` at `edge` px. Not synced: a cache entry lost
    /// in a crash is made again.
    pub fn put_thumb(&self, id: &ObjectId, edge: u16, record: &[u8]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_THUMBS)?, Self::thumb_key(id, edge), record);
        self.write(batch, false)
    }

    /// Number of cached thumbnail records.
    pub fn thumb_count(&self) -> Result<u64, StoreError> {
        self.count(CF_THUMBS)
    }
}

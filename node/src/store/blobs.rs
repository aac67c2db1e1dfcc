//! Blobs (images): a manifest and its chunks under the blob's id, read back whole or by
//! chunk, and collected (with their thumbnails) when no listing held refers to them.
//!
//! It stores bytes the blob service verified against their id; it does not check them. The
//! bytes of all blobs held are a running counter in `meta`, written in the same batch as the
//! blobs (a relay stops mirroring photos past its cap without scanning).

use jangteo_protocol::ObjectId;
use rocksdb::{IteratorMode, WriteBatch};

use crate::error::StoreError;

use super::{CF_BLOBS, CF_META, CF_THUMBS, Store};

/// Meta key of the bytes of all blobs held (8, BE).
const BLOB_BYTES_KEY: &[u8] = b"blobs/bytes";
/// Meta marker: the blob byte counter was built.
const BLOB_BYTES_BUILT: &[u8] = b"blobs/bytes/v1";

/// The size a stored manifest names; 0 if it does not decode.
fn manifest_size(id: &[u8], manifest: &[u8]) -> u64 {
    let Ok(id) = <[u8; 32]>::try_from(id) else {
        return 0;
    };
    jangteo_protocol::blob::Manifest::decode_for(&ObjectId(id), manifest).map_or(0, |m| m.size)
}

impl Store {
    /// Bytes of all blobs held (the running counter).
    pub fn blob_bytes(&self) -> Result<u64, StoreError> {
        Ok(self
            .db
            .get_cf(self.cf(CF_META)?, BLOB_BYTES_KEY)?
            .and_then(|v| v.get(..8).and_then(|b| b.try_into().ok()))
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    fn set_blob_bytes(&self, batch: &mut WriteBatch, bytes: u64) -> Result<(), StoreError> {
        batch.put_cf(self.cf(CF_META)?, BLOB_BYTES_KEY, bytes.to_be_bytes());
        Ok(())
    }

    /// Builds the blob byte counter once, for a store written before it existed.
    pub(super) fn build_blob_bytes(&self) -> Result<(), StoreError> {
        let meta = self.cf(CF_META)?;
        if self.db.get_cf(meta, BLOB_BYTES_BUILT)?.is_some() {
            return Ok(());
        }
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let mut total = 0;
        for item in self.db.iterator_cf(self.cf(CF_BLOBS)?, IteratorMode::Start) {
            let (k, v) = item?;
            if k.len() == 36 && k[32..] == [0xff; 4] {
                total += manifest_size(&k[..32], &v);
            }
        }
        let mut batch = WriteBatch::default();
        self.set_blob_bytes(&mut batch, total)?;
        batch.put_cf(meta, BLOB_BYTES_BUILT, b"1");
        self.write(batch, true)
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
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        if self.blob_manifest(&id)?.is_some() {
            return Ok(id);
        }
        let mut batch = WriteBatch::default();
        for (i, c) in chunks.iter().enumerate() {
            batch.put_cf(cf, Self::blob_key(&id, i as u32), c);
        }
        batch.put_cf(cf, Self::blob_key(&id, u32::MAX), manifest.encode());
        let total = self.blob_bytes()?.saturating_add(manifest.size);
        self.set_blob_bytes(&mut batch, total)?;
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

    /// Deletes every blob that no listing held here names (photos of expired or replaced
    /// listings), except those in `keep`, with their cached thumbnails, in one batch.
    /// Returns how many blobs were deleted.
    pub fn gc_blobs(&self, keep: &std::collections::HashSet<[u8; 32]>) -> Result<u64, StoreError> {
        let mut referenced: std::collections::HashSet<[u8; 32]> = keep.clone();
        referenced.extend(self.pinned_photos()?);
        self.for_each_listing(None, |s| {
            referenced.extend(s.listing.images.iter().copied());
            true
        })?;
        let cf = self.cf(CF_BLOBS)?;
        let mut batch = WriteBatch::default();
        let mut n = 0;
        // Blobs that stay, whole: only they may keep thumbnails.
        let mut kept: std::collections::HashSet<[u8; 32]> = std::collections::HashSet::new();
        let mut freed = 0;
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item?;
            if k.len() != 36 {
                continue;
            }
            let mut id = [0u8; 32];
            id.copy_from_slice(&k[..32]);
            if !referenced.contains(&id) {
                if k[32..] == [0xff; 4] {
                    n += 1;
                    freed += manifest_size(&id, &v);
                }
                batch.delete_cf(cf, &k);
            } else if k[32..] == [0xff; 4] {
                kept.insert(id);
            }
        }
        // Their thumbnails go in the same batch, and so does any thumbnail of a blob no longer
        // held (one made from a blob's bytes while that blob was being deleted).
        let thumbs = self.cf(CF_THUMBS)?;
        for item in self.db.iterator_cf(thumbs, IteratorMode::Start) {
            let (k, _) = item?;
            if k.len() < 32 || !kept.contains(&k[..32]) {
                batch.delete_cf(thumbs, &k);
            }
        }
        if !batch.is_empty() {
            // The scan ran without the lock; the counter is read and written under it.
            let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
            if n > 0 {
                let total = self.blob_bytes()?.saturating_sub(freed);
                self.set_blob_bytes(&mut batch, total)?;
            }
            self.write(batch, false)?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blob_byte_counter_follows_puts_and_collection_and_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = vec![7u8; 300_000];
        let m = jangteo_protocol::blob::Manifest::of(&data).expect("manifest");
        let chunk = jangteo_protocol::blob::CHUNK_BYTES;
        let chunks: Vec<Vec<u8>> = data.chunks(chunk).map(<[u8]>::to_vec).collect();
        {
            let store = Store::open(dir.path()).expect("open");
            assert_eq!(store.blob_bytes().expect("bytes"), 0);
            store.put_blob(&m, &chunks).expect("put");
            store.put_blob(&m, &chunks).expect("put again");
            assert_eq!(store.blob_bytes().expect("bytes"), 300_000, "counted once");
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.blob_bytes().expect("bytes"), 300_000);
        assert_eq!(store.gc_blobs(&Default::default()).expect("gc"), 1);
        assert_eq!(store.blob_bytes().expect("bytes"), 0);
    }

    #[test]
    fn a_photo_a_message_names_is_kept_by_the_collector_and_others_are_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let put = |data: Vec<u8>| {
            let m = jangteo_protocol::blob::Manifest::of(&data).expect("manifest");
            let chunks: Vec<Vec<u8>> = data
                .chunks(jangteo_protocol::blob::CHUNK_BYTES)
                .map(<[u8]>::to_vec)
                .collect();
            store.put_blob(&m, &chunks).expect("put")
        };
        let (pinned, loose) = (put(vec![1u8; 70_000]), put(vec![2u8; 50_000]));
        let mut w = crate::store::ChatWrite::default();
        w.pin_photos(&[9u8; 32], &[pinned.0]);
        store.commit_chat(&w, true).expect("commit");
        assert_eq!(store.gc_blobs(&Default::default()).expect("gc"), 1);
        assert!(
            store.blob(&pinned).expect("read").is_some(),
            "the message's photo stays"
        );
        assert!(
            store.blob(&loose).expect("read").is_none(),
            "a photo nothing names goes"
        );
        assert_eq!(store.blob_bytes().expect("bytes"), 70_000);
    }
}

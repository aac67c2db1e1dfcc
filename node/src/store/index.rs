//! The search indexer's outbox: listings whose index entry is behind the store, written in
//! the listing's own batch and emptied by the indexer after its commit (with the saved-search
//! alerts that commit raised), with a wakeup.
//!
//! It holds no index itself; tantivy lives in the search service.

use jangteo_protocol::ListingId;
use rocksdb::{IteratorMode, WriteBatch};

use crate::error::StoreError;

use super::{Alert, CF_INDEX_QUEUE, Store};
use crate::api::types::NotificationView;

impl Store {
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
    /// (their value changed), which the indexer must see again; the saved-search alerts the
    /// indexer raised for them are written in the same batch, so a crash loses neither nor
    /// doubles one (the entries are indexed, and matched, again). Returns the notifications
    /// written.
    pub fn index_queue_done(
        &self,
        done: &[(ListingId, Vec<u8>)],
        alerts: &[Alert],
    ) -> Result<Vec<NotificationView>, StoreError> {
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
        let written = self.stage_alerts(&mut batch, alerts)?;
        // As durable as the listings that raised them (stored unsynced from gossip and sync):
        // a crash that loses an alert loses its listing too, and both come back by sync.
        self.write(batch, false)?;
        Ok(written)
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

//! The DHT's records (Kademlia values and provider records), kept so that a restarted node
//! remembers them. The network's record store decides what the keys and values are; this
//! module stores them as given, in one column family.

use rocksdb::{IteratorMode, WriteBatch};

use crate::error::StoreError;

use super::{CF_KAD, Store};

/// One DHT entry as stored: (key, value).
pub type KadEntry = (Vec<u8>, Vec<u8>);

impl Store {
    /// Every DHT entry held, as (key, value) pairs.
    pub fn kad_entries(&self) -> Result<Vec<KadEntry>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_KAD)?, IteratorMode::Start) {
            let (k, v) = item?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Writes and deletes DHT entries in one batch. Not synced: a DHT entry lost in a crash
    /// comes back with the next republication.
    pub fn kad_write(&self, puts: &[KadEntry], deletes: &[Vec<u8>]) -> Result<(), StoreError> {
        let cf = self.cf(CF_KAD)?;
        let mut batch = WriteBatch::default();
        for k in deletes {
            batch.delete_cf(cf, k);
        }
        for (k, v) in puts {
            batch.put_cf(cf, k, v);
        }
        self.write(batch, false)
    }
}

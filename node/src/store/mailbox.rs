//! Relay mailboxes: sealed items held for offline recipients, each with an expiry, within
//! per-recipient and total limits, deleted on acknowledgement or when they expire.
//!
//! It never opens an item: they are sealed to their recipient.

use rocksdb::{IteratorMode, WriteBatch};

use crate::error::StoreError;

use super::{CF_MAILBOX, Store};

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

impl Store {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_760_000_000_000;

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
}

//! Conversations: threads, their messages in arrival order, the queue of our messages and
//! receipts still to deliver, what we know of each contact, and blocked keys. Every logical
//! write (a message stored with its thread, its index entry and its contact) is one
//! [`ChatWrite`], written as one `WriteBatch`.
//!
//! Keys, in the `conversations` column family, each under a one-byte prefix:
//! - `t` || thread (32) → the thread's record;
//! - `m` || thread (32) || arrival (4, BE) → a message's record;
//! - `i` || message id (32) → thread (32) || arrival (4, BE);
//! - `o` || object id (32) → an outbound record (a message or receipt still to deliver);
//! - `k` || key (32) → what we know of a contact;
//! - `b` || key (32) → when it was blocked (8, BE).
//!
//! The records are the conversations service's JSON; this module does not read them, and it
//! never judges a message (the service verified it).

use jangteo_protocol::PublicKey;
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::error::StoreError;

use super::{CF_CONVERSATIONS, Store};

/// Prefix of thread records.
pub const THREAD: u8 = b't';
/// Prefix of message records.
pub const MESSAGE: u8 = b'm';
/// Prefix of the message index.
pub const INDEX: u8 = b'i';
/// Prefix of outbound records.
pub const OUTBOUND: u8 = b'o';
/// Prefix of contact records.
pub const CONTACT: u8 = b'k';
/// Prefix of blocks.
pub const BLOCK: u8 = b'b';
/// Prefix of photo pins: `PHOTO || blob id || message id`, empty, written with the message
/// that names the photo (sent or received), so the blob collector keeps it.
pub const PHOTO: u8 = b'p';

/// A key of the `conversations` column family: `prefix || parts…`.
pub fn chat_key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// Entries read from the conversations column family: (key, value).
pub type ChatEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// One logical write of the conversations service: puts and deletes applied together.
#[derive(Debug, Clone, Default)]
pub struct ChatWrite {
    /// (key, Some(value)) to put, (key, None) to delete.
    pub ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl ChatWrite {
    /// Puts `value` under `key`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((key, Some(value)));
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }

    /// Pins the photos message `message` names: the blob collector keeps them while the pin
    /// is held (a conversation's photos are named by no listing).
    pub fn pin_photos(&mut self, message: &[u8; 32], photos: &[[u8; 32]]) {
        for p in photos {
            self.put(chat_key(PHOTO, &[p, message]), Vec::new());
        }
    }
}

impl Store {
    /// Writes one conversation step as one batch, synced to disk when `durable`.
    pub fn commit_chat(&self, w: &ChatWrite, durable: bool) -> Result<(), StoreError> {
        if w.ops.is_empty() {
            return Ok(());
        }
        let cf = self.cf(CF_CONVERSATIONS)?;
        let mut batch = WriteBatch::default();
        for (k, v) in &w.ops {
            match v {
                Some(v) => batch.put_cf(cf, k, v),
                None => batch.delete_cf(cf, k),
            }
        }
        self.write(batch, durable)
    }

    /// Writes `w` and the notifications `notes` in one batch (a message and the
    /// notification it raises are stored together or not at all). Returns the notifications
    /// as numbered.
    pub fn commit_chat_notifying(
        &self,
        w: &ChatWrite,
        notes: &[crate::api::types::NotificationView],
        durable: bool,
    ) -> Result<Vec<crate::api::types::NotificationView>, StoreError> {
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let cf = self.cf(CF_CONVERSATIONS)?;
        let mut batch = WriteBatch::default();
        for (k, v) in &w.ops {
            match v {
                Some(v) => batch.put_cf(cf, k, v),
                None => batch.delete_cf(cf, k),
            }
        }
        let out = self.stage_notifications(&mut batch, notes)?;
        self.write(batch, durable)?;
        Ok(out)
    }

    /// One value of the conversations column family.
    pub fn chat_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_CONVERSATIONS)?, key)?)
    }

    /// At most `max` entries whose key starts with `prefix`, in key order.
    pub fn chat_scan(&self, prefix: &[u8], max: usize) -> Result<ChatEntries, StoreError> {
        let cf = self.cf(CF_CONVERSATIONS)?;
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(prefix) || out.len() >= max {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Every photo a stored message names (see [`ChatWrite::pin_photos`]).
    pub fn pinned_photos(&self) -> Result<std::collections::HashSet<[u8; 32]>, StoreError> {
        let cf = self.cf(CF_CONVERSATIONS)?;
        let mut out = std::collections::HashSet::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&[PHOTO], Direction::Forward))
        {
            let (k, _) = item?;
            if k.first() != Some(&PHOTO) {
                break;
            }
            if let Some(id) = k.get(1..33).and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                out.insert(id);
            }
        }
        Ok(out)
    }

    /// Whether `key` is blocked on this node (its messages and offers are refused, its
    /// listings hidden).
    pub fn is_blocked(&self, key: &PublicKey) -> Result<bool, StoreError> {
        Ok(self.chat_get(&chat_key(BLOCK, &[&key.0]))?.is_some())
    }

    /// Every blocked key, with when it was blocked (unix ms).
    pub fn blocked(&self) -> Result<Vec<(PublicKey, u64)>, StoreError> {
        Ok(self
            .chat_scan(&[BLOCK], usize::MAX)?
            .into_iter()
            .filter_map(|(k, v)| {
                let key: [u8; 32] = k.get(1..33)?.try_into().ok()?;
                let at = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
                Some((PublicKey(key), at))
            })
            .collect())
    }

    /// Blocks or unblocks `key` (synced). Returns whether anything changed.
    pub fn set_blocked(&self, key: &PublicKey, blocked: bool, at: u64) -> Result<bool, StoreError> {
        let k = chat_key(BLOCK, &[&key.0]);
        let was = self.chat_get(&k)?.is_some();
        if was == blocked {
            return Ok(false);
        }
        let mut w = ChatWrite::default();
        if blocked {
            w.put(k, at.to_be_bytes().to_vec());
        } else {
            w.delete(k);
        }
        self.commit_chat(&w, true)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_is_all_or_nothing_and_scans_stay_in_their_prefix() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("open");
        let mut w = ChatWrite::default();
        w.put(chat_key(THREAD, &[&[1; 32]]), b"t1".to_vec());
        w.put(
            chat_key(MESSAGE, &[&[1; 32], &0u32.to_be_bytes()]),
            b"m0".to_vec(),
        );
        w.put(
            chat_key(MESSAGE, &[&[1; 32], &1u32.to_be_bytes()]),
            b"m1".to_vec(),
        );
        w.put(
            chat_key(MESSAGE, &[&[2; 32], &0u32.to_be_bytes()]),
            b"x".to_vec(),
        );
        store.commit_chat(&w, true).expect("write");
        let msgs = store
            .chat_scan(&chat_key(MESSAGE, &[&[1; 32]]), 10)
            .expect("scan");
        assert_eq!(
            msgs.iter().map(|(_, v)| v.as_slice()).collect::<Vec<_>>(),
            [b"m0".as_slice(), b"m1"]
        );
        let key = PublicKey([9; 32]);
        assert!(!store.is_blocked(&key).expect("read"));
        assert!(store.set_blocked(&key, true, 5).expect("block"));
        assert!(!store.set_blocked(&key, true, 6).expect("again"));
        assert_eq!(store.blocked().expect("list"), vec![(key, 5)]);
        assert!(store.set_blocked(&key, false, 7).expect("unblock"));
        assert!(store.blocked().expect("list").is_empty());
    }
}

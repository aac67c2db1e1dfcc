//! Notifications, saved searches and the marks of listings already alerted, in `meta` under
//! their own key prefixes.
//!
//! A notification is written in the batch of what caused it ([`Store::stage_notifications`]:
//! a trade step, a delivery record, the search indexer's commit), numbered by a counter
//! in the same batch, and the list is bounded: past [`NOTIFICATIONS_MAX`] the oldest read
//! ones are deleted first, then the oldest unread, down to [`NOTIFICATIONS_PRUNED_TO`]. A
//! listing that raised a saved-search alert is marked (`alerted/`) so it never raises
//! another; the mark goes when the listing is pruned. It decides nothing about matching:
//! the search service does.

use jangteo_protocol::ListingId;
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::api::types::{NewSavedSearch, NotificationView, SavedSearchView};
use crate::error::StoreError;

use super::{CF_META, Store};

/// Most notifications held.
pub const NOTIFICATIONS_MAX: u64 = 1000;
/// What a write past [`NOTIFICATIONS_MAX`] prunes down to (the oldest read ones first).
pub const NOTIFICATIONS_PRUNED_TO: u64 = 900;

/// `note/` || id (8, BE) -> the notification as JSON.
const NOTE_PREFIX: &[u8] = b"note/";
/// The next notification id (8, BE).
const NOTE_NEXT: &[u8] = b"note-next";
/// Notifications held (8, BE), a running count written with them.
const NOTE_COUNT: &[u8] = b"note-count";
/// `saved/` || id (8, BE) -> the saved search as JSON.
const SAVED_PREFIX: &[u8] = b"saved/";
/// The next saved search id (8, BE).
const SAVED_NEXT: &[u8] = b"saved-next";
/// `alerted/` || listing id (32) -> the listing's expiry (8, BE) when it alerted.
const ALERTED_PREFIX: &[u8] = b"alerted/";

/// A saved-search alert to write with the indexer's commit: the listing (marked so it never
/// alerts again, until `expires_at`) and its notification.
#[derive(Debug, Clone)]
pub struct Alert {
    /// The listing.
    pub listing: ListingId,
    /// When it expires (its mark is pruned after).
    pub expires_at: u64,
    /// The notification; None when more alerts were raised at once than the list keeps
    /// (the listing still gets its mark, so it never alerts again).
    pub notification: Option<NotificationView>,
}

fn key(prefix: &[u8], id: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn be_u64(b: &[u8]) -> Result<u64, StoreError> {
    let a: [u8; 8] = b
        .try_into()
        .map_err(|_| StoreError::Corrupt("counter in meta"))?;
    Ok(u64::from_be_bytes(a))
}

fn decode_note(v: &[u8]) -> Result<NotificationView, StoreError> {
    serde_json::from_slice(v).map_err(|_| StoreError::Corrupt("notification record"))
}

impl Store {
    fn meta_u64(&self, k: &[u8]) -> Result<u64, StoreError> {
        self.db
            .get_pinned_cf(self.cf(CF_META)?, k)?
            .map_or(Ok(0), |v| be_u64(&v))
    }

    /// Every `(key, value)` in `meta` under `prefix`, oldest (lowest key) first, until `f`
    /// returns false.
    fn meta_scan(
        &self,
        prefix: &[u8],
        reverse: bool,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let meta = self.cf(CF_META)?;
        let end: Vec<u8> = [prefix, &[0xff; 40]].concat();
        let mode = if reverse {
            IteratorMode::From(&end, Direction::Reverse)
        } else {
            IteratorMode::From(prefix, Direction::Forward)
        };
        for item in self.db.iterator_cf(meta, mode) {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            if !f(&k, &v)? {
                break;
            }
        }
        Ok(())
    }

    /// Adds `notes` to `batch`, numbered from the counter, with the count, pruning the
    /// oldest (read ones first) past [`NOTIFICATIONS_MAX`]. Returns them as written. The
    /// caller holds the write lock and stages notifications once per batch.
    pub(super) fn stage_notifications(
        &self,
        batch: &mut WriteBatch,
        notes: &[NotificationView],
    ) -> Result<Vec<NotificationView>, StoreError> {
        // More at once than the list keeps after pruning: only the newest are kept.
        let notes = &notes[notes.len().saturating_sub(NOTIFICATIONS_PRUNED_TO as usize)..];
        if notes.is_empty() {
            return Ok(Vec::new());
        }
        let meta = self.cf(CF_META)?;
        let mut next = self.meta_u64(NOTE_NEXT)?.max(1);
        let mut count = self.meta_u64(NOTE_COUNT)?;
        let mut out = Vec::with_capacity(notes.len());
        for n in notes {
            let mut n = n.clone();
            n.id = next;
            n.read = false;
            next += 1;
            let json = serde_json::to_vec(&n).map_err(|_| StoreError::Corrupt("notification"))?;
            batch.put_cf(meta, key(NOTE_PREFIX, n.id), json);
            out.push(n);
        }
        count += notes.len() as u64;
        if count > NOTIFICATIONS_MAX {
            // Never the ones just staged: they are not in the store yet.
            let excess = count - NOTIFICATIONS_PRUNED_TO.min(count);
            let mut read = Vec::new();
            let mut unread = Vec::new();
            self.meta_scan(NOTE_PREFIX, false, |k, v| {
                if decode_note(v).is_ok_and(|n| n.read) {
                    read.push(k.to_vec());
                } else {
                    unread.push(k.to_vec());
                }
                Ok((read.len() as u64) < excess)
            })?;
            for k in read.into_iter().chain(unread).take(excess as usize) {
                batch.delete_cf(meta, k);
                count -= 1;
            }
        }
        batch.put_cf(meta, NOTE_NEXT, next.to_be_bytes());
        batch.put_cf(meta, NOTE_COUNT, count.to_be_bytes());
        Ok(out)
    }

    /// Writes notifications that have no batch of their own to join. Returns them numbered.
    pub fn notify(
        &self,
        notes: &[NotificationView],
        durable: bool,
    ) -> Result<Vec<NotificationView>, StoreError> {
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let mut batch = WriteBatch::default();
        let out = self.stage_notifications(&mut batch, notes)?;
        if !out.is_empty() {
            self.write(batch, durable)?;
        }
        Ok(out)
    }

    /// Up to `limit` notifications, newest first (only unread ones with `unread_only`),
    /// and how many are unread in all.
    pub fn notifications(
        &self,
        unread_only: bool,
        limit: usize,
    ) -> Result<(Vec<NotificationView>, u64), StoreError> {
        let mut out = Vec::new();
        let mut unread = 0;
        self.meta_scan(NOTE_PREFIX, true, |_, v| {
            let n = decode_note(v)?;
            if !n.read {
                unread += 1;
            }
            if out.len() < limit && (!unread_only || !n.read) {
                out.push(n);
            }
            Ok(true)
        })?;
        Ok((out, unread))
    }

    /// Marks notifications read: `ids`, or every one with `all`. Unknown ids refuse the
    /// whole request (`Err` with them, nothing written). Returns (newly marked, still unread).
    pub fn mark_read(
        &self,
        ids: &[u64],
        all: bool,
    ) -> Result<Result<(u64, u64), Vec<u64>>, StoreError> {
        let meta = self.cf(CF_META)?;
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let mut batch = WriteBatch::default();
        let mut marked = 0;
        let mut unknown = Vec::new();
        let mut mark = |k: &[u8], v: &[u8], batch: &mut WriteBatch| -> Result<(), StoreError> {
            let mut n = decode_note(v)?;
            if !n.read {
                n.read = true;
                let json =
                    serde_json::to_vec(&n).map_err(|_| StoreError::Corrupt("notification"))?;
                batch.put_cf(meta, k, json);
                marked += 1;
            }
            Ok(())
        };
        if all {
            self.meta_scan(NOTE_PREFIX, false, |k, v| {
                mark(k, v, &mut batch)?;
                Ok(true)
            })?;
        } else {
            for id in ids {
                let k = key(NOTE_PREFIX, *id);
                match self.db.get_pinned_cf(meta, &k)? {
                    Some(v) => mark(&k, &v, &mut batch)?,
                    None => unknown.push(*id),
                }
            }
        }
        if !unknown.is_empty() {
            return Ok(Err(unknown));
        }
        self.write(batch, false)?;
        drop(_guard);
        let (_, unread) = self.notifications(true, 0)?;
        Ok(Ok((marked, unread)))
    }

    /// Every saved search, oldest first.
    pub fn saved_searches(&self) -> Result<Vec<SavedSearchView>, StoreError> {
        let mut out = Vec::new();
        self.meta_scan(SAVED_PREFIX, false, |_, v| {
            out.push(serde_json::from_slice(v).map_err(|_| StoreError::Corrupt("saved search"))?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// Saves a search (checked by the caller) unless `max` are held already (then None).
    pub fn add_saved_search(
        &self,
        search: NewSavedSearch,
        created_at: u64,
        max: usize,
    ) -> Result<Option<SavedSearchView>, StoreError> {
        let meta = self.cf(CF_META)?;
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let mut held = 0usize;
        self.meta_scan(SAVED_PREFIX, false, |_, _| {
            held += 1;
            Ok(true)
        })?;
        if held >= max {
            return Ok(None);
        }
        let id = self.meta_u64(SAVED_NEXT)?.max(1);
        let view = SavedSearchView {
            id,
            created_at,
            search,
        };
        let json = serde_json::to_vec(&view).map_err(|_| StoreError::Corrupt("saved search"))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, key(SAVED_PREFIX, id), json);
        batch.put_cf(meta, SAVED_NEXT, (id + 1).to_be_bytes());
        self.write(batch, true)?;
        Ok(Some(view))
    }

    /// Deletes a saved search; returns it, or None when there is none with that id.
    pub fn remove_saved_search(&self, id: u64) -> Result<Option<SavedSearchView>, StoreError> {
        let meta = self.cf(CF_META)?;
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let k = key(SAVED_PREFIX, id);
        let Some(v) = self.db.get_cf(meta, &k)? else {
            return Ok(None);
        };
        let view = serde_json::from_slice(&v).map_err(|_| StoreError::Corrupt("saved search"))?;
        let mut batch = WriteBatch::default();
        batch.delete_cf(meta, &k);
        self.write(batch, true)?;
        Ok(Some(view))
    }

    /// Whether a listing has raised a saved-search alert already.
    pub fn alerted(&self, listing: &ListingId) -> Result<bool, StoreError> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_META)?, [ALERTED_PREFIX, &listing.0].concat())?
            .is_some())
    }

    /// Adds alerts to `batch`: each listing's mark and the notifications. The caller holds
    /// the write lock.
    pub(super) fn stage_alerts(
        &self,
        batch: &mut WriteBatch,
        alerts: &[Alert],
    ) -> Result<Vec<NotificationView>, StoreError> {
        let meta = self.cf(CF_META)?;
        for a in alerts {
            batch.put_cf(
                meta,
                [ALERTED_PREFIX, &a.listing.0].concat(),
                a.expires_at.to_be_bytes(),
            );
        }
        let notes: Vec<NotificationView> = alerts
            .iter()
            .filter_map(|a| a.notification.clone())
            .collect();
        self.stage_notifications(batch, &notes)
    }

    /// Deletes the alert marks of listings that expired before `before_ms` (they are pruned
    /// themselves, and cannot come back). Returns how many.
    pub fn prune_alerted(&self, before_ms: u64) -> Result<u64, StoreError> {
        let meta = self.cf(CF_META)?;
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let mut batch = WriteBatch::default();
        let mut n = 0;
        self.meta_scan(ALERTED_PREFIX, false, |k, v| {
            if be_u64(v)? < before_ms {
                batch.delete_cf(meta, k);
                n += 1;
            }
            Ok(true)
        })?;
        if n > 0 {
            self.write(batch, false)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::NotificationKind;

    fn note(i: u64) -> NotificationView {
        NotificationView::new(NotificationKind::TradeStep, i, format!("step {i}"))
    }

    #[test]
    fn notifications_are_numbered_listed_newest_first_and_marked_read() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        let written = store
            .notify(&[note(1), note(2), note(3)], true)
            .expect("notify");
        assert_eq!(written.iter().map(|n| n.id).collect::<Vec<_>>(), [1, 2, 3]);
        let (all, unread) = store.notifications(false, 10).expect("list");
        assert_eq!(all.iter().map(|n| n.id).collect::<Vec<_>>(), [3, 2, 1]);
        assert_eq!(unread, 3);
        assert_eq!(store.mark_read(&[2], false).expect("mark"), Ok((1, 2)));
        // Marking again changes nothing; an unknown id refuses the whole request.
        assert_eq!(store.mark_read(&[2], false).expect("mark"), Ok((0, 2)));
        assert_eq!(
            store.mark_read(&[1, 99], false).expect("mark"),
            Err(vec![99])
        );
        let (unread_only, _) = store.notifications(true, 10).expect("list");
        assert_eq!(unread_only.iter().map(|n| n.id).collect::<Vec<_>>(), [3, 1]);
        assert_eq!(store.mark_read(&[], true).expect("all"), Ok((2, 0)));
        // Numbers keep increasing across a reopen.
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.notify(&[note(4)], true).expect("notify")[0].id, 4);
    }

    #[test]
    fn past_the_cap_the_oldest_read_ones_go_first() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        let first: Vec<NotificationView> = (0..NOTIFICATIONS_MAX).map(note).collect();
        for half in first.chunks(first.len() / 2) {
            store.notify(half, false).expect("fill");
        }
        // Ids 1..=1000 held; mark the even ones from 501 on read.
        let read: Vec<u64> = (501..=NOTIFICATIONS_MAX).filter(|i| i % 2 == 0).collect();
        assert!(store.mark_read(&read, false).expect("mark").is_ok());
        store.notify(&[note(9999)], false).expect("one more");
        let (all, unread) = store.notifications(false, 2000).expect("list");
        assert_eq!(all.len() as u64, NOTIFICATIONS_PRUNED_TO);
        // 101 had to go: the oldest of the 250 read ones (502, 504, ... 702).
        let ids: std::collections::HashSet<u64> = all.iter().map(|n| n.id).collect();
        assert!(ids.contains(&1) && ids.contains(&500), "unread ones kept");
        assert!(!ids.contains(&502) && !ids.contains(&702) && ids.contains(&704));
        assert!(ids.contains(&1000) && ids.contains(&1001));
        assert_eq!(unread, 751);
        // All unread: the oldest unread go.
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        let many: Vec<NotificationView> = (0..NOTIFICATIONS_MAX + 5).map(note).collect();
        for half in many[..NOTIFICATIONS_MAX as usize].chunks(NOTIFICATIONS_MAX as usize / 2) {
            store.notify(half, false).expect("fill");
        }
        store
            .notify(&many[NOTIFICATIONS_MAX as usize..], false)
            .expect("more");
        let (all, _) = store.notifications(false, 2000).expect("list");
        assert_eq!(all.len() as u64, NOTIFICATIONS_PRUNED_TO);
        assert_eq!(all.last().map(|n| n.id), Some(106));
        // A flood in one batch (a catch-up full of matches) keeps only the newest.
        let flood: Vec<NotificationView> = (0..3 * NOTIFICATIONS_MAX).map(note).collect();
        let written = store.notify(&flood, false).expect("flood");
        assert_eq!(written.len() as u64, NOTIFICATIONS_PRUNED_TO);
        assert_eq!(written.last().map(|n| n.text.as_str()), Some("step 2999"));
        let (all, _) = store.notifications(false, 2000).expect("list");
        assert_eq!(all.len() as u64, NOTIFICATIONS_PRUNED_TO);
        assert_eq!(all[0].text, "step 2999");
    }

    #[test]
    fn saved_searches_are_capped_and_removed_by_id() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        let s = |q: &str| NewSavedSearch {
            q: Some(q.into()),
            ..NewSavedSearch::default()
        };
        let a = store
            .add_saved_search(s("자전거"), 5, 2)
            .expect("add")
            .expect("room");
        let b = store
            .add_saved_search(s("desk"), 6, 2)
            .expect("add")
            .expect("room");
        assert_eq!((a.id, b.id), (1, 2));
        assert!(
            store
                .add_saved_search(s("lamp"), 7, 2)
                .expect("add")
                .is_none()
        );
        assert_eq!(store.remove_saved_search(1).expect("rm"), Some(a));
        assert_eq!(store.remove_saved_search(1).expect("rm"), None);
        let c = store
            .add_saved_search(s("lamp"), 7, 2)
            .expect("add")
            .expect("room");
        assert_eq!(c.id, 3, "ids are never reused");
        assert_eq!(store.saved_searches().expect("list"), vec![b, c]);
    }
}

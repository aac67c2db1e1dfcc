//! Relay mailboxes: sealed items held for offline recipients, each with an expiry, within
//! per-recipient, per-holder and total limits, deleted on acknowledgement or when they
//! expire.
//!
//! It never opens an item: they are sealed to their recipient. Limits are checked against
//! running counters kept in `meta` and written in the same batch as the items they count
//! (total, per recipient, per holder of a recipient's mailbox), so a put reads a few small
//! records, never the recipient's whole mailbox. A holder is whoever an item is charged to
//! besides its recipient (the sending peer, its subnet): the caller names them.

use std::collections::HashMap;

use rocksdb::{IteratorMode, WriteBatch};

use crate::error::StoreError;

use super::{CF_MAILBOX, CF_META, Store};

/// Meta key of the total counter.
const TOTAL_KEY: &[u8] = b"mbx/total";
/// Meta key prefix of a recipient's counter: prefix || recipient (32).
const TO_PREFIX: &[u8] = b"mbx/to/";
/// Meta key prefix of a holder's counter in one mailbox: prefix || recipient (32) || holder
/// (32).
const BY_PREFIX: &[u8] = b"mbx/by/";
/// Meta marker: the counters were built (items written before them were counted once).
const COUNTERS_BUILT: &[u8] = b"mbx/counters/v1";
/// The top bit of the stored expiry marks the value format that names its holders:
/// expiry (8, BE, top bit set) || holder count (1) || holders (32 each) || sealed. Values
/// without it (written before counters existed) are expiry (8) || sealed.
const HOLDERS_FLAG: u64 = 1 << 63;
/// Most holders one item is charged to.
pub const HOLDERS_MAX: usize = 4;
/// Items looked at per batch when sweeping.
const SWEEP_CHUNK: usize = 1024;

/// An item's count and bytes (of sealed bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxUsage {
    /// Items.
    pub items: u64,
    /// Sealed bytes.
    pub bytes: u64,
}

impl MailboxUsage {
    fn decode(v: Option<Vec<u8>>) -> MailboxUsage {
        let Some(v) = v else {
            return MailboxUsage::default();
        };
        let word = |r: std::ops::Range<usize>| {
            v.get(r)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0)
        };
        MailboxUsage {
            items: word(0..8),
            bytes: word(8..16),
        }
    }

    fn encode(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.items.to_be_bytes());
        out[8..].copy_from_slice(&self.bytes.to_be_bytes());
        out
    }
}

/// How much one holder may keep in one recipient's mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Items.
    pub items: u64,
    /// Sealed bytes (a holder with nothing held may always leave one item, however large).
    pub bytes: u64,
}

/// The limits a put is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxLimits {
    /// Items waiting for one recipient.
    pub items_per_recipient: u64,
    /// Sealed bytes waiting for one recipient.
    pub bytes_per_recipient: u64,
    /// Sealed bytes in all mailboxes together.
    pub total_bytes: u64,
}

/// A mailbox item: its id (blake3 of the sealed bytes) and the sealed bytes.
pub type MailboxItem = ([u8; 32], Vec<u8>);

/// A stored value, parsed.
struct Parsed<'a> {
    expiry: u64,
    holders: Vec<[u8; 32]>,
    sealed: &'a [u8],
}

/// Parses a stored value; None when malformed.
fn parse(value: &[u8]) -> Option<Parsed<'_>> {
    let head = u64::from_be_bytes(value.get(..8)?.try_into().ok()?);
    if head & HOLDERS_FLAG == 0 {
        return Some(Parsed {
            expiry: head,
            holders: Vec::new(),
            sealed: &value[8..],
        });
    }
    let n = usize::from(*value.get(8)?);
    let end = 9 + 32 * n;
    let holders = value
        .get(9..end)?
        .chunks_exact(32)
        .filter_map(|c| c.try_into().ok())
        .collect();
    Some(Parsed {
        expiry: head & !HOLDERS_FLAG,
        holders,
        sealed: value.get(end..)?,
    })
}

/// The expiry (unix ms) of a stored value; 0 (expired) if malformed.
fn mailbox_expiry(value: &[u8]) -> u64 {
    parse(value).map_or(0, |p| p.expiry)
}

fn item_key(to: &[u8; 32], id: &[u8; 32]) -> [u8; 64] {
    let mut key = [0u8; 64];
    key[..32].copy_from_slice(to);
    key[32..].copy_from_slice(id);
    key
}

fn to_key(to: &[u8]) -> Vec<u8> {
    [TO_PREFIX, to].concat()
}

fn by_key(to: &[u8], holder: &[u8; 32]) -> Vec<u8> {
    [BY_PREFIX, to, holder].concat()
}

/// Counter changes of one batch, by meta key, applied to what is stored when written.
#[derive(Default)]
struct Deltas(HashMap<Vec<u8>, (i64, i64)>);

impl Deltas {
    fn add(&mut self, key: Vec<u8>, items: i64, bytes: i64) {
        let e = self.0.entry(key).or_default();
        e.0 += items;
        e.1 += bytes;
    }

    /// Charges (sign 1) or releases (sign -1) one item of `len` sealed bytes for `to`.
    fn item(&mut self, to: &[u8], holders: &[[u8; 32]], len: usize, sign: i64) {
        let bytes = sign * len as i64;
        self.add(TOTAL_KEY.to_vec(), sign, bytes);
        self.add(to_key(to), sign, bytes);
        for h in holders {
            self.add(by_key(to, h), sign, bytes);
        }
    }
}

impl Store {
    fn usage(&self, key: &[u8]) -> Result<MailboxUsage, StoreError> {
        Ok(MailboxUsage::decode(
            self.db.get_cf(self.cf(CF_META)?, key)?,
        ))
    }

    /// Adds `deltas` to the stored counters, in `batch` (a counter back at zero items is
    /// deleted). The caller holds the write lock.
    fn apply_deltas(&self, batch: &mut WriteBatch, deltas: Deltas) -> Result<(), StoreError> {
        let meta = self.cf(CF_META)?;
        for (key, (items, bytes)) in deltas.0 {
            let u = self.usage(&key)?;
            let next = MailboxUsage {
                items: u.items.saturating_add_signed(items),
                bytes: u.bytes.saturating_add_signed(bytes),
            };
            if next.items == 0 && key != TOTAL_KEY {
                batch.delete_cf(meta, &key);
            } else {
                batch.put_cf(meta, &key, next.encode());
            }
        }
        Ok(())
    }

    /// Builds the counters from the items once, for a store written before they existed.
    /// Those items are charged to no holder.
    pub(super) fn build_mailbox_counters(&self) -> Result<(), StoreError> {
        let meta = self.cf(CF_META)?;
        if self.db.get_cf(meta, COUNTERS_BUILT)?.is_some() {
            return Ok(());
        }
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let mut deltas = Deltas::default();
        for item in self
            .db
            .iterator_cf(self.cf(CF_MAILBOX)?, IteratorMode::Start)
        {
            let (k, v) = item?;
            let p = parse(&v).ok_or(StoreError::Corrupt("mailbox item"))?;
            deltas.item(&k[..32], &p.holders, p.sealed.len(), 1);
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, TOTAL_KEY, MailboxUsage::default().encode());
        self.apply_deltas(&mut batch, deltas)?;
        batch.put_cf(meta, COUNTERS_BUILT, b"1");
        self.write(batch, true)
    }

    /// Holds a sealed item for `to` until `expires_at`, charged to `holders` (at most
    /// [`HOLDERS_MAX`], each with its quota in this mailbox), within `limits`. Reads only
    /// counters and the item's own key. Returns the item id, or why it was refused (the
    /// sender sees the reason).
    pub fn mailbox_put(
        &self,
        to: &[u8; 32],
        sealed: &[u8],
        holders: &[([u8; 32], Quota)],
        expires_at: u64,
        limits: &MailboxLimits,
    ) -> Result<Result<[u8; 32], String>, StoreError> {
        let cf = self.cf(CF_MAILBOX)?;
        let id = *blake3::hash(sealed).as_bytes();
        let key = item_key(to, &id);
        let len = sealed.len() as u64;
        let holders = &holders[..holders.len().min(HOLDERS_MAX)];
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        if self.db.get_pinned_cf(cf, key)?.is_some() {
            return Ok(Ok(id));
        }
        let total = self.usage(TOTAL_KEY)?;
        if total.bytes + len > limits.total_bytes {
            return Ok(Err(format!(
                "relay full: its mailboxes hold {} bytes; its limit is {} bytes",
                total.bytes, limits.total_bytes
            )));
        }
        let mine = self.usage(&to_key(to))?;
        if mine.items >= limits.items_per_recipient || mine.bytes + len > limits.bytes_per_recipient
        {
            return Ok(Err(format!(
                "mailbox full: the recipient has {} items ({} bytes) waiting; the limit is {} items and {} bytes",
                mine.items, mine.bytes, limits.items_per_recipient, limits.bytes_per_recipient
            )));
        }
        for (h, quota) in holders {
            let held = self.usage(&by_key(to, h))?;
            if held.items >= quota.items || (held.items > 0 && held.bytes + len > quota.bytes) {
                return Ok(Err(format!(
                    "your share of this mailbox is used up: {} items ({} bytes) from you (or your network) wait for the recipient; the limit is {} items and {} bytes",
                    held.items, held.bytes, quota.items, quota.bytes
                )));
            }
        }
        let mut value = Vec::with_capacity(9 + 32 * holders.len() + sealed.len());
        value.extend_from_slice(&(expires_at | HOLDERS_FLAG).to_be_bytes());
        value.push(holders.len() as u8);
        for (h, _) in holders {
            value.extend_from_slice(h);
        }
        value.extend_from_slice(sealed);
        let mut batch = WriteBatch::default();
        batch.put_cf(cf, key, value);
        let mut deltas = Deltas::default();
        let names: Vec<[u8; 32]> = holders.iter().map(|(h, _)| *h).collect();
        deltas.item(to, &names, sealed.len(), 1);
        self.apply_deltas(&mut batch, deltas)?;
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
            let Some(Parsed { expiry, sealed, .. }) = parse(&v) else {
                continue;
            };
            if expiry > now_ms {
                let id: [u8; 32] = k[32..]
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("mailbox key"))?;
                bytes += v.len();
                out.push((id, sealed.to_vec()));
            }
        }
        Ok(out)
    }

    /// Deletes the items at `keys` that are still there (and, when `expired_by` is given,
    /// have expired by then), with their counters; returns how many.
    fn mailbox_delete(
        &self,
        keys: &[Box<[u8]>],
        expired_by: Option<u64>,
    ) -> Result<u64, StoreError> {
        let cf = self.cf(CF_MAILBOX)?;
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let mut batch = WriteBatch::default();
        let mut deltas = Deltas::default();
        let mut n = 0;
        for key in keys {
            let Some(v) = self.db.get_cf(cf, key)? else {
                continue;
            };
            let parsed = parse(&v);
            if let Some(by) = expired_by
                && parsed.as_ref().is_some_and(|p| p.expiry > by)
            {
                continue;
            }
            if let Some(p) = parsed {
                deltas.item(&key[..32], &p.holders, p.sealed.len(), -1);
            }
            batch.delete_cf(cf, key);
            n += 1;
        }
        if n > 0 {
            self.apply_deltas(&mut batch, deltas)?;
            self.write(batch, true)?;
        }
        Ok(n)
    }

    /// Deletes items `to` has received.
    pub fn mailbox_ack(&self, to: &[u8; 32], ids: &[[u8; 32]]) -> Result<(), StoreError> {
        let keys: Vec<Box<[u8]>> = ids
            .iter()
            .map(|id| Box::from(&item_key(to, id)[..]))
            .collect();
        self.mailbox_delete(&keys, None).map(|_| ())
    }

    /// Deletes every mailbox item that has expired, a chunk at a time (puts go on
    /// meanwhile); returns how many.
    pub fn mailbox_sweep(&self, now_ms: u64) -> Result<u64, StoreError> {
        let cf = self.cf(CF_MAILBOX)?;
        let mut n = 0;
        let mut expired: Vec<Box<[u8]>> = Vec::new();
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item?;
            if mailbox_expiry(&v) <= now_ms {
                expired.push(k);
                if expired.len() >= SWEEP_CHUNK {
                    n += self.mailbox_delete(&std::mem::take(&mut expired), Some(now_ms))?;
                }
            }
        }
        n += self.mailbox_delete(&expired, Some(now_ms))?;
        Ok(n)
    }

    /// Items and sealed bytes held in mailboxes for others (the running counter).
    pub fn mailbox_stats(&self) -> Result<(u64, u64), StoreError> {
        let u = self.usage(TOTAL_KEY)?;
        Ok((u.items, u.bytes))
    }

    /// What waits for `to`, and what of it `holder` left (the running counters).
    pub fn mailbox_usage(
        &self,
        to: &[u8; 32],
        holder: Option<&[u8; 32]>,
    ) -> Result<MailboxUsage, StoreError> {
        match holder {
            Some(h) => self.usage(&by_key(to, h)),
            None => self.usage(&to_key(to)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_760_000_000_000;

    fn limits(items: u64, bytes: u64, total: u64) -> MailboxLimits {
        MailboxLimits {
            items_per_recipient: items,
            bytes_per_recipient: bytes,
            total_bytes: total,
        }
    }

    /// Sums what the items hold, for comparing with the running counters.
    fn scanned(store: &Store) -> (u64, u64) {
        let (mut n, mut b) = (0, 0);
        for item in store
            .db
            .iterator_cf(store.cf(CF_MAILBOX).expect("cf"), IteratorMode::Start)
        {
            let (_, v) = item.expect("item");
            n += 1;
            b += parse(&v).expect("parse").sealed.len() as u64;
        }
        (n, b)
    }

    #[test]
    fn mailboxes_keep_their_limits_expire_and_delete_on_ack() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let (alice, bob) = ([1u8; 32], [2u8; 32]);
        let l = limits(3, 10_000, 1 << 30);
        for i in 0..3u8 {
            assert!(
                store
                    .mailbox_put(&alice, &[i; 100], &[], NOW + 1000, &l)
                    .expect("put")
                    .is_ok()
            );
        }
        // Same item twice: stored once.
        assert!(
            store
                .mailbox_put(&alice, &[0; 100], &[], NOW + 1000, &l)
                .expect("put")
                .is_ok()
        );
        let full = store
            .mailbox_put(&alice, &[9; 100], &[], NOW + 1000, &l)
            .expect("put");
        assert!(full.expect_err("full").contains("mailbox full"));
        let small = limits(3, 150, 1 << 30);
        assert!(
            store
                .mailbox_put(&bob, &[9; 100], &[], NOW + 1000, &small)
                .expect("put")
                .is_ok()
        );
        assert!(
            store
                .mailbox_put(&bob, &[8; 100], &[], NOW + 1000, &small)
                .expect("put")
                .is_err(),
            "bytes limit"
        );
        let items = store
            .mailbox_fetch(&alice, NOW, 10, 1 << 20)
            .expect("fetch");
        assert_eq!(items.len(), 3);
        assert_eq!(
            items[0].1.len(),
            100,
            "the sealed bytes, without the header"
        );
        assert!(
            store
                .mailbox_fetch(&alice, NOW + 1000, 10, 1 << 20)
                .expect("fetch")
                .is_empty(),
            "expired"
        );
        store.mailbox_ack(&alice, &[items[0].0]).expect("ack");
        // Acknowledged twice: counted once.
        store.mailbox_ack(&alice, &[items[0].0]).expect("ack");
        assert_eq!(
            store
                .mailbox_fetch(&alice, NOW, 10, 1 << 20)
                .expect("fetch")
                .len(),
            2
        );
        assert_eq!(store.mailbox_stats().expect("stats"), (3, 300));
        assert_eq!(store.mailbox_stats().expect("stats"), scanned(&store));
        assert_eq!(store.mailbox_sweep(NOW + 1000).expect("sweep"), 3);
        assert_eq!(store.mailbox_stats().expect("stats"), (0, 0));
        assert_eq!(
            store.mailbox_usage(&alice, None).expect("usage"),
            MailboxUsage::default()
        );
    }

    #[test]
    fn the_global_cap_refuses_past_it_and_its_counter_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = limits(256, 1 << 20, 1000);
        {
            let store = Store::open(dir.path()).expect("open");
            // Ten recipients, 100 bytes each: exactly the cap.
            for i in 0..10u8 {
                let put = store
                    .mailbox_put(&[i; 32], &[i; 100], &[], NOW + 1000, &l)
                    .expect("put");
                assert!(put.is_ok(), "{put:?}");
            }
            let over = store
                .mailbox_put(&[99; 32], &[99; 100], &[], NOW + 1000, &l)
                .expect("put");
            assert!(over.expect_err("over the cap").contains("relay full"));
            assert_eq!(store.mailbox_stats().expect("stats"), (10, 1000));
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.mailbox_stats().expect("stats"), (10, 1000));
        let over = store
            .mailbox_put(&[99; 32], &[99; 100], &[], NOW + 1000, &l)
            .expect("put");
        assert!(over.expect_err("still over the cap").contains("relay full"));
        // Acknowledged items free room.
        let id = *blake3::hash(&[3u8; 100]).as_bytes();
        store.mailbox_ack(&[3; 32], &[id]).expect("ack");
        assert!(
            store
                .mailbox_put(&[99; 32], &[99; 100], &[], NOW + 1000, &l)
                .expect("put")
                .is_ok()
        );
    }

    #[test]
    fn a_few_throw_away_senders_cannot_fill_a_victims_mailbox() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let victim = [7u8; 32];
        let l = limits(256, 8 << 20, 1 << 30);
        // Each sender may hold an eighth of the mailbox.
        let quota = Quota {
            items: 32,
            bytes: 1 << 20,
        };
        let mut seq = 0u32;
        let mut sealed = || {
            seq += 1;
            let mut b = vec![0u8; 1000];
            b[..4].copy_from_slice(&seq.to_be_bytes());
            b
        };
        for attacker in 0..4u8 {
            let holder = [[100 + attacker; 32]];
            let mut stored = 0;
            for _ in 0..100 {
                let h = [(holder[0], quota)];
                if store
                    .mailbox_put(&victim, &sealed(), &h, NOW + 1000, &l)
                    .expect("put")
                    .is_ok()
                {
                    stored += 1;
                }
            }
            assert_eq!(stored, 32, "attacker {attacker} stopped at its share");
            assert_eq!(
                store
                    .mailbox_usage(&victim, Some(&holder[0]))
                    .expect("usage")
                    .items,
                32
            );
        }
        let refused = store
            .mailbox_put(&victim, &sealed(), &[([100; 32], quota)], NOW + 1000, &l)
            .expect("put");
        assert!(refused.expect_err("share").contains("your share"));
        let honest = [(([1u8; 32]), quota)];
        assert!(
            store
                .mailbox_put(&victim, &sealed(), &honest, NOW + 1000, &l)
                .expect("put")
                .is_ok(),
            "an honest sender still gets in"
        );
        assert_eq!(
            store.mailbox_usage(&victim, None).expect("usage").items,
            4 * 32 + 1
        );
        // Delivered items give the sender its share back.
        let ids: Vec<[u8; 32]> = store
            .mailbox_fetch(&victim, NOW, 64, 1 << 20)
            .expect("fetch")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        store.mailbox_ack(&victim, &ids).expect("ack");
        assert_eq!(store.mailbox_stats().expect("stats"), scanned(&store));
    }

    #[test]
    fn items_written_before_the_counters_are_counted_once_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            let cf = store.cf(CF_MAILBOX).expect("cf");
            // The old format: expiry || sealed; and no counters.
            for i in 0..3u8 {
                let mut v = (NOW + 1000).to_be_bytes().to_vec();
                v.extend_from_slice(&[i; 50]);
                let id = *blake3::hash(&[i; 50]).as_bytes();
                store
                    .db
                    .put_cf(cf, item_key(&[1; 32], &id), v)
                    .expect("put");
            }
            let meta = store.cf(CF_META).expect("meta");
            store.db.delete_cf(meta, COUNTERS_BUILT).expect("unmark");
            store.db.delete_cf(meta, TOTAL_KEY).expect("unmark");
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.mailbox_stats().expect("stats"), (3, 150));
        let items = store
            .mailbox_fetch(&[1; 32], NOW, 10, 1 << 20)
            .expect("fetch");
        assert_eq!(items.len(), 3);
        assert!(items.iter().all(|(_, s)| s.len() == 50));
        store.mailbox_ack(&[1; 32], &[items[0].0]).expect("ack");
        assert_eq!(store.mailbox_stats().expect("stats"), (2, 100));
    }
}

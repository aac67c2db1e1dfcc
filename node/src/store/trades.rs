//! Trades: each trade's messages in arrival order, the delivery records and queue of our
//! messages, reservations, and equivocation proofs. One trade step is one synced
//! `WriteBatch` ([`Store::commit_trade_step`]): messages, delivery records, reservation, the
//! listing's next version, proofs and the notifications the step raises together.
//!
//! It stores messages the trades service verified and replayed; it never judges a chain.

use jangteo_protocol::{Listing, ObjectId, PublicKey, SignedObject};
use rocksdb::{IteratorMode, WriteBatch};

use crate::api::types::NotificationView;
use crate::error::StoreError;

use super::{
    CF_DELIVERIES, CF_DELIVERY_QUEUE, CF_EQUIVOCATIONS, CF_META, CF_OBJECTS, CF_TRADE_LOG,
    CF_TRADE_MESSAGES, RESERVED_PREFIX, SEEN_PREFIX, Store,
};

/// A change to what a trade reserves of its listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The trade holds this many units.
    Set(u64),
    /// The trade holds nothing (any earlier reservation is returned).
    Clear,
}

/// A delivery record written with a trade step.
#[derive(Debug, Clone)]
pub struct DeliveryWrite {
    /// Our message.
    pub message: ObjectId,
    /// The record (JSON of the trades service).
    pub record: Vec<u8>,
    /// When queued: when to try again (unix ms). None: no longer queued.
    pub next_attempt: Option<u64>,
}

/// An equivocation proof written with a trade step.
#[derive(Debug, Clone)]
pub struct ProofWrite {
    /// The signed `equivocation` object.
    pub object: SignedObject,
    /// Who equivocated.
    pub author: PublicKey,
    /// In which trade.
    pub trade: ObjectId,
}

/// Everything one trade step writes, as one synced batch ([`Store::commit_trade_step`]).
#[derive(Debug, Clone, Default)]
pub struct TradeStep {
    /// The trade.
    pub trade: ObjectId,
    /// Messages to append to its log, in order.
    pub messages: Vec<SignedObject>,
    /// Delivery records of our messages.
    pub deliveries: Vec<DeliveryWrite>,
    /// What the trade reserves from now on.
    pub reservation: Option<Reservation>,
    /// The listing's next version (signed by this node), with its body.
    pub listing: Option<(SignedObject, Listing)>,
    /// Equivocation proofs found.
    pub proofs: Vec<ProofWrite>,
    /// Whether trust may change (a completed trade).
    pub changes_trust: bool,
    /// Notifications the step raises (numbered when written).
    pub notifications: Vec<NotificationView>,
}

impl Store {
    /// Moves trades stored by message id (before arrival order was kept) into the trade
    /// log, each trade's messages in id order.
    pub(super) fn migrate_trade_messages(&self) -> Result<(), StoreError> {
        let old = self.cf(CF_TRADE_MESSAGES)?;
        let mut batch = WriteBatch::default();
        let mut last: Option<[u8; 32]> = None;
        let mut n: u32 = 0;
        let mut moved = 0;
        for item in self.db.iterator_cf(old, IteratorMode::Start) {
            let (k, v) = item?;
            let trade: [u8; 32] = k
                .get(..32)
                .and_then(|s| s.try_into().ok())
                .ok_or(StoreError::Corrupt("trade key"))?;
            if last != Some(trade) {
                last = Some(trade);
                n = 0;
            }
            batch.put_cf(
                self.cf(CF_TRADE_LOG)?,
                Self::log_key(&ObjectId(trade), n),
                &v,
            );
            batch.delete_cf(old, &k);
            // A message of ours still queued before the upgrade goes into the delivery queue.
            let id = *blake3::hash(&v).as_bytes();
            if let Some(rec) = self.db.get_cf(self.cf(CF_DELIVERIES)?, id)?
                && String::from_utf8_lossy(&rec).contains("\"status\":\"queued\"")
            {
                let mut q = [0u8; 40];
                q[..32].copy_from_slice(&trade);
                batch.put_cf(self.cf(CF_DELIVERY_QUEUE)?, id, q);
            }
            n += 1;
            moved += 1;
        }
        if moved > 0 {
            self.write(batch, true)?;
        }
        Ok(())
    }

    fn log_key(trade: &ObjectId, n: u32) -> [u8; 36] {
        let mut k = [0u8; 36];
        k[..32].copy_from_slice(&trade.0);
        k[32..].copy_from_slice(&n.to_be_bytes());
        k
    }

    fn reservation_key(trade: &ObjectId) -> Vec<u8> {
        let mut key = RESERVED_PREFIX.to_vec();
        key.extend_from_slice(&trade.0);
        key
    }

    /// Writes one trade step as one synced batch: the messages appended to the trade's log
    /// (in order, skipping any already held), delivery records (and the delivery queue), the
    /// reservation change, the listing's next version, equivocation proofs and the
    /// notifications it raises. Either all of it is on disk when this returns, or none of it.
    /// Returns the notifications as written (numbered).
    pub fn commit_trade_step(
        &self,
        step: &TradeStep,
        now_ms: u64,
    ) -> Result<Vec<NotificationView>, StoreError> {
        let log = self.cf(CF_TRADE_LOG)?;
        let meta = self.cf(CF_META)?;
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        let mut batch = WriteBatch::default();
        if !step.messages.is_empty() {
            let held = self.trade_log_unlocked(&step.trade)?;
            let mut n = held.len() as u32;
            let held_ids: std::collections::HashSet<[u8; 32]> =
                held.iter().map(|b| *blake3::hash(b).as_bytes()).collect();
            for m in &step.messages {
                if held_ids.contains(&m.id().0) {
                    continue;
                }
                batch.put_cf(log, Self::log_key(&step.trade, n), m.bytes());
                n += 1;
            }
        }
        for d in &step.deliveries {
            batch.put_cf(self.cf(CF_DELIVERIES)?, d.message.0, &d.record);
            match d.next_attempt {
                Some(at) => {
                    let mut v = [0u8; 40];
                    v[..32].copy_from_slice(&step.trade.0);
                    v[32..].copy_from_slice(&at.to_be_bytes());
                    batch.put_cf(self.cf(CF_DELIVERY_QUEUE)?, d.message.0, v);
                }
                None => batch.delete_cf(self.cf(CF_DELIVERY_QUEUE)?, d.message.0),
            }
        }
        match step.reservation {
            Some(Reservation::Set(q)) => {
                batch.put_cf(meta, Self::reservation_key(&step.trade), q.to_be_bytes())
            }
            Some(Reservation::Clear) => batch.delete_cf(meta, Self::reservation_key(&step.trade)),
            None => {}
        }
        let mut listing_written = false;
        if let Some((obj, listing)) = &step.listing {
            let w = self.stage_listing(&mut batch, obj, listing, now_ms)?;
            if !w.stored() {
                return Err(StoreError::Conflict(format!(
                    "the listing's next version was not taken: {w:?}"
                )));
            }
            listing_written = true;
        }
        for p in &step.proofs {
            batch.put_cf(self.cf(CF_OBJECTS)?, p.object.id().0, p.object.bytes());
            let mut k = [0u8; 64];
            k[..32].copy_from_slice(&p.author.0);
            k[32..].copy_from_slice(&p.trade.0);
            batch.put_cf(self.cf(CF_EQUIVOCATIONS)?, k, p.object.id().0);
        }
        let notes = self.stage_notifications(&mut batch, &step.notifications)?;
        self.write(batch, true)?;
        if listing_written {
            self.listing_written();
        }
        if step.changes_trust {
            self.bump_trust();
        }
        Ok(notes)
    }

    fn trade_log_unlocked(&self, trade: &ObjectId) -> Result<Vec<Vec<u8>>, StoreError> {
        let cf = self.cf(CF_TRADE_LOG)?;
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(cf, trade.0) {
            let (k, v) = item?;
            if !k.starts_with(&trade.0) {
                break;
            }
            out.push(v.to_vec());
        }
        Ok(out)
    }

    /// Every message held for a trade (offer included), in the order they were received.
    pub fn trade_messages(&self, trade: &ObjectId) -> Result<Vec<Vec<u8>>, StoreError> {
        self.trade_log_unlocked(trade)
    }

    /// Whether any message of this trade is held.
    pub fn has_trade(&self, trade: &ObjectId) -> Result<bool, StoreError> {
        let cf = self.cf(CF_TRADE_LOG)?;
        Ok(self
            .db
            .prefix_iterator_cf(cf, trade.0)
            .next()
            .transpose()?
            .is_some_and(|(k, _)| k.starts_with(&trade.0)))
    }

    /// Ids of every trade held.
    pub fn trade_ids(&self) -> Result<Vec<ObjectId>, StoreError> {
        let cf = self.cf(CF_TRADE_LOG)?;
        let mut out: Vec<ObjectId> = Vec::new();
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, _) = item?;
            let id: [u8; 32] = k
                .get(..32)
                .and_then(|s| s.try_into().ok())
                .ok_or(StoreError::Corrupt("trade key"))?;
            if out.last().is_none_or(|l| l.0 != id) {
                out.push(ObjectId(id));
            }
        }
        Ok(out)
    }

    /// (trades held, trade messages held).
    pub fn trade_counts(&self) -> Result<(u64, u64), StoreError> {
        let cf = self.cf(CF_TRADE_LOG)?;
        let (mut trades, mut messages) = (0, 0);
        let mut last: Option<Vec<u8>> = None;
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, _) = item?;
            messages += 1;
            let t = k.get(..32).map(<[u8]>::to_vec);
            if t != last {
                trades += 1;
                last = t;
            }
        }
        Ok((trades, messages))
    }

    /// Records the delivery state of a message this node sent (synced), with the
    /// notifications it raises (a failure); `next_attempt` keeps it in the delivery queue,
    /// None takes it out. Returns the notifications as written.
    pub fn set_delivery(
        &self,
        trade: &ObjectId,
        msg: &ObjectId,
        record: &[u8],
        next_attempt: Option<u64>,
        notifications: Vec<NotificationView>,
    ) -> Result<Vec<NotificationView>, StoreError> {
        self.commit_trade_step(
            &TradeStep {
                trade: *trade,
                deliveries: vec![DeliveryWrite {
                    message: *msg,
                    record: record.to_vec(),
                    next_attempt,
                }],
                notifications,
                ..TradeStep::default()
            },
            0,
        )
    }

    /// The delivery state of a message this node sent.
    pub fn delivery(&self, msg: &ObjectId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_DELIVERIES)?, msg.0)?)
    }

    /// The delivery queue: (message, trade, next attempt unix ms), at most `limit` entries.
    pub fn delivery_queue(
        &self,
        limit: usize,
    ) -> Result<Vec<(ObjectId, ObjectId, u64)>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_DELIVERY_QUEUE)?, IteratorMode::Start)
            .take(limit)
        {
            let (k, v) = item?;
            let id: [u8; 32] = k
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("delivery queue key"))?;
            if v.len() != 40 {
                return Err(StoreError::Corrupt("delivery queue entry"));
            }
            let mut t = [0u8; 32];
            t.copy_from_slice(&v[..32]);
            let mut at = [0u8; 8];
            at.copy_from_slice(&v[32..]);
            out.push((ObjectId(id), ObjectId(t), u64::from_be_bytes(at)));
        }
        Ok(out)
    }

    /// Number of queued deliveries.
    pub fn queued_delivery_count(&self) -> Result<u64, StoreError> {
        self.count(CF_DELIVERY_QUEUE)
    }

    /// What `trade` has reserved of its listing, if anything.
    pub fn reservation(&self, trade: &ObjectId) -> Result<Option<u64>, StoreError> {
        let Some(v) = self
            .db
            .get_cf(self.cf(CF_META)?, Self::reservation_key(trade))?
        else {
            return Ok(None);
        };
        <[u8; 8]>::try_from(v.as_slice())
            .map(u64::from_be_bytes)
            .map(Some)
            .map_err(|_| StoreError::Corrupt("reservation"))
    }

    /// When the person last looked at `trade` (unix ms), if ever: the web page marks a
    /// trade unread when it changed after that.
    pub fn trade_seen(&self, trade: &ObjectId) -> Result<Option<u64>, StoreError> {
        let Some(v) = self.db.get_cf(self.cf(CF_META)?, Self::seen_key(trade))? else {
            return Ok(None);
        };
        <[u8; 8]>::try_from(v.as_slice())
            .map(u64::from_be_bytes)
            .map(Some)
            .map_err(|_| StoreError::Corrupt("seen mark"))
    }

    /// Records that the person looked at `trade` at `at` (unix ms); an earlier time never
    /// replaces a later one.
    pub fn mark_trade_seen(&self, trade: &ObjectId, at: u64) -> Result<(), StoreError> {
        if self.trade_seen(trade)?.is_some_and(|seen| seen >= at) {
            return Ok(());
        }
        self.db
            .put_cf(self.cf(CF_META)?, Self::seen_key(trade), at.to_be_bytes())?;
        Ok(())
    }

    fn seen_key(trade: &ObjectId) -> Vec<u8> {
        let mut k = SEEN_PREFIX.to_vec();
        k.extend_from_slice(&trade.0);
        k
    }

    /// Keys with an equivocation proof held against them.
    pub fn equivocators(&self) -> Result<Vec<PublicKey>, StoreError> {
        let mut out: Vec<PublicKey> = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_EQUIVOCATIONS)?, IteratorMode::Start)
        {
            let (k, _) = item?;
            let a: [u8; 32] = k
                .get(..32)
                .and_then(|s| s.try_into().ok())
                .ok_or(StoreError::Corrupt("equivocation key"))?;
            if out.last().is_none_or(|l| l.0 != a) {
                out.push(PublicKey(a));
            }
        }
        Ok(out)
    }

    /// Whether a proof against `author` for `trade` is held.
    pub fn has_equivocation(
        &self,
        author: &PublicKey,
        trade: &ObjectId,
    ) -> Result<bool, StoreError> {
        let mut k = [0u8; 64];
        k[..32].copy_from_slice(&author.0);
        k[32..].copy_from_slice(&trade.0);
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_EQUIVOCATIONS)?, k)?
            .is_some())
    }

    /// Stores a verified equivocation proof object (gossiped or found here); false when a
    /// proof against that key for that trade is already held.
    pub fn put_equivocation(
        &self,
        obj: &SignedObject,
        author: &PublicKey,
        trade: &ObjectId,
        durable: bool,
    ) -> Result<bool, StoreError> {
        let cf = self.cf(CF_EQUIVOCATIONS)?;
        let mut k = [0u8; 64];
        k[..32].copy_from_slice(&author.0);
        k[32..].copy_from_slice(&trade.0);
        let _guard = self.write_lock.lock().map_err(|_| StoreError::Poisoned)?;
        if self.db.get_pinned_cf(cf, k)?.is_some() {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_OBJECTS)?, obj.id().0, obj.bytes());
        batch.put_cf(cf, k, obj.id().0);
        self.write(batch, durable)?;
        self.bump_trust();
        Ok(true)
    }
}

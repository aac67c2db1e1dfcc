//! Catch-up sync: range-based set reconciliation of the objects two nodes hold per topic shard.
//!
//! Built on the `negentropy` crate (protocol version 1, `0x61`): items are
//! `(timestamp, 32-byte object id)`, sorted by timestamp then id; a range is summarized by a
//! 16-byte fingerprint (sha256 of the sum of its ids mod 2^256 and its count); a mismatched
//! range is split into 16 buckets, and a range under 32 items is sent as an id list. Cost
//! grows with the difference, not with the store. We plug our own storage (a sorted slice of
//! [`Item`]) into the crate through `NegentropyStorageBase`, so a responder does not copy a
//! set that is already sorted.
//!
//! # Flow (who sends first)
//!
//! The node that wants to catch up is the **initiator**: it builds the items of one shard
//! ([`listing_items`] or [`attestation_items`]), calls [`Initiator::new`] and sends the first
//! message. The **responder** answers every message with [`respond`] (or [`ItemSet::respond`]
//! when it caches its sorted set); it keeps no session, so one request-response exchange is
//! one round. The initiator feeds each reply to [`Initiator::step`], which returns the next
//! message to send (`None` = finished) and the ids learned in that step: `need` (the peer
//! has them, we do not: fetch those objects by id) and `have` (we have them, the peer does
//! not: the peer learns nothing from this, so push them or let the peer initiate too).
//! Ids are reported once per session, deduplicated across steps.
//!
//! # Limits
//!
//! - Every message either side produces or accepts is at most [`FRAME_MAX_BYTES`]; larger
//!   input is refused with [`ReconcileError::Oversize`]. A frame carries at most about
//!   1,900 ids, so a large difference takes several rounds (about one round per 1,900
//!   missing ids, plus 2-3 to narrow down).
//! - The initiator refuses to go past [`MAX_ROUNDS`] replies
//!   ([`ReconcileError::TooManyRounds`]); the ids of earlier steps were already returned.
//!   Ranges are reconciled in timestamp order: when we only lack items (catching up), fetch
//!   what was learned and start a new session; the ranges now equal cost one fingerprint
//!   each. Ranges holding items only we have keep differing until the peer gets them.
//! - Malformed input is an error, never a panic; work per message is linear in the message
//!   and in the local set, and allocations are bounded by the message size.
//! - An item with timestamp `u64::MAX` is stored as `u64::MAX - 1` (negentropy uses
//!   `u64::MAX` as "infinity"); both sides apply the same rule.
//!
//! # Measured
//!
//! Release build, one thread, 60 KiB frames
//! (`cargo test --release -p jangteo-node reconcile -- --ignored --nocapture`):
//!
//! | case | time | rounds | bytes up | bytes down |
//! |---|---|---|---|---|
//! | 100,000 vs 100,000 identical | 6 ms | 1 | 352 | 1 |
//! | 90,000 vs 100,000, newest 10,000 missing | 28 ms | 7 | 1,400 | 321,626 |
//! | 90,000 vs 100,000, ~10,000 missing at random | 177 ms | 76 | 2,311,278 | 2,512,108 |
//! | 0 vs 10,000 | | 6 | 230 | 320,512 |
//! | 10,000 vs 20,000 (newest 10,000 missing) | | 7 | 1,206 | 321,377 |
//! | 10,000 vs 10,000, 1% / 50% / 100% own | | 2 / 11 / 11 | 45 k / 261 k / 278 k | 24 k / 349 k / 360 k |
//!
//! Building an [`ItemSet`] from 100,000 unsorted items: 13 ms; [`Initiator::new`] over
//! 90,000: 11 ms. [`listing_items`] over a store of 100,000 listings: 1.2 s (it decodes
//! every listing), so keep the per-shard items in memory and update them on store writes
//! rather than rebuilding them per request. With the default [`MAX_ROUNDS`] the random case
//! stops with [`ReconcileError::TooManyRounds`] after reporting 7,621 of the ~10,000 needed
//! ids; fetch them and run again, or use [`Initiator::with_max_rounds`].
//!
//! Note on bytes: ids of items in a differing leaf range cross in both directions (that is
//! negentropy's id-list step). When the missing items are clustered (a node that was offline
//! misses the newest ones), the bytes are close to 32 per missing id; when they are spread at
//! random through a much larger set, every small range differs and about 32 bytes per item
//! of *both* sets cross.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use jangteo_protocol::Listing;
use negentropy::{Bound, Id, Negentropy, NegentropyStorageBase};

use crate::error::StoreError;
use crate::store::Store;

/// One reconciled item: (timestamp in unix ms, object id).
pub type Item = (u64, [u8; 32]);

/// Every message we send or accept is at most this many bytes.
pub const FRAME_MAX_BYTES: usize = 60 * 1024;

/// The initiator gives up after this many replies.
pub const MAX_ROUNDS: usize = 64;

/// Why a reconciliation step failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A message was larger than [`FRAME_MAX_BYTES`].
    #[error("message of {0} bytes exceeds the {FRAME_MAX_BYTES}-byte frame limit")]
    Oversize(usize),
    /// The message could not be parsed or does not follow the protocol.
    #[error("malformed reconciliation message: {0}")]
    Malformed(negentropy::Error),
    /// The peer kept the session going past the round limit ([`MAX_ROUNDS`] by default).
    #[error("reconciliation did not finish within {0} rounds")]
    TooManyRounds(usize),
    /// `step` was called after the session finished or failed.
    #[error("reconciliation session already finished")]
    Finished,
}

impl From<negentropy::Error> for ReconcileError {
    fn from(e: negentropy::Error) -> Self {
        Self::Malformed(e)
    }
}

/// What one [`Initiator::step`] produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// The next message to send to the responder; `None` when the session is finished.
    pub next: Option<Vec<u8>>,
    /// Ids the peer has and we lack (new in this step).
    pub need: Vec<[u8; 32]>,
    /// Ids we have and the peer lacks (new in this step).
    pub have: Vec<[u8; 32]>,
}

/// The items of one listing shard as `store` holds them: for each listing head whose
/// listing is open at `now_ms` and for which `in_shard` holds, `(updated_at, head object id)`.
pub fn listing_items(
    store: &Store,
    in_shard: impl Fn(&Listing) -> bool,
    now_ms: u64,
) -> Result<Vec<Item>, StoreError> {
    let mut items = Vec::new();
    store.for_each_listing(None, |l| {
        if l.listing.is_open(now_ms) && in_shard(&l.listing) {
            items.push((l.listing.updated_at, l.head.object.0));
        }
        true
    })?;
    Ok(items)
}

/// Attestation items: `(at, object id)` for every attestation record the store holds.
pub fn attestation_items(store: &Store) -> Result<Vec<Item>, StoreError> {
    let mut items = Vec::new();
    store.for_each_attestation(None, |r| {
        items.push((r.at, r.object.0));
        true
    })?;
    Ok(items)
}

/// Clamps timestamps and sorts/dedupes, borrowing when `items` is already in order.
fn normalize(items: Cow<'_, [Item]>) -> Cow<'_, [Item]> {
    let ordered = items.iter().all(|i| i.0 != u64::MAX)
        && items
            .windows(2)
            .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1));
    if ordered {
        return items;
    }
    let mut v = items.into_owned();
    for i in &mut v {
        i.0 = i.0.min(u64::MAX - 1);
    }
    v.sort_unstable();
    v.dedup();
    Cow::Owned(v)
}

/// A sorted, deduplicated set of items, as negentropy storage.
#[derive(Debug, Clone)]
struct Sorted<S>(S);

fn to_item(i: &Item) -> negentropy::Item {
    negentropy::Item::with_timestamp_and_id(i.0, Id::from_byte_array(i.1))
}

impl<S: AsRef<[Item]>> NegentropyStorageBase for Sorted<S> {
    fn size(&self) -> Result<usize, negentropy::Error> {
        Ok(self.0.as_ref().len())
    }

    fn get_item(&self, i: usize) -> Result<Option<negentropy::Item>, negentropy::Error> {
        Ok(self.0.as_ref().get(i).map(to_item))
    }

    fn iterate(
        &self,
        begin: usize,
        end: usize,
        cb: &mut dyn FnMut(negentropy::Item, usize) -> Result<bool, negentropy::Error>,
    ) -> Result<(), negentropy::Error> {
        let slice = self
            .0
            .as_ref()
            .get(begin..end)
            .ok_or(negentropy::Error::BadRange)?;
        for (k, item) in slice.iter().enumerate() {
            if !cb(to_item(item), begin + k)? {
                break;
            }
        }
        Ok(())
    }

    fn find_lower_bound(&self, first: usize, last: usize, value: &Bound) -> usize {
        let key = (value.item.timestamp, value.item.id.to_bytes());
        match self.0.as_ref().get(first..last) {
            Some(s) => first + s.partition_point(|i| (i.0, i.1) < key),
            None => first,
        }
    }
}

fn check_len(msg: &[u8]) -> Result<(), ReconcileError> {
    if msg.len() > FRAME_MAX_BYTES {
        return Err(ReconcileError::Oversize(msg.len()));
    }
    Ok(())
}

/// A responder's set, sorted once and reusable for many messages and peers.
#[derive(Debug, Clone)]
pub struct ItemSet {
    items: Vec<Item>,
}

impl ItemSet {
    /// Sorts and dedupes `items`.
    pub fn new(items: Vec<Item>) -> Self {
        Self {
            items: normalize(Cow::Owned(items)).into_owned(),
        }
    }

    /// Number of distinct items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The reply to one initiator message.
    pub fn respond(&self, msg: &[u8]) -> Result<Vec<u8>, ReconcileError> {
        respond_sorted(Sorted(Cow::Borrowed(self.items.as_slice())), msg)
    }
}

/// Responder side: stateless, one reply per message. `items` may be unsorted (it is then
/// sorted into a copy for this call; use [`ItemSet`] to sort once).
pub fn respond(items: &[Item], msg: &[u8]) -> Result<Vec<u8>, ReconcileError> {
    check_len(msg)?;
    respond_sorted(Sorted(normalize(Cow::Borrowed(items))), msg)
}

fn respond_sorted(set: Sorted<Cow<'_, [Item]>>, msg: &[u8]) -> Result<Vec<u8>, ReconcileError> {
    check_len(msg)?;
    let mut neg = Negentropy::owned(set, FRAME_MAX_BYTES as u64)?;
    let out = neg.reconcile(msg)?;
    check_len(&out)?;
    Ok(out)
}

/// Initiator side of one reconciliation session.
pub struct Initiator {
    neg: Negentropy<'static, Sorted<Arc<[Item]>>>,
    /// The same items, shared with `neg`'s storage.
    set: Arc<[Item]>,
    /// Our ids, sorted, built on first use to filter `need`.
    our_ids: Option<Vec<[u8; 32]>>,
    items: usize,
    rounds: usize,
    max_rounds: usize,
    finished: bool,
    need_seen: HashSet<[u8; 32]>,
    have_seen: HashSet<[u8; 32]>,
    bytes_sent: usize,
    bytes_received: usize,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Initiator")
            .field("items", &self.items)
            .field("rounds", &self.rounds)
            .field("finished", &self.finished)
            .field("need", &self.need_seen.len())
            .field("have", &self.have_seen.len())
            .field("bytes_sent", &self.bytes_sent)
            .field("bytes_received", &self.bytes_received)
            .finish()
    }
}

impl Initiator {
    /// Starts a session over `items` (any order, duplicates allowed); returns the first
    /// message to send.
    pub fn new(items: Vec<Item>) -> Result<(Self, Vec<u8>), ReconcileError> {
        Self::with_max_rounds(items, MAX_ROUNDS)
    }

    /// Like [`Initiator::new`] with another round limit than [`MAX_ROUNDS`].
    pub fn with_max_rounds(
        items: Vec<Item>,
        max_rounds: usize,
    ) -> Result<(Self, Vec<u8>), ReconcileError> {
        let set: Arc<[Item]> = normalize(Cow::Owned(items)).into_owned().into();
        let n = set.len();
        let mut neg = Negentropy::owned(Sorted(Arc::clone(&set)), FRAME_MAX_BYTES as u64)?;
        let first = neg.initiate()?;
        check_len(&first)?;
        Ok((
            Self {
                neg,
                set,
                our_ids: None,
                items: n,
                rounds: 0,
                max_rounds,
                finished: false,
                need_seen: HashSet::new(),
                have_seen: HashSet::new(),
                bytes_sent: first.len(),
                bytes_received: 0,
            },
            first,
        ))
    }

    /// Feeds the responder's reply; returns the next message (None = done) and the ids
    /// learned in this step. After an error the session is over.
    pub fn step(&mut self, reply: &[u8]) -> Result<Step, ReconcileError> {
        if self.finished {
            return Err(ReconcileError::Finished);
        }
        let result = self.step_inner(reply);
        if !matches!(&result, Ok(Step { next: Some(_), .. })) {
            self.finished = true;
        }
        result
    }

    fn step_inner(&mut self, reply: &[u8]) -> Result<Step, ReconcileError> {
        check_len(reply)?;
        self.rounds += 1;
        self.bytes_received += reply.len();
        let mut have = Vec::new();
        let mut need = Vec::new();
        let next = self.neg.reconcile_with_ids(reply, &mut have, &mut need)?;
        if let Some(m) = &next {
            check_len(m)?;
            if self.rounds >= self.max_rounds {
                return Err(ReconcileError::TooManyRounds(self.max_rounds));
            }
            self.bytes_sent += m.len();
        }
        let have = have
            .into_iter()
            .map(Id::to_bytes)
            .filter(|id| self.have_seen.insert(*id))
            .collect();
        let mut step_need = Vec::with_capacity(need.len());
        if !need.is_empty() {
            let ours = self.our_ids.get_or_insert_with(|| {
                let mut v: Vec<[u8; 32]> = self.set.iter().map(|i| i.1).collect();
                v.sort_unstable();
                v
            });
            for id in need.into_iter().map(Id::to_bytes) {
                if ours.binary_search(&id).is_err() && self.need_seen.insert(id) {
                    step_need.push(id);
                }
            }
        }
        Ok(Step {
            next,
            need: step_need,
            have,
        })
    }

    /// Replies processed so far.
    pub fn rounds(&self) -> usize {
        self.rounds
    }

    /// Bytes sent (first message included) and received so far.
    pub fn bytes(&self) -> (usize, usize) {
        (self.bytes_sent, self.bytes_received)
    }

    /// Number of distinct items on our side.
    pub fn len(&self) -> usize {
        self.items
    }

    /// Whether our side is empty.
    pub fn is_empty(&self) -> bool {
        self.items == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeSet;

    const NOW: u64 = 1_760_000_000_000;

    #[derive(Debug, Default)]
    struct Outcome {
        need: BTreeSet<[u8; 32]>,
        have: BTreeSet<[u8; 32]>,
        rounds: usize,
        up: usize,
        down: usize,
        largest: usize,
    }

    /// Runs a whole session, A initiating, B responding; checks frame sizes and that no id
    /// is reported twice.
    fn sync(a: &[Item], b: &[Item]) -> Outcome {
        sync_with(a, b, MAX_ROUNDS)
    }

    fn sync_with(a: &[Item], b: &[Item], max_rounds: usize) -> Outcome {
        let responder = ItemSet::new(b.to_vec());
        let (mut init, first) = Initiator::with_max_rounds(a.to_vec(), max_rounds).unwrap();
        let mut out = Outcome {
            up: first.len(),
            largest: first.len(),
            ..Outcome::default()
        };
        let mut msg = first;
        loop {
            assert!(msg.len() <= FRAME_MAX_BYTES);
            let reply = responder.respond(&msg).unwrap();
            assert!(reply.len() <= FRAME_MAX_BYTES);
            // The stateless free function gives the same reply for unsorted input.
            if b.len() <= 1000 {
                let mut shuffled = b.to_vec();
                shuffled.reverse();
                assert_eq!(respond(&shuffled, &msg).unwrap(), reply);
            }
            out.down += reply.len();
            out.largest = out.largest.max(reply.len());
            out.rounds += 1;
            let step = init.step(&reply).unwrap();
            for id in step.need {
                assert!(out.need.insert(id), "need reported twice");
            }
            for id in step.have {
                assert!(out.have.insert(id), "have reported twice");
            }
            match step.next {
                Some(m) => {
                    out.up += m.len();
                    out.largest = out.largest.max(m.len());
                    msg = m;
                }
                None => break,
            }
        }
        assert_eq!(init.rounds(), out.rounds);
        assert_eq!(init.bytes(), (out.up, out.down));
        assert!(matches!(init.step(&[0x61]), Err(ReconcileError::Finished)));
        out
    }

    fn ids(items: &[Item]) -> BTreeSet<[u8; 32]> {
        items.iter().map(|i| i.1).collect()
    }

    fn random_items(rng: &mut StdRng, n: usize) -> Vec<Item> {
        (0..n)
            .map(|_| (NOW + rng.gen_range(0..30 * 86_400_000u64), rng.r#gen()))
            .collect()
    }

    /// A and B share `common` items; each also has its own `only_a` / `only_b` items.
    fn pair(seed: u64, common: usize, only_a: usize, only_b: usize) -> (Vec<Item>, Vec<Item>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let shared = random_items(&mut rng, common);
        let mut a = shared.clone();
        a.extend(random_items(&mut rng, only_a));
        let mut b = shared;
        b.extend(random_items(&mut rng, only_b));
        (a, b)
    }

    fn check(name: &str, a: &[Item], b: &[Item]) -> Outcome {
        check_with(name, a, b, MAX_ROUNDS)
    }

    fn check_with(name: &str, a: &[Item], b: &[Item], max_rounds: usize) -> Outcome {
        let out = sync_with(a, b, max_rounds);
        let (sa, sb) = (ids(a), ids(b));
        let b_minus_a: BTreeSet<_> = sb.difference(&sa).copied().collect();
        let a_minus_b: BTreeSet<_> = sa.difference(&sb).copied().collect();
        assert_eq!(out.need, b_minus_a, "{name}: need != B\\A");
        assert_eq!(out.have, a_minus_b, "{name}: have != A\\B");
        println!(
            "{name:<34} |A|={:>6} |B|={:>6} need={:>6} have={:>6} rounds={:>3} up={:>8} B down={:>8} B largest={:>6}",
            sa.len(),
            sb.len(),
            out.need.len(),
            out.have.len(),
            out.rounds,
            out.up,
            out.down,
            out.largest
        );
        out
    }

    #[test]
    fn reconcile_small_and_empty_sets() {
        let (a, b) = pair(1, 0, 0, 0);
        assert_eq!(check("0 vs 0", &a, &b).rounds, 1);
        let (a, b) = pair(2, 0, 1, 0);
        check("1 vs 0", &a, &b);
        let (a, b) = pair(3, 0, 0, 1);
        check("0 vs 1", &a, &b);
        let (a, b) = pair(4, 1, 0, 0);
        check("1 = 1", &a, &b);
        let (a, b) = pair(5, 0, 1, 1);
        check("1 vs 1 disjoint", &a, &b);
        for (i, (common, oa, ob)) in [(99, 1, 1), (50, 50, 50), (0, 100, 100), (100, 0, 0)]
            .into_iter()
            .enumerate()
        {
            let (a, b) = pair(10 + i as u64, common, oa, ob);
            check(&format!("100 vs 100, {common} shared"), &a, &b);
        }
    }

    #[test]
    fn reconcile_10k_vs_10k_with_varied_differences() {
        // 1%, 50% and 100% of each side's 10,000 items are its own.
        for (pct, seed) in [(1usize, 20u64), (50, 21), (100, 22)] {
            let own = 10_000 * pct / 100;
            let (a, b) = pair(seed, 10_000 - own, own, own);
            let out = check(&format!("10k vs 10k, {pct}% differ"), &a, &b);
            assert!(out.rounds <= MAX_ROUNDS);
        }
    }

    #[test]
    fn reconcile_one_side_empty() {
        let (a, b) = pair(30, 0, 0, 10_000);
        let out = check("0 vs 10k (initiator empty)", &a, &b);
        // Only the responder's ids cross, one frame (~1,900 ids) per round.
        assert!(out.down < 10_000 * 32 + 8 * 1024, "down {}", out.down);
        assert!(out.up < 1024, "up {}", out.up);
        let (a, b) = pair(31, 0, 10_000, 0);
        let out = check("10k vs 0 (responder empty)", &a, &b);
        // Our own ids never have to cross for us to learn the peer lacks them.
        assert!(out.up + out.down < 4096, "{} + {}", out.up, out.down);
    }

    #[test]
    fn bytes_for_10k_missing_are_bounded() {
        let bound = 10_000 * 32 * 3 / 2 + 16 * 1024;
        // A node that was offline while 10,000 listings were posted: it misses the newest.
        let mut rng = StdRng::seed_from_u64(40);
        let a = random_items(&mut rng, 10_000);
        let mut b = a.clone();
        for _ in 0..10_000 {
            b.push((
                NOW + 31 * 86_400_000 + rng.gen_range(0..3_600_000u64),
                rng.r#gen(),
            ));
        }
        let out = check("10k vs 20k (10k newest missing)", &a, &b);
        assert_eq!(out.need.len(), 10_000);
        assert!(
            out.up + out.down < bound,
            "{} + {} >= {bound}",
            out.up,
            out.down
        );
        // A fresh node (nothing held) against 10,000.
        let (a, b) = pair(41, 0, 0, 10_000);
        let out = check("0 vs 10k", &a, &b);
        assert!(
            out.up + out.down < bound,
            "{} + {} >= {bound}",
            out.up,
            out.down
        );
        // Same with the new items behind a larger shared history of 100,000.
        let mut a = random_items(&mut rng, 100_000);
        a.sort_unstable();
        let mut b = a.clone();
        for _ in 0..10_000 {
            b.push((
                NOW + 31 * 86_400_000 + rng.gen_range(0..3_600_000u64),
                rng.r#gen(),
            ));
        }
        let out = check("100k vs 110k (10k newest missing)", &a, &b);
        assert!(
            out.up + out.down < bound,
            "{} + {} >= {bound}",
            out.up,
            out.down
        );
    }

    #[test]
    fn identical_100k_sets_finish_in_one_round() {
        let mut rng = StdRng::seed_from_u64(50);
        let a = random_items(&mut rng, 100_000);
        let mut b = a.clone();
        b.reverse();
        b.extend_from_slice(&a[..1000]); // duplicates do not count
        let out = check("100k = 100k", &a, &b);
        assert_eq!(out.rounds, 1);
        assert!(out.up + out.down < 600, "{} + {}", out.up, out.down);
        assert!(out.need.is_empty() && out.have.is_empty());
    }

    #[test]
    fn max_timestamp_items_are_not_lost() {
        let a = vec![(u64::MAX, [1; 32]), (5, [2; 32])];
        let b = vec![(u64::MAX, [3; 32]), (u64::MAX - 1, [4; 32])];
        let out = check("u64::MAX timestamps", &a, &b);
        assert_eq!(out.need.len(), 2);
    }

    /// A real first message and reply, for the malformed-input tests.
    fn sample() -> (Vec<Item>, Vec<Item>, Vec<u8>, Vec<u8>) {
        let (a, b) = pair(60, 500, 40, 40);
        let (_, first) = Initiator::new(a.clone()).unwrap();
        let reply = respond(&b, &first).unwrap();
        (a, b, first, reply)
    }

    #[test]
    fn malformed_messages_to_respond_are_errors() {
        let (_, b, first, _) = sample();
        assert!(respond(&b, &[]).is_err());
        assert!(respond(&b, &[0x00]).is_err());
        assert!(respond(&b, &[0xff; 100]).is_err());
        // Mode 7 does not exist.
        assert!(respond(&b, &[0x61, 0x00, 0x00, 0x07]).is_err());
        // An id list claiming 2^34 ids with none following.
        assert!(respond(&b, &[0x61, 0x00, 0x00, 0x02, 0xc0, 0x80, 0x80, 0x80, 0x00]).is_err());
        // A bound with an id longer than 32 bytes.
        let mut long = vec![0x61, 0x05, 0x21];
        long.extend([7; 40]);
        assert!(respond(&b, &long).is_err());
        // Oversize, even if well formed in its prefix.
        let mut big = first.clone();
        big.resize(FRAME_MAX_BYTES + 1, 0);
        assert!(matches!(
            respond(&b, &big),
            Err(ReconcileError::Oversize(n)) if n == FRAME_MAX_BYTES + 1
        ));
        assert!(matches!(
            ItemSet::new(b.clone()).respond(&big),
            Err(ReconcileError::Oversize(_))
        ));
        // Every truncation of a real message: error or a bounded reply, never a panic.
        let mut errors = 0;
        for n in 0..first.len() {
            match respond(&b, &first[..n]) {
                Ok(r) => assert!(r.len() <= FRAME_MAX_BYTES),
                Err(_) => errors += 1,
            }
        }
        assert!(errors > first.len() / 2, "{errors} of {}", first.len());
        // Another protocol version: a one-byte reply that tells the initiator we differ.
        assert_eq!(respond(&b, &[0x62]).unwrap(), vec![0x61]);
    }

    #[test]
    fn malformed_replies_to_step_are_errors() {
        let (a, _, _, reply) = sample();
        let fresh = || Initiator::new(a.clone()).unwrap().0;
        for bad in [
            &[][..],
            &[0x00],
            &[0x62],
            &[0xff; 64],
            &[0x61, 0x00, 0x00, 0x09],
        ] {
            assert!(fresh().step(bad).is_err(), "{bad:?}");
        }
        let mut big = reply.clone();
        big.resize(FRAME_MAX_BYTES + 1, 0);
        assert!(matches!(
            fresh().step(&big),
            Err(ReconcileError::Oversize(_))
        ));
        let mut errors = 0;
        for n in 0..reply.len() {
            let mut init = fresh();
            match init.step(&reply[..n]) {
                Ok(s) => assert!(s.next.as_ref().is_none_or(|m| m.len() <= FRAME_MAX_BYTES)),
                Err(_) => {
                    errors += 1;
                    // The session is over after an error.
                    assert!(matches!(init.step(&reply), Err(ReconcileError::Finished)));
                }
            }
        }
        assert!(errors > 0);
        // The intact reply still works.
        assert!(fresh().step(&reply).is_ok());
    }

    #[test]
    fn a_peer_that_never_agrees_is_cut_off_after_max_rounds() {
        let (a, _) = pair(70, 1000, 0, 0);
        let (mut init, _) = Initiator::new(a).unwrap();
        // Whole range, fingerprint mode, a fingerprint that never matches.
        let mut lie = vec![0x61, 0x00, 0x00, 0x01];
        lie.extend([0xab; 16]);
        let mut rounds = 0;
        let err = loop {
            match init.step(&lie) {
                Ok(s) => {
                    assert!(s.next.is_some());
                    rounds += 1;
                }
                Err(e) => break e,
            }
        };
        assert!(
            matches!(err, ReconcileError::TooManyRounds(MAX_ROUNDS)),
            "{err}"
        );
        assert_eq!(rounds, MAX_ROUNDS - 1);
    }

    #[test]
    fn need_never_contains_our_own_ids() {
        // A lying responder lists our own ids as if they were in another range.
        let a = vec![(10, [1; 32]), (20, [2; 32])];
        let (mut init, _) = Initiator::new(a).unwrap();
        // Range [0, 15) as an id list holding [2; 32] (which we hold at 20), then range
        // [15, ∞) holding [9; 32].
        let mut reply = vec![0x61, 0x10, 0x00, 0x02, 0x01];
        reply.extend([2; 32]);
        reply.extend([0x00, 0x00, 0x02, 0x01]);
        reply.extend([9; 32]);
        let step = init.step(&reply).unwrap();
        assert_eq!(step.need, vec![[9; 32]]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000)) {
            let items: Vec<Item> = (0..300u64).map(|i| (NOW + i * 7, [(i % 251) as u8; 32])).collect();
            if let Ok(r) = respond(&items, &bytes) {
                proptest::prop_assert!(r.len() <= FRAME_MAX_BYTES);
            }
            let (mut init, _) = Initiator::new(items).unwrap();
            if let Ok(s) = init.step(&bytes) {
                proptest::prop_assert!(s.next.is_none_or(|m| m.len() <= FRAME_MAX_BYTES));
            }
        }

        #[test]
        fn mutated_real_messages_never_panic(pos in 0usize..4096, val in proptest::prelude::any::<u8>(), cut in 0usize..4096) {
            let (a, b, first, reply) = sample();
            let mut m = first.clone();
            let i = pos % m.len();
            m[i] = val;
            m.truncate(cut.max(1));
            if let Ok(r) = respond(&b, &m) {
                proptest::prop_assert!(r.len() <= FRAME_MAX_BYTES);
            }
            let mut r = reply.clone();
            let i = pos % r.len();
            r[i] = val;
            r.truncate(cut.max(1));
            let (mut init, _) = Initiator::new(a).unwrap();
            let _ = init.step(&r);
        }

        #[test]
        fn random_small_sets_reconcile_exactly(seed in 0u64..u64::MAX, common in 0usize..300, oa in 0usize..80, ob in 0usize..80) {
            let (a, b) = pair(seed, common, oa, ob);
            let out = sync(&a, &b);
            let (sa, sb) = (ids(&a), ids(&b));
            proptest::prop_assert_eq!(out.need, sb.difference(&sa).copied().collect::<BTreeSet<_>>());
            proptest::prop_assert_eq!(out.have, sa.difference(&sb).copied().collect::<BTreeSet<_>>());
        }
    }

    fn listing(nonce: u8, seq: u64, category: &str) -> Listing {
        Listing {
            nonce: [nonce; 16],
            seq,
            created_at: NOW,
            updated_at: NOW + seq * 1000 + u64::from(nonce),
            expires_at: NOW + 86_400_000,
            status: jangteo_protocol::ListingStatus::Active,
            title: format!("thing {nonce} v{seq}"),
            description: String::new(),
            category: category.into(),
            condition: None,
            price: 15_000,
            currency: "KRW".into(),
            quantity: 1,
            images: vec![],
            location: None,
            moderators: vec![],
        }
    }

    fn put(store: &Store, key: &ed25519_dalek::SigningKey, l: &Listing) -> [u8; 32] {
        let obj =
            jangteo_protocol::SignedObject::sign(jangteo_protocol::Kind::Listing, l.encode(), key);
        assert!(store.put_listing(&obj, l, NOW, false).unwrap().stored());
        obj.id().0
    }

    #[test]
    fn listing_items_are_open_listings_of_the_shard_with_head_ids() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let mut expected = Vec::new();

        // Open, in the shard.
        let l = listing(1, 1, "home");
        expected.push((l.updated_at, put(&store, &key, &l)));
        // Same nonce, other author: another listing.
        let l = listing(1, 1, "garden");
        expected.push((l.updated_at, put(&store, &other, &l)));
        // Updated: only the head (v2) counts.
        let v1 = listing(2, 1, "home");
        let v1_id = put(&store, &key, &v1);
        let v2 = listing(2, 2, "home");
        expected.push((v2.updated_at, put(&store, &key, &v2)));
        // Other category.
        put(&store, &key, &listing(3, 1, "books"));
        // Retracted.
        let mut l = listing(4, 1, "home");
        l.status = jangteo_protocol::ListingStatus::Retracted;
        put(&store, &key, &l);
        // Sold out.
        let mut l = listing(5, 1, "home");
        l.quantity = 0;
        put(&store, &key, &l);
        // Expires before the time we ask about.
        let mut l = listing(6, 1, "home");
        l.expires_at = NOW + 1000;
        put(&store, &key, &l);

        let shard = |l: &Listing| l.category == "home" || l.category == "garden";
        let mut got = listing_items(&store, shard, NOW + 5000).unwrap();
        got.sort_unstable();
        expected.sort_unstable();
        assert_eq!(got, expected);
        assert!(!got.iter().any(|i| i.1 == v1_id));
        // At NOW the short-lived one is still open.
        assert_eq!(listing_items(&store, shard, NOW).unwrap().len(), 4);
        assert_eq!(
            listing_items(&store, |l| l.category == "books", NOW)
                .unwrap()
                .len(),
            1
        );
        // And the items reconcile against another store's items.
        let (mut init, first) = Initiator::new(got.clone()).unwrap();
        let reply = respond(&expected[..1], &first).unwrap();
        let step = init.step(&reply).unwrap();
        assert_eq!(step.have.len(), 2);
        assert!(step.need.is_empty());
    }

    #[test]
    fn attestation_items_are_at_and_object_id() {
        use jangteo_protocol::attestation::{Attestation, Attested};
        use jangteo_protocol::{ObjectId, PublicKey};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(attestation_items(&store).unwrap().is_empty());
        let key = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        let mut expected = Vec::new();
        for i in 0..3u8 {
            let obj = jangteo_protocol::SignedObject::sign(
                jangteo_protocol::Kind::Attestation,
                vec![i],
                &key,
            );
            let at = NOW + u64::from(i);
            let a = Attested {
                attestation: Attestation {
                    chain: vec![],
                    about: PublicKey([2; 32]),
                    role: jangteo_protocol::trade::Role::Buyer,
                    score: 5,
                    comment: String::new(),
                    at,
                },
                trade: ObjectId([i; 32]),
                author: PublicKey([1; 32]),
                buyer: PublicKey([1; 32]),
                seller: PublicKey([2; 32]),
                terms: jangteo_protocol::trade::Terms {
                    listing: jangteo_protocol::ListingId([0; 32]),
                    listing_seq: 1,
                    price: 1,
                    currency: "KRW".into(),
                    quantity: 1,
                },
                completed_at: NOW,
            };
            assert!(store.put_attestation(&obj, &a, false).unwrap());
            expected.push((at, obj.id().0));
        }
        let mut got = attestation_items(&store).unwrap();
        got.sort_unstable();
        assert_eq!(got, expected);
    }

    /// Reconciles with a prepared responder set, nothing else timed; (time, rounds, up, down, need).
    fn timed(
        a: &[Item],
        b: &ItemSet,
        max_rounds: usize,
    ) -> (std::time::Duration, usize, usize, usize, usize) {
        let t = std::time::Instant::now();
        let (mut init, mut msg) = Initiator::with_max_rounds(a.to_vec(), max_rounds).unwrap();
        let mut need = 0;
        loop {
            let s = init.step(&b.respond(&msg).unwrap()).unwrap();
            need += s.need.len();
            match s.next {
                Some(m) => msg = m,
                None => break,
            }
        }
        let (up, down) = init.bytes();
        (t.elapsed(), init.rounds(), up, down, need)
    }

    /// `cargo test --release -p jangteo-node reconcile -- --ignored --nocapture`
    #[test]
    #[ignore = "benchmark; run in release"]
    fn bench_100k_vs_90k() {
        use std::time::Instant;
        let mut rng = StdRng::seed_from_u64(80);
        let b_items = random_items(&mut rng, 100_000);
        // A misses about 10,000 at random.
        let a_items: Vec<Item> = b_items
            .iter()
            .copied()
            .filter(|_| rng.gen_range(0..10) != 0)
            .collect();
        // Correctness of the same runs (untimed: the checks build big sets).
        check_with("bench: 90k vs 100k (random)", &a_items, &b_items, 1000);
        let mut sorted = b_items.clone();
        sorted.sort_unstable();
        check("bench: 90k vs 100k (newest)", &sorted[..90_000], &sorted);

        let t = Instant::now();
        let set = ItemSet::new(b_items.clone());
        let build_b = t.elapsed();
        let t = Instant::now();
        let (init, _) = Initiator::new(a_items.clone()).unwrap();
        let build_a = t.elapsed();
        drop(init);
        println!(
            "build: ItemSet of 100k unsorted {build_b:?}; Initiator::new over 90k unsorted {build_a:?} (includes first message)"
        );
        for (name, a, limit) in [
            ("90k vs 100k, ~10k random missing", &a_items[..], 1000),
            (
                "90k vs 100k, 10k newest missing",
                &sorted[..90_000],
                MAX_ROUNDS,
            ),
            ("100k vs 100k identical", &sorted[..], MAX_ROUNDS),
        ] {
            let (d, rounds, up, down, need) = timed(a, &set, limit);
            println!("{name}: {d:?}, {rounds} rounds, {up} B up, {down} B down, {need} needed");
        }
        // With the default limit the random case stops, having reported what it learned.
        let (mut init, mut msg) = Initiator::new(a_items.clone()).unwrap();
        let mut learned = 0;
        let err = loop {
            match init.step(&set.respond(&msg).unwrap()) {
                Ok(s) => {
                    learned += s.need.len();
                    match s.next {
                        Some(m) => msg = m,
                        None => break None,
                    }
                }
                Err(e) => break Some(e),
            }
        };
        println!("random case with the default limit: {err:?} after learning {learned} needed ids");

        // listing_items over a real store.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        let n = 100_000u32;
        for i in 0..n {
            let mut l = listing(0, 1, if i % 2 == 0 { "home" } else { "books" });
            l.nonce[..4].copy_from_slice(&i.to_be_bytes());
            put(&store, &key, &l);
        }
        let t = Instant::now();
        let items = listing_items(&store, |l| l.category == "home", NOW).unwrap();
        let li = t.elapsed();
        assert_eq!(items.len(), n as usize / 2);
        println!("listing_items over {n} stored listings: {li:?}");
    }
}

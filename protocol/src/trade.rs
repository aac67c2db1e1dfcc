//! The trade protocol: signed messages that form a hash-linked chain per trade, and the
//! pure state machine that decides which message may follow which.
//!
//! A trade starts with an `offer` (by the buyer); its content id is the trade id. Every later
//! message names the trade and the id of the message it follows (`prev`). [`TradeChain`]
//! replays a set of messages deterministically: at each step, among the valid messages that
//! follow the current head, the one with the lowest id wins, so two parties holding the same
//! messages reach the same state whatever order they arrived in. This module does no I/O and
//! knows nothing of delivery or storage.

use std::collections::BTreeMap;

use ciborium::value::Value;

use crate::cbor::{self, Fields, canonical_map, uint};
use crate::envelope::{Kind, SignedObject};
use crate::error::{DecodeError, FieldError, ObjectError};
use crate::ids::{ObjectId, PublicKey};
use crate::limits::{MAX_CLOCK_SKEW_MS, QUANTITY_MAX};
use crate::listing::ListingId;

pub use crate::limits::{
    CHAIN_MAX, COUNTERS_MAX, MAX_EQUIVOCATION_BYTES, MODERATORS_MAX, NOTE_MAX_BYTES,
};

/// The agreed (or proposed) terms of a trade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    /// The listing.
    pub listing: ListingId,
    /// The listing version the buyer saw.
    pub listing_seq: u64,
    /// Price per unit, minor units.
    pub price: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// Units.
    pub quantity: u64,
}

impl Terms {
    /// Total value (price × quantity), saturating.
    pub fn total(&self) -> u64 {
        self.price.saturating_mul(self.quantity)
    }

    fn validate(&self) -> Result<(), FieldError> {
        crate::listing::check_price(self.price, &self.currency)?;
        if self.quantity == 0 || self.quantity > QUANTITY_MAX {
            return Err(FieldError::new(
                "quantity",
                format!("must be 1-{QUANTITY_MAX}"),
            ));
        }
        if self.listing_seq == 0 {
            return Err(FieldError::new("listing_seq", "starts at 1"));
        }
        Ok(())
    }

    fn encode_into(&self, e: &mut Vec<(&'static str, Value)>) {
        e.push(("listing", Value::Bytes(self.listing.0.to_vec())));
        e.push(("lseq", uint(self.listing_seq)));
        e.push(("price", uint(self.price)));
        e.push(("currency", Value::Text(self.currency.clone())));
        e.push(("quantity", uint(self.quantity)));
    }

    fn decode_from(f: &mut Fields) -> Result<Self, DecodeError> {
        Ok(Terms {
            listing: ListingId(bytes32(f.bytes("listing")?, "listing")?),
            listing_seq: f.u64("lseq")?,
            price: f.u64("price")?,
            currency: f.text("currency")?,
            quantity: f.u64("quantity")?,
        })
    }
}

fn bytes32(b: Vec<u8>, field: &'static str) -> Result<[u8; 32], DecodeError> {
    b.try_into().map_err(|_| DecodeError::WrongType {
        field,
        expected: "32 bytes",
    })
}

/// The kinds of trade message (each its own envelope kind, so signatures never cross): the
/// kinds between attestation and equivocation in [`ALL_KINDS`](crate::envelope::ALL_KINDS).
pub const TRADE_KINDS: &[Kind] = crate::envelope::ALL_KINDS.split_at(3).1.split_at(10).0;

/// The body of any trade message. Which fields are present depends on the kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeMessage {
    /// The trade (the offer's id); absent in the offer itself.
    pub trade: Option<ObjectId>,
    /// The message this one follows; absent in the offer.
    pub prev: Option<ObjectId>,
    /// When it was signed (unix ms).
    pub at: u64,
    /// Offer: the seller. Absent otherwise.
    pub seller: Option<PublicKey>,
    /// Offer, counter, accept: the terms proposed or accepted.
    pub terms: Option<Terms>,
    /// Offer: who may resolve a dispute (copied from the listing).
    pub moderators: Vec<PublicKey>,
    /// Free text: offer message, reject/cancel/dispute reason, payment reference, tracking.
    pub note: String,
    /// Shipped: `shipped` or `handed-over`. Resolution: `refund` or `release`.
    pub outcome: Option<String>,
}

impl TradeMessage {
    /// A message with only the chain fields set.
    pub fn follow(trade: ObjectId, prev: ObjectId, at: u64) -> Self {
        Self {
            trade: Some(trade),
            prev: Some(prev),
            at,
            seller: None,
            terms: None,
            moderators: vec![],
            note: String::new(),
            outcome: None,
        }
    }

    /// The deterministic CBOR body.
    pub fn encode(&self) -> Vec<u8> {
        let mut e: Vec<(&'static str, Value)> = vec![("at", uint(self.at))];
        if let Some(t) = self.trade {
            e.push(("trade", Value::Bytes(t.0.to_vec())));
        }
        if let Some(p) = self.prev {
            e.push(("prev", Value::Bytes(p.0.to_vec())));
        }
        if let Some(s) = self.seller {
            e.push(("seller", Value::Bytes(s.0.to_vec())));
        }
        if let Some(t) = &self.terms {
            t.encode_into(&mut e);
        }
        cbor::push_keys(&mut e, "mods", &self.moderators);
        if !self.note.is_empty() {
            e.push(("note", Value::Text(self.note.clone())));
        }
        if let Some(o) = &self.outcome {
            e.push(("outcome", Value::Text(o.clone())));
        }
        cbor::to_vec(&canonical_map(e))
    }

    /// Decodes a body of the given trade kind and checks which fields that kind carries.
    pub fn decode(kind: Kind, body: &[u8]) -> Result<Self, DecodeError> {
        let mut f = Fields::from_value(cbor::from_slice_canonical(body)?)?;
        let has_terms = matches!(kind, Kind::Offer | Kind::Counter | Kind::Accept);
        let m = TradeMessage {
            at: f.u64("at")?,
            trade: f
                .opt_bytes("trade")?
                .map(|b| bytes32(b, "trade").map(ObjectId))
                .transpose()?,
            prev: f
                .opt_bytes("prev")?
                .map(|b| bytes32(b, "prev").map(ObjectId))
                .transpose()?,
            seller: f
                .opt_bytes("seller")?
                .map(|b| bytes32(b, "seller").map(PublicKey))
                .transpose()?,
            terms: if has_terms {
                Some(Terms::decode_from(&mut f)?)
            } else {
                None
            },
            moderators: f.opt_keys("mods", MODERATORS_MAX)?,
            note: f.opt_text("note")?.unwrap_or_default(),
            outcome: f.opt_text("outcome")?,
        };
        f.finish()?;
        Ok(m)
    }

    /// Checks the fields against the kind and the limits (not the transition: see
    /// [`TradeChain`]).
    pub fn validate(&self, kind: Kind, author: &PublicKey, now_ms: u64) -> Result<(), FieldError> {
        if self.at > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
            return Err(FieldError::dated_in_future("at"));
        }
        crate::text::check_free_text("note", &self.note, NOTE_MAX_BYTES, &['\n'])?;
        let is_offer = kind == Kind::Offer;
        if is_offer != self.trade.is_none() || is_offer != self.prev.is_none() {
            return Err(FieldError::new(
                "prev",
                "an offer starts a chain; every other message names its trade and prev",
            ));
        }
        if is_offer != self.seller.is_some() {
            return Err(FieldError::new("seller", "named by the offer only"));
        }
        if self.seller.as_ref() == Some(author) {
            return Err(FieldError::new(
                "seller",
                "a seller cannot make an offer on their own listing",
            ));
        }
        if !is_offer && !self.moderators.is_empty() {
            return Err(FieldError::new("moderators", "named by the offer only"));
        }
        crate::listing::check_moderator_keys(&self.moderators, author)?;
        if let Some(seller) = &self.seller
            && self.moderators.contains(seller)
        {
            return Err(FieldError::new(
                "moderators",
                "a party to the trade cannot moderate it",
            ));
        }
        if let Some(t) = &self.terms {
            t.validate()?;
        }
        match (kind, self.outcome.as_deref()) {
            (Kind::Shipped, Some("shipped" | "handed-over")) => {}
            (Kind::Resolution, Some("refund" | "release")) => {}
            (Kind::Shipped, _) => return Err(FieldError::new("outcome", "shipped or handed-over")),
            (Kind::Resolution, _) => return Err(FieldError::new("outcome", "refund or release")),
            (_, Some(_)) => {
                return Err(FieldError::new(
                    "outcome",
                    "only shipped and resolution carry an outcome",
                ));
            }
            _ => {}
        }
        if matches!(kind, Kind::Dispute | Kind::Reject) && self.note.trim().is_empty() {
            return Err(FieldError::new("reason", "a reason is required"));
        }
        Ok(())
    }
}

/// Where a trade stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TradeState {
    /// The buyer offered.
    Offered,
    /// Someone proposed other terms.
    Countered,
    /// Both signed the same terms: the contract.
    Accepted,
    /// The buyer says they paid.
    Paid,
    /// The seller says they shipped or handed over.
    Shipped,
    /// The buyer received: done.
    Completed,
    /// A proposal was refused.
    Rejected,
    /// Called off before payment.
    Cancelled,
    /// A party raised a dispute.
    Disputed,
    /// A moderator resolved the dispute.
    Resolved,
}

impl TradeState {
    /// Name as the CLI shows it.
    pub fn name(self) -> &'static str {
        match self {
            TradeState::Offered => "offered",
            TradeState::Countered => "countered",
            TradeState::Accepted => "accepted",
            TradeState::Paid => "paid",
            TradeState::Shipped => "shipped",
            TradeState::Completed => "completed",
            TradeState::Rejected => "rejected",
            TradeState::Cancelled => "cancelled",
            TradeState::Disputed => "disputed",
            TradeState::Resolved => "resolved",
        }
    }

    /// No message can follow.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TradeState::Completed
                | TradeState::Rejected
                | TradeState::Cancelled
                | TradeState::Resolved
        )
    }

    /// Whether quantity is reserved for the buyer in this state.
    pub fn reserves(self) -> bool {
        matches!(
            self,
            TradeState::Accepted
                | TradeState::Paid
                | TradeState::Shipped
                | TradeState::Completed
                | TradeState::Disputed
        )
    }
}

/// Who may act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Made the offer.
    Buyer,
    /// Owns the listing.
    Seller,
    /// Named in the offer.
    Moderator,
}

/// Why a message cannot follow the chain's head.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The author is not a party allowed to send this kind now.
    #[error("{kind} may not be sent by the {who} in state {state}; allowed now: {allowed}")]
    NotAllowed {
        /// Message kind.
        kind: &'static str,
        /// Who sent it.
        who: &'static str,
        /// Current state.
        state: &'static str,
        /// What the sender may do now.
        allowed: String,
    },
    /// The author is neither party nor moderator.
    #[error("the author is not a party to this trade")]
    Stranger,
    /// Accept names other terms than those proposed.
    #[error("accept must repeat the proposed terms exactly")]
    TermsMismatch,
    /// The message is for another trade or does not follow the head.
    #[error("message does not follow the current head of this trade")]
    NotNext,
    /// The chain is full.
    #[error("trade chain holds too many messages")]
    TooLong,
}

/// What `who` may send in `state`, given who proposed the current terms.
pub fn allowed(state: TradeState, who: Role, proposer: Role) -> Vec<Kind> {
    use Kind::*;
    use Role::*;
    use TradeState as S;
    match (state, who) {
        (S::Offered | S::Countered, r) if r != Moderator && r != proposer => {
            let mut k = vec![Counter, Accept, Reject];
            if r == Buyer || state == S::Countered {
                k.push(Cancel);
            }
            k
        }
        (S::Offered | S::Countered, Buyer) => vec![Cancel],
        (S::Countered, Seller) => vec![Cancel],
        (S::Accepted, Buyer) => vec![Paid, Cancel],
        (S::Accepted, Seller) => vec![Cancel],
        (S::Paid, Seller) => vec![Shipped, Dispute],
        (S::Paid, Buyer) => vec![Received, Dispute],
        (S::Shipped, Buyer) => vec![Received, Dispute],
        (S::Shipped, Seller) => vec![Dispute],
        (S::Disputed, Moderator) => vec![Resolution],
        _ => vec![],
    }
}

/// Which of two messages by different parties racing for the same place in a chain wins,
/// when neither branch holds a dispute (a branch holding a resolution, then one holding a
/// dispute, wins first; see [`TradeChain::replay`]): progress beats termination (a payment
/// beats a cancellation sent at the same time), so a party cannot undo the other's step by
/// signing a competing message later. Ties go to the lowest id.
pub fn fork_priority(kind: Kind) -> u8 {
    match kind {
        Kind::Resolution => 11,
        Kind::Dispute => 10,
        Kind::Received => 9,
        Kind::Paid => 8,
        Kind::Shipped => 7,
        Kind::Accept => 6,
        Kind::Counter => 5,
        Kind::Reject => 2,
        Kind::Cancel => 1,
        _ => 0,
    }
}

fn next_state(state: TradeState, kind: Kind) -> TradeState {
    match kind {
        Kind::Counter => TradeState::Countered,
        Kind::Accept => TradeState::Accepted,
        Kind::Reject => TradeState::Rejected,
        Kind::Cancel => TradeState::Cancelled,
        Kind::Paid => TradeState::Paid,
        Kind::Shipped => TradeState::Shipped,
        Kind::Received => TradeState::Completed,
        Kind::Dispute => TradeState::Disputed,
        Kind::Resolution => TradeState::Resolved,
        _ => state,
    }
}

/// One message of a chain, verified and decoded.
#[derive(Debug, Clone)]
pub struct ChainMessage {
    /// The signed object.
    pub object: SignedObject,
    /// Its body.
    pub message: TradeMessage,
}

impl ChainMessage {
    /// Decodes and validates a verified object of a trade kind.
    pub fn new(object: SignedObject, now_ms: u64) -> Result<Self, ObjectError> {
        let env = object.envelope();
        if !TRADE_KINDS.contains(&env.kind) {
            return Err(DecodeError::UnknownKind(format!(
                "{} is not a trade message",
                env.kind.name()
            ))
            .into());
        }
        let message = TradeMessage::decode(env.kind, &env.body)?;
        message.validate(env.kind, &env.author, now_ms)?;
        Ok(Self { object, message })
    }

    /// The message kind.
    pub fn kind(&self) -> Kind {
        self.object.envelope().kind
    }

    /// The author.
    pub fn author(&self) -> PublicKey {
        self.object.envelope().author
    }

    /// The content id.
    pub fn id(&self) -> ObjectId {
        self.object.id()
    }
}

/// A trade replayed from its messages.
#[derive(Debug, Clone)]
pub struct TradeChain {
    /// Trade id (the offer's id).
    pub id: ObjectId,
    /// The buyer.
    pub buyer: PublicKey,
    /// The seller.
    pub seller: PublicKey,
    /// Moderators named in the offer.
    pub moderators: Vec<PublicKey>,
    /// Current terms.
    pub terms: Terms,
    /// Who proposed the current terms.
    pub proposer: Role,
    /// Current state.
    pub state: TradeState,
    /// The accepted chain, offer first.
    pub messages: Vec<ChainMessage>,
}

impl TradeChain {
    /// Starts a chain from an offer.
    pub fn start(offer: ChainMessage) -> Result<Self, TransitionError> {
        if offer.kind() != Kind::Offer {
            return Err(TransitionError::NotNext);
        }
        let (Some(seller), Some(terms)) = (offer.message.seller, offer.message.terms.clone())
        else {
            return Err(TransitionError::NotNext);
        };
        Ok(Self {
            id: offer.id(),
            buyer: offer.author(),
            seller,
            moderators: offer.message.moderators.clone(),
            terms,
            proposer: Role::Buyer,
            state: TradeState::Offered,
            messages: vec![offer],
        })
    }

    /// The id of the last message.
    pub fn head(&self) -> ObjectId {
        self.messages.last().map_or(self.id, ChainMessage::id)
    }

    /// The role of a key in this trade.
    pub fn role_of(&self, key: &PublicKey) -> Option<Role> {
        if *key == self.buyer {
            Some(Role::Buyer)
        } else if *key == self.seller {
            Some(Role::Seller)
        } else if self.moderators.contains(key) {
            Some(Role::Moderator)
        } else {
            None
        }
    }

    /// What `key` may send now.
    pub fn allowed_for(&self, key: &PublicKey) -> Vec<Kind> {
        self.role_of(key)
            .map(|r| allowed(self.state, r, self.proposer))
            .unwrap_or_default()
    }

    /// Checks that `m` may follow the head, without applying it.
    pub fn check(&self, m: &ChainMessage) -> Result<(), TransitionError> {
        if m.message.trade != Some(self.id) || m.message.prev != Some(self.head()) {
            return Err(TransitionError::NotNext);
        }
        if self.messages.len() >= CHAIN_MAX
            || (m.kind() == Kind::Counter
                && self
                    .messages
                    .iter()
                    .filter(|c| c.kind() == Kind::Counter)
                    .count()
                    >= COUNTERS_MAX)
        {
            return Err(TransitionError::TooLong);
        }
        let who = self.role_of(&m.author()).ok_or(TransitionError::Stranger)?;
        let may = allowed(self.state, who, self.proposer);
        if !may.contains(&m.kind()) {
            return Err(TransitionError::NotAllowed {
                kind: m.kind().name(),
                who: match who {
                    Role::Buyer => "buyer",
                    Role::Seller => "seller",
                    Role::Moderator => "moderator",
                },
                state: self.state.name(),
                allowed: if may.is_empty() {
                    "nothing".into()
                } else {
                    may.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
                },
            });
        }
        if m.kind() == Kind::Accept {
            let t = m
                .message
                .terms
                .as_ref()
                .ok_or(TransitionError::TermsMismatch)?;
            if *t != self.terms {
                return Err(TransitionError::TermsMismatch);
            }
        }
        if m.kind() == Kind::Counter {
            let t = m
                .message
                .terms
                .as_ref()
                .ok_or(TransitionError::TermsMismatch)?;
            if t.listing != self.terms.listing || t.currency != self.terms.currency {
                return Err(TransitionError::TermsMismatch);
            }
        }
        Ok(())
    }

    /// Applies `m` if it may follow the head.
    pub fn apply(&mut self, m: ChainMessage) -> Result<(), TransitionError> {
        self.check(&m)?;
        if m.kind() == Kind::Counter {
            if let Some(t) = &m.message.terms {
                self.terms = t.clone();
            }
            self.proposer = self.role_of(&m.author()).unwrap_or(Role::Buyer);
        }
        self.state = next_state(self.state, m.kind());
        self.messages.push(m);
        Ok(())
    }

    /// Replays a trade from its offer and the other messages a node holds, in the order it
    /// received them (SPEC §5, "Replay"):
    ///
    /// 1. Two different messages by one author with the same `prev` are an equivocation:
    ///    the one received first stays, the later one is set aside with its descendants, and
    ///    the pair is returned as an [`Equivocation`] proof.
    /// 2. A message whose author also signed a message in the branch of one of its siblings
    ///    (it had seen that branch, so it is no race) is set aside.
    /// 3. Among the remaining followers of the head that the transition table allows, the
    ///    winner is the one whose best branch holds a resolution, then a dispute, then the
    ///    highest [`fork_priority`] of its own kind, then the lowest id.
    ///
    /// Steps 2 and 3 depend only on the set of messages, so two nodes holding the same set
    /// reach the same chain whatever order the messages came in; step 1 depends on the order
    /// only where an author equivocated.
    pub fn replay(
        offer: ChainMessage,
        others: Vec<ChainMessage>,
    ) -> Result<Replay, TransitionError> {
        let chain = Self::start(offer)?;
        let trade = chain.id;
        let mut seen: std::collections::HashSet<ObjectId> = std::collections::HashSet::new();
        seen.insert(trade);
        let mut outside: Vec<(ChainMessage, Outside)> = Vec::new();
        let mut equivocations: Vec<Equivocation> = Vec::new();
        // (prev, author) -> the first message held there.
        let mut first_at: BTreeMap<(ObjectId, PublicKey), ChainMessage> = BTreeMap::new();
        let mut kept: Vec<ChainMessage> = Vec::new();
        for m in others {
            if !seen.insert(m.id()) {
                continue;
            }
            let (Some(t), Some(prev)) = (m.message.trade, m.message.prev) else {
                outside.push((m, Outside::Detached));
                continue;
            };
            if t != trade {
                outside.push((m, Outside::Detached));
                continue;
            }
            if chain.role_of(&m.author()).is_none() {
                outside.push((m, Outside::Stranger));
                continue;
            }
            match first_at.get(&(prev, m.author())) {
                // Two resolutions by one moderator: the lower id stands on every node, so
                // the parties cannot end apart (the pair is still a proof).
                Some(first)
                    if first.kind() == Kind::Resolution
                        && m.kind() == Kind::Resolution
                        && m.id() < first.id() =>
                {
                    let first = first.clone();
                    equivocations.push(Equivocation {
                        first: m.object.clone(),
                        second: first.object.clone(),
                    });
                    first_at.insert((prev, m.author()), m.clone());
                    if let Some(slot) = kept.iter_mut().find(|k| k.id() == first.id()) {
                        *slot = m;
                    }
                    outside.push((first, Outside::Equivocation));
                }
                Some(first) => {
                    equivocations.push(Equivocation {
                        first: first.object.clone(),
                        second: m.object.clone(),
                    });
                    outside.push((m, Outside::Equivocation));
                }
                None => {
                    first_at.insert((prev, m.author()), m.clone());
                    kept.push(m);
                }
            }
        }
        let mut children: BTreeMap<ObjectId, Vec<usize>> = BTreeMap::new();
        for (i, m) in kept.iter().enumerate() {
            if let Some(p) = m.message.prev {
                children.entry(p).or_default().push(i);
            }
        }
        // The authors of every message that validly follows each kept message (itself
        // included), walking the tree from the offer: only messages that are allowed where
        // they stand count as having been signed "after seeing" a branch.
        fn valid_below(
            chain: &TradeChain,
            i: usize,
            kept: &[ChainMessage],
            children: &BTreeMap<ObjectId, Vec<usize>>,
            out: &mut BTreeMap<usize, Vec<PublicKey>>,
        ) -> Vec<PublicKey> {
            let mut next = chain.clone();
            if next.apply(kept[i].clone()).is_err() {
                return Vec::new();
            }
            let mut authors = vec![kept[i].author()];
            for &c in children.get(&kept[i].id()).into_iter().flatten() {
                if next.check(&kept[c]).is_ok() {
                    for a in valid_below(&next, c, kept, children, out) {
                        if !authors.contains(&a) {
                            authors.push(a);
                        }
                    }
                }
            }
            out.insert(i, authors.clone());
            authors
        }
        let mut below: BTreeMap<usize, Vec<PublicKey>> = BTreeMap::new();
        for &c in children.get(&trade).into_iter().flatten() {
            if chain.check(&kept[c]).is_ok() {
                valid_below(&chain, c, &kept, &children, &mut below);
            }
        }
        let mut disqualified = std::collections::HashSet::new();
        for sibs in children.values() {
            for &a in sibs {
                let author = kept[a].author();
                if sibs.iter().any(|&b| {
                    b != a
                        && below
                            .get(&b)
                            .is_some_and(|authors| authors.contains(&author))
                }) {
                    disqualified.insert(a);
                }
            }
        }
        // The best continuation from a chain: (path as indices into kept, holds a
        // resolution, holds a dispute).
        fn best(
            chain: &TradeChain,
            kept: &[ChainMessage],
            children: &BTreeMap<ObjectId, Vec<usize>>,
            disqualified: &std::collections::HashSet<usize>,
        ) -> (Vec<usize>, bool, bool) {
            type Rank = (bool, bool, u8, std::cmp::Reverse<ObjectId>);
            let mut winner: Option<(Rank, Vec<usize>)> = None;
            for &c in children.get(&chain.head()).into_iter().flatten() {
                if disqualified.contains(&c) || chain.check(&kept[c]).is_err() {
                    continue;
                }
                let mut next = chain.clone();
                if next.apply(kept[c].clone()).is_err() {
                    continue;
                }
                let (rest, res, dis) = best(&next, kept, children, disqualified);
                let kind = kept[c].kind();
                let res = res || kind == Kind::Resolution;
                let dis = dis || kind == Kind::Dispute;
                let rank = (
                    res,
                    dis,
                    fork_priority(kind),
                    std::cmp::Reverse(kept[c].id()),
                );
                if winner.as_ref().is_none_or(|(r, _)| rank > *r) {
                    let mut path = vec![c];
                    path.extend(rest);
                    winner = Some((rank, path));
                }
            }
            match winner {
                Some(((res, dis, _, _), path)) => (path, res, dis),
                None => (Vec::new(), false, false),
            }
        }
        let (path, _, _) = best(&chain, &kept, &children, &disqualified);
        let mut chain = chain;
        let mut in_chain = std::collections::HashSet::new();
        for i in path {
            in_chain.insert(i);
            chain.apply(kept[i].clone())?;
        }
        let held: std::collections::HashSet<ObjectId> =
            chain.messages.iter().map(ChainMessage::id).collect();
        let all_ids: std::collections::HashSet<ObjectId> =
            kept.iter().map(ChainMessage::id).chain([trade]).collect();
        for (i, m) in kept.into_iter().enumerate() {
            if in_chain.contains(&i) {
                continue;
            }
            let why = if disqualified.contains(&i) {
                Outside::SeenBranch
            } else if m.message.prev.is_some_and(|p| !all_ids.contains(&p)) {
                Outside::Detached
            } else if m.message.prev == Some(chain.head()) {
                Outside::Invalid(chain.check(&m).err().unwrap_or(TransitionError::NotNext))
            } else if m.message.prev.is_some_and(|p| held.contains(&p)) {
                Outside::LostRace
            } else {
                Outside::OffChain
            };
            outside.push((m, why));
        }
        Ok(Replay {
            chain,
            outside,
            equivocations,
        })
    }
}

/// Why a message a node holds (or was sent) is not part of the trade's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outside {
    /// Its `prev` is not held: it waits for its predecessor.
    Detached,
    /// Its author had already signed another message after the same `prev`.
    Equivocation,
    /// Its author had signed a message in a competing branch: it forks what it had seen.
    SeenBranch,
    /// It follows a message of the chain but another party's message won the race there.
    LostRace,
    /// It follows a message that is not part of the chain.
    OffChain,
    /// It follows the head, but the transition table does not allow it.
    Invalid(TransitionError),
    /// Its author is not a party to the trade.
    Stranger,
}

impl Outside {
    /// Whether sending it is an offense of its author (a signed lie), not bad luck.
    pub fn is_offense(&self) -> bool {
        matches!(
            self,
            Outside::Equivocation | Outside::SeenBranch | Outside::Invalid(_) | Outside::Stranger
        )
    }

    /// A reason a person can read.
    pub fn reason(&self) -> String {
        match self {
            Outside::Detached => "its predecessor is not held here".into(),
            Outside::Equivocation => {
                "equivocation: its author already signed another message at this point of the trade"
                    .into()
            }
            Outside::SeenBranch => {
                "its author had already built on a competing message: not a race".into()
            }
            Outside::LostRace => {
                "superseded: the other party's message took its place first".into()
            }
            Outside::OffChain => "it follows a message that is not part of the trade".into(),
            Outside::Invalid(e) => e.to_string(),
            Outside::Stranger => "its author is not a party to this trade".into(),
        }
    }
}

/// A trade as replayed from what a node holds.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The chain.
    pub chain: TradeChain,
    /// Messages held that are not part of it, with why.
    pub outside: Vec<(ChainMessage, Outside)>,
    /// Proofs that an author signed two messages at the same point.
    pub equivocations: Vec<Equivocation>,
}

/// Two different trade messages by one author with the same `prev` in the same trade: a
/// proof anyone can check with [`Equivocation::check`].
#[derive(Debug, Clone)]
pub struct Equivocation {
    /// The message held first.
    pub first: SignedObject,
    /// The competing one.
    pub second: SignedObject,
}

/// What a checked equivocation proof says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EquivocationFacts {
    /// Who signed both.
    pub author: PublicKey,
    /// The trade.
    pub trade: ObjectId,
    /// The message both follow.
    pub prev: ObjectId,
    /// The later `at` of the two.
    pub at: u64,
}

impl Equivocation {
    /// The body of an `equivocation` object: `{"a": envelope, "b": envelope}` with the two
    /// envelopes in bytewise order, so a pair has one encoding.
    pub fn encode(&self) -> Vec<u8> {
        let (a, b) = self.ordered();
        cbor::to_vec(&canonical_map(vec![
            ("a", Value::Bytes(a.bytes().to_vec())),
            ("b", Value::Bytes(b.bytes().to_vec())),
        ]))
    }

    fn ordered(&self) -> (&SignedObject, &SignedObject) {
        if self.first.bytes() <= self.second.bytes() {
            (&self.first, &self.second)
        } else {
            (&self.second, &self.first)
        }
    }

    /// Decodes a body and verifies both embedded signatures (not the checks of
    /// [`check`](Self::check)).
    pub fn decode(body: &[u8]) -> Result<Self, ObjectError> {
        let mut f = Fields::from_value(cbor::from_slice_canonical(body)?)?;
        let a = f.bytes("a")?;
        let b = f.bytes("b")?;
        f.finish()?;
        if a >= b {
            return Err(
                FieldError::new("a", "the two envelopes in bytewise order, different").into(),
            );
        }
        Ok(Self {
            first: SignedObject::decode_and_verify(&a)?,
            second: SignedObject::decode_and_verify(&b)?,
        })
    }

    /// Checks the proof: both are valid trade messages (signatures verified on decode) of
    /// the same trade, by the same author, following the same `prev`, and different.
    pub fn check(&self, now_ms: u64) -> Result<EquivocationFacts, ObjectError> {
        let a = ChainMessage::new(self.first.clone(), now_ms)?;
        let b = ChainMessage::new(self.second.clone(), now_ms)?;
        let bad =
            |why: &str| -> ObjectError { FieldError::new("equivocation", why.to_string()).into() };
        if a.id() == b.id() {
            return Err(bad("the two messages are the same"));
        }
        if a.author() != b.author() {
            return Err(bad("the two messages have different authors"));
        }
        let (Some(ta), Some(pa)) = (a.message.trade, a.message.prev) else {
            return Err(bad("an offer cannot equivocate"));
        };
        if b.message.trade != Some(ta) || b.message.prev != Some(pa) {
            return Err(bad(
                "the two messages do not follow the same message of one trade",
            ));
        }
        Ok(EquivocationFacts {
            author: a.author(),
            trade: ta,
            prev: pa,
            at: a.message.at.max(b.message.at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    const T: u64 = 1_767_225_600_000;

    fn k(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }
    fn pk(n: u8) -> PublicKey {
        PublicKey(k(n).verifying_key().to_bytes())
    }
    const BUYER: u8 = 1;
    const SELLER: u8 = 2;
    const MODERATOR: u8 = 3;
    const STRANGER: u8 = 4;

    fn terms(price: u64) -> Terms {
        Terms {
            listing: ListingId([9; 32]),
            listing_seq: 1,
            price,
            currency: "KRW".into(),
            quantity: 1,
        }
    }

    fn offer() -> ChainMessage {
        let m = TradeMessage {
            trade: None,
            prev: None,
            at: T,
            seller: Some(pk(SELLER)),
            terms: Some(terms(100_000)),
            moderators: vec![pk(MODERATOR)],
            note: "can pick up Saturday".into(),
            outcome: None,
        };
        ChainMessage::new(SignedObject::sign(Kind::Offer, m.encode(), &k(BUYER)), T)
            .expect("valid offer")
    }

    fn msg(chain_id: ObjectId, prev: ObjectId, kind: Kind, by: u8, at: u64) -> ChainMessage {
        let mut m = TradeMessage::follow(chain_id, prev, T + at);
        match kind {
            Kind::Counter => m.terms = Some(terms(90_000)),
            Kind::Accept => m.terms = Some(terms(100_000)),
            Kind::Shipped => m.outcome = Some("handed-over".into()),
            Kind::Resolution => m.outcome = Some("refund".into()),
            Kind::Dispute | Kind::Reject => m.note = "not as described".into(),
            _ => {}
        }
        ChainMessage::new(SignedObject::sign(kind, m.encode(), &k(by)), T + 1_000_000)
            .expect("valid message")
    }

    fn step(c: &mut TradeChain, kind: Kind, by: u8) -> Result<(), TransitionError> {
        let m = msg(c.id, c.head(), kind, by, c.messages.len() as u64);
        c.apply(m)
    }

    #[test]
    fn an_offer_names_neither_party_nor_a_moderator_twice_as_moderator() {
        let mk = |mods: Vec<PublicKey>| TradeMessage {
            trade: None,
            prev: None,
            at: T,
            seller: Some(pk(SELLER)),
            terms: Some(terms(100_000)),
            moderators: mods,
            note: String::new(),
            outcome: None,
        };
        let check = |m: TradeMessage| m.validate(Kind::Offer, &pk(BUYER), T);
        check(mk(vec![pk(MODERATOR)])).expect("a third party moderates");
        for (mods, field) in [
            (vec![pk(BUYER)], "moderator"),
            (vec![pk(SELLER)], "moderators"),
            (vec![pk(MODERATOR), pk(MODERATOR)], "moderator"),
        ] {
            assert_eq!(check(mk(mods)).expect_err("refused").field, field);
        }
        // A blank reason does not count as one; a bidirectional override is refused.
        let mut reject = TradeMessage::follow(ObjectId([1; 32]), ObjectId([1; 32]), T);
        reject.note = "\u{3000} ".into();
        assert_eq!(
            reject
                .validate(Kind::Reject, &pk(SELLER), T)
                .expect_err("blank")
                .field,
            "reason"
        );
        reject.note = "\u{202E}reason".into();
        assert_eq!(
            reject
                .validate(Kind::Reject, &pk(SELLER), T)
                .expect_err("bidi")
                .field,
            "note"
        );
    }

    #[test]
    fn a_whole_trade_with_a_meetup() {
        let mut c = TradeChain::start(offer()).expect("start");
        step(&mut c, Kind::Accept, SELLER).expect("accept");
        assert_eq!(c.state, TradeState::Accepted);
        step(&mut c, Kind::Paid, BUYER).expect("paid");
        step(&mut c, Kind::Shipped, SELLER).expect("handed over");
        step(&mut c, Kind::Received, BUYER).expect("received");
        assert_eq!(c.state, TradeState::Completed);
        assert!(c.allowed_for(&pk(BUYER)).is_empty());
        assert!(step(&mut c, Kind::Dispute, BUYER).is_err());
    }

    #[test]
    fn counter_then_the_other_side_accepts_the_new_terms() {
        let mut c = TradeChain::start(offer()).expect("start");
        step(&mut c, Kind::Counter, SELLER).expect("counter");
        assert_eq!(
            (c.state, c.terms.price, c.proposer),
            (TradeState::Countered, 90_000, Role::Seller)
        );
        // The seller cannot accept their own counter; the buyer must, with the new terms.
        assert!(matches!(
            step(&mut c, Kind::Accept, SELLER),
            Err(TransitionError::NotAllowed { .. })
        ));
        let stale = msg(c.id, c.head(), Kind::Accept, BUYER, 9); // repeats the old price
        assert_eq!(c.apply(stale), Err(TransitionError::TermsMismatch));
        let mut m = TradeMessage::follow(c.id, c.head(), T + 10);
        m.terms = Some(terms(90_000));
        let ok = ChainMessage::new(
            SignedObject::sign(Kind::Accept, m.encode(), &k(BUYER)),
            T + 1_000_000,
        )
        .expect("valid");
        c.apply(ok).expect("accept counter");
        assert_eq!((c.state, c.terms.price), (TradeState::Accepted, 90_000));
    }

    #[test]
    fn wrong_party_stranger_and_out_of_order_are_refused() {
        let mut c = TradeChain::start(offer()).expect("start");
        let e = step(&mut c, Kind::Paid, BUYER).expect_err("paid before accept");
        assert!(e.to_string().contains("allowed now: cancel"), "{e}");
        assert_eq!(
            step(&mut c, Kind::Accept, STRANGER),
            Err(TransitionError::Stranger)
        );
        assert!(matches!(
            step(&mut c, Kind::Accept, BUYER),
            Err(TransitionError::NotAllowed { .. })
        ));
        let wrong_prev = msg(c.id, ObjectId([0; 32]), Kind::Accept, SELLER, 1);
        assert_eq!(c.apply(wrong_prev), Err(TransitionError::NotNext));
        assert_eq!(c.state, TradeState::Offered);
        assert_eq!(c.messages.len(), 1);
    }

    #[test]
    fn disputes_are_closed_by_a_named_moderator_only() {
        let mut c = TradeChain::start(offer()).expect("start");
        step(&mut c, Kind::Accept, SELLER).expect("accept");
        step(&mut c, Kind::Paid, BUYER).expect("paid");
        step(&mut c, Kind::Dispute, BUYER).expect("dispute");
        assert_eq!(
            step(&mut c, Kind::Resolution, STRANGER),
            Err(TransitionError::Stranger)
        );
        assert!(step(&mut c, Kind::Resolution, SELLER).is_err());
        step(&mut c, Kind::Resolution, MODERATOR).expect("resolution");
        assert_eq!(c.state, TradeState::Resolved);
    }

    #[test]
    fn fields_are_checked_per_kind() {
        let mut m = TradeMessage::follow(ObjectId([1; 32]), ObjectId([2; 32]), T);
        assert_eq!(
            m.validate(Kind::Dispute, &pk(BUYER), T)
                .expect_err("no reason")
                .field,
            "reason"
        );
        assert_eq!(
            m.validate(Kind::Shipped, &pk(SELLER), T)
                .expect_err("no outcome")
                .field,
            "outcome"
        );
        m.note = "x".repeat(NOTE_MAX_BYTES + 1);
        assert_eq!(
            m.validate(Kind::Paid, &pk(BUYER), T)
                .expect_err("long")
                .field,
            "note"
        );
        let own = TradeMessage {
            trade: None,
            prev: None,
            at: T,
            seller: Some(pk(BUYER)),
            terms: Some(terms(1)),
            moderators: vec![],
            note: String::new(),
            outcome: None,
        };
        assert_eq!(
            own.validate(Kind::Offer, &pk(BUYER), T)
                .expect_err("own listing")
                .field,
            "seller"
        );
        let zero = TradeMessage {
            terms: Some(Terms {
                quantity: 0,
                ..terms(1)
            }),
            seller: Some(pk(SELLER)),
            ..own
        };
        assert_eq!(
            zero.validate(Kind::Offer, &pk(BUYER), T)
                .expect_err("zero")
                .field,
            "quantity"
        );
    }

    /// Every (state, role, kind) outside the table is refused; everything inside it is taken.
    #[test]
    fn the_transition_table_is_complete() {
        let roles = [
            (BUYER, Role::Buyer),
            (SELLER, Role::Seller),
            (MODERATOR, Role::Moderator),
        ];
        // Reach each state by a known path, then try every kind from every role.
        let paths: Vec<(TradeState, Vec<(Kind, u8)>)> = vec![
            (TradeState::Offered, vec![]),
            (TradeState::Countered, vec![(Kind::Counter, SELLER)]),
            (TradeState::Accepted, vec![(Kind::Accept, SELLER)]),
            (
                TradeState::Paid,
                vec![(Kind::Accept, SELLER), (Kind::Paid, BUYER)],
            ),
            (
                TradeState::Shipped,
                vec![
                    (Kind::Accept, SELLER),
                    (Kind::Paid, BUYER),
                    (Kind::Shipped, SELLER),
                ],
            ),
            (
                TradeState::Disputed,
                vec![
                    (Kind::Accept, SELLER),
                    (Kind::Paid, BUYER),
                    (Kind::Dispute, SELLER),
                ],
            ),
            (
                TradeState::Completed,
                vec![
                    (Kind::Accept, SELLER),
                    (Kind::Paid, BUYER),
                    (Kind::Received, BUYER),
                ],
            ),
            (TradeState::Rejected, vec![(Kind::Reject, SELLER)]),
            (TradeState::Cancelled, vec![(Kind::Cancel, BUYER)]),
        ];
        for (state, path) in paths {
            let mut base = TradeChain::start(offer()).expect("start");
            for (kind, by) in path {
                step(&mut base, kind, by).expect("path");
            }
            assert_eq!(base.state, state);
            for (who, role) in roles {
                for kind in TRADE_KINDS.iter().copied().filter(|k| *k != Kind::Offer) {
                    let mut c = base.clone();
                    let mut m = TradeMessage::follow(c.id, c.head(), T + 99);
                    m.terms = matches!(kind, Kind::Counter | Kind::Accept).then(|| c.terms.clone());
                    m.outcome = match kind {
                        Kind::Shipped => Some("shipped".into()),
                        Kind::Resolution => Some("release".into()),
                        _ => None,
                    };
                    m.note = "reason".into();
                    let cm = ChainMessage::new(
                        SignedObject::sign(kind, m.encode(), &k(who)),
                        T + 1_000_000,
                    )
                    .expect("valid");
                    let expected = allowed(state, role, c.proposer).contains(&kind);
                    assert_eq!(c.apply(cm).is_ok(), expected, "{state:?} {role:?} {kind:?}");
                }
            }
        }
    }

    #[test]
    fn a_late_competing_cancel_cannot_undo_a_payment() {
        let o = offer();
        let mut c = TradeChain::start(o.clone()).expect("start");
        step(&mut c, Kind::Accept, SELLER).expect("accept");
        let accept_id = c.head();
        step(&mut c, Kind::Paid, BUYER).expect("paid");
        // The seller signs cancels that compete with the payment, whatever their ids.
        let mut all: Vec<ChainMessage> = c.messages[1..].to_vec();
        for n in 0..8 {
            all.push(msg(c.id, accept_id, Kind::Cancel, SELLER, 100 + n));
        }
        let r = TradeChain::replay(o, all).expect("replay");
        assert_eq!(r.chain.state, TradeState::Paid);
        assert_eq!(r.outside.len(), 8);
    }

    fn replay(items: &[&ChainMessage]) -> Replay {
        TradeChain::replay(offer(), items.iter().map(|m| (*m).clone()).collect()).expect("replay")
    }

    /// The rewrite reproduced against the old rule: after offer, accept, paid the seller signs
    /// a second accept of the offer and a cancel on top. Whatever ids the forgery has, it is
    /// refused as equivocation, the buyer's payment stays, and the pair is a checkable proof.
    #[test]
    fn a_second_accept_by_the_seller_is_equivocation_not_a_rewrite() {
        let o = offer();
        let a1 = msg(o.id(), o.id(), Kind::Accept, SELLER, 1);
        let paid = msg(o.id(), a1.id(), Kind::Paid, BUYER, 2);
        for n in 0..16 {
            let a2 = msg(o.id(), o.id(), Kind::Accept, SELLER, 100 + n);
            let cancel = msg(o.id(), a2.id(), Kind::Cancel, SELLER, 200 + n);
            let r = replay(&[&a1, &paid, &a2, &cancel]);
            assert_eq!(r.chain.state, TradeState::Paid);
            assert_eq!(r.chain.head(), paid.id());
            assert_eq!(r.equivocations.len(), 1);
            let facts = r.equivocations[0]
                .check(T + 1_000_000)
                .expect("valid proof");
            assert_eq!(
                (facts.author, facts.trade, facts.prev),
                (pk(SELLER), o.id(), o.id())
            );
            // The proof survives its own encoding, and anyone can check it.
            let back = Equivocation::decode(&r.equivocations[0].encode()).expect("decode");
            assert_eq!(back.check(T + 1_000_000).expect("check"), facts);
            assert!(
                r.outside
                    .iter()
                    .any(|(m, w)| m.id() == a2.id() && *w == Outside::Equivocation)
            );
            assert!(r.outside.iter().any(|(m, _)| m.id() == cancel.id()));
        }
    }

    #[test]
    fn a_proof_of_two_messages_by_different_authors_or_points_is_refused() {
        let o = offer();
        let a1 = msg(o.id(), o.id(), Kind::Accept, SELLER, 1);
        let c = msg(o.id(), o.id(), Kind::Cancel, BUYER, 1);
        let p = msg(o.id(), a1.id(), Kind::Paid, BUYER, 2);
        for (x, y) in [(&a1, &c), (&c, &p), (&a1, &a1)] {
            let e = Equivocation {
                first: x.object.clone(),
                second: y.object.clone(),
            };
            assert!(e.check(T + 1_000_000).is_err());
        }
        let e = Equivocation {
            first: o.object.clone(),
            second: offer().object.clone(),
        };
        assert!(e.check(T + 1_000_000).is_err(), "an offer has no prev");
    }

    /// A dispute (and the resolution on it) can never be erased by a shipped or received that
    /// arrives later, whatever its id.
    #[test]
    fn a_late_shipped_does_not_erase_a_dispute_or_its_resolution() {
        let o = offer();
        let a = msg(o.id(), o.id(), Kind::Accept, SELLER, 1);
        let paid = msg(o.id(), a.id(), Kind::Paid, BUYER, 2);
        let dispute = msg(o.id(), paid.id(), Kind::Dispute, BUYER, 3);
        let resolution = msg(o.id(), dispute.id(), Kind::Resolution, MODERATOR, 4);
        for n in 0..16 {
            let shipped = msg(o.id(), paid.id(), Kind::Shipped, SELLER, 10 + n);
            let r = replay(&[&a, &paid, &dispute, &shipped]);
            assert_eq!(r.chain.state, TradeState::Disputed);
            let r = replay(&[&a, &paid, &dispute, &resolution, &shipped]);
            assert_eq!(r.chain.state, TradeState::Resolved);
            // Even a shipped with a dispute of the seller's on top does not beat a resolution.
            let sd = msg(o.id(), shipped.id(), Kind::Dispute, SELLER, 30 + n);
            let r = replay(&[&shipped, &sd, &a, &paid, &dispute, &resolution]);
            assert_eq!(r.chain.state, TradeState::Resolved);
        }
    }

    #[test]
    fn a_haggle_is_capped_so_the_trade_can_always_finish() {
        let mut c = TradeChain::start(offer()).expect("start");
        for n in 0..COUNTERS_MAX {
            let by = if n.is_multiple_of(2) { SELLER } else { BUYER };
            step(&mut c, Kind::Counter, by).expect("counter within the cap");
        }
        let by = if COUNTERS_MAX.is_multiple_of(2) {
            SELLER
        } else {
            BUYER
        };
        assert_eq!(
            step(&mut c, Kind::Counter, by),
            Err(TransitionError::TooLong)
        );
        // Accepting the last proposal is still possible, by the side whose turn it is.
        let mut m = TradeMessage::follow(c.id, c.head(), T + 500);
        m.terms = Some(c.terms.clone());
        let accept = ChainMessage::new(
            SignedObject::sign(Kind::Accept, m.encode(), &k(by)),
            T + 1_000_000,
        )
        .expect("valid");
        c.apply(accept).expect("accept after the last counter");
    }

    /// A liar who does not mind being proven: junk from a fresh key after the offer, and a
    /// pair of the seller's own on top of it, must not disqualify the seller's accept and so
    /// erase the buyer's payment and dispute.
    #[test]
    fn junk_and_self_incrimination_cannot_erase_the_other_sides_messages() {
        let o = offer();
        let a = msg(o.id(), o.id(), Kind::Accept, SELLER, 1);
        let paid = msg(o.id(), a.id(), Kind::Paid, BUYER, 2);
        let dispute = msg(o.id(), paid.id(), Kind::Dispute, BUYER, 3);
        let z1 = msg(o.id(), o.id(), Kind::Cancel, STRANGER, 4);
        let z2 = msg(o.id(), o.id(), Kind::Counter, STRANGER, 5);
        let s1 = msg(o.id(), z2.id(), Kind::Cancel, SELLER, 6);
        let s2 = msg(o.id(), z2.id(), Kind::Reject, SELLER, 7);
        // An invalid message of the seller's under a final cancel by the buyer.
        let c = msg(o.id(), o.id(), Kind::Cancel, BUYER, 8);
        let s3 = msg(o.id(), c.id(), Kind::Paid, SELLER, 9);
        for order in [
            vec![&a, &paid, &dispute, &z1, &z2, &s1, &s2, &c, &s3],
            vec![&z2, &s2, &a, &paid, &dispute, &s3, &c, &s1, &z1],
            vec![&s3, &c, &z2, &s2, &a, &paid, &dispute],
        ] {
            let r = replay(&order);
            assert_eq!(r.chain.state, TradeState::Disputed, "{order:?}");
            assert_eq!(r.chain.head(), dispute.id());
        }
    }

    /// A moderator who signs both outcomes cannot leave the parties apart: the lower id
    /// stands wherever the two arrive first.
    #[test]
    fn a_moderator_who_resolves_twice_leaves_both_parties_on_the_same_outcome() {
        let o = offer();
        let a = msg(o.id(), o.id(), Kind::Accept, SELLER, 1);
        let paid = msg(o.id(), a.id(), Kind::Paid, BUYER, 2);
        let dispute = msg(o.id(), paid.id(), Kind::Dispute, BUYER, 3);
        let refund = msg(o.id(), dispute.id(), Kind::Resolution, MODERATOR, 4);
        let mut m = TradeMessage::follow(o.id(), dispute.id(), T + 5);
        m.outcome = Some("release".into());
        let release = ChainMessage::new(
            SignedObject::sign(Kind::Resolution, m.encode(), &k(MODERATOR)),
            T + 1_000_000,
        )
        .expect("valid");
        let at_buyer = replay(&[&a, &paid, &dispute, &refund, &release]);
        let at_seller = replay(&[&a, &paid, &dispute, &release, &refund]);
        assert_eq!(at_buyer.chain.head(), at_seller.chain.head());
        assert_eq!(at_buyer.chain.head(), refund.id().min(release.id()));
        assert_eq!(at_buyer.equivocations.len(), 1);
        assert_eq!(at_seller.equivocations.len(), 1);
    }

    /// The seller cancels after having seen (and built on) the buyer's payment branch: that
    /// is no race, and the cancel is refused.
    #[test]
    fn a_fork_by_a_party_that_had_built_on_the_other_branch_is_refused() {
        let o = offer();
        let c = msg(o.id(), o.id(), Kind::Counter, SELLER, 1);
        let accept = {
            let mut m = TradeMessage::follow(o.id(), c.id(), T + 2);
            m.terms = Some(terms(90_000));
            ChainMessage::new(
                SignedObject::sign(Kind::Accept, m.encode(), &k(BUYER)),
                T + 1_000_000,
            )
            .expect("valid")
        };
        let paid = msg(o.id(), accept.id(), Kind::Paid, BUYER, 3);
        // The buyer (who accepted the counter) now signs a cancel right after the offer.
        let late = msg(o.id(), o.id(), Kind::Cancel, BUYER, 9);
        let r = replay(&[&c, &accept, &paid, &late]);
        assert_eq!(r.chain.state, TradeState::Paid);
        assert!(
            r.outside
                .iter()
                .any(|(m, w)| m.id() == late.id() && *w == Outside::SeenBranch)
        );
    }

    /// A simulated run of honest parties who each act on their own view while messages are
    /// in flight: every state they can reach, and at the end, when both hold everything,
    /// they agree on the chain, and no honest party ever equivocated.
    fn simulate(choices: &[u8]) -> (Vec<ObjectId>, TradeState) {
        let o = offer();
        let parties = [BUYER, SELLER, MODERATOR];
        let mut held: Vec<Vec<ChainMessage>> = vec![vec![], vec![], vec![]];
        let mut inflight: Vec<(usize, ChainMessage)> = Vec::new();
        let mut at = 10;
        for c in choices.chunks(2) {
            let (what, pick) = (c[0], *c.get(1).unwrap_or(&0));
            if what % 3 == 0 && !inflight.is_empty() {
                let (to, m) = inflight.remove(usize::from(pick) % inflight.len());
                if !held[to].iter().any(|h| h.id() == m.id()) {
                    held[to].push(m);
                }
                continue;
            }
            let p = usize::from(what) % 3;
            let view = TradeChain::replay(o.clone(), held[p].clone())
                .expect("replay")
                .chain;
            let head = view.head();
            // An honest party never signs twice after the same message.
            if held[p]
                .iter()
                .any(|m| m.author() == pk(parties[p]) && m.message.prev == Some(head))
            {
                continue;
            }
            let may = view.allowed_for(&pk(parties[p]));
            if may.is_empty() {
                continue;
            }
            let kind = may[usize::from(pick) % may.len()];
            at += 1;
            let mut m = TradeMessage::follow(o.id(), head, T + at);
            match kind {
                Kind::Counter => m.terms = Some(terms(90_000 - at)),
                Kind::Accept => m.terms = Some(view.terms.clone()),
                Kind::Shipped => m.outcome = Some("shipped".into()),
                Kind::Resolution => m.outcome = Some("refund".into()),
                Kind::Dispute | Kind::Reject => m.note = "why".into(),
                _ => {}
            }
            let cm = ChainMessage::new(
                SignedObject::sign(kind, m.encode(), &k(parties[p])),
                T + 1_000_000,
            )
            .expect("valid");
            held[p].push(cm.clone());
            for q in 0..3 {
                if q != p {
                    inflight.push((q, cm.clone()));
                }
            }
        }
        for (to, m) in inflight {
            if !held[to].iter().any(|h| h.id() == m.id()) {
                held[to].push(m);
            }
        }
        let views: Vec<Replay> = held
            .iter()
            .map(|h| TradeChain::replay(o.clone(), h.clone()).expect("replay"))
            .collect();
        for v in &views {
            assert!(v.equivocations.is_empty(), "an honest party equivocated");
            assert_eq!(v.chain.head(), views[0].chain.head(), "views differ");
            assert_eq!(v.chain.state, views[0].chain.state);
        }
        (
            views[0]
                .chain
                .messages
                .iter()
                .map(ChainMessage::id)
                .collect(),
            views[0].chain.state,
        )
    }

    #[test]
    fn a_buyer_cancel_racing_the_seller_accept_resolves_the_same_on_both_sides() {
        let o = offer();
        let accept = msg(o.id(), o.id(), Kind::Accept, SELLER, 1);
        let cancel = msg(o.id(), o.id(), Kind::Cancel, BUYER, 1);
        // The buyer held its cancel first, the seller its accept first.
        let at_buyer = replay(&[&cancel, &accept]);
        let at_seller = replay(&[&accept, &cancel]);
        assert_eq!(at_buyer.chain.head(), at_seller.chain.head());
        assert_eq!(at_buyer.chain.state, TradeState::Accepted);
        assert!(at_buyer.equivocations.is_empty());
        assert!(
            at_buyer
                .outside
                .iter()
                .any(|(m, w)| m.id() == cancel.id() && *w == Outside::LostRace)
        );
        // The buyer can still call it off after the accept.
        assert!(
            at_buyer
                .chain
                .allowed_for(&pk(BUYER))
                .contains(&Kind::Cancel)
        );
    }

    proptest! {
        /// Any delivery order (and duplicates) of the same messages gives the same chain.
        #[test]
        fn replay_is_order_independent(seed in any::<u64>(), shuffle in any::<[u8; 16]>()) {
            // Build a chain plus a competing fork (a cancel racing the accept).
            let o = offer();
            let mut c = TradeChain::start(o.clone()).expect("start");
            let fork = msg(c.id, c.head(), Kind::Cancel, BUYER, seed % 1000);
            step(&mut c, Kind::Accept, SELLER).expect("accept");
            step(&mut c, Kind::Paid, BUYER).expect("paid");
            let mut all: Vec<ChainMessage> = c.messages[1..].to_vec();
            all.push(fork);
            let reference = TradeChain::replay(o.clone(), all.clone()).expect("replay").chain;
            let mut shuffled = all.clone();
            for (i, s) in shuffle.iter().enumerate() {
                let n = shuffled.len();
                shuffled.swap(i % n, usize::from(*s) % n);
            }
            shuffled.push(shuffled[0].clone());
            let again = TradeChain::replay(o, shuffled).expect("replay").chain;
            prop_assert_eq!(again.state, reference.state);
            prop_assert_eq!(again.head(), reference.head());
        }

        /// Honest parties acting on their own views with messages in flight, in any order of
        /// delivery, end on the same chain once each holds everything.
        #[test]
        fn honest_parties_converge_whatever_the_delivery_order(choices in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = simulate(&choices);
        }
    }
}

//! The trades service: this node's side of the signed offer protocol.
//!
//! It owns building and signing this node's trade messages, receiving the counterparty's,
//! replaying each trade with the protocol's pure state machine (append-only chains,
//! equivocation proofs), the inventory rules (accepting reserves quantity by publishing the
//! listing's next version; the last unit taken rejects the other open offers), and the
//! delivery of every message with a visible status (queued, delivered, failed with a
//! reason), retried with backoff for a bounded time.
//!
//! Every trade step is one synced store batch ([`TradeStep`]): the messages, their delivery
//! records, the reservation, the listing's next version and any equivocation proof. What a
//! step makes this node do next is recomputed from the store by [`Trades::settle`], at start
//! and after each step, so a crash between two steps loses nothing. Strangers are bounded:
//! an offer is taken only for an open listing of ours within per-listing and per-buyer caps,
//! and a moderator takes a dispute only for a listing it holds that names it, within caps.
//! It talks to the swarm only through the network [`Client`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use jangteo_protocol::trade::{
    CHAIN_MAX, ChainMessage, Outside, Replay, Role, Terms, TradeChain, TradeMessage, TradeState,
};
use jangteo_protocol::{
    FieldError, Kind, Listing, ListingId, ListingStatus, ObjectId, PublicKey, SignedObject,
    public_key_from_peer_id,
};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use serde_json::{Value, json};
use tokio::sync::{Mutex, broadcast, mpsc, watch};

use crate::NodeEvent;
use crate::error::StoreError;
use crate::ingest::now_ms;
use crate::net::{
    Client, InboundTrade, MailboxRequest, MailboxResponse, TradeRequest, TradeResponse,
};
use crate::store::{DeliveryWrite, ProofWrite, Reservation, Store, TradeStep};

/// How often the delivery queue is looked at.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(3);
/// How often the mailboxes on connected relays are checked.
pub const MAILBOX_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// How long one delivery attempt may take.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// First wait before a queued message is sent again; it doubles per attempt.
pub const RETRY_BACKOFF_MIN_MS: u64 = 3_000;
/// Longest wait between two attempts.
pub const RETRY_BACKOFF_MAX_MS: u64 = 10 * 60 * 1000;
/// Attempts after which a message to a key that never answered in its trade fails.
pub const DELIVERY_ATTEMPTS_MAX: u32 = 60;
/// Age after which any still-queued message fails (the relays' mailbox retention).
pub const DELIVERY_LIFETIME_MS: u64 = 14 * 24 * 3600 * 1000;
/// Most queued deliveries one retry pass looks at.
pub const RETRY_PASS_MAX: usize = 4096;
/// Most open offers (offered or countered) on one listing of ours.
pub const OPEN_OFFERS_PER_LISTING: usize = 32;
/// Most open offers one buyer key may have on our listings.
pub const OPEN_OFFERS_PER_BUYER: usize = 5;
/// Most offers (open or not) one buyer key may make on our listings in a day.
pub const OFFERS_PER_BUYER_PER_DAY: usize = 50;
/// Most offers (open or not) one listing of ours takes in a day.
pub const OFFERS_PER_LISTING_PER_DAY: usize = 200;
/// An offer left unanswered this long is rejected ("expired"), so stale or fake offers do not
/// hold the per-listing cap.
pub const OFFER_TTL_MS: u64 = 72 * 3600 * 1000;
/// How often open offers are checked for expiry.
pub const OFFER_EXPIRY_INTERVAL: Duration = Duration::from_secs(600);
/// Most open disputes this node moderates for one seller key.
pub const MODERATION_PER_SELLER: usize = 3;
/// Most open disputes this node moderates in all.
pub const MODERATION_MAX: usize = 64;
/// Most messages held per trade: its chain plus what was set aside (proofs).
pub const TRADE_LOG_MAX: usize = CHAIN_MAX + 16;
/// Messages whose predecessor is not held yet, kept aside in memory.
pub const DETACHED_MAX: usize = 256;
/// How long such a message waits for its predecessor.
pub const DETACHED_TTL: Duration = Duration::from_secs(600);

/// Why a trade operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum TradeError {
    /// No such trade or listing here.
    #[error("{0}")]
    NotFound(String),
    /// A field is invalid.
    #[error("invalid trade message: {0}")]
    Invalid(#[from] FieldError),
    /// Not allowed in the trade's current state; says what is.
    #[error("{0}")]
    Transition(String),
    /// Refused for a reason of the market (sold out, own listing, caps).
    #[error("{0}")]
    Refused(String),
    /// Refused because the sender delivered a signed lie (a bad signature, an equivocation,
    /// a fork of what its author had seen, a message of a stranger, an invalid transition).
    #[error("{0}")]
    Offense(String),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the local user asks to do to a trade.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TradeAction {
    /// Counter: the new price per unit.
    #[serde(default)]
    pub price: Option<u64>,
    /// Reject, cancel, dispute: why.
    #[serde(default)]
    pub reason: Option<String>,
    /// Paid: the payment reference.
    #[serde(default)]
    pub reference: Option<String>,
    /// Shipped: the tracking number (without one, the item was handed over).
    #[serde(default)]
    pub tracking: Option<String>,
    /// Resolution: refund or release.
    #[serde(default)]
    pub outcome: Option<String>,
}

/// A new offer, as the API takes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOffer {
    /// Listing id.
    pub listing: String,
    /// Price per unit (default: the listing's).
    #[serde(default)]
    pub price: Option<u64>,
    /// Units (default 1).
    #[serde(default)]
    pub quantity: Option<u64>,
    /// A message to the seller.
    #[serde(default)]
    pub message: Option<String>,
    /// Peer ids who may resolve a dispute.
    #[serde(default)]
    pub moderators: Vec<String>,
}

/// The delivery record of one of our messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Delivery {
    /// Relays holding a sealed copy for recipients we could not reach.
    #[serde(default)]
    mailbox: Vec<String>,
    /// Recipients still to reach.
    to: Vec<String>,
    /// Recipients that refused it, with their reasons.
    #[serde(default)]
    refused: Vec<String>,
    status: String,
    reason: Option<String>,
    attempts: u32,
    #[serde(default)]
    created_at: u64,
    updated_at: u64,
}

impl Delivery {
    fn queued(to: Vec<String>, now: u64) -> Self {
        Self {
            mailbox: Vec::new(),
            to,
            refused: Vec::new(),
            status: "queued".into(),
            reason: None,
            attempts: 0,
            created_at: now,
            updated_at: now,
        }
    }

    fn write(&self, message: ObjectId, now: u64) -> DeliveryWrite {
        let backoff = RETRY_BACKOFF_MIN_MS
            .saturating_mul(1u64 << self.attempts.min(20))
            .min(RETRY_BACKOFF_MAX_MS);
        DeliveryWrite {
            message,
            record: serde_json::to_vec(self).unwrap_or_default(),
            next_attempt: (self.status == "queued").then(|| {
                if self.attempts == 0 {
                    now
                } else {
                    now + backoff
                }
            }),
        }
    }
}

fn kind_for(action: &str) -> Option<Kind> {
    Some(match action {
        "counter" => Kind::Counter,
        "accept" => Kind::Accept,
        "reject" => Kind::Reject,
        "cancel" => Kind::Cancel,
        "paid" => Kind::Paid,
        "shipped" => Kind::Shipped,
        "received" => Kind::Received,
        "dispute" => Kind::Dispute,
        "resolve" => Kind::Resolution,
        _ => return None,
    })
}

fn role_name(r: Option<Role>) -> &'static str {
    match r {
        Some(Role::Buyer) => "buyer",
        Some(Role::Seller) => "seller",
        Some(Role::Moderator) => "moderator",
        None => "none",
    }
}

/// What the node keeps in memory of each trade, for caps and lists.
#[derive(Debug, Clone, Copy)]
struct TradeBrief {
    listing: ListingId,
    buyer: PublicKey,
    seller: PublicKey,
    role: Option<Role>,
    state: TradeState,
    /// When this node first took the trade (unix ms; at start: the offer's own time).
    since: u64,
}

impl TradeBrief {
    fn of(c: &TradeChain, me: &PublicKey, since: u64) -> Self {
        Self {
            listing: c.terms.listing,
            buyer: c.buyer,
            seller: c.seller,
            role: c.role_of(me),
            state: c.state,
            since,
        }
    }

    fn open_offer(&self) -> bool {
        matches!(self.state, TradeState::Offered | TradeState::Countered)
    }
}

/// The result of planning one step: what to write and what to do once it is written.
#[derive(Debug, Default)]
struct Plan {
    step: TradeStep,
    /// Our new messages to deliver after the write.
    send: Vec<ObjectId>,
    /// Objects to gossip after the write (the listing's next version, proofs).
    gossip: Vec<(Kind, Vec<u8>)>,
}

/// The trades service.
#[derive(Debug, Clone)]
pub struct Trades {
    key: Arc<SigningKey>,
    me: PublicKey,
    store: Arc<Store>,
    network: Client,
    events: broadcast::Sender<NodeEvent>,
    /// Serializes state changes of trades on this node (two accepts racing for one unit).
    lock: Arc<Mutex<()>>,
    /// Set while a retry pass runs, so passes never overlap.
    retrying: Arc<std::sync::atomic::AtomicBool>,
    /// Every trade held, in brief; filled at start, updated by every step.
    briefs: Arc<std::sync::Mutex<HashMap<ObjectId, TradeBrief>>>,
    /// Messages whose predecessor is not held yet: (trade, message, since).
    detached: Arc<std::sync::Mutex<VecDeque<(ObjectId, ChainMessage, Instant)>>>,
}

impl Trades {
    /// A service acting with `key`.
    pub fn new(
        key: Arc<SigningKey>,
        store: Arc<Store>,
        network: Client,
        events: broadcast::Sender<NodeEvent>,
    ) -> Self {
        let me = PublicKey(key.verifying_key().to_bytes());
        Self {
            key,
            me,
            store,
            network,
            events,
            lock: Arc::new(Mutex::new(())),
            retrying: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            briefs: Arc::new(std::sync::Mutex::new(HashMap::new())),
            detached: Arc::new(std::sync::Mutex::new(VecDeque::new())),
        }
    }

    /// Decodes a trade's stored messages (verified when they were stored; not again).
    fn decode_all(&self, raw: &[Vec<u8>]) -> Vec<ChainMessage> {
        raw.iter()
            .filter_map(|b| SignedObject::decode_stored(b).ok())
            .filter_map(|o| ChainMessage::new(o, u64::MAX / 2).ok())
            .collect()
    }

    /// Replays `all` (arrival order) from its offer.
    fn replay_of(trade: &ObjectId, all: &[ChainMessage]) -> Option<Replay> {
        let offer = all
            .iter()
            .find(|m| m.id() == *trade && m.kind() == Kind::Offer)?
            .clone();
        let others = all.iter().filter(|m| m.id() != *trade).cloned().collect();
        TradeChain::replay(offer, others).ok()
    }

    /// The messages held for a trade, in arrival order, and their replay.
    fn held(&self, trade: &ObjectId) -> Result<(Vec<ChainMessage>, Option<Replay>), TradeError> {
        let all = self.decode_all(&self.store.trade_messages(trade)?);
        let replay = Self::replay_of(trade, &all);
        Ok((all, replay))
    }

    /// Replays a trade from what the store holds.
    pub fn load(&self, trade: &ObjectId) -> Result<Option<TradeChain>, TradeError> {
        Ok(self.held(trade)?.1.map(|r| r.chain))
    }

    fn parse_id(id: &str) -> Result<ObjectId, TradeError> {
        ObjectId::from_hex(id).ok_or_else(|| {
            TradeError::NotFound(format!("{id:?} is not a trade id (64 hex digits)"))
        })
    }

    fn get_replay(&self, id: &str) -> Result<(Vec<ChainMessage>, Replay), TradeError> {
        let tid = Self::parse_id(id)?;
        match self.held(&tid)? {
            (all, Some(r)) => Ok((all, r)),
            _ => Err(TradeError::NotFound(format!("no trade {id} on this node"))),
        }
    }

    fn sign(&self, kind: Kind, m: &TradeMessage) -> Result<ChainMessage, TradeError> {
        let obj = SignedObject::sign(kind, m.encode(), &self.key);
        ChainMessage::new(obj, now_ms()).map_err(|e| match e {
            jangteo_protocol::ObjectError::Invalid(f) => TradeError::Invalid(f),
            other => TradeError::Refused(other.to_string()),
        })
    }

    fn recipients(&self, chain: &TradeChain, kind: Kind) -> Vec<PublicKey> {
        let mut to: Vec<PublicKey> = [chain.buyer, chain.seller]
            .into_iter()
            .filter(|k| *k != self.me)
            .collect();
        if matches!(kind, Kind::Dispute | Kind::Resolution) {
            to.extend(chain.moderators.iter().filter(|k| **k != self.me));
        }
        to
    }

    fn set_brief(&self, chain: &TradeChain) {
        let offered = chain.messages.first().map_or(0, |m| m.message.at);
        if let Ok(mut b) = self.briefs.lock() {
            let since = b
                .get(&chain.id)
                .map_or_else(|| now_ms().min(offered.max(1)), |x| x.since);
            b.insert(chain.id, TradeBrief::of(chain, &self.me, since));
        }
    }

    fn briefs(&self) -> Vec<(ObjectId, TradeBrief)> {
        self.briefs
            .lock()
            .map(|b| b.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default()
    }

    /// Our own listing, held here and open, with the units still on offer.
    fn open_listing(&self, id: &ListingId) -> Result<Option<(Listing, u64)>, TradeError> {
        Ok(self
            .store
            .listing(id)?
            .filter(|l| l.author == self.me && l.listing.is_open(now_ms()))
            .map(|l| {
                let q = l.listing.quantity;
                (l.listing, q)
            }))
    }

    /// The next version of our listing with `quantity` units on offer, signed; None when the
    /// listing is not ours, retracted or expired (nothing to publish then).
    fn listing_version(
        &self,
        id: &ListingId,
        quantity: u64,
    ) -> Result<Option<(SignedObject, Listing)>, TradeError> {
        let Some(cur) = self.store.listing(id)? else {
            return Ok(None);
        };
        let now = now_ms();
        if cur.author != self.me
            || cur.listing.status == ListingStatus::Retracted
            || cur.listing.expires_at <= now
        {
            return Ok(None);
        }
        let mut next = cur.listing.clone();
        next.seq = cur.listing.seq + 1;
        next.updated_at = now.max(cur.listing.updated_at);
        next.quantity = quantity;
        next.validate(now)?;
        let obj = SignedObject::sign(Kind::Listing, next.encode(), &self.key);
        Ok(Some((obj, next)))
    }

    /// Signs a follow-up message of ours on top of `chain` and adds it to the plan.
    fn follow_up(
        &self,
        chain: &mut TradeChain,
        kind: Kind,
        note: &str,
        plan: &mut Plan,
    ) -> Result<(), TradeError> {
        let mut m = TradeMessage::follow(
            chain.id,
            chain.head(),
            now_ms().max(chain.messages.last().map_or(0, |m| m.message.at)),
        );
        m.note = note.into();
        let msg = self.sign(kind, &m)?;
        chain
            .apply(msg.clone())
            .map_err(|e| TradeError::Transition(e.to_string()))?;
        plan.step.messages.push(msg.object.clone());
        Ok(())
    }

    /// What this node must write on top of a trade as replayed: the seller's reservation and
    /// the listing's next version, a rejection or cancellation when there is no stock, a
    /// delivery record for each of our messages, delivered marks for those the other side
    /// sent back, failed marks for ours that lost a race, and equivocation proofs. Returns
    /// the chain with any follow-up applied. Pure of I/O except store reads.
    fn plan_effects(
        &self,
        replay: &Replay,
        delivered_back: &HashSet<ObjectId>,
        plan: &mut Plan,
    ) -> Result<TradeChain, TradeError> {
        let mut chain = replay.chain.clone();
        let now = now_ms();
        // Never sign a second message after one we already signed after (it lost a race):
        // that would be equivocation.
        let signed_after = |head: ObjectId| {
            replay
                .outside
                .iter()
                .any(|(m, _)| m.author() == self.me && m.message.prev == Some(head))
        };
        if chain.seller == self.me && !signed_after(chain.head()) {
            let q = chain.terms.quantity;
            let lid = chain.terms.listing;
            let reserved = self.store.reservation(&chain.id)?;
            let holds = chain.state.reserves();
            let releases = matches!(chain.state, TradeState::Cancelled | TradeState::Rejected);
            let open = self.open_listing(&lid)?;
            let available = open.as_ref().map_or(0, |(_, a)| *a);
            if holds && reserved.is_none() {
                if available >= q {
                    plan.step.reservation = Some(Reservation::Set(q));
                    plan.step.listing = self.listing_version(&lid, available - q)?;
                } else if chain.allowed_for(&self.me).contains(&Kind::Cancel) {
                    self.follow_up(
                        &mut chain,
                        Kind::Cancel,
                        "sold out before your acceptance arrived",
                        plan,
                    )?;
                } else {
                    tracing::warn!(trade = %chain.id, "a paid trade without stock: holding what is left");
                    plan.step.reservation = Some(Reservation::Set(q.min(available)));
                    plan.step.listing = self.listing_version(&lid, available - q.min(available))?;
                }
            } else if releases && let Some(r) = reserved {
                plan.step.reservation = Some(Reservation::Clear);
                if let Some(cur) = self.store.listing(&lid)? {
                    plan.step.listing =
                        self.listing_version(&lid, cur.listing.quantity.saturating_add(r))?;
                }
            } else if matches!(chain.state, TradeState::Offered | TradeState::Countered)
                && (available < q || self.offer_expired(&chain.id, now))
            {
                let may = chain.allowed_for(&self.me);
                let kind = if may.contains(&Kind::Reject) {
                    Some(Kind::Reject)
                } else if may.contains(&Kind::Cancel) {
                    Some(Kind::Cancel)
                } else {
                    None
                };
                if let Some(kind) = kind {
                    let why = if available < q {
                        "sold out or no longer on offer"
                    } else {
                        "the offer expired: no answer within 72 hours"
                    };
                    self.follow_up(&mut chain, kind, why, plan)?;
                }
            }
            if let Some((obj, _)) = &plan.step.listing {
                plan.gossip.push((Kind::Listing, obj.bytes().to_vec()));
            }
        }
        // Every message of ours has a delivery record.
        for m in chain.messages.iter().filter(|m| m.author() == self.me) {
            match self.delivery(&m.id())? {
                None => {
                    let to = self
                        .recipients(&chain, m.kind())
                        .iter()
                        .map(PublicKey::peer_id)
                        .collect();
                    plan.step
                        .deliveries
                        .push(Delivery::queued(to, now).write(m.id(), now));
                    plan.send.push(m.id());
                }
                Some(mut d) if d.status == "queued" && delivered_back.contains(&m.id()) => {
                    d.status = "delivered".into();
                    d.reason = None;
                    d.updated_at = now;
                    plan.step.deliveries.push(d.write(m.id(), now));
                }
                Some(_) => {}
            }
        }
        // Ours that lost their place.
        for (m, why) in &replay.outside {
            if m.author() != self.me {
                continue;
            }
            if let Some(mut d) = self.delivery(&m.id())?
                && d.status == "queued"
            {
                d.status = "failed".into();
                d.reason = Some(why.reason());
                d.updated_at = now;
                plan.step.deliveries.push(d.write(m.id(), now));
            }
        }
        for e in &replay.equivocations {
            let Ok(facts) = e.check(u64::MAX / 2) else {
                continue;
            };
            if facts.author == self.me
                || self.store.has_equivocation(&facts.author, &facts.trade)?
            {
                continue;
            }
            let object = SignedObject::sign(Kind::Equivocation, e.encode(), &self.key);
            tracing::warn!(trade = %facts.trade, author = %facts.author.peer_id(), "equivocation: two messages signed after the same one");
            plan.gossip
                .push((Kind::Equivocation, object.bytes().to_vec()));
            plan.step.proofs.push(ProofWrite {
                object,
                author: facts.author,
                trade: facts.trade,
            });
            plan.step.changes_trust = true;
        }
        Ok(chain)
    }

    fn delivery(&self, msg: &ObjectId) -> Result<Option<Delivery>, TradeError> {
        Ok(self
            .store
            .delivery(msg)?
            .and_then(|raw| serde_json::from_slice::<Delivery>(&raw).ok()))
    }

    /// Writes a plan as one synced batch, then updates the brief, tells listeners, and
    /// starts what follows the write (gossip, rejecting offers a sale left without stock).
    /// Returns our new messages, for the caller to deliver: nothing is sent before it is on
    /// disk.
    async fn commit(
        &self,
        mut plan: Plan,
        chain: &TradeChain,
        before: Option<TradeState>,
    ) -> Result<Vec<ObjectId>, TradeError> {
        if chain.state == TradeState::Completed && before != Some(TradeState::Completed) {
            plan.step.changes_trust = true;
        }
        let listing_changed = plan.step.listing.is_some().then_some(chain.terms.listing);
        let touched = !plan.step.messages.is_empty()
            || !plan.step.deliveries.is_empty()
            || plan.step.reservation.is_some()
            || plan.step.listing.is_some()
            || !plan.step.proofs.is_empty();
        if touched {
            let store = self.store.clone();
            let step = plan.step;
            tokio::task::spawn_blocking(move || store.commit_trade_step(&step, now_ms()))
                .await
                .map_err(|_| StoreError::Poisoned)??;
        }
        self.set_brief(chain);
        if before != Some(chain.state) {
            let _ = self.events.send(NodeEvent::TradeUpdated {
                trade: chain.id.to_hex(),
                state: chain.state.name(),
            });
        }
        for (kind, bytes) in plan.gossip {
            if let Err(e) = self.network.publish(kind, bytes).await {
                tracing::debug!(error = %e, "gossip after a trade step");
            }
        }
        if let Some(lid) = listing_changed {
            tokio::spawn(self.clone().settle_listing_task(lid));
        }
        Ok(plan.send)
    }

    /// Delivers our new messages in the background.
    fn spawn_deliveries(&self, trade: ObjectId, messages: Vec<ObjectId>) {
        for mid in messages {
            let this = self.clone();
            tokio::spawn(async move { this.deliver(&trade, &mid).await });
        }
    }

    /// Makes an offer on a listing held here.
    pub async fn offer(&self, o: NewOffer) -> Result<Value, TradeError> {
        let lid = ListingId::from_hex(&o.listing)
            .ok_or_else(|| TradeError::NotFound(format!("{:?} is not a listing id", o.listing)))?;
        let held = self.store.listing(&lid)?.ok_or_else(|| {
            TradeError::NotFound(format!(
                "no listing {} on this node; search for it first",
                o.listing
            ))
        })?;
        if held.author == self.me {
            return Err(TradeError::Refused("this is your own listing".into()));
        }
        if !held.listing.is_open(now_ms()) {
            return Err(TradeError::Refused(format!(
                "listing {} is not on offer (sold out, retracted or expired)",
                o.listing
            )));
        }
        let quantity = o.quantity.unwrap_or(1);
        if quantity > held.listing.quantity {
            return Err(FieldError::new(
                "quantity",
                format!("only {} available", held.listing.quantity),
            )
            .into());
        }
        let chosen = if o.moderators.is_empty() {
            held.listing
                .moderators
                .iter()
                .map(PublicKey::peer_id)
                .collect()
        } else {
            o.moderators.clone()
        };
        let moderators = chosen
            .iter()
            .map(|p| {
                public_key_from_peer_id(p)
                    .ok_or_else(|| FieldError::new("moderator", format!("{p:?} is not a peer id")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let msg = TradeMessage {
            trade: None,
            prev: None,
            at: now_ms(),
            seller: Some(held.author),
            terms: Some(Terms {
                listing: lid,
                listing_seq: held.listing.seq,
                price: o.price.unwrap_or(held.listing.price),
                currency: held.listing.currency.clone(),
                quantity,
            }),
            moderators,
            note: o.message.unwrap_or_default(),
            outcome: None,
        };
        let offer = self.sign(Kind::Offer, &msg)?;
        let chain = TradeChain::replay(offer.clone(), vec![])
            .map_err(|e| TradeError::Transition(e.to_string()))?;
        let send = {
            let _g = self.lock.lock().await;
            let mut plan = Plan::default();
            plan.step.trade = chain.chain.id;
            plan.step.messages.push(offer.object.clone());
            let c = self.plan_effects(&chain, &HashSet::new(), &mut plan)?;
            self.commit(plan, &c, None).await?
        };
        // The first attempt is made before answering, so the caller sees its outcome.
        for mid in send {
            self.deliver(&chain.chain.id, &mid).await;
        }
        self.view(&chain.chain.id.to_hex())
    }

    /// Performs `action` (accept, reject, counter, cancel, paid, shipped, received, dispute,
    /// resolve) on a trade: one synced write, then delivery.
    pub async fn act(&self, id: &str, action: &str, a: TradeAction) -> Result<Value, TradeError> {
        let kind = kind_for(action)
            .ok_or_else(|| TradeError::NotFound(format!("no trade action {action:?}")))?;
        let (tid, send) = {
            let _g = self.lock.lock().await;
            let (all, replay) = self.get_replay(id)?;
            let chain = &replay.chain;
            let mut m = TradeMessage::follow(
                chain.id,
                chain.head(),
                now_ms().max(chain.messages.last().map_or(0, |m| m.message.at)),
            );
            match kind {
                Kind::Counter => {
                    let price = a
                        .price
                        .ok_or_else(|| FieldError::new("price", "counter needs --price"))?;
                    m.terms = Some(Terms {
                        price,
                        ..chain.terms.clone()
                    });
                }
                Kind::Accept => m.terms = Some(chain.terms.clone()),
                Kind::Reject => m.note = a.reason.unwrap_or_else(|| "declined".into()),
                Kind::Cancel => m.note = a.reason.unwrap_or_default(),
                Kind::Dispute => m.note = a.reason.unwrap_or_default(),
                Kind::Paid => m.note = a.reference.unwrap_or_default(),
                Kind::Shipped => {
                    m.outcome = Some(
                        if a.tracking.is_some() {
                            "shipped"
                        } else {
                            "handed-over"
                        }
                        .into(),
                    );
                    m.note = a.tracking.unwrap_or_default();
                }
                Kind::Resolution => m.outcome = a.outcome,
                _ => {}
            }
            let msg = self.sign(kind, &m)?;
            let refuse = |why: String| {
                let allowed: Vec<&str> = chain
                    .allowed_for(&self.me)
                    .iter()
                    .map(|k| action_name(*k))
                    .collect();
                TradeError::Transition(format!(
                    "{action} refused for trade {id} (state {}): {why}; you may now: {}",
                    chain.state.name(),
                    if allowed.is_empty() {
                        "nothing (the trade is over or waits for the other side)".into()
                    } else {
                        allowed.join(", ")
                    }
                ))
            };
            chain.check(&msg).map_err(|e| {
                refuse(match e {
                    jangteo_protocol::trade::TransitionError::NotAllowed { .. } => {
                        "not yours to send now".to_string()
                    }
                    other => other.to_string(),
                })
            })?;
            // Never sign two messages after the same one: that would be equivocation.
            if all
                .iter()
                .any(|h| h.author() == self.me && h.message.prev == Some(chain.head()))
            {
                return Err(refuse(
                    "this node already signed a message after the current head".into(),
                ));
            }
            if kind == Kind::Accept && chain.seller == self.me {
                self.check_stock(chain)?;
            }
            let before = chain.state;
            let mut next = chain.clone();
            next.apply(msg.clone())
                .map_err(|e| TradeError::Transition(e.to_string()))?;
            let replay = Replay {
                chain: next,
                outside: replay.outside.clone(),
                equivocations: Vec::new(),
            };
            let mut plan = Plan::default();
            plan.step.trade = replay.chain.id;
            plan.step.messages.push(msg.object.clone());
            let c = self.plan_effects(&replay, &HashSet::new(), &mut plan)?;
            (c.id, self.commit(plan, &c, Some(before)).await?)
        };
        for mid in send {
            self.deliver(&tid, &mid).await;
        }
        self.view(id)
    }

    fn check_stock(&self, chain: &TradeChain) -> Result<(), TradeError> {
        let available = self
            .open_listing(&chain.terms.listing)?
            .map_or(0, |(_, a)| a);
        if available < chain.terms.quantity {
            return Err(TradeError::Refused(format!(
                "sold out: {available} left of listing {}, the trade asks for {}",
                chain.terms.listing, chain.terms.quantity
            )));
        }
        Ok(())
    }

    /// Recomputes what a trade needs from the store and writes it (reservation, listing
    /// version, follow-ups, delivery records). Idempotent.
    async fn settle(&self, trade: &ObjectId) -> Result<(), TradeError> {
        let _g = self.lock.lock().await;
        let (_, Some(replay)) = self.held(trade)? else {
            return Ok(());
        };
        let before = replay.chain.state;
        let mut plan = Plan::default();
        plan.step.trade = *trade;
        let c = self.plan_effects(&replay, &HashSet::new(), &mut plan)?;
        let send = self.commit(plan, &c, Some(before)).await?;
        self.spawn_deliveries(c.id, send);
        Ok(())
    }

    /// [`settle_listing`](Self::settle_listing) as a task (boxed: settling commits, and a
    /// commit may start this again).
    fn settle_listing_task(
        self,
        lid: ListingId,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move { self.settle_listing(&lid).await })
    }

    /// Whether an open offer of ours (as seller) has waited longer than [`OFFER_TTL_MS`].
    fn offer_expired(&self, trade: &ObjectId, now: u64) -> bool {
        self.briefs
            .lock()
            .ok()
            .and_then(|b| b.get(trade).map(|x| x.since))
            .is_some_and(|since| now.saturating_sub(since) > OFFER_TTL_MS)
    }

    /// Rejects the open offers on our listings that waited longer than [`OFFER_TTL_MS`].
    async fn expire_offers(&self) {
        let now = now_ms();
        for (tid, b) in self.briefs() {
            if b.seller == self.me
                && b.open_offer()
                && now.saturating_sub(b.since) > OFFER_TTL_MS
                && let Err(e) = self.settle(&tid).await
            {
                tracing::warn!(trade = %tid, error = %e, "expiring an offer");
            }
        }
    }

    /// Items and bytes this node holds in mailboxes for others (relays only).
    pub fn mailbox_stats(&self) -> Result<(u64, u64), TradeError> {
        Ok(self.store.mailbox_stats()?)
    }

    /// Settles every open offer on one of our listings (after its quantity changed: offers
    /// for more than is left are rejected).
    async fn settle_listing(&self, listing: &ListingId) {
        for (tid, b) in self.briefs() {
            if b.listing == *listing
                && b.seller == self.me
                && b.open_offer()
                && let Err(e) = self.settle(&tid).await
            {
                tracing::warn!(trade = %tid, error = %e, "settling an open offer");
            }
        }
    }

    /// At start: replays every trade held and repairs what a crash may have left undone
    /// (a reservation and the listing's version for every contract of ours, a delivery
    /// record for every message of ours, rejections of offers on what is sold out). Returns
    /// how many trades it looked at.
    pub async fn settle_all(&self) -> Result<usize, TradeError> {
        let ids = self.store.trade_ids()?;
        for tid in &ids {
            if let Some(c) = self.load(tid)? {
                self.set_brief(&c);
            }
        }
        for tid in &ids {
            if let Err(e) = self.settle(tid).await {
                tracing::warn!(trade = %tid, error = %e, "settling at start");
            }
        }
        Ok(ids.len())
    }

    /// Whether a stranger's offer may be taken: the listing is ours, held, open, has the
    /// units, and the caps per listing and per buyer are not reached.
    fn admit_offer(&self, start: &TradeChain) -> Result<(), TradeError> {
        let lid = start.terms.listing;
        let Some(held) = self.store.listing(&lid)? else {
            return Err(TradeError::Refused(format!(
                "no listing {lid} on this node"
            )));
        };
        if held.author != self.me {
            return Err(TradeError::Refused(format!(
                "listing {lid} is not this node's"
            )));
        }
        if !held.listing.is_open(now_ms()) {
            return Err(TradeError::Refused(format!(
                "listing {lid} is not on offer (sold out, retracted or expired)"
            )));
        }
        if start.terms.currency != held.listing.currency {
            return Err(TradeError::Refused(format!(
                "listing {lid} is priced in {}",
                held.listing.currency
            )));
        }
        if start.terms.quantity > held.listing.quantity {
            return Err(TradeError::Refused(format!(
                "only {} available",
                held.listing.quantity
            )));
        }
        let briefs = self.briefs();
        let on_listing = briefs
            .iter()
            .filter(|(_, b)| b.listing == lid && b.seller == self.me && b.open_offer())
            .count();
        if on_listing >= OPEN_OFFERS_PER_LISTING {
            return Err(TradeError::Refused(format!(
                "listing {lid} has {OPEN_OFFERS_PER_LISTING} open offers; try again later"
            )));
        }
        let by_buyer = briefs
            .iter()
            .filter(|(_, b)| b.buyer == start.buyer && b.seller == self.me && b.open_offer())
            .count();
        if by_buyer >= OPEN_OFFERS_PER_BUYER {
            return Err(TradeError::Refused(format!(
                "you have {OPEN_OFFERS_PER_BUYER} open offers with this seller; wait for an answer"
            )));
        }
        let day_ago = now_ms().saturating_sub(86_400_000);
        let recent = |b: &TradeBrief| b.seller == self.me && b.since > day_ago;
        if briefs
            .iter()
            .filter(|(_, b)| recent(b) && b.buyer == start.buyer)
            .count()
            >= OFFERS_PER_BUYER_PER_DAY
        {
            return Err(TradeError::Refused(format!(
                "at most {OFFERS_PER_BUYER_PER_DAY} offers a day to this seller; try tomorrow"
            )));
        }
        if briefs
            .iter()
            .filter(|(_, b)| recent(b) && b.listing == lid)
            .count()
            >= OFFERS_PER_LISTING_PER_DAY
        {
            return Err(TradeError::Refused(format!(
                "listing {lid} took {OFFERS_PER_LISTING_PER_DAY} offers today; try tomorrow"
            )));
        }
        Ok(())
    }

    /// Whether a trade in which this node is only a moderator may be taken: it is disputed,
    /// the listing is held and its seller named this node, within caps.
    fn admit_moderation(&self, chain: &TradeChain) -> Result<(), TradeError> {
        if !matches!(chain.state, TradeState::Disputed | TradeState::Resolved) {
            return Err(TradeError::Refused(
                "a moderator takes a trade only once it is disputed".into(),
            ));
        }
        let lid = chain.terms.listing;
        // The offer named this node (that is what makes it a moderator here) and the seller
        // agreed by accepting; the listing must be one this node holds, so a dispute is about
        // something it can see. Its current version is not asked to still name this node: a
        // seller could drop a moderator after being paid to escape the dispute.
        let held = self
            .store
            .listing(&lid)?
            .is_some_and(|l| l.author == chain.seller);
        if !held {
            return Err(TradeError::Refused(format!(
                "this node holds no listing {lid} of that seller"
            )));
        }
        let briefs = self.briefs();
        let open =
            |b: &TradeBrief| b.role == Some(Role::Moderator) && b.state == TradeState::Disputed;
        if briefs
            .iter()
            .filter(|(_, b)| open(b) && b.seller == chain.seller)
            .count()
            >= MODERATION_PER_SELLER
            || briefs.iter().filter(|(_, b)| open(b)).count() >= MODERATION_MAX
        {
            return Err(TradeError::Refused(
                "this moderator has too many open disputes; try again later".into(),
            ));
        }
        Ok(())
    }

    fn take_detached(&self, trade: &ObjectId) -> Vec<ChainMessage> {
        let Ok(mut d) = self.detached.lock() else {
            return Vec::new();
        };
        d.retain(|(_, _, since)| since.elapsed() < DETACHED_TTL);
        let (mine, rest): (Vec<_>, Vec<_>) = d.drain(..).partition(|(t, _, _)| t == trade);
        d.extend(rest);
        mine.into_iter().map(|(_, m, _)| m).collect()
    }

    fn keep_detached(&self, trade: ObjectId, m: ChainMessage) {
        if let Ok(mut d) = self.detached.lock() {
            if d.iter().any(|(_, h, _)| h.id() == m.id()) {
                return;
            }
            if d.len() >= DETACHED_MAX {
                d.pop_front();
            }
            d.push_back((trade, m, Instant::now()));
        }
    }

    /// Handles a delivery from a peer: verify, take what joins the chain, and write it with
    /// what follows from it in one synced batch.
    pub async fn receive(&self, request: TradeRequest) -> TradeResponse {
        self.receive_judged(request).await.0
    }

    /// [`receive`](Self::receive), also telling whether the delivery was an offense of its
    /// sender (to count against its peer).
    pub async fn receive_judged(&self, request: TradeRequest) -> (TradeResponse, bool) {
        match self.receive_inner(request).await {
            Ok(()) => (TradeResponse::Accepted, false),
            Err(TradeError::Store(StoreError::Conflict(e))) => (TradeResponse::Busy(e), false),
            Err(e @ TradeError::Offense(_)) => (TradeResponse::Refused(e.to_string()), true),
            Err(e) => (TradeResponse::Refused(e.to_string()), false),
        }
    }

    async fn receive_inner(&self, request: TradeRequest) -> Result<(), TradeError> {
        if request.messages.is_empty() || request.messages.len() > CHAIN_MAX {
            return Err(TradeError::Refused(format!(
                "a delivery holds 1-{CHAIN_MAX} messages"
            )));
        }
        let now = now_ms();
        let bad = |e: &dyn std::fmt::Display| TradeError::Offense(format!("bad message: {e}"));
        // The offer first, and who we are in it, before paying for the other signatures.
        let offer_at = request
            .messages
            .iter()
            .position(|b| {
                jangteo_protocol::Envelope::decode(b).is_ok_and(|e| e.kind == Kind::Offer)
            })
            .ok_or_else(|| {
                TradeError::Refused("the delivery does not include the trade's offer".into())
            })?;
        let offer = ChainMessage::new(
            SignedObject::decode_and_verify(&request.messages[offer_at]).map_err(|e| bad(&e))?,
            now,
        )
        .map_err(|e| bad(&e))?;
        let tid = offer.id();
        let start = TradeChain::replay(offer.clone(), vec![])
            .map_err(|e| TradeError::Refused(e.to_string()))?
            .chain;
        let Some(role) = start.role_of(&self.me) else {
            return Err(TradeError::Refused(
                "this node is not a party to that trade".into(),
            ));
        };
        let _g = self.lock.lock().await;
        let (held, before) = self.held(&tid)?;
        let is_new = before.is_none();
        if is_new {
            match role {
                Role::Buyer => {
                    return Err(TradeError::Refused("this node made no such offer".into()));
                }
                Role::Seller => self.admit_offer(&start)?,
                Role::Moderator => {}
            }
        }
        let mut incoming = vec![offer.clone()];
        for (i, b) in request.messages.iter().enumerate() {
            if i == offer_at {
                continue;
            }
            let obj = SignedObject::decode_and_verify(b).map_err(|e| bad(&e))?;
            if obj.id() != tid && incoming.iter().all(|m| m.id() != obj.id()) {
                incoming.push(ChainMessage::new(obj, now).map_err(|e| bad(&e))?);
            }
        }
        if incoming
            .iter()
            .any(|m| m.id() != tid && m.message.trade != Some(tid))
        {
            return Err(TradeError::Refused(
                "messages of several trades in one delivery".into(),
            ));
        }
        let held_ids: HashSet<ObjectId> = held.iter().map(ChainMessage::id).collect();
        let mut all = held.clone();
        let mut ids = held_ids.clone();
        for m in self
            .take_detached(&tid)
            .into_iter()
            .chain(incoming.iter().cloned())
        {
            if ids.insert(m.id()) {
                all.push(m);
            }
        }
        if all.len() > TRADE_LOG_MAX {
            return Err(TradeError::Refused(format!(
                "a trade holds at most {TRADE_LOG_MAX} messages"
            )));
        }
        let replay = Self::replay_of(&tid, &all)
            .ok_or_else(|| TradeError::Refused("the offer does not start a trade".into()))?;
        if is_new && role == Role::Moderator {
            self.admit_moderation(&replay.chain)?;
        }
        let incoming_ids: HashSet<ObjectId> = incoming.iter().map(ChainMessage::id).collect();
        let mut refusal = None;
        for (m, why) in &replay.outside {
            if m.author() == self.me || !incoming_ids.contains(&m.id()) {
                continue;
            }
            if *why == Outside::Detached {
                self.keep_detached(tid, m.clone());
            } else if why.is_offense() && refusal.is_none() {
                refusal = Some(TradeError::Offense(format!(
                    "{} refused: {}",
                    m.kind().name(),
                    why.reason()
                )));
            }
        }
        // A trade that ended before this node took part in it (an offer and its
        // withdrawal) leaves nothing to keep.
        if is_new && replay.chain.state.is_final() {
            return refusal.map_or(Ok(()), Err);
        }
        // What is stored: the chain's new messages, and the first proof against each author
        // whose earlier message is in the chain (so the trade shows it at every replay).
        // Nothing else: junk, strangers' messages and race losers never enter the log.
        let mut to_store: Vec<ChainMessage> = replay
            .chain
            .messages
            .iter()
            .filter(|m| !held_ids.contains(&m.id()))
            .cloned()
            .collect();
        let in_chain: HashSet<ObjectId> =
            replay.chain.messages.iter().map(ChainMessage::id).collect();
        let proven: HashSet<PublicKey> = before
            .as_ref()
            .map(|r| {
                r.equivocations
                    .iter()
                    .map(|e| e.first.envelope().author)
                    .collect()
            })
            .unwrap_or_default();
        let mut newly: HashSet<PublicKey> = HashSet::new();
        for e in &replay.equivocations {
            let author = e.first.envelope().author;
            if in_chain.contains(&e.first.id())
                && !proven.contains(&author)
                && newly.insert(author)
                && !held_ids.contains(&e.second.id())
                && let Some(m) = all.iter().find(|m| m.id() == e.second.id())
            {
                to_store.push(m.clone());
            }
        }
        // Plan on exactly what will be held, so nothing unstored can steer the step.
        let mut stored = held.clone();
        stored.extend(to_store.iter().cloned());
        let replay = Self::replay_of(&tid, &stored)
            .ok_or_else(|| TradeError::Refused("the offer does not start a trade".into()))?;
        let delivered_back: HashSet<ObjectId> = replay
            .chain
            .messages
            .iter()
            .filter(|m| m.author() == self.me && incoming_ids.contains(&m.id()))
            .map(ChainMessage::id)
            .collect();
        let mut plan = Plan::default();
        plan.step.trade = tid;
        plan.step.messages = to_store.iter().map(|m| m.object.clone()).collect();
        let chain = self.plan_effects(&replay, &delivered_back, &mut plan)?;
        let send = self
            .commit(plan, &chain, before.map(|r| r.chain.state))
            .await?;
        self.spawn_deliveries(tid, send);
        match refusal {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Sends one of our messages (with the whole chain) to its recipients and records the
    /// outcome. Unreachable recipients leave it queued, with backoff, until the attempt cap
    /// (for keys that never answered) or its lifetime runs out.
    pub async fn deliver(&self, trade: &ObjectId, msg: &ObjectId) {
        let Ok(Some(mut d)) = self.delivery(msg) else {
            return;
        };
        if d.status != "queued" {
            return;
        }
        let now = now_ms();
        let record = |d: &Delivery| {
            let w = d.write(*msg, now_ms());
            let _ = self
                .store
                .set_delivery(trade, msg, &w.record, w.next_attempt);
        };
        let Ok(Some(chain)) = self.load(trade) else {
            return;
        };
        if !chain.messages.iter().any(|m| m.id() == *msg) {
            d.status = "failed".into();
            d.reason = Some("superseded: another message took its place in the trade first".into());
            d.updated_at = now;
            record(&d);
            return;
        }
        let answered = |peer: &str| chain.messages.iter().any(|m| m.author().peer_id() == peer);
        if d.created_at > 0 && now.saturating_sub(d.created_at) > DELIVERY_LIFETIME_MS {
            d.status = "failed".into();
            d.reason = Some(format!(
                "not delivered within {} days: {}",
                DELIVERY_LIFETIME_MS / 86_400_000,
                d.reason.clone().unwrap_or_default()
            ));
            d.updated_at = now;
            record(&d);
            self.announce(msg, "failed");
            return;
        }
        // A dispute or resolution waits for its moderator as long as the mailboxes keep it.
        let escalation = chain
            .messages
            .iter()
            .find(|m| m.id() == *msg)
            .is_some_and(|m| matches!(m.kind(), Kind::Dispute | Kind::Resolution));
        if !escalation && d.attempts >= DELIVERY_ATTEMPTS_MAX && !d.to.iter().all(|t| answered(t)) {
            d.status = "failed".into();
            d.reason = Some(format!(
                "no answer after {DELIVERY_ATTEMPTS_MAX} attempts from a key that never answered in this trade: {}",
                d.reason.clone().unwrap_or_default()
            ));
            d.updated_at = now;
            record(&d);
            self.announce(msg, "failed");
            return;
        }
        let messages: Vec<Vec<u8>> = chain
            .messages
            .iter()
            .map(|m| m.object.bytes().to_vec())
            .collect();
        let request = TradeRequest {
            messages: messages.iter().cloned().map(ByteBuf::from).collect(),
        };
        let mut pending: Vec<(String, String)> = Vec::new();
        let mut reached: Vec<String> = Vec::new();
        for to in &d.to {
            let Ok(peer) = to.parse::<PeerId>() else {
                d.refused.push(format!("{to} is not a peer id"));
                reached.push(to.clone());
                continue;
            };
            match tokio::time::timeout(
                DELIVERY_TIMEOUT,
                self.network.send_trade(peer, request.clone()),
            )
            .await
            {
                Ok(Ok(Ok(TradeResponse::Accepted))) => reached.push(to.clone()),
                Ok(Ok(Ok(TradeResponse::Busy(r)))) => {
                    pending.push((to.clone(), format!("{to} is busy: {r}")))
                }
                Ok(Ok(Ok(TradeResponse::Refused(r)))) => {
                    d.refused.push(format!("{to} refused: {r}"));
                    reached.push(to.clone());
                }
                Ok(Ok(Err(e))) => pending.push((to.clone(), format!("{to} unreachable: {e}"))),
                Ok(Err(e)) => pending.push((to.clone(), e.to_string())),
                Err(_) => pending.push((
                    to.clone(),
                    format!("{to} did not answer within {DELIVERY_TIMEOUT:?}"),
                )),
            }
        }
        d.to.retain(|t| !reached.contains(t));
        // Recipients we could not reach: leave a sealed copy on the relays we know, once.
        if !pending.is_empty() && d.mailbox.is_empty() {
            for (to, why) in pending.iter_mut() {
                match self.deposit(to, &messages).await {
                    Ok(relays) if !relays.is_empty() => {
                        *why = format!(
                            "{to} is offline; held in the mailbox of relay {}",
                            relays.join(", ")
                        );
                        d.mailbox.extend(relays);
                    }
                    Ok(_) => why.push_str("; no relay with mailboxes is connected"),
                    Err(e) => why.push_str(&format!("; {e}")),
                }
            }
        } else if !pending.is_empty() && !d.mailbox.is_empty() {
            for (to, why) in pending.iter_mut() {
                *why = format!(
                    "{to} is offline; held in the mailbox of relay {}",
                    d.mailbox.join(", ")
                );
            }
        }
        let pending: Vec<String> = pending.into_iter().map(|(_, w)| w).collect();
        // Another task may have marked it meanwhile (the other side sent it back).
        if let Ok(Some(now_d)) = self.delivery(msg)
            && now_d.status != "queued"
        {
            return;
        }
        d.attempts += 1;
        d.updated_at = now_ms();
        if d.to.is_empty() && d.refused.is_empty() {
            d.status = "delivered".into();
            d.reason = None;
        } else if d.to.is_empty() {
            d.status = "failed".into();
            d.reason = Some(d.refused.join("; "));
        } else {
            d.reason = Some(
                pending
                    .into_iter()
                    .chain(d.refused.iter().cloned())
                    .collect::<Vec<_>>()
                    .join("; "),
            );
        }
        record(&d);
        if d.status != "queued" {
            self.announce(
                msg,
                if d.status == "delivered" {
                    "delivered"
                } else {
                    "failed"
                },
            );
        }
    }

    fn announce(&self, msg: &ObjectId, status: &'static str) {
        let _ = self.events.send(NodeEvent::Delivery {
            message: msg.to_hex(),
            status,
        });
    }

    /// Sends queued messages whose time has come, or every queued message addressed to
    /// `peer` (it just connected). Costs in proportion to the queue, not to all trades.
    pub async fn retry_queued(&self, peer: Option<String>) {
        use std::sync::atomic::Ordering;
        // Timed passes never overlap; a pass for a peer that just connected always runs (it
        // only sends what is addressed to that peer, and a repeat changes nothing).
        let timed = peer.is_none();
        if timed && self.retrying.swap(true, Ordering::AcqRel) {
            return;
        }
        let now = now_ms();
        if let Ok(queue) = self.store.delivery_queue(RETRY_PASS_MAX) {
            for (msg, trade, next) in queue {
                let due = next <= now
                    || peer.as_ref().is_some_and(|p| {
                        self.delivery(&msg)
                            .ok()
                            .flatten()
                            .is_some_and(|d| d.to.contains(p))
                    });
                if due {
                    self.deliver(&trade, &msg).await;
                }
            }
        }
        if timed {
            self.retrying.store(false, Ordering::Release);
        }
    }

    /// (trades held, trade messages held, deliveries still queued).
    pub fn counts(&self) -> Result<(u64, u64, u64), TradeError> {
        let (t, m) = self.store.trade_counts()?;
        Ok((t, m, self.store.queued_delivery_count()?))
    }

    /// Seals the chain to `to` and leaves it with every connected relay; returns the relays
    /// that took it, or the reason they gave.
    async fn deposit(&self, to: &str, messages: &[Vec<u8>]) -> Result<Vec<String>, String> {
        let key =
            public_key_from_peer_id(to).ok_or_else(|| format!("{to} is not an ed25519 peer id"))?;
        let mut eph = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut eph);
        let sealed = jangteo_protocol::mailbox::seal(
            &key,
            eph,
            &jangteo_protocol::mailbox::encode_bundle(messages),
        )
        .map_err(|e| e.to_string())?;
        let relays = self.network.relays().await.map_err(|e| e.to_string())?;
        let mut took = Vec::new();
        let mut reasons = Vec::new();
        for r in relays {
            let req = MailboxRequest::Put {
                to: ByteBuf::from(key.0.to_vec()),
                sealed: ByteBuf::from(sealed.clone()),
            };
            match self.network.mailbox(r, req).await {
                Ok(Ok(MailboxResponse::Stored)) => took.push(r.to_string()),
                Ok(Ok(MailboxResponse::Refused(why))) => {
                    reasons.push(format!("relay {r} refused: {why}"))
                }
                Ok(Ok(other)) => reasons.push(format!("relay {r} answered {other:?}")),
                Ok(Err(e)) => reasons.push(format!("relay {r}: {e}")),
                Err(e) => reasons.push(e.to_string()),
            }
        }
        if took.is_empty() && !reasons.is_empty() {
            return Err(reasons.join("; "));
        }
        Ok(took)
    }

    /// Collects what waits for this node on the connected relays, applies it, acknowledges
    /// it (so the relay deletes it), and sends each trade's chain back to the counterparty
    /// as a receipt when it can.
    pub async fn fetch_mailboxes(&self) {
        let Ok(relays) = self.network.relays().await else {
            return;
        };
        for relay in relays {
            let Ok(Ok(MailboxResponse::Items(items))) =
                self.network.mailbox(relay, MailboxRequest::Fetch).await
            else {
                continue;
            };
            if items.is_empty() {
                continue;
            }
            let mut ids = Vec::with_capacity(items.len());
            let mut touched = Vec::new();
            for (id, sealed) in items {
                ids.push(id);
                let Ok(plain) = jangteo_protocol::mailbox::open(&self.key, &sealed) else {
                    tracing::warn!(relay = %relay, "dropping a mailbox item that does not open with our key");
                    continue;
                };
                let Ok(bundle) = jangteo_protocol::mailbox::decode_bundle(&plain) else {
                    continue;
                };
                let request = TradeRequest {
                    messages: bundle.into_iter().map(ByteBuf::from).collect(),
                };
                let offer_id = request
                    .messages
                    .iter()
                    .filter_map(|b| SignedObject::decode_and_verify(b).ok())
                    .find(|o| o.envelope().kind == Kind::Offer)
                    .map(|o| o.id());
                let response = self.receive(request).await;
                tracing::info!(relay = %relay, response = ?response, "mailbox item");
                if let (TradeResponse::Accepted, Some(t)) = (response, offer_id) {
                    touched.push(t);
                }
            }
            let _ = self
                .network
                .mailbox(relay, MailboxRequest::Ack { ids })
                .await;
            for t in touched {
                self.send_receipt(&t).await;
            }
        }
    }

    /// Sends our copy of a trade's chain to the other parties (best effort): it tells them
    /// their messages arrived.
    async fn send_receipt(&self, trade: &ObjectId) {
        let Ok(Some(chain)) = self.load(trade) else {
            return;
        };
        let request = TradeRequest {
            messages: chain
                .messages
                .iter()
                .map(|m| ByteBuf::from(m.object.bytes().to_vec()))
                .collect(),
        };
        for key in [chain.buyer, chain.seller]
            .into_iter()
            .filter(|k| *k != self.me)
        {
            if let Ok(peer) = key.peer_id().parse::<PeerId>() {
                let _ = tokio::time::timeout(
                    DELIVERY_TIMEOUT,
                    self.network.send_trade(peer, request.clone()),
                )
                .await;
            }
        }
    }

    /// Every trade this node is part of.
    pub fn list(&self) -> Result<Value, TradeError> {
        let mut out = Vec::new();
        for tid in self.store.trade_ids()? {
            if let Some(c) = self.load(&tid)? {
                out.push(self.summary(&c));
            }
        }
        out.sort_by_key(|v| std::cmp::Reverse(v["updated_at"].as_u64().unwrap_or(0)));
        Ok(Value::Array(out))
    }

    fn summary(&self, c: &TradeChain) -> Value {
        let role = c.role_of(&self.me);
        let counterparty = if role == Some(Role::Buyer) {
            c.seller
        } else {
            c.buyer
        };
        json!({
            "id": c.id.to_hex(),
            "listing": c.terms.listing.to_hex(),
            "role": role_name(role),
            "state": c.state.name(),
            "counterparty": counterparty.peer_id(),
            "price": c.terms.price,
            "currency": c.terms.currency,
            "quantity": c.terms.quantity,
            "total": c.terms.total(),
            "updated_at": c.messages.last().map_or(0, |m| m.message.at),
        })
    }

    /// One trade with its history, each message's delivery status, and what this node may
    /// do next.
    pub fn view(&self, id: &str) -> Result<Value, TradeError> {
        let (_, replay) = self.get_replay(id)?;
        let c = &replay.chain;
        let mut v = self.summary(c);
        let history: Vec<Value> = c
            .messages
            .iter()
            .map(|m| {
                let delivery = self
                    .store
                    .delivery(&m.id())
                    .ok()
                    .flatten()
                    .and_then(|raw| serde_json::from_slice::<Delivery>(&raw).ok())
                    .map(
                        |d| json!({"status": d.status, "reason": d.reason, "attempts": d.attempts}),
                    )
                    .unwrap_or(json!({"status": "received"}));
                json!({
                    "kind": m.kind().name(),
                    "by": m.author().peer_id(),
                    "role": role_name(c.role_of(&m.author())),
                    "at": m.message.at,
                    "id": m.id().to_hex(),
                    "note": m.message.note,
                    "delivery": delivery,
                })
            })
            .collect();
        v["history"] = Value::Array(history);
        v["equivocations"] = json!(
            replay
                .equivocations
                .iter()
                .filter_map(|e| e.check(u64::MAX / 2).ok().map(|f| (e, f)))
                .map(|(e, f)| json!({
                    "by": f.author.peer_id(),
                    "role": role_name(c.role_of(&f.author)),
                    "at": f.at,
                    "after": f.prev.to_hex(),
                    "kept": e.first.id().to_hex(),
                    "refused": e.second.id().to_hex(),
                    "refused_kind": e.second.envelope().kind.name(),
                }))
                .collect::<Vec<_>>()
        );
        v["set_aside"] = json!(
            replay
                .outside
                .iter()
                .map(|(m, why)| json!({
                    "id": m.id().to_hex(),
                    "kind": m.kind().name(),
                    "by": m.author().peer_id(),
                    "reason": why.reason(),
                }))
                .collect::<Vec<_>>()
        );
        v["buyer"] = json!(c.buyer.peer_id());
        v["seller"] = json!(c.seller.peer_id());
        v["moderators"] = json!(
            c.moderators
                .iter()
                .map(PublicKey::peer_id)
                .collect::<Vec<_>>()
        );
        v["allowed"] = json!(
            c.allowed_for(&self.me)
                .iter()
                .map(|k| action_name(*k))
                .collect::<Vec<_>>()
        );
        Ok(v)
    }

    /// Runs until `shutdown`: answers inbound deliveries, and retries queued messages on a
    /// timer and whenever a peer connects.
    pub async fn run(
        self,
        mut inbound: mpsc::Receiver<InboundTrade>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut events = self.events.subscribe();
        let mut tick = tokio::time::interval(RETRY_INTERVAL);
        let mut poll = tokio::time::interval(MAILBOX_POLL_INTERVAL);
        let mut expiry = tokio::time::interval(OFFER_EXPIRY_INTERVAL);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(InboundTrade { peer, request, channel }) = inbound.recv() => {
                    let (response, offense) = self.receive_judged(request).await;
                    tracing::info!(peer = %peer, response = ?response, "trade delivery");
                    let _ = self.network.respond_trade(channel, response).await;
                    if offense {
                        let _ = self.network.offense(peer).await;
                    }
                }
                ev = events.recv() => match ev {
                    Ok(NodeEvent::PeerConnected { peer }) => {
                        let this = self.clone();
                        tokio::spawn(async move { this.retry_queued(Some(peer)).await });
                    }
                    Ok(NodeEvent::RelayConnected { .. }) => {
                        let this = self.clone();
                        tokio::spawn(async move { this.fetch_mailboxes().await });
                    }
                    _ => {}
                },
                _ = poll.tick() => {
                    let this = self.clone();
                    tokio::spawn(async move { this.fetch_mailboxes().await });
                }
                _ = expiry.tick() => {
                    let this = self.clone();
                    tokio::spawn(async move { this.expire_offers().await });
                }
                _ = tick.tick() => {
                    let this = self.clone();
                    tokio::spawn(async move { this.retry_queued(None).await });
                }
            }
        }
    }
}

/// The CLI word for a message kind.
pub fn action_name(k: Kind) -> &'static str {
    match k {
        Kind::Resolution => "resolve",
        other => other.name(),
    }
}

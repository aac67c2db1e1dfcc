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
//!
//! This module holds the service's API (offer, act, settle, the run loop); the rest is split
//! by responsibility: `admit` (what strangers may make us hold), `receive` (inbound
//! deliveries), `effects` (planning and committing a step), `delivery` (a message's delivery
//! record and retry schedule), `send` (attempts, mailboxes, retries) and `view` (what the API
//! shows).

mod admit;
mod delivery;
mod effects;
mod receive;
mod send;
mod view;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use jangteo_protocol::trade::{ChainMessage, Replay, Terms, TradeChain, TradeMessage};
use jangteo_protocol::{
    FieldError, Kind, ListingId, ObjectId, PublicKey, SignedObject, public_key_from_peer_id,
};
use tokio::sync::{Mutex, broadcast, mpsc, watch};

use crate::NodeEvent;
use crate::clock::now_ms;
use crate::error::StoreError;
use crate::net::{Client, InboundTrade};
use crate::store::Store;
use admit::TradeBrief;
use effects::Plan;

pub use admit::{
    MODERATION_MAX, MODERATION_PER_SELLER, OFFER_TTL_MS, OFFERS_PER_BUYER_PER_DAY,
    OFFERS_PER_LISTING_PER_DAY, OPEN_OFFERS_PER_BUYER, OPEN_OFFERS_PER_LISTING,
};
pub use delivery::{
    DELIVERY_ATTEMPTS_MAX, DELIVERY_LIFETIME_MS, RETRY_BACKOFF_MAX_MS, RETRY_BACKOFF_MIN_MS,
};
pub use receive::{DETACHED_MAX, DETACHED_TTL, TRADE_LOG_MAX};
pub use send::{DELIVERY_TIMEOUT, RETRY_PASS_MAX};

/// How often the delivery queue is looked at.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(3);
/// How often the mailboxes on connected relays are checked.
pub const MAILBOX_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// How often open offers are checked for expiry.
pub const OFFER_EXPIRY_INTERVAL: Duration = Duration::from_secs(600);
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

use crate::api::types::TradeView;
pub use crate::api::types::{NewOffer, TradeAction};

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
    /// Messages being delivered: passes running at once (a timed one, one per peer that
    /// just connected) take each once, so none is deposited twice.
    delivering: Arc<crate::services::mailbox::InFlightItems>,
    /// Every trade held, in brief; filled at start, updated by every step.
    briefs: Arc<std::sync::Mutex<HashMap<ObjectId, TradeBrief>>>,
    /// Messages whose predecessor is not held yet: (trade, message, since).
    detached: Arc<std::sync::Mutex<VecDeque<(ObjectId, ChainMessage, Instant)>>>,
    /// Items collected for this node from relay mailboxes since it started.
    collected: Arc<std::sync::atomic::AtomicU64>,
    /// Where mailbox items that are direct messages or receipts go (the conversations
    /// service), once it is running.
    direct_mail: Arc<std::sync::OnceLock<mpsc::Sender<DirectMail>>>,
}

/// Most queued deliveries [`Trades::held_on_relays`] reads.
pub const HELD_SCAN_MAX: usize = 10_000;

/// A direct message or receipt found in a relay mailbox, for the conversations service: the
/// envelope bytes, and where to say it was handled (then the item is acknowledged).
pub type DirectMail = (Vec<u8>, tokio::sync::oneshot::Sender<()>);

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
            delivering: Arc::default(),
            briefs: Arc::new(std::sync::Mutex::new(HashMap::new())),
            detached: Arc::new(std::sync::Mutex::new(VecDeque::new())),
            collected: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            direct_mail: Arc::new(std::sync::OnceLock::new()),
        }
    }

    /// Hands the direct messages and receipts found in relay mailboxes to `sink` from now on.
    pub fn forward_direct_mail(&self, sink: mpsc::Sender<DirectMail>) {
        let _ = self.direct_mail.set(sink);
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

    /// Makes an offer on a listing held here.
    pub async fn offer(&self, o: NewOffer) -> Result<TradeView, TradeError> {
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
    pub async fn act(
        &self,
        id: &str,
        action: &str,
        a: TradeAction,
    ) -> Result<TradeView, TradeError> {
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

    /// My messages still queued that relays hold in their mailboxes for a recipient who
    /// could not be reached: (relay peer id, messages), most first (reads at most
    /// [`HELD_SCAN_MAX`] queued deliveries). Blocking.
    pub fn held_on_relays(&self) -> Result<Vec<(String, u64)>, TradeError> {
        let mut per: HashMap<String, u64> = HashMap::new();
        for (msg, _, _) in self.store.delivery_queue(HELD_SCAN_MAX)? {
            if let Some(d) = self.delivery(&msg)?
                && d.is_queued()
            {
                for relay in d.mailbox {
                    *per.entry(relay).or_default() += 1;
                }
            }
        }
        let mut v: Vec<(String, u64)> = per.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(v)
    }

    /// Items collected for this node from relay mailboxes since it started.
    pub fn collected_from_relays(&self) -> u64 {
        self.collected.load(std::sync::atomic::Ordering::Relaxed)
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

    /// (trades held, trade messages held, deliveries still queued).
    pub fn counts(&self) -> Result<(u64, u64, u64), TradeError> {
        let (t, m) = self.store.trade_counts()?;
        Ok((t, m, self.store.queued_delivery_count()?))
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
                Some(InboundTrade { peer, request, channel, slot: _slot, .. }) = inbound.recv() => {
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

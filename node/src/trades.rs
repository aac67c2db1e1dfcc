//! The trades service: this node's side of the signed offer protocol.
//!
//! It owns building, signing and storing (synced before the API answers) this node's trade
//! messages, receiving the counterparty's, replaying each trade with the protocol's pure state
//! machine, the inventory rules (accepting reserves quantity by publishing the listing's next
//! version; the last unit taken rejects the other open offers), and the delivery of every
//! message with a visible status (queued, delivered, failed with a reason), retried until the
//! counterparty is reachable. It talks to the swarm only through the network [`Client`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use jangteo_protocol::trade::{
    CHAIN_MAX, ChainMessage, Role, Terms, TradeChain, TradeMessage, TradeState,
};
use jangteo_protocol::{
    FieldError, Kind, ListingId, ObjectId, PublicKey, SignedObject, public_key_from_peer_id,
};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use serde_json::{Value, json};
use tokio::sync::{Mutex, broadcast, mpsc, watch};

use crate::NodeEvent;
use crate::error::StoreError;
use crate::ingest::now_ms;
use crate::listings::{ListingUpdate, Listings};
use crate::network::{
    Client, InboundTrade, MailboxRequest, MailboxResponse, TradeRequest, TradeResponse,
};
use crate::store::Store;

/// How often queued messages are sent again.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(3);
/// How often the mailboxes on connected relays are checked.
pub const MAILBOX_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// How long one delivery attempt may take.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Refused for a reason of the market (sold out, own listing).
    #[error("{0}")]
    Refused(String),
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

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Delivery {
    /// Relays holding a sealed copy for recipients we could not reach.
    #[serde(default)]
    mailbox: Vec<String>,
    to: Vec<String>,
    status: String,
    reason: Option<String>,
    attempts: u32,
    updated_at: u64,
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

/// The trades service.
#[derive(Debug, Clone)]
pub struct Trades {
    key: Arc<SigningKey>,
    me: PublicKey,
    store: Arc<Store>,
    listings: Listings,
    network: Client,
    events: broadcast::Sender<NodeEvent>,
    /// Serializes state changes of trades on this node (two accepts racing for one unit).
    lock: Arc<Mutex<()>>,
    /// Set while a retry pass runs, so passes never overlap.
    retrying: Arc<std::sync::atomic::AtomicBool>,
}

impl Trades {
    /// A service acting with `key`.
    pub fn new(
        key: Arc<SigningKey>,
        store: Arc<Store>,
        listings: Listings,
        network: Client,
        events: broadcast::Sender<NodeEvent>,
    ) -> Self {
        let me = PublicKey(key.verifying_key().to_bytes());
        Self {
            key,
            me,
            store,
            listings,
            network,
            events,
            lock: Arc::new(Mutex::new(())),
            retrying: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    fn decode_all(&self, raw: &[Vec<u8>]) -> Vec<ChainMessage> {
        raw.iter()
            .filter_map(|b| SignedObject::decode_and_verify(b).ok())
            .filter_map(|o| ChainMessage::new(o, u64::MAX / 2).ok())
            .collect()
    }

    /// Replays a trade from what the store holds.
    pub fn load(&self, trade: &ObjectId) -> Result<Option<TradeChain>, TradeError> {
        let msgs = self.decode_all(&self.store.trade_messages(trade)?);
        let Some(offer) = msgs
            .iter()
            .find(|m| m.id() == *trade && m.kind() == Kind::Offer)
            .cloned()
        else {
            return Ok(None);
        };
        let others = msgs.into_iter().filter(|m| m.id() != *trade).collect();
        Ok(TradeChain::replay(offer, others).ok().map(|(c, _)| c))
    }

    fn parse_id(id: &str) -> Result<ObjectId, TradeError> {
        ObjectId::from_hex(id).ok_or_else(|| {
            TradeError::NotFound(format!("{id:?} is not a trade id (64 hex digits)"))
        })
    }

    fn get_chain(&self, id: &str) -> Result<TradeChain, TradeError> {
        let tid = Self::parse_id(id)?;
        self.load(&tid)?
            .ok_or_else(|| TradeError::NotFound(format!("no trade {id} on this node")))
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

    /// Stores a message of ours (synced) and queues its delivery.
    fn commit_own(&self, chain: &TradeChain, m: &ChainMessage) -> Result<(), TradeError> {
        self.store.put_trade_message(&chain.id, &m.object)?;
        let d = Delivery {
            mailbox: Vec::new(),
            to: self
                .recipients(chain, m.kind())
                .iter()
                .map(PublicKey::peer_id)
                .collect(),
            status: "queued".into(),
            reason: None,
            attempts: 0,
            updated_at: now_ms(),
        };
        self.store
            .set_delivery(&m.id(), &serde_json::to_vec(&d).unwrap_or_default())?;
        Ok(())
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
        let chain =
            TradeChain::start(offer.clone()).map_err(|e| TradeError::Transition(e.to_string()))?;
        {
            let _g = self.lock.lock().await;
            self.commit_own(&chain, &offer)?;
        }
        self.deliver(&chain.id, &offer.id()).await;
        self.view(&chain.id.to_hex())
    }

    /// Performs `action` (accept, reject, counter, cancel, paid, shipped, received, dispute,
    /// resolve) on a trade.
    pub async fn act(&self, id: &str, action: &str, a: TradeAction) -> Result<Value, TradeError> {
        let (tid, mid) = {
            let _g = self.lock.lock().await;
            self.act_locked(id, action, a).await?
        };
        self.deliver(&tid, &mid).await;
        self.view(id)
    }

    /// [`act`](Self::act) without taking the lock or delivering: the caller holds the lock and
    /// delivers the returned message afterwards.
    async fn act_locked(
        &self,
        id: &str,
        action: &str,
        a: TradeAction,
    ) -> Result<(ObjectId, ObjectId), TradeError> {
        let kind = kind_for(action)
            .ok_or_else(|| TradeError::NotFound(format!("no trade action {action:?}")))?;
        {
            let mut chain = self.get_chain(id)?;
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
            chain.check(&msg).map_err(|e| {
                let allowed: Vec<&str> = chain
                    .allowed_for(&self.me)
                    .iter()
                    .map(|k| action_name(*k))
                    .collect();
                let why = match e {
                    jangteo_protocol::trade::TransitionError::NotAllowed { .. } => {
                        "not yours to send now".to_string()
                    }
                    other => other.to_string(),
                };
                TradeError::Transition(format!(
                    "{action} refused for trade {id} (state {}): {why}; you may now: {}",
                    chain.state.name(),
                    if allowed.is_empty() {
                        "nothing (the trade is over or waits for the other side)".into()
                    } else {
                        allowed.join(", ")
                    }
                ))
            })?;
            let before = chain.state;
            if kind == Kind::Accept && chain.seller == self.me {
                self.check_stock(&chain)?;
            }
            self.commit_own(&chain, &msg)?;
            chain
                .apply(msg.clone())
                .map_err(|e| TradeError::Transition(e.to_string()))?;
            // The message is committed: a failure to update the listing is logged, not
            // reported as a failure of the step.
            if let Err(e) = self.inventory_effects(&chain, before).await {
                tracing::warn!(trade = %chain.id, error = %e, "inventory update failed");
            }
            let _ = self.events.send(NodeEvent::TradeUpdated {
                trade: chain.id.to_hex(),
                state: chain.state.name(),
            });
            Ok((chain.id, msg.id()))
        }
    }

    fn check_stock(&self, chain: &TradeChain) -> Result<(), TradeError> {
        let held = self.store.listing(&chain.terms.listing)?;
        let available = held
            .as_ref()
            .filter(|l| l.author == chain.seller && l.listing.is_open(now_ms()))
            .map_or(0, |l| l.listing.quantity);
        if available < chain.terms.quantity {
            return Err(TradeError::Refused(format!(
                "sold out: {available} left of listing {}, the trade asks for {}",
                chain.terms.listing, chain.terms.quantity
            )));
        }
        Ok(())
    }

    /// As the seller: entering a reserving state takes the units off the listing; leaving it
    /// by cancellation puts them back. Taking the last unit rejects the other open offers.
    async fn inventory_effects(
        &self,
        chain: &TradeChain,
        before: TradeState,
    ) -> Result<(), TradeError> {
        if chain.seller != self.me {
            return Ok(());
        }
        let delta: i64 = match (before.reserves(), chain.state.reserves()) {
            (false, true) => {
                self.store
                    .set_reservation(&chain.id, chain.terms.quantity)?;
                -(chain.terms.quantity as i64)
            }
            // Only what this trade actually reserved goes back.
            (true, false) if chain.state == TradeState::Cancelled => {
                match self.store.take_reservation(&chain.id)? {
                    Some(q) => q as i64,
                    None => return Ok(()),
                }
            }
            _ => return Ok(()),
        };
        let lid = chain.terms.listing.to_hex();
        let Some(held) = self.store.listing(&chain.terms.listing)? else {
            return Ok(());
        };
        let quantity = (held.listing.quantity as i64 + delta).max(0) as u64;
        self.listings
            .update(
                &lid,
                ListingUpdate {
                    quantity: Some(quantity),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| TradeError::Refused(format!("updating the listing's quantity: {e}")))?;
        if quantity == 0 {
            self.reject_open_offers(&chain.terms.listing, &chain.id)
                .await?;
        }
        Ok(())
    }

    async fn reject_open_offers(
        &self,
        listing: &ListingId,
        except: &ObjectId,
    ) -> Result<(), TradeError> {
        for tid in self.store.trade_ids()? {
            if tid == *except {
                continue;
            }
            let Some(mut c) = self.load(&tid)? else {
                continue;
            };
            if c.terms.listing != *listing
                || c.seller != self.me
                || !matches!(c.state, TradeState::Offered | TradeState::Countered)
            {
                continue;
            }
            let kind = if c.allowed_for(&self.me).contains(&Kind::Reject) {
                Kind::Reject
            } else {
                Kind::Cancel
            };
            let mut m = TradeMessage::follow(c.id, c.head(), now_ms());
            m.note = "sold out: the last unit went to another buyer".into();
            let msg = self.sign(kind, &m)?;
            if c.check(&msg).is_ok() {
                self.commit_own(&c, &msg)?;
                let id = msg.id();
                let _ = c.apply(msg);
                let _ = self.events.send(NodeEvent::TradeUpdated {
                    trade: c.id.to_hex(),
                    state: c.state.name(),
                });
                let this = self.clone();
                tokio::spawn(async move { this.deliver(&tid, &id).await });
            }
        }
        Ok(())
    }

    /// Sends one of our messages (with the whole chain) to its recipients and records the
    /// outcome. Unreachable recipients leave it queued for the retry loop.
    pub async fn deliver(&self, trade: &ObjectId, msg: &ObjectId) {
        let Ok(Some(raw)) = self.store.delivery(msg) else {
            return;
        };
        let Ok(mut d) = serde_json::from_slice::<Delivery>(&raw) else {
            return;
        };
        if d.status != "queued" {
            return;
        }
        // Only the chain as replayed travels; a message of ours that lost a race for its
        // place is not sent again.
        let Ok(Some(chain)) = self.load(trade) else {
            return;
        };
        if !chain.messages.iter().any(|m| m.id() == *msg) {
            d.status = "failed".into();
            d.reason = Some("superseded: another message took its place in the trade first".into());
            d.updated_at = now_ms();
            let _ = self
                .store
                .set_delivery(msg, &serde_json::to_vec(&d).unwrap_or_default());
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
        let mut refused = None;
        for to in &d.to {
            let Ok(peer) = to.parse::<PeerId>() else {
                continue;
            };
            match tokio::time::timeout(
                DELIVERY_TIMEOUT,
                self.network.send_trade(peer, request.clone()),
            )
            .await
            {
                Ok(Ok(Ok(TradeResponse::Accepted))) => {}
                Ok(Ok(Ok(TradeResponse::Busy(r)))) => {
                    pending.push((to.clone(), format!("{to} is busy: {r}")))
                }
                Ok(Ok(Ok(TradeResponse::Refused(r)))) => {
                    refused = Some(format!("{to} refused: {r}"))
                }
                Ok(Ok(Err(e))) => pending.push((to.clone(), format!("{to} unreachable: {e}"))),
                Ok(Err(e)) => pending.push((to.clone(), e.to_string())),
                Err(_) => pending.push((
                    to.clone(),
                    format!("{to} did not answer within {DELIVERY_TIMEOUT:?}"),
                )),
            }
        }
        // Recipients we could not reach: leave a sealed copy on the relays we know, once.
        if refused.is_none() && !pending.is_empty() && d.mailbox.is_empty() {
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
        d.attempts += 1;
        d.updated_at = now_ms();
        if let Some(r) = refused {
            d.status = "failed".into();
            d.reason = Some(r);
        } else if pending.is_empty() {
            d.status = "delivered".into();
            d.reason = None;
        } else {
            d.reason = Some(pending.join("; "));
        }
        let _ = self
            .store
            .set_delivery(msg, &serde_json::to_vec(&d).unwrap_or_default());
        if d.status != "queued" {
            let _ = self.events.send(NodeEvent::Delivery {
                message: msg.to_hex(),
                status: if d.status == "delivered" {
                    "delivered"
                } else {
                    "failed"
                },
            });
        }
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

    /// Sends every queued message again.
    pub async fn retry_queued(&self) {
        use std::sync::atomic::Ordering;
        if self.retrying.swap(true, Ordering::AcqRel) {
            return;
        }
        self.retry_pass().await;
        self.retrying.store(false, Ordering::Release);
    }

    async fn retry_pass(&self) {
        let Ok(all) = self.store.deliveries() else {
            return;
        };
        let queued: Vec<ObjectId> = all
            .into_iter()
            .filter(|(_, raw)| {
                serde_json::from_slice::<Delivery>(raw).is_ok_and(|d| d.status == "queued")
            })
            .map(|(id, _)| id)
            .collect();
        if queued.is_empty() {
            return;
        }
        let Ok(trades) = self.store.trade_ids() else {
            return;
        };
        for tid in trades {
            let Ok(raw) = self.store.trade_messages(&tid) else {
                continue;
            };
            for m in self.decode_all(&raw) {
                if queued.contains(&m.id()) {
                    self.deliver(&tid, &m.id()).await;
                }
            }
        }
    }

    /// Handles a delivery from a peer: verify, store what joins the chain (synced), apply.
    pub async fn receive(&self, request: TradeRequest) -> TradeResponse {
        match self.receive_inner(request).await {
            Ok(()) => TradeResponse::Accepted,
            Err(e) => TradeResponse::Refused(e.to_string()),
        }
    }

    async fn receive_inner(&self, request: TradeRequest) -> Result<(), TradeError> {
        if request.messages.is_empty() || request.messages.len() > CHAIN_MAX {
            return Err(TradeError::Refused(format!(
                "a delivery holds 1-{CHAIN_MAX} messages"
            )));
        }
        let now = now_ms();
        let mut incoming = Vec::with_capacity(request.messages.len());
        for b in &request.messages {
            let obj = SignedObject::decode_and_verify(b)
                .map_err(|e| TradeError::Refused(format!("bad message: {e}")))?;
            incoming.push(
                ChainMessage::new(obj, now)
                    .map_err(|e| TradeError::Refused(format!("bad message: {e}")))?,
            );
        }
        let offer = incoming
            .iter()
            .find(|m| m.kind() == Kind::Offer)
            .cloned()
            .ok_or_else(|| {
                TradeError::Refused("the delivery does not include the trade's offer".into())
            })?;
        let tid = offer.id();
        if incoming
            .iter()
            .any(|m| m.id() != tid && m.message.trade != Some(tid))
        {
            return Err(TradeError::Refused(
                "messages of several trades in one delivery".into(),
            ));
        }
        let start =
            TradeChain::start(offer.clone()).map_err(|e| TradeError::Refused(e.to_string()))?;
        if start.role_of(&self.me).is_none() {
            return Err(TradeError::Refused(
                "this node is not a party to that trade".into(),
            ));
        }
        let _g = self.lock.lock().await;
        let before = self.load(&tid)?;
        let before_state = before.as_ref().map(|c| c.state);
        let known: HashSet<ObjectId> = before
            .as_ref()
            .map(|c| c.messages.iter().map(ChainMessage::id).collect())
            .unwrap_or_default();
        let mut all = self.decode_all(&self.store.trade_messages(&tid)?);
        all.extend(incoming.iter().cloned());
        let others: Vec<ChainMessage> = all.into_iter().filter(|m| m.id() != tid).collect();
        let (chain, left) =
            TradeChain::replay(offer, others).map_err(|e| TradeError::Refused(e.to_string()))?;
        for m in &chain.messages {
            if !known.contains(&m.id()) {
                self.store.put_trade_message(&tid, &m.object)?;
            }
        }
        // A message of theirs that was meant to follow the current head but may not, or that
        // follows nothing held, is refused with the reason. A message that lost a race for a
        // place earlier in the chain is simply not part of it (its sender sees "superseded").
        let in_chain: HashSet<ObjectId> = chain.messages.iter().map(ChainMessage::id).collect();
        let refusal = left
            .iter()
            .filter(|m| incoming.iter().any(|i| i.id() == m.id()) && m.author() != self.me)
            .find(|m| {
                m.message.prev == Some(chain.head())
                    || m.message.prev.is_none_or(|p| !in_chain.contains(&p))
            })
            .map(|bad| {
                let why = chain.check(bad).err().map_or_else(
                    || "does not follow the chain".to_string(),
                    |e| e.to_string(),
                );
                TradeError::Transition(format!("{} refused: {why}", bad.kind().name()))
            });
        if Some(chain.state) != before_state {
            let _ = self.events.send(NodeEvent::TradeUpdated {
                trade: tid.to_hex(),
                state: chain.state.name(),
            });
        }
        // Messages of ours that the sender sent back in its chain have reached it.
        for m in chain
            .messages
            .iter()
            .filter(|m| m.author() == self.me && incoming.iter().any(|i| i.id() == m.id()))
        {
            self.mark_delivered(&m.id());
        }
        let this = self.clone();
        let chain2 = chain.clone();
        let from = before_state.unwrap_or(TradeState::Offered);
        tokio::spawn(async move {
            this.after_receive(chain2, from, before_state.is_none())
                .await
        });
        match refusal {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn mark_delivered(&self, id: &ObjectId) {
        if let Ok(Some(raw)) = self.store.delivery(id)
            && let Ok(mut d) = serde_json::from_slice::<Delivery>(&raw)
            && d.status == "queued"
        {
            d.status = "delivered".into();
            d.reason = None;
            d.updated_at = now_ms();
            let _ = self
                .store
                .set_delivery(id, &serde_json::to_vec(&d).unwrap_or_default());
        }
    }

    /// Seller-side reactions to what arrived: an offer on something no longer available is
    /// rejected; a contract the buyer completed reserves stock (or is cancelled if there is
    /// none left); a cancellation returns stock.
    async fn after_receive(&self, chain: TradeChain, before: TradeState, new_trade: bool) {
        if chain.seller != self.me {
            return;
        }
        // Check and reserve under the lock, on the trade as it is now, so two contracts that
        // arrive together cannot both take the last unit.
        let sent = {
            let _g = self.lock.lock().await;
            let chain = match self.load(&chain.id) {
                Ok(Some(c)) => c,
                _ => return,
            };
            let id = chain.id.to_hex();
            let no_stock = self.check_stock(&chain).is_err();
            if new_trade && chain.state == TradeState::Offered && no_stock {
                let a = TradeAction {
                    reason: Some("sold out or no longer on offer".into()),
                    ..Default::default()
                };
                self.act_locked(&id, "reject", a).await.ok()
            } else if !before.reserves()
                && chain.state.reserves()
                && chain.state != TradeState::Completed
                && no_stock
            {
                let a = TradeAction {
                    reason: Some("sold out before your acceptance arrived".into()),
                    ..Default::default()
                };
                self.act_locked(&id, "cancel", a).await.ok()
            } else {
                if let Err(e) = self.inventory_effects(&chain, before).await {
                    tracing::warn!(trade = %chain.id, error = %e, "inventory update failed");
                }
                None
            }
        };
        if let Some((tid, mid)) = sent {
            self.deliver(&tid, &mid).await;
        }
    }

    /// Items and bytes this node holds in mailboxes for others (relays only).
    pub fn mailbox_stats(&self) -> Result<(u64, u64), TradeError> {
        Ok(self.store.mailbox_stats()?)
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
        let c = self.get_chain(id)?;
        let mut v = self.summary(&c);
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
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(InboundTrade { peer, request, channel }) = inbound.recv() => {
                    let response = self.receive(request).await;
                    tracing::info!(peer = %peer, response = ?response, "trade delivery");
                    let _ = self.network.respond_trade(channel, response).await;
                }
                ev = events.recv() => match ev {
                    Ok(NodeEvent::PeerConnected { .. }) => {
                        let this = self.clone();
                        tokio::spawn(async move { this.retry_queued().await });
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
                _ = tick.tick() => {
                    let this = self.clone();
                    tokio::spawn(async move { this.retry_queued().await });
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

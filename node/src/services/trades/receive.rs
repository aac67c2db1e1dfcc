//! Receiving a delivery from a peer: verify the offer first and who this node is in it, admit
//! a new trade, verify the rest, replay with what is held, keep messages whose predecessor is
//! not here yet aside (bounded, with a time to live), and write what joins the chain as one
//! step. Signed lies are reported as offenses of the sender.
//!
//! It never stores junk, strangers' messages or race losers, and never sends from here
//! except through the step's planned deliveries.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use jangteo_protocol::trade::{CHAIN_MAX, ChainMessage, Outside, Replay, Role, TradeChain};
use jangteo_protocol::{Kind, ObjectId, PublicKey, SignedObject};

use super::effects::Plan;
use super::{TradeError, Trades};
use crate::clock::now_ms;
use crate::error::StoreError;
use crate::net::{TradeRequest, TradeResponse};

/// Most messages held per trade: its chain plus what was set aside (proofs).
pub const TRADE_LOG_MAX: usize = CHAIN_MAX + 16;
/// Messages whose predecessor is not held yet, kept aside in memory.
pub const DETACHED_MAX: usize = 256;
/// How long such a message waits for its predecessor.
pub const DETACHED_TTL: Duration = Duration::from_secs(600);

impl Trades {
    pub(super) fn take_detached(&self, trade: &ObjectId) -> Vec<ChainMessage> {
        let Ok(mut d) = self.detached.lock() else {
            return Vec::new();
        };
        d.retain(|(_, _, since)| since.elapsed() < DETACHED_TTL);
        let (mine, rest): (Vec<_>, Vec<_>) = d.drain(..).partition(|(t, _, _)| t == trade);
        d.extend(rest);
        mine.into_iter().map(|(_, m, _)| m).collect()
    }

    pub(super) fn keep_detached(&self, trade: ObjectId, m: ChainMessage) {
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

    pub(super) async fn receive_inner(&self, request: TradeRequest) -> Result<(), TradeError> {
        let now = now_ms();
        // The offer first, and who we are in it, before paying for the other signatures.
        let (offer_at, offer) = decode_offer(&request, now)?;
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
        let incoming = decode_rest(&request, offer_at, offer, now)?;
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
        let refusal = self.set_aside(tid, &replay, &incoming_ids);
        // A trade that ended before this node took part in it (an offer and its
        // withdrawal) leaves nothing to keep.
        if is_new && replay.chain.state.is_final() {
            return refusal.map_or(Ok(()), Err);
        }
        let to_store = to_store(&replay, &held_ids, before.as_ref(), &all);
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

    /// Of the incoming messages the replay left outside the chain: a message whose
    /// predecessor is not here yet is kept aside; the first signed lie becomes the offense
    /// returned. Our own messages and those already held are not judged again.
    fn set_aside(
        &self,
        tid: ObjectId,
        replay: &Replay,
        incoming_ids: &HashSet<ObjectId>,
    ) -> Option<TradeError> {
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
        refusal
    }
}

fn bad(e: &dyn std::fmt::Display) -> TradeError {
    TradeError::Offense(format!("bad message: {e}"))
}

/// The delivery's size checked, and its offer found and verified: its position and message.
fn decode_offer(request: &TradeRequest, now: u64) -> Result<(usize, ChainMessage), TradeError> {
    if request.messages.is_empty() || request.messages.len() > CHAIN_MAX {
        return Err(TradeError::Refused(format!(
            "a delivery holds 1-{CHAIN_MAX} messages"
        )));
    }
    let offer_at = request
        .messages
        .iter()
        .position(|b| jangteo_protocol::Envelope::decode(b).is_ok_and(|e| e.kind == Kind::Offer))
        .ok_or_else(|| {
            TradeError::Refused("the delivery does not include the trade's offer".into())
        })?;
    let offer = ChainMessage::new(
        SignedObject::decode_and_verify(&request.messages[offer_at]).map_err(|e| bad(&e))?,
        now,
    )
    .map_err(|e| bad(&e))?;
    Ok((offer_at, offer))
}

/// Every message of the delivery verified, the offer first, without duplicates; all of one
/// trade.
fn decode_rest(
    request: &TradeRequest,
    offer_at: usize,
    offer: ChainMessage,
    now: u64,
) -> Result<Vec<ChainMessage>, TradeError> {
    let tid = offer.id();
    let mut incoming = vec![offer];
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
    Ok(incoming)
}

/// What is stored: the chain's new messages, and the first proof against each author whose
/// earlier message is in the chain (so the trade shows it at every replay). Nothing else:
/// junk, strangers' messages and race losers never enter the log.
fn to_store(
    replay: &Replay,
    held_ids: &HashSet<ObjectId>,
    before: Option<&Replay>,
    all: &[ChainMessage],
) -> Vec<ChainMessage> {
    let mut to_store: Vec<ChainMessage> = replay
        .chain
        .messages
        .iter()
        .filter(|m| !held_ids.contains(&m.id()))
        .cloned()
        .collect();
    let in_chain: HashSet<ObjectId> = replay.chain.messages.iter().map(ChainMessage::id).collect();
    let proven: HashSet<PublicKey> = before
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
    to_store
}

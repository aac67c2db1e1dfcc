//! Planning and committing one trade step: from a replayed chain, what this node must write
//! with it (the seller's reservation and the listing's next version, follow-ups when there is
//! no stock, delivery records, delivered and failed marks, equivocation proofs, the
//! notifications it raises), written as one synced store batch, then what follows the write
//! (events, gossip, settling the listing's other offers).
//!
//! It must not send anything before the batch is on disk: it returns the messages to deliver.

use std::collections::HashSet;

use jangteo_protocol::trade::{Replay, TradeChain, TradeMessage, TradeState};
use jangteo_protocol::{
    Kind, Listing, ListingId, ListingStatus, ObjectId, PublicKey, SignedObject,
};

use super::delivery::Delivery;
use super::{TradeError, Trades};
use crate::NodeEvent;
use crate::api::types::{NotificationKind, NotificationView};
use crate::clock::now_ms;
use crate::error::StoreError;
use crate::store::{ProofWrite, Reservation, TradeStep};

/// The first characters of an id, for a line people read.
pub(super) fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The notification of one of our messages given up on.
pub(super) fn delivery_failed(
    trade: &ObjectId,
    message: &ObjectId,
    reason: String,
    now: u64,
) -> NotificationView {
    let mut n = NotificationView::new(
        NotificationKind::DeliveryFailed,
        now,
        format!(
            "a message of yours in trade {} was not delivered: {reason}",
            short(&trade.to_hex())
        ),
    );
    n.trade = Some(trade.to_hex());
    n.message = Some(message.to_hex());
    n.reason = Some(reason);
    n
}

/// The result of planning one step: what to write and what to do once it is written.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub(super) step: TradeStep,
    /// Our new messages to deliver after the write.
    pub(super) send: Vec<ObjectId>,
    /// Objects to gossip after the write (the listing's next version, proofs).
    pub(super) gossip: Vec<(Kind, Vec<u8>)>,
}

impl Trades {
    /// Our own listing, held here and open, with the units still on offer.
    pub(super) fn open_listing(
        &self,
        id: &ListingId,
    ) -> Result<Option<(Listing, u64)>, TradeError> {
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
    pub(super) fn listing_version(
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
        // At least the interval between versions after the one held (SPEC §3.1).
        next.updated_at = crate::services::listings::next_updated_at(&cur.listing, now, false)
            .ok_or_else(|| {
                TradeError::Refused(format!(
                    "listing {id} changed too often in the last minutes; its stock is updated with its next version"
                ))
            })?;
        next.quantity = quantity;
        next.validate(now)?;
        let obj = SignedObject::sign(Kind::Listing, next.encode(), &self.key);
        Ok(Some((obj, next)))
    }

    /// Signs a follow-up message of ours on top of `chain` and adds it to the plan.
    pub(super) fn follow_up(
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
    pub(super) fn plan_effects(
        &self,
        replay: &Replay,
        delivered_back: &HashSet<ObjectId>,
        plan: &mut Plan,
    ) -> Result<TradeChain, TradeError> {
        let mut chain = replay.chain.clone();
        let now = now_ms();
        // Never sign a second message after one we already signed after (it lost a race):
        // that would be equivocation.
        let signed_after = replay
            .outside
            .iter()
            .any(|(m, _)| m.author() == self.me && m.message.prev == Some(chain.head()));
        if chain.seller == self.me && !signed_after {
            self.plan_stock(&mut chain, now, plan)?;
        }
        self.plan_deliveries(replay, &chain, delivered_back, now, plan)?;
        self.plan_proofs(replay, plan)?;
        Ok(chain)
    }

    /// The seller's side: reserve stock for a contract (or cancel when none is left), give
    /// it back when the trade ends without a sale, and refuse an offer over the stock or
    /// past its time. Any listing version it makes is gossiped.
    fn plan_stock(
        &self,
        chain: &mut TradeChain,
        now: u64,
        plan: &mut Plan,
    ) -> Result<(), TradeError> {
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
                    chain,
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
                self.follow_up(chain, kind, why, plan)?;
            }
        }
        if let Some((obj, _)) = &plan.step.listing {
            plan.gossip.push((Kind::Listing, obj.bytes().to_vec()));
        }
        Ok(())
    }

    /// A delivery record for every message of ours (new ones are sent), delivered marks for
    /// those the other side sent back, failed marks for ours that lost their place.
    fn plan_deliveries(
        &self,
        replay: &Replay,
        chain: &TradeChain,
        delivered_back: &HashSet<ObjectId>,
        now: u64,
        plan: &mut Plan,
    ) -> Result<(), TradeError> {
        for m in chain.messages.iter().filter(|m| m.author() == self.me) {
            match self.delivery(&m.id())? {
                None => {
                    let to = self
                        .recipients(chain, m.kind())
                        .iter()
                        .map(PublicKey::peer_id)
                        .collect();
                    plan.step
                        .deliveries
                        .push(Delivery::queued(to, now).write(m.id(), now));
                    plan.send.push(m.id());
                }
                Some(mut d) if delivered_back.contains(&m.id()) => {
                    if d.mark_delivered(now) {
                        plan.step.deliveries.push(d.write(m.id(), now));
                    }
                }
                Some(_) => {}
            }
        }
        for (m, why) in &replay.outside {
            if m.author() != self.me {
                continue;
            }
            if let Some(mut d) = self.delivery(&m.id())?
                && d.fail(why.reason(), now)
            {
                plan.step.deliveries.push(d.write(m.id(), now));
                plan.step.notifications.push(delivery_failed(
                    &chain.id,
                    &m.id(),
                    why.reason(),
                    now,
                ));
            }
        }
        Ok(())
    }

    /// A signed, gossiped proof for each equivocation of another key not proven yet.
    fn plan_proofs(&self, replay: &Replay, plan: &mut Plan) -> Result<(), TradeError> {
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
        Ok(())
    }

    /// The notifications a step raises for this node's person: only for what someone else
    /// did (a step they took in a trade of ours; our listing reserved by it, or sold),
    /// never for the person's own actions. One per step: a sale or a reservation says it
    /// instead of the step that made it.
    fn plan_notifications(
        &self,
        plan: &mut Plan,
        chain: &TradeChain,
        before: Option<TradeState>,
    ) -> Result<(), TradeError> {
        let in_chain: HashSet<ObjectId> = chain.messages.iter().map(|m| m.id()).collect();
        let Some(theirs) = plan
            .step
            .messages
            .iter()
            .rev()
            .find(|m| m.envelope().author != self.me && in_chain.contains(&m.id()))
        else {
            return Ok(());
        };
        let now = now_ms();
        let trade = chain.id.to_hex();
        let peer = theirs.envelope().author.peer_id();
        let step = theirs.envelope().kind.name();
        let state = crate::api::types::TradeStateName::from(chain.state);
        let ours = chain.seller == self.me;
        let title = || -> Result<String, TradeError> {
            Ok(self
                .store
                .listing(&chain.terms.listing)?
                .map_or_else(|| chain.terms.listing.to_hex(), |l| l.listing.title))
        };
        let mut n = if ours
            && chain.state == TradeState::Completed
            && before != Some(TradeState::Completed)
        {
            let mut n = NotificationView::new(
                NotificationKind::ListingSold,
                now,
                format!("your listing {:?} is sold: the buyer received it", title()?),
            );
            n.listing = Some(chain.terms.listing.to_hex());
            n
        } else if ours && let Some(Reservation::Set(q)) = plan.step.reservation {
            let mut n = NotificationView::new(
                NotificationKind::ListingReserved,
                now,
                format!("{q} of your listing {:?} reserved by a trade", title()?),
            );
            n.listing = Some(chain.terms.listing.to_hex());
            n.quantity = Some(q);
            n
        } else {
            let mut n = NotificationView::new(
                NotificationKind::TradeStep,
                now,
                format!(
                    "{step} from {} in the trade for {:?}: it is {state} now",
                    short(&peer),
                    title()?
                ),
            );
            n.step = Some(step.to_owned());
            n.state = Some(state);
            n
        };
        n.trade = Some(trade);
        n.peer = Some(peer);
        plan.step.notifications.push(n);
        Ok(())
    }

    pub(super) fn check_stock(&self, chain: &TradeChain) -> Result<(), TradeError> {
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

    /// Writes a plan as one synced batch, then updates the brief, tells listeners, and
    /// starts what follows the write (gossip, rejecting offers a sale left without stock).
    /// Returns our new messages, for the caller to deliver: nothing is sent before it is on
    /// disk.
    pub(super) async fn commit(
        &self,
        mut plan: Plan,
        chain: &TradeChain,
        before: Option<TradeState>,
    ) -> Result<Vec<ObjectId>, TradeError> {
        if chain.state == TradeState::Completed && before != Some(TradeState::Completed) {
            plan.step.changes_trust = true;
        }
        self.plan_notifications(&mut plan, chain, before)?;
        let listing_changed = plan.step.listing.is_some().then_some(chain.terms.listing);
        let touched = !plan.step.messages.is_empty()
            || !plan.step.deliveries.is_empty()
            || plan.step.reservation.is_some()
            || plan.step.listing.is_some()
            || !plan.step.proofs.is_empty();
        let mut notes = Vec::new();
        if touched {
            let store = self.store.clone();
            let step = plan.step;
            notes = tokio::task::spawn_blocking(move || store.commit_trade_step(&step, now_ms()))
                .await
                .map_err(|_| StoreError::Poisoned)??;
        }
        for notification in notes {
            let _ = self.events.send(NodeEvent::Notification {
                notification: Box::new(notification),
            });
        }
        self.set_brief(chain);
        if before != Some(chain.state) {
            let _ = self.events.send(NodeEvent::TradeUpdated {
                trade: chain.id.to_hex(),
                state: chain.state,
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
    pub(super) fn spawn_deliveries(&self, trade: ObjectId, messages: Vec<ObjectId>) {
        for mid in messages {
            let this = self.clone();
            tokio::spawn(async move { this.deliver(&trade, &mid).await });
        }
    }
}

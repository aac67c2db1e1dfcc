//! Admission of what strangers ask this node to hold: an offer on one of our listings (held,
//! open, in stock, within the per-listing and per-buyer caps) and a dispute this node is
//! named to moderate (within caps), plus the in-memory brief of every trade the caps count
//! and the offers' time to live.
//!
//! It only answers yes or no from the store and the briefs; it writes nothing.

use jangteo_protocol::trade::{Role, TradeChain, TradeState};
use jangteo_protocol::{ListingId, ObjectId, PublicKey};

use super::{TradeError, Trades};
use crate::clock::now_ms;

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
/// Most open disputes this node moderates for one seller key.
pub const MODERATION_PER_SELLER: usize = 3;
/// Most open disputes this node moderates in all.
pub const MODERATION_MAX: usize = 64;
/// What the node keeps in memory of each trade, for caps and lists.
#[derive(Debug, Clone, Copy)]
pub(super) struct TradeBrief {
    pub(super) listing: ListingId,
    pub(super) buyer: PublicKey,
    pub(super) seller: PublicKey,
    pub(super) role: Option<Role>,
    pub(super) state: TradeState,
    /// When this node first took the trade (unix ms; at start: the offer's own time).
    pub(super) since: u64,
}

impl TradeBrief {
    pub(super) fn of(c: &TradeChain, me: &PublicKey, since: u64) -> Self {
        Self {
            listing: c.terms.listing,
            buyer: c.buyer,
            seller: c.seller,
            role: c.role_of(me),
            state: c.state,
            since,
        }
    }

    pub(super) fn open_offer(&self) -> bool {
        matches!(self.state, TradeState::Offered | TradeState::Countered)
    }
}

impl Trades {
    /// The trades held with `peer` as the other party, newest first: (trade, listing,
    /// whether `peer` surely holds the trade too: it made the offer, or the trade moved past
    /// it).
    pub fn trades_with(&self, peer: &PublicKey) -> Vec<(ObjectId, ListingId, bool)> {
        let mut v: Vec<(u64, ObjectId, ListingId, bool)> = self
            .briefs()
            .into_iter()
            .filter(|(_, b)| {
                (b.buyer == *peer && b.seller == self.me)
                    || (b.seller == *peer && b.buyer == self.me)
            })
            .map(|(id, b)| {
                let held = b.buyer == *peer || b.state != TradeState::Offered;
                (b.since, id, b.listing, held)
            })
            .collect();
        v.sort_by_key(|(since, ..)| std::cmp::Reverse(*since));
        v.into_iter().map(|(_, id, l, h)| (id, l, h)).collect()
    }

    /// Whether a stranger's offer may be taken: the listing is ours, held, open, has the
    /// units, and the caps per listing and per buyer are not reached.
    pub(super) fn admit_offer(&self, start: &TradeChain) -> Result<(), TradeError> {
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
        if self.store.is_blocked(&start.buyer)? {
            return Err(TradeError::Refused(
                "blocked: this seller does not take your offers".into(),
            ));
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
    pub(super) fn admit_moderation(&self, chain: &TradeChain) -> Result<(), TradeError> {
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

    /// Whether an open offer of ours (as seller) has waited longer than [`OFFER_TTL_MS`].
    pub(super) fn offer_expired(&self, trade: &ObjectId, now: u64) -> bool {
        self.briefs
            .lock()
            .ok()
            .and_then(|b| b.get(trade).map(|x| x.since))
            .is_some_and(|since| now.saturating_sub(since) > OFFER_TTL_MS)
    }
}

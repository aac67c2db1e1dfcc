//! The trades as the API shows them ([`TradeSummary`], [`TradeView`]): the list, and one
//! trade with its history, each message's delivery status, equivocations, messages set
//! aside, and what this node may do next.
//!
//! Read only: it must not change a trade or its delivery records.

use jangteo_protocol::PublicKey;
use jangteo_protocol::trade::{Role, TradeChain};

use super::delivery::Delivery;
use super::{TradeError, Trades, action_name};
use crate::api::types::{
    DeliveryStatus, DeliveryView, EquivocationView, SetAsideView, TradeActionName,
    TradeHistoryEntry, TradeRole, TradeSummary, TradeView,
};

fn trade_role(r: Option<Role>) -> TradeRole {
    match r {
        Some(Role::Buyer) => TradeRole::Buyer,
        Some(Role::Seller) => TradeRole::Seller,
        Some(Role::Moderator) => TradeRole::Moderator,
        None => TradeRole::None,
    }
}

impl Trades {
    /// Every trade this node is part of, newest first.
    pub fn list(&self) -> Result<Vec<TradeSummary>, TradeError> {
        let mut out = Vec::new();
        for tid in self.store.trade_ids()? {
            if let Some(c) = self.load(&tid)? {
                out.push(self.summary(&c));
            }
        }
        out.sort_by_key(|v| std::cmp::Reverse(v.updated_at));
        Ok(out)
    }

    pub(super) fn summary(&self, c: &TradeChain) -> TradeSummary {
        let role = c.role_of(&self.me);
        let counterparty = if role == Some(Role::Buyer) {
            c.seller
        } else {
            c.buyer
        };
        TradeSummary {
            id: c.id.to_hex(),
            listing: c.terms.listing.to_hex(),
            role: trade_role(role),
            state: c.state.into(),
            counterparty: counterparty.peer_id(),
            price: c.terms.price,
            currency: c.terms.currency.clone(),
            quantity: c.terms.quantity,
            total: c.terms.total(),
            updated_at: c.messages.last().map_or(0, |m| m.message.at),
        }
    }

    /// One trade with its history, each message's delivery status, and what this node may
    /// do next.
    pub fn view(&self, id: &str) -> Result<TradeView, TradeError> {
        let (_, replay) = self.get_replay(id)?;
        let c = &replay.chain;
        let s = self.summary(c);
        let history = c
            .messages
            .iter()
            .map(|m| {
                let delivery = self
                    .store
                    .delivery(&m.id())
                    .ok()
                    .flatten()
                    .and_then(|raw| serde_json::from_slice::<Delivery>(&raw).ok())
                    .map(|d| DeliveryView {
                        status: d.status.into(),
                        reason: d.reason,
                        attempts: Some(d.attempts),
                        relays: d.mailbox,
                    })
                    .unwrap_or(DeliveryView {
                        status: DeliveryStatus::Received,
                        reason: None,
                        attempts: None,
                        relays: Vec::new(),
                    });
                TradeHistoryEntry {
                    kind: m.kind().name().to_owned(),
                    by: m.author().peer_id(),
                    role: trade_role(c.role_of(&m.author())),
                    at: m.message.at,
                    id: m.id().to_hex(),
                    note: m.message.note.clone(),
                    delivery,
                }
            })
            .collect();
        let equivocations = replay
            .equivocations
            .iter()
            .filter_map(|e| e.check(u64::MAX / 2).ok().map(|f| (e, f)))
            .map(|(e, f)| EquivocationView {
                by: f.author.peer_id(),
                role: trade_role(c.role_of(&f.author)),
                at: f.at,
                after: f.prev.to_hex(),
                kept: e.first.id().to_hex(),
                refused: e.second.id().to_hex(),
                refused_kind: e.second.envelope().kind.name().to_owned(),
            })
            .collect();
        let set_aside = replay
            .outside
            .iter()
            .map(|(m, why)| SetAsideView {
                id: m.id().to_hex(),
                kind: m.kind().name().to_owned(),
                by: m.author().peer_id(),
                reason: why.reason(),
            })
            .collect();
        Ok(TradeView {
            id: s.id,
            listing: s.listing,
            role: s.role,
            state: s.state,
            counterparty: s.counterparty,
            price: s.price,
            currency: s.currency,
            quantity: s.quantity,
            total: s.total,
            updated_at: s.updated_at,
            buyer: c.buyer.peer_id(),
            seller: c.seller.peer_id(),
            moderators: c.moderators.iter().map(PublicKey::peer_id).collect(),
            allowed: c
                .allowed_for(&self.me)
                .iter()
                .filter_map(|k| TradeActionName::from_name(action_name(*k)))
                .collect(),
            history,
            equivocations,
            set_aside,
            amount_check: None,
        })
    }
}

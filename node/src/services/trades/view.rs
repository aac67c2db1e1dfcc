//! The trades as the API shows them: the list, and one trade with its history, each
//! message's delivery status, equivocations, messages set aside, and what this node may do
//! next.
//!
//! Read only: it must not change a trade or its delivery records.

use jangteo_protocol::PublicKey;
use jangteo_protocol::trade::{Role, TradeChain};
use serde_json::{Value, json};

use super::delivery::Delivery;
use super::{TradeError, Trades, action_name};

pub(super) fn role_name(r: Option<Role>) -> &'static str {
    match r {
        Some(Role::Buyer) => "buyer",
        Some(Role::Seller) => "seller",
        Some(Role::Moderator) => "moderator",
        None => "none",
    }
}

impl Trades {
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

    pub(super) fn summary(&self, c: &TradeChain) -> Value {
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
}

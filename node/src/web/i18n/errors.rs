//! The services' typed errors in the page's words: each error variant, and each field a
//! [`FieldError`] names, maps to a message of the table, so a Korean or Japanese page never
//! shows the services' English. What a message cannot say (a store failure's own words) is
//! logged, and the page says an internal error happened.

use jangteo_protocol::FieldError;

use super::{Messages, fill};
use crate::api::types::AmountCheck;
use crate::services::alerts::AlertError;
use crate::services::conversations::ChatError;
use crate::services::listings::ListingError;
use crate::services::reputation::ReputationError;
use crate::services::trades::TradeError;
use crate::web::money::price_text;

impl Messages {
    /// What is wrong with a field, in this language: the field's own rule.
    pub fn field_error(&self, e: &FieldError) -> String {
        tracing::debug!(field = e.field, reason = %e.reason, "field refused");
        match e.field {
            "title" => self.err_field_title.to_owned(),
            "description" => self.err_field_description.to_owned(),
            "category" => self.err_field_category.to_owned(),
            "condition" => self.err_field_condition.to_owned(),
            "price" => self.err_field_price.to_owned(),
            "currency" => self.err_field_currency.to_owned(),
            "quantity" => self.err_field_quantity.to_owned(),
            "location" => self.err_field_location.to_owned(),
            "moderator" | "moderators" => self.err_field_moderator.to_owned(),
            "image" | "images" => self.err_field_image.to_owned(),
            "note" | "message" | "reason" | "reference" | "tracking" => {
                self.err_field_note.to_owned()
            }
            "comment" => self.err_field_comment.to_owned(),
            "score" => self.rate_score.to_owned(),
            other => fill(self.err_field_other, &[("field", other)]),
        }
    }

    /// An internal failure: the page says so; its own words go to the log.
    fn internal(&self, e: &dyn std::fmt::Display) -> String {
        tracing::warn!(error = %e, "a service failed");
        self.err_internal_short.to_owned()
    }

    /// A listing operation's refusal.
    pub fn listing_error(&self, e: &ListingError) -> String {
        match e {
            ListingError::Invalid(fe) => self.field_error(fe),
            ListingError::NotFound(_) | ListingError::BadId(_) => self.listing_not_found.to_owned(),
            ListingError::NotYours(_) => self.err_listing_not_yours.to_owned(),
            ListingError::Retracted(_) => self.err_listing_retracted.to_owned(),
            ListingError::BadQuery(_) => self.err_bad_query.to_owned(),
            ListingError::OverCap(n) => fill(self.err_listing_over_cap, &[("n", &n.to_string())]),
            ListingError::TooSoon { wait_s, .. } => {
                fill(self.err_listing_too_soon, &[("s", &wait_s.to_string())])
            }
            ListingError::Search(_) | ListingError::Store(_) => self.internal(e),
        }
    }

    /// A trade operation's refusal.
    pub fn trade_error(&self, e: &TradeError) -> String {
        tracing::debug!(error = %e, "trade step refused");
        match e {
            TradeError::NotFound(_) => self.error_not_found.to_owned(),
            TradeError::Invalid(fe) => self.field_error(fe),
            TradeError::Transition(_) => self.err_trade_transition.to_owned(),
            TradeError::Refused(_) => self.err_trade_refused.to_owned(),
            TradeError::Offense(_) => self.err_trade_offense.to_owned(),
            TradeError::Store(_) => self.internal(e),
        }
    }

    /// A rating's or trust change's refusal.
    pub fn reputation_error(&self, e: &ReputationError) -> String {
        tracing::debug!(error = %e, "reputation operation refused");
        match e {
            ReputationError::Invalid(_) => self.err_reputation_invalid.to_owned(),
            ReputationError::NotFound(_) => self.error_not_found.to_owned(),
            ReputationError::Refused(_) => self.err_rate_refused.to_owned(),
            ReputationError::Trade(te) => self.trade_error(te),
            ReputationError::Store(_) => self.internal(e),
        }
    }

    /// A message's refusal (the page shows it next to the send box).
    pub fn chat_error(&self, e: &ChatError) -> String {
        tracing::debug!(error = %e, "message refused");
        match e {
            ChatError::Invalid(fe) if fe.field == "text" => self.err_chat_text.to_owned(),
            ChatError::Invalid(fe) => self.field_error(fe),
            ChatError::Blocked(_) => self.err_chat_blocked.to_owned(),
            ChatError::Refused(_) | ChatError::Offense(_) => self.err_chat_refused.to_owned(),
            ChatError::NotFound(_) | ChatError::BadId(_) => self.error_not_found.to_owned(),
            ChatError::Busy(_) => self.err_chat_busy.to_owned(),
            ChatError::Store(_) | ChatError::Internal(_) => self.internal(e),
        }
    }

    /// A saved search's refusal.
    pub fn alert_error(&self, e: &AlertError) -> String {
        tracing::debug!(error = %e, "alert refused");
        match e {
            AlertError::BadQuery(_) => self.err_alert_bad.to_owned(),
            AlertError::TooMany(_) => self.err_alert_too_many.to_owned(),
            AlertError::NotFound(_) => self.error_not_found.to_owned(),
            AlertError::Store(_) => self.internal(e),
        }
    }

    /// The amount gate's warning for a buyer, from its figures.
    pub fn amount_warning(&self, a: &AmountCheck) -> String {
        let total = price_text(a.total, &a.currency);
        if a.supported == 0 {
            fill(self.amount_warning_none, &[("total", &total)])
        } else {
            fill(
                self.amount_warning_above,
                &[
                    ("total", &total),
                    ("supported", &price_text(a.supported, &a.currency)),
                ],
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{EN, JA, KO};
    use super::*;

    #[test]
    fn service_errors_are_said_in_the_page_language() {
        let e = ListingError::Invalid(FieldError::new("title", "must not be empty"));
        assert_eq!(KO.listing_error(&e), KO.err_field_title);
        assert_eq!(JA.listing_error(&e), JA.err_field_title);
        let e = TradeError::Transition("cannot accept: the trade is completed".into());
        assert_eq!(KO.trade_error(&e), KO.err_trade_transition);
        assert!(!KO.trade_error(&e).contains("completed"));
        let e = ReputationError::Trade(TradeError::Refused("sold out".into()));
        assert_eq!(JA.reputation_error(&e), JA.err_trade_refused);
        let e = ListingError::Invalid(FieldError::new("expires_at", "too late"));
        assert_eq!(EN.listing_error(&e), "A field is not valid (expires_at).");
        let a = AmountCheck {
            supported: 0,
            total: 140_000,
            currency: "KRW".into(),
            above: true,
            warning: Some("english".into()),
        };
        assert!(
            KO.amount_warning(&a).contains("₩140,000"),
            "{}",
            KO.amount_warning(&a)
        );
        assert!(!KO.amount_warning(&a).contains("english"));
        let e = ChatError::Invalid(FieldError::new("text", "longer than 2000 characters"));
        assert_eq!(JA.chat_error(&e), JA.err_chat_text);
        let e = ChatError::Blocked("you blocked 12D3…; unblock them to write".into());
        assert_eq!(KO.chat_error(&e), KO.err_chat_blocked);
        assert_eq!(
            KO.alert_error(&AlertError::TooMany(1000)),
            KO.err_alert_too_many
        );
    }
}

//! The web page's words: one [`Messages`] table per language ([`en`], [`ko`], [`ja`]), chosen from
//! the `jangteo_lang` cookie or the browser's `Accept-Language`. Every string a page shows
//! comes from here; templates and handlers hold none. A message may name placeholders
//! (`{n}`), filled by [`fill`]. A key missing from one language does not compile.

mod en;
mod errors;
mod ja;
mod ko;

/// Declares [`Messages`]: one `&'static str` field per key, and the list of them.
macro_rules! messages {
    ($($key:ident),* $(,)?) => {
        /// Every UI string of the web page in one language, one field per message.
        #[derive(Debug)]
        pub struct Messages {
            $(
                #[allow(missing_docs)]
                pub $key: &'static str,
            )*
        }

        impl Messages {
            /// Every (key, text) pair, in declaration order.
            pub fn entries(&self) -> Vec<(&'static str, &'static str)> {
                vec![$((stringify!($key), self.$key),)*]
            }
        }
    };
}

messages! {
    lang_code, app_name, tagline, lang_name, language_change, skip_to_content,
    nav_home, nav_post, nav_mine, nav_trades, nav_logout, nav_menu,
    search_label, search_placeholder, search_button, categories_label, all_categories,
    cat_general, cat_digital, cat_appliances, cat_furniture, cat_home, cat_kids, cat_fashion,
    cat_beauty, cat_bikes, cat_sports, cat_hobbies, cat_books, cat_tickets, cat_pets,
    cat_plants, cat_vehicles, cat_services, cat_food, cat_other,
    cond_new, cond_like_new, cond_good, cond_fair, cond_poor,
    status_active, status_sold, status_expired, status_retracted,
    sync_caught_up, sync_catching_up, sync_not_connected, sync_connected,
    home_title, home_empty, home_post_first,
    results_for, results_all, results_none, results_bad_query, page_prev, page_next, page_n,
    filters_label, filter_category, filter_condition, filter_any, filter_price_min,
    filter_price_max, filter_currency, filter_sort, filter_apply,
    sort_relevance, sort_recent, sort_price, sort_price_desc, sort_trust,
    trust_score, trust_none, no_photo, photo_of,
    listing_price, listing_condition, listing_quantity, listing_status, listing_category,
    listing_posted, listing_updated, listing_expires, listing_description, listing_location,
    listing_version, listing_own, listing_not_found,
    seller_title, seller_trust, seller_confidence, seller_completed, seller_rating,
    seller_no_rating, seller_untrusted, seller_trusted_seed,
    offer_title, offer_price, offer_quantity, offer_message, offer_send, offer_not_open,
    reviews_title, reviews_none,
    post_title, post_intro, field_photos, field_photos_hint, field_title, field_description,
    field_category, field_condition, field_condition_none, field_price, field_price_hint,
    field_currency, field_quantity, field_location, field_location_hint, post_submit,
    photos_again, err_price, err_price_currency, err_photo_type, err_photo_size, err_photo_count, err_location,
    err_quantity, err_form, posted_ok,
    time_now, time_minutes_ago, time_hours_ago, time_days_ago, time_in_days, time_in_hours,
    login_title, login_intro, login_step, login_why, login_spent,
    error_title, error_not_found, error_forbidden, error_internal, error_back,
    trades_title, trades_empty, trades_listing, trades_with, role_buyer, role_seller,
    role_moderator, role_none,
    state_offered, state_countered, state_accepted, state_paid, state_shipped,
    state_completed, state_rejected, state_cancelled, state_disputed, state_resolved,
    trade_title, trade_terms, trade_total, trade_history, trade_actions, trade_no_actions,
    trade_counterparty, trade_open_listing,
    action_accept, action_reject, action_counter, action_cancel, action_paid,
    action_shipped, action_received, action_dispute, action_resolve,
    action_price, action_reason, action_reference, action_tracking, action_outcome,
    outcome_refund, outcome_release,
    delivery_queued, delivery_delivered, delivery_failed, delivery_received,
    mine_title, mine_empty,
    nav_network, nav_settings, history_offer, state_rated, rate_title, rate_score, rate_comment, rate_submit, rated_you, rate_again, amount_warning_title, seller_profile_link, seller_page_title, seller_listings, seller_listings_none, seller_basis_personal, seller_basis_not_personal, seller_key_age, seller_negative, seller_supports, seller_equivocated, seller_trust_them, seller_untrust_them, seller_you_trust, edit_link, edit_title, edit_intro, edit_submit, retract_link, retract_title, retract_intro, retract_confirm, retract_submit, retract_must_confirm, settings_title, settings_language, settings_location, settings_location_hint, settings_location_save, settings_location_clear, settings_use_my_location, settings_saved, settings_peer_id, settings_peer_id_hint, settings_qr_alt, settings_trusted, settings_trusted_none, settings_trust_add, settings_trust_add_label, settings_trust_remove, settings_key_title, settings_key_warning, settings_key_confirm, settings_key_download, network_title, network_me, network_listen, network_reachability, network_relayed, network_peers, network_peers_none, network_relays, network_sync, network_sync_line, network_following, network_mailbox, network_mailbox_line, network_banned, network_banned_none, network_score, reach_public, reach_private, reach_unknown, status_reserved, filter_distance, filter_distance_no_location, filter_distance_bad, trades_unread, offer_moderator, field_moderators, photo_earlier, photo_later, mine_offers,
    home_near_title, home_near_none, home_no_location, home_everywhere, home_by_category, seller_through_partners, seller_through_keys, seller_through_both, seller_through_none, delivery_held_by, network_categories, network_category_line, shard_caught_up, shard_catching_up, shard_not_compared, network_held, network_held_line, network_held_none, network_collected, edit_photos, edit_photo_keep, edit_photo_position, edit_photos_add, edit_photos_none, err_field_title, err_field_description, err_field_category, err_field_condition, err_field_price, err_field_currency, err_field_quantity, err_field_location, err_field_moderator, err_field_image, err_field_note, err_field_comment, err_field_other, err_internal_short, err_listing_not_yours, err_listing_retracted, err_listing_over_cap, err_listing_too_soon, err_bad_query, err_trade_transition, err_trade_refused, err_trade_offense, err_reputation_invalid, err_rate_refused, err_photo_bad, amount_warning_none, amount_warning_above,
    mod_hidden_title, mod_hidden_intro, mod_warning_title, mod_warning_intro, mod_reported_title, mod_untrusted_intro, mod_show_anyway, mod_report_line,
    mod_basis_own, mod_basis_moderator, mod_basis_trust, reason_scam, reason_prohibited, reason_spam, reason_miscategorized, reason_duplicate,
    report_title, report_hint, report_reason, report_text, report_send, report_refused,
    thread_peer, nav_inbox, nav_notifications, badge_unread, chat_ask_title, chat_trade_title, chat_empty, chat_label, chat_placeholder, chat_send, chat_photos, chat_sending, chat_first_contact, chat_open_thread, chat_threads_about, chat_threads_none, msg_queued, msg_delivered, msg_read, msg_failed, msg_held_by, msg_photo, inbox_title, inbox_empty, inbox_listing_unknown, inbox_with, thread_title, thread_about, thread_trade, thread_open_trade, block_title, block_intro, block_confirm, block_button, unblock_button, blocked_note, blocked_title, blocked_none, block_must_confirm, err_chat_text, err_chat_blocked, err_chat_refused, err_chat_busy, notif_title, notif_empty, notif_mark_all, notif_new, notif_message, notif_trade_step, notif_delivery_failed, notif_reserved, notif_sold, notif_saved_search, alerts_title, alerts_intro, alerts_empty, alerts_add, alerts_words, alerts_save, alerts_remove, alerts_save_search, alerts_saved, alerts_removed, alerts_since, alerts_anything, alerts_within, err_alert_empty, err_alert_bad, err_alert_too_many,
}

pub use en::EN;
pub use ja::JA;
pub use ko::KO;

/// A language of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Korean.
    Ko,
    /// Japanese.
    Ja,
}

/// Name of the cookie holding the chosen language.
pub const LANG_COOKIE: &str = "jangteo_lang";

impl Lang {
    /// Every language of the page, in the order the language menu lists them.
    pub const ALL: [Lang; 3] = [Lang::Ko, Lang::En, Lang::Ja];

    /// The language's messages.
    pub fn messages(self) -> &'static Messages {
        match self {
            Lang::En => &EN,
            Lang::Ko => &KO,
            Lang::Ja => &JA,
        }
    }

    /// From a code (`en`, `ko`, `ja`).
    pub fn from_code(code: &str) -> Option<Lang> {
        match code.trim().to_ascii_lowercase().as_str() {
            "en" => Some(Lang::En),
            "ko" => Some(Lang::Ko),
            "ja" => Some(Lang::Ja),
            _ => None,
        }
    }

    /// The code, as in `<html lang>`.
    pub fn code(self) -> &'static str {
        self.messages().lang_code
    }

    /// The first of our languages the browser prefers (`Accept-Language`, by q-value),
    /// English when it names neither.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',').take(32) {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("").trim();
            let primary = tag.split('-').next().unwrap_or("");
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if let Some(lang) = Lang::from_code(primary)
                && best.is_none_or(|(bq, _)| q > bq)
            {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }
}

/// Fills `{name}` placeholders of a message.
pub fn fill(message: &str, args: &[(&str, &str)]) -> String {
    let mut out = message.to_owned();
    for (k, v) in args {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

impl Messages {
    /// The name of a category (its key when it is not one of the known ones).
    pub fn category(&self, key: &str) -> String {
        let name = match key {
            "general" => self.cat_general,
            "digital" => self.cat_digital,
            "appliances" => self.cat_appliances,
            "furniture" => self.cat_furniture,
            "home" => self.cat_home,
            "kids" => self.cat_kids,
            "fashion" => self.cat_fashion,
            "beauty" => self.cat_beauty,
            "bikes" => self.cat_bikes,
            "sports" => self.cat_sports,
            "hobbies" => self.cat_hobbies,
            "books" => self.cat_books,
            "tickets" => self.cat_tickets,
            "pets" => self.cat_pets,
            "plants" => self.cat_plants,
            "vehicles" => self.cat_vehicles,
            "services" => self.cat_services,
            "food" => self.cat_food,
            "other" => self.cat_other,
            other => return other.to_owned(),
        };
        name.to_owned()
    }

    /// The name of a condition.
    pub fn condition(&self, key: &str) -> String {
        match key {
            "new" => self.cond_new,
            "like-new" => self.cond_like_new,
            "good" => self.cond_good,
            "fair" => self.cond_fair,
            "poor" => self.cond_poor,
            other => return other.to_owned(),
        }
        .to_owned()
    }

    /// The name of a listing status.
    pub fn status(&self, key: &str) -> &'static str {
        match key {
            "sold" => self.status_sold,
            "expired" => self.status_expired,
            "retracted" => self.status_retracted,
            _ => self.status_active,
        }
    }

    /// The name of a trade state.
    pub fn trade_state(&self, key: &str) -> &'static str {
        match key {
            "countered" => self.state_countered,
            "accepted" => self.state_accepted,
            "paid" => self.state_paid,
            "shipped" => self.state_shipped,
            "completed" => self.state_completed,
            "rejected" => self.state_rejected,
            "cancelled" => self.state_cancelled,
            "disputed" => self.state_disputed,
            "resolved" => self.state_resolved,
            _ => self.state_offered,
        }
    }

    /// The name of a trade action.
    pub fn action(&self, key: &str) -> &'static str {
        match key {
            "accept" => self.action_accept,
            "reject" => self.action_reject,
            "counter" => self.action_counter,
            "cancel" => self.action_cancel,
            "paid" => self.action_paid,
            "shipped" => self.action_shipped,
            "received" => self.action_received,
            "dispute" => self.action_dispute,
            _ => self.action_resolve,
        }
    }

    /// The name of a role in a trade.
    pub fn role(&self, key: &str) -> &'static str {
        match key {
            "buyer" => self.role_buyer,
            "seller" => self.role_seller,
            "moderator" => self.role_moderator,
            _ => self.role_none,
        }
    }

    /// The name of a direct message's status (`queued`, `delivered`, `read`, `failed`).
    pub fn message_status(&self, key: &str) -> &'static str {
        match key {
            "delivered" => self.msg_delivered,
            "read" => self.msg_read,
            "failed" => self.msg_failed,
            _ => self.msg_queued,
        }
    }

    /// The name of a delivery status.
    pub fn delivery(&self, key: &str) -> &'static str {
        match key {
            "delivered" => self.delivery_delivered,
            "failed" => self.delivery_failed,
            "received" => self.delivery_received,
            _ => self.delivery_queued,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn placeholders(s: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut rest = s;
        while let Some(i) = rest.find('{') {
            let Some(j) = rest[i..].find('}') else { break };
            out.insert(rest[i + 1..i + j].to_owned());
            rest = &rest[i + j + 1..];
        }
        out
    }

    #[test]
    fn every_language_has_the_same_keys_and_placeholders_and_no_empty_message() {
        let en = EN.entries();
        let en_keys: Vec<_> = en.iter().map(|(k, _)| *k).collect();
        for lang in Lang::ALL {
            let table = lang.messages().entries();
            let keys: Vec<_> = table.iter().map(|(k, _)| *k).collect();
            assert_eq!(keys, en_keys, "keys of {lang:?}");
            for ((k, e), (_, m)) in en.iter().zip(&table) {
                assert!(!m.trim().is_empty(), "{lang:?}.{k} is empty");
                assert_eq!(
                    placeholders(m),
                    placeholders(e),
                    "placeholders of {k} in {lang:?}: {m:?} against {e:?}"
                );
            }
            assert_eq!(Lang::from_code(lang.code()), Some(lang));
        }
        assert_eq!(EN.lang_code, "en");
        assert_eq!(KO.lang_code, "ko");
        assert_eq!(JA.lang_code, "ja");
        let names: BTreeSet<_> = Lang::ALL.iter().map(|l| l.messages().lang_name).collect();
        assert_eq!(
            names.len(),
            Lang::ALL.len(),
            "every language has its own name"
        );
    }

    #[test]
    fn placeholders_are_found() {
        assert_eq!(
            placeholders("{peers} peers, {fetch} to {fetch}"),
            BTreeSet::from(["fetch".to_owned(), "peers".to_owned()])
        );
        assert!(placeholders("no braces").is_empty());
    }

    #[test]
    fn every_category_and_condition_has_a_name() {
        for lang in Lang::ALL {
            let t = lang.messages();
            for c in jangteo_protocol::listing::CATEGORIES {
                assert_ne!(t.category(c), c, "{c} in {lang:?}");
            }
            for c in ["new", "like-new", "good", "fair", "poor"] {
                assert_ne!(t.condition(c), c);
            }
        }
    }

    #[test]
    fn accept_language_picks_the_preferred_known_language() {
        assert_eq!(
            Lang::from_accept_language("ko-KR,ko;q=0.9,en;q=0.8"),
            Lang::Ko
        );
        assert_eq!(
            Lang::from_accept_language("en-US,en;q=0.9,ko;q=0.8"),
            Lang::En
        );
        assert_eq!(Lang::from_accept_language("fr, ko;q=0.5"), Lang::Ko);
        assert_eq!(Lang::from_accept_language("fr"), Lang::En);
        assert_eq!(Lang::from_accept_language(""), Lang::En);
        assert_eq!(Lang::from_accept_language("en;q=0.2, ko;q=0.7"), Lang::Ko);
        assert_eq!(
            Lang::from_accept_language("ja-JP,ja;q=0.9,en;q=0.8"),
            Lang::Ja
        );
        assert_eq!(Lang::from_accept_language("ja"), Lang::Ja);
        assert_eq!(Lang::from_accept_language("ko-KR,ja;q=0.5"), Lang::Ko);
        assert_eq!(Lang::from_accept_language("fr, ja;q=0.3"), Lang::Ja);
    }

    #[test]
    fn codes_name_the_languages() {
        assert_eq!(Lang::from_code("ja"), Some(Lang::Ja));
        assert_eq!(Lang::from_code(" JA "), Some(Lang::Ja));
        assert_eq!(Lang::from_code("ja-JP"), None);
        assert_eq!(Lang::from_code("fr"), None);
        assert_eq!(Lang::Ja.code(), "ja");
    }

    #[test]
    fn fill_replaces_placeholders() {
        assert_eq!(
            fill("caught up with {n} peers", &[("n", "3")]),
            "caught up with 3 peers"
        );
    }
}

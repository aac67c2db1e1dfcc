//! The pages: one module per area (`chat` with the inbox, a conversation, the chat panel of
//! listings and trades and blocks; `alerts` with notifications and saved searches; `home` with search, `listing` with the offer form and,
//! in `moderation`, the reports' panel and the report form,
//! `post`, `edit` with withdrawing, `seller`, `trades`, `settings` with the network page), sharing what every page has: the [`Page`] extractor (session and
//! language, or the login page when there is no session), the header ([`Chrome`]), the
//! login and error pages, and small view helpers (prices, times, listing cards).
//!
//! Pages are askama templates (`../templates/`), escaped by default: nothing that came from
//! the network is ever written unescaped. Handlers call the node's services with the same
//! types the `/v1` handlers use ([`crate::api::types`]); they hold no business rule.

pub mod alerts;
pub mod chat;
pub mod edit;
pub mod home;
pub mod listing;
pub mod moderation;
pub mod post;
pub mod seller;
pub mod settings;
pub mod trades;

use askama::Template;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use super::WebState;
use super::i18n::{LANG_COOKIE, Lang, Messages, fill};
use super::session::{self, Session};
use std::collections::HashSet;

use crate::api::types::ListingView;
use crate::clock::now_ms;
use crate::services::trades::Trades;

/// A request from a logged-in browser: its session and language.
#[derive(Debug, Clone)]
pub struct Page {
    /// The messages of the page's language.
    pub t: &'static Messages,
    /// The session.
    pub session: Session,
    /// Path and query of this request (where the language switch comes back to).
    pub here: String,
    /// The node's own peer id.
    pub me: String,
    /// Messages not read yet, in all conversations (the header's badge).
    pub unread_messages: u64,
    /// Notifications not marked read (the header's badge).
    pub unread_notifications: u64,
}

/// (messages unread, notifications unread) for the header's badges; zero where a count
/// cannot be read (the page still opens).
pub async fn unread_counts(w: &WebState) -> (u64, u64) {
    let (chats, alerts) = (w.api.conversations.clone(), w.api.alerts.clone());
    tokio::task::spawn_blocking(move || {
        let messages = chats.counts().map_or(0, |(_, unread)| unread);
        let q = crate::api::types::NotificationsQuery {
            unread: Some(true),
            limit: Some(1),
        };
        let notifications = alerts.notifications(&q).map_or(0, |l| l.unread);
        (messages, notifications)
    })
    .await
    .unwrap_or((0, 0))
}

/// The language of a request: its cookie, else `Accept-Language`.
pub fn lang_of(headers: &HeaderMap) -> Lang {
    session::cookie(headers, LANG_COOKIE)
        .and_then(Lang::from_code)
        .unwrap_or_else(|| {
            Lang::from_accept_language(
                headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
            )
        })
}

impl FromRequestParts<WebState> for Page {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, w: &WebState) -> Result<Self, Response> {
        let t = lang_of(&parts.headers).messages();
        let session = session::cookie(&parts.headers, &session::cookie_name(w.addr.port()))
            .and_then(|id| w.sessions.get(id));
        match session {
            Some(session) => {
                let (unread_messages, unread_notifications) = unread_counts(w).await;
                Ok(Page {
                    t,
                    session,
                    here: parts
                        .uri
                        .path_and_query()
                        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
                    me: w.api.peer_id.clone(),
                    unread_messages,
                    unread_notifications,
                })
            }
            None => Err(login_page(t, StatusCode::UNAUTHORIZED, false)),
        }
    }
}

/// A category or other choice in a menu: key and name.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The value sent.
    pub key: String,
    /// The name shown.
    pub name: String,
    /// Whether it is the current one.
    pub selected: bool,
}

/// What every page's header needs.
#[derive(Debug)]
pub struct Chrome {
    /// Messages.
    pub t: &'static Messages,
    /// The page's title.
    pub title: String,
    /// The session's CSRF token, for the forms.
    pub csrf: String,
    /// The search box's text.
    pub q: String,
    /// Where the language switch comes back to.
    pub here: String,
    /// The category menu.
    pub categories: Vec<Choice>,
    /// The language menu: each language's code and own name, the page's one selected.
    pub languages: Vec<Choice>,
    /// Which menu entry is current: home, post, mine, trades.
    pub nav: &'static str,
    /// Messages not read yet (the chats badge; hidden at zero).
    pub unread_messages: u64,
    /// Notifications not read yet (the notifications badge; hidden at zero).
    pub unread_notifications: u64,
}

impl Chrome {
    /// The header of a page titled `title`.
    pub fn new(page: &Page, title: impl Into<String>, nav: &'static str) -> Self {
        Chrome {
            t: page.t,
            title: title.into(),
            csrf: page.session.csrf.clone(),
            q: String::new(),
            here: page.here.clone(),
            categories: category_choices(page.t, ""),
            languages: language_choices(page.t),
            nav,
            unread_messages: page.unread_messages,
            unread_notifications: page.unread_notifications,
        }
    }
}

/// The categories as menu choices, `selected` marked.
pub fn category_choices(t: &Messages, selected: &str) -> Vec<Choice> {
    jangteo_protocol::listing::CATEGORIES
        .iter()
        .map(|c| Choice {
            key: (*c).to_owned(),
            name: t.category(c),
            selected: *c == selected,
        })
        .collect()
}

/// The languages as menu choices: code, name in that language, the page's language selected.
pub fn language_choices(t: &Messages) -> Vec<Choice> {
    Lang::ALL
        .iter()
        .map(|l| Choice {
            key: l.code().to_owned(),
            name: l.messages().lang_name.to_owned(),
            selected: l.code() == t.lang_code,
        })
        .collect()
}

/// The conditions as menu choices, `selected` marked.
pub fn condition_choices(t: &Messages, selected: &str) -> Vec<Choice> {
    ["new", "like-new", "good", "fair", "poor"]
        .iter()
        .map(|c| Choice {
            key: (*c).to_owned(),
            name: t.condition(c),
            selected: *c == selected,
        })
        .collect()
}

/// Renders a template into a page answer.
pub fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "page template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "page template failed\n").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginTemplate {
    t: &'static Messages,
    spent: bool,
}

/// The page shown without a session: how to open the page with `jangteo ui`.
pub fn login_page(t: &'static Messages, status: StatusCode, spent: bool) -> Response {
    render(status, &LoginTemplate { t, spent })
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorTemplate {
    c: Chrome,
    message: String,
}

/// An error page inside the usual frame.
pub fn error_page(page: &Page, status: StatusCode, message: String) -> Response {
    render(
        status,
        &ErrorTemplate {
            c: Chrome::new(page, page.t.error_title, ""),
            message,
        },
    )
}

/// The plain page of a request refused by the origin check (no session is looked at).
pub fn forbidden(req: &Request) -> Response {
    let t = lang_of(req.headers()).messages();
    let mut r = (
        StatusCode::FORBIDDEN,
        Html(format!(
            "<!doctype html><meta charset=\"utf-8\"><title>403</title><p>{}</p><p><a href=\"/\">{}</a></p>",
            t.error_forbidden, t.error_back
        )),
    )
        .into_response();
    super::guard::set_security_headers(&mut r);
    r
}

/// The answer to a form whose CSRF token is not the session's.
pub fn csrf_refused(page: &Page) -> Response {
    error_page(
        page,
        StatusCode::FORBIDDEN,
        page.t.error_forbidden.to_owned(),
    )
}

/// 404 page (with the login page when there is no session).
pub async fn not_found(page: Page) -> Response {
    error_page(
        &page,
        StatusCode::NOT_FOUND,
        page.t.error_not_found.to_owned(),
    )
}

/// A relative time: "3 h ago", "in 29 days".
pub fn when(t: &Messages, at_ms: u64) -> String {
    let now = now_ms();
    let n = |v: u64| v.to_string();
    if at_ms > now {
        let d = (at_ms - now) / 1000;
        return if d >= 86_400 {
            fill(t.time_in_days, &[("n", &n(d / 86_400))])
        } else {
            fill(t.time_in_hours, &[("n", &n((d / 3600).max(1)))])
        };
    }
    let d = (now - at_ms) / 1000;
    match d {
        0..60 => t.time_now.to_owned(),
        60..3600 => fill(t.time_minutes_ago, &[("n", &n(d / 60))]),
        3600..86_400 => fill(t.time_hours_ago, &[("n", &n(d / 3600))]),
        _ => fill(t.time_days_ago, &[("n", &n(d / 86_400))]),
    }
}

/// Shortens a peer id for display: `12D3Ko…x7Qa`.
pub fn short_peer(p: &str) -> String {
    let chars: Vec<char> = p.chars().collect();
    if chars.len() <= 14 {
        return p.to_owned();
    }
    format!(
        "{}…{}",
        chars[..6].iter().collect::<String>(),
        chars[chars.len() - 4..].iter().collect::<String>()
    )
}

/// A listing as a card in a grid.
#[derive(Debug, Clone)]
pub struct Card {
    /// Listing id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Formatted price.
    pub price: String,
    /// First photo's blob id.
    pub thumb: Option<String>,
    /// Status key (active, sold, …).
    pub status: &'static str,
    /// Status name.
    pub status_name: &'static str,
    /// Seller trust, as shown.
    pub trust: String,
    /// When posted, as shown.
    pub posted: String,
    /// Category name.
    pub category: String,
    /// Distance, when known.
    pub distance: Option<String>,
}

impl Card {
    /// The card of a listing.
    pub fn new(t: &Messages, v: &ListingView) -> Self {
        Card {
            id: v.id.clone(),
            title: v.title.clone(),
            price: super::money::price_text(v.price, &v.currency),
            thumb: v.images.first().cloned(),
            status: v.status.as_str(),
            status_name: t.status(v.status.as_str()),
            trust: trust_text(t, v.seller_score),
            posted: when(t, v.created_at),
            category: t.category(&v.category),
            distance: v.distance_km.map(|d| format!("{d:.1} km")),
        }
    }
}

impl Card {
    /// Marks a sold-out listing that a trade of mine holds as reserved.
    pub fn reserved_if(mut self, t: &Messages, reserving: &HashSet<String>) -> Self {
        if self.status == "sold" && reserving.contains(&self.id) {
            self.status = "reserved";
            self.status_name = t.status_reserved;
        }
        self
    }
}

/// Listings a trade on this node holds items of (accepted, paid, shipped or disputed), so
/// a sold-out one among them shows as reserved, not sold (blocking).
pub fn reserving(trades: &Trades) -> HashSet<String> {
    trades
        .list()
        .map(|list| {
            list.into_iter()
                .filter(|s| {
                    matches!(
                        s.state.as_str(),
                        "accepted" | "paid" | "shipped" | "disputed"
                    )
                })
                .map(|s| s.listing)
                .collect()
        })
        .unwrap_or_default()
}

/// "Trust 0.41" or "No trust yet".
pub fn trust_text(t: &Messages, score: Option<f64>) -> String {
    match score {
        Some(s) if s > 0.0 => fill(t.trust_score, &[("score", &format!("{s:.2}"))]),
        _ => t.trust_none.to_owned(),
    }
}

/// Where a form may send the browser back to: a local path only.
pub fn local_path(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/"
    }
}

/// The language switch's form.
#[derive(Debug, serde::Deserialize)]
pub struct LangForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    next: String,
}

/// `POST /lang`: remember the language in a cookie and go back.
pub async fn set_lang(page: Page, axum::Form(f): axum::Form<LangForm>) -> Response {
    if !page.session.csrf_ok(&f.csrf) {
        return csrf_refused(&page);
    }
    let lang = Lang::from_code(&f.to).unwrap_or(Lang::En);
    let cookie = format!(
        "{LANG_COOKIE}={}; Path=/; SameSite=Strict; Max-Age=31536000",
        lang.code()
    );
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to(local_path(&f.next)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path("/search?q=x"), "/search?q=x");
        assert_eq!(local_path("//evil.example/"), "/");
        assert_eq!(local_path("http://evil.example/"), "/");
        assert_eq!(local_path("/\\evil.example"), "/");
        assert_eq!(local_path(""), "/");
    }

    #[test]
    fn peers_are_shortened() {
        assert_eq!(
            short_peer("12D3KooWabcdefghijklmnopqrstuvwxyz"),
            "12D3Ko…wxyz"
        );
        assert_eq!(short_peer("short"), "short");
    }
}

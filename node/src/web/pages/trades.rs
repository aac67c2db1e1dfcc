//! The trades inbox and a trade's page: terms, state, the history with each message's
//! delivery, and a form for each action the trades service allows now (and only those).
//! Acting goes through the trades service as `POST /v1/trades/{id}/{action}` does. The
//! parties' chat panel ([`super::chat`]) is the same conversation as the listing's questions.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::chat::{ChatPanel, Draft, SendForm, after_send};
use super::{Chrome, Page, csrf_refused, error_page, render, short_peer, when};
use crate::api::types::{DeliveryStatus, NewRating, TradeAction, TradeView};
use crate::clock::now_ms;
use crate::services::reputation::Review;
use crate::services::trades::TradeError;
use crate::web::WebState;
use crate::web::i18n::{Messages, fill};
use crate::web::money::{minor_digits, parse_price, price_text};
use jangteo_protocol::ObjectId;

/// A trade in the inbox.
#[derive(Debug, Clone)]
pub struct TradeRow {
    id: String,
    role: &'static str,
    state: &'static str,
    state_key: &'static str,
    with: String,
    terms: String,
    when: String,
    /// It changed since the person last opened it.
    unread: bool,
}

#[derive(Template)]
#[template(path = "trades.html")]
struct InboxTemplate {
    c: Chrome,
    rows: Vec<TradeRow>,
}

fn terms(t: &Messages, quantity: u64, price: u64, currency: &str) -> String {
    fill(
        t.trade_terms,
        &[
            ("q", &quantity.to_string()),
            ("price", &price_text(price, currency)),
        ],
    )
}

/// `GET /trades`.
pub async fn inbox(State(w): State<WebState>, page: Page) -> Response {
    let t = page.t;
    let (trades, store) = (w.api.trades.clone(), w.api.store.clone());
    let listed = tokio::task::spawn_blocking(move || {
        let list = trades.list()?;
        let seen: Vec<Option<u64>> = list
            .iter()
            .map(|s| ObjectId::from_hex(&s.id).and_then(|id| store.trade_seen(&id).ok().flatten()))
            .collect();
        Ok::<_, TradeError>((list, seen))
    })
    .await;
    match listed {
        Ok(Ok((list, seen))) => render(
            StatusCode::OK,
            &InboxTemplate {
                c: Chrome::new(&page, t.trades_title, "trades"),
                rows: list
                    .iter()
                    .zip(seen)
                    .map(|(s, seen)| TradeRow {
                        unread: seen.is_none_or(|at| at < s.updated_at),
                        id: s.id.clone(),
                        role: t.role(s.role.as_str()),
                        state: t.trade_state(s.state.as_str()),
                        state_key: s.state.as_str(),
                        with: fill(t.trades_with, &[("peer", &short_peer(&s.counterparty))]),
                        terms: terms(t, s.quantity, s.price, &s.currency),
                        when: when(t, s.updated_at),
                    })
                    .collect(),
            },
        ),
        Ok(Err(e)) => error_page(
            &page,
            StatusCode::INTERNAL_SERVER_ERROR,
            fill(t.error_internal, &[("reason", &e.to_string())]),
        ),
        Err(e) => error_page(
            &page,
            StatusCode::INTERNAL_SERVER_ERROR,
            fill(t.error_internal, &[("reason", &e.to_string())]),
        ),
    }
}

/// One message of the history, as shown.
#[derive(Debug, Clone)]
pub struct HistoryLine {
    kind: String,
    by: &'static str,
    when: String,
    note: String,
    delivery: &'static str,
    delivery_key: &'static str,
    /// The relays holding a copy for an offline recipient, in words.
    held: Vec<String>,
    reason: String,
}

/// An action the user may take now, with the field it needs.
#[derive(Debug, Clone)]
pub struct ActionForm {
    key: &'static str,
    name: &'static str,
    /// price, reason, reference, tracking, outcome or none.
    field: &'static str,
    label: &'static str,
    required: bool,
}

#[derive(Template)]
#[template(path = "trade.html")]
struct TradeTemplate {
    c: Chrome,
    v: TradeView,
    role: &'static str,
    state: &'static str,
    terms: String,
    total: String,
    counterparty: String,
    history: Vec<HistoryLine>,
    actions: Vec<ActionForm>,
    error: Option<String>,
    steps: Vec<(&'static str, bool)>,
    /// The amount gate's warning for the buyer, if the total is above what trust supports.
    warning: Option<String>,
    /// Whether the rating form is shown (a completed trade of mine).
    can_rate: bool,
    /// My rating of it, if I rated it.
    rated: Option<String>,
    rated_comment: String,
    /// The parties' conversation (not for a moderator).
    chat: Option<ChatPanel>,
}

async fn trade_page(
    (w, page): (&WebState, &Page),
    status: StatusCode,
    held: Held,
    error: Option<String>,
    chat_draft: Draft,
) -> Response {
    let t = page.t;
    let Held { v, mine } = held;
    // The two parties' conversation on this listing: the same thread as its questions.
    let chat = if matches!(v.role.as_str(), "buyer" | "seller") {
        Some(
            super::chat::panel(
                w,
                page,
                (&v.listing, &v.counterparty),
                t.chat_trade_title,
                format!("/trade/{}/say", v.id),
                chat_draft,
            )
            .await,
        )
    } else {
        None
    };
    let actions = v
        .allowed
        .iter()
        .map(|a| {
            let key = a.as_str();
            let (field, label, required) = match key {
                "counter" => ("price", t.action_price, true),
                "reject" | "cancel" => ("reason", t.action_reason, false),
                "dispute" => ("reason", t.action_reason, true),
                "paid" => ("reference", t.action_reference, false),
                "shipped" => ("tracking", t.action_tracking, false),
                "resolve" => ("outcome", t.action_outcome, true),
                _ => ("none", "", false),
            };
            ActionForm {
                key,
                name: t.action(key),
                field,
                label,
                required,
            }
        })
        .collect();
    let order = ["offered", "accepted", "paid", "shipped", "completed"];
    let reached = order
        .iter()
        .position(|s| *s == v.state.as_str())
        .or_else(|| (v.state.as_str() == "countered").then_some(0));
    let mut steps: Vec<(&'static str, bool)> = order
        .iter()
        .enumerate()
        .map(|(i, s)| (t.trade_state(s), reached.is_some_and(|r| i <= r)))
        .collect();
    steps.push((t.state_rated, mine.is_some()));
    let completed = v.state.as_str() == "completed";
    let party = matches!(v.role.as_str(), "buyer" | "seller");
    let history = v
        .history
        .iter()
        .map(|h| HistoryLine {
            kind: if h.kind == "offer" {
                t.history_offer.to_owned()
            } else {
                t.action(&h.kind).to_owned()
            },
            by: t.role(h.role.as_str()),
            when: when(t, h.at),
            note: h.note.clone(),
            delivery: t.delivery(h.delivery.status.as_str()),
            delivery_key: h.delivery.status.as_str(),
            held: if h.delivery.status == DeliveryStatus::Queued {
                h.delivery
                    .relays
                    .iter()
                    .map(|r| fill(t.delivery_held_by, &[("relay", &short_peer(r))]))
                    .collect()
            } else {
                Vec::new()
            },
            // The network's own words for why it is queued or failed; when relays hold it,
            // the line above says it in the page's language.
            reason: match h.delivery.status {
                DeliveryStatus::Queued if !h.delivery.relays.is_empty() => String::new(),
                _ => h.delivery.reason.clone().unwrap_or_default(),
            },
        })
        .collect();
    render(
        status,
        &TradeTemplate {
            c: match &chat {
                Some(p) => p.chrome(Chrome::new(page, t.trade_title, "trades")),
                None => Chrome::new(page, t.trade_title, "trades"),
            },
            role: t.role(v.role.as_str()),
            state: t.trade_state(v.state.as_str()),
            terms: terms(t, v.quantity, v.price, &v.currency),
            total: price_text(v.total, &v.currency),
            counterparty: short_peer(&v.counterparty),
            history,
            actions,
            error,
            steps,
            warning: v
                .amount_check
                .as_ref()
                .filter(|a| a.above)
                .map(|a| t.amount_warning(a)),
            can_rate: completed && party,
            rated: mine
                .as_ref()
                .map(|r| fill(t.rated_you, &[("stars", &super::listing::stars(r.score))])),
            rated_comment: mine.map(|r| r.comment).unwrap_or_default(),
            chat,
            v,
        },
    )
}

/// A trade as held here: its view (with the amount check for its buyer) and my rating.
#[derive(Debug)]
pub struct Held {
    v: TradeView,
    mine: Option<Review>,
}

async fn load(w: &WebState, id: String) -> Result<Held, TradeError> {
    let (trades, rep) = (w.api.trades.clone(), w.api.reputation.clone());
    tokio::task::spawn_blocking(move || {
        let v = rep.gate(trades.view(&id)?);
        let mine = if v.state.as_str() == "completed" {
            rep.my_rating(&id).ok().flatten()
        } else {
            None
        };
        Ok(Held { v, mine })
    })
    .await
    .map_err(|e| TradeError::NotFound(e.to_string()))?
}

fn load_error(page: &Page, e: TradeError) -> Response {
    match e {
        TradeError::NotFound(_) => error_page(
            page,
            StatusCode::NOT_FOUND,
            page.t.error_not_found.to_owned(),
        ),
        e => error_page(
            page,
            StatusCode::INTERNAL_SERVER_ERROR,
            fill(page.t.error_internal, &[("reason", &e.to_string())]),
        ),
    }
}

/// `GET /trade/{id}`: the trade, which the person has now seen.
pub async fn show(State(w): State<WebState>, page: Page, Path(id): Path<String>) -> Response {
    if let Some(tid) = ObjectId::from_hex(&id) {
        let store = w.api.store.clone();
        let marked =
            tokio::task::spawn_blocking(move || store.mark_trade_seen(&tid, now_ms())).await;
        if let Ok(Err(e)) = marked {
            tracing::warn!(trade = %id, error = %e, "could not mark the trade seen");
        }
    }
    match load(&w, id).await {
        Ok(held) => trade_page((&w, &page), StatusCode::OK, held, None, None).await,
        Err(e) => load_error(&page, e),
    }
}

/// An action's form.
#[derive(Debug, Deserialize)]
pub struct ActForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    reference: String,
    #[serde(default)]
    tracking: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    score: String,
    #[serde(default)]
    comment: String,
}

/// `POST /trade/{id}/say`: writes in the parties' conversation about the trade's listing
/// (either may write first), with the photos chosen, then shows the trade's chat again.
pub async fn say(
    State(w): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    mut f: SendForm,
) -> Response {
    if f.forged(&page) {
        return csrf_refused(&page);
    }
    let held = match load(&w, id).await {
        Ok(v) => v,
        Err(e) => return load_error(&page, e),
    };
    let v = &held.v;
    if !matches!(v.role.as_str(), "buyer" | "seller") {
        return error_page(
            &page,
            StatusCode::FORBIDDEN,
            page.t.err_chat_refused.to_owned(),
        );
    }
    let sent = f
        .send(&w, page.t, |text, photos| {
            w.api
                .conversations
                .write(&v.listing, &v.counterparty, text, photos)
        })
        .await;
    let Err((status, why)) = sent else {
        return after_send(&format!("/trade/{}", v.id));
    };
    let draft = Some((f.typed().to_owned(), why));
    trade_page((&w, &page), status, held, None, draft).await
}

/// `POST /trade/{id}/{action}`: takes the step, then shows the trade again.
pub async fn act(
    State(w): State<WebState>,
    page: Page,
    Path((id, action)): Path<(String, String)>,
    axum::Form(f): axum::Form<ActForm>,
) -> Response {
    if !page.session.csrf_ok(&f.csrf) {
        return csrf_refused(&page);
    }
    let t = page.t;
    let held = match load(&w, id.clone()).await {
        Ok(v) => v,
        Err(e) => return load_error(&page, e),
    };
    if action == "rate" {
        return rate(&w, &page, held, &id, &f).await;
    }
    let v = &held.v;
    let opt = |s: &str| {
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_owned())
    };
    let price = match opt(&f.price) {
        None => None,
        Some(p) => match parse_price(&p, &v.currency) {
            Some(p) => Some(p),
            None => {
                let digits = minor_digits(&v.currency).to_string();
                let msg = fill(
                    t.err_price,
                    &[("currency", &v.currency), ("digits", &digits)],
                );
                return trade_page((&w, &page), StatusCode::BAD_REQUEST, held, Some(msg), None)
                    .await;
            }
        },
    };
    let a = TradeAction {
        price,
        reason: opt(&f.reason),
        reference: opt(&f.reference),
        tracking: opt(&f.tracking),
        outcome: opt(&f.outcome),
    };
    match w.api.trades.act(&id, &action, a).await {
        Ok(_) => Redirect::to(&format!("/trade/{id}")).into_response(),
        Err(e) => {
            trade_page(
                (&w, &page),
                StatusCode::CONFLICT,
                held,
                Some(t.trade_error(&e)),
                None,
            )
            .await
        }
    }
}

/// `POST /trade/{id}/rate`: rates the other party of a completed trade (1-5 stars and a
/// comment), as `POST /v1/ratings` does.
async fn rate(w: &WebState, page: &Page, held: Held, id: &str, f: &ActForm) -> Response {
    let t = page.t;
    let Some(score) = f
        .score
        .trim()
        .parse::<u8>()
        .ok()
        .filter(|s| (1..=5).contains(s))
    else {
        return trade_page(
            (w, page),
            StatusCode::BAD_REQUEST,
            held,
            Some(t.rate_score.to_owned()),
            None,
        )
        .await;
    };
    let comment = f.comment.replace("\r\n", "\n");
    let comment = comment.trim();
    let r = NewRating {
        trade: id.to_owned(),
        score,
        comment: (!comment.is_empty()).then(|| comment.to_owned()),
    };
    match w.api.reputation.rate(r).await {
        Ok(_) => Redirect::to(&format!("/trade/{id}")).into_response(),
        Err(e) => {
            trade_page(
                (w, page),
                StatusCode::CONFLICT,
                held,
                Some(t.reputation_error(&e)),
                None,
            )
            .await
        }
    }
}

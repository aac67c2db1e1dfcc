//! Notifications (the list, each linked to its conversation, trade or listing; marking one
//! or all read), saved-search alerts (the list, adding one with the search page's filters,
//! removing one), and the header's unread counts as JSON for the page's script.
//!
//! Everything goes through the alerts and conversations services as `/v1/notifications`
//! and `/v1/alerts` do; a notification's words are made here from its kind and ids, in the
//! page's language (the service's English `text` is not shown).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::home::{SearchForm, filter_choices};
use super::{Choice, Chrome, Page, csrf_refused, error_page, local_path, render, short_peer, when};
use crate::api::types::{
    MarkRead, NotificationKind, NotificationView, NotificationsQuery, SavedSearchView,
};
use crate::services::alerts::AlertError;
use crate::web::WebState;
use crate::web::i18n::{Messages, fill};
use crate::web::money::price_text;

/// Notifications listed on the page, newest first.
pub const NOTIFICATIONS_SHOWN: usize = 200;

/// A notification as shown.
#[derive(Debug, Clone)]
pub struct NotificationLine {
    id: u64,
    read: bool,
    text: String,
    when: String,
    /// Its conversation, trade or listing.
    link: Option<String>,
}

fn notification_line(t: &Messages, n: &NotificationView) -> NotificationLine {
    let peer = n.peer.as_deref().map(short_peer).unwrap_or_default();
    let title = n.title.clone().unwrap_or_default();
    let text = match n.kind {
        NotificationKind::Message => fill(t.notif_message, &[("peer", &peer)]),
        NotificationKind::TradeStep => {
            let step = match n.step.as_deref() {
                Some("offer") | None => t.history_offer,
                Some(s) => t.action(s),
            };
            fill(t.notif_trade_step, &[("peer", &peer), ("step", step)])
        }
        NotificationKind::DeliveryFailed => t.notif_delivery_failed.to_owned(),
        NotificationKind::ListingReserved => fill(t.notif_reserved, &[("title", &title)]),
        NotificationKind::ListingSold => fill(t.notif_sold, &[("title", &title)]),
        NotificationKind::SavedSearch => {
            let price = match (n.price, n.currency.as_deref()) {
                (Some(p), Some(c)) => price_text(p, c),
                _ => String::new(),
            };
            fill(
                t.notif_saved_search,
                &[("title", &title), ("price", &price)],
            )
        }
    };
    let link = match (&n.thread, &n.trade, &n.listing) {
        (Some(th), _, _) => Some(format!("/inbox/{th}")),
        (None, Some(tr), _) => Some(format!("/trade/{tr}")),
        (None, None, Some(l)) => Some(format!("/listing/{l}")),
        _ => None,
    };
    NotificationLine {
        id: n.id,
        read: n.read,
        text,
        when: when(t, n.at),
        link,
    }
}

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsTemplate {
    c: Chrome,
    lines: Vec<NotificationLine>,
    unread: u64,
}

/// `GET /notifications`.
pub async fn notifications(State(w): State<WebState>, page: Page) -> Response {
    let t = page.t;
    let a = w.api.alerts.clone();
    let q = NotificationsQuery {
        unread: None,
        limit: Some(NOTIFICATIONS_SHOWN),
    };
    match tokio::task::spawn_blocking(move || a.notifications(&q)).await {
        Ok(Ok(list)) => render(
            StatusCode::OK,
            &NotificationsTemplate {
                c: Chrome::new(&page, t.notif_title, "notifications"),
                lines: list
                    .notifications
                    .iter()
                    .map(|n| notification_line(t, n))
                    .collect(),
                unread: list.unread,
            },
        ),
        Ok(Err(e)) => error_page(&page, StatusCode::INTERNAL_SERVER_ERROR, t.alert_error(&e)),
        Err(e) => error_page(
            &page,
            StatusCode::INTERNAL_SERVER_ERROR,
            fill(t.error_internal, &[("reason", &e.to_string())]),
        ),
    }
}

/// The mark-read form: one notification (`id`, then on to `next`), or `all`.
#[derive(Debug, Deserialize)]
pub struct MarkForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    all: Option<String>,
    #[serde(default)]
    next: String,
}

/// `POST /notifications/read`: marks one notification read and follows its link, or marks
/// them all read and comes back.
pub async fn mark_read(
    State(w): State<WebState>,
    page: Page,
    axum::Form(f): axum::Form<MarkForm>,
) -> Response {
    if !page.session.csrf_ok(&f.csrf) {
        return csrf_refused(&page);
    }
    let m = MarkRead {
        ids: f.id.into_iter().collect(),
        all: f.all.is_some(),
    };
    let a = w.api.alerts.clone();
    match tokio::task::spawn_blocking(move || a.mark_read(&m)).await {
        Ok(Ok(_)) => {
            let next = if f.next.is_empty() {
                "/notifications"
            } else {
                local_path(&f.next)
            };
            Redirect::to(next).into_response()
        }
        Ok(Err(e @ AlertError::NotFound(_))) => {
            error_page(&page, StatusCode::NOT_FOUND, page.t.alert_error(&e))
        }
        Ok(Err(e)) => error_page(&page, StatusCode::BAD_REQUEST, page.t.alert_error(&e)),
        Err(e) => error_page(
            &page,
            StatusCode::INTERNAL_SERVER_ERROR,
            fill(page.t.error_internal, &[("reason", &e.to_string())]),
        ),
    }
}

/// A saved search as listed.
#[derive(Debug, Clone)]
pub struct AlertLine {
    id: u64,
    what: String,
    since: String,
    /// Its results now.
    search: String,
}

fn alert_line(t: &Messages, v: &SavedSearchView) -> AlertLine {
    let s = &v.search;
    let mut parts = Vec::new();
    if let Some(q) = &s.q {
        parts.push(format!("“{q}”"));
    }
    if let Some(c) = &s.category {
        parts.push(t.category(c));
    }
    if let Some(c) = &s.condition {
        parts.push(t.condition(c));
    }
    let cur = s.currency.as_deref().unwrap_or("");
    match (s.min_price, s.max_price) {
        (None, None) => {}
        (min, max) => parts.push(format!(
            "{}–{}",
            min.map(|p| price_text(p, cur)).unwrap_or_default(),
            max.map(|p| price_text(p, cur)).unwrap_or_default()
        )),
    }
    if let Some(km) = s.radius_km {
        parts.push(fill(t.alerts_within, &[("km", &format!("{km}"))]));
    }
    let what = if parts.is_empty() {
        t.alerts_anything.to_owned()
    } else {
        parts.join(" · ")
    };
    let form = SearchForm::of_saved(s);
    AlertLine {
        id: v.id,
        what,
        since: fill(t.alerts_since, &[("when", &when(t, v.created_at))]),
        search: form.link(1),
    }
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsTemplate {
    c: Chrome,
    lines: Vec<AlertLine>,
    f: SearchForm,
    has_location: bool,
    categories: Vec<Choice>,
    conditions: Vec<Choice>,
    currencies: Vec<Choice>,
    error: Option<String>,
    saved: bool,
    removed: bool,
}

async fn alerts_page(
    w: &WebState,
    page: &Page,
    headers: &HeaderMap,
    status: StatusCode,
    f: SearchForm,
    error: Option<String>,
) -> Response {
    let t = page.t;
    let a = w.api.alerts.clone();
    let list = match tokio::task::spawn_blocking(move || a.list()).await {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            return error_page(page, StatusCode::INTERNAL_SERVER_ERROR, t.alert_error(&e));
        }
        Err(e) => {
            return error_page(
                page,
                StatusCode::INTERNAL_SERVER_ERROR,
                fill(t.error_internal, &[("reason", &e.to_string())]),
            );
        }
    };
    let [categories, conditions, currencies] = filter_choices(t, &f);
    render(
        status,
        &AlertsTemplate {
            c: Chrome::new(page, t.alerts_title, "notifications"),
            lines: list.iter().rev().map(|v| alert_line(t, v)).collect(),
            has_location: super::settings::near_of(headers).is_some(),
            categories,
            conditions,
            currencies,
            error,
            saved: page.here.contains("saved=1"),
            removed: page.here.contains("removed=1"),
            f,
        },
    )
}

/// `GET /alerts`.
pub async fn alerts(State(w): State<WebState>, page: Page, headers: HeaderMap) -> Response {
    alerts_page(
        &w,
        &page,
        &headers,
        StatusCode::OK,
        SearchForm::default(),
        None,
    )
    .await
}

/// The add-alert form: the search page's filters and the token.
#[derive(Debug, Deserialize)]
pub struct AlertForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    search: SearchForm,
}

/// `POST /alerts`: saves the search (from the alerts page or the search page's button).
pub async fn add(
    State(w): State<WebState>,
    page: Page,
    headers: HeaderMap,
    axum::Form(f): axum::Form<AlertForm>,
) -> Response {
    if !page.session.csrf_ok(&f.csrf) {
        return csrf_refused(&page);
    }
    let t = page.t;
    let near = super::settings::near_of(&headers);
    let s = match f.search.saved_search(t, near) {
        Ok(s) => s,
        Err(msg) => {
            return alerts_page(
                &w,
                &page,
                &headers,
                StatusCode::BAD_REQUEST,
                f.search,
                Some(msg),
            )
            .await;
        }
    };
    let a = w.api.alerts.clone();
    match tokio::task::spawn_blocking(move || a.add(s)).await {
        Ok(Ok(_)) => Redirect::to("/alerts?saved=1").into_response(),
        Ok(Err(e)) => {
            let status = match e {
                AlertError::TooMany(_) => StatusCode::CONFLICT,
                AlertError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            alerts_page(
                &w,
                &page,
                &headers,
                status,
                f.search,
                Some(t.alert_error(&e)),
            )
            .await
        }
        Err(e) => error_page(
            &page,
            StatusCode::INTERNAL_SERVER_ERROR,
            fill(t.error_internal, &[("reason", &e.to_string())]),
        ),
    }
}

/// The remove form.
#[derive(Debug, Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /alerts/{id}/remove`.
pub async fn remove(
    State(w): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<RemoveForm>,
) -> Response {
    if !page.session.csrf_ok(&f.csrf) {
        return csrf_refused(&page);
    }
    let t = page.t;
    let Ok(id) = id.parse::<u64>() else {
        return error_page(&page, StatusCode::NOT_FOUND, t.error_not_found.to_owned());
    };
    let a = w.api.alerts.clone();
    match tokio::task::spawn_blocking(move || a.remove(id)).await {
        Ok(Ok(_)) => Redirect::to("/alerts?removed=1").into_response(),
        Ok(Err(e @ AlertError::NotFound(_))) => {
            error_page(&page, StatusCode::NOT_FOUND, t.alert_error(&e))
        }
        Ok(Err(e)) => error_page(&page, StatusCode::INTERNAL_SERVER_ERROR, t.alert_error(&e)),
        Err(e) => error_page(
            &page,
            StatusCode::INTERNAL_SERVER_ERROR,
            fill(t.error_internal, &[("reason", &e.to_string())]),
        ),
    }
}

/// The header's counts, for the page's script.
#[derive(Debug, Serialize)]
pub struct Counts {
    /// Messages not read yet.
    pub messages: u64,
    /// Notifications not read yet.
    pub notifications: u64,
}

/// `GET /counts`: the header's unread counts (the page's script asks when an event says
/// they changed).
pub async fn counts(page: Page) -> Response {
    Json(Counts {
        messages: page.unread_messages,
        notifications: page.unread_notifications,
    })
    .into_response()
}

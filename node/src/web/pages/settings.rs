//! Settings (my location, language, my peer id with a QR code, the people I trust, the
//! people I blocked, a backup of my key) and the network page (addresses, reachability, peers, relays, catching up
//! overall and per category, my messages held on relays, mailbox items held for others,
//! banned peers).
//!
//! The location is a browser preference: a `SameSite=Strict` cookie read by home and
//! search for distances. Trust seeds go through the reputation service. The key backup is a
//! POST with the CSRF token and a ticked warning, never a link a page could make the
//! browser follow.

use askama::Template;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{Chrome, Page, csrf_refused, error_page, render, short_peer};
use crate::api::types::Reachability;
use crate::services::listings::parse_lat_lon;
use crate::sync::SyncStatus;
use crate::web::WebState;
use crate::web::i18n::fill;
use crate::web::session;

/// Cookie holding my location (`lat,lon`) for distances.
pub const NEAR_COOKIE: &str = "jangteo_near";

/// My saved location, if this browser has one.
pub fn near_of(headers: &axum::http::HeaderMap) -> Option<String> {
    session::cookie(headers, NEAR_COOKIE)
        .filter(|v| parse_lat_lon(v).is_some())
        .map(str::to_owned)
}

/// A trusted key as listed.
#[derive(Debug, Clone)]
pub struct TrustedLine {
    peer: String,
    short: String,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsTemplate {
    c: Chrome,
    me: String,
    qr: String,
    near: String,
    location_error: Option<String>,
    saved: bool,
    trusted: Vec<TrustedLine>,
    key_error: Option<&'static str>,
    /// The people I blocked, the latest first.
    blocked: Vec<TrustedLine>,
}

/// The peer id's QR code as an inline SVG (made here from our own peer id: base58 only).
fn qr_svg(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => {
            let svg = code
                .render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(180, 180)
                .quiet_zone(true)
                .build();
            // Inline in HTML: drop the XML declaration.
            match svg.find("<svg") {
                Some(i) => svg[i..].to_owned(),
                None => String::new(),
            }
        }
        Err(_) => String::new(),
    }
}

async fn settings_page(
    w: &WebState,
    page: &Page,
    headers: &axum::http::HeaderMap,
    status: StatusCode,
    location_error: Option<String>,
    key_error: Option<&'static str>,
) -> Response {
    let t = page.t;
    let rep = w.api.reputation.clone();
    let trusted = tokio::task::spawn_blocking(move || rep.trusted())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let chats = w.api.conversations.clone();
    let blocked = tokio::task::spawn_blocking(move || chats.blocked())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    render(
        status,
        &SettingsTemplate {
            c: Chrome::new(page, t.settings_title, "settings"),
            qr: qr_svg(&page.me),
            me: page.me.clone(),
            near: near_of(headers).unwrap_or_default(),
            location_error,
            saved: page.here.contains("saved=1"),
            trusted: trusted
                .into_iter()
                .map(|p| TrustedLine {
                    short: short_peer(&p),
                    peer: p,
                })
                .collect(),
            key_error,
            blocked: blocked
                .into_iter()
                .map(|b| TrustedLine {
                    short: short_peer(&b.peer_id),
                    peer: b.peer_id,
                })
                .collect(),
        },
    )
}

/// `GET /settings`.
pub async fn show(
    State(w): State<WebState>,
    page: Page,
    headers: axum::http::HeaderMap,
) -> Response {
    settings_page(&w, &page, &headers, StatusCode::OK, None, None).await
}

/// The location form.
#[derive(Debug, Deserialize)]
pub struct LocationForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    clear: Option<String>,
}

/// `POST /settings/location`: saves (or forgets) my location in this browser.
pub async fn location(
    State(w): State<WebState>,
    page: Page,
    headers: axum::http::HeaderMap,
    axum::Form(f): axum::Form<LocationForm>,
) -> Response {
    if !page.session.csrf_ok(&f.csrf) {
        return csrf_refused(&page);
    }
    if f.clear.is_some() || f.location.trim().is_empty() {
        let cookie = format!("{NEAR_COOKIE}=; Path=/; SameSite=Strict; Max-Age=0");
        return (
            [(header::SET_COOKIE, cookie)],
            Redirect::to("/settings?saved=1"),
        )
            .into_response();
    }
    match parse_lat_lon(f.location.trim()) {
        Some(p) => {
            let cookie = format!(
                "{NEAR_COOKIE}={:.5},{:.5}; Path=/; SameSite=Strict; Max-Age=31536000",
                p.lat, p.lon
            );
            (
                [(header::SET_COOKIE, cookie)],
                Redirect::to("/settings?saved=1"),
            )
                .into_response()
        }
        None => {
            let msg = page.t.err_location.to_owned();
            settings_page(
                &w,
                &page,
                &headers,
                StatusCode::BAD_REQUEST,
                Some(msg),
                None,
            )
            .await
        }
    }
}

/// The key backup form.
#[derive(Debug, Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    understood: Option<String>,
}

/// `POST /settings/key`: the key file as a download, once the warning is ticked.
pub async fn key(
    State(w): State<WebState>,
    page: Page,
    headers: axum::http::HeaderMap,
    axum::Form(f): axum::Form<KeyForm>,
) -> Response {
    if !page.session.csrf_ok(&f.csrf) {
        return csrf_refused(&page);
    }
    if f.understood.as_deref() != Some("yes") {
        let msg = page.t.retract_must_confirm;
        return settings_page(
            &w,
            &page,
            &headers,
            StatusCode::BAD_REQUEST,
            None,
            Some(msg),
        )
        .await;
    }
    let path = w.api.data_dir.join(crate::keys::KEY_FILE);
    match tokio::fs::read(&path).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{}\"", crate::keys::KEY_FILE),
                ),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => error_page(
            &page,
            StatusCode::INTERNAL_SERVER_ERROR,
            fill(page.t.error_internal, &[("reason", &e.to_string())]),
        ),
    }
}

/// A connected peer as listed.
#[derive(Debug, Clone)]
pub struct PeerLine {
    peer: String,
    short: String,
    addr: String,
    score: String,
}

/// One category's sync state as listed.
#[derive(Debug, Clone)]
pub struct ShardLine {
    name: String,
    /// caught_up, catching_up or not_reconciled (a CSS class).
    key: &'static str,
    state: &'static str,
    line: String,
}

/// A relay holding my messages for an offline recipient, as listed.
#[derive(Debug, Clone)]
pub struct HeldLine {
    relay: String,
    short: String,
    line: String,
}

#[derive(Template)]
#[template(path = "network.html")]
struct NetworkTemplate {
    c: Chrome,
    me: String,
    listen: Vec<String>,
    reachability: &'static str,
    relayed: Vec<String>,
    peers_title: String,
    peers: Vec<PeerLine>,
    relays_title: String,
    relays: Vec<String>,
    sync: String,
    following: String,
    mailbox: String,
    banned: Vec<String>,
    shards: Vec<ShardLine>,
    held: Vec<HeldLine>,
    collected: String,
}

/// `GET /network`.
pub async fn network(State(w): State<WebState>, page: Page) -> Response {
    let t = page.t;
    let info = match w.api.network.info().await {
        Ok(i) => i,
        Err(e) => {
            return error_page(
                &page,
                StatusCode::SERVICE_UNAVAILABLE,
                fill(t.error_internal, &[("reason", &e.to_string())]),
            );
        }
    };
    let relays: Vec<String> = w
        .api
        .network
        .relays()
        .await
        .map(|r| r.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    let (items, bytes) = w.api.trades.mailbox_stats().unwrap_or((0, 0));
    let trades = w.api.trades.clone();
    let held = tokio::task::spawn_blocking(move || trades.held_on_relays())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let sy = &info.sync;
    let shards = sy
        .categories
        .iter()
        .map(|c| {
            let (key, state) = match c.status {
                SyncStatus::CaughtUp => ("caught_up", t.shard_caught_up),
                SyncStatus::CatchingUp => ("catching_up", t.shard_catching_up),
                SyncStatus::NotReconciled => ("not_reconciled", t.shard_not_compared),
            };
            ShardLine {
                name: t.category(c.category),
                key,
                state,
                line: fill(
                    t.network_category_line,
                    &[
                        ("peers", &c.peers.to_string()),
                        ("fetch", &c.to_fetch.to_string()),
                    ],
                ),
            }
        })
        .collect();
    render(
        StatusCode::OK,
        &NetworkTemplate {
            c: Chrome::new(&page, t.network_title, "network"),
            me: page.me.clone(),
            listen: info.listen_addrs.clone(),
            reachability: match Reachability::from_name(info.reachability.as_str()) {
                Reachability::Public => t.reach_public,
                Reachability::Private => t.reach_private,
                Reachability::Unknown => t.reach_unknown,
            },
            relayed: info.relayed_addrs.clone(),
            peers_title: fill(t.network_peers, &[("n", &info.peers.len().to_string())]),
            peers: info
                .peers
                .iter()
                .map(|p| PeerLine {
                    short: short_peer(&p.peer_id),
                    peer: p.peer_id.clone(),
                    addr: p.addrs.first().cloned().unwrap_or_default(),
                    score: p
                        .score
                        .map(|s| fill(t.network_score, &[("s", &format!("{s:.1}"))]))
                        .unwrap_or_default(),
                })
                .collect(),
            relays_title: fill(t.network_relays, &[("n", &relays.len().to_string())]),
            relays,
            sync: fill(
                t.network_sync_line,
                &[
                    ("peers", &sy.peers_reconciled.to_string()),
                    ("fetch", &sy.to_fetch.to_string()),
                    ("fetched", &sy.objects_fetched.to_string()),
                ],
            ),
            following: info
                .following
                .iter()
                .map(|c| t.category(c))
                .collect::<Vec<_>>()
                .join(", "),
            mailbox: fill(
                t.network_mailbox_line,
                &[("items", &items.to_string()), ("bytes", &bytes.to_string())],
            ),
            banned: info.banned.clone(),
            shards,
            held: held
                .into_iter()
                .map(|(relay, n)| HeldLine {
                    short: short_peer(&relay),
                    line: fill(t.network_held_line, &[("n", &n.to_string())]),
                    relay,
                })
                .collect(),
            collected: fill(
                t.network_collected,
                &[("n", &w.api.trades.collected_from_relays().to_string())],
            ),
        },
    )
}

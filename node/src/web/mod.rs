//! The web page every node serves on its API address: `/` and below are pages, `/v1` stays
//! the JSON API ([`crate::api`]). [`app`] puts the two together.
//!
//! One file per concern: [`session`] (one-time login codes, session cookies, CSRF tokens),
//! [`guard`] (Host and Origin checks, security headers), [`pages`] (askama templates, one
//! module per page area), [`photos`] (blobs served only as sniffed raster images),
//! [`assets`] (embedded CSS and JS), [`i18n`] (Korean and English messages), [`money`]
//! (prices as people read and type them).
//!
//! The page calls the same services with the same types as the `/v1` handlers; it never
//! calls the API over HTTP, never shows the API token, and holds no business rule.

pub mod assets;
pub mod guard;
pub mod i18n;
pub mod money;
pub mod pages;
pub mod photos;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tower::ServiceExt;

use crate::api::ApiState;
use pages::{Page, csrf_refused, lang_of, login_page};
use session::Sessions;

/// Largest body of a page's form (photos have their own limit, [`pages::post::BODY_MAX`]).
pub const FORM_BODY_MAX: usize = 64 * 1024;

/// What the page handlers share.
#[derive(Debug, Clone)]
pub struct WebState {
    /// The services, as the API holds them.
    pub api: ApiState,
    /// Login codes and sessions.
    pub sessions: Arc<Sessions>,
    /// The address the node serves on (the only Host and Origin accepted).
    pub addr: SocketAddr,
}

/// The node's HTTP service: `/v1…` to the API, everything else to the web page. The split
/// is made on the path before either router runs, so neither sees the other's routes or
/// path parameters.
pub fn app(api: ApiState, addr: SocketAddr) -> Router {
    let web = router(WebState {
        sessions: api.ui_sessions.clone(),
        api: api.clone(),
        addr,
    });
    let api = crate::api::router(api);
    Router::new().fallback(move |req: Request| {
        let path = req.uri().path();
        let to = if path == "/v1" || path.starts_with("/v1/") {
            api.clone()
        } else {
            web.clone()
        };
        async move {
            match to.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            }
        }
    })
}

/// The web page's routes, behind the Host/Origin guard and the form body limit.
pub fn router(w: WebState) -> Router {
    Router::new()
        .route("/", get(pages::home::home))
        .route("/search", get(pages::home::search))
        .route("/mine", get(pages::home::mine))
        .route("/listing/{id}", get(pages::listing::show))
        .route("/listing/{id}/offer", post(pages::listing::offer))
        .route(
            "/listing/{id}/ask",
            post(pages::listing::ask).layer(DefaultBodyLimit::max(pages::chat::SEND_BODY_MAX)),
        )
        .route("/inbox", get(pages::chat::inbox))
        .route(
            "/inbox/{thread}",
            get(pages::chat::thread)
                .post(pages::chat::say)
                .layer(DefaultBodyLimit::max(pages::chat::SEND_BODY_MAX)),
        )
        .route("/block", post(pages::chat::block))
        .route("/unblock", post(pages::chat::unblock))
        .route("/notifications", get(pages::alerts::notifications))
        .route("/notifications/read", post(pages::alerts::mark_read))
        .route(
            "/alerts",
            get(pages::alerts::alerts).post(pages::alerts::add),
        )
        .route("/alerts/{id}/remove", post(pages::alerts::remove))
        .route("/counts", get(pages::alerts::counts))
        .route("/listing/{id}/report", post(pages::moderation::report))
        .route(
            "/listing/{id}/edit",
            get(pages::edit::form)
                .post(pages::edit::submit)
                .layer(DefaultBodyLimit::max(pages::post::BODY_MAX)),
        )
        .route(
            "/listing/{id}/retract",
            get(pages::edit::confirm).post(pages::edit::retract),
        )
        .route("/seller/{peer}", get(pages::seller::show))
        .route("/trust", post(pages::seller::trust))
        .route("/distrust", post(pages::seller::distrust))
        .route("/settings", get(pages::settings::show))
        .route("/settings/location", post(pages::settings::location))
        .route("/settings/key", post(pages::settings::key))
        .route("/network", get(pages::settings::network))
        .route(
            "/post",
            get(pages::post::form)
                .post(pages::post::submit)
                .layer(DefaultBodyLimit::max(pages::post::BODY_MAX)),
        )
        .route("/trades", get(pages::trades::inbox))
        .route("/trade/{id}", get(pages::trades::show))
        .route(
            "/trade/{id}/say",
            post(pages::trades::say).layer(DefaultBodyLimit::max(pages::chat::SEND_BODY_MAX)),
        )
        .route("/trade/{id}/{action}", post(pages::trades::act))
        .route("/photo/{id}", get(photos::photo))
        .route("/thumb/{id}", get(photos::thumb))
        .route("/events", get(events))
        .route("/login", get(login))
        .route("/logout", post(logout))
        .route("/lang", post(pages::set_lang))
        .route("/assets/app.css", get(assets::css))
        .route("/assets/app.js", get(assets::js))
        .fallback(pages::not_found)
        .layer(DefaultBodyLimit::max(FORM_BODY_MAX))
        .layer(middleware::from_fn_with_state(
            w.clone(),
            guard::check_request,
        ))
        .with_state(w)
}

/// `GET /events`: the node's live events for the page's script (the same stream as
/// `GET /v1/events`, behind the session cookie instead of the token).
async fn events(State(w): State<WebState>, _page: Page) -> Response {
    match crate::api::events::stream(&w.api.events, crate::api::events::EventFilter::all()) {
        Ok(sse) => sse.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `?code=` of the login link.
#[derive(Debug, serde::Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    code: Option<String>,
}

/// `GET /login?code=…`: spends a one-time code for a session cookie and goes to `/`, so
/// the code leaves the address bar; without a valid code, the login page.
async fn login(
    State(w): State<WebState>,
    headers: HeaderMap,
    query: Result<Query<LoginQuery>, QueryRejection>,
) -> Response {
    let t = lang_of(&headers).messages();
    let code = query.ok().and_then(|Query(q)| q.code).unwrap_or_default();
    if code.is_empty() {
        return login_page(t, StatusCode::OK, false);
    }
    match w.sessions.redeem(code.trim()) {
        Some(s) => (
            [(header::SET_COOKIE, session::set_cookie(w.addr.port(), &s))],
            Redirect::to("/"),
        )
            .into_response(),
        None => login_page(t, StatusCode::FORBIDDEN, true),
    }
}

/// The logout form.
#[derive(Debug, serde::Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /logout`: ends the session.
async fn logout(
    State(w): State<WebState>,
    page: Page,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if !page.session.csrf_ok(&f.csrf) {
        return csrf_refused(&page);
    }
    w.sessions.end(&page.session.id);
    (
        [(header::SET_COOKIE, session::clear_cookie(w.addr.port()))],
        Redirect::to("/login"),
    )
        .into_response()
}

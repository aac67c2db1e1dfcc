//! A seller's page: their trust as this node sees it and why (personal or not yet, the
//! evidence behind it, the amounts it supports), every review held here, their listings,
//! and a button to trust or stop trusting them (the reputation service's trust seeds).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::home::run_search;
use super::listing::{ReviewLine, review_lines};
use super::{Card, Chrome, Page, csrf_refused, error_page, render, short_peer, trust_text};
use crate::api::types::{ReputationView, SearchQuery, TrustBasis};
use crate::services::reputation::ReputationError;
use crate::web::WebState;
use crate::web::i18n::{Messages, fill};
use crate::web::money::price_text;

/// Reviews shown on a seller's page.
pub const SELLER_REVIEWS: usize = 50;
/// Listings shown on a seller's page.
pub const SELLER_LISTINGS: usize = 60;

#[derive(Template)]
#[template(path = "seller.html")]
struct SellerTemplate {
    c: Chrome,
    peer: String,
    own: bool,
    trust: String,
    basis: &'static str,
    /// Through whom my trust reaches them ("trusted through 3 of your trade partners").
    through: String,
    evidence: Vec<String>,
    advice: Option<&'static str>,
    equivocated: bool,
    trusted: bool,
    reviews: Vec<ReviewLine>,
    cards: Vec<super::Card>,
    /// Whether I blocked them (the block form, [`super::chat::block`]).
    blocked: bool,
}

/// The reason for a peer's trust in people's words: how many of my trade partners and of
/// the keys I trust it flows through.
pub fn through_text(t: &Messages, r: &ReputationView) -> String {
    let (p, k) = (r.through.partners, r.through.trusted_keys);
    match (p, k) {
        (0, 0) => t.seller_through_none.to_owned(),
        (p, 0) => fill(t.seller_through_partners, &[("n", &p.to_string())]),
        (0, k) => fill(t.seller_through_keys, &[("n", &k.to_string())]),
        (p, k) => fill(
            t.seller_through_both,
            &[("p", &p.to_string()), ("k", &k.to_string())],
        ),
    }
}

fn evidence(page: &Page, r: &ReputationView) -> Vec<String> {
    let t = page.t;
    let mut out = vec![
        fill(
            t.seller_confidence,
            &[("c", &format!("{:.2}", r.confidence))],
        ),
        fill(
            t.seller_completed,
            &[("n", &r.completed_trades.to_string())],
        ),
        match r.rating {
            Some(x) => fill(
                t.seller_rating,
                &[("r", &format!("{x:.1}")), ("n", &r.raters.to_string())],
            ),
            None => t.seller_no_rating.to_owned(),
        },
    ];
    if r.negative_raters > 0 {
        out.push(fill(
            t.seller_negative,
            &[("n", &r.negative_raters.to_string())],
        ));
    }
    if let Some(days) = r.key_age_days {
        out.push(fill(t.seller_key_age, &[("n", &days.to_string())]));
    }
    for s in &r.supports {
        out.push(fill(
            t.seller_supports,
            &[("amount", &price_text(s.value, &s.currency))],
        ));
    }
    out
}

/// `GET /seller/{peer}`.
pub async fn show(State(w): State<WebState>, page: Page, Path(peer): Path<String>) -> Response {
    let t = page.t;
    let rep = w.api.reputation.clone();
    let p = peer.clone();
    let held = tokio::task::spawn_blocking(move || {
        let view = rep.reputation(&p)?;
        let reviews = rep.reviews(&p, SELLER_REVIEWS)?;
        Ok::<_, ReputationError>((view, reviews))
    })
    .await;
    let (view, reviews) = match held {
        Ok(Ok(v)) => v,
        Ok(Err(ReputationError::Invalid(_))) => {
            return error_page(&page, StatusCode::NOT_FOUND, t.error_not_found.to_owned());
        }
        Ok(Err(e)) => {
            return error_page(
                &page,
                StatusCode::INTERNAL_SERVER_ERROR,
                t.reputation_error(&e),
            );
        }
        Err(e) => {
            return error_page(
                &page,
                StatusCode::INTERNAL_SERVER_ERROR,
                fill(t.error_internal, &[("reason", &e.to_string())]),
            );
        }
    };
    let q = SearchQuery {
        seller: Some(peer.clone()),
        sort: Some("recent".into()),
        limit: Some(SELLER_LISTINGS),
        ..Default::default()
    };
    let cards = run_search(&w, q)
        .await
        .map(|v| v.iter().map(|l| Card::new(t, l)).collect())
        .unwrap_or_default();
    render(
        StatusCode::OK,
        &SellerTemplate {
            c: Chrome::new(
                &page,
                fill(t.seller_page_title, &[("peer", &short_peer(&peer))]),
                "",
            ),
            own: peer == page.me,
            trust: trust_text(t, Some(view.score)),
            basis: match view.basis {
                TrustBasis::Personal => t.seller_basis_personal,
                TrustBasis::NotYetPersonal => t.seller_basis_not_personal,
            },
            through: through_text(t, &view),
            evidence: evidence(&page, &view),
            advice: view.advice.is_some().then_some(t.settings_trusted_none),
            equivocated: view.equivocated,
            trusted: view.trusted,
            reviews: review_lines(t, &reviews),
            cards,
            blocked: super::chat::peer_blocked(&w, &peer).await,
            peer,
        },
    )
}

/// The trust button's form.
#[derive(Debug, Deserialize)]
pub struct TrustForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    peer: String,
    #[serde(default)]
    next: String,
}

/// `POST /trust` and `POST /distrust`: changes this node's trust seeds, then goes back.
pub async fn change_trust(
    w: &WebState,
    page: &Page,
    f: TrustForm,
    add: bool,
) -> Result<Response, Response> {
    if !page.session.csrf_ok(&f.csrf) {
        return Err(csrf_refused(page));
    }
    let rep = w.api.reputation.clone();
    let peer = f.peer.trim().to_owned();
    let done = tokio::task::spawn_blocking(move || {
        if add {
            rep.trust(&peer)
        } else {
            rep.distrust(&peer)
        }
    })
    .await;
    match done {
        Ok(Ok(_)) => Ok(Redirect::to(super::local_path(&f.next)).into_response()),
        Ok(Err(e)) => Err(error_page(
            page,
            StatusCode::BAD_REQUEST,
            page.t.reputation_error(&e),
        )),
        Err(e) => Err(error_page(
            page,
            StatusCode::INTERNAL_SERVER_ERROR,
            fill(page.t.error_internal, &[("reason", &e.to_string())]),
        )),
    }
}

/// `POST /trust`.
pub async fn trust(
    State(w): State<WebState>,
    page: Page,
    axum::Form(f): axum::Form<TrustForm>,
) -> Response {
    change_trust(&w, &page, f, true).await.unwrap_or_else(|e| e)
}

/// `POST /distrust`.
pub async fn distrust(
    State(w): State<WebState>,
    page: Page,
    axum::Form(f): axum::Form<TrustForm>,
) -> Response {
    change_trust(&w, &page, f, false)
        .await
        .unwrap_or_else(|e| e)
}

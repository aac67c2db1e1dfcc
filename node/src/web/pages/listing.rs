//! A listing's page (photos, price, condition, description, times, quantity, status, the
//! seller's card with trust and the latest reviews), its "Make an offer" form, which the
//! trades service signs and delivers like `POST /v1/trades`, and "Ask the seller" (the
//! chat panel, [`super::chat`]); on my own listing, the conversations about it.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::chat::{ChatPanel, Draft, InboxRow, SendForm, after_send};
use super::moderation::{ModerationPanel, ReportDraft};
use super::{Chrome, Page, csrf_refused, error_page, render, short_peer, trust_text, when};
use crate::api::types::{ListingState, ListingView, NewOffer, ReputationView};
use crate::services::listings::ListingError;
use crate::services::reputation::Review;
use crate::web::WebState;
use crate::web::i18n::{Messages, fill};
use crate::web::money::{input_text, minor_digits, parse_price, price_text};

/// Reviews shown on the seller card.
pub const CARD_REVIEWS: usize = 3;

/// A review as shown.
#[derive(Debug, Clone)]
pub struct ReviewLine {
    /// 1-5.
    pub score: u8,
    /// ★★★★☆.
    pub stars: String,
    /// Their comment.
    pub comment: String,
    /// Who (short peer id).
    pub by: String,
    /// When, as people say it.
    pub when: String,
}

/// Reviews as shown.
pub fn review_lines(t: &Messages, reviews: &[Review]) -> Vec<ReviewLine> {
    reviews
        .iter()
        .map(|v| ReviewLine {
            score: v.score.min(5),
            stars: stars(v.score),
            comment: v.comment.clone(),
            by: short_peer(&v.by),
            when: when(t, v.at),
        })
        .collect()
}

/// ★★★★☆ for 4.
pub fn stars(score: u8) -> String {
    let s = usize::from(score.min(5));
    "★".repeat(s) + &"☆".repeat(5 - s)
}

/// The seller card.
#[derive(Debug, Clone)]
pub struct SellerCard {
    peer: String,
    short: String,
    trust: String,
    confidence: String,
    completed: String,
    rating: String,
    note: Option<&'static str>,
    /// Through whom my trust reaches the seller (empty without a reputation).
    through: String,
    reviews: Vec<ReviewLine>,
}

impl SellerCard {
    fn new(t: &Messages, seller: &str, r: Option<&ReputationView>, reviews: &[Review]) -> Self {
        let (trust, confidence, completed, rating, note) = match r {
            Some(r) => (
                trust_text(t, Some(r.score)),
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
                if r.trusted {
                    Some(t.seller_trusted_seed)
                } else if r.score <= 0.0 {
                    Some(t.seller_untrusted)
                } else {
                    None
                },
            ),
            None => (
                t.trust_none.to_owned(),
                String::new(),
                String::new(),
                t.seller_no_rating.to_owned(),
                None,
            ),
        };
        SellerCard {
            peer: seller.to_owned(),
            short: short_peer(seller),
            trust,
            confidence,
            completed,
            rating,
            note,
            through: r
                .map(|r| super::seller::through_text(t, r))
                .unwrap_or_default(),
            reviews: review_lines(t, reviews),
        }
    }
}

/// What was typed in the offer form, and what is wrong with it.
#[derive(Debug, Clone, Default)]
pub struct OfferDraft {
    price: String,
    quantity: String,
    message: String,
    moderator: String,
    price_error: Option<String>,
    quantity_error: Option<String>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "listing.html")]
struct ListingTemplate {
    c: Chrome,
    l: ListingView,
    price: String,
    condition: Option<String>,
    category: String,
    status_name: &'static str,
    posted: String,
    updated: String,
    expires: String,
    version: String,
    location: Option<String>,
    photo_alts: Vec<(String, String)>,
    seller: SellerCard,
    own: bool,
    open: bool,
    offer: OfferDraft,
    moderation: Option<ModerationPanel>,
    hide: bool,
    report: ReportDraft,
    /// "Ask the seller": the conversation of this listing with its seller (not on my own).
    chat: Option<ChatPanel>,
    /// On my own listing: the conversations about it.
    threads: Vec<InboxRow>,
}

async fn load(w: &WebState, id: String) -> Result<Found, ListingError> {
    let (r, l, trades) = (
        w.api.reputation.clone(),
        w.api.listings.clone(),
        w.api.trades.clone(),
    );
    tokio::task::spawn_blocking(move || {
        let v = r.show(&l, &id)?;
        let rep = r.reputation(&v.seller).ok();
        let reviews = r.reviews(&v.seller, CARD_REVIEWS).unwrap_or_default();
        let reserved = v.status == ListingState::Sold && super::reserving(&trades).contains(&v.id);
        Ok((v, rep, reviews, reserved))
    })
    .await
    .map_err(|e| ListingError::Search(e.to_string()))?
}

/// A listing as held here: the listing, its seller's reputation and latest reviews, and
/// whether a trade of mine holds its last items (reserved rather than sold).
type Found = (ListingView, Option<ReputationView>, Vec<Review>, bool);

async fn listing_page(
    (w, page): (&WebState, &Page),
    status: StatusCode,
    (l, rep, reviews, reserved): Found,
    offer: Option<OfferDraft>,
    (show_anyway, report): (bool, Option<ReportDraft>),
    chat_draft: Draft,
) -> Response {
    let t = page.t;
    let own = l.seller == page.me;
    let (chat, threads) = if own {
        (None, super::chat::rows_about(w, t, &l.id).await)
    } else {
        let action = format!("/listing/{}/ask", l.id);
        let p = super::chat::panel(
            w,
            page,
            (&l.id, &l.seller),
            t.chat_ask_title,
            action,
            chat_draft,
        )
        .await;
        (Some(p), Vec::new())
    };
    let moderation = ModerationPanel::new(t, l.moderation.as_ref());
    let hide = !show_anyway && !own && moderation.as_ref().is_some_and(|m| m.hidden);
    let open = l.status == ListingState::Active && !own;
    let offer = offer.unwrap_or_else(|| OfferDraft {
        price: input_text(l.price, &l.currency),
        quantity: "1".into(),
        ..Default::default()
    });
    let photo_alts = l
        .images
        .iter()
        .enumerate()
        .map(|(i, id)| {
            (
                id.clone(),
                fill(
                    t.photo_of,
                    &[("n", &(i + 1).to_string()), ("title", &l.title)],
                ),
            )
        })
        .collect();
    render(
        status,
        &ListingTemplate {
            c: match &chat {
                Some(p) => p.chrome(Chrome::new(page, l.title.clone(), "")),
                None => Chrome::new(page, l.title.clone(), ""),
            },
            price: price_text(l.price, &l.currency),
            condition: l.condition.as_deref().map(|c| t.condition(c)),
            category: t.category(&l.category),
            status_name: if reserved {
                t.status_reserved
            } else {
                t.status(l.status.as_str())
            },
            posted: when(t, l.created_at),
            updated: when(t, l.updated_at),
            expires: when(t, l.expires_at),
            version: fill(t.listing_version, &[("n", &l.seq.to_string())]),
            location: l.location.map(|p| format!("{:.4}, {:.4}", p.lat, p.lon)),
            photo_alts,
            seller: SellerCard::new(t, &l.seller, rep.as_ref(), &reviews),
            own,
            open,
            offer,
            moderation,
            hide,
            report: report.unwrap_or_else(|| ReportDraft::new(t)),
            chat,
            threads,
            l,
        },
    )
}

/// The listing page again after a refused report, with the reason.
pub async fn page_with_report(
    w: &WebState,
    page: &Page,
    id: String,
    status: StatusCode,
    report: ReportDraft,
) -> Response {
    match load(w, id).await {
        Ok(found) => {
            listing_page((w, page), status, found, None, (false, Some(report)), None).await
        }
        Err(e) => load_error(page, e),
    }
}

/// `?show=anyway`: the content of a listing hidden by reports.
#[derive(Debug, Default, Deserialize)]
pub struct ShowQuery {
    #[serde(default)]
    show: Option<String>,
}

fn load_error(page: &Page, e: ListingError) -> Response {
    match e {
        ListingError::NotFound(_) | ListingError::BadId(_) => error_page(
            page,
            StatusCode::NOT_FOUND,
            page.t.listing_not_found.to_owned(),
        ),
        e => error_page(
            page,
            StatusCode::INTERNAL_SERVER_ERROR,
            fill(page.t.error_internal, &[("reason", &e.to_string())]),
        ),
    }
}

/// `GET /listing/{id}` (`?show=anyway`: even when reports hide it).
pub async fn show(
    State(w): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Response {
    let anyway = q.show.as_deref() == Some("anyway");
    match load(&w, id).await {
        Ok(found) => {
            listing_page(
                (&w, &page),
                StatusCode::OK,
                found,
                None,
                (anyway, None),
                None,
            )
            .await
        }
        Err(e) => load_error(&page, e),
    }
}

/// The offer form.
#[derive(Debug, Deserialize)]
pub struct OfferForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    quantity: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    moderator: String,
}

/// `POST /listing/{id}/offer`: makes the offer, then shows the trade.
pub async fn offer(
    State(w): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<OfferForm>,
) -> Response {
    if !page.session.csrf_ok(&f.csrf) {
        return csrf_refused(&page);
    }
    let t = page.t;
    let found = match load(&w, id.clone()).await {
        Ok(found) => found,
        Err(e) => return load_error(&page, e),
    };
    let currency = found.0.currency.clone();
    let mut draft = OfferDraft {
        price: f.price.clone(),
        quantity: f.quantity.clone(),
        message: f.message.clone(),
        moderator: f.moderator.clone(),
        ..Default::default()
    };
    let price = parse_price(&f.price, &currency);
    if price.is_none() {
        draft.price_error = Some(fill(
            t.err_price,
            &[
                ("currency", &currency),
                ("digits", &minor_digits(&currency).to_string()),
            ],
        ));
    }
    let quantity = match f.quantity.trim() {
        "" => Some(1),
        q => q.parse::<u64>().ok().filter(|q| *q > 0),
    };
    if quantity.is_none() {
        draft.quantity_error = Some(t.err_quantity.to_owned());
    }
    let (Some(price), Some(quantity)) = (price, quantity) else {
        return listing_page(
            (&w, &page),
            StatusCode::BAD_REQUEST,
            found,
            Some(draft),
            (true, None),
            None,
        )
        .await;
    };
    // A textarea's line breaks arrive as CRLF; the offer holds LF.
    let message = f.message.replace("\r\n", "\n");
    let message = message.trim();
    let new = NewOffer {
        listing: id,
        price: Some(price),
        quantity: Some(quantity),
        message: (!message.is_empty()).then(|| message.to_owned()),
        moderators: match f.moderator.trim() {
            "" => Vec::new(),
            m => vec![m.to_owned()],
        },
    };
    match w.api.trades.offer(new).await {
        Ok(trade) => Redirect::to(&format!("/trade/{}", trade.id)).into_response(),
        Err(e) => {
            draft.error = Some(t.trade_error(&e));
            listing_page(
                (&w, &page),
                StatusCode::CONFLICT,
                found,
                Some(draft),
                (true, None),
                None,
            )
            .await
        }
    }
}

/// `POST /listing/{id}/ask`: asks the seller (the conversation starts or continues), then
/// shows the listing's chat again; a refusal is shown next to the box, the text kept.
pub async fn ask(
    State(w): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    mut f: SendForm,
) -> Response {
    if f.forged(&page) {
        return csrf_refused(&page);
    }
    let sent = f
        .send(&w, page.t, |text, photos| {
            w.api.conversations.ask(&id, text, photos)
        })
        .await;
    let Err((status, why)) = sent else {
        return after_send(&format!("/listing/{id}"));
    };
    let found = match load(&w, id).await {
        Ok(found) => found,
        Err(le) => return load_error(&page, le),
    };
    let draft = Some((f.typed().to_owned(), why));
    listing_page((&w, &page), status, found, None, (true, None), draft).await
}

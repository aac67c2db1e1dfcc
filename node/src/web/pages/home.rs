//! Home (newest listings and the sync badge), search results (text, filters, sort, pages)
//! and "my listings": grids of listing cards from the search service, with each seller's
//! trust as the reputation service adds it.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::{Card, Choice, Chrome, Page, category_choices, error_page, render};
use crate::api::types::{ListingView, NewSavedSearch, SearchQuery};
use crate::net::NetworkInfo;
use crate::services::listings::ListingError;
use crate::web::WebState;
use crate::web::i18n::{Messages, fill};
use crate::web::money::{input_text, minor_digits, parse_price};

/// Listings on the home page.
pub const HOME_LISTINGS: usize = 24;
/// Listings in the home page's "near you" section.
pub const HOME_NEAR: usize = 12;
/// The radius of the home page's "near you" section, in km (newest first within it).
pub const HOME_NEAR_KM: f64 = 10.0;
/// Results per search page.
pub const PAGE_SIZE: usize = 24;
/// Highest page number (the search service skips at most 10 000 results).
pub const PAGE_MAX: usize = 400;
/// Most of my own listings shown.
pub const MINE_MAX: usize = 200;
/// Currencies offered in the filters and the post form (any ISO 4217 code is accepted).
pub const CURRENCIES: [&str; 6] = ["KRW", "USD", "JPY", "EUR", "GBP", "CNY"];

/// The sync badge: what `jangteo status` says about catching up.
#[derive(Debug, Clone)]
pub struct SyncBadge {
    /// ok, busy or off (a CSS class).
    pub class: &'static str,
    /// The text.
    pub text: String,
}

impl SyncBadge {
    /// From the network task's snapshot (`None`: the network task is not answering).
    pub fn new(t: &Messages, info: Option<&NetworkInfo>) -> Self {
        let Some(info) = info else {
            return SyncBadge {
                class: "off",
                text: t.sync_not_connected.to_owned(),
            };
        };
        let sy = &info.sync;
        if sy.in_progress > 0 || sy.to_fetch > 0 {
            SyncBadge {
                class: "busy",
                text: fill(t.sync_catching_up, &[("n", &sy.to_fetch.to_string())]),
            }
        } else if info.peers.is_empty() {
            SyncBadge {
                class: "off",
                text: t.sync_not_connected.to_owned(),
            }
        } else if sy.peers_reconciled > 0 {
            SyncBadge {
                class: "ok",
                text: fill(t.sync_caught_up, &[("n", &sy.peers_reconciled.to_string())]),
            }
        } else {
            SyncBadge {
                class: "busy",
                text: fill(t.sync_connected, &[("n", &info.peers.len().to_string())]),
            }
        }
    }
}

/// Runs a search for what a person typed. The search box is not a query language: when the
/// text does not parse as one (`아이폰 (128GB)`, `alert(1)`, an unbalanced quote), the words
/// alone are searched instead of refusing. (The API and CLI keep refusing such a query.)
pub async fn search_as_typed(
    w: &WebState,
    q: SearchQuery,
) -> Result<Vec<ListingView>, ListingError> {
    match run_search(w, q.clone()).await {
        Err(ListingError::BadQuery(m)) if q.q.is_some() => {
            let words: String =
                q.q.as_deref()
                    .unwrap_or("")
                    .chars()
                    .map(|c| if c.is_alphanumeric() { c } else { ' ' })
                    .collect();
            let words = words.split_whitespace().collect::<Vec<_>>().join(" ");
            if words.is_empty() {
                return Err(ListingError::BadQuery(m));
            }
            run_search(
                w,
                SearchQuery {
                    q: Some(words),
                    ..q
                },
            )
            .await
        }
        other => other,
    }
}

/// Runs a search with each seller's trust added (blocking work off the async task).
pub async fn run_search(w: &WebState, q: SearchQuery) -> Result<Vec<ListingView>, ListingError> {
    let (r, l) = (w.api.reputation.clone(), w.api.listings.clone());
    tokio::task::spawn_blocking(move || r.search(&l, &q))
        .await
        .map_err(|e| ListingError::Search(e.to_string()))?
}

/// The home page's "near you" section: the newest listings within [`HOME_NEAR_KM`] of my
/// saved location.
#[derive(Debug, Clone)]
pub struct NearSection {
    title: String,
    empty: String,
    cards: Vec<Card>,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomeTemplate {
    c: Chrome,
    sync: SyncBadge,
    near: Option<NearSection>,
    cards: Vec<Card>,
    error: Option<String>,
}

/// `GET /`: the sync badge; with a saved location, the newest listings within
/// [`HOME_NEAR_KM`] of it (newest first, each with its distance); the categories, each a
/// link to its search; the newest listings everywhere.
pub async fn home(
    State(w): State<WebState>,
    page: Page,
    headers: axum::http::HeaderMap,
) -> Response {
    let t = page.t;
    let info = w.api.network.info().await.ok();
    let q = SearchQuery {
        limit: Some(HOME_LISTINGS),
        sort: Some("recent".into()),
        ..Default::default()
    };
    let mut error = None;
    let cards = match run_search(&w, q).await {
        Ok(v) => v.iter().map(|l| Card::new(t, l)).collect(),
        Err(e) => {
            error = Some(t.listing_error(&e));
            Vec::new()
        }
    };
    let near = match super::settings::near_of(&headers) {
        None => None,
        Some(at) => {
            let q = SearchQuery {
                limit: Some(HOME_NEAR),
                sort: Some("recent".into()),
                near: Some(at),
                radius_km: Some(HOME_NEAR_KM),
                ..Default::default()
            };
            let km = format!("{HOME_NEAR_KM:.0}");
            let cards = match run_search(&w, q).await {
                Ok(v) => v.iter().map(|l| Card::new(t, l)).collect(),
                Err(e) => {
                    error = Some(t.listing_error(&e));
                    Vec::new()
                }
            };
            Some(NearSection {
                title: fill(t.home_near_title, &[("km", &km)]),
                empty: fill(t.home_near_none, &[("km", &km)]),
                cards,
            })
        }
    };
    render(
        StatusCode::OK,
        &HomeTemplate {
            c: Chrome::new(&page, t.home_title, "home"),
            sync: SyncBadge::new(t, info.as_ref()),
            near,
            cards,
            error,
        },
    )
}

/// The search form's fields, as typed (empty means "any").
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SearchForm {
    /// The words.
    #[serde(default)]
    pub q: String,
    /// Category key.
    #[serde(default)]
    pub category: String,
    /// Condition key.
    #[serde(default)]
    pub condition: String,
    /// Currency of the price bounds.
    #[serde(default)]
    pub currency: String,
    /// Lowest price, as typed.
    #[serde(default)]
    pub min: String,
    /// Highest price, as typed.
    #[serde(default)]
    pub max: String,
    /// Sort key.
    #[serde(default)]
    pub sort: String,
    /// Within this many km of my saved location.
    #[serde(default)]
    pub km: String,
    /// Page number, as in the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

impl SearchForm {
    fn page(&self) -> usize {
        self.page
            .as_deref()
            .and_then(|p| p.trim().parse::<usize>().ok())
            .unwrap_or(1)
            .clamp(1, PAGE_MAX)
    }

    /// The search service's query, or what is wrong with the form.
    fn query(&self, t: &Messages, near: Option<String>) -> Result<SearchQuery, String> {
        let radius_km = match some(&self.km) {
            None => None,
            Some(k) => match k.parse::<f64>() {
                Ok(k) if k.is_finite() && k > 0.0 && near.is_some() => Some(k),
                Ok(_) if near.is_none() => return Err(t.filter_distance_no_location.to_owned()),
                _ => return Err(t.filter_distance_bad.to_owned()),
            },
        };
        let currency = some(&self.currency).map(|c| c.to_ascii_uppercase());
        let price = |s: &str| -> Result<Option<u64>, String> {
            let Some(s) = some(s) else { return Ok(None) };
            let Some(cur) = currency.as_deref() else {
                return Err(t.err_price_currency.to_owned());
            };
            parse_price(&s, cur).map(Some).ok_or_else(|| {
                fill(
                    t.err_price,
                    &[
                        ("currency", cur),
                        ("digits", &minor_digits(cur).to_string()),
                    ],
                )
            })
        };
        let sort = match self.sort.as_str() {
            s @ ("relevance" | "recent" | "price" | "price-desc" | "trust") => Some(s.to_owned()),
            _ => None,
        };
        // My location narrows the search only when a distance is asked for: a search near a
        // place leaves out listings that name no place.
        let near = near.filter(|_| radius_km.is_some());
        Ok(SearchQuery {
            q: some(&self.q),
            category: some(&self.category),
            condition: some(&self.condition),
            currency: currency.clone(),
            min_price: price(&self.min)?,
            max_price: price(&self.max)?,
            sort,
            near,
            radius_km,
            limit: Some(PAGE_SIZE + 1),
            offset: Some((self.page() - 1) * PAGE_SIZE),
            ..Default::default()
        })
    }

    /// The saved search of this form (text and filters, without sort and page), or what
    /// is wrong with it; a form with neither words nor filters is refused.
    pub fn saved_search(
        &self,
        t: &Messages,
        near: Option<String>,
    ) -> Result<NewSavedSearch, String> {
        let q = self.query(t, near)?;
        let s = NewSavedSearch {
            q: q.q,
            category: q.category,
            condition: q.condition,
            seller: None,
            currency: q.currency,
            min_price: q.min_price,
            max_price: q.max_price,
            near: q.near,
            radius_km: q.radius_km,
        };
        if s.q.is_none()
            && s.category.is_none()
            && s.condition.is_none()
            && s.min_price.is_none()
            && s.max_price.is_none()
            && s.radius_km.is_none()
        {
            return Err(t.err_alert_empty.to_owned());
        }
        Ok(s)
    }

    /// The form's fields as hidden inputs' (name, value) pairs, empty ones left out (the
    /// search page's "save as alert" form).
    pub fn hidden_fields(&self) -> Vec<(&'static str, String)> {
        [
            ("q", &self.q),
            ("category", &self.category),
            ("condition", &self.condition),
            ("currency", &self.currency),
            ("min", &self.min),
            ("max", &self.max),
            ("km", &self.km),
        ]
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k, v.clone()))
        .collect()
    }

    /// The form that searches what a saved search matches.
    pub fn of_saved(s: &NewSavedSearch) -> Self {
        let cur = s.currency.clone().unwrap_or_default();
        SearchForm {
            q: s.q.clone().unwrap_or_default(),
            category: s.category.clone().unwrap_or_default(),
            condition: s.condition.clone().unwrap_or_default(),
            min: s.min_price.map(|p| input_text(p, &cur)).unwrap_or_default(),
            max: s.max_price.map(|p| input_text(p, &cur)).unwrap_or_default(),
            km: s.radius_km.map(|k| format!("{k}")).unwrap_or_default(),
            currency: cur,
            sort: "recent".into(),
            page: None,
        }
    }

    /// The search page's address for this form at page `page`.
    pub fn link(&self, page: usize) -> String {
        let mut f = self.clone();
        f.page = (page > 1).then(|| page.to_string());
        format!(
            "/search?{}",
            serde_urlencoded::to_string(&f).unwrap_or_default()
        )
    }
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchTemplate {
    c: Chrome,
    has_location: bool,
    heading: String,
    f: SearchForm,
    categories: Vec<Choice>,
    conditions: Vec<Choice>,
    currencies: Vec<Choice>,
    sorts: Vec<Choice>,
    /// The "save this search as an alert" form's hidden fields.
    alert_fields: Vec<(&'static str, String)>,
    cards: Vec<Card>,
    error: Option<String>,
    page_label: String,
    prev: Option<String>,
    next: Option<String>,
}

/// The filter menus (categories, conditions, currencies) with the form's choices selected,
/// shared by the search page and the alerts page.
pub fn filter_choices(t: &Messages, f: &SearchForm) -> [Vec<Choice>; 3] {
    let conditions = ["new", "like-new", "good", "fair", "poor"];
    let condition_names: Vec<String> = conditions.iter().map(|c| t.condition(c)).collect();
    let currency_names: Vec<String> = CURRENCIES.iter().map(|c| (*c).to_owned()).collect();
    [
        category_choices(t, &f.category),
        choices(&conditions, &condition_names, &f.condition),
        choices(
            &CURRENCIES,
            &currency_names,
            &f.currency.to_ascii_uppercase(),
        ),
    ]
}

fn choices(keys: &[&str], names: &[String], selected: &str) -> Vec<Choice> {
    keys.iter()
        .zip(names)
        .map(|(k, n)| Choice {
            key: (*k).to_owned(),
            name: n.clone(),
            selected: *k == selected,
        })
        .collect()
}

/// `GET /search?q=&category=&condition=&currency=&min=&max=&sort=&page=`.
pub async fn search(
    State(w): State<WebState>,
    page: Page,
    headers: axum::http::HeaderMap,
    query: Result<Query<SearchForm>, QueryRejection>,
) -> Response {
    let t = page.t;
    let f = query.map(|Query(f)| f).unwrap_or_default();
    let near = super::settings::near_of(&headers);
    let has_location = near.is_some();
    let (cards, has_next, error) = match f.query(t, near) {
        Err(msg) => (Vec::new(), false, Some(msg)),
        Ok(q) => match search_as_typed(&w, q).await {
            Ok(mut v) => {
                let more = v.len() > PAGE_SIZE;
                v.truncate(PAGE_SIZE);
                (v.iter().map(|l| Card::new(t, l)).collect(), more, None)
            }
            Err(e @ ListingError::BadQuery(_)) => (Vec::new(), false, Some(t.listing_error(&e))),
            Err(e) => {
                return error_page(
                    &page,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    t.listing_error(&e),
                );
            }
        },
    };
    let heading = match some(&f.q) {
        Some(q) => fill(t.results_for, &[("q", &q)]),
        None => t.results_all.to_owned(),
    };
    let n = f.page();
    let [categories, conditions, currencies] = filter_choices(t, &f);
    let sorts = ["relevance", "recent", "price", "price-desc", "trust"];
    let sort_names: Vec<String> = [
        t.sort_relevance,
        t.sort_recent,
        t.sort_price,
        t.sort_price_desc,
        t.sort_trust,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut c = Chrome::new(&page, heading.clone(), "search");
    c.q = f.q.clone();
    render(
        StatusCode::OK,
        &SearchTemplate {
            heading,
            categories,
            conditions,
            currencies,
            alert_fields: f.hidden_fields(),
            sorts: choices(&sorts, &sort_names, &f.sort),
            cards,
            error,
            has_location,
            page_label: fill(t.page_n, &[("n", &n.to_string())]),
            prev: (n > 1).then(|| f.link(n - 1)),
            next: has_next.then(|| f.link(n + 1)),
            f,
            c,
        },
    )
}

#[derive(Template)]
#[template(path = "mine.html")]
struct MineTemplate {
    c: Chrome,
    cards: Vec<Card>,
    offers: Vec<ListingOffers>,
}

/// The offers and trades on one of my listings, newest first.
#[derive(Debug, Clone)]
pub struct ListingOffers {
    id: String,
    title: String,
    trades: Vec<OfferLine>,
}

/// One offer or trade on my listing.
#[derive(Debug, Clone)]
pub struct OfferLine {
    id: String,
    state: &'static str,
    state_key: &'static str,
    terms: String,
    when: String,
}

/// `GET /mine`: this node's own listings, every status, newest first.
pub async fn mine(State(w): State<WebState>, page: Page) -> Response {
    let t = page.t;
    let q = SearchQuery {
        seller: Some(page.me.clone()),
        sort: Some("recent".into()),
        all: Some(true),
        limit: Some(MINE_MAX),
        ..Default::default()
    };
    let trades = w.api.trades.clone();
    let (reserving, selling) = tokio::task::spawn_blocking(move || {
        let selling: Vec<_> = trades
            .list()
            .map(|l| {
                l.into_iter()
                    .filter(|s| s.role.as_str() == "seller")
                    .collect()
            })
            .unwrap_or_default();
        (super::reserving(&trades), selling)
    })
    .await
    .unwrap_or_default();
    match run_search(&w, q).await {
        Ok(v) => {
            let offers = v
                .iter()
                .filter_map(|l| {
                    let mut on: Vec<_> = selling.iter().filter(|s| s.listing == l.id).collect();
                    if on.is_empty() {
                        return None;
                    }
                    on.sort_by_key(|s| std::cmp::Reverse(s.updated_at));
                    Some(ListingOffers {
                        id: l.id.clone(),
                        title: l.title.clone(),
                        trades: on
                            .into_iter()
                            .map(|s| OfferLine {
                                id: s.id.clone(),
                                state: t.trade_state(s.state.as_str()),
                                state_key: s.state.as_str(),
                                terms: fill(
                                    t.trade_terms,
                                    &[
                                        ("q", &s.quantity.to_string()),
                                        (
                                            "price",
                                            &crate::web::money::price_text(s.price, &s.currency),
                                        ),
                                    ],
                                ),
                                when: super::when(t, s.updated_at),
                            })
                            .collect(),
                    })
                })
                .collect();
            render(
                StatusCode::OK,
                &MineTemplate {
                    c: Chrome::new(&page, t.mine_title, "mine"),
                    cards: v
                        .iter()
                        .map(|l| Card::new(t, l).reserved_if(t, &reserving))
                        .collect(),
                    offers,
                },
            )
        }
        Err(e) => error_page(
            &page,
            StatusCode::INTERNAL_SERVER_ERROR,
            t.listing_error(&e),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::i18n::EN;
    use crate::web::pages::language_choices;

    #[test]
    fn text_from_the_network_is_escaped_everywhere_on_the_page() {
        let t = &EN;
        let hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'";
        let c = Chrome {
            t,
            title: hostile.into(),
            csrf: "token".into(),
            q: hostile.into(),
            here: format!("/search?q={hostile}"),
            categories: category_choices(t, ""),
            languages: language_choices(t),
            nav: "home",
            unread_messages: 3,
            unread_notifications: 0,
        };
        let card = Card {
            id: "ab".repeat(32),
            title: hostile.into(),
            price: "₩1,000".into(),
            thumb: Some("cd".repeat(32)),
            status: "active",
            status_name: t.status_active,
            trust: hostile.into(),
            posted: t.time_now.into(),
            category: hostile.into(),
            distance: None,
        };
        let html = HomeTemplate {
            c,
            sync: SyncBadge {
                class: "ok",
                text: hostile.into(),
            },
            near: Some(NearSection {
                title: hostile.into(),
                empty: hostile.into(),
                cards: vec![card.clone()],
            }),
            cards: vec![card],
            error: Some(hostile.into()),
        }
        .render()
        .expect("renders");
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(
            html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{html}"
        );
        assert!(
            !html.contains("\"'"),
            "quotes are escaped in attributes too"
        );
        assert!(html.contains("<script type=\"module\" src=\"/assets/app.js\"></script>"));
    }

    #[test]
    fn the_sync_badge_says_what_status_says() {
        let t = &EN;
        assert_eq!(SyncBadge::new(t, None).text, "Not connected");
    }
}

//! Editing and withdrawing one of my listings. An edit is a new signed version through the
//! listings service (as `PATCH /v1/listings/{id}`): title, description, category,
//! condition, price and quantity; errors go next to the field the service names. Withdrawing
//! (`DELETE /v1/listings/{id}`) is final, so it asks for a ticked confirmation, which works
//! without script and by keyboard.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{Choice, Chrome, Page, category_choices, csrf_refused, error_page, render};
use crate::api::types::{ListingUpdate, ListingView};
use crate::services::listings::ListingError;
use crate::web::WebState;
use crate::web::i18n::fill;
use crate::web::money::{input_text, minor_digits, parse_price};

/// What was typed in the edit form, and what is wrong with it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EditForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    condition: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    quantity: String,
}

/// Errors next to the fields.
#[derive(Debug, Clone, Default)]
pub struct EditErrors {
    title: Option<String>,
    description: Option<String>,
    category: Option<String>,
    condition: Option<String>,
    price: Option<String>,
    quantity: Option<String>,
    other: Option<String>,
}

impl EditErrors {
    fn set(&mut self, field: &str, message: String) {
        let slot = match field {
            "title" => &mut self.title,
            "description" => &mut self.description,
            "category" => &mut self.category,
            "condition" => &mut self.condition,
            "price" => &mut self.price,
            "quantity" => &mut self.quantity,
            _ => &mut self.other,
        };
        slot.get_or_insert(message);
    }

    fn any(&self) -> bool {
        [
            &self.title,
            &self.description,
            &self.category,
            &self.condition,
            &self.price,
            &self.quantity,
            &self.other,
        ]
        .iter()
        .any(|e| e.is_some())
    }
}

#[derive(Template)]
#[template(path = "edit.html")]
struct EditTemplate {
    c: Chrome,
    l: ListingView,
    f: EditForm,
    e: EditErrors,
    categories: Vec<Choice>,
    conditions: Vec<Choice>,
}

fn edit_page(
    page: &Page,
    status: StatusCode,
    l: ListingView,
    f: EditForm,
    e: EditErrors,
) -> Response {
    let t = page.t;
    let conditions = super::condition_choices(t, &f.condition);
    render(
        status,
        &EditTemplate {
            c: Chrome::new(page, t.edit_title, "mine"),
            categories: category_choices(t, &f.category),
            conditions,
            l,
            f,
            e,
        },
    )
}

async fn own_listing(w: &WebState, page: &Page, id: &str) -> Result<ListingView, Response> {
    let listings = w.api.listings.clone();
    let lid = id.to_owned();
    let t = page.t;
    match tokio::task::spawn_blocking(move || listings.show(&lid)).await {
        Ok(Ok(l)) if l.seller == page.me => Ok(l),
        Ok(Ok(_)) => Err(error_page(
            page,
            StatusCode::FORBIDDEN,
            t.error_forbidden.to_owned(),
        )),
        Ok(Err(ListingError::NotFound(_) | ListingError::BadId(_))) => Err(error_page(
            page,
            StatusCode::NOT_FOUND,
            t.listing_not_found.to_owned(),
        )),
        Ok(Err(e)) => Err(error_page(
            page,
            StatusCode::INTERNAL_SERVER_ERROR,
            fill(t.error_internal, &[("reason", &e.to_string())]),
        )),
        Err(e) => Err(error_page(
            page,
            StatusCode::INTERNAL_SERVER_ERROR,
            fill(t.error_internal, &[("reason", &e.to_string())]),
        )),
    }
}

/// `GET /listing/{id}/edit`: the form, filled with the current version.
pub async fn form(State(w): State<WebState>, page: Page, Path(id): Path<String>) -> Response {
    let l = match own_listing(&w, &page, &id).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let f = EditForm {
        csrf: String::new(),
        title: l.title.clone(),
        description: l.description.clone(),
        category: l.category.clone(),
        condition: l.condition.clone().unwrap_or_default(),
        price: input_text(l.price, &l.currency),
        quantity: l.quantity.to_string(),
    };
    edit_page(&page, StatusCode::OK, l, f, EditErrors::default())
}

/// `POST /listing/{id}/edit`: checks the form, then signs and sends the new version.
pub async fn submit(
    State(w): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    axum::Form(mut f): axum::Form<EditForm>,
) -> Response {
    if !page.session.csrf_ok(&f.csrf) {
        return csrf_refused(&page);
    }
    let t = page.t;
    let l = match own_listing(&w, &page, &id).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    f.description = f.description.replace("\r\n", "\n");
    let mut e = EditErrors::default();
    let price = parse_price(&f.price, &l.currency);
    if price.is_none() {
        let digits = minor_digits(&l.currency).to_string();
        e.set(
            "price",
            fill(
                t.err_price,
                &[("currency", &l.currency), ("digits", &digits)],
            ),
        );
    }
    let quantity = f.quantity.trim().parse::<u64>().ok();
    if quantity.is_none() {
        e.set("quantity", t.err_quantity.to_owned());
    }
    if e.any() {
        return edit_page(&page, StatusCode::BAD_REQUEST, l, f, e);
    }
    let condition = f.condition.trim();
    let u = ListingUpdate {
        title: Some(f.title.trim().to_owned()),
        description: Some(f.description.clone()),
        category: Some(f.category.trim().to_owned()),
        condition: (!condition.is_empty()).then(|| condition.to_owned()),
        price,
        quantity,
    };
    match w.api.listings.update(&id, u).await {
        Ok(v) => Redirect::to(&format!("/listing/{}", v.id)).into_response(),
        Err(ListingError::Invalid(fe)) => {
            e.set(fe.field, fe.reason);
            edit_page(&page, StatusCode::BAD_REQUEST, l, f, e)
        }
        Err(other) => {
            e.other = Some(other.to_string());
            edit_page(&page, StatusCode::CONFLICT, l, f, e)
        }
    }
}

#[derive(Template)]
#[template(path = "retract.html")]
struct RetractTemplate {
    c: Chrome,
    l: ListingView,
    error: Option<&'static str>,
}

/// `GET /listing/{id}/retract`: asks for confirmation.
pub async fn confirm(State(w): State<WebState>, page: Page, Path(id): Path<String>) -> Response {
    match own_listing(&w, &page, &id).await {
        Ok(l) => render(
            StatusCode::OK,
            &RetractTemplate {
                c: Chrome::new(&page, page.t.retract_title, "mine"),
                l,
                error: None,
            },
        ),
        Err(r) => r,
    }
}

/// The withdraw form.
#[derive(Debug, Deserialize)]
pub struct RetractForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: Option<String>,
}

/// `POST /listing/{id}/retract`: withdraws it when the box is ticked.
pub async fn retract(
    State(w): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<RetractForm>,
) -> Response {
    if !page.session.csrf_ok(&f.csrf) {
        return csrf_refused(&page);
    }
    let l = match own_listing(&w, &page, &id).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    if f.confirm.as_deref() != Some("yes") {
        return render(
            StatusCode::BAD_REQUEST,
            &RetractTemplate {
                c: Chrome::new(&page, page.t.retract_title, "mine"),
                l,
                error: Some(page.t.retract_must_confirm),
            },
        );
    }
    match w.api.listings.retract(&id).await {
        Ok(_) => Redirect::to(&format!("/listing/{id}")).into_response(),
        Err(e) => error_page(&page, StatusCode::CONFLICT, e.to_string()),
    }
}

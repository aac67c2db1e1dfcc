//! Editing and withdrawing one of my listings. An edit is a new signed version through the
//! listings service (as `PATCH /v1/listings/{id}`): title, description, category,
//! condition, price and currency, quantity, location, and the photos (keep or remove each,
//! change their order by number, add new ones after them). The form is multipart (it may
//! carry photos) and works without script; a plain urlencoded form (no photo fields) changes
//! the text fields only. Everything is checked before a new photo is stored, so a refused
//! form stores nothing; errors go next to the field the service names. Withdrawing
//! (`DELETE /v1/listings/{id}`) is final, so it asks for a ticked confirmation, which works
//! without script and by keyboard.

use askama::Template;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::home::CURRENCIES;
use super::post::{PARTS_MAX, Photo, photos_error, read_photo, read_text, store_photos};
use super::{Choice, Chrome, Page, category_choices, csrf_refused, error_page, render};
use crate::api::types::{ListingUpdate, ListingView};
use crate::services::listings::{ListingError, parse_lat_lon};
use crate::web::WebState;
use crate::web::i18n::fill;
use crate::web::money::{input_text, minor_digits, parse_price};
use jangteo_protocol::blob::MAX_BLOB_BYTES;
use jangteo_protocol::listing::IMAGES_MAX;

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
    /// Absent: unchanged.
    #[serde(default)]
    currency: Option<String>,
    /// Absent: unchanged; empty: removed.
    #[serde(default)]
    location: Option<String>,
    /// The form carries the photo fields (`keep`, `pos-…`, `photos`): without it the photos
    /// stay as they are.
    #[serde(skip)]
    photos_form: bool,
    /// Blob ids of the current photos to keep.
    #[serde(skip)]
    keep: Vec<String>,
    /// (blob id, position typed) of the current photos.
    #[serde(skip)]
    positions: Vec<(String, String)>,
}

/// Errors next to the fields.
#[derive(Debug, Clone, Default)]
pub struct EditErrors {
    title: Option<String>,
    description: Option<String>,
    category: Option<String>,
    condition: Option<String>,
    price: Option<String>,
    currency: Option<String>,
    quantity: Option<String>,
    location: Option<String>,
    photos: Option<String>,
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
            "currency" => &mut self.currency,
            "quantity" => &mut self.quantity,
            "location" => &mut self.location,
            "image" | "images" => &mut self.photos,
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
            &self.currency,
            &self.quantity,
            &self.location,
            &self.photos,
            &self.other,
        ]
        .iter()
        .any(|e| e.is_some())
    }
}

/// One current photo in the form: kept or not, and its place.
#[derive(Debug, Clone)]
pub struct PhotoChoice {
    id: String,
    alt: String,
    keep: bool,
    pos: String,
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
    currencies: Vec<Choice>,
    photos: Vec<PhotoChoice>,
    photos_hint: String,
    photos_again: bool,
}

fn edit_page(
    page: &Page,
    status: StatusCode,
    l: ListingView,
    f: EditForm,
    e: EditErrors,
    photos_again: bool,
) -> Response {
    let t = page.t;
    let conditions = super::condition_choices(t, &f.condition);
    let currency = f.currency.clone().unwrap_or_else(|| l.currency.clone());
    let mut currencies: Vec<&str> = CURRENCIES.to_vec();
    if !currencies.contains(&currency.as_str()) {
        currencies.push(&currency);
    }
    let currencies = currencies
        .iter()
        .map(|c| Choice {
            key: (*c).to_owned(),
            name: (*c).to_owned(),
            selected: *c == currency,
        })
        .collect();
    let photos = l
        .images
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let n = (i + 1).to_string();
            PhotoChoice {
                alt: fill(t.photo_of, &[("n", &n), ("title", &l.title)]),
                keep: !f.photos_form || f.keep.contains(id),
                pos: f
                    .positions
                    .iter()
                    .find(|(p, _)| p == id)
                    .map_or(n, |(_, v)| v.clone()),
                id: id.clone(),
            }
        })
        .collect();
    render(
        status,
        &EditTemplate {
            c: Chrome::new(page, t.edit_title, "mine"),
            categories: category_choices(t, &f.category),
            conditions,
            currencies,
            photos,
            photos_hint: fill(
                t.field_photos_hint,
                &[
                    ("n", &IMAGES_MAX.to_string()),
                    ("mb", &(MAX_BLOB_BYTES / (1024 * 1024)).to_string()),
                ],
            ),
            photos_again,
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
            t.listing_error(&e),
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
        currency: Some(l.currency.clone()),
        location: Some(
            l.location
                .as_ref()
                .map(|p| format!("{:.5},{:.5}", p.lat, p.lon))
                .unwrap_or_default(),
        ),
        ..Default::default()
    };
    edit_page(&page, StatusCode::OK, l, f, EditErrors::default(), false)
}

/// The multipart edit form's parts: text fields, which photos to keep and where, new photos.
/// Err: a broken or oversized form.
async fn read_edit_form(
    mut mp: Multipart,
    t: &crate::web::i18n::Messages,
    e: &mut EditErrors,
) -> Result<(EditForm, Vec<Photo>), ()> {
    let mut f = EditForm {
        photos_form: true,
        ..Default::default()
    };
    let mut photos = Vec::new();
    let mb = (MAX_BLOB_BYTES / (1024 * 1024)).to_string();
    let mut parts = 0;
    while let Some(mut field) = mp.next_field().await.map_err(|_| ())? {
        parts += 1;
        if parts > PARTS_MAX {
            return Err(());
        }
        let name = field.name().unwrap_or("").to_owned();
        if name == "photos" {
            let file = field.file_name().unwrap_or("").to_owned();
            match read_photo(&mut field).await? {
                None => e.set(
                    "image",
                    fill(t.err_photo_size, &[("name", &file), ("mb", &mb)]),
                ),
                Some(bytes) if !bytes.is_empty() => photos.push(Photo { name: file, bytes }),
                Some(_) => {}
            }
            continue;
        }
        let text = read_text(&mut field).await?;
        match name.as_str() {
            "csrf" => f.csrf = text,
            "title" => f.title = text,
            "description" => f.description = text,
            "category" => f.category = text,
            "condition" => f.condition = text,
            "price" => f.price = text,
            "quantity" => f.quantity = text,
            "currency" => f.currency = Some(text),
            "location" => f.location = Some(text),
            "keep" => f.keep.push(text),
            other => {
                if let Some(id) = other.strip_prefix("pos-") {
                    f.positions.push((id.to_owned(), text));
                }
            }
        }
    }
    Ok((f, photos))
}

/// The photos kept, in the order their positions give (ties in their old order).
fn kept_in_order(l: &ListingView, f: &EditForm) -> Vec<String> {
    let mut kept: Vec<(u64, usize, String)> = l
        .images
        .iter()
        .enumerate()
        .filter(|(_, id)| f.keep.contains(id))
        .map(|(i, id)| {
            let pos = f
                .positions
                .iter()
                .find(|(p, _)| p == id)
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
                .unwrap_or(i as u64 + 1);
            (pos, i, id.clone())
        })
        .collect();
    kept.sort();
    kept.into_iter().map(|(_, _, id)| id).collect()
}

/// `POST /listing/{id}/edit`: checks the form (and the new version, by the service's own
/// rules) before any new photo is stored, then stores them and signs and sends the new
/// version.
pub async fn submit(
    State(w): State<WebState>,
    page: Page,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let t = page.t;
    let mut e = EditErrors::default();
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let read = if multipart {
        match Multipart::from_request(req, &w).await {
            Ok(mp) => read_edit_form(mp, t, &mut e).await,
            Err(_) => Err(()),
        }
    } else {
        match axum::Form::<EditForm>::from_request(req, &w).await {
            Ok(axum::Form(f)) => Ok((f, Vec::new())),
            Err(_) => Err(()),
        }
    };
    let l = match own_listing(&w, &page, &id).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let Ok((mut f, photos)) = read else {
        e.other = Some(t.err_form.to_owned());
        return edit_page(
            &page,
            StatusCode::BAD_REQUEST,
            l,
            EditForm::default(),
            e,
            true,
        );
    };
    if !page.session.csrf_ok(&f.csrf) {
        return csrf_refused(&page);
    }
    f.description = f.description.replace("\r\n", "\n");
    let currency = f
        .currency
        .as_deref()
        .map(|c| c.trim().to_ascii_uppercase())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| l.currency.clone());
    let price = parse_price(&f.price, &currency);
    if price.is_none() {
        let digits = minor_digits(&currency).to_string();
        e.set(
            "price",
            fill(t.err_price, &[("currency", &currency), ("digits", &digits)]),
        );
    }
    let quantity = f.quantity.trim().parse::<u64>().ok();
    if quantity.is_none() {
        e.set("quantity", t.err_quantity.to_owned());
    }
    let (location, remove_location) = match f.location.as_deref().map(str::trim) {
        None => (None, false),
        Some("") => (None, true),
        Some(typed) => match parse_lat_lon(typed) {
            Some(p) => (Some(p), false),
            None => {
                e.set("location", t.err_location.to_owned());
                (None, false)
            }
        },
    };
    let kept = f.photos_form.then(|| kept_in_order(&l, &f));
    if let Some(msg) = photos_error(t, &photos, kept.as_ref().map_or(0, Vec::len)) {
        e.set("image", msg);
    }
    let condition = f.condition.trim();
    let mut u = ListingUpdate {
        title: Some(f.title.trim().to_owned()),
        description: Some(f.description.clone()),
        category: Some(f.category.trim().to_owned()),
        condition: (!condition.is_empty()).then(|| condition.to_owned()),
        price,
        quantity,
        currency: Some(currency),
        location,
        remove_location,
        images: kept,
    };
    if !e.any() {
        // The service's own rules, before a new photo is stored.
        let (listings, check, lid) = (w.api.listings.clone(), u.clone(), id.clone());
        match tokio::task::spawn_blocking(move || listings.check_update(&lid, &check)).await {
            Ok(Ok(())) => {}
            Ok(Err(ListingError::Invalid(fe))) => e.set(fe.field, t.field_error(&fe)),
            Ok(Err(other)) => e.other = Some(t.listing_error(&other)),
            Err(err) => {
                tracing::warn!(error = %err, "checking an edit failed");
                e.other = Some(t.err_internal_short.to_owned());
            }
        }
    }
    if e.any() {
        let again = !photos.is_empty();
        return edit_page(&page, StatusCode::BAD_REQUEST, l, f, e, again);
    }
    if let Some(images) = u.images.as_mut() {
        match store_photos(&w, t, photos).await {
            Ok(ids) => images.extend(ids),
            Err(msg) => {
                e.set("image", msg);
                return edit_page(&page, StatusCode::BAD_REQUEST, l, f, e, true);
            }
        }
    }
    match w.api.listings.update(&id, u).await {
        Ok(v) => Redirect::to(&format!("/listing/{}", v.id)).into_response(),
        Err(ListingError::Invalid(fe)) => {
            e.set(fe.field, t.field_error(&fe));
            edit_page(&page, StatusCode::BAD_REQUEST, l, f, e, false)
        }
        Err(other) => {
            e.other = Some(t.listing_error(&other));
            edit_page(&page, StatusCode::CONFLICT, l, f, e, false)
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
        Err(e) => error_page(&page, StatusCode::CONFLICT, page.t.listing_error(&e)),
    }
}

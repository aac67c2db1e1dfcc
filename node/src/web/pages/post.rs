//! The post form: photos, title, description, category, condition, price and currency,
//! quantity, location. One multipart request: the fields are read and checked (by the
//! listings service's own rules, through [`Listings::check`](crate::Listings::check))
//! before any photo is stored, so a refused form posts nothing; then the photos become
//! blobs and the listing is posted as `POST /v1/listings` would. Each error is shown next
//! to the field it names.

use askama::Template;
use axum::extract::multipart::Field;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::home::CURRENCIES;
use super::{Choice, Chrome, Page, category_choices, csrf_refused, render};
use crate::api::types::NewListing;
use crate::services::listings::{ListingError, parse_lat_lon};
use crate::web::WebState;
use crate::web::i18n::{Messages, fill};
use crate::web::money::{minor_digits, parse_price};
use crate::web::photos::sniff_image;
use jangteo_protocol::blob::MAX_BLOB_BYTES;
use jangteo_protocol::listing::IMAGES_MAX;

/// Largest post request: every photo at its largest, one more, and the fields.
pub const BODY_MAX: usize = (IMAGES_MAX + 2) * MAX_BLOB_BYTES + 256 * 1024;
/// Largest text field read.
const FIELD_MAX: usize = 16 * 1024;
/// Most parts read from one form.
pub(super) const PARTS_MAX: usize = 64;

/// What was typed, and the error next to each field.
#[derive(Debug, Clone, Default)]
pub struct PostDraft {
    title: String,
    description: String,
    category: String,
    condition: String,
    price: String,
    currency: String,
    quantity: String,
    location: String,
    moderators: String,
    err_photos: Option<String>,
    err_title: Option<String>,
    err_description: Option<String>,
    err_category: Option<String>,
    err_condition: Option<String>,
    err_price: Option<String>,
    err_currency: Option<String>,
    err_quantity: Option<String>,
    err_location: Option<String>,
    error: Option<String>,
}

impl PostDraft {
    fn has_errors(&self) -> bool {
        [
            &self.err_photos,
            &self.err_title,
            &self.err_description,
            &self.err_category,
            &self.err_condition,
            &self.err_price,
            &self.err_currency,
            &self.err_quantity,
            &self.err_location,
            &self.error,
        ]
        .iter()
        .any(|e| e.is_some())
    }

    /// Puts a service's field error next to its field.
    fn field_error(&mut self, field: &str, message: String) {
        let slot = match field {
            "title" => &mut self.err_title,
            "description" => &mut self.err_description,
            "category" => &mut self.err_category,
            "condition" => &mut self.err_condition,
            "price" => &mut self.err_price,
            "currency" => &mut self.err_currency,
            "quantity" => &mut self.err_quantity,
            "location" => &mut self.err_location,
            "moderators" | "moderator" => &mut self.error,
            "image" | "images" => &mut self.err_photos,
            _ => &mut self.error,
        };
        if slot.is_none() {
            *slot = Some(message);
        }
    }
}

#[derive(Template)]
#[template(path = "post.html")]
struct PostTemplate {
    c: Chrome,
    d: PostDraft,
    photos_hint: String,
    categories: Vec<Choice>,
    conditions: Vec<Choice>,
    currencies: Vec<Choice>,
    photos_again: bool,
}

fn post_page(page: &Page, status: StatusCode, d: PostDraft, photos_again: bool) -> Response {
    let t = page.t;
    let conditions = super::condition_choices(t, &d.condition);
    let currencies = CURRENCIES
        .iter()
        .map(|c| Choice {
            key: (*c).to_owned(),
            name: (*c).to_owned(),
            selected: d.currency == *c,
        })
        .collect();
    render(
        status,
        &PostTemplate {
            c: Chrome::new(page, t.post_title, "post"),
            photos_hint: fill(
                t.field_photos_hint,
                &[
                    ("n", &IMAGES_MAX.to_string()),
                    ("mb", &(MAX_BLOB_BYTES / (1024 * 1024)).to_string()),
                ],
            ),
            categories: category_choices(t, &d.category),
            conditions,
            currencies,
            photos_again,
            d,
        },
    )
}

/// `GET /post`.
pub async fn form(page: Page) -> Response {
    let d = PostDraft {
        currency: if page.t.lang_code == "ko" {
            "KRW".into()
        } else {
            "USD".into()
        },
        quantity: "1".into(),
        category: "general".into(),
        ..Default::default()
    };
    post_page(&page, StatusCode::OK, d, false)
}

/// A photo as received.
#[derive(Debug)]
pub(super) struct Photo {
    pub(super) name: String,
    pub(super) bytes: Vec<u8>,
}

/// Reads a photo part: its bytes, or None when it is larger than a blob may be (the rest is
/// read and dropped, at most one chunk held).
pub(super) async fn read_photo(field: &mut Field<'_>) -> Result<Option<Vec<u8>>, ()> {
    let mut bytes = Vec::new();
    let mut too_large = false;
    while let Some(chunk) = field.chunk().await.map_err(|_| ())? {
        if too_large {
            continue;
        }
        if bytes.len() + chunk.len() > MAX_BLOB_BYTES {
            too_large = true;
            bytes = Vec::new();
        } else {
            bytes.extend_from_slice(&chunk);
        }
    }
    Ok((!too_large).then_some(bytes))
}

/// Reads a text part (at most [`FIELD_MAX`] bytes of UTF-8). Browsers send a textarea's line
/// breaks as CRLF (HTML's form encoding); a listing holds LF and refuses other control
/// characters, so they are made LF.
pub(super) async fn read_text(field: &mut Field<'_>) -> Result<String, ()> {
    let mut text = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|_| ())? {
        if text.len() + chunk.len() > FIELD_MAX {
            return Err(());
        }
        text.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8(text)
        .map_err(|_| ())?
        .replace("\r\n", "\n"))
}

/// What is wrong with the photos chosen, if anything: more than a listing holds (with
/// `kept` of its photos kept), or one that is not a raster image.
pub(super) fn photos_error(t: &Messages, photos: &[Photo], kept: usize) -> Option<String> {
    if kept + photos.len() > IMAGES_MAX {
        return Some(fill(t.err_photo_count, &[("n", &IMAGES_MAX.to_string())]));
    }
    photos
        .iter()
        .find(|p| sniff_image(&p.bytes).is_none())
        .map(|p| fill(t.err_photo_type, &[("name", &p.name)]))
}

/// Stores the photos as blobs, in order: their ids, or the message for the photo field.
pub(super) async fn store_photos(
    w: &WebState,
    t: &Messages,
    photos: Vec<Photo>,
) -> Result<Vec<String>, String> {
    let mut ids = Vec::with_capacity(photos.len());
    for p in photos {
        match w.api.blobs.add(p.bytes).await {
            Ok(v) => ids.push(v.id),
            Err(e) => {
                tracing::info!(photo = %p.name, error = %e, "a photo was not stored");
                return Err(fill(t.err_photo_bad, &[("name", &p.name)]));
            }
        }
    }
    Ok(ids)
}

/// The form's parts: text fields into the draft, photos kept aside (each read at most one
/// byte past the limit; the rest of a too-large one is read and dropped).
async fn read_form(
    mut mp: Multipart,
    t: &Messages,
    d: &mut PostDraft,
) -> Result<(String, Vec<Photo>), ()> {
    let mut csrf = String::new();
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
                None => d.field_error(
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
            "csrf" => csrf = text,
            "title" => d.title = text,
            "description" => d.description = text,
            "category" => d.category = text,
            "condition" => d.condition = text,
            "price" => d.price = text,
            "currency" => d.currency = text,
            "quantity" => d.quantity = text,
            "location" => d.location = text,
            "moderators" => d.moderators = text,
            _ => {}
        }
    }
    Ok((csrf, photos))
}

/// `POST /post` (multipart): checks everything, then stores the photos and posts.
pub async fn submit(
    State(w): State<WebState>,
    page: Page,
    mp: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let t = page.t;
    let mut d = PostDraft::default();
    let Ok(mp) = mp else {
        d.error = Some(t.err_form.to_owned());
        return post_page(&page, StatusCode::BAD_REQUEST, d, true);
    };
    let Ok((csrf, photos)) = read_form(mp, t, &mut d).await else {
        d.error = Some(t.err_form.to_owned());
        return post_page(&page, StatusCode::BAD_REQUEST, d, true);
    };
    if !page.session.csrf_ok(&csrf) {
        return csrf_refused(&page);
    }
    // What only the form knows: how a price, a quantity and a place were typed.
    let currency = d.currency.trim().to_ascii_uppercase();
    let price = parse_price(&d.price, &currency);
    if price.is_none() {
        let digits = minor_digits(&currency).to_string();
        d.field_error(
            "price",
            fill(t.err_price, &[("currency", &currency), ("digits", &digits)]),
        );
    }
    let quantity = match d.quantity.trim() {
        "" => Some(1),
        q => q.parse::<u64>().ok(),
    };
    if quantity.is_none() {
        d.field_error("quantity", t.err_quantity.to_owned());
    }
    let location = match d.location.trim() {
        "" => None,
        l => {
            let p = parse_lat_lon(l);
            if p.is_none() {
                d.field_error("location", t.err_location.to_owned());
            }
            p
        }
    };
    if let Some(e) = photos_error(t, &photos, 0) {
        d.field_error("image", e);
    }
    let some = |s: &str| {
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_owned())
    };
    let mut new = NewListing {
        title: d.title.trim().to_owned(),
        price: price.unwrap_or(0),
        currency,
        description: some(&d.description),
        category: some(&d.category),
        condition: some(&d.condition),
        quantity,
        location,
        moderators: d
            .moderators
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect(),
        ..Default::default()
    };
    // The service's own rules, before anything is stored.
    let listings = w.api.listings.clone();
    let check = new.clone();
    match tokio::task::spawn_blocking(move || listings.check(&check)).await {
        Ok(Ok(())) => {}
        Ok(Err(ListingError::Invalid(e))) => d.field_error(e.field, t.field_error(&e)),
        Ok(Err(e)) => d.error = Some(t.listing_error(&e)),
        Err(e) => {
            tracing::warn!(error = %e, "checking a listing failed");
            d.error = Some(t.err_internal_short.to_owned());
        }
    }
    if d.has_errors() {
        let again = !photos.is_empty();
        return post_page(&page, StatusCode::BAD_REQUEST, d, again);
    }
    match store_photos(&w, t, photos).await {
        Ok(ids) => new.images = ids,
        Err(e) => {
            d.field_error("image", e);
            return post_page(&page, StatusCode::BAD_REQUEST, d, true);
        }
    }
    match w.api.listings.post(new).await {
        Ok(v) => Redirect::to(&format!("/listing/{}", v.id)).into_response(),
        Err(ListingError::Invalid(e)) => {
            d.field_error(e.field, t.field_error(&e));
            post_page(&page, StatusCode::BAD_REQUEST, d, true)
        }
        Err(e) => {
            d.error = Some(t.listing_error(&e));
            post_page(&page, StatusCode::INTERNAL_SERVER_ERROR, d, true)
        }
    }
}

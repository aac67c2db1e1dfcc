//! `/v1/listings`: post, update, retract, show and search listings. Hands each request to
//! the listings service (and the reputation service, which adds the seller's trust).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::ApiState;
use crate::api::error::{ApiError, ApiJson, ApiPath, ApiQuery};
#[allow(unused_imports)]
use crate::api::types::ErrorBody;
use crate::api::types::{ListingUpdate, ListingView, NewListing, SearchQuery};

pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(search, post_listing))
        .routes(routes!(show, update))
        .routes(routes!(retract))
}

/// Posts a new listing, signed by this node, and publishes it.
#[utoipa::path(post, path = "/v1/listings", tag = "listings", operation_id = "post_listing",
    request_body = NewListing,
    responses(
        (status = 201, description = "The listing posted, with the stamp made for it (`stamp_bits`, `stamp_ms`)", body = ListingView),
        (status = 400, description = "Invalid fields (`invalid_listing`) or body (`bad_request`)", body = ErrorBody),
        (status = 413, description = "Body too large (`too_large`)", body = ErrorBody),
        (status = 429, description = "This key has the most active listings one key may have (`refused`)", body = ErrorBody),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`)", body = ErrorBody),
    ))]
async fn post_listing(
    State(s): State<ApiState>,
    ApiJson(n): ApiJson<NewListing>,
) -> Result<(StatusCode, Json<ListingView>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.listings.post(n).await?)))
}

/// One listing held by the node, with its seller's trust.
#[utoipa::path(get, path = "/v1/listings/{id}", tag = "listings", operation_id = "show_listing",
    params(("id" = String, Path, description = "Listing id (64 hex digits)")),
    responses(
        (status = 200, description = "The listing", body = ListingView),
        (status = 400, description = "Not a listing id (`bad_id`)", body = ErrorBody),
        (status = 404, description = "Not held here (`not_found`)", body = ErrorBody),
    ))]
async fn show(
    State(s): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ListingView>, ApiError> {
    let (r, l) = (s.reputation.clone(), s.listings.clone());
    Ok(Json(
        tokio::task::spawn_blocking(move || r.show(&l, &id)).await??,
    ))
}

/// Publishes a new version of one of this node's listings.
#[utoipa::path(patch, path = "/v1/listings/{id}", tag = "listings", operation_id = "update_listing",
    params(("id" = String, Path, description = "Listing id (64 hex digits)")),
    request_body = ListingUpdate,
    responses(
        (status = 200, description = "The new version", body = ListingView),
        (status = 400, description = "Invalid id, fields or body", body = ErrorBody),
        (status = 403, description = "Someone else's listing (`not_yours`)", body = ErrorBody),
        (status = 404, description = "Not held here (`not_found`)", body = ErrorBody),
        (status = 409, description = "Retracted (`retracted`)", body = ErrorBody),
        (status = 413, description = "Body too large (`too_large`)", body = ErrorBody),
        (status = 429, description = "Too many versions of this listing in a short time (`refused`)", body = ErrorBody),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`)", body = ErrorBody),
    ))]
async fn update(
    State(s): State<ApiState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(u): ApiJson<ListingUpdate>,
) -> Result<Json<ListingView>, ApiError> {
    Ok(Json(s.listings.update(&id, u).await?))
}

/// Withdraws one of this node's listings for good.
#[utoipa::path(post, path = "/v1/listings/{id}/retract", tag = "listings", operation_id = "retract_listing",
    params(("id" = String, Path, description = "Listing id (64 hex digits)")),
    responses(
        (status = 200, description = "The retracted version", body = ListingView),
        (status = 400, description = "Not a listing id (`bad_id`)", body = ErrorBody),
        (status = 403, description = "Someone else's listing (`not_yours`)", body = ErrorBody),
        (status = 404, description = "Not held here (`not_found`)", body = ErrorBody),
        (status = 409, description = "Already retracted (`retracted`)", body = ErrorBody),
    ))]
async fn retract(
    State(s): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ListingView>, ApiError> {
    Ok(Json(s.listings.retract(&id).await?))
}

/// Searches the listings held by the node; no `q` lists everything matching the filters,
/// newest first.
#[utoipa::path(get, path = "/v1/listings", tag = "listings", operation_id = "search_listings",
    params(SearchQuery),
    responses(
        (status = 200, description = "Matching listings", body = Vec<ListingView>),
        (status = 400, description = "Invalid query (`bad_query`)", body = ErrorBody),
    ))]
async fn search(
    State(s): State<ApiState>,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> Result<Json<Vec<ListingView>>, ApiError> {
    let (r, listings) = (s.reputation.clone(), s.listings.clone());
    Ok(Json(
        tokio::task::spawn_blocking(move || r.search(&listings, &q)).await??,
    ))
}

//! `/v1/blobs`: add an image (or any blob) to this node, get one by its blake3 id from
//! here or from peers, and get a JPEG thumbnail of an image blob. Bodies are raw bytes,
//! capped at the protocol's blob limit.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::ApiState;
use crate::api::error::{ApiError, ApiPath, ApiQuery};
#[allow(unused_imports)]
use crate::api::types::{Binary, ErrorBody};
use crate::api::types::{BlobView, ErrorCode, ThumbQuery};
use crate::services::thumbs::{THUMB_CACHE_CONTROL, ThumbSize};

pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(add_blob))
        .routes(routes!(get_blob))
        .routes(routes!(get_blob_thumb))
}

/// Stores the body as a blob (an image for a listing) and announces it to peers.
#[utoipa::path(post, path = "/v1/blobs", tag = "blobs", operation_id = "add_blob",
    request_body(content = Binary, content_type = "application/octet-stream",
        description = "The blob's bytes (at most 5 MiB)"),
    responses(
        (status = 201, description = "The blob stored", body = BlobView),
        (status = 400, description = "Not a valid blob, e.g. empty (`invalid_blob`)", body = ErrorBody),
        (status = 413, description = "Larger than a blob may be (`too_large`)", body = ErrorBody),
        (status = 503, description = "The network task is not available (`network`)", body = ErrorBody),
    ))]
async fn add_blob(
    State(s): State<ApiState>,
    body: Body,
) -> Result<(StatusCode, Json<BlobView>), ApiError> {
    let max = jangteo_protocol::blob::MAX_BLOB_BYTES;
    let bytes = axum::body::to_bytes(body, max).await.map_err(|e| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            format!("{e}: a blob (an image) may be at most {max} bytes"),
        )
    })?;
    let view = s.blobs.add(bytes.to_vec()).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// A blob's bytes, from this node or fetched from peers and verified against the id.
#[utoipa::path(get, path = "/v1/blobs/{id}", tag = "blobs", operation_id = "get_blob",
    params(("id" = String, Path, description = "Blob id (64 hex digits)")),
    responses(
        (status = 200, description = "The blob", body = Binary, content_type = "application/octet-stream"),
        (status = 400, description = "Not a blob id (`bad_id`)", body = ErrorBody),
        (status = 404, description = "Neither here nor at any peer asked (`not_found`)", body = ErrorBody),
        (status = 503, description = "The network task is not available (`network`)", body = ErrorBody),
    ))]
async fn get_blob(
    State(s): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let bytes = s.blobs.get(&id).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// A JPEG thumbnail of an image blob (JPEG, PNG, WebP or GIF), fitting in a square of `size`
/// pixels, never upscaled, upright (EXIF orientation applied), with no metadata of the
/// original. Made once per blob and size, then read from the node's cache.
#[utoipa::path(get, path = "/v1/blobs/{id}/thumb", tag = "blobs", operation_id = "get_blob_thumb",
    params(("id" = String, Path, description = "Blob id (64 hex digits)"), ThumbQuery),
    responses(
        (status = 200, description = "The thumbnail", body = Binary, content_type = "image/jpeg",
            headers(
                ("Cache-Control" = String, description = "`private, max-age=31536000, immutable`: the blob's bytes never change under its id"),
                ("X-Content-Type-Options" = String, description = "`nosniff`"),
            )),
        (status = 400, description = "Not a blob id (`bad_id`), or a size other than 320 and 800 (`bad_query`)", body = ErrorBody),
        (status = 404, description = "Neither here nor at any peer asked (`not_found`)", body = ErrorBody),
        (status = 415, description = "The blob is not a JPEG, PNG, WebP or GIF image, e.g. SVG or HTML (`unsupported_image`)", body = ErrorBody),
        (status = 422, description = "The blob is such an image but does not decode, is truncated, or is larger than 8192 × 8192 px or 128 MiB of pixels (`invalid_image`)", body = ErrorBody),
        (status = 503, description = "The network task is not available (`network`)", body = ErrorBody),
    ))]
async fn get_blob_thumb(
    State(s): State<ApiState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ThumbQuery>,
) -> Result<Response, ApiError> {
    let size = ThumbSize::from_edge(q.size)?;
    let thumb = s.thumbs.thumbnail(&id, size).await?;
    Ok((
        [
            (header::CONTENT_TYPE, thumb.content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, THUMB_CACHE_CONTROL),
        ],
        thumb.bytes,
    )
        .into_response())
}

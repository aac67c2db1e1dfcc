//! `/v1/attestations`, `/v1/reputation/{peer}`, `/v1/trust`: rate a trade's other party,
//! read what this node concludes about a peer, and edit this node's trust seeds.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::ApiState;
use crate::api::error::{ApiError, ApiJson, ApiPath};
#[allow(unused_imports)]
use crate::api::types::ErrorBody;
use crate::api::types::{NewRating, RatingView, ReputationView, TrustChange};

pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(rate))
        .routes(routes!(reputation))
        .routes(routes!(trusted))
        .routes(routes!(trust, distrust))
}

/// Rates the other party of one of this node's completed trades (a later rating replaces
/// an earlier one).
#[utoipa::path(post, path = "/v1/attestations", tag = "reputation", operation_id = "rate",
    request_body = NewRating,
    responses(
        (status = 201, description = "The attestation made", body = RatingView),
        (status = 400, description = "Invalid fields (`invalid`) or body (`bad_request`)", body = ErrorBody),
        (status = 404, description = "No such trade here (`not_found`)", body = ErrorBody),
        (status = 409, description = "Not a completed trade of ours (`refused`)", body = ErrorBody),
        (status = 413, description = "Body too large (`too_large`)", body = ErrorBody),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`)", body = ErrorBody),
    ))]
async fn rate(
    State(s): State<ApiState>,
    ApiJson(r): ApiJson<NewRating>,
) -> Result<(StatusCode, Json<RatingView>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.reputation.rate(r).await?)))
}

/// What this node concludes about a peer: trust, confidence, evidence.
#[utoipa::path(get, path = "/v1/reputation/{peer}", tag = "reputation", operation_id = "reputation",
    params(("peer" = String, Path, description = "Peer id")),
    responses(
        (status = 200, description = "The peer's reputation", body = ReputationView),
        (status = 400, description = "Not a peer id (`invalid`)", body = ErrorBody),
    ))]
async fn reputation(
    State(s): State<ApiState>,
    ApiPath(peer): ApiPath<String>,
) -> Result<Json<ReputationView>, ApiError> {
    let r = s.reputation.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || r.reputation(&peer)).await??,
    ))
}

/// The keys this node trusts (its trust seeds).
#[utoipa::path(get, path = "/v1/trust", tag = "reputation", operation_id = "trusted",
    responses((status = 200, description = "Peer ids of the trust seeds", body = Vec<String>)))]
async fn trusted(State(s): State<ApiState>) -> Result<Json<Vec<String>>, ApiError> {
    Ok(Json(s.reputation.trusted()?))
}

/// Adds a key to this node's trust seeds.
#[utoipa::path(put, path = "/v1/trust/{peer}", tag = "reputation", operation_id = "trust",
    params(("peer" = String, Path, description = "Peer id")),
    responses(
        (status = 200, description = "The change", body = TrustChange),
        (status = 400, description = "Not a peer id, or this node's own (`invalid`)", body = ErrorBody),
    ))]
async fn trust(
    State(s): State<ApiState>,
    ApiPath(peer): ApiPath<String>,
) -> Result<Json<TrustChange>, ApiError> {
    Ok(Json(s.reputation.trust(&peer)?))
}

/// Removes a key from this node's trust seeds.
#[utoipa::path(delete, path = "/v1/trust/{peer}", tag = "reputation", operation_id = "distrust",
    params(("peer" = String, Path, description = "Peer id")),
    responses(
        (status = 200, description = "The change", body = TrustChange),
        (status = 400, description = "Not a peer id (`invalid`)", body = ErrorBody),
    ))]
async fn distrust(
    State(s): State<ApiState>,
    ApiPath(peer): ApiPath<String>,
) -> Result<Json<TrustChange>, ApiError> {
    Ok(Json(s.reputation.distrust(&peer)?))
}

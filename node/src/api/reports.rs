//! `/v1/reports`, `/v1/moderators`: report a listing or a key, list the reports held with
//! their weights here, and edit the moderators whose reports count as this node's own.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::ApiState;
use crate::api::error::{ApiError, ApiJson, ApiPath, ApiQuery};
#[allow(unused_imports)]
use crate::api::types::ErrorBody;
use crate::api::types::{ModeratorChange, NewReport, ReportMade, ReportView, ReportsQuery};

pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(report, reports))
        .routes(routes!(moderators))
        .routes(routes!(add_moderator, remove_moderator))
}

/// Reports a listing held by this node, or a key it knows; signs, stores and gossips the
/// report (a later report of the same listing or key replaces the earlier one).
#[utoipa::path(post, path = "/v1/reports", tag = "reports", operation_id = "report",
    request_body = NewReport,
    responses(
        (status = 201, description = "The report made", body = ReportMade),
        (status = 400, description = "Not a listing id or peer id, an unknown reason, a text over 500 bytes (`invalid`), or a bad body (`bad_request`)", body = ErrorBody),
        (status = 404, description = "A listing or key this node does not know (`not_found`)", body = ErrorBody),
        (status = 409, description = "A report about this node itself or its own listing (`refused`)", body = ErrorBody),
        (status = 413, description = "Body too large (`too_large`)", body = ErrorBody),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`)", body = ErrorBody),
        (status = 429, description = "Ten reports today already, the cap every node applies (`report_limit`)", body = ErrorBody),
    ))]
async fn report(
    State(s): State<ApiState>,
    ApiJson(n): ApiJson<NewReport>,
) -> Result<(StatusCode, Json<ReportMade>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.moderation.report(n).await?)))
}

/// The reports this node holds by one author, or about one listing or key, newest first,
/// each with its weight here.
#[utoipa::path(get, path = "/v1/reports", tag = "reports", operation_id = "reports",
    params(ReportsQuery),
    responses(
        (status = 200, description = "The reports", body = Vec<ReportView>),
        (status = 400, description = "Neither or both of `by` and `about`, or not an id (`invalid`); an unknown parameter (`bad_query`)", body = ErrorBody),
    ))]
async fn reports(
    State(s): State<ApiState>,
    ApiQuery(q): ApiQuery<ReportsQuery>,
) -> Result<Json<Vec<ReportView>>, ApiError> {
    let m = s.moderation.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || m.reports(&q)).await??,
    ))
}

/// The keys whose reports count as this node's own.
#[utoipa::path(get, path = "/v1/moderators", tag = "reports", operation_id = "moderators",
    responses((status = 200, description = "Peer ids of the moderators", body = Vec<String>)))]
async fn moderators(State(s): State<ApiState>) -> Result<Json<Vec<String>>, ApiError> {
    Ok(Json(s.moderation.moderators()?))
}

/// Subscribes to a moderator: its reports count as this node's own (full weight).
#[utoipa::path(put, path = "/v1/moderators/{peer}", tag = "reports", operation_id = "add_moderator",
    params(("peer" = String, Path, description = "Peer id")),
    responses(
        (status = 200, description = "The change", body = ModeratorChange),
        (status = 400, description = "Not a peer id, or this node's own (`invalid`)", body = ErrorBody),
        (status = 409, description = "Already 64 moderators (`refused`)", body = ErrorBody),
    ))]
async fn add_moderator(
    State(s): State<ApiState>,
    ApiPath(peer): ApiPath<String>,
) -> Result<Json<ModeratorChange>, ApiError> {
    Ok(Json(s.moderation.add_moderator(&peer)?))
}

/// Drops a moderator.
#[utoipa::path(delete, path = "/v1/moderators/{peer}", tag = "reports", operation_id = "remove_moderator",
    params(("peer" = String, Path, description = "Peer id")),
    responses(
        (status = 200, description = "The change", body = ModeratorChange),
        (status = 400, description = "Not a peer id (`invalid`)", body = ErrorBody),
    ))]
async fn remove_moderator(
    State(s): State<ApiState>,
    ApiPath(peer): ApiPath<String>,
) -> Result<Json<ModeratorChange>, ApiError> {
    Ok(Json(s.moderation.remove_moderator(&peer)?))
}

//! `/v1/notifications` and `/v1/alerts`: the notification list (read and unread, marked read
//! here) and the saved searches that raise alerts. New notifications also stream live on
//! `GET /v1/events` (kind `notification`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::ApiState;
use crate::api::error::{ApiError, ApiJson, ApiPath, ApiQuery};
#[allow(unused_imports)]
use crate::api::types::ErrorBody;
use crate::api::types::{
    MarkRead, MarkedRead, NewSavedSearch, NotificationList, NotificationsQuery, SavedSearchView,
};

pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(notifications))
        .routes(routes!(mark_read))
        .routes(routes!(alerts, add_alert))
        .routes(routes!(remove_alert))
}

/// The notifications held (at most 1,000; past that the oldest read ones go first), newest
/// first: messages, trade steps of the other party, delivery failures, our listings reserved
/// or sold, listings matching saved searches.
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", operation_id = "notifications",
    params(NotificationsQuery),
    responses(
        (status = 200, description = "Notifications, newest first, and the unread count", body = NotificationList),
        (status = 400, description = "A bad limit or parameter (`bad_query`)", body = ErrorBody),
    ))]
async fn notifications(
    State(s): State<ApiState>,
    ApiQuery(q): ApiQuery<NotificationsQuery>,
) -> Result<Json<NotificationList>, ApiError> {
    let a = s.alerts.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || a.notifications(&q)).await??,
    ))
}

/// Marks notifications read: the ones named, or all.
#[utoipa::path(post, path = "/v1/notifications/read", tag = "notifications", operation_id = "mark_read",
    request_body = MarkRead,
    responses(
        (status = 200, description = "How many were marked, how many are still unread", body = MarkedRead),
        (status = 400, description = "Neither ids nor all, or too many ids (`bad_query`), or a bad body (`bad_request`)", body = ErrorBody),
        (status = 404, description = "An id names no notification; nothing was marked (`not_found`)", body = ErrorBody),
        (status = 413, description = "Body too large (`too_large`)", body = ErrorBody),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`)", body = ErrorBody),
    ))]
async fn mark_read(
    State(s): State<ApiState>,
    ApiJson(m): ApiJson<MarkRead>,
) -> Result<Json<MarkedRead>, ApiError> {
    let a = s.alerts.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || a.mark_read(&m)).await??,
    ))
}

/// The saved searches, oldest first.
#[utoipa::path(get, path = "/v1/alerts", tag = "notifications", operation_id = "alerts",
    responses((status = 200, description = "The saved searches", body = Vec<SavedSearchView>)))]
async fn alerts(State(s): State<ApiState>) -> Result<Json<Vec<SavedSearchView>>, ApiError> {
    Ok(Json(s.alerts.list()?))
}

/// Saves a search (text and filters as `GET /v1/listings` takes them): every listing that
/// reaches this node from now on (by gossip, sync or import) and matches it raises one
/// `saved_search` notification; a listing matching several searches raises one naming them
/// all. At most 1,000 saved searches.
#[utoipa::path(post, path = "/v1/alerts", tag = "notifications", operation_id = "add_alert",
    request_body = NewSavedSearch,
    responses(
        (status = 201, description = "The search saved", body = SavedSearchView),
        (status = 400, description = "A bad query or filter, or neither (`bad_query`), or a bad body (`bad_request`)", body = ErrorBody),
        (status = 409, description = "As many saved searches as the node keeps (`refused`)", body = ErrorBody),
        (status = 413, description = "Body too large (`too_large`)", body = ErrorBody),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`)", body = ErrorBody),
    ))]
async fn add_alert(
    State(s): State<ApiState>,
    ApiJson(n): ApiJson<NewSavedSearch>,
) -> Result<(StatusCode, Json<SavedSearchView>), ApiError> {
    let a = s.alerts.clone();
    let v = tokio::task::spawn_blocking(move || a.add(n)).await??;
    Ok((StatusCode::CREATED, Json(v)))
}

/// Removes a saved search.
#[utoipa::path(delete, path = "/v1/alerts/{id}", tag = "notifications", operation_id = "remove_alert",
    params(("id" = u64, Path, description = "Saved search number")),
    responses(
        (status = 200, description = "The search removed", body = SavedSearchView),
        (status = 400, description = "Not a number (`bad_id`)", body = ErrorBody),
        (status = 404, description = "No saved search with that number (`not_found`)", body = ErrorBody),
    ))]
async fn remove_alert(
    State(s): State<ApiState>,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<SavedSearchView>, ApiError> {
    let a = s.alerts.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || a.remove(id)).await??,
    ))
}

//! `/v1/trades`: make offers, list and show trades, and act on them (accept, counter, paid,
//! ...). Hands each request to the trades service, which signs, stores and delivers; the
//! reputation service adds the amount check for the buyer.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::ApiState;
use crate::api::error::{ApiError, ApiJson, ApiPath};
#[allow(unused_imports)]
use crate::api::types::{ErrorBody, TradeActionName};
use crate::api::types::{NewOffer, TradeAction, TradeSummary, TradeView};

pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_trades, make_offer))
        .routes(routes!(show_trade))
        .routes(routes!(trade_action))
}

/// Makes an offer on a listing held here; the first delivery attempt is made before the
/// answer, so `history[0].delivery` tells whether the seller has it.
#[utoipa::path(post, path = "/v1/trades", tag = "trades", operation_id = "make_offer",
    request_body = NewOffer,
    responses(
        (status = 201, description = "The new trade", body = TradeView),
        (status = 400, description = "Invalid fields (`invalid_trade`) or body (`bad_request`)", body = ErrorBody),
        (status = 404, description = "No such listing here (`not_found`)", body = ErrorBody),
        (status = 409, description = "Refused: own listing, not on offer (`refused`)", body = ErrorBody),
        (status = 413, description = "Body too large (`too_large`)", body = ErrorBody),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`)", body = ErrorBody),
    ))]
async fn make_offer(
    State(s): State<ApiState>,
    ApiJson(o): ApiJson<NewOffer>,
) -> Result<(StatusCode, Json<TradeView>), ApiError> {
    let v = s.trades.offer(o).await?;
    let r = s.reputation.clone();
    let v = tokio::task::spawn_blocking(move || r.gate(v)).await?;
    Ok((StatusCode::CREATED, Json(v)))
}

/// Every trade this node is part of, newest first.
#[utoipa::path(get, path = "/v1/trades", tag = "trades", operation_id = "list_trades",
    responses((status = 200, description = "Trades", body = Vec<TradeSummary>)))]
async fn list_trades(State(s): State<ApiState>) -> Result<Json<Vec<TradeSummary>>, ApiError> {
    let t = s.trades.clone();
    Ok(Json(tokio::task::spawn_blocking(move || t.list()).await??))
}

/// One trade: terms, state, history with each message's delivery, what this node may do.
#[utoipa::path(get, path = "/v1/trades/{id}", tag = "trades", operation_id = "show_trade",
    params(("id" = String, Path, description = "Trade id (64 hex digits)")),
    responses(
        (status = 200, description = "The trade", body = TradeView),
        (status = 404, description = "Not held here, or not a trade id (`not_found`)", body = ErrorBody),
    ))]
async fn show_trade(
    State(s): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TradeView>, ApiError> {
    let (t, r) = (s.trades.clone(), s.reputation.clone());
    Ok(Json(
        tokio::task::spawn_blocking(move || t.view(&id).map(|v| r.gate(v))).await??,
    ))
}

/// Acts on a trade: one synced write, then delivery to the other party.
#[utoipa::path(post, path = "/v1/trades/{id}/{action}", tag = "trades", operation_id = "trade_action",
    params(
        ("id" = String, Path, description = "Trade id (64 hex digits)"),
        ("action" = TradeActionName, Path, description = "What to do"),
    ),
    request_body = TradeAction,
    responses(
        (status = 200, description = "The trade after the action", body = TradeView),
        (status = 400, description = "Invalid fields (`invalid_trade`) or body (`bad_request`)", body = ErrorBody),
        (status = 404, description = "No such trade or action (`not_found`)", body = ErrorBody),
        (status = 409, description = "Not allowed now (`invalid_transition`, `refused`)", body = ErrorBody),
        (status = 413, description = "Body too large (`too_large`)", body = ErrorBody),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`)", body = ErrorBody),
    ))]
async fn trade_action(
    State(s): State<ApiState>,
    ApiPath((id, action)): ApiPath<(String, String)>,
    ApiJson(a): ApiJson<TradeAction>,
) -> Result<Json<TradeView>, ApiError> {
    let v = s.trades.act(&id, &action, a).await?;
    let r = s.reputation.clone();
    Ok(Json(tokio::task::spawn_blocking(move || r.gate(v)).await?))
}

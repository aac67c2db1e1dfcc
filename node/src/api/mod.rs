//! The local HTTP/JSON API that the `jangteo` CLI (and later a web page) talks to.
//!
//! Owns routing, authentication (a bearer token from the data directory, compared in
//! constant time), request size limits, and the JSON error shape
//! `{"error": {"code", "message"}}`. It holds service handles and never the swarm.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::services::blobs::{BlobServiceError, Blobs};
use crate::services::listings::{ListingError, ListingUpdate, Listings, NewListing};
use crate::net::Client;
use crate::services::reputation::{NewRating, Reputation, ReputationError};
use crate::services::search::SearchQuery;
use crate::services::trades::{NewOffer, TradeAction, TradeError, Trades};

/// Largest request body the API reads.
pub const API_BODY_MAX_BYTES: usize = 64 * 1024;

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// Listings service.
    pub listings: Listings,
    /// Trades service.
    pub trades: Trades,
    /// Reputation service.
    pub reputation: Reputation,
    /// Blob service.
    pub blobs: Blobs,
    /// Network handle.
    pub network: Client,
    /// The bearer token.
    pub token: Arc<String>,
    /// When the node started.
    pub started: Instant,
    /// Our peer id.
    pub peer_id: String,
    /// Our public key, hex.
    pub public_key: String,
}

/// An API error: status, stable code, and a message for people.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

impl From<ListingError> for ApiError {
    fn from(e: ListingError) -> Self {
        let (status, code) = match &e {
            ListingError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_listing"),
            ListingError::BadId(_) => (StatusCode::BAD_REQUEST, "bad_id"),
            ListingError::BadQuery(_) => (StatusCode::BAD_REQUEST, "bad_query"),
            ListingError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ListingError::NotYours(_) => (StatusCode::FORBIDDEN, "not_yours"),
            ListingError::Retracted(_) => (StatusCode::CONFLICT, "retracted"),
            ListingError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store"),
            ListingError::Search(_) => (StatusCode::INTERNAL_SERVER_ERROR, "search"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<TradeError> for ApiError {
    fn from(e: TradeError) -> Self {
        let (status, code) = match &e {
            TradeError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            TradeError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_trade"),
            TradeError::Transition(_) => (StatusCode::CONFLICT, "invalid_transition"),
            TradeError::Refused(_) => (StatusCode::CONFLICT, "refused"),
            TradeError::Offense(_) => (StatusCode::BAD_REQUEST, "offense"),
            TradeError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<ReputationError> for ApiError {
    fn from(e: ReputationError) -> Self {
        let (status, code) = match &e {
            ReputationError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            ReputationError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ReputationError::Refused(_) => (StatusCode::CONFLICT, "refused"),
            ReputationError::Trade(t) => {
                return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", t.to_string());
            }
            ReputationError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<BlobServiceError> for ApiError {
    fn from(e: BlobServiceError) -> Self {
        let (status, code) = match &e {
            BlobServiceError::BadId(_) => (StatusCode::BAD_REQUEST, "bad_id"),
            BlobServiceError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_blob"),
            BlobServiceError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            BlobServiceError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store"),
            BlobServiceError::Network(_) => (StatusCode::SERVICE_UNAVAILABLE, "network"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

fn join_error(e: tokio::task::JoinError) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        let status = match e {
            JsonRejection::BytesRejection(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, "bad_request", e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text())
    }
}

impl From<crate::error::NodeError> for ApiError {
    fn from(e: crate::error::NodeError) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "network", e.to_string())
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

/// The API's routes, behind the token check and the body limit.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/id", get(id))
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/listings", get(search).post(post_listing))
        .route("/v1/listings/{id}", get(show).patch(update))
        .route("/v1/listings/{id}/retract", post(retract))
        .route("/v1/trades", get(list_trades).post(make_offer))
        .route("/v1/trades/{id}", get(show_trade))
        .route("/v1/trades/{id}/{action}", post(trade_action))
        .route("/v1/attestations", post(rate))
        .route(
            "/v1/blobs",
            post(add_blob).layer(DefaultBodyLimit::max(
                jangteo_protocol::blob::MAX_BLOB_BYTES + 1,
            )),
        )
        .route("/v1/blobs/{id}", get(get_blob))
        .route("/v1/reputation/{peer}", get(reputation))
        .route("/v1/trust", get(trusted))
        .route(
            "/v1/trust/{peer}",
            axum::routing::put(trust).delete(distrust),
        )
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such API route")
        })
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(DefaultBodyLimit::max(API_BODY_MAX_BYTES))
        .with_state(state)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(t) if constant_time_eq(t.as_bytes(), state.token.as_bytes()) => next.run(req).await,
        _ => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API token (it is in the node's data directory, file api.token)",
        )
        .into_response(),
    }
}

async fn id(State(s): State<ApiState>) -> ApiResult {
    let info = s.network.info().await?;
    Ok(Json(
        json!({"peer_id": s.peer_id, "public_key": s.public_key, "addrs": info.listen_addrs}),
    ))
}

async fn status(State(s): State<ApiState>) -> ApiResult {
    let info = s.network.info().await?;
    let relays = s.network.relays().await?.len();
    let mailbox = s.trades.mailbox_stats().unwrap_or((0, 0));
    let listings = s.listings.clone();
    let open = tokio::task::spawn_blocking(move || listings.open_count())
        .await
        .map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })??;
    Ok(Json(json!({
        "peer_id": s.peer_id,
        "peers": info.peers.len(),
        "gossip_peers": info.gossip_peers,
        "synced_peers": info.synced_peers,
        "listings": open,
        "uptime_s": s.started.elapsed().as_secs(),
        "relays": relays,
        "blobs": s.blobs.count().unwrap_or(0),
        "sync": info.sync,
        "reachability": info.reachability,
        "banned": info.banned,
        "following": info.following,
        "relayed_addrs": info.relayed_addrs,
        "mailbox": {"items": mailbox.0, "bytes": mailbox.1},
        "trades": s.trades.counts().map(|(held, messages, queued)| json!({
            "held": held, "messages": messages, "queued_deliveries": queued,
        })).unwrap_or(Value::Null),
        "version": env!("CARGO_PKG_VERSION"),
    })))
}

async fn peers(State(s): State<ApiState>) -> ApiResult {
    let info = s.network.info().await?;
    Ok(Json(json!(info.peers)))
}

async fn post_listing(
    State(s): State<ApiState>,
    body: Result<Json<NewListing>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(n) = body?;
    let view = s.listings.post(n).await?;
    Ok((StatusCode::CREATED, Json(json!(view))))
}

async fn show(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    let (r, l) = (s.reputation.clone(), s.listings.clone());
    let v = tokio::task::spawn_blocking(move || r.show(&l, &id))
        .await
        .map_err(join_error)??;
    Ok(Json(json!(v)))
}

async fn update(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Json<ListingUpdate>, JsonRejection>,
) -> ApiResult {
    let Json(u) = body?;
    Ok(Json(json!(s.listings.update(&id, u).await?)))
}

async fn retract(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    Ok(Json(json!(s.listings.retract(&id).await?)))
}

async fn search(
    State(s): State<ApiState>,
    q: Result<Query<SearchQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q?;
    let (r, listings) = (s.reputation.clone(), s.listings.clone());
    let hits = tokio::task::spawn_blocking(move || r.search(&listings, &q))
        .await
        .map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })??;
    Ok(Json(json!(hits)))
}

async fn make_offer(
    State(s): State<ApiState>,
    body: Result<Json<NewOffer>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(o) = body?;
    Ok((StatusCode::CREATED, Json(s.trades.offer(o).await?)))
}

async fn list_trades(State(s): State<ApiState>) -> ApiResult {
    let t = s.trades.clone();
    let v = tokio::task::spawn_blocking(move || t.list())
        .await
        .map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })??;
    Ok(Json(v))
}

async fn show_trade(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    Ok(Json(s.trades.view(&id)?))
}

async fn trade_action(
    State(s): State<ApiState>,
    Path((id, action)): Path<(String, String)>,
    body: Result<Json<TradeAction>, JsonRejection>,
) -> ApiResult {
    let Json(a) = body?;
    Ok(Json(s.trades.act(&id, &action, a).await?))
}

async fn rate(
    State(s): State<ApiState>,
    body: Result<Json<NewRating>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(r) = body?;
    Ok((StatusCode::CREATED, Json(s.reputation.rate(r).await?)))
}

async fn reputation(State(s): State<ApiState>, Path(peer): Path<String>) -> ApiResult {
    let r = s.reputation.clone();
    let v = tokio::task::spawn_blocking(move || r.reputation(&peer))
        .await
        .map_err(join_error)??;
    Ok(Json(v))
}

async fn trusted(State(s): State<ApiState>) -> ApiResult {
    Ok(Json(s.reputation.trusted()?))
}

async fn trust(State(s): State<ApiState>, Path(peer): Path<String>) -> ApiResult {
    Ok(Json(s.reputation.trust(&peer)?))
}

async fn distrust(State(s): State<ApiState>, Path(peer): Path<String>) -> ApiResult {
    Ok(Json(s.reputation.distrust(&peer)?))
}

async fn add_blob(
    State(s): State<ApiState>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body.map_err(|e| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "{}: an image may be at most {} bytes",
                e.body_text(),
                jangteo_protocol::blob::MAX_BLOB_BYTES
            ),
        )
    })?;
    Ok((StatusCode::CREATED, Json(s.blobs.add(body.to_vec()).await?)))
}

async fn get_blob(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let bytes = s.blobs.get(&id).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

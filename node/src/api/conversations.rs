//! `/v1/conversations` and `/v1/blocked`: ask about a listing, write in a conversation,
//! list and open conversations (opening one marks it read and tells the other side), and
//! block or unblock keys. Hands each request to the conversations service.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::ApiState;
use crate::api::error::{ApiError, ApiJson, ApiPath};
#[allow(unused_imports)]
use crate::api::types::ErrorBody;
use crate::api::types::{
    BlockChange, BlockedView, MessageSent, NewChatMessage, NewQuestion, ThreadSummary, ThreadView,
};

pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(inbox, ask))
        .routes(routes!(show_thread))
        .routes(routes!(read_thread))
        .routes(routes!(say))
        .routes(routes!(list_blocked))
        .routes(routes!(block, unblock))
}

/// Asks the seller of a listing held here (the conversation about that listing starts or
/// continues); a first contact carries a proof-of-work stamp (about 0.4 s). The first
/// delivery attempt is made before the answer, so `status` tells whether the seller has it.
#[utoipa::path(post, path = "/v1/conversations", tag = "conversations", operation_id = "ask",
    request_body = NewQuestion,
    responses(
        (status = 201, description = "The message sent", body = MessageSent),
        (status = 400, description = "Empty or over-long text, bad photos (`invalid_message`), a malformed id (`bad_id`), or body (`bad_request`)", body = ErrorBody),
        (status = 404, description = "No such listing here (`not_found`)", body = ErrorBody),
        (status = 409, description = "Refused: your own listing, a blocked seller (`refused`)", body = ErrorBody),
        (status = 413, description = "Body too large (`too_large`)", body = ErrorBody),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`)", body = ErrorBody),
    ))]
async fn ask(
    State(s): State<ApiState>,
    ApiJson(q): ApiJson<NewQuestion>,
) -> Result<(StatusCode, Json<MessageSent>), ApiError> {
    let m = s.conversations.ask(&q.listing, q.text, q.photos).await?;
    Ok((StatusCode::CREATED, Json(m)))
}

/// Every conversation, the latest first, with its unread count.
#[utoipa::path(get, path = "/v1/conversations", tag = "conversations", operation_id = "inbox",
    responses((status = 200, description = "Conversations", body = Vec<ThreadSummary>)))]
async fn inbox(State(s): State<ApiState>) -> Result<Json<Vec<ThreadSummary>>, ApiError> {
    let c = s.conversations.clone();
    Ok(Json(tokio::task::spawn_blocking(move || c.inbox()).await??))
}

/// One conversation with each message's status; does not mark it read.
#[utoipa::path(get, path = "/v1/conversations/{thread}", tag = "conversations", operation_id = "show_thread",
    params(("thread" = String, Path, description = "Thread id (64 hex digits)")),
    responses(
        (status = 200, description = "The conversation", body = ThreadView),
        (status = 400, description = "Not a thread id (`bad_id`)", body = ErrorBody),
        (status = 404, description = "No such conversation here (`not_found`)", body = ErrorBody),
    ))]
async fn show_thread(
    State(s): State<ApiState>,
    ApiPath(thread): ApiPath<String>,
) -> Result<Json<ThreadView>, ApiError> {
    let c = s.conversations.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || c.view(&thread)).await??,
    ))
}

/// Opens a conversation: marks the other person's messages read, sends them signed `read`
/// receipts, and returns the history.
#[utoipa::path(post, path = "/v1/conversations/{thread}/read", tag = "conversations", operation_id = "read_thread",
    params(("thread" = String, Path, description = "Thread id (64 hex digits)")),
    responses(
        (status = 200, description = "The conversation, read", body = ThreadView),
        (status = 400, description = "Not a thread id (`bad_id`)", body = ErrorBody),
        (status = 404, description = "No such conversation here (`not_found`)", body = ErrorBody),
    ))]
async fn read_thread(
    State(s): State<ApiState>,
    ApiPath(thread): ApiPath<String>,
) -> Result<Json<ThreadView>, ApiError> {
    Ok(Json(s.conversations.read(&thread).await?))
}

/// Writes in a conversation held here.
#[utoipa::path(post, path = "/v1/conversations/{thread}/messages", tag = "conversations", operation_id = "say",
    params(("thread" = String, Path, description = "Thread id (64 hex digits)")),
    request_body = NewChatMessage,
    responses(
        (status = 201, description = "The message sent", body = MessageSent),
        (status = 400, description = "Empty or over-long text, bad photos (`invalid_message`), not a thread id (`bad_id`), or body (`bad_request`)", body = ErrorBody),
        (status = 404, description = "No such conversation here (`not_found`)", body = ErrorBody),
        (status = 409, description = "Refused: a blocked person, a full conversation (`refused`)", body = ErrorBody),
        (status = 413, description = "Body too large (`too_large`)", body = ErrorBody),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`)", body = ErrorBody),
    ))]
async fn say(
    State(s): State<ApiState>,
    ApiPath(thread): ApiPath<String>,
    ApiJson(m): ApiJson<NewChatMessage>,
) -> Result<(StatusCode, Json<MessageSent>), ApiError> {
    let sent = s.conversations.say(&thread, m.text, m.photos).await?;
    Ok((StatusCode::CREATED, Json(sent)))
}

/// The keys blocked here, the latest first.
#[utoipa::path(get, path = "/v1/blocked", tag = "conversations", operation_id = "list_blocked",
    responses((status = 200, description = "Blocked keys", body = Vec<BlockedView>)))]
async fn list_blocked(State(s): State<ApiState>) -> Result<Json<Vec<BlockedView>>, ApiError> {
    let c = s.conversations.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || c.blocked()).await??,
    ))
}

/// Blocks a key: its messages and offers are refused and its listings hidden here.
#[utoipa::path(put, path = "/v1/blocked/{peer_id}", tag = "conversations", operation_id = "block",
    params(("peer_id" = String, Path, description = "The key's peer id")),
    responses(
        (status = 200, description = "Blocked", body = BlockChange),
        (status = 400, description = "Not a peer id (`bad_id`)", body = ErrorBody),
        (status = 409, description = "Your own key (`refused`)", body = ErrorBody),
    ))]
async fn block(
    State(s): State<ApiState>,
    ApiPath(peer): ApiPath<String>,
) -> Result<Json<BlockChange>, ApiError> {
    let c = s.conversations.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || c.block(&peer, true)).await??,
    ))
}

/// Unblocks a key.
#[utoipa::path(delete, path = "/v1/blocked/{peer_id}", tag = "conversations", operation_id = "unblock",
    params(("peer_id" = String, Path, description = "The key's peer id")),
    responses(
        (status = 200, description = "Not blocked any more", body = BlockChange),
        (status = 400, description = "Not a peer id (`bad_id`)", body = ErrorBody),
    ))]
async fn unblock(
    State(s): State<ApiState>,
    ApiPath(peer): ApiPath<String>,
) -> Result<Json<BlockChange>, ApiError> {
    let c = s.conversations.clone();
    Ok(Json(
        tokio::task::spawn_blocking(move || c.block(&peer, false)).await??,
    ))
}

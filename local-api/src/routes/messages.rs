//! Messages and conversations.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::auth::{Authed, ReadScope, SendScope};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::types::{
    ConversationList, ListMessagesParams, MessageMembers, MessagePage, MessageQuery, MessageView,
    SendMessageRequest,
};

/// Queue a message. Answers once it is durably in the outbox; follow its state on
/// `/v1/events` or `GET /v1/messages/{id}`.
#[utoipa::path(
    post, path = "/v1/messages", tag = "messages",
    request_body = SendMessageRequest,
    security(("bearer" = ["send"])),
    responses(
        (status = 202, description = "Queued", body = MessageView),
        (status = 400, description = "`invalid_address`, `invalid_card` (the contact's card lists no mailbox), `invalid_json`, `bad_request` (wrong shape, empty `to` or `body`)", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `send`)", body = ErrorBody),
        (status = 404, description = "`unknown_contact`", body = ErrorBody),
        (status = 413, description = "`message_too_large` (over what the node sends in one message), `payload_too_large` (body over the API's limit)", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: `Content-Type` is not `application/json`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: outbox full; see Retry-After", body = ErrorBody),
    )
)]
pub(crate) async fn send_message(
    _auth: Authed<SendScope>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SendMessageRequest>,
) -> ApiResult<(StatusCode, Json<MessageView>)> {
    let to = req.to.trim().to_owned();
    if to.is_empty() {
        return Err(ApiError::bad_request("`to` must not be empty"));
    }
    let attachments = req.attachments.unwrap_or_default();
    if req.body.is_empty() && attachments.is_empty() {
        return Err(ApiError::bad_request("`body` must not be empty"));
    }
    let message = state
        .service
        .send_with_files(to, req.body, attachments)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(message)))
}

/// A page size as asked for, or the default; `bad_request` outside 1..=`MAX_LIMIT`.
pub(crate) fn page_limit(limit: Option<u32>) -> ApiResult<u32> {
    let limit = limit.unwrap_or(MessageQuery::DEFAULT_LIMIT);
    if !(1..=MessageQuery::MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "`limit` must be between 1 and {}",
            MessageQuery::MAX_LIMIT
        )));
    }
    Ok(limit)
}

/// Messages, newest first, optionally of one conversation.
#[utoipa::path(
    get, path = "/v1/messages", tag = "messages",
    security(("bearer" = ["read"])),
    params(ListMessagesParams),
    responses(
        (status = 200, description = "One page", body = MessagePage),
        (status = 400, description = "`bad_request` (limit, cursor), `invalid_address`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope`", body = ErrorBody),
    )
)]
pub(crate) async fn list_messages(
    _auth: Authed<ReadScope>,
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListMessagesParams>,
) -> ApiResult<Json<MessagePage>> {
    let limit = page_limit(params.limit)?;
    let query = MessageQuery {
        peer: params.peer.filter(|p| !p.is_empty()),
        limit,
        cursor: params.cursor.filter(|c| !c.is_empty()),
    };
    Ok(Json(state.service.list_messages(query).await?))
}

#[utoipa::path(
    get, path = "/v1/messages/{id}", tag = "messages",
    security(("bearer" = ["read"])),
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, description = "The message and its delivery state", body = MessageView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub(crate) async fn get_message(
    _auth: Authed<ReadScope>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<MessageView>> {
    Ok(Json(state.service.get_message(id).await?))
}

/// Each member's state of a group message this node sent: who has it, who read it.
#[utoipa::path(
    get, path = "/v1/messages/{id}/members", tag = "messages",
    security(("bearer" = ["read"])),
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, description = "One entry per member the message was sent to", body = MessageMembers),
        (status = 400, description = "`bad_request`: not a group message this node sent", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub(crate) async fn message_members(
    _auth: Authed<ReadScope>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<MessageMembers>> {
    Ok(Json(state.service.message_members(id).await?))
}

/// Mark an incoming message read; the sender gets a read receipt. Idempotent. Needs `read`:
/// the answer is the message, body included.
#[utoipa::path(
    post, path = "/v1/messages/{id}/read", tag = "messages",
    security(("bearer" = ["read"])),
    params(("id" = String, Path, description = "Message id")),
    responses(
        (status = 200, description = "The message, now `read`", body = MessageView),
        (status = 400, description = "`bad_request`: not an incoming message", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `read`)", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub(crate) async fn mark_read(
    _auth: Authed<ReadScope>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<MessageView>> {
    Ok(Json(state.service.mark_read(id).await?))
}

/// Conversations, most recent activity first, with unread counts.
#[utoipa::path(
    get, path = "/v1/conversations", tag = "messages",
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "Conversations", body = ConversationList),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope`", body = ErrorBody),
    )
)]
pub(crate) async fn list_conversations(
    _auth: Authed<ReadScope>,
    State(state): State<AppState>,
) -> ApiResult<Json<ConversationList>> {
    Ok(Json(ConversationList {
        conversations: state.service.list_conversations().await?,
    }))
}

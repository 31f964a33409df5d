//! Groups: create, list, show, send to and read a group.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::auth::{Authed, ReadScope, SendScope};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::token::Scope;
use crate::types::{
    CreateGroupRequest, GroupList, GroupMessageRequest, GroupView, MessagePage, MessageQuery,
    MessageView, PageParams,
};

/// Longest group name, in bytes.
const MAX_GROUP_NAME_BYTES: usize = 128;

/// Create a group; the creator is its owner and the listed contacts its members. Each member
/// is sent the group over its 1:1 session.
#[utoipa::path(
    post, path = "/v1/groups", tag = "groups",
    request_body = CreateGroupRequest,
    security(("bearer" = ["send"])),
    responses(
        (status = 201, description = "Created; members' local names only to a token that can `read`", body = GroupView),
        (status = 400, description = "`invalid_json`, `bad_request` (wrong shape, empty or long `name`, no members, too many), `invalid_address`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `send`)", body = ErrorBody),
        (status = 404, description = "`unknown_contact`: a member is not a contact", body = ErrorBody),
        (status = 409, description = "`conflict`: a member is a message request or blocked", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over the API's limit", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: `Content-Type` is not `application/json`", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    auth: Authed<SendScope>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateGroupRequest>,
) -> ApiResult<(StatusCode, Json<GroupView>)> {
    let name = req.name.trim().to_owned();
    if name.is_empty() || name.len() > MAX_GROUP_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "`name` must be 1 to {MAX_GROUP_NAME_BYTES} bytes without control characters"
        )));
    }
    if req.members.is_empty() {
        return Err(ApiError::bad_request(
            "`members` must name at least one contact",
        ));
    }
    let mut group = state.service.create_group(name, req.members).await?;
    // Members' local names are contact data: only a token that can `read` sees them.
    if !auth.principal.grants(Scope::Read) {
        for m in &mut group.members {
            m.name = None;
        }
    }
    Ok((StatusCode::CREATED, Json(group)))
}

#[utoipa::path(
    get, path = "/v1/groups", tag = "groups",
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The groups this node is a member of", body = GroupList),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope`", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    _auth: Authed<ReadScope>,
    State(state): State<AppState>,
) -> ApiResult<Json<GroupList>> {
    Ok(Json(GroupList {
        groups: state.service.list_groups().await?,
    }))
}

#[utoipa::path(
    get, path = "/v1/groups/{id}", tag = "groups",
    security(("bearer" = ["read"])),
    params(("id" = String, Path, description = "Group id (64 hex digits)")),
    responses(
        (status = 200, description = "The group: name, members and roles", body = GroupView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub(crate) async fn get(
    _auth: Authed<ReadScope>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<GroupView>> {
    Ok(Json(state.service.get_group(id).await?))
}

/// Send a text to every member: sealed once (sender keys), one envelope per member.
#[utoipa::path(
    post, path = "/v1/groups/{id}/messages", tag = "groups",
    request_body = GroupMessageRequest,
    security(("bearer" = ["send"])),
    params(("id" = String, Path, description = "Group id (64 hex digits)")),
    responses(
        (status = 202, description = "Queued (durably in the outbox)", body = MessageView),
        (status = 400, description = "`invalid_json`, `bad_request` (wrong shape, empty `body`)", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `send`)", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`, `message_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: `Content-Type` is not `application/json`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: the outbox is full (retry after the header's seconds)", body = ErrorBody),
        (status = 503, description = "`unavailable`", body = ErrorBody),
    )
)]
pub(crate) async fn send(
    _auth: Authed<SendScope>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<GroupMessageRequest>,
) -> ApiResult<(StatusCode, Json<MessageView>)> {
    if req.body.is_empty() {
        return Err(ApiError::bad_request("`body` must not be empty"));
    }
    let message = state.service.send_group_message(id, req.body).await?;
    Ok((StatusCode::ACCEPTED, Json(message)))
}

/// A group's messages, newest first.
#[utoipa::path(
    get, path = "/v1/groups/{id}/messages", tag = "groups",
    security(("bearer" = ["read"])),
    params(("id" = String, Path, description = "Group id (64 hex digits)"), PageParams),
    responses(
        (status = 200, description = "One page", body = MessagePage),
        (status = 400, description = "`bad_request` (limit, cursor)", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub(crate) async fn messages(
    _auth: Authed<ReadScope>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> ApiResult<Json<MessagePage>> {
    let limit = params.limit.unwrap_or(MessageQuery::DEFAULT_LIMIT);
    if !(1..=MessageQuery::MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "`limit` must be between 1 and {}",
            MessageQuery::MAX_LIMIT
        )));
    }
    let query = MessageQuery {
        peer: None,
        limit,
        cursor: params.cursor.filter(|c| !c.is_empty()),
    };
    Ok(Json(state.service.list_group_messages(id, query).await?))
}

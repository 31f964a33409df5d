//! Groups: create, list, show, send to and read a group.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::auth::{Authed, ReadScope, SendScope};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::messages::page_limit;
use crate::state::AppState;
use crate::token::Scope;
use crate::types::{
    AddMemberRequest, CreateGroupRequest, CreateInviteRequest, GroupEdit, GroupList,
    GroupMessageRequest, GroupView, InviteView, JoinGroupRequest, JoinView, MessagePage,
    MessageQuery, MessageView, PageParams, RenameGroupRequest, SetRoleRequest,
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
        (status = 409, description = "`conflict`: a member is a message request or blocked, or this is a linked device (groups are made on the account's first device)", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over the API's limit", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: `Content-Type` is not `application/json`", body = ErrorBody),
    )
)]
pub(crate) async fn create(
    auth: Authed<SendScope>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateGroupRequest>,
) -> ApiResult<(StatusCode, Json<GroupView>)> {
    let name = check_name(&req.name)?;
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
    let attachments = req.attachments.unwrap_or_default();
    if req.body.is_empty() && attachments.is_empty() {
        return Err(ApiError::bad_request("`body` must not be empty"));
    }
    let message = state
        .service
        .send_group_with_files(id, req.body, attachments)
        .await?;
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
    let limit = page_limit(params.limit)?;
    let query = MessageQuery {
        peer: None,
        limit,
        cursor: params.cursor.filter(|c| !c.is_empty()),
    };
    Ok(Json(state.service.list_group_messages(id, query).await?))
}

fn check_name(name: &str) -> ApiResult<String> {
    let name = name.trim().to_owned();
    if name.is_empty() || name.len() > MAX_GROUP_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "`name` must be 1 to {MAX_GROUP_NAME_BYTES} bytes without control characters"
        )));
    }
    Ok(name)
}

async fn change(state: &AppState, id: String, edit: GroupEdit) -> ApiResult<Json<GroupView>> {
    let group = state.service.change_group(id.clone(), edit).await?;
    group
        .map(Json)
        .ok_or_else(|| ApiError::new(crate::error::ErrorCode::NotFound, format!("group {id}")))
}

/// Add a contact to the group (admins and the owner); it is sent the group, and every member
/// its card.
#[utoipa::path(
    post, path = "/v1/groups/{id}/members", tag = "groups",
    request_body = AddMemberRequest,
    security(("bearer" = ["send"])),
    params(("id" = String, Path, description = "Group id (64 hex digits)")),
    responses(
        (status = 200, description = "The group now", body = GroupView),
        (status = 400, description = "`invalid_json`, `bad_request` (wrong shape), `invalid_address`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `send`)", body = ErrorBody),
        (status = 404, description = "`not_found` (group), `unknown_contact`", body = ErrorBody),
        (status = 409, description = "`conflict`: not allowed by the group's rules (role, full, already a member), not an accepted contact, or a linked device", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over the API's limit", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: `Content-Type` is not `application/json`", body = ErrorBody),
    )
)]
pub(crate) async fn add_member(
    _auth: Authed<SendScope>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AddMemberRequest>,
) -> ApiResult<Json<GroupView>> {
    change(&state, id, GroupEdit::Add { member: req.member }).await
}

/// Remove a member (admins remove members; the owner also admins). Every remaining member
/// replaces its sender key.
#[utoipa::path(
    delete, path = "/v1/groups/{id}/members/{address}", tag = "groups",
    security(("bearer" = ["send"])),
    params(("id" = String, Path, description = "Group id (64 hex digits)"),
           ("address" = String, Path, description = "The member's address")),
    responses(
        (status = 200, description = "The group now", body = GroupView),
        (status = 400, description = "`invalid_address`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `send`)", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: not allowed by the group's rules, or a linked device", body = ErrorBody),
    )
)]
pub(crate) async fn remove_member(
    _auth: Authed<SendScope>,
    State(state): State<AppState>,
    Path((id, address)): Path<(String, String)>,
) -> ApiResult<Json<GroupView>> {
    change(&state, id, GroupEdit::Remove { member: address }).await
}

/// Set a member's role (the owner only; `owner` hands ownership over).
#[utoipa::path(
    put, path = "/v1/groups/{id}/members/{address}/role", tag = "groups",
    request_body = SetRoleRequest,
    security(("bearer" = ["send"])),
    params(("id" = String, Path, description = "Group id (64 hex digits)"),
           ("address" = String, Path, description = "The member's address")),
    responses(
        (status = 200, description = "The group now", body = GroupView),
        (status = 400, description = "`invalid_json`, `bad_request` (wrong shape, unknown role), `invalid_address`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `send`)", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: not allowed by the group's rules, or a linked device", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over the API's limit", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: `Content-Type` is not `application/json`", body = ErrorBody),
    )
)]
pub(crate) async fn set_role(
    _auth: Authed<SendScope>,
    State(state): State<AppState>,
    Path((id, address)): Path<(String, String)>,
    ApiJson(req): ApiJson<SetRoleRequest>,
) -> ApiResult<Json<GroupView>> {
    let edit = GroupEdit::SetRole {
        member: address,
        role: req.role,
    };
    change(&state, id, edit).await
}

/// Rename the group (admins and the owner).
#[utoipa::path(
    patch, path = "/v1/groups/{id}", tag = "groups",
    request_body = RenameGroupRequest,
    security(("bearer" = ["send"])),
    params(("id" = String, Path, description = "Group id (64 hex digits)")),
    responses(
        (status = 200, description = "The group now", body = GroupView),
        (status = 400, description = "`invalid_json`, `bad_request` (wrong shape, empty or long `name`)", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `send`)", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: not allowed by the group's rules, or a linked device", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over the API's limit", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: `Content-Type` is not `application/json`", body = ErrorBody),
    )
)]
pub(crate) async fn rename(
    _auth: Authed<SendScope>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RenameGroupRequest>,
) -> ApiResult<Json<GroupView>> {
    let name = check_name(&req.name)?;
    change(&state, id, GroupEdit::Rename { name }).await
}

/// Leave the group (the owner hands ownership over first, unless alone); it is forgotten here.
#[utoipa::path(
    post, path = "/v1/groups/{id}/leave", tag = "groups",
    security(("bearer" = ["send"])),
    params(("id" = String, Path, description = "Group id (64 hex digits)")),
    responses(
        (status = 204, description = "Left"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `send`)", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: not allowed by the group's rules, or a linked device", body = ErrorBody),
    )
)]
pub(crate) async fn leave(
    _auth: Authed<SendScope>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.service.change_group(id, GroupEdit::Leave).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Longest an invite link may be valid.
const MAX_INVITE_SECS: u64 = 90 * 24 * 3600;

/// Make an invite link (admins and the owner): whoever holds it can join, within its expiry
/// and use count, with no admin online.
#[utoipa::path(
    post, path = "/v1/groups/{id}/invites", tag = "groups",
    request_body = CreateInviteRequest,
    security(("bearer" = ["send"])),
    params(("id" = String, Path, description = "Group id (64 hex digits)")),
    responses(
        (status = 201, description = "The link", body = InviteView),
        (status = 400, description = "`invalid_json`, `bad_request` (wrong shape, expiry or uses out of range)", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `send`)", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: only admins and the owner invite; not on a linked device", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over the API's limit", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: `Content-Type` is not `application/json`", body = ErrorBody),
    )
)]
pub(crate) async fn invite(
    _auth: Authed<SendScope>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CreateInviteRequest>,
) -> ApiResult<(StatusCode, Json<InviteView>)> {
    let secs = req.expires_in_secs.unwrap_or(7 * 24 * 3600);
    let uses = req.max_uses.unwrap_or(10);
    if !(60..=MAX_INVITE_SECS).contains(&secs) || !(1..=10_000).contains(&uses) {
        return Err(ApiError::bad_request(format!(
            "`expires_in_secs` must be 60 to {MAX_INVITE_SECS}, `max_uses` 1 to 10000"
        )));
    }
    let view = state.service.create_group_invite(id, secs, uses).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Join a group with an invite link: the join goes to the member the link names, who welcomes
/// this node (`group_updated` event).
#[utoipa::path(
    post, path = "/v1/groups/join", tag = "groups",
    request_body = JoinGroupRequest,
    security(("bearer" = ["send"])),
    responses(
        (status = 202, description = "Join sent", body = JoinView),
        (status = 400, description = "`invalid_json`, `bad_request` (wrong shape, bad or expired link), `invalid_card`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `send`)", body = ErrorBody),
        (status = 409, description = "`conflict`: this is a linked device (groups are joined on the account's first device)", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over the API's limit", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: `Content-Type` is not `application/json`", body = ErrorBody),
        (status = 429, description = "`rate_limited`: the outbox is full (retry after the header's seconds)", body = ErrorBody),
    )
)]
pub(crate) async fn join(
    _auth: Authed<SendScope>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<JoinGroupRequest>,
) -> ApiResult<(StatusCode, Json<JoinView>)> {
    let view = state.service.join_group(req.invite).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

//! Message requests (strangers who wrote first) and blocking.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::auth::{Authed, ReadScope, SendScope};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::routes::contacts::validate_name;
use crate::state::AppState;
use crate::types::{AcceptRequest, ContactView, RequestList};

#[utoipa::path(
    get, path = "/v1/requests", tag = "requests",
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "Pending message requests, most recent first", body = RequestList),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope`", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    _auth: Authed<ReadScope>,
    State(state): State<AppState>,
) -> ApiResult<Json<RequestList>> {
    Ok(Json(RequestList {
        requests: state.service.list_requests().await?,
    }))
}

/// Accept a message request: its sender becomes a contact, its held messages join the
/// conversation and are receipted. Body `{}` or `{"name": "…"}`.
#[utoipa::path(
    post, path = "/v1/requests/{address}/accept", tag = "requests",
    request_body = AcceptRequest,
    security(("bearer" = ["send"])),
    params(("address" = String, Path, description = "The sender's address")),
    responses(
        (status = 200, description = "The new contact", body = ContactView),
        (status = 400, description = "`invalid_address`, `invalid_json`, `bad_request` (wrong shape, bad `name`)", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `send`)", body = ErrorBody),
        (status = 404, description = "`unknown_contact`: no request from this address", body = ErrorBody),
        (status = 409, description = "`conflict`: the name belongs to another contact", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over the API's limit", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: `Content-Type` is not `application/json`", body = ErrorBody),
    )
)]
pub(crate) async fn accept(
    _auth: Authed<SendScope>,
    State(state): State<AppState>,
    Path(address): Path<String>,
    ApiJson(req): ApiJson<AcceptRequest>,
) -> ApiResult<Json<ContactView>> {
    let name = req.name.map(validate_name).transpose()?;
    Ok(Json(state.service.accept_request(address, name).await?))
}

/// Delete a message request and its messages. Its sender can write again (a new request).
#[utoipa::path(
    delete, path = "/v1/requests/{address}", tag = "requests",
    security(("bearer" = ["send"])),
    params(("address" = String, Path, description = "The sender's address")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "`invalid_address`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `send`)", body = ErrorBody),
        (status = 404, description = "`unknown_contact`: no request from this address", body = ErrorBody),
    )
)]
pub(crate) async fn delete(
    _auth: Authed<SendScope>,
    State(state): State<AppState>,
    Path(address): Path<String>,
) -> ApiResult<StatusCode> {
    state.service.delete_request(address).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Block an address (a contact, a request's sender, or anyone): its messages are dropped
/// unread from now on, a request's held messages are deleted, and its session is forgotten.
#[utoipa::path(
    post, path = "/v1/contacts/{address}/block", tag = "requests",
    security(("bearer" = ["send"])),
    params(("address" = String, Path, description = "The address to block")),
    responses(
        (status = 204, description = "Blocked"),
        (status = 400, description = "`invalid_address`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `send`)", body = ErrorBody),
    )
)]
pub(crate) async fn block(
    _auth: Authed<SendScope>,
    State(state): State<AppState>,
    Path(address): Path<String>,
) -> ApiResult<StatusCode> {
    state.service.block(address).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unblock an address: a contact named by the user is a contact again; anyone else is a
/// stranger again (its next message is a request).
#[utoipa::path(
    delete, path = "/v1/contacts/{address}/block", tag = "requests",
    security(("bearer" = ["send"])),
    params(("address" = String, Path, description = "The blocked address")),
    responses(
        (status = 204, description = "Unblocked"),
        (status = 400, description = "`invalid_address`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `send`)", body = ErrorBody),
        (status = 404, description = "`unknown_contact`: this address is not blocked", body = ErrorBody),
    )
)]
pub(crate) async fn unblock(
    _auth: Authed<SendScope>,
    State(state): State<AppState>,
    Path(address): Path<String>,
) -> ApiResult<StatusCode> {
    state.service.unblock(address).await?;
    Ok(StatusCode::NO_CONTENT)
}

//! This account's devices: list, link a new one, join an account, revoke.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::auth::{AdminScope, Authed, ReadScope};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::types::{DeviceListView, JoinDeviceRequest, LinkDeviceRequest, LinkHistory, LinkView};

/// Default and longest validity of a link, seconds.
const DEFAULT_LINK_TTL_SECS: u64 = 600;
const MAX_LINK_TTL_SECS: u64 = 3600;
/// A history hand-off's defaults and bound (the node's own bound is the same).
const ALL_DAYS: u32 = 36_500;
const DEFAULT_HISTORY_MESSAGES: u32 = 10_000;
const MAX_HISTORY_MESSAGES: u32 = 100_000;

#[utoipa::path(
    get, path = "/v1/devices", tag = "devices",
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "The account's devices (this node alone before any link)", body = DeviceListView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope`", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    _auth: Authed<ReadScope>,
    State(state): State<AppState>,
) -> ApiResult<Json<DeviceListView>> {
    Ok(Json(state.service.devices().await?))
}

/// Start linking a new device: a one-time `tokenim-link:` URI for it (on the account's first
/// device). Links are kept in memory: a restart voids them.
#[utoipa::path(
    post, path = "/v1/devices/link", tag = "devices",
    request_body = LinkDeviceRequest,
    security(("bearer" = ["admin"])),
    responses(
        (status = 201, description = "The link and its expiry", body = LinkView),
        (status = 400, description = "`invalid_json`, `bad_request` (`ttl_secs` or `history_messages` out of range)", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `admin`)", body = ErrorBody),
        (status = 409, description = "`conflict`: this node is a linked device, not the account's first", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: `Content-Type` is not `application/json`", body = ErrorBody),
    )
)]
pub(crate) async fn link(
    _auth: Authed<AdminScope>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LinkDeviceRequest>,
) -> ApiResult<(StatusCode, Json<LinkView>)> {
    let ttl = req.ttl_secs.unwrap_or(DEFAULT_LINK_TTL_SECS);
    if !(1..=MAX_LINK_TTL_SECS).contains(&ttl) {
        return Err(ApiError::bad_request(format!(
            "`ttl_secs` must be between 1 and {MAX_LINK_TTL_SECS}"
        )));
    }
    let history = match (req.history_days, req.history_messages) {
        (None, None) => LinkHistory::default(),
        (days, messages) => LinkHistory {
            days: days.unwrap_or(ALL_DAYS),
            messages: messages.unwrap_or(DEFAULT_HISTORY_MESSAGES),
        },
    };
    if history.messages > MAX_HISTORY_MESSAGES {
        return Err(ApiError::bad_request(format!(
            "`history_messages` must be at most {MAX_HISTORY_MESSAGES}"
        )));
    }
    Ok((
        StatusCode::CREATED,
        Json(state.service.link_device(ttl, history).await?),
    ))
}

/// Join the account whose first device showed this link (on the new device). Dials that
/// device and waits for its answer.
#[utoipa::path(
    post, path = "/v1/devices/join", tag = "devices",
    request_body = JoinDeviceRequest,
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Linked: the account's list, with this device", body = DeviceListView),
        (status = 400, description = "`invalid_json`, `bad_request` (not a link, expired, refused, bad name)", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `admin`)", body = ErrorBody),
        (status = 409, description = "`conflict`: the link was already used, or this node already has devices", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: `Content-Type` is not `application/json`", body = ErrorBody),
        (status = 503, description = "`unavailable`: the linking device could not be reached", body = ErrorBody),
    )
)]
pub(crate) async fn join(
    _auth: Authed<AdminScope>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<JoinDeviceRequest>,
) -> ApiResult<Json<DeviceListView>> {
    let uri = req.uri.trim().to_owned();
    if uri.is_empty() {
        return Err(ApiError::bad_request("`uri` must not be empty"));
    }
    let name = req.name.unwrap_or_else(|| "device".to_owned());
    Ok(Json(state.service.join_account(uri, name).await?))
}

/// Take a device off the account (on its first device). Contacts stop sealing to it as they
/// learn the new list.
#[utoipa::path(
    delete, path = "/v1/devices/{id}", tag = "devices",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "Device id (hex)")),
    responses(
        (status = 200, description = "The list without it", body = DeviceListView),
        (status = 400, description = "`bad_request`: the first device cannot be revoked, or a malformed id", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `admin`)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such device", body = ErrorBody),
        (status = 409, description = "`conflict`: this node is a linked device, not the account's first", body = ErrorBody),
    )
)]
pub(crate) async fn revoke(
    _auth: Authed<AdminScope>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<DeviceListView>> {
    Ok(Json(state.service.revoke_device(id).await?))
}

//! Home relays: the relays that keep this node's mailbox while it is offline. Adding one
//! registers the mailbox there and lists the relay in the contact card from then on.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::auth::{AdminScope, Authed, ReadScope};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::types::{AddHomeRelayRequest, HomeRelayList, HomeRelayView};

/// This node's home relays and the state of its mailbox at each.
#[utoipa::path(
    get, path = "/v1/home-relays", tag = "home-relays",
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "Home relays", body = HomeRelayList),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `read`)", body = ErrorBody),
    )
)]
pub(crate) async fn list(
    _auth: Authed<ReadScope>,
    State(state): State<AppState>,
) -> ApiResult<Json<HomeRelayList>> {
    Ok(Json(HomeRelayList {
        relays: state.service.home_relays().await?,
    }))
}

/// Add a home relay (kept across restarts). The node registers its mailbox there at once;
/// adding one that is already a home relay changes nothing and answers 200.
#[utoipa::path(
    post, path = "/v1/home-relays", tag = "home-relays",
    request_body = AddHomeRelayRequest,
    security(("bearer" = ["admin"])),
    responses(
        (status = 201, description = "Added", body = HomeRelayView),
        (status = 200, description = "Already a home relay", body = HomeRelayView),
        (status = 400, description = "`bad_request` (wrong shape, not a `…/p2p/<peer id>` multiaddr), `invalid_json`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `admin`)", body = ErrorBody),
        (status = 409, description = "`conflict`: already 8 home relays (what a contact card holds), or this node is a relay", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over the API's limit", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: `Content-Type` is not `application/json`", body = ErrorBody),
    )
)]
pub(crate) async fn add(
    _auth: Authed<AdminScope>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<AddHomeRelayRequest>,
) -> ApiResult<(StatusCode, Json<HomeRelayView>)> {
    let (view, added) = state.service.add_home_relay(req.addr).await?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// Stop using a home relay added through the API (relays from the configuration stay). The
/// contact card stops listing it; envelopes still waiting there are not fetched any more.
#[utoipa::path(
    delete, path = "/v1/home-relays/{peer_id}", tag = "home-relays",
    security(("bearer" = ["admin"])),
    params(("peer_id" = String, Path, description = "The relay's libp2p peer id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `admin`)", body = ErrorBody),
        (status = 404, description = "`not_found`: not a home relay", body = ErrorBody),
        (status = 409, description = "`conflict`: set in the configuration", body = ErrorBody),
    )
)]
pub(crate) async fn remove(
    _auth: Authed<AdminScope>,
    State(state): State<AppState>,
    Path(peer_id): Path<String>,
) -> ApiResult<StatusCode> {
    state.service.remove_home_relay(peer_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

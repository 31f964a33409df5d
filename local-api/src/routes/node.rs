//! Identity and connected peers.

use axum::Json;
use axum::extract::State;

use crate::auth::{Authed, ReadScope};
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;
use crate::types::{IdentityView, PeerList};

/// This node's user identity and contact card.
#[utoipa::path(
    get, path = "/v1/identity", tag = "node",
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "Identity", body = IdentityView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope`", body = ErrorBody),
    )
)]
pub(crate) async fn identity(
    _auth: Authed<ReadScope>,
    State(state): State<AppState>,
) -> ApiResult<Json<IdentityView>> {
    Ok(Json(state.service.identity().await?))
}

/// Peers this node is connected to now.
#[utoipa::path(
    get, path = "/v1/peers", tag = "node",
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "Connected peers", body = PeerList),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope`", body = ErrorBody),
    )
)]
pub(crate) async fn peers(
    _auth: Authed<ReadScope>,
    State(state): State<AppState>,
) -> ApiResult<Json<PeerList>> {
    Ok(Json(PeerList {
        peers: state.service.peers().await?,
    }))
}

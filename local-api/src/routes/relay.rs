//! The relay role's admin view: mailbox usage.

use axum::Json;
use axum::extract::State;

use crate::auth::{AdminScope, Authed};
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;
use crate::types::RelayStats;

/// Mailboxes this relay hosts and what they hold (`not_found` when the node is not a relay).
#[utoipa::path(
    get, path = "/v1/relay/stats", tag = "relay",
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Mailbox usage", body = RelayStats),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `admin`)", body = ErrorBody),
        (status = 404, description = "`not_found`: this node is not a relay", body = ErrorBody),
    )
)]
pub(crate) async fn stats(
    _auth: Authed<AdminScope>,
    State(state): State<AppState>,
) -> ApiResult<Json<RelayStats>> {
    Ok(Json(state.service.relay_stats().await?))
}

//! API tokens (admin scope). The secret is generated here and shown once; the node stores
//! only its hash.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::auth::{AdminScope, Authed};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::token::generate_token;
use crate::types::{CreateTokenRequest, CreatedToken, TokenList};

pub const MAX_TOKEN_NAME_CHARS: usize = 64;

/// Create a token. The response is the only time its text is shown.
#[utoipa::path(
    post, path = "/v1/tokens", tag = "tokens",
    request_body = CreateTokenRequest,
    security(("bearer" = ["admin"])),
    responses(
        (status = 201, description = "Created; `token` is shown only now", body = CreatedToken),
        (status = 400, description = "`bad_request` (wrong shape, bad `name`, no or unknown scope), `invalid_json`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `admin`)", body = ErrorBody),
        (status = 409, description = "`conflict`: the generated token id is taken (retry)", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over the API's limit", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: `Content-Type` is not `application/json`", body = ErrorBody),
    )
)]
pub(crate) async fn create_token(
    _auth: Authed<AdminScope>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateTokenRequest>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let name = req.name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_TOKEN_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "`name` must be 1 to {MAX_TOKEN_NAME_CHARS} characters without control characters"
        )));
    }
    if req.scopes.is_empty() {
        return Err(ApiError::bad_request(
            "`scopes` must list at least one scope",
        ));
    }
    let (text, record) = generate_token(name, &req.scopes);
    state.service.token_create(record.clone()).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: text.into_exposed(),
            id: record.id,
            name: record.name,
            scopes: record.scopes,
            created_at: record.created_at,
        }),
    ))
}

/// All tokens, without secrets.
#[utoipa::path(
    get, path = "/v1/tokens", tag = "tokens",
    security(("bearer" = ["admin"])),
    responses(
        (status = 200, description = "Tokens", body = TokenList),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `admin`)", body = ErrorBody),
    )
)]
pub(crate) async fn list_tokens(
    _auth: Authed<AdminScope>,
    State(state): State<AppState>,
) -> ApiResult<Json<TokenList>> {
    let tokens = state.service.token_list().await?;
    Ok(Json(TokenList {
        tokens: tokens.iter().map(|t| t.view()).collect(),
    }))
}

/// Revoke a token; requests with it fail from now on, and the event streams it opened are closed
/// at once (`error` `unauthorized`, then close 1008 "token revoked").
#[utoipa::path(
    delete, path = "/v1/tokens/{id}", tag = "tokens",
    security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "Token id (the public part)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `admin`)", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
pub(crate) async fn revoke_token(
    _auth: Authed<AdminScope>,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let revoked = state.service.token_revoke(id.clone()).await;
    // Whatever the service answered, the admin wants this token's streams gone: a 404 can be
    // a token revoked past the API, whose streams are still open.
    let closed = state.event_streams.revoke(&id);
    if closed > 0 {
        tracing::info!(token_id = %id, streams = closed, "closing the event streams of a revoked token");
    }
    revoked?;
    Ok(StatusCode::NO_CONTENT)
}

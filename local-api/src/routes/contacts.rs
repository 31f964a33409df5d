//! Contacts: import a card, list, show, remove.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::{Authed, ReadScope, SendScope};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::token::Scope;
use crate::types::{AddContactRequest, ContactList, ContactView};

/// Longest local contact name, in characters.
pub const MAX_CONTACT_NAME_CHARS: usize = 64;

/// Import a contact card. Re-importing a known contact's card updates it (and keeps its name
/// unless `name` is given). The answer shows the stored `name` only to a token that can
/// `read`; to a `send`-only one, `name` is what this request gave (null without one).
#[utoipa::path(
    post, path = "/v1/contacts", tag = "contacts",
    request_body = AddContactRequest,
    security(("bearer" = ["send"])),
    responses(
        (status = 201, description = "Contact added (or updated); `name` as stored with `read`, else as given", body = ContactView,
            headers(("location" = String, description = "/v1/contacts/{address}"))),
        (status = 400, description = "`invalid_card`, `invalid_json`, `bad_request` (wrong shape, empty `card`, bad `name`, this node's own card)", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `send`)", body = ErrorBody),
        (status = 409, description = "`conflict`: the name belongs to another contact", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: body over the API's limit", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: `Content-Type` is not `application/json`", body = ErrorBody),
    )
)]
pub(crate) async fn add_contact(
    auth: Authed<SendScope>,
    State(state): State<AppState>,
    ApiJson(req): ApiJson<AddContactRequest>,
) -> ApiResult<Response> {
    if req.card.trim().is_empty() {
        return Err(ApiError::bad_request("`card` must not be empty"));
    }
    let name = match req.name {
        Some(name) => Some(validate_name(name)?),
        None => None,
    };
    let mut contact = state.service.add_contact(req.card, name.clone()).await?;
    // Re-importing a card it holds must not tell a `send`-only app the name the user stored
    // the contact under: it gets back the name it gave, if any.
    if !auth.principal.grants(Scope::Read) {
        contact.name = name;
    }
    let mut resp = (StatusCode::CREATED, Json(&contact)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/contacts/{}", contact.address)) {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    Ok(resp)
}

pub(crate) fn validate_name(name: String) -> ApiResult<String> {
    let name = name.trim().to_owned();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_CONTACT_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "`name` must be 1 to {MAX_CONTACT_NAME_CHARS} characters without control characters"
        )));
    }
    Ok(name)
}

#[utoipa::path(
    get, path = "/v1/contacts", tag = "contacts",
    security(("bearer" = ["read"])),
    responses(
        (status = 200, description = "All contacts", body = ContactList),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope`", body = ErrorBody),
    )
)]
pub(crate) async fn list_contacts(
    _auth: Authed<ReadScope>,
    State(state): State<AppState>,
) -> ApiResult<Json<ContactList>> {
    Ok(Json(ContactList {
        contacts: state.service.list_contacts().await?,
    }))
}

#[utoipa::path(
    get, path = "/v1/contacts/{address}", tag = "contacts",
    security(("bearer" = ["read"])),
    params(("address" = String, Path, description = "The contact's address")),
    responses(
        (status = 200, description = "The contact", body = ContactView),
        (status = 400, description = "`invalid_address`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope`", body = ErrorBody),
        (status = 404, description = "`unknown_contact`", body = ErrorBody),
    )
)]
pub(crate) async fn get_contact(
    _auth: Authed<ReadScope>,
    State(state): State<AppState>,
    Path(address): Path<String>,
) -> ApiResult<Json<ContactView>> {
    Ok(Json(state.service.get_contact(address).await?))
}

/// Remove a contact (its message history stays).
#[utoipa::path(
    delete, path = "/v1/contacts/{address}", tag = "contacts",
    security(("bearer" = ["send"])),
    params(("address" = String, Path, description = "The contact's address")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "`invalid_address`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 403, description = "`forbidden_scope` (needs `send`)", body = ErrorBody),
        (status = 404, description = "`unknown_contact`", body = ErrorBody),
    )
)]
pub(crate) async fn delete_contact(
    _auth: Authed<SendScope>,
    State(state): State<AppState>,
    Path(address): Path<String>,
) -> ApiResult<StatusCode> {
    state.service.delete_contact(address).await?;
    Ok(StatusCode::NO_CONTENT)
}

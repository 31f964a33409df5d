//! Route table. New resources (relays, groups...) get a module here and a line in [`v1`] and in
//! [`crate::openapi::ApiDoc`].

use axum::Router;
use axum::http::{Method, Uri};
use axum::routing::{get, post};

use crate::error::{ApiError, ErrorCode};
use crate::events;
use crate::state::AppState;

pub(crate) mod contacts;
pub(crate) mod devices;
pub(crate) mod files;
pub(crate) mod groups;
pub(crate) mod home_relays;
pub(crate) mod messages;
pub(crate) mod node;
pub(crate) mod relay;
pub(crate) mod requests;
pub(crate) mod system;
pub(crate) mod tokens;

pub(crate) fn v1() -> Router<AppState> {
    Router::new()
        .route("/v1/health", get(system::health))
        .route("/v1/openapi.json", get(system::openapi))
        .route("/v1/metrics", get(system::metrics))
        .route("/metrics", get(system::metrics_alias))
        .route("/v1/identity", get(node::identity))
        .route("/v1/peers", get(node::peers))
        .route("/v1/relay/stats", get(relay::stats))
        .route(
            "/v1/home-relays",
            get(home_relays::list).post(home_relays::add),
        )
        .route(
            "/v1/home-relays/{peer_id}",
            axum::routing::delete(home_relays::remove),
        )
        .route(
            "/v1/contacts",
            get(contacts::list_contacts).post(contacts::add_contact),
        )
        .route(
            "/v1/contacts/{address}",
            get(contacts::get_contact).delete(contacts::delete_contact),
        )
        .route(
            "/v1/contacts/{address}/block",
            post(requests::block).delete(requests::unblock),
        )
        .route("/v1/requests", get(requests::list))
        .route(
            "/v1/requests/{address}",
            axum::routing::delete(requests::delete),
        )
        .route("/v1/requests/{address}/accept", post(requests::accept))
        .route("/v1/devices", get(devices::list))
        .route("/v1/devices/link", post(devices::link))
        .route("/v1/devices/join", post(devices::join))
        .route("/v1/devices/{id}", axum::routing::delete(devices::revoke))
        .route("/v1/groups", get(groups::list).post(groups::create))
        .route("/v1/groups/{id}", get(groups::get).patch(groups::rename))
        .route("/v1/groups/{id}/members", post(groups::add_member))
        .route(
            "/v1/groups/{id}/members/{address}",
            axum::routing::delete(groups::remove_member),
        )
        .route(
            "/v1/groups/{id}/members/{address}/role",
            axum::routing::put(groups::set_role),
        )
        .route("/v1/groups/{id}/leave", post(groups::leave))
        .route("/v1/groups/{id}/invites", post(groups::invite))
        .route("/v1/groups/join", post(groups::join))
        .route(
            "/v1/groups/{id}/messages",
            get(groups::messages).post(groups::send),
        )
        .route("/v1/conversations", get(messages::list_conversations))
        .route(
            "/v1/messages",
            get(messages::list_messages).post(messages::send_message),
        )
        .route("/v1/messages/{id}", get(messages::get_message))
        .route("/v1/messages/{id}/read", post(messages::mark_read))
        .route("/v1/messages/{id}/members", get(messages::message_members))
        .route("/v1/events", get(events::events))
        .route(
            "/v1/tokens",
            get(tokens::list_tokens).post(tokens::create_token),
        )
        .route(
            "/v1/tokens/{id}",
            axum::routing::delete(tokens::revoke_token),
        )
}

/// Routes whose bodies are streamed: the API's body limit and request timeout do not apply.
pub(crate) fn streamed() -> Router<AppState> {
    Router::new()
        .route("/v1/files", get(files::list).post(files::upload))
        .route("/v1/files/{id}", get(files::get).delete(files::delete))
        .route("/v1/files/{id}/status", get(files::status))
        .route("/v1/files/{id}/download", post(files::download))
}

pub(crate) async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no route for {method} {}", uri.path()),
    )
}

//! The OpenAPI document, generated from the handlers' annotations and the types' schemas.
//! Checked in as `local-api/openapi.json`; `tests/docs.rs` fails when it is stale
//! (`TOKENIM_UPDATE_OPENAPI=1 cargo test -p tokenim-api --test docs` rewrites it).

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, Response};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorCode, ErrorDetail};
use crate::routes::{
    contacts, devices, files, groups, home_relays, messages, node, relay, requests, system, tokens,
};
use crate::token::Scope;
use crate::types::*;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "TokenIM local API",
        description = "HTTP API of a TokenIM node for apps on the same device. \
            Authenticate with `Authorization: Bearer tim_<id>_<secret>`. \
            Errors are `{\"error\":{\"code\",\"message\",\"request_id\"}}`; codes are listed in \
            the `ErrorCode` schema and in ERRORS.md. Requests must carry a loopback `Host` \
            (or one allowed by configuration) and no foreign `Origin`. An operation's `bearer` \
            security requirement names the scope it needs (none: any valid token); `admin` \
            grants every scope and `read` also grants `metrics`."
    ),
    paths(
        system::health,
        system::openapi,
        system::metrics,
        system::metrics_alias,
        node::identity,
        node::peers,
        relay::stats,
        home_relays::list,
        home_relays::add,
        home_relays::remove,
        contacts::add_contact,
        contacts::list_contacts,
        contacts::get_contact,
        contacts::delete_contact,
        requests::list,
        requests::accept,
        requests::delete,
        requests::block,
        requests::unblock,
        devices::list,
        devices::link,
        devices::join,
        devices::revoke,
        groups::create,
        groups::list,
        groups::get,
        groups::send,
        groups::messages,
        groups::add_member,
        groups::remove_member,
        groups::set_role,
        groups::rename,
        groups::leave,
        groups::invite,
        groups::join,
        messages::list_conversations,
        messages::send_message,
        messages::list_messages,
        messages::get_message,
        messages::mark_read,
        messages::message_members,
        files::upload,
        files::list,
        files::status,
        files::download,
        files::delete,
        files::get,
        crate::events::events,
        tokens::create_token,
        tokens::list_tokens,
        tokens::revoke_token,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, ErrorCode, Scope, Event, ControlFrame, ClientFrame,
    )),
    modifiers(&BearerAuth, &LayerResponses),
    security(("bearer" = [])),
    tags(
        (name = "system", description = "Health, metrics, this document"),
        (name = "node", description = "Identity and network"),
        (name = "contacts", description = "Contacts imported from contact cards"),
        (name = "requests", description = "Message requests from strangers, and blocking"),
        (name = "messages", description = "Sending, history, read state"),
        (name = "devices", description = "One account on several devices: link, list, revoke"),
        (name = "groups", description = "Group conversations: signed membership, sender keys"),
        (name = "events", description = "WebSocket push of new messages and state changes"),
        (name = "tokens", description = "API tokens (admin scope)"),
        (name = "relay", description = "Mailbox usage of a relay node (admin scope)"),
        (name = "home-relays", description = "Relays that keep this node's mailbox while it is offline"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Errors the router's layers and the token check can answer on any route, whatever the
/// handler does: added to every operation (or merged into the response it already documents
/// for that status), so that no route can forget them. `tests/conformance.rs` sends the
/// requests that provoke them.
struct LayerResponses;

struct LayerError {
    codes: &'static [ErrorCode],
    why: &'static str,
    /// Only on operations that check a token (the lookup goes to the node, which can fail).
    authenticated_only: bool,
}

const LAYER_ERRORS: &[LayerError] = &[
    LayerError {
        codes: &[ErrorCode::ForbiddenHost, ErrorCode::ForbiddenOrigin],
        why: "a `Host` or `Origin` that is not loopback or allowed",
        authenticated_only: false,
    },
    LayerError {
        codes: &[ErrorCode::PayloadTooLarge],
        why: "a body, or a declared `Content-Length`, over the API's limit",
        authenticated_only: false,
    },
    LayerError {
        codes: &[ErrorCode::Timeout],
        why: "over the API's time limit",
        authenticated_only: false,
    },
    LayerError {
        codes: &[ErrorCode::Unavailable],
        why: "the node cannot serve this now",
        authenticated_only: true,
    },
    LayerError {
        codes: &[ErrorCode::Internal],
        why: "unexpected failure, logged with the request id",
        authenticated_only: true,
    },
];

impl Modify for LayerResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let default_security = openapi.security.clone();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                let security = operation.security.as_ref().or(default_security.as_ref());
                let authenticated = security.is_some_and(|requirements| {
                    requirements
                        .iter()
                        .any(|r| *r != SecurityRequirement::default())
                });
                for layer in LAYER_ERRORS {
                    if layer.authenticated_only && !authenticated {
                        continue;
                    }
                    add_error_response(&mut operation.responses.responses, layer);
                }
            }
        }
    }
}

fn add_error_response(
    responses: &mut std::collections::BTreeMap<String, utoipa::openapi::RefOr<Response>>,
    layer: &LayerError,
) {
    let Some(first) = layer.codes.first() else {
        return;
    };
    let status = first.status().as_u16().to_string();
    let entry = responses.entry(status).or_insert_with(|| {
        Response::builder()
            .description("")
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            )
            .build()
            .into()
    });
    // Every response here is inline (the annotations never use references).
    let utoipa::openapi::RefOr::T(response) = entry else {
        return;
    };
    let missing: Vec<String> = layer
        .codes
        .iter()
        .map(|c| format!("`{}`", c.as_str()))
        .filter(|code| !response.description.contains(code.as_str()))
        .collect();
    if missing.is_empty() {
        return;
    }
    let added = format!("{}: {}", missing.join(", "), layer.why);
    response.description = if response.description.is_empty() {
        added
    } else {
        format!("{}; {added}", response.description)
    };
}

impl ApiDoc {
    /// The document as pretty JSON with a trailing newline, exactly as checked in.
    pub fn openapi_json() -> Result<String, serde_json::Error> {
        let mut json = ApiDoc::openapi().to_pretty_json()?;
        json.push('\n');
        Ok(json)
    }
}

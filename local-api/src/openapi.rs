//! The OpenAPI document, generated from the handlers' annotations and the types' schemas.
//! Checked in as `local-api/openapi.json`; `tests/docs.rs` fails when it is stale
//! (`TOKENIM_UPDATE_OPENAPI=1 cargo test -p tokenim-api --test docs` rewrites it).

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorCode, ErrorDetail};
use crate::routes::{contacts, home_relays, messages, node, relay, system, tokens};
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
            (or one allowed by configuration) and no foreign `Origin`."
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
        messages::list_conversations,
        messages::send_message,
        messages::list_messages,
        messages::get_message,
        messages::mark_read,
        crate::events::events,
        tokens::create_token,
        tokens::list_tokens,
        tokens::revoke_token,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, ErrorCode, Scope, Event, ControlFrame, ClientFrame,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "system", description = "Health, metrics, this document"),
        (name = "node", description = "Identity and network"),
        (name = "contacts", description = "Contacts imported from contact cards"),
        (name = "messages", description = "Sending, history, read state"),
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

impl ApiDoc {
    /// The document as pretty JSON with a trailing newline, exactly as checked in.
    pub fn openapi_json() -> Result<String, serde_json::Error> {
        let mut json = ApiDoc::openapi().to_pretty_json()?;
        json.push('\n');
        Ok(json)
    }
}

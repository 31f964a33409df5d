//! An in-memory NodeService and request helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use futures::FutureExt;
use futures::future::BoxFuture;
use rand::SeedableRng;
use serde_json::Value;
use tokenim_api::types::*;
use tokenim_api::{
    ApiConfig, NodeService, Scope, ServiceError, ServiceResult, TokenRecord, generate_token_with,
};
use tokio::sync::broadcast;
use tower::ServiceExt;

pub const ME: &str = "tim1me000000";
pub const ALICE: &str = "tim1alice000";
pub const BOB: &str = "tim1bob00000";
pub const MAX_BODY: usize = 1000;

/// A card the fake accepts: `tokenim:card:<address>:<display name>`.
pub fn card(address: &str, display: &str) -> String {
    format!("tokenim:card:{address}:{display}")
}

#[derive(Default)]
struct Inner {
    contacts: BTreeMap<String, ContactView>,
    /// Oldest first.
    messages: Vec<MessageView>,
    tokens: BTreeMap<String, TokenRecord>,
    home_relays: Vec<HomeRelayView>,
    requests: BTreeMap<String, RequestView>,
    groups: BTreeMap<String, GroupView>,
    health_issues: Vec<String>,
}

pub struct FakeNode {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Event>,
    /// Events pushed into each new subscription before it is returned (to force a lag).
    preload_events: AtomicUsize,
    rng: Mutex<rand::rngs::StdRng>,
}

pub const EVENT_CAPACITY: usize = 4;

impl FakeNode {
    pub fn new() -> Arc<Self> {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Arc::new(FakeNode {
            inner: Mutex::default(),
            events,
            preload_events: AtomicUsize::new(0),
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(42)),
        })
    }

    /// A stored token with these scopes; returns its text.
    pub fn token(&self, scopes: &[Scope]) -> String {
        let (text, record) = {
            let mut rng = self.rng.lock().unwrap();
            generate_token_with(&mut *rng, "test", scopes, 1_000)
        };
        self.inner
            .lock()
            .unwrap()
            .tokens
            .insert(record.id.clone(), record);
        text.into_exposed()
    }

    pub fn publish(&self, event: Event) {
        // No receiver is fine: nobody is subscribed yet.
        let _ = self.events.send(event);
    }

    /// What `health_issues` reports from now on.
    pub fn set_health_issues(&self, issues: &[&str]) {
        self.inner.lock().unwrap().health_issues = issues.iter().map(|s| s.to_string()).collect();
    }

    pub fn subscribers(&self) -> usize {
        self.events.receiver_count()
    }

    pub fn preload_on_subscribe(&self, n: usize) {
        self.preload_events.store(n, Ordering::SeqCst);
    }

    pub fn add_incoming(&self, from: &str, body: &str) -> MessageView {
        let mut inner = self.inner.lock().unwrap();
        let n = inner.messages.len();
        let msg = MessageView {
            id: format!("m{n:04}"),
            direction: Direction::Incoming,
            from: from.to_owned(),
            to: ME.to_owned(),
            group: None,
            body: body.to_owned(),
            state: MessageState::Received,
            sent_at: 10 + n as u64,
            received_at: Some(11 + n as u64),
            read_at: None,
            stored_by: 0,
            reached: None,
            delivered_to: None,
            read_by: None,
            attachments: Vec::new(),
        };
        inner.messages.push(msg.clone());
        msg
    }
}

fn ready<T: Send + 'static>(v: ServiceResult<T>) -> BoxFuture<'static, ServiceResult<T>> {
    futures::future::ready(v).boxed()
}

fn check_address(address: &str) -> ServiceResult<()> {
    let ok = address.starts_with("tim1")
        && address.len() == 12
        && address.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ServiceError::InvalidAddress(format!(
            "{address:?} is not an address"
        )))
    }
}

pub fn message_sample(id: &str) -> MessageView {
    MessageView {
        id: id.to_owned(),
        direction: Direction::Outgoing,
        from: ME.to_owned(),
        to: ALICE.to_owned(),
        group: None,
        body: "hi".to_owned(),
        state: MessageState::Queued,
        sent_at: 1,
        received_at: None,
        read_at: None,
        stored_by: 0,
        reached: None,
        delivered_to: None,
        read_by: None,
        attachments: Vec::new(),
    }
}

impl NodeService for FakeNode {
    fn identity(&self) -> BoxFuture<'_, ServiceResult<IdentityView>> {
        ready(Ok(IdentityView {
            address: ME.to_owned(),
            contact_card: card(ME, "Me"),
            peer_id: "12D3KooWFake".to_owned(),
            listen_addrs: vec!["/ip4/127.0.0.1/tcp/4001".to_owned()],
            display_name: Some("Me".to_owned()),
            mailbox: "00".repeat(32),
        }))
    }

    fn add_contact(
        &self,
        card: String,
        name: Option<String>,
    ) -> BoxFuture<'_, ServiceResult<ContactView>> {
        let result = (|| {
            let rest = card
                .strip_prefix("tokenim:card:")
                .ok_or_else(|| ServiceError::InvalidCard("not a tokenim card".into()))?;
            let (address, display) = rest
                .split_once(':')
                .ok_or_else(|| ServiceError::InvalidCard("truncated".into()))?;
            check_address(address).map_err(|_| ServiceError::InvalidCard("bad address".into()))?;
            let mut inner = self.inner.lock().unwrap();
            let taken = inner
                .contacts
                .values()
                .any(|c| c.name.is_some() && c.name == name && c.address != address);
            if taken {
                return Err(ServiceError::Conflict(format!("name {name:?} is taken")));
            }
            // As the node does: re-importing a contact's card without a name keeps its name.
            let name = name.or_else(|| inner.contacts.get(address).and_then(|c| c.name.clone()));
            let contact = ContactView {
                address: address.to_owned(),
                name,
                display_name: Some(display.to_owned()),
                added_at: 100,
                card_expires_at: None,
                device_list_version: None,
                blocked: false,
            };
            inner.contacts.insert(address.to_owned(), contact.clone());
            Ok(contact)
        })();
        ready(result)
    }

    fn list_contacts(&self) -> BoxFuture<'_, ServiceResult<Vec<ContactView>>> {
        ready(Ok(self
            .inner
            .lock()
            .unwrap()
            .contacts
            .values()
            .cloned()
            .collect()))
    }

    fn get_contact(&self, address: String) -> BoxFuture<'_, ServiceResult<ContactView>> {
        let result = check_address(&address).and_then(|()| {
            self.inner
                .lock()
                .unwrap()
                .contacts
                .get(&address)
                .cloned()
                .ok_or(ServiceError::UnknownContact(address))
        });
        ready(result)
    }

    fn delete_contact(&self, address: String) -> BoxFuture<'_, ServiceResult<()>> {
        let result = check_address(&address).and_then(|()| {
            self.inner
                .lock()
                .unwrap()
                .contacts
                .remove(&address)
                .map(|_| ())
                .ok_or(ServiceError::UnknownContact(address))
        });
        ready(result)
    }

    fn list_requests(&self) -> BoxFuture<'_, ServiceResult<Vec<RequestView>>> {
        ready(Ok(self
            .inner
            .lock()
            .unwrap()
            .requests
            .values()
            .cloned()
            .collect()))
    }

    fn accept_request(
        &self,
        address: String,
        name: Option<String>,
    ) -> BoxFuture<'_, ServiceResult<ContactView>> {
        let result = check_address(&address).and_then(|()| {
            let mut inner = self.inner.lock().unwrap();
            let request = inner
                .requests
                .remove(&address)
                .ok_or_else(|| ServiceError::UnknownContact(address.clone()))?;
            let contact = ContactView {
                address: address.clone(),
                name,
                display_name: request.display_name,
                added_at: 100,
                card_expires_at: None,
                device_list_version: None,
                blocked: false,
            };
            inner.contacts.insert(address, contact.clone());
            Ok(contact)
        });
        ready(result)
    }

    fn delete_request(&self, address: String) -> BoxFuture<'_, ServiceResult<()>> {
        let result = check_address(&address).and_then(|()| {
            let mut inner = self.inner.lock().unwrap();
            inner
                .requests
                .remove(&address)
                .map(|_| ())
                .ok_or(ServiceError::UnknownContact(address))
        });
        ready(result)
    }

    fn block(&self, address: String) -> BoxFuture<'_, ServiceResult<()>> {
        let result = check_address(&address).map(|()| {
            let mut inner = self.inner.lock().unwrap();
            inner.requests.remove(&address);
            let contact = inner
                .contacts
                .entry(address.clone())
                .or_insert(ContactView {
                    address,
                    name: None,
                    display_name: None,
                    added_at: 100,
                    card_expires_at: None,
                    device_list_version: None,
                    blocked: true,
                });
            contact.blocked = true;
        });
        ready(result)
    }

    fn unblock(&self, address: String) -> BoxFuture<'_, ServiceResult<()>> {
        let result = check_address(&address).and_then(|()| {
            let mut inner = self.inner.lock().unwrap();
            match inner.contacts.get_mut(&address) {
                Some(c) if c.blocked => {
                    c.blocked = false;
                    Ok(())
                }
                _ => Err(ServiceError::UnknownContact(address)),
            }
        });
        ready(result)
    }

    fn create_group(
        &self,
        name: String,
        members: Vec<String>,
    ) -> BoxFuture<'_, ServiceResult<GroupView>> {
        let result = (|| {
            let mut inner = self.inner.lock().unwrap();
            let mut views = Vec::new();
            for m in members {
                let c = inner
                    .contacts
                    .get(&m)
                    .or_else(|| {
                        inner
                            .contacts
                            .values()
                            .find(|c| c.name.as_deref() == Some(&m))
                    })
                    .ok_or_else(|| ServiceError::UnknownContact(m.clone()))?;
                views.push(GroupMemberView {
                    address: c.address.clone(),
                    role: "member".into(),
                    name: c.name.clone(),
                });
            }
            let id = format!("{:064x}", inner.groups.len() + 1);
            let group = GroupView {
                id: id.clone(),
                name,
                members: views,
                role: "owner".into(),
            };
            inner.groups.insert(id, group.clone());
            Ok(group)
        })();
        ready(result)
    }

    fn change_group(
        &self,
        id: String,
        edit: GroupEdit,
    ) -> BoxFuture<'_, ServiceResult<Option<GroupView>>> {
        let mut inner = self.inner.lock().unwrap();
        let Some(group) = inner.groups.get_mut(&id) else {
            return ready(Err(ServiceError::NotFound(format!("group {id}"))));
        };
        match edit {
            GroupEdit::Add { member } => group.members.push(GroupMemberView {
                address: member,
                role: "member".into(),
                name: None,
            }),
            GroupEdit::Remove { member } => group.members.retain(|m| m.address != member),
            GroupEdit::SetRole { member, role } => {
                if !["member", "admin", "owner"].contains(&role.as_str()) {
                    return ready(Err(ServiceError::BadRequest("unknown role".into())));
                }
                for m in group.members.iter_mut().filter(|m| m.address == member) {
                    m.role = role.clone();
                }
            }
            GroupEdit::Rename { name } => group.name = name,
            GroupEdit::Leave => {
                inner.groups.remove(&id);
                return ready(Ok(None));
            }
        }
        ready(Ok(Some(group.clone())))
    }

    fn create_group_invite(
        &self,
        id: String,
        expires_in_secs: u64,
        _max_uses: u32,
    ) -> BoxFuture<'_, ServiceResult<InviteView>> {
        let known = self.inner.lock().unwrap().groups.contains_key(&id);
        ready(if known {
            Ok(InviteView {
                uri: format!("tokenim-group:{id}"),
                expires_at: expires_in_secs * 1000,
            })
        } else {
            Err(ServiceError::NotFound(format!("group {id}")))
        })
    }

    fn join_group(&self, invite: String) -> BoxFuture<'_, ServiceResult<JoinView>> {
        ready(match invite.strip_prefix("tokenim-group:") {
            Some(id) if id.len() == 64 => Ok(JoinView {
                group: id.to_owned(),
            }),
            _ => Err(ServiceError::BadRequest("not an invite link".into())),
        })
    }

    fn list_groups(&self) -> BoxFuture<'_, ServiceResult<Vec<GroupView>>> {
        ready(Ok(self
            .inner
            .lock()
            .unwrap()
            .groups
            .values()
            .cloned()
            .collect()))
    }

    fn get_group(&self, id: String) -> BoxFuture<'_, ServiceResult<GroupView>> {
        let found = self.inner.lock().unwrap().groups.get(&id).cloned();
        ready(found.ok_or(ServiceError::NotFound(format!("group {id}"))))
    }

    fn send_group_message(
        &self,
        id: String,
        body: String,
    ) -> BoxFuture<'_, ServiceResult<MessageView>> {
        let mut inner = self.inner.lock().unwrap();
        if !inner.groups.contains_key(&id) {
            return ready(Err(ServiceError::NotFound(format!("group {id}"))));
        }
        let msg = MessageView {
            id: format!("g{:04}", inner.messages.len()),
            to: id.clone(),
            group: Some(id),
            body,
            ..message_sample("")
        };
        inner.messages.push(msg.clone());
        ready(Ok(msg))
    }

    fn list_group_messages(
        &self,
        id: String,
        _query: MessageQuery,
    ) -> BoxFuture<'_, ServiceResult<MessagePage>> {
        let inner = self.inner.lock().unwrap();
        if !inner.groups.contains_key(&id) {
            return ready(Err(ServiceError::NotFound(format!("group {id}"))));
        }
        let messages = inner
            .messages
            .iter()
            .rev()
            .filter(|m| m.group.as_deref() == Some(id.as_str()))
            .cloned()
            .collect();
        ready(Ok(MessagePage {
            messages,
            next_cursor: None,
        }))
    }

    fn list_conversations(&self) -> BoxFuture<'_, ServiceResult<Vec<ConversationView>>> {
        ready(Ok(Vec::new()))
    }

    fn send_message(&self, to: String, body: String) -> BoxFuture<'_, ServiceResult<MessageView>> {
        let result = (|| {
            if body == "flood" {
                return Err(ServiceError::RateLimited {
                    retry_after_secs: Some(7),
                });
            }
            if body == "crash" {
                return Err(ServiceError::Internal(
                    "store exploded at /secret/path".into(),
                ));
            }
            if body.len() > MAX_BODY {
                return Err(ServiceError::MessageTooLarge {
                    size: body.len(),
                    max: MAX_BODY,
                });
            }
            let mut inner = self.inner.lock().unwrap();
            let contact = inner
                .contacts
                .values()
                .find(|c| c.address == to || c.name.as_deref() == Some(to.as_str()))
                .cloned();
            let Some(contact) = contact else {
                if to.starts_with("tim1") {
                    check_address(&to)?;
                }
                return Err(ServiceError::UnknownContact(to));
            };
            let n = inner.messages.len();
            let msg = MessageView {
                id: format!("m{n:04}"),
                to: contact.address,
                body,
                sent_at: 10 + n as u64,
                ..message_sample("")
            };
            inner.messages.push(msg.clone());
            Ok(msg)
        })();
        ready(result)
    }

    fn list_messages(&self, query: MessageQuery) -> BoxFuture<'_, ServiceResult<MessagePage>> {
        let result = (|| {
            let before = match &query.cursor {
                Some(c) => c
                    .strip_prefix("before:")
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| ServiceError::BadRequest("bad cursor".into()))?,
                None => usize::MAX,
            };
            let inner = self.inner.lock().unwrap();
            let mut matching: Vec<(usize, &MessageView)> = inner
                .messages
                .iter()
                .enumerate()
                .filter(|(i, m)| {
                    *i < before
                        && query
                            .peer
                            .as_ref()
                            .is_none_or(|p| &m.from == p || &m.to == p)
                })
                .collect();
            matching.reverse();
            let limit = query.limit as usize;
            let next_cursor =
                (matching.len() > limit).then(|| format!("before:{}", matching[limit - 1].0));
            Ok(MessagePage {
                messages: matching
                    .into_iter()
                    .take(limit)
                    .map(|(_, m)| m.clone())
                    .collect(),
                next_cursor,
            })
        })();
        ready(result)
    }

    fn get_message(&self, id: String) -> BoxFuture<'_, ServiceResult<MessageView>> {
        let found = self
            .inner
            .lock()
            .unwrap()
            .messages
            .iter()
            .find(|m| m.id == id)
            .cloned();
        ready(found.ok_or(ServiceError::NotFound(format!("message {id}"))))
    }

    fn devices(&self) -> BoxFuture<'_, ServiceResult<DeviceListView>> {
        ready(Ok(DeviceListView {
            account: "tim1fake".into(),
            version: 1,
            devices: vec![DeviceView {
                id: "00".repeat(32),
                name: "first device".into(),
                added_at: 1,
                primary: true,
                this_device: true,
            }],
        }))
    }

    fn link_device(
        &self,
        ttl_secs: u64,
        _history: LinkHistory,
    ) -> BoxFuture<'_, ServiceResult<LinkView>> {
        ready(Ok(LinkView {
            uri: "tokenim-link:fake".into(),
            expires_at: ttl_secs,
        }))
    }

    fn join_account(
        &self,
        _uri: String,
        _name: String,
    ) -> BoxFuture<'_, ServiceResult<DeviceListView>> {
        ready(Err(ServiceError::BadRequest("not a device link".into())))
    }

    fn revoke_device(&self, id: String) -> BoxFuture<'_, ServiceResult<DeviceListView>> {
        ready(Err(ServiceError::NotFound(format!("device {id}"))))
    }

    fn message_members(&self, id: String) -> BoxFuture<'_, ServiceResult<MessageMembers>> {
        let found = self
            .inner
            .lock()
            .unwrap()
            .messages
            .iter()
            .find(|m| m.id == id)
            .cloned();
        ready(match found {
            None => Err(ServiceError::NotFound(format!("message {id}"))),
            Some(m) if m.group.is_none() => {
                Err(ServiceError::BadRequest("not a group message".into()))
            }
            Some(m) => Ok(MessageMembers {
                id: m.id,
                members: Vec::new(),
            }),
        })
    }

    fn mark_read(&self, id: String) -> BoxFuture<'_, ServiceResult<MessageView>> {
        let mut inner = self.inner.lock().unwrap();
        let result = match inner.messages.iter_mut().find(|m| m.id == id) {
            None => Err(ServiceError::NotFound(format!("message {id}"))),
            Some(m) if m.direction == Direction::Outgoing => {
                Err(ServiceError::BadRequest("not an incoming message".into()))
            }
            Some(m) => {
                m.state = MessageState::Read;
                m.read_at.get_or_insert(500);
                Ok(m.clone())
            }
        };
        ready(result)
    }

    fn peers(&self) -> BoxFuture<'_, ServiceResult<Vec<PeerView>>> {
        // Never answers: lets tests exercise the request timeout.
        futures::future::pending().boxed()
    }

    fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        let rx = self.events.subscribe();
        for i in 0..self.preload_events.load(Ordering::SeqCst) {
            let _ = self.events.send(Event::PeerConnected {
                peer_id: format!("preload-{i}"),
            });
        }
        rx
    }

    fn token_lookup(&self, id: String) -> BoxFuture<'_, ServiceResult<Option<TokenRecord>>> {
        ready(Ok(self.inner.lock().unwrap().tokens.get(&id).cloned()))
    }

    fn token_create(&self, record: TokenRecord) -> BoxFuture<'_, ServiceResult<()>> {
        let mut inner = self.inner.lock().unwrap();
        let result = if inner.tokens.contains_key(&record.id) {
            Err(ServiceError::Conflict("token id clash".into()))
        } else {
            inner.tokens.insert(record.id.clone(), record);
            Ok(())
        };
        ready(result)
    }

    fn token_list(&self) -> BoxFuture<'_, ServiceResult<Vec<TokenRecord>>> {
        ready(Ok(self
            .inner
            .lock()
            .unwrap()
            .tokens
            .values()
            .cloned()
            .collect()))
    }

    fn token_revoke(&self, id: String) -> BoxFuture<'_, ServiceResult<()>> {
        let removed = self.inner.lock().unwrap().tokens.remove(&id);
        ready(
            removed
                .map(|_| ())
                .ok_or(ServiceError::NotFound(format!("token {id}"))),
        )
    }

    fn home_relays(&self) -> BoxFuture<'_, ServiceResult<Vec<HomeRelayView>>> {
        ready(Ok(self.inner.lock().unwrap().home_relays.clone()))
    }

    fn add_home_relay(&self, addr: String) -> BoxFuture<'_, ServiceResult<(HomeRelayView, bool)>> {
        let result = (|| {
            let (_, peer_id) = addr
                .rsplit_once("/p2p/")
                .ok_or_else(|| ServiceError::BadRequest("needs /p2p/<peer id>".into()))?;
            let mut inner = self.inner.lock().unwrap();
            if let Some(v) = inner.home_relays.iter().find(|r| r.peer_id == peer_id) {
                return Ok((v.clone(), false));
            }
            let view = HomeRelayView {
                addr: addr.clone(),
                peer_id: peer_id.to_owned(),
                source: "api".to_owned(),
                registered: false,
                last_sync_at: None,
                last_error: None,
            };
            inner.home_relays.push(view.clone());
            Ok((view, true))
        })();
        ready(result)
    }

    fn remove_home_relay(&self, peer_id: String) -> BoxFuture<'_, ServiceResult<()>> {
        let mut inner = self.inner.lock().unwrap();
        let before = inner.home_relays.len();
        inner.home_relays.retain(|r| r.peer_id != peer_id);
        let removed = inner.home_relays.len() < before;
        ready(if removed {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!(
                "{peer_id} is not a home relay"
            )))
        })
    }

    fn metrics_text(&self) -> BoxFuture<'_, ServiceResult<String>> {
        ready(Ok(
            "# TYPE tokenim_up gauge\ntokenim_up 1\n# EOF\n".to_owned()
        ))
    }

    fn health_issues(&self) -> Vec<String> {
        self.inner.lock().unwrap().health_issues.clone()
    }
}

pub fn app(node: &Arc<FakeNode>) -> Router {
    app_with(node, ApiConfig::default())
}

pub fn app_with(node: &Arc<FakeNode>, cfg: ApiConfig) -> Router {
    let service: Arc<dyn NodeService> = node.clone();
    tokenim_api::router(service, cfg)
}

/// A request builder with a loopback Host, as a local client sends.
pub fn req(method: &str, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "127.0.0.1:7777")
}

pub fn authed(method: &str, uri: &str, token: &str) -> axum::http::request::Builder {
    req(method, uri).header("authorization", format!("Bearer {token}"))
}

pub fn json_body(builder: axum::http::request::Builder, body: &Value) -> Request<Body> {
    builder
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

pub fn empty(builder: axum::http::request::Builder) -> Request<Body> {
    builder.body(Body::empty()).unwrap()
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

pub async fn call(app: &Router, request: Request<Body>) -> Reply {
    let resp = app.clone().oneshot(request).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

/// Assert the one error shape, with the request id matching the header, and return the code.
pub fn error_code(reply: &Reply) -> String {
    let err = reply
        .body
        .get("error")
        .unwrap_or_else(|| panic!("not an error body: {:?}", reply.text));
    let obj = err.as_object().unwrap();
    assert_eq!(obj.len(), 3, "unexpected error fields: {err}");
    let header_id = reply
        .headers
        .get("x-request-id")
        .expect("x-request-id header")
        .to_str()
        .unwrap();
    assert_eq!(err["request_id"], header_id);
    assert!(!header_id.is_empty());
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(
        reply.headers.get("content-type").unwrap(),
        "application/json"
    );
    let code = err["code"].as_str().unwrap().to_owned();
    let expected_status = tokenim_api::ErrorCode::ALL
        .iter()
        .find(|c| c.as_str() == code)
        .unwrap_or_else(|| panic!("undocumented code {code}"))
        .status();
    assert_eq!(reply.status, expected_status, "status of {code}");
    code
}

impl FakeNode {
    /// Alice as a contact named "alice".
    pub fn add_contact_for_test(&self) {
        let contact = ContactView {
            address: ALICE.to_owned(),
            name: Some("alice".to_owned()),
            display_name: Some("Alice".to_owned()),
            added_at: 100,
            card_expires_at: None,
            device_list_version: None,
            blocked: false,
        };
        self.inner
            .lock()
            .unwrap()
            .contacts
            .insert(ALICE.to_owned(), contact);
    }
}

/// Who may call an operation, as its security requirements in the OpenAPI document say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocAuth {
    /// No requirement but the empty one: no token needed.
    Public,
    /// `bearer` without a role: any valid token.
    AnyToken,
    /// `bearer` with this role: a token granting this scope.
    Scope(Scope),
}

/// One operation of the generated OpenAPI document.
#[derive(Debug, Clone)]
pub struct DocOp {
    /// Upper case, as sent.
    pub method: String,
    /// As documented, e.g. `/v1/contacts/{address}`.
    pub template: String,
    /// `template` with every path parameter set to `x`.
    pub path: String,
    pub auth: DocAuth,
    /// A JSON request body.
    pub has_body: bool,
    /// A route whose bodies stream (files): the API's body limit does not apply.
    pub streamed: bool,
    /// Status (`"404"`) to response object.
    pub responses: serde_json::Map<String, Value>,
}

impl DocOp {
    /// `GET /v1/contacts/{address}`.
    pub fn name(&self) -> String {
        format!("{} {}", self.method, self.template)
    }
}

/// The OpenAPI document the API serves and checks in.
pub fn openapi_doc() -> Value {
    serde_json::from_str(&tokenim_api::ApiDoc::openapi_json().unwrap()).unwrap()
}

const HTTP_METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every operation of the document, in its order.
pub fn documented_operations() -> Vec<DocOp> {
    let doc = openapi_doc();
    let mut ops = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !HTTP_METHODS.contains(&method.as_str()) {
                continue;
            }
            let name = format!("{} {template}", method.to_uppercase());
            let security = op.get("security").unwrap_or(&doc["security"]);
            ops.push(DocOp {
                method: method.to_uppercase(),
                template: template.clone(),
                path: concrete_path(template),
                auth: doc_auth(security, &name),
                has_body: op["requestBody"]["content"]
                    .get("application/json")
                    .is_some(),
                streamed: template.starts_with("/v1/files"),
                responses: op["responses"].as_object().unwrap().clone(),
            });
        }
    }
    assert!(!ops.is_empty(), "no operations in the document");
    ops
}

fn concrete_path(template: &str) -> String {
    template
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                "x"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn doc_auth(security: &Value, name: &str) -> DocAuth {
    let requirements = security
        .as_array()
        .unwrap_or_else(|| panic!("{name}: no security requirements"));
    let mut bearer = Vec::new();
    for requirement in requirements {
        let requirement = requirement.as_object().unwrap();
        for (scheme, roles) in requirement {
            assert_eq!(scheme, "bearer", "{name}: unknown security scheme");
            bearer.push(roles.as_array().unwrap().clone());
        }
    }
    match bearer.as_slice() {
        [] => DocAuth::Public,
        [roles] => match roles.as_slice() {
            [] => DocAuth::AnyToken,
            [role] => DocAuth::Scope(
                serde_json::from_value(role.clone())
                    .unwrap_or_else(|e| panic!("{name}: role {role} is not a scope: {e}")),
            ),
            _ => panic!("{name}: more than one scope in one requirement"),
        },
        _ => panic!("{name}: more than one bearer requirement"),
    }
}

/// The reply's status is one the document lists for `op`, and for an error, its code is
/// among those the description of that status names.
pub fn assert_documented(op: &DocOp, reply: &Reply, what: &str) {
    let status = reply.status.as_u16().to_string();
    let Some(response) = op.responses.get(&status) else {
        let listed: Vec<&String> = op.responses.keys().collect();
        panic!(
            "{}: {what} answered {status}, which the OpenAPI document does not list \
             (it lists {listed:?}); body: {}",
            op.name(),
            reply.text
        );
    };
    if reply.status.is_client_error() || reply.status.is_server_error() {
        let code = error_code(reply);
        let description = response["description"].as_str().unwrap_or_default();
        assert!(
            description.contains(&format!("`{code}`")),
            "{}: {what} answered {status} `{code}`, which the description of {status} does not \
             name: {description:?}",
            op.name()
        );
    }
}

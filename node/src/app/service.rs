//! The node's implementation of the local API's [`NodeService`] trait. Reads go straight to the
//! store; anything that seals, sends or changes delivery state goes through the delivery core,
//! and home relays through their own task.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use prometheus_client::registry::Registry;
use tokenim_api::types::{
    ContactView, ConversationView, DeviceListView, Event, FileList, FileView, GroupEdit, GroupView,
    HomeRelayView, IdentityView, InviteView, JoinView, LinkHistory, LinkView, MessageMembers,
    MessagePage, MessageQuery, MessageView, PeerView, RelayStats, RequestView,
};
use tokenim_api::{
    ByteStream, FileDownload, NodeService, ServiceError, ServiceResult, TokenRecord,
};
use tokenim_crypto::{ContactCard, Identity};
use tokenim_store::{Direction, MessageRecord, MessageState, Store};
use tokio::sync::broadcast;

use super::contacts::Contacts;
use super::devices::Devices;
use super::errors::store_error as store_err;
use super::groups::Groups;
use super::tokens;
use super::views::{self, parse_address};
use crate::delivery::{DeliveryHandle, IdentityKey, MessageId};
use crate::files::Files;
use crate::mailbox::HomeRelaysHandle;
use crate::net::NetworkHandle;
use crate::time::now_secs;

/// How far back `unread` counts look; older unread messages are not counted.
const UNREAD_SCAN: usize = 500;

/// What the local API calls; also usable in process (the simulator, embedders).
pub struct Service {
    pub(super) identity: Arc<Identity>,
    pub(super) store: Store,
    pub(super) delivery: DeliveryHandle,
    pub(super) home: HomeRelaysHandle,
    pub(super) net: NetworkHandle,
    pub(super) events: broadcast::Sender<Event>,
    pub(super) registry: Arc<Registry>,
    pub(super) is_relay: bool,
    /// File transfers (none in the simulator).
    pub(super) files: Option<Files>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

impl Service {
    fn device_ops(&self) -> Devices<'_> {
        Devices {
            delivery: &self.delivery,
            identity: &self.identity,
        }
    }

    fn groups(&self) -> Groups<'_> {
        Groups {
            store: &self.store,
            delivery: &self.delivery,
            identity: &self.identity,
            contacts: self.contacts(),
        }
    }

    pub(super) fn contacts(&self) -> Contacts<'_> {
        Contacts {
            store: &self.store,
            delivery: &self.delivery,
            identity: &self.identity,
        }
    }

    /// Unread incoming messages among the newest [`UNREAD_SCAN`] of a conversation.
    pub(super) fn unread(&self, peer: &[u8; 32]) -> ServiceResult<u32> {
        let (recent, _) = self
            .store
            .list_messages(Some(peer), UNREAD_SCAN, None)
            .map_err(store_err)?;
        Ok(recent
            .iter()
            .filter(|m| m.state == MessageState::Received)
            .count() as u32)
    }

    fn load_message(&self, id: &str) -> ServiceResult<([u8; 16], MessageRecord)> {
        let key = self.message_by_hex(id)?;
        let m = self
            .store
            .get_message(&key)
            .map_err(store_err)?
            .ok_or_else(|| ServiceError::NotFound(format!("message {id}")))?;
        Ok((key, m))
    }

    fn message_by_hex(&self, id: &str) -> ServiceResult<[u8; 16]> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(id, &mut out)
            .map_err(|_| ServiceError::NotFound(format!("message {id}")))?;
        Ok(out)
    }
}

impl NodeService for Service {
    fn identity(&self) -> BoxFuture<'_, ServiceResult<IdentityView>> {
        async move {
            let card = self.delivery.my_card().await?;
            let info = self
                .net
                .info()
                .await
                .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
            let display_name = ContactCard::from_uri(&card, now_secs())
                .ok()
                .map(|c| c.display_name)
                .filter(|n| !n.is_empty());
            Ok(IdentityView {
                address: self.identity.address().to_string(),
                contact_card: card,
                peer_id: info.peer_id.to_string(),
                listen_addrs: info.listen_addrs.iter().map(ToString::to_string).collect(),
                display_name,
                mailbox: self.identity.mailbox_key(0).id().to_string(),
            })
        }
        .boxed()
    }

    fn add_contact(
        &self,
        card: String,
        name: Option<String>,
    ) -> BoxFuture<'_, ServiceResult<ContactView>> {
        async move { self.contacts().add_contact(card, name).await }.boxed()
    }

    fn list_contacts(&self) -> BoxFuture<'_, ServiceResult<Vec<ContactView>>> {
        async move { self.contacts().list_contacts().await }.boxed()
    }

    fn get_contact(&self, address: String) -> BoxFuture<'_, ServiceResult<ContactView>> {
        async move { self.contacts().get_contact(address).await }.boxed()
    }

    fn delete_contact(&self, address: String) -> BoxFuture<'_, ServiceResult<()>> {
        async move { self.contacts().delete_contact(address).await }.boxed()
    }

    fn list_requests(&self) -> BoxFuture<'_, ServiceResult<Vec<RequestView>>> {
        async move { self.contacts().list_requests().await }.boxed()
    }

    fn accept_request(
        &self,
        address: String,
        name: Option<String>,
    ) -> BoxFuture<'_, ServiceResult<ContactView>> {
        async move { self.contacts().accept_request(address, name).await }.boxed()
    }

    fn delete_request(&self, address: String) -> BoxFuture<'_, ServiceResult<()>> {
        async move { self.contacts().delete_request(address).await }.boxed()
    }

    fn block(&self, address: String) -> BoxFuture<'_, ServiceResult<()>> {
        async move { self.contacts().block(address).await }.boxed()
    }

    fn unblock(&self, address: String) -> BoxFuture<'_, ServiceResult<()>> {
        async move { self.contacts().unblock(address).await }.boxed()
    }

    fn create_group(
        &self,
        name: String,
        members: Vec<String>,
    ) -> BoxFuture<'_, ServiceResult<GroupView>> {
        async move { self.groups().create_group(name, members).await }.boxed()
    }

    fn change_group(
        &self,
        id: String,
        edit: GroupEdit,
    ) -> BoxFuture<'_, ServiceResult<Option<GroupView>>> {
        async move { self.groups().change_group(id, edit).await }.boxed()
    }

    fn create_group_invite(
        &self,
        id: String,
        expires_in_secs: u64,
        max_uses: u32,
    ) -> BoxFuture<'_, ServiceResult<InviteView>> {
        async move {
            self.groups()
                .create_invite(id, expires_in_secs, max_uses)
                .await
        }
        .boxed()
    }

    fn join_group(&self, invite: String) -> BoxFuture<'_, ServiceResult<JoinView>> {
        async move { self.groups().join(invite).await }.boxed()
    }

    fn devices(&self) -> BoxFuture<'_, ServiceResult<DeviceListView>> {
        async move { self.device_ops().list().await }.boxed()
    }

    fn link_device(
        &self,
        ttl_secs: u64,
        history: LinkHistory,
    ) -> BoxFuture<'_, ServiceResult<LinkView>> {
        async move { self.device_ops().link(ttl_secs, history).await }.boxed()
    }

    fn join_account(
        &self,
        uri: String,
        name: String,
    ) -> BoxFuture<'_, ServiceResult<DeviceListView>> {
        async move { self.device_ops().join(uri, name).await }.boxed()
    }

    fn revoke_device(&self, id: String) -> BoxFuture<'_, ServiceResult<DeviceListView>> {
        async move { self.device_ops().revoke(id).await }.boxed()
    }

    fn list_groups(&self) -> BoxFuture<'_, ServiceResult<Vec<GroupView>>> {
        async move { self.groups().list_groups().await }.boxed()
    }

    fn get_group(&self, id: String) -> BoxFuture<'_, ServiceResult<GroupView>> {
        async move { self.groups().get_group(id).await }.boxed()
    }

    fn send_group_message(
        &self,
        id: String,
        body: String,
    ) -> BoxFuture<'_, ServiceResult<MessageView>> {
        async move { self.groups().send_group_message(id, body).await }.boxed()
    }

    fn list_group_messages(
        &self,
        id: String,
        query: MessageQuery,
    ) -> BoxFuture<'_, ServiceResult<MessagePage>> {
        async move { self.groups().list_group_messages(id, query).await }.boxed()
    }

    fn list_conversations(&self) -> BoxFuture<'_, ServiceResult<Vec<ConversationView>>> {
        self.conversations_view().boxed()
    }

    fn send_with_files(
        &self,
        to: String,
        body: String,
        attachments: Vec<String>,
    ) -> BoxFuture<'_, ServiceResult<MessageView>> {
        async move {
            let contact = self.contacts().resolve(&to)?;
            let to = Ok(IdentityKey(contact.identity_key));
            self.send_with_files(to, body, attachments).await
        }
        .boxed()
    }

    fn send_group_with_files(
        &self,
        id: String,
        body: String,
        attachments: Vec<String>,
    ) -> BoxFuture<'_, ServiceResult<MessageView>> {
        async move {
            let group = self.groups().id_of(&id)?;
            self.send_with_files(Err(group), body, attachments).await
        }
        .boxed()
    }

    fn upload_file(
        &self,
        name: String,
        mime: String,
        length: Option<u64>,
        body: ByteStream,
    ) -> BoxFuture<'_, ServiceResult<FileView>> {
        self.upload_file(name, mime, length, body).boxed()
    }

    fn list_files(&self) -> BoxFuture<'_, ServiceResult<FileList>> {
        async move { self.list_files() }.boxed()
    }

    fn get_file(&self, id: String) -> BoxFuture<'_, ServiceResult<FileView>> {
        async move { self.file_status(&id) }.boxed()
    }

    fn download_file(&self, id: String) -> BoxFuture<'_, ServiceResult<FileView>> {
        async move { self.download_file(&id) }.boxed()
    }

    fn delete_file(&self, id: String) -> BoxFuture<'_, ServiceResult<()>> {
        async move { self.delete_file(&id) }.boxed()
    }

    fn read_file(
        &self,
        id: String,
        range: Option<(u64, Option<u64>)>,
    ) -> BoxFuture<'_, ServiceResult<FileDownload>> {
        async move { self.read_file(&id, range) }.boxed()
    }

    fn send_message(&self, to: String, body: String) -> BoxFuture<'_, ServiceResult<MessageView>> {
        async move {
            let contact = self.contacts().resolve(&to)?;
            let record = self
                .delivery
                .send(IdentityKey(contact.identity_key), body)
                .await?;
            Ok(views::message(&record))
        }
        .boxed()
    }

    fn list_messages(&self, query: MessageQuery) -> BoxFuture<'_, ServiceResult<MessagePage>> {
        async move {
            let peer = match &query.peer {
                Some(p) => Some(parse_address(p)?.identity_key()),
                None => None,
            };
            let cursor = views::parse_cursor(query.cursor.as_deref())?;
            let (messages, next) = self
                .store
                .list_messages(peer.as_ref(), query.limit as usize, cursor.as_ref())
                .map_err(store_err)?;
            Ok(MessagePage {
                messages: messages
                    .iter()
                    .map(|m| views::with_files(&self.store, views::message(m)))
                    .collect(),
                next_cursor: next.map(|c| c.to_string()),
            })
        }
        .boxed()
    }

    fn get_message(&self, id: String) -> BoxFuture<'_, ServiceResult<MessageView>> {
        async move {
            let (_, m) = self.load_message(&id)?;
            Ok(views::with_files(&self.store, views::message(&m)))
        }
        .boxed()
    }

    fn message_members(&self, id: String) -> BoxFuture<'_, ServiceResult<MessageMembers>> {
        async move {
            let (key, m) = self.load_message(&id)?;
            if !m.group || m.direction != Direction::Outgoing {
                return Err(ServiceError::BadRequest(
                    "not a group message this node sent".into(),
                ));
            }
            let rows = self.store.member_states(&key).map_err(store_err)?;
            Ok(views::members(&m, &rows))
        }
        .boxed()
    }

    fn mark_read(&self, id: String) -> BoxFuture<'_, ServiceResult<MessageView>> {
        async move {
            let (key, m) = self.load_message(&id)?;
            if m.direction == Direction::Outgoing {
                return Err(ServiceError::BadRequest(
                    "only incoming messages can be marked read".into(),
                ));
            }
            if m.state == MessageState::Read {
                return Ok(views::message(&m));
            }
            Ok(views::message(
                &self.delivery.mark_read(MessageId(key)).await?,
            ))
        }
        .boxed()
    }

    fn peers(&self) -> BoxFuture<'_, ServiceResult<Vec<PeerView>>> {
        self.peers_view().boxed()
    }

    fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn token_lookup(&self, id: String) -> BoxFuture<'_, ServiceResult<Option<TokenRecord>>> {
        async move { tokens::lookup(&self.store, &id) }.boxed()
    }

    fn token_create(&self, record: TokenRecord) -> BoxFuture<'_, ServiceResult<()>> {
        async move { tokens::create(&self.store, &record) }.boxed()
    }

    fn token_list(&self) -> BoxFuture<'_, ServiceResult<Vec<TokenRecord>>> {
        async move { tokens::list(&self.store) }.boxed()
    }

    fn token_revoke(&self, id: String) -> BoxFuture<'_, ServiceResult<()>> {
        async move { tokens::revoke(&self.store, &id) }.boxed()
    }

    fn relay_stats(&self) -> BoxFuture<'_, ServiceResult<RelayStats>> {
        self.relay_stats_view().boxed()
    }

    fn home_relays(&self) -> BoxFuture<'_, ServiceResult<Vec<HomeRelayView>>> {
        async move {
            Ok(self
                .home
                .list()
                .await
                .iter()
                .map(views::home_relay)
                .collect())
        }
        .boxed()
    }

    fn add_home_relay(&self, addr: String) -> BoxFuture<'_, ServiceResult<(HomeRelayView, bool)>> {
        async move {
            if self.is_relay {
                return Err(ServiceError::Conflict(
                    "a relay keeps its own users' mailboxes; it has no home relays".into(),
                ));
            }
            let (status, added) = self.home.add(addr).await?;
            Ok((views::home_relay(&status), added))
        }
        .boxed()
    }

    fn remove_home_relay(&self, peer_id: String) -> BoxFuture<'_, ServiceResult<()>> {
        async move { Ok(self.home.remove(peer_id).await?) }.boxed()
    }

    fn health_issues(&self) -> Vec<String> {
        // A fresh look (one statvfs): health is what operators watch for space returning.
        match self.store.space_status() {
            Ok(space) if space.full => vec!["disk_full".to_owned()],
            Ok(_) => Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, "checking disk space");
                vec!["storage_error".to_owned()]
            }
        }
    }

    fn metrics_text(&self) -> BoxFuture<'_, ServiceResult<String>> {
        async move {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            Ok(out)
        }
        .boxed()
    }
}

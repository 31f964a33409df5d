//! The trait the node implements so that this crate never depends on it.

use futures::future::BoxFuture;
use tokio::sync::broadcast;

use crate::error::ServiceError;
use crate::token::TokenRecord;
use crate::types::{
    ContactView, ConversationView, DeviceListView, Event, FileList, FileView, GroupEdit, GroupView,
    HomeRelayView, IdentityView, InviteView, JoinView, LinkHistory, LinkView, MessageMembers,
    MessagePage, MessageQuery, MessageView, PeerView, RelayStats, RequestView,
};

pub type ServiceResult<T> = Result<T, ServiceError>;

fn no_files<T: Send + 'static>() -> BoxFuture<'static, ServiceResult<T>> {
    Box::pin(async { Err(ServiceError::Unavailable("this node keeps no files".into())) })
}

/// A file's bytes `start..end` of `size`, streamed.
pub struct FileDownload {
    pub name: String,
    pub mime: String,
    pub size: u64,
    pub start: u64,
    pub end: u64,
    pub body: ByteStream,
}

impl std::fmt::Debug for FileDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDownload")
            .field("size", &self.size)
            .field("start", &self.start)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

/// A streamed body: an upload's bytes, or a download's.
pub type ByteStream =
    futures::stream::BoxStream<'static, Result<axum::body::Bytes, std::io::Error>>;

/// Everything the local API needs from a running node. Object-safe: the router holds an
/// `Arc<dyn NodeService>`.
///
/// The API has already authenticated the caller and checked scopes, and validated the shape of
/// inputs (non-empty `to`, limit range); the service validates meaning (address checksums,
/// card signatures, sizes). Return [`ServiceError::Internal`] only for bugs/unexpected failures:
/// its text is logged, not shown.
pub trait NodeService: Send + Sync + 'static {
    fn identity(&self) -> BoxFuture<'_, ServiceResult<IdentityView>>;

    /// Import a contact card. Re-adding the same address updates the card (and the name, if
    /// given) and returns the contact; a name used by another contact is a `Conflict`.
    fn add_contact(
        &self,
        card: String,
        name: Option<String>,
    ) -> BoxFuture<'_, ServiceResult<ContactView>>;

    fn list_contacts(&self) -> BoxFuture<'_, ServiceResult<Vec<ContactView>>>;

    /// `UnknownContact` if there is no such contact, `InvalidAddress` if it is not an address.
    fn get_contact(&self, address: String) -> BoxFuture<'_, ServiceResult<ContactView>>;

    /// Same errors as [`NodeService::get_contact`]. Keeps the message history.
    fn delete_contact(&self, address: String) -> BoxFuture<'_, ServiceResult<()>>;

    /// Conversations, most recent activity first.
    /// Strangers' message requests, newest first.
    fn list_requests(&self) -> BoxFuture<'_, ServiceResult<Vec<RequestView>>>;

    /// Makes a request's sender a contact: its held messages join the conversation.
    fn accept_request(
        &self,
        address: String,
        name: Option<String>,
    ) -> BoxFuture<'_, ServiceResult<ContactView>>;

    /// Deletes a request and its messages; the sender's next message is a request again.
    fn delete_request(&self, address: String) -> BoxFuture<'_, ServiceResult<()>>;

    /// Blocks a contact, a request's sender or any address: its messages are dropped unread.
    fn block(&self, address: String) -> BoxFuture<'_, ServiceResult<()>>;

    /// Undoes a block: a named contact is a contact again, anyone else a stranger.
    fn unblock(&self, address: String) -> BoxFuture<'_, ServiceResult<()>>;

    /// Creates a group with these contacts (addresses or names) as members.
    fn create_group(
        &self,
        name: String,
        members: Vec<String>,
    ) -> BoxFuture<'_, ServiceResult<GroupView>>;

    fn list_groups(&self) -> BoxFuture<'_, ServiceResult<Vec<GroupView>>>;

    /// A signed invite link to a group.
    fn create_group_invite(
        &self,
        id: String,
        expires_in_secs: u64,
        max_uses: u32,
    ) -> BoxFuture<'_, ServiceResult<InviteView>>;

    /// Follows an invite link; the group id (joined once a member answers).
    fn join_group(&self, invite: String) -> BoxFuture<'_, ServiceResult<JoinView>>;

    /// Changes a group and tells its members; the group as it now stands (`None` after
    /// leaving).
    fn change_group(
        &self,
        id: String,
        edit: GroupEdit,
    ) -> BoxFuture<'_, ServiceResult<Option<GroupView>>>;

    fn get_group(&self, id: String) -> BoxFuture<'_, ServiceResult<GroupView>>;

    /// Seals a text once for every member and queues it; answered once it is stored.
    fn send_group_message(
        &self,
        id: String,
        body: String,
    ) -> BoxFuture<'_, ServiceResult<MessageView>>;

    /// One page of a group's history, newest first.
    fn list_group_messages(
        &self,
        id: String,
        query: MessageQuery,
    ) -> BoxFuture<'_, ServiceResult<MessagePage>>;

    fn list_conversations(&self) -> BoxFuture<'_, ServiceResult<Vec<ConversationView>>>;

    /// Resolve `to` (an address or a contact's local name; `UnknownContact` if neither), put
    /// the message in the durable outbox, and return it (state `queued`) once it survives a
    /// restart. Should also publish [`Event::Message`].
    fn send_message(&self, to: String, body: String) -> BoxFuture<'_, ServiceResult<MessageView>>;

    /// [`NodeService::send_message`] with files uploaded before (`POST /v1/files`).
    fn send_with_files(
        &self,
        to: String,
        body: String,
        attachments: Vec<String>,
    ) -> BoxFuture<'_, ServiceResult<MessageView>> {
        if attachments.is_empty() {
            return self.send_message(to, body);
        }
        no_files()
    }

    /// [`NodeService::send_group_message`] with files uploaded before.
    fn send_group_with_files(
        &self,
        id: String,
        body: String,
        attachments: Vec<String>,
    ) -> BoxFuture<'_, ServiceResult<MessageView>> {
        if attachments.is_empty() {
            return self.send_group_message(id, body);
        }
        no_files()
    }

    /// Stores an app's file (sealed as it streams in); `length`: the body's declared size, to
    /// refuse an oversized one before anything is stored.
    fn upload_file(
        &self,
        _name: String,
        _mime: String,
        _length: Option<u64>,
        _body: ByteStream,
    ) -> BoxFuture<'_, ServiceResult<FileView>> {
        no_files()
    }

    fn list_files(&self) -> BoxFuture<'_, ServiceResult<FileList>> {
        no_files()
    }

    fn get_file(&self, _id: String) -> BoxFuture<'_, ServiceResult<FileView>> {
        no_files()
    }

    /// Starts (or resumes) fetching an offered file.
    fn download_file(&self, _id: String) -> BoxFuture<'_, ServiceResult<FileView>> {
        no_files()
    }

    fn delete_file(&self, _id: String) -> BoxFuture<'_, ServiceResult<()>> {
        no_files()
    }

    /// A file's bytes; `range`: first byte and last (inclusive), as in HTTP `Range`.
    fn read_file(
        &self,
        _id: String,
        _range: Option<(u64, Option<u64>)>,
    ) -> BoxFuture<'_, ServiceResult<FileDownload>> {
        no_files()
    }

    /// Newest first. `cursor` is whatever this service put in `next_cursor` (opaque to the API;
    /// a cursor it cannot decode is a `BadRequest`).
    fn list_messages(&self, query: MessageQuery) -> BoxFuture<'_, ServiceResult<MessagePage>>;

    fn get_message(&self, id: String) -> BoxFuture<'_, ServiceResult<MessageView>>;

    /// The account's device list.
    fn devices(&self) -> BoxFuture<'_, ServiceResult<DeviceListView>>;

    /// A one-time link for a new device, valid `ttl_secs`.
    fn link_device(
        &self,
        ttl_secs: u64,
        history: LinkHistory,
    ) -> BoxFuture<'_, ServiceResult<LinkView>>;

    /// Joins this node to the account that issued `uri`, as a device named `name`.
    fn join_account(
        &self,
        uri: String,
        name: String,
    ) -> BoxFuture<'_, ServiceResult<DeviceListView>>;

    /// Takes device `id` (hex) off the account.
    fn revoke_device(&self, id: String) -> BoxFuture<'_, ServiceResult<DeviceListView>>;

    /// Each member's state of a group message this node sent. `BadRequest` for any other
    /// message.
    fn message_members(&self, id: String) -> BoxFuture<'_, ServiceResult<MessageMembers>>;

    /// Mark an incoming message read (idempotent) and send a read receipt the first time.
    /// `BadRequest` for an outgoing message.
    fn mark_read(&self, id: String) -> BoxFuture<'_, ServiceResult<MessageView>>;

    /// Currently connected peers.
    fn peers(&self) -> BoxFuture<'_, ServiceResult<Vec<PeerView>>>;

    /// A receiver on the node's bounded event broadcast. A receiver that lags is told how many
    /// events it missed; nothing buffers without bound.
    fn subscribe_events(&self) -> broadcast::Receiver<Event>;

    /// The token with this public id, if any (the API checks the secret).
    fn token_lookup(&self, id: String) -> BoxFuture<'_, ServiceResult<Option<TokenRecord>>>;

    /// Store a token made by [`crate::generate_token`]; ids are random, a clash is `Conflict`.
    fn token_create(&self, record: TokenRecord) -> BoxFuture<'_, ServiceResult<()>>;

    fn token_list(&self) -> BoxFuture<'_, ServiceResult<Vec<TokenRecord>>>;

    /// `NotFound` if no such token. Takes effect for the next request; the API then closes the
    /// open event streams authenticated with it (whatever this returns).
    fn token_revoke(&self, id: String) -> BoxFuture<'_, ServiceResult<()>>;

    /// Mailbox usage when this node is a relay; `NotFound` otherwise.
    fn relay_stats(&self) -> BoxFuture<'_, ServiceResult<RelayStats>> {
        Box::pin(async { Err(ServiceError::NotFound("this node is not a relay".into())) })
    }

    /// This node's home relays.
    fn home_relays(&self) -> BoxFuture<'_, ServiceResult<Vec<HomeRelayView>>>;

    /// Adds a home relay by `…/p2p/<peer id>` multiaddr; true when it was not one already.
    fn add_home_relay(&self, addr: String) -> BoxFuture<'_, ServiceResult<(HomeRelayView, bool)>>;

    /// Removes a home relay added through the API.
    fn remove_home_relay(&self, peer_id: String) -> BoxFuture<'_, ServiceResult<()>>;

    /// Metrics in OpenMetrics text (what `prometheus_client::encoding::text::encode` writes).
    fn metrics_text(&self) -> BoxFuture<'_, ServiceResult<String>>;

    /// What keeps the node from doing all of its work, as `/v1/health` reasons (e.g.
    /// `disk_full`); empty when nothing does. Called on every health request: keep it cheap.
    fn health_issues(&self) -> Vec<String> {
        Vec::new()
    }
}

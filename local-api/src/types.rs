//! Request and response bodies, and the events pushed over `/v1/events`.
//!
//! Times are milliseconds since the Unix epoch (UTC). Addresses are the node's checksummed
//! user-address text; the API passes them through and the service validates them.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ErrorCode;
use crate::token::Scope;

/// Milliseconds since the Unix epoch. (Fields spell out `u64` so that the OpenAPI schema
/// shows an integer rather than a reference to this alias.)
pub type UnixMillis = u64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    /// `"ok"`, or `"degraded"` when the node runs but cannot do all of its work: see
    /// `reasons`.
    pub status: String,
    pub version: String,
    /// Why the status is `degraded`; empty when `ok`. `disk_full`: the disk holding the
    /// database is below its free-space reserve, so new messages (and, on a relay, stores for
    /// its mailboxes) are refused, senders being told to retry later; reading, fetching and
    /// acknowledging go on, and the node takes writes again by itself once space returns.
    /// `storage_error`: the node could not look at its disk (details in its log).
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IdentityView {
    /// This user's address.
    pub address: String,
    /// This user's signed contact card as a `tokenim:` URI, to share with others.
    pub contact_card: String,
    /// The libp2p peer id of this node (a separate key from the user identity).
    pub peer_id: String,
    pub listen_addrs: Vec<String>,
    pub display_name: Option<String>,
    /// This node's mailbox id (64 hex digits), which an allow-listing relay's operator lists.
    pub mailbox: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddContactRequest {
    /// A contact card (`tokenim:` URI).
    pub card: String,
    /// Local name for the contact; usable as `to` when sending.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContactView {
    pub address: String,
    /// The local name given when adding the contact.
    pub name: Option<String>,
    /// The name the contact chose, from their card.
    pub display_name: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub added_at: u64,
    /// Milliseconds since the Unix epoch.
    pub card_expires_at: Option<u64>,
    /// The version of the device list the contact's card carries (absent: one device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_list_version: Option<u64>,
    /// Its messages are dropped unread (`POST /v1/contacts/{address}/block`).
    pub blocked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContactList {
    pub contacts: Vec<ContactView>,
}

/// A group this node is a member of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupView {
    /// Group id: 64 hex digits (the hash of its signed genesis).
    pub id: String,
    pub name: String,
    pub members: Vec<GroupMemberView>,
    /// This node's role.
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupMemberView {
    pub address: String,
    /// `owner`, `admin` or `member`.
    pub role: String,
    /// The local name of the member, if it is a contact.
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupList {
    pub groups: Vec<GroupView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroupRequest {
    /// 1–128 bytes.
    pub name: String,
    /// Contacts (addresses or local names) to add as members; the creator is the owner.
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    /// A contact's address or local name.
    pub member: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRoleRequest {
    /// `member`, `admin` or `owner` (handing ownership over).
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameGroupRequest {
    /// 1–128 bytes.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInviteRequest {
    /// How long the link is valid, in seconds (default 7 days, at most 90 days).
    pub expires_in_secs: Option<u64>,
    /// How many may join with it (default 10).
    pub max_uses: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InviteView {
    /// The signed `tokenim-group:` link to hand out.
    pub uri: String,
    /// Milliseconds since the Unix epoch.
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinGroupRequest {
    /// A `tokenim-group:` invite link.
    pub invite: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JoinView {
    /// The group id: it appears in `GET /v1/groups` once a member welcomed this node
    /// (`group_updated` event).
    pub group: String,
}

/// A change to a group, as the service is asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEdit {
    Add { member: String },
    Remove { member: String },
    SetRole { member: String, role: String },
    Rename { name: String },
    Leave,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupMessageRequest {
    /// Message text (may be empty when files are attached).
    pub body: String,
    /// Ids of files uploaded with `POST /v1/files`, at most 8.
    pub attachments: Option<Vec<String>>,
}

/// A stranger who wrote first. Its messages are held (read them with
/// `GET /v1/messages?peer={address}`); nothing is sent back to it — no receipt, no handshake
/// answer, no connection — until it is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequestView {
    pub address: String,
    /// The name the stranger chose, from its card (unverified: anyone can choose any name).
    pub display_name: Option<String>,
    /// Messages held (a request keeps a bounded number; later ones are dropped).
    pub messages: u32,
    /// Milliseconds since the Unix epoch.
    pub first_seen: u64,
    /// Milliseconds since the Unix epoch.
    pub last_seen: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RequestList {
    pub requests: Vec<RequestView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    /// Local name for the new contact (1–64 characters).
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Incoming,
    Outgoing,
}

/// Delivery state. Outgoing: `queued` → `stored` (custody receipt from ≥1 relay) → `delivered`
/// (recipient's node acknowledged) → `read` (read receipt), or `failed`. Incoming: `received`
/// → `read` (marked read here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    Queued,
    Stored,
    Delivered,
    Read,
    Failed,
    Received,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    pub id: String,
    pub direction: Direction,
    /// Sender address.
    pub from: String,
    /// Recipient address (for an outgoing group message: the group id).
    pub to: String,
    /// The group id (64 hex digits) of a group message; absent for 1:1 messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub body: String,
    pub state: MessageState,
    /// When the sender queued it (sender's clock), ms since the Unix epoch.
    pub sent_at: u64,
    /// When this node received it (incoming only), ms since the Unix epoch.
    pub received_at: Option<u64>,
    /// When it was read (by us if incoming, by the recipient if outgoing), ms since the epoch.
    pub read_at: Option<u64>,
    /// Relays that returned a custody receipt (outgoing only).
    pub stored_by: u32,
    /// Outgoing group messages: how many members it reached (their node took it, or a relay
    /// holds it for them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached: Option<u32>,
    /// Outgoing group messages: how many members' nodes have it. Who, and who read it:
    /// `GET /v1/messages/{id}/members`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_to: Option<u32>,
    /// Outgoing group messages: how many members read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_by: Option<u32>,
    /// Files sent with the message (`GET /v1/files/{id}` once `complete` or `uploaded`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<FileView>,
}

/// A file: uploaded here, or offered by a peer in a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileView {
    /// 32 hex digits.
    pub id: String,
    pub name: String,
    /// Media type, as the sender's app gave it.
    pub mime: String,
    pub size: u64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// `uploaded`, `offered` (not fetched: over the automatic limit), `downloading`,
    /// `complete` (here and verified), `failed`.
    pub state: String,
    pub direction: Direction,
    /// Bytes here and checked.
    pub done_bytes: u64,
    /// Who offered it (incoming).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The message it came or went with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Why it failed, or why fetching it last stalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileList {
    pub files: Vec<FileView>,
    /// The largest file this node takes (`limits.max_file_bytes`): apps check it before they
    /// upload (a larger upload is refused, and the refusal may cut the upload's connection).
    pub max_file_bytes: u64,
}

/// Query string of `POST /v1/files`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadParams {
    /// The file's name as recipients see it (no path; at most 255 bytes).
    pub name: String,
}

/// Where one member stands with a group message this node sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemberStateView {
    /// The member's address.
    pub address: String,
    /// `queued`, `stored` (a relay holds it for the member), `delivered`, `read` or `failed`.
    pub state: MessageState,
    /// When it got there, milliseconds since the Unix epoch.
    pub at: u64,
}

/// Each member's state of a group message this node sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageMembers {
    /// The message id.
    pub id: String,
    /// One entry per member it was sent to.
    pub members: Vec<MemberStateView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessageRequest {
    /// A contact's address or local name.
    pub to: String,
    /// Message text (may be empty when files are attached).
    pub body: String,
    /// Ids of files uploaded with `POST /v1/files`, at most 8.
    pub attachments: Option<Vec<String>>,
}

/// Query string of `GET /v1/messages`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListMessagesParams {
    /// Only the conversation with this address.
    pub peer: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

/// Query string of `GET /v1/groups/{id}/messages`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

/// What the service is asked for by `GET /v1/messages`, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageQuery {
    pub peer: Option<String>,
    /// 1..=[`MessageQuery::MAX_LIMIT`].
    pub limit: u32,
    pub cursor: Option<String>,
}

impl MessageQuery {
    pub const DEFAULT_LIMIT: u32 = 50;
    pub const MAX_LIMIT: u32 = 200;
}

/// One page of messages, newest first; `next_cursor` fetches older ones (absent on the last page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<MessageView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConversationView {
    /// The other party's address.
    pub peer: String,
    /// Contact name, if the peer is a contact.
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub last_message: Option<MessageView>,
    /// Incoming messages not yet marked read.
    pub unread: u32,
}

/// Conversations, most recent activity first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConversationList {
    pub conversations: Vec<ConversationView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PeerRole {
    Personal,
    Relay,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PeerView {
    pub peer_id: String,
    /// Remote multiaddrs of the open connections.
    pub addrs: Vec<String>,
    pub role: PeerRole,
    /// The user address behind this peer, when known (an authenticated contact's node).
    pub user_address: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub connected_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PeerList {
    pub peers: Vec<PeerView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// Which app the token is for (1 to 64 characters).
    pub name: String,
    /// At least one scope.
    pub scopes: Vec<Scope>,
}

/// A token as listed: never the secret nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
}

/// Returned once by `POST /v1/tokens`: the only time the token text is shown.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// `Authorization: Bearer <token>`. Store it now: it cannot be shown again.
    pub token: String,
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
}

/// The text is wiped from memory once the response is written.
impl Drop for CreatedToken {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.token);
    }
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("token", &"<redacted>")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("created_at", &self.created_at)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// Usage of one mailbox hosted by a relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MailboxUsageView {
    /// Mailbox id (hex): a mailbox key, not the owner's identity.
    pub mailbox: String,
    pub messages: u64,
    pub bytes: u64,
}

/// What a relay holds for its users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RelayStats {
    /// Registered mailboxes.
    pub mailboxes: u64,
    /// Envelopes waiting to be fetched and acknowledged.
    pub stored_messages: u64,
    pub stored_bytes: u64,
    /// Disk used by the whole store.
    pub disk_bytes: u64,
    pub per_mailbox: Vec<MailboxUsageView>,
    /// Files senders left for the mailboxes hosted here (recipients were offline).
    #[serde(default)]
    pub held_files: u64,
    /// Their bytes (chunks and lists), within each mailbox's file quota.
    #[serde(default)]
    pub held_file_bytes: u64,
}

/// A relay that keeps this node's mailbox while it is offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HomeRelayView {
    /// Multiaddr ending in `/p2p/<peer id>`.
    pub addr: String,
    pub peer_id: String,
    /// `config` (configuration file or `--home-relay`) or `api`.
    pub source: String,
    /// The relay accepted this node's mailbox registration since the node started.
    pub registered: bool,
    /// When the mailbox was last drained, milliseconds since the Unix epoch.
    pub last_sync_at: Option<u64>,
    /// Why the last registration or drain failed (retried with backoff), if it did.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HomeRelayList {
    pub relays: Vec<HomeRelayView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddHomeRelayRequest {
    /// Multiaddr ending in `/p2p/<peer id>`, e.g. `/ip4/203.0.113.5/tcp/4001/p2p/12D3KooW…`.
    pub addr: String,
}

/// Something that happened in the node, pushed to `/v1/events` subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A new message was stored (incoming, or outgoing sent by any app), or a message
    /// request's messages joined the conversation when it was accepted.
    Message {
        message: MessageView,
    },
    /// This node joined a group, or a group's membership changed.
    GroupUpdated {
        /// The group id.
        group: String,
    },
    /// A device joined this account (`GET /v1/devices`).
    DeviceLinked {
        /// The device's id (its device identity key, hex).
        device: String,
    },
    /// A device was taken off this account's list.
    DeviceRevoked {
        /// The device's id.
        device: String,
    },
    /// A history hand-off moved on: on the account's first device, `done` of `total` messages
    /// queued for the new `device` (`direction` `sending`); on the new device, taken from the
    /// first (`receiving`).
    SyncProgress {
        /// The other device's id.
        device: String,
        direction: SyncDirection,
        done: u32,
        total: u32,
    },
    /// A stranger wrote: the message is held in its message request (`GET /v1/requests`).
    MessageRequest {
        message: MessageView,
    },
    /// A message's delivery state changed.
    MessageState {
        id: String,
        state: MessageState,
        stored_by: u32,
        /// Outgoing group messages: members reached so far.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reached: Option<u32>,
        /// Outgoing group messages: members whose node has it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        delivered_to: Option<u32>,
        /// Outgoing group messages: members who read it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        read_by: Option<u32>,
        /// Milliseconds since the Unix epoch.
        at: u64,
    },
    PeerConnected {
        peer_id: String,
    },
    PeerDisconnected {
        peer_id: String,
    },
    /// This node drained its mailbox at a home relay (after registering there): messages
    /// that waited while it was offline are in the inbox now.
    MailboxSynced {
        relay_peer_id: String,
        /// Envelopes fetched and acknowledged in this sync.
        drained: u64,
    },
    /// A download moved on (at most four times a second).
    FileProgress {
        id: String,
        done: u64,
        total: u64,
    },
    /// A download finished and the file was verified: `GET /v1/files/{id}` serves it.
    FileCompleted {
        id: String,
    },
    /// A download gave up (`POST /v1/files/{id}/download` tries again, resuming).
    FileFailed {
        id: String,
        error: String,
    },
}

/// Frames the server sends on `/v1/events` besides [`Event`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlFrame {
    /// Authenticated and subscribed: every event after this frame is delivered. Always the
    /// first frame, whichever way the client authenticated.
    AuthOk,
    /// This client fell behind and `missed` events were dropped for it; refetch state over
    /// HTTP if it matters.
    Lagged { missed: u64 },
    /// Sent just before the server closes the socket.
    Error { code: ErrorCode, message: String },
}

/// Frames a client may send on `/v1/events`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// First frame when the upgrade request had no `Authorization` header.
    Auth { token: String },
}

impl std::fmt::Debug for ClientFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientFrame::Auth { .. } => f.write_str("Auth { token: <redacted> }"),
        }
    }
}

/// One device of this account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceView {
    /// The device's id: its device identity key, hex (for the first device, the account's
    /// identity key).
    pub id: String,
    /// The name it was linked with.
    pub name: String,
    /// When it was added, seconds since the Unix epoch.
    pub added_at: u64,
    /// The account's first device: it alone links and revokes devices.
    pub primary: bool,
    /// The device answering this request.
    pub this_device: bool,
}

/// The account's signed device list as this node holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceListView {
    /// The account's address.
    pub account: String,
    /// The list's version (1 before any device was linked); contacts refuse lower ones.
    pub version: u64,
    pub devices: Vec<DeviceView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkDeviceRequest {
    /// How long the link stays valid, seconds (default 600, at most 3600).
    pub ttl_secs: Option<u64>,
    /// Hand the new device the messages of the last this many days (default: none, unless
    /// `history_messages` is given; then all days).
    pub history_days: Option<u32>,
    /// Hand over at most this many messages, the newest (default 10000 when `history_days` is
    /// given, at most 100000).
    pub history_messages: Option<u32>,
}

/// What the new device gets of the history when it links (both zero: nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkHistory {
    pub days: u32,
    pub messages: u32,
}

/// Which side of a history hand-off a `sync_progress` event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncDirection {
    Sending,
    Receiving,
}

/// A one-time link for a new device: show it (or its QR code) to that device only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LinkView {
    /// The `tokenim-link:` URI; a secret until it is used or expires.
    pub uri: String,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinDeviceRequest {
    /// The `tokenim-link:` URI the account's first device showed.
    pub uri: String,
    /// This device's name in the account's list (at most 32 bytes; default "device").
    pub name: Option<String>,
}

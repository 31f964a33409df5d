//! Typed records and their protobuf encodings (the value half of the on-disk schema).
//!
//! Each record has a private prost message with explicit tags. New optional fields can be
//! added under new tags without a migration; removing or renumbering a tag needs a schema
//! version bump (see [`crate::schema`]).

use std::fmt;
use std::str::FromStr;

use prost::Message;

use crate::error::corrupt;
use crate::{Result, StoreError};

/// A value with a stable byte encoding.
pub trait Record: Sized {
    /// Encode to bytes.
    fn to_bytes(&self) -> Vec<u8>;
    /// Decode from bytes; malformed input is [`StoreError::Corrupt`], never a panic.
    fn from_bytes(bytes: &[u8]) -> Result<Self>;
}

fn fixed<const N: usize>(what: &'static str, field: &str, v: &[u8]) -> Result<[u8; N]> {
    <[u8; N]>::try_from(v).map_err(|_| {
        corrupt(
            what,
            format!("{field}: expected {N} bytes, have {}", v.len()),
        )
    })
}

fn decode_pb<M: Message + Default>(what: &'static str, bytes: &[u8]) -> Result<M> {
    M::decode(bytes).map_err(|e| corrupt(what, e.to_string()))
}

// ---------------------------------------------------------------- contacts

/// Where a peer stands with the user: only an accepted contact is written to, answered or
/// receipted; a stranger's messages wait as a request until the user decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ContactState {
    /// A contact: the user imported its card, accepted its request or wrote to it.
    #[default]
    Accepted,
    /// A stranger who wrote first: its messages are held as a message request.
    Request,
    /// Its messages are dropped unread.
    Blocked,
}

impl ContactState {
    /// Stable lowercase name, as used by the local API.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactState::Accepted => "accepted",
            ContactState::Request => "request",
            ContactState::Blocked => "blocked",
        }
    }

    // On-disk codes; 0 (absent) is `Accepted`, what every contact was before requests existed.
    fn code(self) -> u32 {
        match self {
            ContactState::Accepted => 0,
            ContactState::Request => 1,
            ContactState::Blocked => 2,
        }
    }

    fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(ContactState::Accepted),
            1 => Some(ContactState::Request),
            2 => Some(ContactState::Blocked),
            _ => None,
        }
    }
}

/// A peer the node holds a card of: a contact, a message request or a blocked peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRecord {
    /// Ed25519 identity key.
    pub identity_key: [u8; 32],
    /// Local display name, unique by convention (see [`crate::Store::find_contact_by_name`]).
    pub name: Option<String>,
    /// The signed contact card as a `tokenim:` URI.
    pub card_uri: String,
    /// Unix seconds.
    pub added_at: u64,
    /// Unix seconds.
    pub updated_at: u64,
    pub state: ContactState,
    /// The peer's write grant for its mailbox (an encoded `WriteGrant` it sent us), which its
    /// home relays may require; empty if none.
    pub write_grant: Vec<u8>,
    /// The own cards of the peer's other devices (each signed by its device identity), as its
    /// first device sent them; empty for one device.
    pub device_cards: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ContactPb {
    #[prost(bytes = "vec", tag = "1")]
    identity_key: Vec<u8>,
    #[prost(string, optional, tag = "2")]
    name: Option<String>,
    #[prost(string, tag = "3")]
    card_uri: String,
    #[prost(uint64, tag = "4")]
    added_at: u64,
    #[prost(uint64, tag = "5")]
    updated_at: u64,
    #[prost(uint32, tag = "6")]
    state: u32,
    #[prost(bytes = "vec", tag = "7")]
    write_grant: Vec<u8>,
    #[prost(string, repeated, tag = "8")]
    device_cards: Vec<String>,
}

impl Record for ContactRecord {
    fn to_bytes(&self) -> Vec<u8> {
        ContactPb {
            identity_key: self.identity_key.to_vec(),
            name: self.name.clone(),
            card_uri: self.card_uri.clone(),
            added_at: self.added_at,
            updated_at: self.updated_at,
            state: self.state.code(),
            write_grant: self.write_grant.clone(),
            device_cards: self.device_cards.clone(),
        }
        .encode_to_vec()
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "contact record";
        let pb: ContactPb = decode_pb(WHAT, bytes)?;
        Ok(Self {
            identity_key: fixed(WHAT, "identity_key", &pb.identity_key)?,
            name: pb.name,
            card_uri: pb.card_uri,
            added_at: pb.added_at,
            updated_at: pb.updated_at,
            state: ContactState::from_code(pb.state)
                .ok_or_else(|| corrupt(WHAT, format!("unknown state {}", pb.state)))?,
            write_grant: pb.write_grant,
            device_cards: pb.device_cards,
        })
    }
}

// ---------------------------------------------------------------- groups

/// A group this node belongs to. `log` and `cipher` are opaque to the store (the membership
/// log and the sender-key state the crypto crate serialises); `cipher` holds secret keys.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// Group id (the hash of its genesis change).
    pub id: [u8; 32],
    /// The signed membership log.
    pub log: Vec<u8>,
    /// Sender-key state of the local member (secret).
    pub cipher: Vec<u8>,
    /// Members' contact cards (identity key, `tokenim:` URI): how to reach each.
    pub member_cards: Vec<([u8; 32], String)>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub updated_at: u64,
}

impl fmt::Debug for GroupRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupRecord")
            .field("id", &Hex(&self.id))
            .field("log_len", &self.log.len())
            .field("members", &self.member_cards.len())
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct MemberCardPb {
    #[prost(bytes = "vec", tag = "1")]
    identity_key: Vec<u8>,
    #[prost(string, tag = "2")]
    card_uri: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GroupPb {
    #[prost(bytes = "vec", tag = "1")]
    id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    log: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    cipher: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    member_cards: Vec<MemberCardPb>,
    #[prost(uint64, tag = "5")]
    created_at: u64,
    #[prost(uint64, tag = "6")]
    updated_at: u64,
}

impl Record for GroupRecord {
    fn to_bytes(&self) -> Vec<u8> {
        GroupPb {
            id: self.id.to_vec(),
            log: self.log.clone(),
            cipher: self.cipher.clone(),
            member_cards: self
                .member_cards
                .iter()
                .map(|(k, c)| MemberCardPb {
                    identity_key: k.to_vec(),
                    card_uri: c.clone(),
                })
                .collect(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
        .encode_to_vec()
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "group record";
        let pb: GroupPb = decode_pb(WHAT, bytes)?;
        Ok(Self {
            id: fixed(WHAT, "id", &pb.id)?,
            log: pb.log,
            cipher: pb.cipher,
            member_cards: pb
                .member_cards
                .into_iter()
                .map(|m| Ok((fixed(WHAT, "member", &m.identity_key)?, m.card_uri)))
                .collect::<Result<_>>()?,
            created_at: pb.created_at,
            updated_at: pb.updated_at,
        })
    }
}

// ---------------------------------------------------------------- messages

/// Delivery state of a message. Outgoing: queued → sent → stored (by N relays) → delivered
/// → read, or failed. Incoming messages are `Received` (or `Read` once the user read them).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Accepted, not yet handed to any peer.
    Queued,
    /// Handed to the recipient's node or a relay; no receipt yet.
    Sent,
    /// A relay signed a custody receipt.
    Stored,
    /// The recipient acknowledged it.
    Delivered,
    /// The recipient (or, for incoming, the local user) read it.
    Read,
    /// Gave up (expired, rejected).
    Failed,
    /// Incoming message.
    Received,
}

impl MessageState {
    /// All states.
    pub const ALL: [MessageState; 7] = [
        MessageState::Queued,
        MessageState::Sent,
        MessageState::Stored,
        MessageState::Delivered,
        MessageState::Read,
        MessageState::Failed,
        MessageState::Received,
    ];

    /// Stable lowercase name, as used by the local API.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Queued => "queued",
            MessageState::Sent => "sent",
            MessageState::Stored => "stored",
            MessageState::Delivered => "delivered",
            MessageState::Read => "read",
            MessageState::Failed => "failed",
            MessageState::Received => "received",
        }
    }

    // On-disk codes; 0 is reserved for "unset" so that a missing field is detected.
    pub(crate) fn code(self) -> u32 {
        match self {
            MessageState::Queued => 1,
            MessageState::Sent => 2,
            MessageState::Stored => 3,
            MessageState::Delivered => 4,
            MessageState::Read => 5,
            MessageState::Failed => 6,
            MessageState::Received => 7,
        }
    }

    pub(crate) fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }
}

impl fmt::Display for MessageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageState {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| StoreError::InvalidInput(format!("unknown message state {s:?}")))
    }
}

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From a peer to us.
    Incoming,
    /// From us to a peer.
    Outgoing,
}

impl Direction {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        }
    }

    fn code(self) -> u32 {
        match self {
            Direction::Incoming => 1,
            Direction::Outgoing => 2,
        }
    }

    fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(Direction::Incoming),
            2 => Some(Direction::Outgoing),
            _ => None,
        }
    }
}

/// A message of a conversation, either direction.
#[derive(Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// Message id; unique across conversations (it is the key of `get_message`).
    pub id: [u8; 16],
    /// The peer's identity key (the conversation is named after the other side).
    pub conversation: [u8; 32],
    /// Incoming or outgoing.
    pub direction: Direction,
    /// Sender identity key.
    pub from: [u8; 32],
    /// Recipient identity key.
    pub to: [u8; 32],
    /// Application-defined message kind.
    pub kind: u32,
    /// Plaintext body.
    pub body: String,
    /// Sender's clock, unix ms (untrusted for incoming messages).
    pub sent_at_ms: u64,
    /// Local clock when this node recorded the message (for outgoing: accepted from the app).
    /// Conversations are ordered by this, then by id; it never changes after the first put.
    pub received_at_ms: u64,
    /// Delivery state.
    pub state: MessageState,
    /// Number of relays holding a custody receipt for it.
    pub relays: u32,
    /// Id of the envelope that carried it, if any.
    pub envelope_id: Option<[u8; 32]>,
    /// Last change, unix ms.
    pub updated_at_ms: u64,
    /// Part of a message request: kept out of the all-conversations timeline until the user
    /// accepts its sender.
    pub held: bool,
    /// A group message: `conversation` is the group id (and `to`, for outgoing ones).
    pub group: bool,
    /// Outgoing group messages: members it reached (their node took it, or a relay holds it
    /// for them).
    pub reached: u32,
    /// Outgoing group messages: members whose node has it (it arrived, or they said so).
    pub delivered_to: u32,
    /// Outgoing group messages: members who read it.
    pub read_by: u32,
}

// The body is plaintext: never in logs.
impl fmt::Debug for MessageRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageRecord")
            .field("id", &Hex(&self.id))
            .field("conversation", &Hex(&self.conversation))
            .field("direction", &self.direction)
            .field("kind", &self.kind)
            .field("body_len", &self.body.len())
            .field("sent_at_ms", &self.sent_at_ms)
            .field("received_at_ms", &self.received_at_ms)
            .field("state", &self.state)
            .field("relays", &self.relays)
            .field("updated_at_ms", &self.updated_at_ms)
            .field("held", &self.held)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct MessagePb {
    #[prost(bytes = "vec", tag = "1")]
    id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    conversation: Vec<u8>,
    #[prost(uint32, tag = "3")]
    direction: u32,
    #[prost(bytes = "vec", tag = "4")]
    from: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    to: Vec<u8>,
    #[prost(uint32, tag = "6")]
    kind: u32,
    #[prost(string, tag = "7")]
    body: String,
    #[prost(uint64, tag = "8")]
    sent_at_ms: u64,
    #[prost(uint64, tag = "9")]
    received_at_ms: u64,
    #[prost(uint32, tag = "10")]
    state: u32,
    #[prost(uint32, tag = "11")]
    relays: u32,
    #[prost(bytes = "vec", optional, tag = "12")]
    envelope_id: Option<Vec<u8>>,
    #[prost(uint64, tag = "13")]
    updated_at_ms: u64,
    #[prost(bool, tag = "14")]
    held: bool,
    #[prost(bool, tag = "15")]
    group: bool,
    #[prost(uint32, tag = "16")]
    reached: u32,
    #[prost(uint32, tag = "17")]
    delivered_to: u32,
    #[prost(uint32, tag = "18")]
    read_by: u32,
}

impl Record for MessageRecord {
    fn to_bytes(&self) -> Vec<u8> {
        MessagePb {
            id: self.id.to_vec(),
            conversation: self.conversation.to_vec(),
            direction: self.direction.code(),
            from: self.from.to_vec(),
            to: self.to.to_vec(),
            kind: self.kind,
            body: self.body.clone(),
            sent_at_ms: self.sent_at_ms,
            received_at_ms: self.received_at_ms,
            state: self.state.code(),
            relays: self.relays,
            envelope_id: self.envelope_id.map(|e| e.to_vec()),
            updated_at_ms: self.updated_at_ms,
            held: self.held,
            group: self.group,
            reached: self.reached,
            delivered_to: self.delivered_to,
            read_by: self.read_by,
        }
        .encode_to_vec()
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "message record";
        let pb: MessagePb = decode_pb(WHAT, bytes)?;
        Ok(Self {
            id: fixed(WHAT, "id", &pb.id)?,
            conversation: fixed(WHAT, "conversation", &pb.conversation)?,
            direction: Direction::from_code(pb.direction)
                .ok_or_else(|| corrupt(WHAT, format!("unknown direction {}", pb.direction)))?,
            from: fixed(WHAT, "from", &pb.from)?,
            to: fixed(WHAT, "to", &pb.to)?,
            kind: pb.kind,
            body: pb.body,
            sent_at_ms: pb.sent_at_ms,
            received_at_ms: pb.received_at_ms,
            state: MessageState::from_code(pb.state)
                .ok_or_else(|| corrupt(WHAT, format!("unknown state {}", pb.state)))?,
            relays: pb.relays,
            envelope_id: pb
                .envelope_id
                .map(|e| fixed(WHAT, "envelope_id", &e))
                .transpose()?,
            updated_at_ms: pb.updated_at_ms,
            held: pb.held,
            group: pb.group,
            reached: pb.reached,
            delivered_to: pb.delivered_to,
            read_by: pb.read_by,
        })
    }
}

// ---------------------------------------------------------------- outbox

/// An accepted send that no peer has confirmed yet, with its retry state.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    /// Outbox entry id.
    pub id: [u8; 16],
    /// Recipient identity key.
    pub peer: [u8; 32],
    /// Conversation message this delivers; None for control frames (acks, handshakes...).
    pub message_id: Option<[u8; 16]>,
    /// The sealed envelope to (re)send.
    pub envelope: Vec<u8>,
    /// Attempts so far.
    pub attempts: u32,
    /// Unix ms of the next attempt.
    pub next_attempt_ms: u64,
    /// Unix ms after which the send is given up.
    pub expires_at_ms: u64,
    /// Unix ms.
    pub created_at_ms: u64,
}

impl fmt::Debug for OutboxRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxRecord")
            .field("id", &Hex(&self.id))
            .field("peer", &Hex(&self.peer))
            .field("message_id", &self.message_id.as_ref().map(|m| Hex(m)))
            .field("envelope_len", &self.envelope.len())
            .field("attempts", &self.attempts)
            .field("next_attempt_ms", &self.next_attempt_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("created_at_ms", &self.created_at_ms)
            .finish()
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct OutboxPb {
    #[prost(bytes = "vec", tag = "1")]
    id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    peer: Vec<u8>,
    #[prost(bytes = "vec", optional, tag = "3")]
    message_id: Option<Vec<u8>>,
    #[prost(bytes = "vec", tag = "4")]
    envelope: Vec<u8>,
    #[prost(uint32, tag = "5")]
    attempts: u32,
    #[prost(uint64, tag = "6")]
    next_attempt_ms: u64,
    #[prost(uint64, tag = "7")]
    expires_at_ms: u64,
    #[prost(uint64, tag = "8")]
    created_at_ms: u64,
}

impl Record for OutboxRecord {
    fn to_bytes(&self) -> Vec<u8> {
        OutboxPb {
            id: self.id.to_vec(),
            peer: self.peer.to_vec(),
            message_id: self.message_id.map(|m| m.to_vec()),
            envelope: self.envelope.clone(),
            attempts: self.attempts,
            next_attempt_ms: self.next_attempt_ms,
            expires_at_ms: self.expires_at_ms,
            created_at_ms: self.created_at_ms,
        }
        .encode_to_vec()
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "outbox record";
        let pb: OutboxPb = decode_pb(WHAT, bytes)?;
        Ok(Self {
            id: fixed(WHAT, "id", &pb.id)?,
            peer: fixed(WHAT, "peer", &pb.peer)?,
            message_id: pb
                .message_id
                .map(|m| fixed(WHAT, "message_id", &m))
                .transpose()?,
            envelope: pb.envelope,
            attempts: pb.attempts,
            next_attempt_ms: pb.next_attempt_ms,
            expires_at_ms: pb.expires_at_ms,
            created_at_ms: pb.created_at_ms,
        })
    }
}

// ---------------------------------------------------------------- tokens

/// A local API token. Only a hash of the secret is stored; the API crate hashes.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Public token id.
    pub id: String,
    /// Human label (the app it was made for).
    pub name: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Hash of the secret part.
    pub secret_hash: [u8; 32],
    /// Unix seconds.
    pub created_at: u64,
}

impl fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("secret_hash", &"<redacted>")
            .field("created_at", &self.created_at)
            .finish()
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct TokenPb {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(string, repeated, tag = "3")]
    scopes: Vec<String>,
    #[prost(bytes = "vec", tag = "4")]
    secret_hash: Vec<u8>,
    #[prost(uint64, tag = "5")]
    created_at: u64,
}

impl Record for TokenRecord {
    fn to_bytes(&self) -> Vec<u8> {
        TokenPb {
            id: self.id.clone(),
            name: self.name.clone(),
            scopes: self.scopes.clone(),
            secret_hash: self.secret_hash.to_vec(),
            created_at: self.created_at,
        }
        .encode_to_vec()
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "token record";
        let pb: TokenPb = decode_pb(WHAT, bytes)?;
        Ok(Self {
            id: pb.id,
            name: pb.name,
            scopes: pb.scopes,
            secret_hash: fixed(WHAT, "secret_hash", &pb.secret_hash)?,
            created_at: pb.created_at,
        })
    }
}

// ---------------------------------------------------------------- mailboxes

/// An envelope held in a relay mailbox.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredEnvelope {
    /// Position in the mailbox; increases with every accepted put, never reused.
    pub seq: u64,
    /// Envelope id (hash of the ciphertext).
    pub message_id: [u8; 32],
    /// The envelope bytes as received.
    pub envelope: Vec<u8>,
    /// Unix seconds.
    pub stored_at: u64,
    /// Unix seconds; the envelope is purged by [`crate::Store::purge_expired`] from then on.
    pub expires_at: u64,
}

impl fmt::Debug for StoredEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredEnvelope")
            .field("seq", &self.seq)
            .field("message_id", &Hex(&self.message_id))
            .field("envelope_len", &self.envelope.len())
            .field("stored_at", &self.stored_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Value of a `mailboxes` entry (the seq is in the key).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StoredEnvelopePb {
    #[prost(bytes = "vec", tag = "1")]
    pub message_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub envelope: Vec<u8>,
    #[prost(uint64, tag = "3")]
    pub stored_at: u64,
    #[prost(uint64, tag = "4")]
    pub expires_at: u64,
}

impl StoredEnvelope {
    pub(crate) fn encode_value(
        message_id: &[u8; 32],
        envelope: &[u8],
        stored_at: u64,
        expires_at: u64,
    ) -> Vec<u8> {
        StoredEnvelopePb {
            message_id: message_id.to_vec(),
            envelope: envelope.to_vec(),
            stored_at,
            expires_at,
        }
        .encode_to_vec()
    }

    pub(crate) fn decode_value(seq: u64, bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "stored envelope";
        let pb: StoredEnvelopePb = decode_pb(WHAT, bytes)?;
        Ok(Self {
            seq,
            message_id: fixed(WHAT, "message_id", &pb.message_id)?,
            envelope: pb.envelope,
            stored_at: pb.stored_at,
            expires_at: pb.expires_at,
        })
    }
}

/// Per-mailbox bookkeeping (`mailbox_meta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct MailboxMeta {
    pub registered_at: u64,
    pub next_seq: u64,
    pub messages: u64,
    pub bytes: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct MailboxMetaPb {
    #[prost(uint64, tag = "1")]
    registered_at: u64,
    #[prost(uint64, tag = "2")]
    next_seq: u64,
    #[prost(uint64, tag = "3")]
    messages: u64,
    #[prost(uint64, tag = "4")]
    bytes: u64,
}

impl Record for MailboxMeta {
    fn to_bytes(&self) -> Vec<u8> {
        MailboxMetaPb {
            registered_at: self.registered_at,
            next_seq: self.next_seq,
            messages: self.messages,
            bytes: self.bytes,
        }
        .encode_to_vec()
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let pb: MailboxMetaPb = decode_pb("mailbox meta", bytes)?;
        if pb.next_seq == 0 {
            return Err(corrupt("mailbox meta", "next_seq is 0"));
        }
        Ok(Self {
            registered_at: pb.registered_at,
            next_seq: pb.next_seq,
            messages: pb.messages,
            bytes: pb.bytes,
        })
    }
}

/// Lowercase hex for Debug output of ids.
pub(crate) struct Hex<'a>(pub &'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arr<const N: usize>() -> impl Strategy<Value = [u8; N]> {
        proptest::collection::vec(any::<u8>(), N).prop_map(|v| {
            let mut a = [0u8; N];
            a.copy_from_slice(&v);
            a
        })
    }

    fn state() -> impl Strategy<Value = MessageState> {
        proptest::sample::select(MessageState::ALL.to_vec())
    }

    prop_compose! {
        fn message()(id in arr::<16>(), conversation in arr::<32>(), incoming in any::<bool>(),
                     from in arr::<32>(), to in arr::<32>(), kind in any::<u32>(), body in ".{0,40}",
                     sent in any::<u64>(), recv in any::<u64>(), state in state(), relays in any::<u32>(),
                     env in proptest::option::of(arr::<32>()), upd in any::<u64>(), held in any::<bool>(),
                     group in any::<bool>(), reached in any::<u32>(), delivered_to in any::<u32>(),
                     read_by in any::<u32>()) -> MessageRecord {
            MessageRecord { id, conversation,
                direction: if incoming { Direction::Incoming } else { Direction::Outgoing },
                from, to, kind, body, sent_at_ms: sent, received_at_ms: recv, state, relays,
                envelope_id: env, updated_at_ms: upd, held, group, reached, delivered_to,
                read_by }
        }
    }

    prop_compose! {
        fn contact()(identity_key in arr::<32>(), name in proptest::option::of(".{0,20}"),
                     card_uri in ".{0,60}", added_at in any::<u64>(), updated_at in any::<u64>(),
                     state in proptest::sample::select(vec![ContactState::Accepted, ContactState::Request, ContactState::Blocked])) -> ContactRecord {
            ContactRecord { identity_key, name, card_uri, added_at, updated_at, state, write_grant: Vec::new(),
                device_cards: Vec::new() }
        }
    }

    prop_compose! {
        fn outbox()(id in arr::<16>(), peer in arr::<32>(), message_id in proptest::option::of(arr::<16>()),
                    envelope in proptest::collection::vec(any::<u8>(), 0..200), attempts in any::<u32>(),
                    next in any::<u64>(), exp in any::<u64>(), created in any::<u64>()) -> OutboxRecord {
            OutboxRecord { id, peer, message_id, envelope, attempts, next_attempt_ms: next,
                           expires_at_ms: exp, created_at_ms: created }
        }
    }

    prop_compose! {
        fn token()(id in "[a-z0-9]{1,12}", name in ".{0,20}", scopes in proptest::collection::vec("[a-z]{1,8}", 0..4),
                   secret_hash in arr::<32>(), created_at in any::<u64>()) -> TokenRecord {
            TokenRecord { id, name, scopes, secret_hash, created_at }
        }
    }

    prop_compose! {
        fn group()(id in arr::<32>(), log in proptest::collection::vec(any::<u8>(), 0..64),
                   cipher in proptest::collection::vec(any::<u8>(), 0..64),
                   cards in proptest::collection::vec((arr::<32>(), ".{0,20}"), 0..4),
                   created_at in any::<u64>(), updated_at in any::<u64>()) -> GroupRecord {
            GroupRecord { id, log, cipher, member_cards: cards, created_at, updated_at }
        }
    }

    proptest! {
        #[test]
        fn group_round_trip(g in group()) {
            prop_assert_eq!(GroupRecord::from_bytes(&g.to_bytes()).ok(), Some(g));
        }

        #[test]
        fn message_round_trip(m in message()) {
            prop_assert_eq!(MessageRecord::from_bytes(&m.to_bytes()).ok(), Some(m));
        }

        #[test]
        fn contact_round_trip(c in contact()) {
            prop_assert_eq!(ContactRecord::from_bytes(&c.to_bytes()).ok(), Some(c));
        }

        #[test]
        fn outbox_round_trip(o in outbox()) {
            prop_assert_eq!(OutboxRecord::from_bytes(&o.to_bytes()).ok(), Some(o));
        }

        #[test]
        fn token_round_trip(t in token()) {
            prop_assert_eq!(TokenRecord::from_bytes(&t.to_bytes()).ok(), Some(t));
        }

        #[test]
        fn envelope_round_trip(seq in any::<u64>(), id in arr::<32>(),
                               env in proptest::collection::vec(any::<u8>(), 0..300),
                               stored in any::<u64>(), exp in any::<u64>()) {
            let bytes = StoredEnvelope::encode_value(&id, &env, stored, exp);
            let back = StoredEnvelope::decode_value(seq, &bytes).ok();
            prop_assert_eq!(back, Some(StoredEnvelope { seq, message_id: id, envelope: env, stored_at: stored, expires_at: exp }));
        }

        #[test]
        fn mailbox_meta_round_trip(r in any::<u64>(), n in 1..u64::MAX, m in any::<u64>(), b in any::<u64>()) {
            let meta = MailboxMeta { registered_at: r, next_seq: n, messages: m, bytes: b };
            prop_assert_eq!(MailboxMeta::from_bytes(&meta.to_bytes()).ok(), Some(meta));
        }

        /// Arbitrary bytes never panic any decoder.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = MessageRecord::from_bytes(&bytes);
            let _ = ContactRecord::from_bytes(&bytes);
            let _ = OutboxRecord::from_bytes(&bytes);
            let _ = TokenRecord::from_bytes(&bytes);
            let _ = MailboxMeta::from_bytes(&bytes);
            let _ = StoredEnvelope::decode_value(1, &bytes);
        }

        /// Corrupting a valid record gives an error or a (different) valid record, never a
        /// panic; truncation inside a field is always an error.
        #[test]
        fn corrupted_message_is_error_not_panic(m in message(), pos in any::<prop::sample::Index>(),
                                                 flip in 1u8..=255, cut in any::<prop::sample::Index>()) {
            let mut bytes = m.to_bytes();
            let i = pos.index(bytes.len());
            bytes[i] ^= flip;
            let _ = MessageRecord::from_bytes(&bytes);
            let good = m.to_bytes();
            let cut_at = cut.index(good.len());
            // Cutting inside the 16-byte id (offset 2..18) truncates a length-delimited field.
            if (2..18).contains(&cut_at) {
                prop_assert!(MessageRecord::from_bytes(&good[..cut_at]).is_err());
            }
        }
    }

    #[test]
    fn missing_required_fields_are_corrupt() {
        // An empty buffer decodes to all-default protobuf fields: ids have the wrong length.
        assert!(matches!(
            MessageRecord::from_bytes(&[]),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            ContactRecord::from_bytes(&[]),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn state_names_round_trip() {
        for s in MessageState::ALL {
            assert_eq!(s.as_str().parse::<MessageState>().ok(), Some(s));
            assert_eq!(MessageState::from_code(s.code()), Some(s));
        }
        assert!("bogus".parse::<MessageState>().is_err());
    }

    #[test]
    fn debug_hides_plaintext_and_secrets() {
        let m = MessageRecord {
            id: [1; 16],
            conversation: [2; 32],
            direction: Direction::Incoming,
            from: [2; 32],
            to: [3; 32],
            kind: 0,
            body: "attack at dawn".into(),
            sent_at_ms: 0,
            received_at_ms: 0,
            state: MessageState::Received,
            relays: 0,
            envelope_id: None,
            updated_at_ms: 0,
            held: false,
            group: false,
            reached: 0,
            delivered_to: 0,
            read_by: 0,
        };
        assert!(!format!("{m:?}").contains("dawn"));
        let t = TokenRecord {
            id: "t".into(),
            name: "n".into(),
            scopes: vec![],
            secret_hash: [0xab; 32],
            created_at: 0,
        };
        assert!(!format!("{t:?}").contains("171"));
        assert!(!format!("{t:?}").to_lowercase().contains("abab"));
    }
}

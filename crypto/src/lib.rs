//! `tokenim-crypto`: identities, addresses, contact cards, end-to-end Noise sessions,
//! envelopes, the signed receipts/acks of the relay protocol and the copies relays sign for each
//! other, groups (membership logs and sender keys), the device lists and link handshake of
//! accounts on several devices, and the chunked, content-addressed encryption of files.
//!
//! Sans-IO: no networking, no files, no async. The node moves bytes and persists state; this
//! crate only turns bytes into bytes. The wire format is specified by `proto/tokenim/v1/*.proto`.

pub mod address;
pub mod card;
pub mod device;
pub mod envelope;
pub mod error;
pub mod file;
pub mod grant;
pub mod group;
pub mod identity;
pub mod message;
pub mod pb;
pub mod receipt;
pub mod relayed;
pub mod session;
mod sign;

pub use address::{ADDRESS_HRP, Address};
pub use card::{CARD_URI_PREFIX, ContactCard, MAX_CARD_URI_BYTES, RelayInfo};
pub use device::{DeviceEntry, DeviceList, LinkAccept, LinkOffer, LinkRequest, MAX_DEVICES};
pub use envelope::{BUCKETS, Envelope, MAX_ENVELOPE_BYTES, MessageId, bucket_for, message_id};
pub use error::{CryptoError, Result};
pub use file::{ChunkId, ChunkList, FileKey, FileManifest, FileOpener, FileSealer};
pub use grant::{GrantScope, MAX_GRANT_BYTES, WriteGrant};
pub use identity::{Identity, MailboxId, MailboxKey, PublicIdentity};
pub use message::{
    INNER_ID_LEN, MAX_ATTACHMENTS, MAX_BODY_BYTES, MAX_INNER_BYTES, MAX_PAYLOAD_BYTES, MAX_REF_IDS,
};
pub use pb::{InnerKind, InnerMessage};
pub use receipt::{CustodyReceipt, MAX_BATCH_IDS, MailboxAck, Registration};
pub use relayed::RelayedEnvelope;
pub use session::{NOISE_PROLOGUE, NOISE_PROTOCOL, Opened, SessionPolicy, Sessions};

/// Re-exported so that callers name the same key types as this crate.
pub use ed25519_dalek;

// The node moves these between tasks and threads.
const _: fn() = || {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<Sessions>();
    send::<group::sender_key::GroupCipher>();
    send_sync::<Identity>();
    send_sync::<PublicIdentity>();
    send_sync::<ContactCard>();
    send_sync::<group::GroupLog>();
    send_sync::<group::Change>();
    send_sync::<DeviceList>();
    send_sync::<LinkOffer>();
    send_sync::<FileManifest>();
    send_sync::<ChunkList>();
    send_sync::<FileSealer>();
    send_sync::<FileOpener>();
};

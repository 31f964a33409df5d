//! Typed ids for the delivery core, where plain byte arrays of the same size were mixed up.

use std::fmt;

/// A user's Ed25519 identity key: who a conversation is with.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityKey(pub [u8; 32]);

/// A message's id inside the encryption: the same at sender and recipient, the dedup key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 16]);

/// One outbox entry (a message, a receipt or a handshake answer on its way out).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct OutboxId(pub(crate) [u8; 16]);

impl OutboxId {
    pub(crate) fn random() -> Self {
        Self(rand::random())
    }
}

impl MessageId {
    pub(crate) fn random() -> Self {
        Self(rand::random())
    }
}

macro_rules! hex_debug {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }
    )*};
}
hex_debug!(IdentityKey, MessageId, OutboxId);

impl IdentityKey {
    /// The user's `tim1…` address.
    pub fn address(&self) -> String {
        tokenim_crypto::Address::from_identity_key(self.0).to_string()
    }
}

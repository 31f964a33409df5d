//! Sealing inner messages into envelopes and putting them in the outbox.

use tokenim_crypto::{ContactCard, CryptoError, Envelope, InnerKind, InnerMessage};
use tokenim_store::OutboxRecord;
use tokio::time::Instant;

use super::Delivery;
use super::error::DeliveryError;
use super::ids::{IdentityKey, MessageId, OutboxId};

/// How long a write grant handed to a contact holds; every new session hands out a fresh one.
const GRANT_TTL_SECS: u64 = 365 * 24 * 3600;

impl Delivery {
    /// Seals `inner` on the session with `contact` (starting one if needed).
    pub(super) fn seal(
        &mut self,
        contact: &ContactCard,
        inner: &InnerMessage,
    ) -> Result<Envelope, DeliveryError> {
        let mailbox = *contact
            .mailboxes
            .first()
            .ok_or_else(|| DeliveryError::InvalidCard("contact card lists no mailbox".into()))?;
        let now = self.clock.now_secs();
        // The user writes texts: never evict this peer for a stranger.
        if inner.kind == InnerKind::Text as i32 {
            self.sessions
                .set_known(&contact.identity.identity_key, true);
        }
        let frame = self
            .sessions
            .seal(&self.me, &contact.identity, inner, now)
            .map_err(|e| match e {
                CryptoError::MessageTooLarge { size, max } => {
                    DeliveryError::MessageTooLarge { size, max }
                }
                other => DeliveryError::internal(other),
            })?;
        Ok(Envelope::new(
            mailbox,
            frame,
            now,
            self.settings.message_ttl_secs as u32,
        ))
    }

    /// This node's write grant for `peer` (a grant id of its own), sent with the card so that
    /// the peer can store at this node's home relays when they require grants.
    pub(super) fn grant_for(&self, peer: &IdentityKey) -> Vec<u8> {
        let expires_at = self.clock.now_secs() + GRANT_TTL_SECS;
        self.mailbox_key
            .contact_grant(&peer.0, expires_at)
            .to_bytes()
    }

    pub(super) fn outbox_record(
        &self,
        id: OutboxId,
        peer: IdentityKey,
        message_id: Option<MessageId>,
        envelope: &Envelope,
    ) -> OutboxRecord {
        let now = self.clock.now_ms();
        OutboxRecord {
            id: id.0,
            peer: peer.0,
            message_id: message_id.map(|m| m.0),
            envelope: prost::Message::encode_to_vec(envelope),
            attempts: 0,
            next_attempt_ms: now,
            expires_at_ms: now + self.settings.message_ttl_secs * 1000,
            created_at_ms: now,
        }
    }

    /// The session state to persist with whatever just advanced it.
    pub(super) fn session_bytes(
        &self,
        peer: &IdentityKey,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, DeliveryError> {
        self.sessions
            .peer_state(&peer.0)
            .ok_or_else(|| DeliveryError::internal("session state missing after seal/open"))
    }

    /// Whether another of the user's own messages fits the outbox.
    pub(super) fn own_room(&self) -> Result<(), DeliveryError> {
        if self.schedule.own_len() >= self.settings.max_outbox {
            return Err(DeliveryError::OutboxFull {
                queued: self.schedule.own_len(),
            });
        }
        Ok(())
    }

    /// Whether another entry owed to a contact fits (its own bound, apart from the user's).
    pub(super) fn owed_room(&self) -> Result<(), DeliveryError> {
        if self.schedule.owed_len() >= self.settings.max_outbox {
            return Err(DeliveryError::OutboxFull {
                queued: self.schedule.owed_len(),
            });
        }
        Ok(())
    }

    /// Seals a receipt or other control message and queues it; it is not a conversation entry.
    pub(super) fn queue_control(
        &mut self,
        contact: &ContactCard,
        inner: &InnerMessage,
    ) -> Result<(), DeliveryError> {
        self.owed_room()?;
        let envelope = self.seal(contact, inner)?;
        let peer = IdentityKey(contact.identity.identity_key);
        let outbox_id = OutboxId::random();
        let outbox = self.outbox_record(outbox_id, peer, None, &envelope);
        let session = self.session_bytes(&peer)?;
        self.store
            .txn()
            .put_outbox(&outbox)
            .put_session(&peer.0, &session)
            .commit()?;
        self.schedule.add(outbox_id, Instant::now(), false);
        self.metrics.outbox_depth.set(self.schedule.len() as i64);
        Ok(())
    }
}

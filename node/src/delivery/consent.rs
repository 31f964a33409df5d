//! Contact consent. A stranger's messages wait as a *message request*, bounded in count and
//! bytes, until the user accepts, blocks or deletes it. Nothing goes back to a stranger — no
//! handshake answer, no receipt, no dial (which would also reveal the user's address) — so
//! writing to a user costs the writer, never the user's outbox, session table or disk beyond
//! these bounds. A blocked peer's messages are dropped unread.

use tokenim_crypto::InnerKind;
use tokenim_store::{ContactRecord, ContactState, MessageRecord, StoreError, Txn};
use tracing::debug;

use super::Delivery;
use super::error::DeliveryError;
use super::ids::{IdentityKey, MessageId};
use super::requests::{Admit, Consent};
use crate::event::NodeEvent;

/// Most messages of one conversation looked at when releasing or deleting held ones (a
/// request holds at most `max_messages`, newest first).
const HELD_SCAN: usize = 1000;

impl Delivery {
    /// Rebuilds the pending requests and purges expired ones; at start.
    pub(super) fn load_requests(&mut self) -> Result<(), StoreError> {
        for c in self.store.list_contacts()? {
            if c.state == ContactState::Request {
                let peer = IdentityKey(c.identity_key);
                let held = self.held_messages(&peer)?;
                let last_seen = held
                    .first()
                    .map_or(c.updated_at, |m| m.received_at_ms / 1000);
                self.requests.load(peer, &held, last_seen);
            }
        }
        self.purge_requests()
    }

    /// Deletes requests that saw no message within the TTL.
    fn purge_requests(&mut self) -> Result<(), StoreError> {
        let now = self.clock.now_secs();
        for peer in self.requests.expired(now, self.settings.requests.ttl_secs) {
            debug!("purging an unanswered message request");
            let store = self.store.clone();
            self.forget_txn(&peer, store.txn())?.commit()?;
            self.requests.remove(&peer);
        }
        Ok(())
    }

    /// Where `peer` stands; `None` for a stranger never seen.
    pub(super) fn standing(
        &self,
        peer: &IdentityKey,
    ) -> Result<Option<ContactRecord>, DeliveryError> {
        Ok(self.store.get_contact(&peer.0)?)
    }

    /// A text from a stranger or a pending request: held if the limits let it in, with the
    /// least recent request deleted to make room. The held record, `None` when dropped.
    pub(super) fn hold_request<'s>(
        &mut self,
        mut record: MessageRecord,
        txn: Txn<'s>,
    ) -> Result<(Txn<'s>, Option<MessageRecord>), DeliveryError> {
        let peer = IdentityKey(record.from);
        let now = self.clock.now_secs();
        let limits = self.settings.requests;
        let txn = match self
            .requests
            .admit(peer, record.body.len() as u64, now, &limits)
        {
            Admit::Full => {
                self.metrics.requests_dropped.inc();
                return Ok((txn, None));
            }
            Admit::Hold { evict: None } => txn,
            Admit::Hold { evict: Some(old) } => {
                self.metrics.requests_dropped.inc();
                self.forget_txn(&old, txn)?
            }
        };
        self.metrics.requests.set(self.requests.len() as i64);
        record.held = true;
        Ok((txn.put_message(&record), Some(record)))
    }

    /// Whether `peer` is a contact (only contacts are answered and receipted).
    pub(super) fn is_contact(&self, peer: &IdentityKey) -> bool {
        matches!(self.standing(peer), Ok(Some(c)) if c.state == ContactState::Accepted)
    }

    /// Carries out the user's decision about `peer` and tells the account's other devices;
    /// the record as it now stands.
    pub(super) fn consent(
        &mut self,
        peer: IdentityKey,
        consent: Consent,
    ) -> Result<Option<ContactRecord>, DeliveryError> {
        let record = self.apply_consent(peer, consent.clone())?;
        self.sync_contact(peer, &consent, record.as_ref());
        Ok(record)
    }

    /// Carries out a decision about `peer` (the user's, here or on another device).
    pub(super) fn apply_consent(
        &mut self,
        peer: IdentityKey,
        consent: Consent,
    ) -> Result<Option<ContactRecord>, DeliveryError> {
        let existing = self.standing(&peer)?;
        let now = self.clock.now_secs();
        let mut record = existing.clone().unwrap_or_else(|| ContactRecord {
            identity_key: peer.0,
            name: None,
            card_uri: String::new(),
            added_at: now,
            updated_at: now,
            state: ContactState::Request,
            write_grant: Vec::new(),
            device_cards: Vec::new(),
        });
        record.updated_at = now;
        let result = match consent {
            Consent::Accept { name } => {
                if existing.is_none() {
                    return Err(DeliveryError::UnknownContact(peer.address()));
                }
                record.name = name.or(record.name);
                record.state = ContactState::Accepted;
                self.accept_request(peer, &record)?;
                Some(record)
            }
            Consent::Block => {
                record.state = ContactState::Blocked;
                let store = self.store.clone();
                let txn = self.drop_session(&peer, store.txn());
                self.delete_held(&peer, txn)?
                    .put_contact(&record)
                    .commit()?;
                Some(record)
            }
            Consent::Unblock => match existing {
                Some(c) if c.state == ContactState::Blocked && c.name.is_some() => {
                    record.state = ContactState::Accepted;
                    self.store.put_contact(&record)?;
                    self.sessions.set_known(&peer.0, true);
                    Some(record)
                }
                Some(c) if c.state == ContactState::Blocked => {
                    self.store.delete_contact(&peer.0)?;
                    None
                }
                _ => return Err(DeliveryError::UnknownContact(peer.address())),
            },
            Consent::Forget => {
                if existing.is_none() {
                    return Err(DeliveryError::UnknownContact(peer.address()));
                }
                let store = self.store.clone();
                self.forget_txn(&peer, store.txn())?.commit()?;
                None
            }
        };
        self.requests.remove(&peer);
        self.metrics.requests.set(self.requests.len() as i64);
        Ok(result)
    }

    /// Makes `record` a contact: held messages join the conversation, announced and receipted.
    fn accept_request(
        &mut self,
        peer: IdentityKey,
        record: &ContactRecord,
    ) -> Result<(), DeliveryError> {
        let mut released = self.held_messages(&peer)?;
        let mut txn = self.store.txn().put_contact(record);
        for m in &mut released {
            m.held = false;
            txn = txn.put_message(m);
        }
        txn.commit()?;
        self.sessions.set_known(&peer.0, true);
        let ids: Vec<MessageId> = released.iter().map(|m| MessageId(m.id)).collect();
        for chunk in ids.chunks(tokenim_crypto::MAX_REF_IDS) {
            self.send_receipt(peer, None, InnerKind::DeliveryReceipt, chunk);
        }
        for m in released {
            self.events.emit(NodeEvent::Message(m));
        }
        Ok(())
    }

    fn held_messages(&self, peer: &IdentityKey) -> Result<Vec<MessageRecord>, StoreError> {
        let (all, _) = self.store.list_messages(Some(&peer.0), HELD_SCAN, None)?;
        Ok(all.into_iter().filter(|m| m.held).collect())
    }

    fn delete_held<'s>(&self, peer: &IdentityKey, mut txn: Txn<'s>) -> Result<Txn<'s>, StoreError> {
        for m in self.held_messages(peer)? {
            txn = txn.delete_message(&m.id);
        }
        Ok(txn)
    }

    /// Forgets a peer's session, in memory and on disk.
    fn drop_session<'s>(&mut self, peer: &IdentityKey, txn: Txn<'s>) -> Txn<'s> {
        self.sessions.forget_peer(&peer.0);
        self.sessions.set_known(&peer.0, false);
        txn.delete_session(&peer.0)
    }

    /// Adds the deletion of everything kept about `peer` but its conversation history.
    fn forget_txn<'s>(&mut self, peer: &IdentityKey, txn: Txn<'s>) -> Result<Txn<'s>, StoreError> {
        let txn = self.drop_session(peer, txn);
        Ok(self.delete_held(peer, txn)?.delete_contact(&peer.0))
    }
}

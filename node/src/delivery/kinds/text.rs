//! Text messages: the conversation entries users write.

use tokenim_crypto::{InnerKind, InnerMessage};
use tokenim_store::{ContactState, Direction, MessageRecord, MessageState, Txn};
use tokio::time::Instant;
use tracing::{debug, debug_span};

use crate::delivery::Delivery;
use crate::delivery::error::DeliveryError;
use crate::delivery::ids::{IdentityKey, MessageId, OutboxId};
use crate::delivery::inbox::Inbound;
use crate::event::NodeEvent;

/// How long a message id stays in the dedup set after it was first seen.
const SEEN_TTL_SECS: u64 = 30 * 24 * 3600;
/// Late frames (behind the replay window) must be this much younger than the seen-id memory.
const SEEN_MARGIN_SECS: u64 = 24 * 3600;

impl Delivery {
    pub(in crate::delivery) async fn send_text(
        &mut self,
        to: IdentityKey,
        body: String,
        attachments: Vec<Vec<u8>>,
    ) -> Result<MessageRecord, DeliveryError> {
        self.own_room()?;
        match self.standing(&to)?.map(|c| c.state) {
            Some(ContactState::Accepted) => {}
            Some(ContactState::Request) => {
                return Err(DeliveryError::NotAContact(format!(
                    "{} wrote a message request: accept it before writing back",
                    to.address()
                )));
            }
            Some(ContactState::Blocked) => {
                return Err(DeliveryError::NotAContact(format!(
                    "{} is blocked",
                    to.address()
                )));
            }
            None => return Err(DeliveryError::UnknownContact(to.address())),
        }
        // Refused before sealing advances the session (the commit below checks again).
        self.store.ensure_space(body.len() as u64)?;
        let contact = self.cards.contact(&self.store, &to)?;
        // The recipient learns our card from the first messages of a session, and again when it
        // changed (a new device list, new addresses); otherwise it only costs bytes.
        let mine = self.my_card().await?;
        let changed = self.cards.send_to(to, &mine);
        let (sender_card, write_grant) = if !self.sessions.has_send_session(&to.0) {
            (mine, self.grant_for(&to))
        } else if changed {
            (mine, Vec::new())
        } else {
            (String::new(), Vec::new())
        };
        // With the card go the cards of this account's other devices, when they fit.
        let payload = if sender_card.is_empty() {
            Vec::new()
        } else {
            Some(self.device_cards_payload())
                .filter(|p| {
                    let attached: usize = attachments.iter().map(Vec::len).sum();
                    p.len() + body.len() + attached <= tokenim_crypto::MAX_BODY_BYTES
                })
                .unwrap_or_default()
        };
        let id = MessageId::random();
        let _span = debug_span!("send", msg = %id).entered();
        let sent_at_ms = self.clock.now_ms();
        let mut inner = InnerMessage {
            kind: InnerKind::Text as i32,
            id: id.0.to_vec(),
            body: body.clone(),
            ref_ids: Vec::new(),
            sent_at_ms,
            sender_card,
            write_grant,
            payload,
            attachments,
        };
        let envelope = self.seal(&contact, &inner)?;
        // The same text for each of the contact's other devices, sealed to each.
        inner.write_grant.clear();
        let mut copies = Vec::new();
        for device in self.devices_of(&to) {
            let key = IdentityKey(device.identity.identity_key);
            match self.seal(&device, &inner) {
                Ok(e) => copies.push((key, e)),
                Err(e) => debug!(error = %e, "cannot seal for a contact's device"),
            }
        }
        tracing::debug!(envelope = %hex::encode(&envelope.id()[..8]), "sealed");
        let record = MessageRecord {
            id: id.0,
            conversation: to.0,
            direction: Direction::Outgoing,
            from: self.me.public().identity_key,
            to: to.0,
            kind: InnerKind::Text as u32,
            body,
            sent_at_ms,
            received_at_ms: sent_at_ms,
            state: MessageState::Queued,
            relays: 0,
            envelope_id: Some(envelope.id()),
            updated_at_ms: sent_at_ms,
            held: false,
            group: false,
            reached: 0,
            delivered_to: 0,
            read_by: 0,
        };
        // A message's outbox entry shares its id.
        let outbox_id = OutboxId(id.0);
        let outbox = self.outbox_record(outbox_id, to, Some(id), &envelope);
        let session = self.session_bytes(&to)?;
        let mut txn = self
            .store
            .txn()
            .put_message(&record)
            .put_outbox(&outbox)
            .put_session(&to.0, &session);
        let mut copy_ids = Vec::new();
        for (device, e) in &copies {
            let copy_id = OutboxId::random();
            txn = txn
                .put_outbox(&self.outbox_record(copy_id, *device, Some(id), e))
                .put_session(&device.0, &self.session_bytes(device)?);
            copy_ids.push(copy_id);
        }
        txn.commit_durable()?;
        self.metrics.messages_sent.inc();
        self.schedule.add(outbox_id, Instant::now(), true);
        for copy_id in copy_ids {
            self.schedule.add(copy_id, Instant::now(), true);
        }
        self.metrics.outbox_depth.set(self.schedule.len() as i64);
        self.events.emit(NodeEvent::Message(record.clone()));
        self.sync_sent(&record, false);
        Ok(record)
    }

    /// A received text: stored once per inner id, announced, and receipted when it came
    /// through a relay. Returns the transaction and whether it was a duplicate.
    pub(in crate::delivery) fn accept_text<'s>(
        &mut self,
        peer: IdentityKey,
        mut inner: InnerMessage,
        late: bool,
        via_relay: bool,
        inbound: &mut Inbound<'_>,
        txn: Txn<'s>,
    ) -> Result<(Txn<'s>, bool), DeliveryError> {
        let id = MessageId(
            inner
                .id
                .as_slice()
                .try_into()
                .map_err(|_| DeliveryError::Invalid("message id must be 16 bytes".into()))?,
        );
        let now_secs = self.clock.now_secs();
        // A late frame escaped the replay window: its inner id is the only dedup, so it must be
        // younger than the seen-id memory.
        let too_old = late && inner.sent_at_ms / 1000 + SEEN_TTL_SECS < now_secs + SEEN_MARGIN_SECS;
        if too_old || inbound.seen.contains(&(peer, id)) || self.store.is_seen(&peer.0, &id.0)? {
            return Ok((txn, true));
        }
        let now = self.clock.now_ms();
        let attachments = std::mem::take(&mut inner.attachments);
        let record = MessageRecord {
            id: id.0,
            conversation: peer.0,
            direction: Direction::Incoming,
            from: peer.0,
            to: self.me.public().identity_key,
            kind: InnerKind::Text as u32,
            body: inner.body,
            sent_at_ms: inner.sent_at_ms,
            received_at_ms: now,
            state: MessageState::Received,
            relays: 0,
            envelope_id: None,
            updated_at_ms: now,
            held: false,
            group: false,
            reached: 0,
            delivered_to: 0,
            read_by: 0,
        };
        let txn = txn.mark_seen(&peer.0, &id.0, now_secs + SEEN_TTL_SECS);
        inbound.seen.insert((peer, id));
        if inbound.requesters.contains(&peer) {
            // A stranger's text waits as a request: no receipt, announced as a request.
            let (txn, held) = self.hold_request(record, txn)?;
            let Some(record) = held else {
                return Ok((txn, false)); // the request is full: dropped, and counted
            };
            inbound.held.insert(peer);
            if self.events.listening() {
                inbound.events.push(NodeEvent::MessageRequest(record));
            }
            return Ok((txn, false));
        }
        let txn = txn.put_message(&record);
        let txn = self.offer_files(peer, None, id.0, &attachments, inbound, txn);
        self.metrics.messages_received.inc();
        // A message that came through a relay gets an end-to-end delivery receipt.
        if via_relay {
            inbound.receipts.entry((peer, None)).or_default().push(id);
        }
        // Events are for apps listening; a drain with none builds none.
        if self.events.listening() {
            inbound.events.push(NodeEvent::Message(record));
        }
        Ok((txn, false))
    }
}

//! Between one account's own devices: what one of them sent shows as sent on the others, and
//! what one read is read on all. Sync messages are E2E messages like any other (relays cannot
//! tell them apart).

use prost::Message as _;
use tokenim_crypto::pb::{SyncRead, SyncSent};
use tokenim_crypto::{InnerKind, InnerMessage};
use tokenim_store::{Direction, MessageRecord, MessageState, Txn};
use tracing::debug;

use crate::delivery::Delivery;
use crate::delivery::ids::{IdentityKey, MessageId};
use crate::delivery::inbox::Inbound;
use crate::event::NodeEvent;

impl Delivery {
    /// Tells this account's other devices about a text this device sent (`relay`: asks the
    /// first device to send it to the group).
    pub(in crate::delivery) fn sync_sent(&mut self, m: &MessageRecord, relay: bool) {
        let payload = SyncSent {
            peer: m.conversation.to_vec(),
            id: m.id.to_vec(),
            body: m.body.clone(),
            sent_at_ms: m.sent_at_ms,
            group: m.group,
            relay,
        };
        self.tell_own_devices(InnerKind::SyncSent, payload.encode_to_vec());
    }

    /// Tells this account's other devices that this one read message `id`.
    pub(in crate::delivery) fn sync_read(&mut self, id: [u8; 16]) {
        let payload = SyncRead {
            ids: vec![id.to_vec()],
        };
        self.tell_own_devices(InnerKind::SyncRead, payload.encode_to_vec());
    }

    /// Queues a sync message to each other device of this account this node can reach.
    pub(in crate::delivery) fn tell_own_devices(&mut self, kind: InnerKind, payload: Vec<u8>) {
        let devices = self.devices.own_devices();
        if devices.is_empty() {
            return;
        }
        let inner = super::group::control(kind, payload, "", self.clock.now_ms());
        for card in devices {
            if let Err(e) = self.queue_control(&card, &inner) {
                debug!(error = %e, ?kind, "cannot tell another device");
            }
        }
    }

    /// Another device of this account read these messages: read here too (its read receipt
    /// went already).
    pub(in crate::delivery) fn accept_sync_read<'s>(
        &mut self,
        inner: &InnerMessage,
        inbound: &mut Inbound<'_>,
        mut txn: Txn<'s>,
    ) -> Txn<'s> {
        let Ok(read) = SyncRead::decode(inner.payload.as_slice()) else {
            debug!("a sync message does not decode");
            return txn;
        };
        let now = self.clock.now_ms();
        for id in read.ids.iter().take(tokenim_crypto::MAX_REF_IDS) {
            let Ok(id) = <[u8; 16]>::try_from(id.as_slice()) else {
                continue;
            };
            if let Ok(Some(mut m)) = self.store.get_message(&id)
                && m.direction == Direction::Incoming
                && m.state != MessageState::Read
            {
                m.state = MessageState::Read;
                m.updated_at_ms = now;
                txn = txn.put_message(&m);
                // A linked device does not speak in groups: the first device receipts for it.
                if m.group && !self.devices.is_linked() {
                    let group = m.conversation;
                    let peer = IdentityKey(m.from);
                    self.send_receipt(peer, Some(&group), InnerKind::ReadReceipt, &[MessageId(id)]);
                }
                inbound.events.push(NodeEvent::MessageState(m));
            }
        }
        txn
    }

    /// Another device of this account sent a text: it shows here as sent.
    pub(in crate::delivery) fn accept_sync_sent<'s>(
        &mut self,
        inner: &InnerMessage,
        inbound: &mut Inbound<'_>,
        txn: Txn<'s>,
    ) -> Txn<'s> {
        let Ok(sent) = SyncSent::decode(inner.payload.as_slice()) else {
            debug!("a sync message does not decode");
            return txn;
        };
        let (Ok(peer), Ok(id)) = (
            <[u8; 32]>::try_from(sent.peer.as_slice()),
            <[u8; 16]>::try_from(sent.id.as_slice()),
        ) else {
            return txn;
        };
        if sent.body.len() > tokenim_crypto::MAX_BODY_BYTES
            || self.store.get_message(&id).ok().flatten().is_some()
        {
            return txn;
        }
        if sent.relay && sent.group && !self.devices.is_linked() {
            // A linked device's group text: sent from here for the account.
            if let Err(e) =
                self.send_group_as(peer, sent.body, MessageId(id), sent.sent_at_ms, Vec::new())
            {
                debug!(error = %e, "cannot send a linked device's group text");
            }
            return txn;
        }
        let now = self.clock.now_ms();
        let account = self
            .devices
            .list()
            .map_or(self.me.public().identity_key, |l| l.account());
        let record = MessageRecord {
            id,
            conversation: peer,
            direction: Direction::Outgoing,
            from: account,
            to: peer,
            kind: InnerKind::Text as u32,
            body: sent.body,
            sent_at_ms: sent.sent_at_ms,
            received_at_ms: now,
            state: MessageState::Sent,
            relays: 0,
            envelope_id: None,
            updated_at_ms: now,
            held: false,
            group: sent.group,
            reached: 0,
            delivered_to: 0,
            read_by: 0,
        };
        debug!(peer = %IdentityKey(peer).address(), "sent on another device");
        inbound.events.push(NodeEvent::Message(record.clone()));
        txn.put_message(&record)
    }
}

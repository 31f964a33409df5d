//! Delivery and read receipts: end-to-end reports that move a sent message's state forward.

use tokenim_crypto::{InnerKind, InnerMessage};
use tokenim_store::{Direction, MessageRecord, MessageState, Txn};
use tracing::debug;

use crate::delivery::Delivery;
use crate::delivery::error::DeliveryError;
use crate::delivery::ids::{IdentityKey, MessageId};
use crate::delivery::inbox::Inbound;
use crate::delivery::outcome::state_rank;
use crate::event::NodeEvent;

impl Delivery {
    pub(in crate::delivery) fn mark_read(
        &mut self,
        id: MessageId,
    ) -> Result<MessageRecord, DeliveryError> {
        let record = self
            .store
            .get_message(&id.0)?
            .ok_or_else(|| DeliveryError::NotFound(format!("message {id}")))?;
        if record.direction != Direction::Incoming || record.state == MessageState::Read {
            return Ok(record);
        }
        let peer = IdentityKey(record.from);
        let updated = self
            .store
            .set_message_state(&id.0, MessageState::Read, None)?
            .unwrap_or(record);
        self.events.emit(NodeEvent::MessageState(updated.clone()));
        // Reading a request tells its sender nothing; a co-member of a group hears of it (from
        // the account's first device).
        if updated.group {
            let group = updated.conversation;
            let member = self
                .groups
                .get(&group)
                .is_some_and(|g| g.log.role_of(&peer.0).is_some());
            if member && !self.devices.is_linked() {
                self.send_receipt(peer, Some(&group), InnerKind::ReadReceipt, &[id]);
            }
            self.sync_read(id.0);
        } else if self.is_contact(&peer) {
            self.send_receipt(peer, None, InnerKind::ReadReceipt, &[id]);
            self.sync_read(id.0);
        }
        Ok(updated)
    }

    /// Queues a delivery or read receipt for `ids` to `peer` (a co-member of `group` is
    /// reached by the group's card). Best effort: without the peer's card there is no route
    /// back, and a lost receipt only leaves a state behind.
    pub(in crate::delivery) fn send_receipt(
        &mut self,
        peer: IdentityKey,
        group: Option<&[u8; 32]>,
        kind: InnerKind,
        ids: &[MessageId],
    ) {
        let ids: Vec<[u8; 16]> = ids.iter().map(|m| m.0).collect();
        let receipt = InnerMessage::receipt(kind, rand::random(), &ids, self.clock.now_ms());
        let Some(card) = self.route_card(&peer, group) else {
            debug!("no card for a receipt");
            return;
        };
        if let Err(e) = self.queue_control(&card, &receipt) {
            debug!(error = %e, "cannot queue a receipt");
        }
    }

    /// A receipt from `peer`: the messages it names move forward, if `peer` received them.
    pub(in crate::delivery) fn accept_receipt<'s>(
        &mut self,
        peer: IdentityKey,
        kind: InnerKind,
        inner: &InnerMessage,
        inbound: &mut Inbound<'_>,
        mut txn: Txn<'s>,
    ) -> Txn<'s> {
        let state = if kind == InnerKind::ReadReceipt {
            MessageState::Read
        } else {
            MessageState::Delivered
        };
        for rid in &inner.ref_ids {
            let Ok(rid) = <[u8; 16]>::try_from(rid.as_slice()).map(MessageId) else {
                continue;
            };
            // A receipt earlier in this batch may have moved it already.
            let current = match inbound.outgoing.get(&rid) {
                Some(m) => Some(m.clone()),
                None => self.store.get_message(&rid.0).ok().flatten(),
            };
            if let Some(m) = current.clone()
                && m.group
                && m.direction == Direction::Outgoing
            {
                txn = self.accept_member_receipt(peer, state, m, inbound, txn);
                continue;
            }
            // Only the recipient of a message may report on it.
            if let Some(mut m) = current
                && m.direction == Direction::Outgoing
                && m.to == peer.0
                && state_rank(m.state) < state_rank(state)
            {
                m.state = state;
                m.updated_at_ms = self.clock.now_ms();
                txn = txn.put_message(&m);
                inbound.events.push(NodeEvent::MessageState(m.clone()));
                inbound.outgoing.insert(rid, m);
            }
        }
        txn
    }
}

//! Where a sent group message stands with each member: the member's node took it, a relay holds
//! it for the member, the member's node reported it delivered, the member read it. One row per
//! member in the store, and counts on the message for listings. Members' receipts come back
//! over the 1:1 session, routed by the group's cards when the two are not contacts.

use tokenim_store::{MemberState, MessageRecord, MessageState, Txn};

use crate::delivery::Delivery;
use crate::delivery::ids::{IdentityKey, MessageId};
use crate::delivery::inbox::Inbound;
use crate::delivery::outcome::state_rank;
use crate::event::NodeEvent;

/// Moves the counts of `m` for one member going from `before` to `after`; false when that is
/// not a step forward. The message's own state is the furthest any member got.
fn tally(m: &mut MessageRecord, before: Option<MessageState>, after: MessageState) -> bool {
    let from = before.map_or(0, state_rank);
    let to = state_rank(after);
    if to <= from {
        return false;
    }
    let crossed = |s: MessageState| from < state_rank(s) && to >= state_rank(s);
    if crossed(MessageState::Stored) {
        m.reached = m.reached.saturating_add(1);
    }
    if crossed(MessageState::Delivered) {
        m.delivered_to = m.delivered_to.saturating_add(1);
    }
    if crossed(MessageState::Read) {
        m.read_by = m.read_by.saturating_add(1);
    }
    if after != MessageState::Failed && state_rank(m.state) < to {
        m.state = after;
    }
    true
}

impl Delivery {
    /// Moves `member`'s state of the group message `m` to `state` (when that is forward) in
    /// `txn`; whether it moved.
    pub(in crate::delivery) fn advance_member<'s>(
        &self,
        m: &mut MessageRecord,
        member: [u8; 32],
        before: Option<MessageState>,
        state: MessageState,
        txn: Txn<'s>,
    ) -> (Txn<'s>, bool) {
        if !tally(m, before, state) {
            return (txn, false);
        }
        let at_ms = self.clock.now_ms();
        m.updated_at_ms = at_ms;
        let row = MemberState {
            member,
            state,
            at_ms,
        };
        (txn.put_member_state(&m.id, &row).put_message(m), true)
    }

    /// A member's receipt for a group message this node sent: taken from those it was sent
    /// to (each has a row from the start), members or removed since.
    pub(in crate::delivery) fn accept_member_receipt<'s>(
        &mut self,
        peer: IdentityKey,
        state: MessageState,
        mut m: MessageRecord,
        inbound: &mut Inbound<'_>,
        txn: Txn<'s>,
    ) -> Txn<'s> {
        let id = MessageId(m.id);
        let before = match inbound.member_states.get(&(id, peer)) {
            Some(s) => Some(*s),
            None => self
                .store
                .member_state(&m.id, &peer.0)
                .ok()
                .flatten()
                .map(|r| r.state),
        };
        if before.is_none() {
            return txn;
        }
        let (txn, moved) = self.advance_member(&mut m, peer.0, before, state, txn);
        if moved {
            inbound.member_states.insert((id, peer), state);
            inbound.events.push(NodeEvent::MessageState(m.clone()));
            inbound.outgoing.insert(id, m);
        }
        txn
    }
}

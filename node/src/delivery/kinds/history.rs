//! The history hand-off: when the user asked for it with the link, the account's first device
//! sends a device it just linked its recent messages, in parts of E2E messages through the
//! outbox (so a restart of either side loses nothing), and both sides report progress.

use prost::Message as _;
use tokenim_crypto::pb::{SyncHistory, SyncedMessage};
use tokenim_crypto::{ContactCard, InnerKind, InnerMessage};
use tokenim_store::{Cursor, Direction, MessageRecord, MessageState, Txn};
use tracing::debug;

use crate::delivery::Delivery;
use crate::delivery::devices::HistoryScope;
use crate::delivery::error::DeliveryError;
use crate::delivery::ids::IdentityKey;
use crate::delivery::inbox::Inbound;
use crate::event::NodeEvent;

/// Bytes of messages per part, well inside one message's payload.
const PART_BYTES: usize = 40 * 1024;
/// Messages read from the store at a time.
const PAGE: usize = 256;
/// The most messages one hand-off carries.
const MAX_HISTORY_MESSAGES: u32 = 100_000;

fn state_number(s: MessageState) -> u32 {
    MessageState::ALL.iter().position(|x| *x == s).unwrap_or(0) as u32
}

fn synced(m: &MessageRecord) -> SyncedMessage {
    SyncedMessage {
        id: m.id.to_vec(),
        conversation: m.conversation.to_vec(),
        outgoing: m.direction == Direction::Outgoing,
        from: m.from.to_vec(),
        body: m.body.clone(),
        sent_at_ms: m.sent_at_ms,
        received_at_ms: m.received_at_ms,
        group: m.group,
        state: state_number(m.state),
    }
}

impl Delivery {
    /// The messages `scope` names, oldest first.
    fn history(&self, scope: HistoryScope) -> Result<Vec<MessageRecord>, DeliveryError> {
        let since_ms = self
            .clock
            .now_ms()
            .saturating_sub(u64::from(scope.days) * 86_400_000);
        let limit = scope.messages.min(MAX_HISTORY_MESSAGES) as usize;
        let mut out = Vec::new();
        let mut cursor: Option<Cursor> = None;
        'pages: loop {
            let (page, next) = self.store.list_messages(None, PAGE, cursor.as_ref())?;
            for m in page {
                if m.received_at_ms < since_ms || out.len() >= limit {
                    break 'pages;
                }
                if m.kind == InnerKind::Text as u32 {
                    out.push(m);
                }
            }
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        out.reverse();
        Ok(out)
    }

    /// On the first device: queues the history `scope` names for `device`, in parts.
    pub(in crate::delivery) fn hand_over_history(
        &mut self,
        device: &ContactCard,
        scope: HistoryScope,
    ) {
        if scope.is_empty() {
            return;
        }
        let messages = match self.history(scope) {
            Ok(m) => m,
            Err(e) => {
                debug!(error = %e, "cannot read the history to hand over");
                return;
            }
        };
        let total = u32::try_from(messages.len()).unwrap_or(u32::MAX);
        let key = device.identity.identity_key;
        let mut part = SyncHistory::default();
        let mut done = 0u32;
        let mut parts = Vec::new();
        for m in &messages {
            let s = synced(m);
            if !part.messages.is_empty() && part.encoded_len() + s.encoded_len() + 8 > PART_BYTES {
                parts.push(std::mem::take(&mut part));
            }
            part.messages.push(s);
        }
        if !part.messages.is_empty() {
            parts.push(part);
        }
        for mut p in parts {
            done += p.messages.len() as u32;
            p.done = done;
            p.total = total;
            let inner = super::group::control(
                InnerKind::SyncHistory,
                p.encode_to_vec(),
                "",
                self.clock.now_ms(),
            );
            if let Err(e) = self.queue_control(device, &inner) {
                debug!(error = %e, "history hand-off stopped");
                return;
            }
            self.events.emit(NodeEvent::SyncProgress {
                device: key,
                done,
                total,
                receiving: false,
            });
        }
    }

    /// On a linked device: a part of the history its first device hands over.
    pub(in crate::delivery) fn accept_sync_history<'s>(
        &mut self,
        from: IdentityKey,
        inner: &InnerMessage,
        inbound: &mut Inbound<'_>,
        mut txn: Txn<'s>,
    ) -> Txn<'s> {
        let Ok(part) = SyncHistory::decode(inner.payload.as_slice()) else {
            debug!("a history part does not decode");
            return txn;
        };
        let me = self.group_me();
        let now = self.clock.now_ms();
        for m in part.messages {
            let (Ok(id), Ok(conversation), Ok(sender)) = (
                <[u8; 16]>::try_from(m.id.as_slice()),
                <[u8; 32]>::try_from(m.conversation.as_slice()),
                <[u8; 32]>::try_from(m.from.as_slice()),
            ) else {
                continue;
            };
            if m.body.len() > tokenim_crypto::MAX_BODY_BYTES
                || self.store.get_message(&id).ok().flatten().is_some()
            {
                continue;
            }
            let state = MessageState::ALL
                .get(m.state as usize)
                .copied()
                .unwrap_or(MessageState::Received);
            let record = MessageRecord {
                id,
                conversation,
                direction: if m.outgoing {
                    Direction::Outgoing
                } else {
                    Direction::Incoming
                },
                from: sender,
                to: if m.outgoing { conversation } else { me },
                kind: InnerKind::Text as u32,
                body: m.body,
                sent_at_ms: m.sent_at_ms,
                received_at_ms: m.received_at_ms,
                state,
                relays: 0,
                envelope_id: None,
                updated_at_ms: now,
                held: false,
                group: m.group,
                reached: 0,
                delivered_to: 0,
                read_by: 0,
            };
            txn = txn.put_message(&record);
        }
        inbound.events.push(NodeEvent::SyncProgress {
            device: from.0,
            done: part.done,
            total: part.total,
            receiving: true,
        });
        txn
    }
}

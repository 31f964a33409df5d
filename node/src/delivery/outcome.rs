//! Settling a delivery attempt: delivered, stored by relays, retried with backoff, resealed
//! on a fresh session, or failed. States only move forward.

use tokenim_crypto::InnerMessage;
use tokenim_store::{MessageState, OutboxRecord};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{Delivery, FIRST_RETRY};

/// Retries, a second apart, of a group frame a member cannot open yet, before the usual
/// backoff: its sender key normally arrives within a second.
const GROUP_KEY_WAITS: u32 = 20;
use super::attempt::{Attempt, Outcome};
use super::ids::{IdentityKey, OutboxId};
use crate::event::NodeEvent;
use crate::net::DeliverError;
use crate::net::wire::{self, RejectCode, pb};

impl Delivery {
    pub(super) fn on_attempt(&mut self, a: Attempt) {
        self.schedule.finished(&a.peer);
        let Ok(Some(entry)) = self.store.get_outbox(&a.outbox_id.0) else {
            return;
        };
        let result = match a.outcome {
            Outcome::Relayed(receipts) if !receipts.is_empty() => {
                self.stored(&entry, receipts.len() as u32);
                return;
            }
            Outcome::Relayed(_) => Err(DeliverError::Unreachable("no relay stored it".into())),
            Outcome::Direct(result) => result,
        };
        let rejected = match result {
            Ok(wire::Response {
                kind: Some(pb::response::Kind::Accepted(_)),
            }) => {
                self.delivered(&entry);
                return;
            }
            Ok(wire::Response {
                kind: Some(pb::response::Kind::Rejected(r)),
            }) => Some(r),
            // An answer that does not belong to `deliver`: treat like no answer.
            Ok(_) => None,
            Err(DeliverError::ShuttingDown) => return,
            Err(DeliverError::Unreachable(reason)) => {
                debug!(%reason, "peer unreachable; will retry");
                None
            }
        };
        if let Some(r) = &rejected {
            let code = RejectCode::try_from(r.code).unwrap_or(RejectCode::Unspecified);
            match code {
                RejectCode::Undecryptable => {
                    self.reseal(entry, &r.detail);
                    return;
                }
                RejectCode::Malformed | RejectCode::TooLarge | RejectCode::UnknownMailbox => {
                    warn!(code = ?code, detail = %r.detail, "delivery rejected permanently");
                    self.fail(&entry);
                    return;
                }
                RejectCode::StorageFull => {
                    debug!(
                        wait = r.retry_after_secs,
                        "recipient's disk full; will retry"
                    );
                    let wait = std::time::Duration::from_secs(r.retry_after_secs.into());
                    self.retry_later_at_least(entry, wait);
                    return;
                }
                _ => {}
            }
        }
        self.retry_later(entry);
    }

    /// The recipient could not open the frame: the session it was sealed on is gone at its end
    /// (it dropped old receive sessions, or lost its state). Start a fresh handshake and seal
    /// the message again with the same inner id, so the recipient still shows it once.
    fn reseal(&mut self, mut entry: OutboxRecord, detail: &str) {
        let peer = IdentityKey(entry.peer);
        let message = entry
            .message_id
            .and_then(|id| self.store.get_message(&id).ok().flatten());
        if message.as_ref().is_some_and(|m| m.group) {
            // A group frame the member cannot open yet (its sender key is on its way): the
            // same frame is tried again soon (the key usually follows within a second), never
            // resealed 1:1; after a while, with the usual backoff.
            if entry.attempts < GROUP_KEY_WAITS {
                self.retry_soon(entry);
            } else {
                self.retry_later(entry);
            }
            return;
        }
        self.sessions.reset_send(&peer.0);
        let Some(message) = message else {
            // Receipts and handshake responses keep no plaintext to reseal: give up on this one;
            // the next frame to this peer starts a fresh handshake.
            debug!(detail, "frame undecryptable at the peer; given up");
            self.fail(&entry);
            return;
        };
        let inner = InnerMessage {
            kind: message.kind as i32,
            id: message.id.to_vec(),
            body: message.body.clone(),
            ref_ids: Vec::new(),
            sent_at_ms: message.sent_at_ms,
            sender_card: self.cards.mine().unwrap_or_default().to_owned(),
            write_grant: self.grant_for(&peer),
            payload: Vec::new(),
            attachments: Vec::new(),
        };
        let sealed = self
            .cards
            .contact(&self.store, &peer)
            .and_then(|c| self.seal(&c, &inner));
        let session = self.session_bytes(&peer);
        match (sealed, session) {
            (Ok(envelope), Ok(session)) => {
                entry.envelope = prost::Message::encode_to_vec(&envelope);
                entry.attempts += 1;
                let mut updated = message;
                updated.envelope_id = Some(envelope.id());
                let committed = self
                    .store
                    .txn()
                    .put_outbox(&entry)
                    .put_message(&updated)
                    .put_session(&peer.0, &session)
                    .commit();
                match committed {
                    // Paced like any retry (at once for a fresh entry), so a peer that keeps
                    // refusing fresh handshakes gets one per backoff until the message expires.
                    Ok(()) => {
                        let delay = self.settings.retry_delay(entry.attempts.saturating_sub(1));
                        self.schedule
                            .schedule(OutboxId(entry.id), Instant::now() + delay);
                    }
                    Err(e) => warn!(error = %e, "persisting a resealed message"),
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                warn!(error = %e, "cannot reseal an undecryptable message");
                self.fail(&entry);
            }
        }
    }

    pub(super) fn retry_later(&mut self, entry: OutboxRecord) {
        self.retry_later_at_least(entry, std::time::Duration::ZERO);
    }

    /// [`retry_later`](Self::retry_later), but not before `wait` (what the peer asked for).
    fn retry_later_at_least(&mut self, mut entry: OutboxRecord, wait: std::time::Duration) {
        entry.attempts += 1;
        let backoff = self.settings.retry_delay(entry.attempts).max(wait);
        self.retry_in(entry, backoff);
    }

    /// Tries again in a second (no backoff): for a wait expected to be short.
    fn retry_soon(&mut self, mut entry: OutboxRecord) {
        entry.attempts += 1;
        self.retry_in(entry, FIRST_RETRY);
    }

    /// Persists the entry's next attempt in `backoff` and schedules it, unless that is past
    /// its expiry.
    fn retry_in(&mut self, mut entry: OutboxRecord, backoff: std::time::Duration) {
        entry.next_attempt_ms = self.clock.now_ms() + backoff.as_millis() as u64;
        if entry.next_attempt_ms >= entry.expires_at_ms {
            self.expire(&entry);
            return;
        }
        if let Err(e) = self.store.txn().put_outbox(&entry).commit() {
            warn!(error = %e, "persisting retry state");
        }
        self.schedule
            .schedule(OutboxId(entry.id), Instant::now() + backoff);
    }

    /// Custody moved to `relays` home relays: the outbox entry is done; the recipient's
    /// delivery receipt will say when it arrived.
    fn stored(&mut self, entry: &OutboxRecord, relays: u32) {
        self.finish(entry, MessageState::Stored, relays);
    }

    fn delivered(&mut self, entry: &OutboxRecord) {
        self.finish(entry, MessageState::Delivered, 0);
        self.metrics.messages_delivered.inc();
    }

    fn fail(&mut self, entry: &OutboxRecord) {
        self.finish(entry, MessageState::Failed, 0);
        self.metrics.messages_failed.inc();
    }

    pub(super) fn expire(&mut self, entry: &OutboxRecord) {
        info!(outbox = %OutboxId(entry.id), "undelivered message expired");
        self.fail(entry);
    }

    fn finish(&mut self, entry: &OutboxRecord, state: MessageState, relays: u32) {
        let mut txn = self.store.txn().delete_outbox(&entry.id);
        let mut changed = None;
        if let Some(mid) = entry.message_id {
            match self.store.get_message(&mid) {
                // A group message has one entry per member: each settles that member's state.
                Ok(Some(mut m)) if m.group => {
                    let before = self.store.member_state(&mid, &entry.peer).ok().flatten();
                    let moved;
                    (txn, moved) = self.advance_member(
                        &mut m,
                        entry.peer,
                        before.map(|r| r.state),
                        state,
                        txn,
                    );
                    changed = moved.then_some(m);
                }
                Ok(Some(mut m)) if state_rank(m.state) < state_rank(state) => {
                    m.state = state;
                    m.relays = m.relays.max(relays);
                    m.updated_at_ms = self.clock.now_ms();
                    txn = txn.put_message(&m);
                    changed = Some(m);
                }
                _ => {}
            }
        }
        if let Err(e) = txn.commit() {
            warn!(error = %e, "persisting delivery outcome");
            return;
        }
        self.schedule.unschedule(&OutboxId(entry.id));
        self.metrics.outbox_depth.set(self.schedule.len() as i64);
        if let Some(m) = changed {
            self.events.emit(NodeEvent::MessageState(m));
        }
    }
}

/// States only move forward: a late "delivered" never overwrites "read", and a message that
/// reached its peer is never marked failed by an expiring retry.
pub(super) fn state_rank(s: MessageState) -> u8 {
    match s {
        MessageState::Queued | MessageState::Received => 0,
        MessageState::Failed => 1,
        MessageState::Sent => 2,
        MessageState::Stored => 3,
        MessageState::Delivered => 4,
        MessageState::Read => 5,
    }
}
